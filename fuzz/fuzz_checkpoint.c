/* fuzz_checkpoint.c — libFuzzer harness for the checkpoint loader (optim_checkpoint_parse) with
 * a small model (Linear + BatchNorm1d), an SGD optimizer with two groups, StepLR and a
 * generator, rebuilt for every input so runs are deterministic.
 *
 * Any input must be refused (the objects then unchanged: checked on the model's weights) or
 * loaded. With CTORCH_FUZZ_SEED_DIR set, LLVMFuzzerInitialize writes a valid checkpoint of this
 * very setup there, as a seed (scripts/fuzz.sh does this). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/batch_norm.h"
#include "nn/container.h"
#include "nn/linear.h"
#include "optim/checkpoint.h"

typedef struct setup {
    torch_generator     gen;
    nn_module          *model;
    optim_sgd          *opt;
    optim_lr_scheduler *sched;
} setup;

static int build(setup *s) {
    s->gen = torch_generator_new(1);
    nn_module *mods[2] = {nn_linear(3, 2, true, &s->gen), nn_batch_norm1d(nn_batch_norm_options_default(2))};
    s->model = nn_sequential(2, mods);
    if (!s->model) return -1;
    nn_tensor_dict *p = nn_module_named_parameters(s->model), *decay = NULL, *no_decay = NULL;
    if (!p || optim_split_weight_decay(p, &decay, &no_decay) != TORCH_OK) return -1;
    optim_sgd_options o = optim_sgd_options_default(0.1);
    o.momentum = 0.9;
    o.weight_decay = 1e-3;
    s->opt = optim_sgd_new(decay, o);
    o.weight_decay = 0;
    if (!s->opt || optim_sgd_add_param_group(s->opt, no_decay, o) != TORCH_OK) return -1;
    s->sched = optim_step_lr_new(s->opt, 2, 0.5);
    nn_tensor_dict_free(p);
    nn_tensor_dict_free(decay);
    nn_tensor_dict_free(no_decay);
    return s->sched ? 0 : -1;
}

static void destroy(setup *s) {
    optim_lr_scheduler_free(s->sched);
    optim_sgd_free(s->opt);
    nn_module_free(s->model);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("CTORCH_FUZZ_SEED_DIR");
    if (!dir) return 0;
    setup s;
    if (build(&s) != 0) abort();
    /* give every parameter a momentum buffer, and the scheduler a position */
    for (int64_t i = 0; i < optim_sgd_num_params(s.opt); i++) {
        tensor *p = optim_sgd_param(s.opt, i, NULL);
        p->grad = torch_ones_like(p);
    }
    optim_sgd_step(s.opt);
    optim_lr_scheduler_step(s.sched);
    char path[4096];
    snprintf(path, sizeof path, "%s/valid.ckpt", dir);
    optim_training_state st = {.model = s.model, .optimizer = s.opt, .scheduler = s.sched, .generator = &s.gen,
                               .epoch = 1, .step = 1};
    if (optim_checkpoint_save(path, &st) != TORCH_OK) {
        fprintf(stderr, "fuzz_checkpoint: %s\n", torch_last_error());
        abort();
    }
    destroy(&s);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup s;
    if (build(&s) != 0) abort();
    tensor *w = nn_module_get_parameter(s.model, "0.weight");
    float before[6];
    memcpy(before, tensor_data_f32(w), sizeof before);
    optim_training_state st = {.model = s.model, .optimizer = s.opt, .scheduler = s.sched, .generator = &s.gen};
    if (optim_checkpoint_parse(data, size, "fuzz", &st) != TORCH_OK && memcmp(before, tensor_data_f32(w), sizeof before) != 0)
        abort(); /* a refused checkpoint changed the model */
    destroy(&s);
    return 0;
}
