/* autograd.h — reverse-mode automatic differentiation over a dynamic graph.
 *
 * How it works: a differentiable op (torch_add, nnf_batch_norm, ...) whose inputs need a gradient
 * records one ag_node in its output's grad_fn. The node holds an edge per input (to the input's
 * own node, or to the input itself when it is a leaf) and whatever its backward needs.
 * tensor_backward() walks the graph from a root in reverse topological order; each node's
 * backward returns the gradients of its inputs, which are summed into the next nodes, and at the
 * leaves accumulated (+=) into leaf->grad, as in PyTorch.
 *
 * Ownership rules for forward outputs and graph nodes (the one rule every example follows):
 *   - Every op output is a new reference owned by the caller; free it with tensor_free() when
 *     you no longer use it, exactly as for any tensor. Freeing intermediates before backward
 *     is fine: the graph keeps, by reference, exactly what backward needs.
 *   - A node is owned by the tensors whose grad_fn it is and by the nodes downstream of it; it
 *     goes away with the last of them. Nothing else needs freeing.
 *   - backward frees each node's saved tensors as it passes (retain_graph = false), so memory
 *     returns as soon as the outputs are freed; a second backward through a node whose saved
 *     state is gone fails with TORCH_ERR_INVALID_STATE (PyTorch's message). Nodes that saved
 *     nothing (additions, sums, views without a context) can be run through again, as in PyTorch.
 *   - leaf->grad is owned by the leaf: read it through tensor_grad() (borrowed).
 *
 * Grad mode is per thread (torch_set_grad_enabled). Backward functions run with their inputs
 * as constants: no higher-order gradients.
 */
#ifndef CTORCH_AUTOGRAD_H
#define CTORCH_AUTOGRAD_H

#include "../tensor/ops.h"
#include "../tensor/tensor.h"
#include "op_table.h"

/* ---- user API ------------------------------------------------------------------------------- */

/* x$requires_grad_(flag). Only leaves (no grad_fn) and float32 tensors can be changed:
 * TORCH_ERR_INVALID_ARGUMENT otherwise, with PyTorch's message. */
torch_status tensor_set_requires_grad(tensor *t, bool requires_grad);
/* Borrowed gradient accumulated into a leaf, or NULL. */
tensor      *tensor_grad(const tensor *t);
/* zero_grad, the one meaning it has in ctorch (PyTorch 2.x's): tensor_zero_grad drops the
 * accumulated gradient (t->grad = NULL, set_to_none=True), and so do optim_zero_grad and
 * nn_module_zero_grad for all their parameters. The next backward then writes a fresh gradient
 * instead of adding to zeros, and optimizers skip a parameter that got no gradient: its weight
 * decay and momentum are not applied that step, exactly as in PyTorch. The _in_place forms keep
 * the gradient tensor and zero it (set_to_none=False, PyTorch 1.x's default): for code that holds
 * a gradient across steps, or that wants a parameter without a gradient to be stepped with 0. */
void         tensor_zero_grad(tensor *t);
void         tensor_zero_grad_in_place(tensor *t);
/* true for tensors not produced by a recorded op. */
bool         tensor_is_leaf(const tensor *t);

/* Accumulates d(root)/d(leaf) into every leaf that requires grad.
 * grad: dL/droot, same shape as root; NULL is allowed only for a one-element root (then 1).
 * retain_graph: keep saved tensors so that backward can run through the graph again. */
torch_status tensor_backward(tensor *root, const tensor *grad, bool retain_graph);

/* Grad mode: torch_set_grad_enabled() / torch_is_grad_enabled(), declared in tensor.h. While it
 * is off, ops record no graph and the raw in-place functions may write tensors that require
 * grad (how optimizers, initialisers and load_state_dict write parameters). */

/* ---- for op implementers --------------------------------------------------------------------- */

#define AG_MAX_INPUTS 4
#define AG_MAX_SAVED  4

typedef struct ag_node ag_node;

