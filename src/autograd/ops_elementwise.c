/* ops_elementwise.c — differentiable element-wise ops: forward and backward side by side.
 *
 * Every forward is one raw kernel of tensor/ops.h. Binary ops broadcast; their backward returns
 * the gradient at the output's (broadcast) shape and the driver sums it back to each input's
 * shape (fit_to_input in autograd.c). Notation below: g = dL/dout.
 */
#include "functions.h"
#include "ops.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

static torch_status check_binary(const char *fname, const tensor *a, const tensor *b) {
    torch_status st = torch_check_float32(fname, "input", a);
    return st != TORCH_OK ? st : torch_check_float32(fname, "other", b);
}

/* Sets *slot to r, or reports the kernel's failure. */
static torch_status put(tensor **slot, tensor *r) {
    *slot = r;
    return r ? TORCH_OK : torch_last_status();
}

/* g, shared: the gradient passes through unchanged. */
static tensor *same(const tensor *g) { return tensor_retain((tensor *)g); }

/* r = k * a * b, freeing nothing; one temporary. */
static tensor *scaled_product(const tensor *a, const tensor *b, double k) {
    tensor *p = tensor_binary(TORCH_BINARY_MUL, a, b);
    if (!p || k == 1.0) return p;
    torch_status st = tensor_mul_scalar_(p, k);
    if (st != TORCH_OK) {
        tensor_free(p);
        return NULL;
    }
    return p;
}

/* A binary op recording fn. Saves only what the backward will read: a (slot 0) when
 * save_a_for_b and b needs a gradient (d(a*b)/db = a); b (slot 1) when save_b_for_a and a needs
 * one, or save_b_for_b and b needs one (d(a/b)/db = -a/b^2). */
static tensor *binary_op(const char *fname, torch_binary_op op, const ag_function *fn, tensor *a, tensor *b,
                         bool save_a_for_b, bool save_b_for_a, bool save_b_for_b) {
    if (check_binary(fname, a, b) != TORCH_OK) return NULL;
    tensor *out = tensor_binary(op, a, b);
    tensor *in[2] = {a, b};
    ag_node *n = NULL;
    if (!ag_op_record(fn, &out, 2, in, &n)) return NULL;
    if (n) {
        bool ga = ag_node_needs_grad(n, 0), gb = ag_node_needs_grad(n, 1);
        if (save_a_for_b && gb && ag_node_save(n, 0, a) != TORCH_OK) return ag_op_fail(out);
        if (((save_b_for_a && ga) || (save_b_for_b && gb)) && ag_node_save(n, 1, b) != TORCH_OK)
            return ag_op_fail(out);
    }
    return out;
}

/* ---- add, sub --------------------------------------------------------------------------------- */

/* out = a + b:  da = g,  db = g. */
static torch_status add_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (ag_node_needs_grad(n, 0)) gi[0] = same(g);
    if (ag_node_needs_grad(n, 1)) gi[1] = same(g);
    return TORCH_OK;
}
static const ag_function ag_fn_add = {.op = AG_OP_ADD, .backward = add_backward};

tensor *torch_add(tensor *a, tensor *b) {
    return binary_op("torch_add", TORCH_BINARY_ADD, &ag_fn_add, a, b, false, false, false);
}

/* out = a - b:  da = g,  db = -g. */
static torch_status sub_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (ag_node_needs_grad(n, 0)) gi[0] = same(g);
    if (ag_node_needs_grad(n, 1)) return put(&gi[1], tensor_unary(TORCH_UNARY_NEG, g));
    return TORCH_OK;
}
static const ag_function ag_fn_sub = {.op = AG_OP_SUB, .backward = sub_backward};

tensor *torch_sub(tensor *a, tensor *b) {
    return binary_op("torch_sub", TORCH_BINARY_SUB, &ag_fn_sub, a, b, false, false, false);
}

/* ---- mul, div --------------------------------------------------------------------------------- */

/* out = a * b:  da = g * b,  db = g * a.  Saved: a (slot 0) if b needs grad, b (slot 1) if a does. */
static torch_status mul_backward(ag_node *n, const tensor *g, tensor **gi) {
    torch_status st = TORCH_OK;
    if (ag_node_needs_grad(n, 0)) st = put(&gi[0], tensor_binary(TORCH_BINARY_MUL, g, n->saved[1]));
    if (st == TORCH_OK && ag_node_needs_grad(n, 1)) st = put(&gi[1], tensor_binary(TORCH_BINARY_MUL, g, n->saved[0]));
    return st;
}
static const ag_function ag_fn_mul = {.op = AG_OP_MUL, .backward = mul_backward};

tensor *torch_mul(tensor *a, tensor *b) {
    return binary_op("torch_mul", TORCH_BINARY_MUL, &ag_fn_mul, a, b, true, true, false);
}

