/* test_dot.c — torch_make_dot and nn_module_make_dot: the emitted DOT is parsed back (node
 * declarations, edges, labels) and compared with the graph each expression must have, worked out
 * by hand from the ops' definitions. Rendering by Graphviz itself is test_dot_render.c. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ctorch.h"

/* ---- a parser for the DOT subset torch_make_dot writes ------------------------------------------
 * One statement per line: `  id [label="...", ...];`, `  a -> b;` or `  a -> b [...];`. */

#define MAX_ITEMS 64

typedef struct parsed {
    int  n_nodes, n_edges, n_saved_edges;
    char node_id[MAX_ITEMS][16];
    char label[MAX_ITEMS][160]; /* with DOT's \n kept as the two characters */
    char from[MAX_ITEMS][16], to[MAX_ITEMS][16];
    char title[256];
} parsed;

static void parse(const char *dot, parsed *p) {
    memset(p, 0, sizeof *p);
    cr_assert(strncmp(dot, "digraph autograd {\n", 19) == 0, "%s", dot);
    cr_assert(strlen(dot) >= 2 && strcmp(dot + strlen(dot) - 2, "}\n") == 0, "%s", dot);
    const char *line = strchr(dot, '\n') + 1;
    while (*line && *line != '}') {
        const char *end = strchr(line, '\n');
        cr_assert_not_null(end);
        char buf[512];
        size_t len = (size_t)(end - line);
        cr_assert_lt(len, sizeof buf);
        memcpy(buf, line, len);
        buf[len] = '\0';
        char a[16], b[16];
        int used = 0;
        if (sscanf(buf, "  %15[a-z0-9_] -> %15[a-z0-9_]%n", a, b, &used) == 2) {
            cr_assert_lt(p->n_edges, MAX_ITEMS);
            if (strstr(buf + used, "style=dotted")) p->n_saved_edges++;
            strcpy(p->from[p->n_edges], a);
            strcpy(p->to[p->n_edges++], b);
        } else if (sscanf(buf, "  %15[a-z0-9_] [label=\"%n", a, &used) == 1 && used > 0) {
            const char *q = buf + used, *close = q;
            while (*close && !(*close == '"' && close[-1] != '\\')) close++;
            cr_assert(*close == '"', "unterminated label: %s", buf);
            cr_assert_lt(p->n_nodes, MAX_ITEMS);
            strcpy(p->node_id[p->n_nodes], a);
            snprintf(p->label[p->n_nodes++], sizeof p->label[0], "%.*s", (int)(close - q), q);
        } else if (strncmp(buf, "  label=\"", 9) == 0) {
            snprintf(p->title, sizeof p->title, "%.*s", (int)(len - 11), buf + 9);
        } else {
            cr_assert(strncmp(buf, "  node [", 8) == 0 || strcmp(buf, "  labelloc=t;") == 0, "unexpected line: %s", buf);
        }
        line = end + 1;
    }
    /* Every edge joins declared nodes, and ids are unique. */
    for (int e = 0; e < p->n_edges; e++) {
        bool from = false, to = false;
        for (int n = 0; n < p->n_nodes; n++) {
            from = from || strcmp(p->node_id[n], p->from[e]) == 0;
            to = to || strcmp(p->node_id[n], p->to[e]) == 0;
        }
        cr_assert(from && to, "edge %s -> %s joins an undeclared node", p->from[e], p->to[e]);
    }
    for (int i = 0; i < p->n_nodes; i++)
        for (int j = 0; j < i; j++) cr_assert_str_neq(p->node_id[i], p->node_id[j]);
}

/* The id of the node whose label is exactly `label`. */
static const char *node(const parsed *p, const char *label) {
    for (int n = 0; n < p->n_nodes; n++)
        if (strcmp(p->label[n], label) == 0) return p->node_id[n];
    cr_assert_fail("no node labelled \"%s\"", label);
    return NULL;
}

static bool has_edge(const parsed *p, const char *from, const char *to) {
    for (int e = 0; e < p->n_edges; e++)
        if (strcmp(p->from[e], from) == 0 && strcmp(p->to[e], to) == 0) return true;
    return false;
}

static tensor *leaf(const float *v, int64_t n, bool requires_grad) {
    tensor *t = torch_tensor(v, TORCH_SHAPE(n));
    cr_assert_not_null(t);
    cr_assert_eq(tensor_set_requires_grad(t, requires_grad), TORCH_OK);
    return t;
}

