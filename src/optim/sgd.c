/* sgd.c — torch.optim.SGD (PyTorch 1.13), with parameter groups and momentum state. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "sgd.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

typedef struct sgd_param {
    tensor *param; /* owned reference to the live parameter */
    char   *name;  /* owned copy */
    tensor *buf;   /* owned momentum buffer, NULL until the parameter's first step with momentum */
} sgd_param;

typedef struct sgd_group {
    optim_sgd_options options;
    int64_t           begin, end; /* [begin, end) in params */
} sgd_group;

struct optim_sgd {
    sgd_param *params; /* stb_ds array; groups index into it */
    sgd_group *groups; /* stb_ds array */
};

optim_sgd_options optim_sgd_options_default(double lr) {
    return (optim_sgd_options){.lr = lr, .momentum = 0, .dampening = 0, .weight_decay = 0, .nesterov = false,
                               .maximize = false};
}

/* PyTorch's checks and messages (the NaN-safe way: !(x >= 0) also refuses NaN). */
static torch_status check_options(const char *fname, optim_sgd_options o) {
    if (!(o.lr >= 0.0)) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid learning rate: %g", fname, o.lr);
    if (!(o.momentum >= 0.0))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid momentum value: %g", fname, o.momentum);
    if (!(o.weight_decay >= 0.0))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid weight_decay value: %g", fname, o.weight_decay);
    if (!isfinite(o.dampening))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid dampening value: %g", fname, o.dampening);
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Nesterov momentum requires a momentum and zero dampening",
                           fname);
    return TORCH_OK;
}

/* Whether t is already one of opt's parameters. */
static bool has_param(const optim_sgd *opt, const tensor *t) {
    for (ptrdiff_t i = 0; opt && i < arrlen(opt->params); i++)
        if (opt->params[i].param == t) return true;
    return false;
}

/* Checks a would-be group against PyTorch's rules, changing nothing. */
static torch_status check_group(const char *fname, const optim_sgd *opt, const nn_tensor_dict *params,
                                optim_sgd_options o) {
    torch_status st = check_options(fname, o);
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
static torch_status append_group(optim_sgd *opt, const nn_tensor_dict *params, optim_sgd_options o) {
    ptrdiff_t n0 = arrlen(opt->params);
    for (int64_t i = 0; i < params->count; i++) {
        char *name = strdup(params->items[i].name);
        if (!name) {
            for (ptrdiff_t j = n0; j < arrlen(opt->params); j++) {
                tensor_free(opt->params[j].param);
                free(opt->params[j].name);
            }
            arrsetlen(opt->params, n0);
            return torch_error(TORCH_ERR_OUT_OF_MEMORY, "optim_sgd: out of memory");
        }
        sgd_param sp = {.param = tensor_retain(params->items[i].value), .name = name, .buf = NULL};
        arrput(opt->params, sp);
    }
    sgd_group g = {.options = o, .begin = n0, .end = arrlen(opt->params)};
    arrput(opt->groups, g);
    return TORCH_OK;
}

optim_sgd *optim_sgd_new(const nn_tensor_dict *params, optim_sgd_options options) {
    if (check_group("optim_sgd", NULL, params, options) != TORCH_OK) return NULL;
    optim_sgd *opt = calloc(1, sizeof *opt);
    if (!opt) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "optim_sgd: out of memory");
        return NULL;
    }
    if (append_group(opt, params, options) != TORCH_OK) {
        optim_sgd_free(opt);
        return NULL;
    }
    return opt;
}

torch_status optim_sgd_add_param_group(optim_sgd *opt, const nn_tensor_dict *params, optim_sgd_options options) {
    if (!opt) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_sgd_add_param_group: optimizer is NULL");
    torch_status st = check_group("optim_sgd_add_param_group", opt, params, options);
    return st != TORCH_OK ? st : append_group(opt, params, options);
}

void optim_sgd_free(optim_sgd *opt) {
    if (!opt) return;
    for (ptrdiff_t i = 0; i < arrlen(opt->params); i++) {
        tensor_free(opt->params[i].param);
        tensor_free(opt->params[i].buf);
        free(opt->params[i].name);
    }
    arrfree(opt->params);
    arrfree(opt->groups);
    free(opt);
}

/* ---- the update ------------------------------------------------------------------------------ */

/* One parameter's update, in float32 as PyTorch's CPU kernels do it: each coefficient rounded
 * to float first, and every `a.add_(b, alpha=c)` a fused multiply-add fma(b, c, a), as
 * PyTorch's vectorised add kernel computes it (vec::fmadd). The results then agree with
 * PyTorch to the last bit or so. first: buf is fresh and receives the copy of g. */
