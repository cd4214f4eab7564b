/* data.h — image classification data: the IDX reader (MNIST, Fashion-MNIST), a data set of
 * normalised images and int64 labels, a shuffling mini-batch iterator, and a synthetic data set
 * of ten classes of shapes for machines without the real one.
 *
 * Where it sits: data includes tensor (its tensors) and io (io_read_file); nothing in tensor,
 * autograd, nn, io or optim includes it. The Fashion-MNIST constants below are the demo data
 * set's, not nn's.
 *
 * Ownership:
 *   - data_idx_read/_parse, data_dataset_*, data_fashion_mnist, data_synthetic_shapes and
 *     data_dataloader_new return owned objects (NULL on error, with the error set), released by
 *     the matching _free (NULL-safe).
 *   - A data set holds one reference to its images and labels tensors; a data loader holds its
 *     own references to them (so it may outlive the data set) and borrows the generator, which
 *     must outlive it.
 *   - data_dataloader_next returns new references the caller frees.
 *
 * IDX (the MNIST file layout): a big-endian magic 0x000008NN, where 08 is
 * the unsigned-byte type and NN the number of dimensions, then NN big-endian u32 sizes, then
 * the bytes, row-major. Labels are 0x00000801 (N), images 0x00000803 (N, H, W). Files ending in
 * .gz are gunzipped transparently (zlib); any other file is read as is. The reader refuses,
 * with TORCH_ERR_FORMAT and the file's name: a bad magic, a type other than unsigned byte, more
 * than 4 dimensions, a payload over DATA_IDX_MAX_BYTES, and a size that does not match the data
 * (truncated or with trailing bytes). It never reads past the input. data_idx_read reads
 * through io_read_file: a regular file of at most DATA_IDX_MAX_BYTES + 64 bytes.
 */
#ifndef CTORCH_DATA_H
#define CTORCH_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/tensor.h"

/* Normalisation of Fashion-MNIST pixels after x/255 (the usual constants). */
#define DATA_FASHION_MNIST_MEAN 0.2860f
#define DATA_FASHION_MNIST_STD  0.3530f
/* Where Debian's dataset-fashion-mnist package installs the files. */
#define DATA_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
/* Environment variable that overrides the default directory. */
#define DATA_ENV "CTORCH_DATA"
/* Largest IDX payload accepted (2 GiB): anything bigger is a corrupt header. */
#define DATA_IDX_MAX_BYTES ((uint64_t)1 << 31)

/* ---- IDX files ------------------------------------------------------------------------------ */

/* The raw contents of an unsigned-byte IDX file. */
typedef struct data_idx {
    int      ndim;    /* 1 to 4 */
    int64_t  dims[4];
    int64_t  numel;   /* product of dims */
    uint8_t *data;    /* numel bytes, owned */
} data_idx;

/* Parses an IDX file held in memory (not gzipped); name labels errors. */
data_idx *data_idx_parse(const uint8_t *bytes, size_t size, const char *name);
/* Reads path, gunzipping when it is gzip data. */
data_idx *data_idx_read(const char *path);
void    data_idx_free(data_idx *idx);

/* ---- data sets ------------------------------------------------------------------------------ */

typedef struct data_dataset {
    tensor *images; /* (N, C, H, W) float32, contiguous */
    tensor *labels; /* (N) int64 */
} data_dataset;

/* A data set over images (N, C, H, W) float32 and labels (N) int64 (both retained, made
 * contiguous if needed). */
data_dataset *data_dataset_new(tensor *images, tensor *labels);
void        data_dataset_free(data_dataset *ds);
/* N. */
int64_t     data_dataset_size(const data_dataset *ds);
/* The samples [start, start + count) as a data set sharing storage with ds (no copy). */
data_dataset *data_dataset_subset(const data_dataset *ds, int64_t start, int64_t count);

/* Images (N, H, W) and labels (N) IDX files -> images (N, 1, H, W) as ((x / 255) - mean) / std
 * in float32 (torchvision's ToTensor then Normalize) and labels as int64. std > 0. */
data_dataset *data_dataset_from_idx(const char *images_path, const char *labels_path, float mean, float std);

/* The data directory: dir if not NULL, else $CTORCH_DATA if set and non-empty, else
 * DATA_DEFAULT_DIR. Borrowed (dir itself, the environment's string, or a static). */
