/* forgot_eval.c — experiment 4: an evaluation loop that forgot model.eval(). The model then
 * normalises each test batch with its own statistics, and, being in training mode, moves its
 * running statistics towards those of the test batches: the damage outlasts the loop.
 *
 * For each order of the test set -- as stored, and sorted by class (a per-class evaluation loop:
 * every batch holds one class) -- and each batch size: the accuracy with eval() called, the
 * accuracy of the forgetful loop, and the accuracy of a proper evaluation afterwards (eval mode,
 * batches of 1000, stored order), with the running statistics the forgetful loop left. Each row
 * starts from a fresh copy of the trained model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "experiments.h"

static void defaults(xp_config *c) {
    static const int64_t sizes[] = {10, 100, 1000};
    if (!c->n_sizes)
        for (c->n_sizes = 0; c->n_sizes < 3; c->n_sizes++) c->sizes[c->n_sizes] = sizes[c->n_sizes];
}

/* The test set sorted by label, stably (counting sort). */
static data_dataset *sorted_by_class(const data_dataset *ds) {
    int64_t n = data_dataset_size(ds), *order = malloc((size_t)(n ? n : 1) * sizeof *order), at = 0, max = 0;
    if (!order) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    const int64_t *labels = tensor_data_i64(ds->labels);
    for (int64_t i = 0; i < n; i++) max = labels[i] > max ? labels[i] : max;
    for (int64_t k = 0; k <= max; k++)
        for (int64_t i = 0; i < n; i++)
            if (labels[i] == k) order[at++] = i;
    data_dataset *out = xp_dataset_permuted(ds, order);
    free(order);
    return out;
}

static torch_status run(xp_context *ctx) {
    data_dataset *by_class = sorted_by_class(ctx->test);
    const data_dataset *orders[2] = {ctx->test, by_class};
    const char *names[2] = {"stored", "by_class"};
    torch_status st = by_class ? TORCH_OK : torch_last_status();
    xp_text csv = {0}, plot = {0};
    xp_printf(&csv, "order,batch_size,accuracy_eval,accuracy_forgot,accuracy_eval_after\n");
    double lowest = 1;
    for (int o = 0; o < 2 && st == TORCH_OK; o++) {
        for (int i = 0; i < ctx->c->n_sizes && st == TORCH_OK; i++) {
            int64_t b = ctx->c->sizes[i];
            ex_result eval, forgot, after;
            nn_module *copy = nn_module_clone(ctx->model);
            st = copy ? ex_run_batches(ctx->model, orders[o], b, NULL, &eval) : torch_last_status();
            if (st == TORCH_OK) {
                nn_module_train(copy, true); /* the forgotten model.eval() */
                st = ex_run_batches(copy, orders[o], b, NULL, &forgot);
            }
            if (st == TORCH_OK) st = ex_evaluate(copy, ctx->test, &after);
            nn_module_free(copy);
            if (st != TORCH_OK) break;
            printf("forgot-eval: %s order, batch size %lld: eval() %.2f%%, forgot eval() %.2f%%, eval() afterwards "
                   "%.2f%%\n", names[o], (long long)b, 100 * eval.accuracy, 100 * forgot.accuracy,
                   100 * after.accuracy);
            fflush(stdout);
            xp_printf(&csv, "%s,%lld,%.4f,%.4f,%.4f\n", names[o], (long long)b, eval.accuracy, forgot.accuracy,
                      after.accuracy);
            lowest = fmin(lowest, fmin(eval.accuracy, fmin(forgot.accuracy, after.accuracy)));
        }
    }
    /* the bars start at a round number a little under the lowest, so that differences show */
    int floor_of_axis = (int)fmax(0, 10 * floor((100 * lowest - 2) / 10));
    xp_printf(&plot,
              "set title 'Evaluating without model.eval(): the loop, and a proper evaluation after it'\n"
              "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
              "set yrange [%d:100]\nset ylabel 'test accuracy (%%)'\nset xlabel 'order of the test set, batch size'\n"
              "set key below\nset grid noxtics\n"
              "plot 'forgot-eval.csv' using ($3*100):xtic(sprintf('%%s, %%d', strcol(1), int($2))) title 'with model.eval()', \\\n"
              "     '' using ($4*100) title 'forgot model.eval()', \\\n"
              "     '' using ($5*100) title 'model.eval() afterwards, with the running statistics the forgetful loop left'\n",
              floor_of_axis);
    if (st == TORCH_OK) st = xp_output(ctx, &csv, &plot);
    xp_text_free(&csv);
    xp_text_free(&plot);
    data_dataset_free(by_class);
    return st;
}

const xp_experiment xp_forgot_eval = {
    .name = "forgot-eval",
    .summary = "\"forgot to call eval()\": the damage measured on the test set",
    .help = "The trained model evaluates the test set in training mode, as a loop that forgot model.eval()\n"
            "does, for each size of --batch-sizes (default 10,100,1000) and two orders of the test set: as\n"
            "stored, and sorted by class (each batch then holds one class, as in a per-class evaluation).\n"
            "Besides that loop's accuracy: the accuracy with eval() called, and that of a proper\n"
            "evaluation afterwards, with the running statistics the forgetful loop overwrote.\n\n"
            "forgot-eval.csv: order (stored or by_class), batch_size, accuracy_eval, accuracy_forgot,\n"
            "accuracy_eval_after.\n",
    .options = XP_OPT_BATCH_SIZES,
    .defaults = defaults,
    .run = run,
};
