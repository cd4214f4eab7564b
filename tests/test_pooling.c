/* test_pooling.c — max, average and adaptive average pooling.
 *
 * References: PyTorch 1.13 in float64 (tests/fixtures/layers.txt) for y, dx and max_pool2d's
 * indices over padding, stride, dilation, ceil_mode, count_include_pad and unbatched inputs;
 * hand-computed ties; central finite differences (torch_gradcheck). Tolerance 1e-5. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"
#include "layer_fixtures.h"
#include "nn/pooling.h"

TestSuite(pooling);

#define TOL 1e-5

static void finish_case(const lfx_file *fx, const char *name, tensor *x, tensor *y) {
    cr_assert_not_null(y, "%s: %s", name, torch_last_error());
    double ey = lfx_expect_close(y, lfx_get(fx, name, "y"), TOL, name);
    tensor *gy = lfx_tensor(lfx_get(fx, name, "gy"));
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK, "%s", torch_last_error());
    double ex = lfx_expect_close(tensor_grad(x), lfx_get(fx, name, "gx"), TOL, name);
    fprintf(stderr, "pooling %-26s max err vs PyTorch: y %.2e  dx %.2e\n", name, ey, ex);
    tensor_free(gy);
}

Test(pooling, max_pool2d_matches_pytorch) {
    lfx_file *fx = lfx_load();
    const char *cases[] = {"maxpool_k2", "maxpool_k3s2p1", "maxpool_overlap_dil_ceil", "maxpool_unbatched"};
    for (size_t i = 0; i < 4; i++) {
        const double *p = lfx_get(fx, cases[i], "params")->values;
        nn_max_pool2d_options o = {.kernel_size = {(int64_t)p[0], (int64_t)p[1]},
                                   .stride = {(int64_t)p[2], (int64_t)p[3]},
                                   .padding = {(int64_t)p[4], (int64_t)p[5]},
                                   .dilation = {(int64_t)p[6], (int64_t)p[7]},
                                   .ceil_mode = p[8] != 0};
        tensor *x = lfx_leaf(lfx_get(fx, cases[i], "x")), *idx = NULL;
        tensor *y = nnf_max_pool2d(x, o, &idx);
        cr_assert_not_null(idx);
        cr_assert_eq(idx->dtype, TORCH_INT64);
        lfx_expect_close(idx, lfx_get(fx, cases[i], "idx"), 0.0, cases[i]);
        cr_assert_str_eq(ag_function_name(y->grad_fn->fn), "MaxPool2DWithIndicesBackward0");
        finish_case(fx, cases[i], x, y);
        tensor_free(idx), tensor_free(y), tensor_free(x);
    }
    lfx_free(fx);
}

Test(pooling, avg_pool2d_matches_pytorch) {
    lfx_file *fx = lfx_load();
    const char *cases[] = {"avgpool_k2", "avgpool_k3s2p1", "avgpool_k3s2p1_nopad", "avgpool_ceil", "avgpool_ceil_nopad"};
    for (size_t i = 0; i < 5; i++) {
        const double *p = lfx_get(fx, cases[i], "params")->values;
        nn_avg_pool2d_options o = {.kernel_size = {(int64_t)p[0], (int64_t)p[1]},
                                   .stride = {(int64_t)p[2], (int64_t)p[3]},
                                   .padding = {(int64_t)p[4], (int64_t)p[5]},
                                   .ceil_mode = p[6] != 0,
                                   .count_include_pad = p[7] != 0};
        tensor *x = lfx_leaf(lfx_get(fx, cases[i], "x"));
        tensor *y = nnf_avg_pool2d(x, o);
        finish_case(fx, cases[i], x, y);
        tensor_free(y), tensor_free(x);
    }
    lfx_free(fx);
}

Test(pooling, adaptive_avg_pool2d_matches_pytorch) {
    lfx_file *fx = lfx_load();
    const char *cases[] = {"adaptive_1x1", "adaptive_3x3", "adaptive_2x4_unbatched", "adaptive_up"};
    for (size_t i = 0; i < 4; i++) {
        const double *p = lfx_get(fx, cases[i], "params")->values;
        tensor *x = lfx_leaf(lfx_get(fx, cases[i], "x"));
        tensor *y = nnf_adaptive_avg_pool2d(x, (int64_t)p[0], (int64_t)p[1]);
        finish_case(fx, cases[i], x, y);
        tensor_free(y), tensor_free(x);
    }
    lfx_free(fx);
}

/* Ties: the gradient goes to the first maximum in row-major order, once. */
Test(pooling, max_pool2d_ties_go_to_first_maximum) {
    float v[16] = {1, 5, 5, 0,   /* window (0,0): 5 at (0,1) and (1,0); window (0,1): 5 at (0,2) */
                   5, 2, 3, 5,   /* window (1,1): all 7 */
                   0, 0, 7, 7,
                   0, 0, 7, 7};
    tensor *x = torch_tensor(v, TORCH_SHAPE(1, 1, 4, 4));
    tensor_set_requires_grad(x, true);
    tensor *idx = NULL;
    tensor *y = nnf_max_pool2d(x, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}), &idx);
    int64_t want_idx[4] = {1, 2, 8, 10};
    float want_y[4] = {5, 5, 0, 7};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(tensor_data_i64(idx)[i], want_idx[i]);
        cr_assert_eq(tensor_data_f32(y)[i], want_y[i]);
    }
    tensor *gy = torch_ones_like(y);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
    const float *gx = tensor_data_f32(tensor_grad(x));
    for (int i = 0; i < 16; i++) cr_assert_eq(gx[i], (i == 1 || i == 2 || i == 8 || i == 10) ? 1.0f : 0.0f, "dx[%d]", i);
    tensor_free(gy), tensor_free(y), tensor_free(idx), tensor_free(x);
}

