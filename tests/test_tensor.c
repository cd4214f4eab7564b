/* Tensor core: creation, lifetime, views, copies, generator determinism, status reporting. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <string.h>

#include "tensor/tensor.h"

Test(tensor, zeros_ones_full_shape_and_strides) {
    tensor *z = torch_zeros(TORCH_SHAPE(2, 3, 4));
    cr_assert_not_null(z);
    cr_assert_eq(z->ndim, 3);
    cr_assert_eq(z->numel, 24);
    cr_assert_eq(z->stride[0], 12);
    cr_assert_eq(z->stride[1], 4);
    cr_assert_eq(z->stride[2], 1);
    cr_assert(tensor_is_contiguous(z));
    for (int i = 0; i < 24; i++) cr_assert_eq(tensor_data_f32(z)[i], 0.0f);
    tensor *o = torch_ones(TORCH_SHAPE(5));
    tensor *f = torch_full(TORCH_SHAPE(2, 2), -2.5f);
    for (int i = 0; i < 5; i++) cr_assert_eq(tensor_data_f32(o)[i], 1.0f);
    for (int i = 0; i < 4; i++) cr_assert_eq(tensor_data_f32(f)[i], -2.5f);
    /* Storage is 64-byte aligned for the SIMD kernels. */
    cr_assert_eq((uintptr_t)tensor_data_f32(z) % 64, 0);
    tensor_free(z);
    tensor_free(o);
    tensor_free(f);
}

Test(tensor, scalars_and_int64) {
    tensor *s = torch_scalar(3.5f);
    cr_assert_eq(s->ndim, 0);
    cr_assert_eq(s->numel, 1);
    cr_assert_eq(tensor_item(s), 3.5);
    tensor *n = torch_scalar_int64(INT64_C(9007199254740993)); /* not representable in double */
    cr_assert_eq(n->dtype, TORCH_INT64);
    cr_assert_eq(*tensor_data_i64(n), INT64_C(9007199254740993));
    cr_assert_null(tensor_data_f32(n), "a float view of an int64 tensor must be refused");
    cr_assert_str_eq(torch_dtype_name(n->dtype), "int64");
    tensor_free(s);
    tensor_free(n);
}

Test(tensor, from_data_is_copied) {
    float data[6] = {1, 2, 3, 4, 5, 6};
    tensor *t = torch_tensor(data, TORCH_SHAPE(2, 3));
    data[0] = 100;
    cr_assert_eq(tensor_data_f32(t)[0], 1.0f);
    int64_t idx[2] = {1, 2};
    cr_assert_eq(tensor_get(t, idx), 6.0);
    tensor_free(t);
}

Test(tensor, arange_matches_torch) {
    tensor *a = torch_arange(0, 1, 0.25); /* torch.arange(0, 1, 0.25) = [0, .25, .5, .75] */
    cr_assert_eq(a->numel, 4);
    cr_assert_eq(tensor_data_f32(a)[3], 0.75f);
    tensor *b = torch_arange(5, 0, -2); /* [5, 3, 1] */
    cr_assert_eq(b->numel, 3);
    cr_assert_eq(tensor_data_f32(b)[2], 1.0f);
    tensor_free(a);
    tensor_free(b);
    cr_assert_null(torch_arange(0, 1, 0));
    cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_null(torch_arange(0, 1, -1));
    cr_assert(strstr(torch_last_error(), "inconsistent with step sign"));
}

