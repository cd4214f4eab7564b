/* gradcheck.c — analytic vs central-difference gradients (see gradcheck.h for the method). */
#include "gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

torch_gradcheck_options torch_gradcheck_options_default(void) {
    return (torch_gradcheck_options){.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2, .seed = 0};
}

/* Offset, in elements from tensor_data_f32(t), of t's element at flat row-major index k. */
static int64_t element_offset(const tensor *t, int64_t k) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (k % t->shape[d]) * t->stride[d];
        k /= t->shape[d];
    }
    return off;
}

/* L = sum(out * r) in double; r is contiguous at out's shape. */
static double weighted_sum(const tensor *out, const float *r) {
    const float *o = tensor_data_f32(out);
    double s = 0.0;
    for (int64_t k = 0; k < out->numel; k++) s += (double)o[element_offset(out, k)] * (double)r[k];
    return s;
}

/* Re-raises fn's failure with our prefix (the message is copied first: torch_error overwrites
 * the buffer torch_last_error points into). */
static torch_status fn_failed(void) {
    char msg[256];
    torch_status st = torch_last_status();
    snprintf(msg, sizeof msg, "%s", torch_last_error());
    return torch_error(st != TORCH_OK ? st : TORCH_ERR_INVALID_STATE, "torch_gradcheck: the function failed: %s",
                       msg[0] ? msg : "returned NULL without an error");
}

/* Checks that a later output has the first output's dtype and shape. */
static torch_status check_output(const tensor *out, const tensor *first) {
    char a[96], b[96];
    if (out->dtype != TORCH_FLOAT32)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_gradcheck: expected a float32 output (got %s)",
                           torch_dtype_name(out->dtype));
    if (first && !tensor_same_shape(out, first))
        return torch_error(TORCH_ERR_SHAPE, "torch_gradcheck: the output changed shape from %s to %s between calls",
                           torch_shape_str(first->ndim, first->shape, a, sizeof a),
                           torch_shape_str(out->ndim, out->shape, b, sizeof b));
    return TORCH_OK;
}

/* One forward under the caller's grad mode: *loss = sum(fn(inputs) * r). */
static torch_status eval_loss(torch_gradcheck_fn fn, void *user, tensor *const *inputs, const tensor *r,
                              double *loss) {
    tensor *out = fn(inputs, user);
    if (!out) return fn_failed();
    torch_status st = check_output(out, r);
    if (st == TORCH_OK) *loss = weighted_sum(out, tensor_data_f32(r));
    tensor_free(out);
    return st;
}

static torch_status check_args(torch_gradcheck_fn fn, int n_inputs, tensor *const *inputs,
                               torch_gradcheck_options o) {
    if (!fn) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_gradcheck: fn is NULL");
    if (n_inputs < 1 || !inputs)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_gradcheck: expected at least one input (got %d)",
                           n_inputs);
    if (!(o.eps > 0.0) || !(o.atol >= 0.0) || !(o.rtol >= 0.0))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                           "torch_gradcheck: expected eps > 0, atol >= 0 and rtol >= 0 (got %g, %g, %g)", o.eps,
                           o.atol, o.rtol);
    bool any = false;
    for (int i = 0; i < n_inputs; i++) {
        const tensor *t = inputs[i];
        char what[24];
        snprintf(what, sizeof what, "input %d", i);
        torch_status st = torch_check_float32("torch_gradcheck", what, t);
        if (st != TORCH_OK) return st;
        if (t->grad_fn)
            return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                               "torch_gradcheck: input %d is not a leaf (detach it, or check the op that made it)", i);
        for (int j = 0; j < i; j++)
            if (inputs[j] == t)
                return torch_error(TORCH_ERR_INVALID_ARGUMENT,
                                   "torch_gradcheck: input %d is the same tensor as input %d (pass it once)", i, j);
        any = any || t->requires_grad;
    }
    if (!any) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_gradcheck: no input requires grad");
    return TORCH_OK;
}

/* "'x'" or "3" for the message. */
static const char *label(const char *const *names, int i, char *buf, size_t len) {
    if (names && names[i]) snprintf(buf, len, "'%s'", names[i]);
    else snprintf(buf, len, "%d", i);
    return buf;
}

/* "[1, 0, 2]": the coordinates of flat row-major index k in t's shape. */
static const char *coordinates(const tensor *t, int64_t k, char *buf, size_t len) {
    int64_t idx[TORCH_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = k % t->shape[d];
        k /= t->shape[d];
    }
    return torch_shape_str(t->ndim, idx, buf, len);
}

/* The analytic pass: the gradients of L = sum(fn(inputs) * r) through tensor_backward, with
 * grad mode on. analytic[i] receives input i's gradient (owned; NULL when none reached it). The
 * inputs' own .grad are set aside first and put back after, whatever happens. *r_out receives
 * the upstream gradient r (owned), at the output's shape. */
