/* batch_norm.h — BatchNorm1d/2d/3d (PyTorch's nn.BatchNorm*d, R torch's nn_batch_norm*d) and the
 * functional batch norm they call (F.batch_norm, nnf_batch_norm).
 *
 * Ownership:
 *   - nn_batch_norm1d/2d/3d() return an owned nn_module * (NULL on error, torch_last_error() says
 *     why); free it with nn_module_free().
 *   - nn_as_batch_norm(m) returns a borrowed view of the same module; its tensor fields are borrowed
 *     views of the registered parameters and buffers, valid until the module is freed.
 *   - nn_module_forward() on these modules and nnf_batch_norm*() return a new tensor reference owned
 *     by the caller (see autograd.h for the graph it carries).
 *
 * The seed's R example, line for line:
 *   m <- nn_batch_norm2d(100)                   nn_module *m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 100));
 *   m <- nn_batch_norm2d(100, affine = FALSE)   m = nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = 100, .affine = false));
 *   input <- torch_randn(20, 100, 35, 45)       tensor *input = torch_randn(NULL, TORCH_SHAPE(20, 100, 35, 45));
 *   output <- m(input)                          tensor *output = nn_module_forward(m, input);
 *
 * Semantics (PyTorch 1.13 _BatchNorm.forward + F.batch_norm), per channel c of an (N, C, *) input
 * with M = N * prod(*) values per channel:
 *   y = (x - mean) / sqrt(var + eps) * weight + bias       var biased (divides by M)
 *   batch statistics are used when training || !track_running_stats, else the running ones;
 *   training with tracking: num_batches_tracked += 1, then with f = momentum (or
 *   1/num_batches_tracked when cumulative_moving_average)
 *     running_mean = (1 - f) * running_mean + f * mean
 *     running_var  = (1 - f) * running_var  + f * var * M / (M - 1)     (unbiased)
 *   eval with tracking normalises with the running statistics and never changes them.
 *   The training flag decides, not the grad mode: a no-grad scope still updates the statistics.
 *
 * Variants (none in PyTorch itself; the state_dict keys stay those above, so a model saves and
 * loads as with plain BatchNorm):
 *   - ghost batches (Hoffer et al. 2017, options.ghost_batch_size = G > 0): where batch statistics
 *     are used, the N rows are split into ceil(N / G) sub-batches as torch.tensor_split splits
 *     them (sizes as equal as can be, the first N % ceil(N / G) one row longer: N = 70, G = 32
 *     gives 24, 23, 23), and each is normalised with its own statistics. The running statistics
 *     are updated once per sub-batch, in order, and num_batches_tracked grows by their number:
 *     exactly what calling plain BatchNorm on each sub-batch in turn would do (with the cumulative
 *     average, sub-batch g gets factor 1 / (num_batches_tracked + g + 1)). Training needs
 *     N >= G; eval with running statistics ignores G.
 *   - frozen (nn_batch_norm_freeze): detectron2's FrozenBatchNorm2d inside a training loop.
 *   - precise statistics: optim_update_bn (optim/update_bn.h).
 *   - folded into the convolution before it for inference: nn_module_fuse_eval_ (nn/fuse.h).
 */
#ifndef CTORCH_NN_BATCH_NORM_H
#define CTORCH_NN_BATCH_NORM_H

#include "module.h"

/* Options shared by BatchNorm1d/2d/3d, with PyTorch's names. */
typedef struct nn_batch_norm_options {
    int64_t num_features;              /* C of an (N, C, *) input. Required, > 0. No effect if changed after construction. */
    double  eps;                       /* Added to the variance inside the sqrt. Default 1e-5; must be > 0. */
    double  momentum;                  /* running = (1 - momentum) * running + momentum * batch. Default 0.1; in [0, 1]. */
    bool    cumulative_moving_average; /* PyTorch's momentum=None, R's momentum=NULL: factor 1/num_batches_tracked. Default false. */
    bool    affine;                    /* Learnable weight (ones) and bias (zeros). Default true. No effect if changed after construction. */
    bool    track_running_stats;       /* running_mean/running_var/num_batches_tracked buffers. Default true. No effect if changed after construction. */
    int64_t ghost_batch_size;          /* Ghost batch normalization over sub-batches of this many rows (see the top). Default 0: off; >= 0. */
} nn_batch_norm_options;

/* The defaults above for num_features channels (the warning-free way to build options). */
nn_batch_norm_options nn_batch_norm_options_default(int64_t num_features);

/* Named-argument sugar: NN_BATCH_NORM_OPTIONS(.num_features = 100, .affine = false). Later
 * designators override the defaults; ctorch's build exports -Wno-override-init (gcc) /
 * -Wno-initializer-overrides (clang) to its users for this. num_features must be given. */
#define NN_BATCH_NORM_OPTIONS(...)                                                                 \
    ((nn_batch_norm_options){.eps = 1e-5,                                                          \
                             .momentum = 0.1,                                                      \
                             .cumulative_moving_average = false,                                   \
                             .affine = true,                                                       \
                             .track_running_stats = true,                                          \
                             .ghost_batch_size = 0,                                                \
                             __VA_ARGS__})

