/* test_activation.c — ReLU, Dropout and Flatten modules and functions.
 *
 * References: hand-computed values; Dropout's defining properties (kept elements scaled by
 * 1/(1-p) exactly, the zeroed fraction close to p, the gradient equal to the mask, identity in
 * eval mode, reproducible from a seed) — the mask's values are ctorch's own RNG and cannot match
 * PyTorch's; central finite differences (torch_gradcheck) with a fixed-seed mask. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ctorch.h"
#include "nn/activation.h"

TestSuite(activation);

static void expect_repr(nn_module *m, const char *want) {
    cr_assert_not_null(m, "%s", torch_last_error());
    char *r = nn_module_repr(m);
    cr_assert_str_eq(r, want);
    free(r);
}

Test(activation, relu) {
    nn_module *m = nn_relu();
    expect_repr(m, "ReLU()");
    float v[4] = {-2.0f, -0.0f, 0.5f, 3.0f};
    tensor *x = torch_tensor(v, TORCH_SHAPE(2, 2));
    tensor_set_requires_grad(x, true);
    tensor *y = nn_module_forward(m, x);
    tensor *y2 = nnf_relu(x);
    float want[4] = {0.0f, 0.0f, 0.5f, 3.0f};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(tensor_data_f32(y)[i], want[i]);
        cr_assert_eq(tensor_data_f32(y2)[i], want[i]);
    }
    tensor *gy = torch_full(TORCH_SHAPE(2, 2), 2.0f);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
    float gwant[4] = {0.0f, 0.0f, 2.0f, 2.0f};
    for (int i = 0; i < 4; i++) cr_assert_eq(tensor_data_f32(tensor_grad(x))[i], gwant[i]);
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, 0);
    nn_tensor_dict_free(sd);
    tensor_free(gy), tensor_free(y), tensor_free(y2), tensor_free(x);
    nn_module_free(m);
}

Test(activation, dropout_training) {
    torch_generator g = torch_generator_new(31);
    const double p = 0.3;
    tensor *x = torch_randn(&g, TORCH_SHAPE(100, 200));
    tensor_set_requires_grad(x, true);
    torch_generator mask_gen = torch_generator_new(5);
    tensor *y = nnf_dropout(x, p, true, &mask_gen);
    cr_assert_not_null(y);
    cr_assert_str_eq(ag_function_name(y->grad_fn->fn), "NativeDropoutBackward0");
    const float scale = (float)(1.0 / (1.0 - p));
    int64_t zeros = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        float xv = tensor_data_f32(x)[i], yv = tensor_data_f32(y)[i];
        if (yv == 0.0f && xv != 0.0f) zeros++;
        else cr_assert_eq(yv, xv * scale, "kept element %lld: %g, want %g", (long long)i, yv, xv * scale);
    }
    /* Binomial(20000, 0.3): sd = 65; 5 sd either side. */
    cr_assert(llabs(zeros - 6000) < 325, "zeroed %lld of 20000 at p = 0.3", (long long)zeros);

    /* Backward: dx = dy * mask, with the same mask. */
    tensor *gy = torch_randn(&g, TORCH_SHAPE(100, 200));
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
    const float *gx = tensor_data_f32(tensor_grad(x));
    for (int64_t i = 0; i < x->numel; i++) {
        bool kept = tensor_data_f32(y)[i] != 0.0f || tensor_data_f32(x)[i] == 0.0f;
        cr_assert_eq(gx[i], kept ? tensor_data_f32(gy)[i] * scale : 0.0f);
    }

    /* Same seed, same mask; another seed, another mask. */
    torch_generator again = torch_generator_new(5), other = torch_generator_new(6);
    tensor *y_again = nnf_dropout(x, p, true, &again), *y_other = nnf_dropout(x, p, true, &other);
    cr_assert(memcmp(tensor_data_f32(y), tensor_data_f32(y_again), (size_t)y->numel * 4) == 0);
    cr_assert(memcmp(tensor_data_f32(y), tensor_data_f32(y_other), (size_t)y->numel * 4) != 0);
    tensor_free(y_again), tensor_free(y_other), tensor_free(gy), tensor_free(y), tensor_free(x);
}

