/* test_autograd.c — the graph driver: leaves, accumulation, retain_graph, grad mode, detach,
 * explicit and implicit upstream gradients, diamonds, long chains, freeing before backward.
 * Expected gradients are hand-computed (calculus on small closed forms). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <threads.h>

#include "ctorch.h"

/* A float32 leaf from literal values. */
static tensor *leaf(const float *data, int ndim, const int64_t *shape, bool requires_grad) {
    tensor *t = torch_tensor(data, ndim, shape);
    cr_assert_not_null(t);
    cr_assert_eq(tensor_set_requires_grad(t, requires_grad), TORCH_OK);
    return t;
}

/* Asserts t (any strides) holds expected, row-major, within tol. */
static void assert_values(const tensor *t, const float *expected, int64_t n, double tol) {
    cr_assert_not_null(t);
    cr_assert_eq(t->numel, n, "numel %lld, expected %lld", (long long)t->numel, (long long)n);
    tensor *c = tensor_contiguous(t);
    const float *d = tensor_data_f32(c);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs((double)d[i] - (double)expected[i]) <= tol, "element %lld: %g, expected %g", (long long)i,
                  (double)d[i], (double)expected[i]);
    tensor_free(c);
}

static void assert_error(torch_status expected, const char *fragment) {
    cr_assert_eq(torch_last_status(), expected, "status %s, expected %s (%s)", torch_status_string(torch_last_status()),
                 torch_status_string(expected), torch_last_error());
    cr_assert(strstr(torch_last_error(), fragment), "message \"%s\" lacks \"%s\"", torch_last_error(), fragment);
}

Test(autograd, leaves_and_non_leaves) {
    tensor *x = leaf((const float[]){1, 2, 3}, TORCH_SHAPE(3), true);
    tensor *c = leaf((const float[]){4, 5, 6}, TORCH_SHAPE(3), false);
    tensor *y = torch_mul(x, c);
    tensor *z = torch_mul(c, c);
    cr_assert(tensor_is_leaf(x) && tensor_is_leaf(c));
    cr_assert(!tensor_is_leaf(y) && y->requires_grad);
    cr_assert_str_eq(ag_function_name(y->grad_fn->fn), "MulBackward0");
    /* No input requires grad: a plain tensor, no node. */
    cr_assert(tensor_is_leaf(z) && !z->requires_grad && !z->grad_fn);

    /* requires_grad of a non-leaf cannot change; the refused call changes nothing. */
    cr_assert_eq(tensor_set_requires_grad(y, false), TORCH_ERR_INVALID_ARGUMENT);
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "only change requires_grad flags of leaf variables");
    cr_assert(y->requires_grad && y->grad_fn);

    /* An int64 tensor cannot require grad. */
    tensor *i = torch_scalar_int64(3);
    cr_assert_eq(tensor_set_requires_grad(i, true), TORCH_ERR_INVALID_ARGUMENT);
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "only Tensors of floating point dtype can require gradients");
    cr_assert(!i->requires_grad);

    /* Only leaves requiring grad receive .grad; d(sum(x*c))/dx = c. */
    tensor *s = torch_sum(y, 0, NULL, false);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){4, 5, 6}, 3, 0);
    cr_assert_null(tensor_grad(c));
    cr_assert_null(tensor_grad(y)); /* non-leaves keep no gradient */

    tensor_free(i);
    tensor_free(s);
    tensor_free(z);
    tensor_free(y);
    tensor_free(c);
    tensor_free(x);
}

/* L = sum(x * x), dL/dx = 2x. */
static tensor *square_sum(tensor *x) {
    tensor *sq = torch_mul(x, x);
    tensor *s = torch_sum(sq, 0, NULL, false);
    tensor_free(sq);
    return s;
}

