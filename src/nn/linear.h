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

typedef struct nn_linear_options {
    int64_t in_features;        /* Size of each input's last dim. Required, > 0. No effect if changed later. */
    int64_t out_features;       /* Size of each output's last dim. Required, > 0. No effect if changed later. */
    bool    bias;               /* Learnable bias of size out_features. Default true. No effect if changed later. */
    torch_generator *generator; /* Draws the initial weights; NULL (default): this thread's default
                                 * generator. Used by the constructor only, never kept. */
} nn_linear_options;

/* Named-argument form with PyTorch's defaults:
 *   nn_linear(NN_LINEAR_OPTIONS(.in_features = 128, .out_features = 10)) */
#define NN_LINEAR_OPTIONS(...) ((nn_linear_options){.bias = true, __VA_ARGS__})

/* The same defaults without the macro. */
nn_linear_options nn_linear_options_default(int64_t in_features, int64_t out_features);

/* Linear(in_features, out_features, bias): registers "weight" (out, in) and, if bias, "bias"
 * (out), initialised as PyTorch does (kaiming_uniform(a = sqrt(5)) and U(+-1/sqrt(in))).
 * NULL on invalid sizes: "Linear: in_features must be > 0 (got 0)". */
nn_module *nn_linear(nn_linear_options options);

/* The typed view of a Linear module. */
typedef struct nn_linear_module {
    nn_module         base;    /* must be first */
    nn_linear_options options; /* as constructed (generator reset to NULL); read-only */
    tensor           *weight;  /* borrowed: the registered parameter (out_features, in_features) */
    tensor           *bias;    /* borrowed: the registered parameter, NULL without bias */
} nn_linear_module;

/* m as a Linear, or NULL when m is NULL or another type. Borrowed. */
nn_linear_module *nn_as_linear(nn_module *m);

#endif /* CTORCH_NN_LINEAR_H */
