/* conv.c — nnf_conv2d through im2col + sgemm (or register-blocked kernels when the reduction is
 * short), its backward next to it, and the Conv2d module.
 *
 * Reference: https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html
 *
 * im2col lays the receptive fields of one image out as the columns of a matrix:
 *   col[(c, kh, kw), (oh, ow)] = x[c, oh*sH - pH + kh*dH, ow*sW - pW + kw*dW]   (0 in the padding)
 * so that the convolution is one matrix product per image:
 *   y[n] (C_out, H_out*W_out) = weight (C_out, C_in*kH*kW) @ col(x[n]) (C_in*kH*kW, H_out*W_out).
 * Paths, chosen from the shapes alone:
 *   - a short reduction (K = C_in*kH*kW <= 32, e.g. the first layer on grey or RGB images, where
 *     K = 9 or 27 leaves sgemm mostly packing): register-blocked kernels of our own for y and for
 *     dweight over the im2col columns.
 *   - 3x3 kernels, stride 1, no dilation (most other layers): Winograd F(2x2, 3x3), 16 sgemm
 *     products over transformed tiles with 2.25 times fewer multiplications (see its section).
 *   - otherwise sgemm, one image per product, written straight into y: OpenBLAS runs these shapes
 *     (e.g. 64 x 196 x 288) as fast as wider ones. When images are small (H_out*W_out below 128,
 *     e.g. 7x7 maps) several images share a product: their columns sit side by side,
 *     col (K, B*H_out*W_out), so that sgemm gets a matrix wide enough to run at speed. 1x1 kernels
 *     with stride 1 and no padding need no im2col (col(x[n]) is x[n]); stride 1 with an output as
 *     wide as the input gets a one-copy-per-row im2col.
 * Images (or blocks of them) are shared among the threads; every split depends only on the shapes,
 * never on the thread count, so results are bit-identical at any thread count. Each thread's
 * workspace serves the whole call; it is allocated per call (at most a few MB, which the storage
 * allocator's reuse makes cheap; profiles show no cost).
 */
#include "conv.h"

#include "init.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- geometry ---------------------------------------------------------------------------------- */

/* K at most this: the short-reduction kernels instead of sgemm. */
#define CONV_SMALL_K 32
/* Those kernels read col in blocks of 16 positions: col's row pitch is P rounded up to it. */
#define SK_P 16

typedef struct conv_geom {
    int64_t N, C, H, W;        /* input (N, C, H, W); N = 1 for an unbatched input */
    int64_t O, KH, KW;         /* weight (O, C, KH, KW) */
    int64_t SH, SW, PH, PW, DH, DW;
    int64_t OH, OW;            /* output (N, O, OH, OW) */
    int64_t K;                 /* C * KH * KW: rows of col, the GEMM's inner dimension */
    int64_t P;                 /* OH * OW: columns of col per image */
    int64_t B;                 /* images per GEMM */
    bool    direct;            /* 1x1 kernel, stride 1, no padding: col(x[n]) is x[n] itself */
    bool    small_k;           /* K <= CONV_SMALL_K (and not direct): our register-blocked kernels */
    bool    wino;              /* 3x3, stride 1, no dilation, not small_k: Winograd F(2x2, 3x3) */
    int64_t ldc;               /* row pitch of col for the small-K kernels: P rounded up to SK_P */
} conv_geom;

/* Images per GEMM: enough for about 1024 columns when images are small, at most 16M floats of col. */
static int64_t conv_block(const conv_geom *g) {
    if (g->direct || g->small_k || g->P <= 0 || g->P >= 128 || g->N <= 1) return 1; /* P <= 0: a refused shape */
    int64_t b = (1024 + g->P - 1) / g->P;
    int64_t cap = ((int64_t)1 << 24) / (g->K * g->P > 0 ? g->K * g->P : 1);
    if (b > cap) b = cap;
    if (b > g->N) b = g->N;
    return b < 1 ? 1 : b;
}

/* Images per Winograd block: about 384 tiles of 2x2 outputs (products of 16 x O x C x 384 run at
 * speed; larger blocks only grow the workspace). */
static int64_t wino_block(const conv_geom *g) {
    int64_t per = ((g->OH + 1) / 2) * ((g->OW + 1) / 2), b = (384 + per - 1) / per;
    if (b > g->N) b = g->N;
    return b < 1 ? 1 : b;
}

/* Fills g from the shapes of x (3-D or 4-D) and w and the three pairs; callers have checked
 * them (the forward) or saved them from a checked forward (the backward). */
static void conv_geom_fill(conv_geom *g, const tensor *x, const tensor *w, const int64_t st[2], const int64_t pd[2],
                           const int64_t dl[2]) {
    bool batched = x->ndim == 4;
    g->N = batched ? x->shape[0] : 1;
    g->C = x->shape[batched ? 1 : 0];
    g->H = x->shape[batched ? 2 : 1];
    g->W = x->shape[batched ? 3 : 2];
    g->O = w->shape[0], g->KH = w->shape[2], g->KW = w->shape[3];
    g->SH = st[0], g->SW = st[1], g->PH = pd[0], g->PW = pd[1], g->DH = dl[0], g->DW = dl[1];
    g->OH = (g->H + 2 * g->PH - g->DH * (g->KH - 1) - 1) / g->SH + 1; /* < 1 when the kernel does not fit */
    g->OW = (g->W + 2 * g->PW - g->DW * (g->KW - 1) - 1) / g->SW + 1;
    g->K = g->C * g->KH * g->KW;
    g->P = g->OH * g->OW;
    g->direct = g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PH == 0 && g->PW == 0;
    g->small_k = !g->direct && g->K <= CONV_SMALL_K;
    g->ldc = g->P > 0 ? (g->P + SK_P - 1) / SK_P * SK_P : 0;
    g->wino = g->KH == 3 && g->KW == 3 && g->SH == 1 && g->SW == 1 && g->DH == 1 && g->DW == 1 && !g->small_k &&
              g->OH > 0 && g->OW > 0;
    g->B = g->wino ? wino_block(g) : conv_block(g);
}

static void fill_pair(int64_t out[2], const int64_t *in, int64_t dflt) {
    out[0] = in ? in[0] : dflt;
    out[1] = in ? in[1] : dflt;
}

/* (in + 2 pad - dil (k - 1) - 1) / stride + 1: the output size along one dim; < 1 when the
 * dilated kernel is larger than the padded input, -2 when pad or dil is so large that a term
 * overflows (in, k >= 1 and stride >= 1 come from checked tensors and options). */
static int64_t conv_out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil) {
    int64_t padded, extent;
    if (__builtin_mul_overflow(pad, 2, &padded) || __builtin_add_overflow(padded, in, &padded) ||
        __builtin_mul_overflow(dil, k - 1, &extent))
        return -2;
    return extent >= padded ? 0 : (padded - extent - 1) / stride + 1;
}

/* Checks everything nnf_conv2d needs and fills g. fname is "Conv2d" for the module, "nnf_conv2d"
 * for the function. */
