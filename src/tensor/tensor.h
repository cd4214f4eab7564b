/* tensor.h — the n-dimensional array every other layer is built on.
 *
 * Ownership (read this first):
 *   - A `tensor *` is reference counted. Every function that returns a `tensor *` returns a new
 *     reference that the caller owns and must release with tensor_free() (NULL on failure, with
 *     torch_last_error() set). tensor_free(NULL) does nothing.
 *   - tensor_retain(t) adds a reference; each reference is released by one tensor_free().
 *   - Views (tensor_as_strided and the differentiable torch_reshape, torch_select, ... built on it)
 *     are new tensor structs that share the storage of their base; the storage lives until the
 *     last tensor using it is freed. Writing through a view writes the base, as in PyTorch.
 *   - Data pointers (tensor_data_f32, ...) are borrowed: valid while the tensor lives.
 *   - Functions taking `const tensor *` only read. Reference counts are not atomic: share a
 *     tensor between threads only for reading.
 *
 * dtypes: float32 for everything numeric, int64 for counters and indices
 * (num_batches_tracked, class labels, argmax), as in PyTorch.
 */
#ifndef CTORCH_TENSOR_H
#define CTORCH_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "generator.h"
#include "status.h"

#define TORCH_MAX_DIMS 8

/* Most elements a tensor may have: its bytes (8 per element at most) and every element offset
 * must fit in ptrdiff_t, so that no size or index computation can wrap. Shapes are checked
 * against it, with each 0 counted as 1, since strides are products of the sizes too. */
#define TORCH_MAX_NUMEL ((int64_t)(PTRDIFF_MAX / 8))

typedef enum torch_dtype {
    TORCH_FLOAT32 = 0, /* torch_float32, torch_float */
    TORCH_INT64,       /* torch_int64, torch_long  */
    TORCH_DTYPE_COUNT
} torch_dtype;

/* "float32" / "int64"; static. */
const char *torch_dtype_name(torch_dtype dtype);
/* Bytes per element. */
size_t torch_dtype_size(torch_dtype dtype);

/* Shared, reference-counted buffer. Private to the tensor layer; reach data through a tensor. */
typedef struct torch_storage torch_storage;

struct ag_node; /* autograd's graph node (src/autograd); opaque here */

/* What this layer may do with the graph node it cannot see; filled in by src/autograd. */
typedef struct tensor_grad_fn_ops {
    void        (*release)(struct ag_node *node);     /* drop one reference */
    const char *(*name)(const struct ag_node *node);  /* "AddBackward0", for printing */
} tensor_grad_fn_ops;

typedef struct tensor {
    torch_storage *storage;          /* owned reference */
    int64_t        offset;           /* first element, in elements from the storage start */
    int            ndim;             /* 0 for a scalar */
    int64_t        shape[TORCH_MAX_DIMS];
    int64_t        stride[TORCH_MAX_DIMS]; /* in elements; row-major when contiguous */
    int64_t        numel;
    torch_dtype    dtype;
    int            refcount;
    uint64_t       id;               /* this struct's serial number, never reused in the process (a
                                        view is a new struct: a new id; its storage is shared:
                                        tensor_storage_id) */

    /* Autograd state. The autograd layer sets these; this layer only releases them. */
    bool           requires_grad;    /* a leaf the user wants gradients for, or an op output */
    struct tensor *grad;             /* owned; accumulated by backward; NULL until then */
    struct ag_node *grad_fn;         /* owned reference to the node that made this tensor */
    const tensor_grad_fn_ops *grad_fn_ops; /* set together with grad_fn */
} tensor;

/* Writes n and a shape literal for the variadic-free creation API:
 *   tensor *x = torch_randn(NULL, TORCH_SHAPE(20, 100, 35, 45));  */
#define TORCH_SHAPE(...) \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* ---- grad mode and in-place writes ------------------------------------------------------------ */

/* Thread-local grad mode (R torch's with_no_grad), on by default. Returns the previous mode so
 * that scopes nest:  bool prev = torch_set_grad_enabled(false);  ...  torch_set_grad_enabled(prev);
 * It lives in this layer because the in-place functions below consult it; autograd.h explains
 * what it switches. */
