/* proxy.c -- forwarding POST /v1/chat/completions, /v1/completions and
 * /v1/embeddings: one `exchange` per client request.
 *
 *   parse the body once (jansson) for model / models / route / stream /
 *   stream_options and the query text -> a ranking from the router ->
 *   attempt on ranking[attempt]: rewrite the client's bytes (model spliced,
 *   extension members cut) and send them upstream (or to the mock) ->
 *   relay: a stream chunk by chunk with backpressure, anything else buffered
 *   up to a cap and sent whole -> usage, metrics, one log line.
 *
 * The ranking's tail is the fallback order: start_attempt() takes any index
 * into it, and every failure before the first byte reaches the client goes
 * through attempt_failed(), which is where retries and fallback belong. Today
 * it reports the failure to the client.
 *
 * Threads: the event loop thread only. An exchange is freed exactly once, by
 * finish(), after the client was answered or went away.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "gateway.h"
#include "jsonscan.h"
#include "metrics.h"
#include "mock.h"
#include "upstream.h"

#define RANK_CAP 64
#define SSE_LINE_CAP (1u << 20)

static const char *const extension_members[] = {"models", "route", NULL};

struct exchange {
    struct gw *gw;
    struct gw_conf *conf;
    struct hs_req *req; /* NULL once the client is gone */
    enum gw_endpoint ep;
    char id[72];
    const char *route;    /* the configured route's name, or "" */
    const char *strategy; /* for headers and logs */
    struct lr_candidate ranking[RANK_CAP];
    size_t n_ranked, attempt;
    int model; /* config index of the model tried, or -1 */
    long input_tokens;
    double est_quality, est_cost;
    int stream, include_usage;
    size_t n_inputs;

    char *fwd; /* the body sent upstream */
    size_t fwd_len;
    char *url;
    struct up_xfer *xfer;
    struct mock_xfer *mock;
    struct model_stats *ms;

    long up_status;
    char up_ctype[128];
    int streaming; /* the client has the response head of a stream */
    int paused;
    char *resp; /* a buffered (non-stream) upstream body */
    size_t resp_len, resp_cap;
    char *line; /* the SSE line being scanned for usage */
    size_t line_len;
    int line_overflow;

    long prompt_tokens, completion_tokens; /* -1: unknown */
    double t_start, t_up_start, t_first, t_up_end;
    const char *error; /* why it failed, for the log */
};

static void finish(struct exchange *ex, int status);

/* ==== Answering the client ==== */

static void add_headers(struct exchange *ex)
{
    char v[64];
    hs_resp_header(ex->req, "x-request-id", ex->id);
    if (ex->model >= 0) {
        hs_resp_header(ex->req, "x-llmroute-model", ex->conf->models[ex->model].info->name);
        hs_resp_header(ex->req, "x-llmroute-strategy", ex->strategy);
        if (ex->route[0])
            hs_resp_header(ex->req, "x-llmroute-route", ex->route);
        if (!isnan(ex->est_quality)) {
            snprintf(v, sizeof v, "%.4g", ex->est_quality);
            hs_resp_header(ex->req, "x-llmroute-predicted-quality", v);
        }
        if (!isnan(ex->est_cost)) {
            snprintf(v, sizeof v, "%.6g", ex->est_cost);
            hs_resp_header(ex->req, "x-llmroute-estimated-cost", v);
        }
    }
}

/* Refuse the request with an OpenAI-shaped error and finish. */
static void fail_with(struct exchange *ex, int status, const char *param, const char *code,
                      const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static void fail_with(struct exchange *ex, int status, const char *param, const char *code,
                      const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ex->req) {
        add_headers(ex);
        gw_send_error(ex->req, status, param, code, "%s", msg);
        ex->req = NULL;
    }
    ex->error = code ? code : gw_error_code(status);
    finish(ex, status);
}

/* ==== Usage ==== */

