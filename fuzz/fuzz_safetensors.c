/* fuzz_safetensors.c — libFuzzer harness for the safetensors reader (io_safetensors_parse).
 *
 * Any input must be either refused with TORCH_ERR_FORMAT or parsed into a dict; ASan/UBSan
 * catch any read outside the input. A parsed file must also survive a round trip: serialized
 * again and re-read, it gives the same keys, shapes and bytes.
 * Run through scripts/fuzz.sh (seeds in fuzz/corpus/fuzz_safetensors/). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"

static size_t bytes_of(const tensor *t) { return (size_t)t->numel * torch_dtype_size(t->dtype); }
static const void *data_of(const tensor *t) {
    return t->dtype == TORCH_INT64 ? (const void *)tensor_data_i64(t) : (const void *)tensor_data_f32(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    io_metadata *md = NULL;
    nn_tensor_dict *d = io_safetensors_parse(data, size, "fuzz", &md);
    if (!d) {
        if (torch_last_status() != TORCH_ERR_FORMAT && torch_last_status() != TORCH_ERR_OUT_OF_MEMORY) abort();
        return 0;
    }
    uint8_t *out = NULL;
    size_t n = 0;
    if (io_safetensors_serialize(d, md, &out, &n) != TORCH_OK) abort();
    io_metadata *md2 = NULL;
    nn_tensor_dict *d2 = io_safetensors_parse(out, n, "round trip", &md2);
    if (!d2 || d2->count != d->count || md2->count != md->count) abort();
    for (int64_t i = 0; i < d->count; i++) {
        const tensor *a = d->items[i].value, *b = d2->items[i].value;
        if (strcmp(d->items[i].name, d2->items[i].name) != 0 || a->dtype != b->dtype || !tensor_same_shape(a, b) ||
            memcmp(data_of(a), data_of(b), bytes_of(a)) != 0)
            abort();
    }
    nn_tensor_dict_free(d2);
    io_metadata_free(md2);
    free(out);
    nn_tensor_dict_free(d);
    io_metadata_free(md);
    return 0;
}
