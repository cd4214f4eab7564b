/* test_batch_norm.c — BatchNorm1d/2d/3d and nnf_batch_norm: semantics, errors, state_dict, repr,
 * gradients (gradcheck and the composite reference), determinism.
 *
 * References: hand calculation (R torch's own test numbers), a per-channel float64 formula written
 * out in this file, finite differences (torch_gradcheck), and the composite implementation built
 * from autograd primitives. The PyTorch-generated fixtures are in test_batch_norm_fixtures.c. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"
#include "nn/batch_norm.h"
#include "tensor/parallel.h"

/* ---- helpers ------------------------------------------------------------------------------------- */

static tensor *vec(int64_t n, const float *v) { return torch_tensor(v, 1, &n); }

/* Parameters are written in place under no_grad, as in PyTorch. */
static void fill_param(tensor *t, double v) {
    bool grad_mode = torch_set_grad_enabled(false);
    cr_assert_eq(tensor_fill_(t, v), TORCH_OK, "%s", torch_last_error());
    torch_set_grad_enabled(grad_mode);
}

static void set_vec(tensor *t, const float *v) {
    tensor *src = vec(t->numel, v);
    bool grad_mode = torch_set_grad_enabled(false); /* t may be a parameter */
    cr_assert_eq(tensor_copy_(t, src), TORCH_OK);
    torch_set_grad_enabled(grad_mode);
    tensor_free(src);
}

/* All state (state_dict values, raw bytes, in order) as one malloc'ed block, for memcmp. */
static unsigned char *state_bytes(const nn_module *m, size_t *size) {
    nn_tensor_dict *sd = nn_module_state_dict(m);
    size_t total = 0;
    for (int64_t i = 0; i < sd->count; i++) total += (size_t)sd->items[i].value->numel * torch_dtype_size(sd->items[i].value->dtype);
    unsigned char *buf = malloc(total + 1), *p = buf;
    for (int64_t i = 0; i < sd->count; i++) {
        const tensor *t = sd->items[i].value;
        size_t n = (size_t)t->numel * torch_dtype_size(t->dtype);
        memcpy(p, t->dtype == TORCH_INT64 ? (void *)tensor_data_i64(t) : (void *)tensor_data_f32(t), n);
        p += n;
    }
    nn_tensor_dict_free(sd);
    *size = total;
    return buf;
}

static void assert_state_unchanged(const nn_module *m, const unsigned char *before, size_t size) {
    size_t now_size;
    unsigned char *now = state_bytes(m, &now_size);
    cr_assert_eq(now_size, size);
    cr_assert_eq(memcmp(now, before, size), 0, "a refused call changed the module's state");
    free(now);
}

static int64_t nbt(nn_module *m) { return *tensor_data_i64(nn_as_batch_norm(m)->num_batches_tracked); }

/* Per-channel reference in double, written out independently of the library:
 * y = (x - mean) / sqrt(var + eps) * w + b, var biased; stats from the batch or given. */
static void reference_bn(const float *x, int64_t N, int64_t C, int64_t S, const double *mean_in, const double *var_in,
                         const float *w, const float *b, double eps, double *y, double *batch_mean,
                         double *batch_var_unbiased) {
    for (int64_t c = 0; c < C; c++) {
        double sum = 0, ss = 0, M = (double)(N * S);
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
        double mu = sum / M;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) ss += (x[(n * C + c) * S + s] - mu) * (x[(n * C + c) * S + s] - mu);
        if (batch_mean) batch_mean[c] = mu;
        if (batch_var_unbiased) batch_var_unbiased[c] = ss / (M - 1);
        double m = mean_in ? mean_in[c] : mu, v = var_in ? var_in[c] : ss / M;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (n * C + c) * S + s;
                y[i] = (x[i] - m) / sqrt(v + eps) * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
            }
    }
}

static void assert_close_f(const float *a, const double *r, int64_t n, double tol, const char *what) {
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(a[i] - r[i]) <= tol * fmax(1.0, fabs(r[i])), "%s[%lld]: %.9g vs reference %.9g", what,
                  (long long)i, (double)a[i], r[i]);
}

static void assert_tensors_close(const tensor *a, const tensor *b, double tol, const char *what) {
    cr_assert(a && b, "%s: missing tensor", what);
    cr_assert(tensor_same_shape(a, b), "%s: shapes differ", what);
    const float *pa = tensor_data_f32(a), *pb = tensor_data_f32(b);
    for (int64_t i = 0; i < a->numel; i++)
        cr_assert(fabs(pa[i] - pb[i]) <= tol * fmax(1.0, fabs(pb[i])), "%s[%lld]: %.9g vs %.9g", what, (long long)i,
                  (double)pa[i], (double)pb[i]);
}

/* ---- R torch's reference numbers (follow from the formulas by hand) ----------------------------- */

Test(batch_norm, r_torch_running_stats_after_ten_steps) {
    /* ones(2,1,1,1): batch mean 1, variance 0, so running_mean = 1 - 0.9^10, running_var = 0.9^10 */
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 1));
    tensor *x = torch_ones(TORCH_SHAPE(2, 1, 1, 1));
    for (int i = 0; i < 10; i++) tensor_free(nn_module_forward(m, x));
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    cr_assert_float_eq(tensor_data_f32(bn->running_mean)[0], 0.6513, 1e-4);
    cr_assert_float_eq(tensor_data_f32(bn->running_var)[0], 0.3487, 1e-4);
    cr_assert_float_eq(tensor_data_f32(bn->running_mean)[0], 1 - pow(0.9, 10), 1e-6);
    cr_assert_float_eq(tensor_data_f32(bn->running_var)[0], pow(0.9, 10), 1e-6);
    cr_assert_eq(nbt(m), 10);
    nn_module_eval(m);
    tensor *y = nn_module_forward(m, x);
    cr_assert_float_eq(tensor_data_f32(y)[0], 0.5905, 1e-4); /* (1 - 0.6513) / sqrt(0.3487 + 1e-5) */
    cr_assert_eq(nbt(m), 10, "eval does not count batches");
    tensor_free(y);
    tensor_free(x);
    nn_module_free(m);
}

Test(batch_norm, r_torch_eval_with_eps_one) {
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 1, .eps = 1));
    nn_module_eval(m);
    tensor *x = torch_ones(TORCH_SHAPE(2, 1, 1, 1));
    tensor *y = nn_module_forward(m, x);
    cr_assert_float_eq(tensor_data_f32(y)[0], 0.7071, 1e-4); /* 1 / sqrt(1 + 1) */
    cr_assert_float_eq(tensor_data_f32(y)[1], 1 / sqrt(2.0), 1e-7);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(m);
}

