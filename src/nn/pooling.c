/* pooling.c — max, average and adaptive average 2-D pooling, forward and backward side by side,
 * and their modules.
 *
 * References: https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html, AvgPool2d.html,
 * AdaptiveAvgPool2d.html; the window arithmetic follows ATen's CPU kernels (MaxPoolKernel.cpp,
 * AvgPoolKernel.cpp, AdaptiveAvgPoolKernel.cpp) so that edge cases (padding, ceil_mode) agree.
 */
#include "pooling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/simd.h"

/* ---- geometry ---------------------------------------------------------------------------------- */

typedef struct pool_geom {
    int64_t planes, H, W;       /* input viewed as (planes, H, W), planes = N * C */
    int64_t OH, OW;
    int64_t KH, KW, SH, SW, PH, PW, DH, DW;
    bool    ceil_mode, count_include_pad;
} pool_geom;

/* Planes per thread are independent: parallelise only when there is enough work. */
#define POOL_PARALLEL(g) \
    ((g)->planes > 1 && (double)((g)->planes * (g)->OH * (g)->OW) * (double)(g)->KH * (double)(g)->KW > 32768)

/* ATen's pooling_output_shape: floor (or ceil) division, and with ceil_mode the last window must
 * start inside the input or the left padding. -2 when kernel, padding, stride or dilation is so
 * large that a term overflows (they are the user's numbers). */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode) {
    int64_t num, extent;
    if (__builtin_mul_overflow(pad, 2, &num) || __builtin_add_overflow(num, in, &num) ||
        __builtin_mul_overflow(dil, k - 1, &extent) || __builtin_sub_overflow(num, extent, &num) || __builtin_sub_overflow(num, 1, &num) ||
        __builtin_add_overflow(num, ceil_mode ? stride - 1 : 0, &num))
        return -2;
    int64_t q = num >= 0 ? num / stride : -((-num - 1) / stride) - 1; /* rounds toward -inf, without overflow */
    int64_t out = q + 1;
    if (ceil_mode && out > 1 && (out - 1) * stride >= in + pad) out--; /* (out - 1) * stride <= num */
    return out;
}

/* Checks the window parameters (also at module construction, without an input). */
static torch_status pool_check_params(const char *fname, const int64_t k[2], const int64_t s[2], const int64_t p[2],
                                      const int64_t d[2]) {
    if (k[0] <= 0 || k[1] <= 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: kernel size should be greater than zero, but got kH: %lld kW: %lld",
                           fname, (long long)k[0], (long long)k[1]);
    if (s[0] <= 0 || s[1] <= 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: stride should be greater than zero, but got dH: %lld dW: %lld",
                           fname, (long long)s[0], (long long)s[1]);
    if (d[0] <= 0 || d[1] <= 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "%s: dilation should be greater than zero, but got dilationH: %lld dilationW: %lld", fname,
                           (long long)d[0], (long long)d[1]);
    for (int i = 0; i < 2; i++) {
        if (p[i] < 0)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: pad must be non-negative, but got pad=%lld", fname,
                               (long long)p[i]);
        if (p[i] > k[i] / 2)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                               "%s: pad should be at most half of kernel size, but got pad=%lld and kernel_size=%lld", fname,
                               (long long)p[i], (long long)k[i]);
    }
    return TORCH_OK;
}

/* Checks the input against the window and fills g. d may be NULL (no dilation: average pools). */
static torch_status pool_check(const char *fname, const tensor *x, const int64_t k[2], const int64_t s[2],
                               const int64_t p[2], const int64_t d[2], bool ceil_mode, pool_geom *g) {
    static const int64_t one[2] = {1, 1};
    char buf[96];
    if (!d) d = one;
    torch_status st = torch_check_float32(fname, "input", x);
    if (st != TORCH_OK) return st;
    st = pool_check_params(fname, k, s, p, d);
    if (st != TORCH_OK) return st;
    bool ok = x->ndim == 3 || x->ndim == 4;
    for (int i = x->ndim - 3; ok && i < x->ndim; i++) ok = x->shape[i] > 0;
    if (!ok)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: non-empty 3D or 4D (batch mode) tensor expected for input (got input of size: %s)", fname,
                           torch_shape_str(x->ndim, x->shape, buf, sizeof buf));
    int64_t C = x->shape[x->ndim - 3];
    g->H = x->shape[x->ndim - 2];
    g->W = x->shape[x->ndim - 1];
    g->planes = x->numel / (g->H * g->W);
    g->KH = k[0], g->KW = k[1], g->SH = s[0], g->SW = s[1], g->PH = p[0], g->PW = p[1], g->DH = d[0], g->DW = d[1];
    g->ceil_mode = ceil_mode;
    g->OH = pool_out_size(g->H, g->KH, g->PH, g->SH, g->DH, ceil_mode);
    g->OW = pool_out_size(g->W, g->KW, g->PW, g->SW, g->DW, ceil_mode);
    if (g->OH == -2 || g->OW == -2)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: kernel size (%lld, %lld), stride (%lld, %lld), padding (%lld, %lld) and dilation "
                           "(%lld, %lld) are too large to compute an output size",
                           fname, (long long)k[0], (long long)k[1], (long long)s[0], (long long)s[1], (long long)p[0],
                           (long long)p[1], (long long)d[0], (long long)d[1]);
    if (g->OH < 1 || g->OW < 1)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: Given input size: (%lldx%lldx%lld). Calculated output size: (%lldx%lldx%lld). Output "
                           "size is too small",
                           fname, (long long)C, (long long)g->H, (long long)g->W, (long long)C, (long long)g->OH,
                           (long long)g->OW);
    return TORCH_OK;
}

