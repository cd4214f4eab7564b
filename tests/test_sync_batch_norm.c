/* test_sync_batch_norm.c — SyncBatchNorm's arithmetic in one process (no MPI): the exchanges go
 * through process groups simulated here, and the references are plain BatchNorm over the batch
 * the simulated processes hold together.
 *
 *   alone     a group of one process: nnf_sync_batch_norm is nnf_batch_norm (y, dx, dweight,
 *             dbias, running statistics);
 *   two       a group of two where the other process's slice and dy are tensors the fake exchange
 *             holds, its moments and sums computed here in plain double loops: y, dx and the
 *             running statistics are those of nnf_batch_norm over cat(x, x_other), with slices of
 *             3 and 5 rows around a mean of 1e4 (the merge of unequal counts, for large means),
 *             and with an empty slice here (0 rows) beside 4 there;
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
    int gathers, sums; /* calls so far */
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

/* A second process, rank 1, whose slice x (N, C, S) and upstream gradient dy the exchange holds. */
typedef struct other_group {
    const tensor *x, *dy;
    double mean[8]; /* the global mean, which its sums need, worked out at the gather */
    int    gathers, sums;
} other_group;

/* The block is [count, mean[C], m2[C]]; the other process's, two-pass in double. */
static torch_status other_gather(void *h, const double *send, double *recv, int64_t n) {
    other_group *g = h;
    g->gathers++;
    const int64_t C = (n - 1) / 2, N = g->x->shape[0], S = g->x->numel / (N * C > 0 ? N * C : 1);
    const float *x = tensor_data_f32(g->x);
    memcpy(recv, send, (size_t)n * sizeof *send);
    double *block = recv + n;
    block[0] = (double)(N * S);
    for (int64_t c = 0; c < C; c++) {
        double sum = 0, m2 = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < S; k++) sum += x[(i * C + c) * S + k];
        const double mean = sum / block[0];
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < S; k++) m2 += (x[(i * C + c) * S + k] - mean) * (x[(i * C + c) * S + k] - mean);
        block[1 + c] = mean, block[1 + C + c] = m2;
        g->mean[c] = (send[0] * send[1 + c] + block[0] * mean) / (send[0] + block[0]);
    }
    return TORCH_OK;
}

/* values = [sum(dy)[C], sum(dy (x - mean))[C]] here, plus the other process's. */
static torch_status other_sum(void *h, double *values, int64_t n) {
    other_group *g = h;
    g->sums++;
    const int64_t C = n / 2, N = g->x->shape[0], S = g->x->numel / (N * C > 0 ? N * C : 1);
    const float *x = tensor_data_f32(g->x), *dy = tensor_data_f32(g->dy);
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < S; k++) {
                const int64_t at = (i * C + c) * S + k;
                values[c] += dy[at];
                values[C + c] += dy[at] * (x[at] - g->mean[c]);
            }
    return TORCH_OK;
}

/* Rows of a and then b, (Na + Nb, C, H, W). */
static tensor *cat_rows(const tensor *a, const tensor *b) {
    tensor *t = torch_empty(TORCH_SHAPE(a->shape[0] + b->shape[0], a->shape[1], a->shape[2], a->shape[3]));
    memcpy(tensor_data_f32(t), tensor_data_f32(a), (size_t)a->numel * sizeof(float));
    memcpy(tensor_data_f32(t) + a->numel, tensor_data_f32(b), (size_t)b->numel * sizeof(float));
    return t;
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

/* Our N rows and the other process's N_other: against BatchNorm over cat(x, x_other) with dy =
 * cat(r, r_other). The mean of 1e4 would lose float's digits in sum(x^2) - M mean^2. */
static void two_processes(int64_t N, int64_t N_other, double offset) {
    const int64_t C = 2, H = 4, W = 3, n = N * C * H * W;
    tensor *x_other = random_tensor(10, offset + 3, TORCH_SHAPE(N_other, C, H, W));
    tensor *r_other = random_tensor(11, 0, TORCH_SHAPE(N_other, C, H, W));
    other_group h = {.x = x_other, .dy = r_other};
    const nn_process_group pg = {.handle = &h, .size = 2, .all_gather = other_gather, .all_reduce_sum = other_sum};
    tensor *x = leaf(random_tensor(4, offset, TORCH_SHAPE(N, C, H, W)));
    tensor *r = random_tensor(5, 0, TORCH_SHAPE(N, C, H, W));
    tensor *w = random_tensor(6, 1, TORCH_SHAPE(C)), *b = random_tensor(7, 0, TORCH_SHAPE(C));
    tensor *rm = torch_zeros(TORCH_SHAPE(C)), *rv = torch_ones(TORCH_SHAPE(C));
    tensor *y = nnf_sync_batch_norm(x, rm, rv, w, b, 0.1, 1e-5, &pg);
    cr_assert_not_null(y, "%s", torch_last_error());
    backward_with(y, r);

    /* the reference: the whole batch in one process */
    tensor *xx = leaf(cat_rows(x, x_other)), *rr = cat_rows(r, r_other);
    tensor *rm2 = torch_zeros(TORCH_SHAPE(C)), *rv2 = torch_ones(TORCH_SHAPE(C));
    tensor *yy = nnf_batch_norm(xx, rm2, rv2, w, b, true, 0.1, 1e-5);
    cr_assert_not_null(yy, "%s", torch_last_error());
    backward_with(yy, rr);

    cr_expect_eq(h.gathers, 1);
    cr_expect_eq(h.sums, 1);
    cr_assert_not_null(x->grad);
    cr_expect_eq(x->grad->numel, n);
    expect_close("y", y, yy, n, 1e-5);
    expect_close("dx", x->grad, xx->grad, n, 1e-5);
    expect_close("running_mean", rm, rm2, C, 1e-7);
    expect_close("running_var", rv, rv2, C, 1e-6);
    tensor *all[] = {x, r, w, b, rm, rv, y, xx, rr, rm2, rv2, yy, x_other, r_other};
    for (int i = 0; i < 14; i++) tensor_free(all[i]);
}

Test(sync_batch_norm, two_processes_unequal_slices_large_mean) { two_processes(3, 5, 1e4); }
Test(sync_batch_norm, two_processes_empty_slice_here) { two_processes(0, 4, 0); }

/* PyTorch's SyncBatchNorm counts values over all processes: one value here is fine when the
 * group has more; one value in all is refused, on every process alike. */
Test(sync_batch_norm, counts_over_all_processes) {
    fake_group h = {0};
    tensor *x_other = random_tensor(8, 1, TORCH_SHAPE(1, 2, 1, 1)); /* x + 1: same generator, offset 1 */
    other_group o = {.x = x_other};
    const nn_process_group two = {.handle = &o, .size = 2, .all_gather = other_gather, .all_reduce_sum = other_sum};
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
    tensor_free(x_other);
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
    tensor *x = leaf(torch_randn(&gen, TORCH_SHAPE(4, 3, 2, 2)));
    tensor *y = nn_module_forward(seq, x), *y0 = nn_module_forward(plain, x);
    cr_assert(y && y0, "%s", torch_last_error());
    cr_expect_eq(h.gathers, 1);
    cr_expect_eq(h.sums, 0);
    backward_with(y, y0);
    cr_expect_eq(h.sums, 1, "the backward of a training step sums over the processes once");
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