/* BatchNorm1d: input (N, C) or (N, C, L). */
nn_module *nn_batch_norm1d(nn_batch_norm_options options);
/* BatchNorm2d: input (N, C, H, W). */
nn_module *nn_batch_norm2d(nn_batch_norm_options options);
/* BatchNorm3d: input (N, C, D, H, W). */
nn_module *nn_batch_norm3d(nn_batch_norm_options options);

/* ---- SyncBatchNorm: one batch spread over several processes ------------------------------------
 * With data parallelism each of K processes holds a slice of the batch; plain BatchNorm would
 * normalise each slice with its own statistics. A BatchNorm given a process group
 * (nn_batch_norm_set_process_group; distributed/distributed.h's dist_convert_sync_batch_norm
 * gives it an MPI one) normalises, when training, with the statistics of the global batch, as
 * PyTorch's nn.SyncBatchNorm does on GPUs:
 *   forward   every process gathers each one's per-channel (count, mean, m2), m2 = sum((x - mean)^2),
 *             and merges them in process order (Chan et al.'s parallel variance):
 *               n = n_a + n_b,  delta = mean_b - mean_a,
 *               mean = mean_a + delta n_b / n,  m2 = m2_a + m2_b + delta^2 n_a n_b / n
 *             which stays exact for large means, where sum(x^2) - n mean^2 would cancel; every
 *             process gets the same numbers, so the running statistics (global mean, unbiased global
 *             variance) stay identical on all of them. Slices may differ in size, even be empty.
 *   backward  dx needs sum(dy) and sum(dy (x - mean)) over the global batch: one sum over the
 *             processes of 2C numbers (derivation in functional_sync_batch_norm.c). dweight and
 *             dbias stay this process's own sums, as in PyTorch; averaging them with the other
 *             gradients is data parallelism's job (dist_ddp).
 * In eval mode, and for a frozen module, nothing is exchanged. nn knows nothing of MPI: the group
 * is two collective operations that every process calls in the same order with the same n. */
typedef struct nn_process_group {
    void *handle; /* passed to the two operations; borrowed */
    int   size;   /* number of processes, >= 1 */
    /* recv[r * n + i] = send[i] of process r, for each process r < size, on every process */
    torch_status (*all_gather)(void *handle, const double *send, double *recv, int64_t n);
    /* values[i] <- the sum over the processes of their values[i], the same on every process */
    torch_status (*all_reduce_sum)(void *handle, double *values, int64_t n);
} nn_process_group;

/* Gives every BatchNorm module of model (model itself included) the process group pg (borrowed:
 * it must outlive the modules and every graph their forward records), or takes it away (pg
 * NULL: plain BatchNorm again). Refused, with nothing changed: a NULL model, a group of size < 1
 * or without its operations, a BatchNorm with ghost batches (named by its key). *count (may be
 * NULL) gets how many BatchNorm modules were set. */
torch_status nn_batch_norm_set_process_group(nn_module *model, const nn_process_group *pg, int64_t *count);

/* SyncBatchNorm's training forward as a function: nnf_batch_norm(training = true) with statistics
 * over the input slices of all pg->size processes (see above); every process must call it with
 * the same C and arguments of the same kinds (running statistics given or not, weight given or
 * not). More than one value per channel over all slices; a slice may be empty (N = 0). Running
 * statistics, if given, are updated with factor momentum. Records one SyncBatchNormBackward
 * node, whose backward also calls pg: every process must run its backward too. */
tensor *nnf_sync_batch_norm(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                            double momentum, double eps, const nn_process_group *pg);

/* What a frozen BatchNorm keeps fixed (nn_batch_norm_freeze). */
typedef enum nn_batch_norm_freeze_mode {
    NN_BATCH_NORM_UNFROZEN = 0,   /* plain BatchNorm: the training flag decides (the default) */
    NN_BATCH_NORM_FREEZE_STATS,   /* normalise with the running statistics, never update them, even in
                                   * training mode; weight and bias still learn */
    NN_BATCH_NORM_FREEZE_ALL,     /* FREEZE_STATS, and weight and bias stop requiring grad: a constant
                                   * per-channel affine map (detectron2's FrozenBatchNorm2d) */
} nn_batch_norm_freeze_mode;

/* The typed view of a BatchNorm1d/2d/3d module. */
typedef struct nn_batch_norm_module {
    nn_module             base;    /* must be first */
    nn_batch_norm_options options; /* eps, momentum, cumulative_moving_average and ghost_batch_size may be changed between forwards */
    int                   dims;    /* spatial dims: 1, 2 or 3 (accepted input ranks 2-3, 4, 5) */
    nn_batch_norm_freeze_mode frozen; /* read at every forward; set it with nn_batch_norm_freeze, which checks and sets requires_grad */
    const nn_process_group *process_group; /* SyncBatchNorm's group (borrowed), NULL: this process's batch only;
                                             * set it with nn_batch_norm_set_process_group */
    /* Borrowed views of the registered tensors, NULL when absent (affine / track_running_stats off). */
    tensor *weight, *bias;                   /* parameters [C] */
    tensor *running_mean, *running_var;      /* buffers [C] */
    tensor *num_batches_tracked;             /* int64 scalar buffer */
} nn_batch_norm_module;

