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
#include "twins.h"

/* Tuned by leave-one-out over the train split of the development data
 * (bench/predict_eval.c --tune, which leaves each record out of its
 * group's totals too; grid: groups in {0, 4 .. 64}, T in {0, 0.05}, m_q in
 * {4 .. 256}, m_w in {0 .. 32}; quality by Brier score, then m_o and m_wo
 * by squared error of the output length, since cost is linear in it and
 * wants the mean). LOO Brier: store-mean prior (no groups) 0.1991 at its
 * best (m_s = 8; 10 kept), groups 0.1938 to 0.1940 for any count from 4 to
 * 64 (17, the store's rule for 2,205 records: 0.19386 at m_q = 64,
 * m_w = 0 or 2; 2 kept for groups where a model has few outcomes), length
 * RMSE 37.00 at m_o = 16, m_wo = 0 (m_wo = 2: 37.09). For comparison: the
 * 128-nearest wide neighbourhood this level replaced 0.19411 and 37.06,
 * the plain AIOS mean 0.2027, per-task means from the true task labels
 * 0.1945. Every temperature scored worse than equal weights. m_s is kept
 * for stores too small for groups (see groups.h).
 *
 * Measured on the same leave-one-out predictions and not adopted, since none
 * beat this form beyond noise (Brier 0.19386; the budget form's decisions
 * on train, predict_eval --decide: mean routed success 0.77811 over the 11
 * single models' costs):
 *   - calibration fitted on the predictions (10-fold over records): Platt
 *     0.19396 global, 0.19419 per model; isotonic 0.19408 global, 0.19472
 *     per model. Per decile of prediction, predicted and realised means
 *     differ by 0.021 at most; per model by 0.011 at most.
 *   - shrinking harder when the neighbours are far: m_q times (median
 *     similarity / their mean)^g, g from -1 to 2: 0.19385 at best.
 *   - m_q per model: 0.19371 fitted in-sample, so no better out of it;
 *     m_q = 128 or 256: decisions 0.77835, 0.77844; groups only: 0.77757.
 *   - m_q and m_w tuned for decisions instead of Brier, on held-out
 *     batches: 20 random splits of train, two thirds imported as the store
 *     and the rest routed by the budget form at each single model's cost
 *     there (llmroute eval --sweep). Heavier shrinkage wins there: mean
 *     success +0.0015 to +0.0018 for m_q from 128 to 1024 with m_w from 2
 *     to 32 (better in 15 to 19 of the 20 splits; at half of the dearest
 *     model's cost -0.001 to +0.001). With the whole train split as the
 *     store (the leave-one-out decisions above, as served) the same
 *     settings gain 0.0000 to +0.0009, so the gain is mostly the smaller
 *     store's noisier groups. On the test split they move each budget's
 *     success by 1 to 7 queries of 945 either way (mean over the single
 *     models' costs 0.7850 now, 0.7857 to 0.7884 with them), with no
 *     setting better at every budget; the Brier-tuned constants stay.
 *   - an additive form (a level shared by all models, the neighbours' read
 *     off all their outcomes, plus each model's contrast, shrunk apart):
 *     0.19368 (paired z about -0.5, log-loss unchanged), 0.19360 with k = 32;
 *     decisions 0.77786. Shrinking the contrasts hard did not help either.
 *   - the neighbours' output-length ratio to their groups' as a level:
 *     length RMSE 37.00 at best (the level off).
 *   - a trained predictor (bench/predict_compare.py): logistic regression
 *     per model over TF-IDF word and character n-grams, 5-fold on train:
 *     Brier 0.19965, decisions 0.77118 (paired z -2.2 against this form);
 *     blended 1:3 with this form: 0.19390, 0.77914 (z 0.8).
 *   - a logistic regression per model stacked on this form's parts
 *     (bench/predict_stack.py): logit(q), alone or with the neighbours' mean
 *     lead over their groups', or with all 11 models' neighbour means and
 *     group records (as they are or as logits), L2 at C = 0.1, 1, 10. Read
 *     leave-one-out, the parts leak: a record left out of its group lowers
 *     the group's record by its own outcome, and a regression given 11
 *     such records reads the outcome back (Brier 0.1894, decisions 0.7988,
 *     all of it the leak). Scored without it (each quarter of train
 *     predicted from a store of two others, the regression fitted on the
 *     fourth; this form on the same stores: Brier 0.1946 to 0.1952,
 *     decisions 0.7766 to 0.7780), no variant beat this form in any of
 *     three splits: Brier worse by 0.00005 to 0.0066, decisions -0.0180 to
 *     +0.0026 (z 1.5 at best), at half of GPT-4's cost -0.022 to +0.0005.
 *   - the records' task labels as a level (each task's mean correctness):
 *     alone 0.19502, decisions 0.77374 (z -2.4); blended with this form at
 *     weights 0.25, 0.5, 0.75: Brier 0.19390 to 0.19448, decisions 0.77918
 *     to 0.77992 (z 1.6, 1.1, 1.3: within noise; on the test split the
 *     blends trade about two queries at half GPT-4's cost for one at
 *     mixtral's).
 *   - an empirical-Bayes local weight per group and model (predict_eval
 *     --ebayes): q = G + beta (L - G), beta the slope of a record's outcome
 *     on its neighbours' mean around the prior, fitted per group (slopes
 *     0 to 0.21 on Winogrande, 0.07 to 0.42 on ARC, 0.16 to 0.61 on MBPP;
 *     this form's is 0.2), shrunk toward the model's; cross-fitted on
 *     train: Brier 0.19370 at best (z -1.3), decisions 0.77885 at best
 *     (z 0.7).
 *   - the query's length as a within-group linear term on correctness.
 *     On the development data, longer ARC questions are harder for the
 *     cheaper models (train Spearman of input tokens with Yi-34B's
 *     correctness -0.13), and over per-task means alone such a term lifted
 *     the budget form's 5-fold cross-validated success on train at half of
 *     GPT-4's cost from 0.851 to 0.862. Over this form it adds nothing:
 *     the feature the log of the text's bytes or of the input tokens; per
 *     group and model the least-squares slope (pooled within groups over
 *     the query's groups, over all groups, or each group's own), shrunk by
 *     max(0, 1 - kappa / t^2), kappa 0, 2, 4; leave-one-out decisions on
 *     train at half of the dearest model's cost (predict_eval --decide):
 *     0.8567 without, 0.8544 to 0.8590 with; mean routed success 0.7772 to
 *     0.7787 against 0.7781. On the test split (bytes, pooled over the
 *     query's groups, kappa 2): 0.8624 at $2.36 (0.8635 without), 0.8021
 *     at $0.31 (0.8000).
 *   - a latent-semantic embedding made from the store alone
 *     (bench/predict_lsa.py, which re-makes this form in Python; through
 *     it, with the store's groups, the built-in kNN scores Brier 0.19389,
 *     decisions 0.77860): the tfidf-v1 vectors times a rank-d truncated SVD
 *     fitted on the train texts, L2-normalised, k = 16 by cosine, groups
 *     by k-means over them or the store's; and a mix, a x tfidf cosine +
 *     (1 - a) x LSA cosine, a in {0.25, 0.5, 0.75}. d = 64, 128, 256: Brier
 *     0.19366 to 0.19462, decisions 0.77539 to 0.78079. The best, the mix
 *     at d = 64, a = 0.25: 0.19387, 0.78079 (z 1.7; over three SVD seeds
 *     z 1.4 to 1.9, Brier 0.19379 to 0.19389), at half of GPT-4's cost
 *     0.8585 against 0.8553 (z 1.1). With groups re-made in Python the
 *     baseline itself moves (Brier 0.19327 to 0.19459 over three seeds) and
 *     that mix's z from 1.5 to 2.1, Brier better by 0.00006 at most: the
 *     grouping's noise is as large as the gain, and among some 90 variant
 *     and seed pairs a z of 2 is expected; not run on the test split. It
 *     would not be fast enough either: the query's projection is cheap (d x
 *     128 multiply-adds, but a table of d floats per hashed feature, 256 MiB
 *     at d = 64), while an exact search of 100,000 rows of 64 takes 0.32 ms
 *     alone (bench/dense_bench, topics corpus), and the mix needs it beside
 *     the sparse search. Re-scoring only the sparse search's 64 nearest by
 *     the mix keeps little of it: decisions 0.77885 to 0.77984 (z 0.2 to
 *     0.9).
 * Adopted since, beside this form: the twin term (twins.h), which reads
 * the nearest neighbour's outcome through the store's own near-duplicate
 * pairs; its measurements are in twins.h. The figures above are without it.
 * The optimizer's predicted mean quality exceeds the realised one where it
 * trades cheap models against each other (at mixtral's cost 0.758 against
 * 0.734 on train) under every variant above. With the real output lengths
 * in place of predicted ones, a simulation of the same budget reached 0.745
 * against 0.735: the length side holds more for decisions, but the
 * neighbours predict a coding answer's length poorly (correlation 0.1 to
 * 0.25 per model). */
