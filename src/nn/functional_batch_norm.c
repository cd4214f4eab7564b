/* functional_batch_norm.c — nnf_batch_norm: per-channel statistics, the fused forward, its
 * analytic backward (one NativeBatchNormBackward0 node), the same followed by ReLU in the same
 * passes (nnf_batch_norm_relu), and ghost batch normalization (nnf_ghost_batch_norm): the same
 * kernels run on each sub-batch in turn, one node holding each sub-batch's statistics. The
 * composite teaching reference, nnf_batch_norm_composite, is in functional_batch_norm_composite.c;
 * the argument checks both use are declared in batch_norm_internal.h.
 *
 * Layout: an (N, C, *) input is seen as (N, C, S) with S = prod(*): N * C planes of S contiguous
 * floats, plane p = n * C + c belonging to channel c. Channel c has M = N * S values.
 *
 * Speed: BatchNorm does a few flops per float, so its cost is memory traffic, and the kernels are
 * laid out for it. With short planes, every pass walks the planes in memory order (the hardware
 * prefetchers serve that far better than hopping between one channel's planes), split between
 * threads statically: a reduction pass leaves one partial per plane, a short per-channel step adds
 * them up, an element-wise pass writes the output with per-channel constants:
 *   training forward  x -> per-plane sums of d, d^2 -> mean, invstd -> y           x read twice
 *   eval forward      running statistics -> y                                      x read once
 *   backward          x, dy -> per-plane sums of dy, dy (x - mean) -> dx           x, dy read twice
 * With planes of 4 KiB or more, the training passes go channel by channel instead (by_channel):
 * a channel's second read then comes from the thread's own L2/L3, not from memory. A fused ReLU
 * clamps in the normalise pass, and both backward passes mask dy where they recompute (from x,
 * which they read anyway) that it clamped: it costs no pass and no traffic of its own. Nothing is
 * zero-filled, nothing is allocated per element.
 *
 * Determinism: the order of every floating-point addition is fixed by the shape alone: lanes
 * within a plane, then planes in n order within a channel. Which thread reduced a plane never
 * matters, so results are bit-identical whatever the thread count.
 *
 * Precision (float32 data; worst error against a float64 reference ~1e-7 relative):
 *   - reductions run in double on terms that are exact or nearly so: a float widened to double,
 *     the difference of two floats (exact in double), its square (exact: at most 50 bits), the
 *     product of dy and x - mean (two double roundings at most). Mainly the additions round.
 *   - statistics are shifted: with K the channel's first value and d = x - K,
 *       mean = K + sum(d) / M,   m2 = sum((x - mean)^2) = sum(d^2) - sum(d)^2 / M.
 *     K is one of the values, so (K - mean)^2 <= M var and the subtraction loses at most log10(M)
 *     of double's 16 digits. (E[x^2] - E[x]^2 in float loses all 7 of float's when mean = 1e4, std = 1.)
 *   - the normalisation y = a (x - mean) + beta runs in float, 8 values per instruction (this pass
 *     has to keep up with a plain copy), with mean and a each split into two floats and fused
 *     multiply-adds: ~1.5 float roundings. It subtracts the mean first; the naive x * scale + shift
 *     cancels ~1e4 against ~1e4 for the input above and loses ~1e-3.
 *   - dx = a dy + b x + d runs in double: its terms nearly cancel in small channels, where float
 *     would lose up to ~5e-7.
 */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include "batch_norm.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "../autograd/ops.h"
#include "../tensor/parallel.h"
#include "../tensor/simd.h"
#include "batch_norm_internal.h"

/* Below this many input elements the kernels stay on one thread (the fork costs more). */
#define BN_PARALLEL_MIN 32768

/* Planes shorter than this are reduced channel by channel, without the array of per-plane
 * partials (which would outweigh the data). The sums are the same either way. */
#define BN_PLANE_MIN 16

/* Planes at least this long (4 KiB) may be processed channel by channel (see by_channel). Shorter
 * ones are better streamed in memory order: measured on (64, 64, 14, 14), a channel-by-channel
 * backward took twice as long, its short scattered planes defeating the hardware prefetcher. */
#define BN_CHANNEL_MIN 1024

/* What the backward needs besides the saved input and weight, per (sub-)batch: one block for
 * nnf_batch_norm, one per ghost sub-batch after another for nnf_ghost_batch_norm, all of
 * BN_CTX_BYTES(C) (ctx_block). */
typedef struct bn_ctx {
    int64_t N, C, S;  /* this block's batch: N rows of C planes of S values */
    int64_t groups;   /* how many blocks the node holds (1 unless ghost); the same in each */
    bool    training; /* batch statistics (true) or constant running statistics (false) */
    bool    relu;     /* a ReLU follows (nnf_batch_norm_relu) */
    double  data[];   /* mean[C], invstd[C], then the forward's C bn_normalise (ctx_normalise) */
} bn_ctx;

/* Bytes of a bn_ctx block for C channels (a multiple of 8, so that blocks follow one another). */
#define BN_CTX_BYTES(C) (sizeof(bn_ctx) + 4 * (size_t)(C) * sizeof(double))

static bn_ctx *ctx_block(const bn_ctx *ctx, int64_t g) {
    return (bn_ctx *)((char *)ctx + (size_t)g * BN_CTX_BYTES(ctx->C));
}

/* Rows [*first, *first + *rows) of sub-batch g when N rows are split into G as torch.tensor_split
 * splits them: sizes as equal as can be, the first N % G sub-batches one row longer. */
static void sub_batch(int64_t N, int64_t G, int64_t g, int64_t *first, int64_t *rows) {
    const int64_t q = N / G, r = N % G;
    *first = g * q + (g < r ? g : r);
    *rows = q + (g < r);
}

/* ---- SIMD --------------------------------------------------------------------------------------- */

/* f64x4: four doubles in one register (../tensor/simd.h: one AVX register, or a pair of SSE2
 * registers on a baseline x86-64 build). Arithmetic on them is lane by lane, so the order of the
 * additions is still the one written in the code. f32x4_mem: 4 floats loaded or stored anywhere. */

/* LOAD4D(p): floats p[0..3] widened to doubles (exactly); STORE4F(p, v): v rounded to floats in
 * p[0..3]. GCC 12 converts generic vectors clumsily, so AVX builds name the instructions. */
#ifdef __AVX__
#include <immintrin.h>
#define LOAD4D(p)     _mm256_cvtps_pd(_mm_loadu_ps(p))
#define STORE4F(p, v) _mm_storeu_ps(p, _mm256_cvtpd_ps(v))
#else
#define LOAD4D(p)     __builtin_convertvector(*(const f32x4_mem *)(p), f64x4)
#define STORE4F(p, v) (*(f32x4_mem *)(p) = __builtin_convertvector(v, f32x4))
#endif

/* MADD4(a, b, c) = a * b + c on f64x4, one instruction (and one rounding) where the CPU has FMA. */
#ifdef __FMA__
#define MADD4(a, b, c) _mm256_fmadd_pd(a, b, c)
#else
#define MADD4(a, b, c) ((a) * (b) + (c))
#endif