/* The input's shape with the last two dims replaced by (oh, ow). */
static tensor *pool_output(const tensor *x, int64_t oh, int64_t ow, torch_dtype dtype) {
    int64_t shape[TORCH_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 2] = oh;
    shape[x->ndim - 1] = ow;
    return torch_empty_dtype(dtype, x->ndim, shape);
}

static void resolve_stride(int64_t out[2], const int64_t stride[2], const int64_t kernel[2]) {
    bool dflt = stride[0] == 0 && stride[1] == 0;
    out[0] = dflt ? kernel[0] : stride[0];
    out[1] = dflt ? kernel[1] : stride[1];
}

/* "2" when both entries agree, "(2, 3)" otherwise, as PyTorch prints what was passed. */
static const char *pair_str(const int64_t v[2], char *buf, size_t len) {
    if (v[0] == v[1]) snprintf(buf, len, "%lld", (long long)v[0]);
    else snprintf(buf, len, "(%lld, %lld)", (long long)v[0], (long long)v[1]);
    return buf;
}

/* ---- max pool ----------------------------------------------------------------------------------- */

/* y[oh, ow] = max over the window's taps inside the input; idx = where (h * W + w) the first
 * maximum sits (ATen: a later tap wins only if strictly greater, or NaN). */
static void max_pool_forward_kernel(const pool_geom *g, const float *x /* (planes, H, W) */,
                                    float *y /* (planes, OH, OW) */, int64_t *idx /* (planes, OH, OW) */) {
    /* Locals, not g->: the int64 stores into idx could otherwise alias g and force reloads. */
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, KH = g->KH, KW = g->KW;
    const int64_t SH = g->SH, SW = g->SW, PH = g->PH, PW = g->PW, DH = g->DH, DW = g->DW;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (POOL_PARALLEL(g))
#endif
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const float *xp = x + pl * H * W;
        float *yp = y + pl * OH * OW;
        int64_t *ip = idx + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * SH - PH;
            int64_t h1 = h0 + (KH - 1) * DH + 1 < H ? h0 + (KH - 1) * DH + 1 : H;
            if (h0 < 0) h0 += ((-h0 - 1) / DH + 1) * DH; /* the first tap inside: a loop hangs on huge pads */
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * SW - PW;
                int64_t w1 = w0 + (KW - 1) * DW + 1 < W ? w0 + (KW - 1) * DW + 1 : W;
                if (w0 < 0) w0 += ((-w0 - 1) / DW + 1) * DW;
                int64_t best = h0 * W + w0;
                float m = -INFINITY;
                for (int64_t ih = h0; ih < h1; ih += DH)
                    for (int64_t iw = w0; iw < w1; iw += DW) {
                        float v = xp[ih * W + iw];
                        bool take = (v > m) | (v != v); /* selects, not branches: random data mispredicts */
                        m = take ? v : m;
                        best = take ? ih * W + iw : best;
                    }
                yp[oh * OW + ow] = m;
                ip[oh * OW + ow] = best;
            }
        }
    }
}

/* Backward of a max: the window's output depends on its argmax only, with slope 1:
 *   dx[plane, idx[plane, o]] += dy[plane, o]     (overlapping windows add up). */
static void max_pool_backward_kernel(const pool_geom *g, const float *dy /* (planes, OH, OW) */,
                                     const int64_t *idx /* (planes, OH, OW) */, float *dx /* (planes, H, W) zeroed */) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (POOL_PARALLEL(g))
#endif
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const float *d = dy + pl * g->OH * g->OW;
        const int64_t *ip = idx + pl * g->OH * g->OW;
        float *dxp = dx + pl * g->H * g->W;
        for (int64_t o = 0; o < g->OH * g->OW; o++) dxp[ip[o]] += d[o];
    }
}

/* ---- max pool 2x2, stride 2 ---------------------------------------------------------------------
 * The pool of nearly every CNN gets its own kernels. The window of output (oh, ow) is
 *   a = x[2oh, 2ow], b = x[2oh, 2ow+1], c = x[2oh+1, 2ow], d = x[2oh+1, 2ow+1]
 * scanned in that order with the generic kernel's rule (a later tap wins if strictly greater or
 * NaN), so values and argmax agree with it and with ATen. The graph keeps the argmax as one byte
 * per output (its tap number 0..3: an eighth of int64 indices), and the backward writes every
 * element of dx once (dy at the argmax, 0 elsewhere) instead of zero-filling dx and scattering. */

/* k 2, stride 2, no padding, no dilation, and an output of exactly floor(H/2) x floor(W/2)
 * (ceil_mode adds a partial window when H or W is odd: the generic kernel handles that). */
