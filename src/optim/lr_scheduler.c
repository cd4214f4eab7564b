/* lr_scheduler.c — StepLR, CosineAnnealingLR, LinearLR and SequentialLR, transcribed from
 * PyTorch 1.13's get_lr(), _get_closed_form_lr() and step(); their state as JSON. */
#include "lr_scheduler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optimizer_impl.h"
#include "state_json.h"

struct optim_lr_scheduler {
    optim_lr_scheduler_kind kind;
    optim_optimizer *opt;          /* borrowed */
    int              n_groups;
    double          *base_lrs;     /* n_groups */
    double          *last_lrs;     /* n_groups */
    int64_t          last_epoch;
    int64_t          step_count;   /* PyTorch's _step_count */
    int64_t          step_size;    /* StepLR */
    double           gamma;
    int64_t          T_max;        /* CosineAnnealingLR */
    double           eta_min;
    double           start_factor; /* LinearLR */
    double           end_factor;
    int64_t          total_iters;
    optim_lr_scheduler **children; /* SequentialLR: n_children, owned */
    int64_t         *milestones;   /* n_children - 1 */
    int              n_children;
    bool             owned;        /* by a SequentialLR */
};

static const char *const kind_names[] = {"StepLR", "CosineAnnealingLR", "LinearLR", "SequentialLR"};
static const double PI = 3.14159265358979323846;

/* Frees s and its children, owned or not. */
static void destroy(optim_lr_scheduler *s) {
    if (!s) return;
    for (int i = 0; s->children && i < s->n_children; i++) destroy(s->children[i]);
    free(s->children);
    free(s->milestones);
    free(s->base_lrs);
    free(s->last_lrs);
    free(s);
}

void optim_lr_scheduler_free(optim_lr_scheduler *s) {
    if (s && !s->owned) destroy(s); /* a SequentialLR's scheduler goes with it */
}

/* A zeroed scheduler of this shape (children slots empty); NULL with the error set. */
static optim_lr_scheduler *alloc_sched(const char *fname, optim_lr_scheduler_kind kind, optim_optimizer *opt,
                                       int n_groups, int n_children) {
    optim_lr_scheduler *s = calloc(1, sizeof *s);
    if (s) {
        s->kind = kind;
        s->opt = opt;
        s->n_groups = n_groups;
        s->n_children = n_children;
        s->base_lrs = calloc((size_t)n_groups + 1, sizeof(double));
        s->last_lrs = calloc((size_t)n_groups + 1, sizeof(double));
        if (n_children) {
            s->children = calloc((size_t)n_children, sizeof *s->children);
            s->milestones = calloc((size_t)n_children, sizeof *s->milestones);
        }
    }
    if (!s || !s->base_lrs || !s->last_lrs || (n_children && (!s->children || !s->milestones))) {
        destroy(s);
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        return NULL;
    }
    return s;
}

/* ---- the schedules -------------------------------------------------------------------------------- */

