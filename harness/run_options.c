/* The table of the method's switches (run_options.h). */
#include "run_options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ranges as wancp train takes them (run_cli checks that train refuses what lies outside). */
const run_option RUN_OPTIONS[] = {
    {"cp_layout", "--cp-layout", RUN_OPT_CHOICE, 0, 0, "zigzag|contiguous", false, "which chunks a rank holds"},
    {"kv_regather", "--kv-regather", RUN_OPT_BOOL, 0, 0, NULL, false,
     "the backward gathers K/V again instead of keeping every layer's"},
    {"rank_k", "--rank-k", RUN_OPT_INT, 1, 65536, NULL, true, "the subspace rank of K (auto: ceil(0.02 d_kv))"},
    {"rank_v", "--rank-v", RUN_OPT_INT, 1, 65536, NULL, true, "the subspace rank of V (auto: ceil(0.05 d_kv))"},
    {"psi_k", "--psi-k", RUN_OPT_INT, 1, 64, NULL, true, "outputs of each head psi (auto: 1)"},
    {"planes", "--planes", RUN_OPT_INT, 1, 32768, NULL, true, "Givens planes of the rotation (auto: d_kv / 2)"},
    {"cheap_rotation", "--cheap-rotation", RUN_OPT_BOOL, 0, 0, NULL, true,
     "the cheaper rotation: r planes pairing U0 with a complement"},
    {"cov_steps", "--cov-steps", RUN_OPT_INT, 1, 100000000, NULL, true,
     "the last warm steps whose Z give the bases U0 (auto: 10, at most warm_steps)"},
    {"unplug_at", "--unplug-at", RUN_OPT_REAL, 0, 1, NULL, true,
     "exchange uncompressed again from this fraction of the steps on"},
    {"check_shared", "--check-shared", RUN_OPT_BOOL, 0, 0, NULL, true,
     "hash U0, Q, Omega on every rank every step; a difference fails the run"},
    {"stiefel", "--stiefel", RUN_OPT_BOOL, 0, 0, NULL, true, "also train U0 on the Stiefel manifold"},
    {"stiefel_lr", "--stiefel-lr", RUN_OPT_REAL, 0, 10, NULL, true, "its step size (auto: lr)"},
    {"stiefel_every", "--stiefel-every", RUN_OPT_INT, 1, 1000000, NULL, true,
     "rank 0 re-broadcasts U0 every this many steps (auto: 10)"},
};
const int RUN_NOPTIONS = (int)(sizeof RUN_OPTIONS / sizeof RUN_OPTIONS[0]);
_Static_assert(sizeof RUN_OPTIONS / sizeof RUN_OPTIONS[0] <= RUN_OPTIONS_MAX, "raise RUN_OPTIONS_MAX");

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
    case RUN_OPT_CHOICE: {
        size_t n = strlen(text);
        for (const char *c = o->choices; *c;) {
            size_t k = strcspn(c, "|");
            if (k == n && strncmp(c, text, n) == 0)
                return 0;
            c += k + (c[k] == '|');
        }
        snprintf(why, len, "expected %s or auto", o->choices);
        return -1;
    }
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
