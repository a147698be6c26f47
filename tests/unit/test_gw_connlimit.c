/* test_gw_connlimit.c -- the client connection cap from server.max_connections
 * and the descriptor limit: the default's formula, a configured cap raising
 * the soft limit only as far as it needs, and what does not fit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "connlimit.h"

static void default_leaves_one_upstream_descriptor_per_connection(void **state)
{
    struct cl_plan p;
    (void)state;
    cl_plan_make(0, 44, 1024, 4096, &p);
    assert_int_equal(p.cap, (1024 - 44) / 2);
    assert_false(p.configured);
    assert_false(p.raise);
    assert_true(p.fits);
    assert_int_equal(p.soft, 1024);
    cl_plan_make(0, 43, 64, 64, &p);
    assert_int_equal(p.cap, 10);
    assert_true(p.fits);
}

static void default_under_a_tiny_limit_is_one_and_does_not_fit(void **state)
{
    struct cl_plan p;
    (void)state;
    cl_plan_make(0, 44, 40, 40, &p);
    assert_int_equal(p.cap, 1);
    assert_false(p.fits);
    assert_false(p.raise);
}

static void default_under_an_unlimited_limit_is_the_largest_cap(void **state)
{
    struct cl_plan p;
    (void)state;
    cl_plan_make(0, 44, (unsigned long long)RLIM_INFINITY, (unsigned long long)RLIM_INFINITY, &p);
    assert_int_equal(p.cap, CL_MAX);
    assert_true(p.fits);
    assert_false(p.raise);
}

static void configured_cap_raises_the_soft_limit_as_far_as_it_needs(void **state)
{
    struct cl_plan p;
    char msg[600];
    (void)state;
    cl_plan_make(100, 44, 64, 4096, &p);
    assert_int_equal(p.cap, 100);
    assert_int_equal(p.needed, 244);
    assert_true(p.raise);
    assert_int_equal(p.soft, 244);
    assert_true(p.fits);
    cl_plan_describe(&p, msg, sizeof msg);
    assert_non_null(strstr(msg, "raised the descriptor limit from 64 to 244"));
    /* A cap that fits changes nothing. */
    cl_plan_make(100, 44, 1024, 4096, &p);
    assert_false(p.raise);
    assert_int_equal(p.soft, 1024);
}

static void configured_cap_past_the_hard_limit_is_kept_with_a_warning(void **state)
{
    struct cl_plan p;
    char msg[600];
    (void)state;
    cl_plan_make(1000, 44, 64, 512, &p);
    assert_int_equal(p.cap, 1000);
    assert_true(p.raise);
    assert_int_equal(p.soft, 512);
    assert_false(p.fits);
    cl_plan_describe(&p, msg, sizeof msg);
    assert_non_null(strstr(msg, "warning"));
    assert_non_null(strstr(msg, "server.max_connections"));
    cl_plan_make(1000, 44, 512, 512, &p);
    assert_false(p.raise);
    assert_false(p.fits);
}

static void descriptors_open_counts_a_new_one(void **state)
{
    long before = cl_descriptors_open(), after;
    FILE *f = tmpfile();
    (void)state;
    assert_true(before >= 3);
    assert_non_null(f);
    after = cl_descriptors_open();
    fclose(f);
    assert_int_equal(after, before + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_leaves_one_upstream_descriptor_per_connection),
        cmocka_unit_test(default_under_a_tiny_limit_is_one_and_does_not_fit),
        cmocka_unit_test(default_under_an_unlimited_limit_is_the_largest_cap),
        cmocka_unit_test(configured_cap_raises_the_soft_limit_as_far_as_it_needs),
        cmocka_unit_test(configured_cap_past_the_hard_limit_is_kept_with_a_warning),
        cmocka_unit_test(descriptors_open_counts_a_new_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
