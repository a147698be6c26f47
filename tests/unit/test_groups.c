/* test_groups.c -- groups of similar records: a sparse store grouped when
 * its copy is rebuilt, a dense store grouped at open and regrouped as
 * appends grow it, appends joining the nearest group and its totals, small
 * stores without groups, the predictor reading them, and a failed regroup
 * keeping the append. The build of dense groups is wrapped at link time
 * (-Wl,--wrap=lr__groups_build_dense, see tests/CMakeLists.txt) so a test
 * can make it fail. Single-threaded, but for the dense build's own threads
 * (dense_groups_are_the_same_on_any_number_of_threads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "predict.h"
#include "store.h"

static char tmpdir[256];

/* ==== The wrapped dense build ==== */

int __real_lr__groups_build_dense(struct lr__groups *g, const struct lr__hist *h,
                                  const float *rows, size_t dim, size_t n_groups,
                                  unsigned threads);

static int dense_builds;     /* calls so far */
static int fail_dense_build; /* answer LR_ENOMEM, as the build does without memory */

int __wrap_lr__groups_build_dense(struct lr__groups *g, const struct lr__hist *h,
                                  const float *rows, size_t dim, size_t n_groups,
                                  unsigned threads);
int __wrap_lr__groups_build_dense(struct lr__groups *g, const struct lr__hist *h,
                                  const float *rows, size_t dim, size_t n_groups,
                                  unsigned threads)
{
    dense_builds++;
    if (fail_dense_build) {
        memset(g, 0, sizeof(*g));
        return LR_ENOMEM;
    }
    return __real_lr__groups_build_dense(g, h, rows, dim, n_groups, threads);
}

static int setup_dir(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lr_test_groups_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **st)
{
    char p[512];
    (void)st;
    static const char *files[] = {"dense.db", "dense.db-wal", "dense.db-shm",
                                  "empty.db", "empty.db-wal", "empty.db-shm",
                                  "grow.db",  "grow.db-wal",  "grow.db-shm",
                                  "fail.db",  "fail.db-wal",  "fail.db-shm",
                                  "defer.db", "defer.db-wal", "defer.db-shm",
                                  "conv.db",  "conv.db-wal",  "conv.db-shm",
                                  "blank.jsonl"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tmpdir, files[i]);
        unlink(p);
    }
    return rmdir(tmpdir);
}

static void group_count_follows_the_store_size(void **st)
{
    (void)st;
    assert_int_equal(lr__groups_count_for(0), 0);
    assert_int_equal(lr__groups_count_for(LR__GROUPS_MIN_RECORDS - 1), 0);
    assert_true(lr__groups_count_for(LR__GROUPS_MIN_RECORDS) >= 2);
    assert_int_equal(lr__groups_count_for(100000000), LR__GROUPS_MAX);
}

/* Record i of topic i % 2: words of its topic plus a numbered word, and
 * model "A" right on topic 0, wrong on topic 1. */
static void add_topic_record(struct lr_store *s, size_t i)
{
    static const char *topic[2] = {"apple banana cherry orchard fruit juice",
                                   "rocket orbit planet launch engine thrust"};
    char text[128];
    struct lr_error err;
    snprintf(text, sizeof(text), "%s item%zu", topic[i % 2], i);
    struct lr_outcome o = {"A", i % 2 == 0 ? 1.0 : 0.0, 10.0 + (double)(i % 2) * 90.0};
    struct lr_record r = {text, 8, NULL, &o, 1};
    assert_int_equal(lr_store_add(s, &r, NULL, 0, &err), 0);
}

/* The store's number of groups, read under the read lock. */
static uint32_t group_count(const struct lr_store *s)
{
    lr__store_rdlock(s);
    uint32_t n = lr__store_hist(s)->groups.n;
    lr__store_unlock(s);
    return n;
}

/* Every record of a topic in one group, the two topics in different ones,
 * and the totals of model A per group add up to the records. */
