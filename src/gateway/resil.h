/* resil.h -- the gateway's resilience rules, apart from any I/O: how an
 * upstream attempt's outcome is classified, what each class does (retry the
 * same model, fall back to the next in the ranking, or fail), the backoff
 * between retries, the timeouts, and each model's circuit breaker.
 *
 * proxy.c applies these to live transfers; this module only decides. Nothing
 * here reads a clock: callers pass `now` (seconds, monotonic), so the
 * breaker's state machine is tested without waiting.
 *
 * Configuration comes in layers. The `server.resilience` object gives the
 * defaults; a route's `retry` / `timeouts` and a model's `retry` / `timeouts`
 * override single fields. An overlay keeps unset fields at RS_UNSET and
 * rs_policy_merge() lays it over a complete policy.
 *
 * Threads: pure functions over caller memory; the breaker state lives in the
 * per-model table (metrics.h) and is touched on the event loop thread only.
 */
#ifndef GW_RESIL_H
#define GW_RESIL_H

#include <stddef.h>
#include <stdint.h>

#include "upstream.h"

#define RS_UNSET (-1)

/* ==== Failure classes ==== */

enum rs_class {
    RS_OK = 0,
    RS_CONNECT_REFUSED,   /* refused, unreachable, name not resolved */
    RS_CONNECT_TIMEOUT,   /* no connection within timeouts.connect_ms */
    RS_TLS,               /* TLS handshake or certificate */
    RS_RESET,             /* reset or closed before the response head */
    RS_RESET_REUSED,      /* the same before any response byte, on a pooled connection */
    RS_TIMEOUT,           /* 408, no head within head_ms, no first byte within first_byte_ms,
                           * total_ms passed */
    RS_RATE_LIMITED,      /* 429 with Retry-After */
    RS_RATE_LIMITED_BARE, /* 429 without Retry-After */
    RS_SERVER_ERROR,      /* 5xx */
    RS_AUTH,              /* 401, 402, 403, 407 */
    RS_NOT_FOUND,         /* 404, 501: the model or the endpoint is missing there */
    RS_REDIRECT,          /* 3xx: base_url points elsewhere (never followed) */
    RS_CONTEXT_LENGTH,    /* 400, 413, 422 saying the context is too short */
    RS_BAD_REQUEST,       /* any other 4xx */
    RS_STREAM_CUT,        /* closed before [DONE], or a body cut short */
    RS_STREAM_STALL,      /* nothing within timeouts.idle_ms */
    RS_MALFORMED,         /* an SSE data line, or a 2xx body, that is not JSON */
    RS_PROTOCOL,          /* not HTTP as expected, a head too large, any other transport error */
    RS_TOO_LARGE,         /* larger than server.max_response_bytes */
    RS_BAD_RESPONSE,      /* a 2xx not as asked: not JSON, or not an event stream for a stream */
    RS_DESCRIPTORS,       /* the gateway had no descriptor for the connection (EMFILE, ENFILE) */
    RS_N_CLASSES
};

/* The class's name in config keys, metrics labels and logs. */
const char *rs_class_name(enum rs_class c);
/* The class for a name, or -1. */
int rs_class_from_name(const char *name);

/* The class of a transport error (on_done's). */
enum rs_class rs_class_of_transport(enum up_error err, int head_seen);
/* The class of an HTTP response status (>= 300) with its (possibly partial)
 * body; retry_after is the raw header value or NULL. A 3xx is RS_REDIRECT:
 * the gateway follows no redirect (it would resend the body and the API key
 * to wherever the upstream points), so it is a configuration error. */
enum rs_class rs_class_of_status(long status, const char *body, size_t body_len,
                                 const char *retry_after);
/* The same, with the raw retry-after-ms value (or NULL) as well: a 429 with
 * either hint readable is RS_RATE_LIMITED. */
enum rs_class rs_class_of_answer(long status, const char *body, size_t body_len,
                                 const char *retry_after, const char *retry_after_ms);
/* A context overflow is told by its words in the error body, which differ by
 * server; only this many bytes of a body are searched for them. */
