/* training.c — the data set, the training epoch, evaluation and the progress line shared by the
 * example programs (see training.h). */
#define _POSIX_C_SOURCE 200809L
#include "training.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- numbers on the command line -------------------------------------------------------------- */

bool ex_parse_long(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool ex_parse_double(const char *s, double lo, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo) return false;
    *out = v;
    return true;
}

/* ---- data ---------------------------------------------------------------------------------------- */

static data_dataset *limit(data_dataset *ds, int64_t n) {
    if (!ds || n < 0 || n >= data_dataset_size(ds)) return ds;
    data_dataset *sub = data_dataset_subset(ds, 0, n);
    data_dataset_free(ds);
    return sub;
}

bool ex_load_data(const ex_data_options *o, torch_generator *gen, data_dataset **train, data_dataset **test,
                  bool *synthetic) {
    const char *dir = data_dir(o->dir), *env = getenv(DATA_ENV);
    *train = *test = NULL;
    if (!o->dir && env && *env) {
        struct stat st;
        const char *why = stat(env, &st) != 0 ? strerror(errno) : !S_ISDIR(st.st_mode) ? "not a directory" : NULL;
        if (why) {
            torch_error(TORCH_ERR_IO, "$%s is %s, which is not a folder (%s); expected the data set's folder, or an "
                        "empty folder for the synthetic data set", DATA_ENV, env, why);
            return false;
        }
    }
    bool none = !o->dir && !data_fashion_mnist_present(dir);
    if (synthetic) *synthetic = none;
    if (none) {
        printf("data: no data set found in %s (none of the Fashion-MNIST files is there: install "
               "dataset-fashion-mnist, or name its folder with --data); using the synthetic shapes data set instead\n",
               dir);
        *train = data_synthetic_shapes(o->synthetic_train, gen, DATA_FASHION_MNIST_MEAN, DATA_FASHION_MNIST_STD);
        *test = *train ? data_synthetic_shapes(o->synthetic_test, gen, DATA_FASHION_MNIST_MEAN, DATA_FASHION_MNIST_STD)
                       : NULL;
    } else {
        *train = data_fashion_mnist(dir, true);
        *test = *train ? data_fashion_mnist(dir, false) : NULL;
        /* the example networks take 28 x 28 images (Linear(3136) after two 2 x 2 poolings) */
        const data_dataset *sets[2] = {*train, *test};
        for (int k = 0; k < 2 && *test; k++) {
            const int64_t *shape = sets[k]->images->shape;
            if (shape[2] != 28 || shape[3] != 28) {
                torch_error(TORCH_ERR_SHAPE, "%s: expected 28x28 images, as Fashion-MNIST's (got %lldx%lld in the %s set)",
                            dir, (long long)shape[2], (long long)shape[3], k ? "test" : "training");
                data_dataset_free(*test);
                *test = NULL;
            }
        }
        if (*test) printf("data: Fashion-MNIST from %s\n", dir);
    }
    if (!*train || !*test) {
        data_dataset_free(*train);
        data_dataset_free(*test);
        *train = *test = NULL;
        return false;
    }
    *train = limit(*train, o->limit_train);
    *test = limit(*test, o->limit_test);
    if (*train && *test) return true;
    data_dataset_free(*train);
    data_dataset_free(*test);
    *train = *test = NULL;
    return false;
}

/* ---- progress ------------------------------------------------------------------------------------- */

double ex_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void ex_progress_start(ex_progress *p, const char *label, const char *unit, int64_t total) {
    snprintf(p->label, sizeof p->label, "%s", label);
    p->unit = unit;
    p->total = total > 0 ? total : 1;
    p->t0 = ex_now_seconds();
    p->tty = isatty(STDOUT_FILENO);
}

void ex_progress_update(const ex_progress *p, int64_t done, const char *extra) {
    double elapsed = ex_now_seconds() - p->t0, eta = done ? elapsed / (double)done * (double)(p->total - done) : 0;
    extra = extra ? extra : "";
    if (p->tty) {
        int width = 30, filled = (int)(width * done / p->total);
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
        bar[width] = '\0';
        printf("\r%s [%s] %lld/%lld %s ETA %d:%02d ", p->label, bar, (long long)done, (long long)p->total, extra,
               (int)eta / 60, (int)eta % 60);
        if (done == p->total) printf("\n");
        fflush(stdout);
    } else if (done == p->total || done % (p->total / 10 > 0 ? p->total / 10 : 1) == 0) {
        printf("%s %s %lld/%lld %s ETA %.0fs\n", p->label, p->unit, (long long)done, (long long)p->total, extra, eta);
        fflush(stdout);
    }
}

