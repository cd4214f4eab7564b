/* checkpoint.c — training state <-> one safetensors file (see checkpoint.h for the layout). */
#include "checkpoint.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../io/io.h"

#define FORMAT_NAME "checkpoint"
#define FORMAT_VERSION "1"

static const char *const scheduler_kinds[] = {"StepLR", "CosineAnnealingLR"};

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

/* JSON text of the optimizer's groups (malloc'ed) or NULL on out-of-memory. */
static char *groups_json(const optim_sgd *opt) {
    cJSON *arr = cJSON_CreateArray();
    for (int g = 0; arr && g < optim_sgd_num_groups(opt); g++) {
        optim_sgd_options o = optim_sgd_group_options(opt, g);
        cJSON *obj = cJSON_CreateObject();
        if (!obj || !cJSON_AddItemToArray(arr, obj)) {
            cJSON_Delete(obj);
            cJSON_Delete(arr);
            return NULL;
        }
        /* cJSON prints 17 significant digits when 15 do not read back exactly. */
        cJSON_AddNumberToObject(obj, "lr", o.lr);
        cJSON_AddNumberToObject(obj, "momentum", o.momentum);
        cJSON_AddNumberToObject(obj, "dampening", o.dampening);
        cJSON_AddNumberToObject(obj, "weight_decay", o.weight_decay);
        cJSON_AddBoolToObject(obj, "nesterov", o.nesterov);
        cJSON_AddBoolToObject(obj, "maximize", o.maximize);
        cJSON_AddNumberToObject(obj, "params", (double)optim_sgd_group_size(opt, g));
    }
    char *s = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return s;
}

static char *scheduler_json(const optim_lr_scheduler *s) {
    optim_lr_scheduler_state st = optim_lr_scheduler_get_state(s);
    cJSON *obj = cJSON_CreateObject();
    if (!obj) return NULL;
    cJSON_AddStringToObject(obj, "kind", scheduler_kinds[st.kind == OPTIM_LR_COSINE_ANNEALING]);
    cJSON_AddNumberToObject(obj, "last_epoch", (double)st.last_epoch);
    cJSON_AddNumberToObject(obj, "step_count", (double)st.step_count);
    cJSON_AddItemToObject(obj, "base_lrs", cJSON_CreateDoubleArray(st.base_lrs, st.n_groups));
    cJSON_AddItemToObject(obj, "last_lrs", cJSON_CreateDoubleArray(st.last_lrs, st.n_groups));
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return text;
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
        st = (os = optim_sgd_state_dict(state->optimizer)) ? add_prefixed(all, os, "optimizer.") : torch_last_status();
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
    if (st == TORCH_OK && state->optimizer)
        st = (gj = groups_json(state->optimizer)) ? io_metadata_set(md, "optimizer.param_groups", gj)
                                                  : torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (st == TORCH_OK && state->scheduler)
        st = (sj = scheduler_json(state->scheduler)) ? io_metadata_set(md, "scheduler", sj)
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

/* A JSON value as a message shows it: the number (inf for an overflow such as 1e999), or what
 * the value is instead of one. */
static void describe(const cJSON *it, char *out, size_t size) {
    if (!it) snprintf(out, size, "missing");
    else if (cJSON_IsNumber(it)) snprintf(out, size, "%.15g", it->valuedouble);
    else if (cJSON_IsString(it)) snprintf(out, size, "the string \"%.40s\"", it->valuestring);
    else if (cJSON_IsBool(it)) snprintf(out, size, "%s", cJSON_IsTrue(it) ? "true" : "false");
    else if (cJSON_IsNull(it)) snprintf(out, size, "null");
    else snprintf(out, size, "%s", cJSON_IsArray(it) ? "an array" : "an object");
}

/* Sets the error for where.key (where: "optimizer.param_groups[0]", "scheduler") holding it. */
static void field_error(const char *name, const char *where, const char *key, const cJSON *it, const char *expected) {
    char got[80];
    describe(it, got, sizeof got);
    torch_error(TORCH_ERR_FORMAT, "%s: %s: %s.%s is %s (expected %s)", LOAD, name, where, key, got, expected);
}

/* The readers below take obj[key]; on a missing or wrong value they set the error (naming the
 * field, what it holds and what was expected) and return false. */
static bool json_number(const char *name, const char *where, const cJSON *obj, const char *key, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
        field_error(name, where, key, it, "a finite number");
        return false;
    }
    *out = it->valuedouble;
    return true;
}

