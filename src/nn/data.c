/* data.c — IDX files (plain or gzip, decoded in memory with zlib), data sets, the mini-batch
 * iterator and the synthetic shapes. */
#define _POSIX_C_SOURCE 200809L /* stat */
#include "data.h"
#include "safetensors.h" /* nn_read_file */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

/* ---- IDX --------------------------------------------------------------------------------------- */

/* Validates the header at bytes[0..size) (size may be short) and returns the header length and
 * payload size. Returns 0 with the error set on a bad header, -1 when more bytes are needed
 * to decide (only from the streaming path), 1 when valid. */
static int idx_header(const char *fname, const char *name, const uint8_t *b, size_t size, bool partial, int *ndim,
                      int64_t *dims, size_t *header_len, uint64_t *payload) {
    if (size < 4) {
        if (partial) return -1;
        torch_error(TORCH_ERR_FORMAT, "%s: %s: file too short for an IDX header (%zu bytes)", fname, name, size);
        return 0;
    }
    uint32_t magic = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    if (b[0] != 0 || b[1] != 0) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: bad IDX magic 0x%08x (expected 0x00000801 or 0x00000803)", fname, name,
                    magic);
        return 0;
    }
    if (b[2] != 0x08) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: IDX data type 0x%02x is not supported (only 0x08, unsigned byte)", fname,
                    name, b[2]);
        return 0;
    }
    int nd = b[3];
    if (nd < 1 || nd > 4) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: IDX file with %d dimensions (expected 1 to 4)", fname, name, nd);
        return 0;
    }
    size_t hlen = 4 + 4 * (size_t)nd;
    if (size < hlen) {
        if (partial) return -1;
        torch_error(TORCH_ERR_FORMAT, "%s: %s: truncated IDX header (%zu of %zu bytes)", fname, name, size, hlen);
        return 0;
    }
    uint64_t total = 1;
    for (int i = 0; i < nd; i++) {
        const uint8_t *p = b + 4 + 4 * i;
        uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        dims[i] = v;
        /* each factor is < 2^32 and total stays <= 2^31 before multiplying: no overflow */
        total *= v;
        if (total > NN_IDX_MAX_BYTES) {
            torch_error(TORCH_ERR_FORMAT, "%s: %s: IDX dimensions too large (more than %llu bytes of data)", fname,
                        name, (unsigned long long)NN_IDX_MAX_BYTES);
            return 0;
        }
    }
    *ndim = nd;
    *header_len = hlen;
    *payload = total;
    return 1;
}

static nn_idx *idx_from_plain(const char *fname, const uint8_t *bytes, size_t size, const char *name) {
    int nd;
    int64_t dims[4] = {0};
    size_t hlen;
    uint64_t payload;
    if (idx_header(fname, name, bytes, size, false, &nd, dims, &hlen, &payload) != 1) return NULL;
    if (size - hlen != payload) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: %s: the header announces %llu bytes of data, the file has %zu", fname,
                    name, size - hlen < payload ? "truncated IDX file" : "trailing bytes in IDX file",
                    (unsigned long long)payload, size - hlen);
        return NULL;
    }
    nn_idx *idx = calloc(1, sizeof *idx);
    uint8_t *data = malloc(payload ? (size_t)payload : 1);
    if (!idx || !data) {
        free(idx);
        free(data);
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fname, name);
        return NULL;
    }
    memcpy(data, bytes + hlen, (size_t)payload);
    idx->ndim = nd;
    for (int i = 0; i < 4; i++) idx->dims[i] = i < nd ? dims[i] : 0;
    idx->numel = (int64_t)payload;
    idx->data = data;
    return idx;
}

/* Gunzips a whole gzip stream; stops as soon as the output is longer than its IDX header says
 * it should be, so a bomb costs at most what the header announces. */