/* ---- training and evaluation --------------------------------------------------------------------- */

/* Rows of logits (B, K) whose argmax equals labels (B); each row's argmax into predictions. */
static int64_t count_correct(tensor *logits, tensor *labels, int64_t *predictions) {
    tensor *pred = torch_argmax(logits, 1, false);
    if (!pred) return -1;
    int64_t correct = 0;
    for (int64_t i = 0; i < pred->numel; i++) {
        correct += tensor_data_i64(pred)[i] == tensor_data_i64(labels)[i];
        if (predictions) predictions[i] = tensor_data_i64(pred)[i];
    }
    tensor_free(pred);
    return correct;
}

torch_status ex_train_step(nn_module *model, optim_optimizer *opt, tensor *x, tensor *y, double *loss,
                           int64_t *correct) {
    tensor *logits = nn_module_forward(model, x);
    tensor *l = logits ? nnf_cross_entropy(logits, y) : NULL;
    torch_status st = l ? TORCH_OK : torch_last_status();
    if (st == TORCH_OK) {
        optim_zero_grad(opt);
        st = tensor_backward(l, NULL, false);
    }
    if (st == TORCH_OK) st = optim_step(opt);
    if (st == TORCH_OK && loss) *loss = tensor_item(l);
    if (st == TORCH_OK && correct && (*correct = count_correct(logits, y, NULL)) < 0) st = torch_last_status();
    tensor_free(l);
    tensor_free(logits);
    return st;
}

torch_status ex_train_epoch(nn_module *model, optim_optimizer *opt, data_dataloader *dl, const char *label,
                            ex_result *out) {
    nn_module_train(model, true);
    ex_progress p;
    ex_progress_start(&p, label, "batch", data_dataloader_num_batches(dl));
    int64_t seen = 0, correct = 0, b = 0;
    double loss_sum = 0;
    tensor *x, *y;
    torch_status st;
    while ((st = data_dataloader_next(dl, &x, &y)) == TORCH_OK && x) {
        double loss;
        int64_t c;
        st = ex_train_step(model, opt, x, y, &loss, &c);
        if (st == TORCH_OK) {
            loss_sum += loss * (double)x->shape[0];
            correct += c;
            seen += x->shape[0];
        }
        tensor_free(x);
        tensor_free(y);
        if (st != TORCH_OK) return st;
        char extra[64];
        snprintf(extra, sizeof extra, "loss %.4f %.0f img/s", loss_sum / (double)seen,
                 (double)seen / (ex_now_seconds() - p.t0));
        ex_progress_update(&p, ++b, extra);
    }
    out->loss = seen ? loss_sum / (double)seen : NAN;
    out->accuracy = seen ? (double)correct / (double)seen : NAN;
    return st;
}

torch_status ex_run_batches(nn_module *model, const data_dataset *ds, int64_t batch_size, int64_t *predictions,
                            ex_result *out) {
    TORCH_NO_GRAD_GUARD; /* no graph: nothing here needs a backward (restored on return) */
    data_dataloader *dl = data_dataloader_new(ds, batch_size, false, NULL);
    torch_status st = dl ? TORCH_OK : torch_last_status();
    int64_t seen = 0, correct = 0;
    double loss_sum = 0;
    tensor *x, *y;
    while (st == TORCH_OK && (st = data_dataloader_next(dl, &x, &y)) == TORCH_OK && x) {
        tensor *logits = nn_module_forward(model, x);
        tensor *loss = logits ? nnf_cross_entropy(logits, y) : NULL;
        int64_t c = loss ? count_correct(logits, y, predictions ? predictions + seen : NULL) : -1;
        if (c >= 0) {
            loss_sum += tensor_item(loss) * (double)x->shape[0];
            correct += c;
            seen += x->shape[0];
        } else {
            st = torch_last_status();
        }
        tensor_free(loss);
        tensor_free(logits);
        tensor_free(x);
        tensor_free(y);
    }
    data_dataloader_free(dl);
    out->loss = seen ? loss_sum / (double)seen : NAN;
    out->accuracy = seen ? (double)correct / (double)seen : NAN;
    return st;
}

torch_status ex_evaluate(nn_module *model, const data_dataset *test, ex_result *out) {
    nn_module_eval(model);
    return ex_run_batches(model, test, 1000, NULL, out);
}
