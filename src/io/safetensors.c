/* safetensors.c — the safetensors writer (hand-written JSON, so the bytes are predictable), the
 * hardened reader (cJSON for the header), and nn_module_save/_load on top of them. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "io.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* ---- metadata ---------------------------------------------------------------------------------- */

io_metadata *io_metadata_new(void) {
    io_metadata *md = calloc(1, sizeof *md);
    if (!md) torch_error(TORCH_ERR_OUT_OF_MEMORY, "io_metadata_new: out of memory");
    return md;
}

torch_status io_metadata_set(io_metadata *md, const char *key, const char *value) {
    if (!md || !key || !value) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "io_metadata_set: input is NULL");
    char *v = strdup(value);
    if (!v) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "io_metadata_set: out of memory");
    for (int64_t i = 0; i < md->count; i++)
        if (strcmp(md->items[i].key, key) == 0) {
            free(md->items[i].value);
            md->items[i].value = v;
            return TORCH_OK;
        }
    char *k = strdup(key);
    io_metadata_entry *items = k ? realloc(md->items, (size_t)(md->count + 1) * sizeof *items) : NULL;
    if (!items) {
        free(k);
        free(v);
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "io_metadata_set: out of memory");
    }
    md->items = items;
    md->items[md->count++] = (io_metadata_entry){.key = k, .value = v};
    return TORCH_OK;
}

const char *io_metadata_get(const io_metadata *md, const char *key) {
    for (int64_t i = 0; md && key && i < md->count; i++)
        if (strcmp(md->items[i].key, key) == 0) return md->items[i].value;
    return NULL;
}

void io_metadata_free(io_metadata *md) {
    if (!md) return;
    for (int64_t i = 0; i < md->count; i++) {
        free(md->items[i].key);
        free(md->items[i].value);
    }
    free(md->items);
    free(md);
}

/* ---- byte order -------------------------------------------------------------------------------- */

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Copies n elements of elsize bytes between host order and little-endian (the same operation
 * both ways). */
static void copy_le(void *dst, const void *src, size_t n, size_t elsize) {
    if (host_is_little_endian()) {
        memcpy(dst, src, n * elsize);
        return;
    }
    const uint8_t *s = src;
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < elsize; b++) d[i * elsize + b] = s[i * elsize + elsize - 1 - b];
}

