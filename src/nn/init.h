/* init.h — parameter initialisation (torch.nn.init, R torch's nn_init_*), drawn from a generator.
 *
 * Ownership: the functions write into the tensor they are given, in place, and allocate nothing
 * that outlives the call. They do not record autograd: initialising a parameter is not part of
 * any graph (PyTorch runs them under no_grad).
 *
 * Random numbers: elements are drawn in row-major order of the tensor's shape, one uniform
 * double per element, from `gen` (NULL: this thread's default generator, see generator.h).
 * The same seed therefore gives the same weights whatever the thread count. The stream is
 * ctorch's own: the distribution matches PyTorch's, the numbers do not.
 */
#ifndef CTORCH_NN_INIT_H
#define CTORCH_NN_INIT_H

#include "../tensor/tensor.h"

/* PyTorch's _calculate_fan_in_and_fan_out: for a weight of shape (out, in, k1, k2, ...),
 * fan_in = in * k1 * k2 * ..., fan_out = out * k1 * k2 * .... Needs at least 2 dims. */
torch_status nn_init_calculate_fan_in_and_fan_out(const tensor *t, int64_t *fan_in, int64_t *fan_out);

/* Fills t (float32) with U(lo, hi); lo <= hi. */
torch_status nn_init_uniform_(tensor *t, double lo, double hi, torch_generator *gen);

/* kaiming_uniform_(t, a, mode = "fan_in", nonlinearity = "leaky_relu"): U(-bound, bound) with
 *   gain  = sqrt(2 / (1 + a^2))          (leaky_relu with negative slope a; a = 0 is ReLU)
 *   bound = gain * sqrt(3 / fan_in).
 * PyTorch's default for Conv2d and Linear weights is a = sqrt(5), which gives
 * bound = sqrt(1/3) * sqrt(3 / fan_in) = 1 / sqrt(fan_in). */
torch_status nn_init_kaiming_uniform_(tensor *t, double a, torch_generator *gen);

/* What Conv2d and Linear do in reset_parameters (PyTorch's defaults): weight ~
 * kaiming_uniform_(a = sqrt(5)), then, if bias is not NULL, bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * with the weight's fan_in (0 bound when fan_in is 0). Weight drawn first, then bias. */
torch_status nn_init_default_weight_bias_(tensor *weight, tensor *bias, torch_generator *gen);

#endif /* CTORCH_NN_INIT_H */
