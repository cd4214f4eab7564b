/* test_sync_batch_norm.c — SyncBatchNorm's arithmetic in one process (no MPI): the exchanges go
 * through process groups simulated here, and the references are plain BatchNorm over the batch
 * the simulated processes hold together.
 *
 *   alone     a group of one process: nnf_sync_batch_norm is nnf_batch_norm (y, dx, dweight,
 *             dbias, running statistics);
 *   shifted   a group of two where the other process holds this one's slice + 5 and the same dy
 *             (its moments and sums follow from ours, so the fake exchange is exact): y, dx and
 *             the running statistics are those of nnf_batch_norm over cat(x, x + 5), and the mean
 *             of 1e4 checks the merge for large means;
 *   module    nn_batch_norm_set_process_group: the exchanges a training step makes (one gather
 *             forward, one sum backward), none in eval or frozen, the checks.
 * The gradient of the single-process case is checked with finite differences in test_op_table.c.
 * The real multi-process equivalence runs under MPI: tests/mpi/equivalence.c. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <string.h>

#include "ctorch.h"

/* ---- simulated groups ---------------------------------------------------------------------------- */

typedef struct fake_group {
    double shift;          /* the other process's slice is ours + shift (size 2); unused for size 1 */
    int    gathers, sums;  /* calls so far */
} fake_group;

static torch_status alone_gather(void *h, const double *send, double *recv, int64_t n) {
    ((fake_group *)h)->gathers++;
    memcpy(recv, send, (size_t)n * sizeof *send);
    return TORCH_OK;
}

static torch_status alone_sum(void *h, double *values, int64_t n) {
    (void)values, (void)n;
    ((fake_group *)h)->sums++;
    return TORCH_OK;
}

/* The block is [count, mean[C], m2[C]]: the shifted slice has the same count and m2, mean + shift. */
static torch_status shifted_gather(void *h, const double *send, double *recv, int64_t n) {
    fake_group *g = h;
    g->gathers++;
    const int64_t C = (n - 1) / 2;
    memcpy(recv, send, (size_t)n * sizeof *send);
    memcpy(recv + n, send, (size_t)n * sizeof *send);
    for (int64_t c = 0; c < C; c++) recv[n + 1 + c] += g->shift;
    return TORCH_OK;
}

/* values = [sum(dy)[C], sum(dy (x - mean))[C]]; the other slice has the same dy and x + shift:
 * its sums are sum(dy) and sum(dy (x - mean)) + shift sum(dy). */
static torch_status shifted_sum(void *h, double *values, int64_t n) {
    fake_group *g = h;
    g->sums++;
    const int64_t C = n / 2;
    for (int64_t c = 0; c < C; c++) {
        const double a = values[c], b = values[C + c];
        values[c] = 2 * a;
        values[C + c] = 2 * b + g->shift * a;
    }
    return TORCH_OK;
}

/* ---- helpers ------------------------------------------------------------------------------------ */

static tensor *random_tensor(uint64_t seed, double offset, int ndim, const int64_t *shape) {
    torch_generator g = torch_generator_new(seed);
    tensor *t = torch_randn(&g, ndim, shape);
    float *d = tensor_data_f32(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = (float)(d[i] * 2 + offset);
    return t;
}

/* max over i of |a_i - b_i| / max(1, |b_i|), over the first n elements of both. */
static double rel_err(const tensor *a, const tensor *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double x = tensor_data_f32(a)[i], y = tensor_data_f32(b)[i];
        worst = fmax(worst, fabs(x - y) / fmax(1.0, fabs(y)));
    }
    return worst;
}

static void expect_close(const char *what, const tensor *a, const tensor *b, int64_t n, double tol) {
    cr_assert(a && b, "%s: missing", what);
    const double e = rel_err(a, b, n);
    cr_log_info("%s: max rel error %.2e", what, e);
    cr_expect(e <= tol, "%s: max rel error %.3e > %.1e", what, e, tol);
}

static tensor *leaf(tensor *t) {
    cr_assert_eq(tensor_set_requires_grad(t, true), TORCH_OK);
    return t;
}

/* sum(y * r) backward: dy = r. */
static void backward_with(tensor *y, tensor *r) {
    tensor *p = torch_mul(y, r), *l = torch_sum(p, 0, NULL, false);
    cr_assert_eq(tensor_backward(l, NULL, false), TORCH_OK, "%s", torch_last_error());
    tensor_free(l);
    tensor_free(p);
}

/* ---- tests ---------------------------------------------------------------------------------------- */

