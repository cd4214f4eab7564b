/* lr_scheduler.h — learning-rate schedules over any optimizer, with PyTorch 1.13's exact
 * semantics: StepLR, CosineAnnealingLR, LinearLR (linear warm-up) and SequentialLR (one schedule
 * after another, e.g. warm-up then cosine).
 *
 * Ownership: the constructors return an owned scheduler (NULL on error) that borrows the
 * optimizer: free the scheduler (optim_lr_scheduler_free, NULL-safe) before the optimizer.
 * optim_sequential_lr takes ownership of the schedulers it is given (on success only):
 * freeing the SequentialLR frees them, and they are no longer stepped or freed on their own.
 *
 * Semantics (PyTorch's, which matter when resuming or when something else also changes lr):
 *   - Construction takes each group's "initial_lr" as its base lr (set to the group's lr by the
 *     first schedule built on the optimizer, as PyTorch's setdefault does) and counts as the
 *     initial step: last_epoch becomes 0 and the lr becomes the schedule's value at epoch 0 (the
 *     lr unchanged, except LinearLR: lr * start_factor).
 *   - optim_lr_scheduler_step(), called once per epoch after the optimizer steps, increments
 *     last_epoch and applies the *recursive* form that PyTorch's step() uses, from the group's
 *     current lr, t = last_epoch:
 *       StepLR:    lr <- lr * gamma when t % step_size == 0, else unchanged
 *                  (closed form: base_lr * gamma^(t / step_size)).
 *       Cosine:    lr <- eta_min + (lr - eta_min) * (1 + cos(pi t / T)) / (1 + cos(pi (t-1) / T)),
 *                  T = T_max, and when (t - 1 - T) % (2T) == 0 the restart branch
 *                  lr <- lr + (base_lr - eta_min) * (1 - cos(pi / T)) / 2
 *                  (closed form: eta_min + (base_lr - eta_min) * (1 + cos(pi t / T)) / 2;
 *                  the recursive values differ from it by rounding, and past T_max the lr
 *                  rises again along the cosine, as in PyTorch).
 *       LinearLR:  lr <- lr * (1 + (e - s) / (N s + (t - 1)(e - s))) for 1 <= t <= N, else
 *                  unchanged, with s = start_factor, e = end_factor, N = total_iters
 *                  (closed form: base_lr * (s + (e - s) * min(N, t) / N)).
 *       Sequential: t counts the SequentialLR's own epochs; the active schedule is the one after
 *                  the last milestone <= t. At a milestone it restarts at its epoch 0 with its
 *                  closed form (base_lr for StepLR and cosine), otherwise it steps as above.
 */
#ifndef CTORCH_OPTIM_LR_SCHEDULER_H
#define CTORCH_OPTIM_LR_SCHEDULER_H

#include "optimizer.h"

typedef enum optim_lr_scheduler_kind {
    OPTIM_LR_STEP = 0,         /* torch.optim.lr_scheduler.StepLR */
    OPTIM_LR_COSINE_ANNEALING, /* CosineAnnealingLR */
    OPTIM_LR_LINEAR,           /* LinearLR */
    OPTIM_LR_SEQUENTIAL,       /* SequentialLR */
} optim_lr_scheduler_kind;

typedef struct optim_lr_scheduler optim_lr_scheduler;

/* StepLR(optimizer, step_size, gamma = 0.1): multiplies lr by gamma every step_size epochs.
 * step_size > 0, gamma finite and >= 0. */
optim_lr_scheduler *optim_step_lr(optim_optimizer *opt, int64_t step_size, double gamma);
/* CosineAnnealingLR(optimizer, T_max, eta_min = 0): cosine from base lr down to eta_min over
 * T_max epochs. T_max > 0, eta_min finite and >= 0. */
optim_lr_scheduler *optim_cosine_annealing_lr(optim_optimizer *opt, int64_t T_max, double eta_min);
/* LinearLR(optimizer, start_factor = 1/3, end_factor = 1, total_iters = 5): the lr goes linearly
 * from base_lr * start_factor to base_lr * end_factor over total_iters epochs, then stays.
 * 0 < start_factor <= 1 (PyTorch 2.x's rule: 1.13 takes 0 and then divides by zero),
 * 0 <= end_factor <= 1, total_iters > 0. */
optim_lr_scheduler *optim_linear_lr(optim_optimizer *opt, double start_factor, double end_factor,
                                    int64_t total_iters);
/* SequentialLR(optimizer, schedulers, milestones): schedulers[0] until epoch milestones[0], then
 * schedulers[1], ...; n >= 1 schedulers of the same optimizer, none a SequentialLR or already
 * owned by one, and n - 1 strictly increasing milestones > 0. Built after its schedulers (each
 * of which did its initial step), it resets every group's lr to its initial_lr and redoes the
 * first scheduler's initial step, as PyTorch. Takes ownership of the schedulers on success; on
 * error they stay the caller's, unchanged. */
optim_lr_scheduler *optim_sequential_lr(optim_optimizer *opt, optim_lr_scheduler *const *schedulers, int n,
                                        const int64_t *milestones);
void optim_lr_scheduler_free(optim_lr_scheduler *s);

/* One epoch: last_epoch += 1, then every group's lr is updated (see the top). Fails, changing
 * nothing, if the optimizer's number of groups changed since construction, or for a scheduler
 * owned by a SequentialLR (step that one). */
torch_status optim_lr_scheduler_step(optim_lr_scheduler *s);

optim_lr_scheduler_kind optim_lr_scheduler_type(const optim_lr_scheduler *s);
/* The lr the scheduler last set for group (get_last_lr()[group]); -1 for a bad index. */
double  optim_lr_scheduler_get_last_lr(const optim_lr_scheduler *s, int group);
/* The closed form at the current epoch (PyTorch's _get_closed_form_lr); -1 for a bad index or
 * a SequentialLR (PyTorch's has none). */
double  optim_lr_scheduler_closed_form_lr(const optim_lr_scheduler *s, int group);
/* Epochs stepped since construction (0 right after it; -1 for a SequentialLR's scheduler that
 * has not started yet). */
int64_t optim_lr_scheduler_last_epoch(const optim_lr_scheduler *s);

/* The scheduler's state_dict as JSON text (malloc'ed, caller frees; NULL on out-of-memory), with
 * PyTorch's fields: its kind, settings (step_size and gamma, T_max and eta_min, start_factor,
 * end_factor and total_iters, or milestones and the states of its schedulers), last_epoch,
 * step_count, base_lrs and last_lrs. Learning rates have 17 significant digits. */
char *optim_lr_scheduler_state_json(const optim_lr_scheduler *s);
/* Restores a state written by optim_lr_scheduler_state_json into a scheduler of the same kind
 * (for SequentialLR: the same number and kinds of schedulers) over as many groups, settings
 * included, as PyTorch's load_state_dict does. The optimizer's lrs are not touched: they are
 * the optimizer's state (optim_checkpoint_* restores both). Everything is checked first; on
 * error nothing changes and the message names the field. */
torch_status optim_lr_scheduler_load_state_json(optim_lr_scheduler *s, const char *json);

#endif /* CTORCH_OPTIM_LR_SCHEDULER_H */
