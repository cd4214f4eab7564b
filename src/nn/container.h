/* container.h — Sequential: modules applied one after the other (torch.nn.Sequential, R torch's
 * nn_sequential). Children are named "0", "1", ... as PyTorch names them, so state_dict keys
 * match PyTorch's ("0.weight", "1.running_mean", ...).
 *
 * Ownership:
 *   - nn_sequential and nn_sequential_append take ownership of the modules they are given,
 *     also when they fail (the modules are then freed), so an error path never leaks.
 *   - nn_sequential_at returns a borrowed child, valid while the Sequential lives.
 *   - Freeing the Sequential (nn_module_free) frees every child.
 *   - Forward returns a new reference; intermediate outputs are freed as it goes (the graph keeps
 *     what backward needs, see autograd.h).
 *
 * Forward offers each child the one after it (nn_module_ops.absorb_next): a BatchNorm module
 * directly followed by a ReLU module runs as one fused layer (nn_batch_norm_forward_relu), with
 * the numbers of the two modules, bit for bit, and one NativeBatchNormReluBackward0 node.
 */
#ifndef CTORCH_NN_CONTAINER_H
#define CTORCH_NN_CONTAINER_H

#include "module.h"

/* Sequential(modules[0], ..., modules[n-1]); n may be 0. Every module must be non-NULL and
 * distinct; NULL on error (all given modules freed). */
nn_module *nn_sequential(int n, nn_module *const *modules);

/* Appends module as child "<length>" (PyTorch's append). Ownership moves to seq, also on failure
 * (module freed). TORCH_ERR_INVALID_ARGUMENT if seq is not a Sequential or module is NULL. */
torch_status nn_sequential_append(nn_module *seq, nn_module *module);

/* Number of children (0 for anything that is not a Sequential). */
int64_t nn_sequential_length(const nn_module *seq);

/* Child i (negative counts from the end), borrowed; NULL if out of range or not a Sequential. */
nn_module *nn_sequential_at(const nn_module *seq, int64_t i);

/* true when m is a Sequential. */
bool nn_is_sequential(const nn_module *m);

#endif /* CTORCH_NN_CONTAINER_H */
