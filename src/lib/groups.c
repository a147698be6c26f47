/* groups.c -- spherical k-means over the history's vectors and per-group
 * per-model totals (see groups.h for what they are for).
 *
 * The fit: a sample of at most LR__GROUPS_SAMPLE records spread evenly over
 * the store, seeded by k-means++ (with 1 - cosine as the squared distance,
 * which it is, halved, between unit vectors) from a fixed seed, then at most
 * LR__GROUPS_ROUNDS rounds of assigning the sample to the most similar
 * centroid and moving each centroid to its members' normalised mean (a
 * sparse centroid keeps its strongest LR__GROUPS_CENTROID_FEATURES
 * features). Then every record is assigned once. A record whose vector
 * shares no feature with any centroid is in no group (LR__GROUPS_NONE): it
 * moves no centroid in a round, and is in no group's totals. A group that
 * ends empty
 * keeps its number and has no totals; the predictor never meets it, since
 * no record is in it.
 *
 * The similarity scans of the seeding and the assignments (of the sample
 * each round, of every record at the end) are split over `threads` threads
 * by contiguous chunks (parallel.h): each item's result depends on that
 * item and the centroids only, and the count of moved items is an integer
 * sum, so the groups are the same whatever the thread count. The sums that
 * depend on order (the seeding's total, the centroids' means) stay on the
 * calling thread.
 *
 * Threads: see groups.h.
 */
#include "groups.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "llmroute.h"
#include "parallel.h"
#include "store.h"

/* Items (sample points or records) below which a chunk is not worth a
 * thread. */
#define CHUNK_MIN 512

/* ==== Shared ==== */

size_t lr__groups_count_for(size_t n)
{
    if (n < LR__GROUPS_MIN_RECORDS)
        return 0;
    size_t c = n / LR__GROUPS_RECORDS_EACH;
    return c > LR__GROUPS_MAX ? LR__GROUPS_MAX : c;
}

void lr__groups_free(struct lr__groups *g)
{
    if (!g)
        return;
    free(g->of);
    free(g->stats);
    free(g->cfeat);
    free(g->chash);
    free(g->cdense);
    memset(g, 0, sizeof(*g));
}

int lr__groups_reserve(struct lr__groups *g, size_t records, size_t models)
{
    if (g->n == 0)
        return 0;
    if (records > g->cap) {
        size_t cap = g->cap + g->cap / 2;
        if (cap < records)
            cap = records;
        uint32_t *of = realloc(g->of, cap * sizeof(*of));
        if (!of)
            return LR_ENOMEM;
        g->of = of;
        g->cap = cap;
    }
    if (models > g->models_cap) {
        struct lr__group_stats *s = realloc(g->stats, models * g->n * sizeof(*s));
        if (!s)
            return LR_ENOMEM;
        memset(s + g->models_cap * g->n, 0, (models - g->models_cap) * g->n * sizeof(*s));
        g->stats = s;
        g->models_cap = models;
    }
    return 0;
}

void lr__groups_add(struct lr__groups *g, const struct lr__hist *h, uint32_t rec, uint32_t group)
{
    size_t no;
    if (g->n == 0)
        return;
    g->of[rec] = group;
    if (group == LR__GROUPS_NONE)
        return;
    const struct lr__outcome *o = lr__hist_outcomes(h, rec, &no);
    for (size_t x = 0; x < no; x++) {
        struct lr__group_stats *s = &g->stats[(size_t)o[x].model * g->n + group];
        s->n += 1.0;
        s->sum_correct += o[x].correctness;
        s->sum_output += o[x].output_tokens;
    }
}

/* Every record's group and outcomes into the totals (of[] filled). */
static int totals_build(struct lr__groups *g, const struct lr__hist *h)
{
    g->models_cap = h->models.cap ? h->models.cap : 1;
    g->stats = calloc(g->models_cap * g->n, sizeof(*g->stats));
    if (!g->stats)
        return LR_ENOMEM;
    for (size_t i = 0; i < h->n; i++)
        lr__groups_add(g, h, (uint32_t)i, g->of[i]);
    return 0;
}

/* xorshift64: the seeding's only randomness, from a fixed seed. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One scan of the seeding: best[i] = the larger of best[i] and point i's
 * similarity to `pick` (just the similarity when `first`). */
