/* elementwise.c — broadcasting, element-wise kernels (binary, scalar, unary), expand and the
 * in-place add_/mul_scalar_ (see ops.h).
 *
 * One strided engine serves every element-wise kernel: the operands' strides are broadcast to
 * the output shape (stride 0 along broadcast dims), size-1 dims are dropped and adjacent dims
 * that are contiguous for every operand are merged. Same-shape contiguous operands and
 * scalar/one-element operands so collapse to a single flat loop; anything else becomes rows of
 * a plain inner loop. The op is switched on once per row (never per element).
 *
 * Every output element is computed independently of the others, so results are bit-identical
 * for any OpenMP thread count.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

#define EW_PARALLEL_MIN 32768 /* elements below which threads cost more than they save */
#define EW_CHUNK        16384 /* longest piece of the inner loop one thread takes at a time */

/* ---- names ---------------------------------------------------------------------------------- */

static const char *const binary_names[TORCH_BINARY_COUNT] = {
    [TORCH_BINARY_ADD] = "torch_add",         [TORCH_BINARY_SUB] = "torch_sub",
    [TORCH_BINARY_MUL] = "torch_mul",         [TORCH_BINARY_DIV] = "torch_div",
    [TORCH_BINARY_POW] = "torch_pow",         [TORCH_BINARY_MAXIMUM] = "torch_maximum",
    [TORCH_BINARY_MINIMUM] = "torch_minimum", [TORCH_BINARY_EQ] = "torch_eq",
    [TORCH_BINARY_NE] = "torch_ne",           [TORCH_BINARY_LT] = "torch_lt",
    [TORCH_BINARY_LE] = "torch_le",           [TORCH_BINARY_GT] = "torch_gt",
    [TORCH_BINARY_GE] = "torch_ge",
};

static const char *const unary_names[TORCH_UNARY_COUNT] = {
    [TORCH_UNARY_NEG] = "torch_neg",           [TORCH_UNARY_EXP] = "torch_exp",
    [TORCH_UNARY_LOG] = "torch_log",           [TORCH_UNARY_SQRT] = "torch_sqrt",
    [TORCH_UNARY_RSQRT] = "torch_rsqrt",       [TORCH_UNARY_RELU] = "torch_relu",
    [TORCH_UNARY_ABS] = "torch_abs",           [TORCH_UNARY_SQUARE] = "torch_square",
    [TORCH_UNARY_RECIPROCAL] = "torch_reciprocal", [TORCH_UNARY_STEP] = "torch_step",
    [TORCH_UNARY_SIGN] = "torch_sign",
};

const char *torch_binary_op_name(torch_binary_op op) {
    return (unsigned)op < TORCH_BINARY_COUNT ? binary_names[op] : "torch_unknown_op";
}

const char *torch_unary_op_name(torch_unary_op op) {
    return (unsigned)op < TORCH_UNARY_COUNT ? unary_names[op] : "torch_unknown_op";
}

/* ---- checks --------------------------------------------------------------------------------- */

torch_status torch_broadcast_shapes(const char *fname, int a_ndim, const int64_t *a_shape, int b_ndim,
                                    const int64_t *b_shape, int *out_ndim, int64_t *out_shape) {
    if (a_ndim < 0 || a_ndim > TORCH_MAX_DIMS || b_ndim < 0 || b_ndim > TORCH_MAX_DIMS ||
        (a_ndim > 0 && !a_shape) || (b_ndim > 0 && !b_shape) || !out_ndim || !out_shape)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: invalid shapes to broadcast", fname);
    int n = a_ndim > b_ndim ? a_ndim : b_ndim;
    int64_t shape[TORCH_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        int ia = i - (n - a_ndim), ib = i - (n - b_ndim);
        int64_t sa = ia >= 0 ? a_shape[ia] : 1, sb = ib >= 0 ? b_shape[ib] : 1;
        if (sa == sb || sb == 1) {
            shape[i] = sa;
        } else if (sa == 1) {
            shape[i] = sb;
        } else {
            char ba[128], bb[128];
            return torch_error(TORCH_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast", fname,
                               torch_shape_str(a_ndim, a_shape, ba, sizeof ba),
                               torch_shape_str(b_ndim, b_shape, bb, sizeof bb));
        }
    }
    *out_ndim = n;
    for (int i = 0; i < n; i++) out_shape[i] = shape[i];
    return TORCH_OK;
}

