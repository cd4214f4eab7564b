/* momentum.c — experiment 2: how fast the running statistics reach the data set's statistics.
 *
 * The second BatchNorm ("5") of the trained network sees conv "4"'s output. With the layers
 * before it in eval mode (the first BatchNorm normalising with its running statistics), that is a
 * fixed function of the image, so its true statistics are fixed numbers: the per-channel mean
 * mu_c and variance sigma2_c of prefix(x) over every pixel of every training image. (The first
 * BatchNorm's input, a bias-free convolution of normalised images, has means near 0, where
 * running_mean starts: its convergence would not show.) Starting from
 * running_mean = 0, running_var = 1, each training-mode forward of a batch does
 *     running <- (1 - m) running + m batch_statistic       (momentum m)
 *     running <- running + (batch_statistic - running) / t  (cumulative average, momentum None)
 * and we record, after each step t, the root mean square over channels of running_mean - mu and
 * of running_var - sigma2. The batch variance is the unbiased one, as PyTorch's update uses.
 * Only the prefix and this BatchNorm run (what follows cannot change its statistics). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "experiments.h"

static void defaults(xp_config *c) {
    if (c->steps < 0) c->steps = c->quick ? 40 : 500;
    if (c->batch_size < 0) c->batch_size = 64;
}

static const struct setting {
    const char *column;
    double      momentum;
    bool        cumulative;
} settings[] = {{"momentum_0.01", 0.01, false}, {"momentum_0.1", 0.1, false}, {"momentum_0.5", 0.5, false},
                {"cumulative", 0, true}};
enum { N_SETTINGS = sizeof settings / sizeof *settings };

static const char *const PREFIX[] = {"0", "1", "2", "3", "4"}, *const TRACKED = "5";

/* Modules "0" to "4" of model in turn, in whatever mode they are in. */
static tensor *prefix(nn_module *model, tensor *x) {
    tensor *h = tensor_retain(x);
    for (size_t i = 0; h && i < sizeof PREFIX / sizeof *PREFIX; i++) {
        nn_module *m = nn_module_get_child(model, PREFIX[i]);
        tensor *next = m ? nn_module_forward(m, h) : NULL;
        if (!m) torch_error(TORCH_ERR_INVALID_ARGUMENT, "expected the reference CNN (no module \"%s\")", PREFIX[i]);
        tensor_free(h);
        h = next;
    }
    return h;
}

/* Per-channel mean and variance of prefix(x) over ds: two passes in double (the deviations from
 * the mean, not E[x^2] - E[x]^2, which cancels). */
static torch_status true_statistics(nn_module *model, const data_dataset *ds, int64_t channels, double *mean,
                                    double *var) {
    TORCH_NO_GRAD_GUARD;
    int64_t count = 0;
    for (int pass = 0; pass < 2; pass++) {
        double *acc = pass ? var : mean;
        for (int64_t c = 0; c < channels; c++) acc[c] = 0;
        data_dataloader *dl = data_dataloader_new(ds, 500, false, NULL);
        torch_status st = dl ? TORCH_OK : torch_last_status();
        tensor *x, *labels;
        while (st == TORCH_OK && (st = data_dataloader_next(dl, &x, &labels)) == TORCH_OK && x) {
            tensor *y = prefix(model, x);
            tensor *yc = y ? tensor_contiguous(y) : NULL;
            if (yc) {
                int64_t n = yc->shape[0], hw = yc->shape[2] * yc->shape[3];
                const float *p = tensor_data_f32(yc);
                for (int64_t i = 0; i < n; i++)
                    for (int64_t c = 0; c < channels; c++, p += hw)
                        for (int64_t k = 0; k < hw; k++) acc[c] += pass ? (p[k] - mean[c]) * (p[k] - mean[c]) : p[k];
                if (!pass) count += n * hw;
            } else {
                st = torch_last_status();
            }
            tensor_free(yc);
            tensor_free(y);
            tensor_free(x);
            tensor_free(labels);
        }
        data_dataloader_free(dl);
        if (st != TORCH_OK) return st;
        for (int64_t c = 0; c < channels; c++) acc[c] /= (double)count;
    }
    return TORCH_OK;
}

/* Root mean square over channels of running - truth. */
static double distance(const tensor *running, const double *truth) {
    double s = 0;
    for (int64_t c = 0; c < running->numel; c++) {
        double d = tensor_data_f32(running)[c] - truth[c];
        s += d * d;
    }
    return sqrt(s / (double)running->numel);
}

/* Steps of one setting on a copy of the model; dist[2 * t], dist[2 * t + 1] get the mean's and
 * the variance's distance after step t (t = 0: before any). */