Test(batch_norm, worked_example_from_docs) {
    /* docs/batch_norm.md, section "A worked example", by hand: x = [1, 2, 4, 5], eps = 1.5,
     * gamma = 2, beta = 1, dy = [1, 2, 0, -1]. mean 3, var 2.5, invstd 1/2, xhat = [-1, -1/2, 1/2, 1]. */
    nn_module *m = nn_batch_norm1d(NN_BATCH_NORM_OPTIONS(.num_features = 1, .eps = 1.5));
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    fill_param(bn->weight, 2.0);
    fill_param(bn->bias, 1.0);
    tensor *x = torch_tensor((const float[]){1, 2, 4, 5}, TORCH_SHAPE(4, 1));
    tensor *dy = torch_tensor((const float[]){1, 2, 0, -1}, TORCH_SHAPE(4, 1));
    tensor_set_requires_grad(x, true);
    tensor *y = nn_module_forward(m, x);
    cr_assert_eq(tensor_backward(y, dy, false), TORCH_OK);
    const float y_hand[4] = {-1, 0, 2, 3}, dx_hand[4] = {-0.25f, 1.125f, -0.125f, -0.75f};
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(tensor_data_f32(y)[i], y_hand[i], 1e-6);
        cr_assert_float_eq(tensor_data_f32(tensor_grad(x))[i], dx_hand[i], 1e-6);
    }
    cr_assert_float_eq(tensor_data_f32(tensor_grad(bn->weight))[0], -3.0, 1e-6); /* sum(dy * xhat) */
    cr_assert_float_eq(tensor_data_f32(tensor_grad(bn->bias))[0], 2.0, 1e-6);    /* sum(dy) */
    cr_assert_float_eq(tensor_data_f32(bn->running_mean)[0], 0.3, 1e-7);         /* 0.9 * 0 + 0.1 * 3 */
    cr_assert_float_eq(tensor_data_f32(bn->running_var)[0], 0.9 + 0.1 * 10.0 / 3, 1e-7); /* unbiased 10/3 */
    tensor_free(y);
    /* eval: dx = dy * gamma / sqrt(running_var + eps) = dy * 2 / sqrt(2.7333...) */
    nn_module_eval(m);
    nn_module_zero_grad(m);
    tensor_zero_grad(x);
    y = nn_module_forward(m, x);
    cr_assert_eq(tensor_backward(y, dy, false), TORCH_OK);
    const double k = 2 / sqrt(0.9 + 1.0 / 3 + 1.5);
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(tensor_data_f32(y)[i], ((i == 0 ? 1 : i == 1 ? 2 : i == 2 ? 4 : 5) - 0.3) * k + 1, 1e-6);
        cr_assert_float_eq(tensor_data_f32(tensor_grad(x))[i], tensor_data_f32(dy)[i] * k, 1e-6);
    }
    tensor_free(y);
    tensor_free(dy);
    tensor_free(x);
    nn_module_free(m);
}

/* ---- construction, options, downcast ------------------------------------------------------------ */

Test(batch_norm, seed_example_translates_line_for_line) {
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 100));
    cr_assert_not_null(m);
    nn_module_free(m);
    m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 100, .affine = false));
    tensor *input = torch_randn(NULL, TORCH_SHAPE(20, 100, 5, 4)); /* the seed's (20, 100, 35, 45), smaller */
    tensor *output = nn_module_forward(m, input);
    cr_assert_not_null(output);
    cr_assert(tensor_same_shape(output, input));
    cr_assert_null(nn_as_batch_norm(m)->weight);
    tensor_free(output);
    tensor_free(input);
    nn_module_free(m);
}

Test(batch_norm, defaults_and_initial_values) {
    nn_batch_norm_options d = nn_batch_norm_options_default(7), mac = NN_BATCH_NORM_OPTIONS(.num_features = 7);
    cr_assert(d.num_features == 7 && d.eps == 1e-5 && d.momentum == 0.1 && !d.cumulative_moving_average && d.affine &&
              d.track_running_stats);
    cr_assert(d.num_features == mac.num_features && d.eps == mac.eps && d.momentum == mac.momentum &&
                  d.cumulative_moving_average == mac.cumulative_moving_average && d.affine == mac.affine &&
                  d.track_running_stats == mac.track_running_stats,
              "the macro and the function give the same defaults");
    nn_module *m = nn_batch_norm2d(d);
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    cr_assert(m->training);
    cr_assert_eq(bn->dims, 2);
    for (int c = 0; c < 7; c++) {
        cr_assert_eq(tensor_data_f32(bn->weight)[c], 1.0f);
        cr_assert_eq(tensor_data_f32(bn->bias)[c], 0.0f);
        cr_assert_eq(tensor_data_f32(bn->running_mean)[c], 0.0f);
        cr_assert_eq(tensor_data_f32(bn->running_var)[c], 1.0f);
    }
    cr_assert(bn->weight->requires_grad && bn->bias->requires_grad);
    cr_assert(!bn->running_mean->requires_grad && !bn->running_var->requires_grad);
    cr_assert_eq(bn->num_batches_tracked->dtype, TORCH_INT64);
    cr_assert_eq(bn->num_batches_tracked->ndim, 0);
    cr_assert_eq(nbt(m), 0);
    cr_assert_eq(nn_module_get_parameter(m, "weight"), bn->weight);
    cr_assert_eq(nn_module_get_buffer(m, "running_var"), bn->running_var);
    nn_module_free(m);
}

static nn_module *other_forward_module(void);

Test(batch_norm, checked_downcast) {
    nn_module *m1 = nn_batch_norm1d(nn_batch_norm_options_default(2));
    nn_module *m3 = nn_batch_norm3d(nn_batch_norm_options_default(2));
    nn_module *other = other_forward_module();
    cr_assert_not_null(nn_as_batch_norm(m1));
    cr_assert_eq(nn_as_batch_norm(m3)->dims, 3);
    cr_assert_null(nn_as_batch_norm(other));
    cr_assert_null(nn_as_batch_norm(NULL));
    cr_assert_eq(nn_batch_norm_reset_running_stats(other), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_eq(nn_batch_norm_reset_parameters(NULL), TORCH_ERR_INVALID_ARGUMENT);
    nn_module_free(m1);
    nn_module_free(m3);
    nn_module_free(other);
}

Test(batch_norm, constructor_refuses_bad_options) {
    struct {
        nn_batch_norm_options o;
        const char *msg;
    } cases[] = {
        {NN_BATCH_NORM_OPTIONS(.num_features = 0), "BatchNorm2d: num_features must be > 0 (got 0)"},
        {NN_BATCH_NORM_OPTIONS(), "BatchNorm2d: num_features must be > 0 (got 0)"}, /* forgot num_features */
        {NN_BATCH_NORM_OPTIONS(.num_features = -3), "BatchNorm2d: num_features must be > 0 (got -3)"},
        {NN_BATCH_NORM_OPTIONS(.num_features = 4, .eps = 0), "BatchNorm2d: eps must be > 0 (got 0)"},
        {NN_BATCH_NORM_OPTIONS(.num_features = 4, .eps = -1e-5), "BatchNorm2d: eps must be > 0 (got -1e-05)"},
        {NN_BATCH_NORM_OPTIONS(.num_features = 4, .eps = NAN), "BatchNorm2d: eps must be > 0 (got nan)"},
        {NN_BATCH_NORM_OPTIONS(.num_features = 4, .momentum = 1.5), "BatchNorm2d: momentum must be in [0, 1] (got 1.5)"},
        {NN_BATCH_NORM_OPTIONS(.num_features = 4, .momentum = -0.1),
         "BatchNorm2d: momentum must be in [0, 1] (got -0.1)"},
        {NN_BATCH_NORM_OPTIONS(.num_features = 4, .momentum = NAN), "BatchNorm2d: momentum must be in [0, 1] (got nan)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        torch_clear_error();
        cr_assert_null(nn_batch_norm2d(cases[i].o));
        cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
        cr_assert_str_eq(torch_last_error(), cases[i].msg);
    }
    cr_assert_null(nn_batch_norm1d(NN_BATCH_NORM_OPTIONS(.num_features = 0)));
    cr_assert_str_eq(torch_last_error(), "BatchNorm1d: num_features must be > 0 (got 0)");
    cr_assert_null(nn_batch_norm3d(NN_BATCH_NORM_OPTIONS(.num_features = 2, .eps = 0)));
    cr_assert_str_eq(torch_last_error(), "BatchNorm3d: eps must be > 0 (got 0)");
    /* the momentum value does not matter with the cumulative average; momentum 0 and 1 are valid */
    nn_module *ok[3] = {nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 1, .momentum = 7,
                                                               .cumulative_moving_average = true)),
                        nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 1, .momentum = 0)),
                        nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 1, .momentum = 1))};
    for (int i = 0; i < 3; i++) {
        cr_assert_not_null(ok[i]);
        nn_module_free(ok[i]);
    }
}

