/* summary.h — a model summary like torchinfo's summary(model, input_size): each layer with its
 * output shape and parameter count for a given input shape, and the totals.
 *
 * Ownership: nn_module_summary returns an owned nn_summary (NULL on error, torch_last_error()
 * says why) that nn_summary_free releases, rows included; the rows' type names are static.
 * nn_summary_str returns a malloc'ed string the caller frees.
 *
 * How it is made, as torchinfo makes it: one forward of an input of the given shape in eval mode
 * and without grad, watching every module's forward (BatchNorm and ReLU run unfused, so each gets
 * its row). The input is zeros where torchinfo draws torch.rand: shapes and counts do not depend
 * on the values. Nothing of the model changes: running statistics are not updated in eval mode,
 * and each module's training flag is restored afterwards, also when the forward fails (then the
 * message is the failing layer's, e.g. a shape the model refuses).
 *
 * Where it differs from torchinfo's defaults: every depth is listed (torchinfo stops at depth 3),
 * and param_bytes counts every parameter that total_params counts (torchinfo counts those of leaf
 * layers only); both agree with torchinfo for a model whose containers hold no parameters of
 * their own and that nests no deeper than 3.
 *
 *   nn_summary *s = nn_module_summary(model, TORCH_SHAPE(64, 1, 28, 28));
 *   char *table = nn_summary_str(s);
 *   fputs(table, stdout);
 *   free(table);
 *   nn_summary_free(s);
 */
#ifndef CTORCH_NN_SUMMARY_H
#define CTORCH_NN_SUMMARY_H

#include "module.h"

/* One row per module forward, in call order (torchinfo's rows, a parent before its children). */
typedef struct nn_summary_row {
    const char *type_name;        /* "Conv2d"; static */
    int         depth;            /* 0 for the model itself, 1 for its children, ... */
    int64_t     depth_index;      /* torchinfo's "1-3": this is the 3rd row at depth 1 (0 at depth 0) */
    bool        is_leaf;          /* the module has no children */
    bool        recursive;        /* the module ran before in this forward: its parameters count once */
    int         ndim;             /* the output's shape */
    int64_t     shape[TORCH_MAX_DIMS];
    int64_t     num_params;       /* of the module and its descendants */
    int64_t     trainable_params; /* of those, the ones that require grad */
    int64_t     output_bytes;
    int64_t     mult_adds;        /* torchinfo's count for a leaf with parameters, else 0 (see below) */
} nn_summary_row;

typedef struct nn_summary {
    int64_t         num_rows;
    nn_summary_row *rows;
    int64_t total_params;      /* every parameter the forward used, each module counted once */
    int64_t trainable_params;
    int64_t param_bytes;
    int64_t input_bytes;
    /* torchinfo's "Forward/backward pass size": twice (output and its gradient) the output
     * bytes of each leaf layer with parameters. */
    int64_t forward_backward_bytes;
    /* The sum of every leaf layer's output bytes for this input, parameter-free layers included
     * (ReLU, pools; an output that is a view, such as Flatten's, counts again). */
    int64_t activation_bytes;
    /* torchinfo's "Total mult-adds": per leaf with parameters, each weight or bias element
     * times N*H_out*W_out for a convolution, times N (the output's first dim) otherwise. */
    int64_t mult_adds;
} nn_summary;

/* Summarises m for an input of the given shape (batch dim included). Counts that would pass
 * INT64_MAX (mult-adds of an enormous input) saturate there. */
nn_summary *nn_module_summary(nn_module *m, int ndim, const int64_t *input_shape);

/* torchinfo's table (its default columns, Output Shape and Param #), with one line more,
 * "Activations (MB)", after "Forward/backward pass size (MB)". */
char *nn_summary_str(const nn_summary *s);

void nn_summary_free(nn_summary *s);

#endif /* CTORCH_NN_SUMMARY_H */