/* Python's a % b for b > 0: the result has b's sign. */
static int64_t py_mod(int64_t a, int64_t b) {
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

/* get_lr() for one group, given the group's current lr (the recursive form). */
static double recursive_lr(const optim_lr_scheduler *s, int g, double lr) {
    int64_t t = s->last_epoch;
    switch (s->kind) {
    case OPTIM_LR_STEP:
        return t == 0 || t % s->step_size != 0 ? lr : lr * s->gamma;
    case OPTIM_LR_COSINE_ANNEALING: {
        double T = (double)s->T_max, base = s->base_lrs[g], eta = s->eta_min;
        if (t == 0) return lr;
        if (s->step_count == 1 && t > 0) return eta + (base - eta) * (1 + cos((double)t * PI / T)) / 2;
        if (py_mod(t - 1 - s->T_max, 2 * s->T_max) == 0) return lr + (base - eta) * (1 - cos(PI / T)) / 2;
        return (1 + cos(PI * (double)t / T)) / (1 + cos(PI * (double)(t - 1) / T)) * (lr - eta) + eta;
    }
    case OPTIM_LR_LINEAR: {
        double sf = s->start_factor, ef = s->end_factor;
        if (t == 0) return lr * sf;
        if (t > s->total_iters) return lr;
        return lr * (1. + (ef - sf) / ((double)s->total_iters * sf + (double)(t - 1) * (ef - sf)));
    }
    case OPTIM_LR_SEQUENTIAL: break;
    }
    return lr;
}

static double closed_form(const optim_lr_scheduler *s, int g) {
    double base = s->base_lrs[g];
    int64_t t = s->last_epoch;
    switch (s->kind) {
    case OPTIM_LR_STEP: return base * pow(s->gamma, (double)(t / s->step_size));
    case OPTIM_LR_COSINE_ANNEALING:
        return s->eta_min + (base - s->eta_min) * (1 + cos(PI * (double)t / (double)s->T_max)) / 2;
    case OPTIM_LR_LINEAR: {
        double k = (double)(t < s->total_iters ? t : s->total_iters);
        return base * (s->start_factor + (s->end_factor - s->start_factor) * k / (double)s->total_iters);
    }
    case OPTIM_LR_SEQUENTIAL: break;
    }
    return -1;
}

/* Writes the new lrs. A negative lr can only come from a negative base (refused by every
 * optimizer); keep the optimizer valid anyway. */
static void set_lrs(optim_lr_scheduler *s, bool closed) {
    for (int g = 0; g < s->n_groups; g++) {
        double lr = closed ? closed_form(s, g) : recursive_lr(s, g, optim_get_lr(s->opt, g));
        if (!(lr >= 0.0) || !isfinite(lr)) lr = 0.0;
        optim_set_lr(s->opt, g, lr);
        s->last_lrs[g] = lr;
    }
}

/* PyTorch's step() and step(epoch); the latter uses the closed form. */
static void step_once(optim_lr_scheduler *s);

static void step_to(optim_lr_scheduler *s, int64_t epoch) {
    s->step_count++;
    s->last_epoch = epoch;
    set_lrs(s, true);
}

static void step_once(optim_lr_scheduler *s) {
    if (s->kind != OPTIM_LR_SEQUENTIAL) {
        s->step_count++;
        s->last_epoch++;
        set_lrs(s, false);
        return;
    }
    s->last_epoch++;
    int idx = 0; /* bisect_right(milestones, last_epoch) */
    while (idx < s->n_children - 1 && s->milestones[idx] <= s->last_epoch) idx++;
    optim_lr_scheduler *child = s->children[idx];
    if (idx > 0 && s->milestones[idx - 1] == s->last_epoch) step_to(child, 0);
    else step_once(child);
    memcpy(s->last_lrs, child->last_lrs, (size_t)s->n_groups * sizeof(double));
}

/* PyTorch's _initial_step(): the step that construction counts. */
static void initial_step(optim_lr_scheduler *s) {
    s->step_count = 0;
    step_once(s);
}

/* A base schedule: base lrs from each group's initial_lr, then the initial step. */
static optim_lr_scheduler *base_new(const char *fname, optim_optimizer *opt, optim_lr_scheduler_kind kind) {
    if (!opt) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: optimizer is NULL", fname);
        return NULL;
    }
    optim_lr_scheduler *s = alloc_sched(fname, kind, opt, optim_num_groups(opt), 0);
    if (!s) return NULL;
    for (int g = 0; g < s->n_groups; g++) s->base_lrs[g] = optim_initial_lr(opt, g);
    s->last_epoch = -1;
    return s;
}

