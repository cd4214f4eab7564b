/* test_batch_norm_relu.c — the fused BatchNorm + ReLU (nnf_batch_norm_relu, and nn_sequential's
 * use of it for a BatchNorm module followed by a ReLU module).
 *
 * The fused layer promises the numbers of the two layers run one after the other, bit for bit:
 * nnf_relu(nnf_batch_norm(x)) is the reference here (both layers are checked against PyTorch's
 * fixtures in their own suites). Every comparison is of raw bits: y, dx, dweight, dbias and the
 * running statistics, in training and eval, with and without affine / running statistics, for
 * short planes, planes in memory order and planes taken channel by channel, at 1 and 2 threads,
 * with outputs exactly 0 (ReLU's kink: gradient 0, as PyTorch) and NaN (passed through). On top,
 * finite differences (torch_gradcheck) check the fused gradient on its own. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "tensor/parallel.h"

typedef struct case_ {
    int64_t shape[4];
    bool    training, affine, track;
    int     threads;
    bool    zero_channel; /* channel 0: weight 0, bias -0, so its outputs are exactly +0 or -0 */
    bool    nan_channel;  /* channel 1 holds a NaN */
} case_;

/* Everything one run produces, as raw float copies. */
typedef struct run_out {
    float  *y, *dx, *dw, *db, *rm, *rv;
    int64_t numel, C;
} run_out;

static float *copy_of(const tensor *t) {
    if (!t) return NULL;
    float *p = malloc((size_t)t->numel * sizeof(float));
    memcpy(p, tensor_data_f32(t), (size_t)t->numel * sizeof(float));
    return p;
}