static torch_status conv_check(const char *fname, const tensor *x, const tensor *w, const tensor *b,
                               const int64_t stride[2], const int64_t padding[2], const int64_t dilation[2],
                               conv_geom *g) {
    char s1[96], s2[96];
    torch_status status;
    if ((status = torch_check_float32(fname, "input", x)) != TORCH_OK ||
        (status = torch_check_float32(fname, "weight", w)) != TORCH_OK)
        return status;
    if (b && (status = torch_check_float32(fname, "bias", b)) != TORCH_OK) return status; /* bias is optional */
    if (x->ndim != 3 && x->ndim != 4)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: %s",
                           fname, torch_shape_str(x->ndim, x->shape, s1, sizeof s1));
    if (w->ndim != 4)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: expected 4D weight (out_channels, in_channels, kH, kW), but got weight of size: %s",
                           fname, torch_shape_str(w->ndim, w->shape, s1, sizeof s1));
    int64_t st[2], pd[2], dl[2];
    fill_pair(st, stride, 1);
    fill_pair(pd, padding, 0);
    fill_pair(dl, dilation, 1);
    if (st[0] <= 0 || st[1] <= 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: non-positive stride is not supported (got [%lld, %lld])",
                           fname, (long long)st[0], (long long)st[1]);
    if (pd[0] < 0 || pd[1] < 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: negative padding is not supported (got [%lld, %lld])",
                           fname, (long long)pd[0], (long long)pd[1]);
    if (dl[0] <= 0 || dl[1] <= 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: dilation should be greater than zero, but got [%lld, %lld]",
                           fname, (long long)dl[0], (long long)dl[1]);
    int64_t C = x->shape[x->ndim - 3];
    if (C != w->shape[1])
        return torch_error(TORCH_ERR_SHAPE, "%s: expected input with %lld channels (got %lld)", fname,
                           (long long)w->shape[1], (long long)C);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: Given weight of size %s, expected bias to be 1-dimensional with %lld elements, but "
                           "got bias of size %s instead",
                           fname, torch_shape_str(w->ndim, w->shape, s1, sizeof s1), (long long)w->shape[0],
                           torch_shape_str(b->ndim, b->shape, s2, sizeof s2));
    /* Output sizes in checked arithmetic: padding and dilation are the user's numbers, and a
     * wrapped size would pass every check below. */
    const int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1], KH = w->shape[2], KW = w->shape[3];
    if (KH < 1 || KW < 1)
        return torch_error(TORCH_ERR_SHAPE, "%s: expected a kernel of at least 1 x 1, but got weight of size %s",
                           fname, torch_shape_str(w->ndim, w->shape, s1, sizeof s1));
    int64_t OH = conv_out_size(H, KH, pd[0], st[0], dl[0]), OW = conv_out_size(W, KW, pd[1], st[1], dl[1]);
    if (OH == -2 || OW == -2)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: padding [%lld, %lld] and dilation [%lld, %lld] are too large for a %lld x %lld kernel",
                           fname, (long long)pd[0], (long long)pd[1], (long long)dl[0], (long long)dl[1],
                           (long long)KH, (long long)KW);
    if (OH < 1 || OW < 1)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: Calculated padded input size per channel: (%lld x %lld). Kernel size: (%llu x %llu). "
                           "Kernel size can't be greater than actual input size",
                           fname, (long long)(H + 2 * pd[0]), (long long)(W + 2 * pd[1]),
                           (unsigned long long)(dl[0] * (KH - 1)) + 1, (unsigned long long)(dl[1] * (KW - 1)) + 1);
    const int64_t oshape[4] = {x->ndim == 4 ? x->shape[0] : 1, w->shape[0], OH, OW};
    if ((status = torch_check_shape(fname, 4, oshape)) != TORCH_OK) return status;
    if (torch_shape_numel(3, w->shape + 1) > INT_MAX || w->shape[0] > INT_MAX || OH * OW > INT_MAX / 64)
        return torch_error(TORCH_ERR_SHAPE, "%s: input or weight too large for a 32-bit BLAS", fname);
    conv_geom_fill(g, x, w, st, pd, dl);
    return TORCH_OK;
}

/* ---- im2col / col2im ---------------------------------------------------------------------------- */

/* The output columns ow whose input column ow*s - p + k*d lies in [0, W): [*lo, *hi). */
static void valid_range(int64_t OW, int64_t W, int64_t s, int64_t p, int64_t kd, int64_t *lo, int64_t *hi) {
    int64_t t = p - kd; /* input column = ow*s - t */
    int64_t l = t <= 0 ? 0 : (t - 1) / s + 1; /* ceil(t / s), without t + s overflowing */
    int64_t h = W - 1 + t < 0 ? 0 : (W - 1 + t) / s + 1;
    if (h > OW) h = OW;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Copy loops as short as a feature map's row run several times faster inline than as the
 * memcpy/memset calls compilers make of them: keep them loops where it matters. */
#if defined(__clang__)
#define CONV_INLINE_COPIES __attribute__((no_builtin("memcpy", "memset")))
#elif defined(__GNUC__)
#define CONV_INLINE_COPIES __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define CONV_INLINE_COPIES
#endif

/* col[r, p] (row r = (c, kh, kw), column p = (oh, ow), row pitch ld) from one image. */
CONV_INLINE_COPIES static void im2col_generic(const conv_geom *g, const float *x /* (C, H, W) */,
                                              float *col /* (K, ld) */, int64_t ld) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (g->C > 1 && g->K * g->P > 65536)
#endif
    for (int64_t c = 0; c < g->C; c++) {
        for (int64_t kh = 0; kh < g->KH; kh++) {
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                int64_t lo, hi;
                valid_range(g->OW, g->W, g->SW, g->PW, kw * g->DW, &lo, &hi);
                const int64_t off = kw * g->DW - g->PW, OW = g->OW, SW = g->SW;
                for (int64_t oh = 0; oh < g->OH; oh++) {
                    float *restrict out = row + oh * OW;
                    int64_t ih = oh * g->SH - g->PH + kh * g->DH;
                    if (ih < 0 || ih >= g->H) {
                        for (int64_t ow = 0; ow < OW; ow++) out[ow] = 0.0f;
                        continue;
                    }
                    const float *restrict src = x + (c * g->H + ih) * g->W; /* input column ow*SW + off */
                    for (int64_t ow = 0; ow < lo; ow++) out[ow] = 0.0f;
                    if (SW == 1)
                        for (int64_t ow = lo; ow < hi; ow++) out[ow] = src[ow + off];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) out[ow] = src[ow * SW + off];
                    for (int64_t ow = hi; ow < OW; ow++) out[ow] = 0.0f;
                }
            }
        }
    }
}

/* The adjoint of im2col: dx[c, ih, iw] += dcol[(c, kh, kw), (oh, ow)] over every tap that read
 * x[c, ih, iw]. Each channel is one thread's, summed in a fixed order. */
static void col2im_generic(const conv_geom *g, const float *dcol /* (K, ld) */, int64_t ld,
                           float *dx /* (C, H, W) */) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (g->C > 1 && g->K * g->P > 65536)
#endif
    for (int64_t c = 0; c < g->C; c++) {
        for (int64_t kh = 0; kh < g->KH; kh++) {
            for (int64_t kw = 0; kw < g->KW; kw++) {
                const float *row = dcol + ((c * g->KH + kh) * g->KW + kw) * ld;
                int64_t lo, hi;
                valid_range(g->OW, g->W, g->SW, g->PW, kw * g->DW, &lo, &hi);
                for (int64_t oh = 0; oh < g->OH; oh++) {
                    int64_t ih = oh * g->SH - g->PH + kh * g->DH;
                    if (ih < 0 || ih >= g->H) continue;
                    const float *restrict in = row + oh * g->OW;
                    float *restrict dst = dx + (c * g->H + ih) * g->W;
                    const int64_t off = kw * g->DW - g->PW, SW = g->SW;
                    if (SW == 1)
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow + off] += in[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow * SW + off] += in[ow];
                }
            }
        }
    }
}

/* ---- im2col / col2im when the output is as wide as the input (stride 1, OW == W) ----------------
 * Then output (oh, ow) of tap (kh, kw) reads input (oh + dy, ow + dx), dy = kh*dH - pH,
 * dx = kw*dW - pW, and since OW == W the flat positions differ by one constant:
 *   col[(c, kh, kw), i] = x[c][i + dy*W + dx]          (i = oh*OW + ow)
 * except where ow + dx falls outside [0, W) (|dx| columns at one edge: 0) and the rows where
 * oh + dy falls outside [0, H) (0). So a col row is one long copy plus a few edge zeros, instead
 * of one short copy per output row (whose loop overhead exceeded the copying at 14-wide maps). */

typedef struct conv_shift {
    int64_t shift;      /* dy*W + dx */
    int64_t r0, r1;     /* output rows [r0, r1) read inside the input; the rest are 0 */
    int64_t c0, c1;     /* output columns [c0, c1) read inside the input; the rest are 0 */
    int64_t i0, i1;     /* flat range copied: rows [r0, r1) clipped so that i + shift stays in [0, H*W) */
} conv_shift;

static bool conv_is_shift(const conv_geom *g) { return g->SH == 1 && g->SW == 1 && g->OW == g->W; }