static uint64_t read_u64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void write_u64_le(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- the writer -------------------------------------------------------------------------------- */

/* A growable string. */
typedef struct sbuf {
    char  *data;
    size_t len, cap;
    bool   oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf_u64(sbuf *b, uint64_t v) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    sb_puts(b, tmp);
}

/* A JSON string as Python's json.dumps(ensure_ascii=False) writes it: UTF-8 kept, quote,
 * backslash and control characters escaped. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                sb_puts(b, esc);
            } else {
                sb_put(b, (const char *)p, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static const char *dtype_tag(torch_dtype dtype) { return dtype == TORCH_INT64 ? "I64" : "F32"; }

torch_status io_safetensors_serialize(const nn_tensor_dict *d, const io_metadata *metadata, uint8_t **out,
                                      size_t *size) {
    static const char *fname = "io_safetensors_save";
    if (!d || !out || !size) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", fname);
    for (int64_t i = 0; i < d->count; i++) {
        const tensor *t = d->items[i].value;
        if (!t) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" is NULL", fname, d->items[i].name);
        if (strcmp(d->items[i].name, "__metadata__") == 0)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: \"__metadata__\" is reserved and cannot be a key",
                               fname);
        if (t->dtype != TORCH_FLOAT32 && t->dtype != TORCH_INT64)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" has unsupported dtype %s", fname,
                               d->items[i].name, torch_dtype_name(t->dtype));
    }
    for (int64_t i = 0; metadata && i < metadata->count; i++)
        if (!metadata->items[i].key || !metadata->items[i].value)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: metadata entry %" PRId64 " is NULL", fname, i);

    /* Header: metadata first, then tensors in the dict's order with consecutive offsets. */
    sbuf h = {0};
    sb_puts(&h, "{");
    bool first = true;
    if (metadata && metadata->count > 0) {
        sb_puts(&h, "\"__metadata__\":{");
        for (int64_t i = 0; i < metadata->count; i++) {
            if (i) sb_puts(&h, ",");
            sb_json_string(&h, metadata->items[i].key);
            sb_puts(&h, ":");
            sb_json_string(&h, metadata->items[i].value);
        }
        sb_puts(&h, "}");
        first = false;
    }
    uint64_t offset = 0;
    for (int64_t i = 0; i < d->count; i++) {
        const tensor *t = d->items[i].value;
        uint64_t nbytes = (uint64_t)t->numel * torch_dtype_size(t->dtype);
        if (!first) sb_puts(&h, ",");
        first = false;
        sb_json_string(&h, d->items[i].name);
        sb_puts(&h, ":{\"dtype\":\"");
        sb_puts(&h, dtype_tag(t->dtype));
        sb_puts(&h, "\",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            if (k) sb_puts(&h, ",");
            sb_printf_u64(&h, (uint64_t)t->shape[k]);
        }
        sb_puts(&h, "],\"data_offsets\":[");
        sb_printf_u64(&h, offset);
        sb_puts(&h, ",");
        sb_printf_u64(&h, offset + nbytes);
        sb_puts(&h, "]}");
        offset += nbytes;
    }
    sb_puts(&h, "}");
    while (!h.oom && h.len % 8 != 0) sb_puts(&h, " "); /* the buffer starts 8-byte aligned */
    if (h.oom) {
        free(h.data);
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    }

    size_t total = 8 + h.len + (size_t)offset;
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(h.data);
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory (%zu bytes)", fname, total);
    }
    write_u64_le(buf, h.len);
    memcpy(buf + 8, h.data, h.len);
    free(h.data);
    uint8_t *p = buf + 8 + (total - 8 - (size_t)offset);
    for (int64_t i = 0; i < d->count; i++) {
        const tensor *t = d->items[i].value;
        size_t es = torch_dtype_size(t->dtype);
        if (t->numel == 0) continue;
        tensor *c = tensor_contiguous(t);
        if (!c) {
            free(buf);
            return torch_last_status();
        }
        const void *src = t->dtype == TORCH_INT64 ? (const void *)tensor_data_i64(c) : (const void *)tensor_data_f32(c);
        copy_le(p, src, (size_t)t->numel, es);
        p += (size_t)t->numel * es;
        tensor_free(c);
    }
    *out = buf;
    *size = total;
    return TORCH_OK;
}

torch_status io_safetensors_save(const nn_tensor_dict *d, const io_metadata *metadata, const char *path) {
    if (!path || !*path) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "io_safetensors_save: path is empty");
    uint8_t *buf = NULL;
    size_t size = 0;
    torch_status st = io_safetensors_serialize(d, metadata, &buf, &size);
    if (st != TORCH_OK) return st;
    st = io_write_file_atomic(path, buf, size);
    free(buf);
    return st;
}

/* ---- the reader ------------------------------------------------------------------------------- */

/* The offset of the first byte of s[0..n) that is not well-formed UTF-8 (overlongs, surrogates
 * and code points above U+10FFFF included), n when there is none. */
static size_t utf8_error_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return n;
}

/* A JSON value as a message shows it: the number, or what it is instead of one. */
static const char *json_shown(const cJSON *it, char *out, size_t size) {
    if (!it) snprintf(out, size, "missing");
    else if (cJSON_IsNumber(it)) snprintf(out, size, "%.15g", it->valuedouble);
    else if (cJSON_IsString(it)) snprintf(out, size, "a string");
    else if (cJSON_IsBool(it)) snprintf(out, size, "%s", cJSON_IsTrue(it) ? "true" : "false");
    else if (cJSON_IsNull(it)) snprintf(out, size, "null");
    else snprintf(out, size, "%s", cJSON_IsArray(it) ? "an array" : "an object");
    return out;
}

/* A JSON number that is an exact non-negative integer no larger than 2^53. */
static bool json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || floor(v) != v) return false;
    *out = (uint64_t)v;
    return true;
}

