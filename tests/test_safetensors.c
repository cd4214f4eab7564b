/* test_safetensors.c — the safetensors reader and writer: a file written by PyTorch (through
 * scripts/safetensors_convert.py) loads with the exact values, and re-saving it gives the same
 * bytes; round trips of our own files; atomic replacement under injected failures and a
 * simulated crash; and the hardened reader on truncated and malformed input. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, fork, mkfifo, ftruncate */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures/optim_safetensors_ref.h"
#include "nn/batch_norm.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "io/io.h"
#include "special_files.h"

#define FIXTURE CTORCH_TEST_DIR "/fixtures/optim_bn_conv.safetensors"

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ctorch_st_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

/* Number of entries in tmpdir whose name contains ".tmp." (left-over temporary files). */
static int count_temp_files(void) {
    DIR *d = opendir(tmpdir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        if (remove(p) != 0) rmdir(p);
    }
    if (d) closedir(d);
    rmdir(tmpdir);
}

static bool tensors_equal(const tensor *a, const tensor *b) {
    if (a->dtype != b->dtype || !tensor_same_shape(a, b)) return false;
    for (int64_t i = 0; i < a->numel; i++) {
        int64_t idx[TORCH_MAX_DIMS], r = i;
        for (int d = a->ndim - 1; d >= 0; d--) {
            idx[d] = r % a->shape[d];
            r /= a->shape[d];
        }
        double x = tensor_get(a, idx), y = tensor_get(b, idx);
        if (!(x == y) && !(isnan(x) && isnan(y))) return false;
    }
    return true;
}

/* ---- PyTorch's file --------------------------------------------------------------------------- */

Test(safetensors, loads_pytorch_file_exactly) {
    io_metadata *md = NULL;
    nn_tensor_dict *d = io_safetensors_load(FIXTURE, &md);
    cr_assert_not_null(d, "%s", torch_last_error());
    cr_assert_eq(d->count, ST_REF_COUNT);
    for (int i = 0; i < ST_REF_COUNT; i++) {
        const st_ref_entry *e = &st_ref[i];
        tensor *t = d->items[i].value;
        cr_assert_str_eq(d->items[i].name, e->key, "keys keep the file's (state_dict) order");
        cr_assert_eq(t->ndim, e->ndim);
        for (int k = 0; k < e->ndim; k++) cr_assert_eq(t->shape[k], e->shape[k]);
        if (e->is_int64) {
            cr_assert_eq(t->dtype, TORCH_INT64);
            cr_assert_eq(memcmp(tensor_data_i64(t), e->values, (size_t)t->numel * 8), 0);
        } else {
            cr_assert_eq(t->dtype, TORCH_FLOAT32);
            cr_assert_eq(memcmp(tensor_data_f32(t), e->values, (size_t)t->numel * 4), 0, "%s values", e->key);
        }
    }
    tensor *nbt = nn_tensor_dict_get(d, "1.num_batches_tracked");
    cr_assert_eq(nbt->ndim, 0);
    cr_assert_eq(*tensor_data_i64(nbt), 1);
    cr_assert_str_eq(io_metadata_get(md, "format"), "pt");

    /* Our writer gives PyTorch's script's bytes for the same dict and metadata. */
    uint8_t *mine;
    size_t mine_size, ref_size;
    cr_assert_eq(io_safetensors_serialize(d, md, &mine, &mine_size), TORCH_OK);
    uint8_t *ref = read_all(FIXTURE, &ref_size);
    cr_assert_eq(mine_size, ref_size);
    cr_assert_eq(memcmp(mine, ref, ref_size), 0, "byte layout differs from scripts/safetensors_convert.py");
    free(mine);
    free(ref);
    io_metadata_free(md);
    nn_tensor_dict_free(d);
}

