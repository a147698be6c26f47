/* embed.c -- the built-in "tfidf-v1" text embedder (see embed.h).
 *
 * Tokenisation: ASCII letters are lowercased; ASCII letters, digits, '_' and
 * every byte >= 0x80 are word characters, so UTF-8 text is kept intact and
 * character n-grams are cut at code-point boundaries. Each word yields a
 * unigram feature, a bigram feature with the previous word, and the
 * character 3-grams of "<word>". Feature ids are 64-bit FNV-1a hashes,
 * finalised and cut to LR__TFIDF_BITS bits, words in the lower half of the
 * space and 3-grams in the upper half; each kind has its own seed.
 *
 * Why 3-grams only, at 0.3 of a word's weight: measured by leave-one-out on
 * the train split of the development data (bench/predict_eval.c --tune),
 * 3-5-grams at full weight were the worst choice for both quality (Brier)
 * and output length (they pull queries toward other tasks' prompts that
 * share letter sequences); 3-grams at 0.3 matched the best Brier within
 * 0.0003 with half the features of 3-5-grams, which keeps embedding fast.
 *
 * Threads: no shared state; a struct lr__terms is one caller's scratch.
 */
#include "embed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llmroute.h"

/* ==== Hashing ==== */

#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

enum { KIND_UNIGRAM = 1, KIND_BIGRAM = 2, KIND_CHARGRAM = 3 };

static uint64_t fnv_bytes(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* splitmix64's finaliser: spreads FNV's weak high bits. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* Word features take the lower half of the id space, character n-grams the
 * upper half, so weighting can tell them apart. */
static uint32_t feature_of(uint64_t h, uint64_t kind)
{
    uint32_t f = (uint32_t)(mix64(h ^ (kind * 0x9e3779b97f4a7c15ull)) >> (65 - LR__TFIDF_BITS));
    return kind == KIND_CHARGRAM ? f | LR__TFIDF_CHAR_BIT : f;
}

/* ==== Counting ==== */

void lr__terms_init(struct lr__terms *t)
{
    memset(t, 0, sizeof(*t));
}

void lr__terms_free(struct lr__terms *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t->list);
    free(t->cand);
    memset(t, 0, sizeof(*t));
}

/* Make room for a text of len bytes: at most 4 features per byte plus a few,
 * so a table of twice that never fills beyond half. */
static int terms_reserve(struct lr__terms *t, size_t len)
{
    size_t need = 2 * (4 * len + 8), cap = 256;
    while (cap < need)
        cap <<= 1;
    if (cap > t->cap) {
        struct lr__term_slot *s = calloc(cap, sizeof(*s));
        uint32_t *l = malloc(cap / 2 * sizeof(*l));
        struct lr__feat *f = malloc(cap / 2 * sizeof(*f));
        if (!s || !l || !f) {
            free(s);
            free(l);
            free(f);
            return LR_ENOMEM;
        }
        free(t->slots);
        free(t->list);
        free(t->cand);
        t->slots = s;
        t->list = l;
        t->cand = f;
        t->cap = cap;
    } else {
        /* Clear only what the previous text used. */
        for (size_t i = 0; i < t->n; i++)
            t->slots[t->list[i]].key = 0;
    }
    t->n = 0;
    return 0;
}

static void terms_add(struct lr__terms *t, uint32_t feature)
{
    uint32_t key = feature + 1;
    size_t mask = t->cap - 1;
    /* Feature ids are already well-mixed hash bits. */
    size_t i = (size_t)feature & mask;
    for (;;) {
        struct lr__term_slot *sl = &t->slots[i];
        if (sl->key == key) {
            if (sl->count < UINT32_MAX)
                sl->count++;
            return;
        }
        if (sl->key == 0) {
            sl->key = key;
            sl->count = 1;
            t->list[t->n++] = (uint32_t)i;
            return;
        }
        i = (i + 1) & mask;
    }
}

