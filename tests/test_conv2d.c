/* test_conv2d.c — nnf_conv2d and the Conv2d module.
 *
 * References: PyTorch 1.13 in float64 (tests/fixtures/layers.txt, scripts/make_layer_fixtures.py)
 * for y, dx, dweight and dbias over stride, padding, dilation, bias on/off, 1x1 (the direct path),
 * one and several images per GEMM and an unbatched input; central finite differences
 * (torch_gradcheck); the distribution PyTorch's default initialisation must have. Tolerances:
 * forward 1e-5, gradients 1e-4 (float32 sgemm accumulation), relative for |ref| > 1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"
#include "layer_fixtures.h"
#include "nn/conv.h"
#include "nn/init.h"
#include "tensor/parallel.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4

TestSuite(conv2d);

/* ---- against PyTorch --------------------------------------------------------------------------- */

static void check_case(const lfx_file *fx, const char *name) {
    tensor *x = lfx_leaf(lfx_get(fx, name, "x")), *w = lfx_leaf(lfx_get(fx, name, "w"));
    const lfx_record *br = lfx_find(fx, name, "b");
    tensor *b = br ? lfx_leaf(br) : NULL;
    const lfx_record *sr = lfx_get(fx, name, "stride"), *pr = lfx_get(fx, name, "padding"),
                     *dr = lfx_get(fx, name, "dilation");
    int64_t stride[2] = {(int64_t)sr->values[0], (int64_t)sr->values[1]};
    int64_t padding[2] = {(int64_t)pr->values[0], (int64_t)pr->values[1]};
    int64_t dilation[2] = {(int64_t)dr->values[0], (int64_t)dr->values[1]};

    tensor *y = nnf_conv2d(x, w, b, stride, padding, dilation);
    cr_assert_not_null(y, "%s: %s", name, torch_last_error());
    cr_assert_not_null(y->grad_fn);
    cr_assert_str_eq(ag_function_name(y->grad_fn->fn), "ConvolutionBackward0");
    double ey = lfx_expect_close(y, lfx_get(fx, name, "y"), FWD_TOL, name);
    tensor *gy = lfx_tensor(lfx_get(fx, name, "gy"));
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK, "%s", torch_last_error());
    double ex = lfx_expect_close(tensor_grad(x), lfx_get(fx, name, "gx"), GRAD_TOL, name);
    double ew = lfx_expect_close(tensor_grad(w), lfx_get(fx, name, "gw"), GRAD_TOL, name);
    double eb = b ? lfx_expect_close(tensor_grad(b), lfx_get(fx, name, "gb"), GRAD_TOL, name) : 0.0;
    fprintf(stderr, "conv2d %-16s max err vs PyTorch: y %.2e  dx %.2e  dw %.2e  db %.2e\n", name, ey, ex, ew, eb);
    tensor_free(y), tensor_free(gy), tensor_free(x), tensor_free(w), tensor_free(b);
}

