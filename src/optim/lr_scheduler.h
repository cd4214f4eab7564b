/* lr_scheduler.h — learning-rate schedules over an optim_sgd: StepLR and CosineAnnealingLR with
 * PyTorch 1.13's exact semantics.
 *
 * Ownership: optim_*_lr_new() returns an owned scheduler (NULL on error) that borrows the
 * optimizer: free the scheduler (optim_lr_scheduler_free, NULL-safe) before the optimizer.
 *
 * Semantics (PyTorch's, which matter when resuming or when something else also changes lr):
 *   - Construction records each group's current lr as its base lr and counts as the initial
 *     step: last_epoch becomes 0 and the lr is left as it is.
 *   - optim_lr_scheduler_step(), called once per epoch after the optimizer steps, increments
 *     last_epoch and applies the *recursive* form that PyTorch's step() uses, from the group's
 *     current lr:
 *       StepLR:    lr <- lr * gamma when last_epoch % step_size == 0, else unchanged
 *                  (closed form: base_lr * gamma^(last_epoch / step_size)).
 *       Cosine:    lr <- eta_min + (lr - eta_min) * (1 + cos(pi t / T)) / (1 + cos(pi (t-1) / T)),
 *                  with t = last_epoch, T = T_max, and when (t - 1 - T) % (2T) == 0 the
 *                  restart branch lr <- lr + (base_lr - eta_min) * (1 - cos(pi / T)) / 2
 *                  (closed form: eta_min + (base_lr - eta_min) * (1 + cos(pi t / T)) / 2;
 *                  the recursive values differ from it by rounding, and past T_max the lr
 *                  rises again along the cosine, as in PyTorch).
 */
#ifndef CTORCH_OPTIM_LR_SCHEDULER_H
#define CTORCH_OPTIM_LR_SCHEDULER_H

#include "sgd.h"

typedef enum optim_lr_scheduler_kind {
    OPTIM_LR_STEP = 0,         /* torch.optim.lr_scheduler.StepLR */
    OPTIM_LR_COSINE_ANNEALING, /* torch.optim.lr_scheduler.CosineAnnealingLR */
} optim_lr_scheduler_kind;

typedef struct optim_lr_scheduler optim_lr_scheduler;

/* StepLR(optimizer, step_size, gamma = 0.1): multiplies lr by gamma every step_size epochs.
 * step_size > 0, gamma finite and >= 0. */
optim_lr_scheduler *optim_step_lr_new(optim_sgd *opt, int64_t step_size, double gamma);
/* CosineAnnealingLR(optimizer, T_max, eta_min = 0): cosine from base lr down to eta_min over
 * T_max epochs. T_max > 0, eta_min finite and >= 0. */
optim_lr_scheduler *optim_cosine_annealing_lr_new(optim_sgd *opt, int64_t T_max, double eta_min);
void optim_lr_scheduler_free(optim_lr_scheduler *s);

/* One epoch: last_epoch += 1, then every group's lr is updated (see the top). Fails, changing
 * nothing, if the optimizer's number of groups changed since construction. */
torch_status optim_lr_scheduler_step(optim_lr_scheduler *s);

optim_lr_scheduler_kind optim_lr_scheduler_type(const optim_lr_scheduler *s);
/* The lr the scheduler last set for group (get_last_lr()[group]); -1 for a bad index. */
double  optim_lr_scheduler_get_last_lr(const optim_lr_scheduler *s, int group);
/* The closed form at the current epoch (PyTorch's _get_closed_form_lr); -1 for a bad index. */
double  optim_lr_scheduler_closed_form_lr(const optim_lr_scheduler *s, int group);
/* Epochs stepped since construction (0 right after it). */
int64_t optim_lr_scheduler_last_epoch(const optim_lr_scheduler *s);

/* The whole state, for checkpoints: PyTorch's state_dict() fields that change. */
typedef struct optim_lr_scheduler_state {
    int     kind;         /* optim_lr_scheduler_kind */
    int64_t last_epoch;
    int64_t step_count;   /* PyTorch's _step_count: 1 after construction */
    int     n_groups;
    double *base_lrs;     /* n_groups entries; owned by the scheduler when read, copied when set */
    double *last_lrs;     /* n_groups entries, likewise */
} optim_lr_scheduler_state;

/* Borrowed view of the state (pointers valid until the next step, set or free). */
optim_lr_scheduler_state optim_lr_scheduler_get_state(const optim_lr_scheduler *s);
/* Restores a state read from a scheduler of the same kind and group count (the optimizer's
 * lrs are restored separately, by the optimizer's own state). Checks first, changes nothing on
 * error. */
torch_status optim_lr_scheduler_set_state(optim_lr_scheduler *s, const optim_lr_scheduler_state *state);

#endif /* CTORCH_OPTIM_LR_SCHEDULER_H */
