/* bench_batch_norm.c — BatchNorm2d speed against the machine's own copy bandwidth.
 *
 * For each shape and thread count, times (median and min over --reps runs after warm-up):
 *   copy        memcpy of the input's bytes: read once, write once (the practical ceiling)
 *   train_fwd   nnf_batch_norm in training mode (batch statistics, running-stat update)
 *   eval_fwd    nnf_batch_norm in eval mode (running statistics)
 *   train_fwdbwd  training forward + backward for input, weight and bias
 *   train_fwdbwd_relu           the same with a ReLU after the batch norm, fused (nnf_batch_norm_relu)
 *   train_fwdbwd_relu_separate  the same as two layers (nnf_batch_norm, then nnf_relu)
 * and prints one CSV line per op: op,N,C,H,W,threads,median_ms,min_ms,GB/s(2 x bytes / median).
 * scripts/bench_side_by_side.py runs this beside PyTorch and prints the ratio table.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "ctorch.h"
#include "nn/batch_norm.h"

typedef struct bn_case {
    tensor *x, *dy, *weight, *bias, *running_mean, *running_var;
    void   *copy_src, *copy_dst;
    size_t  nbytes;
} bn_case;

static void run_copy(void *p) {
    bn_case *c = p;
    memcpy(c->copy_dst, c->copy_src, c->nbytes);
}

static void run_forward(bn_case *c, bool training) {
    tensor *y = nnf_batch_norm(c->x, c->running_mean, c->running_var, c->weight, c->bias, training, 0.1, 1e-5);
    if (!y) {
        fprintf(stderr, "bench_batch_norm: %s\n", torch_last_error());
        exit(1);
    }
    tensor_free(y);
}
static void run_train_fwd(void *p) { run_forward(p, true); }
static void run_eval_fwd(void *p) { run_forward(p, false); }

/* Which layers a forward+backward run goes through. */
typedef enum { BN_ONLY, BN_RELU_FUSED, BN_RELU_SEPARATE } bn_layers;

static void run_fwdbwd(bn_case *c, bn_layers layers) {
    tensor_set_requires_grad(c->x, true);
    tensor_set_requires_grad(c->weight, true);
    tensor_set_requires_grad(c->bias, true);
    tensor *z = NULL, *y;
    if (layers == BN_RELU_FUSED) {
        y = nnf_batch_norm_relu(c->x, c->running_mean, c->running_var, c->weight, c->bias, true, 0.1, 1e-5);
    } else {
        y = z = nnf_batch_norm(c->x, c->running_mean, c->running_var, c->weight, c->bias, true, 0.1, 1e-5);
        if (z && layers == BN_RELU_SEPARATE) y = nnf_relu(z);
    }
    if (!y || tensor_backward(y, c->dy, false) != TORCH_OK) {
        fprintf(stderr, "bench_batch_norm: %s\n", torch_last_error());
        exit(1);
    }
    if (y != z) tensor_free(z);
    tensor_free(y);
    tensor_zero_grad(c->x);
    tensor_zero_grad(c->weight);
    tensor_zero_grad(c->bias);
    tensor_set_requires_grad(c->x, false);
    tensor_set_requires_grad(c->weight, false);
    tensor_set_requires_grad(c->bias, false);
}
static void run_train_fwdbwd(void *p) { run_fwdbwd(p, BN_ONLY); }
static void run_train_fwdbwd_relu(void *p) { run_fwdbwd(p, BN_RELU_FUSED); }
static void run_train_fwdbwd_relu_separate(void *p) { run_fwdbwd(p, BN_RELU_SEPARATE); }

static void report(const char *op, const int64_t *s, int threads, bench_stats st, size_t nbytes) {
    printf("%s,%lld,%lld,%lld,%lld,%d,%.4f,%.4f,%.2f\n", op, (long long)s[0], (long long)s[1], (long long)s[2],
           (long long)s[3], threads, st.median_ms, st.min_ms, 2.0 * (double)nbytes / (st.median_ms * 1e6));
    fflush(stdout);
}

/* Every op, in the order they run; the first is the baseline and always runs. */
static const struct {
    const char *name;
    void (*run)(void *);
} ops[] = {{"copy", run_copy},
           {"train_fwd", run_train_fwd},
           {"eval_fwd", run_eval_fwd},
           {"train_fwdbwd", run_train_fwdbwd},
           {"train_fwdbwd_relu", run_train_fwdbwd_relu},
           {"train_fwdbwd_relu_separate", run_train_fwdbwd_relu_separate}};

