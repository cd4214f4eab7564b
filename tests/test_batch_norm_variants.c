/* test_batch_norm_variants.c — frozen, ghost and precise BatchNorm, and BatchNorm folded into the
 * convolution, against PyTorch and against compositions of plain BatchNorm.
 *
 * References (scripts/make_bn_variant_fixtures.py, PyTorch 1.13, float64 from float32 inputs,
 * committed in fixtures/bn_variants.safetensors):
 *   frozen.*   a Conv-BN-ReLU block run in training mode with its BatchNorm in eval mode (what
 *              detectron2's FrozenBatchNorm2d computes): output and every gradient;
 *   ghost.*    BatchNorm2d applied to each of x.tensor_split(3) in turn: output, gradients and
 *              running statistics (ghost_cma.*: the same with momentum=None);
 *   precise.*  torch.optim.swa_utils.update_bn on four batches;
 *   fold.*     torch.nn.utils.fusion.fuse_conv_bn_eval on the trained reference CNN of
 *              parity_reference_cnn.safetensors: folded weights and logits.
 * Tolerance: |ctorch - reference| <= TOL * max(1, |reference|) element-wise. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "parity_fixtures.h"

#define TOL       1e-5
#define VARIANTS  CTORCH_TEST_DIR "/fixtures/bn_variants.safetensors"

static nn_tensor_dict *fx;

static void load_fixture(void) { fx = parity_load(VARIANTS, NULL); }
static void free_fixture(void) { nn_tensor_dict_free(fx); }

TestSuite(batch_norm_variants, .init = load_fixture, .fini = free_fixture);

/* ---- helpers ------------------------------------------------------------------------------------ */

static tensor *fixture(const char *key) { return parity_get(fx, key); }

/* The fixture's tensors under "<prefix>." loaded into m (strict). */
static void load_prefix(nn_module *m, const char *prefix) {
    nn_tensor_dict *sd = nn_module_state_dict(m), *d = nn_tensor_dict_new();
    for (int64_t i = 0; i < sd->count; i++) {
        char key[128];
        snprintf(key, sizeof key, "%s.%s", prefix, sd->items[i].name);
        cr_assert_eq(nn_tensor_dict_set(d, sd->items[i].name, fixture(key)), TORCH_OK);
    }
    cr_assert_eq(nn_module_load_state_dict(m, d, true), TORCH_OK, "%s", torch_last_error());
    nn_tensor_dict_free(d);
    nn_tensor_dict_free(sd);
}

/* Asserts got ~ want element-wise (same numel, float32) within tol * max(1, |want|). */
static void expect_close_tol(const char *what, const tensor *got, const tensor *want, double tol) {
    cr_assert_not_null(got, "%s: missing (%s)", what, torch_last_error());
    cr_assert_eq(got->numel, want->numel, "%s: %lld elements, expected %lld", what, (long long)got->numel,
                 (long long)want->numel);
    tensor *g = tensor_contiguous(got), *w = tensor_contiguous(want);
    const float *a = tensor_data_f32(g), *b = tensor_data_f32(w);
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < want->numel; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(e <= worst)) worst = e, at = i;
    }
    cr_log_info("%-34s worst error %.2e (element %lld: %.8g vs %.8g)", what, worst, (long long)at, (double)a[at],
                (double)b[at]);
    cr_expect(worst <= tol, "%s: element %lld is %.8g, expected %.8g (error %.2e > %.0e)", what, (long long)at,
              (double)a[at], (double)b[at], worst, tol);
    tensor_free(g);
    tensor_free(w);
}

static void expect_close(const char *what, const tensor *got, const tensor *want) {
    expect_close_tol(what, got, want, TOL);
}

/* Asserts that the entries of m's state_dict whose keys contain `filter` (all: "") equal snap's. */
static void expect_unchanged(const nn_module *m, const nn_tensor_dict *snap, const char *filter, const char *when) {
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, snap->count, "%s: the state_dict has %lld keys, had %lld", when, (long long)sd->count,
                 (long long)snap->count);
    for (int64_t i = 0; i < sd->count; i++)
        if (strstr(sd->items[i].name, filter))
            cr_expect(bitwise_equal(sd->items[i].value, nn_tensor_dict_get(snap, sd->items[i].name)),
                      "%s: \"%s\" changed", when, sd->items[i].name);
    nn_tensor_dict_free(sd);
}

static tensor *randn(uint64_t seed, int ndim, const int64_t *shape, double scale, double shift) {
    torch_generator g = torch_generator_new(seed);
    tensor *t = torch_randn(&g, ndim, shape);
    cr_assert_not_null(t);
    float *p = tensor_data_f32(t);
    for (int64_t i = 0; i < t->numel; i++) p[i] = (float)(p[i] * scale + shift);
    return t;
}

/* sum(y * dy): its gradient with respect to y is dy. */
static void backward_with(tensor *y, const tensor *dy) {
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(tensor_backward(y, dy, false), TORCH_OK, "%s", torch_last_error());
}

static nn_module *conv3x3(int64_t in, int64_t out, bool bias) {
    torch_generator g = torch_generator_new(in * 100 + out);
    return nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = in, .out_channels = out, .kernel_size = {3, 3},
                                       .padding = {1, 1}, .bias = bias, .generator = &g));
}

