/* test_op_table.c — walks the op table (autograd/op_table.h): every entry has PyTorch's kind of
 * name, its op records a node of that entry with a backward, and the node's analytic gradient
 * passes torch_gradcheck (central finite differences in double) on a case listed here, indexed
 * by the enum. An op added to the table without a case here fails `every_op_has_a_case`. */
#include <criterion/criterion.h>
#include <string.h>

#include "ctorch.h"

/* How a case's inputs are drawn: away from the kinks and poles its op has. */
typedef enum { SIGNED, POSITIVE, AWAY_FROM_ZERO } draw;

typedef struct op_case {
    torch_gradcheck_fn fn;
    int                n;            /* inputs, all checked */
    int                ndim[3];
    int64_t            shape[3][4];
    draw               draw;
} op_case;

/* ---- the ops, as functions of their inputs ------------------------------------------------------ */

static const int dim1[] = {1};

static tensor *add(tensor *const *x, void *u) { (void)u; return torch_add(x[0], x[1]); }
static tensor *sub(tensor *const *x, void *u) { (void)u; return torch_sub(x[0], x[1]); }
static tensor *mul(tensor *const *x, void *u) { (void)u; return torch_mul(x[0], x[1]); }
static tensor *div_(tensor *const *x, void *u) { (void)u; return torch_div(x[0], x[1]); }
static tensor *add_s(tensor *const *x, void *u) { (void)u; return torch_add_scalar(x[0], 1.5); }
static tensor *sub_s(tensor *const *x, void *u) { (void)u; return torch_sub_scalar(x[0], 1.5); }
static tensor *mul_s(tensor *const *x, void *u) { (void)u; return torch_mul_scalar(x[0], -2.5); }
static tensor *div_s(tensor *const *x, void *u) { (void)u; return torch_div_scalar(x[0], 0.75); }
static tensor *pow_s(tensor *const *x, void *u) { (void)u; return torch_pow_scalar(x[0], 2.5); }
static tensor *neg(tensor *const *x, void *u) { (void)u; return torch_neg(x[0]); }
static tensor *exp_(tensor *const *x, void *u) { (void)u; return torch_exp(x[0]); }
static tensor *log_(tensor *const *x, void *u) { (void)u; return torch_log(x[0]); }
static tensor *sqrt_(tensor *const *x, void *u) { (void)u; return torch_sqrt(x[0]); }
static tensor *rsqrt(tensor *const *x, void *u) { (void)u; return torch_rsqrt(x[0]); }
static tensor *relu(tensor *const *x, void *u) { (void)u; return torch_relu(x[0]); }
static tensor *sum(tensor *const *x, void *u) { (void)u; return torch_sum(x[0], 0, NULL, false); }
static tensor *sum_dim(tensor *const *x, void *u) { (void)u; return torch_sum(x[0], 1, dim1, false); }
static tensor *mean(tensor *const *x, void *u) { (void)u; return torch_mean(x[0], 0, NULL, false); }
static tensor *mean_dim(tensor *const *x, void *u) { (void)u; return torch_mean(x[0], 1, dim1, true); }
static tensor *var(tensor *const *x, void *u) { (void)u; return torch_var(x[0], 1, dim1, 1, false); }
static tensor *max_dim(tensor *const *x, void *u) { (void)u; return torch_max(x[0], 1, false, NULL); }
static tensor *mm(tensor *const *x, void *u) { (void)u; return torch_matmul(x[0], x[1]); }
static tensor *view(tensor *const *x, void *u) { (void)u; return torch_reshape(x[0], TORCH_SHAPE(6, 2)); }
static tensor *select_(tensor *const *x, void *u) { (void)u; return torch_select(x[0], 1, 2); }
static tensor *slice(tensor *const *x, void *u) { (void)u; return torch_narrow(x[0], 1, 1, 2); }
static tensor *transpose(tensor *const *x, void *u) { (void)u; return torch_transpose(x[0], 0, 1); }
static tensor *unsqueeze(tensor *const *x, void *u) { (void)u; return torch_unsqueeze(x[0], 1); }
static tensor *squeeze(tensor *const *x, void *u) { (void)u; return torch_squeeze(x[0], 1); }

static tensor *permute(tensor *const *x, void *u) {
    (void)u;
    return torch_permute(x[0], 3, (const int[]){2, 0, 1});
}

/* A reshape of a transposed tensor must copy (UnsafeViewBackward0); a contiguous copy of one
 * records CloneBackward0. The transpose's own node sits below. */
static tensor *unsafe_view(tensor *const *x, void *u) {
    (void)u;
    tensor *t = torch_transpose(x[0], 0, 1);
    tensor *y = torch_reshape(t, TORCH_SHAPE(12));
    tensor_free(t);
    return y;
}

