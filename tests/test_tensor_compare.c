/* torch_equal, torch_allclose and torch_tensor_int64 against hand-computed cases; the borderline
 * answers are PyTorch 1.13's (torch.equal / torch.isclose on the same values, noted per case). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tensor/tensor.h"

static tensor *vec(int n, const float *v) { return torch_tensor(v, TORCH_SHAPE(n)); }

/* allclose of two one-element tensors, with the error cleared first so that a refusal shows. */
static bool close1(float a, float b, double rtol, double atol, bool equal_nan) {
    tensor *x = vec(1, &a), *y = vec(1, &b);
    torch_clear_error();
    bool r = torch_allclose(x, y, rtol, atol, equal_nan);
    cr_assert_eq(torch_last_status(), TORCH_OK, "%s", torch_last_error());
    tensor_free(x);
    tensor_free(y);
    return r;
}

Test(compare, equal_needs_same_shape_and_values) {
    tensor *a = vec(3, (const float[]){1, 2, 3}), *b = vec(3, (const float[]){1, 2, 3});
    tensor *c = vec(3, (const float[]){1, 2, 4}), *d = torch_tensor((const float[]){1, 2, 3}, TORCH_SHAPE(1, 3));
    cr_assert(torch_equal(a, b));
    cr_assert_not(torch_equal(a, c));
    cr_assert_not(torch_equal(a, d), "[3] and [1, 3]: shapes differ, no broadcasting");
    tensor *z = vec(1, (const float[]){0.0f}), *nz = vec(1, (const float[]){-0.0f});
    cr_assert(torch_equal(z, nz), "0 == -0");
    tensor *n = vec(1, (const float[]){NAN});
    cr_assert_not(torch_equal(n, n), "NaN equals nothing, not even itself");
    tensor *e1 = torch_zeros(TORCH_SHAPE(0, 3)), *e2 = torch_zeros(TORCH_SHAPE(0, 3)), *e3 = torch_zeros(TORCH_SHAPE(3, 0));
    cr_assert(torch_equal(e1, e2), "empty tensors of one shape are equal");
    cr_assert_not(torch_equal(e1, e3), "[0, 3] and [3, 0] differ");
    tensor *inf = vec(1, (const float[]){INFINITY});
    cr_assert(torch_equal(inf, inf));
    tensor *list[] = {a, b, c, d, z, nz, n, e1, e2, e3, inf};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) tensor_free(list[i]);
}

Test(compare, equal_reads_views_and_compares_across_dtypes_by_value) {
    tensor *m = torch_tensor((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3));
    /* the transpose as a strided view: [[1, 4], [2, 5], [3, 6]] */
    tensor *t = tensor_as_strided(m, 2, (const int64_t[]){3, 2}, (const int64_t[]){1, 3}, 0);
    tensor *want = torch_tensor((const float[]){1, 4, 2, 5, 3, 6}, TORCH_SHAPE(3, 2));
    cr_assert(torch_equal(t, want));
    /* float32 against int64 compares in float32, as PyTorch promotes: 2^24 + 1 rounds to 2^24
     * (torch.equal(tensor([16777216.]), tensor([16777217])) is True). */
    tensor *f = vec(2, (const float[]){1.0f, 16777216.0f});
    tensor *i = torch_tensor_int64((const int64_t[]){1, 16777217}, TORCH_SHAPE(2));
    cr_assert(torch_equal(f, i));
    tensor *i2 = torch_tensor_int64((const int64_t[]){1, 16777217}, TORCH_SHAPE(2));
    tensor *i3 = torch_tensor_int64((const int64_t[]){1, 16777216}, TORCH_SHAPE(2));
    cr_assert(torch_equal(i, i2));
    cr_assert_not(torch_equal(i, i3), "int64 against int64 compares exactly");
    tensor *list[] = {m, t, want, f, i, i2, i3};
    for (size_t k = 0; k < sizeof list / sizeof *list; k++) tensor_free(list[k]);
}

Test(compare, null_arguments_give_false_with_a_message) {
    tensor *a = vec(1, (const float[]){1});
    torch_clear_error();
    cr_assert_not(torch_equal(a, NULL));
    cr_assert_str_eq(torch_last_error(), "torch_equal: other is NULL");
    cr_assert_not(torch_allclose(NULL, a, 1e-5, 1e-8, false));
    cr_assert_str_eq(torch_last_error(), "torch_allclose: input is NULL");
    tensor_free(a);
}

