/* loss.c — log_softmax, cross_entropy and mse_loss, forward and backward side by side.
 *
 * References: https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html,
 * https://pytorch.org/docs/stable/generated/torch.nn.MSELoss.html, LogSoftmax.html.
 */
#include "loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- log_softmax --------------------------------------------------------------------------------- */

/* The input viewed as (outer, K, inner) around the softmax dim. */
typedef struct softmax_geom {
    int64_t outer, K, inner;
} softmax_geom;

static softmax_geom softmax_geometry(int ndim, const int64_t *shape, int dim) {
    softmax_geom g = {1, 1, 1};
    for (int d = 0; d < ndim; d++) {
        if (d < dim) g.outer *= shape[d];
        else if (d == dim) g.K = shape[d];
        else g.inner *= shape[d];
    }
    return g;
}

/* y[o, k, i] = x[o, k, i] - m - log(sum_k exp(x[o, k, i] - m)), m = max_k x[o, k, i]. */
static void log_softmax_forward_kernel(softmax_geom g, const float *x /* (outer, K, inner) */,
                                       float *y /* (outer, K, inner) */) {
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t i = 0; i < g.inner; i++) {
            const float *xp = x + o * g.K * g.inner + i;
            float *yp = y + o * g.K * g.inner + i;
            float m = -INFINITY;
            for (int64_t k = 0; k < g.K; k++) m = xp[k * g.inner] > m ? xp[k * g.inner] : m;
            if (isinf(m) && m < 0) m = 0.0f; /* a row of -inf: keep exp() finite, gives NaN like PyTorch */
            double s = 0.0;
            for (int64_t k = 0; k < g.K; k++) s += exp((double)xp[k * g.inner] - m);
            double lse = m + log(s);
            for (int64_t k = 0; k < g.K; k++) yp[k * g.inner] = (float)((double)xp[k * g.inner] - lse);
        }
}

/* Backward of y = x - logsumexp(x) along k, with softmax p = exp(y):
 *   dy_k/dx_j = [k == j] - p_j    so    dx_j = dy_j - p_j * sum_k dy_k. */
static void log_softmax_backward_kernel(softmax_geom g, const float *y /* (outer, K, inner) */,
                                        const float *dy /* (outer, K, inner) */, float *dx /* (outer, K, inner) */) {
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t i = 0; i < g.inner; i++) {
            int64_t base = o * g.K * g.inner + i;
            double s = 0.0;
            for (int64_t k = 0; k < g.K; k++) s += dy[base + k * g.inner];
            for (int64_t k = 0; k < g.K; k++) {
                int64_t j = base + k * g.inner;
                dx[j] = (float)((double)dy[j] - exp((double)y[j]) * s);
            }
        }
}

/* saved[0] = output y; ints[0] = dim. */
static torch_status log_softmax_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const tensor *y = node->saved[0];
    softmax_geom g = softmax_geometry(y->ndim, y->shape, (int)node->ints[0]);
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = dy ? torch_empty(y->ndim, y->shape) : NULL;
    if (!dx) {
        tensor_free(dy);
        return torch_last_status();
    }
    log_softmax_backward_kernel(g, tensor_data_f32(y), tensor_data_f32(dy), tensor_data_f32(dx));
    tensor_free(dy);
    grad_inputs[0] = dx;
    return TORCH_OK;
}

static const ag_function log_softmax_function = {.op = AG_OP_LOG_SOFTMAX, .backward = log_softmax_backward};

tensor *nnf_log_softmax(tensor *input, int dim) {
    static const char fname[] = "nnf_log_softmax";
    if (torch_check_float32(fname, "input", input) != TORCH_OK) return NULL;
    int d = 0;
    /* A 0-dim tensor has one dim to PyTorch's softmax (range [-1, 0]). */
    if (torch_wrap_dim(fname, dim, input->ndim > 0 ? input->ndim : 1, &d) != TORCH_OK) return NULL;
    softmax_geom g = softmax_geometry(input->ndim, input->shape, input->ndim > 0 ? d : -1);
    tensor *xc = tensor_contiguous(input);
    tensor *y = xc ? torch_empty(input->ndim, input->shape) : NULL;
    if (!y) {
        tensor_free(xc);
        return NULL;
    }
    log_softmax_forward_kernel(g, tensor_data_f32(xc), tensor_data_f32(y));
    tensor_free(xc);
    if (ag_should_record(1, &input)) {
        ag_node *node = ag_record(&log_softmax_function, y, 1, &input);
        if (!node || ag_node_save(node, 0, y) != TORCH_OK) {
            tensor_free(y);
            return NULL;
        }
        node->ints[0] = input->ndim > 0 ? d : -1;
    }
    return y;
}

