/* Tests for the raw kernels of src/tensor/ops.h: values against hand-computed numbers, shapes,
 * broadcasting, strided inputs, reductions, max/argmax, sum_to/expand, mm, in-place ops, and
 * every error path (status and PyTorch-style message, nothing leaked). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tensor/ops.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static tensor *from(const float *data, int ndim, const int64_t *shape) {
    tensor *t = torch_tensor(data, ndim, shape);
    cr_assert_not_null(t, "torch_tensor failed: %s", torch_last_error());
    return t;
}

/* 0, 1, 2, ... as float, with the given shape. */
static tensor *iota(int ndim, const int64_t *shape) {
    tensor *t = torch_empty(ndim, shape);
    cr_assert_not_null(t);
    float *p = tensor_data_f32(t);
    for (int64_t i = 0; i < t->numel; i++) p[i] = (float)i;
    return t;
}

static bool close_enough(double got, double want, double tol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

/* t is a contiguous float32 tensor of exactly this shape whose values match want. */
static void expect(const tensor *t, int ndim, const int64_t *shape, const float *want, double tol) {
    cr_assert_not_null(t, "unexpected failure: %s", torch_last_error());
    cr_assert_eq(t->dtype, TORCH_FLOAT32);
    cr_assert_eq(t->ndim, ndim, "ndim %d, expected %d", t->ndim, ndim);
    for (int i = 0; i < ndim; i++) cr_assert_eq(t->shape[i], shape[i], "dim %d: %ld vs %ld", i, (long)t->shape[i], (long)shape[i]);
    cr_assert(tensor_is_contiguous(t));
    const float *p = tensor_data_f32(t);
    for (int64_t i = 0; i < t->numel; i++)
        cr_assert(close_enough(p[i], want[i], tol), "element %ld: got %.9g, expected %.9g", (long)i, p[i], want[i]);
}

#define EXPECT(t, tol, SHAPE, ...) expect((t), SHAPE, (const float[]){__VA_ARGS__}, (tol))
#define EXPECT0(t, tol, value) expect((t), 0, NULL, (const float[]){value}, (tol))
#define S(...) TORCH_SHAPE(__VA_ARGS__)

static void expect_error(torch_status status, const char *fragment) {
    cr_assert_eq(torch_last_status(), status, "status %s, expected %s (message: %s)",
                 torch_status_string(torch_last_status()), torch_status_string(status), torch_last_error());
    cr_assert(strstr(torch_last_error(), fragment), "message \"%s\" lacks \"%s\"", torch_last_error(), fragment);
}

/* The transpose of a contiguous rows x cols tensor, as a strided view (no copy). */
static tensor *transposed_view(const tensor *t) {
    tensor *v = tensor_as_strided(t, 2, (const int64_t[]){t->shape[1], t->shape[0]},
                                  (const int64_t[]){t->stride[1], t->stride[0]}, t->offset);
    cr_assert_not_null(v);
    cr_assert(!tensor_is_contiguous(v));
    return v;
}

static void setup(void) { torch_clear_error(); }

TestSuite(tensor_ops, .init = setup);

/* ---- names and broadcasting ----------------------------------------------------------------- */

Test(tensor_ops, op_names) {
    cr_assert_str_eq(torch_binary_op_name(TORCH_BINARY_ADD), "torch_add");
    cr_assert_str_eq(torch_binary_op_name(TORCH_BINARY_DIV), "torch_div");
    cr_assert_str_eq(torch_binary_op_name(TORCH_BINARY_MAXIMUM), "torch_maximum");
    cr_assert_str_eq(torch_binary_op_name(TORCH_BINARY_GE), "torch_ge");
    cr_assert_str_eq(torch_unary_op_name(TORCH_UNARY_RSQRT), "torch_rsqrt");
    cr_assert_str_eq(torch_unary_op_name(TORCH_UNARY_RELU), "torch_relu");
    cr_assert_str_eq(torch_unary_op_name(TORCH_UNARY_SIGN), "torch_sign");
    for (int op = 0; op < TORCH_BINARY_COUNT; op++)
        cr_assert(strncmp(torch_binary_op_name((torch_binary_op)op), "torch_", 6) == 0, "binary op %d", op);
    for (int op = 0; op < TORCH_UNARY_COUNT; op++)
        cr_assert(strncmp(torch_unary_op_name((torch_unary_op)op), "torch_", 6) == 0, "unary op %d", op);
    cr_assert_not_null(torch_binary_op_name(TORCH_BINARY_COUNT));
    cr_assert_not_null(torch_unary_op_name((torch_unary_op)-1));
}

Test(tensor_ops, broadcast_shapes) {
    int n;
    int64_t s[TORCH_MAX_DIMS];
    cr_assert_eq(torch_broadcast_shapes("f", S(2, 3), S(3), &n, s), TORCH_OK);
    cr_assert(n == 2 && s[0] == 2 && s[1] == 3);
    cr_assert_eq(torch_broadcast_shapes("f", S(2, 1), S(1, 3), &n, s), TORCH_OK);
    cr_assert(n == 2 && s[0] == 2 && s[1] == 3);
    cr_assert_eq(torch_broadcast_shapes("f", S(5, 1, 4), S(3, 1), &n, s), TORCH_OK);
    cr_assert(n == 3 && s[0] == 5 && s[1] == 3 && s[2] == 4);
    cr_assert_eq(torch_broadcast_shapes("f", S(0), S(1), &n, s), TORCH_OK);
    cr_assert(n == 1 && s[0] == 0);
    cr_assert_eq(torch_broadcast_shapes("f", 0, NULL, S(2), &n, s), TORCH_OK);
    cr_assert(n == 1 && s[0] == 2);
    cr_assert_eq(torch_broadcast_shapes("torch_add", S(2, 3), S(4), &n, s), TORCH_ERR_SHAPE);
    expect_error(TORCH_ERR_SHAPE, "torch_add: shapes [2, 3] and [4] cannot be broadcast");
}

/* ---- binary --------------------------------------------------------------------------------- */

Test(tensor_ops, binary_same_shape_all_ops) {
    tensor *a = from((const float[]){1, -2, 3, 0.5f}, S(2, 2));
    tensor *b = from((const float[]){2, 4, 3, -0.25f}, S(2, 2));
    struct {
        torch_binary_op op;
        float want[4];
    } cases[] = {
        {TORCH_BINARY_ADD, {3, 2, 6, 0.25f}},   {TORCH_BINARY_SUB, {-1, -6, 0, 0.75f}},
        {TORCH_BINARY_MUL, {2, -8, 9, -0.125f}}, {TORCH_BINARY_DIV, {0.5f, -0.5f, 1, -2}},
        {TORCH_BINARY_MAXIMUM, {2, 4, 3, 0.5f}}, {TORCH_BINARY_MINIMUM, {1, -2, 3, -0.25f}},
        {TORCH_BINARY_EQ, {0, 0, 1, 0}},         {TORCH_BINARY_NE, {1, 1, 0, 1}},
        {TORCH_BINARY_LT, {1, 1, 0, 0}},         {TORCH_BINARY_LE, {1, 1, 1, 0}},
        {TORCH_BINARY_GT, {0, 0, 0, 1}},         {TORCH_BINARY_GE, {0, 0, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tensor *r = tensor_binary(cases[i].op, a, b);
        expect(r, S(2, 2), cases[i].want, 0);
        tensor_free(r);
    }
    tensor_free(a);
    tensor_free(b);
}

Test(tensor_ops, binary_pow) {
    tensor *a = from((const float[]){2, 9, 4, 1.5f}, S(4));
    tensor *b = from((const float[]){3, 0.5f, -1, 2}, S(4));
    tensor *r = tensor_binary(TORCH_BINARY_POW, a, b);
    EXPECT(r, 1e-6, S(4), 8, 3, 0.25f, 2.25f);
    tensor_free(r);
    tensor_free(a);
    tensor_free(b);
}

Test(tensor_ops, binary_nan_propagates_through_maximum_minimum) {
    tensor *a = from((const float[]){NAN, 1, 2}, S(3));
    tensor *b = from((const float[]){0, NAN, 1}, S(3));
    tensor *mx = tensor_binary(TORCH_BINARY_MAXIMUM, a, b);
    tensor *mn = tensor_binary(TORCH_BINARY_MINIMUM, a, b);
    EXPECT(mx, 0, S(3), NAN, NAN, 2);
    EXPECT(mn, 0, S(3), NAN, NAN, 1);
    tensor_free(mx);
    tensor_free(mn);
    tensor_free(a);
    tensor_free(b);
}

Test(tensor_ops, broadcast_row_vector) {
    tensor *a = from((const float[]){1, 2, 3, 4, 5, 6}, S(2, 3));
    tensor *b = from((const float[]){10, 20, 30}, S(3));
    tensor *r = tensor_binary(TORCH_BINARY_ADD, a, b);
    EXPECT(r, 0, S(2, 3), 11, 22, 33, 14, 25, 36);
    tensor_free(r);
    r = tensor_binary(TORCH_BINARY_SUB, b, a); /* broadcast on the left operand */
    EXPECT(r, 0, S(2, 3), 9, 18, 27, 6, 15, 24);
    tensor_free(r);
    tensor_free(a);
    tensor_free(b);
}

Test(tensor_ops, broadcast_outer_product) {
    tensor *a = from((const float[]){1, 2}, S(2, 1));
    tensor *b = from((const float[]){3, 4, 5}, S(1, 3));
    tensor *r = tensor_binary(TORCH_BINARY_MUL, a, b);
    EXPECT(r, 0, S(2, 3), 3, 4, 5, 6, 8, 10);
    tensor_free(r);
    tensor_free(a);
    tensor_free(b);
}

Test(tensor_ops, broadcast_channel_nchw) {
    /* x[n, c, h, w] = 100 n + 10 c + 2 h + w;  y[c] = (c + 1) / 4 */
    tensor *x = torch_empty(S(2, 3, 2, 2));
    float *px = tensor_data_f32(x);
    for (int n = 0, i = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 2; h++)
                for (int w = 0; w < 2; w++) px[i++] = (float)(100 * n + 10 * c + 2 * h + w);
    tensor *y = from((const float[]){0.25f, 0.5f, 0.75f}, S(1, 3, 1, 1));
    tensor *sub = tensor_binary(TORCH_BINARY_SUB, x, y);
    tensor *mul = tensor_binary(TORCH_BINARY_MUL, x, y);
    float want_sub[24], want_mul[24];
    for (int n = 0, i = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 2; h++)
                for (int w = 0; w < 2; w++, i++) {
                    float v = (float)(100 * n + 10 * c + 2 * h + w), k = (float)(c + 1) / 4.0f;
                    want_sub[i] = v - k;
                    want_mul[i] = v * k;
                }
    expect(sub, S(2, 3, 2, 2), want_sub, 0);
    expect(mul, S(2, 3, 2, 2), want_mul, 0);
    tensor_free(sub);
    tensor_free(mul);
    tensor_free(x);
    tensor_free(y);
}

Test(tensor_ops, one_element_operands) {
    tensor *a = from((const float[]){1, 2, 3, 4}, S(2, 2));
    tensor *one = from((const float[]){10}, S(1));
    tensor *zero_dim = torch_scalar(2);
    tensor *r = tensor_binary(TORCH_BINARY_ADD, a, one);
    EXPECT(r, 0, S(2, 2), 11, 12, 13, 14);
    tensor_free(r);
    r = tensor_binary(TORCH_BINARY_DIV, zero_dim, a);
    EXPECT(r, 0, S(2, 2), 2, 1, 2.0f / 3.0f, 0.5f);
    tensor_free(r);
    r = tensor_binary(TORCH_BINARY_MUL, zero_dim, zero_dim);
    EXPECT0(r, 0, 4);
    tensor_free(r);
    /* a one-element operand with more dims still grows the result's rank */
    tensor *v = from((const float[]){1, 2, 3}, S(3));
    tensor *u = from((const float[]){5}, S(1, 1));
    r = tensor_binary(TORCH_BINARY_SUB, v, u);
    EXPECT(r, 0, S(1, 3), -4, -3, -2);
    tensor_free(r);
    tensor_free(v);
    tensor_free(u);
    tensor_free(a);
    tensor_free(one);
    tensor_free(zero_dim);
}

Test(tensor_ops, binary_strided_inputs) {
    tensor *base = iota(S(2, 3)); /* [[0, 1, 2], [3, 4, 5]] */
    tensor *t = transposed_view(base); /* [[0, 3], [1, 4], [2, 5]] */
    tensor *c = from((const float[]){1, 1, 2, 2, 3, 3}, S(3, 2));
    tensor *r = tensor_binary(TORCH_BINARY_MUL, t, c);
    EXPECT(r, 0, S(3, 2), 0, 3, 2, 8, 6, 15);
    tensor_free(r);
    r = tensor_binary(TORCH_BINARY_ADD, t, t);
    EXPECT(r, 0, S(3, 2), 0, 6, 2, 8, 4, 10);
    tensor_free(r);
    /* a stride-0 (expanded) operand */
    tensor *row = from((const float[]){100, 200}, S(2));
    tensor *ex = tensor_as_strided(row, 2, (const int64_t[]){3, 2}, (const int64_t[]){0, 1}, 0);
    r = tensor_binary(TORCH_BINARY_SUB, ex, t);
    EXPECT(r, 0, S(3, 2), 100, 197, 99, 196, 98, 195);
    tensor_free(r);
    /* every other element of a row: stride 2 in the innermost dim */
    tensor *big = iota(S(8));
    tensor *odd = tensor_as_strided(big, 1, (const int64_t[]){4}, (const int64_t[]){2}, 1);
    r = tensor_binary_scalar(TORCH_BINARY_MUL, odd, 10);
    EXPECT(r, 0, S(4), 10, 30, 50, 70);
    tensor_free(r);
    tensor_free(odd);
    tensor_free(big);
    tensor_free(ex);
    tensor_free(row);
    tensor_free(c);
    tensor_free(t);
    tensor_free(base);
}

Test(tensor_ops, binary_large_matches_loop) {
    /* Big enough for the threaded, chunked paths: flat, broadcast row, strided. */
    const int64_t R = 300, C = 211;
    tensor *a = torch_empty(S(R, C));
    tensor *b = torch_empty(S(C));
    float *pa = tensor_data_f32(a), *pb = tensor_data_f32(b);
    for (int64_t i = 0; i < R * C; i++) pa[i] = (float)(i % 97) * 0.5f - 7.0f;
    for (int64_t j = 0; j < C; j++) pb[j] = (float)j * 0.25f + 1.0f;
    tensor *r = tensor_binary(TORCH_BINARY_MUL, a, b);
    cr_assert_not_null(r);
    const float *pr = tensor_data_f32(r);
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) cr_assert_eq(pr[i * C + j], pa[i * C + j] * pb[j]);
    tensor_free(r);
    r = tensor_binary(TORCH_BINARY_ADD, a, a);
    pr = tensor_data_f32(r);
    for (int64_t i = 0; i < R * C; i++) cr_assert_eq(pr[i], pa[i] + pa[i]);
    tensor_free(r);
    tensor *at = transposed_view(a); /* [C, R] */
    r = tensor_unary(TORCH_UNARY_NEG, at);
    pr = tensor_data_f32(r);
    for (int64_t j = 0; j < C; j++)
        for (int64_t i = 0; i < R; i++) cr_assert_eq(pr[j * R + i], -pa[i * C + j]);
    tensor_free(r);
    tensor_free(at);
    tensor_free(a);
    tensor_free(b);
}

Test(tensor_ops, empty_operands) {
    tensor *a = torch_empty(S(0, 3));
    tensor *b = from((const float[]){1, 2, 3}, S(3));
    tensor *r = tensor_binary(TORCH_BINARY_ADD, a, b);
    cr_assert_not_null(r);
    cr_assert(r->ndim == 2 && r->shape[0] == 0 && r->shape[1] == 3 && r->numel == 0);
    tensor_free(r);
    r = tensor_unary(TORCH_UNARY_EXP, a);
    cr_assert(r && r->numel == 0 && r->ndim == 2);
    tensor_free(r);
    tensor_free(a);
    tensor_free(b);
}

Test(tensor_ops, binary_errors) {
    tensor *a = torch_zeros(S(2, 3));
    tensor *b = torch_zeros(S(4));
    tensor *i64 = torch_empty_dtype(TORCH_INT64, S(2, 3));
    cr_assert_null(tensor_binary(TORCH_BINARY_ADD, a, b));
    expect_error(TORCH_ERR_SHAPE, "torch_add: shapes [2, 3] and [4] cannot be broadcast");
    cr_assert_null(tensor_binary(TORCH_BINARY_MUL, b, a));
    expect_error(TORCH_ERR_SHAPE, "torch_mul: shapes [4] and [2, 3] cannot be broadcast");
    cr_assert_null(tensor_binary(TORCH_BINARY_ADD, a, i64));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_add: expected input to be float32 (got int64)");
    cr_assert_null(tensor_binary(TORCH_BINARY_SUB, NULL, a));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_sub: input is NULL");
    cr_assert_null(tensor_binary(TORCH_BINARY_SUB, a, NULL));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_sub: input is NULL");
    cr_assert_null(tensor_binary(TORCH_BINARY_COUNT, a, a));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "unknown op");
    cr_assert_null(tensor_binary_scalar(TORCH_BINARY_DIV, i64, 2));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_div: expected input to be float32 (got int64)");
    cr_assert_null(tensor_binary_scalar(TORCH_BINARY_ADD, NULL, 2));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_add: input is NULL");
    cr_assert_null(tensor_unary(TORCH_UNARY_RSQRT, NULL));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_rsqrt: input is NULL");
    cr_assert_null(tensor_unary(TORCH_UNARY_EXP, i64));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_exp: expected input to be float32 (got int64)");
    cr_assert_null(tensor_unary(TORCH_UNARY_COUNT, a));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "unknown op");
    tensor_free(a);
    tensor_free(b);
    tensor_free(i64);
}

