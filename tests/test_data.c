/* test_data.c — the IDX reader (plain and gzip, committed fixtures, malformed files, every
 * truncation in memory), normalisation against torchvision's (PyTorch-computed fixture), the
 * mini-batch iterator, the synthetic shapes and where the data set is looked for (the data set
 * itself, which is optional: test_fashion_mnist.c). */
#define _POSIX_C_SOURCE 200809L /* setenv, mkdtemp, mkfifo */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixtures/optim_idx_fixture.h"
#include "data/data.h"

#define FIX(name) CTORCH_TEST_DIR "/fixtures/" name

Test(data, reads_idx_plain_and_gzip) {
    const char *images[] = {FIX("optim_idx_images.idx"), FIX("optim_idx_images.idx.gz")};
    const char *labels[] = {FIX("optim_idx_labels.idx"), FIX("optim_idx_labels.idx.gz")};
    for (int k = 0; k < 2; k++) {
        data_idx *im = data_idx_read(images[k]);
        cr_assert_not_null(im, "%s", torch_last_error());
        cr_assert_eq(im->ndim, 3);
        cr_assert(im->dims[0] == IDX_FIX_N && im->dims[1] == IDX_FIX_H && im->dims[2] == IDX_FIX_W);
        cr_assert_eq(im->numel, IDX_FIX_N * IDX_FIX_H * IDX_FIX_W);
        cr_assert_eq(memcmp(im->data, idx_fix_pixels, (size_t)im->numel), 0);
        data_idx *lb = data_idx_read(labels[k]);
        cr_assert_not_null(lb, "%s", torch_last_error());
        cr_assert_eq(lb->ndim, 1);
        cr_assert_eq(lb->dims[0], IDX_FIX_N);
        for (int i = 0; i < IDX_FIX_N; i++) cr_assert_eq(lb->data[i], idx_fix_labels[i]);
        data_idx_free(im);
        data_idx_free(lb);
    }
}

Test(data, normalises_as_torchvision) {
    data_dataset *ds = data_dataset_from_idx(FIX("optim_idx_images.idx.gz"), FIX("optim_idx_labels.idx"),
                                         DATA_FASHION_MNIST_MEAN, DATA_FASHION_MNIST_STD);
    cr_assert_not_null(ds, "%s", torch_last_error());
    cr_assert_eq(data_dataset_size(ds), IDX_FIX_N);
    cr_assert_eq(ds->images->ndim, 4);
    cr_assert(ds->images->shape[1] == 1 && ds->images->shape[2] == IDX_FIX_H && ds->images->shape[3] == IDX_FIX_W);
    cr_assert_eq(ds->labels->dtype, TORCH_INT64);
    const float *x = tensor_data_f32(ds->images);
    double worst = 0;
    for (int i = 0; i < IDX_FIX_N * IDX_FIX_H * IDX_FIX_W; i++) worst = fmax(worst, fabs((double)x[i] - idx_fix_normalised[i]));
    cr_assert_leq(worst, 1e-6, "max |ctorch - torchvision| = %g", worst);
    cr_log_info("data: normalisation max |ctorch - torchvision| = %g", worst);
    for (int i = 0; i < IDX_FIX_N; i++) cr_assert_eq(tensor_data_i64(ds->labels)[i], idx_fix_labels[i]);
    data_dataset_free(ds);

    cr_assert_null(data_dataset_from_idx(FIX("optim_idx_images.idx"), FIX("optim_idx_labels.idx"), 0.5f, 0.0f));
    cr_assert_not_null(strstr(torch_last_error(), "std must be positive"));
    cr_assert_null(data_dataset_from_idx(FIX("optim_idx_images.idx"), FIX("optim_idx_count_mismatch.idx"), 0, 1));
    cr_assert_eq(torch_last_status(), TORCH_ERR_FORMAT);
    cr_assert_not_null(strstr(torch_last_error(), "5 images"), "%s", torch_last_error());
    cr_assert_null(data_dataset_from_idx(FIX("optim_idx_labels.idx"), FIX("optim_idx_labels.idx"), 0, 1));
    cr_assert_not_null(strstr(torch_last_error(), "expected an images file"), "%s", torch_last_error());
}

