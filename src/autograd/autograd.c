/* autograd.c — graph recording, node lifetime and the backward driver (see autograd.h). */
#include "autograd.h"

#include <stb/stb_ds.h>
#include <stdlib.h>

/* ---- user API ---------------------------------------------------------------------------------- */

torch_status tensor_set_requires_grad(tensor *t, bool requires_grad) {
    if (!t) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_set_requires_grad: input is NULL");
    if (t->grad_fn)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "tensor_set_requires_grad: you can only change requires_grad flags of leaf variables "
                           "(use tensor_detach() to get a leaf)");
    if (requires_grad && t->dtype != TORCH_FLOAT32)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "tensor_set_requires_grad: only Tensors of floating point dtype can require gradients "
                           "(got %s)", torch_dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    return TORCH_OK;
}

tensor *tensor_grad(const tensor *t) { return t ? t->grad : NULL; }

void tensor_zero_grad(tensor *t) {
    if (!t) return;
    tensor_free(t->grad);
    t->grad = NULL;
}

void tensor_zero_grad_in_place(tensor *t) {
    if (t && t->grad) tensor_zero_(t->grad);
}

bool tensor_is_leaf(const tensor *t) { return t && !t->grad_fn; }

/* ---- nodes ------------------------------------------------------------------------------------- */

static void node_release_saved(ag_node *n) {
    for (int i = 0; i < AG_MAX_SAVED; i++) {
        tensor_free(n->saved[i]);
        n->saved[i] = NULL;
    }
    if (n->ctx) {
        if (n->fn->free_ctx) n->fn->free_ctx(n->ctx);
        else free(n->ctx);
        n->ctx = NULL;
        n->ctx_bytes = 0;
    }
}

/* Drops one reference; frees nodes iteratively (a long chain would overflow the stack if the
 * release recursed through the edges). */
static void node_release(ag_node *node) {
    ag_node **stack = NULL;
    arrput(stack, node);
    while (arrlen(stack) > 0) {
        ag_node *n = arrpop(stack);
        TORCH_ASSERT(n->refcount > 0);
        if (--n->refcount > 0) continue;
        for (int i = 0; i < n->n_inputs; i++) {
            if (n->inputs[i].node) arrput(stack, n->inputs[i].node);
            tensor_free(n->inputs[i].leaf);
        }
        node_release_saved(n);
        tensor_free(n->pending_grad);
        free(n);
    }
    arrfree(stack);
}

const char *ag_function_name(const ag_function *fn) {
    if (fn->op != AG_OP_CUSTOM) return ag_op_name(fn->op);
    return fn->name ? fn->name : "?";
}

static const char *node_name(const ag_node *node) { return ag_function_name(node->fn); }

static const tensor_grad_fn_ops grad_fn_ops = {.release = node_release, .name = node_name};

bool ag_should_record(int n_inputs, tensor *const *inputs) {
    if (!torch_is_grad_enabled()) return false;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

ag_node *ag_record(const ag_function *fn, tensor *output, int n_inputs, tensor *const *inputs) {
    TORCH_ASSERT(fn && output && !output->grad_fn && n_inputs >= 0 && n_inputs <= AG_MAX_INPUTS);
    ag_node *n = calloc(1, sizeof *n);
    if (!n) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory recording the graph", ag_function_name(fn));
        return NULL;
    }
    n->fn = fn;
    n->refcount = 1; /* held by output */
    n->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) {
        tensor *in = inputs[i];
        ag_edge *e = &n->inputs[i];
        if (!in) continue;
        e->tensor_id = in->id;
        e->storage_id = tensor_storage_id(in);
        e->ndim = in->ndim;
        for (int d = 0; d < in->ndim; d++) e->shape[d] = in->shape[d];
        if (in->grad_fn) {
            e->node = in->grad_fn;
            e->node->refcount++;
        } else if (in->requires_grad) {
            e->leaf = tensor_retain(in);
        }
    }
    n->out_ndim = output->ndim;
    for (int d = 0; d < output->ndim; d++) n->out_shape[d] = output->shape[d];
    output->grad_fn = n;
    output->grad_fn_ops = &grad_fn_ops;
    output->requires_grad = true;
    return n;
}