static bool max_pool_is_2x2(const pool_geom *g) {
    return g->KH == 2 && g->KW == 2 && g->SH == 2 && g->SW == 2 && g->PH == 0 && g->PW == 0 && g->DH == 1 &&
           g->DW == 1 && g->OH == g->H / 2 && g->OW == g->W / 2;
}

/* GCC/clang vector extensions from ../tensor/simd.h (portable: lowered to SSE without AVX): values
 * in f32x8, i32x8, u8x32; loads and stores through f32x8_mem and u8x8_mem, at any address. */

/* Planes per parallel task: a fixed split, so that which thread writes what depends on the
 * shapes only (the row kernels below may spill junk into the next row of their own task). */
#define POOL_PLANE_BLOCK 16

/* Outputs ow .. ow+7 of one row from 16 floats of each of its two input rows: r0 = x[2oh] + 2ow,
 * r1 = x[2oh+1] + 2ow. Even elements are taps a, c; odd ones b, d. */
static inline void max_pool_2x2_block8(const float *r0, const float *r1, float *y /* (8) */,
                                       uint8_t *tap /* (8) or NULL */) {
    f32x8 l0 = *(const f32x8_mem *)r0, h0 = *(const f32x8_mem *)(r0 + 8);
    f32x8 l1 = *(const f32x8_mem *)r1, h1 = *(const f32x8_mem *)(r1 + 8);
    f32x8 tv[3] = {__builtin_shufflevector(l0, h0, 1, 3, 5, 7, 9, 11, 13, 15),
                   __builtin_shufflevector(l1, h1, 0, 2, 4, 6, 8, 10, 12, 14),
                   __builtin_shufflevector(l1, h1, 1, 3, 5, 7, 9, 11, 13, 15)};
    i32x8 m = (i32x8)__builtin_shufflevector(l0, h0, 0, 2, 4, 6, 8, 10, 12, 14), k = {0};
    for (int j = 0; j < 3; j++) {
        f32x8 v = tv[j];
        i32x8 take = ((f32x8)m < v) | (v != v); /* all ones where tap j+1 wins */
        m = (m & ~take) | ((i32x8)v & take);
        k = (k & ~take) | ((j + 1) & take);
    }
    *(f32x8_mem *)y = (f32x8)m;
    if (tap) {
        u8x32 kb = (u8x32)k; /* the low byte of each lane (little-endian) */
        *(u8x8_mem *)tap = __builtin_shufflevector(kb, kb, 0, 4, 8, 12, 16, 20, 24, 28);
    }
}

/* One output row: blocks of 8, then the last 1-7 outputs. Those are computed as a block of 8
 * too, reading past the row (inside x, checked against xend) and, when spill is true, writing
 * past it: the junk lands in the next row of the same task, which is written afterwards. */
static void max_pool_2x2_row(int64_t OW, const float *r0, const float *r1, float *y /* (OW) */,
                             uint8_t *tap /* (OW) or NULL */, bool spill, const float *xend) {
    int64_t ow = 0;
    for (; ow + 8 <= OW; ow += 8) max_pool_2x2_block8(r0 + 2 * ow, r1 + 2 * ow, y + ow, tap ? tap + ow : NULL);
    if (ow == OW) return;
    const size_t n = (size_t)(OW - ow);
    float b0[16] = {0}, b1[16] = {0}, yb[8];
    uint8_t tb[8];
    const float *s0 = r0 + 2 * ow, *s1 = r1 + 2 * ow;
    if (s1 + 16 > xend) { /* the end of x: no reading past it (rare) */
        memcpy(b0, s0, 2 * n * sizeof(float));
        memcpy(b1, s1, 2 * n * sizeof(float));
        s0 = b0, s1 = b1;
    }
    if (spill) {
        max_pool_2x2_block8(s0, s1, y + ow, tap ? tap + ow : NULL);
        return;
    }
    max_pool_2x2_block8(s0, s1, yb, tb);
    memcpy(y + ow, yb, n * sizeof(float));
    if (tap) memcpy(tap + ow, tb, n);
}

/* y[oh, ow] = max of the window, tap[oh, ow] = its argmax (0..3), when tap is not NULL. */
static void max_pool_2x2_forward(const pool_geom *g, const float *x /* (planes, H, W) */,
                                 float *y /* (planes, OH, OW) */, uint8_t *tap /* (planes, OH, OW) or NULL */) {
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const int64_t blocks = (g->planes + POOL_PLANE_BLOCK - 1) / POOL_PLANE_BLOCK;
    const float *xend = x + g->planes * H * W;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks > 1 && g->planes * H * W > 65536)
#endif
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t p0 = blk * POOL_PLANE_BLOCK, p1 = p0 + POOL_PLANE_BLOCK < g->planes ? p0 + POOL_PLANE_BLOCK : g->planes;
        for (int64_t pl = p0; pl < p1; pl++)
            for (int64_t oh = 0; oh < OH; oh++) {
                const float *r0 = x + (pl * H + 2 * oh) * W;
                int64_t o = (pl * OH + oh) * OW;
                /* spill: the 8-output block at the row's end stays inside the task's outputs */
                bool spill = o + OW / 8 * 8 + 8 <= p1 * OH * OW;
                max_pool_2x2_row(OW, r0, r0 + W, y + o, tap ? tap + o : NULL, spill, xend);
            }
    }
}