/* ---- forward errors: message, status, and state bit-identical afterwards ------------------------- */

/* A BatchNorm2d(16) that has seen two batches, so that its state is not the initial one. */
static nn_module *trained_bn2d(int64_t C) {
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = C));
    torch_generator g = torch_generator_new(1);
    for (int i = 0; i < 2; i++) {
        tensor *x = torch_randn(&g, TORCH_SHAPE(3, C, 2, 2));
        tensor_free(nn_module_forward(m, x));
        tensor_free(x);
    }
    return m;
}

static void expect_forward_error(nn_module *m, tensor *x, torch_status status, const char *msg) {
    size_t size;
    unsigned char *before = state_bytes(m, &size);
    torch_clear_error();
    cr_assert_null(nn_module_forward(m, x), "expected \"%s\"", msg);
    cr_assert_eq(torch_last_status(), status, "status %d for \"%s\"", torch_last_status(), torch_last_error());
    cr_assert_str_eq(torch_last_error(), msg);
    assert_state_unchanged(m, before, size);
    free(before);
}

Test(batch_norm, forward_errors_leave_state_unchanged) {
    nn_module *m = trained_bn2d(16);
    cr_assert_eq(nbt(m), 2);
    tensor *x3 = torch_randn(NULL, TORCH_SHAPE(2, 16, 5));
    expect_forward_error(m, x3, TORCH_ERR_SHAPE, "BatchNorm2d: expected 4D input (got 3D input)");
    tensor *x5 = torch_randn(NULL, TORCH_SHAPE(2, 16, 1, 2, 2));
    expect_forward_error(m, x5, TORCH_ERR_SHAPE, "BatchNorm2d: expected 4D input (got 5D input)");
    tensor *x8 = torch_randn(NULL, TORCH_SHAPE(2, 8, 3, 3));
    expect_forward_error(m, x8, TORCH_ERR_SHAPE, "BatchNorm2d: expected input with 16 channels (got 8)");
    tensor *one = torch_randn(NULL, TORCH_SHAPE(1, 16, 1, 1));
    expect_forward_error(m, one, TORCH_ERR_SHAPE,
                         "BatchNorm2d: Expected more than 1 value per channel when training, got input size [1, 16, 1, 1]");
    tensor *ints = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(2, 16, 2, 2));
    expect_forward_error(m, ints, TORCH_ERR_INVALID_ARGUMENT, "BatchNorm2d: expected a float32 input (got int64)");
    expect_forward_error(m, NULL, TORCH_ERR_INVALID_ARGUMENT, "BatchNorm2d: input is NULL");
    /* options changed after construction are checked at forward time */
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    tensor *ok = torch_randn(NULL, TORCH_SHAPE(2, 16, 2, 2));
    bn->options.eps = 0;
    expect_forward_error(m, ok, TORCH_ERR_INVALID_ARGUMENT, "BatchNorm2d: eps must be > 0 (got 0)");
    bn->options.eps = 1e-5;
    bn->options.momentum = 2;
    expect_forward_error(m, ok, TORCH_ERR_INVALID_ARGUMENT, "BatchNorm2d: momentum must be in [0, 1] (got 2)");
    bn->options.momentum = 0.1;
    /* one value per channel is fine in eval with running statistics (no batch statistics needed) */
    nn_module_eval(m);
    tensor *y = nn_module_forward(m, one);
    cr_assert_not_null(y);
    tensor_free(y);
    cr_assert_eq(nbt(m), 2);
    tensor_free(ok);
    tensor_free(x3);
    tensor_free(x5);
    tensor_free(x8);
    tensor_free(one);
    tensor_free(ints);
    nn_module_free(m);
}

Test(batch_norm, one_value_per_channel_without_tracking_fails_in_eval_too) {
    /* batch statistics are used in eval when nothing is tracked, so M == 1 is refused there too */
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 3, .track_running_stats = false));
    nn_module_eval(m);
    tensor *one = torch_randn(NULL, TORCH_SHAPE(1, 3, 1, 1));
    expect_forward_error(m, one, TORCH_ERR_SHAPE,
                         "BatchNorm2d: Expected more than 1 value per channel when training, got input size [1, 3, 1, 1]");
    tensor_free(one);
    nn_module_free(m);
}

Test(batch_norm, batch_norm1d_and_3d_dimension_checks) {
    nn_module *m1 = nn_batch_norm1d(NN_BATCH_NORM_OPTIONS(.num_features = 4));
    nn_module *m3 = nn_batch_norm3d(NN_BATCH_NORM_OPTIONS(.num_features = 4));
    tensor *x1 = torch_randn(NULL, TORCH_SHAPE(6));
    tensor *x2 = torch_randn(NULL, TORCH_SHAPE(5, 4));
    tensor *x3 = torch_randn(NULL, TORCH_SHAPE(5, 4, 3));
    tensor *x4 = torch_randn(NULL, TORCH_SHAPE(2, 4, 3, 3));
    tensor *x5 = torch_randn(NULL, TORCH_SHAPE(2, 4, 2, 3, 3));
    tensor *one2 = torch_randn(NULL, TORCH_SHAPE(1, 4));
    tensor *one3 = torch_randn(NULL, TORCH_SHAPE(1, 4, 1));
    tensor *bad3 = torch_randn(NULL, TORCH_SHAPE(5, 3, 3));
    expect_forward_error(m1, x4, TORCH_ERR_SHAPE, "BatchNorm1d: expected 2D or 3D input (got 4D input)");
    expect_forward_error(m1, x1, TORCH_ERR_SHAPE, "BatchNorm1d: expected 2D or 3D input (got 1D input)");
    expect_forward_error(m1, bad3, TORCH_ERR_SHAPE, "BatchNorm1d: expected input with 4 channels (got 3)");
    expect_forward_error(m1, one2, TORCH_ERR_SHAPE,
                         "BatchNorm1d: Expected more than 1 value per channel when training, got input size [1, 4]");
    expect_forward_error(m1, one3, TORCH_ERR_SHAPE,
                         "BatchNorm1d: Expected more than 1 value per channel when training, got input size [1, 4, 1]");
    expect_forward_error(m3, x4, TORCH_ERR_SHAPE, "BatchNorm3d: expected 5D input (got 4D input)");
    tensor *y2 = nn_module_forward(m1, x2), *y3 = nn_module_forward(m1, x3), *y5 = nn_module_forward(m3, x5);
    cr_assert(y2 && y3 && y5);
    cr_assert(tensor_same_shape(y2, x2) && tensor_same_shape(y3, x3) && tensor_same_shape(y5, x5));
    cr_assert_eq(nbt(m1), 2);
    cr_assert_eq(nbt(m3), 1);
    tensor *t[] = {x1, x2, x3, x4, x5, one2, one3, bad3, y2, y3, y5};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) tensor_free(t[i]);
    nn_module_free(m1);
    nn_module_free(m3);
}

/* ---- the mode grid: {train, eval} x {affine} x {track_running_stats} ----------------------------- */