static void read_usage(struct exchange *ex, json_t *usage)
{
    json_t *p = json_object_get(usage, "prompt_tokens");
    json_t *c = json_object_get(usage, "completion_tokens");
    if (json_is_integer(p) && json_integer_value(p) >= 0)
        ex->prompt_tokens = (long)json_integer_value(p);
    if (json_is_integer(c) && json_integer_value(c) >= 0)
        ex->completion_tokens = (long)json_integer_value(c);
    else if (ex->prompt_tokens >= 0 && ex->ep == EP_EMBEDDINGS)
        ex->completion_tokens = 0;
}

/* The `usage` member of a buffered JSON body, found by the scanner so the
 * body itself is never parsed whole. */
static void usage_from_body(struct exchange *ex)
{
    struct js_member m[64];
    size_t n = 0;
    if (ex->resp_len == 0 || js_scan_object(ex->resp, ex->resp_len, m, 64, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (js_key_equals(ex->resp, &m[i], "usage")) {
            json_t *u =
                json_loadb(ex->resp + m[i].value_start, m[i].value_end - m[i].value_start, 0, NULL);
            if (json_is_object(u))
                read_usage(ex, u);
            json_decref(u);
            return;
        }
    }
}

/* One complete SSE line: a `data:` line whose usage is an object is parsed. */
static void sse_line(struct exchange *ex, const char *l, size_t n)
{
    const char *u, *p, *end = l + n;
    json_t *j;
    if (n < 6 || memcmp(l, "data:", 5) != 0)
        return;
    /* Most chunks carry no usage, or "usage": null; skip those cheaply. */
    u = NULL;
    for (p = l; p + 7 <= end; p++) {
        p = memchr(p, '"', (size_t)(end - p));
        if (!p || p + 7 > end)
            return;
        if (memcmp(p, "\"usage\"", 7) == 0) {
            u = p + 7;
            break;
        }
    }
    if (!u)
        return;
    while (u < end && (*u == ' ' || *u == ':' || *u == '\t'))
        u++;
    if (u >= end || *u != '{')
        return;
    p = l + 5;
    while (p < end && *p == ' ')
        p++;
    j = json_loadb(p, (size_t)(end - p), 0, NULL);
    if (json_is_object(j) && json_is_object(json_object_get(j, "usage")))
        read_usage(ex, json_object_get(j, "usage"));
    json_decref(j);
}

static void sse_scan(struct exchange *ex, const char *data, size_t len)
{
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t seg = nl ? (size_t)(nl - data) : len;
        if (!ex->line_overflow) {
            if (ex->line_len + seg > SSE_LINE_CAP) {
                ex->line_overflow = 1; /* a line this long is relayed, not read */
            } else {
                if (!ex->line) {
                    ex->line = malloc(SSE_LINE_CAP);
                    if (!ex->line)
                        ex->line_overflow = 1;
                }
                if (ex->line) {
                    memcpy(ex->line + ex->line_len, data, seg);
                    ex->line_len += seg;
                }
            }
        }
        if (!nl)
            return;
        if (!ex->line_overflow) {
            size_t n = ex->line_len;
            if (n && ex->line[n - 1] == '\r')
                n--;
            sse_line(ex, ex->line, n);
        }
        ex->line_len = 0;
        ex->line_overflow = 0;
        data = nl + 1;
        len -= seg + 1;
    }
}

/* ==== Upstream callbacks ==== */

static void on_head(void *arg, const struct up_head *head)
{
    struct exchange *ex = arg;
    long status = head->status;
    const char *content_type = head->content_type;
    ex->up_status = status;
    snprintf(ex->up_ctype, sizeof ex->up_ctype, "%s",
             content_type ? content_type : "application/json");
    if (ex->req && ex->stream && status >= 200 && status < 300 && content_type &&
        strncasecmp(content_type, "text/event-stream", 17) == 0) {
        add_headers(ex);
        hs_resp_header(ex->req, "Cache-Control", "no-cache");
        hs_stream_begin(ex->req, (int)status, content_type);
        ex->streaming = 1;
    }
}