/* ---- the strided engine --------------------------------------------------------------------- */

enum { OP_OUT = 0, OP_A = 1, OP_B = 2, EW_MAX_OPERANDS = 3 };

typedef struct ew_iter {
    int     ndim;
    int     noperands; /* 2 for unary (out, a), 3 for binary (out, a, b) */
    int64_t numel;
    int64_t shape[TORCH_MAX_DIMS];
    int64_t stride[EW_MAX_OPERANDS][TORCH_MAX_DIMS];
} ew_iter;

/* Strides of t seen through the broadcast to (ndim, shape): 0 along new and size-1 dims. */
static void broadcast_strides(const tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
    for (int i = 0; i < ndim; i++) {
        int it = i - (ndim - t->ndim);
        stride[i] = (it >= 0 && t->shape[it] == shape[i] && shape[i] != 1) ? t->stride[it] : 0;
    }
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i];
    }
}

/* Drops size-1 dims and merges neighbours that are contiguous for every operand. */
static void ew_coalesce(ew_iter *it) {
    int n = 0;
    for (int d = 0; d < it->ndim; d++) {
        if (it->shape[d] == 1) continue;
        bool merge = n > 0;
        for (int k = 0; k < it->noperands && merge; k++)
            merge = it->stride[k][n - 1] == it->stride[k][d] * it->shape[d];
        if (merge) {
            it->shape[n - 1] *= it->shape[d];
            for (int k = 0; k < it->noperands; k++) it->stride[k][n - 1] = it->stride[k][d];
        } else {
            it->shape[n] = it->shape[d];
            for (int k = 0; k < it->noperands; k++) it->stride[k][n] = it->stride[k][d];
            n++;
        }
    }
    if (n == 0) { /* a single element */
        it->shape[0] = 1;
        for (int k = 0; k < it->noperands; k++) it->stride[k][0] = 0;
        n = 1;
    }
    it->ndim = n;
}

/* Start offsets of task t: row t / nchunks (over dims 0..ndim-2), inner piece t % nchunks. */
static void ew_task(const ew_iter *it, int64_t t, int64_t nchunks, int64_t chunk, int64_t *off, int64_t *len) {
    int last = it->ndim - 1;
    int64_t row = t / nchunks, j0 = (t % nchunks) * chunk;
    int64_t n = it->shape[last] - j0;
    *len = n < chunk ? n : chunk;
    for (int k = 0; k < it->noperands; k++) off[k] = j0 * it->stride[k][last];
    for (int d = last - 1; d >= 0; d--) {
        int64_t i = row % it->shape[d];
        row /= it->shape[d];
        for (int k = 0; k < it->noperands; k++) off[k] += i * it->stride[k][d];
    }
}

/* Internal op codes beyond the public enums. */
enum {
    EW_ADD_ALPHA = TORCH_BINARY_COUNT, /* x + alpha * y */
    EW_RELU_GRAD,                      /* y <= 0 ? 0 : x  (x the gradient, y ReLU's output) */
};
enum {
    EW_CUBE = TORCH_UNARY_COUNT, /* x * x * x   (pow 3, as PyTorch computes it) */
    EW_INV_SQUARE,               /* 1 / (x * x) (pow -2) */
};

static inline float f_max(float x, float y) { return x != x ? x : (y != y ? y : (x > y ? x : y)); }
static inline float f_min(float x, float y) { return x != x ? x : (y != y ? y : (x < y ? x : y)); }

