/*
 * fake_upstream: a small OpenAI-compatible HTTP/1.1 server that the gateway's
 * integration tests, fault-injection tests and benchmarks run against.
 *
 * It speaks raw HTTP/1.1 over libevent bufferevents (not evhttp) so that it
 * can misbehave precisely: close a connection in the middle of a chunked
 * body, reset it before any header, or go silent while keeping it open.
 *
 * Endpoints:
 *   POST /v1/chat/completions   chat.completion, or SSE chunks when "stream": true
 *   POST /v1/completions        text_completion, or SSE chunks when "stream": true
 *   POST /v1/embeddings         deterministic unit vectors derived from the input text
 *   POST /v1/responses          a Responses API `response`, or its typed SSE events
 *                               (no [DONE]) when "stream": true
 *   GET  /v1/models             one model, "fake-model"
 *   GET  /health                {"status":"ok","name":NAME}
 *   POST /_control              {"scenario":"SPEC"} sets the default scenario,
 *                               {"reset":true} resets counters; GET shows the default
 *   GET  /_stats                {"requests":N,"by_path":{...},"scenario":"SPEC"}
 *
 * Scenario SPEC language
 * ----------------------
 * A SPEC is a list of items joined by ';'. An item is a bare word or key=value;
 * whitespace around items is ignored, values may not contain ';' (content= and
 * message= accept %XX escapes for that). "" and "ok" are the normal behaviour.
 *
 * At most one mode item (default ok):
 *   ok                  a normal response
 *   status=CODE         an OpenAI-shaped error, CODE in 400..599; or a redirect,
 *                       CODE in 300..399 (with location=URL for its Location)
 *   hang                read the request, never answer (connection stays open)
 *   reset               close with a TCP RST right after reading the request
 *   cut_after=N         stream: send N SSE events, then close without the
 *                       terminating zero-length chunk; non-stream: send the
 *                       headers and half the body, then close
 *   stall_after=N       as cut_after, but keep the connection open and silent
 *   malformed_after=N   stream: after N events send "data: {not json\n\n", then
 *                       continue normally up to [DONE]; non-stream: answer 200
 *                       with the body "{not json"
 * Events counted by N are every "data:" line: for chat the role chunk, the
 * content chunks, the finish chunk, the usage chunk (when asked) and [DONE];
 * for /v1/responses response.created, response.in_progress,
 * response.output_item.added, response.content_part.added, the output_text
 * deltas, response.output_item.done
 * and the terminal event.
 *
 * Options:
 *   chunks=N            content pieces (stream deltas; default 3)
 *   tokens=N            completion_tokens reported (default: chunks)
 *   content=TEXT        reply text, split into `chunks` pieces (default
 *                       "tok0 tok1 tok2 ...", one piece per chunk)
 *   delay_ms=D          wait before the first byte of the response (also before reset)
 *   chunk_delay_ms=D    wait between stream events
 *   retry_after=S       send "Retry-After: S" with error statuses
 *   code=STR            error "code" (e.g. context_length_exceeded); message=TEXT its message
 *   location=URL        send "Location: URL" with a 3xx from status= (%XX escapes)
 *   terminal=KIND       /v1/responses streams: the last event is response.KIND
 *                       (completed, the default; incomplete; failed), or none:
 *                       the stream ends cleanly without a terminal event
 *
 * Failure selectors: request number k counts requests that used this same SPEC
 * text since it was set or since the last reset, starting at 1. The first
 * selector that matches decides; otherwise the mode above applies.
 *   fail_first=N        requests 1..N fail
 *   every=K             requests K, 2K, 3K, ... fail (also spelled fail_every=K)
 *   fail_pct=P          request k fails when a seeded hash of (seed, k) mod 100 < P
 *   stall_pct=P         likewise (different hash), the request stalls: a stream
 *                       stops after its first event, a non-stream never answers
 *   seed=S              seed for the two hashes (default 1)
 *   fail=KIND           what failing means: status (default), reset, hang,
 *                       cut or stall (cut/stall after one event or half a body)
 *   fail_status=CODE    status for fail=status (default 500)
 * Example: "fail_first=2;fail_status=503;retry_after=1;chunks=5" answers 503
 * twice, then normal five-chunk replies.
 *
 * Which SPEC applies: the request header x-fake-scenario when present (any
 * path), else, for the four POST /v1 endpoints, the default from --scenario
 * or POST /_control; other paths behave as "ok".
 *
 * Threads: single-threaded; everything runs on one libevent loop, so the
 * global state below needs no locking.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>

#define MAX_HEAD_BYTES (64 * 1024)
#define MAX_HEADERS 100
#define DEFAULT_MAX_BODY (16L * 1024 * 1024)
#define MAX_COUNTERS 64
#define MAX_PATHS 32
#define MAX_EMBED_DIM 4096
#define MAX_CHUNKS 1000000L
#define MAX_DELAY_MS 3600000L
/* A stream with no chunk_delay_ms is written as the socket takes it: up to
 * this much waits in the output buffer, and writing goes on once it is down
 * to half (write_cb). Written whole at once, 400,000 events (60 MB) were
 * built before the first byte left, which under a sanitizer on a loaded
 * machine took more than the 20 s a client waited for it. */
#define STREAM_OUT_HIGH (256 * 1024)

/* ==== Scenarios ==== */

enum mode { M_OK, M_STATUS, M_HANG, M_RESET, M_CUT, M_STALL, M_MALFORMED };

struct scenario {
    int refs;
    char *text;
    enum mode mode;
    long status; /* for M_STATUS */
    long after;  /* for M_CUT, M_STALL, M_MALFORMED */
    long chunks, tokens, delay_ms, chunk_delay_ms, retry_after;
    char *content, *code, *message, *location;
    long fail_first, fail_every, fail_pct, stall_pct, fail_status;
    unsigned long long seed;
    enum mode fail_mode;
    int has_selectors;
    const char *terminal; /* a Responses stream's last event type, or NULL for none */
    int zero_vectors;     /* /v1/embeddings answers vectors of zeros */
};

/* What one request will do, decided once when it has been read. */
struct action {
    enum mode mode;
    long status;
    long after;
    int plain_hangs; /* stall_pct: a non-stream answer never starts */
};

static int parse_long_range(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes; returns a new string, or NULL on a bad escape,
 * invalid UTF-8 or an embedded NUL. The caller frees. */
static char *percent_decode(const char *s)
{
    size_t n = strlen(s), j = 0;
    char *out = malloc(n + 1);
    json_t *check;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    /* The text ends up inside JSON strings, so it must be valid UTF-8. */
    check = json_stringn(out, j);
    if (check == NULL) {
        free(out);
        return NULL;
    }
    json_decref(check);
    return out;
}

static void scenario_unref(struct scenario *sc)
{
    if (sc == NULL || --sc->refs > 0)
        return;
    free(sc->text);
    free(sc->content);
    free(sc->code);
    free(sc->message);
    free(sc->location);
    free(sc);
}

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

static int parse_fail_kind(const char *v, enum mode *out)
{
    static const struct {
        const char *name;
        enum mode mode;
    } kinds[] = {
        {"status", M_STATUS}, {"reset", M_RESET}, {"hang", M_HANG},
        {"cut", M_CUT},       {"stall", M_STALL},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(v, kinds[i].name) == 0) {
            *out = kinds[i].mode;
            return 0;
        }
    }
    return -1;
}