/* ---- finite differences (inputs without ties, so max is differentiable) ------------------------------- */

static tensor *max_fn(tensor *const *in, void *u) {
    (void)u;
    return nnf_max_pool2d(in[0], NN_MAX_POOL2D_OPTIONS(.kernel_size = {3, 2}, .stride = {2, 1}, .padding = {1, 1},
                                                       .dilation = {1, 2}, .ceil_mode = true),
                          NULL);
}
static tensor *avg_fn(tensor *const *in, void *u) {
    (void)u;
    return nnf_avg_pool2d(in[0], NN_AVG_POOL2D_OPTIONS(.kernel_size = {3, 3}, .stride = {2, 2}, .padding = {1, 1},
                                                       .ceil_mode = true, .count_include_pad = false));
}
static tensor *adaptive_fn(tensor *const *in, void *u) {
    (void)u;
    return nnf_adaptive_avg_pool2d(in[0], 3, 2);
}

Test(pooling, gradcheck) {
    torch_gradcheck_fn fns[3] = {max_fn, avg_fn, adaptive_fn};
    const char *names[3] = {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"};
    for (int k = 0; k < 3; k++) {
        /* A permutation of well-separated values: no two elements within 2 * eps of each other. */
        tensor *perm = torch_randperm(NULL, 2 * 2 * 7 * 6);
        tensor *x = torch_empty(TORCH_SHAPE(2, 2, 7, 6));
        for (int64_t i = 0; i < x->numel; i++) tensor_data_f32(x)[i] = 0.05f * (float)tensor_data_i64(perm)[i];
        tensor_set_requires_grad(x, true);
        torch_gradcheck_result r;
        cr_assert_eq(torch_gradcheck(fns[k], NULL, 1, &x, NULL, torch_gradcheck_options_default(), &r), TORCH_OK,
                     "%s: %s", names[k], r.message);
        fprintf(stderr, "pooling gradcheck %s: max abs err %.2e\n", names[k], r.max_abs_err);
        tensor_free(perm), tensor_free(x);
    }
}

/* ---- errors and modules ---------------------------------------------------------------------------- */

static void expect_error(tensor *result, torch_status status, const char *message) {
    cr_assert_null(result);
    cr_assert_eq(torch_last_status(), status, "status %d: %s", torch_last_status(), torch_last_error());
    cr_assert(strstr(torch_last_error(), message), "expected \"%s\" in \"%s\"", message, torch_last_error());
}

Test(pooling, errors) {
    tensor *x = torch_zeros(TORCH_SHAPE(1, 1, 4, 4));
    expect_error(nnf_max_pool2d(x, NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2}, .padding = {2, 2}), NULL),
                 TORCH_ERR_INVALID_ARGUMENT, "nnf_max_pool2d: pad should be at most half of kernel size, but got pad=2 and kernel_size=2");
    expect_error(nnf_max_pool2d(x, NN_MAX_POOL2D_OPTIONS(.kernel_size = {0, 0}), NULL), TORCH_ERR_INVALID_ARGUMENT,
                 "kernel size should be greater than zero");
    expect_error(nnf_avg_pool2d(x, NN_AVG_POOL2D_OPTIONS(.kernel_size = {2, 2}, .stride = {-1, 1})),
                 TORCH_ERR_INVALID_ARGUMENT, "nnf_avg_pool2d: stride should be greater than zero");
    tensor_free(x);
    x = torch_zeros(TORCH_SHAPE(1, 1, 1, 1));
    expect_error(nnf_max_pool2d(x, nn_max_pool2d_options_default(2), NULL), TORCH_ERR_SHAPE,
                 "nnf_max_pool2d: Given input size: (1x1x1). Calculated output size: (1x0x0). Output size is too small");
    expect_error(nnf_avg_pool2d(x, nn_avg_pool2d_options_default(2)), TORCH_ERR_SHAPE, "Output size is too small");
    expect_error(nnf_adaptive_avg_pool2d(x, 0, 1), TORCH_ERR_INVALID_ARGUMENT, "output_size must be > 0");
    tensor_free(x);
    x = torch_zeros(TORCH_SHAPE(1, 1));
    expect_error(nnf_max_pool2d(x, nn_max_pool2d_options_default(2), NULL), TORCH_ERR_SHAPE,
                 "non-empty 3D or 4D (batch mode) tensor expected for input");
    expect_error(nnf_adaptive_avg_pool2d(x, 1, 1), TORCH_ERR_SHAPE,
                 "nnf_adaptive_avg_pool2d: Expected 3D or 4D tensor");
    tensor_free(x);

    nn_module *m = nn_max_pool2d(nn_max_pool2d_options_default(2));
    x = torch_zeros(TORCH_SHAPE(2, 3));
    expect_error(nn_module_forward(m, x), TORCH_ERR_SHAPE, "MaxPool2d: non-empty 3D or 4D");
    tensor_free(x);
    nn_module_free(m);
    cr_assert_null(nn_max_pool2d(NN_MAX_POOL2D_OPTIONS(.kernel_size = {3, 3}, .padding = {2, 2})));
    cr_assert(strstr(torch_last_error(), "MaxPool2d: pad should be at most half of kernel size"));
    cr_assert_null(nn_avg_pool2d(NN_AVG_POOL2D_OPTIONS(.kernel_size = {0, 2})));
    cr_assert_null(nn_adaptive_avg_pool2d(NN_ADAPTIVE_AVG_POOL2D_OPTIONS(.output_size = {1, 0})));
    cr_assert(strstr(torch_last_error(), "AdaptiveAvgPool2d: output_size must be > 0 (got (1, 0))"));
}

