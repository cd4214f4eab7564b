/* functional_sync_batch_norm.c — SyncBatchNorm (nnf_sync_batch_norm): BatchNorm's training
 * forward and backward when the batch is spread over the processes of a group (batch_norm.h).
 *
 * Each process holds a slice x of the global batch; channel c has M_r values on process r and
 * M = sum_r M_r in all. Compared with nnf_batch_norm, two exchanges are added:
 *
 *   forward   local (M_r, mean_r, m2_r) per channel  --all_gather-->  merged, in process order,
 *             into the global (M, mean, m2); then y = (x - mean) invstd gamma + beta locally,
 *             invstd = (m2 / M + eps)^(-1/2).
 *   backward  local sum(dy) and sum(dy (x - mean))  --all_reduce_sum-->  global sums; then dx
 *             locally.
 *
 * Backward, for x_j on process r (the derivation of functional_batch_norm.c with the sums taken
 * over every process, since mean and var are functions of every process's x):
 *   dx_j = gamma invstd / M * (M dy_j - sum_all dy - xhat_j sum_all dy xhat)
 *        = gamma invstd * (dy_j - sum_all(dy) / M - (x_j - mean) invstd^2 sum_all(dy (x - mean)) / M)
 * where dy is d(sum of all processes' losses)/dy on each process's own slice. Data parallelism
 * then averages parameter gradients over the K processes, so that the update is that of the
 * loss (1/K) sum_r L_r: one process with the whole batch and L = mean of the L_r gets the same.
 *   dgamma = sum_local dy xhat,  dbeta = sum_local dy     (this process's share; averaged by DDP)
 *
 * Precision and speed: the passes are the fused kernel's own loops, one channel at a time
 * (bn_channel_*: statistics shifted by the channel's first value and summed in double, y formed
 * in float with split constants, dx in double), parallel over channels; the merge is Chan et
 * al.'s, exact for large means.
 */
#include "batch_norm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd/ops.h"
#include "../tensor/parallel.h"
#include "batch_norm_internal.h"

/* What the backward keeps besides the saved input and weight: the group (borrowed: it must
 * outlive the graph) and the global statistics. */
typedef struct sync_ctx {
    const nn_process_group *pg;
    int64_t N, C, S;   /* this process's slice: N rows of C planes of S values */
    double  count;     /* M: values per channel over all processes */
    double  data[];    /* mean[C], invstd[C] */
} sync_ctx;

static torch_status sync_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs);

static const ag_function sync_batch_norm_function = {.op = AG_OP_SYNC_BATCH_NORM, .backward = sync_backward};

/* Below this many elements the loops stay on one thread. */
#define SYNC_PARALLEL_MIN 32768

/* Merges the gathered per-process blocks [count, mean[C], m2[C]] in process order (Chan et al.):
 * the same numbers on every process, since each merges the same blocks in the same order. */
static double merge_moments(const double *gathered, int size, int64_t C, double *mean, double *m2) {
    double n = 0;
    for (int64_t c = 0; c < C; c++) mean[c] = m2[c] = 0;
    for (int r = 0; r < size; r++) {
        const double *block = gathered + (size_t)r * (size_t)(1 + 2 * C);
        const double nb = block[0];
        if (nb == 0) continue;
        if (n == 0) { /* the first non-empty block, as it is (delta nb / nb could round) */
            memcpy(mean, block + 1, (size_t)C * sizeof *mean);
            memcpy(m2, block + 1 + C, (size_t)C * sizeof *m2);
            n = nb;
            continue;
        }
        const double total = n + nb;
        for (int64_t c = 0; c < C; c++) {
            const double delta = block[1 + c] - mean[c];
            mean[c] += delta * nb / total;
            m2[c] += block[1 + C + c] + delta * delta * n * nb / total;
        }
        n = total;
    }
    return n;
}

