/* adam.c — torch.optim.Adam and AdamW (PyTorch 1.13's _single_tensor_adam/_adamw) on
 * optim_optimizer. */
#include "adam.h"

#include <math.h>
#include <stddef.h>

#include "optimizer_impl.h"

enum { STEP, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ };

optim_adam_options optim_adam_options_default(void) {
    return (optim_adam_options){.lr = 1e-3, .betas = {0.9, 0.999}, .eps = 1e-8, .weight_decay = 0};
}

optim_adam_options optim_adamw_options_default(void) {
    optim_adam_options o = optim_adam_options_default();
    o.weight_decay = 1e-2;
    return o;
}

/* PyTorch's checks and messages, NaN-safe; infinities are refused too. */
static torch_status check_options(const char *fname, const void *options) {
    const optim_adam_options *o = options;
    if (!(o->lr >= 0.0) || !isfinite(o->lr))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid learning rate: %g", fname, o->lr);
    if (!(o->eps >= 0.0) || !isfinite(o->eps))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid epsilon value: %g", fname, o->eps);
    for (int i = 0; i < 2; i++)
        if (!(o->betas[i] >= 0.0 && o->betas[i] < 1.0))
            return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid beta parameter at index %d: %g", fname, i,
                               o->betas[i]);
    if (!(o->weight_decay >= 0.0) || !isfinite(o->weight_decay))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid weight_decay value: %g", fname, o->weight_decay);
    return TORCH_OK;
}

static bool needs_state(const void *options, int k) {
    return k != MAX_EXP_AVG_SQ || ((const optim_adam_options *)options)->amsgrad;
}

static torch_status check_state(const char *fname, const void *options, int64_t index, const char *name,
                                tensor *const *state) {
    const optim_adam_options *o = options;
    bool any = state[STEP] || state[EXP_AVG] || state[EXP_AVG_SQ];
    if (!any && !state[MAX_EXP_AVG_SQ]) return TORCH_OK; /* never stepped */
    const char *missing = !state[STEP] ? "step" : !state[EXP_AVG] ? "exp_avg" : !state[EXP_AVG_SQ] ? "exp_avg_sq"
                          : o->amsgrad && !state[MAX_EXP_AVG_SQ]                                ? "max_exp_avg_sq"
                                                                                                 : NULL;
    if (missing)
        return torch_error(TORCH_ERR_KEY, "%s: missing key \"state.%lld.%s\" (parameter \"%s\" has other state%s)",
                           fname, (long long)index, missing, name,
                           o->amsgrad ? "; with amsgrad each stepped parameter has step, exp_avg, exp_avg_sq and "
                                        "max_exp_avg_sq"
                                      : "; each stepped parameter has step, exp_avg and exp_avg_sq");
    float t = tensor_data_f32(state[STEP])[0];
    if (!(t >= 0.0f) || t != floorf(t) || t >= 16777216.0f)
        return torch_error(TORCH_ERR_KEY, "%s: \"state.%lld.step\" is %g (expected a whole number in [0, 2^24))",
                           fname, (long long)index, (double)t);
    return TORCH_OK;
}

/* The update in float32 as PyTorch's CPU kernels compute it, so that the results are PyTorch's
 * to the bit (test_adam checks 18 option sets x 10 steps): every scalar rounded to float first;
 * `a.add_(b, alpha=c)` is fma(b, c, a) (vec::fmadd); addcmul's a + s * b * c is compiled into
 * fma(s * b, c, a); addcdiv is a + (s * b) / c; the bias corrections are Python floats
 * (double). */