/* ---- frozen BatchNorm ------------------------------------------------------------------------------ */

/* Conv2d(3, 4, 3, padding=1, bias=False) -> BatchNorm2d(4) -> ReLU with the fixture's weights. */
static nn_module *frozen_block(void) {
    nn_module *layers[] = {conv3x3(3, 4, false), nn_batch_norm2d(nn_batch_norm_options_default(4)), nn_relu()};
    nn_module *m = nn_sequential(3, layers);
    cr_assert_not_null(m);
    load_prefix(m, "frozen");
    return m;
}

/* y = m(<prefix>.x) and dx for the upstream gradient <prefix>.dy, against <prefix>.y and .dx. */
static void check_forward_backward(nn_module *m, const char *prefix) {
    char key[64], what[64];
    snprintf(key, sizeof key, "%s.x", prefix);
    tensor *x = tensor_clone(fixture(key));
    tensor_set_requires_grad(x, true);
    tensor *y = nn_module_forward(m, x);
    snprintf(key, sizeof key, "%s.y", prefix), snprintf(what, sizeof what, "%s: y", prefix);
    expect_close(what, y, fixture(key));
    snprintf(key, sizeof key, "%s.dy", prefix);
    backward_with(y, fixture(key));
    snprintf(key, sizeof key, "%s.dx", prefix), snprintf(what, sizeof what, "%s: dx", prefix);
    expect_close(what, x->grad, fixture(key));
    tensor_free(y);
    tensor_free(x);
}

/* Forward and backward of the block in training mode; compares with PyTorch's eval-mode BatchNorm. */
static void check_frozen_step(nn_module *m, bool affine_learns) {
    check_forward_backward(m, "frozen");
    expect_close("frozen: d conv weight", nn_module_get_parameter(m, "0.weight")->grad, fixture("frozen.grad.0.weight"));
    tensor *w = nn_module_get_parameter(m, "1.weight"), *b = nn_module_get_parameter(m, "1.bias");
    if (affine_learns) {
        expect_close("frozen: d bn weight", w->grad, fixture("frozen.grad.1.weight"));
        expect_close("frozen: d bn bias", b->grad, fixture("frozen.grad.1.bias"));
    } else {
        cr_expect_null(w->grad, "a fully frozen BatchNorm's weight got a gradient");
        cr_expect_null(b->grad, "a fully frozen BatchNorm's bias got a gradient");
    }
}

/* Three SGD steps (momentum, weight decay) on the block in training mode. */
static void train_steps(nn_module *m) {
    nn_tensor_dict *params = nn_module_named_parameters(m);
    optim_optimizer *opt = optim_sgd(params, OPTIM_SGD_OPTIONS(.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3));
    cr_assert_not_null(opt, "%s", torch_last_error());
    for (int step = 0; step < 3; step++) {
        optim_zero_grad(opt);
        tensor *x = randn(40 + step, TORCH_SHAPE(5, 3, 6, 6), 2.0, 1.0);
        tensor *y = nn_module_forward(m, x);
        backward_with(y, fixture("frozen.dy")); /* any upstream gradient of y's shape would do */
        cr_assert_eq(optim_step(opt), TORCH_OK, "%s", torch_last_error());
        tensor_free(y);
        tensor_free(x);
    }
    optim_free(opt);
    nn_tensor_dict_free(params);
}

Test(batch_norm_variants, frozen_stats_matches_pytorch_eval_mode_bn_inside_training) {
    nn_module *m = frozen_block();
    int64_t n = -1;
    cr_assert_eq(nn_batch_norm_freeze(m, NN_BATCH_NORM_FREEZE_STATS, &n), TORCH_OK, "%s", torch_last_error());
    cr_expect_eq(n, 1);
    cr_assert(m->training && nn_sequential_at(m, 1)->training, "freezing does not change the training flag");
    nn_tensor_dict *before = snapshot(m);
    check_frozen_step(m, true);
    expect_unchanged(m, before, "running", "frozen (stats) forward");
    expect_unchanged(m, before, "num_batches_tracked", "frozen (stats) forward");
    train_steps(m);
    /* statistics bit for bit as they were; gamma and beta learned */
    expect_unchanged(m, before, "1.running", "after 3 SGD steps");
    expect_unchanged(m, before, "num_batches_tracked", "after 3 SGD steps");
    cr_expect(!bitwise_equal(nn_module_get_parameter(m, "1.weight"), nn_tensor_dict_get(before, "1.weight")),
              "weight should still learn with only the statistics frozen");
    nn_tensor_dict_free(before);
    nn_module_free(m);
}

