/* pooling.h — 2-D pooling: max, average and adaptive average, as functions (nnf_*, with their
 * backward) and as modules (torch.nn.MaxPool2d, AvgPool2d, AdaptiveAvgPool2d).
 *
 * Ownership (as in tensor.h and module.h):
 *   - nnf_* and nn_module_forward return a new tensor reference owned by the caller, or NULL with
 *     torch_last_error() set; inputs are borrowed. nnf_max_pool2d's optional *indices is a new
 *     reference too.
 *   - The constructors return an owned module (no parameters, no buffers); free it with nn_module_free().
 *
 * Shapes: input (N, C, H, W) or unbatched (C, H, W); every (H, W) plane is pooled on its own and
 * by one thread, so results are the same at any thread count. Output sizes follow PyTorch:
 *   H_out = floor_or_ceil((H + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1,
 * where ceil_mode rounds up but never starts a window in the right padding.
 */
#ifndef CTORCH_NN_POOLING_H
#define CTORCH_NN_POOLING_H

#include "module.h"

/* ---- MaxPool2d ------------------------------------------------------------------------------- */

typedef struct nn_max_pool2d_options {
    int64_t kernel_size[2]; /* (kH, kW). Required, both > 0; give both, e.g. {2, 2}. */
    int64_t stride[2];      /* Default {0, 0}, meaning kernel_size (PyTorch's stride=None). */
    int64_t padding[2];     /* Implicit -inf padding on each side, at most kernel / 2. Default {0, 0}. */
    int64_t dilation[2];    /* Spacing of the window's taps. Default {1, 1}. */
    bool    ceil_mode;      /* Round the output size up. Default false. */
} nn_max_pool2d_options;

/* Named-argument form: nn_max_pool2d(NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2})). */
#define NN_MAX_POOL2D_OPTIONS(...) ((nn_max_pool2d_options){.dilation = {1, 1}, __VA_ARGS__})

/* The same defaults without the macro: a square window, stride = kernel, no padding. */
nn_max_pool2d_options nn_max_pool2d_options_default(int64_t kernel_size);

/* torch.nn.functional.max_pool2d. Gradient flows to the first maximum of each window (in
 * row-major order; a NaN counts as a maximum). indices (optional, may be NULL) receives
 * PyTorch's return_indices: int64, the output's shape, flat positions h * W + w in each plane. */
tensor *nnf_max_pool2d(tensor *input, nn_max_pool2d_options options, tensor **indices);

/* MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode). NULL on invalid options. */
nn_module *nn_max_pool2d(nn_max_pool2d_options options);

/* The typed view of a MaxPool2d module. */
typedef struct nn_max_pool2d_module {
    nn_module             base;    /* must be first */
    nn_max_pool2d_options options; /* stride resolved (never 0); read at every forward */
} nn_max_pool2d_module;

/* m as a MaxPool2d, or NULL when m is NULL or another type. Borrowed. */
nn_max_pool2d_module *nn_as_max_pool2d(nn_module *m);

/* ---- AvgPool2d ------------------------------------------------------------------------------- */

typedef struct nn_avg_pool2d_options {
    int64_t kernel_size[2];    /* (kH, kW). Required, both > 0; give both. */
    int64_t stride[2];         /* Default {0, 0}, meaning kernel_size. */
    int64_t padding[2];        /* Zero padding on each side, at most kernel / 2. Default {0, 0}. */
    bool    ceil_mode;         /* Round the output size up. Default false. */
    bool    count_include_pad; /* Divide by the window size including padding. Default true. */
} nn_avg_pool2d_options;

/* Named-argument form: nn_avg_pool2d(NN_AVG_POOL2D_OPTIONS(.kernel_size = {2, 2})). */
#define NN_AVG_POOL2D_OPTIONS(...) ((nn_avg_pool2d_options){.count_include_pad = true, __VA_ARGS__})

/* The same defaults without the macro: a square window, stride = kernel, count_include_pad. */
nn_avg_pool2d_options nn_avg_pool2d_options_default(int64_t kernel_size);

/* torch.nn.functional.avg_pool2d (no divisor_override). */
tensor *nnf_avg_pool2d(tensor *input, nn_avg_pool2d_options options);

/* AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad). NULL on invalid options. */
nn_module *nn_avg_pool2d(nn_avg_pool2d_options options);

/* The typed view of an AvgPool2d module. */
typedef struct nn_avg_pool2d_module {
    nn_module             base;    /* must be first */
    nn_avg_pool2d_options options; /* stride resolved (never 0); read at every forward */
} nn_avg_pool2d_module;

/* m as an AvgPool2d, or NULL when m is NULL or another type. Borrowed. */
nn_avg_pool2d_module *nn_as_avg_pool2d(nn_module *m);

/* ---- AdaptiveAvgPool2d ---------------------------------------------------------------------- */

/* torch.nn.functional.adaptive_avg_pool2d to (out_h, out_w), both > 0: output cell (i, j) is the
 * mean of rows [floor(i*H/out_h), ceil((i+1)*H/out_h)) and the same for columns. (1, 1) is the
 * global average pool. */
tensor *nnf_adaptive_avg_pool2d(tensor *input, int64_t out_h, int64_t out_w);

typedef struct nn_adaptive_avg_pool2d_options {
    int64_t output_size[2]; /* (out_h, out_w). Required, both > 0; {1, 1} is the global average pool. */
} nn_adaptive_avg_pool2d_options;

/* Named-argument form (PyTorch has no defaults here):
 *   nn_adaptive_avg_pool2d(NN_ADAPTIVE_AVG_POOL2D_OPTIONS(.output_size = {1, 1})) */
#define NN_ADAPTIVE_AVG_POOL2D_OPTIONS(...) ((nn_adaptive_avg_pool2d_options){__VA_ARGS__})

/* The same without the macro. */
nn_adaptive_avg_pool2d_options nn_adaptive_avg_pool2d_options_default(int64_t out_h, int64_t out_w);

/* AdaptiveAvgPool2d(output_size). NULL unless both sizes are > 0. */
nn_module *nn_adaptive_avg_pool2d(nn_adaptive_avg_pool2d_options options);

/* The typed view of an AdaptiveAvgPool2d module. */
typedef struct nn_adaptive_avg_pool2d_module {
    nn_module                      base;    /* must be first */
    nn_adaptive_avg_pool2d_options options; /* read at every forward */
} nn_adaptive_avg_pool2d_module;

/* m as an AdaptiveAvgPool2d, or NULL when m is NULL or another type. Borrowed. */
nn_adaptive_avg_pool2d_module *nn_as_adaptive_avg_pool2d(nn_module *m);

#endif /* CTORCH_NN_POOLING_H */
