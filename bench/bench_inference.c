/* bench_inference.c — eval-mode inference of the reference CNN, as trained (Conv2d - BatchNorm2d -
 * ReLU - ...) and with each BatchNorm folded into its convolution (nn_module_fuse_eval).
 *
 * The reference CNN of examples/models.h with random weights and running statistics that are not
 * the initial ones (a few training-mode forwards on random input), in eval mode, forward without
 * autograd on random input (batch, 1, 28, 28). Times, as median and min over --reps runs after
 * warm-up, for each batch size and thread count; the folded model's largest difference from the
 * unfolded one is printed as a comment. CSV lines: model,batch,threads,median_ms,min_ms with model
 * "unfolded" or "folded". scripts/bench_side_by_side.py runs this beside the same models in PyTorch
 * (torch.nn.utils.fusion.fuse_conv_bn_eval) and prints the ratio table.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../examples/models.h"
#include "bench_util.h"

static void die(const char *what) {
    fprintf(stderr, "bench_inference: %s: %s\n", what, torch_last_error());
    exit(1);
}
static void *need(void *p, const char *what) {
    if (!p) die(what);
    return p;
}

typedef struct run {
    nn_module *model;
    tensor    *x;
} run;

static void forward(void *ctx) {
    run *r = ctx;
    tensor *y = need(nn_module_forward(r->model, r->x), "forward");
    tensor_free(y);
}

/* Largest |a - b| / max(1, |b|). */
static double max_rel_diff(const tensor *a, const tensor *b) {
    const float *p = tensor_data_f32(a), *q = tensor_data_f32(b);
    double worst = 0;
    for (int64_t i = 0; i < a->numel; i++) worst = fmax(worst, fabs((double)p[i] - q[i]) / fmax(1.0, fabs((double)q[i])));
    return worst;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_inference [--threads 1,2] [--batches 64,256] [--reps N]\n"
               "Times the reference CNN's eval-mode forward, with and without its BatchNorm layers folded into\n"
               "the convolutions; prints CSV: model,batch,threads,median_ms,min_ms.\n");
}

int main(int argc, char **argv) {
    char threads_arg[64] = "1,2", batches_arg[64] = "64,256";
    int reps = 30;
    static const struct option longopts[] = {{"threads", required_argument, NULL, 't'},
                                             {"batches", required_argument, NULL, 'b'},
                                             {"reps", required_argument, NULL, 'r'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        if (c == 't') snprintf(threads_arg, sizeof threads_arg, "%s", optarg);
        else if (c == 'b') snprintf(batches_arg, sizeof batches_arg, "%s", optarg);
        else if (c == 'r') reps = atoi(optarg);
        else {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (reps < 1) {
        usage(stderr);
        return 2;
    }

    torch_generator g = torch_generator_new(20261206);
    nn_module *model = need(reference_cnn(&g), "building the CNN");
    {
        TORCH_NO_GRAD_GUARD; /* running statistics that are not 0 and 1 */
        for (int i = 0; i < 5; i++) {
            tensor *x = need(torch_randn(&g, TORCH_SHAPE(64, 1, 28, 28)), "input");
            tensor_free(need(nn_module_forward(model, x), "training forward"));
            tensor_free(x);
        }
    }
    nn_module_eval(model);
    int64_t n_folded = 0;
    nn_module *folded = need(nn_module_fuse_eval(model, &n_folded), "folding");
    printf("# reference CNN, %lld BatchNorm layers folded; %d reps after warm-up\n", (long long)n_folded, reps);
    printf("model,batch,threads,median_ms,min_ms\n");

    TORCH_NO_GRAD_GUARD;
    char *save_b = NULL;
    for (char *bs = strtok_r(batches_arg, ",", &save_b); bs; bs = strtok_r(NULL, ",", &save_b)) {
        const int64_t batch = atoll(bs);
        run a = {model, need(torch_randn(&g, TORCH_SHAPE(batch, 1, 28, 28)), "input")}, b = {folded, a.x};
        tensor *ya = need(nn_module_forward(model, a.x), "forward"), *yb = need(nn_module_forward(folded, a.x), "forward");
        printf("# batch %lld: folded vs unfolded logits, largest difference %.2e (relative to max(1, |x|))\n",
               (long long)batch, max_rel_diff(yb, ya));
        tensor_free(ya), tensor_free(yb);
        char threads_copy[64], *save_t = NULL;
        snprintf(threads_copy, sizeof threads_copy, "%s", threads_arg);
        for (char *ts = strtok_r(threads_copy, ",", &save_t); ts; ts = strtok_r(NULL, ",", &save_t)) {
            const int threads = atoi(ts);
            torch_set_num_threads(threads);
            bench_stats su = bench_run(forward, &a, reps / 5 + 2, reps), sf = bench_run(forward, &b, reps / 5 + 2, reps);
            printf("unfolded,%lld,%d,%.4f,%.4f\n", (long long)batch, threads, su.median_ms, su.min_ms);
            printf("folded,%lld,%d,%.4f,%.4f\n", (long long)batch, threads, sf.median_ms, sf.min_ms);
            fflush(stdout);
        }
        tensor_free(a.x);
    }
    nn_module_free(folded);
    nn_module_free(model);
    return 0;
}