/* ---- an expression by hand: loss = sum(w * x + b), w and b parameters, x data ------------------- */

typedef struct expr {
    tensor *w, *b, *x, *loss;
    torch_dot_label labels[3];
} expr;

static void expr_make(expr *e) {
    e->w = leaf((const float[]){1, 2, 3}, 3, true);
    e->b = leaf((const float[]){0.5f}, 1, true);
    e->x = leaf((const float[]){4, 5, 6}, 3, false);
    tensor *wx = torch_mul(e->w, e->x), *h = torch_add(wx, e->b);
    e->loss = torch_sum(h, 0, NULL, false);
    cr_assert_not_null(e->loss);
    tensor_free(wx);
    tensor_free(h);
    e->labels[0] = (torch_dot_label){e->w, "w", TORCH_DOT_PARAMETER};
    e->labels[1] = (torch_dot_label){e->b, "b", TORCH_DOT_PARAMETER};
    e->labels[2] = (torch_dot_label){e->x, "x", TORCH_DOT_INPUT};
}

static void expr_free(expr *e) {
    tensor_free(e->loss);
    tensor_free(e->w);
    tensor_free(e->b);
    tensor_free(e->x);
}

Test(dot, expression_nodes_edges_and_labels) {
    expr e;
    expr_make(&e);
    char *dot = torch_make_dot(e.loss, (torch_make_dot_options){.labels = e.labels, .n_labels = 3, .root_name = "loss"});
    cr_assert_not_null(dot, "%s", torch_last_error());
    parsed p;
    parse(dot, &p);
    /* loss, SumBackward0, AddBackward0, MulBackward0, w, b, x. */
    cr_expect_eq(p.n_nodes, 7, "%s", dot);
    cr_expect_eq(p.n_edges, 6, "%s", dot);
    const char *root = node(&p, "loss\\n[]\\nrequires grad");
    const char *sum = node(&p, "SumBackward0\\n[]");
    const char *add = node(&p, "AddBackward0\\n[3]");
    const char *mul = node(&p, "MulBackward0\\n[3]");
    const char *w = node(&p, "w\\nparameter [3]\\nrequires grad");
    const char *b = node(&p, "b\\nparameter [1]\\nrequires grad");
    const char *x = node(&p, "x\\ninput [3]\\nno grad");
    cr_expect(has_edge(&p, sum, root) && has_edge(&p, add, sum) && has_edge(&p, mul, add));
    cr_expect(has_edge(&p, b, add) && has_edge(&p, w, mul) && has_edge(&p, x, mul));
    cr_expect_str_eq(p.title, "loss []: 3 ops, 2 leaf tensors requiring grad, 1 constant");
    /* Ids follow a breadth-first walk from the root. */
    cr_expect_str_eq(sum, "n1");
    cr_expect_str_eq(add, "n2");
    free(dot);
    expr_free(&e);
}

Test(dot, saved_tensors_with_their_bytes) {
    expr e;
    expr_make(&e);
    torch_make_dot_options o = {.labels = e.labels, .n_labels = 3, .show_saved = true};
    char *dot = torch_make_dot(e.loss, o);
    cr_assert_not_null(dot);
    parsed p;
    parse(dot, &p);
    /* w * x saves x, which w's gradient needs (and not w: x needs no gradient); the sum and the
     * addition save nothing. 3 floats = 12 B. */
    cr_expect_eq(p.n_nodes, 8, "%s", dot);
    cr_expect_eq(p.n_saved_edges, 1);
    const char *saved = node(&p, "saved x\\n[3] float32, 12 B");
    cr_expect(has_edge(&p, saved, node(&p, "MulBackward0\\n[3]")));
    cr_expect_str_eq(p.title, "output []: 3 ops, 2 leaf tensors requiring grad, 1 constant, saved for backward 12 B");
    free(dot);

    /* Backward without retain_graph frees what the node saved: the picture says so. */
    cr_assert_eq(tensor_backward(e.loss, NULL, false), TORCH_OK);
    dot = torch_make_dot(e.loss, o);
    parse(dot, &p);
    cr_expect_eq(p.n_nodes, 7, "%s", dot);
    node(&p, "MulBackward0\\n[3]\\nsaved state freed by backward");
    node(&p, "AddBackward0\\n[3]"); /* saved nothing, lost nothing */
    free(dot);
    expr_free(&e);
}

