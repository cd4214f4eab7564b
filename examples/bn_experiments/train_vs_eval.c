/* train_vs_eval.c — experiment 1: the trained network on the test set in training mode, where
 * each BatchNorm normalises with the statistics of the batch at hand, against eval mode, where it
 * uses the running statistics, at several batch sizes.
 *
 * Training mode also updates the running statistics (as in PyTorch, whether or not a graph is
 * recorded), so it runs on a copy of the model. Batch size 1 is allowed: a BatchNorm2d's
 * statistics are over N x H x W values per channel, and PyTorch refuses training mode only when
 * that is 1 value ("Expected more than 1 value per channel when training"), not for batch 1. */
#include <stdio.h>

#include "experiments.h"

static void defaults(xp_config *c) {
    static const int64_t sizes[] = {1, 2, 8, 64, 512};
    if (!c->n_sizes)
        for (c->n_sizes = 0; c->n_sizes < 5; c->n_sizes++) c->sizes[c->n_sizes] = sizes[c->n_sizes];
}

static torch_status run(xp_context *ctx) {
    xp_text csv = {0}, plot = {0};
    xp_printf(&csv, "batch_size,accuracy_batch_stats,accuracy_running_stats,loss_batch_stats,loss_running_stats\n");
    torch_status st = TORCH_OK;
    for (int i = 0; i < ctx->c->n_sizes && st == TORCH_OK; i++) {
        int64_t b = ctx->c->sizes[i];
        ex_result batch, running;
        nn_module *copy = nn_module_clone(ctx->model);
        st = copy ? TORCH_OK : torch_last_status();
        if (st == TORCH_OK) {
            nn_module_train(copy, true);
            st = ex_run_batches(copy, ctx->test, b, NULL, &batch);
        }
        if (st == TORCH_OK) st = ex_run_batches(ctx->model, ctx->test, b, NULL, &running);
        nn_module_free(copy);
        if (st != TORCH_OK) break;
        printf("train-vs-eval: batch size %lld: batch statistics %.2f%%, running statistics %.2f%%\n", (long long)b,
               100 * batch.accuracy, 100 * running.accuracy);
        fflush(stdout);
        xp_printf(&csv, "%lld,%.4f,%.4f,%.4f,%.4f\n", (long long)b, batch.accuracy, running.accuracy, batch.loss,
                  running.loss);
    }
    xp_printf(&plot,
              "set title 'Test accuracy with batch statistics (training mode) and running statistics (eval mode)'\n"
              "set logscale x 2\nset xlabel 'batch size'\nset ylabel 'test accuracy (%%)'\nset key bottom right\n"
              "plot 'train-vs-eval.csv' using 1:($2*100) with linespoints lw 2 pt 7 title 'training mode: batch statistics', \\\n"
              "     '' using 1:($3*100) with linespoints lw 2 pt 5 title 'eval mode: running statistics'\n");
    if (st == TORCH_OK) st = xp_output(ctx, &csv, &plot);
    xp_text_free(&csv);
    xp_text_free(&plot);
    return st;
}

const xp_experiment xp_train_vs_eval = {
    .name = "train-vs-eval",
    .summary = "test accuracy with batch statistics (training mode) against running statistics (eval mode)",
    .help = "The trained reference CNN classifies the test set, in order, in batches of each size of\n"
            "--batch-sizes (default 1,2,8,64,512), once in training mode -- every BatchNorm normalises\n"
            "with the statistics of the batch at hand -- and once in eval mode, with the running\n"
            "statistics. Training mode runs on a copy, since it also updates the running statistics.\n"
            "scripts/bn_experiment_train_vs_eval.py computes the same table with PyTorch.\n\n"
            "train-vs-eval.csv: batch_size, accuracy_batch_stats, accuracy_running_stats,\n"
            "loss_batch_stats, loss_running_stats (accuracy as a fraction, mean cross-entropy).\n",
    .options = XP_OPT_BATCH_SIZES,
    .defaults = defaults,
    .run = run,
};
