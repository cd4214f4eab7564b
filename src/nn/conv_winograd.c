/* conv_winograd.c — nnf_conv2d's Winograd F(2x2, 3x3) path, forward and backward, for 3x3
 * kernels with stride 1 and no dilation (most layers of a CNN): conv.c picks it from the shapes,
 * transforms the weights once per call (conv_wino_weights) and hands each thread blocks of images
 * (conv_wino_forward_block, conv_wino_backward_block); the 16 products per block go through
 * torch_sgemm.
 *
 * Private to src/nn (declared in conv_kernels.h, whose ownership rules apply: every pointer is
 * borrowed, nothing is allocated or freed here; the caller sizes each workspace with
 * conv_wino_ws_floats).
 */
#include "conv_kernels.h"

#include <string.h>

#include "../tensor/ops.h"
#include "../tensor/simd.h"

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
 * the shapes (wino_block in conv.c), so results do not depend on the thread count. */

conv_wino_geom conv_wino_geom_of(const conv_geom *g) {
    conv_wino_geom w;
    w.TH = (g->OH + 1) / 2, w.TW = (g->OW + 1) / 2;
    w.TWB = (w.TW + 7) / 8;
    w.Hp = 2 * w.TH + 2, w.Wp = 16 * w.TWB + 2;
    w.NB = g->B;
    w.T = w.NB * w.TH * w.TW;
    w.Tp = (w.T + 15) / 8 * 8;
    return w;
}

/* Floats of one thread's workspace: padded plane, V (16, C, Tp), M or dM (16, O, Tp). */
int64_t conv_wino_ws_floats(const conv_geom *g, const conv_wino_geom *w) {
    return w->Hp * w->Wp + 16 * (g->C + g->O) * w->Tp;
}

/* Even and odd elements of p[0 .. 16): taps 0 and 1 of 8 consecutive tiles (2 columns apart). */
static inline void wino_split(const float *p, f32x8 *even, f32x8 *odd) {
    f32x8 a = *(const f32x8_mem *)p, b = *(const f32x8_mem *)(p + 8);
    *even = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
    *odd = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
}

/* out[0 .. 16) = even[0], odd[0], even[1], ...: the inverse of wino_split. */
static inline void wino_merge(const f32x8 *even, const f32x8 *odd, float *out) {
    *(f32x8_mem *)out = __builtin_shufflevector(*even, *odd, 0, 8, 1, 9, 2, 10, 3, 11);
    *(f32x8_mem *)(out + 8) = __builtin_shufflevector(*even, *odd, 4, 12, 5, 13, 6, 14, 7, 15);
}

/* Copies a plane into the padded plane's interior: input (ih, iw) at (ih + PH, iw + PW). The
 * border stays as it is (zero: see wino_input_transform). */
CONV_INLINE_COPIES static void wino_pad_plane(const conv_geom *g, const conv_wino_geom *w,
                                              const float *x /* (H, W) */, float *xp /* (Hp, Wp) */) {
    for (int64_t ih = 0; ih < g->H; ih++) {
        float *restrict dst = xp + (ih + g->PH) * w->Wp + g->PW;
        const float *restrict src = x + ih * g->W;
        for (int64_t iw = 0; iw < g->W; iw++) dst[iw] = src[iw];
    }
}

/* U[xi, o, c] = (G g G^T)[xi] for every (o, c). */
void conv_wino_weights(const conv_geom *g, const float *wt /* (O, C, 3, 3) */, float *U /* (16, O, C) */) {
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

/* dweight[o, c] = G^T dU[o, c] G, the adjoint of conv_wino_weights. */
void conv_wino_weights_grad(const conv_geom *g, const float *dU /* (16, O, C) */, float *dw /* (O, C, 3, 3) */) {
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
static void wino_input_transform(const conv_geom *g, const conv_wino_geom *w, int64_t n0, int64_t nb,
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
                        *(f32x8_mem *)(v + (i * 4 + 0) * CTp) = t[i][0] - t[i][2];
                        *(f32x8_mem *)(v + (i * 4 + 1) * CTp) = t[i][1] + t[i][2];
                        *(f32x8_mem *)(v + (i * 4 + 2) * CTp) = t[i][2] - t[i][1];
                        *(f32x8_mem *)(v + (i * 4 + 3) * CTp) = t[i][1] - t[i][3];
                    }
                }
        }
}

