/* tensor.c — storage, lifetime, creation, views and copies (see tensor.h for ownership). */
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

struct torch_storage {
    void  *data;
    size_t nbytes;   /* what the tensors use */
    size_t capacity; /* what was allocated (>= nbytes, a multiple of STORAGE_ALIGN) */
    int    refcount;
    uint64_t version; /* in-place writes so far (tensor_version) */
    uint64_t id;      /* tensor_storage_id: unique for the process, never reused */
};

/* 64-byte alignment: a cache line, and a full AVX-512 vector for the kernels above. */
#define STORAGE_ALIGN 64

/* ---- the storage cache --------------------------------------------------------------------------
 * A training step frees and allocates the same large buffers every iteration. Handed back to the
 * kernel (glibc trims and unmaps large free blocks), they are page-faulted in again on every use:
 * measured at about 40% of a training step of the reference CNN. So freed blocks of 64 KiB and
 * more are kept, up to CACHE_MAX_BYTES, and reused for a request of the same or slightly smaller
 * size. Sanitizer builds skip the cache so that use-after-free stays visible to them. */

#if defined(__SANITIZE_ADDRESS__)
#define CACHE_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define CACHE_ENABLED 0
#endif
#endif
#ifndef CACHE_ENABLED
#define CACHE_ENABLED 1
#endif

#define CACHE_SLOTS     128
#define CACHE_MIN_BYTES ((size_t)64 << 10)
#define CACHE_MAX_BYTES ((size_t)1 << 30)

static struct {
    void  *data[CACHE_SLOTS];
    size_t capacity[CACHE_SLOTS];
    int    count;
    size_t bytes;
    mtx_t  lock;
} cache;
static once_flag cache_once = ONCE_FLAG_INIT;
static void cache_init(void) { mtx_init(&cache.lock, mtx_plain); }

/* A cached block of capacity in [want, want * 5/4], or NULL. */
static void *cache_take(size_t want, size_t *capacity) {
    if (!CACHE_ENABLED || want < CACHE_MIN_BYTES) return NULL;
    call_once(&cache_once, cache_init);
    void *found = NULL;
    mtx_lock(&cache.lock);
    int best = -1;
    for (int i = 0; i < cache.count; i++)
        if (cache.capacity[i] >= want && cache.capacity[i] <= want + want / 4 &&
            (best < 0 || cache.capacity[i] < cache.capacity[best]))
            best = i;
    if (best >= 0) {
        found = cache.data[best];
        *capacity = cache.capacity[best];
        cache.bytes -= cache.capacity[best];
        cache.count--;
        cache.data[best] = cache.data[cache.count];
        cache.capacity[best] = cache.capacity[cache.count];
    }
    mtx_unlock(&cache.lock);
    return found;
}

/* Keeps the block for reuse when there is room; false if the caller must free it. */
static bool cache_give(void *data, size_t capacity) {
    if (!CACHE_ENABLED || capacity < CACHE_MIN_BYTES) return false;
    call_once(&cache_once, cache_init);
    bool kept = false;
    mtx_lock(&cache.lock);
    if (cache.count < CACHE_SLOTS && cache.bytes + capacity <= CACHE_MAX_BYTES) {
        cache.data[cache.count] = data;
        cache.capacity[cache.count] = capacity;
        cache.count++;
        cache.bytes += capacity;
        kept = true;
    }
    mtx_unlock(&cache.lock);
    return kept;
}

void torch_empty_cache(void) {
    if (!CACHE_ENABLED) return;
    call_once(&cache_once, cache_init);
    mtx_lock(&cache.lock);
    for (int i = 0; i < cache.count; i++) free(cache.data[i]);
    cache.count = 0;
    cache.bytes = 0;
    mtx_unlock(&cache.lock);
}

/* Storage ids start at 1, so that 0 can mean "no tensor". */
static _Atomic uint64_t storage_ids;

static torch_storage *storage_new(size_t nbytes) {
    torch_storage *s = malloc(sizeof *s);
    if (!s) return NULL;
    size_t rounded = (nbytes + STORAGE_ALIGN - 1) / STORAGE_ALIGN * STORAGE_ALIGN;
    if (rounded == 0) rounded = STORAGE_ALIGN;
    s->data = cache_take(rounded, &s->capacity);
    if (!s->data) {
        s->data = aligned_alloc(STORAGE_ALIGN, rounded);
        s->capacity = rounded;
    }
    if (!s->data) {
        free(s);
        return NULL;
    }
    s->nbytes = nbytes;
    s->refcount = 1;
    s->version = 0;
    s->id = ++storage_ids;
    return s;
}