static tensor *clone(tensor *const *x, void *u) {
    (void)u;
    tensor *t = torch_transpose(x[0], 0, 1);
    tensor *y = torch_contiguous(t);
    tensor_free(t);
    return y;
}

static tensor *linear(tensor *const *x, void *u) { (void)u; return nnf_linear(x[0], x[1], x[2]); }
static tensor *linear_no_bias(tensor *const *x, void *u) { (void)u; return nnf_linear(x[0], x[1], NULL); }

static tensor *conv2d(tensor *const *x, void *u) {
    (void)u;
    return nnf_conv2d(x[0], x[1], x[2], NULL, (const int64_t[]){1, 1}, NULL);
}

static tensor *batch_norm(tensor *const *x, void *u) {
    (void)u;
    return nnf_batch_norm(x[0], NULL, NULL, x[1], x[2], true, 0.1, 1e-5);
}

static tensor *batch_norm_relu(tensor *const *x, void *u) {
    (void)u;
    return nnf_batch_norm_relu(x[0], NULL, NULL, x[1], x[2], true, 0.1, 1e-5);
}

/* SyncBatchNorm in a group of one process: the other processes' shares are what
 * tests/mpi/equivalence.c checks under MPI. */
static torch_status one_gather(void *h, const double *send, double *recv, int64_t n) {
    (void)h;
    memcpy(recv, send, (size_t)n * sizeof *send);
    return TORCH_OK;
}
static torch_status one_sum(void *h, double *values, int64_t n) {
    (void)h, (void)values, (void)n;
    return TORCH_OK;
}
static tensor *sync_batch_norm(tensor *const *x, void *u) {
    (void)u;
    static const nn_process_group one = {.size = 1, .all_gather = one_gather, .all_reduce_sum = one_sum};
    return nnf_sync_batch_norm(x[0], NULL, NULL, x[1], x[2], 0.1, 1e-5, &one);
}

static tensor *max_pool2d(tensor *const *x, void *u) {
    (void)u;
    return nnf_max_pool2d(x[0], nn_max_pool2d_options_default(2), NULL);
}

static tensor *avg_pool2d(tensor *const *x, void *u) {
    (void)u;
    return nnf_avg_pool2d(x[0], NN_AVG_POOL2D_OPTIONS(.kernel_size = {3, 3}, .stride = {2, 2}, .padding = {1, 1}));
}

static tensor *adaptive_avg_pool2d(tensor *const *x, void *u) {
    (void)u;
    return nnf_adaptive_avg_pool2d(x[0], 2, 3);
}

/* The mask must be the same at every call: a generator seeded afresh each time. */
static tensor *dropout(tensor *const *x, void *u) {
    (void)u;
    torch_generator g = torch_generator_new(7);
    return nnf_dropout(x[0], 0.3, true, &g);
}

static tensor *log_softmax(tensor *const *x, void *u) { (void)u; return nnf_log_softmax(x[0], 1); }

static tensor *cross_entropy(tensor *const *x, void *u) {
    (void)u;
    tensor *target = torch_empty_dtype(TORCH_INT64, TORCH_SHAPE(4));
    for (int i = 0; i < 4; i++) tensor_data_i64(target)[i] = (3 * i + 1) % 5;
    tensor *y = nnf_cross_entropy(x[0], target);
    tensor_free(target);
    return y;
}

static tensor *mse_loss(tensor *const *x, void *u) { (void)u; return nnf_mse_loss(x[0], x[1]); }

/* ---- the cases, indexed by the op table's enum -------------------------------------------------- */

#define S(...) {__VA_ARGS__}
#define CASE1(f, nd, sh, d) {.fn = f, .n = 1, .ndim = {nd}, .shape = {S sh}, .draw = d}

