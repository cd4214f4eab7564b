/* module_dot.c — nn_module_make_dot (see module_dot.h). */
#include "module_dot.h"

#include <stdlib.h>

char *nn_module_make_dot(const nn_module *m, const tensor *root, const tensor *input, bool show_saved) {
    if (!m || !root) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "nn_module_make_dot: %s is NULL", m ? "root" : "module");
        return NULL;
    }
    nn_tensor_dict *params = nn_module_named_parameters(m);
    nn_tensor_dict *buffers = params ? nn_module_named_buffers(m) : NULL;
    torch_dot_label *labels = NULL;
    if (buffers) {
        labels = malloc(sizeof *labels * (size_t)(params->count + buffers->count + 1));
        if (!labels) torch_error(TORCH_ERR_OUT_OF_MEMORY, "nn_module_make_dot: out of memory");
    }
    char *dot = NULL;
    if (labels) {
        int n = 0;
        if (input) labels[n++] = (torch_dot_label){.tensor = input, .name = "input", .role = TORCH_DOT_INPUT};
        for (int64_t i = 0; i < params->count; i++)
            labels[n++] = (torch_dot_label){params->items[i].value, params->items[i].name, TORCH_DOT_PARAMETER};
        for (int64_t i = 0; i < buffers->count; i++)
            labels[n++] = (torch_dot_label){buffers->items[i].value, buffers->items[i].name, TORCH_DOT_BUFFER};
        dot = torch_make_dot(root, (torch_make_dot_options){.labels = labels, .n_labels = n, .show_saved = show_saved});
    }
    free(labels);
    nn_tensor_dict_free(buffers);
    nn_tensor_dict_free(params);
    return dot;
}
