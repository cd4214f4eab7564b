/* module.c — the nn module base: registry, train/eval, lookup, repr, state_dict (see module.h).
 *
 * Storage: a module keeps its parameters, buffers and children in stb_ds arrays, in
 * registration order; that order is the state_dict order. Name lookup inside one module scans
 * those arrays (a module has a handful of entries; the base struct has no room for a map and
 * needs none). An nn_tensor_dict, which can hold a whole network's keys, indexes its keys with
 * an stb_ds string map (sh_new_strdup) from key to position in its items array.
 */
#include "module.h"
#include "module_observer.h"
#include "../tensor/text.h"

#include <stb/stb_ds.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---------------------------------------------------------------------------- */

/* strdup is POSIX, not C11. */
static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *r = malloc(n);
    if (r) memcpy(r, s, n);
    return r;
}

/* "prefix" + "name", or just "name" when the prefix is empty. NULL on out-of-memory. */
static char *join_key(const char *prefix, const char *name) {
    size_t a = strlen(prefix), b = strlen(name);
    char *r = malloc(a + b + 1);
    if (!r) return NULL;
    memcpy(r, prefix, a);
    memcpy(r + a, name, b + 1);
    return r;
}

static const char *type_name(const nn_module *m) {
    return m->ops && m->ops->type_name ? m->ops->type_name : "Module";
}

static nn_named_tensor *find_tensor(nn_named_tensor *arr, const char *name) {
    for (ptrdiff_t i = 0; i < arrlen(arr); i++)
        if (strcmp(arr[i].name, name) == 0) return &arr[i];
    return NULL;
}

static nn_module *find_child(const nn_module *m, const char *name, size_t len) {
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++)
        if (strlen(m->children[i].name) == len && memcmp(m->children[i].name, name, len) == 0)
            return m->children[i].value;
    return NULL;
}

/* ---- lifetime --------------------------------------------------------------------------------- */

void nn_module_init(nn_module *m, const nn_module_ops *ops) {
    TORCH_ASSERT(m && ops && ops->forward);
    m->ops = ops;
    m->training = true;
    m->parameters = NULL;
    m->buffers = NULL;
    m->children = NULL;
}

void *nn_module_alloc(size_t size, const nn_module_ops *ops) {
    TORCH_ASSERT(size >= sizeof(nn_module));
    nn_module *m = calloc(1, size);
    if (!m) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", ops->type_name);
        return NULL;
    }
    nn_module_init(m, ops);
    return m;
}

void nn_module_free(nn_module *m) {
    if (!m) return;
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) {
        nn_module_free(m->children[i].value);
        free(m->children[i].name);
    }
    arrfree(m->children);
    if (m->ops && m->ops->destroy) m->ops->destroy(m);
    for (ptrdiff_t i = 0; i < arrlen(m->parameters); i++) {
        tensor_free(m->parameters[i].value);
        free(m->parameters[i].name);
    }
    arrfree(m->parameters);
    for (ptrdiff_t i = 0; i < arrlen(m->buffers); i++) {
        tensor_free(m->buffers[i].value);
        free(m->buffers[i].name);
    }
    arrfree(m->buffers);
    free(m); /* the base is the first member: this frees the whole typed module */
}

/* ---- registration ----------------------------------------------------------------------------- */

/* PyTorch's register_parameter / register_buffer / add_module name rules. `kind` is
 * "parameter", "buffer" or "module"; `fname` the public function for the message. */
static torch_status check_name(const nn_module *m, const char *fname, const char *kind, const char *name) {
    if (!m) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: module is NULL", fname);
    if (!name) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s name is NULL", fname, kind);
    if (name[0] == '\0')
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s name can't be empty string \"\"", fname, kind);
    if (strchr(name, '.'))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s name can't contain \".\", got: %s", fname, kind,
                           name);
    if (find_tensor(m->parameters, name) || find_tensor(m->buffers, name) || find_child(m, name, strlen(name)))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: attribute '%s' already exists", fname, name);
    return TORCH_OK;
}

/* A NULL value is usually the failure of the call that made it, as in
 * register_parameter(m, "weight", torch_empty(...)): keep that call's message, which says why. */
