/* batch_norm.c — the BatchNorm1d/2d/3d modules: options, registration, the forward's mode logic
 * (PyTorch 1.13 _BatchNorm.forward), reset functions and repr. The numbers are computed by
 * nnf_batch_norm in functional_batch_norm.c. */
#include "batch_norm.h"
#include "activation.h" /* nn_is_relu: the module BatchNorm absorbs */
#include "batch_norm_internal.h"
#include "../autograd/ops.h" /* torch_relu after SyncBatchNorm */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tensor *batch_norm_forward(nn_module *self, tensor *input);
static torch_status batch_norm_reset_parameters_op(nn_module *self, torch_generator *gen);
static int batch_norm_extra_repr(const nn_module *self, char *buf, size_t len);
static bool batch_norm_absorb_next(nn_module *self, nn_module *next, tensor *input, tensor **output);
static nn_module *batch_norm_new_like(const nn_module *self);

static const nn_module_ops batch_norm1d_ops = {.type_name = "BatchNorm1d",
                                               .forward = batch_norm_forward,
                                               .reset_parameters = batch_norm_reset_parameters_op,
                                               .extra_repr = batch_norm_extra_repr,
                                               .absorb_next = batch_norm_absorb_next,
                                               .new_like = batch_norm_new_like};
static const nn_module_ops batch_norm2d_ops = {.type_name = "BatchNorm2d",
                                               .forward = batch_norm_forward,
                                               .reset_parameters = batch_norm_reset_parameters_op,
                                               .extra_repr = batch_norm_extra_repr,
                                               .absorb_next = batch_norm_absorb_next,
                                               .new_like = batch_norm_new_like};
static const nn_module_ops batch_norm3d_ops = {.type_name = "BatchNorm3d",
                                               .forward = batch_norm_forward,
                                               .reset_parameters = batch_norm_reset_parameters_op,
                                               .extra_repr = batch_norm_extra_repr,
                                               .absorb_next = batch_norm_absorb_next,
                                               .new_like = batch_norm_new_like};

nn_batch_norm_options nn_batch_norm_options_default(int64_t num_features) {
    nn_batch_norm_options o = {.num_features = num_features,
                               .eps = 1e-5,
                               .momentum = 0.1,
                               .cumulative_moving_average = false,
                               .affine = true,
                               .track_running_stats = true,
                               .ghost_batch_size = 0};
    return o;
}

nn_batch_norm_module *nn_as_batch_norm(nn_module *m) {
    if (m && (m->ops == &batch_norm1d_ops || m->ops == &batch_norm2d_ops || m->ops == &batch_norm3d_ops))
        return (nn_batch_norm_module *)m;
    return NULL;
}

/* eps, momentum and ghost_batch_size may change between forwards, so the forward checks them again. */
static torch_status check_eps_momentum(const char *name, const nn_batch_norm_options *o) {
    if (!(o->eps > 0) || isinf(o->eps))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: eps must be > 0 (got %g)", name, o->eps);
    if (!o->cumulative_moving_average && !(o->momentum >= 0 && o->momentum <= 1))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: momentum must be in [0, 1] (got %g)", name, o->momentum);
    if (o->ghost_batch_size < 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: ghost_batch_size must be >= 0 (0: off) (got %lld)", name,
                           (long long)o->ghost_batch_size);
    return TORCH_OK;
}