Test(compare, allclose_is_pytorchs_formula) {
    /* |a - b| <= atol + rtol * |b| */
    cr_assert(close1(100.0f, 100.5f, 0.01, 0, false), "0.5 <= 0.01 * 100.5");
    cr_assert_not(close1(100.0f, 102.0f, 0.01, 0, false), "2 > 1.02");
    cr_assert(close1(0.0f, 1e-9f, 1e-5, 1e-8, false), "near zero only atol counts");
    cr_assert_not(close1(0.0f, 1e-7f, 1e-5, 1e-8, false));
    /* Not symmetric: b is the reference. |1 - 2| = 1 <= 0.5 * |2| but > 0.5 * |1|. */
    cr_assert(close1(1.0f, 2.0f, 0.5, 0, false));
    cr_assert_not(close1(2.0f, 1.0f, 0.5, 0, false));
    /* PyTorch's default tolerances: torch.allclose(tensor([1.]), tensor([1.000009])) is True,
     * and with tensor([1.00001]) it is False: 1.00001f is 1 + 1.00136e-5, and
     * 1.00136e-5 > 1e-8 + 1e-5 * 1.00001. */
    cr_assert(close1(1.0f, 1.000009f, 1e-5, 1e-8, false));
    cr_assert_not(close1(1.0f, 1.00001f, 1e-5, 1e-8, false));
}

Test(compare, allclose_evaluates_in_float32_like_pytorch) {
    /* atol = 0.1 rounds to 0.1f = 0.100000001490116..., exactly |0 - 0.1f|: close in float32
     * (torch.isclose(tensor([0.]), tensor([0.1]), rtol=0, atol=0.1) is True), though in double
     * 0.1 < 0.1000000015 would say no. */
    cr_assert(close1(0.0f, 0.1f, 0, 0.1, false));
    /* The difference of two huge values of opposite sign overflows float32 to inf: not close,
     * whatever rtol (torch.isclose(tensor([3.4e38]), tensor([-3.4e38]), rtol=10) is False). */
    cr_assert_not(close1(3.4e38f, -3.4e38f, 10.0, 0, false));
    /* A tolerance past float's range is inf: then a finite pair is close when b != 0, but not
     * when b == 0, since inf * 0 is NaN (torch.isclose(tensor([-3.]), tensor([1e30]),
     * rtol=1e300) is True; with tensor([0.]) it is False, even with atol=1e300 too). */
    cr_assert(close1(-3.0f, 1e30f, 1e300, 0, false));
    cr_assert_not(close1(-3.0f, 0.0f, 1e300, 0, false));
    cr_assert_not(close1(-3.0f, 0.0f, 1e300, 1e300, false));
}

Test(compare, allclose_nan_and_inf) {
    cr_assert_not(close1(NAN, NAN, 1e-5, 1e-8, false), "NaN is not close to NaN by default");
    cr_assert(close1(NAN, NAN, 1e-5, 1e-8, true), "equal_nan");
    cr_assert_not(close1(NAN, 1.0f, 1e9, 1e9, true), "NaN against a number, whatever the tolerance");
    cr_assert_not(close1(1.0f, NAN, 1e9, 1e9, true));
    cr_assert(close1(INFINITY, INFINITY, 0, 0, false), "equal infinities are close");
    cr_assert_not(close1(INFINITY, -INFINITY, 1e9, 1e9, false));
    /* torch.isclose(tensor([1.]), tensor([inf]), rtol=inf) is False: |1 - inf| is not finite. */
    cr_assert_not(close1(1.0f, INFINITY, INFINITY, 0, false));
    cr_assert_not(close1(INFINITY, 1e38f, 1e9, 1e9, false));
}

