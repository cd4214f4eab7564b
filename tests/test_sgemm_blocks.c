/* test_sgemm_blocks.c — torch_sgemm (src/tensor/linalg.c): the product split into blocks fixed by
 * the shapes, shared among threads only for large products.
 *
 * References: the product summed in double here (tolerance 1e-5 relative to max(1, |want|));
 * bit-identical results at 1 and 2 threads for products above the parallel threshold (4M
 * multiply-adds) with row blocks and column blocks, all four transpose combinations, beta 0 and 1,
 * leading dimensions larger than the matrices; and the Linear layer's small products, which stay
 * on one thread. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctorch.h"
#include "tensor/ops.h"
#include "tensor/parallel.h"

TestSuite(sgemm_blocks);

typedef struct gemm_case {
    bool    ta, tb;
    int64_t M, N, K, pad; /* pad: extra elements per row of every matrix (leading dimension > width) */
    float   beta;
} gemm_case;

/* C = op(A) @ op(B) + beta C at `threads` threads, from fixed random inputs; returns C (malloc'd). */
static float *run(const gemm_case *c, int threads, const float *A, const float *B, const float *C0, int64_t lda,
                  int64_t ldb, int64_t ldc) {
    float *C = malloc(sizeof(float) * (size_t)(c->M * ldc));
    memcpy(C, C0, sizeof(float) * (size_t)(c->M * ldc));
    torch_set_num_threads(threads);
    torch_sgemm(c->ta, c->tb, c->M, c->N, c->K, A, lda, B, ldb, c->beta, C, ldc);
    torch_set_num_threads(1);
    return C;
}

static float *random_floats(torch_generator *g, int64_t n) {
    tensor *t = torch_randn(g, TORCH_SHAPE(n));
    float *d = malloc(sizeof(float) * (size_t)n);
    memcpy(d, tensor_data_f32(t), sizeof(float) * (size_t)n);
    tensor_free(t);
    return d;
}

static void check_case(const gemm_case *c, uint64_t seed) {
    torch_generator g = torch_generator_new(seed);
    int64_t arows = c->ta ? c->K : c->M, acols = c->ta ? c->M : c->K;
    int64_t brows = c->tb ? c->N : c->K, bcols = c->tb ? c->K : c->N;
    int64_t lda = acols + c->pad, ldb = bcols + c->pad, ldc = c->N + c->pad;
    float *A = random_floats(&g, arows * lda), *B = random_floats(&g, brows * ldb), *C0 = random_floats(&g, c->M * ldc);
    float *one = run(c, 1, A, B, C0, lda, ldb, ldc), *two = run(c, 2, A, B, C0, lda, ldb, ldc);
    cr_assert(memcmp(one, two, sizeof(float) * (size_t)(c->M * ldc)) == 0,
              "%s%s %lldx%lldx%lld: 1 and 2 threads differ", c->ta ? "T" : "N", c->tb ? "T" : "N", (long long)c->M,
              (long long)c->N, (long long)c->K);
    for (int64_t i = 0; i < c->M; i++) {
        for (int64_t j = 0; j < c->N; j++) {
            double s = c->beta * (double)C0[i * ldc + j];
            for (int64_t k = 0; k < c->K; k++) {
                double a = c->ta ? A[k * lda + i] : A[i * lda + k];
                double b = c->tb ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            cr_assert(fabs(one[i * ldc + j] - s) <= 1e-5 * fmax(1.0, fabs(s)) * sqrt((double)c->K), "C[%lld, %lld]",
                      (long long)i, (long long)j);
        }
        for (int64_t j = c->N; j < ldc; j++) /* the padding is not written */
            cr_assert(memcmp(&one[i * ldc + j], &C0[i * ldc + j], sizeof(float)) == 0);
    }
    free(A), free(B), free(C0), free(one), free(two);
}

Test(sgemm_blocks, deterministic_and_correct_above_threshold) {
    const gemm_case cases[] = {
        {false, false, 300, 200, 90, 0, 0.0f},  /* tall: blocks of 64 rows */
        {true, false, 70, 700, 100, 3, 1.0f},   /* wide: blocks of 256 columns */
        {false, true, 129, 520, 64, 1, 0.5f},
        {true, true, 260, 90, 200, 2, 0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(&cases[i], 40 + i);
}

/* The Linear layer's products (batch 64, 3136 -> 10): below the threshold, one thread, same bits. */
Test(sgemm_blocks, small_products) {
    const gemm_case cases[] = {
        {false, true, 64, 10, 3136, 0, 0.0f}, /* forward */
        {false, false, 64, 3136, 10, 0, 0.0f}, /* dx */
        {true, false, 10, 3136, 64, 0, 0.0f}, /* dweight */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(&cases[i], 50 + i);
}
