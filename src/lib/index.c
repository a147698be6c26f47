/* index.c -- exact kNN: an inverted index for sparse tfidf-v1 vectors and a
 * screened scan for dense vectors (see index.h).
 *
 * Memory: a sparse index built at once keeps all postings in one block; a
 * list that grows afterwards (an appended document) moves to its own
 * allocation, so appends cost O(features) and never rebuild anything.
 *
 * Threads: searches read only; adds and reserves need searches excluded.
 */
#include "index.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "llmroute.h"

/* ==== Top-k selection ==== */

void lr__topk_init(struct lr__topk *t, struct lr__neighbor *buf, size_t k)
{
    t->h = buf;
    t->n = 0;
    t->k = k;
}

/* The heap keeps its worst element at the root. */
static int worse(const struct lr__neighbor *a, const struct lr__neighbor *b)
{
    return lr__neighbor_better(b->doc, b->sim, a->doc, a->sim);
}

static void sift_down(struct lr__neighbor *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(&h[l], &h[m]))
            m = l;
        if (r < n && worse(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        struct lr__neighbor x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
}

void lr__topk_push(struct lr__topk *t, uint32_t doc, float sim)
{
    struct lr__neighbor *h = t->h;
    if (t->k == 0)
        return;
    if (t->n < t->k) {
        size_t i = t->n++;
        h[i].doc = doc;
        h[i].sim = sim;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!worse(&h[i], &h[p]))
                break;
            struct lr__neighbor x = h[i];
            h[i] = h[p];
            h[p] = x;
            i = p;
        }
        return;
    }
    if (!lr__neighbor_better(doc, sim, h[0].doc, h[0].sim))
        return;
    h[0].doc = doc;
    h[0].sim = sim;
    sift_down(h, t->n, 0);
}

static int cmp_best_first(const void *a, const void *b)
{
    const struct lr__neighbor *x = a, *y = b;
    if (lr__neighbor_better(x->doc, x->sim, y->doc, y->sim))
        return -1;
    if (lr__neighbor_better(y->doc, y->sim, x->doc, x->sim))
        return 1;
    return 0;
}

size_t lr__topk_finish(struct lr__topk *t)
{
    qsort(t->h, t->n, sizeof(*t->h), cmp_best_first);
    return t->n;
}

/* ==== Sparse index ====
 *
 * Why a search does not walk every list: on real traffic most queries of
 * a task start with the same long prompt (few-shot examples, instructions),
 * so the features of that prompt are in a large share of the history and
 * their lists hold tens of thousands of postings at 100,000 records. Those
 * lists decide little (every document of the task gets about the same from
 * them) but walking them is most of the work.
 *
 * So a list with at least long_min postings at build time is "long" and
 * gets a row of bounds instead of being walked:
 *   - bmax[row][b]: the largest weight of the feature among block b's
 *     documents (0 when none has it);
 *   - hnorm[d]: the norm of document d's weights on all long lists, and
 *     hmax[b] the largest hnorm in block b;
 *   - fwd: each document's long-list features (row, weight), to finish its
 *     score when it is a candidate;
 *   - a basis of up to LR__SINDEX_DIRS orthonormal directions over the rows
 *     (centres of clusters of the documents' long parts: the common
 *     prompts), and per document proj[d]: its long part's coordinates
 *     along them and the norm of the rest, with each block's extremes.
 * A search (lr__sindex_knn):
 *   1. walks the short lists into acc[d] (exact partial dot products);
 *   2. bounds the long lists' part for every document of block b by
 *      bub[b] = sum over the query's long features of q_t * bmax[t][b], and
 *      by the projection bound: with x = sum_j x_j e_j + x_perp for the
 *      basis e_j, q . d = sum_j q_j d_j + q_perp . d_perp, at most
 *      sum_j q_j d_j + |q_perp| |d_perp| (Cauchy-Schwarz on the rest only,
 *      so never looser than on the whole, and tight when the query and the
 *      document share a prompt). Both hold, so the smaller is used; for a
 *      block, the coordinates' extremes and the largest rest give the
 *      projection bound, next to |q_long| times the largest norm. The
 *      block sums bub cost a pass over a row of bmax per long feature of
 *      the query (about 58 rows of 1,563 blocks on the fewshot bench, 40
 *      us); when the query's long part is near the basis (its rest at most
 *      block_sum_perp, 0.75, of its norm) the projection bound is nearly
 *      exact and they add little (fewshot: 395 blocks bounded instead of
 *      410, 29 visited instead of 32, the same 274 documents scored), so
 *      such a query leaves them out (bub infinite);
 *   3. visits blocks best bound first, and in each scores exactly (acc[d]
 *      plus the long part from fwd) only the documents whose bound can
 *      still beat the current k-th; it stops at the first block whose bound
 *      cannot. Blocks below a first k-th taken from the blocks' best acc
 *      (see lr__sindex_knn) never enter the heap. Scoring a candidate
 *      reads its long features from fwd, far apart in memory from the
 *      next candidate's: the candidates of the next block are picked and
 *      their features fetched while the current block's are scored.
 * The index keeps the documents in its own order (orig maps its numbers
 * to the caller's): a build sorts them by the basis direction their long
 * part leans to most, then by that part's norm (documents_order). In the
 * caller's order a block mixes prompts and tail lengths, and its bound
 * pairs one document's best acc with another's larger long part; sorted,
 * a block's documents have nearly the same long part, so its bound is
 * close to each one's (on the fewshot bench, blocks visited per query
 * fall from about 200 to about 30). Results and ties are in the caller's
 * numbers, and a document's similarity does not depend on its number.
 * Appended documents take the next number in both orders.
 * Step 1 walks the short lists a slice of documents at a time (walk_short),
 * which keeps each document's terms in the query's order: a document's
 * similarity is the same float whatever the walk's layout, and the tests
 * compare it bit for bit with scoring every document the plain way.
 * Every document not scored has a bound below the final k-th similarity, so
 * the result is the exact top k, ties to the lower document. Bounds and
 * scores are float sums in different orders; a bound is trusted only when
 * it is below the k-th by more than a relative 1e-4, far above the rounding
 * of a sum of at most LR__TFIDF_MAX_FEATURES terms (about 1e-5). The
 * projection bound's own rounding (float coordinates, a basis orthonormal
 * only to float precision; the rests are worked out in double and rounded
 * up) stays below 1e-6 of Cauchy-Schwarz, and it gets a margin of 1e-5 of
 * that (PROJ_MARGIN) on top.
 *
 * Memory: a sparse index built at once keeps all postings in one block; a
 * list that grows afterwards (an appended document) moves to its own
 * allocation, so appends cost O(features) and never rebuild anything. An
 * appended document's long features update the bounds in place; a list
 * that grows long through appends stays short (walked) until the next
 * rebuild, which is correct, only slower. The rows are few by construction:
 * each holds at least long_min postings of at most LR__TFIDF_MAX_FEATURES
 * per document, so at most 128 * 64 / 3 (about 2,700) with the automatic
 * threshold. The projection bound costs 16 bytes per document and 32 per
 * block, the renumbering 4 per document; appended documents are projected
 * on the basis of the last build.
 *
 * A batch of queries is searched one query at a time. Sharing the walk
 * across a batch was measured and not adopted: a group of queries merged
 * by feature, each short list's postings in a slice read once and added
 * into the acc of every query of the group that has the feature (each
 * query's terms still in its own order, so the same floats bit for bit),
 * each long row's block maxima read once for the group, then steps 2 and
 * 3 per query. One by one against grouped, 1,000 queries on 100,000
 * synthetic records (smart_bench, alternating, median of 11 rounds' time
 * ratios), groups of 1 / 4 / 8 / 32 queries: fewshot 0.92 / 0.75 / 0.65 /
 * 0.49, zipf 0.90 / 0.75 / 0.53 / 0.17; the development data's 945 test
 * queries on its 2,205 records, 0.92 to 0.77. The multiply-adds into acc
 * are as many either way (one per query and posting); only reading the
 * postings is shared, and a group small enough to keep its accs near the
 * core shares little of it: the postings walked by 8 consecutive queries
 * are 1.09 times the distinct ones on fewshot and 1.02 on zipf (1.43 and
 * 1.07 for 32; 1.22 and 1.13 for 8 with queries grouped by their longest
 * short list; 14.5 and 2.4 only over the whole batch), while every query of
 * a group needs its own acc (400 KB at 100,000 documents), so the group's
 * no longer stay in the second cache level. Groups of identical queries
 * were slower too (0.62 to 1.01): a query searched right after another
 * over the same lists finds their postings in cache already.
 *
 * Measured on the fewshot bench and not adopted (kNN time against the
 * code before, the same 2,000 queries searched alternately in one process
 * over the same index, median of 8 to 16 rounds' ratios; this machine's
 * noise is about 5%). A query there has 62 short lists holding 66,000
 * postings (75% of them in the 17 lists of 1 to 3 postings per block) and
 * 58 long ones; the walk took about 150 of its 290 us, the block sums 40,
 * visiting the blocks 55. A lower long_min (1 or 2 postings per block)
 * walks less but loosens the bounds: 2.09 and 1.10 times the time, and
 * another split of the sum changes the last bits of similarities; 5 per
 * block: 1.03. Fetching each list's whole next part of a slice (as long
 * as this one's) instead of two lines: 0.94 to 0.97 into the first or
 * second cache level (zipf 1.24 into the first), 0.86, 0.97 and 0.97 as
 * non-temporal; slices of 4,096 or 2,048 documents: 0.95 to 1.08, of
 * 32,768 or all 100,000 at once (acc in the second cache level, fewer
 * and longer runs per list): 1.27 and 1.62 (median of 8 rounds of
 * separate processes, run in turn); finding
 * each list's end in a slice first (galloping, then halving) so the walk
 * tests only the pointer: 1.35 (zipf 1.13); zeroing acc a slice at a
 * time just before the walk writes it, not after the search: 0.99. The
 * block sums 16 blocks at a time over all rows (one pass over bub): much
 * slower; summed only for the blocks the other bounds keep: 1.20 (their
 * rows are read scattered); bmax as 16-bit fixed point rounded up (half
 * the bytes): no gain. Skipping slices of the walk whose bound cannot
 * reach a first k-th needs a bound on the short part, and Cauchy-Schwarz
 * gives none: the query's short part has norm 0.97 against a k-th of
 * 0.13, so every slice stays. Leaving out short lists whose largest terms
 * together cannot lift a document to the k-th (max-score) would skip
 * about a quarter of the short postings even with the final k-th known in
 * advance, and needs every document's short features stored again to
 * score its candidates in the query's order; not attempted. Two walk
 * layouts, each the same 2,000 queries searched in one process with the
 * layout switched every run (median of 6 pairs of runs' kNN p50): the
 * walked lists copied as 16-bit document offsets within a slice and their
 * weights apart, with each slice's start kept per list so the walk tests
 * no document number (6 bytes a posting instead of 8): 1.06; the walk
 * unrolled four postings at a time, testing only the fourth's number:
 * 0.99. The walk waits on memory (the lists are scattered over the index,
 * about 60 streams at once), not on its instructions; a query searched a
 * second time right after the first takes about 0.85 of the time. Nor is
 * it the address translation: the postings, the list headers, the row map
 * and the long features on 2 MB pages (madvise, 108 MB of them granted):
 * 1.09, median of 6 pairs of processes run alternately (spread 0.77 to
 * 1.27).
 *
 * Adopted since: the walk fetches each list's postings about a slice and
 * a half ahead as it goes (one prefetch a posting, the distance being the
 * list's average postings in 1.5 slices), where the fetch of two lines at
 * the end of a list's part left most of the next part to be waited for.
 * Few-shot kNN 0.82 to 0.86 of the time before, zipf 0.99 to 1.01 (its
 * walk mostly takes the sparse loop, which does not fetch ahead), the same
 * 2,000 queries searched alternately by the code before and after in one
 * process over one index, median of 10 pairs of passes' p50 (this
 * machine's noise about 3%); 7 alternating pairs of smart_bench processes
 * on one store: few-shot kNN 0.81 and decision 0.83, zipf 1.06 and 1.03
 * (spread 0.94 to 1.11, other jobs running). Other
 * distances: half a slice, one, two, three, four: 0.87, 0.83, 0.82, 0.87,
 * 0.90; a fixed 2,048 or 1,024 bytes: 0.89, 0.86; fetching into the second
 * level only: no different; fetching ahead in the sparse loop too (zipf):
 * 1.04. With it, and not adopted: the walk four postings at a time,
 * testing the fourth's number only: 0.84 against 0.79 in the same round;
 * slices of 4,096 or 16,384: 0.86 and 0.85; fetching the candidates' caller
 * numbers (orig) with their block: 1.02; the long parts of four candidates
 * summed at once, each in its own order (the same floats) so their chains
 * of additions overlap: 1.02. Without it: the walk sixteen postings at a
 * time with AVX-512 gathers and scatters (a list never holds a document
 * twice, so a scatter cannot collide; the same floats): about 1.5 times the
 * plain loop's time. Max-score, looked at again with each list's largest
 * weight: on the fewshot store most short postings are in lists whose
 * largest term is tiny (q_t times the list's largest weight 0.001 to
 * 0.003, character trigrams of common words, against a k-th of 0.07 to
 * 0.18), so leaving out the lists whose largest terms sum to at most 0.005,
 * 0.01 or 0.02 would walk 78%, 64% or 47% of the short postings. But the
 * k-th sits in a crowd: with that sum added to every bound, the documents
 * whose bound reaches the final k-th go from 45 to 67, 109 or 306 a query
 * (first 300 queries), and each would have to be scored from a second copy
 * of its short features to keep the query's order of the sum (about 55 MB
 * more at 100,000 records), where scoring the candidates is already about
 * a quarter of the search. Not attempted. */