/* One row: n elements with strides so, sa, sb. The common stride patterns get plain loops. */
#define BIN_CASE(OP, EXPR)                                                                          \
    case OP:                                                                                        \
        if (so == 1 && sa == 1 && sb == 1) {                                                        \
            for (int64_t j = 0; j < n; j++) {                                                       \
                const float x = a[j], y = b[j];                                                     \
                o[j] = (EXPR);                                                                      \
            }                                                                                       \
        } else if (so == 1 && sa == 1 && sb == 0) {                                                 \
            const float y = b[0];                                                                   \
            for (int64_t j = 0; j < n; j++) {                                                       \
                const float x = a[j];                                                               \
                o[j] = (EXPR);                                                                      \
            }                                                                                       \
        } else if (so == 1 && sa == 0 && sb == 1) {                                                 \
            const float x = a[0];                                                                   \
            for (int64_t j = 0; j < n; j++) {                                                       \
                const float y = b[j];                                                               \
                o[j] = (EXPR);                                                                      \
            }                                                                                       \
        } else {                                                                                    \
            for (int64_t j = 0; j < n; j++) {                                                       \
                const float x = a[j * sa], y = b[j * sb];                                           \
                o[j * so] = (EXPR);                                                                 \
            }                                                                                       \
        }                                                                                           \
        break;

static void binary_row(int op, float alpha, int64_t n, float *o, int64_t so, const float *a, int64_t sa,
                       const float *b, int64_t sb) {
    switch (op) {
        BIN_CASE(TORCH_BINARY_ADD, x + y)
        BIN_CASE(TORCH_BINARY_SUB, x - y)
        BIN_CASE(TORCH_BINARY_MUL, x * y)
        BIN_CASE(TORCH_BINARY_DIV, x / y)
        BIN_CASE(TORCH_BINARY_POW, powf(x, y))
        BIN_CASE(TORCH_BINARY_MAXIMUM, f_max(x, y))
        BIN_CASE(TORCH_BINARY_MINIMUM, f_min(x, y))
        BIN_CASE(TORCH_BINARY_EQ, x == y ? 1.0f : 0.0f)
        BIN_CASE(TORCH_BINARY_NE, x != y ? 1.0f : 0.0f)
        BIN_CASE(TORCH_BINARY_LT, x < y ? 1.0f : 0.0f)
        BIN_CASE(TORCH_BINARY_LE, x <= y ? 1.0f : 0.0f)
        BIN_CASE(TORCH_BINARY_GT, x > y ? 1.0f : 0.0f)
        BIN_CASE(TORCH_BINARY_GE, x >= y ? 1.0f : 0.0f)
        BIN_CASE(EW_ADD_ALPHA, x + alpha * y)
        BIN_CASE(EW_RELU_GRAD, y <= 0.0f ? 0.0f : x)
    default: TORCH_ASSERT(!"unknown binary op");
    }
}
#undef BIN_CASE

#define UN_CASE(OP, EXPR)                                                                           \
    case OP:                                                                                        \
        if (so == 1 && sa == 1) {                                                                   \
            for (int64_t j = 0; j < n; j++) {                                                       \
                const float x = a[j];                                                               \
                o[j] = (EXPR);                                                                      \
            }                                                                                       \
        } else {                                                                                    \
            for (int64_t j = 0; j < n; j++) {                                                       \
                const float x = a[j * sa];                                                          \
                o[j * so] = (EXPR);                                                                 \
            }                                                                                       \
        }                                                                                           \
        break;