static void stop_transfer(struct exchange *ex)
{
    if (ex->xfer) {
        up_xfer_abort(ex->xfer);
        ex->xfer = NULL;
    }
    if (ex->mock) {
        mock_abort(ex->mock);
        ex->mock = NULL;
    }
}

static void attempt_ended(struct exchange *ex)
{
    ex->t_up_end = gw_now();
    if (ex->ms) {
        ex->ms->in_flight--;
        hist_observe(&ex->ms->upstream_latency, ex->t_up_end - ex->t_up_start);
        if (ex->streaming && ex->t_first > 0)
            hist_observe(&ex->ms->ttft, ex->t_first - ex->t_up_start);
    }
}

static int on_data(void *arg, const char *data, size_t len)
{
    struct exchange *ex = arg;
    if (ex->t_first == 0)
        ex->t_first = gw_now();
    if (ex->streaming) {
        if (!ex->req)
            return UP_CONSUMED;
        /* Backpressure: hold the upstream while the client is behind. */
        if (hs_req_pending_output(ex->req) > ex->conf->set.stream_buffer_bytes) {
            ex->paused = 1;
            return UP_PAUSE;
        }
        sse_scan(ex, data, len);
        hs_stream_write(ex->req, data, len);
        return UP_CONSUMED;
    }
    if (ex->resp_len + len > ex->conf->set.max_response_bytes) {
        stop_transfer(ex);
        attempt_ended(ex);
        fail_with(ex, 502, NULL, "upstream_response_too_large",
                  "the upstream's response is larger than server.max_response_bytes (%zu)",
                  ex->conf->set.max_response_bytes);
        return UP_CONSUMED;
    }
    if (ex->resp_len + len + 1 > ex->resp_cap) {
        size_t cap = ex->resp_cap ? ex->resp_cap : 4096;
        char *g;
        while (cap < ex->resp_len + len + 1)
            cap *= 2;
        g = realloc(ex->resp, cap);
        if (!g) {
            stop_transfer(ex);
            attempt_ended(ex);
            fail_with(ex, 500, NULL, "out_of_memory", "out of memory buffering the response");
            return UP_CONSUMED;
        }
        ex->resp = g;
        ex->resp_cap = cap;
    }
    memcpy(ex->resp + ex->resp_len, data, len);
    ex->resp_len += len;
    return UP_CONSUMED;
}

/* A failure before anything reached the client. This is where a retry of
 * the same model, or the next model in the ranking, will be decided. */
static void attempt_failed(struct exchange *ex, enum up_error err, const char *message)
{
    const char *name = ex->conf->models[ex->model].info->name;
    if (err == UP_ETIMEOUT || err == UP_ECONNTIMEOUT)
        fail_with(ex, 504, NULL, "upstream_timeout", "the upstream for model '%s' timed out: %s",
                  name, message);
    else
        fail_with(ex, 502, NULL, "upstream_unreachable",
                  "the upstream for model '%s' could not be reached: %s", name, message);
}

static void on_done(void *arg, enum up_error err, const char *message)
{
    struct exchange *ex = arg;
    ex->xfer = NULL;
    ex->mock = NULL;
    attempt_ended(ex);
    if (err != UP_OK) {
        if (!ex->streaming) {
            attempt_failed(ex, err, message);
            return;
        }
        /* Mid-stream: the client must see an error, never a clean end. */
        if (ex->req) {
            char ev[900], body[800];
            size_t n = gw_error_format(body, sizeof body, message, "upstream_error", NULL,
                                       "stream_interrupted");
            int k = snprintf(ev, sizeof ev, "data: %.*s\n\n", (int)n, body);
            hs_stream_write(ex->req, ev, k > 0 ? (size_t)k : 0);
            hs_stream_end(ex->req);
            ex->req = NULL;
        }
        ex->error = "stream_interrupted";
        finish(ex, (int)ex->up_status);
        return;
    }
    if (ex->streaming) {
        if (ex->req)
            hs_stream_end(ex->req);
        ex->req = NULL;
        finish(ex, (int)ex->up_status);
        return;
    }
    if (ex->up_status >= 200 && ex->up_status < 300)
        usage_from_body(ex);
    if (ex->req) {
        add_headers(ex);
        hs_respond(ex->req, (int)ex->up_status, ex->up_ctype, ex->resp ? ex->resp : "",
                   ex->resp_len);
        ex->req = NULL;
    }
    finish(ex, (int)ex->up_status);
}

