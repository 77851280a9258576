/* The table of the method's and the runtime's switches (run_options.h). */
#include "run_options.h"

#include "../core/model/config.h"
#include "../core/ops/ops.h"

#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ranges as wancp train takes them (run_cli checks that train refuses what lies outside). */
#define FIELD(name) offsetof(run_method, name)
const run_option RUN_OPTIONS[] = {
    {"wire", "--wire", RUN_OPT_CHOICE, 0, 0, "bf16|fp32", false, "bf16", FIELD(wire),
     "element type of K/V, C and E on the wire (theta and tau: fp32)"},
    {"device", "--device", RUN_OPT_CHOICE, 0, 0, "cpu|cuda", false, "cpu", FIELD(device),
     "where the maths runs: OpenBLAS, or CUDA kernels and cuBLAS (an arm's ranks share the first GPU)"},
    {"precision", "--precision", RUN_OPT_CHOICE, 0, 0, "tf32|fp32|bf16", false, "tf32", FIELD(precision),
     "cuda's products (matmuls, attention) on tensor cores with TF32 or bf16 operands, or in full\n"
     "        fp32; all accumulate in fp32"},
    {"attention", "--attention", RUN_OPT_CHOICE, 0, 0, "products|fused", false, "products", FIELD(attention),
     "cuda attention as cuBLAS products around row kernels, or fused tensor-core kernels that keep\n"
     "        score tiles on chip (tf32 or bf16; head dimensions 16, 32, 64, 128, 256)"},
    {"cp_layout", "--cp-layout", RUN_OPT_CHOICE, 0, 0, "zigzag|contiguous", false, "zigzag", FIELD(cp_layout),
     "which chunks a rank holds"},
    {"kv_regather", "--kv-regather", RUN_OPT_BOOL, 0, 0, NULL, false, "false", FIELD(kv_regather),
     "the backward gathers K/V again instead of keeping every layer's\n        (memory of one layer; kv-forward bytes "
     "double)"},
    {"basis", "--basis", RUN_OPT_CHOICE, 0, 0, "head|layer", true, "head", FIELD(basis),
     "a basis, head psi and rotation per KV head (the paper's Algorithm 1), or one over the\n"
     "        layer's d_kv; ranks, psi_k and planes below are per basis"},
    {"rank_k", "--rank-k", RUN_OPT_INT, 1, 65536, NULL, true, NULL, FIELD(rank_k),
     "the subspace rank of K per basis (auto: ceil(0.02 w), w = d_head per head, d_kv per layer)"},
    {"rank_v", "--rank-v", RUN_OPT_INT, 1, 65536, NULL, true, NULL, FIELD(rank_v),
     "the subspace rank of V per basis (auto: ceil(0.05 w))"},
    {"psi_k", "--psi-k", RUN_OPT_INT, 1, 64, NULL, true, "1", FIELD(psi_k),
     "outputs of each head psi (the rotation's parameters theta), per basis"},
    {"planes", "--planes", RUN_OPT_INT, 1, 32768, NULL, true, NULL, FIELD(planes),
     "Givens planes of each basis's rotation (auto: w / 2)"},
    {"cheap_rotation", "--cheap-rotation", RUN_OPT_BOOL, 0, 0, NULL, true, "false", FIELD(cheap_rotation),
     "the cheaper rotation: r planes pairing U0 with a complement (O(d r^2))"},
    {"cov_steps", "--cov-steps", RUN_OPT_INT, 1, 100000000, NULL, true, "10", FIELD(cov_steps),
     "the last warm steps whose Z give the bases U0 (at most the warm steps)"},
    {"unplug_at", "--unplug-at", RUN_OPT_REAL, 0, 1, NULL, true, "0", FIELD(unplug_at),
     "exchange uncompressed again from this fraction of the steps on; 0: never"},
    {"check_shared", "--check-shared", RUN_OPT_BOOL, 0, 0, NULL, true, "false", FIELD(check_shared),
     "hash U0, Q, Omega on every rank every step; a difference fails the run"},
    {"stiefel", "--stiefel", RUN_OPT_BOOL, 0, 0, NULL, true, "false", FIELD(stiefel),
     "also train U0 by Riemannian steps on the Stiefel manifold (QR retraction)"},
    {"stiefel_lr", "--stiefel-lr", RUN_OPT_REAL, 0, 10, NULL, true, NULL, FIELD(stiefel_lr),
     "their step size, on the same schedule as the learning rate (auto: lr)"},
    {"stiefel_every", "--stiefel-every", RUN_OPT_INT, 1, 1000000, NULL, true, "10", FIELD(stiefel_every),
     "rank 0 re-broadcasts U0 every this many steps (removes drift)"},
};
#undef FIELD
_Static_assert(CUDA_TF32 == 0 && CUDA_FP32 == 1 && CUDA_BF16 == 2, "precision's choices are cuda_precision's values");
const int RUN_NOPTIONS = (int)(sizeof RUN_OPTIONS / sizeof RUN_OPTIONS[0]);
_Static_assert(sizeof RUN_OPTIONS / sizeof RUN_OPTIONS[0] <= RUN_OPTIONS_MAX, "raise RUN_OPTIONS_MAX");

