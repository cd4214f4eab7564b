/* linear.c — nnf_linear through torch_sgemm, its backward next to it, and the Linear module.
 *
 * Reference: https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
 * The input's leading dims are folded into one, M = numel / in, so that the whole batch is one
 * sgemm: y (M, out) = x (M, in) @ W^T (in, out) + b.
 */
#include "linear.h"

#include "init.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static torch_status linear_check(const char *fname, const tensor *x, const tensor *w, const tensor *b) {
    char s1[96], s2[96];
    torch_status st;
    if ((st = torch_check_float32(fname, "input", x)) != TORCH_OK ||
        (st = torch_check_float32(fname, "weight", w)) != TORCH_OK)
        return st;
    if (b && (st = torch_check_float32(fname, "bias", b)) != TORCH_OK) return st; /* bias is optional */
    if (x->ndim < 1)
        return torch_error(TORCH_ERR_SHAPE, "%s: both arguments to linear need to be at least 1D, but they are 0D and %dD",
                           fname, w->ndim);
    if (w->ndim != 2)
        return torch_error(TORCH_ERR_SHAPE, "%s: expected 2D weight (out_features, in_features), but got weight of size: %s",
                           fname, torch_shape_str(w->ndim, w->shape, s1, sizeof s1));
    int64_t in = x->shape[x->ndim - 1];
    if (in != w->shape[1]) {
        int64_t m = in ? x->numel / in : torch_shape_numel(x->ndim - 1, x->shape);
        return torch_error(TORCH_ERR_SHAPE, "%s: mat1 and mat2 shapes cannot be multiplied (%lldx%lld and %lldx%lld)",
                           fname, (long long)m, (long long)in, (long long)w->shape[1], (long long)w->shape[0]);
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        int64_t want = w->shape[0];
        return torch_error(TORCH_ERR_SHAPE, "%s: expected bias of size %s (got %s)", fname,
                           torch_shape_str(1, &want, s1, sizeof s1), torch_shape_str(b->ndim, b->shape, s2, sizeof s2));
    }
    if (w->shape[0] > INT_MAX || w->shape[1] > INT_MAX || torch_shape_numel(x->ndim - 1, x->shape) > INT_MAX)
        return torch_error(TORCH_ERR_SHAPE, "%s: input or weight too large for a 32-bit BLAS", fname);
    return TORCH_OK;
}

/* ---- forward and backward ------------------------------------------------------------------------ */

/* y[m, o] = b[o] + sum_i x[m, i] * w[o, i]. */
static void linear_forward_kernel(int64_t M, int64_t IN, int64_t OUT, const float *x /* (M, IN) */,
                                  const float *w /* (OUT, IN) */, const float *b /* (OUT) or NULL */,
                                  float *y /* (M, OUT) */) {
    torch_sgemm(false, true, M, OUT, IN, x, IN, w, IN, 0.0f, y, OUT);
    if (b)
        for (int64_t m = 0; m < M; m++)
            for (int64_t o = 0; o < OUT; o++) y[m * OUT + o] += b[o];
}

/* Backward of y = x W^T + b with dY = dL/dy (M, OUT):
 *   dx = dY @ W          (M, OUT) @ (OUT, IN)     since dy[m,o]/dx[m,i] = w[o,i]
 *   dW = dY^T @ x        (OUT, M) @ (M, IN)       since dy[m,o]/dw[o,i] = x[m,i]
 *   db = sum_m dY[m, :]                           (double accumulator, fixed order) */
static void linear_backward_kernel(int64_t M, int64_t IN, int64_t OUT, const float *x /* (M, IN) */,
                                   const float *w /* (OUT, IN) */, const float *dy /* (M, OUT) */,
                                   float *dx /* (M, IN) or NULL */, float *dw /* (OUT, IN) or NULL */,
                                   float *db /* (OUT) or NULL */) {
    if (dx) torch_sgemm(false, false, M, IN, OUT, dy, OUT, w, IN, 0.0f, dx, IN);
    if (dw) torch_sgemm(true, false, OUT, IN, M, dy, OUT, x, IN, 0.0f, dw, IN);
    if (db)
        for (int64_t o = 0; o < OUT; o++) {
            double s = 0.0;
            for (int64_t m = 0; m < M; m++) s += dy[m * OUT + o];
            db[o] = (float)s;
        }
}

/* saved[0] = input (contiguous), saved[1] = weight (contiguous). */
static torch_status linear_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const tensor *x = node->saved[0], *w = node->saved[1];
    int64_t OUT = w->shape[0], IN = w->shape[1];
    int64_t M = torch_shape_numel(x->ndim - 1, x->shape);
    bool need_x = ag_node_needs_grad(node, 0), need_w = ag_node_needs_grad(node, 1),
         need_b = ag_node_needs_grad(node, 2);
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = need_x ? torch_empty(x->ndim, x->shape) : NULL;
    tensor *dw = need_w ? torch_empty(2, w->shape) : NULL;
    tensor *db = need_b ? torch_empty(1, &OUT) : NULL;
    if (!dy || (need_x && !dx) || (need_w && !dw) || (need_b && !db)) {
        tensor_free(dy), tensor_free(dx), tensor_free(dw), tensor_free(db);
        return torch_last_status();
    }
    linear_backward_kernel(M, IN, OUT, tensor_data_f32(x), tensor_data_f32(w), tensor_data_f32(dy),
                           dx ? tensor_data_f32(dx) : NULL, dw ? tensor_data_f32(dw) : NULL,
                           db ? tensor_data_f32(db) : NULL);
    tensor_free(dy);
    grad_inputs[0] = dx;
    grad_inputs[1] = dw;
    grad_inputs[2] = db;
    return TORCH_OK;
}

