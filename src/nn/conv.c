/* conv.c — nnf_conv2d through im2col + sgemm, its backward next to it, and the Conv2d module.
 *
 * Reference: https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html
 *
 * im2col lays the receptive fields of one image out as the columns of a matrix:
 *   col[(c, kh, kw), (oh, ow)] = x[c, oh*sH - pH + kh*dH, ow*sW - pW + kw*dW]   (0 in the padding)
 * so that the convolution is one matrix product per image:
 *   y[n] (C_out, H_out*W_out) = weight (C_out, C_in*kH*kW) @ col(x[n]) (C_in*kH*kW, H_out*W_out).
 * When images are small (H_out*W_out below a few hundred columns, e.g. 7x7 feature maps) several
 * images share one product: their columns sit side by side, col (C_in*kH*kW, B*H_out*W_out), and
 * sgemm gets a matrix wide enough to run at speed. Blocks of images are shared among the
 * threads; B, and every other split, depends only on the shapes, never on the thread count, so
 * results are bit-identical at any thread count. Each thread's workspace serves the whole call.
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

typedef struct conv_geom {
    int64_t N, C, H, W;        /* input (N, C, H, W); N = 1 for an unbatched input */
    int64_t O, KH, KW;         /* weight (O, C, KH, KW) */
    int64_t SH, SW, PH, PW, DH, DW;
    int64_t OH, OW;            /* output (N, O, OH, OW) */
    int64_t K;                 /* C * KH * KW: rows of col, the GEMM's inner dimension */
    int64_t P;                 /* OH * OW: columns of col per image */
    int64_t B;                 /* images per GEMM */
    bool    direct;            /* 1x1 kernel, stride 1, no padding: col(x[n]) is x[n] itself */
} conv_geom;

/* Images per GEMM: enough for about 1024 columns, at most 16M floats of col. */
static int64_t conv_block(const conv_geom *g) {
    if (g->direct || g->P <= 0 || g->P >= 256 || g->N <= 1) return 1; /* P <= 0: a refused shape */
    int64_t b = (1024 + g->P - 1) / g->P;
    int64_t cap = ((int64_t)1 << 24) / (g->K * g->P > 0 ? g->K * g->P : 1);
    if (b > cap) b = cap;
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
    g->B = conv_block(g);
}

static void fill_pair(int64_t out[2], const int64_t *in, int64_t dflt) {
    out[0] = in ? in[0] : dflt;
    out[1] = in ? in[1] : dflt;
}

/* Checks everything nnf_conv2d needs and fills g. fname is "Conv2d" for the module, "nnf_conv2d"
 * for the function. */
static torch_status conv_check(const char *fname, const tensor *x, const tensor *w, const tensor *b,
                               const int64_t stride[2], const int64_t padding[2], const int64_t dilation[2],
                               conv_geom *g) {
    char s1[96], s2[96];
    if (!x || !w) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fname, x ? "weight" : "input");
    const tensor *ts[3] = {x, w, b};
    const char *names[3] = {"input", "weight", "bias"};
    for (int i = 0; i < 3; i++)
        if (ts[i] && ts[i]->dtype != TORCH_FLOAT32)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected %s of dtype float32 (got %s)", fname,
                               names[i], torch_dtype_name(ts[i]->dtype));
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
    conv_geom_fill(g, x, w, st, pd, dl);
    if (g->KH < 1 || g->KW < 1 || g->H + 2 * g->PH < g->DH * (g->KH - 1) + 1 ||
        g->W + 2 * g->PW < g->DW * (g->KW - 1) + 1)
        return torch_error(TORCH_ERR_SHAPE,
                           "%s: Calculated padded input size per channel: (%lld x %lld). Kernel size: (%lld x %lld). "
                           "Kernel size can't be greater than actual input size",
                           fname, (long long)(g->H + 2 * g->PH), (long long)(g->W + 2 * g->PW),
                           (long long)(g->DH * (g->KH - 1) + 1), (long long)(g->DW * (g->KW - 1) + 1));
    if (g->K > INT_MAX || g->O > INT_MAX || g->P > INT_MAX / 64)
        return torch_error(TORCH_ERR_SHAPE, "%s: input or weight too large for a 32-bit BLAS", fname);
    return TORCH_OK;
}

