/* activation.c — ReLU, Dropout (forward and backward side by side) and Flatten. */
#include "activation.h"

#include "../autograd/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ReLU ----------------------------------------------------------------------------------- */

/* Element-wise kernels run in fixed chunks shared by the threads (no reduction: any split gives
 * the same bits); below a few chunks the parallel region costs more than it saves. */
#define RELU_CHUNK ((int64_t)1 << 15)

/* y = 0 where x < 0, else x: NaN propagates and -0 stays -0, as ATen's clamp_min(x, 0). */
static void relu_forward_chunk(int64_t n, const float *restrict x /* (n) */, float *restrict y /* (n) */) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

/* Backward of y = max(x, 0) from the saved output: dy/dx is 1 where y > 0 and 0 where y = 0
 * (PyTorch's choice at x = 0), so dx = dy where y > 0, else 0; a NaN output passes dy, as ATen's
 * threshold_backward (y <= 0 ? 0 : dy) does. One pass, no mask tensor. */
static void relu_backward_chunk(int64_t n, const float *restrict y /* (n) */, const float *restrict dy /* (n) */,
                                float *restrict dx /* (n) */) {
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i]; /* read unconditionally: a plain vector load, not a masked one */
        dx[i] = y[i] <= 0.0f ? 0.0f : g;
    }
}

static void relu_forward_kernel(int64_t n, const float *x /* (n) */, float *y /* (n) */) {
    const int64_t chunks = (n + RELU_CHUNK - 1) / RELU_CHUNK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (chunks > 4)
#endif
    for (int64_t c = 0; c < chunks; c++) {
        int64_t o = c * RELU_CHUNK, len = n - o < RELU_CHUNK ? n - o : RELU_CHUNK;
        relu_forward_chunk(len, x + o, y + o);
    }
}

static void relu_backward_kernel(int64_t n, const float *y /* (n) */, const float *dy /* (n) */, float *dx /* (n) */) {
    const int64_t chunks = (n + RELU_CHUNK - 1) / RELU_CHUNK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (chunks > 4)
#endif
    for (int64_t c = 0; c < chunks; c++) {
        int64_t o = c * RELU_CHUNK, len = n - o < RELU_CHUNK ? n - o : RELU_CHUNK;
        relu_backward_chunk(len, y + o, dy + o, dx + o);
    }
}

/* saved[0] = the output (contiguous). */
static torch_status relu_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const tensor *y = node->saved[0];
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = dy ? torch_empty(y->ndim, y->shape) : NULL;
    if (!dx) {
        tensor_free(dy);
        return torch_last_status();
    }
    relu_backward_kernel(y->numel, tensor_data_f32(y), tensor_data_f32(dy), tensor_data_f32(dx));
    tensor_free(dy);
    grad_inputs[0] = dx;
    return TORCH_OK;
}

static const ag_function relu_function = {.name = "ReluBackward0", .backward = relu_backward};

/* PyTorch's relu through kernels of its own: one pass forward, one pass backward (autograd's
 * torch_relu goes through the generic element-wise ops; the two differ only at -0 and NaN, where
 * this one follows ATen: relu(-0) = -0, and a NaN output passes its gradient). */
tensor *nnf_relu(tensor *input) {
    if (torch_check_float32("torch_relu", "input", input) != TORCH_OK) return NULL; /* torch_relu's messages */
    tensor *xc = tensor_contiguous(input);
    tensor *y = xc ? torch_empty(input->ndim, input->shape) : NULL;
    if (!y) {
        tensor_free(xc);
        return NULL;
    }
    relu_forward_kernel(y->numel, tensor_data_f32(xc), tensor_data_f32(y));
    tensor_free(xc);
    if (ag_should_record(1, &input)) {
        ag_node *node = ag_record(&relu_function, y, 1, &input);
        if (!node || ag_node_save(node, 0, y) != TORCH_OK) {
            tensor_free(y);
            return NULL;
        }
    }
    return y;
}

static tensor *relu_forward(nn_module *self, tensor *input) {
    (void)self;
    return nnf_relu(input);
}

static const nn_module_ops relu_ops = {.type_name = "ReLU", .forward = relu_forward};

nn_module *nn_relu(void) { return nn_module_alloc(sizeof(nn_module), &relu_ops); }

bool nn_is_relu(const nn_module *m) { return m && m->ops == &relu_ops; }

/* ---- Dropout ------------------------------------------------------------------------------------ */

/* Backward of y = x * mask (mask[i] = keep[i] / (1 - p), drawn in the forward):
 *   dx = dy * mask. saved[0] = mask. */
