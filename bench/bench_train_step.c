/* bench_train_step.c — one training step of the reference CNN, whole and layer by layer.
 *
 * The reference CNN of examples/train_cnn.c at batch 64 on random input (64, 1, 28, 28) and
 * random labels in [0, 10):
 *   Conv2d(1,32,3,padding=1,bias=False) - BatchNorm2d(32) - ReLU - MaxPool2d(2)
 *   - Conv2d(32,64,3,padding=1,bias=False) - BatchNorm2d(64) - ReLU - MaxPool2d(2)
 *   - Flatten - Linear(3136,10),   cross-entropy,   SGD(lr 0.01, momentum 0.9, wd 5e-4); with
 *   --optimizer adam or adamw, Adam(lr 1e-3) or AdamW(lr 1e-3, wd 1e-2) instead.
 *
 * Times, as median and min over --reps runs after warm-up, for each thread count:
 *   step      the full step: zero_grad, forward, loss, backward, SGD step; its phases are the
 *             same runs cut at the phase boundaries (optimizer = zero_grad + step)
 *   per kind  the same step cut at every layer boundary: each child of the Sequential runs
 *             forward on the detached output of the previous one (requiring grad; the first
 *             conv's input needs no gradient, as in the real step), all outputs kept as the
 *             graph keeps them; then the loss, and backward layer by layer in reverse, each
 *             from the gradient its successor left in its detached input, freeing as it goes.
 *             So every layer sees the real upstream gradient and the step's allocation
 *             pattern (which matters: glibc returns freed memory to the kernel, and the page
 *             faults that follow are a large part of a step). Times of layers of the same kind
 *             are summed within a run. Loss: forward and backward; optimizer: zero_grad + step.
 *   breakdown the sum of all those parts within a run, to set beside the full step: the two
 *             differ by what splitting costs (a backward call and a gradient copy per layer),
 *             and by the fusion the step's Sequential does and the split cannot: there each
 *             BatchNorm + ReLU pair runs as one layer, here as two.
 * CSV lines: component,pass,threads,median_ms,min_ms. scripts/bench_side_by_side.py runs this
 * beside the same code in PyTorch and prints the ratio table.
 *
 * --memory-run STEPS instead trains STEPS steps (0: just builds the model) on fresh random
 * batches and prints "peak_rss_kb,<n>" (VmHWM), for the peak-memory comparison.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "ctorch.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/pooling.h"
#include "optim/adam.h"
#include "optim/sgd.h"

enum { NUM_CLASSES = 10 };

typedef enum part_kind { K_CONV, K_BN, K_RELU, K_POOL, K_FLATTEN, K_LINEAR, K_LOSS, K_OPTIM, K_COUNT } part_kind;
static const char *const kind_names[K_COUNT] = {"conv",    "batchnorm", "relu", "maxpool",
                                                "flatten", "linear",    "loss", "optimizer"};

static void die(const char *what) {
    fprintf(stderr, "bench_train_step: %s: %s\n", what, torch_last_error());
    exit(1);
}
static void *need(void *p, const char *what) {
    if (!p) die(what);
    return p;
}
static void ok(torch_status s, const char *what) {
    if (s != TORCH_OK) die(what);
}

static nn_module *reference_cnn(torch_generator *g) {
    nn_module *layers[] = {
        nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 32, .kernel_size = {3, 3},
                                    .padding = {1, 1}, .bias = false, .generator = g)),
        nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 32)),
        nn_relu(),
        nn_max_pool2d(NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2})),
        nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 32, .out_channels = 64, .kernel_size = {3, 3},
                                    .padding = {1, 1}, .bias = false, .generator = g)),
        nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 64)),
        nn_relu(),
        nn_max_pool2d(NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2})),
        nn_flatten(NN_FLATTEN_OPTIONS()),
        nn_linear(NN_LINEAR_OPTIONS(.in_features = 64 * 7 * 7, .out_features = NUM_CLASSES, .generator = g)),
    };
    return need(nn_sequential((int)(sizeof layers / sizeof *layers), layers), "building the CNN");
}

static part_kind kind_of(const nn_module *m) {
    const char *t = m->ops->type_name;
    if (!strcmp(t, "Conv2d")) return K_CONV;
    if (!strcmp(t, "BatchNorm2d")) return K_BN;
    if (!strcmp(t, "ReLU")) return K_RELU;
    if (!strcmp(t, "MaxPool2d")) return K_POOL;
    if (!strcmp(t, "Flatten")) return K_FLATTEN;
    if (!strcmp(t, "Linear")) return K_LINEAR;
    fprintf(stderr, "bench_train_step: unexpected layer %s\n", t);
    exit(1);
}

typedef struct bench {
    nn_module *model;
    optim_optimizer *opt;
    tensor    *x, *labels;
} bench;

static tensor *random_labels(torch_generator *g, int64_t n) {
    tensor  *t = need(torch_empty_dtype(TORCH_INT64, 1, &n), "labels");
    int64_t *d = tensor_data_i64(t);
    for (int64_t i = 0; i < n; i++) d[i] = (int64_t)torch_generator_below(g, NUM_CLASSES);
    return t;
}

/* --optimizer: sgd, adam or adamw */
static const char *optimizer_kind = "sgd";

