/* test_adam.c — Adam and AdamW against torch.optim (PyTorch 1.13 fixture: 10 steps for every
 * combination of amsgrad, weight decay and maximize, and two parameter groups; one parameter
 * without a gradient for the first 3 steps), hand-computed steps, PyTorch's defaults and error
 * messages, and state dicts: keys, round trips, and refusals that change nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "fixtures/optim_adam_fixture.h"
#include "fixtures/optim_sgd_fixture.h"
#include "optim/adam.h"
#include "optim/sgd.h"

/* The fixture's parameters (shapes of the SGD fixture, values of the Adam one) in a dict. */
static void make_params(tensor *params[SGD_FIX_NPARAMS], nn_tensor_dict **dict) {
    *dict = nn_tensor_dict_new();
    for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
        params[i] = torch_tensor(adam_fix_init + sgd_fix_offset[i], sgd_fix_ndim[i], sgd_fix_shape[i]);
        cr_assert_not_null(params[i]);
        cr_assert_eq(tensor_set_requires_grad(params[i], true), TORCH_OK);
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        cr_assert_eq(nn_tensor_dict_set(*dict, name, params[i]), TORCH_OK);
    }
}

static void free_params(tensor *params[SGD_FIX_NPARAMS], nn_tensor_dict *dict) {
    nn_tensor_dict_free(dict);
    for (int i = 0; i < SGD_FIX_NPARAMS; i++) tensor_free(params[i]);
}

static void set_grads(tensor *params[SGD_FIX_NPARAMS], int k) {
    for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
        tensor_zero_grad(params[i]);
        if (sgd_fix_has_grad[k][i])
            params[i]->grad = torch_tensor(adam_fix_grads + k * SGD_FIX_TOTAL + sgd_fix_offset[i], sgd_fix_ndim[i],
                                           sgd_fix_shape[i]);
    }
}

static optim_adam_options run_options(const adam_fix_group *g) {
    return (optim_adam_options){.lr = g->lr, .betas = {g->beta1, g->beta2}, .eps = g->eps,
                                .weight_decay = g->weight_decay, .amsgrad = g->amsgrad, .maximize = g->maximize};
}

static optim_optimizer *make_optimizer(const adam_fix_run *run, tensor *params[SGD_FIX_NPARAMS]) {
    optim_optimizer *opt = NULL;
    for (int gi = 0; gi < run->ngroups; gi++) {
        const adam_fix_group *g = &run->groups[gi];
        nn_tensor_dict *d = nn_tensor_dict_new();
        for (int i = g->first; i < g->first + g->count; i++) {
            char name[16];
            snprintf(name, sizeof name, "p%d", i);
            cr_assert_eq(nn_tensor_dict_set(d, name, params[i]), TORCH_OK);
        }
        if (gi == 0)
            opt = run->adamw ? optim_adamw(d, run_options(g)) : optim_adam(d, run_options(g));
        else
            cr_assert_eq(optim_adam_add_param_group(opt, d, run_options(g)), TORCH_OK, "%s", torch_last_error());
        cr_assert_not_null(opt, "%s", torch_last_error());
        nn_tensor_dict_free(d);
    }
    return opt;
}

/* |a - b| in units of b's last place (float). */
static double ulps(float a, float b) {
    if (a == b) return 0;
    return fabs((double)a - (double)b) / fmax(ldexp(1.0, ilogb(b) - 23), 1e-45);
}

/* Within 1e-6 relative (1e-12 absolute near zero), as the issue asks. */
static bool close(float a, float b) { return fabs((double)a - (double)b) <= 1e-6 * fabs((double)b) + 1e-12; }

