/* ops_reduce.c — differentiable reductions: sum, mean, var, max over a dim; argmax.
 *
 * A reduction's backward spreads g (the output's shape) back over the reduced dims. The spread
 * is a stride-0 view of g (no copy): reduced dims get stride 0, kept dims g's own strides.
 * Node state: ints[0] = bit mask of the reduced dims, ints[1] = keepdim, ints[2] = element
 * count per output (N), ints[3] = correction (var) or the dim (max).
 */
#include "functions.h"
#include "ops.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

/* Bit mask of the dims to reduce (all when ndims == 0), with PyTorch's messages for bad lists. */
static torch_status parse_dims(const char *fname, const tensor *a, int ndims, const int *dims, int64_t *mask) {
    if (ndims < 0) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: ndims must be >= 0 (got %d)", fname, ndims);
    if (ndims > 0 && !dims) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: dims is NULL", fname);
    int64_t m = ndims == 0 ? (((int64_t)1 << a->ndim) - 1) : 0;
    for (int i = 0; i < ndims; i++) {
        int d;
        torch_status st = torch_wrap_dim(fname, dims[i], a->ndim, &d);
        if (st != TORCH_OK) return st;
        if (m & ((int64_t)1 << d))
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: dim %d appears multiple times in the list of dims",
                               fname, d);
        m |= (int64_t)1 << d;
    }
    *mask = m;
    return TORCH_OK;
}

/* Elements folded into each output: the product of the reduced sizes. */
static int64_t reduced_count(const ag_edge *in, int64_t mask) {
    int64_t n = 1;
    for (int d = 0; d < in->ndim; d++)
        if (mask & ((int64_t)1 << d)) n *= in->shape[d];
    return n;
}

/* g (shape of the reduction's output) seen at the input's shape: a view repeating g along the
 * reduced dims. With keepdim g has size 1 there; without, those dims are absent. */
static tensor *spread(const tensor *g, const ag_edge *in, int64_t mask, bool keepdim) {
    int64_t stride[TORCH_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < in->ndim; d++) {
        bool reduced = mask & ((int64_t)1 << d);
        stride[d] = reduced ? 0 : g->stride[k];
        if (!reduced || keepdim) k++;
    }
    TORCH_ASSERT(k == g->ndim);
    return tensor_as_strided(g, in->ndim, in->shape, stride, g->offset);
}

static torch_status put(tensor **slot, tensor *r) {
    *slot = r;
    return r ? TORCH_OK : torch_last_status();
}

/* ---- sum, mean -------------------------------------------------------------------------------- */

/* out = sum over the reduced dims:  da = g repeated along them. */
static torch_status sum_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], spread(g, &n->inputs[0], n->ints[0], n->ints[1]));
}
static const ag_function ag_fn_sum_all = {.op = AG_OP_SUM, .backward = sum_backward};
static const ag_function ag_fn_sum_dim = {.op = AG_OP_SUM_DIM, .backward = sum_backward};

/* out = sum / N:  da = g / N repeated (scaled before spreading: the small tensor is scaled). */
static torch_status mean_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    tensor *scaled = tensor_binary_scalar(TORCH_BINARY_DIV, g, (double)n->ints[2]);
    torch_status st = put(&gi[0], scaled ? spread(scaled, &n->inputs[0], n->ints[0], n->ints[1]) : NULL);
    tensor_free(scaled);
    return st;
}
static const ag_function ag_fn_mean_all = {.op = AG_OP_MEAN, .backward = mean_backward};
static const ag_function ag_fn_mean_dim = {.op = AG_OP_MEAN_DIM, .backward = mean_backward};

/* Shared forward of sum and mean. */
static tensor *sum_or_mean(const char *fname, bool mean, tensor *a, int ndims, const int *dims, bool keepdim) {
    int64_t mask;
    if (torch_check_float32(fname, "input", a) != TORCH_OK || parse_dims(fname, a, ndims, dims, &mask) != TORCH_OK)
        return NULL;
    tensor *out = mean ? tensor_mean(a, ndims, dims, keepdim) : tensor_sum(a, ndims, dims, keepdim);
    const ag_function *fn = mean ? (ndims == 0 ? &ag_fn_mean_all : &ag_fn_mean_dim)
                                 : (ndims == 0 ? &ag_fn_sum_all : &ag_fn_sum_dim);
    ag_node *n = NULL;
    if (!ag_op_record(fn, &out, 1, &a, &n)) return NULL;
    if (n) {
        n->ints[0] = mask;
        n->ints[1] = keepdim;
        n->ints[2] = reduced_count(&n->inputs[0], mask);
    }
    return out;
}

tensor *torch_sum(tensor *a, int ndims, const int *dims, bool keepdim) {
    return sum_or_mean("torch_sum", false, a, ndims, dims, keepdim);
}

tensor *torch_mean(tensor *a, int ndims, const int *dims, bool keepdim) {
    return sum_or_mean("torch_mean", true, a, ndims, dims, keepdim);
}

/* ---- var -------------------------------------------------------------------------------------- */

/* out = sum (a - mean)^2 / (N - c):  da = 2 (a - mean) / (N - c) * g, g repeated along the reduced
 * dims (the d mean / da term vanishes because sum (a - mean) = 0). Saved: a; the mean is
 * recomputed (one reduction) rather than kept alive for the graph's lifetime. */
