/* text.h — a growing string for the library's own text output (reprs, summaries, graph
 * pictures). Private: not part of the installed API; the layers above may include it
 * (CTORCH_INTERNAL_HEADERS in cmake/ctorchLayers.cmake).
 *
 * Ownership: a torch_text owns its buffer. torch_text_take hands it to the caller (free() it)
 * and leaves the text empty; torch_text_free drops it. Out of memory sticks: every later append
 * does nothing and torch_text_take returns NULL, so a builder checks once, at the end.
 */
#ifndef CTORCH_TENSOR_TEXT_H
#define CTORCH_TENSOR_TEXT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct torch_text {
    char  *s;   /* NUL-terminated once anything was appended; may be NULL before */
    size_t len; /* bytes, without the NUL */
    size_t cap;
    bool   failed; /* an allocation failed */
} torch_text;

/* Appends n bytes of s. */
void  torch_text_append_n(torch_text *t, const char *s, size_t n);
/* Appends the string s. */
void  torch_text_append(torch_text *t, const char *s);
/* Appends printf-style. */
void  torch_text_printf(torch_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text (owned by the caller; "" when nothing was appended), or NULL if an allocation failed
 * (the text is freed then). t is empty afterwards. */
char *torch_text_take(torch_text *t);
void  torch_text_free(torch_text *t);

#endif /* CTORCH_TENSOR_TEXT_H */