/* FMAF(a, b, c) = a * b + c on floats, fused where the CPU has FMA (C99's FP_FAST_FMAF; the compiler
 * vectorises it); a multiply and an add elsewhere, where fmaf would be a slow library call. */
#ifdef FP_FAST_FMAF
#define FMAF(a, b, c) fmaf(a, b, c)
#else
#define FMAF(a, b, c) ((a) * (b) + (c))
#endif

/* Streaming stores (AVX builds): the output of a pass that walks through more than the cache
 * cannot still be there when the next layer reads it (stream_outputs), so writing it past the
 * caches costs that layer nothing and saves the read a normal store makes of every line it fills
 * (a third of a copy's traffic), and it leaves the cache to the input, which the backward reads
 * again. STREAM4F(p, v) is STORE4F for 16-byte
 * aligned p, STREAM8(p, v) stores 8 floats at 32-byte aligned p; a thread ends its streaming
 * with STREAM_FENCE (the stores are weakly ordered). The values are those of the plain loops. */
#ifdef __AVX__
#define CAN_STREAM 1
#define STREAM4F(p, v)       _mm_stream_ps(p, _mm256_cvtpd_ps(v))
#define STREAM8(p, v)        _mm256_stream_ps(p, v)
#define STREAM_FENCE(stream) ((stream) ? _mm_sfence() : (void)0)
#ifdef FP_FAST_FMAF /* as FMAF */
#define FMA8(a, b, c) _mm256_fmadd_ps(a, b, c)
#else
#define FMA8(a, b, c) _mm256_add_ps(_mm256_mul_ps(a, b), c)
#endif
#else
#define CAN_STREAM           0
#define STREAM_FENCE(stream) ((void)(stream))
#endif

/* Streamed stores fill whole 64-byte cache lines only. A line written partly past the caches and
 * partly through them -- a plane's first and last lines, which it shares with its neighbours when
 * S is not a multiple of 16 -- leaves the write-combining buffer in pieces, each a memory
 * transaction of its own (measured: forward+backward with ReLU 0.9 -> 2.8 ms at (64, 64, 14, 14)).
 * So a streamed loop runs from the plane's first line boundary to its last; the values outside go
 * through the cache. line_head(p, S): how many of the S floats at p come before the first boundary. */
#define LINE_FLOATS 16
static inline int64_t line_head(const float *p, int64_t S) {
    const int64_t h = (int64_t)((64 - ((uintptr_t)p & 63)) & 63) / (int64_t)sizeof(float);
    return h < S ? h : S;
}

/* Whether a pass writes its output with streaming stores: when the `tensors` tensors of `numel`
 * floats it is judged by are together more than 3/8 of the last-level cache. The reported size is
 * the whole package's and can be far more than one core reaches (256 MiB on the 2-core VM these
 * kernels were measured on, which gets ~11 MiB), so it counts at most 32 MiB: 12 MiB here.
 *   - forward: the output alone. Measured there at (256, 16, 32, 32), 1 thread: training forward
 *     4.0-4.5 -> 2.2-2.8 ms, eval 3.0 -> 1.8-2.4 ms. At (64, 32, 28, 28), where input and output
 *     (12.8 MB) mostly fit, streaming the output made both 10-25% slower.
 *   - backward: x (unless eval without ReLU), dy and dx. It reads x and dy twice, and a dx written
 *     through the cache evicts them between the passes: at (64, 32, 28, 28) (19 MB in all)
 *     forward+backward went 2.2-2.8 -> 1.3-1.4 ms with dx streamed, 1 thread. */
static bool stream_outputs(int64_t numel, int tensors) {
#if CAN_STREAM
    const double max_l3 = 32.0 * (1 << 20), l3 = (double)sysconf(_SC_LEVEL3_CACHE_SIZE);
    const double limit = 0.375 * (l3 > 0 && l3 < max_l3 ? l3 : max_l3);
    return (double)numel * sizeof(float) * tensors > limit;
#else
    (void)numel, (void)tensors;
    return false;
#endif
}

/* y = a (x - mean) + beta in float, with mean = mean_hi + mean_lo and a = a_hi + a_lo each split in
 * two floats: t = x - mean_hi is exact when x is near the mean (Sterbenz's lemma), a * t is formed
 * without rounding a, and mean_lo's share goes into d. */
typedef struct bn_normalise {
    float mean_hi, a_hi, a_lo, d; /* d = beta - a mean_lo */
} bn_normalise;

static bn_normalise normalise_constants(double mean, double a, double beta) {
    const float mean_hi = (float)mean, a_hi = (float)a;
    return (bn_normalise){.mean_hi = mean_hi, .a_hi = a_hi, .a_lo = (float)(a - a_hi),
                          .d = (float)(beta - a * (mean - mean_hi))};
}

/* The forward's constants, kept in its ctx: the backward of a fused ReLU recomputes z from them. */
static bn_normalise *ctx_normalise(const bn_ctx *ctx) { return (bn_normalise *)(ctx->data + 2 * ctx->C); }

/* One value: a (x - mean) + beta, then ReLU's y < 0 ? 0 : y when `relu`. Every path below forms
 * its values this way (8 at a time in the streamed loop, with the same operations). */
static inline float normalise1(float x, const bn_normalise *k, bool relu) {
    const float t = x - k->mean_hi, v = FMAF(k->a_hi, t, FMAF(k->a_lo, t, k->d));
    return relu && v < 0.0f ? 0.0f : v;
}

/* The gradient reaching the batch norm's output z: dy itself, or, through a fused ReLU with output
 * out = max(z, 0), dz = 0 where out <= 0 and dy elsewhere (a NaN output passes dy) -- the very
 * floats ReLU's own backward would write, so fused and separate layers add the same numbers.
 * out <= 0 exactly where z <= 0, and z is recomputed from x with the forward's own constants and
 * operations (normalise1), so the backward reads no saved output: a fused ReLU costs it no traffic.
 *   GRAD8D(dy, x, rk, i, lo, hi): lo, hi = dz[i..i+3], dz[i+4..i+7] widened to doubles, rk the
 *     channel's relu8_k (NULL: no ReLU, dz = dy);
 *   GRAD1(dy, x, k, i): dz[i], k the channel's bn_normalise (or NULL).
 * (Macros: a function taking or returning 32-byte vectors would change the ABI on baseline x86-64.) */
/* f32x8, i32x8 (values) and f32x8_mem (8 floats anywhere in memory): ../tensor/simd.h. */
#define LOAD8(p) ((f32x8) * (const f32x8_mem *)(p))
#ifdef FP_FAST_FMAF /* as FMAF */
#define FMAV8(a, b, c) ((f32x8)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#else
#define FMAV8(a, b, c) ((a) * (b) + (c))
#endif
#ifdef __AVX__ /* LO4D(v), HI4D(v): lanes 0-3, 4-7 of v widened to doubles */
#define LO4D(v) _mm256_cvtps_pd(_mm256_castps256_ps128((__m256)(v)))
#define HI4D(v) _mm256_cvtps_pd(_mm256_extractf128_ps((__m256)(v), 1))
#else
#define LO4D(v) __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), f64x4)
#define HI4D(v) __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), f64x4)
#endif