Test(conv2d, matches_pytorch) {
    lfx_file *fx = lfx_load();
    const char *cases[] = {"conv_basic",  "conv_pad_nobias", "conv_stride",   "conv_dilation", "conv_asym",
                           "conv_1x1",    "conv_large",      "conv_batch20",  "conv_unbatched"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(fx, cases[i]);
    lfx_free(fx);
}

/* The Conv2d module with the fixture's weights gives the functional's reference output. */
Test(conv2d, module_forward_matches_pytorch) {
    lfx_file *fx = lfx_load();
    const char *name = "conv_stride"; /* (2,3,8,7), 4 out, kernel (3,2), stride (2,1), padding (1,2), bias */
    nn_module *m = nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 3, .out_channels = 4, .kernel_size = {3, 2},
                                               .stride = {2, 1}, .padding = {1, 2}));
    cr_assert_not_null(m, "%s", torch_last_error());
    nn_conv2d_module *c = nn_as_conv2d(m);
    tensor *w = lfx_tensor(lfx_get(fx, name, "w")), *b = lfx_tensor(lfx_get(fx, name, "b"));
    bool grad_mode = torch_set_grad_enabled(false); /* parameters are written under no_grad */
    cr_assert_eq(tensor_copy_(c->weight, w), TORCH_OK);
    cr_assert_eq(tensor_copy_(c->bias, b), TORCH_OK);
    torch_set_grad_enabled(grad_mode);
    tensor *x = lfx_tensor(lfx_get(fx, name, "x"));
    tensor *y = nn_module_forward(m, x);
    lfx_expect_close(y, lfx_get(fx, name, "y"), FWD_TOL, "Conv2d module");
    /* Parameters require grad, so the output is in a graph; backward fills weight.grad. */
    tensor *gy = lfx_tensor(lfx_get(fx, name, "gy"));
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
    lfx_expect_close(tensor_grad(c->weight), lfx_get(fx, name, "gw"), GRAD_TOL, "Conv2d weight.grad");
    lfx_expect_close(tensor_grad(c->bias), lfx_get(fx, name, "gb"), GRAD_TOL, "Conv2d bias.grad");
    cr_assert_null(tensor_grad(x), "an input that does not require grad gets no gradient");
    tensor_free(y), tensor_free(gy), tensor_free(x), tensor_free(w), tensor_free(b);
    nn_module_free(m);
    lfx_free(fx);
}

/* ---- finite differences ---------------------------------------------------------------------------- */

typedef struct conv_args {
    int64_t stride[2], padding[2], dilation[2];
    bool    bias;
} conv_args;

static tensor *conv_fn(tensor *const *in, void *user) {
    const conv_args *a = user;
    return nnf_conv2d(in[0], in[1], a->bias ? in[2] : NULL, a->stride, a->padding, a->dilation);
}

static void gradcheck_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,
                           conv_args a, uint64_t seed) {
    bool bias = a.bias;
    torch_generator g = torch_generator_new(seed);
    tensor *x = torch_randn(&g, TORCH_SHAPE(N, C, H, W));
    tensor *w = torch_randn(&g, TORCH_SHAPE(O, C, kh, kw));
    tensor *b = bias ? torch_randn(&g, TORCH_SHAPE(O)) : NULL;
    tensor *in[3] = {x, w, b};
    for (int i = 0; i < 3; i++)
        if (in[i]) tensor_set_requires_grad(in[i], true);
    const char *names[3] = {"x", "weight", "bias"};
    torch_gradcheck_result r;
    torch_gradcheck_options o = torch_gradcheck_options_default();
    torch_status st = torch_gradcheck(conv_fn, &a, bias ? 3 : 2, in, names, o, &r);
    cr_assert_eq(st, TORCH_OK, "%s", r.message);
    cr_assert(r.passed);
    fprintf(stderr, "conv2d gradcheck (%lld,%lld,%lld,%lld) k(%lld,%lld): max abs err %.2e\n", (long long)N,
            (long long)C, (long long)H, (long long)W, (long long)kh, (long long)kw, r.max_abs_err);
    tensor_free(x), tensor_free(w), tensor_free(b);
}

Test(conv2d, gradcheck) {
    gradcheck_conv(2, 2, 5, 5, 3, 3, 3, (conv_args){{1, 1}, {0, 0}, {1, 1}, true}, 1);
    gradcheck_conv(2, 2, 6, 5, 2, 3, 2, (conv_args){{2, 1}, {1, 2}, {1, 1}, true}, 2);
    gradcheck_conv(1, 2, 7, 7, 2, 2, 3, (conv_args){{2, 2}, {2, 1}, {2, 2}, false}, 3);
    gradcheck_conv(3, 3, 3, 3, 2, 1, 1, (conv_args){{1, 1}, {0, 0}, {1, 1}, true}, 4); /* direct 1x1 path */
}

/* ---- autograd details --------------------------------------------------------------------------- */

