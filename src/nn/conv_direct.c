/* conv_direct.c — the small-K kernels of nnf_conv2d: direct, register-blocked loops over the
 * im2col columns for convolutions whose reduction K = C_in*kH*kW is at most 32 (a first layer on
 * grey or RGB images: K = 9 or 27), where sgemm would spend its time packing. conv_im2col.c builds
 * the columns and calls these in place of sgemm for y and dweight; the input gradient still goes
 * through sgemm and col2im.
 *
 * Private to src/nn (declared in conv_kernels.h, whose ownership rules apply: every pointer is
 * borrowed, nothing is allocated or freed here).
 */
#include "conv_kernels.h"

#include <string.h>

#include "../tensor/simd.h"

/* ---- short reductions: register-blocked kernels --------------------------------------------------
 * With K = 9 (one input channel, 3x3) an sgemm spends its time packing and runs at a third of its
 * speed. These kernels keep a block of outputs in vector registers and stream the im2col columns
 * once per block. GCC/clang vector extensions (../tensor/simd.h): portable (SSE without AVX), loads
 * and stores through f32x8_mem at any float address. Each output is summed over k in increasing
 * order, whatever the thread count. */

#define SK_O 4 /* output channels per block of the forward */

/* y[o, p] = bias[o] + sum_k w[o, k] * col[k, p] for one image, in blocks of 4 channels x 16
 * positions (8 accumulators). col has row pitch ldc >= P rounded up to 16; the last block's
 * surplus positions are computed from whatever col holds there and not stored. */
void conv_small_k_forward(int64_t O, int64_t K, int64_t P, int64_t ldc, const float *w /* (O, K) */,
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
                f32x8 c0 = *(const f32x8_mem *)(col + k * ldc + p0);
                f32x8 c1 = *(const f32x8_mem *)(col + k * ldc + p0 + 8);
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
                    *(f32x8_mem *)out = acc[j][0];
                    *(f32x8_mem *)(out + 8) = acc[j][1];
                } else {
                    float t[SK_P];
                    *(f32x8_mem *)t = acc[j][0];
                    *(f32x8_mem *)(t + 8) = acc[j][1];
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
void conv_small_k_weight_grad(int64_t O, int64_t K, int64_t P, int64_t ldc, const float *dy /* (O, P) */,
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
                f32x8 a = *(const f32x8_mem *)(c0 + p), b = *(const f32x8_mem *)(c1 + p);
                for (int j = 0; j < SK_O; j++) {
                    f32x8 d = *(const f32x8_mem *)(dr[j] + p);
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

/* Zeroes the parts of a small-K col that im2col never writes (the pad columns and the zero row),
 * so that no kernel reads uninitialised memory. */
void conv_small_k_col_init(const conv_geom *g, float *col /* (K + 1, ldc) */) {
    for (int64_t k = 0; k < g->K; k++)
        memset(col + k * g->ldc + g->P, 0, (size_t)(g->ldc - g->P) * sizeof(float));
    memset(col + g->K * g->ldc, 0, (size_t)g->ldc * sizeof(float));
}