static const op_case cases[AG_OP_COUNT] = {
    [AG_OP_ADD] = {add, 2, {2, 1}, {{3, 4}, {4}}, SIGNED}, /* broadcast: the driver sums dy back */
    [AG_OP_SUB] = {sub, 2, {2, 2}, {{3, 4}, {1, 4}}, SIGNED},
    [AG_OP_MUL] = {mul, 2, {2, 2}, {{3, 4}, {3, 4}}, SIGNED},
    [AG_OP_DIV] = {div_, 2, {2, 2}, {{3, 4}, {3, 4}}, POSITIVE},
    [AG_OP_ADD_SCALAR] = CASE1(add_s, 2, (3, 4), SIGNED),
    [AG_OP_SUB_SCALAR] = CASE1(sub_s, 2, (3, 4), SIGNED),
    [AG_OP_MUL_SCALAR] = CASE1(mul_s, 2, (3, 4), SIGNED),
    [AG_OP_DIV_SCALAR] = CASE1(div_s, 2, (3, 4), SIGNED),
    [AG_OP_POW_SCALAR] = CASE1(pow_s, 2, (3, 4), POSITIVE),
    [AG_OP_NEG] = CASE1(neg, 2, (3, 4), SIGNED),
    [AG_OP_EXP] = CASE1(exp_, 2, (3, 4), SIGNED),
    [AG_OP_LOG] = CASE1(log_, 2, (3, 4), POSITIVE),
    [AG_OP_SQRT] = CASE1(sqrt_, 2, (3, 4), POSITIVE),
    [AG_OP_RSQRT] = CASE1(rsqrt, 2, (3, 4), POSITIVE),
    [AG_OP_RELU] = CASE1(relu, 2, (3, 4), AWAY_FROM_ZERO),
    [AG_OP_SUM] = CASE1(sum, 2, (3, 4), SIGNED),
    [AG_OP_SUM_DIM] = CASE1(sum_dim, 3, (2, 3, 4), SIGNED),
    [AG_OP_MEAN] = CASE1(mean, 2, (3, 4), SIGNED),
    [AG_OP_MEAN_DIM] = CASE1(mean_dim, 3, (2, 3, 4), SIGNED),
    [AG_OP_VAR] = CASE1(var, 3, (2, 5, 3), SIGNED),
    [AG_OP_MAX_DIM] = CASE1(max_dim, 3, (2, 5, 3), SIGNED),
    [AG_OP_MM] = {mm, 2, {2, 2}, {{3, 4}, {4, 5}}, SIGNED},
    [AG_OP_VIEW] = CASE1(view, 2, (3, 4), SIGNED),
    [AG_OP_UNSAFE_VIEW] = CASE1(unsafe_view, 2, (3, 4), SIGNED),
    [AG_OP_SELECT] = CASE1(select_, 3, (2, 3, 4), SIGNED),
    [AG_OP_SLICE] = CASE1(slice, 3, (2, 4, 3), SIGNED),
    [AG_OP_TRANSPOSE] = CASE1(transpose, 2, (3, 4), SIGNED),
    [AG_OP_PERMUTE] = CASE1(permute, 3, (2, 3, 4), SIGNED),
    [AG_OP_UNSQUEEZE] = CASE1(unsqueeze, 2, (3, 4), SIGNED),
    [AG_OP_SQUEEZE_DIM] = CASE1(squeeze, 3, (3, 1, 4), SIGNED),
    [AG_OP_CLONE] = CASE1(clone, 2, (3, 4), SIGNED),
    [AG_OP_LINEAR] = {linear, 3, {2, 2, 1}, {{3, 4}, {5, 4}, {5}}, SIGNED},
    [AG_OP_LINEAR_NO_BIAS] = {linear_no_bias, 2, {2, 2}, {{3, 4}, {5, 4}}, SIGNED},
    [AG_OP_CONV2D] = {conv2d, 3, {4, 4, 1}, {{2, 3, 5, 4}, {2, 3, 3, 3}, {2}}, SIGNED},
    [AG_OP_BATCH_NORM] = {batch_norm, 3, {4, 1, 1}, {{3, 2, 2, 3}, {2}, {2}}, SIGNED},
    [AG_OP_BATCH_NORM_RELU] = {batch_norm_relu, 3, {4, 1, 1}, {{3, 2, 2, 3}, {2}, {2}}, SIGNED},
    [AG_OP_SYNC_BATCH_NORM] = {sync_batch_norm, 3, {4, 1, 1}, {{3, 2, 2, 3}, {2}, {2}}, SIGNED},
    [AG_OP_MAX_POOL2D] = CASE1(max_pool2d, 4, (2, 2, 4, 6), SIGNED),
    [AG_OP_AVG_POOL2D] = CASE1(avg_pool2d, 4, (2, 2, 5, 4), SIGNED),
    [AG_OP_ADAPTIVE_AVG_POOL2D] = CASE1(adaptive_avg_pool2d, 4, (1, 2, 5, 7), SIGNED),
    [AG_OP_DROPOUT] = CASE1(dropout, 2, (3, 4), SIGNED),
    [AG_OP_LOG_SOFTMAX] = CASE1(log_softmax, 2, (3, 5), SIGNED),
    [AG_OP_CROSS_ENTROPY] = CASE1(cross_entropy, 2, (4, 5), SIGNED),
    [AG_OP_MSE_LOSS] = {mse_loss, 2, {2, 2}, {{3, 4}, {3, 4}}, SIGNED},
};