/* The PyTorch state_dict loads into the same network built in C (keys, shapes, int64 counter). */
Test(safetensors, pytorch_file_into_c_model) {
    nn_conv2d_options co = nn_conv2d_options_default(1, 2, 3);
    co.bias = false;
    nn_module *mods[2] = {nn_conv2d(co), nn_batch_norm2d(nn_batch_norm_options_default(2))};
    nn_module *model = nn_sequential(2, mods);
    cr_assert_not_null(model, "%s", torch_last_error());
    cr_assert_eq(nn_module_load(model, FIXTURE, true), TORCH_OK, "%s", torch_last_error());
    nn_tensor_dict *sd = nn_module_state_dict(model);
    for (int i = 0; i < ST_REF_COUNT; i++) {
        tensor *t = nn_tensor_dict_get(sd, st_ref[i].key);
        cr_assert_not_null(t, "%s", st_ref[i].key);
        size_t es = st_ref[i].is_int64 ? 8 : 4;
        const void *p = st_ref[i].is_int64 ? (const void *)tensor_data_i64(t) : (const void *)tensor_data_f32(t);
        cr_assert_eq(memcmp(p, st_ref[i].values, (size_t)t->numel * es), 0, "%s", st_ref[i].key);
    }
    /* save from C, load into a fresh model: equal */
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    cr_assert_eq(nn_module_save(model, path), TORCH_OK, "%s", torch_last_error());
    nn_module *mods2[2] = {nn_conv2d(co), nn_batch_norm2d(nn_batch_norm_options_default(2))};
    nn_module *model2 = nn_sequential(2, mods2);
    cr_assert_eq(nn_module_load(model2, path, true), TORCH_OK, "%s", torch_last_error());
    nn_tensor_dict *sd2 = nn_module_state_dict(model2);
    for (int64_t i = 0; i < sd->count; i++) cr_assert(tensors_equal(sd->items[i].value, sd2->items[i].value));

    /* strict load of a file that lacks keys fails naming the key, and changes nothing */
    nn_module *bn = nn_batch_norm2d(nn_batch_norm_options_default(2));
    nn_tensor_dict *only_bn = nn_module_state_dict(bn);
    snprintf(path, sizeof path, "%s/bn.safetensors", tmpdir);
    cr_assert_eq(io_safetensors_save(only_bn, NULL, path), TORCH_OK);
    tensor *w_before = tensor_clone(nn_tensor_dict_get(sd2, "0.weight"));
    cr_assert_neq(nn_module_load(model2, path, true), TORCH_OK);
    cr_assert_not_null(strstr(torch_last_error(), path), "%s", torch_last_error());
    cr_assert_not_null(strstr(torch_last_error(), "0.weight"), "%s", torch_last_error());
    cr_assert(tensors_equal(w_before, nn_tensor_dict_get(sd2, "0.weight")));
    tensor_free(w_before);
    nn_tensor_dict_free(only_bn);
    nn_module_free(bn);
    nn_tensor_dict_free(sd2);
    nn_tensor_dict_free(sd);
    nn_module_free(model2);
    nn_module_free(model);
    remove_tmpdir();
}

/* ---- our own files ------------------------------------------------------------------------------ */

