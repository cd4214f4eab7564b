/* io.h — the I/O layer: state_dicts to and from safetensors files with PyTorch's key names,
 * reading outside files with limits, replacing files atomically, and strict JSON.
 *
 * Where it sits: io includes tensor, autograd and nn (it saves and loads nn_module state_dicts);
 * data and optim may include io; nothing below includes it.
 *
 * Ownership:
 *   - io_safetensors_load/_parse return a new nn_tensor_dict (free with nn_tensor_dict_free)
 *     whose tensors are fresh copies of the file's data; NULL on error, with the error set.
 *   - Metadata comes back, if asked for, as a new io_metadata (free with io_metadata_free).
 *   - io_read_file and io_safetensors_serialize hand back malloc'ed bytes the caller frees.
 *   - Save and write functions only read their inputs; no function keeps a pointer it was given.
 *
 * The format (Hugging Face's safetensors): an 8-byte little-endian u64 N, N
 * bytes of a UTF-8 JSON object
 *     {"__metadata__": {"k": "v", ...},                  (optional, string to string)
 *      "0.weight": {"dtype": "F32", "shape": [2, 1, 3, 3], "data_offsets": [0, 72]}, ...}
 * padded with spaces to a multiple of 8, then the byte buffer; offsets are relative to the
 * buffer's start, tensors are row-major little-endian, and together they cover the buffer exactly.
 * ctorch reads and writes dtypes F32 (float32) and I64 (int64: num_batches_tracked, shape []).
 * The writer puts tensors in the dict's order, header keys in the same order, compact JSON:
 * the same bytes as scripts/safetensors_convert.py writes for the same state_dict.
 *
 * The loader refuses anything but a regular file, and files over IO_SAFETENSORS_MAX_FILE
 * (io_read_file). The reader refuses, with TORCH_ERR_FORMAT and a message naming the file and
 * the problem: a header longer than the file or than 100 MB, non-JSON or non-UTF-8 headers,
 * strings holding a raw control character or \u0000 (io_json_check), missing or mistyped
 * fields, unknown dtypes, negative, fractional or huge shapes, byte counts that overflow,
 * offsets out of range or not matching the shape, overlapping buffers or gaps, duplicate keys.
 * It never reads outside the bytes it was given.
 */
#ifndef CTORCH_IO_H
#define CTORCH_IO_H

#include <stddef.h>
#include <stdint.h>

#include "../nn/module.h"

/* Headers larger than this are refused (the safetensors library's own limit). */
#define IO_SAFETENSORS_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Files larger than this (16 GiB) are refused before anything is read: loading holds the file
 * and a copy of every tensor, twice the file, far beyond any model ctorch trains. */
#define IO_SAFETENSORS_MAX_FILE ((uint64_t)16 << 30)

/* The "__metadata__" map: string keys to string values, in insertion order. */
typedef struct io_metadata_entry {
    char *key;
    char *value;
} io_metadata_entry;

typedef struct io_metadata {
    int64_t            count;
    io_metadata_entry *items; /* count entries, owned */
} io_metadata;

/* An empty map (NULL on out-of-memory). */
io_metadata *io_metadata_new(void);
/* Adds or replaces key -> value (both copied). */
torch_status io_metadata_set(io_metadata *md, const char *key, const char *value);
/* Borrowed value, NULL if absent. */
const char  *io_metadata_get(const io_metadata *md, const char *key);
void         io_metadata_free(io_metadata *md);

/* Writes d (and metadata, may be NULL) to path atomically (see io_write_file_atomic). */
torch_status    io_safetensors_save(const nn_tensor_dict *d, const io_metadata *metadata, const char *path);
/* Reads a whole file (through io_read_file, at most IO_SAFETENSORS_MAX_FILE bytes). metadata
 * may be NULL; otherwise *metadata receives the map (empty if the file has none). */
nn_tensor_dict *io_safetensors_load(const char *path, io_metadata **metadata);

/* The file's bytes in memory: *out is malloc'ed (caller frees), *size its length. */
torch_status io_safetensors_serialize(const nn_tensor_dict *d, const io_metadata *metadata, uint8_t **out,
                                      size_t *size);
/* The reader on a memory buffer (for tests and fuzzing, and for data that is not a file);
 * name labels error messages (e.g. the file name). */
nn_tensor_dict *io_safetensors_parse(const uint8_t *data, size_t size, const char *name, io_metadata **metadata);

/* m's state_dict to a file (parameters and persistent buffers, PyTorch's keys). */
torch_status nn_module_save(const nn_module *m, const char *path);
/* A file into m through nn_module_load_state_dict (strict: missing/unexpected keys are errors;
 * shape mismatches always are; on error m is unchanged). */
torch_status nn_module_load(nn_module *m, const char *path, bool strict);

/* ---- JSON strictness (the safetensors header and the checkpoint's JSON metadata) ----------------- */

/* What io_json_check found: the byte offset in the text and a sentence saying what and where. */
typedef struct io_json_problem {
    size_t offset;
    char   message[512];
} io_json_problem;

/* Checks JSON text[0..n) for what cJSON accepts but must not be: a raw control character
 * (below 0x20, NUL included) inside a string, which RFC 8259 forbids, and the escape \u0000,
 * which no C string can hold (cJSON would cut "1.weight\u0000junk" to "1.weight"); and for NaN,
 * Infinity and -Infinity, which cJSON refuses with no more than "syntax error" although Python's
 * json writes them for floats. True when there is none; otherwise false with *problem filled
 * (may be NULL; the message then says, e.g., "[0].lr is NaN (expected a finite number; ...)").
 * Other syntax errors are left to cJSON. */
bool io_json_check(const char *text, size_t n, io_json_problem *problem);
/* The path of the value at text[offset] ("[0].lr", "[\"1.weight\"].shape[1]", "" at the top), to
 * say where a parse error is. */
void io_json_path(const char *text, size_t n, size_t offset, char *path, size_t size);

/* ---- files --------------------------------------------------------------------------------------- */

/* Reads the whole of path into *out (malloc'ed, caller frees; *size its length), for every
 * loader of outside data (safetensors, checkpoints, IDX). Refuses, with errors that start with
 * fname and name the file: a file that cannot be opened (TORCH_ERR_IO, with the system's
 * reason), anything but a regular file (TORCH_ERR_IO: a device such as /dev/zero, a FIFO or a
 * directory, refused without waiting for a writer or reading a byte), a file larger than
 * max_bytes (TORCH_ERR_FORMAT, before allocating), and a read error or a file that shrinks
 * while it is read (TORCH_ERR_IO). On error *out and *size are unchanged. */
torch_status io_read_file(const char *fname, const char *path, uint64_t max_bytes, uint8_t **out, size_t *size);

/* ---- atomic files ------------------------------------------------------------------------------ */

/* Replaces path with data so that a crash at any moment leaves either the old file or the new
 * one: writes path.tmp.XXXXXX in the same directory, fsyncs it, renames it over path, fsyncs
 * the directory. On error the temporary file is removed and path is untouched. A new file gets
 * mode 0644; an existing file keeps its mode. */
torch_status io_write_file_atomic(const char *path, const void *data, size_t size);

/* For tests: called before each stage of io_write_file_atomic ("open", "write", "fsync",
 * "rename"); returning true makes that stage fail as if the system call had (at "write", after
 * half of the data is written). NULL removes the hook. Not thread-safe; not for production. */
typedef bool (*io_atomic_write_fault_hook)(const char *stage, void *user);
void io_atomic_write_set_fault_hook(io_atomic_write_fault_hook hook, void *user);

#endif /* CTORCH_IO_H */