/* Parses one key[=value] item into sc. Returns 0, or -1 with err filled. */
static int scenario_item(struct scenario *sc, char *item, int *nmodes, char *err, size_t errsz)
{
    char *eq = strchr(item, '=');
    const char *key = item, *val = NULL;
    long *num = NULL, lo = 0, hi = LONG_MAX;

    if (eq != NULL) {
        *eq = '\0';
        key = trim(item);
        val = trim(eq + 1);
    }

    /* Bare words. */
    if (val == NULL && strcmp(key, "zero_vectors") == 0) {
        sc->zero_vectors = 1; /* not a mode: the answer is an ordinary one */
        return 0;
    }
    if (val == NULL) {
        if (strcmp(key, "ok") == 0)
            sc->mode = M_OK;
        else if (strcmp(key, "hang") == 0)
            sc->mode = M_HANG;
        else if (strcmp(key, "reset") == 0)
            sc->mode = M_RESET;
        else {
            snprintf(err, errsz, "unknown scenario item '%s'", key);
            return -1;
        }
        (*nmodes)++;
        return 0;
    }

    if (strcmp(key, "status") == 0) {
        sc->mode = M_STATUS;
        (*nmodes)++;
        num = &sc->status, lo = 300, hi = 599;
    } else if (strcmp(key, "cut_after") == 0 || strcmp(key, "stall_after") == 0 ||
               strcmp(key, "malformed_after") == 0) {
        sc->mode = strcmp(key, "cut_after") == 0     ? M_CUT
                   : strcmp(key, "stall_after") == 0 ? M_STALL
                                                     : M_MALFORMED;
        (*nmodes)++;
        num = &sc->after, hi = MAX_CHUNKS + 8;
    } else if (strcmp(key, "chunks") == 0) {
        num = &sc->chunks, hi = MAX_CHUNKS;
    } else if (strcmp(key, "tokens") == 0) {
        num = &sc->tokens, hi = 1000000000L;
    } else if (strcmp(key, "delay_ms") == 0) {
        num = &sc->delay_ms, hi = MAX_DELAY_MS;
    } else if (strcmp(key, "chunk_delay_ms") == 0) {
        num = &sc->chunk_delay_ms, hi = MAX_DELAY_MS;
    } else if (strcmp(key, "retry_after") == 0) {
        num = &sc->retry_after, hi = 86400;
    } else if (strcmp(key, "fail_first") == 0) {
        num = &sc->fail_first;
        sc->has_selectors = 1;
    } else if (strcmp(key, "every") == 0 || strcmp(key, "fail_every") == 0) {
        num = &sc->fail_every, lo = 1;
        sc->has_selectors = 1;
    } else if (strcmp(key, "fail_pct") == 0) {
        num = &sc->fail_pct, hi = 100;
        sc->has_selectors = 1;
    } else if (strcmp(key, "stall_pct") == 0) {
        num = &sc->stall_pct, hi = 100;
        sc->has_selectors = 1;
    } else if (strcmp(key, "fail_status") == 0) {
        num = &sc->fail_status, lo = 400, hi = 599;
    } else if (strcmp(key, "seed") == 0) {
        long seed;
        if (parse_long_range(val, 0, LONG_MAX, &seed) != 0) {
            snprintf(err, errsz, "seed: expected a non-negative integer, got '%s'", val);
            return -1;
        }
        sc->seed = (unsigned long long)seed;
        return 0;
    } else if (strcmp(key, "terminal") == 0) {
        if (strcmp(val, "completed") == 0)
            sc->terminal = "response.completed";
        else if (strcmp(val, "incomplete") == 0)
            sc->terminal = "response.incomplete";
        else if (strcmp(val, "failed") == 0)
            sc->terminal = "response.failed";
        else if (strcmp(val, "none") == 0)
            sc->terminal = NULL;
        else {
            snprintf(err, errsz,
                     "terminal: expected completed, incomplete, failed or none, "
                     "got '%s'",
                     val);
            return -1;
        }
        return 0;
    } else if (strcmp(key, "fail") == 0) {
        if (parse_fail_kind(val, &sc->fail_mode) != 0) {
            snprintf(err, errsz, "fail: expected status, reset, hang, cut or stall, got '%s'", val);
            return -1;
        }
        return 0;
    } else if (strcmp(key, "content") == 0 || strcmp(key, "code") == 0 ||
               strcmp(key, "message") == 0 || strcmp(key, "location") == 0) {
        char **dst = strcmp(key, "content") == 0    ? &sc->content
                     : strcmp(key, "code") == 0     ? &sc->code
                     : strcmp(key, "location") == 0 ? &sc->location
                                                    : &sc->message;
        char *decoded = percent_decode(val);
        if (decoded == NULL) {
            snprintf(err, errsz, "%s: bad %%XX escape or invalid UTF-8", key);
            return -1;
        }
        /* A header value cannot hold a line break. */
        if (dst == &sc->location && strpbrk(decoded, "\r\n") != NULL) {
            free(decoded);
            snprintf(err, errsz, "location: no CR or LF");
            return -1;
        }
        free(*dst);
        *dst = decoded;
        return 0;
    } else {
        snprintf(err, errsz, "unknown scenario key '%s'", key);
        return -1;
    }

    if (parse_long_range(val, lo, hi, num) != 0) {
        snprintf(err, errsz, "%s: expected an integer in %ld..%ld, got '%s'", key, lo, hi, val);
        return -1;
    }
    return 0;
}

/* Parses SPEC text. Returns a scenario with one reference, or NULL with err
 * filled. The caller drops it with scenario_unref(). */
static struct scenario *scenario_parse(const char *text, char *err, size_t errsz)
{
    struct scenario *sc = calloc(1, sizeof *sc);
    char *copy = strdup(text), *save = NULL, *item;
    int nmodes = 0;

    if (sc == NULL || copy == NULL || (sc->text = strdup(text)) == NULL) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    sc->refs = 1;
    sc->mode = M_OK;
    sc->chunks = 3;
    sc->tokens = -1;
    sc->retry_after = -1;
    sc->seed = 1;
    sc->fail_mode = M_STATUS;
    sc->fail_status = 500;
    sc->terminal = "response.completed";

    for (item = strtok_r(copy, ";", &save); item != NULL; item = strtok_r(NULL, ";", &save)) {
        item = trim(item);
        if (*item == '\0')
            continue;
        if (scenario_item(sc, item, &nmodes, err, errsz) != 0)
            goto fail;
    }
    if (nmodes > 1) {
        snprintf(err, errsz,
                 "more than one mode (ok, status, hang, reset, cut_after, "
                 "stall_after, malformed_after) given");
        goto fail;
    }
    free(copy);
    return sc;

fail:
    free(copy);
    if (sc != NULL) {
        sc->refs = 1;
        scenario_unref(sc);
    }
    return NULL;
}

static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int pct_hit(const struct scenario *sc, unsigned long k, uint64_t salt, long pct)
{
    uint64_t h = splitmix64(splitmix64(sc->seed ^ (salt << 56)) + k);
    return (long)(h % 100) < pct;
}

/* Decides what request number k (1-based) under sc does. */
static void scenario_decide(const struct scenario *sc, unsigned long k, struct action *a)
{
    int fail = 0;

    a->mode = sc->mode;
    a->status = sc->status;
    a->after = sc->after;
    a->plain_hangs = 0;
    if (!sc->has_selectors)
        return;
    if (sc->fail_first > 0 && k <= (unsigned long)sc->fail_first)
        fail = 1;
    else if (sc->fail_every > 0 && k % (unsigned long)sc->fail_every == 0)
        fail = 1;
    else if (sc->fail_pct > 0 && pct_hit(sc, k, 1, sc->fail_pct))
        fail = 1;
    else if (sc->stall_pct > 0 && pct_hit(sc, k, 2, sc->stall_pct)) {
        a->mode = M_STALL;
        a->after = 1;
        a->plain_hangs = 1;
        return;
    }
    if (fail) {
        a->mode = sc->fail_mode;
        a->status = sc->fail_status;
        a->after = 1;
    }
}

static void action_name(const struct action *a, char *buf, size_t n)
{
    switch (a->mode) {
    case M_OK:
        snprintf(buf, n, "ok");
        break;
    case M_STATUS:
        snprintf(buf, n, "status=%ld", a->status);
        break;
    case M_HANG:
        snprintf(buf, n, "hang");
        break;
    case M_RESET:
        snprintf(buf, n, "reset");
        break;
    case M_CUT:
        snprintf(buf, n, "cut_after=%ld", a->after);
        break;
    case M_STALL:
        snprintf(buf, n, "stall_after=%ld", a->after);
        break;
    case M_MALFORMED:
        snprintf(buf, n, "malformed_after=%ld", a->after);
        break;
    }
}

/* ==== Server state ==== */

struct counter {
    char *text;
    unsigned long count;
};

struct path_count {
    char *path;
    unsigned long count;
};

struct conn;

static struct {
    struct event_base *base;
    const char *name;
    FILE *log;
    long max_body;
    long embed_dim;
    long embed_max_chars; /* --embed-max-chars: longer inputs are refused; 0: none */
    int lingering_close; /* --close lingering */
    struct scenario *default_sc;
    struct scenario *ok_sc;
    unsigned long seq;
    unsigned long requests;
    struct path_count paths[MAX_PATHS];
    int npaths;
    unsigned long other_paths;
    struct counter counters[MAX_COUNTERS];
    int ncounters, next_evict;
    struct evbuffer *scratch;
    struct conn *conns;
} g;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Returns the next request number for SPEC text, 1-based. */
static unsigned long counter_next(const char *text)
{
    struct counter *c;
    char *copy;

    for (int i = 0; i < g.ncounters; i++) {
        if (strcmp(g.counters[i].text, text) == 0)
            return ++g.counters[i].count;
    }
    copy = strdup(text);
    if (copy == NULL)
        return 1;
    if (g.ncounters < MAX_COUNTERS) {
        c = &g.counters[g.ncounters++];
    } else {
        c = &g.counters[g.next_evict];
        g.next_evict = (g.next_evict + 1) % MAX_COUNTERS;
        free(c->text);
    }
    c->text = copy;
    c->count = 1;
    return 1;
}