static int is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c >= 0x80;
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Character 3-grams of "<word>", cut at UTF-8 code-point starts. */
static void add_chargrams(struct lr__terms *t, const unsigned char *w, size_t n)
{
    unsigned char buf[LR__TFIDF_MAX_WORD + 2];
    size_t starts[LR__TFIDF_MAX_WORD + 3];
    size_t len = 0, ncp = 0;

    buf[len++] = '<';
    memcpy(buf + len, w, n);
    len += n;
    buf[len++] = '>';
    for (size_t i = 0; i < len; i++)
        if ((buf[i] & 0xC0) != 0x80)
            starts[ncp++] = i;
    starts[ncp] = len; /* end sentinel */
    for (size_t s = 0; s + 3 <= ncp; s++) {
        size_t a = starts[s], len3 = starts[s + 3] - a;
        uint64_t h;
        if (len3 == 3) {
            /* Three single-byte characters, the common case: pack them. */
            h = (uint64_t)buf[a] | (uint64_t)buf[a + 1] << 8 | (uint64_t)buf[a + 2] << 16;
        } else {
            h = fnv_bytes(FNV_OFFSET, buf + a, len3);
        }
        terms_add(t, feature_of(h, KIND_CHARGRAM));
    }
}

int lr__terms_count(struct lr__terms *t, const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    unsigned char word[LR__TFIDF_MAX_WORD];
    uint64_t prev = 0;
    int have_prev = 0;
    size_t i = 0;
    int rc;

    if (len > LR__TFIDF_MAX_TEXT)
        len = LR__TFIDF_MAX_TEXT;
    if ((rc = terms_reserve(t, len)) != 0)
        return rc;
    if (!p)
        return 0;
    while (i < len) {
        while (i < len && !is_word_byte(p[i]))
            i++;
        if (i >= len)
            break;
        size_t n = 0;
        uint64_t h = FNV_OFFSET;
        while (i < len && is_word_byte(p[i])) {
            unsigned char c = lower(p[i++]);
            h = fnv_bytes(h, &c, 1);
            if (n < sizeof(word))
                word[n] = c;
            n++;
        }
        terms_add(t, feature_of(h, KIND_UNIGRAM));
        if (have_prev)
            terms_add(t, feature_of(prev * 31 + h, KIND_BIGRAM));
        prev = h;
        have_prev = 1;
        if (n <= LR__TFIDF_MAX_WORD)
            add_chargrams(t, word, n);
    }
    return 0;
}

/* ==== Weighting ==== */

double lr__tfidf_idf(uint32_t df, uint32_t ndocs)
{
    double d = (double)df, n = (double)ndocs;
    if (d > n)
        n = d; /* a table counted over more documents than claimed */
    return log(1.0 + (n - d + 0.5) / (d + 0.5));
}

/* 1 + ln(tf), from a table for the usual small counts. */
static float sublinear_tf(uint32_t tf)
{
    static const float table[16] = {
        0.0f,         1.0f,         1.69314718f, 2.09861229f, 2.38629436f, 2.60943791f,
        2.79175947f,  2.94591015f,  3.07944154f, 3.19722458f, 3.30258509f, 3.39789527f,
        3.48490665f,  3.56494936f,  3.63905733f, 3.70805020f};
    return tf < 16 ? table[tf] : 1.0f + logf((float)tf);
}

/* a ranks before b: heavier first, then lower id. */
static int stronger(const struct lr__feat *a, const struct lr__feat *b)
{
    return a->w > b->w || (a->w == b->w && a->id < b->id);
}

static void swap_feat(struct lr__feat *a, struct lr__feat *b)
{
    struct lr__feat x = *a;
    *a = *b;
    *b = x;
}

/* Partition v[0..n) so that its k strongest come first (quickselect with a
 * median-of-three pivot; the order within each side is unspecified). */
