/* print.c — tensor_print / tensor_fprint: PyTorch's repr (torch/_tensor_str.py, default print
 * options: precision 4, threshold 1000, edgeitems 3, linewidth 80).
 *
 *   tensor([[ 0.1000, -2.0000],
 *           [ 3.5000,  4.0000]])
 *
 * Float formatting follows PyTorch's _Formatter over the printed elements: integral values print
 * as "1." (int mode); scientific ("1.0000e+05") when the nonzero finite magnitudes span more
 * than 1000x, exceed 1e8, or (non-integral) fall below 1e-4; else fixed with 4 decimals. Every
 * element is right-aligned to the widest. Suffixes as PyTorch: ", requires_grad=True",
 * ", grad_fn=<AddBackward0>", and for empty tensors ", size=(2, 0)" / ", dtype=torch.int64".
 */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PRINT_PRECISION 4
#define PRINT_THRESHOLD 1000
#define PRINT_EDGEITEMS 3
#define PRINT_LINEWIDTH 80

/* ---- output with a column count (PyTorch wraps suffixes by the last line's length) ------------ */

typedef struct writer {
    FILE *out;
    long  col; /* characters since the last newline */
} writer;

static void put(writer *w, const char *s) {
    fputs(s, w->out);
    for (; *s; s++) w->col = *s == '\n' ? 0 : w->col + 1;
}

static void put_spaces(writer *w, long n) {
    for (long i = 0; i < n; i++) put(w, " ");
}

/* ---- the formatter -------------------------------------------------------------------------- */

typedef struct formatter {
    bool is_float;
    bool int_mode;
    bool sci_mode;
    int  width;
    /* statistics over the printed nonzero finite values */
    bool   any;
    double min_abs, max_abs;
} formatter;

/* Text of one value, unpadded; returns its length. */
static int format_value(const formatter *f, double v, char *buf, size_t len) {
    if (!f->is_float) return snprintf(buf, len, "%lld", (long long)v);
    if (isnan(v)) return snprintf(buf, len, "nan");
    if (isinf(v)) return snprintf(buf, len, v > 0 ? "inf" : "-inf");
    if (f->sci_mode) return snprintf(buf, len, "%.*e", PRINT_PRECISION, v);
    if (f->int_mode) return snprintf(buf, len, "%.0f.", v);
    return snprintf(buf, len, "%.*f", PRINT_PRECISION, v);
}

/* Element reading: int64 tensors are read as int64 and printed from that value exactly. */
typedef struct elem {
    double  f;
    int64_t i;
} elem;

static elem read_elem(const tensor *t, int64_t off) {
    elem e = {0, 0};
    if (t->dtype == TORCH_INT64) {
        e.i = tensor_data_i64(t)[off];
        e.f = (double)e.i;
    } else {
        e.f = (double)tensor_data_f32(t)[off];
    }
    return e;
}

static int format_elem(const formatter *f, elem e, char *buf, size_t len) {
    if (!f->is_float) return snprintf(buf, len, "%lld", (long long)e.i);
    return format_value(f, e.f, buf, len);
}

typedef void (*visit_fn)(formatter *f, elem e);

/* Calls fn on every element that will be printed (all, or the edge items when summarising). */
static void visit(const tensor *t, int dim, int64_t off, bool summarize, formatter *f, visit_fn fn) {
    if (dim == t->ndim) {
        fn(f, read_elem(t, off));
        return;
    }
    int64_t n = t->shape[dim];
    bool cut = summarize && n > 2 * PRINT_EDGEITEMS;
    for (int64_t i = 0; i < n; i++) {
        if (cut && i == PRINT_EDGEITEMS) i = n - PRINT_EDGEITEMS;
        visit(t, dim + 1, off + i * t->stride[dim], summarize, f, fn);
    }
}

static void collect_stats(formatter *f, elem e) {
    if (!f->is_float) {
        char buf[32];
        int n = format_elem(f, e, buf, sizeof buf);
        if (n > f->width) f->width = n;
        return;
    }
    double v = e.f;
    if (!isfinite(v) || v == 0.0) return;
    double a = fabs(v);
    if (!f->any || a < f->min_abs) f->min_abs = a;
    if (!f->any || a > f->max_abs) f->max_abs = a;
    f->any = true;
    if (v != ceil(v)) f->int_mode = false;
}

static void collect_width(formatter *f, elem e) {
    if (!isfinite(e.f) || e.f == 0.0) return;
    char buf[64];
    int n = format_value(f, e.f, buf, sizeof buf);
    if (n > f->width) f->width = n;
}

static formatter make_formatter(const tensor *t, bool summarize) {
    formatter f = {.is_float = t->dtype != TORCH_INT64, .int_mode = true, .width = 1};
    visit(t, 0, 0, summarize, &f, collect_stats);
    if (!f.is_float || !f.any) return f;
    double ratio = f.max_abs / f.min_abs;
    if (f.int_mode)
        f.sci_mode = ratio > 1000.0 || f.max_abs > 1.0e8;
    else
        f.sci_mode = ratio > 1000.0 || f.max_abs > 1.0e8 || f.min_abs < 1.0e-4;
    visit(t, 0, 0, summarize, &f, collect_width);
    return f;
}

