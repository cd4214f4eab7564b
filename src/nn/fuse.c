/* fuse.c — nn_utils_fuse_conv_bn_eval and nn_module_fuse_eval_ (see fuse.h for the algebra). The
 * walk over the model stays generic: which pairs fold is each module type's fold_next. */
#include "fuse.h"

#include <math.h>
#include <stb/stb_ds.h>
#include <stdio.h>
#include <stdlib.h>

#include "batch_norm.h"
#include "container.h"
#include "conv.h"

nn_module *nn_utils_fuse_conv_bn_eval(const nn_module *conv_m, const nn_module *bn_m) {
    const char *fname = "nn_utils_fuse_conv_bn_eval";
    nn_conv2d_module *conv = nn_as_conv2d((nn_module *)conv_m);
    const nn_batch_norm_module *bn = nn_as_batch_norm((nn_module *)bn_m);
    if (!conv || !bn || bn->dims != 2) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected a Conv2d and a BatchNorm2d (got %s and %s)", fname,
                    conv_m ? conv_m->ops->type_name : "NULL", bn_m ? bn_m->ops->type_name : "NULL");
        return NULL;
    }
    if (conv_m->training || bn_m->training) {
        torch_error(TORCH_ERR_INVALID_STATE, "%s: Fusion only for eval! (the %s is in training mode: call "
                    "nn_module_eval first)", fname, conv_m->training ? "Conv2d" : "BatchNorm2d");
        return NULL;
    }
    if (!bn->running_mean) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: the BatchNorm2d has no running statistics "
                    "(track_running_stats=False): it normalises with batch statistics, which do not fold", fname);
        return NULL;
    }
    const int64_t O = conv->options.out_channels;
    if (bn->options.num_features != O) {
        torch_error(TORCH_ERR_SHAPE, "%s: the BatchNorm2d has %lld features, the Conv2d %lld output channels", fname,
                    (long long)bn->options.num_features, (long long)O);
        return NULL;
    }

    /* A Conv2d of the same shape with a bias; its initial values, drawn from a generator of its
     * own (the caller's random streams stay untouched), are all overwritten. */
    torch_generator scratch = torch_generator_new(0);
    nn_conv2d_options o = conv->options;
    o.bias = true, o.generator = &scratch;
    nn_module *fused_m = nn_conv2d(o);
    if (!fused_m) return NULL;
    nn_conv2d_module *fused = nn_as_conv2d(fused_m);
    tensor *w = tensor_contiguous(conv->weight);
    if (!w) {
        nn_module_free(fused_m);
        return NULL;
    }
    const int64_t K = w->numel / O; /* C_in * kH * kW per output channel */
    const float *W = tensor_data_f32(w), *rm = tensor_data_f32(bn->running_mean), *rv = tensor_data_f32(bn->running_var);
    float *Wf = tensor_data_f32(fused->weight), *bf = tensor_data_f32(fused->bias); /* fresh, contiguous */
    for (int64_t c = 0; c < O; c++) {
        const double gamma = bn->weight ? tensor_data_f32(bn->weight)[c * bn->weight->stride[0]] : 1.0;
        const double beta = bn->bias ? tensor_data_f32(bn->bias)[c * bn->bias->stride[0]] : 0.0;
        const double b = conv->bias ? tensor_data_f32(conv->bias)[c * conv->bias->stride[0]] : 0.0;
        const double s = gamma / sqrt((double)rv[c * bn->running_var->stride[0]] + bn->options.eps);
        for (int64_t k = 0; k < K; k++) Wf[c * K + k] = (float)(s * W[c * K + k]);
        bf[c] = (float)(s * (b - rm[c * bn->running_mean->stride[0]]) + beta);
    }
    tensor_free(w);
    /* as fuse_conv_bn_eval keeps them: the convolution's requires_grad for both */
    tensor_set_requires_grad(fused->weight, conv->weight->requires_grad);
    tensor_set_requires_grad(fused->bias, conv->weight->requires_grad);
    nn_module_train(fused_m, false);
    return fused_m;
}

/* One fold: child i of seq becomes `folded`, child i + 1 goes. */
typedef struct fold {
    nn_module *seq;
    ptrdiff_t  i;
    nn_module *folded;
} fold;

/* "<prefix>.<name>" (or "<name>" at the root) into buf: a child's key in messages. */
static const char *child_key(char *buf, size_t len, const char *prefix, const char *name) {
    snprintf(buf, len, "%s%s%s", prefix, *prefix ? "." : "", name);
    return buf;
}

/* Checks model and builds every folded module (nothing in model changes), then, with `commit`,
 * puts them in place; without, frees them (a dry run: does model fold?). */
