/* test_checkpoint.c — whole-training-state checkpoints: a small CNN (conv, BatchNorm, dropout,
 * linear; SGD with two parameter groups, StepLR, a shuffling loader) trained 2 epochs in one run
 * equals, bit for bit, 1 epoch + save + load into freshly built objects + 1 epoch. Truncated and
 * corrupted checkpoints are refused with clear errors and leave every object unchanged, also
 * when the problem is found last (a model key missing, after the optimizer's state was read). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, mkfifo, ftruncate */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "data/data.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/pooling.h"
#include "io/io.h"
#include "optim/adam.h"
#include "optim/checkpoint.h"
#include "optim/sgd.h"
#include "special_files.h"

typedef struct run {
    torch_generator     gen; /* the training generator: init, shuffling, dropout */
    nn_module          *model;
    optim_optimizer    *opt;
    optim_lr_scheduler *sched;
    int64_t             step;
} run;

static void build(run *r, uint64_t seed, int64_t hidden_out) {
    r->gen = torch_generator_new(seed);
    r->step = 0;
    nn_conv2d_options co = nn_conv2d_options_default(1, 4, 3);
    co.padding[0] = co.padding[1] = 1;
    co.bias = false;
    co.generator = &r->gen;
    nn_module *mods[7] = {nn_conv2d(co),
                          nn_batch_norm2d(nn_batch_norm_options_default(4)),
                          nn_relu(),
                          nn_max_pool2d(nn_max_pool2d_options_default(2)),
                          nn_flatten(NN_FLATTEN_OPTIONS()),
                          nn_dropout(NN_DROPOUT_OPTIONS(.p = 0.2, .generator = &r->gen)),
                          nn_linear(NN_LINEAR_OPTIONS(.in_features = 4 * 14 * 14, .out_features = hidden_out,
                                                      .generator = &r->gen))};
    r->model = nn_sequential(7, mods);
    cr_assert_not_null(r->model, "%s", torch_last_error());
    nn_tensor_dict *params = nn_module_named_parameters(r->model), *decay, *no_decay;
    cr_assert_eq(optim_split_weight_decay(params, &decay, &no_decay), TORCH_OK);
    optim_sgd_options o = optim_sgd_options_default(0.05);
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    o.nesterov = true;
    r->opt = optim_sgd(decay, o);
    o.weight_decay = 0;
    cr_assert_eq(optim_sgd_add_param_group(r->opt, no_decay, o), TORCH_OK);
    r->sched = optim_step_lr(r->opt, 1, 0.5);
    cr_assert_not_null(r->sched);
    nn_tensor_dict_free(params);
    nn_tensor_dict_free(decay);
    nn_tensor_dict_free(no_decay);
}

static void destroy(run *r) {
    optim_lr_scheduler_free(r->sched);
    optim_free(r->opt);
    nn_module_free(r->model);
}

static void train_epoch(run *r, const data_dataset *ds) {
    data_dataloader *dl = data_dataloader_new(ds, 16, true, &r->gen);
    nn_module_train(r->model, true);
    tensor *x, *y;
    while (data_dataloader_next(dl, &x, &y) == TORCH_OK && x) {
        optim_zero_grad(r->opt);
        tensor *out = nn_module_forward(r->model, x);
        cr_assert_not_null(out, "%s", torch_last_error());
        tensor *loss = nnf_cross_entropy(out, y);
        cr_assert_not_null(loss, "%s", torch_last_error());
        cr_assert_eq(tensor_backward(loss, NULL, false), TORCH_OK, "%s", torch_last_error());
        cr_assert_eq(optim_step(r->opt), TORCH_OK);
        r->step++;
        tensor_free(loss);
        tensor_free(out);
        tensor_free(x);
        tensor_free(y);
    }
    data_dataloader_free(dl);
    cr_assert_eq(optim_lr_scheduler_step(r->sched), TORCH_OK);
}

static optim_training_state state_of(run *r, int64_t epoch) {
    return (optim_training_state){
        .model = r->model, .optimizer = r->opt, .scheduler = r->sched, .generator = &r->gen, .epoch = epoch, .step = r->step};
}

static size_t nbytes(const tensor *t) { return (size_t)t->numel * torch_dtype_size(t->dtype); }
static const void *bytes_of(const tensor *t) {
    return t->dtype == TORCH_INT64 ? (const void *)tensor_data_i64(t) : (const void *)tensor_data_f32(t);
}

