/* Every layer's options: the NN_..._OPTIONS macro and the nn_..._options_default function give the
 * same defaults, and a module built from them prints PyTorch 1.13's repr of the module built with
 * PyTorch's defaults (the strings are PyTorch's output, e.g. repr(nn.Dropout())). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/pooling.h"

/* Takes m; checks its repr. */
static void expect_repr(nn_module *m, const char *want) {
    cr_assert_not_null(m, "%s", torch_last_error());
    char *got = nn_module_repr(m);
    cr_assert_str_eq(got, want);
    free(got);
    nn_module_free(m);
}

Test(options, linear) {
    nn_linear_options a = NN_LINEAR_OPTIONS(.in_features = 3, .out_features = 2);
    nn_linear_options b = nn_linear_options_default(3, 2);
    cr_assert(a.in_features == b.in_features && a.out_features == b.out_features);
    cr_assert(a.bias && b.bias, "bias=True by default");
    cr_assert(a.generator == NULL && b.generator == NULL);
    expect_repr(nn_linear(a), "Linear(in_features=3, out_features=2, bias=True)");
    expect_repr(nn_linear(b), "Linear(in_features=3, out_features=2, bias=True)");
}

Test(options, dropout) {
    nn_dropout_options a = NN_DROPOUT_OPTIONS(), b = nn_dropout_options_default();
    cr_assert(a.p == 0.5 && b.p == 0.5);
    cr_assert(a.generator == NULL && b.generator == NULL);
    expect_repr(nn_dropout(a), "Dropout(p=0.5, inplace=False)");
    expect_repr(nn_dropout(b), "Dropout(p=0.5, inplace=False)");
}

Test(options, flatten) {
    nn_flatten_options a = NN_FLATTEN_OPTIONS(), b = nn_flatten_options_default();
    cr_assert(a.start_dim == 1 && b.start_dim == 1);
    cr_assert(a.end_dim == -1 && b.end_dim == -1);
    expect_repr(nn_flatten(a), "Flatten(start_dim=1, end_dim=-1)");
    expect_repr(nn_flatten(b), "Flatten(start_dim=1, end_dim=-1)");
}

Test(options, adaptive_avg_pool2d) {
    nn_adaptive_avg_pool2d_options a = NN_ADAPTIVE_AVG_POOL2D_OPTIONS(.output_size = {1, 1});
    nn_adaptive_avg_pool2d_options b = nn_adaptive_avg_pool2d_options_default(1, 1);
    cr_assert(a.output_size[0] == b.output_size[0] && a.output_size[1] == b.output_size[1]);
    expect_repr(nn_adaptive_avg_pool2d(b), "AdaptiveAvgPool2d(output_size=(1, 1))");
}

Test(options, conv2d) {
    nn_conv2d_options a = NN_CONV2D_OPTIONS(.in_channels = 1, .out_channels = 4, .kernel_size = {3, 3});
    nn_conv2d_options b = nn_conv2d_options_default(1, 4, 3);
    for (int i = 0; i < 2; i++)
        cr_assert(a.kernel_size[i] == b.kernel_size[i] && a.stride[i] == b.stride[i] && a.padding[i] == b.padding[i] &&
                  a.dilation[i] == b.dilation[i]);
    cr_assert(a.bias && b.bias);
    expect_repr(nn_conv2d(a), "Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1))");
    expect_repr(nn_conv2d(b), "Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1))");
}

Test(options, batch_norm) {
    nn_batch_norm_options a = NN_BATCH_NORM_OPTIONS(.num_features = 4), b = nn_batch_norm_options_default(4);
    cr_assert(a.eps == b.eps && a.momentum == b.momentum && a.affine == b.affine &&
              a.track_running_stats == b.track_running_stats &&
              a.cumulative_moving_average == b.cumulative_moving_average);
    expect_repr(nn_batch_norm2d(a), "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
    expect_repr(nn_batch_norm2d(b), "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
}

Test(options, pools) {
    expect_repr(nn_max_pool2d(NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2})),
                "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
    expect_repr(nn_max_pool2d(nn_max_pool2d_options_default(2)),
                "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
    expect_repr(nn_avg_pool2d(NN_AVG_POOL2D_OPTIONS(.kernel_size = {2, 2})), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
    expect_repr(nn_avg_pool2d(nn_avg_pool2d_options_default(2)), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
}
