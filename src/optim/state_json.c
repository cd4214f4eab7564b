/* state_json.c — JSON readers with errors that name the field (see state_json.h). */
#include "state_json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../io/io.h"

void optim_json_prefix(const optim_json_ctx *c, char *out, size_t size) {
    if (c->name) snprintf(out, size, "%s: %s: ", c->fname, c->name);
    else snprintf(out, size, "%s: ", c->fname);
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

torch_status optim_json_field_error(const optim_json_ctx *c, const char *where, const char *key, const cJSON *it,
                                    const char *expected) {
    char got[80], pre[300];
    describe(it, got, sizeof got);
    optim_json_prefix(c, pre, sizeof pre);
    return torch_error(TORCH_ERR_FORMAT, "%s%s.%s is %s (expected %s)", pre, where, key, got, expected);
}

/* Strings with raw control characters or \u0000 are refused before cJSON sees them
 * (io_json_check: cJSON would accept the first and cut a string at the second). */
cJSON *optim_json_parse(const optim_json_ctx *c, const char *what, const char *text) {
    char pre[300];
    optim_json_prefix(c, pre, sizeof pre);
    size_t n = strlen(text);
    io_json_problem jp;
    if (!io_json_check(text, n, &jp)) {
        torch_error(TORCH_ERR_FORMAT, "%s%s is not valid JSON: %s", pre, what, jp.message);
        return NULL;
    }
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithOpts(text, &end, true);
    if (!json) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : n;
        char path[160];
        io_json_path(text, n, at, path, sizeof path);
        torch_error(TORCH_ERR_FORMAT, "%s%s is not valid JSON (syntax error near byte %zu%s%s)", pre, what, at,
                    *path ? ", in " : "", path);
    }
    return json;
}

bool optim_json_number(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
        optim_json_field_error(c, where, key, it, "a finite number");
        return false;
    }
    *out = it->valuedouble;
    return true;
}

bool optim_json_int(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, int64_t min,
                    int64_t *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(v >= (double)min) || v > 9007199254740992.0 || floor(v) != v) {
        char expected[64];
        if (min == 0) snprintf(expected, sizeof expected, "a non-negative integer");
        else snprintf(expected, sizeof expected, "an integer >= %lld", (long long)min);
        optim_json_field_error(c, where, key, it, expected);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

bool optim_json_bool(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, bool *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsBool(it)) {
        optim_json_field_error(c, where, key, it, "true or false");
        return false;
    }
    *out = cJSON_IsTrue(it);
    return true;
}

bool optim_json_doubles(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, int n,
                        const char *what, double *out) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key), *it;
    char expected[128], pre[300];
    snprintf(expected, sizeof expected, "an array of %d finite numbers, %s", n, what);
    if (!cJSON_IsArray(arr)) {
        optim_json_field_error(c, where, key, arr, expected);
        return false;
    }
    if (cJSON_GetArraySize(arr) != n) {
        optim_json_prefix(c, pre, sizeof pre);
        torch_error(TORCH_ERR_FORMAT, "%s%s.%s has %d entries (expected %d, %s)", pre, where, key,
                    cJSON_GetArraySize(arr), n, what);
        return false;
    }
    int i = 0;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
            char k[64];
            snprintf(k, sizeof k, "%s[%d]", key, i);
            optim_json_field_error(c, where, k, it, "a finite number");
            return false;
        }
        out[i++] = it->valuedouble;
    }
    return true;
}