Test(compare, allclose_shapes_dtypes_and_empty) {
    tensor *a = vec(3, (const float[]){1, 1, 1}), *one = vec(1, (const float[]){1});
    torch_clear_error();
    cr_assert_not(torch_allclose(a, one, 1e-5, 1e-8, false), "[3] against [1]: no broadcasting");
    cr_assert_eq(torch_last_status(), TORCH_OK, "a shape mismatch is an answer, not an error");
    tensor *e1 = torch_empty(TORCH_SHAPE(0, 3)), *e2 = torch_empty(TORCH_SHAPE(0, 3)), *e3 = torch_empty(TORCH_SHAPE(0));
    cr_assert(torch_allclose(e1, e2, 1e-5, 1e-8, false), "empty tensors of one shape are close");
    cr_assert_not(torch_allclose(e1, e3, 1e-5, 1e-8, false));
    tensor *i = torch_tensor_int64((const int64_t[]){1, 1, 1}, TORCH_SHAPE(3));
    cr_assert_not(torch_allclose(a, i, 1e-5, 1e-8, false));
    cr_assert_str_eq(torch_last_error(),
                     "torch_allclose: expected both tensors to have the same dtype (got float32 and int64)");
    torch_clear_error();
    cr_assert_not(torch_allclose(a, a, -1, 1e-8, false));
    cr_assert_str_eq(torch_last_error(), "torch_allclose: rtol must be greater than or equal to zero, but got -1");
    cr_assert_not(torch_allclose(a, a, 1e-5, NAN, false));
    cr_assert_str_eq(torch_last_error(), "torch_allclose: atol must be greater than or equal to zero, but got nan");
    tensor *list[] = {a, one, e1, e2, e3, i};
    for (size_t k = 0; k < sizeof list / sizeof *list; k++) tensor_free(list[k]);
}

Test(compare, allclose_int64) {
    /* torch.isclose(tensor([1, 5]), tensor([2, 7]), rtol=0.5, atol=0): 1 <= 0.5 * 2, 2 <= 0.5 * 7. */
    tensor *a = torch_tensor_int64((const int64_t[]){1, 5}, TORCH_SHAPE(2));
    tensor *b = torch_tensor_int64((const int64_t[]){2, 7}, TORCH_SHAPE(2));
    cr_assert(torch_allclose(a, b, 0.5, 0, false));
    cr_assert_not(torch_allclose(a, b, 0.4, 0, false), "1 > 0.4 * 2");
    /* The extremes do not overflow: |INT64_MIN - INT64_MAX| is 2^64 - 1. */
    tensor *lo = torch_tensor_int64((const int64_t[]){INT64_MIN}, TORCH_SHAPE(1));
    tensor *hi = torch_tensor_int64((const int64_t[]){INT64_MAX}, TORCH_SHAPE(1));
    cr_assert_not(torch_allclose(lo, hi, 1.0, 0, false), "2^64 - 1 > 1.0 * 2^63");
    cr_assert(torch_allclose(lo, hi, 2.0, 0, false), "2^64 - 1 <= 2.0 * 2^63 in float32");
    tensor *list[] = {a, b, lo, hi};
    for (size_t k = 0; k < sizeof list / sizeof *list; k++) tensor_free(list[k]);
}

Test(tensor_int64, copies_the_array_with_the_float_constructors_rules) {
    int64_t labels[] = {3, 0, 7, -2, INT64_MAX, INT64_MIN};
    tensor *y = torch_tensor_int64(labels, TORCH_SHAPE(2, 3));
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->dtype, TORCH_INT64);
    cr_assert_eq(y->ndim, 2);
    cr_assert_eq(y->shape[1], 3);
    labels[0] = 99; /* the tensor holds a copy: the caller keeps its array */
    cr_assert_eq(memcmp(tensor_data_i64(y), (const int64_t[]){3, 0, 7, -2, INT64_MAX, INT64_MIN}, sizeof labels), 0);
    cr_assert_eq(tensor_get(y, (const int64_t[]){1, 0}), -2.0);
    cr_assert_null(tensor_data_f32(y), "int64 data is not readable as float32");
    tensor_free(y);
    tensor *e = torch_tensor_int64(NULL, TORCH_SHAPE(0));
    cr_assert_null(e, "NULL data is refused, as for torch_tensor");
    cr_assert_str_eq(torch_last_error(), "torch_tensor_int64: input is NULL");
    cr_assert_null(torch_tensor_int64(labels, TORCH_SHAPE(-1)));
    cr_assert_not_null(strstr(torch_last_error(), "torch_tensor_int64"), "%s", torch_last_error());
    tensor *s = torch_tensor_int64((const int64_t[]){5}, 0, NULL);
    cr_assert_eq(s->ndim, 0);
    cr_assert_eq(tensor_item(s), 5.0);
    tensor_free(s);
}
