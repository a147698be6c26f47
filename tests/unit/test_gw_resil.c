/* test_gw_resil.c -- the gateway's resilience rules: failure classes from
 * transport errors and statuses, Retry-After, policy layers, backoff with
 * full jitter, and the circuit breaker's state machine driven by a clock
 * passed in (no waiting). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "resil.h"

static void statuses_map_to_classes(void **state)
{
    const char *ctx = "{\"error\":{\"code\":\"context_length_exceeded\"}}";
    (void)state;
    assert_int_equal(rs_class_of_status(500, NULL, 0, NULL), RS_SERVER_ERROR);
    assert_int_equal(rs_class_of_status(503, NULL, 0, "3"), RS_SERVER_ERROR);
    assert_int_equal(rs_class_of_status(429, NULL, 0, "2"), RS_RATE_LIMITED);
    assert_int_equal(rs_class_of_status(429, NULL, 0, NULL), RS_RATE_LIMITED_BARE);
    assert_int_equal(rs_class_of_status(429, NULL, 0, "soon"), RS_RATE_LIMITED_BARE);
    assert_int_equal(rs_class_of_status(401, NULL, 0, NULL), RS_AUTH);
    assert_int_equal(rs_class_of_status(403, NULL, 0, NULL), RS_AUTH);
    /* A proxy on the way wants credentials: not the request's fault. */
    assert_int_equal(rs_class_of_status(407, NULL, 0, NULL), RS_AUTH);
    assert_int_equal(rs_class_of_status(402, NULL, 0, NULL), RS_AUTH);
    assert_int_equal(rs_class_of_status(404, NULL, 0, NULL), RS_NOT_FOUND);
    assert_int_equal(rs_class_of_status(408, NULL, 0, NULL), RS_TIMEOUT);
    assert_int_equal(rs_class_of_status(400, ctx, strlen(ctx), NULL), RS_CONTEXT_LENGTH);
    assert_int_equal(rs_class_of_status(400, "{}", 2, NULL), RS_BAD_REQUEST);
    assert_int_equal(rs_class_of_status(422, NULL, 0, NULL), RS_BAD_REQUEST);
    assert_int_equal(rs_class_of_status(301, NULL, 0, NULL), RS_REDIRECT);
    assert_int_equal(rs_class_of_status(302, NULL, 0, NULL), RS_REDIRECT);
    assert_int_equal(rs_class_of_status(307, "moved", 5, "1"), RS_REDIRECT);
    assert_int_equal(rs_class_of_status(308, NULL, 0, NULL), RS_REDIRECT);
    assert_int_equal(rs_class_of_status(300, NULL, 0, NULL), RS_REDIRECT);
    assert_int_equal(rs_class_of_status(600, NULL, 0, NULL), RS_PROTOCOL);
    /* 501 Not Implemented: the endpoint is missing there, as with a 404. */
    assert_int_equal(rs_class_of_status(501, NULL, 0, NULL), RS_NOT_FOUND);
    assert_int_equal(rs_class_of_status(502, NULL, 0, NULL), RS_SERVER_ERROR);
}

static void missing_endpoint_or_model_blames_no_model(void **state)
{
    struct rs_policy p;
    (void)state;
    rs_policy_defaults(&p);
    /* Any client picks the endpoint: a server without /v1/embeddings (404,
     * or 501) must not open the model's breaker for its chat clients, nor
     * hold a failing model's breaker closed. The next candidate may have it. */
    assert_false(rs_class_is_upstream_failure(RS_NOT_FOUND));
    assert_true(rs_class_is_neutral(RS_NOT_FOUND));
    assert_int_equal(p.retry.on[RS_NOT_FOUND], RS_FALLBACK);
    /* A redirect is a configuration error for every request: it still counts. */
    assert_false(rs_class_is_neutral(RS_REDIRECT));
}

/* An upstream's error answer goes to the client as it came, but for those
 * that speak of the gateway's own exchange with the upstream: a redirect,
 * the gateway's credentials, credit or proxy (401, 402, 407), or a 408, which says the
 * upstream waited for the gateway's request, not that the client's was slow. */
static void answers_of_the_gateways_exchange_are_not_relayed(void **state)
{
    struct rs_policy p;
    (void)state;
    rs_policy_defaults(&p);
    assert_true(rs_answer_relayed(400));
    assert_true(rs_answer_relayed(403));
    assert_true(rs_answer_relayed(404));
    assert_true(rs_answer_relayed(429));
    assert_true(rs_answer_relayed(500));
    assert_true(rs_answer_relayed(503));
    assert_true(rs_answer_relayed(599));
    assert_false(rs_answer_relayed(408));
    assert_false(rs_answer_relayed(401));
    assert_false(rs_answer_relayed(407));
    assert_false(rs_answer_relayed(402));
    assert_false(rs_answer_relayed(302));
    assert_false(rs_answer_relayed(200));
    assert_false(rs_answer_relayed(600));
    /* And a 408 is the timeout class, which falls back by default. */
    assert_int_equal(rs_class_of_status(408, NULL, 0, NULL), RS_TIMEOUT);
    assert_int_equal(p.retry.on[RS_TIMEOUT], RS_FALLBACK);
}

static void transport_errors_map_to_classes(void **state)
{
    (void)state;
    assert_int_equal(rs_class_of_transport(UP_ECONNREFUSED, 0), RS_CONNECT_REFUSED);
    assert_int_equal(rs_class_of_transport(UP_ECONNTIMEOUT, 0), RS_CONNECT_TIMEOUT);
    assert_int_equal(rs_class_of_transport(UP_ETLS, 0), RS_TLS);
    assert_int_equal(rs_class_of_transport(UP_ERESET, 0), RS_RESET);
    assert_int_equal(rs_class_of_transport(UP_ERESET, 1), RS_STREAM_CUT);
    assert_int_equal(rs_class_of_transport(UP_ERESET_REUSED, 0), RS_RESET_REUSED);
    assert_string_equal(rs_class_name(RS_RESET_REUSED), "reset_reused");
    assert_int_equal(rs_class_of_transport(UP_ECLOSED, 1), RS_STREAM_CUT);
    assert_int_equal(rs_class_of_transport(UP_ETIMEOUT, 1), RS_TIMEOUT);
    assert_int_equal(rs_class_of_transport(UP_EPROTO, 0), RS_PROTOCOL);
    /* A response head too large is the upstream's fault: fallback, and it counts. */
    assert_int_equal(rs_class_of_transport(UP_ETOOBIG, 0), RS_PROTOCOL);
    assert_false(rs_class_is_upstream_failure(RS_TOO_LARGE));
    assert_false(rs_class_is_upstream_failure(RS_BAD_REQUEST));
    assert_false(rs_class_is_upstream_failure(RS_CONTEXT_LENGTH));
    assert_true(rs_class_is_upstream_failure(RS_AUTH));
    /* A 2xx that is not an answer (an HTML page) is the upstream's fault. */
    assert_true(rs_class_is_upstream_failure(RS_BAD_RESPONSE));
    assert_string_equal(rs_class_name(RS_BAD_RESPONSE), "bad_response");
    for (int c = 0; c < RS_N_CLASSES; c++)
        assert_int_equal(rs_class_from_name(rs_class_name((enum rs_class)c)), c ? c : -1);
}

