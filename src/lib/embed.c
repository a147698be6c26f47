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
 * Why LR__TFIDF_MAX_FEATURES = 128: the same leave-one-out (predict_eval
 * --tune --decide, each cap with its best constants), kept features
 * against Brier, output-length RMSE and the budget decisions' mean routed
 * success on train: 32: 0.1981, 44.25, 0.7755; 64: 0.1952, 40.46, 0.7784;
 * 96: 0.1940, 37.97, 0.7793; 128: 0.1938, 37.00, 0.7781; 192: 0.1940,
 * 36.77, 0.7810; 256: 0.1939, 36.61, 0.7794. Quality levels off at 128,
 * and the length error keeps falling slowly. Fewer features make the
 * search faster (64 on the 100,000-record fewshot bench: a quarter of the
 * postings on the query's features, kNN p50 0.4 to 0.7 of 128's in two
 * alternating pairs on a busy machine), but cost predictions 9% worse in
 * length, so the cap stays. Capping only the query (the documents keep
 * 128) costs less but still costs: at 64, test-split Brier 0.1921 against
 * 0.1913, output-length RMSE 36.32 against 35.32 (ARC's MAE 4.1 tokens
 * against 1.5), the budget decisions' mean routed success on train 0.7773
 * against 0.7781 (predict_eval --decide); at 96: 0.1917, 35.55, 0.7775.
 * On the fewshot bench 64 reads a third of the postings and the decision
 * p50 was 0.60 to 0.81 of 128's (two alternating pairs, other builds
 * running), still above 200 us; not adopted either.
 *
 * Speed (a query is embedded on every smart decision): bytes are
 * classified and lowercased by one table; the 3-grams of an ASCII word are
 * a sliding window over it; counting has no branch on whether a feature is
 * new; the strongest features are chosen with integer keys and a
 * branch-free partition; the final order by id is a radix sort; and each
 * scratch remembers the idfs it computed. Every shortcut gives the same
 * bits as the plain computation (tests/unit/test_embed.c pins them), since
 * stored documents' vectors are compared with new queries' vectors.
 *
 * Threads: no shared state; a struct lr__terms is one caller's scratch.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "embed.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
    free(t->sorted);
    free(t->memo);
    memset(t, 0, sizeof(*t));
}

/* Allocate an empty table of cap slots (a power of two) and the arrays
 * sized by it, keeping the first n entries of the old list. The old slots
 * are returned in *old for the caller to re-insert and free. */
static int terms_alloc(struct lr__terms *t, size_t cap, struct lr__term_slot **old)
{
    struct lr__term_slot *s = calloc(cap, sizeof(*s));
    uint32_t *l = malloc(cap / 2 * sizeof(*l));
    uint64_t *c = malloc(cap / 2 * sizeof(*c));
    struct lr__feat *f = malloc(cap / 2 * sizeof(*f));
    if (!s || !l || !c || !f) {
        free(s);
        free(l);
        free(c);
        free(f);
        return LR_ENOMEM;
    }
    if (t->n)
        memcpy(l, t->list, t->n * sizeof(*l));
    *old = t->slots;
    free(t->list);
    free(t->cand);
    free(t->sorted);
    t->slots = s;
    t->list = l;
    t->cand = c;
    t->sorted = f;
    t->cap = t->alloc = cap;
    return 0;
}

/* Start a text of len bytes. The table starts at about one slot per byte
 * (texts have fewer distinct features than bytes) and doubles when half
 * full, so it stays small enough to live in the first cache levels. */
static int terms_reserve(struct lr__terms *t, size_t len)
{
    size_t cap = 256;
    while (cap < 2 * len)
        cap <<= 1;
    /* Clear only what the previous text used. */
    for (size_t i = 0; i < t->n; i++) {
        t->slots[t->list[i]].key = 0;
        t->slots[t->list[i]].count = 0;
    }
    t->n = 0;
    t->oom = 0;
    if (cap > t->alloc) {
        struct lr__term_slot *old = NULL;
        int rc = terms_alloc(t, cap, &old);
        free(old);
        return rc;
    }
    t->cap = cap;
    return 0;
}

