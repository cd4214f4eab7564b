/* functional_batch_norm_composite.c — nnf_batch_norm_composite: BatchNorm written with the
 * differentiable primitives (torch_mean, torch_var, torch_sub, torch_rsqrt, ...), so that autograd
 * derives its backward from theirs: the teaching reference the fused nnf_batch_norm
 * (functional_batch_norm.c) is tested against. Both refuse the same calls with the same messages
 * (batch_norm_internal.h); this one records a graph of many nodes instead of one.
 *
 * Ownership as in batch_norm.h: the result is a new reference (or NULL with the error set); the
 * arguments are borrowed; every intermediate is freed before returning.
 */
#include "batch_norm.h"

#include "../autograd/ops.h"
#include "batch_norm_internal.h"

/* Frees a list of intermediates (NULL entries allowed). */
static void free_all(tensor **ts, int n) {
    for (int i = 0; i < n; i++) tensor_free(ts[i]);
}

tensor *nnf_batch_norm_composite(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight,
                                 tensor *bias, bool training, double momentum, double eps) {
    static const char *fname = "nnf_batch_norm_composite";
    if (bn_check_args(fname, input, running_mean, running_var, weight, bias, training, momentum, eps) != TORCH_OK)
        return NULL;
    const int ndim = input->ndim;
    const int64_t C = input->shape[1];
    int dims[TORCH_MAX_DIMS], nd = 0; /* every dim but the channel: 0, 2, 3, ... */
    int64_t stat_shape[TORCH_MAX_DIMS]; /* [1, C, 1, ...]: broadcasts against the input */
    for (int d = 0; d < ndim; d++) {
        if (d != 1) dims[nd++] = d;
        stat_shape[d] = d == 1 ? C : 1;
    }

    /* t[] holds every intermediate so that one call frees them on any path. */
    enum { MEAN, VAR, CENTERED, VAR_EPS, INVSTD, XHAT, W, SCALED, B, OUT, NT };
    tensor *t[NT] = {0};
    if (training) {
        t[MEAN] = torch_mean(input, nd, dims, true);           /* (1, C, 1, 1) */
        t[VAR] = t[MEAN] ? torch_var(input, nd, dims, 0, true) : NULL; /* biased */
    } else {                                                   /* constants: no gradient */
        t[MEAN] = torch_reshape(running_mean, ndim, stat_shape);
        t[VAR] = t[MEAN] ? torch_reshape(running_var, ndim, stat_shape) : NULL;
    }
    if (t[VAR]) t[CENTERED] = torch_sub(input, t[MEAN]);            /* x - mean */
    if (t[CENTERED]) t[VAR_EPS] = torch_add_scalar(t[VAR], eps);    /* var + eps */
    if (t[VAR_EPS]) t[INVSTD] = torch_rsqrt(t[VAR_EPS]);            /* 1 / sqrt(var + eps) */
    if (t[INVSTD]) t[XHAT] = torch_mul(t[CENTERED], t[INVSTD]);     /* xhat */
    tensor *y = t[XHAT];
    if (y && weight) {
        t[W] = torch_reshape(weight, ndim, stat_shape);
        y = t[SCALED] = t[W] ? torch_mul(y, t[W]) : NULL;           /* xhat * gamma */
    }
    if (y && bias) {
        t[B] = torch_reshape(bias, ndim, stat_shape);
        y = t[OUT] = t[B] ? torch_add(y, t[B]) : NULL;              /* + beta */
    }
    if (!y) {
        free_all(t, NT);
        return NULL;
    }
    tensor_retain(y);

    /* The running statistics, as constants (raw kernels, no graph); allocate, then commit. */
    const int64_t M = input->numel / (C > 0 ? C : 1);
    if (training && running_mean && M > 1) {
        tensor *batch_mean = tensor_mean(input, nd, dims, false);       /* (C) */
        tensor *batch_var = batch_mean ? tensor_var(input, nd, dims, 1, false) : NULL; /* unbiased */
        if (!batch_var) {
            tensor_free(batch_mean);
            tensor_free(y);
            free_all(t, NT);
            return NULL;
        }
        /* Cannot fail: bn_check_args checked that both can be written, and grad mode is off. */
        bool grad_mode = torch_set_grad_enabled(false);
        tensor_mul_scalar_(running_mean, 1 - momentum);
        tensor_add_(running_mean, batch_mean, momentum);
        tensor_mul_scalar_(running_var, 1 - momentum);
        tensor_add_(running_var, batch_var, momentum);
        torch_set_grad_enabled(grad_mode);
        tensor_free(batch_mean);
        tensor_free(batch_var);
    }
    free_all(t, NT);
    return y;
}