/* ---- scalar --------------------------------------------------------------------------------- */

Test(tensor_ops, scalar_ops) {
    tensor *a = from((const float[]){1, -2, 4, 0.5f}, S(4));
    struct {
        torch_binary_op op;
        double s;
        float want[4];
    } cases[] = {
        {TORCH_BINARY_ADD, 1.5, {2.5f, -0.5f, 5.5f, 2}},    {TORCH_BINARY_SUB, 1, {0, -3, 3, -0.5f}},
        {TORCH_BINARY_MUL, -2, {-2, 4, -8, -1}},            {TORCH_BINARY_DIV, 4, {0.25f, -0.5f, 1, 0.125f}},
        {TORCH_BINARY_POW, 2, {1, 4, 16, 0.25f}},           {TORCH_BINARY_POW, 3, {1, -8, 64, 0.125f}},
        {TORCH_BINARY_POW, -1, {1, -0.5f, 0.25f, 2}},       {TORCH_BINARY_POW, -2, {1, 0.25f, 0.0625f, 4}},
        {TORCH_BINARY_MAXIMUM, 0, {1, 0, 4, 0.5f}},         {TORCH_BINARY_MINIMUM, 0, {0, -2, 0, 0}},
        {TORCH_BINARY_EQ, 4, {0, 0, 1, 0}},                 {TORCH_BINARY_NE, 4, {1, 1, 0, 1}},
        {TORCH_BINARY_LT, 1, {0, 1, 0, 1}},                 {TORCH_BINARY_LE, 1, {1, 1, 0, 1}},
        {TORCH_BINARY_GT, 0.5, {1, 0, 1, 0}},               {TORCH_BINARY_GE, 0.5, {1, 0, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tensor *r = tensor_binary_scalar(cases[i].op, a, cases[i].s);
        expect(r, S(4), cases[i].want, 0);
        tensor_free(r);
    }
    tensor_free(a);
}

Test(tensor_ops, scalar_pow_fractional) {
    tensor *a = from((const float[]){4, 9, 0.25f, 2}, S(2, 2));
    tensor *r = tensor_binary_scalar(TORCH_BINARY_POW, a, 0.5);
    EXPECT(r, 0, S(2, 2), 2, 3, 0.5f, 1.41421356f);
    tensor_free(r);
    r = tensor_binary_scalar(TORCH_BINARY_POW, a, -0.5);
    EXPECT(r, 1e-7, S(2, 2), 0.5f, 1.0f / 3.0f, 2, 0.70710678f);
    tensor_free(r);
    r = tensor_binary_scalar(TORCH_BINARY_POW, a, 1.5);
    EXPECT(r, 1e-6, S(2, 2), 8, 27, 0.125f, 2.82842712f);
    tensor_free(r);
    r = tensor_binary_scalar(TORCH_BINARY_POW, a, 0);
    EXPECT(r, 0, S(2, 2), 1, 1, 1, 1);
    tensor_free(r);
    tensor_free(a);
}

Test(tensor_ops, scalar_on_strided_and_zero_dim) {
    tensor *base = iota(S(2, 3));
    tensor *t = transposed_view(base);
    tensor *r = tensor_binary_scalar(TORCH_BINARY_ADD, t, 0.5);
    EXPECT(r, 0, S(3, 2), 0.5f, 3.5f, 1.5f, 4.5f, 2.5f, 5.5f);
    tensor_free(r);
    tensor *z = torch_scalar(3);
    r = tensor_binary_scalar(TORCH_BINARY_MUL, z, 2);
    EXPECT0(r, 0, 6);
    tensor_free(r);
    tensor_free(z);
    tensor_free(t);
    tensor_free(base);
}

/* ---- unary ---------------------------------------------------------------------------------- */

Test(tensor_ops, unary_all_ops) {
    tensor *a = from((const float[]){4, -0.5f, 0, 0.25f}, S(4));
    tensor *p = from((const float[]){1, 4, 0.25f, 16}, S(4)); /* positive inputs for log/sqrt */
    const float e = 2.71828182845904523536f;
    struct {
        torch_unary_op op;
        const tensor *in;
        float want[4];
        double tol;
    } cases[] = {
        {TORCH_UNARY_NEG, a, {-4, 0.5f, -0.0f, -0.25f}, 0},
        {TORCH_UNARY_EXP, a, {e * e * e * e, 0.60653066f, 1, 1.28402542f}, 1e-6},
        {TORCH_UNARY_LOG, p, {0, 1.38629436f, -1.38629436f, 2.77258872f}, 1e-6},
        {TORCH_UNARY_SQRT, p, {1, 2, 0.5f, 4}, 0},
        {TORCH_UNARY_RSQRT, p, {1, 0.5f, 2, 0.25f}, 0},
        {TORCH_UNARY_RELU, a, {4, 0, 0, 0.25f}, 0},
        {TORCH_UNARY_ABS, a, {4, 0.5f, 0, 0.25f}, 0},
        {TORCH_UNARY_SQUARE, a, {16, 0.25f, 0, 0.0625f}, 0},
        {TORCH_UNARY_RECIPROCAL, p, {1, 0.25f, 4, 0.0625f}, 0},
        {TORCH_UNARY_STEP, a, {1, 0, 0, 1}, 0},
        {TORCH_UNARY_SIGN, a, {1, -1, 0, 1}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tensor *r = tensor_unary(cases[i].op, cases[i].in);
        expect(r, S(4), cases[i].want, cases[i].tol);
        tensor_free(r);
    }
    tensor_free(a);
    tensor_free(p);
}

Test(tensor_ops, unary_special_values) {
    tensor *a = from((const float[]){NAN, -INFINITY, INFINITY, -1}, S(4));
    tensor *r = tensor_unary(TORCH_UNARY_RELU, a);
    EXPECT(r, 0, S(4), NAN, 0, INFINITY, 0);
    tensor_free(r);
    r = tensor_unary(TORCH_UNARY_RSQRT, a);
    EXPECT(r, 0, S(4), NAN, NAN, 0, NAN);
    tensor_free(r);
    r = tensor_unary(TORCH_UNARY_STEP, a);
    EXPECT(r, 0, S(4), 0, 0, 1, 0);
    tensor_free(r);
    r = tensor_unary(TORCH_UNARY_LOG, a);
    EXPECT(r, 0, S(4), NAN, NAN, INFINITY, NAN);
    tensor_free(r);
    tensor *z = from((const float[]){0}, S(1));
    r = tensor_unary(TORCH_UNARY_RSQRT, z);
    EXPECT(r, 0, S(1), INFINITY);
    tensor_free(r);
    tensor_free(z);
    tensor_free(a);
}

/* ---- reductions ----------------------------------------------------------------------------- */

/* x[i, j, k] = 12 i + 4 j + k over [2, 3, 4] */
static tensor *cube(void) { return iota(S(2, 3, 4)); }

Test(tensor_ops, sum_single_dims) {
    tensor *x = cube();
    tensor *r = tensor_sum(x, 1, (const int[]){0}, false);
    EXPECT(r, 0, S(3, 4), 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34);
    tensor_free(r);
    r = tensor_sum(x, 1, (const int[]){1}, true);
    EXPECT(r, 0, S(2, 1, 4), 12, 15, 18, 21, 48, 51, 54, 57);
    tensor_free(r);
    r = tensor_sum(x, 1, (const int[]){-1}, false);
    EXPECT(r, 0, S(2, 3), 6, 22, 38, 54, 70, 86);
    tensor_free(r);
    tensor_free(x);
}

Test(tensor_ops, sum_multiple_and_all_dims) {
    tensor *x = cube();
    tensor *r = tensor_sum(x, 2, (const int[]){0, 2}, false);
    EXPECT(r, 0, S(3), 60, 92, 124);
    tensor_free(r);
    r = tensor_sum(x, 2, (const int[]){-1, 0}, true);
    EXPECT(r, 0, S(1, 3, 1), 60, 92, 124);
    tensor_free(r);
    r = tensor_sum(x, 0, NULL, false); /* 0 + ... + 23 */
    EXPECT0(r, 0, 276);
    tensor_free(r);
    r = tensor_sum(x, 0, NULL, true);
    EXPECT(r, 0, S(1, 1, 1), 276);
    tensor_free(r);
    r = tensor_sum(x, 3, (const int[]){2, 1, 0}, false);
    EXPECT0(r, 0, 276);
    tensor_free(r);
    tensor_free(x);
}

Test(tensor_ops, sum_strided_and_empty) {
    tensor *base = iota(S(2, 3));
    tensor *t = transposed_view(base); /* [[0, 3], [1, 4], [2, 5]] */
    tensor *r = tensor_sum(t, 1, (const int[]){1}, false);
    EXPECT(r, 0, S(3), 3, 5, 7);
    tensor_free(r);
    r = tensor_sum(t, 1, (const int[]){0}, true);
    EXPECT(r, 0, S(1, 2), 3, 12);
    tensor_free(r);
    tensor *e = torch_empty(S(0, 3));
    r = tensor_sum(e, 1, (const int[]){0}, false);
    EXPECT(r, 0, S(3), 0, 0, 0);
    tensor_free(r);
    r = tensor_mean(e, 1, (const int[]){0}, false);
    EXPECT(r, 0, S(3), NAN, NAN, NAN);
    tensor_free(r);
    r = tensor_sum(e, 1, (const int[]){1}, false);
    cr_assert(r && r->ndim == 1 && r->shape[0] == 0);
    tensor_free(r);
    tensor *z = torch_scalar(2.5f); /* a 0-dim tensor reduces over dim 0 or -1 */
    r = tensor_sum(z, 1, (const int[]){-1}, false);
    EXPECT0(r, 0, 2.5f);
    tensor_free(r);
    tensor_free(z);
    tensor_free(e);
    tensor_free(t);
    tensor_free(base);
}

/* Reference: sum in double, in row-major order of the reduced index, then rounded. */
Test(tensor_ops, sum_large_is_exact_double_accumulation) {
    const int64_t N = 700, C = 300;
    tensor *x = torch_empty(S(N, C));
    float *p = tensor_data_f32(x);
    for (int64_t i = 0; i < N * C; i++) p[i] = 1.0f / (float)(1 + i % 1013) + (float)(i % 7);
    tensor *s0 = tensor_sum(x, 1, (const int[]){0}, false); /* over the batch: kept dim is fast */
    tensor *s1 = tensor_sum(x, 1, (const int[]){1}, false);
    tensor *m0 = tensor_mean(x, 1, (const int[]){0}, true);
    cr_assert(s0 && s1 && m0);
    for (int64_t c = 0; c < C; c++) {
        double acc = 0;
        for (int64_t n = 0; n < N; n++) acc += (double)p[n * C + c];
        cr_assert_eq(tensor_data_f32(s0)[c], (float)acc, "column %ld", (long)c);
        cr_assert_eq(tensor_data_f32(m0)[c], (float)(acc / (double)N), "column %ld", (long)c);
    }
    for (int64_t n = 0; n < N; n++) {
        double acc = 0;
        for (int64_t c = 0; c < C; c++) acc += (double)p[n * C + c];
        cr_assert_eq(tensor_data_f32(s1)[n], (float)acc, "row %ld", (long)n);
    }
    /* the same columns through a transposed view: now the reduced dim is the fast one */
    tensor *xt = transposed_view(x);
    tensor *s2 = tensor_sum(xt, 1, (const int[]){1}, false);
    cr_assert_not_null(s2);
    for (int64_t c = 0; c < C; c++) cr_assert_eq(tensor_data_f32(s2)[c], tensor_data_f32(s0)[c]);
    tensor_free(s2);
    tensor_free(xt);
    tensor_free(s0);
    tensor_free(s1);
    tensor_free(m0);
    tensor_free(x);
}

Test(tensor_ops, mean_dims) {
    tensor *x = cube();
    tensor *r = tensor_mean(x, 1, (const int[]){2}, false);
    EXPECT(r, 0, S(2, 3), 1.5f, 5.5f, 9.5f, 13.5f, 17.5f, 21.5f);
    tensor_free(r);
    r = tensor_mean(x, 2, (const int[]){0, 1}, true);
    EXPECT(r, 0, S(1, 1, 4), 10, 11, 12, 13);
    tensor_free(r);
    r = tensor_mean(x, 0, NULL, false);
    EXPECT0(r, 0, 11.5f);
    tensor_free(r);
    tensor_free(x);
}

Test(tensor_ops, var_biased_and_unbiased) {
    /* rows: {1, 2, 3, 4}: mean 2.5, squared deviations sum 5;  {2, 2, 2, 10}: mean 4, sum 48 */
    tensor *x = from((const float[]){1, 2, 3, 4, 2, 2, 2, 10}, S(2, 4));
    tensor *r = tensor_var(x, 1, (const int[]){1}, 0, false);
    EXPECT(r, 1e-7, S(2), 1.25f, 12);
    tensor_free(r);
    r = tensor_var(x, 1, (const int[]){-1}, 1, true);
    EXPECT(r, 1e-7, S(2, 1), 5.0f / 3.0f, 16);
    tensor_free(r);
    /* over dim 0: columns {1,2}, {2,2}, {3,2}, {4,10} */
    r = tensor_var(x, 1, (const int[]){0}, 1, false);
    EXPECT(r, 1e-7, S(4), 0.5f, 0, 0.5f, 18);
    tensor_free(r);
    /* all: mean 3.25, squared deviations sum 57.5 */
    r = tensor_var(x, 0, NULL, 0, false);
    EXPECT0(r, 1e-7, 57.5f / 8.0f);
    tensor_free(r);
    r = tensor_var(x, 2, (const int[]){0, 1}, 1, true);
    EXPECT(r, 1e-7, S(1, 1), 57.5f / 7.0f);
    tensor_free(r);
    tensor_free(x);
}

Test(tensor_ops, var_large_mean) {
    /* 1e4 + {-1, 0, 1, 2} repeated: biased variance exactly 1.25 */
    const int64_t n = 4000;
    tensor *x = torch_empty(S(n));
    float *p = tensor_data_f32(x);
    for (int64_t i = 0; i < n; i++) p[i] = 1.0e4f + (float)(i % 4 - 1);
    tensor *r = tensor_var(x, 0, NULL, 0, false);
    cr_assert_not_null(r);
    cr_assert(fabs(tensor_item(r) - 1.25) <= 1e-3 * 1.25, "var %.9g", tensor_item(r));
    tensor_free(r);
    r = tensor_var(x, 1, (const int[]){0}, 1, false);
    double want = 1.25 * (double)n / (double)(n - 1);
    cr_assert(fabs(tensor_item(r) - want) <= 1e-3 * want, "var %.9g", tensor_item(r));
    tensor_free(r);
    tensor_free(x);
}

Test(tensor_ops, var_degenerate_counts) {
    tensor *one = from((const float[]){3}, S(1));
    tensor *r = tensor_var(one, 0, NULL, 1, false); /* 0 / 0 */
    EXPECT0(r, 0, NAN);
    tensor_free(r);
    r = tensor_var(one, 0, NULL, 0, false);
    EXPECT0(r, 0, 0);
    tensor_free(r);
    tensor *two = from((const float[]){1, 3}, S(2));
    r = tensor_var(two, 0, NULL, 5, false); /* divisor max(0, 2 - 5) = 0, positive sum: inf */
    EXPECT0(r, 0, INFINITY);
    tensor_free(r);
    tensor_free(two);
    tensor_free(one);
}

Test(tensor_ops, reduction_errors) {
    tensor *x = cube();
    tensor *i64 = torch_empty_dtype(TORCH_INT64, S(2));
    cr_assert_null(tensor_sum(x, 2, (const int[]){1, 1}, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_sum: dim 1 appears multiple times in the list of dims");
    cr_assert_null(tensor_mean(x, 2, (const int[]){-1, 2}, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_mean: dim 2 appears multiple times in the list of dims");
    cr_assert_null(tensor_var(x, 1, (const int[]){3}, 1, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT,
                 "torch_var: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
    cr_assert_null(tensor_sum(x, 1, (const int[]){-4}, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "but got -4");
    cr_assert_null(tensor_sum(NULL, 0, NULL, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_sum: input is NULL");
    cr_assert_null(tensor_mean(i64, 0, NULL, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_mean: expected input to be float32 (got int64)");
    cr_assert_null(tensor_sum(x, 2, NULL, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_sum: dims is NULL");
    cr_assert_null(tensor_sum(x, -1, NULL, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_sum");
    tensor_free(i64);
    tensor_free(x);
}

/* ---- max / argmax --------------------------------------------------------------------------- */

Test(tensor_ops, max_dim_with_indices) {
    tensor *x = from((const float[]){1, 5, 5, -2, 7, 0, 3, 7, 7}, S(3, 3));
    tensor *idx = NULL;
    tensor *v = tensor_max_dim(x, 1, false, &idx);
    EXPECT(v, 0, S(3), 5, 7, 7);
    cr_assert(idx && idx->dtype == TORCH_INT64 && idx->ndim == 1 && idx->shape[0] == 3);
    cr_assert(tensor_data_i64(idx)[0] == 1 && tensor_data_i64(idx)[1] == 1 && tensor_data_i64(idx)[2] == 1);
    tensor_free(v);
    tensor_free(idx);
    v = tensor_max_dim(x, 0, true, &idx);
    EXPECT(v, 0, S(1, 3), 3, 7, 7);
    cr_assert(idx->ndim == 2 && idx->shape[0] == 1 && idx->shape[1] == 3);
    cr_assert(tensor_data_i64(idx)[0] == 2 && tensor_data_i64(idx)[1] == 1 && tensor_data_i64(idx)[2] == 2);
    tensor_free(v);
    tensor_free(idx);
    v = tensor_max_dim(x, -1, true, NULL); /* indices are optional */
    EXPECT(v, 0, S(3, 1), 5, 7, 7);
    tensor_free(v);
    tensor_free(x);
}

Test(tensor_ops, max_nan_and_strided) {
    tensor *x = from((const float[]){1, NAN, 3, NAN, 0, 2}, S(2, 3));
    tensor *idx = NULL;
    tensor *v = tensor_max_dim(x, 1, false, &idx);
    EXPECT(v, 0, S(2), NAN, NAN);
    cr_assert(tensor_data_i64(idx)[0] == 1 && tensor_data_i64(idx)[1] == 0);
    tensor_free(v);
    tensor_free(idx);
    v = tensor_max_all(x);
    EXPECT0(v, 0, NAN);
    tensor_free(v);
    tensor_free(x);
    tensor *base = from((const float[]){4, -1, 9, 2, 8, 0}, S(2, 3));
    tensor *t = transposed_view(base); /* [[4, 2], [-1, 8], [9, 0]] */
    tensor *am = tensor_argmax(t, 1, false);
    cr_assert(am && am->dtype == TORCH_INT64 && am->ndim == 1 && am->shape[0] == 3);
    cr_assert(tensor_data_i64(am)[0] == 0 && tensor_data_i64(am)[1] == 1 && tensor_data_i64(am)[2] == 0);
    tensor_free(am);
    am = tensor_argmax(t, 0, true);
    cr_assert(am->ndim == 2 && am->shape[0] == 1 && am->shape[1] == 2);
    cr_assert(tensor_data_i64(am)[0] == 2 && tensor_data_i64(am)[1] == 1);
    tensor_free(am);
    v = tensor_max_all(t);
    EXPECT0(v, 0, 9);
    tensor_free(v);
    tensor_free(t);
    tensor_free(base);
}

Test(tensor_ops, max_of_negative_values_and_scalars) {
    tensor *x = from((const float[]){-5, -3, -INFINITY, -4}, S(4));
    tensor *v = tensor_max_all(x);
    EXPECT0(v, 0, -3);
    tensor_free(v);
    tensor *am = tensor_argmax(x, 0, false);
    cr_assert(am && am->ndim == 0 && tensor_data_i64(am)[0] == 1);
    tensor_free(am);
    tensor *z = torch_scalar(-2);
    tensor *idx = NULL;
    v = tensor_max_dim(z, 0, false, &idx);
    EXPECT0(v, 0, -2);
    cr_assert(idx->ndim == 0 && tensor_data_i64(idx)[0] == 0);
    tensor_free(v);
    tensor_free(idx);
    tensor_free(z);
    tensor_free(x);
}

Test(tensor_ops, max_errors) {
    tensor *x = torch_zeros(S(2, 3));
    tensor *e = torch_empty(S(0, 3));
    tensor *idx = NULL;
    cr_assert_null(tensor_max_dim(x, 2, false, &idx));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_max: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    cr_assert_null(idx);
    cr_assert_null(tensor_argmax(e, 0, false));
    expect_error(TORCH_ERR_SHAPE, "torch_argmax: Expected reduction dim 0 to have non-zero size");
    cr_assert_null(tensor_max_dim(e, 0, false, &idx));
    expect_error(TORCH_ERR_SHAPE, "torch_max: Expected reduction dim 0 to have non-zero size");
    cr_assert_null(idx);
    cr_assert_null(tensor_max_all(e));
    expect_error(TORCH_ERR_SHAPE, "torch_max: Expected reduction dim to be specified for input.numel() == 0");
    cr_assert_null(tensor_max_all(NULL));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_max: input is NULL");
    tensor *ok = tensor_argmax(e, 1, false); /* reducing a non-empty dim of an empty tensor is fine */
    cr_assert(ok && ok->ndim == 1 && ok->shape[0] == 0);
    tensor_free(ok);
    tensor_free(e);
    tensor_free(x);
}

/* ---- sum_to / expand ------------------------------------------------------------------------ */

Test(tensor_ops, sum_to_shapes) {
    tensor *x = iota(S(2, 3)); /* [[0, 1, 2], [3, 4, 5]] */
    tensor *r = tensor_sum_to(x, S(3));
    EXPECT(r, 0, S(3), 3, 5, 7);
    tensor_free(r);
    r = tensor_sum_to(x, S(1, 3));
    EXPECT(r, 0, S(1, 3), 3, 5, 7);
    tensor_free(r);
    r = tensor_sum_to(x, S(2, 1));
    EXPECT(r, 0, S(2, 1), 3, 12);
    tensor_free(r);
    r = tensor_sum_to(x, 0, NULL);
    EXPECT0(r, 0, 15);
    tensor_free(r);
    r = tensor_sum_to(x, S(2, 3));
    EXPECT(r, 0, S(2, 3), 0, 1, 2, 3, 4, 5);
    cr_assert_neq(r, x);
    tensor_free(r);
    tensor_free(x);
    tensor *y = cube(); /* [2, 3, 4] -> [3, 1]: sum over dims 0 and 2 */
    r = tensor_sum_to(y, S(3, 1));
    EXPECT(r, 0, S(3, 1), 60, 92, 124);
    tensor_free(r);
    r = tensor_sum_to(y, S(1, 1, 4));
    EXPECT(r, 0, S(1, 1, 4), 60, 66, 72, 78);
    tensor_free(r);
    tensor_free(y);
}

Test(tensor_ops, sum_to_errors) {
    tensor *x = torch_zeros(S(2, 3));
    cr_assert_null(tensor_sum_to(x, S(2)));
    expect_error(TORCH_ERR_SHAPE, "torch_sum_to: size [2] is not expandable to size [2, 3]");
    cr_assert_null(tensor_sum_to(x, S(1, 2, 3)));
    expect_error(TORCH_ERR_SHAPE, "size [1, 2, 3] is not expandable to size [2, 3]");
    cr_assert_null(tensor_sum_to(NULL, S(3)));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_sum_to: input is NULL");
    tensor_free(x);
}

Test(tensor_ops, expand_views) {
    tensor *v = from((const float[]){1, 2, 3}, S(3));
    tensor *e = tensor_expand(v, S(2, 3));
    cr_assert_not_null(e);
    cr_assert(e->ndim == 2 && e->shape[0] == 2 && e->shape[1] == 3 && e->stride[0] == 0 && e->stride[1] == 1);
    cr_assert_eq(e->storage, v->storage);
    cr_assert_eq(tensor_get(e, (const int64_t[]){1, 2}), 3.0);
    tensor *r = tensor_binary_scalar(TORCH_BINARY_MUL, e, 2); /* values through the view */
    EXPECT(r, 0, S(2, 3), 2, 4, 6, 2, 4, 6);
    tensor_free(r);
    tensor_free(e);
    tensor *col = from((const float[]){1, 2}, S(2, 1));
    e = tensor_expand(col, S(2, -1, 4));
    cr_assert(e && e->ndim == 3 && e->shape[0] == 2 && e->shape[1] == 2 && e->shape[2] == 4);
    cr_assert(e->stride[0] == 0 && e->stride[1] == 1 && e->stride[2] == 0);
    r = tensor_sum(e, 0, NULL, false);
    EXPECT0(r, 0, 24);
    tensor_free(r);
    tensor_free(e);
    tensor *z = torch_scalar(7);
    e = tensor_expand(z, S(2, 2));
    r = tensor_binary_scalar(TORCH_BINARY_ADD, e, 0);
    EXPECT(r, 0, S(2, 2), 7, 7, 7, 7);
    tensor_free(r);
    tensor_free(e);
    tensor_free(z);
    tensor_free(col);
    tensor_free(v);
}

Test(tensor_ops, expand_errors) {
    tensor *x = torch_zeros(S(2, 3));
    cr_assert_null(tensor_expand(x, S(2, 4)));
    expect_error(TORCH_ERR_SHAPE,
                 "torch_expand: The expanded size of the tensor (4) must match the existing size (3) at "
                 "non-singleton dimension 1");
    cr_assert_null(tensor_expand(x, S(3)));
    expect_error(TORCH_ERR_SHAPE, "the number of sizes provided (1) must be greater or equal to the number of dimensions in the tensor (2)");
    cr_assert_null(tensor_expand(NULL, S(3)));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_expand: input is NULL");
    tensor_free(x);
}

/* ---- mm ------------------------------------------------------------------------------------- */

/* A = [[1, 2, 3], [4, 5, 6]], B = [[7, 8], [9, 10], [11, 12]]: A @ B = [[58, 64], [139, 154]] */
Test(tensor_ops, mm_plain_and_flags) {
    tensor *a = from((const float[]){1, 2, 3, 4, 5, 6}, S(2, 3));
    tensor *b = from((const float[]){7, 8, 9, 10, 11, 12}, S(3, 2));
    tensor *at = from((const float[]){1, 4, 2, 5, 3, 6}, S(3, 2));  /* A^T stored */
    tensor *bt = from((const float[]){7, 9, 11, 8, 10, 12}, S(2, 3)); /* B^T stored */
    tensor *r = tensor_mm(a, false, b, false);
    EXPECT(r, 0, S(2, 2), 58, 64, 139, 154);
    tensor_free(r);
    r = tensor_mm(at, true, b, false);
    EXPECT(r, 0, S(2, 2), 58, 64, 139, 154);
    tensor_free(r);
    r = tensor_mm(a, false, bt, true);
    EXPECT(r, 0, S(2, 2), 58, 64, 139, 154);
    tensor_free(r);
    r = tensor_mm(at, true, bt, true);
    EXPECT(r, 0, S(2, 2), 58, 64, 139, 154);
    tensor_free(r);
    /* B @ A = [[39, 54, 69], [49, 68, 87], [59, 82, 105]] */
    r = tensor_mm(b, false, a, false);
    EXPECT(r, 0, S(3, 3), 39, 54, 69, 49, 68, 87, 59, 82, 105);
    tensor_free(r);
    tensor_free(a);
    tensor_free(b);
    tensor_free(at);
    tensor_free(bt);
}

Test(tensor_ops, mm_strided_inputs) {
    tensor *a_store = from((const float[]){1, 4, 2, 5, 3, 6}, S(3, 2));
    tensor *a = transposed_view(a_store); /* [[1, 2, 3], [4, 5, 6]] with strides [1, 2] */
    tensor *b = from((const float[]){7, 8, 9, 10, 11, 12}, S(3, 2));
    tensor *r = tensor_mm(a, false, b, false);
    EXPECT(r, 0, S(2, 2), 58, 64, 139, 154);
    tensor_free(r);
    /* trans flag on a transposed view: op(a) = a^T = [[1, 4], [2, 5], [3, 6]];
     * a^T @ [[1, 0, 2], [0, 1, -1]] = [[1, 4, -2], [2, 5, -1], [3, 6, 0]] */
    tensor *c = from((const float[]){1, 0, 2, 0, 1, -1}, S(2, 3));
    r = tensor_mm(a, true, c, false);
    EXPECT(r, 0, S(3, 3), 1, 4, -2, 2, 5, -1, 3, 6, 0);
    tensor_free(r);
    /* a layout sgemm cannot read: every other column of a wider matrix (copied first) */
    tensor *wide = from((const float[]){1, -1, 2, -1, 3, -1, 4, -1, 5, -1, 6, -1}, S(2, 6));
    tensor *sparse = tensor_as_strided(wide, 2, (const int64_t[]){2, 3}, (const int64_t[]){6, 2}, 0);
    r = tensor_mm(sparse, false, b, false);
    EXPECT(r, 0, S(2, 2), 58, 64, 139, 154);
    tensor_free(r);
    /* a stride-0 (expanded) operand: rows all [1, 2, 3] */
    tensor *row = from((const float[]){1, 2, 3}, S(3));
    tensor *ex = tensor_expand(row, S(2, 3));
    r = tensor_mm(ex, false, b, false);
    EXPECT(r, 0, S(2, 2), 58, 64, 58, 64);
    tensor_free(r);
    /* a view with an offset: rows 1..2 of [[0, 0], [7, 8], [9, 10], [11, 12]] */
    tensor *padded = from((const float[]){0, 0, 7, 8, 9, 10, 11, 12}, S(4, 2));
    tensor *tail = tensor_as_strided(padded, 2, (const int64_t[]){3, 2}, (const int64_t[]){2, 1}, 2);
    tensor *a_c = from((const float[]){1, 2, 3, 4, 5, 6}, S(2, 3));
    r = tensor_mm(a_c, false, tail, false);
    EXPECT(r, 0, S(2, 2), 58, 64, 139, 154);
    tensor_free(r);
    tensor_free(a_c);
    tensor_free(tail);
    tensor_free(padded);
    tensor_free(ex);
    tensor_free(row);
    tensor_free(sparse);
    tensor_free(wide);
    tensor_free(c);
    tensor_free(b);
    tensor_free(a);
    tensor_free(a_store);
}

Test(tensor_ops, mm_vectors_and_empty) {
    tensor *r1 = from((const float[]){1, 2, 3}, S(1, 3));
    tensor *c1 = from((const float[]){4, 5, 6}, S(3, 1));
    tensor *r = tensor_mm(r1, false, c1, false);
    EXPECT(r, 0, S(1, 1), 32);
    tensor_free(r);
    r = tensor_mm(c1, false, r1, false);
    EXPECT(r, 0, S(3, 3), 4, 8, 12, 5, 10, 15, 6, 12, 18);
    tensor_free(r);
    tensor *k0a = torch_empty(S(2, 0));
    tensor *k0b = torch_empty(S(0, 3));
    r = tensor_mm(k0a, false, k0b, false);
    EXPECT(r, 0, S(2, 3), 0, 0, 0, 0, 0, 0);
    tensor_free(r);
    tensor *m0 = torch_empty(S(0, 3));
    r = tensor_mm(m0, false, c1, false);
    cr_assert(r && r->ndim == 2 && r->shape[0] == 0 && r->shape[1] == 1);
    tensor_free(r);
    tensor_free(m0);
    tensor_free(k0a);
    tensor_free(k0b);
    tensor_free(r1);
    tensor_free(c1);
}

Test(tensor_ops, mm_larger_against_loop) {
    const int64_t M = 37, K = 53, N = 29;
    tensor *a = torch_empty(S(M, K));
    tensor *b = torch_empty(S(N, K)); /* used transposed */
    float *pa = tensor_data_f32(a), *pb = tensor_data_f32(b);
    for (int64_t i = 0; i < M * K; i++) pa[i] = (float)((i * 7) % 11) - 5.0f;
    for (int64_t i = 0; i < N * K; i++) pb[i] = (float)((i * 3) % 13) - 6.0f;
    tensor *r = tensor_mm(a, false, b, true); /* small integers: exact in float */
    cr_assert_not_null(r);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (double)pa[i * K + k] * (double)pb[j * K + k];
            cr_assert_eq(tensor_data_f32(r)[i * N + j], (float)acc, "(%ld, %ld)", (long)i, (long)j);
        }
    tensor_free(r);
    tensor_free(a);
    tensor_free(b);
}

Test(tensor_ops, mm_errors) {
    tensor *a = torch_zeros(S(2, 3));
    tensor *b = torch_zeros(S(4, 5));
    tensor *c3 = torch_zeros(S(2, 3, 4));
    tensor *i64 = torch_empty_dtype(TORCH_INT64, S(3, 2));
    cr_assert_null(tensor_mm(a, false, b, false));
    expect_error(TORCH_ERR_SHAPE, "torch_matmul: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
    cr_assert_null(tensor_mm(a, true, b, false));
    expect_error(TORCH_ERR_SHAPE, "torch_matmul: mat1 and mat2 shapes cannot be multiplied (3x2 and 4x5)");
    cr_assert_null(tensor_mm(c3, false, a, false));
    expect_error(TORCH_ERR_SHAPE, "torch_matmul: expected 2-D tensors (got 3-D and 2-D)");
    cr_assert_null(tensor_mm(a, false, i64, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_matmul: expected input to be float32 (got int64)");
    cr_assert_null(tensor_mm(NULL, false, a, false));
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_matmul: input is NULL");
    tensor_free(a);
    tensor_free(b);
    tensor_free(c3);
    tensor_free(i64);
}

/* ---- in place ------------------------------------------------------------------------------- */

Test(tensor_ops, add_inplace) {
    tensor *d = from((const float[]){1, 2, 3, 4, 5, 6}, S(2, 3));
    tensor *s = from((const float[]){10, 20, 30}, S(3));
    cr_assert_eq(tensor_add_(d, s, 1.0), TORCH_OK);
    EXPECT(d, 0, S(2, 3), 11, 22, 33, 14, 25, 36);
    cr_assert_eq(tensor_add_(d, s, -0.5), TORCH_OK);
    EXPECT(d, 0, S(2, 3), 6, 12, 18, 9, 15, 21);
    tensor *same = from((const float[]){1, 1, 1, 1, 1, 1}, S(2, 3));
    cr_assert_eq(tensor_add_(d, same, 2.0), TORCH_OK);
    EXPECT(d, 0, S(2, 3), 8, 14, 20, 11, 17, 23);
    cr_assert_eq(tensor_add_(d, d, 1.0), TORCH_OK); /* aliasing itself doubles */
    EXPECT(d, 0, S(2, 3), 16, 28, 40, 22, 34, 46);
    tensor_free(same);
    tensor_free(d);
    tensor_free(s);
}

Test(tensor_ops, add_inplace_strided_dst) {
    tensor *base = iota(S(2, 3)); /* [[0, 1, 2], [3, 4, 5]] */
    tensor *t = transposed_view(base); /* [3, 2] */
    tensor *s = from((const float[]){100, 200}, S(2));
    cr_assert_eq(tensor_add_(t, s, 1.0), TORCH_OK); /* t[i, j] += s[j]  => base[j, i] += s[j] */
    EXPECT(base, 0, S(2, 3), 100, 101, 102, 203, 204, 205);
    cr_assert_eq(tensor_mul_scalar_(t, 0.5), TORCH_OK);
    EXPECT(base, 0, S(2, 3), 50, 50.5f, 51, 101.5f, 102, 102.5f);
    tensor_free(s);
    tensor_free(t);
    tensor_free(base);
}

Test(tensor_ops, mul_scalar_inplace) {
    tensor *d = from((const float[]){1, -2, 3}, S(3));
    cr_assert_eq(tensor_mul_scalar_(d, -2.0), TORCH_OK);
    EXPECT(d, 0, S(3), -2, 4, -6);
    tensor *z = torch_scalar(3);
    cr_assert_eq(tensor_mul_scalar_(z, 4.0), TORCH_OK);
    EXPECT0(z, 0, 12);
    tensor *e = torch_empty(S(0));
    cr_assert_eq(tensor_mul_scalar_(e, 4.0), TORCH_OK);
    tensor_free(e);
    tensor_free(z);
    tensor_free(d);
}

Test(tensor_ops, inplace_errors_change_nothing) {
    tensor *d = from((const float[]){1, 2, 3}, S(3));
    tensor *s = from((const float[]){1, 2, 3, 4, 5, 6}, S(2, 3));
    tensor *w = from((const float[]){1, 2}, S(2));
    tensor *i64 = torch_empty_dtype(TORCH_INT64, S(3));
    cr_assert_eq(tensor_add_(d, s, 1.0), TORCH_ERR_SHAPE);
    expect_error(TORCH_ERR_SHAPE, "torch_add_: output with shape [3] doesn't match the broadcast shape [2, 3]");
    cr_assert_eq(tensor_add_(d, w, 1.0), TORCH_ERR_SHAPE);
    expect_error(TORCH_ERR_SHAPE, "torch_add_: shapes [3] and [2] cannot be broadcast");
    cr_assert_eq(tensor_add_(d, i64, 1.0), TORCH_ERR_INVALID_ARGUMENT);
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_add_: expected input to be float32 (got int64)");
    cr_assert_eq(tensor_add_(NULL, d, 1.0), TORCH_ERR_INVALID_ARGUMENT);
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "torch_add_: input is NULL");
    cr_assert_eq(tensor_mul_scalar_(i64, 2.0), TORCH_ERR_INVALID_ARGUMENT);
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "expected input to be float32 (got int64)");
    cr_assert_eq(tensor_mul_scalar_(NULL, 2.0), TORCH_ERR_INVALID_ARGUMENT);
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "input is NULL");
    tensor *ex = tensor_expand(d, S(2, 3)); /* writing through a stride-0 view is refused */
    cr_assert_eq(tensor_add_(ex, s, 1.0), TORCH_ERR_INVALID_ARGUMENT);
    expect_error(TORCH_ERR_INVALID_ARGUMENT, "more than one element of the written-to tensor");
    cr_assert_eq(tensor_mul_scalar_(ex, 2.0), TORCH_ERR_INVALID_ARGUMENT);
    EXPECT(d, 0, S(3), 1, 2, 3); /* untouched by every refused call */
    tensor_free(ex);
    tensor_free(d);
    tensor_free(s);
    tensor_free(w);
    tensor_free(i64);
}
