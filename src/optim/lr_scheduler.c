/* lr_scheduler.c — StepLR and CosineAnnealingLR, transcribed from PyTorch 1.13's get_lr(). */
#include "lr_scheduler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct optim_lr_scheduler {
    optim_lr_scheduler_kind kind;
    optim_sgd *opt;        /* borrowed */
    int        n_groups;
    double    *base_lrs;   /* n_groups */
    double    *last_lrs;   /* n_groups */
    int64_t    last_epoch;
    int64_t    step_count;
    int64_t    step_size;  /* StepLR */
    double     gamma;
    int64_t    T_max;      /* CosineAnnealingLR */
    double     eta_min;
};

static const double PI = 3.14159265358979323846;

static optim_lr_scheduler *scheduler_new(const char *fname, optim_sgd *opt, optim_lr_scheduler_kind kind) {
    if (!opt) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: optimizer is NULL", fname);
        return NULL;
    }
    int n = optim_sgd_num_groups(opt);
    optim_lr_scheduler *s = calloc(1, sizeof *s);
    double *base = calloc((size_t)n, sizeof *base), *last = calloc((size_t)n, sizeof *last);
    if (!s || !base || !last) {
        free(s);
        free(base);
        free(last);
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        return NULL;
    }
    s->kind = kind;
    s->opt = opt;
    s->n_groups = n;
    s->base_lrs = base;
    s->last_lrs = last;
    /* PyTorch's constructor: initial_lr = lr, then the initial step() with last_epoch -1 -> 0,
     * whose get_lr() returns the current lrs unchanged. */
    for (int g = 0; g < n; g++) base[g] = last[g] = optim_sgd_get_lr(opt, g);
    s->last_epoch = 0;
    s->step_count = 1;
    return s;
}

optim_lr_scheduler *optim_step_lr_new(optim_sgd *opt, int64_t step_size, double gamma) {
    if (step_size <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "StepLR: step_size must be positive (got %lld)", (long long)step_size);
        return NULL;
    }
    if (!(gamma >= 0.0) || !isfinite(gamma)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "StepLR: gamma must be finite and non-negative (got %g)", gamma);
        return NULL;
    }
    optim_lr_scheduler *s = scheduler_new("StepLR", opt, OPTIM_LR_STEP);
    if (s) {
        s->step_size = step_size;
        s->gamma = gamma;
    }
    return s;
}

optim_lr_scheduler *optim_cosine_annealing_lr_new(optim_sgd *opt, int64_t T_max, double eta_min) {
    if (T_max <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "CosineAnnealingLR: T_max must be positive (got %lld)",
                    (long long)T_max);
        return NULL;
    }
    if (!(eta_min >= 0.0) || !isfinite(eta_min)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "CosineAnnealingLR: eta_min must be finite and non-negative (got %g)",
                    eta_min);
        return NULL;
    }
    optim_lr_scheduler *s = scheduler_new("CosineAnnealingLR", opt, OPTIM_LR_COSINE_ANNEALING);
    if (s) {
        s->T_max = T_max;
        s->eta_min = eta_min;
    }
    return s;
}

void optim_lr_scheduler_free(optim_lr_scheduler *s) {
    if (!s) return;
    free(s->base_lrs);
    free(s->last_lrs);
    free(s);
}

