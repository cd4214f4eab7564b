/* summary.c — torchinfo's model summary (see summary.h): rows from a watched forward, totals and
 * the table, with torchinfo's definitions and layout (torchinfo 1.8: model_statistics.py,
 * formatting.py, layer_info.py). */
#include "summary.h"

#include "../tensor/text.h"
#include "module_observer.h"

#include <stb/stb_ds.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the watched forward ---------------------------------------------------------------------- */

typedef struct watch {
    nn_summary_row *rows;    /* stb_ds */
    nn_module     **modules; /* stb_ds, the module of each row */
    int64_t        *open;    /* stb_ds stack: rows whose forward is running */
    int64_t        *counts;  /* stb_ds: rows so far per depth, for depth_index */
} watch;

static void watch_pre(void *ctx, nn_module *m) {
    watch *w = ctx;
    int depth = (int)arrlen(w->open);
    while (arrlen(w->counts) <= depth) arrput(w->counts, 0);
    w->counts[depth]++;
    nn_summary_row row = {
        .type_name = m->ops->type_name ? m->ops->type_name : "Module", /* as module.c names it */
        .depth = depth,
        .depth_index = depth > 0 ? w->counts[depth] : 0,
        .is_leaf = arrlen(m->children) == 0,
        .num_params = nn_module_num_parameters(m, false),
        .trainable_params = nn_module_num_parameters(m, true),
    };
    arrput(w->open, arrlen(w->rows));
    arrput(w->rows, row);
    arrput(w->modules, m);
}

static void watch_post(void *ctx, nn_module *m, const tensor *output) {
    (void)m;
    watch *w = ctx;
    nn_summary_row *row = &w->rows[arrpop(w->open)];
    if (!output) return;
    row->ndim = output->ndim;
    memcpy(row->shape, output->shape, sizeof row->shape);
    row->output_bytes = output->numel * (int64_t)torch_dtype_size(output->dtype);
}

static void watch_free(watch *w) {
    arrfree(w->rows);
    arrfree(w->modules);
    arrfree(w->open);
    arrfree(w->counts);
}

/* Training flags of m and its descendants in pre-order, to be put back after the eval forward. */
static void save_modes(const nn_module *m, bool **modes) {
    arrput(*modes, m->training);
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) save_modes(m->children[i].value, modes);
}

static void restore_modes(nn_module *m, const bool *modes, ptrdiff_t *at) {
    m->training = modes[(*at)++];
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) restore_modes(m->children[i].value, modes, at);
}

/* ---- totals ----------------------------------------------------------------------------------- */

/* a * b and a + b for counts >= 0, saturating at INT64_MAX. */
static int64_t sat_mul(int64_t a, int64_t b) { return a == 0 || b <= INT64_MAX / a ? a * b : INT64_MAX; }
static int64_t sat_add(int64_t a, int64_t b) { return b <= INT64_MAX - a ? a + b : INT64_MAX; }

/* torchinfo's LayerInfo.calculate_macs for a leaf: each weight or bias element is used once per
 * output position of a convolution (N * H_out * W_out), once per sample otherwise. */
static int64_t leaf_mult_adds(const nn_summary_row *row, const nn_module *m) {
    if (row->ndim == 0) return 0;
    int64_t per_element = row->shape[0];
    if (strstr(row->type_name, "Conv"))
        for (int d = 2; d < row->ndim; d++) per_element = sat_mul(per_element, row->shape[d]);
    int64_t macs = 0;
    for (ptrdiff_t i = 0; i < arrlen(m->parameters); i++) {
        const char *name = m->parameters[i].name;
        if (!strcmp(name, "weight") || !strcmp(name, "bias"))
            macs = sat_add(macs, sat_mul(per_element, m->parameters[i].value->numel));
    }
    return macs;
}

static void add_totals(nn_summary *s, nn_module *const *modules) {
    for (int64_t r = 0; r < s->num_rows; r++) {
        nn_summary_row *row = &s->rows[r];
        nn_module *m = modules[r];
        if (row->is_leaf) {
            row->mult_adds = row->num_params > 0 ? leaf_mult_adds(row, m) : 0;
            s->mult_adds = sat_add(s->mult_adds, row->mult_adds);
            s->activation_bytes = sat_add(s->activation_bytes, row->output_bytes);
            if (row->num_params > 0)
                s->forward_backward_bytes = sat_add(s->forward_backward_bytes, sat_mul(2, row->output_bytes));
        }
        for (int64_t q = 0; q < r && !row->recursive; q++) row->recursive = modules[q] == m;
        if (row->recursive) continue;
        for (ptrdiff_t i = 0; i < arrlen(m->parameters); i++) {
            const tensor *p = m->parameters[i].value;
            s->total_params += p->numel;
            if (p->requires_grad) s->trainable_params += p->numel;
            s->param_bytes += p->numel * (int64_t)torch_dtype_size(p->dtype);
        }
    }
}

