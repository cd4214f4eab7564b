/* test_autograd_ops.c — every differentiable op of autograd/ops.h: forward values against
 * hand-computed numbers, node names against PyTorch's, gradients against central finite
 * differences (torch_gradcheck, non-uniform upstream gradient) and, for broadcasting, against
 * hand-computed sums; views share storage; comparisons and argmax record nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

static tensor *leaf(const float *data, int ndim, const int64_t *shape, bool requires_grad) {
    tensor *t = torch_tensor(data, ndim, shape);
    cr_assert_not_null(t);
    cr_assert_eq(tensor_set_requires_grad(t, requires_grad), TORCH_OK);
    return t;
}

/* Uniform values in [lo, hi) from a fixed seed; |x| >= away_from_zero (for kinks and poles). */
static tensor *uniform(uint64_t seed, float lo, float hi, float away_from_zero, int ndim, const int64_t *shape) {
    torch_generator g = torch_generator_new(seed);
    tensor *t = torch_empty(ndim, shape);
    cr_assert_not_null(t);
    float *d = tensor_data_f32(t);
    for (int64_t k = 0; k < t->numel; k++) {
        float v = lo + (hi - lo) * (float)torch_generator_uniform(&g);
        if (fabsf(v) < away_from_zero) v = v < 0 ? -away_from_zero - 0.1f : away_from_zero + 0.1f;
        d[k] = v;
    }
    cr_assert_eq(tensor_set_requires_grad(t, true), TORCH_OK);
    return t;
}

static void assert_shape(const tensor *t, int ndim, const int64_t *shape) {
    cr_assert_not_null(t);
    char a[96], b[96];
    bool same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    cr_assert(same, "shape %s, expected %s", torch_shape_str(t->ndim, t->shape, a, sizeof a),
              torch_shape_str(ndim, shape, b, sizeof b));
}

/* Asserts t (any strides) holds expected in row-major order, within tol. */
static void assert_values(const tensor *t, const float *expected, int64_t n, double tol) {
    cr_assert_not_null(t);
    cr_assert_eq(t->numel, n, "numel %lld, expected %lld", (long long)t->numel, (long long)n);
    tensor *c = tensor_contiguous(t);
    const float *d = tensor_data_f32(c);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs((double)d[i] - (double)expected[i]) <= tol * (1.0 + fabs((double)expected[i])),
                  "element %lld: %.8g, expected %.8g", (long long)i, (double)d[i], (double)expected[i]);
    tensor_free(c);
}

static void assert_error(torch_status expected, const char *fragment) {
    cr_assert_eq(torch_last_status(), expected, "status %s, expected %s (%s)", torch_status_string(torch_last_status()),
                 torch_status_string(expected), torch_last_error());
    cr_assert(strstr(torch_last_error(), fragment), "message \"%s\" lacks \"%s\"", torch_last_error(), fragment);
}

static void assert_node(const tensor *t, const char *name) {
    cr_assert_not_null(t);
    cr_assert_not_null(t->grad_fn, "expected a %s node", name);
    cr_assert_str_eq(ag_function_name(t->grad_fn->fn), name);
}

static void gradcheck_ok(torch_gradcheck_fn fn, void *user, int n, tensor *const *in) {
    torch_gradcheck_result r;
    torch_status st = torch_gradcheck(fn, user, n, in, (const char *const[]){"a", "b", "c", "d"},
                                      torch_gradcheck_options_default(), &r);
    cr_assert_eq(st, TORCH_OK, "%s / %s", r.message, torch_last_error());
    cr_assert(r.passed, "%s", r.message);
    cr_assert(r.max_abs_err < 1e-2, "%s", r.message);
}

/* A gradcheck function from an expression of in[0..]. */
#define GC(name, expr)                                                                                              \
    static tensor *name(tensor *const *in, void *u) {                                                              \
        (void)u;                                                                                                    \
        return expr;                                                                                                \
    }

/* ---- element-wise binary ---------------------------------------------------------------------- */

GC(gc_add, torch_add(in[0], in[1]))
GC(gc_sub, torch_sub(in[0], in[1]))
GC(gc_mul, torch_mul(in[0], in[1]))
GC(gc_div, torch_div(in[0], in[1]))

Test(autograd_ops, binary_forward_values_with_broadcasting) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *b = leaf((const float[]){0.5f, -1, 2}, TORCH_SHAPE(3), true);
    tensor *r;
    r = torch_add(a, b);
    assert_values(r, (const float[]){1.5f, 1, 5, 4.5f, 4, 8}, 6, 0);
    assert_node(r, "AddBackward0");
    tensor_free(r);
    r = torch_sub(a, b);
    assert_values(r, (const float[]){0.5f, 3, 1, 3.5f, 6, 4}, 6, 0);
    assert_node(r, "SubBackward0");
    tensor_free(r);
    r = torch_mul(a, b);
    assert_values(r, (const float[]){0.5f, -2, 6, 2, -5, 12}, 6, 0);
    assert_node(r, "MulBackward0");
    tensor_free(r);
    r = torch_div(a, b);
    assert_values(r, (const float[]){2, -2, 1.5f, 8, -5, 3}, 6, 1e-7);
    assert_shape(r, TORCH_SHAPE(2, 3));
    assert_node(r, "DivBackward0");
    tensor_free(r);
    tensor_free(a);
    tensor_free(b);
}