static void counters_clear(void)
{
    for (int i = 0; i < g.ncounters; i++)
        free(g.counters[i].text);
    g.ncounters = 0;
    g.next_evict = 0;
}

static void stats_clear(void)
{
    for (int i = 0; i < g.npaths; i++)
        free(g.paths[i].path);
    g.npaths = 0;
    g.other_paths = 0;
    g.requests = 0;
}

static void stats_count(const char *path)
{
    g.requests++;
    for (int i = 0; i < g.npaths; i++) {
        if (strcmp(g.paths[i].path, path) == 0) {
            g.paths[i].count++;
            return;
        }
    }
    if (g.npaths < MAX_PATHS && (g.paths[g.npaths].path = strdup(path)) != NULL) {
        g.paths[g.npaths++].count = 1;
        return;
    }
    g.other_paths++;
}

/* ==== Connections and HTTP framing ==== */

enum conn_state {
    CS_READ_HEAD, /* waiting for a request head */
    CS_READ_BODY, /* head parsed, reading the body */
    CS_WAITING,   /* delay_ms timer armed before the response */
    CS_STREAMING, /* writing SSE events, maybe on a timer */
    CS_SILENT,    /* hang or stall: never writes again */
    CS_CLOSING,   /* close once the output has drained */
    CS_LINGERING, /* --close lingering: FIN sent once drained, input discarded until EOF */
};

enum kind { K_CHAT, K_COMPLETIONS, K_RESPONSES };

struct header {
    char *name; /* lowercased */
    char *value;
};

struct conn {
    struct conn *prev, *next;
    struct bufferevent *bev;
    struct event *timer;
    enum conn_state state;

    /* The request being read or answered. */
    char *head;
    char *method, *path;
    int http_minor, keep_alive;
    struct header headers[MAX_HEADERS];
    int nheaders;
    char *body;
    size_t body_len, body_cap;
    long content_length;
    int chunked_in, chunk_phase;
    long chunk_left;

    /* The response. */
    struct scenario *sc;
    struct action act;
    int r_status;
    const char *r_ctype;
    struct evbuffer *r_body;
    int r_stream, r_include_usage, chunked_out;
    enum kind r_kind;
    char *r_model;
    size_t r_model_len;
    char r_id[64];
    long long r_created;
    long r_prompt_tokens;
    long ev_sent, ev_total;
    int malformed_sent;
};

static void conn_free(struct conn *c)
{
    if (c == NULL)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        g.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->r_body != NULL)
        evbuffer_free(c->r_body);
    scenario_unref(c->sc);
    free(c->head);
    free(c->body);
    free(c->r_model);
    free(c);
}

/* Forgets the finished request so the next one on this connection starts clean. */
static void conn_clear_request(struct conn *c)
{
    free(c->head);
    c->head = NULL;
    c->method = c->path = NULL;
    c->nheaders = 0;
    c->body_len = 0;
    c->content_length = 0;
    c->chunked_in = 0;
    c->chunk_phase = 0;
    c->chunk_left = 0;
    scenario_unref(c->sc);
    c->sc = NULL;
    evbuffer_drain(c->r_body, evbuffer_get_length(c->r_body));
    free(c->r_model);
    c->r_model = NULL;
    c->r_stream = c->r_include_usage = c->chunked_out = 0;
    c->ev_sent = c->ev_total = 0;
    c->malformed_sent = 0;
}

/* Closes with a TCP RST instead of a FIN, so the client sees a reset. */
static void conn_reset(struct conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    struct linger lg = {1, 0};

    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    conn_free(c);
}

/* Closes once everything written so far has reached the kernel. Returns -1
 * when the connection was freed at once. */
static int conn_close_after_flush(struct conn *c)
{
    if (g.lingering_close) {
        /* As nginx and Apache close: the answer and a FIN, then the rest of
         * what the client sends is read and dropped until it closes, so no
         * RST (which close() sends over unread input) can overtake the
         * answer at the client. */
        c->state = CS_LINGERING;
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        return 0;
    }
    c->state = CS_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_free(c);
        return -1;
    }
    return 0;
}

static const char *reason_phrase(int status)
{
    static const struct {
        int status;
        const char *text;
    } phrases[] = {
        {100, "Continue"},
        {200, "OK"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Payload Too Large"},
        {422, "Unprocessable Entity"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++) {
        if (phrases[i].status == status)
            return phrases[i].text;
    }
    return status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
}

/* Writes a status line and headers. content_length < 0 means a body of
 * unknown length: chunked for HTTP/1.1, close-delimited for HTTP/1.0. */
static void write_head(struct conn *c, int status, const char *ctype, long content_length,
                       long retry_after)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nx-fake-upstream: %s\r\n",
                        status, reason_phrase(status), ctype, g.name);
    if (content_length >= 0) {
        evbuffer_add_printf(out, "Content-Length: %ld\r\n", content_length);
    } else if (c->http_minor >= 1) {
        evbuffer_add_printf(out, "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
        c->chunked_out = 1;
    } else {
        c->keep_alive = 0;
    }
    if (retry_after >= 0)
        evbuffer_add_printf(out, "Retry-After: %ld\r\n", retry_after);
    if (status >= 300 && status < 400 && c->sc != NULL && c->sc->location != NULL)
        evbuffer_add_printf(out, "Location: %s\r\n", c->sc->location);
    if (!c->keep_alive)
        evbuffer_add_printf(out, "Connection: close\r\n");
    else if (c->http_minor == 0)
        evbuffer_add_printf(out, "Connection: keep-alive\r\n");
    evbuffer_add(out, "\r\n", 2);
}

/* Moves data (emptied) to the output, as one chunk when chunked. */
static void write_chunk(struct conn *c, struct evbuffer *data)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t n = evbuffer_get_length(data);

    if (n == 0)
        return;
    if (c->chunked_out)
        evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add_buffer(out, data);
    if (c->chunked_out)
        evbuffer_add(out, "\r\n", 2);
}

/* ==== JSON output helpers ==== */

/* Appends s as a JSON string literal. s must be valid UTF-8. */
static void json_add_str(struct evbuffer *b, const char *s, size_t n)
{
    size_t run = 0;
    char esc[8];

    evbuffer_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch != '"' && ch != '\\' && ch >= 0x20)
            continue;
        evbuffer_add(b, s + run, i - run);
        run = i + 1;
        switch (ch) {
        case '"':
            evbuffer_add(b, "\\\"", 2);
            break;
        case '\\':
            evbuffer_add(b, "\\\\", 2);
            break;
        case '\n':
            evbuffer_add(b, "\\n", 2);
            break;
        case '\r':
            evbuffer_add(b, "\\r", 2);
            break;
        case '\t':
            evbuffer_add(b, "\\t", 2);
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            evbuffer_add(b, esc, 6);
        }
    }
    evbuffer_add(b, s + run, n - run);
    evbuffer_add(b, "\"", 1);
}

static void json_add_cstr(struct evbuffer *b, const char *s)
{
    json_add_str(b, s, strlen(s));
}

