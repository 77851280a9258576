#include "scenario.h"

#include "../core/data/shard.h"
#include "../core/model/config.h"
#include "../core/base/status.h"
#include "../shaper/ini_input.h"
#include "../shaper/topology.h"
#include "cli.h"

#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Parsing state: the scenario, where we are, and every problem found so far. */
typedef struct parse {
    scenario *s;
    ini_input in;
    const char *where; /* a --set being applied, or NULL while reading the file */
    bool name_seen;    /* a name was given, good or not */
    char seeds_key[8]; /* the file's seed or seeds, once given */
} parse;

static void problem(parse *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(parse *ps, const char *fmt, ...)
{
    char where[1100];
    va_list ap;
    va_start(ap, fmt);
    if (ps->where != NULL) {
        snprintf(where, sizeof where, "--set %s", ps->where);
        ini_input_problem(&ps->in, where, fmt, ap);
    } else if (ps->in.line == 0) { /* the whole file */
        ini_input_problem(&ps->in, ps->s->path, fmt, ap);
    } else {
        ini_input_problem_at(&ps->in, ps->in.line, fmt, ap);
    }
    va_end(ap);
}

static void set_long(parse *ps, const char *sec, const char *key, const char *v, long min, long max, long *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end != 0 || x < min || x > max)
        problem(ps, "[%s] %s = '%s': expected a whole number from %ld to %ld", sec, key, v, min, max);
    else
        *out = x;
}

static void set_int(parse *ps, const char *sec, const char *key, const char *v, long min, long max, int *out)
{
    long x = *out;
    set_long(ps, sec, key, v, min, max, &x);
    *out = (int)x;
}

static void set_double(parse *ps, const char *sec, const char *key, const char *v, double min, double max, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end != 0 || !(x >= min && x <= max))
        problem(ps, "[%s] %s = '%s': expected a number from %g to %g", sec, key, v, min, max);
    else
        *out = x;
}

static void set_sync(parse *ps, const char *sec, const char *key, const char *v, char *out)
{
    if (strcmp(v, "S") != 0 && strcmp(v, "A") != 0)
        problem(ps, "[%s] %s = '%s': expected S (every step) or A (average every sync_every)", sec, key, v);
    else
        *out = v[0];
}

/* A file named relative to the scenario's folder (or absolute). */
static void set_path(parse *ps, const char *key, const char *v, char *out, size_t len)
{
    int n = v[0] == '/' ? snprintf(out, len, "%s", v) : snprintf(out, len, "%s/%s", ps->s->dir, v);
    /* The resolved scenario (run folders keep it) writes "key = path" on one line, which
     * inih reads up to INI_MAX_LINE - 1 characters. */
    const int most = INI_MAX_LINE - 1 - (int)strlen(key) - 3;
    if (n < 0 || (size_t)n >= len || n > most)
        problem(ps, "%s = '%.60s...': the path, resolved, is longer than %d characters", key, v, most);
}

/* seed = N, or seeds = N,M,...: each from 0 to 2^31 - 1, none twice. */
static void set_seeds(parse *ps, const char *key, const char *v)
{
    scenario *s = ps->s;
    if (ps->where == NULL && ps->seeds_key[0] && strcmp(ps->seeds_key, key) != 0) {
        problem(ps, "[scenario] %s: the file gives %s already (one of seed, seeds)", key, ps->seeds_key);
        return;
    }
    if (ps->where == NULL)
        snprintf(ps->seeds_key, sizeof ps->seeds_key, "%s", key);
    unsigned long seeds[SCENARIO_MAX_SEEDS];
    int n = 0;
    const char *p = v;
    for (;;) {
        char *end;
        while (*p == ' ')
            p++;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0 || x > 2147483647L || n == SCENARIO_MAX_SEEDS || (strcmp(key, "seed") == 0 && n == 1)) {
            problem(ps, "[scenario] %s = '%s': expected %s from 0 to 2147483647", key, v,
                    key[4] == 's' ? "1 to 16 whole numbers, separated by commas," : "a whole number");
            return;
        }
        for (int i = 0; i < n; i++)
            if (seeds[i] == (unsigned long)x) {
                problem(ps, "[scenario] %s = '%s': seed %ld is given twice", key, v, x);
                return;
            }
        seeds[n++] = (unsigned long)x;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == 0)
            break;
        if (*p != ',') {
            problem(ps, "[scenario] %s = '%s': expected whole numbers separated by commas", key, v);
            return;
        }
        p++;
    }
    memcpy(s->seeds, seeds, sizeof seeds);
    s->nseeds = n;
}

