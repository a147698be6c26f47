/* resil.c -- failure classes, retry policies, backoff and the circuit
 * breaker (see resil.h). No I/O and no clock: the proxy passes the time.
 *
 * Threads: pure functions over caller memory; any thread.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "jsonscan.h"
#include "resil.h"

/* ==== Classes ==== */

static const char *const class_names[RS_N_CLASSES] = {
    "ok",
    "connect_refused",
    "connect_timeout",
    "tls",
    "reset",
    "reset_reused",
    "timeout",
    "rate_limited",
    "rate_limited_no_retry_after",
    "server_error",
    "auth",
    "not_found",
    "redirect",
    "context_length",
    "bad_request",
    "stream_cut",
    "stream_stall",
    "malformed",
    "protocol",
    "too_large",
    "bad_response",
    "descriptors",
};

const char *rs_class_name(enum rs_class c)
{
    return (unsigned)c < RS_N_CLASSES ? class_names[c] : "unknown";
}

int rs_class_from_name(const char *name)
{
    for (int i = 1; i < RS_N_CLASSES; i++)
        if (strcmp(class_names[i], name) == 0)
            return i;
    return -1;
}

enum rs_class rs_class_of_transport(enum up_error err, int head_seen)
{
    switch (err) {
    case UP_OK:
        return RS_OK;
    case UP_ECONNREFUSED:
        return RS_CONNECT_REFUSED;
    case UP_ECONNTIMEOUT:
        return RS_CONNECT_TIMEOUT;
    case UP_ETLS:
        return RS_TLS;
    case UP_ERESET:
        return head_seen ? RS_STREAM_CUT : RS_RESET;
    case UP_ERESET_REUSED:
        return head_seen ? RS_STREAM_CUT : RS_RESET_REUSED;
    case UP_ECLOSED:
        return RS_STREAM_CUT;
    case UP_ETIMEOUT:
        return RS_TIMEOUT;
    case UP_EDESCRIPTORS:
        return RS_DESCRIPTORS;
    default:
        /* UP_ETOOBIG too: a response head over the client's cap is the
         * upstream misbehaving, not the request's fault (too_large is for a
         * body over server.max_response_bytes, which the proxy finds). */
        return RS_PROTOCOL;
    }
}

/* Does hay[0..n) hold needle (lower case), ASCII case aside? Only the first
 * RS_ERROR_SCAN_BYTES are searched: an error's words come early in its body,
 * and a body may be as large as server.max_response_bytes. */
static int contains(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    if (n > RS_ERROR_SCAN_BYTES)
        n = RS_ERROR_SCAN_BYTES;
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if ((hay[i] | 0x20) == needle[0] && strncasecmp(hay + i, needle, k) == 0)
            return 1;
    return 0;
}

/* What servers say when a request does not fit the model's context: another
 * model may have a longer one. Each server words it its own way. */
static const char *const context_words[] = {
    "context_length_exceeded",                       /* OpenAI's code */
    "maximum context length",                        /* vLLM's message (and OpenAI's) */
    "exceed_context_size_error",                     /* llama.cpp's type */
    "exceeds the available context size",            /* llama.cpp's message */
    "`inputs` tokens + `max_new_tokens` must be <=", /* TGI's validation error */
    "`inputs` must have less than",                  /* TGI's, the input alone */
    "input length exceeds the context length",       /* Ollama's */
    NULL,
};

static int context_overflow(const char *body, size_t len)
{
    if (!body)
        return 0;
    for (size_t i = 0; context_words[i]; i++)
        if (contains(body, len, context_words[i]))
            return 1;
    return 0;
}