static void check_topic_groups(const struct lr__hist *h, size_t n)
{
    const struct lr__groups *g = &h->groups;
    assert_int_equal(h->n, n);
    assert_true(g->n >= 2);
    uint32_t g0 = g->of[0], g1 = g->of[1];
    assert_int_not_equal(g0, g1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(g->of[i], i % 2 == 0 ? g0 : g1);
    int a = lr__hist_model_id(h, "A");
    assert_true(a >= 0);
    const struct lr__group_stats *s0 = lr__groups_stats(g, (uint32_t)a, g0);
    const struct lr__group_stats *s1 = lr__groups_stats(g, (uint32_t)a, g1);
    assert_true(s0->n == (double)((n + 1) / 2) && s0->sum_correct == s0->n);
    assert_true(s1->n == (double)(n / 2) && s1->sum_correct == 0.0);
    assert_true(s1->sum_output == 100.0 * s1->n);
}

/* check_topic_groups on the store's copy, under the read lock. */
static void check_topics(const struct lr_store *s, size_t n)
{
    lr__store_rdlock(s);
    check_topic_groups(lr__store_hist(s), n);
    lr__store_unlock(s);
}

static void sparse_store_groups_by_topic_and_appends_join(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    /* Appends re-weigh the copy as it grows by quarters; the schedule stops
     * at the size that makes groups possible, so the append that brings the
     * store there groups it, as a dense store's does. */
    for (size_t i = 0; i < LR__GROUPS_MIN_RECORDS - 1; i++)
        add_topic_record(s, i);
    assert_int_equal(group_count(s), 0);
    add_topic_record(s, LR__GROUPS_MIN_RECORDS - 1);
    assert_int_equal(group_count(s), lr__groups_count_for(LR__GROUPS_MIN_RECORDS));
    check_topics(s, LR__GROUPS_MIN_RECORDS);
    /* The next ones join a group one by one. */
    for (size_t i = LR__GROUPS_MIN_RECORDS; i < 320; i++)
        add_topic_record(s, i);
    check_topics(s, 320);
    lr_store_free(s);
}

static int cmp_feat_id(const void *pa, const void *pb)
{
    const struct lr__feat *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

/* An appended record's group (lr__groups_nearest_sparse, which the build's
 * rounds use too) is the one scoring every centroid entry the plain way
 * gives: vectors of random weights over centroid features (some in both
 * groups' centroids) and features no centroid has. */
static void nearest_group_matches_plain_scoring(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    uint64_t rng = 0x9E3779B97F4A7C15u;
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    for (size_t i = 0; i < 320; i++)
        add_topic_record(s, i);
    lr__store_rdlock(s);
    const struct lr__groups *g = &lr__store_hist(s)->groups;
    assert_true(g->n >= 2 && g->n_cfeat > 0);
    size_t in_both = 0;
    for (size_t p = 1; p < g->n_cfeat; p++)
        in_both += g->cfeat[p].feat == g->cfeat[p - 1].feat;
    assert_true(in_both > 0);
    size_t per_group[LR__GROUPS_MAX] = {0};
    for (int t = 0; t < 2000; t++) {
        struct lr__feat v[16];
        size_t nv = 0;
        for (int j = 0; j < 16; j++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            uint32_t id = rng % 4 == 0 ? (uint32_t)(rng >> 20) % LR__TFIDF_SPACE
                                       : g->cfeat[(rng >> 8) % g->n_cfeat].feat;
            v[nv++] = (struct lr__feat){id, (float)((rng >> 40) % 1000 + 1) / 1000.0f};
        }
        qsort(v, nv, sizeof(*v), cmp_feat_id);
        size_t m = 0;
        for (size_t j = 0; j < nv; j++)
            if (m == 0 || v[j].id != v[m - 1].id)
                v[m++] = v[j];
        double score[LR__GROUPS_MAX] = {0};
        for (size_t j = 0; j < m; j++)
            for (size_t p = 0; p < g->n_cfeat; p++)
                if (g->cfeat[p].feat == v[j].id)
                    score[g->cfeat[p].group] += (double)v[j].w * g->cfeat[p].w;
        uint32_t best = LR__GROUPS_NONE;
        for (uint32_t c = 0; c < g->n; c++)
            if (score[c] > 0.0 && (best == LR__GROUPS_NONE || score[c] > score[best]))
                best = c;
        assert_int_equal(lr__groups_nearest_sparse(g, v, m), best);
        if (best != LR__GROUPS_NONE)
            per_group[best]++;
    }
    for (uint32_t c = 0; c < g->n; c++)
        assert_true(per_group[c] > 0); /* the vectors do not all fall one way */
    lr__store_unlock(s);
    lr_store_free(s);
}

/* A query on a subject none of the groups has: no word, and no 3-gram of
 * "<word>", in common with the topics. */
static const char novel_text[] = "zq wibbly kumquat zigzag vuvuzela zq";

static void add_novel_record(struct lr_store *s, double correct)
{
    struct lr_error err;
    assert_int_equal(lr_store_add_outcome(s, novel_text, 8, "A", correct, 5.0, &err), 0);
}

/* A record whose vector shares no feature with any centroid (a query on a
 * new subject, appended) joins no group: it used to join group 0 by
 * default, and its outcomes moved the predictions of every query whose
 * neighbours are in group 0. Its own neighbours' group level is the
 * store's mean. */
static void record_unlike_every_group_joins_none(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr__predict_params p;
    struct lr__store_scratch sc;
    struct lr__neighbor nb[16];
    double before[1], after[1], q[1], out[1];
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    for (size_t i = 0; i < 320; i++)
        add_topic_record(s, i);
    /* Group means not shrunk to the store's, which the new outcomes move. */
    lr__predict_params_default(&p);
    p.group_prior_weight = 0.0;
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    int ids[1] = {lr__hist_model_id(h, "A")};
    uint32_t in0 = 0;
    while (h->groups.of[in0] != 0)
        in0++;
    struct lr__neighbor one[1] = {{in0, 0.9f}};
    lr__predict(h, LR__PREDICT_DEFAULT, &p, one, 1, 1, ids, 1, before, out);
    double a_right = in0 % 2 == 0 ? 1.0 : 0.0;
    lr__store_unlock(s);

    /* Twenty outcomes against group 0's record. */
    for (int i = 0; i < 20; i++)
        add_novel_record(s, 1.0 - a_right);
    lr__store_rdlock(s);
    h = lr__store_hist(s);
    assert_int_equal(h->n, 340);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, one, 1, 1, ids, 1, after, out);
    assert_true(after[0] == before[0]);
    for (size_t i = 320; i < 340; i++)
        assert_int_equal(h->groups.of[i], LR__GROUPS_NONE);
    /* Each group's totals are its members' outcomes, which are the 320
     * records before. */
    int a = ids[0];
    double in_groups = 0.0;
    for (uint32_t x = 0; x < h->groups.n; x++) {
        double members = 0.0;
        for (size_t i = 0; i < h->n; i++)
            members += h->groups.of[i] == x;
        assert_true(lr__groups_stats(&h->groups, (uint32_t)a, x)->n == members);
        in_groups += members;
    }
    assert_true(in_groups == 320.0);

    /* The novel query's neighbours are the twenty: their local mean shrunk
     * to the store's mean of A with the weight of a store without groups. */
    lr__store_scratch_init(&sc);
    int n = lr__store_knn_text(s, novel_text, strlen(novel_text), 16, &sc, nb);
    assert_int_equal(n, 16);
    for (int i = 0; i < n; i++)
        assert_true(nb[i].doc >= 320);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, nb, (size_t)n, 16, ids, 1, q, out);
    double mean = (160.0 + 20.0 * (1.0 - a_right)) / 340.0;
    double want = (16.0 * (1.0 - a_right) + p.prior_weight * mean) / (16.0 + p.prior_weight);
    assert_true(fabs(q[0] - want) < 1e-12);
    lr__store_scratch_free(&sc);
    lr__store_unlock(s);
    lr_store_free(s);
}