static torch_status null_value(const char *fname, const char *what) {
    torch_status st = torch_last_status();
    return st != TORCH_OK ? st : torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fname, what);
}

tensor *nn_module_register_parameter(nn_module *m, const char *name, tensor *value) {
    static const char *fname = "register_parameter";
    torch_status st = check_name(m, fname, "parameter", name);
    if (st == TORCH_OK && !value) st = null_value(fname, "value");
    if (st == TORCH_OK && value->grad_fn)
        st = torch_error(TORCH_ERR_INVALID_ARGUMENT,
                         "%s: Cannot assign non-leaf Tensor to parameter '%s'. Model parameters must be created "
                         "explicitly (use tensor_detach())", fname, name);
    if (st == TORCH_OK && value->dtype != TORCH_FLOAT32)
        st = torch_error(TORCH_ERR_INVALID_ARGUMENT,
                         "%s: only Tensors of floating point dtype can require gradients (got %s for '%s')", fname,
                         torch_dtype_name(value->dtype), name);
    char *owned = st == TORCH_OK ? copy_string(name) : NULL;
    if (st == TORCH_OK && !owned) st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (st != TORCH_OK) {
        tensor_free(value);
        return NULL;
    }
    value->requires_grad = true;
    nn_named_tensor e = {.name = owned, .value = value, .persistent = true};
    arrput(m->parameters, e);
    return value;
}

tensor *nn_module_register_buffer(nn_module *m, const char *name, tensor *value, bool persistent) {
    static const char *fname = "register_buffer";
    torch_status st = check_name(m, fname, "buffer", name);
    if (st == TORCH_OK && !value) st = null_value(fname, "value");
    char *owned = st == TORCH_OK ? copy_string(name) : NULL;
    if (st == TORCH_OK && !owned) st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (st != TORCH_OK) {
        tensor_free(value);
        return NULL;
    }
    nn_named_tensor e = {.name = owned, .value = value, .persistent = persistent};
    arrput(m->buffers, e);
    return value;
}

nn_module *nn_module_register_module(nn_module *m, const char *name, nn_module *child) {
    static const char *fname = "register_module";
    torch_status st = check_name(m, fname, "module", name);
    if (st == TORCH_OK && !child) st = null_value(fname, "child module");
    if (st == TORCH_OK && child == m)
        st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: a module can't be its own child ('%s')", fname, name);
    char *owned = st == TORCH_OK ? copy_string(name) : NULL;
    if (st == TORCH_OK && !owned) st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (st != TORCH_OK) {
        if (child != m) nn_module_free(child);
        return NULL;
    }
    nn_named_module e = {.name = owned, .value = child};
    arrput(m->children, e);
    return child;
}

/* ---- using modules ---------------------------------------------------------------------------- */

static _Thread_local const nn_forward_observer *observer;

const nn_forward_observer *nn_set_forward_observer(const nn_forward_observer *obs) {
    const nn_forward_observer *previous = observer;
    observer = obs;
    return previous;
}

tensor *nn_module_forward(nn_module *m, tensor *input) {
    if (!m) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_forward: module is NULL");
        return NULL;
    }
    if (!input) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: input is NULL", type_name(m));
        return NULL;
    }
    if (!observer) return m->ops->forward(m, input);
    const nn_forward_observer *obs = observer;
    obs->pre(obs->ctx, m);
    tensor *output = m->ops->forward(m, input);
    obs->post(obs->ctx, m, output);
    return output;
}

tensor *nn_module_forward_absorbing(nn_module *m, nn_module *next, tensor *input, bool *absorbed) {
    *absorbed = false;
    tensor *output = NULL;
    if (!observer && m && input && next && m->ops->absorb_next && m->ops->absorb_next(m, next, input, &output)) {
        *absorbed = true;
        return output;
    }
    return nn_module_forward(m, input);
}

void nn_module_train(nn_module *m, bool mode) {
    if (!m) return;
    m->training = mode;
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) nn_module_train(m->children[i].value, mode);
}

void nn_module_eval(nn_module *m) { nn_module_train(m, false); }

