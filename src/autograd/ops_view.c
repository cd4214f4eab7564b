/* ops_view.c — differentiable views: reshape, flatten, select, narrow, transpose, permute,
 * unsqueeze, squeeze, contiguous.
 *
 * A view is a new tensor struct on its input's storage (tensor_as_strided): writing through it
 * writes the input, as in PyTorch. reshape aliases whenever the new shape can be expressed with
 * strides over the old layout (PyTorch's rule) and copies otherwise. Backward maps g back to the
 * input's geometry: the inverse view of g for the pure re-indexings (transpose, permute,
 * unsqueeze, squeeze, reshape), a scatter into zeros for the slicings (select, narrow).
 */
#include "functions.h"
#include "ops.h"

#include <string.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

static torch_status put(tensor **slot, tensor *r) {
    *slot = r;
    return r ? TORCH_OK : torch_last_status();
}

/* Records fn on the view out of a; on failure frees out and returns NULL. */
static tensor *record1(const ag_function *fn, tensor *a, tensor *out, ag_node **node) {
    ag_node *n = NULL;
    if (!ag_op_record(fn, &out, 1, &a, &n)) return NULL;
    if (node) *node = n;
    return out;
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= shape[d] > 1 ? shape[d] : 1;
    }
}

/* Strides that give t's elements, in row-major order, the shape `shape` without moving data;
 * false when none exist (PyTorch's computeStride: every run of t's dims that is contiguous
 * within itself may be split or merged, but not across runs). */
static bool view_strides(const tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
    if (t->ndim == 0 || t->numel == 0) {
        contiguous_strides(ndim, shape, stride);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->stride[t->ndim - 1], tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        /* A run ends at dim 0 or where the next dim out is not laid right after this run. */
        if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base_stride = t->stride[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

/* t's elements at shape (same numel): an alias when strides allow, else a contiguous copy.
 * *copied tells which. No autograd. */
static tensor *reshape_raw(const tensor *t, int ndim, const int64_t *shape, bool *copied) {
    int64_t stride[TORCH_MAX_DIMS];
    if (view_strides(t, ndim, shape, stride)) {
        *copied = false;
        return tensor_as_strided(t, ndim, shape, stride, t->offset);
    }
    *copied = true;
    tensor *c = tensor_clone(t);
    if (!c) return NULL;
    contiguous_strides(ndim, shape, stride);
    tensor *r = tensor_as_strided(c, ndim, shape, stride, 0);
    tensor_free(c);
    return r;
}

/* Resolves one -1 in a user shape against numel, with PyTorch's messages. */
static torch_status infer_shape(const char *fname, int64_t numel, int ndim, const int64_t *shape, int64_t *out) {
    char buf[160];
    if (ndim < 0 || ndim > TORCH_MAX_DIMS)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected 0 to %d dimensions (got %d)", fname,
                           TORCH_MAX_DIMS, ndim);
    if (ndim > 0 && !shape) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: shape is NULL", fname);
    int infer = -1;
    int64_t known = 1, span = 1; /* span: the product with 0 counted as 1, -1 once it overflows */
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) return torch_error(TORCH_ERR_SHAPE, "%s: only one dimension can be inferred", fname);
            infer = i;
        } else if (shape[i] < 0) {
            return torch_error(TORCH_ERR_SHAPE, "%s: invalid shape dimension %lld", fname, (long long)shape[i]);
        } else {
            if (span >= 0) span = torch_size_mul(span, shape[i] > 1 ? shape[i] : 1);
            if (span >= 0) known *= shape[i]; /* known <= span: cannot wrap */
        }
    }
    if (span < 0) /* too large to have strides: fits no tensor (its product would have wrapped) */
        return torch_error(TORCH_ERR_SHAPE, "%s: shape '%s' is invalid for input of size %lld (it has too many "
                           "elements: at most %lld, counting a size of 0 as 1)", fname,
                           torch_shape_str(ndim, shape, buf, sizeof buf), (long long)numel, (long long)TORCH_MAX_NUMEL);
    if (!(numel == known || (infer >= 0 && known > 0 && numel % known == 0)))
        return torch_error(TORCH_ERR_SHAPE, "%s: shape '%s' is invalid for input of size %lld", fname,
                           torch_shape_str(ndim, shape, buf, sizeof buf), (long long)numel);
    if (infer >= 0 && known == 0)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: cannot reshape tensor of 0 elements into shape %s because the unspecified "
                           "dimension size -1 can be any value and is ambiguous",
                           fname, torch_shape_str(ndim, shape, buf, sizeof buf));
    for (int i = 0; i < ndim; i++) out[i] = i == infer ? numel / known : shape[i];
    return TORCH_OK;
}

/* ---- reshape, flatten ------------------------------------------------------------------------- */

