/* op_table.c — the names of the op table (op_table.h). */
#include "op_table.h"

#include <assert.h>

/* Node names as PyTorch 1.13 records them. A linear layer without bias records MmBackward0 in
 * PyTorch (input @ weight.t()), the same name as torch_matmul's node: two entries, one name. */
static const char *const op_names[AG_OP_COUNT] = {
    [AG_OP_CUSTOM] = "?",

    [AG_OP_ADD] = "AddBackward0",
    [AG_OP_SUB] = "SubBackward0",
    [AG_OP_MUL] = "MulBackward0",
    [AG_OP_DIV] = "DivBackward0",
    [AG_OP_ADD_SCALAR] = "AddBackward1",
    [AG_OP_SUB_SCALAR] = "SubBackward1",
    [AG_OP_MUL_SCALAR] = "MulBackward1",
    [AG_OP_DIV_SCALAR] = "DivBackward1",
    [AG_OP_POW_SCALAR] = "PowBackward0",
    [AG_OP_NEG] = "NegBackward0",
    [AG_OP_EXP] = "ExpBackward0",
    [AG_OP_LOG] = "LogBackward0",
    [AG_OP_SQRT] = "SqrtBackward0",
    [AG_OP_RSQRT] = "RsqrtBackward0",
    [AG_OP_RELU] = "ReluBackward0",

    [AG_OP_SUM] = "SumBackward0",      /* over every element */
    [AG_OP_SUM_DIM] = "SumBackward1",  /* over a list of dims */
    [AG_OP_MEAN] = "MeanBackward0",
    [AG_OP_MEAN_DIM] = "MeanBackward1",
    [AG_OP_VAR] = "VarBackward0",
    [AG_OP_MAX_DIM] = "MaxBackward0",

    [AG_OP_MM] = "MmBackward0",

    [AG_OP_VIEW] = "ViewBackward0",             /* reshape/flatten that could alias */
    [AG_OP_UNSAFE_VIEW] = "UnsafeViewBackward0", /* reshape that had to copy */
    [AG_OP_SELECT] = "SelectBackward0",
    [AG_OP_SLICE] = "SliceBackward0",            /* torch_narrow */
    [AG_OP_TRANSPOSE] = "TransposeBackward0",
    [AG_OP_PERMUTE] = "PermuteBackward0",
    [AG_OP_UNSQUEEZE] = "UnsqueezeBackward0",
    [AG_OP_SQUEEZE_DIM] = "SqueezeBackward1",
    [AG_OP_CLONE] = "CloneBackward0",            /* torch_contiguous that copied */

    [AG_OP_LINEAR] = "AddmmBackward0",
    [AG_OP_LINEAR_NO_BIAS] = "MmBackward0",
    [AG_OP_CONV2D] = "ConvolutionBackward0",
    [AG_OP_BATCH_NORM] = "NativeBatchNormBackward0",
    [AG_OP_BATCH_NORM_RELU] = "NativeBatchNormReluBackward0", /* ctorch's fused pair; no PyTorch twin */
    [AG_OP_SYNC_BATCH_NORM] = "SyncBatchNormBackward",         /* torch.nn.modules._functions.SyncBatchNorm */
    [AG_OP_MAX_POOL2D] = "MaxPool2DWithIndicesBackward0",
    [AG_OP_AVG_POOL2D] = "AvgPool2DBackward0",
    [AG_OP_ADAPTIVE_AVG_POOL2D] = "AdaptiveAvgPool2DBackward0",
    [AG_OP_DROPOUT] = "NativeDropoutBackward0",
    [AG_OP_LOG_SOFTMAX] = "LogSoftmaxBackward0",
    [AG_OP_CROSS_ENTROPY] = "NllLossBackward0",
    [AG_OP_MSE_LOSS] = "MseLossBackward0",
};

/* Adding an enum entry without its name (or removing one) fails here: update both, and this count. */
static_assert(AG_OP_COUNT == 45, "op_table.h and op_names disagree: update both and this count");

const char *ag_op_name(ag_op op) {
    return (unsigned)op < AG_OP_COUNT && op_names[op] ? op_names[op] : "?";
}