static void retry_after_reads_seconds_and_dates(void **state)
{
    (void)state;
    assert_true(rs_retry_after_seconds("2", 0) == 2);
    assert_true(rs_retry_after_seconds(" 17 ", 0) == 17);
    assert_true(rs_retry_after_seconds("99999999", 0) == 86400);
    assert_true(rs_retry_after_seconds(NULL, 0) < 0);
    assert_true(rs_retry_after_seconds("2x", 0) < 0);
    assert_true(rs_retry_after_seconds("-3", 0) < 0);
    /* 1994-11-06 08:49:37 UTC is 784111777. */
    assert_true(rs_retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", 784111770) == 7);
    assert_true(rs_retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", 784111790) == 0);
}

static void retry_after_reads_decimal_seconds(void **state)
{
    (void)state;
    /* Not RFC 9110's delta-seconds, but sent, and meant as it reads. */
    assert_true(rs_retry_after_seconds("0.5", 0) == 0.5);
    assert_true(rs_retry_after_seconds(" 1.25 ", 0) == 1.25);
    assert_true(rs_retry_after_seconds("99999999.5", 0) == 86400);
    assert_true(rs_retry_after_seconds("1.", 0) < 0);
    assert_true(rs_retry_after_seconds("1.5.2", 0) < 0);
    assert_true(rs_retry_after_seconds("0x10", 0) < 0);
    assert_true(rs_retry_after_seconds("1e3", 0) < 0);
    assert_true(rs_retry_after_seconds("-0.5", 0) < 0);
    assert_true(rs_retry_after_seconds("nan", 0) < 0);
    assert_true(rs_retry_after_seconds("inf", 0) < 0);
    /* A 429 with a decimal Retry-After is waited for, not taken as bare. */
    assert_int_equal(rs_class_of_status(429, NULL, 0, "0.5"), RS_RATE_LIMITED);
    /* "0" is a readable pause too: try again at once. */
    assert_int_equal(rs_class_of_status(429, NULL, 0, "0"), RS_RATE_LIMITED);
}

static void retry_after_ms_is_read_and_preferred(void **state)
{
    (void)state;
    assert_true(rs_retry_after_ms_seconds("300") == 0.3);
    assert_true(rs_retry_after_ms_seconds("1500.5") == 1.5005);
    assert_true(rs_retry_after_ms_seconds("0") == 0);
    assert_true(rs_retry_after_ms_seconds("999999999999") == 86400);
    /* The cap is a day: 120000 ms is two minutes. */
    assert_true(rs_retry_after_ms_seconds("120000") == 120);
    assert_true(rs_retry_after_ms_seconds("86400000") == 86400);
    assert_true(rs_retry_after_ms_seconds(NULL) < 0);
    assert_true(rs_retry_after_ms_seconds("-5") < 0);
    assert_true(rs_retry_after_ms_seconds("soon") < 0);
    assert_true(rs_retry_after_ms_seconds("1e3") < 0);
    /* Preferred when readable; Retry-After otherwise. */
    assert_true(rs_retry_hint_seconds("5", "200", 0) == 0.2);
    assert_true(rs_retry_hint_seconds("5", "soon", 0) == 5);
    assert_true(rs_retry_hint_seconds("5", "0", 0) == 0); /* a pause of none is readable */
    assert_true(rs_retry_hint_seconds(NULL, "300", 0) == 0.3);
    assert_true(rs_retry_hint_seconds("2", NULL, 0) == 2);
    assert_true(rs_retry_hint_seconds(NULL, NULL, 0) < 0);
    /* A 429 with retry-after-ms alone is rate limited with a pause. */
    assert_int_equal(rs_class_of_answer(429, NULL, 0, NULL, "300"), RS_RATE_LIMITED);
    assert_int_equal(rs_class_of_answer(429, NULL, 0, "soon", "300"), RS_RATE_LIMITED);
    assert_int_equal(rs_class_of_answer(429, NULL, 0, NULL, "x"), RS_RATE_LIMITED_BARE);
}

/* Each server's own body when a request does not fit the context. */
static enum rs_class class_of(long status, const char *body)
{
    return rs_class_of_status(status, body, strlen(body), NULL);
}

static void context_overflow_of_vllm(void **state)
{
    (void)state;
    assert_int_equal(
        class_of(400, "{\"error\":{\"message\":\"This model's maximum context length is 4096 "
                      "tokens. However, you requested 5000 tokens (4000 in the messages, 1000 "
                      "in the completion). Please reduce the length of the messages or "
                      "completion.\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}"),
        RS_CONTEXT_LENGTH);
    /* vLLM's newer wording, max_tokens over what the context leaves. */
    assert_int_equal(
        class_of(400, "{\"error\":{\"message\":\"'max_tokens' or 'max_completion_tokens' is too "
                      "large: 8000. This model's maximum context length is 4096 tokens and "
                      "your request has 2778 input tokens (8000 > 4096 - 2778). None\","
                      "\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}"),
        RS_CONTEXT_LENGTH);
}

static void context_overflow_of_llamacpp(void **state)
{
    (void)state;
    assert_int_equal(
        class_of(400, "{\"error\":{\"code\":400,\"message\":\"request (4476 tokens) exceeds the "
                      "available context size (4096 tokens), try increasing it\",\"type\":"
                      "\"exceed_context_size_error\",\"n_prompt_tokens\":4476,\"n_ctx\":4096}}"),
        RS_CONTEXT_LENGTH);
    assert_int_equal(
        class_of(400, "{\"error\":{\"code\":400,\"message\":\"the request exceeds the available "
                      "context size, try increasing it\",\"type\":\"invalid_request_error\"}}"),
        RS_CONTEXT_LENGTH);
}

static void context_overflow_of_tgi(void **state)
{
    (void)state;
    assert_int_equal(class_of(422, "{\"error\":\"Input validation error: `inputs` tokens + "
                                   "`max_new_tokens` must be <= 4096. Given: 4000 `inputs` "
                                   "tokens and 1000 `max_new_tokens`\",\"error_type\":"
                                   "\"validation\"}"),
                     RS_CONTEXT_LENGTH);
    assert_int_equal(class_of(422, "{\"error\":\"Input validation error: `inputs` must have "
                                   "less than 1024 tokens. Given: 2000\",\"error_type\":"
                                   "\"validation\"}"),
                     RS_CONTEXT_LENGTH);
    /* TGI's other validation errors are the request's own. */
    assert_int_equal(class_of(422, "{\"error\":\"Input validation error: `temperature` must be "
                                   "strictly positive\",\"error_type\":\"validation\"}"),
                     RS_BAD_REQUEST);
}

static void context_overflow_of_ollama(void **state)
{
    (void)state;
    assert_int_equal(class_of(400, "{\"error\":{\"message\":\"the input length exceeds the "
                                   "context length\",\"type\":\"api_error\",\"param\":null,"
                                   "\"code\":null}}"),
                     RS_CONTEXT_LENGTH);
}

static void context_overflow_scan_is_bounded(void **state)
{
    const char *words = "context_length_exceeded";
    size_t n = RS_ERROR_SCAN_BYTES + 100;
    char *body = malloc(n + 1);
    (void)state;
    assert_non_null(body);
    memset(body, ' ', n);
    body[n] = '\0';
    memcpy(body + RS_ERROR_SCAN_BYTES - strlen(words), words, strlen(words));
    assert_int_equal(rs_class_of_status(400, body, n, NULL), RS_CONTEXT_LENGTH);
    memset(body, ' ', n);
    memcpy(body + RS_ERROR_SCAN_BYTES - strlen(words) + 1, words, strlen(words));
    assert_int_equal(rs_class_of_status(400, body, n, NULL), RS_BAD_REQUEST);
    free(body);
    /* Only a 400, 413 or 422 says so; a 500 with the words is the server's. */
    assert_int_equal(class_of(413, "{\"error\":{\"code\":\"context_length_exceeded\"}}"),
                     RS_CONTEXT_LENGTH);
    assert_int_equal(class_of(500, "{\"error\":{\"code\":\"context_length_exceeded\"}}"),
                     RS_SERVER_ERROR);
    assert_int_equal(class_of(400, "{\"error\":{\"message\":\"MAXIMUM CONTEXT LENGTH\"}}"),
                     RS_CONTEXT_LENGTH);
}

/* Each of the servers' words the README lists is enough by itself: as the
 * whole body, or as the only sign in an error object. */
static void context_overflow_is_told_by_each_servers_words_alone(void **state)
{
    static const char *const words[] = {
        "context_length_exceeded",
        "maximum context length",
        "exceed_context_size_error",
        "exceeds the available context size",
        "`inputs` tokens + `max_new_tokens` must be <=",
        "`inputs` must have less than",
        "input length exceeds the context length",
    };
    char body[256];
    (void)state;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        assert_int_equal(class_of(400, words[i]), RS_CONTEXT_LENGTH);
        snprintf(body, sizeof body, "{\"error\":{\"type\":\"%s\",\"message\":\"refused\"}}",
                 words[i]);
        assert_int_equal(class_of(400, body), RS_CONTEXT_LENGTH);
    }
}

static enum rs_class ok_class(const char *body, char *msg, size_t cap)
{
    return rs_class_of_ok_body(body, strlen(body), msg, cap);
}

static void ok_body_with_an_error_is_a_failure(void **state)
{
    char msg[200];
    (void)state;
    /* OpenRouter's 200 when the provider failed after the request was accepted. */
    assert_int_equal(ok_class("{\"error\":{\"code\":429,\"message\":\"Provider returned error\","
                              "\"metadata\":{\"provider_name\":\"X\"}},\"user_id\":\"u\"}",
                              msg, sizeof msg),
                     RS_RATE_LIMITED_BARE);
    assert_string_equal(msg, "Provider returned error");
    assert_int_equal(ok_class("{\"error\":{\"code\":502,\"message\":\"down\"}}", msg, sizeof msg),
                     RS_SERVER_ERROR);
    assert_string_equal(msg, "down");
    assert_int_equal(ok_class("{\"error\":{\"code\":\"429\"}}", msg, sizeof msg),
                     RS_RATE_LIMITED_BARE);
    assert_string_equal(msg, "");
    assert_int_equal(
        ok_class("{\"error\":{\"code\":\"server_error\",\"message\":\"x\"}}", msg, sizeof msg),
        RS_SERVER_ERROR);
    assert_int_equal(ok_class("{\"error\":\"overloaded\"}", msg, sizeof msg), RS_SERVER_ERROR);
    assert_string_equal(msg, "overloaded");
    /* A code that only begins with a status is no status. */
    assert_int_equal(ok_class("{\"error\":{\"code\":\"429x\"}}", msg, sizeof msg), RS_SERVER_ERROR);
    assert_int_equal(ok_class(" {\"error\" : {}} ", msg, sizeof msg), RS_SERVER_ERROR);
}

static void ok_body_that_answers_is_never_refused(void **state)
{
    char msg[200];
    (void)state;
    assert_int_equal(
        ok_class("{\"id\":\"x\",\"choices\":[],\"error\":{\"code\":500}}", msg, sizeof msg), RS_OK);
    assert_int_equal(ok_class("{\"error\":{\"code\":500},\"data\":[]}", msg, sizeof msg), RS_OK);
    assert_int_equal(ok_class("{\"error\":\"x\",\"output\":[]}", msg, sizeof msg), RS_OK);
    assert_int_equal(ok_class("{\"id\":\"x\",\"error\":null}", msg, sizeof msg), RS_OK);
    assert_int_equal(ok_class("{\"error\":429}", msg, sizeof msg), RS_OK);
    assert_int_equal(ok_class("{\"id\":\"x\"}", msg, sizeof msg), RS_OK);
    assert_int_equal(ok_class("[{\"error\":\"x\"}]", msg, sizeof msg), RS_OK);
    assert_int_equal(ok_class("not json", msg, sizeof msg), RS_OK);
    assert_int_equal(rs_class_of_ok_body(NULL, 0, msg, sizeof msg), RS_OK);
}

static void ok_body_error_message_is_cut_between_characters(void **state)
{
    char body[1200], msg[300];
    size_t o;
    (void)state;
    o = (size_t)snprintf(body, sizeof body, "{\"error\":{\"message\":\"a");
    for (int i = 0; i < 300; i++) {
        memcpy(body + o, "\xc3\xa9", 2); /* U+00E9, two bytes */
        o += 2;
    }
    snprintf(body + o, sizeof body - o, "\"}}");
    assert_int_equal(ok_class(body, msg, sizeof msg), RS_SERVER_ERROR);
    /* "a", 79 whole characters (159 bytes), and the mark of the cut. */
    assert_int_equal(strlen(msg), 1 + 158 + 3);
    assert_memory_equal(msg + 1 + 158, "...", 3);
    /* A small buffer is never overrun: the bytes past cap keep their mark. */
    for (size_t cap = 1; cap <= 8; cap++) {
        memset(msg, '#', sizeof msg);
        assert_int_equal(ok_class(body, msg, cap), RS_SERVER_ERROR);
        assert_true(strlen(msg) < cap);
        for (size_t i = cap; i < sizeof msg; i++)
            assert_int_equal(msg[i], '#');
    }
}

/* A message of 160 bytes fits whole; one byte more is cut there, marked. */
static void ok_body_error_message_of_160_bytes_comes_whole(void **state)
{
    char body[400], msg[300];
    (void)state;
    for (size_t len = 159; len <= 161; len++) {
        int o = snprintf(body, sizeof body, "{\"error\":{\"message\":\"");
        memset(body + o, 'm', len);
        snprintf(body + o + len, sizeof body - o - len, "\"}}");
        assert_int_equal(ok_class(body, msg, sizeof msg), RS_SERVER_ERROR);
        assert_int_equal(strlen(msg), len <= 160 ? len : 160 + 3);
        assert_memory_equal(msg, body + o, len <= 160 ? len : 160);
        if (len > 160)
            assert_string_equal(msg + 160, "...");
    }
}

/* An error member too large to read its message from is still an error,
 * never an answer relayed with its 200. */
static void ok_body_with_a_huge_error_is_still_a_failure(void **state)
{
    size_t n = 70000;
    char *body = malloc(n + 64), msg[200];
    int o;
    (void)state;
    assert_non_null(body);
    o = snprintf(body, n + 64, "{\"error\":{\"code\":502,\"message\":\"");
    memset(body + o, 'x', n);
    snprintf(body + o + n, 64, "\"}}");
    assert_int_equal(ok_class(body, msg, sizeof msg), RS_SERVER_ERROR);
    free(body);
}

static void defaults_are_safe(void **state)
{
    struct rs_policy p;
    (void)state;
    rs_policy_defaults(&p);
    assert_int_equal(p.retry.on[RS_BAD_REQUEST], RS_FAIL);
    assert_int_equal(p.retry.on[RS_RATE_LIMITED], RS_RETRY);
    assert_int_equal(p.retry.on[RS_RATE_LIMITED_BARE], RS_FALLBACK);
    assert_int_equal(p.retry.on[RS_SERVER_ERROR], RS_FALLBACK);
    assert_int_equal(p.retry.on[RS_CONNECT_REFUSED], RS_FALLBACK);
    assert_int_equal(p.retry.on[RS_AUTH], RS_FALLBACK);
    /* A redirect does not go away on a retry; another model may work. */
    assert_int_equal(p.retry.on[RS_REDIRECT], RS_FALLBACK);
    assert_true(rs_class_is_upstream_failure(RS_REDIRECT));
}

/* The defaults the README's Resilience part shows: its class table's
 * actions, and the values of its `server.resilience` example. */
static void defaults_are_the_documented_ones(void **state)
{
    static const struct {
        const char *class_name, *action;
    } table[] = {
        {"connect_refused", "fallback"},
        {"connect_timeout", "fallback"},
        {"tls", "fallback"},
        {"reset", "fallback"},
        {"reset_reused", "retry"},
        {"timeout", "fallback"},
        {"rate_limited", "retry"},
        {"rate_limited_no_retry_after", "fallback"},
        {"server_error", "fallback"},
        {"auth", "fallback"},
        {"not_found", "fallback"},
        {"redirect", "fallback"},
        {"context_length", "fallback"},
        {"bad_request", "fail"},
        {"stream_cut", "fallback"},
        {"stream_stall", "fallback"},
        {"malformed", "fallback"},
        {"protocol", "fallback"},
        {"too_large", "fail"},
        {"descriptors", "fail"},
        {"bad_response", "fallback"},
    };
    struct rs_policy p;
    struct rs_breaker_conf b;
    struct rs_queue_conf q;
    (void)state;
    assert_int_equal(sizeof table / sizeof table[0], RS_N_CLASSES - 1);
    rs_policy_defaults(&p);
    rs_breaker_defaults(&b);
    rs_queue_defaults(&q);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        int c = rs_class_from_name(table[i].class_name);
        assert_true(c > 0);
        assert_string_equal(rs_action_name(p.retry.on[c]), table[i].action);
    }
    assert_int_equal(p.retry.max_attempts, 4);
    assert_int_equal(p.retry.max_retries, 1);
    assert_int_equal(p.retry.base_delay_ms, 100);
    assert_int_equal(p.retry.max_delay_ms, 2000);
    assert_int_equal(p.retry.max_retry_after_ms, 1000);
    assert_int_equal(p.retry.deadline_ms, 60000);
    assert_int_equal(p.timeouts.connect_ms, 10000);
    assert_int_equal(p.timeouts.first_byte_ms, 60000);
    assert_int_equal(p.timeouts.idle_ms, 300000);
    assert_int_equal(p.timeouts.total_ms, 600000);
    assert_int_equal(b.consecutive_failures, 5);
    assert_true(b.failure_rate == 0.5);
    assert_int_equal(b.min_requests, 20);
    assert_int_equal(b.window_ms, 30000);
    assert_int_equal(b.cooldown_ms, 5000);
    assert_int_equal(b.max_cooldown_ms, 60000);
    assert_false(b.try_closest); /* when_all_open: "fail" */
    assert_int_equal(q.max_waiting, 100);
    assert_int_equal(q.max_wait_ms, 1000);
}

