/* adam.h — Adam and AdamW, exactly PyTorch 1.13's torch.optim.Adam and torch.optim.AdamW
 * (single-tensor, non-capturable path), on the optim_optimizer interface (optimizer.h: step,
 * zero_grad, lr, state dicts, freeing).
 *
 * Ownership: as every optimizer (optimizer.h): the constructors return an owned optimizer (NULL
 * on error, torch_last_error() says why) that optim_free() releases.
 *
 * The update, for each parameter p of a group with a gradient, t its step count:
 *     g  = maximize ? -p.grad : p.grad
 *     Adam:  g = g + weight_decay * p                    (L2 penalty, when weight_decay != 0)
 *     AdamW: p = p * (1 - lr * weight_decay)             (decoupled decay, Loshchilov & Hutter)
 *     t  = t + 1
 *     m  = beta1 * m + (1 - beta1) * g                   (exp_avg)
 *     v  = beta2 * v + (1 - beta2) * g * g               (exp_avg_sq)
 *     amsgrad: v_max = max(v_max, v), and v_max replaces v below (max_exp_avg_sq)
 *     p  = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * eps is added outside the square root, after the bias correction, as PyTorch does; t is a
 * float32 scalar as in PyTorch 1.13 (exact up to 2^24 steps).
 *
 * State, keyed as torch.optim writes it: "step" (float32 scalar), "exp_avg", "exp_avg_sq", and
 * "max_exp_avg_sq" for groups with amsgrad, created zero at a parameter's first step.
 */
#ifndef CTORCH_OPTIM_ADAM_H
#define CTORCH_OPTIM_ADAM_H

#include "optimizer.h"

/* Options of one parameter group, with PyTorch's names. Adam and AdamW share them; only the
 * default weight_decay differs. */
typedef struct optim_adam_options {
    double lr;           /* default 1e-3; >= 0 */
    double betas[2];     /* default (0.9, 0.999); each in [0, 1) */
    double eps;          /* default 1e-8; >= 0 */
    double weight_decay; /* Adam: default 0 (L2); AdamW: default 1e-2 (decoupled); >= 0 */
    bool   amsgrad;      /* default false: AMSGrad's running maximum of v */
    bool   maximize;     /* default false; ascend instead of descend */
} optim_adam_options;

/* PyTorch's defaults: Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0) and AdamW's,
 * the same with weight_decay=1e-2. */
optim_adam_options optim_adam_options_default(void);
optim_adam_options optim_adamw_options_default(void);
/* Named-argument forms: OPTIM_ADAMW_OPTIONS(.lr = 3e-4, .amsgrad = true). Later designators
 * override the defaults (see NN_BATCH_NORM_OPTIONS for the warning flag this needs). */
#define OPTIM_ADAM_OPTIONS(...) \
    ((optim_adam_options){.lr = 1e-3, .betas = {0.9, 0.999}, .eps = 1e-8, .weight_decay = 0, __VA_ARGS__})
#define OPTIM_ADAMW_OPTIONS(...) \
    ((optim_adam_options){.lr = 1e-3, .betas = {0.9, 0.999}, .eps = 1e-8, .weight_decay = 1e-2, __VA_ARGS__})

/* Optimizers over params as one group. Errors, as PyTorch: "Invalid learning rate: -1",
 * "Invalid epsilon value: -1", "Invalid beta parameter at index 0: 1",
 * "Invalid weight_decay value: -1", and those of every optimizer (optimizer.h). */
optim_optimizer *optim_adam(const nn_tensor_dict *params, optim_adam_options options);
optim_optimizer *optim_adamw(const nn_tensor_dict *params, optim_adam_options options);
/* Adds a group with its own options to an Adam or AdamW optimizer; unchanged on error. */
torch_status optim_adam_add_param_group(optim_optimizer *opt, const nn_tensor_dict *params,
                                        optim_adam_options options);
/* A group's options; zeroed options, with the error set, when opt is neither Adam nor AdamW or
 * group is out of range. */
optim_adam_options optim_adam_group_options(const optim_optimizer *opt, int group);
/* Replaces all of a group's options (checked as at construction; unchanged on error). */
torch_status optim_adam_set_group_options(optim_optimizer *opt, int group, optim_adam_options options);

#endif /* CTORCH_OPTIM_ADAM_H */
