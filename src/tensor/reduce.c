/* reduce.c — sum, mean, var, max, argmax and sum_to (see ops.h).
 *
 * Determinism: every output element is reduced by one thread, visiting its inputs in row-major
 * order of the reduced dims and accumulating in double. Threads only split the set of output
 * elements, so the numbers never depend on the thread count. Two loop shapes give the same
 * per-output order: one output at a time (the reduced dims are the fast ones), or a block of
 * neighbouring outputs at a time (the kept dims are the fast ones, e.g. a sum over the batch).
 */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RED_PARALLEL_MIN 32768 /* input elements below which one thread does everything */
#define RED_BLOCK        256   /* outputs reduced together in the block loop */

/* Geometry of a reduction over a's elements: the kept dims (row-major order = output order)
 * and the reduced dims, both coalesced. */
typedef struct red_plan {
    const float *base;
    int          nk, nr;
    int64_t      kshape[TORCH_MAX_DIMS], kstride[TORCH_MAX_DIMS];
    int64_t      rshape[TORCH_MAX_DIMS], rstride[TORCH_MAX_DIMS];
    int64_t      nout, nred;
} red_plan;

/* Appends a dim, merging it into the previous one when their elements are evenly spaced. */
static void push_dim(int *n, int64_t *shape, int64_t *stride, int64_t size, int64_t st) {
    if (size == 1) return;
    if (*n > 0 && stride[*n - 1] == st * size) {
        shape[*n - 1] *= size;
        stride[*n - 1] = st;
        return;
    }
    shape[*n] = size;
    stride[*n] = st;
    (*n)++;
}

static void make_plan(const tensor *a, const bool *reduce, red_plan *p) {
    memset(p, 0, sizeof *p);
    p->base = tensor_data_f32(a);
    p->nout = 1;
    p->nred = 1;
    for (int d = 0; d < a->ndim; d++) {
        if (reduce[d]) {
            push_dim(&p->nr, p->rshape, p->rstride, a->shape[d], a->stride[d]);
            p->nred *= a->shape[d];
        } else {
            push_dim(&p->nk, p->kshape, p->kstride, a->shape[d], a->stride[d]);
            p->nout *= a->shape[d];
        }
    }
}

/* Offset of output element o (row-major over the kept dims). */
static int64_t out_offset(const red_plan *p, int64_t o) {
    int64_t off = 0;
    for (int d = p->nk - 1; d >= 0; d--) {
        off += (o % p->kshape[d]) * p->kstride[d];
        o /= p->kshape[d];
    }
    return off;
}

/* The reduced elements from p, in row-major order: an odometer over the outer reduced dims
 * around a plain loop over the innermost one. BODY sees `x` (float) and `k` (its rank). */
#define FOR_REDUCED(pl, ptr, BODY)                                                                  \
    do {                                                                                            \
        if ((pl)->nred == 0) break;                                                                 \
        const int nr_ = (pl)->nr;                                                                   \
        const int64_t inner_ = nr_ ? (pl)->rshape[nr_ - 1] : 1;                                     \
        const int64_t is_ = nr_ ? (pl)->rstride[nr_ - 1] : 0;                                       \
        int64_t idx_[TORCH_MAX_DIMS] = {0}, off_ = 0, k = 0;                                        \
        for (int64_t row_ = 0; row_ < (pl)->nred / inner_; row_++) {                                \
            const float *q_ = (ptr) + off_;                                                         \
            for (int64_t j_ = 0; j_ < inner_; j_++, k++) {                                          \
                const float x = q_[j_ * is_];                                                       \
                BODY                                                                                \
            }                                                                                       \
            for (int d_ = nr_ - 2; d_ >= 0; d_--) {                                                 \
                off_ += (pl)->rstride[d_];                                                          \
                if (++idx_[d_] < (pl)->rshape[d_]) break;                                           \
                off_ -= idx_[d_] * (pl)->rstride[d_];                                               \
                idx_[d_] = 0;                                                                       \
            }                                                                                       \
        }                                                                                           \
    } while (0)

static double reduce_sum(const red_plan *p, const float *ptr) {
    double acc = 0.0;
    FOR_REDUCED(p, ptr, { (void)k; acc += (double)x; });
    return acc;
}

static double reduce_sqdev(const red_plan *p, const float *ptr, double mean) {
    double acc = 0.0;
    FOR_REDUCED(p, ptr, {
        (void)k;
        double dx = (double)x - mean;
        acc += dx * dx;
    });
    return acc;
}

/* Max and the rank of its first occurrence; the first NaN wins (PyTorch propagates NaN). */
static float reduce_max(const red_plan *p, const float *ptr, int64_t *arg) {
    float best = -INFINITY;
    int64_t bi = 0;
    bool have = false;
    FOR_REDUCED(p, ptr, {
        if (!have || x > best || (x != x && best == best)) {
            best = x;
            bi = k;
            have = true;
        }
    });
    *arg = bi;
    return best;
}

enum red_kind { RED_SUM, RED_MEAN, RED_VAR };