nn_summary *nn_module_summary(nn_module *m, int ndim, const int64_t *input_shape) {
    static const char *fname = "nn_module_summary";
    if (!m) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: module is NULL", fname);
        return NULL;
    }
    if (torch_check_shape(fname, ndim, input_shape) != TORCH_OK) return NULL;
    nn_summary *s = calloc(1, sizeof *s);
    tensor *x = s ? torch_zeros(ndim, input_shape) : NULL;
    if (!x) {
        if (!s) torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        free(s);
        return NULL;
    }
    bool *modes = NULL;
    save_modes(m, &modes);
    nn_module_eval(m);
    watch w = {0};
    const nn_forward_observer obs = {.pre = watch_pre, .post = watch_post, .ctx = &w};
    bool grad_mode = torch_no_grad_enter();
    const nn_forward_observer *outer = nn_set_forward_observer(&obs);
    tensor *y = nn_module_forward(m, x);
    nn_set_forward_observer(outer);
    torch_no_grad_exit(grad_mode);
    ptrdiff_t at = 0;
    restore_modes(m, modes, &at);
    arrfree(modes);
    if (!y) {
        char shape[128], why[512];
        snprintf(why, sizeof why, "%s", torch_last_error());
        torch_error(torch_last_status(), "%s: the forward of a %s input failed: %s", fname,
                    torch_shape_str(ndim, input_shape, shape, sizeof shape), why);
        watch_free(&w);
        tensor_free(x);
        free(s);
        return NULL;
    }
    s->input_bytes = x->numel * (int64_t)torch_dtype_size(x->dtype);
    tensor_free(y);
    tensor_free(x);
    s->num_rows = arrlen(w.rows);
    s->rows = malloc((size_t)(s->num_rows ? s->num_rows : 1) * sizeof *s->rows);
    if (!s->rows) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        watch_free(&w);
        free(s);
        return NULL;
    }
    memcpy(s->rows, w.rows, (size_t)s->num_rows * sizeof *s->rows);
    add_totals(s, w.modules);
    watch_free(&w);
    return s;
}

void nn_summary_free(nn_summary *s) {
    if (!s) return;
    free(s->rows);
    free(s);
}

/* ---- the table -------------------------------------------------------------------------------- */

enum { NAME_WIDTH = 40, COLUMN_WIDTH = 25, NAME_ALIGN = 5 };

/* torch_text_printf, shortened: the table below is made of these. */
#define put(...) torch_text_printf(__VA_ARGS__)

/* Characters, not bytes: the tree's box-drawing characters take three bytes each in UTF-8. */
static int visible_length(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Python's f"{s:<width} ". */
static void put_padded(torch_text *t, const char *s, int width) {
    put(t, "%s", s);
    for (int n = visible_length(s); n < width; n++) put(t, " ");
    put(t, " ");
}

/* Python's f"{n:,}". */
static void group_thousands(int64_t n, char *out, size_t len) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t d = strlen(digits), o = 0;
    if (n < 0 && o + 1 < len) out[o++] = '-';
    for (size_t i = 0; i < d && o + 1 < len; i++) {
        out[o++] = digits[i];
        if ((d - 1 - i) % 3 == 0 && i + 1 < d && o + 1 < len) out[o++] = ',';
    }
    out[o] = '\0';
}

/* torchinfo's format_output_num: ": 50,282", " (MB): 0.20", " (M): 123.46": a whole value prints
 * as an integer, any other with two decimals, both with thousands separators. */
static void put_number(torch_text *t, double value, const char *unit) {
    char fixed[64], whole[48];
    snprintf(fixed, sizeof fixed, "%.2f", value);
    char *dot = strchr(fixed, '.');
    *dot = '\0';
    group_thousands(strtoll(fixed, NULL, 10), whole, sizeof whole);
    bool integral = value == (double)(int64_t)value;
    put(t, "%s%s%s: %s%s%s\n", *unit ? " (" : "", unit, *unit ? ")" : "", whole, integral ? "" : ".",
        integral ? "" : dot + 1);
}

/* torchinfo's automatic unit for counts (mult-adds): none, K, M, G or T. */
static void put_count_auto(torch_text *t, const char *label, int64_t n) {
    static const struct {
        double      factor;
        const char *unit;
    } units[] = {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "K"}};
    put(t, "%s", label);
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if ((double)n >= units[i].factor) {
            put_number(t, (double)n / units[i].factor, units[i].unit);
            return;
        }
    put_number(t, (double)n, "");
}

