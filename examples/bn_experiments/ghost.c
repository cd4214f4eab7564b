/* ghost.c — experiment 7: ghost batch normalization (Hoffer et al. 2017) against plain
 * BatchNorm when training with large batches. Two copies of the same initial reference CNN
 * train on the same shuffled batches of 512: one normalises each batch as a whole, the other
 * each sub-batch of 32 (ghost_batch_size; torch.tensor_split's split, running statistics
 * updated per sub-batch). Each epoch ends with an evaluation on the test set; in eval mode the
 * two compute the same way (running statistics). */
#include <math.h>
#include <stdio.h>

#include "experiments.h"
#include "models.h"

static void defaults(xp_config *c) {
    if (c->epochs < 0) c->epochs = c->quick ? 2 : 5;
    if (c->batch_size < 0) c->batch_size = 512;
    if (c->ghost_batch_size < 0) c->ghost_batch_size = 32;
    /* train_cnn's 0.01 at batch 64, scaled by the square root of the batch ratio: the rule of the
     * ghost batch paper (Hoffer et al., "Train longer, generalize better"). Linear scaling (0.08)
     * without warm-up is unstable in the first steps here and ends several points lower. */
    if (c->lr < 0) c->lr = 0.01 * sqrt((double)c->batch_size / 64.0);
}

static torch_status set_ghost(nn_module *model, int64_t g) {
    nn_module_list *l = nn_module_named_modules(model);
    if (!l) return torch_last_status();
    int64_t count = 0;
    for (int64_t i = 0; i < l->count; i++) {
        nn_batch_norm_module *bn = nn_as_batch_norm(l->items[i].value);
        if (bn) bn->options.ghost_batch_size = g, count++;
    }
    nn_module_list_free(l);
    return count ? TORCH_OK : torch_error(TORCH_ERR_INVALID_ARGUMENT, "the model has no BatchNorm");
}

/* Every batch of an epoch, the last included, must hold at least one ghost batch: checked before
 * any training, rather than found at the end of the first model's run. */
static torch_status check_sizes(const xp_context *ctx) {
    int64_t n = data_dataset_size(ctx->train), b = ctx->c->batch_size, g = ctx->c->ghost_batch_size, last = n % b;
    if (g > b)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "--ghost-batch-size %lld is larger than the batch "
                           "(expected at most --batch-size %lld)", (long long)g, (long long)b);
    if (last && g > last)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "--ghost-batch-size %lld is larger than the last batch "
                           "of each epoch (%lld images: %lld training images in batches of %lld); expected at most %lld",
                           (long long)g, (long long)last, (long long)n, (long long)b, (long long)last);
    return TORCH_OK;
}

/* Trains model for the epochs; loss[e], acc[e] after epoch e + 1. */
static torch_status train(xp_context *ctx, nn_module *model, const char *name, double *loss, double *acc) {
    const xp_config *c = ctx->c;
    nn_tensor_dict *params = nn_module_named_parameters(model);
    optim_sgd_options o = optim_sgd_options_default(c->lr);
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    optim_optimizer *opt = params ? optim_sgd(params, o) : NULL;
    torch_generator gen = torch_generator_new(c->seed); /* the same batches for both */
    data_dataloader *dl = opt ? data_dataloader_new(ctx->train, c->batch_size, true, &gen) : NULL;
    torch_status st = dl ? TORCH_OK : torch_last_status();
    for (int e = 0; e < c->epochs && st == TORCH_OK; e++) {
        char label[64];
        ex_result tr, te;
        snprintf(label, sizeof label, "%s: epoch %d/%d", name, e + 1, c->epochs);
        double t0 = ex_now_seconds();
        st = ex_train_epoch(model, opt, dl, label, &tr);
        double seconds = ex_now_seconds() - t0;
        if (st == TORCH_OK) st = ex_evaluate(model, ctx->test, &te);
        if (st != TORCH_OK) break;
        loss[e] = tr.loss;
        acc[e] = te.accuracy;
        printf("ghost: %s, epoch %d: train loss %.4f, test accuracy %.2f%%, %.1f s of training\n", name, e + 1,
               tr.loss, 100 * te.accuracy, seconds);
        fflush(stdout);
    }
    data_dataloader_free(dl);
    optim_free(opt);
    nn_tensor_dict_free(params);
    return st;
}

