/* Absurd sizes: every constructor, view and module that takes a size refuses what does not fit,
 * with a message naming the function, before anything is allocated. The reference is exact
 * 128-bit arithmetic on the shape, not the library's own product. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "autograd/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

static void expect_refused(tensor *t, const char *message) {
    cr_assert_null(t, "expected a refusal containing \"%s\", got a tensor of %lld elements", message,
                   t ? (long long)t->numel : 0LL);
    cr_assert_neq(torch_last_status(), TORCH_OK);
    cr_assert(strstr(torch_last_error(), message), "expected \"%s\" in \"%s\"", message, torch_last_error());
    torch_clear_error();
}

static void expect_module_refused(nn_module *m, const char *message) {
    cr_assert_null(m, "expected a refusal containing \"%s\"", message);
    cr_assert(strstr(torch_last_error(), message), "expected \"%s\" in \"%s\"", message, torch_last_error());
    torch_clear_error();
}

#define TOO_MANY "has too many elements"

Test(sizes, the_reported_cases_are_refused) {
    expect_refused(torch_zeros(TORCH_SHAPE((int64_t)1 << 62)), "torch_zeros: shape [4611686018427387904] " TOO_MANY);
    expect_refused(torch_ones(TORCH_SHAPE(((int64_t)1 << 62) + 1, 4)), "torch_ones: shape [4611686018427387905, 4]");
    expect_refused(torch_empty(TORCH_SHAPE(INT64_MAX, 2)), "torch_empty: shape [9223372036854775807, 2] " TOO_MANY);
    expect_refused(torch_full(TORCH_SHAPE(1 << 30, 1 << 30, 1 << 30), 1.0f), "torch_full: shape");
    expect_refused(torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(INT64_MAX)), "torch_empty: shape");
    expect_refused(torch_rand(NULL, TORCH_SHAPE((int64_t)1 << 61)), "torch_rand: shape");
    expect_refused(torch_randn(NULL, TORCH_SHAPE(3, INT64_MAX / 2)), "torch_randn: shape");
    float one = 1.0f;
    expect_refused(torch_tensor(&one, TORCH_SHAPE(INT64_MAX)), "torch_tensor: shape");
}

Test(sizes, a_zero_size_does_not_hide_an_overflowing_stride) {
    /* numel is 0, but the strides (products of the other sizes) would wrap. */
    expect_refused(torch_empty(TORCH_SHAPE(0, (int64_t)1 << 62, 4)), TOO_MANY);
    tensor *t = torch_empty(TORCH_SHAPE(0, (int64_t)1 << 40)); /* strides fit: allowed, as in PyTorch */
    cr_assert_not_null(t, "%s", torch_last_error());
    cr_assert_eq(t->numel, 0);
    tensor_free(t);
}

Test(sizes, randperm_and_arange) {
    expect_refused(torch_randperm(NULL, -1), "torch_randperm: n must be non-negative, got -1");
    expect_refused(torch_randperm(NULL, INT64_MAX), "torch_randperm: shape");
    expect_refused(torch_arange(0, 1e30, 1), "torch_arange: [0, 1e+30) with step 1 has 1e+30 elements");
    expect_refused(torch_arange(-1e308, 1e308, 1), "torch_arange:"); /* end - start overflows to inf */
    tensor *t = torch_arange(0, 5, 2);
    cr_assert_eq(t->numel, 3);
    tensor_free(t);
}

