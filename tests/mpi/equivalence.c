/* equivalence.c — data parallelism against one process, run under MPI by tests/mpi/run.sh
 * (mpirun -np 2). Every process also computes the single-process reference itself, without MPI,
 * on the same samples in the same order, and compares its own model with it after STEPS steps
 * of SGD (momentum 0.9, weight decay 5e-4) on a small CNN with two BatchNorm2d:
 *
 *   sync, equal      SyncBatchNorm, process r holds rows [r B, (r + 1) B) of each batch of K B:
 *                    parameters and running statistics are those of one process training on
 *                    the K B rows with plain BatchNorm;
 *   sync, unequal    the same with slices of different sizes each step (5 + 3, 1 + 7, ...): the
 *                    reference's loss is then the mean over the processes of each one's mean
 *                    loss (what averaging gradients computes), and its statistics the whole
 *                    batch's;
 *   local, equal     plain BatchNorm under data parallelism: the parameters follow the mean of
 *                    the processes' gradients, each computed with its own slice's statistics, and
 *                    each process's running statistics follow its own slices (the documented
 *                    per-process behaviour): the reference runs each slice with that process's
 *                    buffers and accumulates (1/K) of each gradient.
 * Tolerance: per tensor, max |ctorch - reference| <= 1e-5 max |reference|; num_batches_tracked
 * exactly. The sync and local runs must also differ from each other (the check can tell them
 * apart), and after each run every process must hold the same parameters (bit for bit).
 *
 * Also: dist_broadcast_module refuses models that differ, on every process, without hanging;
 * dist_data_parallel_new makes differently initialised models equal; gradients present on some
 * processes only are averaged with zeros for the others, and one present on none stays absent.
 *
 * With `--exit-rank R --at-step T` (tests/mpi/run.sh failure), process R leaves with exit(3) in
 * the middle of step T of the first run, after its forward and before the exchange of gradients
 * that the others are waiting in: mpirun must then end the whole job.
 *
 * Exit status 0 when every check passed on every process. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctorch.h"
#include "distributed/distributed.h"
#include "models.h"

#define STEPS 5
#define POOL  64   /* samples drawn; each step takes the next K * B */
#define TOL   1e-5

static dist_process_group *g;
static int rank, world, failures;
static int exit_rank = -1, exit_step = -1; /* --exit-rank R --at-step T */