/* A channel's bn_normalise, each constant in 8 lanes. */
typedef struct relu8_k {
    f32x8 mean_hi, a_hi, a_lo, d;
} relu8_k;

static void relu8_init(relu8_k *r, const bn_normalise *k) {
    const float m = k->mean_hi, ah = k->a_hi, al = k->a_lo, d = k->d;
    r->mean_hi = (f32x8){m, m, m, m, m, m, m, m}, r->a_hi = (f32x8){ah, ah, ah, ah, ah, ah, ah, ah};
    r->a_lo = (f32x8){al, al, al, al, al, al, al, al}, r->d = (f32x8){d, d, d, d, d, d, d, d};
}

/* z[i..i+7] = a (x - mean) + beta as normalise1 forms it; dz[i..i+7]: dy, +0 where z <= 0. */
#define RELU_T8(x, rk, i) (LOAD8((x) + (i)) - (rk)->mean_hi)
#define RELU_Z8(x, rk, i) FMAV8((rk)->a_hi, RELU_T8(x, rk, i), FMAV8((rk)->a_lo, RELU_T8(x, rk, i), (rk)->d))
#define DZ8(dy, x, rk, i) ((f32x8)((i32x8)LOAD8((dy) + (i)) & ~(i32x8)(RELU_Z8(x, rk, i) <= (f32x8){0})))

#define GRAD8D(dy, x, rk, i, lo, hi)                                                                                   \
    do {                                                                                                               \
        if (rk) {                                                                                                      \
            const f32x8 dz_ = DZ8(dy, x, rk, i);                                                                       \
            (lo) = LO4D(dz_), (hi) = HI4D(dz_);                                                                        \
        } else {                                                                                                       \
            (lo) = LOAD4D((dy) + (i)), (hi) = LOAD4D((dy) + (i) + 4);                                                  \
        }                                                                                                              \
    } while (0)
#define GRAD1(dy, x, k, i) ((k) && normalise1((x)[i], k, false) <= 0.0f ? 0.0f : (dy)[i])

/* rk for the plane functions: r initialised from relu_k, or NULL without a ReLU. */
static const relu8_k *relu8_or_null(relu8_k *r, const bn_normalise *relu_k) {
    if (!relu_k) return NULL;
    relu8_init(r, relu_k);
    return r;
}

/* ---- plane kernels: the inner loops ------------------------------------------------------------ */

/* A plane's two sums, still as 4 lanes each: the lanes are added up once per channel, after its
 * planes, rather than once per plane. */
typedef struct bn_partial {
    f64x4 a, b;
} bn_partial;
/* Arrays of them are laid out channel by channel, plane (n, c) at c * N + n, so that each
 * channel's sum reads its N partials from one contiguous run (in plane order they lie C * 64
 * bytes apart, a page each for C = 64, and their gathering cost as much as the planes at S = 64). */

/* sum(d) and sum(d^2) over one plane, d = x - pivot, in double: 16 lanes (4 chains of 4, enough to
 * hide the adder's latency) folded to 4, then the plane's last S % 16 values into lane 0. d is
 * computed as x * 1 - pivot: the same number as x - pivot, but on the multiply-add units, which
 * are otherwise idle here while the adders are the bottleneck.
 * `ahead` is the distance in floats to the plane that will be read next (0: none); its cache lines
 * are prefetched one per 16 values, as a channel's planes lie far apart and each one is too short
 * for the hardware prefetcher to get going on its own. */
static void plane_moments(const float *restrict x /* (S) */, int64_t S, double pivot, int64_t ahead, bn_partial *out) {
    const f64x4 one = {1, 1, 1, 1}, k = {-pivot, -pivot, -pivot, -pivot};
    f64x4 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
    int64_t i = 0;
    for (; i + 16 <= S; i += 16) {
        __builtin_prefetch(x + i + ahead);
        const f64x4 d0 = MADD4(LOAD4D(x + i), one, k), d1 = MADD4(LOAD4D(x + i + 4), one, k);
        const f64x4 d2 = MADD4(LOAD4D(x + i + 8), one, k), d3 = MADD4(LOAD4D(x + i + 12), one, k);
        a0 += d0, a1 += d1, a2 += d2, a3 += d3;
        b0 = MADD4(d0, d0, b0), b1 = MADD4(d1, d1, b1), b2 = MADD4(d2, d2, b2), b3 = MADD4(d3, d3, b3);
    }
    out->a = (a0 + a1) + (a2 + a3), out->b = (b0 + b1) + (b2 + b3);
    for (; i < S; i++) {
        const double d = (double)x[i] - pivot;
        out->a[0] += d, out->b[0] += d * d;
    }
}

/* sum(dz) and sum(dz * (x - mean)) over one plane, in double, lanes and prefetching as in
 * plane_moments; dz = dy, masked where a fused ReLU's input was <= 0 when relu_k is given (GRAD8D). */
static void plane_grad_sums(const float *restrict x /* (S) */, const float *restrict dy /* (S) */,
                            const bn_normalise *relu_k /* or NULL */, int64_t S, double mean, int64_t ahead,
                            bn_partial *out) {
    relu8_k r8;
    const relu8_k *rk = relu8_or_null(&r8, relu_k);
    const f64x4 one = {1, 1, 1, 1}, k = {-mean, -mean, -mean, -mean};
    f64x4 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
    int64_t i = 0;
    for (; i + 16 <= S; i += 16) {
        __builtin_prefetch(x + i + ahead), __builtin_prefetch(dy + i + ahead);
        f64x4 g0, g1, g2, g3;
        GRAD8D(dy, x, rk, i, g0, g1);
        GRAD8D(dy, x, rk, i + 8, g2, g3);
        a0 += g0, a1 += g1, a2 += g2, a3 += g3;
        b0 = MADD4(g0, MADD4(LOAD4D(x + i), one, k), b0);
        b1 = MADD4(g1, MADD4(LOAD4D(x + i + 4), one, k), b1);
        b2 = MADD4(g2, MADD4(LOAD4D(x + i + 8), one, k), b2);
        b3 = MADD4(g3, MADD4(LOAD4D(x + i + 12), one, k), b3);
    }
    out->a = (a0 + a1) + (a2 + a3), out->b = (b0 + b1) + (b2 + b3);
    for (; i < S; i++) {
        const double g = GRAD1(dy, x, relu_k, i);
        out->a[0] += g;
        out->b[0] += g * ((double)x[i] - mean);
    }
}

/* Which per-plane reduction a channel sum is made of. */
typedef enum { BN_MOMENTS, BN_GRAD_SUMS } bn_reduction;

/* Channel c's two sums: its planes' partials added in n order, lane by lane, then the lanes. With
 * part (every plane's partial, computed in parallel beforehand) they are read;
 * without it (short planes, or channel by channel) they are computed here. Same numbers, same
 * order, either way. */
