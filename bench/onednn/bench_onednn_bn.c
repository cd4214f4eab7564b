/* bench_onednn_bn.c — oneDNN's batch normalization primitive, for the BatchNorm2d table.
 *
 * Not part of the CMake build (only the .c files directly in bench/ are globbed): it needs Debian's
 * libdnnl-dev (oneDNN 2.x C API), which ctorch does not depend on. scripts/bench_side_by_side.py
 * compiles it into the build directory when /usr/include/oneapi/dnnl/dnnl.h exists:
 *   cc -O2 -std=c11 -fopenmp bench/onednn/bench_onednn_bn.c -o BUILD/bench_onednn_bn -ldnnl
 *
 * For one shape and thread count, on each memory layout (nchw, nChw8c, nChw16c) it times the
 * primitive alone (data already in that layout: the reorders happen once, untimed), median and
 * min over --reps runs after warm-up:
 *   train_fwd     forward_training with scale and shift (computes batch mean and variance;
 *                 oneDNN leaves the running-stat update to the caller, which is not timed)
 *   eval_fwd      forward_inference with use_global_stats, scale and shift
 *   train_fwdbwd  forward_training, then backward (diff_src, diff_scale, diff_shift)
 *   train_fwdbwd_relu  the same with oneDNN's fused ReLU (dnnl_fuse_norm_relu: the forward leaves a
 *                 workspace mask that the backward reads)
 * and prints op,layout,N,C,H,W,threads,median_ms,min_ms,GBps,impl, where GBps is
 * 2 x N*C*H*W*4 bytes / median (the same definition as bench_batch_norm) and impl is the
 * implementation oneDNN picked (e.g. "bnorm_jit:avx2", "ncsp_bnorm:any", "ref:any").
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "../bench_util.h"

#define CHECK(call)                                                                                  \
    do {                                                                                             \
        dnnl_status_t s_ = (call);                                                                   \
        if (s_ != dnnl_success) {                                                                    \
            fprintf(stderr, "bench_onednn_bn:%d: %s: %s\n", __LINE__, #call, dnnl_status2str(s_));   \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static dnnl_memory_t mem_new(const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, engine, DNNL_MEMORY_ALLOCATE));
    return m;
}

static float *mem_ptr(dnnl_memory_t m) {
    void *p;
    CHECK(dnnl_memory_get_data_handle(m, &p));
    return p;
}

/* Uniform floats in [lo, hi) from a fixed xorshift sequence. */
static void fill(float *p, size_t n, float lo, float hi, uint64_t *state) {
    for (size_t i = 0; i < n; i++) {
        *state ^= *state << 13, *state ^= *state >> 7, *state ^= *state << 17;
        p[i] = lo + (hi - lo) * (float)((*state >> 40) * (1.0 / 16777216.0));
    }
}

/* A memory in `tag` holding random data, written in nchw and reordered (pads zeroed). */
static dnnl_memory_t random_in_layout(const dnnl_dims_t dims, dnnl_format_tag_t tag, uint64_t *state) {
    dnnl_memory_desc_t plain_md, md;
    CHECK(dnnl_memory_desc_init_by_tag(&plain_md, 4, dims, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag));
    dnnl_memory_t plain = mem_new(&plain_md), out = mem_new(&md);
    fill(mem_ptr(plain), (size_t)(dims[0] * dims[1] * dims[2] * dims[3]), -2.0f, 2.0f, state);
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t      r;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, &plain_md, engine, &md, engine, NULL));
    CHECK(dnnl_primitive_create(&r, rpd));
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, out}};
    CHECK(dnnl_primitive_execute(r, stream, 2, args));
    CHECK(dnnl_stream_wait(stream));
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(plain);
    return out;
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

static const char *impl_of(const_dnnl_primitive_desc_t pd) {
    const char *s = "?";
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success) s = "?";
    return s;
}

typedef struct bn_run {
    dnnl_primitive_t fwd_train, fwd_eval, bwd;
    dnnl_exec_arg_t  fwd_train_args[7], fwd_eval_args[6], bwd_args[10]; /* + workspace with the fused ReLU */
    int              n_fwd_train, n_bwd;
} bn_run;

