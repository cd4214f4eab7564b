/* file.c — reading outside files with limits (io_read_file) and replacing files atomically
 * (io_write_file_atomic). */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fsync, fchmod, strdup, strndup, O_CLOEXEC */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- files ------------------------------------------------------------------------------------ */

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "a special file";
}

torch_status io_read_file(const char *fname, const char *path, uint64_t max_bytes, uint8_t **out, size_t *size) {
    if (!fname) fname = "io_read_file";
    if (!path || !out || !size)
        return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: path, out and size are required", fname);
    /* O_NONBLOCK: opening a FIFO without a writer would wait forever before fstat could refuse
     * it; on a regular file the flag changes nothing. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return torch_error(TORCH_ERR_IO, "%s: cannot open %s: %s", fname, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return torch_error(TORCH_ERR_IO, "%s: cannot stat %s: %s", fname, path, strerror(e));
    }
    /* Only a regular file has a size known before reading; a device or a pipe could be endless
     * (/dev/zero). */
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return torch_error(TORCH_ERR_IO, "%s: %s: expected a regular file (got %s)", fname, path,
                           file_kind(st.st_mode));
    }
    uint64_t limit = max_bytes < (uint64_t)SIZE_MAX ? max_bytes : (uint64_t)SIZE_MAX;
    if ((uint64_t)st.st_size > limit) {
        close(fd);
        return torch_error(TORCH_ERR_FORMAT, "%s: %s: file too large (%" PRIu64 " bytes; at most %" PRIu64 " accepted)",
                           fname, path, (uint64_t)st.st_size, limit);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory reading %s (%zu bytes)", fname, path, n);
    }
    int err = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = errno;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        if (err) return torch_error(TORCH_ERR_IO, "%s: error reading %s: %s", fname, path, strerror(err));
        return torch_error(TORCH_ERR_IO, "%s: %s shrank while being read (%zu of %zu bytes)", fname, path, got, n);
    }
    *out = buf;
    *size = n;
    return TORCH_OK;
}

/* ---- atomic files ----------------------------------------------------------------------------- */

static io_atomic_write_fault_hook fault_hook;
static void *fault_user;

void io_atomic_write_set_fault_hook(io_atomic_write_fault_hook hook, void *user) {
    fault_hook = hook;
    fault_user = user;
}

static bool fault(const char *stage) { return fault_hook && fault_hook(stage, fault_user); }

/* fsync of the directory holding path, so the rename itself is durable. Best effort where the
 * file system cannot sync directories. */
static torch_status sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "io_write_file_atomic: out of memory");
    int fd = open(dir, O_RDONLY);
    free(dir);
    if (fd < 0) return TORCH_OK;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e == EIO) return torch_error(TORCH_ERR_IO, "io_write_file_atomic: fsync of the directory of %s failed: %s", path, strerror(e));
    return TORCH_OK;
}

torch_status io_write_file_atomic(const char *path, const void *data, size_t size) {
    static const char *fname = "io_write_file_atomic";
    if (!path || !*path) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: path is empty", fname);
    if (!data && size > 0) return torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: data is NULL", fname);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp) return torch_error(TORCH_ERR_OUT_OF_MEMORY, "%s: out of memory", fname);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");

    int fd = fault("open") ? (errno = EACCES, -1) : mkstemp(tmp);
    if (fd < 0) {
        torch_status st = torch_error(TORCH_ERR_IO, "%s: cannot create a temporary file next to %s: %s", fname, path,
                                      strerror(errno));
        free(tmp);
        return st;
    }
    /* mkstemp makes 0600 files; give the checkpoint the mode a plain fopen would (keeping an
     * existing file's mode). */
    struct stat old;
    fchmod(fd, stat(path, &old) == 0 ? (old.st_mode & 07777) : 0644);

    const char *stage = NULL;
    int err = 0;
    const uint8_t *p = data;
    size_t left = size;
    bool fail_write = fault("write");
    if (fail_write) left = size / 2;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            stage = "write";
            err = w < 0 ? errno : EIO;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (!stage && fail_write) stage = "write", err = EIO;
    if (!stage && (fault("fsync") ? (errno = EIO, -1) : fsync(fd)) != 0) stage = "fsync", err = errno;
    if (close(fd) != 0 && !stage) stage = "close", err = errno;
    if (!stage && (fault("rename") ? (errno = EXDEV, -1) : rename(tmp, path)) != 0) stage = "rename", err = errno;
    if (stage) {
        unlink(tmp);
        torch_status st =
            torch_error(TORCH_ERR_IO, "%s: %s failed while writing %s: %s (the previous file is unchanged)", fname,
                        stage, path, strerror(err));
        free(tmp);
        return st;
    }
    free(tmp);
    return sync_parent_dir(path);
}