optim_lr_scheduler *optim_step_lr(optim_optimizer *opt, int64_t step_size, double gamma) {
    if (step_size <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "StepLR: step_size must be positive (got %lld)", (long long)step_size);
        return NULL;
    }
    if (!(gamma >= 0.0) || !isfinite(gamma)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "StepLR: gamma must be finite and non-negative (got %g)", gamma);
        return NULL;
    }
    optim_lr_scheduler *s = base_new("StepLR", opt, OPTIM_LR_STEP);
    if (s) {
        s->step_size = step_size;
        s->gamma = gamma;
        initial_step(s);
    }
    return s;
}

optim_lr_scheduler *optim_cosine_annealing_lr(optim_optimizer *opt, int64_t T_max, double eta_min) {
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
    optim_lr_scheduler *s = base_new("CosineAnnealingLR", opt, OPTIM_LR_COSINE_ANNEALING);
    if (s) {
        s->T_max = T_max;
        s->eta_min = eta_min;
        initial_step(s);
    }
    return s;
}

optim_lr_scheduler *optim_linear_lr(optim_optimizer *opt, double start_factor, double end_factor,
                                    int64_t total_iters) {
    if (!(start_factor > 0.0 && start_factor <= 1.0)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "LinearLR: Starting multiplicative factor expected to be greater than 0 and less or equal to 1 "
                    "(got %g)", start_factor);
        return NULL;
    }
    if (!(end_factor >= 0.0 && end_factor <= 1.0)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "LinearLR: Ending multiplicative factor expected to be between 0 and 1 (got %g)", end_factor);
        return NULL;
    }
    if (total_iters <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "LinearLR: total_iters must be positive (got %lld)",
                    (long long)total_iters);
        return NULL;
    }
    optim_lr_scheduler *s = base_new("LinearLR", opt, OPTIM_LR_LINEAR);
    if (s) {
        s->start_factor = start_factor;
        s->end_factor = end_factor;
        s->total_iters = total_iters;
        initial_step(s);
    }
    return s;
}

optim_lr_scheduler *optim_sequential_lr(optim_optimizer *opt, optim_lr_scheduler *const *schedulers, int n,
                                        const int64_t *milestones) {
    static const char *fname = "SequentialLR";
    if (!opt || !schedulers || n < 1) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected an optimizer and at least one scheduler (got %d)",
                    fname, n);
        return NULL;
    }
    if (n > 1 && !milestones) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected %d milestones for %d schedulers (got NULL)", fname, n - 1,
                    n);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const optim_lr_scheduler *c = schedulers[i];
        const char *why = !c ? "is NULL"
                          : c->opt != opt ? "belongs to another optimizer"
                          : c->kind == OPTIM_LR_SEQUENTIAL ? "is a SequentialLR itself"
                          : c->owned ? "already belongs to a SequentialLR"
                          : c->n_groups != optim_num_groups(opt) ? "was made for another number of parameter groups"
                                                                 : NULL;
        for (int j = 0; !why && j < i; j++)
            if (schedulers[j] == c) why = "is given twice";
        if (why) {
            torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: the scheduler at index %d %s", fname, i, why);
            return NULL;
        }
    }
    for (int i = 0; i + 1 < n; i++)
        if (milestones[i] <= (i ? milestones[i - 1] : 0)) {
            torch_error(TORCH_ERR_INVALID_ARGUMENT,
                        "%s: milestones must be positive and strictly increasing (milestone %d is %lld)", fname, i,
                        (long long)milestones[i]);
            return NULL;
        }
    optim_lr_scheduler *s = alloc_sched(fname, OPTIM_LR_SEQUENTIAL, opt, optim_num_groups(opt), n);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        s->children[i] = schedulers[i];
        schedulers[i]->owned = true;
        schedulers[i]->last_epoch -= 1; /* "undo" the step each did at construction */
        if (i + 1 < n) s->milestones[i] = milestones[i];
    }
    for (int g = 0; g < s->n_groups; g++) optim_set_lr(opt, g, optim_initial_lr(opt, g));
    initial_step(s->children[0]);
    memcpy(s->last_lrs, s->children[0]->last_lrs, (size_t)s->n_groups * sizeof(double));
    s->last_epoch = 0;
    return s;
}