/* ---- layout --------------------------------------------------------------------------------- */

static void put_elem(writer *w, const formatter *f, elem e) {
    char buf[64];
    int n = format_elem(f, e, buf, sizeof buf);
    put_spaces(w, f->width - n);
    put(w, buf);
}

/* The last dim: elements joined by ", ", wrapped at the line width. */
static void put_vector(writer *w, const tensor *t, int64_t off, int indent, bool summarize, const formatter *f) {
    int dim = t->ndim - 1;
    int64_t n = t->shape[dim];
    bool cut = summarize && n > 2 * PRINT_EDGEITEMS;
    long per_line = (PRINT_LINEWIDTH - indent) / (f->width + 2);
    if (PRINT_LINEWIDTH - indent < 0 || per_line < 1) per_line = 1;
    put(w, "[");
    long item = 0;
    for (int64_t i = 0; i < n; i++, item++) {
        if (item > 0) {
            if (item % per_line == 0) {
                put(w, ",\n");
                put_spaces(w, indent + 1);
            } else {
                put(w, ", ");
            }
        }
        if (cut && i == PRINT_EDGEITEMS) {
            put(w, " ...");
            i = n - PRINT_EDGEITEMS - 1;
            continue;
        }
        put_elem(w, f, read_elem(t, off + i * t->stride[dim]));
    }
    put(w, "]");
}

static void put_tensor(writer *w, const tensor *t, int dim, int64_t off, int indent, bool summarize,
                       const formatter *f) {
    if (dim == t->ndim - 1) {
        put_vector(w, t, off, indent, summarize, f);
        return;
    }
    int64_t n = t->shape[dim];
    bool cut = summarize && n > 2 * PRINT_EDGEITEMS;
    put(w, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i > 0) {
            put(w, ",");
            for (int k = 0; k < t->ndim - dim - 1; k++) put(w, "\n");
            put_spaces(w, indent + 1);
        }
        if (cut && i == PRINT_EDGEITEMS) {
            put(w, "...");
            i = n - PRINT_EDGEITEMS - 1;
            continue;
        }
        put_tensor(w, t, dim + 1, off + i * t->stride[dim], indent + 1, summarize, f);
    }
    put(w, "]");
}

/* PyTorch's _add_suffixes: ", suffix" or, past the line width, ",\n" + indent + suffix. */
static void put_suffix(writer *w, const char *suffix, int indent, long *last_line_len) {
    long len = (long)strlen(suffix);
    if (*last_line_len + len + 2 > PRINT_LINEWIDTH) {
        put(w, ",\n");
        put_spaces(w, indent);
        *last_line_len = indent + len;
    } else {
        put(w, ", ");
        *last_line_len += len + 2;
    }
    put(w, suffix);
}

void tensor_fprint(FILE *out, const tensor *t) {
    if (!out) return;
    writer w = {out, 0};
    if (!t) {
        put(&w, "tensor(NULL)\n");
        return;
    }
    static const char prefix[] = "tensor(";
    const int indent = (int)sizeof prefix - 1;
    put(&w, prefix);

    char suffixes[3][160];
    int nsuffix = 0;
    if (t->numel == 0) {
        put(&w, "[]");
        if (t->ndim != 1) {
            int n = snprintf(suffixes[nsuffix], sizeof suffixes[0], "size=(");
            for (int i = 0; i < t->ndim && n < (int)sizeof suffixes[0]; i++)
                n += snprintf(suffixes[nsuffix] + n, sizeof suffixes[0] - (size_t)n, i ? ", %lld" : "%lld",
                              (long long)t->shape[i]);
            if (n < (int)sizeof suffixes[0]) snprintf(suffixes[nsuffix] + n, sizeof suffixes[0] - (size_t)n, ")");
            nsuffix++;
        }
        if (t->dtype != TORCH_FLOAT32)
            snprintf(suffixes[nsuffix++], sizeof suffixes[0], "dtype=torch.%s", torch_dtype_name(t->dtype));
    } else {
        /* float32 is the default dtype and int64 is shown without a suffix, as in PyTorch. */
        bool summarize = t->numel > PRINT_THRESHOLD;
        formatter f = make_formatter(t, summarize);
        if (t->ndim == 0) {
            put_elem(&w, &f, read_elem(t, 0));
        } else {
            put_tensor(&w, t, 0, 0, indent, summarize, &f);
        }
    }
    if (t->grad_fn)
        snprintf(suffixes[nsuffix++], sizeof suffixes[0], "grad_fn=<%s>", t->grad_fn_ops->name(t->grad_fn));
    else if (t->requires_grad)
        snprintf(suffixes[nsuffix++], sizeof suffixes[0], "requires_grad=True");

    long last_line_len = w.col + 2; /* PyTorch: len(s) - s.rfind("\n") + 1 */
    for (int i = 0; i < nsuffix; i++) put_suffix(&w, suffixes[i], indent, &last_line_len);
    put(&w, ")\n");
}

void tensor_print(const tensor *t) { tensor_fprint(stdout, t); }