static nn_module *batch_norm_new(const nn_module_ops *ops, int dims, nn_batch_norm_options o) {
    const char *name = ops->type_name;
    if (o.num_features <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: num_features must be > 0 (got %lld)", name,
                    (long long)o.num_features);
        return NULL;
    }
    if (check_eps_momentum(name, &o) != TORCH_OK) return NULL;

    nn_batch_norm_module *bn = nn_module_alloc(sizeof *bn, ops);
    if (!bn) return NULL;
    bn->options = o;
    bn->dims = dims;
    const int64_t C = o.num_features;
    /* This order is the state_dict order, PyTorch's: weight, bias, running_mean, running_var,
     * num_batches_tracked. A NULL from a creation function is passed on and refused by the
     * registration, which keeps the creation's out-of-memory message. */
    bool ok = true;
    if (o.affine) {
        tensor *w = torch_ones(1, &C);
        ok = w && (bn->weight = nn_module_register_parameter(&bn->base, "weight", w)) != NULL;
        tensor *b = ok ? torch_zeros(1, &C) : NULL;
        ok = b && (bn->bias = nn_module_register_parameter(&bn->base, "bias", b)) != NULL;
    }
    if (ok && o.track_running_stats) {
        tensor *rm = torch_zeros(1, &C);
        ok = rm && (bn->running_mean = nn_module_register_buffer(&bn->base, "running_mean", rm, true)) != NULL;
        tensor *rv = ok ? torch_ones(1, &C) : NULL;
        ok = rv && (bn->running_var = nn_module_register_buffer(&bn->base, "running_var", rv, true)) != NULL;
        tensor *nbt = ok ? torch_scalar_int64(0) : NULL;
        ok = nbt && (bn->num_batches_tracked = nn_module_register_buffer(&bn->base, "num_batches_tracked", nbt,
                                                                         true)) != NULL;
    }
    if (!ok) {
        nn_module_free(&bn->base);
        return NULL;
    }
    return &bn->base;
}

nn_module *nn_batch_norm1d(nn_batch_norm_options options) { return batch_norm_new(&batch_norm1d_ops, 1, options); }
nn_module *nn_batch_norm2d(nn_batch_norm_options options) { return batch_norm_new(&batch_norm2d_ops, 2, options); }
nn_module *nn_batch_norm3d(nn_batch_norm_options options) { return batch_norm_new(&batch_norm3d_ops, 3, options); }

static nn_module *batch_norm_new_like(const nn_module *self) {
    const nn_batch_norm_module *bn = (const nn_batch_norm_module *)self;
    nn_batch_norm_options o = bn->options;
    o.affine = bn->weight != NULL, o.track_running_stats = bn->running_mean != NULL; /* as built */
    nn_module *m = batch_norm_new(self->ops, bn->dims, o);
    if (m) nn_as_batch_norm(m)->frozen = bn->frozen, nn_as_batch_norm(m)->process_group = bn->process_group;
    return m;
}