static const struct up_callbacks upstream_cbs = {on_head, on_data, on_done};

/* ==== Client callbacks ==== */

static void on_drain(void *arg)
{
    struct exchange *ex = arg;
    if (!ex->paused)
        return;
    ex->paused = 0;
    if (ex->xfer)
        up_xfer_resume(ex->xfer);
    else if (ex->mock)
        mock_resume(ex->mock);
}

static void on_abort(void *arg)
{
    struct exchange *ex = arg;
    ex->req = NULL;
    if (ex->xfer || ex->mock) {
        stop_transfer(ex);
        attempt_ended(ex);
    }
    ex->error = "client_closed";
    finish(ex, 499);
}

/* ==== Attempts ==== */

static const char *endpoint_path(enum gw_endpoint ep)
{
    switch (ep) {
    case EP_CHAT:
        return "/v1/chat/completions";
    case EP_COMPLETIONS:
        return "/v1/completions";
    default:
        return "/v1/embeddings";
    }
}

static void start_attempt(struct exchange *ex)
{
    const struct gw_model *gm;
    struct js_rewrite rw;
    const char *body;
    size_t len;
    int rc;

    ex->model = ex->ranking[ex->attempt].index;
    gm = &ex->conf->models[ex->model];
    body = hs_req_body(ex->req, &len);
    free(ex->fwd);
    ex->fwd = NULL;
    rw.model_json = gm->model_json;
    rw.remove = extension_members;
    rc = js_rewrite_body(body, len, &rw, &ex->fwd, &ex->fwd_len);
    if (rc) {
        fail_with(ex, rc == -2 ? 500 : 400, NULL, NULL,
                  rc == -2 ? "out of memory preparing the upstream request"
                           : "the request body could not be scanned for forwarding");
        return;
    }
    ex->ms = metrics_model(ex->gw->metrics, gm->info->name);
    if (ex->ms)
        ex->ms->in_flight++;
    ex->t_up_start = gw_now();
    ex->t_first = 0;
    ex->up_status = 0;
    if (gm->is_mock) {
        struct mock_call call;
        call.ep = ex->ep;
        call.stream = ex->stream;
        call.include_usage = ex->include_usage;
        call.model_json = gm->model_json;
        call.prompt_tokens = ex->input_tokens;
        call.n_inputs = ex->n_inputs;
        ex->mock = mock_start(ex->gw->base, &gm->mock, &call, &upstream_cbs, ex);
        if (!ex->mock) {
            attempt_ended(ex);
            fail_with(ex, 500, NULL, "out_of_memory", "out of memory starting the mock");
        }
        return;
    } else {
        struct up_request ur;
        size_t ul = strlen(gm->base_url) + 32;
        free(ex->url);
        ex->url = malloc(ul);
        if (!ex->url) {
            attempt_ended(ex);
            fail_with(ex, 500, NULL, "out_of_memory", "out of memory");
            return;
        }
        /* base_url is the API root ("http://host/v1"): drop our "/v1". */
        snprintf(ex->url, ul, "%s%s", gm->base_url, endpoint_path(ex->ep) + 3);
        ur.url = ex->url;
        ur.authorization = gm->auth;
        ur.body = ex->fwd;
        ur.body_len = ex->fwd_len;
        ur.connect_timeout_ms = ex->conf->set.connect_timeout_ms;
        ur.timeout_ms = ex->conf->set.upstream_timeout_ms;
        ex->xfer = up_xfer_start(ex->gw->upstream, &ur, &upstream_cbs, ex);
        if (!ex->xfer) {
            attempt_ended(ex);
            fail_with(ex, 500, NULL, "out_of_memory", "could not start the upstream transfer");
        }
    }
}