static void channel_sums(bn_reduction kind, const bn_partial *part /* (N * C) or NULL */, const float *x /* (N, C, S) */,
                         const float *dy /* (N, C, S) or NULL */, const bn_normalise *relu_k /* (C) or NULL */,
                         int64_t N, int64_t C, int64_t S, int64_t c, double shift, double *sum_a, double *sum_b) {
    f64x4 a = {0}, b = {0};
    for (int64_t n = 0; n < N; n++) {
        const int64_t p = n * C + c, ahead = n + 1 < N ? C * S : 0;
        bn_partial own; /* read in place when precomputed: a copy of it stalls on store forwarding */
        const bn_partial *q = part ? &part[c * N + n] : &own;
        if (!part && kind == BN_MOMENTS) plane_moments(x + p * S, S, shift, ahead, &own);
        else if (!part) plane_grad_sums(x + p * S, dy + p * S, relu_k ? &relu_k[c] : NULL, S, shift, ahead, &own);
        a += q->a, b += q->b;
    }
    *sum_a = (a[0] + a[1]) + (a[2] + a[3]);
    *sum_b = (b[0] + b[1]) + (b[2] + b[3]);
}

/* y = a (x - mean) + beta over one plane, then with `relu` max(y, 0) as ReLU's own kernel forms it
 * (y < 0 ? 0 : y: NaN stays, -0 stays). Plain loops: the compiler vectorises them; with `stream`,
 * the same arithmetic, 8 at a time, written past the caches over the plane's whole lines. */
static void plane_normalise(float *restrict y /* (S) */, const float *restrict x /* (S) */, int64_t S,
                            const bn_normalise *k, bool relu, bool stream) {
#if CAN_STREAM
    if (stream) {
        int64_t i = 0;
        for (const int64_t head = line_head(y, S); i < head; i++) y[i] = normalise1(x[i], k, relu);
        const __m256 mh8 = _mm256_set1_ps(k->mean_hi), ah8 = _mm256_set1_ps(k->a_hi);
        const __m256 al8 = _mm256_set1_ps(k->a_lo), d8 = _mm256_set1_ps(k->d), zero = _mm256_setzero_ps();
        for (; i + LINE_FLOATS <= S; i += LINE_FLOATS)
            for (int64_t j = i; j < i + LINE_FLOATS; j += 8) {
                const __m256 t = _mm256_sub_ps(_mm256_loadu_ps(x + j), mh8), v = FMA8(ah8, t, FMA8(al8, t, d8));
                STREAM8(y + j, relu ? _mm256_max_ps(zero, v) : v); /* max(0, v): v where v is NaN or -0 */
            }
        for (; i < S; i++) y[i] = normalise1(x[i], k, relu);
        return;
    }
#endif
    (void)stream;
    /* two loops, so that each vectorises without a per-element test of `relu` */
    if (relu)
        for (int64_t i = 0; i < S; i++) y[i] = normalise1(x[i], k, true);
    else
        for (int64_t i = 0; i < S; i++) y[i] = normalise1(x[i], k, false);
}

/* dx = a dy + b x + d in double: b x and d may cancel (mean 1e4), harmless in double. */
typedef struct bn_dx {
    double a, b, d;
} bn_dx;

/* dx = a * dz + (b * x + d) over one plane, 8 values at a time, then the rest (dz: GRAD8D). With
 * `stream`, the plane's whole lines past the caches, the values before and after them as usual. */
static void plane_dx(float *restrict dx /* (S) */, const float *restrict dy /* (S) */,
                     const bn_normalise *relu_k /* or NULL */, const float *restrict x /* (S) */, int64_t S,
                     const bn_dx *k, bool stream) {
    relu8_k r8;
    const relu8_k *rk = relu8_or_null(&r8, relu_k);
    const f64x4 a = {k->a, k->a, k->a, k->a}, b = {k->b, k->b, k->b, k->b}, d = {k->d, k->d, k->d, k->d};
    f64x4 g0, g1;
    int64_t i = 0;
#if CAN_STREAM
    if (stream) {
        for (const int64_t head = line_head(dx, S); i < head; i++)
            dx[i] = (float)(GRAD1(dy, x, relu_k, i) * k->a + (x[i] * k->b + k->d));
        for (; i + LINE_FLOATS <= S; i += LINE_FLOATS)
            for (int64_t j = i; j < i + LINE_FLOATS; j += 8) {
                GRAD8D(dy, x, rk, j, g0, g1);
                STREAM4F(dx + j, MADD4(g0, a, MADD4(LOAD4D(x + j), b, d)));
                STREAM4F(dx + j + 4, MADD4(g1, a, MADD4(LOAD4D(x + j + 4), b, d)));
            }
    }
#endif
    (void)stream;
    for (; i + 8 <= S; i += 8) {
        GRAD8D(dy, x, rk, i, g0, g1);
        STORE4F(dx + i, MADD4(g0, a, MADD4(LOAD4D(x + i), b, d)));
        STORE4F(dx + i + 4, MADD4(g1, a, MADD4(LOAD4D(x + i + 4), b, d)));
    }
    for (; i < S; i++) dx[i] = (float)(GRAD1(dy, x, relu_k, i) * k->a + (x[i] * k->b + k->d));
}

/* dx = a * dz over one plane (eval mode, where the statistics are constants); `stream` as plane_dx. */
static void plane_scale(float *restrict dx /* (S) */, const float *restrict dy /* (S) */,
                        const bn_normalise *relu_k /* or NULL */, const float *restrict x /* (S), read with relu_k */,
                        int64_t S, double a, bool stream) {
    relu8_k r8;
    const relu8_k *rk = relu8_or_null(&r8, relu_k);
    const f64x4 a4 = {a, a, a, a};
    f64x4 g0, g1;
    int64_t i = 0;
#if CAN_STREAM
    if (stream) {
        for (const int64_t head = line_head(dx, S); i < head; i++) dx[i] = (float)(GRAD1(dy, x, relu_k, i) * a);
        for (; i + LINE_FLOATS <= S; i += LINE_FLOATS)
            for (int64_t j = i; j < i + LINE_FLOATS; j += 8) {
                GRAD8D(dy, x, rk, j, g0, g1);
                STREAM4F(dx + j, g0 * a4), STREAM4F(dx + j + 4, g1 * a4);
            }
    }
#endif
    (void)stream;
    for (; i + 8 <= S; i += 8) {
        GRAD8D(dy, x, rk, i, g0, g1);
        STORE4F(dx + i, g0 * a4), STORE4F(dx + i + 4, g1 * a4);
    }
    for (; i < S; i++) dx[i] = (float)(GRAD1(dy, x, relu_k, i) * a);
}

/* ---- one channel's passes, for SyncBatchNorm (batch_norm_internal.h) ---------------------------- */

void bn_update_running_stats(tensor *running_mean, tensor *running_var, const double *mean, const double *m2,
                             int64_t C, int64_t M, double momentum) {
    float *rm = tensor_data_f32(running_mean), *rv = tensor_data_f32(running_var);
    const int64_t sm = running_mean->stride[0], sv = running_var->stride[0];
    for (int64_t c = 0; c < C; c++) {
        rm[c * sm] = (float)(momentum * mean[c] + (1 - momentum) * rm[c * sm]);
        rv[c * sv] = (float)(momentum * (m2[c] / (double)(M - 1)) + (1 - momentum) * rv[c * sv]);
    }
    tensor_bump_version(running_mean); /* a graph that saved them can no longer backward */
    tensor_bump_version(running_var);
}