Test(conv2d, records_only_what_needs_grad) {
    torch_generator g = torch_generator_new(5);
    tensor *x = torch_randn(&g, TORCH_SHAPE(2, 2, 5, 5)), *w = torch_randn(&g, TORCH_SHAPE(3, 2, 3, 3));
    tensor *y = nnf_conv2d(x, w, NULL, NULL, NULL, NULL);
    cr_assert_not_null(y);
    cr_assert_null(y->grad_fn, "no input requires grad: no node");
    cr_assert_eq(y->shape[2], 3);
    tensor_free(y);

    tensor_set_requires_grad(w, true);
    bool prev = torch_set_grad_enabled(false);
    y = nnf_conv2d(x, w, NULL, NULL, NULL, NULL);
    torch_set_grad_enabled(prev);
    cr_assert_null(y->grad_fn, "no-grad mode: no node");
    tensor_free(y);

    y = nnf_conv2d(x, w, NULL, NULL, NULL, NULL);
    cr_assert_not_null(y->grad_fn);
    tensor *gy = torch_ones_like(y);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
    tensor_free(gy);
    cr_assert_not_null(tensor_grad(w));
    cr_assert_null(tensor_grad(x));
    tensor_free(y), tensor_free(x), tensor_free(w);
}

/* An empty batch gives an empty output and zero weight gradients. */
Test(conv2d, empty_batch) {
    tensor *x = torch_zeros(TORCH_SHAPE(0, 2, 5, 5)), *w = torch_ones(TORCH_SHAPE(3, 2, 3, 3));
    tensor *b = torch_ones(TORCH_SHAPE(3));
    tensor_set_requires_grad(x, true), tensor_set_requires_grad(w, true), tensor_set_requires_grad(b, true);
    tensor *y = nnf_conv2d(x, w, b, NULL, (int64_t[2]){1, 1}, NULL);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->shape[0], 0);
    cr_assert_eq(y->shape[1], 3);
    cr_assert_eq(y->shape[2], 5);
    tensor *gy = torch_zeros_like(y);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK, "%s", torch_last_error());
    for (int64_t i = 0; i < w->numel; i++) cr_assert_eq(tensor_data_f32(tensor_grad(w))[i], 0.0f);
    for (int64_t i = 0; i < 3; i++) cr_assert_eq(tensor_data_f32(tensor_grad(b))[i], 0.0f);
    cr_assert_eq(tensor_grad(x)->numel, 0);
    tensor_free(gy), tensor_free(y), tensor_free(x), tensor_free(w), tensor_free(b);
}

/* Inputs with any strides give the same result as their contiguous copies. */
Test(conv2d, non_contiguous_input) {
    torch_generator g = torch_generator_new(6);
    tensor *base = torch_randn(&g, TORCH_SHAPE(2, 5, 6, 3)); /* (N, W, H, C) */
    int64_t shape[4] = {2, 3, 6, 5}, stride[4] = {90, 1, 3, 18};
    tensor *x = tensor_as_strided(base, 4, shape, stride, 0); /* (N, C, H, W) view */
    tensor *xc = tensor_contiguous(x);
    cr_assert(!tensor_is_contiguous(x));
    tensor *w = torch_randn(&g, TORCH_SHAPE(4, 3, 3, 3));
    tensor *y1 = nnf_conv2d(x, w, NULL, NULL, (int64_t[2]){1, 1}, NULL);
    tensor *y2 = nnf_conv2d(xc, w, NULL, NULL, (int64_t[2]){1, 1}, NULL);
    cr_assert(memcmp(tensor_data_f32(y1), tensor_data_f32(y2), (size_t)y1->numel * sizeof(float)) == 0);
    tensor_free(y1), tensor_free(y2), tensor_free(x), tensor_free(xc), tensor_free(w), tensor_free(base);
}