typedef struct grid_case {
    bool training, affine, track;
} grid_case;

ParameterizedTestParameters(batch_norm, mode_grid) {
    static grid_case cases[8];
    for (int i = 0; i < 8; i++) cases[i] = (grid_case){.training = i & 1, .affine = i & 2, .track = i & 4};
    return cr_make_param_array(grid_case, cases, 8);
}

ParameterizedTest(grid_case *p, batch_norm, mode_grid) {
    const int64_t N = 2, C = 3, S = 20;
    const float w[3] = {1.5f, 0.5f, -1.0f}, b[3] = {0.1f, 0.2f, -0.3f};
    const float rm0[3] = {0.5f, -1.0f, 2.0f}, rv0[3] = {2.0f, 0.5f, 1.5f};
    nn_module *m = nn_batch_norm2d(
        NN_BATCH_NORM_OPTIONS(.num_features = C, .momentum = 0.25, .affine = p->affine, .track_running_stats = p->track));
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    cr_assert_eq(bn->weight != NULL, p->affine);
    cr_assert_eq(bn->running_mean != NULL, p->track);
    if (p->affine) {
        set_vec(bn->weight, w);
        set_vec(bn->bias, b);
    }
    if (p->track) {
        set_vec(bn->running_mean, rm0);
        set_vec(bn->running_var, rv0);
    }
    nn_module_train(m, p->training);
    torch_generator g = torch_generator_new(42);
    tensor *x = torch_randn(&g, TORCH_SHAPE(2, 3, 4, 5));
    tensor_mul_scalar_(x, 2.0);
    tensor *y = nn_module_forward(m, x);
    cr_assert_not_null(y, "%s", torch_last_error());

    /* PyTorch's table: batch statistics iff training or not tracking; updates iff training and tracking */
    const bool batch_stats = p->training || !p->track, updates = p->training && p->track;
    double rm[3], rv[3], y_ref[120], mean[3], var_unbiased[3];
    for (int c = 0; c < 3; c++) {
        rm[c] = rm0[c];
        rv[c] = rv0[c];
    }
    reference_bn(tensor_data_f32(x), N, C, S, batch_stats ? NULL : rm, batch_stats ? NULL : rv,
                 p->affine ? w : NULL, p->affine ? b : NULL, 1e-5, y_ref, mean, var_unbiased);
    assert_close_f(tensor_data_f32(y), y_ref, 120, 1e-5, "y");
    if (p->track) {
        double rm_ref[3], rv_ref[3];
        for (int c = 0; c < 3; c++) {
            rm_ref[c] = updates ? 0.75 * rm[c] + 0.25 * mean[c] : rm[c];
            rv_ref[c] = updates ? 0.75 * rv[c] + 0.25 * var_unbiased[c] : rv[c];
        }
        assert_close_f(tensor_data_f32(bn->running_mean), rm_ref, 3, 1e-6, "running_mean");
        assert_close_f(tensor_data_f32(bn->running_var), rv_ref, 3, 1e-6, "running_var");
        cr_assert_eq(nbt(m), updates ? 1 : 0);
        if (!updates) { /* bit-identical, not just close */
            for (int c = 0; c < 3; c++) {
                cr_assert_eq(tensor_data_f32(bn->running_mean)[c], rm0[c]);
                cr_assert_eq(tensor_data_f32(bn->running_var)[c], rv0[c]);
            }
        }
    }
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, (p->affine ? 2 : 0) + (p->track ? 3 : 0));
    nn_tensor_dict_free(sd);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(m);
}

Test(batch_norm, no_grad_scope_does_not_stop_updates) {
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2));
    tensor *x = torch_randn(NULL, TORCH_SHAPE(4, 2, 3, 3));
    tensor_set_requires_grad(x, true);
    bool prev = torch_set_grad_enabled(false);
    tensor *y = nn_module_forward(m, x);
    torch_set_grad_enabled(prev);
    cr_assert_eq(nbt(m), 1, "the training flag decides, not the grad mode (PyTorch's rule)");
    cr_assert_neq(tensor_data_f32(nn_as_batch_norm(m)->running_mean)[0], 0.0f);
    cr_assert(!y->requires_grad && y->grad_fn == NULL, "no graph under no-grad");
    tensor_free(y);
    tensor_free(x);
    nn_module_free(m);
}

Test(batch_norm, cumulative_moving_average) {
    /* momentum=None: running stats = plain average of the per-batch statistics */
    nn_module *m = nn_batch_norm1d(NN_BATCH_NORM_OPTIONS(.num_features = 1, .cumulative_moving_average = true));
    const float batches[3][4] = {{1, 2, 3, 4}, {10, 10, 12, 12}, {-5, 5, -5, 5}};
    double means = 0, vars = 0;
    for (int i = 0; i < 3; i++) {
        tensor *x = torch_tensor(batches[i], TORCH_SHAPE(4, 1));
        tensor_free(nn_module_forward(m, x));
        tensor_free(x);
    }
    means = (2.5 + 11 + 0) / 3;
    vars = (5.0 / 3 + 4.0 / 3 + 100.0 / 3) / 3; /* unbiased: sum of squares / 3 */
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    cr_assert_float_eq(tensor_data_f32(bn->running_mean)[0], means, 1e-5);
    cr_assert_float_eq(tensor_data_f32(bn->running_var)[0], vars, 1e-5);
    cr_assert_eq(nbt(m), 3);
    nn_module_free(m);
}

Test(batch_norm, empty_batch_counts_but_changes_no_statistics) {
    /* PyTorch 1.13: output empty, running stats unchanged, num_batches_tracked += 1, zero grads */
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 3));
    tensor *x = torch_zeros(TORCH_SHAPE(0, 3, 4, 4));
    tensor *y = nn_module_forward(m, x);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->numel, 0);
    cr_assert_eq(nbt(m), 1);
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    cr_assert_eq(tensor_data_f32(bn->running_mean)[1], 0.0f);
    cr_assert_eq(tensor_data_f32(bn->running_var)[1], 1.0f);
    tensor *dy = torch_zeros(TORCH_SHAPE(0, 3, 4, 4));
    cr_assert_eq(tensor_backward(y, dy, false), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(tensor_data_f32(tensor_grad(bn->weight))[0], 0.0f);
    tensor_free(dy);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(m);
}

/* ---- numerics: large mean, determinism ----------------------------------------------------------- */

/* Max abs error of the normalised output of N(mean, 1) data against the float64 formula. */
static double normalise_error(double mean) {
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4, .affine = false));
    torch_generator g = torch_generator_new(7);
    tensor *x = torch_randn(&g, TORCH_SHAPE(8, 4, 6, 6));
    float *p = tensor_data_f32(x);
    for (int64_t i = 0; i < x->numel; i++) p[i] = (float)(p[i] + mean);
    tensor *y = nn_module_forward(m, x);
    double *ref = malloc((size_t)x->numel * sizeof *ref), worst = 0;
    reference_bn(p, 8, 4, 36, NULL, NULL, NULL, NULL, 1e-5, ref, NULL, NULL);
    for (int64_t i = 0; i < x->numel; i++) worst = fmax(worst, fabs(tensor_data_f32(y)[i] - ref[i]));
    free(ref);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(m);
    return worst;
}

Test(batch_norm, large_mean_normalises_as_accurately_as_mean_zero) {
    double e0 = normalise_error(0.0), e4 = normalise_error(1e4);
    fprintf(stderr, "large mean: normalised output, max abs error vs float64: mean 0: %.3e, mean 1e4: %.3e\n", e0, e4);
    cr_assert_lt(e0, 1e-6);
    cr_assert_lt(e4, 1e-6, "mean 1e4: error %.3e (mean 0: %.3e)", e4, e0);
}