/* out = a's elements at a new shape:  da = g at a's shape (again an alias when g's strides allow). */
static torch_status reshape_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    bool copied;
    return put(&gi[0], reshape_raw(g, n->inputs[0].ndim, n->inputs[0].shape, &copied));
}
static const ag_function ag_fn_view = {.op = AG_OP_VIEW, .backward = reshape_backward};
static const ag_function ag_fn_unsafe_view = {.op = AG_OP_UNSAFE_VIEW, .backward = reshape_backward};

/* Reshape to a resolved shape, recording the node that matches what happened. */
static tensor *reshape_to(tensor *a, int ndim, const int64_t *shape) {
    bool copied;
    tensor *out = reshape_raw(a, ndim, shape, &copied);
    return record1(copied ? &ag_fn_unsafe_view : &ag_fn_view, a, out, NULL);
}

tensor *torch_reshape(tensor *a, int ndim, const int64_t *shape) {
    static const char fname[] = "torch_reshape";
    int64_t resolved[TORCH_MAX_DIMS];
    if (torch_check_float32(fname, "input", a) != TORCH_OK ||
        infer_shape(fname, a->numel, ndim, shape, resolved) != TORCH_OK)
        return NULL;
    return reshape_to(a, ndim, resolved);
}

tensor *torch_flatten(tensor *a, int start_dim, int end_dim) {
    static const char fname[] = "torch_flatten";
    int s, e;
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_wrap_dim(fname, start_dim, a->ndim, &s) != TORCH_OK ||
        torch_wrap_dim(fname, end_dim, a->ndim, &e) != TORCH_OK)
        return NULL;
    if (s > e) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: flatten() has invalid args: start_dim cannot come after end_dim",
                    fname);
        return NULL;
    }
    if (a->ndim == 0) return reshape_to(a, 1, (const int64_t[]){1});
    if (s == e) return tensor_retain(a); /* nothing to merge: PyTorch returns the input itself */
    int64_t shape[TORCH_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < s; d++) shape[n++] = a->shape[d];
    shape[n++] = torch_shape_numel(e - s + 1, a->shape + s);
    for (int d = e + 1; d < a->ndim; d++) shape[n++] = a->shape[d];
    return reshape_to(a, n, shape);
}

/* ---- select, narrow --------------------------------------------------------------------------- */

/* The gradient of a slicing: zeros at the input's shape, g written into the slice that the
 * forward read (dim ints[0], start ints[1], length ints[2]; ints[3] = 1 when the forward
 * dropped the dim, as select does). */
static torch_status slice_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    const ag_edge *in = &n->inputs[0];
    const int dim = (int)n->ints[0];
    tensor *r = torch_zeros(in->ndim, in->shape);
    if (!r) return torch_last_status();
    int64_t stride[TORCH_MAX_DIMS], shape[TORCH_MAX_DIMS], vstride[TORCH_MAX_DIMS];
    contiguous_strides(in->ndim, in->shape, stride);
    int k = 0;
    for (int d = 0; d < in->ndim; d++) {
        if (d == dim && n->ints[3]) continue;
        shape[k] = d == dim ? n->ints[2] : in->shape[d];
        vstride[k++] = stride[d];
    }
    tensor *slice = tensor_as_strided(r, k, shape, vstride, n->ints[1] * stride[dim]);
    torch_status st = slice ? tensor_copy_(slice, g) : torch_last_status();
    tensor_free(slice);
    if (st != TORCH_OK) {
        tensor_free(r);
        return st;
    }
    gi[0] = r;
    return TORCH_OK;
}
static const ag_function ag_fn_select = {.op = AG_OP_SELECT, .backward = slice_backward};
static const ag_function ag_fn_slice = {.op = AG_OP_SLICE, .backward = slice_backward};

tensor *torch_select(tensor *a, int dim, int64_t index) {
    static const char fname[] = "torch_select";
    char buf[160];
    int d;
    if (torch_check_float32(fname, "input", a) != TORCH_OK) return NULL;
    if (a->ndim == 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: select() cannot be applied to a 0-dim tensor.", fname);
        return NULL;
    }
    if (torch_wrap_dim(fname, dim, a->ndim, &d) != TORCH_OK) return NULL;
    const int64_t size = a->shape[d];
    if (index < -size || index >= size) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: index %lld out of range for tensor of size %s at dimension %d",
                    fname, (long long)index, torch_shape_str(a->ndim, a->shape, buf, sizeof buf), d);
        return NULL;
    }
    if (index < 0) index += size;
    int64_t shape[TORCH_MAX_DIMS], stride[TORCH_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (i == d) continue;
        shape[k] = a->shape[i];
        stride[k++] = a->stride[i];
    }
    tensor *out = tensor_as_strided(a, k, shape, stride, a->offset + index * a->stride[d]);
    ag_node *n = NULL;
    if (!(out = record1(&ag_fn_select, a, out, &n))) return NULL;
    if (n) {
        n->ints[0] = d;
        n->ints[1] = index;
        n->ints[2] = 1;
        n->ints[3] = 1;
    }
    return out;
}