enum rs_class rs_class_of_answer(long status, const char *body, size_t body_len,
                                 const char *retry_after, const char *retry_after_ms)
{
    if (status == 408)
        return RS_TIMEOUT;
    if (status == 429)
        return rs_retry_hint_seconds(retry_after, retry_after_ms, 0) >= 0 ? RS_RATE_LIMITED
                                                                          : RS_RATE_LIMITED_BARE;
    /* 407: a proxy between the gateway and the upstream wants credentials
     * the gateway does not have; 402: the gateway's account there is out
     * of credit (DeepSeek's "Insufficient Balance", OpenRouter's credits).
     * 4xx, but no fault of the request's: another model may serve it. */
    if (status == 401 || status == 402 || status == 403 || status == 407)
        return RS_AUTH;
    /* 501 Not Implemented is a server without the endpoint (llama.cpp's
     * server answers /v1/embeddings so without --embeddings): as a 404, the
     * thing asked for is missing there, and the server is not failing. */
    if (status == 404 || status == 501)
        return RS_NOT_FOUND;
    if (status >= 300 && status < 400)
        return RS_REDIRECT;
    /* 422: TGI's validation errors. */
    if ((status == 400 || status == 413 || status == 422) && context_overflow(body, body_len))
        return RS_CONTEXT_LENGTH;
    if (status >= 400 && status < 500)
        return RS_BAD_REQUEST;
    if (status >= 500 && status < 600)
        return RS_SERVER_ERROR;
    return RS_PROTOCOL;
}

enum rs_class rs_class_of_status(long status, const char *body, size_t body_len,
                                 const char *retry_after)
{
    return rs_class_of_answer(status, body, body_len, retry_after, NULL);
}

/* The most of an error's message a 2xx error body's class carries. */
#define OK_ERROR_MESSAGE_MAX 160
/* A 2xx error member larger than this is not parsed for its message. */
#define OK_ERROR_PARSE_MAX 65536

/* Copy s into dst, cut between UTF-8 characters (s is valid UTF-8, as
 * jansson gives it) to at most max bytes, "..." marking a cut. */
static void copy_cut(char *dst, size_t cap, const char *s, size_t max)
{
    size_t n = 0;
    if (!cap)
        return;
    if (cap <= 4 || max > cap - 4) /* room for "..." and the NUL */
        max = cap > 4 ? cap - 4 : 0;
    while (s[n]) {
        unsigned char b = (unsigned char)s[n];
        size_t k = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        if (n + k > max)
            break;
        n += k;
    }
    memcpy(dst, s, n);
    if (s[n] && cap > n + 3) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
}

enum rs_class rs_class_of_ok_body(const char *body, size_t len, char *msg, size_t cap)
{
    struct js_member m[32];
    size_t n = 0, i;
    const char *err = NULL;
    size_t err_len = 0;
    enum rs_class c = RS_SERVER_ERROR;
    json_t *e, *text;

    if (cap)
        msg[0] = '\0';
    /* More top-level members than m holds is some answer's, not an error
     * object's: only a body the scanner reads whole is looked at. */
    if (!body || js_scan_object(body, len, m, sizeof m / sizeof m[0], &n) != 0)
        return RS_OK;
    for (i = 0; i < n; i++) {
        if (js_key_equals(body, &m[i], "choices") || js_key_equals(body, &m[i], "data") ||
            js_key_equals(body, &m[i], "output"))
            return RS_OK;
        if (js_key_equals(body, &m[i], "error")) {
            err = body + m[i].value_start;
            err_len = m[i].value_end - m[i].value_start;
        }
    }
    if (!err || err_len == 0 || (err[0] != '{' && err[0] != '"'))
        return RS_OK; /* none, null, or no error a client could be told */
    if (err_len > OK_ERROR_PARSE_MAX)
        return c;
    e = json_loadb(err, err_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (json_is_object(e)) {
        json_t *code = json_object_get(e, "code");
        long status = -1;
        if (json_is_integer(code))
            status = (long)json_integer_value(code);
        else if (json_is_string(code)) {
            char *end;
            const char *v = json_string_value(code);
            long k = strtol(v, &end, 10);
            if (end != v && !*end)
                status = k;
        }
        /* An upstream's 429 without Retry-After, as a 429 head would be. */
        if (status == 429)
            c = RS_RATE_LIMITED_BARE;
        text = json_object_get(e, "message");
    } else {
        text = e;
    }
    if (json_is_string(text))
        copy_cut(msg, cap, json_string_value(text), OK_ERROR_MESSAGE_MAX);
    json_decref(e);
    return c;
}

int rs_class_is_upstream_failure(enum rs_class c)
{
    return c != RS_OK && c != RS_CONTEXT_LENGTH && c != RS_BAD_REQUEST && c != RS_TOO_LARGE &&
           c != RS_RESET_REUSED && c != RS_DESCRIPTORS && c != RS_NOT_FOUND;
}

int rs_class_is_neutral(enum rs_class c)
{
    /* The gateway out of descriptors says nothing about the upstream. Nor
     * does a 404 or 501: an endpoint or a model missing at that server. The
     * client chooses the endpoint, so counting it as a failure would let any
     * client open a model's breaker for everyone by asking for one the
     * server does not have (/v1/embeddings of a chat server); counting it
     * as a success would let it hold a failing model's breaker closed. */
    return c == RS_RESET_REUSED || c == RS_DESCRIPTORS || c == RS_NOT_FOUND;
}

int rs_answer_relayed(long status)
{
    if (status < 400 || status >= 600)
        return 0;
    return status != 401 && status != 402 && status != 407 && status != 408;
}

/* Digits with an optional fraction ("12", "0.5"), blanks around them: the
 * number, or -1 for any other text. Past 1e15 it is only "large"; digits of
 * the fraction past the ninth are read and not counted. */
static double read_decimal(const char *p)
{
    double v = 0, fraction = 0, scale = 1;
    int digits = 0, places = 0;
    while (*p == ' ')
        p++;
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        if (v < 1e15)
            v = v * 10 + (*p - '0');
    if (!digits)
        return -1;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, places++)
            if (places < 9) {
                fraction = fraction * 10 + (*p - '0');
                scale *= 10;
            }
        if (!places)
            return -1;
        v += fraction / scale; /* whole numbers over a power of ten: one rounding */
    }
    while (*p == ' ')
        p++;
    return *p ? -1 : v;
}