bool torch_set_grad_enabled(bool enabled);
bool torch_is_grad_enabled(void);

/* No-grad scopes: R torch's with_no_grad, PyTorch's `with torch.no_grad()` and C++ NoGradGuard.
 *
 * The pitfall they avoid is switching grad mode off and on by hand:
 *     torch_set_grad_enabled(false);
 *     tensor *out = nn_module_forward(model, x);
 *     if (!out) return -1;             <- returns with grad mode still off
 *     ...
 *     torch_set_grad_enabled(true);    <- and turns it on for a caller that had it off
 * After an early return, break or goto, grad mode stays off for the rest of the thread: every
 * later forward records no graph, and training fails far from the cause, in backward ("element 0
 * of tensors does not require grad") or with parameters that never move.
 *
 * TORCH_NO_GRAD_GUARD; declares a guard: grad mode is off from there to the end of the
 * enclosing block, and back to what it was when the block is left by any path (return, break,
 * continue, goto, or the closing brace). Guards nest: each restores the mode it found.
 *     while (data_dataloader_next(dl, &x, &y) == TORCH_OK && x) {
 *         TORCH_NO_GRAD_GUARD;
 *         tensor *logits = nn_module_forward(model, x);
 *         if (!logits) break;          <- grad mode restored here
 *         ...
 *     }                                <- and at the end of every iteration
 * It is a declaration: put it at the start of a braced block (not right after a label, and not
 * as the unbraced body of an if or a loop), and never jump into its scope with goto or a switch
 * case, which would skip its start. It needs GCC or Clang (__attribute__((cleanup)); standard C
 * has no destructors); with another compiler it stops the build with a message. There, use the
 * pair: torch_no_grad_enter() turns grad mode off and returns the mode it found;
 * torch_no_grad_exit(previous) restores that mode (never simply "on", so that pairs nest), and
 * must be called on every path out. */
bool torch_no_grad_enter(void);
void torch_no_grad_exit(bool previous);

#if defined(__GNUC__)
/* The guard's cleanup, called by the compiler when the guard goes out of scope. */
void torch_no_grad_guard_exit_(bool *previous);
#define TORCH_NO_GRAD_GUARD        TORCH_NO_GRAD_GUARD_AT_(__COUNTER__)
#define TORCH_NO_GRAD_GUARD_AT_(n) TORCH_NO_GRAD_GUARD_VAR_(n)
#define TORCH_NO_GRAD_GUARD_VAR_(n)                                                                \
    bool torch_no_grad_guard_##n __attribute__((cleanup(torch_no_grad_guard_exit_), unused)) =     \
        torch_no_grad_enter()
#else
#define TORCH_NO_GRAD_GUARD                                                                        \
    _Static_assert(0, "TORCH_NO_GRAD_GUARD needs GCC or Clang: use torch_no_grad_enter/exit")
#endif

/* Version counter (PyTorch's x._version): the number of in-place writes to t's storage, shared by
 * every view of it. A graph node records the version of each tensor it saves, and backward
 * refuses to run with a tensor that was written since, which would give a wrong gradient. Every
 * in-place function of ctorch bumps it; code that writes through tensor_data_f32() must call
 * tensor_bump_version() after writing. */
uint64_t tensor_version(const tensor *t);
void     tensor_bump_version(tensor *t);

/* Identity of t's storage (PyTorch's x.untyped_storage().data_ptr(), without reuse): the same for t
 * and every view of it, and never given to another storage during the process, so it still
 * identifies a tensor after the tensor was freed (how a graph picture names the constant inputs
 * of its nodes without keeping them alive). Never 0. */
uint64_t tensor_storage_id(const tensor *t);

/* ---- lifetime -------------------------------------------------------------------------------- */

/* Adds a reference and returns t (NULL-safe). */
tensor *tensor_retain(tensor *t);
/* Drops a reference; frees the tensor (its grad and graph reference too) at zero. NULL-safe. */
void    tensor_free(tensor *t);

/* Frees the blocks ctorch keeps for reuse. Tensor memory of 64 KiB and more is not returned to
 * the system when freed but kept (up to 1 GiB) for the next tensor of about the same size, as
 * PyTorch's GPU caching allocator does: a training loop then allocates nothing new after its
 * first step. Like torch.cuda.empty_cache(); the tensors in use are not affected. */