tensor *torch_narrow(tensor *a, int dim, int64_t start, int64_t length) {
    static const char fname[] = "torch_narrow";
    int d;
    if (torch_check_float32(fname, "input", a) != TORCH_OK) return NULL;
    if (a->ndim == 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: narrow() cannot be applied to a 0-dim tensor.", fname);
        return NULL;
    }
    if (torch_wrap_dim(fname, dim, a->ndim, &d) != TORCH_OK) return NULL;
    const int64_t size = a->shape[d];
    if (start < -size || start > size) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "%s: start out of range (expected to be in range of [%lld, %lld], but got %lld)", fname,
                    (long long)-size, (long long)size, (long long)start);
        return NULL;
    }
    if (start < 0) start += size;
    if (length < 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: narrow(): length must be non-negative.", fname);
        return NULL;
    }
    if (start + length > size) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: start (%lld) + length (%lld) exceeds dimension size (%lld).",
                    fname, (long long)start, (long long)length, (long long)size);
        return NULL;
    }
    int64_t shape[TORCH_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[d] = length;
    tensor *out = tensor_as_strided(a, a->ndim, shape, a->stride, a->offset + start * a->stride[d]);
    ag_node *n = NULL;
    if (!(out = record1(&ag_fn_slice, a, out, &n))) return NULL;
    if (n) {
        n->ints[0] = d;
        n->ints[1] = start;
        n->ints[2] = length;
        n->ints[3] = 0;
    }
    return out;
}

/* ---- transpose, permute ----------------------------------------------------------------------- */

/* out = a with dims ints[0] and ints[1] swapped:  da = g with them swapped back. */
static torch_status transpose_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    int64_t shape[TORCH_MAX_DIMS], stride[TORCH_MAX_DIMS];
    memcpy(shape, g->shape, sizeof shape);
    memcpy(stride, g->stride, sizeof stride);
    const int d0 = (int)n->ints[0], d1 = (int)n->ints[1];
    if (g->ndim > 0) {
        shape[d0] = g->shape[d1], shape[d1] = g->shape[d0];
        stride[d0] = g->stride[d1], stride[d1] = g->stride[d0];
    }
    return put(&gi[0], tensor_as_strided(g, g->ndim, shape, stride, g->offset));
}
static const ag_function ag_fn_transpose = {.op = AG_OP_TRANSPOSE, .backward = transpose_backward};

tensor *torch_transpose(tensor *a, int dim0, int dim1) {
    static const char fname[] = "torch_transpose";
    int d0, d1;
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_wrap_dim(fname, dim0, a->ndim, &d0) != TORCH_OK ||
        torch_wrap_dim(fname, dim1, a->ndim, &d1) != TORCH_OK)
        return NULL;
    int64_t shape[TORCH_MAX_DIMS], stride[TORCH_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    memcpy(stride, a->stride, sizeof stride);
    if (a->ndim > 0) {
        shape[d0] = a->shape[d1], shape[d1] = a->shape[d0];
        stride[d0] = a->stride[d1], stride[d1] = a->stride[d0];
    }
    tensor *out = tensor_as_strided(a, a->ndim, shape, stride, a->offset);
    ag_node *n = NULL;
    if (!(out = record1(&ag_fn_transpose, a, out, &n))) return NULL;
    if (n) {
        n->ints[0] = d0;
        n->ints[1] = d1;
    }
    return out;
}

/* out dim i = a dim p[i] (p in ints):  da dim p[i] = g dim i. */
static torch_status permute_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    int64_t shape[TORCH_MAX_DIMS], stride[TORCH_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) {
        shape[n->ints[i]] = g->shape[i];
        stride[n->ints[i]] = g->stride[i];
    }
    return put(&gi[0], tensor_as_strided(g, g->ndim, shape, stride, g->offset));
}
static const ag_function ag_fn_permute = {.op = AG_OP_PERMUTE, .backward = permute_backward};