double rs_retry_after_seconds(const char *value, double wall_now)
{
    const char *p = value;
    double s;
    if (!value)
        return -1;
    while (*p == ' ')
        p++;
    if (*p >= '0' && *p <= '9') {
        /* RFC 9110 has whole seconds; some servers send "0.5", which is
         * meant as it reads. */
        s = read_decimal(p);
        if (s < 0)
            return -1;
    } else {
        time_t t = curl_getdate(p, NULL);
        if (t == (time_t)-1)
            return -1;
        s = (double)t - wall_now;
    }
    if (s < 0)
        s = 0;
    return s > 86400 ? 86400 : s;
}

double rs_retry_after_ms_seconds(const char *value)
{
    double ms = value ? read_decimal(value) : -1;
    if (ms < 0)
        return -1;
    return ms / 1000 > 86400 ? 86400 : ms / 1000;
}

double rs_retry_hint_seconds(const char *retry_after, const char *retry_after_ms, double wall_now)
{
    /* retry-after-ms is the finer of the two, and OpenAI's SDKs read it first. */
    double s = rs_retry_after_ms_seconds(retry_after_ms);
    return s >= 0 ? s : rs_retry_after_seconds(retry_after, wall_now);
}

/* ==== Policies ==== */

const char *rs_action_name(int action)
{
    switch (action) {
    case RS_RETRY:
        return "retry";
    case RS_FALLBACK:
        return "fallback";
    case RS_FAIL:
        return "fail";
    default:
        return "unset";
    }
}

void rs_policy_defaults(struct rs_policy *p)
{
    struct rs_retry *r = &p->retry;
    for (int i = 0; i < RS_N_CLASSES; i++)
        r->on[i] = RS_FALLBACK;
    r->on[RS_RATE_LIMITED] = RS_RETRY;
    r->on[RS_RESET_REUSED] = RS_RETRY; /* at once, once, on a fresh connection (proxy.c) */
    r->on[RS_BAD_REQUEST] = RS_FAIL;
    r->on[RS_TOO_LARGE] = RS_FAIL;
    /* Every other candidate needs a descriptor too: they would fail alike. */
    r->on[RS_DESCRIPTORS] = RS_FAIL;
    r->max_attempts = 4;
    r->max_retries = 1;
    r->base_delay_ms = 100;
    r->max_delay_ms = 2000;
    r->max_retry_after_ms = 1000;
    r->deadline_ms = 60000;
    p->timeouts.connect_ms = 10000;
    p->timeouts.first_byte_ms = 60000;
    p->timeouts.head_ms = RS_UNSET; /* total_ms: see rs_timeouts_head_ms() */
    /* A reasoning model's stream may send its role chunk and then nothing
     * while it thinks, for minutes (OpenAI's o-series do): a shorter default
     * would cut it and send the request to the next model, billed twice. */
    p->timeouts.idle_ms = 300000;
    p->timeouts.total_ms = 600000;
}