#define RS_ERROR_SCAN_BYTES 16384
/* The class of a 2xx JSON body that is an error and not an answer: an object
 * with a top-level `error` member, an object or a string, and none of
 * `choices`, `data`, `output` (OpenRouter answers 200 so when the provider
 * failed after the request was accepted). RS_RATE_LIMITED_BARE when the
 * error's numeric code is 429, RS_SERVER_ERROR for any other; the error's
 * message, cut to at most 160 bytes between characters, goes into msg (""
 * when it has none). RS_OK for any other body: an answer is never refused. */
enum rs_class rs_class_of_ok_body(const char *body, size_t len, char *msg, size_t cap);
/* Does this class say something about the upstream's health? (A 400 says
 * the request was bad, not that the model is down.) */
int rs_class_is_upstream_failure(enum rs_class c);
/* Does this class say nothing about the upstream's health either way? Such
 * an attempt is neither a failure nor a success for the breaker. (A pooled
 * connection closed just as a request went out is the upstream's keep-alive
 * timeout crossing the request, not the upstream failing; a 404 or 501 says
 * an endpoint or a model is missing there, not that the server is down.) */
int rs_class_is_neutral(enum rs_class c);
/* Is an upstream's error answer of this status (300 to 599) relayed to the
 * client as it came when nothing is left to try? Not when it would speak of
 * the gateway's own exchange with the upstream rather than of the client's
 * request: a 3xx (its URL is the gateway's upstream), a 401, 402 or 407
 * (the gateway's credentials, its account's credit, its proxy) or a 408 (the upstream waited for the
 * gateway's request, not the client's); the gateway answers those itself. */
int rs_answer_relayed(long status);

/* Retry-After as seconds from now: delta-seconds (decimals too: "0.5") or
 * an HTTP date. Returns -1 when value is NULL or unreadable; never more than
 * a day. */
double rs_retry_after_seconds(const char *value, double wall_now);
/* retry-after-ms (Azure's, which OpenAI's SDKs read before Retry-After) as
 * seconds: milliseconds, decimals allowed. -1 when NULL or unreadable;
 * never more than a day. */
double rs_retry_after_ms_seconds(const char *value);
/* The upstream's pause in seconds from its two hints: retry-after-ms when it
 * is readable, else Retry-After; -1 when neither is. */
double rs_retry_hint_seconds(const char *retry_after, const char *retry_after_ms, double wall_now);

/* ==== Policies ==== */

enum rs_action { RS_RETRY = 0, RS_FALLBACK = 1, RS_FAIL = 2 };

const char *rs_action_name(int action);

struct rs_retry {
    int on[RS_N_CLASSES];    /* enum rs_action per class (RS_OK unused) */
    long max_attempts;       /* upstream attempts per request, over all models */
    long max_retries;        /* extra attempts on the same model */
    long base_delay_ms;      /* backoff: full jitter over base * 2^retry ... */
    long max_delay_ms;       /* ... capped here */
    long max_retry_after_ms; /* a longer Retry-After turns a retry into a fallback */
    /* From the request's start: no attempt or wait starts later than this,
     * and a query vector's fetch (embedq.c) ends at it; 0 = none. */
    long deadline_ms;
};

struct rs_timeouts {
    long connect_ms;    /* TCP (and TLS) connect */
    long first_byte_ms; /* a stream: attempt start to the first body byte; 0 = none */
    long head_ms;       /* not a stream: attempt start to the response head; 0 = none,
                         * RS_UNSET = total_ms (rs_timeouts_head_ms()) */
    long idle_ms;       /* between pieces of a body once it started; 0 = none */
    long total_ms;      /* one attempt, start to end; 0 = none */
};

struct rs_policy {
    struct rs_retry retry;
    struct rs_timeouts timeouts;
};

struct rs_breaker_conf {
    long consecutive_failures; /* open after this many failures in a row; 0 = never */
    double failure_rate;       /* open when failures / attempts in the window reach this */
    long min_requests;         /* ... with at least this many attempts in the window */
    long window_ms;
    long cooldown_ms;     /* open this long before a probe (doubling while probes fail) */
    long max_cooldown_ms; /* cap on the cooldown, Retry-After included */
    int try_closest;      /* every candidate open: try the one closest to recovery */
};