/* PyTorch's node names: addmm with a bias, mm without. */
static const ag_function addmm_function = {.op = AG_OP_LINEAR, .backward = linear_backward};
static const ag_function mm_function = {.op = AG_OP_LINEAR_NO_BIAS, .backward = linear_backward};

static tensor *linear_impl(const char *fname, tensor *input, tensor *weight, tensor *bias) {
    if (linear_check(fname, input, weight, bias) != TORCH_OK) return NULL;
    int64_t IN = weight->shape[1], OUT = weight->shape[0];
    int64_t M = torch_shape_numel(input->ndim - 1, input->shape);
    int64_t shape[TORCH_MAX_DIMS];
    memcpy(shape, input->shape, sizeof shape);
    shape[input->ndim - 1] = OUT;
    tensor *xc = tensor_contiguous(input), *wc = tensor_contiguous(weight), *bc = bias ? tensor_contiguous(bias) : NULL;
    tensor *y = torch_empty(input->ndim, shape);
    if (!xc || !wc || (bias && !bc) || !y) {
        tensor_free(xc), tensor_free(wc), tensor_free(bc), tensor_free(y);
        return NULL;
    }
    linear_forward_kernel(M, IN, OUT, tensor_data_f32(xc), tensor_data_f32(wc), bc ? tensor_data_f32(bc) : NULL,
                          tensor_data_f32(y));
    tensor *inputs[3] = {input, weight, bias};
    if (ag_should_record(3, inputs)) {
        ag_node *node = ag_record(bias ? &addmm_function : &mm_function, y, 3, inputs);
        if (!node || ag_node_save(node, 0, xc) != TORCH_OK || ag_node_save(node, 1, wc) != TORCH_OK) {
            tensor_free(y);
            y = NULL;
        }
    }
    tensor_free(xc), tensor_free(wc), tensor_free(bc);
    return y;
}

tensor *nnf_linear(tensor *input, tensor *weight, tensor *bias) { return linear_impl("nnf_linear", input, weight, bias); }

/* ---- module ------------------------------------------------------------------------------------ */

static tensor *linear_module_forward(nn_module *self, tensor *input) {
    nn_linear_module *m = (nn_linear_module *)self;
    return linear_impl("Linear", input, m->weight, m->bias);
}

static torch_status linear_reset_parameters(nn_module *self, torch_generator *gen) {
    nn_linear_module *m = (nn_linear_module *)self;
    return nn_init_default_weight_bias_(m->weight, m->bias, gen);
}

static int linear_extra_repr(const nn_module *self, char *buf, size_t len) {
    const nn_linear_module *m = (const nn_linear_module *)self;
    return snprintf(buf, len, "in_features=%lld, out_features=%lld, bias=%s", (long long)m->options.in_features,
                    (long long)m->options.out_features, m->bias ? "True" : "False");
}

/* nn_linear with self's options, initialised from a generator of its own (see conv2d_new_like). */
static nn_module *linear_new_like(const nn_module *self) {
    torch_generator scratch = torch_generator_new(0);
    nn_linear_options o = ((const nn_linear_module *)self)->options;
    o.generator = &scratch;
    return nn_linear(o);
}

static const nn_module_ops linear_ops = {
    .type_name = "Linear",
    .forward = linear_module_forward,
    .reset_parameters = linear_reset_parameters,
    .extra_repr = linear_extra_repr,
    .new_like = linear_new_like,
};

nn_linear_options nn_linear_options_default(int64_t in_features, int64_t out_features) {
    return NN_LINEAR_OPTIONS(.in_features = in_features, .out_features = out_features);
}

nn_module *nn_linear(nn_linear_options options) {
    int64_t in_features = options.in_features, out_features = options.out_features;
    if (in_features <= 0 || out_features <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "Linear: %s must be > 0 (got %lld)",
                    in_features <= 0 ? "in_features" : "out_features",
                    (long long)(in_features <= 0 ? in_features : out_features));
        return NULL;
    }
    nn_linear_module *m = nn_module_alloc(sizeof *m, &linear_ops);
    if (!m) return NULL;
    m->options = options;
    m->options.generator = NULL;
    int64_t wshape[2] = {out_features, in_features};
    m->weight = nn_module_register_parameter(&m->base, "weight", torch_empty(2, wshape));
    if (m->weight && options.bias) m->bias = nn_module_register_parameter(&m->base, "bias", torch_empty(1, wshape));
    if (!m->weight || (options.bias && !m->bias) || linear_reset_parameters(&m->base, options.generator) != TORCH_OK) {
        nn_module_free(&m->base);
        return NULL;
    }
    return &m->base;
}

nn_linear_module *nn_as_linear(nn_module *m) { return m && m->ops == &linear_ops ? (nn_linear_module *)m : NULL; }
