/* test_lr_scheduler.c — StepLR and CosineAnnealingLR against PyTorch 1.13 (fixture: the lr of two
 * groups after construction and after each of 20 epochs, including an lr changed from outside
 * mid-way, which the recursive form follows), closed forms, state round trip, errors; LinearLR
 * and SequentialLR (warm-up, then cosine or step) against the same kind of fixture, hand values,
 * their construction errors and ownership, and their state JSON (exact resume, refusals). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

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
            s.opt = optim_sgd(d, optim_sgd_options_default(lr_fix_base[0]));
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
    optim_lr_scheduler *s = c->kind == 0 ? optim_step_lr(opt, c->a, c->b) : optim_cosine_annealing_lr(opt, c->a, c->b);
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
    optim_lr_scheduler *st = optim_step_lr(s.opt, 3, 0.5);
    for (int e = 0; e < 6; e++) optim_lr_scheduler_step(st);
    /* epoch 6: two decays */
    cr_assert(fabs(optim_get_lr(s.opt, 0) - 0.025) < 1e-15);
    optim_lr_scheduler_free(st);
    free_setup(&s);

    s = make_setup();
    optim_lr_scheduler *cs = optim_cosine_annealing_lr(s.opt, 20, 0.0);
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
    optim_lr_scheduler *sa = optim_cosine_annealing_lr(a.opt, 7, 0.001);
    for (int e = 0; e < 6; e++) optim_lr_scheduler_step(sa);
    optim_lr_scheduler *sb = optim_cosine_annealing_lr(b.opt, 7, 0.001);
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
    optim_lr_scheduler *other = optim_step_lr(b.opt, 2, 0.1);
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
    cr_assert_null(optim_step_lr(s.opt, 0, 0.1));
    cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(torch_last_error(), "StepLR: step_size must be positive (got 0)"));
    cr_assert_null(optim_cosine_annealing_lr(s.opt, -3, 0));
    cr_assert_not_null(strstr(torch_last_error(), "CosineAnnealingLR: T_max must be positive (got -3)"));
    cr_assert_null(optim_cosine_annealing_lr(NULL, 3, 0));
    cr_assert_not_null(strstr(torch_last_error(), "optimizer is NULL"));
    cr_assert_null(optim_step_lr(s.opt, 2, NAN));
    cr_assert_not_null(strstr(torch_last_error(), "gamma"));

    /* a group added after the scheduler was made: refused, lrs unchanged */
    optim_lr_scheduler *sched = optim_step_lr(s.opt, 1, 0.5);
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

/* ---- LinearLR and SequentialLR ------------------------------------------------------------------ */

/* One schedule of a warm-up case: StepLR(n, x), CosineAnnealingLR(n, x) or LinearLR(x, y, n). */
typedef struct sched_spec {
    optim_lr_scheduler_kind kind;
    double x, y;
    int64_t n;
} sched_spec;

/* A case of the generator's WARMUP_SCHEDULES: a LinearLR alone (nkids 1, not sequential) or a
 * SequentialLR of nkids schedules, built in this order on the same optimizer. */
typedef struct warmup_case {
    const char *name;
    bool sequential;
    int nkids;
    sched_spec kids[3];
    int64_t milestones[2];
    const double *lrs;
} warmup_case;

#define LIN(s, e, N) {OPTIM_LR_LINEAR, (s), (e), (N)}
#define COS(T, eta) {OPTIM_LR_COSINE_ANNEALING, (eta), 0, (T)}
#define STEP(k, gamma) {OPTIM_LR_STEP, (gamma), 0, (k)}

static const warmup_case warmup_cases[LR_FIX_NWARMUP] = {
    {"linear", false, 1, {LIN(0.25, 1.0, 4)}, {0}, lr_fix_linear},
    /* LinearLR(o): PyTorch's defaults start_factor 1/3, end_factor 1, total_iters 5 */
    {"linear_default", false, 1, {LIN(1.0 / 3, 1.0, 5)}, {0}, lr_fix_linear_default},
    {"linear_decay", false, 1, {LIN(1.0, 0.1, 8)}, {0}, lr_fix_linear_decay},
    {"warmup_cosine", true, 2, {LIN(0.01, 1.0, 3), COS(17, 0.0)}, {3}, lr_fix_warmup_cosine},
    {"warmup_step", true, 2, {LIN(0.1, 1.0, 5), STEP(4, 0.5)}, {5}, lr_fix_warmup_step},
    {"three", true, 3, {LIN(0.5, 1.0, 2), STEP(3, 0.5), COS(6, 0.001)}, {4, 10}, lr_fix_three},
};

static optim_lr_scheduler *make_spec(const sched_spec *k, optim_optimizer *opt) {
    optim_lr_scheduler *s = k->kind == OPTIM_LR_STEP               ? optim_step_lr(opt, k->n, k->x)
                            : k->kind == OPTIM_LR_COSINE_ANNEALING ? optim_cosine_annealing_lr(opt, k->n, k->x)
                                                                   : optim_linear_lr(opt, k->x, k->y, k->n);
    cr_assert_not_null(s, "%s", torch_last_error());
    return s;
}