Test(adam, matches_pytorch_fixture_every_option) {
    double worst_ulps = 0;
    int64_t differing = 0, compared = 0;
    for (int r = 0; r < ADAM_FIX_NRUNS; r++) {
        const adam_fix_run *run = &adam_fix_runs[r];
        tensor *params[SGD_FIX_NPARAMS];
        nn_tensor_dict *dict;
        make_params(params, &dict);
        optim_optimizer *opt = make_optimizer(run, params);
        cr_assert_str_eq(optim_name(opt), run->adamw ? "AdamW" : "Adam");
        for (int k = 0; k < ADAM_FIX_STEPS; k++) {
            set_grads(params, k);
            cr_assert_eq(optim_step(opt), TORCH_OK, "%s", torch_last_error());
            for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
                const float *p = tensor_data_f32(params[i]), *e = run->expect + k * SGD_FIX_TOTAL + sgd_fix_offset[i];
                for (int64_t j = 0; j < params[i]->numel; j++) {
                    worst_ulps = fmax(worst_ulps, ulps(p[j], e[j]));
                    differing += p[j] != e[j];
                    compared++;
                    cr_assert(close(p[j], e[j]), "%s step %d p%d[%lld]: %.9g, PyTorch %.9g", run->name, k, i,
                              (long long)j, p[j], e[j]);
                }
            }
        }
        /* Every state tensor: present exactly where PyTorch has it, equal values. */
        static const char *const keys[3] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
        for (int i = 0; i < SGD_FIX_NPARAMS; i++) {
            bool stepped = run->steps[i] > 0;
            bool ams = run->groups[i < run->groups[0].count ? 0 : 1].amsgrad;
            tensor *step = optim_state(opt, i, "step");
            cr_assert_eq(step != NULL, stepped, "%s p%d: step presence", run->name, i);
            if (!stepped) continue;
            cr_assert_eq(step->ndim, 0, "step is a scalar, as torch.tensor(0.)");
            cr_assert_eq(tensor_data_f32(step)[0], run->steps[i], "%s p%d step", run->name, i);
            for (int s = 0; s < 3; s++) {
                tensor *t = optim_state(opt, i, keys[s]);
                cr_assert_eq(t != NULL, s < 2 || ams, "%s p%d: %s presence", run->name, i, keys[s]);
                if (!t) continue;
                const float *e = run->state + s * SGD_FIX_TOTAL + sgd_fix_offset[i];
                for (int64_t j = 0; j < t->numel; j++) {
                    float v = tensor_data_f32(t)[j];
                    worst_ulps = fmax(worst_ulps, ulps(v, e[j]));
                    differing += v != e[j];
                    compared++;
                    cr_assert(close(v, e[j]), "%s p%d %s[%lld]: %.9g, PyTorch %.9g", run->name, i, keys[s],
                              (long long)j, v, e[j]);
                }
            }
        }
        optim_free(opt);
        free_params(params, dict);
    }
    cr_log_info("adam: %d runs x %d steps: %lld of %lld values differ from PyTorch's, by at most %.3g ulp",
                ADAM_FIX_NRUNS, ADAM_FIX_STEPS, (long long)differing, (long long)compared, worst_ulps);
}

/* One parameter p = 1 with gradient 2, betas (0.5, 0.75), lr 0.5, eps 0, so that every number is
 * exact in binary:
 *   step 1: m = 0.5 * 2 = 1, v = 0.25 * 4 = 1, bias corrections 1 - 0.5 = 0.5 and
 *           sqrt(1 - 0.75) = 0.5: p = 1 - (0.5 / 0.5) * 1 / (sqrt(1) / 0.5) = 1 - 0.5 = 0.5
 *   step 2: m = 0.5 + 1 = 1.5, v = 0.75 + 1 = 1.75, corrections 0.75 and sqrt(0.4375):
 *           p = 0.5 - (0.5 / 0.75) * 1.5 / (sqrt(1.75) / sqrt(0.4375)) = 0.5 - 1 / 2 = 0
 * AdamW with weight_decay 0.5 first scales p by 1 - 0.5 * 0.5 = 0.75: step 1 gives
 * 0.75 - 0.5 = 0.25; Adam with weight_decay 0.5 adds 0.5 * p to g (2.5: m = 1.25, v = 1.5625,
 * p = 1 - 1 * 1.25 / 2.5 = 0.5 again: one step of Adam is sign-like). */
static float two_steps(bool adamw, double wd, int steps) {
    tensor *p = torch_full(TORCH_SHAPE(1), 1.0f);
    tensor_set_requires_grad(p, true);
    nn_tensor_dict *d = nn_tensor_dict_new();
    nn_tensor_dict_set(d, "w", p);
    optim_adam_options o = {.lr = 0.5, .betas = {0.5, 0.75}, .eps = 0, .weight_decay = wd};
    optim_optimizer *opt = adamw ? optim_adamw(d, o) : optim_adam(d, o);
    cr_assert_not_null(opt, "%s", torch_last_error());
    for (int k = 0; k < steps; k++) {
        tensor_zero_grad(p);
        p->grad = torch_full(TORCH_SHAPE(1), 2.0f);
        cr_assert_eq(optim_step(opt), TORCH_OK);
    }
    float v = tensor_data_f32(p)[0];
    optim_free(opt);
    nn_tensor_dict_free(d);
    tensor_free(p);
    return v;
}