/* Python's a % b for b > 0: the result has b's sign. */
static int64_t py_mod(int64_t a, int64_t b) {
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

/* get_lr() for one group, given the group's current lr (the recursive form). */
static double recursive_lr(const optim_lr_scheduler *s, int g, double lr) {
    int64_t t = s->last_epoch;
    if (s->kind == OPTIM_LR_STEP) {
        if (t == 0 || t % s->step_size != 0) return lr;
        return lr * s->gamma;
    }
    double T = (double)s->T_max, base = s->base_lrs[g], eta = s->eta_min;
    if (t == 0) return lr;
    if (s->step_count == 1 && t > 0) return eta + (base - eta) * (1 + cos((double)t * PI / T)) / 2;
    if (py_mod(t - 1 - s->T_max, 2 * s->T_max) == 0) return lr + (base - eta) * (1 - cos(PI / T)) / 2;
    return (1 + cos(PI * (double)t / T)) / (1 + cos(PI * (double)(t - 1) / T)) * (lr - eta) + eta;
}

torch_status optim_lr_scheduler_step(optim_lr_scheduler *s) {
    if (!s) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_lr_scheduler_step: scheduler is NULL");
    if (optim_sgd_num_groups(s->opt) != s->n_groups)
        return torch_error(TORCH_ERR_INVALID_STATE,
                           "optim_lr_scheduler_step: the optimizer has %d parameter groups, the scheduler was made "
                           "for %d",
                           optim_sgd_num_groups(s->opt), s->n_groups);
    s->step_count++;
    s->last_epoch++;
    for (int g = 0; g < s->n_groups; g++) {
        double lr = recursive_lr(s, g, optim_sgd_get_lr(s->opt, g));
        /* A negative lr can only come from a negative base (refused by optim_sgd); keep the
         * optimizer valid anyway. */
        if (!(lr >= 0.0)) lr = 0.0;
        optim_sgd_set_lr(s->opt, g, lr);
        s->last_lrs[g] = lr;
    }
    return TORCH_OK;
}

optim_lr_scheduler_kind optim_lr_scheduler_type(const optim_lr_scheduler *s) { return s ? s->kind : OPTIM_LR_STEP; }

double optim_lr_scheduler_get_last_lr(const optim_lr_scheduler *s, int group) {
    if (!s || group < 0 || group >= s->n_groups) return -1;
    return s->last_lrs[group];
}

double optim_lr_scheduler_closed_form_lr(const optim_lr_scheduler *s, int group) {
    if (!s || group < 0 || group >= s->n_groups) return -1;
    double base = s->base_lrs[group];
    if (s->kind == OPTIM_LR_STEP) return base * pow(s->gamma, (double)(s->last_epoch / s->step_size));
    return s->eta_min + (base - s->eta_min) * (1 + cos(PI * (double)s->last_epoch / (double)s->T_max)) / 2;
}

int64_t optim_lr_scheduler_last_epoch(const optim_lr_scheduler *s) { return s ? s->last_epoch : -1; }

optim_lr_scheduler_state optim_lr_scheduler_get_state(const optim_lr_scheduler *s) {
    if (!s) return (optim_lr_scheduler_state){0};
    return (optim_lr_scheduler_state){.kind = (int)s->kind,
                                      .last_epoch = s->last_epoch,
                                      .step_count = s->step_count,
                                      .n_groups = s->n_groups,
                                      .base_lrs = s->base_lrs,
                                      .last_lrs = s->last_lrs};
}

torch_status optim_lr_scheduler_set_state(optim_lr_scheduler *s, const optim_lr_scheduler_state *st) {
    static const char *fname = "optim_lr_scheduler_set_state";
    if (!s || !st) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
    if (st->kind != (int)s->kind)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: state is for scheduler kind %d, this scheduler is %d",
                           fname, st->kind, (int)s->kind);
    if (st->n_groups != s->n_groups)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: state has %d parameter groups, the scheduler has %d",
                           fname, st->n_groups, s->n_groups);
    if (st->last_epoch < 0 || st->step_count < 1)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: invalid last_epoch %lld or step count %lld", fname,
                           (long long)st->last_epoch, (long long)st->step_count);
    for (int g = 0; g < st->n_groups; g++)
        if (!st->base_lrs || !st->last_lrs || !(st->base_lrs[g] >= 0.0) || !(st->last_lrs[g] >= 0.0) ||
            !isfinite(st->base_lrs[g]) || !isfinite(st->last_lrs[g]))
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: invalid learning rate for group %d", fname, g);
    s->last_epoch = st->last_epoch;
    s->step_count = st->step_count;
    if (s->base_lrs != st->base_lrs) memmove(s->base_lrs, st->base_lrs, (size_t)s->n_groups * sizeof(double));
    if (s->last_lrs != st->last_lrs) memmove(s->last_lrs, st->last_lrs, (size_t)s->n_groups * sizeof(double));
    return TORCH_OK;
}
