/* conv_kernels.h — private to src/nn: what the convolution algorithm files give conv.c. Not API:
 * no public header (ctorch.h, conv.h) includes it, and nothing outside src/nn may.
 *
 * conv.c checks the arguments, fills a conv_geom from the shapes, picks the algorithm from the
 * shapes alone (conv_geom's col_is_input / small_k / wino), sizes and allocates every buffer, shares
 * blocks of images among its threads and records the graph node. The files below only compute:
 *   conv_im2col.c    im2col / col2im, and one block's forward and one slot's backward through
 *                    the columns: torch_sgemm, or the small-K kernels when the reduction is short
 *   conv_direct.c    the small-K kernels: register-blocked direct loops for K = C*kH*kW <= 32
 *   conv_winograd.c  Winograd F(2x2, 3x3) for 3x3, stride-1, undilated convolutions
 * Each file keeps the derivation of its algorithm (and of its backward) next to the code.
 *
 * Ownership: every pointer argument is borrowed for the duration of the call. No function here
 * allocates, frees, or keeps a pointer after it returns. Outputs, workspaces ("ws") and the
 * conv_geom belong to the caller (conv.c), which sizes them as each declaration says; a
 * workspace is one thread's and is never used by two calls at once. Inputs are only read;
 * "scratch" arguments are overwritten.
 *
 * Determinism: every sum runs in an order fixed by the shapes, so a call gives the same bits
 * whichever thread makes it.
 */
#ifndef CTORCH_NN_CONV_KERNELS_H
#define CTORCH_NN_CONV_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* The small-K kernels read col in blocks of 16 positions: col's row pitch is P rounded up to it. */
#define SK_P 16

/* One convolution's shapes and the algorithm chosen for them (conv_geom_fill in conv.c). */
typedef struct conv_geom {
    int64_t N, C, H, W;        /* input (N, C, H, W); N = 1 for an unbatched input */
    int64_t O, KH, KW;         /* weight (O, C, KH, KW) */
    int64_t SH, SW, PH, PW, DH, DW;
    int64_t OH, OW;            /* output (N, O, OH, OW) */
    int64_t K;                 /* C * KH * KW: rows of col, the GEMM's inner dimension */
    int64_t P;                 /* OH * OW: columns of col per image */
    int64_t B;                 /* images per GEMM */
    bool    col_is_input;      /* 1x1 kernel, stride 1, no padding: col(x[n]) is x[n] itself */
    bool    small_k;           /* K <= CONV_SMALL_K (and not col_is_input): our register-blocked kernels */
    bool    wino;              /* 3x3, stride 1, no dilation, not small_k: Winograd F(2x2, 3x3) */
    int64_t ldc;               /* row pitch of col for the small-K kernels: P rounded up to SK_P */
} conv_geom;

/* Copy loops as short as a feature map's row run several times faster inline than as the
 * memcpy/memset calls compilers make of them: keep them loops where it matters. */
#if defined(__clang__)
#define CONV_INLINE_COPIES __attribute__((no_builtin("memcpy", "memset")))
#elif defined(__GNUC__)
#define CONV_INLINE_COPIES __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define CONV_INLINE_COPIES
#endif

/* ---- conv_im2col.c ---------------------------------------------------------------------------- */

/* Images n0 .. n0+nb-1 (not Winograd): y[n, o, p] = bias[o] + sum_r weight[o, r] * col(x[n])[r, p].
 * ws: conv_ws_floats (conv.c) floats, for a small-K geometry prepared by conv_small_k_col_init. */
void conv_im2col_forward_block(const conv_geom *g, int64_t n0, int64_t nb, const float *x /* (N, C, H, W) */,
                               const float *w /* (O, K) */, const float *bias /* (O) or NULL */,
                               float *y /* (N, O, P) */, float *ws /* conv_ws_floats */);

/* Blocks k0 .. k1-1 of the backward (not Winograd): dx for their images, and their share of
 * dweight written (not added) into dw; ws: conv_ws_floats floats. */
void conv_im2col_backward_slot(const conv_geom *g, int64_t k0, int64_t k1, const float *x /* (N, C, H, W) */,
                               const float *w /* (O, K) */, const float *dy /* (N, O, P) */,
                               float *dx /* (N, C, H, W), or NULL */, float *dw /* (O, K), or NULL */,
                               float *ws /* conv_ws_floats */);

/* ---- conv_direct.c ---------------------------------------------------------------------------- */

/* Zeroes what im2col never writes in a small-K col (the pad columns and the zero row K). */
void conv_small_k_col_init(const conv_geom *g, float *col /* (K + 1, ldc) */);

/* y[o, p] = bias[o] + sum_k w[o, k] * col[k, p] for one image. */
void conv_small_k_forward(int64_t O, int64_t K, int64_t P, int64_t ldc, const float *w /* (O, K) */,
                          const float *bias /* (O) or NULL */, const float *col /* (K, ldc) */,
                          float *y /* (O, P) */);

/* dw[o, k] += sum_p dy[o, p] * col[k, p] for one image. */
void conv_small_k_weight_grad(int64_t O, int64_t K, int64_t P, int64_t ldc, const float *dy /* (O, P) */,
                              const float *col /* (K + 1, ldc) */, float *dw /* (O, K) */);

/* ---- conv_winograd.c -------------------------------------------------------------------------- */

typedef struct conv_wino_geom {
    int64_t TH, TW;   /* tiles per image: ceil(OH / 2) x ceil(OW / 2) */
    int64_t TWB;      /* blocks of 8 tiles per tile row */
    int64_t Hp, Wp;   /* the padded plane: rows 0 .. 2TH+1, columns up to 16 TWB + 1 */
    int64_t NB;       /* images per block */
    int64_t T, Tp;    /* tiles per block, and the pitch of a transformed-tile row (T + 8, rounded to 8) */
} conv_wino_geom;

/* The tiling of a Winograd geometry (g->wino). */
conv_wino_geom conv_wino_geom_of(const conv_geom *g);

/* Floats of one thread's workspace for the block functions below. */
int64_t conv_wino_ws_floats(const conv_geom *g, const conv_wino_geom *w);

/* U[xi, o, c] = (G g G^T)[xi]: the transformed weights. */
void conv_wino_weights(const conv_geom *g, const float *wt /* (O, C, 3, 3) */, float *U /* (16, O, C) */);

/* dweight = G^T dU G, the adjoint of conv_wino_weights. */
void conv_wino_weights_grad(const conv_geom *g, const float *dU /* (16, O, C) */, float *dw /* (O, C, 3, 3) */);

/* Forward of images n0 .. n0+nb-1 into y. */
void conv_wino_forward_block(const conv_geom *g, const conv_wino_geom *w, int64_t n0, int64_t nb,
                             const float *x /* (N, C, H, W) */, const float *U /* (16, O, C) */,
                             const float *bias /* (O) or NULL */, float *y /* (N, O, OH, OW) */,
                             float *ws /* conv_wino_ws_floats */);

/* Backward of images n0 .. n0+nb-1: dx written for them, dU written (first) or added to. */
void conv_wino_backward_block(const conv_geom *g, const conv_wino_geom *w, int64_t n0, int64_t nb, bool first,
                              const float *x /* (N, C, H, W) */, const float *U /* (16, O, C) */,
                              const float *dy /* (N, O, OH, OW) */, float *dx /* (N, C, H, W) or NULL */,
                              float *dU /* (16, O, C) or NULL */, float *ws /* conv_wino_ws_floats */);

#endif /* CTORCH_NN_CONV_KERNELS_H */