Test(sizes, views_cannot_wrap_around_their_storage) {
    tensor *t = torch_zeros(TORCH_SHAPE(4));
    /* (2 - 1) * 2^62 * 4 wraps to 0 in 64 bits: the reach check must not wrap with it. */
    expect_refused(tensor_as_strided(t, TORCH_SHAPE(2, 5), (const int64_t[]){(int64_t)1 << 62, INT64_MAX}, 0),
                   "tensor_as_strided: a view of shape [2, 5] at offset 0 reaches outside its storage of 4");
    expect_refused(tensor_as_strided(t, TORCH_SHAPE(2), (const int64_t[]){1}, -1), "reaches outside");
    expect_refused(tensor_as_strided(t, TORCH_SHAPE(2), (const int64_t[]){INT64_MAX}, INT64_MAX), "reaches outside");
    expect_refused(tensor_as_strided(t, TORCH_SHAPE(2), NULL, 0), "tensor_as_strided: stride is NULL");
    /* A stride-0 view may be huge without memory; but not larger than a tensor can be. */
    expect_refused(tensor_expand(t, TORCH_SHAPE((int64_t)1 << 40, (int64_t)1 << 40, 4)), TOO_MANY);
    expect_refused(torch_reshape(t, TORCH_SHAPE(((int64_t)1 << 62) + 1, 4)),
                   "torch_reshape: shape '[4611686018427387905, 4]' is invalid for input of size 4");
    expect_refused(torch_reshape(t, TORCH_SHAPE(-1, (int64_t)1 << 62, 4)), "is invalid for input of size 4");
    expect_refused(torch_reshape(t, TORCH_SHAPE((int64_t)1 << 62, (int64_t)1 << 62, 0)), "is invalid for input");
    tensor_free(t);
}

Test(sizes, modules_refuse_absurd_feature_and_channel_counts) {
    expect_module_refused(nn_linear(NN_LINEAR_OPTIONS(.in_features = INT64_MAX, .out_features = 2)), TOO_MANY);
    expect_module_refused(nn_linear(NN_LINEAR_OPTIONS(.in_features = (int64_t)1 << 31,
                                                      .out_features = (int64_t)1 << 31, .bias = false)),
                          TOO_MANY);
    expect_module_refused(nn_batch_norm2d(nn_batch_norm_options_default(INT64_MAX)), TOO_MANY);
    expect_module_refused(nn_batch_norm1d(nn_batch_norm_options_default(INT64_MAX)), TOO_MANY);
    expect_module_refused(nn_conv2d(nn_conv2d_options_default((int64_t)1 << 32, (int64_t)1 << 32, 3)), TOO_MANY);
    expect_module_refused(nn_conv2d(nn_conv2d_options_default(3, 8, INT64_MAX)), TOO_MANY);
}