Test(activation, dropout_edge_cases_and_module) {
    tensor *x = torch_randn(NULL, TORCH_SHAPE(4, 5));
    /* eval, and p = 0: the input itself. */
    tensor *y = nnf_dropout(x, 0.5, false, NULL);
    cr_assert_eq(y, x);
    tensor_free(y);
    y = nnf_dropout(x, 0.0, true, NULL);
    cr_assert_eq(y, x);
    tensor_free(y);
    /* p = 1 zeroes everything (no 1/0). */
    y = nnf_dropout(x, 1.0, true, NULL);
    for (int i = 0; i < 20; i++) cr_assert_eq(tensor_data_f32(y)[i], 0.0f);
    tensor_free(y);
    cr_assert_null(nnf_dropout(x, 1.5, true, NULL));
    cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "nnf_dropout: dropout probability has to be between 0 and 1, but got 1.5"));

    torch_generator g = torch_generator_new(8);
    nn_module *m = nn_dropout(NN_DROPOUT_OPTIONS(.p = 0.5, .generator = &g));
    expect_repr(m, "Dropout(p=0.5, inplace=False)");
    y = nn_module_forward(m, x); /* training after construction */
    cr_assert_neq(y, x);
    int zeros = 0;
    for (int i = 0; i < 20; i++) zeros += tensor_data_f32(y)[i] == 0.0f;
    cr_assert(zeros > 0 && zeros < 20);
    tensor_free(y);
    nn_module_eval(m);
    y = nn_module_forward(m, x);
    cr_assert_eq(y, x);
    tensor_free(y);
    nn_module_free(m);

    m = nn_dropout(NN_DROPOUT_OPTIONS(.p = 0.1));
    expect_repr(m, "Dropout(p=0.1, inplace=False)");
    nn_module_free(m);
    m = nn_dropout(NN_DROPOUT_OPTIONS(.p = 1.0));
    expect_repr(m, "Dropout(p=1.0, inplace=False)");
    cr_assert_eq(nn_as_dropout(m)->options.p, 1.0);
    nn_module_free(m);
    cr_assert_null(nn_dropout(NN_DROPOUT_OPTIONS(.p = -0.1)));
    cr_assert(strstr(torch_last_error(), "Dropout: dropout probability has to be between 0 and 1, but got -0.1"));
    tensor_free(x);
}

static tensor *dropout_fn(tensor *const *in, void *user) {
    (void)user;
    torch_generator g = torch_generator_new(77); /* the same mask on every call */
    return nnf_dropout(in[0], 0.4, true, &g);
}

Test(activation, dropout_gradcheck) {
    tensor *x = torch_randn(NULL, TORCH_SHAPE(3, 7));
    tensor_set_requires_grad(x, true);
    torch_gradcheck_result r;
    cr_assert_eq(torch_gradcheck(dropout_fn, NULL, 1, &x, NULL, torch_gradcheck_options_default(), &r), TORCH_OK, "%s",
                 r.message);
    tensor_free(x);
}

Test(activation, flatten) {
    nn_module *m = nn_flatten(NN_FLATTEN_OPTIONS());
    expect_repr(m, "Flatten(start_dim=1, end_dim=-1)");
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 3, 4, 5));
    tensor_set_requires_grad(x, true);
    tensor *y = nn_module_forward(m, x);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->ndim, 2);
    cr_assert_eq(y->shape[0], 2);
    cr_assert_eq(y->shape[1], 60);
    for (int i = 0; i < 120; i++) cr_assert_eq(tensor_data_f32(y)[i], tensor_data_f32(x)[i]);
    tensor *gy = torch_ones_like(y);
    cr_assert_eq(tensor_backward(y, gy, false), TORCH_OK);
    cr_assert(tensor_same_shape(tensor_grad(x), x));
    tensor_free(gy), tensor_free(y);
    nn_module_free(m);

    m = nn_flatten(NN_FLATTEN_OPTIONS(.start_dim = 0, .end_dim = 1));
    cr_assert_eq(nn_as_flatten(m)->options.end_dim, 1);
    y = nn_module_forward(m, x);
    cr_assert_eq(y->ndim, 3);
    cr_assert_eq(y->shape[0], 6);
    tensor_free(y);
    nn_module_free(m);

    m = nn_flatten(NN_FLATTEN_OPTIONS());
    tensor *v = torch_zeros(TORCH_SHAPE(3));
    cr_assert_null(nn_module_forward(m, v));
    cr_assert(strstr(torch_last_error(), "Dimension out of range"), "%s", torch_last_error());
    tensor_free(v), tensor_free(x);
    nn_module_free(m);
}