void bn_channel_moments(const float *x, int64_t N, int64_t C, int64_t S, int64_t c, double *mean, double *m2) {
    const int64_t M = N * S;
    const double pivot = M > 0 ? x[c * S] : 0.0; /* the channel's first value, as channel_statistics */
    double sum_d, sum_d2;
    channel_sums(BN_MOMENTS, NULL, x, NULL, NULL, N, C, S, c, pivot, &sum_d, &sum_d2);
    *mean = M > 0 ? pivot + sum_d / (double)M : 0.0;
    *m2 = M > 0 ? fmax(sum_d2 - sum_d * sum_d / (double)M, 0.0) : 0.0;
}

void bn_channel_grad_sums(const float *x, const float *dy, int64_t N, int64_t C, int64_t S, int64_t c, double mean,
                          double *sum_dy, double *sum_dy_xmu) {
    channel_sums(BN_GRAD_SUMS, NULL, x, dy, NULL, N, C, S, c, mean, sum_dy, sum_dy_xmu);
}

void bn_channel_normalise(float *y, const float *x, int64_t N, int64_t C, int64_t S, int64_t c, double mean, double a,
                          double beta) {
    const bn_normalise k = normalise_constants(mean, a, beta);
    for (int64_t n = 0; n < N; n++) plane_normalise(y + (n * C + c) * S, x + (n * C + c) * S, S, &k, false, false);
}

void bn_channel_dx(float *dx, const float *dy, const float *x, int64_t N, int64_t C, int64_t S, int64_t c, double a,
                   double b, double d) {
    const bn_dx k = {.a = a, .b = b, .d = d};
    for (int64_t n = 0; n < N; n++) {
        const int64_t off = (n * C + c) * S;
        plane_dx(dx + off, dy + off, NULL, x + off, S, &k, false);
    }
}

/* ---- checks shared by the fused and the composite versions (batch_norm_internal.h) ------------- */

static torch_status check_vector(const char *fname, const char *what, const tensor *t, int64_t C) {
    if (!t) return TORCH_OK;
    if (t->dtype != TORCH_FLOAT32)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected %s to be float32 (got %s)", fname, what,
                           torch_dtype_name(t->dtype));
    if (t->numel != C)
        return torch_error(TORCH_ERR_SHAPE, "%s: %s should contain %lld elements not %lld", fname, what,
                           (long long)C, (long long)t->numel);
    if (t->ndim != 1) { /* the right count in the wrong shape: say so, not "3 elements not 3" */
        char buf[96];
        return torch_error(TORCH_ERR_SHAPE, "%s: %s should be 1-dimensional with %lld elements (got shape %s)",
                           fname, what, (long long)C, torch_shape_str(t->ndim, t->shape, buf, sizeof buf));
    }
    return TORCH_OK;
}

/* ATen's and F.batch_norm's checks, in their words. */
torch_status bn_check_args(const char *fname, const tensor *input, const tensor *running_mean,
                           const tensor *running_var, const tensor *weight, const tensor *bias, bool training,
                           double momentum, double eps) {
    return bn_check_args_counted(fname, input, running_mean, running_var, weight, bias, training, momentum, eps, true);
}

torch_status bn_check_args_counted(const char *fname, const tensor *input, const tensor *running_mean,
                                   const tensor *running_var, const tensor *weight, const tensor *bias, bool training,
                                   double momentum, double eps, bool local_count) {
    if (!input) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
    if (input->dtype != TORCH_FLOAT32)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected a float32 input (got %s)", fname,
                           torch_dtype_name(input->dtype));
    if (input->ndim < 2)
        return torch_error(TORCH_ERR_SHAPE, "%s: Expected at least 2 input dimensions, but got %d", fname,
                           input->ndim);
    int64_t C = input->shape[1];
    torch_status st;
    if ((st = check_vector(fname, "running_mean", running_mean, C)) != TORCH_OK ||
        (st = check_vector(fname, "running_var", running_var, C)) != TORCH_OK ||
        (st = check_vector(fname, "weight", weight, C)) != TORCH_OK ||
        (st = check_vector(fname, "bias", bias, C)) != TORCH_OK)
        return st;
    if (!running_mean != !running_var)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: running_mean and running_var must both be given or both be NULL",
                           fname);
    if (!training && !running_mean)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: running_mean must be defined in evaluation mode", fname);
    if (training && local_count && input->shape[0] * torch_shape_numel(input->ndim - 2, input->shape + 2) == 1) {
        /* also for C = 0 */
        char buf[128];
        return torch_error(TORCH_ERR_SHAPE, "%s: Expected more than 1 value per channel when training, got input size %s",
                           fname, torch_shape_str(input->ndim, input->shape, buf, sizeof buf));
    }
    if (training && running_mean) {
        /* The running statistics are written in place as buffers, without autograd (as ATen's
         * kernel does), whatever their requires_grad: only an expanded view cannot be written. */
        bool grad_mode = torch_set_grad_enabled(false);
        if ((st = torch_check_inplace(fname, running_mean)) == TORCH_OK) st = torch_check_inplace(fname, running_var);
        torch_set_grad_enabled(grad_mode);
        if (st != TORCH_OK) return st;
    }
    if (!(momentum >= 0 && momentum <= 1))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: momentum must be in [0, 1] (got %g)", fname, momentum);
    if (!(eps >= 0) || isinf(eps))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: eps must be >= 0 and finite (got %g)", fname, eps);
    return TORCH_OK;
}

/* 1 / sqrt(var + eps), 0 for the 0/0 case (ATen's InvStd). */
static double inv_std(double var, double eps) { return var != 0 || eps != 0 ? 1.0 / sqrt(var + eps) : 0.0; }

/* Element i of a 1-D tensor of any stride, as double; `dflt` when t is NULL. */
static double vec_get(const tensor *t, int64_t i, double dflt) {
    return t ? (double)tensor_data_f32(t)[i * t->stride[0]] : dflt;
}

/* One aligned block for a call's scratch: `n_part` per-plane partials first (f64x4 needs 32-byte
 * alignment), then `rest` bytes. NULL when out of memory. */
static void *scratch_alloc(size_t n_part, size_t rest) {
    const size_t bytes = n_part * sizeof(bn_partial) + rest;
    return aligned_alloc(64, (bytes + 64) / 64 * 64);
}

/* ---- forward ------------------------------------------------------------------------------------ */

/* Whether a training pass goes channel by channel: each thread takes whole channels and, for each,
 * reduces its planes and at once normalises (or differentiates) them while they are still in its
 * L2/L3 cache, so that the tensor comes from memory once instead of twice (on (32, 64, 56, 56),
 * forward+backward went from 13-14.5 ms to 11.5-12.9 ms at 1 thread, 9.6 to 7.8 ms at 2). It needs
 * planes long enough to stream and, with threads, enough channels to share out; otherwise the
 * passes walk all planes in memory order. Both orders add the same numbers in the same order, so
 * the choice never changes a bit. */
static bool by_channel(int64_t C, int64_t S, bool parallel) {
    return S >= BN_CHANNEL_MIN && (!parallel || C >= 2 * (int64_t)torch_get_num_threads());
}

