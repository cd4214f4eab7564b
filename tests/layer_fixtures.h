/* layer_fixtures.h — reads tests/fixtures/layers.txt (scripts/make_layer_fixtures.py) for the
 * layer and loss tests, and compares tensors with its references.
 *
 * Ownership: lfx_load() returns a file the test frees with lfx_free(); lfx_tensor() returns a new
 * tensor reference; everything else borrows. Failures are Criterion assertions (a missing record
 * is a broken fixture, not a case to handle).
 *
 * Format (text): '#' comment lines, then records "<name> <f32|f64|i64> <ndim> <sizes...>"
 * followed by the values, all whitespace separated.
 */
#ifndef CTORCH_TEST_LAYER_FIXTURES_H
#define CTORCH_TEST_LAYER_FIXTURES_H

#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctorch.h"

typedef struct lfx_record {
    char    name[64];
    char    kind[4]; /* "f32", "f64" or "i64" */
    int     ndim;
    int64_t shape[TORCH_MAX_DIMS];
    int64_t numel;
    double *values; /* every kind widened to double (int64 values in fixtures are small) */
} lfx_record;

typedef struct lfx_file {
    int         count;
    lfx_record *records;
} lfx_file;

/* Next whitespace-separated token of *p into buf (len bytes); false at the end. */
static inline bool lfx_token(char **p, char *buf, size_t len) {
    while (**p && isspace((unsigned char)**p)) (*p)++;
    if (!**p) return false;
    size_t n = 0;
    while (**p && !isspace((unsigned char)**p)) {
        if (n + 1 < len) buf[n++] = **p;
        (*p)++;
    }
    buf[n] = '\0';
    return true;
}

static inline lfx_file *lfx_load(void) {
    const char *path = CTORCH_TEST_DIR "/fixtures/layers.txt";
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s (run /usr/bin/python3 scripts/make_layer_fixtures.py)", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    lfx_file *fx = calloc(1, sizeof *fx);
    char *p = text, tok[128];
    int cap = 0;
    for (;;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (*p == '#') {
            while (*p && *p != '\n') p++;
            continue;
        }
        if (!lfx_token(&p, tok, sizeof tok)) break;
        if (fx->count == cap) {
            cap = cap ? 2 * cap : 64;
            fx->records = realloc(fx->records, (size_t)cap * sizeof *fx->records);
        }
        lfx_record *r = &fx->records[fx->count++];
        memset(r, 0, sizeof *r);
        cr_assert_lt(strlen(tok), sizeof r->name);
        strcpy(r->name, tok);
        cr_assert(lfx_token(&p, r->kind, sizeof r->kind), "record %s: no kind", r->name);
        cr_assert(lfx_token(&p, tok, sizeof tok));
        r->ndim = atoi(tok);
        cr_assert(r->ndim >= 0 && r->ndim <= TORCH_MAX_DIMS);
        for (int d = 0; d < r->ndim; d++) {
            cr_assert(lfx_token(&p, tok, sizeof tok));
            r->shape[d] = atoll(tok);
        }
        r->numel = torch_shape_numel(r->ndim, r->shape);
        r->values = malloc((size_t)(r->numel ? r->numel : 1) * sizeof(double));
        for (int64_t i = 0; i < r->numel; i++) {
            char *end;
            r->values[i] = strtod(p, &end);
            cr_assert(end != p, "record %s: value %lld missing", r->name, (long long)i);
            p = end;
        }
    }
    free(text);
    return fx;
}

static inline void lfx_free(lfx_file *fx) {
    if (!fx) return;
    for (int i = 0; i < fx->count; i++) free(fx->records[i].values);
    free(fx->records);
    free(fx);
}

/* The record "<prefix>.<field>", or NULL when absent (e.g. no bias). */
static inline const lfx_record *lfx_find(const lfx_file *fx, const char *prefix, const char *field) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", prefix, field);
    for (int i = 0; i < fx->count; i++)
        if (strcmp(fx->records[i].name, name) == 0) return &fx->records[i];
    return NULL;
}

static inline const lfx_record *lfx_get(const lfx_file *fx, const char *prefix, const char *field) {
    const lfx_record *r = lfx_find(fx, prefix, field);
    cr_assert_not_null(r, "fixture record %s.%s missing", prefix, field);
    return r;
}

/* A new float32 (or, for "i64" records, int64) tensor with the record's values. */
static inline tensor *lfx_tensor(const lfx_record *r) {
    bool i64 = strcmp(r->kind, "i64") == 0;
    tensor *t = torch_empty_dtype(i64 ? TORCH_INT64 : TORCH_FLOAT32, r->ndim, r->shape);
    cr_assert_not_null(t);
    for (int64_t i = 0; i < r->numel; i++) {
        if (i64) tensor_data_i64(t)[i] = (int64_t)r->values[i];
        else tensor_data_f32(t)[i] = (float)r->values[i];
    }
    return t;
}

/* Like lfx_tensor, and marks the tensor as requiring grad. */
static inline tensor *lfx_leaf(const lfx_record *r) {
    tensor *t = lfx_tensor(r);
    cr_assert_eq(tensor_set_requires_grad(t, true), TORCH_OK);
    return t;
}

/* Asserts actual == reference elementwise within |a - e| <= tol * max(1, |e|) (relative for
 * large values, absolute for small ones) and returns the worst |a - e| / max(1, |e|). */
static inline double lfx_expect_close(const tensor *actual, const lfx_record *ref, double tol, const char *what) {
    cr_assert_not_null(actual, "%s: no tensor (%s)", what, torch_last_error());
    cr_assert_eq(actual->ndim, ref->ndim, "%s: %dD, reference %dD", what, actual->ndim, ref->ndim);
    for (int d = 0; d < ref->ndim; d++)
        cr_assert_eq(actual->shape[d], ref->shape[d], "%s: size %lld of dim %d, reference %lld", what,
                     (long long)actual->shape[d], d, (long long)ref->shape[d]);
    tensor *c = tensor_contiguous(actual);
    double worst = 0.0;
    for (int64_t i = 0; i < ref->numel; i++) {
        double a = actual->dtype == TORCH_INT64 ? (double)tensor_data_i64(c)[i] : (double)tensor_data_f32(c)[i];
        double e = ref->values[i];
        double err = fabs(a - e) / fmax(1.0, fabs(e));
        cr_assert(err <= tol, "%s: element %lld is %.9g, PyTorch %.9g (error %.3g > %.1g)", what, (long long)i, a, e,
                  err, tol);
        if (err > worst) worst = err;
    }
    tensor_free(c);
    return worst;
}

#endif /* CTORCH_TEST_LAYER_FIXTURES_H */