long rs_timeouts_head_ms(const struct rs_timeouts *t)
{
    return t->head_ms >= 0 ? t->head_ms : t->total_ms;
}

void rs_breaker_defaults(struct rs_breaker_conf *b)
{
    b->consecutive_failures = 5;
    b->failure_rate = 0.5;
    b->min_requests = 20;
    b->window_ms = 30000;
    b->cooldown_ms = 5000;
    b->max_cooldown_ms = 60000;
    b->try_closest = 0;
}

void rs_queue_defaults(struct rs_queue_conf *q)
{
    q->max_waiting = 100;
    q->max_wait_ms = 1000;
}

void rs_policy_unset(struct rs_policy *p)
{
    struct rs_retry *r = &p->retry;
    for (int i = 0; i < RS_N_CLASSES; i++)
        r->on[i] = RS_UNSET;
    r->max_attempts = r->max_retries = r->base_delay_ms = r->max_delay_ms = RS_UNSET;
    r->max_retry_after_ms = r->deadline_ms = RS_UNSET;
    p->timeouts.connect_ms = p->timeouts.first_byte_ms = p->timeouts.head_ms = RS_UNSET;
    p->timeouts.idle_ms = p->timeouts.total_ms = RS_UNSET;
}

#define MERGE(field)                                                                               \
    do {                                                                                           \
        if (over->field != RS_UNSET)                                                               \
            p->field = over->field;                                                                \
    } while (0)

void rs_policy_merge(struct rs_policy *p, const struct rs_policy *over)
{
    for (int i = 0; i < RS_N_CLASSES; i++)
        MERGE(retry.on[i]);
    MERGE(retry.max_attempts);
    MERGE(retry.max_retries);
    MERGE(retry.base_delay_ms);
    MERGE(retry.max_delay_ms);
    MERGE(retry.max_retry_after_ms);
    MERGE(retry.deadline_ms);
    MERGE(timeouts.connect_ms);
    MERGE(timeouts.first_byte_ms);
    MERGE(timeouts.head_ms);
    MERGE(timeouts.idle_ms);
    MERGE(timeouts.total_ms);
}

#undef MERGE

static int perr(char *msg, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int perr(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -1;
}

const char *rs_json_got(const json_t *v, char *buf, size_t cap)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        snprintf(buf, cap, "got %lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL: {
        /* The shortest digits that read back as the value. */
        char num[32];
        double d = json_real_value(v);
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, d);
            if (strtod(num, NULL) == d)
                break;
        }
        snprintf(buf, cap, "got %s written as a real number (an integer has no '.' or exponent)",
                 num);
        break;
    }
    case JSON_STRING: snprintf(buf, cap, "got a string"); break;
    case JSON_OBJECT: snprintf(buf, cap, "got an object"); break;
    case JSON_ARRAY: snprintf(buf, cap, "got an array"); break;
    case JSON_TRUE:
    case JSON_FALSE: snprintf(buf, cap, "got a boolean"); break;
    default: snprintf(buf, cap, "got null"); break;
    }
    return buf;
}

/* A member of o, or NULL when it is absent or null: in a config, null
 * means unset (the default applies), as it does in the library's part. */
static json_t *member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* One integer member within [lo, hi], if present. */
static int get_long(json_t *o, const char *key, long lo, long hi, long *out, const char *where,
                    char *msg, size_t cap)
{
    json_t *v = member(o, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        char got[128];
        return perr(msg, cap, "%s.%s: expected an integer from %ld to %ld, %s", where, key, lo, hi,
                    rs_json_got(v, got, sizeof got));
    }
    *out = (long)json_integer_value(v);
    return 0;
}

/* Refuse members not in keys: a misspelt key would silently do nothing. */
static int known_keys(json_t *o, const char *const *keys, const char *where, char *msg, size_t cap)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        size_t i;
        for (i = 0; keys[i] && strcmp(keys[i], key) != 0; i++)
            ;
        if (!keys[i])
            return perr(msg, cap, "%s.%s: unknown key", where, key);
    }
    return 0;
}

#define DAY_MS 86400000L