static void storage_release(torch_storage *s) {
    if (s && --s->refcount == 0) {
        if (!cache_give(s->data, s->capacity)) free(s->data);
        free(s);
    }
}

/* ---- grad mode, versions and the in-place check --------------------------------------------------- */

static _Thread_local bool grad_disabled; /* zero-initialised: grad mode starts on */

bool torch_set_grad_enabled(bool enabled) {
    bool previous = !grad_disabled;
    grad_disabled = !enabled;
    return previous;
}

bool torch_is_grad_enabled(void) { return !grad_disabled; }

bool torch_no_grad_enter(void) { return torch_set_grad_enabled(false); }
void torch_no_grad_exit(bool previous) { torch_set_grad_enabled(previous); }
void torch_no_grad_guard_exit_(bool *previous) { torch_set_grad_enabled(*previous); }

uint64_t tensor_version(const tensor *t) { return t->storage->version; }
void     tensor_bump_version(tensor *t) { t->storage->version++; }
uint64_t tensor_storage_id(const tensor *t) { return t->storage->id; }

torch_status torch_check_inplace(const char *fname, const tensor *t) {
    if (!t) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
    if (t->requires_grad && !grad_disabled) {
        if (!t->grad_fn)
            return torch_error(TORCH_ERR_INVALID_STATE,
                               "%s: a leaf Variable that requires grad is being used in an in-place operation "
                               "(write it under torch_set_grad_enabled(false))", fname);
        return torch_error(TORCH_ERR_INVALID_STATE,
                           "%s: an in-place operation on a tensor that requires grad is not recorded by autograd, "
                           "so its gradient would be wrong (write it under torch_set_grad_enabled(false), or "
                           "through tensor_detach())", fname);
    }
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] > 1 && t->stride[i] == 0)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                               "%s: unsupported operation: more than one element of the written-to tensor "
                               "refers to a single memory location. Please clone() the tensor before "
                               "performing the operation.",
                               fname);
    return TORCH_OK;
}

/* ---- small helpers ---------------------------------------------------------------------------- */

const char *torch_dtype_name(torch_dtype dtype) {
    static const char *const names[TORCH_DTYPE_COUNT] = {[TORCH_FLOAT32] = "float32", [TORCH_INT64] = "int64"};
    return (unsigned)dtype < TORCH_DTYPE_COUNT ? names[dtype] : "unknown";
}

size_t torch_dtype_size(torch_dtype dtype) { return dtype == TORCH_INT64 ? sizeof(int64_t) : sizeof(float); }

int64_t torch_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int64_t torch_size_mul(int64_t a, int64_t b) {
    TORCH_ASSERT(a >= 0 && b >= 0);
    return b == 0 || a <= TORCH_MAX_NUMEL / b ? a * b : -1;
}

char *torch_shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    if (len == 0) return buf;
    size_t pos = 0;
    buf[0] = '\0';
    pos += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (pos < len) snprintf(buf + pos, len - pos, "]");
    return buf;
}

torch_status torch_wrap_dim(const char *fname, int dim, int ndim, int *out) {
    int lo = ndim > 0 ? -ndim : -1, hi = ndim > 0 ? ndim - 1 : 0; /* a scalar accepts 0 and -1 */
    if (dim < lo || dim > hi)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "%s: Dimension out of range (expected to be in range of [%d, %d], but got %d)", fname, lo,
                           hi, dim);
    *out = dim < 0 ? dim + (ndim > 0 ? ndim : 1) : dim;
    return TORCH_OK;
}

torch_status torch_check_shape(const char *fname, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > TORCH_MAX_DIMS)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected 0 to %d dimensions (got %d)", fname,
                           TORCH_MAX_DIMS, ndim);
    if (ndim > 0 && !shape) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: shape is NULL", fname);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Trying to create tensor with negative dimension %lld",
                               fname, (long long)shape[i]);
    int64_t span = 1;
    for (int i = 0; i < ndim && span >= 0; i++) span = torch_size_mul(span, shape[i] > 1 ? shape[i] : 1);
    if (span < 0) {
        char buf[200];
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "%s: shape %s has too many elements (expected at most %lld, counting a size of 0 as 1)",
                           fname, torch_shape_str(ndim, shape, buf, sizeof buf), (long long)TORCH_MAX_NUMEL);
    }
    return TORCH_OK;
}