/* PyTorch's int64 indices (h * W + w in each plane) from the taps. */
static void max_pool_2x2_indices(const pool_geom *g, const uint8_t *tap /* (planes, OH, OW) */,
                                 int64_t *idx /* (planes, OH, OW) */) {
    for (int64_t pl = 0; pl < g->planes; pl++)
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t o = (pl * g->OH + oh) * g->OW + ow, k = tap[o];
                idx[o] = (2 * oh + (k >> 1)) * g->W + 2 * ow + (k & 1);
            }
}

/* dx rows 2oh, 2oh+1 at columns 2ow .. 2ow+15 (d0, d1) from dy and the taps of outputs ow .. ow+7:
 * dy where the tap is the argmax, +0 elsewhere. 0 + dy, not dy, so that a -0 gradient gives +0
 * as the generic kernel's (and ATen's) accumulation into zeros does. */
static inline void max_pool_2x2_unblock8(const float *dy /* (8) */, const uint8_t *tap /* (8) */,
                                         float *d0 /* (16) */, float *d1 /* (16) */) {
    i32x8 v = (i32x8)(*(const f32x8_mem *)dy + 0.0f), k = __builtin_convertvector(*(const u8x8_mem *)tap, i32x8);
    f32x8 a = (f32x8)(v & (k == 0)), b = (f32x8)(v & (k == 1)), c = (f32x8)(v & (k == 2)), d = (f32x8)(v & (k == 3));
    *(f32x8_mem *)d0 = __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
    *(f32x8_mem *)(d0 + 8) = __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
    *(f32x8_mem *)d1 = __builtin_shufflevector(c, d, 0, 8, 1, 9, 2, 10, 3, 11);
    *(f32x8_mem *)(d1 + 8) = __builtin_shufflevector(c, d, 4, 12, 5, 13, 6, 14, 7, 15);
}

/* One output row's two dx rows: the last 1-7 outputs first, as a block of 8 reading past the
 * row (dy and the taps have room: see tap_buffer) and, when spill is true, writing past it
 * (into d1, rewritten next, and into the next row pair of the task); then the full blocks. */
static void max_pool_2x2_backward_row(int64_t OW, const float *dy /* (OW) */, const uint8_t *tap /* (OW) */,
                                      float *d0 /* (2 OW) */, float *d1 /* (2 OW) */, bool spill,
                                      const float *dyend) {
    const int64_t full = OW / 8 * 8;
    if (full < OW) {
        const size_t n = (size_t)(OW - full);
        float gb[8] = {0}, b0[16], b1[16];
        const float *g = dy + full;
        if (g + 8 > dyend) { /* the end of dy (rare) */
            memcpy(gb, g, n * sizeof(float));
            g = gb;
        }
        if (spill) {
            max_pool_2x2_unblock8(g, tap + full, d0 + 2 * full, d1 + 2 * full);
        } else {
            max_pool_2x2_unblock8(g, tap + full, b0, b1);
            memcpy(d0 + 2 * full, b0, 2 * n * sizeof(float));
            memcpy(d1 + 2 * full, b1, 2 * n * sizeof(float));
        }
    }
    for (int64_t ow = 0; ow < full; ow += 8) max_pool_2x2_unblock8(dy + ow, tap + ow, d0 + 2 * ow, d1 + 2 * ow);
}

/* dx[2oh + k/2, 2ow + k%2] = dy[oh, ow] for the argmax tap k, 0 elsewhere, including the row and
 * column no window covers when H or W is odd: every element written once, no zero-fill. */
static void max_pool_2x2_backward(const pool_geom *g, const float *dy /* (planes, OH, OW) */,
                                  const uint8_t *tap /* (planes, OH, OW), readable 8 bytes past the end */,
                                  float *dx /* (planes, H, W) */) {
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const int64_t blocks = (g->planes + POOL_PLANE_BLOCK - 1) / POOL_PLANE_BLOCK;
    const float *dyend = dy + g->planes * OH * OW;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks > 1 && g->planes * H * W > 65536)
#endif
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t p0 = blk * POOL_PLANE_BLOCK, p1 = p0 + POOL_PLANE_BLOCK < g->planes ? p0 + POOL_PLANE_BLOCK : g->planes;
        for (int64_t pl = p0; pl < p1; pl++) {
            float *dxp = dx + pl * H * W;
            for (int64_t oh = 0; oh < OH; oh++) {
                float *d0 = dxp + 2 * oh * W, *d1 = d0 + W;
                int64_t o = (pl * OH + oh) * OW;
                /* spill: the 16 floats written from d1 at the row's end stay inside the task's dx */
                bool spill = (d1 - dx) + 2 * (OW / 8 * 8) + 16 <= p1 * H * W;
                max_pool_2x2_backward_row(OW, dy + o, tap + o, d0, d1, spill, dyend);
                if (W & 1) d0[W - 1] = d1[W - 1] = 0.0f;
            }
            if (H & 1) memset(dxp + (H - 1) * W, 0, (size_t)W * sizeof *dxp);
        }
    }
}

