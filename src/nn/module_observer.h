/* module_observer.h — private to nn/: a per-thread observer of module forwards, what the model
 * summary (summary.c) is built on, as torchinfo is built on PyTorch's forward hooks.
 *
 * Ownership: the observer and its ctx are borrowed; they must outlive their installation. The
 * output passed to `post` is borrowed for the call (NULL when the forward failed).
 */
#ifndef CTORCH_NN_MODULE_OBSERVER_H
#define CTORCH_NN_MODULE_OBSERVER_H

#include "module.h"

typedef struct nn_forward_observer {
    void (*pre)(void *ctx, nn_module *m);                        /* before m's forward */
    void (*post)(void *ctx, nn_module *m, const tensor *output); /* after it */
    void *ctx;
} nn_forward_observer;

/* Installs obs for this thread's nn_module_forward calls (NULL removes it) and returns the one it
 * replaces. While one is installed, containers run every module on its own instead of fusing a
 * pair (nn_module_forward_absorbing), so that each module is seen with its own output; the
 * numbers are the same either way. */
const nn_forward_observer *nn_set_forward_observer(const nn_forward_observer *obs);

#endif /* CTORCH_NN_MODULE_OBSERVER_H */
