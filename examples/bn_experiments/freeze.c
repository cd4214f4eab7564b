/* freeze.c — experiment 6: fine-tuning with BatchNorm frozen. The trained model is fine-tuned
 * on a shifted domain, the negatives of the images (pixel p -> 255 - p), with small batches (8
 * by default: the situation detectron2 freezes BatchNorm for), three ways from the same start:
 *   unfrozen      plain BatchNorm: batch statistics in training, running statistics updated;
 *   freeze_stats  running statistics used and kept (nn_batch_norm_freeze FREEZE_STATS); gamma
 *                 and beta still learn;
 *   freeze_all    FrozenBatchNorm2d: a constant per-channel affine map (FREEZE_ALL).
 * The convolutions and the classifier learn in all three. Every tenth of the run each copy is
 * evaluated (eval mode) on the negatives of the test set.
 *
 * In normalised units the negative of z = (p/255 - mean)/std is (1 - 2 mean)/std - z. */
#include <stdio.h>
#include <stdlib.h>

#include "experiments.h"

static void defaults(xp_config *c) {
    if (c->steps < 0) c->steps = c->quick ? 20 : 300;
    if (c->batch_size < 0) c->batch_size = 8;
    if (c->lr < 0) c->lr = 0.01;
}

static data_dataset *negatives(const data_dataset *ds) {
    tensor *x = tensor_clone(ds->images); /* a copy: the data sets are borrowed */
    data_dataset *out = NULL;
    if (x) {
        const float flip = (1 - 2 * DATA_FASHION_MNIST_MEAN) / DATA_FASHION_MNIST_STD;
        float *p = tensor_data_f32(x);
        for (int64_t i = 0; i < x->numel; i++) p[i] = flip - p[i];
        out = data_dataset_new(x, ds->labels);
    }
    tensor_free(x);
    return out;
}

static const struct mode {
    const char *column;
    nn_batch_norm_freeze_mode mode;
} modes[] = {{"unfrozen", NN_BATCH_NORM_UNFROZEN}, {"freeze_stats", NN_BATCH_NORM_FREEZE_STATS},
             {"freeze_all", NN_BATCH_NORM_FREEZE_ALL}};
enum { N_MODES = sizeof modes / sizeof *modes };

/* acc[e] = test accuracy after e * every steps (and after the last step). */
static torch_status fine_tune(xp_context *ctx, const struct mode *m, const data_dataset *train,
                              const data_dataset *test, int64_t every, double *acc) {
    const xp_config *c = ctx->c;
    nn_module *copy = nn_module_clone(ctx->model);
    torch_status st = copy ? nn_batch_norm_freeze(copy, m->mode, NULL) : torch_last_status();
    nn_tensor_dict *params = st == TORCH_OK ? nn_module_named_parameters(copy) : NULL;
    optim_sgd_options o = optim_sgd_options_default(c->lr);
    o.momentum = 0.9;
    optim_optimizer *opt = params ? optim_sgd(params, o) : NULL;
    torch_generator gen = torch_generator_new(c->seed); /* the same batches for every mode */
    data_dataloader *dl = opt ? data_dataloader_new(train, c->batch_size, true, &gen) : NULL;
    if (st == TORCH_OK && !dl) st = torch_last_status();
    ex_progress p;
    ex_progress_start(&p, m->column, "step", c->steps);
    ex_result r;
    if (st == TORCH_OK) st = ex_evaluate(copy, test, &r);
    if (st == TORCH_OK) acc[0] = r.accuracy;
    double loss_sum = 0;
    for (int64_t t = 1; t <= c->steps && st == TORCH_OK; t++) {
        tensor *x = NULL, *y = NULL;
        st = data_dataloader_next(dl, &x, &y);
        if (st == TORCH_OK && !x) st = data_dataloader_next(dl, &x, &y); /* the next epoch */
        double loss = 0;
        nn_module_train(copy, true);
        if (st == TORCH_OK) st = ex_train_step(copy, opt, x, y, &loss, NULL);
        tensor_free(x);
        tensor_free(y);
        loss_sum += loss;
        if (st == TORCH_OK && (t % every == 0 || t == c->steps)) {
            st = ex_evaluate(copy, test, &r);
            acc[(t + every - 1) / every] = r.accuracy;
            char extra[64];
            snprintf(extra, sizeof extra, "loss %.4f, test accuracy %.2f%%", loss_sum / (double)t, 100 * r.accuracy);
            ex_progress_update(&p, t, extra);
        }
    }
    data_dataloader_free(dl);
    optim_free(opt);
    nn_tensor_dict_free(params);
    nn_module_free(copy);
    return st;
}