/* An arm's name names its results folder: 1 to 63 of A-Z a-z 0-9 @ + _ - . and not starting with a dot. */
static bool arm_name_ok(const char *name)
{
    size_t n = strlen(name);
    bool ok = n > 0 && n < sizeof((scenario_arm *)0)->name && name[0] != '.';
    for (size_t i = 0; i < n && ok; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
             (name[i] >= '0' && name[i] <= '9') || strchr("@+_-.", name[i]) != NULL;
    return ok;
}

static scenario_arm *arm_named(parse *ps, const char *name)
{
    scenario *s = ps->s;
    for (int i = 0; i < s->narms; i++)
        if (strcmp(s->arms[i].name, name) == 0)
            return &s->arms[i];
    if (ps->where != NULL) {
        problem(ps, "no arm '%s' in the scenario", name);
        return NULL;
    }
    if (s->narms == SCENARIO_MAX_ARMS) {
        problem(ps, "more than %d arms", SCENARIO_MAX_ARMS);
        return NULL;
    }
    if (!arm_name_ok(name)) { /* it names the arm's results folder */
        problem(ps, "[arm %s]: an arm's name is 1 to 63 of A-Z, a-z, 0-9, @, +, _, - and . (not first)", name);
        return NULL;
    }
    scenario_arm *a = &s->arms[s->narms++];
    *a = (scenario_arm){.link_model = TOPOLOGY_UPLINK, .warm_steps = -1};
    snprintf(a->name, sizeof a->name, "%s", name);
    return a;
}

/* corpus = NAME: a corpus `wancp data NAME` prepares into data/ (checked again with the shards). */
static void set_corpus(parse *ps, const char *sec, const char *v, char *out, size_t len)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n < len;
    for (size_t i = 0; i < n && ok; i++)
        ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '_' || v[i] == '-';
    if (!ok)
        problem(ps, "[%s] corpus = '%s': expected a corpus's name (brown, sotu, mail: wancp data NAME)", sec, v);
    else
        snprintf(out, len, "%s", v);
}

/* The shards of corpus name under the source tree's data/: bytes when the vocabulary is 256. */
static void corpus_shards(const scenario *s, const char *name, char *train, char *val, size_t len)
{
    const char *kind = s->vocab == 256 ? "_bytes" : "";
    snprintf(train, len, "%s/data/%s%s_train.bin", cli_source_dir(), name, kind);
    snprintf(val, len, "%s/data/%s%s_val.bin", cli_source_dir(), name, kind);
}

/* A switch of the run-options table into values; false when key is not one. */
static bool method_key(parse *ps, char (*values)[RUN_OPTION_VALUE], const char *sec, const char *key, const char *v)
{
    int i = run_option_find(key);
    if (i < 0)
        return false;
    char why[128];
    if (run_option_check(i, v, why, sizeof why) != 0)
        problem(ps, "[%s] %s = '%s': %s", sec, key, v, why);
    else
        snprintf(values[i], RUN_OPTION_VALUE, "%s", strcmp(v, "auto") == 0 ? "" : v);
    return true;
}

