/* loss.h — losses and log-softmax: nnf_cross_entropy, nnf_mse_loss, nnf_log_softmax
 * (torch.nn.functional's, R torch's nnf_*), each with its backward.
 *
 * Ownership (as in tensor.h): every function returns a new tensor reference owned by the caller,
 * or NULL with torch_last_error() set; inputs are borrowed. Losses are 0-dim float32 tensors
 * (reduction = "mean"); read them with tensor_item(), call tensor_backward(loss, NULL, false).
 *
 * Sums run in double, so the result does not depend on the thread count or on float rounding
 * order.
 */
#ifndef CTORCH_NN_LOSS_H
#define CTORCH_NN_LOSS_H

#include "../autograd/autograd.h"

/* log(softmax(input)) along dim (negative counts from the end), computed stably as
 * x - max - log(sum(exp(x - max))). */
tensor *nnf_log_softmax(tensor *input, int dim);

/* Cross-entropy of logits input (N, C) — or (C) for one sample — against class indices target
 * (N) — or a 0-dim target — of dtype int64 in [0, C): mean over samples of
 *   logsumexp(input[n, :]) - input[n, target[n]]
 * (log_softmax and NLL fused, stable for large logits). No class weights, ignore_index or label
 * smoothing. An empty batch gives NaN, as in PyTorch. Gradient with respect to input only. */
tensor *nnf_cross_entropy(tensor *input, tensor *target);

/* Mean squared error mean((input - target)^2); shapes must be equal (no broadcasting).
 * Gradients flow to both input and target. */
tensor *nnf_mse_loss(tensor *input, tensor *target);

#endif /* CTORCH_NN_LOSS_H */