/* Everything a load may change, copied. */
typedef struct snapshot {
    nn_tensor_dict *model;
    tensor         *bufs[16];
    double          lr[2];
    int64_t         sched_epoch;
    torch_generator gen;
} snapshot;

static snapshot take(run *r) {
    snapshot s = {0};
    nn_tensor_dict *sd = nn_module_state_dict(r->model);
    s.model = nn_tensor_dict_new();
    for (int64_t i = 0; i < sd->count; i++) {
        tensor *c = tensor_clone(sd->items[i].value);
        nn_tensor_dict_set(s.model, sd->items[i].name, c);
        tensor_free(c);
    }
    nn_tensor_dict_free(sd);
    for (int64_t i = 0; i < optim_num_params(r->opt); i++) {
        tensor *b = optim_state(r->opt, i, "momentum_buffer");
        s.bufs[i] = b ? tensor_clone(b) : NULL;
    }
    s.lr[0] = optim_get_lr(r->opt, 0);
    s.lr[1] = optim_get_lr(r->opt, 1);
    s.sched_epoch = optim_lr_scheduler_last_epoch(r->sched);
    s.gen = r->gen;
    return s;
}

/* Bit-identical to the snapshot? */
static void expect_same(run *r, const snapshot *s, const char *what) {
    nn_tensor_dict *sd = nn_module_state_dict(r->model);
    cr_assert_eq(sd->count, s->model->count);
    for (int64_t i = 0; i < sd->count; i++) {
        tensor *a = sd->items[i].value, *b = nn_tensor_dict_get(s->model, sd->items[i].name);
        cr_assert_eq(memcmp(bytes_of(a), bytes_of(b), nbytes(a)), 0, "%s: %s differs", what, sd->items[i].name);
    }
    nn_tensor_dict_free(sd);
    for (int64_t i = 0; i < optim_num_params(r->opt); i++) {
        tensor *b = optim_state(r->opt, i, "momentum_buffer");
        cr_assert_eq(b != NULL, s->bufs[i] != NULL, "%s: buffer %lld presence", what, (long long)i);
        if (b) cr_assert_eq(memcmp(bytes_of(b), bytes_of(s->bufs[i]), nbytes(b)), 0, "%s: buffer %lld", what, (long long)i);
    }
    cr_assert_eq(optim_get_lr(r->opt, 0), s->lr[0], "%s: lr", what);
    cr_assert_eq(optim_get_lr(r->opt, 1), s->lr[1], "%s: lr", what);
    cr_assert_eq(optim_lr_scheduler_last_epoch(r->sched), s->sched_epoch, "%s: scheduler", what);
    cr_assert_eq(memcmp(&r->gen, &s->gen, sizeof r->gen), 0, "%s: generator", what);
}

static void free_snapshot(snapshot *s) {
    nn_tensor_dict_free(s->model);
    for (int i = 0; i < 16; i++) tensor_free(s->bufs[i]);
}

static char tmpdir[64];

static data_dataset *data(void) {
    torch_generator dg = torch_generator_new(2024);
    data_dataset *ds = data_synthetic_shapes(96, &dg, DATA_FASHION_MNIST_MEAN, DATA_FASHION_MNIST_STD);
    cr_assert_not_null(ds);
    return ds;
}