Test(tensor, bad_shapes_are_refused_with_a_message) {
    cr_assert_null(torch_zeros(TORCH_SHAPE(2, -1)));
    cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(torch_last_error(), "torch_zeros: Trying to create tensor with negative dimension -1");
    int64_t big[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    cr_assert_null(torch_ones(9, big));
    cr_assert(strstr(torch_last_error(), "torch_ones: expected 0 to 8 dimensions (got 9)"));
    cr_assert_null(torch_tensor(NULL, TORCH_SHAPE(2)));
    cr_assert_str_eq(torch_last_error(), "torch_tensor: input is NULL");
}

Test(tensor, refcount_keeps_shared_storage_alive) {
    tensor *t = torch_ones(TORCH_SHAPE(4));
    tensor *r = tensor_retain(t);
    cr_assert_eq(r, t);
    cr_assert_eq(t->refcount, 2);
    tensor_free(t);
    cr_assert_eq(tensor_data_f32(r)[3], 1.0f);
    /* A view outlives its base: the storage is shared and reference counted. */
    int64_t shape[1] = {2}, stride[1] = {2};
    tensor *v = tensor_as_strided(r, 1, shape, stride, 1);
    tensor_free(r);
    cr_assert_eq(tensor_data_f32(v)[0], 1.0f);
    tensor_free(v);
    tensor_free(NULL);
}

Test(tensor, strided_view_writes_through_and_clone_copies) {
    float data[6] = {0, 1, 2, 3, 4, 5};
    tensor *t = torch_tensor(data, TORCH_SHAPE(2, 3));
    /* Transpose as a view: shape [3, 2], strides [1, 3]. */
    int64_t shape[2] = {3, 2}, stride[2] = {1, 3};
    tensor *tt = tensor_as_strided(t, 2, shape, stride, 0);
    cr_assert_not(tensor_is_contiguous(tt));
    int64_t i21[2] = {2, 1};
    cr_assert_eq(tensor_get(tt, i21), 5.0); /* tt[2][1] = t[1][2] */
    tensor *c = tensor_contiguous(tt);
    const float want[6] = {0, 3, 1, 4, 2, 5};
    cr_assert_arr_eq(tensor_data_f32(c), want, sizeof want);
    tensor_fill_(tt, 7.0); /* through the view into the base */
    cr_assert_eq(tensor_data_f32(t)[4], 7.0f);
    cr_assert_eq(tensor_data_f32(c)[1], 3.0f, "a contiguous copy must not alias");
    tensor *same = tensor_contiguous(t);
    cr_assert_eq(same, t, "a contiguous tensor is returned as itself");
    tensor_free(same);
    tensor_free(c);
    tensor_free(tt);
    tensor_free(t);
}

Test(tensor, as_strided_refuses_out_of_storage_views) {
    tensor *t = torch_zeros(TORCH_SHAPE(4));
    int64_t shape[1] = {3}, stride[1] = {2};
    cr_assert_null(tensor_as_strided(t, 1, shape, stride, 0));
    cr_assert(strstr(torch_last_error(), "outside its storage"));
    tensor_free(t);
}

Test(tensor, copy_into_strided_destination) {
    tensor *dst = torch_zeros(TORCH_SHAPE(2, 3));
    int64_t shape[2] = {3, 2}, stride[2] = {1, 3};
    tensor *dt = tensor_as_strided(dst, 2, shape, stride, 0);
    float src_data[6] = {1, 2, 3, 4, 5, 6};
    tensor *src = torch_tensor(src_data, TORCH_SHAPE(3, 2));
    cr_assert_eq(tensor_copy_(dt, src), TORCH_OK);
    const float want[6] = {1, 3, 5, 2, 4, 6};
    cr_assert_arr_eq(tensor_data_f32(dst), want, sizeof want);
    tensor *wrong = torch_zeros(TORCH_SHAPE(6));
    cr_assert_eq(tensor_copy_(dst, wrong), TORCH_ERR_SHAPE);
    cr_assert_str_eq(torch_last_error(), "tensor_copy_: expected float32 [2, 3] (got float32 [6])");
    cr_assert_arr_eq(tensor_data_f32(dst), want, sizeof want, "a refused copy changes nothing");
    tensor_free(wrong);
    tensor_free(src);
    tensor_free(dt);
    tensor_free(dst);
}

Test(tensor, wrap_dim_and_shape_str) {
    int d = -1;
    cr_assert_eq(torch_wrap_dim("f", -1, 3, &d), TORCH_OK);
    cr_assert_eq(d, 2);
    cr_assert_eq(torch_wrap_dim("torch_sum", 3, 3, &d), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(torch_last_error(),
                     "torch_sum: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
    char buf[32];
    int64_t s[3] = {2, 3, 4};
    cr_assert_str_eq(torch_shape_str(3, s, buf, sizeof buf), "[2, 3, 4]");
    cr_assert_str_eq(torch_shape_str(0, NULL, buf, sizeof buf), "[]");
    char tiny[6];
    torch_shape_str(3, s, tiny, sizeof tiny); /* truncates, stays terminated */
    cr_assert_eq(strlen(tiny), 5);
}

/* ---- generator ------------------------------------------------------------------------------ */

Test(generator, splitmix_xoshiro_reference_values) {
    /* xoshiro256** seeded from splitmix64(0): the first splitmix64 outputs for seed 0 are the
     * published reference 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, ... */
    torch_generator g = torch_generator_new(0);
    cr_assert_eq(g.s[0], UINT64_C(0xe220a8397b1dcdaf));
    cr_assert_eq(g.s[1], UINT64_C(0x6e789e6aa1b965f4));
    cr_assert_eq(g.s[2], UINT64_C(0x06c45d188009454f));
    cr_assert_eq(g.s[3], UINT64_C(0xf88bb8a8724c81ec));
    /* xoshiro256** output = rotl(s1 * 5, 7) * 9, computed by hand from s1 above. */
    uint64_t s1 = UINT64_C(0x6e789e6aa1b965f4) * 5;
    uint64_t expect = ((s1 << 7) | (s1 >> 57)) * 9;
    cr_assert_eq(torch_generator_next(&g), expect);
}

Test(generator, same_seed_same_numbers_and_snapshot_restores) {
    tensor *a = torch_randn(NULL, TORCH_SHAPE(0)); /* touch the default generator */
    tensor_free(a);
    torch_generator g1 = torch_generator_new(42), g2 = torch_generator_new(42);
    tensor *x = torch_randn(&g1, TORCH_SHAPE(101));
    tensor *y = torch_randn(&g2, TORCH_SHAPE(101));
    cr_assert_arr_eq(tensor_data_f32(x), tensor_data_f32(y), 101 * sizeof(float));
    torch_generator snapshot = g1;
    tensor *p = torch_rand(&g1, TORCH_SHAPE(7));
    g1 = snapshot;
    tensor *q = torch_rand(&g1, TORCH_SHAPE(7));
    cr_assert_arr_eq(tensor_data_f32(p), tensor_data_f32(q), 7 * sizeof(float));
    torch_manual_seed(5);
    tensor *d1 = torch_rand(NULL, TORCH_SHAPE(3));
    torch_manual_seed(5);
    tensor *d2 = torch_rand(NULL, TORCH_SHAPE(3));
    cr_assert_arr_eq(tensor_data_f32(d1), tensor_data_f32(d2), 3 * sizeof(float));
    tensor_free(x);
    tensor_free(y);
    tensor_free(p);
    tensor_free(q);
    tensor_free(d1);
    tensor_free(d2);
}

Test(generator, distributions_have_the_right_moments) {
    torch_generator g = torch_generator_new(1);
    const int64_t n = 200000;
    tensor *u = torch_rand(&g, 1, &n);
    tensor *z = torch_randn(&g, 1, &n);
    double su = 0, sz = 0, szz = 0, umin = 1, umax = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = tensor_data_f32(u)[i], b = tensor_data_f32(z)[i];
        su += a;
        sz += b;
        szz += b * b;
        umin = fmin(umin, a);
        umax = fmax(umax, a);
    }
    cr_assert(umin >= 0.0 && umax < 1.0);
    /* Standard errors: U mean 0.5 +- 0.00065, N mean 0 +- 0.0022, var 1 +- 0.0032; allow ~5 sigma. */
    cr_assert(fabs(su / n - 0.5) < 0.004, "uniform mean %f", su / n);
    cr_assert(fabs(sz / n) < 0.012, "normal mean %f", sz / n);
    cr_assert(fabs(szz / n - 1.0) < 0.016, "normal var %f", szz / n);
    tensor_free(u);
    tensor_free(z);
}

Test(generator, randperm_is_a_permutation_and_below_is_uniform) {
    torch_generator g = torch_generator_new(3);
    tensor *p = torch_randperm(&g, 1000);
    cr_assert_eq(p->dtype, TORCH_INT64);
    char seen[1000] = {0};
    for (int i = 0; i < 1000; i++) {
        int64_t v = tensor_data_i64(p)[i];
        cr_assert(v >= 0 && v < 1000 && !seen[v]);
        seen[v] = 1;
    }
    tensor_free(p);
    int counts[3] = {0};
    for (int i = 0; i < 30000; i++) counts[torch_generator_below(&g, 3)]++;
    for (int i = 0; i < 3; i++) cr_assert(counts[i] > 9600 && counts[i] < 10400);
}

/* ---- status --------------------------------------------------------------------------------- */

static int handler_calls;
static void count_handler(torch_status s, const char *msg, void *ud) {
    (void)msg;
    cr_assert_eq(s, TORCH_ERR_SHAPE);
    *(int *)ud += 1;
}

Test(status, message_code_handler_and_truncation) {
    torch_clear_error();
    cr_assert_eq(torch_last_status(), TORCH_OK);
    cr_assert_str_eq(torch_last_error(), "");
    torch_set_error_handler(count_handler, &handler_calls);
    cr_assert_eq(torch_error(TORCH_ERR_SHAPE, "f: got %d", 3), TORCH_ERR_SHAPE);
    torch_set_error_handler(NULL, NULL);
    cr_assert_eq(handler_calls, 1);
    cr_assert_str_eq(torch_last_error(), "f: got 3");
    cr_assert_str_eq(torch_status_string(TORCH_ERR_SHAPE), "shape mismatch");
    cr_assert_str_eq(torch_status_string((torch_status)99), "unknown status");
    char long_msg[2000];
    memset(long_msg, 'x', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = '\0';
    torch_error(TORCH_ERR_IO, "%s", long_msg);
    size_t len = strlen(torch_last_error());
    cr_assert_eq(len, 511);
    cr_assert_str_eq(torch_last_error() + len - 3, "...");
}

Test(status, internal_assertion_aborts, .signal = SIGABRT) {
    /* torch_size_mul's contract (sizes >= 0) is for ctorch's own code: breaking it is a bug in
     * ctorch, not a user error (tensor_item of a two-element tensor is a user error: it fails
     * with a message, see test_sizes.c). */
    torch_size_mul(-1, 2);
}

/* ---- the storage cache -------------------------------------------------------------------- */

Test(tensor, reused_memory_is_initialised_by_creation_functions) {
    /* 1 MiB blocks are cached when freed; a dirty block handed out again must still give
     * exact zeros and ones. */
    const int64_t n = 1 << 18;
    for (int round = 0; round < 3; round++) {
        tensor *dirty = torch_full(1, &n, 7.0f);
        tensor_free(dirty);
        tensor *z = torch_zeros(1, &n);
        tensor *zl = torch_zeros_like(z);
        tensor *o = torch_ones(1, &n);
        for (int64_t i = 0; i < n; i += 4099) {
            cr_assert_eq(tensor_data_f32(z)[i], 0.0f);
            cr_assert_eq(tensor_data_f32(zl)[i], 0.0f);
            cr_assert_eq(tensor_data_f32(o)[i], 1.0f);
        }
        cr_assert_eq((uintptr_t)tensor_data_f32(z) % 64, 0);
        tensor_free(z);
        tensor_free(zl);
        tensor_free(o);
        if (round == 1) torch_empty_cache();
    }
    torch_empty_cache();
}