static nn_idx *idx_from_gzip(const char *fname, const uint8_t *bytes, size_t size, const char *name) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: %s: zlib initialisation failed", fname, name);
        return NULL;
    }
    size_t cap = 64 * 1024, len = 0, limit = 4 + 4 * 4; /* limit: the header, until it is known */
    uint8_t *out = malloc(cap);
    nn_idx *result = NULL;
    bool known = false, ok = out != NULL;
    if (!ok) torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fname, name);
    size_t in_left = size;
    const uint8_t *in = bytes;
    int rc = Z_OK;
    while (ok && rc != Z_STREAM_END) {
        if (len == cap) {
            size_t ncap = cap * 2;
            uint8_t *p = realloc(out, ncap);
            if (!p) {
                torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fname, name);
                ok = false;
                break;
            }
            out = p;
            cap = ncap;
        }
        if (zs.avail_in == 0 && in_left > 0) {
            uInt chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            zs.next_in = (Bytef *)(uintptr_t)in;
            zs.avail_in = chunk;
            in += chunk;
            in_left -= chunk;
        }
        size_t room = cap - len;
        zs.next_out = out + len;
        zs.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
        uInt before = zs.avail_out;
        rc = inflate(&zs, Z_NO_FLUSH);
        len += before - zs.avail_out;
        if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && (zs.avail_in > 0 || in_left > 0))) {
            torch_error(TORCH_ERR_FORMAT, "%s: %s: corrupt gzip data (%s)", fname, name,
                        rc == Z_BUF_ERROR ? "unexpected end of file" : zs.msg ? zs.msg : "inflate failed");
            ok = false;
            break;
        }
        if (!known) {
            int nd;
            int64_t dims[4];
            size_t hlen;
            uint64_t payload;
            int h = idx_header(fname, name, out, len, rc != Z_STREAM_END, &nd, dims, &hlen, &payload);
            if (h == 0) {
                ok = false;
                break;
            }
            if (h == 1) {
                known = true;
                limit = hlen + (size_t)payload;
            }
        }
        if (known && len > limit) {
            torch_error(TORCH_ERR_FORMAT, "%s: %s: trailing bytes in IDX file (more data than the header announces)",
                        fname, name);
            ok = false;
        }
    }
    if (ok && (zs.avail_in > 0 || in_left > 0)) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: trailing data after the gzip stream", fname, name);
        ok = false;
    }
    inflateEnd(&zs);
    if (ok) result = idx_from_plain(fname, out, len, name);
    free(out);
    return result;
}

static nn_idx *idx_parse(const char *fname, const uint8_t *bytes, size_t size, const char *name) {
    if (!name) name = "<memory>";
    if (!bytes && size > 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: bytes is NULL", fname);
        return NULL;
    }
    if (size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) return idx_from_gzip(fname, bytes, size, name);
    return idx_from_plain(fname, bytes, size, name);
}

nn_idx *nn_idx_parse(const uint8_t *bytes, size_t size, const char *name) {
    return idx_parse("nn_idx_parse", bytes, size, name);
}

nn_idx *nn_idx_read(const char *path) {
    static const char *fname = "nn_idx_read";
    if (!path) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: path is NULL", fname);
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    /* the header (at most 20 bytes) and gzip's framing on top of the largest payload */
    if (nn_read_file(fname, path, NN_IDX_MAX_BYTES + 64, &buf, &n) != TORCH_OK) return NULL;
    nn_idx *idx = idx_parse(fname, buf, n, path);
    free(buf);
    return idx;
}

void nn_idx_free(nn_idx *idx) {
    if (!idx) return;
    free(idx->data);
    free(idx);
}

/* ---- data sets --------------------------------------------------------------------------------- */

nn_dataset *nn_dataset_new(tensor *images, tensor *labels) {
    static const char *fname = "nn_dataset_new";
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
    nn_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        return NULL;
    }
    ds->images = tensor_contiguous(images);
    ds->labels = tensor_contiguous(labels);
    if (!ds->images || !ds->labels) {
        nn_dataset_free(ds);
        return NULL;
    }
    return ds;
}

void nn_dataset_free(nn_dataset *ds) {
    if (!ds) return;
    tensor_free(ds->images);
    tensor_free(ds->labels);
    free(ds);
}

int64_t nn_dataset_size(const nn_dataset *ds) { return ds && ds->labels ? ds->labels->shape[0] : 0; }

nn_dataset *nn_dataset_subset(const nn_dataset *ds, int64_t start, int64_t count) {
    int64_t n = nn_dataset_size(ds);
    if (!ds || start < 0 || count < 0 || start > n || count > n - start) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "nn_dataset_subset: %lld examples from %lld do not fit in a data set of %lld", (long long)count,
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
    nn_dataset *sub = x && y ? nn_dataset_new(x, y) : NULL;
    tensor_free(x);
    tensor_free(y);
    return sub;
}

nn_dataset *nn_dataset_from_idx(const char *images_path, const char *labels_path, float mean, float std) {
    static const char *fname = "nn_dataset_from_idx";
    if (!(std > 0) || !isfinite(std) || !isfinite(mean)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: std must be positive and mean finite (got mean %g, std %g)",
                    fname, mean, std);
        return NULL;
    }
    nn_idx *im = nn_idx_read(images_path);
    if (!im) return NULL;
    nn_idx *lb = nn_idx_read(labels_path);
    if (!lb) {
        nn_idx_free(im);
        return NULL;
    }
    nn_dataset *ds = NULL;
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
            ds = nn_dataset_new(x, y);
        }
    }
    tensor_free(x);
    tensor_free(y);
    nn_idx_free(im);
    nn_idx_free(lb);
    return ds;
}