/* How many per-plane partials a training pass needs: one per plane when the planes are reduced
 * in memory order, none when they are reduced channel by channel. */
static size_t partials_needed(bool training, int64_t N, int64_t C, int64_t S) {
    const bool parallel = N * C * S >= BN_PARALLEL_MIN;
    return training && S >= BN_PLANE_MIN && !by_channel(C, S, parallel) ? (size_t)(N * C) : 0;
}

/* Channel c's mean, invstd (and m2 in training) and its normalise constants. */
static void channel_statistics(int64_t c, const bn_partial *part /* (N * C) or NULL */, const float *x /* (N, C, S) */,
                               int64_t N, int64_t C, int64_t S, const tensor *weight, const tensor *bias,
                               const tensor *running_mean, const tensor *running_var, bool training, double eps,
                               double *mean, double *invstd, double *m2, bn_normalise *k) {
    const int64_t M = N * S;
    if (training) {
        const double pivot = M > 0 ? x[c * S] : 0.0; /* the channel's first value */
        double sum_d, sum_d2;
        channel_sums(BN_MOMENTS, part, x, NULL, NULL, N, C, S, c, pivot, &sum_d, &sum_d2);
        mean[c] = M > 0 ? pivot + sum_d / (double)M : 0.0;
        m2[c] = M > 0 ? fmax(sum_d2 - sum_d * sum_d / (double)M, 0.0) : 0.0;
        invstd[c] = inv_std(M > 0 ? m2[c] / (double)M : 0.0, eps);
    } else {
        mean[c] = vec_get(running_mean, c, 0.0);
        invstd[c] = inv_std(vec_get(running_var, c, 1.0), eps);
    }
    k[c] = normalise_constants(mean[c], vec_get(weight, c, 1.0) * invstd[c], vec_get(bias, c, 0.0));
}

/* Training: batch statistics from the shifted sums (see the top of the file); eval: the running
 * ones. Then y = a (x - mean) + beta with a = gamma * invstd. Fills mean, invstd and, in training,
 * m2 = sum((x - mean)^2) for the running variance. */
static void batch_norm_forward_kernel(float *y /* (N, C, S) */, const float *x /* (N, C, S) */, int64_t N, int64_t C,
                                      int64_t S, const tensor *weight /* (C) or NULL */,
                                      const tensor *bias /* (C) or NULL */, const tensor *running_mean /* (C) */,
                                      const tensor *running_var /* (C) */, bool training, double eps,
                                      double *mean /* (C) */, double *invstd /* (C) */, double *m2 /* (C) */,
                                      bn_partial *part /* (N * C) or NULL */, bn_normalise *k /* (C) */,
                                      bool relu) {
    const int64_t P = N * C;
    const bool parallel = P * S >= BN_PARALLEL_MIN, stream = stream_outputs(P * S, 1); /* y */
    (void)parallel; /* unused without OpenMP */
    if (training && by_channel(C, S, parallel)) {
#pragma omp parallel if (parallel)
        {
#pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) {
                channel_statistics(c, NULL, x, N, C, S, weight, bias, running_mean, running_var, training, eps,
                                   mean, invstd, m2, k);
                for (int64_t n = 0; n < N; n++)
                    plane_normalise(y + (n * C + c) * S, x + (n * C + c) * S, S, &k[c], relu, stream);
            }
            STREAM_FENCE(stream);
        }
        return;
    }
#pragma omp parallel if (parallel)
    {
        if (training && part) {
#pragma omp for collapse(2) schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = 0; c < C; c++) plane_moments(x + (n * C + c) * S, S, x[c * S], 0, &part[c * N + n]);
        }
#pragma omp for schedule(static)
        for (int64_t c = 0; c < C; c++)
            channel_statistics(c, part, x, N, C, S, weight, bias, running_mean, running_var, training, eps, mean,
                               invstd, m2, k);
#pragma omp for collapse(2) schedule(static)
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++)
                plane_normalise(y + (n * C + c) * S, x + (n * C + c) * S, S, &k[c], relu, stream);
        STREAM_FENCE(stream);
    }
}

static torch_status batch_norm_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs);

static const ag_function batch_norm_function = {
    .op = AG_OP_BATCH_NORM,
    .backward = batch_norm_backward,
    .free_ctx = NULL, /* one malloc block */
};

/* The fused batch norm + ReLU: the same backward, which recomputes where the ReLU clamped. */
static const ag_function batch_norm_relu_function = {
    .op = AG_OP_BATCH_NORM_RELU,
    .backward = batch_norm_backward,
    .free_ctx = NULL,
};

/* The ghost batch's own checks (after bn_check_args): a size in [1, N], and more than one value per
 * channel in every sub-batch (the smallest has floor(N / G) rows). */
static torch_status check_ghost(const char *fname, const tensor *input, int64_t ghost_batch_size, int64_t G) {
    const int64_t N = input->shape[0];
    if (ghost_batch_size < 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: ghost_batch_size must be > 0 (got %lld)", fname,
                           (long long)ghost_batch_size);
    if (ghost_batch_size > N)
        return torch_error(TORCH_ERR_SHAPE, "%s: ghost_batch_size %lld is larger than the batch (got %lld)", fname,
                           (long long)ghost_batch_size, (long long)N);
    if (N / G * torch_shape_numel(input->ndim - 2, input->shape + 2) == 1) {
        int64_t shape[TORCH_MAX_DIMS];
        for (int d = 0; d < input->ndim; d++) shape[d] = input->shape[d];
        shape[0] = N / G;
        char buf[128];
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: Expected more than 1 value per channel when training, got a sub-batch of size %s "
                           "(ghost_batch_size %lld splits %lld rows into %lld)",
                           fname, torch_shape_str(input->ndim, shape, buf, sizeof buf), (long long)ghost_batch_size,
                           (long long)N, (long long)G);
    }
    return TORCH_OK;
}