Test(batch_norm_variants, frozen_all_is_a_constant_affine_map) {
    nn_module *m = frozen_block();
    train_steps(m); /* leaves gradients on every parameter */
    load_prefix(m, "frozen");
    cr_assert_eq(nn_batch_norm_freeze(m, NN_BATCH_NORM_FREEZE_ALL, NULL), TORCH_OK, "%s", torch_last_error());
    cr_expect_eq(nn_module_num_parameters(m, true), 4 * 3 * 9, "only the convolution stays trainable");
    cr_expect_null(nn_module_get_parameter(m, "1.weight")->grad, "freezing should drop the old gradient");
    nn_module_zero_grad(m);
    nn_tensor_dict *before = snapshot(m);
    check_frozen_step(m, false);
    train_steps(m);
    expect_unchanged(m, before, "1.", "after 3 SGD steps, fully frozen");
    cr_expect(!bitwise_equal(nn_module_get_parameter(m, "0.weight"), nn_tensor_dict_get(before, "0.weight")),
              "the convolution should learn");

    /* the same keys as a plain model, and a repr that says it is frozen */
    char *repr = nn_module_repr(m);
    cr_expect(strstr(repr, "(1): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True, "
                           "frozen=all)"), "%s", repr);
    free(repr);

    /* unfreezing makes it a plain BatchNorm again: training updates the statistics */
    cr_assert_eq(nn_batch_norm_freeze(m, NN_BATCH_NORM_UNFROZEN, NULL), TORCH_OK);
    cr_expect(nn_module_get_parameter(m, "1.weight")->requires_grad);
    tensor *x = randn(3, TORCH_SHAPE(2, 3, 4, 4), 1.0, 0.0), *y = nn_module_forward(m, x);
    cr_assert_not_null(y);
    cr_expect_eq(*tensor_data_i64(nn_module_get_buffer(m, "1.num_batches_tracked")), 8);
    tensor_free(y);
    tensor_free(x);
    nn_tensor_dict_free(before);
    nn_module_free(m);
}

Test(batch_norm_variants, freeze_refuses_a_bn_without_running_statistics_and_changes_nothing) {
    nn_batch_norm_options untracked = nn_batch_norm_options_default(4);
    untracked.track_running_stats = false;
    nn_module *layers[] = {nn_batch_norm2d(nn_batch_norm_options_default(4)), nn_relu(), nn_batch_norm2d(untracked)};
    nn_module *m = nn_sequential(3, layers);
    cr_assert_eq(nn_batch_norm_freeze(m, NN_BATCH_NORM_FREEZE_ALL, NULL), TORCH_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(torch_last_error(), "nn_batch_norm_freeze: BatchNorm2d '2' has no running statistics to freeze "
                                         "(track_running_stats=False)");
    cr_expect_eq(nn_as_batch_norm(nn_sequential_at(m, 0))->frozen, NN_BATCH_NORM_UNFROZEN, "module 0 was changed");
    cr_expect(nn_module_get_parameter(m, "0.weight")->requires_grad, "module 0 was changed");
    cr_expect_eq(nn_batch_norm_freeze(m, (nn_batch_norm_freeze_mode)7, NULL), TORCH_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(torch_last_error(), "(got 7)"), "%s", torch_last_error());
    cr_expect_eq(nn_batch_norm_freeze(NULL, NN_BATCH_NORM_FREEZE_ALL, NULL), TORCH_ERR_INVALID_ARGUMENT);
    /* unfreezing needs no statistics */
    cr_expect_eq(nn_batch_norm_freeze(m, NN_BATCH_NORM_UNFROZEN, NULL), TORCH_OK);
    nn_module_free(m);
}

/* ---- ghost batch normalization -------------------------------------------------------------------- */

static nn_module *ghost_bn(const char *prefix, bool cma) {
    nn_batch_norm_options o = nn_batch_norm_options_default(3);
    o.ghost_batch_size = 4;
    o.cumulative_moving_average = cma;
    nn_module *m = nn_batch_norm2d(o);
    cr_assert_not_null(m);
    load_prefix(m, prefix);
    return m;
}

Test(batch_norm_variants, ghost_matches_pytorch_bn_over_tensor_split_sub_batches) {
    nn_module *m = ghost_bn("ghost", false);
    check_forward_backward(m, "ghost");
    expect_close("ghost: dweight", nn_module_get_parameter(m, "weight")->grad, fixture("ghost.dweight"));
    expect_close("ghost: dbias", nn_module_get_parameter(m, "bias")->grad, fixture("ghost.dbias"));
    expect_close("ghost: running_mean", nn_module_get_buffer(m, "running_mean"), fixture("ghost.after.running_mean"));
    expect_close("ghost: running_var", nn_module_get_buffer(m, "running_var"), fixture("ghost.after.running_var"));
    cr_expect(bitwise_equal(nn_module_get_buffer(m, "num_batches_tracked"), fixture("ghost.after.num_batches_tracked")),
              "num_batches_tracked should grow by 3, one per sub-batch");
    nn_module_free(m);

    /* the cumulative average: factors 1/6, 1/7, 1/8 for the three sub-batches */
    m = ghost_bn("ghost_cma", true);
    tensor *y = nn_module_forward(m, fixture("ghost_cma.x"));
    cr_assert_not_null(y);
    expect_close("ghost (cma): running_mean", nn_module_get_buffer(m, "running_mean"),
                 fixture("ghost_cma.after.running_mean"));
    expect_close("ghost (cma): running_var", nn_module_get_buffer(m, "running_var"),
                 fixture("ghost_cma.after.running_var"));
    cr_expect_eq(*tensor_data_i64(nn_module_get_buffer(m, "num_batches_tracked")), 8);
    tensor_free(y);
    nn_module_free(m);
}

/* Ghost batch norm on x against the composition it is defined as: plain nnf_batch_norm on each
 * of x.tensor_split(ceil(N / G)), each sub-batch a leaf of its own, weight and bias shared. */
static void check_against_composition(int ndim, const int64_t *shape, int64_t G, uint64_t seed) {
    const int64_t N = shape[0], C = shape[1], K = (N + G - 1) / G;
    tensor *x = randn(seed, ndim, shape, 3.0, 2.0), *dy = randn(seed + 1, ndim, shape, 1.0, 0.0);
    tensor *w = randn(seed + 2, 1, &C, 0.5, 1.0), *b = randn(seed + 3, 1, &C, 0.5, 0.0);
    tensor *rm = randn(seed + 4, 1, &C, 1.0, 0.0), *rv = torch_ones(1, &C);
    tensor *rm2 = tensor_clone(rm), *rv2 = tensor_clone(rv), *w2 = tensor_clone(w), *b2 = tensor_clone(b);
    tensor_set_requires_grad(x, true), tensor_set_requires_grad(w, true), tensor_set_requires_grad(b, true);
    tensor_set_requires_grad(w2, true), tensor_set_requires_grad(b2, true);

    tensor *y = nnf_ghost_batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5, G);
    backward_with(y, dy);
    char what[96];
    tensor *xd = tensor_detach(x);
    for (int64_t g = 0, first = 0; g < K; g++) {
        const int64_t rows = N / K + (g < N % K);
        tensor *xs = torch_narrow(xd, 0, first, rows), *leaf = tensor_clone(xs);
        tensor_set_requires_grad(leaf, true);
        tensor *ys = nnf_batch_norm(leaf, rm2, rv2, w2, b2, true, 0.1, 1e-5);
        tensor *dys = torch_narrow(dy, 0, first, rows), *dys_c = tensor_contiguous(dys);
        backward_with(ys, dys_c);
        tensor *y_part = torch_narrow(y, 0, first, rows), *dx_part = torch_narrow(x->grad, 0, first, rows);
        snprintf(what, sizeof what, "ghost %lld of [%lld, %lld, ...] G %lld: y", (long long)g, (long long)N,
                 (long long)C, (long long)G);
        cr_expect(torch_equal(y_part, ys), "%s: not bit for bit", what);
        snprintf(what, sizeof what, "ghost %lld of [%lld, %lld, ...] G %lld: dx", (long long)g, (long long)N,
                 (long long)C, (long long)G);
        cr_expect(torch_equal(dx_part, leaf->grad), "%s: not bit for bit", what);
        tensor_free(dx_part), tensor_free(y_part), tensor_free(dys_c), tensor_free(dys), tensor_free(ys);
        tensor_free(leaf), tensor_free(xs);
        first += rows;
    }
    tensor_free(xd);
    expect_close("ghost vs composition: dweight", w->grad, w2->grad);
    expect_close("ghost vs composition: dbias", b->grad, b2->grad);
    cr_expect(bitwise_equal(rm, rm2) && bitwise_equal(rv, rv2),
              "the running statistics should be those of the sub-batches' calls, bit for bit");
    tensor_free(y);
    tensor_free(x), tensor_free(dy), tensor_free(w), tensor_free(b), tensor_free(rm), tensor_free(rv);
    tensor_free(rm2), tensor_free(rv2), tensor_free(w2), tensor_free(b2);
}

