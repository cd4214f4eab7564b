/* process_group.c — the MPI process group: creation, agreement, abort, the model's state
 * broadcast and compared, and the two operations SyncBatchNorm exchanges its numbers with. */
#include "distributed.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/tensor.h"

struct dist_process_group {
    MPI_Comm         comm;        /* owned duplicate, errors return */
    int              rank, size, local_size;
    bool             finalize;    /* dist_init_process_group initialised MPI */
    nn_process_group sync;        /* SyncBatchNorm's view of this group */
};

/* An MPI error as a ctorch error naming the call. */
static torch_status mpi_check(int rc, const char *fname, const char *call) {
    if (rc == MPI_SUCCESS) return TORCH_OK;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", rc);
    return torch_error(TORCH_ERR_IO, "%s: %s failed: %s", fname, call, text);
}

/* Counts past INT_MAX cannot be one MPI call. */
static torch_status check_count(const char *fname, int64_t n) {
    if (n >= 0 && n <= INT32_MAX) return TORCH_OK;
    return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %lld values in one exchange, expected at most %d", fname,
                       (long long)n, INT32_MAX);
}

/* ---- SyncBatchNorm's operations (nn_process_group) ------------------------------------------------ */

static torch_status sync_all_gather(void *handle, const double *send, double *recv, int64_t n) {
    dist_process_group *g = handle;
    torch_status st = check_count("SyncBatchNorm", n);
    if (st != TORCH_OK) return st;
    return mpi_check(MPI_Allgather(send, (int)n, MPI_DOUBLE, recv, (int)n, MPI_DOUBLE, g->comm), "SyncBatchNorm",
                     "MPI_Allgather");
}

static torch_status sync_all_reduce_sum(void *handle, double *values, int64_t n) {
    dist_process_group *g = handle;
    torch_status st = check_count("SyncBatchNormBackward", n);
    if (st != TORCH_OK) return st;
    return mpi_check(MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_DOUBLE, MPI_SUM, g->comm),
                     "SyncBatchNormBackward", "MPI_Allreduce");
}

/* ---- the group --------------------------------------------------------------------------------------- */

dist_process_group *dist_new_group(MPI_Comm comm) {
    static const char *fname = "dist_new_group";
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        torch_error(TORCH_ERR_INVALID_STATE, "%s: MPI is not initialised (dist_init_process_group does it)", fname);
        return NULL;
    }
    dist_process_group *g = calloc(1, sizeof *g);
    if (!g) {
        torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
        return NULL;
    }
    MPI_Comm local = MPI_COMM_NULL;
    torch_status st = mpi_check(MPI_Comm_dup(comm, &g->comm), fname, "MPI_Comm_dup");
    if (st == TORCH_OK) st = mpi_check(MPI_Comm_set_errhandler(g->comm, MPI_ERRORS_RETURN), fname, "MPI_Comm_set_errhandler");
    if (st == TORCH_OK) st = mpi_check(MPI_Comm_rank(g->comm, &g->rank), fname, "MPI_Comm_rank");
    if (st == TORCH_OK) st = mpi_check(MPI_Comm_size(g->comm, &g->size), fname, "MPI_Comm_size");
    if (st == TORCH_OK)
        st = mpi_check(MPI_Comm_split_type(g->comm, MPI_COMM_TYPE_SHARED, g->rank, MPI_INFO_NULL, &local), fname,
                       "MPI_Comm_split_type");
    if (st == TORCH_OK) st = mpi_check(MPI_Comm_size(local, &g->local_size), fname, "MPI_Comm_size");
    if (local != MPI_COMM_NULL) MPI_Comm_free(&local);
    if (st != TORCH_OK) {
        if (g->comm != MPI_COMM_NULL) MPI_Comm_free(&g->comm);
        free(g);
        return NULL;
    }
    g->sync = (nn_process_group){.handle = g, .size = g->size, .all_gather = sync_all_gather,
                                 .all_reduce_sum = sync_all_reduce_sum};
    return g;
}

