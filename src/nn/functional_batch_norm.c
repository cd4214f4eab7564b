/* functional_batch_norm.c — nnf_batch_norm: per-channel statistics, the fused forward, its
 * analytic backward (one NativeBatchNormBackward0 node), and the composite teaching reference.
 *
 * Layout: an (N, C, *) input is seen as (N, C, S) with S = prod(*), so channel c owns N runs of S
 * contiguous floats, and M = N * S values. Every per-channel loop below walks those runs in the
 * same fixed order (n outer, s inner) with double accumulators; threads split channels, never a
 * channel, so results are bit-identical whatever the thread count.
 *
 * Precision: statistics are two-pass in double (mean, then sum of squared deviations), never
 * E[x^2] - E[x]^2. The element-wise passes also run in double: with mean 1e4 and std 1, float
 * arithmetic on x * scale + shift (or x - mean) would lose ~1e-3 absolute to cancellation, double
 * keeps the result at float32 rounding.
 */
#include "batch_norm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd/ops.h"

/* Below this many input elements the kernels stay on one thread (the fork costs more). */
#define BN_PARALLEL_MIN 32768

/* What the backward needs besides the saved input and weight. */
typedef struct bn_ctx {
    int64_t N, C, S;
    bool    training; /* batch statistics (true) or constant running statistics (false) */
    double  data[];   /* mean[C], then invstd[C] */
} bn_ctx;

/* ---- checks shared by the fused and the composite versions ------------------------------------ */

static torch_status check_vector(const char *fname, const char *what, const tensor *t, int64_t C) {
    if (!t) return TORCH_OK;
    if (t->dtype != TORCH_FLOAT32)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected %s to be float32 (got %s)", fname, what,
                           torch_dtype_name(t->dtype));
    if (t->ndim != 1 || t->numel != C)
        return torch_error(TORCH_ERR_SHAPE, "%s: %s should contain %lld elements not %lld", fname, what,
                           (long long)C, (long long)t->numel);
    return TORCH_OK;
}

/* ATen's and F.batch_norm's checks, in their words. */
static torch_status check_args(const char *fname, const tensor *input, const tensor *running_mean,
                               const tensor *running_var, const tensor *weight, const tensor *bias, bool training,
                               double momentum, double eps) {
    if (!input) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
    if (input->dtype != TORCH_FLOAT32)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected a float32 input (got %s)", fname,
                           torch_dtype_name(input->dtype));
    if (input->ndim < 2)
        return torch_error(TORCH_ERR_SHAPE, "%s: Expected at least 2 input dimensions, but got %d", fname,
                           input->ndim);
    int64_t C = input->shape[1];
    torch_status st;
    if ((st = check_vector(fname, "running_mean", running_mean, C)) != TORCH_OK ||
        (st = check_vector(fname, "running_var", running_var, C)) != TORCH_OK ||
        (st = check_vector(fname, "weight", weight, C)) != TORCH_OK ||
        (st = check_vector(fname, "bias", bias, C)) != TORCH_OK)
        return st;
    if (!running_mean != !running_var)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: running_mean and running_var must both be given or both be NULL",
                           fname);
    if (!training && !running_mean)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: running_mean must be defined in evaluation mode", fname);
    if (training && input->numel / C == 1) {
        char buf[128];
        return torch_error(TORCH_ERR_SHAPE, "%s: Expected more than 1 value per channel when training, got input size %s",
                           fname, torch_shape_str(input->ndim, input->shape, buf, sizeof buf));
    }
    if (!(momentum >= 0 && momentum <= 1))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: momentum must be in [0, 1] (got %g)", fname, momentum);
    if (!(eps >= 0) || isinf(eps))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: eps must be >= 0 and finite (got %g)", fname, eps);
    return TORCH_OK;
}

/* 1 / sqrt(var + eps), 0 for the 0/0 case (ATen's InvStd). */
static double inv_std(double var, double eps) { return var != 0 || eps != 0 ? 1.0 / sqrt(var + eps) : 0.0; }

/* Element i of a 1-D tensor of any stride, as double; `dflt` when t is NULL. */
static double vec_get(const tensor *t, int64_t i, double dflt) {
    return t ? (double)tensor_data_f32(t)[i * t->stride[0]] : dflt;
}