#define RELATIVE_SLACK 1.0001f
/* The projection bound's float error, as a share of Cauchy-Schwarz. */
#define PROJ_MARGIN 1e-5f
/* Searches for at most this many neighbours start with a first k-th. */
#define FIRST_KTH_MAX_K 64
/* Short postings per block from which the walk takes each block's largest
 * acc once per slice rather than at each posting (walk_short). */
#define DENSE_WALK_PER_BLOCK 16u
/* Documents per slice of the short lists' walk (acc of 32 KB). */
#define KNN_SLICE 8192u
/* How far ahead the walk fetches each list, in slices, as a fraction
 * (walk_short). */
#define WALK_AHEAD_NUM 3u
#define WALK_AHEAD_DEN 2u

static size_t n_blocks(size_t ndocs)
{
    return (ndocs + LR__SINDEX_BLOCK - 1) >> LR__SINDEX_BLOCK_SHIFT;
}

static void bounds_free(struct lr__sindex *idx)
{
    free(idx->orig);
    lr__space_free(idx->row_of, sizeof(*idx->row_of));
    free(idx->bmax);
    free(idx->hmax);
    free(idx->hnorm);
    free(idx->fwd_off);
    free(idx->fwd);
    free(idx->basis);
    free(idx->proj);
    free(idx->pmax);
    free(idx->pmin);
    idx->row_of = idx->orig = NULL;
    idx->bmax = idx->hmax = idx->hnorm = NULL;
    idx->basis = idx->proj = idx->pmax = idx->pmin = NULL;
    idx->fwd_off = NULL;
    idx->fwd = NULL;
    idx->nrows = idx->ndirs = 0;
    idx->bstride = idx->fwd_n = idx->fwd_cap = idx->docs_cap = 0;
}

/* Cosine-like score of document d's long part against a dense direction
 * c over the rows (not divided by d's norm). */
static double doc_dot(const struct lr__sindex *idx, uint32_t d, const double *c)
{
    double s = 0.0;
    for (size_t i = idx->fwd_off[d]; i < idx->fwd_off[d + 1]; i++)
        s += (double)idx->fwd[i].w * c[idx->fwd[i].row];
    return s;
}

/* Directions for the projection bound: the centres of a few clusters of
 * the documents' long parts (the common prompts), found by a short
 * deterministic spherical k-means over a sample, then made orthonormal.
 * Any directions give a valid bound; good ones make it tight. */
static int basis_build(struct lr__sindex *idx, uint32_t n)
{
    size_t nr = idx->nrows, want = nr < LR__SINDEX_DIRS ? nr : LR__SINDEX_DIRS;
    uint32_t step = n / 4096 + 1, sample[4096 + 1];
    size_t ns = 0;

    idx->ndirs = 0;
    memset(idx->gram, 0, sizeof(idx->gram));
    for (uint32_t d = 0; d < n && ns < 4096; d += step)
        if (idx->hnorm[d] > 0.0f)
            sample[ns++] = d;
    if (want == 0 || ns == 0)
        return 0;
    double *c = calloc(want * nr, sizeof(*c)), *sum = calloc(want * nr, sizeof(*sum));
    size_t *cnt = calloc(want, sizeof(*cnt));
    idx->basis = calloc(want * nr, sizeof(*idx->basis));
    if (!c || !sum || !cnt || !idx->basis) {
        free(c);
        free(sum);
        free(cnt);
        return LR_ENOMEM;
    }
    /* Seeds: the first sampled document, then each time the one least
     * like the seeds so far. */
    size_t nc = 0;
    for (uint32_t seed = sample[0];;) {
        for (size_t i = idx->fwd_off[seed]; i < idx->fwd_off[seed + 1]; i++)
            c[nc * nr + idx->fwd[i].row] = idx->fwd[i].w / idx->hnorm[seed];
        if (++nc == want)
            break;
        double worst = 2.0;
        for (size_t i = 0; i < ns; i++) {
            double best = -1.0;
            for (size_t j = 0; j < nc; j++) {
                double cs = doc_dot(idx, sample[i], c + j * nr) / idx->hnorm[sample[i]];
                best = cs > best ? cs : best;
            }
            if (best < worst) {
                worst = best;
                seed = sample[i];
            }
        }
        if (worst > 0.999)
            break; /* every sampled document is like a seed already */
    }
    for (int it = 0; it < 4; it++) {
        memset(sum, 0, nc * nr * sizeof(*sum));
        memset(cnt, 0, nc * sizeof(*cnt));
        for (size_t i = 0; i < ns; i++) {
            uint32_t d = sample[i];
            size_t bj = 0;
            double best = -1.0;
            for (size_t j = 0; j < nc; j++) {
                double cs = doc_dot(idx, d, c + j * nr);
                if (cs > best) {
                    best = cs;
                    bj = j;
                }
            }
            for (size_t f = idx->fwd_off[d]; f < idx->fwd_off[d + 1]; f++)
                sum[bj * nr + idx->fwd[f].row] += idx->fwd[f].w / idx->hnorm[d];
            cnt[bj]++;
        }
        for (size_t j = 0; j < nc; j++) {
            double s2 = 0.0;
            for (size_t r = 0; r < nr; r++)
                s2 += sum[j * nr + r] * sum[j * nr + r];
            if (cnt[j] == 0 || !(s2 > 0.0))
                continue; /* keep the old centre */
            for (size_t r = 0; r < nr; r++)
                c[j * nr + r] = sum[j * nr + r] / sqrt(s2);
        }
    }
    /* Gram-Schmidt; a centre that is nearly a mix of the earlier ones adds
     * nothing and is dropped. */
    for (size_t j = 0; j < nc; j++) {
        double *v = c + j * nr;
        for (size_t i = 0; i < idx->ndirs; i++) {
            const double *u = c + i * nr;
            double p = 0.0;
            for (size_t r = 0; r < nr; r++)
                p += v[r] * u[r];
            for (size_t r = 0; r < nr; r++)
                v[r] -= p * u[r];
        }
        double s2 = 0.0;
        for (size_t r = 0; r < nr; r++)
            s2 += v[r] * v[r];
        if (!(s2 > 1e-6))
            continue;
        double *dst = c + idx->ndirs * nr;
        for (size_t r = 0; r < nr; r++)
            dst[r] = v[r] / sqrt(s2);
        idx->ndirs++;
    }
    for (size_t i = 0; i < idx->ndirs * nr; i++)
        idx->basis[i] = (float)c[i];
    /* The bound's algebra uses the basis as stored (floats). */
    for (size_t i = 0; i < idx->ndirs; i++)
        for (size_t j = 0; j < idx->ndirs; j++) {
            double g = 0.0;
            for (size_t r = 0; r < nr; r++)
                g += (double)idx->basis[i * nr + r] * idx->basis[j * nr + r];
            idx->gram[i * LR__SINDEX_DIRS + j] = g;
        }
    free(c);
    free(sum);
    free(cnt);
    return 0;
}