/* ==== The end of an exchange ==== */

static void finish(struct exchange *ex, int status)
{
    struct gw *gw = ex->gw;
    double now = gw_now(), total = now - ex->t_start;
    double up =
        ex->t_up_start > 0 && ex->t_up_end >= ex->t_up_start ? ex->t_up_end - ex->t_up_start : 0;
    const char *model = ex->model >= 0 ? ex->conf->models[ex->model].info->name : "";
    const struct lr_model_info *mi = ex->model >= 0 ? ex->conf->models[ex->model].info : NULL;
    double cost = NAN;
    struct gw_log log;

    if (mi && ex->prompt_tokens >= 0 && ex->completion_tokens >= 0 &&
        !isnan(mi->cost_per_input_token) && !isnan(mi->cost_per_output_token))
        cost = (double)ex->prompt_tokens * mi->cost_per_input_token +
               (double)ex->completion_tokens * mi->cost_per_output_token;
    metrics_count_request(gw->metrics, ex->route, model, status);
    if (ex->ms) {
        if (ex->prompt_tokens > 0)
            ex->ms->tokens_in += (uint64_t)ex->prompt_tokens;
        if (ex->completion_tokens > 0)
            ex->ms->tokens_out += (uint64_t)ex->completion_tokens;
        if (!isnan(cost))
            ex->ms->actual_cost += cost;
        if (!isnan(ex->est_cost))
            ex->ms->estimated_cost += ex->est_cost;
    }
    metrics_observe_duration(gw->metrics, total);
    metrics_observe_overhead(gw->metrics, total - up > 0 ? total - up : 0);

    memset(&log, 0, sizeof log);
    log.id = ex->id;
    log.method = "POST";
    log.path = endpoint_path(ex->ep);
    log.route = ex->route;
    log.model = model;
    log.strategy = ex->model >= 0 ? ex->strategy : "";
    log.status = status;
    log.stream = ex->stream;
    log.latency_ms = total * 1000;
    log.upstream_ms = ex->t_up_start > 0 ? up * 1000 : -1;
    log.ttft_ms = ex->stream && ex->t_first > 0 ? (ex->t_first - ex->t_up_start) * 1000 : -1;
    log.tokens_in = ex->prompt_tokens;
    log.tokens_out = ex->completion_tokens;
    log.cost = cost;
    log.error = ex->error;
    gw_log_request(gw, &log);

    gw_conf_unref(ex->conf);
    free(ex->fwd);
    free(ex->url);
    free(ex->resp);
    free(ex->line);
    free(ex);
}

/* ==== Reading the request ==== */

struct text {
    char *p;
    size_t len, cap;
};

static int text_add(struct text *t, const char *s, size_t n, const char *sep)
{
    size_t sl = t->len && sep ? strlen(sep) : 0;
    if (t->len + sl + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        char *g;
        while (cap < t->len + sl + n + 1)
            cap *= 2;
        g = realloc(t->p, cap);
        if (!g)
            return -1;
        t->p = g;
        t->cap = cap;
    }
    memcpy(t->p + t->len, sep ? sep : "", sl);
    t->len += sl;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
    return 0;
}

/* The text of a message's content: a string, or the text parts of an array. */
static int content_text(json_t *content, struct text *t)
{
    size_t i;
    json_t *part;
    if (json_is_string(content))
        return text_add(t, json_string_value(content), json_string_length(content), NULL);
    json_array_foreach(content, i, part)
    {
        json_t *tx = json_object_get(part, "text");
        if (json_is_string(tx) && text_add(t, json_string_value(tx), json_string_length(tx), " "))
            return -1;
    }
    return 0;
}

/* Validate the fields the gateway reads and extract the query text. Returns
 * 0, or refuses the request (and finishes the exchange) and returns -1. */