/* ---- cross_entropy ------------------------------------------------------------------------------- */

/* loss = (1/N) sum_n [lse_n - x[n, t_n]],  lse_n = m_n + log(sum_c exp(x[n, c] - m_n)).
 * Keeps lse (N) for the backward. */
static double cross_entropy_forward_kernel(int64_t N, int64_t C, const float *x /* (N, C) */,
                                           const int64_t *t /* (N) */, double *lse /* (N) */) {
    double total = 0.0;
    for (int64_t n = 0; n < N; n++) {
        const float *row = x + n * C;
        float m = -INFINITY;
        for (int64_t c = 0; c < C; c++) m = row[c] > m ? row[c] : m;
        if (isinf(m) && m < 0) m = 0.0f;
        double s = 0.0;
        for (int64_t c = 0; c < C; c++) s += exp((double)row[c] - m);
        lse[n] = m + log(s);
        total += lse[n] - row[t[n]];
    }
    return total / (double)N; /* N = 0: NaN, as PyTorch's mean over nothing */
}

/* Backward of the mean NLL of log_softmax, with g = dL/dloss:
 *   d loss / d x[n, c] = (1/N) (softmax(x[n])_c - [c == t_n]),  softmax = exp(x - lse). */
static void cross_entropy_backward_kernel(int64_t N, int64_t C, double g, const float *x /* (N, C) */,
                                          const int64_t *t /* (N) */, const double *lse /* (N) */,
                                          float *dx /* (N, C) */) {
    double scale = g / (double)N;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            double p = exp((double)x[n * C + c] - lse[n]);
            dx[n * C + c] = (float)(scale * (p - (c == t[n] ? 1.0 : 0.0)));
        }
}

/* saved[0] = input (contiguous), saved[1] = target (contiguous); ctx = lse (N doubles). */
static torch_status cross_entropy_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const tensor *x = node->saved[0], *t = node->saved[1];
    int64_t C = x->shape[x->ndim - 1], N = x->ndim == 2 ? x->shape[0] : 1;
    tensor *dx = torch_empty(x->ndim, x->shape);
    if (!dx) return torch_last_status();
    cross_entropy_backward_kernel(N, C, tensor_item(grad_output), tensor_data_f32(x), tensor_data_i64(t), node->ctx,
                                  tensor_data_f32(dx));
    grad_inputs[0] = dx;
    return TORCH_OK;
}

static const ag_function cross_entropy_function = {.op = AG_OP_CROSS_ENTROPY, .backward = cross_entropy_backward};

tensor *nnf_cross_entropy(tensor *input, tensor *target) {
    static const char fname[] = "nnf_cross_entropy";
    char s1[96], s2[96];
    if (torch_check_float32(fname, "input", input) != TORCH_OK) return NULL;
    if (!target) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: target is NULL", fname);
        return NULL;
    }
    if (target->dtype != TORCH_INT64) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "%s: expected scalar type Long but found Float (target must hold int64 class indices, got %s)",
                    fname, torch_dtype_name(target->dtype));
        return NULL;
    }
    if (input->ndim != 1 && input->ndim != 2) {
        torch_error(TORCH_ERR_SHAPE, "%s: expected input of shape (N, C) or (C) (got %s)", fname,
                    torch_shape_str(input->ndim, input->shape, s1, sizeof s1));
        return NULL;
    }
    if (target->ndim != input->ndim - 1) {
        torch_error(TORCH_ERR_SHAPE, "%s: expected target of shape %s for input of shape %s (got %s)", fname,
                    input->ndim == 2 ? "(N)" : "()", torch_shape_str(input->ndim, input->shape, s1, sizeof s1),
                    torch_shape_str(target->ndim, target->shape, s2, sizeof s2));
        return NULL;
    }
    int64_t N = input->ndim == 2 ? input->shape[0] : 1, C = input->shape[input->ndim - 1];
    if (input->ndim == 2 && target->shape[0] != N) {
        torch_error(TORCH_ERR_SHAPE, "%s: Expected input batch_size (%lld) to match target batch_size (%lld).", fname,
                    (long long)N, (long long)target->shape[0]);
        return NULL;
    }
    tensor *tc = tensor_contiguous(target);
    if (!tc) return NULL;
    const int64_t *t = tensor_data_i64(tc);
    for (int64_t n = 0; n < N; n++)
        if (t[n] < 0 || t[n] >= C) {
            torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Target %lld is out of bounds.", fname, (long long)t[n]);
            tensor_free(tc);
            return NULL;
        }
    tensor *xc = tensor_contiguous(input);
    double *lse = malloc((size_t)(N > 0 ? N : 1) * sizeof *lse);
    if (!xc || !lse) {
        if (!lse) torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        tensor_free(xc), tensor_free(tc), free(lse);
        return NULL;
    }
    double loss = cross_entropy_forward_kernel(N, C, tensor_data_f32(xc), t, lse);
    tensor *y = torch_scalar((float)loss);
    if (y && ag_should_record(1, &input)) {
        ag_node *node = ag_record(&cross_entropy_function, y, 1, &input);
        if (!node || ag_node_save(node, 0, xc) != TORCH_OK || ag_node_save(node, 1, tc) != TORCH_OK) {
            tensor_free(y);
            y = NULL;
        } else {
            node->ctx = lse; /* freed with free() by the node */
            node->ctx_bytes = (size_t)N * sizeof *lse;
            lse = NULL;
        }
    }
    free(lse);
    tensor_free(xc), tensor_free(tc);
    return y;
}

