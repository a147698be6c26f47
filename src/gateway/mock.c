/* mock.c -- the mock backend (see mock.h). The whole answer is built up
 * front as a list of pieces (one for a plain response; one per server-sent
 * event for a stream), then handed out by a timer: the first after
 * latency_ms, the next ones chunk_delay_ms apart. A piece the consumer
 * refuses (backpressure) is offered again after mock_resume().
 *
 * Threads: the event loop thread only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "mock.h"

struct mock_xfer {
    struct event *timer;
    struct up_callbacks cb;
    void *arg;
    char **pieces;
    size_t *lens;
    size_t n, next;
    int head_sent, stream;
    int in_tick, aborted; /* mock_abort() inside a callback defers the free */
    long chunk_delay_ms;
};

static unsigned long long mock_serial;

static void mock_free(struct mock_xfer *x)
{
    if (!x)
        return;
    if (x->timer)
        event_free(x->timer);
    for (size_t i = 0; i < x->n; i++)
        free(x->pieces[i]);
    free(x->pieces);
    free(x->lens);
    free(x);
}

static void schedule(struct mock_xfer *x, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(x->timer, &tv);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    struct mock_xfer *x = arg;
    (void)fd;
    (void)what;
    x->in_tick = 1;
    if (!x->head_sent) {
        struct up_head h = {200, NULL, NULL, NULL};
        h.content_type = x->stream ? "text/event-stream" : "application/json";
        x->head_sent = 1;
        x->cb.on_head(x->arg, &h);
    }
    while (x->next < x->n && !x->aborted) {
        int rc = x->cb.on_data(x->arg, x->pieces[x->next], x->lens[x->next]);
        if (x->aborted)
            break;
        if (rc == UP_PAUSE) {
            x->in_tick = 0;
            return; /* offered again on resume */
        }
        x->next++;
        if (x->chunk_delay_ms > 0 && x->next < x->n) {
            schedule(x, x->chunk_delay_ms);
            x->in_tick = 0;
            return;
        }
    }
    if (x->aborted) {
        mock_free(x);
        return;
    }
    {
        void (*done)(void *, enum up_error, const char *) = x->cb.on_done;
        void *a = x->arg;
        mock_free(x);
        done(a, UP_OK, "ok");
    }
}

/* Append a piece (takes ownership of p). */
static int add_piece(struct mock_xfer *x, char *p, size_t cap_pieces)
{
    if (!p || x->n >= cap_pieces) {
        free(p);
        return -1;
    }
    x->pieces[x->n] = p;
    x->lens[x->n] = strlen(p);
    x->n++;
    return 0;
}