Test(autograd_ops, binary_gradcheck_same_shape_and_broadcast) {
    static const torch_gradcheck_fn fns[] = {gc_add, gc_sub, gc_mul, gc_div};
    /* (shape a, shape b): equal; [2,3] with [3]; [2,1] with [1,3]; NCHW with [1,C,1,1]. */
    static const int nd[4][2] = {{2, 2}, {2, 1}, {2, 2}, {4, 4}};
    static const int64_t sa[4][4] = {{2, 3}, {2, 3}, {2, 1}, {2, 3, 2, 2}};
    static const int64_t sb[4][4] = {{2, 3}, {3}, {1, 3}, {1, 3, 1, 1}};
    for (int f = 0; f < 4; f++) {
        for (int s = 0; s < 4; s++) {
            tensor *a = uniform(10 + s, -2, 2, 0, nd[s][0], sa[s]);
            tensor *b = uniform(20 + s, 0.5f, 2, 0, nd[s][1], sb[s]); /* positive: div stays smooth */
            gradcheck_ok(fns[f], NULL, 2, (tensor *const[]){a, b});
            tensor_free(a);
            tensor_free(b);
        }
    }
}

Test(autograd_ops, broadcast_gradients_are_summed_back_to_each_input) {
    /* a [2,3] + b [3] with upstream G: da = G, db = column sums of G. */
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *b = leaf((const float[]){10, 20, 30}, TORCH_SHAPE(3), true);
    tensor *g = torch_tensor((const float[]){1, 2, 3, -1, 0.5f, 4}, TORCH_SHAPE(2, 3));
    tensor *y = torch_add(a, b);
    cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){1, 2, 3, -1, 0.5f, 4}, 6, 0);
    assert_shape(tensor_grad(b), TORCH_SHAPE(3));
    assert_values(tensor_grad(b), (const float[]){0, 2.5f, 7}, 3, 0);
    tensor_free(y);

    /* a [2,3] * b [3]: db[j] = sum_i G[i,j] a[i,j] = (1-4, 4+2.5, 9+24). */
    tensor_zero_grad(a);
    tensor_zero_grad(b);
    y = torch_mul(a, b);
    cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){10, 40, 90, -10, 10, 120}, 6, 0);
    assert_values(tensor_grad(b), (const float[]){-3, 6.5f, 33}, 3, 0);
    tensor_free(y);
    tensor_free(g);
    tensor_free(a);
    tensor_free(b);

    /* x [N,C,H,W] * w [1,C,1,1]: dw[c] = sum_{n,h,w} G x, dx = G w. Expected values by plain loops. */
    enum { N = 2, C = 3, H = 2, W = 2 };
    float xd[N * C * H * W], gd[N * C * H * W], dw[C] = {0}, dx[N * C * H * W];
    const float wd[C] = {0.5f, -2, 3};
    for (int i = 0; i < N * C * H * W; i++) {
        xd[i] = (float)(i % 7) - 3.0f;
        gd[i] = 0.25f * (float)(i % 5) - 0.5f;
    }
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < H * W; k++) {
                int i = (n * C + c) * H * W + k;
                dw[c] += gd[i] * xd[i];
                dx[i] = gd[i] * wd[c];
            }
    tensor *x = leaf(xd, TORCH_SHAPE(N, C, H, W), true);
    tensor *w = leaf(wd, TORCH_SHAPE(1, C, 1, 1), true);
    g = torch_tensor(gd, TORCH_SHAPE(N, C, H, W));
    y = torch_mul(x, w);
    cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
    assert_shape(tensor_grad(w), TORCH_SHAPE(1, C, 1, 1));
    assert_values(tensor_grad(w), dw, C, 1e-6);
    assert_values(tensor_grad(x), dx, N * C * H * W, 0);
    tensor_free(y);
    tensor_free(g);
    tensor_free(x);
    tensor_free(w);
}

Test(autograd_ops, binary_errors_name_the_op_and_change_nothing) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *b = leaf((const float[]){1, 2, 3, 4}, TORCH_SHAPE(4), true);
    cr_assert_null(torch_add(a, b));
    assert_error(TORCH_ERR_SHAPE, "torch_add: ");
    cr_assert_null(torch_mul(a, NULL));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_mul: other is NULL");
    tensor *i = torch_scalar_int64(1);
    cr_assert_null(torch_div(i, a));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_div: expected input to be float32 (got int64)");
    cr_assert_null(torch_exp(NULL));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_exp: input is NULL");
    cr_assert(tensor_is_leaf(a) && !tensor_grad(a));
    assert_values(a, (const float[]){1, 2, 3, 4, 5, 6}, 6, 0);
    tensor_free(i);
    tensor_free(a);
    tensor_free(b);
}

/* ---- with a scalar ---------------------------------------------------------------------------- */

GC(gc_add_scalar, torch_add_scalar(in[0], 1.5))
GC(gc_sub_scalar, torch_sub_scalar(in[0], -0.25))
GC(gc_mul_scalar, torch_mul_scalar(in[0], -3.0))
GC(gc_div_scalar, torch_div_scalar(in[0], 4.0))

static tensor *gc_pow(tensor *const *in, void *u) { return torch_pow_scalar(in[0], *(const double *)u); }

Test(autograd_ops, scalar_ops_forward_and_gradients) {
    tensor *a = leaf((const float[]){1, -2, 0.5f, 4}, TORCH_SHAPE(2, 2), true);
    tensor *r;
    r = torch_add_scalar(a, 1.5);
    assert_values(r, (const float[]){2.5f, -0.5f, 2, 5.5f}, 4, 0);
    assert_node(r, "AddBackward1");
    tensor_free(r);
    r = torch_sub_scalar(a, -0.25);
    assert_values(r, (const float[]){1.25f, -1.75f, 0.75f, 4.25f}, 4, 0);
    assert_node(r, "SubBackward1");
    tensor_free(r);
    r = torch_mul_scalar(a, -3);
    assert_values(r, (const float[]){-3, 6, -1.5f, -12}, 4, 0);
    assert_node(r, "MulBackward1");
    tensor_free(r);
    r = torch_div_scalar(a, 4);
    assert_values(r, (const float[]){0.25f, -0.5f, 0.125f, 1}, 4, 0);
    assert_node(r, "DivBackward1");
    tensor_free(r);

    /* Hand-computed gradient with upstream G: d(a/4) = G / 4. */
    tensor *g = torch_tensor((const float[]){4, -8, 1, 2}, TORCH_SHAPE(2, 2));
    r = torch_div_scalar(a, 4);
    cr_assert_eq(tensor_backward(r, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){1, -2, 0.25f, 0.5f}, 4, 0);
    tensor_free(r);
    tensor_free(g);

    static const torch_gradcheck_fn fns[] = {gc_add_scalar, gc_sub_scalar, gc_mul_scalar, gc_div_scalar};
    for (int f = 0; f < 4; f++) gradcheck_ok(fns[f], NULL, 1, &a);
    tensor_free(a);
}

