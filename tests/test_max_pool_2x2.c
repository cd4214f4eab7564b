/* test_max_pool_2x2.c — the specialised 2x2 stride-2 max-pool kernels (src/nn/pooling.c).
 *
 * MaxPool2d(2) takes its own kernels: vector blocks of 8 outputs, the argmax kept as one byte per
 * output, a backward that writes every element of dx once, and row ends that read and write
 * past the row. The PyTorch fixtures of test_pooling.c hold one 2x2 case; this file covers the
 * shapes where the row-end handling matters (widths 1 .. 40, odd heights and widths, planes
 * that cross the kernel's tasks, tensors ending mid-block) and the values where the rule matters
 * (ties, NaN, -0 gradients).
 *
 * Reference: written here from ATen's rule — scan the window's taps in row-major order, a later
 * tap wins if strictly greater or NaN; the gradient goes to the winner (dx zero elsewhere,
 * including the row and column no window covers). Results must match it exactly (bits), since
 * a max involves no rounding. Also: bit-identical at 1 and 2 threads; strided input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ctorch.h"
#include "nn/pooling.h"
#include "tensor/parallel.h"

TestSuite(max_pool_2x2);

/* Fills x with values that make ties, and NaN at every 13th element when with_nan. */
static tensor *test_input(uint64_t seed, int64_t N, int64_t C, int64_t H, int64_t W, bool with_nan) {
    torch_generator g = torch_generator_new(seed);
    tensor *x = torch_randn(&g, TORCH_SHAPE(N, C, H, W));
    float *d = tensor_data_f32(x);
    for (int64_t i = 0; i < x->numel; i++) {
        if (i % 7 == 3) d[i] = d[i - 1];     /* a tie with the previous element */
        if (i % 11 == 4) d[i] = -INFINITY;   /* windows of -inf */
        if (with_nan && i % 13 == 5) d[i] = NAN;
    }
    return x;
}

/* ATen's rule, one window at a time; dy's -0 becomes +0 as in a zero-filled accumulation. */
static void reference(const float *x, const float *dy, int64_t planes, int64_t H, int64_t W, float *y, int64_t *idx,
                      float *dx) {
    int64_t OH = H / 2, OW = W / 2;
    memset(dx, 0, sizeof(float) * (size_t)(planes * H * W));
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float m = -INFINITY;
                int64_t best = 2 * oh * W + 2 * ow;
                for (int64_t i = 2 * oh; i < 2 * oh + 2; i++)
                    for (int64_t j = 2 * ow; j < 2 * ow + 2; j++) {
                        float v = x[p * H * W + i * W + j];
                        if (v > m || isnan(v)) m = v, best = i * W + j;
                    }
                int64_t o = (p * OH + oh) * OW + ow;
                y[o] = m;
                idx[o] = best;
                dx[p * H * W + best] += dy[o];
            }
}

