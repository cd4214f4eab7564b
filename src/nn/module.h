/* module.h — the nn module base: a forward, a training flag, and named parameters, buffers and
 * children kept in registration order (PyTorch's nn.Module, R torch's nn_module).
 *
 * Ownership:
 *   - Constructors, named as in R torch (nn_batch_norm2d(...), nn_conv2d(...)), return an owned
 *     nn_module * (NULL on error, torch_last_error() says why); nn_module_free() frees it with everything it registered. nn_module_free(NULL)
 *     does nothing.
 *   - Registering moves ownership to the module: nn_module_register_parameter/_buffer take an
 *     owned tensor reference, nn_module_register_module an owned child. They return the same
 *     pointer, now borrowed by the caller, or NULL after freeing the argument on failure, so an
 *     error path never leaks. A NULL argument fails too, keeping the error of the call that
 *     returned it: register_parameter(m, "weight", torch_empty(...)) reports why torch_empty failed.
 *   - Getters (nn_module_get_parameter, the typed views like nn_as_batch_norm(m)->weight)
 *     return borrowed pointers, valid until the module is freed.
 *   - nn_module_forward() returns a new tensor reference owned by the caller (see autograd.h).
 *   - An nn_module_list (named_modules) owns its name strings and borrows the modules.
 *   - An nn_tensor_dict (state_dict, parameters) owns its key strings and one reference to each
 *     tensor; the tensors are the module's live ones (writing them writes the module), as with
 *     PyTorch's state_dict(). Free it with nn_tensor_dict_free().
 *
 * Registration rules (PyTorch's): names are non-empty, contain no '.', and are unique among a
 * module's parameters, buffers and children. state_dict order: a module's own parameters, then
 * its persistent buffers, then each child's entries under "<child>.", in registration order.
 */
#ifndef CTORCH_NN_MODULE_H
#define CTORCH_NN_MODULE_H

#include "../autograd/autograd.h"

typedef struct nn_module nn_module;

/* One `static const` instance per module type (ggml-style vtable; optional members marked). */
typedef struct nn_module_ops {
    const char *type_name; /* "BatchNorm2d": used in repr and error messages */
    /* Required. Returns a new reference, or NULL with the error set (module state unchanged). */
    tensor *(*forward)(nn_module *self, tensor *input);
    /* (optional) re-initialises parameters as the constructor did; gen NULL = default generator. */
    torch_status (*reset_parameters)(nn_module *self, torch_generator *gen);
    /* (optional) PyTorch's extra_repr: "32, eps=1e-05, momentum=0.1, ...". Returns chars written. */
    int (*extra_repr)(const nn_module *self, char *buf, size_t len);
    /* (optional) frees type-specific state; registered tensors and children are freed by the base. */
    void (*destroy)(nn_module *self);
    /* (optional) fusion: a container about to run self and then next (the module after it) asks
     * self first. A module that computes next(self(input)) in one go, with the numbers the two
     * would give (BatchNorm absorbing a following ReLU), sets *output (a new reference, or NULL
     * with the error set) and returns true; otherwise it returns false, touching nothing, and the
     * container runs the two in turn. Containers stay generic: only the absorbing module knows
     * the pair. nn_module_forward_absorbing() is the call containers make. */
    bool (*absorb_next)(nn_module *self, nn_module *next, tensor *input, tensor **output);
    /* (optional) folding for inference (nn_module_fuse_eval_): when self can fold next into itself
     * (a Conv2d the BatchNorm2d after it), returns true with *folded a new module computing
     * next(self(x)) as the two do in eval mode, or NULL with the error set when this pair cannot
     * fold (say why); returns false, touching nothing, for a module it does not fold. */
    bool (*fold_next)(const nn_module *self, const nn_module *next, nn_module **folded);
    /* (optional, needed by nn_module_clone) a new module of self's type and options, made as its
     * constructor makes it (parameters and buffers of the same names and shapes, no children),
     * without touching any random stream; nn_module_clone then copies the values. */
    nn_module *(*new_like)(const nn_module *self);
} nn_module_ops;

typedef struct nn_named_tensor {
    char   *name;
    tensor *value;
    bool    persistent; /* buffers only: included in state_dict */
} nn_named_tensor;

typedef struct nn_named_module {
    char      *name;
    nn_module *value;
} nn_named_module;

/* Embed first in every module type: `typedef struct { nn_module base; ... } nn_batch_norm_module;` */
struct nn_module {
    const nn_module_ops *ops;
    bool                 training;   /* true after construction, as in PyTorch */
    nn_named_tensor     *parameters; /* stb_ds array, registration order */
    nn_named_tensor     *buffers;    /* stb_ds array, registration order */
    nn_named_module     *children;   /* stb_ds array, registration order */
};

/* ---- using modules ------------------------------------------------------------------------------ */

/* output <- m(input). */
tensor *nn_module_forward(nn_module *m, tensor *input);
/* For containers: output <- next(m(input)) when m absorbs next (nn_module_ops.absorb_next), with
 * *absorbed = true; otherwise output <- m(input) and *absorbed = false, and the container runs
 * next itself. next may be NULL (m is last). */
