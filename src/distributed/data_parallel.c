/* data_parallel.c — gradients averaged over the processes (PyTorch's DistributedDataParallel),
 * bucketed: the gradients are copied into a few large float buffers, each summed over the
 * processes with one MPI_Allreduce, then divided by K and copied back. Few large messages cost
 * far less than one per tensor: an allreduce pays a latency per call (microseconds on a machine,
 * tens of them across a network) and then moves bytes at the link's bandwidth.
 *
 * Why the mean: each process's loss is the mean over its B samples, so the mean of the K
 * gradients is the gradient of the mean loss over all K * B samples: one process with the whole
 * batch would step the same way (tests/mpi/equivalence.c checks it, with SyncBatchNorm, whose
 * statistics then are the whole batch's too).
 */
#include "distributed.h"

#include <stdlib.h>
#include <string.h>

struct dist_data_parallel {
    dist_process_group *g;          /* borrowed */
    nn_tensor_dict     *params;     /* every parameter, in registration order */
    int64_t            *bucket_end; /* bucket b holds params [bucket_end[b - 1], bucket_end[b]) */
    int                 buckets;
    int64_t             max_bucket; /* floats in the largest bucket */
    int64_t             total;      /* floats in all */
    float              *buffer;     /* max_bucket floats, then one per parameter (see below) */
    bool               *made;       /* per parameter: this call gave it a zero gradient */
    optim_optimizer    *attached;   /* borrowed, to detach on free */
};

dist_data_parallel *dist_data_parallel_new(dist_process_group *g, nn_module *model, dist_data_parallel_options o) {
    static const char *fname = "dist_data_parallel_new";
    if (!g || !model) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fname, g ? "model" : "group");
        return NULL;
    }
    if (!(o.bucket_cap_mb > 0) || o.bucket_cap_mb > 8192) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: bucket_cap_mb must be in (0, 8192] (got %g)", fname,
                    o.bucket_cap_mb);
        return NULL;
    }
    if (dist_broadcast_module(g, model, 0) != TORCH_OK) return NULL;
    dist_data_parallel *d = calloc(1, sizeof *d);
    nn_tensor_dict *all = d ? nn_module_named_parameters(model) : NULL;
    if (d) d->params = nn_tensor_dict_new();
    torch_status st = d && all && d->params ? TORCH_OK : torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    for (int64_t i = 0; st == TORCH_OK && i < all->count; i++)
        st = nn_tensor_dict_set(d->params, all->items[i].name, all->items[i].value);
    nn_tensor_dict_free(all);
    /* Buckets: parameters in order, a new bucket when the next would pass the cap. */
    const int64_t cap = (int64_t)(o.bucket_cap_mb * 1024 * 1024 / sizeof(float));
    if (st == TORCH_OK && !(d->bucket_end = malloc(((size_t)d->params->count + 1) * sizeof *d->bucket_end)))
        st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    int64_t in_bucket = 0;
    for (int64_t i = 0; st == TORCH_OK && i < d->params->count; i++) {
        const int64_t n = d->params->items[i].value->numel;
        if (in_bucket > 0 && in_bucket + n > cap) {
            d->bucket_end[d->buckets++] = i;
            in_bucket = 0;
        }
        in_bucket += n;
        d->total += n;
        if (in_bucket > d->max_bucket) d->max_bucket = in_bucket;
    }
    if (st == TORCH_OK && in_bucket > 0) d->bucket_end[d->buckets++] = d->params->count;
    if (st == TORCH_OK && d->max_bucket > INT32_MAX)
        st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: a parameter of %lld elements is more than one MPI call "
                         "takes", fname, (long long)d->max_bucket);
    if (st == TORCH_OK && (!(d->buffer = malloc((size_t)(d->max_bucket + d->params->count + 1) * sizeof(float))) ||
                           !(d->made = calloc((size_t)d->params->count + 1, sizeof *d->made))))
        st = torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    if (st == TORCH_OK && d->max_bucket + d->params->count > INT32_MAX)
        st = torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: a bucket of %lld elements is more than one MPI call takes",
                         fname, (long long)(d->max_bucket + d->params->count));
    if (st != TORCH_OK) {
        dist_data_parallel_free(d);
        return NULL;
    }
    d->g = g;
    return d;
}

void dist_data_parallel_free(dist_data_parallel *d) {
    if (!d) return;
    if (d->attached) optim_register_step_pre_hook(d->attached, NULL, NULL);
    nn_tensor_dict_free(d->params);
    free(d->bucket_end);
    free(d->buffer);
    free(d->made);
    free(d);
}

/* Drops a gradient this call made. */
static void drop_grad(tensor *p) {
    tensor_free(p->grad);
    p->grad = NULL;
}

