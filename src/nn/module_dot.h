/* module_dot.h — a picture of the graph of a model's forward (and loss), with the model's
 * parameters and buffers named by their state_dict keys: torchviz's
 *     make_dot(loss, params=dict(model.named_parameters()), show_saved=True)
 *
 * Ownership: borrows everything; returns a new string the caller frees with free(), or NULL with
 * the error set. What is drawn, and how to render it: autograd/dot.h.
 */
#ifndef CTORCH_NN_MODULE_DOT_H
#define CTORCH_NN_MODULE_DOT_H

#include "../autograd/dot.h"
#include "module.h"

/* torch_make_dot of root with labels for m's parameters ("0.weight", role parameter), its buffers
 * ("1.running_mean", role buffer) and input (named "input"; may be NULL). */
char *nn_module_make_dot(const nn_module *m, const tensor *root, const tensor *input, bool show_saved);

#endif /* CTORCH_NN_MODULE_DOT_H */