static int read_fields(struct exchange *ex, json_t *root, struct text *query)
{
    json_t *stream = json_object_get(root, "stream");
    json_t *so = json_object_get(root, "stream_options");
    size_t i;

    if (stream && !json_is_null(stream)) {
        if (!json_is_boolean(stream)) {
            fail_with(ex, 400, "stream", "invalid_type", "stream: expected a boolean");
            return -1;
        }
        ex->stream = json_is_true(stream) && ex->ep != EP_EMBEDDINGS;
    }
    if (so && !json_is_null(so)) {
        json_t *iu = json_object_get(so, "include_usage");
        if (!json_is_object(so)) {
            fail_with(ex, 400, "stream_options", "invalid_type",
                      "stream_options: expected an object");
            return -1;
        }
        if (iu && !json_is_boolean(iu)) {
            fail_with(ex, 400, "stream_options.include_usage", "invalid_type",
                      "stream_options.include_usage: expected a boolean");
            return -1;
        }
        ex->include_usage = json_is_true(iu);
    }

    if (ex->ep == EP_CHAT) {
        json_t *messages = json_object_get(root, "messages"), *msg;
        int all = strcmp(ex->conf->query_text, "all_user") == 0;
        json_t *last_user = NULL;
        if (!messages) {
            fail_with(ex, 400, "messages", "missing_required_parameter",
                      "messages: a required field is missing");
            return -1;
        }
        if (!json_is_array(messages)) {
            fail_with(ex, 400, "messages", "invalid_type", "messages: expected an array");
            return -1;
        }
        json_array_foreach(messages, i, msg)
        {
            json_t *role = json_object_get(msg, "role");
            char param[64];
            if (!json_is_object(msg)) {
                snprintf(param, sizeof param, "messages[%zu]", i);
                fail_with(ex, 400, param, "invalid_type", "%s: expected an object", param);
                return -1;
            }
            if (!json_is_string(role)) {
                snprintf(param, sizeof param, "messages[%zu].role", i);
                fail_with(ex, 400, param, role ? "invalid_type" : "missing_required_parameter",
                          "%s: expected a string", param);
                return -1;
            }
            if (strcmp(json_string_value(role), "user") != 0)
                continue;
            if (all) {
                struct text part = {0};
                int rc = content_text(json_object_get(msg, "content"), &part);
                if (!rc && part.len)
                    rc = text_add(query, part.p, part.len, "\n");
                free(part.p);
                if (rc)
                    goto oom;
            } else {
                last_user = msg;
            }
        }
        if (last_user && content_text(json_object_get(last_user, "content"), query))
            goto oom;
    } else if (ex->ep == EP_COMPLETIONS) {
        json_t *prompt = json_object_get(root, "prompt"), *p;
        if (json_is_string(prompt)) {
            if (text_add(query, json_string_value(prompt), json_string_length(prompt), NULL))
                goto oom;
        } else if (json_is_array(prompt)) {
            json_array_foreach(prompt, i, p) if (json_is_string(p) &&
                                                 text_add(query, json_string_value(p),
                                                          json_string_length(p), "\n")) goto oom;
        } else if (prompt && !json_is_null(prompt)) {
            fail_with(ex, 400, "prompt", "invalid_type", "prompt: expected a string or an array");
            return -1;
        }
    } else {
        json_t *input = json_object_get(root, "input"), *p;
        if (!input) {
            fail_with(ex, 400, "input", "missing_required_parameter",
                      "input: a required field is missing");
            return -1;
        }
        if (json_is_string(input)) {
            ex->n_inputs = 1;
            if (text_add(query, json_string_value(input), json_string_length(input), NULL))
                goto oom;
        } else if (json_is_array(input)) {
            ex->n_inputs = json_array_size(input);
            json_array_foreach(input, i, p) if (json_is_string(p) &&
                                                text_add(query, json_string_value(p),
                                                         json_string_length(p), "\n")) goto oom;
        } else {
            fail_with(ex, 400, "input", "invalid_type", "input: expected a string or an array");
            return -1;
        }
    }
    return 0;
oom:
    fail_with(ex, 500, NULL, "out_of_memory", "out of memory reading the request");
    return -1;
}