Test(batch_norm, results_do_not_depend_on_thread_count) {
    /* big enough to take the OpenMP path */
    torch_generator g = torch_generator_new(3);
    tensor *x = torch_randn(&g, TORCH_SHAPE(8, 32, 16, 16));
    tensor *dy = torch_randn(&g, TORCH_SHAPE(8, 32, 16, 16));
    tensor *out[2][4] = {{0}};
    int threads[2] = {1, 4}, saved = torch_get_num_threads();
    for (int t = 0; t < 2; t++) {
        torch_set_num_threads(threads[t]);
        nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 32));
        nn_batch_norm_module *bn = nn_as_batch_norm(m);
        tensor *xi = tensor_clone(x);
        tensor_set_requires_grad(xi, true);
        tensor *y = nn_module_forward(m, xi);
        cr_assert_eq(tensor_backward(y, dy, false), TORCH_OK);
        out[t][0] = y;
        out[t][1] = tensor_clone(tensor_grad(xi));
        out[t][2] = tensor_clone(tensor_grad(bn->weight));
        out[t][3] = tensor_clone(bn->running_var);
        tensor_free(xi);
        nn_module_free(m);
    }
    torch_set_num_threads(saved);
    for (int q = 0; q < 4; q++) {
        cr_assert_eq(memcmp(tensor_data_f32(out[0][q]), tensor_data_f32(out[1][q]), (size_t)out[0][q]->numel * 4), 0,
                     "quantity %d differs between 1 and 4 threads", q);
        tensor_free(out[0][q]);
        tensor_free(out[1][q]);
    }
    tensor_free(dy);
    tensor_free(x);
}

/* ---- gradients ---------------------------------------------------------------------------------- */

typedef struct bn_call {
    bool    training, composite;
    tensor *running_mean, *running_var; /* eval only; momentum 0 keeps them fixed anyway */
} bn_call;

static tensor *bn_fn(tensor *const *in, void *user) {
    const bn_call *u = user;
    tensor *(*f)(tensor *, tensor *, tensor *, tensor *, tensor *, bool, double, double) =
        u->composite ? nnf_batch_norm_composite : nnf_batch_norm;
    return f(in[0], u->training ? NULL : u->running_mean, u->training ? NULL : u->running_var, in[1], in[2],
             u->training, 0.0, 1e-5);
}

/* x (2, 3, 2, 3) with per-channel offsets, weight, bias, all requiring grad. */
static void make_inputs(tensor **in, uint64_t seed) {
    torch_generator g = torch_generator_new(seed);
    in[0] = torch_randn(&g, TORCH_SHAPE(2, 3, 2, 3));
    float *p = tensor_data_f32(in[0]);
    for (int64_t i = 0; i < in[0]->numel; i++) p[i] = p[i] * 1.5f + (float)((i / 6) % 3) - 1.0f;
    in[1] = torch_tensor((const float[]){1.2f, -0.7f, 0.9f}, TORCH_SHAPE(3));
    in[2] = torch_tensor((const float[]){0.3f, -0.1f, 0.5f}, TORCH_SHAPE(3));
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(in[i], true);
}

static void run_gradcheck(bool training, bool composite) {
    tensor *in[3];
    make_inputs(in, 11);
    tensor *rm = torch_tensor((const float[]){0.2f, -0.4f, 0.1f}, TORCH_SHAPE(3));
    tensor *rv = torch_tensor((const float[]){1.5f, 0.8f, 2.0f}, TORCH_SHAPE(3));
    bn_call u = {.training = training, .composite = composite, .running_mean = rm, .running_var = rv};
    torch_gradcheck_result r;
    torch_status st = torch_gradcheck(bn_fn, &u, 3, in, (const char *const[]){"input", "weight", "bias"},
                                      torch_gradcheck_options_default(), &r);
    fprintf(stderr, "gradcheck %s %s: max abs err %.3e, max rel err %.3e\n", composite ? "composite" : "fused",
                training ? "train" : "eval", r.max_abs_err, r.max_rel_err);
    cr_assert_eq(st, TORCH_OK, "%s", r.message);
    cr_assert(r.passed);
    for (int i = 0; i < 3; i++) tensor_free(in[i]);
    tensor_free(rm);
    tensor_free(rv);
}

Test(batch_norm, gradcheck_train) { run_gradcheck(true, false); }
Test(batch_norm, gradcheck_eval) { run_gradcheck(false, false); }
Test(batch_norm, gradcheck_composite_train) { run_gradcheck(true, true); }
Test(batch_norm, gradcheck_composite_eval) { run_gradcheck(false, true); }

/* Fused and composite agree on y, dx, dweight, dbias and the running-stat update. */
static void compare_with_composite(bool training, bool affine) {
    tensor *a[3], *b[3];
    make_inputs(a, 5);
    make_inputs(b, 5);
    tensor *rm[2], *rv[2];
    for (int i = 0; i < 2; i++) {
        rm[i] = torch_tensor((const float[]){0.2f, -0.4f, 0.1f}, TORCH_SHAPE(3));
        rv[i] = torch_tensor((const float[]){1.5f, 0.8f, 2.0f}, TORCH_SHAPE(3));
    }
    tensor *ya = nnf_batch_norm(a[0], rm[0], rv[0], affine ? a[1] : NULL, affine ? a[2] : NULL, training, 0.3, 1e-5);
    tensor *yb = nnf_batch_norm_composite(b[0], rm[1], rv[1], affine ? b[1] : NULL, affine ? b[2] : NULL, training,
                                          0.3, 1e-5);
    cr_assert(ya && yb, "%s", torch_last_error());
    cr_assert_str_eq(ag_function_name(ya->grad_fn->fn), "NativeBatchNormBackward0", "one fused node");
    tensor *dy = torch_randn(NULL, TORCH_SHAPE(2, 3, 2, 3));
    cr_assert_eq(tensor_backward(ya, dy, false), TORCH_OK);
    cr_assert_eq(tensor_backward(yb, dy, false), TORCH_OK, "%s", torch_last_error());
    assert_tensors_close(ya, yb, 1e-5, "y");
    assert_tensors_close(tensor_grad(a[0]), tensor_grad(b[0]), 1e-5, "dx");
    if (affine) {
        assert_tensors_close(tensor_grad(a[1]), tensor_grad(b[1]), 1e-5, "dweight");
        assert_tensors_close(tensor_grad(a[2]), tensor_grad(b[2]), 1e-5, "dbias");
    }
    assert_tensors_close(rm[0], rm[1], 1e-6, "running_mean");
    assert_tensors_close(rv[0], rv[1], 1e-6, "running_var");
    tensor *t[] = {ya, yb, dy, rm[0], rm[1], rv[0], rv[1], a[0], a[1], a[2], b[0], b[1], b[2]};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) tensor_free(t[i]);
}

Test(batch_norm, fused_equals_composite_train) { compare_with_composite(true, true); }
Test(batch_norm, fused_equals_composite_eval) { compare_with_composite(false, true); }
Test(batch_norm, fused_equals_composite_train_no_affine) { compare_with_composite(true, false); }
Test(batch_norm, fused_equals_composite_eval_no_affine) { compare_with_composite(false, false); }

