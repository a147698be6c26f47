/* test_predict.c -- the predictor on a hand-computed fixture: aios mode is
 * the plain mean (0 and 0 without data), default mode weights by similarity
 * and shrinks toward the neighbours' groups (built here by hand) and each
 * model's overall record. Single-threaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "predict.h"

/* rec0: A 1/10, B 0/100   rec1: A 0/20, B 1/200   rec2: A 1/30   rec3: C 1/5 */
static struct lr_store *fixture(void)
{
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_outcome o0[] = {{"A", 1, 10}, {"B", 0, 100}};
    struct lr_outcome o1[] = {{"A", 0, 20}, {"B", 1, 200}};
    struct lr_outcome o2[] = {{"A", 1, 30}};
    struct lr_outcome o3[] = {{"C", 1, 5}};
    struct lr_record r[] = {{"zero", 1, NULL, o0, 2},
                            {"one", 1, NULL, o1, 2},
                            {"two", 1, NULL, o2, 1},
                            {"three", 1, NULL, o3, 1}};
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(lr_store_add(s, &r[i], NULL, 0, &err), 0);
    return s;
}

static const struct lr__neighbor NB[3] = {{0, 0.9f}, {1, 0.8f}, {2, 0.7f}};

static void ids_of(const struct lr__hist *h, int *ids)
{
    ids[0] = lr__hist_model_id(h, "A");
    ids[1] = lr__hist_model_id(h, "B");
    ids[2] = lr__hist_model_id(h, "C");
    ids[3] = lr__hist_model_id(h, "never-seen");
    assert_true(ids[0] >= 0 && ids[1] >= 0 && ids[2] >= 0);
    assert_int_equal(ids[3], -1);
}

static void aios_mode_is_the_plain_mean(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    struct lr__predict_params p;
    double q[4], o[4];
    int ids[4];
    lr__predict_params_default(&p);
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    lr__predict(h, LR__PREDICT_AIOS, &p, NB, 3, 3, ids, 4, q, o);
    lr__store_unlock(s);
    assert_true(fabs(q[0] - 2.0 / 3.0) < 1e-9);
    assert_true(fabs(o[0] - 20.0) < 1e-9);
    assert_true(fabs(q[1] - 0.5) < 1e-9);
    assert_true(fabs(o[1] - 150.0) < 1e-9);
    /* No neighbour has data for C, nor anyone for the unseen model: 0, 0. */
    assert_true(q[2] == 0.0 && o[2] == 0.0);
    assert_true(q[3] == 0.0 && o[3] == 0.0);
    /* A temperature weighs the default mode's neighbours only: aios keeps
     * the plain mean whatever it is. */
    p.temperature = 0.1;
    lr__store_rdlock(s);
    h = lr__store_hist(s);
    lr__predict(h, LR__PREDICT_AIOS, &p, NB, 3, 3, ids, 2, q, o);
    lr__store_unlock(s);
    assert_true(fabs(q[0] - 2.0 / 3.0) < 1e-9);
    assert_true(fabs(o[0] - 20.0) < 1e-9);
    assert_true(fabs(q[1] - 0.5) < 1e-9);
    assert_true(fabs(o[1] - 150.0) < 1e-9);
    lr_store_free(s);
}

static void default_mode_weights_and_shrinks(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    struct lr__predict_params p = {0.1, 2.0, 1.0, 0.0, 0.0, 0.0, 0};
    double q[4], o[4];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB, 3, 3, ids, 4, q, o);
    lr__store_unlock(s);
    double w0 = 1.0, w1 = exp(-0.1 / 0.1), w2 = exp(-0.2 / 0.1);
    /* A: overall 2 of 3 correct, mean output 20. */
    double qa = (w0 * 1 + w1 * 0 + w2 * 1 + 2.0 * (2.0 / 3.0)) / (w0 + w1 + w2 + 2.0);
    double oa = (w0 * 10 + w1 * 20 + w2 * 30 + 1.0 * 20.0) / (w0 + w1 + w2 + 1.0);
    assert_true(fabs(q[0] - qa) < 1e-6);
    assert_true(fabs(o[0] - oa) < 1e-4);
    /* B: overall 1 of 2, mean output 150. */
    double qb = (w0 * 0 + w1 * 1 + 2.0 * 0.5) / (w0 + w1 + 2.0);
    assert_true(fabs(q[1] - qb) < 1e-6);
    /* C has no neighbour data but a record elsewhere: its overall mean, not 0. */
    assert_true(fabs(q[2] - 1.0) < 1e-9);
    assert_true(fabs(o[2] - 5.0) < 1e-6);
    /* A model the store never saw: quality unknown, length pooled. */
    assert_true(isnan(q[3]));
    assert_true(o[3] > 0.0);
    lr_store_free(s);
}