Test(autograd_ops, pow_scalar_values_and_gradients) {
    tensor *a = leaf((const float[]){1, 4, 0.25f, 9}, TORCH_SHAPE(4), true);
    tensor *r = torch_pow_scalar(a, 0.5);
    assert_values(r, (const float[]){1, 2, 0.5f, 3}, 4, 1e-7);
    assert_node(r, "PowBackward0");
    tensor_free(r);

    r = torch_pow_scalar(a, 3);
    assert_values(r, (const float[]){1, 64, 0.015625f, 729}, 4, 1e-7);
    tensor *s = torch_sum(r, 0, NULL, false);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK); /* 3 a^2 */
    assert_values(tensor_grad(a), (const float[]){3, 48, 0.1875f, 243}, 4, 1e-7);
    tensor_free(s);
    tensor_free(r);

    /* a^0 = 1 and its gradient is exactly 0, also at a = 0 (PyTorch's convention). */
    tensor *z = leaf((const float[]){0, 2}, TORCH_SHAPE(2), true);
    r = torch_pow_scalar(z, 0);
    assert_values(r, (const float[]){1, 1}, 2, 0);
    s = torch_sum(r, 0, NULL, false);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    assert_values(tensor_grad(z), (const float[]){0, 0}, 2, 0);
    tensor_free(s);
    tensor_free(r);
    tensor_free(z);

    static const double exps[] = {2, 3, 0.5, -1, -0.5, 1.7, 0};
    for (size_t k = 0; k < sizeof exps / sizeof exps[0]; k++) {
        tensor *p = uniform(30 + k, 0.5f, 2, 0, TORCH_SHAPE(3, 2)); /* positive: fractional powers */
        gradcheck_ok(gc_pow, (void *)&exps[k], 1, &p);
        tensor_free(p);
    }
    tensor_free(a);
}

/* ---- unary ------------------------------------------------------------------------------------ */

GC(gc_neg, torch_neg(in[0]))
GC(gc_exp, torch_exp(in[0]))
GC(gc_log, torch_log(in[0]))
GC(gc_sqrt, torch_sqrt(in[0]))
GC(gc_rsqrt, torch_rsqrt(in[0]))
GC(gc_relu, torch_relu(in[0]))

Test(autograd_ops, unary_forward_values_and_names) {
    tensor *a = leaf((const float[]){1, 4, 0.25f}, TORCH_SHAPE(3), true);
    tensor *r;
    r = torch_neg(a);
    assert_values(r, (const float[]){-1, -4, -0.25f}, 3, 0);
    assert_node(r, "NegBackward0");
    tensor_free(r);
    r = torch_exp(a);
    assert_values(r, (const float[]){2.7182817f, 54.59815f, 1.2840254f}, 3, 1e-6);
    assert_node(r, "ExpBackward0");
    tensor_free(r);
    r = torch_log(a);
    assert_values(r, (const float[]){0, 1.3862944f, -1.3862944f}, 3, 1e-6);
    assert_node(r, "LogBackward0");
    tensor_free(r);
    r = torch_sqrt(a);
    assert_values(r, (const float[]){1, 2, 0.5f}, 3, 1e-7);
    assert_node(r, "SqrtBackward0");
    tensor_free(r);
    r = torch_rsqrt(a);
    assert_values(r, (const float[]){1, 0.5f, 2}, 3, 1e-6);
    assert_node(r, "RsqrtBackward0");
    tensor_free(r);
    tensor_free(a);

    tensor *b = leaf((const float[]){-1, 0, 2.5f}, TORCH_SHAPE(3), true);
    r = torch_relu(b);
    assert_values(r, (const float[]){0, 0, 2.5f}, 3, 0);
    assert_node(r, "ReluBackward0");
    /* d relu = g * (x > 0): 0 at x = 0, as in PyTorch. */
    tensor *g = torch_tensor((const float[]){5, 6, 7}, TORCH_SHAPE(3));
    cr_assert_eq(tensor_backward(r, g, false), TORCH_OK);
    assert_values(tensor_grad(b), (const float[]){0, 0, 7}, 3, 0);
    tensor_free(g);
    tensor_free(r);
    tensor_free(b);
}

Test(autograd_ops, unary_gradients_by_hand_and_by_finite_differences) {
    /* Hand: with upstream G = (1, 2): d exp = G e^x, d log = G / x, d sqrt = G / (2 sqrt x),
     * d rsqrt = -G / (2 x^1.5). */
    tensor *x = leaf((const float[]){1, 4}, TORCH_SHAPE(2), true);
    tensor *g = torch_tensor((const float[]){1, 2}, TORCH_SHAPE(2));
    tensor *(*ops[])(tensor *) = {torch_exp, torch_log, torch_sqrt, torch_rsqrt};
    const float expected[4][2] = {{2.7182817f, 2 * 54.59815f}, {1, 0.5f}, {0.5f, 0.5f}, {-0.5f, -0.125f}};
    for (int k = 0; k < 4; k++) {
        tensor_zero_grad(x);
        tensor *y = ops[k](x);
        cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
        assert_values(tensor_grad(x), expected[k], 2, 1e-6);
        tensor_free(y);
    }
    tensor_free(g);
    tensor_free(x);

    tensor *any = uniform(40, -2, 2, 0, TORCH_SHAPE(2, 3));
    tensor *pos = uniform(41, 0.3f, 3, 0, TORCH_SHAPE(2, 3));
    tensor *kinked = uniform(42, -2, 2, 0.05f, TORCH_SHAPE(2, 3)); /* away from relu's kink */
    gradcheck_ok(gc_neg, NULL, 1, &any);
    gradcheck_ok(gc_exp, NULL, 1, &any);
    gradcheck_ok(gc_log, NULL, 1, &pos);
    gradcheck_ok(gc_sqrt, NULL, 1, &pos);
    gradcheck_ok(gc_rsqrt, NULL, 1, &pos);
    gradcheck_ok(gc_relu, NULL, 1, &kinked);
    tensor_free(any);
    tensor_free(pos);
    tensor_free(kinked);
}

