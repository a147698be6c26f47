/* gateway.c -- the `llmroute serve` process: one event loop that owns the
 * HTTP server, the upstream client and the current configuration.
 *
 * Requests are dispatched by path and method here (gateway keys checked for
 * /v1/ paths when configured); forwarding goes to proxy.c, the rest to api.c.
 * SIGHUP reloads the configuration: a complete new gw_conf is built first and
 * swapped in only if it loads, so a bad file leaves the old one serving.
 * The history store is refreshed with other processes' commits every
 * server.store_refresh_ms and on SIGHUP, on a worker thread; the same
 * refresh rebuilds a copy that feedback appends have moved away from a
 * fresh open's, on SIGHUP and at most once per server.store_rebuild_min_ms
 * and per CONVERGE_COST_FACTOR times the last rebuild's duration.
 * SIGTERM (or SIGINT) stops accepting, lets in-flight requests finish until
 * server.shutdown_timeout_ms, then exits 0. The three signals are blocked
 * from the start of gw_run() until the loop handles them, so one that
 * arrives while the store and the config load is a stop (or a reload)
 * taken once they are loaded, never the default action's death.
 *
 * Threads: the event loop thread only (signals arrive as loop events).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <curl/curl.h>
#include <event2/event.h>

#include "affinity.h"
#include "connlimit.h"
#include "gateway.h"
#include "jsonscan.h"
#include "metrics.h"
#include "upstream.h"

double gw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The event loop. Its clock is read afresh at each timer it arms, not
 * cached for the loop's turn: a turn that parses a large body or routes
 * over a large store before arming an upstream's timeout would otherwise
 * arm it that much short (a 400 ms head timeout fired after 167 ms behind
 * a 4 MiB chat). And it is CLOCK_MONOTONIC, not the coarse clock, which
 * lags by up to a tick and so fired timeouts up to a few ms early. Either
 * read is a vDSO call. The cost, measured proxying chats at saturation:
 * 22 CLOCK_MONOTONIC reads per request (10 more than with libevent's
 * default of cached coarse reads; 31 ns each on a kvm-clock machine, so
 * about 0.3 us more), and, for the precise timer, epoll waits on a timerfd:
 * one timerfd_settime per turn of the loop (522 for 8,224 requests). Side
 * by side with a build without these flags (wrk, 32 connections), the
 * median per-round throughput ratio was 0.97, 0.97 and 0.98 in three runs
 * of 6 to 11 rounds, single rounds ranging from 0.68 to 1.18 on a shared
 * machine: a cost of a few per cent at most, kept, since a timeout that
 * fires short is a wrong answer. */
static struct event_base *base_new(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;
    if (!cfg)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME);
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

double gw_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void gw_utc_time(double at, char *buf, size_t cap)
{
    struct tm tm;
    time_t sec = (time_t)at;
    long ms = (long)((at - (double)sec) * 1000.0);
    size_t n;
    if (ms < 0 || ms > 999)
        ms = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    if (!gmtime_r(&sec, &tm))
        return;
    n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ", ms);
}

/* ==== Request ids and the log line ==== */

void gw_request_id(struct gw *gw, struct hs_req *req, char *buf, size_t cap)
{
    const char *given = hs_req_header(req, "x-request-id");
    if (given) {
        size_t n = strlen(given);
        int ok = n > 0 && n <= 128;
        for (size_t i = 0; ok && i < n; i++)
            ok = given[i] > 0x20 && given[i] < 0x7f && given[i] != '"' && given[i] != '\\';
        if (ok) {
            snprintf(buf, cap, "%s", given);
            return;
        }
    }
    /* A counter mixed with a per-process seed: unique here, unguessable enough
     * to tell runs apart in merged logs. */
    {
        uint64_t x = gw->id_seed ^ (++gw->next_id * 0x9E3779B97F4A7C15ull);
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 29;
        snprintf(buf, cap, "req-%016llx", (unsigned long long)x);
    }
}

/* The log line is built in a buffer and written with one call: stderr is
 * unbuffered, and a write per field would cost a system call each. */
struct line {
    char buf[4096];
    size_t len;
};

