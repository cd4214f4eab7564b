/* test_gradcheck.c — the gradient checker must be able to fail: a test-local op with a
 * deliberately wrong backward is caught and its worst element named; the checker leaves its
 * inputs as it found them;  bad arguments are refused. (The op table is walked by test_op_table.c.) */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"

/* ---- a test-local op: out = x^2 (elementwise) * w, with a backward we can break ------------------ */

typedef struct {
    int64_t bad_x; /* element of dx to corrupt, -1 for none */
    int64_t bad_w; /* element of dw to corrupt, -1 for none */
    float   delta; /* added to the corrupted element */
    bool    drop_w; /* return no gradient for w at all */
} sabotage;

/* out = x^2 * w:  dx = 2 x w g,  dw = x^2 g (both at the output's shape). n->ctx: the sabotage. */
static torch_status square_mul_backward(ag_node *n, const tensor *g, tensor **gi) {
    const sabotage *s = n->ctx;
    const tensor *x = n->saved[0], *w = n->saved[1];
    if (ag_node_needs_grad(n, 0)) {
        tensor *xw = tensor_binary(TORCH_BINARY_MUL, x, w);
        tensor *t = tensor_binary(TORCH_BINARY_MUL, xw, g);
        gi[0] = tensor_binary_scalar(TORCH_BINARY_MUL, t, 2.0);
        tensor_free(xw);
        tensor_free(t);
        if (s->bad_x >= 0) tensor_data_f32(gi[0])[s->bad_x] += s->delta;
    }
    if (ag_node_needs_grad(n, 1) && !s->drop_w) {
        tensor *x2 = tensor_unary(TORCH_UNARY_SQUARE, x);
        gi[1] = tensor_binary(TORCH_BINARY_MUL, x2, g);
        tensor_free(x2);
        if (s->bad_w >= 0) tensor_data_f32(gi[1])[s->bad_w] += s->delta;
    }
    return TORCH_OK;
}

static void no_free(void *ctx) { (void)ctx; } /* ctx is the test's sabotage struct, not heap memory */

static const ag_function square_mul_fn = {.name = "SquareMulBackward0", .backward = square_mul_backward, .free_ctx = no_free};

static tensor *square_mul(tensor *const *in, void *user) {
    tensor *x = in[0], *w = in[1];
    tensor *x2 = tensor_unary(TORCH_UNARY_SQUARE, x);
    tensor *out = tensor_binary(TORCH_BINARY_MUL, x2, w);
    tensor_free(x2);
    if (out && ag_should_record(2, in)) {
        ag_node *n = ag_record(&square_mul_fn, out, 2, in);
        cr_assert_not_null(n);
        cr_assert_eq(ag_node_save(n, 0, x), TORCH_OK);
        cr_assert_eq(ag_node_save(n, 1, w), TORCH_OK);
        n->ctx = user;
    }
    return out;
}

static tensor *uniform(uint64_t seed, int ndim, const int64_t *shape, bool requires_grad) {
    torch_generator g = torch_generator_new(seed);
    tensor *t = torch_empty(ndim, shape);
    float *d = tensor_data_f32(t);
    for (int64_t k = 0; k < t->numel; k++) d[k] = (float)(2.0 * torch_generator_uniform(&g) - 1.0);
    cr_assert_eq(tensor_set_requires_grad(t, requires_grad), TORCH_OK);
    return t;
}

static const char *const names[] = {"x", "w"};

Test(gradcheck, a_correct_backward_passes) {
    tensor *x = uniform(1, TORCH_SHAPE(4, 6), true);
    tensor *w = uniform(2, TORCH_SHAPE(6), true);
    sabotage s = {-1, -1, 0, false};
    torch_gradcheck_result r;
    torch_status st = torch_gradcheck(square_mul, &s, 2, (tensor *const[]){x, w}, names,
                                      torch_gradcheck_options_default(), &r);
    cr_assert_eq(st, TORCH_OK, "%s", r.message);
    cr_assert(r.passed);
    cr_assert(r.max_abs_err < 1e-3, "%s", r.message);
    cr_assert(strstr(r.message, "gradcheck: passed (30 elements)"), "%s", r.message);
    tensor_free(x);
    tensor_free(w);
}

