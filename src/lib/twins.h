/* twins.h -- near-duplicate queries in the history, and what a model's
 * outcome on one says of its outcome on the other: the default
 * predictor's last term (see predict.h).
 *
 * A query's twin is its most similar other record when their cosine
 * similarity is at least LR__TWINS_SIM: the same prompt with a word or two
 * changed. Kept per model, over the store's own twin pairs (each sampled
 * record a with its twin b, both with an outcome for the model), the least
 * squares slope of a's correctness on b's (beta) and b's mean (mean); the
 * predictor adds beta x (the twin's correctness - mean) to a query whose
 * nearest neighbour is its twin.
 *
 * Why: the slope's sign is the store's to say. On the development data
 * (train split: 88 records with a twin at 0.9, all Winogrande) twins are
 * the two sentences of one schema, whose answers differ: a model that
 * keeps to one letter is right on exactly one of them, so the slopes are
 * mostly negative (-1.0 for claude-instant-v1, -0.96 for llama-2-70b, -0.44
 * for gpt-3.5, -0.19 for gpt-4, +0.5 for claude-v2), where the neighbours'
 * mean counts a twin as alike. Where twins share an answer the slope is
 * positive instead. Measured by leave-one-out on the train split
 * (bench/predict_twins.py: the default form re-made in Python, each pair
 * left out of the slopes of the record it predicts; three group seeds):
 * Brier 0.19459 to 0.19096, 0.19327 to 0.18962, 0.19435 to 0.19072; the
 * budget form's mean routed success over the 11 single models' costs
 * +0.012 to +0.013 (paired z 6.4 to 6.7), at half of GPT-4's cost +0.010
 * to +0.011 (z 4.6 to 4.9). The threshold was chosen there among 0.6, 0.7,
 * 0.8, 0.85, 0.9 and 0.93: at 0.8 and below the gain is within noise, at
 * 0.85 +0.008 (z 3.1 to 3.3) and nothing at half of GPT-4's cost, at 0.93
 * (24 pairs) +0.003. Not adopted, as no better beyond noise: the slope
 * shrunk by pairs / (pairs + 10); slopes per group shrunk toward the
 * pooled one; a slope per similarity band (0.7, 0.8, 0.9 up), Brier better
 * by 0.0012, decisions +0.002 to +0.003, at half of GPT-4's cost -0.0005.
 * A copy (LR__TWINS_SAME and up: the same vector) is no twin: it makes no
 * pair, and a query whose nearest record is its copy gets no term, since
 * a query's own past outcome is no twin's (with the whole development
 * data imported, the test split scored 0.22 at $0.31 when copies counted).
 *
 * Built with the store's copy, from at most LR__TWINS_SAMPLE records spread
 * evenly over it, each searched for its nearest other record; appended
 * records are searched at the next rebuild (the re-weighing after growth
 * by a quarter). A model with fewer than LR__TWINS_MIN_PAIRS pairs, or
 * whose twins' outcomes never vary, has no slope (NaN), and a model added
 * since the build has none either.
 *
 * Threads: built on a copy no reader sees yet (the searches split over
 * threads of its own, joined before it returns; the slopes are the same
 * for any thread count); read-only after, under the store's read lock.
 */
#ifndef LR_TWINS_H
#define LR_TWINS_H

#include <math.h>
#include <stddef.h>

#include "embed.h"

struct lr__hist;

#define LR__TWINS_SIM 0.9
/* At or above: the same vector (the same text, or texts whose kept
 * features are alike), a duplicate rather than a twin. */
#define LR__TWINS_SAME 0.99999
#define LR__TWINS_SAMPLE 8192
#define LR__TWINS_MIN_PAIRS 8

struct lr__twins {
    size_t models; /* entries in beta and mean (store model ids) */
    double *beta;  /* NaN: no slope */
    double *mean;
    size_t pairs;  /* sampled records with a twin */
};

/* Find the twin pairs of h's records and fit the slopes. Sparse: record i's
 * features are feats[off[i] .. off[i + 1]), searched in h->sidx; dense: the
 * rows of h->didx. t must be zeroed or freed; on LR_ENOMEM it is left
 * without slopes. Returns 0 or LR_ENOMEM. */
int lr__twins_build_sparse(struct lr__twins *t, const struct lr__hist *h,
                           const struct lr__feat *feats, const size_t *off, unsigned threads);
int lr__twins_build_dense(struct lr__twins *t, const struct lr__hist *h, unsigned threads);
void lr__twins_free(struct lr__twins *t);

/* Whether a nearest neighbour at similarity sim is a twin. */
static inline int lr__twins_is_twin(double sim)
{
    return sim >= LR__TWINS_SIM && sim < LR__TWINS_SAME;
}

/* The term for a model (store id) given its twin's correctness; 0 when it
 * has no slope. */
static inline double lr__twins_shift(const struct lr__twins *t, int model, double twin_correct)
{
    if (model < 0 || (size_t)model >= t->models || isnan(t->beta[model]))
        return 0.0;
    return t->beta[model] * (twin_correct - t->mean[model]);
}

#endif /* LR_TWINS_H */