Test(batch_norm_variants, ghost_equals_plain_bn_on_each_sub_batch) {
    check_against_composition(TORCH_SHAPE(70, 5, 6, 6), 32, 100);  /* 24, 23, 23: per-plane partials */
    check_against_composition(TORCH_SHAPE(64, 4, 3, 3), 32, 200);  /* 32, 32: an exact multiple, short planes */
    check_against_composition(TORCH_SHAPE(10, 4, 32, 32), 4, 300); /* 4, 3, 3: channel-by-channel planes */
    check_against_composition(TORCH_SHAPE(40, 6), 16, 400);        /* BatchNorm1d's (N, C): 14, 13, 13 */
    /* 16 and 15 rows on 2 threads: the first is large enough for threads and per-plane partials,
     * the second is reduced channel by channel without them (the scratch serves both) */
    const int threads = torch_get_num_threads();
    torch_set_num_threads(2);
    check_against_composition(TORCH_SHAPE(31, 2, 32, 32), 16, 500);
    torch_set_num_threads(threads);
}

static tensor *ghost_fn(tensor *const *in, void *user) {
    return nnf_ghost_batch_norm(in[0], NULL, NULL, in[1], in[2], true, 0.1, 1e-5, *(const int64_t *)user);
}

Test(batch_norm_variants, ghost_analytic_backward_passes_gradcheck) {
    int64_t G = 3; /* 7 rows: sub-batches of 3, 2, 2 */
    const int64_t C = 2;
    tensor *in[3] = {randn(7, TORCH_SHAPE(7, 2, 3), 1.0, 0.5), randn(8, 1, &C, 0.3, 1.0), randn(9, 1, &C, 0.3, 0.0)};
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(in[i], true);
    const char *names[3] = {"x", "weight", "bias"};
    torch_gradcheck_result r;
    cr_expect_eq(torch_gradcheck(ghost_fn, &G, 3, in, names, torch_gradcheck_options_default(), &r), TORCH_OK, "%s",
                 torch_last_error());
    cr_log_info("ghost gradcheck: worst abs err %.2e", r.max_abs_err);
    for (int i = 0; i < 3; i++) tensor_free(in[i]);
}

