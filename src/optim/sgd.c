/* sgd.c — torch.optim.SGD (PyTorch 1.13): its options, checks and update on optim_optimizer. */
#include "sgd.h"

#include <math.h>
#include <stddef.h>

#include "optimizer_impl.h"

optim_sgd_options optim_sgd_options_default(double lr) {
    return (optim_sgd_options){.lr = lr, .momentum = 0, .dampening = 0, .weight_decay = 0, .nesterov = false,
                               .maximize = false};
}

/* PyTorch's checks and messages (the NaN-safe way: !(x >= 0) also refuses NaN). */
static torch_status check_options(const char *fname, const void *options) {
    const optim_sgd_options *o = options;
    if (!(o->lr >= 0.0) || !isfinite(o->lr))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid learning rate: %g", fname, o->lr);
    if (!(o->momentum >= 0.0) || !isfinite(o->momentum))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid momentum value: %g", fname, o->momentum);
    if (!(o->weight_decay >= 0.0) || !isfinite(o->weight_decay))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid weight_decay value: %g", fname, o->weight_decay);
    if (!isfinite(o->dampening))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Invalid dampening value: %g", fname, o->dampening);
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: Nesterov momentum requires a momentum and zero dampening",
                           fname);
    return TORCH_OK;
}

static bool needs_state(const void *options, int k) {
    (void)k; /* the one slot, momentum_buffer */
    return ((const optim_sgd_options *)options)->momentum != 0;
}

static torch_status check_state(const char *fname, const void *options, int64_t index, const char *name,
                                tensor *const *state) {
    (void)fname, (void)options, (void)index, (void)name, (void)state; /* any buffer of the right shape will do */
    return TORCH_OK;
}

/* One parameter's update, in float32 as PyTorch's CPU kernels do it: each coefficient rounded
 * to float first, and every `a.add_(b, alpha=c)` a fused multiply-add fma(b, c, a), as
 * PyTorch's vectorised add kernel computes it (vec::fmadd). The results then agree with
 * PyTorch to the last bit or so. A fresh buffer receives the copy of g. */
static void update(const void *options, float *p, const float *grad, int64_t n, tensor *const *state,
                   unsigned fresh) {
    const optim_sgd_options *o = options;
    float *buf = state[0] ? tensor_data_f32(state[0]) : NULL;
    const float wd = (float)o->weight_decay, mom = (float)o->momentum, damp1 = (float)(1.0 - o->dampening);
    const float neg_lr = (float)-o->lr;
    for (int64_t i = 0; i < n; i++) {
        float g = o->maximize ? -grad[i] : grad[i];
        if (o->weight_decay != 0) g = fmaf(p[i], wd, g); /* d_p.add(param, alpha=weight_decay) */
        if (o->momentum != 0) {
            if (fresh & 1u)
                buf[i] = g;                            /* torch.clone(d_p).detach() */
            else
                buf[i] = fmaf(g, damp1, buf[i] * mom); /* buf.mul_(momentum).add_(d_p, alpha=1 - dampening) */
            g = o->nesterov ? fmaf(buf[i], mom, g) : buf[i]; /* d_p.add(buf, alpha=momentum) */
        }
        p[i] = fmaf(g, neg_lr, p[i]); /* param.add_(d_p, alpha=-lr) */
    }
}

#define FIELD(name, kind) {#name, OPTIM_FIELD_##kind, offsetof(optim_sgd_options, name)}
static const optim_field fields[] = {FIELD(lr, DOUBLE),           FIELD(momentum, DOUBLE), FIELD(dampening, DOUBLE),
                                     FIELD(weight_decay, DOUBLE), FIELD(nesterov, BOOL),   FIELD(maximize, BOOL)};
static const optim_state_key state_keys[] = {{"momentum_buffer", false}};

static const optim_ops sgd_ops = {
    .name = "SGD",
    .options_size = sizeof(optim_sgd_options),
    .lr_offset = offsetof(optim_sgd_options, lr),
    .fields = fields,
    .n_fields = sizeof fields / sizeof fields[0],
    .state = state_keys,
    .n_state = 1,
    .check_options = check_options,
    .needs_state = needs_state,
    .check_state = check_state,
    .update = update,
};

optim_optimizer *optim_sgd(const nn_tensor_dict *params, optim_sgd_options options) {
    return optim_new(&sgd_ops, "optim_sgd", params, &options);
}

torch_status optim_sgd_add_param_group(optim_optimizer *opt, const nn_tensor_dict *params, optim_sgd_options options) {
    return optim_add_group(opt, &sgd_ops, "optim_sgd_add_param_group", params, &options);
}

optim_sgd_options optim_sgd_group_options(const optim_optimizer *opt, int group) {
    const optim_sgd_options *o = optim_group_options_of(opt, &sgd_ops, NULL, "optim_sgd_group_options", group);
    return o ? *o : (optim_sgd_options){0};
}

torch_status optim_sgd_set_group_options(optim_optimizer *opt, int group, optim_sgd_options options) {
    static const char *fname = "optim_sgd_set_group_options";
    if (!optim_group_options_of(opt, &sgd_ops, NULL, fname, group)) return torch_last_status();
    return optim_set_group_options(opt, fname, group, &options);
}
