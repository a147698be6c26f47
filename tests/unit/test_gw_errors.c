/* test_gw_errors.c -- the gateway's OpenAI-shaped error bodies: whatever
 * the message quotes (a client's model name, path or bytes) and however it
 * is cut to fit, the body is valid JSON in UTF-8, with the type and code
 * the README gives each status, also as gw_send_error() answers a request.
 * And gw_reserve(), the byte buffers' growth, from the same file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>

#include <event2/event.h>

#include <cmocka.h>
#include <jansson.h>

#include "gateway.h"
#include "loopback.h"

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
    buf = NULL;
    cap = 0;
    assert_int_equal(gw_reserve(&buf, &cap, 64, 16), 0);
    assert_int_equal(cap, 64); /* 64 bytes fit in 64: no doubling past it */
    free(buf);
}

/* The body's four members as a client's SDK reads them: a string, or JSON
 * null where the caller gave NULL. */
static json_t *parse_body(const char *buf, size_t n)
{
    json_error_t je;
    json_t *j = json_loadb(buf, n, 0, &je);
    if (!j)
        fail_msg("not valid JSON (%s): %s", je.text, buf);
    assert_true(json_is_object(json_object_get(j, "error")));
    return j;
}

static const char *member(json_t *j, const char *name)
{
    json_t *v = json_object_get(json_object_get(j, "error"), name);
    assert_non_null(v);
    return json_is_null(v) ? NULL : json_string_value(v);
}

static void error_body_carries_type_param_and_code(void **state)
{
    char buf[512];
    size_t n;
    json_t *j;
    (void)state;
    n = gw_error_format(buf, sizeof buf, "no such model", "invalid_request_error", "model",
                        "model_not_found");
    j = parse_body(buf, n);
    assert_string_equal(member(j, "message"), "no such model");
    assert_string_equal(member(j, "type"), "invalid_request_error");
    assert_string_equal(member(j, "param"), "model");
    assert_string_equal(member(j, "code"), "model_not_found");
    json_decref(j);
    n = gw_error_format(buf, sizeof buf, "m", "server_error", NULL, NULL);
    j = parse_body(buf, n);
    assert_string_equal(member(j, "type"), "server_error");
    assert_null(member(j, "param"));
    assert_null(member(j, "code"));
    json_decref(j);
}

/* A long message is cut, never the members after it; a body too small for
 * them all is still cut within the buffer and NUL-terminated. */
static void error_body_cuts_the_message_to_keep_the_rest(void **state)
{
    char msg[3000], buf[700];
    size_t n;
    json_t *j;
    (void)state;
    memset(msg, 'x', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    n = gw_error_format(buf, 600, msg, "invalid_request_error", "queries[999].input_tokens",
                        "missing_required_parameter");
    assert_true(n < 600);
    j = parse_body(buf, n);
    assert_true(strlen(member(j, "message")) > 100);
    assert_string_equal(member(j, "param"), "queries[999].input_tokens");
    assert_string_equal(member(j, "code"), "missing_required_parameter");
    json_decref(j);
    memset(buf, '#', sizeof buf);
    n = gw_error_format(buf, 128, msg, "invalid_request_error", msg, msg);
    assert_true(n < 128);
    assert_int_equal(buf[n], '\0');
    assert_int_equal(buf[128], '#');
}

/* Quotes, backslashes, newlines and other control characters in a message
 * (a client's bytes quoted) come back as they were sent. */
static void error_body_escapes_what_json_needs_escaped(void **state)
{
    static const char msg[] = "say \"hi\" \\ back\nslash\ttab \x01 \x1f \x7f end";
    char *got;
    (void)state;
    got = round_trip(msg, 512);
    assert_string_equal(got, msg);
    free(got);
}

/* The characters at the edges of each UTF-8 length are whole characters;
 * the forms just past them (overlong, surrogates, past U+10FFFF, a lead
 * byte with no continuation after it) are not. */
static void utf8_char_len_knows_the_edges_of_each_length(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\x7f", 1},
        {"\xc2\x80", 2},             /* U+0080 */
        {"\xdf\xbf", 2},             /* U+07FF */
        {"\xe0\xa0\x80", 3},         /* U+0800 */
        {"\xed\x9f\xbf", 3},         /* U+D7FF */
        {"\xee\x80\x80", 3},         /* U+E000 */
        {"\xef\xbf\xbd", 3},         /* U+FFFD */
        {"\xf0\x90\x80\x80", 4},     /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 4},     /* U+10FFFF */
        {"\x80", 0},                 /* a continuation byte alone */
        {"\xc1\xbf", 0},             /* overlong U+007F */
        {"\xe0\x9f\xbf", 0},         /* overlong U+07FF */
        {"\xed\xa0\x80", 0},         /* U+D800, a surrogate */
        {"\xf0\x8f\xbf\xbf", 0},     /* overlong U+FFFF */
        {"\xf4\x90\x80\x80", 0},     /* U+110000 */
        {"\xf5\x80\x80\x80", 0},     /* past U+10FFFF */
        {"\xe2\x82\xc3\xa9", 0},     /* a new character's lead where a continuation belongs */
        {"\xf0\x9f\x98\xc3\xa9", 0}, /* the same in the last place */
        {"\xe2\x82", 0},             /* cut short by the NUL */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = gw_utf8_char_len((const unsigned char *)cases[i].bytes);
        if (got != cases[i].len)
            fail_msg("case %zu: %zu, expected %zu", i, got, cases[i].len);
    }
}