#define CHECK(cond, ...)                                                                                        \
    do {                                                                                                        \
        if (!(cond)) {                                                                                          \
            failures++;                                                                                         \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", rank, __FILE__, __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                                       \
            fputc('\n', stderr);                                                                                \
        }                                                                                                       \
    } while (0)

static void must(bool ok, const char *what) {
    if (!ok) dist_abort(g, 1, "mpi_equivalence", "%s: %s", what, torch_last_error());
}

/* conv-BN-ReLU-pool twice, then a linear layer: (N, 1, 8, 8) -> (N, 3). */
static nn_module *small_cnn(uint64_t seed) {
    torch_generator gen = torch_generator_new(seed);
    nn_module *layers[] = {model_conv3x3(1, 4, &gen), model_batch_norm2d(4, true), nn_relu(), model_max_pool2(),
                           model_conv3x3(4, 4, &gen), model_batch_norm2d(4, true), nn_relu(), model_max_pool2(),
                           model_flatten(),           model_linear(16, 3, &gen)};
    nn_module *m = nn_sequential(10, layers);
    must(m != NULL, "building the model");
    return m;
}

static optim_optimizer *sgd(nn_module *m) {
    nn_tensor_dict *p = nn_module_named_parameters(m);
    optim_sgd_options o = optim_sgd_options_default(0.1);
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    optim_optimizer *opt = optim_sgd(p, o);
    nn_tensor_dict_free(p);
    must(opt != NULL, "making the optimizer");
    return opt;
}

/* Rows [first, first + n) of a contiguous t (float32 images or int64 labels), copied. */
static tensor *rows(tensor *t, int64_t first, int64_t n) {
    int64_t shape[TORCH_MAX_DIMS];
    memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
    shape[0] = n;
    tensor *c = torch_empty_dtype(t->dtype, t->ndim, shape);
    must(c != NULL, "slicing");
    const size_t row = (size_t)(t->numel / t->shape[0]) * torch_dtype_size(t->dtype);
    const char *src = t->dtype == TORCH_INT64 ? (const char *)tensor_data_i64(t) : (const char *)tensor_data_f32(t);
    memcpy(t->dtype == TORCH_INT64 ? (void *)tensor_data_i64(c) : (void *)tensor_data_f32(c), src + (size_t)first * row,
           (size_t)n * row);
    return c;
}

/* cross_entropy(model(x), y) * scale, backward (gradients accumulate). */
static void forward_backward(nn_module *m, tensor *x, tensor *y, double scale) {
    tensor *logits = nn_module_forward(m, x), *l = logits ? nnf_cross_entropy(logits, y) : NULL;
    tensor *s = l ? torch_mul_scalar(l, scale) : NULL;
    must(s && tensor_backward(s, NULL, false) == TORCH_OK, "forward and backward");
    tensor_free(s);
    tensor_free(l);
    tensor_free(logits);
}

/* The reference with the whole batch, SyncBatchNorm's case: loss = (1/K) sum_r mean loss of r's rows. */
static void reference_sync_step(nn_module *m, optim_optimizer *opt, tensor *x, tensor *y, const int64_t *sizes) {
    optim_zero_grad(opt);
    tensor *logits = nn_module_forward(m, x), *total = NULL;
    must(logits != NULL, "reference forward");
    for (int r = 0, first = 0; r < world; first += (int)sizes[r++]) {
        tensor *lr = torch_narrow(logits, 0, first, sizes[r]), *yr = rows(y, first, sizes[r]);
        tensor *ce = lr ? nnf_cross_entropy(lr, yr) : NULL, *part = ce ? torch_mul_scalar(ce, 1.0 / world) : NULL;
        tensor *sum = part && total ? torch_add(total, part) : part ? tensor_retain(part) : NULL;
        must(sum != NULL, "reference loss");
        tensor_free(total);
        total = sum;
        tensor_free(part);
        tensor_free(ce);
        tensor_free(yr);
        tensor_free(lr);
    }
    must(tensor_backward(total, NULL, false) == TORCH_OK, "reference backward");
    must(optim_step(opt) == TORCH_OK, "reference step");
    tensor_free(total);
    tensor_free(logits);
}

/* Copies the buffers of one model's state into dst's (same structure). */
static void copy_buffers(nn_tensor_dict *dst, const nn_tensor_dict *src) {
    for (int64_t i = 0; i < dst->count; i++) {
        tensor *d = dst->items[i].value, *s = src->items[i].value;
        memcpy(d->dtype == TORCH_INT64 ? (void *)tensor_data_i64(d) : (void *)tensor_data_f32(d),
               s->dtype == TORCH_INT64 ? (void *)tensor_data_i64(s) : (void *)tensor_data_f32(s),
               (size_t)d->numel * torch_dtype_size(d->dtype));
        tensor_bump_version(d);
    }
}

/* The reference for plain BatchNorm: each process's slice with that process's buffers
 * (saved[r], copies), gradients accumulated with weight 1/K. */
static void reference_local_step(nn_module *m, optim_optimizer *opt, tensor *x, tensor *y, const int64_t *sizes,
                                 nn_tensor_dict **saved) {
    optim_zero_grad(opt);
    nn_tensor_dict *live = nn_module_named_buffers(m);
    for (int r = 0, first = 0; r < world; first += (int)sizes[r++]) {
        copy_buffers(live, saved[r]);
        tensor *xr = rows(x, first, sizes[r]), *yr = rows(y, first, sizes[r]);
        forward_backward(m, xr, yr, 1.0 / world);
        copy_buffers(saved[r], live);
        tensor_free(xr);
        tensor_free(yr);
    }
    nn_tensor_dict_free(live);
    must(optim_step(opt) == TORCH_OK, "reference step");
}

/* max |a - b| / max |b| over a tensor (0 when equal). */
static double tensor_rel_err(const tensor *a, const tensor *b) {
    if (a->dtype == TORCH_INT64) return memcmp(tensor_data_i64(a), tensor_data_i64(b), (size_t)a->numel * 8) ? INFINITY : 0;
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        diff = fmax(diff, fabs((double)tensor_data_f32(a)[i] - tensor_data_f32(b)[i]));
        scale = fmax(scale, fabs((double)tensor_data_f32(b)[i]));
    }
    return diff == 0 ? 0 : diff / scale;
}

/* Compares every tensor of got's state with want's (the reference's, or, for buffers in the local
 * case, want_buffers); returns the largest error. */
static double compare(const char *label, nn_module *got, nn_module *want, nn_tensor_dict *want_buffers) {
    nn_tensor_dict *a = nn_module_state_dict(got), *b = nn_module_state_dict(want);
    double worst = 0;
    for (int64_t i = 0, k = 0; i < a->count; i++) {
        const bool buffer = strstr(a->items[i].name, "running_") || strstr(a->items[i].name, "num_batches");
        const tensor *ref = buffer && want_buffers ? want_buffers->items[k++].value : b->items[i].value;
        const double e = tensor_rel_err(a->items[i].value, ref);
        CHECK(e <= TOL, "%s: %s differs from the single-process reference by %.3e (relative)", label, a->items[i].name, e);
        worst = fmax(worst, e);
    }
    nn_tensor_dict_free(a);
    nn_tensor_dict_free(b);
    return worst;
}

/* The K = world slices of step t. */
static void step_sizes(bool equal, int t, int64_t *sizes) {
    static const int64_t unequal[STEPS][2] = {{5, 3}, {1, 7}, {6, 2}, {3, 5}, {4, 4}};
    for (int r = 0; r < world; r++) sizes[r] = equal || world != 2 ? 4 : unequal[t][r];
}

/* One run: the distributed model and the reference, STEPS steps. Returns the distributed model. */
static nn_module *run(bool sync, bool equal, tensor *pool_x, tensor *pool_y, double *err) {
    const char *label = sync ? (equal ? "sync, equal slices" : "sync, unequal slices") : "local, equal slices";
    nn_module *model = small_cnn(rank == 0 ? 1 : 100 + (uint64_t)rank); /* rank 0's weights reach all */
    if (sync) must(dist_convert_sync_batch_norm(model, g, NULL) == TORCH_OK, "converting");
    dist_data_parallel *ddp = dist_data_parallel_new(g, model, DIST_DATA_PARALLEL_OPTIONS());
    must(ddp != NULL, "wrapping the model");
    optim_optimizer *opt = sgd(model);
    must(dist_data_parallel_attach(ddp, opt) == TORCH_OK, "attaching");

    nn_module *ref = small_cnn(1);
    optim_optimizer *ref_opt = sgd(ref);
    nn_tensor_dict *saved[64] = {0};
    for (int r = 0; !sync && r < world; r++) { /* each process's buffers, as copies */
        nn_tensor_dict *live = nn_module_named_buffers(ref);
        saved[r] = nn_tensor_dict_new();
        for (int64_t i = 0; i < live->count; i++) {
            tensor *c = tensor_clone(live->items[i].value);
            must(c && nn_tensor_dict_set(saved[r], live->items[i].name, c) == TORCH_OK, "copying buffers");
            tensor_free(c);
        }
        nn_tensor_dict_free(live);
    }

    int64_t offset = 0;
    for (int t = 0; t < STEPS; t++) {
        int64_t sizes[64], mine = 0, total = 0;
        step_sizes(equal, t, sizes);
        for (int r = 0; r < world; r++) total += sizes[r], mine += r < rank ? sizes[r] : 0;
        must(offset + total <= POOL, "the pool is too small");
        tensor *x = rows(pool_x, offset, total), *y = rows(pool_y, offset, total);
        tensor *xr = rows(pool_x, offset + mine, sizes[rank]), *yr = rows(pool_y, offset + mine, sizes[rank]);
        optim_zero_grad(opt); /* the step of one process, unchanged: zero_grad, forward, backward, step */
        forward_backward(model, xr, yr, 1.0);
        if (rank == exit_rank && t == exit_step) {
            fprintf(stderr, "mpi_equivalence: rank %d leaves in the middle of step %d\n", rank, t);
            exit(3);
        }
        must(optim_step(opt) == TORCH_OK, "step");
        if (sync) reference_sync_step(ref, ref_opt, x, y, sizes);
        else reference_local_step(ref, ref_opt, x, y, sizes, saved);
        offset += total;
        tensor_free(x);
        tensor_free(y);
        tensor_free(xr);
        tensor_free(yr);
    }
    *err = compare(label, model, ref, sync ? NULL : saved[rank]);
    bool same = false;
    must(dist_module_is_synchronized(g, model, &same) == TORCH_OK, "comparing processes");
    CHECK(same == (sync || world == 1), "%s: the processes' states are %s (expected %s)", label, same ? "identical" : "different",
          sync ? "identical" : "different running statistics");

    for (int r = 0; r < world; r++) nn_tensor_dict_free(saved[r]);
    optim_free(ref_opt);
    nn_module_free(ref);
    dist_data_parallel_free(ddp);
    optim_free(opt);
    return model;
}

int main(int argc, char **argv) {
    g = dist_init_process_group(&argc, &argv);
    if (!g) {
        fprintf(stderr, "mpi_equivalence: %s\n", torch_last_error());
        return 1;
    }
    rank = dist_get_rank(g), world = dist_get_world_size(g);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--exit-rank")) exit_rank = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--at-step")) exit_step = atoi(argv[i + 1]);
        else dist_abort(g, 2, "mpi_equivalence", "unknown argument '%s' (usage: [--exit-rank R --at-step T])", argv[i]);
    }
    if (world > 8) dist_abort(g, 1, "mpi_equivalence", "expected at most 8 processes (got %d)", world);
    torch_set_num_threads(1);

    /* The same pool on every process: inputs with mean 3 (so that the statistics matter). */
    torch_generator gen = torch_generator_new(42);
    tensor *pool_x = torch_randn(&gen, TORCH_SHAPE(POOL, 1, 8, 8)), *pool_y = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(POOL));
    for (int64_t i = 0; i < pool_x->numel; i++) tensor_data_f32(pool_x)[i] += 3.0f;
    for (int64_t i = 0; i < POOL; i++) tensor_data_i64(pool_y)[i] = (int64_t)torch_generator_below(&gen, 3);

    double e_sync, e_unequal, e_local;
    nn_module *sync = run(true, true, pool_x, pool_y, &e_sync);
    nn_module *unequal = run(true, false, pool_x, pool_y, &e_unequal);
    nn_module *local = run(false, true, pool_x, pool_y, &e_local);
    /* The two behaviours differ by far more than the tolerance: the check tells them apart. */
    nn_tensor_dict *a = nn_module_named_parameters(sync), *b = nn_module_named_parameters(local);
    double apart = 0;
    for (int64_t i = 0; i < a->count; i++) apart = fmax(apart, tensor_rel_err(a->items[i].value, b->items[i].value));
    CHECK(world == 1 || apart > 100 * TOL, "SyncBatchNorm and plain BatchNorm trained the same parameters (%.3e apart)", apart);
    nn_tensor_dict_free(a);
    nn_tensor_dict_free(b);

    /* Gradients by hand on a linear layer: weight's is rank + 1 everywhere (mean (K + 1) / 2),
     * bias's only on rank 0, 4 (mean 4 / K); after zero_grad none anywhere, and none after. */
    nn_module *lin = model_linear(2, 2, &gen);
    dist_data_parallel *ddp = lin ? dist_data_parallel_new(g, lin, DIST_DATA_PARALLEL_OPTIONS()) : NULL;
    must(ddp != NULL, "wrapping the linear layer");
    nn_tensor_dict *lp = nn_module_named_parameters(lin);
    tensor *w = lp->items[0].value, *bias = lp->items[1].value;
    w->grad = torch_full(w->ndim, w->shape, (float)(rank + 1));
    bias->grad = rank == 0 ? torch_full(bias->ndim, bias->shape, 4.0f) : NULL;
    must(dist_data_parallel_allreduce_gradients(ddp) == TORCH_OK, "averaging by hand");
    CHECK(tensor_data_f32(w->grad)[3] == (float)(world + 1) / 2, "weight's mean gradient %g, expected %g",
          tensor_data_f32(w->grad)[3], (world + 1) / 2.0);
    CHECK(bias->grad && tensor_data_f32(bias->grad)[1] == 4.0f / (float)world, "bias's mean gradient %g, expected %g",
          bias->grad ? tensor_data_f32(bias->grad)[1] : -1.0, 4.0 / world);
    for (int64_t i = 0; i < lp->count; i++) tensor_zero_grad(lp->items[i].value);
    must(dist_data_parallel_allreduce_gradients(ddp) == TORCH_OK, "averaging nothing");
    CHECK(!w->grad && !bias->grad, "a gradient no process had appeared");
    optim_optimizer *lopt = sgd(lin);
    must(dist_data_parallel_attach(ddp, lopt) == TORCH_OK, "attaching");
    CHECK(dist_data_parallel_attach(ddp, lopt) == TORCH_ERR_INVALID_STATE, "attached twice");
    dist_data_parallel_free(ddp);
    optim_free(lopt);
    nn_tensor_dict_free(lp);
    nn_module_free(lin);

    /* Models that differ are refused on every process, and nobody hangs. */
    nn_module *odd = small_cnn(1); /* the last process's has one more layer */
    if (rank == world - 1 && world > 1) must(nn_sequential_append(odd, model_linear(3, 3, &gen)) == TORCH_OK, "appending");
    if (world > 1) {
        torch_status st = dist_broadcast_module(g, odd, 0);
        CHECK(st == TORCH_ERR_KEY, "a model that differs was not refused (status %d: %s)", (int)st, torch_last_error());
        CHECK(strstr(torch_last_error(), "the processes' models differ"), "message: %s", torch_last_error());
    }

    if (rank == 0)
        printf("mpi_equivalence: %d processes, %d SGD steps; max relative error against one process: "
               "SyncBatchNorm %.2e (equal slices), %.2e (unequal slices); plain BatchNorm %.2e; "
               "SyncBatchNorm and plain BatchNorm %.2e apart\n", world, STEPS, e_sync, e_unequal, e_local, apart);
    int mine = failures, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_SUM, dist_comm(g));
    if (rank == 0) printf("mpi_equivalence: %s (%d failed checks over all processes)\n", all ? "FAIL" : "PASS", all);
    nn_module_free(odd);
    nn_module_free(sync);
    nn_module_free(unequal);
    nn_module_free(local);
    tensor_free(pool_x);
    tensor_free(pool_y);
    dist_destroy_process_group(g);
    return all ? 1 : 0;
}