static conv_shift conv_shift_of(const conv_geom *g, int64_t kh, int64_t kw) {
    conv_shift s = {0};
    int64_t dy = kh * g->DH - g->PH, dx = kw * g->DW - g->PW; /* kh*DH fits: the extent was checked */
    if (dy >= g->H || -dy >= g->OH || dx >= g->W || -dx >= g->OW)
        return s; /* the tap never reads the input: every row zero (and dy*W could overflow) */
    s.shift = dy * g->W + dx;
    s.r0 = dy < 0 ? -dy : 0;
    s.r1 = g->H - dy < g->OH ? g->H - dy : g->OH;
    s.c0 = dx < 0 ? -dx : 0;
    s.c1 = g->W - dx < g->OW ? g->W - dx : g->OW;
    if (s.r1 < s.r0 || s.c1 <= s.c0) s.r1 = s.r0; /* the tap never reads the input */
    s.i0 = s.r0 * g->OW > -s.shift ? s.r0 * g->OW : -s.shift;
    s.i1 = s.r1 * g->OW < g->H * g->W - s.shift ? s.r1 * g->OW : g->H * g->W - s.shift;
    if (s.i1 < s.i0) s.i1 = s.i0;
    return s;
}

/* Zeroes the edge columns [0, c0) and [c1, OW) of rows [r0, r1): column by column (a tap has at
 * most a few), which compiles to plain strided stores rather than vector loops too short to pay. */
static void conv_zero_edges(const conv_shift *s, int64_t OW, float *row /* (OH, OW) */) {
    for (int64_t ow = 0; ow < s->c0; ow++)
        for (int64_t oh = s->r0; oh < s->r1; oh++) row[oh * OW + ow] = 0.0f;
    for (int64_t ow = s->c1; ow < OW; ow++)
        for (int64_t oh = s->r0; oh < s->r1; oh++) row[oh * OW + ow] = 0.0f;
}

/* im2col for conv_is_shift geometries (see above). */
CONV_INLINE_COPIES static void im2col_shift(const conv_geom *g, const float *x /* (C, H, W) */,
                                            float *col /* (K, ld) */, int64_t ld) {
    const int64_t OW = g->OW, P = g->P;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (g->C > 1 && g->K * g->P > 65536)
#endif
    for (int64_t c = 0; c < g->C; c++) {
        const float *plane = x + c * g->H * g->W;
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *restrict row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                const conv_shift s = conv_shift_of(g, kh, kw);
                for (int64_t i = 0; i < s.r0 * OW; i++) row[i] = 0.0f;
                memcpy(row + s.i0, plane + s.i0 + s.shift, (size_t)(s.i1 - s.i0) * sizeof(float));
                for (int64_t i = s.r1 * OW; i < P; i++) row[i] = 0.0f;
                conv_zero_edges(&s, OW, row);
            }
    }
}

/* col2im for conv_is_shift geometries: dx[c][i + shift] += dcol[(c, kh, kw), i] over the copied
 * range, after zeroing the entries of dcol that belong to no input (they would land in the
 * neighbouring row). Same order of summation as col2im. dcol is scratch: it is modified. */
static void col2im_shift(const conv_geom *g, float *dcol /* (K, ld) */, int64_t ld, float *dx /* (C, H, W) */) {
    const int64_t OW = g->OW;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (g->C > 1 && g->K * g->P > 65536)
#endif
    for (int64_t c = 0; c < g->C; c++) {
        float *plane = dx + c * g->H * g->W;
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *restrict row = dcol + ((c * g->KH + kh) * g->KW + kw) * ld;
                const conv_shift s = conv_shift_of(g, kh, kw);
                conv_zero_edges(&s, OW, row);
                for (int64_t i = s.i0; i < s.i1; i++) plane[i + s.shift] += row[i];
            }
    }
}

static void im2col(const conv_geom *g, const float *x /* (C, H, W) */, float *col /* (K, ld) */, int64_t ld) {
    if (conv_is_shift(g)) im2col_shift(g, x, col, ld);
    else im2col_generic(g, x, col, ld);
}

/* dcol is scratch (the shift variant modifies it). */
static void col2im(const conv_geom *g, float *dcol /* (K, ld) */, int64_t ld, float *dx /* (C, H, W) */) {
    if (conv_is_shift(g)) col2im_shift(g, dcol, ld, dx);
    else col2im_generic(g, dcol, ld, dx);
}

/* ---- threads ----------------------------------------------------------------------------------- */

/* Images are split into blocks fixed by the shapes alone and our OpenMP threads share the blocks;
 * each block's products go through torch_sgemm (one OpenBLAS thread): the same numbers at any
 * thread count. */