/* _BatchNorm.forward: checks with the module's name, then which statistics and which factor. */
/* The forward, followed by ReLU in the same pass when `relu`. */
static tensor *batch_norm_run(nn_module *self, tensor *input, bool relu) {
    nn_batch_norm_module *bn = nn_as_batch_norm(self);
    TORCH_ASSERT(bn);
    const char *name = self->ops->type_name;
    const nn_batch_norm_options *o = &bn->options;

    /* 1. Checks (PyTorch's _check_input_dim, then F.batch_norm's), nothing changed yet. */
    bool rank_ok = bn->dims == 1 ? input->ndim == 2 || input->ndim == 3 : input->ndim == bn->dims + 2;
    if (!rank_ok) {
        if (bn->dims == 1)
            torch_error(TORCH_ERR_SHAPE, "%s: expected 2D or 3D input (got %dD input)", name, input->ndim);
        else
            torch_error(TORCH_ERR_SHAPE, "%s: expected %dD input (got %dD input)", name, bn->dims + 2, input->ndim);
        return NULL;
    }
    if (input->dtype != TORCH_FLOAT32) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected a float32 input (got %s)", name,
                    torch_dtype_name(input->dtype));
        return NULL;
    }
    if (input->shape[1] != o->num_features) {
        torch_error(TORCH_ERR_SHAPE, "%s: expected input with %lld channels (got %lld)", name,
                    (long long)o->num_features, (long long)input->shape[1]);
        return NULL;
    }
    if (check_eps_momentum(name, o) != TORCH_OK) return NULL;
    /* A frozen module behaves as in eval mode whatever its training flag. */
    const bool tracking = bn->running_mean != NULL, training = self->training && bn->frozen == NN_BATCH_NORM_UNFROZEN;
    const bool batch_stats = training || !tracking;
    const nn_process_group *pg = training ? bn->process_group : NULL; /* SyncBatchNorm: counts over all processes */
    if (batch_stats && !pg && input->numel / input->shape[1] == 1) {
        char buf[128];
        torch_error(TORCH_ERR_SHAPE, "%s: Expected more than 1 value per channel when training, got input size %s", name,
                    torch_shape_str(input->ndim, input->shape, buf, sizeof buf));
        return NULL;
    }
    const int64_t ghost = batch_stats ? o->ghost_batch_size : 0, N = input->shape[0];
    if (pg && ghost) {
        torch_error(TORCH_ERR_INVALID_STATE, "%s: ghost batches (ghost_batch_size %lld) and a process group "
                    "(SyncBatchNorm) do not combine; set one of them", name, (long long)ghost);
        return NULL;
    }
    if (ghost > N) {
        torch_error(TORCH_ERR_SHAPE, "%s: ghost_batch_size %lld is larger than the batch (got %lld)", name,
                    (long long)ghost, (long long)N);
        return NULL;
    }

    /* 2. The factor uses the count after this batch: 1/num_batches_tracked for the cumulative
     *    average, sub-batch after sub-batch for ghost batches. */
    const bool update = training && tracking;
    int64_t *count = tracking ? tensor_data_i64(bn->num_batches_tracked) : NULL;
    if (update && *count < 0) { /* written by the user: loading refuses it */
        torch_error(TORCH_ERR_INVALID_STATE,
                    "%s: num_batches_tracked is %lld, expected a count >= 0 (nn_batch_norm_reset_running_stats "
                    "resets it)", name, (long long)*count);
        return NULL;
    }
    const bn_update how = {.momentum = update ? o->momentum : 0.0,
                           .cumulative = update && o->cumulative_moving_average,
                           .count = update ? *count : 0};

    /* 3. Compute (updates the running statistics in place on success), then count the batches. */
    const char *fname = ghost || pg ? name : relu ? "nnf_batch_norm_relu" : "nnf_batch_norm";
    tensor *y;
    if (pg) { /* SyncBatchNorm; a ReLU after it runs on its own */
        y = bn_sync_forward(fname, input, bn->running_mean, bn->running_var, bn->weight, bn->bias, how, o->eps, pg);
        if (y && relu) {
            tensor *r = torch_relu(y);
            tensor_free(y);
            y = r;
        }
    } else {
        y = bn_forward(fname, relu, input, update || !batch_stats ? bn->running_mean : NULL,
                       update || !batch_stats ? bn->running_var : NULL, bn->weight, bn->bias, batch_stats, how,
                       o->eps, ghost);
    }
    if (y && update) {
        const int64_t batches = ghost ? (N + ghost - 1) / ghost : 1;
        *count = *count <= INT64_MAX - batches ? *count + batches : INT64_MAX; /* saturates: 2^63 is "as many as can be" */
        tensor_bump_version(bn->num_batches_tracked);
    }
    return y;
}

static tensor *batch_norm_forward(nn_module *self, tensor *input) { return batch_norm_run(self, input, false); }

/* A ReLU after a BatchNorm runs in the BatchNorm's pass (nnf_batch_norm_relu). */
static bool batch_norm_absorb_next(nn_module *self, nn_module *next, tensor *input, tensor **output) {
    if (!nn_is_relu(next)) return false;
    *output = batch_norm_run(self, input, true);
    return true;
}

tensor *nn_batch_norm_forward_relu(nn_module *m, tensor *input) {
    if (!nn_as_batch_norm(m)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_batch_norm_forward_relu: expected a BatchNorm module (got %s)",
                    m ? m->ops->type_name : "NULL");
        return NULL;
    }
    if (!input) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", m->ops->type_name);
        return NULL;
    }
    return batch_norm_run(m, input, true);
}

