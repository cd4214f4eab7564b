/* An outside program using the installed ctorch (see run.sh). */
#include <ctorch/ctorch.h>

#include <stdio.h>

int main(void) {
    tensor *x = torch_ones(TORCH_SHAPE(2, 3));
    if (x == NULL) {
        fprintf(stderr, "torch_ones failed: %s\n", torch_last_error());
        return 1;
    }
    printf("numel = %lld, x[1][2] = %g\n", (long long)x->numel,
           tensor_get(x, (const int64_t[]){1, 2}));
    int ok = x->numel == 6 && tensor_get(x, (const int64_t[]){1, 2}) == 1.0;
    tensor_free(x);
    return ok ? 0 : 1;
}