int64_t nn_module_num_parameters(const nn_module *m, bool trainable_only) {
    if (!m) return 0;
    int64_t n = 0;
    for (ptrdiff_t i = 0; i < arrlen(m->parameters); i++) {
        const tensor *p = m->parameters[i].value;
        if (!trainable_only || p->requires_grad) n += p->numel;
    }
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) n += nn_module_num_parameters(m->children[i].value, trainable_only);
    return n;
}

void nn_module_zero_grad(nn_module *m) {
    if (!m) return;
    for (ptrdiff_t i = 0; i < arrlen(m->parameters); i++) tensor_zero_grad(m->parameters[i].value);
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) nn_module_zero_grad(m->children[i].value);
}

void nn_module_zero_grad_in_place(nn_module *m) {
    if (!m) return;
    for (ptrdiff_t i = 0; i < arrlen(m->parameters); i++) tensor_zero_grad_in_place(m->parameters[i].value);
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) nn_module_zero_grad_in_place(m->children[i].value);
}

static torch_status reset_tree(nn_module *m, torch_generator *gen) {
    if (m->ops->reset_parameters) {
        torch_status st = m->ops->reset_parameters(m, gen);
        if (st != TORCH_OK) return st;
    }
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) {
        torch_status st = reset_tree(m->children[i].value, gen);
        if (st != TORCH_OK) return st;
    }
    return TORCH_OK;
}

torch_status nn_module_reset_parameters(nn_module *m, torch_generator *gen) {
    if (!m) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_reset_parameters: module is NULL");
    /* Each reset writes parameters in place: with grad mode off, as PyTorch's init does. */
    bool grad_mode = torch_set_grad_enabled(false);
    torch_status st = reset_tree(m, gen);
    torch_set_grad_enabled(grad_mode);
    return st;
}

/* ---- lookup by dotted key ---------------------------------------------------------------------- */

/* Walks the dotted prefix of key through children; returns the owner and sets *leaf to the
 * last component. NULL if a component is missing. */
static const nn_module *resolve_owner(const nn_module *m, const char *key, const char **leaf) {
    if (!m || !key) return NULL;
    const char *dot;
    while ((dot = strchr(key, '.')) != NULL) {
        m = find_child(m, key, (size_t)(dot - key));
        if (!m) return NULL;
        key = dot + 1;
    }
    *leaf = key;
    return m;
}

tensor *nn_module_get_parameter(const nn_module *m, const char *key) {
    const char *leaf = NULL;
    const nn_module *owner = resolve_owner(m, key, &leaf);
    nn_named_tensor *e = owner ? find_tensor(owner->parameters, leaf) : NULL;
    return e ? e->value : NULL;
}

tensor *nn_module_get_buffer(const nn_module *m, const char *key) {
    const char *leaf = NULL;
    const nn_module *owner = resolve_owner(m, key, &leaf);
    nn_named_tensor *e = owner ? find_tensor(owner->buffers, leaf) : NULL;
    return e ? e->value : NULL;
}

nn_module *nn_module_get_child(const nn_module *m, const char *key) {
    const char *leaf = NULL;
    const nn_module *owner = resolve_owner(m, key, &leaf);
    return owner ? find_child(owner, leaf, strlen(leaf)) : NULL;
}

/* ---- repr ------------------------------------------------------------------------------------- */

/* Appends s with every line after the first indented by `indent` spaces (PyTorch's _addindent). */
static void append_indented(torch_text *b, const char *s, int indent) {
    const char *nl;
    while ((nl = strchr(s, '\n')) != NULL) {
        torch_text_append_n(b, s, (size_t)(nl - s) + 1);
        for (int i = 0; i < indent; i++) torch_text_append_n(b, " ", 1);
        s = nl + 1;
    }
    torch_text_append(b, s);
}

/* The module's extra_repr as a malloc'ed string ("" when it has none); NULL on out-of-memory. */
static char *extra_repr_string(const nn_module *m) {
    if (!m->ops->extra_repr) return copy_string("");
    char small[256];
    int n = m->ops->extra_repr(m, small, sizeof small);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof small) {
        small[n] = '\0';
        return copy_string(small);
    }
    char *big = malloc((size_t)n + 1); /* snprintf semantics: n is the length it wanted */
    if (!big) return NULL;
    m->ops->extra_repr(m, big, (size_t)n + 1);
    big[n] = '\0';
    return big;
}

