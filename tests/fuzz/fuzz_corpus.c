/* libFuzzer: text corpora as `wancp data` reads them: JSONL documents ({"text": ...} per
 * line), the Brown corpus's tagged files (word/TAG) and the mail corpus's messages (a body
 * after the header). Each refused with one printable line naming its input, or accepted:
 * documents whose text is what the file held, a body inside the message. */
#include "fuzz_input.h"
#include "core/data/brown.h"
#include "core/data/corpus.h"
#include "core/data/text_corpora.h"

#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_make_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write("d.jsonl", data, size);
    char path[256], err[WANCP_ERRLEN];
    fuzz_path(path, sizeof path, "d.jsonl");
    corpus c = {0};
    int rc = corpus_load(&c, path, err, sizeof err);
    if (rc != WANCP_OK)
        fuzz_check_refusal(rc, err, "d.jsonl");
    corpus_free(&c);

    bytebuf out = {0};
    rc = brown_detag("ca01", (const char *)data, size, &out, err, sizeof err);
    if (rc != WANCP_OK)
        fuzz_check_refusal(rc, err, "ca01");
    bytebuf_free(&out);

    size_t body = 0;
    rc = mail_body("00001.txt", (const char *)data, size, &body, err, sizeof err);
    if (rc != WANCP_OK)
        fuzz_check_refusal(rc, err, "00001.txt");
    else if (body == 0 || body >= size || data[body - 1] != '\n')
        abort(); /* a body starts after an empty line, inside the message */
    return 0;
}