/* Builds the case as the generator does; kids (if not NULL) receives the schedules, borrowed
 * from the SequentialLR that owns them. */
static optim_lr_scheduler *make_warmup(const warmup_case *c, optim_optimizer *opt, optim_lr_scheduler **kids) {
    optim_lr_scheduler *k[3];
    for (int i = 0; i < c->nkids; i++) {
        k[i] = make_spec(&c->kids[i], opt);
        if (kids) kids[i] = k[i];
    }
    if (!c->sequential) return k[0];
    optim_lr_scheduler *s = optim_sequential_lr(opt, k, c->nkids, c->milestones);
    cr_assert_not_null(s, "%s: %s", c->name, torch_last_error());
    return s;
}

/* LinearLR's closed form, base_lr * (s + (e - s) * min(N, t) / N), written out here. */
static double linear_closed(double base, const sched_spec *k, int64_t t) {
    double m = (double)(t < k->n ? t : k->n);
    return base * (k->x + (k->y - k->x) * m / (double)k->n);
}

Test(lr_scheduler, warmup_matches_pytorch_for_20_epochs) {
    double worst = 0, worst_closed = 0;
    for (int ci = 0; ci < LR_FIX_NWARMUP; ci++) {
        const warmup_case *c = &warmup_cases[ci];
        setup s = make_setup();
        optim_lr_scheduler *kids[3];
        optim_lr_scheduler *sched = make_warmup(c, s.opt, kids);
        cr_assert_eq(optim_lr_scheduler_type(sched), c->sequential ? OPTIM_LR_SEQUENTIAL : OPTIM_LR_LINEAR);
        for (int e = 0; e <= LR_FIX_EPOCHS; e++) {
            if (e > 0) cr_assert_eq(optim_lr_scheduler_step(sched), TORCH_OK, "%s", torch_last_error());
            cr_assert_eq(optim_lr_scheduler_last_epoch(sched), e);
            for (int g = 0; g < 2; g++) {
                double got = optim_get_lr(s.opt, g), want = c->lrs[2 * e + g];
                worst = fmax(worst, fabs(got - want));
                cr_assert(close_rel(got, want), "%s epoch %d group %d: lr %.17g, PyTorch %.17g", c->name, e, g, got,
                          want);
                cr_assert_eq(optim_lr_scheduler_get_last_lr(sched, g), got, "%s epoch %d group %d", c->name, e, g);
                if (!c->sequential) {
                    double cf = linear_closed(lr_fix_base[g], &c->kids[0], e);
                    worst_closed = fmax(worst_closed, fabs(got - cf));
                    cr_assert(close_rel(got, cf), "%s epoch %d group %d: lr %.17g, closed form %.17g", c->name, e, g,
                              got, cf);
                    cr_assert(close_rel(optim_lr_scheduler_closed_form_lr(sched, g), cf));
                } else {
                    cr_assert_eq(optim_lr_scheduler_closed_form_lr(sched, g), -1.0); /* PyTorch's has none */
                }
            }
            cr_assert_eq(optim_lr_scheduler_get_last_lr(sched, 2), -1.0);
            if (c->sequential) {
                /* schedule i runs from start_i (the milestone before it, or 0) to the next milestone;
                 * PyTorch leaves a finished one at its last epoch, one not started yet at -1 */
                for (int i = 0; i < c->nkids; i++) {
                    int64_t start = i ? c->milestones[i - 1] : 0, end = i + 1 < c->nkids ? c->milestones[i] : INT64_MAX;
                    int64_t want = e < start ? -1 : e < end ? e - start : end - 1 - start;
                    cr_assert_eq(optim_lr_scheduler_last_epoch(kids[i]), want, "%s epoch %d schedule %d: %lld, want %lld",
                                 c->name, e, i, (long long)optim_lr_scheduler_last_epoch(kids[i]), (long long)want);
                }
            }
        }
        optim_lr_scheduler_free(sched);
        free_setup(&s);
    }
    cr_log_info("lr_scheduler: max |ctorch - PyTorch| lr over %d warm-up schedules x 21 epochs: %.3g; LinearLR vs "
                "its closed form: %.3g",
                LR_FIX_NWARMUP, worst, worst_closed);
}

/* LinearLR(0.25, 1, 4), base 0.1: lr = 0.1 * (0.25 + 0.75 * min(4, t) / 4)
 *   t = 0: 0.1 * 0.25   = 0.025
 *   t = 1: 0.1 * 0.4375 = 0.04375   (recursive: 0.025 * (1 + 0.75 / (4 * 0.25 + 0))     = 0.025 * 1.75)
 *   t = 2: 0.1 * 0.625  = 0.0625    (0.04375 * (1 + 0.75 / (1 + 0.75)) = 0.04375 * 10 / 7)
 *   t = 3: 0.1 * 0.8125 = 0.08125   (0.0625 * (1 + 0.75 / (1 + 1.5)) = 0.0625 * 1.3)
 *   t = 4: 0.1 * 1      = 0.1       (0.08125 * (1 + 0.75 / (1 + 2.25)) = 0.08125 * 4 / 3.25)
 *   t = 5: past total_iters, unchanged: 0.1
 * and half of each for the group of base 0.05. */