typedef struct span {
    uint64_t begin, end;
    const char *key;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Sets a format error naming the file. */
#define FORMAT_ERROR(...) (torch_error(TORCH_ERR_FORMAT, __VA_ARGS__), (void)0)

/* Reads one tensor entry (checked against the buffer) into *out. Returns false with the error set. */
static bool read_entry(const char *fname, const char *name, const cJSON *entry, const uint8_t *buffer,
                       uint64_t buffer_size, tensor **out, span *sp) {
    const char *key = entry->string;
    if (!cJSON_IsObject(entry)) {
        FORMAT_ERROR("%s: %s: entry \"%s\" is not an object", fname, name, key);
        return false;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!dt || !shape || !offs) {
        FORMAT_ERROR("%s: %s: tensor \"%s\" is missing field \"%s\"", fname, name, key,
                     !dt ? "dtype" : !shape ? "shape" : "data_offsets");
        return false;
    }
    if (!cJSON_IsString(dt)) {
        FORMAT_ERROR("%s: %s: tensor \"%s\": dtype is not a string", fname, name, key);
        return false;
    }
    torch_dtype dtype;
    if (strcmp(dt->valuestring, "F32") == 0) {
        dtype = TORCH_FLOAT32;
    } else if (strcmp(dt->valuestring, "I64") == 0) {
        dtype = TORCH_INT64;
    } else {
        static const char *const known[] = {"BOOL", "U8",  "I8",  "I16", "U16",     "F16",     "BF16",
                                            "I32",  "U32", "F64", "U64", "F8_E4M3", "F8_E5M2", NULL};
        bool is_known = false;
        for (int i = 0; known[i]; i++) is_known = is_known || strcmp(dt->valuestring, known[i]) == 0;
        FORMAT_ERROR("%s: %s: tensor \"%s\": %s dtype \"%.32s\" (ctorch reads F32 and I64)", fname, name, key,
                     is_known ? "unsupported" : "unknown", dt->valuestring);
        return false;
    }
    if (!cJSON_IsArray(shape)) {
        FORMAT_ERROR("%s: %s: tensor \"%s\": shape is not an array", fname, name, key);
        return false;
    }
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > TORCH_MAX_DIMS) {
        FORMAT_ERROR("%s: %s: tensor \"%s\" has %d dimensions (at most %d supported)", fname, name, key, ndim,
                     TORCH_MAX_DIMS);
        return false;
    }
    int64_t dims[TORCH_MAX_DIMS];
    int k = 0;
    bool empty = false;
    const cJSON *it;
    cJSON_ArrayForEach(it, shape) {
        uint64_t v;
        if (!json_uint(it, &v)) {
            char got[48];
            FORMAT_ERROR("%s: %s: tensor \"%s\": shape[%d] is %s, not a non-negative integer (at most 2^53)", fname,
                         name, key, k, json_shown(it, got, sizeof got));
            return false;
        }
        empty = empty || v == 0;
        dims[k++] = (int64_t)v;
    }
    /* Multiply the non-zero sizes with a bound checked before each product, so nothing
     * overflows: a tensor's bytes stay below 2^62 (the exact comparison with its data_offsets
     * comes next), and an empty one's other sizes below 2^53 so that its element count and
     * strides are computed without overflow. */
    const uint64_t limit = empty ? ((uint64_t)1 << 53) : ((uint64_t)1 << 62);
    uint64_t nbytes = torch_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        uint64_t v = (uint64_t)dims[i];
        if (v == 0) continue;
        if (nbytes > limit / v) {
            FORMAT_ERROR("%s: %s: tensor \"%s\": shape is too large", fname, name, key);
            return false;
        }
        nbytes *= v;
    }
    if (empty) nbytes = 0;
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
        char got[48];
        if (cJSON_IsArray(offs)) snprintf(got, sizeof got, "an array of %d", cJSON_GetArraySize(offs));
        FORMAT_ERROR("%s: %s: tensor \"%s\": data_offsets must be two non-negative integers (got %s)", fname, name,
                     key, cJSON_IsArray(offs) ? got : json_shown(offs, got, sizeof got));
        return false;
    }
    for (int i = 0; i < 2; i++) {
        const cJSON *it = cJSON_GetArrayItem(offs, i);
        if (!json_uint(it, i ? &end : &begin)) {
            char got[48];
            FORMAT_ERROR("%s: %s: tensor \"%s\": data_offsets must be two non-negative integers (data_offsets[%d] "
                         "is %s; at most 2^53)",
                         fname, name, key, i, json_shown(it, got, sizeof got));
            return false;
        }
    }
    if (begin > end || end > buffer_size) {
        FORMAT_ERROR("%s: %s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64 "] out of range (buffer is %" PRIu64
                     " bytes)",
                     fname, name, key, begin, end, buffer_size);
        return false;
    }
    if (end - begin != nbytes) {
        char sh[128];
        FORMAT_ERROR("%s: %s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                     " bytes, shape %s of %s needs %" PRIu64,
                     fname, name, key, begin, end, end - begin, torch_shape_str(ndim, dims, sh, sizeof sh),
                     dt->valuestring, nbytes);
        return false;
    }
    tensor *t = torch_empty_dtype(dtype, ndim, dims);
    if (!t) return false;
    if (t->numel > 0) {
        void *dst = dtype == TORCH_INT64 ? (void *)tensor_data_i64(t) : (void *)tensor_data_f32(t);
        copy_le(dst, buffer + begin, (size_t)t->numel, torch_dtype_size(dtype));
    }
    *out = t;
    *sp = (span){.begin = begin, .end = end, .key = key};
    return true;
}