Test(dot, a_tensor_used_twice_is_one_node_and_unlabelled_tensors_are_named_by_kind) {
    tensor *w = leaf((const float[]){1, 2}, 2, true);
    tensor *c = leaf((const float[]){3, 4}, 2, false);
    tensor *ww = torch_mul(w, w), *y = torch_add(ww, c);
    char *dot = torch_make_dot(y, (torch_make_dot_options){0});
    parsed p;
    parse(dot, &p);
    cr_expect_eq(p.n_nodes, 5, "%s", dot); /* output, Add, Mul, w, c */
    const char *wn = node(&p, "leaf [2]\\nrequires grad"), *mul = node(&p, "MulBackward0\\n[2]");
    int into_mul = 0;
    for (int i = 0; i < p.n_edges; i++) into_mul += strcmp(p.from[i], wn) == 0 && strcmp(p.to[i], mul) == 0;
    cr_expect_eq(into_mul, 2, "w enters the product twice");
    node(&p, "constant [2]\\nno grad");
    free(dot);
    tensor_free(y);
    tensor_free(ww);
    tensor_free(w);
    tensor_free(c);
}

Test(dot, two_views_of_one_storage_are_two_constants_and_an_alias_saved_twice_counts_once) {
    /* c[0] and c[1]: same storage, same shape, different elements. */
    const float cv[] = {1, 2, 3, 4, 5, 6};
    tensor *c = torch_tensor(cv, TORCH_SHAPE(2, 3));
    tensor *w = leaf((const float[]){1, 2, 3}, 3, true);
    tensor *c0 = torch_select(c, 0, 0), *c1 = torch_select(c, 0, 1);
    tensor *wc = torch_mul(w, c0), *y = torch_add(wc, c1);
    torch_dot_label label = {c, "c", TORCH_DOT_INPUT};
    char *dot = torch_make_dot(y, (torch_make_dot_options){.labels = &label, .n_labels = 1});
    parsed p;
    parse(dot, &p);
    int views = 0;
    for (int n = 0; n < p.n_nodes; n++) views += strcmp(p.label[n], "c\\ninput [3]\\nno grad") == 0;
    cr_expect_eq(views, 2, "%s", dot); /* both named by their storage */
    cr_expect_eq(p.n_nodes, 6, "%s", dot); /* output, Add, Mul, w, c[0], c[1] */
    free(dot);

    /* w * w saves w twice (once per operand): two saved boxes, 12 bytes counted once. */
    tensor *ww = torch_mul(w, w);
    dot = torch_make_dot(ww, (torch_make_dot_options){.show_saved = true});
    parse(dot, &p);
    cr_expect_eq(p.n_saved_edges, 2, "%s", dot);
    cr_expect_str_eq(p.title, "output [3]: 1 op, 1 leaf tensor requiring grad, 0 constants, saved for backward 12 B");
    free(dot);
    tensor_free(ww);
    tensor_free(y);
    tensor_free(wc);
    tensor_free(c0);
    tensor_free(c1);
    tensor_free(w);
    tensor_free(c);
}

Test(dot, a_root_without_graph_is_drawn_alone) {
    tensor *x = leaf((const float[]){1, 2}, 2, false);
    char *dot = torch_make_dot(x, (torch_make_dot_options){.root_name = "a \"quoted\\\" name"});
    parsed p;
    parse(dot, &p);
    cr_expect_eq(p.n_nodes, 1);
    cr_expect_eq(p.n_edges, 0);
    node(&p, "a \\\"quoted\\\\\\\" name\\n[2]\\nno grad"); /* quotes and backslashes escaped */
    free(dot);
    /* A newline becomes DOT's \n, another control character a space: one line per statement. */
    dot = torch_make_dot(x, (torch_make_dot_options){.root_name = "two\nlines\tand a tab"});
    parse(dot, &p);
    node(&p, "two\\nlines and a tab\\n[2]\\nno grad");
    free(dot);
    tensor_free(x);
}

Test(dot, the_same_graph_gives_the_same_text) {
    expr e1, e2;
    expr_make(&e1);
    expr_make(&e2);
    torch_make_dot_options o1 = {.labels = e1.labels, .n_labels = 3, .show_saved = true};
    torch_make_dot_options o2 = {.labels = e2.labels, .n_labels = 3, .show_saved = true};
    char *a = torch_make_dot(e1.loss, o1), *b = torch_make_dot(e2.loss, o2);
    cr_expect_str_eq(a, b);
    free(a);
    free(b);
    expr_free(&e1);
    expr_free(&e2);
}

