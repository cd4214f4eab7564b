/* test_sgd.c — SGD against torch.optim.SGD (PyTorch 1.13 fixture: 10 steps per option set,
 * fixed gradients, one parameter without a gradient for the first 3 steps), parameter groups,
 * PyTorch's error messages, state round trips, and that a step never touches module buffers. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "fixtures/optim_sgd_fixture.h"
#include "nn/batch_norm.h"
#include "optim/sgd.h"

/* The fixture's initial parameters as leaves requiring grad, in a dict named p0, p1, p2. */
static void make_params(tensor *params[SGD_FIX_NPARAMS], nn_tensor_dict **dict) {
    *dict = nn_tensor_dict_new();
    cr_assert_not_null(*dict);
    for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
        params[i] = torch_tensor(sgd_fix_init + sgd_fix_offset[i], sgd_fix_ndim[i], sgd_fix_shape[i]);
        cr_assert_not_null(params[i]);
        cr_assert_eq(tensor_set_requires_grad(params[i], true), TORCH_OK);
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        cr_assert_eq(nn_tensor_dict_set(*dict, name, params[i]), TORCH_OK);
    }
}

/* Sets the fixture's gradients of step k (NULL where the fixture has none). */
static void set_grads(tensor *params[SGD_FIX_NPARAMS], int k) {
    for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
        tensor_zero_grad(params[i]);
        if (sgd_fix_has_grad[k][i])
            params[i]->grad = torch_tensor(sgd_fix_grads + k * SGD_FIX_TOTAL + sgd_fix_offset[i], sgd_fix_ndim[i],
                                           sgd_fix_shape[i]);
    }
}

static optim_sgd_options run_options(const sgd_fix_group *g) {
    optim_sgd_options o = optim_sgd_options_default(g->lr);
    o.momentum = g->momentum;
    o.dampening = g->dampening;
    o.weight_decay = g->weight_decay;
    o.nesterov = g->nesterov;
    o.maximize = g->maximize;
    return o;
}

/* Builds the run's optimizer over params with the run's groups. */
static optim_optimizer *make_optimizer(const sgd_fix_run *run, tensor *params[SGD_FIX_NPARAMS]) {
    optim_optimizer *opt = NULL;
    for (int gi = 0; gi < run->ngroups; gi++) {
        const sgd_fix_group *g = &run->groups[gi];
        nn_tensor_dict *d = nn_tensor_dict_new();
        for (int i = g->first; i < g->first + g->count; i++) {
            char name[16];
            snprintf(name, sizeof name, "p%d", i);
            cr_assert_eq(nn_tensor_dict_set(d, name, params[i]), TORCH_OK);
        }
        if (gi == 0)
            opt = optim_sgd(d, run_options(g));
        else
            cr_assert_eq(optim_sgd_add_param_group(opt, d, run_options(g)), TORCH_OK, "%s", torch_last_error());
        cr_assert_not_null(opt, "%s", torch_last_error());
        nn_tensor_dict_free(d);
    }
    return opt;
}

Test(sgd, matches_pytorch_fixture_every_option) {
    double worst = 0;
    for (int r = 0; r < SGD_FIX_NRUNS; r++) {
        const sgd_fix_run *run = &sgd_fix_runs[r];
        tensor *params[SGD_FIX_NPARAMS];
        nn_tensor_dict *dict;
        make_params(params, &dict);
        optim_optimizer *opt = make_optimizer(run, params);
        for (int k = 0; k < SGD_FIX_STEPS; k++) {
            set_grads(params, k);
            cr_assert_eq(optim_step(opt), TORCH_OK, "%s", torch_last_error());
            for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
                const float *p = tensor_data_f32(params[i]);
                const float *e = sgd_fix_expect[r] + k * SGD_FIX_TOTAL + sgd_fix_offset[i];
                for (int64_t j = 0; j < params[i]->numel; j++) {
                    double err = fabs((double)p[j] - (double)e[j]);
                    if (err > worst) worst = err;
                    cr_assert_leq(err, 1e-6, "run %s step %d param %d [%lld]: %.9g vs PyTorch %.9g", run->name, k, i,
                                  (long long)j, p[j], e[j]);
                }
            }
        }
        /* Momentum buffers: present exactly where PyTorch made one, equal values. */
        for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
            tensor *b = optim_state(opt, i, "momentum_buffer");
            cr_assert_eq(b != NULL, sgd_fix_hasbuf[r][i], "run %s param %d buffer presence", run->name, i);
            if (!b) continue;
            const float *e = sgd_fix_buf[r] + sgd_fix_offset[i];
            for (int64_t j = 0; j < b->numel; j++)
                cr_assert_leq(fabs((double)tensor_data_f32(b)[j] - e[j]), 1e-6, "run %s buffer %d [%lld]", run->name,
                              i, (long long)j);
        }
        optim_free(opt);
        nn_tensor_dict_free(dict);
        for (int i = 0; i < SGD_FIX_NPARAMS; i++) tensor_free(params[i]);
    }
    cr_log_info("sgd: max |ctorch - PyTorch| over %d runs x %d steps: %.3g", SGD_FIX_NRUNS, SGD_FIX_STEPS, worst);
}