static void small_store_has_no_groups(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    for (size_t i = 0; i < 40; i++)
        add_topic_record(s, i);
    assert_int_equal(group_count(s), 0);
    lr_store_free(s);
}

static void add_dense_record(struct lr_store *s, size_t i)
{
    struct lr_error err;
    struct lr_outcome o = {"A", i % 2 == 0 ? 1.0 : 0.0, 10.0 + (double)(i % 2) * 90.0};
    struct lr_record r = {"text", 8, NULL, &o, 1};
    /* Two directions, a little jitter. */
    float j = (float)(i % 7) * 0.01f;
    float v[3] = {i % 2 == 0 ? 1.0f : 0.1f + j, i % 2 == 0 ? 0.1f + j : 1.0f, j};
    int rc = lr_store_add(s, &r, v, 3, &err);
    if (rc != 0)
        fail_msg("record %zu: %s", i, err.message);
}

static void dense_store_gets_groups_at_open(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options o = {"remote-emb", 3, 0, 0, 0, 0};
    snprintf(db, sizeof(db), "%s/dense.db", tmpdir);
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    for (size_t i = 0; i < 300; i++)
        add_dense_record(s, i);
    lr_store_free(s);

    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    check_topics(s, 300);
    for (size_t i = 300; i < 305; i++)
        add_dense_record(s, i);
    check_topics(s, 305);
    lr_store_free(s);
}

/* The predictor on a grouped store: a query among topic-1 records gets
 * topic 1's accuracy from its group even with a single neighbour. */
static void predictor_reads_the_neighbours_groups(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr__predict_params p;
    double q[1], out[1];
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    for (size_t i = 0; i < 320; i++)
        add_topic_record(s, i);
    lr__predict_params_default(&p);
    p.group_weight = 1.0;
    p.group_prior_weight = 0.0;
    p.length_prior_weight = 1.0;
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    int ids[1] = {lr__hist_model_id(h, "A")};
    struct lr__neighbor nb[1] = {{1, 0.9f}}; /* a topic-1 record: A wrong, 100 tokens */
    lr__predict(h, LR__PREDICT_DEFAULT, &p, nb, 1, 1, ids, 1, q, out);
    /* local 0 of 1, group 0 of 160: (0 + 1 * 0) / 2; without groups the
     * store's mean (1/2) would have pulled it up. */
    assert_true(q[0] == 0.0);
    assert_true(out[0] == 100.0);
    lr__store_unlock(s);
    lr_store_free(s);
}