Test(checkpoint, resume_is_bit_identical) {
    data_dataset *ds = data();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ctorch_ckpt_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    char path[128];
    snprintf(path, sizeof path, "%s/train.ckpt", tmpdir);

    run a;
    build(&a, 42, 10);
    train_epoch(&a, ds);
    train_epoch(&a, ds);

    run b;
    build(&b, 42, 10);
    train_epoch(&b, ds);
    optim_training_state sb = state_of(&b, 1);
    cr_assert_eq(optim_checkpoint_save(path, &sb), TORCH_OK, "%s", torch_last_error());
    destroy(&b);

    run c;
    build(&c, 999, 10); /* different initial weights and generator: everything must come from the file */
    optim_training_state sc = state_of(&c, 0);
    cr_assert_eq(optim_checkpoint_load(path, &sc), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(sc.epoch, 1);
    cr_assert_eq(sc.step, 6);
    c.step = sc.step;
    train_epoch(&c, ds);

    snapshot sa = take(&a);
    expect_same(&c, &sa, "2 epochs vs 1 + resume + 1");
    cr_assert_eq(c.step, a.step);
    free_snapshot(&sa);

    /* the file is a plain safetensors file with PyTorch's keys under "model." */
    io_metadata *md = NULL;
    nn_tensor_dict *raw = io_safetensors_load(path, &md);
    cr_assert_not_null(raw);
    cr_assert_not_null(nn_tensor_dict_get(raw, "model.1.num_batches_tracked"));
    cr_assert_eq(*tensor_data_i64(nn_tensor_dict_get(raw, "model.1.num_batches_tracked")), 6);
    cr_assert_not_null(nn_tensor_dict_get(raw, "optimizer.state.0.momentum_buffer"));
    cr_assert_str_eq(io_metadata_get(md, "epoch"), "1");
    io_metadata_free(md);
    nn_tensor_dict_free(raw);

    unlink(path);
    rmdir(tmpdir);
    destroy(&a);
    destroy(&c);
    data_dataset_free(ds);
}

/* The serialized checkpoint of a run after one epoch. */
static uint8_t *checkpoint_bytes(run *r, size_t *size, nn_tensor_dict **d, io_metadata **md) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ctorch_ckpt_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    char path[128];
    snprintf(path, sizeof path, "%s/c.ckpt", tmpdir);
    optim_training_state st = state_of(r, 1);
    cr_assert_eq(optim_checkpoint_save(path, &st), TORCH_OK);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*size);
    cr_assert_eq(fread(buf, 1, *size, f), *size);
    fclose(f);
    unlink(path);
    rmdir(tmpdir);
    *d = io_safetensors_parse(buf, *size, "c.ckpt", md);
    cr_assert_not_null(*d);
    return buf;
}

/* Loads modified bytes into r and expects refusal with msg and no change. */
static void expect_refused(run *r, const uint8_t *bytes, size_t size, torch_status status, const char *msg) {
    snapshot s = take(r);
    optim_training_state st = state_of(r, 77);
    torch_status got = optim_checkpoint_parse(bytes, size, "c.ckpt", &st);
    cr_assert_eq(got, status, "expected status %d for \"%s\", got %d: %s", status, msg, got, torch_last_error());
    cr_assert_not_null(strstr(torch_last_error(), msg), "got \"%s\", expected \"%s\"", torch_last_error(), msg);
    cr_assert_not_null(strstr(torch_last_error(), "optim_checkpoint_load"), "%s", torch_last_error());
    cr_assert_eq(st.epoch, 77);
    expect_same(r, &s, msg);
    free_snapshot(&s);
}

/* Re-serializes d with metadata key set to value (NULL: removed). */
static uint8_t *with_metadata(const nn_tensor_dict *d, const io_metadata *md, const char *key, const char *value,
                              size_t *size) {
    io_metadata *m = io_metadata_new();
    for (int64_t i = 0; i < md->count; i++)
        if (strcmp(md->items[i].key, key) != 0) io_metadata_set(m, md->items[i].key, md->items[i].value);
    if (value) io_metadata_set(m, key, value);
    uint8_t *out;
    cr_assert_eq(io_safetensors_serialize(d, m, &out, size), TORCH_OK);
    io_metadata_free(m);
    return out;
}