tensor *torch_permute(tensor *a, int ndims, const int *dims) {
    static const char fname[] = "torch_permute";
    if (torch_check_float32(fname, "input", a) != TORCH_OK) return NULL;
    if (ndims != a->ndim) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "%s: number of dimensions in the tensor input does not match the length of the desired ordering "
                    "of dimensions i.e. input.dim() = %d is not equal to len(dims) = %d",
                    fname, a->ndim, ndims);
        return NULL;
    }
    if (ndims > 0 && !dims) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: dims is NULL", fname);
        return NULL;
    }
    int p[TORCH_MAX_DIMS];
    bool seen[TORCH_MAX_DIMS] = {false};
    for (int i = 0; i < ndims; i++) {
        if (torch_wrap_dim(fname, dims[i], a->ndim, &p[i]) != TORCH_OK) return NULL;
        if (seen[p[i]]) {
            torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: permute(): duplicate dims are not allowed.", fname);
            return NULL;
        }
        seen[p[i]] = true;
    }
    int64_t shape[TORCH_MAX_DIMS], stride[TORCH_MAX_DIMS];
    for (int i = 0; i < ndims; i++) {
        shape[i] = a->shape[p[i]];
        stride[i] = a->stride[p[i]];
    }
    tensor *out = tensor_as_strided(a, ndims, shape, stride, a->offset);
    ag_node *n = NULL;
    if (!(out = record1(&ag_fn_permute, a, out, &n))) return NULL;
    for (int i = 0; n && i < ndims; i++) n->ints[i] = p[i];
    return out;
}

/* ---- unsqueeze, squeeze ----------------------------------------------------------------------- */

/* t's geometry with a size-1 dim inserted at d (stride as PyTorch picks it). */
static tensor *insert_dim(const tensor *t, int d) {
    int64_t shape[TORCH_MAX_DIMS], stride[TORCH_MAX_DIMS];
    for (int i = 0, k = 0; i <= t->ndim; i++) {
        if (i == d) {
            shape[i] = 1;
            stride[i] = d < t->ndim ? t->shape[d] * t->stride[d] : 1;
        } else {
            shape[i] = t->shape[k];
            stride[i] = t->stride[k++];
        }
    }
    return tensor_as_strided(t, t->ndim + 1, shape, stride, t->offset);
}

/* t's geometry without dim d (which has size 1). */
static tensor *remove_dim(const tensor *t, int d) {
    int64_t shape[TORCH_MAX_DIMS], stride[TORCH_MAX_DIMS];
    for (int i = 0, k = 0; i < t->ndim; i++) {
        if (i == d) continue;
        shape[k] = t->shape[i];
        stride[k++] = t->stride[i];
    }
    return tensor_as_strided(t, t->ndim - 1, shape, stride, t->offset);
}

/* out = a with a size-1 dim at ints[0]:  da = g without it. */
static torch_status unsqueeze_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], remove_dim(g, (int)n->ints[0]));
}
static const ag_function ag_fn_unsqueeze = {.op = AG_OP_UNSQUEEZE, .backward = unsqueeze_backward};

tensor *torch_unsqueeze(tensor *a, int dim) {
    static const char fname[] = "torch_unsqueeze";
    int d;
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_wrap_dim(fname, dim, a->ndim + 1, &d) != TORCH_OK)
        return NULL;
    if (a->ndim == TORCH_MAX_DIMS) {
        torch_error(TORCH_ERR_SHAPE, "%s: a tensor has at most %d dimensions (got %d already)", fname, TORCH_MAX_DIMS,
                    a->ndim);
        return NULL;
    }
    ag_node *n = NULL;
    tensor *out = record1(&ag_fn_unsqueeze, a, insert_dim(a, d), &n);
    if (n) n->ints[0] = d;
    return out;
}

/* out = a without dim ints[0] if it had size 1 (ints[1] = 1), else a as is:  da = g with the dim
 * put back, or g. */
static torch_status squeeze_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], n->ints[1] ? insert_dim(g, (int)n->ints[0]) : tensor_retain((tensor *)g));
}
static const ag_function ag_fn_squeeze_dim = {.op = AG_OP_SQUEEZE_DIM, .backward = squeeze_backward};

tensor *torch_squeeze(tensor *a, int dim) {
    static const char fname[] = "torch_squeeze";
    int d;
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_wrap_dim(fname, dim, a->ndim, &d) != TORCH_OK)
        return NULL;
    const bool squeezed = a->ndim > 0 && a->shape[d] == 1; /* other sizes: a view of a as is */
    tensor *v = squeezed ? remove_dim(a, d) : tensor_as_strided(a, a->ndim, a->shape, a->stride, a->offset);
    ag_node *n = NULL;
    tensor *out = record1(&ag_fn_squeeze_dim, a, v, &n);
    if (n) {
        n->ints[0] = d;
        n->ints[1] = squeezed;
    }
    return out;
}

/* ---- contiguous ------------------------------------------------------------------------------- */

/* out = a copy of a:  da = g. */
static torch_status clone_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (ag_node_needs_grad(n, 0)) gi[0] = tensor_retain((tensor *)g);
    return TORCH_OK;
}
static const ag_function ag_fn_clone = {.op = AG_OP_CLONE, .backward = clone_backward};

tensor *torch_contiguous(tensor *a) {
    if (torch_check_float32("torch_contiguous", "input", a) != TORCH_OK) return NULL;
    if (tensor_is_contiguous(a)) return tensor_retain(a);
    return record1(&ag_fn_clone, a, tensor_clone(a), NULL);
}
