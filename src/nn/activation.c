/* activation.c — the ReLU module (over torch_relu), Dropout (forward and backward side by side) and
 * Flatten. */
#include "activation.h"

#include "../autograd/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ReLU ----------------------------------------------------------------------------------- */

/* F.relu is the autograd op itself (torch_relu: one pass each way, ATen's edge cases). */
tensor *nnf_relu(tensor *input) { return torch_relu(input); }

static tensor *relu_forward(nn_module *self, tensor *input) {
    (void)self;
    return nnf_relu(input);
}

static nn_module *relu_new_like(const nn_module *self) {
    (void)self;
    return nn_relu();
}

static const nn_module_ops relu_ops = {.type_name = "ReLU", .forward = relu_forward, .new_like = relu_new_like};

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

static const ag_function dropout_function = {.op = AG_OP_DROPOUT, .backward = dropout_backward};

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
    return dropout_impl("Dropout", input, m->options.p, self->training, m->options.generator);
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
    python_float(((const nn_dropout_module *)self)->options.p, p, sizeof p);
    return snprintf(buf, len, "p=%s, inplace=False", p);
}

static nn_module *dropout_new_like(const nn_module *self) { return nn_dropout(((const nn_dropout_module *)self)->options); }

static const nn_module_ops dropout_ops = {
    .type_name = "Dropout", .forward = dropout_forward, .extra_repr = dropout_extra_repr, .new_like = dropout_new_like};

nn_dropout_options nn_dropout_options_default(void) { return NN_DROPOUT_OPTIONS(); }

nn_module *nn_dropout(nn_dropout_options options) {
    if (!(options.p >= 0.0 && options.p <= 1.0)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "Dropout: dropout probability has to be between 0 and 1, but got %g",
                    options.p);
        return NULL;
    }
    nn_dropout_module *m = nn_module_alloc(sizeof *m, &dropout_ops);
    if (!m) return NULL;
    m->options = options;
    return &m->base;
}

nn_dropout_module *nn_as_dropout(nn_module *m) { return m && m->ops == &dropout_ops ? (nn_dropout_module *)m : NULL; }

/* ---- Flatten ------------------------------------------------------------------------------------ */

static tensor *flatten_forward(nn_module *self, tensor *input) {
    const nn_flatten_module *m = (const nn_flatten_module *)self;
    return torch_flatten(input, m->options.start_dim, m->options.end_dim);
}

static int flatten_extra_repr(const nn_module *self, char *buf, size_t len) {
    const nn_flatten_module *m = (const nn_flatten_module *)self;
    return snprintf(buf, len, "start_dim=%d, end_dim=%d", m->options.start_dim, m->options.end_dim);
}

static nn_module *flatten_new_like(const nn_module *self) { return nn_flatten(((const nn_flatten_module *)self)->options); }

static const nn_module_ops flatten_ops = {
    .type_name = "Flatten", .forward = flatten_forward, .extra_repr = flatten_extra_repr, .new_like = flatten_new_like};

nn_flatten_options nn_flatten_options_default(void) { return NN_FLATTEN_OPTIONS(); }

nn_module *nn_flatten(nn_flatten_options options) {
    nn_flatten_module *m = nn_module_alloc(sizeof *m, &flatten_ops);
    if (!m) return NULL;
    m->options = options;
    return &m->base;
}

nn_flatten_module *nn_as_flatten(nn_module *m) { return m && m->ops == &flatten_ops ? (nn_flatten_module *)m : NULL; }