static void sgd_update(float *p, const float *grad, float *buf, int64_t n, const optim_sgd_options *o, bool first) {
    const float wd = (float)o->weight_decay, mom = (float)o->momentum, damp1 = (float)(1.0 - o->dampening);
    const float neg_lr = (float)-o->lr;
    for (int64_t i = 0; i < n; i++) {
        float g = o->maximize ? -grad[i] : grad[i];
        if (o->weight_decay != 0) g = fmaf(p[i], wd, g); /* d_p.add(param, alpha=weight_decay) */
        if (o->momentum != 0) {
            if (first)
                buf[i] = g;                            /* torch.clone(d_p).detach() */
            else
                buf[i] = fmaf(g, damp1, buf[i] * mom); /* buf.mul_(momentum).add_(d_p, alpha=1 - dampening) */
            g = o->nesterov ? fmaf(buf[i], mom, g) : buf[i]; /* d_p.add(buf, alpha=momentum) */
        }
        p[i] = fmaf(g, neg_lr, p[i]); /* param.add_(d_p, alpha=-lr) */
    }
}

torch_status optim_sgd_step(optim_sgd *opt) {
    if (!opt) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_sgd_step: optimizer is NULL");
    ptrdiff_t n = arrlen(opt->params);
    if (n == 0) return TORCH_OK;
    /* Check every gradient and allocate every new buffer before the first parameter moves. */
    char a[96], b[96];
    for (ptrdiff_t i = 0; i < n; i++) {
        const tensor *p = opt->params[i].param, *g = p->grad;
        if (g && (g->dtype != TORCH_FLOAT32 || !tensor_same_shape(g, p)))
            return torch_error(TORCH_ERR_SHAPE, "optim_sgd_step: gradient of \"%s\" is %s %s, parameter is %s",
                               opt->params[i].name, torch_dtype_name(g->dtype),
                               torch_shape_str(g->ndim, g->shape, a, sizeof a),
                               torch_shape_str(p->ndim, p->shape, b, sizeof b));
    }
    tensor **grads = calloc((size_t)n, sizeof *grads);
    tensor **fresh = calloc((size_t)n, sizeof *fresh);
    torch_status st = grads && fresh ? TORCH_OK : torch_error(TORCH_ERR_OUT_OF_MEMORY, "optim_sgd_step: out of memory");
    for (ptrdiff_t gi = 0; st == TORCH_OK && gi < arrlen(opt->groups); gi++) {
        const sgd_group *grp = &opt->groups[gi];
        for (int64_t i = grp->begin; st == TORCH_OK && i < grp->end; i++) {
            const sgd_param *sp = &opt->params[i];
            if (!sp->param->grad) continue;
            grads[i] = tensor_contiguous(sp->param->grad);
            if (!grads[i]) st = torch_last_status();
            else if (grp->options.momentum != 0 && !sp->buf && !(fresh[i] = torch_empty_like(sp->param)))
                st = torch_last_status();
        }
    }
    if (st == TORCH_OK) {
        for (ptrdiff_t gi = 0; gi < arrlen(opt->groups); gi++) {
            const sgd_group *grp = &opt->groups[gi];
            for (int64_t i = grp->begin; i < grp->end; i++) {
                sgd_param *sp = &opt->params[i];
                if (!grads[i]) continue;
                bool first = fresh[i] != NULL;
                if (first) {
                    sp->buf = fresh[i];
                    fresh[i] = NULL;
                }
                sgd_update(tensor_data_f32(sp->param), tensor_data_f32(grads[i]),
                           sp->buf ? tensor_data_f32(sp->buf) : NULL, sp->param->numel, &grp->options, first);
                tensor_bump_version(sp->param); /* a graph that saved it can no longer backward */
                if (sp->buf) tensor_bump_version(sp->buf);
            }
        }
    }
    for (ptrdiff_t i = 0; i < n && grads && fresh; i++) {
        tensor_free(grads[i]);
        tensor_free(fresh[i]);
    }
    free(grads);
    free(fresh);
    return st;
}

void optim_sgd_zero_grad(optim_sgd *opt) {
    if (!opt) return;
    for (ptrdiff_t i = 0; i < arrlen(opt->params); i++)
        if (opt->params[i].param->grad) tensor_zero_(opt->params[i].param->grad);
}

/* ---- accessors --------------------------------------------------------------------------------- */

int optim_sgd_num_groups(const optim_sgd *opt) { return opt ? (int)arrlen(opt->groups) : 0; }

int64_t optim_sgd_num_params(const optim_sgd *opt) { return opt ? (int64_t)arrlen(opt->params) : 0; }

optim_sgd_options optim_sgd_group_options(const optim_sgd *opt, int group) {
    if (!opt || group < 0 || group >= arrlen(opt->groups)) return (optim_sgd_options){0};
    return opt->groups[group].options;
}

int64_t optim_sgd_group_size(const optim_sgd *opt, int group) {
    if (!opt || group < 0 || group >= arrlen(opt->groups)) return 0;
    return opt->groups[group].end - opt->groups[group].begin;
}