/* Checked downcast: the BatchNorm view of m, or NULL when m is another module type (or NULL). */
nn_batch_norm_module *nn_as_batch_norm(nn_module *m);

/* nn_module_forward(m, input) followed by ReLU, in one pass (nnf_batch_norm_relu): the same checks
 * and messages, the same running-statistics update, the numbers of the two modules in turn, bit for
 * bit. nn_sequential calls it for a BatchNorm module directly followed by a ReLU module. */
tensor *nn_batch_norm_forward_relu(nn_module *m, tensor *input);

/* Freezes (or, with NN_BATCH_NORM_UNFROZEN, unfreezes) every BatchNorm module of model, model
 * itself included, in place: detectron2's FrozenBatchNorm2d.convert_frozen_batchnorm without
 * changing the module type, so state_dict keys, repr type and the training flag stay. A frozen
 * module normalises with its running statistics whatever the training flag -- its forward and
 * backward are those of eval mode -- and no forward changes its buffers. FREEZE_ALL also sets
 * requires_grad = false on weight and bias (an optimizer then skips them: their grad stays NULL);
 * and drops their gradients (grad = NULL), so that no momentum or weight decay moves them either;
 * STATS and UNFROZEN set requires_grad back to true. Every BatchNorm must track running
 * statistics (UNFROZEN excepted); on error (a NULL model, a bad mode, a BatchNorm without running
 * statistics, named by its key) nothing changes. *count (may be NULL) gets how many BatchNorm
 * modules were set to mode. */
torch_status nn_batch_norm_freeze(nn_module *model, nn_batch_norm_freeze_mode mode, int64_t *count);

/* running_mean <- 0, running_var <- 1, num_batches_tracked <- 0 (no-op without tracking). */
torch_status nn_batch_norm_reset_running_stats(nn_module *m);
/* reset_running_stats, then weight <- 1, bias <- 0 (PyTorch's reset_parameters). */
torch_status nn_batch_norm_reset_parameters(nn_module *m);

/* Functional batch norm (F.batch_norm / nnf_batch_norm) over an (N, C, *) input, C = size(1).
 * running_mean/running_var: [C] or both NULL; weight/bias: [C] or NULL (then 1 and 0).
 * training: normalise with batch statistics and, when running stats are given, update them in
 * place with factor `momentum` (in [0, 1]); otherwise normalise with the running stats (which
 * must then be given). eps >= 0. Records one NativeBatchNormBackward0 node (analytic backward
 * for input, weight and bias). */
tensor *nnf_batch_norm(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                       bool training, double momentum, double eps);

/* relu(nnf_batch_norm(...)) in one pass forward and one backward node (NativeBatchNormReluBackward0),
 * as oneDNN fuses them: the ReLU costs no extra pass over memory and no intermediate tensor, and the
 * node keeps only the input (its backward recomputes where the ReLU clamped), so the output is freed
 * as soon as the caller and the next layer are done with it. The
 * numbers are those of nnf_relu applied to nnf_batch_norm's output, bit for bit (tested), running
 * statistics included. Same arguments and checks as nnf_batch_norm. nn_sequential uses it for a
 * BatchNorm module directly followed by a ReLU module. */
tensor *nnf_batch_norm_relu(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                            bool training, double momentum, double eps);

/* Ghost batch normalization (Hoffer et al. 2017) as a function: in training, nnf_batch_norm applied
 * to each of input.tensor_split(ceil(N / ghost_batch_size)) in turn, the outputs concatenated --
 * with the same y, dx and running statistics bit for bit (weight and bias gradients are summed
 * over the sub-batches in double, so they may differ from the separate calls' in the last bit),
 * in one pass over memory and one NativeBatchNormBackward0 node whose analytic backward treats
 * each sub-batch as its own batch. The running statistics (if given)
 * are updated once per sub-batch, in order, each time with factor momentum. Not training: exactly
 * nnf_batch_norm. ghost_batch_size must be > 0 and, in training, at most N, with more than one
 * value per channel in every sub-batch. */
tensor *nnf_ghost_batch_norm(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight, tensor *bias,
                             bool training, double momentum, double eps, int64_t ghost_batch_size);

/* The same function composed of differentiable primitives (torch_mean, torch_var, torch_sub,
 * torch_rsqrt, torch_mul, torch_add, torch_reshape), so that autograd derives the gradient by
 * itself: the teaching reference the fused version is tested against. Same arguments and
 * running-stat updates as nnf_batch_norm; slower, more memory. */
tensor *nnf_batch_norm_composite(tensor *input, tensor *running_mean, tensor *running_var, tensor *weight,
                                 tensor *bias, bool training, double momentum, double eps);

#endif /* CTORCH_NN_BATCH_NORM_H */