static void timeouts_default_to_long_generations(void **state)
{
    struct rs_policy p, over;
    char msg[256];
    (void)state;
    rs_policy_defaults(&p);
    /* A reasoning model's stream may be silent for minutes after its role
     * chunk; a non-stream head comes only when generation is done. */
    assert_int_equal(p.timeouts.idle_ms, 300000);
    assert_int_equal(p.timeouts.first_byte_ms, 60000);
    assert_int_equal(p.timeouts.head_ms, RS_UNSET);
    assert_int_equal(rs_timeouts_head_ms(&p.timeouts), p.timeouts.total_ms);
    /* head_ms follows total_ms wherever that is set, until it is set itself. */
    rs_policy_unset(&over);
    assert_int_equal(
        rs_policy_parse(NULL, "{\"total_ms\":90000}", &over, "models[0]", msg, sizeof msg), 0);
    rs_policy_merge(&p, &over);
    assert_int_equal(rs_timeouts_head_ms(&p.timeouts), 90000);
    rs_policy_unset(&over);
    assert_int_equal(
        rs_policy_parse(NULL, "{\"head_ms\":5000}", &over, "routes[0]", msg, sizeof msg), 0);
    rs_policy_merge(&p, &over);
    assert_int_equal(rs_timeouts_head_ms(&p.timeouts), 5000);
    assert_int_equal(p.timeouts.total_ms, 90000);
    rs_policy_unset(&over);
    assert_int_equal(rs_policy_parse(NULL, "{\"head_ms\":0}", &over, "m", msg, sizeof msg), 0);
    rs_policy_merge(&p, &over);
    assert_int_equal(rs_timeouts_head_ms(&p.timeouts), 0); /* none */
    assert_int_equal(rs_policy_parse(NULL, "{\"head_ms\":-1}", &over, "m", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "timeouts.head_ms"));
}