/* PyTorch's Module.__repr__:
 *   Name(extra)                       one extra line and no children
 *   Name(\n  extra lines\n  (child): repr\n)   otherwise, children indented by 2 */
static void repr_into(const nn_module *m, torch_text *b) {
    char *extra = extra_repr_string(m);
    if (!extra) {
        b->failed = true;
        return;
    }
    torch_text_append(b, type_name(m));
    torch_text_append(b, "(");
    bool has_children = arrlen(m->children) > 0;
    bool multi_line_extra = strchr(extra, '\n') != NULL;
    if (extra[0] && !has_children && !multi_line_extra) {
        torch_text_append(b, extra);
    } else if (extra[0] || has_children) {
        if (extra[0]) {
            torch_text_append(b, "\n  ");
            append_indented(b, extra, 2);
        }
        for (ptrdiff_t i = 0; i < arrlen(m->children); i++) {
            torch_text child = {0};
            repr_into(m->children[i].value, &child);
            if (child.failed) b->failed = true;
            torch_text_append(b, "\n  (");
            torch_text_append(b, m->children[i].name);
            torch_text_append(b, "): ");
            if (child.s) append_indented(b, child.s, 2);
            free(child.s);
        }
        torch_text_append(b, "\n");
    }
    torch_text_append(b, ")");
    free(extra);
}

char *nn_module_repr(const nn_module *m) {
    if (!m) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_repr: module is NULL");
        return NULL;
    }
    torch_text b = {0};
    repr_into(m, &b);
    char *repr = torch_text_take(&b);
    if (!repr) torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_module_repr: out of memory");
    return repr;
}

void nn_module_print(const nn_module *m) {
    char *s = nn_module_repr(m);
    if (s) printf("%s\n", s);
    free(s);
}

/* ---- nn_tensor_dict ------------------------------------------------------------------------------ */

typedef struct dict_index_entry {
    char     *key;   /* owned by the map (sh_new_strdup) */
    ptrdiff_t value; /* position in items */
} dict_index_entry;

nn_tensor_dict *nn_tensor_dict_new(void) {
    nn_tensor_dict *d = calloc(1, sizeof *d);
    if (!d) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_tensor_dict_new: out of memory");
        return NULL;
    }
    dict_index_entry *index = NULL;
    sh_new_strdup(index);
    d->index = index;
    return d;
}

void nn_tensor_dict_free(nn_tensor_dict *d) {
    if (!d) return;
    for (ptrdiff_t i = 0; i < arrlen(d->items); i++) {
        free(d->items[i].name);
        tensor_free(d->items[i].value);
    }
    arrfree(d->items);
    dict_index_entry *index = d->index;
    shfree(index);
    free(d);
}

static ptrdiff_t dict_find(const nn_tensor_dict *d, const char *key) {
    dict_index_entry *index = d->index;
    return shgeti(index, key) >= 0 ? shget(index, key) : -1;
}

tensor *nn_tensor_dict_get(const nn_tensor_dict *d, const char *key) {
    if (!d || !key) return NULL;
    ptrdiff_t i = dict_find(d, key);
    return i >= 0 ? d->items[i].value : NULL;
}

torch_status nn_tensor_dict_set(nn_tensor_dict *d, const char *key, tensor *value) {
    if (!d || !key || !value)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_tensor_dict_set: %s is NULL",
                           !d ? "dict" : !key ? "key" : "value");
    ptrdiff_t i = dict_find(d, key);
    if (i >= 0) {
        tensor_retain(value); /* before the free: value may be the tensor it replaces */
        tensor_free(d->items[i].value);
        d->items[i].value = value;
        return TORCH_OK;
    }
    char *owned = copy_string(key);
    if (!owned) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_tensor_dict_set: out of memory");
    nn_named_tensor e = {.name = owned, .value = tensor_retain(value), .persistent = true};
    arrput(d->items, e);
    d->count = arrlen(d->items);
    dict_index_entry *index = d->index;
    shput(index, key, d->count - 1);
    d->index = index;
    return TORCH_OK;
}

/* ---- deep copies -------------------------------------------------------------------------------- */

