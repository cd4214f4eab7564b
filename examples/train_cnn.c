/* train_cnn.c — train a small CNN with BatchNorm2d on Fashion-MNIST, the ctorch way.
 *
 * The reference network (PyTorch's notation):
 *   Conv2d(1, 32, 3, padding=1, bias=False) - BatchNorm2d(32) - ReLU - MaxPool2d(2)
 *   Conv2d(32, 64, 3, padding=1, bias=False) - BatchNorm2d(64) - ReLU - MaxPool2d(2)
 *   Flatten - Linear(3136, 10)
 * trained with SGD (lr 0.01, momentum 0.9, weight decay 5e-4) on mini-batches of 64, inputs
 * x/255 normalised with mean 0.2860 and std 0.3530. `--model deep` trains a larger network;
 * `--optimizer adam|adamw` trains with Adam or AdamW, `--warmup-epochs N` warms the learning
 * rate up linearly (LinearLR) before the schedule (SequentialLR).
 *
 * Every training step is the same five lines as in PyTorch:
 *   logits = model(x); loss = cross_entropy(logits, y); zero_grad; loss.backward(); step
 * and, because we are in C, one tensor_free per tensor we were given.
 *
 * The data set comes from the folder --data names, and must load from there (exit status 2
 * otherwise). Without --data it is looked for in $CTORCH_DATA (which must name a folder) or
 * Debian's dataset-fashion-mnist folder; where that folder holds none of its files, the
 * program trains on a synthetic set of ten kinds of shapes instead and says so on its first
 * line, and where it holds some, they must load: a broken data set is never silently replaced.
 *
 * Data-parallel training (built where CMake finds MPI): `mpirun -np K train_cnn --distributed`
 * runs K processes, each on its share of every epoch (data_dataloader_new_distributed), with
 * --batch-size images per process per step and the gradients averaged before every optimizer
 * step (dist_data_parallel); --sync-bn normalises with the statistics of all K slices
 * (SyncBatchNorm). Rank 0 prints, evaluates and writes files; every rank reads --load and
 * --resume. An error on any rank ends the whole job with that rank's message (dist_abort).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctorch.h"
#ifdef CTORCH_HAVE_MPI
#include "distributed/distributed.h"
#endif

#include "common/training.h"
#include "models.h"

/* ---- command line ------------------------------------------------------------------------------- */

typedef struct config {
    int         epochs, batch_size, threads, warmup_epochs;
    double      lr, momentum, weight_decay; /* -1: the optimizer's default */
    uint64_t    seed;
    const char *model, *data, *save, *load, *checkpoint, *resume, *log, *schedule, *optimizer;
    bool        eval_only, summary, distributed, sync_bn;
    int64_t     limit_train, limit_test;
} config;