/* |x - sum_j a_j basis_j|^2 for a vector x with |x|^2 = x2 and a_j = x . basis_j. */
static double perp2(const struct lr__sindex *idx, double x2, const double *a)
{
    double s = x2;
    for (size_t i = 0; i < idx->ndirs; i++) {
        s -= 2.0 * a[i] * a[i];
        for (size_t j = 0; j < idx->ndirs; j++)
            s += a[i] * a[j] * idx->gram[i * LR__SINDEX_DIRS + j];
    }
    return s > 0.0 ? s : 0.0;
}

/* Document d's coordinates along the basis and norm off it (h2: its long
 * part's squared norm), and its block's extremes of both. */
static void doc_project(struct lr__sindex *idx, uint32_t d, double h2)
{
    double a[LR__SINDEX_DIRS] = {0};
    float *pd = idx->proj + (size_t)d * LR__SINDEX_PROJ;
    size_t nr = idx->nrows;
    for (size_t i = idx->fwd_off[d]; i < idx->fwd_off[d + 1]; i++)
        for (size_t j = 0; j < idx->ndirs; j++)
            a[j] += (double)idx->fwd[i].w * idx->basis[j * nr + idx->fwd[i].row];
    for (size_t j = 0; j < LR__SINDEX_DIRS; j++)
        pd[j] = (float)a[j];
    pd[LR__SINDEX_DIRS] = (float)(sqrt(perp2(idx, h2, a)) * (1.0 + 1e-6));
}

/* Document d (index number) into its block's bounds: the largest weight
 * of each of its long features, the largest norm, the extremes of proj. */
static void block_bounds_add(struct lr__sindex *idx, uint32_t d)
{
    size_t b = d >> LR__SINDEX_BLOCK_SHIFT;
    const float *pd = idx->proj + (size_t)d * LR__SINDEX_PROJ;
    for (size_t i = idx->fwd_off[d]; i < idx->fwd_off[d + 1]; i++) {
        float *m = &idx->bmax[(size_t)idx->fwd[i].row * idx->bstride + b];
        if (idx->fwd[i].w > *m)
            *m = idx->fwd[i].w;
    }
    if (idx->hnorm[d] > idx->hmax[b])
        idx->hmax[b] = idx->hnorm[d];
    float *mx = idx->pmax + b * LR__SINDEX_PROJ, *mn = idx->pmin + b * LR__SINDEX_PROJ;
    int first = (d & (LR__SINDEX_BLOCK - 1)) == 0;
    for (size_t j = 0; j < LR__SINDEX_PROJ; j++) {
        mx[j] = first || pd[j] > mx[j] ? pd[j] : mx[j];
        mn[j] = first || pd[j] < mn[j] ? pd[j] : mn[j];
    }
}

/* A document's place in the index's order (documents_order). */
struct doc_key {
    int group;    /* -1: no long features, else its largest coordinate */
    float norm;   /* its long part's norm */
    uint32_t doc; /* the caller's number */
};

static int cmp_doc_key(const void *a, const void *b)
{
    const struct doc_key *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->norm != y->norm)
        return x->norm > y->norm ? -1 : 1;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

/* The index's order of the documents: by the basis direction their long
 * part leans to most, then by that part's norm. Documents alike in their
 * long part then share blocks, so a block's bounds are close to each of
 * its documents' (see above). proj, hnorm and fwd are in the caller's
 * order on entry; fills idx->orig. */
static int documents_order(struct lr__sindex *idx, uint32_t n)
{
    struct doc_key *key = malloc((n ? n : 1) * sizeof(*key));
    if (!key)
        return LR_ENOMEM;
    for (uint32_t d = 0; d < n; d++) {
        const float *pd = idx->proj + (size_t)d * LR__SINDEX_PROJ;
        int g = 0;
        for (int j = 1; j < LR__SINDEX_DIRS; j++)
            if (fabsf(pd[j]) > fabsf(pd[g]))
                g = j;
        key[d].group = idx->hnorm[d] > 0.0f ? g : -1;
        key[d].norm = idx->hnorm[d];
        key[d].doc = d;
    }
    qsort(key, n, sizeof(*key), cmp_doc_key);
    for (uint32_t i = 0; i < n; i++)
        idx->orig[i] = key[i].doc;
    free(key);
    return 0;
}

/* Put hnorm, proj and fwd (in the caller's order) in the index's. */
static int bounds_renumber(struct lr__sindex *idx, uint32_t n)
{
    float *hnorm = calloc(idx->docs_cap, sizeof(*hnorm));
    float *proj = calloc(idx->docs_cap * LR__SINDEX_PROJ, sizeof(*proj));
    size_t *fwd_off = calloc(idx->docs_cap + 1, sizeof(*fwd_off));
    struct lr__rowfeat *fwd = malloc(idx->fwd_cap * sizeof(*fwd));
    if (!hnorm || !proj || !fwd_off || !fwd) {
        free(hnorm);
        free(proj);
        free(fwd_off);
        free(fwd);
        return LR_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t d = idx->orig[i];
        size_t len = idx->fwd_off[d + 1] - idx->fwd_off[d];
        hnorm[i] = idx->hnorm[d];
        memcpy(proj + (size_t)i * LR__SINDEX_PROJ, idx->proj + (size_t)d * LR__SINDEX_PROJ,
               LR__SINDEX_PROJ * sizeof(*proj));
        memcpy(fwd + fwd_off[i], idx->fwd + idx->fwd_off[d], len * sizeof(*fwd));
        fwd_off[i + 1] = fwd_off[i] + len;
    }
    free(idx->hnorm);
    free(idx->proj);
    free(idx->fwd_off);
    free(idx->fwd);
    idx->hnorm = hnorm;
    idx->proj = proj;
    idx->fwd_off = fwd_off;
    idx->fwd = fwd;
    return 0;
}

/* The bounds of a freshly built index (lists counted, not filled), and the
 * index's order of the documents (idx->orig). */
static int bounds_build(struct lr__sindex *idx, const struct lr__feat *feats, const size_t *off,
                        uint32_t n, uint32_t long_min)
{
    size_t nb = n_blocks(n), nfwd = 0;

    if (long_min == LR__SINDEX_LONG_AUTO)
        long_min = nb * 3 > 2 ? (uint32_t)(nb * 3) : 2;
    idx->row_of = lr__space_alloc(sizeof(*idx->row_of));
    if (!idx->row_of)
        return LR_ENOMEM;
    for (size_t u = 0; u < idx->nused; u++) {
        uint32_t f = idx->used[u];
        if (idx->lists[f].n >= long_min) {
            idx->row_of[f] = ++idx->nrows;
            nfwd += idx->lists[f].n;
        }
    }
    /* Room for a quarter more documents before anything moves (the store
     * rebuilds after growing by a quarter). */
    idx->docs_cap = (size_t)n + n / 4 + LR__SINDEX_BLOCK;
    idx->bstride = n_blocks(idx->docs_cap);
    idx->fwd_cap = nfwd + nfwd / 4 + 64;
    idx->orig = malloc(idx->docs_cap * sizeof(*idx->orig));
    idx->bmax = calloc((size_t)idx->nrows * idx->bstride + 1, sizeof(*idx->bmax));
    idx->hmax = calloc(idx->bstride, sizeof(*idx->hmax));
    idx->hnorm = calloc(idx->docs_cap, sizeof(*idx->hnorm));
    idx->fwd_off = calloc(idx->docs_cap + 1, sizeof(*idx->fwd_off));
    idx->fwd = malloc(idx->fwd_cap * sizeof(*idx->fwd));
    idx->proj = calloc(idx->docs_cap * LR__SINDEX_PROJ, sizeof(*idx->proj));
    idx->pmax = calloc(idx->bstride * LR__SINDEX_PROJ, sizeof(*idx->pmax));
    idx->pmin = calloc(idx->bstride * LR__SINDEX_PROJ, sizeof(*idx->pmin));
    if (!idx->orig || !idx->bmax || !idx->hmax || !idx->hnorm || !idx->fwd_off || !idx->fwd ||
        !idx->proj || !idx->pmax || !idx->pmin)
        return LR_ENOMEM;
    /* First every document's long features, norm and coordinates in the
     * caller's order, which decide the index's order; then the same in
     * that order, and the blocks' bounds. */
    for (uint32_t d = 0; d < n; d++) {
        double h2 = 0.0;
        for (size_t i = off[d]; i < off[d + 1]; i++) {
            uint32_t r = idx->row_of[feats[i].id];
            if (!r)
                continue;
            idx->fwd[idx->fwd_n].row = r - 1;
            idx->fwd[idx->fwd_n].w = feats[i].w;
            idx->fwd_n++;
            h2 += (double)feats[i].w * feats[i].w;
        }
        idx->fwd_off[d + 1] = idx->fwd_n;
        idx->hnorm[d] = (float)sqrt(h2);
    }
    if (basis_build(idx, n) != 0)
        return LR_ENOMEM;
    for (uint32_t d = 0; d < n; d++) {
        double h2 = 0.0;
        for (size_t i = idx->fwd_off[d]; i < idx->fwd_off[d + 1]; i++)
            h2 += (double)idx->fwd[i].w * idx->fwd[i].w;
        doc_project(idx, d, h2);
    }
    if (documents_order(idx, n) != 0 || bounds_renumber(idx, n) != 0)
        return LR_ENOMEM;
    for (uint32_t d = 0; d < n; d++)
        block_bounds_add(idx, d);
    return 0;
}

