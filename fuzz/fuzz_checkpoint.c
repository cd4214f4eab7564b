/* fuzz_checkpoint.c — libFuzzer harness for the checkpoint loader with a small model (Linear +
 * BatchNorm1d) and a generator, in two set-ups rebuilt for every input so runs are
 * deterministic: an SGD optimizer with two groups and StepLR, and AdamW with amsgrad (four state
 * tensors per parameter, a scalar step) and two groups under a SequentialLR (LinearLR, then
 * StepLR: nested schedule JSON). Every input is loaded into both.
 *
 * Each input is written to a file and loaded the way train_cnn --resume loads it
 * (optim_checkpoint_load: open, the regular-file and size checks of io_read_file, then the
 * parser), then parsed again from memory (optim_checkpoint_parse, under the same name). Any
 * input must be refused (the objects then unchanged: checked on the model's weights; never an
 * I/O error, since the file is a readable regular file) or loaded, and both paths must agree:
 * the same status, the same message, and a loaded checkpoint loads again. The size limit itself
 * (IO_SAFETENSORS_MAX_FILE, 16 GiB) is beyond any input libFuzzer makes; test_checkpoint checks
 * it on a sparse file. With CTORCH_FUZZ_SEED_DIR set, LLVMFuzzerInitialize writes a valid
 * checkpoint of each set-up there, as seeds (scripts/fuzz.sh does this). */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/batch_norm.h"
#include "nn/container.h"
#include "nn/linear.h"
#include "optim/adam.h"
#include "optim/checkpoint.h"
#include "optim/sgd.h"

typedef struct setup {
    torch_generator     gen;
    nn_module          *model;
    optim_optimizer    *opt;
    optim_lr_scheduler *sched;
} setup;

static int build(setup *s, int flavour) {
    s->gen = torch_generator_new(1);
    nn_module *mods[2] = {nn_linear(NN_LINEAR_OPTIONS(.in_features = 3, .out_features = 2, .generator = &s->gen)),
                          nn_batch_norm1d(nn_batch_norm_options_default(2))};
    s->model = nn_sequential(2, mods);
    if (!s->model) return -1;
    nn_tensor_dict *p = nn_module_named_parameters(s->model), *decay = NULL, *no_decay = NULL;
    if (!p || optim_split_weight_decay(p, &decay, &no_decay) != TORCH_OK) return -1;
    if (flavour == 0) {
        optim_sgd_options o = optim_sgd_options_default(0.1);
        o.momentum = 0.9;
        o.weight_decay = 1e-3;
        s->opt = optim_sgd(decay, o);
        o.weight_decay = 0;
        if (!s->opt || optim_sgd_add_param_group(s->opt, no_decay, o) != TORCH_OK) return -1;
        s->sched = optim_step_lr(s->opt, 2, 0.5);
    } else {
        optim_adam_options o = OPTIM_ADAMW_OPTIONS(.amsgrad = true);
        s->opt = optim_adamw(decay, o);
        o.weight_decay = 0;
        if (!s->opt || optim_adam_add_param_group(s->opt, no_decay, o) != TORCH_OK) return -1;
        optim_lr_scheduler *pair[2] = {optim_linear_lr(s->opt, 0.1, 1.0, 2), optim_step_lr(s->opt, 2, 0.5)};
        s->sched = pair[0] && pair[1] ? optim_sequential_lr(s->opt, pair, 2, (const int64_t[]){2}) : NULL;
    }
    nn_tensor_dict_free(p);
    nn_tensor_dict_free(decay);
    nn_tensor_dict_free(no_decay);
    return s->sched ? 0 : -1;
}

static void destroy(setup *s) {
    optim_lr_scheduler_free(s->sched);
    optim_free(s->opt);
    nn_module_free(s->model);
}

/* The file each input is written to (one per process, removed at exit). */
static char input_path[4096];

static void remove_input(void) { unlink(input_path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(input_path, sizeof input_path, "%s/ctorch-fuzz-checkpoint.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(input_path);
    if (fd < 0) {
        perror("fuzz_checkpoint: mkstemp");
        abort();
    }
    close(fd);
    atexit(remove_input);
    const char *dir = getenv("CTORCH_FUZZ_SEED_DIR");
    if (!dir) return 0;
    for (int flavour = 0; flavour < 2; flavour++) {
        setup s;
        if (build(&s, flavour) != 0) abort();
        /* give every parameter its state, and the scheduler a position past the milestone */
        for (int64_t i = 0; i < optim_num_params(s.opt); i++) {
            tensor *p = optim_param(s.opt, i, NULL);
            p->grad = torch_ones_like(p);
        }
        for (int k = 0; k < 3; k++) {
            optim_step(s.opt);
            optim_lr_scheduler_step(s.sched);
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/valid_%s.ckpt", dir, flavour ? "adamw" : "sgd");
        optim_training_state st = {.model = s.model, .optimizer = s.opt, .scheduler = s.sched, .generator = &s.gen,
                                   .epoch = 3, .step = 3};
        if (optim_checkpoint_save(path, &st) != TORCH_OK) {
            fprintf(stderr, "fuzz_checkpoint: %s\n", torch_last_error());
            abort();
        }
        destroy(&s);
    }
    return 0;
}

static void write_input(const uint8_t *data, size_t size) {
    int fd = open(input_path, O_WRONLY | O_TRUNC);
    if (fd < 0) abort();
    for (size_t done = 0; done < size;) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    close(fd);
}

/* Loads the input into one set-up, through the file and through memory. */
static void load_into(int flavour, const uint8_t *data, size_t size) {
    setup s;
    if (build(&s, flavour) != 0) abort();
    tensor *w = nn_module_get_parameter(s.model, "0.weight");
    float before[6];
    memcpy(before, tensor_data_f32(w), sizeof before);
    char *sched_before = optim_lr_scheduler_state_json(s.sched);
    optim_training_state st = {.model = s.model, .optimizer = s.opt, .scheduler = s.sched, .generator = &s.gen};
    torch_status from_file = optim_checkpoint_load(input_path, &st);
    char message[512];
    snprintf(message, sizeof message, "%s", torch_last_error());
    if (from_file == TORCH_ERR_IO) abort(); /* a readable regular file: the bytes decide */
    if (from_file != TORCH_OK) { /* a refused checkpoint changed nothing */
        char *sched_after = optim_lr_scheduler_state_json(s.sched);
        if (memcmp(before, tensor_data_f32(w), sizeof before) != 0 || strcmp(sched_before, sched_after) != 0)
            abort();
        free(sched_after);
    }
    free(sched_before);
    /* the bytes path, under the same name: the same verdict and the same words */
    torch_status from_memory = optim_checkpoint_parse(data, size, input_path, &st);
    if (from_memory != from_file) abort();
    if (from_file != TORCH_OK && strcmp(message, torch_last_error()) != 0) abort();
    destroy(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    write_input(data, size);
    load_into(0, data, size);
    load_into(1, data, size);
    return 0;
}