dist_process_group *dist_init_process_group(int *argc, char ***argv) {
    int initialized = 0, provided = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        torch_error(TORCH_ERR_INVALID_STATE, "dist_init_process_group: MPI_Init_thread failed");
        return NULL;
    }
    if (initialized) MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_FUNNELED) { /* OpenMP's threads run beside the main thread's MPI calls */
        torch_error(TORCH_ERR_INVALID_STATE, "dist_init_process_group: expected an MPI with thread level "
                    "MPI_THREAD_FUNNELED or more (got level %d)", provided);
        if (!initialized) MPI_Finalize();
        return NULL;
    }
    dist_process_group *g = dist_new_group(MPI_COMM_WORLD);
    if (g) g->finalize = !initialized;
    else if (!initialized) MPI_Finalize();
    return g;
}

void dist_destroy_process_group(dist_process_group *g) {
    if (!g) return;
    const bool finalize = g->finalize;
    MPI_Comm_free(&g->comm);
    free(g);
    if (finalize) MPI_Finalize();
}

int dist_get_rank(const dist_process_group *g) { return g ? g->rank : -1; }
int dist_get_world_size(const dist_process_group *g) { return g ? g->size : 0; }
int dist_get_local_size(const dist_process_group *g) { return g ? g->local_size : 0; }
MPI_Comm dist_comm(const dist_process_group *g) { return g ? g->comm : MPI_COMM_NULL; }

torch_status dist_barrier(dist_process_group *g) {
    if (!g) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "dist_barrier: group is NULL");
    return mpi_check(MPI_Barrier(g->comm), "dist_barrier", "MPI_Barrier");
}

torch_status dist_all_ok(dist_process_group *g, bool ok, bool *all) {
    if (!g || !all) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "dist_all_ok: group or result is NULL");
    int mine = ok, every = 0;
    torch_status st = mpi_check(MPI_Allreduce(&mine, &every, 1, MPI_INT, MPI_LAND, g->comm), "dist_all_ok",
                                "MPI_Allreduce");
    *all = st == TORCH_OK && every;
    return st;
}

_Noreturn void dist_abort(const dist_process_group *g, int code, const char *program, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (g) fprintf(stderr, "%s: rank %d of %d: %s\n", program, g->rank, g->size, text);
    else fprintf(stderr, "%s: %s\n", program, text);
    fflush(stderr);
    fflush(stdout);
    MPI_Abort(g ? g->comm : MPI_COMM_WORLD, code ? code : 1);
    exit(code ? code : 1); /* MPI_Abort does not return; this is for the compiler */
}

/* ---- the model's state ------------------------------------------------------------------------------ */

/* A tensor's bytes (float32 or int64: what state_dicts hold). */
static void *raw_data(const tensor *t) {
    return t->dtype == TORCH_INT64 ? (void *)tensor_data_i64(t) : (void *)tensor_data_f32(t);
}

/* FNV-1a over bytes, continued from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_START 0xcbf29ce484222325ull

/* A checksum of a state_dict's keys, dtypes and shapes (with_data false) or of its bytes too. */
static uint64_t state_checksum(const nn_tensor_dict *sd, bool with_data) {
    uint64_t h = fnv(FNV_START, &sd->count, sizeof sd->count);
    for (int64_t i = 0; i < sd->count; i++) {
        const tensor *t = sd->items[i].value;
        h = fnv(h, sd->items[i].name, strlen(sd->items[i].name) + 1);
        h = fnv(h, &t->dtype, sizeof t->dtype);
        h = fnv(h, &t->ndim, sizeof t->ndim);
        h = fnv(h, t->shape, (size_t)t->ndim * sizeof *t->shape);
        h = fnv(h, &t->requires_grad, sizeof t->requires_grad); /* which gradients are exchanged */
        if (with_data) h = fnv(h, raw_data(t), (size_t)t->numel * torch_dtype_size(t->dtype));
    }
    return h;
}