/* Same numbers, bit for bit, with 1 and 2 threads (forward and all three gradients). */
Test(conv2d, deterministic_across_thread_counts) {
    tensor *out[2][4];
    for (int run = 0; run < 2; run++) {
        torch_set_num_threads(run == 0 ? 1 : 2);
        torch_generator g = torch_generator_new(7);
        tensor *x = torch_randn(&g, TORCH_SHAPE(16, 8, 14, 14)), *w = torch_randn(&g, TORCH_SHAPE(16, 8, 3, 3));
        tensor *b = torch_randn(&g, TORCH_SHAPE(16));
        tensor_set_requires_grad(x, true), tensor_set_requires_grad(w, true), tensor_set_requires_grad(b, true);
        tensor *y = nnf_conv2d(x, w, b, NULL, (int64_t[2]){1, 1}, NULL);
        tensor *gy = torch_randn(&g, 4, y->shape);
        cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
        out[run][0] = tensor_detach(y);
        out[run][1] = tensor_retain(tensor_grad(x));
        out[run][2] = tensor_retain(tensor_grad(w));
        out[run][3] = tensor_retain(tensor_grad(b));
        tensor_free(y), tensor_free(gy), tensor_free(x), tensor_free(w), tensor_free(b);
    }
    torch_set_num_threads(1);
    for (int k = 0; k < 4; k++) {
        cr_assert(memcmp(tensor_data_f32(out[0][k]), tensor_data_f32(out[1][k]),
                         (size_t)out[0][k]->numel * sizeof(float)) == 0,
                  "result %d differs between 1 and 2 threads", k);
        tensor_free(out[0][k]), tensor_free(out[1][k]);
    }
}

/* ---- errors ------------------------------------------------------------------------------------- */

static void expect_error(tensor *result, torch_status status, const char *message) {
    cr_assert_null(result);
    cr_assert_eq(torch_last_status(), status, "status %d, message: %s", torch_last_status(), torch_last_error());
    cr_assert(strstr(torch_last_error(), message), "expected \"%s\" in \"%s\"", message, torch_last_error());
}

Test(conv2d, module_errors_leave_state_unchanged) {
    nn_module *m = nn_conv2d(nn_conv2d_options_default(3, 4, 3));
    nn_conv2d_module *c = nn_as_conv2d(m);
    tensor *w0 = tensor_clone(c->weight), *b0 = tensor_clone(c->bias);

    tensor *x = torch_zeros(TORCH_SHAPE(2, 1, 5, 5));
    expect_error(nn_module_forward(m, x), TORCH_ERR_SHAPE, "Conv2d: expected input with 3 channels (got 1)");
    tensor_free(x);
    x = torch_zeros(TORCH_SHAPE(2, 3));
    expect_error(nn_module_forward(m, x), TORCH_ERR_SHAPE,
                 "Conv2d: expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [2, 3]");
    tensor_free(x);
    x = torch_zeros(TORCH_SHAPE(1, 3, 2, 2));
    expect_error(nn_module_forward(m, x), TORCH_ERR_SHAPE,
                 "Conv2d: Calculated padded input size per channel: (2 x 2). Kernel size: (3 x 3). Kernel size "
                 "can't be greater than actual input size");
    tensor_free(x);
    x = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(1, 3, 5, 5));
    expect_error(nn_module_forward(m, x), TORCH_ERR_INVALID_ARGUMENT, "Conv2d: expected input to be float32");
    tensor_free(x);

    cr_assert(memcmp(tensor_data_f32(w0), tensor_data_f32(c->weight), (size_t)w0->numel * 4) == 0);
    cr_assert(memcmp(tensor_data_f32(b0), tensor_data_f32(c->bias), (size_t)b0->numel * 4) == 0);
    cr_assert_null(tensor_grad(c->weight));
    tensor_free(w0), tensor_free(b0);
    nn_module_free(m);
}