static void exec(dnnl_primitive_t p, int n, const dnnl_exec_arg_t *args) {
    CHECK(dnnl_primitive_execute(p, stream, n, args));
}
static void run_train_fwd(void *p) {
    bn_run *r = p;
    exec(r->fwd_train, r->n_fwd_train, r->fwd_train_args);
    CHECK(dnnl_stream_wait(stream));
}
static void run_eval_fwd(void *p) {
    bn_run *r = p;
    exec(r->fwd_eval, 6, r->fwd_eval_args);
    CHECK(dnnl_stream_wait(stream));
}
static void run_train_fwdbwd(void *p) {
    bn_run *r = p;
    exec(r->fwd_train, r->n_fwd_train, r->fwd_train_args);
    exec(r->bwd, r->n_bwd, r->bwd_args);
    CHECK(dnnl_stream_wait(stream));
}

static void report(const char *op, const char *layout, const dnnl_dims_t d, int threads, bench_stats s,
                   const char *impl) {
    double bytes = 4.0 * (double)(d[0] * d[1] * d[2] * d[3]);
    printf("%s,%s,%lld,%lld,%lld,%lld,%d,%.4f,%.4f,%.2f,%s\n", op, layout, (long long)d[0], (long long)d[1],
           (long long)d[2], (long long)d[3], threads, s.median_ms, s.min_ms, 2.0 * bytes / (s.median_ms * 1e6), impl);
    fflush(stdout);
}

/* All ops on one layout; with `relu`, only forward+backward with the fused ReLU. */
static void bench_layout(const dnnl_dims_t dims, dnnl_format_tag_t tag, const char *layout, int threads, int reps,
                         bool relu) {
    const float    eps = 1e-5f;
    const unsigned flags = dnnl_use_scale | dnnl_use_shift | (relu ? dnnl_fuse_norm_relu : 0);
    uint64_t       state = 0x9E3779B97F4A7C15ull;
    dnnl_memory_desc_t data_md;
    CHECK(dnnl_memory_desc_init_by_tag(&data_md, 4, dims, dnnl_f32, tag));

    dnnl_batch_normalization_desc_t fd, ed, bd;
    dnnl_primitive_desc_t           fpd, epd, bpd;
    CHECK(dnnl_batch_normalization_forward_desc_init(&fd, dnnl_forward_training, &data_md, eps, flags));
    CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, engine, NULL));
    CHECK(dnnl_batch_normalization_forward_desc_init(&ed, dnnl_forward_inference, &data_md, eps,
                                                     flags | dnnl_use_global_stats));
    CHECK(dnnl_primitive_desc_create(&epd, &ed, NULL, engine, NULL));
    CHECK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &data_md, &data_md, eps, flags));
    CHECK(dnnl_primitive_desc_create(&bpd, &bd, NULL, engine, fpd));

    dnnl_memory_t src = random_in_layout(dims, tag, &state), diff_dst = random_in_layout(dims, tag, &state);
    dnnl_memory_t dst = mem_new(&data_md), diff_src = mem_new(&data_md);
    const dnnl_memory_desc_t *c_md = dnnl_primitive_desc_query_md(fpd, dnnl_query_exec_arg_md, DNNL_ARG_MEAN);
    dnnl_memory_t mean = mem_new(c_md), var = mem_new(c_md), scale = mem_new(c_md), shift = mem_new(c_md);
    dnnl_memory_t run_mean = mem_new(c_md), run_var = mem_new(c_md), dscale = mem_new(c_md), dshift = mem_new(c_md);
    size_t C = (size_t)dims[1];
    fill(mem_ptr(scale), C, 0.5f, 1.5f, &state);
    fill(mem_ptr(shift), C, -0.5f, 0.5f, &state);
    fill(mem_ptr(run_mean), C, -0.1f, 0.1f, &state);
    fill(mem_ptr(run_var), C, 0.9f, 1.1f, &state);

    bn_run r;
    CHECK(dnnl_primitive_create(&r.fwd_train, fpd));
    CHECK(dnnl_primitive_create(&r.fwd_eval, epd));
    CHECK(dnnl_primitive_create(&r.bwd, bpd));
    dnnl_exec_arg_t ft[6] = {{DNNL_ARG_SRC, src},   {DNNL_ARG_DST, dst},        {DNNL_ARG_MEAN, mean},
                             {DNNL_ARG_VARIANCE, var}, {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift}};
    dnnl_exec_arg_t fe[6] = {{DNNL_ARG_SRC, src},       {DNNL_ARG_DST, dst},        {DNNL_ARG_MEAN, run_mean},
                             {DNNL_ARG_VARIANCE, run_var}, {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift}};
    /* oneDNN 2.6 wants the shift in backward too when use_shift is set */
    dnnl_exec_arg_t bw[9] = {{DNNL_ARG_SRC, src},           {DNNL_ARG_MEAN, mean},
                             {DNNL_ARG_VARIANCE, var},      {DNNL_ARG_DIFF_DST, diff_dst},
                             {DNNL_ARG_SCALE, scale},       {DNNL_ARG_SHIFT, shift},
                             {DNNL_ARG_DIFF_SRC, diff_src}, {DNNL_ARG_DIFF_SCALE, dscale},
                             {DNNL_ARG_DIFF_SHIFT, dshift}};
    memcpy(r.fwd_train_args, ft, sizeof ft);
    memcpy(r.fwd_eval_args, fe, sizeof fe);
    memcpy(r.bwd_args, bw, sizeof bw);
    r.n_fwd_train = 6, r.n_bwd = 9;
    dnnl_memory_t ws = NULL;
    if (relu) {
        ws = mem_new(dnnl_primitive_desc_query_md(fpd, dnnl_query_exec_arg_md, DNNL_ARG_WORKSPACE));
        r.fwd_train_args[r.n_fwd_train++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, ws};
        r.bwd_args[r.n_bwd++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, ws};
    }

    /* a reference implementation (no JIT kernel for this layout and ISA) is orders of magnitude
     * slower: a few runs tell enough */
    int warmup = reps / 10 + 2;
    if (strstr(impl_of(fpd), "ref") || strstr(impl_of(bpd), "ref")) reps = reps < 3 ? reps : 3, warmup = 1;
    if (relu) {
        report("train_fwdbwd_relu", layout, dims, threads, bench_run(run_train_fwdbwd, &r, warmup, reps), impl_of(bpd));
    } else {
        report("train_fwd", layout, dims, threads, bench_run(run_train_fwd, &r, warmup, reps), impl_of(fpd));
        report("eval_fwd", layout, dims, threads, bench_run(run_eval_fwd, &r, warmup, reps), impl_of(epd));
        report("train_fwdbwd", layout, dims, threads, bench_run(run_train_fwdbwd, &r, warmup, reps), impl_of(bpd));
    }

    dnnl_primitive_destroy(r.fwd_train);
    dnnl_primitive_destroy(r.fwd_eval);
    dnnl_primitive_destroy(r.bwd);
    dnnl_primitive_desc_destroy(fpd);
    dnnl_primitive_desc_destroy(epd);
    dnnl_primitive_desc_destroy(bpd);
    dnnl_memory_t all[] = {src, diff_dst, dst, diff_src, mean, var, scale, shift, run_mean, run_var, dscale, dshift, ws};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]) dnnl_memory_destroy(all[i]);
}