static torch_status var_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    const tensor *a = n->saved[0];
    int64_t mask = n->ints[0];
    int dims[TORCH_MAX_DIMS], nd = 0;
    for (int d = 0; d < a->ndim; d++)
        if (mask & ((int64_t)1 << d)) dims[nd++] = d;
    /* PyTorch's value for N - c <= 0 is inf/nan; a division by zero gives the same. */
    double k = 2.0 / (double)(n->ints[2] - n->ints[3]);
    tensor *mean = a->ndim > 0 ? tensor_mean(a, nd, dims, true) : tensor_retain((tensor *)a);
    tensor *centered = mean ? tensor_binary(TORCH_BINARY_SUB, a, mean) : NULL;
    tensor *gk = centered ? tensor_binary_scalar(TORCH_BINARY_MUL, g, k) : NULL;
    tensor *gs = gk ? spread(gk, &n->inputs[0], mask, n->ints[1]) : NULL;
    torch_status st = put(&gi[0], gs ? tensor_binary(TORCH_BINARY_MUL, centered, gs) : NULL);
    tensor_free(mean);
    tensor_free(centered);
    tensor_free(gk);
    tensor_free(gs);
    return st;
}
static const ag_function ag_fn_var = {.op = AG_OP_VAR, .backward = var_backward};

tensor *torch_var(tensor *a, int ndims, const int *dims, int64_t correction, bool keepdim) {
    static const char fname[] = "torch_var";
    int64_t mask;
    if (torch_check_float32(fname, "input", a) != TORCH_OK || parse_dims(fname, a, ndims, dims, &mask) != TORCH_OK)
        return NULL;
    if (correction < 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: correction must be non-negative (got %lld)", fname,
                    (long long)correction);
        return NULL;
    }
    tensor *out = tensor_var(a, ndims, dims, correction, keepdim);
    ag_node *n = NULL;
    if (!ag_op_record(&ag_fn_var, &out, 1, &a, &n)) return NULL;
    if (n) {
        n->ints[0] = mask;
        n->ints[1] = keepdim;
        n->ints[2] = reduced_count(&n->inputs[0], mask);
        n->ints[3] = correction;
        if (ag_node_save(n, 0, a) != TORCH_OK) return ag_op_fail(out);
    }
    return out;
}

/* ---- max over a dim --------------------------------------------------------------------------- */

/* out = a[..., idx, ...] with idx the first maximum:  da = g scattered to idx, 0 elsewhere.
 * Saved: the indices (slot 0, int64, the output's shape). */
static torch_status max_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    const ag_edge *in = &n->inputs[0];
    const tensor *idx = n->saved[0];
    if (in->ndim == 0) return put(&gi[0], tensor_retain((tensor *)g)); /* max of a scalar is itself */
    const int dim = (int)n->ints[3];
    const bool keepdim = n->ints[1];
    tensor *r = torch_zeros(in->ndim, in->shape);
    if (!r) return torch_last_status();
    /* Walk the keepdim-shaped output; g and idx get stride 0 along dim, r contiguous strides. */
    int64_t oshape[TORCH_MAX_DIMS], gstr[TORCH_MAX_DIMS], istr[TORCH_MAX_DIMS], rstr[TORCH_MAX_DIMS];
    int64_t s = 1;
    for (int d = in->ndim - 1; d >= 0; d--) {
        rstr[d] = s;
        s *= in->shape[d];
    }
    for (int d = 0, k = 0; d < in->ndim; d++) {
        oshape[d] = d == dim ? 1 : in->shape[d];
        bool present = d != dim || keepdim;
        gstr[d] = present ? g->stride[k] : 0;
        istr[d] = present ? idx->stride[k] : 0;
        if (present) k++;
    }
    const float *gp = tensor_data_f32(g);
    const int64_t *ip = tensor_data_i64(idx);
    float *rp = tensor_data_f32(r);
    int64_t pos[TORCH_MAX_DIMS] = {0}, total = torch_shape_numel(in->ndim, oshape);
    for (int64_t e = 0; e < total; e++) {
        int64_t go = 0, io = 0, ro = 0;
        for (int d = 0; d < in->ndim; d++) {
            go += pos[d] * gstr[d];
            io += pos[d] * istr[d];
            ro += pos[d] * rstr[d];
        }
        rp[ro + ip[io] * rstr[dim]] = gp[go];
        for (int d = in->ndim - 1; d >= 0; d--) {
            if (++pos[d] < oshape[d]) break;
            pos[d] = 0;
        }
    }
    gi[0] = r;
    return TORCH_OK;
}
static const ag_function ag_fn_max_dim = {.op = AG_OP_MAX_DIM, .backward = max_backward};

tensor *torch_max(tensor *a, int dim, bool keepdim, tensor **indices) {
    static const char fname[] = "torch_max";
    int d;
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_wrap_dim(fname, dim, a->ndim, &d) != TORCH_OK)
        return NULL;
    tensor *idx = NULL;
    tensor *out = tensor_max_dim(a, d, keepdim, &idx);
    ag_node *n = NULL;
    if (!ag_op_record(&ag_fn_max_dim, &out, 1, &a, &n)) {
        tensor_free(idx);
        return NULL;
    }
    if (n) {
        n->ints[1] = keepdim;
        n->ints[3] = d;
        if (ag_node_save(n, 0, idx) != TORCH_OK) {
            tensor_free(idx);
            return ag_op_fail(out);
        }
    }
    if (indices) *indices = idx;
    else tensor_free(idx);
    return out;
}

tensor *torch_argmax(tensor *a, int dim, bool keepdim) {
    if (torch_check_float32("torch_argmax", "input", a) != TORCH_OK) return NULL;
    return tensor_argmax(a, dim, keepdim);
}