static void usage(FILE *out) {
    fprintf(out,
            "usage: train_cnn [options]\n"
            "Trains a CNN with BatchNorm2d on Fashion-MNIST and reports the test accuracy.\n\n"
            "  --epochs N          training epochs (default 2)\n"
            "  --batch-size N      mini-batch size (default 64)\n"
            "  --optimizer O       sgd (default) | adam | adamw: torch.optim's SGD, Adam, AdamW\n"
            "  --lr X              learning rate (default: sgd 0.01, 0.05 for --model deep;\n"
            "                      adam and adamw 0.001, PyTorch's default)\n"
            "  --momentum X        SGD momentum (default 0.9; sgd only)\n"
            "  --weight-decay X    weight decay on all parameters: an L2 penalty for sgd and adam,\n"
            "                      decoupled for adamw (default: sgd 5e-4; adam 0 and adamw 0.01,\n"
            "                      PyTorch's defaults)\n"
            "  --schedule S        none | step | cosine (default none; cosine for --model deep)\n"
            "  --warmup-epochs N   first raise the lr linearly from 0.01 x lr to lr over N epochs\n"
            "                      (LinearLR(start_factor=0.01), torchvision's recipe), then follow\n"
            "                      --schedule over the remaining epochs (SequentialLR); default 0\n"
            "  --model M           ref (default) or deep\n"
            "  --threads N         threads for kernels and BLAS (default: all cores)\n"
            "  --seed N            seed for initial weights, shuffling and dropout (default 0)\n"
            "  --data DIR          folder with the IDX files, which must load (else exit status 2);\n"
            "                      default $CTORCH_DATA, else /usr/share/datasets/fashion-mnist,\n"
            "                      where none of the files means a synthetic data set of shapes\n"
            "  --limit-train N     use only the first N training images\n"
            "  --limit-test N      use only the first N test images\n"
            "  --save FILE         write the model's state_dict (safetensors) after training\n"
            "  --load FILE         start from a model state_dict (e.g. exported from PyTorch)\n"
            "  --checkpoint FILE   write the whole training state after every epoch\n"
            "  --resume FILE       continue from a --checkpoint file (same --optimizer, --schedule\n"
            "                      and --warmup-epochs as the run that wrote it); the schedule goes\n"
            "                      on with its saved settings, as PyTorch's load_state_dict does\n"
            "  --eval-only         only evaluate (use with --load)\n"
            "  --summary           print the model's layers, output shapes and parameter counts\n"
            "                      for a batch of --batch-size images (torchinfo's table), and exit\n"
            "  --log FILE          CSV of per-epoch loss, accuracy and time\n"
            "  --distributed       data-parallel training under mpirun -np K: each process trains\n"
            "                      on its share of every epoch with --batch-size images per step,\n"
            "                      gradients averaged over the processes; rank 0 prints and writes%s\n"
            "  --sync-bn           with --distributed: BatchNorm normalises with the statistics of\n"
            "                      all processes' batches (SyncBatchNorm)\n"
            "  --help              this text\n",
#ifdef CTORCH_HAVE_MPI
            ""
#else
            "\n                      (this build has no MPI: apt-get install libopenmpi-dev, reconfigure)"
#endif
    );
}

