/* What the file-reading fuzz targets share: a private folder for the files an input becomes,
 * the split of one input into several files, and the checks every refusal must pass. */
#ifndef WANCP_FUZZ_INPUT_H
#define WANCP_FUZZ_INPUT_H

#include "core/base/status.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[64];

/* A private folder for this process's files, in $TMPDIR (run_fuzz.sh points it at a folder
 * it removes) or /tmp: a few small files, rewritten for every input. */
static inline void fuzz_make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/wancp-fuzz-XXXXXX", tmp != NULL && strlen(tmp) < 40 ? tmp : "/tmp");
    if (mkdtemp(fuzz_dir) == NULL)
        abort();
}

/* fuzz_dir/name as a path. */
static inline void fuzz_path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", fuzz_dir, name); }

/* Writes len bytes to fuzz_dir/name. */
static inline void fuzz_write(const char *name, const void *data, size_t len)
{
    char path[256];
    fuzz_path(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        abort();
}

/* Splits data at lines "==\n" into up to n parts (parts past the last marker are empty). */
static inline void fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, int n)
{
    static const char marker[] = "\n==\n";
    for (int i = 0; i < n; i++) {
        part[i] = data, len[i] = 0;
        const uint8_t *end = NULL;
        for (size_t k = 0; k + 4 <= size && end == NULL; k++)
            if (memcmp(data + k, marker, 4) == 0)
                end = data + k;
        if (end == NULL || i == n - 1) {
            len[i] = size;
            data += size, size = 0;
        } else {
            len[i] = (size_t)(end - data) + 1; /* keep the newline */
            size -= (size_t)(end - data) + 4;
            data = end + 4;
        }
    }
}

/* A refusal is WANCP_ERR_INPUT with one printable line that names what it read. */
static inline void fuzz_check_refusal(int rc, const char *err, const char *needle)
{
    if (rc != WANCP_ERR_INPUT || strstr(err, needle) == NULL)
        abort();
    for (const unsigned char *c = (const unsigned char *)err; *c; c++)
        if (*c < 0x20 || *c == 0x7F)
            abort();
}

#endif
