/* functions.h — private to src/autograd: the ag_function of every differentiable op, and the
 * small helpers the op files share.
 *
 * Ownership: the ag_function objects are static data. The helpers follow tensor.h: a returned
 * tensor * is a new reference; ag_op_record consumes `out` when it fails.
 *
 * Adding an op: define `const ag_function ag_fn_<op>` next to its forward and backward, declare
 * it here and list it in ag_builtin_functions (functions.c); test_gradcheck.c checks the table.
 */
#ifndef CTORCH_AUTOGRAD_FUNCTIONS_H
#define CTORCH_AUTOGRAD_FUNCTIONS_H

#include "autograd.h"

/* ---- ops_elementwise.c ------------------------------------------------------------------------ */
extern const ag_function ag_fn_add;        /* AddBackward0 */
extern const ag_function ag_fn_sub;        /* SubBackward0 */
extern const ag_function ag_fn_mul;        /* MulBackward0 */
extern const ag_function ag_fn_div;        /* DivBackward0 */
extern const ag_function ag_fn_add_scalar; /* AddBackward1 */
extern const ag_function ag_fn_sub_scalar; /* SubBackward1 */
extern const ag_function ag_fn_mul_scalar; /* MulBackward1 */
extern const ag_function ag_fn_div_scalar; /* DivBackward1 */
extern const ag_function ag_fn_pow_scalar; /* PowBackward0 */
extern const ag_function ag_fn_neg;        /* NegBackward0 */
extern const ag_function ag_fn_exp;        /* ExpBackward0 */
extern const ag_function ag_fn_log;        /* LogBackward0 */
extern const ag_function ag_fn_sqrt;       /* SqrtBackward0 */
extern const ag_function ag_fn_rsqrt;      /* RsqrtBackward0 */
extern const ag_function ag_fn_relu;       /* ReluBackward0 */

/* ---- ops_reduce.c ----------------------------------------------------------------------------- */
extern const ag_function ag_fn_sum_all;  /* SumBackward0: over every element */
extern const ag_function ag_fn_sum_dim;  /* SumBackward1: over a list of dims */
extern const ag_function ag_fn_mean_all; /* MeanBackward0 */
extern const ag_function ag_fn_mean_dim; /* MeanBackward1 */
extern const ag_function ag_fn_var;      /* VarBackward0 */
extern const ag_function ag_fn_max_dim;  /* MaxBackward0 */

/* ---- ops_linalg.c ----------------------------------------------------------------------------- */
extern const ag_function ag_fn_mm; /* MmBackward0 */

/* ---- ops_view.c ------------------------------------------------------------------------------- */
extern const ag_function ag_fn_view;        /* ViewBackward0: reshape/flatten that could alias */
extern const ag_function ag_fn_unsafe_view; /* UnsafeViewBackward0: reshape that had to copy */
extern const ag_function ag_fn_select;      /* SelectBackward0 */
extern const ag_function ag_fn_slice;       /* SliceBackward0: torch_narrow */
extern const ag_function ag_fn_transpose;   /* TransposeBackward0 */
extern const ag_function ag_fn_permute;     /* PermuteBackward0 */
extern const ag_function ag_fn_unsqueeze;   /* UnsqueezeBackward0 */
extern const ag_function ag_fn_squeeze_dim; /* SqueezeBackward1 */
extern const ag_function ag_fn_clone;       /* CloneBackward0: torch_contiguous that copied */

/* ---- helpers (functions.c) -------------------------------------------------------------------- */

/* Records fn on *out (a new reference that the op is about to return) when grad mode is on and
 * an input requires grad. Returns true and sets *node (NULL when nothing was recorded) on
 * success; on failure (*out NULL because the kernel failed, or recording failed) frees *out,
 * sets it to NULL and returns false, leaving the error set. */
bool ag_op_record(const ag_function *fn, tensor **out, int n_inputs, tensor *const *inputs, ag_node **node);

/* Frees out and returns NULL: the one-line exit of an op whose ag_node_save failed. */
tensor *ag_op_fail(tensor *out);

#endif /* CTORCH_AUTOGRAD_FUNCTIONS_H */