/* A module in messages, "%s%s%s%s": "Toy 'inner.b'", or the type alone for the root (key ""). */
#define NAMED(m, key) type_name(m), *(key) ? " '" : "", (key), *(key) ? "'" : ""

/* Copies src's tensors into dst's, which new_like made: the same names and shapes, in order. */
static torch_status copy_tensors(nn_named_tensor *dst, const nn_named_tensor *src, const char *key, const nn_module *m,
                                 const char *kind) {
    if (arrlen(dst) != arrlen(src))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_clone: %s%s%s%s cannot be copied: it has %td %ss, its "
                           "constructor makes %td", NAMED(m, key), arrlen(src), kind, arrlen(dst));
    for (ptrdiff_t i = 0; i < arrlen(src); i++) {
        if (strcmp(dst[i].name, src[i].name) != 0 || dst[i].value->dtype != src[i].value->dtype ||
            !tensor_same_shape(dst[i].value, src[i].value))
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_clone: %s%s%s%s cannot be copied: its %s '%s' is not "
                               "what its constructor makes", NAMED(m, key), kind, src[i].name);
        torch_status st = tensor_copy_(dst[i].value, src[i].value);
        if (st == TORCH_OK) st = tensor_set_requires_grad(dst[i].value, src[i].value->requires_grad);
        if (st != TORCH_OK) return st;
        dst[i].persistent = src[i].persistent;
    }
    return TORCH_OK;
}

static nn_module *clone_tree(const nn_module *m, const char *key) {
    if (!m->ops->new_like) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_clone: %s%s%s%s cannot be copied: its type has no new_like",
                    NAMED(m, key));
        return NULL;
    }
    nn_module *c = m->ops->new_like(m);
    if (!c) return NULL;
    torch_status st = arrlen(c->children) == 0 ? TORCH_OK
                      : torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_clone: %s%s%s%s cannot be copied: its "
                                    "constructor makes children", NAMED(m, key));
    if (st == TORCH_OK) st = copy_tensors(c->parameters, m->parameters, key, m, "parameter");
    if (st == TORCH_OK) st = copy_tensors(c->buffers, m->buffers, key, m, "buffer");
    for (ptrdiff_t i = 0; i < arrlen(m->children) && st == TORCH_OK; i++) {
        char *p1 = join_key(key, *key ? "." : ""), *ck = p1 ? join_key(p1, m->children[i].name) : NULL;
        nn_module *child = ck ? clone_tree(m->children[i].value, ck) : NULL;
        if (!ck) torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_module_clone: out of memory");
        if (!child || !nn_module_register_module(c, m->children[i].name, child)) st = torch_last_status();
        free(p1);
        free(ck);
    }
    if (st != TORCH_OK) {
        nn_module_free(c);
        return NULL;
    }
    c->training = m->training;
    return c;
}

nn_module *nn_module_clone(const nn_module *m) {
    if (!m) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_clone: module is NULL");
        return NULL;
    }
    const bool grad_mode = torch_set_grad_enabled(false); /* copying into parameters */
    nn_module *c = clone_tree(m, "");
    torch_set_grad_enabled(grad_mode);
    return c;
}

/* ---- the module tree ---------------------------------------------------------------------------- */

/* Appends m as `name`, then its children's trees under "<name>.<child>" (pre-order). */
static torch_status list_modules(nn_module *m, const char *name, nn_module_list *l) {
    char *owned = copy_string(name);
    if (!owned) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_module_named_modules: out of memory");
    nn_named_module e = {.name = owned, .value = m};
    arrput(l->items, e);
    l->count = arrlen(l->items);
    torch_status st = TORCH_OK;
    for (ptrdiff_t i = 0; i < arrlen(m->children) && st == TORCH_OK; i++) {
        char *p1 = join_key(name, *name ? "." : ""), *key = p1 ? join_key(p1, m->children[i].name) : NULL;
        st = key ? list_modules(m->children[i].value, key, l)
                 : torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_module_named_modules: out of memory");
        free(p1);
        free(key);
    }
    return st;
}