Test(data, refuses_malformed_idx_files) {
    struct {
        const char *file, *msg;
    } cases[] = {
        {FIX("optim_idx_bad_magic.idx"), "bad IDX magic 0x00010801"},
        {FIX("optim_idx_float.idx"), "data type 0x0d is not supported"},
        {FIX("optim_idx_truncated.idx"), "truncated IDX file"},
        {FIX("optim_idx_trailing.idx"), "trailing bytes"},
        {FIX("optim_idx_huge_dims.idx"), "dimensions too large"},
        {FIX("optim_idx_five_dims.idx"), "5 dimensions"},
        {FIX("optim_idx_short_header.idx"), "truncated IDX header"},
        {FIX("optim_idx_truncated.idx.gz"), "unexpected end of file"},
        {FIX("optim_idx_corrupt.idx.gz"), "corrupt gzip data"},
        {FIX("optim_idx_gz_trailing.idx.gz"), "trailing bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        torch_clear_error();
        cr_assert_null(data_idx_read(cases[i].file), "%s accepted", cases[i].file);
        cr_assert_eq(torch_last_status(), TORCH_ERR_FORMAT, "%s: %s", cases[i].file, torch_last_error());
        cr_assert_not_null(strstr(torch_last_error(), cases[i].msg), "%s: got \"%s\"", cases[i].file, torch_last_error());
        cr_assert_not_null(strstr(torch_last_error(), cases[i].file), "the message names the file");
    }
    cr_assert_null(data_idx_read(FIX("does_not_exist.idx")));
    cr_assert_eq(torch_last_status(), TORCH_ERR_IO);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* Every proper prefix of a valid file (plain and gzip) is refused, reading only what it was given. */
Test(data, every_truncation_refused_in_memory) {
    const char *files[] = {FIX("optim_idx_images.idx"), FIX("optim_idx_images.idx.gz")};
    for (int k = 0; k < 2; k++) {
        size_t n;
        uint8_t *full = slurp(files[k], &n);
        data_idx *ok = data_idx_parse(full, n, "full");
        cr_assert_not_null(ok, "%s", torch_last_error());
        data_idx_free(ok);
        for (size_t len = 0; len < n; len++) {
            uint8_t *cut = malloc(len ? len : 1);
            memcpy(cut, full, len);
            cr_assert_null(data_idx_parse(cut, len, "cut"), "%s: prefix %zu accepted", files[k], len);
            cr_assert_eq(torch_last_status(), TORCH_ERR_FORMAT);
            free(cut);
        }
        free(full);
    }
}

/* A dataset whose label is the sample's index, to follow samples through the loader. */
static data_dataset *indexed(int64_t n) {
    tensor *x = torch_empty(TORCH_SHAPE(n, 1, 2, 2));
    tensor *y = torch_empty_dtype(TORCH_INT64, 1, &n);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < 4; j++) tensor_data_f32(x)[i * 4 + j] = (float)(i * 10 + j);
        tensor_data_i64(y)[i] = i;
    }
    data_dataset *ds = data_dataset_new(x, y);
    tensor_free(x);
    tensor_free(y);
    return ds;
}