Test(adam, hand_computed_steps) {
    cr_assert_eq(two_steps(false, 0, 1), 0.5f);
    cr_assert_float_eq(two_steps(false, 0, 2), 0.0f, 1e-7);
    cr_assert_eq(two_steps(true, 0.5, 1), 0.25f);
    cr_assert_eq(two_steps(false, 0.5, 1), 0.5f);
}

Test(adam, pytorch_defaults) {
    optim_adam_options a = optim_adam_options_default(), w = optim_adamw_options_default();
    cr_assert(a.lr == 1e-3 && a.betas[0] == 0.9 && a.betas[1] == 0.999 && a.eps == 1e-8 && a.weight_decay == 0);
    cr_assert(!a.amsgrad && !a.maximize);
    cr_assert(w.lr == 1e-3 && w.betas[0] == 0.9 && w.betas[1] == 0.999 && w.eps == 1e-8 && w.weight_decay == 1e-2);
    optim_adam_options m = OPTIM_ADAMW_OPTIONS(.amsgrad = true);
    cr_assert(m.weight_decay == 1e-2 && m.amsgrad && m.betas[1] == 0.999);
    cr_assert(OPTIM_ADAM_OPTIONS(.lr = 0.1).lr == 0.1);
}

static void expect_error(torch_status got, torch_status want, const char *msg) {
    cr_assert_eq(got, want, "status %d, wanted %d (%s)", got, want, torch_last_error());
    cr_assert_not_null(strstr(torch_last_error(), msg), "\"%s\" does not contain \"%s\"", torch_last_error(), msg);
}