static void reset_on_a_reused_connection_is_retried_and_blames_nobody(void **state)
{
    struct rs_policy p, over;
    char msg[256];
    (void)state;
    rs_policy_defaults(&p);
    /* A pooled connection closed as the request crossed it: retried (at once,
     * on a new connection: proxy.c), and neither a failure nor a success of
     * the upstream for its breaker. A reset on a new connection still falls back. */
    assert_int_equal(p.retry.on[RS_RESET_REUSED], RS_RETRY);
    assert_int_equal(p.retry.on[RS_RESET], RS_FALLBACK);
    assert_false(rs_class_is_upstream_failure(RS_RESET_REUSED));
    assert_true(rs_class_is_neutral(RS_RESET_REUSED));
    assert_false(rs_class_is_neutral(RS_RESET));
    /* The gateway out of descriptors: neutral, and no fallback (every other
     * candidate needs a descriptor too). */
    assert_int_equal(rs_class_of_transport(UP_EDESCRIPTORS, 0), RS_DESCRIPTORS);
    assert_string_equal(rs_class_name(RS_DESCRIPTORS), "descriptors");
    assert_true(rs_class_is_neutral(RS_DESCRIPTORS));
    assert_false(rs_class_is_upstream_failure(RS_DESCRIPTORS));
    assert_int_equal(p.retry.on[RS_DESCRIPTORS], RS_FAIL);
    assert_true(rs_class_is_upstream_failure(RS_RESET));
    /* At-most-once is a config key away. */
    rs_policy_unset(&over);
    assert_int_equal(rs_policy_parse("{\"on\":{\"reset_reused\":\"fail\"}}", NULL, &over, "m",
                                     msg, sizeof msg),
                     0);
    rs_policy_merge(&p, &over);
    assert_int_equal(p.retry.on[RS_RESET_REUSED], RS_FAIL);
}

static void policy_layers_override_field_by_field(void **state)
{
    struct rs_policy base, over;
    char msg[256];
    (void)state;
    rs_policy_defaults(&base);
    rs_policy_unset(&over);
    assert_int_equal(rs_policy_parse("{\"max_retries\":3,\"on\":{\"server_error\":\"retry\"}}",
                                     "{\"idle_ms\":50}", &over, "models[0]", msg, sizeof msg),
                     0);
    rs_policy_merge(&base, &over);
    assert_int_equal(base.retry.max_retries, 3);
    assert_int_equal(base.retry.on[RS_SERVER_ERROR], RS_RETRY);
    assert_int_equal(base.retry.on[RS_AUTH], RS_FALLBACK);
    assert_int_equal(base.timeouts.idle_ms, 50);
    assert_int_equal(base.timeouts.connect_ms, 10000);

    assert_int_equal(rs_policy_parse("{\"on\":{\"server_eror\":\"retry\"}}", NULL, &over,
                                     "routes[1]", msg, sizeof msg),
                     -1);
    assert_non_null(strstr(msg, "routes[1].retry.on.server_eror"));
    assert_int_equal(
        rs_policy_parse("{\"on\":{\"auth\":\"again\"}}", NULL, &over, "m", msg, sizeof msg), -1);
    assert_int_equal(rs_policy_parse(NULL, "{\"idle\":5}", &over, "m", msg, sizeof msg), -1);
    assert_int_equal(rs_policy_parse("{\"max_attempts\":0}", NULL, &over, "m", msg, sizeof msg),
                     -1);
}