static void expect_repr(nn_module *m, const char *want) {
    cr_assert_not_null(m, "%s", torch_last_error());
    char *r = nn_module_repr(m);
    cr_assert_str_eq(r, want);
    free(r);
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, 0, "pooling modules have no state");
    nn_tensor_dict_free(sd);
    nn_module_free(m);
}

Test(pooling, modules) {
    expect_repr(nn_max_pool2d(nn_max_pool2d_options_default(2)),
                "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
    expect_repr(nn_max_pool2d(NN_MAX_POOL2D_OPTIONS(.kernel_size = {3, 3}, .stride = {1, 1}, .padding = {1, 1},
                                                    .ceil_mode = true)),
                "MaxPool2d(kernel_size=3, stride=1, padding=1, dilation=1, ceil_mode=True)");
    expect_repr(nn_avg_pool2d(nn_avg_pool2d_options_default(2)), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
    expect_repr(nn_avg_pool2d(NN_AVG_POOL2D_OPTIONS(.kernel_size = {3, 2}, .stride = {2, 1})),
                "AvgPool2d(kernel_size=(3, 2), stride=(2, 1), padding=0)");
    expect_repr(nn_adaptive_avg_pool2d(NN_ADAPTIVE_AVG_POOL2D_OPTIONS(.output_size = {1, 1})),
                "AdaptiveAvgPool2d(output_size=(1, 1))");

    /* Module forward = functional forward; typed views. */
    torch_generator g = torch_generator_new(9);
    tensor *x = torch_randn(&g, TORCH_SHAPE(2, 3, 6, 6));
    nn_module *mods[3] = {nn_max_pool2d(nn_max_pool2d_options_default(2)), nn_avg_pool2d(nn_avg_pool2d_options_default(3)),
                          nn_adaptive_avg_pool2d(NN_ADAPTIVE_AVG_POOL2D_OPTIONS(.output_size = {1, 1}))};
    tensor *want[3] = {nnf_max_pool2d(x, nn_max_pool2d_options_default(2), NULL),
                       nnf_avg_pool2d(x, nn_avg_pool2d_options_default(3)), nnf_adaptive_avg_pool2d(x, 1, 1)};
    for (int k = 0; k < 3; k++) {
        tensor *y = nn_module_forward(mods[k], x);
        cr_assert(tensor_same_shape(y, want[k]));
        cr_assert(memcmp(tensor_data_f32(y), tensor_data_f32(want[k]), (size_t)y->numel * 4) == 0);
        tensor_free(y), tensor_free(want[k]);
    }
    cr_assert_not_null(nn_as_max_pool2d(mods[0]));
    cr_assert_null(nn_as_max_pool2d(mods[1]));
    cr_assert_eq(nn_as_avg_pool2d(mods[1])->options.stride[0], 3);
    cr_assert_eq(nn_as_adaptive_avg_pool2d(mods[2])->options.output_size[1], 1);
    /* The global average pool over 6x6 = the mean of each plane, by hand. */
    tensor *y = nn_module_forward(mods[2], x);
    for (int pl = 0; pl < 6; pl++) {
        double s = 0;
        for (int i = 0; i < 36; i++) s += tensor_data_f32(x)[pl * 36 + i];
        cr_assert_float_eq(tensor_data_f32(y)[pl], s / 36, 1e-6);
    }
    tensor_free(y);
    for (int k = 0; k < 3; k++) nn_module_free(mods[k]);
    tensor_free(x);
}
