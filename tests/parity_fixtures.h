/* parity_fixtures.h — the reference CNN trained by PyTorch (scripts/make_parity_fixture.py), for
 * the parity tests with and without the Fashion-MNIST data set.
 *
 * Ownership: parity_load() and parity_model() return objects the test frees (nn_tensor_dict_free,
 * io_metadata_free, nn_module_free); parity_get() borrows from its dict. Failures are Criterion
 * assertions: a missing fixture or key is a broken test tree, not a case to handle. */
#ifndef CTORCH_TEST_PARITY_FIXTURES_H
#define CTORCH_TEST_PARITY_FIXTURES_H

#include <criterion/criterion.h>

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

/* The first index of the largest of row[0..n) (torch.argmax's tie rule). */
static inline int64_t argmax_row(const float *row, int n) {
    int64_t best = 0;
    for (int j = 1; j < n; j++)
        if (row[j] > row[best]) best = j;
    return best;
}

#endif /* CTORCH_TEST_PARITY_FIXTURES_H */