Test(sync_batch_norm, alone_is_batch_norm) {
    fake_group h = {0};
    const nn_process_group pg = {.handle = &h, .size = 1, .all_gather = alone_gather, .all_reduce_sum = alone_sum};
    tensor *x[2], *w[2], *b[2], *rm[2], *rv[2], *y[2];
    tensor *r = random_tensor(9, 0, TORCH_SHAPE(4, 3, 5, 2));
    for (int k = 0; k < 2; k++) {
        x[k] = leaf(random_tensor(1, 3, TORCH_SHAPE(4, 3, 5, 2)));
        w[k] = leaf(random_tensor(2, 1, TORCH_SHAPE(3)));
        b[k] = leaf(random_tensor(3, 0, TORCH_SHAPE(3)));
        rm[k] = torch_zeros(TORCH_SHAPE(3));
        rv[k] = torch_ones(TORCH_SHAPE(3));
        y[k] = k ? nnf_sync_batch_norm(x[k], rm[k], rv[k], w[k], b[k], 0.1, 1e-5, &pg)
                 : nnf_batch_norm(x[k], rm[k], rv[k], w[k], b[k], true, 0.1, 1e-5);
        cr_assert_not_null(y[k], "%s", torch_last_error());
        backward_with(y[k], r);
    }
    cr_expect_str_eq(y[1]->grad_fn ? ag_function_name(y[1]->grad_fn->fn) : "", "SyncBatchNormBackward");
    cr_expect_eq(h.gathers, 1);
    cr_expect_eq(h.sums, 1);
    expect_close("y", y[1], y[0], y[0]->numel, 1e-6);
    expect_close("dx", x[1]->grad, x[0]->grad, x[0]->numel, 1e-6);
    expect_close("dweight", w[1]->grad, w[0]->grad, 3, 1e-6);
    expect_close("dbias", b[1]->grad, b[0]->grad, 3, 1e-6);
    expect_close("running_mean", rm[1], rm[0], 3, 1e-7);
    expect_close("running_var", rv[1], rv[0], 3, 1e-7);
    for (int k = 0; k < 2; k++) {
        tensor *all[] = {x[k], w[k], b[k], rm[k], rv[k], y[k]};
        for (int i = 0; i < 6; i++) tensor_free(all[i]);
    }
    tensor_free(r);
}

/* Our slice x, the other process's x + 5, both with dy = r: against BatchNorm over cat(x, x + 5)
 * with dy = cat(r, r). The mean of 1e4 would lose float's digits in sum(x^2) - M mean^2. */
Test(sync_batch_norm, two_processes_merge_exactly) {
    const double shift = 5, offset = 1e4;
    fake_group h = {.shift = shift};
    const nn_process_group pg = {.handle = &h, .size = 2, .all_gather = shifted_gather, .all_reduce_sum = shifted_sum};
    const int64_t N = 3, C = 2, H = 4, W = 3, n = N * C * H * W;
    tensor *x = leaf(random_tensor(4, offset, TORCH_SHAPE(N, C, H, W)));
    tensor *r = random_tensor(5, 0, TORCH_SHAPE(N, C, H, W));
    tensor *w = random_tensor(6, 1, TORCH_SHAPE(C)), *b = random_tensor(7, 0, TORCH_SHAPE(C));
    tensor *rm = torch_zeros(TORCH_SHAPE(C)), *rv = torch_ones(TORCH_SHAPE(C));
    tensor *y = nnf_sync_batch_norm(x, rm, rv, w, b, 0.1, 1e-5, &pg);
    cr_assert_not_null(y, "%s", torch_last_error());
    backward_with(y, r);

    /* the reference: the whole batch in one process */
    tensor *xx = leaf(torch_empty(TORCH_SHAPE(2 * N, C, H, W))), *rr = torch_empty(TORCH_SHAPE(2 * N, C, H, W));
    for (int64_t i = 0; i < n; i++) {
        tensor_data_f32(xx)[i] = tensor_data_f32(x)[i];
        tensor_data_f32(xx)[n + i] = (float)(tensor_data_f32(x)[i] + shift); /* exact: ulp(1e4) < 1e-3 */
        tensor_data_f32(rr)[i] = tensor_data_f32(rr)[n + i] = tensor_data_f32(r)[i];
    }
    tensor *rm2 = torch_zeros(TORCH_SHAPE(C)), *rv2 = torch_ones(TORCH_SHAPE(C));
    tensor *yy = nnf_batch_norm(xx, rm2, rv2, w, b, true, 0.1, 1e-5);
    cr_assert_not_null(yy, "%s", torch_last_error());
    backward_with(yy, rr);

    cr_expect_eq(h.gathers, 1);
    cr_expect_eq(h.sums, 1);
    expect_close("y", y, yy, n, 1e-5);
    expect_close("dx", x->grad, xx->grad, n, 1e-5);
    expect_close("running_mean", rm, rm2, C, 1e-7);
    expect_close("running_var", rv, rv2, C, 1e-6);
    tensor *all[] = {x, r, w, b, rm, rv, y, xx, rr, rm2, rv2, yy};
    for (int i = 0; i < 12; i++) tensor_free(all[i]);
}