static int threads_for(int64_t tasks) {
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return tasks < n ? (int)(tasks > 0 ? tasks : 1) : n;
#else
    (void)tasks;
    return 1;
#endif
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ---- short reductions: register-blocked kernels --------------------------------------------------
 * With K = 9 (one input channel, 3x3) an sgemm spends its time packing and runs at a third of its
 * speed. These kernels keep a block of outputs in vector registers and stream the im2col columns
 * once per block. GCC/clang vector extensions: portable (SSE without AVX), aligned(4) for unaligned
 * loads and stores. Each output is summed over k in increasing order, whatever the thread count. */

typedef float f32x8 __attribute__((vector_size(32), aligned(4), may_alias));

#define SK_O 4 /* output channels per block of the forward */

/* y[o, p] = bias[o] + sum_k w[o, k] * col[k, p] for one image, in blocks of 4 channels x 16
 * positions (8 accumulators). col has row pitch ldc >= P rounded up to 16; the last block's
 * surplus positions are computed from whatever col holds there and not stored. */
static void small_k_forward(int64_t O, int64_t K, int64_t P, int64_t ldc, const float *w /* (O, K) */,
                            const float *bias /* (O) or NULL */, const float *col /* (K, ldc) */,
                            float *y /* (O, P) */) {
    for (int64_t p0 = 0; p0 < P; p0 += SK_P) {
        for (int64_t o0 = 0; o0 < O; o0 += SK_O) {
            const int64_t no = O - o0 < SK_O ? O - o0 : SK_O;
            const float *wr[SK_O];
            f32x8 acc[SK_O][2];
            for (int j = 0; j < SK_O; j++) {
                int64_t o = o0 + (j < no ? j : 0); /* a short block recomputes its first channel */
                float b = bias ? bias[o] : 0.0f;
                wr[j] = w + o * K;
                acc[j][0] = acc[j][1] = (f32x8){b, b, b, b, b, b, b, b};
            }
            for (int64_t k = 0; k < K; k++) {
                f32x8 c0 = *(const f32x8 *)(col + k * ldc + p0), c1 = *(const f32x8 *)(col + k * ldc + p0 + 8);
                for (int j = 0; j < SK_O; j++) {
                    float wk = wr[j][k];
                    acc[j][0] += wk * c0;
                    acc[j][1] += wk * c1;
                }
            }
            /* Constant trip counts with a test inside, so that acc[j] stays in registers. */
            for (int j = 0; j < SK_O; j++) {
                if (j >= no) continue;
                float *out = y + (o0 + j) * P + p0;
                if (p0 + SK_P <= P) {
                    *(f32x8 *)out = acc[j][0];
                    *(f32x8 *)(out + 8) = acc[j][1];
                } else {
                    float t[SK_P];
                    *(f32x8 *)t = acc[j][0];
                    *(f32x8 *)(t + 8) = acc[j][1];
                    memcpy(out, t, (size_t)(P - p0) * sizeof(float));
                }
            }
        }
    }
}

/* Sum of the 8 lanes, in a fixed order (by pointer: a vector argument's ABI depends on -mavx). */
static float hsum8(const f32x8 *v) {
    return (((*v)[0] + (*v)[4]) + ((*v)[1] + (*v)[5])) + (((*v)[2] + (*v)[6]) + ((*v)[3] + (*v)[7]));
}

/* dw[o, k] += sum_p dy[o, p] * col[k, p] for one image, in blocks of 4 channels x 2 taps
 * (8 accumulators of 8 positions), the last P % 8 positions in scalar. col has K + 1 rows, the
 * last one zero, so that an odd K needs no special block. */
static void small_k_weight_grad(int64_t O, int64_t K, int64_t P, int64_t ldc, const float *dy /* (O, P) */,
                                const float *col /* (K + 1, ldc) */, float *dw /* (O, K) */) {
    const int64_t P8 = P / 8 * 8;
    for (int64_t o0 = 0; o0 < O; o0 += SK_O) {
        const int64_t no = O - o0 < SK_O ? O - o0 : SK_O;
        const float *dr[SK_O];
        for (int j = 0; j < SK_O; j++) dr[j] = dy + (o0 + (j < no ? j : 0)) * P;
        for (int64_t k0 = 0; k0 < K; k0 += 2) {
            const float *c0 = col + k0 * ldc, *c1 = c0 + ldc; /* row K is the zero row */
            f32x8 acc[SK_O][2] = {{{0}}};
            for (int64_t p = 0; p < P8; p += 8) {
                f32x8 a = *(const f32x8 *)(c0 + p), b = *(const f32x8 *)(c1 + p);
                for (int j = 0; j < SK_O; j++) {
                    f32x8 d = *(const f32x8 *)(dr[j] + p);
                    acc[j][0] += d * a;
                    acc[j][1] += d * b;
                }
            }
            for (int j = 0; j < SK_O; j++) { /* constant trip count: acc stays in registers */
                if (j >= no) continue;
                float s0 = hsum8(&acc[j][0]), s1 = hsum8(&acc[j][1]);
                for (int64_t p = P8; p < P; p++) {
                    s0 += dr[j][p] * c0[p];
                    s1 += dr[j][p] * c1[p];
                }
                dw[(o0 + j) * K + k0] += s0;
                if (k0 + 1 < K) dw[(o0 + j) * K + k0 + 1] += s1;
            }
        }
    }
}

/* ---- Winograd F(2x2, 3x3) --------------------------------------------------------------------------
 * For 3x3 kernels with stride 1 and no dilation (most CNN layers), each 2x2 block of outputs comes
 * from the 4x4 input tile d at the same place (Lavin & Gray, "Fast Algorithms for Convolutional
 * Neural Networks", 2016):
 *   Y = A^T [ (G g G^T) (.) (B^T d B) ] A,   summed over input channels, (.) element-wise,
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * With U = G g G^T per (o, c) and V = B^T d B per (c, tile), each of the 16 entries xi of the 4x4
 * transformed tile is a matrix product over the channels,
 *   M_xi (O, T) = U_xi (O, C) @ V_xi (C, T)      (T tiles),
 * 16*O*C*T multiplications where im2col needs 36*O*C*T: 2.25 times fewer, through the same sgemm.
 * The backward is the adjoint of each linear step:
 *   dM = A dY A^T per tile,  dU_xi = sum over tiles dM_xi V_xi^T,  dV_xi = U_xi^T dM_xi,
 *   dweight = G^T dU G,      dx = sum over the (overlapping) tiles of B dV B^T.
 * Tiles are processed 8 at a time along a row of tiles (one vector lane each); a tile row reads
 * rows 2th .. 2th+3 of a zero-padded copy of the plane, whose even and odd columns are taps 0/2
 * and 1/3. Lanes past the end of a tile row compute junk that is never stored where it counts:
 * transformed tiles are written with a pitch Tp >= T + 8 and overwritten by the next tile row;
 * outputs and input gradients are stored for the valid lanes only. Images go in blocks fixed by
 * the shapes (wino_block), so results do not depend on the thread count. */

typedef int32_t i32x8 __attribute__((vector_size(32), aligned(4), may_alias));

typedef struct wino_geom {
    int64_t TH, TW;   /* tiles per image: ceil(OH / 2) x ceil(OW / 2) */
    int64_t TWB;      /* blocks of 8 tiles per tile row */
    int64_t Hp, Wp;   /* the padded plane: rows 0 .. 2TH+1, columns up to 16 TWB + 1 */
    int64_t NB;       /* images per block */
    int64_t T, Tp;    /* tiles per block, and the pitch of a transformed-tile row (T + 8, rounded to 8) */
} wino_geom;

static wino_geom wino_geom_of(const conv_geom *g) {
    wino_geom w;
    w.TH = (g->OH + 1) / 2, w.TW = (g->OW + 1) / 2;
    w.TWB = (w.TW + 7) / 8;
    w.Hp = 2 * w.TH + 2, w.Wp = 16 * w.TWB + 2;
    w.NB = g->B;
    w.T = w.NB * w.TH * w.TW;
    w.Tp = (w.T + 15) / 8 * 8;
    return w;
}

/* Floats of one thread's workspace: padded plane, V (16, C, Tp), M or dM (16, O, Tp). */
static int64_t wino_ws_floats(const conv_geom *g, const wino_geom *w) {
    return w->Hp * w->Wp + 16 * (g->C + g->O) * w->Tp;
}

/* Even and odd elements of p[0 .. 16): taps 0 and 1 of 8 consecutive tiles (2 columns apart). */
static inline void wino_split(const float *p, f32x8 *even, f32x8 *odd) {
    f32x8 a = *(const f32x8 *)p, b = *(const f32x8 *)(p + 8);
    *even = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
    *odd = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
}

/* out[0 .. 16) = even[0], odd[0], even[1], ...: the inverse of wino_split. */
static inline void wino_merge(const f32x8 *even, const f32x8 *odd, float *out) {
    *(f32x8 *)out = __builtin_shufflevector(*even, *odd, 0, 8, 1, 9, 2, 10, 3, 11);
    *(f32x8 *)(out + 8) = __builtin_shufflevector(*even, *odd, 4, 12, 5, 13, 6, 14, 7, 15);
}

/* Copies a plane into the padded plane's interior: input (ih, iw) at (ih + PH, iw + PW). The
 * border stays as it is (zero: see wino_input_transform). */
CONV_INLINE_COPIES static void wino_pad_plane(const conv_geom *g, const wino_geom *w, const float *x /* (H, W) */,
                                              float *xp /* (Hp, Wp) */) {
    for (int64_t ih = 0; ih < g->H; ih++) {
        float *restrict dst = xp + (ih + g->PH) * w->Wp + g->PW;
        const float *restrict src = x + ih * g->W;
        for (int64_t iw = 0; iw < g->W; iw++) dst[iw] = src[iw];
    }
}

/* U[xi, o, c] = (G g G^T)[xi] for every (o, c). */
static void wino_weights(const conv_geom *g, const float *wt /* (O, C, 3, 3) */, float *U /* (16, O, C) */) {
    const int64_t OC = g->O * g->C;
    for (int64_t oc = 0; oc < OC; oc++) {
        const float *k = wt + oc * 9;
        float t[4][3]; /* G g: rows of G times the kernel's rows */
        for (int j = 0; j < 3; j++) {
            t[0][j] = k[j];
            t[1][j] = 0.5f * (k[j] + k[3 + j] + k[6 + j]);
            t[2][j] = 0.5f * (k[j] - k[3 + j] + k[6 + j]);
            t[3][j] = k[6 + j];
        }
        for (int i = 0; i < 4; i++) { /* (G g) G^T */
            U[(i * 4 + 0) * OC + oc] = t[i][0];
            U[(i * 4 + 1) * OC + oc] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
            U[(i * 4 + 2) * OC + oc] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
            U[(i * 4 + 3) * OC + oc] = t[i][2];
        }
    }
}

/* dweight[o, c] = G^T dU[o, c] G, the adjoint of wino_weights. */
static void wino_weights_grad(const conv_geom *g, const float *dU /* (16, O, C) */, float *dw /* (O, C, 3, 3) */) {
    const int64_t OC = g->O * g->C;
    for (int64_t oc = 0; oc < OC; oc++) {
        float u[4][4], t[4][3];
        for (int xi = 0; xi < 16; xi++) u[xi / 4][xi % 4] = dU[xi * OC + oc];
        for (int i = 0; i < 4; i++) { /* dU G */
            t[i][0] = u[i][0] + 0.5f * (u[i][1] + u[i][2]);
            t[i][1] = 0.5f * (u[i][1] - u[i][2]);
            t[i][2] = 0.5f * (u[i][1] + u[i][2]) + u[i][3];
        }
        float *k = dw + oc * 9;
        for (int j = 0; j < 3; j++) { /* G^T (dU G) */
            k[j] = t[0][j] + 0.5f * (t[1][j] + t[2][j]);
            k[3 + j] = 0.5f * (t[1][j] - t[2][j]);
            k[6 + j] = 0.5f * (t[1][j] + t[2][j]) + t[3][j];
        }
    }
}

/* V[xi, c, t] = (B^T d B)[xi] for the tiles of images n0 .. n0+nb-1 (t = (b*TH + th)*TW + tw). */
static void wino_input_transform(const conv_geom *g, const wino_geom *w, int64_t n0, int64_t nb,
                                 const float *x /* (N, C, H, W) */, float *xp /* (Hp, Wp) */,
                                 float *V /* (16, C, Tp) */) {
    const int64_t CTp = g->C * w->Tp;
    memset(xp, 0, (size_t)(w->Hp * w->Wp) * sizeof *xp); /* every plane then rewrites the interior only */
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t b = 0; b < nb; b++) {
            wino_pad_plane(g, w, x + ((n0 + b) * g->C + c) * g->H * g->W, xp);
            for (int64_t th = 0; th < w->TH; th++)
                for (int64_t tb = 0; tb < w->TWB; tb++) {
                    f32x8 d[4][4], t[4][4];
                    for (int r = 0; r < 4; r++) {
                        const float *row = xp + (2 * th + r) * w->Wp + 16 * tb;
                        wino_split(row, &d[r][0], &d[r][1]);
                        wino_split(row + 2, &d[r][2], &d[r][3]);
                    }
                    for (int j = 0; j < 4; j++) { /* B^T d */
                        t[0][j] = d[0][j] - d[2][j];
                        t[1][j] = d[1][j] + d[2][j];
                        t[2][j] = d[2][j] - d[1][j];
                        t[3][j] = d[1][j] - d[3][j];
                    }
                    float *v = V + c * w->Tp + (b * w->TH + th) * w->TW + 8 * tb;
                    for (int i = 0; i < 4; i++) { /* (B^T d) B */
                        *(f32x8 *)(v + (i * 4 + 0) * CTp) = t[i][0] - t[i][2];
                        *(f32x8 *)(v + (i * 4 + 1) * CTp) = t[i][1] + t[i][2];
                        *(f32x8 *)(v + (i * 4 + 2) * CTp) = t[i][2] - t[i][1];
                        *(f32x8 *)(v + (i * 4 + 3) * CTp) = t[i][1] - t[i][3];
                    }
                }
        }
}

