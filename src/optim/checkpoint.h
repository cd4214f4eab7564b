/* checkpoint.h — the whole training state in one safetensors file, so that training resumes
 * exactly: 2 epochs in one run and 1 epoch + save + load + 1 epoch give bit-identical weights.
 *
 * Ownership: nothing is allocated for the caller. optim_training_state only points at the
 * caller's objects; load writes into them (model parameters and buffers, optimizer momentum
 * buffers and group options, scheduler state, generator state, epoch and step).
 *
 * File layout (readable by any safetensors reader, e.g. scripts/safetensors_convert.py):
 *   tensors   "model.<state_dict key>"                   the model's state_dict
 *             "optimizer.state.<i>.momentum_buffer"      optim_sgd_state_dict()
 *   metadata  "ctorch.format" = "checkpoint", "ctorch.version" = "1",
 *             "epoch", "step" (decimal), "generator" (4 x 16 hex digits: xoshiro state),
 *             "optimizer.param_groups" (JSON: per group lr, momentum, dampening,
 *                                       weight_decay, nesterov, maximize, params count),
 *             "scheduler" (JSON: kind, last_epoch, step_count, base_lrs, last_lrs)
 *   Learning rates are written with 17 significant digits, so they read back exactly.
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
#include "sgd.h"

/* What a checkpoint holds. Only model is required; a NULL member is neither saved nor
 * restored (but a member given to load must be present in the file). */
typedef struct optim_training_state {
    nn_module          *model;     /* required: state_dict (parameters and buffers) */
    optim_sgd          *optimizer; /* momentum buffers and group options */
    optim_lr_scheduler *scheduler; /* schedule position */
    torch_generator    *generator; /* the training generator (shuffling, dropout, ...) */
    int64_t             epoch;     /* epochs completed; written by load */
    int64_t             step;      /* optimizer steps taken; written by load */
} optim_training_state;

/* Writes the state to path atomically. */
torch_status optim_checkpoint_save(const char *path, const optim_training_state *state);
/* Restores the state from path into the objects state points at (strict model loading). On
 * any error nothing changes. */
torch_status optim_checkpoint_load(const char *path, optim_training_state *state);
/* The loader on bytes in memory (tests and fuzzing); name labels error messages. */
torch_status optim_checkpoint_parse(const uint8_t *data, size_t size, const char *name, optim_training_state *state);

#endif /* CTORCH_OPTIM_CHECKPOINT_H */