/* Choice k of "a|b|c" (its width into *width), or NULL past the last: the one walk over a
 * row's choices. */
static const char *choice_at(const char *choices, int k, int *width)
{
    const char *c = choices;
    for (; k > 0 && *c; k--)
        c += strcspn(c, "|") + (c[strcspn(c, "|")] == '|');
    if (*c == 0 && (k > 0 || c != choices))
        return NULL;
    *width = (int)strcspn(c, "|");
    return c;
}

/* The index of text among a row's choices, or -1. */
static int choice_index(const char *choices, const char *text)
{
    int width;
    for (int k = 0; choice_at(choices, k, &width) != NULL; k++)
        if ((size_t)width == strlen(text) && strncmp(choice_at(choices, k, &width), text, (size_t)width) == 0)
            return k;
    return -1;
}

/* "expected a, b or c, or auto" from "a|b|c". */
static void spell_choices(const char *choices, char *out, size_t len)
{
    int n = 0, width;
    while (choice_at(choices, n, &width) != NULL)
        n++;
    size_t used = (size_t)snprintf(out, len, "expected ");
    for (int k = 0; k < n && used < len; k++) {
        const char *c = choice_at(choices, k, &width);
        used += (size_t)snprintf(out + used, len - used, "%s%.*s", k == 0 ? "" : k == n - 1 ? " or " : ", ", width, c);
    }
    if (used < len)
        snprintf(out + used, len - used, ", or auto");
}

int run_option_find(const char *key)
{
    for (int i = 0; i < RUN_NOPTIONS; i++)
        if (strcmp(RUN_OPTIONS[i].key, key) == 0)
            return i;
    return -1;
}

int run_option_check(int i, const char *text, char *why, size_t len)
{
    const run_option *o = &RUN_OPTIONS[i];
    if (strcmp(text, "auto") == 0)
        return 0;
    if (strlen(text) >= RUN_OPTION_VALUE) {
        snprintf(why, len, "longer than %d characters", RUN_OPTION_VALUE - 1);
        return -1;
    }
    char *end;
    errno = 0;
    switch (o->type) {
    case RUN_OPT_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
            return 0;
        snprintf(why, len, "expected true, false or auto");
        return -1;
    case RUN_OPT_CHOICE:
        if (choice_index(o->choices, text) >= 0)
            return 0;
        spell_choices(o->choices, why, len);
        return -1;
    case RUN_OPT_INT: {
        long x = strtol(text, &end, 10);
        if (end != text && *end == 0 && errno == 0 && x >= o->min && x <= o->max)
            return 0;
        snprintf(why, len, "expected a whole number from %.0f to %.0f, or auto", o->min, o->max);
        return -1;
    }
    case RUN_OPT_REAL: {
        double x = strtod(text, &end);
        if (end != text && *end == 0 && errno == 0 && isfinite(x) && x >= o->min && x <= o->max)
            return 0;
        snprintf(why, len, "expected a number from %g to %g, or auto", o->min, o->max);
        return -1;
    }
    }
    return -1;
}