static torch_status run(xp_context *ctx) {
    int64_t steps = ctx->c->steps, every = steps / 10 > 0 ? steps / 10 : 1, points = (steps + every - 1) / every + 1;
    data_dataset *train = negatives(ctx->train), *test = train ? negatives(ctx->test) : NULL;
    double *acc = calloc((size_t)(N_MODES * points), sizeof *acc);
    torch_status st = !test ? torch_last_status()
                      : acc ? TORCH_OK
                            : torch_error(TORCH_ERR_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; k < N_MODES && st == TORCH_OK; k++) st = fine_tune(ctx, &modes[k], train, test, every, acc + k * points);
    xp_text csv = {0}, plot = {0};
    xp_printf(&csv, "step");
    for (int k = 0; k < N_MODES; k++) xp_printf(&csv, ",accuracy_%s", modes[k].column);
    xp_printf(&csv, "\n");
    for (int64_t e = 0; e < points && st == TORCH_OK; e++) {
        xp_printf(&csv, "%lld", (long long)(e * every < steps ? e * every : steps));
        for (int k = 0; k < N_MODES; k++) xp_printf(&csv, ",%.4f", acc[k * points + e]);
        xp_printf(&csv, "\n");
    }
    xp_printf(&plot,
              "set title 'Fine-tuning on the negative images, batch %lld, SGD lr %g momentum 0.9'\n"
              "set xlabel 'fine-tuning step'\nset ylabel 'test accuracy on the negatives (%%)'\nset key bottom right\n"
              "plot 'freeze.csv' using 1:($2*100) with linespoints lw 2 pt 7 title 'unfrozen BatchNorm', \\\n"
              "     '' using 1:($3*100) with linespoints lw 2 pt 5 title 'statistics frozen (FREEZE_STATS)', \\\n"
              "     '' using 1:($4*100) with linespoints lw 2 pt 9 title 'all frozen (FREEZE_ALL, FrozenBatchNorm2d)'\n",
              (long long)ctx->c->batch_size, ctx->c->lr);
    if (st == TORCH_OK) st = xp_output(ctx, &csv, &plot);
    xp_text_free(&csv);
    xp_text_free(&plot);
    free(acc);
    data_dataset_free(train);
    data_dataset_free(test);
    return st;
}

const xp_experiment xp_freeze = {
    .name = "freeze",
    .summary = "frozen BatchNorm during fine-tuning: everything frozen against the statistics only",
    .help = "Copies of the trained model are fine-tuned for --steps (default 300; 20 with --quick) on the\n"
            "negatives of the training images (255 - p), batches of --batch-size (default 8), SGD with\n"
            "--lr (default 0.01) and momentum 0.9, the same batches for each: with plain BatchNorm, with\n"
            "its statistics frozen (nn_batch_norm_freeze FREEZE_STATS: running statistics used and kept,\n"
            "gamma and beta learn) and all frozen (FREEZE_ALL: detectron2's FrozenBatchNorm2d). Each is\n"
            "evaluated on the negatives of the test set at step 0 and every tenth of the run.\n\n"
            "freeze.csv: step, accuracy_unfrozen, accuracy_freeze_stats, accuracy_freeze_all.\n",
    .options = XP_OPT_STEPS | XP_OPT_BATCH_SIZE | XP_OPT_LR,
    .defaults = defaults,
    .run = run,
};