Test(batch_norm, gradients_accumulate_and_only_needed_ones_are_made) {
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 3));
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    torch_generator g = torch_generator_new(9);
    tensor *x = torch_randn(&g, TORCH_SHAPE(2, 3, 2, 2)); /* does not require grad */
    tensor *dy = torch_randn(&g, TORCH_SHAPE(2, 3, 2, 2));
    tensor *y1 = nn_module_forward(m, x);
    cr_assert_eq(tensor_backward(y1, dy, false), TORCH_OK);
    cr_assert_null(tensor_grad(x));
    tensor *g1 = tensor_clone(tensor_grad(bn->weight)), *b1 = tensor_clone(tensor_grad(bn->bias));
    nn_module_eval(m); /* a different graph, same parameters: gradients add up (+=) */
    tensor *y2 = nn_module_forward(m, x);
    cr_assert_eq(tensor_backward(y2, dy, false), TORCH_OK);
    /* dbias = sum(dy) in both modes, so it doubles exactly */
    for (int c = 0; c < 3; c++) cr_assert_float_eq(tensor_data_f32(tensor_grad(bn->bias))[c], 2 * tensor_data_f32(b1)[c], 1e-5);
    cr_assert(fabsf(tensor_data_f32(tensor_grad(bn->weight))[0] - tensor_data_f32(g1)[0]) > 1e-6);
    cr_assert_eq(tensor_backward(y2, dy, false), TORCH_ERR_INVALID_STATE, "the graph is freed after backward");
    nn_module_zero_grad(m);
    cr_assert_null(tensor_grad(bn->weight));
    tensor *t[] = {x, dy, y1, y2, g1, b1};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) tensor_free(t[i]);
    nn_module_free(m);
}

/* ---- the functional API ---------------------------------------------------------------------------- */

Test(batch_norm, functional_checks) {
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 3, 4));
    tensor *v3 = torch_ones(TORCH_SHAPE(3)), *v4 = torch_ones(TORCH_SHAPE(4)), *x1 = torch_ones(TORCH_SHAPE(3));
    tensor *v31 = torch_ones(TORCH_SHAPE(3, 1));
    struct {
        tensor *in, *rm, *rv, *w, *b;
        bool training;
        double momentum, eps;
        const char *msg;
    } cases[] = {
        {x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5, "nnf_batch_norm: running_mean must be defined in evaluation mode"},
        {x, v4, v4, NULL, NULL, true, 0.1, 1e-5, "nnf_batch_norm: running_mean should contain 3 elements not 4"},
        {x, NULL, NULL, v4, NULL, true, 0.1, 1e-5, "nnf_batch_norm: weight should contain 3 elements not 4"},
        {x, v31, v3, NULL, NULL, true, 0.1, 1e-5,
         "nnf_batch_norm: running_mean should be 1-dimensional with 3 elements (got shape [3, 1])"},
        {x, NULL, NULL, v3, v4, true, 0.1, 1e-5, "nnf_batch_norm: bias should contain 3 elements not 4"},
        {x, v3, NULL, NULL, NULL, true, 0.1, 1e-5,
         "nnf_batch_norm: running_mean and running_var must both be given or both be NULL"},
        {x, v3, v3, NULL, NULL, true, -0.5, 1e-5, "nnf_batch_norm: momentum must be in [0, 1] (got -0.5)"},
        {x, v3, v3, NULL, NULL, true, 0.1, -1, "nnf_batch_norm: eps must be >= 0 and finite (got -1)"},
        {x1, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, "nnf_batch_norm: Expected at least 2 input dimensions, but got 1"},
        {NULL, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, "nnf_batch_norm: input is NULL"},
    };
    float before[3];
    memcpy(before, tensor_data_f32(v3), sizeof before);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        torch_clear_error();
        cr_assert_null(nnf_batch_norm(cases[i].in, cases[i].rm, cases[i].rv, cases[i].w, cases[i].b, cases[i].training,
                                      cases[i].momentum, cases[i].eps));
        cr_assert_str_eq(torch_last_error(), cases[i].msg);
        cr_assert_eq(memcmp(before, tensor_data_f32(v3), sizeof before), 0);
    }
    /* eps = 0 with a constant channel: ATen's guard gives invstd 0, not NaN */
    tensor *c = torch_ones(TORCH_SHAPE(4, 3));
    tensor *y = nnf_batch_norm(c, NULL, NULL, NULL, NULL, true, 0.1, 0.0);
    cr_assert_not_null(y);
    cr_assert_eq(tensor_data_f32(y)[5], 0.0f);
    tensor_free(y);
    /* a non-contiguous input (a transposed view) gives the same result as its contiguous copy */
    tensor *base = torch_randn(NULL, TORCH_SHAPE(3, 5));
    tensor *view = tensor_as_strided(base, 2, (const int64_t[]){5, 3}, (const int64_t[]){1, 5}, 0);
    tensor *copy = tensor_clone(view);
    tensor *yv = nnf_batch_norm(view, NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
    tensor *yc = nnf_batch_norm(copy, NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
    cr_assert_eq(memcmp(tensor_data_f32(yv), tensor_data_f32(yc), 15 * sizeof(float)), 0);
    tensor *t[] = {x, v3, v4, v31, x1, c, base, view, copy, yv, yc};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) tensor_free(t[i]);
}

/* ---- state_dict, load_state_dict ------------------------------------------------------------------ */

static void assert_keys(const nn_module *m, int n, const char *const *keys) {
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, n);
    for (int i = 0; i < n; i++) cr_assert_str_eq(sd->items[i].name, keys[i]);
    nn_tensor_dict_free(sd);
}

Test(batch_norm, state_dict_keys_match_pytorch) {
    nn_module *d = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4));
    nn_module *na = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4, .affine = false));
    nn_module *nt = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4, .track_running_stats = false));
    nn_module *none = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4, .affine = false, .track_running_stats = false));
    assert_keys(d, 5, (const char *[]){"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
    assert_keys(na, 3, (const char *[]){"running_mean", "running_var", "num_batches_tracked"});
    assert_keys(nt, 2, (const char *[]){"weight", "bias"});
    assert_keys(none, 0, NULL);
    nn_tensor_dict *p = nn_module_named_parameters(d);
    cr_assert_eq(p->count, 2, "buffers are not parameters (an optimizer never sees them)");
    nn_tensor_dict_free(p);
    nn_module_free(d);
    nn_module_free(na);
    nn_module_free(nt);
    nn_module_free(none);
}

Test(batch_norm, load_state_dict_round_trip) {
    nn_module *a = trained_bn2d(4), *b = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4));
    set_vec(nn_as_batch_norm(a)->weight, (const float[]){2, 3, 4, 5});
    nn_tensor_dict *sd = nn_module_state_dict(a);
    cr_assert_eq(nn_module_load_state_dict(b, sd, true), TORCH_OK);
    size_t sa, sb;
    unsigned char *ba = state_bytes(a, &sa), *bb = state_bytes(b, &sb);
    cr_assert(sa == sb && memcmp(ba, bb, sa) == 0);
    cr_assert_eq(nbt(b), 2);
    /* same state, same eval output */
    nn_module_eval(a);
    nn_module_eval(b);
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 4, 3, 3));
    tensor *ya = nn_module_forward(a, x), *yb = nn_module_forward(b, x);
    cr_assert_eq(memcmp(tensor_data_f32(ya), tensor_data_f32(yb), (size_t)ya->numel * 4), 0);
    tensor *t[] = {x, ya, yb};
    for (size_t i = 0; i < 3; i++) tensor_free(t[i]);
    free(ba);
    free(bb);
    nn_tensor_dict_free(sd);
    nn_module_free(a);
    nn_module_free(b);
}

