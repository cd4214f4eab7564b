/* optimizer.c — torch.optim.Optimizer's machinery, once for every optimizer: parameter groups,
 * the order of a step (check, allocate, then move), state dicts. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "optimizer_impl.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

/* ---- construction ------------------------------------------------------------------------------- */

/* Whether t is already one of opt's parameters. */
static bool has_param(const optim_optimizer *opt, const tensor *t) {
    for (ptrdiff_t i = 0; opt && i < arrlen(opt->params); i++)
        if (opt->params[i].param == t) return true;
    return false;
}

/* Checks a would-be group against PyTorch's rules, changing nothing. */
static torch_status check_group(const optim_ops *ops, const char *fname, const optim_optimizer *opt,
                                const nn_tensor_dict *params, const void *options) {
    if (!options) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: options is NULL", fname);
    torch_status st = ops->check_options(fname, options);
    if (st != TORCH_OK) return st;
    if (!params) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: params is NULL", fname);
    if (params->count == 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: optimizer got an empty parameter list", fname);
    for (int64_t i = 0; i < params->count; i++) {
        const char *name = params->items[i].name;
        const tensor *t = params->items[i].value;
        if (!t) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: parameter \"%s\" is NULL", fname, name);
        if (!tensor_is_leaf(t))
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: can't optimize a non-leaf Tensor (\"%s\")", fname,
                               name);
        if (t->dtype != TORCH_FLOAT32)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: parameter \"%s\" must be float32 (got %s)", fname,
                               name, torch_dtype_name(t->dtype));
        if (!tensor_is_contiguous(t))
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: parameter \"%s\" is not contiguous", fname, name);
        if (has_param(opt, t))
            return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                               "%s: some parameters appear in more than one parameter group (\"%s\")", fname, name);
        for (int64_t j = 0; j < i; j++)
            if (params->items[j].value == t)
                return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                                   "%s: optimizer contains a parameter group with duplicate parameters (\"%s\")",
                                   fname, name);
    }
    return TORCH_OK;
}

/* Appends a checked group; on out-of-memory the optimizer is restored. */
static torch_status append_group(optim_optimizer *opt, const char *fname, const nn_tensor_dict *params,
                                 const void *options) {
    ptrdiff_t n0 = arrlen(opt->params);
    void *o = malloc(opt->ops->options_size);
    bool ok = o != NULL;
    for (int64_t i = 0; ok && i < params->count; i++) {
        char *name = strdup(params->items[i].name);
        if (!(ok = name != NULL)) break;
        optim_param_entry p = {.param = tensor_retain(params->items[i].value), .name = name};
        arrput(opt->params, p);
    }
    if (!ok) {
        for (ptrdiff_t j = n0; j < arrlen(opt->params); j++) {
            tensor_free(opt->params[j].param);
            free(opt->params[j].name);
        }
        arrsetlen(opt->params, n0);
        free(o);
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    }
    memcpy(o, options, opt->ops->options_size);
    optim_group g = {.begin = n0, .end = arrlen(opt->params), .options = o};
    arrput(opt->groups, g);
    return TORCH_OK;
}

optim_optimizer *optim_new(const optim_ops *ops, const char *fname, const nn_tensor_dict *params,
                           const void *options) {
    if (check_group(ops, fname, NULL, params, options) != TORCH_OK) return NULL;
    optim_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        return NULL;
    }
    opt->ops = ops;
    if (append_group(opt, fname, params, options) != TORCH_OK) {
        optim_free(opt);
        return NULL;
    }
    return opt;
}

/* The error for an optimizer of the wrong kind ("optim_sgd_group_options: this is Adam, not SGD"). */
static bool is_kind(const optim_optimizer *opt, const optim_ops *ops, const optim_ops *also, const char *fname) {
    if (!opt) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: optimizer is NULL", fname);
        return false;
    }
    if (opt->ops == ops || (also && opt->ops == also)) return true;
    torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: the optimizer is %s, not %s%s%s", fname, opt->ops->name, ops->name,
                also ? " or " : "", also ? also->name : "");
    return false;
}