static optim_optimizer *make_optimizer(const nn_tensor_dict *params) {
    if (!strcmp(optimizer_kind, "adam")) return optim_adam(params, optim_adam_options_default());
    if (!strcmp(optimizer_kind, "adamw")) return optim_adamw(params, optim_adamw_options_default());
    optim_sgd_options o = optim_sgd_options_default(0.01);
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    return optim_sgd(params, o);
}

static bench bench_new(int64_t batch, uint64_t seed) {
    torch_generator g = torch_generator_new(seed);
    bench b = {0};
    b.model = reference_cnn(&g);
    nn_tensor_dict   *params = need(nn_module_named_parameters(b.model), "parameters");
    b.opt = need(make_optimizer(params), "the optimizer");
    nn_tensor_dict_free(params);
    b.x = need(torch_randn(&g, TORCH_SHAPE(batch, 1, 28, 28)), "input");
    b.labels = random_labels(&g, batch);
    return b;
}

static void bench_free(bench *b) {
    optim_free(b->opt);
    nn_module_free(b->model);
    tensor_free(b->x);
    tensor_free(b->labels);
}

/* One full step; phase times (ms) into t[0..3] = forward, loss, backward, optimizer. */
static void train_step(bench *b, double *t) {
    double t0 = bench_now_ms();
    optim_zero_grad(b->opt);
    double t1 = bench_now_ms();
    tensor *logits = need(nn_module_forward(b->model, b->x), "forward");
    double  t2 = bench_now_ms();
    tensor *loss = need(nnf_cross_entropy(logits, b->labels), "cross_entropy");
    double  t3 = bench_now_ms();
    ok(tensor_backward(loss, NULL, false), "backward");
    double t4 = bench_now_ms();
    ok(optim_step(b->opt), "optim_step");
    double t5 = bench_now_ms();
    tensor_free(logits);
    tensor_free(loss);
    if (t) {
        t[0] = t2 - t1;
        t[1] = t3 - t2;
        t[2] = t4 - t3;
        t[3] = (t1 - t0) + (t5 - t4);
    }
}

static void report(const char *component, const char *pass, int threads, double *samples, int n) {
    bench_stats s = bench_summarise(samples, n);
    printf("%s,%s,%d,%.4f,%.4f\n", component, pass, threads, s.median_ms, s.min_ms);
    fflush(stdout);
}