const char *nn_data_dir(const char *dir) {
    if (dir) return dir;
    const char *env = getenv(NN_DATA_ENV);
    return env && *env ? env : NN_DATA_DEFAULT_DIR;
}

/* dir/base.gz, else dir/base; NULL (error set) when neither is there. Looked up with stat, not
 * opened: a FIFO of that name must not block the search (nn_idx_read then refuses it). */
static char *find_file(const char *dir, const char *base) {
    size_t n = strlen(dir) + strlen(base) + 8;
    char *path = malloc(n);
    if (!path) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_fashion_mnist: out of memory");
        return NULL;
    }
    const char *exts[] = {".gz", ""};
    for (int i = 0; i < 2; i++) {
        snprintf(path, n, "%s/%s%s", dir, base, exts[i]);
        struct stat st;
        if (stat(path, &st) == 0) return path;
        if (errno != ENOENT && errno != ENOTDIR) {
            torch_error(TORCH_ERR_IO, "nn_fashion_mnist: cannot access %s: %s", path, strerror(errno));
            free(path);
            return NULL;
        }
    }
    torch_error(TORCH_ERR_IO, "nn_fashion_mnist: %s/%s(.gz) not found", dir, base);
    free(path);
    return NULL;
}

static const char *const fashion_mnist_files[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

bool nn_fashion_mnist_present(const char *dir) {
    const char *d = nn_data_dir(dir);
    char path[4096];
    for (int i = 0; i < 4; i++)
        for (int gz = 0; gz < 2; gz++) {
            struct stat st;
            snprintf(path, sizeof path, "%s/%s%s", d, fashion_mnist_files[i], gz ? ".gz" : "");
            if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) return true;
        }
    return false;
}

nn_dataset *nn_fashion_mnist(const char *dir, bool train) {
    const char *d = nn_data_dir(dir);
    char *im = find_file(d, fashion_mnist_files[train ? 0 : 2]);
    char *lb = im ? find_file(d, fashion_mnist_files[train ? 1 : 3]) : NULL;
    nn_dataset *ds = im && lb ? nn_dataset_from_idx(im, lb, NN_FASHION_MNIST_MEAN, NN_FASHION_MNIST_STD) : NULL;
    free(im);
    free(lb);
    return ds;
}

/* ---- synthetic shapes -------------------------------------------------------------------------- */

static const char *const shape_names[NN_SYNTHETIC_CLASSES] = {
    "horizontal bar", "vertical bar", "cross",        "square outline", "filled square",
    "circle",         "diagonal",     "anti-diagonal", "two dots",      "triangle"};

const char *nn_synthetic_class_name(int64_t label) {
    return label >= 0 && label < NN_SYNTHETIC_CLASSES ? shape_names[label] : "?";
}

/* Distance from (px, py) to the segment (ax, ay)-(bx, by). */
static double seg_dist(double px, double py, double ax, double ay, double bx, double by) {
    double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
    double t = l2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / l2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double ex = px - (ax + t * dx), ey = py - (ay + t * dy);
    return sqrt(ex * ex + ey * ey);
}

/* Distance from a pixel centre to the shape's stroke (0 inside filled shapes). */
static double shape_dist(int cls, double x, double y, double cx, double cy, double s, double r) {
    double ax = fabs(x - cx), ay = fabs(y - cy), cheb = ax > ay ? ax : ay;
    switch (cls) {
    case 0: return seg_dist(x, y, cx - s, cy, cx + s, cy);
    case 1: return seg_dist(x, y, cx, cy - s, cx, cy + s);
    case 2: return fmin(seg_dist(x, y, cx - s, cy, cx + s, cy), seg_dist(x, y, cx, cy - s, cx, cy + s));
    case 3: return fabs(cheb - s);
    case 4: return fmax(cheb - s, 0.0);
    case 5: return fabs(hypot(x - cx, y - cy) - s);
    case 6: return seg_dist(x, y, cx - s, cy - s, cx + s, cy + s);
    case 7: return seg_dist(x, y, cx - s, cy + s, cx + s, cy - s);
    case 8: return fmax(fmin(hypot(x - cx + s, y - cy), hypot(x - cx - s, y - cy)) - r, 0.0);
    default: /* 9: triangle outline */
        return fmin(fmin(seg_dist(x, y, cx, cy - s, cx - s, cy + s), seg_dist(x, y, cx - s, cy + s, cx + s, cy + s)),
                    seg_dist(x, y, cx + s, cy + s, cx, cy - s));
    }
}

