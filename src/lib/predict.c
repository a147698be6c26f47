/* predict.c -- per-model quality and output-length predictions from a
 * neighbour list (see predict.h for the two modes and their formulas).
 *
 * Threads: no state of its own; the caller holds the store's read lock.
 */
#include "predict.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmroute.h"

/* Tuned by leave-one-out over the train split of the development data
 * (bench/predict_eval.c --tune; grid T in {0, 0.05, 0.2}, m_q and m_s in
 * {0 .. 128}, K in {0, 64 .. 384}, m_w in {0 .. 32}; quality by Brier score,
 * then m_o by squared error of the output length, since cost is linear in
 * it and wants the mean). LOO Brier: store-mean prior (K = 0) 0.1991 at its
 * best (m_s = 8; 10 kept), wide prior 0.19404 at K = 192, 0.19411 at
 * K = 128 (m_q = 128, m_w = 2, then m_o = 16: --wide-k 128); the plain
 * AIOS mean 0.2027, per-task means from the true task labels 0.1945.
 * K = 128 rather than 192: within 0.0001 of the best for a third less
 * work per request (the wide neighbours are fetched and read for every
 * decision). Every temperature scored worse than equal weights: within one
 * task the nearest prompts are no better guides than the farther ones.
 * m_s is kept for stores too small for a wide level (see predict.h); the
 * share 1/8 is a guard for them, not tuned. */
#define DEFAULT_TEMPERATURE 0.0
#define DEFAULT_PRIOR_WEIGHT 10.0
#define DEFAULT_LENGTH_PRIOR_WEIGHT 16.0
#define DEFAULT_WIDE_K 128
#define DEFAULT_WIDE_MAX_SHARE 0.125
#define DEFAULT_WIDE_WEIGHT 128.0
#define DEFAULT_WIDE_PRIOR_WEIGHT 2.0

/* Up to this many store models, candidates are found through a table. */
#define MAP_MODELS 1024

void lr__predict_params_default(struct lr__predict_params *p)
{
    p->temperature = DEFAULT_TEMPERATURE;
    p->prior_weight = DEFAULT_PRIOR_WEIGHT;
    p->length_prior_weight = DEFAULT_LENGTH_PRIOR_WEIGHT;
    p->wide_k = DEFAULT_WIDE_K;
    p->wide_max_share = DEFAULT_WIDE_MAX_SHARE;
    p->wide_weight = DEFAULT_WIDE_WEIGHT;
    p->wide_prior_weight = DEFAULT_WIDE_PRIOR_WEIGHT;
}

int lr__predict_mode_parse(const char *name, enum lr__predict_mode *out)
{
    if (!name || strcmp(name, "default") == 0) {
        *out = LR__PREDICT_DEFAULT;
        return 0;
    }
    if (strcmp(name, "aios") == 0) {
        *out = LR__PREDICT_AIOS;
        return 0;
    }
    return LR_EINVAL;
}

const char *lr__predict_mode_name(enum lr__predict_mode mode)
{
    return mode == LR__PREDICT_AIOS ? "aios" : "default";
}

/* Per-candidate sums: the k nearest, similarity-weighted (local), and the
 * wide neighbourhood, counted equally. */
struct acc {
    double w, wc, wo;    /* local */
    double nw, nwc, nwo; /* wide */
};

size_t lr__predict_fetch(enum lr__predict_mode mode, const struct lr__predict_params *params,
                         size_t k)
{
    if (mode == LR__PREDICT_DEFAULT && params->wide_k > k)
        return params->wide_k;
    return k;
}

static void acc_add(struct acc *a, int local, int wide, double w, const struct lr__outcome *o)
{
    if (local) {
        a->w += w;
        a->wc += w * o->correctness;
        a->wo += w * o->output_tokens;
    }
    if (wide) {
        a->nw += 1.0;
        a->nwc += o->correctness;
        a->nwo += o->output_tokens;
    }
}

/* (sum + m * prior) / (n + m), or the prior when both weights are 0. */
static double shrink(double sum, double n, double m, double prior)
{
    double d = n + m;
    return d > 0.0 ? (sum + m * prior) / d : prior;
}