/* Sums a block of up to RED_BLOCK neighbouring outputs along the innermost kept dim and
 * writes sum / divisor (divisor 1 for a sum, the count for a mean: the same division as the
 * one-output-at-a-time path, so both paths give the same bits). */
static void block_sum(const red_plan *p, int64_t task, int64_t nblocks, double divisor, float *out) {
    const int64_t K = p->kshape[p->nk - 1], ks = p->kstride[p->nk - 1];
    const int64_t outer = task / nblocks, b0 = (task % nblocks) * RED_BLOCK;
    const int64_t nb = K - b0 < RED_BLOCK ? K - b0 : RED_BLOCK;
    int64_t off = b0 * ks, o = outer;
    for (int d = p->nk - 2; d >= 0; d--) {
        off += (o % p->kshape[d]) * p->kstride[d];
        o /= p->kshape[d];
    }
    double acc[RED_BLOCK];
    for (int64_t b = 0; b < nb; b++) acc[b] = 0.0;
    /* Same visiting order as FOR_REDUCED, one reduced offset at a time for the whole block. */
    const float *base = p->base + off;
    int64_t idx[TORCH_MAX_DIMS] = {0}, roff = 0;
    for (int64_t r = 0; r < p->nred; r++) {
        const float *q = base + roff;
        for (int64_t b = 0; b < nb; b++) acc[b] += (double)q[b * ks];
        for (int d = p->nr - 1; d >= 0; d--) {
            roff += p->rstride[d];
            if (++idx[d] < p->rshape[d]) break;
            roff -= idx[d] * p->rstride[d];
            idx[d] = 0;
        }
    }
    float *dst = out + outer * K + b0;
    for (int64_t b = 0; b < nb; b++) dst[b] = (float)(acc[b] / divisor);
}

/* Reduces a over the dims flagged in `reduce` into a new tensor of shape (out_ndim, out_shape),
 * whose numel must equal the product of the kept sizes. */
static tensor *reduce_into(const tensor *a, const bool *reduce, int out_ndim, const int64_t *out_shape,
                           enum red_kind kind, int64_t correction) {
    tensor *out = torch_empty(out_ndim, out_shape);
    if (!out) return NULL;
    red_plan p;
    make_plan(a, reduce, &p);
    TORCH_ASSERT(p.nout == out->numel);
    float *o = tensor_data_f32(out);
    if (p.nout == 0) return out;
    const bool parallel = p.nout > 1 && p.nout * p.nred >= RED_PARALLEL_MIN;
    (void)parallel; /* unused without OpenMP */
    const double n = (double)p.nred;
    const double divisor = kind == RED_MEAN ? n : 1.0;

    if (kind != RED_VAR && p.nk > 0 && p.nr > 0 && p.kshape[p.nk - 1] > 1 &&
        llabs(p.kstride[p.nk - 1]) < llabs(p.rstride[p.nr - 1])) {
        const int64_t K = p.kshape[p.nk - 1];
        const int64_t nblocks = (K + RED_BLOCK - 1) / RED_BLOCK;
        const int64_t ntasks = p.nout / K * nblocks;
#pragma omp parallel for schedule(static) if (parallel)
        for (int64_t t = 0; t < ntasks; t++) block_sum(&p, t, nblocks, divisor, o);
        return out;
    }

#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < p.nout; i++) {
        const float *ptr = p.base + out_offset(&p, i);
        double s = reduce_sum(&p, ptr);
        if (kind != RED_VAR) {
            o[i] = (float)(s / divisor);
        } else {
            double mean = s / n;
            double ss = reduce_sqdev(&p, ptr, mean);
            double div = n - (double)correction;
            o[i] = (float)(ss / (div > 0.0 ? div : 0.0));
        }
    }
    return out;
}

/* ---- argument checks ---------------------------------------------------------------------- */

/* Flags the dims to reduce (all when ndims == 0); PyTorch's messages for bad lists. */
static torch_status parse_dims(const char *fname, const tensor *a, int ndims, const int *dims, bool *reduce) {
    if (ndims < 0) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: ndims must be >= 0 (got %d)", fname, ndims);
    if (ndims > 0 && !dims) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: dims is NULL", fname);
    for (int d = 0; d < TORCH_MAX_DIMS; d++) reduce[d] = ndims == 0;
    bool seen[TORCH_MAX_DIMS] = {false};
    for (int i = 0; i < ndims; i++) {
        int d;
        torch_status st = torch_wrap_dim(fname, dims[i], a->ndim, &d);
        if (st != TORCH_OK) return st;
        if (seen[d])
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: dim %d appears multiple times in the list of dims",
                               fname, d);
        seen[d] = true;
        reduce[d] = true;
    }
    return TORCH_OK;
}

/* Output shape: reduced dims become 1 (keepdim) or disappear. */
static int reduced_shape(const tensor *a, const bool *reduce, bool keepdim, int64_t *shape) {
    int n = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (!reduce[d])
            shape[n++] = a->shape[d];
        else if (keepdim)
            shape[n++] = 1;
    }
    return n;
}