static void update_common(const optim_adam_options *o, bool decoupled, float *p, const float *grad, int64_t n,
                          tensor *const *state) {
    float *step_t = tensor_data_f32(state[STEP]), *m = tensor_data_f32(state[EXP_AVG]);
    float *v = tensor_data_f32(state[EXP_AVG_SQ]), *vmax = o->amsgrad ? tensor_data_f32(state[MAX_EXP_AVG_SQ]) : NULL;
    *step_t += 1.0f;
    const double t = (double)*step_t, b1 = o->betas[0], b2 = o->betas[1];
    const double step_size = o->lr / (1.0 - pow(b1, t)), bc2_sqrt = sqrt(1.0 - pow(b2, t));
    const float decay = (float)(1.0 - o->lr * o->weight_decay), wd = (float)o->weight_decay;
    const float fb1 = (float)b1, fb2 = (float)b2, one_b1 = (float)(1.0 - b1), one_b2 = (float)(1.0 - b2);
    const float fbc2 = (float)bc2_sqrt, feps = (float)o->eps, neg_step = (float)-step_size;
    for (int64_t i = 0; i < n; i++) {
        float g = o->maximize ? -grad[i] : grad[i];
        if (decoupled) p[i] = p[i] * decay;                               /* param.mul_(1 - lr * wd) */
        else if (o->weight_decay != 0) g = fmaf(p[i], wd, g);             /* grad.add(param, alpha=wd) */
        m[i] = fmaf(g, one_b1, m[i] * fb1);                               /* exp_avg.mul_(b1).add_(g, 1-b1) */
        v[i] = fmaf(one_b2 * g, g, v[i] * fb2);                               /* exp_avg_sq.mul_(b2).addcmul_(g, g) */
        float s = v[i];
        if (vmax) s = vmax[i] = (s > vmax[i] || s != s) ? s : vmax[i];    /* torch.maximum: NaN wins */
        float denom = sqrtf(s) / fbc2 + feps;                             /* (s.sqrt() / bc2_sqrt).add_(eps) */
        p[i] = p[i] + neg_step * m[i] / denom;                            /* addcdiv_(m, denom, -step_size) */
    }
}

static void update_adam(const void *options, float *p, const float *grad, int64_t n, tensor *const *state,
                        unsigned fresh) {
    (void)fresh; /* fresh state is zero, as PyTorch creates it */
    update_common(options, false, p, grad, n, state);
}

static void update_adamw(const void *options, float *p, const float *grad, int64_t n, tensor *const *state,
                         unsigned fresh) {
    (void)fresh;
    update_common(options, true, p, grad, n, state);
}

#define FIELD(name, kind) {#name, OPTIM_FIELD_##kind, offsetof(optim_adam_options, name)}
static const optim_field fields[] = {FIELD(lr, DOUBLE),           FIELD(betas, PAIR),   FIELD(eps, DOUBLE),
                                     FIELD(weight_decay, DOUBLE), FIELD(amsgrad, BOOL), FIELD(maximize, BOOL)};
static const optim_state_key state_keys[] = {
    [STEP] = {"step", true}, [EXP_AVG] = {"exp_avg", false}, [EXP_AVG_SQ] = {"exp_avg_sq", false},
    [MAX_EXP_AVG_SQ] = {"max_exp_avg_sq", false}};

#define ADAM_OPS(NAME, UPDATE)                                                                                        \
    {.name = NAME, .options_size = sizeof(optim_adam_options), .lr_offset = offsetof(optim_adam_options, lr),       \
     .fields = fields, .n_fields = sizeof fields / sizeof fields[0], .state = state_keys, .n_state = 4,             \
     .check_options = check_options, .needs_state = needs_state, .check_state = check_state, .update = UPDATE}
static const optim_ops adam_ops = ADAM_OPS("Adam", update_adam);
static const optim_ops adamw_ops = ADAM_OPS("AdamW", update_adamw);

optim_optimizer *optim_adam(const nn_tensor_dict *params, optim_adam_options options) {
    return optim_new(&adam_ops, "optim_adam", params, &options);
}

optim_optimizer *optim_adamw(const nn_tensor_dict *params, optim_adam_options options) {
    return optim_new(&adamw_ops, "optim_adamw", params, &options);
}

torch_status optim_adam_add_param_group(optim_optimizer *opt, const nn_tensor_dict *params,
                                        optim_adam_options options) {
    static const char *fname = "optim_adam_add_param_group";
    if (!optim_group_options_of(opt, &adam_ops, &adamw_ops, fname, 0)) return torch_last_status();
    return optim_add_group(opt, opt->ops, fname, params, &options);
}

optim_adam_options optim_adam_group_options(const optim_optimizer *opt, int group) {
    const optim_adam_options *o = optim_group_options_of(opt, &adam_ops, &adamw_ops, "optim_adam_group_options", group);
    return o ? *o : (optim_adam_options){0};
}

torch_status optim_adam_set_group_options(optim_optimizer *opt, int group, optim_adam_options options) {
    static const char *fname = "optim_adam_set_group_options";
    if (!optim_group_options_of(opt, &adam_ops, &adamw_ops, fname, group)) return torch_last_status();
    return optim_set_group_options(opt, fname, group, &options);
}
