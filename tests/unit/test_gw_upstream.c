/* test_gw_upstream.c -- upstream.c's classing of a libcurl transfer that
 * could not connect: the gateway out of descriptors, or the upstream. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "upstream.h"

static void no_socket_for_want_of_descriptors_is_descriptors(void **state)
{
    (void)state;
    assert_int_equal(up_couldnt_connect_error(0, EMFILE), UP_EDESCRIPTORS);
    assert_int_equal(up_couldnt_connect_error(0, ENFILE), UP_EDESCRIPTORS);
}

static void a_refusal_after_a_descriptor_shortage_is_the_upstreams(void **state)
{
    (void)state;
    /* A host with several addresses: socket() failed with EMFILE for the
     * first, then one was made for the next and its connect was refused.
     * It was classed descriptors: breaker-neutral, no fallback, 503. */
    assert_int_equal(up_couldnt_connect_error(1, EMFILE), UP_ECONNREFUSED);
    /* ... and the other way round: refused, then no descriptor. */
    assert_int_equal(up_couldnt_connect_error(1, ENFILE), UP_ECONNREFUSED);
}

static void other_failures_are_refusals(void **state)
{
    (void)state;
    assert_int_equal(up_couldnt_connect_error(0, 0), UP_ECONNREFUSED);
    assert_int_equal(up_couldnt_connect_error(2, 0), UP_ECONNREFUSED);
    assert_int_equal(up_couldnt_connect_error(0, EAFNOSUPPORT), UP_ECONNREFUSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_socket_for_want_of_descriptors_is_descriptors),
        cmocka_unit_test(a_refusal_after_a_descriptor_shortage_is_the_upstreams),
        cmocka_unit_test(other_failures_are_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
