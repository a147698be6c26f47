/* predict.h -- predicted quality and output length per model, from the
 * neighbours a kNN search found in the history.
 *
 * Two modes:
 *   aios     parity with AIOS smart routing: for each model, the plain mean
 *            of correctness and of output tokens over the neighbours that
 *            have an outcome for it; 0 and 0 when none has.
 *   default  similarity-weighted means, weights exp((sim - best_sim) / T),
 *            shrunk toward the model's mean over the whole store with a
 *            prior weight, so a model with few or no outcomes among the
 *            neighbours gets its overall record instead of 0:
 *              quality = (sum w*c + m_q * prior_c) / (sum w + m_q)
 *              tokens  = (sum w*o + m_o * prior_o) / (sum w + m_o)
 *            A model with no outcome anywhere in the store has unknown
 *            quality (NaN) and the neighbours' output length pooled over all
 *            models. The constants were tuned by leave-one-out on the train
 *            split of the development data only (bench/predict_eval.c); the
 *            tuned temperature is 0 (equal weights), see predict.c.
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
    double temperature;  /* T of the similarity weights; <= 0: equal weights */
    double prior_weight; /* m_q, in units of the best neighbour's weight */
    double length_prior_weight; /* m_o */
};

void lr__predict_params_default(struct lr__predict_params *p);

/* "default" or "aios" (NULL = "default"). Returns 0 or LR_EINVAL. */
int lr__predict_mode_parse(const char *name, enum lr__predict_mode *out);
const char *lr__predict_mode_name(enum lr__predict_mode mode);

/* For m models given by store model id (-1: not in the history), predict
 * quality[j] and output_tokens[j] from nb[0..k) (best first). */
void lr__predict(const struct lr__hist *h, enum lr__predict_mode mode,
                 const struct lr__predict_params *params, const struct lr__neighbor *nb, size_t k,
                 const int *model_ids, size_t m, double *quality, double *output_tokens);

#endif /* LR_PREDICT_H */