static const char *error_type(long status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* Fills c->r_body with an OpenAI-shaped error; code and message may be NULL. */
static void build_error(struct conn *c, long status, const char *code, const char *message)
{
    char msg[256];

    if (code == NULL && status == 429)
        code = "rate_limit_exceeded";
    if (message == NULL) {
        if (code != NULL && strcmp(code, "context_length_exceeded") == 0)
            snprintf(msg, sizeof msg,
                     "This model's maximum context length is 8192 tokens. "
                     "Please reduce the length of the messages.");
        else
            snprintf(msg, sizeof msg, "fake upstream %s: HTTP %ld", g.name, status);
        message = msg;
    }
    evbuffer_drain(c->r_body, evbuffer_get_length(c->r_body));
    evbuffer_add_printf(c->r_body, "{\"error\":{\"message\":");
    json_add_cstr(c->r_body, message);
    evbuffer_add_printf(c->r_body, ",\"type\":\"%s\",\"param\":null,\"code\":", error_type(status));
    if (code != NULL)
        json_add_cstr(c->r_body, code);
    else
        evbuffer_add(c->r_body, "null", 4);
    evbuffer_add(c->r_body, "}}", 2);
    c->r_status = (int)status;
    c->r_ctype = "application/json";
    c->r_stream = 0;
}

/* Appends content piece i of sc as a JSON string. Custom content is split
 * into `chunks` pieces on UTF-8 character boundaries. */
static void add_piece(struct evbuffer *b, const struct scenario *sc, long i)
{
    if (sc->content != NULL) {
        size_t len = strlen(sc->content);
        size_t a = (size_t)((unsigned long long)i * len / (unsigned long long)sc->chunks);
        size_t z = (size_t)((unsigned long long)(i + 1) * len / (unsigned long long)sc->chunks);
        while (a < len && ((unsigned char)sc->content[a] & 0xC0) == 0x80)
            a++;
        while (z < len && ((unsigned char)sc->content[z] & 0xC0) == 0x80)
            z++;
        json_add_str(b, sc->content + a, z - a);
    } else if (i == 0) {
        evbuffer_add(b, "\"tok0\"", 6);
    } else {
        evbuffer_add_printf(b, "\" tok%ld\"", i);
    }
}

static void add_full_content(struct evbuffer *b, const struct scenario *sc)
{
    if (sc->content != NULL) {
        json_add_cstr(b, sc->content);
        return;
    }
    evbuffer_add(b, "\"", 1);
    for (long i = 0; i < sc->chunks; i++) {
        if (i == 0)
            evbuffer_add(b, "tok0", 4);
        else
            evbuffer_add_printf(b, " tok%ld", i);
    }
    evbuffer_add(b, "\"", 1);
}

static long completion_tokens(const struct scenario *sc)
{
    return sc->tokens >= 0 ? sc->tokens : sc->chunks;
}

static void add_usage(struct evbuffer *b, long prompt, long completion)
{
    evbuffer_add_printf(b,
                        "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,"
                        "\"total_tokens\":%ld}",
                        prompt, completion, prompt + completion);
}

/* The fields every completion object and chunk begin with. */
static void add_completion_prefix(struct conn *c, struct evbuffer *b, const char *object)
{
    evbuffer_add_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", c->r_id,
                        object, c->r_created);
    json_add_str(b, c->r_model, c->r_model_len);
    evbuffer_add(b, ",\"system_fingerprint\":", 22);
    json_add_cstr(b, g.name);
}

/* ==== Streaming ==== */

static int stream_pump(struct conn *c);

/* The Responses object: in progress with no output, or completed (or what
 * `status` says) with the whole content as one output message. */
static void add_response_object(struct conn *c, struct evbuffer *b, const char *status)
{
    int done = strcmp(status, "in_progress") != 0;
    evbuffer_add_printf(b,
                        "{\"id\":\"%s\",\"object\":\"response\",\"created_at\":%lld,"
                        "\"status\":\"%s\",\"model\":",
                        c->r_id, c->r_created, status);
    json_add_str(b, c->r_model, c->r_model_len);
    if (strcmp(status, "failed") == 0)
        evbuffer_add_printf(b, ",\"error\":{\"code\":\"server_error\",\"message\":\"the model "
                               "failed\"}");
    else
        evbuffer_add_printf(b, ",\"error\":null");
    if (!done) {
        evbuffer_add_printf(b, ",\"output\":[],\"usage\":null}");
        return;
    }
    evbuffer_add_printf(b,
                        ",\"output\":[{\"type\":\"message\",\"id\":\"msg-%s\","
                        "\"status\":\"completed\",\"role\":\"assistant\",\"content\":"
                        "[{\"type\":\"output_text\",\"annotations\":[],\"text\":",
                        c->r_id);
    add_full_content(b, c->sc);
    evbuffer_add_printf(b,
                        "}]}],\"usage\":{\"input_tokens\":%ld,\"output_tokens\":%ld,"
                        "\"total_tokens\":%ld}}",
                        c->r_prompt_tokens, completion_tokens(c->sc),
                        c->r_prompt_tokens + completion_tokens(c->sc));
}

/* Event idx of a Responses stream: created, in_progress, output_item.added,
 * content_part.added, one output_text delta a piece, output_item.done, the
 * terminal event. */
static void stream_add_response_event(struct conn *c, long idx)
{
    struct evbuffer *e = g.scratch;
    const struct scenario *sc = c->sc;
    const char *type;

    if (idx == 0)
        type = "response.created";
    else if (idx == 1)
        type = "response.in_progress";
    else if (idx == 2)
        type = "response.output_item.added";
    else if (idx == 3)
        type = "response.content_part.added";
    else if (idx < 4 + sc->chunks)
        type = "response.output_text.delta";
    else if (idx == 4 + sc->chunks)
        type = "response.output_item.done";
    else
        type = sc->terminal;
    evbuffer_add_printf(e, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%ld", type, type,
                        idx);
    if (idx <= 1) {
        evbuffer_add(e, ",\"response\":", 12);
        add_response_object(c, e, "in_progress");
    } else if (idx == 2) {
        evbuffer_add_printf(e,
                            ",\"output_index\":0,\"item\":{\"type\":\"message\","
                            "\"id\":\"msg-%s\",\"status\":\"in_progress\",\"role\":"
                            "\"assistant\",\"content\":[]}",
                            c->r_id);
    } else if (idx == 3) {
        evbuffer_add_printf(e,
                            ",\"item_id\":\"msg-%s\",\"output_index\":0,\"content_index\":0,"
                            "\"part\":{\"type\":\"output_text\",\"annotations\":[],\"text\":\"\"}",
                            c->r_id);
    } else if (idx < 4 + sc->chunks) {
        evbuffer_add_printf(e,
                            ",\"item_id\":\"msg-%s\",\"output_index\":0,"
                            "\"content_index\":0,\"delta\":",
                            c->r_id);
        add_piece(e, sc, idx - 4);
    } else if (idx == 4 + sc->chunks) {
        evbuffer_add_printf(e,
                            ",\"output_index\":0,\"item\":{\"type\":\"message\","
                            "\"id\":\"msg-%s\",\"status\":\"completed\",\"role\":"
                            "\"assistant\",\"content\":[{\"type\":\"output_text\","
                            "\"annotations\":[],\"text\":",
                            c->r_id);
        add_full_content(e, sc);
        evbuffer_add(e, "}]}", 3);
    } else {
        evbuffer_add(e, ",\"response\":", 12);
        add_response_object(c, e, type + 9); /* "response." cut off: the status */
    }
    evbuffer_add(e, "}\n\n", 3);
    write_chunk(c, e);
}