/* An overlay changes the fields it sets, each into its own place, and
 * nothing else. */
static void overlay_sets_exactly_the_fields_it_names(void **state)
{
    struct rs_policy p, d, over;
    char msg[256];
    (void)state;
    memset(&p, 0, sizeof p);
    memset(&d, 0, sizeof d);
    rs_policy_defaults(&p);
    rs_policy_defaults(&d);
    /* An overlay with nothing set changes nothing, whatever its memory
     * held before. */
    memset(&over, 0x55, sizeof over);
    rs_policy_unset(&over);
    rs_policy_merge(&p, &over);
    assert_memory_equal(&p, &d, sizeof p);

    assert_int_equal(rs_policy_parse("{\"max_attempts\":7,\"max_retries\":3,\"base_delay_ms\":11,"
                                     "\"max_delay_ms\":222,\"max_retry_after_ms\":3333,"
                                     "\"deadline_ms\":44444,\"on\":{\"bad_request\":\"fallback\","
                                     "\"server_error\":\"fail\",\"timeout\":\"retry\"}}",
                                     "{\"connect_ms\":5,\"first_byte_ms\":6,\"head_ms\":7,"
                                     "\"idle_ms\":8,\"total_ms\":9}",
                                     &over, "routes[0]", msg, sizeof msg),
                     0);
    rs_policy_merge(&p, &over);
    assert_int_equal(p.retry.max_attempts, 7);
    assert_int_equal(p.retry.max_retries, 3);
    assert_int_equal(p.retry.base_delay_ms, 11);
    assert_int_equal(p.retry.max_delay_ms, 222);
    assert_int_equal(p.retry.max_retry_after_ms, 3333);
    assert_int_equal(p.retry.deadline_ms, 44444);
    assert_int_equal(p.retry.on[RS_BAD_REQUEST], RS_FALLBACK);
    assert_int_equal(p.retry.on[RS_SERVER_ERROR], RS_FAIL);
    assert_int_equal(p.retry.on[RS_TIMEOUT], RS_RETRY);
    assert_int_equal(p.retry.on[RS_AUTH], d.retry.on[RS_AUTH]);
    assert_int_equal(p.timeouts.connect_ms, 5);
    assert_int_equal(p.timeouts.first_byte_ms, 6);
    assert_int_equal(p.timeouts.head_ms, 7);
    assert_int_equal(p.timeouts.idle_ms, 8);
    assert_int_equal(p.timeouts.total_ms, 9);
}

/* A bad `retry` is refused, however good the `timeouts` beside it. */
static void policy_error_in_retry_stands_beside_good_timeouts(void **state)
{
    struct rs_policy over;
    char msg[256];
    (void)state;
    rs_policy_unset(&over);
    assert_int_equal(rs_policy_parse("{\"max_retries\":-1}", "{\"idle_ms\":5}", &over, "models[3]",
                                     msg, sizeof msg),
                     -1);
    assert_non_null(strstr(msg, "models[3].retry.max_retries"));
}

/* Each number's refusal names its range ("expected an integer from LO to
 * HI"): both ends are taken, and the values just past them refused. */
static void config_ranges_are_the_ones_their_messages_name(void **state)
{
    static const struct {
        const char *section, *key;
    } keys[] = {
        {"retry", "max_attempts"},       {"retry", "max_retries"},
        {"retry", "base_delay_ms"},      {"retry", "max_delay_ms"},
        {"retry", "max_retry_after_ms"}, {"retry", "deadline_ms"},
        {"timeouts", "connect_ms"},      {"timeouts", "first_byte_ms"},
        {"timeouts", "head_ms"},         {"timeouts", "idle_ms"},
        {"timeouts", "total_ms"},        {"breaker", "consecutive_failures"},
        {"breaker", "min_requests"},     {"breaker", "window_ms"},
        {"breaker", "cooldown_ms"},      {"breaker", "max_cooldown_ms"},
        {"queue", "max_waiting"},        {"queue", "max_wait_ms"},
    };
    struct rs_policy p;
    struct rs_breaker_conf b;
    struct rs_queue_conf q;
    char json[160], msg[256];
    (void)state;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        long lo, hi;
        const char *range;
        rs_policy_defaults(&p);
        rs_breaker_defaults(&b);
        rs_queue_defaults(&q);
        snprintf(json, sizeof json, "{\"%s\":{\"%s\":99999999999}}", keys[i].section, keys[i].key);
        assert_int_equal(rs_resilience_parse(json, &p, &b, &q, msg, sizeof msg), -1);
        assert_non_null(strstr(msg, keys[i].key));
        range = strstr(msg, "expected an integer from ");
        assert_non_null(range);
        assert_int_equal(sscanf(range, "expected an integer from %ld to %ld", &lo, &hi), 2);
        for (int k = 0; k < 4; k++) {
            long v = k == 0 ? lo : k == 1 ? hi : k == 2 ? lo - 1 : hi + 1;
            snprintf(json, sizeof json, "{\"%s\":{\"%s\":%ld}}", keys[i].section, keys[i].key, v);
            assert_int_equal(rs_resilience_parse(json, &p, &b, &q, msg, sizeof msg),
                             k < 2 ? 0 : -1);
        }
    }
    /* Each timeout may be 0 for none, but connect_ms. */
    assert_int_equal(
        rs_resilience_parse("{\"timeouts\":{\"connect_ms\":0}}", &p, &b, &q, msg, sizeof msg), -1);
    /* failure_rate: from 0 (never) to 1 (every attempt failed). */
    assert_int_equal(
        rs_resilience_parse("{\"breaker\":{\"failure_rate\":0}}", &p, &b, &q, msg, sizeof msg), 0);
    assert_int_equal(
        rs_resilience_parse("{\"breaker\":{\"failure_rate\":1}}", &p, &b, &q, msg, sizeof msg), 0);
    assert_true(b.failure_rate == 1);
    assert_int_equal(
        rs_resilience_parse("{\"breaker\":{\"failure_rate\":1.01}}", &p, &b, &q, msg, sizeof msg),
        -1);
    assert_int_equal(
        rs_resilience_parse("{\"breaker\":{\"failure_rate\":-0.01}}", &p, &b, &q, msg, sizeof msg),
        -1);
}

static void resilience_section_parses_every_part(void **state)
{
    struct rs_policy p;
    struct rs_breaker_conf b;
    struct rs_queue_conf q;
    char msg[256];
    (void)state;
    rs_policy_defaults(&p);
    rs_breaker_defaults(&b);
    rs_queue_defaults(&q);
    assert_int_equal(rs_resilience_parse("{\"retry\":{\"max_attempts\":2},\"timeouts\":"
                                         "{\"first_byte_ms\":7},\"breaker\":{\"cooldown_ms\":9,"
                                         "\"when_all_open\":\"try_closest\"},\"queue\":"
                                         "{\"max_waiting\":0}}",
                                         &p, &b, &q, msg, sizeof msg),
                     0);
    assert_int_equal(p.retry.max_attempts, 2);
    assert_int_equal(p.timeouts.first_byte_ms, 7);
    assert_int_equal(b.cooldown_ms, 9);
    assert_true(b.try_closest);
    assert_int_equal(q.max_waiting, 0);
    assert_int_equal(
        rs_resilience_parse("{\"breaker\":{\"failure_rate\":2}}", &p, &b, &q, msg, sizeof msg), -1);
    assert_int_equal(rs_resilience_parse("[]", &p, &b, &q, msg, sizeof msg), -1);
    assert_int_equal(rs_resilience_parse("{\"retries\":{}}", &p, &b, &q, msg, sizeof msg), -1);
}

