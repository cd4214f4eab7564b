/* test_conv2d_paths.c — every kernel path of nnf_conv2d against an independent reference.
 *
 * nnf_conv2d picks its kernels from the shapes (src/nn/conv.c): register-blocked kernels for a
 * short reduction (C_in*kH*kW <= 32, e.g. the first layer on grey images), Winograd F(2x2, 3x3)
 * for 3x3 stride-1 undilated kernels, im2col + sgemm otherwise (with a one-copy im2col when the
 * output is as wide as the input, several images per product when images are small, and no
 * im2col at all for 1x1 kernels). The PyTorch fixtures of test_conv2d.c are small enough to all
 * take the first path, so this file covers the others.
 *
 * Reference: a direct 7-loop convolution in double written here (y, dx, dweight, dbias from the
 * definition), independent of conv.c; finite differences (torch_gradcheck) on the Winograd path.
 * Tolerance: |got - want| <= TOL * max(1, |want|) with TOL 1e-4 (float32 sums of up to ~3000
 * terms here; measured errors are 1e-6 .. 3e-5). Also: bit-identical results at 1 and 2 threads on
 * every path, and the paths on the reference CNN's shapes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"
#include "nn/conv.h"
#include "tensor/parallel.h"

#define TOL 1e-4

TestSuite(conv2d_paths);

typedef struct conv_case {
    const char *name;
    int64_t     N, C, H, W, O, KH, KW;
    int64_t     stride[2], padding[2], dilation[2];
    bool        bias;
} conv_case;

typedef struct conv_ref {
    int64_t OH, OW;
    double *y, *dx, *dw, *db;
} conv_ref;

/* The definition: y[n,o,oh,ow] = b[o] + sum_{c,kh,kw} w[o,c,kh,kw] x[n,c,oh*s - p + kh*d, ow*s - p + kw*d],
 * and the three gradients for upstream gradient gy, each summed term by term in double. */
static conv_ref reference(const conv_case *k, const float *x, const float *w, const float *b, const float *gy) {
    conv_ref r;
    r.OH = (k->H + 2 * k->padding[0] - k->dilation[0] * (k->KH - 1) - 1) / k->stride[0] + 1;
    r.OW = (k->W + 2 * k->padding[1] - k->dilation[1] * (k->KW - 1) - 1) / k->stride[1] + 1;
    r.y = calloc((size_t)(k->N * k->O * r.OH * r.OW), sizeof(double));
    r.dx = calloc((size_t)(k->N * k->C * k->H * k->W), sizeof(double));
    r.dw = calloc((size_t)(k->O * k->C * k->KH * k->KW), sizeof(double));
    r.db = calloc((size_t)k->O, sizeof(double));
    for (int64_t n = 0; n < k->N; n++)
        for (int64_t o = 0; o < k->O; o++)
            for (int64_t oh = 0; oh < r.OH; oh++)
                for (int64_t ow = 0; ow < r.OW; ow++) {
                    int64_t yi = ((n * k->O + o) * r.OH + oh) * r.OW + ow;
                    double s = b ? b[o] : 0.0, g = gy ? gy[yi] : 0.0;
                    r.db[o] += g;
                    for (int64_t c = 0; c < k->C; c++)
                        for (int64_t i = 0; i < k->KH; i++)
                            for (int64_t j = 0; j < k->KW; j++) {
                                int64_t ih = oh * k->stride[0] - k->padding[0] + i * k->dilation[0];
                                int64_t iw = ow * k->stride[1] - k->padding[1] + j * k->dilation[1];
                                if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W) continue;
                                int64_t xi = ((n * k->C + c) * k->H + ih) * k->W + iw;
                                int64_t wi = ((o * k->C + c) * k->KH + i) * k->KW + j;
                                s += (double)w[wi] * x[xi];
                                r.dx[xi] += g * w[wi];
                                r.dw[wi] += g * x[xi];
                            }
                    r.y[yi] = s;
                }
    return r;
}