/* Count each feature's postings into its list, and the features present,
 * ascending, into idx->used: a bitmap of the feature space (128 KiB) marks
 * them, so the order costs no sort. */
static int used_count(struct lr__sindex *idx, const struct lr__feat *feats, size_t total)
{
    uint64_t *seen = calloc(LR__TFIDF_SPACE / 64, sizeof(*seen));
    size_t n = 0;
    if (!seen)
        return LR_ENOMEM;
    for (size_t i = 0; i < total; i++) {
        uint32_t f = feats[i].id;
        if (idx->lists[f].n++ == 0) {
            seen[f >> 6] |= UINT64_C(1) << (f & 63);
            n++;
        }
    }
    idx->used_cap = n + n / 4 + 64;
    idx->used = malloc(idx->used_cap * sizeof(*idx->used));
    if (!idx->used) {
        free(seen);
        return LR_ENOMEM;
    }
    for (size_t w = 0; w < LR__TFIDF_SPACE / 64 && idx->nused < n; w++)
        for (uint64_t b = seen[w]; b; b &= b - 1)
            idx->used[idx->nused++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(b));
    free(seen);
    return 0;
}

int lr__sindex_build_with(struct lr__sindex *idx, const struct lr__feat *feats, const size_t *off,
                          uint32_t n, uint32_t long_min)
{
    size_t total = n ? off[n] : 0;
    memset(idx, 0, sizeof(*idx));
    idx->lists = lr__space_alloc(sizeof(*idx->lists));
    if (!idx->lists)
        return LR_ENOMEM;
    if (total > 0) {
        idx->block = malloc(total * sizeof(*idx->block));
        if (!idx->block) {
            lr__space_free(idx->lists, sizeof(*idx->lists));
            idx->lists = NULL;
            return LR_ENOMEM;
        }
    }
    /* Counting sort from document-major to feature-major: count (and
     * list the features present, ascending), decide the long lists and
     * the documents' order (bounds_build), place the lists' starts, then
     * fill in the index's order so every list is sorted by index number. */
    idx->ndocs = n;
    idx->block_sum_perp = LR__SINDEX_BLOCK_SUM_PERP;
    if (used_count(idx, feats, total) != 0 ||
        bounds_build(idx, feats, off, n, long_min) != 0) {
        lr__sindex_free(idx);
        return LR_ENOMEM;
    }
    size_t at = 0;
    for (size_t u = 0; u < idx->nused; u++) {
        struct lr__plist *l = &idx->lists[idx->used[u]];
        l->p = idx->block + at;
        at += l->n;
        l->n = 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t d = idx->orig[i];
        for (size_t j = off[d]; j < off[d + 1]; j++) {
            struct lr__plist *l = &idx->lists[feats[j].id];
            l->p[l->n].doc = i;
            l->p[l->n].w = feats[j].w;
            l->n++;
        }
    }
    return 0;
}

int lr__sindex_build(struct lr__sindex *idx, const struct lr__feat *feats, const size_t *off,
                     uint32_t n)
{
    return lr__sindex_build_with(idx, feats, off, n, LR__SINDEX_LONG_AUTO);
}

void lr__sindex_free(struct lr__sindex *idx)
{
    if (!idx)
        return;
    if (idx->lists)
        for (size_t u = 0; u < idx->nused; u++)
            if (idx->lists[idx->used[u]].cap)
                free(idx->lists[idx->used[u]].p);
    lr__space_free(idx->lists, sizeof(*idx->lists));
    free(idx->block);
    free(idx->used);
    bounds_free(idx);
    memset(idx, 0, sizeof(*idx));
}

/* Room for document idx->ndocs with nf more long features in the bounds. */
static int bounds_reserve(struct lr__sindex *idx, size_t nf)
{
    size_t d = idx->ndocs;
    if (d + 1 > idx->docs_cap) {
        size_t cap = idx->docs_cap + idx->docs_cap / 2 + LR__SINDEX_BLOCK;
        float *h = realloc(idx->hnorm, cap * sizeof(*h));
        if (!h)
            return LR_ENOMEM;
        idx->hnorm = h;
        size_t *o = realloc(idx->fwd_off, (cap + 1) * sizeof(*o));
        if (!o)
            return LR_ENOMEM;
        idx->fwd_off = o;
        h = realloc(idx->proj, cap * LR__SINDEX_PROJ * sizeof(*h));
        if (!h)
            return LR_ENOMEM;
        idx->proj = h;
        uint32_t *g = realloc(idx->orig, cap * sizeof(*g));
        if (!g)
            return LR_ENOMEM;
        idx->orig = g;
        idx->docs_cap = cap;
    }
    size_t b = d >> LR__SINDEX_BLOCK_SHIFT;
    if (b >= idx->bstride) {
        /* Every row moves to a longer stride; blocks past the old end are 0. */
        size_t stride = n_blocks(idx->docs_cap) > b + 1 ? n_blocks(idx->docs_cap) : b + 1;
        float *m = calloc((size_t)idx->nrows * stride + 1, sizeof(*m));
        float *hm = calloc(stride, sizeof(*hm));
        float *px = realloc(idx->pmax, stride * LR__SINDEX_PROJ * sizeof(*px));
        if (px)
            idx->pmax = px;
        float *pn = realloc(idx->pmin, stride * LR__SINDEX_PROJ * sizeof(*pn));
        if (pn)
            idx->pmin = pn;
        if (!m || !hm || !px || !pn) {
            free(m);
            free(hm);
            return LR_ENOMEM;
        }
        for (size_t r = 0; r < idx->nrows; r++)
            memcpy(m + r * stride, idx->bmax + r * idx->bstride, idx->bstride * sizeof(*m));
        memcpy(hm, idx->hmax, idx->bstride * sizeof(*hm));
        free(idx->bmax);
        free(idx->hmax);
        idx->bmax = m;
        idx->hmax = hm;
        idx->bstride = stride;
    }
    if (idx->fwd_n + nf > idx->fwd_cap) {
        size_t cap = idx->fwd_cap + idx->fwd_cap / 2 + nf;
        struct lr__rowfeat *f = realloc(idx->fwd, cap * sizeof(*f));
        if (!f)
            return LR_ENOMEM;
        idx->fwd = f;
        idx->fwd_cap = cap;
    }
    return 0;
}

/* Note feature f in idx->used: its list is about to get memory of its own. */
static int used_push(struct lr__sindex *idx, uint32_t f)
{
    if (idx->nused == idx->used_cap) {
        size_t cap = idx->used_cap + idx->used_cap / 2 + 64;
        uint32_t *u = realloc(idx->used, cap * sizeof(*u));
        if (!u)
            return LR_ENOMEM;
        idx->used = u;
        idx->used_cap = cap;
    }
    idx->used[idx->nused++] = f;
    return 0;
}

int lr__sindex_reserve(struct lr__sindex *idx, const struct lr__feat *v, size_t n)
{
    if (!idx->lists) {
        /* Never built (an empty store): start from an empty index. */
        int rc = lr__sindex_build(idx, NULL, NULL, 0);
        if (rc != 0)
            return rc;
    }
    if (idx->ndocs == UINT32_MAX)
        return LR_ENOMEM;
    if (bounds_reserve(idx, n) != 0)
        return LR_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct lr__plist *l = &idx->lists[v[i].id];
        if (l->cap > l->n)
            continue;
        if (l->n >= UINT32_MAX / 2)
            return LR_ENOMEM;
        if (!l->cap && !l->n && used_push(idx, v[i].id) != 0)
            return LR_ENOMEM;
        uint32_t cap = l->n < 4 ? 8 : l->n + l->n / 2;
        struct lr__posting *p = malloc((size_t)cap * sizeof(*p));
        if (!p)
            return LR_ENOMEM;
        if (l->n)
            memcpy(p, l->p, (size_t)l->n * sizeof(*p));
        if (l->cap)
            free(l->p);
        l->p = p;
        l->cap = cap;
    }
    return 0;
}

void lr__sindex_add(struct lr__sindex *idx, const struct lr__feat *v, size_t n)
{
    /* Appended documents keep their numbers: the caller's is ndocs too. */
    uint32_t d = idx->ndocs;
    double h2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        struct lr__plist *l = &idx->lists[v[i].id];
        l->p[l->n].doc = d;
        l->p[l->n].w = v[i].w;
        l->n++;
        uint32_t r = idx->row_of[v[i].id];
        if (r) {
            idx->fwd[idx->fwd_n].row = r - 1;
            idx->fwd[idx->fwd_n].w = v[i].w;
            idx->fwd_n++;
            h2 += (double)v[i].w * v[i].w;
        }
    }
    idx->orig[d] = d;
    idx->fwd_off[d + 1] = idx->fwd_n;
    idx->hnorm[d] = (float)sqrt(h2);
    doc_project(idx, d, h2);
    block_bounds_add(idx, d);
    idx->ndocs = d + 1;
}

