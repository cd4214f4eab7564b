/* state_json.h — private to optim/: reading the JSON that checkpoints and schedule states are
 * made of, with errors that say where the bad value is, what it holds and what was expected
 * ("train.ckpt: optimizer.param_groups[0].lr is inf (expected a finite number)").
 *
 * Ownership: optim_json_parse returns a cJSON tree the caller deletes (cJSON_Delete). The
 * readers only read; nothing keeps a pointer it was given. The scheduler's stage functions
 * return a scheduler tree the caller commits (which frees it) or frees.
 */
#ifndef CTORCH_OPTIM_STATE_JSON_H
#define CTORCH_OPTIM_STATE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "lr_scheduler.h"

/* Who reads: fname starts every message; name, when not NULL, is the file (or "<memory>"). */
typedef struct optim_json_ctx {
    const char *fname;
    const char *name;
} optim_json_ctx;

/* "fname: name: " (or "fname: " without a name), the start of every message. */
void optim_json_prefix(const optim_json_ctx *c, char *out, size_t size);
/* The error "fname: name: where.key is <what it holds> (expected <expected>)"; TORCH_ERR_FORMAT. */
torch_status optim_json_field_error(const optim_json_ctx *c, const char *where, const char *key, const cJSON *it,
                                    const char *expected);
/* The JSON text of entry `what`, checked by io_json_check and parsed; NULL with the error set. */
cJSON *optim_json_parse(const optim_json_ctx *c, const char *what, const char *text);

/* obj[key] read into *out; false with the error set when it is missing or wrong. */
bool optim_json_number(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, double *out);
/* A whole number in [min, 2^53]. */
bool optim_json_int(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, int64_t min,
                    int64_t *out);
bool optim_json_bool(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, bool *out);
/* An array of exactly n finite numbers (what says what each is, e.g. "one per parameter group"). */
bool optim_json_doubles(const optim_json_ctx *c, const char *where, const cJSON *obj, const char *key, int n,
                        const char *what, double *out);

/* The scheduler's state as a JSON object (NULL on out-of-memory): kind, position, settings, and
 * for SequentialLR its milestones and children. */
cJSON *optim_lr_scheduler_to_json(const optim_lr_scheduler *s);
/* Checks obj against s (same kind and shape of tree, valid settings) and builds the new state
 * apart from s; optim_lr_scheduler_commit then installs it into s (and its children) and frees
 * it, and cannot fail. optim_lr_scheduler_free frees an uncommitted one. */
torch_status optim_lr_scheduler_stage(const optim_json_ctx *c, const char *where, const optim_lr_scheduler *s,
                                      const cJSON *obj, optim_lr_scheduler **staged);
void         optim_lr_scheduler_commit(optim_lr_scheduler *s, optim_lr_scheduler *staged);

#endif /* CTORCH_OPTIM_STATE_JSON_H */