Test(safetensors, round_trip_dtypes_shapes_keys_metadata) {
    nn_tensor_dict *d = nn_tensor_dict_new();
    torch_generator g = torch_generator_new(3);
    tensor *a = torch_randn(&g, TORCH_SHAPE(3, 4, 5));
    tensor *s = torch_scalar(-2.5f);
    tensor *i = torch_scalar_int64(-(INT64_C(1) << 40));
    tensor *e1 = torch_zeros(TORCH_SHAPE(0));
    tensor *e2 = torch_zeros(TORCH_SHAPE(2, 0, 3));
    /* a transposed (non-contiguous) view is written in its logical row-major order */
    tensor *base = torch_arange(0, 6, 1);
    tensor *tr = tensor_as_strided(base, 2, (int64_t[]){3, 2}, (int64_t[]){1, 3}, 0);
    nn_tensor_dict_set(d, "a", a);
    nn_tensor_dict_set(d, "scalar", s);
    nn_tensor_dict_set(d, "block.num_batches_tracked", i);
    nn_tensor_dict_set(d, "empty", e1);
    nn_tensor_dict_set(d, "empty2", e2);
    nn_tensor_dict_set(d, "quote\"back\\slash\nnewline \xc3\xa9", tr);
    io_metadata *md = io_metadata_new();
    io_metadata_set(md, "epoch", "3");
    io_metadata_set(md, "note", "tab\there");

    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/x.safetensors", tmpdir);
    cr_assert_eq(io_safetensors_save(d, md, path), TORCH_OK, "%s", torch_last_error());
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644, "a new file gets mode 0644, not mkstemp's 0600");
    size_t fsize;
    uint8_t *raw = read_all(path, &fsize);
    cr_assert_eq(raw[0] % 8, 0, "header padded to a multiple of 8 bytes");
    cr_assert_eq(raw[8], '{');
    free(raw);
    io_metadata *md2 = NULL;
    nn_tensor_dict *back = io_safetensors_load(path, &md2);
    cr_assert_not_null(back, "%s", torch_last_error());
    cr_assert_eq(back->count, d->count);
    for (int64_t k = 0; k < d->count; k++) {
        cr_assert_str_eq(back->items[k].name, d->items[k].name);
        cr_assert(tensors_equal(back->items[k].value, d->items[k].value), "%s", d->items[k].name);
    }
    float *t = tensor_data_f32(nn_tensor_dict_get(back, d->items[5].name));
    cr_assert(t[0] == 0 && t[1] == 3 && t[2] == 1 && t[5] == 5);
    cr_assert_eq(*tensor_data_i64(nn_tensor_dict_get(back, "block.num_batches_tracked")), -(INT64_C(1) << 40));
    cr_assert_str_eq(io_metadata_get(md2, "epoch"), "3");
    cr_assert_str_eq(io_metadata_get(md2, "note"), "tab\there");
    cr_assert_eq(count_temp_files(), 0);

    io_metadata_free(md2);
    nn_tensor_dict_free(back);
    io_metadata_free(md);
    nn_tensor_dict_free(d);
    tensor_free(a);
    tensor_free(s);
    tensor_free(i);
    tensor_free(e1);
    tensor_free(e2);
    tensor_free(tr);
    tensor_free(base);
    remove_tmpdir();
}

Test(safetensors, save_refuses_reserved_key) {
    nn_tensor_dict *d = nn_tensor_dict_new();
    tensor *a = torch_zeros(TORCH_SHAPE(1));
    nn_tensor_dict_set(d, "__metadata__", a);
    uint8_t *buf = NULL;
    size_t n;
    cr_assert_eq(io_safetensors_serialize(d, NULL, &buf, &n), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(torch_last_error(), "reserved"));
    cr_assert_null(buf);
    nn_tensor_dict_free(d);
    tensor_free(a);
}

/* ---- atomic writes ---------------------------------------------------------------------------- */

static const char *fail_stage;
static bool fail_at(const char *stage, void *user) {
    (void)user;
    return strcmp(stage, fail_stage) == 0;
}

static nn_tensor_dict *dict_of(float v, tensor **keep) {
    nn_tensor_dict *d = nn_tensor_dict_new();
    *keep = torch_full(TORCH_SHAPE(1000), v);
    nn_tensor_dict_set(d, "w", *keep);
    return d;
}