void lr__knn_scratch_free(struct lr__knn_scratch *s)
{
    if (!s)
        return;
    free(s->acc);
    free(s->bub);
    free(s->bacc);
    free(s->heap);
    free(s->qrow);
    memset(s, 0, sizeof(*s));
}

static int scratch_reserve(struct lr__knn_scratch *s, size_t ndocs, size_t nblocks, size_t nrows)
{
    /* acc covers whole blocks: the walk reads every block to its end. */
    if (s->cap < nblocks * LR__SINDEX_BLOCK || !s->acc) {
        size_t cap = ndocs < 1024 ? 1024 : ndocs + ndocs / 4 + LR__SINDEX_BLOCK;
        float *acc = calloc(cap, sizeof(*acc));
        if (!acc)
            return LR_ENOMEM;
        free(s->acc);
        s->acc = acc;
        s->cap = cap;
    }
    if (s->bcap < nblocks || !s->bub) {
        size_t cap = nblocks < 64 ? 64 : nblocks + nblocks / 4;
        float *bub = malloc(cap * sizeof(*bub)), *bacc = malloc(cap * sizeof(*bacc));
        struct lr__block_ub *heap = malloc(cap * sizeof(*heap));
        if (!bub || !bacc || !heap) {
            free(bub);
            free(bacc);
            free(heap);
            return LR_ENOMEM;
        }
        free(s->bub);
        free(s->bacc);
        free(s->heap);
        s->bub = bub;
        s->bacc = bacc;
        s->heap = heap;
        s->bcap = cap;
    }
    if (s->rcap < nrows || !s->qrow) {
        size_t cap = nrows < 256 ? 256 : nrows + nrows / 4;
        float *qrow = calloc(cap, sizeof(*qrow));
        if (!qrow)
            return LR_ENOMEM;
        free(s->qrow);
        s->qrow = qrow;
        s->rcap = cap;
    }
    return 0;
}

/* Max-heap of blocks by bound (ties: lower block first, for a stable
 * visiting order; the result does not depend on it). */
static int block_before(const struct lr__block_ub *a, const struct lr__block_ub *b)
{
    return a->ub > b->ub || (a->ub == b->ub && a->b < b->b);
}

