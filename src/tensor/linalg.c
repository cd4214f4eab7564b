/* linalg.c — tensor_mm through OpenBLAS's cblas_sgemm (see ops.h).
 *
 * A strided operand goes to sgemm without a copy whenever its layout is one sgemm reads:
 * row-major (unit column stride) or its transpose (unit row stride, e.g. a transposed view,
 * common in backward), with a leading dimension covering a row. Anything else is copied
 * contiguous first.
 */
#include "ops.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "parallel.h"

static const char fname[] = "torch_matmul";

/* How sgemm can read the rows x cols matrix whose element (i, j) sits at i * rs + j * cs.
 * false when it cannot without a copy. */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, CBLAS_TRANSPOSE *trans, int *ld) {
    const int64_t one = 1;
    if ((cols == 1 || cs == 1) && (rows == 1 || rs >= (cols > one ? cols : one))) {
        int64_t l = rows == 1 ? (cols > one ? cols : one) : rs;
        if (l > INT_MAX) return false;
        *trans = CblasNoTrans;
        *ld = (int)l;
        return true;
    }
    if ((rows == 1 || rs == 1) && (cols == 1 || cs >= (rows > one ? rows : one))) {
        int64_t l = cols == 1 ? (rows > one ? rows : one) : cs;
        if (l > INT_MAX) return false;
        *trans = CblasTrans;
        *ld = (int)l;
        return true;
    }
    return false;
}

/* op(t) as rows x cols with strides, optionally after a contiguous copy (*owned, to free). */
static torch_status prepare(const tensor *t, bool transpose, const tensor **use, tensor **owned,
                            CBLAS_TRANSPOSE *trans, int *ld) {
    *owned = NULL;
    *use = t;
    for (int attempt = 0; attempt < 2; attempt++) {
        const tensor *u = *use;
        int64_t rows = u->shape[transpose], cols = u->shape[!transpose];
        int64_t rs = u->stride[transpose], cs = u->stride[!transpose];
        if (blas_layout(rows, cols, rs, cs, trans, ld)) return TORCH_OK;
        TORCH_ASSERT(attempt == 0); /* a contiguous matrix always has a layout */
        if (!(*owned = tensor_contiguous(t))) return torch_last_status();
        *use = *owned;
    }
    return TORCH_OK;
}

tensor *tensor_mm(const tensor *a, bool trans_a, const tensor *b, bool trans_b) {
    if (torch_check_float32(fname, "input", a) != TORCH_OK || torch_check_float32(fname, "input", b) != TORCH_OK)
        return NULL;
    if (a->ndim != 2 || b->ndim != 2) {
        torch_error(TORCH_ERR_SHAPE, "%s: expected 2-D tensors (got %d-D and %d-D)", fname, a->ndim, b->ndim);
        return NULL;
    }
    const int64_t M = a->shape[trans_a], K = a->shape[!trans_a];
    const int64_t Kb = b->shape[trans_b], N = b->shape[!trans_b];
    if (K != Kb) {
        torch_error(TORCH_ERR_SHAPE, "%s: mat1 and mat2 shapes cannot be multiplied (%lldx%lld and %lldx%lld)", fname,
                    (long long)M, (long long)K, (long long)Kb, (long long)N);
        return NULL;
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX) {
        torch_error(TORCH_ERR_SHAPE, "%s: matrices too large for BLAS (%lldx%lld and %lldx%lld)", fname,
                    (long long)M, (long long)K, (long long)Kb, (long long)N);
        return NULL;
    }
    const int64_t shape[2] = {M, N};
    if (M == 0 || N == 0 || K == 0) return torch_zeros(2, shape); /* an empty sum is 0 */
    tensor *out = torch_empty(2, shape);
    if (!out) return NULL;

    const tensor *ua, *ub;
    tensor *owned_a, *owned_b = NULL;
    CBLAS_TRANSPOSE ta, tb;
    int lda, ldb;
    if (prepare(a, trans_a, &ua, &owned_a, &ta, &lda) != TORCH_OK ||
        prepare(b, trans_b, &ub, &owned_b, &tb, &ldb) != TORCH_OK) {
        tensor_free(owned_a);
        tensor_free(out);
        return NULL;
    }
    torch_sgemm(ta == CblasTrans, tb == CblasTrans, M, N, K, tensor_data_f32(ua), lda, tensor_data_f32(ub), ldb, 0.0f,
                tensor_data_f32(out), N);
    tensor_free(owned_a);
    tensor_free(owned_b);
    return out;
}

void torch_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) { /* an empty sum: C = beta * C, and 0 * NaN must still give 0 when beta == 0 */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    torch_blas_single_thread();
    /* Blocks of 64 rows when C is tall, else of 256 columns: sizes depend on the shapes only.
     * Threads share them only above about 4M multiply-adds (0.05-0.1 ms on one core): below that
     * a parallel region costs as much as it saves, and far more when the cores are shared with
     * other processes (a descheduled thread stalls the region), e.g. a Linear layer's 64x10x3136. */
    const bool by_rows = M > N;
    const int64_t bs = by_rows ? 64 : 256, len = by_rows ? M : N, blocks = (len + bs - 1) / bs;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks > 1 && M * N * K >= ((int64_t)1 << 22))
#endif
    for (int64_t k = 0; k < blocks; k++) {
        int64_t o = k * bs, n = len - o < bs ? len - o : bs;
        /* A block of rows of C needs the same rows of op(A); a block of columns, of op(B). */
        const float *a = by_rows ? A + (trans_a ? o : o * lda) : A;
        const float *b = by_rows ? B : B + (trans_b ? o * ldb : o);
        float *c = by_rows ? C + o * ldc : C + o;
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    (int)(by_rows ? n : M), (int)(by_rows ? N : n), (int)K, 1.0f, a, (int)lda, b, (int)ldb, beta, c,
                    (int)ldc);
    }
}
