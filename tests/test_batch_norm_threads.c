/* test_batch_norm_threads.c — nnf_batch_norm gives bit-identical results at 1, 2 and 3 threads.
 *
 * The kernels split planes (n, c) between threads and add each channel's per-plane partial sums
 * in n order, so the thread count must never change a bit of y, dx, dweight, dbias or the running
 * statistics. The shapes are large enough to take the parallel path (>= 32768 elements) and are
 * chosen so that the split falls inside channels: odd channel counts, plane lengths that are not
 * a multiple of the 16-lane blocks, short planes (S < 16, reduced channel by channel), a single
 * channel, 1-D and 3-D batch norm inputs, eval mode, no affine / no running statistics, and a
 * mean-1e4 input. Planes of 1024 values or more go channel by channel when there are at least
 * 2 channels per thread, and in memory order otherwise, so (9, 3, 37, 37) and (6, 5, 40, 33) also
 * compare the two orders with each other (channel by channel at 1 thread, memory order at 3).
 * Every case is also checked against a float64 formula written out below (an
 * independent reference: two-pass statistics, the textbook dx), within 1e-5 relative-or-absolute.
 * (A thread-dependent order of the double-precision sums would usually vanish in the rounding to
 * float, so these tests guard the split of the float outputs; the order of the sums is fixed by
 * construction in functional_batch_norm.c.) */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctorch.h"
#include "nn/batch_norm.h"
#include "tensor/parallel.h"

#define EPS 1e-5
#define MOMENTUM 0.1
#define TOL 1e-5

typedef struct bn_case {
    int     ndim;
    int64_t shape[5];
    bool    training, affine, track;
    double  mean; /* added to every input value */
} bn_case;

/* Everything a call produces, as plain floats (NULL where the case has no such output). */
typedef struct bn_out {
    float *y, *dx, *dweight, *dbias, *running_mean, *running_var;
} bn_out;

static float *copy_out(const tensor *t) {
    if (!t) return NULL;
    float *p = malloc((size_t)t->numel * sizeof *p);
    memcpy(p, tensor_data_f32(t), (size_t)t->numel * sizeof *p);
    return p;
}

static void free_out(bn_out *o) {
    free(o->y), free(o->dx), free(o->dweight), free(o->dbias), free(o->running_mean), free(o->running_var);
}

/* The inputs of a case: the same numbers for every call (seeded). */
typedef struct bn_inputs {
    tensor *x, *dy, *weight, *bias, *running_mean, *running_var;
    int64_t N, C, S;
} bn_inputs;

static bn_inputs make_inputs(const bn_case *k) {
    bn_inputs in = {0};
    torch_generator g = torch_generator_new(11);
    in.x = torch_randn(&g, k->ndim, k->shape);
    in.dy = torch_randn(&g, k->ndim, k->shape);
    float *xp = tensor_data_f32(in.x);
    for (int64_t i = 0; i < in.x->numel; i++) xp[i] = (float)(xp[i] + k->mean);
    in.N = k->shape[0], in.C = k->shape[1], in.S = in.x->numel / (in.N * in.C);
    in.weight = torch_rand(&g, 1, &in.C); /* non-trivial gamma and beta */
    in.bias = torch_randn(&g, 1, &in.C);
    in.running_mean = torch_randn(&g, 1, &in.C);
    in.running_var = torch_rand(&g, 1, &in.C);
    float *rv = tensor_data_f32(in.running_var);
    for (int64_t c = 0; c < in.C; c++) rv[c] += 0.5f;
    float *rm = tensor_data_f32(in.running_mean);
    for (int64_t c = 0; c < in.C; c++) rm[c] = (float)(rm[c] + k->mean);
    return in;
}

static void free_inputs(bn_inputs *in) {
    tensor *all[] = {in->x, in->dy, in->weight, in->bias, in->running_mean, in->running_var};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
}

