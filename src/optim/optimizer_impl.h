/* optimizer_impl.h — private to optim/: how an optimizer plugs into optim_optimizer. An
 * optimizer is an optim_ops table (its options as a list of fields, its per-parameter state
 * keys, its checks and its update) plus a typed public header; optimizer.c does the rest
 * (groups, checks, memory, state dicts, the order of a step) once for all of them.
 *
 * Ownership: the optimizer owns its param entries (a reference to each parameter, a copy of its
 * name, its state tensors) and each group's options block (ops->options_size bytes). The ops
 * table is static. Staged state (optim_stage_state) is owned by the caller until committed.
 */
#ifndef CTORCH_OPTIM_OPTIMIZER_IMPL_H
#define CTORCH_OPTIM_OPTIMIZER_IMPL_H

#include <stddef.h>

#include "optimizer.h"

/* At most this many state tensors per parameter (Adam's four). */
#define OPTIM_MAX_STATE 4

/* One option of a group, as torch.optim's param_groups entries name it; the checkpoint writes
 * and reads groups through this list. */
typedef enum optim_field_kind {
    OPTIM_FIELD_DOUBLE, /* double */
    OPTIM_FIELD_BOOL,   /* bool */
    OPTIM_FIELD_PAIR,   /* double[2], a JSON array of two numbers (Adam's betas) */
} optim_field_kind;

typedef struct optim_field {
    const char      *name;
    optim_field_kind kind;
    size_t           offset; /* in the options struct */
} optim_field;

/* One per-parameter state tensor: its PyTorch key, and whether it has the parameter's shape or
 * is a scalar (Adam's step). */
typedef struct optim_state_key {
    const char *name;
    bool        scalar;
} optim_state_key;

typedef struct optim_ops {
    const char            *name;         /* PyTorch's class name */
    size_t                 options_size; /* sizeof the options struct */
    size_t                 lr_offset;    /* offsetof its double lr */
    const optim_field     *fields;       /* every option, in PyTorch's param_group order */
    int                    n_fields;
    const optim_state_key *state;        /* the state keys, in PyTorch's order */
    int                    n_state;
    /* PyTorch's checks of the options, with its messages after "fname: ". */
    torch_status (*check_options)(const char *fname, const void *options);
    /* Whether a parameter stepped under these options keeps state slot k. */
    bool (*needs_state)(const void *options, int k);
    /* Checks one parameter's loaded state (slots NULL where absent; shapes and dtypes already
     * checked) against its group's options; index and name are for the message. */
    torch_status (*check_state)(const char *fname, const void *options, int64_t index, const char *name,
                                tensor *const *state);
    /* One parameter's update: p and grad hold n floats; state has every slot needs_state asked
     * for, and bit k of fresh says slot k was created (zero-filled) for this step. */
    void (*update)(const void *options, float *p, const float *grad, int64_t n, tensor *const *state,
                   unsigned fresh);
} optim_ops;

typedef struct optim_param_entry {
    tensor *param;                  /* owned reference to the live parameter */
    char   *name;                   /* owned copy */
    tensor *state[OPTIM_MAX_STATE]; /* owned, NULL until needed */
} optim_param_entry;

typedef struct optim_group {
    int64_t begin, end;  /* [begin, end) in params */
    void   *options;     /* owned, ops->options_size bytes */
    double  initial_lr;  /* PyTorch's group["initial_lr"]: the lr when the first schedule came */
    bool    has_initial_lr;
} optim_group;

struct optim_optimizer {
    const optim_ops *ops;
    optim_param_entry     *params; /* stb_ds array; groups index into it */
    optim_group     *groups; /* stb_ds array */
    optim_step_pre_hook pre_hook; /* NULL: none */
    void           *pre_hook_ctx; /* borrowed */
};

/* A new optimizer of this kind with one group (NULL on error); fname labels messages. */
optim_optimizer *optim_new(const optim_ops *ops, const char *fname, const nn_tensor_dict *params,
                           const void *options);
/* Adds a group, after the checks of PyTorch's add_param_group; unchanged on error. */
torch_status optim_add_group(optim_optimizer *opt, const optim_ops *ops, const char *fname,
                             const nn_tensor_dict *params, const void *options);
/* Group options for a typed getter or setter: NULL with the error set when opt is not of kind
 * ops (or of the optional second kind also) or group is out of range. */
void *optim_group_options_of(const optim_optimizer *opt, const optim_ops *ops, const optim_ops *also,
                             const char *fname, int group);
/* Replaces a group's options after ops->check_options; unchanged on error. */
torch_status optim_set_group_options(optim_optimizer *opt, const char *fname, int group, const void *options);

/* PyTorch's group.setdefault("initial_lr", group["lr"]): what a new schedule takes as base lr. */
double optim_initial_lr(optim_optimizer *opt, int group);

/* Loading state in two phases, so that a caller that loads several things (a checkpoint) can
 * check all of them before changing any: optim_stage_state checks d (against group_options[g]
 * for group g, or the current options when group_options is NULL) and copies its tensors into
 * *staged (num_params * OPTIM_MAX_STATE entries, caller-owned); optim_commit_state installs
 * them, freeing the old state, and cannot fail. optim_staged_free releases an uncommitted set. */
torch_status optim_stage_state(const optim_optimizer *opt, const char *fname, const nn_tensor_dict *d,
                               void *const *group_options, tensor ***staged);
void         optim_commit_state(optim_optimizer *opt, tensor **staged);
void         optim_staged_free(const optim_optimizer *opt, tensor **staged);

#endif /* CTORCH_OPTIM_OPTIMIZER_IMPL_H */