Test(batch_norm_variants, ghost_bad_sizes_are_refused_and_change_nothing) {
    tensor *x = randn(1, TORCH_SHAPE(8, 3, 2, 2), 1.0, 0.0);
    const int64_t C = 3;
    tensor *rm = torch_zeros(1, &C), *rv = torch_ones(1, &C);
    cr_expect_null(nnf_ghost_batch_norm(x, rm, rv, NULL, NULL, true, 0.1, 1e-5, 0));
    cr_expect_str_eq(torch_last_error(), "nnf_ghost_batch_norm: ghost_batch_size must be > 0 (got 0)");
    cr_expect_null(nnf_ghost_batch_norm(x, rm, rv, NULL, NULL, true, 0.1, 1e-5, 9));
    cr_expect_str_eq(torch_last_error(), "nnf_ghost_batch_norm: ghost_batch_size 9 is larger than the batch (got 8)");
    tensor *x1 = randn(2, TORCH_SHAPE(3, 3), 1.0, 0.0); /* 3 rows, G = 2: sub-batches of 2 and 1 */
    cr_expect_null(nnf_ghost_batch_norm(x1, rm, rv, NULL, NULL, true, 0.1, 1e-5, 2));
    cr_expect_str_eq(torch_last_error(), "nnf_ghost_batch_norm: Expected more than 1 value per channel when training, "
                                         "got a sub-batch of size [1, 3] (ghost_batch_size 2 splits 3 rows into 2)");
    cr_expect(tensor_data_f32(rm)[0] == 0 && tensor_data_f32(rv)[0] == 1, "a refused call changed the statistics");

    nn_batch_norm_options o = nn_batch_norm_options_default(3);
    o.ghost_batch_size = -1;
    cr_expect_null(nn_batch_norm2d(o));
    cr_expect_str_eq(torch_last_error(), "BatchNorm2d: ghost_batch_size must be >= 0 (0: off) (got -1)");
    o.ghost_batch_size = 16;
    nn_module *m = nn_batch_norm2d(o);
    nn_tensor_dict *before = snapshot(m);
    cr_expect_null(nn_module_forward(m, x));
    cr_expect_str_eq(torch_last_error(), "BatchNorm2d: ghost_batch_size 16 is larger than the batch (got 8)");
    expect_unchanged(m, before, "", "a refused ghost forward");
    /* eval with running statistics ignores the ghost size: any batch, exactly plain eval */
    nn_module_eval(m);
    tensor *y = nn_module_forward(m, x), *plain = nnf_batch_norm(x, rm, rv, nn_module_get_parameter(m, "weight"),
                                                                   nn_module_get_parameter(m, "bias"), false, 0.1, 1e-5);
    cr_expect(bitwise_equal(y, plain), "eval mode should not split the batch");
    nn_module_train(m, true);
    /* a ghost BatchNorm's ReLU is absorbed like a plain one's, with the same numbers */
    nn_module *layers[] = {nn_batch_norm2d(nn_batch_norm_options_default(3)), nn_relu()};
    nn_as_batch_norm(layers[0])->options.ghost_batch_size = 3;
    nn_module *seq = nn_sequential(2, layers);
    tensor *fused = nn_module_forward(seq, x), *bn = nnf_ghost_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5, 3);
    tensor *relu = nnf_relu(bn);
    cr_expect(bitwise_equal(fused, relu), "ghost BatchNorm + ReLU fused should equal the two in turn");
    cr_expect_eq(*tensor_data_i64(nn_module_get_buffer(seq, "0.num_batches_tracked")), 3);
    tensor_free(relu), tensor_free(bn), tensor_free(fused), nn_module_free(seq);
    tensor_free(plain), tensor_free(y), nn_tensor_dict_free(before), nn_module_free(m);
    tensor_free(x1), tensor_free(rm), tensor_free(rv), tensor_free(x);
}

/* ---- precise BatchNorm (update_bn) ------------------------------------------------------------------ */

static nn_module *precise_model(void) {
    nn_batch_norm_options o = nn_batch_norm_options_default(4);
    o.momentum = 0.3;
    nn_module *layers[] = {conv3x3(3, 4, false), nn_batch_norm2d(o), nn_relu(), conv3x3(4, 6, true),
                           nn_batch_norm2d(nn_batch_norm_options_default(6)), nn_relu()};
    nn_module *m = nn_sequential(6, layers);
    cr_assert_not_null(m);
    load_prefix(m, "precise");
    nn_module_eval(m);
    return m;
}

/* Batch i of the fixture; a batch index >= fail_at fails (to test the error path). */
typedef struct batches {
    int64_t fail_at;
} batches;

static tensor *next_batch(void *user, int64_t i) {
    const batches *b = user;
    if (i >= b->fail_at) {
        torch_error(TORCH_ERR_IO, "the loader ran dry");
        return NULL;
    }
    char key[48];
    snprintf(key, sizeof key, "precise.batch%lld", (long long)i);
    return tensor_retain(fixture(key));
}