static void unary_row(int op, int64_t n, float *o, int64_t so, const float *a, int64_t sa) {
    switch (op) {
        UN_CASE(TORCH_UNARY_NEG, -x)
        UN_CASE(TORCH_UNARY_EXP, expf(x))
        UN_CASE(TORCH_UNARY_LOG, logf(x))
        UN_CASE(TORCH_UNARY_SQRT, sqrtf(x))
        UN_CASE(TORCH_UNARY_RSQRT, 1.0f / sqrtf(x))
        UN_CASE(TORCH_UNARY_RELU, x < 0.0f ? 0.0f : x) /* NaN and -0 stay, as in ATen */
        UN_CASE(TORCH_UNARY_ABS, fabsf(x))
        UN_CASE(TORCH_UNARY_SQUARE, x * x)
        UN_CASE(TORCH_UNARY_RECIPROCAL, 1.0f / x)
        UN_CASE(TORCH_UNARY_STEP, x > 0.0f ? 1.0f : 0.0f)
        UN_CASE(TORCH_UNARY_SIGN, (float)((x > 0.0f) - (x < 0.0f)))
        UN_CASE(EW_CUBE, x * x * x)
        UN_CASE(EW_INV_SQUARE, 1.0f / (x * x))
    default: TORCH_ASSERT(!"unknown unary op");
    }
}
#undef UN_CASE

/* Runs op over the iterator; ptr[k] points at operand k's first element. */
static void ew_run(ew_iter *it, int op, float alpha, float *out, const float *a, const float *b) {
    if (it->numel == 0) return;
    ew_coalesce(it);
    int64_t n = it->shape[it->ndim - 1];
    int64_t chunk = n > EW_CHUNK ? EW_CHUNK : n;
    int64_t nchunks = (n + chunk - 1) / chunk;
    int64_t ntasks = it->numel / n * nchunks;
    int last = it->ndim - 1;
    int64_t so = it->stride[OP_OUT][last], sa = it->stride[OP_A][last];
    int64_t sb = it->noperands > 2 ? it->stride[OP_B][last] : 0;
    const bool parallel = it->numel >= EW_PARALLEL_MIN && ntasks > 1;
    (void)parallel; /* unused without OpenMP */
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t t = 0; t < ntasks; t++) {
        int64_t off[EW_MAX_OPERANDS] = {0, 0, 0}, len;
        ew_task(it, t, nchunks, chunk, off, &len);
        if (it->noperands > 2)
            binary_row(op, alpha, len, out + off[OP_OUT], so, a + off[OP_A], sa, b + off[OP_B], sb);
        else
            unary_row(op, len, out + off[OP_OUT], so, a + off[OP_A], sa);
    }
}

/* ---- public kernels ------------------------------------------------------------------------- */

/* out = a op b with broadcasting; op a public or an internal binary code, named fname. */
static tensor *binary_new(int op, const char *fname, const tensor *a, const tensor *b) {
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_check_float32(fname, "input", b) != TORCH_OK)
        return NULL;
    ew_iter it = {.noperands = 3};
    if (torch_broadcast_shapes(fname, a->ndim, a->shape, b->ndim, b->shape, &it.ndim, it.shape) != TORCH_OK)
        return NULL;
    tensor *out = torch_empty(it.ndim, it.shape);
    if (!out) return NULL;
    it.numel = out->numel;
    contiguous_strides(it.ndim, it.shape, it.stride[OP_OUT]);
    broadcast_strides(a, it.ndim, it.shape, it.stride[OP_A]);
    broadcast_strides(b, it.ndim, it.shape, it.stride[OP_B]);
    ew_run(&it, op, 1.0f, tensor_data_f32(out), tensor_data_f32(a), tensor_data_f32(b));
    return out;
}

tensor *tensor_binary(torch_binary_op op, const tensor *a, const tensor *b) {
    if ((unsigned)op >= TORCH_BINARY_COUNT) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_binary: unknown op %d", (int)op);
        return NULL;
    }
    return binary_new(op, binary_names[op], a, b);
}

tensor *tensor_relu_backward(const tensor *grad, const tensor *out) {
    return binary_new(EW_RELU_GRAD, "relu_backward", grad, out);
}

