/* op_table.h — every differentiable op of ctorch, one enum entry each, with the name PyTorch gives
 * its graph node (what print(y) shows after "grad_fn=<").
 *
 * Ownership: the table is static data; ag_op_name returns a static string.
 *
 * Each op's ag_function (autograd.h) is defined next to its forward and backward and says which
 * entry it is (.op = AG_OP_CONV2D). The names live here only. tests/test_op_table.c walks the
 * table: every entry has a name, its op records a node with a backward, and a gradcheck case
 * passes. Adding an op: add the enum entry and its name here (the static assert counts them),
 * set .op in its ag_function, and add its gradcheck case to that test.
 *
 * An op defined outside the library (a learner's own layer, a test's) leaves .op at
 * AG_OP_CUSTOM and names itself with ag_function.name.
 */
#ifndef CTORCH_AUTOGRAD_OP_TABLE_H
#define CTORCH_AUTOGRAD_OP_TABLE_H

typedef enum ag_op {
    AG_OP_CUSTOM = 0, /* not in the table: ag_function.name names it */

    /* autograd/ops_elementwise.c */
    AG_OP_ADD,
    AG_OP_SUB,
    AG_OP_MUL,
    AG_OP_DIV,
    AG_OP_ADD_SCALAR,
    AG_OP_SUB_SCALAR,
    AG_OP_MUL_SCALAR,
    AG_OP_DIV_SCALAR,
    AG_OP_POW_SCALAR,
    AG_OP_NEG,
    AG_OP_EXP,
    AG_OP_LOG,
    AG_OP_SQRT,
    AG_OP_RSQRT,
    AG_OP_RELU,
    /* autograd/ops_reduce.c */
    AG_OP_SUM,
    AG_OP_SUM_DIM,
    AG_OP_MEAN,
    AG_OP_MEAN_DIM,
    AG_OP_VAR,
    AG_OP_MAX_DIM,
    /* autograd/ops_linalg.c */
    AG_OP_MM,
    /* autograd/ops_view.c */
    AG_OP_VIEW,
    AG_OP_UNSAFE_VIEW,
    AG_OP_SELECT,
    AG_OP_SLICE,
    AG_OP_TRANSPOSE,
    AG_OP_PERMUTE,
    AG_OP_UNSQUEEZE,
    AG_OP_SQUEEZE_DIM,
    AG_OP_CLONE,
    /* nn/linear.c */
    AG_OP_LINEAR,
    AG_OP_LINEAR_NO_BIAS,
    /* nn/conv.c */
    AG_OP_CONV2D,
    /* nn/functional_batch_norm.c */
    AG_OP_BATCH_NORM,
    AG_OP_BATCH_NORM_RELU,
    /* nn/functional_sync_batch_norm.c */
    AG_OP_SYNC_BATCH_NORM,
    /* nn/pooling.c */
    AG_OP_MAX_POOL2D,
    AG_OP_AVG_POOL2D,
    AG_OP_ADAPTIVE_AVG_POOL2D,
    /* nn/activation.c */
    AG_OP_DROPOUT,
    /* nn/loss.c */
    AG_OP_LOG_SOFTMAX,
    AG_OP_CROSS_ENTROPY,
    AG_OP_MSE_LOSS,

    AG_OP_COUNT,
} ag_op;

/* PyTorch's node name of op ("AddBackward0"); "?" for AG_OP_CUSTOM or a value out of range. */
const char *ag_op_name(ag_op op);

#endif /* CTORCH_AUTOGRAD_OP_TABLE_H */
