/* dataset.c — data sets of images and labels, Fashion-MNIST from a folder, and the shuffling
 * mini-batch iterator. */
#define _POSIX_C_SOURCE 200809L /* stat */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- data sets --------------------------------------------------------------------------------- */

data_dataset *data_dataset_new(tensor *images, tensor *labels) {
    static const char *fname = "data_dataset_new";
    char a[96], b[96];
    if (!images || !labels) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
        return NULL;
    }
    if (images->ndim != 4 || images->dtype != TORCH_FLOAT32) {
        torch_error(TORCH_ERR_SHAPE, "%s: expected float32 images (N, C, H, W) (got %s %s)", fname,
                    torch_dtype_name(images->dtype), torch_shape_str(images->ndim, images->shape, a, sizeof a));
        return NULL;
    }
    if (labels->ndim != 1 || labels->dtype != TORCH_INT64 || labels->shape[0] != images->shape[0]) {
        torch_error(TORCH_ERR_SHAPE, "%s: expected int64 labels [%lld] (got %s %s)", fname,
                    (long long)images->shape[0], torch_dtype_name(labels->dtype),
                    torch_shape_str(labels->ndim, labels->shape, b, sizeof b));
        return NULL;
    }
    data_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        return NULL;
    }
    ds->images = tensor_contiguous(images);
    ds->labels = tensor_contiguous(labels);
    if (!ds->images || !ds->labels) {
        data_dataset_free(ds);
        return NULL;
    }
    return ds;
}

void data_dataset_free(data_dataset *ds) {
    if (!ds) return;
    tensor_free(ds->images);
    tensor_free(ds->labels);
    free(ds);
}

int64_t data_dataset_size(const data_dataset *ds) { return ds && ds->labels ? ds->labels->shape[0] : 0; }

data_dataset *data_dataset_subset(const data_dataset *ds, int64_t start, int64_t count) {
    int64_t n = data_dataset_size(ds);
    if (!ds || start < 0 || count < 0 || start > n || count > n - start) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "data_dataset_subset: %lld examples from %lld do not fit in a data set of %lld", (long long)count,
                    (long long)start, (long long)n);
        return NULL;
    }
    const tensor *im = ds->images;
    int64_t shape[4] = {count, im->shape[1], im->shape[2], im->shape[3]};
    int64_t row = im->shape[1] * im->shape[2] * im->shape[3];
    /* A zero-sized view may start anywhere; keep its offset inside the storage. */
    tensor *x = tensor_as_strided(im, 4, shape, im->stride, count ? im->offset + start * row : im->offset);
    tensor *y = tensor_as_strided(ds->labels, 1, &count, ds->labels->stride,
                                  count ? ds->labels->offset + start : ds->labels->offset);
    data_dataset *sub = x && y ? data_dataset_new(x, y) : NULL;
    tensor_free(x);
    tensor_free(y);
    return sub;
}

data_dataset *data_dataset_from_idx(const char *images_path, const char *labels_path, float mean, float std) {
    static const char *fname = "data_dataset_from_idx";
    if (!(std > 0) || !isfinite(std) || !isfinite(mean)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: std must be positive and mean finite (got mean %g, std %g)",
                    fname, mean, std);
        return NULL;
    }
    data_idx *im = data_idx_read(images_path);
    if (!im) return NULL;
    data_idx *lb = data_idx_read(labels_path);
    if (!lb) {
        data_idx_free(im);
        return NULL;
    }
    data_dataset *ds = NULL;
    tensor *x = NULL, *y = NULL;
    if (im->ndim != 3) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: expected an images file (N, H, W) (got %d dimensions)", fname,
                    images_path, im->ndim);
    } else if (lb->ndim != 1) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: expected a labels file (N) (got %d dimensions)", fname, labels_path,
                    lb->ndim);
    } else if (lb->dims[0] != im->dims[0]) {
        torch_error(TORCH_ERR_FORMAT, "%s: %lld images in %s but %lld labels in %s", fname, (long long)im->dims[0],
                    images_path, (long long)lb->dims[0], labels_path);
    } else {
        int64_t n = im->dims[0];
        x = torch_empty(TORCH_SHAPE(n, 1, im->dims[1], im->dims[2]));
        y = torch_empty_dtype(TORCH_INT64, 1, &n);
        if (x && y) {
            float *px = tensor_data_f32(x);
            int64_t *py = tensor_data_i64(y);
            /* as torchvision: x.float().div(255), then sub_(mean).div_(std), all in float32 */
            for (int64_t i = 0; i < im->numel; i++) px[i] = ((float)im->data[i] / 255.0f - mean) / std;
            for (int64_t i = 0; i < n; i++) py[i] = lb->data[i];
            ds = data_dataset_new(x, y);
        }
    }
    tensor_free(x);
    tensor_free(y);
    data_idx_free(im);
    data_idx_free(lb);
    return ds;
}