torch_status optim_lr_scheduler_step(optim_lr_scheduler *s) {
    static const char *fname = "optim_lr_scheduler_step";
    if (!s) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: scheduler is NULL", fname);
    if (s->owned)
        return torch_error(TORCH_ERR_INVALID_STATE,
                           "%s: this %s belongs to a SequentialLR, which steps it: step the SequentialLR", fname,
                           kind_names[s->kind]);
    if (optim_num_groups(s->opt) != s->n_groups)
        return torch_error(TORCH_ERR_INVALID_STATE,
                           "%s: the optimizer has %d parameter groups, the scheduler was made for %d", fname,
                           optim_num_groups(s->opt), s->n_groups);
    step_once(s);
    return TORCH_OK;
}

optim_lr_scheduler_kind optim_lr_scheduler_type(const optim_lr_scheduler *s) { return s ? s->kind : OPTIM_LR_STEP; }

double optim_lr_scheduler_get_last_lr(const optim_lr_scheduler *s, int group) {
    if (!s || group < 0 || group >= s->n_groups) return -1;
    return s->last_lrs[group];
}

double optim_lr_scheduler_closed_form_lr(const optim_lr_scheduler *s, int group) {
    if (!s || group < 0 || group >= s->n_groups) return -1;
    return closed_form(s, group);
}

int64_t optim_lr_scheduler_last_epoch(const optim_lr_scheduler *s) { return s ? s->last_epoch : -1; }

/* ---- state as JSON -------------------------------------------------------------------------------- */

cJSON *optim_lr_scheduler_to_json(const optim_lr_scheduler *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    bool ok = cJSON_AddStringToObject(o, "kind", kind_names[s->kind]) &&
              cJSON_AddNumberToObject(o, "last_epoch", (double)s->last_epoch);
    switch (s->kind) {
    case OPTIM_LR_STEP:
        ok = ok && cJSON_AddNumberToObject(o, "step_size", (double)s->step_size) &&
             cJSON_AddNumberToObject(o, "gamma", s->gamma);
        break;
    case OPTIM_LR_COSINE_ANNEALING:
        ok = ok && cJSON_AddNumberToObject(o, "T_max", (double)s->T_max) &&
             cJSON_AddNumberToObject(o, "eta_min", s->eta_min);
        break;
    case OPTIM_LR_LINEAR:
        ok = ok && cJSON_AddNumberToObject(o, "start_factor", s->start_factor) &&
             cJSON_AddNumberToObject(o, "end_factor", s->end_factor) &&
             cJSON_AddNumberToObject(o, "total_iters", (double)s->total_iters);
        break;
    case OPTIM_LR_SEQUENTIAL: {
        cJSON *ms = cJSON_AddArrayToObject(o, "milestones"), *cs = cJSON_AddArrayToObject(o, "schedulers");
        ok = ok && ms && cs;
        for (int i = 0; ok && i + 1 < s->n_children; i++) {
            cJSON *m = cJSON_CreateNumber((double)s->milestones[i]);
            ok = m && cJSON_AddItemToArray(ms, m);
        }
        for (int i = 0; ok && i < s->n_children; i++) {
            cJSON *c = optim_lr_scheduler_to_json(s->children[i]);
            ok = c && cJSON_AddItemToArray(cs, c);
        }
        break;
    }
    }
    if (ok && s->kind != OPTIM_LR_SEQUENTIAL) {
        cJSON *b = cJSON_CreateDoubleArray(s->base_lrs, s->n_groups);
        ok = cJSON_AddNumberToObject(o, "step_count", (double)s->step_count) && b && cJSON_AddItemToObject(o, "base_lrs", b);
    }
    cJSON *l = ok ? cJSON_CreateDoubleArray(s->last_lrs, s->n_groups) : NULL;
    if (!l || !cJSON_AddItemToObject(o, "last_lrs", l)) {
        cJSON_Delete(l);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *optim_lr_scheduler_state_json(const optim_lr_scheduler *s) {
    if (!s) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_lr_scheduler_state_json: scheduler is NULL");
        return NULL;
    }
    cJSON *o = optim_lr_scheduler_to_json(s);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL; /* 17 digits where 15 do not read back */
    cJSON_Delete(o);
    if (!text) torch_error(TORCH_ERR_OUT_OF_MEMORY, "optim_lr_scheduler_state_json: out of memory");
    return text;
}

/* A number in [lo, hi] (lo_open: lo excluded). */
static bool json_range(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, double lo,
                       bool lo_open, double hi, double *out) {
    if (!optim_json_number(c, where, obj, key, out)) return false;
    if ((lo_open ? *out > lo : *out >= lo) && *out <= hi) return true;
    char expected[64];
    snprintf(expected, sizeof expected, "a number in %s%g, %g%s", lo_open ? "(" : "[", lo, hi,
             isinf(hi) ? ")" : "]");
    optim_json_field_error(c, where, key, cJSON_GetObjectItemCaseSensitive(obj, key), expected);
    return false;
}

static bool json_lrs(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, int n,
                     double *out) {
    if (!optim_json_doubles(c, where, obj, key, n, "one per parameter group", out)) return false;
    for (int g = 0; g < n; g++)
        if (!(out[g] >= 0)) {
            char k[64];
            snprintf(k, sizeof k, "%s[%d]", key, g);
            optim_json_field_error(c, where, k, cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(obj, key), g),
                                   "a learning rate >= 0");
            return false;
        }
    return true;
}

