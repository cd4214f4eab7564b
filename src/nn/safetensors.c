/* safetensors.c — the safetensors writer (hand-written JSON, so the bytes are predictable), the
 * hardened reader (cJSON for the header), and atomic file replacement. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fsync, fchmod, strdup, O_CLOEXEC */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* ---- metadata ---------------------------------------------------------------------------------- */

nn_metadata *nn_metadata_new(void) {
    nn_metadata *md = calloc(1, sizeof *md);
    if (!md) torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_metadata_new: out of memory");
    return md;
}

torch_status nn_metadata_set(nn_metadata *md, const char *key, const char *value) {
    if (!md || !key || !value) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_metadata_set: input is NULL");
    char *v = strdup(value);
    if (!v) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_metadata_set: out of memory");
    for (int64_t i = 0; i < md->count; i++)
        if (strcmp(md->items[i].key, key) == 0) {
            free(md->items[i].value);
            md->items[i].value = v;
            return TORCH_OK;
        }
    char *k = strdup(key);
    nn_metadata_entry *items = k ? realloc(md->items, (size_t)(md->count + 1) * sizeof *items) : NULL;
    if (!items) {
        free(k);
        free(v);
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_metadata_set: out of memory");
    }
    md->items = items;
    md->items[md->count++] = (nn_metadata_entry){.key = k, .value = v};
    return TORCH_OK;
}

const char *nn_metadata_get(const nn_metadata *md, const char *key) {
    for (int64_t i = 0; md && key && i < md->count; i++)
        if (strcmp(md->items[i].key, key) == 0) return md->items[i].value;
    return NULL;
}

