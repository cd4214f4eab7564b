/* batch_norm_internal.h — private to src/nn: what the BatchNorm module (batch_norm.c), the fused
 * functionals (functional_batch_norm.c, which defines everything here) and the composite reference
 * (functional_batch_norm_composite.c) share: the argument checks, so that all refuse the same
 * calls with the same messages, and the one entry point of the fused kernels. Not API: no public
 * header includes it.
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
 * as that many nnf_batch_norm calls would (the same y, dx and running statistics, bit for bit;
 * dweight and dbias summed over the sub-batches in double before rounding, where separate calls
 * round each to float before autograd adds them), one NativeBatchNormBackward0 node either way.
 * Checks: bn_check_args, and for ghost batches ghost_batch_size <= N and more than one value per
 * channel in every sub-batch. */
tensor *bn_forward(const char *fname, bool relu, tensor *input, tensor *running_mean, tensor *running_var,
                   tensor *weight, tensor *bias, bool training, bn_update update, double eps, int64_t ghost_batch_size);

/* running_mean = (1 - momentum) running_mean + momentum mean, running_var likewise with the
 * unbiased variance m2 / (M - 1), M values per channel (M > 1), in place; bumps their versions. */
void bn_update_running_stats(tensor *running_mean, tensor *running_var, const double *mean, const double *m2,
                             int64_t C, int64_t M, double momentum);

/* One channel c of an (N, C, S) tensor at a time, with the fused kernels' loops and precision
 * (functional_batch_norm.c), for SyncBatchNorm, which exchanges numbers between its passes:
 *   bn_channel_moments    mean and m2 = sum((x - mean)^2), shifted by the channel's first value;
 *                         0 and 0 for an empty channel
 *   bn_channel_grad_sums  sum(dy) and sum(dy (x - mean))
 *   bn_channel_normalise  y = a (x - mean) + beta
 *   bn_channel_dx         dx = a dy + b x + d, in double */
void bn_channel_moments(const float *x, int64_t N, int64_t C, int64_t S, int64_t c, double *mean, double *m2);
void bn_channel_grad_sums(const float *x, const float *dy, int64_t N, int64_t C, int64_t S, int64_t c, double mean,
                          double *sum_dy, double *sum_dy_xmu);
void bn_channel_normalise(float *y, const float *x, int64_t N, int64_t C, int64_t S, int64_t c, double mean, double a,
                          double beta);
void bn_channel_dx(float *dx, const float *dy, const float *x, int64_t N, int64_t C, int64_t S, int64_t c, double a,
                   double b, double d);

/* SyncBatchNorm's forward behind nnf_sync_batch_norm and the module (functional_sync_batch_norm.c):
 * bn_check_args' checks except the count of values per channel, which is checked over all
 * processes; the update as in bn_forward. */
tensor *bn_sync_forward(const char *fname, tensor *input, tensor *running_mean, tensor *running_var, tensor *weight,
                        tensor *bias, bn_update update, double eps, const nn_process_group *pg);

/* bn_check_args with `local_count` false: without the check of more than one value per channel
 * (SyncBatchNorm counts over all processes). */
torch_status bn_check_args_counted(const char *fname, const tensor *input, const tensor *running_mean,
                                   const tensor *running_var, const tensor *weight, const tensor *bias, bool training,
                                   double momentum, double eps, bool local_count);

#endif /* CTORCH_NN_BATCH_NORM_INTERNAL_H */