void lr__predict(const struct lr__hist *h, enum lr__predict_mode mode,
                 const struct lr__predict_params *params, const struct lr__neighbor *nb,
                 size_t n_nb, size_t k, const int *model_ids, size_t m, double *quality,
                 double *output_tokens)
{
    struct acc stack_acc[64];
    struct acc *a = m <= 64 ? stack_acc : calloc(m, sizeof(*a));
    int16_t map[MAP_MODELS];
    int use_map = h->models.n <= MAP_MODELS && m < INT16_MAX;
    struct acc pool; /* all models, for unknown ones */
    double all_n = 0.0, all_o = 0.0;
    int dflt = mode == LR__PREDICT_DEFAULT;
    size_t n_local = k < n_nb ? k : n_nb;
    size_t n_wide = 0;
    if (dflt && params->wide_k > k) {
        /* The wide level must stay a neighbourhood: in a small store K
         * records would be most of it, and its mean the store's. */
        double cap = params->wide_max_share * (double)h->n;
        size_t K = (double)params->wide_k <= cap ? params->wide_k : (size_t)cap;
        if (K > k)
            n_wide = K < n_nb ? K : n_nb;
    }
    size_t n_scan = n_local > n_wide ? n_local : n_wide;

    if (!a) {
        /* No memory for the sums: say "unknown" rather than guess. */
        for (size_t j = 0; j < m; j++)
            quality[j] = output_tokens[j] = NAN;
        return;
    }
    memset(a, 0, m * sizeof(*a));
    memset(&pool, 0, sizeof(pool));
    if (use_map) {
        for (size_t x = 0; x < h->models.n; x++)
            map[x] = -1;
        for (size_t j = 0; j < m; j++)
            if (model_ids[j] >= 0 && (size_t)model_ids[j] < h->models.n)
                map[model_ids[j]] = (int16_t)j;
    }

    /* The neighbours' outcomes lie scattered over a large array: fetch
     * their offsets, then their first lines, so the misses overlap instead
     * of coming one after another (K of them in a large store). */
    for (size_t i = 0; i < n_scan; i++)
        __builtin_prefetch(&h->out_start[nb[i].doc]);
    for (size_t i = 0; i < n_scan; i++)
        __builtin_prefetch(h->outs + h->out_start[nb[i].doc]);
    double best = n_nb > 0 ? nb[0].sim : 0.0;
    for (size_t i = 0; i < n_scan; i++) {
        int local = i < n_local, wide = i < n_wide;
        double w = 1.0;
        if (local && dflt && params->temperature > 0.0)
            w = exp(((double)nb[i].sim - best) / params->temperature);
        size_t no;
        const struct lr__outcome *o = lr__hist_outcomes(h, nb[i].doc, &no);
        for (size_t x = 0; x < no; x++) {
            acc_add(&pool, local, wide, w, &o[x]);
            if (use_map) {
                int j = map[o[x].model];
                if (j >= 0)
                    acc_add(&a[j], local, wide, w, &o[x]);
            } else {
                /* Several candidates may name one model only if the caller
                 * repeats it; give each its sums. */
                for (size_t j = 0; j < m; j++)
                    if (model_ids[j] == (int)o[x].model)
                        acc_add(&a[j], local, wide, w, &o[x]);
            }
        }
    }
    if (use_map) {
        /* The table held one position per model; copy to repeats. */
        for (size_t j = 0; j < m; j++) {
            int id = model_ids[j];
            if (id >= 0 && (size_t)id < h->models.n && map[id] != (int16_t)j)
                a[j] = a[map[id]];
        }
    }

    for (size_t x = 0; x < h->models.n; x++) {
        all_n += h->mstats[x].n;
        all_o += h->mstats[x].sum_output;
    }
    double m_q = n_wide ? params->wide_weight : params->prior_weight;
    double m_o = params->length_prior_weight, m_w = params->wide_prior_weight;
    for (size_t j = 0; j < m; j++) {
        int id = model_ids[j];
        const struct lr__model_stats *ms =
            id >= 0 && (size_t)id < h->models.n ? &h->mstats[id] : NULL;
        if (mode == LR__PREDICT_AIOS) {
            quality[j] = a[j].w > 0.0 ? a[j].wc / a[j].w : 0.0;
            output_tokens[j] = a[j].w > 0.0 ? a[j].wo / a[j].w : 0.0;
            continue;
        }
        if (!ms || ms->n <= 0.0) {
            /* Unknown quality; the length of every model's answers. */
            double g_o = all_n > 0.0 ? all_o / all_n : 0.0;
            double p_o = n_wide ? shrink(pool.nwo, pool.nw, m_w, g_o) : g_o;
            quality[j] = NAN;
            output_tokens[j] = shrink(pool.wo, pool.w, m_o, p_o);
            continue;
        }
        double g_c = ms->sum_correct / ms->n, g_o = ms->sum_output / ms->n;
        double p_c = n_wide ? shrink(a[j].nwc, a[j].nw, m_w, g_c) : g_c;
        double p_o = n_wide ? shrink(a[j].nwo, a[j].nw, m_w, g_o) : g_o;
        quality[j] = shrink(a[j].wc, a[j].w, m_q, p_c);
        output_tokens[j] = shrink(a[j].wo, a[j].w, m_o, p_o);
    }
    if (a != stack_acc)
        free(a);
}