Test(safetensors, atomic_replace_and_injected_failures) {
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", tmpdir);
    tensor *ta, *tb;
    nn_tensor_dict *A = dict_of(1.0f, &ta), *B = dict_of(2.0f, &tb);
    cr_assert_eq(io_safetensors_save(A, NULL, path), TORCH_OK);
    size_t na, nb;
    uint8_t *bytes_a = read_all(path, &na);

    const char *stages[] = {"open", "write", "fsync", "rename"};
    for (int s = 0; s < 4; s++) {
        fail_stage = stages[s];
        io_atomic_write_set_fault_hook(fail_at, NULL);
        torch_status st = io_safetensors_save(B, NULL, path);
        io_atomic_write_set_fault_hook(NULL, NULL);
        cr_assert_eq(st, TORCH_ERR_IO, "stage %s", stages[s]);
        cr_assert_not_null(strstr(torch_last_error(), path), "%s", torch_last_error());
        uint8_t *now = read_all(path, &nb);
        cr_assert_eq(nb, na);
        cr_assert_eq(memcmp(now, bytes_a, na), 0, "old file damaged by a failure at %s", stages[s]);
        free(now);
        cr_assert_eq(count_temp_files(), 0, "temporary file left after a failure at %s", stages[s]);
    }

    /* a successful save replaces the content and leaves no temporary file */
    cr_assert_eq(io_safetensors_save(B, NULL, path), TORCH_OK);
    nn_tensor_dict *back = io_safetensors_load(path, NULL);
    cr_assert_eq(tensor_data_f32(nn_tensor_dict_get(back, "w"))[999], 2.0f);
    nn_tensor_dict_free(back);
    cr_assert_eq(count_temp_files(), 0);

    /* a real failure: the target is a directory, rename fails, the temp file goes away */
    char dirpath[512];
    snprintf(dirpath, sizeof dirpath, "%s/adir", tmpdir);
    cr_assert_eq(mkdir(dirpath, 0755), 0);
    cr_assert_eq(io_safetensors_save(A, NULL, dirpath), TORCH_ERR_IO);
    cr_assert_not_null(strstr(torch_last_error(), "rename failed"), "%s", torch_last_error());
    cr_assert_eq(count_temp_files(), 0);
    /* a directory that does not exist */
    char nodir[512];
    snprintf(nodir, sizeof nodir, "%s/missing/x.safetensors", tmpdir);
    cr_assert_eq(io_safetensors_save(A, NULL, nodir), TORCH_ERR_IO);
    cr_assert_not_null(strstr(torch_last_error(), "cannot create a temporary file"), "%s", torch_last_error());

    free(bytes_a);
    nn_tensor_dict_free(A);
    nn_tensor_dict_free(B);
    tensor_free(ta);
    tensor_free(tb);
    remove_tmpdir();
}

static bool die_at_fsync(const char *stage, void *user) {
    (void)user;
    /* The process is killed after writing, before the rename: nothing runs after this, like a
     * power cut or an OOM kill (and no leak checker runs in the child either). */
    if (strcmp(stage, "fsync") == 0) raise(SIGKILL);
    return false;
}

/* A crash in the middle of a save (here: SIGKILL after writing the temporary file)
 * leaves the previous checkpoint intact and readable. */
Test(safetensors, crash_during_save_keeps_previous_file) {
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", tmpdir);
    tensor *ta, *tb;
    nn_tensor_dict *A = dict_of(1.0f, &ta), *B = dict_of(2.0f, &tb);
    cr_assert_eq(io_safetensors_save(A, NULL, path), TORCH_OK);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        io_atomic_write_set_fault_hook(die_at_fsync, NULL);
        io_safetensors_save(B, NULL, path);
        _exit(1);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child did not die where planned");
    nn_tensor_dict *back = io_safetensors_load(path, NULL);
    cr_assert_not_null(back, "%s", torch_last_error());
    cr_assert_eq(tensor_data_f32(nn_tensor_dict_get(back, "w"))[0], 1.0f);
    cr_assert_eq(count_temp_files(), 1, "the dead process's temporary file is all that remains");
    nn_tensor_dict_free(back);
    nn_tensor_dict_free(A);
    nn_tensor_dict_free(B);
    tensor_free(ta);
    tensor_free(tb);
    remove_tmpdir();
}

/* ---- the hardened reader ---------------------------------------------------------------------- */

/* A file with the given header text and n_data zero bytes of buffer. */
static uint8_t *craft(const char *header, uint64_t declared_len, size_t n_data, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + n_data;
    uint8_t *b = calloc(1, *size);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(declared_len >> (8 * i));
    memcpy(b + 8, header, h);
    return b;
}