static tensor *reduce_dims(const char *fname, const tensor *a, int ndims, const int *dims, bool keepdim,
                           enum red_kind kind, int64_t correction) {
    bool reduce[TORCH_MAX_DIMS];
    if (torch_check_float32(fname, "input", a) != TORCH_OK || parse_dims(fname, a, ndims, dims, reduce) != TORCH_OK)
        return NULL;
    int64_t shape[TORCH_MAX_DIMS];
    int n = reduced_shape(a, reduce, keepdim, shape);
    return reduce_into(a, reduce, n, shape, kind, correction);
}

/* ---- public reductions -------------------------------------------------------------------- */

tensor *tensor_sum(const tensor *a, int ndims, const int *dims, bool keepdim) {
    return reduce_dims("torch_sum", a, ndims, dims, keepdim, RED_SUM, 0);
}

tensor *tensor_mean(const tensor *a, int ndims, const int *dims, bool keepdim) {
    return reduce_dims("torch_mean", a, ndims, dims, keepdim, RED_MEAN, 0);
}

tensor *tensor_var(const tensor *a, int ndims, const int *dims, int64_t correction, bool keepdim) {
    return reduce_dims("torch_var", a, ndims, dims, keepdim, RED_VAR, correction);
}

/* Max (values and/or int64 indices) over one dim. */
static torch_status max_along(const char *fname, const tensor *a, int dim, bool keepdim, tensor **values,
                              tensor **indices) {
    torch_status st;
    int d;
    if ((st = torch_check_float32(fname, "input", a)) != TORCH_OK ||
        (st = torch_wrap_dim(fname, dim, a->ndim, &d)) != TORCH_OK)
        return st;
    bool reduce[TORCH_MAX_DIMS] = {false};
    if (a->ndim > 0) {
        if (a->shape[d] == 0)
            return torch_error(TORCH_ERR_SHAPE, "%s: Expected reduction dim %d to have non-zero size.", fname, d);
        reduce[d] = true;
    }
    int64_t shape[TORCH_MAX_DIMS];
    int n = reduced_shape(a, reduce, keepdim, shape);
    tensor *v = NULL, *ix = NULL;
    if (values && !(v = torch_empty(n, shape))) return torch_last_status();
    if (indices && !(ix = torch_empty_dtype(TORCH_INT64, n, shape))) {
        tensor_free(v);
        return torch_last_status();
    }
    red_plan p;
    make_plan(a, reduce, &p);
    float *vo = v ? tensor_data_f32(v) : NULL;
    int64_t *io = ix ? tensor_data_i64(ix) : NULL;
    const bool parallel = p.nout > 1 && p.nout * p.nred >= RED_PARALLEL_MIN;
    (void)parallel;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < p.nout; i++) {
        int64_t arg;
        float m = reduce_max(&p, p.base + out_offset(&p, i), &arg);
        if (vo) vo[i] = m;
        if (io) io[i] = arg;
    }
    if (values) *values = v;
    if (indices) *indices = ix;
    return TORCH_OK;
}

tensor *tensor_max_dim(const tensor *a, int dim, bool keepdim, tensor **indices) {
    tensor *v = NULL;
    if (max_along("torch_max", a, dim, keepdim, &v, indices) != TORCH_OK) return NULL;
    return v;
}

tensor *tensor_argmax(const tensor *a, int dim, bool keepdim) {
    tensor *ix = NULL;
    if (max_along("torch_argmax", a, dim, keepdim, NULL, &ix) != TORCH_OK) return NULL;
    return ix;
}

tensor *tensor_max_all(const tensor *a) {
    static const char fname[] = "torch_max";
    if (torch_check_float32(fname, "input", a) != TORCH_OK) return NULL;
    if (a->numel == 0) {
        torch_error(TORCH_ERR_SHAPE,
                    "%s: Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim "
                    "with the 'dim' argument.",
                    fname);
        return NULL;
    }
    bool reduce[TORCH_MAX_DIMS];
    for (int d = 0; d < TORCH_MAX_DIMS; d++) reduce[d] = true;
    red_plan p;
    make_plan(a, reduce, &p);
    int64_t arg;
    float m = reduce_max(&p, p.base, &arg);
    return torch_scalar(m);
}

/* ---- broadcasting's backward -------------------------------------------------------------- */

tensor *tensor_sum_to(const tensor *a, int ndim, const int64_t *shape) {
    static const char fname[] = "torch_sum_to";
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_check_shape(fname, ndim, shape) != TORCH_OK)
        return NULL;
    bool ok = ndim <= a->ndim;
    bool reduce[TORCH_MAX_DIMS] = {false};
    const int lead = a->ndim - ndim;
    for (int d = 0; d < a->ndim && ok; d++) {
        if (d < lead) {
            reduce[d] = true;
        } else if (shape[d - lead] != a->shape[d]) {
            ok = shape[d - lead] == 1;
            reduce[d] = true;
        }
    }
    if (!ok) {
        char bs[128], ba[128];
        torch_error(TORCH_ERR_SHAPE, "%s: size %s is not expandable to size %s", fname,
                    torch_shape_str(ndim, shape, bs, sizeof bs), torch_shape_str(a->ndim, a->shape, ba, sizeof ba));
        return NULL;
    }
    return reduce_into(a, reduce, ndim, shape, RED_SUM, 0);
}