/* out = a / b:  da = g / b,  db = -g * a / b^2.  Saved: a (slot 0) if b needs grad, b (slot 1). */
static torch_status div_backward(ag_node *n, const tensor *g, tensor **gi) {
    const tensor *a = n->saved[0], *b = n->saved[1];
    torch_status st = TORCH_OK;
    if (ag_node_needs_grad(n, 0)) st = put(&gi[0], tensor_binary(TORCH_BINARY_DIV, g, b));
    if (st == TORCH_OK && ag_node_needs_grad(n, 1)) {
        tensor *ga = scaled_product(g, a, -1.0); /* -g * a */
        tensor *b2 = ga ? tensor_unary(TORCH_UNARY_SQUARE, b) : NULL;
        st = put(&gi[1], b2 ? tensor_binary(TORCH_BINARY_DIV, ga, b2) : NULL);
        tensor_free(ga);
        tensor_free(b2);
    }
    return st;
}
static const ag_function ag_fn_div = {.op = AG_OP_DIV, .backward = div_backward};

tensor *torch_div(tensor *a, tensor *b) {
    return binary_op("torch_div", TORCH_BINARY_DIV, &ag_fn_div, a, b, true, true, true);
}

/* ---- with a scalar (the scalar gets no gradient) ---------------------------------------------- */

/* One-input op out = kernel(a) recording fn; scalars[0] = s for the backward. */
static tensor *scalar_op(const char *fname, torch_binary_op op, const ag_function *fn, tensor *a, double s) {
    if (torch_check_float32(fname, "input", a) != TORCH_OK) return NULL;
    tensor *out = tensor_binary_scalar(op, a, s);
    ag_node *n = NULL;
    if (!ag_op_record(fn, &out, 1, &a, &n)) return NULL;
    if (n) n->scalars[0] = s;
    return out;
}

/* out = a + s (or a - s):  da = g. */
static torch_status pass_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (ag_node_needs_grad(n, 0)) gi[0] = same(g);
    return TORCH_OK;
}
static const ag_function ag_fn_add_scalar = {.op = AG_OP_ADD_SCALAR, .backward = pass_backward};
static const ag_function ag_fn_sub_scalar = {.op = AG_OP_SUB_SCALAR, .backward = pass_backward};

tensor *torch_add_scalar(tensor *a, double s) {
    return scalar_op("torch_add_scalar", TORCH_BINARY_ADD, &ag_fn_add_scalar, a, s);
}

tensor *torch_sub_scalar(tensor *a, double s) {
    return scalar_op("torch_sub_scalar", TORCH_BINARY_SUB, &ag_fn_sub_scalar, a, s);
}

/* out = a * s:  da = g * s. */
static torch_status mul_scalar_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], tensor_binary_scalar(TORCH_BINARY_MUL, g, n->scalars[0]));
}
static const ag_function ag_fn_mul_scalar = {.op = AG_OP_MUL_SCALAR, .backward = mul_scalar_backward};

tensor *torch_mul_scalar(tensor *a, double s) {
    return scalar_op("torch_mul_scalar", TORCH_BINARY_MUL, &ag_fn_mul_scalar, a, s);
}

/* out = a / s:  da = g / s (a division, as the forward, so s = 0 gives inf/nan as in PyTorch). */
static torch_status div_scalar_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], tensor_binary_scalar(TORCH_BINARY_DIV, g, n->scalars[0]));
}
static const ag_function ag_fn_div_scalar = {.op = AG_OP_DIV_SCALAR, .backward = div_scalar_backward};

tensor *torch_div_scalar(tensor *a, double s) {
    return scalar_op("torch_div_scalar", TORCH_BINARY_DIV, &ag_fn_div_scalar, a, s);
}

/* out = a^e:  da = g * e * a^(e-1); exactly 0 for e = 0 (as PyTorch, even where a = 0).
 * Saved: a. */
static torch_status pow_scalar_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    double e = n->scalars[0];
    if (e == 0.0) return put(&gi[0], torch_zeros_like(g));
    tensor *p = tensor_binary_scalar(TORCH_BINARY_POW, n->saved[0], e - 1.0);
    torch_status st = put(&gi[0], p ? scaled_product(g, p, e) : NULL);
    tensor_free(p);
    return st;
}
static const ag_function ag_fn_pow_scalar = {.op = AG_OP_POW_SCALAR, .backward = pow_scalar_backward};

tensor *torch_pow_scalar(tensor *a, double exponent) {
    tensor *out = scalar_op("torch_pow_scalar", TORCH_BINARY_POW, &ag_fn_pow_scalar, a, exponent);
    if (out && out->grad_fn && ag_node_save(out->grad_fn, 0, a) != TORCH_OK) return ag_op_fail(out);
    return out;
}

/* ---- unary ------------------------------------------------------------------------------------ */

