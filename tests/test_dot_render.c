/* test_dot_render.c — Graphviz reads what torch_make_dot writes: its own parse (dot -Tplain) finds
 * the nodes and edges we drew, and it renders a PNG. Needs Graphviz's `dot` (Debian's graphviz);
 * without it every test here is skipped, visibly (CTest shows the program as Skipped). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctorch.h"

/* true when an executable `dot` is on PATH. */
static bool have_dot(void) {
    const char *path = getenv("PATH");
    if (!path) return false;
    char dir[4096];
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(dir, sizeof dir, "%.*s/dot", (int)n, n ? p : ".");
        if (access(dir, X_OK) == 0) return true;
        p += n + (p[n] == ':');
    }
    return false;
}

static void need_dot(void) {
    if (!have_dot()) cr_skip_test("Graphviz's dot is not on PATH (apt-get install graphviz): nothing rendered");
}

typedef struct scratch {
    char dir[256], dot[300], out[300];
} scratch;

static void scratch_make(scratch *s) {
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/ctorch-dot.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(s->dir));
    snprintf(s->dot, sizeof s->dot, "%s/graph.dot", s->dir);
    snprintf(s->out, sizeof s->out, "%s/graph.out", s->dir);
}

static void scratch_free(scratch *s) {
    remove(s->dot);
    remove(s->out);
    rmdir(s->dir);
}

/* Runs `dot -T<format> graph.dot -o graph.out` on text; the exit status. */
static int run_dot(const scratch *s, const char *text, const char *format) {
    FILE *f = fopen(s->dot, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "dot -T%s '%s' -o '%s'", format, s->dot, s->out);
    return system(cmd);
}

/* loss = sum(w * x + b), with what backward keeps: the graph test_dot.c checks line by line. */
static char *expression_dot(tensor **keep) {
    tensor *w = torch_tensor((const float[]){1, 2, 3}, TORCH_SHAPE(3));
    tensor *b = torch_tensor((const float[]){0.5f}, TORCH_SHAPE(1));
    tensor *x = torch_tensor((const float[]){4, 5, 6}, TORCH_SHAPE(3));
    tensor_set_requires_grad(w, true);
    tensor_set_requires_grad(b, true);
    tensor *wx = torch_mul(w, x), *h = torch_add(wx, b), *loss = torch_sum(h, 0, NULL, false);
    torch_dot_label labels[] = {{w, "w", TORCH_DOT_PARAMETER}, {b, "b", TORCH_DOT_PARAMETER}, {x, "x", TORCH_DOT_INPUT}};
    /* A root name with a quote, a backslash and a newline: escaped, Graphviz must still read it. */
    char *dot = torch_make_dot(loss, (torch_make_dot_options){.labels = labels, .n_labels = 3, .show_saved = true,
                                                              .root_name = "loss \"L\" \\ sum\nof w x + b"});
    cr_assert_not_null(dot);
    tensor_free(wx);
    tensor_free(h);
    tensor_free(w);
    tensor_free(b);
    tensor_free(x);
    *keep = loss;
    return dot;
}

Test(dot_render, graphviz_finds_our_nodes_and_edges) {
    need_dot();
    scratch s;
    scratch_make(&s);
    tensor *loss;
    char *dot = expression_dot(&loss);
    cr_assert_eq(run_dot(&s, dot, "plain"), 0, "dot could not read:\n%s", dot);
    /* -Tplain: one "node name x y w h label ..." line per node, one "edge tail head ..." per edge. */
    FILE *f = fopen(s.out, "r");
    cr_assert_not_null(f);
    char line[1024];
    int nodes = 0, edges = 0;
    bool saved_label = false, root_label = false;
    while (fgets(line, sizeof line, f)) {
        nodes += strncmp(line, "node ", 5) == 0;
        edges += strncmp(line, "edge ", 5) == 0;
        saved_label = saved_label || strstr(line, "\"saved x\\n[3] float32, 12 B\"") != NULL;
        root_label = root_label || strstr(line, "\"loss \\\"L\\\" \\\\ sum\\nof w x + b\\n[]\\nrequires grad\"") != NULL;
    }
    fclose(f);
    /* output, Sum, Add, Mul, w, b, x and the saved x; 6 data edges and the saved tensor's. */
    cr_expect_eq(nodes, 8);
    cr_expect_eq(edges, 7);
    cr_expect(saved_label, "Graphviz read the saved tensor's label");
    cr_expect(root_label, "Graphviz read the escaped root label");
    free(dot);
    tensor_free(loss);
    scratch_free(&s);
}

Test(dot_render, renders_a_png) {
    need_dot();
    scratch s;
    scratch_make(&s);
    tensor *loss;
    char *dot = expression_dot(&loss);
    cr_assert_eq(run_dot(&s, dot, "png"), 0);
    FILE *f = fopen(s.out, "rb");
    cr_assert_not_null(f);
    unsigned char magic[8] = {0};
    cr_expect_eq(fread(magic, 1, 8, f), 8u);
    fclose(f);
    cr_expect(memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0, "a PNG file");
    free(dot);
    tensor_free(loss);
    scratch_free(&s);
}