static void geom_from_node_planes(const ag_node *node, pool_geom *g) {
    const ag_edge *e = &node->inputs[0];
    g->H = e->shape[e->ndim - 2];
    g->W = e->shape[e->ndim - 1];
    g->OH = node->out_shape[node->out_ndim - 2];
    g->OW = node->out_shape[node->out_ndim - 1];
    g->planes = torch_shape_numel(e->ndim - 2, e->shape);
}

/* saved[0] = int64 indices (the output's shape), or, when ints[0] = 1 (the 2x2 kernels), the
 * argmax taps: one byte per output in the storage of an int64 tensor (see tap_buffer). */
static torch_status max_pool2d_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    pool_geom g = {0};
    geom_from_node_planes(node, &g);
    g.KH = g.KW = 1; /* only for POOL_PARALLEL's work estimate */
    const bool taps = node->ints[0] == 1;
    const ag_edge *e = &node->inputs[0];
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = taps ? torch_empty(e->ndim, e->shape) : torch_zeros(e->ndim, e->shape); /* taps write all of dx */
    if (!dy || !dx) {
        tensor_free(dy), tensor_free(dx);
        return torch_last_status();
    }
    if (taps)
        max_pool_2x2_backward(&g, tensor_data_f32(dy), (const uint8_t *)tensor_data_i64(node->saved[0]),
                              tensor_data_f32(dx));
    else
        max_pool_backward_kernel(&g, tensor_data_f32(dy), tensor_data_i64(node->saved[0]), tensor_data_f32(dx));
    tensor_free(dy);
    grad_inputs[0] = dx;
    return TORCH_OK;
}

static const ag_function max_pool2d_function = {.op = AG_OP_MAX_POOL2D,
                                                .backward = max_pool2d_backward};

/* n bytes in the storage of an int64 tensor, so that a graph node can own them, plus 8 zero
 * bytes that the kernels may read past the end. */
static tensor *tap_buffer(int64_t n) {
    int64_t words = (n + 7) / 8 + 1;
    tensor *t = torch_empty_dtype(TORCH_INT64, 1, &words);
    if (t) memset((uint8_t *)tensor_data_i64(t) + n, 0, (size_t)(8 * words - n));
    return t;
}

static tensor *max_pool2d_impl(const char *fname, tensor *input, const nn_max_pool2d_options *o, tensor **indices) {
    pool_geom g;
    int64_t stride[2];
    resolve_stride(stride, o->stride, o->kernel_size);
    if (indices) *indices = NULL;
    if (pool_check(fname, input, o->kernel_size, stride, o->padding, o->dilation, o->ceil_mode, &g) != TORCH_OK)
        return NULL;
    const bool fast = max_pool_is_2x2(&g), record = ag_should_record(1, &input);
    tensor *xc = tensor_contiguous(input);
    tensor *y = pool_output(input, g.OH, g.OW, TORCH_FLOAT32);
    tensor *idx = !fast || indices ? pool_output(input, g.OH, g.OW, TORCH_INT64) : NULL;
    tensor *taps = fast && (record || indices) ? tap_buffer(y ? y->numel : 0) : NULL;
    if (!xc || !y || ((!fast || indices) && !idx) || (fast && (record || indices) && !taps)) {
        tensor_free(xc), tensor_free(y), tensor_free(idx), tensor_free(taps);
        return NULL;
    }
    uint8_t *tp = taps ? (uint8_t *)tensor_data_i64(taps) : NULL;
    if (fast) {
        max_pool_2x2_forward(&g, tensor_data_f32(xc), tensor_data_f32(y), tp);
        if (idx) max_pool_2x2_indices(&g, tp, tensor_data_i64(idx));
    } else {
        max_pool_forward_kernel(&g, tensor_data_f32(xc), tensor_data_f32(y), tensor_data_i64(idx));
    }
    tensor_free(xc);
    if (record) {
        ag_node *node = ag_record(&max_pool2d_function, y, 1, &input);
        if (!node || ag_node_save(node, 0, fast ? taps : idx) != TORCH_OK) {
            tensor_free(y), tensor_free(idx), tensor_free(taps);
            return NULL;
        }
        node->ints[0] = fast;
    }
    tensor_free(taps);
    if (indices) *indices = idx;
    else tensor_free(idx);
    return y;
}

tensor *nnf_max_pool2d(tensor *input, nn_max_pool2d_options options, tensor **indices) {
    return max_pool2d_impl("nnf_max_pool2d", input, &options, indices);
}

/* ---- average pool ------------------------------------------------------------------------------- */

/* The window of output (oh, ow), clipped to the input, and its divisor (ATen's avg_pool2d). */
static void avg_window(const pool_geom *g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1,
                       double *div) {
    int64_t hs = oh * g->SH - g->PH, ws = ow * g->SW - g->PW;
    int64_t he = hs + g->KH < g->H + g->PH ? hs + g->KH : g->H + g->PH;
    int64_t we = ws + g->KW < g->W + g->PW ? ws + g->KW : g->W + g->PW;
    /* the window inside the padded input; in double, since an absurd padding overflows int64 */
    double pool_size = (double)(he - hs) * (double)(we - ws);
    *h0 = hs > 0 ? hs : 0, *w0 = ws > 0 ? ws : 0;
    *h1 = he < g->H ? he : g->H, *w1 = we < g->W ? we : g->W;
    *div = g->count_include_pad ? pool_size : (double)((*h1 - *h0) * (*w1 - *w0));
}