Test(conv2d, functional_errors) {
    tensor *x = torch_zeros(TORCH_SHAPE(1, 3, 5, 5)), *w = torch_zeros(TORCH_SHAPE(4, 3, 3, 3));
    tensor *w3 = torch_zeros(TORCH_SHAPE(4, 3, 3)), *b = torch_zeros(TORCH_SHAPE(3));
    expect_error(nnf_conv2d(x, w3, NULL, NULL, NULL, NULL), TORCH_ERR_SHAPE, "nnf_conv2d: expected 4D weight");
    expect_error(nnf_conv2d(x, w, b, NULL, NULL, NULL), TORCH_ERR_SHAPE,
                 "nnf_conv2d: Given weight of size [4, 3, 3, 3], expected bias to be 1-dimensional with 4 elements, "
                 "but got bias of size [3] instead");
    expect_error(nnf_conv2d(x, w, NULL, (int64_t[2]){0, 1}, NULL, NULL), TORCH_ERR_INVALID_ARGUMENT,
                 "non-positive stride is not supported");
    expect_error(nnf_conv2d(x, w, NULL, NULL, (int64_t[2]){-1, 0}, NULL), TORCH_ERR_INVALID_ARGUMENT,
                 "negative padding is not supported");
    expect_error(nnf_conv2d(x, w, NULL, NULL, NULL, (int64_t[2]){0, 0}), TORCH_ERR_INVALID_ARGUMENT,
                 "dilation should be greater than zero");
    expect_error(nnf_conv2d(x, w, NULL, NULL, NULL, (int64_t[2]){3, 3}), TORCH_ERR_SHAPE,
                 "Calculated padded input size per channel: (5 x 5). Kernel size: (7 x 7).");
    expect_error(nnf_conv2d(NULL, w, NULL, NULL, NULL, NULL), TORCH_ERR_INVALID_ARGUMENT, "nnf_conv2d: input is NULL");
    tensor *small = torch_zeros(TORCH_SHAPE(4, 3, 2, 2)); /* a batch whose output would have 0 columns */
    expect_error(nnf_conv2d(small, w, NULL, NULL, NULL, NULL), TORCH_ERR_SHAPE, "Kernel size can't be greater");
    tensor_free(x), tensor_free(w), tensor_free(w3), tensor_free(b), tensor_free(small);
}

Test(conv2d, constructor_errors) {
    cr_assert_null(nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 0, .out_channels = 4, .kernel_size = {3, 3})));
    cr_assert(strstr(torch_last_error(), "Conv2d: in_channels must be > 0 (got 0)"));
    cr_assert_null(nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 4, .kernel_size = {3})));
    cr_assert(strstr(torch_last_error(), "Conv2d: kernel_size must be > 0 (got (3, 0))"), "%s", torch_last_error());
    cr_assert_null(nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 4, .kernel_size = {3, 3},
                                               .padding = {-1, 0})));
    cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
}

/* ---- the module --------------------------------------------------------------------------------- */

Test(conv2d, parameters_and_repr) {
    nn_module *m = nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 32, .kernel_size = {3, 3},
                                               .padding = {1, 1}, .bias = false));
    cr_assert_not_null(m);
    nn_conv2d_module *c = nn_as_conv2d(m);
    cr_assert_not_null(c);
    cr_assert_null(c->bias);
    cr_assert_eq(c->weight->ndim, 4);
    cr_assert_eq(c->weight->shape[0], 32);
    cr_assert_eq(c->weight->shape[1], 1);
    cr_assert(c->weight->requires_grad);
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, 1);
    cr_assert_str_eq(sd->items[0].name, "weight");
    nn_tensor_dict_free(sd);
    char *r = nn_module_repr(m);
    cr_assert_str_eq(r, "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)");
    free(r);
    nn_module_free(m);

    m = nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 32, .kernel_size = {3, 2}, .stride = {2, 1},
                                    .dilation = {2, 2}));
    r = nn_module_repr(m);
    cr_assert_str_eq(r, "Conv2d(1, 32, kernel_size=(3, 2), stride=(2, 1), dilation=(2, 2))");
    free(r);
    sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, 2);
    cr_assert_str_eq(sd->items[0].name, "weight");
    cr_assert_str_eq(sd->items[1].name, "bias");
    nn_tensor_dict_free(sd);
    cr_assert_null(nn_as_conv2d(NULL));
    nn_module_free(m);
}