nn_module_list *nn_module_named_modules(nn_module *m) {
    if (!m) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_named_modules: module is NULL");
        return NULL;
    }
    nn_module_list *l = calloc(1, sizeof *l);
    if (!l) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_module_named_modules: out of memory");
        return NULL;
    }
    if (list_modules(m, "", l) != TORCH_OK) {
        nn_module_list_free(l);
        return NULL;
    }
    return l;
}

void nn_module_list_free(nn_module_list *l) {
    if (!l) return;
    for (ptrdiff_t i = 0; i < arrlen(l->items); i++) free(l->items[i].name);
    arrfree(l->items);
    free(l);
}

/* What to collect while walking the tree. */
enum { COLLECT_PARAMETERS = 1, COLLECT_BUFFERS = 2, COLLECT_PERSISTENT_ONLY = 4 };

static torch_status collect(const nn_module *m, const char *prefix, int what, nn_tensor_dict *d) {
    torch_status st = TORCH_OK;
    if (what & COLLECT_PARAMETERS)
        for (ptrdiff_t i = 0; i < arrlen(m->parameters) && st == TORCH_OK; i++) {
            char *key = join_key(prefix, m->parameters[i].name);
            st = key ? nn_tensor_dict_set(d, key, m->parameters[i].value)
                     : torch_error(TORCH_ERR_OUT_OF_MEMORY, "state_dict: out of memory");
            free(key);
        }
    if (what & COLLECT_BUFFERS)
        for (ptrdiff_t i = 0; i < arrlen(m->buffers) && st == TORCH_OK; i++) {
            if ((what & COLLECT_PERSISTENT_ONLY) && !m->buffers[i].persistent) continue;
            char *key = join_key(prefix, m->buffers[i].name);
            st = key ? nn_tensor_dict_set(d, key, m->buffers[i].value)
                     : torch_error(TORCH_ERR_OUT_OF_MEMORY, "state_dict: out of memory");
            free(key);
        }
    for (ptrdiff_t i = 0; i < arrlen(m->children) && st == TORCH_OK; i++) {
        char *p1 = join_key(prefix, m->children[i].name);
        char *p2 = p1 ? join_key(p1, ".") : NULL;
        st = p2 ? collect(m->children[i].value, p2, what, d)
                : torch_error(TORCH_ERR_OUT_OF_MEMORY, "state_dict: out of memory");
        free(p1);
        free(p2);
    }
    return st;
}

static nn_tensor_dict *collect_dict(const nn_module *m, const char *fname, int what) {
    if (!m) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: module is NULL", fname);
        return NULL;
    }
    nn_tensor_dict *d = nn_tensor_dict_new();
    if (d && collect(m, "", what, d) != TORCH_OK) {
        nn_tensor_dict_free(d);
        return NULL;
    }
    return d;
}

nn_tensor_dict *nn_module_state_dict(const nn_module *m) {
    return collect_dict(m, "nn_module_state_dict", COLLECT_PARAMETERS | COLLECT_BUFFERS | COLLECT_PERSISTENT_ONLY);
}

nn_tensor_dict *nn_module_named_parameters(const nn_module *m) {
    return collect_dict(m, "nn_module_named_parameters", COLLECT_PARAMETERS);
}

nn_tensor_dict *nn_module_named_buffers(const nn_module *m) {
    return collect_dict(m, "nn_module_named_buffers", COLLECT_BUFFERS);
}

/* ---- load_state_dict ------------------------------------------------------------------------------ */

/* The _NormBase convention (BatchNorm1d/2d/3d, later InstanceNorm): a missing
 * "<prefix>num_batches_tracked" int64 scalar buffer loads as 0, as PyTorch 1.13 and R torch do for
 * checkpoints written before the buffer existed. */
static bool is_num_batches_tracked(const char *key, const tensor *t) {
    const char *leaf = strrchr(key, '.');
    leaf = leaf ? leaf + 1 : key;
    return strcmp(leaf, "num_batches_tracked") == 0 && t->dtype == TORCH_INT64 && t->ndim == 0;
}