Test(gradcheck, a_wrong_element_is_caught_and_named) {
    tensor *x = uniform(3, TORCH_SHAPE(4, 6), true);
    tensor *w = uniform(4, TORCH_SHAPE(6), true);
    sabotage s = {17, -1, 0.05f, false};
    torch_gradcheck_result r;
    torch_status st = torch_gradcheck(square_mul, &s, 2, (tensor *const[]){x, w}, names,
                                      torch_gradcheck_options_default(), &r);
    cr_assert_eq(st, TORCH_ERR_INVALID_STATE);
    cr_assert(!r.passed);
    cr_assert_eq(r.worst_input, 0);
    cr_assert_eq(r.worst_index, 17);
    cr_assert(fabs(r.analytic - r.numeric - 0.05) < 2e-3, "analytic %g numeric %g", r.analytic, r.numeric);
    cr_assert(fabs(r.max_abs_err - 0.05) < 2e-3);
    cr_assert(strstr(r.message, "gradcheck: input 'x' element [2, 5] (index 17): analytic "), "%s", r.message);
    cr_assert(strstr(r.message, " vs numeric "), "%s", r.message);
    cr_assert_str_eq(torch_last_error(), r.message);
    tensor_free(x);
    tensor_free(w);
}

Test(gradcheck, a_wrong_gradient_of_the_second_input_is_named) {
    tensor *x = uniform(5, TORCH_SHAPE(4, 6), true);
    tensor *w = uniform(6, TORCH_SHAPE(6), true);
    sabotage s = {-1, 2, -0.1f, false}; /* dw is summed over the broadcast rows by the driver */
    torch_gradcheck_result r;
    cr_assert_eq(torch_gradcheck(square_mul, &s, 2, (tensor *const[]){x, w}, names,
                                 torch_gradcheck_options_default(), &r),
                 TORCH_ERR_INVALID_STATE);
    cr_assert_eq(r.worst_input, 1);
    cr_assert_eq(r.worst_index, 2);
    cr_assert(strstr(r.message, "input 'w' element [2] (index 2)"), "%s", r.message);

    /* No gradient at all for w: analytic 0 against a non-zero numeric one. Unnamed inputs are numbered. */
    sabotage drop = {-1, -1, 0, true};
    cr_assert_eq(torch_gradcheck(square_mul, &drop, 2, (tensor *const[]){x, w}, NULL,
                                 torch_gradcheck_options_default(), &r),
                 TORCH_ERR_INVALID_STATE);
    cr_assert_eq(r.worst_input, 1);
    cr_assert_eq(r.analytic, 0.0);
    cr_assert(strstr(r.message, "gradcheck: input 1 element "), "%s", r.message);
    tensor_free(x);
    tensor_free(w);
}

Test(gradcheck, tolerances_are_the_callers) {
    tensor *x = uniform(7, TORCH_SHAPE(3), true);
    tensor *w = uniform(8, TORCH_SHAPE(3), true);
    sabotage s = {1, -1, 0.05f, false};
    torch_gradcheck_options o = torch_gradcheck_options_default();
    cr_assert_eq(o.eps, 1e-3);
    cr_assert_eq(o.atol, 1e-3);
    cr_assert_eq(o.rtol, 1e-2);
    cr_assert_eq(o.seed, 0);
    o.atol = 0.1; /* loose enough for a 0.05 error */
    torch_gradcheck_result r;
    cr_assert_eq(torch_gradcheck(square_mul, &s, 2, (tensor *const[]){x, w}, names, o, &r), TORCH_OK, "%s",
                 r.message);
    cr_assert(r.passed && r.worst_input == 0 && r.worst_index == 1, "%s", r.message);
    /* result is optional */
    o = torch_gradcheck_options_default();
    cr_assert_eq(torch_gradcheck(square_mul, &s, 2, (tensor *const[]){x, w}, names, o, NULL),
                 TORCH_ERR_INVALID_STATE);
    cr_assert(strstr(torch_last_error(), "input 'x' element [1] (index 1)"), "%s", torch_last_error());
    tensor_free(x);
    tensor_free(w);
}