Test(lr_scheduler, linear_hand_values) {
    static const double want[6] = {0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1};
    setup s = make_setup();
    optim_lr_scheduler *lin = optim_linear_lr(s.opt, 0.25, 1.0, 4);
    cr_assert_not_null(lin, "%s", torch_last_error());
    for (int t = 0; t < 6; t++) {
        if (t > 0) cr_assert_eq(optim_lr_scheduler_step(lin), TORCH_OK);
        cr_assert(fabs(optim_get_lr(s.opt, 0) - want[t]) < 1e-15, "t = %d: %.17g, want %.17g", t,
                  optim_get_lr(s.opt, 0), want[t]);
        cr_assert(fabs(optim_get_lr(s.opt, 1) - want[t] / 2) < 1e-15, "t = %d: %.17g", t, optim_get_lr(s.opt, 1));
    }
    optim_lr_scheduler_free(lin);
    free_setup(&s);
}

/* The optimizer's lrs of both groups. */
typedef struct lr_pair {
    double lr[2];
} lr_pair;

static lr_pair lrs_of(const optim_optimizer *opt) { return (lr_pair){{optim_get_lr(opt, 0), optim_get_lr(opt, 1)}}; }

static void assert_lrs(const optim_optimizer *opt, lr_pair want, const char *what) {
    for (int g = 0; g < 2; g++)
        cr_assert_eq(optim_get_lr(opt, g), want.lr[g], "%s: group %d lr %.17g, was %.17g", what, g, optim_get_lr(opt, g),
                     want.lr[g]);
}

/* A refused constructor: NULL, the status, a message containing each of the given parts. */
static void assert_refused(const void *got, torch_status status, const char *part1, const char *part2) {
    cr_assert_null(got);
    cr_assert_eq(torch_last_status(), status, "%s", torch_last_error());
    cr_assert_not_null(strstr(torch_last_error(), part1), "expected \"%s\" in: %s", part1, torch_last_error());
    if (part2) cr_assert_not_null(strstr(torch_last_error(), part2), "expected \"%s\" in: %s", part2, torch_last_error());
}

Test(lr_scheduler, linear_errors) {
    setup s = make_setup();
    lr_pair before = lrs_of(s.opt);
    assert_refused(optim_linear_lr(s.opt, 0.0, 1.0, 5), TORCH_ERR_INVALID_ARGUMENT,
                   "LinearLR: Starting multiplicative factor expected to be greater than 0 and less or equal to 1",
                   "(got 0)");
    assert_refused(optim_linear_lr(s.opt, 1.5, 1.0, 5), TORCH_ERR_INVALID_ARGUMENT,
                   "LinearLR: Starting multiplicative factor", "(got 1.5)");
    assert_refused(optim_linear_lr(s.opt, NAN, 1.0, 5), TORCH_ERR_INVALID_ARGUMENT,
                   "LinearLR: Starting multiplicative factor", "nan");
    assert_refused(optim_linear_lr(s.opt, 0.5, -0.1, 5), TORCH_ERR_INVALID_ARGUMENT,
                   "LinearLR: Ending multiplicative factor expected to be between 0 and 1", "(got -0.1)");
    assert_refused(optim_linear_lr(s.opt, 0.5, 1.25, 5), TORCH_ERR_INVALID_ARGUMENT,
                   "LinearLR: Ending multiplicative factor", "(got 1.25)");
    assert_refused(optim_linear_lr(s.opt, 0.5, NAN, 5), TORCH_ERR_INVALID_ARGUMENT,
                   "LinearLR: Ending multiplicative factor", "nan");
    assert_refused(optim_linear_lr(s.opt, 0.5, 1.0, 0), TORCH_ERR_INVALID_ARGUMENT,
                   "LinearLR: total_iters must be positive (got 0)", NULL);
    assert_refused(optim_linear_lr(s.opt, 0.5, 1.0, -2), TORCH_ERR_INVALID_ARGUMENT, "LinearLR: total_iters",
                   "(got -2)");
    assert_refused(optim_linear_lr(NULL, 0.5, 1.0, 5), TORCH_ERR_INVALID_ARGUMENT, "LinearLR: optimizer is NULL",
                   NULL);
    assert_lrs(s.opt, before, "after refused LinearLRs");
    /* nor did a refused one fix the groups' initial_lr: a schedule built after the lr changed
     * takes the new lr as its base */
    cr_assert_eq(optim_set_lr(s.opt, 0, 0.3), TORCH_OK);
    optim_lr_scheduler *st = optim_step_lr(s.opt, 2, 0.5);
    cr_assert_not_null(st);
    cr_assert_eq(optim_lr_scheduler_closed_form_lr(st, 0), 0.3);
    cr_assert_eq(optim_lr_scheduler_closed_form_lr(st, 1), lr_fix_base[1]);
    optim_lr_scheduler_free(st);
    /* the limits themselves are accepted: start_factor 1, end_factor 0 (decay to zero) */
    optim_lr_scheduler *ok = optim_linear_lr(s.opt, 1.0, 0.0, 2);
    cr_assert_not_null(ok, "%s", torch_last_error());
    cr_assert_eq(optim_lr_scheduler_step(ok), TORCH_OK);
    cr_assert_eq(optim_lr_scheduler_step(ok), TORCH_OK);
    cr_assert_eq(optim_get_lr(s.opt, 0), 0.0);
    optim_lr_scheduler_free(ok);
    free_setup(&s);
}