tensor *bn_sync_forward(const char *fname, tensor *input, tensor *running_mean, tensor *running_var, tensor *weight,
                        tensor *bias, bn_update update, double eps, const nn_process_group *pg) {
    if (!pg || pg->size < 1 || !pg->all_gather || !pg->all_reduce_sum) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected a process group of size >= 1 with its two operations "
                    "(got %s)", fname, !pg ? "NULL" : pg->size < 1 ? "size < 1" : "a missing operation");
        return NULL;
    }
    if (bn_check_args_counted(fname, input, running_mean, running_var, weight, bias, true,
                              update.cumulative ? 0.0 : update.momentum, eps, false) != TORCH_OK)
        return NULL;
    const int64_t N = input->shape[0], C = input->shape[1];
    const int64_t S = torch_shape_numel(input->ndim - 2, input->shape + 2);
    const size_t block = (size_t)(1 + 2 * C);

    tensor *x = tensor_contiguous(input);
    tensor *y = x ? torch_empty(input->ndim, input->shape) : NULL;
    sync_ctx *ctx = y ? malloc(sizeof *ctx + 2 * (size_t)C * sizeof(double)) : NULL;
    double *scratch = ctx ? malloc(((size_t)pg->size + 2) * block * sizeof(double)) : NULL;
    if (y && (!ctx || !scratch)) torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (!scratch) {
        free(ctx);
        tensor_free(y);
        tensor_free(x);
        return NULL;
    }
    const float *xd = tensor_data_f32(x);
    float *yd = tensor_data_f32(y);
    double *local = scratch, *gathered = scratch + block, *m2 = gathered + (size_t)pg->size * block;
    double *mean = ctx->data, *invstd = ctx->data + C;

    /* 1. This process's moments, then everyone's, merged. */
    const bool parallel = N * C * S >= SYNC_PARALLEL_MIN;
    (void)parallel;
    local[0] = (double)(N * S);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t c = 0; c < C; c++) bn_channel_moments(xd, N, C, S, c, &local[1 + c], &local[1 + C + c]);
    torch_status st = pg->all_gather(pg->handle, local, gathered, (int64_t)block);
    const double M = st == TORCH_OK ? merge_moments(gathered, pg->size, C, mean, m2) : 0;
    if (st == TORCH_OK && M <= 1) {
        char buf[128];
        st = torch_error(TORCH_ERR_SHAPE, "%s: Expected more than 1 value per channel when training, got %.0f over "
                         "%d processes (input size %s here)", fname, M, pg->size,
                         torch_shape_str(input->ndim, input->shape, buf, sizeof buf));
    }
    if (st != TORCH_OK) {
        free(scratch);
        free(ctx);
        tensor_free(y);
        tensor_free(x);
        return NULL;
    }

    /* 2. y = (x - mean) * a + beta, a = gamma invstd. */
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t c = 0; c < C; c++) {
        invstd[c] = m2[c] != 0 || eps != 0 ? 1.0 / sqrt(m2[c] / M + eps) : 0.0; /* 0/0: ATen's InvStd */
        const double a = (weight ? (double)tensor_data_f32(weight)[c * weight->stride[0]] : 1.0) * invstd[c];
        const double beta = bias ? (double)tensor_data_f32(bias)[c * bias->stride[0]] : 0.0;
        bn_channel_normalise(yd, xd, N, C, S, c, mean[c], a, beta);
    }
    *ctx = (sync_ctx){.pg = pg, .N = N, .C = C, .S = S, .count = M};

    /* 3. Record the node: the last step that can fail. */
    tensor *inputs[3] = {input, weight, bias};
    bool recorded = false;
    if (ag_should_record(3, inputs)) {
        ag_node *node = ag_record(&sync_batch_norm_function, y, 3, inputs);
        if (!node || ag_node_save(node, 0, x) != TORCH_OK || ag_node_save(node, 1, weight) != TORCH_OK) {
            free(scratch);
            free(ctx);
            tensor_free(y);
            tensor_free(x);
            return NULL;
        }
        node->ctx = ctx;
        node->ctx_bytes = sizeof *ctx + 2 * (size_t)C * sizeof(double);
        recorded = true;
    }

    /* 4. Commit: the running statistics from the global batch, as bn_forward updates them. */
    if (running_mean) {
        const double f = update.cumulative ? 1.0 / ((double)update.count + 1.0) : update.momentum;
        bn_update_running_stats(running_mean, running_var, mean, m2, C, (int64_t)M, f);
    }
    free(scratch);
    if (!recorded) free(ctx);
    tensor_free(x);
    return y;
}

