/* optimizer.h — what every optimizer is (torch.optim.Optimizer): parameter groups with their
 * own options, one step, zeroing gradients, the learning rate a schedule reads and writes, and
 * the per-parameter state as a state_dict.
 *
 * Ownership:
 *   - An optimizer comes from its constructor (optim_sgd, optim_adam, optim_adamw)
 *     as an owned optim_optimizer; optim_free() releases it (NULL does nothing).
 *   - It holds one reference to each parameter tensor it was given (the module's live
 *     parameters, so a step moves the module), copies the parameter names, and owns its state
 *     tensors. The dicts passed in stay the caller's.
 *   - Getters (optim_param, optim_state) return borrowed pointers, valid until the next step,
 *     load or free.
 *
 * The parameters are numbered over all groups in the order given (PyTorch's flat state index:
 * the <i> of "state.<i>.exp_avg"). A parameter whose grad is NULL is skipped by a step and gets
 * no state, as in PyTorch. A step writes parameter data in place, records no graph, and never
 * touches a module's buffers (running statistics change only in forward). Every check of a step
 * (gradient shapes, memory for new state) happens before the first parameter moves.
 *
 * Group options are typed per optimizer (optim_sgd_options, optim_adam_options) and read or
 * replaced with the optimizer's own functions; the learning rate, which every optimizer has,
 * also with optim_get_lr / optim_set_lr. A refused call changes nothing.
 */
#ifndef CTORCH_OPTIM_OPTIMIZER_H
#define CTORCH_OPTIM_OPTIMIZER_H

#include "../nn/module.h"

typedef struct optim_optimizer optim_optimizer;

void optim_free(optim_optimizer *opt);
/* PyTorch's class name: "SGD", "Adam" or "AdamW". */
const char *optim_name(const optim_optimizer *opt);

/* One update of every parameter that has a gradient. */
torch_status optim_step(optim_optimizer *opt);
/* A function optim_step calls after its checks of the gradients' shapes and before anything else
 * (PyTorch's register_step_pre_hook): data parallelism (distributed/distributed.h, dist_ddp)
 * averages the gradients over the processes there, so that any optimizer steps on the average.
 * When it fails, the step fails with its status and no parameter moves. */
typedef torch_status (*optim_step_pre_hook)(optim_optimizer *opt, void *ctx);
/* Sets opt's one step pre-hook, called with ctx (borrowed: it must outlive the hook); hook NULL
 * removes it. Refused when a hook is set already. */
torch_status optim_register_step_pre_hook(optim_optimizer *opt, optim_step_pre_hook hook, void *ctx);
/* Drops the gradient of every parameter it updates (grad = NULL), as PyTorch 2.x's
 * zero_grad(set_to_none=True); _in_place zeroes them instead (set_to_none=False, PyTorch 1.x's
 * default). What the difference means: tensor_zero_grad in autograd.h. */
void optim_zero_grad(optim_optimizer *opt);
void optim_zero_grad_in_place(optim_optimizer *opt);

/* Number of parameter groups, and of parameters over all groups or in one group (0 if out of
 * range). */
int     optim_num_groups(const optim_optimizer *opt);
int64_t optim_num_params(const optim_optimizer *opt);
int64_t optim_group_size(const optim_optimizer *opt, int group);

/* Learning rate of a group (what schedules read and write); -1 for a bad group index. */
double       optim_get_lr(const optim_optimizer *opt, int group);
/* lr >= 0 and finite; unchanged on error. */
torch_status optim_set_lr(optim_optimizer *opt, int group, double lr);

/* The index-th parameter over all groups; borrowed, NULL when out of range. *name, if not NULL,
 * receives the borrowed name. */
tensor *optim_param(const optim_optimizer *opt, int64_t index, const char **name);
/* One state tensor of the index-th parameter, by PyTorch's key ("momentum_buffer", "step",
 * "exp_avg", ...); borrowed, NULL until the parameter's first step or for a key the optimizer
 * does not keep. */
tensor *optim_state(const optim_optimizer *opt, int64_t index, const char *key);

/* The per-parameter state as tensors, keyed as PyTorch's state_dict()["state"]:
 * "state.<index>.<key>" for each state tensor a parameter has (SGD: momentum_buffer; Adam and
 * AdamW: step, a float32 scalar as in PyTorch 1.13, exp_avg, exp_avg_sq, and max_exp_avg_sq
 * with amsgrad). The values are the optimizer's live tensors (one reference each). Group
 * options are not included: they are read with the optimizer's own functions, and
 * optim_checkpoint_save stores them. */
nn_tensor_dict *optim_state_dict(const optim_optimizer *opt);
/* Replaces the whole per-parameter state with copies of d's (a parameter without keys gets no
 * state). Refused, with an error naming the key, and with the optimizer unchanged: a key this
 * optimizer does not keep (a state dict of another optimizer), an index out of range, a tensor
 * that is not float32 or not of its parameter's shape (step: a scalar), a step that is not a
 * non-negative whole number, or an incomplete set (Adam needs step, exp_avg and exp_avg_sq
 * together, and max_exp_avg_sq too when its group has amsgrad). */
torch_status optim_load_state_dict(optim_optimizer *opt, const nn_tensor_dict *d);

/* Splits named parameters into those that get weight decay (ndim >= 2: conv and linear
 * weights) and those that do not (ndim <= 1: biases and BatchNorm weight/bias), the usual
 * recipe for two parameter groups. Both outputs are new dicts the caller frees (on error
 * nothing is allocated). */
torch_status optim_split_weight_decay(const nn_tensor_dict *params, nn_tensor_dict **decay,
                                      nn_tensor_dict **no_decay);

#endif /* CTORCH_OPTIM_OPTIMIZER_H */