const char *data_dir(const char *dir);
/* Fashion-MNIST (or MNIST: same file names) from data_dir(dir): train-images-idx3-ubyte,
 * train-labels-idx1-ubyte, or t10k-* when !train, each with or without .gz; normalised with
 * DATA_FASHION_MNIST_MEAN/STD. TORCH_ERR_IO when the files are not there (the caller may fall
 * back to data_synthetic_shapes). */
data_dataset *data_fashion_mnist(const char *dir, bool train);
/* Whether any file of that data set (train or t10k, images or labels, plain or .gz) is in
 * data_dir(dir), or cannot be looked for (a folder that cannot be read). A program that
 * falls back to data_synthetic_shapes where there is no data set must fall back only when this is
 * false: files that are there but do not load are an error, not a missing data set. */
bool        data_fashion_mnist_present(const char *dir);

/* ---- the synthetic data set ---------------------------------------------------------------------- */

/* Number of classes of data_synthetic_shapes. */
#define DATA_SYNTHETIC_CLASSES 10

/* n images (n, 1, 28, 28) of ten classes of shapes, labels i % 10: horizontal bar, vertical
 * bar, cross, square outline, filled square, circle, diagonal, anti-diagonal, two dots,
 * triangle; each with random position, size, stroke width and brightness, plus pixel noise,
 * quantised to 8 bits like a real scan, then normalised with mean and std as above. All
 * randomness comes from gen (NULL: the default generator), so a seed gives the same set. */
data_dataset *data_synthetic_shapes(int64_t n, torch_generator *gen, float mean, float std);
/* "horizontal bar", ...; "?" out of range. Static. */
const char *data_synthetic_class_name(int64_t label);

/* ---- mini-batches ----------------------------------------------------------------------------- */

typedef struct data_dataloader data_dataloader;

/* Iterates ds in batches of batch_size (> 0); the last, partial batch is kept (PyTorch's
 * drop_last = False). With shuffle, each epoch draws a new order with torch_randperm(gen).
 * gen NULL: the default generator. */
data_dataloader *data_dataloader_new(const data_dataset *ds, int64_t batch_size, bool shuffle, torch_generator *gen);
/* One process's share of ds for data parallelism: PyTorch's DataLoader(ds, batch_size,
 * sampler=DistributedSampler(ds, num_replicas, rank, shuffle, seed, drop_last=False)). Every
 * epoch e, every process draws the same order of all N samples (torch_randperm of a generator
 * seeded seed + e; 0, 1, ... without shuffle), pads it to ceil(N / K) * K by repeating its
 * beginning, and takes every K-th sample from position rank: the K shares are disjoint (but for
 * the padding), cover ds, and have ceil(N / K) samples each, so every process runs the same
 * number of batches of the same sizes. Unlike PyTorch, the epoch advances by itself at the end of
 * each pass; data_dataloader_set_epoch sets it (PyTorch's sampler.set_epoch, for resuming).
 * Refused: num_replicas < 1, rank outside [0, num_replicas), batch_size < 1. */
typedef struct data_distributed_sampler {
    int64_t  num_replicas; /* K processes, >= 1 */
    int64_t  rank;         /* this process, in [0, K) */
    bool     shuffle;      /* a new order every epoch (PyTorch's default: true) */
    uint64_t seed;         /* the same on every process */
} data_distributed_sampler;
data_dataloader *data_dataloader_new_distributed(const data_dataset *ds, int64_t batch_size,
                                                 data_distributed_sampler sampler);
/* The epoch whose order the next pass takes (a distributed loader; >= 0). Refused mid-epoch. */
torch_status   data_dataloader_set_epoch(data_dataloader *dl, int64_t epoch);
void           data_dataloader_free(data_dataloader *dl);
/* Batches per epoch: ceil(N / batch_size), N this process's share for a distributed loader. */
int64_t        data_dataloader_num_batches(const data_dataloader *dl);
/* The next batch of the epoch: *images (B, C, H, W), *labels (B), new references. At the end of
 * the epoch returns TORCH_OK with both NULL, and the following call starts the next epoch
 * (drawing its order then):
 *     tensor *x, *y;
 *     while (data_dataloader_next(dl, &x, &y) == TORCH_OK && x) { ...; tensor_free(x); tensor_free(y); }
 */
torch_status   data_dataloader_next(data_dataloader *dl, tensor **images, tensor **labels);

#endif /* CTORCH_DATA_H */