static void bench_threads(int threads, int reps, int64_t batch, bool per_layer) {
    torch_set_num_threads(threads);
    bench b = bench_new(batch, 0);
    int   warmup = reps / 5 + 2;

    /* ---- the full step ---- */
    double *step = malloc(sizeof(double) * (size_t)reps), *phase[4];
    for (int p = 0; p < 4; p++) phase[p] = malloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < warmup; i++) train_step(&b, NULL);
    for (int r = 0; r < reps; r++) {
        double t[4], t0 = bench_now_ms();
        train_step(&b, t);
        step[r] = bench_now_ms() - t0;
        for (int p = 0; p < 4; p++) phase[p][r] = t[p];
    }
    report("step", "total", threads, step, reps);
    static const char *const phase_names[4] = {"forward", "loss", "backward", "optimizer"};
    for (int p = 0; p < 4; p++) report("step", phase_names[p], threads, phase[p], reps);

    /* ---- layer by layer: the same step cut at every layer boundary ---- */
    int64_t L = nn_sequential_length(b.model);
    if (L > 64) {
        fprintf(stderr, "bench_train_step: at most 64 layers\n");
        exit(1);
    }
    /* in[i]: detached input of child i (in[L]: the logits), out[i]: child i's output */
    tensor **in = calloc((size_t)L + 1, sizeof *in), **out = calloc((size_t)L, sizeof *out);
    double *kind_t[K_COUNT][2], *total = calloc((size_t)reps, sizeof(double));
    double *(*layer_t)[2] = calloc((size_t)L, sizeof *layer_t);
    for (int k = 0; k < K_COUNT; k++)
        for (int p = 0; p < 2; p++) kind_t[k][p] = calloc((size_t)reps, sizeof(double));
    for (int64_t i = 0; i < L; i++)
        for (int p = 0; p < 2; p++) layer_t[i][p] = calloc((size_t)reps, sizeof(double));

    for (int r = -warmup; r < reps; r++) {
        double fwd[64], bwd[64], t0 = bench_now_ms(), t1;
        optim_zero_grad(b.opt);
        double zero_t = bench_now_ms() - t0;
        in[0] = tensor_retain(b.x); /* the first conv's input needs no gradient, as in the step */
        for (int64_t i = 0; i < L; i++) {
            t0 = bench_now_ms();
            out[i] = need(nn_module_forward(nn_sequential_at(b.model, i), in[i]), "layer forward");
            fwd[i] = bench_now_ms() - t0;
            in[i + 1] = need(tensor_detach(out[i]), "detach");
            ok(tensor_set_requires_grad(in[i + 1], true), "requires_grad");
        }
        t0 = bench_now_ms();
        tensor *loss = need(nnf_cross_entropy(in[L], b.labels), "cross_entropy");
        t1 = bench_now_ms();
        ok(tensor_backward(loss, NULL, false), "loss backward");
        double loss_f = t1 - t0, loss_b = bench_now_ms() - t1;
        tensor_free(loss);
        for (int64_t i = L - 1; i >= 0; i--) {
            t0 = bench_now_ms();
            ok(tensor_backward(out[i], tensor_grad(in[i + 1]), false), "layer backward");
            bwd[i] = bench_now_ms() - t0;
            tensor_free(out[i]);
            tensor_free(in[i + 1]);
        }
        tensor_free(in[0]);
        t0 = bench_now_ms();
        ok(optim_step(b.opt), "optim_step");
        double opt_t = zero_t + bench_now_ms() - t0;
        if (r < 0) continue;
        double sum = loss_f + loss_b + opt_t;
        for (int64_t i = 0; i < L; i++) {
            part_kind k = kind_of(nn_sequential_at(b.model, i));
            kind_t[k][0][r] += fwd[i];
            kind_t[k][1][r] += bwd[i];
            layer_t[i][0][r] = fwd[i];
            layer_t[i][1][r] = bwd[i];
            sum += fwd[i] + bwd[i];
        }
        kind_t[K_LOSS][0][r] = loss_f;
        kind_t[K_LOSS][1][r] = loss_b;
        kind_t[K_OPTIM][0][r] = opt_t;
        total[r] = sum;
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (k == K_OPTIM) {
            report(kind_names[k], "step", threads, kind_t[k][0], reps);
            continue;
        }
        report(kind_names[k], "forward", threads, kind_t[k][0], reps);
        report(kind_names[k], "backward", threads, kind_t[k][1], reps);
    }
    report("breakdown", "total", threads, total, reps);
    for (int64_t i = 0; i < L; i++) {
        char name[64];
        snprintf(name, sizeof name, "layer%lld:%s", (long long)i, nn_sequential_at(b.model, i)->ops->type_name);
        if (per_layer) {
            report(name, "forward", threads, layer_t[i][0], reps);
            report(name, "backward", threads, layer_t[i][1], reps);
        }
        free(layer_t[i][0]);
        free(layer_t[i][1]);
    }

    for (int k = 0; k < K_COUNT; k++) free(kind_t[k][0]), free(kind_t[k][1]);
    free(layer_t), free(in), free(out), free(total), free(step);
    for (int p = 0; p < 4; p++) free(phase[p]);
    bench_free(&b);
}

