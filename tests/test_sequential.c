/* test_sequential.c — Sequential, and the layers working together as a network.
 *
 * References: PyTorch 1.13's repr and state_dict keys of the reference CNN (copied from
 * PyTorch's output); a small CNN (conv-bn-relu-pool-conv-relu-avgpool-flatten-linear) run by
 * PyTorch in float64 in train mode (tests/fixtures/layers.txt): logits, cross-entropy loss, every
 * parameter gradient and the BatchNorm running statistics after the step. Tolerance 1e-5 forward,
 * 1e-4 gradients. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ctorch.h"
#include "layer_fixtures.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/pooling.h"

TestSuite(sequential);

/* The reference CNN of the Fashion-MNIST trainer, built with the public constructors. */
static nn_module *reference_cnn(torch_generator *g) {
    nn_module *layers[] = {
        nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 32, .kernel_size = {3, 3}, .padding = {1, 1},
                                    .bias = false, .generator = g)),
        nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 32)),
        nn_relu(),
        nn_max_pool2d(nn_max_pool2d_options_default(2)),
        nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 32, .out_channels = 64, .kernel_size = {3, 3}, .padding = {1, 1},
                                    .bias = false, .generator = g)),
        nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 64)),
        nn_relu(),
        nn_max_pool2d(nn_max_pool2d_options_default(2)),
        nn_flatten(NN_FLATTEN_OPTIONS()),
        nn_linear(NN_LINEAR_OPTIONS(.in_features = 3136, .out_features = 10, .generator = g)),
    };
    return nn_sequential(10, layers);
}

Test(sequential, reference_cnn_repr_and_state_dict_keys) {
    torch_generator g = torch_generator_new(0);
    nn_module *m = reference_cnn(&g);
    cr_assert_not_null(m, "%s", torch_last_error());
    char *r = nn_module_repr(m);
    cr_assert_str_eq(r,
                     "Sequential(\n"
                     "  (0): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
                     "  (1): BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
                     "  (2): ReLU()\n"
                     "  (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
                     "  (4): Conv2d(32, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
                     "  (5): BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
                     "  (6): ReLU()\n"
                     "  (7): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
                     "  (8): Flatten(start_dim=1, end_dim=-1)\n"
                     "  (9): Linear(in_features=3136, out_features=10, bias=True)\n"
                     ")");
    free(r);
    const char *keys[] = {"0.weight",      "1.weight",     "1.bias",         "1.running_mean", "1.running_var",
                          "1.num_batches_tracked", "4.weight", "5.weight",   "5.bias",         "5.running_mean",
                          "5.running_var", "5.num_batches_tracked", "9.weight", "9.bias"};
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, 14);
    for (int i = 0; i < 14; i++) cr_assert_str_eq(sd->items[i].name, keys[i]);
    nn_tensor_dict_free(sd);
    nn_tensor_dict *params = nn_module_named_parameters(m);
    cr_assert_eq(params->count, 8);
    nn_tensor_dict_free(params);

    /* A forward on a batch of 28x28 images gives (N, 10); cross-entropy backward reaches every parameter. */
    tensor *x = torch_randn(&g, TORCH_SHAPE(4, 1, 28, 28));
    tensor *y = nn_module_forward(m, x);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->ndim, 2);
    cr_assert_eq(y->shape[0], 4);
    cr_assert_eq(y->shape[1], 10);
    tensor *t = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(4));
    for (int i = 0; i < 4; i++) tensor_data_i64(t)[i] = i;
    tensor *loss = nnf_cross_entropy(y, t);
    cr_assert_eq(tensor_backward(loss, NULL, false), TORCH_OK, "%s", torch_last_error());
    params = nn_module_named_parameters(m);
    for (int64_t i = 0; i < params->count; i++)
        cr_assert_not_null(tensor_grad(params->items[i].value), "%s has no gradient", params->items[i].name);
    nn_tensor_dict_free(params);
    tensor_free(loss), tensor_free(t), tensor_free(y), tensor_free(x);
    nn_module_free(m);
}