/* A record without a feature (a query of punctuation alone: the built-in
 * embedder gives it none) is like no record, so the fit leaves it out:
 * it seeds no group and joins none. It was drawn as a seed before any
 * other (the farthest from every seed), and its group, with a centroid
 * of nothing, stayed empty: here, a fifth of the records such, one of the
 * two groups was empty and both topics shared the other, whose level was
 * then the two topics' mean. */
static void records_without_a_feature_seed_no_group(void **st)
{
    (void)st;
    static const char *topic[2] = {"apple banana cherry orchard fruit juice",
                                   "rocket orbit planet launch engine thrust"};
    char path[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_import_report rep;
    struct lr__predict_params p;
    double q[1], out[1];
    snprintf(path, sizeof(path), "%s/blank.jsonl", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    /* 320 records: every fifth "?!", the others the text of topic i % 2
     * (model A right on topic 0 only). */
    for (size_t i = 0; i < 320; i++) {
        if (i % 5 == 4)
            fprintf(f, "{\"query\": \"?!\", \"outputs\": [{\"model_name\": \"A\", "
                       "\"correctness\": 0.5, \"output_token_length\": 1}]}\n");
        else
            fprintf(f,
                    "{\"query\": \"%s\", \"outputs\": [{\"model_name\": \"A\", "
                    "\"correctness\": %d, \"output_token_length\": 10}]}\n",
                    topic[i % 2], i % 2 == 0);
    }
    assert_int_equal(fclose(f), 0);
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, path, NULL, &rep, &err), 0);
    assert_int_equal(rep.imported, 320);

    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    const struct lr__groups *g = &h->groups;
    assert_int_equal(g->n, lr__groups_count_for(320));
    uint32_t g0 = g->of[0], g1 = g->of[1];
    assert_int_not_equal(g0, LR__GROUPS_NONE);
    assert_int_not_equal(g1, LR__GROUPS_NONE);
    assert_int_not_equal(g0, g1);
    size_t members[LR__GROUPS_MAX] = {0};
    for (size_t i = 0; i < 320; i++) {
        if (i % 5 == 4)
            assert_int_equal(g->of[i], LR__GROUPS_NONE);
        else
            assert_int_equal(g->of[i], i % 2 == 0 ? g0 : g1);
        if (g->of[i] != LR__GROUPS_NONE)
            members[g->of[i]]++;
    }
    for (uint32_t x = 0; x < g->n; x++)
        assert_true(members[x] > 0);
    /* A topic-1 record's group level is topic 1's rate, 0. */
    lr__predict_params_default(&p);
    p.group_weight = 1.0;
    p.group_prior_weight = 0.0;
    int ids[1] = {lr__hist_model_id(h, "A")};
    struct lr__neighbor nb[1] = {{1, 0.9f}};
    lr__predict(h, LR__PREDICT_DEFAULT, &p, nb, 1, 1, ids, 1, q, out);
    assert_true(q[0] == 0.0);
    lr__store_unlock(s);
    lr_store_free(s);
    unlink(path);
}

/* ==== Dense stores grown by appends ==== */

/* Each record's outcome is in exactly one group's totals: per group, model
 * A's count is the number of records in the group, and per model the
 * groups add up to the store's totals. */
static void check_counted_once(const struct lr__hist *h)
{
    const struct lr__groups *g = &h->groups;
    int a = lr__hist_model_id(h, "A");
    assert_true(a >= 0);
    for (uint32_t x = 0; x < g->n; x++) {
        double members = 0.0;
        for (size_t i = 0; i < h->n; i++)
            members += g->of[i] == x;
        assert_true(lr__groups_stats(g, (uint32_t)a, x)->n == members);
    }
    for (size_t m = 0; m < h->models.n; m++) {
        double n = 0.0, c = 0.0, o = 0.0;
        for (uint32_t x = 0; x < g->n; x++) {
            const struct lr__group_stats *gs = lr__groups_stats(g, (uint32_t)m, x);
            n += gs->n;
            c += gs->sum_correct;
            o += gs->sum_output;
        }
        assert_true(n == h->mstats[m].n);
        assert_true(c == h->mstats[m].sum_correct);
        assert_true(o == h->mstats[m].sum_output);
    }
}

/* The store's copy, under the read lock: n records in their topics'
 * groups, each counted once. */
static void check_grouped(const struct lr_store *s, size_t n)
{
    check_topics(s, n);
    lr__store_rdlock(s);
    check_counted_once(lr__store_hist(s));
    lr__store_unlock(s);
}

static struct lr_store *open_dense_with(const char *name, int read_only, int defer_reweigh)
{
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    /* No dimension given: the store takes its first vector's. */
    struct lr_store_options o = {"remote-emb", 0, read_only, 0, 0, defer_reweigh};
    snprintf(db, sizeof(db), "%s/%s", tmpdir, name);
    if (lr_store_open(db, &o, &s, &err) != 0)
        fail_msg("lr_store_open: %s", err.message);
    return s;
}