Test(checkpoint, refuses_truncated_and_corrupted_files) {
    data_dataset *ds = data();
    run src, dst;
    build(&src, 5, 10);
    train_epoch(&src, ds);
    build(&dst, 6, 10);
    train_epoch(&dst, ds); /* dst has buffers, lrs and a scheduler position of its own */
    size_t size;
    nn_tensor_dict *d;
    io_metadata *md;
    uint8_t *good = checkpoint_bytes(&src, &size, &d, &md);

    /* every prefix up to the end of the header, then a stride through the data */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | good[i];
    for (size_t n = 0; n < size; n += n < 8 + hlen + 8 ? 1 : 509) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, good, n);
        expect_refused(&dst, cut, n, TORCH_ERR_FORMAT, "c.ckpt");
        free(cut);
    }

    size_t n;
    uint8_t *b;
    struct {
        const char *key, *value;
        torch_status status;
        const char *msg;
    } cases[] = {
        {"ctorch.format", NULL, TORCH_ERR_FORMAT, "not a ctorch checkpoint"},
        {"ctorch.version", "3", TORCH_ERR_FORMAT, "unsupported checkpoint version 3 (this build reads 2)"},
        {"ctorch.version", "1", TORCH_ERR_FORMAT,
         "unsupported checkpoint version 1 (this build reads 2; version 1 came before optimizers other than SGD"},
        {"optimizer.type", "Adam", TORCH_ERR_KEY, "c.ckpt: the checkpoint's optimizer is Adam, this one is SGD"},
        {"optimizer.type", NULL, TORCH_ERR_FORMAT, "c.ckpt: the checkpoint has no optimizer state"},
        {"epoch", "-1", TORCH_ERR_FORMAT,
         "c.ckpt: epoch is \"-1\" (expected a non-negative integer of at most 18 digits)"},
        {"step", "1x", TORCH_ERR_FORMAT, "c.ckpt: step is \"1x\" (expected a non-negative integer"},
        {"step", NULL, TORCH_ERR_FORMAT, "c.ckpt: step is missing (expected a non-negative integer)"},
        {"generator", "0123", TORCH_ERR_FORMAT,
         "c.ckpt: generator state is \"0123\" (expected 4 groups of 16 lowercase hex digits separated by spaces"},
        {"generator", NULL, TORCH_ERR_FORMAT, "c.ckpt: generator state is missing (expected 4 groups"},
        {"optimizer.param_groups", "{", TORCH_ERR_FORMAT,
         "optimizer.param_groups is not valid JSON (syntax error near byte 1)"},
        {"optimizer.param_groups", "{}", TORCH_ERR_FORMAT, "optimizer.param_groups is not a JSON array"},
        {"optimizer.param_groups", "[] x", TORCH_ERR_FORMAT,
         "optimizer.param_groups is not valid JSON (syntax error near byte 3)"},
        {"optimizer.param_groups", "[{}]", TORCH_ERR_KEY, "the checkpoint has 1 parameter groups, the optimizer 2"},
        {"optimizer.param_groups", "[{},{}]", TORCH_ERR_FORMAT,
         "optimizer.param_groups[0].lr is missing (expected a finite number)"},
        {"optimizer.param_groups", "[1,2]", TORCH_ERR_FORMAT, "optimizer.param_groups[0] is not a JSON object"},
        {"scheduler", "{\"kind\":\"CosineAnnealingLR\",\"last_epoch\":1,\"step_count\":2,\"base_lrs\":[1,1],"
                      "\"last_lrs\":[1,1]}",
         TORCH_ERR_KEY, "c.ckpt: scheduler is a CosineAnnealingLR, this scheduler is a StepLR"},
        {"scheduler", "{\"kind\":\"StepLR\",\"last_epoch\":1,\"step_count\":2,\"base_lrs\":[1],\"last_lrs\":[1,1]}",
         TORCH_ERR_FORMAT, "scheduler.base_lrs has 1 entries (expected 2, one per parameter group)"},
        {"scheduler", "[]", TORCH_ERR_FORMAT, "c.ckpt: scheduler is not a JSON object"},
        {"scheduler", "{\"kind\":1}", TORCH_ERR_FORMAT,
         "scheduler.kind is 1 (expected \"StepLR\")"},
        {"scheduler", NULL, TORCH_ERR_FORMAT, "no scheduler state"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b = with_metadata(d, md, cases[i].key, cases[i].value, &n);
        expect_refused(&dst, b, n, cases[i].status, cases[i].msg);
        free(b);
    }

    /* A negative lr passes parsing and is refused by the optimizer's own check. */
    const char *groups = io_metadata_get(md, "optimizer.param_groups");
    char *bad = malloc(strlen(groups) + 2);
    const char *lr = strstr(groups, "\"lr\":");
    size_t pre = (size_t)(lr - groups) + 5;
    memcpy(bad, groups, pre);
    bad[pre] = '-';
    strcpy(bad + pre + 1, groups + pre);
    b = with_metadata(d, md, "optimizer.param_groups", bad, &n);
    expect_refused(&dst, b, n, TORCH_ERR_INVALID_ARGUMENT, "optim_checkpoint_load: c.ckpt: ");
    expect_refused(&dst, b, n, TORCH_ERR_INVALID_ARGUMENT, "Invalid learning rate: -0.025");
    free(b);
    free(bad);

    /* A model key missing: found last, after optimizer and scheduler state were read and checked;
     * none of it is installed. */
    nn_tensor_dict *less = nn_tensor_dict_new();
    for (int64_t i = 0; i < d->count; i++)
        if (strcmp(d->items[i].name, "model.1.running_var") != 0) nn_tensor_dict_set(less, d->items[i].name, d->items[i].value);
    cr_assert_eq(io_safetensors_serialize(less, md, &b, &n), TORCH_OK);
    expect_refused(&dst, b, n, TORCH_ERR_KEY, "1.running_var");
    expect_refused(&dst, b, n, TORCH_ERR_KEY, "optim_checkpoint_load: c.ckpt: ");
    free(b);
    /* an unexpected top-level key */
    tensor *extra = torch_zeros(TORCH_SHAPE(1));
    nn_tensor_dict_set(less, "model.1.running_var", nn_tensor_dict_get(d, "model.1.running_var"));
    nn_tensor_dict_set(less, "stray", extra);
    cr_assert_eq(io_safetensors_serialize(less, md, &b, &n), TORCH_OK);
    expect_refused(&dst, b, n, TORCH_ERR_FORMAT, "unexpected key \"stray\"");
    free(b);
    tensor_free(extra);
    nn_tensor_dict_free(less);

    /* a model of another shape: refused by name, nothing changes */
    run other;
    build(&other, 6, 12);
    train_epoch(&other, ds);
    expect_refused(&other, good, size, TORCH_ERR_KEY, "size mismatch");
    destroy(&other);

    /* a plain state_dict file is not a checkpoint */
    nn_tensor_dict *sd = nn_module_state_dict(src.model);
    cr_assert_eq(io_safetensors_serialize(sd, NULL, &b, &n), TORCH_OK);
    expect_refused(&dst, b, n, TORCH_ERR_FORMAT, "not a ctorch checkpoint");
    free(b);
    nn_tensor_dict_free(sd);

    /* and the untouched bytes load */
    optim_training_state st = state_of(&dst, 0);
    cr_assert_eq(optim_checkpoint_parse(good, size, "c.ckpt", &st), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(memcmp(&dst.gen, &src.gen, sizeof src.gen), 0);

    cr_assert_eq(optim_checkpoint_load("/nonexistent/c.ckpt", &st), TORCH_ERR_IO);
    cr_assert_not_null(strstr(torch_last_error(), "/nonexistent/c.ckpt"));

    free(good);
    nn_tensor_dict_free(d);
    io_metadata_free(md);
    destroy(&src);
    destroy(&dst);
    data_dataset_free(ds);
}

/* optim_checkpoint_load reads what io_safetensors_load reads: a regular file of at most
 * IO_SAFETENSORS_MAX_FILE bytes. It used to read any file to its end (/dev/zero until memory ran
 * out; a FIFO without a writer blocked it forever; a directory gave "error reading"). Each
 * refusal names the function and the file, says what was expected, and changes nothing. */
Test(checkpoint, load_refuses_devices_fifos_directories_and_oversized_files, .timeout = 60) {
    data_dataset *ds = data();
    run r;
    build(&r, 7, 10);
    train_epoch(&r, ds);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ctorch_ckpt_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    special_file cases[SPECIAL_FILES];
    special_files_make(cases, tmpdir, ".ckpt", IO_SAFETENSORS_MAX_FILE);
    for (size_t i = 0; i < SPECIAL_FILES; i++) {
        snapshot s = take(&r);
        optim_training_state st = state_of(&r, 77);
        torch_status got = optim_checkpoint_load(cases[i].path, &st);
        const char *e = torch_last_error();
        cr_assert_eq(got, cases[i].status, "%s: status %d: %s", cases[i].path, got, e);
        cr_assert_not_null(strstr(e, cases[i].msg), "%s: got \"%s\", expected \"%s\"", cases[i].path, e,
                           cases[i].msg);
        cr_assert_eq(strncmp(e, "optim_checkpoint_load: ", 23), 0, "%s", e);
        cr_assert_not_null(strstr(e, cases[i].path), "%s", e);
        cr_assert_eq(st.epoch, 77);
        expect_same(&r, &s, cases[i].path);
        free_snapshot(&s);
    }
    special_files_remove(cases);
    rmdir(tmpdir);
    destroy(&r);
    data_dataset_free(ds);
}

/* Each refusal says which value is wrong, what it holds and what was expected. A NaN learning
 * rate (as Python's json writes it) was reported as "param_groups is not a JSON array", an
 * infinite or mistyped one as "param_groups[0] is malformed", a wrong scheduler entry as
 * "learning rates are malformed", and errors from the optimizer or the model did not name the
 * file. The JSON metadata is held to RFC 8259 as the header is: a raw control character inside a
 * string (escaped in the header, so it reaches the inner JSON raw) and \u0000 are refused (cJSON
 * took "StepLR\u0000junk" as "StepLR" and loaded). */
Test(checkpoint, refusals_name_the_value_and_what_was_expected) {
    data_dataset *ds = data();
    run src, dst;
    build(&src, 5, 10);
    train_epoch(&src, ds);
    build(&dst, 6, 10);
    train_epoch(&dst, ds);
    size_t size, n;
    nn_tensor_dict *d;
    io_metadata *md;
    uint8_t *good = checkpoint_bytes(&src, &size, &d, &md);
    struct {
        const char *key;  /* metadata entry */
        const char *from; /* its text from here up to the next ',', '}' or ']' is replaced */
        const char *to;
        torch_status status;
        const char *msg;
    } cases[] = {
        {"optimizer.param_groups", "\"lr\":", "\"lr\":NaN", TORCH_ERR_FORMAT,
         "c.ckpt: optimizer.param_groups is not valid JSON: [0].lr is NaN (expected a finite number; JSON has no NaN "
         "or Infinity)"},
        {"optimizer.param_groups", "\"lr\":", "\"lr\":-Infinity", TORCH_ERR_FORMAT, "[0].lr is -Infinity (expected a"},
        {"optimizer.param_groups", "\"lr\":", "\"lr\":1e999", TORCH_ERR_FORMAT,
         "c.ckpt: optimizer.param_groups[0].lr is inf (expected a finite number)"},
        {"optimizer.param_groups", "\"lr\":", "\"lr\":\"0.1\"", TORCH_ERR_FORMAT,
         "optimizer.param_groups[0].lr is the string \"0.1\" (expected a finite number)"},
        {"optimizer.param_groups", "\"lr\":", "\"lr\":null", TORCH_ERR_FORMAT,
         "optimizer.param_groups[0].lr is null (expected a finite number)"},
        {"optimizer.param_groups", "},{\"lr\":", "},{\"lr\":[1]", TORCH_ERR_FORMAT,
         "optimizer.param_groups[1].lr is an array (expected a finite number)"},
        {"optimizer.param_groups", "\"nesterov\":", "\"nesterov\":1", TORCH_ERR_FORMAT,
         "optimizer.param_groups[0].nesterov is 1 (expected true or false)"},
        {"optimizer.param_groups", "\"params\":", "\"params\":1.5", TORCH_ERR_FORMAT,
         "optimizer.param_groups[0].params is 1.5 (expected a non-negative integer)"},
        {"optimizer.param_groups", "\"lr\":", "\"lr\":0.1 x", TORCH_ERR_FORMAT,
         "optimizer.param_groups is not valid JSON (syntax error near byte 11, in [0].lr)"},
        {"scheduler", "\"base_lrs\":[", "\"base_lrs\":[NaN", TORCH_ERR_FORMAT,
         "c.ckpt: scheduler is not valid JSON: base_lrs[0] is NaN (expected a finite number;"},
        {"scheduler", "\"last_lrs\":[", "\"last_lrs\":[\"x\"", TORCH_ERR_FORMAT,
         "c.ckpt: scheduler.last_lrs[0] is the string \"x\" (expected a finite number)"},
        {"scheduler", "\"last_epoch\":", "\"last_epoch\":-1", TORCH_ERR_FORMAT,
         "c.ckpt: scheduler.last_epoch is -1 (expected a non-negative integer)"},
        {"scheduler", "\"kind\":", "\"kind\":\"StepLR\\u0000junk\"", TORCH_ERR_FORMAT,
         "scheduler is not valid JSON: the string \"StepLR\\u0000junk\" in kind contains \\u0000"},
        {"scheduler", "\"kind\":", "\"kind\":\"Step\x01LR\"", TORCH_ERR_FORMAT,
         "scheduler is not valid JSON: the string \"Step\\x01LR\" in kind contains a raw control character (0x01;"},
        {"optimizer.param_groups", "\"lr\":", "\"l\x1fr\":0.1", TORCH_ERR_FORMAT,
         "optimizer.param_groups is not valid JSON: the key \"l\\x1fr\" in [0] contains a raw control character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *text = io_metadata_get(md, cases[i].key), *at = strstr(text, cases[i].from);
        cr_assert_not_null(at, "%s has no %s: %s", cases[i].key, cases[i].from, text);
        const char *rest = at + strlen(cases[i].from);
        rest += strcspn(rest, ",}]");
        char edited[2048];
        snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - text), text, cases[i].to, rest);
        uint8_t *b = with_metadata(d, md, cases[i].key, edited, &n);
        expect_refused(&dst, b, n, cases[i].status, cases[i].msg);
        free(b);
    }
    free(good);
    nn_tensor_dict_free(d);
    io_metadata_free(md);
    destroy(&src);
    destroy(&dst);
    data_dataset_free(ds);
}