/* A copy of m's state_dict without `drop` (NULL: drop nothing). */
static nn_tensor_dict *state_dict_without(const nn_module *m, const char *drop) {
    nn_tensor_dict *sd = nn_module_state_dict(m), *d = nn_tensor_dict_new();
    for (int64_t i = 0; i < sd->count; i++)
        if (!drop || strcmp(sd->items[i].name, drop) != 0) {
            tensor *copy = tensor_clone(sd->items[i].value);
            nn_tensor_dict_set(d, sd->items[i].name, copy);
            tensor_free(copy);
        }
    nn_tensor_dict_free(sd);
    return d;
}

static void expect_load_error(nn_module *m, const nn_tensor_dict *d, bool strict, const char *msg) {
    size_t size;
    unsigned char *before = state_bytes(m, &size);
    torch_clear_error();
    cr_assert_eq(nn_module_load_state_dict(m, d, strict), TORCH_ERR_KEY);
    cr_assert_str_eq(torch_last_error(), msg);
    assert_state_unchanged(m, before, size);
    free(before);
}

Test(batch_norm, load_state_dict_errors_change_nothing) {
    nn_module *src = trained_bn2d(16), *m = trained_bn2d(16);
    fill_param(nn_as_batch_norm(m)->weight, 3.0); /* differs from src */
    nn_tensor_dict *missing = state_dict_without(src, "running_var");
    expect_load_error(m, missing, true, "load_state_dict: missing key \"running_var\"");

    nn_tensor_dict *extra = state_dict_without(src, NULL);
    tensor *one = torch_scalar(1.0f);
    nn_tensor_dict_set(extra, "running_std", one);
    expect_load_error(m, extra, true, "load_state_dict: unexpected key \"running_std\"");

    nn_module *small = trained_bn2d(8);
    nn_tensor_dict *wrong = state_dict_without(small, NULL);
    expect_load_error(m, wrong, true, "load_state_dict: size mismatch for \"weight\": checkpoint [8], model [16]");
    expect_load_error(m, wrong, false, "load_state_dict: size mismatch for \"weight\": checkpoint [8], model [16]");

    /* non-strict: the unexpected key is ignored, the rest loads */
    cr_assert_eq(nn_module_load_state_dict(m, extra, false), TORCH_OK);
    cr_assert_eq(tensor_data_f32(nn_as_batch_norm(m)->weight)[0], 1.0f);
    tensor_free(one);
    nn_tensor_dict_free(missing);
    nn_tensor_dict_free(extra);
    nn_tensor_dict_free(wrong);
    nn_module_free(small);
    nn_module_free(src);
    nn_module_free(m);
}

Test(batch_norm, missing_num_batches_tracked_loads_as_zero) {
    /* old checkpoints (PyTorch < 0.4.1) have no num_batches_tracked: PyTorch 1.13 and R torch load 0 */
    nn_module *src = trained_bn2d(4), *m = trained_bn2d(4);
    cr_assert_eq(nbt(m), 2);
    nn_tensor_dict *old = state_dict_without(src, "num_batches_tracked");
    cr_assert_eq(nn_module_load_state_dict(m, old, true), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(nbt(m), 0);
    nn_tensor_dict_free(old);
    nn_module_free(src);
    nn_module_free(m);
}

/* ---- reset functions, repr ------------------------------------------------------------------------ */

Test(batch_norm, reset_running_stats_and_parameters) {
    nn_module *m = trained_bn2d(3);
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    fill_param(bn->weight, 2.0);
    fill_param(bn->bias, -1.0);
    cr_assert_eq(nn_batch_norm_reset_running_stats(m), TORCH_OK);
    for (int c = 0; c < 3; c++) {
        cr_assert_eq(tensor_data_f32(bn->running_mean)[c], 0.0f);
        cr_assert_eq(tensor_data_f32(bn->running_var)[c], 1.0f);
        cr_assert_eq(tensor_data_f32(bn->weight)[c], 2.0f, "reset_running_stats leaves the parameters");
    }
    cr_assert_eq(nbt(m), 0);
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 3, 2, 2));
    tensor_free(nn_module_forward(m, x));
    cr_assert_eq(nn_module_reset_parameters(m, NULL), TORCH_OK); /* the generic entry point */
    for (int c = 0; c < 3; c++) {
        cr_assert_eq(tensor_data_f32(bn->running_mean)[c], 0.0f);
        cr_assert_eq(tensor_data_f32(bn->running_var)[c], 1.0f);
        cr_assert_eq(tensor_data_f32(bn->weight)[c], 1.0f);
        cr_assert_eq(tensor_data_f32(bn->bias)[c], 0.0f);
    }
    cr_assert_eq(nbt(m), 0);
    nn_module *bare = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 3, .affine = false, .track_running_stats = false));
    cr_assert_eq(nn_batch_norm_reset_parameters(bare), TORCH_OK, "nothing to reset is fine");
    nn_module_free(bare);
    tensor_free(x);
    nn_module_free(m);
}

static void expect_repr(nn_module *m, const char *expected) {
    cr_assert_not_null(m);
    char *s = nn_module_repr(m);
    cr_assert_str_eq(s, expected);
    free(s);
    nn_module_free(m);
}

Test(batch_norm, repr_like_pytorch) {
    /* strings as printed by PyTorch 1.13 for the same constructors */
    expect_repr(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 100)),
                "BatchNorm2d(100, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
    expect_repr(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 3, .eps = 1e-3, .affine = false,
                                                      .cumulative_moving_average = true)),
                "BatchNorm2d(3, eps=0.001, momentum=None, affine=False, track_running_stats=True)");
    expect_repr(nn_batch_norm1d(NN_BATCH_NORM_OPTIONS(.num_features = 8, .momentum = 0.5, .track_running_stats = false)),
                "BatchNorm1d(8, eps=1e-05, momentum=0.5, affine=True, track_running_stats=False)");
    expect_repr(nn_batch_norm3d(NN_BATCH_NORM_OPTIONS(.num_features = 2, .eps = 1e-4, .momentum = 1)),
                "BatchNorm3d(2, eps=0.0001, momentum=1.0, affine=True, track_running_stats=True)");
    expect_repr(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2, .eps = 2.5e-7, .momentum = 0)),
                "BatchNorm2d(2, eps=2.5e-07, momentum=0.0, affine=True, track_running_stats=True)");
    expect_repr(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2, .eps = 1e16, .momentum = 0.3)),
                "BatchNorm2d(2, eps=1e+16, momentum=0.3, affine=True, track_running_stats=True)");
    expect_repr(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2, .eps = 123.456)),
                "BatchNorm2d(2, eps=123.456, momentum=0.1, affine=True, track_running_stats=True)");
}

/* ---- inside a parent module -------------------------------------------------------------------- */

/* "Net": bn1 then bn2, the way a user writes a small container. */
static tensor *net_forward(nn_module *self, tensor *input) {
    tensor *h = nn_module_forward(nn_module_get_child(self, "bn1"), input);
    if (!h) return NULL;
    tensor *y = nn_module_forward(nn_module_get_child(self, "bn2"), h);
    tensor_free(h);
    return y;
}

static const nn_module_ops net_ops = {.type_name = "Net", .forward = net_forward};

static nn_module *net_new(int64_t C) {
    nn_module *net = calloc(1, sizeof *net);
    nn_module_init(net, &net_ops);
    cr_assert_not_null(nn_module_register_module(net, "bn1", nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = C))));
    cr_assert_not_null(nn_module_register_module(
        net, "bn2", nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = C, .affine = false))));
    return net;
}