static void block_sift(struct lr__block_ub *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && block_before(&h[l], &h[m]))
            m = l;
        if (r < n && block_before(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        struct lr__block_ub x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
}

/* The long lists' part of document d's dot product: its long features
 * times the query's weights on their rows (0 on rows the query lacks). */
static float long_part(const struct lr__sindex *idx, const float *qrow, uint32_t d)
{
    const struct lr__rowfeat *f = idx->fwd + idx->fwd_off[d], *e = idx->fwd + idx->fwd_off[d + 1];
    float s = 0.0f;
    for (; f < e; f++)
        s += qrow[f->row] * f->w;
    return s;
}

/* Start fetching what visiting block b reads first: its documents' acc
 * and, when the query has a long part (with_long), their coordinates
 * (proj) and offsets into fwd. A macro, not a function: GCC takes a
 * function that only prefetches for one without effects and drops its
 * calls. */
#define prefetch_block(idx, acc, b, with_long)                                         \
    do {                                                                               \
        size_t pf_lo = (size_t)(b) << LR__SINDEX_BLOCK_SHIFT;                          \
        size_t pf_n = (idx)->ndocs - pf_lo < LR__SINDEX_BLOCK ? (idx)->ndocs - pf_lo   \
                                                               : LR__SINDEX_BLOCK;     \
        for (size_t pf_i = 0; pf_i < pf_n; pf_i += 16)                                 \
            __builtin_prefetch((acc) + pf_lo + pf_i);                                  \
        for (size_t pf_i = 0; (with_long) && pf_i < pf_n; pf_i += 4)                   \
            __builtin_prefetch((idx)->proj + (pf_lo + pf_i) * LR__SINDEX_PROJ);        \
        for (size_t pf_i = 0; (with_long) && pf_i <= pf_n; pf_i += 8)                  \
            __builtin_prefetch((idx)->fwd_off + pf_lo + pf_i);                         \
    } while (0)

/* The query's long part as the bounds see it. */
struct long_query {
    float qlong;               /* its norm */
    float qp[LR__SINDEX_PROJ]; /* its coordinates along the basis (0 past ndirs),
                                * then its norm off it, rounded up */
};

/* A bound on document d's long part: the smaller of its block's bound bb
 * and the projection bound, which needs a margin for its float error
 * (margin: PROJ_MARGIN times Cauchy-Schwarz for the block's largest norm). */
static inline float doc_long_bound(const struct lr__sindex *idx, const struct long_query *lq,
                                   float bb, float margin, size_t d)
{
    const float *pd = idx->proj + d * LR__SINDEX_PROJ;
    float pb = margin;
    for (size_t j = 0; j < LR__SINDEX_PROJ; j++)
        pb += lq->qp[j] * pd[j];
    return pb < bb ? pb : bb;
}

/* Block b's documents whose bound can beat kth (0: any positive bound)
 * into cand, in order; their long features start being fetched. Returns
 * how many. */
static size_t block_candidates(const struct lr__sindex *idx, const float *acc, float bb,
                               const struct long_query *lq, uint32_t b, float kth, uint32_t *cand)
{
    size_t lo = (size_t)b << LR__SINDEX_BLOCK_SHIFT, n = 0;
    size_t hi = lo + LR__SINDEX_BLOCK < idx->ndocs ? lo + LR__SINDEX_BLOCK : idx->ndocs;
    const float margin = PROJ_MARGIN * lq->qlong * idx->hmax[b];
    if (!(lq->qlong > 0.0f)) { /* no long part: the bound is acc itself */
        for (size_t d = lo; d < hi; d++)
            if (acc[d] > 0.0f && !(acc[d] * RELATIVE_SLACK < kth))
                cand[n++] = (uint32_t)d;
        return n;
    }
    for (size_t d = lo; d < hi; d++) {
        float ub = acc[d] + doc_long_bound(idx, lq, bb, margin, d);
        if (!(ub > 0.0f) || ub * RELATIVE_SLACK < kth)
            continue;
        cand[n++] = (uint32_t)d;
        const char *f = (const char *)(idx->fwd + idx->fwd_off[d]);
        const char *e = (const char *)(idx->fwd + idx->fwd_off[d + 1]);
        for (; f < e; f += 64)
            __builtin_prefetch(f);
    }
    return n;
}

/* Is doc d in out[0 .. n)? (the neighbours found, fewer than k) */
static int among(const struct lr__neighbor *out, size_t n, uint32_t d)
{
    for (size_t i = 0; i < n; i++)
        if (out[i].doc == d)
            return 1;
    return 0;
}

/* Add the short lists of q[0 .. n) (n <= LR__TFIDF_MAX_FEATURES) into acc,
 * keeping each block's largest acc in bacc.
 *
 * The lists are walked a slice of documents at a time, every list in the
 * query's order within a slice: each document still adds its terms in the
 * query's order (so its float sum is the same as a list-by-list walk),
 * while the slice of acc being written stays in the first cache level.
 * Each block's largest acc goes into bacc, as the walk goes or when its
 * slice is done (weights are positive, so a document's acc only grows). */
static void walk_short(const struct lr__sindex *idx, const struct lr__feat *q, size_t n,
                       float *restrict acc, float *restrict bacc)
{
    const struct lr__posting *cur[LR__TFIDF_MAX_FEATURES], *end[LR__TFIDF_MAX_FEATURES];
    float qw[LR__TFIDF_MAX_FEATURES];
    size_t ahead[LR__TFIDF_MAX_FEATURES]; /* bytes, for a dense walk */
    size_t ns = 0, total = 0;

    for (size_t i = 0; i < n; i++) {
        const struct lr__plist *l = &idx->lists[q[i].id];
        if (idx->row_of[q[i].id] || l->n == 0)
            continue;
        cur[ns] = l->p;
        end[ns] = l->p + l->n;
        qw[ns] = q[i].w;
        ns++;
        total += l->n;
    }
    /* Many postings per block: consecutive postings often fall in one
     * block, and updating its largest acc at each made every posting wait
     * for the one before; then the largest acc is taken once per slice,
     * which reads all of acc. Few postings: updating is cheaper than that
     * read. Both give the same bacc (acc only grows). */
    const int dense = total >= DENSE_WALK_PER_BLOCK * n_blocks(idx->ndocs);
    /* How far ahead a dense walk fetches each list: the postings it has in
     * WALK_AHEAD slices on average (none when every document is in one
     * slice). */
    const double share =
        dense && idx->ndocs > KNN_SLICE
            ? (double)KNN_SLICE * WALK_AHEAD_NUM / WALK_AHEAD_DEN / (double)idx->ndocs
            : 0.0;
    for (size_t s = 0; dense && s < ns; s++)
        ahead[s] = (size_t)((double)(end[s] - cur[s]) * share) * sizeof(**cur);
    for (uint32_t lo = 0; lo < idx->ndocs; lo += KNN_SLICE) {
        uint32_t hi = idx->ndocs - lo > KNN_SLICE ? lo + KNN_SLICE : idx->ndocs;
        for (size_t s = 0; s < ns; s++) {
            const struct lr__posting *p = cur[s], *e = end[s];
            const float w = qw[s];
            if (dense) {
                /* Each posting also fetches the list's postings about a
                 * slice and a half ahead, which a later slice walks: with
                 * some 60 lists walked in turn the processor's own
                 * prefetching does not keep up, and the walk waited on
                 * them (see the measurements above). The address is
                 * worked out on integers: past the list's end it is only
                 * fetched, never read. In one slice there is nothing to
                 * fetch ahead (pf 0), and the second loop walks. */
                const uintptr_t pf = ahead[s];
                for (; pf && p < e && p->doc < hi; p++) {
                    __builtin_prefetch((const void *)((uintptr_t)p + pf));
                    acc[p->doc] += w * p->w;
                }
                for (; p < e && p->doc < hi; p++)
                    acc[p->doc] += w * p->w;
            } else {
                for (; p < e && p->doc < hi; p++) {
                    uint32_t d = p->doc;
                    float a = acc[d] + w * p->w;
                    float *m = &bacc[d >> LR__SINDEX_BLOCK_SHIFT];
                    acc[d] = a;
                    *m = a > *m ? a : *m;
                }
            }
            /* The next slice comes back to this list after all the others:
             * fetch its next postings now, so that visit does not wait. */
            __builtin_prefetch(p + 8);
            __builtin_prefetch(p + 16);
            cur[s] = p;
        }
        /* The slice's blocks' largest acc, while the slice is in cache
         * (the scratch's acc is zero past the last document up to the end
         * of its block). */
        for (uint32_t b0 = lo; dense && b0 < hi; b0 += LR__SINDEX_BLOCK) {
            const float *a = acc + b0;
            float m = 0.0f;
#pragma omp simd reduction(max : m)
            for (size_t i = 0; i < LR__SINDEX_BLOCK; i++)
                m = a[i] > m ? a[i] : m;
            bacc[b0 >> LR__SINDEX_BLOCK_SHIFT] = m;
        }
    }
}

int lr__sindex_knn(const struct lr__sindex *idx, const struct lr__feat *q, size_t n, size_t k,
                   struct lr__knn_scratch *scratch, struct lr__neighbor *out)
{
    uint32_t ndocs = idx->ndocs;
    size_t nb = n_blocks(ndocs), nheap = 0;
    struct lr__topk top;
    double qlong2 = 0.0;

    if (k > ndocs)
        k = ndocs;
    if (k == 0)
        return 0;
    lr__topk_init(&top, out, k);
    if (!idx->lists) {
        for (uint32_t d = 0; d < k; d++)
            lr__topk_push(&top, d, 0.0f);
        return (int)lr__topk_finish(&top);
    }
    if (scratch_reserve(scratch, ndocs, nb, idx->nrows) != 0)
        return LR_ENOMEM;
    float *acc = scratch->acc, *bub = scratch->bub, *bacc = scratch->bacc, *qrow = scratch->qrow;
    struct lr__block_ub *heap = scratch->heap;

    /* 1. Short lists into acc, and each block's largest acc into bacc;
     * long lists into the per-block bound. The list headers and the
     * postings are scattered over a large table: fetch them all first, so
     * their cache misses overlap. */
    for (size_t i = 0; i < n; i++)
        __builtin_prefetch(&idx->lists[q[i].id]);
    for (size_t i = 0; i < n; i++)
        __builtin_prefetch(idx->lists[q[i].id].p);
    memset(bacc, 0, nb * sizeof(*bacc));
    for (size_t i = 0; i < n; i++) {
        uint32_t r = idx->row_of[q[i].id];
        if (r) {
            qrow[r - 1] = q[i].w;
            qlong2 += (double)q[i].w * q[i].w;
        }
    }
    struct long_query lq;
    lq.qlong = (float)sqrt(qlong2);
    {
        double a[LR__SINDEX_DIRS] = {0};
        size_t nr = idx->nrows;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = idx->row_of[q[i].id];
            for (size_t j = 0; r && j < idx->ndirs; j++)
                a[j] += (double)q[i].w * idx->basis[j * nr + r - 1];
        }
        for (size_t j = 0; j < LR__SINDEX_DIRS; j++)
            lq.qp[j] = (float)a[j];
        lq.qp[LR__SINDEX_DIRS] = (float)(sqrt(perp2(idx, qlong2, a)) * (1.0 + 1e-6));
    }
    /* The block sums cost a pass over a row per long feature of the query
     * and decide little when the projection bound is close (the query's
     * long part near the basis): then they are left out (infinite). */
    if (lq.qp[LR__SINDEX_DIRS] > idx->block_sum_perp * lq.qlong) {
        memset(bub, 0, nb * sizeof(*bub));
        for (size_t i = 0; i < n; i++) {
            uint32_t r = idx->row_of[q[i].id];
            if (r) {
                const float qw = q[i].w;
                const float *restrict m = idx->bmax + (size_t)(r - 1) * idx->bstride;
                float *restrict u = bub;
#pragma omp simd
                for (size_t b = 0; b < nb; b++)
                    u[b] += qw * m[b];
            }
        }
    } else {
        for (size_t b = 0; b < nb; b++)
            bub[b] = INFINITY;
    }
    /* A query longer than a vector (not one of ours) is walked in groups
     * of consecutive features, which keeps each document's order. */
    for (size_t g = 0; g < n; g += LR__TFIDF_MAX_FEATURES)
        walk_short(idx, q + g, n - g < LR__TFIDF_MAX_FEATURES ? n - g : LR__TFIDF_MAX_FEATURES,
                   acc, bacc);

    /* 2. A first k-th similarity: every block's largest acc belongs to a
     * different document, and a document's similarity is at least its acc
     * (the long part is not negative), so the k-th largest bacc is at most
     * the final k-th similarity. Blocks whose bound is below it by more
     * than the slack cannot hold a neighbour and do not enter the heap. */
    float floor_kth = 0.0f;
    if (k <= FIRST_KTH_MAX_K) {
        float best[FIRST_KTH_MAX_K]; /* the k largest bacc, ascending */
        size_t nbest = 0;
        for (size_t b = 0; b < nb; b++) {
            float m = bacc[b];
            size_t j;
            if (nbest < k) {
                j = nbest++;
                while (j > 0 && best[j - 1] > m) {
                    best[j] = best[j - 1];
                    j--;
                }
            } else {
                if (!(m > best[0]))
                    continue;
                j = 0;
                while (j + 1 < k && best[j + 1] < m) {
                    best[j] = best[j + 1];
                    j++;
                }
            }
            best[j] = m;
        }
        if (nbest == k)
            floor_kth = best[0];
    }

    /* Each block's bound: its best acc plus the smallest bound on the long
     * part. Blocks that cannot score above 0 share nothing with q. The
     * projection bound is worked out only for blocks the cheaper ones
     * keep. */
    for (size_t b = 0; b < nb; b++) {
        float lb = lq.qlong * idx->hmax[b];
        lb = bub[b] < lb ? bub[b] : lb;
        float ub = bacc[b] + lb;
        if (!(ub > 0.0f) || ub * RELATIVE_SLACK < floor_kth)
            continue;
        if (lb > 0.0f) {
            const float *mx = idx->pmax + b * LR__SINDEX_PROJ;
            const float *mn = idx->pmin + b * LR__SINDEX_PROJ;
            float pb = PROJ_MARGIN * lq.qlong * idx->hmax[b];
            for (size_t j = 0; j < LR__SINDEX_PROJ; j++)
                pb += lq.qp[j] * (lq.qp[j] > 0.0f ? mx[j] : mn[j]);
            if (pb < lb) {
                ub = bacc[b] + pb;
                if (!(ub > 0.0f) || ub * RELATIVE_SLACK < floor_kth)
                    continue;
            }
        }
        heap[nheap].ub = ub;
        heap[nheap].b = (uint32_t)b;
        nheap++;
    }
    for (size_t i = nheap / 2; i-- > 0;)
        block_sift(heap, nheap, i);

    /* 3. Best block first; inside it, only documents whose own bound can
     * still beat the k-th are scored. The heap only shrinks, so the next
     * two blocks are known while one is scored: the one after next has its
     * acc, norms and offsets fetched, the next one its candidates picked
     * (with the k-th so far, which only rises) and their long features
     * fetched, so memory is waited for once per block, not per document. */
    uint32_t cand[2][LR__SINDEX_BLOCK];
    size_t ncand[2] = {0, 0}, cb = 0;
    if (nheap > 0) {
        prefetch_block(idx, acc, heap[0].b, lq.qlong > 0.0f);
        ncand[0] = block_candidates(idx, acc, bub[heap[0].b], &lq, heap[0].b,
                                    top.n == k ? out[0].sim : 0.0f, cand[0]);
    }
    while (nheap > 0) {
        struct lr__block_ub cur = heap[0];
        heap[0] = heap[--nheap];
        block_sift(heap, nheap, 0);
        if (top.n == k && cur.ub * RELATIVE_SLACK < out[0].sim)
            break; /* and so is every block after it */
        if (nheap > 1) {
            size_t after = nheap > 2 && block_before(&heap[2], &heap[1]) ? 2 : 1;
            prefetch_block(idx, acc, heap[after].b, lq.qlong > 0.0f);
        }
        if (nheap > 0)
            ncand[!cb] = block_candidates(idx, acc, bub[heap[0].b], &lq, heap[0].b,
                                          top.n == k ? out[0].sim : 0.0f, cand[!cb]);
        const float bb = bub[cur.b], margin = PROJ_MARGIN * lq.qlong * idx->hmax[cur.b];
        for (size_t c = 0; c < ncand[cb]; c++) {
            uint32_t d = cand[cb][c];
            /* The k-th may have risen since the document was picked. */
            if (top.n == k &&
                (acc[d] + doc_long_bound(idx, &lq, bb, margin, d)) * RELATIVE_SLACK < out[0].sim)
                continue;
            float sim = acc[d] + (lq.qlong > 0.0f ? long_part(idx, qrow, d) : 0.0f);
            uint32_t caller = idx->orig[d];
            if (!(sim > 0.0f))
                continue;
            if (top.n == k && !lr__neighbor_better(caller, sim, out[0].doc, out[0].sim))
                continue;
            lr__topk_push(&top, caller, sim);
        }
        cb = !cb;
    }

    /* Fewer than k documents share a feature (then every block with a
     * positive bound was visited, so all of them are in the heap): the rest
     * rank at 0 in document order, as a full scan would have them. They
     * go after the sorted shared ones, not through the heap, whose pushes
     * would move the shared ones about while among() looks for them. */
    size_t nout = lr__topk_finish(&top);
    for (uint32_t d = 0, shared = (uint32_t)nout; nout < k && d < ndocs; d++)
        if (!among(out, shared, d)) {
            out[nout].doc = d;
            out[nout].sim = 0.0f;
            nout++;
        }

    /* Leave the scratch all zero for the next search: a block's acc is
     * all zero unless its bacc is not. */
    for (size_t b = 0; b < nb; b++)
        if (bacc[b] > 0.0f) {
            size_t lo = b << LR__SINDEX_BLOCK_SHIFT;
            size_t hi = lo + LR__SINDEX_BLOCK < ndocs ? lo + LR__SINDEX_BLOCK : ndocs;
            memset(acc + lo, 0, (hi - lo) * sizeof(*acc));
        }
    for (size_t i = 0; i < n; i++) {
        uint32_t r = idx->row_of[q[i].id];
        if (r)
            qrow[r - 1] = 0.0f;
    }
    return (int)nout;
}