/* ---- any optimizer, any schedule -------------------------------------------------------------------- */

/* A small model and one optimizer of each kind over it in two groups (weight decay on the
 * weights only), with a warm-up-then-cosine schedule stepped after every optimizer step. */
typedef struct small_run {
    torch_generator     gen;
    nn_module          *model;
    optim_optimizer    *opt;
    optim_lr_scheduler *sched;
} small_run;

static void build_small(small_run *r, int kind, uint64_t seed) {
    r->gen = torch_generator_new(seed);
    nn_module *mods[4] = {nn_linear(NN_LINEAR_OPTIONS(.in_features = 6, .out_features = 5, .generator = &r->gen)),
                          nn_batch_norm1d(nn_batch_norm_options_default(5)), nn_relu(),
                          nn_linear(NN_LINEAR_OPTIONS(.in_features = 5, .out_features = 3, .generator = &r->gen))};
    r->model = nn_sequential(4, mods);
    cr_assert_not_null(r->model);
    nn_tensor_dict *params = nn_module_named_parameters(r->model), *decay, *no_decay;
    cr_assert_eq(optim_split_weight_decay(params, &decay, &no_decay), TORCH_OK);
    if (kind == 0) {
        optim_sgd_options o = optim_sgd_options_default(0.1);
        o.momentum = 0.9;
        o.nesterov = true;
        o.weight_decay = 1e-3;
        r->opt = optim_sgd(decay, o);
        o.weight_decay = 0;
        cr_assert_eq(optim_sgd_add_param_group(r->opt, no_decay, o), TORCH_OK);
    } else {
        optim_adam_options o = kind == 1 ? OPTIM_ADAM_OPTIONS(.lr = 0.01, .amsgrad = true, .weight_decay = 1e-3)
                                         : OPTIM_ADAMW_OPTIONS(.lr = 0.01);
        r->opt = kind == 1 ? optim_adam(decay, o) : optim_adamw(decay, o);
        o.weight_decay = 0;
        cr_assert_eq(optim_adam_add_param_group(r->opt, no_decay, o), TORCH_OK);
    }
    cr_assert_not_null(r->opt, "%s", torch_last_error());
    optim_lr_scheduler *warm = optim_linear_lr(r->opt, 0.1, 1.0, 3), *cos = optim_cosine_annealing_lr(r->opt, 7, 1e-4);
    optim_lr_scheduler *pair[2] = {warm, cos};
    r->sched = optim_sequential_lr(r->opt, pair, 2, (const int64_t[]){3});
    cr_assert_not_null(r->sched, "%s", torch_last_error());
    nn_tensor_dict_free(params);
    nn_tensor_dict_free(decay);
    nn_tensor_dict_free(no_decay);
}