Test(autograd, gradients_accumulate_across_backward_calls_and_zero_grad_clears) {
    tensor *x = leaf((const float[]){1, -2, 0.5f}, TORCH_SHAPE(3), true);
    for (int k = 0; k < 2; k++) {
        tensor *s = square_sum(x);
        cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
        tensor_free(s);
    }
    assert_values(tensor_grad(x), (const float[]){4, -8, 2}, 3, 0); /* 2x twice */

    tensor_zero_grad(x);
    cr_assert_null(tensor_grad(x));
    tensor *s = square_sum(x);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){2, -4, 1}, 3, 0);
    tensor_free(s);
    tensor_free(x);
}

Test(autograd, retain_graph_allows_a_second_backward_and_without_it_fails) {
    tensor *x = leaf((const float[]){3}, TORCH_SHAPE(1), true);
    tensor *s = square_sum(x);
    cr_assert_eq(tensor_backward(s, NULL, true), TORCH_OK);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK); /* allowed: the first one retained */
    assert_values(tensor_grad(x), (const float[]){12}, 1, 0);

    /* The graph's saved tensors are gone now: PyTorch's error, and x->grad untouched. */
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_ERR_INVALID_STATE);
    assert_error(TORCH_ERR_INVALID_STATE, "Trying to backward through the graph a second time");
    assert_values(tensor_grad(x), (const float[]){12}, 1, 0);
    tensor_free(s);
    tensor_free(x);
}

Test(autograd, nodes_that_saved_nothing_allow_a_second_backward) {
    /* PyTorch: z = x + y; z.sum().backward(); z.sum().backward() works, as AddBackward0 and
     * SumBackward0 keep nothing to free; the gradients add up. */
    tensor *x = leaf((const float[]){1, 2}, TORCH_SHAPE(2), true);
    tensor *y = leaf((const float[]){3, 4}, TORCH_SHAPE(2), true);
    tensor *z = torch_add(x, y);
    for (int pass = 1; pass <= 2; pass++) {
        tensor *s = torch_sum(z, 0, NULL, false);
        cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK, "pass %d: %s", pass, torch_last_error());
        tensor_free(s);
        assert_values(tensor_grad(x), (const float[]){(float)pass, (float)pass}, 2, 0);
        assert_values(tensor_grad(y), (const float[]){(float)pass, (float)pass}, 2, 0);
    }
    /* A node that saved its inputs still refuses: PyTorch's error, gradients untouched. */
    tensor *p = torch_mul(z, x), *s = torch_sum(p, 0, NULL, false);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){2 + 5, 2 + 8}, 2, 0); /* + d(x (x + y))/dx = 2x + y */
    assert_values(tensor_grad(y), (const float[]){2 + 1, 2 + 2}, 2, 0); /* + x */
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_ERR_INVALID_STATE);
    assert_error(TORCH_ERR_INVALID_STATE, "Trying to backward through the graph a second time");
    assert_values(tensor_grad(x), (const float[]){7, 10}, 2, 0);
    assert_values(tensor_grad(y), (const float[]){3, 4}, 2, 0);
    tensor *all[] = {x, y, z, p, s};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
}

Test(autograd, no_grad_scope_nests) {
    tensor *x = leaf((const float[]){1, 2}, TORCH_SHAPE(2), true);
    cr_assert(torch_is_grad_enabled());
    bool outer = torch_set_grad_enabled(false);
    cr_assert(outer);
    tensor *a = torch_mul_scalar(x, 2.0);
    cr_assert(!a->requires_grad && !a->grad_fn);
    bool inner = torch_set_grad_enabled(false); /* nested no-grad */
    cr_assert(!inner);
    torch_set_grad_enabled(inner); /* leaving the inner scope keeps grad off */
    cr_assert(!torch_is_grad_enabled());
    tensor *b = torch_exp(x);
    cr_assert(!b->requires_grad && !b->grad_fn);
    torch_set_grad_enabled(outer);
    cr_assert(torch_is_grad_enabled());

    /* An enable-grad scope inside no-grad records again. */
    torch_set_grad_enabled(false);
    bool prev = torch_set_grad_enabled(true);
    tensor *c = torch_mul_scalar(x, 2.0);
    torch_set_grad_enabled(prev);
    torch_set_grad_enabled(true);
    cr_assert(c->requires_grad && c->grad_fn);
    assert_values(a, (const float[]){2, 4}, 2, 0);

    tensor_free(a);
    tensor_free(b);
    tensor_free(c);
    tensor_free(x);
}