/* y[n, o] = bias[o] + A^T M A tile by tile, for images n0 .. n0+nb-1; only outputs inside
 * (OH, OW) are stored. */
CONV_INLINE_COPIES static void wino_output_transform(const conv_geom *g, const wino_geom *w, int64_t n0, int64_t nb,
                                                     const float *M /* (16, O, Tp) */,
                                                     const float *bias /* (O) or NULL */,
                                                     float *y /* (N, O, OH, OW) */) {
    const int64_t OTp = g->O * w->Tp;
    const float *yend = y + (n0 + nb) * g->O * g->P;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t o = 0; o < g->O; o++) {
            float *plane = y + ((n0 + b) * g->O + o) * g->P;
            const float bo = bias ? bias[o] : 0.0f;
            for (int64_t th = 0; th < w->TH; th++)
                for (int64_t tb = 0; tb < w->TWB; tb++) {
                    const float *m = M + o * w->Tp + (b * w->TH + th) * w->TW + 8 * tb;
                    f32x8 s[2][4], out[2][2];
                    for (int j = 0; j < 4; j++) { /* A^T M */
                        f32x8 m0 = *(const f32x8 *)(m + (0 + j) * OTp), m1 = *(const f32x8 *)(m + (4 + j) * OTp);
                        f32x8 m2 = *(const f32x8 *)(m + (8 + j) * OTp), m3 = *(const f32x8 *)(m + (12 + j) * OTp);
                        s[0][j] = m0 + m1 + m2;
                        s[1][j] = m1 - m2 - m3;
                    }
                    for (int i = 0; i < 2; i++) { /* (A^T M) A */
                        out[i][0] = s[i][0] + s[i][1] + s[i][2] + bo;
                        out[i][1] = s[i][1] - s[i][2] - s[i][3] + bo;
                    }
                    const int64_t c0 = 16 * tb, nc = g->OW - c0 < 16 ? g->OW - c0 : 16;
                    for (int i = 0; i < 2 && 2 * th + i < g->OH; i++) {
                        float *dst = plane + (2 * th + i) * g->OW + c0;
                        /* A short row may spill junk past its end when what follows in y is
                         * written later by this call (one block of tiles per row, inside the
                         * block's output): cheaper than a partial store. */
                        if (nc == 16 || (w->TWB == 1 && dst + 16 <= yend)) {
                            wino_merge(&out[i][0], &out[i][1], dst);
                        } else {
                            float buf[16];
                            wino_merge(&out[i][0], &out[i][1], buf);
                            for (int64_t k = 0; k < nc; k++) dst[k] = buf[k];
                        }
                    }
                }
        }
}

/* dM[xi, o, t] = (A dY A^T)[xi] per tile, for images n0 .. n0+nb-1; outputs outside (OH, OW)
 * have no gradient (0). */
CONV_INLINE_COPIES static void wino_grad_transform(const conv_geom *g, const wino_geom *w, int64_t n0, int64_t nb,
                                                   const float *dy /* (N, O, OH, OW) */,
                                                   float *dM /* (16, O, Tp) */) {
    const int64_t OTp = g->O * w->Tp;
    const float *dyend = dy + g->N * g->O * g->P;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t o = 0; o < g->O; o++) {
            const float *plane = dy + ((n0 + b) * g->O + o) * g->P;
            for (int64_t th = 0; th < w->TH; th++)
                for (int64_t tb = 0; tb < w->TWB; tb++) {
                    const int64_t c0 = 16 * tb, nc = g->OW - c0 < 16 ? g->OW - c0 : 16;
                    i32x8 keep_e, keep_o; /* the row's columns c0 + 2l and c0 + 2l + 1 exist */
                    for (int l = 0; l < 8; l++) keep_e[l] = 2 * l < nc ? -1 : 0, keep_o[l] = 2 * l + 1 < nc ? -1 : 0;
                    f32x8 gr[2][2], q[4][2];
                    for (int i = 0; i < 2; i++) {
                        const float *src = plane + (2 * th + i) * g->OW + c0;
                        if (2 * th + i >= g->OH) {
                            gr[i][0] = gr[i][1] = (f32x8){0};
                        } else if (src + 16 <= dyend) { /* reading past the row is harmless: masked */
                            wino_split(src, &gr[i][0], &gr[i][1]);
                            gr[i][0] = (f32x8)((i32x8)gr[i][0] & keep_e);
                            gr[i][1] = (f32x8)((i32x8)gr[i][1] & keep_o);
                        } else { /* the last row of dy: no reading past its end */
                            float buf[16] = {0};
                            for (int64_t k = 0; k < nc; k++) buf[k] = src[k];
                            wino_split(buf, &gr[i][0], &gr[i][1]);
                        }
                    }
                    for (int j = 0; j < 2; j++) { /* A dY */
                        q[0][j] = gr[0][j];
                        q[1][j] = gr[0][j] + gr[1][j];
                        q[2][j] = gr[0][j] - gr[1][j];
                        q[3][j] = -gr[1][j];
                    }
                    float *m = dM + o * w->Tp + (b * w->TH + th) * w->TW + 8 * tb;
                    for (int i = 0; i < 4; i++) { /* (A dY) A^T */
                        *(f32x8 *)(m + (i * 4 + 0) * OTp) = q[i][0];
                        *(f32x8 *)(m + (i * 4 + 1) * OTp) = q[i][0] + q[i][1];
                        *(f32x8 *)(m + (i * 4 + 2) * OTp) = q[i][0] - q[i][1];
                        *(f32x8 *)(m + (i * 4 + 3) * OTp) = -q[i][1];
                    }
                }
        }
}

/* dx[n, c] = sum over tiles of B dV B^T at the tile's place, for images n0 .. n0+nb-1, through
 * the padded plane (tiles overlap by two rows and columns; the sums run in a fixed order). */