/* The small CNN of the fixture: PyTorch's weights in, PyTorch's logits, loss and gradients out. */
Test(sequential, small_cnn_matches_pytorch) {
    lfx_file *fx = lfx_load();
    nn_module *layers[] = {
        nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 4, .kernel_size = {3, 3}, .padding = {1, 1},
                                    .bias = false)),
        nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 4)),
        nn_relu(),
        nn_max_pool2d(nn_max_pool2d_options_default(2)),
        nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = 4, .out_channels = 6, .kernel_size = {3, 3}, .padding = {1, 1})),
        nn_relu(),
        nn_avg_pool2d(nn_avg_pool2d_options_default(2)),
        nn_flatten(NN_FLATTEN_OPTIONS()),
        nn_linear(NN_LINEAR_OPTIONS(.in_features = 24, .out_features = 3)),
    };
    nn_module *m = nn_sequential(9, layers);
    cr_assert_not_null(m, "%s", torch_last_error());

    /* Load PyTorch's initial state through the fixture's keys: they must all exist in our model. */
    nn_tensor_dict *sd = nn_module_state_dict(m);
    int loaded = 0;
    bool grad_mode = torch_set_grad_enabled(false); /* parameters are written under no_grad */
    for (int i = 0; i < fx->count; i++) {
        const lfx_record *r = &fx->records[i];
        if (strncmp(r->name, "seq.sd.", 7) != 0) continue;
        tensor *dst = nn_tensor_dict_get(sd, r->name + 7);
        cr_assert_not_null(dst, "PyTorch key %s missing from our state_dict", r->name + 7);
        tensor *src = lfx_tensor(r);
        cr_assert_eq(tensor_copy_(dst, src), TORCH_OK, "%s: %s", r->name, torch_last_error());
        tensor_free(src);
        loaded++;
    }
    torch_set_grad_enabled(grad_mode);
    cr_assert_eq(loaded, sd->count, "every one of our keys is one of PyTorch's");
    nn_tensor_dict_free(sd);

    tensor *x = lfx_tensor(lfx_get(fx, "seq", "x")), *t = lfx_tensor(lfx_get(fx, "seq", "t"));
    tensor *y = nn_module_forward(m, x);
    double ey = lfx_expect_close(y, lfx_get(fx, "seq", "y"), 1e-5, "logits");
    tensor *loss = nnf_cross_entropy(y, t);
    double el = lfx_expect_close(loss, lfx_get(fx, "seq", "loss"), 1e-5, "loss");
    cr_assert_eq(tensor_backward(loss, NULL, false), TORCH_OK);
    double eg = 0.0;
    nn_tensor_dict *params = nn_module_named_parameters(m);
    for (int64_t i = 0; i < params->count; i++) {
        char field[80];
        snprintf(field, sizeof field, "grad.%s", params->items[i].name);
        double e = lfx_expect_close(tensor_grad(params->items[i].value), lfx_get(fx, "seq", field), 1e-4, field);
        if (e > eg) eg = e;
    }
    nn_tensor_dict_free(params);
    nn_tensor_dict *bufs = nn_module_named_buffers(m);
    for (int64_t i = 0; i < bufs->count; i++) {
        char field[80];
        snprintf(field, sizeof field, "after.%s", bufs->items[i].name);
        lfx_expect_close(bufs->items[i].value, lfx_get(fx, "seq", field), 1e-5, field);
    }
    nn_tensor_dict_free(bufs);
    fprintf(stderr, "sequential small CNN max err vs PyTorch: logits %.2e  loss %.2e  grads %.2e\n", ey, el, eg);
    tensor_free(loss), tensor_free(y), tensor_free(x), tensor_free(t);
    nn_module_free(m);
    lfx_free(fx);
}