static struct lr_store *open_dense(const char *name, int read_only)
{
    return open_dense_with(name, read_only, 0);
}

static void check_same_as_fresh_open(const struct lr__hist *h, const char *name);

/* With defer_reweigh (the gateway), the append that makes the grouping due
 * only marks it, and the next lr_store_refresh() groups the store, beside
 * the writers, the same way as a fresh open. */
static void dense_grouping_is_left_to_the_refresh_with_defer_reweigh(void **st)
{
    (void)st;
    struct lr_error err;
    int changed = 0;
    struct lr_store *s = open_dense_with("defer.db", 0, 1);
    for (size_t i = 0; i < LR__GROUPS_MIN_RECORDS; i++)
        add_dense_record(s, i);
    assert_int_equal(lr_store_count(s), LR__GROUPS_MIN_RECORDS);
    assert_int_equal(group_count(s), 0);
    assert_int_equal(lr_store_reweigh_due(s), 1);
    /* Appends go on meanwhile, into the copy without groups. */
    add_dense_record(s, LR__GROUPS_MIN_RECORDS);
    assert_int_equal(group_count(s), 0);
    assert_int_equal(lr_store_refresh(s, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_reweigh_due(s), 0);
    assert_int_equal(group_count(s), lr__groups_count_for(LR__GROUPS_MIN_RECORDS + 1));
    check_grouped(s, LR__GROUPS_MIN_RECORDS + 1);
    lr__store_rdlock(s);
    check_same_as_fresh_open(lr__store_hist(s), "defer.db");
    lr__store_unlock(s);
    lr_store_free(s);
}

static void dense_store_opened_empty_is_grouped_once_appends_reach_the_threshold(void **st)
{
    (void)st;
    struct lr_store *s = open_dense("empty.db", 0);
    for (size_t i = 0; i < LR__GROUPS_MIN_RECORDS - 1; i++)
        add_dense_record(s, i);
    assert_int_equal(group_count(s), 0);
    /* The append that makes groups possible groups the store. */
    add_dense_record(s, LR__GROUPS_MIN_RECORDS - 1);
    assert_int_equal(group_count(s), lr__groups_count_for(LR__GROUPS_MIN_RECORDS));
    check_grouped(s, LR__GROUPS_MIN_RECORDS);
    /* Later appends join them, each once, and are on disk. */
    for (size_t i = LR__GROUPS_MIN_RECORDS; i < 300; i++)
        add_dense_record(s, i);
    check_grouped(s, 300);
    assert_int_equal(lr_store_count(s), 300);
    lr_store_free(s);

    s = open_dense("empty.db", 0);
    assert_int_equal(lr_store_count(s), 300);
    check_grouped(s, 300);
    lr_store_free(s);
}

/* Model A's predicted quality for a query vector, through a smart router
 * with the default predictor. */
static double predicted_a(struct lr_router *r, const float *v)
{
    const char *const names[] = {"A", "B"};
    struct lr_request req;
    struct lr_decision d = {0};
    struct lr_candidate rank[2];
    struct lr_error err;
    lr_request_init(&req);
    req.models = names;
    req.n_models = 2;
    req.embedding = v;
    req.embedding_dim = 3;
    d.ranking = rank;
    d.ranking_cap = 2;
    if (lr_router_route(r, &req, &d, &err) != 0)
        fail_msg("lr_router_route: %s", err.message);
    assert_int_equal(d.n_ranked, 2);
    for (size_t i = 0; i < 2; i++)
        if (rank[i].index == 0)
            return rank[i].predicted_quality;
    fail_msg("A is not in the ranking");
    return NAN;
}

static void dense_groups_predict_each_cluster_rate_not_the_store_mean(void **st)
{
    (void)st;
    static const char cfg_text[] =
        "{\"models\": ["
        " {\"name\": \"A\", \"cost_per_input_token\": 1e-7, \"cost_per_output_token\": 1e-7},"
        " {\"name\": \"B\", \"cost_per_input_token\": 1e-6, \"cost_per_output_token\": 1e-6}]}";
    struct lr_config *cfg = NULL;
    struct lr_router *r = NULL;
    struct lr_router_options ro;
    struct lr_error err;
    struct lr_store_options so = {"remote-emb", 0, 0, 0, 0, 0};
    struct lr_store *s = NULL;
    /* A is right on every topic-0 record and wrong on every topic-1 one:
     * its rate is 1 and 0 in the clusters, 1/2 over the store. */
    float q0[3] = {1.0f, 0.12f, 0.02f}, q1[3] = {0.12f, 1.0f, 0.02f};
    assert_int_equal(lr_config_load_string(cfg_text, strlen(cfg_text), &cfg, &err), 0);
    assert_int_equal(lr_store_open(":memory:", &so, &s, &err), 0);
    lr_router_options_init(&ro);
    ro.strategy = "smart";
    ro.store = s;
    ro.predictor = "default";
    assert_int_equal(lr_router_new(cfg, &ro, &r, &err), 0);

    for (size_t i = 0; i < LR__GROUPS_MIN_RECORDS - 1; i++)
        add_dense_record(s, i);
    /* No groups yet: the 16 neighbours (all of the query's topic) are
     * shrunk toward the store's mean, (16 * rate + 10 * 1/2) / 26. */
    double before0 = predicted_a(r, q0), before1 = predicted_a(r, q1);
    assert_true(fabs(before0 - 21.0 / 26.0) < 0.01);
    assert_true(fabs(before1 - 5.0 / 26.0) < 0.01);

    add_dense_record(s, LR__GROUPS_MIN_RECORDS - 1);
    /* Grouped: the neighbours are shrunk toward their group's rate, which
     * is the cluster's (itself shrunk a little, by 2 records' worth, toward
     * the store's mean), so each query gets its cluster's rate. */
    double after0 = predicted_a(r, q0), after1 = predicted_a(r, q1);
    assert_true(after0 > 0.99);
    assert_true(after1 < 0.01);

    lr_router_free(r);
    lr_store_free(s);
    lr_config_free(cfg);
}

/* Record i of cluster i % 8: near axis i % 8 of 8 dimensions, seven
 * jittered variants each; model A right on even clusters. */
static void add_cluster_record(struct lr_store *s, size_t i)
{
    struct lr_error err;
    struct lr_outcome o = {"A", (i % 8) % 2 == 0 ? 1.0 : 0.0, (double)(i % 8)};
    struct lr_record r = {"text", 8, NULL, &o, 1};
    float v[8] = {0};
    v[i % 8] = 1.0f;
    v[(i + 1) % 8] = 0.1f + (float)(i % 7) * 0.01f;
    assert_int_equal(lr_store_add(s, &r, v, 8, &err), 0);
}

/* The groups a store holds now are those a fresh open of its file builds. */
static void check_same_as_fresh_open(const struct lr__hist *h, const char *name)
{
    struct lr_store *fresh = open_dense(name, 1);
    lr__store_rdlock(fresh);
    const struct lr__hist *f = lr__store_hist(fresh);
    const struct lr__groups *a = &h->groups, *b = &f->groups;
    assert_int_equal(f->n, h->n);
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->dim, b->dim);
    assert_memory_equal(a->of, b->of, h->n * sizeof(*a->of));
    assert_memory_equal(a->cdense, b->cdense, a->n * a->dim * sizeof(*a->cdense));
    for (size_t m = 0; m < h->models.n; m++)
        for (uint32_t x = 0; x < a->n; x++)
            assert_memory_equal(lr__groups_stats(a, (uint32_t)m, x),
                                lr__groups_stats(b, (uint32_t)m, x),
                                sizeof(struct lr__group_stats));
    lr__store_unlock(fresh);
    lr_store_free(fresh);
}

