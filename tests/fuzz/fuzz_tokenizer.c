/* libFuzzer: both tokenizers on arbitrary bytes. Encoding must succeed, produce ids inside
 * the vocabulary (never <|endoftext|>), and decode back to exactly the input. */
#include "core/data/tokenizer.h"
#include "core/base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tokenizer *gpt2, *bytes;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[WANCP_ERRLEN];
    if (tokenizer_open_gpt2(&gpt2, GPT2_DIR, err, sizeof err) != WANCP_OK ||
        tokenizer_open_bytes(&bytes, err, sizeof err) != WANCP_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tokenizer *ts[2] = {gpt2, bytes};
    for (int k = 0; k < 2; k++) {
        tokbuf ids = {0};
        bytebuf back = {0};
        char err[WANCP_ERRLEN];
        if (tokenizer_encode(ts[k], data, size, &ids, err, sizeof err) != WANCP_OK)
            abort();
        for (size_t i = 0; i < ids.len; i++)
            if (ids.data[i] >= tokenizer_vocab_size(ts[k]) || (int)ids.data[i] == tokenizer_eot(ts[k]))
                abort();
        if (tokenizer_decode(ts[k], ids.data, ids.len, &back, err, sizeof err) != WANCP_OK)
            abort();
        if (back.len != size || (size > 0 && memcmp(back.data, data, size) != 0))
            abort();
        tokbuf_free(&ids);
        bytebuf_free(&back);
    }
    return 0;
}