struct rs_queue_conf {
    long max_waiting; /* requests waiting for a model with room; 0 = no queue */
    long max_wait_ms; /* then 429 with Retry-After */
};

/* The built-in defaults. */
void rs_policy_defaults(struct rs_policy *p);
/* The bound on a non-stream attempt's wait for its response head: head_ms,
 * or total_ms when head_ms was set nowhere. A server sends a non-stream
 * head only once the whole answer is generated, so by default that wait is
 * bounded by the attempt's own bound and nothing shorter. 0 = none. */
long rs_timeouts_head_ms(const struct rs_timeouts *t);
void rs_breaker_defaults(struct rs_breaker_conf *b);
void rs_queue_defaults(struct rs_queue_conf *q);
/* An overlay with every field RS_UNSET. */
void rs_policy_unset(struct rs_policy *p);
/* Lay the set fields of over onto p. */
void rs_policy_merge(struct rs_policy *p, const struct rs_policy *over);

/* Read a `retry` object (retry_json) and a `timeouts` object (timeouts_json),
 * both compact JSON text or NULL, into p: only the members present are set.
 * `where` prefixes messages ("routes[1]"). Returns 0, or -1 with msg filled. */
int rs_policy_parse(const char *retry_json, const char *timeouts_json, struct rs_policy *p,
                    const char *where, char *msg, size_t cap);
/* Read `server.resilience` (JSON text or NULL) into the three defaults
 * (which the caller set first). Returns 0, or -1 with msg filled. */
int rs_resilience_parse(const char *json, struct rs_policy *p, struct rs_breaker_conf *b,
                        struct rs_queue_conf *q, char *msg, size_t cap);

/* What a configuration value that is not the integer a key wants was, for
 * the end of its message: "got -1", "got a string", "got 10 written as a
 * real number (an integer has no '.' or exponent)". Returns buf. */
struct json_t;
const char *rs_json_got(const struct json_t *v, char *buf, size_t cap);

/* The wait before retry number `retry` (0 = the first retry) of the same
 * model: uniform in [0, min(max_delay, base * 2^retry)] (full jitter), with
 * `unit` a random number in [0, 1). */
long rs_backoff_ms(const struct rs_retry *r, unsigned retry, double unit);

/* ==== Circuit breaker ==== */

enum rs_breaker_state { RS_CLOSED = 0, RS_OPEN = 1, RS_HALF_OPEN = 2 };

#define RS_WINDOW_BUCKETS 10

struct rs_breaker {
    int state;
    long consecutive;
    double open_until; /* while open */
    double cooldown_s; /* the last cooldown, doubled while probes fail */
    int probe_in_flight;
    uint64_t opens; /* times it opened */
    struct {
        double start;
        uint32_t ok, failed;
    } bucket[RS_WINDOW_BUCKETS];
};

const char *rs_breaker_state_name(int state);

/* May an attempt start now? Moves open -> half-open when the cooldown is
 * over. In half-open only one attempt (the probe) is admitted: *probe is set
 * to 1 for it, and the caller must end it with rs_breaker_record() or
 * rs_breaker_release(). */
int rs_breaker_admit(struct rs_breaker *b, double now, int *probe);
/* Seconds until an attempt could be admitted (0 when it could be now). */
double rs_breaker_ready_in(const struct rs_breaker *b, double now);
/* An attempt's verdict: failed or not; retry_after_s > 0 when the upstream
 * asked for a pause (it opens the breaker for at least that long). */
void rs_breaker_record(struct rs_breaker *b, const struct rs_breaker_conf *c, double now,
                       int failed, double retry_after_s, int probe);
/* A probe that ended with no verdict (the client went away). */
void rs_breaker_release(struct rs_breaker *b, int probe);
/* Failures and attempts in the window ending at now. */
void rs_breaker_window(const struct rs_breaker *b, const struct rs_breaker_conf *c, double now,
                       uint32_t *failed, uint32_t *total);

#endif