static void ref_free(conv_ref *r) { free(r->y), free(r->dx), free(r->dw), free(r->db); }

static double check_close(const char *what, const char *name, const tensor *got, const double *want) {
    cr_assert_not_null(got, "%s %s: no tensor", name, what);
    const float *g = tensor_data_f32(got);
    double worst = 0.0;
    for (int64_t i = 0; i < got->numel; i++) {
        double e = fabs(g[i] - want[i]) / fmax(1.0, fabs(want[i]));
        cr_assert(e <= TOL, "%s %s[%lld]: got %.9g, want %.9g", name, what, (long long)i, g[i], want[i]);
        worst = fmax(worst, e);
    }
    return worst;
}

/* Runs a case with inputs from seed, checks y and the three gradients against the reference. */
static void run_case(const conv_case *k, uint64_t seed) {
    torch_generator gen = torch_generator_new(seed);
    tensor *x = torch_randn(&gen, TORCH_SHAPE(k->N, k->C, k->H, k->W));
    tensor *w = torch_randn(&gen, TORCH_SHAPE(k->O, k->C, k->KH, k->KW));
    tensor *b = k->bias ? torch_randn(&gen, TORCH_SHAPE(k->O)) : NULL;
    tensor *in[3] = {x, w, b};
    for (int i = 0; i < 3; i++)
        if (in[i]) tensor_set_requires_grad(in[i], true);
    tensor *y = nnf_conv2d(x, w, b, k->stride, k->padding, k->dilation);
    cr_assert_not_null(y, "%s: %s", k->name, torch_last_error());
    tensor *gy = torch_randn(&gen, y->ndim, y->shape);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK, "%s: %s", k->name, torch_last_error());
    conv_ref r = reference(k, tensor_data_f32(x), tensor_data_f32(w), b ? tensor_data_f32(b) : NULL,
                           tensor_data_f32(gy));
    cr_assert_eq(y->shape[2], r.OH);
    cr_assert_eq(y->shape[3], r.OW);
    double ey = check_close("y", k->name, y, r.y);
    double ex = check_close("dx", k->name, tensor_grad(x), r.dx);
    double ew = check_close("dweight", k->name, tensor_grad(w), r.dw);
    double eb = b ? check_close("dbias", k->name, tensor_grad(b), r.db) : 0.0;
    fprintf(stderr, "conv2d path %-22s max rel err: y %.1e  dx %.1e  dw %.1e  db %.1e\n", k->name, ey, ex, ew, eb);
    ref_free(&r);
    tensor_free(y), tensor_free(gy), tensor_free(x), tensor_free(w), tensor_free(b);
}

#define S(a, b) {a, b}

/* K = C*kH*kW <= 32: the register-blocked kernels (C_in = 1 and 3, strides, padding, dilation,
 * widths that are and are not multiples of 8 and 16, a last block of fewer than 4 channels). */