torch_status torch_check_float32(const char *fname, const char *what, const tensor *t) {
    if (!t) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fname, what);
    if (t->dtype != TORCH_FLOAT32)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: expected %s to be float32 (got %s)", fname, what,
                           torch_dtype_name(t->dtype));
    return TORCH_OK;
}

static void set_contiguous_strides(tensor *t) {
    int64_t stride = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = stride;
        stride *= t->shape[i];
    }
}

/* Serial numbers of tensor structs (tensor.id), from 1. */
static _Atomic uint64_t tensor_ids;

/* A tensor struct sharing `storage` (retained), with no autograd state. */
static tensor *tensor_wrap(torch_storage *storage, torch_dtype dtype, int ndim, const int64_t *shape,
                           const int64_t *stride, int64_t offset) {
    tensor *t = calloc(1, sizeof *t);
    if (!t) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "tensor: out of memory");
        return NULL;
    }
    t->storage = storage;
    t->id = ++tensor_ids;
    storage->refcount++;
    t->offset = offset;
    t->ndim = ndim;
    t->dtype = dtype;
    t->refcount = 1;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = torch_shape_numel(ndim, shape);
    if (stride)
        for (int i = 0; i < ndim; i++) t->stride[i] = stride[i];
    else
        set_contiguous_strides(t);
    return t;
}

/* ---- lifetime --------------------------------------------------------------------------------- */

tensor *tensor_retain(tensor *t) {
    if (t) t->refcount++;
    return t;
}

void tensor_free(tensor *t) {
    if (!t) return;
    TORCH_ASSERT(t->refcount > 0);
    if (--t->refcount > 0) return;
    tensor_free(t->grad);
    if (t->grad_fn) t->grad_fn_ops->release(t->grad_fn);
    storage_release(t->storage);
    free(t);
}

/* ---- creation --------------------------------------------------------------------------------- */

static tensor *new_tensor(const char *fname, torch_dtype dtype, int ndim, const int64_t *shape) {
    if (torch_check_shape(fname, ndim, shape) != TORCH_OK) return NULL;
    int64_t numel = torch_shape_numel(ndim, shape);
    torch_storage *s = storage_new((size_t)numel * torch_dtype_size(dtype));
    if (!s) {
        char buf[128];
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory allocating a tensor of shape %s", fname,
                    torch_shape_str(ndim, shape, buf, sizeof buf));
        return NULL;
    }
    tensor *t = tensor_wrap(s, dtype, ndim, shape, NULL, 0);
    storage_release(s); /* the tensor holds the only reference now (or none, on failure) */
    return t;
}

tensor *torch_empty(int ndim, const int64_t *shape) { return new_tensor("torch_empty", TORCH_FLOAT32, ndim, shape); }

tensor *torch_empty_dtype(torch_dtype dtype, int ndim, const int64_t *shape) {
    if ((unsigned)dtype >= TORCH_DTYPE_COUNT) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_empty: unknown dtype %d", (int)dtype);
        return NULL;
    }
    return new_tensor("torch_empty", dtype, ndim, shape);
}

static tensor *filled(const char *fname, int ndim, const int64_t *shape, float value) {
    tensor *t = new_tensor(fname, TORCH_FLOAT32, ndim, shape);
    if (!t) return NULL;
    float *p = tensor_data_f32(t);
    for (int64_t i = 0; i < t->numel; i++) p[i] = value;
    return t;
}

tensor *torch_zeros(int ndim, const int64_t *shape) { return filled("torch_zeros", ndim, shape, 0.0f); }
tensor *torch_ones(int ndim, const int64_t *shape) { return filled("torch_ones", ndim, shape, 1.0f); }
tensor *torch_full(int ndim, const int64_t *shape, float value) { return filled("torch_full", ndim, shape, value); }

static bool check_not_null(const char *fname, const void *p) {
    if (p) return true;
    torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
    return false;
}

tensor *torch_empty_like(const tensor *t) {
    if (!check_not_null("torch_empty_like", t)) return NULL;
    return new_tensor("torch_empty_like", t->dtype, t->ndim, t->shape);
}

tensor *torch_zeros_like(const tensor *t) {
    if (!check_not_null("torch_zeros_like", t)) return NULL;
    tensor *r = new_tensor("torch_zeros_like", t->dtype, t->ndim, t->shape);
    if (r) memset(r->storage->data, 0, (size_t)r->numel * torch_dtype_size(r->dtype));
    return r;
}