tensor *bn_forward(const char *fname, bool relu, tensor *input, tensor *running_mean, tensor *running_var,
                   tensor *weight, tensor *bias, bool training, bn_update update, double eps, int64_t ghost_batch_size) {
    if (bn_check_args(fname, input, running_mean, running_var, weight, bias, training,
                      update.cumulative ? 0.0 : update.momentum, eps) != TORCH_OK)
        return NULL;
    const int64_t N = input->shape[0], C = input->shape[1];
    const int64_t S = N * C > 0 ? input->numel / (N * C) : torch_shape_numel(input->ndim - 2, input->shape + 2);
    /* G sub-batches, of `rows` or `rows` + 1 rows (one, of N rows, without ghost batches) */
    const bool ghost = training && ghost_batch_size != 0;
    const int64_t G = ghost && ghost_batch_size > 0 ? (N + ghost_batch_size - 1) / ghost_batch_size : 1;
    if (ghost && check_ghost(fname, input, ghost_batch_size, G) != TORCH_OK) return NULL;
    const int64_t rows = N / G, longest = rows + (N % G != 0);

    /* 1. Allocate: a contiguous input, the output, ctx (mean, invstd, constants per sub-batch) and
     *    scratch: per-plane partials (training with planes of BN_PLANE_MIN values or more), reused
     *    by each sub-batch in turn, and m2 (C per sub-batch). */
    tensor *x = tensor_contiguous(input);
    tensor *y = x ? torch_empty(input->ndim, input->shape) : NULL;
    const size_t n_part = partials_needed(training, longest, C, S) > partials_needed(training, rows, C, S)
                              ? partials_needed(training, longest, C, S)
                              : partials_needed(training, rows, C, S);
    bn_ctx *ctx = NULL;
    bn_partial *scratch = NULL;
    if (y) {
        ctx = malloc((size_t)G * BN_CTX_BYTES(C));
        scratch = scratch_alloc(n_part, (size_t)(G * C) * sizeof(double));
        if (!ctx || !scratch) torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    }
    if (!ctx || !scratch) {
        free(scratch);
        free(ctx);
        tensor_free(y);
        tensor_free(x);
        return NULL;
    }
    double *m2_all = (double *)(scratch + n_part);

    /* 2. Compute, sub-batch by sub-batch: the batch statistics or the running ones, and y. */
    for (int64_t g = 0; g < G; g++) {
        int64_t first, n;
        sub_batch(N, G, g, &first, &n);
        bn_ctx *b = (bn_ctx *)((char *)ctx + (size_t)g * BN_CTX_BYTES(C)); /* ctx_block, before ctx->C is set */
        *b = (bn_ctx){.N = n, .C = C, .S = S, .groups = G, .training = training, .relu = relu};
        const size_t part_g = partials_needed(training, n, C, S);
        batch_norm_forward_kernel(tensor_data_f32(y) + first * C * S, tensor_data_f32(x) + first * C * S, n, C, S,
                                  weight, bias, running_mean, running_var, training, eps, b->data, b->data + C,
                                  m2_all + g * C, part_g ? scratch : NULL, ctx_normalise(b), relu);
    }

    /* 3. Record the node: the last step that can fail. */
    tensor *inputs[3] = {input, weight, bias};
    bool recorded = false;
    if (ag_should_record(3, inputs)) {
        ag_node *node = ag_record(relu ? &batch_norm_relu_function : &batch_norm_function, y, 3, inputs);
        if (!node || ag_node_save(node, 0, x) != TORCH_OK || ag_node_save(node, 1, weight) != TORCH_OK) {
            free(scratch);
            free(ctx);
            tensor_free(y); /* frees the node and what it saved */
            tensor_free(x);
            return NULL;
        }
        node->ctx = ctx;
        node->ctx_bytes = (size_t)G * BN_CTX_BYTES(C);
        recorded = true;
    }

    /* 4. Commit: the running statistics, with the unbiased variance, one sub-batch after the other as
     *    separate calls would (an empty batch changes nothing). */
    for (int64_t g = 0; training && running_mean && g < G; g++) {
        const bn_ctx *b = ctx_block(ctx, g);
        const int64_t M = b->N * S;
        if (M <= 1) continue;
        const double momentum = update.cumulative ? 1.0 / ((double)update.count + (double)g + 1.0) : update.momentum;
        bn_update_running_stats(running_mean, running_var, b->data, m2_all + g * C, C, M, momentum);
    }
    free(scratch);
    if (!recorded) free(ctx);
    tensor_free(x);
    return y;
}

tensor *nnf_batch_norm(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                       bool training, double momentum, double eps) {
    return bn_forward("nnf_batch_norm", false, input, running_mean, running_var, weight, bias, training,
                      (bn_update){.momentum = momentum}, eps, 0);
}

tensor *nnf_batch_norm_relu(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                            bool training, double momentum, double eps) {
    return bn_forward("nnf_batch_norm_relu", true, input, running_mean, running_var, weight, bias, training,
                      (bn_update){.momentum = momentum}, eps, 0);
}

tensor *nnf_ghost_batch_norm(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                             bool training, double momentum, double eps, int64_t ghost_batch_size) {
    if (ghost_batch_size <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nnf_ghost_batch_norm: ghost_batch_size must be > 0 (got %lld)",
                    (long long)ghost_batch_size);
        return NULL;
    }
    return bn_forward("nnf_ghost_batch_norm", false, input, running_mean, running_var, weight, bias, training,
                      (bn_update){.momentum = momentum}, eps, ghost_batch_size);
}

/* ---- backward ----------------------------------------------------------------------------------- */

/* Channel c's dgamma, dbeta (each when wanted) and dx constants; the sums are skipped (dy NULL)
 * when nothing needs them, which only happens in eval. */
static void channel_dx_constants(int64_t c, const bn_partial *part /* (N * C) or NULL */, const float *x /* (N, C, S) */,
                                 const float *dy /* (N, C, S) or NULL */, const bn_normalise *relu_k /* (C) or NULL */,
                                 const tensor *weight /* (C) or NULL */, const bn_ctx *ctx,
                                 double *dgamma /* (C) or NULL */, double *dbeta /* (C) or NULL */, bn_dx *k /* (C) */) {
    const int64_t N = ctx->N, C = ctx->C, S = ctx->S, M = N * S;
    const double mean = ctx->data[c], is = ctx->data[C + c];
    double sum_dy = 0, sum_dy_xc = 0;
    if (dy) channel_sums(BN_GRAD_SUMS, part, x, dy, relu_k, N, C, S, c, mean, &sum_dy, &sum_dy_xc);
    const double gk = vec_get(weight, c, 1.0) * is, dg = sum_dy_xc * is;
    if (dbeta) dbeta[c] = sum_dy;
    if (dgamma) dgamma[c] = dg;
    const double b = ctx->training && M > 0 ? -gk * is * dg / (double)M : 0.0;
    const double d = ctx->training && M > 0 ? -gk * sum_dy / (double)M : 0.0;
    k[c] = (bn_dx){.a = gk, .b = b, .d = d - b * mean};
}

/* Backward of y = xhat * gamma + beta, xhat = (x - mean) * invstd, invstd = (var + eps)^(-1/2),
 * per channel over its M values x_1..x_M (gamma = 1, beta = 0 without affine).
 *
 *   dbeta   = sum_i dy_i                       beta is added to every y_i
 *   dgamma  = sum_i dy_i * xhat_i              gamma multiplies every xhat_i
 *   dxhat_i = dy_i * gamma
 *
 * Training: mean and var are the batch's, functions of every x_j of the channel:
 *   dmean/dx_j = 1/M
 *   dvar/dx_j  = 2 (x_j - mean) / M            (the -2/M * sum_i (x_i - mean) part is 0)
 *   dinvstd/dx_j = -1/2 (var + eps)^(-3/2) * dvar/dx_j = -invstd^3 (x_j - mean) / M
 *   dxhat_i/dx_j = invstd (delta_ij - 1/M) + (x_i - mean) dinvstd/dx_j
 *                = invstd / M * (M delta_ij - 1 - xhat_i xhat_j)
 *   dx_j = sum_i dxhat_i dxhat_i/dx_j
 *        = gamma invstd / M * (M dy_j - sum_i dy_i - xhat_j sum_i dy_i xhat_i)
 *        = gamma invstd / M * (M dy_j - dbeta - xhat_j dgamma)
 * Eval: mean and invstd come from the running statistics, constants here:
 *   dx_j = dy_j * gamma * invstd
 *
 * So, with x - mean recomputed from the saved mean (llm.c's trade: C doubles kept instead of
 * N*C*S floats) and k = gamma * invstd, two passes over the planes:
 *   1. per plane, in double: sum(dy) and sum(dy (x - mean)), added per channel in n order;
 *        dbeta = sum(dy),  dgamma = invstd * sum(dy (x - mean))
 *   2. per plane: dx_j = k dy_j + b (x_j - mean) + d = k dy_j + b x_j + (d - b mean), with
 *        b = -k invstd dgamma / M,  d = -k dbeta / M
 *      (eval: dx_j = k dy_j, and pass 1 only runs when dgamma or dbeta is wanted).
 * The driver accumulates the returned gradients into .grad (+=). */