/* Double the table, keeping its content and the list's order. */
static int terms_grow(struct lr__terms *t)
{
    struct lr__term_slot *old = NULL;
    if (terms_alloc(t, t->cap * 2, &old) != 0)
        return LR_ENOMEM;
    size_t mask = t->cap - 1;
    for (size_t j = 0; j < t->n; j++) {
        struct lr__term_slot sl = old[t->list[j]];
        size_t i = (size_t)(sl.key - 1) & mask;
        while (t->slots[i].key)
            i = (i + 1) & mask;
        t->slots[i] = sl;
        t->list[j] = (uint32_t)i;
    }
    free(old);
    return 0;
}

/* Count one occurrence of a feature. Written without a branch on whether
 * the feature is new (which a text's repeats make unpredictable): empty
 * slots hold count 0, and the list's next entry is always written but
 * only kept when the slot was empty. Counts cannot overflow: a text of at
 * most LR__TFIDF_MAX_TEXT bytes has fewer features than that. */
static inline void terms_add(struct lr__terms *t, uint32_t feature)
{
    struct lr__term_slot *s = t->slots;
    uint32_t key = feature + 1;
    size_t mask = t->cap - 1;
    /* Feature ids are already well-mixed hash bits. */
    size_t i = (size_t)feature & mask;

    if (t->oom)
        return; /* reported by lr__terms_count */
    while (s[i].key != key && s[i].key != 0)
        i = (i + 1) & mask;
    size_t fresh = s[i].key == 0;
    s[i].key = key;
    s[i].count++;
    t->list[t->n] = (uint32_t)i;
    t->n += fresh;
    /* Keep the table at most half full (and the list within its room). */
    if (t->n >= t->cap / 2 && terms_grow(t) != 0)
        t->oom = 1;
}

/* Each byte as a word character, lowercased, or 0 for a separator: ASCII
 * letters, digits, '_' and every byte >= 0x80 are word characters. */
#define WB(c)                                                                                   \
    ((c) >= 'A' && (c) <= 'Z'                                                                   \
         ? (c) - 'A' + 'a'                                                                      \
         : ((c) >= 'a' && (c) <= 'z') || ((c) >= '0' && (c) <= '9') || (c) == '_' || (c) >= 0x80 \
               ? (c)                                                                            \
               : 0)
#define WB4(c) WB(c), WB((c) + 1), WB((c) + 2), WB((c) + 3)
#define WB16(c) WB4(c), WB4((c) + 4), WB4((c) + 8), WB4((c) + 12)
static const unsigned char word_byte[256] = {
    WB16(0),   WB16(16),  WB16(32),  WB16(48),  WB16(64),  WB16(80),  WB16(96),  WB16(112),
    WB16(128), WB16(144), WB16(160), WB16(176), WB16(192), WB16(208), WB16(224), WB16(240)};

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

/* add_chargrams for a word of n >= 1 ASCII bytes: every 3-gram is three
 * single-byte characters, packed as add_chargrams packs them, so a window
 * slides over the word instead. */
