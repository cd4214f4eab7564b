/* ops.h — raw compute kernels: float32 in, new float32 tensor out, no autograd.
 *
 * These are the forward computations (PyTorch's ATen). The differentiable public ops
 * (torch_add, torch_mean, ...) in autograd/ops.h call them and record graph nodes; backward
 * functions call them too. Use them directly when you want numbers without a graph.
 *
 * Ownership: as in tensor.h — returned tensors are new references owned by the caller; inputs
 * are only read. In-place kernels (name ends in `_`) write their first argument.
 * Inputs may have any strides; outputs are contiguous.
 * Errors name the public op, e.g. "torch_add: shapes [2, 3] and [4] cannot be broadcast".
 */
#ifndef CTORCH_OPS_H
#define CTORCH_OPS_H

#include "tensor.h"

/* ---- element-wise with broadcasting ------------------------------------------------------------ */

typedef enum torch_binary_op {
    TORCH_BINARY_ADD = 0,
    TORCH_BINARY_SUB,
    TORCH_BINARY_MUL,
    TORCH_BINARY_DIV,
    TORCH_BINARY_POW,     /* a ** b */
    TORCH_BINARY_MAXIMUM,
    TORCH_BINARY_MINIMUM,
    TORCH_BINARY_EQ,      /* comparisons give 1.0f / 0.0f */
    TORCH_BINARY_NE,
    TORCH_BINARY_LT,
    TORCH_BINARY_LE,
    TORCH_BINARY_GT,
    TORCH_BINARY_GE,
    TORCH_BINARY_COUNT
} torch_binary_op;

typedef enum torch_unary_op {
    TORCH_UNARY_NEG = 0,
    TORCH_UNARY_EXP,
    TORCH_UNARY_LOG,
    TORCH_UNARY_SQRT,
    TORCH_UNARY_RSQRT,
    TORCH_UNARY_RELU,     /* x < 0 ? 0 : x, as ATen's clamp_min(x, 0): relu(-0) = -0, NaN stays */
    TORCH_UNARY_ABS,
    TORCH_UNARY_SQUARE,
    TORCH_UNARY_RECIPROCAL,
    TORCH_UNARY_STEP,     /* x > 0 ? 1 : 0, the Heaviside step */
    TORCH_UNARY_SIGN,
    TORCH_UNARY_COUNT
} torch_unary_op;

/* Public name of an op, for messages: "torch_add", "torch_exp". Static. */
const char *torch_binary_op_name(torch_binary_op op);
const char *torch_unary_op_name(torch_unary_op op);

/* Result shape of broadcasting a and b (PyTorch rules: align trailing dims; sizes equal or 1).
 * fname prefixes the error message. */
torch_status torch_broadcast_shapes(const char *fname, int a_ndim, const int64_t *a_shape, int b_ndim,
                                    const int64_t *b_shape, int *out_ndim, int64_t *out_shape);

tensor *tensor_binary(torch_binary_op op, const tensor *a, const tensor *b);
tensor *tensor_binary_scalar(torch_binary_op op, const tensor *a, double s);   /* a op s */
tensor *tensor_unary(torch_unary_op op, const tensor *a);
/* ReLU's backward from its output: out <= 0 ? 0 : grad (ATen's threshold_backward(grad, out, 0):
 * 0 at the kink, and a NaN output passes its gradient). grad and out have one shape. */
tensor *tensor_relu_backward(const tensor *grad, const tensor *out);

/* ---- reductions; dims may be negative; ndims == 0 (dims NULL) reduces over all dims --------------- */

tensor *tensor_sum(const tensor *a, int ndims, const int *dims, bool keepdim);
tensor *tensor_mean(const tensor *a, int ndims, const int *dims, bool keepdim);
/* Variance with divisor (count - correction): correction 0 is biased, 1 unbiased. Two-pass in
 * double, so a large mean does not cancel the variance away. */
tensor *tensor_var(const tensor *a, int ndims, const int *dims, int64_t correction, bool keepdim);
/* Max over one dim; *indices (int64, optional, may be NULL) receives the argmax (first one). */
tensor *tensor_max_dim(const tensor *a, int dim, bool keepdim, tensor **indices);
/* Max over all elements (0-dim). */
tensor *tensor_max_all(const tensor *a);
/* int64 indices of the first maximum along dim. */
tensor *tensor_argmax(const tensor *a, int dim, bool keepdim);

/* Sums a over the dims along which `shape` was broadcast to a's shape: the backward of
 * broadcasting. shape must broadcast to a->shape. */
tensor *tensor_sum_to(const tensor *a, int ndim, const int64_t *shape);
/* A stride-0 view of a broadcast to shape (no copy). */
tensor *tensor_expand(const tensor *a, int ndim, const int64_t *shape);

/* ---- linear algebra (OpenBLAS sgemm) ------------------------------------------------------------ */

/* op(a) @ op(b) for 2-D a, b, where op transposes when the flag is set. */
tensor *tensor_mm(const tensor *a, bool trans_a, const tensor *b, bool trans_b);

/* C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta * C, row-major with leading dimensions: every
 * matrix product in ctorch goes through here. OpenBLAS rounds differently depending on how it
 * splits a product (its thread count, even the shape of a sub-product), so this runs sgemm on
 * one OpenBLAS thread over blocks of rows or columns fixed by the shapes alone, and OpenMP
 * threads share the blocks: the same bits at any thread count. Called inside an OpenMP
 * parallel region it runs on the calling thread. Sizes must fit in int (checked by callers). */
void torch_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* ---- in place ------------------------------------------------------------------------------- */

/* dst += alpha * src; src broadcasts to dst's shape. */
torch_status tensor_add_(tensor *dst, const tensor *src, double alpha);
/* t *= s. */
torch_status tensor_mul_scalar_(tensor *t, double s);

#endif /* CTORCH_OPS_H */
