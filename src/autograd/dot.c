/* dot.c — torch_make_dot: the autograd graph as Graphviz DOT (see dot.h for what is drawn). */
#include "dot.h"

#include <stdlib.h>
#include <string.h>

#include "../tensor/text.h"

/* A DOT node already drawn: an op node, a leaf requiring grad, or a constant input (by the id of
 * its tensor struct, since the edge keeps nothing else of it). */
typedef struct drawn {
    const ag_node *node;
    const tensor  *leaf;
    uint64_t       tensor_id;
    int            id;
} drawn;

/* A saved tensor already counted in the total: the same storage range saved twice (w * w saves w
 * twice) is kept once. */
typedef struct counted {
    uint64_t storage;
    int64_t  offset, numel;
} counted;

typedef struct walk {
    torch_text                    out;
    const torch_make_dot_options *o;
    drawn                        *seen;    /* n_seen of cap_seen */
    const ag_node               **queue;   /* op nodes met, drawn in this order: n_queue of cap_queue */
    counted                      *counted; /* n_counted of cap_counted */
    size_t                        n_seen, cap_seen, n_queue, cap_queue, n_counted, cap_counted;
    bool                          failed;  /* out of memory: the picture is abandoned */
    int                           next_id;
    int                           n_ops, n_leaves, n_constants;
    size_t                        saved_bytes;
} walk;

/* array (n elements of `size` bytes, room for *cap) with room for one more: itself or a larger
 * copy; NULL when out of memory (array untouched, w->failed set). */
static void *grow(walk *w, void *array, size_t *cap, size_t n, size_t size) {
    if (w->failed) return NULL;
    if (n < *cap) return array;
    size_t new_cap = *cap ? 2 * *cap : 16;
    void *p = realloc(array, new_cap * size);
    if (!p) w->failed = true;
    else *cap = new_cap;
    return p;
}

static void enqueue(walk *w, const ag_node *n) {
    const ag_node **queue = grow(w, w->queue, &w->cap_queue, w->n_queue, sizeof *queue);
    if (!queue) return;
    w->queue = queue;
    w->queue[w->n_queue++] = n;
}

static const char *role_name(torch_dot_role role) {
    switch (role) {
    case TORCH_DOT_PARAMETER: return "parameter";
    case TORCH_DOT_BUFFER: return "buffer";
    default: return "input";
    }
}

/* The label of tensor t (NULL if only its storage is known): t itself first, then any label on
 * the same storage (a view of a labelled tensor, a saved alias). */
static const torch_dot_label *find_label(const walk *w, const tensor *t, uint64_t storage) {
    for (int i = 0; t && i < w->o->n_labels; i++)
        if (w->o->labels[i].tensor == t) return &w->o->labels[i];
    for (int i = 0; i < w->o->n_labels; i++)
        if (tensor_storage_id(w->o->labels[i].tensor) == storage) return &w->o->labels[i];
    return NULL;
}

/* s as the inside of a DOT string: quotes and backslashes escaped, a newline as DOT's \\n, other
 * control characters as spaces. */
static void put_escaped(torch_text *out, const char *s) {
    for (; *s; s++) {
        if (*s == '\n') torch_text_append(out, "\\n");
        else if ((unsigned char)*s < 0x20 || *s == 0x7f) torch_text_append(out, " ");
        else if (*s == '"' || *s == '\\') torch_text_printf(out, "\\%c", *s);
        else torch_text_append_n(out, s, 1);
    }
}

/* "64 B", "3.1 KiB", "12.3 MiB". */
static const char *bytes_str(size_t n, char *buf, size_t len) {
    if (n < 1024) snprintf(buf, len, "%zu B", n);
    else if (n < (size_t)1 << 20) snprintf(buf, len, "%.1f KiB", (double)n / 1024);
    else snprintf(buf, len, "%.1f MiB", (double)n / (1 << 20));
    return buf;
}

/* The id of an op node (node), or of the leaf or constant input of edge e; a new one if unseen
 * (*is_new; -1 when out of memory). */
