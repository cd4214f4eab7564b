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
    nn_module_train(fused_m, false);
    return fused_m;
}

/* A module's name in messages: "BatchNorm2d '1'", or the type alone for the root. */
#define MODULE_NAME_FMT "%s%s%s%s"
#define MODULE_NAME_ARGS(e) (e).value->ops->type_name, *(e).name ? " '" : "", (e).name, *(e).name ? "'" : ""

/* One fold: child i of seq becomes `folded`, child i + 1 goes. */
typedef struct fold {
    nn_module *seq;
    ptrdiff_t  i;
    nn_module *folded;
} fold;

static torch_status fuse_in_place(const char *fname, nn_module *model, int64_t *folded_count) {
    if (!model) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: model is NULL", fname);
    nn_module_list *all = nn_module_named_modules(model);
    if (!all) return torch_last_status();

    /* 1. Check and build every folded module; nothing in model changes yet. */
    torch_status st = TORCH_OK;
    for (int64_t i = 0; i < all->count && st == TORCH_OK; i++)
        if (all->items[i].value->training)
            st = torch_error(TORCH_ERR_INVALID_STATE, "%s: Fusion only for eval! (" MODULE_NAME_FMT " is in training "
                             "mode: call nn_module_eval first)", fname, MODULE_NAME_ARGS(all->items[i]));
    fold *folds = NULL;
    for (int64_t i = 0; i < all->count && st == TORCH_OK; i++) {
        nn_module *m = all->items[i].value;
        const char *prefix = all->items[i].name;
        for (ptrdiff_t j = 0; nn_is_sequential(m) && j < arrlen(m->children) && st == TORCH_OK; j++) {
            const nn_named_module *c = &m->children[j], *next = j + 1 < arrlen(m->children) ? c + 1 : NULL;
            nn_module *folded = NULL;
            if (next && c->value->ops->fold_next && c->value->ops->fold_next(c->value, next->value, &folded)) {
                if (!folded) {
                    char why[256]; /* the hook's message, before torch_error overwrites it */
                    snprintf(why, sizeof why, "%s", torch_last_error());
                    st = torch_error(torch_last_status(), "%s: %s%s%s (%s) does not fold into %s%s%s (%s): %s", fname,
                                     prefix, *prefix ? "." : "", next->name, next->value->ops->type_name, prefix,
                                     *prefix ? "." : "", c->name, c->value->ops->type_name, why);
                    break;
                }
                fold f = {.seq = m, .i = j, .folded = folded};
                arrput(folds, f);
                j++; /* next is folded */
            } else if (nn_as_batch_norm(c->value)) {
                st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s%s%s (%s) follows %s, not a Conv2d: it does not fold",
                                 fname, prefix, *prefix ? "." : "", c->name, c->value->ops->type_name,
                                 j ? m->children[j - 1].value->ops->type_name : "nothing");
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
            st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: " MODULE_NAME_FMT " is not in a Sequential: nothing "
                             "says which module runs before it, so it does not fold", fname, MODULE_NAME_ARGS(all->items[i]));
    }
    nn_module_list_free(all);
    if (st != TORCH_OK) {
        for (ptrdiff_t k = 0; k < arrlen(folds); k++) nn_module_free(folds[k].folded);
        arrfree(folds);
        return st;
    }

    /* 2. Commit (nothing can fail): per Sequential, child i becomes the folded module, child i + 1
     *    goes, and the children move up. A Sequential names its children by position, so the name
     *    string at position w is already "w": the strings stay where they are, the surplus freed. */
    for (ptrdiff_t k = 0; k < arrlen(folds);) {
        nn_module *seq = folds[k].seq;
        nn_named_module *ch = seq->children;
        const ptrdiff_t n = arrlen(ch);
        ptrdiff_t w = 0;
        for (ptrdiff_t r = 0; r < n; r++, w++) {
            nn_module *v = ch[r].value;
            if (k < arrlen(folds) && folds[k].seq == seq && folds[k].i == r) {
                nn_module_free(v);
                nn_module_free(ch[r + 1].value);
                v = folds[k++].folded;
                r++;
            }
            ch[w].value = v;
        }
        for (ptrdiff_t r = w; r < n; r++) free(ch[r].name);
        arrsetlen(seq->children, w);
    }
    if (folded_count) *folded_count = arrlen(folds);
    arrfree(folds);
    return TORCH_OK;
}

torch_status nn_module_fuse_eval_(nn_module *model, int64_t *folded_count) {
    return fuse_in_place("nn_module_fuse_eval_", model, folded_count);
}

nn_module *nn_module_fuse_eval(const nn_module *model, int64_t *folded_count) {
    if (!model) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_fuse_eval: model is NULL");
        return NULL;
    }
    nn_module *copy = nn_module_clone(model);
    if (copy && fuse_in_place("nn_module_fuse_eval", copy, folded_count) != TORCH_OK) {
        nn_module_free(copy);
        return NULL;
    }
    return copy;
}