/* Under ASan, fails the test if anything allocated is unreachable now: a leak found at exit
 * would only be printed, as Criterion has already counted the test as passed (and the program
 * exits with 0). */
static void assert_no_leaks(void) {
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (see its report above)");
#endif
}

/* Test(lr_scheduler, name) whose body runs in a function of its own, checked for leaks once it
 * has returned (while it runs, its locals keep everything reachable). */
#define LEAK_CHECKED_TEST(name)                                                                                    \
    __attribute__((noinline)) static void name##_body(void);                                                       \
    Test(lr_scheduler, name) {                                                                                     \
        name##_body();                                                                                             \
        assert_no_leaks();                                                                                         \
    }                                                                                                              \
    static void name##_body(void)

/* A refused SequentialLR: NULL, an error naming SequentialLR and the given part, the optimizer's
 * lrs and the offered schedules' states unchanged. */
static void assert_seq_refused(optim_optimizer *opt, optim_lr_scheduler *const *kids, int n, const int64_t *ms,
                               const char *part) {
    lr_pair before = lrs_of(opt);
    char *states[4] = {0};
    for (int i = 0; kids && i < n && i < 4; i++) states[i] = kids[i] ? optim_lr_scheduler_state_json(kids[i]) : NULL;
    assert_refused(optim_sequential_lr(opt, kids, n, ms), TORCH_ERR_INVALID_ARGUMENT, "SequentialLR: ", part);
    assert_lrs(opt, before, part);
    for (int i = 0; i < n && i < 4; i++) {
        if (!states[i]) continue;
        char *now = optim_lr_scheduler_state_json(kids[i]);
        cr_assert_str_eq(now, states[i], "%s: schedule %d changed", part, i);
        free(now);
        free(states[i]);
    }
}