void torch_empty_cache(void);

/* ---- creation (float32 unless named otherwise); shape has ndim entries, each >= 0 ---------------- */

/* Uninitialised contents. */
tensor *torch_empty(int ndim, const int64_t *shape);
tensor *torch_empty_dtype(torch_dtype dtype, int ndim, const int64_t *shape);
tensor *torch_zeros(int ndim, const int64_t *shape);
tensor *torch_ones(int ndim, const int64_t *shape);
tensor *torch_full(int ndim, const int64_t *shape, float value);
/* Same shape and dtype as t, filled with zeros. */
tensor *torch_zeros_like(const tensor *t);
tensor *torch_ones_like(const tensor *t);
tensor *torch_empty_like(const tensor *t);
/* Copies numel(shape) values from data (R torch's torch_tensor(data)); the caller keeps data.
 * _int64 makes an int64 tensor, for class labels and indices:
 *   tensor *y = torch_tensor_int64((const int64_t[]){3, 0, 7}, TORCH_SHAPE(3)); */
tensor *torch_tensor(const float *data, int ndim, const int64_t *shape);
tensor *torch_tensor_int64(const int64_t *data, int ndim, const int64_t *shape);
/* 0-dim tensors. */
tensor *torch_scalar(float value);
tensor *torch_scalar_int64(int64_t value);
/* 1-D [start, start + step, ...) up to end (exclusive), as torch.arange. step != 0. */
tensor *torch_arange(double start, double end, double step);
/* U[0, 1) and N(0, 1) from gen (NULL: this thread's default generator, see generator.h). */
tensor *torch_rand(torch_generator *gen, int ndim, const int64_t *shape);
tensor *torch_randn(torch_generator *gen, int ndim, const int64_t *shape);
/* A random permutation of 0..n-1 (int64), as torch.randperm. */
tensor *torch_randperm(torch_generator *gen, int64_t n);

/* ---- data access (borrowed pointers to the first element; NULL on a dtype mismatch) ------------ */

float   *tensor_data_f32(const tensor *t);
int64_t *tensor_data_i64(const tensor *t);
/* Value of a one-element tensor as double (any dtype); NaN with an error set for NULL or a tensor
 * of another size ("tensor_item: a Tensor with 2 elements cannot be converted to Scalar"). */
double   tensor_item(const tensor *t);
/* Element at a full index (ndim entries), as double; NaN with an error set when an index is out
 * of range ("tensor_get: index 5 is out of bounds for dimension 0 with size 3"). */
double   tensor_get(const tensor *t, const int64_t *index);

bool     tensor_is_contiguous(const tensor *t);
/* true when t holds the only reference to itself and to its storage: writing it in place or
 * taking it over cannot be seen through any other tensor. */
bool     tensor_is_exclusive(const tensor *t);
bool     tensor_same_shape(const tensor *a, const tensor *b);
/* Size of dim (negative counts from the end), -1 if out of range. */
int64_t  tensor_size(const tensor *t, int dim);

/* ---- comparing whole tensors ----------------------------------------------------------------- */

/* torch.equal: true when a and b have the same shape and equal elements (NaN equals nothing, and
 * 0 equals -0). Tensors of different dtypes compare by value, as PyTorch promotes them (to
 * float32 for float32 and int64). Shapes that differ give false; so do a NULL argument and out
 * of memory (a non-contiguous argument is copied first), with the error set. */
bool torch_equal(const tensor *a, const tensor *b);

/* torch.allclose: true when a and b have the same shape and every pair of elements is close:
 *   a == b,  or  both NaN and equal_nan,  or  |a - b| <= atol + rtol * |b|  with |a - b| finite.
 * PyTorch's defaults are rtol = 1e-5, atol = 1e-8, equal_nan = false:
 *   torch_allclose(out, expected, 1e-5, 1e-8, false)
 * The test is not symmetric (b is the reference). It is evaluated in float32 as PyTorch's CPU
 * kernel does, so a borderline pair gets PyTorch's answer. Unlike PyTorch, shapes that differ
 * give false instead of broadcasting: a comparison in a test should not pass because a [3] tensor
 * broadcasts against a [1]. Empty tensors of one shape are close. int64 tensors compare their
 * exact difference (ATen's wraps around at the int64 limits). false, with the error set, for a
 * NULL argument, dtypes that differ ("expected both tensors to have the same dtype (got float32
 * and int64)"), rtol or atol negative or NaN (PyTorch's message), and out of memory (a
 * non-contiguous argument is copied first). */