static void free_run(run_out *o) {
    float *all[] = {o->y, o->dx, o->dw, o->db, o->rm, o->rv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

/* One forward + backward with upstream gradient dy, fused or as two layers. */
static run_out run(const case_ *k, bool fused) {
    const int saved_threads = torch_get_num_threads();
    torch_set_num_threads(k->threads);
    const int64_t C = k->shape[1];
    torch_generator g = torch_generator_new(7);
    tensor *x = torch_randn(&g, 4, k->shape), *dy = torch_randn(&g, 4, k->shape);
    tensor *w = torch_rand(&g, 1, &C), *b = torch_randn(&g, 1, &C);
    tensor *rm = torch_randn(&g, 1, &C), *rv = torch_rand(&g, 1, &C);
    if (k->zero_channel) tensor_data_f32(w)[0] = 0.0f, tensor_data_f32(b)[0] = -0.0f;
    if (k->nan_channel) tensor_data_f32(x)[k->shape[2] * k->shape[3]] = NAN; /* (0, 1, 0, 0) */
    tensor_set_requires_grad(x, true);
    if (k->affine) tensor_set_requires_grad(w, true), tensor_set_requires_grad(b, true);
    tensor *wa = k->affine ? w : NULL, *ba = k->affine ? b : NULL;
    tensor *rma = k->track ? rm : NULL, *rva = k->track ? rv : NULL;
    tensor *y, *z = NULL;
    if (fused) {
        y = nnf_batch_norm_relu(x, rma, rva, wa, ba, k->training, 0.1, 1e-5);
        cr_assert(y, "%s", torch_last_error());
        cr_assert_str_eq(ag_function_name(y->grad_fn->fn), "NativeBatchNormReluBackward0");
    } else {
        z = nnf_batch_norm(x, rma, rva, wa, ba, k->training, 0.1, 1e-5);
        cr_assert(z, "%s", torch_last_error());
        y = nnf_relu(z);
        cr_assert(y, "%s", torch_last_error());
    }
    cr_assert_eq(tensor_backward(y, dy, false), TORCH_OK, "%s", torch_last_error());
    run_out o = {.y = copy_of(y), .dx = copy_of(tensor_grad(x)), .dw = copy_of(tensor_grad(w)),
                 .db = copy_of(tensor_grad(b)), .rm = copy_of(rm), .rv = copy_of(rv), .numel = x->numel, .C = C};
    tensor *all[] = {x, dy, w, b, rm, rv, y, z};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
    torch_set_num_threads(saved_threads);
    return o;
}

static void assert_same_bits(const float *a, const float *b, int64_t n, const char *what) {
    cr_assert_eq(!a, !b, "%s: present in one run only", what);
    if (!a) return;
    for (int64_t i = 0; i < n; i++) {
        uint32_t ua, ub;
        memcpy(&ua, &a[i], 4), memcpy(&ub, &b[i], 4);
        cr_assert_eq(ua, ub, "%s[%lld]: fused %.9g (0x%08x) vs separate %.9g (0x%08x)", what, (long long)i, a[i], ua,
                     b[i], ub);
    }
}

static void check(case_ k) {
    run_out f = run(&k, true), s = run(&k, false);
    assert_same_bits(f.y, s.y, f.numel, "y");
    assert_same_bits(f.dx, s.dx, f.numel, "dx");
    assert_same_bits(f.dw, s.dw, f.C, "dweight");
    assert_same_bits(f.db, s.db, f.C, "dbias");
    assert_same_bits(f.rm, s.rm, f.C, "running_mean");
    assert_same_bits(f.rv, s.rv, f.C, "running_var");
    int64_t zeros = 0;
    for (int64_t i = 0; i < f.numel; i++) zeros += f.y[i] == 0.0f;
    cr_assert_gt(zeros, f.numel / 10, "ReLU should zero a good share of the outputs (got %lld of %lld)",
                 (long long)zeros, (long long)f.numel);
    free_run(&f);
    free_run(&s);
}

Test(batch_norm_relu, same_bits_training_memory_order) {
    check((case_){.shape = {4, 3, 5, 7}, .training = true, .affine = true, .track = true, .threads = 1});
}
Test(batch_norm_relu, same_bits_training_channel_by_channel) {
    check((case_){.shape = {2, 5, 36, 36}, .training = true, .affine = true, .track = true, .threads = 1});
}
Test(batch_norm_relu, same_bits_short_planes) {
    check((case_){.shape = {64, 3, 2, 2}, .training = true, .affine = true, .track = true, .threads = 1});
}
Test(batch_norm_relu, same_bits_eval) {
    check((case_){.shape = {4, 3, 5, 7}, .training = false, .affine = true, .track = true, .threads = 1});
}
Test(batch_norm_relu, same_bits_no_affine_no_running_stats) {
    check((case_){.shape = {4, 3, 5, 7}, .training = true, .affine = false, .track = false, .threads = 1});
}
Test(batch_norm_relu, same_bits_two_threads_channel_by_channel) {
    check((case_){.shape = {4, 8, 36, 36}, .training = true, .affine = true, .track = true, .threads = 2});
}
Test(batch_norm_relu, same_bits_two_threads_memory_order) {
    check((case_){.shape = {9, 3, 37, 37}, .training = true, .affine = true, .track = true, .threads = 2});
}
Test(batch_norm_relu, same_bits_two_threads_eval) {
    check((case_){.shape = {9, 3, 37, 37}, .training = false, .affine = true, .track = true, .threads = 2});
}
Test(batch_norm_relu, same_bits_streamed_outputs) {
    /* over 12 MiB: outputs written with streaming stores (AVX builds), odd plane lengths */
    check((case_){.shape = {4, 8, 321, 321}, .training = true, .affine = true, .track = true, .threads = 2,
                  .zero_channel = true});
    check((case_){.shape = {4, 3, 521, 521}, .training = false, .affine = true, .track = true, .threads = 2,
                  .zero_channel = true, .nan_channel = true});
}
Test(batch_norm_relu, outputs_exactly_zero_get_no_gradient) {
    /* channel 0 normalises to exactly +-0: ReLU's kink, where PyTorch's gradient is 0, and
     * relu(-0) = -0 (ATen's clamp_min) */
    check((case_){.shape = {4, 3, 5, 7}, .training = true, .affine = true, .track = true, .threads = 1,
                  .zero_channel = true});
    check((case_){.shape = {2, 5, 36, 36}, .training = true, .affine = true, .track = true, .threads = 1,
                  .zero_channel = true});
}
Test(batch_norm_relu, nan_propagates_as_in_separate_layers) {
    check((case_){.shape = {4, 3, 5, 7}, .training = true, .affine = true, .track = true, .threads = 1,
                  .nan_channel = true});
}

/* ---- finite differences ------------------------------------------------------------------------ */

static tensor *fused_fn(tensor *const *in, void *user) {
    tensor *const *stats = user; /* running mean, var: NULL in training */
    return nnf_batch_norm_relu(in[0], stats[0], stats[1], in[1], in[2], stats[0] == NULL, 0.0, 1e-5);
}

static void run_gradcheck(bool training) {
    torch_generator g = torch_generator_new(3);
    tensor *in[3] = {torch_randn(&g, TORCH_SHAPE(3, 2, 3, 3)), torch_tensor((const float[]){1.3f, -0.8f}, TORCH_SHAPE(2)),
                     torch_tensor((const float[]){0.2f, -0.1f}, TORCH_SHAPE(2))};
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(in[i], true);
    tensor *rm = torch_tensor((const float[]){0.1f, -0.3f}, TORCH_SHAPE(2));
    tensor *rv = torch_tensor((const float[]){1.4f, 0.7f}, TORCH_SHAPE(2));
    tensor *stats[2] = {training ? NULL : rm, training ? NULL : rv};
    torch_gradcheck_result r;
    torch_status st = torch_gradcheck(fused_fn, stats, 3, in, (const char *const[]){"input", "weight", "bias"},
                                      torch_gradcheck_options_default(), &r);
    fprintf(stderr, "gradcheck fused bn+relu %s: max abs err %.3e\n", training ? "train" : "eval", r.max_abs_err);
    cr_assert_eq(st, TORCH_OK, "%s", r.message);
    tensor *all[] = {in[0], in[1], in[2], rm, rv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
}

Test(batch_norm_relu, gradcheck_train) { run_gradcheck(true); }
Test(batch_norm_relu, gradcheck_eval) { run_gradcheck(false); }

/* ---- nn_sequential -------------------------------------------------------------------------------- */

/* Sequential(BatchNorm2d, ReLU, Conv2d(1x1)) against the same modules called one by one. */
static void sequential_matches_modules(bool training) {
    torch_generator g = torch_generator_new(5);
    nn_module *bn = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4));
    nn_module *conv = nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 4, .out_channels = 2, .kernel_size = {1, 1}));
    nn_module *seq = nn_sequential(3, (nn_module *const[]){bn, nn_relu(), conv});
    nn_module *bn2 = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4)), *relu2 = nn_relu();
    cr_assert(seq && bn2 && relu2, "%s", torch_last_error());
    nn_module *conv2 = nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 4, .out_channels = 2, .kernel_size = {1, 1}));
    bool grad_mode = torch_set_grad_enabled(false); /* parameters are written under no_grad */
    cr_assert_eq(tensor_copy_(nn_module_get_parameter(conv2, "weight"), nn_module_get_parameter(conv, "weight")), TORCH_OK);
    cr_assert_eq(tensor_copy_(nn_module_get_parameter(conv2, "bias"), nn_module_get_parameter(conv, "bias")), TORCH_OK);
    torch_set_grad_enabled(grad_mode);
    nn_module_train(seq, training), nn_module_train(bn2, training);
    for (int step = 0; step < 3; step++) {
        tensor *x1 = torch_randn(&g, TORCH_SHAPE(3, 4, 5, 6)), *x2 = tensor_clone(x1);
        tensor_set_requires_grad(x1, true), tensor_set_requires_grad(x2, true);
        tensor *y1 = nn_module_forward(seq, x1);
        tensor *z = nn_module_forward(bn2, x2), *r = z ? nn_module_forward(relu2, z) : NULL;
        tensor *y2 = r ? nn_module_forward(conv2, r) : NULL;
        cr_assert(y1 && y2, "%s", torch_last_error());
        tensor *s1 = torch_sum(y1, 0, NULL, false), *s2 = torch_sum(y2, 0, NULL, false);
        cr_assert_eq(tensor_backward(s1, NULL, false), TORCH_OK, "%s", torch_last_error());
        cr_assert_eq(tensor_backward(s2, NULL, false), TORCH_OK, "%s", torch_last_error());
        assert_same_bits(tensor_data_f32(y1), tensor_data_f32(y2), y1->numel, "y");
        assert_same_bits(tensor_data_f32(tensor_grad(x1)), tensor_data_f32(tensor_grad(x2)), x1->numel, "dx");
        const char *names[] = {"weight", "bias", "running_mean", "running_var"};
        for (int i = 0; i < 4; i++) {
            tensor *a = nn_module_get_parameter(bn, names[i]), *b = nn_module_get_parameter(bn2, names[i]);
            if (!a) a = nn_module_get_buffer(bn, names[i]), b = nn_module_get_buffer(bn2, names[i]);
            assert_same_bits(tensor_data_f32(a), tensor_data_f32(b), 4, names[i]);
            if (i < 2) assert_same_bits(tensor_data_f32(tensor_grad(a)), tensor_data_f32(tensor_grad(b)), 4, names[i]);
        }
        cr_assert_eq(tensor_data_i64(nn_module_get_buffer(bn, "num_batches_tracked"))[0],
                     tensor_data_i64(nn_module_get_buffer(bn2, "num_batches_tracked"))[0]);
        tensor *all[] = {x1, x2, y1, z, r, y2, s1, s2};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
    }
    cr_assert_eq(tensor_data_i64(nn_module_get_buffer(bn, "num_batches_tracked"))[0], training ? 3 : 0);
    nn_module_free(seq), nn_module_free(bn2), nn_module_free(relu2), nn_module_free(conv2);
}

