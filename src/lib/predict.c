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
 * (bench/predict_eval.c --tune; grid T in {0, 0.01 .. 2}, m in {0 .. 32}).
 * Every temperature scored worse than equal weights there, the sharper the
 * worse: within one task the nearest prompts are no better guides than the
 * farther ones. So the default weighs the k neighbours equally and shrinks
 * with the weight of 10 neighbours toward the model's overall record; the
 * output length is best left unshrunk. */
#define DEFAULT_TEMPERATURE 0.0
#define DEFAULT_PRIOR_WEIGHT 10.0
#define DEFAULT_LENGTH_PRIOR_WEIGHT 0.0

/* Up to this many store models, candidates are found through a table. */
#define MAP_MODELS 1024

void lr__predict_params_default(struct lr__predict_params *p)
{
    p->temperature = DEFAULT_TEMPERATURE;
    p->prior_weight = DEFAULT_PRIOR_WEIGHT;
    p->length_prior_weight = DEFAULT_LENGTH_PRIOR_WEIGHT;
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

/* Per-candidate sums. */
struct acc {
    double w, wc, wo;
};

void lr__predict(const struct lr__hist *h, enum lr__predict_mode mode,
                 const struct lr__predict_params *params, const struct lr__neighbor *nb, size_t k,
                 const int *model_ids, size_t m, double *quality, double *output_tokens)
{
    struct acc stack_acc[64];
    struct acc *a = m <= 64 ? stack_acc : calloc(m, sizeof(*a));
    int16_t map[MAP_MODELS];
    int use_map = h->models.n <= MAP_MODELS && m < INT16_MAX;
    double pool_w = 0.0, pool_wo = 0.0; /* all models, for unknown ones */
    double all_n = 0.0, all_o = 0.0;

    if (!a) {
        /* No memory for the sums: say "unknown" rather than guess. */
        for (size_t j = 0; j < m; j++)
            quality[j] = output_tokens[j] = NAN;
        return;
    }
    memset(a, 0, m * sizeof(*a));
    if (use_map) {
        for (size_t x = 0; x < h->models.n; x++)
            map[x] = -1;
        for (size_t j = 0; j < m; j++)
            if (model_ids[j] >= 0 && (size_t)model_ids[j] < h->models.n)
                map[model_ids[j]] = (int16_t)j;
    }

    double best = k > 0 ? nb[0].sim : 0.0;
    for (size_t i = 0; i < k; i++) {
        double w = 1.0;
        if (mode == LR__PREDICT_DEFAULT && params->temperature > 0.0)
            w = exp(((double)nb[i].sim - best) / params->temperature);
        size_t no;
        const struct lr__outcome *o = lr__hist_outcomes(h, nb[i].doc, &no);
        for (size_t x = 0; x < no; x++) {
            pool_w += w;
            pool_wo += w * o[x].output_tokens;
            if (use_map) {
                int j = map[o[x].model];
                if (j >= 0) {
                    a[j].w += w;
                    a[j].wc += w * o[x].correctness;
                    a[j].wo += w * o[x].output_tokens;
                }
            } else {
                /* Several candidates may name one model only if the caller
                 * repeats it; give each its sums. */
                for (size_t j = 0; j < m; j++) {
                    if (model_ids[j] == (int)o[x].model) {
                        a[j].w += w;
                        a[j].wc += w * o[x].correctness;
                        a[j].wo += w * o[x].output_tokens;
                    }
                }
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
            double m_o = params->length_prior_weight;
            double prior_o = all_n > 0.0 ? all_o / all_n : 0.0;
            quality[j] = NAN;
            double d = pool_w + m_o;
            output_tokens[j] = d > 0.0 ? (pool_wo + m_o * prior_o) / d : prior_o;
            continue;
        }
        double prior_c = ms->sum_correct / ms->n, prior_o = ms->sum_output / ms->n;
        double m_q = params->prior_weight, m_o = params->length_prior_weight;
        double dq = a[j].w + m_q, dO = a[j].w + m_o;
        quality[j] = dq > 0.0 ? (a[j].wc + m_q * prior_c) / dq : prior_c;
        output_tokens[j] = dO > 0.0 ? (a[j].wo + m_o * prior_o) / dO : prior_o;
    }
    if (a != stack_acc)
        free(a);
}