static nn_tensor_dict *parse_impl(const char *fname, const uint8_t *data, size_t size, const char *name,
                                  io_metadata **metadata) {
    if (!name) name = "<memory>";
    if (!data && size > 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: data is NULL", fname);
        return NULL;
    }
    if (size < 8) {
        FORMAT_ERROR("%s: %s: file too short for a safetensors header (%zu bytes)", fname, name, size);
        return NULL;
    }
    uint64_t n = read_u64_le(data);
    if (n > IO_SAFETENSORS_MAX_HEADER) {
        FORMAT_ERROR("%s: %s: header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes", fname, name, n,
                     IO_SAFETENSORS_MAX_HEADER);
        return NULL;
    }
    if (n > size - 8) {
        FORMAT_ERROR("%s: %s: header length %" PRIu64 " exceeds the file size (%zu bytes)", fname, name, n, size);
        return NULL;
    }
    const char *header = (const char *)data + 8;
    if (n < 2 || header[0] != '{') {
        FORMAT_ERROR("%s: %s: header is not a JSON object", fname, name);
        return NULL;
    }
    size_t bad = utf8_error_at((const uint8_t *)header, (size_t)n);
    if (bad < (size_t)n) {
        FORMAT_ERROR("%s: %s: header is not valid UTF-8 (byte 0x%02x at byte %zu of the header)", fname, name,
                     (unsigned char)header[bad], bad);
        return NULL;
    }
    io_json_problem jp;
    if (!io_json_check(header, (size_t)n, &jp)) {
        FORMAT_ERROR("%s: %s: header is not valid JSON: %s (byte %zu of the header)", fname, name, jp.message,
                     jp.offset);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, (size_t)n, &end, false);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        size_t at = end && end >= header && end <= header + n ? (size_t)(end - header) : (size_t)n;
        char where[160];
        io_json_path(header, (size_t)n, at, where, sizeof where);
        FORMAT_ERROR("%s: %s: header is not valid JSON (syntax error near byte %zu of the header%s%s)", fname, name,
                     at, *where ? ", in " : "", where);
        return NULL;
    }
    /* Only padding (whitespace) may follow the object. */
    for (const char *p = end; p && p < header + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            FORMAT_ERROR("%s: %s: trailing characters after the JSON header", fname, name);
            return NULL;
        }

    const uint8_t *buffer = data + 8 + n;
    uint64_t buffer_size = (uint64_t)size - 8 - n;
    int count = cJSON_GetArraySize(root);
    nn_tensor_dict *d = nn_tensor_dict_new();
    io_metadata *md = io_metadata_new();
    span *spans = calloc((size_t)count + 1, sizeof *spans);
    int nspans = 0;
    bool ok = d && md && spans, seen_metadata = false;
    if (!ok) torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, root) {
        if (!ok) break;
        const char *key = entry->string;
        if (!key) {
            FORMAT_ERROR("%s: %s: header entry without a key", fname, name);
            ok = false;
        } else if (strcmp(key, "__metadata__") == 0) {
            if (seen_metadata) {
                FORMAT_ERROR("%s: %s: duplicate key \"__metadata__\"", fname, name);
                ok = false;
            } else if (!cJSON_IsNull(entry) && !cJSON_IsObject(entry)) {
                FORMAT_ERROR("%s: %s: __metadata__ is not an object", fname, name);
                ok = false;
            }
            seen_metadata = true;
            const cJSON *kv, *obj = cJSON_IsObject(entry) ? entry : NULL;
            cJSON_ArrayForEach(kv, obj) {
                if (!ok) break;
                if (!cJSON_IsString(kv) || !kv->string) {
                    FORMAT_ERROR("%s: %s: __metadata__ value \"%s\" is not a string", fname, name,
                                 kv->string ? kv->string : "");
                    ok = false;
                } else if (io_metadata_get(md, kv->string)) {
                    FORMAT_ERROR("%s: %s: duplicate __metadata__ key \"%s\"", fname, name, kv->string);
                    ok = false;
                } else {
                    ok = io_metadata_set(md, kv->string, kv->valuestring) == TORCH_OK;
                }
            }
        } else if (nn_tensor_dict_get(d, key)) {
            FORMAT_ERROR("%s: %s: duplicate key \"%s\"", fname, name, key);
            ok = false;
        } else {
            tensor *t = NULL;
            ok = read_entry(fname, name, entry, buffer, buffer_size, &t, &spans[nspans]);
            if (ok) {
                nspans++;
                ok = nn_tensor_dict_set(d, key, t) == TORCH_OK;
            }
            tensor_free(t);
        }
    }
    /* The tensors must tile the buffer: sorted by offset, each starts where the previous ended. */
    if (ok) {
        qsort(spans, (size_t)nspans, sizeof *spans, span_cmp);
        uint64_t pos = 0;
        for (int i = 0; ok && i < nspans; i++) {
            if (spans[i].begin != pos) {
                FORMAT_ERROR("%s: %s: tensor \"%s\" at offset %" PRIu64 " %s", fname, name, spans[i].key,
                             spans[i].begin,
                             spans[i].begin < pos ? "overlaps the previous tensor" : "leaves a gap in the buffer");
                ok = false;
            }
            pos = spans[i].end;
        }
        if (ok && pos != buffer_size) {
            FORMAT_ERROR("%s: %s: the tensors cover %" PRIu64 " of the buffer's %" PRIu64 " bytes", fname, name, pos,
                         buffer_size);
            ok = false;
        }
    }
    free(spans);
    cJSON_Delete(root);
    if (!ok) {
        nn_tensor_dict_free(d);
        io_metadata_free(md);
        return NULL;
    }
    if (metadata)
        *metadata = md;
    else
        io_metadata_free(md);
    return d;
}

