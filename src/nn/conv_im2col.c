/* conv_im2col.c — nnf_conv2d through im2col columns: im2col and its adjoint col2im, one block's
 * forward (torch_sgemm, or the small-K kernels of conv_direct.c for short reductions) and one
 * slot's backward, with the derivation above it. conv.c chooses the path, sizes the workspaces
 * and shares blocks and slots among threads.
 *
 * Private to src/nn (declared in conv_kernels.h, whose ownership rules apply: every pointer is
 * borrowed, nothing is allocated or freed here).
 */
#include "conv_kernels.h"

#include <string.h>

#include "../tensor/ops.h"

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

/* ---- forward ----------------------------------------------------------------------------------- */

/* Images n0 .. n0+nb-1: y[n, o, p] = bias[o] + sum_r weight[o, r] * col(x[n])[r, p]. */
void conv_im2col_forward_block(const conv_geom *g, int64_t n0, int64_t nb, const float *x /* (N, C, H, W) */,
                               const float *w /* (O, K) */, const float *bias /* (O) or NULL */,
                               float *y /* (N, O, P) */, float *ws /* conv_ws_floats */) {
    const int64_t xs = g->C * g->H * g->W, ys = g->O * g->P, ld = nb * g->P;
    if (g->small_k) {
        for (int64_t b = 0; b < nb; b++) {
            im2col(g, x + (n0 + b) * xs, ws, g->ldc);
            conv_small_k_forward(g->O, g->K, g->P, g->ldc, w, bias, ws, y + (n0 + b) * ys);
        }
        return;
    }
    float *col = ws, *yb = ws + (g->col_is_input ? 0 : g->K * g->B * g->P);
    const float *a = col;
    if (g->col_is_input) a = x + n0 * xs;
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
void conv_im2col_backward_slot(const conv_geom *g, int64_t k0, int64_t k1, const float *x /* (N, C, H, W) */,
                               const float *w /* (O, K) */, const float *dy /* (N, O, P) */,
                               float *dx /* (N, C, H, W), or NULL */, float *dw /* (O, K), or NULL */,
                               float *ws /* conv_ws_floats */) {
    const int64_t xs = g->C * g->H * g->W, ys = g->O * g->P;
    float *col = ws, *dyb = ws + (g->col_is_input || g->small_k ? 0 : g->K * g->B * g->P);
    if (dw && (k0 == k1 || g->small_k)) memset(dw, 0, (size_t)(g->O * g->K) * sizeof *dw); /* small-K adds */
    if (g->small_k) conv_small_k_col_init(g, col);
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
            if (g->col_is_input) a = x + n0 * xs;
            else
                for (int64_t b = 0; b < nb; b++) im2col(g, x + (n0 + b) * xs, col + b * g->P, ld);
            if (g->small_k) conv_small_k_weight_grad(g->O, g->K, g->P, g->ldc, dY, col, dw);
            else torch_sgemm(false, true, g->O, g->K, ld, dY, ldy, a, ld, k == k0 ? 0.0f : 1.0f, dw, g->K);
        }
        if (dx) {
            /* The col_is_input case writes dcol straight into dx[n] (col2im is the identity there). */
            float *dcol = g->col_is_input ? dx + n0 * xs : col;
            torch_sgemm(true, false, g->K, nb * g->P, g->O, w, g->K, dY, ldy, 0.0f, dcol, ld);
            if (!g->col_is_input)
                for (int64_t b = 0; b < nb; b++) {
                    memset(dx + (n0 + b) * xs, 0, (size_t)xs * sizeof(float));
                    col2im(g, col + b * g->P, ld, dx + (n0 + b) * xs);
                }
        }
    }
}
