/* bn_experiments — seven train/eval-mode experiments with BatchNorm, each a subcommand that
 * writes a CSV table and a gnuplot plot of it (docs/experiments.md shows them all):
 *
 *   bn_experiments train-vs-eval   batch statistics at batch sizes 1-512 against running statistics
 *   bn_experiments momentum        how fast running statistics converge, per momentum
 *   bn_experiments no-tracking     track_running_stats=false: batch statistics in eval mode too
 *   bn_experiments forgot-eval     evaluating in training mode: the damage
 *   bn_experiments precise         running statistics recomputed after training (precise BN)
 *   bn_experiments freeze          fine-tuning with BatchNorm frozen: all of it, or the statistics
 *   bn_experiments ghost           ghost batch normalization against plain BN at batch 512
 *
 * Each runs on the trained reference CNN: --load FILE (a state_dict written by train_cnn --save or
 * exported from PyTorch, scripts/safetensors_convert.py), or, without --load, one trained here
 * the way `train_cnn --epochs 2 --seed S` trains it. --quick runs a small version (CI).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "experiments.h"
#include "models.h"

static const xp_experiment *const experiments[] = {&xp_train_vs_eval, &xp_momentum, &xp_no_tracking,
                                                   &xp_forgot_eval,   &xp_precise,  &xp_freeze, &xp_ghost};
enum { N_EXPERIMENTS = sizeof experiments / sizeof *experiments };

/* ---- command line ----------------------------------------------------------------------------------- */

static void usage(FILE *out) {
    fprintf(out, "usage: bn_experiments EXPERIMENT [options]   (bn_experiments EXPERIMENT --help for its options)\n"
                 "Train/eval-mode experiments with BatchNorm2d on the reference CNN; each writes EXPERIMENT.csv\n"
                 "and EXPERIMENT.png (gnuplot) in --out.\n\nexperiments:\n");
    for (int i = 0; i < N_EXPERIMENTS; i++) fprintf(out, "  %-15s %s\n", experiments[i]->name, experiments[i]->summary);
}

static void experiment_usage(const xp_experiment *e, FILE *out) {
    fprintf(out, "usage: bn_experiments %s [options]\n%s\n\n%s\noptions:\n", e->name, e->summary, e->help);
    if (e->options & XP_OPT_BATCH_SIZES) fprintf(out, "  --batch-sizes LIST  comma-separated batch sizes\n");
    if (e->options & XP_OPT_BATCHES) fprintf(out, "  --batches LIST      comma-separated numbers of batches\n");
    if (e->options & XP_OPT_STEPS) fprintf(out, "  --steps N           steps to run\n");
    if (e->options & XP_OPT_BATCH_SIZE) fprintf(out, "  --batch-size N      mini-batch size\n");
    if (e->options & XP_OPT_LR) fprintf(out, "  --lr X              SGD learning rate (momentum 0.9)\n");
    if (e->options & XP_OPT_GHOST) fprintf(out, "  --ghost-batch-size N  ghost batch size\n");
    fprintf(out,
            "  --load FILE         %s\n"
            "  --epochs N          %s\n"
            "  --seed N            seed of every random draw: data order, initial weights (default 0)\n"
            "  --quick             a small version for CI: 1024 training and 500 test images, fewer steps\n"
            "  --data DIR          folder with the Fashion-MNIST IDX files, which must load; default\n"
            "                      $CTORCH_DATA, else /usr/share/datasets/fashion-mnist, where none of the\n"
            "                      files means the synthetic shapes data set\n"
            "  --out DIR           where %s.csv, .gp and .png go (default: the current folder; made if missing)\n"
            "  --threads N         threads for kernels and BLAS (default: all cores)\n"
            "  --help              this text\n",
            e->own_model ? "initial weights of the models it trains (a state_dict in safetensors)"
                         : "the trained reference CNN: a state_dict (safetensors) written by train_cnn\n"
                           "                      --save or exported from PyTorch; default: train one here",
            e->own_model ? "training epochs of each model (default 5; 2 with --quick)"
                         : "training epochs when there is no --load (default 2; 1 with --quick)",
            e->name);
}

/* "1,2,8" -> sizes; each in [1, 2^20], at most XP_MAX_LIST. */
static bool parse_list(const char *s, xp_config *c) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return false;
    strcpy(buf, s);
    c->n_sizes = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long long v;
        if (c->n_sizes == XP_MAX_LIST || !ex_parse_long(tok, 1, 1 << 20, &v)) return false;
        c->sizes[c->n_sizes++] = v;
    }
    return c->n_sizes > 0 && s[strlen(s) - 1] != ',' && s[0] != ',' && !strstr(s, ",,");
}