static torch_status fuse_impl(const char *fname, nn_module *model, bool commit, int64_t *folded_count) {
    if (!model) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: model is NULL", fname);
    nn_module_list *all = nn_module_named_modules(model);
    if (!all) return torch_last_status();

    /* 1. Check and build. */
    torch_status st = TORCH_OK;
    char key[256], key2[384];
    for (int64_t i = 0; i < all->count && st == TORCH_OK; i++)
        if (all->items[i].value->training)
            st = torch_error(TORCH_ERR_INVALID_STATE, "%s: Fusion only for eval! (%s%s%s%s is in training mode: call "
                             "nn_module_eval first)", fname, all->items[i].value->ops->type_name,
                             *all->items[i].name ? " '" : "", all->items[i].name, *all->items[i].name ? "'" : "");
    fold *folds = NULL;
    for (int64_t i = 0; i < all->count && st == TORCH_OK; i++) {
        nn_module *m = all->items[i].value;
        const char *prefix = all->items[i].name;
        for (ptrdiff_t j = 0; nn_is_sequential(m) && j < arrlen(m->children) && st == TORCH_OK; j++) {
            const nn_named_module *c = &m->children[j], *next = j + 1 < arrlen(m->children) ? c + 1 : NULL;
            nn_module *folded = NULL;
            torch_clear_error(); /* so that a hook returning NULL without an error shows */
            if (next && c->value->ops->fold_next && c->value->ops->fold_next(c->value, next->value, &folded)) {
                if (!folded) {
                    char why[256]; /* the hook's message, before torch_error overwrites it */
                    snprintf(why, sizeof why, "%s", *torch_last_error() ? torch_last_error() : "no reason given");
                    st = torch_error(torch_last_status() != TORCH_OK ? torch_last_status() : TORCH_ERR_INVALID_STATE,
                                     "%s: %s '%s' does not fold into %s '%s': %s", fname, next->value->ops->type_name,
                                     child_key(key, sizeof key, prefix, next->name), c->value->ops->type_name,
                                     child_key(key2, sizeof key2, prefix, c->name), why);
                    break;
                }
                fold f = {.seq = m, .i = j, .folded = folded};
                arrput(folds, f);
                j++; /* next is folded */
            } else if (nn_as_batch_norm(c->value)) {
                if (j == 0)
                    snprintf(key2, sizeof key2, "it is the first module of its Sequential");
                else
                    snprintf(key2, sizeof key2, "it follows %s '%s'", m->children[j - 1].value->ops->type_name,
                             child_key(key, sizeof key, prefix, m->children[j - 1].name));
                st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s '%s' does not fold: %s, and only a BatchNorm2d "
                                 "directly after a Conv2d folds", fname, c->value->ops->type_name,
                                 child_key(key, sizeof key, prefix, c->name), key2);
            }
        }
    }
    /* A BatchNorm anywhere else (the root, a child of a module that is not a Sequential) cannot
     * be folded either: only a Sequential says which module runs before it. */
    for (int64_t i = 0; i < all->count && st == TORCH_OK; i++) {
        const nn_module *m = all->items[i].value;
        if (!nn_as_batch_norm((nn_module *)m)) continue;
        bool in_sequential = false;
        for (int64_t p = 0; p < all->count && !in_sequential; p++) {
            const nn_module *q = all->items[p].value;
            for (ptrdiff_t j = 0; nn_is_sequential(q) && j < arrlen(q->children); j++)
                in_sequential = in_sequential || q->children[j].value == m;
        }
        if (!in_sequential)
            st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s%s%s%s is not in a Sequential: nothing says which module "
                             "runs before it, so it does not fold", fname, m->ops->type_name,
                             *all->items[i].name ? " '" : "", all->items[i].name, *all->items[i].name ? "'" : "");
    }
    nn_module_list_free(all);
    if (st != TORCH_OK || !commit) {
        for (ptrdiff_t k = 0; k < arrlen(folds); k++) nn_module_free(folds[k].folded);
        if (st == TORCH_OK && folded_count) *folded_count = arrlen(folds);
        arrfree(folds);
        return st;
    }

    /* 2. Commit (nothing can fail): per Sequential, child i becomes the folded module under the
     *    convolution's name, child i + 1 goes with its name, and the children after them move up
     *    keeping theirs (as torch.fx's fuse keeps module names: "0.weight", "0.bias", "4.weight",
     *    ... for the reference CNN). */
    for (ptrdiff_t k = 0; k < arrlen(folds);) {
        nn_module *seq = folds[k].seq;
        nn_named_module *ch = seq->children;
        const ptrdiff_t n = arrlen(ch);
        ptrdiff_t w = 0;
        for (ptrdiff_t r = 0; r < n; r++, w++) {
            nn_named_module e = ch[r];
            if (k < arrlen(folds) && folds[k].seq == seq && folds[k].i == r) {
                nn_module_free(e.value);
                nn_module_free(ch[r + 1].value);
                free(ch[r + 1].name);
                e.value = folds[k++].folded;
                r++;
            }
            ch[w] = e;
        }
        arrsetlen(seq->children, w);
    }
    if (folded_count) *folded_count = arrlen(folds);
    arrfree(folds);
    return TORCH_OK;
}

torch_status nn_module_fuse_eval_(nn_module *model, int64_t *folded_count) {
    return fuse_impl("nn_module_fuse_eval_", model, true, folded_count);
}

nn_module *nn_module_fuse_eval(const nn_module *model, int64_t *folded_count) {
    const char *fname = "nn_module_fuse_eval";
    /* Check first (a dry run on model itself, which it leaves as it is), then copy and fold. */
    if (fuse_impl(fname, (nn_module *)model, false, NULL) != TORCH_OK) return NULL;
    nn_module *copy = nn_module_clone(model);
    if (!copy) {
        char why[256];
        snprintf(why, sizeof why, "%s", torch_last_error());
        torch_error(torch_last_status(), "%s: %s", fname, why);
        return NULL;
    }
    if (fuse_impl(fname, copy, true, folded_count) != TORCH_OK) {
        nn_module_free(copy);
        return NULL;
    }
    return copy;
}