Test(dot, bad_arguments_are_refused_with_a_message) {
    expr e;
    expr_make(&e);
    cr_expect_null(torch_make_dot(NULL, (torch_make_dot_options){0}));
    cr_expect_str_eq(torch_last_error(), "torch_make_dot: root is NULL");
    cr_expect_null(torch_make_dot(e.loss, (torch_make_dot_options){.n_labels = 2}));
    cr_expect_str_eq(torch_last_error(), "torch_make_dot: expected labels for n_labels = 2 (got NULL)");
    cr_expect_null(torch_make_dot(e.loss, (torch_make_dot_options){.labels = e.labels, .n_labels = -1}));
    cr_expect_str_eq(torch_last_error(), "torch_make_dot: expected labels for n_labels = -1 (got a negative count)");
    torch_dot_label bad[2] = {e.labels[0], {e.x, NULL, TORCH_DOT_INPUT}};
    cr_expect_null(torch_make_dot(e.loss, (torch_make_dot_options){.labels = bad, .n_labels = 2}));
    cr_expect_str_eq(torch_last_error(), "torch_make_dot: label 1 has no name");
    cr_expect_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
    cr_expect_null(nn_module_make_dot(NULL, e.loss, NULL, false));
    cr_expect_str_eq(torch_last_error(), "nn_module_make_dot: module is NULL");
    nn_module *relu = nn_relu();
    cr_expect_null(nn_module_make_dot(relu, NULL, NULL, false));
    cr_expect_str_eq(torch_last_error(), "nn_module_make_dot: root is NULL");
    nn_module_free(relu);
    expr_free(&e);
}

/* ---- a module: names come from the state_dict keys ---------------------------------------------- */

Test(dot, batch_norm_fused_is_one_node_holding_input_weight_and_statistics) {
    nn_module *bn = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2));
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 2, 2, 2));
    tensor_set_requires_grad(x, true);
    tensor *y = nn_module_forward(bn, x);
    char *dot = nn_module_make_dot(bn, y, x, true);
    cr_assert_not_null(dot, "%s", torch_last_error());
    parsed p;
    parse(dot, &p);
    const char *n = node(&p, "NativeBatchNormBackward0\\n[2, 2, 2, 2]");
    cr_expect(has_edge(&p, node(&p, "input [2, 2, 2, 2]\\nrequires grad"), n));
    cr_expect(has_edge(&p, node(&p, "weight\\nparameter [2]\\nrequires grad"), n));
    cr_expect(has_edge(&p, node(&p, "bias\\nparameter [2]\\nrequires grad"), n));
    /* It saves the input (16 floats) and the weight (2), and its ctx holds the shape and flags
     * and, per channel, mean, invstd and two normalisation constants in double (4 x 2 x 8 B). */
    cr_expect(has_edge(&p, node(&p, "saved input\\n[2, 2, 2, 2] float32, 64 B"), n));
    cr_expect(has_edge(&p, node(&p, "saved weight\\n[2] float32, 8 B"), n));
    cr_expect_eq(p.n_nodes, 8, "%s", dot);
    free(dot);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(bn);
}

Test(dot, batch_norm_composite_in_eval_reads_the_running_mean_as_a_constant_buffer) {
    nn_module *bn = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 2, .affine = false));
    tensor *x = torch_randn(NULL, TORCH_SHAPE(2, 2, 2, 2));
    tensor_set_requires_grad(x, true);
    tensor *y = nnf_batch_norm_composite(x, nn_module_get_buffer(bn, "running_mean"),
                                         nn_module_get_buffer(bn, "running_var"), NULL, NULL, false, 0.1, 1e-5);
    char *dot = nn_module_make_dot(bn, y, x, false);
    parsed p;
    parse(dot, &p);
    /* (x - running_mean) * rsqrt(running_var + eps): the subtraction reads the buffer through a
     * [1, 2, 1, 1] view; invstd was computed without grad, so it is an unnamed constant. */
    const char *sub = node(&p, "SubBackward0\\n[2, 2, 2, 2]");
    cr_expect(has_edge(&p, node(&p, "running_mean\\nbuffer [1, 2, 1, 1]\\nno grad"), sub));
    cr_expect(has_edge(&p, node(&p, "input [2, 2, 2, 2]\\nrequires grad"), sub));
    node(&p, "constant [1, 2, 1, 1]\\nno grad");
    cr_expect_eq(p.n_nodes, 6, "%s", dot); /* output, Mul, Sub, input, running_mean, invstd */
    free(dot);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(bn);
}