struct seed_scan {
    double (*sim)(const void *, size_t, size_t);
    const void *ctx;
    double *best;
    size_t pick;
    int first;
};

static void seed_scan_chunk(void *vjob, size_t begin, size_t end, unsigned chunk)
{
    const struct seed_scan *j = vjob;
    (void)chunk;
    for (size_t i = begin; i < end; i++) {
        double s = j->sim(j->ctx, i, j->pick);
        if (j->first || s > j->best[i])
            j->best[i] = s;
    }
}

/* A sample point's weight in the seeding: how far it is from the nearest
 * seed, 0 for a point that cannot seed a group. */
static double seed_weight(const double *best, const unsigned char *empty, size_t i)
{
    return (empty && empty[i]) || !(best[i] < 1.0) ? 0.0 : 1.0 - best[i];
}

/* k-means++ seeding over the sample, through a similarity between sample
 * points; writes up to c seeds (sample positions), returns how many: fewer
 * when every point already coincides with a seed. Points flagged in
 * empty[] (NULL: none) are never seeds: a sparse record without a feature
 * is like no point, itself included, so it was drawn first of all (the
 * farthest from every seed) and its group, with a centroid of nothing,
 * stayed empty: a store whose records were a third of them such lost
 * about a third of its groups. best[] is scratch. The scans run in
 * `chunks` chunks. */
static size_t seed_plusplus(size_t ns, size_t c, double (*sim)(const void *, size_t, size_t),
                            const void *ctx, const unsigned char *empty, size_t *seeds,
                            double *best, unsigned chunks)
{
    uint64_t rs = 0x9E3779B97F4A7C15ull;
    size_t n_seeds = 0, first = (size_t)(next_rand(&rs) % ns), x = 0;
    struct seed_scan scan = {sim, ctx, best, 0, 1};
    /* The drawn point, or the next one that can seed, in a cycle. */
    while (empty && x < ns && empty[(first + x) % ns])
        x++;
    if (x == ns)
        return 0;
    seeds[n_seeds++] = (first + x) % ns;
    scan.pick = seeds[0];
    lr__parallel_run(ns, chunks, seed_scan_chunk, &scan);
    scan.first = 0;
    while (n_seeds < c) {
        double total = 0.0;
        for (size_t i = 0; i < ns; i++)
            total += seed_weight(best, empty, i);
        if (!(total > 1e-9))
            break;
        double r = (double)(next_rand(&rs) >> 11) / 9007199254740992.0 * total;
        size_t pick = ns;
        for (size_t i = 0; i < ns; i++) {
            double d = seed_weight(best, empty, i);
            if (d > 0.0)
                pick = i;
            if (r < d)
                break;
            r -= d;
        }
        if (pick == ns)
            break;
        seeds[n_seeds++] = pick;
        scan.pick = pick;
        lr__parallel_run(ns, chunks, seed_scan_chunk, &scan);
    }
    return n_seeds;
}

/* Sample position i is record sample_rec(i): evenly spread, in order. */
static size_t sample_rec(size_t i, size_t ns, size_t n)
{
    return ns == n ? i : (size_t)((double)i * (double)n / (double)ns);
}

/* One assignment pass: assign[i] = the nearest group to record
 * sample_rec(i, ns, n), for i in [0, ns) (ns == n: every record). With
 * `count`, moved[chunk] counts the items whose group changed. */
struct assign_pass {
    const struct lr__groups *g;
    const struct lr__feat *feats; /* sparse */
    const size_t *off;
    const float *rows; /* dense */
    size_t dim;
    size_t ns, n;
    uint32_t *assign;
    int count;
    size_t moved[LR__PARALLEL_MAX_THREADS];
};

static size_t assign_run(struct assign_pass *p, unsigned chunks, lr__parallel_fn fn)
{
    size_t moved = 0;
    memset(p->moved, 0, sizeof(p->moved));
    lr__parallel_run(p->ns, chunks, fn, p);
    for (unsigned c = 0; c < LR__PARALLEL_MAX_THREADS; c++)
        moved += p->moved[c];
    return moved;
}

/* ==== Sparse ==== */

struct sparse_ctx {
    const struct lr__feat *feats;
    const size_t *off;
    size_t ns, n;
};