/* 0: run, 1: help shown, 2: bad usage (message printed). */
static int parse_args(int argc, char **argv, const xp_experiment **exp, xp_config *c) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 1;
    }
    *exp = NULL;
    for (int i = 0; i < N_EXPERIMENTS; i++)
        if (!strcmp(argv[1], experiments[i]->name)) *exp = experiments[i];
    if (!*exp) {
        fprintf(stderr, "bn_experiments: unknown experiment '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    const xp_experiment *e = *exp;
    *c = (xp_config){.out = ".", .epochs = -1, .steps = -1, .batch_size = -1, .ghost_batch_size = -1, .lr = -1};
    enum { LOAD = 256, DATA, OUT, SEED, QUICK, THREADS, EPOCHS, SIZES, BATCHES, STEPS, BATCH, LR, GHOST, HELP };
    static const struct option opts[] = {
        {"load", required_argument, 0, LOAD},          {"data", required_argument, 0, DATA},
        {"out", required_argument, 0, OUT},            {"seed", required_argument, 0, SEED},
        {"quick", no_argument, 0, QUICK},              {"threads", required_argument, 0, THREADS},
        {"epochs", required_argument, 0, EPOCHS},      {"batch-sizes", required_argument, 0, SIZES},
        {"batches", required_argument, 0, BATCHES},    {"steps", required_argument, 0, STEPS},
        {"batch-size", required_argument, 0, BATCH},   {"lr", required_argument, 0, LR},
        {"ghost-batch-size", required_argument, 0, GHOST}, {"help", no_argument, 0, HELP},
        {0, 0, 0, 0}};
    static const unsigned needs[HELP - LOAD + 1] = {
        [SIZES - LOAD] = XP_OPT_BATCH_SIZES, [BATCHES - LOAD] = XP_OPT_BATCHES, [STEPS - LOAD] = XP_OPT_STEPS,
        [BATCH - LOAD] = XP_OPT_BATCH_SIZE,  [LR - LOAD] = XP_OPT_LR,           [GHOST - LOAD] = XP_OPT_GHOST};
    /* what a bad value is told it should have been */
    static const char *const expected[HELP - LOAD + 1] = {
        [SEED - LOAD] = "a whole number >= 0",           [THREADS - LOAD] = "a whole number from 1 to 1024",
        [EPOCHS - LOAD] = "a whole number from 1 to 1000",
        [SIZES - LOAD] = "1 to 16 whole numbers from 1 to 1048576, separated by commas",
        [BATCHES - LOAD] = "1 to 16 whole numbers from 1 to 1048576, separated by commas",
        [STEPS - LOAD] = "a whole number from 1 to 1000000", [BATCH - LOAD] = "a whole number from 1 to 1048576",
        [GHOST - LOAD] = "a whole number from 1 to 1048576", [LR - LOAD] = "a number > 0"};
    long long v;
    optind = 2;
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (o >= LOAD && o <= HELP && needs[o - LOAD] && !(e->options & needs[o - LOAD])) { /* '?' is < LOAD */
            fprintf(stderr, "bn_experiments: %s does not take --%s (see bn_experiments %s --help)\n", e->name,
                    opts[o - LOAD].name, e->name);
            return 2;
        }
        bool ok = true;
        switch (o) {
        case LOAD: c->load = optarg; break;
        case DATA: c->data = optarg; break;
        case OUT: c->out = optarg; break;
        case SEED: ok = ex_parse_long(optarg, 0, INT64_MAX, &v) && ((c->seed = (uint64_t)v), 1); break;
        case QUICK: c->quick = true; break;
        case THREADS: ok = ex_parse_long(optarg, 1, 1024, &v) && ((c->threads = (int)v), 1); break;
        case EPOCHS: ok = ex_parse_long(optarg, 1, 1000, &v) && ((c->epochs = (int)v), 1); break;
        case SIZES:
        case BATCHES: ok = parse_list(optarg, c); break;
        case STEPS: ok = ex_parse_long(optarg, 1, 1000000, &v) && ((c->steps = v), 1); break;
        case BATCH: ok = ex_parse_long(optarg, 1, 1 << 20, &v) && ((c->batch_size = v), 1); break;
        case GHOST: ok = ex_parse_long(optarg, 1, 1 << 20, &v) && ((c->ghost_batch_size = v), 1); break;
        case LR: ok = ex_parse_double(optarg, 0, &c->lr) && c->lr > 0; break;
        case HELP: experiment_usage(e, stdout); return 1;
        default: experiment_usage(e, stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "bn_experiments: %s: invalid value '%s' for --%s (expected %s)\n", e->name, optarg,
                    opts[o - LOAD].name, expected[o - LOAD]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bn_experiments: %s: unexpected argument '%s'\n", e->name, argv[optind]);
        return 2;
    }
    e->defaults(c);
    if (c->epochs < 0) c->epochs = c->quick ? 1 : 2;
    return 0;
}

/* ---- the model ---------------------------------------------------------------------------------------- */

/* The trained reference CNN: --load, or trained here as train_cnn trains it (SGD lr 0.01, momentum
 * 0.9, weight decay 5e-4, batch 64, shuffled by gen), in eval mode. */
static nn_module *trained_model(const xp_config *c, torch_generator *gen, const data_dataset *train,
                                const data_dataset *test) {
    nn_module *model = reference_cnn(gen);
    if (!model) return NULL;
    if (c->load) {
        if (nn_module_load(model, c->load, true) != TORCH_OK) {
            nn_module_free(model);
            return NULL;
        }
    } else {
        nn_tensor_dict *params = nn_module_named_parameters(model);
        optim_sgd_options o = optim_sgd_options_default(0.01);
        o.momentum = 0.9;
        o.weight_decay = 5e-4;
        optim_optimizer *opt = params ? optim_sgd(params, o) : NULL;
        data_dataloader *dl = data_dataloader_new(train, 64, true, gen);
        torch_status st = opt && dl ? TORCH_OK : torch_last_status();
        for (int epoch = 1; st == TORCH_OK && epoch <= c->epochs; epoch++) {
            char label[48];
            ex_result r;
            snprintf(label, sizeof label, "training: epoch %d/%d", epoch, c->epochs);
            st = ex_train_epoch(model, opt, dl, label, &r);
        }
        data_dataloader_free(dl);
        optim_free(opt);
        nn_tensor_dict_free(params);
        if (st != TORCH_OK) {
            nn_module_free(model);
            return NULL;
        }
    }
    ex_result r;
    if (ex_evaluate(model, test, &r) != TORCH_OK) {
        nn_module_free(model);
        return NULL;
    }
    printf("model: the reference CNN, %s: test accuracy %.2f%% (eval mode)\n",
           c->load ? c->load : "trained here", 100 * r.accuracy);
    return model;
}

/* --out: made if missing (one level, as mkdir does). */
static bool make_out_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return true;
        torch_error(TORCH_ERR_IO, "--out %s: not a folder", dir);
        return false;
    }
    if (mkdir(dir, 0777) == 0) return true;
    torch_error(TORCH_ERR_IO, "--out %s: cannot make the folder (%s)", dir, strerror(errno));
    return false;
}

