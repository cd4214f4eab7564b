/* init.c — torch.nn.init's uniform_ and kaiming_uniform_ (see init.h). */
#include "init.h"

#include <math.h>

torch_status nn_init_calculate_fan_in_and_fan_out(const tensor *t, int64_t *fan_in, int64_t *fan_out) {
    if (!t) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_init_calculate_fan_in_and_fan_out: input is NULL");
    if (t->ndim < 2)
        return torch_error(TORCH_ERR_SHAPE,
                           "nn_init_calculate_fan_in_and_fan_out: Fan in and fan out can not be computed for tensor "
                           "with fewer than 2 dimensions (got %dD)", t->ndim);
    int64_t receptive = 1;
    for (int d = 2; d < t->ndim; d++) receptive *= t->shape[d];
    if (fan_in) *fan_in = t->shape[1] * receptive;
    if (fan_out) *fan_out = t->shape[0] * receptive;
    return TORCH_OK;
}

/* Writes U(lo, hi) into t in row-major order; checks already done. */
static torch_status fill_uniform(tensor *t, double lo, double hi, torch_generator *gen) {
    if (!gen) gen = torch_default_generator();
    if (t->numel == 0) return TORCH_OK;
    /* A non-contiguous tensor is filled through a contiguous buffer so that the draw order is
     * the logical (row-major) order either way. */
    tensor *dst = tensor_is_contiguous(t) ? tensor_retain(t) : torch_empty(t->ndim, t->shape);
    if (!dst) return torch_last_status();
    float *p = tensor_data_f32(dst);
    for (int64_t i = 0; i < dst->numel; i++) p[i] = (float)(lo + (hi - lo) * torch_generator_uniform(gen));
    /* Initialising writes a parameter in place, as PyTorch's init does under no_grad. */
    bool grad_mode = torch_set_grad_enabled(false);
    torch_status st = TORCH_OK;
    if (dst == t) tensor_bump_version(t);
    else st = tensor_copy_(t, dst);
    torch_set_grad_enabled(grad_mode);
    tensor_free(dst);
    return st;
}

torch_status nn_init_uniform_(tensor *t, double lo, double hi, torch_generator *gen) {
    torch_status st = torch_check_float32("nn_init_uniform_", "input", t);
    if (st != TORCH_OK) return st;
    if (!(lo <= hi))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "nn_init_uniform_: uniform_ expects to return a [from, to) range, but found from=%g > to=%g",
                           lo, hi);
    return fill_uniform(t, lo, hi, gen);
}

torch_status nn_init_kaiming_uniform_(tensor *t, double a, torch_generator *gen) {
    torch_status st = torch_check_float32("nn_init_kaiming_uniform_", "input", t);
    int64_t fan_in = 0;
    if (st == TORCH_OK) st = nn_init_calculate_fan_in_and_fan_out(t, &fan_in, NULL);
    if (st != TORCH_OK) return st;
    if (t->numel == 0) return TORCH_OK; /* PyTorch: "Initializing zero-element tensors is a no-op" */
    double gain = sqrt(2.0 / (1.0 + a * a));
    double bound = gain * sqrt(3.0 / (double)fan_in);
    return fill_uniform(t, -bound, bound, gen);
}

torch_status nn_init_default_weight_bias_(tensor *weight, tensor *bias, torch_generator *gen) {
    torch_status st = torch_check_float32("nn_init_default_weight_bias_", "weight", weight);
    int64_t fan_in = 0;
    if (st == TORCH_OK && bias) st = torch_check_float32("nn_init_default_weight_bias_", "bias", bias);
    if (st == TORCH_OK) st = nn_init_calculate_fan_in_and_fan_out(weight, &fan_in, NULL);
    if (st != TORCH_OK) return st;
    if (!gen) gen = torch_default_generator();
    st = nn_init_kaiming_uniform_(weight, sqrt(5.0), gen);
    if (st != TORCH_OK || !bias) return st;
    double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
    return fill_uniform(bias, -bound, bound, gen);
}
