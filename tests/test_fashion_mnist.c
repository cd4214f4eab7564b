/* test_fashion_mnist.c — the tests that need the Fashion-MNIST data set (Debian's
 * dataset-fashion-mnist, or the folder named by $CTORCH_DATA): the files as ctorch reads and
 * normalises them, ctorch's inputs against PyTorch's, and all 10,000 test-set predictions of the
 * reference CNN trained by PyTorch (fixtures from scripts/make_parity_fixture.py).
 *
 * The data set is optional. When none of its files is there, every test here is skipped with
 * cr_skip_test (the reason is printed under --verbose), Criterion reports "Tested: 0" and CTest
 * marks this program Skipped: never a pass, never a failure. When any file is there, all must
 * load and every check runs. Tests that need the data set belong here, not beside tests that do
 * not, so that CTest's verdict for each program stays exact. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/data.h"
#include "parity_fixtures.h"

/* Skips the test unless at least one of the data set's files (plain or gzip) is in the data dir. */
static void require_data_set(void) {
    const char *dir = data_dir(NULL);
    if (data_fashion_mnist_present(NULL)) return;
    cr_skip_test("Fashion-MNIST is not installed in %s (apt-get install dataset-fashion-mnist, or set %s to its "
                 "folder)",
                 dir, DATA_ENV);
}

TestSuite(fashion_mnist, .init = require_data_set);

static data_dataset *load(bool train) {
    data_dataset *ds = data_fashion_mnist(NULL, train);
    cr_assert_not_null(ds, "%s", torch_last_error());
    return ds;
}