/* null is "unset" in a config: the default stays in force, as it does for
 * a model's max_concurrency in the library's part. It was refused here
 * ("got null", "expected an object"). */
static void null_in_the_resilience_section_leaves_the_default(void **state)
{
    struct rs_policy p, d, over;
    struct rs_breaker_conf b, db;
    struct rs_queue_conf q, dq;
    char msg[256];
    (void)state;
    rs_policy_defaults(&p);
    rs_policy_defaults(&d);
    rs_breaker_defaults(&b);
    rs_breaker_defaults(&db);
    rs_queue_defaults(&q);
    rs_queue_defaults(&dq);
    assert_int_equal(rs_resilience_parse("{\"retry\":{\"max_attempts\":null,\"on\":"
                                         "{\"server_error\":null}},\"timeouts\":{\"head_ms\":"
                                         "null},\"breaker\":{\"cooldown_ms\":null,"
                                         "\"failure_rate\":null,\"when_all_open\":null},"
                                         "\"queue\":{\"max_waiting\":null}}",
                                         &p, &b, &q, msg, sizeof msg),
                     0);
    assert_int_equal(p.retry.max_attempts, d.retry.max_attempts);
    assert_int_equal(p.retry.on[RS_SERVER_ERROR], d.retry.on[RS_SERVER_ERROR]);
    assert_int_equal(p.timeouts.head_ms, d.timeouts.head_ms);
    assert_int_equal(b.cooldown_ms, db.cooldown_ms);
    assert_true(b.failure_rate == db.failure_rate);
    assert_int_equal(b.try_closest, db.try_closest);
    assert_int_equal(q.max_waiting, dq.max_waiting);
    assert_int_equal(rs_resilience_parse("{\"retry\":null,\"timeouts\":null,\"breaker\":null,"
                                         "\"queue\":null}",
                                         &p, &b, &q, msg, sizeof msg),
                     0);
    rs_policy_unset(&over);
    assert_int_equal(rs_policy_parse("{\"max_retries\":null,\"on\":null}",
                                     "{\"total_ms\":null}", &over, "m", msg, sizeof msg),
                     0);
    rs_policy_merge(&p, &over);
    assert_int_equal(p.retry.max_retries, d.retry.max_retries);
    assert_int_equal(p.timeouts.total_ms, d.timeouts.total_ms);
    /* A wrong value is still refused. */
    assert_int_equal(
        rs_resilience_parse("{\"queue\":{\"max_waiting\":\"1\"}}", &p, &b, &q, msg, sizeof msg),
        -1);
    assert_non_null(strstr(msg, "server.resilience.queue.max_waiting"));
}

static void backoff_is_full_jitter_capped(void **state)
{
    struct rs_retry r;
    (void)state;
    r.base_delay_ms = 100;
    r.max_delay_ms = 1000;
    assert_int_equal(rs_backoff_ms(&r, 0, 0.0), 0);
    assert_int_equal(rs_backoff_ms(&r, 0, 0.5), 50);
    assert_int_equal(rs_backoff_ms(&r, 1, 0.5), 100);
    assert_int_equal(rs_backoff_ms(&r, 2, 0.5), 200);
    /* Past the cap the delay is the cap's share, whatever the retry count:
     * an overflow (to 0 or below) must not pass for "at most the cap". */
    assert_int_equal(rs_backoff_ms(&r, 10, 0.999), (long)(1000 * 0.999));
    assert_int_equal(rs_backoff_ms(&r, 500, 0.999), (long)(1000 * 0.999));
    assert_int_equal(rs_backoff_ms(&r, 4000000000u, 0.5), 500);
    assert_int_equal(rs_backoff_ms(&r, 3, 2.0), 799);   /* unit clamped below 1 */
}

static struct rs_breaker_conf conf(void)
{
    struct rs_breaker_conf c;
    rs_breaker_defaults(&c);
    c.consecutive_failures = 3;
    c.failure_rate = 0;
    c.cooldown_ms = 1000;
    c.max_cooldown_ms = 8000;
    return c;
}

static void breaker_opens_after_consecutive_failures(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    int probe;
    (void)state;
    memset(&b, 0, sizeof b);
    rs_breaker_record(&b, &c, 10.0, 1, -1, 0);
    rs_breaker_record(&b, &c, 10.1, 0, -1, 0); /* a success resets the run */
    rs_breaker_record(&b, &c, 10.2, 1, -1, 0);
    rs_breaker_record(&b, &c, 10.3, 1, -1, 0);
    assert_int_equal(b.state, RS_CLOSED);
    assert_true(rs_breaker_admit(&b, 10.3, &probe) && !probe);
    rs_breaker_record(&b, &c, 10.4, 1, -1, 0);
    assert_int_equal(b.state, RS_OPEN);
    assert_false(rs_breaker_admit(&b, 11.0, &probe));
    assert_true(rs_breaker_ready_in(&b, 11.0) > 0.39 && rs_breaker_ready_in(&b, 11.0) < 0.41);
}

/* A fresh breaker opened at 0 by three failures: open until 1.0. */
static void opened_at_zero(struct rs_breaker *b, const struct rs_breaker_conf *c)
{
    memset(b, 0, sizeof *b);
    for (int i = 0; i < 3; i++)
        rs_breaker_record(b, c, 0, 1, -1, 0);
}

/* Opened at 0 by three failures, half-open at 1.0 with its probe let through. */
static void half_open_with_probe(struct rs_breaker *b, const struct rs_breaker_conf *c)
{
    int probe;
    opened_at_zero(b, c);
    assert_true(rs_breaker_admit(b, 1.0, &probe) && probe);
}

static void breaker_half_open_admits_one_probe(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    int probe;
    (void)state;
    half_open_with_probe(&b, &c);
    assert_int_equal(b.state, RS_HALF_OPEN);
    assert_false(rs_breaker_admit(&b, 1.0, &probe)); /* one probe at a time */
    /* The probe fails: open again, twice as long. */
    rs_breaker_record(&b, &c, 1.1, 1, -1, 1);
    assert_int_equal(b.state, RS_OPEN);
    assert_false(rs_breaker_admit(&b, 2.5, &probe));
    assert_true(rs_breaker_admit(&b, 3.2, &probe) && probe);
    /* A probe released without a verdict lets another one go. */
    rs_breaker_release(&b, 1);
    assert_true(rs_breaker_admit(&b, 3.2, &probe) && probe);
    rs_breaker_record(&b, &c, 3.3, 0, -1, 1);
    assert_int_equal(b.state, RS_CLOSED);
    assert_int_equal(b.consecutive, 0);
    assert_true(b.opens == 2);
}

static void breaker_stale_failure_leaves_the_probe_alone(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    int probe;
    (void)state;
    half_open_with_probe(&b, &c);
    /* An attempt that started before the breaker opened fails while the
     * probe runs: the probe still decides, and no second one goes. */
    rs_breaker_record(&b, &c, 1.1, 1, -1, 0);
    assert_int_equal(b.state, RS_HALF_OPEN);
    for (double t = 1.1; t < 10.0; t += 0.5)
        assert_false(rs_breaker_admit(&b, t, &probe));
    /* The probe's verdict: it failed, so open again, twice as long. */
    rs_breaker_record(&b, &c, 10.0, 1, -1, 1);
    assert_int_equal(b.state, RS_OPEN);
    assert_false(rs_breaker_admit(&b, 11.9, &probe));
    assert_true(rs_breaker_admit(&b, 12.1, &probe) && probe);
    assert_false(rs_breaker_admit(&b, 12.1, &probe));
}