static void arm_key(parse *ps, scenario_arm *a, const char *sec, const char *key, const char *v)
{
    if (strcmp(key, "profile") == 0) {
        if (strcmp(v, "none") == 0)
            a->profile_path[0] = 0;
        else
            set_path(ps, key, v, a->profile_path, sizeof a->profile_path);
    } else if (strcmp(key, "train") == 0 || strcmp(key, "val") == 0) {
        set_path(ps, key, v, key[0] == 't' ? a->train : a->val, sizeof a->train);
    } else if (strcmp(key, "corpus") == 0) {
        set_corpus(ps, sec, v, a->corpus, sizeof a->corpus);
    } else if (strcmp(key, "link_model") == 0) {
        if (strcmp(v, "uplink") != 0 && strcmp(v, "mesh") != 0)
            problem(ps, "[%s] link_model = '%s': expected uplink or mesh", sec, v);
        a->link_model = strcmp(v, "mesh") == 0 ? TOPOLOGY_MESH : TOPOLOGY_UPLINK;
    } else if (strcmp(key, "compress") == 0) {
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
            problem(ps, "[%s] compress = '%s': expected true or false", sec, v);
        a->compress = strcmp(v, "true") == 0;
    } else if (strcmp(key, "compress_last") == 0) {
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
            problem(ps, "[%s] compress_last = '%s': expected true or false", sec, v);
        a->compress_last = strcmp(v, "true") == 0;
    } else if (strcmp(key, "warm_steps") == 0) {
        set_int(ps, sec, key, v, 0, 100000000, &a->warm_steps);
    } else if (strcmp(key, "sync") == 0) {
        set_sync(ps, sec, key, v, &a->sync);
    } else if (strcmp(key, "sync_every") == 0) {
        set_int(ps, sec, key, v, 1, 1000000, &a->sync_every);
    } else if (strcmp(key, "straggler") == 0) {
        if (strcmp(v, "none") == 0)
            a->straggler = 0, a->straggler_k = 0;
        else if (topology_parse_straggler(v, &a->straggler, &a->straggler_k) != 0)
            problem(ps, "[%s] straggler = '%s': expected RANK:K with K >= 1 (or none)", sec, v);
    } else if (!method_key(ps, a->method, sec, key, v)) {
        problem(ps,
                "[%s] unknown key '%s' (profile, train, val, corpus, link_model, compress, compress_last, "
                "warm_steps, sync, sync_every, straggler, or a switch of the run-options table: %s)",
                sec, key, run_option_keys());
    }
}

/* [sweep]: key, values, arms. The values name arms too (NAME+KEY-VALUE): each 1 to 31 of
 * A-Z a-z 0-9 . _ - */
static void sweep_key(parse *ps, const char *key, const char *v)
{
    scenario *s = ps->s;
    if (strcmp(key, "key") == 0) {
        if (strlen(v) == 0 || strlen(v) >= sizeof s->sweep_key || strcmp(v, "profile") == 0)
            problem(ps, "[sweep] key = '%s': expected a key an arm takes (not profile: sweep links with arms)", v);
        else
            snprintf(s->sweep_key, sizeof s->sweep_key, "%s", v);
    } else if (strcmp(key, "values") == 0) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", v);
        s->nsweep = 0;
        for (char *save = NULL, *item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
            while (*item == ' ')
                item++;
            size_t n = strlen(item);
            while (n > 0 && item[n - 1] == ' ')
                item[--n] = 0;
            bool ok = n > 0 && n < RUN_OPTION_VALUE && s->nsweep < SCENARIO_MAX_SWEEP;
            for (size_t i = 0; i < n && ok; i++)
                ok = (item[i] >= 'a' && item[i] <= 'z') || (item[i] >= 'A' && item[i] <= 'Z') ||
                     (item[i] >= '0' && item[i] <= '9') || strchr("._-", item[i]) != NULL;
            if (!ok) {
                problem(ps,
                        "[sweep] values = '%s': expected 1 to %d values, comma-separated, each of A-Z a-z 0-9 . _ -", v,
                        SCENARIO_MAX_SWEEP);
                s->nsweep = 0;
                return;
            }
            snprintf(s->sweep_values[s->nsweep++], RUN_OPTION_VALUE, "%s", item);
        }
    } else if (strcmp(key, "arms") == 0) {
        snprintf(s->sweep_arms, sizeof s->sweep_arms, "%s", v);
    } else {
        problem(ps, "[sweep] unknown key '%s' (key, values, arms)", key);
    }
}

/* Whether [sweep] applies to arm a: the arms it names, or by default every arm that takes the
 * key (a switch of the compression: the compressed arms). */
static bool swept(const scenario *s, const scenario_arm *a)
{
    if (s->sweep_arms[0] == 0) {
        const int row = run_option_find(s->sweep_key);
        const bool compression_key = (row >= 0 && RUN_OPTIONS[row].compress_only) ||
                                     strcmp(s->sweep_key, "warm_steps") == 0 ||
                                     strcmp(s->sweep_key, "compress_last") == 0;
        return a->compress || !compression_key;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s->sweep_arms);
    for (char *save = NULL, *item = strtok_r(buf, ", ", &save); item != NULL; item = strtok_r(NULL, ", ", &save))
        if (strcmp(item, a->name) == 0)
            return true;
    return false;
}

/* Each swept arm becomes one arm per value, NAME+KEY-VALUE with the key set; every value
 * checked as the arm's own key would be. */