Test(data, loader_batches_shuffles_and_keeps_the_last_partial_batch) {
    data_dataset *ds = indexed(10);
    torch_generator g = torch_generator_new(11), copy = g;
    data_dataloader *dl = data_dataloader_new(ds, 4, true, &g);
    cr_assert_eq(data_dataloader_num_batches(dl), 3);
    tensor *expected = torch_randperm(&copy, 10); /* the loader draws exactly this permutation */
    int64_t seen[10] = {0}, pos = 0, first_epoch[10];
    const int64_t sizes[3] = {4, 4, 2};
    tensor *x, *y;
    for (int b = 0; b < 3; b++) {
        cr_assert_eq(data_dataloader_next(dl, &x, &y), TORCH_OK);
        cr_assert_not_null(x);
        cr_assert_eq(x->shape[0], sizes[b]);
        cr_assert(x->shape[1] == 1 && x->shape[2] == 2 && x->shape[3] == 2);
        cr_assert_eq(y->shape[0], sizes[b]);
        for (int64_t i = 0; i < sizes[b]; i++) {
            int64_t id = tensor_data_i64(y)[i];
            cr_assert_eq(id, tensor_data_i64(expected)[pos]);
            cr_assert_eq(tensor_data_f32(x)[i * 4 + 3], (float)(id * 10 + 3), "image travels with its label");
            seen[id]++;
            first_epoch[pos++] = id;
        }
        tensor_free(x);
        tensor_free(y);
    }
    cr_assert_eq(data_dataloader_next(dl, &x, &y), TORCH_OK);
    cr_assert_null(x, "end of epoch");
    cr_assert_null(y);
    for (int i = 0; i < 10; i++) cr_assert_eq(seen[i], 1, "each sample once per epoch");
    /* the next epoch draws a new order */
    bool differs = false;
    for (pos = 0; data_dataloader_next(dl, &x, &y) == TORCH_OK && x;) {
        for (int64_t i = 0; i < y->numel; i++) differs |= tensor_data_i64(y)[i] != first_epoch[pos++];
        tensor_free(x);
        tensor_free(y);
    }
    cr_assert_eq(pos, 10);
    cr_assert(differs);
    data_dataloader_free(dl);
    tensor_free(expected);

    /* without shuffling: in order; a batch larger than the set gives one batch */
    dl = data_dataloader_new(ds, 64, false, NULL);
    cr_assert_eq(data_dataloader_next(dl, &x, &y), TORCH_OK);
    cr_assert_eq(y->numel, 10);
    for (int64_t i = 0; i < 10; i++) cr_assert_eq(tensor_data_i64(y)[i], i);
    tensor_free(x);
    tensor_free(y);
    data_dataloader_free(dl);

    cr_assert_null(data_dataloader_new(ds, 0, false, NULL));
    cr_assert_not_null(strstr(torch_last_error(), "batch_size should be a positive integer value, but got batch_size=0"));

    /* a subset shares storage and keeps the loader working on it */
    data_dataset *sub = data_dataset_subset(ds, 7, 3);
    cr_assert_not_null(sub);
    cr_assert_eq(data_dataset_size(sub), 3);
    cr_assert_eq(tensor_data_i64(sub->labels)[0], 7);
    cr_assert_eq(tensor_data_f32(sub->images)[0], 70.0f);
    cr_assert_null(data_dataset_subset(ds, 8, 3));
    cr_assert_str_eq(torch_last_error(), "data_dataset_subset: 3 examples from 8 do not fit in a data set of 10");
    cr_assert_null(data_dataset_subset(ds, 1, INT64_MAX)); /* the message once computed start + count */
    cr_assert_not_null(strstr(torch_last_error(), "9223372036854775807 examples from 1 do not fit"));
    data_dataloader *huge = data_dataloader_new(ds, INT64_MAX, false, NULL);
    cr_assert_not_null(huge, "%s", torch_last_error());
    cr_assert_eq(data_dataloader_num_batches(huge), 1, "n + batch_size - 1 overflowed");
    data_dataloader_free(huge);
    dl = data_dataloader_new(sub, 2, false, NULL);
    data_dataset_free(sub); /* the loader keeps its own references */
    cr_assert_eq(data_dataloader_next(dl, &x, &y), TORCH_OK);
    cr_assert_eq(tensor_data_i64(y)[1], 8);
    tensor_free(x);
    tensor_free(y);
    data_dataloader_free(dl);
    data_dataset_free(ds);
}

/* One epoch of a distributed loader's labels (indexed() labels each sample with its index). */
static int64_t epoch_ids(data_dataloader *dl, int64_t *ids) {
    int64_t count = 0;
    tensor *x, *y;
    while (data_dataloader_next(dl, &x, &y) == TORCH_OK && x) {
        for (int64_t i = 0; i < y->numel; i++) ids[count++] = tensor_data_i64(y)[i];
        tensor_free(x);
        tensor_free(y);
    }
    return count;
}

/* PyTorch's DistributedSampler: 10 samples over 3 processes are padded to 12 with the order's
 * first two, and process r takes positions r, r + 3, ... (hand-computed from its definition). */