const char *run_option_keys(void)
{
    static char keys[512];
    if (keys[0] == 0)
        for (int i = 0; i < RUN_NOPTIONS; i++) {
            size_t used = strlen(keys);
            snprintf(keys + used, sizeof keys - used, "%s%s", i ? ", " : "", RUN_OPTIONS[i].key);
        }
    return keys;
}

void run_method_set(run_method *m, int i, const char *text)
{
    const run_option *o = &RUN_OPTIONS[i];
    const bool automatic = strcmp(text, "auto") == 0;
    m->given[i] = !automatic;
    if (automatic)
        text = o->fallback != NULL ? o->fallback : "";
    char *field = (char *)m + o->field;
    switch (o->type) {
    case RUN_OPT_INT: *(int *)field = text[0] ? (int)strtol(text, NULL, 10) : 0; break;
    case RUN_OPT_REAL: *(double *)field = text[0] ? strtod(text, NULL) : 0; break;
    case RUN_OPT_BOOL: *(bool *)field = strcmp(text, "true") == 0; break;
    case RUN_OPT_CHOICE: *(int *)field = text[0] ? choice_index(o->choices, text) : 0; break;
    }
}

run_method run_method_defaults(void)
{
    run_method m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < RUN_NOPTIONS; i++)
        run_method_set(&m, i, "auto");
    return m;
}

void run_method_value(const run_method *m, int i, char *out, size_t len)
{
    const run_option *o = &RUN_OPTIONS[i];
    const char *field = (const char *)m + o->field;
    switch (o->type) {
    case RUN_OPT_INT: snprintf(out, len, "%d", *(const int *)field); break;
    case RUN_OPT_REAL: snprintf(out, len, "%g", *(const double *)field); break;
    case RUN_OPT_BOOL: snprintf(out, len, "%s", *(const bool *)field ? "true" : "false"); break;
    case RUN_OPT_CHOICE: {
        int width = 0;
        const char *c = choice_at(o->choices, *(const int *)field, &width);
        snprintf(out, len, "%.*s", width, c != NULL ? c : "");
        break;
    }
    }
}

void run_method_compression(const run_method *m, model_config *c)
{
    const int bases = m->basis == 0 ? c->n_kv_heads : 1;
    c->kv_bases = bases;
    c->psi_k = bases * m->psi_k;
    c->rank_k = m->given[run_option_find("rank_k")] ? bases * m->rank_k : model_default_rank_k(c);
    c->rank_v = m->given[run_option_find("rank_v")] ? bases * m->rank_v : model_default_rank_v(c);
}

void run_option_usage(FILE *out)
{
    for (int i = 0; i < RUN_NOPTIONS; i++) {
        const run_option *o = &RUN_OPTIONS[i];
        char left[64];
        const char *value = o->type == RUN_OPT_INT ? " N" : o->type == RUN_OPT_REAL ? " X" : "";
        if (o->type == RUN_OPT_CHOICE)
            snprintf(left, sizeof left, "%s %s", o->flag, o->choices);
        else
            snprintf(left, sizeof left, "%s%s", o->flag, value);
        char with_default[112];
        if (o->fallback != NULL && o->type != RUN_OPT_BOOL)
            snprintf(with_default, sizeof with_default, "%s (%s)", left, o->fallback);
        else
            snprintf(with_default, sizeof with_default, "%s", left);
        fprintf(out, "  %-44s [%s]\n        %s\n", with_default, o->key, o->help);
    }
}