static torch_status run(xp_context *ctx) {
    const xp_config *c = ctx->c;
    enum { MAX_EPOCHS = 1000 };
    static double loss[2][MAX_EPOCHS], acc[2][MAX_EPOCHS];
    torch_status st = check_sizes(ctx);
    if (st != TORCH_OK) return st;
    torch_generator gen = torch_generator_new(c->seed);
    nn_module *plain = reference_cnn(&gen), *ghost = NULL;
    st = plain ? TORCH_OK : torch_last_status();
    if (st == TORCH_OK && c->load) st = nn_module_load(plain, c->load, true);
    if (st == TORCH_OK && !(ghost = nn_module_clone(plain))) st = torch_last_status();
    if (st == TORCH_OK) st = set_ghost(ghost, c->ghost_batch_size);
    char name[32];
    snprintf(name, sizeof name, "ghost %lld", (long long)c->ghost_batch_size);
    if (st == TORCH_OK) st = train(ctx, plain, "plain", loss[0], acc[0]);
    if (st == TORCH_OK) st = train(ctx, ghost, name, loss[1], acc[1]);
    xp_text csv = {0}, plot = {0};
    xp_printf(&csv, "epoch,train_loss_plain,train_loss_ghost,accuracy_plain,accuracy_ghost\n");
    for (int e = 0; e < c->epochs && st == TORCH_OK; e++)
        xp_printf(&csv, "%d,%.4f,%.4f,%.4f,%.4f\n", e + 1, loss[0][e], loss[1][e], acc[0][e], acc[1][e]);
    xp_printf(&plot,
              "set multiplot layout 1,2 title 'Batch %lld, SGD lr %g momentum 0.9: plain BatchNorm against ghost "
              "batches of %lld'\nset xlabel 'epoch'\nset xtics 1\nset xrange [0.5:%d.5]\n"
              "set ylabel 'test accuracy (%%)'\nset key bottom right\n"
              "plot 'ghost.csv' using 1:($4*100) with linespoints lw 2 pt 7 title 'plain', \\\n"
              "     '' using 1:($5*100) with linespoints lw 2 pt 5 title 'ghost %lld'\n"
              "set ylabel 'training loss'\nset key top right\n"
              "plot 'ghost.csv' using 1:2 with linespoints lw 2 pt 7 title 'plain', \\\n"
              "     '' using 1:3 with linespoints lw 2 pt 5 title 'ghost %lld'\nunset multiplot\n",
              (long long)c->batch_size, c->lr, (long long)c->ghost_batch_size, c->epochs, (long long)c->ghost_batch_size,
              (long long)c->ghost_batch_size);
    if (st == TORCH_OK) st = xp_output(ctx, &csv, &plot);
    xp_text_free(&csv);
    xp_text_free(&plot);
    nn_module_free(plain);
    nn_module_free(ghost);
    return st;
}

const xp_experiment xp_ghost = {
    .name = "ghost",
    .summary = "ghost batch normalization against plain BatchNorm at batch 512 (ghost batches of 32)",
    .help = "Two copies of one initial reference CNN (drawn from --seed, or --load) train for --epochs\n"
            "(default 5; 2 with --quick) on the same shuffled batches of --batch-size (default 512), SGD\n"
            "with --lr (default 0.01 x sqrt(batch size / 64), the ghost batch paper's square-root\n"
            "scaling: 0.0283 at 512) and momentum 0.9, weight decay 5e-4: one with plain\n"
            "BatchNorm, one normalising sub-batches of --ghost-batch-size (default 32). After each epoch\n"
            "both are evaluated on the test set (eval mode: running statistics for both).\n\n"
            "ghost.csv: epoch, train_loss_plain, train_loss_ghost, accuracy_plain, accuracy_ghost.\n",
    .options = XP_OPT_BATCH_SIZE | XP_OPT_LR | XP_OPT_GHOST,
    .own_model = true,
    .defaults = defaults,
    .run = run,
};
