/* text.c — the growing string of text.h. */
#include "text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL. */
static bool reserve(torch_text *t, size_t n) {
    if (t->failed) return false;
    if (t->len + n + 1 <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < t->len + n + 1) cap *= 2;
    char *p = realloc(t->s, cap);
    if (!p) {
        t->failed = true;
        return false;
    }
    t->s = p;
    t->cap = cap;
    return true;
}

void torch_text_append_n(torch_text *t, const char *s, size_t n) {
    if (!reserve(t, n)) return;
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

void torch_text_append(torch_text *t, const char *s) { torch_text_append_n(t, s, strlen(s)); }

void torch_text_printf(torch_text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = true;
        return;
    }
    if (!reserve(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

char *torch_text_take(torch_text *t) {
    if (!t->s && reserve(t, 0)) t->s[0] = '\0';
    char *s = t->failed ? NULL : t->s;
    if (!s) free(t->s);
    *t = (torch_text){0};
    return s;
}

void torch_text_free(torch_text *t) {
    free(t->s);
    *t = (torch_text){0};
}
