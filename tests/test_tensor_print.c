/* Tests for tensor_fprint / tensor_print: PyTorch's repr text for fixed, int-mode, scientific,
 * int64, 0-dim, empty, summarised, wrapped and strided tensors, and the suffixes.
 * Expected strings are what PyTorch prints for the same tensors. */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor.h"

#define S(...) TORCH_SHAPE(__VA_ARGS__)

/* What tensor_fprint writes for t (caller frees). */
static char *repr(const tensor *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    tensor_fprint(f, t);
    fclose(f);
    return buf;
}

static void expect_repr(const tensor *t, const char *want) {
    cr_assert_not_null(t);
    char *got = repr(t);
    cr_assert_str_eq(got, want, "got:\n%s\nexpected:\n%s", got, want);
    free(got);
}

static tensor *from(const float *data, int ndim, const int64_t *shape) {
    tensor *t = torch_tensor(data, ndim, shape);
    cr_assert_not_null(t);
    return t;
}

static tensor *iota_f32(int ndim, const int64_t *shape) {
    tensor *t = torch_empty(ndim, shape);
    cr_assert_not_null(t);
    for (int64_t i = 0; i < t->numel; i++) tensor_data_f32(t)[i] = (float)i;
    return t;
}

static tensor *iota_i64(int ndim, const int64_t *shape) {
    tensor *t = torch_empty_dtype(TORCH_INT64, ndim, shape);
    cr_assert_not_null(t);
    for (int64_t i = 0; i < t->numel; i++) tensor_data_i64(t)[i] = i;
    return t;
}

TestSuite(tensor_print);

Test(tensor_print, fixed_point_matrix) {
    tensor *t = from((const float[]){0.1f, -2, 3.5f, 4}, S(2, 2));
    expect_repr(t, "tensor([[ 0.1000, -2.0000],\n"
                   "        [ 3.5000,  4.0000]])\n");
    tensor_free(t);
}

Test(tensor_print, int_mode_floats) {
    tensor *t = from((const float[]){1, 2, 3}, S(3));
    expect_repr(t, "tensor([1., 2., 3.])\n");
    tensor_free(t);
    t = from((const float[]){-1, 2}, S(2));
    expect_repr(t, "tensor([-1.,  2.])\n");
    tensor_free(t);
    t = torch_zeros(S(2));
    expect_repr(t, "tensor([0., 0.])\n");
    tensor_free(t);
}

Test(tensor_print, scalars) {
    tensor *t = torch_scalar(1.5f);
    expect_repr(t, "tensor(1.5000)\n");
    tensor_free(t);
    t = torch_scalar(2);
    expect_repr(t, "tensor(2.)\n");
    tensor_free(t);
    t = torch_scalar_int64(-7);
    expect_repr(t, "tensor(-7)\n");
    tensor_free(t);
}

Test(tensor_print, scientific) {
    tensor *t = from((const float[]){1e5f, 1}, S(2)); /* integral, ratio > 1000 */
    expect_repr(t, "tensor([1.0000e+05, 1.0000e+00])\n");
    tensor_free(t);
    t = from((const float[]){1e-5f, 1.5f}, S(2)); /* smallest below 1e-4 */
    expect_repr(t, "tensor([1.0000e-05, 1.5000e+00])\n");
    tensor_free(t);
    t = from((const float[]){-2.5e9f, 0}, S(2)); /* above 1e8; zeros are not considered */
    expect_repr(t, "tensor([-2.5000e+09,  0.0000e+00])\n");
    tensor_free(t);
}

Test(tensor_print, non_finite) {
    tensor *t = from((const float[]){1.5f, NAN}, S(2));
    expect_repr(t, "tensor([1.5000,    nan])\n");
    tensor_free(t);
    t = from((const float[]){INFINITY, -INFINITY, 2}, S(3));
    expect_repr(t, "tensor([inf, -inf, 2.])\n");
    tensor_free(t);
}

Test(tensor_print, three_dims) {
    tensor *t = iota_f32(S(2, 2, 2));
    expect_repr(t, "tensor([[[0., 1.],\n"
                   "         [2., 3.]],\n"
                   "\n"
                   "        [[4., 5.],\n"
                   "         [6., 7.]]])\n");
    tensor_free(t);
}

Test(tensor_print, int64) {
    tensor *t = iota_i64(S(2, 3));
    tensor_data_i64(t)[5] = -12;
    expect_repr(t, "tensor([[  0,   1,   2],\n"
                   "        [  3,   4, -12]])\n");
    tensor_free(t);
}

Test(tensor_print, summarised_vector) {
    tensor *t = iota_i64(S(2000));
    expect_repr(t, "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])\n");
    tensor_free(t);
    /* float: integral but spanning more than 1000x, so scientific; 7 items wrap after 6 */
    t = iota_f32(S(2000));
    expect_repr(t, "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
                   "        1.9990e+03])\n");
    tensor_free(t);
}