static double sparse_dot(const struct lr__feat *a, size_t na, const struct lr__feat *b, size_t nb)
{
    double s = 0.0;
    size_t i = 0, j = 0;
    while (i < na && j < nb) {
        if (a[i].id < b[j].id)
            i++;
        else if (a[i].id > b[j].id)
            j++;
        else
            s += (double)a[i++].w * b[j++].w;
    }
    return s;
}

static double sparse_sim(const void *vctx, size_t a, size_t b)
{
    const struct sparse_ctx *x = vctx;
    size_t ra = sample_rec(a, x->ns, x->n), rb = sample_rec(b, x->ns, x->n);
    return sparse_dot(x->feats + x->off[ra], x->off[ra + 1] - x->off[ra], x->feats + x->off[rb],
                      x->off[rb + 1] - x->off[rb]);
}

static int cmp_cfeat(const void *pa, const void *pb)
{
    const struct lr__group_feat *a = pa, *b = pb;
    if (a->feat != b->feat)
        return a->feat < b->feat ? -1 : 1;
    return (a->group > b->group) - (a->group < b->group);
}

static uint32_t chash_slot(uint32_t feat, uint32_t mask)
{
    return (feat * 0x9E3779B1u >> 7) & mask;
}

/* Index the sorted cfeat by feature into chash (room for it allocated). */
static void chash_fill(struct lr__groups *g)
{
    memset(g->chash, 0, ((size_t)g->chash_mask + 1) * sizeof(*g->chash));
    for (size_t p = 0; p < g->n_cfeat; p++) {
        if (p > 0 && g->cfeat[p].feat == g->cfeat[p - 1].feat)
            continue;
        uint32_t s = chash_slot(g->cfeat[p].feat, g->chash_mask);
        while (g->chash[s])
            s = (s + 1) & g->chash_mask;
        g->chash[s] = (uint32_t)p + 1;
    }
}

/* The best group for a sparse vector: scores[] (n entries) is scratch.
 * The sums run in the vector's order, then cfeat's. */
static uint32_t nearest_sparse(const struct lr__groups *g, const struct lr__feat *v, size_t n,
                               double *scores)
{
    for (uint32_t c = 0; c < g->n; c++)
        scores[c] = 0.0;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = chash_slot(v[i].id, g->chash_mask), e;
        while ((e = g->chash[s]) != 0 && g->cfeat[e - 1].feat != v[i].id)
            s = (s + 1) & g->chash_mask;
        if (!e)
            continue;
        for (size_t p = e - 1; p < g->n_cfeat && g->cfeat[p].feat == v[i].id; p++)
            scores[g->cfeat[p].group] += (double)v[i].w * g->cfeat[p].w;
    }
    /* A vector that shares no feature with any centroid is like none of
     * them: it joins no group, rather than the first one by default. */
    uint32_t best = LR__GROUPS_NONE;
    double bs = 0.0;
    for (uint32_t c = 0; c < g->n; c++)
        if (scores[c] > bs) {
            bs = scores[c];
            best = c;
        }
    return best;
}

uint32_t lr__groups_nearest_sparse(const struct lr__groups *g, const struct lr__feat *v, size_t n)
{
    double scores[LR__GROUPS_MAX];
    if (g->n == 0 || g->n > LR__GROUPS_MAX)
        return 0;
    return nearest_sparse(g, v, n, scores);
}

static void assign_sparse_chunk(void *vpass, size_t begin, size_t end, unsigned chunk)
{
    struct assign_pass *p = vpass;
    double scores[LR__GROUPS_MAX];
    size_t moved = 0;
    for (size_t i = begin; i < end; i++) {
        size_t r = sample_rec(i, p->ns, p->n);
        uint32_t a = nearest_sparse(p->g, p->feats + p->off[r], p->off[r + 1] - p->off[r], scores);
        if (p->count)
            moved += a != p->assign[i];
        p->assign[i] = a;
    }
    p->moved[chunk] = moved;
}

/* Quickselect: the `keep` heaviest of a[0..n) into a[0..keep), in no
 * particular order (three-way partitions, so equal weights cannot stall it). */