/* One forward + backward at `threads` threads, on fresh copies of the inputs. */
static bn_out run(const bn_case *k, const bn_inputs *in, int threads) {
    torch_set_num_threads(threads);
    tensor *x = tensor_clone(in->x);
    tensor *w = k->affine ? tensor_clone(in->weight) : NULL, *b = k->affine ? tensor_clone(in->bias) : NULL;
    tensor *rm = k->track ? tensor_clone(in->running_mean) : NULL, *rv = k->track ? tensor_clone(in->running_var) : NULL;
    cr_assert_eq(tensor_set_requires_grad(x, true), TORCH_OK);
    if (w) cr_assert_eq(tensor_set_requires_grad(w, true), TORCH_OK);
    if (b) cr_assert_eq(tensor_set_requires_grad(b, true), TORCH_OK);
    tensor *y = nnf_batch_norm(x, rm, rv, w, b, k->training, MOMENTUM, EPS);
    cr_assert_not_null(y, "nnf_batch_norm: %s", torch_last_error());
    cr_assert_eq(tensor_backward(y, in->dy, false), TORCH_OK, "backward: %s", torch_last_error());
    bn_out o = {.y = copy_out(y), .dx = copy_out(tensor_grad(x))};
    if (w) o.dweight = copy_out(tensor_grad(w)), o.dbias = copy_out(tensor_grad(b));
    if (rm) o.running_mean = copy_out(rm), o.running_var = copy_out(rv);
    tensor *all[] = {y, x, w, b, rm, rv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
    return o;
}

static void assert_same_bits(const float *a, const float *b, int64_t n, const char *what, int threads) {
    cr_assert_eq(!a, !b, "%s: present at one thread count only", what);
    if (a) cr_assert_eq(memcmp(a, b, (size_t)n * sizeof *a), 0, "%s differs between 1 and %d threads", what, threads);
}

static void assert_close(const float *ours, const double *ref, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(ours[i] - ref[i]) <= TOL * fmax(1.0, fabs(ref[i])), "%s[%lld] = %.9g, float64 reference %.9g",
                  what, (long long)i, (double)ours[i], ref[i]);
}

/* The float64 reference, per channel: two-pass batch statistics (or the running ones), y, and the
 * gradients from the textbook formulas, then the running-statistic update. */
static void check_reference(const bn_case *k, const bn_inputs *in, const bn_out *o) {
    const int64_t N = in->N, C = in->C, S = in->S, M = N * S;
    const float *x = tensor_data_f32(in->x), *dy = tensor_data_f32(in->dy);
    double *y = malloc((size_t)(N * C * S) * sizeof *y), *dx = malloc((size_t)(N * C * S) * sizeof *dx);
    double *dw = malloc((size_t)C * sizeof *dw), *db = malloc((size_t)C * sizeof *db);
    double *rm = malloc((size_t)C * sizeof *rm), *rv = malloc((size_t)C * sizeof *rv);
    const bool batch_stats = k->training || !k->track;
    for (int64_t c = 0; c < C; c++) {
        double sum = 0, ss = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
        const double mu = sum / (double)M;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) ss += (x[(n * C + c) * S + s] - mu) * (x[(n * C + c) * S + s] - mu);
        const double m = batch_stats ? mu : tensor_data_f32(in->running_mean)[c];
        const double v = batch_stats ? ss / (double)M : tensor_data_f32(in->running_var)[c];
        const double is = 1.0 / sqrt(v + EPS), gamma = k->affine ? tensor_data_f32(in->weight)[c] : 1.0;
        const double beta = k->affine ? tensor_data_f32(in->bias)[c] : 0.0;
        double sum_dy = 0, sum_dy_xhat = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                const int64_t i = (n * C + c) * S + s;
                const double xhat = (x[i] - m) * is;
                y[i] = xhat * gamma + beta;
                sum_dy += dy[i], sum_dy_xhat += dy[i] * xhat;
            }
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                const int64_t i = (n * C + c) * S + s;
                const double xhat = (x[i] - m) * is;
                dx[i] = batch_stats ? gamma * is / (double)M * ((double)M * dy[i] - sum_dy - xhat * sum_dy_xhat)
                                    : dy[i] * gamma * is;
            }
        dw[c] = sum_dy_xhat, db[c] = sum_dy;
        if (k->track) {
            const double f = k->training ? MOMENTUM : 0.0;
            rm[c] = (1 - f) * tensor_data_f32(in->running_mean)[c] + f * mu;
            rv[c] = (1 - f) * tensor_data_f32(in->running_var)[c] + f * ss / (double)(M - 1);
        }
    }
    assert_close(o->y, y, N * C * S, "y");
    assert_close(o->dx, dx, N * C * S, "dx");
    if (k->affine) assert_close(o->dweight, dw, C, "dweight"), assert_close(o->dbias, db, C, "dbias");
    if (k->track) assert_close(o->running_mean, rm, C, "running_mean"), assert_close(o->running_var, rv, C, "running_var");
    free(y), free(dx), free(dw), free(db), free(rm), free(rv);
}

