/* linear.h — the affine map y = x W^T + b: nnf_linear (sgemm, with its backward) and the Linear
 * module (torch.nn.Linear, R torch's nn_linear).
 *
 * Ownership (as in tensor.h and module.h):
 *   - nnf_linear and nn_module_forward return a new tensor reference owned by the caller, or NULL
 *     with torch_last_error() set; inputs are borrowed.
 *   - nn_linear returns an owned module; free it with nn_module_free().
 *   - nn_as_linear(m)->weight / ->bias are borrowed, valid while the module lives.
 *
 * Shapes: input (*, in_features) — any number of leading dims, or just (in_features) — weight
 * (out_features, in_features), bias (out_features) or NULL, output (*, out_features).
 */
#ifndef CTORCH_NN_LINEAR_H
#define CTORCH_NN_LINEAR_H

#include "module.h"

/* torch.nn.functional.linear: y = input @ weight^T + bias. */
tensor *nnf_linear(tensor *input, tensor *weight, tensor *bias);

/* Linear(in_features, out_features, bias): registers "weight" (out, in) and, if bias, "bias"
 * (out), initialised as PyTorch does (kaiming_uniform(a = sqrt(5)) and U(+-1/sqrt(in))) from gen
 * (NULL: this thread's default generator; not kept). NULL on invalid sizes. */
nn_module *nn_linear(int64_t in_features, int64_t out_features, bool bias, torch_generator *gen);

/* The typed view of a Linear module. */
typedef struct nn_linear_module {
    nn_module base;         /* must be first */
    int64_t   in_features;  /* as constructed; read-only */
    int64_t   out_features; /* as constructed; read-only */
    tensor   *weight;       /* borrowed: the registered parameter (out_features, in_features) */
    tensor   *bias;         /* borrowed: the registered parameter, NULL without bias */
} nn_linear_module;

/* m as a Linear, or NULL when m is NULL or another type. Borrowed. */
nn_linear_module *nn_as_linear(nn_module *m);

#endif /* CTORCH_NN_LINEAR_H */
