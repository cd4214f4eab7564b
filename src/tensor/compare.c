/* compare.c — whole-tensor comparisons: torch_equal and torch_allclose (see tensor.h). */
#include "tensor.h"

#include <math.h>

/* Contiguous aliases of a and b, or false: when either is NULL or memory runs out (error set),
 * and when their shapes differ (no error: the answer is simply false). */
static bool contiguous_pair(const char *fname, const tensor *a, const tensor *b, tensor **ca, tensor **cb) {
    *ca = *cb = NULL;
    if (!a || !b) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fname, a ? "other" : "input");
        return false;
    }
    if (!tensor_same_shape(a, b)) return false;
    *ca = tensor_contiguous(a);
    *cb = *ca ? tensor_contiguous(b) : NULL;
    if (*cb) return true;
    tensor_free(*ca);
    *ca = NULL;
    return false;
}

/* Element i as float32, the type PyTorch promotes a float32/int64 pair to. */
static float as_f32(const tensor *t, int64_t i) {
    return t->dtype == TORCH_FLOAT32 ? tensor_data_f32(t)[i] : (float)tensor_data_i64(t)[i];
}

bool torch_equal(const tensor *a, const tensor *b) {
    tensor *ca, *cb;
    if (!contiguous_pair("torch_equal", a, b, &ca, &cb)) return false;
    bool equal = true;
    if (ca->dtype == TORCH_INT64 && cb->dtype == TORCH_INT64) {
        const int64_t *x = tensor_data_i64(ca), *y = tensor_data_i64(cb);
        for (int64_t i = 0; equal && i < ca->numel; i++) equal = x[i] == y[i];
    } else {
        for (int64_t i = 0; equal && i < ca->numel; i++) equal = as_f32(ca, i) == as_f32(cb, i);
    }
    tensor_free(ca);
    tensor_free(cb);
    return equal;
}

/* ATen's isclose, element by element, in float32 as its CPU kernel computes it: the tolerances
 * are rounded to float32, allowed = atol + |rtol * b|, and the difference must be finite (so two
 * huge values of opposite sign whose difference overflows are not close, whatever rtol is). */
static bool close_f32(float a, float b, float rtol, float atol, bool equal_nan) {
    if (a == b) return true;
    if (isnan(a) || isnan(b)) return equal_nan && isnan(a) && isnan(b);
    float actual = fabsf(a - b);
    float allowed = atol + fabsf(rtol * b);
    return isfinite(actual) && actual <= allowed;
}

/* For int64: the difference is compared with the float32 allowance, as ATen promotes
 * int64 <= float32 to float32. One deliberate difference: the difference is exact (unsigned
 * arithmetic), where ATen's int64 subtraction wraps, which makes INT64_MIN close to INT64_MAX
 * with rtol = 1 there. */
static bool close_i64(int64_t a, int64_t b, float rtol, float atol) {
    if (a == b) return true;
    uint64_t diff = a > b ? (uint64_t)a - (uint64_t)b : (uint64_t)b - (uint64_t)a;
    return (float)diff <= atol + fabsf(rtol * (float)b);
}

/* A tolerance in float32 as the hardware rounds it, without the undefined cast of a double past
 * float's range: from FLT_MAX + half an ulp up, the rounded value is inf. */
static float tolerance_f32(double v) { return v >= 0x1.ffffffp127 ? INFINITY : (float)v; }

bool torch_allclose(const tensor *a, const tensor *b, double rtol, double atol, bool equal_nan) {
    static const char *fname = "torch_allclose";
    if (!(rtol >= 0)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: rtol must be greater than or equal to zero, but got %g", fname, rtol);
        return false;
    }
    if (!(atol >= 0)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: atol must be greater than or equal to zero, but got %g", fname, atol);
        return false;
    }
    if (a && b && a->dtype != b->dtype) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected both tensors to have the same dtype (got %s and %s)", fname,
                    torch_dtype_name(a->dtype), torch_dtype_name(b->dtype));
        return false;
    }
    tensor *ca, *cb;
    if (!contiguous_pair(fname, a, b, &ca, &cb)) return false;
    float rt = tolerance_f32(rtol), at = tolerance_f32(atol);
    bool close = true;
    if (ca->dtype == TORCH_INT64) {
        const int64_t *x = tensor_data_i64(ca), *y = tensor_data_i64(cb);
        for (int64_t i = 0; close && i < ca->numel; i++) close = close_i64(x[i], y[i], rt, at);
    } else {
        const float *x = tensor_data_f32(ca), *y = tensor_data_f32(cb);
        for (int64_t i = 0; close && i < ca->numel; i++) close = close_f32(x[i], y[i], rt, at, equal_nan);
    }
    tensor_free(ca);
    tensor_free(cb);
    return close;
}