CONV_INLINE_COPIES static void wino_input_grad(const conv_geom *g, const wino_geom *w, int64_t n0, int64_t nb,
                                               const float *dV /* (16, C, Tp) */, float *xp /* (Hp, Wp) */,
                                               float *dx /* (N, C, H, W) */) {
    const int64_t CTp = g->C * w->Tp;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < g->C; c++) {
            for (int64_t i = 0; i < w->Hp * w->Wp; i++) xp[i] = 0.0f;
            for (int64_t th = 0; th < w->TH; th++)
                for (int64_t tb = 0; tb < w->TWB; tb++) {
                    const float *v = dV + c * w->Tp + (b * w->TH + th) * w->TW + 8 * tb;
                    f32x8 p[4][4];
                    i32x8 keep; /* lanes of real tiles of this row */
                    for (int l = 0; l < 8; l++) keep[l] = 8 * tb + l < w->TW ? -1 : 0;
                    for (int j = 0; j < 4; j++) { /* B dV */
                        f32x8 v0 = *(const f32x8 *)(v + (0 + j) * CTp), v1 = *(const f32x8 *)(v + (4 + j) * CTp);
                        f32x8 v2 = *(const f32x8 *)(v + (8 + j) * CTp), v3 = *(const f32x8 *)(v + (12 + j) * CTp);
                        p[0][j] = v0;
                        p[1][j] = v1 - v2 + v3;
                        p[2][j] = v1 + v2 - v0;
                        p[3][j] = -v3;
                    }
                    for (int r = 0; r < 4; r++) { /* (B dV) B^T, added at rows 2th + r */
                        f32x8 e0 = (f32x8)((i32x8)p[r][0] & keep);
                        f32x8 o0 = (f32x8)((i32x8)(p[r][1] - p[r][2] + p[r][3]) & keep);
                        f32x8 e1 = (f32x8)((i32x8)(p[r][1] + p[r][2] - p[r][0]) & keep);
                        f32x8 o1 = (f32x8)((i32x8)(-p[r][3]) & keep);
                        float *row = xp + (2 * th + r) * w->Wp + 16 * tb, add[16];
                        wino_merge(&e0, &o0, add); /* columns 2tw, 2tw+1 */
                        *(f32x8 *)row += *(const f32x8 *)add;
                        *(f32x8 *)(row + 8) += *(const f32x8 *)(add + 8);
                        wino_merge(&e1, &o1, add); /* columns 2tw+2, 2tw+3 */
                        *(f32x8 *)(row + 2) += *(const f32x8 *)add;
                        *(f32x8 *)(row + 10) += *(const f32x8 *)(add + 8);
                    }
                }
            float *plane = dx + ((n0 + b) * g->C + c) * g->H * g->W;
            for (int64_t ih = 0; ih < g->H; ih++) {
                const float *restrict src = xp + (ih + g->PH) * w->Wp + g->PW;
                float *restrict dst = plane + ih * g->W;
                for (int64_t iw = 0; iw < g->W; iw++) dst[iw] = src[iw];
            }
        }
}

/* Forward of images n0 .. n0+nb-1: transform, 16 products, inverse transform. */
static void wino_forward_block(const conv_geom *g, const wino_geom *w, int64_t n0, int64_t nb,
                               const float *x /* (N, C, H, W) */, const float *U /* (16, O, C) */,
                               const float *bias /* (O) or NULL */, float *y /* (N, O, OH, OW) */,
                               float *ws /* wino_ws_floats */) {
    float *xp = ws, *V = xp + w->Hp * w->Wp, *M = V + 16 * g->C * w->Tp;
    const int64_t T = nb * w->TH * w->TW;
    wino_input_transform(g, w, n0, nb, x, xp, V);
    for (int xi = 0; xi < 16; xi++)
        torch_sgemm(false, false, g->O, T, g->C, U + xi * g->O * g->C, g->C, V + xi * g->C * w->Tp, w->Tp, 0.0f,
                    M + xi * g->O * w->Tp, w->Tp);
    wino_output_transform(g, w, n0, nb, M, bias, y);
}

/* Backward of images n0 .. n0+nb-1: dU += dM V^T (beta 0 for the slot's first block), and
 * dx through dV = U^T dM (written over V, which dU no longer needs). */
static void wino_backward_block(const conv_geom *g, const wino_geom *w, int64_t n0, int64_t nb, bool first,
                                const float *x /* (N, C, H, W) */, const float *U /* (16, O, C) */,
                                const float *dy /* (N, O, OH, OW) */, float *dx /* (N, C, H, W) or NULL */,
                                float *dU /* (16, O, C) or NULL */, float *ws /* wino_ws_floats */) {
    float *xp = ws, *V = xp + w->Hp * w->Wp, *dM = V + 16 * g->C * w->Tp;
    const int64_t T = nb * w->TH * w->TW;
    if (dU) wino_input_transform(g, w, n0, nb, x, xp, V);
    wino_grad_transform(g, w, n0, nb, dy, dM);
    for (int xi = 0; xi < 16; xi++) {
        float *Vx = V + xi * g->C * w->Tp, *dMx = dM + xi * g->O * w->Tp;
        if (dU)
            torch_sgemm(false, true, g->O, g->C, T, dMx, w->Tp, Vx, w->Tp, first ? 0.0f : 1.0f,
                        dU + xi * g->O * g->C, g->C);
        if (dx) torch_sgemm(true, false, g->C, T, g->O, U + xi * g->O * g->C, g->C, dMx, w->Tp, 0.0f, Vx, w->Tp);
    }
    if (dx) wino_input_grad(g, w, n0, nb, V, xp, dx);
}

/* ---- forward ----------------------------------------------------------------------------------- */

/* Floats of one thread's workspace: col (K x B*P; K+1 rows of pitch ldc for the small-K kernels;
 * none when direct), plus a block of outputs or of output gradients (O x B*P) when B > 1; or the
 * Winograd buffers. */
static int64_t conv_ws_floats(const conv_geom *g) {
    if (g->wino) {
        wino_geom w = wino_geom_of(g);
        return wino_ws_floats(g, &w);
    }
    if (g->small_k) return (g->K + 1) * g->ldc;
    return (g->direct ? 0 : g->K * g->B * g->P) + (g->B > 1 ? g->O * g->B * g->P : 0);
}

/* Zeroes the parts of a small-K col that im2col never writes (the pad columns and the zero row),
 * so that no kernel reads uninitialised memory. */
static void small_k_col_init(const conv_geom *g, float *col /* (K + 1, ldc) */) {
    for (int64_t k = 0; k < g->K; k++)
        memset(col + k * g->ldc + g->P, 0, (size_t)(g->ldc - g->P) * sizeof(float));
    memset(col + g->K * g->ldc, 0, (size_t)g->ldc * sizeof(float));
}

/* Images n0 .. n0+nb-1: y[n, o, p] = bias[o] + sum_r weight[o, r] * col(x[n])[r, p]. */
static void conv2d_forward_block(const conv_geom *g, int64_t n0, int64_t nb, const float *x /* (N, C, H, W) */,
                                 const float *w /* (O, K) */, const float *bias /* (O) or NULL */,
                                 float *y /* (N, O, P) */, float *ws /* conv_ws_floats */) {
    const int64_t xs = g->C * g->H * g->W, ys = g->O * g->P, ld = nb * g->P;
    if (g->small_k) {
        for (int64_t b = 0; b < nb; b++) {
            im2col(g, x + (n0 + b) * xs, ws, g->ldc);
            small_k_forward(g->O, g->K, g->P, g->ldc, w, bias, ws, y + (n0 + b) * ys);
        }
        return;
    }
    float *col = ws, *yb = ws + (g->direct ? 0 : g->K * g->B * g->P);
    const float *a = col;
    if (g->direct) a = x + n0 * xs;
    else
        for (int64_t b = 0; b < nb; b++) im2col(g, x + (n0 + b) * xs, col + b * g->P, ld);
    if (nb == 1) { /* one image: straight into y, the bias there first (beta = 1) */
        float *dst = y + n0 * ys;
        if (bias)
            for (int64_t o = 0; o < g->O; o++)
                for (int64_t p = 0; p < g->P; p++) dst[o * g->P + p] = bias[o];
        torch_sgemm(false, false, g->O, g->P, g->K, w, g->K, a, g->P, bias ? 1.0f : 0.0f, dst, g->P);
        return;
    }
    torch_sgemm(false, false, g->O, ld, g->K, w, g->K, a, ld, 0.0f, yb, ld);
    for (int64_t b = 0; b < nb; b++)
        for (int64_t o = 0; o < g->O; o++) {
            float *out = y + (n0 + b) * ys + o * g->P;
            const float *src = yb + o * ld + b * g->P;
            float bo = bias ? bias[o] : 0.0f;
            for (int64_t p = 0; p < g->P; p++) out[p] = src[p] + bo;
        }
}

/* Blocks of B images are independent: one thread each, with its own workspace. */
/* Floats the forward needs besides the threads' workspaces: the transformed weights. */
static int64_t conv_shared_floats(const conv_geom *g) { return g->wino ? 16 * g->O * g->C : 0; }

