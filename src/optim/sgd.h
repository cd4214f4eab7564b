/* sgd.h — stochastic gradient descent, exactly PyTorch 1.13's torch.optim.SGD.
 *
 * Ownership:
 *   - optim_sgd_new() returns an owned optimizer (NULL on error, torch_last_error() says why);
 *     optim_sgd_free() releases it. optim_sgd_free(NULL) does nothing.
 *   - The optimizer holds one reference to each parameter tensor it was given (the module's live
 *     parameters, so a step moves the module) and owns its momentum buffers. It copies the
 *     parameter names. The dicts passed in stay the caller's.
 *   - Getters (optim_sgd_momentum_buffer, optim_sgd_param) return borrowed pointers, valid until
 *     the next step, load or free.
 *
 * The update, for each parameter p of a group with a gradient (PyTorch's _single_tensor_sgd):
 *     g   = maximize ? -p.grad : p.grad
 *     g   = g + weight_decay * p                      (when weight_decay != 0)
 *     buf = g (a copy) on the first step,              (when momentum != 0)
 *           momentum * buf + (1 - dampening) * g afterwards
 *     g   = nesterov ? g + momentum * buf : buf
 *     p   = p - lr * g
 * A parameter whose grad is NULL is skipped and gets no momentum buffer, as in PyTorch. The step
 * writes parameter data in place, records no graph, and never touches a module's buffers
 * (running statistics change only in forward).
 */
#ifndef CTORCH_OPTIM_SGD_H
#define CTORCH_OPTIM_SGD_H

#include "../nn/module.h"

/* Options of one parameter group, with PyTorch's names and defaults. */
typedef struct optim_sgd_options {
    double lr;           /* required, >= 0 */
    double momentum;     /* default 0; >= 0 */
    double dampening;    /* default 0; applied from the second step on */
    double weight_decay; /* default 0; >= 0; L2 penalty added to the gradient */
    bool   nesterov;     /* default false; needs momentum > 0 and dampening == 0 */
    bool   maximize;     /* default false; ascend instead of descend */
} optim_sgd_options;

/* PyTorch's defaults with the given learning rate. */
optim_sgd_options optim_sgd_options_default(double lr);

typedef struct optim_sgd optim_sgd;

/* An optimizer over params (typically nn_module_named_parameters(model)) as one group.
 * Errors, as PyTorch: "Invalid learning rate: -0.1", "Invalid momentum value: -1",
 * "Invalid weight_decay value: -1", "Nesterov momentum requires a momentum and zero dampening",
 * "optimizer got an empty parameter list", "can't optimize a non-leaf Tensor". */
optim_sgd *optim_sgd_new(const nn_tensor_dict *params, optim_sgd_options options);
/* Adds a group with its own options (e.g. weight_decay 0 for BatchNorm parameters and biases).
 * A parameter may belong to one group only. On error the optimizer is unchanged. */
torch_status optim_sgd_add_param_group(optim_sgd *opt, const nn_tensor_dict *params, optim_sgd_options options);
void optim_sgd_free(optim_sgd *opt);

/* One update of every parameter that has a gradient. */
torch_status optim_sgd_step(optim_sgd *opt);
/* Zeroes the gradients in place (PyTorch 1.13's default zero_grad(set_to_none=False)); to drop
 * them instead, use nn_module_zero_grad or tensor_zero_grad. */
void optim_sgd_zero_grad(optim_sgd *opt);

/* Number of parameter groups, and of parameters over all groups or in one group (0 if out of
 * range). */
int     optim_sgd_num_groups(const optim_sgd *opt);
int64_t optim_sgd_num_params(const optim_sgd *opt);
int64_t optim_sgd_group_size(const optim_sgd *opt, int group);
/* A group's options (its current lr included); group must be in range (else zeroed options). */
optim_sgd_options optim_sgd_group_options(const optim_sgd *opt, int group);
/* Replaces all of a group's options (checked as at construction; unchanged on error). */
torch_status optim_sgd_set_group_options(optim_sgd *opt, int group, optim_sgd_options options);
/* Learning rate of a group (what schedules read and write); -1 for a bad group index. */
double       optim_sgd_get_lr(const optim_sgd *opt, int group);
torch_status optim_sgd_set_lr(optim_sgd *opt, int group, double lr);

/* The index-th parameter over all groups, in the order given (PyTorch's flat state index);
 * borrowed, NULL when out of range. *name, if not NULL, receives the borrowed name. */
tensor *optim_sgd_param(const optim_sgd *opt, int64_t index, const char **name);
/* The momentum buffer of the index-th parameter (borrowed), NULL until its first step. */
tensor *optim_sgd_momentum_buffer(const optim_sgd *opt, int64_t index);

/* The optimizer's state as tensors, keyed as PyTorch's state_dict()["state"]:
 * "state.<index>.momentum_buffer" for each parameter that has a buffer. The values are the
 * optimizer's live buffers (one reference each). Group options are not included: read them
 * with optim_sgd_group_options. */
nn_tensor_dict *optim_sgd_state_dict(const optim_sgd *opt);
/* Replaces the momentum buffers with copies of d's (keys as above; a parameter without a key
 * gets no buffer). An unexpected key or a shape mismatch is an error naming the key; all checks
 * and copies happen before the optimizer changes. */
torch_status optim_sgd_load_state_dict(optim_sgd *opt, const nn_tensor_dict *d);

/* Splits named parameters into those that get weight decay (ndim >= 2: conv and linear
 * weights) and those that do not (ndim <= 1: biases and BatchNorm weight/bias), the usual
 * recipe. Both outputs are new dicts the caller frees (NULL on error, with nothing allocated). */
torch_status optim_split_weight_decay(const nn_tensor_dict *params, nn_tensor_dict **decay,
                                      nn_tensor_dict **no_decay);

#endif /* CTORCH_OPTIM_SGD_H */