LEAK_CHECKED_TEST(sequential_errors) {
    setup s = make_setup(), other = make_setup();
    optim_lr_scheduler *lin = optim_linear_lr(s.opt, 0.01, 1.0, 3);
    optim_lr_scheduler *cos = optim_cosine_annealing_lr(s.opt, 17, 0.0);
    optim_lr_scheduler *step = optim_step_lr(s.opt, 4, 0.5);
    optim_lr_scheduler *foreign = optim_step_lr(other.opt, 4, 0.5);
    cr_assert(lin && cos && step && foreign);

    optim_lr_scheduler *two[2] = {lin, cos}, *three[3] = {lin, cos, step};
    const int64_t ms3[1] = {3};
    assert_seq_refused(s.opt, two, 0, ms3, "at least one scheduler (got 0)");
    assert_seq_refused(NULL, two, 2, ms3, "expected an optimizer");
    assert_seq_refused(s.opt, NULL, 2, ms3, "at least one scheduler");
    /* n - 1 milestones are read: none given for two schedules */
    assert_seq_refused(s.opt, two, 2, NULL, "SequentialLR: ");
    const int64_t ms_zero[1] = {0}, ms_neg[1] = {-2}, ms_equal[2] = {5, 5}, ms_down[2] = {5, 3};
    assert_seq_refused(s.opt, two, 2, ms_zero, "milestones must be positive and strictly increasing (milestone 0 is 0)");
    assert_seq_refused(s.opt, two, 2, ms_neg, "milestone 0 is -2");
    assert_seq_refused(s.opt, three, 3, ms_equal, "milestone 1 is 5");
    assert_seq_refused(s.opt, three, 3, ms_down, "milestone 1 is 3");
    optim_lr_scheduler *with_foreign[2] = {lin, foreign};
    assert_seq_refused(s.opt, with_foreign, 2, ms3, "the scheduler at index 1 belongs to another optimizer");
    optim_lr_scheduler *twice[3] = {lin, cos, lin};
    const int64_t ms_ok3[2] = {3, 6};
    assert_seq_refused(s.opt, twice, 3, ms_ok3, "the scheduler at index 2 is given twice");
    optim_lr_scheduler *with_null[2] = {lin, NULL};
    assert_seq_refused(s.opt, with_null, 2, ms3, "the scheduler at index 1 is NULL");

    /* after all these refusals the schedules are still the caller's and step on their own */
    lr_pair before = lrs_of(s.opt);
    cr_assert_eq(optim_lr_scheduler_step(step), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(optim_lr_scheduler_last_epoch(step), 1);
    cr_assert_eq(optim_lr_scheduler_step(foreign), TORCH_OK);
    for (int g = 0; g < 2; g++) optim_set_lr(s.opt, g, before.lr[g]);

    /* a SequentialLR owns lin and cos; then: a SequentialLR as a schedule, a schedule that
     * already belongs to one */
    optim_lr_scheduler *seq = optim_sequential_lr(s.opt, two, 2, ms3);
    cr_assert_not_null(seq, "%s", torch_last_error());
    optim_lr_scheduler *lin2 = optim_linear_lr(s.opt, 0.5, 1.0, 2);
    cr_assert_not_null(lin2);
    optim_lr_scheduler *nested[2] = {lin2, seq};
    assert_seq_refused(s.opt, nested, 2, ms3, "the scheduler at index 1 is a SequentialLR itself");
    optim_lr_scheduler *taken[2] = {lin2, cos};
    assert_seq_refused(s.opt, taken, 2, ms3, "the scheduler at index 1 already belongs to a SequentialLR");
    optim_lr_scheduler *taken0[2] = {lin, step};
    assert_seq_refused(s.opt, taken0, 2, ms3, "the scheduler at index 0 already belongs to a SequentialLR");

    /* the refused SequentialLRs left lin2 and step the caller's: they step on their own */
    cr_assert_eq(optim_lr_scheduler_step(lin2), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(optim_lr_scheduler_last_epoch(lin2), 1);
    cr_assert_eq(optim_lr_scheduler_step(step), TORCH_OK, "%s", torch_last_error());

    /* stepping a schedule the SequentialLR owns is refused and changes nothing */
    before = lrs_of(s.opt);
    char *seq_state = optim_lr_scheduler_state_json(seq);
    cr_assert_eq(optim_lr_scheduler_step(lin), TORCH_ERR_INVALID_STATE);
    cr_assert_not_null(strstr(torch_last_error(), "optim_lr_scheduler_step: this LinearLR belongs to a SequentialLR"),
                       "%s", torch_last_error());
    cr_assert_eq(optim_lr_scheduler_step(cos), TORCH_ERR_INVALID_STATE);
    cr_assert_not_null(strstr(torch_last_error(), "this CosineAnnealingLR belongs to a SequentialLR"), "%s",
                       torch_last_error());
    assert_lrs(s.opt, before, "after stepping an owned schedule");
    cr_assert_eq(optim_lr_scheduler_last_epoch(lin), 0);
    cr_assert_eq(optim_lr_scheduler_last_epoch(cos), -1);
    char *seq_state2 = optim_lr_scheduler_state_json(seq);
    cr_assert_str_eq(seq_state2, seq_state);
    free(seq_state);
    free(seq_state2);

    /* freeing an owned schedule does nothing: the SequentialLR still uses both (ASan would
     * report a use after free) and frees them itself (or a double free) */
    optim_lr_scheduler_free(lin);
    optim_lr_scheduler_free(cos);
    cr_assert_eq(optim_lr_scheduler_last_epoch(lin), 0);
    for (int e = 1; e <= 6; e++) cr_assert_eq(optim_lr_scheduler_step(seq), TORCH_OK, "%s", torch_last_error());
    cr_assert_eq(optim_lr_scheduler_last_epoch(cos), 3);

    optim_lr_scheduler_free(seq);
    optim_lr_scheduler_free(lin2);
    optim_lr_scheduler_free(step);
    optim_lr_scheduler_free(foreign);

    /* a schedule made before the optimizer got a third group */
    tensor *q = torch_zeros(TORCH_SHAPE(1));
    tensor_set_requires_grad(q, true);
    nn_tensor_dict *d = nn_tensor_dict_new();
    nn_tensor_dict_set(d, "q", q);
    optim_lr_scheduler *before_group = optim_linear_lr(other.opt, 0.5, 1.0, 2);
    cr_assert_eq(optim_sgd_add_param_group(other.opt, d, optim_sgd_options_default(0.3)), TORCH_OK);
    optim_lr_scheduler *after_group = optim_cosine_annealing_lr(other.opt, 5, 0.0);
    cr_assert(before_group && after_group);
    optim_lr_scheduler *mixed[2] = {before_group, after_group};
    assert_seq_refused(other.opt, mixed, 2, ms3,
                       "the scheduler at index 0 was made for another number of parameter groups");
    optim_lr_scheduler_free(before_group);
    optim_lr_scheduler_free(after_group);
    nn_tensor_dict_free(d);
    tensor_free(q);
    free_setup(&s);
    free_setup(&other);
}

/* Freeing a SequentialLR (the fixture's warmup_cosine, 6 epochs in) frees the schedules it owns:
 * under ASan, anything left is a leak that fails the test. */
LEAK_CHECKED_TEST(sequential_frees_its_schedules) {
    setup s = make_setup();
    optim_lr_scheduler *seq = make_warmup(&warmup_cases[3], s.opt, NULL);
    for (int e = 1; e <= 6; e++) optim_lr_scheduler_step(seq);
    for (int g = 0; g < 2; g++) cr_assert(close_rel(optim_get_lr(s.opt, g), lr_fix_warmup_cosine[12 + g]));
    optim_lr_scheduler_free(seq); /* and its two schedules: ASan reports a leak otherwise */
    free_setup(&s);
}

/* ---- state JSON of LinearLR and SequentialLR -------------------------------------------------- */

/* A copy of text with the first occurrence of from (which must be there) replaced by to. */
static char *replaced(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "\"%s\" not in %s", from, text);
    size_t head = (size_t)(at - text), nf = strlen(from), nt = strlen(to), tail = strlen(at + nf);
    char *out = malloc(head + nt + tail + 1);
    cr_assert_not_null(out);
    memcpy(out, text, head);
    memcpy(out + head, to, nt);
    memcpy(out + head + nt, at + nf, tail + 1);
    return out;
}

/* The same with the last occurrence of from. */
static char *replaced_last(const char *text, const char *from, const char *to) {
    const char *at = NULL;
    for (const char *p = strstr(text, from); p; p = strstr(p + 1, from)) at = p;
    cr_assert_not_null(at, "\"%s\" not in %s", from, text);
    char *out = replaced(at, from, to);
    size_t head = (size_t)(at - text);
    char *full = malloc(head + strlen(out) + 1);
    cr_assert_not_null(full);
    memcpy(full, text, head);
    strcpy(full + head, out);
    free(out);
    return full;
}

/* Runs a for 6 epochs, loads its state into b (built with other settings of the same kinds) and
 * the optimizer's lrs as a checkpoint would, then steps both 14 epochs: the lrs stay identical. */
static void assert_exact_resume(optim_lr_scheduler *sa, setup *a, optim_lr_scheduler *sb, setup *b) {
    for (int e = 1; e <= 6; e++) cr_assert_eq(optim_lr_scheduler_step(sa), TORCH_OK);
    char *st = optim_lr_scheduler_state_json(sa);
    cr_assert_not_null(st);
    cr_assert_eq(optim_lr_scheduler_load_state_json(sb, st), TORCH_OK, "%s", torch_last_error());
    char *st_b = optim_lr_scheduler_state_json(sb);
    cr_assert_str_eq(st_b, st, "the loaded state reads back differently");
    free(st);
    free(st_b);
    for (int g = 0; g < 2; g++) cr_assert_eq(optim_set_lr(b->opt, g, optim_get_lr(a->opt, g)), TORCH_OK);
    for (int e = 7; e <= 20; e++) {
        cr_assert_eq(optim_lr_scheduler_step(sa), TORCH_OK);
        cr_assert_eq(optim_lr_scheduler_step(sb), TORCH_OK);
        cr_assert_eq(optim_lr_scheduler_last_epoch(sb), e);
        for (int g = 0; g < 2; g++) {
            cr_assert_eq(optim_get_lr(b->opt, g), optim_get_lr(a->opt, g), "epoch %d group %d: %.17g vs %.17g", e, g,
                         optim_get_lr(b->opt, g), optim_get_lr(a->opt, g));
            cr_assert_eq(optim_lr_scheduler_get_last_lr(sb, g), optim_lr_scheduler_get_last_lr(sa, g));
        }
    }
}

LEAK_CHECKED_TEST(warmup_state_round_trip) {
    /* warm-up then cosine (the fixture's warmup_cosine, which it must still follow) into
     * LinearLR(0.5, 0.9, 7), CosineAnnealingLR(5, 0.002), milestone 7 */
    setup a = make_setup(), b = make_setup();
    optim_lr_scheduler *sa = make_warmup(&warmup_cases[3], a.opt, NULL);
    const warmup_case other = {"other", true, 2, {LIN(0.5, 0.9, 7), COS(5, 0.002)}, {7}, NULL};
    optim_lr_scheduler *sb = make_warmup(&other, b.opt, NULL);
    assert_exact_resume(sa, &a, sb, &b);
    for (int g = 0; g < 2; g++) cr_assert(close_rel(optim_get_lr(b.opt, g), lr_fix_warmup_cosine[40 + g]));
    optim_lr_scheduler_free(sa);
    optim_lr_scheduler_free(sb);
    free_setup(&a);
    free_setup(&b);

    /* LinearLR(1/3, 0.9, 10), still warming up at epoch 6 (1/3 takes 17 digits in the JSON), into
     * LinearLR(0.5, 0.8, 3) */
    a = make_setup();
    b = make_setup();
    sa = optim_linear_lr(a.opt, 1.0 / 3, 0.9, 10);
    sb = optim_linear_lr(b.opt, 0.5, 0.8, 3);
    cr_assert(sa && sb);
    assert_exact_resume(sa, &a, sb, &b);
    for (int g = 0; g < 2; g++) cr_assert(close_rel(optim_get_lr(b.opt, g), 0.9 * lr_fix_base[g]));
    optim_lr_scheduler_free(sa);
    optim_lr_scheduler_free(sb);
    free_setup(&a);
    free_setup(&b);
}

/* load_state_json(s, json) is refused with this status and a message containing part; s's state
 * reads back byte for byte as before, and the optimizer's lrs are untouched. */
static void assert_load_refused(optim_lr_scheduler *s, const optim_optimizer *opt, const char *json,
                                torch_status status, const char *part) {
    char *before = optim_lr_scheduler_state_json(s);
    lr_pair lrs = lrs_of(opt);
    cr_assert_eq(optim_lr_scheduler_load_state_json(s, json), status, "%s: %s", part, torch_last_error());
    cr_assert_not_null(strstr(torch_last_error(), part), "expected \"%s\" in: %s", part, torch_last_error());
    cr_assert_not_null(strstr(torch_last_error(), "optim_lr_scheduler_load_state_json: "), "%s", torch_last_error());
    char *after = optim_lr_scheduler_state_json(s);
    cr_assert_str_eq(after, before, "%s: the state changed", part);
    assert_lrs(opt, lrs, part);
    free(before);
    free(after);
}

LEAK_CHECKED_TEST(warmup_state_refusals) {
    setup s = make_setup(), t = make_setup();
    /* the target: warm-up then cosine, 4 epochs in; the source of the bad states: the same
     * shape with other settings, 6 epochs in */
    optim_lr_scheduler *seq = make_warmup(&warmup_cases[3], s.opt, NULL);
    for (int e = 0; e < 4; e++) optim_lr_scheduler_step(seq);
    const warmup_case src_case = {"src", true, 2, {LIN(0.01, 1.0, 3), COS(17, 0.0)}, {5}, NULL};
    optim_lr_scheduler *src = make_warmup(&src_case, t.opt, NULL);
    for (int e = 0; e < 6; e++) optim_lr_scheduler_step(src);
    char *good = optim_lr_scheduler_state_json(src);
    cr_assert_not_null(good);
    cr_assert_not_null(strstr(good, "{\"kind\":\"SequentialLR\",\"last_epoch\":6,\"milestones\":[5],"), "%s", good);
    cr_assert_not_null(strstr(good, "\"start_factor\":0.01,"), "%s", good);

    /* a StepLR's state into a LinearLR */
    optim_lr_scheduler *lin = optim_linear_lr(t.opt, 0.5, 1.0, 4);
    optim_lr_scheduler *stp = optim_step_lr(t.opt, 2, 0.1);
    char *step_state = optim_lr_scheduler_state_json(stp);
    assert_load_refused(lin, t.opt, step_state, TORCH_ERR_KEY, "scheduler is a StepLR, this scheduler is a LinearLR");
    free(step_state);

    /* three schedules into a SequentialLR of two */
    const warmup_case three_case = warmup_cases[5];
    setup u = make_setup();
    optim_lr_scheduler *three = make_warmup(&three_case, u.opt, NULL);
    char *three_state = optim_lr_scheduler_state_json(three);
    /* its two milestones are the first thing that does not fit */
    assert_load_refused(seq, s.opt, three_state, TORCH_ERR_FORMAT, "scheduler.milestones has 2 entries (expected 1");
    /* with one milestone, the three schedules */
    char *three_one = replaced(three_state, "\"milestones\":[4,10]", "\"milestones\":[4]");
    assert_load_refused(seq, s.opt, three_one, TORCH_ERR_FORMAT,
                        "scheduler.schedulers is an array (expected an array of 2 scheduler states)");
    free(three_one);
    /* milestones that do not increase, into the three-schedule SequentialLR itself */
    char *flat = replaced(three_state, "\"milestones\":[4,10]", "\"milestones\":[4,4]");
    assert_load_refused(three, u.opt, flat, TORCH_ERR_FORMAT,
                        "scheduler.milestones[1] is 4 (expected a whole number above the previous milestone");
    free(flat);
    char *down = replaced(three_state, "\"milestones\":[4,10]", "\"milestones\":[10,4]");
    assert_load_refused(three, u.opt, down, TORCH_ERR_FORMAT, "scheduler.milestones[1] is 4");
    free(down);

    /* a schedule of another kind: warm-up then StepLR into warm-up then cosine */
    setup v = make_setup();
    optim_lr_scheduler *wstep = make_warmup(&warmup_cases[4], v.opt, NULL);
    char *wstep_state = optim_lr_scheduler_state_json(wstep);
    assert_load_refused(seq, s.opt, wstep_state, TORCH_ERR_KEY,
                        "scheduler.schedulers[1] is a StepLR, this scheduler is a CosineAnnealingLR");
    free(wstep_state);

    /* bad values, each named */
    static const struct {
        const char *from, *to, *part;
        bool last;
    } bad[] = {
        {"\"start_factor\":0.01", "\"start_factor\":2", "scheduler.schedulers[0].start_factor is 2 (expected a number in (0, 1])", false},
        {"\"start_factor\":0.01", "\"start_factor\":0", "scheduler.schedulers[0].start_factor is 0", false},
        {"\"end_factor\":1", "\"end_factor\":-0.5", "scheduler.schedulers[0].end_factor is -0.5", false},
        {"\"total_iters\":3", "\"total_iters\":0", "scheduler.schedulers[0].total_iters is 0 (expected an integer >= 1)", false},
        {"\"total_iters\":3", "\"total_iters\":2.5", "scheduler.schedulers[0].total_iters is 2.5", false},
        {"\"T_max\":17", "\"T_max\":0", "scheduler.schedulers[1].T_max is 0", false},
        {"\"milestones\":[5]", "\"milestones\":[0]", "scheduler.milestones[0] is 0 (expected a whole number above", false},
        {"\"milestones\":[5]", "\"milestones\":[-3]", "scheduler.milestones[0] is -3", false},
        {"\"milestones\":[5]", "\"milestones\":[2.5]", "scheduler.milestones[0] is 2.5", false},
        {"\"milestones\":[5]", "\"milestones\":[1e300]", "scheduler.milestones[0] is 1e+300", false},
        {"\"milestones\":[5]", "\"milestones\":[]", "scheduler.milestones has 0 entries (expected 1", false},
        {"\"milestones\":[5]", "\"milestones\":5", "scheduler.milestones is 5", false},
        {"{\"kind\":\"SequentialLR\",\"last_epoch\":6", "{\"kind\":\"SequentialLR\",\"last_epoch\":-1",
         "scheduler.last_epoch is -1 (expected a non-negative integer)", false},
        {"\"last_lrs\":[", "\"last_lrs\":[-0.5,", "scheduler.last_lrs has 3 entries (expected 2", true},
        {"\"schedulers\":", "\"schedulerz\":", "scheduler.schedulers is missing (expected an array of 2 scheduler states)", false},
        {"\"kind\":\"LinearLR\",", "", "scheduler.schedulers[0].kind is missing (expected \"LinearLR\")", false},
        {"\"start_factor\":0.01", "\"start_factor\":1e999", "scheduler.schedulers[0].start_factor is inf", false},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *j = bad[i].last ? replaced_last(good, bad[i].from, bad[i].to) : replaced(good, bad[i].from, bad[i].to);
        assert_load_refused(seq, s.opt, j, TORCH_ERR_FORMAT, bad[i].part);
        free(j);
    }

    /* a negative lr: the SequentialLR's own last_lrs (the last ones in the text) and a schedule's */
    const char *ll = strrchr(good, '['); /* the SequentialLR's last_lrs: its last array */
    cr_assert_not_null(ll);
    char first[64];
    size_t k = strcspn(ll + 1, ",");
    cr_assert(k < sizeof first);
    memcpy(first, ll + 1, k);
    first[k] = '\0';
    char from[96], to[96];
    snprintf(from, sizeof from, "\"last_lrs\":[%s,", first);
    snprintf(to, sizeof to, "\"last_lrs\":[-%s,", first);
    char *neg = replaced_last(good, from, to);
    assert_load_refused(seq, s.opt, neg, TORCH_ERR_FORMAT, "scheduler.last_lrs[0] is -");
    cr_assert_not_null(strstr(torch_last_error(), "(expected a learning rate >= 0)"), "%s", torch_last_error());
    free(neg);
    char *neg_child = replaced(good, "\"base_lrs\":[0.1,", "\"base_lrs\":[-0.1,");
    assert_load_refused(seq, s.opt, neg_child, TORCH_ERR_FORMAT, "scheduler.schedulers[0].base_lrs[0] is -0.1");
    free(neg_child);

    /* NaN is not JSON: refused by the parser, which says where */
    char *nan_text = replaced(good, "\"start_factor\":0.01", "\"start_factor\":NaN");
    assert_load_refused(seq, s.opt, nan_text, TORCH_ERR_FORMAT,
                        "the state is not valid JSON: schedulers[0].start_factor is NaN (expected a finite number");
    free(nan_text);
    nan_text = replaced(good, "\"milestones\":[5]", "\"milestones\":[NaN]");
    assert_load_refused(seq, s.opt, nan_text, TORCH_ERR_FORMAT, "the state is not valid JSON: milestones[0] is NaN");
    free(nan_text);

    /* and the good one is accepted, with the source's settings */
    cr_assert_eq(optim_lr_scheduler_load_state_json(seq, good), TORCH_OK, "%s", torch_last_error());
    char *now = optim_lr_scheduler_state_json(seq);
    cr_assert_str_eq(now, good);
    free(now);

    free(good);
    free(three_state);
    optim_lr_scheduler_free(seq);
    optim_lr_scheduler_free(src);
    optim_lr_scheduler_free(lin);
    optim_lr_scheduler_free(stp);
    optim_lr_scheduler_free(three);
    optim_lr_scheduler_free(wstep);
    free_setup(&s);
    free_setup(&t);
    free_setup(&u);
    free_setup(&v);
}