Test(sgd, parameter_without_grad_is_skipped_and_gets_no_buffer) {
    tensor *params[SGD_FIX_NPARAMS];
    nn_tensor_dict *dict;
    make_params(params, &dict);
    optim_sgd_options o = optim_sgd_options_default(0.1);
    o.momentum = 0.9;
    o.weight_decay = 0.1; /* would move p2 if it were not skipped */
    optim_optimizer *opt = optim_sgd(dict, o);
    cr_assert_not_null(opt);
    set_grads(params, 0); /* p2 has no gradient at step 0 */
    cr_assert_null(params[2]->grad);
    cr_assert_eq(optim_step(opt), TORCH_OK);
    cr_assert_not_null(optim_state(opt, 0, "momentum_buffer"));
    cr_assert_null(optim_state(opt, 2, "momentum_buffer"));
    cr_assert_eq(memcmp(tensor_data_f32(params[2]), sgd_fix_init + sgd_fix_offset[2], 12 * sizeof(float)), 0);
    optim_free(opt);
    nn_tensor_dict_free(dict);
    for (int i = 0; i < SGD_FIX_NPARAMS; i++) tensor_free(params[i]);
}

/* Hand-computed: p = 1, g = 2, lr 0.5, momentum 0.5, dampening 0.5, wd 0.25:
 * step 1: d = 2 + 0.25 * 1 = 2.25, buf = 2.25, p = 1 - 0.5 * 2.25 = -0.125
 * step 2: d = 2 + 0.25 * -0.125 = 1.96875, buf = 0.5 * 2.25 + 0.5 * 1.96875 = 2.109375,
 *         p = -0.125 - 0.5 * 2.109375 = -1.1796875  (all exact in binary). */
