/* status.h — how every fallible ctorch call reports failure (the SQLite model).
 *
 * Ownership: nothing here allocates. torch_last_error() returns a pointer into a thread-local
 * buffer that the next failure on the same thread overwrites; copy it if you need to keep it.
 *
 * Convention, for the whole library:
 *   - a call that can fail returns torch_status (TORCH_OK == 0), or NULL for a constructor;
 *   - on failure, torch_last_status() and torch_last_error() tell what happened, in PyTorch's
 *     words prefixed with the function: "torch_add: shapes [2, 3] and [4] cannot be broadcast";
 *   - a refused call changes nothing: it checks first, allocates second and commits last;
 *   - the user's program is never aborted for something the user did. Only a broken internal
 *     invariant (a bug in ctorch) stops the process, through TORCH_ASSERT.
 */
#ifndef CTORCH_STATUS_H
#define CTORCH_STATUS_H

#include <stdbool.h>

typedef enum torch_status {
    TORCH_OK = 0,
    TORCH_ERR_INVALID_ARGUMENT, /* NULL where not allowed, bad option, bad name, out-of-range dim */
    TORCH_ERR_SHAPE,            /* wrong rank, non-broadcastable shapes, wrong channel count */
    TORCH_ERR_INVALID_STATE,    /* e.g. backward through a freed graph, grad of a non-scalar */
    TORCH_ERR_KEY,              /* state_dict: missing or unexpected key, size mismatch */
    TORCH_ERR_OUT_OF_MEMORY,    /* an allocation of tensor data failed */
    TORCH_ERR_IO,               /* a file could not be opened, read or written */
    TORCH_ERR_FORMAT,           /* a file was read but its contents are malformed */
    TORCH_STATUS_COUNT
} torch_status;

/* Static name of a status ("invalid argument"); never NULL, never freed (sqlite3_errstr). */
const char *torch_status_string(torch_status status);

/* Status of the last failure on this thread, TORCH_OK if none since torch_clear_error(). */
torch_status torch_last_status(void);

/* Message of the last failure on this thread ("" if none). Borrowed, thread-local, overwritten
 * by the next failure. Over-long messages end in "...". */
const char *torch_last_error(void);

/* Forget the last failure on this thread. */
void torch_clear_error(void);

/* Optional: called on every failure, on the failing thread, after the message is stored.
 * Pass NULL to remove. Useful to log, or to break into a debugger while developing. */
typedef void (*torch_error_handler)(torch_status status, const char *message, void *user_data);
void torch_set_error_handler(torch_error_handler handler, void *user_data);

/* ---- for the library's own code ------------------------------------------------------------ */

/* Records a failure (printf-style message) and returns `status`, so that a check is one line:
 *   if (x == NULL) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "torch_add: input is NULL"); */
torch_status torch_error(torch_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Internal invariants only (a bug in ctorch, never user input): print file:line and abort. */
#define TORCH_ASSERT(cond)                                                                        \
    do {                                                                                          \
        if (!(cond)) torch_assert_fail(#cond, __FILE__, __LINE__);                                \
    } while (0)
_Noreturn void torch_assert_fail(const char *cond, const char *file, int line);

#endif /* CTORCH_STATUS_H */