torch_status nn_batch_norm_freeze(nn_module *model, nn_batch_norm_freeze_mode mode, int64_t *count) {
    if (!model) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_batch_norm_freeze: model is NULL");
    if (mode != NN_BATCH_NORM_UNFROZEN && mode != NN_BATCH_NORM_FREEZE_STATS && mode != NN_BATCH_NORM_FREEZE_ALL)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "nn_batch_norm_freeze: mode must be NN_BATCH_NORM_UNFROZEN, _FREEZE_STATS or _FREEZE_ALL "
                           "(got %d)", (int)mode);
    nn_module_list *all = nn_module_named_modules(model);
    if (!all) return torch_last_status();
    /* Check every module first: a refused call changes none. */
    torch_status st = TORCH_OK;
    for (int64_t i = 0; i < all->count && st == TORCH_OK; i++) {
        const nn_batch_norm_module *bn = nn_as_batch_norm(all->items[i].value);
        if (bn && mode != NN_BATCH_NORM_UNFROZEN && !bn->running_mean)
            st = torch_error(TORCH_ERR_INVALID_ARGUMENT,
                             "nn_batch_norm_freeze: %s%s%s%s has no running statistics to freeze "
                             "(track_running_stats=False)",
                             bn->base.ops->type_name, *all->items[i].name ? " '" : "", all->items[i].name,
                             *all->items[i].name ? "'" : "");
    }
    int64_t n = 0;
    for (int64_t i = 0; i < all->count && st == TORCH_OK; i++) {
        nn_batch_norm_module *bn = nn_as_batch_norm(all->items[i].value);
        if (!bn) continue;
        bn->frozen = mode;
        if (bn->weight) { /* cannot fail: parameters are leaves */
            tensor_set_requires_grad(bn->weight, mode != NN_BATCH_NORM_FREEZE_ALL);
            tensor_set_requires_grad(bn->bias, mode != NN_BATCH_NORM_FREEZE_ALL);
            if (mode == NN_BATCH_NORM_FREEZE_ALL) tensor_zero_grad(bn->weight), tensor_zero_grad(bn->bias);
        }
        n++;
    }
    nn_module_list_free(all);
    if (count && st == TORCH_OK) *count = n;
    return st;
}

torch_status nn_batch_norm_reset_running_stats(nn_module *m) {
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    if (!bn) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_batch_norm_reset_running_stats: not a BatchNorm module");
    bool grad_mode = torch_set_grad_enabled(false); /* the buffers may have been made to require grad */
    if (bn->running_mean) {
        tensor_zero_(bn->running_mean);
        tensor_fill_(bn->running_var, 1.0);
        tensor_zero_(bn->num_batches_tracked);
    }
    torch_set_grad_enabled(grad_mode);
    return TORCH_OK;
}

torch_status nn_batch_norm_reset_parameters(nn_module *m) {
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    if (!bn) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_batch_norm_reset_parameters: not a BatchNorm module");
    nn_batch_norm_reset_running_stats(m);
    if (bn->weight) {
        bool grad_mode = torch_set_grad_enabled(false); /* parameters require grad */
        tensor_fill_(bn->weight, 1.0);
        tensor_zero_(bn->bias);
        torch_set_grad_enabled(grad_mode);
    }
    return TORCH_OK;
}

static torch_status batch_norm_reset_parameters_op(nn_module *self, torch_generator *gen) {
    (void)gen; /* ones and zeros: nothing random */
    return nn_batch_norm_reset_parameters(self);
}

/* Python's repr() of a float: the shortest digits that read back to v, in fixed notation when
 * the decimal exponent is in [-4, 16), else d.ddde-XX ("1e-05", "0.1", "0.0001", "1.0"). */