static bool json_count(const char *name, const char *where, const cJSON *obj, const char *key, int64_t *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
    if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) {
        field_error(name, where, key, it, "a non-negative integer");
        return false;
    }
    *out = (int64_t)v;
    return true;
}

static bool json_bool(const char *name, const char *where, const cJSON *obj, const char *key, bool *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsBool(it)) {
        field_error(name, where, key, it, "true or false");
        return false;
    }
    *out = cJSON_IsTrue(it);
    return true;
}

/* n finite numbers (one per parameter group) of a JSON array into out (n entries). */
static bool json_doubles(const char *name, const char *where, const cJSON *obj, const char *key, int n, double *out) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key), *it;
    if (!cJSON_IsArray(arr)) {
        char expected[96];
        snprintf(expected, sizeof expected, "an array of %d finite numbers, one per parameter group", n);
        field_error(name, where, key, arr, expected);
        return false;
    }
    if (cJSON_GetArraySize(arr) != n) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: %s.%s has %d entries (expected %d, one per parameter group)", LOAD, name,
                    where, key, cJSON_GetArraySize(arr), n);
        return false;
    }
    int i = 0;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
            char k[64];
            snprintf(k, sizeof k, "%s[%d]", key, i);
            field_error(name, where, k, it, "a finite number");
            return false;
        }
        out[i++] = it->valuedouble;
    }
    return true;
}

/* The JSON text of metadata entry key, parsed; NULL with the error set, saying what is wrong and
 * where, when it is not JSON. Strings with raw control characters or \u0000 are refused before
 * cJSON sees them (io_json_check: cJSON would accept the first and cut a string at the second). */
static cJSON *parse_json(const char *name, const char *key, const char *text) {
    size_t n = strlen(text);
    io_json_problem jp;
    if (!io_json_check(text, n, &jp)) {
        torch_error(TORCH_ERR_FORMAT, "%s: %s: %s is not valid JSON: %s", LOAD, name, key, jp.message);
        return NULL;
    }
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithOpts(text, &end, true);
    if (!json) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : n;
        char where[160];
        io_json_path(text, n, at, where, sizeof where);
        torch_error(TORCH_ERR_FORMAT, "%s: %s: %s is not valid JSON (syntax error near byte %zu%s%s)", LOAD, name, key,
                    at, *where ? ", in " : "", where);
    }
    return json;
}

/* The optimizer's groups from JSON, checked against opt's layout. options: n_groups entries. */
static torch_status parse_groups(const char *name, const char *text, const optim_sgd *opt, optim_sgd_options *options) {
    int n = optim_sgd_num_groups(opt);
    cJSON *arr = text ? parse_json(name, "optimizer.param_groups", text) : NULL;
    torch_status st = TORCH_OK;
    if (!text)
        st = torch_error(TORCH_ERR_FORMAT, "%s: %s: the checkpoint has no optimizer state", LOAD, name);
    else if (!arr)
        st = torch_last_status();
    else if (!cJSON_IsArray(arr))
        st = torch_error(TORCH_ERR_FORMAT, "%s: %s: optimizer.param_groups is not a JSON array", LOAD, name);
    else if (cJSON_GetArraySize(arr) != n)
        st = torch_error(TORCH_ERR_KEY, "%s: %s: the checkpoint has %d parameter groups, the optimizer %d", LOAD,
                         name, cJSON_GetArraySize(arr), n);
    int g = 0;
    const cJSON *obj, *groups = st == TORCH_OK ? arr : NULL;
    cJSON_ArrayForEach(obj, groups) {
        optim_sgd_options o = {0};
        int64_t count;
        char where[64];
        snprintf(where, sizeof where, "optimizer.param_groups[%d]", g);
        if (!cJSON_IsObject(obj)) {
            st = torch_error(TORCH_ERR_FORMAT, "%s: %s: %s is not a JSON object", LOAD, name, where);
            break;
        }
        if (!json_number(name, where, obj, "lr", &o.lr) || !json_number(name, where, obj, "momentum", &o.momentum) ||
            !json_number(name, where, obj, "dampening", &o.dampening) ||
            !json_number(name, where, obj, "weight_decay", &o.weight_decay) ||
            !json_bool(name, where, obj, "nesterov", &o.nesterov) ||
            !json_bool(name, where, obj, "maximize", &o.maximize) || !json_count(name, where, obj, "params", &count)) {
            st = torch_last_status();
            break;
        }
        if (count != optim_sgd_group_size(opt, g)) {
            st = torch_error(TORCH_ERR_KEY, "%s: %s: parameter group %d has %" PRId64 " parameters, the optimizer's %" PRId64,
                             LOAD, name, g, count, optim_sgd_group_size(opt, g));
            break;
        }
        options[g++] = o;
    }
    cJSON_Delete(arr);
    return st;
}