tensor *nn_module_forward_absorbing(nn_module *m, nn_module *next, tensor *input, bool *absorbed);
void    nn_module_free(nn_module *m);
/* A deep copy of m (copy.deepcopy(model), R torch's model$clone(deep = TRUE)): the same types,
 * options, parameter and buffer values, requires_grad and training flags, children, frozen
 * BatchNorm modes; no gradients, no graph. Nothing is shared, except that a Dropout's generator
 * (borrowed, see activation.h) is the same one. NULL with the error set when a module's type
 * cannot be copied (no nn_module_ops.new_like, or tensors registered after construction), e.g.
 * `nn_module_clone: Scale '2' cannot be copied: its type has no new_like`. */
nn_module *nn_module_clone(const nn_module *m);
/* Sets the training flag of m and all its children (PyTorch's train(mode)); eval() = train(false). */
void    nn_module_train(nn_module *m, bool mode);
void    nn_module_eval(nn_module *m);
/* Drops the gradients of all parameters (grad = NULL), as PyTorch 2.x's
 * zero_grad(set_to_none=True); _in_place zeroes them instead (set_to_none=False). What the
 * difference means: tensor_zero_grad in autograd.h. */
void    nn_module_zero_grad(nn_module *m);
void    nn_module_zero_grad_in_place(nn_module *m);
/* Number of parameter elements of m and its descendants (sum(p.numel() for p in m.parameters())),
 * or only those that require grad (the trainable ones); 0 for NULL. */
int64_t nn_module_num_parameters(const nn_module *m, bool trainable_only);
/* Calls reset_parameters on m and every descendant that has one, in registration order. */
torch_status nn_module_reset_parameters(nn_module *m, torch_generator *gen);

/* Lookup by dotted key ("1.running_mean"); borrowed, NULL if absent (no error set). */
tensor    *nn_module_get_parameter(const nn_module *m, const char *key);
tensor    *nn_module_get_buffer(const nn_module *m, const char *key);
nn_module *nn_module_get_child(const nn_module *m, const char *key);

/* Every module of the tree (PyTorch's named_modules()): m itself first, named "", then each
 * child's tree under "<child>." in registration order, e.g. "", "0", "1", "1.0", ... The list
 * owns its name strings; the modules are borrowed from m. NULL on error. */
typedef struct nn_module_list {
    int64_t          count;
    nn_named_module *items; /* count entries: owned name, borrowed module */
} nn_module_list;
nn_module_list *nn_module_named_modules(nn_module *m);
void            nn_module_list_free(nn_module_list *l);

/* PyTorch's repr, e.g.
 *   Sequential(
 *     (0): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
 *     (1): BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
 *   )
 * Returns a malloc'ed string the caller frees, or NULL on out-of-memory. */
char *nn_module_repr(const nn_module *m);
void  nn_module_print(const nn_module *m); /* repr + newline to stdout */

/* ---- named tensor collections: state_dict, parameters ---------------------------------------- */

typedef struct nn_tensor_dict {
    int64_t          count;
    nn_named_tensor *items; /* count entries: owned name, owned reference */
    void            *index; /* private: key -> position */
} nn_tensor_dict;

/* All parameters and persistent buffers, with dotted keys. */
nn_tensor_dict *nn_module_state_dict(const nn_module *m);
/* All parameters (what an optimizer takes), with dotted keys. */
nn_tensor_dict *nn_module_named_parameters(const nn_module *m);
nn_tensor_dict *nn_module_named_buffers(const nn_module *m);

/* An empty dict, to fill with nn_tensor_dict_set (e.g. when reading a checkpoint). */
nn_tensor_dict *nn_tensor_dict_new(void);
/* Adds or replaces key -> value (retains value). */
torch_status    nn_tensor_dict_set(nn_tensor_dict *d, const char *key, tensor *value);
/* Borrowed, NULL if absent. */
tensor         *nn_tensor_dict_get(const nn_tensor_dict *d, const char *key);
void            nn_tensor_dict_free(nn_tensor_dict *d);

/* Copies the dict's values into m's parameters and buffers (no gradient recorded).
 * strict: a missing or unexpected key is an error. A shape or dtype mismatch is always an error,
 * e.g. `load_state_dict: size mismatch for "1.weight": checkpoint [8], model [16]`.
 * A missing "<bn>.num_batches_tracked" loads as 0 (PyTorch and R torch do this for old files).
 * All checks happen before any copy: on error the module is unchanged. */
torch_status nn_module_load_state_dict(nn_module *m, const nn_tensor_dict *d, bool strict);

/* ---- implementing modules ---------------------------------------------------------------------- */

/* Initialises the embedded base of a freshly calloc'ed module. */
void nn_module_init(nn_module *m, const nn_module_ops *ops);
/* calloc(size) + nn_module_init: a zeroed module of a type whose struct embeds the base first.
 * NULL with "<TypeName>: out of memory" on failure. */
void *nn_module_alloc(size_t size, const nn_module_ops *ops);

/* Register; see the ownership and name rules at the top. Parameters get requires_grad = true. */
tensor    *nn_module_register_parameter(nn_module *m, const char *name, tensor *value);
tensor    *nn_module_register_buffer(nn_module *m, const char *name, tensor *value, bool persistent);
nn_module *nn_module_register_module(nn_module *m, const char *name, nn_module *child);

#endif /* CTORCH_NN_MODULE_H */