static void destroy_small(small_run *r) {
    optim_lr_scheduler_free(r->sched);
    optim_free(r->opt);
    nn_module_free(r->model);
}

/* Optimizer steps k0..k1-1 on batch k of a fixed stream (the same for every run). */
static void steps_small(small_run *r, int k0, int k1) {
    nn_module_train(r->model, true);
    for (int k = k0; k < k1; k++) {
        torch_generator g = torch_generator_new(1000 + (uint64_t)k);
        tensor *x = torch_randn(&g, TORCH_SHAPE(8, 6)), *y = torch_randn(&g, TORCH_SHAPE(8, 3));
        optim_zero_grad(r->opt);
        tensor *out = nn_module_forward(r->model, x), *loss = out ? nnf_mse_loss(out, y) : NULL;
        cr_assert_not_null(loss, "%s", torch_last_error());
        cr_assert_eq(tensor_backward(loss, NULL, false), TORCH_OK);
        cr_assert_eq(optim_step(r->opt), TORCH_OK);
        cr_assert_eq(optim_lr_scheduler_step(r->sched), TORCH_OK);
        tensor_free(loss);
        tensor_free(out);
        tensor_free(x);
        tensor_free(y);
    }
}

/* Model state_dict, optimizer state_dict and lrs of two runs: the same bits. */
static void expect_identical(small_run *a, small_run *b, const char *what) {
    nn_tensor_dict *da[2] = {nn_module_state_dict(a->model), optim_state_dict(a->opt)};
    nn_tensor_dict *db[2] = {nn_module_state_dict(b->model), optim_state_dict(b->opt)};
    for (int w = 0; w < 2; w++) {
        cr_assert_eq(da[w]->count, db[w]->count, "%s: %s entries", what, w ? "optimizer" : "model");
        for (int64_t i = 0; i < da[w]->count; i++) {
            tensor *ta = da[w]->items[i].value, *tb = db[w]->items[i].value;
            cr_assert_str_eq(da[w]->items[i].name, db[w]->items[i].name);
            cr_assert_eq(memcmp(bytes_of(ta), bytes_of(tb), nbytes(ta)), 0, "%s: %s differs", what, da[w]->items[i].name);
        }
        nn_tensor_dict_free(da[w]);
        nn_tensor_dict_free(db[w]);
    }
    for (int g = 0; g < 2; g++) cr_assert_eq(optim_get_lr(a->opt, g), optim_get_lr(b->opt, g), "%s: lr", what);
    char *ja = optim_lr_scheduler_state_json(a->sched), *jb = optim_lr_scheduler_state_json(b->sched);
    cr_assert_str_eq(ja, jb, "%s: scheduler", what);
    free(ja);
    free(jb);
}

