/* gradcheck.h — checks an op's analytic gradient against central finite differences.
 *
 * Ownership: torch_gradcheck borrows everything it is given. It calls fn once with grad mode on
 * (the analytic pass: one tensor_backward) and twice per checked element under no-grad (the
 * numeric pass), frees every output fn returns, and leaves the inputs as it found them: each
 * perturbed element is restored bit for bit and each input's .grad is put back, so a gradient
 * accumulated before the check is neither changed nor lost.
 *
 * Method: with r a fixed non-uniform random upstream gradient (N(0, 1) from options.seed) and
 * L = sum(fn(inputs) * r) accumulated in double, for every element x of every input that
 * requires grad:
 *     numeric  = (L(x + eps) - L(x - eps)) / (x_+ - x_-), with x_+/- the float32 values actually
 *                stored (so float rounding of the step does not bias the quotient),
 *     analytic = the element of the input's gradient after tensor_backward(out, r),
 * and the element passes when |analytic - numeric| <= atol + rtol * |numeric|.
 *
 * Inputs are float32 leaves; inputs that do not require grad are passed to fn but not checked.
 * fn must be deterministic and return a float32 tensor of the same shape on every call.
 */
#ifndef CTORCH_GRADCHECK_H
#define CTORCH_GRADCHECK_H

#include <stdint.h>

#include "autograd.h"

/* The op under test: returns its output (a new reference) or NULL with the error set. */
typedef tensor *(*torch_gradcheck_fn)(tensor *const *inputs, void *user);

typedef struct torch_gradcheck_options {
    double   eps;  /* finite-difference step, absolute; default 1e-3 */
    double   atol; /* absolute tolerance; default 1e-3 */
    double   rtol; /* tolerance relative to |numeric|; default 1e-2 */
    uint64_t seed; /* seed of the upstream gradient r; default 0 */
} torch_gradcheck_options;

/* eps 1e-3, atol 1e-3, rtol 1e-2, seed 0: suits float32 ops with O(1) inputs and gradients. */
torch_gradcheck_options torch_gradcheck_options_default(void);

typedef struct torch_gradcheck_result {
    bool    passed;      /* every checked element within tolerance */
    double  max_abs_err; /* max |analytic - numeric| over all checked elements */
    double  max_rel_err; /* max |analytic - numeric| / max(|numeric|, atol) */
    int     worst_input; /* input holding the element furthest outside (or least inside) tolerance, -1 if none */
    int64_t worst_index; /* its flat row-major index in that input */
    double  analytic;    /* the two gradients at the worst element */
    double  numeric;
    /* "gradcheck: input 'x' element [1, 0, 2] (index 17): analytic 0.1234 vs numeric 0.1301 (abs err
     * 6.7e-03, tolerance 2.3e-03)": the element furthest outside its tolerance, by coordinates */
    char    message[512];
} torch_gradcheck_result;

/* Compares analytic and numeric gradients of fn at inputs (n_inputs of them; names[i] labels
 * input i in the message, names or an entry may be NULL: "input 0"). result is optional.
 * Returns TORCH_OK when every element passes; TORCH_ERR_INVALID_STATE with the worst element in
 * the error message (and in result) when one does not; another status, with result->passed
 * false, when the check could not run (bad argument, fn failed, backward failed). */
torch_status torch_gradcheck(torch_gradcheck_fn fn, void *user, int n_inputs, tensor *const *inputs,
                             const char *const *names, torch_gradcheck_options options,
                             torch_gradcheck_result *result);

#endif /* CTORCH_GRADCHECK_H */
