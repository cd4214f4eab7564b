/* checkpoint.h — the whole training state in one safetensors file, so that training resumes
 * exactly: 2 epochs in one run and 1 epoch + save + load + 1 epoch give bit-identical weights.
 *
 * Ownership: nothing is allocated for the caller. optim_training_state only points at the
 * caller's objects; load writes into them (model parameters and buffers, the optimizer's state
 * and group options, the scheduler's settings and position, generator state, epoch and step).
 *
 * File layout (readable by any safetensors reader, e.g. scripts/safetensors_convert.py):
 *   tensors   "model.<state_dict key>"                   the model's state_dict
 *             "optimizer.state.<i>.<key>"                optim_state_dict(): momentum_buffer
 *                                                        (SGD); step, exp_avg, exp_avg_sq,
 *                                                        max_exp_avg_sq (Adam, AdamW)
 *   metadata  "ctorch.format" = "checkpoint", "ctorch.version" = "2",
 *             "epoch", "step" (decimal), "generator" (4 x 16 hex digits: xoshiro state),
 *             "optimizer.type" ("SGD", "Adam" or "AdamW"),
 *             "optimizer.param_groups" (JSON: per group the options with PyTorch's names, e.g.
 *                                       lr, betas, eps, weight_decay, amsgrad, maximize, and
 *                                       the number of params),
 *             "scheduler" (JSON: optim_lr_scheduler_state_json(): kind, settings, position)
 *   Learning rates are written with 17 significant digits, so they read back exactly.
 *   Version 1 (before Adam) files are refused with a message saying so.
 *
 * Saving is atomic (io_write_file_atomic): a crash never destroys the previous checkpoint.
 * Loading reads the file as io_safetensors_load does (io_read_file: a regular file of at most
 * IO_SAFETENSORS_MAX_FILE bytes, so /dev/zero or a FIFO is refused at once), then checks
 * everything (format marker, numbers, JSON, keys, shapes, group layout, scheduler kind) before
 * changing anything; a truncated or corrupted file is refused with TORCH_ERR_FORMAT (or
 * TORCH_ERR_KEY for a model mismatch) and a message naming the file, the value that is wrong,
 * what it holds and what was expected ("optimizer.param_groups[0].lr is inf (expected a finite
 * number)"). The JSON metadata is held to RFC 8259 as the header is (io_json_check).
 */
#ifndef CTORCH_OPTIM_CHECKPOINT_H
#define CTORCH_OPTIM_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/generator.h"
#include "lr_scheduler.h"
#include "optimizer.h"

/* What a checkpoint holds. Only model is required; a NULL member is neither saved nor
 * restored (but a member given to load must be present in the file). */
typedef struct optim_training_state {
    nn_module          *model;     /* required: state_dict (parameters and buffers) */
    optim_optimizer    *optimizer; /* per-parameter state and group options; on load, the
                                      file's optimizer must be of the same kind */
    optim_lr_scheduler *scheduler; /* schedule settings and position; on load, of the same kind */
    torch_generator    *generator; /* the training generator (shuffling, dropout, ...) */
    int64_t             epoch;     /* epochs completed; written by load */
    int64_t             step;      /* optimizer steps taken; written by load */
} optim_training_state;

/* Writes the state to path atomically. */
torch_status optim_checkpoint_save(const char *path, const optim_training_state *state);
/* Restores the state from path into the objects state points at (strict model loading). On
 * any error nothing changes: everything is read and checked before the first object changes.
 * A checkpoint of another optimizer ("the checkpoint's optimizer is SGD, this one is AdamW")
 * or scheduler kind is refused with TORCH_ERR_KEY. */
torch_status optim_checkpoint_load(const char *path, optim_training_state *state);
/* The loader on bytes in memory (tests and fuzzing); name labels error messages. */
torch_status optim_checkpoint_parse(const uint8_t *data, size_t size, const char *name, optim_training_state *state);

#endif /* CTORCH_OPTIM_CHECKPOINT_H */
