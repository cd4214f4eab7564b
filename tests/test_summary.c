/* nn_module_num_parameters and nn_module_summary against PyTorch (tests/fixtures/summary_fixture.h,
 * from scripts/make_summary_fixture.py): each module's output shape and parameter counts as
 * PyTorch's forward hooks see them, and the totals by torchinfo's definitions; the table's layout
 * against hand-written lines; and the summary leaving the model as it was. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../examples/models.h"
#include "fixtures/summary_fixture.h"

static nn_module *build(const char *name, torch_generator *g) {
    if (!strcmp(name, "deep")) return deep_cnn(g);
    nn_module *m = reference_cnn(g);
    if (m && !strcmp(name, "frozen")) tensor_set_requires_grad(nn_module_get_parameter(m, "0.weight"), false);
    return m;
}

Test(summary, rows_and_totals_match_pytorch_and_torchinfos_definitions) {
    for (size_t c = 0; c < sizeof summary_fix_cases / sizeof *summary_fix_cases; c++) {
        const summary_fix_case *fx = &summary_fix_cases[c];
        torch_generator g = torch_generator_new(0);
        nn_module *m = build(fx->name, &g);
        cr_assert_not_null(m, "%s", torch_last_error());
        cr_assert_eq(nn_module_num_parameters(m, false), fx->params, "%s", fx->name);
        cr_assert_eq(nn_module_num_parameters(m, true), fx->trainable, "%s", fx->name);
        nn_summary *s = nn_module_summary(m, 4, fx->input);
        cr_assert_not_null(s, "%s: %s", fx->name, torch_last_error());
        cr_assert_eq(s->num_rows, fx->num_rows, "%s: %lld rows", fx->name, (long long)s->num_rows);
        for (int r = 0; r < fx->num_rows; r++) {
            const nn_summary_row *row = &s->rows[r];
            const summary_fix_row *want = &fx->rows[r];
            cr_assert_str_eq(row->type_name, want->type, "%s row %d", fx->name, r);
            cr_assert_eq(row->depth, want->depth, "%s row %d", fx->name, r);
            cr_assert_eq(row->depth_index, want->depth_index, "%s row %d", fx->name, r);
            cr_assert_eq(row->ndim, want->ndim, "%s row %d (%s)", fx->name, r, want->type);
            for (int d = 0; d < want->ndim; d++) cr_assert_eq(row->shape[d], want->shape[d], "%s row %d dim %d", fx->name, r, d);
            cr_assert_eq(row->num_params, want->params, "%s row %d", fx->name, r);
            cr_assert_eq(row->trainable_params, want->trainable, "%s row %d", fx->name, r);
        }
        cr_assert_eq(s->total_params, fx->params, "%s", fx->name);
        cr_assert_eq(s->trainable_params, fx->trainable, "%s", fx->name);
        cr_assert_eq(s->param_bytes, fx->param_bytes, "%s", fx->name);
        cr_assert_eq(s->input_bytes, fx->input_bytes, "%s", fx->name);
        cr_assert_eq(s->forward_backward_bytes, fx->forward_backward_bytes, "%s", fx->name);
        cr_assert_eq(s->mult_adds, fx->mult_adds, "%s", fx->name);
        nn_summary_free(s);
        nn_module_free(m);
    }
}

/* The activations by hand, reference CNN, batch 64, float32: every leaf's output,
 * 64 * 4 * (3 * 32*28*28 + 32*14*14 + 3 * 64*14*14 + 64*7*7 + 3136 + 10) = 256 * 125,450
 * = 32,115,200 bytes. */
Test(summary, activation_bytes_sum_every_leaf_output) {
    torch_generator g = torch_generator_new(0);
    nn_module *m = reference_cnn(&g);
    nn_summary *s = nn_module_summary(m, TORCH_SHAPE(64, 1, 28, 28));
    cr_assert_not_null(s, "%s", torch_last_error());
    cr_assert_eq(s->activation_bytes, 32115200);
    nn_summary_free(s);
    nn_module_free(m);
}

static bool has_line(const char *table, const char *line) {
    size_t n = strlen(line);
    for (const char *p = table; (p = strstr(p, line)); p += n)
        if ((p == table || p[-1] == '\n') && p[n] == '\n') return true;
    return false;
}