Test(conv2d_paths, short_reduction) {
    const conv_case cases[] = {
        {"c1_3x3_p1", 3, 1, 28, 28, 32, 3, 3, S(1, 1), S(1, 1), S(1, 1), false},
        {"c1_3x3_odd", 2, 1, 9, 11, 7, 3, 3, S(1, 1), S(0, 0), S(1, 1), true},
        {"c1_stride_dil", 2, 1, 13, 10, 5, 3, 2, S(2, 1), S(1, 0), S(1, 2), true},
        {"c3_3x3_rgb", 2, 3, 17, 15, 6, 3, 3, S(1, 1), S(1, 1), S(1, 1), true},
        {"c2_5x3_stride", 3, 2, 12, 9, 9, 5, 3, S(2, 3), S(2, 1), S(1, 1), false},
        {"c1_1x5_tiny", 1, 1, 1, 7, 2, 1, 5, S(1, 1), S(0, 2), S(1, 1), true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 100 + i);
}

/* 3x3, stride 1, no dilation, C_in >= 4: Winograd F(2x2, 3x3), with odd output sizes (a partial
 * last tile), padding 0 .. 3, more than 16 output columns (several blocks of 8 tiles per row), a
 * batch that is not a multiple of the block, a 1x1 input, and the second conv of the reference CNN. */
Test(conv2d_paths, winograd) {
    const conv_case cases[] = {
        {"wino_ref_cnn_conv2", 3, 32, 14, 14, 64, 3, 3, S(1, 1), S(1, 1), S(1, 1), false},
        {"wino_odd_bias", 3, 5, 7, 6, 4, 3, 3, S(1, 1), S(1, 1), S(1, 1), true},
        {"wino_no_pad", 2, 6, 9, 8, 3, 3, 3, S(1, 1), S(0, 0), S(1, 1), true},
        {"wino_pad_2_1", 2, 4, 5, 5, 7, 3, 3, S(1, 1), S(2, 1), S(1, 1), true},
        {"wino_pad_3_2_wide", 2, 4, 9, 37, 5, 3, 3, S(1, 1), S(3, 2), S(1, 1), true},
        {"wino_1x1_input", 1, 8, 1, 1, 3, 3, 3, S(1, 1), S(1, 1), S(1, 1), true},
        {"wino_many_blocks", 41, 8, 6, 5, 6, 3, 3, S(1, 1), S(1, 1), S(1, 1), true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 200 + i);
}

/* im2col + sgemm: the one-copy im2col (stride 1, output as wide as the input, a 5x5 and a
 * dilated 3x3 kernel), the general im2col (strides), several images per product (small outputs),
 * and 1x1 kernels (no im2col). */
Test(conv2d_paths, im2col_gemm) {
    const conv_case cases[] = {
        {"shift_5x5", 3, 3, 10, 11, 6, 5, 5, S(1, 1), S(2, 2), S(1, 1), true},
        {"shift_3x3_dilated", 2, 8, 10, 11, 6, 3, 3, S(1, 1), S(2, 2), S(2, 2), true},
        {"shift_3x1_rows", 2, 12, 8, 9, 5, 3, 1, S(1, 1), S(1, 0), S(1, 1), false},
        {"generic_stride2", 2, 8, 10, 11, 6, 3, 3, S(2, 2), S(1, 1), S(1, 1), true},
        {"generic_dil_narrow", 2, 8, 10, 11, 6, 3, 2, S(1, 1), S(1, 1), S(2, 1), true},
        {"batched_small_maps", 40, 8, 6, 6, 6, 3, 3, S(2, 1), S(1, 1), S(1, 1), true},
        {"direct_1x1", 3, 16, 6, 7, 6, 1, 1, S(1, 1), S(0, 0), S(1, 1), true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i], 300 + i);
}

/* ---- finite differences on the Winograd path ------------------------------------------------------ */

static tensor *wino_fn(tensor *const *in, void *user) {
    (void)user;
    return nnf_conv2d(in[0], in[1], in[2], NULL, (int64_t[2]){1, 1}, NULL);
}

Test(conv2d_paths, winograd_gradcheck) {
    torch_generator g = torch_generator_new(9);
    tensor *x = torch_randn(&g, TORCH_SHAPE(2, 4, 5, 4)), *w = torch_randn(&g, TORCH_SHAPE(3, 4, 3, 3));
    tensor *b = torch_randn(&g, TORCH_SHAPE(3));
    tensor *in[3] = {x, w, b};
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(in[i], true);
    const char *names[3] = {"x", "weight", "bias"};
    torch_gradcheck_result r;
    cr_assert_eq(torch_gradcheck(wino_fn, NULL, 3, in, names, torch_gradcheck_options_default(), &r), TORCH_OK, "%s",
                 r.message);
    cr_assert(r.passed, "%s", r.message);
    fprintf(stderr, "conv2d path winograd gradcheck: max abs err %.2e\n", r.max_abs_err);
    tensor_free(x), tensor_free(w), tensor_free(b);
}

/* ---- the same bits at any thread count ------------------------------------------------------------ */

/* y, dx, dweight, dbias of one case at `threads` threads (new references in out[0..3]). */
static void outputs_at(const conv_case *k, int threads, tensor *out[4]) {
    torch_set_num_threads(threads);
    torch_generator gen = torch_generator_new(77);
    tensor *x = torch_randn(&gen, TORCH_SHAPE(k->N, k->C, k->H, k->W));
    tensor *w = torch_randn(&gen, TORCH_SHAPE(k->O, k->C, k->KH, k->KW));
    tensor *b = torch_randn(&gen, TORCH_SHAPE(k->O));
    tensor_set_requires_grad(x, true), tensor_set_requires_grad(w, true), tensor_set_requires_grad(b, true);
    tensor *y = nnf_conv2d(x, w, b, k->stride, k->padding, k->dilation);
    cr_assert_not_null(y, "%s", torch_last_error());
    tensor *gy = torch_randn(&gen, y->ndim, y->shape);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
    out[0] = tensor_detach(y);
    out[1] = tensor_retain(tensor_grad(x));
    out[2] = tensor_retain(tensor_grad(w));
    out[3] = tensor_retain(tensor_grad(b));
    tensor_free(y), tensor_free(gy), tensor_free(x), tensor_free(w), tensor_free(b);
    torch_set_num_threads(1);
}

Test(conv2d_paths, deterministic_across_thread_counts) {
    const conv_case cases[] = {
        {"short_reduction", 9, 1, 28, 28, 32, 3, 3, S(1, 1), S(1, 1), S(1, 1), true},
        {"winograd", 19, 32, 14, 14, 16, 3, 3, S(1, 1), S(1, 1), S(1, 1), true},
        {"shift", 5, 8, 10, 11, 6, 5, 5, S(1, 1), S(2, 2), S(1, 1), true},
        {"generic", 5, 8, 10, 11, 6, 3, 3, S(2, 2), S(1, 1), S(1, 1), true},
        {"batched", 40, 8, 6, 6, 6, 3, 3, S(2, 1), S(1, 1), S(1, 1), true},
        {"direct", 5, 16, 6, 7, 6, 1, 1, S(1, 1), S(0, 0), S(1, 1), true},
    };
    static const char *what[4] = {"y", "dx", "dweight", "dbias"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tensor *one[4], *two[4];
        outputs_at(&cases[i], 1, one);
        outputs_at(&cases[i], 2, two);
        for (int j = 0; j < 4; j++) {
            cr_assert(memcmp(tensor_data_f32(one[j]), tensor_data_f32(two[j]), (size_t)one[j]->numel * sizeof(float)) ==
                          0,
                      "%s: %s differs between 1 and 2 threads", cases[i].name, what[j]);
            tensor_free(one[j]), tensor_free(two[j]);
        }
    }
}

/* The first conv of a CNN sees the data, which needs no gradient: no dx is computed, weight.grad is. */
Test(conv2d_paths, input_without_grad) {
    const conv_case k = {"c1_no_dx", 4, 1, 12, 12, 8, 3, 3, S(1, 1), S(1, 1), S(1, 1), false};
    torch_generator gen = torch_generator_new(5);
    tensor *x = torch_randn(&gen, TORCH_SHAPE(k.N, k.C, k.H, k.W));
    tensor *w = torch_randn(&gen, TORCH_SHAPE(k.O, k.C, k.KH, k.KW));
    tensor_set_requires_grad(w, true);
    tensor *y = nnf_conv2d(x, w, NULL, k.stride, k.padding, k.dilation);
    tensor *gy = torch_randn(&gen, y->ndim, y->shape);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
    cr_assert_null(tensor_grad(x));
    conv_ref r = reference(&k, tensor_data_f32(x), tensor_data_f32(w), NULL, tensor_data_f32(gy));
    check_close("y", k.name, y, r.y);
    check_close("dweight", k.name, tensor_grad(w), r.dw);
    ref_free(&r);
    tensor_free(y), tensor_free(gy), tensor_free(x), tensor_free(w);
}
