/* embed.h -- the built-in text embedder "tfidf-v1" and dense-vector helpers.
 *
 * tfidf-v1 needs no weights. A text becomes a bag of hashed features (word
 * unigrams, word bigrams, character 3-grams inside words at a reduced
 * weight), each weighted by sublinear term frequency times an inverse
 * document frequency taken from the history store, keeping the strongest
 * LR__TFIDF_MAX_FEATURES features and L2-normalising them. The result is a
 * short sparse vector sorted by feature id; the cosine of two such vectors
 * is their dot product.
 *
 * Counting (lr__terms_count) depends on the text only. Weighting
 * (lr__tfidf_vector) depends on the document-frequency table the caller
 * passes, which the store fixes at each rebuild of its index.
 *
 * Threads: every function works only on the arguments it is given; a
 * struct lr__terms is scratch for one thread at a time.
 */
#ifndef LR_EMBED_H
#define LR_EMBED_H

#include <stddef.h>
#include <stdint.h>

#define LR__TFIDF_ID "tfidf-v1"
#define LR__TFIDF_BITS 20
#define LR__TFIDF_SPACE (1u << LR__TFIDF_BITS) /* feature ids are < this */
/* Character n-gram features have this bit set; their weight is scaled. */
#define LR__TFIDF_CHAR_BIT (1u << (LR__TFIDF_BITS - 1))
#define LR__TFIDF_CHAR_WEIGHT 0.3f
/* Features kept per vector (documents and queries alike). */
#define LR__TFIDF_MAX_FEATURES 128
/* Only the first this many bytes of a text are embedded. */
#define LR__TFIDF_MAX_TEXT 16384
/* Words longer than this get a unigram feature but no character n-grams. */
#define LR__TFIDF_MAX_WORD 64

/* One weighted feature of a sparse vector. */
struct lr__feat {
    uint32_t id;
    float w;
};

struct lr__idf_memo;

/* Distinct hashed features of one text with their counts (scratch). */
struct lr__term_slot {
    uint32_t key;   /* feature id + 1, 0 = empty */
    uint32_t count; /* 0 in an empty slot */
};
struct lr__terms {
    struct lr__term_slot *slots; /* open addressing */
    uint32_t *list;   /* indices into slots of the distinct features, in order seen */
    uint64_t *cand;   /* weighting scratch, cap/2 entries (see embed.c) */
    struct lr__feat *sorted; /* weighting scratch, cap/2 entries */
    struct lr__idf_memo *memo; /* idf by df, for memo_n1 (see embed.c) */
    float memo_n1;
    size_t cap;       /* slots in use for this text, a power of two */
    size_t alloc;     /* slots allocated */
    size_t n;         /* distinct features */
    int oom;          /* an allocation failed while counting */
};

void lr__terms_init(struct lr__terms *t);
void lr__terms_free(struct lr__terms *t);

/* Count the features of text[0..len) (at most LR__TFIDF_MAX_TEXT bytes are
 * read). Returns 0 or LR_ENOMEM. */
int lr__terms_count(struct lr__terms *t, const char *text, size_t len);

/* Feature id of the i-th distinct feature and its count. */
static inline uint32_t lr__terms_feature(const struct lr__terms *t, size_t i)
{
    return t->slots[t->list[i]].key - 1;
}
static inline uint32_t lr__terms_tf(const struct lr__terms *t, size_t i)
{
    return t->slots[t->list[i]].count;
}

/* Inverse document frequency of a feature found in df of ndocs documents:
 * ln(1 + (ndocs - df + 0.5) / (df + 0.5)), always positive, near 0 for a
 * feature in every document (the BM25 form). */
double lr__tfidf_idf(uint32_t df, uint32_t ndocs);

/* Weigh counted terms into a sparse vector: w = (1 + ln tf) * idf, features
 * with df == 0 dropped (nothing in the store can share them), the strongest
 * max_features kept (ties: lower feature id), L2-normalised, sorted by
 * feature id. `self` is 1 when the text is a document about to join the
 * counts (df and ndocs are taken as one higher), 0 for a query. out must
 * hold max_features entries. Returns the number written (0 when nothing is
 * left). */
size_t lr__tfidf_vector(struct lr__terms *t, const uint32_t *df, uint32_t ndocs, uint32_t self,
                        size_t max_features, struct lr__feat *out);

/* A zeroed table of LR__TFIDF_SPACE entries of elem bytes each (the
 * store's document frequencies, the sparse index's lists and row map, the
 * groups' centroid sums), or NULL. Its pages cost
 * nothing until written, so a small store pays for the features it holds,
 * not for the whole space: the table is mapped on its own, where calloc
 * would clear the whole of it each time once the allocator keeps memory
 * that size (glibc does after the first such block is freed). Free it with
 * lr__space_free and the same elem. */
void *lr__space_alloc(size_t elem);
void lr__space_free(void *table, size_t elem);

/* Scale v to unit length; returns 0, or -1 when v is all zeros or not finite. */
int lr__l2_normalize(float *v, size_t dim);

#endif /* LR_EMBED_H */
