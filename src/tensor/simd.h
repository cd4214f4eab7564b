/* simd.h — private to the library: the GCC/Clang vector types its kernels compute with. Not API
 * and not installed: src/ctorch.h does not reach it (only what it reaches is installed), so no
 * public header may include it. Listed in CTORCH_INTERNAL_HEADERS (cmake/ctorchLayers.cmake):
 * the kernels of every layer may include it, not only those of src/tensor.
 *
 * Usage: one name, one meaning.
 *   - A value type (f32x8, ...) has the vector's natural alignment: for locals, struct members and
 *     arithmetic, what lives in registers.
 *   - A "_mem" type (f32x8_mem, ...) is for loads and stores through a cast pointer only,
 *     *(const f32x8_mem *)p: aligned to one element and may_alias, so it reads or writes 8 floats
 *     at any float address of any buffer, whatever that buffer's declared type.
 * So a pointer to a value type (f32x8 *) points at a value (a local, a member), and a pointer
 * into a tensor or a float buffer is cast to a _mem type. Add a _mem twin here when a kernel
 * needs one.
 *
 * Ownership: types only; nothing here allocates or holds memory.
 *
 * Portability: vector extensions compile on any x86-64 (two SSE registers per 32-byte vector on a
 * baseline build, one AVX register with -march=native), and arithmetic on them is lane by lane,
 * so the order of additions is the one the code writes. A function taking or returning a 32-byte
 * vector by value changes its ABI with -mavx: pass them by pointer or use macros.
 */
#ifndef CTORCH_TENSOR_SIMD_H
#define CTORCH_TENSOR_SIMD_H

#include <stdint.h>

/* ---- values: natural alignment, for registers --------------------------------------------------- */

typedef float f32x4 __attribute__((vector_size(16)));    /* 4 floats */
typedef float f32x8 __attribute__((vector_size(32)));    /* 8 floats */
typedef double f64x4 __attribute__((vector_size(32)));   /* 4 doubles */
typedef int32_t i32x8 __attribute__((vector_size(32)));  /* 8 int32: masks and bit patterns of f32x8 */
typedef uint8_t u8x8 __attribute__((vector_size(8)));    /* 8 bytes */
typedef uint8_t u8x32 __attribute__((vector_size(32)));  /* 32 bytes: an i32x8's bytes */

/* ---- anywhere in memory: for loads and stores through a cast pointer ----------------------------- */

/* Element alignment, because tensors and workspaces guarantee no more than that; may_alias,
 * because the memory is declared float (or uint8_t), not as a vector. */
typedef float f32x4_mem __attribute__((vector_size(16), aligned(4), may_alias));   /* 4 floats at any float address */
typedef float f32x8_mem __attribute__((vector_size(32), aligned(4), may_alias));   /* 8 floats at any float address */
typedef uint8_t u8x8_mem __attribute__((vector_size(8), aligned(1), may_alias));   /* 8 bytes at any address */

#endif /* CTORCH_TENSOR_SIMD_H */
