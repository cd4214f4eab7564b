/* functions.c — the table of this layer's ag_functions and the helpers its ops share. */
#include "functions.h"

/* Every differentiable op's node type; test_gradcheck.c checks names, backwards and uniqueness.
 * An op added without an entry here is missed by that test, so add it in the same change. */
const ag_function *const ag_builtin_functions[] = {
    /* element-wise */
    &ag_fn_add, &ag_fn_sub, &ag_fn_mul, &ag_fn_div, &ag_fn_add_scalar, &ag_fn_sub_scalar, &ag_fn_mul_scalar,
    &ag_fn_div_scalar, &ag_fn_pow_scalar, &ag_fn_neg, &ag_fn_exp, &ag_fn_log, &ag_fn_sqrt, &ag_fn_rsqrt,
    &ag_fn_relu,
    /* reductions */
    &ag_fn_sum_all, &ag_fn_sum_dim, &ag_fn_mean_all, &ag_fn_mean_dim, &ag_fn_var, &ag_fn_max_dim,
    /* linear algebra */
    &ag_fn_mm,
    /* views */
    &ag_fn_view, &ag_fn_unsafe_view, &ag_fn_select, &ag_fn_slice, &ag_fn_transpose, &ag_fn_permute,
    &ag_fn_unsqueeze, &ag_fn_squeeze_dim, &ag_fn_clone,
    NULL,
};

bool ag_op_record(const ag_function *fn, tensor **out, int n_inputs, tensor *const *inputs, ag_node **node) {
    *node = NULL;
    if (!*out) return false;
    if (!ag_should_record(n_inputs, inputs)) return true;
    *node = ag_record(fn, *out, n_inputs, inputs);
    if (*node) return true;
    tensor_free(*out);
    *out = NULL;
    return false;
}

tensor *ag_op_fail(tensor *out) {
    tensor_free(out);
    return NULL;
}