static void dense_groups_grow_as_appends_pass_each_quarter(void **st)
{
    (void)st;
    /* Regrouped at 256 records, then each time the store has grown by a
     * quarter (plus 16) since: the count follows the size. */
    static const size_t at[] = {256, 336, 436, 561, 717, 912, 1156};
    const size_t n_at = sizeof(at) / sizeof(at[0]);
    struct lr_store *s = open_dense("grow.db", 0);
    size_t next = 0, want = 0;
    dense_builds = 0;
    for (size_t i = 0; i < at[n_at - 1] + 10; i++) {
        add_cluster_record(s, i);
        int due = next < n_at && i + 1 == at[next];
        if (due)
            want = lr__groups_count_for(at[next++]);
        lr__store_rdlock(s);
        const struct lr__hist *h = lr__store_hist(s);
        assert_int_equal(h->groups.n, want);
        if (due) {
            check_counted_once(h);
            check_same_as_fresh_open(h, "grow.db");
        }
        lr__store_unlock(s);
    }
    /* One build per threshold, plus one per fresh open. */
    assert_int_equal(dense_builds, 2 * (int)n_at);
    assert_int_equal(lr__groups_count_for(at[n_at - 1]), 9);
    lr__store_rdlock(s);
    check_counted_once(lr__store_hist(s));
    lr__store_unlock(s);
    assert_int_equal(lr_store_count(s), at[n_at - 1] + 10);
    lr_store_free(s);
}