/* Each of lines[] is a whole line of table. */
static void expect_lines(const char *table, const char *const *lines, size_t n) {
    for (size_t i = 0; i < n; i++) cr_assert(has_line(table, lines[i]), "missing line \"%s\" in\n%s", lines[i], table);
}

Test(summary, table_is_torchinfos_layout) {
    torch_generator g = torch_generator_new(0);
    nn_module *m = build("frozen", &g);
    nn_summary *s = nn_module_summary(m, TORCH_SHAPE(64, 1, 28, 28));
    cr_assert_not_null(s, "%s", torch_last_error());
    char *t = nn_summary_str(s);
    cr_assert_not_null(t);
    const char *lines[] = {
        "==========================================================================================",
        "Layer (type:depth-idx)                   Output Shape              Param #",
        "Sequential                               [64, 10]                  --",
        "├─Conv2d: 1-1                            [64, 32, 28, 28]          (288)",
        "├─BatchNorm2d: 1-2                       [64, 32, 28, 28]          64",
        "├─ReLU: 1-3                              [64, 32, 28, 28]          --",
        "├─Conv2d: 1-5                            [64, 64, 14, 14]          18,432",
        "├─Linear: 1-10                           [64, 10]                  31,370",
        "Total params: 50,282",
        "Trainable params: 49,994",
        "Non-trainable params: 288",
        "Total mult-adds (M): 247.68",
        "Input size (MB): 0.20",
        "Forward/backward pass size (MB): 38.54",
        "Activations (MB): 32.12",
        "Params size (MB): 0.20",
        "Estimated Total Size (MB): 38.94",
    };
    expect_lines(t, lines, sizeof lines / sizeof *lines);
    free(t);
    nn_summary_free(s);
    nn_module_free(m);
}

/* Nesting draws torchinfo's tree and numbers each depth on its own. */
Test(summary, nested_containers_draw_the_tree) {
    nn_module *inner[] = {nn_linear(NN_LINEAR_OPTIONS(.in_features = 3, .out_features = 4)), nn_relu()};
    nn_module *outer[] = {nn_sequential(2, inner), nn_linear(NN_LINEAR_OPTIONS(.in_features = 4, .out_features = 2))};
    nn_module *m = nn_sequential(2, outer);
    nn_summary *s = nn_module_summary(m, TORCH_SHAPE(5, 3));
    cr_assert_not_null(s, "%s", torch_last_error());
    char *t = nn_summary_str(s);
    const char *lines[] = {
        "Sequential                               [5, 2]                    --",
        "├─Sequential: 1-1                        [5, 4]                    --",
        "│    └─Linear: 2-1                       [5, 4]                    16",
        "│    └─ReLU: 2-2                         [5, 4]                    --",
        "├─Linear: 1-2                            [5, 2]                    10",
        "Total params: 26",
        "Total mult-adds: 130", /* 5 * 16 + 5 * 10: below 1000, no unit */
    };
    expect_lines(t, lines, sizeof lines / sizeof *lines);
    free(t);
    nn_summary_free(s);
    nn_module_free(m);
}

/* The name column widens in steps of 5 when a title and its indent need 40 characters or more. */
Test(summary, long_names_widen_the_name_column) {
    nn_module *m = nn_adaptive_avg_pool2d(NN_ADAPTIVE_AVG_POOL2D_OPTIONS(.output_size = {1, 1}));
    for (int depth = 0; depth < 6; depth++) m = nn_sequential(1, (nn_module *[]){m});
    /* deepest title "AdaptiveAvgPool2d: 6-1" is 22 long, at depth 6: 22 + 30 + 1 = 53 -> 55 */
    nn_summary *s = nn_module_summary(m, TORCH_SHAPE(1, 1, 2, 2));
    cr_assert_not_null(s, "%s", torch_last_error());
    char *t = nn_summary_str(s);
    char divider[106];
    memset(divider, '=', 105);
    divider[105] = '\0';
    cr_assert(has_line(t, divider), "55 + 2 * 25 wide:\n%s", t);
    free(t);
    nn_summary_free(s);
    nn_module_free(m);
}