static int parse_retry(json_t *o, struct rs_retry *r, const char *where, char *msg, size_t cap)
{
    static const char *const keys[] = {"max_attempts", "max_retries", "base_delay_ms",
                                       "max_delay_ms", "deadline_ms", "max_retry_after_ms",
                                       "on",           NULL};
    json_t *on;
    if (!json_is_object(o))
        return perr(msg, cap, "%s: expected an object", where);
    if (known_keys(o, keys, where, msg, cap) ||
        get_long(o, "max_attempts", 1, 100, &r->max_attempts, where, msg, cap) ||
        get_long(o, "max_retries", 0, 100, &r->max_retries, where, msg, cap) ||
        get_long(o, "base_delay_ms", 0, DAY_MS, &r->base_delay_ms, where, msg, cap) ||
        get_long(o, "max_delay_ms", 0, DAY_MS, &r->max_delay_ms, where, msg, cap) ||
        get_long(o, "deadline_ms", 0, DAY_MS, &r->deadline_ms, where, msg, cap) ||
        get_long(o, "max_retry_after_ms", 0, DAY_MS, &r->max_retry_after_ms, where, msg, cap))
        return -1;
    on = member(o, "on");
    if (on) {
        const char *key;
        json_t *v;
        if (!json_is_object(on))
            return perr(msg, cap, "%s.on: expected an object of failure class to action", where);
        json_object_foreach(on, key, v)
        {
            int c = rs_class_from_name(key);
            const char *a = json_string_value(v);
            if (c < 0)
                return perr(msg, cap,
                            "%s.on.%s: unknown failure class (see the README's Resilience part)",
                            where, key);
            if (json_is_null(v))
                continue;
            if (!a ||
                (strcmp(a, "retry") != 0 && strcmp(a, "fallback") != 0 && strcmp(a, "fail") != 0))
                return perr(msg, cap, "%s.on.%s: expected \"retry\", \"fallback\" or \"fail\"",
                            where, key);
            r->on[c] = strcmp(a, "retry") == 0 ? RS_RETRY
                       : strcmp(a, "fallback") == 0 ? RS_FALLBACK
                                                    : RS_FAIL;
        }
    }
    return 0;
}

static int parse_timeouts(json_t *o, struct rs_timeouts *t, const char *where, char *msg,
                          size_t cap)
{
    static const char *const keys[] = {"connect_ms", "first_byte_ms", "head_ms",
                                       "idle_ms",    "total_ms",      NULL};
    if (!json_is_object(o))
        return perr(msg, cap, "%s: expected an object", where);
    if (known_keys(o, keys, where, msg, cap) ||
        get_long(o, "connect_ms", 1, DAY_MS, &t->connect_ms, where, msg, cap) ||
        get_long(o, "first_byte_ms", 0, DAY_MS, &t->first_byte_ms, where, msg, cap) ||
        get_long(o, "head_ms", 0, DAY_MS, &t->head_ms, where, msg, cap) ||
        get_long(o, "idle_ms", 0, DAY_MS, &t->idle_ms, where, msg, cap) ||
        get_long(o, "total_ms", 0, DAY_MS, &t->total_ms, where, msg, cap))
        return -1;
    return 0;
}

int rs_policy_parse(const char *retry_json, const char *timeouts_json, struct rs_policy *p,
                    const char *where, char *msg, size_t cap)
{
    char w[160];
    int rc = 0;
    if (retry_json) {
        json_t *o = json_loads(retry_json, JSON_DECODE_ANY, NULL);
        snprintf(w, sizeof w, "%s.retry", where);
        rc = o ? parse_retry(o, &p->retry, w, msg, cap) : perr(msg, cap, "%s: bad JSON", w);
        json_decref(o);
        if (rc)
            return rc;
    }
    if (timeouts_json) {
        json_t *o = json_loads(timeouts_json, JSON_DECODE_ANY, NULL);
        snprintf(w, sizeof w, "%s.timeouts", where);
        rc = o ? parse_timeouts(o, &p->timeouts, w, msg, cap) : perr(msg, cap, "%s: bad JSON", w);
        json_decref(o);
    }
    return rc;
}

