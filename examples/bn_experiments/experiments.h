/* experiments.h — the train/eval-mode experiments with BatchNorm: what each experiment gets
 * (the command line, the data, a trained reference CNN) and what it hands back (a CSV table
 * and the gnuplot commands that draw it). main.c parses the command line and runs one
 * experiment; output.c writes NAME.csv, NAME.gp and NAME.png; each other file is one experiment.
 *
 * Ownership:
 *   - xp_context owns its data sets and its model (freed by main.c); an experiment borrows them,
 *     must leave the model as it found it (it works on nn_module_clone copies), and frees
 *     everything it makes.
 *   - xp_text is an owned growing string (xp_text_free); xp_output borrows its arguments.
 *   - Errors: an experiment returns a torch_status, with torch_last_error() saying why (its own
 *     refusals are set with torch_error and name the experiment).
 */
#ifndef CTORCH_BN_EXPERIMENTS_H
#define CTORCH_BN_EXPERIMENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctorch.h"
#include "common/training.h"

#define XP_MAX_LIST 16

/* The options of the command line; which ones an experiment takes is in its xp_experiment. */
typedef struct xp_config {
    const char *load, *data, *out;
    uint64_t seed;
    bool     quick;
    int      threads, epochs;           /* epochs: training the model when there is no --load */
    int64_t  sizes[XP_MAX_LIST];        /* --batch-sizes or --batches: a list */
    int      n_sizes;
    int64_t  steps, batch_size, ghost_batch_size;
    double   lr;
} xp_config;

/* What an experiment runs on. */
typedef struct xp_context {
    const xp_config *c;
    const struct xp_experiment *experiment;
    data_dataset *train, *test;
    bool          synthetic;   /* the synthetic shapes, not Fashion-MNIST */
    nn_module    *model;       /* the reference CNN, trained or loaded, in eval mode; NULL for
                                * experiments that train their own (xp_experiment.own_model) */
    const char   *command;     /* the command line, for the gnuplot script's first line */
} xp_context;

/* Options beyond the common ones, as bits of xp_experiment.options. */
enum {
    XP_OPT_BATCH_SIZES = 1 << 0, /* --batch-sizes LIST */
    XP_OPT_BATCHES     = 1 << 1, /* --batches LIST */
    XP_OPT_STEPS       = 1 << 2, /* --steps N */
    XP_OPT_BATCH_SIZE  = 1 << 3, /* --batch-size N */
    XP_OPT_LR          = 1 << 4, /* --lr X */
    XP_OPT_GHOST       = 1 << 5, /* --ghost-batch-size N */
};

typedef struct xp_experiment {
    const char *name;     /* the subcommand, and the output files' stem */
    const char *summary;  /* one line for the list of experiments */
    const char *help;     /* what it measures and what the CSV holds, for --help */
    unsigned    options;  /* XP_OPT_* it takes */
    bool        own_model; /* trains its own models: --load gives their initial weights */
    void (*defaults)(xp_config *c); /* sets its own options' defaults (after --quick is known) */
    torch_status (*run)(xp_context *ctx);
} xp_experiment;

extern const xp_experiment xp_train_vs_eval, xp_momentum, xp_no_tracking, xp_forgot_eval, xp_precise,
    xp_freeze, xp_ghost;

/* ---- output ---------------------------------------------------------------------------------------- */

/* A growing string. */
typedef struct xp_text {
    char  *s;
    size_t len, cap;
    bool   failed; /* out of memory at some append: the text is incomplete */
} xp_text;

void xp_printf(xp_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void xp_text_free(xp_text *t);

/* Writes OUT/NAME.csv (csv: a header line, then rows), OUT/NAME.gp (the common preamble --
 * terminal, output file, CSV separator, grid -- then plot, gnuplot commands reading 'NAME.csv'),
 * each atomically, prints the table aligned, and renders OUT/NAME.png with gnuplot. Where
 * gnuplot is not installed it says how to render the plot later and still succeeds; a gnuplot
 * that fails is an error. */
torch_status xp_output(const xp_context *ctx, const xp_text *csv, const xp_text *plot);

/* ---- helpers the experiments share ----------------------------------------------------------------- */

/* A copy of ds with its images in the given order (order[i] = source row of row i). */
data_dataset *xp_dataset_permuted(const data_dataset *ds, const int64_t *order);

#endif /* CTORCH_BN_EXPERIMENTS_H */