Test(autograd_ops, ops_read_non_contiguous_inputs) {
    /* A transposed leaf (a strided view of its own storage) through mul and exp. */
    tensor *base = uniform(50, -1, 1, 0, TORCH_SHAPE(3, 2));
    tensor *t = tensor_as_strided(base, 2, (const int64_t[]){2, 3}, (const int64_t[]){1, 2}, 0);
    cr_assert_eq(tensor_set_requires_grad(t, true), TORCH_OK);
    tensor *b = uniform(51, -1, 1, 0, TORCH_SHAPE(2, 3));
    cr_assert(!tensor_is_contiguous(t));
    gradcheck_ok(gc_mul, NULL, 2, (tensor *const[]){t, b});
    gradcheck_ok(gc_exp, NULL, 1, &t);
    tensor_free(t);
    tensor_free(b);
    tensor_free(base);
}

/* ---- comparisons ------------------------------------------------------------------------------ */

Test(autograd_ops, comparisons_give_ones_and_zeros_without_a_graph) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *b = leaf((const float[]){2, 2, 5}, TORCH_SHAPE(3), true);
    struct {
        tensor *(*op)(tensor *, tensor *);
        float expected[6];
    } cases[] = {
        {torch_eq, {0, 1, 0, 0, 0, 0}}, {torch_ne, {1, 0, 1, 1, 1, 1}}, {torch_lt, {1, 0, 1, 0, 0, 0}},
        {torch_le, {1, 1, 1, 0, 0, 0}}, {torch_gt, {0, 0, 0, 1, 1, 1}}, {torch_ge, {0, 1, 0, 1, 1, 1}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tensor *r = cases[k].op(a, b);
        assert_shape(r, TORCH_SHAPE(2, 3));
        assert_values(r, cases[k].expected, 6, 0);
        cr_assert(!r->requires_grad && !r->grad_fn);
        tensor_free(r);
    }
    cr_assert_null(torch_lt(a, NULL));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_lt: other is NULL");
    tensor_free(a);
    tensor_free(b);
}

/* ---- reductions ------------------------------------------------------------------------------- */

static const int dim0[] = {0}, dim1[] = {1}, dimneg1[] = {-1}, dims02[] = {0, 2};

GC(gc_sum_all, torch_sum(in[0], 0, NULL, false))
GC(gc_sum_0, torch_sum(in[0], 1, dim0, false))
GC(gc_sum_02_keep, torch_sum(in[0], 2, dims02, true))
GC(gc_mean_all, torch_mean(in[0], 0, NULL, false))
GC(gc_mean_neg1, torch_mean(in[0], 1, dimneg1, false))
GC(gc_mean_02_keep, torch_mean(in[0], 2, dims02, true))
GC(gc_var_all, torch_var(in[0], 0, NULL, 1, false))
GC(gc_var_1_biased, torch_var(in[0], 1, dim1, 0, false))
GC(gc_var_02_keep, torch_var(in[0], 2, dims02, 1, true))

Test(autograd_ops, sum_and_mean_values_and_names) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 6, 8}, TORCH_SHAPE(2, 3), true);
    tensor *r;
    r = torch_sum(a, 0, NULL, false);
    assert_shape(r, 0, NULL);
    assert_values(r, (const float[]){24}, 1, 0);
    assert_node(r, "SumBackward0");
    tensor_free(r);
    r = torch_sum(a, 1, dim0, false);
    assert_values(r, (const float[]){5, 8, 11}, 3, 0);
    assert_node(r, "SumBackward1");
    tensor_free(r);
    r = torch_sum(a, 1, dimneg1, true);
    assert_shape(r, TORCH_SHAPE(2, 1));
    assert_values(r, (const float[]){6, 18}, 2, 0);
    tensor_free(r);
    r = torch_mean(a, 0, NULL, false);
    assert_values(r, (const float[]){4}, 1, 0);
    assert_node(r, "MeanBackward0");
    tensor_free(r);
    r = torch_mean(a, 1, dim1, false);
    assert_values(r, (const float[]){2, 6}, 2, 0);
    assert_node(r, "MeanBackward1");
    /* d mean_j / da = G_i / 3 along the reduced dim. */
    tensor *g = torch_tensor((const float[]){3, -6}, TORCH_SHAPE(2));
    cr_assert_eq(tensor_backward(r, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){1, 1, 1, -2, -2, -2}, 6, 1e-7);
    tensor_free(g);
    tensor_free(r);
    tensor_free(a);
}