static void expect_refused(const char *header, size_t n_data, const char *msg) {
    size_t size;
    uint8_t *b = craft(header, strlen(header), n_data, &size);
    torch_clear_error();
    nn_tensor_dict *d = io_safetensors_parse(b, size, "crafted.safetensors", NULL);
    cr_assert_null(d, "accepted: %s", header);
    cr_assert_eq(torch_last_status(), TORCH_ERR_FORMAT, "%s", header);
    cr_assert_not_null(strstr(torch_last_error(), "crafted.safetensors"), "%s", torch_last_error());
    cr_assert_not_null(strstr(torch_last_error(), msg), "header %s: got \"%s\", expected \"%s\"", header,
                       torch_last_error(), msg);
    free(b);
}

Test(safetensors, refuses_malformed_headers) {
    const char *T = "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]";
    char ok[256];
    snprintf(ok, sizeof ok, "{\"a\":{%s}}", T);
    size_t size;
    uint8_t *b = craft(ok, strlen(ok), 8, &size);
    nn_tensor_dict *d = io_safetensors_parse(b, size, "crafted.safetensors", NULL);
    cr_assert_not_null(d, "the well-formed base case: %s", torch_last_error());
    nn_tensor_dict_free(d);
    free(b);

    expect_refused("{\"a\":", 0, "not valid JSON (syntax error near byte 4 of the header, in a)");
    expect_refused("[1,2]", 0, "not a JSON object");
    expect_refused(" {}", 0, "not a JSON object");
    expect_refused("{}xx", 0, "trailing characters");
    expect_refused("{\"\xff\":1}", 0, "not valid UTF-8 (byte 0xff at byte 2 of the header)");
    expect_refused("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing field \"dtype\"");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "missing field \"shape\"");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing field \"data_offsets\"");
    expect_refused("{\"a\":3}", 0, "is not an object");
    expect_refused("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"F33\"");
    expect_refused("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "unsupported dtype \"F16\"");
    expect_refused("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is not a string");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                   "shape[0] is -2, not a non-negative integer");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
                   "shape[0] is 1.5, not a non-negative integer");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e30],\"data_offsets\":[0,8]}}", 8,
                   "shape[0] is 1e+30, not a non-negative integer (at most 2^53)");
    /* NaN and Infinity (Python's json writes them) are named, not a bare syntax error */
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,8]}}", 8,
                   "header is not valid JSON: a.shape[0] is NaN (expected a finite number; JSON has no NaN or "
                   "Infinity)");
    expect_refused("{\"a b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,Infinity]}}", 8,
                   "[\"a b\"].data_offsets[1] is Infinity");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8, "shape is not an array");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                   "has 9 dimensions");
    /* 2^31 * 2^31 * 4 bytes = 2^64 would overflow a u64 */
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}}", 8,
                   "too large");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9007199254740992,9007199254740992],"
                   "\"data_offsets\":[0,0]}}",
                   0, "too large");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
                   "two non-negative integers (got an array of 1)");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}}", 8,
                   "two non-negative integers (data_offsets[1] is -8; at most 2^53)");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, "out of range");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "out of range");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                   "hold 8 bytes, shape [3] of F32 needs 12");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, "overlaps");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "leaves a gap");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "cover 8 of the buffer's 12");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, "duplicate key \"a\"");
    expect_refused("{\"__metadata__\":{\"k\":1}}", 0, "is not a string");
    expect_refused("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    expect_refused("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate __metadata__ key");
}