void nn_metadata_free(nn_metadata *md) {
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

torch_status nn_safetensors_serialize(const nn_tensor_dict *d, const nn_metadata *metadata, uint8_t **out,
                                      size_t *size) {
    static const char *fname = "nn_safetensors_save";
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

torch_status nn_safetensors_save(const nn_tensor_dict *d, const nn_metadata *metadata, const char *path) {
    if (!path || !*path) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_safetensors_save: path is empty");
    uint8_t *buf = NULL;
    size_t size = 0;
    torch_status st = nn_safetensors_serialize(d, metadata, &buf, &size);
    if (st != TORCH_OK) return st;
    st = nn_write_file_atomic(path, buf, size);
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

/* ---- JSON strictness ---------------------------------------------------------------------------- */

/* cJSON takes a raw control character inside a string as it is, and decodes \u0000 into a NUL
 * that ends the C string it returns: "1.weight\u0000junk" would read as "1.weight". A scan of the
 * text before cJSON sees it refuses both (RFC 8259 section 7 forbids the first; the second is
 * valid JSON that no C string can hold), and names NaN and Infinity, which cJSON refuses as a
 * bare syntax error. The scan follows containers and keys only loosely (it checks no other
 * syntax: cJSON does), enough to say where a problem is. */

#define JSON_MAX_DEPTH 32

typedef struct json_frame {
    char   kind;     /* '[' or '{' */
    bool   want_key; /* object: the next string is a key */
    long   index;    /* array: the current element */
    size_t key, key_len;
} json_frame;

/* The JSON source s[0..n) of a string as a message shows it: raw control characters as \xNN
 * (the rest is already escaped JSON), at most 40 bytes (cut at a character boundary) then "...". */
static void show_string(char *out, size_t size, const char *s, size_t n) {
    size_t len = 0, shown = n > 40 ? 40 : n;
    while (shown < n && shown > 0 && ((unsigned char)s[shown] & 0xC0) == 0x80) shown--;
    out[0] = '\0';
    for (size_t i = 0; i < shown && len + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) len += (size_t)snprintf(out + len, size - len, "\\x%02x", c);
        else out[len++] = (char)c, out[len] = '\0';
    }
    if (shown < n && len + 4 < size) memcpy(out + len, "...", 4);
}

/* The path of the value the scan is in: [0].lr, ["1.weight"].shape[1], __metadata__.k. */
static void json_path(const char *text, const json_frame *f, int depth, char *out, size_t size) {
    size_t len = 0;
    out[0] = '\0';
    for (int d = 0; d < depth && d < JSON_MAX_DEPTH && len + 1 < size; d++) {
        char part[256];
        if (f[d].kind == '[') {
            snprintf(part, sizeof part, "[%ld]", f[d].index);
        } else if (f[d].want_key) {
            continue;
        } else {
            const char *k = text + f[d].key;
            bool ident = f[d].key_len > 0 && f[d].key_len <= 40 && !(k[0] >= '0' && k[0] <= '9');
            for (size_t i = 0; ident && i < f[d].key_len; i++)
                ident = (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= '0' && k[i] <= '9') ||
                        k[i] == '_';
            char shown[168]; /* 40 bytes, each at most 4 characters, then "..." */
            show_string(shown, sizeof shown, k, f[d].key_len);
            if (ident) snprintf(part, sizeof part, "%s%s", len ? "." : "", shown);
            else snprintf(part, sizeof part, "[\"%s\"]", shown);
        }
        len += (size_t)snprintf(out + len, size - len, "%s", part);
        if (len >= size) len = size - 1;
    }
    if (depth > JSON_MAX_DEPTH && len + 4 < size) memcpy(out + len, "...", 4);
}

/* Scans text[0..n) up to byte stop. Returns false at the first problem (*problem filled, if
 * given); otherwise true, with the path of the value at stop in path (if given). */
static bool json_scan(const char *t, size_t n, size_t stop, nn_json_problem *problem, char *path,
                      size_t path_size) {
    json_frame f[JSON_MAX_DEPTH];
    int depth = 0;
    size_t i = 0;
    while (i < n && i < stop) {
        unsigned char c = (unsigned char)t[i];
        json_frame *top = depth > 0 && depth <= JSON_MAX_DEPTH ? &f[depth - 1] : NULL;
        if (c == '{' || c == '[') {
            if (depth < JSON_MAX_DEPTH) f[depth] = (json_frame){.kind = (char)c, .want_key = c == '{'};
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            if (depth > 0) depth--;
            i++;
        } else if (c == ',') {
            if (top && top->kind == '[') top->index++;
            if (top && top->kind == '{') top->want_key = true;
            i++;
        } else if (c == '"') {
            bool is_key = top && top->kind == '{' && top->want_key;
            size_t start = i + 1, j = start, bad = n;
            const char *what = NULL;
            while (j < n && t[j] != '"') {
                unsigned char ch = (unsigned char)t[j];
                if (ch < 0x20 && !what) {
                    what = "a raw control character";
                    bad = j;
                }
                if (ch == '\\') {
                    if (!what && j + 5 < n && t[j + 1] == 'u' && memcmp(t + j + 2, "0000", 4) == 0) {
                        what = "\\u0000";
                        bad = j;
                    }
                    j++;
                }
                j++;
            }
            if (j > n) j = n;
            if (what) {
                if (problem) {
                    char where[160], shown[168];
                    json_path(t, f, depth, where, sizeof where);
                    show_string(shown, sizeof shown, t + start, j - start);
                    problem->offset = bad;
                    if (t[bad] == '\\')
                        snprintf(problem->message, sizeof problem->message,
                                 "the %s \"%s\"%s%s contains \\u0000 (U+0000 cannot be held in a C string)",
                                 is_key ? "key" : "string", shown, *where ? " in " : "", where);
                    else
                        snprintf(problem->message, sizeof problem->message,
                                 "the %s \"%s\"%s%s contains %s (0x%02x; JSON requires characters below 0x20 "
                                 "escaped)",
                                 is_key ? "key" : "string", shown, *where ? " in " : "", where, what,
                                 (unsigned char)t[bad]);
                }
                return false;
            }
            if (is_key) {
                top->key = start;
                top->key_len = j - start;
                top->want_key = false;
            }
            i = j + 1;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                   c == '+') {
            size_t j = i;
            while (j < n && ((t[j] >= 'a' && t[j] <= 'z') || (t[j] >= 'A' && t[j] <= 'Z') ||
                             (t[j] >= '0' && t[j] <= '9') || t[j] == '-' || t[j] == '+' || t[j] == '.'))
                j++;
            /* NaN, Infinity, -Infinity: what Python's json writes for floats JSON cannot hold */
            size_t a = i + (c == '-' || c == '+'), len = j - a;
            char word[9] = {0};
            for (size_t k = 0; k < len && k < 8; k++) word[k] = (char)(t[a + k] | 0x20); /* lower case */
            if ((len == 3 && (!strcmp(word, "nan") || !strcmp(word, "inf"))) ||
                (len == 8 && !strcmp(word, "infinity"))) {
                if (problem) {
                    char where[160];
                    json_path(t, f, depth, where, sizeof where);
                    problem->offset = i;
                    snprintf(problem->message, sizeof problem->message,
                             "%s is %.*s (expected a finite number; JSON has no NaN or Infinity)",
                             *where ? where : "a value", (int)(j - i), t + i);
                }
                return false;
            }
            i = j;
        } else {
            i++;
        }
    }
    if (path) json_path(t, f, depth, path, path_size);
    return true;
}

bool nn_json_check(const char *text, size_t n, nn_json_problem *problem) {
    if (!text) return true;
    return json_scan(text, n, n, problem, NULL, 0);
}

void nn_json_path(const char *text, size_t n, size_t offset, char *path, size_t size) {
    if (!path || size == 0) return;
    path[0] = '\0';
    if (text) json_scan(text, n, offset, NULL, path, size);
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
                                  nn_metadata **metadata) {
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
    if (n > NN_SAFETENSORS_MAX_HEADER) {
        FORMAT_ERROR("%s: %s: header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes", fname, name, n,
                     NN_SAFETENSORS_MAX_HEADER);
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
    nn_json_problem jp;
    if (!nn_json_check(header, (size_t)n, &jp)) {
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
        nn_json_path(header, (size_t)n, at, where, sizeof where);
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
    nn_metadata *md = nn_metadata_new();
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
                } else if (nn_metadata_get(md, kv->string)) {
                    FORMAT_ERROR("%s: %s: duplicate __metadata__ key \"%s\"", fname, name, kv->string);
                    ok = false;
                } else {
                    ok = nn_metadata_set(md, kv->string, kv->valuestring) == TORCH_OK;
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
        nn_metadata_free(md);
        return NULL;
    }
    if (metadata)
        *metadata = md;
    else
        nn_metadata_free(md);
    return d;
}

nn_tensor_dict *nn_safetensors_parse(const uint8_t *data, size_t size, const char *name, nn_metadata **metadata) {
    return parse_impl("nn_safetensors_parse", data, size, name, metadata);
}

/* ---- files ------------------------------------------------------------------------------------ */

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "a special file";
}

torch_status nn_read_file(const char *fname, const char *path, uint64_t max_bytes, uint8_t **out, size_t *size) {
    if (!fname) fname = "nn_read_file";
    if (!path || !out || !size)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: path, out and size are required", fname);
    /* O_NONBLOCK: opening a FIFO without a writer would wait forever before fstat could refuse
     * it; on a regular file the flag changes nothing. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return torch_error(TORCH_ERR_IO, "%s: cannot open %s: %s", fname, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return torch_error(TORCH_ERR_IO, "%s: cannot stat %s: %s", fname, path, strerror(e));
    }
    /* Only a regular file has a size known before reading; a device or a pipe could be endless
     * (/dev/zero). */
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return torch_error(TORCH_ERR_IO, "%s: %s: expected a regular file (got %s)", fname, path,
                           file_kind(st.st_mode));
    }
    uint64_t limit = max_bytes < (uint64_t)SIZE_MAX ? max_bytes : (uint64_t)SIZE_MAX;
    if ((uint64_t)st.st_size > limit) {
        close(fd);
        return torch_error(TORCH_ERR_FORMAT, "%s: %s: file too large (%" PRIu64 " bytes; at most %" PRIu64 " accepted)",
                           fname, path, (uint64_t)st.st_size, limit);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory reading %s (%zu bytes)", fname, path, n);
    }
    int err = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = errno;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        if (err) return torch_error(TORCH_ERR_IO, "%s: error reading %s: %s", fname, path, strerror(err));
        return torch_error(TORCH_ERR_IO, "%s: %s shrank while being read (%zu of %zu bytes)", fname, path, got, n);
    }
    *out = buf;
    *size = n;
    return TORCH_OK;
}