/* Runs on another thread: reports that thread's grad mode, then disables it there. */
static int grad_mode_of_new_thread(void *out) {
    *(bool *)out = torch_is_grad_enabled();
    torch_set_grad_enabled(false);
    return 0;
}

Test(autograd, grad_mode_is_per_thread) {
    bool prev = torch_set_grad_enabled(false);
    bool other = false;
    thrd_t t;
    cr_assert_eq(thrd_create(&t, grad_mode_of_new_thread, &other), thrd_success);
    cr_assert_eq(thrd_join(t, NULL), thrd_success);
    cr_assert(other, "a new thread starts with grad mode on, whatever this thread set");
    cr_assert(!torch_is_grad_enabled()); /* its change did not reach this thread either */
    torch_set_grad_enabled(prev);
    cr_assert(torch_is_grad_enabled());
}

Test(autograd, detach_shares_storage_and_stops_the_graph) {
    tensor *x = leaf((const float[]){1, 2, 3}, TORCH_SHAPE(3), true);
    tensor *y = torch_mul_scalar(x, 2.0);
    tensor *d = tensor_detach(y);
    cr_assert(tensor_is_leaf(d) && !d->requires_grad);
    tensor_data_f32(d)[0] = 42.0f; /* same storage */
    cr_assert_float_eq(tensor_data_f32(y)[0], 42.0f, 0);

    /* Ops on the detached tensor record nothing; x gets gradient only through y. */
    tensor *e = torch_mul(d, y); /* d * y: gradient d through y's edge only */
    tensor *s = torch_sum(e, 0, NULL, false);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    /* ds/dy = d = (42, 4, 6), dy/dx = 2. */
    assert_values(tensor_grad(x), (const float[]){84, 8, 12}, 3, 0);
    tensor_free(s);
    tensor_free(e);
    tensor_free(d);
    tensor_free(y);
    tensor_free(x);
}

Test(autograd, backward_of_a_non_scalar_needs_a_grad) {
    tensor *x = leaf((const float[]){1, 2, 3, 4}, TORCH_SHAPE(2, 2), true);
    tensor *y = torch_mul_scalar(x, 3.0);
    cr_assert_eq(tensor_backward(y, NULL, false), TORCH_ERR_INVALID_STATE);
    assert_error(TORCH_ERR_INVALID_STATE, "grad can be implicitly created only for scalar outputs");
    cr_assert_null(tensor_grad(x));

    /* The graph was not consumed by the refused call: an explicit grad works. */
    tensor *g = torch_tensor((const float[]){1, -1, 0.5f, 2}, TORCH_SHAPE(2, 2));
    cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){3, -3, 1.5f, 6}, 4, 0);
    tensor_free(g);
    tensor_free(y);
    tensor_free(x);
}

Test(autograd, grad_of_the_wrong_shape_is_refused) {
    tensor *x = leaf((const float[]){1, 2, 3, 4, 5, 6}, TORCH_SHAPE(2, 3), true);
    tensor *y = torch_mul_scalar(x, 3.0);
    tensor *g = torch_ones(TORCH_SHAPE(3, 2));
    cr_assert_eq(tensor_backward(y, g, false), TORCH_ERR_SHAPE);
    assert_error(TORCH_ERR_SHAPE, "Mismatch in shape: grad_output[0] has a shape of [3, 2] and output[0] has a shape "
                                  "of [2, 3]");
    cr_assert_null(tensor_grad(x));
    /* The right shape in the wrong dtype: said as such, not as a shape mismatch of equal shapes. */
    tensor *gi = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(2, 3));
    cr_assert_eq(tensor_fill_(gi, 1.0), TORCH_OK);
    cr_assert_eq(tensor_backward(y, gi, false), TORCH_ERR_INVALID_ARGUMENT);
    assert_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_backward: expected grad to be float32 (got int64)");
    tensor_free(gi);
    tensor_free(g);
    tensor_free(y);
    tensor_free(x);
}