/* The scheduler's state from JSON (arrays malloc'ed into *out), checked against s's kind. */
static torch_status parse_scheduler(const char *name, const char *text, const optim_lr_scheduler *s,
                                    optim_lr_scheduler_state *out) {
    optim_lr_scheduler_state cur = optim_lr_scheduler_get_state(s);
    if (!text) return torch_error(TORCH_ERR_FORMAT, "%s: %s: the checkpoint has no scheduler state", LOAD, name);
    cJSON *obj = parse_json(name, "scheduler", text);
    if (!obj) return torch_last_status();
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    torch_status st = TORCH_OK;
    *out = (optim_lr_scheduler_state){.kind = cur.kind, .n_groups = cur.n_groups};
    out->base_lrs = calloc((size_t)cur.n_groups + 1, sizeof(double));
    out->last_lrs = calloc((size_t)cur.n_groups + 1, sizeof(double));
    const char *want = scheduler_kinds[cur.kind == OPTIM_LR_COSINE_ANNEALING];
    if (!out->base_lrs || !out->last_lrs) {
        st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", LOAD);
    } else if (!cJSON_IsObject(obj)) {
        st = torch_error(TORCH_ERR_FORMAT, "%s: %s: scheduler is not a JSON object", LOAD, name);
    } else if (!cJSON_IsString(kind)) {
        field_error(name, "scheduler", "kind", kind, "\"StepLR\" or \"CosineAnnealingLR\"");
        st = TORCH_ERR_FORMAT;
    } else if (!json_count(name, "scheduler", obj, "last_epoch", &out->last_epoch) ||
               !json_count(name, "scheduler", obj, "step_count", &out->step_count)) {
        st = TORCH_ERR_FORMAT;
    } else if (strcmp(kind->valuestring, want) != 0) {
        st = torch_error(TORCH_ERR_KEY, "%s: %s: the checkpoint's scheduler is %.40s, this one is %s", LOAD, name,
                         kind->valuestring, want);
    } else if (!json_doubles(name, "scheduler", obj, "base_lrs", cur.n_groups, out->base_lrs) ||
               !json_doubles(name, "scheduler", obj, "last_lrs", cur.n_groups, out->last_lrs)) {
        st = TORCH_ERR_FORMAT;
    }
    cJSON_Delete(obj);
    return st;
}

/* Re-raises the current error with the loader's prefix and, unless NULL, the file's name (the
 * optimizer's, scheduler's and module's own checks do not know it). */
static torch_status rewrap(torch_status st, const char *name) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", torch_last_error());
    if (!name) return torch_error(st, "%s: %s", LOAD, msg);
    return torch_error(st, "%s: %s: %s", LOAD, name, msg);
}