static torch_status run_setting(xp_context *ctx, const struct setting *s, const double *mean, const double *var,
                                double *dist) {
    TORCH_NO_GRAD_GUARD;
    nn_module *copy = nn_module_clone(ctx->model);
    nn_batch_norm_module *bn = copy ? nn_as_batch_norm(nn_module_get_child(copy, TRACKED)) : NULL;
    torch_generator gen = torch_generator_new(ctx->c->seed); /* the same batches for every setting */
    data_dataloader *dl = bn ? data_dataloader_new(ctx->train, ctx->c->batch_size, true, &gen) : NULL;
    torch_status st = dl ? TORCH_OK : torch_last_status();
    if (st == TORCH_OK) {
        bn->options.momentum = s->momentum;
        bn->options.cumulative_moving_average = s->cumulative;
        st = nn_batch_norm_reset_running_stats(&bn->base);
        nn_module_eval(copy);               /* the prefix: a fixed function */
        nn_module_train(&bn->base, true);  /* the BatchNorm under study */
    }
    ex_progress p;
    ex_progress_start(&p, s->column, "step", ctx->c->steps);
    for (int64_t t = 0; st == TORCH_OK && t <= ctx->c->steps; t++) {
        if (t > 0) {
            tensor *x = NULL, *labels = NULL;
            st = data_dataloader_next(dl, &x, &labels);
            if (st == TORCH_OK && !x) st = data_dataloader_next(dl, &x, &labels); /* the next epoch */
            tensor *h = st == TORCH_OK ? prefix(copy, x) : NULL;
            tensor *y = h ? nn_module_forward(&bn->base, h) : NULL;
            if (st == TORCH_OK && !y) st = torch_last_status();
            tensor_free(y);
            tensor_free(h);
            tensor_free(x);
            tensor_free(labels);
            ex_progress_update(&p, t, "");
        }
        dist[2 * t] = distance(bn->running_mean, mean);
        dist[2 * t + 1] = distance(bn->running_var, var);
    }
    data_dataloader_free(dl);
    nn_module_free(copy);
    return st;
}

static torch_status run(xp_context *ctx) {
    nn_batch_norm_module *bn = nn_as_batch_norm(nn_module_get_child(ctx->model, TRACKED));
    if (!bn) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "expected the reference CNN (no BatchNorm \"%s\")", TRACKED);
    int64_t channels = bn->options.num_features, steps = ctx->c->steps;
    double *mean = calloc((size_t)channels, sizeof *mean), *var = calloc((size_t)channels, sizeof *var);
    double *dist = calloc((size_t)(N_SETTINGS * 2 * (steps + 1)), sizeof *dist);
    torch_status st = mean && var && dist ? TORCH_OK : torch_error(TORCH_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == TORCH_OK) st = true_statistics(ctx->model, ctx->train, channels, mean, var);
    for (int k = 0; k < N_SETTINGS && st == TORCH_OK; k++) st = run_setting(ctx, &settings[k], mean, var, dist + k * 2 * (steps + 1));

    xp_text csv = {0}, plot = {0};
    xp_printf(&csv, "step");
    for (int which = 0; which < 2; which++)
        for (int k = 0; k < N_SETTINGS; k++) xp_printf(&csv, ",%s_%s", which ? "var" : "mean", settings[k].column);
    xp_printf(&csv, "\n");
    for (int64_t t = 0; st == TORCH_OK && t <= steps; t++) {
        xp_printf(&csv, "%lld", (long long)t);
        for (int which = 0; which < 2; which++)
            for (int k = 0; k < N_SETTINGS; k++) xp_printf(&csv, ",%.6g", dist[k * 2 * (steps + 1) + 2 * t + which]);
        xp_printf(&csv, "\n");
    }
    xp_printf(&plot, "set multiplot layout 1,2 title 'Running statistics of BatchNorm \"5\" against the data set''s "
                     "(batch %lld)'\nset logscale y\nset xlabel 'step'\nset format y '%%g'\nset key bottom left\n",
              (long long)ctx->c->batch_size);
    for (int which = 0; which < 2; which++) {
        xp_printf(&plot, "set ylabel 'RMS over channels of running_%s - true %s'\nplot ", which ? "var" : "mean",
                  which ? "variance" : "mean");
        for (int k = 0; k < N_SETTINGS; k++)
            xp_printf(&plot, "%s'momentum.csv' using 1:%d with lines lw 2 title '%s%s'", k ? ", " : "",
                      2 + which * N_SETTINGS + k, settings[k].cumulative ? "" : "momentum ",
                      settings[k].cumulative ? "cumulative average" : settings[k].column + 9);
        xp_printf(&plot, "\n");
    }
    xp_printf(&plot, "unset multiplot\n");
    if (st == TORCH_OK) st = xp_output(ctx, &csv, &plot);
    xp_text_free(&csv);
    xp_text_free(&plot);
    free(mean);
    free(var);
    free(dist);
    return st;
}

const xp_experiment xp_momentum = {
    .name = "momentum",
    .summary = "running-statistics convergence for momentum 0.01, 0.1, 0.5 and the cumulative average",
    .help = "From running_mean = 0, running_var = 1, the second BatchNorm of the trained network (\"5\"), in\n"
            "training mode after the layers before it in eval mode, sees --steps shuffled training batches\n"
            "of --batch-size (defaults 500 -- 40 with --quick -- and 64), once per momentum 0.01, 0.1, 0.5\n"
            "and the cumulative average (momentum None), the same batches each time. After each step: the\n"
            "root mean square over channels of running_mean minus the true mean, and of running_var minus\n"
            "the true variance, of its input over the whole training set (computed exactly, in double).\n\n"
            "momentum.csv: step, mean_momentum_0.01, mean_momentum_0.1, mean_momentum_0.5, mean_cumulative,\n"
            "var_momentum_0.01, var_momentum_0.1, var_momentum_0.5, var_cumulative (step 0: before any).\n",
    .options = XP_OPT_STEPS | XP_OPT_BATCH_SIZE,
    .defaults = defaults,
    .run = run,
};