/* y[oh, ow] = sum over the clipped window / divisor (0 for a window entirely in the padding). */
static void avg_pool_forward_kernel(const pool_geom *g, const float *x /* (planes, H, W) */,
                                    float *y /* (planes, OH, OW) */) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (POOL_PARALLEL(g))
#endif
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const float *xp = x + pl * g->H * g->W;
        float *yp = y + pl * g->OH * g->OW;
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t h0, h1, w0, w1;
                double div;
                avg_window(g, oh, ow, &h0, &h1, &w0, &w1, &div);
                if (h0 >= h1 || w0 >= w1) {
                    yp[oh * g->OW + ow] = 0.0f;
                    continue;
                }
                double s = 0.0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * g->W + iw];
                yp[oh * g->OW + ow] = (float)(s / div);
            }
    }
}

/* Backward of a mean over a window: every input tap of the window gets dy / divisor:
 *   dx[plane, ih, iw] += dy[plane, oh, ow] / div(oh, ow)   for (ih, iw) in the clipped window. */
static void avg_pool_backward_kernel(const pool_geom *g, const float *dy /* (planes, OH, OW) */,
                                     float *dx /* (planes, H, W) zeroed */) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (POOL_PARALLEL(g))
#endif
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const float *d = dy + pl * g->OH * g->OW;
        float *dxp = dx + pl * g->H * g->W;
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t h0, h1, w0, w1;
                double div;
                avg_window(g, oh, ow, &h0, &h1, &w0, &w1, &div);
                if (h0 >= h1 || w0 >= w1) continue;
                float v = d[oh * g->OW + ow] / (float)div;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) dxp[ih * g->W + iw] += v;
            }
    }
}

/* ints = kernel (2), stride (2), padding (2), count_include_pad. */
static torch_status avg_pool2d_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    pool_geom g = {0};
    geom_from_node_planes(node, &g);
    g.KH = node->ints[0], g.KW = node->ints[1], g.SH = node->ints[2], g.SW = node->ints[3];
    g.PH = node->ints[4], g.PW = node->ints[5], g.count_include_pad = node->ints[6] != 0;
    const ag_edge *e = &node->inputs[0];
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = torch_zeros(e->ndim, e->shape);
    if (!dy || !dx) {
        tensor_free(dy), tensor_free(dx);
        return torch_last_status();
    }
    avg_pool_backward_kernel(&g, tensor_data_f32(dy), tensor_data_f32(dx));
    tensor_free(dy);
    grad_inputs[0] = dx;
    return TORCH_OK;
}

static const ag_function avg_pool2d_function = {.op = AG_OP_AVG_POOL2D, .backward = avg_pool2d_backward};

static tensor *avg_pool2d_impl(const char *fname, tensor *input, const nn_avg_pool2d_options *o) {
    pool_geom g;
    int64_t stride[2];
    resolve_stride(stride, o->stride, o->kernel_size);
    if (pool_check(fname, input, o->kernel_size, stride, o->padding, NULL, o->ceil_mode, &g) != TORCH_OK) return NULL;
    g.count_include_pad = o->count_include_pad;
    tensor *xc = tensor_contiguous(input);
    tensor *y = pool_output(input, g.OH, g.OW, TORCH_FLOAT32);
    if (!xc || !y) {
        tensor_free(xc), tensor_free(y);
        return NULL;
    }
    avg_pool_forward_kernel(&g, tensor_data_f32(xc), tensor_data_f32(y));
    tensor_free(xc);
    if (ag_should_record(1, &input)) {
        ag_node *node = ag_record(&avg_pool2d_function, y, 1, &input);
        if (!node) {
            tensor_free(y);
            return NULL;
        }
        int64_t v[7] = {g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.count_include_pad};
        memcpy(node->ints, v, sizeof v);
    }
    return y;
}

tensor *nnf_avg_pool2d(tensor *input, nn_avg_pool2d_options options) {
    return avg_pool2d_impl("nnf_avg_pool2d", input, &options);
}

/* ---- adaptive average pool ------------------------------------------------------------------------ */

static int64_t start_index(int64_t o, int64_t out, int64_t in) { return (o * in) / out; }
static int64_t end_index(int64_t o, int64_t out, int64_t in) { return ((o + 1) * in + out - 1) / out; }

/* y[i, j] = mean of x over rows [start(i), end(i)) and columns [start(j), end(j)). */
static void adaptive_avg_forward_kernel(const pool_geom *g, const float *x /* (planes, H, W) */,
                                        float *y /* (planes, OH, OW) */) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (g->planes > 1 && g->planes * g->H * g->W > 32768)
#endif
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const float *xp = x + pl * g->H * g->W;
        float *yp = y + pl * g->OH * g->OW;
        for (int64_t oh = 0; oh < g->OH; oh++) {
            int64_t h0 = start_index(oh, g->OH, g->H), h1 = end_index(oh, g->OH, g->H);
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t w0 = start_index(ow, g->OW, g->W), w1 = end_index(ow, g->OW, g->W);
                double s = 0.0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * g->W + iw];
                yp[oh * g->OW + ow] = (float)(s / (double)((h1 - h0) * (w1 - w0)));
            }
        }
    }
}