/* An attempt that started before the breaker opened succeeds while it is
 * half-open: the model answered, so it closes, as for the probe's success;
 * while the cooldown still runs, such a success changes nothing. */
static void breaker_stale_success_closes_it(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    int probe;
    (void)state;
    half_open_with_probe(&b, &c);
    rs_breaker_record(&b, &c, 1.1, 0, -1, 0);
    assert_int_equal(b.state, RS_CLOSED);
    assert_true(rs_breaker_admit(&b, 1.1, &probe));
    assert_false(probe);
    assert_true(rs_breaker_admit(&b, 1.1, &probe)); /* closed: not one at a time */
    /* The probe then fails: one failure of the three it takes to open. */
    rs_breaker_record(&b, &c, 1.2, 1, -1, 1);
    assert_int_equal(b.state, RS_CLOSED);

    opened_at_zero(&b, &c);
    rs_breaker_record(&b, &c, 0.5, 0, -1, 0);
    assert_int_equal(b.state, RS_OPEN);
    assert_false(rs_breaker_admit(&b, 0.99, &probe));
    assert_true(rs_breaker_admit(&b, 1.0, &probe) && probe);
}

static void breaker_honours_retry_after(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    int probe;
    (void)state;
    memset(&b, 0, sizeof b);
    /* One failure with Retry-After opens it for exactly that long. */
    rs_breaker_record(&b, &c, 100, 1, 2.0, 0);
    assert_int_equal(b.state, RS_OPEN);
    assert_false(rs_breaker_admit(&b, 101.9, &probe));
    assert_true(rs_breaker_admit(&b, 102.0, &probe) && probe);
    /* Capped by max_cooldown_ms. */
    memset(&b, 0, sizeof b);
    rs_breaker_record(&b, &c, 0, 1, 3600, 0);
    assert_true(rs_breaker_ready_in(&b, 0) == 8.0);
    /* Opened by the count, Retry-After longer than the cooldown wins. */
    memset(&b, 0, sizeof b);
    rs_breaker_record(&b, &c, 0, 1, -1, 0);
    rs_breaker_record(&b, &c, 0, 1, -1, 0);
    rs_breaker_record(&b, &c, 0, 1, 5, 0);
    assert_true(rs_breaker_ready_in(&b, 0) == 5.0);
}

static void breaker_opens_on_failure_rate_with_minimum(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    uint32_t f, t;
    (void)state;
    c.consecutive_failures = 0;
    c.failure_rate = 0.5;
    c.min_requests = 6;
    c.window_ms = 10000;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 4; i++) /* 2 of 4 failed: under the minimum */
        rs_breaker_record(&b, &c, 1.0 + i * 0.1, i % 2, -1, 0);
    assert_int_equal(b.state, RS_CLOSED);
    rs_breaker_record(&b, &c, 2.0, 0, -1, 0);
    rs_breaker_record(&b, &c, 2.1, 1, -1, 0); /* 3 of 6 */
    assert_int_equal(b.state, RS_OPEN);
    /* Old buckets leave the window. */
    rs_breaker_window(&b, &c, 30.0, &f, &t);
    assert_int_equal(t, 0);
}

/* A breaker that the failure rate opened, closed again by a probe's
 * success, starts its window afresh: the failures that opened it do not
 * reopen it at the first failure after. */
static void breaker_closed_by_a_probe_forgets_the_failures_that_opened_it(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    uint32_t f, t;
    int probe;
    (void)state;
    c.consecutive_failures = 0;
    c.failure_rate = 0.5;
    c.min_requests = 4;
    c.window_ms = 30000;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 4; i++)
        rs_breaker_record(&b, &c, 1.0 + i * 0.1, 1, -1, 0);
    assert_int_equal(b.state, RS_OPEN);
    assert_true(rs_breaker_admit(&b, 3.0, &probe) && probe);
    rs_breaker_record(&b, &c, 3.1, 0, -1, 1);
    assert_int_equal(b.state, RS_CLOSED);
    rs_breaker_window(&b, &c, 3.1, &f, &t);
    assert_int_equal(f, 0);
    assert_int_equal(t, 1);
    rs_breaker_record(&b, &c, 3.2, 0, -1, 0);
    rs_breaker_record(&b, &c, 3.3, 1, -1, 0); /* 1 of 3, under the minimum */
    assert_int_equal(b.state, RS_CLOSED);
    assert_true(rs_breaker_admit(&b, 3.4, &probe) && !probe);
    /* The rate still opens it on failures after the recovery. */
    rs_breaker_record(&b, &c, 3.5, 1, -1, 0); /* 2 of 4 */
    assert_int_equal(b.state, RS_OPEN);
}

static void breaker_ready_in_says_when_an_attempt_could_go(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    (void)state;
    /* The probe in flight holds every other attempt back; released, it
     * holds none. */
    half_open_with_probe(&b, &c);
    assert_true(rs_breaker_ready_in(&b, 1.0) > 0);
    rs_breaker_release(&b, 1);
    assert_true(rs_breaker_ready_in(&b, 1.0) == 0);
    /* Open: the rest of its cooldown, and none once that is over, whether
     * or not an attempt has asked since. */
    opened_at_zero(&b, &c);
    assert_true(rs_breaker_ready_in(&b, 0.25) == 0.75);
    assert_true(rs_breaker_ready_in(&b, 1.0) == 0);
    assert_true(rs_breaker_ready_in(&b, 5.0) == 0);
}

/* An attempt that was not the probe and ends with no verdict (a class
 * that says nothing of the upstream) does not free the probe's place. */
static void breaker_release_of_another_attempt_leaves_the_probe_alone(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    int probe;
    (void)state;
    half_open_with_probe(&b, &c);
    rs_breaker_release(&b, 0);
    assert_false(rs_breaker_admit(&b, 1.2, &probe));
    rs_breaker_release(&b, 1);
    assert_true(rs_breaker_admit(&b, 1.2, &probe) && probe);
}

static void breaker_failed_probes_wait_at_most_max_cooldown(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf(); /* cooldown 1 s, at most 8 s */
    double now = 1.0, wait = 1.0;
    int probe;
    (void)state;
    half_open_with_probe(&b, &c);
    for (int i = 0; i < 6; i++) {
        rs_breaker_record(&b, &c, now, 1, -1, 1);
        wait = wait * 2 > 8 ? 8 : wait * 2;
        assert_true(rs_breaker_ready_in(&b, now) == wait);
        now += wait;
        assert_true(rs_breaker_admit(&b, now, &probe) && probe);
    }
}

static void breaker_failed_probe_waits_for_a_longer_retry_after(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    int probe;
    (void)state;
    half_open_with_probe(&b, &c);
    /* Twice the cooldown is 2 s; the upstream asked for 6. */
    rs_breaker_record(&b, &c, 1.0, 1, 6.0, 1);
    assert_true(rs_breaker_ready_in(&b, 1.0) == 6.0);
    assert_false(rs_breaker_admit(&b, 6.9, &probe));
    assert_true(rs_breaker_admit(&b, 7.0, &probe) && probe);
}

/* Attempts that started before the breaker opened may end while it is
 * open: a longer pause asked for keeps it open longer, a shorter one does
 * not shorten it. */