torch_status optim_sgd_set_group_options(optim_sgd *opt, int group, optim_sgd_options options) {
    static const char *fname = "optim_sgd_set_group_options";
    if (!opt) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: optimizer is NULL", fname);
    if (group < 0 || group >= arrlen(opt->groups))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: group %d out of range (%d groups)", fname, group,
                           (int)arrlen(opt->groups));
    torch_status st = check_options(fname, options);
    if (st != TORCH_OK) return st;
    opt->groups[group].options = options;
    return TORCH_OK;
}

double optim_sgd_get_lr(const optim_sgd *opt, int group) {
    if (!opt || group < 0 || group >= arrlen(opt->groups)) return -1;
    return opt->groups[group].options.lr;
}

torch_status optim_sgd_set_lr(optim_sgd *opt, int group, double lr) {
    if (!opt) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_sgd_set_lr: optimizer is NULL");
    if (group < 0 || group >= arrlen(opt->groups))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_sgd_set_lr: group %d out of range (%d groups)", group,
                           (int)arrlen(opt->groups));
    if (!(lr >= 0.0)) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_sgd_set_lr: Invalid learning rate: %g", lr);
    opt->groups[group].options.lr = lr;
    return TORCH_OK;
}

tensor *optim_sgd_param(const optim_sgd *opt, int64_t index, const char **name) {
    if (!opt || index < 0 || index >= arrlen(opt->params)) return NULL;
    if (name) *name = opt->params[index].name;
    return opt->params[index].param;
}

tensor *optim_sgd_momentum_buffer(const optim_sgd *opt, int64_t index) {
    if (!opt || index < 0 || index >= arrlen(opt->params)) return NULL;
    return opt->params[index].buf;
}

/* ---- state ------------------------------------------------------------------------------------- */

nn_tensor_dict *optim_sgd_state_dict(const optim_sgd *opt) {
    if (!opt) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "optim_sgd_state_dict: optimizer is NULL");
        return NULL;
    }
    nn_tensor_dict *d = nn_tensor_dict_new();
    if (!d) return NULL;
    for (ptrdiff_t i = 0; i < arrlen(opt->params); i++) {
        if (!opt->params[i].buf) continue;
        char key[64];
        snprintf(key, sizeof key, "state.%td.momentum_buffer", i);
        if (nn_tensor_dict_set(d, key, opt->params[i].buf) != TORCH_OK) {
            nn_tensor_dict_free(d);
            return NULL;
        }
    }
    return d;
}

/* Parses "state.<index>.momentum_buffer" strictly (decimal, no sign, no leading zeros). */
static bool parse_state_key(const char *key, int64_t *index) {
    static const char prefix[] = "state.", suffix[] = ".momentum_buffer";
    if (strncmp(key, prefix, sizeof prefix - 1) != 0) return false;
    const char *p = key + sizeof prefix - 1;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return false;
    int64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (*p - '0');
    }
    if (strcmp(p, suffix) != 0) return false;
    *index = v;
    return true;
}

torch_status optim_sgd_load_state_dict(optim_sgd *opt, const nn_tensor_dict *d) {
    static const char *fname = "optim_sgd_load_state_dict";
    if (!opt || !d) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
    ptrdiff_t n = arrlen(opt->params);
    char a[96], b[96];
    for (int64_t k = 0; k < d->count; k++) {
        const char *key = d->items[k].name;
        const tensor *t = d->items[k].value;
        int64_t i = 0;
        if (!parse_state_key(key, &i) || i >= n)
            return torch_error(TORCH_ERR_KEY, "%s: unexpected key \"%s\" (the optimizer has %td parameters)", fname,
                               key, n);
        const tensor *p = opt->params[i].param;
        if (!t || t->dtype != TORCH_FLOAT32 || !tensor_same_shape(t, p))
            return torch_error(TORCH_ERR_KEY, "%s: size mismatch for \"%s\": checkpoint %s %s, parameter \"%s\" %s",
                               fname, key, t ? torch_dtype_name(t->dtype) : "NULL",
                               t ? torch_shape_str(t->ndim, t->shape, a, sizeof a) : "", opt->params[i].name,
                               torch_shape_str(p->ndim, p->shape, b, sizeof b));
    }
    tensor **bufs = calloc((size_t)(n ? n : 1), sizeof *bufs);
    if (!bufs) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    for (int64_t k = 0; k < d->count; k++) {
        int64_t i = 0;
        parse_state_key(d->items[k].name, &i); /* checked above */
        if (!(bufs[i] = tensor_clone(d->items[k].value))) {
            for (ptrdiff_t j = 0; j < n; j++) tensor_free(bufs[j]);
            free(bufs);
            return torch_last_status();
        }
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        tensor_free(opt->params[i].buf);
        opt->params[i].buf = bufs[i];
    }
    free(bufs);
    return TORCH_OK;
}

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
