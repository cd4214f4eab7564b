/* ops.h — the differentiable tensor ops, named as in R torch (torch_add, torch_mean, ...).
 *
 * Each op computes with the raw kernels of tensor/ops.h and, when an input requires grad and
 * grad mode is on, records one graph node whose backward sits next to its forward.
 *
 * Ownership: every function returns a new reference (see tensor.h) or NULL with the error set;
 * inputs are borrowed (the graph retains what it needs). Broadcasting follows PyTorch.
 */
#ifndef CTORCH_AUTOGRAD_OPS_H
#define CTORCH_AUTOGRAD_OPS_H

#include "autograd.h"

/* ---- element-wise ------------------------------------------------------------------------- */

tensor *torch_add(tensor *a, tensor *b);
tensor *torch_sub(tensor *a, tensor *b);
tensor *torch_mul(tensor *a, tensor *b);
tensor *torch_div(tensor *a, tensor *b);
tensor *torch_add_scalar(tensor *a, double s);
tensor *torch_sub_scalar(tensor *a, double s);
tensor *torch_mul_scalar(tensor *a, double s);
tensor *torch_div_scalar(tensor *a, double s);
tensor *torch_pow_scalar(tensor *a, double exponent); /* torch_pow(a, exponent) */
tensor *torch_neg(tensor *a);
tensor *torch_exp(tensor *a);
tensor *torch_log(tensor *a);
tensor *torch_sqrt(tensor *a);
tensor *torch_rsqrt(tensor *a);
tensor *torch_relu(tensor *a);

/* Comparisons (no gradient): 1.0f where true, 0.0f elsewhere. */
tensor *torch_eq(tensor *a, tensor *b);
tensor *torch_ne(tensor *a, tensor *b);
tensor *torch_lt(tensor *a, tensor *b);
tensor *torch_le(tensor *a, tensor *b);
tensor *torch_gt(tensor *a, tensor *b);
tensor *torch_ge(tensor *a, tensor *b);

/* ---- reductions (dims may be negative; ndims 0 / dims NULL: over all elements) ------------- */

tensor *torch_sum(tensor *a, int ndims, const int *dims, bool keepdim);
tensor *torch_mean(tensor *a, int ndims, const int *dims, bool keepdim);
/* torch_var(a, dims, correction, keepdim): correction 0 biased, 1 unbiased (R's unbiased=TRUE). */
tensor *torch_var(tensor *a, int ndims, const int *dims, int64_t correction, bool keepdim);
/* Max over one dim; *indices (int64, optional) receives the argmax. Gradient flows to the
 * first maximum. */
tensor *torch_max(tensor *a, int dim, bool keepdim, tensor **indices);
/* int64, no gradient. */
tensor *torch_argmax(tensor *a, int dim, bool keepdim);

/* ---- linear algebra --------------------------------------------------------------------------- */

/* 2-D matrix product through torch_sgemm (OpenBLAS): (n, k) @ (k, m) -> (n, m). */
tensor *torch_matmul(tensor *a, tensor *b);

/* ---- views (share storage with the input where PyTorch's do) ---------------------------------- */

/* One size may be -1 (inferred). A view whenever the strides allow (PyTorch's rule), else a copy. */
tensor *torch_reshape(tensor *a, int ndim, const int64_t *shape);
/* Flattens dims start_dim..end_dim (negative allowed) into one. */
tensor *torch_flatten(tensor *a, int start_dim, int end_dim);
/* The slice at index along dim, without that dim (x[i] for dim 0). */
tensor *torch_select(tensor *a, int dim, int64_t index);
/* length elements from start along dim. */
tensor *torch_narrow(tensor *a, int dim, int64_t start, int64_t length);
tensor *torch_transpose(tensor *a, int dim0, int dim1);
tensor *torch_permute(tensor *a, int ndims, const int *dims);
tensor *torch_unsqueeze(tensor *a, int dim);
tensor *torch_squeeze(tensor *a, int dim);
/* A contiguous tensor with a's values (a itself, retained, when already contiguous). */
tensor *torch_contiguous(tensor *a);

#endif /* CTORCH_AUTOGRAD_OPS_H */