Test(sgd, hand_computed_dampening_applies_from_the_second_step) {
    tensor *p = torch_full(TORCH_SHAPE(1), 1.0f);
    tensor_set_requires_grad(p, true);
    nn_tensor_dict *d = nn_tensor_dict_new();
    nn_tensor_dict_set(d, "w", p);
    optim_sgd_options o = optim_sgd_options_default(0.5);
    o.momentum = 0.5;
    o.dampening = 0.5;
    o.weight_decay = 0.25;
    optim_optimizer *opt = optim_sgd(d, o);
    cr_assert_not_null(opt);
    p->grad = torch_full(TORCH_SHAPE(1), 2.0f);
    cr_assert_eq(optim_step(opt), TORCH_OK);
    cr_assert_eq(tensor_data_f32(p)[0], -0.125f);
    cr_assert_eq(tensor_data_f32(optim_state(opt, 0, "momentum_buffer"))[0], 2.25f);
    cr_assert_eq(optim_step(opt), TORCH_OK);
    cr_assert_eq(tensor_data_f32(p)[0], -1.1796875f);
    cr_assert_eq(tensor_data_f32(optim_state(opt, 0, "momentum_buffer"))[0], 2.109375f);
    tensor *grad = p->grad;
    optim_zero_grad_in_place(opt);
    cr_assert_eq(p->grad, grad, "zero_grad_in_place keeps the gradient tensor");
    cr_assert_eq(tensor_data_f32(p->grad)[0], 0.0f);
    /* A zero gradient is still a gradient: weight decay and momentum act (step 3, exact):
     * d = 0 + 0.25 * -1.1796875 = -0.294921875, buf = 0.5 * 2.109375 + 0.5 * d = 0.9072265625,
     * p = -1.1796875 - 0.5 * buf = -1.63330078125. */
    cr_assert_eq(optim_step(opt), TORCH_OK);
    cr_assert_eq(tensor_data_f32(optim_state(opt, 0, "momentum_buffer"))[0], 0.9072265625f);
    cr_assert_eq(tensor_data_f32(p)[0], -1.63330078125f);
    /* zero_grad (set_to_none): no gradient, so the next step leaves p and its buffer alone. */
    optim_zero_grad(opt);
    cr_assert_null(p->grad, "zero_grad drops the gradient (PyTorch 2.x's set_to_none=True)");
    cr_assert_eq(optim_step(opt), TORCH_OK);
    cr_assert_eq(tensor_data_f32(p)[0], -1.63330078125f);
    cr_assert_eq(tensor_data_f32(optim_state(opt, 0, "momentum_buffer"))[0], 0.9072265625f);
    optim_free(opt);
    nn_tensor_dict_free(d);
    tensor_free(p);
}

/* A step moves BatchNorm's weight and bias and leaves its running statistics alone. */
Test(sgd, step_moves_parameters_never_buffers) {
    nn_module *bn = nn_batch_norm2d(nn_batch_norm_options_default(3));
    cr_assert_not_null(bn, "%s", torch_last_error());
    torch_generator g = torch_generator_new(7);
    tensor *x = torch_randn(&g, TORCH_SHAPE(4, 3, 2, 2));
    tensor *y = nn_module_forward(bn, x);
    cr_assert_not_null(y, "%s", torch_last_error());
    tensor *target = torch_randn(&g, TORCH_SHAPE(4, 3, 2, 2));
    tensor *diff = torch_sub(y, target);
    tensor *sq = torch_mul(diff, diff);
    tensor *loss = torch_mean(sq, 0, NULL, false);
    cr_assert_eq(tensor_backward(loss, NULL, false), TORCH_OK, "%s", torch_last_error());

    nn_tensor_dict *params = nn_module_named_parameters(bn);
    nn_tensor_dict *buffers = nn_module_named_buffers(bn);
    nn_tensor_dict *before = nn_tensor_dict_new();
    for (int64_t i = 0; i < params->count; i++) {
        tensor *c = tensor_clone(params->items[i].value);
        nn_tensor_dict_set(before, params->items[i].name, c);
        tensor_free(c);
    }
    for (int64_t i = 0; i < buffers->count; i++) {
        tensor *c = tensor_clone(buffers->items[i].value);
        nn_tensor_dict_set(before, buffers->items[i].name, c);
        tensor_free(c);
    }
    optim_sgd_options o = optim_sgd_options_default(0.1);
    o.momentum = 0.9;
    o.weight_decay = 1e-2;
    optim_optimizer *opt = optim_sgd(params, o);
    cr_assert_not_null(opt, "%s", torch_last_error());
    cr_assert_eq(optim_num_params(opt), 2);
    cr_assert_eq(optim_step(opt), TORCH_OK);
    for (int64_t i = 0; i < params->count; i++) {
        tensor *now = params->items[i].value, *old = nn_tensor_dict_get(before, params->items[i].name);
        cr_assert_neq(memcmp(tensor_data_f32(now), tensor_data_f32(old), (size_t)now->numel * sizeof(float)), 0,
                      "parameter %s did not move", params->items[i].name);
    }
    for (int64_t i = 0; i < buffers->count; i++) {
        tensor *now = buffers->items[i].value, *old = nn_tensor_dict_get(before, buffers->items[i].name);
        size_t es = torch_dtype_size(now->dtype);
        const void *a = now->dtype == TORCH_INT64 ? (void *)tensor_data_i64(now) : (void *)tensor_data_f32(now);
        const void *b = old->dtype == TORCH_INT64 ? (void *)tensor_data_i64(old) : (void *)tensor_data_f32(old);
        cr_assert_eq(memcmp(a, b, (size_t)now->numel * es), 0, "buffer %s changed", buffers->items[i].name);
    }
    optim_free(opt);
    nn_tensor_dict_free(before);
    nn_tensor_dict_free(params);
    nn_tensor_dict_free(buffers);
    tensor_free(loss);
    tensor_free(sq);
    tensor_free(diff);
    tensor_free(target);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(bn);
}

