/* test_embed.c -- the built-in tfidf-v1 embedder: deterministic, case-blind,
 * unit length, capped, UTF-8 safe. Single-threaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed.h"

/* Every feature seen once in a store of 100 documents. */
static uint32_t *flat_df(uint32_t v)
{
    uint32_t *df = malloc(LR__TFIDF_SPACE * sizeof(*df));
    assert_non_null(df);
    for (size_t i = 0; i < LR__TFIDF_SPACE; i++)
        df[i] = v;
    return df;
}

static size_t embed(struct lr__terms *t, const uint32_t *df, const char *s, struct lr__feat *out)
{
    assert_int_equal(lr__terms_count(t, s, strlen(s)), 0);
    return lr__tfidf_vector(t, df, 100, 0, LR__TFIDF_MAX_FEATURES, out);
}

static double dotv(const struct lr__feat *a, size_t na, const struct lr__feat *b, size_t nb)
{
    double s = 0;
    size_t i = 0, j = 0;
    while (i < na && j < nb) {
        if (a[i].id == b[j].id)
            s += (double)a[i++].w * b[j++].w;
        else if (a[i].id < b[j].id)
            i++;
        else
            j++;
    }
    return s;
}

static void embedding_is_deterministic_unit_and_sorted(void **st)
{
    (void)st;
    struct lr__terms t;
    struct lr__feat a[LR__TFIDF_MAX_FEATURES], b[LR__TFIDF_MAX_FEATURES];
    uint32_t *df = flat_df(1);
    lr__terms_init(&t);
    size_t na = embed(&t, df, "Which skin surface will produce the most heat?", a);
    size_t nb = embed(&t, df, "Which skin surface will produce the most heat?", b);
    assert_true(na > 10);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof(*a));
    double norm = 0;
    for (size_t i = 0; i < na; i++) {
        norm += (double)a[i].w * a[i].w;
        assert_true(a[i].w > 0);
        assert_true(a[i].id < LR__TFIDF_SPACE);
        if (i)
            assert_true(a[i - 1].id < a[i].id);
    }
    assert_true(fabs(norm - 1.0) < 1e-5);
    lr__terms_free(&t);
    free(df);
}

static void case_and_punctuation_do_not_matter(void **st)
{
    (void)st;
    struct lr__terms t;
    struct lr__feat a[LR__TFIDF_MAX_FEATURES], b[LR__TFIDF_MAX_FEATURES];
    uint32_t *df = flat_df(1);
    lr__terms_init(&t);
    size_t na = embed(&t, df, "Hello, World! Magnets stick.", a);
    size_t nb = embed(&t, df, "hello world magnets   STICK", b);
    assert_true(fabs(dotv(a, na, b, nb) - 1.0) < 1e-5);
    lr__terms_free(&t);
    free(df);
}

static void similar_texts_are_closer_than_unrelated_ones(void **st)
{
    (void)st;
    struct lr__terms t;
    struct lr__feat a[LR__TFIDF_MAX_FEATURES], b[LR__TFIDF_MAX_FEATURES],
        c[LR__TFIDF_MAX_FEATURES];
    uint32_t *df = flat_df(3);
    lr__terms_init(&t);
    size_t na = embed(&t, df, "write a python function to reverse a list", a);
    size_t nb = embed(&t, df, "write a python function to sort a list", b);
    size_t nc = embed(&t, df, "the trophy does not fit in the suitcase because it is big", c);
    assert_true(dotv(a, na, b, nb) > dotv(a, na, c, nc) + 0.2);
    lr__terms_free(&t);
    free(df);
}

static void features_absent_from_the_store_are_dropped(void **st)
{
    (void)st;
    struct lr__terms t;
    struct lr__feat a[LR__TFIDF_MAX_FEATURES];
    uint32_t *df = flat_df(0);
    lr__terms_init(&t);
    assert_int_equal(embed(&t, df, "nothing here is known", a), 0);
    /* ...unless the text joins the store itself. */
    assert_int_equal(lr__terms_count(&t, "nothing here", 12), 0);
    assert_true(lr__tfidf_vector(&t, df, 0, 1, LR__TFIDF_MAX_FEATURES, a) > 0);
    lr__terms_free(&t);
    free(df);
}

static void long_text_is_capped(void **st)
{
    (void)st;
    struct lr__terms t;
    struct lr__feat a[LR__TFIDF_MAX_FEATURES];
    uint32_t *df = flat_df(1);
    size_t len = 1 << 20;
    char *s = malloc(len + 1);
    assert_non_null(s);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        s[i] = (char)("abcdefghij klmnopq rstuv wxyz\n"[(x >> 16) % 30]);
    }
    s[len] = 0;
    lr__terms_init(&t);
    assert_int_equal(lr__terms_count(&t, s, len), 0);
    assert_true(t.n < 4 * LR__TFIDF_MAX_TEXT + 8);
    size_t n = lr__tfidf_vector(&t, df, 100, 0, LR__TFIDF_MAX_FEATURES, a);
    assert_int_equal(n, LR__TFIDF_MAX_FEATURES);
    lr__terms_free(&t);
    free(s);
    free(df);
}