/* ==== Dense index ====
 *
 * A flat scan of float rows reads 4 bytes a coordinate of every row per
 * query, and on this machine it runs at the memory's pace (100,000 rows of
 * 384: 154 MB, about 21 ms). So the search first screens the rows through
 * a copy at one byte a coordinate, then scores exactly only the rows the
 * screen cannot rule out; the result is the same as the flat scan's, to
 * the bit (the tests compare them).
 *
 * The screen. Each row x is taken as mu + y, mu the centre (the rows' mean
 * at the last lr__dindex_recentre, or zero), and y is quantised to
 * c = round(y / s), s = max|y_j| / 127, with rounding error e = y - s c.
 * The query q is quantised the same way to 16 bits, d = round(q / t), with
 * error f = q - t d. Then, exactly,
 *     x . q = mu . q + s t (c . d) + t (e . d) + y . f,
 * and mu . q is the same for every row, so rows compare by
 *     a = s t (c . d)   within   err = t |d| |e| + |y| |f| + g |x| |q|,
 * the last term bounding the float rounding of the exact score itself
 * (any order of summing dim products: g = dim u / (1 - dim u), u = 2^-24).
 * The k largest lower bounds a - err give L, and a row whose upper bound
 * a + err is below L has an exact score below k rows' and cannot be in
 * the top k; every other row is scored exactly (lr__dense_dot) and ranked
 * as the flat scan ranks it, ties to the lower row. |e|, |y| and |x| are
 * kept per row, rounded up; c . d is an exact integer sum (at most
 * dim * 127 * dmax < 2^31, dmax chosen so).
 * Centring matters when the rows share a large common part (embedding
 * models' vectors often do): the quantisation then spends its 8 bits on
 * what tells the rows apart. A row or query that is not finite is scored
 * exactly: its bounds are NaN, which never rules a row out.
 * Measured and not adopted (dense_bench, 100,000 rows of 384, the ratio
 * to the flat scan against this code's, median of 3 runs): the query
 * rounded to 8 bits too, so AVX2 multiplies 32 byte pairs an instruction:
 * 0.93 to 1.01 of the time, with 175 rows scored a query instead of 69
 * (the scan waits on the memory about as much as on its arithmetic);
 * fetching the rows 4, 8 or 16 ahead: within the noise. */

#define DENSE_ROW_BLOCK 256
#define DENSE_Q8 127.0
/* The float rounding of a sum of n products: n u / (1 - n u). */
#define DENSE_U (1.0 / 16777216.0)

static float round_up(double x)
{
    float f = (float)x;
    return (double)f >= x ? f : nextafterf(f, INFINITY);
}

/* Quantise row r against the current centre. */
static void dense_quantise(struct lr__dindex *idx, size_t r)
{
    const float *x = idx->m + r * idx->dim;
    int8_t *c = idx->m8 + r * idx->dim;
    struct lr__dquant *rq = &idx->rq[r];
    double mx = 0.0, nx = 0.0;
    for (size_t j = 0; j < idx->dim; j++) {
        double y = (double)x[j] - (idx->mu ? (double)idx->mu[j] : 0.0);
        mx = fabs(y) > mx ? fabs(y) : mx;
        nx += (double)x[j] * x[j];
    }
    if (!isfinite(mx) || !isfinite(nx)) {
        memset(c, 0, idx->dim);
        rq->scale = 0.0f;
        rq->err = rq->norm_c = rq->norm = NAN;
        return;
    }
    float s = (float)(mx / DENSE_Q8);
    double inv = s > 0.0f ? 1.0 / (double)s : 0.0, e2 = 0.0, y2 = 0.0;
    for (size_t j = 0; j < idx->dim; j++) {
        double y = (double)x[j] - (idx->mu ? (double)idx->mu[j] : 0.0);
        long v = lrint(y * inv);
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        c[j] = (int8_t)v;
        double e = y - (double)s * (double)v;
        e2 += e * e;
        y2 += y * y;
    }
    rq->scale = s;
    rq->err = round_up(sqrt(e2) * (1.0 + 1e-12));
    rq->norm_c = round_up(sqrt(y2) * (1.0 + 1e-12));
    rq->norm = round_up(sqrt(nx) * (1.0 + 1e-12));
}

void lr__dindex_free(struct lr__dindex *idx)
{
    if (!idx)
        return;
    free(idx->m);
    free(idx->m8);
    free(idx->rq);
    free(idx->mu);
    idx->m = NULL;
    idx->m8 = NULL;
    idx->rq = NULL;
    idx->mu = NULL;
    idx->n = idx->cap = 0;
}

int lr__dindex_reserve(struct lr__dindex *idx, size_t extra)
{
    if (idx->dim == 0)
        return LR_EINVAL;
    if (idx->n + extra <= idx->cap)
        return 0;
    size_t cap = idx->cap < 64 ? 64 : idx->cap + idx->cap / 2;
    if (cap < idx->n + extra)
        cap = idx->n + extra;
    if (cap > SIZE_MAX / sizeof(float) / idx->dim)
        return LR_ENOMEM;
    /* Each array keeps its contents if the next one cannot grow; cap
     * moves only when all three have. */
    float *m = realloc(idx->m, cap * idx->dim * sizeof(float));
    if (!m)
        return LR_ENOMEM;
    idx->m = m;
    int8_t *m8 = realloc(idx->m8, cap * idx->dim);
    if (!m8)
        return LR_ENOMEM;
    idx->m8 = m8;
    struct lr__dquant *rq = realloc(idx->rq, cap * sizeof(*rq));
    if (!rq)
        return LR_ENOMEM;
    idx->rq = rq;
    idx->cap = cap;
    return 0;
}

void lr__dindex_add(struct lr__dindex *idx, const float *v)
{
    memcpy(idx->m + idx->n * idx->dim, v, idx->dim * sizeof(float));
    dense_quantise(idx, idx->n);
    idx->n++;
}

void lr__dindex_load(struct lr__dindex *idx, const float *v)
{
    memcpy(idx->m + idx->n * idx->dim, v, idx->dim * sizeof(float));
    idx->n++;
}

void lr__dindex_recentre(struct lr__dindex *idx)
{
    if (idx->n == 0 || idx->dim == 0)
        return;
    double *sum = calloc(idx->dim, sizeof(*sum));
    float *mu = idx->mu ? idx->mu : malloc(idx->dim * sizeof(*mu));
    if (!sum || !mu) {
        /* No centre: the rows are quantised about zero. */
        free(sum);
        if (mu != idx->mu)
            free(mu);
        free(idx->mu);
        idx->mu = NULL;
        for (size_t r = 0; r < idx->n; r++)
            dense_quantise(idx, r);
        return;
    }
    for (size_t r = 0; r < idx->n; r++)
        for (size_t j = 0; j < idx->dim; j++)
            sum[j] += idx->m[r * idx->dim + j];
    int finite = 1;
    for (size_t j = 0; j < idx->dim; j++) {
        mu[j] = (float)(sum[j] / (double)idx->n);
        finite &= isfinite(mu[j]) != 0;
    }
    if (!finite)
        memset(mu, 0, idx->dim * sizeof(*mu));
    idx->mu = mu;
    for (size_t r = 0; r < idx->n; r++)
        dense_quantise(idx, r);
    free(sum);
}

/* c . d for n consecutive rows of c (dim bytes each) into out: exact
 * integer sums (see above). x86-64 multiplies and adds pairs of 16-bit
 * lanes in one instruction (SSE2 8 lanes, AVX2 16), which the compiler
 * does not find for 8-bit by 16-bit products; the search takes AVX2 where
 * the processor has it. */
typedef void dots_fn(const int8_t *c, const int16_t *d, size_t dim, size_t n, int32_t *out);

#ifndef __SSE2__
static void dots_plain(const int8_t *restrict c, const int16_t *restrict d, size_t dim, size_t n,
                       int32_t *restrict out)
{
    for (size_t r = 0; r < n; r++, c += dim) {
        int32_t s = 0;
        for (size_t j = 0; j < dim; j++)
            s += (int32_t)c[j] * d[j];
        out[r] = s;
    }
}
#else
/* A row's sum: the lanes of acc, then coordinates j .. dim one by one. */
static inline int32_t dots_end(__m128i acc, const int8_t *c, const int16_t *d, size_t j,
                               size_t dim)
{
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(1, 0, 3, 2)));
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(2, 3, 0, 1)));
    int32_t s = _mm_cvtsi128_si32(acc);
    for (; j < dim; j++)
        s += (int32_t)c[j] * d[j];
    return s;
}