nn_tensor_dict *nn_safetensors_load(const char *path, nn_metadata **metadata) {
    if (!path) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_safetensors_load: path is NULL");
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t size = 0;
    if (nn_read_file("nn_safetensors_load", path, NN_SAFETENSORS_MAX_FILE, &buf, &size) != TORCH_OK) return NULL;
    nn_tensor_dict *d = parse_impl("nn_safetensors_load", buf, size, path, metadata);
    free(buf);
    return d;
}

/* ---- modules ----------------------------------------------------------------------------------- */

torch_status nn_module_save(const nn_module *m, const char *path) {
    if (!m) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_save: module is NULL");
    nn_tensor_dict *d = nn_module_state_dict(m);
    if (!d) return torch_last_status();
    torch_status st = nn_safetensors_save(d, NULL, path);
    nn_tensor_dict_free(d);
    return st;
}

torch_status nn_module_load(nn_module *m, const char *path, bool strict) {
    if (!m) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_load: module is NULL");
    nn_tensor_dict *d = nn_safetensors_load(path, NULL);
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

/* ---- atomic files ----------------------------------------------------------------------------- */

static nn_atomic_write_fault_hook fault_hook;
static void *fault_user;

void nn_atomic_write_set_fault_hook(nn_atomic_write_fault_hook hook, void *user) {
    fault_hook = hook;
    fault_user = user;
}

static bool fault(const char *stage) { return fault_hook && fault_hook(stage, fault_user); }

/* fsync of the directory holding path, so the rename itself is durable. Best effort where the
 * file system cannot sync directories. */
static torch_status sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_write_file_atomic: out of memory");
    int fd = open(dir, O_RDONLY);
    free(dir);
    if (fd < 0) return TORCH_OK;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e == EIO) return torch_error(TORCH_ERR_IO, "nn_write_file_atomic: fsync of the directory of %s failed: %s", path, strerror(e));
    return TORCH_OK;
}

