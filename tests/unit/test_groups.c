/* test_groups.c -- groups of similar records: a sparse store grouped when
 * its copy is rebuilt, a dense store grouped at open, appends joining the
 * nearest group and its totals, small stores without groups.
 * Single-threaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "predict.h"
#include "store.h"

static char tmpdir[256];

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
    static const char *files[] = {"dense.db", "dense.db-wal", "dense.db-shm"};
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

static void sparse_store_groups_by_topic_and_appends_join(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    /* Appends rebuild the copy at 314 records (growth by a quarter), which
     * groups it; the last ones join a group one by one. */
    for (size_t i = 0; i < 320; i++)
        add_topic_record(s, i);
    lr__store_rdlock(s);
    check_topic_groups(lr__store_hist(s), 320);
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
    lr__store_rdlock(s);
    assert_int_equal(lr__store_hist(s)->groups.n, 0);
    lr__store_unlock(s);
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
    assert_int_equal(lr_store_add(s, &r, v, 3, &err), 0);
}

static void dense_store_gets_groups_at_open(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options o = {"remote-emb", 3, 0, 0};
    snprintf(db, sizeof(db), "%s/dense.db", tmpdir);
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    for (size_t i = 0; i < 300; i++)
        add_dense_record(s, i);
    /* A dense store is not rebuilt by appends: no groups until opened. */
    lr__store_rdlock(s);
    assert_int_equal(lr__store_hist(s)->groups.n, 0);
    lr__store_unlock(s);
    lr_store_free(s);

    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    lr__store_rdlock(s);
    check_topic_groups(lr__store_hist(s), 300);
    lr__store_unlock(s);
    for (size_t i = 300; i < 305; i++)
        add_dense_record(s, i);
    lr__store_rdlock(s);
    check_topic_groups(lr__store_hist(s), 305);
    lr__store_unlock(s);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(group_count_follows_the_store_size),
        cmocka_unit_test(sparse_store_groups_by_topic_and_appends_join),
        cmocka_unit_test(small_store_has_no_groups),
        cmocka_unit_test(dense_store_gets_groups_at_open),
        cmocka_unit_test(predictor_reads_the_neighbours_groups),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