static void dots_sse2(const int8_t *restrict c, const int16_t *restrict d, size_t dim, size_t n,
                      int32_t *restrict out)
{
    const __m128i zero = _mm_setzero_si128();
    for (size_t r = 0; r < n; r++, c += dim) {
        __m128i acc = _mm_setzero_si128();
        size_t j = 0;
        for (; j + 16 <= dim; j += 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(c + j));
            __m128i sign = _mm_cmpgt_epi8(zero, x);
            __m128i lo = _mm_unpacklo_epi8(x, sign), hi = _mm_unpackhi_epi8(x, sign);
            acc = _mm_add_epi32(acc,
                                _mm_madd_epi16(lo, _mm_loadu_si128((const __m128i *)(d + j))));
            acc = _mm_add_epi32(
                acc, _mm_madd_epi16(hi, _mm_loadu_si128((const __m128i *)(d + j + 8))));
        }
        out[r] = dots_end(acc, c, d, j, dim);
    }
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define DENSE_AVX2 1
__attribute__((target("avx2"))) static void dots_avx2(const int8_t *restrict c,
                                                      const int16_t *restrict d, size_t dim,
                                                      size_t n, int32_t *restrict out)
{
    for (size_t r = 0; r < n; r++, c += dim) {
        __m256i acc = _mm256_setzero_si256();
        size_t j = 0;
        for (; j + 16 <= dim; j += 16) {
            __m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(c + j)));
            acc = _mm256_add_epi32(
                acc, _mm256_madd_epi16(x, _mm256_loadu_si256((const __m256i *)(d + j))));
        }
        out[r] = dots_end(
            _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1)), c, d, j,
            dim);
    }
}
#endif

static int dense_portable;

void lr__dindex_portable(int on)
{
    dense_portable = on;
}

static dots_fn *dots_kernel(void)
{
#ifdef DENSE_AVX2
    if (!dense_portable && __builtin_cpu_supports("avx2"))
        return dots_avx2;
#endif
#ifdef __SSE2__
    return dots_sse2;
#else
    return dots_plain;
#endif
}

/* One query's screen: its quantisation, the heap of the k largest lower
 * bounds, and the rows not ruled out so far. */
struct dense_query {
    const float *q;
    int16_t *d;
    double t, td, qterm; /* t, t |d|, |f| and g |q| (err's query parts) */
    double fn;
    dots_fn *dots;
    double *lo; /* min-heap of lower bounds */
    size_t nlo, k;
    struct dense_cand {
        uint32_t row;
        double hi;
    } *cand;
    size_t ncand, cap;
};

static void dense_query_init(struct dense_query *dq, const float *q, size_t dim, int16_t *d,
                             double *lo, size_t k)
{
    /* dmax keeps dim * 127 * dmax below 2^31. */
    double dmax = floor(2147483647.0 / ((double)dim * DENSE_Q8));
    dmax = dmax > 32767.0 ? 32767.0 : dmax < 1.0 ? 1.0 : dmax;
    double mx = 0.0, q2 = 0.0, d2 = 0.0, f2 = 0.0;
    for (size_t j = 0; j < dim; j++) {
        mx = fabs((double)q[j]) > mx ? fabs((double)q[j]) : mx;
        q2 += (double)q[j] * q[j];
    }
    double t = mx / dmax;
    for (size_t j = 0; j < dim; j++) {
        long v = t > 0.0 && isfinite(t) ? lrint(q[j] / t) : 0;
        v = v > 32767 ? 32767 : v < -32767 ? -32767 : v;
        d[j] = (int16_t)v;
        double f = (double)q[j] - t * (double)v;
        d2 += (double)v * (double)v;
        f2 += f * f;
    }
    double g = (double)dim * DENSE_U / (1.0 - (double)dim * DENSE_U);
    dq->q = q;
    dq->d = d;
    dq->dots = dots_kernel();
    dq->t = t;
    dq->td = t * sqrt(d2);
    dq->fn = sqrt(f2);
    dq->qterm = g * sqrt(q2);
    dq->lo = lo;
    dq->nlo = 0;
    dq->k = k;
    dq->cand = NULL;
    dq->ncand = dq->cap = 0;
}

static void lo_push(struct dense_query *dq, double v)
{
    double *h = dq->lo;
    if (dq->nlo < dq->k) {
        size_t i = dq->nlo++;
        h[i] = v;
        while (i > 0 && h[(i - 1) / 2] > h[i]) {
            double x = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = x;
            i = (i - 1) / 2;
        }
        return;
    }
    if (!(v > h[0]))
        return;
    h[0] = v;
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < dq->nlo && h[l] < h[m])
            m = l;
        if (r < dq->nlo && h[r] < h[m])
            m = r;
        if (m == i)
            return;
        double x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
}

/* The k-th largest lower bound so far; -inf until there are k. */
static double lo_floor(const struct dense_query *dq)
{
    return dq->nlo == dq->k ? dq->lo[0] : -INFINITY;
}

/* Screen rows [r0, r1) for one query. */
static int dense_screen(const struct lr__dindex *idx, struct dense_query *dq, size_t r0,
                        size_t r1)
{
    int32_t dots[DENSE_ROW_BLOCK];
    dq->dots(idx->m8 + r0 * idx->dim, dq->d, idx->dim, r1 - r0, dots);
    double floor_lo = lo_floor(dq);
    for (size_t r = r0; r < r1; r++) {
        const struct lr__dquant *rq = &idx->rq[r];
        double a = (double)rq->scale * dq->t * (double)dots[r - r0];
        double err = dq->td * rq->err + rq->norm_c * dq->fn + rq->norm * dq->qterm;
        err = err * (1.0 + 1e-9) + 1e-12;
        double lo = a - err, hi = a + err;
        if (lo > floor_lo) { /* never for NaN */
            lo_push(dq, lo);
            floor_lo = lo_floor(dq);
        }
        if (hi < floor_lo)
            continue;
        if (dq->ncand == dq->cap) {
            size_t cap = dq->cap ? 2 * dq->cap : 256;
            struct dense_cand *c = realloc(dq->cand, cap * sizeof(*c));
            if (!c)
                return LR_ENOMEM;
            dq->cand = c;
            dq->cap = cap;
        }
        dq->cand[dq->ncand].row = (uint32_t)r;
        dq->cand[dq->ncand++].hi = hi;
    }
    return 0;
}

/* Score the rows the screen kept, exactly, into tops. */
static size_t dense_finish(const struct lr__dindex *idx, struct dense_query *dq,
                           struct lr__topk *tops)
{
    double floor_lo = lo_floor(dq);
    size_t n = 0;
    for (size_t i = 0; i < dq->ncand; i++) {
        if (dq->cand[i].hi < floor_lo)
            continue;
        uint32_t r = dq->cand[i].row;
        lr__topk_push(tops, r, lr__dense_dot(idx->m + (size_t)r * idx->dim, dq->q, idx->dim));
        n++;
    }
    return n;
}

size_t lr__dindex_knn_flat(const struct lr__dindex *idx, const float *q, size_t k,
                           struct lr__neighbor *out)
{
    struct lr__topk t;
    lr__topk_init(&t, out, k < idx->n ? k : idx->n);
    for (size_t r = 0; r < idx->n; r++)
        lr__topk_push(&t, (uint32_t)r, lr__dense_dot(idx->m + r * idx->dim, q, idx->dim));
    return lr__topk_finish(&t);
}

int lr__dindex_knn(const struct lr__dindex *idx, const float *q, size_t k,
                   struct lr__neighbor *out)
{
    size_t c = 0;
    int rc = lr__dindex_knn_batch(idx, q, 1, k, out, &c);
    return rc < 0 ? rc : (int)c;
}

int lr__dindex_knn_batch(const struct lr__dindex *idx, const float *qs, size_t nq, size_t k,
                         struct lr__neighbor *out, size_t *counts)
{
    return lr__dindex_knn_scored(idx, qs, nq, k, out, counts, NULL);
}

int lr__dindex_knn_scored(const struct lr__dindex *idx, const float *qs, size_t nq, size_t k,
                          struct lr__neighbor *out, size_t *counts, size_t *scored)
{
    size_t kk = k < idx->n ? k : idx->n;
    int rc = 0;

    for (size_t i = 0; i < nq; i++)
        counts[i] = 0;
    if (nq == 0 || kk == 0)
        return 0;
    struct lr__topk *tops = malloc(nq * sizeof(*tops));
    struct dense_query *dqs = calloc(nq, sizeof(*dqs));
    int16_t *d = malloc(nq * idx->dim * sizeof(*d));
    double *lo = malloc(nq * kk * sizeof(*lo));
    if (!tops || !dqs || !d || !lo) {
        rc = LR_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nq; i++) {
        lr__topk_init(&tops[i], out + i * k, kk);
        dense_query_init(&dqs[i], qs + i * idx->dim, idx->dim, d + i * idx->dim, lo + i * kk,
                         kk);
    }
    /* Rows in blocks that stay in cache while every query passes over them. */
    for (size_t r0 = 0; r0 < idx->n && rc == 0; r0 += DENSE_ROW_BLOCK) {
        size_t r1 = r0 + DENSE_ROW_BLOCK < idx->n ? r0 + DENSE_ROW_BLOCK : idx->n;
        for (size_t i = 0; i < nq && rc == 0; i++)
            rc = dense_screen(idx, &dqs[i], r0, r1);
    }
    for (size_t i = 0; i < nq && rc == 0; i++) {
        size_t n = dense_finish(idx, &dqs[i], &tops[i]);
        if (scored)
            *scored += n;
        counts[i] = lr__topk_finish(&tops[i]);
    }
out:
    if (dqs)
        for (size_t i = 0; i < nq; i++)
            free(dqs[i].cand);
    free(tops);
    free(dqs);
    free(d);
    free(lo);
    return rc;
}
