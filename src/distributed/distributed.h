/* distributed.h — data-parallel training over MPI: a process group, the model's weights broadcast
 * from rank 0, gradients averaged over the processes for any optimizer (PyTorch's
 * DistributedDataParallel), and SyncBatchNorm on CPU. The library's optional part: built as
 * libctorch_distributed where CMake finds MPI; the core library never includes this header.
 * The data shards come from data_dataloader_new_distributed (data/data.h), which needs no MPI.
 *
 * Where it sits: distributed includes every layer (tensor, autograd, nn, io, data, optim) and MPI;
 * no other layer includes it.
 *
 * Ownership:
 *   - dist_init_process_group / dist_new_group return an owned group; dist_destroy_process_group
 *     frees it (and finalises MPI if dist_init_process_group initialised it). A group must
 *     outlive everything given it: modules converted to SyncBatchNorm (and their graphs), data
 *     parallel wrappers.
 *   - dist_data_parallel_new returns an owned wrapper (dist_data_parallel_free). It borrows the
 *     group, the model and the optimizer it is attached to: free the wrapper before that optimizer
 *     (dist_data_parallel_free detaches it).
 *   - Errors: a torch_status (or NULL) with torch_last_error(), as everywhere in ctorch.
 *
 * Collective calls: every function here that takes a group is collective -- every process of
 * the group must call it, in the same order -- except dist_get_rank, dist_get_world_size,
 * dist_get_local_size, dist_comm and dist_abort. dist_broadcast_module and
 * dist_module_is_synchronized check on every process what could differ (a model's names, shapes
 * and requires_grad) and agree before moving data, so a mismatch is an error on every process,
 * never a hang. Any other error that only one process sees (a file it cannot read, a gradient of
 * the wrong shape, out of memory) must end the job: dist_abort prints the process's message and
 * calls MPI_Abort, which ends every process of the job (the others may be waiting in a collective
 * call that would never return).
 *
 * A training step, as in PyTorch with DistributedDataParallel:
 *     dist_process_group *g = dist_init_process_group(&argc, &argv);
 *     dist_convert_sync_batch_norm(model, g, NULL);          // optional: SyncBatchNorm
 *     dist_data_parallel *ddp = dist_data_parallel_new(g, model, DIST_DATA_PARALLEL_OPTIONS());
 *     dist_data_parallel_attach(ddp, opt);                    // opt's steps average gradients first
 *     data_dataloader *dl = data_dataloader_new_distributed(train, batch, (data_distributed_sampler){
 *         .num_replicas = dist_get_world_size(g), .rank = dist_get_rank(g), .shuffle = true, .seed = seed});
 *     ... forward, loss, zero_grad, backward, optim_step(opt): unchanged ...
 */
#ifndef CTORCH_DISTRIBUTED_H
#define CTORCH_DISTRIBUTED_H

#include <mpi.h>
#include <stdint.h>

#include "../nn/batch_norm.h"
#include "../nn/module.h"
#include "../optim/optimizer.h"

/* ---- the process group ------------------------------------------------------------------------- */

typedef struct dist_process_group dist_process_group;

/* PyTorch's init_process_group(backend="mpi"): initialises MPI (MPI_Init_thread, funneled: only
 * the main thread calls MPI, OpenMP's threads never do) unless it is initialised already, and
 * returns a group of all processes (over a duplicate of MPI_COMM_WORLD, whose errors return to
 * ctorch rather than abort). argc and argv may be NULL. */
dist_process_group *dist_init_process_group(int *argc, char ***argv);
/* A group over a duplicate of comm (MPI initialised by the caller). */
dist_process_group *dist_new_group(MPI_Comm comm);
/* Frees the group (collective); finalises MPI when dist_init_process_group initialised it. */
void dist_destroy_process_group(dist_process_group *g);

/* This process's rank in [0, world size), the number of processes, and how many of them run on
 * this machine (MPI_COMM_TYPE_SHARED; to share its cores out). -1 / 0 for a NULL group. */
int      dist_get_rank(const dist_process_group *g);
int      dist_get_world_size(const dist_process_group *g);
int      dist_get_local_size(const dist_process_group *g);
/* The group's communicator (borrowed), for the caller's own MPI calls. */
MPI_Comm dist_comm(const dist_process_group *g);