/* 5 steps, save, load into freshly built objects, 5 more steps: the bits of 10 straight steps,
 * for SGD, Adam and AdamW (with the warm-up schedule's settings and position in the file). */
Test(checkpoint, resume_is_bit_identical_for_every_optimizer) {
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/ctorch_ckpt_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/any.ckpt", dir);
    static const char *const names[3] = {"SGD", "Adam", "AdamW"};
    for (int kind = 0; kind < 3; kind++) {
        small_run straight, first, resumed;
        build_small(&straight, kind, 7);
        steps_small(&straight, 0, 10);

        build_small(&first, kind, 7);
        steps_small(&first, 0, 5);
        optim_training_state s1 = {.model = first.model, .optimizer = first.opt, .scheduler = first.sched, .epoch = 5};
        cr_assert_eq(optim_checkpoint_save(path, &s1), TORCH_OK, "%s", torch_last_error());
        destroy_small(&first);

        build_small(&resumed, kind, 99); /* other weights: everything must come from the file */
        optim_training_state s2 = {.model = resumed.model, .optimizer = resumed.opt, .scheduler = resumed.sched};
        cr_assert_eq(optim_checkpoint_load(path, &s2), TORCH_OK, "%s", torch_last_error());
        cr_assert_eq(s2.epoch, 5);
        steps_small(&resumed, 5, 10);
        expect_identical(&straight, &resumed, names[kind]);

        /* the file names its optimizer; loading it into another kind is refused, changing nothing */
        small_run other;
        build_small(&other, (kind + 1) % 3, 99);
        optim_training_state s3 = {.model = other.model, .optimizer = other.opt, .scheduler = other.sched};
        cr_assert_eq(optim_checkpoint_load(path, &s3), TORCH_ERR_KEY);
        char want[96];
        snprintf(want, sizeof want, "the checkpoint's optimizer is %s, this one is %s", names[kind],
                 names[(kind + 1) % 3]);
        cr_assert_not_null(strstr(torch_last_error(), want), "%s", torch_last_error());
        cr_assert_null(optim_state(other.opt, 0, kind == 2 ? "momentum_buffer" : "exp_avg"));
        destroy_small(&other);
        destroy_small(&straight);
        destroy_small(&resumed);
    }
    unlink(path);
    rmdir(dir);
}
