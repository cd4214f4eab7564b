/* status.c — thread-local last error (see status.h for the convention). */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local torch_status last_status = TORCH_OK;
static _Thread_local char last_message[512];
/* The handler is process-wide: it is configuration, set once at start-up. */
static torch_error_handler error_handler;
static void *error_handler_data;

static const char *const status_names[TORCH_STATUS_COUNT] = {
    [TORCH_OK]                   = "ok",
    [TORCH_ERR_INVALID_ARGUMENT] = "invalid argument",
    [TORCH_ERR_SHAPE]            = "shape mismatch",
    [TORCH_ERR_INVALID_STATE]    = "invalid state",
    [TORCH_ERR_KEY]              = "key error",
    [TORCH_ERR_OUT_OF_MEMORY]    = "out of memory",
    [TORCH_ERR_IO]               = "i/o error",
    [TORCH_ERR_FORMAT]           = "malformed data",
};

const char *torch_status_string(torch_status status) {
    if ((unsigned)status >= TORCH_STATUS_COUNT || status_names[status] == NULL) return "unknown status";
    return status_names[status];
}

torch_status torch_last_status(void) { return last_status; }
const char *torch_last_error(void) { return last_message; }

void torch_clear_error(void) {
    last_status = TORCH_OK;
    last_message[0] = '\0';
}

void torch_set_error_handler(torch_error_handler handler, void *user_data) {
    error_handler = handler;
    error_handler_data = user_data;
}

torch_status torch_error(torch_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof last_message) memcpy(last_message + sizeof last_message - 4, "...", 4);
    last_status = status;
    if (error_handler) error_handler(status, last_message, error_handler_data);
    return status;
}

_Noreturn void torch_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "ctorch: internal error: %s:%d: assertion failed: %s\n", file, line, cond);
    abort();
}
