/* test_relu_kernel.c — ReLU (torch_relu, which nnf_relu and the ReLU module are) and its one-pass
 * forward and backward kernels (TORCH_UNARY_RELU and tensor_relu_backward, src/tensor/elementwise.c).
 *
 * References: PyTorch 1.13's values for the edge cases, checked by hand with python3-torch and
 * written below (relu(-0.) is -0., relu(nan) is nan; the gradient is dy where the output is > 0
 * or NaN — ATen's threshold_backward(dy, y, 0) = (y <= 0 ? 0 : dy) — so 0, not NaN, where y = 0
 * and dy is NaN or inf); the definition max(x, 0) element by element for sizes around the
 * element-wise engine's parallel threshold (2^15) and chunks (2^14); bit-identical results at 1
 * and 2 threads; strided inputs; the error messages of torch_relu. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ctorch.h"
#include "nn/activation.h"
#include "tensor/parallel.h"

TestSuite(relu_kernel);

static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

Test(relu_kernel, edge_values_match_pytorch) {
    float xv[7] = {-0.0f, NAN, 0.0f, -1.0f, 2.0f, INFINITY, -INFINITY};
    float gv[7] = {1.0f, 2.0f, NAN, INFINITY, 3.0f, 4.0f, 5.0f};
    /* torch.relu(x) and x.grad after y.backward(g), from PyTorch 1.13 */
    float want_y[7] = {-0.0f, NAN, 0.0f, 0.0f, 2.0f, INFINITY, 0.0f};
    float want_dx[7] = {0.0f, 2.0f, 0.0f, 0.0f, 3.0f, 4.0f, 0.0f};
    tensor *x = torch_tensor(xv, TORCH_SHAPE(7));
    tensor_set_requires_grad(x, true);
    tensor *y = nnf_relu(x);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_str_eq(ag_function_name(y->grad_fn->fn), "ReluBackward0");
    for (int i = 0; i < 7; i++)
        cr_assert(same_bits(tensor_data_f32(y)[i], want_y[i]) || (isnan(want_y[i]) && isnan(tensor_data_f32(y)[i])),
                  "y[%d] = %g, want %g", i, tensor_data_f32(y)[i], want_y[i]);
    tensor *g = torch_tensor(gv, TORCH_SHAPE(7));
    cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
    for (int i = 0; i < 7; i++)
        cr_assert(same_bits(tensor_data_f32(tensor_grad(x))[i], want_dx[i]), "dx[%d] = %g, want %g", i,
                  tensor_data_f32(tensor_grad(x))[i], want_dx[i]);
    tensor_free(g), tensor_free(y), tensor_free(x);
}

/* Sizes below one chunk, across chunk boundaries, and above the parallel threshold (> 4 chunks),
 * none a multiple of the vector width. */
Test(relu_kernel, definition_over_sizes) {
    const int64_t sizes[] = {1, 13, 32767, 3 * 32768 + 5, 5 * 32768 + 3, 64 * 32 * 28 * 28 + 1};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        torch_generator gen = torch_generator_new(s + 1);
        tensor *x = torch_randn(&gen, TORCH_SHAPE(sizes[s]));
        tensor_set_requires_grad(x, true);
        tensor *y = nnf_relu(x);
        tensor *g = torch_randn(&gen, TORCH_SHAPE(sizes[s]));
        cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
        const float *xd = tensor_data_f32(x), *yd = tensor_data_f32(y), *gd = tensor_data_f32(g);
        const float *dx = tensor_data_f32(tensor_grad(x));
        for (int64_t i = 0; i < sizes[s]; i++) {
            float want = xd[i] > 0.0f ? xd[i] : 0.0f;
            cr_assert_eq(yd[i], want, "size %lld: y[%lld]", (long long)sizes[s], (long long)i);
            cr_assert_eq(dx[i], xd[i] > 0.0f ? gd[i] : 0.0f, "size %lld: dx[%lld]", (long long)sizes[s], (long long)i);
        }
        tensor_free(g), tensor_free(y), tensor_free(x);
    }
}

Test(relu_kernel, deterministic_across_thread_counts) {
    tensor *out[2][2];
    nn_module *m = nn_relu();
    for (int run = 0; run < 2; run++) {
        torch_set_num_threads(run + 1);
        torch_generator gen = torch_generator_new(3);
        tensor *x = torch_randn(&gen, TORCH_SHAPE(64, 32, 28, 28));
        tensor_set_requires_grad(x, true);
        tensor *y = nn_module_forward(m, x);
        tensor *g = torch_randn(&gen, 4, y->shape);
        cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
        out[run][0] = tensor_detach(y);
        out[run][1] = tensor_retain(tensor_grad(x));
        tensor_free(g), tensor_free(y), tensor_free(x);
    }
    torch_set_num_threads(1);
    for (int k = 0; k < 2; k++) {
        cr_assert(memcmp(tensor_data_f32(out[0][k]), tensor_data_f32(out[1][k]),
                         (size_t)out[0][k]->numel * sizeof(float)) == 0,
                  "output %d differs between 1 and 2 threads", k);
        tensor_free(out[0][k]), tensor_free(out[1][k]);
    }
    nn_module_free(m);
}

/* A transposed view gives the values of its contiguous copy, and its gradient in its own shape. */
Test(relu_kernel, strided_input) {
    torch_generator gen = torch_generator_new(4);
    tensor *base = torch_randn(&gen, TORCH_SHAPE(5, 3));
    tensor_set_requires_grad(base, true);
    tensor *t = torch_transpose(base, 0, 1); /* (3, 5), not contiguous */
    cr_assert(!tensor_is_contiguous(t));
    tensor *y = nnf_relu(t);
    const float *b = tensor_data_f32(base);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) {
            float v = b[j * 3 + i];
            cr_assert_eq(tensor_data_f32(y)[i * 5 + j], v > 0.0f ? v : 0.0f);
        }
    tensor *g = torch_ones_like(y);
    cr_assert_eq(tensor_backward(y, g, false), TORCH_OK);
    for (int k = 0; k < 15; k++) cr_assert_eq(tensor_data_f32(tensor_grad(base))[k], b[k] > 0.0f ? 1.0f : 0.0f);
    tensor_free(g), tensor_free(y), tensor_free(t), tensor_free(base);
}

Test(relu_kernel, errors) {
    cr_assert_null(nnf_relu(NULL));
    cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "torch_relu: input is NULL"), "%s", torch_last_error());
    tensor *i = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(3));
    cr_assert_null(nnf_relu(i));
    cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(torch_last_error(), "torch_relu: expected input to be float32 (got int64)"), "%s",
              torch_last_error());
    tensor_free(i);
    /* no graph without a reason for one */
    tensor *x = torch_ones(TORCH_SHAPE(4));
    tensor *y = nnf_relu(x);
    cr_assert_null(y->grad_fn);
    tensor_free(y), tensor_free(x);
}