/* out = op(a) (unary codes, including the internal ones) into a new contiguous tensor. */
static tensor *unary_new(int op, const tensor *a) {
    tensor *out = torch_empty(a->ndim, a->shape);
    if (!out) return NULL;
    ew_iter it = {.noperands = 2, .ndim = a->ndim, .numel = a->numel};
    memcpy(it.shape, a->shape, sizeof it.shape);
    contiguous_strides(a->ndim, a->shape, it.stride[OP_OUT]);
    memcpy(it.stride[OP_A], a->stride, sizeof it.stride[OP_A]);
    ew_run(&it, op, 1.0f, tensor_data_f32(out), tensor_data_f32(a), NULL);
    return out;
}

tensor *tensor_binary_scalar(torch_binary_op op, const tensor *a, double s) {
    if ((unsigned)op >= TORCH_BINARY_COUNT) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_binary_scalar: unknown op %d", (int)op);
        return NULL;
    }
    const char *fname = binary_names[op];
    if (torch_check_float32(fname, "input", a) != TORCH_OK) return NULL;
    /* PyTorch's fast paths for a scalar exponent (PowKernel.cpp), for the same rounding. */
    if (op == TORCH_BINARY_POW) {
        if (s == 2.0) return unary_new(TORCH_UNARY_SQUARE, a);
        if (s == 3.0) return unary_new(EW_CUBE, a);
        if (s == 0.5) return unary_new(TORCH_UNARY_SQRT, a);
        if (s == -0.5) return unary_new(TORCH_UNARY_RSQRT, a);
        if (s == -1.0) return unary_new(TORCH_UNARY_RECIPROCAL, a);
        if (s == -2.0) return unary_new(EW_INV_SQUARE, a);
    }
    const float sf = (float)s; /* a float32 tensor with a Python scalar computes in float32 */
    tensor *out = torch_empty(a->ndim, a->shape);
    if (!out) return NULL;
    ew_iter it = {.noperands = 3, .ndim = a->ndim, .numel = a->numel};
    memcpy(it.shape, a->shape, sizeof it.shape);
    contiguous_strides(a->ndim, a->shape, it.stride[OP_OUT]);
    memcpy(it.stride[OP_A], a->stride, sizeof it.stride[OP_A]);
    /* it.stride[OP_B] stays all zero: the scalar is read in place of every element. */
    ew_run(&it, op, 1.0f, tensor_data_f32(out), tensor_data_f32(a), &sf);
    return out;
}

tensor *tensor_unary(torch_unary_op op, const tensor *a) {
    if ((unsigned)op >= TORCH_UNARY_COUNT) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_unary: unknown op %d", (int)op);
        return NULL;
    }
    if (torch_check_float32(unary_names[op], "input", a) != TORCH_OK) return NULL;
    return unary_new(op, a);
}

/* ---- expand --------------------------------------------------------------------------------- */

