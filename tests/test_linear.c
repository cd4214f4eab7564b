/* test_linear.c — nnf_linear and the Linear module.
 *
 * References: PyTorch 1.13 in float64 (tests/fixtures/layers.txt) for y, dx, dweight, dbias with
 * 2-D, 3-D and 1-D inputs; central finite differences (torch_gradcheck); PyTorch's default
 * initialisation bounds. Tolerances: forward 1e-5, gradients 1e-4, relative for |ref| > 1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"
#include "layer_fixtures.h"
#include "nn/linear.h"
#include "tensor/parallel.h"

TestSuite(linear);

static void check_case(const lfx_file *fx, const char *name) {
    tensor *x = lfx_leaf(lfx_get(fx, name, "x")), *w = lfx_leaf(lfx_get(fx, name, "w"));
    const lfx_record *br = lfx_find(fx, name, "b");
    tensor *b = br ? lfx_leaf(br) : NULL;
    tensor *y = nnf_linear(x, w, b);
    cr_assert_not_null(y, "%s: %s", name, torch_last_error());
    cr_assert_str_eq(ag_function_name(y->grad_fn->fn), b ? "AddmmBackward0" : "MmBackward0");
    double ey = lfx_expect_close(y, lfx_get(fx, name, "y"), 1e-5, name);
    tensor *gy = lfx_tensor(lfx_get(fx, name, "gy"));
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK, "%s", torch_last_error());
    double ex = lfx_expect_close(tensor_grad(x), lfx_get(fx, name, "gx"), 1e-4, name);
    double ew = lfx_expect_close(tensor_grad(w), lfx_get(fx, name, "gw"), 1e-4, name);
    double eb = b ? lfx_expect_close(tensor_grad(b), lfx_get(fx, name, "gb"), 1e-4, name) : 0.0;
    fprintf(stderr, "linear %-17s max err vs PyTorch: y %.2e  dx %.2e  dw %.2e  db %.2e\n", name, ey, ex, ew, eb);
    tensor_free(y), tensor_free(gy), tensor_free(x), tensor_free(w), tensor_free(b);
}

Test(linear, matches_pytorch) {
    lfx_file *fx = lfx_load();
    check_case(fx, "linear_basic");
    check_case(fx, "linear_3d_nobias");
    check_case(fx, "linear_1d");
    lfx_free(fx);
}

static tensor *linear_fn(tensor *const *in, void *user) {
    return nnf_linear(in[0], in[1], *(bool *)user ? in[2] : NULL);
}

Test(linear, gradcheck) {
    torch_generator g = torch_generator_new(11);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        bool bias = with_bias;
        tensor *in[3] = {torch_randn(&g, TORCH_SHAPE(4, 6)), torch_randn(&g, TORCH_SHAPE(3, 6)),
                         torch_randn(&g, TORCH_SHAPE(3))};
        for (int i = 0; i < 3; i++) tensor_set_requires_grad(in[i], true);
        torch_gradcheck_result r;
        const char *names[3] = {"x", "weight", "bias"};
        cr_assert_eq(torch_gradcheck(linear_fn, &bias, bias ? 3 : 2, in, names, torch_gradcheck_options_default(), &r),
                     TORCH_OK, "%s", r.message);
        fprintf(stderr, "linear gradcheck (bias %d): max abs err %.2e\n", with_bias, r.max_abs_err);
        for (int i = 0; i < 3; i++) tensor_free(in[i]);
    }
}

/* The reference CNN's classifier shape, bit-identical with 1 and 2 threads. */
Test(linear, deterministic_across_thread_counts) {
    tensor *out[2][4];
    for (int run = 0; run < 2; run++) {
        torch_set_num_threads(run + 1);
        torch_generator g = torch_generator_new(12);
        tensor *x = torch_randn(&g, TORCH_SHAPE(64, 3136)), *w = torch_randn(&g, TORCH_SHAPE(10, 3136));
        tensor *b = torch_randn(&g, TORCH_SHAPE(10));
        tensor_set_requires_grad(x, true), tensor_set_requires_grad(w, true), tensor_set_requires_grad(b, true);
        tensor *y = nnf_linear(x, w, b);
        tensor *gy = torch_randn(&g, TORCH_SHAPE(64, 10));
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

static void expect_error(tensor *result, torch_status status, const char *message) {
    cr_assert_null(result);
    cr_assert_eq(torch_last_status(), status, "status %d: %s", torch_last_status(), torch_last_error());
    cr_assert(strstr(torch_last_error(), message), "expected \"%s\" in \"%s\"", message, torch_last_error());
}

Test(linear, errors_leave_state_unchanged) {
    nn_module *m = nn_linear(NN_LINEAR_OPTIONS(.in_features = 3136, .out_features = 10));
    cr_assert_not_null(m);
    nn_linear_module *l = nn_as_linear(m);
    tensor *w0 = tensor_clone(l->weight);
    tensor *x = torch_zeros(TORCH_SHAPE(64, 100));
    expect_error(nn_module_forward(m, x), TORCH_ERR_SHAPE,
                 "Linear: mat1 and mat2 shapes cannot be multiplied (64x100 and 3136x10)");
    tensor_free(x);
    x = torch_scalar(1.0f);
    expect_error(nn_module_forward(m, x), TORCH_ERR_SHAPE, "Linear: both arguments to linear need to be at least 1D");
    tensor_free(x);
    cr_assert(memcmp(tensor_data_f32(w0), tensor_data_f32(l->weight), (size_t)w0->numel * 4) == 0);
    cr_assert_null(tensor_grad(l->weight));
    tensor_free(w0);
    nn_module_free(m);

    tensor *a = torch_zeros(TORCH_SHAPE(2, 3)), *w = torch_zeros(TORCH_SHAPE(4, 3)), *b = torch_zeros(TORCH_SHAPE(3));
    expect_error(nnf_linear(a, w, b), TORCH_ERR_SHAPE, "nnf_linear: expected bias of size [4] (got [3])");
    expect_error(nnf_linear(a, b, NULL), TORCH_ERR_SHAPE, "nnf_linear: expected 2D weight");
    expect_error(nnf_linear(NULL, w, NULL), TORCH_ERR_INVALID_ARGUMENT, "nnf_linear: input is NULL");
    tensor_free(a), tensor_free(w), tensor_free(b);

    cr_assert_null(nn_linear(NN_LINEAR_OPTIONS(.in_features = 0, .out_features = 10)));
    cr_assert(strstr(torch_last_error(), "Linear: in_features must be > 0 (got 0)"));
}

Test(linear, module) {
    torch_generator g = torch_generator_new(3);
    nn_module *m = nn_linear(NN_LINEAR_OPTIONS(.in_features = 3136, .out_features = 10, .generator = &g));
    char *r = nn_module_repr(m);
    cr_assert_str_eq(r, "Linear(in_features=3136, out_features=10, bias=True)");
    free(r);
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, 2);
    cr_assert_str_eq(sd->items[0].name, "weight");
    cr_assert_str_eq(sd->items[1].name, "bias");
    nn_tensor_dict_free(sd);
    nn_linear_module *l = nn_as_linear(m);
    cr_assert_eq(l->weight->shape[0], 10);
    cr_assert_eq(l->weight->shape[1], 3136);

    /* Default init: everything within 1/sqrt(in_features), spread over the whole range. */
    double bound = 1.0 / sqrt(3136.0), mx = 0.0;
    for (int64_t i = 0; i < l->weight->numel; i++) {
        double v = fabs(tensor_data_f32(l->weight)[i]);
        cr_assert(v <= bound);
        mx = fmax(mx, v);
    }
    cr_assert(mx > 0.99 * bound);
    for (int64_t i = 0; i < 10; i++) cr_assert(fabs(tensor_data_f32(l->bias)[i]) <= bound);

    /* Forward over a (2, 3, 3136) input = the same rows through nnf_linear. */
    tensor *x = torch_randn(&g, TORCH_SHAPE(2, 3, 3136));
    tensor *y = nn_module_forward(m, x);
    cr_assert_eq(y->ndim, 3);
    cr_assert_eq(y->shape[2], 10);
    tensor *x2 = tensor_as_strided(x, 2, (int64_t[]){6, 3136}, (int64_t[]){3136, 1}, 0);
    tensor *y2 = nnf_linear(x2, l->weight, l->bias);
    cr_assert(memcmp(tensor_data_f32(y), tensor_data_f32(y2), 60 * sizeof(float)) == 0);
    tensor_free(x), tensor_free(x2), tensor_free(y), tensor_free(y2);
    nn_module_free(m);

    m = nn_linear(NN_LINEAR_OPTIONS(.in_features = 5, .out_features = 2, .bias = false));
    r = nn_module_repr(m);
    cr_assert_str_eq(r, "Linear(in_features=5, out_features=2, bias=False)");
    free(r);
    cr_assert_null(nn_as_linear(m)->bias);
    cr_assert_null(nn_module_get_parameter(m, "bias"));
    nn_module_free(m);
}
