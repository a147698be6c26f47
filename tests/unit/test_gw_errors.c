/* test_gw_errors.c -- the gateway's OpenAI-shaped error bodies: whatever
 * the message quotes (a client's model name, path or bytes) and however it
 * is cut to fit, the body is valid JSON in UTF-8. And gw_reserve(), the
 * byte buffers' growth, from the same file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "gateway.h"

/* Format the message and parse the body back (jansson refuses bad UTF-8):
 * the message as decoded. */
static char *round_trip(const char *message, size_t cap)
{
    char *buf = malloc(cap);
    json_error_t je;
    json_t *j, *m;
    char *out;
    size_t n;
    assert_non_null(buf);
    n = gw_error_format(buf, cap, message, "invalid_request_error", "model", "model_not_found");
    assert_true(n < cap);
    j = json_loadb(buf, n, 0, &je);
    if (!j)
        fail_msg("not valid JSON (%s): %s", je.text, buf);
    m = json_object_get(json_object_get(j, "error"), "message");
    assert_true(json_is_string(m));
    out = strdup(json_string_value(m));
    json_decref(j);
    free(buf);
    return out;
}

static void error_body_replaces_bytes_that_are_not_utf8(void **state)
{
    char *got;
    (void)state;
    got = round_trip("Unknown request URL: GET /v1/\xff\xfe x", 512);
    assert_string_equal(got, "Unknown request URL: GET /v1/\xef\xbf\xbd\xef\xbf\xbd x");
    free(got);
    /* a lone continuation byte, an overlong form, a surrogate, a cut-short tail */
    got = round_trip("a\x80 b\xc0\xaf c\xed\xa0\x80 d\xe2\x82", 512);
    assert_null(strstr(got, "\x80 "));
    assert_non_null(strstr(got, "a\xef\xbf\xbd b"));
    assert_non_null(strstr(got, " d\xef\xbf\xbd"));
    free(got);
    got = round_trip("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 512);
    assert_string_equal(got, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    free(got);
}

static void error_body_cut_to_fit_never_splits_a_character(void **state)
{
    char msg[2000];
    (void)state;
    /* Every offset of a run of two-byte and then four-byte characters. */
    for (size_t lead = 0; lead < 4; lead++) {
        size_t o = 0;
        memset(msg, 'x', lead);
        o = lead;
        while (o + 4 < 1200) {
            memcpy(msg + o, "\xc3\xa9", 2);
            o += 2;
        }
        while (o + 5 < sizeof msg) {
            memcpy(msg + o, "\xf0\x9f\x98\x80", 4);
            o += 4;
        }
        msg[o] = '\0';
        for (size_t cap = 128; cap < 1600; cap += 37)
            free(round_trip(msg, cap));
    }
}

/* A redirect's Location is quoted as the upstream sent it, but cut to
 * GW_LOCATION_SHOWN bytes between characters and with control characters
 * and stray bytes replaced. */
static void redirect_phrase_quotes_a_cleaned_location(void **state)
{
    char out[GW_REDIRECT_PHRASE_CAP], loc[600];
    (void)state;
    gw_redirect_phrase(out, sizeof out, "https://example.com/v1/embeddings");
    assert_string_equal(out, "a redirect to 'https://example.com/v1/embeddings'");
    gw_redirect_phrase(out, sizeof out, NULL);
    assert_string_equal(out, "a redirect without a Location");
    gw_redirect_phrase(out, sizeof out, "");
    assert_string_equal(out, "a redirect without a Location");
    gw_redirect_phrase(out, sizeof out, "http://a/\x01/\xff!");
    assert_string_equal(out, "a redirect to 'http://a/?/\xef\xbf\xbd!'");
    memset(loc, 'a', sizeof loc - 1);
    loc[sizeof loc - 1] = '\0';
    gw_redirect_phrase(out, sizeof out, loc);
    assert_int_equal(strlen(out), strlen("a redirect to ''") + GW_LOCATION_SHOWN + 3);
    assert_non_null(strstr(out, "a...'"));
}

/* U+0080 to U+009F are control characters too (U+009B is a terminal's CSI):
 * a Location's are '?' in the message, as its ASCII controls are. */
static void redirect_phrase_replaces_c1_controls(void **state)
{
    char out[GW_REDIRECT_PHRASE_CAP];
    (void)state;
    gw_redirect_phrase(out, sizeof out, "http://a/\xc2\x9b" "2J\xc2\x80\xc2\x9f\xc2\xa0!");
    assert_string_equal(out, "a redirect to 'http://a/?2J??\xc2\xa0!'");
}

/* An SDK reads the type to tell a provider's outage from the gateway's own. */
static void a_503_of_the_gateways_own_state_is_a_server_error(void **state)
{
    (void)state;
    assert_string_equal(gw_error_type_of(503, "circuit_open"), "upstream_error");
    assert_string_equal(gw_error_type_of(503, NULL), "upstream_error");
    assert_string_equal(gw_error_type_of(503, "history_empty"), "server_error");
    assert_string_equal(gw_error_type_of(503, "store_busy"), "server_error");
    assert_string_equal(gw_error_type_of(503, "descriptors_exhausted"), "server_error");
    assert_string_equal(gw_error_type_of(502, "embedding_failed"), "upstream_error");
    assert_string_equal(gw_error_type_of(400, "routing_failed"), "invalid_request_error");
}

static void reserve_grows_by_doubling_and_keeps_the_bytes(void **state)
{
    char *buf = NULL;
    size_t cap = 0;
    (void)state;
    assert_int_equal(gw_reserve(&buf, &cap, 100, 16), 0);
    assert_int_equal(cap, 128); /* 16 doubled until it holds 100 */
    memcpy(buf, "kept", 5);
    assert_int_equal(gw_reserve(&buf, &cap, 128, 16), 0);
    assert_int_equal(cap, 128); /* room already: nothing moves */
    assert_int_equal(gw_reserve(&buf, &cap, 129, 16), 0);
    assert_int_equal(cap, 256);
    assert_string_equal(buf, "kept");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(error_body_replaces_bytes_that_are_not_utf8),
        cmocka_unit_test(error_body_cut_to_fit_never_splits_a_character),
        cmocka_unit_test(redirect_phrase_quotes_a_cleaned_location),
        cmocka_unit_test(redirect_phrase_replaces_c1_controls),
        cmocka_unit_test(a_503_of_the_gateways_own_state_is_a_server_error),
        cmocka_unit_test(reserve_grows_by_doubling_and_keeps_the_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
