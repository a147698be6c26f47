/* test_predict.c -- the predictor on a hand-computed fixture: aios mode is
 * the plain mean (0 and 0 without data), default mode weights by similarity
 * and shrinks toward each model's overall record. Single-threaded. */
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
    lr_store_free(s);
}

static void default_mode_weights_and_shrinks(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    struct lr__predict_params p = {0.1, 2.0, 1.0, 0, 0.0, 0.0, 0.0};
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
    struct lr__predict_params p = {0.0, 0.0, 0.0, 0, 0.0, 0.0, 0.0};
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

/* Four neighbours: the first k = 1 is local, all four the wide
 * neighbourhood (K = 4). */
static const struct lr__neighbor NB4[4] = {{0, 0.9f}, {1, 0.8f}, {2, 0.7f}, {3, 0.6f}};

static void default_shrinks_local_toward_wide_then_store(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    /* equal weights, m_o = 1, K = 4 (any share), m_q = 2, m_w = 3 */
    struct lr__predict_params p = {0.0, 0.0, 1.0, 4, 1.0, 2.0, 3.0};
    double q[4], o[4];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB4, 4, 1, ids, 4, q, o);
    lr__store_unlock(s);
    /* A: wide = rec0..2: 2 correct of 3, outputs 60 in all; store mean 2/3
     * and 20. wide q = (2 + 3 * 2/3) / (3 + 3) = 2/3; local rec0: 1 of 1,
     * q = (1 + 2 * 2/3) / (1 + 2) = 7/9. wide o = (60 + 3 * 20) / 6 = 20;
     * o = (10 + 1 * 20) / (1 + 1) = 15. */
    assert_true(fabs(q[0] - 7.0 / 9.0) < 1e-9);
    assert_true(fabs(o[0] - 15.0) < 1e-6);
    /* B: wide = rec0, rec1: 1 of 2, outputs 300; store mean 1/2 and 150.
     * wide q = (1 + 1.5) / 5 = 0.5; q = (0 + 2 * 0.5) / 3 = 1/3.
     * wide o = (300 + 450) / 5 = 150; o = (100 + 150) / 2 = 125. */
    assert_true(fabs(q[1] - 1.0 / 3.0) < 1e-9);
    assert_true(fabs(o[1] - 125.0) < 1e-6);
    /* C: no local outcome, one wide (rec3: 1, 5 tokens), store mean 1 and 5:
     * the wide estimate, which is the store's here. */
    assert_true(fabs(q[2] - 1.0) < 1e-9);
    assert_true(fabs(o[2] - 5.0) < 1e-6);
    assert_true(isnan(q[3]));
    lr_store_free(s);
}

static void wide_neighbourhood_without_store_prior_is_its_mean(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    /* m_w = 0: the wide mean as the prior; K = 2 cuts the wide list. */
    struct lr__predict_params p = {0.0, 0.0, 0.0, 2, 1.0, 1.0, 0.0};
    double q[3], o[3];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB4, 4, 1, ids, 3, q, o);
    lr__store_unlock(s);
    /* A: wide rec0, rec1: 1 of 2 -> 0.5; local rec0: 1. q = (1 + 0.5) / 2. */
    assert_true(fabs(q[0] - 0.75) < 1e-9);
    assert_true(fabs(o[0] - 10.0) < 1e-6); /* m_o = 0: the local mean */
    /* C: neither local nor wide (K = 2) outcome: the store's mean. */
    assert_true(fabs(q[2] - 1.0) < 1e-9);
    assert_true(fabs(o[2] - 5.0) < 1e-6);
    lr_store_free(s);
}

static void small_store_shrinks_toward_the_store_mean(void **st)
{
    (void)st;
    struct lr_store *s = fixture();
    /* K = 4 but at most a quarter of the 4 records: 1, not wider than
     * k = 1, so no wide level: m_s = 2 toward the store's mean. */
    struct lr__predict_params p = {0.0, 2.0, 0.0, 4, 0.25, 100.0, 0.0};
    double q[1], o[1];
    int ids[4];
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    ids_of(h, ids);
    lr__predict(h, LR__PREDICT_DEFAULT, &p, NB4, 4, 1, ids, 1, q, o);
    lr__store_unlock(s);
    /* A: local rec0 1 of 1; store 2/3: (1 + 2 * 2/3) / 3 = 7/9. */
    assert_true(fabs(q[0] - 7.0 / 9.0) < 1e-9);
    assert_true(fabs(o[0] - 10.0) < 1e-6);
    lr_store_free(s);
}

static void aios_mode_ignores_the_wide_neighbourhood(void **st)
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
    /* Four neighbours given, k = 1: only rec0 counts. */
    lr__predict(h, LR__PREDICT_AIOS, &p, NB4, 4, 1, ids, 4, q, o);
    lr__store_unlock(s);
    assert_true(q[0] == 1.0 && o[0] == 10.0);
    assert_true(q[1] == 0.0 && o[1] == 100.0);
    assert_true(q[2] == 0.0 && o[2] == 0.0);
    lr_store_free(s);
}

static void fetch_asks_for_the_wider_of_k_and_wide_k(void **st)
{
    (void)st;
    struct lr__predict_params p = {0.0, 10.0, 0.0, 192, 0.125, 64.0, 8.0};
    assert_int_equal(lr__predict_fetch(LR__PREDICT_DEFAULT, &p, 16), 192);
    assert_int_equal(lr__predict_fetch(LR__PREDICT_DEFAULT, &p, 300), 300);
    assert_int_equal(lr__predict_fetch(LR__PREDICT_AIOS, &p, 16), 16);
    p.wide_k = 0;
    assert_int_equal(lr__predict_fetch(LR__PREDICT_DEFAULT, &p, 16), 16);
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
        cmocka_unit_test(default_shrinks_local_toward_wide_then_store),
        cmocka_unit_test(wide_neighbourhood_without_store_prior_is_its_mean),
        cmocka_unit_test(small_store_shrinks_toward_the_store_mean),
        cmocka_unit_test(aios_mode_ignores_the_wide_neighbourhood),
        cmocka_unit_test(fetch_asks_for_the_wider_of_k_and_wide_k),
        cmocka_unit_test(mode_names_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