torch_status ag_node_save(ag_node *node, int slot, const tensor *t) {
    TORCH_ASSERT(node && slot >= 0 && slot < AG_MAX_SAVED && !node->saved[slot]);
    if (!t) return TORCH_OK;
    node->saved[slot] = tensor_detach(t);
    node->saved_version[slot] = tensor_version(t);
    return node->saved[slot] ? TORCH_OK : torch_last_status();
}

bool ag_node_needs_grad(const ag_node *node, int i) {
    return i >= 0 && i < node->n_inputs && (node->inputs[i].node || node->inputs[i].leaf);
}

/* ---- backward ---------------------------------------------------------------------------------- */

/* A saved tensor written in place since the forward would give a wrong gradient: refuse, in
 * PyTorch's words. */
static torch_status check_saved_versions(const ag_node *n) {
    for (int i = 0; i < AG_MAX_SAVED; i++) {
        const tensor *t = n->saved[i];
        if (!t || tensor_version(t) == n->saved_version[i]) continue;
        char buf[96];
        return torch_error(TORCH_ERR_INVALID_STATE,
                           "tensor_backward: one of the variables needed for gradient computation has been modified "
                           "by an inplace operation: [torch.%sTensor %s], saved by %s, is at version %llu; expected "
                           "version %llu instead",
                           t->dtype == TORCH_INT64 ? "Long" : "Float", torch_shape_str(t->ndim, t->shape, buf, sizeof buf),
                           ag_function_name(n->fn), (unsigned long long)tensor_version(t),
                           (unsigned long long)n->saved_version[i]);
    }
    return TORCH_OK;
}

/* Sums gradient g (owned, consumed) into *slot, which may be empty. */
static torch_status accumulate(tensor **slot, tensor *g) {
    if (!*slot) {
        *slot = g;
        return TORCH_OK;
    }
    tensor *sum = tensor_binary(TORCH_BINARY_ADD, *slot, g);
    tensor_free(g);
    if (!sum) return torch_last_status();
    tensor_free(*slot);
    *slot = sum;
    return TORCH_OK;
}

/* Sums g (owned, consumed) into a leaf's .grad, which the leaf owns exclusively. */
static torch_status accumulate_leaf(tensor *leaf, tensor *g) {
    torch_status st = TORCH_OK;
    if (!leaf->grad && tensor_is_exclusive(g) && tensor_is_contiguous(g) && !g->grad_fn) {
        leaf->grad = g; /* a fresh gradient nobody else sees: take it over instead of copying */
        return TORCH_OK;
    }
    if (!leaf->grad) {
        leaf->grad = tensor_clone(g); /* g may alias the caller's gradient or another view */
        if (!leaf->grad) st = torch_last_status();
    } else {
        st = tensor_add_(leaf->grad, g, 1.0);
    }
    tensor_free(g);
    return st;
}

/* Gives input i's gradient the input's own shape: sums over dims the forward broadcast. */
static tensor *fit_to_input(const ag_edge *e, tensor *g) {
    if (g->ndim == e->ndim) {
        bool same = true;
        for (int d = 0; d < e->ndim; d++) same = same && g->shape[d] == e->shape[d];
        if (same) return g;
    }
    tensor *r = tensor_sum_to(g, e->ndim, e->shape);
    tensor_free(g);
    return r;
}