static void select_heaviest(struct lr__feat *a, size_t n, size_t keep)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        float pivot = a[lo + (hi - lo) / 2].w;
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            struct lr__feat t = a[i];
            if (t.w > pivot) {
                a[i++] = a[lt];
                a[lt++] = t;
            } else if (t.w < pivot) {
                a[i] = a[--gt];
                a[gt] = t;
            } else {
                i++;
            }
        }
        /* a[lo..lt) > pivot, a[lt..gt) == pivot, a[gt..hi) < pivot */
        if (keep < lt)
            hi = lt;
        else if (keep > gt)
            lo = gt;
        else
            return;
    }
}

static int cmp_feat_id(const void *pa, const void *pb)
{
    const struct lr__feat *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

/* Centroid c from its members' sum held in acc (touched features listed in
 * tl[0..nt)); acc is zeroed again. Writes its features to out, returns how
 * many. */
static size_t centroid_from_sum(float *acc, struct lr__feat *tl, size_t nt, struct lr__feat *out)
{
    for (size_t i = 0; i < nt; i++) {
        tl[i].w = acc[tl[i].id];
        acc[tl[i].id] = 0.0f;
    }
    size_t keep = nt < LR__GROUPS_CENTROID_FEATURES ? nt : LR__GROUPS_CENTROID_FEATURES;
    select_heaviest(tl, nt, keep);
    double norm = 0.0;
    for (size_t i = 0; i < keep; i++)
        norm += (double)tl[i].w * tl[i].w;
    if (!(norm > 0.0))
        return 0;
    float inv = (float)(1.0 / sqrt(norm));
    for (size_t i = 0; i < keep; i++) {
        out[i].id = tl[i].id;
        out[i].w = tl[i].w * inv;
    }
    qsort(out, keep, sizeof(*out), cmp_feat_id);
    return keep;
}

int lr__groups_build_sparse(struct lr__groups *g, const struct lr__hist *h,
                            const struct lr__feat *feats, const size_t *off, size_t n_groups,
                            unsigned threads)
{
    size_t n = h->n, ns = n < LR__GROUPS_SAMPLE ? n : LR__GROUPS_SAMPLE;
    size_t c = n_groups < ns ? n_groups : ns;
    size_t *seeds = NULL, *member_off = NULL, *members = NULL;
    double *best = NULL;
    uint32_t *assign = NULL;
    float *acc = NULL;
    struct lr__feat *tl = NULL, *cent = NULL;
    size_t *cent_n = NULL;
    unsigned char *empty = NULL;
    int rc = LR_ENOMEM;

    memset(g, 0, sizeof(*g));
    if (c < 2 || c > LR__GROUPS_MAX)
        return 0;
    size_t tl_cap = ns * LR__TFIDF_MAX_FEATURES;
    seeds = malloc(c * sizeof(*seeds));
    best = malloc(ns * sizeof(*best));
    empty = malloc(ns);
    assign = malloc(ns * sizeof(*assign));
    member_off = malloc((c + 1) * sizeof(*member_off));
    members = malloc(ns * sizeof(*members));
    acc = lr__space_alloc(sizeof(*acc));
    tl = malloc(tl_cap * sizeof(*tl));
    cent = malloc(c * LR__GROUPS_CENTROID_FEATURES * sizeof(*cent));
    cent_n = calloc(c, sizeof(*cent_n));
    g->cfeat = malloc(c * LR__GROUPS_CENTROID_FEATURES * sizeof(*g->cfeat));
    for (g->chash_mask = 1; g->chash_mask < 2 * c * LR__GROUPS_CENTROID_FEATURES;)
        g->chash_mask *= 2;
    g->chash = malloc((size_t)g->chash_mask * sizeof(*g->chash));
    g->chash_mask--;
    g->of = malloc((n ? n : 1) * sizeof(*g->of));
    if (!seeds || !best || !empty || !assign || !member_off || !members || !acc || !tl || !cent ||
        !cent_n || !g->cfeat || !g->chash || !g->of)
        goto out;
    g->cap = n;

    struct sparse_ctx x = {feats, off, ns, n};
    unsigned sample_chunks = lr__parallel_chunks(ns, threads, CHUNK_MIN);
    for (size_t i = 0; i < ns; i++) {
        size_t r = sample_rec(i, ns, n);
        empty[i] = off[r + 1] == off[r];
    }
    c = seed_plusplus(ns, c, sparse_sim, &x, empty, seeds, best, sample_chunks);
    if (c < 2) {
        rc = 0;
        goto out;
    }
    for (size_t j = 0; j < c; j++) {
        size_t r = sample_rec(seeds[j], ns, n), nf = off[r + 1] - off[r];
        if (nf > LR__GROUPS_CENTROID_FEATURES)
            nf = LR__GROUPS_CENTROID_FEATURES; /* cannot happen: records keep fewer */
        memcpy(cent + j * LR__GROUPS_CENTROID_FEATURES, feats + off[r], nf * sizeof(*cent));
        cent_n[j] = nf;
    }
    g->n = (uint32_t)c;
    for (size_t i = 0; i < ns; i++)
        assign[i] = UINT32_MAX;

    for (int round = 0; round <= LR__GROUPS_ROUNDS; round++) {
        /* The centroids as a lookup table. */
        g->n_cfeat = 0;
        for (size_t j = 0; j < c; j++)
            for (size_t f = 0; f < cent_n[j]; f++) {
                const struct lr__feat *e = &cent[j * LR__GROUPS_CENTROID_FEATURES + f];
                g->cfeat[g->n_cfeat++] = (struct lr__group_feat){e->id, (uint32_t)j, e->w};
            }
        qsort(g->cfeat, g->n_cfeat, sizeof(*g->cfeat), cmp_cfeat);
        chash_fill(g);
        if (round == LR__GROUPS_ROUNDS)
            break;
        struct assign_pass pass = {.g = g, .feats = feats, .off = off, .ns = ns, .n = n,
                                   .assign = assign, .count = 1};
        if (assign_run(&pass, sample_chunks, assign_sparse_chunk) == 0)
            break;
        /* Members by group, then each group's sum and new centroid. */
        memset(member_off, 0, (c + 1) * sizeof(*member_off));
        for (size_t i = 0; i < ns; i++)
            if (assign[i] != LR__GROUPS_NONE)
                member_off[assign[i] + 1]++;
        for (size_t j = 0; j < c; j++)
            member_off[j + 1] += member_off[j];
        for (size_t i = 0; i < ns; i++)
            if (assign[i] != LR__GROUPS_NONE)
                members[member_off[assign[i]]++] = i;
        for (size_t j = c; j > 0; j--)
            member_off[j] = member_off[j - 1];
        member_off[0] = 0;
        for (size_t j = 0; j < c; j++) {
            size_t nt = 0;
            if (member_off[j + 1] == member_off[j])
                continue; /* empty: keeps its centroid */
            for (size_t p = member_off[j]; p < member_off[j + 1]; p++) {
                size_t r = sample_rec(members[p], ns, n);
                for (size_t f = off[r]; f < off[r + 1]; f++) {
                    if (acc[feats[f].id] == 0.0f)
                        tl[nt++].id = feats[f].id;
                    acc[feats[f].id] += feats[f].w;
                }
            }
            size_t nk = centroid_from_sum(acc, tl, nt, cent + j * LR__GROUPS_CENTROID_FEATURES);
            if (nk)
                cent_n[j] = nk;
        }
    }
    struct assign_pass all = {.g = g, .feats = feats, .off = off, .ns = n, .n = n, .assign = g->of};
    assign_run(&all, lr__parallel_chunks(n, threads, CHUNK_MIN), assign_sparse_chunk);
    rc = totals_build(g, h);
out:
    if (rc != 0 || g->n < 2)
        lr__groups_free(g);
    free(seeds);
    free(best);
    free(empty);
    free(assign);
    free(member_off);
    free(members);
    lr__space_free(acc, sizeof(*acc));
    free(tl);
    free(cent);
    free(cent_n);
    return rc;
}

/* ==== Dense ==== */

struct dense_ctx {
    const float *rows;
    size_t dim, ns, n;
};

static double dense_sim(const void *vctx, size_t a, size_t b)
{
    const struct dense_ctx *x = vctx;
    return lr__dense_dot(x->rows + sample_rec(a, x->ns, x->n) * x->dim,
                     x->rows + sample_rec(b, x->ns, x->n) * x->dim, x->dim);
}

uint32_t lr__groups_nearest_dense(const struct lr__groups *g, const float *v)
{
    uint32_t best = 0;
    float bs = -INFINITY;
    for (uint32_t c = 0; c < g->n; c++) {
        float s = lr__dense_dot(g->cdense + (size_t)c * g->dim, v, g->dim);
        if (s > bs) {
            bs = s;
            best = c;
        }
    }
    return best;
}

static void assign_dense_chunk(void *vpass, size_t begin, size_t end, unsigned chunk)
{
    struct assign_pass *p = vpass;
    size_t moved = 0;
    for (size_t i = begin; i < end; i++) {
        uint32_t a = lr__groups_nearest_dense(p->g, p->rows + sample_rec(i, p->ns, p->n) * p->dim);
        if (p->count)
            moved += a != p->assign[i];
        p->assign[i] = a;
    }
    p->moved[chunk] = moved;
}

int lr__groups_build_dense(struct lr__groups *g, const struct lr__hist *h, const float *rows,
                           size_t dim, size_t n_groups, unsigned threads)
{
    size_t n = h->n, ns = n < LR__GROUPS_SAMPLE ? n : LR__GROUPS_SAMPLE;
    size_t c = n_groups < ns ? n_groups : ns;
    size_t *seeds = NULL, *count = NULL;
    double *best = NULL, *sum = NULL;
    uint32_t *assign = NULL;
    int rc = LR_ENOMEM;

    memset(g, 0, sizeof(*g));
    if (c < 2 || c > LR__GROUPS_MAX || dim == 0)
        return 0;
    seeds = malloc(c * sizeof(*seeds));
    best = malloc(ns * sizeof(*best));
    assign = malloc(ns * sizeof(*assign));
    count = malloc(c * sizeof(*count));
    sum = malloc(c * dim * sizeof(*sum));
    g->cdense = malloc(c * dim * sizeof(*g->cdense));
    g->of = malloc(n * sizeof(*g->of));
    if (!seeds || !best || !assign || !count || !sum || !g->cdense || !g->of)
        goto out;
    g->cap = n;
    g->dim = dim;

    struct dense_ctx x = {rows, dim, ns, n};
    unsigned sample_chunks = lr__parallel_chunks(ns, threads, CHUNK_MIN);
    c = seed_plusplus(ns, c, dense_sim, &x, NULL, seeds, best, sample_chunks);
    if (c < 2) {
        rc = 0;
        goto out;
    }
    for (size_t j = 0; j < c; j++)
        memcpy(g->cdense + j * dim, rows + sample_rec(seeds[j], ns, n) * dim, dim * sizeof(float));
    g->n = (uint32_t)c;
    for (size_t i = 0; i < ns; i++)
        assign[i] = UINT32_MAX;
    for (int round = 0; round < LR__GROUPS_ROUNDS; round++) {
        struct assign_pass pass = {.g = g, .rows = rows, .dim = dim, .ns = ns, .n = n,
                                   .assign = assign, .count = 1};
        if (assign_run(&pass, sample_chunks, assign_dense_chunk) == 0)
            break;
        memset(count, 0, c * sizeof(*count));
        memset(sum, 0, c * dim * sizeof(*sum));
        for (size_t i = 0; i < ns; i++) {
            const float *r = rows + sample_rec(i, ns, n) * dim;
            double *s = sum + (size_t)assign[i] * dim;
            count[assign[i]]++;
            for (size_t d = 0; d < dim; d++)
                s[d] += r[d];
        }
        for (size_t j = 0; j < c; j++) {
            double norm = 0.0;
            if (count[j] == 0)
                continue; /* empty: keeps its centroid */
            for (size_t d = 0; d < dim; d++)
                norm += sum[j * dim + d] * sum[j * dim + d];
            if (!(norm > 0.0))
                continue;
            double inv = 1.0 / sqrt(norm);
            for (size_t d = 0; d < dim; d++)
                g->cdense[j * dim + d] = (float)(sum[j * dim + d] * inv);
        }
    }
    struct assign_pass all = {.g = g, .rows = rows, .dim = dim, .ns = n, .n = n, .assign = g->of};
    assign_run(&all, lr__parallel_chunks(n, threads, CHUNK_MIN), assign_dense_chunk);
    rc = totals_build(g, h);
out:
    if (rc != 0 || g->n < 2)
        lr__groups_free(g);
    free(seeds);
    free(best);
    free(assign);
    free(count);
    free(sum);
    return rc;
}