static void expand_sweep(parse *ps)
{
    scenario *s = ps->s;
    if (s->sweep_key[0] == 0 && s->nsweep == 0 && s->sweep_arms[0] == 0)
        return;
    if (s->sweep_key[0] == 0 || s->nsweep == 0) {
        problem(ps, "[sweep] needs a key and its values");
        return;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s->sweep_arms);
    for (char *save = NULL, *item = strtok_r(buf, ", ", &save); item != NULL; item = strtok_r(NULL, ", ", &save)) {
        bool found = false;
        for (int i = 0; i < s->narms; i++)
            found |= strcmp(s->arms[i].name, item) == 0;
        if (!found)
            problem(ps, "[sweep] arms: no arm '%s'", item);
    }
    static scenario_arm out[SCENARIO_MAX_ARMS];
    int n = 0, wanted = 0;
    for (int i = 0; i < s->narms; i++)
        wanted += swept(s, &s->arms[i]) ? s->nsweep : 1;
    if (wanted > SCENARIO_MAX_ARMS) {
        problem(ps, "[sweep]: %d arms once swept, more than %d", wanted, SCENARIO_MAX_ARMS);
        return;
    }
    for (int i = 0; i < s->narms; i++) {
        const scenario_arm *a = &s->arms[i];
        if (!swept(s, a)) {
            out[n++] = *a;
            continue;
        }
        for (int k = 0; k < s->nsweep; k++) {
            scenario_arm *b = &out[n++];
            *b = *a;
            char name[200];
            snprintf(name, sizeof name, "%s+%s-%s", a->name, s->sweep_key, s->sweep_values[k]);
            if (!arm_name_ok(name))
                problem(ps, "[sweep]: the arm %s would be named '%s', longer than 63 characters", a->name, name);
            snprintf(b->name, sizeof b->name, "%.63s", name);
            snprintf(b->swept_from, sizeof b->swept_from, "%s", a->name);
            snprintf(b->sweep_value, sizeof b->sweep_value, "%s", s->sweep_values[k]);
            char sec[100];
            snprintf(sec, sizeof sec, "sweep] [arm %.60s", b->name); /* problems read "[sweep] [arm NAME] key = ..." */
            arm_key(ps, b, sec, s->sweep_key, s->sweep_values[k]);
        }
    }
    memcpy(s->arms, out, (size_t)n * sizeof *out);
    s->narms = n;
}