tensor *torch_ones_like(const tensor *t) {
    if (!check_not_null("torch_ones_like", t)) return NULL;
    tensor *r = new_tensor("torch_ones_like", t->dtype, t->ndim, t->shape);
    if (r) tensor_fill_(r, 1.0);
    return r;
}

tensor *torch_tensor(const float *data, int ndim, const int64_t *shape) {
    if (!check_not_null("torch_tensor", data)) return NULL;
    tensor *t = new_tensor("torch_tensor", TORCH_FLOAT32, ndim, shape);
    if (t) memcpy(tensor_data_f32(t), data, (size_t)t->numel * sizeof(float));
    return t;
}

tensor *torch_tensor_int64(const int64_t *data, int ndim, const int64_t *shape) {
    if (!check_not_null("torch_tensor_int64", data)) return NULL;
    tensor *t = new_tensor("torch_tensor_int64", TORCH_INT64, ndim, shape);
    if (t) memcpy(tensor_data_i64(t), data, (size_t)t->numel * sizeof(int64_t));
    return t;
}

tensor *torch_scalar(float value) { return filled("torch_scalar", 0, NULL, value); }

tensor *torch_scalar_int64(int64_t value) {
    tensor *t = new_tensor("torch_scalar_int64", TORCH_INT64, 0, NULL);
    if (t) *tensor_data_i64(t) = value;
    return t;
}

tensor *torch_arange(double start, double end, double step) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_arange: step must be nonzero and bounds finite");
        return NULL;
    }
    if ((step > 0 && start > end) || (step < 0 && start < end)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_arange: upper bound and larger bound inconsistent with step sign");
        return NULL;
    }
    double count = ceil((end - start) / step); /* inf when end - start overflows */
    if (!(count < (double)TORCH_MAX_NUMEL)) { /* (double)TORCH_MAX_NUMEL rounds up to 2^60 */
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "torch_arange: [%g, %g) with step %g has %g elements (expected at most %lld)", start, end, step,
                    count, (long long)TORCH_MAX_NUMEL);
        return NULL;
    }
    int64_t n = (int64_t)count;
    tensor *t = new_tensor("torch_arange", TORCH_FLOAT32, 1, &n);
    if (!t) return NULL;
    float *p = tensor_data_f32(t);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(start + (double)i * step);
    return t;
}

tensor *torch_rand(torch_generator *gen, int ndim, const int64_t *shape) {
    tensor *t = new_tensor("torch_rand", TORCH_FLOAT32, ndim, shape);
    if (!t) return NULL;
    if (!gen) gen = torch_default_generator();
    float *p = tensor_data_f32(t);
    /* 24 random bits: every float in [0, 1) on the 2^-24 grid, never 1.0f after rounding. */
    for (int64_t i = 0; i < t->numel; i++) p[i] = (float)(torch_generator_next(gen) >> 40) * 0x1.0p-24f;
    return t;
}

tensor *torch_randn(torch_generator *gen, int ndim, const int64_t *shape) {
    tensor *t = new_tensor("torch_randn", TORCH_FLOAT32, ndim, shape);
    if (!t) return NULL;
    if (!gen) gen = torch_default_generator();
    float *p = tensor_data_f32(t);
    for (int64_t i = 0; i < t->numel; i += 2) {
        double z0, z1;
        torch_generator_normal2(gen, &z0, &z1);
        p[i] = (float)z0;
        if (i + 1 < t->numel) p[i + 1] = (float)z1;
    }
    return t;
}

tensor *torch_randperm(torch_generator *gen, int64_t n) {
    if (n < 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_randperm: n must be non-negative, got %lld", (long long)n);
        return NULL;
    }
    tensor *t = new_tensor("torch_randperm", TORCH_INT64, 1, &n);
    if (!t) return NULL;
    if (!gen) gen = torch_default_generator();
    int64_t *p = tensor_data_i64(t);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)torch_generator_below(gen, (uint64_t)i + 1);
        int64_t tmp = p[i];
        p[i] = p[j];
        p[j] = tmp;
    }
    return t;
}

/* ---- data access ------------------------------------------------------------------------------ */

float *tensor_data_f32(const tensor *t) {
    if (!t || t->dtype != TORCH_FLOAT32) return NULL;
    return (float *)t->storage->data + t->offset;
}

int64_t *tensor_data_i64(const tensor *t) {
    if (!t || t->dtype != TORCH_INT64) return NULL;
    return (int64_t *)t->storage->data + t->offset;
}

