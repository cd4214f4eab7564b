/* parallel.c — one knob for OpenMP and OpenBLAS threads (see parallel.h). */
#include "parallel.h"

#include <cblas.h>
#include <threads.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void torch_set_num_threads(int n) {
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    torch_blas_single_thread();
}

static once_flag blas_once = ONCE_FLAG_INIT;
static void blas_set_single(void) { openblas_set_num_threads(1); }

void torch_blas_single_thread(void) { call_once(&blas_once, blas_set_single); }

int torch_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *torch_blas_corename(void) { return openblas_get_corename(); }
