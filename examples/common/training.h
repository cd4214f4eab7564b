/* training.h — what the example programs share: the data set they train on (Fashion-MNIST, or
 * the synthetic shapes on a machine without it), a training epoch with its progress line,
 * evaluation, and the parsing of numbers on their command lines.
 *
 * Ownership:
 *   - ex_load_data hands back two owned data sets (data_dataset_free), or NULLs on error.
 *   - Models, optimizers, loaders and data sets passed in are borrowed; the functions keep no
 *     pointer after they return. Tensors they make are freed before they return.
 *   - Errors: a torch_status, or false/NULL, with torch_last_error() saying why.
 */
#ifndef CTORCH_EXAMPLES_TRAINING_H
#define CTORCH_EXAMPLES_TRAINING_H

#include <stdbool.h>
#include <stdint.h>

#include "ctorch.h"
#include "data/data.h"

/* ---- numbers on the command line -------------------------------------------------------------- */

/* A whole decimal number in [lo, hi], nothing else in s. */
bool ex_parse_long(const char *s, long long lo, long long hi, long long *out);
/* A finite number >= lo, nothing else in s. */
bool ex_parse_double(const char *s, double lo, double *out);

/* ---- data ---------------------------------------------------------------------------------------- */

typedef struct ex_data_options {
    const char *dir;                 /* --data: this folder, which must load; NULL: $CTORCH_DATA or Debian's folder */
    int64_t limit_train, limit_test; /* keep only the first N images; -1: all */
    int64_t synthetic_train, synthetic_test; /* sizes of the synthetic sets, used where there is no data set */
} ex_data_options;

/* Fashion-MNIST from o->dir, which must load. Without a dir, from $CTORCH_DATA (which must name
 * a folder: an empty one is how a machine without the data set is imitated) or Debian's folder:
 * where none of the data set's files is there, the synthetic shapes drawn from gen (announced on
 * the first line, "data: no data set found in ..."); where any is, they must load: a broken data
 * set is never silently replaced. Prints one "data: ..." line; *synthetic (may be NULL) says which. */
bool ex_load_data(const ex_data_options *o, torch_generator *gen, data_dataset **train, data_dataset **test,
                  bool *synthetic);

/* ---- progress ------------------------------------------------------------------------------------- */

/* A progress line for a loop of total steps: on a terminal a bar redrawn in place, otherwise a
 * plain line every tenth of the loop, e.g. "epoch 1 batch 94/938 loss 0.5123 8123 img/s ETA 7s". */
typedef struct ex_progress {
    char    label[64]; /* "epoch 1", "momentum 0.1" */
    const char *unit;  /* "batch", "step" (static) */
    int64_t total;
    double  t0;
    bool    tty;
} ex_progress;

double ex_now_seconds(void);
void   ex_progress_start(ex_progress *p, const char *label, const char *unit, int64_t total);
/* done of total steps are finished; extra (may be NULL or "") goes after the count. */
void   ex_progress_update(const ex_progress *p, int64_t done, const char *extra);

/* ---- training and evaluation --------------------------------------------------------------------- */

typedef struct ex_result {
    double loss, accuracy; /* mean cross-entropy per image, fraction correct */
} ex_result;

/* One training step on images x and labels y, the five lines of a PyTorch step: forward,
 * cross-entropy, zero_grad, backward, step. *loss and *correct (each may be NULL) get the batch's
 * mean loss and how many of its images the forward classified right. */
torch_status ex_train_step(nn_module *model, optim_optimizer *opt, tensor *x, tensor *y, double *loss,
                           int64_t *correct);

/* One epoch of dl in training mode, ex_train_step per batch, with a progress line labelled label. */
torch_status ex_train_epoch(nn_module *model, optim_optimizer *opt, data_dataloader *dl, const char *label,
                            ex_result *out);

/* The model on ds in order, in batches of batch_size (the last one may be smaller), without
 * autograd and in whatever mode the model is in (a model in training mode normalises with each
 * batch's statistics and updates its running statistics, as in PyTorch). predictions (may be
 * NULL) gets each image's argmax. */
torch_status ex_run_batches(nn_module *model, const data_dataset *ds, int64_t batch_size, int64_t *predictions,
                            ex_result *out);

/* Test-set evaluation as it should be done: eval mode, batches of 1000, no autograd. Leaves the
 * model in eval mode. */
torch_status ex_evaluate(nn_module *model, const data_dataset *test, ex_result *out);

#endif /* CTORCH_EXAMPLES_TRAINING_H */
