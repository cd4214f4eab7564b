/* json.c — the strictness check cJSON lacks (see io_json_check in io.h): raw control characters
 * and \u0000 inside strings, and NaN/Infinity named instead of a bare syntax error. */
#include "io.h"

#include <stdio.h>
#include <string.h>

/* ---- JSON strictness ---------------------------------------------------------------------------- */

/* cJSON takes a raw control character inside a string as it is, and decodes \u0000 into a NUL
 * that ends the C string it returns: "1.weight\u0000junk" would read as "1.weight". A scan of the
 * text before cJSON sees it refuses both (RFC 8259 section 7 forbids the first; the second is
 * valid JSON that no C string can hold), and names NaN and Infinity, which cJSON refuses as a
 * bare syntax error. The scan follows containers and keys only loosely (it checks no other
 * syntax: cJSON does), enough to say where a problem is. */

#define JSON_MAX_DEPTH 32

typedef struct json_frame {
    char   kind;     /* '[' or '{' */
    bool   want_key; /* object: the next string is a key */
    long   index;    /* array: the current element */
    size_t key, key_len;
} json_frame;

/* The JSON source s[0..n) of a string as a message shows it: raw control characters as \xNN
 * (the rest is already escaped JSON), at most 40 bytes (cut at a character boundary) then "...". */
static void show_string(char *out, size_t size, const char *s, size_t n) {
    size_t len = 0, shown = n > 40 ? 40 : n;
    while (shown < n && shown > 0 && ((unsigned char)s[shown] & 0xC0) == 0x80) shown--;
    out[0] = '\0';
    for (size_t i = 0; i < shown && len + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) len += (size_t)snprintf(out + len, size - len, "\\x%02x", c);
        else out[len++] = (char)c, out[len] = '\0';
    }
    if (shown < n && len + 4 < size) memcpy(out + len, "...", 4);
}

/* The path of the value the scan is in: [0].lr, ["1.weight"].shape[1], __metadata__.k. */
static void json_path(const char *text, const json_frame *f, int depth, char *out, size_t size) {
    size_t len = 0;
    out[0] = '\0';
    for (int d = 0; d < depth && d < JSON_MAX_DEPTH && len + 1 < size; d++) {
        char part[256];
        if (f[d].kind == '[') {
            snprintf(part, sizeof part, "[%ld]", f[d].index);
        } else if (f[d].want_key) {
            continue;
        } else {
            const char *k = text + f[d].key;
            bool ident = f[d].key_len > 0 && f[d].key_len <= 40 && !(k[0] >= '0' && k[0] <= '9');
            for (size_t i = 0; ident && i < f[d].key_len; i++)
                ident = (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= '0' && k[i] <= '9') ||
                        k[i] == '_';
            char shown[168]; /* 40 bytes, each at most 4 characters, then "..." */
            show_string(shown, sizeof shown, k, f[d].key_len);
            if (ident) snprintf(part, sizeof part, "%s%s", len ? "." : "", shown);
            else snprintf(part, sizeof part, "[\"%s\"]", shown);
        }
        len += (size_t)snprintf(out + len, size - len, "%s", part);
        if (len >= size) len = size - 1;
    }
    if (depth > JSON_MAX_DEPTH && len + 4 < size) memcpy(out + len, "...", 4);
}

/* Scans text[0..n) up to byte stop. Returns false at the first problem (*problem filled, if
 * given); otherwise true, with the path of the value at stop in path (if given). */
static bool json_scan(const char *t, size_t n, size_t stop, io_json_problem *problem, char *path,
                      size_t path_size) {
    json_frame f[JSON_MAX_DEPTH];
    int depth = 0;
    size_t i = 0;
    while (i < n && i < stop) {
        unsigned char c = (unsigned char)t[i];
        json_frame *top = depth > 0 && depth <= JSON_MAX_DEPTH ? &f[depth - 1] : NULL;
        if (c == '{' || c == '[') {
            if (depth < JSON_MAX_DEPTH) f[depth] = (json_frame){.kind = (char)c, .want_key = c == '{'};
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            if (depth > 0) depth--;
            i++;
        } else if (c == ',') {
            if (top && top->kind == '[') top->index++;
            if (top && top->kind == '{') top->want_key = true;
            i++;
        } else if (c == '"') {
            bool is_key = top && top->kind == '{' && top->want_key;
            size_t start = i + 1, j = start, bad = n;
            const char *what = NULL;
            while (j < n && t[j] != '"') {
                unsigned char ch = (unsigned char)t[j];
                if (ch < 0x20 && !what) {
                    what = "a raw control character";
                    bad = j;
                }
                if (ch == '\\') {
                    if (!what && j + 5 < n && t[j + 1] == 'u' && memcmp(t + j + 2, "0000", 4) == 0) {
                        what = "\\u0000";
                        bad = j;
                    }
                    j++;
                }
                j++;
            }
            if (j > n) j = n;
            if (what) {
                if (problem) {
                    char where[160], shown[168];
                    json_path(t, f, depth, where, sizeof where);
                    show_string(shown, sizeof shown, t + start, j - start);
                    problem->offset = bad;
                    if (t[bad] == '\\')
                        snprintf(problem->message, sizeof problem->message,
                                 "the %s \"%s\"%s%s contains \\u0000 (U+0000 cannot be held in a C string)",
                                 is_key ? "key" : "string", shown, *where ? " in " : "", where);
                    else
                        snprintf(problem->message, sizeof problem->message,
                                 "the %s \"%s\"%s%s contains %s (0x%02x; JSON requires characters below 0x20 "
                                 "escaped)",
                                 is_key ? "key" : "string", shown, *where ? " in " : "", where, what,
                                 (unsigned char)t[bad]);
                }
                return false;
            }
            if (is_key) {
                top->key = start;
                top->key_len = j - start;
                top->want_key = false;
            }
            i = j + 1;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                   c == '+') {
            size_t j = i;
            while (j < n && ((t[j] >= 'a' && t[j] <= 'z') || (t[j] >= 'A' && t[j] <= 'Z') ||
                             (t[j] >= '0' && t[j] <= '9') || t[j] == '-' || t[j] == '+' || t[j] == '.'))
                j++;
            /* NaN, Infinity, -Infinity: what Python's json writes for floats JSON cannot hold */
            size_t a = i + (c == '-' || c == '+'), len = j - a;
            char word[9] = {0};
            for (size_t k = 0; k < len && k < 8; k++) word[k] = (char)(t[a + k] | 0x20); /* lower case */
            if ((len == 3 && (!strcmp(word, "nan") || !strcmp(word, "inf"))) ||
                (len == 8 && !strcmp(word, "infinity"))) {
                if (problem) {
                    char where[160];
                    json_path(t, f, depth, where, sizeof where);
                    problem->offset = i;
                    snprintf(problem->message, sizeof problem->message,
                             "%s is %.*s (expected a finite number; JSON has no NaN or Infinity)",
                             *where ? where : "a value", (int)(j - i), t + i);
                }
                return false;
            }
            i = j;
        } else {
            i++;
        }
    }
    if (path) json_path(t, f, depth, path, path_size);
    return true;
}

bool io_json_check(const char *text, size_t n, io_json_problem *problem) {
    if (!text) return true;
    return json_scan(text, n, n, problem, NULL, 0);
}

void io_json_path(const char *text, size_t n, size_t offset, char *path, size_t size) {
    if (!path || size == 0) return;
    path[0] = '\0';
    if (text) json_scan(text, n, offset, NULL, path, size);
}

