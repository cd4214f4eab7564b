/* batch_norm_checks.h — private to src/nn: the argument checks that the fused BatchNorm
 * (functional_batch_norm.c, which defines them) and the composite reference
 * (functional_batch_norm_composite.c) share, so that both refuse the same calls with the same
 * messages. Not API: no public header includes it.
 *
 * Ownership: every tensor argument is borrowed and may be NULL where the functional allows it;
 * a check allocates nothing, keeps no pointer, and changes no tensor. It returns TORCH_OK or the
 * status it set with torch_error().
 */
#ifndef CTORCH_NN_BATCH_NORM_CHECKS_H
#define CTORCH_NN_BATCH_NORM_CHECKS_H

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

#endif /* CTORCH_NN_BATCH_NORM_CHECKS_H */