Test(autograd, backward_of_a_tensor_without_grad_is_refused) {
    tensor *x = leaf((const float[]){1}, TORCH_SHAPE(1), false);
    cr_assert_eq(tensor_backward(x, NULL, false), TORCH_ERR_INVALID_STATE);
    assert_error(TORCH_ERR_INVALID_STATE, "does not require grad");
    cr_assert_null(tensor_grad(x));
    tensor_free(x);
}

Test(autograd, diamond_graph_sums_both_paths) {
    /* h = 2x used twice: L = sum(h*h + h), dL/dx = (2h + 1) * 2 = 8x + 2. */
    tensor *x = leaf((const float[]){1, -0.5f, 2}, TORCH_SHAPE(3), true);
    tensor *h = torch_mul_scalar(x, 2.0);
    tensor *hh = torch_mul(h, h);
    tensor *t = torch_add(hh, h);
    tensor *s = torch_sum(t, 0, NULL, false);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){10, -2, 18}, 3, 1e-6);
    tensor_free(s);
    tensor_free(t);
    tensor_free(hh);
    tensor_free(h);

    /* x used directly by two ops: L = sum(x * exp(x)), dL/dx = (1 + x) exp(x). */
    tensor_zero_grad(x);
    tensor *e = torch_exp(x);
    tensor *p = torch_mul(x, e);
    tensor_free(e);
    s = torch_sum(p, 0, NULL, false);
    tensor_free(p);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){2.0f * expf(1), 0.5f * expf(-0.5f), 3.0f * expf(2)}, 3, 1e-5);
    tensor_free(s);
    tensor_free(x);
}

Test(autograd, long_chain_is_walked_and_freed_without_recursion) {
    /* 100000 recorded ops: backward and the release of the graph must be iterative. */
    enum { N = 100000 };
    tensor *x = leaf((const float[]){0.5f}, TORCH_SHAPE(1), true);
    tensor *y = tensor_retain(x);
    for (int i = 0; i < N; i++) {
        tensor *next = torch_add_scalar(y, 1.0);
        cr_assert_not_null(next);
        tensor_free(y);
        y = next;
    }
    cr_assert_float_eq(tensor_data_f32(y)[0], 0.5f + N, 0);
    cr_assert_eq(tensor_backward(y, NULL, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){1}, 1, 0);
    tensor_free(y);

    /* A chain freed without ever running backward. */
    y = tensor_retain(x);
    for (int i = 0; i < N; i++) {
        tensor *next = torch_mul_scalar(y, 1.0);
        tensor_free(y);
        y = next;
    }
    tensor_free(y);
    tensor_free(x);
}

Test(autograd, intermediates_can_be_freed_before_backward) {
    /* L = sum(exp(2x)), dL/dx = 2 exp(2x); h and e are freed before backward. */
    tensor *x = leaf((const float[]){0, 0.5f, -1}, TORCH_SHAPE(3), true);
    tensor *h = torch_mul_scalar(x, 2.0);
    tensor *e = torch_exp(h);
    tensor_free(h);
    tensor *s = torch_sum(e, 0, NULL, false);
    tensor_free(e);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){2, 2.0f * expf(1), 2.0f * expf(-2)}, 3, 1e-6);
    tensor_free(s);
    tensor_free(x);
}