Test(batch_norm_relu, sequential_fuses_with_the_numbers_of_the_modules_train) { sequential_matches_modules(true); }
Test(batch_norm_relu, sequential_fuses_with_the_numbers_of_the_modules_eval) { sequential_matches_modules(false); }

Test(batch_norm_relu, sequential_records_one_node_for_the_pair) {
    nn_module *seq = nn_sequential(2, (nn_module *const[]){nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2)),
                                                           nn_relu()});
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 2, 3, 3));
    tensor_set_requires_grad(x, true);
    tensor *y = nn_module_forward(seq, x);
    cr_assert(y, "%s", torch_last_error());
    cr_assert_str_eq(ag_function_name(y->grad_fn->fn), "NativeBatchNormReluBackward0");
    tensor_free(y);
    /* ReLU before BatchNorm is not the fused pattern: two nodes, the last a batch norm */
    nn_module *other = nn_sequential(2, (nn_module *const[]){nn_relu(), nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2))});
    y = nn_module_forward(other, x);
    cr_assert(y, "%s", torch_last_error());
    cr_assert_str_eq(ag_function_name(y->grad_fn->fn), "NativeBatchNormBackward0");
    tensor_free(y);
    tensor_free(x);
    nn_module_free(seq), nn_module_free(other);
}

