/* libFuzzer: shard_parse on arbitrary bytes must accept or refuse, never crash or leak, and
 * whatever it accepts must hold only in-vocabulary tokens and match the header's count. */
#include "core/data/shard.h"
#include "core/base/status.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shard s;
    char err[WANCP_ERRLEN];
    int vocab = size > 0 ? 1 + data[0] * 200 : 50257; /* vary the vocabulary with the input */
    int rc = shard_parse(data, size, "fuzz.bin", vocab, &s, err, sizeof err);
    if (rc == WANCP_OK) {
        if (s.count == 0 || size != SHARD_HEADER_BYTES + 2 * s.count)
            abort();
        for (size_t i = 0; i < s.count; i++)
            if (s.tokens[i] >= vocab)
                abort();
        shard_free(&s);
    } else if (rc != WANCP_ERR_INPUT || strchr(err, '\n') != NULL || strstr(err, "fuzz.bin") == NULL) {
        abort(); /* every refusal is one line naming the input */
    }
    return 0;
}