static int on_key(void *user, const char *sec, const char *key, const char *v)
{
    parse *ps = user;
    scenario *s = ps->s;
    if (strcmp(sec, "scenario") == 0) {
        if (strcmp(key, "name") == 0) {
            ps->name_seen = true;
            size_t n = strlen(v), ok = n > 0 && n < sizeof s->name;
            for (size_t i = 0; i < n && ok; i++)
                ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-' || v[i] == '_';
            if (!ok)
                problem(ps, "[scenario] name = '%s': use 1 to 63 of a-z, 0-9, - and _", v);
            else
                snprintf(s->name, sizeof s->name, "%s", v);
        } else if (strcmp(key, "ranks") == 0) {
            set_int(ps, sec, key, v, 1, 64, &s->ranks);
        } else if (strcmp(key, "steps") == 0) {
            set_int(ps, sec, key, v, 1, 100000000, &s->steps);
        } else if (strcmp(key, "seed") == 0 || strcmp(key, "seeds") == 0) {
            set_seeds(ps, key, v);
        } else if (strcmp(key, "baseline") == 0) {
            if (strlen(v) == 0 || strlen(v) >= sizeof s->baseline)
                problem(ps, "[scenario] baseline = '%s': expected an arm's name", v);
            else
                snprintf(s->baseline, sizeof s->baseline, "%s", v);
        } else if (strcmp(key, "target_val_loss") == 0) {
            set_double(ps, sec, key, v, 0, 100, &s->target_val_loss);
        } else if (strcmp(key, "dilation") == 0) {
            s->dilation_auto = strcmp(v, "auto") == 0;
            s->dilation = 1;
            if (!s->dilation_auto)
                set_double(ps, sec, key, v, 1, 1000, &s->dilation);
        } else if (strcmp(key, "exchange_ratio") == 0) {
            set_double(ps, sec, key, v, 0.01, 100, &s->exchange_ratio);
        } else if (strcmp(key, "timeout") == 0) {
            set_int(ps, sec, key, v, 10, 86400 * 7, &s->timeout_s);
        } else if (strcmp(key, "simulate") == 0) {
            if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
                problem(ps, "[scenario] simulate = '%s': expected true or false", v);
            s->simulate = strcmp(v, "true") == 0;
        } else {
            problem(ps,
                    "[scenario] unknown key '%s' (name, ranks, steps, seed, seeds, baseline, target_val_loss, "
                    "dilation, exchange_ratio, timeout, simulate)",
                    key);
        }
    } else if (strcmp(sec, "model") == 0) {
        static const char *keys[] = {"layers", "dim", "heads", "kv_heads", "ffn", "context", "vocab"};
        int *fields[] = {&s->layers, &s->dim, &s->heads, &s->kv_heads, &s->ffn, &s->context, &s->vocab};
        size_t i = 0;
        while (i < 7 && strcmp(key, keys[i]) != 0)
            i++;
        if (i == 7)
            problem(ps, "[model] unknown key '%s' (layers, dim, heads, kv_heads, ffn, context, vocab)", key);
        else
            set_int(ps, sec, key, v, 1, 1 << 24, fields[i]);
    } else if (strcmp(sec, "train") == 0) {
        if (strcmp(key, "train") == 0 || strcmp(key, "val") == 0)
            set_path(ps, key, v, key[0] == 't' ? s->train : s->val, sizeof s->train);
        else if (strcmp(key, "corpus") == 0)
            set_corpus(ps, sec, v, s->corpus, sizeof s->corpus);
        else if (strcmp(key, "batch") == 0)
            set_int(ps, sec, key, v, 1, 4096, &s->batch);
        else if (strcmp(key, "lr") == 0)
            set_double(ps, sec, key, v, 1e-9, 10, &s->lr);
        else if (strcmp(key, "warmup") == 0)
            set_int(ps, sec, key, v, 0, 100000000, &s->warmup);
        else if (strcmp(key, "eval_every") == 0)
            set_int(ps, sec, key, v, 0, 100000000, &s->eval_every);
        else if (strcmp(key, "val_tokens") == 0)
            set_long(ps, sec, key, v, 1, 1L << 40, &s->val_tokens);
        else if (strcmp(key, "sync") == 0)
            set_sync(ps, sec, key, v, &s->sync);
        else if (strcmp(key, "sync_every") == 0)
            set_int(ps, sec, key, v, 1, 1000000, &s->sync_every);
        else if (!method_key(ps, s->method, sec, key, v))
            problem(ps,
                    "[train] unknown key '%s' (train, val, corpus, batch, lr, warmup, eval_every, val_tokens, "
                    "sync, sync_every, or a switch of the run-options table: %s)",
                    key, run_option_keys());
    } else if (strcmp(sec, "sweep") == 0) {
        sweep_key(ps, key, v);
    } else if (strncmp(sec, "arm ", 4) == 0 && sec[4] != 0) {
        scenario_arm *a = arm_named(ps, sec + 4);
        if (a != NULL)
            arm_key(ps, a, sec, key, v);
    } else {
        problem(ps, "unknown section [%s] (scenario, model, train, sweep, arm NAME)", sec);
    }
    return 1;
}

/* One --set section.key=value (arm.NAME.key for an arm), as if it ended the file. */
static void apply_set(parse *ps, const char *text)
{
    char buf[1200], sec[1210];
    snprintf(buf, sizeof buf, "%s", text);
    ps->where = text;
    char *eq = strchr(buf, '='), *dot = eq != NULL ? memchr(buf, '.', (size_t)(eq - buf)) : NULL;
    if (eq == NULL || dot == NULL || dot == buf) {
        problem(ps, "expected section.key=value (arm.NAME.key=value for an arm)");
        return;
    }
    *eq = 0;
    char *key = strrchr(buf, '.');
    *key++ = 0;
    if (strncmp(buf, "arm.", 4) == 0)
        snprintf(sec, sizeof sec, "arm %s", buf + 4);
    else
        snprintf(sec, sizeof sec, "%s", buf);
    on_key(ps, sec, key, eq + 1);
}

