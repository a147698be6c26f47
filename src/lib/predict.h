/* predict.h -- predicted quality and output length per model, from the
 * neighbours a kNN search found in the history.
 *
 * Two modes:
 *   aios     parity with AIOS smart routing: for each model, the plain mean
 *            of correctness and of output tokens over the k neighbours that
 *            have an outcome for it; 0 and 0 when none has.
 *   default  a three-level hierarchical estimate. The k nearest neighbours
 *            (local) are shrunk toward the mean over a wide neighbourhood,
 *            the K nearest (K = 128 by default), which is shrunk in turn
 *            toward the model's mean over the whole store:
 *              wide_q  = (sum_K c + m_w * store_q) / (n_K + m_w)
 *              quality = (sum_k w*c + m_q * wide_q) / (sum_k w + m_q)
 *            and the same for output tokens with m_o in place of m_q.
 *            Why: on the development data the k nearest past queries say
 *            almost nothing about a model's correctness beyond what kind of
 *            query this is (the same task, or topic); a neighbourhood of a
 *            couple of hundred recovers that per-kind accuracy, which the
 *            store-wide mean (the previous default) blurs across kinds.
 *            The local neighbours keep a small say (k = 16 against m_q =
 *            128).
 *            The wide level is used only when K is larger than k and at
 *            most an eighth of the store; otherwise (a small store, where
 *            K records would be most of it) the local estimate is shrunk
 *            straight to the store's mean with weight m_s, as before.
 *            A model with no outcome anywhere in the store has unknown
 *            quality (NaN) and the neighbours' output length pooled over all
 *            models. Every constant was tuned by leave-one-out on the train
 *            split of the development data only (bench/predict_eval.c
 *            --tune): quality by Brier score, length by squared error.
 *
 * Per request the work is O(K x outcomes per record): the caller fetches
 * max(k, K) neighbours from one kNN search (lr__predict_fetch).
 *
 * Threads: pure functions; call lr__predict with the store's read lock held.
 */
#ifndef LR_PREDICT_H
#define LR_PREDICT_H

#include <stddef.h>

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
    size_t wide_k;              /* K of the wide neighbourhood; 0: no wide level */
    double wide_max_share;      /* the wide level is at most this share of the store */
    double wide_weight;         /* m_q: local quality toward the wide mean */
    double wide_prior_weight;   /* m_w: the wide means toward the store's */
};

void lr__predict_params_default(struct lr__predict_params *p);

/* "default" or "aios" (NULL = "default"). Returns 0 or LR_EINVAL. */
int lr__predict_mode_parse(const char *name, enum lr__predict_mode *out);
const char *lr__predict_mode_name(enum lr__predict_mode mode);

/* How many neighbours the caller should fetch for a local k: k, or the wide
 * neighbourhood's K when the mode uses one and it is larger. */
size_t lr__predict_fetch(enum lr__predict_mode mode, const struct lr__predict_params *params,
                         size_t k);

/* For m models given by store model id (-1: not in the history), predict
 * quality[j] and output_tokens[j] from nb[0..n_nb) (best first): the first
 * min(k, n_nb) are the local neighbours, and in default mode the first
 * min(wide_k, n_nb) the wide neighbourhood. */
void lr__predict(const struct lr__hist *h, enum lr__predict_mode mode,
                 const struct lr__predict_params *params, const struct lr__neighbor *nb,
                 size_t n_nb, size_t k, const int *model_ids, size_t m, double *quality,
                 double *output_tokens);

#endif /* LR_PREDICT_H */