Test(adam, bad_options_are_refused_with_pytorchs_messages) {
    tensor *params[SGD_FIX_NPARAMS];
    nn_tensor_dict *dict;
    make_params(params, &dict);
    struct {
        optim_adam_options o;
        const char *msg;
    } bad[] = {
        {OPTIM_ADAM_OPTIONS(.lr = -1), "optim_adam: Invalid learning rate: -1"},
        {OPTIM_ADAM_OPTIONS(.lr = NAN), "Invalid learning rate: nan"},
        {OPTIM_ADAM_OPTIONS(.eps = -1e-8), "Invalid epsilon value: -1e-08"},
        {OPTIM_ADAM_OPTIONS(.betas = {1.0, 0.999}), "Invalid beta parameter at index 0: 1"},
        {OPTIM_ADAM_OPTIONS(.betas = {0.9, -0.1}), "Invalid beta parameter at index 1: -0.1"},
        {OPTIM_ADAM_OPTIONS(.betas = {0.9, NAN}), "Invalid beta parameter at index 1: nan"},
        {OPTIM_ADAM_OPTIONS(.weight_decay = -0.01), "Invalid weight_decay value: -0.01"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_null(optim_adam(dict, bad[i].o));
        expect_error(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT, bad[i].msg);
    }
    cr_assert_null(optim_adamw(dict, OPTIM_ADAMW_OPTIONS(.eps = -1)));
    expect_error(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT, "optim_adamw: Invalid epsilon value: -1");

    /* On an optimizer: refused, and the options stay as they were. */
    optim_optimizer *opt = optim_adamw(dict, OPTIM_ADAMW_OPTIONS(.lr = 0.01));
    cr_assert_not_null(opt);
    expect_error(optim_adam_set_group_options(opt, 0, OPTIM_ADAMW_OPTIONS(.betas = {0.9, 1.5})),
                 TORCH_ERR_INVALID_ARGUMENT, "optim_adam_set_group_options: Invalid beta parameter at index 1: 1.5");
    cr_assert_eq(optim_adam_group_options(opt, 0).betas[1], 0.999);
    expect_error(optim_adam_set_group_options(opt, 1, OPTIM_ADAMW_OPTIONS()), TORCH_ERR_INVALID_ARGUMENT,
                 "group 1 out of range (1 groups)");
    expect_error(optim_set_lr(opt, 0, -0.5), TORCH_ERR_INVALID_ARGUMENT, "optim_set_lr: Invalid learning rate: -0.5");
    cr_assert_eq(optim_get_lr(opt, 0), 0.01);
    /* a parameter listed twice, or already in a group */
    nn_tensor_dict *twice = nn_tensor_dict_new();
    nn_tensor_dict_set(twice, "a", params[0]);
    nn_tensor_dict_set(twice, "b", params[0]);
    cr_assert_null(optim_adam(twice, OPTIM_ADAM_OPTIONS()));
    expect_error(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT, "duplicate parameters (\"b\")");
    expect_error(optim_adam_add_param_group(opt, twice, OPTIM_ADAMW_OPTIONS()), TORCH_ERR_INVALID_ARGUMENT,
                 "some parameters appear in more than one parameter group (\"a\")");
    cr_assert_eq(optim_num_groups(opt), 1);
    cr_assert_eq(optim_num_params(opt), SGD_FIX_NPARAMS);
    /* typed functions of another optimizer */
    expect_error(optim_sgd_set_group_options(opt, 0, optim_sgd_options_default(0.1)), TORCH_ERR_INVALID_ARGUMENT,
                 "optim_sgd_set_group_options: the optimizer is AdamW, not SGD");
    optim_sgd_options zero = optim_sgd_group_options(opt, 0);
    cr_assert_eq(zero.lr, 0);
    expect_error(optim_sgd_add_param_group(opt, twice, optim_sgd_options_default(0.1)), TORCH_ERR_INVALID_ARGUMENT,
                 "the optimizer is AdamW, not SGD");
    nn_tensor_dict_free(twice);
    optim_free(opt);
    free_params(params, dict);
}

/* Three steps of every run's optimizer, its state dict, and the state dict's keys. */
static optim_optimizer *stepped(const adam_fix_run *run, tensor *params[SGD_FIX_NPARAMS], int steps) {
    optim_optimizer *opt = make_optimizer(run, params);
    for (int k = 0; k < steps; k++) {
        set_grads(params, k);
        cr_assert_eq(optim_step(opt), TORCH_OK);
    }
    return opt;
}

static const adam_fix_run *find_run(const char *name) {
    for (int r = 0; r < ADAM_FIX_NRUNS; r++)
        if (!strcmp(adam_fix_runs[r].name, name)) return &adam_fix_runs[r];
    cr_assert_fail("no run %s", name);
    return NULL;
}

Test(adam, state_dict_keys_and_round_trip) {
    const adam_fix_run *run = find_run("adamw_ams_wd");
    tensor *pa[SGD_FIX_NPARAMS], *pb[SGD_FIX_NPARAMS];
    nn_tensor_dict *da, *db;
    make_params(pa, &da);
    make_params(pb, &db);
    optim_optimizer *a = stepped(run, pa, 5), *b = make_optimizer(run, pb);
    nn_tensor_dict *sd = optim_state_dict(a);
    cr_assert_not_null(sd);
    /* p2 had no gradient at steps 0-2: two steps of state; PyTorch's keys and order */
    static const char *const want[] = {"state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq",
                                       "state.0.max_exp_avg_sq", "state.1.step", "state.1.exp_avg",
                                       "state.1.exp_avg_sq", "state.1.max_exp_avg_sq", "state.2.step",
                                       "state.2.exp_avg", "state.2.exp_avg_sq", "state.2.max_exp_avg_sq"};
    cr_assert_eq(sd->count, 12);
    for (int i = 0; i < 12; i++) cr_assert_str_eq(sd->items[i].name, want[i]);
    cr_assert_eq(tensor_data_f32(nn_tensor_dict_get(sd, "state.0.step"))[0], 5.0f);
    cr_assert_eq(tensor_data_f32(nn_tensor_dict_get(sd, "state.2.step"))[0], 2.0f);
    /* loading into b and copying the parameters: b continues exactly as a */
    cr_assert_eq(optim_load_state_dict(b, sd), TORCH_OK, "%s", torch_last_error());
    cr_assert_neq(optim_state(b, 0, "exp_avg"), optim_state(a, 0, "exp_avg"), "copies, not shared");
    for (int i = 0; i < SGD_FIX_NPARAMS; i++)
        memcpy(tensor_data_f32(pb[i]), tensor_data_f32(pa[i]), (size_t)pa[i]->numel * sizeof(float));
    for (int k = 5; k < ADAM_FIX_STEPS; k++) {
        set_grads(pa, k);
        set_grads(pb, k);
        cr_assert_eq(optim_step(a), TORCH_OK);
        cr_assert_eq(optim_step(b), TORCH_OK);
    }
    for (int i = 0; i < SGD_FIX_NPARAMS; i++)
        cr_assert_eq(memcmp(tensor_data_f32(pa[i]), tensor_data_f32(pb[i]), (size_t)pa[i]->numel * sizeof(float)), 0);
    nn_tensor_dict_free(sd);
    optim_free(a);
    optim_free(b);
    free_params(pa, da);
    free_params(pb, db);
}

/* Every refused load leaves the state as it was: same tensors, same values. */
Test(adam, bad_state_dicts_are_refused_and_change_nothing) {
    const adam_fix_run *run = find_run("adam_ams");
    tensor *params[SGD_FIX_NPARAMS];
    nn_tensor_dict *dict;
    make_params(params, &dict);
    optim_optimizer *opt = stepped(run, params, 4);
    nn_tensor_dict *good = optim_state_dict(opt);
    tensor *before = optim_state(opt, 0, "exp_avg");
    float v0 = tensor_data_f32(before)[0];

    tensor *wrong_shape = torch_zeros(TORCH_SHAPE(4, 3)), *scalar = torch_full(0, NULL, 2.5f);
    tensor *negative = torch_full(0, NULL, -1.0f), *sgd_buf = torch_zeros(TORCH_SHAPE(3, 4));
    struct {
        const char *key;   /* replaced or added */
        tensor *value;     /* NULL: the key is removed */
        torch_status status;
        const char *msg;
    } cases[] = {
        {"state.0.momentum_buffer", sgd_buf, TORCH_ERR_KEY,
         "unexpected key \"state.0.momentum_buffer\": Adam keeps no \"momentum_buffer\" (its state is step, exp_avg, "
         "exp_avg_sq, max_exp_avg_sq); is this the state of another optimizer?"},
        {"state.0.exp_avg", wrong_shape, TORCH_ERR_KEY,
         "size mismatch for \"state.0.exp_avg\": got float32 [4, 3], expected float32 [3, 4] (parameter \"p0\")"},
        {"state.0.step", wrong_shape, TORCH_ERR_KEY, "expected float32 [] (a scalar for \"p0\")"},
        {"state.0.step", scalar, TORCH_ERR_KEY, "\"state.0.step\" is 2.5 (expected a whole number"},
        {"state.1.step", negative, TORCH_ERR_KEY, "\"state.1.step\" is -1 (expected a whole number"},
        {"state.0.exp_avg_sq", NULL, TORCH_ERR_KEY,
         "missing key \"state.0.exp_avg_sq\" (parameter \"p0\" has other state"},
        {"state.1.max_exp_avg_sq", NULL, TORCH_ERR_KEY, "missing key \"state.1.max_exp_avg_sq\""},
        {"state.3.step", scalar, TORCH_ERR_KEY, "unexpected key \"state.3.step\" (the optimizer has 3 parameters)"},
        {"state.01.step", scalar, TORCH_ERR_KEY, "unexpected key \"state.01.step\" (expected state.<index>.<name>)"},
        {"exp_avg", scalar, TORCH_ERR_KEY, "unexpected key \"exp_avg\""},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nn_tensor_dict *d = nn_tensor_dict_new();
        for (int64_t i = 0; i < good->count; i++)
            if (strcmp(good->items[i].name, cases[c].key) != 0)
                nn_tensor_dict_set(d, good->items[i].name, good->items[i].value);
        if (cases[c].value) nn_tensor_dict_set(d, cases[c].key, cases[c].value);
        expect_error(optim_load_state_dict(opt, d), cases[c].status, cases[c].msg);
        cr_assert_eq(optim_state(opt, 0, "exp_avg"), before, "case %zu: state replaced", c);
        cr_assert_eq(tensor_data_f32(before)[0], v0);
        cr_assert_eq(tensor_data_f32(optim_state(opt, 0, "step"))[0], 4.0f);
        nn_tensor_dict_free(d);
    }
    /* an empty state dict is valid: no parameter has state, as before a first step */
    nn_tensor_dict *empty = nn_tensor_dict_new();
    cr_assert_eq(optim_load_state_dict(opt, empty), TORCH_OK);
    cr_assert_null(optim_state(opt, 0, "step"));
    nn_tensor_dict_free(empty);
    tensor_free(wrong_shape);
    tensor_free(scalar);
    tensor_free(negative);
    tensor_free(sgd_buf);
    nn_tensor_dict_free(good);
    optim_free(opt);
    free_params(params, dict);
}

/* A step never half-happens: a bad gradient is found before any parameter moves. */
Test(adam, bad_gradient_moves_nothing) {
    tensor *params[SGD_FIX_NPARAMS];
    nn_tensor_dict *dict;
    make_params(params, &dict);
    optim_optimizer *opt = optim_adam(dict, OPTIM_ADAM_OPTIONS());
    set_grads(params, 5);
    tensor_free(params[2]->grad);
    params[2]->grad = torch_zeros(TORCH_SHAPE(12));
    expect_error(optim_step(opt), TORCH_ERR_SHAPE, "optim_step (Adam): gradient of \"p2\" is float32 [12], parameter is [2, 3, 2]");
    cr_assert_eq(memcmp(tensor_data_f32(params[0]), adam_fix_init, 12 * sizeof(float)), 0);
    cr_assert_null(optim_state(opt, 0, "step"));
    optim_free(opt);
    free_params(params, dict);
}