Test(sequential, append_at_and_nesting) {
    nn_module *seq = nn_sequential(0, NULL);
    cr_assert_not_null(seq);
    char *r = nn_module_repr(seq);
    cr_assert_str_eq(r, "Sequential()");
    free(r);
    /* An empty Sequential is the identity (the input, retained). */
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 3));
    tensor *y = nn_module_forward(seq, x);
    cr_assert_eq(y, x);
    tensor_free(y);

    nn_module *inner_layers[] = {nn_relu()};
    cr_assert_eq(nn_sequential_append(seq, nn_sequential(1, inner_layers)), TORCH_OK);
    cr_assert_eq(nn_sequential_append(seq, nn_dropout(NN_DROPOUT_OPTIONS(.p = 0.25))), TORCH_OK);
    cr_assert_eq(nn_sequential_length(seq), 2);
    cr_assert(nn_is_sequential(nn_sequential_at(seq, 0)));
    cr_assert_not_null(nn_as_dropout(nn_sequential_at(seq, -1)));
    cr_assert_null(nn_sequential_at(seq, 2));
    cr_assert_eq(nn_module_get_child(seq, "1"), nn_sequential_at(seq, 1));
    r = nn_module_repr(seq);
    cr_assert_str_eq(r, "Sequential(\n  (0): Sequential(\n    (0): ReLU()\n  )\n  (1): Dropout(p=0.25, inplace=False)\n)");
    free(r);

    /* eval() reaches the nested children: Dropout becomes the identity, ReLU clamps. */
    nn_module_eval(seq);
    y = nn_module_forward(seq, x);
    for (int i = 0; i < 6; i++) {
        float v = tensor_data_f32(x)[i];
        cr_assert_eq(tensor_data_f32(y)[i], v > 0 ? v : 0.0f);
    }
    tensor_free(y), tensor_free(x);
    nn_module_free(seq);
}

Test(sequential, errors_take_ownership) {
    /* A failing constructor frees the modules it was given (checked by LSan/valgrind). */
    nn_module *mods[3] = {nn_relu(), NULL, nn_relu()};
    cr_assert_null(nn_sequential(3, mods));
    cr_assert(strstr(torch_last_error(), "nn_sequential: module 1 is NULL"));
    nn_module *r = nn_relu();
    nn_module *dup[2] = {r, r};
    cr_assert_null(nn_sequential(2, dup));
    cr_assert(strstr(torch_last_error(), "module 1 is also module 0"));

    nn_module *seq = nn_sequential(0, NULL);
    cr_assert_eq(nn_sequential_append(seq, NULL), TORCH_ERR_INVALID_ARGUMENT);
    nn_module *relu = nn_relu();
    cr_assert_eq(nn_sequential_append(relu, nn_relu()), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "nn_sequential_append: module is not a Sequential"));
    cr_assert_eq(nn_sequential_length(relu), 0);
    nn_module *child = nn_relu();
    cr_assert_eq(nn_sequential_append(seq, child), TORCH_OK);
    cr_assert_eq(nn_sequential_append(seq, child), TORCH_ERR_INVALID_ARGUMENT, "the same module twice");
    cr_assert_eq(nn_sequential_length(seq), 1, "a refused append changes nothing");

    /* A child's error comes out of the Sequential with the child's name in it. */
    nn_module *lin = nn_linear(NN_LINEAR_OPTIONS(.in_features = 5, .out_features = 2));
    cr_assert_eq(nn_sequential_append(seq, lin), TORCH_OK);
    tensor *x = torch_zeros(TORCH_SHAPE(3, 4));
    cr_assert_null(nn_module_forward(seq, x));
    cr_assert(strstr(torch_last_error(), "Linear: mat1 and mat2 shapes cannot be multiplied (3x4 and 5x2)"),
              "%s", torch_last_error());
    tensor_free(x);
    nn_module_free(seq);
    nn_module_free(relu);
}

/* ---- the fusion hook is the module's, not the container's ----------------------------------------- */

/* A test-local module type, Scale(k): x * k. It absorbs a following Scale by multiplying once by
 * the product, and declines anything else. Sequential knows nothing of it. */
typedef struct {
    nn_module base;
    double    k;
} scale_module;

static int absorb_calls, absorbed_pairs;

static tensor *scale_forward(nn_module *self, tensor *input) {
    return torch_mul_scalar(input, ((scale_module *)self)->k);
}

static bool scale_absorb_next(nn_module *self, nn_module *next, tensor *input, tensor **output);

static const nn_module_ops scale_ops = {.type_name = "Scale", .forward = scale_forward, .absorb_next = scale_absorb_next};

static bool scale_absorb_next(nn_module *self, nn_module *next, tensor *input, tensor **output) {
    absorb_calls++;
    if (next->ops != &scale_ops) return false;
    absorbed_pairs++;
    *output = torch_mul_scalar(input, ((scale_module *)self)->k * ((scale_module *)next)->k);
    return true;
}

static nn_module *scale(double k) {
    scale_module *m = nn_module_alloc(sizeof *m, &scale_ops);
    cr_assert_not_null(m);
    m->k = k;
    return &m->base;
}