nn_tensor_dict *io_safetensors_parse(const uint8_t *data, size_t size, const char *name, io_metadata **metadata) {
    return parse_impl("io_safetensors_parse", data, size, name, metadata);
}


nn_tensor_dict *io_safetensors_load(const char *path, io_metadata **metadata) {
    if (!path) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "io_safetensors_load: path is NULL");
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t size = 0;
    if (io_read_file("io_safetensors_load", path, IO_SAFETENSORS_MAX_FILE, &buf, &size) != TORCH_OK) return NULL;
    nn_tensor_dict *d = parse_impl("io_safetensors_load", buf, size, path, metadata);
    free(buf);
    return d;
}

/* ---- modules ----------------------------------------------------------------------------------- */

torch_status nn_module_save(const nn_module *m, const char *path) {
    if (!m) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_save: module is NULL");
    nn_tensor_dict *d = nn_module_state_dict(m);
    if (!d) return torch_last_status();
    torch_status st = io_safetensors_save(d, NULL, path);
    nn_tensor_dict_free(d);
    return st;
}

torch_status nn_module_load(nn_module *m, const char *path, bool strict) {
    if (!m) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_load: module is NULL");
    nn_tensor_dict *d = io_safetensors_load(path, NULL);
    if (!d) return torch_last_status();
    torch_status st = nn_module_load_state_dict(m, d, strict);
    nn_tensor_dict_free(d);
    if (st != TORCH_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", torch_last_error());
        torch_error(st, "nn_module_load: %s: %s", path, msg);
    }
    return st;
}