Test(sizes, convolution_and_pooling_windows_cannot_overflow) {
    tensor *x = torch_zeros(TORCH_SHAPE(1, 1, 4, 4)), *w = torch_zeros(TORCH_SHAPE(1, 1, 3, 3));
    const int64_t big_pad[2] = {INT64_MAX / 2, 0}, big_dil[2] = {INT64_MAX, 1};
    expect_refused(nnf_conv2d(x, w, NULL, NULL, big_pad, NULL), "nnf_conv2d: padding");
    expect_refused(nnf_conv2d(x, w, NULL, NULL, NULL, big_dil), "nnf_conv2d: padding [0, 0] and dilation");
    /* A padding that fits but makes an output far larger than a tensor can be. */
    const int64_t pad[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    expect_refused(nnf_conv2d(x, w, NULL, NULL, pad, NULL), TOO_MANY);

    nn_max_pool2d_options mp = nn_max_pool2d_options_default(2);
    mp.kernel_size[0] = INT64_MAX, mp.padding[0] = INT64_MAX / 2;
    expect_refused(nnf_max_pool2d(x, mp, NULL), "nnf_max_pool2d: kernel size");
    mp = nn_max_pool2d_options_default(2);
    mp.dilation[1] = INT64_MAX; /* no term overflows: the window is just larger than the input */
    expect_refused(nnf_max_pool2d(x, mp, NULL), "Output size is too small");
    nn_avg_pool2d_options ap = nn_avg_pool2d_options_default(2);
    ap.stride[0] = ap.stride[1] = INT64_MAX, ap.ceil_mode = true;
    expect_refused(nnf_avg_pool2d(x, ap), "nnf_avg_pool2d:");
    tensor_free(x);
    tensor_free(w);
}

/* Exact product of a shape, zeros counted as 1 (the strides' bound) and as 0 (numel). */
__extension__ typedef __int128 i128;

static void exact_products(int ndim, const int64_t *shape, i128 *span, i128 *numel) {
    *span = 1, *numel = 1;
    for (int i = 0; i < ndim; i++) {
        i128 s = shape[i];
        if (s < 0) { /* refused anyway: no product to compare */
            *span = *numel = -1;
            return;
        }
        /* Saturate far above the limit: 2^62 * 2^63 still fits in 128 bits. */
        if (*span <= ((i128)1 << 62)) *span *= s > 1 ? s : 1;
        *numel = *numel == 0 || s == 0 ? 0 : (*numel > ((i128)1 << 62) ? *numel : *numel * s);
    }
}

/* Property: a random shape -- tiny, huge or negative sizes, 0 to 8 dims -- gives a tensor whose
 * numel is the exact product of its shape, or a clear error; only small ones are allocated. */
Test(sizes, random_shapes_give_the_exact_numel_or_an_error) {
    static const int64_t pool[] = {0, 1, 2, 3, 7, 64, 1000, (int64_t)1 << 31, (int64_t)1 << 32, (int64_t)1 << 59,
                                   (int64_t)1 << 60, ((int64_t)1 << 62) + 1, INT64_MAX, -1, -2, INT64_MIN};
    const int npool = (int)(sizeof pool / sizeof pool[0]);
    torch_generator g = torch_generator_new(20261206), *gen = &g;
    int made = 0, refused = 0;
    for (int trial = 0; trial < 20000; trial++) {
        int ndim = (int)torch_generator_below(gen, TORCH_MAX_DIMS + 1);
        int64_t shape[TORCH_MAX_DIMS];
        bool negative = false;
        for (int i = 0; i < ndim; i++) {
            shape[i] = pool[torch_generator_below(gen, (uint64_t)npool)];
            negative = negative || shape[i] < 0;
        }
        i128 span, numel;
        exact_products(ndim, shape, &span, &numel);
        torch_status st = torch_check_shape("t", ndim, shape);
        bool fits = !negative && span <= TORCH_MAX_NUMEL;
        cr_assert_eq(st == TORCH_OK, fits, "trial %d: check_shape %d, exact span fits %d (%s)", trial, st, fits,
                     torch_last_error());
        if (!fits) {
            cr_assert(strstr(torch_last_error(), negative ? "negative dimension" : TOO_MANY), "%s",
                      torch_last_error());
            refused++;
            continue;
        }
        if (numel > 4096) continue; /* fits, but would allocate memory the test should not take */
        tensor *t = torch_empty(ndim, shape);
        cr_assert_not_null(t, "%s", torch_last_error());
        cr_assert_eq((i128)t->numel, numel);
        /* Its reshape to one dim and back agrees too. */
        tensor *flat = torch_reshape(t, 1, (const int64_t[]){-1});
        if (numel > 0 || ndim == 0) {
            cr_assert_not_null(flat, "%s", torch_last_error());
            cr_assert_eq((i128)flat->numel, numel);
        }
        tensor_free(flat);
        tensor_free(t);
        made++;
    }
    cr_log_info("random shapes: %d tensors made with the exact numel, %d refused", made, refused);
    cr_assert_gt(made, 100);
    cr_assert_gt(refused, 1000);
}

Test(sizes, item_and_get_refuse_instead_of_aborting) {
    tensor *t = torch_zeros(TORCH_SHAPE(3));
    cr_assert(isnan(tensor_item(t)));
    cr_assert_str_eq(torch_last_error(), "tensor_item: a Tensor with 3 elements cannot be converted to Scalar");
    cr_assert(isnan(tensor_get(t, (const int64_t[]){5})));
    cr_assert_str_eq(torch_last_error(), "tensor_get: index 5 is out of bounds for dimension 0 with size 3");
    cr_assert(isnan(tensor_get(t, (const int64_t[]){-1})));
    cr_assert(isnan(tensor_item(NULL)));
    cr_assert_eq(tensor_get(t, (const int64_t[]){2}), 0.0);
    tensor_free(t);
}

Test(sizes, huge_padding_dilation_and_stride_do_not_reach_outside_buffers) {
    /* Found in review: a padding far larger than the input made the stride-1 im2col zero
     * r0 * OW floats of a row only OH * OW long (heap overflow); a huge stride overflowed the
     * output-column range; a kernel of size 0 reached the output-size arithmetic. The outputs
     * here are PyTorch's (a zero-padded input: only the bias, here none, so zeros). */
    tensor *x = torch_ones(TORCH_SHAPE(1, 1, 1, 16)), *w = torch_ones(TORCH_SHAPE(1, 1, 3, 1));
    tensor_set_requires_grad(x, true);
    tensor *y = nnf_conv2d(x, w, NULL, (const int64_t[]){1, 1}, (const int64_t[]){100, 0}, (const int64_t[]){100, 1});
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->shape[2], 1);
    cr_assert_eq(y->shape[3], 16);
    for (int i = 0; i < 16; i++) cr_assert_eq(tensor_data_f32(y)[i], 1.0f, "the middle tap reads x");
    tensor *l = torch_sum(y, 0, NULL, false);
    cr_assert_eq(tensor_backward(l, NULL, false), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(tensor_data_f32(tensor_grad(x))[3], 1.0f);
    tensor_free(l), tensor_free(y), tensor_free(w);

    tensor *x4 = torch_ones(TORCH_SHAPE(1, 1, 4, 4)), *w1 = torch_ones(TORCH_SHAPE(1, 1, 1, 1));
    y = nnf_conv2d(x4, w1, NULL, (const int64_t[]){1, INT64_MAX}, (const int64_t[]){0, 2}, NULL);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->shape[3], 1); /* (4 + 4 - 1) / INT64_MAX + 1: column 0 of the padded input */
    for (int i = 0; i < 4; i++) cr_assert_eq(tensor_data_f32(y)[i], 0.0f, "column 0 is padding");
    tensor_free(y);
    tensor *w0 = torch_ones(TORCH_SHAPE(1, 1, 0, 1));
    expect_refused(nnf_conv2d(x4, w0, NULL, NULL, (const int64_t[]){(int64_t)1 << 61, 0},
                              (const int64_t[]){(int64_t)1 << 62, 1}),
                   "nnf_conv2d: expected a kernel of at least 1 x 1, but got weight of size [1, 1, 0, 1]");
    tensor_free(w0), tensor_free(w1), tensor_free(x4), tensor_free(x);

    /* Max pool with a stride of INT64_MAX: the output is 1 x 1 (PyTorch's shape), and the index
     * that backward scatters to stays inside the input. */
    tensor *p = torch_ones(TORCH_SHAPE(1, 1, 1, 1));
    tensor_set_requires_grad(p, true);
    nn_max_pool2d_options mp = nn_max_pool2d_options_default(3);
    mp.stride[0] = mp.stride[1] = INT64_MAX, mp.padding[0] = mp.padding[1] = 1;
    y = nnf_max_pool2d(p, mp, NULL);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert(y->shape[2] == 1 && y->shape[3] == 1);
    l = torch_sum(y, 0, NULL, false);
    cr_assert_eq(tensor_backward(l, NULL, false), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(tensor_data_f32(tensor_grad(p))[0], 1.0f);
    tensor_free(l), tensor_free(y);
    mp = nn_max_pool2d_options_default(3);
    mp.stride[0] = mp.stride[1] = INT64_MAX;
    expect_refused(nnf_max_pool2d(p, mp, NULL), "Output size is too small");
    /* A kernel of 2^40 rows padded by 2^39: the first tap is found by arithmetic, not a loop of 2^39 steps. */
    mp = nn_max_pool2d_options_default(1);
    mp.kernel_size[0] = (int64_t)1 << 40, mp.padding[0] = (int64_t)1 << 39, mp.stride[0] = mp.stride[1] = 1;
    y = nnf_max_pool2d(p, mp, NULL);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(tensor_data_f32(y)[0], 1.0f);
    tensor_free(y), tensor_free(p);
}

Test(sizes, views_of_an_empty_view_cannot_wrap) {
    tensor *t = torch_zeros(TORCH_SHAPE(4));
    expect_refused(tensor_as_strided(t, TORCH_SHAPE(0, 1 << 30), (const int64_t[]){1, (int64_t)1 << 40}, 0),
                   "reaches outside");
    tensor *v = tensor_as_strided(t, TORCH_SHAPE(0, 3), (const int64_t[]){1, 1}, 0);
    cr_assert_not_null(v, "%s", torch_last_error());
    tensor_free(v), tensor_free(t);
}