bool torch_allclose(const tensor *a, const tensor *b, double rtol, double atol, bool equal_nan);

/* ---- raw views and copies (no autograd; the differentiable ones are in autograd/ops.h) ------- */

/* A view of t's storage with the given geometry; offset and strides in elements. */
tensor *tensor_as_strided(const tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                          int64_t offset);
/* A contiguous copy of t (always a new storage). */
tensor *tensor_clone(const tensor *t);
/* t itself (a new reference) when contiguous, else a contiguous copy. */
tensor *tensor_contiguous(const tensor *t);
/* Shares storage, drops autograd state: torch's x$detach(). */
tensor *tensor_detach(const tensor *t);

/* In place. Shapes must match exactly (no broadcasting): TORCH_ERR_SHAPE otherwise. Like every
 * in-place function, refused for a tensor that requires grad while grad mode is on (see
 * torch_check_inplace); they bump the version counter. */
torch_status tensor_copy_(tensor *dst, const tensor *src);
torch_status tensor_fill_(tensor *t, double value);
torch_status tensor_zero_(tensor *t);

/* ---- printing ------------------------------------------------------------------------------- */

/* PyTorch's repr and print options: "tensor([[ 1.0000, -0.5000],\n        [...]])\n",
 * summarised with "..." past 1000 elements (3 edge items per dim), with PyTorch's suffixes
 * (", requires_grad=True", ", grad_fn=<AddBackward0>"); ends with a newline like print(x). */
void tensor_print(const tensor *t);
void tensor_fprint(FILE *out, const tensor *t);

/* ---- helpers shared by the layers above -------------------------------------------------------- */

/* Writes "[2, 3, 4]" into buf (always NUL-terminated); returns buf. */
char *torch_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);
/* Normalises a possibly negative dim into [0, ndim); on failure sets PyTorch's message
 * "<fname>: Dimension out of range (expected to be in range of [-2, 1], but got 2)". */
torch_status torch_wrap_dim(const char *fname, int dim, int ndim, int *out);
/* Checks a user shape: 0 <= ndim <= TORCH_MAX_DIMS, shape != NULL when ndim > 0, sizes >= 0,
 * and the product of the sizes (0 counted as 1) at most TORCH_MAX_NUMEL. Every tensor's shape
 * passes it, so the product of any of a tensor's sizes cannot overflow. */
torch_status torch_check_shape(const char *fname, int ndim, const int64_t *shape);
/* Checks a tensor argument: not NULL and float32. `what` names it ("input", "weight"):
 * "<fname>: <what> is NULL", "<fname>: expected <what> to be float32 (got int64)". */
torch_status torch_check_float32(const char *fname, const char *what, const tensor *t);
/* Checks that t may be written in place by <fname>: not NULL; no two elements share memory
 * (an expanded view); and not a tensor that requires grad while grad mode is on -- PyTorch
 * refuses a leaf that requires grad ("a leaf Variable that requires grad is being used in an
 * in-place operation"), and ctorch's raw in-place functions record no graph, so a non-leaf
 * written in place would get a silently wrong gradient: write under
 * torch_set_grad_enabled(false), as optimizers and initialisers do, or through tensor_detach(). */
torch_status torch_check_inplace(const char *fname, const tensor *t);
/* Number of elements of a shape that passed torch_check_shape (unchecked). */
int64_t torch_shape_numel(int ndim, const int64_t *shape);
/* a * b for sizes >= 0, or -1 when it exceeds TORCH_MAX_NUMEL: for code that computes a shape
 * from user numbers (a flattened size, a convolution's output) before a tensor checks it. */
int64_t torch_size_mul(int64_t a, int64_t b);

#endif /* CTORCH_TENSOR_H */