torch_status optim_lr_scheduler_stage(const optim_json_ctx *c, const char *where, const optim_lr_scheduler *s,
                                      const cJSON *obj, optim_lr_scheduler **staged) {
    char pre[320];
    optim_json_prefix(c, pre, sizeof pre);
    if (!cJSON_IsObject(obj)) return torch_error(TORCH_ERR_FORMAT, "%s%s is not a JSON object", pre, where);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    char quoted[40];
    snprintf(quoted, sizeof quoted, "\"%s\"", kind_names[s->kind]);
    if (!cJSON_IsString(kind)) return optim_json_field_error(c, where, "kind", kind, quoted);
    if (strcmp(kind->valuestring, kind_names[s->kind]) != 0)
        return torch_error(TORCH_ERR_KEY, "%s%s is a %.40s, this scheduler is a %s", pre, where, kind->valuestring,
                           kind_names[s->kind]);
    optim_lr_scheduler *n = alloc_sched(c->fname, s->kind, s->opt, s->n_groups, s->n_children);
    if (!n) return torch_last_status();
    bool ok = optim_json_int(c, where, obj, "last_epoch", s->owned ? -1 : 0, &n->last_epoch) &&
              json_lrs(c, where, obj, "last_lrs", n->n_groups, n->last_lrs);
    if (ok && s->kind != OPTIM_LR_SEQUENTIAL)
        ok = optim_json_int(c, where, obj, "step_count", 0, &n->step_count) &&
             json_lrs(c, where, obj, "base_lrs", n->n_groups, n->base_lrs);
    switch (s->kind) {
    case OPTIM_LR_STEP:
        ok = ok && optim_json_int(c, where, obj, "step_size", 1, &n->step_size) &&
             json_range(c, where, obj, "gamma", 0, false, INFINITY, &n->gamma);
        break;
    case OPTIM_LR_COSINE_ANNEALING:
        ok = ok && optim_json_int(c, where, obj, "T_max", 1, &n->T_max) &&
             json_range(c, where, obj, "eta_min", 0, false, INFINITY, &n->eta_min);
        break;
    case OPTIM_LR_LINEAR:
        ok = ok && json_range(c, where, obj, "start_factor", 0, true, 1, &n->start_factor) &&
             json_range(c, where, obj, "end_factor", 0, false, 1, &n->end_factor) &&
             optim_json_int(c, where, obj, "total_iters", 1, &n->total_iters);
        break;
    case OPTIM_LR_SEQUENTIAL: {
        const cJSON *cs = cJSON_GetObjectItemCaseSensitive(obj, "schedulers");
        int m = s->n_children - 1;
        double *ms = malloc(((size_t)m + 1) * sizeof *ms);
        if (ok && !ms) ok = false, torch_error(TORCH_ERR_OUT_OF_MEMORY, "%sout of memory", pre);
        ok = ok && optim_json_doubles(c, where, obj, "milestones", m, "strictly increasing whole numbers > 0", ms);
        for (int i = 0; ok && i < m; i++) {
            if (ms[i] > (i ? ms[i - 1] : 0) && ms[i] == floor(ms[i]) && ms[i] <= 9007199254740992.0) {
                n->milestones[i] = (int64_t)ms[i]; /* checked first: a cast out of range is undefined */
            } else {
                char k[32];
                snprintf(k, sizeof k, "milestones[%d]", i);
                ok = false;
                optim_json_field_error(c, where, k, cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(obj, "milestones"), i),
                                       "a whole number above the previous milestone (and above 0)");
            }
        }
        free(ms);
        if (ok && (!cJSON_IsArray(cs) || cJSON_GetArraySize(cs) != s->n_children)) {
            char expected[64];
            snprintf(expected, sizeof expected, "an array of %d scheduler states", s->n_children);
            ok = false;
            optim_json_field_error(c, where, "schedulers", cs, expected);
        }
        for (int i = 0; ok && i < s->n_children; i++) {
            char w[160];
            snprintf(w, sizeof w, "%s.schedulers[%d]", where, i);
            ok = optim_lr_scheduler_stage(c, w, s->children[i], cJSON_GetArrayItem(cs, i), &n->children[i]) ==
                 TORCH_OK;
        }
        break;
    }
    }
    if (!ok) {
        destroy(n);
        return torch_last_status();
    }
    *staged = n;
    return TORCH_OK;
}