static torch_status dropout_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const tensor *mask = node->saved[0];
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = dy ? torch_empty(mask->ndim, mask->shape) : NULL;
    if (!dx) {
        tensor_free(dy);
        return torch_last_status();
    }
    const float *d = tensor_data_f32(dy), *mk = tensor_data_f32(mask);
    float *o = tensor_data_f32(dx);
    for (int64_t i = 0; i < dx->numel; i++) o[i] = d[i] * mk[i];
    tensor_free(dy);
    grad_inputs[0] = dx;
    return TORCH_OK;
}

static const ag_function dropout_function = {.name = "NativeDropoutBackward0", .backward = dropout_backward};

static tensor *dropout_impl(const char *fname, tensor *input, double p, bool training, torch_generator *gen) {
    if (!(p >= 0.0 && p <= 1.0)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: dropout probability has to be between 0 and 1, but got %g", fname, p);
        return NULL;
    }
    if (torch_check_float32(fname, "input", input) != TORCH_OK) return NULL;
    if (!training || p == 0.0) return tensor_retain(input);
    if (!gen) gen = torch_default_generator();
    tensor *xc = tensor_contiguous(input);
    tensor *mask = torch_empty(input->ndim, input->shape);
    tensor *y = torch_empty(input->ndim, input->shape);
    if (!xc || !mask || !y) {
        tensor_free(xc), tensor_free(mask), tensor_free(y);
        return NULL;
    }
    /* Sequential draws: the mask depends on the seed only, never on the thread count. */
    const float scale = p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f;
    const float *x = tensor_data_f32(xc);
    float *mk = tensor_data_f32(mask), *out = tensor_data_f32(y);
    for (int64_t i = 0; i < y->numel; i++) {
        mk[i] = torch_generator_uniform(gen) >= p ? scale : 0.0f;
        out[i] = x[i] * mk[i];
    }
    tensor_free(xc);
    if (ag_should_record(1, &input)) {
        ag_node *node = ag_record(&dropout_function, y, 1, &input);
        if (!node || ag_node_save(node, 0, mask) != TORCH_OK) {
            tensor_free(y);
            y = NULL;
        }
    }
    tensor_free(mask);
    return y;
}

tensor *nnf_dropout(tensor *input, double p, bool training, torch_generator *gen) {
    return dropout_impl("nnf_dropout", input, p, training, gen);
}

static tensor *dropout_forward(nn_module *self, tensor *input) {
    nn_dropout_module *m = (nn_dropout_module *)self;
    return dropout_impl("Dropout", input, m->p, self->training, m->generator);
}

/* Python's repr of a float: the shortest decimal that reads back the same, with ".0" on integers. */
static void python_float(double v, char *buf, size_t len) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".en")) strncat(buf, ".0", len - strlen(buf) - 1);
}

static int dropout_extra_repr(const nn_module *self, char *buf, size_t len) {
    char p[40];
    python_float(((const nn_dropout_module *)self)->p, p, sizeof p);
    return snprintf(buf, len, "p=%s, inplace=False", p);
}

static const nn_module_ops dropout_ops = {
    .type_name = "Dropout", .forward = dropout_forward, .extra_repr = dropout_extra_repr};

nn_module *nn_dropout(double p, torch_generator *gen) {
    if (!(p >= 0.0 && p <= 1.0)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "Dropout: dropout probability has to be between 0 and 1, but got %g", p);
        return NULL;
    }
    nn_dropout_module *m = nn_module_alloc(sizeof *m, &dropout_ops);
    if (!m) return NULL;
    m->p = p;
    m->generator = gen;
    return &m->base;
}

nn_dropout_module *nn_as_dropout(nn_module *m) { return m && m->ops == &dropout_ops ? (nn_dropout_module *)m : NULL; }

/* ---- Flatten ------------------------------------------------------------------------------------ */

static tensor *flatten_forward(nn_module *self, tensor *input) {
    const nn_flatten_module *m = (const nn_flatten_module *)self;
    return torch_flatten(input, m->start_dim, m->end_dim);
}

static int flatten_extra_repr(const nn_module *self, char *buf, size_t len) {
    const nn_flatten_module *m = (const nn_flatten_module *)self;
    return snprintf(buf, len, "start_dim=%d, end_dim=%d", m->start_dim, m->end_dim);
}

static const nn_module_ops flatten_ops = {
    .type_name = "Flatten", .forward = flatten_forward, .extra_repr = flatten_extra_repr};

nn_module *nn_flatten(int start_dim, int end_dim) {
    nn_flatten_module *m = nn_module_alloc(sizeof *m, &flatten_ops);
    if (!m) return NULL;
    m->start_dim = start_dim;
    m->end_dim = end_dim;
    return &m->base;
}

nn_flatten_module *nn_as_flatten(nn_module *m) { return m && m->ops == &flatten_ops ? (nn_flatten_module *)m : NULL; }