static void stream_add_event(struct conn *c, long idx)
{
    struct evbuffer *e = g.scratch;
    const struct scenario *sc = c->sc;
    long first = c->r_kind == K_CHAT ? 1 : 0;
    int chat = c->r_kind == K_CHAT;

    if (c->r_kind == K_RESPONSES) {
        stream_add_response_event(c, idx);
        return;
    }
    evbuffer_add(e, "data: ", 6);
    if (idx == c->ev_total - 1) {
        evbuffer_add(e, "[DONE]\n\n", 8);
        write_chunk(c, e);
        return;
    }
    add_completion_prefix(c, e, chat ? "chat.completion.chunk" : "text_completion");
    if (chat && idx == 0) {
        evbuffer_add_printf(e, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                               "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]");
    } else if (idx < first + sc->chunks) {
        if (chat) {
            evbuffer_add_printf(e, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
            add_piece(e, sc, idx - first);
            evbuffer_add_printf(e, "},\"logprobs\":null,\"finish_reason\":null}]");
        } else {
            evbuffer_add_printf(e, ",\"choices\":[{\"text\":");
            add_piece(e, sc, idx - first);
            evbuffer_add_printf(e, ",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]");
        }
    } else if (idx == first + sc->chunks) {
        if (chat)
            evbuffer_add_printf(e, ",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                                   "\"finish_reason\":\"stop\"}]");
        else
            evbuffer_add_printf(e, ",\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,"
                                   "\"finish_reason\":\"stop\"}]");
    } else {
        evbuffer_add_printf(e, ",\"choices\":[],\"usage\":");
        add_usage(e, c->r_prompt_tokens, completion_tokens(sc));
        evbuffer_add(e, "}\n\n", 3);
        write_chunk(c, e);
        return;
    }
    if (c->r_include_usage)
        evbuffer_add(e, ",\"usage\":null", 13);
    evbuffer_add(e, "}\n\n", 3);
    write_chunk(c, e);
}

/* The request is answered: go back to reading, or close. Returns -1 if freed. */
static int response_done(struct conn *c)
{
    if (!c->keep_alive)
        return conn_close_after_flush(c);
    conn_clear_request(c);
    c->state = CS_READ_HEAD;
    return 0;
}

static int process_input(struct conn *c);

static void timer_cb(evutil_socket_t fd, short what, void *arg);

static void arm_timer(struct conn *c, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* Writes events until done, a delay, a cut or a stall. Returns -1 if freed. */
static int stream_pump(struct conn *c)
{
    for (;;) {
        if (c->ev_sent == c->act.after) {
            if (c->act.mode == M_CUT)
                return conn_close_after_flush(c);
            if (c->act.mode == M_STALL) {
                c->state = CS_SILENT;
                return 0;
            }
            if (c->act.mode == M_MALFORMED && !c->malformed_sent) {
                evbuffer_add(g.scratch, "data: {not json\n\n", 17);
                write_chunk(c, g.scratch);
                c->malformed_sent = 1;
            }
        }
        if (c->ev_sent == c->ev_total) {
            if (c->chunked_out)
                evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
            return response_done(c);
        }
        stream_add_event(c, c->ev_sent++);
        if (c->sc->chunk_delay_ms > 0 && c->ev_sent < c->ev_total) {
            arm_timer(c, c->sc->chunk_delay_ms);
            return 0;
        }
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= STREAM_OUT_HIGH)
            return 0; /* write_cb goes on once the socket has taken half of it */
    }
}

/* ==== Sending a prepared response ==== */

/* Sends what handle_request prepared, applying the action. Returns -1 if freed. */
static int send_now(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t n = evbuffer_get_length(c->r_body);
    long retry = c->act.mode == M_STATUS ? c->sc->retry_after : -1;

    if (c->act.mode == M_RESET) {
        conn_reset(c);
        return -1;
    }
    if (c->r_stream) {
        c->state = CS_STREAMING;
        write_head(c, 200, "text/event-stream", -1, -1);
        if (c->act.after > c->ev_total)
            c->act.after = c->ev_total;
        return stream_pump(c);
    }
    if (c->act.mode == M_MALFORMED && c->r_status == 200) {
        write_head(c, 200, c->r_ctype, 9, -1);
        evbuffer_add(out, "{not json", 9);
        return response_done(c);
    }
    write_head(c, c->r_status, c->r_ctype, (long)n, retry);
    if ((c->act.mode == M_CUT || c->act.mode == M_STALL) && c->r_status == 200) {
        evbuffer_remove_buffer(c->r_body, out, n / 2);
        if (c->act.mode == M_CUT)
            return conn_close_after_flush(c);
        c->state = CS_SILENT;
        return 0;
    }
    evbuffer_add_buffer(out, c->r_body);
    return response_done(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    int rc;

    (void)fd;
    (void)what;
    if (c->state == CS_WAITING)
        rc = send_now(c);
    else if (c->state == CS_STREAMING)
        rc = stream_pump(c);
    else
        return;
    if (rc == 0 && c->state == CS_READ_HEAD)
        process_input(c);
}

/* Sends now, or after delay_ms. Returns -1 if freed. */
static int start_response(struct conn *c)
{
    if (c->act.mode == M_HANG) {
        c->state = CS_SILENT;
        return 0;
    }
    if (c->sc->delay_ms > 0) {
        c->state = CS_WAITING;
        arm_timer(c, c->sc->delay_ms);
        return 0;
    }
    return send_now(c);
}

/* ==== Endpoints ==== */

static const char *header_get(const struct conn *c, const char *name)
{
    for (int i = 0; i < c->nheaders; i++) {
        if (strcmp(c->headers[i].name, name) == 0)
            return c->headers[i].value;
    }
    return NULL;
}

static void set_json_body(struct conn *c)
{
    c->r_status = 200;
    c->r_ctype = "application/json";
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void add_vector(struct evbuffer *b, uint64_t h, long dim, int zero)
{
    static double v[MAX_EMBED_DIM];
    double norm = 0.0;

    if (zero) {
        evbuffer_add(b, "[", 1);
        for (long j = 0; j < dim; j++)
            evbuffer_add(b, j ? ",0" : "0", j ? 2 : 1);
        evbuffer_add(b, "]", 1);
        return;
    }

    for (long j = 0; j < dim; j++) {
        uint64_t r = splitmix64(h + (uint64_t)j);
        v[j] = (double)(r >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
        norm += v[j] * v[j];
    }
    norm = norm > 0.0 ? sqrt(norm) : 1.0;
    evbuffer_add(b, "[", 1);
    for (long j = 0; j < dim; j++)
        evbuffer_add_printf(b, j ? ",%.6f" : "%.6f", v[j] / norm);
    evbuffer_add(b, "]", 1);
}

/* Hashes one embedding input: a string's bytes, or anything else's compact JSON. */
static int embed_item_hash(json_t *item, uint64_t *h, long *tokens)
{
    if (json_is_string(item)) {
        size_t n = json_string_length(item);
        *h = fnv1a(json_string_value(item), n);
        *tokens += (long)(n / 4 + 1);
        return 0;
    }
    if (json_is_array(item)) {
        char *dump = json_dumps(item, JSON_COMPACT);
        if (dump == NULL)
            return -1;
        *h = fnv1a(dump, strlen(dump));
        *tokens += (long)json_array_size(item);
        free(dump);
        return 0;
    }
    return -1;
}

/* Characters (code points) in a UTF-8 string of n bytes. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static void do_embeddings(struct conn *c, json_t *req)
{
    json_t *input = json_object_get(req, "input");
    json_t *model = json_object_get(req, "model");
    json_t *dims = json_object_get(req, "dimensions");
    long dim = g.embed_dim, tokens = 0;
    size_t n;
    int single;
    uint64_t h;

    if (json_is_integer(dims)) {
        if (json_integer_value(dims) < 1 || json_integer_value(dims) > MAX_EMBED_DIM) {
            build_error(c, 400, NULL, "dimensions: out of range");
            return;
        }
        dim = (long)json_integer_value(dims);
    }
    /* A string, or an array of integers (one tokenized input), is one item. */
    single = json_is_string(input) || (json_is_array(input) && json_array_size(input) > 0 &&
                                       json_is_integer(json_array_get(input, 0)));
    n = single ? 1 : json_is_array(input) ? json_array_size(input) : 0;
    if (n == 0) {
        build_error(c, 400, NULL, "'input' must be a non-empty string or array");
        return;
    }
    set_json_body(c);
    evbuffer_add_printf(c->r_body, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        json_t *item = single ? input : json_array_get(input, i);
        size_t chars = json_is_string(item) ? utf8_chars(json_string_value(item),
                                                         json_string_length(item))
                                            : 0;
        if (g.embed_max_chars > 0 && chars > (size_t)g.embed_max_chars) {
            /* As TEI refuses an input over its limit (413, its own words). */
            char msg[160];
            snprintf(msg, sizeof msg,
                     "Input validation error: `inputs` must have less than %ld characters. "
                     "Given: %zu",
                     g.embed_max_chars, chars);
            build_error(c, 413, NULL, msg);
            return;
        }
        if (embed_item_hash(item, &h, &tokens) != 0) {
            build_error(c, 400, NULL, "'input' items must be strings or token arrays");
            return;
        }
        evbuffer_add_printf(
            c->r_body, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        add_vector(c->r_body, h, dim, c->sc && c->sc->zero_vectors);
        evbuffer_add(c->r_body, "}", 1);
    }
    evbuffer_add_printf(c->r_body, "],\"model\":");
    if (json_is_string(model))
        json_add_str(c->r_body, json_string_value(model), json_string_length(model));
    else
        json_add_cstr(c->r_body, "fake-embedding");
    evbuffer_add_printf(c->r_body, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}",
                        tokens, tokens);
}

static int do_completion(struct conn *c, json_t *req, enum kind kind)
{
    json_t *model = json_object_get(req, "model");
    json_t *opts = json_object_get(req, "stream_options");
    const struct scenario *sc = c->sc;
    int chat = kind == K_CHAT;

    c->r_kind = kind;
    if (!json_is_string(model))
        model = json_string("fake-model");
    else
        json_incref(model);
    c->r_model_len = json_string_length(model);
    c->r_model = malloc(c->r_model_len + 1);
    if (c->r_model != NULL)
        memcpy(c->r_model, json_string_value(model), c->r_model_len + 1);
    json_decref(model);
    if (c->r_model == NULL)
        return -1;
    snprintf(c->r_id, sizeof c->r_id, "%s-%lu",
             chat                  ? "chatcmpl-fake"
             : kind == K_RESPONSES ? "resp-fake"
                                   : "cmpl-fake",
             g.seq);
    c->r_created = (long long)time(NULL);
    c->r_prompt_tokens = (long)(c->body_len / 4 + 1);
    c->r_stream = json_is_true(json_object_get(req, "stream"));
    c->r_include_usage = json_is_true(json_object_get(opts, "include_usage"));
    set_json_body(c);
    if (kind == K_RESPONSES) {
        if (c->r_stream)
            c->ev_total = 4 + sc->chunks + 1 + (sc->terminal ? 1 : 0);
        else
            add_response_object(c, c->r_body, "completed");
        return 0;
    }
    if (c->r_stream) {
        c->ev_total = (chat ? 1 : 0) + sc->chunks + 1 + (c->r_include_usage ? 1 : 0) + 1;
        return 0;
    }
    add_completion_prefix(c, c->r_body, chat ? "chat.completion" : "text_completion");
    if (chat) {
        evbuffer_add_printf(c->r_body, ",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                                       "\"assistant\",\"content\":");
        add_full_content(c->r_body, sc);
        evbuffer_add_printf(c->r_body, "},\"logprobs\":null,\"finish_reason\":\"stop\"}]");
    } else {
        evbuffer_add_printf(c->r_body, ",\"choices\":[{\"text\":");
        add_full_content(c->r_body, sc);
        evbuffer_add_printf(c->r_body,
                            ",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}]");
    }
    evbuffer_add_printf(c->r_body, ",\"usage\":");
    add_usage(c->r_body, c->r_prompt_tokens, completion_tokens(sc));
    evbuffer_add(c->r_body, "}", 1);
    return 0;
}

/* Builds the normal answer for the request's path into c->r_*. */
static void route(struct conn *c)
{
    int post = strcmp(c->method, "POST") == 0, get = strcmp(c->method, "GET") == 0;
    const char *p = c->path;
    enum kind kind;
    int embeddings;
    json_t *req;
    json_error_t jerr;
    char msg[300];

    if (strcmp(p, "/health") == 0 || strcmp(p, "/v1/models") == 0) {
        if (!get) {
            build_error(c, 405, NULL, "method not allowed");
            return;
        }
        set_json_body(c);
        if (p[1] == 'h') {
            evbuffer_add_printf(c->r_body, "{\"status\":\"ok\",\"name\":");
            json_add_cstr(c->r_body, g.name);
            evbuffer_add(c->r_body, "}", 1);
        } else {
            evbuffer_add_printf(c->r_body, "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\","
                                           "\"object\":\"model\",\"created\":1700000000,"
                                           "\"owned_by\":");
            json_add_cstr(c->r_body, g.name);
            evbuffer_add(c->r_body, "}]}", 3);
        }
        return;
    }
    embeddings = strcmp(p, "/v1/embeddings") == 0;
    kind = strcmp(p, "/v1/completions") == 0 ? K_COMPLETIONS
           : strcmp(p, "/v1/responses") == 0 ? K_RESPONSES
                                             : K_CHAT;
    if (!embeddings && kind == K_CHAT && strcmp(p, "/v1/chat/completions") != 0) {
        snprintf(msg, sizeof msg, "Unknown request URL: %s %.200s", c->method, p);
        build_error(c, 404, NULL, msg);
        return;
    }
    if (!post) {
        build_error(c, 405, NULL, "method not allowed");
        return;
    }
    /* A real upstream accepts "\u0000" inside strings, so this one does too;
     * and, like one written in Python, integers of any size (read as reals
     * when past int64: none such is read here). */
    req = json_loadb(c->body ? c->body : "", c->body_len, JSON_ALLOW_NUL, &jerr);
    if (!req && json_error_code(&jerr) == json_error_numeric_overflow)
        req = json_loadb(c->body ? c->body : "", c->body_len,
                         JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
    if (!json_is_object(req)) {
        snprintf(msg, sizeof msg, "We could not parse the JSON body of your request: %s",
                 req == NULL ? jerr.text : "expected an object");
        build_error(c, 400, NULL, msg);
        json_decref(req);
        return;
    }
    if (embeddings)
        do_embeddings(c, req);
    else if (do_completion(c, req, kind) != 0)
        build_error(c, 500, NULL, "out of memory");
    json_decref(req);
}

/* Answers at once with an error and no scenario; used for bad requests. */
static int respond_error_now(struct conn *c, long status, const char *message, int close)
{
    if (close)
        c->keep_alive = 0;
    scenario_unref(c->sc);
    c->sc = g.ok_sc;
    g.ok_sc->refs++;
    c->act.mode = M_OK;
    build_error(c, status, NULL, message);
    return send_now(c);
}

static void log_request(struct conn *c, const char *spec, const struct action *a)
{
    json_t *o = json_object(), *h = json_object(), *body;
    char act[64];

    if (o == NULL || h == NULL)
        goto out;
    action_name(a, act, sizeof act);
    for (int i = 0; i < c->nheaders; i++) {
        json_t *prev = json_object_get(h, c->headers[i].name);
        json_t *v;
        if (prev != NULL) {
            /* Repeated headers are joined the way HTTP allows. */
            size_t n = json_string_length(prev) + strlen(c->headers[i].value) + 3;
            char *joined = malloc(n);
            if (joined == NULL)
                continue;
            snprintf(joined, n, "%s, %s", json_string_value(prev), c->headers[i].value);
            v = json_string(joined);
            free(joined);
        } else {
            v = json_string(c->headers[i].value);
        }
        if (v == NULL)
            v = json_null(); /* not UTF-8 */
        json_object_set_new(h, c->headers[i].name, v);
    }
    json_object_set_new(o, "n", json_integer((json_int_t)g.seq));
    json_object_set_new(o, "method", json_string(c->method));
    json_object_set_new(o, "path", json_string(c->path));
    json_object_set_new(o, "headers", h);
    h = NULL;
    body = json_stringn(c->body ? c->body : "", c->body_len);
    if (body != NULL) {
        json_object_set_new(o, "body", body);
    } else {
        /* Not UTF-8: keep the bytes recoverable as hex. */
        char *hex = malloc(c->body_len * 2 + 1);
        json_object_set_new(o, "body", json_null());
        if (hex != NULL) {
            for (size_t i = 0; i < c->body_len; i++)
                snprintf(hex + 2 * i, 3, "%02x", (unsigned char)c->body[i]);
            hex[c->body_len * 2] = '\0';
            json_object_set_new(o, "body_hex", json_string(hex));
            free(hex);
        }
    }
    json_object_set_new(o, "scenario", json_string(spec));
    json_object_set_new(o, "action", json_string(act));
    json_object_set_new(o, "t_ms", json_integer(now_ms()));
    if (json_dumpf(o, g.log, JSON_COMPACT) == 0) {
        fputc('\n', g.log);
        fflush(g.log);
    }
out:
    json_decref(h);
    json_decref(o);
}

static int handle_control(struct conn *c)
{
    json_t *req = NULL;
    json_error_t jerr;
    char err[256];
    int get = strcmp(c->method, "GET") == 0;

    if (!get) {
        json_t *spec, *reset;
        req = json_loadb(c->body ? c->body : "", c->body_len, 0, &jerr);
        if (!json_is_object(req)) {
            json_decref(req);
            return respond_error_now(c, 400, "/_control: expected a JSON object", 0);
        }
        spec = json_object_get(req, "scenario");
        reset = json_object_get(req, "reset");
        if (spec != NULL && !json_is_string(spec)) {
            json_decref(req);
            return respond_error_now(c, 400, "/_control: scenario must be a string", 0);
        }
        if (spec != NULL) {
            struct scenario *sc = scenario_parse(json_string_value(spec), err, sizeof err);
            if (sc == NULL) {
                json_decref(req);
                return respond_error_now(c, 400, err, 0);
            }
            scenario_unref(g.default_sc);
            g.default_sc = sc;
            /* A new scenario counts its requests from 1. */
            counters_clear();
        }
        if (json_is_true(reset)) {
            counters_clear();
            stats_clear();
        }
        json_decref(req);
    }
    c->act.mode = M_OK;
    c->sc = g.ok_sc;
    g.ok_sc->refs++;
    set_json_body(c);
    evbuffer_add_printf(c->r_body, "{\"ok\":true,\"scenario\":");
    json_add_cstr(c->r_body, g.default_sc->text);
    evbuffer_add(c->r_body, "}", 1);
    return send_now(c);
}

static int handle_stats(struct conn *c)
{
    c->act.mode = M_OK;
    c->sc = g.ok_sc;
    g.ok_sc->refs++;
    set_json_body(c);
    evbuffer_add_printf(c->r_body, "{\"requests\":%lu,\"by_path\":{", g.requests);
    for (int i = 0; i < g.npaths; i++) {
        if (i > 0)
            evbuffer_add(c->r_body, ",", 1);
        json_add_cstr(c->r_body, g.paths[i].path);
        evbuffer_add_printf(c->r_body, ":%lu", g.paths[i].count);
    }
    if (g.other_paths > 0)
        evbuffer_add_printf(c->r_body, "%s\"other\":%lu", g.npaths ? "," : "", g.other_paths);
    evbuffer_add_printf(c->r_body, "},\"scenario\":");
    json_add_cstr(c->r_body, g.default_sc->text);
    evbuffer_add(c->r_body, "}", 1);
    return send_now(c);
}

/* A whole request has been read. Returns -1 if the connection was freed. */
static int handle_request(struct conn *c)
{
    const char *hdr = header_get(c, "x-fake-scenario");
    int api;
    unsigned long k = 1;
    char err[256], msg[320];

    if (strcmp(c->path, "/_control") == 0)
        return handle_control(c);
    if (strcmp(c->path, "/_stats") == 0)
        return handle_stats(c);

    g.seq++;
    stats_count(c->path);
    api =
        strcmp(c->method, "POST") == 0 &&
        (strcmp(c->path, "/v1/chat/completions") == 0 || strcmp(c->path, "/v1/completions") == 0 ||
         strcmp(c->path, "/v1/embeddings") == 0 || strcmp(c->path, "/v1/responses") == 0);
    if (hdr != NULL) {
        c->sc = scenario_parse(hdr, err, sizeof err);
        if (c->sc == NULL) {
            struct action bad = {M_OK, 0, 0, 0};
            if (g.log != NULL)
                log_request(c, hdr, &bad);
            snprintf(msg, sizeof msg, "x-fake-scenario: %s", err);
            return respond_error_now(c, 400, msg, 0);
        }
    } else {
        c->sc = api ? g.default_sc : g.ok_sc;
        c->sc->refs++;
    }
    if (c->sc->has_selectors)
        k = counter_next(c->sc->text);
    scenario_decide(c->sc, k, &c->act);
    if (g.log != NULL)
        log_request(c, c->sc->text, &c->act);

    if (c->act.mode == M_STATUS)
        build_error(c, c->act.status, c->sc->code, c->sc->message);
    else if (c->act.mode != M_HANG && c->act.mode != M_RESET)
        route(c);
    if (c->act.plain_hangs && !c->r_stream)
        c->act.mode = M_HANG;
    return start_response(c);
}

/* ==== Request parsing ==== */

static int header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;

    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e != '\0' && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* Parses the head held in c->head. Returns 0, or an HTTP status to answer with. */
static int parse_head_text(struct conn *c)
{
    char *line = c->head, *next, *sp1, *sp2, *q;
    const char *v;

    while (*line == '\r' || *line == '\n')
        line++;
    next = strstr(line, "\r\n");
    if (next == NULL)
        return 400;
    *next = '\0';
    next += 2;
    sp1 = strchr(line, ' ');
    sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL)
        return 400;
    *sp1 = *sp2 = '\0';
    c->method = line;
    c->path = sp1 + 1;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        c->http_minor = 1;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        c->http_minor = 0;
    else
        return 400;
    q = strchr(c->path, '?');
    if (q != NULL)
        *q = '\0';

    c->nheaders = 0;
    for (line = next; *line != '\0' && strncmp(line, "\r\n", 2) != 0; line = next) {
        char *colon, *val, *end;
        next = strstr(line, "\r\n");
        if (next == NULL)
            return 400;
        *next = '\0';
        next += 2;
        colon = strchr(line, ':');
        if (colon == NULL || colon == line)
            return 400;
        if (c->nheaders == MAX_HEADERS)
            return 431;
        *colon = '\0';
        for (char *p = line; *p; p++) {
            if (*p == ' ' || *p == '\t')
                return 400;
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        }
        val = colon + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        end = val + strlen(val);
        while (end > val && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        c->headers[c->nheaders].name = line;
        c->headers[c->nheaders].value = val;
        c->nheaders++;
    }

    v = header_get(c, "connection");
    if (c->http_minor >= 1)
        c->keep_alive = !(v != NULL && header_has_token(v, "close"));
    else
        c->keep_alive = v != NULL && header_has_token(v, "keep-alive");

    v = header_get(c, "transfer-encoding");
    if (v != NULL) {
        if (!header_has_token(v, "chunked"))
            return 501;
        c->chunked_in = 1;
        c->chunk_phase = 0;
    } else if ((v = header_get(c, "content-length")) != NULL) {
        if (parse_long_range(v, 0, LONG_MAX, &c->content_length) != 0)
            return 400;
        if (c->content_length > g.max_body)
            return 413;
    }
    return 0;
}

static int body_reserve(struct conn *c, size_t extra)
{
    size_t need = c->body_len + extra + 1;
    char *nb;

    if (c->body_len + extra > (size_t)g.max_body)
        return 413;
    if (need <= c->body_cap)
        return 0;
    if (need < c->body_cap * 2)
        need = c->body_cap * 2;
    nb = realloc(c->body, need);
    if (nb == NULL)
        return 500;
    c->body = nb;
    c->body_cap = need;
    return 0;
}

/* Reads body bytes. Returns 0 when complete, 1 for more, or an HTTP status. */
static int read_body(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    int rc;

    if (!c->chunked_in) {
        size_t want = (size_t)c->content_length - c->body_len;
        size_t avail = evbuffer_get_length(in);
        size_t take = avail < want ? avail : want;
        if ((rc = body_reserve(c, take)) != 0)
            return rc;
        evbuffer_remove(in, c->body + c->body_len, take);
        c->body_len += take;
        return c->body_len == (size_t)c->content_length ? 0 : 1;
    }
    for (;;) {
        size_t n;
        char *line;
        if (c->chunk_phase == 0 || c->chunk_phase == 3) {
            /* 0: chunk size line; 3: trailer lines up to an empty one. */
            line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
            if (line == NULL)
                return evbuffer_get_length(in) > 4096 ? 400 : 1;
            if (c->chunk_phase == 3) {
                free(line);
                if (n == 0)
                    return 0;
                continue;
            }
            char *semi = strchr(line, ';'), *end;
            if (semi != NULL)
                *semi = '\0';
            errno = 0;
            long size = strtol(line, &end, 16);
            int bad = errno != 0 || end == line || *trim(end) != '\0' || size < 0;
            free(line);
            if (bad)
                return 400;
            if (size > g.max_body)
                return 413;
            if ((rc = body_reserve(c, (size_t)size)) != 0)
                return rc;
            c->chunk_left = size;
            c->chunk_phase = size == 0 ? 3 : 1;
        } else if (c->chunk_phase == 1) {
            size_t avail = evbuffer_get_length(in);
            size_t take = avail < (size_t)c->chunk_left ? avail : (size_t)c->chunk_left;
            evbuffer_remove(in, c->body + c->body_len, take);
            c->body_len += take;
            c->chunk_left -= (long)take;
            if (c->chunk_left > 0)
                return 1;
            c->chunk_phase = 2;
        } else {
            char crlf[2];
            if (evbuffer_get_length(in) < 2)
                return 1;
            evbuffer_remove(in, crlf, 2);
            if (crlf[0] != '\r' || crlf[1] != '\n')
                return 400;
            c->chunk_phase = 0;
        }
    }
}

/* Parses and answers as many buffered requests as the state allows.
 * Returns -1 if the connection was freed. */
static int process_input(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    int rc;

    while (c->state == CS_READ_HEAD || c->state == CS_READ_BODY) {
        if (c->state == CS_READ_HEAD) {
            struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
            size_t n;
            if (p.pos < 0) {
                if (evbuffer_get_length(in) > MAX_HEAD_BYTES) {
                    c->method = "GET";
                    c->path = "/";
                    return respond_error_now(c, 431, "request head too large", 1);
                }
                return 0;
            }
            n = (size_t)p.pos + 4;
            if (n > MAX_HEAD_BYTES)
                return respond_error_now(c, 431, "request head too large", 1);
            c->head = malloc(n + 1);
            if (c->head == NULL)
                return respond_error_now(c, 500, "out of memory", 1);
            evbuffer_remove(in, c->head, n);
            c->head[n] = '\0';
            rc = parse_head_text(c);
            if (rc != 0) {
                if (c->method == NULL)
                    c->method = "GET";
                if (c->path == NULL)
                    c->path = "/";
                return respond_error_now(c, rc, "malformed or unsupported request", 1);
            }
            c->state = CS_READ_BODY;
            const char *expect = header_get(c, "expect");
            if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
                evbuffer_get_length(in) == 0 && (c->chunked_in || c->content_length > 0))
                evbuffer_add_printf(bufferevent_get_output(c->bev),
                                    "HTTP/1.1 100 Continue\r\n\r\n");
        }
        rc = read_body(c);
        if (rc == 1)
            return 0;
        if (rc != 0)
            return respond_error_now(
                c, rc, rc == 413 ? "request body too large" : "malformed request body", 1);
        if (c->body != NULL)
            c->body[c->body_len] = '\0';
        c->state = CS_WAITING;
        if (handle_request(c) != 0)
            return -1;
    }
    return 0;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    switch (c->state) {
    case CS_READ_HEAD:
    case CS_READ_BODY:
        process_input(c);
        break;
    case CS_SILENT:
    case CS_CLOSING:
    case CS_LINGERING:
        evbuffer_drain(in, evbuffer_get_length(in));
        break;
    default:
        /* Pipelined data waits for the current answer, within bounds. */
        if (evbuffer_get_length(in) > (size_t)g.max_body + MAX_HEAD_BYTES)
            conn_free(c);
        break;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->state == CS_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
    else if (c->state == CS_LINGERING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        shutdown(bufferevent_getfd(bev), SHUT_WR);
    else if (c->state == CS_STREAMING && c->sc->chunk_delay_ms <= 0 &&
             evbuffer_get_length(bufferevent_get_output(bev)) < STREAM_OUT_HIGH &&
             stream_pump(c) == 0 && c->state == CS_READ_HEAD)
        process_input(c); /* a stream held back by STREAM_OUT_HIGH goes on */
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct conn *c = calloc(1, sizeof *c);
    int one = 1;

    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->bev = bufferevent_socket_new(g.base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(g.base, timer_cb, c);
    c->r_body = evbuffer_new();
    c->next = g.conns;
    if (g.conns != NULL)
        g.conns->prev = c;
    g.conns = c;
    if (c->bev == NULL || c->timer == NULL || c->r_body == NULL) {
        if (c->bev == NULL)
            evutil_closesocket(fd);
        conn_free(c);
        return;
    }
    c->state = CS_READ_HEAD;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    /* write_cb runs whenever a write leaves half of STREAM_OUT_HIGH or less. */
    bufferevent_setwatermark(c->bev, EV_WRITE, STREAM_OUT_HIGH / 2, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ==== Startup ==== */

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    event_base_loopexit(g.base, NULL);
}

static int write_port_file(const char *file, int port)
{
    char tmp[4096];
    FILE *f;

    /* Write then rename, so a reader never sees a half-written number. */
    if (snprintf(tmp, sizeof tmp, "%s.tmp", file) >= (int)sizeof tmp)
        return -1;
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || rename(tmp, file) != 0)
        return -1;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: fake_upstream --listen 127.0.0.1:PORT [--port-file FILE] [--log FILE]\n"
               "                     [--name NAME] [--scenario SPEC] [--embedding-dim N]\n"
               "                     [--max-body BYTES] [--close abrupt|lingering]\n"
               "                     [--embed-max-chars N]\n"
               "PORT 0 picks a free port. SPEC is described in tests/fake_upstream/README.md.\n");
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:0", *port_file = NULL, *log_file = NULL;
    const char *spec = "ok";
    struct sockaddr_in sin;
    socklen_t slen = sizeof sin;
    struct evconnlistener *lst = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    char host[64], err[256];
    const char *colon;
    long port;
    int result = 1;

    g.name = "fake";
    g.max_body = DEFAULT_MAX_BODY;
    g.embed_dim = 8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "fake_upstream: %s: missing value or unknown option\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--listen") == 0)
            listen_at = v;
        else if (strcmp(a, "--port-file") == 0)
            port_file = v;
        else if (strcmp(a, "--log") == 0)
            log_file = v;
        else if (strcmp(a, "--name") == 0)
            g.name = v;
        else if (strcmp(a, "--scenario") == 0)
            spec = v;
        else if (strcmp(a, "--embedding-dim") == 0) {
            if (parse_long_range(v, 1, MAX_EMBED_DIM, &g.embed_dim) != 0) {
                fprintf(stderr, "fake_upstream: --embedding-dim: expected 1..%d\n", MAX_EMBED_DIM);
                return 2;
            }
        } else if (strcmp(a, "--embed-max-chars") == 0) {
            if (parse_long_range(v, 1, 1L << 30, &g.embed_max_chars) != 0) {
                fprintf(stderr, "fake_upstream: --embed-max-chars: expected 1..%ld\n", 1L << 30);
                return 2;
            }
        } else if (strcmp(a, "--close") == 0) {
            if (strcmp(v, "abrupt") != 0 && strcmp(v, "lingering") != 0) {
                fprintf(stderr, "fake_upstream: --close: expected abrupt or lingering\n");
                return 2;
            }
            g.lingering_close = strcmp(v, "lingering") == 0;
        } else if (strcmp(a, "--max-body") == 0) {
            if (parse_long_range(v, 1, 1L << 30, &g.max_body) != 0) {
                fprintf(stderr, "fake_upstream: --max-body: expected 1..%ld\n", 1L << 30);
                return 2;
            }
        } else {
            fprintf(stderr, "fake_upstream: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    {
        json_t *check = json_string(g.name);
        int bad = check == NULL || strpbrk(g.name, "\r\n") != NULL;
        json_decref(check);
        if (bad) {
            fprintf(stderr, "fake_upstream: --name must be one line of UTF-8\n");
            return 2;
        }
    }

    colon = strrchr(listen_at, ':');
    if (colon == NULL || (size_t)(colon - listen_at) >= sizeof host ||
        parse_long_range(colon + 1, 0, 65535, &port) != 0) {
        fprintf(stderr, "fake_upstream: --listen: expected HOST:PORT, got '%s'\n", listen_at);
        return 2;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen_at), listen_at);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        fprintf(stderr, "fake_upstream: --listen: '%s' is not an IPv4 address\n", host);
        return 2;
    }

    g.default_sc = scenario_parse(spec, err, sizeof err);
    if (g.default_sc == NULL) {
        fprintf(stderr, "fake_upstream: --scenario: %s\n", err);
        return 2;
    }
    g.ok_sc = scenario_parse("ok", err, sizeof err);
    g.scratch = evbuffer_new();
    g.base = event_base_new();
    if (g.ok_sc == NULL || g.scratch == NULL || g.base == NULL) {
        fprintf(stderr, "fake_upstream: out of memory\n");
        goto out;
    }
    if (log_file != NULL && (g.log = fopen(log_file, "a")) == NULL) {
        fprintf(stderr, "fake_upstream: --log %s: %s\n", log_file, strerror(errno));
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);

    lst =
        evconnlistener_new_bind(g.base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                1024, (struct sockaddr *)&sin, sizeof sin);
    if (lst == NULL) {
        fprintf(stderr, "fake_upstream: cannot listen on %s: %s\n", listen_at, strerror(errno));
        goto out;
    }
    if (getsockname(evconnlistener_get_fd(lst), (struct sockaddr *)&sin, &slen) != 0) {
        fprintf(stderr, "fake_upstream: getsockname: %s\n", strerror(errno));
        goto out;
    }
    if (port_file != NULL && write_port_file(port_file, ntohs(sin.sin_port)) != 0) {
        fprintf(stderr, "fake_upstream: --port-file %s: %s\n", port_file, strerror(errno));
        goto out;
    }
    sigterm = evsignal_new(g.base, SIGTERM, signal_cb, NULL);
    sigint = evsignal_new(g.base, SIGINT, signal_cb, NULL);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) != 0 ||
        evsignal_add(sigint, NULL) != 0) {
        fprintf(stderr, "fake_upstream: cannot install signal handlers\n");
        goto out;
    }

    event_base_dispatch(g.base);
    result = 0;

out:
    while (g.conns != NULL)
        conn_free(g.conns);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (lst != NULL)
        evconnlistener_free(lst);
    if (g.scratch != NULL)
        evbuffer_free(g.scratch);
    if (g.base != NULL)
        event_base_free(g.base);
    if (g.log != NULL)
        fclose(g.log);
    counters_clear();
    stats_clear();
    scenario_unref(g.default_sc);
    scenario_unref(g.ok_sc);
    return result;
}