torch_status optim_add_group(optim_optimizer *opt, const optim_ops *ops, const char *fname,
                             const nn_tensor_dict *params, const void *options) {
    if (!is_kind(opt, ops, NULL, fname)) return torch_last_status();
    torch_status st = check_group(ops, fname, opt, params, options);
    return st != TORCH_OK ? st : append_group(opt, fname, params, options);
}

void optim_free(optim_optimizer *opt) {
    if (!opt) return;
    for (ptrdiff_t i = 0; i < arrlen(opt->params); i++) {
        tensor_free(opt->params[i].param);
        for (int k = 0; k < OPTIM_MAX_STATE; k++) tensor_free(opt->params[i].state[k]);
        free(opt->params[i].name);
    }
    for (ptrdiff_t g = 0; g < arrlen(opt->groups); g++) free(opt->groups[g].options);
    arrfree(opt->params);
    arrfree(opt->groups);
    free(opt);
}

const char *optim_name(const optim_optimizer *opt) { return opt ? opt->ops->name : "(null)"; }

/* ---- groups and options -------------------------------------------------------------------------- */

static bool group_ok(const optim_optimizer *opt, const char *fname, int group) {
    if (group >= 0 && group < arrlen(opt->groups)) return true;
    torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: group %d out of range (%d groups)", fname, group,
                (int)arrlen(opt->groups));
    return false;
}

void *optim_group_options_of(const optim_optimizer *opt, const optim_ops *ops, const optim_ops *also,
                             const char *fname, int group) {
    if (!is_kind(opt, ops, also, fname) || !group_ok(opt, fname, group)) return NULL;
    return opt->groups[group].options;
}

torch_status optim_set_group_options(optim_optimizer *opt, const char *fname, int group, const void *options) {
    if (!options) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: options is NULL", fname);
    torch_status st = opt->ops->check_options(fname, options);
    if (st != TORCH_OK) return st;
    memcpy(opt->groups[group].options, options, opt->ops->options_size);
    return TORCH_OK;
}

static double *lr_of(const optim_optimizer *opt, int group) {
    return (double *)((char *)opt->groups[group].options + opt->ops->lr_offset);
}

int optim_num_groups(const optim_optimizer *opt) { return opt ? (int)arrlen(opt->groups) : 0; }

int64_t optim_num_params(const optim_optimizer *opt) { return opt ? (int64_t)arrlen(opt->params) : 0; }

int64_t optim_group_size(const optim_optimizer *opt, int group) {
    if (!opt || group < 0 || group >= arrlen(opt->groups)) return 0;
    return opt->groups[group].end - opt->groups[group].begin;
}

double optim_get_lr(const optim_optimizer *opt, int group) {
    if (!opt || group < 0 || group >= arrlen(opt->groups)) return -1;
    return *lr_of(opt, group);
}

torch_status optim_set_lr(optim_optimizer *opt, int group, double lr) {
    if (!opt) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_set_lr: optimizer is NULL");
    if (!group_ok(opt, "optim_set_lr", group)) return torch_last_status();
    if (!(lr >= 0.0) || !isfinite(lr))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_set_lr: Invalid learning rate: %g", lr);
    *lr_of(opt, group) = lr;
    return TORCH_OK;
}

double optim_initial_lr(optim_optimizer *opt, int group) {
    optim_group *g = &opt->groups[group];
    if (!g->has_initial_lr) {
        g->initial_lr = *lr_of(opt, group);
        g->has_initial_lr = true;
    }
    return g->initial_lr;
}

tensor *optim_param(const optim_optimizer *opt, int64_t index, const char **name) {
    if (!opt || index < 0 || index >= arrlen(opt->params)) return NULL;
    if (name) *name = opt->params[index].name;
    return opt->params[index].param;
}

static int state_slot(const optim_ops *ops, const char *key) {
    for (int k = 0; key && k < ops->n_state; k++)
        if (strcmp(ops->state[k].name, key) == 0) return k;
    return -1;
}

tensor *optim_state(const optim_optimizer *opt, int64_t index, const char *key) {
    if (!opt || index < 0 || index >= arrlen(opt->params)) return NULL;
    int k = state_slot(opt->ops, key);
    return k < 0 ? NULL : opt->params[index].state[k];
}

