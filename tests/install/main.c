/* A first training program: two Conv-BN-ReLU blocks learn to tell bright images from dark ones.
 * It is the README's "Writing a training program", and tests/install builds and runs it against
 * the installed library (run.sh checks that the two texts are the same). */
#include <ctorch/ctorch.h>
#include <stdio.h>
#include <stdlib.h>

static nn_module *conv_bn_relu(int64_t in, int64_t out, torch_generator *gen) {
    nn_module *block[] = {
        nn_conv2d(NN_CONV2D_OPTIONS(.in_channels = in, .out_channels = out, .kernel_size = {3, 3},
                                    .padding = {1, 1}, .bias = false, .generator = gen)),
        nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = out)),
        nn_relu(),
    };
    return nn_sequential(3, block); /* takes the modules, also when it fails */
}

static int fail(void) {
    fprintf(stderr, "error: %s\n", torch_last_error());
    return 1;
}

int main(void) {
    torch_generator gen = torch_generator_new(0);
    nn_module *layers[] = {
        conv_bn_relu(1, 8, &gen),
        nn_max_pool2d(NN_MAX_POOL2D_OPTIONS(.kernel_size = {2, 2})),
        conv_bn_relu(8, 16, &gen),
        nn_adaptive_avg_pool2d(NN_ADAPTIVE_AVG_POOL2D_OPTIONS(.output_size = {1, 1})),
        nn_flatten(NN_FLATTEN_OPTIONS()),
        nn_linear(NN_LINEAR_OPTIONS(.in_features = 16, .out_features = 2, .generator = &gen)),
    };
    nn_module *model = nn_sequential(6, layers);
    nn_summary *summary = model ? nn_module_summary(model, TORCH_SHAPE(16, 1, 8, 8)) : NULL;
    char *table = summary ? nn_summary_str(summary) : NULL;
    if (!table) return fail();
    fputs(table, stdout); /* torchinfo's table: layers, output shapes, parameter counts */
    free(table);
    nn_summary_free(summary);

    /* 16 noise images; the odd ones are brighter (+1), and their label is 1. */
    tensor *x = torch_randn(&gen, TORCH_SHAPE(16, 1, 8, 8));
    if (!x) return fail();
    int64_t labels[16];
    for (int i = 0; i < 16; i++) {
        labels[i] = i % 2;
        for (int j = 0; j < 64; j++) tensor_data_f32(x)[i * 64 + j] += (float)labels[i];
    }
    tensor *y = torch_tensor_int64(labels, TORCH_SHAPE(16));

    nn_tensor_dict *params = nn_module_named_parameters(model);
    optim_optimizer *opt = optim_sgd(params, OPTIM_SGD_OPTIONS(.lr = 0.1, .momentum = 0.9));
    if (!opt) return fail();
    double first = 0, last = 0;
    for (int step = 0; step < 20; step++) {
        optim_zero_grad(opt); /* drops the gradients, as PyTorch 2's zero_grad() */
        tensor *logits = nn_module_forward(model, x);
        tensor *loss = logits ? nnf_cross_entropy(logits, y) : NULL;
        if (!loss || tensor_backward(loss, NULL, false) != TORCH_OK || optim_step(opt) != TORCH_OK) return fail();
        last = tensor_item(loss);
        if (step == 0) first = last;
        tensor_free(loss);
        tensor_free(logits);
    }

    /* Evaluation: running statistics, and no graph (grad mode comes back on at the brace). In
     * eval mode an image's output does not depend on the rest of the batch. */
    nn_module_eval(model);
    tensor *all, *half, *predicted;
    {
        TORCH_NO_GRAD_GUARD;
        tensor *x8 = torch_narrow(x, 0, 0, 8);
        all = nn_module_forward(model, x);
        half = nn_module_forward(model, x8);
        predicted = all ? torch_argmax(all, 1, false) : NULL;
        tensor_free(x8);
    }
    tensor *all8 = all ? torch_narrow(all, 0, 0, 8) : NULL;
    if (!all8 || !half || !predicted) return fail();
    bool batch_independent = torch_allclose(half, all8, 1e-5, 1e-6, false);
    bool all_right = torch_equal(predicted, y);
    printf("loss %.4f -> %.4f; %lld parameters; eval output independent of the batch: %s; "
           "all 16 classified right: %s\n",
           first, last, (long long)nn_module_num_parameters(model, false), batch_independent ? "yes" : "no",
           all_right ? "yes" : "no");

    tensor_free(all8), tensor_free(predicted), tensor_free(half), tensor_free(all);
    optim_free(opt);
    nn_tensor_dict_free(params);
    tensor_free(y), tensor_free(x);
    nn_module_free(model);
    return last < first && batch_independent && all_right ? 0 : 1;
}
