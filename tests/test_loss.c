/* test_loss.c — nnf_cross_entropy, nnf_mse_loss and nnf_log_softmax.
 *
 * References: PyTorch 1.13 in float64 (tests/fixtures/layers.txt) for values and gradients, with
 * a non-unit upstream gradient and logits of size ~200 (stability); hand-computed values; central
 * finite differences (torch_gradcheck). Tolerance 1e-5, relative for |ref| > 1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"
#include "layer_fixtures.h"
#include "nn/loss.h"

TestSuite(loss);

#define TOL 1e-5

Test(loss, cross_entropy_matches_pytorch) {
    lfx_file *fx = lfx_load();
    const char *cases[] = {"ce_basic", "ce_large_logits"};
    for (int i = 0; i < 2; i++) {
        tensor *x = lfx_leaf(lfx_get(fx, cases[i], "x")), *t = lfx_tensor(lfx_get(fx, cases[i], "t"));
        tensor *loss = nnf_cross_entropy(x, t);
        cr_assert_not_null(loss, "%s", torch_last_error());
        cr_assert_eq(loss->ndim, 0);
        cr_assert_str_eq(ag_function_name(loss->grad_fn->fn), "NllLossBackward0");
        double el = lfx_expect_close(loss, lfx_get(fx, cases[i], "loss"), TOL, cases[i]);
        tensor *g = torch_scalar((float)lfx_get(fx, cases[i], "g")->values[0]);
        cr_assert_eq(tensor_backward(loss, g, false), TORCH_OK);
        double eg = lfx_expect_close(tensor_grad(x), lfx_get(fx, cases[i], "gx"), TOL, cases[i]);
        fprintf(stderr, "loss %-16s max err vs PyTorch: loss %.2e  dx %.2e\n", cases[i], el, eg);
        tensor_free(g), tensor_free(loss), tensor_free(t), tensor_free(x);
    }
    lfx_free(fx);
}

Test(loss, log_softmax_matches_pytorch) {
    lfx_file *fx = lfx_load();
    const char *cases[] = {"logsoftmax_dim1", "logsoftmax_dim0_3d"};
    for (int i = 0; i < 2; i++) {
        tensor *x = lfx_leaf(lfx_get(fx, cases[i], "x"));
        tensor *y = nnf_log_softmax(x, (int)lfx_get(fx, cases[i], "dim")->values[0]);
        double ey = lfx_expect_close(y, lfx_get(fx, cases[i], "y"), TOL, cases[i]);
        tensor *gy = lfx_tensor(lfx_get(fx, cases[i], "gy"));
        cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
        double eg = lfx_expect_close(tensor_grad(x), lfx_get(fx, cases[i], "gx"), TOL, cases[i]);
        fprintf(stderr, "loss %-18s max err vs PyTorch: y %.2e  dx %.2e\n", cases[i], ey, eg);
        tensor_free(gy), tensor_free(y), tensor_free(x);
    }
    lfx_free(fx);
}

Test(loss, mse_matches_pytorch) {
    lfx_file *fx = lfx_load();
    tensor *x = lfx_leaf(lfx_get(fx, "mse_basic", "x")), *t = lfx_leaf(lfx_get(fx, "mse_basic", "t"));
    tensor *loss = nnf_mse_loss(x, t);
    cr_assert_str_eq(ag_function_name(loss->grad_fn->fn), "MseLossBackward0");
    double el = lfx_expect_close(loss, lfx_get(fx, "mse_basic", "loss"), TOL, "mse");
    tensor *g = torch_scalar((float)lfx_get(fx, "mse_basic", "g")->values[0]);
    cr_assert_eq(tensor_backward(loss, g, false), TORCH_OK);
    double ex = lfx_expect_close(tensor_grad(x), lfx_get(fx, "mse_basic", "gx"), TOL, "mse dx");
    double et = lfx_expect_close(tensor_grad(t), lfx_get(fx, "mse_basic", "gt"), TOL, "mse dtarget");
    fprintf(stderr, "loss mse_basic         max err vs PyTorch: loss %.2e  dx %.2e  dtarget %.2e\n", el, ex, et);
    tensor_free(g), tensor_free(loss), tensor_free(t), tensor_free(x);
    lfx_free(fx);
}

/* Hand-computed: logits (0, ln 3) for class 1 -> softmax (1/4, 3/4), loss -ln(3/4);
 * one sample of a 1-D input with a 0-dim target gives the same. */
Test(loss, cross_entropy_by_hand) {
    float v[4] = {0.0f, (float)log(3.0), 1000.0f, 1000.0f};
    tensor *x = torch_tensor(v, TORCH_SHAPE(2, 2));
    tensor *t = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(2));
    tensor_data_i64(t)[0] = 1, tensor_data_i64(t)[1] = 0;
    tensor *loss = nnf_cross_entropy(x, t);
    /* row 2: two equal huge logits: log 2, finite (a naive exp would overflow) */
    cr_assert_float_eq(tensor_item(loss), (-log(0.75) + log(2.0)) / 2.0, 1e-6);
    tensor_free(loss);

    tensor *x1 = torch_tensor(v, TORCH_SHAPE(2));
    tensor *t1 = torch_scalar_int64(1);
    loss = nnf_cross_entropy(x1, t1);
    cr_assert_float_eq(tensor_item(loss), -log(0.75), 1e-6);
    tensor_free(loss), tensor_free(x1), tensor_free(t1), tensor_free(x), tensor_free(t);

    /* An empty batch gives NaN, like PyTorch's mean over nothing. */
    x = torch_empty(TORCH_SHAPE(0, 3));
    t = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(0));
    loss = nnf_cross_entropy(x, t);
    cr_assert(isnan(tensor_item(loss)));
    tensor_free(loss), tensor_free(x), tensor_free(t);
}

