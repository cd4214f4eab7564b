/* fuse.h — folding BatchNorm into the convolution before it, for inference (PyTorch's
 * torch.nn.utils.fuse_conv_bn_eval, and torch.fx's fuse(model) for a whole model, as a copy or in
 * place).
 *
 * In eval mode a BatchNorm2d is a per-channel affine map with constants, s = gamma / sqrt(running_var
 * + eps) and t = beta - running_mean * s, so after a convolution y = W * x + b it folds into it:
 *     bn(conv(x)) = s (W * x + b) + t = (s W) * x + (s (b - running_mean) + beta)
 *     W'[o] = s[o] W[o],   b'[o] = s[o] (b[o] - running_mean[o]) + beta[o]   (b = 0 without bias)
 * One layer instead of two: no pass over the activations for the BatchNorm, no tensor between
 * them. s and b' are computed in double and rounded once (PyTorch rounds each float32 step).
 *
 * Ownership:
 *   - nn_utils_fuse_conv_bn_eval borrows conv and bn and returns a new, owned Conv2d (NULL with the
 *     error set); free it with nn_module_free().
 *   - nn_module_fuse_eval borrows model and returns a new, owned model (a deep copy, folded); free
 *     it with nn_module_free().
 *   - nn_module_fuse_eval_ changes model in place: the folded pairs' modules are freed, and
 *     pointers to them (from nn_sequential_at, for instance) dangle afterwards.
 */
#ifndef CTORCH_NN_FUSE_H
#define CTORCH_NN_FUSE_H

#include "module.h"

/* A new Conv2d computing bn(conv(x)) in eval mode: conv's options with bias = true, weight W' and
 * bias b' above (both requiring grad as conv's weight does), in eval mode. Both must be in eval mode ("Fusion only for eval!", as PyTorch
 * says), bn a BatchNorm2d with running statistics and conv->out_channels features. */
nn_module *nn_utils_fuse_conv_bn_eval(const nn_module *conv, const nn_module *bn);

/* A folded copy of model, which stays as it was (torch.fx.experimental.optimization.fuse(model)):
 * the checks of nn_module_fuse_eval_ on model (messages prefixed "nn_module_fuse_eval"), then
 * nn_module_clone and the folding of the copy. NULL with the error set. */
nn_module *nn_module_fuse_eval(const nn_module *model, int64_t *folded_count);

/* Folds, in place, every BatchNorm of model into the module before it, in every Sequential of the
 * tree (the pairs a module's fold_next accepts: Conv2d followed by BatchNorm2d), so that model
 * computes what it computed in eval mode without BatchNorm layers. The BatchNorm children leave
 * their Sequentials and every other child keeps its name, as torch.fx's fuse keeps module names:
 * the reference CNN Conv-BN-ReLU-Pool-Conv-BN-... becomes Conv-ReLU-Pool-Conv-..., state_dict
 * keys "0.weight", "0.bias", "4.weight", "4.bias", "9.weight", "9.bias" (positions move: use
 * nn_module_get_child or the keys, not nn_sequential_at, to find a layer again). Refused,
 * changing nothing, when any module of model is in training mode, or when a BatchNorm does not
 * fold (not directly after a Conv2d, without running statistics, a channel count that differs),
 * the message naming the modules by their keys; torch.fx's fuse skips such a pair instead, and
 * also folds Linear + BatchNorm1d, which ctorch does not. *folded_count (may be NULL) gets the
 * number of BatchNorm layers folded (0 leaves model as it was). */
torch_status nn_module_fuse_eval_(nn_module *model, int64_t *folded_count);

#endif /* CTORCH_NN_FUSE_H */