tensor *tensor_expand(const tensor *a, int ndim, const int64_t *shape) {
    static const char fname[] = "torch_expand";
    if (!a) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
        return NULL;
    }
    if (ndim < 0 || ndim > TORCH_MAX_DIMS || (ndim > 0 && !shape)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected 0 to %d sizes (got %d%s)", fname, TORCH_MAX_DIMS,
                    ndim, ndim > 0 && !shape ? ", shape NULL" : "");
        return NULL;
    }
    if (ndim < a->ndim) {
        torch_error(TORCH_ERR_SHAPE,
                    "%s: the number of sizes provided (%d) must be greater or equal to the number of dimensions "
                    "in the tensor (%d)",
                    fname, ndim, a->ndim);
        return NULL;
    }
    int64_t out_shape[TORCH_MAX_DIMS], stride[TORCH_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        int ia = i - (ndim - a->ndim);
        int64_t want = shape[i];
        if (ia < 0) { /* a new leading dim */
            if (want < 0) {
                torch_error(TORCH_ERR_SHAPE,
                            "%s: The expanded size of the tensor (%lld) isn't allowed in a leading, "
                            "non-existing dimension %d",
                            fname, (long long)want, i);
                return NULL;
            }
            out_shape[i] = want;
            stride[i] = 0;
            continue;
        }
        int64_t have = a->shape[ia];
        if (want == -1) want = have;
        if (want == have) {
            out_shape[i] = have;
            stride[i] = a->stride[ia];
        } else if (have == 1 && want >= 0) {
            out_shape[i] = want;
            stride[i] = 0;
        } else {
            char bt[128], bs[128];
            torch_error(TORCH_ERR_SHAPE,
                        "%s: The expanded size of the tensor (%lld) must match the existing size (%lld) at "
                        "non-singleton dimension %d.  Target sizes: %s.  Tensor sizes: %s",
                        fname, (long long)want, (long long)have, i, torch_shape_str(ndim, shape, bt, sizeof bt),
                        torch_shape_str(a->ndim, a->shape, bs, sizeof bs));
            return NULL;
        }
    }
    return tensor_as_strided(a, ndim, out_shape, stride, a->offset);
}

/* ---- in place ------------------------------------------------------------------------------- */

torch_status tensor_add_(tensor *dst, const tensor *src, double alpha) {
    static const char fname[] = "torch_add_";
    torch_status st;
    if ((st = torch_check_float32(fname, "input", dst)) != TORCH_OK ||
        (st = torch_check_float32(fname, "input", src)) != TORCH_OK)
        return st;
    ew_iter it = {.noperands = 3};
    if ((st = torch_broadcast_shapes(fname, dst->ndim, dst->shape, src->ndim, src->shape, &it.ndim, it.shape)) !=
        TORCH_OK)
        return st;
    if (it.ndim != dst->ndim || memcmp(it.shape, dst->shape, (size_t)it.ndim * sizeof(int64_t)) != 0) {
        char bo[128], bb[128];
        return torch_error(TORCH_ERR_SHAPE, "%s: output with shape %s doesn't match the broadcast shape %s", fname,
                           torch_shape_str(dst->ndim, dst->shape, bo, sizeof bo),
                           torch_shape_str(it.ndim, it.shape, bb, sizeof bb));
    }
    if ((st = torch_check_inplace(fname, dst)) != TORCH_OK) return st;
    it.numel = dst->numel;
    memcpy(it.stride[OP_OUT], dst->stride, sizeof it.stride[OP_OUT]);
    memcpy(it.stride[OP_A], dst->stride, sizeof it.stride[OP_A]);
    broadcast_strides(src, it.ndim, it.shape, it.stride[OP_B]);
    float *d = tensor_data_f32(dst);
    if (alpha == 1.0)
        ew_run(&it, TORCH_BINARY_ADD, 1.0f, d, d, tensor_data_f32(src));
    else
        ew_run(&it, EW_ADD_ALPHA, (float)alpha, d, d, tensor_data_f32(src));
    tensor_bump_version(dst);
    return TORCH_OK;
}

torch_status tensor_mul_scalar_(tensor *t, double s) {
    static const char fname[] = "torch_mul_";
    torch_status st;
    if ((st = torch_check_float32(fname, "input", t)) != TORCH_OK || (st = torch_check_inplace(fname, t)) != TORCH_OK)
        return st;
    const float sf = (float)s;
    ew_iter it = {.noperands = 3, .ndim = t->ndim, .numel = t->numel};
    memcpy(it.shape, t->shape, sizeof it.shape);
    memcpy(it.stride[OP_OUT], t->stride, sizeof it.stride[OP_OUT]);
    memcpy(it.stride[OP_A], t->stride, sizeof it.stride[OP_A]);
    float *d = tensor_data_f32(t);
    ew_run(&it, TORCH_BINARY_MUL, 1.0f, d, d, &sf);
    tensor_bump_version(t);
    return TORCH_OK;
}