static void conv2d_forward_kernel(const conv_geom *g, const float *x /* (N, C, H, W) */, const float *w /* (O, K) */,
                                  const float *bias /* (O) or NULL */, float *y /* (N, O, P) */,
                                  float *ws /* conv_shared_floats + nthreads x conv_ws_floats */, int nthreads) {
    const int64_t blocks = (g->N + g->B - 1) / g->B, per = conv_ws_floats(g);
    if (g->wino) {
        const wino_geom wg = wino_geom_of(g);
        float *U = ws, *tws = ws + conv_shared_floats(g);
        wino_weights(g, w, U);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
        for (int64_t k = 0; k < blocks; k++) {
            int64_t n0 = k * g->B, nb = g->N - n0 < g->B ? g->N - n0 : g->B;
            wino_forward_block(g, &wg, n0, nb, x, U, bias, y, tws + thread_id() * per);
        }
        return;
    }
    if (g->small_k)
        for (int t = 0; t < nthreads; t++) small_k_col_init(g, ws + t * per);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
    for (int64_t k = 0; k < blocks; k++) {
        int64_t n0 = k * g->B, nb = g->N - n0 < g->B ? g->N - n0 : g->B;
        conv2d_forward_block(g, n0, nb, x, w, bias, y, ws + thread_id() * per);
    }
}

/* ---- backward ---------------------------------------------------------------------------------- */

/* Backward of y = W @ col(x) + b, per image n, with dY = dL/dy[n] as an (O, P) matrix:
 *   dbias[o]  = sum_{n, p} dY[o, p]                           (double accumulator)
 *   dweight   = sum_n dY @ col(x[n])^T      (O, P) @ (P, K)
 *   dcol      = W^T @ dY                    (K, O) @ (O, P)
 *   dx[n]     = col2im(dcol)                each tap sends its gradient back to the pixel it read.
 * Blocks of B images use the same products with dY's blocks side by side, (O, B*P). col is
 * recomputed from x rather than kept from the forward: K*N*P floats would often dwarf x.
 * The sum over images for dweight is split into S slots fixed by the shapes (consecutive blocks,
 * summed with sgemm's beta = 1, or by the small-K kernel's +=), which run in parallel and are
 * added in slot order at the end. dx[n] is zeroed just before col2im accumulates into it (while
 * it is in cache), not up front. */
static void conv2d_backward_slot(const conv_geom *g, int64_t k0, int64_t k1, const float *x /* (N, C, H, W) */,
                                 const float *w /* (O, K) */, const float *dy /* (N, O, P) */,
                                 float *dx /* (N, C, H, W), or NULL */, float *dw /* (O, K), or NULL */,
                                 float *ws /* conv_ws_floats */) {
    const int64_t xs = g->C * g->H * g->W, ys = g->O * g->P;
    float *col = ws, *dyb = ws + (g->direct || g->small_k ? 0 : g->K * g->B * g->P);
    if (dw && (k0 == k1 || g->small_k)) memset(dw, 0, (size_t)(g->O * g->K) * sizeof *dw); /* small-K adds */
    if (g->small_k) small_k_col_init(g, col);
    for (int64_t k = k0; k < k1; k++) {
        int64_t n0 = k * g->B, nb = g->N - n0 < g->B ? g->N - n0 : g->B;
        int64_t ld = g->small_k ? g->ldc : nb * g->P;
        const float *dY = dy + n0 * ys;
        if (nb > 1) {
            for (int64_t b = 0; b < nb; b++)
                for (int64_t o = 0; o < g->O; o++)
                    memcpy(dyb + o * ld + b * g->P, dy + (n0 + b) * ys + o * g->P, (size_t)g->P * sizeof(float));
            dY = dyb;
        }
        const int64_t ldy = nb > 1 ? ld : g->P;
        if (dw) {
            const float *a = col;
            if (g->direct) a = x + n0 * xs;
            else
                for (int64_t b = 0; b < nb; b++) im2col(g, x + (n0 + b) * xs, col + b * g->P, ld);
            if (g->small_k) small_k_weight_grad(g->O, g->K, g->P, g->ldc, dY, col, dw);
            else torch_sgemm(false, true, g->O, g->K, ld, dY, ldy, a, ld, k == k0 ? 0.0f : 1.0f, dw, g->K);
        }
        if (dx) {
            /* The direct case writes dcol straight into dx[n] (col2im is the identity there). */
            float *dcol = g->direct ? dx + n0 * xs : col;
            torch_sgemm(true, false, g->K, nb * g->P, g->O, w, g->K, dY, ldy, 0.0f, dcol, ld);
            if (!g->direct)
                for (int64_t b = 0; b < nb; b++) {
                    memset(dx + (n0 + b) * xs, 0, (size_t)xs * sizeof(float));
                    col2im(g, col + b * g->P, ld, dx + (n0 + b) * xs);
                }
        }
    }
}

/* Slots for the dweight sum: at most 8, and at most 64 MB of partial sums. */
static int64_t conv_slots(const conv_geom *g) {
    int64_t blocks = (g->N + g->B - 1) / g->B, s = blocks < 8 ? blocks : 8;
    int64_t cap = ((int64_t)1 << 24) / (g->O * g->K > 0 ? g->O * g->K : 1);
    if (s > cap) s = cap;
    return s < 1 ? 1 : s;
}

static void conv2d_backward_kernel(const conv_geom *g, const float *x /* (N, C, H, W) */,
                                   const float *w /* (O, K) */, const float *dy /* (N, O, P) */,
                                   float *dx /* (N, C, H, W), or NULL */, float *dw /* (O, K), or NULL */,
                                   float *db /* (O) or NULL */, float *ws /* nthreads x conv_ws_floats */,
                                   float *partial /* (S - 1, O, K) when dw; Winograd: (1 + S, 16, O, C) */,
                                   int nthreads) {
    const int64_t ys = g->O * g->P, per = conv_ws_floats(g), OK = g->O * g->K;
    if (db)
        for (int64_t o = 0; o < g->O; o++) {
            double s = 0.0;
            for (int64_t n = 0; n < g->N; n++) {
                const float *d = dy + n * ys + o * g->P;
                for (int64_t p = 0; p < g->P; p++) s += d[p];
            }
            db[o] = (float)s;
        }
    if (!dx && !dw) return;
    const int64_t blocks = (g->N + g->B - 1) / g->B, S = conv_slots(g);
    (void)nthreads;
    if (g->wino) { /* partial: U (16, O, C), then S slots of dU (16, O, C) */
        const wino_geom wg = wino_geom_of(g);
        const int64_t UN = 16 * g->O * g->C;
        float *U = partial, *dU = dw ? partial + UN : NULL;
        if (dx) wino_weights(g, w, U);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
        for (int64_t s = 0; s < S; s++) {
            int64_t k0 = s * blocks / S, k1 = (s + 1) * blocks / S;
            float *dUs = dU ? dU + s * UN : NULL, *tws = ws + thread_id() * per;
            if (dUs && k0 == k1) memset(dUs, 0, (size_t)UN * sizeof *dUs);
            for (int64_t k = k0; k < k1; k++) {
                int64_t n0 = k * g->B, nb = g->N - n0 < g->B ? g->N - n0 : g->B;
                wino_backward_block(g, &wg, n0, nb, k == k0, x, U, dy, dx, dUs, tws);
            }
        }
        if (dw) {
            for (int64_t s = 1; s < S; s++)
                for (int64_t i = 0; i < UN; i++) dU[i] += dU[s * UN + i];
            wino_weights_grad(g, dU, dw);
        }
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
    for (int64_t s = 0; s < S; s++) {
        float *dws = !dw ? NULL : s == 0 ? dw : partial + (s - 1) * OK;
        conv2d_backward_slot(g, s * blocks / S, (s + 1) * blocks / S, x, w, dy, dx, dws, ws + thread_id() * per);
    }
    if (dw)
        for (int64_t s = 1; s < S; s++)
            for (int64_t i = 0; i < OK; i++) dw[i] += partial[(s - 1) * OK + i];
}

/* saved[0] = input (contiguous), saved[1] = weight (contiguous); ints = stride, padding, dilation. */
static torch_status conv2d_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const tensor *x = node->saved[0], *w = node->saved[1];
    conv_geom g;
    conv_geom_fill(&g, x, w, node->ints, node->ints + 2, node->ints + 4);
    bool need_x = ag_node_needs_grad(node, 0), need_w = ag_node_needs_grad(node, 1),
         need_b = ag_node_needs_grad(node, 2);
    int nthreads = threads_for(conv_slots(&g));
    size_t nws = need_x || need_w ? (size_t)(nthreads * conv_ws_floats(&g)) : 0;
    size_t npartial = g.wino ? (size_t)((need_w ? conv_slots(&g) : 0) + 1) * 16 * g.O * g.C
                      : need_w ? (size_t)((conv_slots(&g) - 1) * g.O * g.K) : 0;
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = need_x ? (g.N == 0 ? torch_zeros(x->ndim, x->shape) : torch_empty(x->ndim, x->shape)) : NULL;
    tensor *dw = need_w ? torch_empty(w->ndim, w->shape) : NULL;
    tensor *db = need_b ? torch_empty(1, &g.O) : NULL;
    float *ws = malloc((nws + npartial + 1) * sizeof(float));
    if (!dy || (need_x && !dx) || (need_w && !dw) || (need_b && !db) || !ws) {
        tensor_free(dy), tensor_free(dx), tensor_free(dw), tensor_free(db), free(ws);
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "ConvolutionBackward0: out of memory");
    }
    conv2d_backward_kernel(&g, tensor_data_f32(x), tensor_data_f32(w), tensor_data_f32(dy),
                           dx ? tensor_data_f32(dx) : NULL, dw ? tensor_data_f32(dw) : NULL,
                           db ? tensor_data_f32(db) : NULL, ws, ws + nws, nthreads);
    free(ws);
    tensor_free(dy);
    grad_inputs[0] = dx;
    grad_inputs[1] = dw;
    grad_inputs[2] = db;
    return TORCH_OK;
}