static int id_of(walk *w, const ag_node *node, const ag_edge *e, bool *is_new) {
    for (size_t i = 0; i < w->n_seen; i++) {
        const drawn *d = &w->seen[i];
        bool same = node ? d->node == node : e->leaf ? d->leaf == e->leaf : !d->node && !d->leaf && d->tensor_id == e->tensor_id;
        if (same) {
            *is_new = false;
            return d->id;
        }
    }
    *is_new = true;
    drawn *seen = grow(w, w->seen, &w->cap_seen, w->n_seen, sizeof *seen);
    if (!seen) return -1;
    w->seen = seen;
    drawn d = {.node = node, .id = w->next_id++};
    if (!node) d = (drawn){.leaf = e->leaf, .tensor_id = e->tensor_id, .id = d.id};
    w->seen[w->n_seen++] = d;
    return d.id;
}

/* Adds a saved tensor's bytes to the total unless the same storage range was counted. */
static void count_saved(walk *w, const tensor *s, size_t nbytes) {
    const counted c = {tensor_storage_id(s), s->offset, s->numel};
    for (size_t i = 0; i < w->n_counted; i++)
        if (w->counted[i].storage == c.storage && w->counted[i].offset == c.offset && w->counted[i].numel == c.numel)
            return;
    counted *all = grow(w, w->counted, &w->cap_counted, w->n_counted, sizeof *all);
    if (!all) return;
    w->counted = all;
    w->counted[w->n_counted++] = c;
    w->saved_bytes += nbytes;
}

/* A leaf requiring grad (e->leaf) or a constant input, drawn once. */
static void draw_input(walk *w, const ag_edge *e, int id) {
    char shape[96];
    const tensor *t = e->leaf;
    const torch_dot_label *l = find_label(w, t, e->storage_id);
    torch_shape_str(e->ndim, e->shape, shape, sizeof shape);
    torch_text_printf(&w->out, "  %c%d [label=\"", t ? 'l' : 'c', id);
    if (l && strcmp(l->name, role_name(l->role)) == 0) {
        torch_text_printf(&w->out, "%s %s", l->name, shape); /* "input [2, 2]", not "input\\ninput [2, 2]" */
    } else if (l) {
        put_escaped(&w->out, l->name);
        torch_text_printf(&w->out, "\\n%s %s", role_name(l->role), shape);
    } else {
        torch_text_printf(&w->out, "%s %s", t ? "leaf" : "constant", shape);
    }
    if (t) torch_text_printf(&w->out, "\\nrequires grad\", fillcolor=lightblue];\n");
    else torch_text_printf(&w->out, "\\nno grad\", style=\"filled,dashed\", fillcolor=white];\n");
    if (t) w->n_leaves++;
    else w->n_constants++;
}

/* What node n (DOT id n<id>) keeps for its backward. */
static void draw_saved(walk *w, const ag_node *n, int id) {
    char shape[96], bytes[32];
    for (int i = 0; i < AG_MAX_SAVED; i++) {
        const tensor *s = n->saved[i];
        if (!s) continue;
        const size_t nbytes = (size_t)s->numel * torch_dtype_size(s->dtype);
        const torch_dot_label *l = find_label(w, NULL, tensor_storage_id(s));
        torch_text_printf(&w->out, "  s%d_%d [label=\"saved", id, i);
        if (l) {
            torch_text_printf(&w->out, " ");
            put_escaped(&w->out, l->name);
        }
        torch_text_printf(&w->out, "\\n%s %s, %s\", fillcolor=orange];\n", torch_shape_str(s->ndim, s->shape, shape, sizeof shape),
                          torch_dtype_name(s->dtype), bytes_str(nbytes, bytes, sizeof bytes));
        torch_text_printf(&w->out, "  s%d_%d -> n%d [style=dotted, arrowhead=none];\n", id, i, id);
        count_saved(w, s, nbytes);
    }
    if (n->ctx) {
        torch_text_printf(&w->out, "  x%d [label=\"ctx (op state)\\n%s\", fillcolor=orange];\n", id,
                          n->ctx_bytes ? bytes_str(n->ctx_bytes, bytes, sizeof bytes) : "size not given");
        torch_text_printf(&w->out, "  x%d -> n%d [style=dotted, arrowhead=none];\n", id, id);
        w->saved_bytes += n->ctx_bytes;
    }
}