/* ---- the step ------------------------------------------------------------------------------------ */

torch_status optim_register_step_pre_hook(optim_optimizer *opt, optim_step_pre_hook hook, void *ctx) {
    if (!opt) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_register_step_pre_hook: optimizer is NULL");
    if (hook && opt->pre_hook)
        return torch_error(TORCH_ERR_INVALID_STATE, "optim_register_step_pre_hook: %s already has a step pre-hook "
                           "(remove it first: hook NULL)", opt->ops->name);
    opt->pre_hook = hook;
    opt->pre_hook_ctx = hook ? ctx : NULL;
    return TORCH_OK;
}

torch_status optim_step(optim_optimizer *opt) {
    static const char *fname = "optim_step";
    if (!opt) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: optimizer is NULL", fname);
    const optim_ops *ops = opt->ops;
    ptrdiff_t n = arrlen(opt->params);
    if (n == 0) return opt->pre_hook ? opt->pre_hook(opt, opt->pre_hook_ctx) : TORCH_OK;
    /* Check every gradient and allocate every new state tensor before the first parameter moves. */
    char a[96], b[96];
    for (ptrdiff_t i = 0; i < n; i++) {
        const tensor *p = opt->params[i].param, *g = p->grad;
        if (g && (g->dtype != TORCH_FLOAT32 || !tensor_same_shape(g, p)))
            return torch_error(TORCH_ERR_SHAPE, "%s (%s): gradient of \"%s\" is %s %s, parameter is %s", fname,
                               ops->name, opt->params[i].name, torch_dtype_name(g->dtype),
                               torch_shape_str(g->ndim, g->shape, a, sizeof a),
                               torch_shape_str(p->ndim, p->shape, b, sizeof b));
    }
    torch_status hooked = opt->pre_hook ? opt->pre_hook(opt, opt->pre_hook_ctx) : TORCH_OK;
    if (hooked != TORCH_OK) return hooked;
    tensor **grads = calloc((size_t)n, sizeof *grads);
    tensor **fresh = calloc((size_t)n * OPTIM_MAX_STATE, sizeof *fresh);
    torch_status st = grads && fresh ? TORCH_OK : torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    for (ptrdiff_t gi = 0; st == TORCH_OK && gi < arrlen(opt->groups); gi++) {
        const optim_group *grp = &opt->groups[gi];
        for (int64_t i = grp->begin; st == TORCH_OK && i < grp->end; i++) {
            const optim_param_entry *sp = &opt->params[i];
            if (!sp->param->grad) continue;
            if (!(grads[i] = tensor_contiguous(sp->param->grad))) st = torch_last_status();
            for (int k = 0; st == TORCH_OK && k < ops->n_state; k++) {
                if (sp->state[k] || !ops->needs_state(grp->options, k)) continue;
                tensor **f = &fresh[i * OPTIM_MAX_STATE + k];
                *f = ops->state[k].scalar ? torch_zeros(0, NULL) : torch_zeros_like(sp->param);
                if (!*f) st = torch_last_status();
            }
        }
    }
    for (ptrdiff_t gi = 0; st == TORCH_OK && gi < arrlen(opt->groups); gi++) {
        const optim_group *grp = &opt->groups[gi];
        for (int64_t i = grp->begin; i < grp->end; i++) {
            optim_param_entry *sp = &opt->params[i];
            if (!grads[i]) continue;
            unsigned fresh_mask = 0;
            for (int k = 0; k < ops->n_state; k++) {
                tensor **f = &fresh[i * OPTIM_MAX_STATE + k];
                if (!*f) continue;
                sp->state[k] = *f;
                *f = NULL;
                fresh_mask |= 1u << k;
            }
            ops->update(grp->options, tensor_data_f32(sp->param), tensor_data_f32(grads[i]), sp->param->numel,
                        sp->state, fresh_mask);
            tensor_bump_version(sp->param); /* a graph that saved it can no longer backward */
            for (int k = 0; k < ops->n_state; k++)
                if (sp->state[k]) tensor_bump_version(sp->state[k]);
        }
    }
    for (ptrdiff_t i = 0; i < n && grads && fresh; i++) {
        tensor_free(grads[i]);
        for (int k = 0; k < OPTIM_MAX_STATE; k++) tensor_free(fresh[i * OPTIM_MAX_STATE + k]);
    }
    free(grads);
    free(fresh);
    return st;
}