/* Decide the ranking from model / models / route. Returns 0, or refuses the
 * request (and finishes the exchange) and returns -1. */
static int decide(struct exchange *ex, json_t *root, const char *query)
{
    const struct lr_config *cfg = ex->conf->cfg;
    json_t *jmodel = json_object_get(root, "model");
    json_t *jmodels = json_object_get(root, "models");
    json_t *jroute = json_object_get(root, "route");
    const char *model = NULL, *strategy = NULL;
    const char *names_stack[RANK_CAP], **names = NULL;
    const struct lr_route_info *ri = NULL;
    double requirement = NAN;
    struct lr_router *router;
    struct lr_request rq;
    struct lr_decision d;
    struct lr_error err = {0};
    size_t n_names = 0;
    int rc, idx;

    if (jmodel && !json_is_string(jmodel)) {
        fail_with(ex, 400, "model", "invalid_type", "model: expected a string");
        return -1;
    }
    model = jmodel ? json_string_value(jmodel) : NULL;
    if (jmodels) {
        size_t i;
        json_t *v;
        if (!json_is_array(jmodels) || json_array_size(jmodels) == 0) {
            fail_with(ex, 400, "models", "invalid_type",
                      "models: expected a non-empty array of model names");
            return -1;
        }
        n_names = json_array_size(jmodels);
        if (n_names > RANK_CAP) {
            fail_with(ex, 400, "models", "invalid_value", "models: at most %d candidates, got %zu",
                      RANK_CAP, n_names);
            return -1;
        }
        names = names_stack;
        json_array_foreach(jmodels, i, v)
        {
            if (!json_is_string(v)) {
                fail_with(ex, 400, "models", "invalid_type", "models[%zu]: expected a string", i);
                return -1;
            }
            names[i] = json_string_value(v);
        }
    }
    if (jroute) {
        json_t *s = json_object_get(jroute, "strategy");
        json_t *pr = json_object_get(jroute, "performance_requirement");
        if (!json_is_object(jroute)) {
            fail_with(ex, 400, "route", "invalid_type", "route: expected an object");
            return -1;
        }
        if (s && !json_is_string(s)) {
            fail_with(ex, 400, "route.strategy", "invalid_type",
                      "route.strategy: expected a string");
            return -1;
        }
        strategy = s ? json_string_value(s) : NULL;
        if (pr && (!json_is_number(pr) || json_number_value(pr) < 0 || json_number_value(pr) > 1)) {
            fail_with(ex, 400, "route.performance_requirement", "invalid_value",
                      "route.performance_requirement: expected a number from 0 to 1");
            return -1;
        }
        if (pr)
            requirement = json_number_value(pr);
    }
    if (!model && !names) {
        fail_with(ex, 400, "model", "missing_required_parameter",
                  "model: a required field is missing (name a configured model or route)");
        return -1;
    }

    idx = model ? lr_config_model_index(cfg, model) : -1;
    if (model && idx < 0) {
        int r = lr_config_route_index(cfg, model);
        if (r < 0) {
            fail_with(ex, 404, "model", "model_not_found",
                      "The model '%s' does not exist: it is neither a configured model nor a "
                      "route",
                      model);
            return -1;
        }
        ri = lr_config_route(cfg, (size_t)r);
        ex->route = ri->name;
    }
    if (idx >= 0 && !names) {
        /* A model named directly: no routing decision to make. */
        ex->strategy = "direct";
        ex->ranking[0].index = idx;
        ex->ranking[0].predicted_quality = NAN;
        ex->ranking[0].estimated_cost = NAN;
        ex->n_ranked = 1;
        ex->input_tokens = lr_estimate_tokens(query, strlen(query));
        return 0;
    }

    if (!strategy && ri)
        strategy = ri->strategy;
    if (isnan(requirement) && ri)
        requirement = ri->performance_requirement;
    router = gw_conf_router(ex->conf, strategy, &err);
    if (!router) {
        fail_with(ex, 400, "route.strategy", "invalid_value", "route.strategy: %s", err.message);
        return -1;
    }
    lr_request_init(&rq);
    if (names) {
        rq.models = names;
        rq.n_models = n_names;
    } else if (ri && ri->n_models) {
        rq.model_indices = ri->models;
        rq.n_models = ri->n_models;
    }
    rq.query = query;
    rq.performance_requirement = requirement;
    memset(&d, 0, sizeof d);
    d.ranking = ex->ranking;
    d.ranking_cap = RANK_CAP;
    rc = lr_router_route(router, &rq, &d, &err);
    if (rc == LR_ENOMODEL) {
        fail_with(ex, 404, names ? "models" : "model", "model_not_found", "%s", err.message);
        return -1;
    }
    if (rc) {
        fail_with(ex, rc == LR_ENOMEM ? 500 : 400, names ? "models" : "model",
                  rc == LR_ENOMEM ? "out_of_memory" : "routing_failed", "%s", err.message);
        return -1;
    }
    ex->n_ranked = d.n_ranked;
    ex->strategy = lr_router_strategy(router);
    ex->est_quality = d.predicted_quality;
    ex->est_cost = d.estimated_cost;
    ex->input_tokens = d.input_tokens;
    /* A route's explicit fallbacks extend the ranking's tail. */
    for (size_t f = 0; ri && f < ri->n_fallbacks && ex->n_ranked < RANK_CAP; f++) {
        size_t k = 0;
        while (k < ex->n_ranked && ex->ranking[k].index != ri->fallbacks[f])
            k++;
        if (k == ex->n_ranked) {
            ex->ranking[k].index = ri->fallbacks[f];
            ex->ranking[k].predicted_quality = NAN;
            ex->ranking[k].predicted_output_tokens = NAN;
            ex->ranking[k].estimated_cost = NAN;
            ex->n_ranked++;
        }
    }
    return 0;
}

