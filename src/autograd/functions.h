/* functions.h — private to src/autograd: the small helpers its op files share.
 *
 * Ownership: the helpers follow tensor.h: a returned tensor * is a new reference; ag_op_record
 * consumes `out` when it fails.
 *
 * Adding an op: see op_table.h.
 */
#ifndef CTORCH_AUTOGRAD_FUNCTIONS_H
#define CTORCH_AUTOGRAD_FUNCTIONS_H

#include "autograd.h"

/* ---- helpers (functions.c) -------------------------------------------------------------------- */

/* Records fn on *out (a new reference that the op is about to return) when grad mode is on and
 * an input requires grad. Returns true and sets *node (NULL when nothing was recorded) on
 * success; on failure (*out NULL because the kernel failed, or recording failed) frees *out,
 * sets it to NULL and returns false, leaving the error set. */
bool ag_op_record(const ag_function *fn, tensor **out, int n_inputs, tensor *const *inputs, ag_node **node);

/* Frees out and returns NULL: the one-line exit of an op whose ag_node_save failed. */
tensor *ag_op_fail(tensor *out);

#endif /* CTORCH_AUTOGRAD_FUNCTIONS_H */