static nn_tensor_dict *one_param(tensor **out) {
    tensor *p = torch_zeros(TORCH_SHAPE(2));
    tensor_set_requires_grad(p, true);
    nn_tensor_dict *d = nn_tensor_dict_new();
    nn_tensor_dict_set(d, "w", p);
    *out = p;
    return d;
}

Test(sgd, pytorch_error_messages) {
    tensor *p;
    nn_tensor_dict *d = one_param(&p);
    struct {
        optim_sgd_options o;
        const char *msg;
    } cases[] = {
        {{.lr = -0.1}, "Invalid learning rate: -0.1"},
        {{.lr = NAN}, "Invalid learning rate: nan"},
        {{.lr = 0.1, .momentum = -1}, "Invalid momentum value: -1"},
        {{.lr = 0.1, .weight_decay = -1}, "Invalid weight_decay value: -1"},
        {{.lr = 0.1, .nesterov = true}, "Nesterov momentum requires a momentum and zero dampening"},
        {{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true},
         "Nesterov momentum requires a momentum and zero dampening"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        torch_clear_error();
        cr_assert_null(optim_sgd(d, cases[i].o));
        cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
        cr_assert_not_null(strstr(torch_last_error(), cases[i].msg), "got: %s", torch_last_error());
    }
    nn_tensor_dict *empty = nn_tensor_dict_new();
    cr_assert_null(optim_sgd(empty, optim_sgd_options_default(0.1)));
    cr_assert_not_null(strstr(torch_last_error(), "optimizer got an empty parameter list"));

    /* a non-leaf */
    tensor *q = torch_mul_scalar(p, 2.0);
    nn_tensor_dict *nl = nn_tensor_dict_new();
    nn_tensor_dict_set(nl, "q", q);
    cr_assert_null(optim_sgd(nl, optim_sgd_options_default(0.1)));
    cr_assert_not_null(strstr(torch_last_error(), "can't optimize a non-leaf Tensor"), "%s", torch_last_error());

    /* the same parameter in two groups; a refused group leaves the optimizer as it was */
    optim_optimizer *opt = optim_sgd(d, optim_sgd_options_default(0.1));
    cr_assert_not_null(opt);
    cr_assert_eq(optim_sgd_add_param_group(opt, d, optim_sgd_options_default(0.2)), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(torch_last_error(), "some parameters appear in more than one parameter group"));
    cr_assert_eq(optim_num_groups(opt), 1);
    cr_assert_eq(optim_num_params(opt), 1);
    cr_assert_eq(optim_set_lr(opt, 1, 0.1), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(torch_last_error(), "group 1 out of range"));
    cr_assert_eq(optim_set_lr(opt, 0, -1), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_eq(optim_get_lr(opt, 0), 0.1);
    cr_assert_eq(optim_set_lr(opt, 0, 0.25), TORCH_OK);
    cr_assert_eq(optim_get_lr(opt, 0), 0.25);

    /* a gradient of the wrong shape is refused before anything moves */
    p->grad = torch_ones(TORCH_SHAPE(3));
    cr_assert_eq(optim_step(opt), TORCH_ERR_SHAPE);
    cr_assert_not_null(strstr(torch_last_error(), "gradient of \"w\""), "%s", torch_last_error());
    cr_assert_eq(tensor_data_f32(p)[0], 0.0f);

    optim_free(opt);
    nn_tensor_dict_free(nl);
    tensor_free(q);
    nn_tensor_dict_free(empty);
    nn_tensor_dict_free(d);
    tensor_free(p);
}

Test(sgd, split_weight_decay_by_ndim_and_groups) {
    nn_tensor_dict *all = nn_tensor_dict_new();
    const char *names[] = {"0.weight", "1.weight", "1.bias", "3.weight", "3.bias"};
    int nd[] = {4, 1, 1, 2, 1};
    tensor *t[5];
    for (int i = 0; i < 5; i++) {
        int64_t shape[4] = {2, 1, 3, 3};
        t[i] = torch_ones(nd[i], nd[i] == 1 ? (int64_t[]){2} : nd[i] == 2 ? (int64_t[]){2, 3} : shape);
        tensor_set_requires_grad(t[i], true);
        nn_tensor_dict_set(all, names[i], t[i]);
    }
    nn_tensor_dict *decay, *no_decay;
    cr_assert_eq(optim_split_weight_decay(all, &decay, &no_decay), TORCH_OK);
    cr_assert_eq(decay->count, 2);
    cr_assert_str_eq(decay->items[0].name, "0.weight");
    cr_assert_str_eq(decay->items[1].name, "3.weight");
    cr_assert_eq(no_decay->count, 3);

    optim_sgd_options od = optim_sgd_options_default(0.5), on = od;
    od.weight_decay = 1.0;
    optim_optimizer *opt = optim_sgd(decay, od);
    cr_assert_eq(optim_sgd_add_param_group(opt, no_decay, on), TORCH_OK);
    /* zero gradients: only weight decay moves a parameter: 1 - 0.5 * (0 + 1 * 1) = 0.5 */
    for (int i = 0; i < 5; i++) t[i]->grad = torch_zeros_like(t[i]);
    cr_assert_eq(optim_step(opt), TORCH_OK);
    cr_assert_eq(tensor_data_f32(t[0])[0], 0.5f);
    cr_assert_eq(tensor_data_f32(t[3])[5], 0.5f);
    cr_assert_eq(tensor_data_f32(t[1])[0], 1.0f);
    cr_assert_eq(tensor_data_f32(t[4])[1], 1.0f);
    cr_assert_eq(optim_sgd_group_options(opt, 0).weight_decay, 1.0);
    cr_assert_eq(optim_sgd_group_options(opt, 1).weight_decay, 0.0);

    optim_free(opt);
    nn_tensor_dict_free(decay);
    nn_tensor_dict_free(no_decay);
    nn_tensor_dict_free(all);
    for (int i = 0; i < 5; i++) tensor_free(t[i]);
}

/* 3 steps, copy the state into a fresh optimizer over copies of the parameters, 7 more steps
 * each: bit-identical. Bad keys and shapes are refused by name, changing nothing. */
Test(sgd, state_dict_round_trip_continues_identically) {
    const sgd_fix_run *run = &sgd_fix_runs[0];
    tensor *a[SGD_FIX_NPARAMS], *b[SGD_FIX_NPARAMS];
    nn_tensor_dict *da, *db;
    make_params(a, &da);
    make_params(b, &db);
    optim_optimizer *oa = make_optimizer(run, a);
    for (int k = 0; k < 3; k++) {
        set_grads(a, k);
        cr_assert_eq(optim_step(oa), TORCH_OK);
    }
    bool grad_mode = torch_set_grad_enabled(false); /* parameters are written under no_grad */
    for (int i = 0; i < SGD_FIX_NPARAMS; i++) cr_assert_eq(tensor_copy_(b[i], a[i]), TORCH_OK);
    torch_set_grad_enabled(grad_mode);
    nn_tensor_dict *state = optim_state_dict(oa);
    cr_assert_not_null(state);
    cr_assert_eq(state->count, 2, "p2 had no gradient yet: no buffer");
    cr_assert_str_eq(state->items[0].name, "state.0.momentum_buffer");
    optim_optimizer *ob = make_optimizer(run, b);

    nn_tensor_dict *bad = nn_tensor_dict_new();
    nn_tensor_dict_set(bad, "state.7.momentum_buffer", state->items[0].value);
    cr_assert_eq(optim_load_state_dict(ob, bad), TORCH_ERR_KEY);
    cr_assert_not_null(strstr(torch_last_error(), "unexpected key \"state.7.momentum_buffer\""), "%s",
                       torch_last_error());
    nn_tensor_dict_free(bad);
    bad = nn_tensor_dict_new();
    nn_tensor_dict_set(bad, "state.1.momentum_buffer", state->items[0].value);
    cr_assert_eq(optim_load_state_dict(ob, bad), TORCH_ERR_KEY);
    cr_assert_not_null(strstr(torch_last_error(), "size mismatch for \"state.1.momentum_buffer\""), "%s",
                       torch_last_error());
    cr_assert_null(optim_state(ob, 0, "momentum_buffer"));
    nn_tensor_dict_free(bad);

    cr_assert_eq(optim_load_state_dict(ob, state), TORCH_OK, "%s", torch_last_error());
    cr_assert_neq(optim_state(ob, 0, "momentum_buffer"), optim_state(oa, 0, "momentum_buffer"), "copies, not shared");
    for (int k = 3; k < SGD_FIX_STEPS; k++) {
        set_grads(a, k);
        set_grads(b, k);
        cr_assert_eq(optim_step(oa), TORCH_OK);
        cr_assert_eq(optim_step(ob), TORCH_OK);
    }
    for (int i = 0; i < SGD_FIX_NPARAMS; i++)
        cr_assert_eq(memcmp(tensor_data_f32(a[i]), tensor_data_f32(b[i]), (size_t)a[i]->numel * sizeof(float)), 0);
    nn_tensor_dict_free(state);
    optim_free(oa);
    optim_free(ob);
    nn_tensor_dict_free(da);
    nn_tensor_dict_free(db);
    for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
        tensor_free(a[i]);
        tensor_free(b[i]);
    }
}

/* The step pre-hook runs before the update and sees the gradients; a hook that fails fails the
 * step with nothing moved. Hand-computed: p = 1, g = 2 halved by the hook, lr 0.5: p = 0.5. */
static torch_status halve_grads(optim_optimizer *opt, void *ctx) {
    int *calls = ctx;
    ++*calls;
    for (int64_t i = 0; i < optim_num_params(opt); i++) {
        tensor *g = optim_param(opt, i, NULL)->grad;
        for (int64_t k = 0; g && k < g->numel; k++) tensor_data_f32(g)[k] *= 0.5f;
    }
    return TORCH_OK;
}
static torch_status refuse(optim_optimizer *opt, void *ctx) {
    (void)opt, (void)ctx;
    return torch_error(TORCH_ERR_INVALID_STATE, "refuse: no");
}

Test(sgd, step_pre_hook_runs_first_and_can_refuse) {
    tensor *p = torch_ones(TORCH_SHAPE(2));
    cr_assert_eq(tensor_set_requires_grad(p, true), TORCH_OK);
    nn_tensor_dict *d = nn_tensor_dict_new();
    cr_assert_eq(nn_tensor_dict_set(d, "p", p), TORCH_OK);
    optim_optimizer *opt = optim_sgd(d, optim_sgd_options_default(0.5));
    p->grad = torch_full(TORCH_SHAPE(2), 2.0);
    int calls = 0;
    cr_assert_eq(optim_register_step_pre_hook(opt, halve_grads, &calls), TORCH_OK);
    cr_expect_eq(optim_register_step_pre_hook(opt, refuse, NULL), TORCH_ERR_INVALID_STATE);
    cr_expect(strstr(torch_last_error(), "SGD already has a step pre-hook"), "%s", torch_last_error());
    cr_assert_eq(optim_step(opt), TORCH_OK);
    cr_expect_eq(calls, 1);
    cr_expect_eq(tensor_data_f32(p)[0], 0.5f);
    cr_assert_eq(optim_register_step_pre_hook(opt, NULL, NULL), TORCH_OK);
    cr_assert_eq(optim_register_step_pre_hook(opt, refuse, NULL), TORCH_OK);
    cr_expect_eq(optim_step(opt), TORCH_ERR_INVALID_STATE);
    cr_expect_eq(tensor_data_f32(p)[0], 0.5f, "a refused step moved the parameter");
    cr_expect_eq(calls, 1);
    optim_free(opt);
    nn_tensor_dict_free(d);
    tensor_free(p);
}