static void check_case(bn_case k) {
    const int saved = torch_get_num_threads();
    bn_inputs in = make_inputs(&k);
    cr_assert_geq(in.x->numel, 32768, "the case must be large enough for the parallel path");
    bn_out one = run(&k, &in, 1);
    check_reference(&k, &in, &one);
    const int64_t numel = in.x->numel, C = in.C;
    for (int threads = 2; threads <= 3; threads++) {
        bn_out many = run(&k, &in, threads);
        assert_same_bits(one.y, many.y, numel, "y", threads);
        assert_same_bits(one.dx, many.dx, numel, "dx", threads);
        assert_same_bits(one.dweight, many.dweight, C, "dweight", threads);
        assert_same_bits(one.dbias, many.dbias, C, "dbias", threads);
        assert_same_bits(one.running_mean, many.running_mean, C, "running_mean", threads);
        assert_same_bits(one.running_var, many.running_var, C, "running_var", threads);
        free_out(&many);
    }
    free_out(&one);
    free_inputs(&in);
    torch_set_num_threads(saved);
}

Test(batch_norm_threads, odd_channels_and_plane_tails) {
    /* 27 planes of 1369 = 85 * 16 + 9 values: 2 and 3 threads split inside channels */
    check_case((bn_case){.ndim = 4, .shape = {9, 3, 37, 37}, .training = true, .affine = true, .track = true});
}

Test(batch_norm_threads, long_planes_by_channel) {
    /* S = 1296: channel by channel at 1, 2 and 3 threads, the threads owning different channels */
    check_case((bn_case){.ndim = 4, .shape = {4, 8, 36, 36}, .training = true, .affine = true, .track = true});
}

/* AVX builds write a forward's output larger than 12 MiB, and a backward's dx when x, dy and dx
 * together are (on a machine reporting 32 MiB of L3 or more), with streaming stores over each
 * plane's whole cache lines: odd plane lengths put every plane start at a different alignment and
 * share lines between planes. */
Test(batch_norm_threads, streamed_outputs_by_channel) {
    check_case((bn_case){.ndim = 4, .shape = {4, 8, 321, 321}, .training = true, .affine = true, .track = true});
}
Test(batch_norm_threads, streamed_outputs_memory_order_and_eval) {
    /* 3 channels: channel by channel at 1 thread, memory order at 2 and 3 */
    check_case((bn_case){.ndim = 4, .shape = {4, 3, 521, 521}, .training = true, .affine = true, .track = true});
    check_case((bn_case){.ndim = 4, .shape = {4, 3, 521, 521}, .training = false, .affine = true, .track = true});
}

Test(batch_norm_threads, streamed_outputs_short_planes) {
    /* 13 MB per tensor, streamed in the forward and the backward; planes of 169 values (memory
     * order, lines shared between planes) and of 9 (shorter than a line); then 6.9 MB, streamed
     * in the backward only */
    check_case((bn_case){.ndim = 4, .shape = {300, 64, 13, 13}, .training = true, .affine = true, .track = true});
    check_case((bn_case){.ndim = 4, .shape = {6000, 64, 3, 3}, .training = true, .affine = true, .track = true});
    check_case((bn_case){.ndim = 4, .shape = {160, 64, 13, 13}, .training = true, .affine = true, .track = true});
}

Test(batch_norm_threads, many_short_planes) {
    check_case((bn_case){.ndim = 4, .shape = {64, 5, 11, 11}, .training = true, .affine = true, .track = true});
}

Test(batch_norm_threads, single_channel_two_planes) {
    check_case((bn_case){.ndim = 4, .shape = {2, 1, 160, 160}, .training = true, .affine = true, .track = true});
}

Test(batch_norm_threads, batch_norm1d_short_planes) {
    /* S = 3 < 16: channels reduce their own planes */
    check_case((bn_case){.ndim = 3, .shape = {4096, 3, 3}, .training = true, .affine = true, .track = true});
}

Test(batch_norm_threads, batch_norm1d_two_dims) {
    check_case((bn_case){.ndim = 2, .shape = {20000, 2}, .training = true, .affine = true, .track = true});
}

Test(batch_norm_threads, batch_norm3d_eval) {
    check_case((bn_case){.ndim = 5, .shape = {3, 7, 4, 33, 33}, .training = false, .affine = true, .track = true});
}

Test(batch_norm_threads, no_affine_no_running_stats) {
    check_case((bn_case){.ndim = 4, .shape = {6, 5, 40, 33}, .training = true, .affine = false, .track = false});
}

Test(batch_norm_threads, large_mean) {
    check_case((bn_case){.ndim = 4, .shape = {16, 4, 24, 24}, .training = true, .affine = true, .track = true, .mean = 1e4});
}
