/* models.h — the networks of the examples, shared with the tests that check them against
 * PyTorch (header-only: the examples build one program per .c file).
 *
 * Ownership: each builder returns an owned nn_module * (free with nn_module_free), or NULL
 * with torch_last_error() set. gen (borrowed, may be NULL for the default generator) draws the
 * initial weights; the deep network's Dropout keeps using it, so it must outlive the model.
 */
#ifndef CTORCH_EXAMPLES_MODELS_H
#define CTORCH_EXAMPLES_MODELS_H

#include "ctorch.h"

static inline nn_module *model_conv3x3(int64_t in, int64_t out, torch_generator *gen) {
    return nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = in, .out_channels = out, .kernel_size = {3, 3},
                                       .padding = {1, 1}, .bias = false, .generator = gen));
}

static inline nn_module *model_batch_norm2d(int64_t c, bool track_running_stats) {
    return nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = c, .track_running_stats = track_running_stats));
}
static inline nn_module *model_max_pool2(void) { return nn_max_pool2d(NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2})); }
static inline nn_module *model_flatten(void) { return nn_flatten(NN_FLATTEN_OPTIONS()); }

static inline nn_module *model_linear(int64_t in, int64_t out, torch_generator *gen) {
    return nn_linear(NN_LINEAR_OPTIONS(.in_features = in, .out_features = out, .generator = gen));
}

static inline nn_module *model_dropout(double p, torch_generator *gen) {
    return nn_dropout(NN_DROPOUT_OPTIONS(.p = p, .generator = gen));
}

/* The reference CNN of the issue tracker, with its BatchNorms tracking running statistics or not
 * (the same weights from the same gen either way). */
static inline nn_module *reference_cnn_tracking(torch_generator *gen, bool track_running_stats) {
    nn_module *layers[] = {
        model_conv3x3(1, 32, gen),  model_batch_norm2d(32, track_running_stats), nn_relu(), model_max_pool2(),
        model_conv3x3(32, 64, gen), model_batch_norm2d(64, track_running_stats), nn_relu(), model_max_pool2(),
        model_flatten(),            model_linear(3136, 10, gen),
    };
    return nn_sequential((int)(sizeof layers / sizeof *layers), layers);
}

/* The reference CNN of the issue tracker, exactly. */
static inline nn_module *reference_cnn(torch_generator *gen) { return reference_cnn_tracking(gen, true); }

/* Four conv-BN-ReLU blocks in two stages (28x28 then 14x14), then a small classifier with
 * dropout: about 93% on Fashion-MNIST (see the README for the measured run). */
static inline nn_module *deep_cnn(torch_generator *gen) {
    nn_module *layers[] = {
        model_conv3x3(1, 32, gen),  model_batch_norm2d(32, true), nn_relu(),
        model_conv3x3(32, 32, gen), model_batch_norm2d(32, true), nn_relu(), model_max_pool2(),
        model_conv3x3(32, 64, gen), model_batch_norm2d(64, true), nn_relu(),
        model_conv3x3(64, 64, gen), model_batch_norm2d(64, true), nn_relu(), model_max_pool2(),
        model_flatten(), model_dropout(0.25, gen), model_linear(3136, 128, gen), nn_relu(),
        model_dropout(0.5, gen), model_linear(128, 10, gen),
    };
    return nn_sequential((int)(sizeof layers / sizeof *layers), layers);
}

#endif /* CTORCH_EXAMPLES_MODELS_H */