/* PyTorch's default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in*kH*kW. */
Test(conv2d, default_init_distribution) {
    torch_generator g = torch_generator_new(42);
    nn_module *m = nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 16, .out_channels = 64, .kernel_size = {3, 3},
                                               .generator = &g));
    nn_conv2d_module *c = nn_as_conv2d(m);
    double bound = 1.0 / sqrt(16.0 * 9.0);
    const float *w = tensor_data_f32(c->weight);
    double mn = 1, mx = -1, s = 0, s2 = 0;
    for (int64_t i = 0; i < c->weight->numel; i++) {
        cr_assert(fabs(w[i]) <= bound, "weight %g outside +-%g", w[i], bound);
        mn = fmin(mn, w[i]), mx = fmax(mx, w[i]), s += w[i], s2 += (double)w[i] * w[i];
    }
    double n = (double)c->weight->numel, mean = s / n, var = s2 / n - mean * mean;
    cr_assert(mn < -0.99 * bound && mx > 0.99 * bound, "spread [%g, %g] of +-%g", mn, mx, bound);
    cr_assert(fabs(mean) < 0.05 * bound, "mean %g", mean);
    cr_assert(fabs(var / (bound * bound / 3.0) - 1.0) < 0.05, "variance %g, uniform %g", var, bound * bound / 3);
    for (int64_t i = 0; i < c->bias->numel; i++) cr_assert(fabs(tensor_data_f32(c->bias)[i]) <= bound);

    /* Same seed, same weights; the default generator is used when none is given. */
    torch_generator g2 = torch_generator_new(42);
    nn_module *m2 = nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 16, .out_channels = 64, .kernel_size = {3, 3},
                                                .generator = &g2));
    cr_assert(memcmp(w, tensor_data_f32(nn_as_conv2d(m2)->weight), (size_t)n * 4) == 0);
    cr_assert(memcmp(tensor_data_f32(c->bias), tensor_data_f32(nn_as_conv2d(m2)->bias), 64 * 4) == 0);
    torch_manual_seed(42);
    nn_module *m3 = nn_conv2d(nn_conv2d_options_default(16, 64, 3));
    cr_assert(memcmp(w, tensor_data_f32(nn_as_conv2d(m3)->weight), (size_t)n * 4) == 0);
    /* reset_parameters draws new values from the generator it is given. */
    torch_generator g3 = torch_generator_new(43);
    cr_assert_eq(nn_module_reset_parameters(m3, &g3), TORCH_OK);
    cr_assert(memcmp(w, tensor_data_f32(nn_as_conv2d(m3)->weight), (size_t)n * 4) != 0);
    nn_module_free(m), nn_module_free(m2), nn_module_free(m3);
}

Test(conv2d, init_functions) {
    int64_t fi = 0, fo = 0;
    tensor *w = torch_empty(TORCH_SHAPE(8, 3, 5, 2));
    cr_assert_eq(nn_init_calculate_fan_in_and_fan_out(w, &fi, &fo), TORCH_OK);
    cr_assert_eq(fi, 30);
    cr_assert_eq(fo, 80);
    /* kaiming_uniform with a = 0 (ReLU gain sqrt(2)): bound = sqrt(6 / fan_in). */
    torch_generator g = torch_generator_new(1);
    cr_assert_eq(nn_init_kaiming_uniform_(w, 0.0, &g), TORCH_OK);
    double bound = sqrt(6.0 / 30.0), mx = 0;
    for (int64_t i = 0; i < w->numel; i++) mx = fmax(mx, fabs(tensor_data_f32(w)[i]));
    cr_assert(mx <= bound && mx > 0.95 * bound, "max |w| %g, bound %g", mx, bound);
    cr_assert_eq(nn_init_uniform_(w, 2.0, 3.0, &g), TORCH_OK);
    for (int64_t i = 0; i < w->numel; i++) cr_assert(tensor_data_f32(w)[i] >= 2.0f && tensor_data_f32(w)[i] <= 3.0f);
    tensor *v = torch_zeros(TORCH_SHAPE(4));
    cr_assert_eq(nn_init_kaiming_uniform_(v, 0.0, &g), TORCH_ERR_SHAPE);
    cr_assert(strstr(torch_last_error(), "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"));
    for (int i = 0; i < 4; i++) cr_assert_eq(tensor_data_f32(v)[i], 0.0f, "a refused init writes nothing");
    cr_assert_eq(nn_init_uniform_(v, 1.0, 0.0, &g), TORCH_ERR_INVALID_ARGUMENT);
    tensor_free(w), tensor_free(v);
}