torch_status nn_module_load_state_dict(nn_module *m, const nn_tensor_dict *d, bool strict) {
    static const char *fname = "load_state_dict";
    if (!m || !d) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fname, !m ? "module" : "dict");
    nn_tensor_dict *own = nn_module_state_dict(m);
    if (!own) return torch_last_status();

    /* 1. Checks, nothing changed yet: sizes and dtypes, then missing keys, then unexpected ones
     * (PyTorch's order of reporting). */
    torch_status st = TORCH_OK;
    char a[96], b[96];
    for (int64_t i = 0; i < own->count && st == TORCH_OK; i++) {
        const tensor *dst = own->items[i].value, *src = nn_tensor_dict_get(d, own->items[i].name);
        if (!src) continue;
        if (!tensor_same_shape(dst, src))
            st = torch_error(TORCH_ERR_KEY, "%s: size mismatch for \"%s\": checkpoint %s, model %s", fname,
                             own->items[i].name, torch_shape_str(src->ndim, src->shape, a, sizeof a),
                             torch_shape_str(dst->ndim, dst->shape, b, sizeof b));
        else if (src->dtype != dst->dtype)
            st = torch_error(TORCH_ERR_KEY, "%s: dtype mismatch for \"%s\": checkpoint %s, model %s", fname,
                             own->items[i].name, torch_dtype_name(src->dtype), torch_dtype_name(dst->dtype));
        else if (is_num_batches_tracked(own->items[i].name, dst) && tensor_item(src) < 0)
            st = torch_error(TORCH_ERR_FORMAT, "%s: \"%s\" must be >= 0 (a count of batches), got %lld", fname,
                             own->items[i].name, (long long)*tensor_data_i64(src));
    }
    if (st == TORCH_OK && strict) {
        int64_t missing = 0, first = -1;
        for (int64_t i = 0; i < own->count; i++)
            if (!nn_tensor_dict_get(d, own->items[i].name) &&
                !is_num_batches_tracked(own->items[i].name, own->items[i].value)) {
                if (first < 0) first = i;
                missing++;
            }
        if (missing == 1)
            st = torch_error(TORCH_ERR_KEY, "%s: missing key \"%s\"", fname, own->items[first].name);
        else if (missing > 1)
            st = torch_error(TORCH_ERR_KEY, "%s: missing key \"%s\" (and %lld more missing keys)", fname,
                             own->items[first].name, (long long)(missing - 1));
    }
    if (st == TORCH_OK && strict) {
        int64_t unexpected = 0, first = -1;
        for (int64_t i = 0; i < d->count; i++)
            if (!nn_tensor_dict_get(own, d->items[i].name)) {
                if (first < 0) first = i;
                unexpected++;
            }
        if (unexpected == 1)
            st = torch_error(TORCH_ERR_KEY, "%s: unexpected key \"%s\"", fname, d->items[first].name);
        else if (unexpected > 1)
            st = torch_error(TORCH_ERR_KEY, "%s: unexpected key \"%s\" (and %lld more unexpected keys)", fname,
                             d->items[first].name, (long long)(unexpected - 1));
    }

    /* 2. Allocate: a contiguous source per key, so that the copies below cannot fail. */
    tensor **sources = NULL;
    if (st == TORCH_OK) {
        sources = calloc((size_t)own->count + 1, sizeof *sources);
        if (!sources) st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    }
    for (int64_t i = 0; i < own->count && st == TORCH_OK; i++) {
        const tensor *src = nn_tensor_dict_get(d, own->items[i].name);
        if (src) {
            sources[i] = tensor_contiguous(src);
        } else if (is_num_batches_tracked(own->items[i].name, own->items[i].value)) {
            sources[i] = torch_scalar_int64(0);
        } else {
            continue; /* missing, non-strict: left as it is */
        }
        if (!sources[i]) st = torch_last_status();
    }

    /* 3. Commit: contiguous-to-contiguous copies (memmove; the source may be the target itself),
     * with grad mode off, since parameters require grad (PyTorch loads under no_grad too). */
    bool grad_mode = torch_set_grad_enabled(false);
    for (int64_t i = 0; i < own->count && st == TORCH_OK; i++)
        if (sources[i]) st = tensor_copy_(own->items[i].value, sources[i]);
    torch_set_grad_enabled(grad_mode);

    if (sources)
        for (int64_t i = 0; i < own->count; i++) tensor_free(sources[i]);
    free(sources);
    nn_tensor_dict_free(own);
    return st;
}