/* Backward of a mean over a cell: dx[ih, iw] += dy[i, j] / cell area for each cell containing
 * (ih, iw) (neighbouring cells overlap when the size does not divide evenly). */
static void adaptive_avg_backward_kernel(const pool_geom *g, const float *dy /* (planes, OH, OW) */,
                                         float *dx /* (planes, H, W) zeroed */) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (g->planes > 1 && g->planes * g->H * g->W > 32768)
#endif
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const float *d = dy + pl * g->OH * g->OW;
        float *dxp = dx + pl * g->H * g->W;
        for (int64_t oh = 0; oh < g->OH; oh++) {
            int64_t h0 = start_index(oh, g->OH, g->H), h1 = end_index(oh, g->OH, g->H);
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t w0 = start_index(ow, g->OW, g->W), w1 = end_index(ow, g->OW, g->W);
                float v = d[oh * g->OW + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) dxp[ih * g->W + iw] += v;
            }
        }
    }
}

static torch_status adaptive_avg_pool2d_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    pool_geom g = {0};
    geom_from_node_planes(node, &g);
    const ag_edge *e = &node->inputs[0];
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = torch_zeros(e->ndim, e->shape);
    if (!dy || !dx) {
        tensor_free(dy), tensor_free(dx);
        return torch_last_status();
    }
    adaptive_avg_backward_kernel(&g, tensor_data_f32(dy), tensor_data_f32(dx));
    tensor_free(dy);
    grad_inputs[0] = dx;
    return TORCH_OK;
}

static const ag_function adaptive_avg_pool2d_function = {.op = AG_OP_ADAPTIVE_AVG_POOL2D,
                                                         .backward = adaptive_avg_pool2d_backward};

static tensor *adaptive_avg_pool2d_impl(const char *fname, tensor *input, int64_t oh, int64_t ow) {
    char buf[96];
    if (torch_check_float32(fname, "input", input) != TORCH_OK) return NULL;
    if (oh <= 0 || ow <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: output_size must be > 0 (got (%lld, %lld))", fname, (long long)oh,
                    (long long)ow);
        return NULL;
    }
    bool ok = input->ndim == 3 || input->ndim == 4;
    for (int i = input->ndim - 2; ok && i < input->ndim; i++) ok = input->shape[i] > 0;
    if (!ok) {
        torch_error(TORCH_ERR_SHAPE, "%s: Expected 3D or 4D tensor with non-zero height and width, but got %s", fname,
                    torch_shape_str(input->ndim, input->shape, buf, sizeof buf));
        return NULL;
    }
    pool_geom g = {0};
    g.H = input->shape[input->ndim - 2];
    g.W = input->shape[input->ndim - 1];
    g.planes = input->numel / (g.H * g.W);
    g.OH = oh, g.OW = ow;
    tensor *xc = tensor_contiguous(input);
    tensor *y = pool_output(input, oh, ow, TORCH_FLOAT32);
    if (!xc || !y) {
        tensor_free(xc), tensor_free(y);
        return NULL;
    }
    adaptive_avg_forward_kernel(&g, tensor_data_f32(xc), tensor_data_f32(y));
    tensor_free(xc);
    if (ag_should_record(1, &input) && !ag_record(&adaptive_avg_pool2d_function, y, 1, &input)) {
        tensor_free(y);
        return NULL;
    }
    return y;
}

tensor *nnf_adaptive_avg_pool2d(tensor *input, int64_t out_h, int64_t out_w) {
    return adaptive_avg_pool2d_impl("nnf_adaptive_avg_pool2d", input, out_h, out_w);
}

/* ---- modules ----------------------------------------------------------------------------------- */

static tensor *max_pool2d_forward(nn_module *self, tensor *input) {
    return max_pool2d_impl("MaxPool2d", input, &((nn_max_pool2d_module *)self)->options, NULL);
}

static int max_pool2d_extra_repr(const nn_module *self, char *buf, size_t len) {
    const nn_max_pool2d_options *o = &((const nn_max_pool2d_module *)self)->options;
    char k[48], s[48], p[48], d[48];
    return snprintf(buf, len, "kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s",
                    pair_str(o->kernel_size, k, sizeof k), pair_str(o->stride, s, sizeof s),
                    pair_str(o->padding, p, sizeof p), pair_str(o->dilation, d, sizeof d),
                    o->ceil_mode ? "True" : "False");
}

static nn_module *max_pool2d_new_like(const nn_module *self) {
    return nn_max_pool2d(((const nn_max_pool2d_module *)self)->options);
}

static const nn_module_ops max_pool2d_ops = {.type_name = "MaxPool2d",
                                             .forward = max_pool2d_forward,
                                             .extra_repr = max_pool2d_extra_repr,
                                             .new_like = max_pool2d_new_like};

nn_max_pool2d_options nn_max_pool2d_options_default(int64_t kernel_size) {
    nn_max_pool2d_options o = {.kernel_size = {kernel_size, kernel_size}, .dilation = {1, 1}};
    return o;
}

