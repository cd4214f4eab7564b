/* bench_conv.c — Conv2d speed against the machine's own sgemm (convolution is compute-bound).
 *
 * For the 3x3, padding-1 convolutions of the example networks at batch 64 and each thread count,
 * times (median and min over --reps runs after warm-up):
 *   forward        nnf_conv2d without a graph
 *   fwdbwd         forward recording the graph, then backward for input and weight
 * and, in the same process, the sgemm the textbook im2col method would run for that forward:
 *   sgemm          C (O, N*H*W) = W (O, C*9) @ col (C*9, N*H*W) through torch_sgemm
 *   sgemm_peak     a 1024 x 1024 x 1024 product: the machine's sgemm ceiling
 * Each line: op,N,C,H,W,O,threads,median_ms,min_ms,GFLOPs, where GFLOP/s counts the direct
 * convolution's 2 N O H W C 9 flops per forward (and three times that for forward + backward:
 * forward, input gradient, weight gradient), whatever algorithm ran (Winograd F(2x2, 3x3) does
 * fewer multiplications, so it can beat sgemm on this count). Never run by the tests.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "ctorch.h"
#include "nn/conv.h"

typedef struct conv_case {
    tensor *x, *w, *dy;
    float  *A, *B, *C;   /* the sgemm operands */
    int64_t M, N, K;
} conv_case;

static const int64_t pad1[2] = {1, 1};

static void run_forward(void *p) {
    conv_case *c = p;
    tensor *y = nnf_conv2d(c->x, c->w, NULL, NULL, pad1, NULL);
    if (!y) {
        fprintf(stderr, "bench_conv: %s\n", torch_last_error());
        exit(1);
    }
    tensor_free(y);
}

static void run_fwdbwd(void *p) {
    conv_case *c = p;
    tensor_set_requires_grad(c->x, true);
    tensor_set_requires_grad(c->w, true);
    tensor *y = nnf_conv2d(c->x, c->w, NULL, NULL, pad1, NULL);
    if (!y || tensor_backward(y, c->dy, false) != TORCH_OK) {
        fprintf(stderr, "bench_conv: %s\n", torch_last_error());
        exit(1);
    }
    tensor_free(y);
    tensor_zero_grad(c->x);
    tensor_zero_grad(c->w);
    tensor_set_requires_grad(c->x, false);
    tensor_set_requires_grad(c->w, false);
}

static void run_sgemm(void *p) {
    conv_case *c = p;
    torch_sgemm(false, false, c->M, c->N, c->K, c->A, c->K, c->B, c->N, 0.0f, c->C, c->N);
}

static void report(const char *op, const int64_t *s, int threads, bench_stats st, double flops) {
    printf("%s,%lld,%lld,%lld,%lld,%lld,%d,%.4f,%.4f,%.2f\n", op, (long long)s[0], (long long)s[1], (long long)s[2],
           (long long)s[3], (long long)s[4], threads, st.median_ms, st.min_ms, flops / (st.median_ms * 1e6));
    fflush(stdout);
}

/* Random operands of an (M, K) @ (K, N) product. */
static bool sgemm_operands(conv_case *c, torch_generator *g, int64_t M, int64_t N, int64_t K) {
    c->M = M, c->N = N, c->K = K;
    c->A = malloc(sizeof(float) * (size_t)(M * K));
    c->B = malloc(sizeof(float) * (size_t)(K * N));
    c->C = malloc(sizeof(float) * (size_t)(M * N));
    if (!c->A || !c->B || !c->C) return false;
    for (int64_t i = 0; i < M * K; i++) c->A[i] = (float)torch_generator_uniform(g) - 0.5f;
    for (int64_t i = 0; i < K * N; i++) c->B[i] = (float)torch_generator_uniform(g) - 0.5f;
    return true;
}

static void free_operands(conv_case *c) {
    free(c->A), free(c->B), free(c->C);
    c->A = c->B = c->C = NULL;
}

/* s = N, C, H, W, O */
static void bench_shape(const int64_t *s, int threads, int reps) {
    torch_set_num_threads(threads);
    torch_generator g = torch_generator_new(0);
    conv_case c = {0};
    c.x = torch_randn(&g, TORCH_SHAPE(s[0], s[1], s[2], s[3]));
    c.w = torch_randn(&g, TORCH_SHAPE(s[4], s[1], 3, 3));
    c.dy = torch_randn(&g, TORCH_SHAPE(s[0], s[4], s[2], s[3]));
    const double flops = 2.0 * (double)(s[0] * s[4] * s[2] * s[3] * s[1] * 9);
    const int warmup = reps / 10 + 2;
    report("forward", s, threads, bench_run(run_forward, &c, warmup, reps), flops);
    report("fwdbwd", s, threads, bench_run(run_fwdbwd, &c, warmup, reps), 3 * flops);
    if (!sgemm_operands(&c, &g, s[4], s[0] * s[2] * s[3], s[1] * 9)) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    report("sgemm", s, threads, bench_run(run_sgemm, &c, warmup, reps), flops);
    free_operands(&c);
    tensor_free(c.x), tensor_free(c.w), tensor_free(c.dy);
}

static void bench_peak(int threads, int reps) {
    torch_set_num_threads(threads);
    torch_generator g = torch_generator_new(1);
    conv_case c = {0};
    if (!sgemm_operands(&c, &g, 1024, 1024, 1024)) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    const int64_t s[5] = {1024, 1024, 1024, 1, 1};
    report("sgemm_peak", s, threads, bench_run(run_sgemm, &c, 2, reps / 5 + 3), 2.0 * 1024 * 1024 * 1024);
    free_operands(&c);
}

/* N, C, H, W, O: the reference CNN's two convolutions, the deep network's other two. */
static const int64_t shapes[][5] = {
    {64, 1, 28, 28, 32}, {64, 32, 14, 14, 64}, {64, 32, 28, 28, 32}, {64, 64, 14, 14, 64}};

int main(int argc, char **argv) {
    int threads = 0, reps = 20;
    static const struct option longopts[] = {{"threads", required_argument, 0, 't'},
                                             {"reps", required_argument, 0, 'r'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "t:r:h", longopts, NULL)) != -1;) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'h': printf("usage: bench_conv [--threads N] [--reps N]\n  default: 1 and 2 threads, 20 repetitions\n"); return 0;
        default: fprintf(stderr, "usage: bench_conv [--threads N] [--reps N]\n"); return 2;
        }
    }
    if (reps < 1 || threads < 0) {
        fprintf(stderr, "usage: bench_conv [--threads N] [--reps N]\n");
        return 2;
    }
    printf("# openblas core: %s\n", torch_blas_corename());
    printf("op,N,C,H,W,O,threads,median_ms,min_ms,GFLOPs\n");
    for (int t = 1; t <= 2; t++) {
        if (threads && t != threads) continue;
        bench_peak(t, reps);
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) bench_shape(shapes[i], t, reps);
    }
    return 0;
}