/* A client's name quoted in a message: printable ASCII and UTF-8 from
 * U+00A0 as they are, a backslash and a quote escaped, any other byte (C1
 * controls too) as \xNN, and "..." after GW_NAME_SHOWN bytes, never inside a
 * character. */
static void name_shown_escapes_what_a_terminal_would_act_on(void **state)
{
    char out[GW_NAME_SHOWN_CAP], name[GW_NAME_SHOWN + 8], want[GW_NAME_SHOWN + 8];
    (void)state;
    assert_string_equal(gw_name_shown("gpt 4o-mini", out, sizeof out), "gpt 4o-mini");
    memset(out, 'z', sizeof out);
    assert_string_equal(gw_name_shown("", out, sizeof out), ""); /* a model given as "" */
    assert_string_equal(gw_name_shown("a\\b'c", out, sizeof out), "a\\\\b\\'c");
    assert_string_equal(gw_name_shown("\x01[2J\x80", out, sizeof out), "\\x01[2J\\x80");
    assert_string_equal(gw_name_shown("caf\xc3\xa9 \xc2\xa0", out, sizeof out),
                        "caf\xc3\xa9 \xc2\xa0");
    /* U+009B, a terminal's CSI, as its two bytes. */
    assert_string_equal(gw_name_shown("\xc2\x9bm", out, sizeof out), "\\xc2\\x9bm");
    gw_name_shown("a\x7f", out, sizeof out);
    assert_null(strchr(out, 0x7f));
    assert_int_equal(strncmp(out, "a\\x", 3), 0);
    assert_int_equal(strlen(out), 5);

    memset(name, 'm', GW_NAME_SHOWN);
    name[GW_NAME_SHOWN] = '\0';
    assert_string_equal(gw_name_shown(name, out, sizeof out), name); /* all of it: no cut */
    memcpy(want, name, GW_NAME_SHOWN + 1);
    memcpy(want + GW_NAME_SHOWN, "...", 4);
    name[GW_NAME_SHOWN] = 'm';
    name[GW_NAME_SHOWN + 1] = '\0';
    assert_string_equal(gw_name_shown(name, out, sizeof out), want);
    /* A two-byte character across the cut is left out whole. */
    memcpy(name + GW_NAME_SHOWN - 1, "\xc3\xa9x", 4);
    memcpy(want + GW_NAME_SHOWN - 1, "...", 4);
    assert_string_equal(gw_name_shown(name, out, sizeof out), want);
}

/* DEL is a control character as those below U+0020 are; a space is not.
 * The cut at GW_LOCATION_SHOWN bytes falls between characters. */
static void redirect_phrase_cuts_between_characters(void **state)
{
    char out[GW_REDIRECT_PHRASE_CAP], loc[GW_LOCATION_SHOWN + 8], want[GW_REDIRECT_PHRASE_CAP];
    (void)state;
    gw_redirect_phrase(out, sizeof out, "http://a/\x7f b");
    assert_string_equal(out, "a redirect to 'http://a/? b'");
    memset(loc, 'a', GW_LOCATION_SHOWN - 1);
    memcpy(loc + GW_LOCATION_SHOWN - 1, "\xc3\xa9zz", 5);
    gw_redirect_phrase(out, sizeof out, loc);
    snprintf(want, sizeof want, "a redirect to '%.*s...'", GW_LOCATION_SHOWN - 1, loc);
    assert_string_equal(out, want);
}

/* The type and code of each status the README's table lists with the
 * HTTP server's own refusals (gw_error_body) and the defaults of the rest. */