Test(autograd_ops, var_values_biased_and_unbiased) {
    /* Rows (1,2,3) and (4,6,8): means 2 and 6, squared deviations 2 and 8. Over all: mean 4,
     * squared deviations 9+4+1+0+4+16 = 34. */
    tensor *a = leaf((const float[]){1, 2, 3, 4, 6, 8}, TORCH_SHAPE(2, 3), true);
    tensor *r;
    r = torch_var(a, 1, dim1, 1, false);
    assert_values(r, (const float[]){1, 4}, 2, 1e-7);
    assert_node(r, "VarBackward0");
    tensor_free(r);
    r = torch_var(a, 1, dim1, 0, true);
    assert_shape(r, TORCH_SHAPE(2, 1));
    assert_values(r, (const float[]){2.0f / 3, 8.0f / 3}, 2, 1e-7);
    tensor_free(r);
    r = torch_var(a, 0, NULL, 1, false);
    assert_values(r, (const float[]){6.8f}, 1, 1e-7);
    /* d var / da = 2 (a - mean) / (N - 1) = (a - 4) * 2 / 5. */
    cr_assert_eq(tensor_backward(r, NULL, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){-1.2f, -0.8f, -0.4f, 0, 0.8f, 1.6f}, 6, 1e-6);
    tensor_free(r);
    r = torch_var(a, 0, NULL, 0, false);
    assert_values(r, (const float[]){34.0f / 6}, 1, 1e-7);
    tensor_free(r);

    cr_assert_null(torch_var(a, 0, NULL, -1, false));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_var: correction must be non-negative");
    tensor_free(a);
}

Test(autograd_ops, reduction_gradcheck) {
    tensor *a = uniform(60, -2, 2, 0, TORCH_SHAPE(3, 4, 2));
    static const torch_gradcheck_fn fns[] = {gc_sum_all,      gc_sum_0,   gc_sum_02_keep,  gc_mean_all,
                                             gc_mean_neg1,    gc_mean_02_keep, gc_var_all, gc_var_1_biased,
                                             gc_var_02_keep};
    for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) gradcheck_ok(fns[k], NULL, 1, &a);
    tensor_free(a);
}

Test(autograd_ops, reduction_errors) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 6, 8}, TORCH_SHAPE(2, 3), true);
    cr_assert_null(torch_sum(a, 1, (const int[]){2}, false));
    assert_error(TORCH_ERR_INVALID_ARGUMENT,
                 "torch_sum: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    cr_assert_null(torch_mean(a, 2, (const int[]){1, -1}, false));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_mean: dim 1 appears multiple times in the list of dims");
    cr_assert_null(torch_max(a, -3, false, NULL));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_max: Dimension out of range");
    cr_assert(tensor_is_leaf(a) && !tensor_grad(a));
    tensor_free(a);
}

/* ---- max, argmax ------------------------------------------------------------------------------ */

static tensor *gc_max(tensor *const *in, void *u) { return torch_max(in[0], *(const int *)u, false, NULL); }
static tensor *gc_max_keep(tensor *const *in, void *u) { return torch_max(in[0], *(const int *)u, true, NULL); }

Test(autograd_ops, max_values_indices_and_gradient_to_the_first_maximum) {
    tensor *a = leaf((const float[]){1, 5, 5, 7, 2, 0}, TORCH_SHAPE(2, 3), true);
    tensor *idx = NULL;
    tensor *m = torch_max(a, 1, false, &idx);
    assert_values(m, (const float[]){5, 7}, 2, 0);
    assert_node(m, "MaxBackward0");
    cr_assert_eq(idx->dtype, TORCH_INT64);
    cr_assert(!idx->requires_grad);
    cr_assert_eq(tensor_data_i64(idx)[0], 1); /* the first of the tied 5s */
    cr_assert_eq(tensor_data_i64(idx)[1], 0);
    tensor *g = torch_tensor((const float[]){10, 20}, TORCH_SHAPE(2));
    cr_assert_eq(tensor_backward(m, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){0, 10, 0, 20, 0, 0}, 6, 0);
    tensor_free(g);
    tensor_free(m);
    tensor_free(idx);

    /* keepdim along dim 0. */
    tensor_zero_grad(a);
    m = torch_max(a, 0, true, NULL);
    assert_shape(m, TORCH_SHAPE(1, 3));
    assert_values(m, (const float[]){7, 5, 5}, 3, 0);
    g = torch_tensor((const float[]){1, 2, 3}, TORCH_SHAPE(1, 3));
    cr_assert_eq(tensor_backward(m, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){0, 2, 3, 1, 0, 0}, 6, 0);
    tensor_free(g);
    tensor_free(m);

    /* Finite differences on distinct values (ties have no derivative). */
    tensor *u = uniform(70, -2, 2, 0, TORCH_SHAPE(3, 4, 2));
    for (int d = -3; d < 3; d++) {
        gradcheck_ok(gc_max, &d, 1, &u);
        gradcheck_ok(gc_max_keep, &d, 1, &u);
    }
    tensor_free(u);
    tensor_free(a);
}

Test(autograd_ops, argmax_is_int64_first_maximum_without_grad) {
    tensor *a = leaf((const float[]){1, 5, 5, 7, 2, 7}, TORCH_SHAPE(2, 3), true);
    tensor *r = torch_argmax(a, 1, false);
    cr_assert_eq(r->dtype, TORCH_INT64);
    assert_shape(r, TORCH_SHAPE(2));
    cr_assert(!r->requires_grad && !r->grad_fn);
    cr_assert_eq(tensor_data_i64(r)[0], 1);
    cr_assert_eq(tensor_data_i64(r)[1], 0);
    tensor_free(r);
    r = torch_argmax(a, 0, true);
    assert_shape(r, TORCH_SHAPE(1, 3));
    cr_assert_eq(tensor_data_i64(r)[0], 1);
    cr_assert_eq(tensor_data_i64(r)[1], 0);
    cr_assert_eq(tensor_data_i64(r)[2], 1);
    tensor_free(r);
    cr_assert_null(torch_argmax(NULL, 0, false));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_argmax: input is NULL");
    tensor_free(a);
}

/* ---- matmul ----------------------------------------------------------------------------------- */

GC(gc_matmul, torch_matmul(in[0], in[1]))

