/* test_gw_upstream.c -- upstream.c's classing of a libcurl transfer that
 * could not connect: the gateway out of descriptors, or the upstream; and
 * how long a pooled connection is kept after an upstream's Keep-Alive. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "h1client.h"
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

static long keep_ms(const char *v)
{
    return h1_keep_alive_ms(v, strlen(v));
}

static void keep_alive_timeout_less_a_margin(void **state)
{
    (void)state;
    assert_int_equal(keep_ms("timeout=5"), 4000);
    assert_int_equal(keep_ms("timeout=5, max=100"), 4000);
    assert_int_equal(keep_ms("max=100, timeout=5"), 4000);
    assert_int_equal(keep_ms("timeout=1"), 500);
    assert_int_equal(keep_ms("timeout=0"), 0);
    assert_int_equal(keep_ms("max=100"), H1_IDLE_MAX_MS);
    assert_int_equal(keep_ms("timeout=x"), H1_IDLE_MAX_MS);
}

static void keep_alive_timeout_near_the_cap_keeps_its_margin(void **state)
{
    (void)state;
    /* An upstream that keeps an idle connection 118 s (the pool's own
     * longest): the pool gives it up a second earlier, not as the
     * upstream closes it. */
    assert_int_equal(keep_ms("timeout=117"), 116000);
    assert_int_equal(keep_ms("timeout=118"), 117000);
    assert_int_equal(keep_ms("timeout=118, max=1000"), 117000);
    assert_int_equal(keep_ms("timeout=119"), H1_IDLE_MAX_MS);
    assert_int_equal(keep_ms("timeout=300"), H1_IDLE_MAX_MS);
    assert_int_equal(keep_ms("timeout=99999999999999999999"), H1_IDLE_MAX_MS);
}

static void join(char *dst, size_t cap, const char *v)
{
    up_list_join(dst, cap, v, strlen(v));
}

static void repeated_list_lines_join_as_one_list(void **state)
{
    char v[16] = "";
    (void)state;
    join(v, sizeof v, "gzip");
    assert_string_equal(v, "gzip");
    join(v, sizeof v, "");
    assert_string_equal(v, "gzip");
    join(v, sizeof v, "identity");
    assert_string_equal(v, "gzip, identity");
    /* Cut to fit: what is kept still names more than identity. */
    join(v, sizeof v, "br");
    assert_string_equal(v, "gzip, identity,");
    join(v, sizeof v, "zstd");
    assert_string_equal(v, "gzip, identity,");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_socket_for_want_of_descriptors_is_descriptors),
        cmocka_unit_test(a_refusal_after_a_descriptor_shortage_is_the_upstreams),
        cmocka_unit_test(other_failures_are_refusals),
        cmocka_unit_test(keep_alive_timeout_less_a_margin),
        cmocka_unit_test(keep_alive_timeout_near_the_cap_keeps_its_margin),
        cmocka_unit_test(repeated_list_lines_join_as_one_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