/* Copies the state of from into s, children included, keeping s's identity. */
static void copy_state(optim_lr_scheduler *s, const optim_lr_scheduler *from) {
    s->last_epoch = from->last_epoch;
    s->step_count = from->step_count;
    s->step_size = from->step_size;
    s->gamma = from->gamma;
    s->T_max = from->T_max;
    s->eta_min = from->eta_min;
    s->start_factor = from->start_factor;
    s->end_factor = from->end_factor;
    s->total_iters = from->total_iters;
    memcpy(s->base_lrs, from->base_lrs, (size_t)s->n_groups * sizeof(double));
    memcpy(s->last_lrs, from->last_lrs, (size_t)s->n_groups * sizeof(double));
    for (int i = 0; i < s->n_children; i++) {
        if (i + 1 < s->n_children) s->milestones[i] = from->milestones[i];
        copy_state(s->children[i], from->children[i]);
    }
}

void optim_lr_scheduler_commit(optim_lr_scheduler *s, optim_lr_scheduler *staged) {
    copy_state(s, staged);
    destroy(staged);
}

torch_status optim_lr_scheduler_load_state_json(optim_lr_scheduler *s, const char *json) {
    const optim_json_ctx c = {.fname = "optim_lr_scheduler_load_state_json", .name = NULL};
    if (!s || !json) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", c.fname);
    cJSON *obj = optim_json_parse(&c, "the state", json);
    if (!obj) return torch_last_status();
    optim_lr_scheduler *staged = NULL;
    torch_status st = optim_lr_scheduler_stage(&c, "scheduler", s, obj, &staged);
    cJSON_Delete(obj);
    if (st == TORCH_OK) optim_lr_scheduler_commit(s, staged);
    return st;
}