/* ---- mse_loss ------------------------------------------------------------------------------------ */

/* Backward of L = (1/M) sum_i (x_i - y_i)^2, with g = dL_total/dL:
 *   dx_i = g * 2 (x_i - y_i) / M,   dy_i = -dx_i. */
static torch_status mse_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const tensor *x = node->saved[0], *y = node->saved[1];
    bool need_x = ag_node_needs_grad(node, 0), need_y = ag_node_needs_grad(node, 1);
    tensor *dx = need_x ? torch_empty(x->ndim, x->shape) : NULL;
    tensor *dy = need_y ? torch_empty(y->ndim, y->shape) : NULL;
    if ((need_x && !dx) || (need_y && !dy)) {
        tensor_free(dx), tensor_free(dy);
        return torch_last_status();
    }
    double scale = 2.0 * tensor_item(grad_output) / (double)x->numel;
    const float *xp = tensor_data_f32(x), *yp = tensor_data_f32(y);
    for (int64_t i = 0; i < x->numel; i++) {
        float d = (float)(scale * ((double)xp[i] - (double)yp[i]));
        if (dx) tensor_data_f32(dx)[i] = d;
        if (dy) tensor_data_f32(dy)[i] = -d;
    }
    grad_inputs[0] = dx;
    grad_inputs[1] = dy;
    return TORCH_OK;
}

static const ag_function mse_function = {.op = AG_OP_MSE_LOSS, .backward = mse_backward};

tensor *nnf_mse_loss(tensor *input, tensor *target) {
    static const char fname[] = "nnf_mse_loss";
    char s1[96], s2[96];
    if (torch_check_float32(fname, "input", input) != TORCH_OK ||
        torch_check_float32(fname, "target", target) != TORCH_OK)
        return NULL;
    if (!tensor_same_shape(input, target)) {
        torch_error(TORCH_ERR_SHAPE, "%s: expected target of the input's size %s (got %s)", fname,
                    torch_shape_str(input->ndim, input->shape, s1, sizeof s1),
                    torch_shape_str(target->ndim, target->shape, s2, sizeof s2));
        return NULL;
    }
    tensor *xc = tensor_contiguous(input), *yc = tensor_contiguous(target);
    if (!xc || !yc) {
        tensor_free(xc), tensor_free(yc);
        return NULL;
    }
    const float *xp = tensor_data_f32(xc), *yp = tensor_data_f32(yc);
    double s = 0.0;
    for (int64_t i = 0; i < xc->numel; i++) {
        double d = (double)xp[i] - (double)yp[i];
        s += d * d;
    }
    tensor *out = torch_scalar((float)(s / (double)xc->numel));
    tensor *inputs[2] = {input, target};
    if (out && ag_should_record(2, inputs)) {
        ag_node *node = ag_record(&mse_function, out, 2, inputs);
        if (!node || ag_node_save(node, 0, xc) != TORCH_OK || ag_node_save(node, 1, yc) != TORCH_OK) {
            tensor_free(out);
            out = NULL;
        }
    }
    tensor_free(xc), tensor_free(yc);
    return out;
}
