/* embedq.c -- one query's vector from the remote embedder, fetched on the
 * event loop without blocking it.
 *
 * A history store made by a remote embedder (a dense store) needs each
 * query's vector in the gateway: to route a smart request (proxy.c), to
 * answer a smart /v1/route (api.c, one fetch per query) and to record a
 * feedback outcome (api.c). All start a fetch here:
 * POST {"model", "input": [text]} (and "dimensions" when configured) to
 * {router.embedding.base_url}/embeddings, the answer capped at 8 MB, checked
 * (JSON, no raw NUL byte in it, one item in data, index 0, its embedding
 * an array of numbers, of the store's dimension once it has one; a 200
 * that is an error object quotes its message, and so does any other
 * status, in the shapes the CLI's embed_http.c reads, else its body) and
 * handed over. A redirect is
 * never followed: it fails the fetch with a message naming the status, the
 * Location and the key to fix. An answer past the cap stops the transfer
 * and fails it as too large.
 *
 * A failure has two messages: the client's names the embedder as
 * router.embedding, never its URL or the transport's words (which name its
 * address: the operator's business, as for a model's upstream), and the log
 * line's has both. The embedder's Retry-After (or retry-after-ms), when it
 * sent one, is handed on in whole seconds for the client's answer.
 *
 * A fetch for a request with a deadline (retry.deadline_ms, from the
 * request's start) gets what is left of it when that is less than
 * router.embedding.timeout_ms: a slow embedder then fails the fetch at the
 * deadline, and the failure says so (deadline_passed), for the caller's
 * answer of an exceeded deadline.
 *
 * The callback runs from a zero-delay timer, never inside the transfer's own
 * callback, so it may free whatever it likes (the request, its exchange).
 * The fetch frees itself after the callback; gw_embed_cancel before that
 * aborts it and no callback runs (a fetch aborted in flight is counted as
 * class "cancelled" in llmroute_embedder_fetches_total); gw_embed_abandon
 * aborts one the gateway no longer needs, counted nowhere.
 *
 * Threads: the event loop thread only.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "gateway.h"
#include "jsonscan.h"
#include "metrics.h"
#include "upstream.h"

#define EMBED_RESP_CAP (8u << 20)
/* How the client's message names the embedder. */
#define EMBED_NAME "the embedding server (router.embedding)"

struct gw_embed {
    struct up_xfer *xfer;
    struct metrics *metrics; /* the gateway's: each fetch's outcome and time */
    double t0;               /* gw_now() at the start */
    struct event *later; /* runs the callback off the transfer's callback */
    const struct gw_conf *conf;
    gw_embed_fn done;
    void *arg;
    char *body;         /* the request */
    char *resp;         /* the answer, capped */
    size_t len, cap;
    long status;
    char location[UP_LOCATION_CAP]; /* a redirect's Location, for the message */
    char encoding[UP_ENCODING_CAP]; /* a Content-Encoding other than identity */
    char retry_after[24];           /* the embedder's hint in whole seconds, or "" */
    int too_big;        /* the answer passed EMBED_RESP_CAP: the fetch has ended */
    long deadline_left_ms;  /* the request's deadline cut the timeout to this, else 0 */
    int deadline_passed;    /* and the fetch timed out at it */
    enum rs_class ok_class; /* a 200's error object's class (embed_parse), or RS_OK */
    float *vec;         /* the vector once parsed (handed to the callback) */
    size_t dim;
    char why[460];      /* else why it failed: for the client */
    char detail[700];   /* the same for the log line, naming the URL */
};

static void embed_free(struct gw_embed *e)
{
    if (e->xfer)
        up_xfer_abort(e->xfer);
    if (e->later)
        event_free(e->later);
    free(e->body);
    free(e->resp);
    free(e->vec);
    free(e);
}