Test(safetensors, refuses_bad_lengths) {
    uint8_t small[5] = {1, 2, 3, 4, 5};
    cr_assert_null(io_safetensors_parse(small, sizeof small, "f", NULL));
    cr_assert_not_null(strstr(torch_last_error(), "file too short"), "%s", torch_last_error());
    size_t size;
    uint8_t *b = craft("{}", 1000, 0, &size);
    cr_assert_null(io_safetensors_parse(b, size, "f", NULL));
    cr_assert_eq(torch_last_status(), TORCH_ERR_FORMAT);
    cr_assert_not_null(strstr(torch_last_error(), "header length 1000 exceeds the file size"), "%s", torch_last_error());
    free(b);
    b = craft("{}", (uint64_t)200 * 1000 * 1000, 0, &size);
    cr_assert_null(io_safetensors_parse(b, size, "f", NULL));
    cr_assert_not_null(strstr(torch_last_error(), "exceeds the limit"), "%s", torch_last_error());
    free(b);
    b = craft("{}", UINT64_MAX, 0, &size);
    cr_assert_null(io_safetensors_parse(b, size, "f", NULL));
    free(b);
    /* a missing file is an I/O error naming it */
    cr_assert_null(io_safetensors_load("/nonexistent/dir/file.safetensors", NULL));
    cr_assert_eq(torch_last_status(), TORCH_ERR_IO);
    cr_assert_not_null(strstr(torch_last_error(), "/nonexistent/dir/file.safetensors"));
}

/* Every truncation of the PyTorch file is refused; every single-byte corruption is either
 * refused with TORCH_ERR_FORMAT or parsed into a valid dict, never a crash (ASan checks reads). */
Test(safetensors, truncations_and_byte_flips) {
    size_t size;
    uint8_t *ref = read_all(FIXTURE, &size);
    for (size_t n = 0; n < size; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exactly n bytes, so ASan sees any over-read */
        memcpy(copy, ref, n);
        cr_assert_null(io_safetensors_parse(copy, n, "truncated", NULL), "prefix of %zu bytes accepted", n);
        cr_assert_eq(torch_last_status(), TORCH_ERR_FORMAT);
        free(copy);
    }
    const uint8_t values[] = {0x00, 0x20, 0x22, 0x2c, 0x30, 0x39, 0x5b, 0x7b, 0x7d, 0xff};
    int accepted = 0;
    for (size_t pos = 0; pos < size; pos++)
        for (size_t v = 0; v < sizeof values; v++) {
            uint8_t *copy = malloc(size);
            memcpy(copy, ref, size);
            copy[pos] = values[v];
            nn_tensor_dict *d = io_safetensors_parse(copy, size, "flipped", NULL);
            if (d) accepted++;
            else cr_assert_eq(torch_last_status(), TORCH_ERR_FORMAT);
            nn_tensor_dict_free(d);
            free(copy);
        }
    cr_assert_gt(accepted, 0, "data bytes may change freely");
    free(ref);
}

/* The loader reads only regular files, at most IO_SAFETENSORS_MAX_FILE bytes, and says why it
 * refuses: a FIFO without a writer used to block the open forever, a directory gave "error
 * reading", a missing file had no reason. Nothing is read from a refused file. */
Test(safetensors, load_refuses_special_and_oversized_files, .timeout = 60) {
    make_tmpdir();
    special_file cases[SPECIAL_FILES];
    special_files_make(cases, tmpdir, ".safetensors", IO_SAFETENSORS_MAX_FILE);
    for (size_t i = 0; i < SPECIAL_FILES; i++) {
        io_metadata *md = NULL;
        cr_assert_null(io_safetensors_load(cases[i].path, &md), "%s accepted", cases[i].path);
        cr_assert_null(md);
        const char *e = torch_last_error();
        cr_assert_eq(torch_last_status(), cases[i].status, "%s: %s", cases[i].path, e);
        cr_assert_not_null(strstr(e, cases[i].msg), "%s: got \"%s\", expected \"%s\"", cases[i].path, e,
                           cases[i].msg);
        cr_assert_eq(strncmp(e, "io_safetensors_load: ", 21), 0, "%s", e);
        cr_assert_not_null(strstr(e, cases[i].path), "%s", e);
    }
    remove_tmpdir();
}

/* A file whose header is the h bytes at header (raw NULs allowed), with n_data zero bytes of data. */
static uint8_t *craft_bytes(const char *header, size_t h, size_t n_data, size_t *size) {
    *size = 8 + h + n_data;
    uint8_t *b = calloc(1, *size);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    return b;
}

