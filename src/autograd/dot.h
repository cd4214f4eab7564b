/* dot.h — a picture of the autograd graph behind a tensor, as Graphviz DOT (what torchviz's
 * make_dot draws for PyTorch).
 *
 * Ownership: torch_make_dot borrows the root and the labels, keeps nothing, and returns a new
 * NUL-terminated string the caller frees with free() (NULL with the error set on failure). It
 * only reads the graph: a picture may be taken before or after backward, as often as wanted.
 *
 * What is drawn (arrows follow the forward computation, from inputs to the output):
 *   - the root, green, with its shape;
 *   - one grey box per op node: its name (PyTorch's, "NativeBatchNormBackward0") and the shape of
 *     the tensor it made;
 *   - the leaves: each input that requires grad (blue; where backward accumulates .grad) and each
 *     constant input that does not (white, dashed: data, a buffer in eval mode), with its shape,
 *     "requires grad" or "no grad", and its name and role from the labels when one matches;
 *   - with show_saved, what each node holds for its backward (orange, dotted line): every saved
 *     tensor with its shape and bytes, named when it is a labelled tensor or a view of one, and the
 *     op's own state ("ctx", e.g. BatchNorm's per-channel mean and invstd) with its bytes. A node
 *     whose saved state a backward already freed says so. The graph's title sums the bytes.
 * Ids are numbered in the order a breadth-first walk from the root meets them, so the same graph
 * gives the same text on every run. Render it with  dot -Tpng graph.dot -o graph.png  (Debian's
 * graphviz package).
 *
 * Why buffers are rarely in the picture: in training mode BatchNorm writes running_mean and
 * running_var as a side effect of its forward; they are not inputs of any node. In eval mode
 * the composite BatchNorm (nnf_batch_norm_composite) reads running_mean as a constant input
 * (running_var only through invstd, a constant computed from it without grad), and the fused one
 * copies what it needs of both into its ctx.
 */
#ifndef CTORCH_AUTOGRAD_DOT_H
#define CTORCH_AUTOGRAD_DOT_H

#include "autograd.h"

/* What a labelled tensor is to the model. */
typedef enum torch_dot_role {
    TORCH_DOT_INPUT = 0, /* data fed to the model */
    TORCH_DOT_PARAMETER, /* learned: a module's weight, bias */
    TORCH_DOT_BUFFER,    /* state that is not learned: running_mean, running_var */
} torch_dot_role;

/* A name for a tensor of the graph. It matches the tensor itself and, by storage
 * (tensor_storage_id), every view of it: a reshaped weight or a saved alias carries the name too. */
typedef struct torch_dot_label {
    const tensor  *tensor; /* borrowed */
    const char    *name;   /* borrowed: "x", "1.weight", "1.running_mean" */
    torch_dot_role role;
} torch_dot_label;

typedef struct torch_make_dot_options {
    const torch_dot_label *labels; /* n_labels of them (NULL when 0); the first match wins */
    int         n_labels;
    bool        show_saved; /* torchviz's show_saved: draw what each node keeps for backward */
    const char *root_name;  /* the root's label; NULL for "output" */
} torch_make_dot_options;

/* The graph behind root as a Graphviz digraph (see above). A root without a graph (a leaf, or a
 * result computed without grad) gives a picture of the root alone. Refuses, with
 * TORCH_ERR_INVALID_ARGUMENT, a NULL root, a negative n_labels, labels NULL with n_labels > 0, or
 * a label without a tensor or a name. */
char *torch_make_dot(const tensor *root, torch_make_dot_options options);

#endif /* CTORCH_AUTOGRAD_DOT_H */