/* Trains `steps` steps on fresh random batches: the memory footprint of a training loop. */
static void memory_run(int threads, int steps, int64_t batch) {
    torch_set_num_threads(threads);
    bench           b = bench_new(batch, 0);
    torch_generator g = torch_generator_new(2);
    for (int s = 0; s < steps; s++) {
        tensor_free(b.x);
        tensor_free(b.labels);
        b.x = need(torch_randn(&g, TORCH_SHAPE(batch, 1, 28, 28)), "input");
        b.labels = random_labels(&g, batch);
        train_step(&b, NULL);
    }
    bench_free(&b);
    /* VmHWM, not getrusage's ru_maxrss: the latter keeps the peak of the process image before
     * exec (a Python parent with torch loaded, for instance). */
    long  kb = -1;
    char  line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    printf("peak_rss_kb,%ld\n", kb);
}

static void usage(FILE *out) {
    fprintf(out, "usage: bench_train_step [--threads N] [--reps N] [--batch N] [--per-layer]\n"
                 "                        [--optimizer sgd|adam|adamw] [--memory-run STEPS]\n"
                 "  default: 1 and 2 threads, 20 repetitions, batch 64, sgd\n"
                 "  --per-layer   also print each layer's forward and backward\n"
                 "  --memory-run  train STEPS steps on random batches, print peak_rss_kb\n");
}

int main(int argc, char **argv) {
    int  threads = 0, reps = 20, memory_steps = -1;
    long batch = 64;
    bool per_layer = false;
    static const struct option longopts[] = {{"threads", required_argument, 0, 't'},
                                             {"reps", required_argument, 0, 'r'},
                                             {"batch", required_argument, 0, 'b'},
                                             {"per-layer", no_argument, 0, 'p'},
                                             {"memory-run", required_argument, 0, 'm'},
                                             {"optimizer", required_argument, 0, 'o'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "t:r:b:pm:o:h", longopts, NULL)) != -1;) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'b': batch = atol(optarg); break;
        case 'p': per_layer = true; break;
        case 'm': memory_steps = atoi(optarg); break;
        case 'o': optimizer_kind = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (batch < 1 || (strcmp(optimizer_kind, "sgd") && strcmp(optimizer_kind, "adam") && strcmp(optimizer_kind, "adamw"))) {
        usage(stderr);
        return 2;
    }
    if (memory_steps >= 0) {
        memory_run(threads > 0 ? threads : 1, memory_steps, batch);
        return 0;
    }
    printf("# openblas core: %s\n", torch_blas_corename());
    printf("# reference CNN, batch %ld, input (%ld, 1, 28, 28), %s\n", batch, batch,
           !strcmp(optimizer_kind, "sgd") ? "SGD lr 0.01 momentum 0.9 wd 5e-4"
           : !strcmp(optimizer_kind, "adam") ? "Adam lr 1e-3" : "AdamW lr 1e-3 wd 1e-2");
    printf("component,pass,threads,median_ms,min_ms\n");
    int thread_list[2] = {1, 2}, nthreads = threads > 0 ? 1 : 2;
    if (threads > 0) thread_list[0] = threads;
    for (int ti = 0; ti < nthreads; ti++) bench_threads(thread_list[ti], reps, batch, per_layer);
    return 0;
}
