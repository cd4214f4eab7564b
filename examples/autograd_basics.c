/* autograd_basics.c — reverse-mode autodiff in a dozen lines: y = mean((w * x + b)^2).
 *
 * What it shows:
 *   - leaves that require grad (w, b) next to plain data (x);
 *   - every op returns a new tensor you own and free, and intermediates may be freed before
 *     backward: the graph keeps what it needs;
 *   - broadcasting (b has one element) and its gradient summed back to b's shape;
 *   - tensor_backward() and the gradients it accumulates into w and b;
 *   - a no-grad scope for the parameter update.
 *
 * By hand, with x = (1, 2, 3), w = (0.5, -1, 2), b = 0.1:
 *   h = w x + b = (0.6, -1.9, 6.1),  y = mean(h^2) = (0.36 + 3.61 + 37.21) / 3 = 13.7267
 *   dy/dh = 2 h / 3,  so  dy/dw = 2 h x / 3 = (0.4, -2.5333, 12.2)
 *                         dy/db = sum(2 h / 3) = 2 (0.6 - 1.9 + 6.1) / 3 = 3.2
 */
#include <stdio.h>
#include <stdlib.h>

#include "ctorch.h"

/* Examples stop at the first error; a library never would (see status.h). */
static tensor *check(tensor *t) {
    if (!t) {
        fprintf(stderr, "error: %s\n", torch_last_error());
        exit(1);
    }
    return t;
}

int main(void) {
    tensor *x = check(torch_tensor((const float[]){1, 2, 3}, TORCH_SHAPE(3)));
    tensor *w = check(torch_tensor((const float[]){0.5f, -1, 2}, TORCH_SHAPE(3)));
    tensor *b = check(torch_tensor((const float[]){0.1f}, TORCH_SHAPE(1)));
    tensor_set_requires_grad(w, true); /* parameters: we want dy/dw and dy/db */
    tensor_set_requires_grad(b, true);

    /* Forward. Each op records one graph node because an input requires grad. */
    tensor *wx = check(torch_mul(w, x));     /* MulBackward0 */
    tensor *h = check(torch_add(wx, b));     /* AddBackward0; b broadcasts from [1] to [3] */
    tensor *h2 = check(torch_pow_scalar(h, 2)); /* PowBackward0 saves h */
    tensor *y = check(torch_mean(h2, 0, NULL, false)); /* MeanBackward0: a 0-dim result */
    tensor_free(wx); /* intermediates can go now: the graph holds what backward needs */
    tensor_free(h);
    tensor_free(h2);

    printf("y = %.4f (graph root: %s)\n", tensor_item(y), y->grad_fn->fn->name);

    /* Backward: y has one element, so the upstream gradient may be NULL (meaning 1). */
    if (tensor_backward(y, NULL, false) != TORCH_OK) {
        fprintf(stderr, "error: %s\n", torch_last_error());
        return 1;
    }
    printf("dy/dw = ");
    tensor_print(tensor_grad(w)); /* borrowed: w owns its grad */
    printf("dy/db = ");
    tensor_print(tensor_grad(b)); /* summed over the broadcast: shape [1] like b */

    /* One step of gradient descent, w -= 0.1 dy/dw, under no-grad so that it is not recorded. */
    tensor *step, *w_new;
    {
        TORCH_NO_GRAD_GUARD; /* grad mode off until the closing brace, however the block is left */
        step = check(torch_mul_scalar(tensor_grad(w), 0.1));
        w_new = check(torch_sub(w, step));
    }
    printf("w after one SGD step (lr 0.1) = ");
    tensor_print(w_new);

    tensor_free(step);
    tensor_free(w_new);
    tensor_free(y); /* frees the rest of the graph */
    tensor_free(x);
    tensor_free(w); /* and its grad */
    tensor_free(b);
    return 0;
}
