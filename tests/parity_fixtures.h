/* parity_fixtures.h — the reference CNN trained by PyTorch (scripts/make_parity_fixture.py), for
 * the parity tests with and without the Fashion-MNIST data set.
 *
 * Ownership: parity_load(), parity_model() and snapshot() return objects the test frees (nn_tensor_dict_free,
 * io_metadata_free, nn_module_free); parity_get() borrows from its dict. Failures are Criterion
 * assertions: a missing fixture or key is a broken test tree, not a case to handle. */
#ifndef CTORCH_TEST_PARITY_FIXTURES_H
#define CTORCH_TEST_PARITY_FIXTURES_H

#include <criterion/criterion.h>
#include <string.h>

#include "../examples/models.h"

#define PARITY_WEIGHTS CTORCH_TEST_DIR "/fixtures/parity_reference_cnn.safetensors"
#define PARITY_BATCH   CTORCH_TEST_DIR "/fixtures/parity_batch.safetensors"
#define N_CLASSES      10

static inline nn_tensor_dict *parity_load(const char *path, io_metadata **md) {
    nn_tensor_dict *d = io_safetensors_load(path, md);
    cr_assert_not_null(d, "%s", torch_last_error());
    return d;
}

static inline tensor *parity_get(const nn_tensor_dict *d, const char *key) {
    tensor *t = nn_tensor_dict_get(d, key);
    cr_assert_not_null(t, "fixture has no \"%s\"", key);
    return t;
}

/* reference_cnn with its own random initialisation, then the PyTorch weights (strict). */
static inline nn_module *parity_model(void) {
    torch_generator g = torch_generator_new(7);
    nn_module *m = reference_cnn(&g);
    cr_assert_not_null(m, "%s", torch_last_error());
    cr_assert_eq(nn_module_load(m, PARITY_WEIGHTS, true), TORCH_OK, "%s", torch_last_error());
    return m;
}

/* Deep copies of m's state_dict values, in order: what a check that something did or did not
 * change compares with. */
static inline nn_tensor_dict *snapshot(const nn_module *m) {
    nn_tensor_dict *sd = nn_module_state_dict(m), *copy = nn_tensor_dict_new();
    cr_assert(sd && copy);
    for (int64_t i = 0; i < sd->count; i++) {
        tensor *c = tensor_clone(sd->items[i].value);
        cr_assert_eq(nn_tensor_dict_set(copy, sd->items[i].name, c), TORCH_OK);
        tensor_free(c);
    }
    nn_tensor_dict_free(sd);
    return copy;
}

/* Same dtype, shape and bytes (NULL equals nothing). */
static inline bool bitwise_equal(const tensor *x, const tensor *y) {
    if (!x || !y || x->dtype != y->dtype || !tensor_same_shape(x, y)) return false;
    tensor *a = tensor_contiguous(x), *b = tensor_contiguous(y);
    const void *pa = a->dtype == TORCH_INT64 ? (const void *)tensor_data_i64(a) : (const void *)tensor_data_f32(a);
    const void *pb = b->dtype == TORCH_INT64 ? (const void *)tensor_data_i64(b) : (const void *)tensor_data_f32(b);
    bool eq = memcmp(pa, pb, (size_t)a->numel * torch_dtype_size(a->dtype)) == 0;
    tensor_free(a);
    tensor_free(b);
    return eq;
}

/* The first index of the largest of row[0..n) (torch.argmax's tie rule). */
static inline int64_t argmax_row(const float *row, int n) {
    int64_t best = 0;
    for (int j = 1; j < n; j++)
        if (row[j] > row[best]) best = j;
    return best;
}

#endif /* CTORCH_TEST_PARITY_FIXTURES_H */