Test(data, distributed_loader_shards_as_distributed_sampler) {
    data_dataset *ds = indexed(10);
    const int64_t in_order[3][4] = {{0, 3, 6, 9}, {1, 4, 7, 0}, {2, 5, 8, 1}};
    int64_t ids[3][4], seen[10] = {0}, again[4];
    for (int r = 0; r < 3; r++) {
        data_dataloader *plain = data_dataloader_new_distributed(ds, 3, (data_distributed_sampler){3, r, false, 0});
        cr_assert_not_null(plain, "%s", torch_last_error());
        cr_expect_eq(data_dataloader_num_batches(plain), 2);
        cr_assert_eq(epoch_ids(plain, ids[r]), 4);
        for (int i = 0; i < 4; i++) cr_expect_eq(ids[r][i], in_order[r][i], "rank %d position %d", r, i);
        data_dataloader_free(plain);

        /* shuffled: every process draws the same order (seed + epoch) and takes its share */
        data_dataloader *dl = data_dataloader_new_distributed(ds, 3, (data_distributed_sampler){3, r, true, 7});
        cr_assert_eq(epoch_ids(dl, ids[r]), 4);
        for (int i = 0; i < 4; i++) seen[ids[r][i]]++;
        cr_assert_eq(epoch_ids(dl, again), 4); /* epoch 1: another order */
        cr_expect(memcmp(again, ids[r], sizeof again), "epoch 1 repeated epoch 0's order");
        cr_assert_eq(data_dataloader_set_epoch(dl, 0), TORCH_OK);
        cr_assert_eq(epoch_ids(dl, again), 4);
        cr_expect(!memcmp(again, ids[r], sizeof again), "set_epoch(0) did not give epoch 0's order back");
        data_dataloader_free(dl);
    }
    torch_generator g = torch_generator_new(7);
    tensor *perm = torch_randperm(&g, 10);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 4; i++)
            cr_expect_eq(ids[r][i], tensor_data_i64(perm)[(r + 3 * i) % 10], "rank %d position %d", r, i);
    for (int i = 0; i < 10; i++) cr_expect_eq(seen[i], 1 + (i == tensor_data_i64(perm)[0] || i == tensor_data_i64(perm)[1]));
    tensor_free(perm);

    cr_expect_null(data_dataloader_new_distributed(ds, 3, (data_distributed_sampler){2, 2, true, 0}));
    cr_expect(strstr(torch_last_error(), "Invalid rank 2, rank should be in the interval [0, 1]"), "%s",
              torch_last_error());
    data_dataloader *plain = data_dataloader_new(ds, 3, false, NULL);
    cr_expect_eq(data_dataloader_set_epoch(plain, 1), TORCH_ERR_INVALID_ARGUMENT);
    data_dataloader_free(plain);
    data_dataset_free(ds);
}

Test(data, dataset_new_checks_shapes) {
    tensor *x = torch_zeros(TORCH_SHAPE(3, 1, 2, 2));
    tensor *y = torch_zeros(TORCH_SHAPE(3));
    cr_assert_null(data_dataset_new(x, y));
    cr_assert_eq(torch_last_status(), TORCH_ERR_SHAPE);
    cr_assert_not_null(strstr(torch_last_error(), "expected int64 labels [3] (got float32 [3])"), "%s",
                       torch_last_error());
    tensor *x3 = torch_zeros(TORCH_SHAPE(3, 2, 2));
    tensor *y64 = torch_empty_dtype(TORCH_INT64, 1, (int64_t[]){3});
    cr_assert_null(data_dataset_new(x3, y64));
    cr_assert_not_null(strstr(torch_last_error(), "(N, C, H, W)"));
    tensor_free(x);
    tensor_free(y);
    tensor_free(x3);
    tensor_free(y64);
}

Test(data, synthetic_shapes_are_deterministic_and_well_formed) {
    torch_generator g1 = torch_generator_new(5), g2 = torch_generator_new(5), g3 = torch_generator_new(6);
    data_dataset *a = data_synthetic_shapes(40, &g1, DATA_FASHION_MNIST_MEAN, DATA_FASHION_MNIST_STD);
    data_dataset *b = data_synthetic_shapes(40, &g2, DATA_FASHION_MNIST_MEAN, DATA_FASHION_MNIST_STD);
    data_dataset *c = data_synthetic_shapes(40, &g3, DATA_FASHION_MNIST_MEAN, DATA_FASHION_MNIST_STD);
    cr_assert_not_null(a);
    cr_assert(a->images->shape[0] == 40 && a->images->shape[1] == 1 && a->images->shape[2] == 28 &&
              a->images->shape[3] == 28);
    size_t bytes = 40 * 28 * 28 * sizeof(float);
    cr_assert_eq(memcmp(tensor_data_f32(a->images), tensor_data_f32(b->images), bytes), 0, "same seed, same set");
    cr_assert_neq(memcmp(tensor_data_f32(a->images), tensor_data_f32(c->images), bytes), 0);
    cr_assert_eq(memcmp(&g1, &g2, sizeof g1), 0);

    const float *x = tensor_data_f32(a->images);
    double class_mass[DATA_SYNTHETIC_CLASSES] = {0};
    for (int64_t i = 0; i < 40; i++) {
        cr_assert_eq(tensor_data_i64(a->labels)[i], i % 10);
        double ink = 0;
        for (int p = 0; p < 784; p++) {
            /* undo the normalisation: an 8-bit pixel */
            double v = x[i * 784 + p] * (double)DATA_FASHION_MNIST_STD + DATA_FASHION_MNIST_MEAN;
            cr_assert(v > -1e-5 && v < 1 + 1e-5, "pixel %g out of [0, 1]", v);
            cr_assert_lt(fabs(v * 255 - floor(v * 255 + 0.5)), 1e-3, "pixel %g not on the 8-bit grid", v);
            ink += v;
        }
        cr_assert_gt(ink, 10, "image %lld has a visible shape", (long long)i);
        class_mass[i % 10] += ink / 4;
    }
    /* a filled square carries more ink than a bar */
    cr_assert_gt(class_mass[4], 2 * class_mass[0]);
    cr_assert_str_eq(data_synthetic_class_name(9), "triangle");
    cr_assert_str_eq(data_synthetic_class_name(10), "?");
    cr_assert_null(data_synthetic_shapes(-1, NULL, 0, 1));
    data_dataset_free(a);
    data_dataset_free(b);
    data_dataset_free(c);
}