static nn_module *other_forward_module(void) { return net_new(2); }

Test(batch_norm, children_keys_modes_and_repr) {
    nn_module *net = net_new(4);
    assert_keys(net, 8,
                (const char *[]){"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                                 "bn1.num_batches_tracked", "bn2.running_mean", "bn2.running_var",
                                 "bn2.num_batches_tracked"});
    nn_module *bn1 = nn_module_get_child(net, "bn1"), *bn2 = nn_module_get_child(net, "bn2");
    cr_assert_eq(nn_module_get_parameter(net, "bn1.weight"), nn_as_batch_norm(bn1)->weight);
    cr_assert_eq(nn_module_get_buffer(net, "bn2.running_var"), nn_as_batch_norm(bn2)->running_var);
    tensor *x = torch_randn(NULL, TORCH_SHAPE(3, 4, 2, 2));
    tensor *y = nn_module_forward(net, x);
    cr_assert_eq(nbt(bn1), 1);
    cr_assert_eq(nbt(bn2), 1);
    tensor_free(y);
    nn_module_eval(net);
    cr_assert(!bn1->training && !bn2->training, "eval reaches the children");
    y = nn_module_forward(net, x);
    cr_assert_eq(nbt(bn1), 1);
    cr_assert_eq(nbt(bn2), 1);
    tensor_free(y);
    nn_module_train(net, true);
    cr_assert(bn1->training && bn2->training);
    char *s = nn_module_repr(net);
    cr_assert_str_eq(s, "Net(\n"
                        "  (bn1): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
                        "  (bn2): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=False, track_running_stats=True)\n"
                        ")");
    free(s);
    /* an old checkpoint of the whole net: both counters load as 0 */
    nn_tensor_dict *sd = nn_module_state_dict(net), *old = nn_tensor_dict_new();
    for (int64_t i = 0; i < sd->count; i++)
        if (!strstr(sd->items[i].name, "num_batches_tracked")) nn_tensor_dict_set(old, sd->items[i].name, sd->items[i].value);
    cr_assert_eq(nn_module_load_state_dict(net, old, true), TORCH_OK);
    cr_assert_eq(nbt(bn1), 0);
    cr_assert_eq(nbt(bn2), 0);
    /* a missing child key is reported with its dotted name */
    nn_tensor_dict *partial = nn_tensor_dict_new();
    for (int64_t i = 0; i < sd->count; i++)
        if (strcmp(sd->items[i].name, "bn2.running_var") != 0) nn_tensor_dict_set(partial, sd->items[i].name, sd->items[i].value);
    expect_load_error(net, partial, true, "load_state_dict: missing key \"bn2.running_var\"");
    nn_tensor_dict_free(partial);
    nn_tensor_dict_free(old);
    nn_tensor_dict_free(sd);
    tensor_free(x);
    nn_module_free(net);
}

/* ---- num_batches_tracked at the ends of int64 --------------------------------------------------- */

/* A state_dict of bn with num_batches_tracked replaced by value. */
static nn_tensor_dict *with_count(nn_module *m, int64_t value) {
    nn_tensor_dict *own = nn_module_state_dict(m), *d = nn_tensor_dict_new();
    for (int64_t i = 0; i < own->count; i++) {
        bool count = strcmp(own->items[i].name, "num_batches_tracked") == 0;
        tensor *t = count ? torch_scalar_int64(value) : tensor_clone(own->items[i].value);
        cr_assert_eq(nn_tensor_dict_set(d, own->items[i].name, t), TORCH_OK);
        tensor_free(t);
    }
    nn_tensor_dict_free(own);
    return d;
}

Test(batch_norm, a_negative_num_batches_tracked_is_refused_at_load) {
    nn_module *m = trained_bn2d(3);
    size_t n0, n1;
    unsigned char *before = state_bytes(m, &n0);
    nn_tensor_dict *d = with_count(m, -5);
    cr_assert_eq(nn_module_load_state_dict(m, d, true), TORCH_ERR_FORMAT);
    cr_assert_str_eq(torch_last_error(),
                     "load_state_dict: \"num_batches_tracked\" must be >= 0 (a count of batches), got -5");
    unsigned char *after = state_bytes(m, &n1);
    cr_assert(n0 == n1 && memcmp(before, after, n0) == 0, "a refused load changes nothing");
    /* Written by hand instead: the next training forward refuses, naming the buffer. */
    bool grad_mode = torch_set_grad_enabled(false);
    cr_assert_eq(tensor_fill_(nn_as_batch_norm(m)->num_batches_tracked, -1.0), TORCH_OK);
    torch_set_grad_enabled(grad_mode);
    nn_as_batch_norm(m)->options.cumulative_moving_average = true;
    tensor *x = torch_randn(NULL, TORCH_SHAPE(4, 3, 2, 2));
    cr_assert_null(nn_module_forward(m, x));
    cr_assert(strstr(torch_last_error(), "BatchNorm2d: num_batches_tracked is -1, expected a count >= 0"), "%s",
              torch_last_error());
    tensor_free(x);
    free(before), free(after);
    nn_tensor_dict_free(d);
    nn_module_free(m);
}

Test(batch_norm, num_batches_tracked_saturates_at_int64_max) {
    /* INT64_MAX loads; training then neither overflows (undefined behaviour) nor fails: the count
     * stays at INT64_MAX and the cumulative average's factor is 1 / 2^63, about 1.1e-19. */
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2, .cumulative_moving_average = true));
    nn_tensor_dict *d = with_count(m, INT64_MAX - 1);
    cr_assert_eq(nn_module_load_state_dict(m, d, true), TORCH_OK, "%s", torch_last_error());
    tensor *x = torch_randn(NULL, TORCH_SHAPE(4, 2, 3, 3));
    for (int step = 0; step < 3; step++) {
        tensor *y = nn_module_forward(m, x);
        cr_assert_not_null(y, "step %d: %s", step, torch_last_error());
        tensor_free(y);
        cr_assert_eq(nbt(m), INT64_MAX);
    }
    /* The running statistics barely move: (1 - 2^-63) * old + 2^-63 * batch, so running_mean
     * (0 before) is about 1e-19 * the batch mean, and running_var (1 before) rounds to 1. */
    for (int c = 0; c < 2; c++) {
        cr_assert_lt(fabsf(tensor_data_f32(nn_as_batch_norm(m)->running_mean)[c]), 1e-17f);
        cr_assert_eq(tensor_data_f32(nn_as_batch_norm(m)->running_var)[c], 1.0f);
    }
    tensor_free(x);
    nn_tensor_dict_free(d);
    nn_module_free(m);
}

Test(batch_norm, a_training_forward_is_an_inplace_write_of_the_running_statistics) {
    /* PyTorch: a graph that saved running_mean refuses to backward after a training forward
     * updated it. */
    nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2));
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    tensor *w = torch_ones(TORCH_SHAPE(2));
    tensor_set_requires_grad(w, true);
    tensor *z = torch_mul(w, bn->running_mean), *l = torch_sum(z, 0, NULL, false);
    tensor *x = torch_randn(NULL, TORCH_SHAPE(4, 2, 3, 3)), *y = nn_module_forward(m, x);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(tensor_backward(l, NULL, false), TORCH_ERR_INVALID_STATE);
    cr_assert(strstr(torch_last_error(), "has been modified by an inplace operation"), "%s", torch_last_error());
    tensor_free(y), tensor_free(x), tensor_free(l), tensor_free(z), tensor_free(w);
    nn_module_free(m);
}
