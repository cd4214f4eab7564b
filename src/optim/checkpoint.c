/* checkpoint.c — training state <-> one safetensors file (see checkpoint.h for the layout). */
#include "checkpoint.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../io/io.h"
#include "optimizer_impl.h"
#include "state_json.h"

#define FORMAT_NAME "checkpoint"
#define FORMAT_VERSION "2"

/* ---- saving ------------------------------------------------------------------------------------- */

/* Adds every entry of src to dst under prefix. */
static torch_status add_prefixed(nn_tensor_dict *dst, const nn_tensor_dict *src, const char *prefix) {
    for (int64_t i = 0; i < src->count; i++) {
        size_t n = strlen(prefix) + strlen(src->items[i].name) + 1;
        char *key = malloc(n);
        if (!key) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "optim_checkpoint_save: out of memory");
        snprintf(key, n, "%s%s", prefix, src->items[i].name);
        torch_status st = nn_tensor_dict_set(dst, key, src->items[i].value);
        free(key);
        if (st != TORCH_OK) return st;
    }
    return TORCH_OK;
}

/* One field of a group's options into obj. */
static bool add_field(cJSON *obj, const optim_field *f, const void *options) {
    const char *at = (const char *)options + f->offset;
    switch (f->kind) {
    case OPTIM_FIELD_DOUBLE: return cJSON_AddNumberToObject(obj, f->name, *(const double *)at) != NULL;
    case OPTIM_FIELD_BOOL: return cJSON_AddBoolToObject(obj, f->name, *(const bool *)at) != NULL;
    case OPTIM_FIELD_PAIR: {
        cJSON *pair = cJSON_CreateDoubleArray((const double *)at, 2);
        if (pair && cJSON_AddItemToObject(obj, f->name, pair)) return true;
        cJSON_Delete(pair);
        return false;
    }
    }
    return false;
}

/* JSON text of the optimizer's groups, PyTorch's param_groups with a count for "params"
 * (malloc'ed), or NULL on out-of-memory. cJSON prints 17 significant digits when 15 do not read
 * back exactly. */
static char *groups_json(const optim_optimizer *opt) {
    cJSON *arr = cJSON_CreateArray();
    bool ok = arr != NULL;
    for (int g = 0; ok && g < optim_num_groups(opt); g++) {
        cJSON *obj = cJSON_CreateObject();
        ok = obj && cJSON_AddItemToArray(arr, obj);
        if (!ok) cJSON_Delete(obj);
        for (int f = 0; ok && f < opt->ops->n_fields; f++) ok = add_field(obj, &opt->ops->fields[f], opt->groups[g].options);
        ok = ok && cJSON_AddNumberToObject(obj, "params", (double)optim_group_size(opt, g));
    }
    char *s = ok ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return s;
}

