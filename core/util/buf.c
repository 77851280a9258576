#include "buf.h"

#include "../base/status.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int grow(void **data, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return WANCP_OK;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) {
        if (cap2 > SIZE_MAX / 2 / elem)
            return WANCP_ERR_NOMEM;
        cap2 *= 2;
    }
    void *p = realloc(*data, cap2 * elem);
    if (p == NULL)
        return WANCP_ERR_NOMEM;
    *data = p;
    *cap = cap2;
    return WANCP_OK;
}

int bytebuf_reserve(bytebuf *b, size_t cap) { return grow((void **)&b->data, &b->cap, cap, 1); }

int bytebuf_append(bytebuf *b, const void *src, size_t n)
{
    if (n == 0)
        return WANCP_OK;
    int rc = grow((void **)&b->data, &b->cap, b->len + n, 1);
    if (rc != WANCP_OK)
        return rc;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return WANCP_OK;
}

void bytebuf_free(bytebuf *b)
{
    free(b->data);
    *b = (bytebuf){0};
}

int tokbuf_push(tokbuf *t, uint16_t id)
{
    int rc = grow((void **)&t->data, &t->cap, t->len + 1, sizeof *t->data);
    if (rc != WANCP_OK)
        return rc;
    t->data[t->len++] = id;
    return WANCP_OK;
}

int tokbuf_append(tokbuf *t, const uint16_t *ids, size_t n)
{
    if (n == 0)
        return WANCP_OK;
    int rc = grow((void **)&t->data, &t->cap, t->len + n, sizeof *t->data);
    if (rc != WANCP_OK)
        return rc;
    memcpy(t->data + t->len, ids, n * sizeof *ids);
    t->len += n;
    return WANCP_OK;
}

void tokbuf_free(tokbuf *t)
{
    free(t->data);
    *t = (tokbuf){0};
}

int file_read_all(const char *path, bytebuf *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: not a regular file", path);
    }
    int rc = bytebuf_reserve(out, (size_t)st.st_size + 1);
    while (rc == WANCP_OK) {
        if (out->len + 1 >= out->cap && (rc = bytebuf_reserve(out, out->cap * 2)) != WANCP_OK)
            break;
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
    }
    close(fd);
    if (rc == WANCP_ERR_NOMEM)
        return wancp_fail(err, errlen, rc, "%s: out of memory reading %lld bytes", path, (long long)st.st_size);
    if (rc == WANCP_OK)
        out->data[out->len] = 0;
    return rc;
}

static int write_full(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Removes PATH.tmp.PID files that a killed writer left (its PID no longer runs): a write
 * killed half way must not leave its bytes behind for good. */
static void remove_stale_temporaries(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    if (slash != NULL)
        *slash = '\0';
    size_t nbase = strlen(base);
    DIR *d = opendir(slash != NULL ? (dir[0] ? dir : "/") : ".");
    if (d == NULL)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *name = e->d_name;
        if (strncmp(name, base, nbase) != 0 || strncmp(name + nbase, ".tmp.", 5) != 0)
            continue;
        char *end;
        long pid = strtol(name + nbase + 5, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == (long)getpid() || !(kill((pid_t)pid, 0) != 0 && errno == ESRCH))
            continue;
        char stale[8192];
        snprintf(stale, sizeof stale, "%s/%s", slash != NULL ? (dir[0] ? dir : "") : ".", name);
        unlink(stale);
    }
    closedir(d);
}

int file_write_atomic_parts(const char *path, const void *const *parts, const size_t *lens, size_t nparts, char *err,
                            size_t errlen)
{
    remove_stale_temporaries(path);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: cannot create: %s", tmp, strerror(errno));
    for (size_t i = 0; i < nparts; i++) {
        if (write_full(fd, parts[i], lens[i]) != 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: write failed: %s", tmp, strerror(e));
        }
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: sync failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "%s: rename failed: %s", path, strerror(e));
    }
    return WANCP_OK;
}

int file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    const void *parts[1] = {data};
    size_t lens[1] = {len};
    return file_write_atomic_parts(path, parts, lens, 1, err, errlen);
}