static bool same_float(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void check_shape(int64_t N, int64_t C, int64_t H, int64_t W, bool with_nan, uint64_t seed) {
    tensor *x = test_input(seed, N, C, H, W, with_nan);
    tensor_set_requires_grad(x, true);
    tensor *idx = NULL;
    tensor *y = nnf_max_pool2d(x, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}), &idx);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->shape[2], H / 2);
    cr_assert_eq(y->shape[3], W / 2);
    torch_generator g = torch_generator_new(seed + 1);
    tensor *gy = torch_randn(&g, 4, y->shape);
    float *gd = tensor_data_f32(gy);
    for (int64_t i = 0; i < gy->numel; i += 5) gd[i] = -0.0f;
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK, "%s", torch_last_error());

    int64_t planes = N * C;
    float *ry = malloc(sizeof(float) * (size_t)y->numel), *rdx = malloc(sizeof(float) * (size_t)x->numel);
    int64_t *ri = malloc(sizeof(int64_t) * (size_t)y->numel);
    reference(tensor_data_f32(x), gd, planes, H, W, ry, ri, rdx);
    for (int64_t i = 0; i < y->numel; i++) {
        cr_assert(same_float(tensor_data_f32(y)[i], ry[i]) || (isnan(tensor_data_f32(y)[i]) && isnan(ry[i])),
                  "(%lld,%lld,%lld,%lld) y[%lld] = %g, want %g", (long long)N, (long long)C, (long long)H, (long long)W,
                  (long long)i, tensor_data_f32(y)[i], ry[i]);
        cr_assert_eq(tensor_data_i64(idx)[i], ri[i], "(%lld,%lld,%lld,%lld) indices[%lld]", (long long)N, (long long)C,
                     (long long)H, (long long)W, (long long)i);
    }
    const float *dx = tensor_data_f32(tensor_grad(x));
    for (int64_t i = 0; i < x->numel; i++)
        cr_assert(same_float(dx[i], rdx[i]) || (isnan(dx[i]) && isnan(rdx[i])),
                  "(%lld,%lld,%lld,%lld) dx[%lld] = %g, want %g", (long long)N, (long long)C, (long long)H, (long long)W,
                  (long long)i, dx[i], rdx[i]);
    free(ry), free(rdx), free(ri);
    tensor_free(gy), tensor_free(y), tensor_free(idx), tensor_free(x);
}

/* Every width from 2 to 41 (1 to 20 outputs per row: full blocks of 8, row ends of 1..7, both),
 * odd and even heights, one plane and many (the kernel's tasks hold 16 planes). */
Test(max_pool_2x2, matches_reference_over_shapes) {
    for (int64_t W = 2; W <= 41; W++)
        for (int64_t H = 2; H <= 5; H++) check_shape(1, 3, H, W, W % 3 == 0, (uint64_t)(W * 10 + H));
    check_shape(2, 17, 7, 15, true, 1);   /* 34 planes: tasks of 16, the last one short */
    check_shape(3, 11, 28, 28, false, 2); /* the reference CNN's first pool, fewer images */
    check_shape(5, 13, 14, 14, true, 3);  /* its second pool */
    check_shape(1, 1, 2, 2, false, 4);    /* one window: the row end is the whole tensor */
    check_shape(1, 40, 2, 3, true, 5);    /* one output per row, many rows */
}

/* The batch of the reference CNN at both pools, at 1 and 2 threads: the same bits. */
Test(max_pool_2x2, deterministic_across_thread_counts) {
    const int64_t shapes[2][4] = {{64, 32, 28, 28}, {64, 64, 14, 14}};
    for (int s = 0; s < 2; s++) {
        tensor *out[2][3];
        for (int run = 0; run < 2; run++) {
            torch_set_num_threads(run + 1);
            tensor *x = test_input(11, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], true);
            tensor_set_requires_grad(x, true);
            tensor *idx = NULL;
            tensor *y = nnf_max_pool2d(x, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}), &idx);
            torch_generator g = torch_generator_new(12);
            tensor *gy = torch_randn(&g, 4, y->shape);
            cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
            out[run][0] = tensor_detach(y);
            out[run][1] = idx;
            out[run][2] = tensor_retain(tensor_grad(x));
            tensor_free(gy), tensor_free(y), tensor_free(x);
        }
        torch_set_num_threads(1);
        for (int k = 0; k < 3; k++) {
            size_t bytes = (size_t)out[0][k]->numel * torch_dtype_size(out[0][k]->dtype);
            const void *a = k == 1 ? (const void *)tensor_data_i64(out[0][k]) : (const void *)tensor_data_f32(out[0][k]);
            const void *b = k == 1 ? (const void *)tensor_data_i64(out[1][k]) : (const void *)tensor_data_f32(out[1][k]);
            cr_assert(memcmp(a, b, bytes) == 0, "shape %d: output %d differs between 1 and 2 threads", s, k);
            tensor_free(out[0][k]), tensor_free(out[1][k]);
        }
    }
}

