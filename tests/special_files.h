/* special_files.h — the files every loader of outside data must refuse without reading a byte
 * (io_read_file's rules), for the loaders' tests: a character device, a FIFO with no writer
 * (opening one used to block forever), a directory, a sparse file one byte over the loader's
 * size limit (it costs no disk), and a missing file, whose message must give the system's reason.
 * The including test defines _POSIX_C_SOURCE 200809L (mkfifo, ftruncate) before any include. */
#ifndef CTORCH_TESTS_SPECIAL_FILES_H
#define CTORCH_TESTS_SPECIAL_FILES_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/status.h"

#define SPECIAL_FILES 5

typedef struct special_file {
    char         path[320];
    torch_status status; /* what the loader must return */
    char         msg[128]; /* and a part of its message */
} special_file;

/* Makes the FIFO and the sparse file in dir (names ending in ext) and describes all five. */
static inline void special_files_make(special_file f[SPECIAL_FILES], const char *dir, const char *ext,
                                      uint64_t limit) {
    snprintf(f[0].path, sizeof f[0].path, "/dev/zero");
    snprintf(f[0].msg, sizeof f[0].msg, "expected a regular file (got a character device)");
    snprintf(f[1].path, sizeof f[1].path, "%s/fifo%s", dir, ext);
    snprintf(f[1].msg, sizeof f[1].msg, "expected a regular file (got a FIFO)");
    snprintf(f[2].path, sizeof f[2].path, "%s", dir);
    snprintf(f[2].msg, sizeof f[2].msg, "expected a regular file (got a directory)");
    snprintf(f[3].path, sizeof f[3].path, "%s/big%s", dir, ext);
    snprintf(f[3].msg, sizeof f[3].msg, "file too large (%llu bytes; at most %llu accepted)",
             (unsigned long long)limit + 1, (unsigned long long)limit);
    snprintf(f[4].path, sizeof f[4].path, "%s/missing%s", dir, ext);
    snprintf(f[4].msg, sizeof f[4].msg, "%s", strerror(ENOENT));
    for (int i = 0; i < SPECIAL_FILES; i++) f[i].status = i == 3 ? TORCH_ERR_FORMAT : TORCH_ERR_IO;
    cr_assert_eq(mkfifo(f[1].path, 0600), 0, "mkfifo: %s", strerror(errno));
    int fd = open(f[3].path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "%s: %s", f[3].path, strerror(errno));
    cr_assert_eq(ftruncate(fd, (off_t)(limit + 1)), 0, "ftruncate: %s", strerror(errno));
    close(fd);
}

static inline void special_files_remove(const special_file f[SPECIAL_FILES]) {
    unlink(f[1].path);
    unlink(f[3].path);
}

#endif /* CTORCH_TESTS_SPECIAL_FILES_H */
