/* No-grad scopes: the guard restores grad mode on every way out of its block (return, break,
 * continue, goto, the closing brace), guards and enter/exit pairs nest, and ops inside record no
 * graph. Each check states the mode it expects, computed by hand from the nesting. */
#include <criterion/criterion.h>

#include "autograd/ops.h"
#include "tensor/tensor.h"

/* Every test starts and must end with grad mode on; Criterion runs each test in a fresh process,
 * and this makes the expectation visible. */
static void start(void) { cr_assert(torch_is_grad_enabled()); }

/* Returns from inside the guarded block, the case a hand-written pair gets wrong. */
static int early_return(bool fail) {
    TORCH_NO_GRAD_GUARD;
    cr_assert_not(torch_is_grad_enabled());
    if (fail) return -1;
    return 0;
}

Test(no_grad, guard_restores_after_an_early_return) {
    start();
    cr_assert_eq(early_return(true), -1);
    cr_assert(torch_is_grad_enabled(), "grad mode is back on after the early return");
    cr_assert_eq(early_return(false), 0);
    cr_assert(torch_is_grad_enabled());
}

Test(no_grad, guard_restores_after_break_and_continue) {
    start();
    int iterations = 0;
    for (int i = 0; i < 10; i++) {
        TORCH_NO_GRAD_GUARD;
        cr_assert_not(torch_is_grad_enabled(), "off inside iteration %d", i);
        iterations++;
        if (i == 1) continue; /* leaves the block: restored before the next iteration */
        if (i == 3) break;
    }
    cr_assert_eq(iterations, 4, "break leaves the loop, not only the guard (it is no hidden loop)");
    cr_assert(torch_is_grad_enabled(), "restored after break");
    for (int i = 0; i < 3; i++) {
        {
            TORCH_NO_GRAD_GUARD;
            if (i < 2) continue;
        }
        cr_assert(torch_is_grad_enabled(), "restored after continue");
    }
    cr_assert(torch_is_grad_enabled());
}

Test(no_grad, guard_restores_after_goto_out_of_the_block) {
    start();
    {
        TORCH_NO_GRAD_GUARD;
        cr_assert_not(torch_is_grad_enabled());
        goto out;
    }
out:
    cr_assert(torch_is_grad_enabled());
}

/* Inner scopes restore the outer state, not "on". */
Test(no_grad, guards_nest_and_restore_the_outer_state) {
    start();
    {
        TORCH_NO_GRAD_GUARD;
        {
            TORCH_NO_GRAD_GUARD;
            TORCH_NO_GRAD_GUARD; /* two in one block: distinct variables */
            cr_assert_not(torch_is_grad_enabled());
        }
        cr_assert_not(torch_is_grad_enabled(), "the inner guard restored the outer guard's off, not on");
        cr_assert_eq(early_return(true), -1);
        cr_assert_not(torch_is_grad_enabled(), "an early return inside restores off");
    }
    cr_assert(torch_is_grad_enabled());
    /* A guard entered while grad mode was already off by hand leaves it off. */
    torch_set_grad_enabled(false);
    {
        TORCH_NO_GRAD_GUARD;
    }
    cr_assert_not(torch_is_grad_enabled());
    torch_set_grad_enabled(true);
}

Test(no_grad, enter_exit_pairs_nest) {
    start();
    bool outer = torch_no_grad_enter();
    cr_assert(outer, "enter returns the mode it found: on");
    bool inner = torch_no_grad_enter();
    cr_assert_not(inner, "the nested enter found it off");
    torch_no_grad_exit(inner);
    cr_assert_not(torch_is_grad_enabled(), "the inner exit restores off, not on");
    torch_no_grad_exit(outer);
    cr_assert(torch_is_grad_enabled());
}

/* What the scope is for: ops record no graph inside, and do again after it. */
Test(no_grad, ops_inside_record_no_graph) {
    start();
    tensor *w = torch_ones(TORCH_SHAPE(3));
    cr_assert_eq(tensor_set_requires_grad(w, true), TORCH_OK);
    tensor *inside;
    {
        TORCH_NO_GRAD_GUARD;
        inside = torch_mul(w, w);
    }
    tensor *outside = torch_mul(w, w);
    cr_assert_not_null(inside);
    cr_assert_not(inside->requires_grad);
    cr_assert_null(inside->grad_fn);
    cr_assert(outside->requires_grad);
    cr_assert_not_null(outside->grad_fn);
    tensor_free(inside);
    tensor_free(outside);
    tensor_free(w);
}
