/* test_gw_affinity.c -- the response id -> model table: what it keeps, the
 * least recently used entry leaving at capacity, a lower capacity applied
 * at once, a removed id forgotten, capacity 0 and over-long ids keeping
 * nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "affinity.h"

static int put(struct af_table *t, const char *id, const char *model)
{
    return af_table_put(t, id, strlen(id), model);
}

static const char *get(struct af_table *t, const char *id)
{
    return af_table_get(t, id, strlen(id));
}

static void keeps_the_model_of_an_id_and_replaces_it(void **state)
{
    struct af_table *t = af_table_new(10);
    (void)state;
    assert_int_equal(put(t, "resp_1", "a"), 0);
    assert_int_equal(put(t, "resp_2", "b"), 0);
    assert_string_equal(get(t, "resp_1"), "a");
    assert_string_equal(get(t, "resp_2"), "b");
    assert_null(get(t, "resp_3"));
    assert_null(af_table_get(t, "resp_1x", 6 + 1));
    assert_int_equal(put(t, "resp_1", "c"), 0);
    assert_string_equal(get(t, "resp_1"), "c");
    assert_int_equal(af_table_count(t), 2);
    af_table_free(t);
}

static void a_removed_id_is_forgotten(void **state)
{
    struct af_table *t = af_table_new(3);
    (void)state;
    put(t, "r1", "a");
    put(t, "r2", "b");
    put(t, "r3", "c");
    af_table_remove(t, "r2", 2);
    af_table_remove(t, "r9", 2); /* not held: nothing */
    assert_null(get(t, "r2"));
    assert_int_equal(af_table_count(t), 2);
    /* The LRU list is whole: two more puts push out r1 and r3 in order. */
    put(t, "r4", "d");
    assert_string_equal(get(t, "r1"), "a");
    put(t, "r5", "e");
    assert_null(get(t, "r3"));
    assert_string_equal(get(t, "r1"), "a");
    assert_string_equal(get(t, "r4"), "d");
    assert_string_equal(get(t, "r5"), "e");
    af_table_free(t);
}

static void least_recently_used_leaves_at_capacity(void **state)
{
    struct af_table *t = af_table_new(3);
    (void)state;
    put(t, "r1", "a");
    put(t, "r2", "a");
    put(t, "r3", "a");
    assert_non_null(get(t, "r1")); /* r2 is now the least recently used */
    put(t, "r4", "a");
    assert_int_equal(af_table_count(t), 3);
    assert_null(get(t, "r2"));
    assert_non_null(get(t, "r1"));
    assert_non_null(get(t, "r3"));
    assert_non_null(get(t, "r4"));
    af_table_set_capacity(t, 1); /* r4 was used last */
    assert_int_equal(af_table_count(t), 1);
    assert_non_null(get(t, "r4"));
    assert_null(get(t, "r1"));
    af_table_set_capacity(t, 0);
    assert_int_equal(af_table_count(t), 0);
    assert_int_equal(put(t, "r5", "a"), 1);
    assert_null(get(t, "r5"));
    af_table_free(t);
}

static void many_entries_grow_the_buckets(void **state)
{
    struct af_table *t = af_table_new(5000);
    char id[32];
    (void)state;
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof id, "resp_%d", i);
        assert_int_equal(put(t, id, i % 2 ? "odd" : "even"), 0);
    }
    assert_int_equal(af_table_count(t), 5000);
    assert_null(get(t, "resp_14999"));
    assert_string_equal(get(t, "resp_15000"), "even");
    assert_string_equal(get(t, "resp_19999"), "odd");
    af_table_free(t);
}

static void ids_over_the_cap_and_empty_ids_are_not_kept(void **state)
{
    struct af_table *t = af_table_new(10);
    char id[AF_ID_MAX + 2];
    (void)state;
    memset(id, 'x', sizeof id);
    assert_int_equal(af_table_put(t, id, AF_ID_MAX + 1, "a"), 1);
    assert_null(af_table_get(t, id, AF_ID_MAX + 1));
    assert_int_equal(af_table_put(t, id, AF_ID_MAX, "a"), 0);
    assert_string_equal(af_table_get(t, id, AF_ID_MAX), "a");
    assert_int_equal(af_table_put(t, "", 0, "a"), 1);
    af_table_free(t);
    af_table_free(NULL);
}

static void capacity_is_what_was_set_not_what_is_held(void **state)
{
    struct af_table *t = af_table_new(7);
    (void)state;
    assert_int_equal(af_table_capacity(t), 7);
    put(t, "r1", "a");
    assert_int_equal(af_table_capacity(t), 7);
    af_table_set_capacity(t, 3);
    assert_int_equal(af_table_capacity(t), 3);
    assert_int_equal(af_table_count(t), 1);
    af_table_free(t);
}

/* A put of an id already held moves it to the front, whether its model
 * changes or not: the id put again is not the next to go. */
static void putting_a_held_id_again_makes_it_the_most_recent(void **state)
{
    struct af_table *t = af_table_new(2);
    (void)state;
    put(t, "r1", "a");
    put(t, "r2", "b");
    assert_int_equal(put(t, "r1", "c"), 0);
    put(t, "r3", "d"); /* r2 goes */
    assert_null(get(t, "r2"));
    assert_string_equal(get(t, "r1"), "c");
    put(t, "r4", "e"); /* r3 goes */
    assert_int_equal(put(t, "r4", "e"), 0);
    assert_int_equal(put(t, "r1", "c"), 0);
    put(t, "r5", "f"); /* r4, put again before r1, goes */
    assert_null(get(t, "r4"));
    assert_string_equal(get(t, "r1"), "c");
    assert_string_equal(get(t, "r5"), "f");
    af_table_free(t);
}

/* Whichever place an id holds in the use order, and an id of AF_ID_MAX
 * bytes too (one the table keeps), a remove forgets it. */
static void a_remove_forgets_the_newest_and_the_longest(void **state)
{
    struct af_table *t = af_table_new(4);
    char id[AF_ID_MAX];
    (void)state;
    put(t, "r1", "a");
    put(t, "r2", "b");
    af_table_remove(t, "r2", 2); /* the most recently used */
    assert_null(get(t, "r2"));
    assert_int_equal(af_table_count(t), 1);
    af_table_remove(t, "r1", 2); /* the only one */
    assert_null(get(t, "r1"));
    assert_int_equal(af_table_count(t), 0);
    memset(id, 'y', sizeof id);
    assert_int_equal(af_table_put(t, id, AF_ID_MAX, "a"), 0);
    af_table_remove(t, id, AF_ID_MAX);
    assert_null(af_table_get(t, id, AF_ID_MAX));
    assert_int_equal(af_table_count(t), 0);
    assert_int_equal(put(t, "r3", "c"), 0); /* the emptied table still works */
    assert_string_equal(get(t, "r3"), "c");
    af_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keeps_the_model_of_an_id_and_replaces_it),
        cmocka_unit_test(least_recently_used_leaves_at_capacity),
        cmocka_unit_test(a_removed_id_is_forgotten),
        cmocka_unit_test(many_entries_grow_the_buckets),
        cmocka_unit_test(ids_over_the_cap_and_empty_ids_are_not_kept),
        cmocka_unit_test(capacity_is_what_was_set_not_what_is_held),
        cmocka_unit_test(putting_a_held_id_again_makes_it_the_most_recent),
        cmocka_unit_test(a_remove_forgets_the_newest_and_the_longest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