/* out = kernel(a) recording fn; saves a (save_input) or out (save_output) in slot 0. */
static tensor *unary_op(const char *fname, torch_unary_op op, const ag_function *fn, tensor *a, bool save_input,
                        bool save_output) {
    if (torch_check_float32(fname, "input", a) != TORCH_OK) return NULL;
    tensor *out = tensor_unary(op, a);
    ag_node *n = NULL;
    if (!ag_op_record(fn, &out, 1, &a, &n)) return NULL;
    if (n && save_input && ag_node_save(n, 0, a) != TORCH_OK) return ag_op_fail(out);
    if (n && save_output && ag_node_save(n, 0, out) != TORCH_OK) return ag_op_fail(out);
    return out;
}

/* out = -a:  da = -g. */
static torch_status neg_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], tensor_unary(TORCH_UNARY_NEG, g));
}
static const ag_function ag_fn_neg = {.op = AG_OP_NEG, .backward = neg_backward};

tensor *torch_neg(tensor *a) { return unary_op("torch_neg", TORCH_UNARY_NEG, &ag_fn_neg, a, false, false); }

/* out = exp(a):  da = g * out.  Saved: out (the derivative itself, no recomputation). */
static torch_status exp_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], tensor_binary(TORCH_BINARY_MUL, g, n->saved[0]));
}
static const ag_function ag_fn_exp = {.op = AG_OP_EXP, .backward = exp_backward};

tensor *torch_exp(tensor *a) { return unary_op("torch_exp", TORCH_UNARY_EXP, &ag_fn_exp, a, false, true); }

/* out = log(a):  da = g / a.  Saved: a. */
static torch_status log_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], tensor_binary(TORCH_BINARY_DIV, g, n->saved[0]));
}
static const ag_function ag_fn_log = {.op = AG_OP_LOG, .backward = log_backward};

tensor *torch_log(tensor *a) { return unary_op("torch_log", TORCH_UNARY_LOG, &ag_fn_log, a, true, false); }

/* out = sqrt(a):  da = g / (2 out).  Saved: out. */
static torch_status sqrt_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    tensor *two_out = tensor_binary_scalar(TORCH_BINARY_MUL, n->saved[0], 2.0);
    torch_status st = put(&gi[0], two_out ? tensor_binary(TORCH_BINARY_DIV, g, two_out) : NULL);
    tensor_free(two_out);
    return st;
}
static const ag_function ag_fn_sqrt = {.op = AG_OP_SQRT, .backward = sqrt_backward};

tensor *torch_sqrt(tensor *a) { return unary_op("torch_sqrt", TORCH_UNARY_SQRT, &ag_fn_sqrt, a, false, true); }

/* out = a^(-1/2):  da = -1/2 a^(-3/2) g = -1/2 out^3 g.  Saved: out. */
static torch_status rsqrt_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    const tensor *out = n->saved[0];
    tensor *sq = tensor_unary(TORCH_UNARY_SQUARE, out);
    tensor *cube = sq ? scaled_product(sq, out, -0.5) : NULL;
    torch_status st = put(&gi[0], cube ? tensor_binary(TORCH_BINARY_MUL, g, cube) : NULL);
    tensor_free(sq);
    tensor_free(cube);
    return st;
}
static const ag_function ag_fn_rsqrt = {.op = AG_OP_RSQRT, .backward = rsqrt_backward};

tensor *torch_rsqrt(tensor *a) { return unary_op("torch_rsqrt", TORCH_UNARY_RSQRT, &ag_fn_rsqrt, a, false, true); }

/* out = max(a, 0):  da = g where out > 0, else 0 (0 at a = 0 as in PyTorch; a NaN output passes
 * g, as ATen's threshold_backward does). One pass, no mask tensor.  Saved: out. */
static torch_status relu_backward(ag_node *n, const tensor *g, tensor **gi) {
    if (!ag_node_needs_grad(n, 0)) return TORCH_OK;
    return put(&gi[0], tensor_relu_backward(g, n->saved[0]));
}
static const ag_function ag_fn_relu = {.op = AG_OP_RELU, .backward = relu_backward};

tensor *torch_relu(tensor *a) { return unary_op("torch_relu", TORCH_UNARY_RELU, &ag_fn_relu, a, false, true); }

/* ---- comparisons: piecewise constant, so no gradient and no node ------------------------------- */

static tensor *compare(const char *fname, torch_binary_op op, tensor *a, tensor *b) {
    if (check_binary(fname, a, b) != TORCH_OK) return NULL;
    return tensor_binary(op, a, b);
}

tensor *torch_eq(tensor *a, tensor *b) { return compare("torch_eq", TORCH_BINARY_EQ, a, b); }
tensor *torch_ne(tensor *a, tensor *b) { return compare("torch_ne", TORCH_BINARY_NE, a, b); }
tensor *torch_lt(tensor *a, tensor *b) { return compare("torch_lt", TORCH_BINARY_LT, a, b); }
tensor *torch_le(tensor *a, tensor *b) { return compare("torch_le", TORCH_BINARY_LE, a, b); }
tensor *torch_gt(tensor *a, tensor *b) { return compare("torch_gt", TORCH_BINARY_GT, a, b); }
tensor *torch_ge(tensor *a, tensor *b) { return compare("torch_ge", TORCH_BINARY_GE, a, b); }