nn_module *nn_max_pool2d(nn_max_pool2d_options options) {
    resolve_stride(options.stride, options.stride, options.kernel_size);
    if (pool_check_params("MaxPool2d", options.kernel_size, options.stride, options.padding, options.dilation) !=
        TORCH_OK)
        return NULL;
    nn_max_pool2d_module *m = nn_module_alloc(sizeof *m, &max_pool2d_ops);
    if (!m) return NULL;
    m->options = options;
    return &m->base;
}

nn_max_pool2d_module *nn_as_max_pool2d(nn_module *m) { return m && m->ops == &max_pool2d_ops ? (nn_max_pool2d_module *)m : NULL; }

static tensor *avg_pool2d_forward(nn_module *self, tensor *input) {
    return avg_pool2d_impl("AvgPool2d", input, &((nn_avg_pool2d_module *)self)->options);
}

static int avg_pool2d_extra_repr(const nn_module *self, char *buf, size_t len) {
    const nn_avg_pool2d_options *o = &((const nn_avg_pool2d_module *)self)->options;
    char k[48], s[48], p[48];
    return snprintf(buf, len, "kernel_size=%s, stride=%s, padding=%s", pair_str(o->kernel_size, k, sizeof k),
                    pair_str(o->stride, s, sizeof s), pair_str(o->padding, p, sizeof p));
}

static nn_module *avg_pool2d_new_like(const nn_module *self) {
    return nn_avg_pool2d(((const nn_avg_pool2d_module *)self)->options);
}

static const nn_module_ops avg_pool2d_ops = {.type_name = "AvgPool2d",
                                             .forward = avg_pool2d_forward,
                                             .extra_repr = avg_pool2d_extra_repr,
                                             .new_like = avg_pool2d_new_like};

nn_avg_pool2d_options nn_avg_pool2d_options_default(int64_t kernel_size) {
    nn_avg_pool2d_options o = {.kernel_size = {kernel_size, kernel_size}, .count_include_pad = true};
    return o;
}

nn_module *nn_avg_pool2d(nn_avg_pool2d_options options) {
    static const int64_t one[2] = {1, 1};
    resolve_stride(options.stride, options.stride, options.kernel_size);
    if (pool_check_params("AvgPool2d", options.kernel_size, options.stride, options.padding, one) != TORCH_OK)
        return NULL;
    nn_avg_pool2d_module *m = nn_module_alloc(sizeof *m, &avg_pool2d_ops);
    if (!m) return NULL;
    m->options = options;
    return &m->base;
}

nn_avg_pool2d_module *nn_as_avg_pool2d(nn_module *m) { return m && m->ops == &avg_pool2d_ops ? (nn_avg_pool2d_module *)m : NULL; }

static tensor *adaptive_avg_pool2d_forward(nn_module *self, tensor *input) {
    const nn_adaptive_avg_pool2d_module *m = (const nn_adaptive_avg_pool2d_module *)self;
    return adaptive_avg_pool2d_impl("AdaptiveAvgPool2d", input, m->options.output_size[0], m->options.output_size[1]);
}

static int adaptive_avg_pool2d_extra_repr(const nn_module *self, char *buf, size_t len) {
    const nn_adaptive_avg_pool2d_module *m = (const nn_adaptive_avg_pool2d_module *)self;
    return snprintf(buf, len, "output_size=(%lld, %lld)", (long long)m->options.output_size[0],
                    (long long)m->options.output_size[1]);
}

static nn_module *adaptive_avg_pool2d_new_like(const nn_module *self) {
    return nn_adaptive_avg_pool2d(((const nn_adaptive_avg_pool2d_module *)self)->options);
}

static const nn_module_ops adaptive_avg_pool2d_ops = {.type_name = "AdaptiveAvgPool2d",
                                                      .forward = adaptive_avg_pool2d_forward,
                                                      .extra_repr = adaptive_avg_pool2d_extra_repr,
                                                      .new_like = adaptive_avg_pool2d_new_like};

nn_adaptive_avg_pool2d_options nn_adaptive_avg_pool2d_options_default(int64_t out_h, int64_t out_w) {
    return NN_ADAPTIVE_AVG_POOL2D_OPTIONS(.output_size = {out_h, out_w});
}

nn_module *nn_adaptive_avg_pool2d(nn_adaptive_avg_pool2d_options options) {
    int64_t out_h = options.output_size[0], out_w = options.output_size[1];
    if (out_h <= 0 || out_w <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "AdaptiveAvgPool2d: output_size must be > 0 (got (%lld, %lld))",
                    (long long)out_h, (long long)out_w);
        return NULL;
    }
    nn_adaptive_avg_pool2d_module *m = nn_module_alloc(sizeof *m, &adaptive_avg_pool2d_ops);
    if (!m) return NULL;
    m->options = options;
    return &m->base;
}

nn_adaptive_avg_pool2d_module *nn_as_adaptive_avg_pool2d(nn_module *m) {
    return m && m->ops == &adaptive_avg_pool2d_ops ? (nn_adaptive_avg_pool2d_module *)m : NULL;
}
