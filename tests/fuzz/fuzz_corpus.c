/* libFuzzer: text corpora as `wancp data` reads them: JSONL documents ({"text": ...} per
 * line) and the Brown corpus's tagged files (word/TAG). Each refused with one printable line
 * naming its input, or accepted: documents whose text is what the file held. */
#include "fuzz_input.h"
#include "core/data/brown.h"
#include "core/data/corpus.h"

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
    return 0;
}