double tensor_get(const tensor *t, const int64_t *index) {
    if (!t || (t->ndim > 0 && !index)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_get: %s is NULL", t ? "index" : "input");
        return NAN;
    }
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i]) {
            torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_get: index %lld is out of bounds for dimension %d with size %lld",
                        (long long)index[i], i, (long long)t->shape[i]);
            return NAN;
        }
        off += index[i] * t->stride[i];
    }
    if (t->dtype == TORCH_INT64) return (double)((int64_t *)t->storage->data)[off];
    return (double)((float *)t->storage->data)[off];
}

double tensor_item(const tensor *t) {
    if (!t || t->numel != 1) {
        if (!t) torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_item: input is NULL");
        else torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_item: a Tensor with %lld elements cannot be converted to Scalar",
                         (long long)t->numel);
        return NAN;
    }
    int64_t zeros[TORCH_MAX_DIMS] = {0};
    return tensor_get(t, zeros);
}

bool tensor_is_contiguous(const tensor *t) {
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expected) return false;
        expected *= t->shape[i];
    }
    return true;
}

bool tensor_is_exclusive(const tensor *t) { return t->refcount == 1 && t->storage->refcount == 1; }

bool tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

int64_t tensor_size(const tensor *t, int dim) {
    if (!t) return -1;
    if (dim < 0) dim += t->ndim;
    return dim >= 0 && dim < t->ndim ? t->shape[dim] : -1;
}

/* ---- views and copies ------------------------------------------------------------------------- */

tensor *tensor_as_strided(const tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
    if (!check_not_null("tensor_as_strided", t) || torch_check_shape("tensor_as_strided", ndim, shape) != TORCH_OK)
        return NULL;
    if (ndim > 0 && !stride) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_as_strided: stride is NULL");
        return NULL;
    }
    /* The nearest and furthest elements reached must lie inside the storage. The sums are
     * checked, since strides and offset come from the caller, and over size * stride rather than
     * (size - 1) * stride, so that the views of a view (a narrow's start * stride, an unsqueeze's
     * size * stride) cannot wrap either -- also for an empty view, which reaches nothing. */
    int64_t lo = offset, hi = offset, blo = offset, bhi = offset;
    bool empty = torch_shape_numel(ndim, shape) == 0, wraps = false;
    for (int i = 0; i < ndim; i++) {
        int64_t reach, bound;
        wraps = wraps || __builtin_mul_overflow(shape[i], stride[i], &bound) ||
                __builtin_add_overflow(bound < 0 ? blo : bhi, bound, bound < 0 ? &blo : &bhi);
        if (wraps || empty) continue;
        reach = (shape[i] - 1) * stride[i]; /* smaller than bound in magnitude */
        if (reach < 0) lo += reach; else hi += reach;
    }
    int64_t capacity = (int64_t)(t->storage->nbytes / torch_dtype_size(t->dtype));
    if (wraps || (!empty && (lo < 0 || hi >= capacity))) {
        char buf[200];
        torch_error(TORCH_ERR_INVALID_ARGUMENT,
                    "tensor_as_strided: a view of shape %s at offset %lld reaches outside its storage of %lld "
                    "elements", torch_shape_str(ndim, shape, buf, sizeof buf), (long long)offset,
                    (long long)capacity);
        return NULL;
    }
    return tensor_wrap(t->storage, t->dtype, ndim, shape, stride, offset);
}

tensor *tensor_detach(const tensor *t) {
    if (!check_not_null("tensor_detach", t)) return NULL;
    return tensor_wrap(t->storage, t->dtype, t->ndim, t->shape, t->stride, t->offset);
}

/* Copies src's elements, in row-major order of src's shape, to the contiguous dst buffer. */
static void gather(const tensor *src, void *dst) {
    size_t es = torch_dtype_size(src->dtype);
    if (tensor_is_contiguous(src)) {
        memcpy(dst, (char *)src->storage->data + (size_t)src->offset * es, (size_t)src->numel * es);
        return;
    }
    int64_t idx[TORCH_MAX_DIMS] = {0};
    int last = src->ndim - 1;
    int64_t inner = src->shape[last], istride = src->stride[last];
    const char *base = src->storage->data;
    char *out = dst;
    for (int64_t done = 0; done < src->numel; done += inner) {
        int64_t off = src->offset;
        for (int i = 0; i < last; i++) off += idx[i] * src->stride[i];
        if (es == sizeof(float)) {
            const float *p = (const float *)base + off;
            float *o = (float *)out;
            for (int64_t j = 0; j < inner; j++) o[j] = p[j * istride];
        } else {
            const int64_t *p = (const int64_t *)base + off;
            int64_t *o = (int64_t *)out;
            for (int64_t j = 0; j < inner; j++) o[j] = p[j * istride];
        }
        out += (size_t)inner * es;
        for (int i = last - 1; i >= 0; i--) { /* odometer over the outer dims */
            if (++idx[i] < src->shape[i]) break;
            idx[i] = 0;
        }
    }
}