static const ag_function conv2d_function = {.name = "ConvolutionBackward0", .backward = conv2d_backward};

static tensor *conv2d_impl(const char *fname, tensor *input, tensor *weight, tensor *bias, const int64_t stride[2],
                           const int64_t padding[2], const int64_t dilation[2]) {
    conv_geom g;
    if (conv_check(fname, input, weight, bias, stride, padding, dilation, &g) != TORCH_OK) return NULL;
    tensor *xc = tensor_contiguous(input), *wc = tensor_contiguous(weight), *bc = bias ? tensor_contiguous(bias) : NULL;
    int64_t shape[4] = {g.N, g.O, g.OH, g.OW};
    bool batched = input->ndim == 4;
    tensor *y = batched ? torch_empty(4, shape) : torch_empty(3, shape + 1);
    int nthreads = threads_for((g.N + g.B - 1) / g.B);
    float *ws = malloc((size_t)(conv_shared_floats(&g) + nthreads * conv_ws_floats(&g) + 1) * sizeof(float));
    if (!xc || !wc || (bias && !bc) || !y || !ws) {
        if (!ws) torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        tensor_free(xc), tensor_free(wc), tensor_free(bc), tensor_free(y), free(ws);
        return NULL;
    }
    conv2d_forward_kernel(&g, tensor_data_f32(xc), tensor_data_f32(wc), bc ? tensor_data_f32(bc) : NULL,
                          tensor_data_f32(y), ws, nthreads);
    free(ws);
    tensor *inputs[3] = {input, weight, bias};
    if (ag_should_record(3, inputs)) {
        ag_node *node = ag_record(&conv2d_function, y, 3, inputs);
        if (!node || ag_node_save(node, 0, xc) != TORCH_OK || ag_node_save(node, 1, wc) != TORCH_OK) {
            tensor_free(y);
            y = NULL;
        } else {
            int64_t v[6] = {g.SH, g.SW, g.PH, g.PW, g.DH, g.DW};
            memcpy(node->ints, v, sizeof v);
        }
    }
    tensor_free(xc), tensor_free(wc), tensor_free(bc);
    return y;
}

tensor *nnf_conv2d(tensor *input, tensor *weight, tensor *bias, const int64_t stride[2], const int64_t padding[2],
                   const int64_t dilation[2]) {
    return conv2d_impl("nnf_conv2d", input, weight, bias, stride, padding, dilation);
}

/* ---- module ------------------------------------------------------------------------------------ */

static tensor *conv2d_module_forward(nn_module *self, tensor *input) {
    nn_conv2d_module *m = (nn_conv2d_module *)self;
    return conv2d_impl("Conv2d", input, m->weight, m->bias, m->options.stride, m->options.padding,
                       m->options.dilation);
}

static torch_status conv2d_reset_parameters(nn_module *self, torch_generator *gen) {
    nn_conv2d_module *m = (nn_conv2d_module *)self;
    return nn_init_default_weight_bias_(m->weight, m->bias, gen);
}

static int conv2d_extra_repr(const nn_module *self, char *buf, size_t len) {
    const nn_conv2d_options *o = &((const nn_conv2d_module *)self)->options;
    char pad[64] = "", dil[64] = "";
    /* PyTorch prints padding and dilation only when they differ from their defaults. */
    if (o->padding[0] != 0 || o->padding[1] != 0)
        snprintf(pad, sizeof pad, ", padding=(%lld, %lld)", (long long)o->padding[0], (long long)o->padding[1]);
    if (o->dilation[0] != 1 || o->dilation[1] != 1)
        snprintf(dil, sizeof dil, ", dilation=(%lld, %lld)", (long long)o->dilation[0], (long long)o->dilation[1]);
    return snprintf(buf, len, "%lld, %lld, kernel_size=(%lld, %lld), stride=(%lld, %lld)%s%s%s",
                    (long long)o->in_channels, (long long)o->out_channels, (long long)o->kernel_size[0],
                    (long long)o->kernel_size[1], (long long)o->stride[0], (long long)o->stride[1], pad, dil,
                    o->bias ? "" : ", bias=False");
}

static const nn_module_ops conv2d_ops = {
    .type_name = "Conv2d",
    .forward = conv2d_module_forward,
    .reset_parameters = conv2d_reset_parameters,
    .extra_repr = conv2d_extra_repr,
};

nn_conv2d_options nn_conv2d_options_default(int64_t in_channels, int64_t out_channels, int64_t kernel_size) {
    nn_conv2d_options o = {.in_channels = in_channels,
                           .out_channels = out_channels,
                           .kernel_size = {kernel_size, kernel_size},
                           .stride = {1, 1},
                           .padding = {0, 0},
                           .dilation = {1, 1},
                           .bias = true,
                           .generator = NULL};
    return o;
}

nn_module *nn_conv2d(nn_conv2d_options o) {
    const char *bad = NULL;
    long long v0 = 0, v1 = 0;
    if (o.in_channels <= 0) bad = "in_channels", v0 = o.in_channels;
    else if (o.out_channels <= 0) bad = "out_channels", v0 = o.out_channels;
    if (bad) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "Conv2d: %s must be > 0 (got %lld)", bad, v0);
        return NULL;
    }
    if (o.kernel_size[0] <= 0 || o.kernel_size[1] <= 0) bad = "kernel_size", v0 = o.kernel_size[0], v1 = o.kernel_size[1];
    else if (o.stride[0] <= 0 || o.stride[1] <= 0) bad = "stride", v0 = o.stride[0], v1 = o.stride[1];
    else if (o.dilation[0] <= 0 || o.dilation[1] <= 0) bad = "dilation", v0 = o.dilation[0], v1 = o.dilation[1];
    if (bad) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "Conv2d: %s must be > 0 (got (%lld, %lld))", bad, v0, v1);
        return NULL;
    }
    if (o.padding[0] < 0 || o.padding[1] < 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "Conv2d: padding must be >= 0 (got (%lld, %lld))",
                    (long long)o.padding[0], (long long)o.padding[1]);
        return NULL;
    }
    nn_conv2d_module *m = nn_module_alloc(sizeof *m, &conv2d_ops);
    if (!m) return NULL;
    torch_generator *gen = o.generator;
    o.generator = NULL;
    m->options = o;
    int64_t wshape[4] = {o.out_channels, o.in_channels, o.kernel_size[0], o.kernel_size[1]};
    m->weight = nn_module_register_parameter(&m->base, "weight", torch_empty(4, wshape));
    if (m->weight && o.bias) m->bias = nn_module_register_parameter(&m->base, "bias", torch_empty(1, wshape));
    if (!m->weight || (o.bias && !m->bias) || conv2d_reset_parameters(&m->base, gen) != TORCH_OK) {
        nn_module_free(&m->base);
        return NULL;
    }
    return &m->base;
}

nn_conv2d_module *nn_as_conv2d(nn_module *m) { return m && m->ops == &conv2d_ops ? (nn_conv2d_module *)m : NULL; }