/* Whether every process's checksum is src's, on every process. */
static torch_status same_as(dist_process_group *g, const char *fname, uint64_t mine, int src, bool *same) {
    uint64_t theirs = mine;
    torch_status st = mpi_check(MPI_Bcast(&theirs, 1, MPI_UINT64_T, src, g->comm), fname, "MPI_Bcast");
    if (st != TORCH_OK) return st;
    return dist_all_ok(g, theirs == mine, same);
}

/* The state_dict with every tensor contiguous, or an error naming the first that is not. */
static nn_tensor_dict *contiguous_state(const char *fname, nn_module *model) {
    nn_tensor_dict *sd = nn_module_state_dict(model);
    for (int64_t i = 0; sd && i < sd->count; i++)
        if (!tensor_is_contiguous(sd->items[i].value)) {
            torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: '%s' is not contiguous", fname, sd->items[i].name);
            nn_tensor_dict_free(sd);
            return NULL;
        }
    return sd;
}

torch_status dist_broadcast_module(dist_process_group *g, nn_module *model, int src) {
    static const char *fname = "dist_broadcast_module";
    if (!g) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: group is NULL", fname);
    if (src < 0 || src >= g->size)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: src %d is not a rank of this group of %d", fname, src,
                           g->size);
    nn_tensor_dict *sd = model ? contiguous_state(fname, model) : NULL;
    if (!model) torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: model is NULL", fname);
    /* Agree first: a process whose model is missing or differs must not leave the others waiting. */
    bool ready = false, same = false;
    char why[512] = "";
    if (!sd) snprintf(why, sizeof why, "%s", torch_last_error());
    torch_status st = dist_all_ok(g, sd != NULL, &ready);
    if (st == TORCH_OK && ready) st = same_as(g, fname, state_checksum(sd, false), src, &same);
    if (st == TORCH_OK && (!ready || !same)) {
        if (*why) st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s", why);
        else if (!ready) st = torch_error(TORCH_ERR_INVALID_STATE, "%s: another process could not read its model", fname);
        else st = torch_error(TORCH_ERR_KEY, "%s: the processes' models differ: the state_dict of rank %d (%lld "
                              "tensors) is not rank %d's in its keys, dtypes, shapes or requires_grad", fname, g->rank,
                              (long long)sd->count, src);
        nn_tensor_dict_free(sd);
        return st;
    }
    for (int64_t i = 0; st == TORCH_OK && i < sd->count; i++) {
        tensor *t = sd->items[i].value;
        char *p = raw_data(t);
        for (int64_t left = t->numel * (int64_t)torch_dtype_size(t->dtype); st == TORCH_OK && left > 0;) {
            const int n = left > (1 << 30) ? (1 << 30) : (int)left;
            st = mpi_check(MPI_Bcast(p, n, MPI_BYTE, src, g->comm), fname, "MPI_Bcast");
            p += n, left -= n;
        }
        tensor_bump_version(t);
    }
    nn_tensor_dict_free(sd);
    return st;
}

torch_status dist_module_is_synchronized(dist_process_group *g, nn_module *model, bool *same) {
    static const char *fname = "dist_module_is_synchronized";
    if (!g || !model || !same) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: an argument is NULL", fname);
    nn_tensor_dict *sd = contiguous_state(fname, model);
    bool ready = false;
    torch_status st = dist_all_ok(g, sd != NULL, &ready);
    if (st == TORCH_OK && !ready) st = torch_error(TORCH_ERR_INVALID_STATE, "%s: a process could not read its model", fname);
    if (st == TORCH_OK) st = same_as(g, fname, state_checksum(sd, true), 0, same);
    nn_tensor_dict_free(sd);
    return st;
}

torch_status dist_convert_sync_batch_norm(nn_module *model, dist_process_group *g, int64_t *count) {
    if (!g) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "dist_convert_sync_batch_norm: group is NULL");
    return nn_batch_norm_set_process_group(model, &g->sync, count);
}