static torch_status analytic_pass(torch_gradcheck_fn fn, void *user, int n, tensor *const *inputs, uint64_t seed,
                                  tensor **analytic, tensor **r_out) {
    tensor **stash = calloc((size_t)n, sizeof *stash);
    if (!stash) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "torch_gradcheck: out of memory");
    for (int i = 0; i < n; i++) {
        stash[i] = inputs[i]->grad;
        inputs[i]->grad = NULL;
    }
    bool prev = torch_set_grad_enabled(true);
    torch_status st = TORCH_OK;
    tensor *r = NULL, *out = fn(inputs, user);
    if (!out) st = fn_failed();
    if (st == TORCH_OK) st = check_output(out, NULL);
    if (st == TORCH_OK && !out->requires_grad)
        st = torch_error(TORCH_ERR_INVALID_STATE,
                         "torch_gradcheck: the output does not require grad (does it depend on the inputs?)");
    if (st == TORCH_OK) {
        torch_generator gen = torch_generator_new(seed);
        r = torch_randn(&gen, out->ndim, out->shape);
        st = r ? tensor_backward(out, r, false) : torch_last_status();
    }
    torch_set_grad_enabled(prev);
    for (int i = 0; i < n; i++) {
        analytic[i] = inputs[i]->grad;
        inputs[i]->grad = stash[i];
    }
    free(stash);
    tensor_free(out);
    if (st != TORCH_OK) {
        tensor_free(r);
        return st;
    }
    *r_out = r;
    return TORCH_OK;
}

torch_status torch_gradcheck(torch_gradcheck_fn fn, void *user, int n_inputs, tensor *const *inputs,
                             const char *const *names, torch_gradcheck_options options,
                             torch_gradcheck_result *result) {
    torch_gradcheck_result res = {.worst_input = -1, .worst_index = -1};
    tensor **analytic = NULL, *r = NULL;
    double worst_ratio = -1.0;
    int64_t checked = 0;
    char who[80];

    torch_status st = check_args(fn, n_inputs, inputs, options);
    if (st == TORCH_OK && !(analytic = calloc((size_t)n_inputs, sizeof *analytic)))
        st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "torch_gradcheck: out of memory");
    if (st == TORCH_OK) st = analytic_pass(fn, user, n_inputs, inputs, options.seed, analytic, &r);

    /* The numeric pass: two forwards per element, no graph needed. */
    bool prev = torch_set_grad_enabled(false);
    for (int i = 0; i < n_inputs && st == TORCH_OK; i++) {
        tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        float *xd = tensor_data_f32(x);
        const float *gd = analytic[i] ? tensor_data_f32(analytic[i]) : NULL;
        for (int64_t k = 0; k < x->numel && st == TORCH_OK; k++) {
            const int64_t off = element_offset(x, k);
            const float orig = xd[off];
            const float xp = (float)(orig + options.eps), xm = (float)(orig - options.eps);
            double lp = 0.0, lm = 0.0;
            xd[off] = xp;
            st = eval_loss(fn, user, inputs, r, &lp);
            xd[off] = xm;
            if (st == TORCH_OK) st = eval_loss(fn, user, inputs, r, &lm);
            xd[off] = orig;
            if (st != TORCH_OK) break;

            const double numeric = (lp - lm) / ((double)xp - (double)xm);
            const double an = gd ? (double)gd[element_offset(analytic[i], k)] : 0.0;
            const double err = fabs(an - numeric), tol = options.atol + options.rtol * fabs(numeric);
            const double denom = fmax(fabs(numeric), options.atol);
            const double rel = denom > 0.0 ? err / denom : (err == 0.0 ? 0.0 : INFINITY);
            /* How far outside (> 1) or inside (<= 1) its tolerance the element is; NaN is worst. */
            const double ratio = isnan(err) ? INFINITY : tol > 0.0 ? err / tol : (err == 0.0 ? 0.0 : INFINITY);
            if (isnan(err) || err > res.max_abs_err) res.max_abs_err = err;
            if (isnan(rel) || rel > res.max_rel_err) res.max_rel_err = rel;
            if (ratio > worst_ratio) {
                worst_ratio = ratio;
                res.worst_input = i;
                res.worst_index = k;
                res.analytic = an;
                res.numeric = numeric;
            }
            checked++;
        }
    }
    torch_set_grad_enabled(prev);

    if (st == TORCH_OK && checked == 0) {
        res.passed = true;
        snprintf(res.message, sizeof res.message, "gradcheck: passed (0 elements)");
    } else if (st == TORCH_OK) {
        const double err = fabs(res.analytic - res.numeric);
        res.passed = worst_ratio <= 1.0;
        char where[96];
        label(names, res.worst_input, who, sizeof who);
        coordinates(inputs[res.worst_input], res.worst_index, where, sizeof where);
        if (res.passed)
            snprintf(res.message, sizeof res.message,
                     "gradcheck: passed (%lld elements); worst: input %s element %s (index %lld): analytic %.6g vs "
                     "numeric %.6g (abs err %.1e)",
                     (long long)checked, who, where, (long long)res.worst_index, res.analytic, res.numeric, err);
        else
            snprintf(res.message, sizeof res.message,
                     "gradcheck: input %s element %s (index %lld): analytic %.6g vs numeric %.6g (abs err %.1e, "
                     "tolerance %.1e)",
                     who, where, (long long)res.worst_index, res.analytic, res.numeric, err,
                     options.atol + options.rtol * fabs(res.numeric));
        if (!res.passed) st = torch_error(TORCH_ERR_INVALID_STATE, "%s", res.message);
    } else {
        res.passed = false;
        snprintf(res.message, sizeof res.message, "%s", torch_last_error());
    }
    for (int i = 0; analytic && i < n_inputs; i++) tensor_free(analytic[i]);
    free(analytic);
    tensor_free(r);
    if (result) *result = res;
    return st;
}