static int parse_breaker(json_t *o, struct rs_breaker_conf *b, char *msg, size_t cap)
{
    static const char *const keys[] = {
        "consecutive_failures", "failure_rate",    "min_requests",  "window_ms",
        "cooldown_ms",          "max_cooldown_ms", "when_all_open", NULL};
    const char *where = "server.resilience.breaker";
    json_t *rate = member(o, "failure_rate"), *all = member(o, "when_all_open");
    if (!json_is_object(o))
        return perr(msg, cap, "%s: expected an object", where);
    if (known_keys(o, keys, where, msg, cap) ||
        get_long(o, "consecutive_failures", 0, 1000000, &b->consecutive_failures, where, msg,
                 cap) ||
        get_long(o, "min_requests", 1, 1000000, &b->min_requests, where, msg, cap) ||
        get_long(o, "window_ms", 10, DAY_MS, &b->window_ms, where, msg, cap) ||
        get_long(o, "cooldown_ms", 1, DAY_MS, &b->cooldown_ms, where, msg, cap) ||
        get_long(o, "max_cooldown_ms", 1, DAY_MS, &b->max_cooldown_ms, where, msg, cap))
        return -1;
    if (rate) {
        if (!json_is_number(rate) || json_number_value(rate) < 0 || json_number_value(rate) > 1)
            return perr(msg, cap, "%s.failure_rate: expected a number from 0 (never) to 1", where);
        b->failure_rate = json_number_value(rate);
    }
    if (all) {
        const char *s = json_string_value(all);
        if (!s || (strcmp(s, "fail") != 0 && strcmp(s, "try_closest") != 0))
            return perr(msg, cap, "%s.when_all_open: expected \"fail\" or \"try_closest\"", where);
        b->try_closest = strcmp(s, "try_closest") == 0;
    }
    if (b->max_cooldown_ms < b->cooldown_ms)
        b->max_cooldown_ms = b->cooldown_ms;
    return 0;
}

