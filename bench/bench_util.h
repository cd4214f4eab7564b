/* bench_util.h — timing helpers shared by the benchmark programs (header-only, bench/ only).
 *
 * Ownership: nothing allocated here outlives a call; bench_stats fills caller-owned storage. */
#ifndef CTORCH_BENCH_UTIL_H
#define CTORCH_BENCH_UTIL_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_stats {
    double median_ms, min_ms;
} bench_stats;

/* Median and minimum of n samples (sorts the array in place). */
static inline bench_stats bench_summarise(double *samples, int n) {
    qsort(samples, (size_t)n, sizeof *samples, bench_cmp_double);
    bench_stats s = {n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]), samples[0]};
    return s;
}

/* Times fn(ctx) `reps` times after `warmup` untimed calls. */
static inline bench_stats bench_run(void (*fn)(void *), void *ctx, int warmup, int reps) {
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < warmup; i++) fn(ctx);
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now_ms();
        fn(ctx);
        t[i] = bench_now_ms() - t0;
    }
    bench_stats s = bench_summarise(t, reps);
    free(t);
    return s;
}

#endif /* CTORCH_BENCH_UTIL_H */