torch_status optim_checkpoint_parse(const uint8_t *data, size_t size, const char *name, optim_training_state *state) {
    if (!state || !state->model)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: state and state->model are required", LOAD);
    if (!name) name = "<memory>";
    io_metadata *md = NULL;
    nn_tensor_dict *all = io_safetensors_parse(data, size, name, &md);
    if (!all) return rewrap(torch_last_status(), NULL); /* the reader names the file */

    optim_sgd *opt = state->optimizer;
    optim_lr_scheduler *sched = state->scheduler;
    int n_groups = optim_sgd_num_groups(opt);
    optim_sgd_options *new_opts = calloc((size_t)n_groups + 1, sizeof *new_opts);
    optim_sgd_options *old_opts = calloc((size_t)n_groups + 1, sizeof *old_opts);
    optim_lr_scheduler_state new_sched = {0}, old_sched = {0};
    nn_tensor_dict *model_d = nn_tensor_dict_new(), *opt_d = nn_tensor_dict_new(), *old_bufs = NULL;
    torch_generator gen = {{0}};
    int64_t epoch = 0, step = 0;
    torch_status st = new_opts && old_opts && model_d && opt_d ? TORCH_OK
                                                                : torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", LOAD);

    /* 1. Everything that needs no change to the objects: metadata and key layout. */
    const char *fmt = io_metadata_get(md, "ctorch.format"), *ver = io_metadata_get(md, "ctorch.version");
    if (st == TORCH_OK && (!fmt || strcmp(fmt, FORMAT_NAME) != 0))
        st = torch_error(TORCH_ERR_FORMAT, "%s: %s: not a ctorch checkpoint (no \"ctorch.format\": \"checkpoint\" metadata; "
                         "a plain state_dict loads with nn_module_load)", LOAD, name);
    if (st == TORCH_OK && (!ver || strcmp(ver, FORMAT_VERSION) != 0))
        st = torch_error(TORCH_ERR_FORMAT, "%s: %s: unsupported checkpoint version %.20s (this build reads %s)", LOAD,
                         name, ver ? ver : "(none)", FORMAT_VERSION);
    if (st == TORCH_OK && (!parse_count(name, md, "epoch", &epoch) || !parse_count(name, md, "step", &step)))
        st = TORCH_ERR_FORMAT;
    if (st == TORCH_OK && state->generator && !parse_generator(name, io_metadata_get(md, "generator"), &gen))
        st = TORCH_ERR_FORMAT;
    if (st == TORCH_OK && opt) st = parse_groups(name, io_metadata_get(md, "optimizer.param_groups"), opt, new_opts);
    if (st == TORCH_OK && sched) st = parse_scheduler(name, io_metadata_get(md, "scheduler"), sched, &new_sched);
    for (int64_t i = 0; st == TORCH_OK && i < all->count; i++) {
        const char *key = all->items[i].name;
        if (strncmp(key, "model.", 6) == 0)
            st = nn_tensor_dict_set(model_d, key + 6, all->items[i].value);
        else if (strncmp(key, "optimizer.", 10) == 0)
            st = opt ? nn_tensor_dict_set(opt_d, key + 10, all->items[i].value) : TORCH_OK;
        else
            st = torch_error(TORCH_ERR_FORMAT, "%s: %s: unexpected key \"%s\" in a checkpoint", LOAD, name, key);
    }

    /* 2. Commit piece by piece; each piece checks before it changes anything, and a failure
     * rolls back the pieces already committed. */
    bool bufs_done = false, opts_done = false, sched_done = false;
    if (st == TORCH_OK && opt) {
        old_bufs = optim_sgd_state_dict(opt);
        st = old_bufs ? optim_sgd_load_state_dict(opt, opt_d) : torch_last_status();
        if (st != TORCH_OK) st = rewrap(st, name);
        bufs_done = st == TORCH_OK;
        for (int g = 0; st == TORCH_OK && g < n_groups; g++) old_opts[g] = optim_sgd_group_options(opt, g);
        for (int g = 0; st == TORCH_OK && g < n_groups; g++) {
            st = optim_sgd_set_group_options(opt, g, new_opts[g]);
            if (st != TORCH_OK) {
                st = rewrap(st, name);
                for (int h = 0; h < g; h++) optim_sgd_set_group_options(opt, h, old_opts[h]);
            }
        }
        opts_done = st == TORCH_OK;
    }
    if (st == TORCH_OK && sched) {
        optim_lr_scheduler_state cur = optim_lr_scheduler_get_state(sched);
        old_sched = cur;
        old_sched.base_lrs = malloc(((size_t)cur.n_groups + 1) * sizeof(double));
        old_sched.last_lrs = malloc(((size_t)cur.n_groups + 1) * sizeof(double));
        if (!old_sched.base_lrs || !old_sched.last_lrs) {
            st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", LOAD);
        } else {
            memcpy(old_sched.base_lrs, cur.base_lrs, (size_t)cur.n_groups * sizeof(double));
            memcpy(old_sched.last_lrs, cur.last_lrs, (size_t)cur.n_groups * sizeof(double));
            st = optim_lr_scheduler_set_state(sched, &new_sched);
            if (st != TORCH_OK) st = rewrap(st, name);
        }
        sched_done = st == TORCH_OK;
    }
    if (st == TORCH_OK) {
        st = nn_module_load_state_dict(state->model, model_d, true);
        if (st != TORCH_OK) st = rewrap(st, name);
    }
    if (st != TORCH_OK) {
        if (sched_done) optim_lr_scheduler_set_state(sched, &old_sched);
        if (opts_done)
            for (int g = 0; g < n_groups; g++) optim_sgd_set_group_options(opt, g, old_opts[g]);
        if (bufs_done) optim_sgd_load_state_dict(opt, old_bufs);
    } else {
        if (state->generator) *state->generator = gen;
        state->epoch = epoch;
        state->step = step;
    }

    free(old_sched.base_lrs);
    free(old_sched.last_lrs);
    free(new_sched.base_lrs);
    free(new_sched.last_lrs);
    free(new_opts);
    free(old_opts);
    nn_tensor_dict_free(old_bufs);
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