/* What can only be judged once everything is read. */
static void check_whole(parse *ps)
{
    scenario *s = ps->s;
    ps->where = NULL;
    ps->in.line = 0;
    if (!ps->name_seen)
        problem(ps, "[scenario] needs a name");
    if (s->ranks == 0 || s->steps == 0)
        problem(ps, "[scenario] needs ranks and steps");
    if (s->narms == 0)
        problem(ps, "no [arm NAME] section: a scenario compares at least one arm");
    expand_sweep(ps);
    if (s->corpus[0]) /* a corpus names both shards; the vocabulary picks bytes or gpt2 */
        corpus_shards(s, s->corpus, s->train, s->val, sizeof s->train);
    for (int i = 0; i < s->narms; i++)
        if (s->arms[i].corpus[0])
            corpus_shards(s, s->arms[i].corpus, s->arms[i].train, s->arms[i].val, sizeof s->arms[i].train);
    if (s->narms * s->nseeds > SCENARIO_MAX_RUNS)
        problem(ps, "%d arms x %d seeds: at most %d runs in one scenario", s->narms, s->nseeds, SCENARIO_MAX_RUNS);
    if (s->baseline[0]) { /* an arm, or one a [sweep] expanded: its first (the summary pairs by value) */
        bool found = false;
        for (int i = 0; i < s->narms; i++)
            found |= strcmp(s->arms[i].name, s->baseline) == 0;
        for (int i = 0; i < s->narms && !found; i++)
            if (strcmp(s->arms[i].swept_from, s->baseline) == 0) {
                snprintf(s->baseline, sizeof s->baseline, "%s", s->arms[i].name);
                found = true;
            }
        if (!found)
            problem(ps, "[scenario] baseline = %s: no arm of that name", s->baseline);
    }
    if (s->steps > 0 && s->warmup > s->steps)
        problem(ps, "[train] warmup = %d is longer than the run's %d steps", s->warmup, s->steps);
    if (s->ranks > 0 && s->context % (2 * s->ranks) != 0)
        problem(ps, "[model] context = %d does not split into 2 x %d chunks for %d ranks", s->context, s->ranks,
                s->ranks);
    model_config c = model_config_default();
    c.n_layers = s->layers, c.dim = s->dim, c.n_heads = s->heads, c.n_kv_heads = s->kv_heads, c.ffn_dim = s->ffn;
    c.context = s->context, c.vocab = s->vocab, c.attn_block = 1;
    char err[WANCP_ERRLEN];
    if (model_config_validate(&c, "[model]", err, sizeof err) != WANCP_OK)
        problem(ps, "%s", err);
    for (int i = 0; i < s->narms; i++) {
        scenario_arm *a = &s->arms[i];
        for (int j = 0; j < i; j++)
            if (strcmp(s->arms[j].name, a->name) == 0)
                problem(ps, "two arms are named '%s'", a->name);
        if (s->steps > 0 && a->warm_steps > s->steps)
            problem(ps, "[arm %s] warm_steps = %d is longer than the run's %d steps", a->name, a->warm_steps, s->steps);
        if (a->straggler_k > 1 && a->straggler >= s->ranks)
            problem(ps, "[arm %s] straggler = %d:%g: the scenario has ranks 0 to %d", a->name, a->straggler,
                    a->straggler_k, s->ranks - 1);
        for (int k = 0; k < RUN_NOPTIONS; k++)
            if (RUN_OPTIONS[k].compress_only && a->method[k][0] && strcmp(a->method[k], "false") != 0 && !a->compress)
                problem(ps, "[arm %s] %s = %s: a switch of the compression (give the arm compress = true)", a->name,
                        RUN_OPTIONS[k].key, a->method[k]);
        if (a->straggler_k > 1 && a->profile_path[0] == 0)
            problem(ps, "[arm %s] straggler: an unshaped arm has no rate to divide (give it a profile)", a->name);
        if (a->profile_path[0] == 0)
            continue;
        if (link_profile_load(&a->profile, a->profile_path, err, sizeof err) != WANCP_OK)
            problem(ps, "[arm %s] profile: %s", a->name, err);
        else
            a->shaped = true;
    }
    bool rate_shaped = false;
    for (int i = 0; i < s->narms; i++)
        rate_shaped |= s->arms[i].shaped && s->arms[i].profile.rate_bps > 0;
    if (s->dilation_auto && !rate_shaped && ps->in.nproblems == 0)
        problem(ps, "[scenario] dilation = auto: no arm's profile sets a rate to dilate (give a number)");
    for (int i = 0; i < s->narms && s->baseline[0] == 0; i++) /* the first uncompressed unshaped arm */
        if (!s->arms[i].compress && s->arms[i].profile_path[0] == 0)
            snprintf(s->baseline, sizeof s->baseline, "%s", s->arms[i].name);
    if (s->baseline[0] == 0 && s->narms > 0)
        snprintf(s->baseline, sizeof s->baseline, "%s", s->arms[0].name);
}