/* ---- forward ------------------------------------------------------------------------------------ */

/* Per channel: mean and sum of squared deviations (two passes, double). */
static void batch_norm_stats(const float *x /* (N, C, S) */, int64_t N, int64_t C, int64_t S,
                             double *mean /* (C) */, double *m2 /* (C) */) {
    const int64_t M = N * S;
    const bool parallel = N * C * S >= BN_PARALLEL_MIN && C > 1;
    (void)parallel; /* unused without OpenMP */
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t c = 0; c < C; c++) {
        double sum = 0;
        for (int64_t n = 0; n < N; n++) {
            const float *xp = x + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) sum += xp[s];
        }
        const double mu = M > 0 ? sum / (double)M : 0.0;
        double ss = 0;
        for (int64_t n = 0; n < N; n++) {
            const float *xp = x + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) {
                const double d = xp[s] - mu;
                ss += d * d;
            }
        }
        mean[c] = mu;
        m2[c] = ss;
    }
}

/* y = x * scale + shift per channel, with scale = gamma * invstd and shift = beta - mean * scale. */
static void batch_norm_apply(float *y /* (N, C, S) */, const float *x /* (N, C, S) */, int64_t N, int64_t C,
                             int64_t S, const double *scale /* (C) */, const double *shift /* (C) */) {
    const bool parallel = N * C * S >= BN_PARALLEL_MIN && C > 1;
    (void)parallel;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t c = 0; c < C; c++) {
        const double a = scale[c], b = shift[c];
        for (int64_t n = 0; n < N; n++) {
            const float *xp = x + (n * C + c) * S;
            float *yp = y + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) yp[s] = (float)(xp[s] * a + b);
        }
    }
}

static torch_status batch_norm_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs);

static const ag_function batch_norm_function = {
    .name = "NativeBatchNormBackward0",
    .backward = batch_norm_backward,
    .free_ctx = NULL, /* one malloc block */
};

tensor *nnf_batch_norm(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                       bool training, double momentum, double eps) {
    static const char *fname = "nnf_batch_norm";
    if (check_args(fname, input, running_mean, running_var, weight, bias, training, momentum, eps) != TORCH_OK)
        return NULL;
    const int64_t N = input->shape[0], C = input->shape[1];
    const int64_t S = N * C > 0 ? input->numel / (N * C) : torch_shape_numel(input->ndim - 2, input->shape + 2);
    const int64_t M = N * S;

    /* 1. Allocate: a contiguous input, the output, ctx (mean, invstd) and scratch (m2, scale, shift). */
    tensor *x = tensor_contiguous(input);
    tensor *y = x ? torch_empty(input->ndim, input->shape) : NULL;
    bn_ctx *ctx = NULL;
    double *scratch = NULL;
    if (y) {
        ctx = malloc(sizeof *ctx + 2 * (size_t)C * sizeof(double));
        scratch = malloc(3 * (size_t)C * sizeof(double) + 1);
        if (!ctx || !scratch) torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    }
    if (!ctx || !scratch) {
        free(scratch);
        free(ctx);
        tensor_free(y);
        tensor_free(x);
        return NULL;
    }
    *ctx = (bn_ctx){.N = N, .C = C, .S = S, .training = training};
    double *mean = ctx->data, *invstd = ctx->data + C;
    double *m2 = scratch, *scale = scratch + C, *shift = scratch + 2 * C;
    const float *xd = tensor_data_f32(x);

    /* 2. Compute: the batch statistics or the running ones, then y = x * scale + shift. */
    if (training) {
        batch_norm_stats(xd, N, C, S, mean, m2);
        for (int64_t c = 0; c < C; c++) invstd[c] = inv_std(M > 0 ? m2[c] / (double)M : 0.0, eps);
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = vec_get(running_mean, c, 0.0);
            invstd[c] = inv_std(vec_get(running_var, c, 1.0), eps);
        }
    }
    for (int64_t c = 0; c < C; c++) {
        scale[c] = vec_get(weight, c, 1.0) * invstd[c];
        shift[c] = vec_get(bias, c, 0.0) - mean[c] * scale[c];
    }
    batch_norm_apply(tensor_data_f32(y), xd, N, C, S, scale, shift);

    /* 3. Record the node: the last step that can fail. */
    tensor *inputs[3] = {input, weight, bias};
    bool recorded = false;
    if (ag_should_record(3, inputs)) {
        ag_node *node = ag_record(&batch_norm_function, y, 3, inputs);
        if (!node || ag_node_save(node, 0, x) != TORCH_OK || ag_node_save(node, 1, weight) != TORCH_OK) {
            free(scratch);
            free(ctx);
            tensor_free(y); /* frees the node and what it saved */
            tensor_free(x);
            return NULL;
        }
        node->ctx = ctx;
        recorded = true;
    }

    /* 4. Commit: the running statistics, with the unbiased variance (an empty batch changes nothing). */
    if (training && running_mean && M > 1) {
        float *rm = tensor_data_f32(running_mean), *rv = tensor_data_f32(running_var);
        const int64_t sm = running_mean->stride[0], sv = running_var->stride[0];
        for (int64_t c = 0; c < C; c++) {
            rm[c * sm] = (float)(momentum * mean[c] + (1 - momentum) * rm[c * sm]);
            rv[c * sv] = (float)(momentum * (m2[c] / (double)(M - 1)) + (1 - momentum) * rv[c * sv]);
        }
    }
    free(scratch);
    if (!recorded) free(ctx);
    tensor_free(x);
    return y;
}

