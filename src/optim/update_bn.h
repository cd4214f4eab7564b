/* update_bn.h — precise BatchNorm statistics: recompute every BatchNorm's running statistics from
 * training batches after training (torch.optim.swa_utils.update_bn, fvcore's update_bn_stats).
 *
 * Why: during training, running_mean and running_var are exponential averages of statistics of a
 * network that kept changing, weighted towards recent batches; the weights they are used with
 * in eval mode are the final ones. Running N batches through the final network and averaging
 * their statistics with equal weights gives the statistics that network actually produces.
 *
 * Ownership: model is borrowed and changed in place (the running statistics); each input
 * next_batch returns is a new reference that optim_update_bn frees. Nothing is kept.
 */
#ifndef CTORCH_OPTIM_UPDATE_BN_H
#define CTORCH_OPTIM_UPDATE_BN_H

#include "../nn/module.h"

/* Input batch i (0 <= i < n_batches) for the model's forward: a new reference, or NULL with the
 * error set to stop (optim_update_bn then fails and restores everything). */
typedef tensor *(*optim_batch_fn)(void *user, int64_t i);

/* torch.optim.swa_utils.update_bn(loader, model) on n_batches inputs from next_batch:
 *   1. every BatchNorm of model with running statistics that is not frozen (nn_batch_norm_freeze):
 *      running_mean <- 0, running_var <- 1, num_batches_tracked <- 0, and the cumulative
 *      average on (momentum None);
 *   2. the whole model in training mode, n_batches forwards without autograd;
 *   3. each BatchNorm's momentum setting and each module's training flag as they were.
 * So running_mean = the average over the batches of their means, running_var = the average of
 * their unbiased variances (each batch weighs the same, whatever its size: swa_utils' choice),
 * num_batches_tracked = n_batches; a ghost BatchNorm counts each sub-batch as a batch. Parameters
 * are not touched; other modules run in training mode as in swa_utils (dropout drops).
 * Errors, changing nothing in the model (buffers, options and flags restored; only version
 * counters and the streams of generators the forwards drew from, Dropout's, have moved): model
 * or next_batch NULL, n_batches < 1, a forward's error or next_batch's, reported as
 * "optim_update_bn: batch 3: ..." (a NULL from next_batch without an error set is one too).
 * A model without BatchNorm is left as it is (TORCH_OK). */
torch_status optim_update_bn(nn_module *model, int64_t n_batches, optim_batch_fn next_batch, void *user);

#endif /* CTORCH_OPTIM_UPDATE_BN_H */