static char *fmt(const char *f, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static char *fmt(const char *f, ...)
{
    va_list ap;
    int n;
    char *p;
    va_start(ap, f);
    n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    p = malloc((size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, f);
    vsnprintf(p, (size_t)n + 1, f, ap);
    va_end(ap);
    return p;
}

/* A piece of text as a JSON string (new allocation). */
static char *json_str(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    char *out = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    return out;
}

static long count_words(const char *s)
{
    long n = 0;
    int in = 0;
    for (; *s; s++) {
        int sp = *s == ' ' || *s == '\n' || *s == '\t';
        if (!sp && !in)
            n++;
        in = !sp;
    }
    return n;
}

/* End of piece k of n over text of length len, moved forward past UTF-8
 * continuation bytes so a character is never split. */
static size_t cut(const char *s, size_t len, long k, long n)
{
    size_t e = (size_t)((double)len * (double)k / (double)n);
    while (e < len && ((unsigned char)s[e] & 0xC0) == 0x80)
        e++;
    return e;
}

static int build(struct mock_xfer *x, const struct mock_spec *spec, const struct mock_call *c)
{
    const char *content = spec->content;
    size_t clen = strlen(content);
    long tokens = spec->tokens >= 0 ? spec->tokens : count_words(content);
    long chunks = spec->chunks > 0 ? spec->chunks : 1;
    long created = (long)time(NULL);
    unsigned long long id = ++mock_serial;
    size_t cap = (size_t)chunks + 8;
    char usage[160];
    char *all;

    snprintf(usage, sizeof usage,
             "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}",
             c->prompt_tokens, c->ep == EP_EMBEDDINGS ? 0 : tokens,
             c->prompt_tokens + (c->ep == EP_EMBEDDINGS ? 0 : tokens));
    if ((size_t)chunks > clen && clen > 0)
        chunks = (long)clen;
    x->pieces = calloc(cap, sizeof *x->pieces);
    x->lens = calloc(cap, sizeof *x->lens);
    if (!x->pieces || !x->lens)
        return -1;

    if (c->ep == EP_EMBEDDINGS) {
        /* Deterministic 8-dimensional unit-ish vectors, one per input. */
        size_t n = c->n_inputs ? c->n_inputs : 1, o = 0, bcap = 64 + n * 160;
        char *b = malloc(bcap);
        if (!b)
            return -1;
        o += (size_t)snprintf(b + o, bcap - o, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; i < n && o < bcap; i++) {
            o += (size_t)snprintf(b + o, bcap - o,
                                  "%s{\"object\":\"embedding\",\"index\":%zu,"
                                  "\"embedding\":[",
                                  i ? "," : "", i);
            for (int d = 0; d < 8 && o < bcap; d++)
                o += (size_t)snprintf(b + o, bcap - o, "%s%.4f", d ? "," : "",
                                      (double)((i * 31 + (size_t)d * 7) % 17) / 17.0 - 0.5);
            if (o < bcap)
                o += (size_t)snprintf(b + o, bcap - o, "]}");
        }
        all = o < bcap ? fmt("%s],\"model\":%s,\"usage\":%s,\"system_fingerprint\":"
                             "\"llmroute-mock\"}",
                             b, c->model_json, usage)
                       : NULL;
        free(b);
        return add_piece(x, all, cap);
    }

    if (!c->stream) {
        char *text = json_str(content, clen);
        if (!text)
            return -1;
        if (c->ep == EP_CHAT)
            all = fmt("{\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion\","
                      "\"created\":%ld,\"model\":%s,\"system_fingerprint\":\"llmroute-mock\","
                      "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                      "\"content\":%s},\"finish_reason\":\"stop\"}],\"usage\":%s}",
                      id, created, c->model_json, text, usage);
        else
            all = fmt("{\"id\":\"cmpl-mock-%llu\",\"object\":\"text_completion\","
                      "\"created\":%ld,\"model\":%s,\"system_fingerprint\":\"llmroute-mock\","
                      "\"choices\":[{\"index\":0,\"text\":%s,\"finish_reason\":\"stop\","
                      "\"logprobs\":null}],\"usage\":%s}",
                      id, created, c->model_json, text, usage);
        free(text);
        return add_piece(x, all, cap);
    }

    /* A stream: role, content pieces, finish, optional usage, [DONE]. */
    {
        const char *obj = c->ep == EP_CHAT ? "chat.completion.chunk" : "text_completion";
        const char *idp = c->ep == EP_CHAT ? "chatcmpl" : "cmpl";
        char head[256];
        snprintf(head, sizeof head,
                 "{\"id\":\"%s-mock-%llu\",\"object\":\"%s\",\"created\":%ld,\"model\":", idp, id,
                 obj, created);
        if (c->ep == EP_CHAT &&
            add_piece(x,
                      fmt("data: %s%s,\"system_fingerprint\":\"llmroute-mock\",\"choices\":"
                          "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                          "\"finish_reason\":null}]}\n\n",
                          head, c->model_json),
                      cap))
            return -1;
        for (long k = 0; k < chunks && clen > 0; k++) {
            size_t s = cut(content, clen, k, chunks), e = cut(content, clen, k + 1, chunks);
            char *text = json_str(content + s, e - s);
            char *p;
            if (!text)
                return -1;
            if (c->ep == EP_CHAT)
                p = fmt("data: %s%s,\"system_fingerprint\":\"llmroute-mock\",\"choices\":"
                        "[{\"index\":0,\"delta\":{\"content\":%s},\"finish_reason\":null}]}\n\n",
                        head, c->model_json, text);
            else
                p = fmt("data: %s%s,\"system_fingerprint\":\"llmroute-mock\",\"choices\":"
                        "[{\"index\":0,\"text\":%s,\"finish_reason\":null}]}\n\n",
                        head, c->model_json, text);
            free(text);
            if (add_piece(x, p, cap))
                return -1;
        }
        if (add_piece(x,
                      fmt(c->ep == EP_CHAT
                              ? "data: %s%s,\"system_fingerprint\":\"llmroute-mock\",\"choices\":"
                                "[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
                              : "data: %s%s,\"system_fingerprint\":\"llmroute-mock\",\"choices\":"
                                "[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}]}\n\n",
                          head, c->model_json),
                      cap))
            return -1;
        if (c->include_usage &&
            add_piece(x,
                      fmt("data: %s%s,\"system_fingerprint\":\"llmroute-mock\",\"choices\":[],"
                          "\"usage\":%s}\n\n",
                          head, c->model_json, usage),
                      cap))
            return -1;
        return add_piece(x, fmt("data: [DONE]\n\n"), cap);
    }
}

struct mock_xfer *mock_start(struct event_base *base, const struct mock_spec *spec,
                             const struct mock_call *call, const struct up_callbacks *cb, void *arg)
{
    struct mock_xfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->cb = *cb;
    x->arg = arg;
    x->stream = call->stream && call->ep != EP_EMBEDDINGS;
    x->chunk_delay_ms = spec->chunk_delay_ms;
    x->timer = evtimer_new(base, tick, x);
    if (!x->timer || build(x, spec, call)) {
        mock_free(x);
        return NULL;
    }
    /* Always answer from the loop, never inside the caller's stack. */
    schedule(x, spec->latency_ms);
    return x;
}

void mock_resume(struct mock_xfer *x)
{
    if (x && !evtimer_pending(x->timer, NULL))
        schedule(x, 0);
}

void mock_abort(struct mock_xfer *x)
{
    if (x && x->in_tick) {
        x->aborted = 1;
        return;
    }
    mock_free(x);
}
