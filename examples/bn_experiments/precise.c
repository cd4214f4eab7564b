/* precise.c — experiment 5: precise BatchNorm. After training, the running statistics are
 * exponential averages of statistics of a network that kept changing; optim_update_bn
 * (torch.optim.swa_utils.update_bn) recomputes them with the final weights, every batch weighing
 * the same. For each number of training batches, a copy of the trained model gets its statistics
 * recomputed from that many batches (the first ones of one shuffled order) and is evaluated. */
#include <stdio.h>

#include "experiments.h"

static void defaults(xp_config *c) {
    static const int64_t full[] = {1, 2, 5, 10, 20, 50, 100, 200}, quick[] = {1, 2, 5, 10};
    if (!c->n_sizes)
        for (c->n_sizes = 0; c->n_sizes < (c->quick ? 4 : 8); c->n_sizes++)
            c->sizes[c->n_sizes] = (c->quick ? quick : full)[c->n_sizes];
    if (c->batch_size < 0) c->batch_size = 64;
}

/* optim_update_bn's batches: the loader's, epoch after epoch. */
static tensor *next_batch(void *user, int64_t i) {
    (void)i;
    tensor *x = NULL, *labels = NULL;
    if (data_dataloader_next(user, &x, &labels) == TORCH_OK && !x) data_dataloader_next(user, &x, &labels);
    tensor_free(labels);
    return x;
}

static torch_status run(xp_context *ctx) {
    ex_result ema;
    torch_status st = ex_evaluate(ctx->model, ctx->test, &ema);
    xp_text csv = {0}, plot = {0};
    xp_printf(&csv, "batches,images,accuracy_precise,accuracy_ema,loss_precise,loss_ema\n");
    for (int i = 0; i < ctx->c->n_sizes && st == TORCH_OK; i++) {
        int64_t n = ctx->c->sizes[i];
        torch_generator gen = torch_generator_new(ctx->c->seed); /* the same first batches for every n */
        data_dataloader *dl = data_dataloader_new(ctx->train, ctx->c->batch_size, true, &gen);
        nn_module *copy = dl ? nn_module_clone(ctx->model) : NULL;
        ex_result precise;
        st = copy ? optim_update_bn(copy, n, next_batch, dl) : torch_last_status();
        if (st == TORCH_OK) st = ex_evaluate(copy, ctx->test, &precise);
        nn_module_free(copy);
        data_dataloader_free(dl);
        if (st != TORCH_OK) break;
        printf("precise: %lld batches of %lld: %.2f%% (running statistics from training: %.2f%%)\n", (long long)n,
               (long long)ctx->c->batch_size, 100 * precise.accuracy, 100 * ema.accuracy);
        fflush(stdout);
        xp_printf(&csv, "%lld,%lld,%.4f,%.4f,%.4f,%.4f\n", (long long)n, (long long)(n * ctx->c->batch_size),
                  precise.accuracy, ema.accuracy, precise.loss, ema.loss);
    }
    xp_printf(&plot,
              "set title 'Precise BatchNorm: running statistics recomputed from N training batches of %lld'\n"
              "set logscale x\nset xlabel 'training batches averaged (optim_update_bn)'\nset ylabel 'test accuracy (%%)'\n"
              "set key bottom right\n"
              "plot 'precise.csv' using 1:($3*100) with linespoints lw 2 pt 7 title 'precise statistics', \\\n"
              "     '' using 1:($4*100) with lines lw 2 dt 2 title 'running statistics from training (momentum 0.1)'\n",
              (long long)ctx->c->batch_size);
    if (st == TORCH_OK) st = xp_output(ctx, &csv, &plot);
    xp_text_free(&csv);
    xp_text_free(&plot);
    return st;
}

const xp_experiment xp_precise = {
    .name = "precise",
    .summary = "precise BatchNorm statistics after training (optim_update_bn) and the test accuracy",
    .help = "For each number in --batches (default 1,2,5,10,20,50,100,200; 1,2,5,10 with --quick), a copy\n"
            "of the trained model gets its running statistics recomputed by optim_update_bn (swa_utils'\n"
            "update_bn: the cumulative average over that many shuffled training batches of --batch-size,\n"
            "default 64, with the final weights), and is evaluated on the test set, next to the running\n"
            "statistics training left (exponential average, momentum 0.1).\n\n"
            "precise.csv: batches, images, accuracy_precise, accuracy_ema, loss_precise, loss_ema.\n",
    .options = XP_OPT_BATCHES | XP_OPT_BATCH_SIZE,
    .defaults = defaults,
    .run = run,
};