const char *data_dir(const char *dir) {
    if (dir) return dir;
    const char *env = getenv(DATA_ENV);
    return env && *env ? env : DATA_DEFAULT_DIR;
}

/* dir/base.gz, else dir/base; NULL (error set) when neither is there. Looked up with stat, not
 * opened: a FIFO of that name must not block the search (data_idx_read then refuses it). */
static char *find_file(const char *dir, const char *base) {
    size_t n = strlen(dir) + strlen(base) + 8;
    char *path = malloc(n);
    if (!path) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "data_fashion_mnist: out of memory");
        return NULL;
    }
    const char *exts[] = {".gz", ""};
    for (int i = 0; i < 2; i++) {
        snprintf(path, n, "%s/%s%s", dir, base, exts[i]);
        struct stat st;
        if (stat(path, &st) == 0) return path;
        if (errno != ENOENT && errno != ENOTDIR) {
            torch_error(TORCH_ERR_IO, "data_fashion_mnist: cannot access %s: %s", path, strerror(errno));
            free(path);
            return NULL;
        }
    }
    torch_error(TORCH_ERR_IO, "data_fashion_mnist: %s/%s(.gz) not found", dir, base);
    free(path);
    return NULL;
}

static const char *const fashion_mnist_files[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

bool data_fashion_mnist_present(const char *dir) {
    const char *d = data_dir(dir);
    char path[4096];
    for (int i = 0; i < 4; i++)
        for (int gz = 0; gz < 2; gz++) {
            struct stat st;
            snprintf(path, sizeof path, "%s/%s%s", d, fashion_mnist_files[i], gz ? ".gz" : "");
            if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) return true;
        }
    return false;
}

data_dataset *data_fashion_mnist(const char *dir, bool train) {
    const char *d = data_dir(dir);
    char *im = find_file(d, fashion_mnist_files[train ? 0 : 2]);
    char *lb = im ? find_file(d, fashion_mnist_files[train ? 1 : 3]) : NULL;
    data_dataset *ds = im && lb ? data_dataset_from_idx(im, lb, DATA_FASHION_MNIST_MEAN, DATA_FASHION_MNIST_STD) : NULL;
    free(im);
    free(lb);
    return ds;
}

/* ---- the data loader ---------------------------------------------------------------------------- */

struct data_dataloader {
    tensor          *images; /* owned reference, (N, C, H, W) contiguous */
    tensor          *labels; /* owned reference, (N) */
    int64_t          batch_size;
    bool             shuffle;
    torch_generator *gen;    /* borrowed */
    tensor          *order;  /* int64 (N, or the share): this epoch's order, NULL between epochs */
    int64_t          pos;
    /* data_dataloader_new_distributed's sampler; replicas 0 for a plain loader */
    int64_t          replicas, rank, epoch;
    uint64_t         seed;
};

data_dataloader *data_dataloader_new(const data_dataset *ds, int64_t batch_size, bool shuffle, torch_generator *gen) {
    if (!ds || !ds->images || !ds->labels) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "data_dataloader_new: data set is NULL");
        return NULL;
    }
    if (batch_size <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "data_dataloader_new: batch_size should be a positive integer value, but got batch_size=%lld",
                    (long long)batch_size);
        return NULL;
    }
    data_dataloader *dl = calloc(1, sizeof *dl);
    if (!dl) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "data_dataloader_new: out of memory");
        return NULL;
    }
    dl->images = tensor_retain(ds->images);
    dl->labels = tensor_retain(ds->labels);
    dl->batch_size = batch_size;
    dl->shuffle = shuffle;
    dl->gen = gen ? gen : torch_default_generator();
    return dl;
}

void data_dataloader_free(data_dataloader *dl) {
    if (!dl) return;
    tensor_free(dl->images);
    tensor_free(dl->labels);
    tensor_free(dl->order);
    free(dl);
}