Test(autograd, backward_of_a_leaf_accumulates_into_itself) {
    tensor *x = leaf((const float[]){1, 2}, TORCH_SHAPE(2), true);
    tensor *g = torch_tensor((const float[]){0.5f, -1}, TORCH_SHAPE(2));
    cr_assert_eq(tensor_backward(x, g, false), TORCH_OK);
    cr_assert_eq(tensor_backward(x, g, false), TORCH_OK);
    assert_values(tensor_grad(x), (const float[]){1, -2}, 2, 0);
    tensor_free(g);
    tensor_free(x);
}

Test(autograd, only_the_inputs_that_require_grad_get_gradients) {
    /* L = sum(a * b + c): a requires grad, b does not, c does: da = b, dc = 1. */
    tensor *a = leaf((const float[]){1, 2}, TORCH_SHAPE(2), true);
    tensor *b = leaf((const float[]){3, 4}, TORCH_SHAPE(2), false);
    tensor *c = leaf((const float[]){5, 6}, TORCH_SHAPE(2), true);
    tensor *ab = torch_mul(a, b);
    tensor *t = torch_add(ab, c);
    tensor *s = torch_sum(t, 0, NULL, false);
    cr_assert_eq(tensor_backward(s, NULL, false), TORCH_OK);
    assert_values(tensor_grad(a), (const float[]){3, 4}, 2, 0);
    assert_values(tensor_grad(c), (const float[]){1, 1}, 2, 0);
    cr_assert_null(tensor_grad(b));
    tensor_free(s);
    tensor_free(t);
    tensor_free(ab);
    tensor_free(a);
    tensor_free(b);
    tensor_free(c);
}

Test(autograd, leaf_grad_never_aliases_the_callers_gradient) {
    /* backward may hand a leaf a gradient it owns alone instead of copying it; one that the
     * caller can still reach (here through a view of the caller's own tensor) must be copied. */
    const float xv[4] = {1, 2, 3, 4}, gv[4] = {0.5f, -1, 2, 3};
    tensor *x = torch_tensor(xv, TORCH_SHAPE(4));
    tensor_set_requires_grad(x, true);
    tensor *y = torch_reshape(x, TORCH_SHAPE(2, 2));
    tensor *g = torch_tensor(gv, TORCH_SHAPE(2, 2));
    cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
    tensor_fill_(g, 100.0);
    for (int i = 0; i < 4; i++) cr_assert_eq(tensor_data_f32(tensor_grad(x))[i], gv[i]);
    /* A second backward accumulates into the same .grad in place. */
    tensor *y2 = torch_mul_scalar(x, 3.0);
    tensor *g2 = torch_ones(TORCH_SHAPE(4));
    cr_assert_eq(tensor_backward(y2, g2, false), TORCH_OK);
    for (int i = 0; i < 4; i++) cr_assert_eq(tensor_data_f32(tensor_grad(x))[i], gv[i] + 3.0f);
    tensor_free(g2);
    tensor_free(y2);
    tensor_free(g);
    tensor_free(y);
    tensor_free(x);
}

/* ---- in-place writes: version counters and the leaf rule (PyTorch's saved-variable check) ------- */

static void expect_modified_inplace(torch_status st, const char *saved_by) {
    cr_assert_eq(st, TORCH_ERR_INVALID_STATE, "backward must refuse, got %d", st);
    cr_assert(strstr(torch_last_error(), "one of the variables needed for gradient computation has been modified by "
                                         "an inplace operation"), "%s", torch_last_error());
    cr_assert(strstr(torch_last_error(), saved_by), "expected \"%s\" in \"%s\"", saved_by, torch_last_error());
}