/* PyTorch's SyncBatchNorm counts values over all processes: one value here is fine when the
 * group has more; one value in all is refused, on every process alike. */
Test(sync_batch_norm, counts_over_all_processes) {
    fake_group h = {.shift = 1};
    const nn_process_group two = {.handle = &h, .size = 2, .all_gather = shifted_gather, .all_reduce_sum = shifted_sum};
    const nn_process_group one = {.handle = &h, .size = 1, .all_gather = alone_gather, .all_reduce_sum = alone_sum};
    tensor *x = random_tensor(8, 0, TORCH_SHAPE(1, 2, 1, 1));
    tensor *y = nnf_sync_batch_norm(x, NULL, NULL, NULL, NULL, 0.1, 1e-5, &two);
    cr_assert_not_null(y, "%s", torch_last_error());
    /* two values per channel, x and x + 1: normalised to -1 and +1 (up to eps) */
    for (int c = 0; c < 2; c++) cr_expect(fabs(tensor_data_f32(y)[c] + 1) < 1e-3, "%g", tensor_data_f32(y)[c]);
    tensor_free(y);
    y = nnf_sync_batch_norm(x, NULL, NULL, NULL, NULL, 0.1, 1e-5, &one);
    cr_expect_null(y);
    cr_expect(strstr(torch_last_error(), "nnf_sync_batch_norm: Expected more than 1 value per channel when training, "
                                         "got 1 over 1 processes"), "%s", torch_last_error());
    y = nnf_sync_batch_norm(x, NULL, NULL, NULL, NULL, 0.1, 1e-5, NULL);
    cr_expect_null(y);
    cr_expect(strstr(torch_last_error(), "expected a process group"), "%s", torch_last_error());
    tensor_free(x);
}

Test(sync_batch_norm, module_exchanges_only_when_training) {
    fake_group h = {0};
    const nn_process_group pg = {.handle = &h, .size = 1, .all_gather = alone_gather, .all_reduce_sum = alone_sum};
    torch_generator gen = torch_generator_new(0);
    nn_module *seq = nn_sequential(2, (nn_module *[]){nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 3)),
                                                      nn_relu()});
    nn_module *plain = nn_module_clone(seq);
    cr_assert(seq && plain);
    int64_t count = -1;
    cr_assert_eq(nn_batch_norm_set_process_group(seq, &pg, &count), TORCH_OK, "%s", torch_last_error());
    cr_expect_eq(count, 1);
    tensor *x = torch_randn(&gen, TORCH_SHAPE(4, 3, 2, 2));
    tensor *y = nn_module_forward(seq, x), *y0 = nn_module_forward(plain, x);
    cr_assert(y && y0, "%s", torch_last_error());
    cr_expect_eq(h.gathers, 1);
    expect_close("BatchNorm then ReLU", y, y0, y->numel, 1e-6);
    nn_batch_norm_module *bn = nn_as_batch_norm(nn_sequential_at(seq, 0)),
                         *bn0 = nn_as_batch_norm(nn_sequential_at(plain, 0));
    expect_close("running_var", bn->running_var, bn0->running_var, 3, 1e-7);
    cr_expect_eq(tensor_data_i64(bn->num_batches_tracked)[0], 1);
    tensor_free(y);
    tensor_free(y0);

    nn_module_eval(seq); /* running statistics: nothing to exchange */
    y = nn_module_forward(seq, x);
    cr_expect_eq(h.gathers, 1);
    tensor_free(y);
    nn_module_train(seq, true);
    cr_assert_eq(nn_batch_norm_freeze(seq, NN_BATCH_NORM_FREEZE_STATS, NULL), TORCH_OK);
    y = nn_module_forward(seq, x);
    cr_expect_eq(h.gathers, 1, "a frozen BatchNorm exchanged statistics");
    tensor_free(y);

    /* refusals change nothing */
    bn->options.ghost_batch_size = 2;
    cr_expect_eq(nn_batch_norm_set_process_group(seq, NULL, NULL), TORCH_OK);
    cr_expect_neq(nn_batch_norm_set_process_group(seq, &pg, &count), TORCH_OK);
    cr_expect(strstr(torch_last_error(), "BatchNorm2d '0' uses ghost batches"), "%s", torch_last_error());
    cr_expect_null(bn->process_group);
    const nn_process_group bad = {.size = 0};
    cr_expect_neq(nn_batch_norm_set_process_group(seq, &bad, NULL), TORCH_OK);
    cr_expect(strstr(torch_last_error(), "size < 1"), "%s", torch_last_error());
    cr_expect_neq(nn_batch_norm_set_process_group(NULL, &pg, NULL), TORCH_OK);
    tensor_free(x);
    nn_module_free(seq);
    nn_module_free(plain);
}