void proxy_handle(struct gw *gw, struct hs_req *req, enum gw_endpoint ep, const char *id)
{
    struct exchange *ex = calloc(1, sizeof *ex);
    struct text query = {0};
    json_error_t je;
    json_t *root;
    const char *body;
    size_t len;

    if (!ex) {
        gw_send_error(req, 500, NULL, "out_of_memory", "out of memory");
        return;
    }
    ex->gw = gw;
    ex->conf = gw->conf;
    gw_conf_ref(ex->conf);
    ex->req = req;
    ex->ep = ep;
    ex->t_start = gw_now();
    ex->model = -1;
    ex->route = "";
    ex->strategy = "";
    ex->est_quality = NAN;
    ex->est_cost = NAN;
    ex->prompt_tokens = -1;
    ex->completion_tokens = -1;
    snprintf(ex->id, sizeof ex->id, "%s", id);

    body = hs_req_body(req, &len);
    if (len == 0) {
        fail_with(ex, 400, NULL, "invalid_json",
                  "the request body is empty: expected a JSON object");
        return;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        fail_with(ex, 400, NULL, "invalid_json",
                  "malformed JSON in the request body: %s (line %d, column %d)", je.text, je.line,
                  je.column);
        return;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        fail_with(ex, 400, NULL, "invalid_json", "the request body must be a JSON object");
        return;
    }
    /* `model` is checked first, as OpenAI does. */
    if (!json_object_get(root, "models") && !json_is_string(json_object_get(root, "model"))) {
        int missing = !json_object_get(root, "model");
        json_decref(root);
        fail_with(ex, 400, "model", missing ? "missing_required_parameter" : "invalid_type",
                  missing ? "model: a required field is missing (name a configured model or "
                            "route)"
                          : "model: expected a string");
        return;
    }
    if (read_fields(ex, root, &query) || decide(ex, root, query.p ? query.p : "")) {
        json_decref(root);
        free(query.p);
        return;
    }
    json_decref(root);
    free(query.p);
    hs_req_watch(req, on_drain, on_abort, ex);
    start_attempt(ex);
}
