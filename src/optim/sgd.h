/* sgd.h — stochastic gradient descent, exactly PyTorch 1.13's torch.optim.SGD, on the
 * optim_optimizer interface (optimizer.h: step, zero_grad, lr, state dicts, freeing).
 *
 * Ownership: as every optimizer (optimizer.h): optim_sgd() returns an owned optimizer
 * (NULL on error, torch_last_error() says why) that optim_free() releases.
 *
 * The update, for each parameter p of a group with a gradient (PyTorch's _single_tensor_sgd):
 *     g   = maximize ? -p.grad : p.grad
 *     g   = g + weight_decay * p                      (when weight_decay != 0)
 *     buf = g (a copy) on the first step,              (when momentum != 0)
 *           momentum * buf + (1 - dampening) * g afterwards
 *     g   = nesterov ? g + momentum * buf : buf
 *     p   = p - lr * g
 * State: "momentum_buffer" for each parameter stepped with momentum != 0.
 */
#ifndef CTORCH_OPTIM_SGD_H
#define CTORCH_OPTIM_SGD_H

#include "optimizer.h"

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
/* Named-argument form: OPTIM_SGD_OPTIONS(.lr = 0.01, .momentum = 0.9) (the defaults are all zero). */
#define OPTIM_SGD_OPTIONS(...) ((optim_sgd_options){__VA_ARGS__})

/* An SGD optimizer over params (typically nn_module_named_parameters(model)) as one group.
 * Errors, as PyTorch: "Invalid learning rate: -0.1", "Invalid momentum value: -1",
 * "Invalid weight_decay value: -1", "Nesterov momentum requires a momentum and zero dampening",
 * "optimizer got an empty parameter list", "can't optimize a non-leaf Tensor". */
optim_optimizer *optim_sgd(const nn_tensor_dict *params, optim_sgd_options options);
/* Adds a group with its own options (e.g. weight_decay 0 for BatchNorm parameters and biases).
 * A parameter may belong to one group only. On error the optimizer is unchanged. */
torch_status optim_sgd_add_param_group(optim_optimizer *opt, const nn_tensor_dict *params, optim_sgd_options options);
/* A group's options (its current lr included); zeroed options, with the error set, when opt is
 * not SGD or group is out of range. */
optim_sgd_options optim_sgd_group_options(const optim_optimizer *opt, int group);
/* Replaces all of a group's options (checked as at construction; unchanged on error). */
torch_status optim_sgd_set_group_options(optim_optimizer *opt, int group, optim_sgd_options options);

#endif /* CTORCH_OPTIM_SGD_H */