static void each_status_has_its_documented_type_and_code(void **state)
{
    static const struct {
        int status;
        const char *type, *code;
    } cases[] = {
        {400, "invalid_request_error", NULL},
        {401, "authentication_error", "invalid_api_key"},
        {403, "permission_error", NULL},
        {404, "invalid_request_error", NULL},
        {405, "invalid_request_error", "method_not_allowed"},
        {408, "invalid_request_error", "request_timeout"},
        {413, "invalid_request_error", "request_too_large"},
        {414, "invalid_request_error", "uri_too_long"},
        {417, "invalid_request_error", "expectation_failed"},
        {422, "invalid_request_error", NULL},
        {429, "rate_limit_error", NULL},
        {431, "invalid_request_error", "headers_too_large"},
        {500, "server_error", NULL},
        {501, "not_implemented", NULL},
        {502, "upstream_error", "upstream_unreachable"},
        {503, "upstream_error", NULL},
        {504, "upstream_error", "upstream_timeout"},
        {505, "invalid_request_error", "http_version_not_supported"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *code = gw_error_code(cases[i].status);
        if (strcmp(gw_error_type(cases[i].status), cases[i].type) != 0)
            fail_msg("%d: type %s, expected %s", cases[i].status, gw_error_type(cases[i].status),
                     cases[i].type);
        if (cases[i].code && (!code || strcmp(code, cases[i].code) != 0))
            fail_msg("%d: code %s, expected %s", cases[i].status, code ? code : "null",
                     cases[i].code);
    }
}

/* The HTTP server's own refusals: the status's type and code, param null. */
static void server_refusal_body_is_typed_by_its_status(void **state)
{
    char buf[512];
    size_t n;
    json_t *j;
    (void)state;
    n = gw_error_body(buf, sizeof buf, 431, "too many header fields (over 100)");
    j = parse_body(buf, n);
    assert_string_equal(member(j, "message"), "too many header fields (over 100)");
    assert_string_equal(member(j, "type"), "invalid_request_error");
    assert_null(member(j, "param"));
    assert_string_equal(member(j, "code"), "headers_too_large");
    json_decref(j);
}

/* ==== gw_send_error() answering a request on a real connection ==== */

struct refusal {
    int status;
    const char *param, *code, *message;
};

static void refuse(struct hs_req *req, void *arg)
{
    const struct refusal *r = arg;
    gw_send_error(req, r->status, r->param, r->code, "%s", r->message);
}

/* One request on 127.0.0.1 answered by refuse(); the loop runs until the
 * server has closed the connection (Connection: close) or 2 s pass. The
 * answer's status, and its body parsed. */
static json_t *send_refusal(const struct refusal *r, int *status)
{
    struct event_base *base = event_base_new();
    struct hs_limits lim = {8192, 1 << 20, 1 << 16, 5000};
    static const char request[] = "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    struct timeval tick = {0, 10000};
    struct hs_server *srv;
    char resp[8192];
    size_t len = 0;
    const char *body;
    int fd, closed = 0;

    assert_non_null(base);
    srv = hs_server_new(base, &lim, refuse, gw_error_body, (void *)r);
    assert_non_null(srv);
    assert_int_equal(hs_server_listen(srv, "127.0.0.1", 0), 0);
    fd = loopback_send(hs_server_port(srv), request);
    for (int i = 0; i < 200 && !closed; i++) {
        ssize_t k;
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
        while ((k = recv(fd, resp + len, sizeof resp - 1 - len, MSG_DONTWAIT)) > 0)
            len += (size_t)k;
        closed = k == 0 || len == sizeof resp - 1;
    }
    close(fd);
    hs_server_free(srv);
    event_base_free(base);
    resp[len] = '\0';
    assert_true(closed);
    assert_int_equal(sscanf(resp, "HTTP/1.1 %d ", status), 1);
    body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    return parse_body(body, strlen(body));
}

/* A 503 of the gateway's own state is a server_error; the message comes
 * whole (it can quote a model name and a Location of 200 bytes each); the
 * code is kept for the request's log line until taken. */
static void send_error_answers_with_the_code_and_type_of_the_refusal(void **state)
{
    char msg[401];
    struct refusal r = {503, NULL, "store_busy", msg};
    json_t *j;
    int status;
    (void)state;
    memset(msg, 'w', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    j = send_refusal(&r, &status);
    assert_int_equal(status, 503);
    assert_string_equal(member(j, "message"), msg);
    assert_string_equal(member(j, "type"), "server_error");
    assert_null(member(j, "param"));
    assert_string_equal(member(j, "code"), "store_busy");
    json_decref(j);
    assert_string_equal(gw_error_sent(1), "store_busy");
    assert_null(gw_error_sent(0));
}

/* Without a code of its own the answer has the status's, and so does the
 * log line. */
static void send_error_without_a_code_takes_the_status_default(void **state)
{
    struct refusal r = {504, "model", NULL, "model 'm' timed out"};
    json_t *j;
    int status;
    (void)state;
    j = send_refusal(&r, &status);
    assert_int_equal(status, 504);
    assert_string_equal(member(j, "message"), "model 'm' timed out");
    assert_string_equal(member(j, "type"), "upstream_error");
    assert_string_equal(member(j, "param"), "model");
    assert_string_equal(member(j, "code"), "upstream_timeout");
    json_decref(j);
    assert_string_equal(gw_error_sent(1), "upstream_timeout");
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
        cmocka_unit_test(error_body_carries_type_param_and_code),
        cmocka_unit_test(error_body_cuts_the_message_to_keep_the_rest),
        cmocka_unit_test(error_body_escapes_what_json_needs_escaped),
        cmocka_unit_test(utf8_char_len_knows_the_edges_of_each_length),
        cmocka_unit_test(name_shown_escapes_what_a_terminal_would_act_on),
        cmocka_unit_test(redirect_phrase_cuts_between_characters),
        cmocka_unit_test(each_status_has_its_documented_type_and_code),
        cmocka_unit_test(server_refusal_body_is_typed_by_its_status),
        cmocka_unit_test(send_error_answers_with_the_code_and_type_of_the_refusal),
        cmocka_unit_test(send_error_without_a_code_takes_the_status_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