Test(autograd_ops, matmul_values_gradients_and_errors) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *b = leaf((const float[]){1, 0, -1, 2, 0.5f, 1}, TORCH_SHAPE(3, 2), true);
    tensor *r = torch_matmul(a, b);
    /* [1 2 3; 4 5 6] @ [1 0; -1 2; .5 1] = [0.5 7; 2 16]. */
    assert_values(r, (const float[]){0.5f, 7, 2, 16}, 4, 1e-7);
    assert_node(r, "MmBackward0");
    /* G = [1 2; 3 4]: dA = G B^T = [1 3 2.5; 3 5 5.5], dB = A^T G = [13 18; 17 24; 21 30]. */
    tensor *g = torch_tensor((const float[]){1, 2, 3, 4}, TORCH_SHAPE(2, 2));
    cr_assert_eq(tensor_backward(r, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){1, 3, 2.5f, 3, 5, 5.5f}, 6, 1e-7);
    assert_values(tensor_grad(b), (const float[]){13, 18, 17, 24, 21, 30}, 6, 1e-7);
    tensor_free(g);
    tensor_free(r);

    cr_assert_null(torch_matmul(a, a));
    assert_error(TORCH_ERR_SHAPE, "torch_matmul: mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)");
    tensor *v = leaf((const float[]){1, 2, 3}, TORCH_SHAPE(3), true);
    cr_assert_null(torch_matmul(a, v));
    assert_error(TORCH_ERR_SHAPE, "torch_matmul: ");
    tensor_free(v);

    tensor *x = uniform(80, -1, 1, 0, TORCH_SHAPE(4, 3));
    tensor *y = uniform(81, -1, 1, 0, TORCH_SHAPE(3, 5));
    gradcheck_ok(gc_matmul, NULL, 2, (tensor *const[]){x, y});
    /* A transposed (non-contiguous) operand. */
    tensor *yt_base = uniform(82, -1, 1, 0, TORCH_SHAPE(5, 3));
    tensor *yt = tensor_as_strided(yt_base, 2, (const int64_t[]){3, 5}, (const int64_t[]){1, 3}, 0);
    cr_assert_eq(tensor_set_requires_grad(yt, true), TORCH_OK);
    gradcheck_ok(gc_matmul, NULL, 2, (tensor *const[]){x, yt});
    tensor_free(yt);
    tensor_free(yt_base);
    tensor_free(x);
    tensor_free(y);
    tensor_free(a);
    tensor_free(b);
}

/* ---- views ------------------------------------------------------------------------------------ */

static bool shares_storage(const tensor *a, const tensor *b) { return a->storage == b->storage; }

GC(gc_reshape, torch_reshape(in[0], TORCH_SHAPE(4, -1)))

static tensor *gc_reshape_of_transpose(tensor *const *in, void *u) {
    (void)u;
    tensor *t = torch_transpose(in[0], 0, 2);
    tensor *r = torch_reshape(t, TORCH_SHAPE(2, 12));
    tensor_free(t);
    return r;
}