#define DEFAULT_TEMPERATURE 0.0
#define DEFAULT_PRIOR_WEIGHT 10.0
#define DEFAULT_LENGTH_PRIOR_WEIGHT 16.0
#define DEFAULT_GROUP_WEIGHT 64.0
#define DEFAULT_GROUP_PRIOR_WEIGHT 2.0
#define DEFAULT_LENGTH_GROUP_PRIOR_WEIGHT 0.0

/* Up to this many store models, candidates are found through a table. */
#define MAP_MODELS 1024

void lr__predict_params_default(struct lr__predict_params *p)
{
    p->temperature = DEFAULT_TEMPERATURE;
    p->prior_weight = DEFAULT_PRIOR_WEIGHT;
    p->length_prior_weight = DEFAULT_LENGTH_PRIOR_WEIGHT;
    p->group_weight = DEFAULT_GROUP_WEIGHT;
    p->group_prior_weight = DEFAULT_GROUP_PRIOR_WEIGHT;
    p->length_group_prior_weight = DEFAULT_LENGTH_GROUP_PRIOR_WEIGHT;
    p->twins = 1;
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

/* Per-candidate sums over the local neighbours, similarity-weighted. */
struct acc {
    double w, wc, wo;
};

static void acc_add(struct acc *a, double w, const struct lr__outcome *o)
{
    a->w += w;
    a->wc += w * o->correctness;
    a->wo += w * o->output_tokens;
}

/* (sum + m * prior) / (n + m), or the prior when both weights are 0. */
static double shrink(double sum, double n, double m, double prior)
{
    double d = n + m;
    return d > 0.0 ? (sum + m * prior) / d : prior;
}

/* The query's groups: those of its local neighbours, each weighed by its
 * share of them. The share of neighbours in no group (LR__GROUPS_NONE:
 * unlike every centroid) reads the store's means instead. */
struct mix {
    uint32_t group[LR__PREDICT_MAX_MIX];
    double share[LR__PREDICT_MAX_MIX];
    size_t n;
    double none;
};

static void mix_build(const struct lr__groups *g, const struct lr__neighbor *nb, size_t n_local,
                      struct mix *mx)
{
    mx->n = 0;
    mx->none = 0.0;
    if (g->n == 0 || n_local == 0)
        return;
    for (size_t i = 0; i < n_local; i++) {
        uint32_t grp = g->of[nb[i].doc];
        size_t x = 0;
        if (grp == LR__GROUPS_NONE) {
            mx->none += 1.0 / (double)n_local;
            continue;
        }
        while (x < mx->n && mx->group[x] != grp)
            x++;
        if (x == mx->n) {
            if (mx->n == LR__PREDICT_MAX_MIX)
                continue; /* cannot happen: a store has at most that many */
            mx->group[mx->n] = grp;
            mx->share[mx->n++] = 0.0;
        }
        mx->share[x] += 1.0 / (double)n_local;
    }
}

/* A model's group-level estimates for the query: each group's means shrunk
 * toward the store's (weight m_w), mixed by the groups' shares, and the
 * store's means for the share in no group. `self` (LR__PREDICT_NO_RECORD:
 * none) is left out of its group's totals. */
static void mix_estimate(const struct lr__hist *h, const struct mix *mx, uint32_t model,
                         double m_w, double m_wo, double g_c, double g_o, uint32_t self,
                         double *q, double *o)
{
    const struct lr__groups *g = &h->groups;
    double sq = mx->none * g_c, so = mx->none * g_o;
    for (size_t x = 0; x < mx->n; x++) {
        const struct lr__group_stats *s = lr__groups_stats(g, model, mx->group[x]);
        double n = s->n, c = s->sum_correct, out = s->sum_output;
        if (self != LR__PREDICT_NO_RECORD && g->of[self] == mx->group[x]) {
            size_t no;
            const struct lr__outcome *oc = lr__hist_outcomes(h, self, &no);
            for (size_t y = 0; y < no; y++)
                if (oc[y].model == model) {
                    n -= 1.0;
                    c -= oc[y].correctness;
                    out -= oc[y].output_tokens;
                }
        }
        sq += mx->share[x] * shrink(c, n, m_w, g_c);
        so += mx->share[x] * shrink(out, n, m_wo, g_o);
    }
    *q = sq;
    *o = so;
}

void lr__predict(const struct lr__hist *h, enum lr__predict_mode mode,
                 const struct lr__predict_params *params, const struct lr__neighbor *nb,
                 size_t n_nb, size_t k, const int *model_ids, size_t m, double *quality,
                 double *output_tokens)
{
    lr__predict_excluding(h, mode, params, nb, n_nb, k, model_ids, m, LR__PREDICT_NO_RECORD,
                          quality, output_tokens);
}

void lr__predict_excluding(const struct lr__hist *h, enum lr__predict_mode mode,
                           const struct lr__predict_params *params,
                           const struct lr__neighbor *nb, size_t n_nb, size_t k,
                           const int *model_ids, size_t m, uint32_t self, double *quality,
                           double *output_tokens)
{
    struct acc stack_acc[64];
    struct acc *a = m <= 64 ? stack_acc : calloc(m, sizeof(*a));
    int16_t map[MAP_MODELS];
    int use_map = h->models.n <= MAP_MODELS && m < INT16_MAX;
    struct acc pool; /* all models, for unknown ones */
    struct mix mx;
    double all_n = 0.0, all_o = 0.0;
    int dflt = mode == LR__PREDICT_DEFAULT;
    size_t n_local = k < n_nb ? k : n_nb;

    if (!a) {
        /* No memory for the sums: say "unknown" rather than guess. */
        for (size_t j = 0; j < m; j++)
            quality[j] = output_tokens[j] = NAN;
        return;
    }
    /* The neighbours' records are read cold: the search before this call
     * streamed megabytes of postings through the caches. Read one after
     * another, each neighbour cost a miss on its outcome offsets, then one
     * on its outcomes (under perf, three quarters of this function's
     * samples sat on those two loads), so everything is fetched first: the
     * offsets and groups, the outcomes once the offsets are known, then
     * each candidate's totals in the query's groups. Measured on
     * bench/smart_bench's fewshot store (100,000 records, 11 models, k =
     * 16) with timers around this call inside each decision, medians of 3
     * runs of 2,000 queries, 4 pairs run alternately against the code
     * before: 14.8 to 16.1 us per call before, 4.0 to 4.3 us after (3.1 us
     * when the same query is repeated, all in cache); the decision's time
     * outside the embedding and the search went from 16 to 18 us to 5.6 to
     * 5.8 us. Whole decisions, smart_bench's p50 in alternating pairs: a
     * median ratio of 0.975 on that store (7 pairs) and 0.963 on the
     * real-data store (21 pairs; there the remainder went from 6.5 to
     * 4.9 us), both smaller than the machine's run-to-run noise. Fetching
     * the groups' totals ahead is worth about 0.5 us of the 4. */
    for (size_t i = 0; i < n_local; i++) {
        __builtin_prefetch(&h->out_start[nb[i].doc]);
        __builtin_prefetch(&h->out_start[nb[i].doc + 1]);
        if (h->groups.n)
            __builtin_prefetch(&h->groups.of[nb[i].doc]);
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
    for (size_t i = 0; i < n_local; i++) {
        size_t no;
        const struct lr__outcome *o = lr__hist_outcomes(h, nb[i].doc, &no);
        if (no == 0)
            continue;
        const char *p = (const char *)o, *end = (const char *)(o + no) - 1;
        for (; p < end; p += 64)
            __builtin_prefetch(p);
        __builtin_prefetch(end);
    }
    mix_build(&h->groups, nb, n_local, &mx);
    for (size_t j = 0; j < m; j++) {
        int id = model_ids[j];
        if (id < 0 || (size_t)id >= h->models.n)
            continue;
        __builtin_prefetch(&h->mstats[id]);
        for (size_t x = 0; x < mx.n && (size_t)id < h->groups.models_cap; x++)
            __builtin_prefetch(lr__groups_stats(&h->groups, (uint32_t)id, mx.group[x]));
    }

    double best = n_nb > 0 ? nb[0].sim : 0.0;
    for (size_t i = 0; i < n_local; i++) {
        double w = 1.0;
        if (dflt && params->temperature > 0.0)
            w = exp(((double)nb[i].sim - best) / params->temperature);
        size_t no;
        const struct lr__outcome *o = lr__hist_outcomes(h, nb[i].doc, &no);
        for (size_t x = 0; x < no; x++) {
            acc_add(&pool, w, &o[x]);
            if (use_map) {
                int j = map[o[x].model];
                if (j >= 0)
                    acc_add(&a[j], w, &o[x]);
            } else {
                /* Several candidates may name one model only if the caller
                 * repeats it; give each its sums. */
                for (size_t j = 0; j < m; j++)
                    if (model_ids[j] == (int)o[x].model)
                        acc_add(&a[j], w, &o[x]);
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
    /* The nearest neighbour is the query's twin: a near-duplicate. Not
     * for a record left out: the slopes were fitted over its own pairs. */
    int twin = dflt && params->twins && self == LR__PREDICT_NO_RECORD && n_local > 0 &&
               h->twins.models > 0 && lr__twins_is_twin(nb[0].sim);
    double m_q = mx.n ? params->group_weight : params->prior_weight;
    double m_o = params->length_prior_weight, m_w = params->group_prior_weight;
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
            quality[j] = NAN;
            output_tokens[j] = shrink(pool.wo, pool.w, m_o, g_o);
            continue;
        }
        double g_c = ms->sum_correct / ms->n, g_o = ms->sum_output / ms->n;
        double p_c = g_c, p_o = g_o;
        if (mx.n)
            mix_estimate(h, &mx, (uint32_t)id, m_w, params->length_group_prior_weight, g_c, g_o,
                         self, &p_c, &p_o);
        quality[j] = shrink(a[j].wc, a[j].w, m_q, p_c);
        output_tokens[j] = shrink(a[j].wo, a[j].w, m_o, p_o);
        /* The twin's outcome, read with the slope the store's own twin
         * pairs gave (twins.h). */
        const struct lr__outcome *to =
            twin ? lr__hist_outcome_of(h, nb[0].doc, (uint32_t)id) : NULL;
        if (to) {
            double q = quality[j] + lr__twins_shift(&h->twins, id, to->correctness);
            quality[j] = q < 0.0 ? 0.0 : q > 1.0 ? 1.0 : q;
        }
    }
    if (a != stack_acc)
        free(a);
}