/* ---- backward ----------------------------------------------------------------------------------- */

/* Backward of y = xhat * gamma + beta, xhat = (x - mean) * invstd, invstd = (var + eps)^(-1/2),
 * per channel over its M values x_1..x_M (gamma = 1, beta = 0 without affine).
 *
 *   dbeta   = sum_i dy_i                       beta is added to every y_i
 *   dgamma  = sum_i dy_i * xhat_i              gamma multiplies every xhat_i
 *   dxhat_i = dy_i * gamma
 *
 * Training: mean and var are the batch's, functions of every x_j of the channel:
 *   dmean/dx_j = 1/M
 *   dvar/dx_j  = 2 (x_j - mean) / M            (the -2/M * sum_i (x_i - mean) part is 0)
 *   dinvstd/dx_j = -1/2 (var + eps)^(-3/2) * dvar/dx_j = -invstd^3 (x_j - mean) / M
 *   dxhat_i/dx_j = invstd (delta_ij - 1/M) + (x_i - mean) dinvstd/dx_j
 *                = invstd / M * (M delta_ij - 1 - xhat_i xhat_j)
 *   dx_j = sum_i dxhat_i dxhat_i/dx_j
 *        = gamma invstd / M * (M dy_j - sum_i dy_i - xhat_j sum_i dy_i xhat_i)
 *        = gamma invstd / M * (M dy_j - dbeta - xhat_j dgamma)
 * Eval: mean and invstd come from the running statistics, constants here:
 *   dx_j = dy_j * gamma * invstd
 *
 * So: one pass per channel for the two sums (double), a second for dx. xhat is recomputed from
 * the saved mean and invstd rather than stored (llm.c's trade: C doubles instead of N*C*S floats).
 * The driver accumulates the returned gradients into .grad (+=). */
