/* no_tracking.c — experiment 3: BatchNorm with track_running_stats=false. Such a module has no
 * running statistics, so it normalises with the batch's statistics in eval mode too: a test
 * image's prediction depends on the images it is batched with, and on the batch size.
 *
 * The network is the reference CNN built with track_running_stats=false and given the trained
 * weights (its state_dict is the parameters alone: no running statistics, no buffers). Each batch size runs the test set twice in eval mode: in order, and shuffled by
 * a fixed permutation; prediction_changes is the fraction of test images whose predicted class
 * differs between the two. At batch size 1 each image is normalised by its own statistics
 * (over H x W values per channel), whatever the order. */
#include <stdio.h>
#include <stdlib.h>

#include "experiments.h"
#include "models.h"

static void defaults(xp_config *c) {
    static const int64_t sizes[] = {1, 2, 8, 64, 512};
    if (!c->n_sizes)
        for (c->n_sizes = 0; c->n_sizes < 5; c->n_sizes++) c->sizes[c->n_sizes] = sizes[c->n_sizes];
}

/* The trained weights in a reference CNN whose BatchNorms track no running statistics, eval mode:
 * its state_dict is the parameters, which load strictly (every one must be there). */
static nn_module *untracked_copy(nn_module *model) {
    torch_generator gen = torch_generator_new(0); /* initial weights, all overwritten */
    nn_module *m = reference_cnn_tracking(&gen, false);
    nn_tensor_dict *params = m ? nn_module_named_parameters(model) : NULL;
    if (!params || nn_module_load_state_dict(m, params, true) != TORCH_OK) {
        nn_module_free(m);
        m = NULL;
    }
    nn_tensor_dict_free(params);
    if (m) nn_module_eval(m);
    return m;
}

static torch_status run(xp_context *ctx) {
    int64_t n = data_dataset_size(ctx->test);
    torch_generator gen = torch_generator_new(ctx->c->seed);
    nn_module *untracked = untracked_copy(ctx->model);
    tensor *perm = untracked ? torch_randperm(&gen, n) : NULL;
    data_dataset *shuffled = perm ? xp_dataset_permuted(ctx->test, tensor_data_i64(perm)) : NULL;
    int64_t *in_order = malloc((size_t)n * sizeof *in_order), *reordered = malloc((size_t)n * sizeof *reordered);
    torch_status st = !shuffled ? torch_last_status()
                      : in_order && reordered ? TORCH_OK
                                              : torch_error(TORCH_ERR_OUT_OF_MEMORY, "out of memory");
    xp_text csv = {0}, plot = {0};
    xp_printf(&csv, "batch_size,accuracy_tracked,accuracy_untracked,accuracy_untracked_shuffled,prediction_changes\n");
    for (int i = 0; i < ctx->c->n_sizes && st == TORCH_OK; i++) {
        int64_t b = ctx->c->sizes[i], changes = 0;
        ex_result tracked, untr, untr_shuffled;
        st = ex_run_batches(ctx->model, ctx->test, b, NULL, &tracked);
        if (st == TORCH_OK) st = ex_run_batches(untracked, ctx->test, b, in_order, &untr);
        if (st == TORCH_OK) st = ex_run_batches(untracked, shuffled, b, reordered, &untr_shuffled);
        if (st != TORCH_OK) break;
        for (int64_t k = 0; k < n; k++) changes += reordered[k] != in_order[tensor_data_i64(perm)[k]];
        printf("no-tracking: batch size %lld: running statistics %.2f%%; batch statistics in eval mode %.2f%% "
               "(shuffled: %.2f%%, %lld predictions changed)\n",
               (long long)b, 100 * tracked.accuracy, 100 * untr.accuracy, 100 * untr_shuffled.accuracy,
               (long long)changes);
        fflush(stdout);
        xp_printf(&csv, "%lld,%.4f,%.4f,%.4f,%.4f\n", (long long)b, tracked.accuracy, untr.accuracy,
                  untr_shuffled.accuracy, (double)changes / (double)n);
    }
    xp_printf(&plot,
              "set title 'Eval mode with track_running_stats=False: batch statistics at test time'\n"
              "set logscale x 2\nset xlabel 'batch size at test time'\nset ylabel 'test accuracy (%%)'\n"
              "set y2label 'predictions changed by shuffling the test set (%%)'\nset y2tics\nset ytics nomirror\n"
              "set key center right\n"
              "plot 'no-tracking.csv' using 1:($2*100) with linespoints lw 2 pt 5 title 'track_running_stats=True', \\\n"
              "     '' using 1:($3*100) with linespoints lw 2 pt 7 title 'track_running_stats=False', \\\n"
              "     '' using 1:($5*100) axes x1y2 with linespoints lw 2 dt 2 pt 6 title 'False: predictions changed by shuffling'\n");
    if (st == TORCH_OK) st = xp_output(ctx, &csv, &plot);
    xp_text_free(&csv);
    xp_text_free(&plot);
    free(in_order);
    free(reordered);
    data_dataset_free(shuffled);
    tensor_free(perm);
    nn_module_free(untracked);
    return st;
}

const xp_experiment xp_no_tracking = {
    .name = "no-tracking",
    .summary = "track_running_stats=false: batch statistics in eval mode, and small test batches",
    .help = "The trained weights in a reference CNN built with track_running_stats=false, which has no\n"
            "running statistics and normalises with batch statistics in eval mode too. For each size of\n"
            "--batch-sizes (default 1,2,8,64,512) the test set runs in eval mode in order and shuffled (a\n"
            "permutation drawn from --seed), next to the tracking model in eval mode.\n\n"
            "no-tracking.csv: batch_size, accuracy_tracked, accuracy_untracked (in order),\n"
            "accuracy_untracked_shuffled, prediction_changes (fraction of test images whose predicted\n"
            "class differs between the two orders; 0 at batch size 1).\n",
    .options = XP_OPT_BATCH_SIZES,
    .defaults = defaults,
    .run = run,
};