Test(autograd_ops, reshape_views_share_storage_and_infer_one_size) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *r = torch_reshape(a, TORCH_SHAPE(3, -1));
    assert_shape(r, TORCH_SHAPE(3, 2));
    assert_values(r, (const float[]){1, 2, 3, 4, 5, 6}, 6, 0);
    assert_node(r, "ViewBackward0");
    cr_assert(shares_storage(r, a));
    tensor_data_f32(r)[3] = 40; /* a write through the view is seen in the base */
    cr_assert_float_eq(tensor_data_f32(a)[3], 40.0f, 0);
    tensor_data_f32(a)[3] = 4;
    tensor_free(r);

    r = torch_reshape(a, TORCH_SHAPE(-1));
    assert_shape(r, TORCH_SHAPE(6));
    tensor_free(r);

    /* A transposed input cannot be flattened in place: a copy, UnsafeViewBackward0. */
    tensor *t = torch_transpose(a, 0, 1);
    r = torch_reshape(t, TORCH_SHAPE(6));
    assert_values(r, (const float[]){1, 4, 2, 5, 3, 6}, 6, 0);
    assert_node(r, "UnsafeViewBackward0");
    cr_assert(!shares_storage(r, a));
    tensor_free(r);
    /* ...but splitting one of its dims is expressible with strides: still a view. */
    tensor *big = leaf((const float[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, TORCH_SHAPE(4, 3), true);
    tensor *nar = torch_narrow(big, 1, 0, 2); /* [4, 2], strides (3, 1) */
    r = torch_reshape(nar, TORCH_SHAPE(2, 2, 2));
    assert_node(r, "ViewBackward0");
    cr_assert(shares_storage(r, big));
    assert_values(r, (const float[]){0, 1, 3, 4, 6, 7, 9, 10}, 8, 0);
    tensor_free(r);
    tensor_free(nar);
    tensor_free(big);
    tensor_free(t);

    /* Errors, with PyTorch's messages; nothing changes. */
    cr_assert_null(torch_reshape(a, TORCH_SHAPE(2, -1, -1)));
    assert_error(TORCH_ERR_SHAPE, "torch_reshape: only one dimension can be inferred");
    cr_assert_null(torch_reshape(a, TORCH_SHAPE(2, 4)));
    assert_error(TORCH_ERR_SHAPE, "torch_reshape: shape '[2, 4]' is invalid for input of size 6");
    cr_assert_null(torch_reshape(a, TORCH_SHAPE(4, -1)));
    assert_error(TORCH_ERR_SHAPE, "torch_reshape: shape '[4, -1]' is invalid for input of size 6");
    cr_assert_null(torch_reshape(a, TORCH_SHAPE(-2, 3)));
    assert_error(TORCH_ERR_SHAPE, "torch_reshape: invalid shape dimension -2");
    tensor *e = torch_zeros(TORCH_SHAPE(0, 3));
    cr_assert_null(torch_reshape(e, TORCH_SHAPE(0, -1)));
    assert_error(TORCH_ERR_SHAPE, "the unspecified dimension size -1 can be any value and is ambiguous");
    tensor_free(e);
    assert_shape(a, TORCH_SHAPE(2, 3));
    cr_assert(tensor_is_leaf(a) && !tensor_grad(a));

    tensor *u = uniform(90, -1, 1, 0, TORCH_SHAPE(2, 3, 4));
    gradcheck_ok(gc_reshape, NULL, 1, &u);
    gradcheck_ok(gc_reshape_of_transpose, NULL, 1, &u);
    tensor_free(u);
    tensor_free(a);
}

GC(gc_flatten, torch_flatten(in[0], 1, -1))

Test(autograd_ops, flatten) {
    tensor *a = torch_zeros(TORCH_SHAPE(2, 3, 4, 5));
    cr_assert_eq(tensor_set_requires_grad(a, true), TORCH_OK);
    tensor *r = torch_flatten(a, 1, 2);
    assert_shape(r, TORCH_SHAPE(2, 12, 5));
    assert_node(r, "ViewBackward0");
    cr_assert(shares_storage(r, a));
    tensor_free(r);
    r = torch_flatten(a, 0, -1);
    assert_shape(r, TORCH_SHAPE(120));
    tensor_free(r);
    r = torch_flatten(a, 2, 2); /* nothing merged: the input itself */
    cr_assert_eq(r, a);
    tensor_free(r);
    tensor *s = torch_scalar(3);
    r = torch_flatten(s, 0, -1);
    assert_shape(r, TORCH_SHAPE(1));
    tensor_free(r);
    tensor_free(s);
    cr_assert_null(torch_flatten(a, 2, 1));
    assert_error(TORCH_ERR_INVALID_ARGUMENT,
                 "torch_flatten: flatten() has invalid args: start_dim cannot come after end_dim");
    cr_assert_null(torch_flatten(a, 0, 4));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_flatten: Dimension out of range");
    tensor_free(a);

    tensor *u = uniform(91, -1, 1, 0, TORCH_SHAPE(2, 3, 2));
    gradcheck_ok(gc_flatten, NULL, 1, &u);
    tensor_free(u);
}

GC(gc_select, torch_select(in[0], 1, -1))
GC(gc_narrow, torch_narrow(in[0], 2, 1, 2))
GC(gc_narrow0, torch_narrow(in[0], 0, -2, 1))

Test(autograd_ops, select_and_narrow) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *r = torch_select(a, 1, -1);
    assert_shape(r, TORCH_SHAPE(2));
    assert_values(r, (const float[]){3, 6}, 2, 0);
    assert_node(r, "SelectBackward0");
    cr_assert(shares_storage(r, a));
    tensor *g = torch_tensor((const float[]){7, 8}, TORCH_SHAPE(2));
    cr_assert_eq(tensor_backward(r, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){0, 0, 7, 0, 0, 8}, 6, 0);
    tensor_free(g);
    tensor_free(r);

    tensor_zero_grad(a);
    r = torch_narrow(a, 1, 1, 2);
    assert_shape(r, TORCH_SHAPE(2, 2));
    assert_values(r, (const float[]){2, 3, 5, 6}, 4, 0);
    assert_node(r, "SliceBackward0");
    cr_assert(shares_storage(r, a));
    g = torch_tensor((const float[]){1, 2, 3, 4}, TORCH_SHAPE(2, 2));
    cr_assert_eq(tensor_backward(r, g, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){0, 1, 2, 0, 3, 4}, 6, 0);
    tensor_free(g);
    tensor_free(r);
    tensor_zero_grad(a);

    cr_assert_null(torch_select(a, 0, 5));
    assert_error(TORCH_ERR_INVALID_ARGUMENT,
                 "torch_select: index 5 out of range for tensor of size [2, 3] at dimension 0");
    cr_assert_null(torch_select(a, 2, 0));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_select: Dimension out of range");
    tensor *s = torch_scalar(1);
    cr_assert_null(torch_select(s, 0, 0));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "select() cannot be applied to a 0-dim tensor");
    tensor_free(s);
    cr_assert_null(torch_narrow(a, 0, 1, 5));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_narrow: start (1) + length (5) exceeds dimension size (2).");
    cr_assert_null(torch_narrow(a, 0, 1, -1));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_narrow: narrow(): length must be non-negative.");
    cr_assert_null(torch_narrow(a, 0, 3, 0));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_narrow: start out of range");
    cr_assert(tensor_is_leaf(a) && !tensor_grad(a));
    tensor_free(a);

    tensor *u = uniform(92, -1, 1, 0, TORCH_SHAPE(3, 4, 3));
    gradcheck_ok(gc_select, NULL, 1, &u);
    gradcheck_ok(gc_narrow, NULL, 1, &u);
    gradcheck_ok(gc_narrow0, NULL, 1, &u);
    tensor_free(u);
}

GC(gc_transpose, torch_transpose(in[0], 0, -1))
static const int perm[] = {2, 0, 1};
GC(gc_permute, torch_permute(in[0], 3, perm))
GC(gc_unsqueeze, torch_unsqueeze(in[0], -1))
GC(gc_unsqueeze0, torch_unsqueeze(in[0], 1))
GC(gc_squeeze, torch_squeeze(in[0], 1))
GC(gc_squeeze_noop, torch_squeeze(in[0], 0))
GC(gc_contiguous_t, torch_contiguous(in[0]))