/* Waits for every process. */
torch_status dist_barrier(dist_process_group *g);
/* The logical AND of ok over the processes: where one process failed and the others must know
 * it before their next collective call (so that all return an error and none waits forever). */
torch_status dist_all_ok(dist_process_group *g, bool ok, bool *all);

/* Prints "PROGRAM: rank R of K: MESSAGE" on stderr and ends the whole job with MPI_Abort(code).
 * For an error that may not have happened on the other processes. Never returns. */
_Noreturn void dist_abort(const dist_process_group *g, int code, const char *program, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- the model's state --------------------------------------------------------------------------- */

/* Every parameter and buffer of model (its state_dict, num_batches_tracked included) set to
 * process src's, in place: what PyTorch's DDP does at construction. Refused on every process,
 * with nothing changed, when the processes' state_dicts differ in a key, dtype or shape (the
 * message names the first difference on the processes that see it). */
torch_status dist_broadcast_module(dist_process_group *g, nn_module *model, int src);

/* Whether model's parameters and buffers are bit for bit the same on every process (as data
 * parallelism keeps them; without SyncBatchNorm the running statistics differ): *same gets the
 * answer, the same on every process. Compares a checksum of each process's state with rank 0's. */
torch_status dist_module_is_synchronized(dist_process_group *g, nn_module *model, bool *same);

/* PyTorch's SyncBatchNorm.convert_sync_batchnorm(model, group): every BatchNorm of model
 * normalises, in training, with the statistics of the global batch over g's processes
 * (nn_batch_norm_set_process_group with g's MPI operations: one MPI_Allgather of 2C + 1 doubles
 * per forward and one MPI_Allreduce of 2C doubles per backward). The modules keep their type and
 * state_dict keys. Refused, with nothing changed, as nn_batch_norm_set_process_group is. *count
 * (may be NULL) gets the number of BatchNorm modules converted. */
torch_status dist_convert_sync_batch_norm(nn_module *model, dist_process_group *g, int64_t *count);

/* ---- data parallelism: gradients averaged over the processes ---------------------------------- */

typedef struct dist_data_parallel_options {
    double bucket_cap_mb; /* gradients are packed into buckets of at most this many MiB (one
                           * parameter larger than that gets a bucket of its own), one
                           * MPI_Allreduce per bucket. PyTorch's default: 25. > 0. */
} dist_data_parallel_options;

#define DIST_DATA_PARALLEL_OPTIONS(...) ((dist_data_parallel_options){.bucket_cap_mb = 25, __VA_ARGS__})

typedef struct dist_data_parallel dist_data_parallel;

/* PyTorch's DistributedDataParallel(model) without the forward wrapper: broadcasts model's
 * parameters and buffers from rank 0 (dist_broadcast_module) and lays out the buckets over the
 * parameters, in registration order. */
dist_data_parallel *dist_data_parallel_new(dist_process_group *g, nn_module *model, dist_data_parallel_options o);
void dist_data_parallel_free(dist_data_parallel *ddp);

/* Every parameter's gradient <- the mean of the processes' gradients (sum over K, then / K), bucket
 * by bucket: after it, the gradients are the same on every process. Parameters that do not
 * require grad are left out; which ones do must be the same on every process (freeze on all of
 * them alike). A parameter without a gradient here counts as zeros; one that no process has a
 * gradient for keeps none (grad NULL, as on one process). Its checks (a gradient of the
 * parameter's size, memory) run before the exchange and, when they fail, return the error with
 * the gradients unchanged, while the other processes wait in the exchange: dist_abort then. */
torch_status dist_data_parallel_allreduce_gradients(dist_data_parallel *ddp);

/* Makes every optim_step(opt) average the gradients first (optim_register_step_pre_hook), so that
 * a training loop written for one process runs unchanged, with any optimizer. Refused when opt
 * already has a step pre-hook, or the wrapper is attached already. */
torch_status dist_data_parallel_attach(dist_data_parallel *ddp, optim_optimizer *opt);

/* The layout: buckets, and the bytes one dist_data_parallel_allreduce_gradients hands MPI
 * (each process sends and receives about twice that over a ring allreduce). */
int     dist_data_parallel_num_buckets(const dist_data_parallel *ddp);
int64_t dist_data_parallel_bytes_per_step(const dist_data_parallel *ddp);

#endif /* CTORCH_DISTRIBUTED_H */