int main(int argc, char **argv) {
    const xp_experiment *e;
    xp_config c;
    int parsed = parse_args(argc, argv, &e, &c);
    if (parsed) return parsed == 1 ? 0 : 2;
    if (c.threads) torch_set_num_threads(c.threads);
    torch_generator gen = torch_generator_new(c.seed);

    xp_text command = {0};
    for (int i = 0; i < argc; i++) xp_printf(&command, "%s%s", i ? " " : "", i ? argv[i] : "bn_experiments");
    xp_context ctx = {.c = &c, .experiment = e, .command = command.failed ? e->name : command.s};
    ex_data_options data = {.dir = c.data, .limit_train = c.quick ? 1024 : -1, .limit_test = c.quick ? 500 : -1,
                            .synthetic_train = c.quick ? 1024 : 6000, .synthetic_test = c.quick ? 500 : 1000};
    int rc = 0;
    const char *doing = "making the output folder";
    if (!make_out_dir(c.out)) goto fail;
    doing = "loading data";
    if (!ex_load_data(&data, &gen, &ctx.train, &ctx.test, &ctx.synthetic)) goto fail;
    if (!e->own_model) {
        doing = c.load ? "loading the model" : "training the model";
        if (!(ctx.model = trained_model(&c, &gen, ctx.train, ctx.test))) goto fail;
    }
    doing = e->name;
    if (e->run(&ctx) != TORCH_OK) goto fail;
    goto done;
fail:
    fprintf(stderr, "bn_experiments: %s: %s\n", doing, torch_last_error());
    rc = 2;
done:
    xp_text_free(&command);
    nn_module_free(ctx.model);
    data_dataset_free(ctx.train);
    data_dataset_free(ctx.test);
    return rc;
}
