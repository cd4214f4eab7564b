/* batch_norm2d_basic.c — R torch's nn_batch_norm2d example, line for line, then a look inside.
 *
 * The R original (from the nn_batch_norm2d help page):
 *
 *   # With Learnable Parameters
 *   m <- nn_batch_norm2d(100)
 *   # Without Learnable Parameters
 *   m <- nn_batch_norm2d(100, affine = FALSE)
 *   input <- torch_randn(20, 100, 35, 45)
 *   output <- m(input)
 *
 * Every ctorch call that can fail returns NULL (or a status) and leaves a message in
 * torch_last_error(); every tensor and module we get is ours to free.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ctorch.h"
#include "nn/batch_norm.h"

/* Stops the example with ctorch's message when a call failed. */
static void *check(void *p) {
    if (!p) {
        fprintf(stderr, "error: %s\n", torch_last_error());
        exit(1);
    }
    return p;
}

int main(void) {
    /* ---- the R example ---- */

    // With Learnable Parameters
    nn_module *m = check(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 100)));
    nn_module_print(m);
    nn_module_free(m); /* R's garbage collector does this when m is reassigned */
    // Without Learnable Parameters
    m = check(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 100, .affine = false)));
    tensor *input = check(torch_randn(NULL, TORCH_SHAPE(20, 100, 35, 45)));
    tensor *output = check(nn_module_forward(m, input));

    /* ---- a look inside ---- */

    /* The module starts in training mode: the output was normalised with this batch's own
     * statistics, so every channel now has mean ~0 and variance ~1. */
    tensor *mean = check(tensor_mean(output, 3, (const int[]){0, 2, 3}, false));
    tensor *var = check(tensor_var(output, 3, (const int[]){0, 2, 3}, 0, false));
    printf("output channel 0: mean %.2e, variance %.6f\n", tensor_data_f32(mean)[0], tensor_data_f32(var)[0]);

    /* The batch also moved the running statistics 10% (momentum 0.1) toward its own:
     * running_mean = 0.9 * 0 + 0.1 * batch_mean, running_var = 0.9 * 1 + 0.1 * unbiased batch var. */
    nn_batch_norm_module *bn = nn_as_batch_norm(m);
    printf("running_mean[0] = %.6f, running_var[0] = %.6f, num_batches_tracked = %lld\n",
           tensor_data_f32(bn->running_mean)[0], tensor_data_f32(bn->running_var)[0],
           (long long)*tensor_data_i64(bn->num_batches_tracked));

    /* state_dict keys are PyTorch's: affine = false leaves out weight and bias. */
    nn_tensor_dict *sd = check(nn_module_state_dict(m));
    printf("state_dict keys:");
    for (int64_t i = 0; i < sd->count; i++) printf(" %s", sd->items[i].name);
    printf("\n");

    /* In eval mode the running statistics normalise, and stay as they are. */
    nn_module_eval(m);
    tensor *eval_output = check(nn_module_forward(m, input));
    printf("eval: num_batches_tracked still %lld\n", (long long)*tensor_data_i64(bn->num_batches_tracked));

    /* Mistakes are reported, not fatal: a 3-D input to BatchNorm2d. */
    tensor *wrong = check(torch_randn(NULL, TORCH_SHAPE(20, 100, 35)));
    if (!nn_module_forward(m, wrong)) printf("refused: %s\n", torch_last_error());

    tensor_free(wrong);
    tensor_free(eval_output);
    nn_tensor_dict_free(sd);
    tensor_free(var);
    tensor_free(mean);
    tensor_free(output);
    tensor_free(input);
    nn_module_free(m);
    return 0;
}