static void embed_head(void *arg, const struct up_head *head)
{
    struct gw_embed *e = arg;
    double ra;
    e->status = head->status;
    snprintf(e->location, sizeof e->location, "%s", head->location ? head->location : "");
    if (head->content_encoding && strcasecmp(head->content_encoding, "identity") != 0) {
        snprintf(e->encoding, sizeof e->encoding, "%s", head->content_encoding);
        for (char *p = e->encoding; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
    }
    /* Read as the model's upstream's hints are, and written as a number of
     * seconds, so nothing of the header's own bytes reaches the client. */
    ra = head->status >= 400 ? rs_retry_hint_seconds(head->retry_after, head->retry_after_ms,
                                                     (double)time(NULL))
                             : -1;
    if (ra >= 0)
        snprintf(e->retry_after, sizeof e->retry_after, "%.0f",
                 ra < 1 ? 1.0 : ra > 86400 ? 86400.0 : ceil(ra));
}

static void set_why(struct gw_embed *e, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void embed_later(evutil_socket_t fd, short what, void *arg);

static int embed_data(void *arg, const char *data, size_t len)
{
    struct gw_embed *e = arg;
    struct timeval now = {0, 0};
    if (e->too_big)
        return UP_CONSUMED; /* ended: the timer stops the transfer */
    if (e->len + len > EMBED_RESP_CAP) {
        /* Not read on (a later, smaller piece would be spliced on to what
         * was kept): the fetch fails now, and the transfer is aborted from
         * the timer, outside the transfer's own callback. */
        e->too_big = 1;
        set_why(e, " sent an answer over the cap of %u bytes", EMBED_RESP_CAP);
        metrics_count_embed(e->metrics, RS_TOO_LARGE, gw_now() - e->t0);
        if (evtimer_add(e->later, &now) != 0)
            e->too_big = 2; /* cannot happen: embed_done answers then */
        return UP_CONSUMED;
    }
    if (gw_reserve(&e->resp, &e->cap, e->len + len + 1, 4096) != 0)
        return UP_CONSUMED;
    memcpy(e->resp + e->len, data, len);
    e->len += len;
    e->resp[e->len] = '\0'; /* a string for an error's message (embed_done) */
    return UP_CONSUMED;
}

/* Why the fetch failed, fmt being what follows the embedder's name: the
 * client's message names it EMBED_NAME, the log line's by its URL. */
static void set_why(struct gw_embed *e, const char *fmt, ...)
{
    char rest[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rest, sizeof rest, fmt, ap);
    va_end(ap);
    snprintf(e->why, sizeof e->why, EMBED_NAME "%s", rest);
    snprintf(e->detail, sizeof e->detail, "the embedding server %s%s", e->conf->embed_url, rest);
}

int gw_vector_has_direction(const float *v, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return s > 0.0 && isfinite(s);
}

int gw_embed_error_message(const char *body, size_t len, char *buf, size_t cap)
{
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const json_t *e = json_object_get(root, "error");
    const char *msg = NULL;
    size_t n;

    if (cap)
        buf[0] = '\0';
    if (json_is_object(e))
        e = json_object_get(e, "message");
    if (json_is_string(e))
        msg = json_string_value(e);
    else if (json_is_string(json_object_get(root, "message")))
        msg = json_string_value(json_object_get(root, "message"));
    else if (json_is_string(json_object_get(root, "detail")))
        msg = json_string_value(json_object_get(root, "detail"));
    if (!msg || cap == 0) {
        json_decref(root);
        return 0;
    }
    n = strlen(msg);
    if (n >= cap) { /* cut before a continuation byte, so between characters */
        n = cap - 1;
        while (n > 0 && ((unsigned char)msg[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(buf, msg, n);
    buf[n] = '\0';
    json_decref(root);
    return 1;
}

/* The vector from an OpenAI-shaped embeddings answer to one input; 0, or
 * -1 with why. The answer must be JSON with exactly one item in "data",
 * index 0 (when given), in the words of the CLI's remote embedder client
 * (src/cli/embed_http.c), which checks the count and every index too. */
static int embed_parse(struct gw_embed *e)
{
    json_error_t je;
    json_t *root, *data, *item, *jx, *v;
    size_t dim = lr_store_dim(e->conf->store), n;
    int rc = -1, line, column;

    char msg[200];

    /* No JSON text holds a raw NUL byte, but jansson reads past one after
     * a number: its vector would be routed with, or stored. */
    if (js_find_nul(e->resp, e->len, &line, &column)) {
        set_why(e, ": the answer is not JSON: a NUL byte at line %d, column %d " JS_NUL_WHY, line,
                column);
        return -1;
    }
    root = json_loadb(e->resp ? e->resp : "", e->len, 0, &je);
    data = json_object_get(root, "data");
    item = json_array_get(data, 0);
    jx = json_object_get(item, "index");
    v = json_object_get(item, "embedding");
    n = json_array_size(v);
    if (!root)
        set_why(e, ": the answer is not JSON (%s)", je.text);
    else if (!json_is_array(data) &&
             (e->ok_class = rs_class_of_ok_body(e->resp, e->len, msg, sizeof msg)) != RS_OK)
        /* An error object with a 200 (as some proxies answer a quota or a
         * rate limit): its message is the reason, and it is classed as an
         * upstream's is. */
        set_why(e, " answered 200 with an error: %s", msg[0] ? msg : "(no message)");
    else if (!json_is_array(data))
        set_why(e, ": the answer has no \"data\" array");
    else if (json_array_size(data) != 1)
        set_why(e, ": sent 1 text, got %zu embeddings", json_array_size(data));
    else if (jx && (!json_is_integer(jx) || json_integer_value(jx) != 0))
        set_why(e, ": data[0].index: expected an integer from 0 to 0");
    else if (!json_is_array(v) || n == 0)
        set_why(e, ": data[0].embedding: expected an array of numbers (a base64 encoding is "
                   "not read)");
    else if (dim && n != dim)
        set_why(e, ": a vector of %zu numbers, but the history store's are %zu", n, dim);
    else if (!(e->vec = malloc(n * sizeof *e->vec)))
        set_why(e, ": out of memory reading the answer");
    else {
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            json_t *x = json_array_get(v, i);
            double d = json_is_number(x) ? json_number_value(x) : NAN;
            /* A number past a float's range would be an infinity here. The
             * library refuses such a vector too, but as the query's fault
             * (400 "the query's embedding is zero or not finite"); here it
             * is the embedding server's, a 502 that names it. */
            if (!isfinite(d) || fabs(d) > 3.0e38) {
                set_why(e, ": data[0].embedding[%zu] is not a finite number", i);
                rc = -1;
                break;
            }
            e->vec[i] = (float)d;
        }
        /* No direction: the library would refuse it as the query's fault,
         * a 400 for a feedback and for a route. It is the embedding
         * server's, a 502 like a wrong dimension. */
        if (rc == 0 && !gw_vector_has_direction(e->vec, n)) {
            set_why(e,
                    ": data[0].embedding is a zero vector (%zu numbers, none of them away "
                    "from 0), which points nowhere to compare",
                    n);
            rc = -1;
        }
        e->dim = n;
    }
    if (rc) {
        free(e->vec);
        e->vec = NULL;
        e->dim = 0;
    }
    json_decref(root);
    return rc;
}

static void embed_later(evutil_socket_t fd, short what, void *arg)
{
    struct gw_embed *e = arg;
    float *vec = e->vec;
    struct gw_embed_failure f = {e->why, e->detail, e->retry_after[0] ? e->retry_after : NULL,
                                 e->deadline_passed};
    (void)fd;
    (void)what;
    e->vec = NULL; /* the callback owns it now */
    e->done(e->arg, vec, e->dim, vec ? NULL : &f);
    embed_free(e); /* aborts a transfer still going (an answer over the cap) */
}

static void embed_done(void *arg, enum up_error err, const char *message)
{
    struct gw_embed *e = arg;
    struct timeval now = {0, 0};
    enum rs_class cls = RS_OK;

    e->xfer = NULL;
    if (e->too_big == 1)
        return; /* failed, counted and answered already (embed_data) */
    if (e->too_big)
        ; /* its timer could not be set: answered now, counted already */
    else if ((err == UP_ETIMEOUT || err == UP_ECONNTIMEOUT) && e->deadline_left_ms) {
        /* Cut at the request's deadline, not at the embedder's own timeout. */
        e->deadline_passed = 1;
        set_why(e, " did not answer within the %ld ms left of the request's retry.deadline_ms",
                e->deadline_left_ms);
        snprintf(e->detail + strlen(e->detail), sizeof e->detail - strlen(e->detail), ": %s",
                 message ? message : up_error_name(err));
    } else if (err == UP_ETIMEOUT || err == UP_ECONNTIMEOUT) {
        set_why(e, " did not answer within %ld ms (router.embedding.timeout_ms)",
                e->conf->embed->timeout_ms);
        snprintf(e->detail + strlen(e->detail), sizeof e->detail - strlen(e->detail), ": %s",
                 message ? message : up_error_name(err));
    } else if (err != UP_OK) {
        /* The transport's words name the embedder's address: the log has them. */
        set_why(e, " failed (%s); the gateway's log has the reason", up_error_name(err));
        snprintf(e->detail, sizeof e->detail, "the embedding server %s failed: %s",
                 e->conf->embed_url, message ? message : up_error_name(err));
    } else if (e->status >= 300 && e->status < 400) {
        /* Never followed (it would resend the query elsewhere): the base_url is wrong. */
        char where[GW_REDIRECT_PHRASE_CAP];
        gw_redirect_phrase(where, sizeof where, e->location);
        set_why(e,
                " answered %ld, %s; redirects are not followed: check "
                "router.embedding.base_url",
                e->status, where);
    } else if (e->encoding[0])
        set_why(e,
                " answered %ld with Content-Encoding '%.48s', which the gateway does not "
                "decode (it asks for identity)",
                e->status, e->encoding);
    else if (e->status != 200) {
        /* An error object's message, as the CLI names it (embed_http.c);
         * any other body's first 200 bytes, not cut inside a character. */
        char msg[201];
        size_t n = e->len < 200 ? e->len : 200;
        while (n < e->len && n > 0 && ((unsigned char)e->resp[n] & 0xC0) == 0x80)
            n--;
        if (gw_embed_error_message(e->resp, e->len, msg, sizeof msg))
            set_why(e, " answered %ld: %s", e->status, msg);
        else if (e->len == 0)
            set_why(e, " answered %ld: (empty body)", e->status);
        else
            set_why(e, " answered %ld: %.*s", e->status, (int)n, e->resp);
    } else
        embed_parse(e);
    if (e->too_big) {
        embed_later(-1, 0, e);
        return;
    }
    /* Classed as an upstream attempt is (llmroute_upstream_attempts_total):
     * a transport failure by its kind, an HTTP status by its code, and an
     * answer that gives no vector is a bad response. */
    if (err != UP_OK)
        cls = rs_class_of_transport(err, e->status != 0);
    else if (e->status >= 300)
        /* A 429's pause, read in embed_head (Retry-After or retry-after-ms),
         * makes it rate_limited, as an upstream's is. */
        cls = rs_class_of_status(e->status, e->resp, e->len,
                                 e->retry_after[0] ? e->retry_after : NULL);
    else if (!e->vec)
        cls = e->ok_class != RS_OK ? e->ok_class : RS_BAD_RESPONSE;
    metrics_count_embed(e->metrics, cls, gw_now() - e->t0);
    if (evtimer_add(e->later, &now) != 0) {
        /* Cannot happen with a valid timer; answer now rather than never. */
        embed_later(-1, 0, e);
    }
}

static const struct up_callbacks embed_cbs = {embed_head, embed_data, embed_done};

struct gw_embed *gw_embed_start(struct gw *gw, const struct gw_conf *conf, const char *text,
                                double deadline, gw_embed_fn done, void *arg)
{
    const struct lr_embedding_info *info = conf->embed;
    struct gw_embed *e = calloc(1, sizeof *e);
    json_t *body = json_object();
    struct up_request r;

    if (!e || !body || !info)
        goto fail;
    e->conf = conf;
    e->metrics = gw->metrics;
    e->t0 = gw_now();
    e->done = done;
    e->arg = arg;
    json_object_set_new(body, "model", json_string(info->model));
    /* Cut as import cut the store's texts (router.embedding.max_input_chars). */
    json_object_set_new(body, "input",
                        json_pack("[s%]", text, lr_embedding_input_len(info, text, strlen(text))));
    if (info->dimensions > 0)
        json_object_set_new(body, "dimensions", json_integer(info->dimensions));
    e->body = json_dumps(body, JSON_COMPACT);
    e->later = evtimer_new(gw->base, embed_later, e);
    if (!e->body || !e->later)
        goto fail;
    json_decref(body);
    memset(&r, 0, sizeof r);
    r.url = conf->embed_url;
    r.authorization = conf->embed_auth;
    r.body = e->body;
    r.body_len = strlen(e->body);
    r.connect_timeout_ms = info->timeout_ms;
    r.timeout_ms = info->timeout_ms;
    if (deadline > 0) {
        /* Rounded up, and at least 1 ms (0 would be no timeout at all): the
         * fetch ends at the deadline, not before it. */
        double left = ceil((deadline - e->t0) * 1000);
        if (left < (double)info->timeout_ms) {
            e->deadline_left_ms = left < 1 ? 1 : (long)left;
            r.connect_timeout_ms = r.timeout_ms = e->deadline_left_ms;
        }
    }
    e->xfer = up_xfer_start(gw->upstream, &r, &embed_cbs, e);
    if (!e->xfer) {
        embed_free(e);
        return NULL;
    }
    return e;
fail:
    json_decref(body);
    if (e)
        embed_free(e);
    return NULL;
}

void gw_embed_cancel(struct gw_embed *e)
{
    if (!e)
        return;
    /* Still in flight: its client went away (a fetch that has ended was
     * counted by its class in embed_done already, or as too large). */
    if (e->xfer && !e->too_big)
        metrics_count_embed_cancelled(e->metrics);
    embed_free(e);
}

void gw_embed_abandon(struct gw_embed *e)
{
    if (e)
        embed_free(e);
}