static void batch_norm_backward_kernel(float *dx /* (N, C, S) or NULL */, double *dgamma /* (C) or NULL */,
                                       double *dbeta /* (C) or NULL */, const float *dy /* (N, C, S) */,
                                       const float *x /* (N, C, S) */, const tensor *weight /* (C) or NULL */,
                                       const bn_ctx *ctx) {
    const int64_t N = ctx->N, C = ctx->C, S = ctx->S, M = N * S;
    const double *mean = ctx->data, *invstd = ctx->data + C;
    const bool parallel = N * C * S >= BN_PARALLEL_MIN && C > 1;
    (void)parallel;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t c = 0; c < C; c++) {
        const double mu = mean[c], is = invstd[c], gamma = vec_get(weight, c, 1.0);
        double sum_dy = 0, sum_dy_xhat = 0;
        if (dgamma || dbeta || (dx && ctx->training)) {
            for (int64_t n = 0; n < N; n++) {
                const float *xp = x + (n * C + c) * S, *gp = dy + (n * C + c) * S;
                for (int64_t s = 0; s < S; s++) {
                    sum_dy += gp[s];
                    sum_dy_xhat += gp[s] * ((xp[s] - mu) * is);
                }
            }
        }
        if (dbeta) dbeta[c] = sum_dy;
        if (dgamma) dgamma[c] = sum_dy_xhat;
        if (!dx) continue;
        const double k = gamma * is;
        if (ctx->training && M > 0) {
            const double mean_dy = sum_dy / (double)M, mean_dy_xhat = sum_dy_xhat / (double)M;
            for (int64_t n = 0; n < N; n++) {
                const float *xp = x + (n * C + c) * S, *gp = dy + (n * C + c) * S;
                float *op = dx + (n * C + c) * S;
                for (int64_t s = 0; s < S; s++)
                    op[s] = (float)(k * (gp[s] - mean_dy - (xp[s] - mu) * is * mean_dy_xhat));
            }
        } else {
            for (int64_t n = 0; n < N; n++) {
                const float *gp = dy + (n * C + c) * S;
                float *op = dx + (n * C + c) * S;
                for (int64_t s = 0; s < S; s++) op[s] = (float)(k * gp[s]);
            }
        }
    }
}

/* A [C] float32 tensor from C doubles. */
static tensor *vector_from(const double *v, int64_t C) {
    tensor *t = torch_empty(1, &C);
    if (!t) return NULL;
    float *p = tensor_data_f32(t);
    for (int64_t c = 0; c < C; c++) p[c] = (float)v[c];
    return t;
}

static torch_status batch_norm_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const bn_ctx *ctx = node->ctx;
    const tensor *x = node->saved[0], *weight = node->saved[1];
    const int64_t C = ctx->C;
    const bool need_dx = ag_node_needs_grad(node, 0), need_dw = ag_node_needs_grad(node, 1),
               need_db = ag_node_needs_grad(node, 2);
    tensor *dy = tensor_contiguous(grad_output), *dx = NULL;
    double *sums = NULL; /* dgamma[C], then dbeta[C] */
    torch_status st = dy ? TORCH_OK : torch_last_status();
    if (st == TORCH_OK && need_dx && !(dx = torch_empty(x->ndim, x->shape))) st = torch_last_status();
    if (st == TORCH_OK && !(sums = malloc(2 * (size_t)C * sizeof(double) + 1)))
        st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "NativeBatchNormBackward0: out of memory");
    if (st != TORCH_OK) {
        tensor_free(dx);
        tensor_free(dy);
        return st;
    }
    double *dgamma = need_dw ? sums : NULL, *dbeta = need_db ? sums + C : NULL;
    batch_norm_backward_kernel(dx ? tensor_data_f32(dx) : NULL, dgamma, dbeta, tensor_data_f32(dy),
                               tensor_data_f32(x), weight, ctx);
    tensor *dw = need_dw ? vector_from(dgamma, C) : NULL, *db = need_db ? vector_from(dbeta, C) : NULL;
    free(sums);
    tensor_free(dy);
    if ((need_dw && !dw) || (need_db && !db)) {
        tensor_free(dx);
        tensor_free(dw);
        tensor_free(db);
        return torch_last_status();
    }
    grad_inputs[0] = dx;
    grad_inputs[1] = dw;
    grad_inputs[2] = db;
    return TORCH_OK;
}

/* ---- the composite reference ------------------------------------------------------------------ */

/* Frees a list of intermediates (NULL entries allowed). */
static void free_all(tensor **ts, int n) {
    for (int i = 0; i < n; i++) tensor_free(ts[i]);
}

tensor *nnf_batch_norm_composite(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight,
                                 tensor *bias, bool training, double momentum, double eps) {
    static const char *fname = "nnf_batch_norm_composite";
    if (check_args(fname, input, running_mean, running_var, weight, bias, training, momentum, eps) != TORCH_OK)
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
        tensor_mul_scalar_(running_mean, 1 - momentum);
        tensor_add_(running_mean, batch_mean, momentum);
        tensor_mul_scalar_(running_var, 1 - momentum);
        tensor_add_(running_var, batch_var, momentum);
        tensor_free(batch_mean);
        tensor_free(batch_var);
    }
    free_all(t, NT);
    return y;
}