int scenario_load(scenario *s, const char *path, char *const *sets, int nsets, char *err, size_t errlen)
{
    *s = (scenario){.seeds = {1},
                    .nseeds = 1,
                    .dilation = 1.0,
                    .exchange_ratio = 1.5,
                    .timeout_s = 1800,
                    .simulate = true,
                    .layers = 4,
                    .dim = 256,
                    .heads = 4,
                    .kv_heads = 4,
                    .ffn = 704,
                    .context = 1024,
                    .vocab = 50257,
                    .batch = 4,
                    .lr = 3e-3,
                    .warmup = -1,
                    .eval_every = 50,
                    .val_tokens = 65536,
                    .sync = 'S',
                    .sync_every = 10};
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->dir, sizeof s->dir, "%s", path);
    char *slash = strrchr(s->dir, '/');
    if (slash != NULL)
        *slash = 0;
    else
        snprintf(s->dir, sizeof s->dir, ".");
    snprintf(s->train, sizeof s->train, "%s/data/brown_train.bin", cli_source_dir());
    snprintf(s->val, sizeof s->val, "%s/data/brown_val.bin", cli_source_dir());
    parse ps = {.s = s};
    ps.in.path = path;
    ps.in.file = fopen(path, "r");
    if (ps.in.file == NULL)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: cannot open", path);
    int rc = ini_input_parse(&ps.in, on_key, &ps);
    fclose(ps.in.file);
    if (rc > 0 && ps.in.nproblems == 0) {
        ps.in.line = rc;
        problem(&ps, "not a key = value line or a [section]");
    }
    for (int i = 0; i < nsets; i++)
        apply_set(&ps, sets[i]);
    check_whole(&ps); /* even after other problems: every one is reported at once */
    if (ps.in.nproblems == 0)
        return WANCP_OK;
    scenario_free(s);
    return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s", ps.in.problems);
}

const char *scenario_train_shard(const scenario *s, const scenario_arm *a)
{
    return a != NULL && a->train[0] ? a->train : s->train;
}

const char *scenario_val_shard(const scenario *s, const scenario_arm *a)
{
    return a != NULL && a->val[0] ? a->val : s->val;
}

/* Shards checked against the vocabulary, each path once however many arms share it; every
 * problem appended, naming the section and key that first gave the path. */
typedef struct shard_checks {
    const char *done[2 + 2 * SCENARIO_MAX_ARMS];
    int ndone;
    char problems[4 * WANCP_ERRLEN];
} shard_checks;

static void check_shard(const scenario *s, shard_checks *c, const char *section, const char *key, const char *path)
{
    for (int i = 0; i < c->ndone; i++)
        if (strcmp(c->done[i], path) == 0)
            return;
    c->done[c->ndone++] = path;
    char why[WANCP_ERRLEN] = "";
    shard sh;
    if (shard_read(path, s->vocab, &sh, why, sizeof why) == WANCP_OK) {
        shard_free(&sh);
        return;
    }
    size_t used = strlen(c->problems);
    snprintf(c->problems + used, sizeof c->problems - used, "%s%s %s: %s", used ? "; " : "", section, key, why);
}

int scenario_check_data(const scenario *s, char *err, size_t errlen)
{
    static shard_checks c;
    c = (shard_checks){0};
    for (int i = 0; i < s->narms; i++) {
        const scenario_arm *a = &s->arms[i];
        char section[80];
        snprintf(section, sizeof section, "[arm %s]", a->name);
        check_shard(s, &c, a->train[0] ? section : "[train]", "train", scenario_train_shard(s, a));
        check_shard(s, &c, a->val[0] ? section : "[train]", "val", scenario_val_shard(s, a));
    }
    if (c.problems[0] == 0)
        return WANCP_OK;
    return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: %s", s->path, c.problems);
}

void scenario_free(scenario *s)
{
    for (int i = 0; i < s->narms; i++)
        if (s->arms[i].shaped)
            link_profile_free(&s->arms[i].profile);
    s->narms = 0;
}

const char *scenario_method(const scenario *s, const scenario_arm *a, int i)
{
    return a != NULL && a->method[i][0] ? a->method[i] : s->method[i];
}