torch_status tensor_backward(tensor *root, const tensor *grad, bool retain_graph) {
    char a[96], b[96];
    if (!root) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_backward: input is NULL");
    if (!root->requires_grad)
        return torch_error(TORCH_ERR_INVALID_STATE,
                           "tensor_backward: element 0 of tensors does not require grad and does not have a grad_fn");
    if (!grad && root->numel != 1)
        return torch_error(TORCH_ERR_INVALID_STATE,
                           "tensor_backward: grad can be implicitly created only for scalar outputs (got shape %s)",
                           torch_shape_str(root->ndim, root->shape, a, sizeof a));
    if (grad && grad->dtype != TORCH_FLOAT32)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "tensor_backward: expected grad to be float32 (got %s)",
                           torch_dtype_name(grad->dtype));
    if (grad && !tensor_same_shape(grad, root))
        return torch_error(TORCH_ERR_SHAPE,
                           "tensor_backward: Mismatch in shape: grad_output[0] has a shape of %s and output[0] has a "
                           "shape of %s",
                           torch_shape_str(grad->ndim, grad->shape, a, sizeof a),
                           torch_shape_str(root->ndim, root->shape, b, sizeof b));

    /* Backward functions only read their grad_output and sums make new tensors, so the caller's
     * gradient can seed the walk without a copy (a leaf clones it into its own .grad). */
    tensor *g0 = grad ? tensor_retain((tensor *)grad) : torch_ones(root->ndim, root->shape);
    if (!g0) return torch_last_status();
    if (!root->grad_fn) return accumulate_leaf(root, g0);

    /* 1. Find every node reachable from the root and count, per node, the edges into it. */
    ag_node **stack = NULL, **order = NULL;
    torch_status st = TORCH_OK;
    arrput(stack, root->grad_fn);
    root->grad_fn->visited = true;
    root->grad_fn->dependencies = 0;
    while (arrlen(stack) > 0) {
        ag_node *n = arrpop(stack);
        arrput(order, n);
        if (n->released && st == TORCH_OK)
            st = torch_error(TORCH_ERR_INVALID_STATE,
                             "tensor_backward: Trying to backward through the graph a second time (or directly access "
                             "saved tensors after they have already been freed); pass retain_graph = true to the "
                             "first backward if you need to backward through the graph a second time");
        if (st == TORCH_OK) st = check_saved_versions(n); /* before any node runs: a refusal changes nothing */
        for (int i = 0; i < n->n_inputs; i++) {
            ag_node *next = n->inputs[i].node;
            if (!next) continue;
            if (!next->visited) {
                next->visited = true;
                next->dependencies = 0;
                arrput(stack, next);
            }
            next->dependencies++;
        }
    }
    for (ptrdiff_t i = 0; i < arrlen(order); i++) order[i]->visited = false;
    if (st != TORCH_OK) {
        tensor_free(g0);
        arrfree(stack);
        arrfree(order);
        return st;
    }

    /* 2. Kahn's order: a node runs once every node that feeds it a gradient has run. */
    root->grad_fn->pending_grad = g0;
    arrput(stack, root->grad_fn);
    while (arrlen(stack) > 0 && st == TORCH_OK) {
        ag_node *n = arrpop(stack);
        tensor *gi[AG_MAX_INPUTS] = {0};
        tensor *gout = n->pending_grad;
        n->pending_grad = NULL;
        if (gout) st = n->fn->backward(n, gout, gi);
        tensor_free(gout);
        for (int i = 0; i < n->n_inputs; i++) {
            ag_edge *e = &n->inputs[i];
            tensor *g = gi[i];
            if (g && st == TORCH_OK && (e->node || e->leaf)) {
                g = fit_to_input(e, g);
                if (!g) st = torch_last_status();
                else if (e->node) st = accumulate(&e->node->pending_grad, g);
                else st = accumulate_leaf(e->leaf, g);
            } else {
                tensor_free(g);
            }
            if (e->node && --e->node->dependencies == 0) arrput(stack, e->node);
        }
        if (!retain_graph) {
            /* As in PyTorch, only a node that lost something it needs refuses a second pass:
             * nodes that saved nothing (additions, sums, ...) can be run through again. */
            bool held = n->ctx != NULL;
            for (int i = 0; i < AG_MAX_SAVED; i++) held = held || n->saved[i] != NULL;
            n->released = n->released || held;
            node_release_saved(n);
        }
    }
    /* On failure, drop gradients still waiting in nodes that did not run. */
    for (ptrdiff_t i = 0; i < arrlen(order); i++) {
        tensor_free(order[i]->pending_grad);
        order[i]->pending_grad = NULL;
    }
    arrfree(stack);
    arrfree(order);
    return st;
}
