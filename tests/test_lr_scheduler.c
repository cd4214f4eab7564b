/* test_lr_scheduler.c — StepLR and CosineAnnealingLR against PyTorch 1.13 (fixture: the lr of two
 * groups after construction and after each of 20 epochs, including an lr changed from outside
 * mid-way, which the recursive form follows), closed forms, state round trip, errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/optim_lr_scheduler_fixture.h"
#include "optim/lr_scheduler.h"
#include "optim/sgd.h"

typedef struct fixture_case {
    const char *name;
    int kind; /* 0 step, 1 cosine */
    int64_t a;   /* step_size or T_max */
    double b;    /* gamma or eta_min */
    int poke_epoch;
    double poke_lr;
    const double *lrs, *closed;
} fixture_case;

static const fixture_case cases[LR_FIX_NSCHED] = {
    {"step", 0, 3, 0.5, 0, 0, lr_fix_step, lr_fix_step_closed},
    {"cosine7", 1, 7, 0.001, 0, 0, lr_fix_cosine7, lr_fix_cosine7_closed},
    {"cosine20", 1, 20, 0.0, 0, 0, lr_fix_cosine20, lr_fix_cosine20_closed},
    {"cosine_poke", 1, 10, 0.01, 5, 0.2, lr_fix_cosine_poke, lr_fix_cosine_poke_closed},
    {"step_poke", 0, 4, 0.3, 6, 0.07, lr_fix_step_poke, lr_fix_step_poke_closed},
};

typedef struct setup {
    tensor *p[2];
    optim_optimizer *opt;
} setup;

static setup make_setup(void) {
    setup s;
    for (int g = 0; g < 2; g++) {
        s.p[g] = torch_zeros(TORCH_SHAPE(2));
        tensor_set_requires_grad(s.p[g], true);
        nn_tensor_dict *d = nn_tensor_dict_new();
        nn_tensor_dict_set(d, "w", s.p[g]);
        if (g == 0)
            s.opt = optim_sgd_new(d, optim_sgd_options_default(lr_fix_base[0]));
        else
            cr_assert_eq(optim_sgd_add_param_group(s.opt, d, optim_sgd_options_default(lr_fix_base[1])), TORCH_OK);
        nn_tensor_dict_free(d);
    }
    cr_assert_not_null(s.opt);
    return s;
}

static void free_setup(setup *s) {
    optim_free(s->opt);
    tensor_free(s->p[0]);
    tensor_free(s->p[1]);
}

static optim_lr_scheduler *make_sched(const fixture_case *c, optim_optimizer *opt) {
    optim_lr_scheduler *s = c->kind == 0 ? optim_step_lr_new(opt, c->a, c->b) : optim_cosine_annealing_lr_new(opt, c->a, c->b);
    cr_assert_not_null(s, "%s", torch_last_error());
    return s;
}

static bool close_rel(double a, double b) { return fabs(a - b) <= 1e-12 * fmax(1.0, fabs(b)); }

Test(lr_scheduler, matches_pytorch_for_20_epochs) {
    double worst = 0;
    for (int ci = 0; ci < LR_FIX_NSCHED; ci++) {
        const fixture_case *c = &cases[ci];
        setup s = make_setup();
        optim_lr_scheduler *sched = make_sched(c, s.opt);
        for (int e = 0; e <= LR_FIX_EPOCHS; e++) {
            if (e > 0) {
                if (c->poke_epoch == e) cr_assert_eq(optim_set_lr(s.opt, 0, c->poke_lr), TORCH_OK);
                cr_assert_eq(optim_lr_scheduler_step(sched), TORCH_OK);
            }
            cr_assert_eq(optim_lr_scheduler_last_epoch(sched), e);
            for (int g = 0; g < 2; g++) {
                double got = optim_get_lr(s.opt, g), want = c->lrs[2 * e + g];
                worst = fmax(worst, fabs(got - want));
                cr_assert(close_rel(got, want), "%s epoch %d group %d: lr %.17g, PyTorch %.17g", c->name, e, g, got,
                          want);
                cr_assert_eq(optim_lr_scheduler_get_last_lr(sched, g), got);
                double cf = optim_lr_scheduler_closed_form_lr(sched, g), cwant = c->closed[2 * e + g];
                cr_assert(close_rel(cf, cwant), "%s epoch %d group %d: closed form %.17g, PyTorch %.17g", c->name, e,
                          g, cf, cwant);
            }
        }
        optim_lr_scheduler_free(sched);
        free_setup(&s);
    }
    cr_log_info("lr_scheduler: max |ctorch - PyTorch| lr over 5 schedules x 21 epochs: %.3g", worst);
}