static void select_strongest(struct lr__feat *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* the k-th boundary lies in [lo, hi) */
    while (hi - lo > 1 && k > lo && k < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (stronger(&v[hi - 1], &v[lo]))
            swap_feat(&v[hi - 1], &v[lo]);
        if (stronger(&v[mid], &v[lo]))
            swap_feat(&v[mid], &v[lo]);
        if (stronger(&v[hi - 1], &v[mid]))
            swap_feat(&v[hi - 1], &v[mid]);
        struct lr__feat pivot = v[mid]; /* median of three */
        swap_feat(&v[mid], &v[hi - 1]);
        size_t store = lo;
        for (size_t i = lo; i < hi - 1; i++)
            if (stronger(&v[i], &pivot))
                swap_feat(&v[i], &v[store++]);
        swap_feat(&v[store], &v[hi - 1]);
        if (store == k)
            return;
        if (store < k)
            lo = store + 1;
        else
            hi = store;
    }
}

/* Sort by feature id: a shell sort, since vectors are short and qsort's
 * indirect comparisons cost more than the sort itself. */
static void sort_by_id(struct lr__feat *v, size_t n)
{
    static const size_t gaps[] = {57, 23, 10, 4, 1};
    for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
        size_t gap = gaps[g];
        for (size_t i = gap; i < n; i++) {
            struct lr__feat x = v[i];
            size_t j = i;
            while (j >= gap && v[j - gap].id > x.id) {
                v[j] = v[j - gap];
                j -= gap;
            }
            v[j] = x;
        }
    }
}

size_t lr__tfidf_vector(struct lr__terms *t, const uint32_t *df, uint32_t ndocs, uint32_t self,
                        size_t max_features, struct lr__feat *out)
{
    struct lr__feat *cand = t->cand;
    size_t n = 0, kept;
    double norm = 0.0;

    if (max_features == 0 || t->n == 0)
        return 0;
    /* ln((N + 1) / (d + 0.5)) for the small d most features have. */
    float n1 = (float)(ndocs + self) + 1.0f, small_idf[32];
    for (uint32_t d = 0; d < 32; d++)
        small_idf[d] = n1 > (float)d + 0.5f ? logf(n1 / ((float)d + 0.5f)) : 0.0f;
    /* The df table is large and read at random: fetch a few ahead. */
    enum { AHEAD = 16 };
    for (size_t i = 0; i < t->n && i < AHEAD; i++)
        __builtin_prefetch(&df[lr__terms_feature(t, i)]);
    for (size_t i = 0; i < t->n; i++) {
        if (i + AHEAD < t->n)
            __builtin_prefetch(&df[lr__terms_feature(t, i + AHEAD)]);
        uint32_t f = lr__terms_feature(t, i);
        uint32_t d = df[f] + self;
        if (d == 0)
            continue;
        /* ln((N + 1) / (d + 0.5)) is lr__tfidf_idf's value, in float. */
        float dd = (float)d + 0.5f;
        float idf = d < 32 ? small_idf[d] : logf(n1 > dd ? n1 / dd : 1.0f);
        float w = sublinear_tf(lr__terms_tf(t, i)) * idf;
        if (f & LR__TFIDF_CHAR_BIT)
            w *= LR__TFIDF_CHAR_WEIGHT;
        if (!(w > 0.0f))
            continue;
        cand[n].id = f;
        cand[n].w = w;
        n++;
    }
    kept = n < max_features ? n : max_features;
    if (n > kept)
        select_strongest(cand, n, kept);
    for (size_t i = 0; i < kept; i++)
        norm += (double)cand[i].w * cand[i].w;
    norm = sqrt(norm);
    /* A weight that rounds to 0 after normalising is dropped: the index
     * relies on every stored weight being positive. */
    size_t m = 0;
    for (size_t i = 0; i < kept; i++) {
        float w = (float)(cand[i].w / norm);
        if (w > 0.0f) {
            out[m].id = cand[i].id;
            out[m].w = w;
            m++;
        }
    }
    sort_by_id(out, m);
    return m;
}

int lr__l2_normalize(float *v, size_t dim)
{
    double s = 0.0;
    for (size_t i = 0; i < dim; i++)
        s += (double)v[i] * v[i];
    if (!(s > 0.0) || !isfinite(s))
        return -1;
    float inv = (float)(1.0 / sqrt(s));
    for (size_t i = 0; i < dim; i++)
        v[i] *= inv;
    return 0;
}