/* One per differentiable op, defined next to the op's forward and backward:
 *     static const ag_function conv2d_function = {.op = AG_OP_CONV2D, .backward = conv2d_backward};
 * A built-in op says which entry of the op table (op_table.h) it is, which gives its name; an op
 * defined outside the library leaves .op at AG_OP_CUSTOM and sets .name:
 *     static const ag_function square_fn = {.name = "SquareBackward0", .backward = square_backward}; */
typedef struct ag_function {
    const char *name; /* AG_OP_CUSTOM only: PyTorch-style node name, e.g. "SquareBackward0" */
    /* Sets grad_inputs[i] (a new reference, or NULL for zero) for each i where
     * ag_node_needs_grad(node, i); the driver sums a gradient over broadcast dims when its shape
     * is larger than input i's, then accumulates. grad_output has the output's shape. */
    torch_status (*backward)(ag_node *node, const tensor *grad_output, tensor **grad_inputs);
    /* (optional) frees node->ctx; NULL means ctx is not used or is plain free()able memory. */
    void (*free_ctx)(void *ctx);
    ag_op op; /* the op table's entry; AG_OP_CUSTOM (0) for an op defined outside the library */
} ag_function;

/* The node name of fn: the op table's for a built-in op, fn->name for a custom one ("?" if unset). */
const char *ag_function_name(const ag_function *fn);

/* One input of a node: where its gradient goes. */
typedef struct ag_edge {
    ag_node *node; /* owned reference: the input's grad_fn, or NULL */
    tensor  *leaf; /* owned reference: the input itself when it is a leaf requiring grad, else NULL */
    int      ndim; /* the input's shape, so that a broadcast gradient can be summed back */
    int64_t  shape[TORCH_MAX_DIMS];
    /* Who the input was, for graph pictures (autograd/dot.h), which must name a constant input
     * without keeping it alive: its tensor->id and tensor_storage_id(); both 0 for a NULL input. */
    uint64_t tensor_id;
    uint64_t storage_id;
} ag_edge;

struct ag_node {
    const ag_function *fn;
    int      refcount;
    int      n_inputs;
    ag_edge  inputs[AG_MAX_INPUTS];
    tensor  *saved[AG_MAX_SAVED]; /* owned, detached aliases: see ag_node_save */
    uint64_t saved_version[AG_MAX_SAVED]; /* tensor_version() of each when saved */
    bool     released;            /* saved state it needs was freed by a backward without retain_graph */
    /* Small op arguments, so most ops need no ctx allocation. */
    double   scalars[4];
    int64_t  ints[TORCH_MAX_DIMS + 2];
    void    *ctx;                 /* op-specific, freed by fn->free_ctx (or free) */
    size_t   ctx_bytes;           /* what ctx holds for backward, for graph pictures (0: not said) */
    int      out_ndim;            /* the output's shape */
    int64_t  out_shape[TORCH_MAX_DIMS];
    /* backward bookkeeping */
    tensor  *pending_grad;
    int      dependencies;
    bool     visited;
};

/* true when grad mode is on and one of the inputs requires grad: the op must record. */
bool ag_should_record(int n_inputs, tensor *const *inputs);

/* Makes a node for fn with an edge per input and attaches it to output (output->grad_fn,
 * output->requires_grad). Returns the node (borrowed: the output owns it), or NULL on failure
 * (error set; output unchanged, still owned by the caller). */
ag_node *ag_record(const ag_function *fn, tensor *output, int n_inputs, tensor *const *inputs);

/* Saves t for backward in slot as a detached alias sharing its storage (so saving an op's own
 * output makes no reference cycle), with its version: backward refuses to run the node if t was
 * written in place since (PyTorch's saved-variable check). Save after the op has finished
 * writing t. Returns TORCH_OK or an out-of-memory status. */
torch_status ag_node_save(ag_node *node, int slot, const tensor *t);

/* Whether backward must compute the gradient of input i. */
bool ag_node_needs_grad(const ag_node *node, int i);

#endif /* CTORCH_AUTOGRAD_H */