torch_status optim_checkpoint_save(const char *path, const optim_training_state *state) {
    static const char *fname = "optim_checkpoint_save";
    if (!path || !state || !state->model)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: path, state and state->model are required", fname);
    if (state->epoch < 0 || state->step < 0)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: epoch and step must be non-negative", fname);
    nn_tensor_dict *all = nn_tensor_dict_new(), *sd = NULL, *os = NULL;
    io_metadata *md = io_metadata_new();
    char *gj = NULL, *sj = NULL;
    torch_status st = all && md ? TORCH_OK : torch_last_status();
    if (st == TORCH_OK) st = (sd = nn_module_state_dict(state->model)) ? add_prefixed(all, sd, "model.") : torch_last_status();
    if (st == TORCH_OK && state->optimizer)
        st = (os = optim_state_dict(state->optimizer)) ? add_prefixed(all, os, "optimizer.") : torch_last_status();
    char num[32];
    if (st == TORCH_OK) st = io_metadata_set(md, "ctorch.format", FORMAT_NAME);
    if (st == TORCH_OK) st = io_metadata_set(md, "ctorch.version", FORMAT_VERSION);
    snprintf(num, sizeof num, "%" PRId64, state->epoch);
    if (st == TORCH_OK) st = io_metadata_set(md, "epoch", num);
    snprintf(num, sizeof num, "%" PRId64, state->step);
    if (st == TORCH_OK) st = io_metadata_set(md, "step", num);
    if (st == TORCH_OK && state->generator) {
        char gen[80];
        const uint64_t *s = state->generator->s;
        snprintf(gen, sizeof gen, "%016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64, s[0], s[1], s[2], s[3]);
        st = io_metadata_set(md, "generator", gen);
    }
    if (st == TORCH_OK && state->optimizer) st = io_metadata_set(md, "optimizer.type", optim_name(state->optimizer));
    if (st == TORCH_OK && state->optimizer)
        st = (gj = groups_json(state->optimizer)) ? io_metadata_set(md, "optimizer.param_groups", gj)
                                                  : torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (st == TORCH_OK && state->scheduler)
        st = (sj = optim_lr_scheduler_state_json(state->scheduler)) ? io_metadata_set(md, "scheduler", sj)
                                                     : torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (st == TORCH_OK) st = io_safetensors_save(all, md, path);
    cJSON_free(gj);
    cJSON_free(sj);
    nn_tensor_dict_free(os);
    nn_tensor_dict_free(sd);
    nn_tensor_dict_free(all);
    io_metadata_free(md);
    return st;
}

/* ---- loading ------------------------------------------------------------------------------------ */

#define LOAD "optim_checkpoint_load"

/* Metadata entry key as a strict non-negative decimal (no sign, no spaces, at most 18 digits,
 * so it fits an int64); otherwise the error says what the entry holds and what was expected. */
static bool parse_count(const char *name, const io_metadata *md, const char *key, int64_t *out) {
    const char *s = io_metadata_get(md, key);
    bool ok = s && *s && strlen(s) <= 18;
    int64_t v = 0;
    for (const char *p = s; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9';
        if (ok) v = v * 10 + (*p - '0');
    }
    if (ok) {
        *out = v;
        return true;
    }
    if (!s)
        torch_error(TORCH_ERR_FORMAT, "%s: %s: %s is missing (expected a non-negative integer)", LOAD, name, key);
    else
        torch_error(TORCH_ERR_FORMAT, "%s: %s: %s is \"%.40s\" (expected a non-negative integer of at most 18 digits)",
                    LOAD, name, key, s);
    return false;
}

#define GENERATOR_EXPECTED "expected 4 groups of 16 lowercase hex digits separated by spaces, not all zero"

/* "hhhh... hhhh... hhhh... hhhh..." (4 x 16 hex digits). */
static bool parse_generator(const char *name, const char *s, torch_generator *g) {
    bool ok = s && strlen(s) == 4 * 16 + 3;
    for (int k = 0; ok && k < 4; k++) {
        uint64_t v = 0;
        for (int i = 0; ok && i < 16; i++) {
            char c = s[k * 17 + i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            ok = d >= 0;
            if (ok) v = v << 4 | (uint64_t)d;
        }
        if (k < 3 && s[k * 17 + 16] != ' ') ok = false;
        g->s[k] = v;
    }
    /* xoshiro's all-zero state is a fixed point: a generator can never be in it */
    if (ok && (g->s[0] | g->s[1] | g->s[2] | g->s[3])) return true;
    if (!s)
        torch_error(TORCH_ERR_FORMAT, "%s: %s: generator state is missing (" GENERATOR_EXPECTED ")", LOAD, name);
    else
        torch_error(TORCH_ERR_FORMAT, "%s: %s: generator state is \"%.80s\" (" GENERATOR_EXPECTED ")", LOAD, name, s);
    return false;
}

/* One field of a group's options from obj into options; false with the error set. */
static bool read_field(const optim_json_ctx *c, const char *where, const cJSON *obj, const optim_field *f,
                       void *options) {
    char *at = (char *)options + f->offset;
    switch (f->kind) {
    case OPTIM_FIELD_DOUBLE: return optim_json_number(c, where, obj, f->name, (double *)at);
    case OPTIM_FIELD_BOOL: return optim_json_bool(c, where, obj, f->name, (bool *)at);
    case OPTIM_FIELD_PAIR: return optim_json_doubles(c, where, obj, f->name, 2, "a pair", (double *)at);
    }
    return false;
}

/* The optimizer's groups from JSON, checked against opt's kind and layout and by the
 * optimizer's own option checks, into opts[g] (each ops->options_size bytes). */
static torch_status parse_groups(const optim_json_ctx *c, const io_metadata *md, const optim_optimizer *opt,
                                 void **opts) {
    const char *type = io_metadata_get(md, "optimizer.type"), *text = io_metadata_get(md, "optimizer.param_groups");
    if (!type || !text)
        return torch_error(TORCH_ERR_FORMAT, "%s: %s: the checkpoint has no optimizer state", LOAD, c->name);
    if (strcmp(type, opt->ops->name) != 0)
        return torch_error(TORCH_ERR_KEY, "%s: %s: the checkpoint's optimizer is %.40s, this one is %s", LOAD, c->name,
                           type, opt->ops->name);
    int n = optim_num_groups(opt);
    cJSON *arr = optim_json_parse(c, "optimizer.param_groups", text);
    torch_status st = TORCH_OK;
    if (!arr)
        st = torch_last_status();
    else if (!cJSON_IsArray(arr))
        st = torch_error(TORCH_ERR_FORMAT, "%s: %s: optimizer.param_groups is not a JSON array", LOAD, c->name);
    else if (cJSON_GetArraySize(arr) != n)
        st = torch_error(TORCH_ERR_KEY, "%s: %s: the checkpoint has %d parameter groups, the optimizer %d", LOAD,
                         c->name, cJSON_GetArraySize(arr), n);
    int g = 0;
    const cJSON *obj, *groups = st == TORCH_OK ? arr : NULL;
    cJSON_ArrayForEach(obj, groups) {
        int64_t count = 0;
        char where[64], who[400];
        snprintf(where, sizeof where, "optimizer.param_groups[%d]", g);
        if (!cJSON_IsObject(obj)) {
            st = torch_error(TORCH_ERR_FORMAT, "%s: %s: %s is not a JSON object", LOAD, c->name, where);
            break;
        }
        bool ok = true;
        for (int f = 0; ok && f < opt->ops->n_fields; f++) ok = read_field(c, where, obj, &opt->ops->fields[f], opts[g]);
        if (!ok || !optim_json_int(c, where, obj, "params", 0, &count)) {
            st = torch_last_status();
            break;
        }
        if (count != optim_group_size(opt, g)) {
            st = torch_error(TORCH_ERR_KEY, "%s: %s: parameter group %d has %" PRId64 " parameters, the optimizer's %" PRId64,
                             LOAD, c->name, g, count, optim_group_size(opt, g));
            break;
        }
        snprintf(who, sizeof who, "%s: %s: %s", LOAD, c->name, where);
        if ((st = opt->ops->check_options(who, opts[g])) != TORCH_OK) break;
        g++;
    }
    cJSON_Delete(arr);
    return st;
}

/* The scheduler's state from the "scheduler" entry, staged (see state_json.h). */
static torch_status parse_scheduler(const optim_json_ctx *c, const io_metadata *md, const optim_lr_scheduler *s,
                                    optim_lr_scheduler **staged) {
    const char *text = io_metadata_get(md, "scheduler");
    if (!text) return torch_error(TORCH_ERR_FORMAT, "%s: %s: the checkpoint has no scheduler state", LOAD, c->name);
    cJSON *obj = optim_json_parse(c, "scheduler", text);
    if (!obj) return torch_last_status();
    torch_status st = optim_lr_scheduler_stage(c, "scheduler", s, obj, staged);
    cJSON_Delete(obj);
    return st;
}

/* Re-raises the current error with the loader's prefix and the file's name (the module's own
 * checks do not know it). */
static torch_status rewrap(torch_status st, const char *name) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", torch_last_error());
    return torch_error(st, "%s: %s: %s", LOAD, name, msg);
}

torch_status optim_checkpoint_parse(const uint8_t *data, size_t size, const char *name, optim_training_state *state) {
    if (!state || !state->model)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: state and state->model are required", LOAD);
    if (!name) name = "<memory>";
    const optim_json_ctx ctx = {.fname = LOAD, .name = name};
    io_metadata *md = NULL;
    nn_tensor_dict *all = io_safetensors_parse(data, size, name, &md);
    if (!all) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", torch_last_error()); /* the reader names the file */
        return torch_error(torch_last_status(), "%s: %s", LOAD, msg);
    }

    optim_optimizer *opt = state->optimizer;
    int n_groups = optim_num_groups(opt);
    void **new_opts = calloc((size_t)n_groups + 1, sizeof *new_opts);
    tensor **new_state = NULL;
    optim_lr_scheduler *new_sched = NULL;
    nn_tensor_dict *model_d = nn_tensor_dict_new(), *opt_d = nn_tensor_dict_new();
    torch_generator gen = {{0}};
    int64_t epoch = 0, step = 0;
    torch_status st = new_opts && model_d && opt_d ? TORCH_OK
                                                   : torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", LOAD);
    for (int g = 0; st == TORCH_OK && g < n_groups; g++) {
        if (!(new_opts[g] = malloc(opt->ops->options_size)))
            st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", LOAD);
        else
            memcpy(new_opts[g], opt->groups[g].options, opt->ops->options_size);
    }

    /* 1. Read and check everything, changing nothing. */
    const char *fmt = io_metadata_get(md, "ctorch.format"), *ver = io_metadata_get(md, "ctorch.version");
    if (st == TORCH_OK && (!fmt || strcmp(fmt, FORMAT_NAME) != 0))
        st = torch_error(TORCH_ERR_FORMAT, "%s: %s: not a ctorch checkpoint (no \"ctorch.format\": \"checkpoint\" metadata; "
                         "a plain state_dict loads with nn_module_load)", LOAD, name);
    if (st == TORCH_OK && (!ver || strcmp(ver, FORMAT_VERSION) != 0))
        st = torch_error(TORCH_ERR_FORMAT, "%s: %s: unsupported checkpoint version %.20s (this build reads %s%s)", LOAD,
                         name, ver ? ver : "(none)", FORMAT_VERSION,
                         ver && !strcmp(ver, "1") ? "; version 1 came before optimizers other than SGD and stored no "
                                                    "schedule settings: start a new run"
                                                  : "");
    if (st == TORCH_OK && (!parse_count(name, md, "epoch", &epoch) || !parse_count(name, md, "step", &step)))
        st = TORCH_ERR_FORMAT;
    if (st == TORCH_OK && state->generator && !parse_generator(name, io_metadata_get(md, "generator"), &gen))
        st = TORCH_ERR_FORMAT;
    if (st == TORCH_OK && opt) st = parse_groups(&ctx, md, opt, new_opts);
    if (st == TORCH_OK && state->scheduler) st = parse_scheduler(&ctx, md, state->scheduler, &new_sched);
    for (int64_t i = 0; st == TORCH_OK && i < all->count; i++) {
        const char *key = all->items[i].name;
        if (strncmp(key, "model.", 6) == 0)
            st = nn_tensor_dict_set(model_d, key + 6, all->items[i].value);
        else if (strncmp(key, "optimizer.", 10) == 0)
            st = opt ? nn_tensor_dict_set(opt_d, key + 10, all->items[i].value) : TORCH_OK;
        else
            st = torch_error(TORCH_ERR_FORMAT, "%s: %s: unexpected key \"%s\" in a checkpoint", LOAD, name, key);
    }
    if (st == TORCH_OK && opt) {
        char who[400];
        snprintf(who, sizeof who, "%s: %s: optimizer", LOAD, name);
        st = optim_stage_state(opt, who, opt_d, new_opts, &new_state);
    }

    /* 2. The model checks everything before it changes; after it, nothing can fail. */
    if (st == TORCH_OK) {
        st = nn_module_load_state_dict(state->model, model_d, true);
        if (st != TORCH_OK) st = rewrap(st, name);
    }
    if (st == TORCH_OK) {
        if (opt) {
            for (int g = 0; g < n_groups; g++) memcpy(opt->groups[g].options, new_opts[g], opt->ops->options_size);
            optim_commit_state(opt, new_state);
            new_state = NULL;
        }
        if (new_sched) optim_lr_scheduler_commit(state->scheduler, new_sched);
        new_sched = NULL;
        if (state->generator) *state->generator = gen;
        state->epoch = epoch;
        state->step = step;
    }

    if (opt) optim_staged_free(opt, new_state);
    optim_lr_scheduler_free(new_sched);
    for (int g = 0; new_opts && g < n_groups; g++) free(new_opts[g]);
    free(new_opts);
    nn_tensor_dict_free(model_d);
    nn_tensor_dict_free(opt_d);
    nn_tensor_dict_free(all);
    io_metadata_free(md);
    return st;
}

torch_status optim_checkpoint_load(const char *path, optim_training_state *state) {
    if (!path) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: path is NULL", LOAD);
    if (!state || !state->model)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: state and state->model are required", LOAD);
    /* A checkpoint is a safetensors file: the same reader, the same limits. */
    uint8_t *buf = NULL;
    size_t len = 0;
    torch_status st = io_read_file(LOAD, path, IO_SAFETENSORS_MAX_FILE, &buf, &len);
    if (st != TORCH_OK) return st;
    st = optim_checkpoint_parse(buf, len, path, state);
    free(buf);
    return st;
}
