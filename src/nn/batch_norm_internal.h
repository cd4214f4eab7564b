/* batch_norm_checks.h — private to src/nn: the argument checks that the fused BatchNorm
 * (functional_batch_norm.c, which defines them) and the composite reference
 * (functional_batch_norm_composite.c) share, so that both refuse the same calls with the same
 * messages. Not API: no public header includes it.
 *
 * Ownership: every tensor argument is borrowed and may be NULL where the functional allows it;
 * a check allocates nothing, keeps no pointer, and changes no tensor. It returns TORCH_OK or the
 * status it set with torch_error().
 */
#ifndef CTORCH_NN_BATCH_NORM_INTERNAL_H
#define CTORCH_NN_BATCH_NORM_INTERNAL_H

#include "batch_norm.h"

/* ATen's and F.batch_norm's checks of nnf_batch_norm's arguments, in their words, messages
 * prefixed with fname: a float32 input of at least 2 dimensions; running_mean, running_var,
 * weight, bias each NULL or a float32 vector of C = input->shape[1] elements; both running
 * statistics or neither, and both in evaluation mode; more than one value per channel when
 * training; running statistics writable in place when training updates them; momentum in [0, 1];
 * eps >= 0 and finite. */
torch_status bn_check_args(const char *fname, const tensor *input, const tensor *running_mean,
                           const tensor *running_var, const tensor *weight, const tensor *bias, bool training,
                           double momentum, double eps);

/* How training updates the running statistics: with factor `momentum` for every (sub-)batch, or,
 * with `cumulative`, with 1 / (count + g + 1) for sub-batch g = 0, 1, ... (the module's
 * num_batches_tracked before the call is `count`): the cumulative average over all batches. */
typedef struct bn_update {
    double  momentum;
    bool    cumulative;
    int64_t count;
} bn_update;

/* The fused batch norm behind nnf_batch_norm, nnf_batch_norm_relu and nnf_ghost_batch_norm (fname
 * names the caller in messages): with `relu`, followed by ReLU; in training with ghost_batch_size
 * > 0, over the sub-batches input.tensor_split(ceil(N / ghost_batch_size)) one after the other,
 * exactly as that many nnf_batch_norm calls (one NativeBatchNormBackward0 node either way).
 * Checks: bn_check_args, and for ghost batches ghost_batch_size <= N and more than one value per
 * channel in every sub-batch. */
tensor *bn_forward(const char *fname, bool relu, tensor *input, tensor *running_mean, tensor *running_var,
                   tensor *weight, tensor *bias, bool training, bn_update update, double eps, int64_t ghost_batch_size);

#endif /* CTORCH_NN_BATCH_NORM_INTERNAL_H */
