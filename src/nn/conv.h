/* conv.h — 2-D convolution: the functional nnf_conv2d and the Conv2d module (torch.nn.Conv2d,
 * R torch's nn_conv2d). Forward and backward pick a kernel from the shapes alone: direct loops
 * for short reductions (C_in*kH*kW <= 32, e.g. a first layer on grey images), Winograd F(2x2, 3x3)
 * for 3x3 stride-1 convolutions, else im2col + torch_sgemm; the choice never depends on the
 * thread count, and neither do the numbers.
 *
 * Ownership (as in tensor.h and module.h):
 *   - nnf_conv2d and nn_module_forward return a new tensor reference owned by the caller, or NULL
 *     with torch_last_error() set; inputs are borrowed (the graph keeps what backward needs).
 *   - nn_conv2d returns an owned module; free it with nn_module_free().
 *   - nn_as_conv2d(m)->weight / ->bias are borrowed, valid while the module lives.
 *
 * Shapes: input (N, C_in, H, W) or unbatched (C_in, H, W); weight (C_out, C_in, kH, kW);
 * bias (C_out) or NULL; output (N, C_out, H_out, W_out) (or unbatched) with
 *   H_out = floor((H + 2 * padding[0] - dilation[0] * (kH - 1) - 1) / stride[0]) + 1,
 * and the same for W. Padding is with zeros (padding_mode = "zeros"); groups = 1.
 * Results are the same at any thread count (the batch is processed in blocks of fixed size).
 */
#ifndef CTORCH_NN_CONV_H
#define CTORCH_NN_CONV_H

#include "module.h"

/* ---- functional ------------------------------------------------------------------------------- */

/* torch.nn.functional.conv2d (cross-correlation, as every framework computes it). stride,
 * padding and dilation are {height, width} pairs; NULL gives PyTorch's default (1, 0, 1). */
tensor *nnf_conv2d(tensor *input, tensor *weight, tensor *bias, const int64_t stride[2],
                   const int64_t padding[2], const int64_t dilation[2]);

/* ---- module ---------------------------------------------------------------------------------- */

typedef struct nn_conv2d_options {
    int64_t in_channels;     /* C_in. Required, > 0. No effect if changed after construction. */
    int64_t out_channels;    /* C_out. Required, > 0. No effect if changed after construction. */
    int64_t kernel_size[2];  /* (kH, kW). Required, both > 0; give both, e.g. {3, 3}. No effect if changed later. */
    int64_t stride[2];       /* Default {1, 1}. Read at every forward. */
    int64_t padding[2];      /* Zeros added on each side. Default {0, 0}. Read at every forward. */
    int64_t dilation[2];     /* Spacing of the kernel taps. Default {1, 1}. Read at every forward. */
    bool    bias;            /* Learnable bias of size C_out. Default true. No effect if changed later. */
    torch_generator *generator; /* Draws the initial weights; NULL (default): this thread's default
                                 * generator. Used by the constructor only, never kept. */
} nn_conv2d_options;

/* Named-argument form with PyTorch's defaults; pairs must be given in full:
 *   nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 32, .kernel_size = {3, 3},
 *                                   .padding = {1, 1}, .bias = false))
 * (needs -Wno-override-init with gcc -Wextra; the ctorch CMake target exports it). */
#define NN_CONV2D_OPTIONS(...)                                                                    \
    ((nn_conv2d_options){.stride = {1, 1}, .padding = {0, 0}, .dilation = {1, 1}, .bias = true,  \
                         __VA_ARGS__})

/* The same defaults without the macro: a square kernel, stride 1, no padding, bias. */
nn_conv2d_options nn_conv2d_options_default(int64_t in_channels, int64_t out_channels, int64_t kernel_size);

/* Conv2d(in, out, kernel_size, ...): registers "weight" (C_out, C_in, kH, kW) and, if
 * options.bias, "bias" (C_out), initialised as PyTorch does (see nn_init_default_weight_bias_).
 * NULL on invalid options, e.g. "Conv2d: in_channels must be > 0 (got 0)". */
nn_module *nn_conv2d(nn_conv2d_options options);

/* The typed view of a Conv2d module. */
typedef struct nn_conv2d_module {
    nn_module         base;    /* must be first */
    nn_conv2d_options options; /* as constructed (generator reset to NULL) */
    tensor           *weight;  /* borrowed: the registered parameter */
    tensor           *bias;    /* borrowed: the registered parameter, NULL without bias */
} nn_conv2d_module;

/* m as a Conv2d, or NULL when m is NULL or another type. Borrowed. */
nn_conv2d_module *nn_as_conv2d(nn_module *m);

#endif /* CTORCH_NN_CONV_H */