#define N_OPS (sizeof ops / sizeof *ops)

/* Whether the `len` characters at `tok` spell `name`. */
static bool token_is(const char *tok, size_t len, const char *name) {
    return strlen(name) == len && !strncmp(tok, name, len);
}

/* Whether `name` is in the comma-separated list `only` (NULL: every op). */
static bool op_selected(const char *only, const char *name) {
    if (!only) return true;
    for (const char *p = only; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ','))
        if (token_is(p, strcspn(p, ","), name)) return true;
    return false;
}

/* Whether every name in the comma-separated list is an op. */
static bool ops_known(const char *list) {
    for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        bool known = false;
        for (size_t i = 0; i < N_OPS; i++) known = known || token_is(p, strcspn(p, ","), ops[i].name);
        if (!known) return false;
    }
    return true;
}

static void bench_shape(const int64_t *s, int threads, int reps, const char *only) {
    torch_set_num_threads(threads);
    torch_generator g = torch_generator_new(0);
    bn_case c = {0};
    c.x = torch_randn(&g, 4, s);
    c.dy = torch_randn(&g, 4, s);
    c.weight = torch_rand(&g, 1, &s[1]);
    c.bias = torch_randn(&g, 1, &s[1]);
    c.running_mean = torch_zeros(1, &s[1]);
    c.running_var = torch_ones(1, &s[1]);
    c.nbytes = (size_t)c.x->numel * sizeof(float);
    c.copy_src = tensor_data_f32(c.x);
    c.copy_dst = malloc(c.nbytes);
    memset(c.copy_dst, 0, c.nbytes);
    const int warmup = reps / 10 + 2;
    for (size_t i = 0; i < N_OPS; i++)
        if (i == 0 || op_selected(only, ops[i].name))
            report(ops[i].name, s, threads, bench_run(ops[i].run, &c, warmup, reps), c.nbytes);
    free(c.copy_dst);
    tensor *all[] = {c.x, c.dy, c.weight, c.bias, c.running_mean, c.running_var};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
}

static const int64_t default_shapes[][4] = {
    {64, 32, 28, 28}, {64, 64, 14, 14}, {128, 64, 8, 8}, {32, 64, 56, 56}, {20, 100, 35, 45}, {256, 16, 32, 32},
};

static void usage(FILE *out) {
    fprintf(out, "usage: bench_batch_norm [--threads N] [--reps N] [--shape N,C,H,W] [--ops OP,...]\n"
                 "  default: the six issue shapes at 1 and 2 threads, 50 repetitions, every op\n"
                 "  ops: train_fwd, eval_fwd, train_fwdbwd, train_fwdbwd_relu, train_fwdbwd_relu_separate\n"
                 "  (the copy always runs: it is the ratio's baseline)\n");
}

int main(int argc, char **argv) {
    int threads = 0, reps = 50;
    int64_t shape[4];
    bool one_shape = false;
    const char *only = NULL;
    static const struct option longopts[] = {{"threads", required_argument, 0, 't'},
                                             {"reps", required_argument, 0, 'r'},
                                             {"shape", required_argument, 0, 's'},
                                             {"ops", required_argument, 0, 'o'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "t:r:s:o:h", longopts, NULL)) != -1;) {
        long long a, b, c2, d;
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 's':
            if (sscanf(optarg, "%lld,%lld,%lld,%lld", &a, &b, &c2, &d) != 4 || a < 1 || b < 1 || c2 < 1 || d < 1) {
                usage(stderr);
                return 2;
            }
            shape[0] = a, shape[1] = b, shape[2] = c2, shape[3] = d;
            one_shape = true;
            break;
        case 'o': only = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (only && !ops_known(only)) {
        fprintf(stderr, "bench_batch_norm: --ops: unknown op in '%s'\n", only);
        usage(stderr);
        return 2;
    }
    printf("# openblas core: %s\n", torch_blas_corename());
    printf("op,N,C,H,W,threads,median_ms,min_ms,GBps\n");
    int thread_list[2] = {1, 2}, nthreads = threads > 0 ? 1 : 2;
    if (threads > 0) thread_list[0] = threads;
    for (int ti = 0; ti < nthreads; ti++) {
        if (one_shape) {
            bench_shape(shape, thread_list[ti], reps, only);
            continue;
        }
        for (size_t i = 0; i < sizeof default_shapes / sizeof *default_shapes; i++)
            bench_shape(default_shapes[i], thread_list[ti], reps, only);
    }
    return 0;
}