static void default_without_weights_or_prior_equals_aios(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    struct lr__predict_params p = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0};
    double qd[2], od[2], qa[2], oa[2];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB, 3, 3, ids, 2, qd, od);
    lr__predict(h, LR__PREDICT_AIOS, &p, NB, 3, 3, ids, 2, qa, oa);
    lr__store_unlock(s);
    for (int j = 0; j < 2; j++) {
        assert_true(fabs(qd[j] - qa[j]) < 1e-9);
        assert_true(fabs(od[j] - oa[j]) < 1e-9);
    }
    lr_store_free(s);
}

/* Four neighbours, for tests that take the first k of them. */
static const struct lr__neighbor NB4[4] = {{0, 0.9f}, {1, 0.8f}, {2, 0.7f}, {3, 0.6f}};

/* Group the fixture by hand: rec0 and rec1 near one direction, rec2 and
 * rec3 near another; returns the group of rec0. */
static uint32_t group_fixture(const struct lr__hist *hc)
{
    struct lr__hist *h = (struct lr__hist *)hc; /* no reader meanwhile */
    static const float rows[4 * 2] = {1.0f, 0.0f, 0.995f, 0.0998f, 0.0f, 1.0f, 0.0998f, 0.995f};
    lr__groups_free(&h->groups);
    assert_int_equal(lr__groups_build_dense(&h->groups, h, rows, 2, 2, 1), 0);
    assert_int_equal(h->groups.n, 2);
    assert_int_equal(h->groups.of[0], h->groups.of[1]);
    assert_int_equal(h->groups.of[2], h->groups.of[3]);
    assert_int_not_equal(h->groups.of[0], h->groups.of[2]);
    return h->groups.of[0];
}

static void default_shrinks_local_toward_group_then_store(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    /* equal weights, m_o = 1, m_q = 2, m_w = 3, m_wo = 0 */
    struct lr__predict_params p = {0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0};
    double q[4], o[4];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    group_fixture(h);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB4, 4, 1, ids, 4, q, o);
    lr__store_unlock(s);
    /* k = 1: rec0 alone, its group {rec0, rec1} the whole mixture.
     * A: group 1 of 2, outputs 30; store 2/3 and 20. group q =
     * (1 + 3 * 2/3) / (2 + 3) = 3/5; q = (1 + 2 * 3/5) / (1 + 2) = 11/15.
     * group o = 15 (m_wo = 0); o = (10 + 1 * 15) / 2 = 12.5. */
    assert_true(fabs(q[0] - 11.0 / 15.0) < 1e-9);
    assert_true(fabs(o[0] - 12.5) < 1e-6);
    /* B: group 1 of 2, outputs 300; store 1/2 and 150. group q =
     * (1 + 1.5) / 5 = 1/2; q = (0 + 2 * 1/2) / 3 = 1/3. o = (100 + 150) / 2. */
    assert_true(fabs(q[1] - 1.0 / 3.0) < 1e-9);
    assert_true(fabs(o[1] - 125.0) < 1e-6);
    /* C: nothing in the group: the store's mean (1, 5 tokens). */
    assert_true(fabs(q[2] - 1.0) < 1e-9);
    assert_true(fabs(o[2] - 5.0) < 1e-6);
    assert_true(isnan(q[3]));
    lr_store_free(s);
}

static void neighbours_in_two_groups_mix_them_by_share(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    /* m_q = 1, m_w = 0: the groups' plain means, mixed half and half. */
    struct lr__predict_params p = {0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0};
    double q[1], o[1];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    group_fixture(h);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB4, 4, 4, ids, 1, q, o);
    lr__store_unlock(s);
    /* A: group {rec0, rec1} 1 of 2, group {rec2, rec3} 1 of 1; mixture
     * 0.5 * 0.5 + 0.5 * 1 = 0.75. Local: 2 of 3. q = (2 + 0.75) / 4. */
    assert_true(fabs(q[0] - 2.75 / 4.0) < 1e-9);
    assert_true(fabs(o[0] - 20.0) < 1e-6); /* m_o = 0: the local mean */
    lr_store_free(s);
}