/* ---- im2col / col2im ---------------------------------------------------------------------------- */

/* The output columns ow whose input column ow*s - p + k*d lies in [0, W): [*lo, *hi). */
static void valid_range(int64_t OW, int64_t W, int64_t s, int64_t p, int64_t kd, int64_t *lo, int64_t *hi) {
    int64_t t = p - kd; /* input column = ow*s - t */
    int64_t l = t <= 0 ? 0 : (t + s - 1) / s;
    int64_t h = W - 1 + t < 0 ? 0 : (W - 1 + t) / s + 1;
    if (h > OW) h = OW;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col[r, p] (row r = (c, kh, kw), column p = (oh, ow), row pitch ld) from one image. */
static void im2col(const conv_geom *g, const float *x /* (C, H, W) */, float *col /* (K, ld) */, int64_t ld) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (g->C > 1 && g->K * g->P > 65536)
#endif
    for (int64_t c = 0; c < g->C; c++) {
        for (int64_t kh = 0; kh < g->KH; kh++) {
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                int64_t lo, hi;
                valid_range(g->OW, g->W, g->SW, g->PW, kw * g->DW, &lo, &hi);
                for (int64_t oh = 0; oh < g->OH; oh++) {
                    float *out = row + oh * g->OW;
                    int64_t ih = oh * g->SH - g->PH + kh * g->DH;
                    if (ih < 0 || ih >= g->H) {
                        memset(out, 0, (size_t)g->OW * sizeof *out);
                        continue;
                    }
                    const float *src = x + (c * g->H + ih) * g->W; /* input column ow*SW + off */
                    int64_t off = kw * g->DW - g->PW;
                    for (int64_t ow = 0; ow < lo; ow++) out[ow] = 0.0f;
                    if (g->SW == 1)
                        memcpy(out + lo, src + lo + off, (size_t)(hi - lo) * sizeof *out);
                    else
                        for (int64_t ow = lo; ow < hi; ow++) out[ow] = src[ow * g->SW + off];
                    for (int64_t ow = hi; ow < g->OW; ow++) out[ow] = 0.0f;
                }
            }
        }
    }
}

/* The adjoint of im2col: dx[c, ih, iw] += dcol[(c, kh, kw), (oh, ow)] over every tap that read
 * x[c, ih, iw]. Each channel is one thread's, summed in a fixed order. */
static void col2im(const conv_geom *g, const float *dcol /* (K, ld) */, int64_t ld, float *dx /* (C, H, W) */) {
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
                    const float *in = row + oh * g->OW;
                    float *dst = dx + (c * g->H + ih) * g->W;
                    int64_t off = kw * g->DW - g->PW;
                    for (int64_t ow = lo; ow < hi; ow++) dst[ow * g->SW + off] += in[ow];
                }
            }
        }
    }
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

/* ---- forward ----------------------------------------------------------------------------------- */

/* Floats of one thread's workspace: col (K x B*P) unless direct, plus a block of outputs or of
 * output gradients (O x B*P) when B > 1. */
static int64_t conv_ws_floats(const conv_geom *g) {
    return (g->direct ? 0 : g->K * g->B * g->P) + (g->B > 1 ? g->O * g->B * g->P : 0);
}

/* Images n0 .. n0+nb-1: y[n, o, p] = bias[o] + sum_r weight[o, r] * col(x[n])[r, p]. */
static void conv2d_forward_block(const conv_geom *g, int64_t n0, int64_t nb, const float *x /* (N, C, H, W) */,
                                 const float *w /* (O, K) */, const float *bias /* (O) or NULL */,
                                 float *y /* (N, O, P) */, float *ws /* conv_ws_floats */) {
    const int64_t xs = g->C * g->H * g->W, ys = g->O * g->P, ld = nb * g->P;
    float *col = ws, *yb = ws + (g->direct ? 0 : g->K * g->B * g->P);
    const float *a = col;
    if (g->direct) a = x + n0 * xs;
    else
        for (int64_t b = 0; b < nb; b++) im2col(g, x + (n0 + b) * xs, col + b * g->P, ld);
    float *dst = nb == 1 ? y + n0 * ys : yb; /* one image: straight into y */
    torch_sgemm(false, false, g->O, ld, g->K, w, g->K, a, ld, 0.0f, dst, ld);
    for (int64_t b = 0; b < nb; b++)
        for (int64_t o = 0; o < g->O; o++) {
            float *out = y + (n0 + b) * ys + o * g->P;
            const float *src = dst + o * ld + b * g->P;
            float bo = bias ? bias[o] : 0.0f;
            for (int64_t p = 0; p < g->P; p++) out[p] = src[p] + bo;
        }
}

