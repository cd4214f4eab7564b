/* activation.h — element-wise and shape layers without parameters: ReLU, Dropout, Flatten
 * (torch.nn.ReLU, Dropout, Flatten; R torch's nn_relu, nn_dropout, nn_flatten).
 *
 * Ownership (as in tensor.h and module.h):
 *   - nnf_* and nn_module_forward return a new tensor reference owned by the caller, or NULL with
 *     torch_last_error() set; inputs are borrowed. Where the result equals the input (dropout in
 *     eval mode), the "new reference" is the input itself, retained, as PyTorch returns it.
 *   - The constructors return an owned module (no parameters, no buffers); free it with nn_module_free().
 */
#ifndef CTORCH_NN_ACTIVATION_H
#define CTORCH_NN_ACTIVATION_H

#include "module.h"

/* ---- ReLU ----------------------------------------------------------------------------------- */

/* max(x, 0), torch.nn.functional.relu, with ATen's edge cases: relu(-0) = -0, NaN stays NaN and
 * passes its gradient, gradient 0 where the output is <= 0. One pass each way, no mask tensor. */
tensor *nnf_relu(tensor *input);

/* ReLU(): applies nnf_relu. */
nn_module *nn_relu(void);
/* Whether m is a ReLU module (false for NULL). */
bool nn_is_relu(const nn_module *m);

/* ---- Dropout ------------------------------------------------------------------------------------ */

/* torch.nn.functional.dropout(input, p, training). In training, each element is kept with
 * probability 1 - p and scaled by 1 / (1 - p), or zeroed (p = 1 zeroes everything); the mask is
 * drawn from gen (NULL: this thread's default generator), one uniform per element in row-major
 * order, so a seed reproduces it at any thread count. Outside training, or with p = 0, the
 * input itself is returned (retained). p must lie in [0, 1]. */
tensor *nnf_dropout(tensor *input, double p, bool training, torch_generator *gen);

typedef struct nn_dropout_options {
    double           p;         /* Probability of zeroing an element, in [0, 1]. Default 0.5. Read at every forward. */
    torch_generator *generator; /* Draws the masks; borrowed and kept, so it must outlive the module.
                                 * NULL (default): this thread's default generator at each forward. */
} nn_dropout_options;

/* Named-argument form with PyTorch's defaults: nn_dropout(NN_DROPOUT_OPTIONS(.p = 0.25)). */
#define NN_DROPOUT_OPTIONS(...) ((nn_dropout_options){.p = 0.5, __VA_ARGS__})

/* The same defaults without the macro: p = 0.5, the default generator. */
nn_dropout_options nn_dropout_options_default(void);

/* Dropout(p): nnf_dropout with the module's training flag. NULL unless 0 <= p <= 1. */
nn_module *nn_dropout(nn_dropout_options options);

/* The typed view of a Dropout module. */
typedef struct nn_dropout_module {
    nn_module          base;    /* must be first */
    nn_dropout_options options; /* read at every forward */
} nn_dropout_module;

/* m as a Dropout, or NULL when m is NULL or another type. Borrowed. */
nn_dropout_module *nn_as_dropout(nn_module *m);

/* ---- Flatten ------------------------------------------------------------------------------------ */

typedef struct nn_flatten_options {
    int start_dim; /* First dim to flatten; negative counts from the end. Default 1 (keep the batch dim). */
    int end_dim;   /* Last dim to flatten; negative counts from the end. Default -1. */
} nn_flatten_options;

/* Named-argument form with PyTorch's defaults: nn_flatten(NN_FLATTEN_OPTIONS()). */
#define NN_FLATTEN_OPTIONS(...) ((nn_flatten_options){.start_dim = 1, .end_dim = -1, __VA_ARGS__})

/* The same defaults without the macro: start_dim = 1, end_dim = -1. */
nn_flatten_options nn_flatten_options_default(void);

/* Flatten(start_dim, end_dim): torch_flatten(input, start_dim, end_dim) at every forward. */
nn_module *nn_flatten(nn_flatten_options options);

/* The typed view of a Flatten module. */
typedef struct nn_flatten_module {
    nn_module          base;    /* must be first */
    nn_flatten_options options; /* read at every forward */
} nn_flatten_module;

/* m as a Flatten, or NULL when m is NULL or another type. Borrowed. */
nn_flatten_module *nn_as_flatten(nn_module *m);

#endif /* CTORCH_NN_ACTIVATION_H */