static void failed_regroup_keeps_the_append_and_tries_again_later(void **st)
{
    (void)st;
    struct lr_store *s = open_dense("fail.db", 0);
    size_t no;

    /* The first regroup (at 256 records) fails: the record is kept. */
    dense_builds = 0;
    fail_dense_build = 1;
    for (size_t i = 0; i < 256; i++)
        add_dense_record(s, i);
    assert_int_equal(dense_builds, 1);
    assert_int_equal(lr_store_count(s), 256);
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    assert_int_equal(h->groups.n, 0);
    assert_int_equal(h->didx.n, 256);
    const struct lr__outcome *o = lr__hist_outcomes(h, 255, &no);
    assert_int_equal(no, 1);
    assert_true(o[0].correctness == 0.0f && o[0].output_tokens == 100.0f);
    lr__store_unlock(s);

    /* Postponed, not given up: tried again a quarter later. */
    fail_dense_build = 0;
    for (size_t i = 256; i < 335; i++)
        add_dense_record(s, i);
    assert_int_equal(dense_builds, 1);
    add_dense_record(s, 335);
    assert_int_equal(dense_builds, 2);
    check_grouped(s, 336);

    /* A failure with groups in place keeps them whole: the appends that
     * follow join them, each once. */
    fail_dense_build = 1;
    for (size_t i = 336; i < 450; i++)
        add_dense_record(s, i);
    assert_int_equal(dense_builds, 3);
    assert_int_equal(group_count(s), lr__groups_count_for(336));
    check_grouped(s, 450);
    fail_dense_build = 0;
    for (size_t i = 450; i < 580; i++)
        add_dense_record(s, i);
    assert_int_equal(dense_builds, 4);
    assert_int_equal(group_count(s), lr__groups_count_for(561));
    lr__store_rdlock(s);
    check_counted_once(lr__store_hist(s));
    lr__store_unlock(s);
    assert_int_equal(lr_store_count(s), 580);
    lr_store_free(s);

    s = open_dense("fail.db", 0);
    assert_int_equal(lr_store_count(s), 580);
    lr__store_rdlock(s);
    check_counted_once(lr__store_hist(s));
    lr__store_unlock(s);
    lr_store_free(s);
}

/* The dense build splits its scans (the seeding's, the sample's
 * assignments each round, every record's at the end) over threads by
 * contiguous chunks (parallel.h): on 2, 3 and 8 threads it makes the same
 * groups and centroids as on one. 2,600 records in 20 directions of 8
 * dimensions, so that the sample (every record here) makes five chunks of
 * CHUNK_MIN (512) and the scans run on up to five threads. The only test
 * that runs the dense scans on several threads at once: under
 * ThreadSanitizer (make test's third pass) it checks that no chunk writes
 * what another reads. */
static void dense_groups_are_the_same_on_any_number_of_threads(void **st)
{
    struct lr_store_options o = {"remote-test", 8, 0, 0, 1, 1};
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr__groups one, many;
    const unsigned threads[] = {2, 3, 8};
    (void)st;

    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    for (size_t i = 0; i < 2600; i++) {
        float v[8] = {0};
        size_t d = i % 20;
        struct lr_outcome out = {"A", (double)(d % 2), 10.0};
        struct lr_record r = {"text", 8, NULL, &out, 1};
        v[d % 8] = 1.0f;
        v[(d / 8 + d + 1) % 8] = 0.5f + 0.02f * (float)(i % 7);
        assert_int_equal(lr_store_add(s, &r, v, 8, &err), 0);
    }
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    size_t n = h->n, c = lr__groups_count_for(n);
    assert_int_equal(n, 2600);
    assert_int_equal(__real_lr__groups_build_dense(&one, h, h->didx.m, 8, c, 1), 0);
    assert_true(one.n >= 2);
    for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
        assert_int_equal(__real_lr__groups_build_dense(&many, h, h->didx.m, 8, c, threads[t]),
                         0);
        assert_int_equal(many.n, one.n);
        assert_memory_equal(many.of, one.of, n * sizeof(*one.of));
        assert_memory_equal(many.cdense, one.cdense, one.n * 8 * sizeof(*one.cdense));
        lr__groups_free(&many);
    }
    lr__groups_free(&one);
    lr__store_unlock(s);
    lr_store_free(s);
}

/* ==== A running copy converging to a fresh open ==== */

/* Each query's predictions for models A and B on store s (k = 16,
 * default mode): q[query * 2 + model], o alike. */
static const char *const conv_queries[] = {
    novel_text,
    "apple banana cherry orchard fruit juice item3",
    "rocket orbit planet launch engine thrust item8",
    "violin cello orchestra symphony",
    "banana rocket violin",
};
#define N_CONV (sizeof(conv_queries) / sizeof(conv_queries[0]))

static void predict_all(const struct lr_store *s, double *q, double *o)
{
    struct lr__store_scratch sc;
    struct lr__predict_params p;
    struct lr__neighbor nb[16];
    lr__predict_params_default(&p);
    lr__store_scratch_init(&sc);
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    int ids[2] = {lr__hist_model_id(h, "A"), lr__hist_model_id(h, "B")};
    for (size_t i = 0; i < N_CONV; i++) {
        int n = lr__store_knn_text(s, conv_queries[i], strlen(conv_queries[i]), 16, &sc, nb);
        assert_true(n > 0);
        lr__predict(h, LR__PREDICT_DEFAULT, &p, nb, (size_t)n, 16, ids, 2, q + 2 * i, o + 2 * i);
    }
    lr__store_unlock(s);
    lr__store_scratch_free(&sc);
}

