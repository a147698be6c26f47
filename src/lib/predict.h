/* predict.h -- predicted quality and output length per model, from the
 * neighbours a kNN search found in the history.
 *
 * Two modes:
 *   aios     parity with AIOS smart routing: for each model, the plain mean
 *            of correctness and of output tokens over the k neighbours that
 *            have an outcome for it; 0 and 0 when none has.
 *   default  a three-level hierarchical estimate. The k nearest neighbours
 *            (local) are shrunk toward a group-level estimate, which is
 *            built from each group's means shrunk toward the model's mean
 *            over the whole store. The groups are clusters of similar past
 *            queries kept by the store with per-model totals (groups.h);
 *            the query's mixture is its k neighbours' groups, each with
 *            its share s_g of them:
 *              group_q = sum_g s_g (sum_g c + m_w * store_q) / (n_g + m_w)
 *              quality = (sum_k w*c + m_q * group_q) / (sum_k w + m_q)
 *            and the same for output tokens with m_o and m_wo.
 *            Why: on the development data the k nearest past queries say
 *            almost nothing about a model's correctness beyond what kind of
 *            query this is (the same task, or topic); a group of a hundred
 *            or more similar queries recovers that per-kind accuracy, which
 *            the store-wide mean blurs across kinds. It replaces a "wide
 *            neighbourhood" (the K = 128 nearest, fetched per request),
 *            which scored the same but cost a search eight times as deep;
 *            groups cost O(k x models) per request. Groups rather than
 *            task labels: users' histories rarely have labels, and the
 *            clusters scored better than the true labels (leave-one-out
 *            Brier 0.1939 against 0.1945). The local neighbours keep a
 *            small say (k = 16 against m_q = 64).
 *            A store too small for groups (groups.h) shrinks the local
 *            estimate straight to the store's mean with weight m_s. A
 *            neighbour in no group (LR__GROUPS_NONE) puts its share s on
 *            the store's mean instead of a group's; when no neighbour is
 *            in a group, the store's mean with weight m_s, as without
 *            groups.
 *            Last, the twin term (twins.h): when the nearest neighbour is
 *            the query's twin (cosine from 0.9 to below 0.99999: the same
 *            prompt with a word or two changed), each model's quality
 *            moves by the slope the store's own twin pairs give times the
 *            twin's outcome less their mean, kept in [0, 1]. On the
 *            development data's Winogrande schemas twins have different
 *            answers, and the slopes are negative.
 *            A model with no outcome anywhere in the store has unknown
 *            quality (NaN) and the neighbours' output length pooled over all
 *            models. Every constant was tuned by leave-one-out on the train
 *            split of the development data only (bench/predict_eval.c
 *            --tune): quality by Brier score, length by squared error.
 *
 * Per request the work is O(k x outcomes per record + groups in the
 * mixture x candidates), and the twin's outcomes once more.
 *
 * Threads: pure functions; call lr__predict with the store's read lock held.
 */
#ifndef LR_PREDICT_H
#define LR_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "store.h"

enum lr__predict_mode {
    LR__PREDICT_DEFAULT = 0,
    LR__PREDICT_AIOS = 1,
};

struct lr__predict_params {
    double temperature;  /* T of the local similarity weights; <= 0: equal weights */
    double prior_weight; /* m_s: local toward the store's mean (no wide level) */
    double length_prior_weight; /* m_o: local length toward its prior */
    double group_weight;        /* m_q: local quality toward the groups' estimate */
    double group_prior_weight;  /* m_w: a group's mean quality toward the store's */
    double length_group_prior_weight; /* m_wo: a group's mean length toward the store's */
    int twins; /* add the twin term (twins.h) when the nearest neighbour is a twin; 0: not */
};

/* The most groups a query's mixture holds (its local neighbours' groups). */
#define LR__PREDICT_MAX_MIX LR__GROUPS_MAX
/* lr__predict_excluding: leave out no record. */
#define LR__PREDICT_NO_RECORD UINT32_MAX

void lr__predict_params_default(struct lr__predict_params *p);

/* "default" or "aios" (NULL = "default"). Returns 0 or LR_EINVAL. */
int lr__predict_mode_parse(const char *name, enum lr__predict_mode *out);
const char *lr__predict_mode_name(enum lr__predict_mode mode);

/* For m models given by store model id (-1: not in the history), predict
 * quality[j] and output_tokens[j] from nb[0..n_nb) (best first): the first
 * min(k, n_nb) are the local neighbours, and in default mode the first
 * min(wide_k, n_nb) the wide neighbourhood. */
void lr__predict(const struct lr__hist *h, enum lr__predict_mode mode,
                 const struct lr__predict_params *params, const struct lr__neighbor *nb,
                 size_t n_nb, size_t k, const int *model_ids, size_t m, double *quality,
                 double *output_tokens);

/* lr__predict as if record `self` were not in the store's group totals
 * (leave-one-out evaluation; the neighbours must already leave it out),
 * and without the twin term, whose slopes the store fitted over self's
 * own pairs (bench/predict_twins.py measures the term leaving them out). */
void lr__predict_excluding(const struct lr__hist *h, enum lr__predict_mode mode,
                           const struct lr__predict_params *params,
                           const struct lr__neighbor *nb, size_t n_nb, size_t k,
                           const int *model_ids, size_t m, uint32_t self, double *quality,
                           double *output_tokens);

#endif /* LR_PREDICT_H */