/* RFC 8259 forbids raw control characters (below 0x20, NUL included) inside strings, and a C
 * string cannot hold U+0000; cJSON accepted both, so "1.weight\0junk" (raw NUL) and
 * "1.weight\u0000junk" both loaded as "1.weight". Escaped control characters other than \u0000
 * are valid JSON and load; whitespace between tokens stays allowed. */
Test(safetensors, refuses_control_characters_and_nul_in_strings) {
    const char *T = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    struct {
        const char *key; /* the raw bytes between the key's quotes */
        size_t      len;
        const char *msg;
    } bad[] = {
        {"1.weight\0junk", 13, "the key \"1.weight\\x00junk\" contains a raw control character (0x00;"},
        {"1.weight\x01", 9, "contains a raw control character (0x01;"},
        {"a\tb", 3, "the key \"a\\x09b\" contains a raw control character (0x09;"},
        {"a\nb", 3, "(0x0a;"},
        {"1.weight\\u0000junk", 18, "the key \"1.weight\\u0000junk\" contains \\u0000"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char h[256];
        size_t n = 0;
        h[n++] = '{', h[n++] = '"';
        memcpy(h + n, bad[i].key, bad[i].len), n += bad[i].len;
        h[n++] = '"', h[n++] = ':';
        memcpy(h + n, T, strlen(T)), n += strlen(T);
        h[n++] = '}';
        size_t size;
        uint8_t *b = craft_bytes(h, n, 8, &size);
        nn_tensor_dict *d = io_safetensors_parse(b, size, "crafted.safetensors", NULL);
        cr_assert_null(d, "key %zu accepted (as \"%s\")", i, d && d->count ? d->items[0].name : "");
        cr_assert_eq(torch_last_status(), TORCH_ERR_FORMAT);
        const char *e = torch_last_error();
        cr_assert_not_null(strstr(e, "crafted.safetensors: header is not valid JSON: "), "%s", e);
        cr_assert_not_null(strstr(e, bad[i].msg), "key %zu: got \"%s\", expected \"%s\"", i, e, bad[i].msg);
        free(b);
    }
    /* in a metadata value, and in a tensor's dtype: said where */
    struct {
        const char *header;
        size_t      n_data;
        const char *msg;
    } values[] = {
        {"{\"__metadata__\":{\"k\":\"a\x1f\"}}", 0, "the string \"a\\x1f\" in __metadata__.k contains a raw control"},
        {"{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "the string \"a\\u0000b\" in __metadata__.k contains \\u0000"},
        {"{\"w\":{\"dtype\":\"F32\x02\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "in w.dtype contains a raw control"},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        expect_refused(values[i].header, values[i].n_data, values[i].msg);

    /* valid JSON that a C string holds: escaped control characters, whitespace between tokens */
    const char *ok = "{\n\t\"a\\u0001\\n\" : {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\r\n"
                     "\"__metadata__\":{\"k\":\"tab\\there\"}}";
    size_t size;
    uint8_t *b = craft(ok, strlen(ok), 8, &size);
    io_metadata *md = NULL;
    nn_tensor_dict *d = io_safetensors_parse(b, size, "crafted.safetensors", &md);
    cr_assert_not_null(d, "%s", torch_last_error());
    cr_assert_not_null(nn_tensor_dict_get(d, "a\x01\n"));
    cr_assert_str_eq(io_metadata_get(md, "k"), "tab\there");
    /* and the writer escapes them, so its files read back */
    uint8_t *out;
    size_t n;
    cr_assert_eq(io_safetensors_serialize(d, md, &out, &n), TORCH_OK);
    nn_tensor_dict *again = io_safetensors_parse(out, n, "again", NULL);
    cr_assert_not_null(again, "%s", torch_last_error());
    cr_assert_not_null(nn_tensor_dict_get(again, "a\x01\n"));
    nn_tensor_dict_free(again);
    free(out);
    nn_tensor_dict_free(d);
    io_metadata_free(md);
    free(b);
}