static struct lr_store *open_conv(int read_only, int defer_reweigh)
{
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options o = {NULL, 0, read_only, 0, 0, defer_reweigh};
    snprintf(db, sizeof(db), "%s/conv.db", tmpdir);
    if (lr_store_open(db, &o, &s, &err) != 0)
        fail_msg("lr_store_open: %s", err.message);
    return s;
}

/* A running handle (the gateway's: defer_reweigh) whose appends have not
 * grown the store by a quarter routes on weights and groups of its last
 * build, with the appended records added one by one, so its predictions
 * differ from a fresh open of the same file (`llmroute route`, a restart).
 * lr_store_rebuild() makes them the same, to the bit. */
static void rebuild_makes_the_running_copy_route_as_a_fresh_open(void **st)
{
    (void)st;
    struct lr_store *s = open_conv(0, 0), *fresh;
    struct lr_error err;
    double q[2 * N_CONV], o[2 * N_CONV], fq[2 * N_CONV], fo[2 * N_CONV];
    int changed = -1;
    for (size_t i = 0; i < 320; i++)
        add_topic_record(s, i);
    lr_store_free(s);

    s = open_conv(0, 1);
    assert_int_equal(lr_store_added_since_build(s), 0);
    /* 20 novel queries (A right), 50 on a third subject (B right, A wrong
     * on half), 10 more of the first topic with A wrong: 80 of 320 is one
     * short of the re-weighing (320 + 80 + 16). */
    for (int i = 0; i < 20; i++)
        add_novel_record(s, 1.0);
    for (int i = 0; i < 50; i++) {
        char text[96];
        struct lr_outcome oc[2] = {{"A", i % 2 ? 1.0 : 0.0, 200.0}, {"B", 1.0, 40.0}};
        snprintf(text, sizeof(text), "violin cello orchestra symphony opus%d", i);
        struct lr_record r = {text, 8, NULL, oc, 2};
        assert_int_equal(lr_store_add(s, &r, NULL, 0, &err), 0);
    }
    for (int i = 0; i < 10; i++) {
        struct lr_outcome oc = {"A", 0.0, 30.0};
        struct lr_record r = {"apple banana cherry orchard fruit juice late", 8, NULL, &oc, 1};
        assert_int_equal(lr_store_add(s, &r, NULL, 0, &err), 0);
    }
    assert_int_equal(lr_store_reweigh_due(s), 0);
    assert_int_equal(lr_store_added_since_build(s), 80);
    predict_all(s, q, o);
    fresh = open_conv(1, 0);
    predict_all(fresh, fq, fo);
    lr_store_free(fresh);
    /* The difference this is about. */
    assert_true(memcmp(q, fq, sizeof(q)) != 0);

    /* A refresh sees no other connection's commit: nothing to do. */
    assert_int_equal(lr_store_refresh(s, &changed, &err), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(lr_store_rebuild(s, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_added_since_build(s), 0);
    predict_all(s, q, o);
    assert_memory_equal(q, fq, sizeof(q));
    assert_memory_equal(o, fo, sizeof(o));
    /* Once built whole, there is nothing more to converge to. */
    assert_int_equal(lr_store_rebuild(s, &changed, &err), 0);
    assert_int_equal(changed, 0);
    lr_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(group_count_follows_the_store_size),
        cmocka_unit_test(sparse_store_groups_by_topic_and_appends_join),
        cmocka_unit_test(nearest_group_matches_plain_scoring),
        cmocka_unit_test(record_unlike_every_group_joins_none),
        cmocka_unit_test(rebuild_makes_the_running_copy_route_as_a_fresh_open),
        cmocka_unit_test(small_store_has_no_groups),
        cmocka_unit_test(dense_store_gets_groups_at_open),
        cmocka_unit_test(predictor_reads_the_neighbours_groups),
        cmocka_unit_test(records_without_a_feature_seed_no_group),
        cmocka_unit_test(dense_store_opened_empty_is_grouped_once_appends_reach_the_threshold),
        cmocka_unit_test(dense_groups_predict_each_cluster_rate_not_the_store_mean),
        cmocka_unit_test(dense_groups_grow_as_appends_pass_each_quarter),
        cmocka_unit_test(failed_regroup_keeps_the_append_and_tries_again_later),
        cmocka_unit_test(dense_grouping_is_left_to_the_refresh_with_defer_reweigh),
        cmocka_unit_test(dense_groups_are_the_same_on_any_number_of_threads),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
