/* output.c — an experiment's table as CSV, its plot as a gnuplot script and a PNG, and the shared
 * helpers (see experiments.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "experiments.h"

extern char **environ;

void xp_printf(xp_text *t, const char *fmt, ...) {
    if (t->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (n >= 0 && t->len + (size_t)n + 1 > cap) cap *= 2;
        char *s = n >= 0 ? realloc(t->s, cap) : NULL;
        if (!s) {
            t->failed = true;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void xp_text_free(xp_text *t) {
    free(t->s);
    *t = (xp_text){0};
}

/* The CSV as an aligned table on stdout, columns as wide as their widest cell; of a long table,
 * every k-th row and the last (the CSV has them all). */
static void print_table(const char *csv) {
    enum { MAX_COLS = 64, MAX_SHOWN = 20 };
    size_t width[MAX_COLS] = {0};
    int64_t rows = -1; /* the header is not a row */
    for (const char *c = csv; *c; c++) rows += *c == '\n';
    int64_t every = rows > MAX_SHOWN ? (rows + MAX_SHOWN - 1) / MAX_SHOWN : 1;
    for (int pass = 0; pass < 2; pass++) {
        int64_t row = -1;
        for (const char *line = csv; *line; row++) {
            size_t len = strcspn(line, "\n");
            bool shown = row < 0 || row % every == 0 || row == rows - 1;
            int col = 0;
            for (const char *cell = line; shown && cell < line + len && col < MAX_COLS; col++) {
                size_t w = strcspn(cell, ",\n");
                if (pass == 0 && w > width[col]) width[col] = w;
                if (pass == 1) printf("  %-*.*s", (int)width[col], (int)w, cell);
                cell += w + (cell[w] == ',');
            }
            if (pass == 1 && shown) printf("\n");
            line += len + (line[len] == '\n');
        }
    }
    if (every > 1) printf("  (1 row in %lld of %lld shown, and the last)\n", (long long)every, (long long)rows);
}

/* gnuplot quotes: 'it''s'. */
static void quoted(xp_text *t, const char *s) {
    xp_printf(t, "'");
    for (; *s; s++) xp_printf(t, *s == '\'' ? "''" : "%c", *s);
    xp_printf(t, "'");
}

/* Runs gnuplot on OUT/NAME.gp from inside OUT, writing NAME.png.tmp, then renames it over NAME.png.
 * false with *missing set when gnuplot is not installed. */
static bool render(const char *out, const char *name, bool *missing) {
    xp_text cd = {0};
    xp_printf(&cd, "cd ");
    quoted(&cd, out);
    xp_printf(&cd, "; output = '%s.png.tmp'", name);
    char script[256], png[4096], tmp[4096];
    snprintf(script, sizeof script, "%s.gp", name);
    snprintf(png, sizeof png, "%s/%s.png", out, name);
    snprintf(tmp, sizeof tmp, "%s/%s.png.tmp", out, name); /* xp_output checked the lengths */
    char *argv[] = {"gnuplot", "-e", cd.s, script, NULL};
    pid_t pid;
    int err = cd.failed ? ENOMEM : posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ), status = 0;
    xp_text_free(&cd);
    *missing = err == ENOENT;
    if (err != 0) return false;
    bool ok = waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok && rename(tmp, png) != 0) ok = false;
    if (!ok) remove(tmp);
    return ok;
}

torch_status xp_output(const xp_context *ctx, const xp_text *csv, const xp_text *plot) {
    const char *out = ctx->c->out, *name = ctx->experiment->name;
    char csv_path[4096], gp_path[4096], png_path[4096];
    if (snprintf(csv_path, sizeof csv_path, "%s/%s.png.tmp", out, name) >= (int)sizeof csv_path)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "--out is too long (%zu characters; expected at most %zu)",
                           strlen(out), sizeof csv_path - strlen(name) - 10);
    snprintf(csv_path, sizeof csv_path, "%s/%s.csv", out, name);
    snprintf(gp_path, sizeof gp_path, "%s/%s.gp", out, name);
    snprintf(png_path, sizeof png_path, "%s/%s.png", out, name);
    if (csv->failed || plot->failed || !csv->s || !plot->s)
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "out of memory writing the table");

    /* The script renders by hand too (`cd OUT && gnuplot NAME.gp`); the program passes the
     * output's name, writing a temporary file it renames when gnuplot succeeds. */
    xp_text gp = {0};
    xp_printf(&gp,
              "# %s: %s\n# Render with: gnuplot %s.gp (in this folder)\n"
              "if (!exists(\"output\")) output = '%s.png'\n"
              "set terminal pngcairo size 900,540 noenhanced font ',10'\n"
              "set output output\n"
              "set datafile separator ','\n"
              "set key autotitle columnhead\n"
              "set grid\n%s",
              name, ctx->command, name, name, plot->s);
    torch_status st = gp.failed ? torch_error(TORCH_ERR_OUT_OF_MEMORY, "out of memory writing the plot") : TORCH_OK;
    if (st == TORCH_OK) st = io_write_file_atomic(csv_path, csv->s, csv->len);
    if (st == TORCH_OK) st = io_write_file_atomic(gp_path, gp.s, gp.len);
    xp_text_free(&gp);
    if (st != TORCH_OK) return st;

    printf("\n%s:\n", name);
    print_table(csv->s);
    printf("wrote %s and %s\n", csv_path, gp_path);
    bool missing = false;
    if (render(out, name, &missing)) {
        printf("plot: %s/%s.png\n", out, name);
    } else if (missing) {
        remove(png_path); /* a plot of an earlier table */
        printf("plot: gnuplot is not installed (apt-get install gnuplot-nox); the table is in %s; to draw it: "
               "cd %s && gnuplot %s.gp\n", csv_path, out, name);
    } else {
        return torch_error(TORCH_ERR_IO, "gnuplot failed on %s (its messages are above)", gp_path);
    }
    return TORCH_OK;
}

/* ---- helpers the experiments share ----------------------------------------------------------------- */

data_dataset *xp_dataset_permuted(const data_dataset *ds, const int64_t *order) {
    const tensor *x = ds->images, *y = ds->labels;
    int64_t n = x->shape[0], row = x->numel / (n ? n : 1);
    tensor *px = torch_empty(x->ndim, x->shape), *py = torch_empty_dtype(TORCH_INT64, 1, y->shape);
    data_dataset *out = NULL;
    if (px && py) {
        for (int64_t i = 0; i < n; i++) {
            memcpy(tensor_data_f32(px) + i * row, tensor_data_f32(x) + order[i] * row, (size_t)row * sizeof(float));
            tensor_data_i64(py)[i] = tensor_data_i64(y)[order[i]];
        }
        out = data_dataset_new(px, py);
    }
    tensor_free(px);
    tensor_free(py);
    return out;
}