nn_dataset *nn_synthetic_shapes(int64_t n, torch_generator *gen, float mean, float std) {
    static const char *fname = "nn_synthetic_shapes";
    enum { H = 28, W = 28 };
    if (n < 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: n must be non-negative (got %lld)", fname, (long long)n);
        return NULL;
    }
    if (!(std > 0) || !isfinite(std) || !isfinite(mean)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: std must be positive and mean finite (got mean %g, std %g)",
                    fname, mean, std);
        return NULL;
    }
    if (!gen) gen = torch_default_generator();
    tensor *x = torch_empty(TORCH_SHAPE(n, 1, H, W));
    tensor *y = torch_empty_dtype(TORCH_INT64, 1, &n);
    nn_dataset *ds = NULL;
    if (x && y) {
        float *px = tensor_data_f32(x);
        int64_t *py = tensor_data_i64(y);
        for (int64_t i = 0; i < n; i++) {
            int cls = (int)(i % NN_SYNTHETIC_CLASSES);
            /* A fixed number of draws per image, so image i depends only on the seed and i. */
            double cx = 13.5 + (torch_generator_uniform(gen) * 2 - 1) * 4;
            double cy = 13.5 + (torch_generator_uniform(gen) * 2 - 1) * 4;
            double s = 5 + torch_generator_uniform(gen) * 4;      /* half-size 5..9 px */
            double width = 1.5 + torch_generator_uniform(gen) * 1.5; /* stroke 1.5..3 px */
            double bright = 0.6 + torch_generator_uniform(gen) * 0.4;
            double r = 1.5 + torch_generator_uniform(gen) * 1.5;  /* dot radius */
            float *img = px + i * H * W;
            for (int p = 0; p < H * W; p += 2) {
                double z[2];
                torch_generator_normal2(gen, &z[0], &z[1]);
                for (int k = 0; k < 2; k++) {
                    int yy = (p + k) / W, xx = (p + k) % W;
                    double d = shape_dist(cls, xx, yy, cx, cy, s, r);
                    double cover = width / 2 + 0.5 - d; /* antialiased stroke */
                    cover = cover < 0 ? 0 : cover > 1 ? 1 : cover;
                    double v = bright * cover + 0.08 * z[k];
                    v = v < 0 ? 0 : v > 1 ? 1 : v;
                    float q = (float)floor(v * 255 + 0.5); /* an 8-bit pixel, as in the IDX files */
                    img[p + k] = (q / 255.0f - mean) / std;
                }
            }
            py[i] = cls;
        }
        ds = nn_dataset_new(x, y);
    }
    tensor_free(x);
    tensor_free(y);
    return ds;
}

/* ---- the data loader ---------------------------------------------------------------------------- */

struct nn_dataloader {
    tensor          *images; /* owned reference, (N, C, H, W) contiguous */
    tensor          *labels; /* owned reference, (N) */
    int64_t          batch_size;
    bool             shuffle;
    torch_generator *gen;    /* borrowed */
    tensor          *order;  /* int64 (N): this epoch's order, NULL between epochs */
    int64_t          pos;
};

nn_dataloader *nn_dataloader_new(const nn_dataset *ds, int64_t batch_size, bool shuffle, torch_generator *gen) {
    if (!ds || !ds->images || !ds->labels) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_dataloader_new: data set is NULL");
        return NULL;
    }
    if (batch_size <= 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "nn_dataloader_new: batch_size should be a positive integer value, but got batch_size=%lld",
                    (long long)batch_size);
        return NULL;
    }
    nn_dataloader *dl = calloc(1, sizeof *dl);
    if (!dl) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_dataloader_new: out of memory");
        return NULL;
    }
    dl->images = tensor_retain(ds->images);
    dl->labels = tensor_retain(ds->labels);
    dl->batch_size = batch_size;
    dl->shuffle = shuffle;
    dl->gen = gen ? gen : torch_default_generator();
    return dl;
}

void nn_dataloader_free(nn_dataloader *dl) {
    if (!dl) return;
    tensor_free(dl->images);
    tensor_free(dl->labels);
    tensor_free(dl->order);
    free(dl);
}

int64_t nn_dataloader_num_batches(const nn_dataloader *dl) {
    if (!dl) return 0;
    const int64_t n = dl->labels->shape[0];
    return n ? (n - 1) / dl->batch_size + 1 : 0; /* ceil, without n + batch_size overflowing */
}

torch_status nn_dataloader_next(nn_dataloader *dl, tensor **images, tensor **labels) {
    if (!dl || !images || !labels) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_dataloader_next: input is NULL");
    *images = *labels = NULL;
    int64_t n = dl->labels->shape[0];
    if (!dl->order) {
        dl->order = dl->shuffle ? torch_randperm(dl->gen, n) : torch_empty_dtype(TORCH_INT64, 1, &n);
        if (!dl->order) return torch_last_status();
        if (!dl->shuffle)
            for (int64_t i = 0; i < n; i++) tensor_data_i64(dl->order)[i] = i;
        dl->pos = 0;
    }
    if (dl->pos >= n) { /* end of the epoch; the next call starts another */
        tensor_free(dl->order);
        dl->order = NULL;
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
