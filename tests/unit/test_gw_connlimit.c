/* test_gw_connlimit.c -- the client connection cap from server.max_connections
 * and the descriptor limit: the default's formula, a configured cap raising
 * the soft limit only as far as it needs, and what does not fit; the log
 * sentence that says so; the count of open descriptors; and the plan
 * applied to this process's own limit. */
#include <fcntl.h>
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

/* The default under a soft limit below the hard one still leaves it be. */
static void default_never_raises_the_limit(void **state)
{
    struct cl_plan p;
    char msg[600];
    (void)state;
    cl_plan_make(0, 44, 40, 4096, &p);
    assert_int_equal(p.cap, 1);
    assert_false(p.raise);
    assert_int_equal(p.soft, 40);
    assert_false(p.fits);
    cl_plan_describe(&p, msg, sizeof msg);
    assert_null(strstr(msg, "raised"));
    assert_non_null(strstr(msg, "warning: that needs 46 descriptors"));
    assert_non_null(strstr(msg, "the limit is 40 (hard 4096)"));
}

/* The log line says the cap, and how it was chosen: the default's formula
 * with the limit and the descriptors kept, or the setting. */
static void describe_says_the_cap_and_where_it_came_from(void **state)
{
    struct cl_plan p;
    char msg[600];
    (void)state;
    cl_plan_make(0, 44, 1024, 4096, &p);
    cl_plan_describe(&p, msg, sizeof msg);
    assert_non_null(strstr(msg, "at most 490 client connections"));
    assert_non_null(strstr(msg, "server.max_connections unset"));
    assert_non_null(strstr(msg, "(descriptor limit 1024 - 44 kept) / 2"));
    assert_null(strstr(msg, "warning"));
    cl_plan_make(100, 44, 64, 4096, &p);
    cl_plan_describe(&p, msg, sizeof msg);
    assert_non_null(strstr(msg, "at most 100 client connections (server.max_connections)"));
    assert_non_null(strstr(msg, "from 64 to 244 (hard limit 4096)"));
    assert_null(strstr(msg, "warning"));
}

/* The warning names what the cap needs, both limits, and how many clients
 * the limit does fit: (512 - 44) / 2 = 234. */
static void warning_names_the_descriptors_needed_and_both_limits(void **state)
{
    struct cl_plan p;
    char msg[600];
    (void)state;
    cl_plan_make(1000, 44, 64, 512, &p);
    cl_plan_describe(&p, msg, sizeof msg);
    assert_non_null(strstr(msg, "from 64 to 512 (hard limit 512)"));
    assert_non_null(strstr(msg, "that needs 2044 descriptors (2 per connection + 44 kept)"));
    assert_non_null(strstr(msg, "the limit is 512 (hard 512)"));
    assert_non_null(strstr(msg, "with more than 234 clients"));
    assert_non_null(strstr(msg, "Lower server.max_connections or raise the hard limit"));
}

/* A buffer too small for the sentence holds its start and nothing past it. */
static void describe_stays_within_a_small_buffer(void **state)
{
    struct cl_plan p;
    char msg[300];
    (void)state;
    cl_plan_make(1000, 44, 64, 512, &p);
    memset(msg, '#', sizeof msg);
    cl_plan_describe(&p, msg, 40);
    assert_int_equal(strlen(msg), 39);
    assert_int_equal(strncmp(msg, "at most 1000 client connections", 31), 0);
    for (size_t i = 40; i < sizeof msg; i++)
        assert_int_equal(msg[i], '#');
}

/* The count is of this process's open descriptors, the ones fcntl() finds
 * below the soft limit: the directory read to count them is not among them. */
static void descriptors_open_is_the_number_open(void **state)
{
    struct rlimit rl;
    long probed = 0;
    (void)state;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    for (long fd = 0; fd < (long)rl.rlim_cur && fd < (1L << 20); fd++)
        probed += fcntl((int)fd, F_GETFD) != -1;
    assert_int_equal(cl_descriptors_open(), probed);
}

/* The plan applied to this process: a configured cap raises the soft limit
 * to what it needs, or to the hard limit when that is less. The limits are
 * set here first (lowering them needs no privilege). */
static void apply_raises_the_soft_limit_of_this_process(void **state)
{
    struct rlimit before, rl = {64, 1024};
    struct cl_plan p;
    (void)state;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &before), 0);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(cl_plan_apply(100, 44, &p), 0);
    assert_true(p.raise);
    assert_int_equal(p.soft, 244);
    assert_int_equal(p.hard, 1024);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(rl.rlim_cur, 244);
    assert_int_equal(cl_plan_apply(1000, 44, &p), 0);
    assert_true(p.raise);
    assert_false(p.fits);
    assert_int_equal(p.soft, 1024);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(rl.rlim_cur, 1024);
    /* A cap that fits leaves the limit as it is. */
    assert_int_equal(cl_plan_apply(10, 44, &p), 0);
    assert_false(p.raise);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(rl.rlim_cur, 1024);
    rl.rlim_cur = before.rlim_cur < 1024 ? before.rlim_cur : 1024;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
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
        cmocka_unit_test(default_never_raises_the_limit),
        cmocka_unit_test(describe_says_the_cap_and_where_it_came_from),
        cmocka_unit_test(warning_names_the_descriptors_needed_and_both_limits),
        cmocka_unit_test(describe_stays_within_a_small_buffer),
        cmocka_unit_test(descriptors_open_is_the_number_open),
        cmocka_unit_test(apply_raises_the_soft_limit_of_this_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