Test(gradcheck, inputs_and_their_grads_are_left_as_found) {
    tensor *x = uniform(9, TORCH_SHAPE(2, 3), true);
    tensor *w = uniform(10, TORCH_SHAPE(3), false); /* passed through, not checked */
    float before[6];
    memcpy(before, tensor_data_f32(x), sizeof before);
    tensor *old = torch_full(TORCH_SHAPE(2, 3), 7.0f); /* a gradient accumulated before the check */
    x->grad = old;
    sabotage s = {-1, -1, 0, false};
    torch_gradcheck_result r;
    cr_assert_eq(torch_gradcheck(square_mul, &s, 2, (tensor *const[]){x, w}, names,
                                 torch_gradcheck_options_default(), &r),
                 TORCH_OK, "%s", r.message);
    cr_assert(strstr(r.message, "(6 elements)"), "%s", r.message); /* w was not checked */
    cr_assert_eq(memcmp(before, tensor_data_f32(x), sizeof before), 0, "an input element was not restored exactly");
    cr_assert_eq(tensor_grad(x), old);
    for (int i = 0; i < 6; i++) cr_assert_eq(tensor_data_f32(old)[i], 7.0f);
    cr_assert_null(tensor_grad(w));
    cr_assert(torch_is_grad_enabled());
    tensor_free(x);
    tensor_free(w);
}

static tensor *failing(tensor *const *in, void *user) {
    (void)user;
    return torch_reshape(in[0], TORCH_SHAPE(5));
}

static tensor *constant(tensor *const *in, void *user) {
    (void)in;
    (void)user;
    return torch_ones(TORCH_SHAPE(2));
}

Test(gradcheck, bad_arguments_are_refused) {
    tensor *x = uniform(11, TORCH_SHAPE(2, 3), true);
    tensor *c = uniform(12, TORCH_SHAPE(2, 3), false);
    tensor *i = torch_scalar_int64(1);
    tensor *y = torch_mul_scalar(x, 2.0);
    torch_gradcheck_options o = torch_gradcheck_options_default();
    torch_gradcheck_result r;

    cr_assert_eq(torch_gradcheck(NULL, NULL, 1, &x, NULL, o, &r), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(!r.passed && strstr(r.message, "torch_gradcheck: fn is NULL"), "%s", r.message);
    cr_assert_eq(torch_gradcheck(square_mul, NULL, 1, &c, NULL, o, &r), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "torch_gradcheck: no input requires grad"), "%s", torch_last_error());
    cr_assert_eq(torch_gradcheck(square_mul, NULL, 1, &y, NULL, o, &r), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "input 0 is not a leaf"), "%s", torch_last_error());
    cr_assert_eq(torch_gradcheck(square_mul, NULL, 2, (tensor *const[]){x, i}, NULL, o, &r),
                 TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "expected input 1 to be float32 (got int64)"), "%s", torch_last_error());
    cr_assert_eq(torch_gradcheck(square_mul, NULL, 2, (tensor *const[]){x, x}, NULL, o, &r),
                 TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "input 1 is the same tensor as input 0"), "%s", torch_last_error());
    o.eps = 0;
    cr_assert_eq(torch_gradcheck(square_mul, NULL, 1, &x, NULL, o, &r), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "expected eps > 0"), "%s", torch_last_error());
    o = torch_gradcheck_options_default();

    /* fn fails: its error comes through with our prefix. */
    cr_assert_eq(torch_gradcheck(failing, NULL, 1, &x, NULL, o, &r), TORCH_ERR_SHAPE);
    cr_assert(strstr(torch_last_error(), "torch_gradcheck: the function failed: torch_reshape: shape '[5]' is "
                                         "invalid for input of size 6"),
              "%s", torch_last_error());
    /* An output that does not depend on the inputs. */
    cr_assert_eq(torch_gradcheck(constant, NULL, 1, &x, NULL, o, &r), TORCH_ERR_INVALID_STATE);
    cr_assert(strstr(torch_last_error(), "the output does not require grad"), "%s", torch_last_error());
    cr_assert_null(tensor_grad(x));

    tensor_free(y);
    tensor_free(i);
    tensor_free(c);
    tensor_free(x);
}
