/* ops_linalg.c — the differentiable matrix product. */
#include "functions.h"
#include "ops.h"

/* out = a @ b, a (n, k), b (k, m):  da = g @ b^T (n, k),  db = a^T @ g (k, m).
 * Saved: a (slot 0) when b needs a gradient, b (slot 1) when a does. The transposes are sgemm
 * flags, not copies. */
static torch_status mm_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (ag_node_needs_grad(n, 0) && !(gi[0] = tensor_mm(g, false, n->saved[1], true))) return torch_last_status();
    if (ag_node_needs_grad(n, 1) && !(gi[1] = tensor_mm(n->saved[0], true, g, false))) return torch_last_status();
    return TORCH_OK;
}
static const ag_function ag_fn_mm = {.op = AG_OP_MM, .backward = mm_backward};

tensor *torch_matmul(tensor *a, tensor *b) {
    static const char fname[] = "torch_matmul";
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_check_float32(fname, "other", b) != TORCH_OK) return NULL;
    tensor *out = tensor_mm(a, false, b, false); /* checks 2-D and inner sizes, PyTorch's message */
    tensor *in[2] = {a, b};
    ag_node *n = NULL;
    if (!ag_op_record(&ag_fn_mm, &out, 2, in, &n)) return NULL;
    if (n && ag_node_needs_grad(n, 1) && ag_node_save(n, 0, a) != TORCH_OK) return ag_op_fail(out);
    if (n && ag_node_needs_grad(n, 0) && ag_node_save(n, 1, b) != TORCH_OK) return ag_op_fail(out);
    return out;
}