torch_status nn_write_file_atomic(const char *path, const void *data, size_t size) {
    static const char *fname = "nn_write_file_atomic";
    if (!path || !*path) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: path is empty", fname);
    if (!data && size > 0) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: data is NULL", fname);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");

    int fd = fault("open") ? (errno = EACCES, -1) : mkstemp(tmp);
    if (fd < 0) {
        torch_status st = torch_error(TORCH_ERR_IO, "%s: cannot create a temporary file next to %s: %s", fname, path,
                                      strerror(errno));
        free(tmp);
        return st;
    }
    /* mkstemp makes 0600 files; give the checkpoint the mode a plain fopen would (keeping an
     * existing file's mode). */
    struct stat old;
    fchmod(fd, stat(path, &old) == 0 ? (old.st_mode & 07777) : 0644);

    const char *stage = NULL;
    int err = 0;
    const uint8_t *p = data;
    size_t left = size;
    bool fail_write = fault("write");
    if (fail_write) left = size / 2;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            stage = "write";
            err = w < 0 ? errno : EIO;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (!stage && fail_write) stage = "write", err = EIO;
    if (!stage && (fault("fsync") ? (errno = EIO, -1) : fsync(fd)) != 0) stage = "fsync", err = errno;
    if (close(fd) != 0 && !stage) stage = "close", err = errno;
    if (!stage && (fault("rename") ? (errno = EXDEV, -1) : rename(tmp, path)) != 0) stage = "rename", err = errno;
    if (stage) {
        unlink(tmp);
        torch_status st =
            torch_error(TORCH_ERR_IO, "%s: %s failed while writing %s: %s (the previous file is unchanged)", fname,
                        stage, path, strerror(err));
        free(tmp);
        return st;
    }
    free(tmp);
    return sync_parent_dir(path);
}