static void line_put(struct line *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void line_put(struct line *l, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (l->len >= sizeof l->buf)
        return;
    va_start(ap, fmt);
    n = vsnprintf(l->buf + l->len, sizeof l->buf - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < sizeof l->buf - l->len ? (size_t)n : sizeof l->buf - l->len - 1;
}

/* Append n bytes as they are (no formatting: most of a line is this). */
static void line_raw(struct line *l, const char *s, size_t n)
{
    if (n > sizeof l->buf - 1 - l->len)
        n = l->len < sizeof l->buf - 1 ? sizeof l->buf - 1 - l->len : 0;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void line_str(struct line *l, const char *key, const char *v)
{
    line_raw(l, ",\"", 2);
    line_raw(l, key, strlen(key));
    line_raw(l, "\":", 2);
    l->len = gw_json_string(l->buf, sizeof l->buf, l->len, v);
}

static void line_write(struct line *l)
{
    if (l->len > sizeof l->buf - 3)
        l->len = sizeof l->buf - 3;
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    fwrite(l->buf, 1, l->len, stderr);
}

/* ==== Rate-limiting the lines of refused requests ==== */

/* A client that sends bad requests as fast as it can would have the
 * gateway write a line for each: its log, and the disk or the collector
 * behind it, flooded by one client. So the lines of 4xx answers come out
 * of a token bucket, server.log_refused_per_s a second with bursts of
 * GW_LOG_REFUSED_BURST seconds' worth (so a short run of refusals, a
 * misconfigured client's first ones say, is logged whole); a line past it
 * is counted, not written, and a second after the first such line one
 * event says how many were left out. Every answer is still counted in
 * /metrics. Other lines (2xx, 5xx, 499, events) are never held back. This
 * is a rate, where the connection cap's lines in httpd.c are one line an
 * episode (accept_paused, then accept_resumed once quiet for a second):
 * refusals have no episode to end, so the summary comes on a timer. */

void gw_log_flush_suppressed(struct gw *gw)
{
    struct line l;
    if (gw->log_timer)
        evtimer_del(gw->log_timer);
    if (gw->log_suppressed == 0)
        return;
    l.len = 0;
    line_put(&l, "{\"event\":\"log_suppressed\",\"suppressed\":%llu",
             (unsigned long long)gw->log_suppressed);
    line_put(&l,
             ",\"message\":\"%llu similar lines suppressed: answers 400 to 498 over "
             "server.log_refused_per_s (%ld a second, bursts of %ld); /metrics counts them "
             "all\"",
             (unsigned long long)gw->log_suppressed, gw->conf->set.log_refused_per_s,
             gw->conf->set.log_refused_per_s * GW_LOG_REFUSED_BURST);
    line_write(&l);
    gw->log_suppressed = 0;
}

static void on_log_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_log_flush_suppressed(arg);
}

/* 1 when the line of a `status` answer is to be left out (and counted). */
static int log_refused_limited(struct gw *gw, int status)
{
    double rate = (double)gw->conf->set.log_refused_per_s, cap, now;
    if (status < 400 || status >= 499 || rate <= 0)
        return 0;
    cap = rate * GW_LOG_REFUSED_BURST;
    now = gw_now();
    if (gw->log_tokens_at <= 0)
        gw->log_tokens = cap;
    else
        gw->log_tokens += (now - gw->log_tokens_at) * rate;
    if (gw->log_tokens > cap) /* also after a reload lowered the rate */
        gw->log_tokens = cap;
    gw->log_tokens_at = now;
    if (gw->log_tokens >= 1) {
        gw->log_tokens -= 1;
        return 0;
    }
    gw->log_suppressed++;
    if (gw->log_timer && !evtimer_pending(gw->log_timer, NULL)) {
        struct timeval tv = {1, 0};
        evtimer_add(gw->log_timer, &tv);
    }
    return 1;
}

void gw_log_request(struct gw *gw, const struct gw_log *lg)
{
    struct line l;
    char when[40];

    if (!gw->conf->set.log_requests || log_refused_limited(gw, lg->status))
        return;
    l.len = 0;
    gw_utc_time(gw_wall_now(), when, sizeof when);
    line_put(&l, "{\"ts\":\"%s\"", when);
    line_str(&l, "id", lg->id);
    line_str(&l, "method", lg->method);
    line_str(&l, "path", lg->path);
    line_str(&l, "route", lg->route ? lg->route : "");
    line_str(&l, "model", lg->model ? lg->model : "");
    line_str(&l, "strategy", lg->strategy ? lg->strategy : "");
    line_put(&l, ",\"status\":%d,\"stream\":%s,\"latency_ms\":%.3f", lg->status,
             lg->stream ? "true" : "false", lg->latency_ms);
    if (lg->upstream_ms >= 0)
        line_put(&l, ",\"upstream_ms\":%.3f", lg->upstream_ms);
    if (lg->ttft_ms >= 0)
        line_put(&l, ",\"ttft_ms\":%.3f", lg->ttft_ms);
    if (lg->tokens_in >= 0)
        line_put(&l, ",\"tokens_in\":%ld", lg->tokens_in);
    if (lg->tokens_out >= 0)
        line_put(&l, ",\"tokens_out\":%ld", lg->tokens_out);
    if (!isnan(lg->cost))
        line_put(&l, ",\"cost\":%.9g", lg->cost);
    if (lg->error)
        line_str(&l, "error", lg->error);
    if (lg->message)
        line_str(&l, "message", lg->message);
    if (lg->attempts >= 0 && lg->attempts_json)
        line_put(&l, ",\"attempts\":%d,\"tries\":%s", lg->attempts, lg->attempts_json);
    if (lg->after_done_bytes > 0)
        line_put(&l, ",\"dropped_after_done\":%lld", lg->after_done_bytes);
    if (lg->done_added)
        line_put(&l, ",\"done_added\":true");
    if (lg->query_blank)
        line_put(&l, ",\"query_blank\":true");
    if (lg->upstream_request_id)
        line_str(&l, "upstream_request_id", lg->upstream_request_id);
    line_write(&l);
}

static void log_event(const char *event, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void log_event(const char *event, const char *fmt, ...)
{
    struct line l;
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    l.len = 0;
    line_put(&l, "{\"event\":\"%s\"", event);
    line_str(&l, "message", msg);
    line_write(&l);
}

int gw_query_blank(const char *q)
{
    return !q || q[strspn(q, " \t\n\v\f\r")] == '\0';
}

int gw_body_over_value_limit(struct gw *gw, const struct gw_conf *conf, const char *body,
                             size_t len, char *msg, size_t cap)
{
    size_t limit = conf->set.max_json_values;
    size_t n;
    /* Most bodies are too short to hold either many: no pass over them. */
    if (JS_MAX_VALUES(len) <= limit && JS_MAX_VALUES(len) < GW_TRIM_VALUES)
        return 0;
    n = js_count_values(body, len, limit);
    if (n <= limit) {
        if (n >= GW_TRIM_VALUES && gw->trim_timer && !evtimer_pending(gw->trim_timer, NULL)) {
            struct timeval tv = {1, 0};
            evtimer_add(gw->trim_timer, &tv);
        }
        return 0;
    }
    snprintf(msg, cap,
             "the request body holds more than %zu JSON values (server.max_json_values; each "
             "object, array, string, member name, number and literal is one): send a smaller "
             "body, or raise the setting",
             limit);
    return 1;
}

/* A large body's tree was parsed a second ago, and is freed by now
 * unless its request still waits with it. glibc keeps freed pieces for
 * reuse, and those of a tree lie scattered over the heap, so the RSS
 * stayed at the tree's size (61 MB after sixteen bodies of 190,000
 * values, against 11 MB at start); malloc_trim returns their pages. Not
 * after each body: the next large body would then fault its pages in
 * again, and trimming after each one doubled the time of a run of them
 * (21 to 43 ms a body of 190,000 values). A second later, at most once a
 * second, a run of them pays for one trim. */
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* ==== Dispatch ==== */

enum handler_kind { H_PROXY, H_API };

/* Which key a path needs. */
enum key_need {
    KEY_NONE,
    KEY_CLIENT,   /* one of server.api_keys_env's, when it is set */
    KEY_FEEDBACK, /* one of server.feedback_api_keys_env's when it is set, else KEY_CLIENT */
};

struct path_entry {
    const char *path;
    const char *method; /* one, or a list ("GET, HEAD, DELETE, POST") */
    enum key_need needs_key;
    enum handler_kind kind;
    enum gw_endpoint ep;
    int (*api)(struct gw *, struct hs_req *, const char *id);
    int prefix; /* path is a prefix: the rest of the target is the entry's argument */
};

static const struct path_entry paths[] = {
    {"/v1/chat/completions", "POST", KEY_CLIENT, H_PROXY, EP_CHAT, NULL, 0},
    {"/v1/completions", "POST", KEY_CLIENT, H_PROXY, EP_COMPLETIONS, NULL, 0},
    {"/v1/embeddings", "POST", KEY_CLIENT, H_PROXY, EP_EMBEDDINGS, NULL, 0},
    {"/v1/responses", "POST", KEY_CLIENT, H_PROXY, EP_RESPONSES, NULL, 0},
    /* A response id's retrieve, delete, cancel and input items: proxy.c
     * checks the rest of the path and its method. */
    {"/v1/responses/", "GET, HEAD, DELETE, POST", KEY_CLIENT, H_PROXY, EP_RESPONSES, NULL, 1},
    {"/v1/models", "GET", KEY_CLIENT, H_API, EP_CHAT, api_models, 0},
    {"/v1/models/", "GET", KEY_CLIENT, H_API, EP_CHAT, api_model, 1},
    {"/v1/route", "POST", KEY_CLIENT, H_API, EP_CHAT, api_route, 0},
    {"/v1/feedback", "POST", KEY_FEEDBACK, H_API, EP_CHAT, api_feedback, 0},
    {"/health", "GET", KEY_NONE, H_API, EP_CHAT, api_health, 0},
    {"/metrics", "GET", KEY_NONE, H_API, EP_CHAT, api_metrics, 0},
};
#define N_PATHS (sizeof paths / sizeof paths[0])

/* What OPTIONS * answers in Allow: every method of the table above, HEAD
 * (served wherever GET is) and OPTIONS itself (for "*"). */
#define SERVER_METHODS "GET, HEAD, POST, DELETE, OPTIONS"

/* Compare without leaking where the first difference is. */
static int key_equals(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

/* Whether the request's bearer key is one of keys (NULL-terminated); every
 * key is compared, so the time does not say which one matched. */
static int key_listed(struct hs_req *req, char *const *keys)
{
    const char *h = hs_req_header(req, "Authorization");
    int ok = 0;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    for (size_t i = 0; keys[i]; i++)
        ok |= key_equals(h, keys[i]);
    return ok;
}

/* Whether the request may reach e: 0, else the status of its refusal. A
 * client key is no feedback key (403: the client is known, the history
 * is not its to write); no key, or a key of neither list, is 401. */
static int key_refusal(const struct gw_conf *conf, const struct path_entry *e,
                       struct hs_req *req)
{
    char *const *fb = conf->set.feedback_api_keys;
    char *const *keys = conf->set.api_keys;
    if (e->needs_key == KEY_FEEDBACK && fb) {
        if (key_listed(req, fb))
            return 0;
        return keys && key_listed(req, keys) ? 403 : 401;
    }
    if (e->needs_key == KEY_NONE || !keys)
        return 0;
    return key_listed(req, keys) ? 0 : 401;
}

/* HEAD is answered wherever GET is, with GET's head and no body (httpd.c
 * leaves the body out). */
static int method_ok(const struct path_entry *e, const char *method)
{
    return gw_method_listed(e->method, method) ||
           (strcmp(e->method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

int gw_method_listed(const char *list, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = list + strspn(list, ", "); *p; p += strspn(p, ", ")) {
        size_t k = strcspn(p, ", ");
        if (k == n && strncmp(p, method, n) == 0)
            return 1;
        p += k;
    }
    return 0;
}

static const struct path_entry *path_find(const char *path)
{
    for (size_t i = 0; i < N_PATHS; i++) {
        size_t n = strlen(paths[i].path);
        if (paths[i].prefix ? strncmp(paths[i].path, path, n) == 0 && path[n] != '\0'
                            : strcmp(paths[i].path, path) == 0)
            return &paths[i];
    }
    return NULL;
}

const char *gw_endpoint_label(const char *path)
{
    const struct path_entry *e = path ? path_find(path) : NULL;
    return e ? e->path : "other";
}

/* A GET or HEAD request that announces a body: no endpoint takes one (RFC
 * 9110 section 9.3.1 gives it no meaning), and /health and /metrics, which
 * need no key, would otherwise let anyone make the gateway read bodies into
 * memory and hold connections while they come. Refused, 400. */
static int body_not_allowed(struct hs_req *req)
{
    const char *m = hs_req_method(req);
    return hs_req_body_announced(req) && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0);
}

/* A body under a content coding (RFC 9110 section 8.4): the gateway
 * decodes none, and read as JSON a gzip body would be "malformed JSON",
 * which names the wrong problem. Every Content-Encoding line is part of one
 * list; identity members pass. Returns the first other coding, copied into
 * buf (cut to fit), or NULL when the body, if any, is as sent. */
static const char *body_coding(const struct hs_req *req, char *buf, size_t cap)
{
    const char *v;
    if (!hs_req_body_announced(req))
        return NULL;
    for (int i = 0; (v = hs_req_header_nth(req, "Content-Encoding", i)) != NULL; i++) {
        const char *p = v;
        for (;;) {
            size_t n, k;
            p += strspn(p, " \t,");
            if (!*p)
                break;
            n = k = strcspn(p, ",");
            while (k && (p[k - 1] == ' ' || p[k - 1] == '\t'))
                k--;
            if (!(k == 8 && strncasecmp(p, "identity", 8) == 0)) {
                snprintf(buf, cap, "%.*s", (int)(k < cap ? k : cap - 1), p);
                return buf;
            }
            p += n;
        }
    }
    return NULL;
}

/* A request announcing a body has it read only when handle() will not
 * refuse it anyway: a GET or HEAD (400, body_not_allowed()), an unknown
 * path (404), a wrong method (405), a missing or wrong key (401, or 403 for
 * a client key on /v1/feedback when feedback keys are set), a body under a
 * content coding (415, body_coding()) are answered on
 * the head alone (httpd.h, hs_server_on_head), so a client with no key
 * cannot make the gateway hold its body, and one announcing it with
 * Expect: 100-continue is not invited to send it. */
static int head_refuses(struct hs_req *req, void *arg)
{
    struct gw *gw = arg;
    const struct path_entry *e = path_find(hs_req_path(req));
    if (body_not_allowed(req) || !e || !method_ok(e, hs_req_method(req)))
        return 1;
    if (e->prefix && e->ep == EP_RESPONSES) {
        /* The entry takes every method of its paths: this path's own. */
        const char *allow = gw_response_op_allow(hs_req_path(req));
        if (!allow || !gw_method_listed(allow, hs_req_method(req)))
            return 1;
    }
    if (key_refusal(gw->conf, e, req) != 0)
        return 1;
    char coding[64];
    return body_coding(req, coding, sizeof coding) != NULL;
}

static void handle(struct hs_req *req, void *arg)
{
    struct gw *gw = arg;
    const struct path_entry *e = NULL;
    char id[GW_REQUEST_ID_CAP], method[32], path[256];
    /* The whole path decides, as in head_refuses(): the copy below is cut at
     * 255 bytes, and a long id's sub-path (/cancel) would fall past the cut. */
    const char *whole = hs_req_path(req);
    double t0 = gw_now();
    int status, refusal = 0;
    char coding[64];

    /* Copies for the log and the messages: the request is gone once it is
     * answered, and the log comes after. */
    snprintf(method, sizeof method, "%s", hs_req_method(req));
    snprintf(path, sizeof path, "%s", whole);
    gw_request_id(gw, req, id, sizeof id);
    e = path_find(whole);
    if (body_not_allowed(req)) {
        /* Its body was not read (head_refuses()): the connection closes. */
        hs_resp_header(req, "x-request-id", id);
        gw_send_error(req, 400, NULL, "body_not_allowed",
                      "%s requests take no body: this one announced one (a Content-Length "
                      "over 0, or chunked), which was not read",
                      method);
        gw_log_answered(gw, id, method, path, 400, gw_error_sent(1), t0);
        return;
    }
    if (strcmp(whole, "*") == 0) {
        /* OPTIONS * (httpd.c takes the asterisk-form for OPTIONS alone):
         * the server as a whole, RFC 9110 section 9.3.7. Its Allow names
         * every method the paths table takes somewhere, HEAD wherever GET
         * is, and OPTIONS for this target; no key is asked, as the list is
         * what any 405 tells. Its body, if one was announced, is unread
         * (head_refuses() found no entry), so the connection closes. */
        hs_resp_header(req, "x-request-id", id);
        hs_resp_header(req, "Allow", SERVER_METHODS);
        hs_respond(req, 200, NULL, "", 0);
        gw_log_answered(gw, id, method, path, 200, NULL, t0);
        return;
    }
    if (e && method_ok(e, method))
        refusal = key_refusal(gw->conf, e, req);
    if (refusal == 401) {
        hs_resp_header(req, "x-request-id", id);
        hs_resp_header(req, "WWW-Authenticate", "Bearer");
        if (e->needs_key == KEY_FEEDBACK && gw->conf->set.feedback_api_keys)
            gw_send_error(req, 401, NULL, "invalid_api_key",
                          "Incorrect or missing API key: send 'Authorization: Bearer KEY' with "
                          "one of the gateway's feedback keys (server.feedback_api_keys_env)");
        else
            gw_send_error(req, 401, NULL, "invalid_api_key",
                          "Incorrect or missing API key: send 'Authorization: Bearer KEY' with "
                          "one of the gateway's keys");
        status = 401;
    } else if (refusal == 403) {
        hs_resp_header(req, "x-request-id", id);
        gw_send_error(req, 403, NULL, "feedback_key_required",
                      "POST /v1/feedback writes the history every smart route decides from, and "
                      "takes only the gateway's feedback keys (server.feedback_api_keys_env): "
                      "this key is a client key");
        status = 403;
    } else if (e && method_ok(e, method) && body_coding(req, coding, sizeof coding)) {
        /* Its body was not read (head_refuses()): the connection closes.
         * RFC 9110 section 15.5.16: 415, Accept-Encoding naming what is. */
        hs_resp_header(req, "x-request-id", id);
        hs_resp_header(req, "Accept-Encoding", "identity");
        gw_send_error(req, 415, NULL, "unsupported_content_encoding",
                      "the request body's Content-Encoding '%s' is not decoded here: send the "
                      "body as it is (no Content-Encoding, or identity); it was not read",
                      coding);
        status = 415;
    } else if (e && method_ok(e, method)) {
        if (e->kind == H_PROXY) {
            proxy_handle(gw, req, e->ep, id);
            return; /* it logs its own line when it finishes */
        }
        hs_resp_header(req, "x-request-id", id);
        gw_error_sent(1);
        status = e->api(gw, req, id);
        if (status == 0)
            return; /* answered later; it logs its own line then */
        if (strcmp(path, "/metrics") == 0 || strcmp(path, "/health") == 0)
            return; /* scrapes and probes are not requests worth a line */
    } else if (e && (!e->prefix || e->ep != EP_RESPONSES || gw_response_op_allow(whole))) {
        const char *allow = strcmp(e->method, "GET") == 0 ? "GET, HEAD" : e->method;
        if (e->prefix && e->ep == EP_RESPONSES)
            allow = gw_response_op_allow(whole);
        hs_resp_header(req, "x-request-id", id);
        hs_resp_header(req, "Allow", allow);
        gw_send_error(req, 405, NULL, "method_not_allowed", "%s %s: method not allowed (use %s)",
                      method, path, allow);
        status = 405;
    } else {
        hs_resp_header(req, "x-request-id", id);
        gw_send_error(req, 404, NULL, "unknown_url", "Unknown request URL: %s %s", method, path);
        status = 404;
    }
    /* An error answer's log line names its code, as the proxy's do. */
    gw_log_answered(gw, id, method, path, status, status >= 400 ? gw_error_sent(1) : NULL, t0);
}

/* A request the HTTP server refused itself (broken HTTP, a head or body over
 * its cap) gets an x-request-id, a log line and its count in the metrics,
 * as any other answer does; the error is the refusal's message. */
static void refused(struct hs_req *req, int status, const char *message, void *arg)
{
    struct gw *gw = arg;
    char id[GW_REQUEST_ID_CAP], method[32], path[256];
    snprintf(method, sizeof method, "%s", hs_req_method(req) ? hs_req_method(req) : "");
    snprintf(path, sizeof path, "%s", hs_req_path(req) ? hs_req_path(req) : "");
    gw_request_id(gw, req, id, sizeof id);
    hs_resp_header(req, "x-request-id", id);
    gw_log_answered(gw, id, method, path, status, message, gw_now());
}

void gw_log_answered(struct gw *gw, const char *id, const char *method, const char *path,
                     int status, const char *error, double t0)
{
    gw_log_answered_msg(gw, id, method, path, status, error, NULL, t0);
}

void gw_log_answered_msg(struct gw *gw, const char *id, const char *method, const char *path,
                         int status, const char *error, const char *message, double t0)
{
    struct gw_log log;
    metrics_count_request(gw->metrics, gw_endpoint_label(path), "", "", status);
    memset(&log, 0, sizeof log);
    log.id = id;
    log.method = method;
    log.path = path;
    log.status = status;
    log.error = error;
    log.message = message;
    log.latency_ms = (gw_now() - t0) * 1000;
    log.upstream_ms = -1;
    log.ttft_ms = -1;
    log.tokens_in = -1;
    log.tokens_out = -1;
    log.cost = NAN;
    log.attempts = -1;
    gw_log_request(gw, &log);
}

/* ==== The client connection cap ==== */

/* Plan the cap for conf (connlimit.h), raising the descriptor limit when a
 * configured cap needs it, and apply it to the server. At start it is always
 * logged; at a reload only when the cap or the limit changes. A reload does
 * change the cap: a higher one (or a higher descriptor limit under the
 * default) lets the waiting clients in at once, a lower one closes nothing
 * and takes effect as connections close. */
static void apply_conn_cap(struct gw *gw, const struct gw_conf *conf, int at_start)
{
    struct cl_plan plan;
    char msg[600];
    int rc = cl_plan_apply(conf->set.max_connections, gw->fd_reserve, &plan);

    if (!at_start && plan.cap == gw->max_conns && !plan.raise)
        return;
    gw->max_conns = plan.cap;
    hs_server_set_max_connections(gw->http, (size_t)plan.cap);
    /* The cap's arithmetic counts one upstream descriptor per client: the
     * upstream connections kept open, pooled or in use, stay within it. */
    up_client_limit(gw->upstream, (size_t)plan.cap);
    cl_plan_describe(&plan, msg, sizeof msg);
    if (rc)
        log_event("connections", "%s (the descriptor limit could not be %s: %s)", msg,
                  plan.configured ? "raised" : "read", strerror(-rc));
    else
        log_event("connections", "%s", msg);
}

/* ==== Store refresh ==== */

/* Another process may commit to the store's file (`llmroute import` beside
 * the gateway). Every server.store_refresh_ms, and on SIGHUP, a worker calls
 * lr_store_refresh, which reads those commits into the copy routing uses
 * (one small query when there are none). One refresh at a time: the next
 * is scheduled when the last has ended. A failed refresh leaves routing on
 * the copy it had; it is logged, and tried again at the next period.
 *
 * The store is opened with defer_reweigh (gw_store_open()): the feedback
 * append that makes the periodic re-weighing of the copy due returns at
 * once, and the refresh runs the re-weighing (logged with "reweigh":true).
 * With server.store_refresh_ms 0 there is no next period, so feedback_done
 * (api.c) starts a refresh as soon as an append has left one due.
 *
 * Convergence. A feedback append joins the copy on the weights and groups
 * of its last build, so until the next rebuild routing here can differ
 * from `llmroute route` or a restarted gateway on the same file (on the
 * development data, 20 appends of one new query moved a model's predicted
 * quality for it from 0.97 to 0.58; the 1,650 outcomes of 150 queries as
 * feedback changed 36 of 80 other queries' choices). A refresh that
 * converges calls lr_store_rebuild, which also rebuilds when appends came
 * since the last build, so the copy becomes a fresh open's: on SIGHUP, and
 * on a periodic refresh once server.store_rebuild_min_ms has passed since
 * the last rebuild and as many times the last rebuild's duration as
 * CONVERGE_COST_FACTOR says, so that rebuilding for this takes at most
 * 1/CONVERGE_COST_FACTOR of a core (a rebuild is an open's work: 0.17 s at
 * 2,205 records, 2.4 to 3.7 s at 100,000 records, README "Performance").
 * With server.store_refresh_ms 0 there is no periodic refresh: SIGHUP
 * converges, and so does a refresh that still starts (for a re-weighing a
 * feedback left due, which rebuilds anyway, or a replaced file) once
 * those times have passed. Both are read at each refresh, so a reload that
 * changes the setting applies at once. */

/* At most one periodic convergence rebuild per server.store_rebuild_min_ms
 * (30 s by default), and per CONVERGE_COST_FACTOR times the last rebuild's
 * duration. */
#define CONVERGE_COST_FACTOR 50.0

struct refresh_job {
    struct gw *gw;
    int rc;
    int changed;
    int converge;         /* lr_store_rebuild: appends since the last build count */
    size_t added;         /* records appended since the last build, before it */
    int reweigh;          /* a re-weighing was due: the rebuild, if any, ran it */
    size_t before, after; /* records */
    double ms;
    struct lr_error err;
};

static void refresh_work(void *arg)
{
    struct refresh_job *j = arg;
    double t0 = gw_now();
    j->before = lr_store_count(j->gw->store);
    j->reweigh = lr_store_reweigh_due(j->gw->store);
    j->added = lr_store_added_since_build(j->gw->store);
    if (j->converge)
        j->rc = lr_store_rebuild(j->gw->store, &j->changed, &j->err);
    else
        j->rc = lr_store_refresh(j->gw->store, &j->changed, &j->err);
    j->after = lr_store_count(j->gw->store);
    j->ms = (gw_now() - t0) * 1000;
}

/* A refresh that fails as the one before it did is tried again after twice
 * the wait, up to 32 periods and at most a minute (or one period, when the
 * period is longer): the failures that last (a file at the store's path
 * that cannot be opened, a row no import writes) are met at every period,
 * and one that reopens the file reads it whole each time: 2.7% of a core
 * at 20,000 records and the default period of a second (0.2% with this).
 * Each failure is still counted; a feedback still starts a refresh at once
 * (its refusal says the file at the path is opened by the next refresh). */
#define REFRESH_BACKOFF_MAX_DOUBLINGS 5
#define REFRESH_BACKOFF_MAX_MS 60000L

/* Arm the timer for the next periodic refresh, if the current
 * configuration asks for one. */
static void refresh_schedule(struct gw *gw)
{
    long ms = gw->conf->set.store_refresh_ms;
    struct timeval tv;
    if (!gw->store || !gw->refresh_timer || gw->refresh_stopped || ms <= 0)
        return;
    if (gw->refresh_backoff > 0) {
        long cap = ms > REFRESH_BACKOFF_MAX_MS ? ms : REFRESH_BACKOFF_MAX_MS;
        /* No overflow: ms is at most 86,400,000 and the shift at most 5. */
        long long wait = (long long)ms << gw->refresh_backoff;
        ms = wait > cap ? cap : (long)wait;
    }
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(gw->refresh_timer, &tv);
}

static void refresh_log(const struct refresh_job *j)
{
    struct line l;
    l.len = 0;
    if (j->rc == 0 && j->changed == 2) {
        /* lr_store_refresh opened the file now at the path. */
        line_put(&l, "{\"event\":\"store_reopened\"");
        line_str(&l, "store", j->gw->store_path ? j->gw->store_path : "");
        line_str(&l, "message",
                 "the store's path names another file now: writes and routing use it from "
                 "here on");
        line_put(&l, ",\"records_before\":%zu,\"records_after\":%zu,\"ms\":%.3f", j->before,
                 j->after, j->ms);
    } else if (j->rc != 0) {
        line_put(&l, "{\"event\":\"store_refresh_failed\"");
        line_str(&l, "store", j->gw->store_path ? j->gw->store_path : "");
        line_str(&l, "message", j->err.message);
        line_put(&l, ",\"records\":%zu,\"ms\":%.3f", j->before, j->ms);
    } else {
        line_put(&l, "{\"event\":\"store_refreshed\"");
        line_str(&l, "store", j->gw->store_path ? j->gw->store_path : "");
        line_put(&l, ",\"records_before\":%zu,\"records_after\":%zu,\"reweigh\":%s,\"ms\":%.3f",
                 j->before, j->after, j->reweigh ? "true" : "false", j->ms);
        line_put(&l, ",\"appended_since_build\":%zu", j->added);
    }
    line_write(&l);
}

/* The store_replaced event, the first time since the store was last
 * (re)opened, and again only when a refresh finds another reason (the
 * file removed, then one put there that cannot be opened), not at every
 * feedback or period while it lasts. */
static void replaced_log(struct gw *gw, const char *message, int refresh)
{
    struct line l;
    if (gw->store_replaced && (!refresh || strcmp(gw->store_replaced_why, message) == 0))
        return;
    gw->store_replaced = 1;
    snprintf(gw->store_replaced_why, sizeof gw->store_replaced_why, "%s", message);
    l.len = 0;
    line_put(&l, "{\"event\":\"store_replaced\"");
    line_str(&l, "store", gw->store_path ? gw->store_path : "");
    line_str(&l, "message", message);
    line_write(&l);
}

/* On the loop: log what changed, then schedule the next refresh. */
static void refresh_done(void *arg)
{
    struct refresh_job *j = arg;
    struct gw *gw = j->gw;
    metrics_count_store_refresh(gw->metrics, j->converge, j->rc, j->changed, j->ms / 1000.0);
    if (j->rc == LR_EREPLACED) {
        replaced_log(gw, j->err.message, 1); /* not at every period while it lasts */
    } else if (j->rc != 0) {
        /* Logged once for each reason while refreshes keep failing: a
         * failure that lasts (a row no import writes, a file it cannot
         * read) is met at every period, which wrote a line a period (a
         * second by default) for as long as it lasted. Each is counted. */
        if (!gw->refresh_failing || strcmp(gw->refresh_failed_why, j->err.message) != 0)
            refresh_log(j);
        gw->refresh_failing = 1;
        snprintf(gw->refresh_failed_why, sizeof gw->refresh_failed_why, "%s", j->err.message);
    } else if (j->changed || gw->refresh_failing) {
        /* The first refresh that succeeds after failures is logged even
         * when it finds nothing new: the failure's line is not the last
         * word on the store. */
        if (j->changed == 2)
            gw->store_replaced = 0;
        refresh_log(j);
    }
    if (j->rc == 0)
        gw->refresh_failing = 0;
    if (j->rc != 0 && j->rc == gw->refresh_last_rc &&
        strcmp(j->err.message, gw->refresh_last_why) == 0) {
        if (gw->refresh_backoff < REFRESH_BACKOFF_MAX_DOUBLINGS)
            gw->refresh_backoff++;
    } else {
        gw->refresh_backoff = 0;
    }
    gw->refresh_last_rc = j->rc;
    snprintf(gw->refresh_last_why, sizeof gw->refresh_last_why, "%s",
             j->rc ? j->err.message : "");
    if (j->rc == 0 && j->changed) {
        /* Any rebuild leaves the copy a fresh open's (but for the appends
         * made while it ran): the next convergence waits from here. */
        gw->rebuilt_at = gw_now();
        gw->rebuild_s = j->ms / 1000.0;
    }
    free(j);
    gw->refresh_busy = 0;
    if (gw->refresh_again && !gw->refresh_stopped) {
        gw->refresh_again = 0;
        gw_store_refresh_start(gw);
    } else {
        refresh_schedule(gw);
    }
}

/* Whether a periodic refresh may rebuild (see Convergence above). */
static int converge_due(const struct gw *gw)
{
    double wait = CONVERGE_COST_FACTOR * gw->rebuild_s;
    double min = gw->conf->set.store_rebuild_min_ms / 1000.0;
    return gw_now() >= gw->rebuilt_at + (wait > min ? wait : min);
}

void gw_store_refresh_start(struct gw *gw)
{
    struct refresh_job *j;
    if (!gw->store || gw->refresh_stopped)
        return;
    if (gw->refresh_busy) {
        gw->refresh_again = 1;
        return;
    }
    if (gw->refresh_timer)
        evtimer_del(gw->refresh_timer);
    j = calloc(1, sizeof *j);
    if (j) {
        j->gw = gw;
        j->converge = gw->converge_asked || converge_due(gw);
        gw->converge_asked = 0;
    }
    /* In a lane of its own: a refresh too may wait on a store another
     * process holds, and then keeps one worker, not all; and the feedback
     * appends, in theirs, go on beside its rebuild (offload.c). */
    if (!j || gw_offload_serial(gw, GW_LANE_REFRESH, refresh_work, refresh_done, j) != 0) {
        /* Counted as a refresh that ran out of memory is: the periodic one
         * then comes at its next period, as after any failed refresh. */
        metrics_count_store_refresh(gw->metrics,
                                    j ? j->converge : gw->converge_asked || converge_due(gw),
                                    LR_ENOMEM, 0, 0);
        free(j);
        log_event("store_refresh_failed", "out of memory starting a store refresh");
        refresh_schedule(gw);
        return;
    }
    gw->refresh_busy = 1;
}

void gw_store_replaced(struct gw *gw, const char *message)
{
    replaced_log(gw, message, 0);
    gw_store_refresh_start(gw);
}

static void on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_store_refresh_start(arg);
}

/* ==== Signals: reload and shutdown ==== */

static void limits_from(const struct gw_conf *c, struct hs_limits *l)
{
    l->max_head_bytes = c->set.max_header_bytes;
    l->max_body_bytes = c->set.max_body_bytes;
    l->out_high_water = c->set.stream_buffer_bytes;
    l->idle_timeout_ms = (int)c->set.idle_timeout_ms;
}

/* A sequential router keeps a round-robin cursor, and a reload builds
 * every router anew: without this the new one started at the first
 * candidate again, so a reload between requests (a config pushed every
 * few seconds, 50 SIGHUPs in a loop) sent them all to the first candidate
 * of every sequential route. The new router goes on where the old one
 * was, for every strategy that keeps a cursor (each router of the old
 * configuration, the ones a request built on first use too). */
static void carry_cursors(const struct gw_conf *from, struct gw_conf *to)
{
    for (size_t i = 0; i < from->n_routers; i++) {
        struct lr_error err = {0};
        struct lr_router *r;
        uint64_t cursor;
        if (lr_router_sequential_cursor(from->routers[i].router, &cursor, &err) != 0)
            continue; /* a strategy without a cursor (smart) */
        r = gw_conf_router(to, from->routers[i].strategy, &err);
        if (r)
            (void)lr_router_set_sequential_cursor(r, cursor, &err);
    }
}

/* What a reload cannot change, said each time the file asks for it (not
 * only when it differs from the previous reload's file): the address the
 * gateway listens on and its history store stay those it started with. */
static void reload_warnings(struct gw *gw, const struct gw_conf *nc)
{
    const char *sp = lr_config_router_defaults(nc->cfg)->store_path;

    if (!gw->opts->store && sp && (!gw->store_path || strcmp(sp, gw->store_path) != 0)) {
        if (gw->store_path)
            log_event("reload_warning",
                      "router.store changed to '%.300s'; the gateway goes on with the store it "
                      "opened, '%.300s', until a restart",
                      sp, gw->store_path);
        else
            log_event("reload_warning",
                      "router.store names '%.300s', but the gateway started without a store; "
                      "a new store needs a restart",
                      sp);
    } else if (!gw->opts->store && !sp && gw->store_path) {
        log_event("reload_warning",
                  "router.store was removed; the gateway goes on with the store it opened, "
                  "'%.300s', until a restart",
                  gw->store_path);
    }
    if (strcmp(nc->set.listen_host, gw->listen_host) != 0 ||
        nc->set.listen_port != gw->listen_port) {
        int v6 = strchr(nc->set.listen_host, ':') != NULL;
        int v6_was = strchr(gw->listen_host, ':') != NULL;
        log_event("reload_warning",
                  "server.listen changed to %s%s%s:%d; the gateway goes on listening on "
                  "%s%s%s:%d until a restart",
                  v6 ? "[" : "", nc->set.listen_host, v6 ? "]" : "", nc->set.listen_port,
                  v6_was ? "[" : "", gw->listen_host, v6_was ? "]" : "",
                  gw->http ? hs_server_port(gw->http) : gw->listen_port);
    }
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct gw *gw = arg;
    struct gw_conf *nc = NULL;
    struct lr_error err = {0};
    struct hs_limits lim;
    (void)sig;
    (void)what;

    if (gw->shutting_down) {
        /* Draining after SIGTERM: the requests left finish on the
         * configuration they started with, and a new one would serve
         * nobody (nor would a store refresh, stopped with the drain), so
         * it is not read at all: a file broken meanwhile would only log a
         * reload_failed, a good one count a reload that never served. */
        struct line l;
        l.len = 0;
        line_put(&l, "{\"event\":\"reload_skipped\",\"reason\":\"draining\"");
        line_str(&l, "message",
                 "SIGHUP while shutting down: the configuration is not reloaded");
        line_write(&l);
        return;
    }
    /* Whatever the configuration does, read the store again now, and
     * rebuild a copy that appends have moved from a fresh open's; the
     * periods after it start over at server.store_refresh_ms. */
    gw->converge_asked = 1;
    gw->refresh_backoff = 0;
    gw->refresh_last_rc = 0;
    gw_store_refresh_start(gw);
    if (gw_conf_reload(gw->opts->config_path, gw->opts->listen, gw->store, &nc, &err)) {
        metrics_count_reload(gw->metrics, 0, gw_wall_now());
        log_event("reload_failed", "%s (the previous configuration stays)", err.message);
        return;
    }
    reload_warnings(gw, nc);
    carry_cursors(gw->conf, nc);
    gw_conf_unref(gw->conf);
    gw->conf = nc;
    /* Feedback appends that start from now on use the new time-to-live. */
    if (gw->store)
        lr_store_set_key_ttl(gw->store, nc->set.feedback_key_ttl_s, NULL);
    limits_from(nc, &lim);
    hs_server_set_limits(gw->http, &lim);
    apply_conn_cap(gw, nc, 0);
    /* The ids already kept stay (a lower capacity drops the least recently
     * used past it, 0 all of them); an entry naming a model the new
     * configuration lacks is ignored where it is read. */
    af_table_set_capacity(gw->affinity, nc->set.response_affinity_entries);
    /* Requests waiting for room are held to the new caps and queue limits
     * at once (proxy.c reads them from the live configuration): a raised
     * max_concurrency lets them start now, not as the next attempt ends. */
    proxy_queue_kick(gw);
    metrics_count_reload(gw->metrics, 1, gw_wall_now());
    log_event("reloaded", "%s: %zu models, %zu routes", gw->opts->config_path, nc->n_models,
              lr_config_route_count(nc->cfg));
}

#define SHUTDOWN_FLUSH_MS 1000 /* after the deadline's answers, how long they may take to go out */
#define STOP_FLUSH_MS 250      /* after a second signal's answers, how long they may take */

struct drain {
    struct gw *gw;
    struct event *timer;
    double deadline;
    int answered; /* the deadline passed and the proxied requests were answered */
};

/* The shutdown deadline (or a second signal): a request whose body is
 * still coming in is answered 503 server_shutting_down, Connection: close,
 * and logged as "shutdown" (its answer goes out with the others'), rather
 * than cut off unanswered when the loop stops. */
static size_t refuse_unfinished(struct gw *gw)
{
    char body[400];
    size_t n = gw_error_format(body, sizeof body,
                               "the gateway is shutting down: its deadline came before this "
                               "request's body was in; retry the request",
                               "server_error", NULL, "server_shutting_down");
    size_t k = hs_server_refuse_unfinished(gw->http, 503, "shutdown", body, n);
    if (k)
        log_event("shutdown", "%zu requests still sending their bodies; answered 503", k);
    return k;
}

/* Every 20 ms while shutting down: stop once no connection is left. At the
 * deadline the forwarding requests still in flight are answered (a 503, or
 * an error event ending a stream) and logged, and so are the requests whose
 * bodies are still coming in; those answers then have SHUTDOWN_FLUSH_MS to
 * reach their clients before the rest is aborted. */
static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct drain *d = arg;
    double now = gw_now();
    (void)fd;
    (void)what;
    if (hs_server_connections(d->gw->http) == 0 || now >= d->deadline) {
        size_t busy = hs_server_busy(d->gw->http), cut = 0;
        if (!d->answered)
            cut = refuse_unfinished(d->gw);
        if (d->answered || (!busy && !cut)) {
            if (busy)
                log_event("shutdown", "%zu requests still in flight; aborting them", busy);
            event_base_loopbreak(d->gw->base);
            return;
        }
        if (busy)
            log_event("shutdown", "deadline reached with %zu requests in flight; answering them",
                      busy);
        proxy_shutdown_answer(d->gw, 0); /* also refuses the forwarding requests from now on */
        d->answered = 1;
        d->deadline = now + SHUTDOWN_FLUSH_MS / 1000.0;
    }
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct drain *d = arg;
    struct timeval tv = {0, 20000};
    (void)what;
    if (d->gw->shutting_down) {
        /* A second signal: stop at once, but answer what is in flight as the
         * deadline would (a 503, or an error event ending a stream, each
         * logged), not cut it off unanswered; those answers get
         * STOP_FLUSH_MS to go out. A third signal, or a second once the
         * deadline's answers are out, stops the loop now. */
        double now = gw_now();
        if (d->answered) {
            event_base_loopbreak(d->gw->base);
            return;
        }
        log_event("shutdown", "signal %d again: stopping now; answering %zu requests in flight",
                  (int)sig, hs_server_busy(d->gw->http));
        proxy_shutdown_answer(d->gw, 1);
        refuse_unfinished(d->gw);
        d->answered = 1;
        if (d->deadline > now + STOP_FLUSH_MS / 1000.0)
            d->deadline = now + STOP_FLUSH_MS / 1000.0;
        return;
    }
    d->gw->shutting_down = 1;
    d->gw->refresh_stopped = 1;
    if (d->gw->refresh_timer)
        evtimer_del(d->gw->refresh_timer);
    log_event("shutdown", "signal %d: no new connections; %zu requests in flight", (int)sig,
              hs_server_busy(d->gw->http));
    hs_server_stop_accepting(d->gw->http);
    d->deadline = gw_now() + (double)d->gw->conf->set.shutdown_timeout_ms / 1000.0;
    event_add(d->timer, &tv);
}

/* ==== Starting ==== */

/* A smart route over an empty history store answers 503 history_empty
 * until outcomes arrive: say so once at start, naming the routes. */
static void warn_empty_store(struct gw *gw)
{
    const struct lr_config *cfg = gw->conf->cfg;
    char names[512];
    size_t o = 0, n = 0;
    if (!gw->store || lr_store_count(gw->store) != 0)
        return;
    names[0] = '\0';
    for (size_t i = 0; i < lr_config_route_count(cfg); i++) {
        const struct lr_route_info *ri = lr_config_route(cfg, i);
        const char *st = ri->strategy ? ri->strategy : lr_config_router_defaults(cfg)->strategy;
        int k;
        if (!st || strcmp(st, "smart") != 0 || ri->n_models == 1)
            continue;
        k = snprintf(names + o, sizeof names - o, "%s'%s'", n ? ", " : "", ri->name);
        if (k > 0 && o + (size_t)k < sizeof names)
            o += (size_t)k;
        n++;
    }
    if (n)
        log_event("store_empty",
                  "%s: the history store is empty; smart route%s %s answer%s 503 history_empty "
                  "until outcomes are imported (llmroute import)%s",
                  gw->store_path, n == 1 ? "" : "s", names, n == 1 ? "s" : "",
                  gw->opts->store_read_only ? "" : " or fed back (POST /v1/feedback)");
}

/* A reason serve does not start, on one line of standard error as the
 * other commands write theirs (gw_put_escaped()). */
static void start_error(const char *msg)
{
    fputs("llmroute serve: ", stderr);
    gw_put_escaped(stderr, msg);
    fputc('\n', stderr);
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    FILE *f;
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return -1;
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* Open the history store named by --store, or else by the config's
 * router.store (created when missing), with the config's embedder
 * (gw_store_open). Returns 0, or an exit code after saying why: 1 for a
 * fault at run time (an I/O error, a full disk, a store busy for 5 s, out
 * of memory), 2 for a store that cannot be used as given (no permission,
 * not a store, another embedder's), as for a configuration error. The
 * store outlives reloads: a new path needs a restart. */
static int open_store(struct gw *gw, const struct gw_options *opts, int *created)
{
    struct lr_error err = {0};

    if (gw_store_open(opts->config_path, opts->store, 0, opts->store_read_only, &gw->store,
                      &gw->store_path, created, &err)) {
        start_error(err.message);
        return err.code == LR_ENOMEM || err.code == LR_EIO || err.code == LR_EBUSY ? 1 : 2;
    }
    if (gw->store)
        log_event("store", "%s: %zu records%s", gw->store_path, lr_store_count(gw->store),
                  opts->store_read_only ? ", read-only (feedback is not recorded)" : "");
    return 0;
}

/* Close the store; one this start made is removed again when the gateway
 * did not start (with SQLite's files beside it), as `llmroute import`
 * removes one it made and failed to fill: no empty store stamped with the
 * config's embedder is left to refuse a later import with another. */
static void close_store(struct gw *gw, int created, int failed)
{
    struct lr_error err = {0};
    int removed = 0;

    if (!gw->store)
        return;
    if (!(created && failed)) {
        lr_store_free(gw->store);
    } else if (lr_store_discard(gw->store, &removed, &err) != 0) {
        start_error(err.message);
    } else if (removed) {
        char msg[4200];
        snprintf(msg, sizeof msg,
                 "removed '%.4000s', which this start created: the gateway did not start",
                 gw->store_path);
        start_error(msg);
    }
    gw->store = NULL;
}

/* ==== Signals while starting ==== */

/* SIGTERM, SIGINT and SIGHUP: blocked while the gateway starts and while it
 * cleans up, handled by the loop in between. */
static void held_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

/* sigtimedwait()'s timeout that takes only what is already pending. */
static const struct timespec no_wait = {0, 0};

/* A stop (SIGTERM or SIGINT) that arrived while the signals were blocked:
 * its number, taken off the pending set, or 0. */
static int stop_pending(void)
{
    sigset_t pending, one;
    int sig;

    if (sigpending(&pending) != 0)
        return 0;
    sig = sigismember(&pending, SIGTERM) ? SIGTERM : sigismember(&pending, SIGINT) ? SIGINT : 0;
    if (sig) {
        sigemptyset(&one);
        sigaddset(&one, sig);
        (void)sigtimedwait(&one, NULL, &no_wait);
        log_event("shutdown", "signal %d while starting: the gateway does not start", sig);
    }
    return sig;
}

/* ==== Run ==== */

static int run(const struct gw_options *opts, const sigset_t *held)
{
    struct gw gw;
    struct lr_error err = {0};
    struct hs_limits lim;
    struct drain drain = {0};
    struct event *sig_term = NULL, *sig_int = NULL, *sig_hup = NULL;
    int rc = 1, created = 0, started = 0;

    memset(&gw, 0, sizeof gw);
    gw.opts = opts;
    if ((rc = open_store(&gw, opts, &created)) != 0)
        return rc;
    /* Loading a large store takes a while: a stop asked meanwhile is
     * honoured now, before the config is read again (a --config <(...) can
     * be read only once), and a store this start made is removed again.
     * One asked while the config loads is found below, before listening. */
    if (stop_pending()) {
        close_store(&gw, created, 1);
        free(gw.store_path);
        return 0;
    }
    rc = 1;
    if (gw_conf_load(opts->config_path, opts->listen, gw.store, &gw.conf, &err)) {
        start_error(err.message);
        close_store(&gw, created, 1);
        free(gw.store_path);
        return err.code == LR_ENOMEM ? 1 : 2;
    }
    snprintf(gw.listen_host, sizeof gw.listen_host, "%s", gw.conf->set.listen_host);
    gw.listen_port = gw.conf->set.listen_port;
    /* In range: gwconf.c checked it against the same bounds. */
    if (gw.store)
        lr_store_set_key_ttl(gw.store, gw.conf->set.feedback_key_ttl_s, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "llmroute serve: libcurl failed to initialise\n");
        gw_conf_unref(gw.conf);
        close_store(&gw, created, 1);
        free(gw.store_path);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    gw.id_seed = (uint64_t)time(NULL) * 0x100000001B3ull ^ (uint64_t)getpid();
    gw.base = base_new();
    gw.metrics = metrics_new();
    if (gw.metrics)
        metrics_config_loaded(gw.metrics, gw_wall_now());
    gw.upstream = gw.base ? up_client_new(gw.base) : NULL;
    gw.affinity = af_table_new(gw.conf->set.response_affinity_entries);
    limits_from(gw.conf, &lim);
    gw.http = gw.base ? hs_server_new(gw.base, &lim, handle, gw_error_body, &gw) : NULL;
    if (gw.http) {
        hs_server_on_refused(gw.http, refused);
        hs_server_on_head(gw.http, head_refuses);
    }
    if (!gw.base || !gw.metrics || !gw.upstream || !gw.http || !gw.affinity) {
        fprintf(stderr, "llmroute serve: out of memory starting the gateway\n");
        goto out;
    }
    if (gw_offload_start(&gw) != 0) {
        fprintf(stderr, "llmroute serve: cannot start the worker threads\n");
        goto out;
    }
    gw.rebuilt_at = gw_now(); /* the open built the copy whole */
    gw.refresh_timer = evtimer_new(gw.base, on_refresh_timer, &gw);
    gw.trim_timer = evtimer_new(gw.base, on_trim, &gw);
    gw.log_timer = evtimer_new(gw.base, on_log_timer, &gw);
    if (!gw.refresh_timer || !gw.trim_timer || !gw.log_timer) {
        fprintf(stderr, "llmroute serve: out of memory starting the gateway\n");
        goto out;
    }
    /* The signals are handled before anything outside can know the gateway
     * is there (the listener, the port file): a SIGHUP or SIGTERM sent the
     * moment it listens is then taken by the loop. Until its handlers are
     * added they stay blocked (gw_run()); a stop that came meanwhile ends
     * the start here, before it listens, and a SIGHUP is taken by the loop
     * as a reload once they are unblocked. */
    drain.gw = &gw;
    drain.timer = event_new(gw.base, -1, EV_PERSIST, drain_tick, &drain);
    sig_term = evsignal_new(gw.base, SIGTERM, on_term, &drain);
    sig_int = evsignal_new(gw.base, SIGINT, on_term, &drain);
    sig_hup = evsignal_new(gw.base, SIGHUP, on_hup, &gw);
    if (!drain.timer || !sig_term || !sig_int || !sig_hup || event_add(sig_term, NULL) ||
        event_add(sig_int, NULL) || event_add(sig_hup, NULL)) {
        fprintf(stderr, "llmroute serve: cannot set up signal handling\n");
        goto out;
    }
    if (stop_pending()) {
        rc = 0;
        goto out;
    }
    pthread_sigmask(SIG_UNBLOCK, held, NULL);
    {
        int lrc = hs_server_listen(gw.http, gw.conf->set.listen_host, gw.conf->set.listen_port);
        if (lrc) {
            fprintf(stderr, "llmroute serve: cannot listen on %s:%d: %s\n",
                    gw.conf->set.listen_host, gw.conf->set.listen_port, strerror(-lrc));
            goto out;
        }
    }
    /* Everything the gateway holds for itself is open now (the store, the
     * listener, the loop, the workers' pipes): what clients must leave. */
    {
        long in_use = cl_descriptors_open();
        gw.fd_reserve = (in_use > 0 ? in_use : 16) + CL_SPARE;
    }
    apply_conn_cap(&gw, gw.conf, 1);
    if (opts->port_file && write_port_file(opts->port_file, hs_server_port(gw.http))) {
        char msg[4200];
        snprintf(msg, sizeof msg, "cannot write --port-file %.4000s: %s", opts->port_file,
                 strerror(errno));
        start_error(msg);
        goto out;
    }
    {
        const char *host = gw.conf->set.listen_host;
        int v6 = strchr(host, ':') != NULL;
        log_event("listening", "http://%s%s%s:%d (%zu models, %zu routes, strategy %s)",
                  v6 ? "[" : "", host, v6 ? "]" : "", hs_server_port(gw.http), gw.conf->n_models,
                  lr_config_route_count(gw.conf->cfg),
                  lr_config_router_defaults(gw.conf->cfg)->strategy);
    }
    warn_empty_store(&gw);
    refresh_schedule(&gw);
    started = 1;
    event_base_dispatch(gw.base);
    rc = 0;
    gw_log_flush_suppressed(&gw);
    log_event("stopped", "served until shutdown");
out:
    /* From here on a signal changes nothing (a second stop while the loop
     * was up already broke it): blocked until gw_run() returns, not fatal
     * once the loop's handlers are removed. */
    pthread_sigmask(SIG_BLOCK, held, NULL);
    /* In-flight requests (past the deadline) are aborted here. */
    hs_server_free(gw.http);
    gw.refresh_stopped = 1;
    gw_offload_stop(&gw); /* jobs of aborted requests finish and are freed */
    if (gw.refresh_timer)
        event_free(gw.refresh_timer);
    if (gw.trim_timer)
        event_free(gw.trim_timer);
    if (gw.log_timer) {
        gw_log_flush_suppressed(&gw); /* lines of requests aborted above */
        event_free(gw.log_timer);
        gw.log_timer = NULL;
    }
    proxy_shutdown(&gw);
    up_client_free(gw.upstream);
    af_table_free(gw.affinity);
    metrics_free(gw.metrics);
    if (sig_term)
        event_free(sig_term);
    if (sig_int)
        event_free(sig_int);
    if (sig_hup)
        event_free(sig_hup);
    if (drain.timer)
        event_free(drain.timer);
    if (gw.base)
        event_base_free(gw.base);
    gw_conf_unref(gw.conf);
    close_store(&gw, created, !started);
    free(gw.store_path);
    curl_global_cleanup();
    return rc;
}

int gw_run(const struct gw_options *opts)
{
    sigset_t held, old;
    int rc;

    /* Blocked before anything is loaded, and in every thread started
     * meanwhile (the store's, the workers'), so a stop or a reload sent
     * while the gateway starts waits for it instead of killing it; the loop
     * takes them on its own thread. */
    held_signals(&held);
    pthread_sigmask(SIG_BLOCK, &held, &old);
    rc = run(opts, &held);
    /* What came while cleaning up, or with a start refused, is dropped:
     * the exit status is the run's. */
    while (sigtimedwait(&held, NULL, &no_wait) > 0)
        ;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
