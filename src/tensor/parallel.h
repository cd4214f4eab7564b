/* parallel.h — how many threads ctorch's kernels (OpenMP) and OpenBLAS use.
 *
 * Ownership: no memory involved. The setting is process-wide, like torch.set_num_threads().
 * Results never depend on it: every reduction is split in a fixed way (by channel or by fixed
 * blocks merged in a fixed order), so a seed gives bit-identical numbers at any thread count.
 */
#ifndef CTORCH_PARALLEL_H
#define CTORCH_PARALLEL_H

/* Sets the threads used by our kernels; n < 1 is clamped to 1. OpenBLAS itself always runs on
 * one thread: ctorch parallelises around it (see torch_sgemm in ops.h), which keeps results
 * independent of the thread count and keeps OpenBLAS's spinning workers from fighting ours. */
void torch_set_num_threads(int n);
/* Threads our kernels use (1 when built without OpenMP). */
int  torch_get_num_threads(void);
/* Puts OpenBLAS on one thread, once; every BLAS caller runs this first (cheap after the first call). */
void torch_blas_single_thread(void);
/* The OpenBLAS kernel family in use, e.g. "Haswell" (static string). */
const char *torch_blas_corename(void);

#endif /* CTORCH_PARALLEL_H */