data_dataloader *data_dataloader_new_distributed(const data_dataset *ds, int64_t batch_size,
                                                 data_distributed_sampler s) {
    if (s.num_replicas < 1 || s.rank < 0 || s.rank >= s.num_replicas) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "data_dataloader_new_distributed: Invalid rank %lld, rank should be in "
                    "the interval [0, %lld] (num_replicas %lld)", (long long)s.rank, (long long)s.num_replicas - 1,
                    (long long)s.num_replicas);
        return NULL;
    }
    data_dataloader *dl = data_dataloader_new(ds, batch_size, s.shuffle, NULL);
    if (!dl) return NULL;
    dl->replicas = s.num_replicas, dl->rank = s.rank, dl->seed = s.seed;
    return dl;
}

torch_status data_dataloader_set_epoch(data_dataloader *dl, int64_t epoch) {
    static const char *fname = "data_dataloader_set_epoch";
    if (!dl || !dl->replicas)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected a loader from data_dataloader_new_distributed "
                           "(got %s)", fname, dl ? "a plain loader" : "NULL");
    if (epoch < 0) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: epoch must be >= 0 (got %lld)", fname,
                                      (long long)epoch);
    if (dl->order) return torch_error(TORCH_ERR_INVALID_STATE, "%s: the loader is in the middle of an epoch", fname);
    dl->epoch = epoch;
    return TORCH_OK;
}

/* Samples per epoch: N, or this process's share ceil(N / K). */
static int64_t epoch_length(const data_dataloader *dl) {
    const int64_t n = dl->labels->shape[0];
    return dl->replicas ? (n == 0 ? 0 : (n - 1) / dl->replicas + 1) : n;
}

/* This epoch's order of a distributed loader: the permutation of all N (seed + epoch), padded to
 * K * share by repeating its beginning, positions rank, rank + K, ... */
static tensor *distributed_order(const data_dataloader *dl) {
    const int64_t n = dl->labels->shape[0], share = epoch_length(dl);
    torch_generator g = torch_generator_new(dl->seed + (uint64_t)dl->epoch);
    tensor *perm = dl->shuffle ? torch_randperm(&g, n) : NULL;
    tensor *order = (perm || !dl->shuffle) ? torch_empty_dtype(TORCH_INT64, 1, &share) : NULL;
    for (int64_t i = 0; order && i < share; i++) {
        const int64_t at = (dl->rank + i * dl->replicas) % n; /* past N: the padding, from the beginning */
        tensor_data_i64(order)[i] = perm ? tensor_data_i64(perm)[at] : at;
    }
    tensor_free(perm);
    return order;
}

int64_t data_dataloader_num_batches(const data_dataloader *dl) {
    if (!dl) return 0;
    const int64_t n = epoch_length(dl);
    return n ? (n - 1) / dl->batch_size + 1 : 0; /* ceil, without n + batch_size overflowing */
}

torch_status data_dataloader_next(data_dataloader *dl, tensor **images, tensor **labels) {
    if (!dl || !images || !labels) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "data_dataloader_next: input is NULL");
    *images = *labels = NULL;
    int64_t n = epoch_length(dl);
    if (!dl->order) {
        dl->order = dl->replicas ? distributed_order(dl)
                    : dl->shuffle ? torch_randperm(dl->gen, n) : torch_empty_dtype(TORCH_INT64, 1, &n);
        if (!dl->order) return torch_last_status();
        if (!dl->shuffle && !dl->replicas)
            for (int64_t i = 0; i < n; i++) tensor_data_i64(dl->order)[i] = i;
        dl->pos = 0;
    }
    if (dl->pos >= n) { /* end of the epoch; the next call starts another */
        tensor_free(dl->order);
        dl->order = NULL;
        if (dl->replicas) dl->epoch++;
        return TORCH_OK;
    }
    int64_t b = n - dl->pos < dl->batch_size ? n - dl->pos : dl->batch_size;
    const int64_t *shape = dl->images->shape;
    int64_t row = shape[1] * shape[2] * shape[3];
    tensor *x = torch_empty(TORCH_SHAPE(b, shape[1], shape[2], shape[3]));
    tensor *y = torch_empty_dtype(TORCH_INT64, 1, &b);
    if (!x || !y) {
        tensor_free(x);
        tensor_free(y);
        return torch_last_status();
    }
    const float *src = tensor_data_f32(dl->images);
    const int64_t *lab = tensor_data_i64(dl->labels), *order = tensor_data_i64(dl->order) + dl->pos;
    float *dx = tensor_data_f32(x);
    int64_t *dy = tensor_data_i64(y);
    for (int64_t i = 0; i < b; i++) {
        memcpy(dx + i * row, src + order[i] * row, (size_t)row * sizeof(float));
        dy[i] = lab[order[i]];
    }
    dl->pos += b;
    *images = x;
    *labels = y;
    return TORCH_OK;
}
