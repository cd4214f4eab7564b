/* fuzz_idx.c — libFuzzer harness for the IDX reader on memory (data_idx_parse), plain and gzip.
 *
 * Any input must be refused with TORCH_ERR_FORMAT or give a consistent data_idx (numel equal to
 * the product of dims, every byte readable). Run through scripts/fuzz.sh. */
#include <stdint.h>
#include <stdlib.h>

#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    data_idx *idx = data_idx_parse(data, size, "fuzz");
    if (!idx) {
        if (torch_last_status() != TORCH_ERR_FORMAT && torch_last_status() != TORCH_ERR_OUT_OF_MEMORY) abort();
        return 0;
    }
    int64_t n = 1;
    for (int i = 0; i < idx->ndim; i++) n *= idx->dims[i];
    if (idx->ndim < 1 || idx->ndim > 4 || n != idx->numel) abort();
    unsigned sum = 0;
    for (int64_t i = 0; i < idx->numel; i++) sum += idx->data[i]; /* ASan: all of it is ours */
    (void)sum;
    data_idx_free(idx);
    return 0;
}
