/* update_bn.c — optim_update_bn (see update_bn.h). */
#include "update_bn.h"

#include <stdio.h>
#include <stdlib.h>

#include "../nn/batch_norm.h"

/* What a BatchNorm had before, to put back. */
typedef struct bn_saved {
    nn_batch_norm_module *bn;
    bool                  cumulative;               /* options.cumulative_moving_average */
    tensor               *mean, *var, *count;       /* copies of the buffers (restored on error) */
} bn_saved;

torch_status optim_update_bn(nn_module *model, int64_t n_batches, optim_batch_fn next_batch, void *user) {
    const char *fname = "optim_update_bn";
    if (!model) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: model is NULL", fname);
    if (!next_batch) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: next_batch is NULL", fname);
    if (n_batches < 1)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected at least 1 batch (got n_batches = %lld)", fname,
                           (long long)n_batches);
    nn_module_list *all = nn_module_named_modules(model);
    if (!all) return torch_last_status();

    /* 1. Save: each module's training flag, each BatchNorm's buffers and setting. */
    bool *training = malloc((size_t)all->count * sizeof *training);
    bn_saved *saved = calloc((size_t)all->count, sizeof *saved);
    int64_t n_bn = 0;
    torch_status st = training && saved ? TORCH_OK : torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    for (int64_t i = 0; i < all->count && st == TORCH_OK; i++) {
        training[i] = all->items[i].value->training;
        nn_batch_norm_module *bn = nn_as_batch_norm(all->items[i].value);
        if (!bn || !bn->running_mean || bn->frozen != NN_BATCH_NORM_UNFROZEN) continue;
        bn_saved *s = &saved[n_bn++];
        *s = (bn_saved){.bn = bn, .cumulative = bn->options.cumulative_moving_average,
                        .mean = tensor_clone(bn->running_mean), .var = tensor_clone(bn->running_var),
                        .count = tensor_clone(bn->num_batches_tracked)};
        if (!s->mean || !s->var || !s->count) st = torch_last_status();
    }

    /* 2. Reset and run. */
    const bool grad_mode = torch_set_grad_enabled(false);
    for (int64_t k = 0; k < n_bn && st == TORCH_OK; k++) {
        nn_batch_norm_module *bn = saved[k].bn;
        tensor_zero_(bn->running_mean);
        tensor_fill_(bn->running_var, 1.0);
        tensor_zero_(bn->num_batches_tracked);
        bn->options.cumulative_moving_average = true;
    }
    if (st == TORCH_OK && n_bn > 0) {
        nn_module_train(model, true);
        for (int64_t i = 0; i < n_batches && st == TORCH_OK; i++) {
            torch_clear_error(); /* so that a NULL without an error set shows */
            tensor *x = next_batch(user, i), *y = x ? nn_module_forward(model, x) : NULL;
            if (!y && !x && torch_last_status() == TORCH_OK) /* a callback that forgot to say why */
                st = torch_error(TORCH_ERR_INVALID_STATE, "%s: batch %lld: next_batch returned NULL without setting "
                                 "an error", fname, (long long)i);
            else if (!y) {
                char why[256]; /* the failed call's message, before torch_error overwrites it */
                snprintf(why, sizeof why, "%s", torch_last_error());
                st = torch_error(torch_last_status(), "%s: batch %lld: %s", fname, (long long)i, why);
            }
            tensor_free(y);
            tensor_free(x);
        }
    }

    /* 3. Restore the settings and flags, and on error the buffers too. */
    for (int64_t k = 0; k < n_bn; k++) {
        bn_saved *s = &saved[k];
        s->bn->options.cumulative_moving_average = s->cumulative;
        if (st != TORCH_OK && s->mean && s->var && s->count) {
            tensor_copy_(s->bn->running_mean, s->mean);
            tensor_copy_(s->bn->running_var, s->var);
            tensor_copy_(s->bn->num_batches_tracked, s->count);
        }
        tensor_free(s->mean), tensor_free(s->var), tensor_free(s->count);
    }
    for (int64_t i = 0; training && i < all->count; i++) all->items[i].value->training = training[i];
    torch_set_grad_enabled(grad_mode);
    free(saved);
    free(training);
    nn_module_list_free(all);
    return st;
}