static void breaker_open_keeps_the_longest_pause_asked_for(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    int probe;
    (void)state;
    opened_at_zero(&b, &c);
    rs_breaker_record(&b, &c, 0.5, 1, 3.0, 0);
    assert_true(rs_breaker_ready_in(&b, 0.5) == 3.0);
    rs_breaker_record(&b, &c, 1.0, 1, 0.5, 0);
    assert_true(rs_breaker_ready_in(&b, 1.0) == 2.5);
    assert_false(rs_breaker_admit(&b, 3.4, &probe));
    assert_true(rs_breaker_admit(&b, 3.5, &probe) && probe);
}

/* consecutive_failures 0 and failure_rate 0 turn those triggers off:
 * failures alone never open it then, however many; a pause asked for
 * still does. */
static void breaker_triggers_set_to_zero_never_open_it(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    (void)state;
    c.consecutive_failures = 0;
    c.failure_rate = 0;
    c.min_requests = 4;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 50; i++)
        rs_breaker_record(&b, &c, 0.1 * i, 1, -1, 0);
    assert_int_equal(b.state, RS_CLOSED);
    rs_breaker_record(&b, &c, 5.0, 1, 2.0, 0);
    assert_int_equal(b.state, RS_OPEN);
}

/* The failure rate is over the attempts of the last window_ms, whenever
 * that is: those at the very moment asked about are in it, those older
 * than window_ms are not. */
static void breaker_window_holds_the_attempts_of_the_last_window_ms(void **state)
{
    struct rs_breaker b;
    struct rs_breaker_conf c = conf();
    uint32_t f, t;
    (void)state;
    c.consecutive_failures = 0;
    c.failure_rate = 0.5;
    c.min_requests = 4;
    c.window_ms = 10000;
    memset(&b, 0, sizeof b);
    for (int i = 1; i <= 3; i++)
        rs_breaker_record(&b, &c, 0.1 * i, 1, -1, 0);
    rs_breaker_window(&b, &c, 0.3, &f, &t);
    assert_int_equal(f, 3);
    assert_int_equal(t, 3);
    rs_breaker_window(&b, &c, 10.9, &f, &t); /* 10.6 s and more after them */
    assert_int_equal(t, 0);

    memset(&b, 0, sizeof b);
    for (int i = 0; i < 4; i++)
        rs_breaker_record(&b, &c, 5.0, 1, -1, 0);
    assert_int_equal(b.state, RS_OPEN);

    /* Successes, then failures more than a window later: the successes
     * are out of the window, the failures in it. */
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 10; i++)
        rs_breaker_record(&b, &c, 1.5, 0, -1, 0);
    for (int i = 0; i < 3; i++)
        rs_breaker_record(&b, &c, 11.5 + 0.1 * i, 1, -1, 0);
    rs_breaker_window(&b, &c, 11.7, &f, &t);
    assert_int_equal(f, 3);
    assert_int_equal(t, 3);
    rs_breaker_record(&b, &c, 11.8, 1, -1, 0);
    assert_int_equal(b.state, RS_OPEN);
}

/* A cooldown set above the default max_cooldown_ms: a failed probe
 * reopens the breaker for no less than that cooldown. */
static void breaker_failed_probe_never_waits_less_than_the_cooldown(void **state)
{
    struct rs_policy p;
    struct rs_breaker_conf c;
    struct rs_queue_conf q;
    struct rs_breaker b;
    char msg[256];
    int probe;
    (void)state;
    rs_policy_defaults(&p);
    rs_breaker_defaults(&c);
    rs_queue_defaults(&q);
    assert_int_equal(rs_resilience_parse("{\"breaker\":{\"consecutive_failures\":1,"
                                         "\"cooldown_ms\":120000}}",
                                         &p, &c, &q, msg, sizeof msg),
                     0);
    memset(&b, 0, sizeof b);
    rs_breaker_record(&b, &c, 0, 1, -1, 0);
    assert_true(rs_breaker_ready_in(&b, 0) == 120);
    assert_true(rs_breaker_admit(&b, 120, &probe) && probe);
    rs_breaker_record(&b, &c, 120, 1, -1, 1);
    assert_int_equal(b.state, RS_OPEN);
    assert_true(rs_breaker_ready_in(&b, 120) >= 120);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(statuses_map_to_classes),
        cmocka_unit_test(answers_of_the_gateways_exchange_are_not_relayed),
        cmocka_unit_test(transport_errors_map_to_classes),
        cmocka_unit_test(retry_after_reads_seconds_and_dates),
        cmocka_unit_test(retry_after_reads_decimal_seconds),
        cmocka_unit_test(retry_after_ms_is_read_and_preferred),
        cmocka_unit_test(context_overflow_of_vllm),
        cmocka_unit_test(context_overflow_of_llamacpp),
        cmocka_unit_test(context_overflow_of_tgi),
        cmocka_unit_test(context_overflow_of_ollama),
        cmocka_unit_test(context_overflow_scan_is_bounded),
        cmocka_unit_test(context_overflow_is_told_by_each_servers_words_alone),
        cmocka_unit_test(ok_body_with_an_error_is_a_failure),
        cmocka_unit_test(ok_body_that_answers_is_never_refused),
        cmocka_unit_test(ok_body_error_message_is_cut_between_characters),
        cmocka_unit_test(ok_body_error_message_of_160_bytes_comes_whole),
        cmocka_unit_test(ok_body_with_a_huge_error_is_still_a_failure),
        cmocka_unit_test(defaults_are_safe),
        cmocka_unit_test(defaults_are_the_documented_ones),
        cmocka_unit_test(missing_endpoint_or_model_blames_no_model),
        cmocka_unit_test(timeouts_default_to_long_generations),
        cmocka_unit_test(reset_on_a_reused_connection_is_retried_and_blames_nobody),
        cmocka_unit_test(policy_layers_override_field_by_field),
        cmocka_unit_test(overlay_sets_exactly_the_fields_it_names),
        cmocka_unit_test(policy_error_in_retry_stands_beside_good_timeouts),
        cmocka_unit_test(config_ranges_are_the_ones_their_messages_name),
        cmocka_unit_test(resilience_section_parses_every_part),
        cmocka_unit_test(null_in_the_resilience_section_leaves_the_default),
        cmocka_unit_test(backoff_is_full_jitter_capped),
        cmocka_unit_test(breaker_opens_after_consecutive_failures),
        cmocka_unit_test(breaker_half_open_admits_one_probe),
        cmocka_unit_test(breaker_stale_failure_leaves_the_probe_alone),
        cmocka_unit_test(breaker_stale_success_closes_it),
        cmocka_unit_test(breaker_honours_retry_after),
        cmocka_unit_test(breaker_opens_on_failure_rate_with_minimum),
        cmocka_unit_test(breaker_closed_by_a_probe_forgets_the_failures_that_opened_it),
        cmocka_unit_test(breaker_ready_in_says_when_an_attempt_could_go),
        cmocka_unit_test(breaker_release_of_another_attempt_leaves_the_probe_alone),
        cmocka_unit_test(breaker_failed_probes_wait_at_most_max_cooldown),
        cmocka_unit_test(breaker_failed_probe_waits_for_a_longer_retry_after),
        cmocka_unit_test(breaker_open_keeps_the_longest_pause_asked_for),
        cmocka_unit_test(breaker_triggers_set_to_zero_never_open_it),
        cmocka_unit_test(breaker_window_holds_the_attempts_of_the_last_window_ms),
        cmocka_unit_test(breaker_failed_probe_never_waits_less_than_the_cooldown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