/* Draws op node n (id) and queues the op nodes feeding it. */
static void draw_node(walk *w, const ag_node *n, int id) {
    char shape[96];
    w->n_ops++;
    torch_text_printf(&w->out, "  n%d [label=\"", id);
    put_escaped(&w->out, ag_function_name(n->fn));
    torch_text_printf(&w->out, "\\n%s%s\", fillcolor=lightgrey];\n", torch_shape_str(n->out_ndim, n->out_shape, shape, sizeof shape),
                      n->released ? "\\nsaved state freed by backward" : "");
    for (int i = 0; i < n->n_inputs; i++) {
        const ag_edge *e = &n->inputs[i];
        if (!e->storage_id) continue; /* an absent optional input (a bias of NULL) */
        bool is_new;
        const int in = id_of(w, e->node, e, &is_new);
        if (in < 0) return;
        if (is_new && e->node) enqueue(w, e->node);
        else if (is_new) draw_input(w, e, in);
        torch_text_printf(&w->out, "  %c%d -> n%d;\n", e->node ? 'n' : e->leaf ? 'l' : 'c', in, id);
    }
    if (w->o->show_saved) draw_saved(w, n, id);
}

static torch_status check_options(const tensor *root, const torch_make_dot_options *o) {
    if (!root) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_make_dot: root is NULL");
    if (o->n_labels < 0 || (o->n_labels > 0 && !o->labels))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "torch_make_dot: expected labels for n_labels = %d (got %s)", o->n_labels,
                           o->labels ? "a negative count" : "NULL");
    for (int i = 0; i < o->n_labels; i++)
        if (!o->labels[i].tensor || !o->labels[i].name)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_make_dot: label %d has no %s", i,
                               o->labels[i].tensor ? "name" : "tensor");
    return TORCH_OK;
}

char *torch_make_dot(const tensor *root, torch_make_dot_options options) {
    if (check_options(root, &options) != TORCH_OK) return NULL;
    walk w = {.o = &options};
    char shape[96], bytes[32];
    const char *root_name = options.root_name ? options.root_name : "output";
    torch_shape_str(root->ndim, root->shape, shape, sizeof shape);

    torch_text_append(&w.out, "digraph autograd {\n"
                              "  node [shape=box, style=filled, fontname=\"Helvetica\", fontsize=10];\n"
                              "  t0 [label=\"");
    put_escaped(&w.out, root_name);
    torch_text_printf(&w.out, "\\n%s\\n%s\", fillcolor=darkolivegreen1];\n", shape,
                      root->requires_grad ? "requires grad" : "no grad");
    w.next_id = 1;
    if (root->grad_fn) {
        bool is_new;
        const int id = id_of(&w, root->grad_fn, NULL, &is_new);
        torch_text_printf(&w.out, "  n%d -> t0;\n", id);
        enqueue(&w, root->grad_fn);
    }
    /* Breadth first: the nodes are drawn in the order of their ids, nearest the root first. */
    for (size_t head = 0; head < w.n_queue && !w.failed; head++) {
        bool is_new;
        draw_node(&w, w.queue[head], id_of(&w, w.queue[head], NULL, &is_new));
    }

    torch_text_append(&w.out, "  labelloc=t;\n  label=\"");
    put_escaped(&w.out, root_name);
    torch_text_printf(&w.out, " %s: %d op%s, %d leaf tensor%s requiring grad, %d constant%s", shape, w.n_ops,
                      w.n_ops == 1 ? "" : "s", w.n_leaves, w.n_leaves == 1 ? "" : "s", w.n_constants,
                      w.n_constants == 1 ? "" : "s");
    if (options.show_saved)
        torch_text_printf(&w.out, ", saved for backward %s", bytes_str(w.saved_bytes, bytes, sizeof bytes));
    torch_text_append(&w.out, "\";\n}\n");
    free(w.seen);
    free(w.queue);
    free(w.counted);
    if (w.failed) torch_text_free(&w.out);
    char *dot = w.failed ? NULL : torch_text_take(&w.out);
    if (!dot) torch_error(TORCH_ERR_OUT_OF_MEMORY, "torch_make_dot: out of memory");
    return dot;
}