static void batch_norm_backward_kernel(float *dx /* (N, C, S) or NULL */, double *dgamma /* (C) or NULL */,
                                       double *dbeta /* (C) or NULL */, const float *dy /* (N, C, S) */,
                                       const bn_normalise *relu_k /* (C) or NULL */, const float *x /* (N, C, S) */,
                                       const tensor *weight /* (C) or NULL */, const bn_ctx *ctx,
                                       bn_partial *part /* (N * C) or NULL */, bn_dx *k /* (C) */) {
    const int64_t N = ctx->N, C = ctx->C, S = ctx->S, P = N * C;
    const double *mean = ctx->data;
    const bool training = ctx->training, need_sums = dgamma || dbeta || (dx && training);
    const bool parallel = P * S >= BN_PARALLEL_MIN;
    const bool stream = dx && stream_outputs(P * S, 2 + (training || relu_k)); /* x (if read), dy, dx */
    (void)parallel;
    if (training && by_channel(C, S, parallel)) {
#pragma omp parallel if (parallel)
        {
#pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) {
                channel_dx_constants(c, NULL, x, dy, relu_k, weight, ctx, dgamma, dbeta, k);
                if (dx)
                    for (int64_t n = 0; n < N; n++) {
                        const int64_t off = (n * C + c) * S;
                        plane_dx(dx + off, dy + off, relu_k ? &relu_k[c] : NULL, x + off, S, &k[c], stream);
                    }
            }
            STREAM_FENCE(stream);
        }
        return;
    }
#pragma omp parallel if (parallel)
    {
        if (need_sums && part) {
#pragma omp for collapse(2) schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = 0; c < C; c++) {
                    const int64_t off = (n * C + c) * S;
                    plane_grad_sums(x + off, dy + off, relu_k ? &relu_k[c] : NULL, S, mean[c], 0, &part[c * N + n]);
                }
        }
#pragma omp for schedule(static)
        for (int64_t c = 0; c < C; c++)
            channel_dx_constants(c, part, x, need_sums ? dy : NULL, relu_k, weight, ctx, dgamma, dbeta, k);
        if (dx) {
#pragma omp for collapse(2) schedule(static)
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = 0; c < C; c++) {
                    const int64_t off = (n * C + c) * S;
                    const bn_normalise *rkc = relu_k ? &relu_k[c] : NULL;
                    if (training) plane_dx(dx + off, dy + off, rkc, x + off, S, &k[c], stream);
                    else plane_scale(dx + off, dy + off, rkc, x + off, S, k[c].a, stream);
                }
            STREAM_FENCE(stream);
        }
    }
}

/* A [C] float32 tensor from C doubles. */
static tensor *vector_from(const double *v, int64_t C) {
    tensor *t = torch_empty(1, &C);
    if (!t) return NULL;
    float *p = tensor_data_f32(t);
    for (int64_t c = 0; c < C; c++) p[c] = (float)v[c];
    return t;
}

static torch_status batch_norm_backward(ag_node *node, const tensor *grad_output, tensor **grad_inputs) {
    const bn_ctx *ctx = node->ctx;
    const tensor *x = node->saved[0], *weight = node->saved[1];
    const int64_t C = ctx->C, S = ctx->S, G = ctx->groups;
    const bool need_dx = ag_node_needs_grad(node, 0), need_dw = ag_node_needs_grad(node, 1),
               need_db = ag_node_needs_grad(node, 2);
    const bool need_sums = need_dw || need_db || (need_dx && ctx->training);
    size_t n_part = 0; /* for the longest sub-batch: the scratch is reused by each in turn */
    for (int64_t g = 0; need_sums && g < G; g++) {
        const size_t p = partials_needed(ctx->training, ctx_block(ctx, g)->N, C, S);
        if (p > n_part) n_part = p;
    }
    tensor *dy = tensor_contiguous(grad_output), *dx = NULL;
    /* per-plane partials (n_part), dgamma (C), dbeta (C), one sub-batch's dgamma and dbeta (2 C), constants (C) */
    bn_partial *scratch = NULL;
    torch_status st = dy ? TORCH_OK : torch_last_status();
    if (st == TORCH_OK && need_dx && !(dx = torch_empty(x->ndim, x->shape))) st = torch_last_status();
    if (st == TORCH_OK && !(scratch = scratch_alloc(n_part, (size_t)C * (4 * sizeof(double) + sizeof(bn_dx)))))
        st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", ag_function_name(node->fn));
    if (st != TORCH_OK) {
        tensor_free(dx);
        tensor_free(dy);
        return st;
    }
    double *sums = (double *)(scratch + n_part);
    double *dgamma = need_dw ? sums : NULL, *dbeta = need_db ? sums + C : NULL;
    bn_dx *k = (bn_dx *)(sums + 4 * C);
    for (int64_t g = 0, first = 0; g < G; g++) {
        /* a ghost sub-batch's own dgamma and dbeta, added to the totals in sub-batch order */
        const bn_ctx *b = ctx_block(ctx, g);
        double *dg = G == 1 ? dgamma : (dgamma ? sums + 2 * C : NULL), *db = G == 1 ? dbeta : (dbeta ? sums + 3 * C : NULL);
        const int64_t off = first * C * S;
        const bool part = partials_needed(b->training, b->N, C, S) && need_sums;
        batch_norm_backward_kernel(dx ? tensor_data_f32(dx) + off : NULL, dg, db, tensor_data_f32(dy) + off,
                                   b->relu ? ctx_normalise(b) : NULL, tensor_data_f32(x) + off, weight, b,
                                   part ? scratch : NULL, k);
        for (int64_t c = 0; G > 1 && c < C; c++) {
            if (dgamma) dgamma[c] = g ? dgamma[c] + dg[c] : dg[c];
            if (dbeta) dbeta[c] = g ? dbeta[c] + db[c] : db[c];
        }
        first += b->N;
    }
    tensor *dw = need_dw ? vector_from(dgamma, C) : NULL, *db = need_db ? vector_from(dbeta, C) : NULL;
    free(scratch);
    tensor_free(dy);
    if ((need_dw && !dw) || (need_db && !db)) {
        tensor_free(dx);
        tensor_free(dw);
        tensor_free(db);
        return torch_last_status();
    }
    grad_inputs[0] = dx;
    grad_inputs[1] = dw;
    grad_inputs[2] = db;
    return TORCH_OK;
}