/* Hand-checked anchors of the same schedules. */
Test(lr_scheduler, hand_values) {
    setup s = make_setup();
    optim_lr_scheduler *st = optim_step_lr_new(s.opt, 3, 0.5);
    for (int e = 0; e < 6; e++) optim_lr_scheduler_step(st);
    /* epoch 6: two decays */
    cr_assert(fabs(optim_get_lr(s.opt, 0) - 0.025) < 1e-15);
    optim_lr_scheduler_free(st);
    free_setup(&s);

    s = make_setup();
    optim_lr_scheduler *cs = optim_cosine_annealing_lr_new(s.opt, 20, 0.0);
    for (int e = 0; e < 10; e++) optim_lr_scheduler_step(cs);
    /* halfway: (1 + cos(pi/2)) / 2 = 0.5 of the base */
    cr_assert(fabs(optim_get_lr(s.opt, 0) - 0.05) < 1e-12);
    for (int e = 10; e < 20; e++) optim_lr_scheduler_step(cs);
    cr_assert(fabs(optim_get_lr(s.opt, 1)) < 1e-12);
    optim_lr_scheduler_free(cs);
    free_setup(&s);
}

/* Saving the state after 6 epochs and restoring it into a new scheduler (and the optimizer's
 * lrs) continues exactly as an uninterrupted run. */
Test(lr_scheduler, state_round_trip) {
    setup a = make_setup(), b = make_setup();
    optim_lr_scheduler *sa = optim_cosine_annealing_lr_new(a.opt, 7, 0.001);
    for (int e = 0; e < 6; e++) optim_lr_scheduler_step(sa);
    optim_lr_scheduler *sb = optim_cosine_annealing_lr_new(b.opt, 7, 0.001);
    char *st = optim_lr_scheduler_state_json(sa);
    cr_assert_not_null(st);
    cr_assert_not_null(strstr(st, "\"last_epoch\":6"), "%s", st);
    cr_assert_not_null(strstr(st, "\"step_count\":7"), "%s", st);
    cr_assert_eq(optim_lr_scheduler_load_state_json(sb, st), TORCH_OK, "%s", torch_last_error());
    free(st);
    for (int g = 0; g < 2; g++) optim_set_lr(b.opt, g, optim_get_lr(a.opt, g));
    for (int e = 6; e < 20; e++) {
        optim_lr_scheduler_step(sa);
        optim_lr_scheduler_step(sb);
        for (int g = 0; g < 2; g++) cr_assert_eq(optim_get_lr(a.opt, g), optim_get_lr(b.opt, g));
    }
    /* a state of another kind is refused and changes nothing */
    optim_lr_scheduler *other = optim_step_lr_new(b.opt, 2, 0.1);
    char *so = optim_lr_scheduler_state_json(other);
    cr_assert_eq(optim_lr_scheduler_load_state_json(sb, so), TORCH_ERR_KEY);
    cr_assert_not_null(strstr(torch_last_error(), "scheduler is a StepLR, this scheduler is a CosineAnnealingLR"), "%s",
                       torch_last_error());
    free(so);
    cr_assert_eq(optim_lr_scheduler_last_epoch(sb), 20);
    optim_lr_scheduler_free(other);
    optim_lr_scheduler_free(sa);
    optim_lr_scheduler_free(sb);
    free_setup(&a);
    free_setup(&b);
}

Test(lr_scheduler, errors) {
    setup s = make_setup();
    cr_assert_null(optim_step_lr_new(s.opt, 0, 0.1));
    cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(torch_last_error(), "StepLR: step_size must be positive (got 0)"));
    cr_assert_null(optim_cosine_annealing_lr_new(s.opt, -3, 0));
    cr_assert_not_null(strstr(torch_last_error(), "CosineAnnealingLR: T_max must be positive (got -3)"));
    cr_assert_null(optim_cosine_annealing_lr_new(NULL, 3, 0));
    cr_assert_not_null(strstr(torch_last_error(), "optimizer is NULL"));
    cr_assert_null(optim_step_lr_new(s.opt, 2, NAN));
    cr_assert_not_null(strstr(torch_last_error(), "gamma"));

    /* a group added after the scheduler was made: refused, lrs unchanged */
    optim_lr_scheduler *sched = optim_step_lr_new(s.opt, 1, 0.5);
    tensor *q = torch_zeros(TORCH_SHAPE(1));
    tensor_set_requires_grad(q, true);
    nn_tensor_dict *d = nn_tensor_dict_new();
    nn_tensor_dict_set(d, "q", q);
    optim_sgd_add_param_group(s.opt, d, optim_sgd_options_default(0.3));
    cr_assert_eq(optim_lr_scheduler_step(sched), TORCH_ERR_INVALID_STATE);
    cr_assert_not_null(strstr(torch_last_error(), "the optimizer has 3 parameter groups, the scheduler was made for 2"));
    cr_assert_eq(optim_get_lr(s.opt, 0), lr_fix_base[0]);
    cr_assert_eq(optim_lr_scheduler_last_epoch(sched), 0);
    optim_lr_scheduler_free(sched);
    nn_tensor_dict_free(d);
    tensor_free(q);
    free_setup(&s);
}