static void add_chargrams_ascii(struct lr__terms *t, const unsigned char *w, size_t n)
{
    uint64_t g = '<' | (uint64_t)w[0] << 8;
    for (size_t j = 1; j < n; j++) {
        g |= (uint64_t)w[j] << 16;
        terms_add(t, feature_of(g, KIND_CHARGRAM));
        g >>= 8;
    }
    terms_add(t, feature_of(g | (uint64_t)'>' << 16, KIND_CHARGRAM));
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
    while (i < len && !t->oom) {
        while (i < len && !word_byte[p[i]])
            i++;
        if (i >= len)
            break;
        size_t n = 0;
        uint64_t h = FNV_OFFSET;
        unsigned char c, high = 0;
        while (i < len && (c = word_byte[p[i]]) != 0) {
            h = (h ^ c) * FNV_PRIME;
            if (n < sizeof(word))
                word[n] = c;
            high |= c;
            n++;
            i++;
        }
        terms_add(t, feature_of(h, KIND_UNIGRAM));
        if (have_prev)
            terms_add(t, feature_of(prev * 31 + h, KIND_BIGRAM));
        prev = h;
        have_prev = 1;
        if (n <= LR__TFIDF_MAX_WORD) {
            if (high & 0x80)
                add_chargrams(t, word, n);
            else
                add_chargrams_ascii(t, word, n);
        }
    }
    return t->oom ? LR_ENOMEM : 0;
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

/* Candidates during weighting are 64-bit keys, the weight's bits above the
 * complement of the feature id: weights are positive floats, whose bits
 * order like their values, so a larger key is a stronger feature (heavier
 * first, then lower id) and one integer comparison decides. */
static uint64_t cand_key(uint32_t id, float w)
{
    uint32_t wb;
    memcpy(&wb, &w, sizeof(wb));
    return (uint64_t)wb << 32 | (uint32_t)~id;
}

static uint32_t cand_id(uint64_t key)
{
    return ~(uint32_t)key;
}

static float cand_w(uint64_t key)
{
    uint32_t wb = (uint32_t)(key >> 32);
    float w;
    memcpy(&w, &wb, sizeof(w));
    return w;
}

static void swap_key(uint64_t *a, uint64_t *b)
{
    uint64_t x = *a;
    *a = *b;
    *b = x;
}

/* Partition v[0..n) so that its k strongest come first (quickselect with a
 * median-of-three pivot and Lomuto's partition; the order within each side
 * is unspecified but fixed: the caller sums the first k in this order, so
 * any change here may change a weight's last bit). The partition loop has
 * no data-dependent branch: it writes both elements either way. */
static void select_strongest(uint64_t *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* the k-th boundary lies in [lo, hi) */
    while (hi - lo > 1 && k > lo && k < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[hi - 1] > v[lo])
            swap_key(&v[hi - 1], &v[lo]);
        if (v[mid] > v[lo])
            swap_key(&v[mid], &v[lo]);
        if (v[hi - 1] > v[mid])
            swap_key(&v[hi - 1], &v[mid]);
        uint64_t pivot = v[mid]; /* median of three */
        swap_key(&v[mid], &v[hi - 1]);
        size_t store = lo;
        uint64_t y = v[store]; /* v[store], kept in a register */
        for (size_t i = lo; i < hi - 1; i++) {
            uint64_t x = v[i];
            int c = x > pivot;
            v[i] = c ? y : x;
            v[store] = c ? x : y;
            store += (size_t)c;
            y = c ? v[store] : y;
        }
        swap_key(&v[store], &v[hi - 1]);
        if (store == k)
            return;
        if (store < k)
            lo = store + 1;
        else
            hi = store;
    }
}

/* Sort v[0..n) by feature id into out, using tmp (n entries): an LSD radix
 * sort on the id's 21 low bits, 7 at a time. Ids are distinct, so any
 * correct sort gives this order. */
#define RADIX_BITS 7
#define RADIX (1u << RADIX_BITS)
_Static_assert(LR__TFIDF_BITS <= 3 * RADIX_BITS, "feature ids fit in three radix digits");
static void sort_by_id(struct lr__feat *v, size_t n, struct lr__feat *out)
{
    uint32_t count[3][RADIX];
    struct lr__feat *src[3] = {v, out, v}, *dst[3] = {out, v, out};

    memset(count, 0, sizeof(count));
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < 3; d++)
            count[d][(v[i].id >> (d * RADIX_BITS)) & (RADIX - 1)]++;
    for (int d = 0; d < 3; d++) {
        uint32_t at = 0;
        for (uint32_t b = 0; b < RADIX; b++) {
            uint32_t c = count[d][b];
            count[d][b] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++) {
            struct lr__feat x = src[d][i];
            dst[d][count[d][(x.id >> (d * RADIX_BITS)) & (RADIX - 1)]++] = x;
        }
    }
}

/* idf = ln((N + 1) / (d + 0.5)) costs a logf, and a text has hundreds of
 * features with d >= 32; but the same d values come back text after text
 * (the common features), so the scratch remembers the last idf computed
 * for each d modulo IDF_MEMO, for one N at a time. A remembered value is
 * the one logf gave, so nothing changes but the time. */
#define IDF_MEMO 8192u
struct lr__idf_memo {
    uint32_t d; /* 0: empty (d == 0 is never looked up) */
    float idf;
};

/* The memo for n1, emptied when n1 changed; NULL when it cannot be
 * allocated (idf is then computed every time). */
static struct lr__idf_memo *idf_memo(struct lr__terms *t, float n1)
{
    if (!t->memo) {
        t->memo = calloc(IDF_MEMO, sizeof(*t->memo));
        if (!t->memo)
            return NULL;
        t->memo_n1 = n1;
    }
    if (t->memo_n1 != n1) {
        memset(t->memo, 0, IDF_MEMO * sizeof(*t->memo));
        t->memo_n1 = n1;
    }
    return t->memo;
}