/* Uniform inputs of a case, requiring grad; drawn from a seed so that a run is reproducible. */
static tensor *draw_input(const op_case *c, int i, uint64_t seed) {
    torch_generator g = torch_generator_new(seed);
    tensor *t = torch_empty(c->ndim[i], c->shape[i]);
    float *d = tensor_data_f32(t);
    for (int64_t k = 0; k < t->numel; k++) {
        double u = torch_generator_uniform(&g);
        switch (c->draw) {
        case SIGNED: d[k] = (float)(2 * u - 1); break;
        case POSITIVE: d[k] = (float)(0.5 + u); break;
        case AWAY_FROM_ZERO: d[k] = (float)((k % 2 ? 1 : -1) * (0.1 + u)); break;
        }
    }
    cr_assert_eq(tensor_set_requires_grad(t, true), TORCH_OK);
    return t;
}

/* PyTorch names nodes <Op>Backward<N>, and those of its Python autograd Functions <Function>Backward
 * (SyncBatchNormBackward). */
static bool pytorch_style(const char *name) {
    const char *b = strstr(name, "Backward");
    return b && b != name && (b[8] == '\0' || (b[8] >= '0' && b[8] <= '9' && b[9] == '\0'));
}

Test(op_table, every_entry_has_a_pytorch_name) {
    cr_assert_str_eq(ag_op_name(AG_OP_CUSTOM), "?");
    cr_assert_str_eq(ag_op_name(AG_OP_COUNT), "?");
    for (int op = AG_OP_CUSTOM + 1; op < AG_OP_COUNT; op++) {
        const char *name = ag_op_name(op);
        cr_assert(strcmp(name, "?") != 0, "op %d has no name in op_table.c", op);
        cr_assert(pytorch_style(name), "op %d: %s is not named like PyTorch's nodes", op, name);
        for (int other = AG_OP_CUSTOM + 1; other < op; other++) {
            /* Linear without bias is MmBackward0 in PyTorch too: the one shared name. */
            bool shared = other == AG_OP_MM && op == AG_OP_LINEAR_NO_BIAS;
            cr_assert(shared || strcmp(ag_op_name(other), name) != 0, "%s names ops %d and %d", name, other, op);
        }
    }
}

Test(op_table, every_op_has_a_case) {
    for (int op = AG_OP_CUSTOM + 1; op < AG_OP_COUNT; op++)
        cr_assert_not_null(cases[op].fn, "%s (op %d) has no gradcheck case in test_op_table.c", ag_op_name(op), op);
}

/* The case's op records a node of its own entry, with a backward, and the gradient checks. */
Test(op_table, every_op_records_its_node_and_passes_gradcheck) {
    for (int op = AG_OP_CUSTOM + 1; op < AG_OP_COUNT; op++) {
        const op_case *c = &cases[op];
        if (!c->fn) continue; /* every_op_has_a_case reports it */
        tensor *in[3] = {NULL, NULL, NULL};
        for (int i = 0; i < c->n; i++) in[i] = draw_input(c, i, 1000 * (uint64_t)op + (uint64_t)i);

        tensor *y = c->fn(in, NULL);
        cr_assert_not_null(y, "%s: the op failed: %s", ag_op_name(op), torch_last_error());
        cr_assert_not_null(y->grad_fn, "%s: nothing recorded", ag_op_name(op));
        const ag_function *fn = y->grad_fn->fn;
        cr_assert_eq(fn->op, (ag_op)op, "%s: the case recorded %s", ag_op_name(op), ag_function_name(fn));
        cr_assert_str_eq(ag_function_name(fn), ag_op_name(op));
        cr_assert_not_null(fn->backward, "%s has no backward", ag_op_name(op));
        tensor_free(y);

        torch_gradcheck_result r;
        torch_status st = torch_gradcheck(c->fn, NULL, c->n, in, NULL, torch_gradcheck_options_default(), &r);
        cr_assert_eq(st, TORCH_OK, "%s: %s", ag_op_name(op), r.message);
        cr_log_info("%-30s max abs err %.2e  max rel err %.2e", ag_op_name(op), r.max_abs_err, r.max_rel_err);
        for (int i = 0; i < c->n; i++) tensor_free(in[i]);
    }
}

/* An op defined outside the library names itself. */
Test(op_table, a_custom_function_keeps_its_own_name) {
    static const ag_function custom = {.name = "SquareBackward0"};
    static const ag_function unnamed = {0};
    cr_assert_eq(custom.op, AG_OP_CUSTOM);
    cr_assert_str_eq(ag_function_name(&custom), "SquareBackward0");
    cr_assert_str_eq(ag_function_name(&unnamed), "?");
}