run_method scenario_run_method(const scenario *s, const scenario_arm *a)
{
    run_method m = run_method_defaults();
    for (int i = 0; i < RUN_NOPTIONS; i++) {
        const char *v = scenario_method(s, a, i);
        run_method_set(&m, i, v[0] ? v : "auto");
    }
    return m;
}

const char *scenario_switch(const scenario *s, const scenario_arm *a, const char *key)
{
    const int i = run_option_find(key);
    const char *v = scenario_method(s, a, i);
    return v[0] ? v : RUN_OPTIONS[i].fallback != NULL ? RUN_OPTIONS[i].fallback : "auto";
}

void scenario_run_dir(const scenario *s, const scenario_arm *a, int seed_index, char *out, size_t len)
{
    if (s->nseeds > 1)
        snprintf(out, len, "%s/seed-%lu", a->name, s->seeds[seed_index]);
    else
        snprintf(out, len, "%s", a->name);
}

void scenario_write(const scenario *s, FILE *f)
{
    fprintf(f, "; %s, resolved: every value explicit\n[scenario]\nname = %s\nranks = %d\nsteps = %d\n", s->path,
            s->name, s->ranks, s->steps);
    fprintf(f, "%s = ", s->nseeds > 1 ? "seeds" : "seed");
    for (int i = 0; i < s->nseeds; i++)
        fprintf(f, "%s%lu", i ? "," : "", s->seeds[i]);
    fprintf(f, "\nbaseline = %s\ntarget_val_loss = %g\n", s->baseline, s->target_val_loss);
    if (s->dilation_note[0])
        fprintf(f, "; dilation %s\n", s->dilation_note);
    if (s->dilation_auto)
        fprintf(f, "dilation = auto\n");
    else
        fprintf(f, "dilation = %g\n", s->dilation);
    fprintf(f, "exchange_ratio = %g\ntimeout = %d\nsimulate = %s\n\n", s->exchange_ratio, s->timeout_s,
            s->simulate ? "true" : "false");
    fprintf(f, "[model]\nlayers = %d\ndim = %d\nheads = %d\nkv_heads = %d\nffn = %d\ncontext = %d\nvocab = %d\n\n",
            s->layers, s->dim, s->heads, s->kv_heads, s->ffn, s->context, s->vocab);
    fprintf(f,
            "[train]\ntrain = %s\nval = %s\nbatch = %d\nlr = %g\nwarmup = %d\neval_every = %d\nval_tokens = %ld\n"
            "sync = %c\nsync_every = %d\n",
            s->train, s->val, s->batch, s->lr, s->warmup >= 0 ? s->warmup : s->steps / 10, s->eval_every, s->val_tokens,
            s->sync, s->sync_every);
    for (int i = 0; i < RUN_NOPTIONS; i++)
        fprintf(f, "%s = %s\n", RUN_OPTIONS[i].key, scenario_switch(s, NULL, RUN_OPTIONS[i].key));
    for (int i = 0; i < s->narms; i++) {
        const scenario_arm *a = &s->arms[i];
        if (a->swept_from[0])
            fprintf(f, "\n; made by [sweep] from arm %s: %s = %s", a->swept_from, s->sweep_key, a->sweep_value);
        fprintf(f,
                "\n[arm %s]\nprofile = %s\nlink_model = %s\ncompress = %s\ncompress_last = %s\nwarm_steps = %d\n"
                "sync = %c\nsync_every = %d\n",
                a->name, a->shaped ? a->profile_path : "none", a->link_model == TOPOLOGY_MESH ? "mesh" : "uplink",
                a->compress ? "true" : "false", a->compress_last ? "true" : "false",
                a->warm_steps >= 0 ? a->warm_steps : s->steps / 10, a->sync ? a->sync : s->sync,
                a->sync_every ? a->sync_every : s->sync_every);
        if (a->train[0])
            fprintf(f, "train = %s\n", a->train);
        if (a->val[0])
            fprintf(f, "val = %s\n", a->val);
        if (a->straggler_k > 1)
            fprintf(f, "straggler = %d:%g\n", a->straggler, a->straggler_k);
        else
            fprintf(f, "straggler = none\n");
        for (int k = 0; k < RUN_NOPTIONS; k++) { /* an uncompressed arm takes no switch of the compression */
            if (!RUN_OPTIONS[k].compress_only || a->compress)
                fprintf(f, "%s = %s\n", RUN_OPTIONS[k].key, scenario_switch(s, a, RUN_OPTIONS[k].key));
        }
    }
}