/* Mean and population standard deviation of every element, in double. */
static void moments(const tensor *t, double *mean, double *std) {
    const float *x = tensor_data_f32(t);
    double s = 0, q = 0;
    for (int64_t i = 0; i < t->numel; i++) s += x[i];
    *mean = s / (double)t->numel;
    for (int64_t i = 0; i < t->numel; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *std = sqrt(q / (double)t->numel);
}

/* Sizes, the first labels, 1/10 of the set in each class, and the pixel moments after
 * normalisation. The raw pixel moments (over all bytes / 255, population std) were computed
 * from the installed files by `zcat | od | awk`, independently of ctorch's reader:
 *   train: mean 0.286040597, std 0.353024245;  t10k: mean 0.286849281, std 0.352444153.
 * Normalised with the constants, they must give (m - MEAN) / STD and s / STD. */
static void check_split(bool train, int64_t n, const int64_t first[3], double raw_mean, double raw_std) {
    data_dataset *ds = load(train);
    cr_assert_eq(data_dataset_size(ds), n);
    cr_assert(ds->images->ndim == 4 && ds->images->shape[1] == 1 && ds->images->shape[2] == 28 &&
              ds->images->shape[3] == 28);
    const int64_t *labels = tensor_data_i64(ds->labels);
    for (int i = 0; i < 3; i++) cr_expect_eq(labels[i], first[i], "label %d is %lld", i, (long long)labels[i]);
    int64_t counts[N_CLASSES] = {0};
    for (int64_t i = 0; i < n; i++) {
        cr_assert(labels[i] >= 0 && labels[i] < N_CLASSES, "label %lld of sample %lld", (long long)labels[i],
                  (long long)i);
        counts[labels[i]]++;
    }
    for (int k = 0; k < N_CLASSES; k++) cr_expect_eq(counts[k], n / N_CLASSES, "class %d has %lld", k, (long long)counts[k]);
    double mean, std;
    moments(ds->images, &mean, &std);
    double want_mean = (raw_mean - (double)DATA_FASHION_MNIST_MEAN) / (double)DATA_FASHION_MNIST_STD;
    double want_std = raw_std / (double)DATA_FASHION_MNIST_STD;
    cr_log_info("%s: normalised mean %.7f (want %.7f), std %.7f (want %.7f)", train ? "train" : "t10k", mean,
                want_mean, std, want_std);
    cr_expect_lt(fabs(mean - want_mean), 1e-6, "normalised mean %.9f, want %.9f", mean, want_mean);
    cr_expect_lt(fabs(std - want_std), 1e-6, "normalised std %.9f, want %.9f", std, want_std);
    data_dataset_free(ds);
}

/* The first test images are an ankle boot (9), a pullover (2) and a trouser (1); the first
 * training images an ankle boot and two T-shirts (0). */
Test(fashion_mnist, test_set) { check_split(false, 10000, (int64_t[]){9, 2, 1}, 0.286849281, 0.352444153); }

Test(fashion_mnist, train_set) { check_split(true, 60000, (int64_t[]){9, 0, 0}, 0.286040597, 0.353024245); }

/* ctorch's reader and normalisation give PyTorch's float32 inputs: the fixture's images are the
 * t10k images at test_index, read by numpy and normalised by torch ((x / 255 - mean) / std). */
Test(fashion_mnist, reader_gives_pytorchs_inputs) {
    data_dataset *ds = load(false);
    nn_tensor_dict *batch = parity_load(PARITY_BATCH, NULL);
    const tensor *want = parity_get(batch, "images");
    const int64_t *index = tensor_data_i64(parity_get(batch, "test_index"));
    const int64_t *labels = tensor_data_i64(parity_get(batch, "labels"));
    const float *img = tensor_data_f32(ds->images), *ref = tensor_data_f32(want);
    double worst = 0;
    for (int64_t i = 0; i < want->shape[0]; i++) {
        cr_expect_eq(tensor_data_i64(ds->labels)[index[i]], labels[i], "label of test image %lld", (long long)index[i]);
        for (int j = 0; j < 784; j++) worst = fmax(worst, fabs((double)img[index[i] * 784 + j] - ref[i * 784 + j]));
    }
    cr_log_info("images vs torch's normalisation: max abs diff %.3g", worst);
    cr_expect(worst <= 1e-6, "normalised pixels differ from PyTorch's by %.3g", worst);
    nn_tensor_dict_free(batch);
    data_dataset_free(ds);
}

/* Every one of the 10,000 eval-mode predictions equals PyTorch's, hence the same accuracy. */
Test(fashion_mnist, full_test_set_predictions_equal_pytorchs) {
    data_dataset *ds = load(false);
    io_metadata *md = NULL;
    nn_tensor_dict *w = parity_load(PARITY_WEIGHTS, &md), *batch = parity_load(PARITY_BATCH, NULL);
    const int64_t *want = tensor_data_i64(parity_get(batch, "test_predictions"));
    nn_module *m = parity_model();
    nn_module_eval(m);
    bool prev = torch_set_grad_enabled(false);
    int64_t n = data_dataset_size(ds), differ = 0, correct = 0, first_diff = -1;
    for (int64_t start = 0; start < n; start += 1000) {
        data_dataset *sub = data_dataset_subset(ds, start, n - start < 1000 ? n - start : 1000);
        tensor *y = nn_module_forward(m, sub->images);
        cr_assert_not_null(y, "%s", torch_last_error());
        const float *l = tensor_data_f32(y);
        for (int64_t i = 0; i < y->shape[0]; i++) {
            int64_t p = argmax_row(l + i * N_CLASSES, N_CLASSES);
            if (p != want[start + i] && differ++ == 0) first_diff = start + i;
            correct += p == tensor_data_i64(sub->labels)[i];
        }
        tensor_free(y);
        data_dataset_free(sub);
    }
    torch_set_grad_enabled(prev);
    cr_log_info("full test set: %lld/%lld correct (PyTorch %s), %lld predictions differ", (long long)correct,
                (long long)n, io_metadata_get(md, "pytorch_test_correct"), (long long)differ);
    cr_expect_eq(differ, 0, "%lld predictions differ from PyTorch's, the first at test image %lld", (long long)differ,
                 (long long)first_diff);
    cr_expect_eq(correct, atoll(io_metadata_get(md, "pytorch_test_correct")));
    nn_module_free(m);
    io_metadata_free(md);
    nn_tensor_dict_free(batch);
    nn_tensor_dict_free(w);
    data_dataset_free(ds);
}