Test(tensor_print, summarised_matrix) {
    tensor *t = torch_zeros(S(100, 100));
    expect_repr(t, "tensor([[0., 0., 0.,  ..., 0., 0., 0.],\n"
                   "        [0., 0., 0.,  ..., 0., 0., 0.],\n"
                   "        [0., 0., 0.,  ..., 0., 0., 0.],\n"
                   "        ...,\n"
                   "        [0., 0., 0.,  ..., 0., 0., 0.],\n"
                   "        [0., 0., 0.,  ..., 0., 0., 0.],\n"
                   "        [0., 0., 0.,  ..., 0., 0., 0.]])\n");
    tensor_free(t);
}

Test(tensor_print, line_wrapping) {
    /* widest "11.5000": width 7 + 2 per element, (80 - 7) / 9 = 8 per line */
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = 0.5f + (float)i;
    tensor *t = from(v, S(12));
    expect_repr(t, "tensor([ 0.5000,  1.5000,  2.5000,  3.5000,  4.5000,  5.5000,  6.5000,  7.5000,\n"
                   "         8.5000,  9.5000, 10.5000, 11.5000])\n");
    tensor_free(t);
}

Test(tensor_print, strided_view) {
    tensor *base = iota_f32(S(2, 3));
    tensor *t = tensor_as_strided(base, 2, (const int64_t[]){3, 2}, (const int64_t[]){1, 3}, 0);
    expect_repr(t, "tensor([[0., 3.],\n"
                   "        [1., 4.],\n"
                   "        [2., 5.]])\n");
    tensor_free(t);
    t = tensor_as_strided(base, 1, (const int64_t[]){2}, (const int64_t[]){2}, 1); /* offset 1 */
    expect_repr(t, "tensor([1., 3.])\n");
    tensor_free(t);
    tensor_free(base);
}

Test(tensor_print, empty) {
    tensor *t = torch_empty(S(0));
    expect_repr(t, "tensor([])\n");
    tensor_free(t);
    t = torch_empty(S(2, 0));
    expect_repr(t, "tensor([], size=(2, 0))\n");
    tensor_free(t);
    t = torch_empty_dtype(TORCH_INT64, S(0));
    expect_repr(t, "tensor([], dtype=torch.int64)\n");
    tensor_free(t);
}

static void fake_release(struct ag_node *node) { (void)node; }
static const char *fake_name(const struct ag_node *node) {
    (void)node;
    return "AddBackward0";
}

Test(tensor_print, requires_grad_and_grad_fn) {
    tensor *t = from((const float[]){1, 2}, S(2));
    t->requires_grad = true;
    expect_repr(t, "tensor([1., 2.], requires_grad=True)\n");
    /* The tensor layer names a node only through the ops autograd installs: stand in for them. */
    static const tensor_grad_fn_ops ops = {.release = fake_release, .name = fake_name};
    t->grad_fn = (struct ag_node *)&ops; /* any non-NULL node: only the ops look at it */
    t->grad_fn_ops = &ops;
    expect_repr(t, "tensor([1., 2.], grad_fn=<AddBackward0>)\n");
    t->grad_fn = NULL;
    tensor_free(t);
}

Test(tensor_print, long_suffix_wraps) {
    /* 9 elements of width 7 wrap after 8, and the suffix fits after the last one; with 8 the
     * first line is full and the suffix moves to its own line */
    float v[9];
    for (int i = 0; i < 9; i++) v[i] = -0.5f - (float)i;
    tensor *t = from(v, S(9));
    t->requires_grad = true;
    expect_repr(t, "tensor([-0.5000, -1.5000, -2.5000, -3.5000, -4.5000, -5.5000, -6.5000, -7.5000,\n"
                   "        -8.5000], requires_grad=True)\n");
    tensor_free(t);
    float w[8];
    for (int i = 0; i < 8; i++) w[i] = -0.5f - (float)i;
    t = from(w, S(8));
    t->requires_grad = true;
    expect_repr(t, "tensor([-0.5000, -1.5000, -2.5000, -3.5000, -4.5000, -5.5000, -6.5000, -7.5000],\n"
                   "       requires_grad=True)\n");
    tensor_free(t);
}

Test(tensor_print, null_tensor) {
    char *got = repr(NULL);
    cr_assert_str_eq(got, "tensor(NULL)\n");
    free(got);
}

Test(tensor_print, print_to_stdout, .init = cr_redirect_stdout) {
    tensor *t = torch_scalar(0.25f);
    tensor_print(t);
    fflush(stdout);
    cr_assert_stdout_eq_str("tensor(0.2500)\n");
    tensor_free(t);
}