static float idf_of(struct lr__idf_memo *memo, uint32_t d, float n1)
{
    /* ln((N + 1) / (d + 0.5)) is lr__tfidf_idf's value, in float. */
    float dd = (float)d + 0.5f;
    if (!memo)
        return logf(n1 > dd ? n1 / dd : 1.0f);
    struct lr__idf_memo *e = &memo[d & (IDF_MEMO - 1)];
    if (e->d != d) {
        e->d = d;
        e->idf = logf(n1 > dd ? n1 / dd : 1.0f);
    }
    return e->idf;
}

size_t lr__tfidf_vector(struct lr__terms *t, const uint32_t *df, uint32_t ndocs, uint32_t self,
                        size_t max_features, struct lr__feat *out)
{
    uint64_t *cand = t->cand;
    size_t n = 0, kept;
    double norm = 0.0;

    if (max_features == 0 || t->n == 0)
        return 0;
    /* ln((N + 1) / (d + 0.5)) for the small d most features have. */
    float n1 = (float)(ndocs + self) + 1.0f, small_idf[32];
    for (uint32_t d = 0; d < 32; d++)
        small_idf[d] = n1 > (float)d + 0.5f ? logf(n1 / ((float)d + 0.5f)) : 0.0f;
    struct lr__idf_memo *memo = idf_memo(t, n1);
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
        float idf = d < 32 ? small_idf[d] : idf_of(memo, d, n1);
        float w = sublinear_tf(lr__terms_tf(t, i)) * idf;
        if (f & LR__TFIDF_CHAR_BIT)
            w *= LR__TFIDF_CHAR_WEIGHT;
        if (!(w > 0.0f))
            continue;
        cand[n++] = cand_key(f, w);
    }
    kept = n < max_features ? n : max_features;
    if (n > kept)
        select_strongest(cand, n, kept);
    for (size_t i = 0; i < kept; i++) {
        double w = cand_w(cand[i]);
        norm += w * w;
    }
    norm = sqrt(norm);
    /* A weight that rounds to 0 after normalising is dropped: the index
     * relies on every stored weight being positive. */
    struct lr__feat *v = t->sorted;
    size_t m = 0;
    for (size_t i = 0; i < kept; i++) {
        float w = (float)(cand_w(cand[i]) / norm);
        if (w > 0.0f) {
            v[m].id = cand_id(cand[i]);
            v[m].w = w;
            m++;
        }
    }
    sort_by_id(v, m, out);
    return m;
}

int lr__l2_normalize(float *v, size_t dim)
{
    double s = 0.0;
    for (size_t i = 0; i < dim; i++)
        s += (double)v[i] * v[i];
    if (!(s > 0.0) || !isfinite(s))
        return -1;
    double inv = 1.0 / sqrt(s);
    if (inv > FLT_MAX || inv < FLT_MIN) {
        /* A norm below 1 / FLT_MAX (coordinates of 1e-39, say): the factor
         * has no float, and v times its infinity was infinities and NaNs
         * (0 times infinity), which the search then ranked at random; a
         * norm above 1 / FLT_MIN, a factor that is a subnormal float of
         * few digits. Scaled in double instead. */
        for (size_t i = 0; i < dim; i++)
            v[i] = (float)(v[i] * inv);
        return 0;
    }
    float finv = (float)inv;
    for (size_t i = 0; i < dim; i++)
        v[i] *= finv;
    return 0;
}

/* ==== Feature-space tables ==== */

/* Under AddressSanitizer the tables come from calloc, so that its checks
 * (bounds, leaks) cover them as they cover everything else. */
#if defined(__SANITIZE_ADDRESS__)
#define LR__SPACE_CALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LR__SPACE_CALLOC 1
#endif
#endif

void *lr__space_alloc(size_t elem)
{
#ifdef LR__SPACE_CALLOC
    return calloc(LR__TFIDF_SPACE, elem);
#else
    void *p = mmap(NULL, (size_t)LR__TFIDF_SPACE * elem, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
#endif
}

void lr__space_free(void *table, size_t elem)
{
#ifdef LR__SPACE_CALLOC
    (void)elem;
    free(table);
#else
    if (table)
        munmap(table, (size_t)LR__TFIDF_SPACE * elem);
#endif
}