void optim_zero_grad(optim_optimizer *opt) {
    if (!opt) return;
    for (ptrdiff_t i = 0; i < arrlen(opt->params); i++) tensor_zero_grad(opt->params[i].param);
}

void optim_zero_grad_in_place(optim_optimizer *opt) {
    if (!opt) return;
    for (ptrdiff_t i = 0; i < arrlen(opt->params); i++) tensor_zero_grad_in_place(opt->params[i].param);
}

/* ---- state dicts ----------------------------------------------------------------------------------- */

nn_tensor_dict *optim_state_dict(const optim_optimizer *opt) {
    if (!opt) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_state_dict: optimizer is NULL");
        return NULL;
    }
    nn_tensor_dict *d = nn_tensor_dict_new();
    for (ptrdiff_t i = 0; d && i < arrlen(opt->params); i++) {
        for (int k = 0; k < opt->ops->n_state; k++) {
            if (!opt->params[i].state[k]) continue;
            char key[96];
            snprintf(key, sizeof key, "state.%td.%s", i, opt->ops->state[k].name);
            if (nn_tensor_dict_set(d, key, opt->params[i].state[k]) != TORCH_OK) {
                nn_tensor_dict_free(d);
                return NULL;
            }
        }
    }
    return d;
}

/* Splits "state.<index>.<rest>" strictly (decimal, no sign, no leading zeros). */
static bool parse_state_key(const char *key, int64_t *index, const char **rest) {
    static const char prefix[] = "state.";
    if (strncmp(key, prefix, sizeof prefix - 1) != 0) return false;
    const char *p = key + sizeof prefix - 1;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return false;
    int64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (*p - '0');
    }
    if (*p != '.') return false;
    *index = v;
    *rest = p + 1;
    return true;
}