/* 0: run, 1: --help shown, 2: bad usage (message printed). */
static int parse_args(int argc, char **argv, config *c) {
    *c = (config){.epochs = 2, .batch_size = 64, .lr = -1, .momentum = -1, .weight_decay = -1, .model = "ref",
                  .optimizer = "sgd", .limit_train = -1, .limit_test = -1};
    enum { EPOCHS = 256, BATCH, LR, MOMENTUM, WD, THREADS, SEED, DATA, SAVE, LOAD, CKPT, RESUME, EVAL, LOG, MODEL,
           SCHEDULE, LIMIT_TRAIN, LIMIT_TEST, OPTIMIZER, WARMUP, SUMMARY, DISTRIBUTED, SYNC_BN, HELP };
    static const struct option opts[] = {
        {"epochs", required_argument, 0, EPOCHS},     {"batch-size", required_argument, 0, BATCH},
        {"lr", required_argument, 0, LR},             {"momentum", required_argument, 0, MOMENTUM},
        {"weight-decay", required_argument, 0, WD},   {"threads", required_argument, 0, THREADS},
        {"seed", required_argument, 0, SEED},         {"data", required_argument, 0, DATA},
        {"save", required_argument, 0, SAVE},         {"load", required_argument, 0, LOAD},
        {"checkpoint", required_argument, 0, CKPT},   {"resume", required_argument, 0, RESUME},
        {"eval-only", no_argument, 0, EVAL},          {"log", required_argument, 0, LOG},
        {"model", required_argument, 0, MODEL},       {"schedule", required_argument, 0, SCHEDULE},
        {"limit-train", required_argument, 0, LIMIT_TRAIN}, {"limit-test", required_argument, 0, LIMIT_TEST},
        {"optimizer", required_argument, 0, OPTIMIZER}, {"warmup-epochs", required_argument, 0, WARMUP},
        {"summary", no_argument, 0, SUMMARY},         {"distributed", no_argument, 0, DISTRIBUTED},
        {"sync-bn", no_argument, 0, SYNC_BN},         {"help", no_argument, 0, HELP},
        {0, 0, 0, 0}};
    long long v;
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        bool ok = true;
        switch (o) {
        case EPOCHS: ok = ex_parse_long(optarg, 0, 100000, &v) && ((c->epochs = (int)v), 1); break;
        case BATCH: ok = ex_parse_long(optarg, 1, 1 << 20, &v) && ((c->batch_size = (int)v), 1); break;
        case THREADS: ok = ex_parse_long(optarg, 1, 1024, &v) && ((c->threads = (int)v), 1); break;
        case SEED: ok = ex_parse_long(optarg, 0, INT64_MAX, &v) && ((c->seed = (uint64_t)v), 1); break;
        case LIMIT_TRAIN: ok = ex_parse_long(optarg, 1, INT64_MAX, &v) && ((c->limit_train = v), 1); break;
        case LIMIT_TEST: ok = ex_parse_long(optarg, 1, INT64_MAX, &v) && ((c->limit_test = v), 1); break;
        case LR: ok = ex_parse_double(optarg, 0, &c->lr); break;
        case MOMENTUM: ok = ex_parse_double(optarg, 0, &c->momentum); break;
        case WD: ok = ex_parse_double(optarg, 0, &c->weight_decay); break;
        case DATA: c->data = optarg; break;
        case SAVE: c->save = optarg; break;
        case LOAD: c->load = optarg; break;
        case CKPT: c->checkpoint = optarg; break;
        case RESUME: c->resume = optarg; break;
        case EVAL: c->eval_only = true; break;
        case SUMMARY: c->summary = true; break;
        case DISTRIBUTED: c->distributed = true; break;
        case SYNC_BN: c->sync_bn = true; break;
        case LOG: c->log = optarg; break;
        case MODEL: c->model = optarg; break;
        case SCHEDULE: c->schedule = optarg; break;
        case OPTIMIZER: c->optimizer = optarg; break;
        case WARMUP: ok = ex_parse_long(optarg, 0, 100000, &v) && ((c->warmup_epochs = (int)v), 1); break;
        case HELP: usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "train_cnn: invalid value '%s' for --%s\n", optarg, opts[o - EPOCHS].name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "train_cnn: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
#ifndef CTORCH_HAVE_MPI
    if (c->distributed || c->sync_bn) {
        fprintf(stderr, "train_cnn: --distributed and --sync-bn need MPI, and this train_cnn was built without it "
                        "(apt-get install libopenmpi-dev openmpi-bin, then configure and build again)\n");
        return 2;
    }
#endif
    if (c->sync_bn && !c->distributed) {
        fprintf(stderr, "train_cnn: --sync-bn is for --distributed training\n");
        return 2;
    }
    if (strcmp(c->model, "ref") && strcmp(c->model, "deep")) {
        fprintf(stderr, "train_cnn: --model must be ref or deep (got '%s')\n", c->model);
        return 2;
    }
    bool deep = !strcmp(c->model, "deep"), sgd = !strcmp(c->optimizer, "sgd");
    if (!sgd && strcmp(c->optimizer, "adam") && strcmp(c->optimizer, "adamw")) {
        fprintf(stderr, "train_cnn: --optimizer must be sgd, adam or adamw (got '%s')\n", c->optimizer);
        return 2;
    }
    if (!sgd && c->momentum >= 0) {
        fprintf(stderr, "train_cnn: --momentum is for --optimizer sgd (Adam's betas are PyTorch's defaults)\n");
        return 2;
    }
    if (!c->schedule) c->schedule = deep ? "cosine" : "none";
    if (c->lr < 0) c->lr = !sgd ? 1e-3 : deep ? 0.05 : 0.01;
    if (c->momentum < 0) c->momentum = 0.9;
    if (c->weight_decay < 0) c->weight_decay = sgd ? 5e-4 : !strcmp(c->optimizer, "adamw") ? 1e-2 : 0;
    if (c->warmup_epochs > 0 && c->warmup_epochs >= c->epochs && strcmp(c->schedule, "none")) {
        fprintf(stderr, "train_cnn: --warmup-epochs %d leaves no epoch for --schedule %s (--epochs %d)\n",
                c->warmup_epochs, c->schedule, c->epochs);
        return 2;
    }
    if (strcmp(c->schedule, "none") && strcmp(c->schedule, "step") && strcmp(c->schedule, "cosine")) {
        fprintf(stderr, "train_cnn: --schedule must be none, step or cosine (got '%s')\n", c->schedule);
        return 2;
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------------ */

/* The optimizer --optimizer names, over all parameters as one group. */
static optim_optimizer *make_optimizer(const config *c, const nn_tensor_dict *params) {
    if (!strcmp(c->optimizer, "sgd")) {
        optim_sgd_options o = optim_sgd_options_default(c->lr);
        o.momentum = c->momentum;
        o.weight_decay = c->weight_decay;
        return optim_sgd(params, o);
    }
    bool adamw = !strcmp(c->optimizer, "adamw");
    optim_adam_options o = adamw ? optim_adamw_options_default() : optim_adam_options_default();
    o.lr = c->lr;
    o.weight_decay = c->weight_decay;
    return adamw ? optim_adamw(params, o) : optim_adam(params, o);
}

/* The schedule of --schedule, after --warmup-epochs of LinearLR when asked for. NULL with
 * status TORCH_OK for none; NULL with the error set on failure. */
static optim_lr_scheduler *make_schedule(const config *c, optim_optimizer *opt) {
    int64_t w = c->warmup_epochs, rest = c->epochs - w;
    optim_lr_scheduler *warmup = w > 0 ? optim_linear_lr(opt, 0.01, 1.0, w) : NULL, *main = NULL;
    if (w > 0 && !warmup) return NULL;
    if (!strcmp(c->schedule, "cosine")) main = optim_cosine_annealing_lr(opt, rest > 0 ? rest : 1, 0.0);
    else if (!strcmp(c->schedule, "step")) main = optim_step_lr(opt, rest > 2 ? rest / 3 : 1, 0.1);
    else {
        torch_clear_error();
        return warmup; /* LinearLR stays at end_factor after its epochs */
    }
    if (!main || !warmup) {
        optim_lr_scheduler_free(warmup);
        return main;
    }
    optim_lr_scheduler *pair[2] = {warmup, main}, *seq = optim_sequential_lr(opt, pair, 2, &w);
    if (!seq) {
        optim_lr_scheduler_free(warmup);
        optim_lr_scheduler_free(main);
    }
    return seq;
}

/* ---- data parallelism ------------------------------------------------------------------------------ */

#ifdef CTORCH_HAVE_MPI
static dist_process_group *group; /* --distributed: the job's processes */
#endif

static int job_rank(void) {
#ifdef CTORCH_HAVE_MPI
    if (group) return dist_get_rank(group);
#endif
    return 0;
}

static int job_size(void) {
#ifdef CTORCH_HAVE_MPI
    if (group) return dist_get_world_size(group);
#endif
    return 1;
}

/* Prints ctorch's message (which names the file where there is one) after what we were doing. In
 * a distributed run the other processes may be waiting for this one: the whole job ends here. */
static int fail(const char *what) {
#ifdef CTORCH_HAVE_MPI
    if (group) dist_abort(group, 2, "train_cnn", "%s: %s", what, torch_last_error());
#endif
    fprintf(stderr, "train_cnn: %s: %s\n", what, torch_last_error());
    return 2;
}

#ifdef CTORCH_HAVE_MPI
/* --distributed: MPI, one process printing, the cores shared out between the processes of a machine. */
static void start_distributed(config *c, int *argc, char ***argv) {
    if (!(group = dist_init_process_group(argc, argv))) {
        fprintf(stderr, "train_cnn: starting MPI: %s\n", torch_last_error());
        exit(2);
    }
    if (dist_get_rank(group) != 0 && !freopen("/dev/null", "w", stdout))
        dist_abort(group, 2, "train_cnn", "cannot silence the output of this rank");
    if (!c->threads) {
        const int share = torch_get_num_threads() / dist_get_local_size(group);
        c->threads = share > 0 ? share : 1;
    }
}

/* Every rank must train on the data set rank 0 trains on: a rank that found another one (or the
 * synthetic set, on a machine without Fashion-MNIST) ends the job. */
static void check_same_data(bool synthetic, const data_dataset *train) {
    long long mine[2] = {synthetic, (long long)data_dataset_size(train)}, first[2] = {mine[0], mine[1]};
    if (MPI_Bcast(first, 2, MPI_LONG_LONG, 0, dist_comm(group)) != MPI_SUCCESS)
        dist_abort(group, 2, "train_cnn", "comparing the data sets: MPI_Bcast failed");
    if (mine[0] != first[0] || mine[1] != first[1])
        dist_abort(group, 2, "train_cnn", "this rank loaded %s (%lld training images), rank 0 %s (%lld): every rank "
                   "needs the same data set (--data)", mine[0] ? "the synthetic set" : "Fashion-MNIST", mine[1],
                   first[0] ? "the synthetic set" : "Fashion-MNIST", first[1]);
}

/* The epoch's training loss and accuracy over all ranks (each one's mean over its share, and the
 * shares are equal). */
static void average_over_ranks(ex_result *r) {
    double v[2] = {r->loss, r->accuracy};
    if (MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_SUM, dist_comm(group)) != MPI_SUCCESS)
        dist_abort(group, 2, "train_cnn", "averaging the training loss: MPI_Allreduce failed");
    r->loss = v[0] / job_size(), r->accuracy = v[1] / job_size();
}
#endif

/* --summary: the chosen model for a batch of 1x28x28 images; no data set needed. */
static int print_summary(const config *c, torch_generator *gen) {
    nn_module *model = strcmp(c->model, "deep") ? reference_cnn(gen) : deep_cnn(gen);
    nn_summary *s = model ? nn_module_summary(model, TORCH_SHAPE(c->batch_size, 1, 28, 28)) : NULL;
    char *table = s ? nn_summary_str(s) : NULL;
    if (table) fputs(table, stdout);
    int rc = table ? 0 : fail("summarising the model");
    free(table);
    nn_summary_free(s);
    nn_module_free(model);
    return rc;
}

int main(int argc, char **argv) {
    config c;
    int parsed = parse_args(argc, argv, &c);
    if (parsed) return parsed == 1 ? 0 : 2;
#ifdef CTORCH_HAVE_MPI
    dist_data_parallel *ddp = NULL;
    if (c.distributed) start_distributed(&c, &argc, &argv);
#endif
    if (c.threads) torch_set_num_threads(c.threads);
    torch_generator gen = torch_generator_new(c.seed);

    data_dataset *train = NULL, *test = NULL;
    nn_module *model = NULL;
    optim_optimizer *opt = NULL;
    optim_lr_scheduler *sched = NULL;
    data_dataloader *dl = NULL;
    nn_tensor_dict *params = NULL;
    FILE *log = NULL;
    int rc = 0;

    if (c.summary) {
        rc = print_summary(&c, &gen);
        goto done;
    }
    ex_data_options data = {.dir = c.data, .limit_train = c.limit_train, .limit_test = c.limit_test,
                            .synthetic_train = 6000, .synthetic_test = 1000};
    bool synthetic = false;
    if (!ex_load_data(&data, &gen, &train, &test, &synthetic)) {
        rc = fail("loading data");
        goto done;
    }
#ifdef CTORCH_HAVE_MPI
    if (group) check_same_data(synthetic, train);
#endif
    model = strcmp(c.model, "deep") ? reference_cnn(&gen) : deep_cnn(&gen);
    if (!model) {
        rc = fail("building the model");
        goto done;
    }
    if (c.load && nn_module_load(model, c.load, true) != TORCH_OK) {
        rc = fail("loading the model");
        goto done;
    }
#ifdef CTORCH_HAVE_MPI
    if (c.sync_bn && dist_convert_sync_batch_norm(model, group, NULL) != TORCH_OK) {
        rc = fail("converting to SyncBatchNorm");
        goto done;
    }
#endif
    printf("model: ");
    nn_module_print(model);

    if (c.eval_only) {
        ex_result r;
        if (ex_evaluate(model, test, &r) != TORCH_OK) {
            rc = fail("evaluating");
            goto done;
        }
        printf("test loss: %.4f\ntest accuracy: %.2f%%\n", r.loss, 100 * r.accuracy);
        goto done;
    }

    params = nn_module_named_parameters(model);
    opt = params ? make_optimizer(&c, params) : NULL;
    dl = c.distributed ? data_dataloader_new_distributed(train, c.batch_size,
                                                        (data_distributed_sampler){.num_replicas = job_size(),
                                                                                   .rank = job_rank(),
                                                                                   .shuffle = true,
                                                                                   .seed = c.seed})
                       : data_dataloader_new(train, c.batch_size, true, &gen);
    if (!opt || !dl) {
        rc = fail("setting up training");
        goto done;
    }
#ifdef CTORCH_HAVE_MPI
    /* rank 0's weights on every rank, then every optimizer step averages the gradients first */
    if (group && (!(ddp = dist_data_parallel_new(group, model, DIST_DATA_PARALLEL_OPTIONS())) ||
                  dist_data_parallel_attach(ddp, opt) != TORCH_OK)) {
        rc = fail("setting up data parallelism");
        goto done;
    }
    if (group)
        printf("distributed: %d processes, %d threads each, batch %d per process (%d per step), %s, gradients "
               "averaged in %d bucket(s) of %lld bytes in all per step\n", job_size(), torch_get_num_threads(),
               c.batch_size, c.batch_size * job_size(),
               c.sync_bn ? "SyncBatchNorm (statistics over all processes)" : "BatchNorm statistics per process",
               dist_data_parallel_num_buckets(ddp), (long long)dist_data_parallel_bytes_per_step(ddp));
#endif
    if (!(sched = make_schedule(&c, opt)) && torch_last_status() != TORCH_OK) {
        rc = fail("setting up the schedule");
        goto done;
    }
    printf("optimizer: %s, lr %g, weight decay %g%s; schedule: ", optim_name(opt), c.lr, c.weight_decay,
           strcmp(c.optimizer, "adamw") ? "" : " (decoupled)");
    if (c.warmup_epochs > 0) printf("%d warm-up epochs from %g, then ", c.warmup_epochs, 0.01 * c.lr);
    printf("%s\n", c.schedule);
    if (c.log && job_rank() == 0) {
        log = fopen(c.log, "w");
        if (!log) {
            torch_error(TORCH_ERR_IO, "cannot open log file %s: %s", c.log, strerror(errno));
            rc = fail("opening the log");
            goto done;
        }
        fprintf(log, "epoch,lr,train_loss,train_accuracy,test_loss,test_accuracy,seconds\n");
    }

    /* The whole training state, for --checkpoint and --resume: resuming gives the same weights,
     * bit for bit, as never having stopped (same shuffling and dropout draws included). */
    optim_training_state state = {.model = model, .optimizer = opt, .scheduler = sched, .generator = &gen};
    if (c.resume) {
        if (optim_checkpoint_load(c.resume, &state) != TORCH_OK) {
            rc = fail("resuming");
            if (torch_last_status() == TORCH_ERR_KEY && strstr(torch_last_error(), "this one is"))
                fprintf(stderr, "train_cnn: resume with the --optimizer, --schedule and --warmup-epochs of the run "
                                "that wrote %s\n", c.resume);
            goto done;
        }
        printf("resumed from %s after epoch %lld\n", c.resume, (long long)state.epoch);
    }
#ifdef CTORCH_HAVE_MPI
    /* Every rank read its own copy of the checkpoint: a stale copy on one machine would go on
     * training other weights without a word. */
    if (group && c.resume) {
        bool same = false;
        torch_status st = dist_module_is_synchronized(group, model, &same);
        if (st == TORCH_OK && !same)
            st = torch_error(TORCH_ERR_INVALID_STATE, "the ranks' copies of %s hold different weights", c.resume);
        if (st != TORCH_OK) {
            rc = fail("resuming");
            goto done;
        }
    }
#endif

    for (int epoch = (int)state.epoch + 1; epoch <= c.epochs; epoch++) {
        double lr = optim_get_lr(opt, 0), t0 = ex_now_seconds();
        ex_result tr, te = {0};
        char label[32];
        snprintf(label, sizeof label, "epoch %d", epoch);
        if (c.distributed && data_dataloader_set_epoch(dl, epoch - 1) != TORCH_OK) {
            rc = fail("choosing the epoch's shares");
            goto done;
        }
        if (ex_train_epoch(model, opt, dl, label, &tr) != TORCH_OK) {
            rc = fail("training");
            goto done;
        }
        double seconds = ex_now_seconds() - t0;
#ifdef CTORCH_HAVE_MPI
        if (group) average_over_ranks(&tr);
#endif
        if (job_rank() == 0 && ex_evaluate(model, test, &te) != TORCH_OK) { /* the others go on training */
            rc = fail("evaluating");
            goto done;
        }
        printf("epoch %d: train loss %.4f, train accuracy %.2f%%, %.1f s", epoch, tr.loss, 100 * tr.accuracy, seconds);
        if (c.distributed) { /* every process trains on a share of ceil(N / K) images */
            const int64_t share = (data_dataset_size(train) + job_size() - 1) / job_size();
            printf(", %.0f img/s over %d processes", (double)(share * job_size()) / seconds, job_size());
        }
        printf("\n");
        printf("test loss: %.4f\ntest accuracy: %.2f%%\n", te.loss, 100 * te.accuracy);
        if (log) {
            fprintf(log, "%d,%g,%.6f,%.6f,%.6f,%.6f,%.3f\n", epoch, lr, tr.loss, tr.accuracy, te.loss, te.accuracy,
                    seconds);
            fflush(log);
        }
        if (sched && optim_lr_scheduler_step(sched) != TORCH_OK) {
            rc = fail("stepping the schedule");
            goto done;
        }
        state.epoch = epoch;
        state.step += data_dataloader_num_batches(dl);
        if (c.checkpoint && job_rank() == 0 && optim_checkpoint_save(c.checkpoint, &state) != TORCH_OK) {
            rc = fail("saving the checkpoint");
            goto done;
        }
    }
    if (c.save && job_rank() == 0) {
        if (nn_module_save(model, c.save) != TORCH_OK) {
            rc = fail("saving the model");
            goto done;
        }
        printf("saved the model's state_dict to %s\n", c.save);
    }

done:
    if (log) fclose(log);
#ifdef CTORCH_HAVE_MPI
    dist_data_parallel_free(ddp); /* before the optimizer it is attached to */
#endif
    optim_lr_scheduler_free(sched);
    data_dataloader_free(dl);
    optim_free(opt);
    nn_tensor_dict_free(params);
    nn_module_free(model);
    data_dataset_free(train);
    data_dataset_free(test);
#ifdef CTORCH_HAVE_MPI
    dist_destroy_process_group(group);
#endif
    return rc;
}