/* The bucket's parameters that take part: those that require grad (frozen ones are left out, on
 * every process alike). */
static bool takes_part(const tensor *p) { return p->requires_grad; }

torch_status dist_data_parallel_allreduce_gradients(dist_data_parallel *d) {
    static const char *fname = "dist_data_parallel_allreduce_gradients";
    if (!d) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: wrapper is NULL", fname);
    const int64_t P = d->params->count;

    /* 1. Checks, and a zero gradient where a parameter has none (made[i]), before anything is
     *    exchanged; a refused call leaves the gradients as they were. */
    torch_status st = TORCH_OK;
    for (int64_t i = 0; i < P; i++) d->made[i] = false;
    for (int64_t i = 0; st == TORCH_OK && i < P; i++) {
        tensor *p = d->params->items[i].value;
        if (!takes_part(p)) continue;
        if (p->grad && (p->grad->dtype != TORCH_FLOAT32 || p->grad->numel != p->numel || !tensor_is_contiguous(p->grad)))
            st = torch_error(TORCH_ERR_SHAPE, "%s: the gradient of '%s' is not a contiguous float32 tensor of its "
                             "%lld elements", fname, d->params->items[i].name, (long long)p->numel);
        else if (!p->grad) {
            d->made[i] = true;
            if (!(p->grad = torch_zeros(p->ndim, p->shape))) st = torch_last_status();
        }
    }
    if (st != TORCH_OK) {
        for (int64_t i = 0; i < P; i++)
            if (d->made[i]) drop_grad(d->params->items[i].value);
        return st;
    }

    /* 2. Bucket by bucket: pack, sum over the processes, divide by K. The last bucket carries one
     *    number more per parameter, 1 where this process had a gradient of its own: a parameter
     *    that no process used gets no gradient (as on one process, where no optimizer moves it),
     *    one that some process used gets the mean, with zeros for the others. */
    const float K = (float)dist_get_world_size(d->g);
    for (int b = 0, first = 0; b < d->buckets; first = (int)d->bucket_end[b++]) {
        int64_t n = 0;
        for (int64_t i = first; i < d->bucket_end[b]; i++) {
            const tensor *p = d->params->items[i].value;
            if (!takes_part(p)) continue;
            memcpy(d->buffer + n, tensor_data_f32(p->grad), (size_t)p->numel * sizeof(float));
            n += p->numel;
        }
        const bool last = b == d->buckets - 1;
        float *used = d->buffer + n;
        for (int64_t i = 0; last && i < P; i++) used[i] = takes_part(d->params->items[i].value) && !d->made[i];
        int rc = MPI_Allreduce(MPI_IN_PLACE, d->buffer, (int)(n + (last ? P : 0)), MPI_FLOAT, MPI_SUM, dist_comm(d->g));
        if (rc != MPI_SUCCESS) {
            char text[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, text, &len);
            return torch_error(TORCH_ERR_IO, "%s: MPI_Allreduce of bucket %d failed: %s", fname, b, text);
        }
        n = 0;
        for (int64_t i = first; i < d->bucket_end[b]; i++) {
            tensor *p = d->params->items[i].value;
            if (!takes_part(p)) continue;
            float *dst = tensor_data_f32(p->grad);
            for (int64_t k = 0; k < p->numel; k++) dst[k] = d->buffer[n + k] / K; /* the sum, then / K */
            n += p->numel;
            tensor_bump_version(p->grad);
        }
        for (int64_t i = 0; last && i < P; i++)
            if (d->made[i] && used[i] == 0) drop_grad(d->params->items[i].value);
    }
    return TORCH_OK;
}

static torch_status average_before_step(optim_optimizer *opt, void *ctx) {
    (void)opt;
    return dist_data_parallel_allreduce_gradients(ctx);
}

torch_status dist_data_parallel_attach(dist_data_parallel *d, optim_optimizer *opt) {
    if (!d || !opt)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "dist_data_parallel_attach: %s is NULL", d ? "optimizer" : "wrapper");
    if (d->attached)
        return torch_error(TORCH_ERR_INVALID_STATE, "dist_data_parallel_attach: the wrapper is attached to an optimizer "
                           "already (one wrapper, one optimizer)");
    torch_status st = optim_register_step_pre_hook(opt, average_before_step, d);
    if (st == TORCH_OK) d->attached = opt;
    return st;
}

int dist_data_parallel_num_buckets(const dist_data_parallel *d) { return d ? d->buckets : 0; }
int64_t dist_data_parallel_bytes_per_step(const dist_data_parallel *d) {
    return d ? d->total * (int64_t)sizeof(float) : 0;
}