/* A strided (channels-last) input and an odd ceil_mode input (which takes the generic kernel)
 * give the reference's numbers; so does ceil_mode on even sizes (the 2x2 kernel again). */
Test(max_pool_2x2, strided_input_and_ceil_mode) {
    torch_generator g = torch_generator_new(21);
    tensor *base = torch_randn(&g, TORCH_SHAPE(2, 6, 10, 3)); /* (N, H, W, C) */
    int64_t shape[4] = {2, 3, 6, 10}, stride[4] = {180, 1, 30, 3};
    tensor *x = tensor_as_strided(base, 4, shape, stride, 0);
    tensor *xc = tensor_contiguous(x);
    cr_assert(!tensor_is_contiguous(x));
    tensor *y1 = nnf_max_pool2d(x, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}), NULL);
    tensor *y2 = nnf_max_pool2d(xc, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}, .ceil_mode = true), NULL);
    float ry[2 * 3 * 3 * 5], rdx[2 * 3 * 6 * 10], zeros[2 * 3 * 3 * 5] = {0};
    int64_t ri[2 * 3 * 3 * 5];
    reference(tensor_data_f32(xc), zeros, 6, 6, 10, ry, ri, rdx);
    cr_assert(memcmp(tensor_data_f32(y1), ry, sizeof ry) == 0);
    cr_assert(memcmp(tensor_data_f32(y2), ry, sizeof ry) == 0);
    tensor_free(y1), tensor_free(y2), tensor_free(x), tensor_free(xc), tensor_free(base);

    /* odd sizes with ceil_mode: a partial last window (the generic kernel): output 3x3 */
    float v[25];
    for (int i = 0; i < 25; i++) v[i] = (float)((i * 7) % 25);
    tensor *o = torch_tensor(v, TORCH_SHAPE(1, 1, 5, 5));
    tensor *yo = nnf_max_pool2d(o, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}, .ceil_mode = true), NULL);
    cr_assert_eq(yo->shape[2], 3);
    cr_assert_eq(yo->shape[3], 3);
    /* window (2, 2) is x[4, 4] alone; window (0, 0) is the max of 0, 7, 10, 17 */
    cr_assert_eq(tensor_data_f32(yo)[8], v[24]);
    cr_assert_eq(tensor_data_f32(yo)[0], 17.0f);
    tensor_free(yo), tensor_free(o);
}

/* Without a graph (no input requires grad, or no-grad mode) the values are the same. */
Test(max_pool_2x2, no_graph) {
    tensor *x = test_input(31, 2, 5, 6, 9, true);
    tensor *y = nnf_max_pool2d(x, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}), NULL);
    cr_assert_null(y->grad_fn);
    float ry[2 * 5 * 3 * 4], rdx[2 * 5 * 6 * 9], zeros[2 * 5 * 3 * 4] = {0};
    int64_t ri[2 * 5 * 3 * 4];
    reference(tensor_data_f32(x), zeros, 10, 6, 9, ry, ri, rdx);
    for (int i = 0; i < 2 * 5 * 3 * 4; i++)
        cr_assert(same_float(tensor_data_f32(y)[i], ry[i]) || (isnan(ry[i]) && isnan(tensor_data_f32(y)[i])));
    tensor_free(y), tensor_free(x);
}

/* An empty batch: empty output and gradient, no kernel reads or writes anything. */
Test(max_pool_2x2, empty_batch) {
    tensor *x = torch_zeros(TORCH_SHAPE(0, 3, 4, 4));
    tensor_set_requires_grad(x, true);
    tensor *idx = NULL;
    tensor *y = nnf_max_pool2d(x, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}), &idx);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->shape[0], 0);
    cr_assert_eq(y->shape[2], 2);
    cr_assert_eq(idx->numel, 0);
    tensor *gy = torch_zeros_like(y);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(tensor_grad(x)->numel, 0);
    tensor_free(gy), tensor_free(y), tensor_free(idx), tensor_free(x);
}