tensor *nnf_sync_batch_norm(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                            double momentum, double eps, const nn_process_group *pg) {
    return bn_sync_forward("nnf_sync_batch_norm", input, running_mean, running_var, weight, bias,
                           (bn_update){.momentum = momentum}, eps, pg);
}

/* A [C] float32 tensor from C doubles. */
static tensor *vector_of(const double *v, int64_t C) {
    tensor *t = torch_empty(1, &C);
    for (int64_t c = 0; t && c < C; c++) tensor_data_f32(t)[c] = (float)v[c];
    return t;
}

static torch_status sync_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const sync_ctx *ctx = node->ctx;
    const tensor *x = node->saved[0], *weight = node->saved[1];
    const int64_t N = ctx->N, C = ctx->C, S = ctx->S;
    const double M = ctx->count, *mean = ctx->data, *invstd = ctx->data + C;
    const bool need_dx = ag_node_needs_grad(node, 0), need_dw = ag_node_needs_grad(node, 1),
               need_db = ag_node_needs_grad(node, 2);
    tensor *dy = tensor_contiguous(grad_output), *dx = NULL;
    double *sums = malloc(4 * (size_t)C * sizeof(double)); /* local sum(dy), sum(dy (x - mean)), then global */
    torch_status st = !dy ? torch_last_status()
                      : !sums ? torch_error(TORCH_ERR_OUT_OF_MEMORY, "SyncBatchNormBackward: out of memory")
                              : TORCH_OK;
    if (st == TORCH_OK && need_dx && !(dx = torch_empty(x->ndim, x->shape))) st = torch_last_status();
    if (st != TORCH_OK) {
        free(sums);
        tensor_free(dy);
        return st;
    }
    const float *xd = tensor_data_f32(x), *g = tensor_data_f32(dy);
    const bool parallel = N * C * S >= SYNC_PARALLEL_MIN;
    (void)parallel;
    double *sum_dy = sums, *sum_dy_xmu = sums + C, *global = sums + 2 * C;

    /* 1. This process's sums. */
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t c = 0; c < C; c++) bn_channel_grad_sums(xd, g, N, C, S, c, mean[c], &sum_dy[c], &sum_dy_xmu[c]);
    tensor *dw = NULL, *db = NULL;
    if (need_dw) {
        for (int64_t c = 0; c < C; c++) global[c] = sum_dy_xmu[c] * invstd[c]; /* dgamma, scratch for now */
        if (!(dw = vector_of(global, C))) st = torch_last_status();
    }
    if (st == TORCH_OK && need_db && !(db = vector_of(sum_dy, C))) st = torch_last_status();

    /* 2. The global sums, then dx. Every process needs dx here, since all run the same graph, so
     *    all take part in the exchange. */
    if (st == TORCH_OK && need_dx) {
        memcpy(global, sums, 2 * (size_t)C * sizeof(double));
        st = ctx->pg->all_reduce_sum(ctx->pg->handle, global, 2 * C);
    }
    if (st == TORCH_OK && need_dx) {
        float *d = tensor_data_f32(dx);
#pragma omp parallel for schedule(static) if (parallel)
        for (int64_t c = 0; c < C; c++) {
            /* dx = k (dy - mean_dy - (x - mean) proj) = k dy + b x + (k proj mean - k mean_dy), b = -k proj */
            const double k = (weight ? (double)tensor_data_f32(weight)[c * weight->stride[0]] : 1.0) * invstd[c];
            const double mean_dy = global[c] / M, proj = invstd[c] * invstd[c] * global[C + c] / M;
            bn_channel_dx(d, g, xd, N, C, S, c, k, -k * proj, k * (proj * mean[c] - mean_dy));
        }
    }
    free(sums);
    tensor_free(dy);
    if (st != TORCH_OK) {
        tensor_free(dx);
        tensor_free(dw);
        tensor_free(db);
        return st;
    }
    grad_inputs[0] = dx;
    grad_inputs[1] = dw;
    grad_inputs[2] = db;
    return TORCH_OK;
}