static void utf8_words_are_kept_whole(void **st)
{
    (void)st;
    struct lr__terms t;
    struct lr__feat a[LR__TFIDF_MAX_FEATURES], b[LR__TFIDF_MAX_FEATURES];
    uint32_t *df = flat_df(1);
    lr__terms_init(&t);
    /* Non-ASCII bytes are word characters: "café" is one word, not "caf". */
    size_t na = embed(&t, df, "caf\xc3\xa9 cr\xc3\xa8me", a);
    size_t nb = embed(&t, df, "caf creme", b);
    assert_true(na > 0 && nb > 0);
    double s = dotv(a, na, b, nb);
    assert_true(s > 0.0 && s < 0.9); /* shares n-grams like "<ca", not the words */
    /* Invalid UTF-8 and control bytes do not crash. */
    const char bad[] = "\xff\xfe\x80 abc \xc3 \x01\x02 d\xe2\x82";
    assert_int_equal(lr__terms_count(&t, bad, sizeof(bad) - 1), 0);
    lr__terms_free(&t);
    free(df);
}

/* A digest of the exact vectors of a few texts (ids and weight bits). */
static uint64_t digest_vectors(void)
{
    static const char *const texts[] = {
        "Which skin surface will produce the most heat?",
        "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
        "e, na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text \xff\xfe\x80 \xc3 d\xe2\x82",
        /* more distinct features than the smallest table holds */
        "ab cd ef gh ij kl mn op qr st uv wx yz ba dc fe hg ji lk nm po "
        "rq ts vu xw zy ac bd ce df eg fh gi hj ik jl km ln mo np oq pr",
        "A a a A; THE the The the -- 42 4_2 x",
        "",
    };
    uint32_t *df = malloc(LR__TFIDF_SPACE * sizeof(*df));
    struct lr__feat v[LR__TFIDF_MAX_FEATURES];
    struct lr__terms t;
    uint64_t h = 14695981039346656037ull;
    size_t len = 6000;
    char *big = malloc(len + 1);
    uint32_t x = 777;

    assert_non_null(df);
    assert_non_null(big);
    /* Document frequencies from 0 (dropped) to large (idf from a logf). */
    for (uint32_t f = 0; f < LR__TFIDF_SPACE; f++)
        df[f] = (f * 2654435761u >> 7) % 5000u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = "abcdefghij klmnopq rstuv wxyzABC\n\xc3\xa9"[(x >> 16) % 35];
    }
    big[len] = 0;
    lr__terms_init(&t);
    for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]) + 1; k++) {
        const char *s = k < sizeof(texts) / sizeof(texts[0]) ? texts[k] : big;
        for (uint32_t self = 0; self < 2; self++) {
            assert_int_equal(lr__terms_count(&t, s, strlen(s)), 0);
            size_t n = lr__tfidf_vector(&t, df, 4000, self, LR__TFIDF_MAX_FEATURES, v);
            for (size_t i = 0; i < n; i++) {
                uint32_t wb;
                memcpy(&wb, &v[i].w, sizeof(wb));
                h = (h ^ v[i].id) * 1099511628211ull;
                h = (h ^ wb) * 1099511628211ull;
            }
            h = (h ^ n) * 1099511628211ull;
        }
    }
    lr__terms_free(&t);
    free(big);
    free(df);
    return h;
}

/* The exact vectors (ids and weight bits) of texts covering ASCII and UTF-8
 * words, repeats, a table that has to grow, a long text, idfs from the
 * small table and from logf, queries and documents, as the first version
 * of tfidf-v1 computed them: stored vectors are compared with new queries'
 * vectors, so a faster embedder must not move a single bit. */
static void vectors_match_the_reference_bits(void **st)
{
    (void)st;
    assert_true(digest_vectors() == 0x6781b57d659d5c97ull);
}

static void idf_falls_with_document_frequency(void **st)
{
    (void)st;
    double prev = lr__tfidf_idf(1, 1000);
    assert_true(prev > 0);
    for (uint32_t d = 2; d <= 1000; d *= 2) {
        double x = lr__tfidf_idf(d, 1000);
        assert_true(x > 0 && x < prev);
        prev = x;
    }
    assert_true(lr__tfidf_idf(1000, 1000) < 0.001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(embedding_is_deterministic_unit_and_sorted),
        cmocka_unit_test(case_and_punctuation_do_not_matter),
        cmocka_unit_test(similar_texts_are_closer_than_unrelated_ones),
        cmocka_unit_test(features_absent_from_the_store_are_dropped),
        cmocka_unit_test(long_text_is_capped),
        cmocka_unit_test(utf8_words_are_kept_whole),
        cmocka_unit_test(idf_falls_with_document_frequency),
        cmocka_unit_test(vectors_match_the_reference_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
