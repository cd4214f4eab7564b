/* parallel.h — how many threads ctorch's kernels (OpenMP) and OpenBLAS use.
 *
 * Ownership: no memory involved. The setting is process-wide, like torch.set_num_threads().
 * Results never depend on it: every reduction is split in a fixed way (by channel or by fixed
 * blocks merged in a fixed order), so a seed gives bit-identical numbers at any thread count.
 */
#ifndef CTORCH_PARALLEL_H
#define CTORCH_PARALLEL_H

/* Sets the threads used by our kernels and by OpenBLAS; n < 1 is clamped to 1. */
void torch_set_num_threads(int n);
/* Threads our kernels use (1 when built without OpenMP). */
int  torch_get_num_threads(void);
/* The OpenBLAS kernel family in use, e.g. "Haswell" (static string). */
const char *torch_blas_corename(void);

#endif /* CTORCH_PARALLEL_H */
