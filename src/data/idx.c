/* idx.c — IDX files (MNIST's layout), plain or gzip, decoded in memory with zlib. */
#include "data.h"
#include "../io/io.h" /* io_read_file */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        if (total > DATA_IDX_MAX_BYTES) {
            torch_error(TORCH_ERR_FORMAT, "%s: %s: IDX dimensions too large (more than %llu bytes of data)", fname,
                        name, (unsigned long long)DATA_IDX_MAX_BYTES);
            return 0;
        }
    }
    *ndim = nd;
    *header_len = hlen;
    *payload = total;
    return 1;
}

static data_idx *idx_from_plain(const char *fname, const uint8_t *bytes, size_t size, const char *name) {
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
    data_idx *idx = calloc(1, sizeof *idx);
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
static data_idx *idx_from_gzip(const char *fname, const uint8_t *bytes, size_t size, const char *name) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: %s: zlib initialisation failed", fname, name);
        return NULL;
    }
    size_t cap = 64 * 1024, len = 0, limit = 4 + 4 * 4; /* limit: the header, until it is known */
    uint8_t *out = malloc(cap);
    data_idx *result = NULL;
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

static data_idx *idx_parse(const char *fname, const uint8_t *bytes, size_t size, const char *name) {
    if (!name) name = "<memory>";
    if (!bytes && size > 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: bytes is NULL", fname);
        return NULL;
    }
    if (size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) return idx_from_gzip(fname, bytes, size, name);
    return idx_from_plain(fname, bytes, size, name);
}

data_idx *data_idx_parse(const uint8_t *bytes, size_t size, const char *name) {
    return idx_parse("data_idx_parse", bytes, size, name);
}

data_idx *data_idx_read(const char *path) {
    static const char *fname = "data_idx_read";
    if (!path) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: path is NULL", fname);
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    /* the header (at most 20 bytes) and gzip's framing on top of the largest payload */
    if (io_read_file(fname, path, DATA_IDX_MAX_BYTES + 64, &buf, &n) != TORCH_OK) return NULL;
    data_idx *idx = idx_parse(fname, buf, n, path);
    free(buf);
    return idx;
}

void data_idx_free(data_idx *idx) {
    if (!idx) return;
    free(idx->data);
    free(idx);
}