static void python_float_repr(double v, char *out, size_t len) {
    if (isnan(v)) {
        snprintf(out, len, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, len, v > 0 ? "inf" : "-inf");
        return;
    }
    if (v == 0) {
        snprintf(out, len, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e = "[-]d[.ddd]e[+-]XX": split into sign, digits and exponent */
    const char *s = e;
    bool neg = *s == '-';
    if (neg) s++;
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    int exp10 = atoi(s + 1);
    int decpt = exp10 + 1; /* v = 0.digits * 10^decpt */
    char body[32]; /* at most "0.0000" + 17 digits, or 17 digits + "e+308" */
    size_t pos = 0;
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            pos += (size_t)snprintf(body + pos, sizeof body - pos, "0.");
            for (int i = 0; i < -decpt; i++) body[pos++] = '0';
            pos += (size_t)snprintf(body + pos, sizeof body - pos, "%s", digits);
        } else if (decpt < nd) {
            pos += (size_t)snprintf(body + pos, sizeof body - pos, "%.*s.%s", decpt, digits, digits + decpt);
        } else {
            pos += (size_t)snprintf(body + pos, sizeof body - pos, "%s", digits);
            for (int i = nd; i < decpt; i++) body[pos++] = '0';
            pos += (size_t)snprintf(body + pos, sizeof body - pos, ".0");
        }
    } else {
        pos += (size_t)snprintf(body + pos, sizeof body - pos, "%c", digits[0]);
        if (nd > 1) pos += (size_t)snprintf(body + pos, sizeof body - pos, ".%s", digits + 1);
        snprintf(body + pos, sizeof body - pos, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    body[sizeof body - 1] = '\0';
    snprintf(out, len, "%s%s", neg ? "-" : "", body);
}

/* "100, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True" (PyTorch's extra_repr). */
static int batch_norm_extra_repr(const nn_module *self, char *buf, size_t len) {
    const nn_batch_norm_module *bn = (const nn_batch_norm_module *)self;
    const nn_batch_norm_options *o = &bn->options;
    char eps[40], momentum[40];
    python_float_repr(o->eps, eps, sizeof eps);
    if (o->cumulative_moving_average)
        snprintf(momentum, sizeof momentum, "None");
    else
        python_float_repr(o->momentum, momentum, sizeof momentum);
    /* affine and tracking as built: the registered tensors, not options changed later; the
     * variants only when used, so that a plain module reads as PyTorch's */
    char ghost[48] = "";
    if (o->ghost_batch_size > 0) snprintf(ghost, sizeof ghost, ", ghost_batch_size=%lld", (long long)o->ghost_batch_size);
    const char *frozen = bn->frozen == NN_BATCH_NORM_FREEZE_ALL     ? ", frozen=all"
                         : bn->frozen == NN_BATCH_NORM_FREEZE_STATS ? ", frozen=stats"
                                                                    : "";
    return snprintf(buf, len, "%lld, eps=%s, momentum=%s, affine=%s, track_running_stats=%s%s%s",
                    (long long)o->num_features, eps, momentum, bn->weight ? "True" : "False",
                    bn->running_mean ? "True" : "False", ghost, frozen);
}

torch_status nn_batch_norm_set_process_group(nn_module *model, const nn_process_group *pg, int64_t *count) {
    static const char *fname = "nn_batch_norm_set_process_group";
    if (!model) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: model is NULL", fname);
    if (pg && (pg->size < 1 || !pg->all_gather || !pg->all_reduce_sum))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "%s: expected a process group of size >= 1 with its two operations (got %s)", fname,
                           pg->size < 1 ? "size < 1" : "a missing operation");
    nn_module_list *all = nn_module_named_modules(model);
    if (!all) return torch_last_status();
    torch_status st = TORCH_OK;
    for (int64_t i = 0; pg && i < all->count && st == TORCH_OK; i++) { /* check all first: refused, none changes */
        const nn_batch_norm_module *bn = nn_as_batch_norm(all->items[i].value);
        if (bn && bn->options.ghost_batch_size)
            st = torch_error(TORCH_ERR_INVALID_ARGUMENT,
                             "%s: %s%s%s%s uses ghost batches (ghost_batch_size %lld), which SyncBatchNorm does not "
                             "combine with", fname, bn->base.ops->type_name, *all->items[i].name ? " '" : "",
                             all->items[i].name, *all->items[i].name ? "'" : "",
                             (long long)bn->options.ghost_batch_size);
    }
    int64_t n = 0;
    for (int64_t i = 0; st == TORCH_OK && i < all->count; i++) {
        nn_batch_norm_module *bn = nn_as_batch_norm(all->items[i].value);
        if (bn) bn->process_group = pg, n++;
    }
    nn_module_list_free(all);
    if (st == TORCH_OK && count) *count = n;
    return st;
}