static void leave_one_out_takes_the_record_out_of_its_group(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    struct lr__predict_params p = {0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0};
    double q[1], o[1], qx[1], ox[1];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    group_fixture(h);
    /* rec1 (A wrong, 20 tokens) predicted from rec0 alone. */
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB4, 4, 1, ids, 1, q, o);
    lr__predict_excluding(h, LR__PREDICT_DEFAULT, &p, NB4, 4, 1, ids, 1, 1, qx, ox);
    lr__store_unlock(s);
    /* With rec1: group 1 of 2, q = (1 + 0.5) / 2. Without: group 1 of 1. */
    assert_true(fabs(q[0] - 0.75) < 1e-9);
    assert_true(fabs(qx[0] - 1.0) < 1e-9);
    assert_true(fabs(ox[0] - 10.0) < 1e-6);
    lr_store_free(s);
}

/* A model the store never saw: its length is the neighbours' outputs of
 * every model, shrunk with m_o toward the store's mean output over every
 * model's outcomes. */
static void unseen_model_length_pools_every_model(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    struct lr__predict_params p = {0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0};
    double q[4], o[4];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB, 3, 3, ids, 4, q, o);
    lr__store_unlock(s);
    /* Neighbours rec0 to rec2: five outcomes, 10 + 100 + 20 + 200 + 30
     * tokens. The store: six outcomes, those and C's 5. */
    double store_mean = (10.0 + 100 + 20 + 200 + 30 + 5) / 6.0;
    double want = (360.0 + 2.0 * store_mean) / (5.0 + 2.0);
    assert_true(isnan(q[3]));
    assert_true(fabs(o[3] - want) < 1e-6);
    lr_store_free(s);
}

/* Take record rec out of its group's totals and put it in none, as the
 * store does with a record that shares no feature with any centroid. */
static void ungroup(const struct lr__hist *hc, uint32_t rec)
{
    struct lr__hist *h = (struct lr__hist *)hc; /* no reader meanwhile */
    uint32_t grp = h->groups.of[rec];
    size_t no;
    const struct lr__outcome *oc = lr__hist_outcomes(h, rec, &no);
    for (size_t y = 0; y < no; y++) {
        struct lr__group_stats *gs =
            (struct lr__group_stats *)lr__groups_stats(&h->groups, oc[y].model, grp);
        gs->n -= 1.0;
        gs->sum_correct -= oc[y].correctness;
        gs->sum_output -= oc[y].output_tokens;
    }
    h->groups.of[rec] = LR__GROUPS_NONE;
}

/* A neighbour in no group puts its share of the mixture on the store's
 * means, for quality and for length. */
static void neighbour_in_no_group_puts_its_share_on_the_store_mean(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    /* equal weights, m_o = 1, m_q = 1, m_w = 0, m_wo = 0 */
    struct lr__predict_params p = {0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0};
    static const struct lr__neighbor nb[3] = {{0, 0.9f}, {2, 0.7f}, {3, 0.6f}};
    double q[1], o[1];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    group_fixture(h);
    ungroup(h, 3);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, nb, 3, 3, ids, 1, q, o);
    lr__store_unlock(s);
    /* A, a third each: group {rec0, rec1} 1 of 2 right, outputs 30;
     * group {rec2} 1 of 1, output 30; rec3 in none, the store's 2 of 3 and
     * mean output 20. Local: rec0 and rec2, 2 of 2, outputs 40. */
    double group_q = (0.5 + 1.0 + 2.0 / 3.0) / 3.0;
    double group_o = (15.0 + 30.0 + 20.0) / 3.0;
    assert_true(fabs(q[0] - (2.0 + group_q) / 3.0) < 1e-9);
    assert_true(fabs(o[0] - (40.0 + group_o) / 3.0) < 1e-6);
    lr_store_free(s);
}

/* Leaving a record out takes its outcomes, correctness and output tokens
 * both, out of its own group's totals only, not out of the other groups
 * of the mixture. */