tensor *tensor_clone(const tensor *t) {
    if (!check_not_null("tensor_clone", t)) return NULL;
    tensor *r = new_tensor("tensor_clone", t->dtype, t->ndim, t->shape);
    if (r && r->numel) gather(t, (char *)r->storage->data);
    return r;
}

tensor *tensor_contiguous(const tensor *t) {
    if (!check_not_null("tensor_contiguous", t)) return NULL;
    return tensor_is_contiguous(t) ? tensor_retain((tensor *)t) : tensor_clone(t);
}

static torch_status copy_elements(tensor *dst, const tensor *src);

torch_status tensor_copy_(tensor *dst, const tensor *src) {
    if (!src) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_copy_: src is NULL");
    torch_status st = torch_check_inplace("tensor_copy_", dst);
    if (st != TORCH_OK) return st;
    if (!tensor_same_shape(dst, src) || dst->dtype != src->dtype) {
        char a[96], b[96];
        return torch_error(TORCH_ERR_SHAPE, "tensor_copy_: expected %s %s (got %s %s)", torch_dtype_name(dst->dtype),
                           torch_shape_str(dst->ndim, dst->shape, a, sizeof a), torch_dtype_name(src->dtype),
                           torch_shape_str(src->ndim, src->shape, b, sizeof b));
    }
    st = copy_elements(dst, src);
    if (st == TORCH_OK) tensor_bump_version(dst);
    return st;
}

static torch_status copy_elements(tensor *dst, const tensor *src) {
    if (dst->numel == 0) return TORCH_OK;
    size_t es = torch_dtype_size(dst->dtype);
    if (tensor_is_contiguous(dst)) {
        /* memmove: src may alias dst (copying a tensor onto itself). */
        if (tensor_is_contiguous(src)) {
            memmove((char *)dst->storage->data + (size_t)dst->offset * es,
                    (char *)src->storage->data + (size_t)src->offset * es, (size_t)src->numel * es);
            return TORCH_OK;
        }
        tensor *tmp = tensor_clone(src); /* src may overlap dst through another view */
        if (!tmp) return torch_last_status();
        memcpy((char *)dst->storage->data + (size_t)dst->offset * es, tmp->storage->data, (size_t)src->numel * es);
        tensor_free(tmp);
        return TORCH_OK;
    }
    tensor *tmp = tensor_clone(src);
    if (!tmp) return torch_last_status();
    int64_t idx[TORCH_MAX_DIMS] = {0};
    for (int64_t k = 0; k < dst->numel; k++) {
        int64_t off = dst->offset;
        for (int i = 0; i < dst->ndim; i++) off += idx[i] * dst->stride[i];
        memcpy((char *)dst->storage->data + (size_t)off * es, (char *)tmp->storage->data + (size_t)k * es, es);
        for (int i = dst->ndim - 1; i >= 0; i--) {
            if (++idx[i] < dst->shape[i]) break;
            idx[i] = 0;
        }
    }
    tensor_free(tmp);
    return TORCH_OK;
}

static torch_status fill(const char *fname, tensor *t, double value) {
    torch_status st = torch_check_inplace(fname, t);
    if (st != TORCH_OK) return st;
    int64_t idx[TORCH_MAX_DIMS] = {0};
    for (int64_t k = 0; k < t->numel; k++) {
        int64_t off = t->offset;
        for (int i = 0; i < t->ndim; i++) off += idx[i] * t->stride[i];
        if (t->dtype == TORCH_INT64)
            ((int64_t *)t->storage->data)[off] = (int64_t)value;
        else
            ((float *)t->storage->data)[off] = (float)value;
        for (int i = t->ndim - 1; i >= 0; i--) {
            if (++idx[i] < t->shape[i]) break;
            idx[i] = 0;
        }
    }
    tensor_bump_version(t);
    return TORCH_OK;
}

torch_status tensor_fill_(tensor *t, double value) { return fill("tensor_fill_", t, value); }
torch_status tensor_zero_(tensor *t) { return fill("tensor_zero_", t, 0.0); }
