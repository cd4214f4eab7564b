/* functions.c — the helpers the op files of src/autograd share (functions.h). */
#include "functions.h"

bool ag_op_record(const ag_function *fn, tensor **out, int n_inputs, tensor *const *inputs, ag_node **node) {
    *node = NULL;
    if (!*out) return false;
    if (!ag_should_record(n_inputs, inputs)) return true;
    *node = ag_record(fn, *out, n_inputs, inputs);
    if (*node) return true;
    tensor_free(*out);
    *out = NULL;
    return false;
}

tensor *ag_op_fail(tensor *out) {
    tensor_free(out);
    return NULL;
}