/* torchinfo's layer title, "Conv2d: 1-3" ("Sequential" for the model itself). */
static void row_title(const nn_summary_row *row, char *out, size_t len) {
    if (row->depth == 0)
        snprintf(out, len, "%s", row->type_name);
    else
        snprintf(out, len, "%s: %d-%lld", row->type_name, row->depth, (long long)row->depth_index);
}

/* The title behind its place in the tree: "├─" at depth 1, "│    " per level and "└─" below. */
static void put_row_name(torch_text *t, const nn_summary_row *row, int width) {
    char title[256], name[1024] = "";
    row_title(row, title, sizeof title);
    size_t at = 0;
    for (int d = 1; d < row->depth && at + 16 < sizeof name; d++)
        at += (size_t)snprintf(name + at, sizeof name - at, "│    ");
    snprintf(name + at, sizeof name - at, "%s%s", row->depth == 0 ? "" : row->depth == 1 ? "├─" : "└─", title);
    put_padded(t, name, width);
}

/* torchinfo's num_params_to_str: "--" without parameters, "(recursive)" for a module seen
 * before, "(288)" when none is trainable; a container shows only the parameters that are its
 * own, if any. */
static void row_params(const nn_summary_row *row, int64_t own, char *out, size_t len) {
    int64_t n = row->is_leaf ? row->num_params : own;
    if (row->num_params > 0 && row->recursive) {
        snprintf(out, len, "(recursive)");
        return;
    }
    if (row->num_params == 0 || n <= 0) {
        snprintf(out, len, "--");
        return;
    }
    char digits[40];
    group_thousands(n, digits, sizeof digits);
    snprintf(out, len, row->is_leaf && row->trainable_params == 0 ? "(%s)" : "%s", digits);
}

char *nn_summary_str(const nn_summary *s) {
    if (!s) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_summary_str: summary is NULL");
        return NULL;
    }
    /* The name column grows, in steps of 5, when a title and its indent do not fit in 40. */
    int width = NAME_WIDTH, longest = 0;
    for (int64_t r = 0; r < s->num_rows; r++) {
        char title[256];
        row_title(&s->rows[r], title, sizeof title);
        int need = (int)strlen(title) + s->rows[r].depth * NAME_ALIGN + 1;
        if (need > longest) longest = need;
    }
    if (longest >= width) width = (longest + NAME_ALIGN - 1) / NAME_ALIGN * NAME_ALIGN;
    int total_width = width + 2 * COLUMN_WIDTH;

    torch_text t = {0};
    char divider[512];
    int dw = total_width < (int)sizeof divider - 1 ? total_width : (int)sizeof divider - 1;
    memset(divider, '=', (size_t)dw);
    divider[dw] = '\0';

    put(&t, "%s\n", divider);
    put_padded(&t, "Layer (type:depth-idx)", width);
    put_padded(&t, "Output Shape", COLUMN_WIDTH);
    put(&t, "Param #\n%s\n", divider);
    /* A container's own parameters: its total minus what its direct children hold. */
    for (int64_t r = 0; r < s->num_rows; r++) {
        const nn_summary_row *row = &s->rows[r];
        int64_t own = row->num_params;
        for (int64_t c = r + 1; c < s->num_rows && s->rows[c].depth > row->depth; c++)
            if (s->rows[c].depth == row->depth + 1) own -= s->rows[c].num_params;
        char shape[160] = "--", params[48]; /* "--" for no shape, as torchinfo's str_ */
        if (row->ndim > 0) torch_shape_str(row->ndim, row->shape, shape, sizeof shape);
        row_params(row, own, params, sizeof params);
        put_row_name(&t, row, width);
        put_padded(&t, shape, COLUMN_WIDTH);
        put(&t, "%s\n", params);
    }
    put(&t, "%s\n", divider);
    put(&t, "Total params");
    put_number(&t, (double)s->total_params, "");
    put(&t, "Trainable params");
    put_number(&t, (double)s->trainable_params, "");
    put(&t, "Non-trainable params");
    put_number(&t, (double)(s->total_params - s->trainable_params), "");
    put_count_auto(&t, "Total mult-adds", s->mult_adds);
    put(&t, "%s\n", divider);
    const struct {
        const char *label;
        int64_t     bytes;
    } sizes[] = {
        {"Input size", s->input_bytes},
        {"Forward/backward pass size", s->forward_backward_bytes},
        {"Activations", s->activation_bytes},
        {"Params size", s->param_bytes},
        {"Estimated Total Size", s->input_bytes + s->forward_backward_bytes + s->param_bytes},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        put(&t, "%s", sizes[i].label);
        put_number(&t, (double)sizes[i].bytes / 1e6, "MB");
    }
    put(&t, "%s\n", divider);

    char *out = torch_text_take(&t);
    if (!out) torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_summary_str: out of memory");
    return out;
}