/* ---- finite differences ------------------------------------------------------------------------- */

static tensor *ce_fn(tensor *const *in, void *user) { return nnf_cross_entropy(in[0], user); }
static tensor *mse_fn(tensor *const *in, void *user) {
    (void)user;
    return nnf_mse_loss(in[0], in[1]);
}
static tensor *log_softmax_fn(tensor *const *in, void *user) { return nnf_log_softmax(in[0], *(int *)user); }

Test(loss, gradcheck) {
    torch_generator g = torch_generator_new(21);
    torch_gradcheck_result r;
    torch_gradcheck_options o = torch_gradcheck_options_default();

    tensor *x = torch_randn(&g, TORCH_SHAPE(5, 4));
    tensor *t = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(5));
    for (int i = 0; i < 5; i++) tensor_data_i64(t)[i] = (i * 3) % 4;
    tensor_set_requires_grad(x, true);
    cr_assert_eq(torch_gradcheck(ce_fn, t, 1, &x, NULL, o, &r), TORCH_OK, "cross_entropy: %s", r.message);
    fprintf(stderr, "loss gradcheck cross_entropy: max abs err %.2e\n", r.max_abs_err);

    tensor *y = torch_randn(&g, TORCH_SHAPE(5, 4));
    tensor_set_requires_grad(y, true);
    tensor *in[2] = {x, y};
    cr_assert_eq(torch_gradcheck(mse_fn, NULL, 2, in, NULL, o, &r), TORCH_OK, "mse_loss: %s", r.message);
    fprintf(stderr, "loss gradcheck mse_loss: max abs err %.2e\n", r.max_abs_err);

    for (int dim = -1; dim <= 0; dim++) {
        cr_assert_eq(torch_gradcheck(log_softmax_fn, &dim, 1, &x, NULL, o, &r), TORCH_OK, "log_softmax: %s", r.message);
        fprintf(stderr, "loss gradcheck log_softmax dim %d: max abs err %.2e\n", dim, r.max_abs_err);
    }
    tensor_free(x), tensor_free(y), tensor_free(t);
}

/* ---- errors ------------------------------------------------------------------------------------- */

static void expect_error(tensor *result, torch_status status, const char *message) {
    cr_assert_null(result);
    cr_assert_eq(torch_last_status(), status, "status %d: %s", torch_last_status(), torch_last_error());
    cr_assert(strstr(torch_last_error(), message), "expected \"%s\" in \"%s\"", message, torch_last_error());
}

Test(loss, errors) {
    tensor *x = torch_zeros(TORCH_SHAPE(3, 10));
    tensor_set_requires_grad(x, true);
    tensor *t = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(3));
    tensor_data_i64(t)[0] = 1, tensor_data_i64(t)[1] = 2, tensor_data_i64(t)[2] = 12;
    expect_error(nnf_cross_entropy(x, t), TORCH_ERR_INVALID_ARGUMENT, "nnf_cross_entropy: Target 12 is out of bounds.");
    tensor_data_i64(t)[2] = -1;
    expect_error(nnf_cross_entropy(x, t), TORCH_ERR_INVALID_ARGUMENT, "nnf_cross_entropy: Target -1 is out of bounds.");
    tensor *tf = torch_zeros(TORCH_SHAPE(3));
    expect_error(nnf_cross_entropy(x, tf), TORCH_ERR_INVALID_ARGUMENT, "expected scalar type Long but found Float");
    tensor *t2 = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(2));
    tensor_data_i64(t2)[0] = tensor_data_i64(t2)[1] = 0;
    expect_error(nnf_cross_entropy(x, t2), TORCH_ERR_SHAPE,
                 "nnf_cross_entropy: Expected input batch_size (3) to match target batch_size (2).");
    tensor *x4 = torch_zeros(TORCH_SHAPE(3, 10, 2, 2));
    expect_error(nnf_cross_entropy(x4, t), TORCH_ERR_SHAPE, "expected input of shape (N, C) or (C)");
    cr_assert_null(tensor_grad(x), "failed calls recorded nothing");
    expect_error(nnf_mse_loss(x, tf), TORCH_ERR_SHAPE, "nnf_mse_loss: expected target of the input's size [3, 10] (got [3])");
    expect_error(nnf_log_softmax(x, 2), TORCH_ERR_INVALID_ARGUMENT,
                 "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    tensor_free(x), tensor_free(x4), tensor_free(t), tensor_free(tf), tensor_free(t2);
}