Test(autograd_ops, transpose_and_permute) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *r = torch_transpose(a, 0, 1);
    assert_shape(r, TORCH_SHAPE(3, 2));
    assert_values(r, (const float[]){1, 4, 2, 5, 3, 6}, 6, 0);
    assert_node(r, "TransposeBackward0");
    cr_assert(shares_storage(r, a) && !tensor_is_contiguous(r));
    tensor_free(r);
    cr_assert_null(torch_transpose(a, 0, 2));
    assert_error(TORCH_ERR_INVALID_ARGUMENT,
                 "torch_transpose: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    tensor_free(a);

    tensor *b = torch_arange(0, 24, 1);
    tensor *b3 = torch_reshape(b, TORCH_SHAPE(2, 3, 4));
    cr_assert_eq(tensor_set_requires_grad(b3, true), TORCH_OK);
    r = torch_permute(b3, 3, perm);
    assert_shape(r, TORCH_SHAPE(4, 2, 3));
    assert_node(r, "PermuteBackward0");
    cr_assert(shares_storage(r, b3));
    /* r[i][j][k] = b3[j][k][i] = 12 j + 4 k + i. */
    assert_values(r,
                  (const float[]){0, 4, 8, 12, 16, 20, 1, 5, 9,  13, 17, 21,
                                  2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23},
                  24, 0);
    tensor_free(r);
    cr_assert_null(torch_permute(b3, 2, (const int[]){0, 1}));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "input.dim() = 3 is not equal to len(dims) = 2");
    cr_assert_null(torch_permute(b3, 3, (const int[]){0, 1, -3}));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_permute: permute(): duplicate dims are not allowed.");
    tensor_free(b3);
    tensor_free(b);

    tensor *u = uniform(93, -1, 1, 0, TORCH_SHAPE(2, 3, 4));
    gradcheck_ok(gc_transpose, NULL, 1, &u);
    gradcheck_ok(gc_permute, NULL, 1, &u);
    tensor_free(u);
}

Test(autograd_ops, unsqueeze_squeeze_contiguous) {
    tensor *a = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *r = torch_unsqueeze(a, 1);
    assert_shape(r, TORCH_SHAPE(2, 1, 3));
    assert_node(r, "UnsqueezeBackward0");
    cr_assert(shares_storage(r, a) && tensor_is_contiguous(r));
    tensor *s = torch_squeeze(r, 1);
    assert_shape(s, TORCH_SHAPE(2, 3));
    assert_node(s, "SqueezeBackward1");
    assert_values(s, (const float[]){1, 2, 3, 4, 5, 6}, 6, 0);
    tensor_free(s);
    s = torch_squeeze(r, 0); /* size 2: unchanged, still a view */
    assert_shape(s, TORCH_SHAPE(2, 1, 3));
    cr_assert(shares_storage(s, a));
    tensor_free(s);
    tensor_free(r);
    r = torch_unsqueeze(a, -1);
    assert_shape(r, TORCH_SHAPE(2, 3, 1));
    tensor_free(r);
    cr_assert_null(torch_unsqueeze(a, 3));
    assert_error(TORCH_ERR_INVALID_ARGUMENT,
                 "torch_unsqueeze: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
    cr_assert_null(torch_squeeze(a, 2));
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "torch_squeeze: Dimension out of range");

    /* contiguous: the input itself when already contiguous, else a copy with CloneBackward0. */
    r = torch_contiguous(a);
    cr_assert_eq(r, a);
    tensor_free(r);
    tensor *t = torch_transpose(a, 0, 1);
    r = torch_contiguous(t);
    cr_assert(tensor_is_contiguous(r) && !shares_storage(r, a));
    assert_values(r, (const float[]){1, 4, 2, 5, 3, 6}, 6, 0);
    assert_node(r, "CloneBackward0");
    tensor *g = torch_tensor((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(3, 2));
    cr_assert_eq(tensor_backward(r, g, false), TORCH_OK); /* back through the clone and the transpose */
    assert_values(tensor_grad(a), (const float[]){1, 3, 5, 2, 4, 6}, 6, 0);
    tensor_free(g);
    tensor_free(r);
    tensor_free(t);
    tensor_free(a);

    tensor *u = uniform(94, -1, 1, 0, TORCH_SHAPE(3, 1, 2));
    gradcheck_ok(gc_unsqueeze, NULL, 1, &u);
    gradcheck_ok(gc_unsqueeze0, NULL, 1, &u);
    gradcheck_ok(gc_squeeze, NULL, 1, &u);
    gradcheck_ok(gc_squeeze_noop, NULL, 1, &u);
    tensor *base = uniform(95, -1, 1, 0, TORCH_SHAPE(3, 2));
    tensor *tr = tensor_as_strided(base, 2, (const int64_t[]){2, 3}, (const int64_t[]){1, 2}, 0);
    cr_assert_eq(tensor_set_requires_grad(tr, true), TORCH_OK);
    gradcheck_ok(gc_contiguous_t, NULL, 1, &tr);
    tensor_free(tr);
    tensor_free(base);
    tensor_free(u);
}

/* ---- a composite: y = mean((w x + b)^2) through views and reductions ---------------------------- */

static tensor *gc_composite(tensor *const *in, void *u) {
    (void)u;
    tensor *wx = torch_matmul(in[1], in[0]);       /* (2, 3) @ (3, 4) */
    tensor *h = torch_add(wx, in[2]);              /* + b (2, 1) */
    tensor *f = torch_flatten(h, 0, -1);           /* (8) */
    tensor *sq = torch_pow_scalar(f, 2);
    tensor *m = torch_mean(sq, 0, NULL, false);
    tensor_free(wx);
    tensor_free(h);
    tensor_free(f);
    tensor_free(sq);
    return m;
}

Test(autograd_ops, composite_expression_gradcheck) {
    tensor *x = uniform(100, -1, 1, 0, TORCH_SHAPE(3, 4));
    tensor *w = uniform(101, -1, 1, 0, TORCH_SHAPE(2, 3));
    tensor *b = uniform(102, -1, 1, 0, TORCH_SHAPE(2, 1));
    gradcheck_ok(gc_composite, NULL, 3, (tensor *const[]){x, w, b});
    tensor_free(x);
    tensor_free(w);
    tensor_free(b);
}