static tensor *silent_failure(void *user, int64_t i) {
    (void)user, (void)i;
    return NULL;
}

Test(batch_norm_variants, update_bn_matches_swa_utils_update_bn) {
    nn_module *m = precise_model();
    nn_tensor_dict *before = snapshot(m);
    batches b = {.fail_at = 4};
    cr_assert_eq(optim_update_bn(m, 4, next_batch, &b), TORCH_OK, "%s", torch_last_error());
    const char *keys[] = {"1.running_mean", "1.running_var", "4.running_mean", "4.running_var"};
    for (int i = 0; i < 4; i++) {
        char key[64];
        snprintf(key, sizeof key, "precise.after.%s", keys[i]);
        expect_close(keys[i], nn_module_get_buffer(m, keys[i]), fixture(key));
    }
    cr_expect_eq(*tensor_data_i64(nn_module_get_buffer(m, "1.num_batches_tracked")), 4);
    cr_expect_eq(*tensor_data_i64(nn_module_get_buffer(m, "4.num_batches_tracked")), 4);
    expect_unchanged(m, before, "weight", "update_bn: parameters");
    expect_unchanged(m, before, "bias", "update_bn: parameters");
    nn_module_list *all = nn_module_named_modules(m);
    for (int64_t i = 0; i < all->count; i++) cr_expect(!all->items[i].value->training, "module %lld left training", (long long)i);
    nn_module_list_free(all);
    nn_batch_norm_module *bn = nn_as_batch_norm(nn_sequential_at(m, 1));
    cr_expect(bn->options.momentum == 0.3 && !bn->options.cumulative_moving_average, "momentum not restored");
    nn_tensor_dict_free(before);
    nn_module_free(m);
}

