/* conv.c — nnf_conv2d: its checks, the choice among its algorithms (im2col + sgemm, register-
 * blocked kernels when the reduction is short, Winograd), its backward, and the Conv2d module.
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
 *     products over transformed tiles with 2.25 times fewer multiplications (see conv_winograd.c).
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
 *
 * This file holds the checks, the choice of path and block sizes, the workspaces, the threads, the
 * graph node and the module; the algorithms (and their derivations) are in conv_im2col.c (im2col,
 * col2im and the sgemm products), conv_direct.c (the short-reduction kernels) and
 * conv_winograd.c, declared in the private conv_kernels.h.
 */
#include "conv.h"

#include "activation.h" /* nn_is_relu: the module a Conv2d absorbs in inference */
#include "batch_norm.h" /* the module a Conv2d folds (conv2d_fold_next) */
#include "conv_kernels.h"
#include "fuse.h"
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

/* K at most this: the short-reduction kernels instead of sgemm. (conv_geom and SK_P, the pitch
 * of those kernels' columns: conv_kernels.h.) */
#define CONV_SMALL_K 32

/* Images per GEMM: enough for about 1024 columns when images are small, at most 16M floats of col. */
static int64_t conv_block(const conv_geom *g) {
    if (g->col_is_input || g->small_k || g->P <= 0 || g->P >= 128 || g->N <= 1) return 1; /* P <= 0: a refused shape */
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
    g->col_is_input = g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PH == 0 && g->PW == 0;
    g->small_k = !g->col_is_input && g->K <= CONV_SMALL_K;
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

/* Floats of one thread's workspace: col (K x B*P; K+1 rows of pitch ldc for the small-K kernels;
 * none when col_is_input), plus a block of outputs or of output gradients (O x B*P) when B > 1; or the
 * Winograd buffers. */
static int64_t conv_ws_floats(const conv_geom *g) {
    if (g->wino) {
        conv_wino_geom w = conv_wino_geom_of(g);
        return conv_wino_ws_floats(g, &w);
    }
    if (g->small_k) return (g->K + 1) * g->ldc;
    return (g->col_is_input ? 0 : g->K * g->B * g->P) + (g->B > 1 ? g->O * g->B * g->P : 0);
}

/* Floats the forward needs besides the threads' workspaces: the transformed weights. */
static int64_t conv_shared_floats(const conv_geom *g) { return g->wino ? 16 * g->O * g->C : 0; }

/* max(y, 0) over images n0 .. n0+nb-1 of y, as ReLU forms it (y < 0 ? 0 : y: NaN and -0 stay): run
 * by the thread that has just written them, while they are still in its cache. */
static void relu_block(const conv_geom *g, int64_t n0, int64_t nb, float *y /* (N, O, P) */) {
    float *p = y + n0 * g->O * g->P;
    const int64_t n = nb * g->O * g->P;
    for (int64_t i = 0; i < n; i++) p[i] = p[i] < 0.0f ? 0.0f : p[i];
}

/* Blocks of B images are independent: one thread each, with its own workspace. With `relu`, each
 * block is clamped as soon as it is written (a Conv2d absorbing the ReLU after it). */
static void conv2d_forward_kernel(const conv_geom *g, const float *x /* (N, C, H, W) */, const float *w /* (O, K) */,
                                  const float *bias /* (O) or NULL */, float *y /* (N, O, P) */,
                                  float *ws /* conv_shared_floats + nthreads x conv_ws_floats */, int nthreads,
                                  bool relu) {
    const int64_t blocks = (g->N + g->B - 1) / g->B, per = conv_ws_floats(g);
    if (g->wino) {
        const conv_wino_geom wg = conv_wino_geom_of(g);
        float *U = ws, *tws = ws + conv_shared_floats(g);
        conv_wino_weights(g, w, U);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
        for (int64_t k = 0; k < blocks; k++) {
            int64_t n0 = k * g->B, nb = g->N - n0 < g->B ? g->N - n0 : g->B;
            conv_wino_forward_block(g, &wg, n0, nb, x, U, bias, y, tws + thread_id() * per);
            if (relu) relu_block(g, n0, nb, y);
        }
        return;
    }
    if (g->small_k)
        for (int t = 0; t < nthreads; t++) conv_small_k_col_init(g, ws + t * per);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
    for (int64_t k = 0; k < blocks; k++) {
        int64_t n0 = k * g->B, nb = g->N - n0 < g->B ? g->N - n0 : g->B;
        conv_im2col_forward_block(g, n0, nb, x, w, bias, y, ws + thread_id() * per);
        if (relu) relu_block(g, n0, nb, y);
    }
}

/* ---- backward ---------------------------------------------------------------------------------- */

/* The derivations are next to the kernels: conv_im2col.c (dweight, dcol, col2im), conv_winograd.c
 * (the adjoints of its transforms). Here: dbias[o] = sum over n and p of dy[n, o, p], in double,
 * and the split of the dweight sum into slots. */

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
        const conv_wino_geom wg = conv_wino_geom_of(g);
        const int64_t UN = 16 * g->O * g->C;
        float *U = partial, *dU = dw ? partial + UN : NULL;
        if (dx) conv_wino_weights(g, w, U);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
        for (int64_t s = 0; s < S; s++) {
            int64_t k0 = s * blocks / S, k1 = (s + 1) * blocks / S;
            float *dUs = dU ? dU + s * UN : NULL, *tws = ws + thread_id() * per;
            if (dUs && k0 == k1) memset(dUs, 0, (size_t)UN * sizeof *dUs);
            for (int64_t k = k0; k < k1; k++) {
                int64_t n0 = k * g->B, nb = g->N - n0 < g->B ? g->N - n0 : g->B;
                conv_wino_backward_block(g, &wg, n0, nb, k == k0, x, U, dy, dx, dUs, tws);
            }
        }
        if (dw) {
            for (int64_t s = 1; s < S; s++)
                for (int64_t i = 0; i < UN; i++) dU[i] += dU[s * UN + i];
            conv_wino_weights_grad(g, dU, dw);
        }
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
    for (int64_t s = 0; s < S; s++) {
        float *dws = !dw ? NULL : s == 0 ? dw : partial + (s - 1) * OK;
        conv_im2col_backward_slot(g, s * blocks / S, (s + 1) * blocks / S, x, w, dy, dx, dws,
                                  ws + thread_id() * per);
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

static const ag_function conv2d_function = {.op = AG_OP_CONV2D, .backward = conv2d_backward};

/* nnf_conv2d; with `relu` (only when no graph is recorded: the node would need the pre-ReLU
 * output's sign), followed by ReLU. */
static tensor *conv2d_impl(const char *fname, tensor *input, tensor *weight, tensor *bias, const int64_t stride[2],
                           const int64_t padding[2], const int64_t dilation[2], bool relu) {
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
                          tensor_data_f32(y), ws, nthreads, relu);
    free(ws);
    tensor *inputs[3] = {input, weight, bias};
    TORCH_ASSERT(!relu || !ag_should_record(3, inputs));
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
    return conv2d_impl("nnf_conv2d", input, weight, bias, stride, padding, dilation, false);
}

/* ---- module ------------------------------------------------------------------------------------ */

static tensor *conv2d_module_forward(nn_module *self, tensor *input) {
    nn_conv2d_module *m = (nn_conv2d_module *)self;
    return conv2d_impl("Conv2d", input, m->weight, m->bias, m->options.stride, m->options.padding,
                       m->options.dilation, false);
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

/* Inference (nothing to record for backward): a ReLU after a Conv2d runs in the convolution's pass,
 * on each block of images while it is in cache, instead of as a pass of its own over memory with
 * a tensor of its own; the same numbers, bit for bit. This is what makes a folded Conv-BN-ReLU
 * (fuse.h) one pass. With autograd recording, the two run in turn. */
static bool conv2d_absorb_next(nn_module *self, nn_module *next, tensor *input, tensor **output) {
    nn_conv2d_module *m = (nn_conv2d_module *)self;
    tensor *inputs[3] = {input, m->weight, m->bias};
    if (!nn_is_relu(next) || ag_should_record(3, inputs)) return false;
    *output = conv2d_impl("Conv2d", input, m->weight, m->bias, m->options.stride, m->options.padding,
                          m->options.dilation, true);
    return true;
}

/* A BatchNorm2d after a Conv2d folds into it for inference (fuse.h). */
static bool conv2d_fold_next(const nn_module *self, const nn_module *next, nn_module **folded) {
    const nn_batch_norm_module *bn = nn_as_batch_norm((nn_module *)next);
    if (!bn || bn->dims != 2) return false;
    *folded = nn_utils_fuse_conv_bn_eval(self, next);
    return true;
}

/* nn_conv2d with self's options; the initial values come from a generator of its own (they are
 * overwritten), so that copying draws nothing from the caller's streams. */
static nn_module *conv2d_new_like(const nn_module *self) {
    torch_generator scratch = torch_generator_new(0);
    nn_conv2d_options o = ((const nn_conv2d_module *)self)->options;
    o.generator = &scratch;
    return nn_conv2d(o);
}

static const nn_module_ops conv2d_ops = {
    .type_name = "Conv2d",
    .forward = conv2d_module_forward,
    .reset_parameters = conv2d_reset_parameters,
    .extra_repr = conv2d_extra_repr,
    .absorb_next = conv2d_absorb_next,
    .fold_next = conv2d_fold_next,
    .new_like = conv2d_new_like,
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