/* The folder comes from the argument, then $CTORCH_DATA, then Debian's; a missing data set is an
 * I/O error naming the file it looked for. (The data set itself: test_fashion_mnist.c.) */
Test(data, data_dir_argument_env_and_default) {
    cr_assert_str_eq(data_dir("/explicit"), "/explicit");
    setenv(DATA_ENV, "/nonexistent-data-dir", 1);
    cr_assert_str_eq(data_dir(NULL), "/nonexistent-data-dir");
    cr_assert_null(data_fashion_mnist(NULL, false));
    cr_assert_eq(torch_last_status(), TORCH_ERR_IO);
    cr_assert_not_null(strstr(torch_last_error(), "/nonexistent-data-dir/t10k-images-idx3-ubyte"), "%s",
                       torch_last_error());
    setenv(DATA_ENV, "", 1);
    cr_assert_str_eq(data_dir(NULL), DATA_DEFAULT_DIR, "an empty variable counts as unset");
    unsetenv(DATA_ENV);
    cr_assert_str_eq(data_dir(NULL), DATA_DEFAULT_DIR);
}

/* data_idx_read takes only regular files, and so does the data-set search: a FIFO named like a
 * data-set file used to block both forever (the search opened it to test that it was there). */
Test(data, idx_reader_refuses_fifos_and_directories, .timeout = 30) {
    char dir[64], fifo[128];
    snprintf(dir, sizeof dir, "/tmp/ctorch_data_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/t10k-images-idx3-ubyte", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo: %s", strerror(errno));
    cr_assert_null(data_idx_read(fifo));
    cr_assert_eq(torch_last_status(), TORCH_ERR_IO);
    cr_assert_not_null(strstr(torch_last_error(), "expected a regular file (got a FIFO)"), "%s",
                       torch_last_error());
    cr_assert_null(data_idx_read(dir));
    cr_assert_not_null(strstr(torch_last_error(), "expected a regular file (got a directory)"), "%s",
                       torch_last_error());
    cr_assert_null(data_idx_read("/dev/zero"));
    cr_assert_not_null(strstr(torch_last_error(), "data_idx_read: /dev/zero: expected a regular file"), "%s",
                       torch_last_error());
    char labels[128];
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte", dir);
    FILE *f = fopen(labels, "wb");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_null(data_fashion_mnist(dir, false));
    cr_assert_not_null(strstr(torch_last_error(), fifo), "%s", torch_last_error());
    cr_assert_not_null(strstr(torch_last_error(), "got a FIFO"), "%s", torch_last_error());
    unlink(labels);
    unlink(fifo);
    rmdir(dir);
}

/* Whether a data set is there at all: a program falls back to synthetic data only when no file
 * of it is (train_cnn); one file, even broken, means the data set must load. */
Test(data, fashion_mnist_present_counts_any_file) {
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/ctorch_data_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not(data_fashion_mnist_present(dir));
    snprintf(path, sizeof path, "%s/missing", dir);
    cr_assert_not(data_fashion_mnist_present(path));
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs("broken", f);
    fclose(f);
    cr_assert(data_fashion_mnist_present(dir));
    setenv(DATA_ENV, dir, 1);
    cr_assert(data_fashion_mnist_present(NULL), "the folder comes from data_dir");
    unsetenv(DATA_ENV);
    cr_assert_null(data_fashion_mnist(dir, false));
    cr_assert_not_null(strstr(torch_last_error(), "t10k-images-idx3-ubyte(.gz) not found"), "%s", torch_last_error());
    unlink(path);
    rmdir(dir);
}