Test(batch_norm_variants, update_bn_errors_change_nothing) {
    nn_module *m = precise_model();
    nn_module_train(nn_sequential_at(m, 2), true); /* mixed flags: each must come back as it was */
    nn_tensor_dict *before = snapshot(m);
    batches b = {.fail_at = 2};
    cr_expect_eq(optim_update_bn(m, 0, next_batch, &b), TORCH_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(torch_last_error(), "optim_update_bn: expected at least 1 batch (got n_batches = 0)");
    cr_expect_eq(optim_update_bn(m, 4, next_batch, &b), TORCH_ERR_IO);
    cr_expect_str_eq(torch_last_error(), "optim_update_bn: batch 2: the loader ran dry");
    expect_unchanged(m, before, "", "a failed update_bn");
    cr_expect(!m->training && !nn_sequential_at(m, 1)->training && nn_sequential_at(m, 2)->training,
              "training flags not restored");
    cr_expect(!nn_as_batch_norm(nn_sequential_at(m, 1))->options.cumulative_moving_average);
    b.fail_at = -1; /* next_batch returns NULL without saying why */
    cr_expect_eq(optim_update_bn(m, 4, silent_failure, &b), TORCH_ERR_INVALID_STATE);
    cr_expect_str_eq(torch_last_error(), "optim_update_bn: batch 0: next_batch returned NULL without setting an error");
    expect_unchanged(m, before, "", "a failed update_bn");
    cr_expect_eq(optim_update_bn(NULL, 4, next_batch, &b), TORCH_ERR_INVALID_ARGUMENT);
    cr_expect_eq(optim_update_bn(m, 4, NULL, &b), TORCH_ERR_INVALID_ARGUMENT);

    /* a frozen BatchNorm keeps its statistics; the other one is updated */
    cr_assert_eq(nn_batch_norm_freeze(nn_sequential_at(m, 1), NN_BATCH_NORM_FREEZE_STATS, NULL), TORCH_OK);
    b.fail_at = 4;
    cr_assert_eq(optim_update_bn(m, 4, next_batch, &b), TORCH_OK, "%s", torch_last_error());
    expect_unchanged(m, before, "1.running", "update_bn with module 1 frozen");
    cr_expect_eq(*tensor_data_i64(nn_module_get_buffer(m, "4.num_batches_tracked")), 4);
    nn_tensor_dict_free(before);
    nn_module_free(m);
}

/* ---- folding BatchNorm into the convolution -------------------------------------------------------- */

Test(batch_norm_variants, fold_reference_cnn_matches_pytorch_fuse_conv_bn_eval) {
    nn_tensor_dict *batch = parity_load(PARITY_BATCH, NULL);
    tensor *images = parity_get(batch, "images");
    nn_module *m = parity_model();
    nn_module_eval(m);
    tensor *unfolded = nn_module_forward(m, images);
    int64_t n = 0;
    cr_assert_eq(nn_module_fuse_eval_(m, &n), TORCH_OK, "%s", torch_last_error());
    cr_expect_eq(n, 2);
    cr_expect_eq(nn_sequential_length(m), 8, "Conv-ReLU-Pool-Conv-ReLU-Pool-Flatten-Linear");
    cr_expect(nn_as_conv2d(nn_sequential_at(m, 0)) && nn_is_relu(nn_sequential_at(m, 1)) &&
              nn_as_conv2d(nn_sequential_at(m, 3)));
    expect_close_tol("fold: 0.weight", nn_module_get_parameter(m, "0.weight"), fixture("fold.0.weight"), 1e-6);
    expect_close_tol("fold: 0.bias", nn_module_get_parameter(m, "0.bias"), fixture("fold.0.bias"), 1e-6);
    expect_close_tol("fold: 4.weight", nn_module_get_parameter(m, "4.weight"), fixture("fold.4.weight"), 1e-6);
    expect_close_tol("fold: 4.bias", nn_module_get_parameter(m, "4.bias"), fixture("fold.4.bias"), 1e-6);
    cr_expect(nn_module_get_parameter(m, "4.bias")->requires_grad);
    tensor *folded = nn_module_forward(m, images);
    expect_close("fold: logits vs PyTorch's folded model", folded, fixture("fold.logits"));
    expect_close("fold: logits vs the unfolded model", folded, unfolded);
    expect_close("fold: logits vs PyTorch's unfolded model", folded, parity_get(batch, "logits"));
    nn_tensor_dict *sd = nn_module_state_dict(m);
    const char *keys[] = {"0.weight", "0.bias", "4.weight", "4.bias", "9.weight", "9.bias"}; /* torch.fx's */
    cr_expect_eq(sd->count, 6);
    for (int i = 0; i < 6 && i < sd->count; i++) cr_expect_str_eq(sd->items[i].name, keys[i]);
    nn_tensor_dict_free(sd);
    tensor_free(folded);
    tensor_free(unfolded);
    nn_module_free(m);
    nn_tensor_dict_free(batch);
}

Test(batch_norm_variants, fold_is_refused_in_training_mode_or_when_a_bn_does_not_fold) {
    nn_module *m = parity_model(); /* training mode */
    nn_tensor_dict *before = snapshot(m);
    cr_expect_eq(nn_module_fuse_eval_(m, NULL), TORCH_ERR_INVALID_STATE);
    cr_expect_str_eq(torch_last_error(), "nn_module_fuse_eval_: Fusion only for eval! (Sequential is in training mode: "
                                         "call nn_module_eval first)");
    nn_module_eval(m);
    nn_module_train(nn_sequential_at(m, 5), true);
    cr_expect_eq(nn_module_fuse_eval_(m, NULL), TORCH_ERR_INVALID_STATE);
    cr_expect_str_eq(torch_last_error(), "nn_module_fuse_eval_: Fusion only for eval! (BatchNorm2d '5' is in training "
                                         "mode: call nn_module_eval first)");
    cr_expect_eq(nn_sequential_length(m), 10);
    expect_unchanged(m, before, "", "a refused fold");
    nn_tensor_dict_free(before);
    nn_module_free(m);

    /* a BatchNorm after a ReLU; a BatchNorm without running statistics; channel counts that differ */
    nn_batch_norm_options untracked = nn_batch_norm_options_default(4);
    untracked.track_running_stats = false;
    nn_module *a[] = {conv3x3(3, 4, false), nn_batch_norm2d(nn_batch_norm_options_default(4)), nn_relu(),
                      nn_batch_norm2d(nn_batch_norm_options_default(4))};
    nn_module *b[] = {conv3x3(3, 4, false), nn_batch_norm2d(untracked)};
    nn_module *c[] = {conv3x3(3, 4, false), nn_batch_norm2d(nn_batch_norm_options_default(5))};
    nn_module *models[] = {nn_sequential(4, a), nn_sequential(2, b), nn_sequential(2, c)};
    const char *messages[] = {
        "nn_module_fuse_eval_: BatchNorm2d '3' does not fold: it follows ReLU '2', and only a BatchNorm2d directly "
        "after a Conv2d folds",
        "nn_module_fuse_eval_: BatchNorm2d '1' does not fold into Conv2d '0': nn_utils_fuse_conv_bn_eval: the "
        "BatchNorm2d has no running statistics (track_running_stats=False): it normalises with batch statistics, "
        "which do not fold",
        "nn_module_fuse_eval_: BatchNorm2d '1' does not fold into Conv2d '0': nn_utils_fuse_conv_bn_eval: the "
        "BatchNorm2d has 5 features, the Conv2d 4 output channels",
    };
    for (int i = 0; i < 3; i++) {
        nn_module_eval(models[i]);
        int64_t length = nn_sequential_length(models[i]);
        cr_expect_neq(nn_module_fuse_eval_(models[i], NULL), TORCH_OK);
        cr_expect_str_eq(torch_last_error(), messages[i]);
        cr_expect_eq(nn_sequential_length(models[i]), length, "a refused fold changed the model");
        nn_module_free(models[i]);
    }
}

Test(batch_norm_variants, fold_nested_sequential_with_bias_and_no_affine) {
    /* Sequential(Sequential(Conv2d(bias), BatchNorm2d(affine=False)), ReLU, Conv2d, BatchNorm2d) */
    nn_batch_norm_options plain = nn_batch_norm_options_default(4);
    plain.affine = false;
    nn_module *inner[] = {conv3x3(3, 4, true), nn_batch_norm2d(plain)};
    nn_module *outer[] = {nn_sequential(2, inner), nn_relu(), conv3x3(4, 2, false),
                          nn_batch_norm2d(nn_batch_norm_options_default(2))};
    nn_module *m = nn_sequential(4, outer);
    /* statistics that are not the initial ones: a few training forwards */
    for (int i = 0; i < 3; i++) {
        tensor *x = randn(50 + i, TORCH_SHAPE(8, 3, 5, 5), 2.0, 1.0), *y = nn_module_forward(m, x);
        cr_assert_not_null(y);
        tensor_free(y), tensor_free(x);
    }
    nn_module_eval(m);
    tensor *x = randn(60, TORCH_SHAPE(3, 3, 5, 5), 2.0, 1.0), *y = nn_module_forward(m, x);
    int64_t n = 0;
    cr_assert_eq(nn_module_fuse_eval_(m, &n), TORCH_OK, "%s", torch_last_error());
    cr_expect_eq(n, 2);
    cr_expect_eq(nn_sequential_length(nn_sequential_at(m, 0)), 1);
    cr_expect_eq(nn_sequential_length(m), 3);
    tensor *yf = nn_module_forward(m, x);
    expect_close("fold (nested, bias, affine=False)", yf, y);
    char *repr = nn_module_repr(m);
    cr_expect(strstr(repr, "(2): Conv2d(4, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"), "%s", repr);
    free(repr);
    /* folding again finds nothing to fold */
    cr_expect_eq(nn_module_fuse_eval_(m, &n), TORCH_OK);
    cr_expect_eq(n, 0);
    tensor_free(yf), tensor_free(y), tensor_free(x);
    nn_module_free(m);
}

/* ---- deep copies (what a folded copy and the train/eval experiments start from) ---------------------- */

Test(batch_norm_variants, clone_is_an_independent_deep_copy) {
    nn_module *m = parity_model();
    cr_assert_eq(nn_batch_norm_freeze(nn_sequential_at(m, 5), NN_BATCH_NORM_FREEZE_ALL, NULL), TORCH_OK);
    nn_module_eval(m);
    nn_module_train(nn_sequential_at(m, 1), true);
    torch_manual_seed(5);
    const uint64_t expected = torch_generator_next(torch_default_generator());
    torch_manual_seed(5);
    nn_module *c = nn_module_clone(m);
    cr_assert_not_null(c, "%s", torch_last_error());
    cr_expect_eq(torch_generator_next(torch_default_generator()), expected, "cloning drew random numbers");

    nn_tensor_dict *a = nn_module_state_dict(m), *b = nn_module_state_dict(c);
    cr_assert_eq(a->count, b->count);
    for (int64_t i = 0; i < a->count; i++) {
        cr_expect_str_eq(a->items[i].name, b->items[i].name);
        cr_expect(bitwise_equal(a->items[i].value, b->items[i].value), "%s differs", a->items[i].name);
        cr_expect(a->items[i].value != b->items[i].value, "%s is shared", a->items[i].name);
        cr_expect_eq(a->items[i].value->requires_grad, b->items[i].value->requires_grad, "%s", a->items[i].name);
    }
    char *ra = nn_module_repr(m), *rb = nn_module_repr(c);
    cr_expect_str_eq(ra, rb);
    cr_expect(strstr(rb, "frozen=all"), "%s", rb);
    free(ra), free(rb);
    cr_expect(!c->training && nn_sequential_at(c, 1)->training, "training flags not copied");

    /* the same numbers, then independent */
    nn_module_eval(m), nn_module_eval(c);
    nn_tensor_dict *batch = parity_load(PARITY_BATCH, NULL);
    tensor *images = parity_get(batch, "images");
    tensor *ya = nn_module_forward(m, images), *yb = nn_module_forward(c, images);
    cr_expect(bitwise_equal(ya, yb), "the copy computes something else");
    nn_tensor_dict *before = snapshot(m);
    tensor_fill_(nn_module_get_buffer(c, "1.running_var"), 4.0);
    tensor_fill_(nn_module_get_parameter(c, "4.weight"), 0.5);
    expect_unchanged(m, before, "", "writing the copy's tensors");
    nn_tensor_dict_free(before);

    /* a folded copy leaves the model as it was */
    int64_t n = 0;
    nn_module *f = nn_module_fuse_eval(m, &n);
    cr_assert_not_null(f, "%s", torch_last_error());
    cr_expect_eq(n, 2);
    cr_expect_eq(nn_sequential_length(m), 10);
    cr_expect_eq(nn_sequential_length(f), 8);
    tensor *yf = nn_module_forward(f, images);
    expect_close("folded copy vs model", yf, ya);
    nn_module_train(nn_sequential_at(m, 0), true);
    cr_expect_null(nn_module_fuse_eval(m, NULL));
    cr_expect_str_eq(torch_last_error(), "nn_module_fuse_eval: Fusion only for eval! (Conv2d '0' is in training mode: "
                                         "call nn_module_eval first)");
    tensor_free(yf), tensor_free(yb), tensor_free(ya);
    nn_module_free(f);
    nn_tensor_dict_free(batch), nn_tensor_dict_free(b), nn_tensor_dict_free(a);
    nn_module_free(c);
    nn_module_free(m);
}