Test(batch_norm_relu, module_entry_point_refuses_other_modules) {
    nn_module *relu = nn_relu();
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 2, 3, 3));
    cr_assert_null(nn_batch_norm_forward_relu(relu, x));
    cr_assert_str_eq(torch_last_error(), "nn_batch_norm_forward_relu: expected a BatchNorm module (got ReLU)");
    nn_module *bn = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 3));
    cr_assert_null(nn_batch_norm_forward_relu(bn, x));
    cr_assert_str_eq(torch_last_error(), "BatchNorm2d: expected input with 3 channels (got 2)");
    cr_assert_eq(tensor_data_i64(nn_module_get_buffer(bn, "num_batches_tracked"))[0], 0);
    tensor_free(x);
    nn_module_free(relu), nn_module_free(bn);
}

/* ---- errors -------------------------------------------------------------------------------------- */

Test(batch_norm_relu, refused_call_names_itself_and_changes_nothing) {
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 3, 4, 4));
    tensor *rm = torch_zeros(TORCH_SHAPE(3)), *rv = torch_ones(TORCH_SHAPE(3)), *w = torch_ones(TORCH_SHAPE(4));
    cr_assert_null(nnf_batch_norm_relu(x, rm, rv, w, NULL, true, 0.1, 1e-5));
    cr_assert_str_eq(torch_last_error(), "nnf_batch_norm_relu: weight should contain 3 elements not 4");
    for (int c = 0; c < 3; c++) {
        cr_assert_eq(tensor_data_f32(rm)[c], 0.0f);
        cr_assert_eq(tensor_data_f32(rv)[c], 1.0f);
    }
    tensor *all[] = {x, rm, rv, w};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
}