int rs_resilience_parse(const char *json, struct rs_policy *p, struct rs_breaker_conf *b,
                        struct rs_queue_conf *q, char *msg, size_t cap)
{
    static const char *const keys[] = {"retry", "timeouts", "breaker", "queue", NULL};
    static const char *const qkeys[] = {"max_waiting", "max_wait_ms", NULL};
    const char *where = "server.resilience";
    json_t *o, *v;
    int rc = -1;
    if (!json)
        return 0;
    o = json_loads(json, JSON_DECODE_ANY, NULL);
    if (!json_is_object(o)) {
        perr(msg, cap, "%s: expected an object", where);
        goto out;
    }
    if (known_keys(o, keys, where, msg, cap))
        goto out;
    if ((v = member(o, "retry")) &&
        parse_retry(v, &p->retry, "server.resilience.retry", msg, cap))
        goto out;
    if ((v = member(o, "timeouts")) &&
        parse_timeouts(v, &p->timeouts, "server.resilience.timeouts", msg, cap))
        goto out;
    if ((v = member(o, "breaker")) && parse_breaker(v, b, msg, cap))
        goto out;
    if ((v = member(o, "queue"))) {
        const char *w = "server.resilience.queue";
        if (!json_is_object(v)) {
            perr(msg, cap, "%s: expected an object", w);
            goto out;
        }
        if (known_keys(v, qkeys, w, msg, cap) ||
            get_long(v, "max_waiting", 0, 1000000, &q->max_waiting, w, msg, cap) ||
            get_long(v, "max_wait_ms", 0, DAY_MS, &q->max_wait_ms, w, msg, cap))
            goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

long rs_backoff_ms(const struct rs_retry *r, unsigned retry, double unit)
{
    double cap = (double)r->base_delay_ms;
    for (unsigned i = 0; i < retry && cap < (double)r->max_delay_ms; i++)
        cap *= 2;
    if (cap > (double)r->max_delay_ms)
        cap = (double)r->max_delay_ms;
    if (unit < 0)
        unit = 0;
    if (unit >= 1)
        unit = 0.999999;
    return (long)(cap * unit);
}

/* ==== Circuit breaker ==== */

const char *rs_breaker_state_name(int state)
{
    return state == RS_OPEN ? "open" : state == RS_HALF_OPEN ? "half_open" : "closed";
}

int rs_breaker_admit(struct rs_breaker *b, double now, int *probe)
{
    *probe = 0;
    if (b->state == RS_OPEN && now >= b->open_until) {
        b->state = RS_HALF_OPEN;
        b->probe_in_flight = 0;
    }
    if (b->state == RS_CLOSED)
        return 1;
    if (b->state == RS_HALF_OPEN && !b->probe_in_flight) {
        b->probe_in_flight = 1;
        *probe = 1;
        return 1;
    }
    return 0;
}

double rs_breaker_ready_in(const struct rs_breaker *b, double now)
{
    if (b->state == RS_OPEN)
        return b->open_until > now ? b->open_until - now : 0;
    if (b->state == RS_HALF_OPEN && b->probe_in_flight)
        return 1; /* the probe's answer decides; ask again shortly */
    return 0;
}

static double bucket_width(const struct rs_breaker_conf *c)
{
    return (double)c->window_ms / 1000.0 / RS_WINDOW_BUCKETS;
}

void rs_breaker_window(const struct rs_breaker *b, const struct rs_breaker_conf *c, double now,
                       uint32_t *failed, uint32_t *total)
{
    double w = bucket_width(c), oldest = floor(now / w) * w - (RS_WINDOW_BUCKETS - 1) * w;
    *failed = *total = 0;
    for (int i = 0; i < RS_WINDOW_BUCKETS; i++) {
        if (b->bucket[i].start >= oldest - w * 1e-9 && b->bucket[i].start <= now) {
            *failed += b->bucket[i].failed;
            *total += b->bucket[i].ok + b->bucket[i].failed;
        }
    }
}

static void open_for(struct rs_breaker *b, double now, double seconds)
{
    b->state = RS_OPEN;
    b->cooldown_s = seconds;
    b->open_until = now + seconds;
    b->probe_in_flight = 0;
    b->opens++;
}

void rs_breaker_record(struct rs_breaker *b, const struct rs_breaker_conf *c, double now,
                       int failed, double retry_after_s, int probe)
{
    double w = bucket_width(c), start = floor(now / w) * w;
    long slot = (long)fmod(floor(now / w), RS_WINDOW_BUCKETS);
    double base = (double)c->cooldown_ms / 1000.0, cap = (double)c->max_cooldown_ms / 1000.0;
    double ra = retry_after_s > 0 ? (retry_after_s < cap ? retry_after_s : cap) : 0;

    if (slot < 0)
        slot = 0;
    if (b->bucket[slot].start != start) {
        b->bucket[slot].start = start;
        b->bucket[slot].ok = b->bucket[slot].failed = 0;
    }
    if (probe)
        b->probe_in_flight = 0;
    if (!failed) {
        b->bucket[slot].ok++;
        b->consecutive = 0;
        if (b->state == RS_HALF_OPEN) {
            /* Recovered. The failures that opened it were answered by the
             * open time; left in the window, they would reopen it at the
             * first failure after this (its rate still over failure_rate),
             * for another cooldown, however well the model now answers. */
            b->state = RS_CLOSED;
            b->cooldown_s = 0;
            for (int i = 0; i < RS_WINDOW_BUCKETS; i++)
                b->bucket[i].ok = b->bucket[i].failed = 0;
            b->bucket[slot].ok = 1;
        }
        return;
    }
    b->bucket[slot].failed++;
    b->consecutive++;
    if (b->state == RS_HALF_OPEN && !probe)
        /* An attempt that started before it opened: the probe in flight
         * decides. Reopening here cleared its flag, so that after the
         * next cooldown a second probe went while the first still ran. */
        return;
    if (b->state == RS_HALF_OPEN) {
        /* The probe failed: wait longer this time. */
        double next = b->cooldown_s > 0 ? b->cooldown_s * 2 : base;
        if (next > cap)
            next = cap;
        open_for(b, now, next > ra ? next : ra);
        return;
    }
    if (b->state == RS_OPEN) {
        /* An attempt that started before it opened: only a longer pause counts. */
        if (now + ra > b->open_until)
            b->open_until = now + ra;
        return;
    }
    {
        uint32_t nf, nt;
        int by_counts = c->consecutive_failures > 0 && b->consecutive >= c->consecutive_failures;
        rs_breaker_window(b, c, now, &nf, &nt);
        if (c->failure_rate > 0 && nt >= (uint32_t)c->min_requests &&
            (double)nf >= c->failure_rate * (double)nt)
            by_counts = 1;
        /* Opened by the upstream's own Retry-After alone, the pause is that
         * long; opened by the counts, it is the cooldown, or longer if asked. */
        if (by_counts)
            open_for(b, now, ra > base ? ra : base);
        else if (ra > 0)
            open_for(b, now, ra);
    }
}

void rs_breaker_release(struct rs_breaker *b, int probe)
{
    if (probe)
        b->probe_in_flight = 0;
}