/* A module whose forward runs its child twice: the second row is torchinfo's "(recursive)", the
 * child's parameters count once, its mult-adds twice (2 rows x 5 samples x 12 elements). */
static tensor *twice_forward(nn_module *self, tensor *input) {
    nn_module *lin = self->children[0].value;
    tensor *h = nn_module_forward(lin, input);
    tensor *out = h ? nn_module_forward(lin, h) : NULL;
    tensor_free(h);
    return out;
}

static const nn_module_ops twice_ops = {.type_name = "Twice", .forward = twice_forward};

Test(summary, a_module_run_twice_counts_once) {
    nn_module *m = nn_module_alloc(sizeof(nn_module), &twice_ops);
    cr_assert_not_null(nn_module_register_module(m, "lin", nn_linear(NN_LINEAR_OPTIONS(.in_features = 3, .out_features = 3))));
    nn_summary *s = nn_module_summary(m, TORCH_SHAPE(5, 3));
    cr_assert_not_null(s, "%s", torch_last_error());
    cr_assert_eq(s->num_rows, 3);
    cr_assert_not(s->rows[1].recursive);
    cr_assert(s->rows[2].recursive);
    cr_assert_eq(s->total_params, 12);
    cr_assert_eq(s->mult_adds, 2 * 5 * 12);
    char *t = nn_summary_str(s);
    const char *lines[] = {
        "Twice                                    [5, 3]                    --",
        "├─Linear: 1-1                            [5, 3]                    12",
        "├─Linear: 1-2                            [5, 3]                    (recursive)",
        "Total params: 12",
    };
    expect_lines(t, lines, sizeof lines / sizeof *lines);
    free(t);
    nn_summary_free(s);
    nn_module_free(m);
}

Test(summary, leaves_the_model_as_it_was) {
    torch_generator g = torch_generator_new(0);
    nn_module *m = reference_cnn(&g);
    nn_module_eval(nn_sequential_at(m, 1)); /* mixed modes: training model, one BatchNorm in eval */
    nn_batch_norm_module *bn = nn_as_batch_norm(nn_sequential_at(m, 5));
    tensor_fill_(bn->running_mean, 0.25);
    tensor *mean_before = tensor_clone(bn->running_mean);
    nn_summary *s = nn_module_summary(m, TORCH_SHAPE(4, 1, 28, 28));
    cr_assert_not_null(s, "%s", torch_last_error());
    cr_assert(m->training);
    cr_assert_not(nn_sequential_at(m, 1)->training, "its own eval flag is kept");
    cr_assert(nn_sequential_at(m, 5)->training);
    cr_assert(torch_equal(bn->running_mean, mean_before), "running statistics untouched");
    cr_assert_eq(tensor_item(bn->num_batches_tracked), 0.0);
    cr_assert(torch_is_grad_enabled());
    cr_assert_null(tensor_grad(bn->weight));
    nn_summary_free(s);
    /* The same after a forward that fails. */
    cr_assert_null(nn_module_summary(m, TORCH_SHAPE(4, 3, 28, 28)));
    cr_assert_str_eq(torch_last_error(),
                     "nn_module_summary: the forward of a [4, 3, 28, 28] input failed: "
                     "Conv2d: expected input with 1 channels (got 3)");
    cr_assert(m->training);
    cr_assert_not(nn_sequential_at(m, 1)->training);
    cr_assert(torch_is_grad_enabled());
    tensor_free(mean_before);
    nn_module_free(m);
}

Test(summary, bad_arguments_are_refused) {
    cr_assert_null(nn_module_summary(NULL, TORCH_SHAPE(1, 3)));
    cr_assert_str_eq(torch_last_error(), "nn_module_summary: module is NULL");
    nn_module *m = nn_relu();
    cr_assert_null(nn_module_summary(m, TORCH_SHAPE(2, -1)));
    cr_assert_not_null(strstr(torch_last_error(), "nn_module_summary"), "%s", torch_last_error());
    cr_assert_null(nn_summary_str(NULL));
    cr_assert_str_eq(torch_last_error(), "nn_summary_str: summary is NULL");
    cr_assert_eq(nn_module_num_parameters(NULL, false), 0);
    nn_summary_free(NULL);
    nn_module_free(m);
}