static void usage(FILE *out) {
    fprintf(out, "usage: bench_onednn_bn --shape N,C,H,W [--threads N] [--reps N] [--layouts nchw,nChw8c,nChw16c]\n");
}

int main(int argc, char **argv) {
    int         threads = 1, reps = 50;
    long long   a = 0, b = 0, c = 0, d = 0;
    const char *layouts = "nchw,nChw8c,nChw16c";
    static const struct option longopts[] = {{"threads", required_argument, 0, 't'},
                                             {"reps", required_argument, 0, 'r'},
                                             {"shape", required_argument, 0, 's'},
                                             {"layouts", required_argument, 0, 'l'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "t:r:s:l:h", longopts, NULL)) != -1;) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 's':
            if (sscanf(optarg, "%lld,%lld,%lld,%lld", &a, &b, &c, &d) != 4) a = 0;
            break;
        case 'l': layouts = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (a < 1 || b < 1 || c < 1 || d < 1 || threads < 1) {
        usage(stderr);
        return 2;
    }
    if (reps < 1) reps = 1;
    omp_set_num_threads(threads);
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    const dnnl_version_t *v = dnnl_version();
    printf("# oneDNN %d.%d.%d, cpu isa: %s\n", v->major, v->minor, v->patch, isa_name(dnnl_get_effective_cpu_isa()));
    printf("op,layout,N,C,H,W,threads,median_ms,min_ms,GBps,impl\n");
    dnnl_dims_t dims = {a, b, c, d};
    static const struct {
        const char       *name;
        dnnl_format_tag_t tag;
    } known[] = {{"nchw", dnnl_nchw}, {"nChw8c", dnnl_nChw8c}, {"nChw16c", dnnl_nChw16c}};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        const char *hit = strstr(layouts, known[i].name);
        size_t      n = strlen(known[i].name);
        if (hit && (hit == layouts || hit[-1] == ',') && (hit[n] == '\0' || hit[n] == ','))
            for (int relu = 0; relu <= 1; relu++) bench_layout(dims, known[i].tag, known[i].name, threads, reps, relu);
    }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
    return 0;
}