/* y[n, o] = bias[o] + A^T M A tile by tile, for images n0 .. n0+nb-1; only outputs inside
 * (OH, OW) are stored. */
CONV_INLINE_COPIES static void wino_output_transform(const conv_geom *g, const conv_wino_geom *w, int64_t n0,
                                                     int64_t nb, const float *M /* (16, O, Tp) */,
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
                        f32x8 m0 = *(const f32x8_mem *)(m + (0 + j) * OTp);
                        f32x8 m1 = *(const f32x8_mem *)(m + (4 + j) * OTp);
                        f32x8 m2 = *(const f32x8_mem *)(m + (8 + j) * OTp);
                        f32x8 m3 = *(const f32x8_mem *)(m + (12 + j) * OTp);
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
CONV_INLINE_COPIES static void wino_grad_transform(const conv_geom *g, const conv_wino_geom *w, int64_t n0, int64_t nb,
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
                        *(f32x8_mem *)(m + (i * 4 + 0) * OTp) = q[i][0];
                        *(f32x8_mem *)(m + (i * 4 + 1) * OTp) = q[i][0] + q[i][1];
                        *(f32x8_mem *)(m + (i * 4 + 2) * OTp) = q[i][0] - q[i][1];
                        *(f32x8_mem *)(m + (i * 4 + 3) * OTp) = -q[i][1];
                    }
                }
        }
}

/* dx[n, c] = sum over tiles of B dV B^T at the tile's place, for images n0 .. n0+nb-1, through
 * the padded plane (tiles overlap by two rows and columns; the sums run in a fixed order). */
CONV_INLINE_COPIES static void wino_input_grad(const conv_geom *g, const conv_wino_geom *w, int64_t n0, int64_t nb,
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
                        f32x8 v0 = *(const f32x8_mem *)(v + (0 + j) * CTp);
                        f32x8 v1 = *(const f32x8_mem *)(v + (4 + j) * CTp);
                        f32x8 v2 = *(const f32x8_mem *)(v + (8 + j) * CTp);
                        f32x8 v3 = *(const f32x8_mem *)(v + (12 + j) * CTp);
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
                        *(f32x8_mem *)row += *(const f32x8_mem *)add;
                        *(f32x8_mem *)(row + 8) += *(const f32x8_mem *)(add + 8);
                        wino_merge(&e1, &o1, add); /* columns 2tw+2, 2tw+3 */
                        *(f32x8_mem *)(row + 2) += *(const f32x8_mem *)add;
                        *(f32x8_mem *)(row + 10) += *(const f32x8_mem *)(add + 8);
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
void conv_wino_forward_block(const conv_geom *g, const conv_wino_geom *w, int64_t n0, int64_t nb,
                             const float *x /* (N, C, H, W) */, const float *U /* (16, O, C) */,
                             const float *bias /* (O) or NULL */, float *y /* (N, O, OH, OW) */,
                             float *ws /* conv_wino_ws_floats */) {
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
void conv_wino_backward_block(const conv_geom *g, const conv_wino_geom *w, int64_t n0, int64_t nb, bool first,
                              const float *x /* (N, C, H, W) */, const float *U /* (16, O, C) */,
                              const float *dy /* (N, O, OH, OW) */, float *dx /* (N, C, H, W) or NULL */,
                              float *dU /* (16, O, C) or NULL */, float *ws /* conv_wino_ws_floats */) {
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