Test(autograd, backward_refuses_a_saved_tensor_written_in_place) {
    /* The reported case: y = x * c saves c; writing c before backward would give dl/dx = c's new
     * value ([100, 100]) instead of [1, 2]. */
    tensor *x = leaf((const float[]){3, 4}, TORCH_SHAPE(2), true), *c = leaf((const float[]){1, 2}, TORCH_SHAPE(2), false);
    tensor *y = torch_mul(x, c), *l = torch_sum(y, 0, NULL, false);
    cr_assert_eq(tensor_version(c), 0);
    cr_assert_eq(tensor_fill_(c, 100.0), TORCH_OK);
    cr_assert_eq(tensor_version(c), 1);
    expect_modified_inplace(tensor_backward(l, NULL, false),
                            "[torch.FloatTensor [2]], saved by MulBackward0, is at version 1; expected version 0");
    cr_assert_null(tensor_grad(x), "a refused backward leaves no gradient");
    /* Also when another branch reaches x before the stale node: the check runs before any node. */
    tensor *sx = torch_sum(x, 0, NULL, false), *l2 = torch_add(sx, l);
    expect_modified_inplace(tensor_backward(l2, NULL, false), "saved by MulBackward0");
    cr_assert_null(tensor_grad(x), "no branch ran");
    tensor_free(l2), tensor_free(sx), tensor_free(l), tensor_free(y);
    /* A fresh graph records the new version: its backward runs, with c's new value. */
    y = torch_mul(x, c), l = torch_sum(y, 0, NULL, false);
    cr_assert_eq(tensor_backward(l, NULL, false), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(tensor_data_f32(tensor_grad(x))[0], 100.0f);
    tensor_free(l), tensor_free(y), tensor_free(x), tensor_free(c);
}

Test(autograd, every_inplace_function_bumps_the_version_shared_by_views) {
    tensor *t = torch_zeros(TORCH_SHAPE(2, 3)), *one = torch_ones(TORCH_SHAPE(2, 3));
    tensor *row = tensor_as_strided(t, TORCH_SHAPE(3), (const int64_t[]){1}, 3), *d = tensor_detach(t);
    uint64_t v = tensor_version(t);
    cr_assert_eq(tensor_fill_(t, 1.0), TORCH_OK);
    cr_assert_eq(tensor_version(t), ++v);
    cr_assert_eq(tensor_zero_(row), TORCH_OK);
    cr_assert_eq(tensor_version(t), ++v, "a view shares its base's counter");
    cr_assert_eq(tensor_copy_(d, one), TORCH_OK);
    cr_assert_eq(tensor_version(t), ++v, "so does a detached alias");
    cr_assert_eq(tensor_add_(t, one, 2.0), TORCH_OK);
    cr_assert_eq(tensor_version(row), ++v);
    cr_assert_eq(tensor_mul_scalar_(t, 0.5), TORCH_OK);
    cr_assert_eq(tensor_version(d), ++v);
    /* A refused write is not a write. */
    cr_assert_neq(tensor_add_(row, one, 1.0), TORCH_OK);
    cr_assert_eq(tensor_version(t), v);
    tensor *c = tensor_clone(t);
    cr_assert_eq(tensor_version(c), 0, "a copy has a counter of its own");
    tensor_free(c), tensor_free(d), tensor_free(row), tensor_free(one), tensor_free(t);
}

Test(autograd, a_saved_output_written_in_place_is_caught_too) {
    /* relu saves its output; writing that output through a detached alias is caught. */
    tensor *x = leaf((const float[]){-1, 2}, TORCH_SHAPE(2), true);
    tensor *y = torch_relu(x), *l = torch_sum(y, 0, NULL, false);
    tensor *alias = tensor_detach(y);
    cr_assert_eq(tensor_fill_(alias, 5.0), TORCH_OK);
    expect_modified_inplace(tensor_backward(l, NULL, false), "saved by ReluBackward0");
    tensor_free(alias), tensor_free(l), tensor_free(y), tensor_free(x);
}

Test(autograd, an_unsaved_input_may_be_written) {
    /* Addition saves nothing: PyTorch lets its inputs change before backward, and so do we. */
    tensor *x = leaf((const float[]){1, 2}, TORCH_SHAPE(2), true), *c = leaf((const float[]){1, 2}, TORCH_SHAPE(2), false);
    tensor *y = torch_add(x, c), *l = torch_sum(y, 0, NULL, false);
    cr_assert_eq(tensor_fill_(c, 9.0), TORCH_OK);
    cr_assert_eq(tensor_backward(l, NULL, false), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(tensor_data_f32(tensor_grad(x))[1], 1.0f);
    tensor_free(l), tensor_free(y), tensor_free(x), tensor_free(c);
}

Test(autograd, inplace_writes_to_tensors_that_require_grad_need_no_grad_mode) {
    tensor *w = leaf((const float[]){1, 2}, TORCH_SHAPE(2), true), *one = torch_ones(TORCH_SHAPE(2));
    const torch_status refused[] = {tensor_fill_(w, 3.0), tensor_zero_(w), tensor_copy_(w, one),
                                    tensor_add_(w, one, 1.0), tensor_mul_scalar_(w, 2.0)};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) cr_assert_eq(refused[i], TORCH_ERR_INVALID_STATE);
    cr_assert(strstr(torch_last_error(), "torch_mul_: a leaf Variable that requires grad is being used in an "
                                         "in-place operation"), "%s", torch_last_error());
    cr_assert(tensor_data_f32(w)[0] == 1.0f && tensor_data_f32(w)[1] == 2.0f && tensor_version(w) == 0,
              "refused writes change nothing");
    /* A non-leaf that requires grad: the raw write would not be recorded in the graph. */
    tensor *y = torch_mul_scalar(w, 2.0);
    cr_assert_eq(tensor_fill_(y, 0.0), TORCH_ERR_INVALID_STATE);
    cr_assert(strstr(torch_last_error(), "tensor_fill_: an in-place operation on a tensor that requires grad is not "
                                         "recorded"), "%s", torch_last_error());
    /* Under no_grad (how optimizers and initialisers write), or through a detached alias: allowed. */
    bool prev = torch_set_grad_enabled(false);
    cr_assert_eq(tensor_fill_(w, 3.0), TORCH_OK);
    torch_set_grad_enabled(prev);
    tensor *d = tensor_detach(w);
    cr_assert_eq(tensor_add_(d, one, 1.0), TORCH_OK);
    cr_assert_eq(tensor_data_f32(w)[0], 4.0f);
    cr_assert_eq(tensor_version(w), 2);
    tensor_free(d), tensor_free(y), tensor_free(one), tensor_free(w);
}

Test(autograd, an_optimizer_step_invalidates_a_retained_graph) {
    /* PyTorch: backward(retain_graph), optimizer.step(), backward again -> the modified-inplace
     * error, because the step wrote a weight that the graph saved. */
    nn_module *lin = nn_linear(NN_LINEAR_OPTIONS(.in_features = 3, .out_features = 2));
    tensor *x = torch_ones(TORCH_SHAPE(4, 3)), *y = nn_module_forward(lin, x), *l = torch_sum(y, 0, NULL, false);
    nn_tensor_dict *params = nn_module_named_parameters(lin);
    optim_optimizer *opt = optim_sgd(params, optim_sgd_options_default(0.1));
    cr_assert_not_null(opt, "%s", torch_last_error());
    cr_assert_eq(tensor_backward(l, NULL, true), TORCH_OK, "%s", torch_last_error());
    tensor *w = nn_module_get_parameter(lin, "weight");
    uint64_t v = tensor_version(w);
    cr_assert_eq(optim_step(opt), TORCH_OK, "%s", torch_last_error());
    cr_assert_gt(tensor_version(w), v, "a step is an in-place write");
    expect_modified_inplace(tensor_backward(l, NULL, false), "saved by");
    optim_free(opt), nn_tensor_dict_free(params);
    tensor_free(l), tensor_free(y), tensor_free(x), nn_module_free(lin);
}