/* "step, exp_avg, exp_avg_sq, max_exp_avg_sq" */
static void list_keys(const optim_ops *ops, char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (int k = 0; k < ops->n_state && used < size; k++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", k ? ", " : "", ops->state[k].name);
}

/* Checks one entry of a state dict; *slot and *index say where it goes. */
static torch_status check_entry(const optim_optimizer *opt, const char *fname, const char *key, const tensor *t,
                                int64_t *index, int *slot) {
    const optim_ops *ops = opt->ops;
    ptrdiff_t n = arrlen(opt->params);
    const char *rest = NULL;
    char keys[128], a[96], b[96];
    list_keys(ops, keys, sizeof keys);
    if (!parse_state_key(key, index, &rest))
        return torch_error(TORCH_ERR_KEY, "%s: unexpected key \"%s\" (expected state.<index>.<name>)", fname, key);
    if (*index >= n)
        return torch_error(TORCH_ERR_KEY, "%s: unexpected key \"%s\" (the optimizer has %td parameters)", fname, key,
                           n);
    if ((*slot = state_slot(ops, rest)) < 0)
        return torch_error(TORCH_ERR_KEY,
                           "%s: unexpected key \"%s\": %s keeps no \"%s\" (its state is %s); is this the state of "
                           "another optimizer?",
                           fname, key, ops->name, rest, keys);
    const tensor *p = opt->params[*index].param;
    bool scalar = ops->state[*slot].scalar;
    bool shape_ok = t && (scalar ? t->numel == 1 && t->ndim <= 1 : tensor_same_shape(t, p));
    if (!t || t->dtype != TORCH_FLOAT32 || !shape_ok)
        return torch_error(TORCH_ERR_KEY, "%s: size mismatch for \"%s\": got %s %s, expected float32 %s (%s\"%s\")",
                           fname, key, t ? torch_dtype_name(t->dtype) : "NULL",
                           t ? torch_shape_str(t->ndim, t->shape, a, sizeof a) : "", scalar ? "[]" :
                           torch_shape_str(p->ndim, p->shape, b, sizeof b), scalar ? "a scalar for " : "parameter ",
                           opt->params[*index].name);
    return TORCH_OK;
}

void optim_staged_free(const optim_optimizer *opt, tensor **staged) {
    if (!staged) return;
    for (ptrdiff_t i = 0; i < arrlen(opt->params) * OPTIM_MAX_STATE; i++) tensor_free(staged[i]);
    free(staged);
}

torch_status optim_stage_state(const optim_optimizer *opt, const char *fname, const nn_tensor_dict *d,
                               void *const *group_options, tensor ***staged) {
    if (!opt || !d) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
    ptrdiff_t n = arrlen(opt->params);
    tensor **s = calloc((size_t)(n ? n : 1) * OPTIM_MAX_STATE, sizeof *s);
    if (!s) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    torch_status st = TORCH_OK;
    for (int64_t e = 0; st == TORCH_OK && e < d->count; e++) {
        int64_t i = 0;
        int k = 0;
        st = check_entry(opt, fname, d->items[e].name, d->items[e].value, &i, &k);
        if (st == TORCH_OK && s[i * OPTIM_MAX_STATE + k])
            st = torch_error(TORCH_ERR_KEY, "%s: key \"%s\" appears twice", fname, d->items[e].name);
        /* a copy, with the parameter's shape (a step saved as [1] becomes a scalar) */
        if (st == TORCH_OK) {
            const tensor *p = opt->params[i].param;
            tensor *c = tensor_contiguous(d->items[e].value);
            tensor *r = c ? torch_empty(opt->ops->state[k].scalar ? 0 : p->ndim, p->shape) : NULL;
            if (r) memcpy(tensor_data_f32(r), tensor_data_f32(c), (size_t)r->numel * sizeof(float));
            tensor_free(c);
            if (!(s[i * OPTIM_MAX_STATE + k] = r)) st = torch_last_status();
        }
    }
    for (ptrdiff_t g = 0; st == TORCH_OK && g < arrlen(opt->groups); g++) {
        const void *o = group_options ? group_options[g] : opt->groups[g].options;
        for (int64_t i = opt->groups[g].begin; st == TORCH_OK && i < opt->groups[g].end; i++)
            st = opt->ops->check_state(fname, o, i, opt->params[i].name, &s[i * OPTIM_MAX_STATE]);
    }
    if (st != TORCH_OK) {
        optim_staged_free(opt, s);
        return st;
    }
    *staged = s;
    return TORCH_OK;
}

void optim_commit_state(optim_optimizer *opt, tensor **staged) {
    for (ptrdiff_t i = 0; i < arrlen(opt->params); i++)
        for (int k = 0; k < OPTIM_MAX_STATE; k++) {
            tensor_free(opt->params[i].state[k]);
            opt->params[i].state[k] = staged[i * OPTIM_MAX_STATE + k];
        }
    free(staged);
}

torch_status optim_load_state_dict(optim_optimizer *opt, const nn_tensor_dict *d) {
    tensor **staged = NULL;
    torch_status st = optim_stage_state(opt, "optim_load_state_dict", d, NULL, &staged);
    if (st == TORCH_OK) optim_commit_state(opt, staged);
    return st;
}

/* ---- parameter groups by kind ---------------------------------------------------------------------- */

torch_status optim_split_weight_decay(const nn_tensor_dict *params, nn_tensor_dict **decay,
                                      nn_tensor_dict **no_decay) {
    if (!params || !decay || !no_decay)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_split_weight_decay: input is NULL");
    nn_tensor_dict *yes = nn_tensor_dict_new(), *no = nn_tensor_dict_new();
    torch_status st = yes && no ? TORCH_OK : torch_last_status();
    for (int64_t i = 0; st == TORCH_OK && i < params->count; i++) {
        tensor *t = params->items[i].value;
        if (!t) {
            st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_split_weight_decay: parameter \"%s\" is NULL",
                             params->items[i].name);
            break;
        }
        st = nn_tensor_dict_set(t->ndim <= 1 ? no : yes, params->items[i].name, t);
    }
    if (st != TORCH_OK) {
        nn_tensor_dict_free(yes);
        nn_tensor_dict_free(no);
        return st;
    }
    *decay = yes;
    *no_decay = no;
    return TORCH_OK;
}