Test(sequential, a_module_may_absorb_the_next_through_its_hook) {
    /* Scale(2) absorbs Scale(3); Scale(5) declines the ReLU; the ReLU has no hook; Scale(7) is
     * last and is not asked. */
    nn_module *seq = nn_sequential(5, (nn_module *[]){scale(2), scale(3), scale(5), nn_relu(), scale(7)});
    cr_assert_not_null(seq);
    tensor *x = torch_tensor((float[]){1, -1, 0.5f}, TORCH_SHAPE(3));
    cr_assert_eq(tensor_set_requires_grad(x, true), TORCH_OK);
    absorb_calls = absorbed_pairs = 0;
    tensor *y = nn_module_forward(seq, x);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(absorb_calls, 2, "asked: Scale(2) about Scale(3), Scale(5) about ReLU (got %d)", absorb_calls);
    cr_assert_eq(absorbed_pairs, 1);
    const float want[] = {210, 0, 105}; /* relu(x * 6 * 5) * 7 */
    for (int i = 0; i < 3; i++) cr_assert_float_eq(tensor_data_f32(y)[i], want[i], 0, "y[%d]", i);
    /* One node for the absorbed pair: Mul(7) <- Relu <- Mul(5) <- Mul(6) <- x, four nodes. */
    int nodes = 0;
    for (const ag_node *n = y->grad_fn; n; n = n->inputs[0].node) nodes++;
    cr_assert_eq(nodes, 4);
    tensor *ones = torch_ones(TORCH_SHAPE(3));
    cr_assert_eq(tensor_backward(y, ones, false), TORCH_OK);
    tensor_free(ones);
    const float dx[] = {210, 0, 210};
    for (int i = 0; i < 3; i++) cr_assert_float_eq(tensor_data_f32(tensor_grad(x))[i], dx[i], 0, "dx[%d]", i);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(seq);
}

/* Conv2d + ReLU without autograd (inference) run as one layer, clamping each block of images as it
 * is written: the numbers of the two layers in turn, bit for bit, on each convolution path. With
 * autograd recording, the two run in turn and the graph has both nodes. */
Test(sequential, conv_absorbs_relu_in_inference_only) {
    const int64_t shapes[][4] = {{3, 1, 9, 9}, {5, 8, 12, 12}, {2, 6, 7, 7}}; /* short K, Winograd, K > 32 with stride */
    const int64_t kernel[] = {3, 3, 5}, stride[] = {1, 1, 2};
    for (int s = 0; s < 3; s++) {
        torch_generator g = torch_generator_new(90 + s);
        nn_module *conv = nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = shapes[s][1], .out_channels = 4,
                                                      .kernel_size = {kernel[s], kernel[s]}, .padding = {1, 1},
                                                      .stride = {stride[s], stride[s]}, .generator = &g));
        nn_module *seq = nn_sequential(2, (nn_module *[]){conv, nn_relu()});
        tensor *x = torch_randn(&g, 4, shapes[s]);
        tensor *fused, *ref;
        bool absorbed = false;
        {
            TORCH_NO_GRAD_GUARD;
            fused = nn_module_forward(seq, x);
            tensor *direct = nn_module_forward_absorbing(conv, nn_sequential_at(seq, 1), x, &absorbed);
            cr_expect(absorbed, "shape %d: the Conv2d did not absorb the ReLU", s);
            cr_expect(torch_equal(direct, fused));
            tensor_free(direct);
            tensor *c = nn_module_forward(conv, x);
            ref = nnf_relu(c);
            tensor_free(c);
        }
        cr_assert(fused && ref);
        cr_expect(torch_equal(fused, ref), "shape %d: Conv2d + ReLU fused differs from the two in turn", s);
        cr_expect_null(fused->grad_fn);
        tensor *c = nn_module_forward_absorbing(conv, nn_sequential_at(seq, 1), x, &absorbed);
        cr_expect(!absorbed, "shape %d: absorbed while recording a graph", s);
        tensor_free(c);
        tensor *y = nn_module_forward(seq, x); /* recording: the ReLU runs as its own node */
        cr_assert_not_null(y);
        cr_expect(torch_equal(y, ref));
        cr_expect_str_eq(ag_function_name(y->grad_fn->fn), "ReluBackward0");
        tensor_free(y), tensor_free(ref), tensor_free(fused), tensor_free(x);
        nn_module_free(seq);
    }
}