static void leave_one_out_corrects_only_the_records_own_group(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    /* equal weights, m_o = 1, m_q = 1, m_w = 1, m_wo = 0 */
    struct lr__predict_params p = {0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0};
    static const struct lr__neighbor nb[2] = {{0, 0.9f}, {2, 0.7f}};
    double q[1], o[1];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    group_fixture(h);
    /* rec1 (A wrong, 20 tokens) predicted from rec0 and rec2, half in
     * each group; rec1 is in rec0's group only. */
    lr__predict_excluding(h, LR__PREDICT_DEFAULT, &p, nb, 2, 2, ids, 1, 1, q, o);
    lr__store_unlock(s);
    /* A's store mean 2/3, output 20. Without rec1, group {rec0}: 1 of 1,
     * output 10; group {rec2, rec3} as it is: 1 of 1, output 30. */
    double g0_q = (1.0 + 1.0 * 2.0 / 3.0) / (1.0 + 1.0), g1_q = (1.0 + 1.0 * 2.0 / 3.0) / 2.0;
    double group_q = 0.5 * g0_q + 0.5 * g1_q, group_o = 0.5 * 10.0 + 0.5 * 30.0;
    /* Local: rec0 and rec2, 2 of 2 right, outputs 40. */
    assert_true(fabs(q[0] - (2.0 + group_q) / 3.0) < 1e-9);
    assert_true(fabs(o[0] - (40.0 + group_o) / 3.0) < 1e-6);
    lr_store_free(s);
}

static void small_store_shrinks_toward_the_store_mean(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    /* Four records: no groups; m_s = 2 toward the store's mean. */
    struct lr__predict_params p = {0.0, 2.0, 0.0, 100.0, 0.0, 0.0, 0};
    double q[1], o[1];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    assert_int_equal(h->groups.n, 0);
    ids_of(h, ids);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB4, 4, 1, ids, 1, q, o);
    lr__store_unlock(s);
    /* A: local rec0 1 of 1; store 2/3: (1 + 2 * 2/3) / 3 = 7/9. */
    assert_true(fabs(q[0] - 7.0 / 9.0) < 1e-9);
    assert_true(fabs(o[0] - 10.0) < 1e-6);
    lr_store_free(s);
}

static void aios_mode_ignores_the_local_tail_and_groups(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    struct lr__predict_params p;
    double q[4], o[4];
    int ids[4];
    lr__predict_params_default(&p);
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    group_fixture(h);
    /* Four neighbours given, k = 1: only rec0 counts, groups do not. */
    lr__predict(h, LR__PREDICT_AIOS, &p, NB4, 4, 1, ids, 4, q, o);
    lr__store_unlock(s);
    assert_true(q[0] == 1.0 && o[0] == 10.0);
    assert_true(q[1] == 0.0 && o[1] == 100.0);
    assert_true(q[2] == 0.0 && o[2] == 0.0);
    lr_store_free(s);
}

static void mode_names_parse(void **st)
{
    (void)st;
    enum lr__predict_mode m;
    assert_int_equal(lr__predict_mode_parse(NULL, &m), 0);
    assert_int_equal(m, LR__PREDICT_DEFAULT);
    assert_int_equal(lr__predict_mode_parse("aios", &m), 0);
    assert_int_equal(m, LR__PREDICT_AIOS);
    assert_int_equal(lr__predict_mode_parse("oracle", &m), LR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aios_mode_is_the_plain_mean),
        cmocka_unit_test(default_mode_weights_and_shrinks),
        cmocka_unit_test(default_without_weights_or_prior_equals_aios),
        cmocka_unit_test(default_shrinks_local_toward_group_then_store),
        cmocka_unit_test(neighbours_in_two_groups_mix_them_by_share),
        cmocka_unit_test(leave_one_out_takes_the_record_out_of_its_group),
        cmocka_unit_test(small_store_shrinks_toward_the_store_mean),
        cmocka_unit_test(unseen_model_length_pools_every_model),
        cmocka_unit_test(neighbour_in_no_group_puts_its_share_on_the_store_mean),
        cmocka_unit_test(leave_one_out_corrects_only_the_records_own_group),
        cmocka_unit_test(aios_mode_ignores_the_local_tail_and_groups),
        cmocka_unit_test(mode_names_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