/* Blocks of B images are independent: one thread each, with its own workspace. */
static void conv2d_forward_kernel(const conv_geom *g, const float *x /* (N, C, H, W) */, const float *w /* (O, K) */,
                                  const float *bias /* (O) or NULL */, float *y /* (N, O, P) */,
                                  float *ws /* nthreads x conv_ws_floats */, int nthreads) {
    const int64_t blocks = (g->N + g->B - 1) / g->B, per = conv_ws_floats(g);
    (void)nthreads;
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
 * summed with sgemm's beta = 1), which run in parallel and are added in slot order at the end. */
static void conv2d_backward_slot(const conv_geom *g, int64_t k0, int64_t k1, const float *x /* (N, C, H, W) */,
                                 const float *w /* (O, K) */, const float *dy /* (N, O, P) */,
                                 float *dx /* (N, C, H, W) zeroed, or NULL */, float *dw /* (O, K), or NULL */,
                                 float *ws /* conv_ws_floats */) {
    const int64_t xs = g->C * g->H * g->W, ys = g->O * g->P;
    float *col = ws, *dyb = ws + (g->direct ? 0 : g->K * g->B * g->P);
    if (dw && k0 == k1) memset(dw, 0, (size_t)(g->O * g->K) * sizeof *dw); /* an empty batch */
    for (int64_t k = k0; k < k1; k++) {
        int64_t n0 = k * g->B, nb = g->N - n0 < g->B ? g->N - n0 : g->B, ld = nb * g->P;
        const float *dY = dy + n0 * ys;
        if (nb > 1) {
            for (int64_t b = 0; b < nb; b++)
                for (int64_t o = 0; o < g->O; o++)
                    memcpy(dyb + o * ld + b * g->P, dy + (n0 + b) * ys + o * g->P, (size_t)g->P * sizeof(float));
            dY = dyb;
        }
        if (dw) {
            const float *a = col;
            if (g->direct) a = x + n0 * xs;
            else
                for (int64_t b = 0; b < nb; b++) im2col(g, x + (n0 + b) * xs, col + b * g->P, ld);
            torch_sgemm(false, true, g->O, g->K, ld, dY, ld, a, ld, k == k0 ? 0.0f : 1.0f, dw, g->K);
        }
        if (dx) {
            /* The direct case writes dcol straight into dx[n] (col2im is the identity there). */
            float *dcol = g->direct ? dx + n0 * xs : col;
            torch_sgemm(true, false, g->K, ld, g->O, w, g->K, dY, ld, 0.0f, dcol, ld);
            if (!g->direct)
                for (int64_t b = 0; b < nb; b++) col2im(g, col + b * g->P, ld, dx + (n0 + b) * xs);
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
                                   float *dx /* (N, C, H, W) zeroed, or NULL */, float *dw /* (O, K), or NULL */,
                                   float *db /* (O) or NULL */, float *ws /* nthreads x conv_ws_floats */,
                                   float *partial /* (S - 1, O, K) when dw */, int nthreads) {
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
    size_t npartial = need_w ? (size_t)((conv_slots(&g) - 1) * g.O * g.K) : 0;
    tensor *dy = tensor_contiguous(grad_output);
    tensor *dx = need_x ? torch_zeros(x->ndim, x->shape) : NULL;
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
    float *ws = malloc((size_t)(nthreads * conv_ws_floats(&g) + 1) * sizeof(float));
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
    nn_conv2d_module *m = calloc(1, sizeof *m);
    if (!m) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "Conv2d: out of memory");
        return NULL;
    }
    nn_module_init(&m->base, &conv2d_ops);
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
