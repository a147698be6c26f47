/* proxy.c -- forwarding POST /v1/chat/completions, /v1/completions,
 * /v1/embeddings and /v1/responses: one `exchange` per client request.
 *
 *   parse the body once (jansson) for model / models / route / stream /
 *   stream_options and the query text -> a ranking from the router ->
 *   attempts along the ranking: rewrite the client's bytes (model spliced,
 *   extension members cut) and send them upstream (or to the mock) ->
 *   relay: a stream event by event with backpressure, anything else buffered
 *   up to a cap and sent whole -> usage, metrics, one log line.
 *
 * A stream is read as the SSE format says: an event's data lines are joined
 * with LF and checked (JSON or [DONE]) at its blank line, and the event then
 * goes to the client whole, its bytes as the upstream sent them. An event is
 * held until then, up to server.max_stream_event_bytes; a longer one is
 * malformed. A body that ends cleanly inside an event ends it there when its
 * data is whole, and is a cut stream when it ends inside its JSON. The
 * buffers that held a large event shrink back once it is out.
 *
 * Resilience (the rules are resil.c's; this file applies them). The ranking's
 * tail is the fallback order. next_candidate() starts the first candidate not
 * yet given up on whose breaker admits an attempt and which has room under
 * its max_concurrency; when every remaining one is full the request waits in
 * a bounded queue, and when every one is open it fails fast with 503. A retry
 * of the same model after its backoff keeps the cap too (retry_same()). Every
 * failure before the first byte reaches the client goes through
 * attempt_failed(), which classifies it and, by the policy for that class,
 * retries the same model after a backoff (or its Retry-After), falls back to
 * the next candidate, or answers the client with the failure. A stream is
 * held back until its first complete event with content (a role-only first
 * chunk is held with it), so a failure before that falls back too (an event carrying an
 * `error` member is one: the upstream failing after its 200 head); after it, a cut, stall or
 * malformed event ends the client's stream with an SSE error event and no [DONE]. The Responses
 * API (/v1/responses) streams typed events and has no [DONE]: its terminal event (type
 * response.completed, response.incomplete or response.failed) plays [DONE]'s part, and its
 * mid-stream failure is the API's own `event: error`. Time to a stream's first
 * byte, to any other answer's head, and idle time are watched here with a timer that aborts
 * the transfer. A 3xx is never
 * followed nor relayed: it ends the attempt at its head (class redirect), and when nothing else
 * works the client gets a 502 naming the Location and the model's base_url to fix.
 *
 * Threads: the event loop thread only. An exchange is freed exactly once, by
 * finish(), after the client was answered or went away.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "affinity.h"
#include "gateway.h"
#include "jsonscan.h"
#include "metrics.h"
#include "mock.h"
#include "resil.h"
#include "upstream.h"

/* A chat request's own candidate list (`models`) names at most this many,
 * as /v1/route's lists do (api.c). A route's ranking has no such cap: it
 * holds every candidate and every fallback (rank_reserve()). */
#define MODELS_LIST_CAP 64
#define ATTEMPT_LOG_CAP 1536
#define TRY_ENTRY_CAP 720 /* one entry of that list: a 256-byte model name escaped, and the rest */
#define HOLD_CAP (64u << 10) /* a stream commits once this much of checked events is held */
#define DONE_GRACE_MS 1000   /* after [DONE], how long the transfer may take to end */

/* A stream's buffers larger than this shrink back once a large event is out. */
#define EVENT_KEEP (256u << 10)
/* The choice indices a stream's finish reasons are tracked for (OpenAI's n
 * is at most 128); a stream with more is never taken as finished without
 * [DONE]. */
#define CHOICE_MAP 256

/* An event's words for data holding a raw NUL byte. */
#define EVENT_NUL_WORDS "an event's data holds a NUL byte " JS_NUL_WHY

static const char *const extension_members[] = {"models", "route", NULL};

enum watch_kind { WATCH_NONE, WATCH_FIRST_BYTE, WATCH_HEAD, WATCH_IDLE, WATCH_FAILED };
enum wait_kind { WAIT_NONE, WAIT_RETRY, WAIT_QUEUE };

/* The log line of an answer sent with hs_respond_tracked(): written, and
 * counted, once the answer has been written to the client, or, as 499
 * client_gone, once the connection ended before that (sent_done()). */
struct sent_log {
    struct gw *gw;
    struct gw_log log; /* its strings are the copies below */
    char id[GW_REQUEST_ID_CAP];
    char upstream_id[UP_REQUEST_ID_CAP];
    char path[256];
    char *route, *model, *strategy, *error, *message, *tries;
    int ready; /* finish() has filled it */
};

struct exchange {
    struct gw *gw;
    struct sent_log *sent; /* the answer's log line waits for it to be written */
    struct gw_conf *conf;
    struct hs_req *req; /* NULL once the client is gone */
    enum gw_endpoint ep;
    char id[GW_REQUEST_ID_CAP];
    /* A request about a response id (response_op()): its method for the
     * upstream and the log ("HEAD" goes up as "GET"), the path logged, and
     * the upstream URL's part after base_url. NULL: a forwarding POST. */
    const char *op_method, *op_log_method;
    char op_path[256];
    char op_id[AF_ID_MAX + 1]; /* the response id a request about one names ("" if longer) */
    char *op_target;
    const char *route;    /* the configured route's name, or "" */
    int route_idx;        /* its index in the config, or -1 */
    const char *strategy; /* for headers and logs */
    /* The candidates in the order they are tried, a route's fallbacks last,
     * and those not to be tried again; room for rank_cap of each. */
    struct lr_candidate *ranking;
    unsigned char *given_up;
    size_t n_ranked, cand, rank_cap;
    int model; /* config index of the model tried, or -1 */
    int waited_model; /* before any attempt: the first full candidate waited for, or -1 */
    long input_tokens;
    double est_quality, est_cost;
    int stream, include_usage;
    size_t n_inputs; /* for the mock: embeddings' inputs, or chat's messages */
    /* Chat, for the mock: the first message whose role is none of OpenAI's
     * (bad_role set; at bad_role_at, its role as sent, cut to fit). */
    int bad_role;
    size_t bad_role_at;
    char bad_role_text[64];
    /* Embeddings, for the mock: encoding_format "base64" (1), "float" or
     * absent (0), anything else (-1); dimensions as sent (at most 1e9),
     * 0 when absent, -1 when it is no whole number of at least 1. */
    int emb_base64;
    long long emb_dims;
    /* Embeddings and completions, for the mock's usage: the token numbers
     * the input or prompt gives (a list of them, or a list of such lists). */
    long token_ids;
    /* Chat and completions, for the mock: the request's `n` (n_set: given,
     * n_bad: not an integer) and its prompts (0: one). */
    long long n;
    int n_set, n_bad;
    char n_text[48]; /* n as sent when it is past +-1e9 (read as clamped there), else "" */
    size_t n_prompts;
    /* For the mock: the request's output limit (the least of max_tokens,
     * max_completion_tokens, max_output_tokens given as an integer from 1), or -1;
     * the first of them given otherwise (NULL: none), whether it is no
     * integer at all (else one below 1), and its number as sent. */
    long long max_tokens;
    const char *limit_bad;
    int limit_bad_type;
    char limit_text[48];
    /* For the mock: stream_options given (not null) on a request that
     * does not stream; the first of temperature and top_p given as no
     * number or outside its range (NULL: none), whether it is no number,
     * and its number as sent. */
    int stream_options_unstreamed;
    const char *sampling_bad;
    int sampling_bad_type, sampling_above;
    char sampling_text[48];

    /* Resilience */
    struct rs_retry req_retry; /* server + route: attempt cap and deadline */
    struct rs_policy pol;      /* server + route + model: this attempt's */
    double deadline;           /* gw_now() after which nothing new starts; 0 = none */
    unsigned n_attempts;       /* upstream attempts started */
    unsigned retries;          /* retries of the current candidate */
    int probe;                 /* this attempt is its breaker's half-open probe */
    int fresh_next;            /* the next attempt opens a new connection (after reset_reused) */
    int attempt_fresh;         /* this attempt was made on a new connection so */
    int in_attempt;            /* an attempt is running (holds an in-flight slot) */
    struct event *watch;       /* first byte / idle timer; a deferred failure */
    enum watch_kind watch_kind;
    enum rs_class deferred_class;
    char deferred_msg[160];
    struct event *wait; /* backoff before a retry, or the queue's limit */
    enum wait_kind wait_kind;
    int queued;
    int retry_queued; /* the retry of ranking[cand] waits in the queue for room */
    long queue_wait_ms; /* queue.max_wait_ms when it began to wait, for the 429's message */
    double queue_until; /* gw_now() when that wait ends; 0 = not waiting for room */
    int queue_early;    /* the timer is set sooner, for a breaker that admits a probe then */
    int queue_open;     /* a candidate was skipped for its open breaker, for the 429's words */
    struct exchange *q_prev, *q_next;
    struct exchange *l_prev, *l_next; /* the gateway's live exchanges (gw->live) */
    const char *gone_label; /* an attempt cut short by the client or shutdown, for the log */
    const char *answer_retry_after; /* Retry-After on a refusal of our own */
    char retry_after_buf[24];
    const char *answer_relay; /* the upstream's hints relayed with the answer, or NULL */

    /* The last failure, answered when nothing is left to try. */
    enum rs_class last_class;
    long last_status;
    char *last_body;
    size_t last_len;
    char last_ctype[128];
    char last_retry_after[64];
    char last_relay[UP_RELAY_CAP];
    char last_msg[256];
    /* The message of an answer the gateway made, for the log line: it may
     * say more than the client was told (an upstream's address). */
    char *log_msg;
    int last_model_idx; /* config index of the last failure's model, or -1 */
    char last_location[UP_LOCATION_CAP];
    char last_allow[UP_ALLOW_CAP]; /* a kept 405's Allow, relayed with it */

    char *fwd; /* the body sent upstream */
    size_t fwd_len;
    char *url;
    struct up_xfer *xfer;
    struct mock_xfer *mock;
    struct model_stats *ms;

    long up_status;
    char up_ctype[128];
    int up_ctype_given; /* the upstream named a Content-Type (up_ctype's default is JSON's) */
    int up_close_delimited; /* the body has neither length nor chunks: the close ends it */
    char up_retry_after[64];
    char up_retry_after_ms[64]; /* read for a retry's delay; relayed among up_relay */
    char up_location[UP_LOCATION_CAP];
    char up_allow[UP_ALLOW_CAP];
    char up_request_id[UP_REQUEST_ID_CAP]; /* the last attempt's x-request-id, or "" */
    char up_relay[UP_RELAY_CAP];           /* its headers for the client (up_relay_add()) */
    int head_seen;
    int body_complete; /* the upstream's whole answer is in ex->resp */
    int sse;           /* the upstream answers with an event stream */
    int streaming;     /* the client has the response head of a stream */
    int saw_done;      /* [DONE], or a Responses stream's terminal event: the answer is whole */
    size_t after_done; /* bytes the upstream sent after that event: dropped, logged */
    int resp_failed;   /* that terminal event was response.failed */
    long seq_last;     /* the last Responses event's sequence_number, or -1 */
    char resp_id[AF_ID_MAX + 1]; /* this attempt's Responses response id, or "" */
    size_t resp_id_len;
    int cr_ended; /* the last stream line ended with a CR, the last byte then held */
    int paused;
    char *resp; /* a buffered (non-stream) upstream body */
    size_t resp_len, resp_cap;
    /* Stream bytes not yet relayed: [0, held_ok) whole events, checked;
     * [held_ok, held_line) the complete lines of the open event; then a
     * partial line. */
    char *held;
    size_t held_len, held_cap, held_ok, held_line;
    /* No line end in [held_line, held_scan): where the next read's search
     * for the open line's end starts (else each read of a long event
     * would scan it again from its start). */
    size_t held_scan;
    char *ev_data; /* the open event's data: each data line's value and an LF */
    size_t ev_len, ev_cap;
    unsigned ev_lines; /* its data lines */
    int event_seen;    /* an event with content (not just a role) is complete: may commit */
    int error_event;   /* an event relayed to the client carried the upstream's error */
    char event_error[160]; /* an error event before the stream committed: the failure's message */

    int ev_named_error; /* the open event's type (an `event:` field) is `error` */
    int ev_error_field; /* it has an `error:` field (older llama.cpp), read as data */
    unsigned bom_seen;  /* bytes of a UTF-8 BOM at the body's start read so far */
    int bom_checked;    /* the body's start has been looked at for a BOM */
    /* Chat and completions: the choice indices seen in the stream's chunks,
     * and those given a finish reason (not "error"), for a clean end without
     * [DONE] (choices_finished()). choices_lost: an index past the map. */
    unsigned char choices_seen[CHOICE_MAP / 8], choices_done[CHOICE_MAP / 8];
    int choices_lost;
    int done_added; /* the stream ended cleanly without [DONE], which the gateway added */
    int query_blank; /* a smart strategy ranked a blank query text: no neighbours */

    long prompt_tokens, completion_tokens; /* -1: unknown */
    double t_start, t_up_start, t_up_end;
    double t_up_all; /* every ended attempt's time, start to end: the upstream's share */
    /* Time held by the policy between attempts: a retry's backoff (or its
     * Retry-After) and the wait for room. Neither the upstream's nor the
     * gateway's work, so not overhead either. t_held_start: 0, or when the
     * wait under way began. */
    double t_held_all, t_held_start;
    double t_first; /* a stream's first bytes written to the client, or 0 */
    const char *error;           /* why it failed, for the log */
    char tries[ATTEMPT_LOG_CAP]; /* the attempts as a JSON array, for the log */
    size_t tries_len;

    /* A dense store: the query's vector, fetched before routing. */
    json_t *routing; /* while it is fetched, what decide() reads (routing_members()) */
    char *query;     /* the query text */
    float *vec;
    size_t vec_dim;
    struct gw_embed *embed; /* the fetch in flight */
};

static void finish(struct exchange *ex, int status);
static void sent_done(void *arg, int delivered);
static void next_candidate(struct exchange *ex);
static void stream_complete(struct exchange *ex, int clean, const char *ending);

/* ==== Answering the client ==== */

/* The upstream's "Name: value\r\n" lines (checked by up_relay_add()) as
 * headers of the answer. */
static void relay_headers(struct hs_req *req, const char *lines)
{
    char name[UP_RELAY_NAME_CAP + 1], value[UP_RELAY_VALUE_CAP + 1];
    while (*lines) {
        const char *colon = strchr(lines, ':'), *eol = strstr(lines, "\r\n");
        size_t nl, vl;
        if (!colon || !eol || colon > eol)
            return;
        nl = (size_t)(colon - lines);
        vl = (size_t)(eol - colon - 2);
        if (nl >= sizeof name || vl >= sizeof value)
            return;
        memcpy(name, lines, nl);
        name[nl] = '\0';
        memcpy(value, colon + 2, vl);
        value[vl] = '\0';
        hs_resp_header(req, name, value);
        lines = eol + 2;
    }
}

static void add_headers(struct exchange *ex)
{
    char v[64];
    hs_resp_header(ex->req, "x-request-id", ex->id);
    snprintf(v, sizeof v, "%u", ex->n_attempts);
    hs_resp_header(ex->req, "x-llmroute-attempts", v);
    if (ex->answer_retry_after)
        hs_resp_header(ex->req, "Retry-After", ex->answer_retry_after);
    if (ex->up_request_id[0])
        hs_resp_header(ex->req, "x-llmroute-upstream-request-id", ex->up_request_id);
    if (ex->answer_relay)
        relay_headers(ex->req, ex->answer_relay);
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
    if (!ex->log_msg)
        ex->log_msg = strdup(msg); /* NULL out of memory: the line goes without */
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
    /* The Responses API names them input_tokens and output_tokens. */
    int r = ex->ep == EP_RESPONSES;
    /* A retrieved response's usage (a retrieve that resumes its stream
     * ends with it) was counted when the response was made: not again. */
    if (ex->op_method)
        return;
    json_t *p = json_object_get(usage, r ? "input_tokens" : "prompt_tokens");
    json_t *c = json_object_get(usage, r ? "output_tokens" : "completion_tokens");
    if (json_is_integer(p) && json_integer_value(p) >= 0)
        ex->prompt_tokens = (long)json_integer_value(p);
    if (json_is_integer(c) && json_integer_value(c) >= 0)
        ex->completion_tokens = (long)json_integer_value(c);
    else if (ex->prompt_tokens >= 0 && ex->ep == EP_EMBEDDINGS)
        ex->completion_tokens = 0;
}

/* ==== Response affinity ==== */

/* Note a Responses response's id (a JSON string value), when it is one the
 * table may keep: no escapes, so its bytes are the id, at most AF_ID_MAX. */
static void note_resp_id(struct exchange *ex, const char *id, size_t len)
{
    if (len == 0 || len > AF_ID_MAX || memchr(id, '\\', len) || memchr(id, '\0', len))
        return;
    memcpy(ex->resp_id, id, len);
    ex->resp_id[len] = '\0';
    ex->resp_id_len = len;
}

/* The answer being relayed carries a response id: the model that served it
 * keeps it, so a follow-up and the requests about that id go there. */
static void affinity_record(struct exchange *ex)
{
    if (ex->ep != EP_RESPONSES || ex->model < 0 || !ex->resp_id_len)
        return;
    af_table_put(ex->gw->affinity, ex->resp_id, ex->resp_id_len,
                 ex->conf->models[ex->model].info->name);
}

/* The string `id` member of a Responses event's `response` object
 * obj[0..n), found by the top-level scanner as a body's is
 * (usage_from_body()), so the event is not parsed for it. */
static void note_id_in(struct exchange *ex, const char *obj, size_t n)
{
    static const char *const names[] = {"id", NULL};
    struct js_member m[1];
    if (js_find_members(obj, n, names, m) != 0 || !m[0].key_end)
        return;
    {
        const char *v = obj + m[0].value_start;
        size_t vn = m[0].value_end - m[0].value_start;
        if (vn >= 2 && v[0] == '"')
            note_resp_id(ex, v + 1, vn - 2);
    }
}

/* ==== Usage ==== */

/* The `usage` member of a buffered JSON body, found by the scanner so the
 * body itself is never parsed whole; on /v1/responses its `id` too. The
 * body may have any number of members (a server's own extensions). */
static void usage_from_body(struct exchange *ex)
{
    static const char *const names[] = {"usage", "id", NULL};
    struct js_member m[2];
    const struct js_member *u = &m[0], *id = &m[1];
    if (ex->resp_len == 0 || js_find_members(ex->resp, ex->resp_len, names, m) != 0)
        return;
    if (ex->ep == EP_RESPONSES && id->key_end) {
        const char *v = ex->resp + id->value_start;
        size_t vn = id->value_end - id->value_start;
        if (vn >= 2 && v[0] == '"')
            note_resp_id(ex, v + 1, vn - 2);
    }
    if (u->key_end) {
        json_t *j = json_loadb(ex->resp + u->value_start, u->value_end - u->value_start, 0, NULL);
        if (json_is_object(j))
            read_usage(ex, j);
        json_decref(j);
    }
}

/* Is buf a JSON object, as far as the top-level scanner can tell? */
static int is_json_object(const char *buf, size_t len)
{
    struct js_member m[8];
    size_t n = 0;
    int rc = js_scan_object(buf, len, m, 8, &n);
    return rc == 0 || rc == -2; /* -2: more members than m holds, still an object */
}

static const char *next_key_value(const char *q, const char *end, const char *key, size_t kn);

/* The payload of a data line with usage: parsed for the token counts. */
static void sse_usage(struct exchange *ex, const char *p, const char *end)
{
    /* Most chunks carry no usage, or "usage": null; skip those cheaply. */
    const char *u = next_key_value(p, end, "usage", 5);
    json_t *j;
    if (!u || u >= end || *u != '{')
        return;
    j = json_loadb(p, (size_t)(end - p), 0, NULL);
    if (json_is_object(j) && json_is_object(json_object_get(j, "usage")))
        read_usage(ex, json_object_get(j, "usage"));
    json_decref(j);
}

/* Is v a non-empty string? */
static int nonempty_string(json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0;
}

/* Is v present and not null? Servers that write every field of a delta
 * (LiteLLM, some vLLM versions) send `"tool_calls": null`,
 * `"function_call": null`, `"error": null` in chunks that carry nothing. */
static int given(json_t *v)
{
    return v && !json_is_null(v);
}

/* Does a chunk carry anything a client would show or act on: content,
 * text, reasoning (vLLM's, SGLang's and DeepSeek's `reasoning_content`, or
 * `reasoning` as some servers name it), a tool call, a finish reason, usage,
 * an error? The first chunk of a
 * chat stream usually carries only the role; it is held back with the rest
 * until one that does, so a stream that stalls or breaks right after it can
 * still fail over. A field that is null, or a tool-call list that is empty,
 * carries nothing. Usage counts only in a chunk with no choices (the final
 * usage chunk): vLLM's `continuous_usage_stats` puts usage in every chunk,
 * the role chunk too. Parsed only before the stream commits. */
static int chunk_has_content(const char *p, size_t n)
{
    json_t *j = json_loadb(p, n, 0, NULL), *choices, *c;
    size_t i;
    int yes = 0;
    if (!json_is_object(j)) {
        json_decref(j);
        return 1;
    }
    choices = json_object_get(j, "choices");
    if ((given(json_object_get(j, "usage")) && json_array_size(choices) == 0) ||
        given(json_object_get(j, "error")))
        yes = 1;
    json_array_foreach(choices, i, c)
    {
        json_t *d = json_object_get(c, "delta"), *t = json_object_get(c, "text");
        json_t *content = json_object_get(d, "content"), *fr = json_object_get(c, "finish_reason");
        json_t *tc = json_object_get(d, "tool_calls");
        if (nonempty_string(content) || nonempty_string(t) ||
            nonempty_string(json_object_get(d, "reasoning_content")) ||
            nonempty_string(json_object_get(d, "reasoning")) ||
            (json_is_array(tc) ? json_array_size(tc) > 0 : given(tc)) ||
            given(json_object_get(d, "function_call")) || given(json_object_get(d, "refusal")) ||
            given(fr))
            yes = 1;
    }
    if (!json_is_array(choices) && !yes)
        yes = 1; /* not a chat or completions chunk: nothing to wait for */
    json_decref(j);
    return yes;
}

/* Why an error event failed the attempt, in why (cut to fit): with its
 * message when msg is a string. */
static void error_why(const json_t *msg, char *why, size_t cap)
{
    if (json_is_string(msg))
        snprintf(why, cap, "the stream's event is an error ('%.100s')", json_string_value(msg));
    else
        snprintf(why, cap, "the stream's event is an error");
}

/* Does an event's data p[0..n) (a JSON object) carry an error: a top-level
 * `error` member that is not null? vLLM sends `data: {"error": {...}}` after
 * its 200 head when the engine fails. Most events never name `error`, so the
 * scanner runs only on those that do; the error's message, if any, is put in
 * why (cut to fit). */
static int event_error(const char *p, size_t n, char *why, size_t cap)
{
    static const char key[] = "\"error\"";
    static const char *const names[] = {"error", NULL};
    struct js_member m[1];
    const char *q = p, *end = p + n, *v;
    size_t vn;
    json_t *e, *msg;
    for (;;) {
        q = memchr(q, '"', (size_t)(end - q));
        if (!q || (size_t)(end - q) < sizeof key - 1)
            return 0;
        if (memcmp(q, key, sizeof key - 1) == 0)
            break;
        q++;
    }
    /* However many members the event has (a server's own extensions). */
    if (js_find_members(p, n, names, m) != 0 || !m[0].key_end)
        return 0;
    v = p + m[0].value_start;
    vn = m[0].value_end - m[0].value_start;
    if (vn == 4 && memcmp(v, "null", 4) == 0)
        return 0;
    e = json_loadb(v, vn, JSON_ALLOW_NUL, NULL);
    msg = json_is_object(e) ? json_object_get(e, "message") : e;
    error_why(msg, why, cap);
    json_decref(e);
    return 1;
}

/* The message of an error event's data p[0..n), put in why (cut to fit):
 * its `message`, else its `error`'s `message` (or the `error` itself when a
 * string). Data of any other shape, or not JSON, gives no message. */
static void error_event_message(const char *p, size_t n, char *why, size_t cap)
{
    json_t *j = json_loadb(p, n, JSON_ALLOW_NUL, NULL);
    json_t *msg = json_object_get(j, "message");
    if (!json_is_string(msg)) {
        json_t *e = json_object_get(j, "error");
        msg = json_is_object(e) ? json_object_get(e, "message") : e;
    }
    error_why(msg, why, cap);
    json_decref(j);
}

/* ==== Finish reasons ==== */

/* The value after the next `"key":` in [q, end) (blanks around the colon
 * skipped), or NULL. Textual: it finds the key in a nested object too, and
 * only rules chunks out cheaply (choices_note(), sse_usage()). */
static const char *next_key_value(const char *q, const char *end, const char *key, size_t kn)
{
    while (q < end && (q = memchr(q, '"', (size_t)(end - q))) != NULL) {
        const char *v;
        if ((size_t)(end - q) < kn + 2 || memcmp(q + 1, key, kn) != 0 || q[kn + 1] != '"') {
            q++;
            continue;
        }
        v = q + kn + 2;
        while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
            v++;
        if (v < end && *v == ':') {
            v++;
            while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r'))
                v++;
            return v;
        }
        q = v;
    }
    return NULL;
}

/* Has some `"key":` in p[0..end) a value other than the literal `value`? */
static int key_other_than(const char *p, const char *end, const char *key, const char *value)
{
    size_t kn = strlen(key), vn = strlen(value);
    const char *v = p;
    while ((v = next_key_value(v, end, key, kn)) != NULL) {
        if ((size_t)(end - v) < vn || memcmp(v, value, vn) != 0 ||
            (v + vn < end && ((v[vn] >= '0' && v[vn] <= '9') || (v[vn] >= 'a' && v[vn] <= 'z') ||
                              v[vn] == '.' || v[vn] == 'E')))
            return 1;
        v += vn;
    }
    return 0;
}

static void choice_mark(unsigned char *map, json_int_t k)
{
    map[k / 8] |= (unsigned char)(1u << (k % 8));
}

/* A chat or completions chunk p[0..n) (a JSON object): note the choice
 * indices it has, and those it gives a finish reason other than "error"
 * (OpenRouter's for a provider failing mid-stream). Nearly every chunk has
 * index 0 alone and a null finish reason; one that has neither another
 * index nor a finish reason anywhere in its text is that, and is not
 * parsed. A choice with no index is index 0. */
static void choices_note(struct exchange *ex, const char *p, size_t n)
{
    const char *end = p + n;
    json_t *j, *choices, *c;
    size_t i;
    if (!key_other_than(p, end, "finish_reason", "null") && !key_other_than(p, end, "index", "0")) {
        if (next_key_value(p, end, "choices", 7))
            choice_mark(ex->choices_seen, 0);
        return;
    }
    j = json_loadb(p, n, JSON_ALLOW_NUL, NULL);
    choices = json_object_get(j, "choices");
    json_array_foreach(choices, i, c)
    {
        json_t *idx = json_object_get(c, "index"), *fr = json_object_get(c, "finish_reason");
        json_int_t k = !idx ? 0 : json_is_integer(idx) ? json_integer_value(idx) : -1;
        if (k < 0 || k >= CHOICE_MAP) {
            ex->choices_lost = 1;
            continue;
        }
        choice_mark(ex->choices_seen, k);
        if (nonempty_string(fr) && strcmp(json_string_value(fr), "error") != 0)
            choice_mark(ex->choices_done, k);
    }
    json_decref(j);
}

/* Has every choice index the stream had (at least one) its finish reason?
 * Then the answer is whole, [DONE] or not. */
static int choices_finished(const struct exchange *ex)
{
    unsigned any = 0;
    if (ex->choices_lost)
        return 0;
    for (size_t i = 0; i < sizeof ex->choices_seen; i++) {
        if (ex->choices_seen[i] & ~ex->choices_done[i])
            return 0;
        any |= ex->choices_seen[i];
    }
    return any != 0;
}

/* ==== Responses API streams ==== */

/* A Responses stream (POST /v1/responses) is a run of typed events, each
 * `event: TYPE` and `data: {"type": TYPE, "sequence_number": N, ...}`, and
 * has no [DONE]: the answer is whole at one of these. */
static const char *const terminal_types[] = {"response.completed", "response.incomplete",
                                             "response.failed", NULL};

/* Events that announce what follows and carry none of it: the response
 * created, queued or in progress, an output item or a part begun. They are
 * held back, as a chat stream's role chunk is, until an event with content
 * (a delta with text, a finished part or item, a terminal event, an error,
 * any type not named here), so a failure before that can still fall back. */
static const char *const announcing_types[] = {"response.created",
                                               "response.queued",
                                               "response.in_progress",
                                               "response.output_item.added",
                                               "response.content_part.added",
                                               "response.reasoning_summary_part.added",
                                               NULL};

/* What the gateway reads of a Responses event: found by the top-level
 * scanner, so an event is never parsed whole for them. */
struct resp_event {
    const char *type; /* the type's bytes, without the quotes; NULL when absent */
    size_t type_len;
    const char *delta; /* the delta's JSON value; NULL when absent */
    size_t delta_len;
    long seq; /* sequence_number, or -1 */
    const char *response; /* the `response` member's JSON value; NULL when absent */
    size_t response_len;
};

/* Returns 0, or -1 when p[0..n) is not an object the scanner reads. The
 * event may have any number of members (a server's own extensions). */
static int resp_event_scan(const char *p, size_t n, struct resp_event *e)
{
    static const char *const names[] = {"type", "delta", "response", "sequence_number", NULL};
    struct js_member m[4];
    const char *v;
    size_t vn;
    memset(e, 0, sizeof *e);
    e->seq = -1;
    if (js_find_members(p, n, names, m) != 0)
        return -1;
    v = p + m[0].value_start;
    vn = m[0].value_end - m[0].value_start;
    if (m[0].key_end && vn >= 2 && v[0] == '"') {
        e->type = v + 1;
        e->type_len = vn - 2;
    }
    if (m[1].key_end) {
        e->delta = p + m[1].value_start;
        e->delta_len = m[1].value_end - m[1].value_start;
    }
    if (m[2].key_end) {
        e->response = p + m[2].value_start;
        e->response_len = m[2].value_end - m[2].value_start;
    }
    v = p + m[3].value_start;
    vn = m[3].value_end - m[3].value_start;
    if (m[3].key_end && vn > 0 && vn < 16) {
        long seq = 0;
        size_t j = 0;
        while (j < vn && v[j] >= '0' && v[j] <= '9')
            seq = seq * 10 + (v[j++] - '0');
        if (j == vn)
            e->seq = seq;
    }
    return 0;
}

static int type_is(const struct resp_event *e, const char *name)
{
    return e->type && strlen(name) == e->type_len && memcmp(e->type, name, e->type_len) == 0;
}

static int type_in(const struct resp_event *e, const char *const *names)
{
    for (; *names; names++)
        if (type_is(e, *names))
            return 1;
    return 0;
}

static int resp_has_content(const struct resp_event *e)
{
    static const char delta[] = ".delta";
    size_t dn = sizeof delta - 1;
    if (!e->type)
        return 1; /* not a Responses event: nothing to wait for */
    if (type_in(e, announcing_types))
        return 0;
    if (e->type_len > dn && memcmp(e->type + e->type_len - dn, delta, dn) == 0 && e->delta &&
        e->delta_len == 2 && memcmp(e->delta, "\"\"", 2) == 0)
        return 0; /* an empty delta, as a chat chunk with empty content */
    return 1;
}

/* Is v[0..n) (one data line's value) a whole terminal event? */
static int resp_is_terminal(const char *v, size_t n)
{
    struct resp_event e;
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\n'))
        n--;
    return n && *v == '{' && !memchr(v, '\0', n) && resp_event_scan(v, n, &e) == 0 &&
           type_in(&e, terminal_types);
}

/* A whole Responses event, its data p[0..n) scanned into e (a JSON object):
 * note its sequence number, whether it has content, and whether it ends
 * the answer; a terminal event's `response.usage` has the token counts. */
static void resp_event(struct exchange *ex, const char *p, size_t n, const struct resp_event *e)
{
    if (e->seq > ex->seq_last)
        ex->seq_last = e->seq;
    if (!ex->streaming && !ex->event_seen && resp_has_content(e))
        ex->event_seen = 1;
    if (type_in(e, terminal_types)) {
        json_t *j = json_loadb(p, n, JSON_ALLOW_NUL, NULL);
        json_t *u = json_object_get(json_object_get(j, "response"), "usage");
        ex->saw_done = 1;
        ex->resp_failed = type_is(e, "response.failed");
        if (json_is_object(u))
            read_usage(ex, u);
        json_decref(j);
        if (!ex->resp_id_len && e->response)
            note_id_in(ex, e->response, e->response_len);
        if (ex->streaming)
            affinity_record(ex);
    } else if (type_is(e, "response.created") && !ex->resp_id_len && e->response) {
        /* Scanned, not parsed: it repeats the request's instructions and tools. */
        note_id_in(ex, e->response, e->response_len);
        if (ex->streaming)
            affinity_record(ex);
    }
}

/* One complete line of the open event, without its line end. The value of a
 * data field (after the colon and one space, if any; a line `data` alone is an
 * empty one) is added to the event's data with an LF after it, which is how
 * the SSE format joins an event's data lines. So is an `error` field's: older
 * llama.cpp servers (before PR #16109) send a stream's error as `error:
 * {...}`, and the event is then an error (ev_error_field). An `event` field
 * naming `error` makes it one too (ev_named_error). Comments and other fields
 * (id, retry) are relayed but carry no data. Returns 0, or -1 out of memory.
 * The event's bytes are capped (server.max_stream_event_bytes) before they get
 * here, so its data is too. */
static int sse_line(struct exchange *ex, const char *l, size_t n)
{
    const char *colon = memchr(l, ':', n), *v;
    size_t fn = colon ? (size_t)(colon - l) : n, vn;
    if (fn != 4 && fn != 5)
        return 0; /* a comment (no field name), or a field the gateway does not read */
    v = colon ? colon + 1 : l + n;
    vn = n - (size_t)(v - l);
    if (vn > 0 && *v == ' ') {
        v++;
        vn--;
    }
    if (fn == 5 && memcmp(l, "event", 5) == 0) {
        ex->ev_named_error = vn == 5 && memcmp(v, "error", 5) == 0; /* the last one counts */
        return 0;
    }
    if (fn == 5 && memcmp(l, "error", 5) == 0)
        ex->ev_error_field = 1;
    else if (fn != 4 || memcmp(l, "data", 4) != 0)
        return 0;
    if (gw_reserve(&ex->ev_data, &ex->ev_cap, ex->ev_len + vn + 1, 1024) != 0)
        return -1;
    memcpy(ex->ev_data + ex->ev_len, v, vn);
    ex->ev_len += vn;
    ex->ev_data[ex->ev_len++] = '\n';
    ex->ev_lines++;
    return 0;
}

/* The open event ends (its blank line, or a clean end of the body): its data,
 * the data lines joined, is checked as a whole. Returns 0, or -1 when it is
 * neither JSON nor [DONE], or -2 when it carries an error and the stream has
 * not committed (ex->event_error says what it was): nothing reached the
 * client, so the attempt fails as a 5xx head would. An error after that is
 * relayed, and noted (ex->error_event). An event is an error when its data
 * has a top-level `error` that is not null, when it came in `error:` lines,
 * or when its type is `error`, whatever its data (on /v1/responses that one
 * only before the commit, as the API's own error event). An event with no
 * data (comments or other fields only), or with only blank data, is not
 * checked. Returns -3, malformed, when the data holds a raw NUL byte, which
 * no JSON text does. It is looked for first: an error event's data is not
 * read by the grammar (it need not be JSON, and past the commit it is
 * relayed), and the NUL has words of its own. */
static int sse_event(struct exchange *ex)
{
    const char *p, *end;
    size_t n;
    unsigned lines = ex->ev_lines;
    int named_error = ex->ev_named_error, error_field = ex->ev_error_field;
    struct resp_event re;
    ex->ev_lines = 0;
    ex->ev_named_error = ex->ev_error_field = 0;
    if (lines == 0)
        return 0;
    p = ex->ev_data;
    end = p + ex->ev_len;
    ex->ev_len = 0;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'))
        end--;
    if (p == end)
        return 0;
    n = (size_t)(end - p);
    if (memchr(p, '\0', n))
        return -3;
    if (error_field || (named_error && (ex->ep != EP_RESPONSES || !ex->streaming))) {
        /* An error event of the SSE fields' making: its data need not be
         * JSON, nor have an `error` member. Past the commit it is relayed as
         * an error event in the data is; a Responses `event: error` then is
         * relayed as it came (below), as the API's own error event is. */
        if (!ex->streaming) {
            error_event_message(p, n, ex->event_error, sizeof ex->event_error);
            return -2;
        }
        if (!ex->error_event) {
            error_event_message(p, n, ex->event_error, sizeof ex->event_error);
            ex->error_event = 1;
        }
        return 0;
    }
    if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
        /* Not the Responses API's end, which is its terminal event: relayed, no more. */
        if (ex->ep != EP_RESPONSES)
            ex->saw_done = 1;
        return 0;
    }
    /* The data is read whole by the JSON grammar: the scans for members read
     * the top level only, so an event broken inside a value, or one whose
     * string was cut over two data lines (joined, a raw LF in it), would go
     * out to a client whose parser refuses it. A Responses event is scanned
     * for its members too. */
    if (js_object_prefix(p, n) != JS_WHOLE ||
        (ex->ep == EP_RESPONSES && resp_event_scan(p, n, &re) != 0))
        return -1;
    if (!ex->error_event && event_error(p, n, ex->event_error, sizeof ex->event_error)) {
        if (!ex->streaming)
            return -2;
        ex->error_event = 1;
    }
    if (ex->ep == EP_RESPONSES) {
        if (!ex->streaming && re.type && re.type_len == 5 && memcmp(re.type, "error", 5) == 0) {
            /* The Responses API's own error event, before anything went out:
             * failed as a chat stream's {"error": ...} is, so a route falls
             * back. */
            error_event_message(p, n, ex->event_error, sizeof ex->event_error);
            return -2;
        }
        resp_event(ex, p, n, &re);
        return 0;
    }
    if (!ex->streaming && !ex->event_seen && chunk_has_content(p, n))
        ex->event_seen = 1;
    choices_note(ex, p, n);
    sse_usage(ex, p, end);
    return 0;
}

/* ==== Timers ==== */

static void watch_cb(evutil_socket_t fd, short what, void *arg);
static void wait_cb(evutil_socket_t fd, short what, void *arg);

static void watch_arm(struct exchange *ex, enum watch_kind kind, long ms)
{
    struct timeval tv;
    if (ex->watch)
        evtimer_del(ex->watch);
    ex->watch_kind = WATCH_NONE;
    if (ms <= 0)
        return;
    if (!ex->watch && !(ex->watch = evtimer_new(ex->gw->base, watch_cb, ex)))
        return; /* out of memory: the total timeout still bounds the attempt */
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    ex->watch_kind = kind;
    evtimer_add(ex->watch, &tv);
}

static void watch_stop(struct exchange *ex)
{
    if (ex->watch)
        evtimer_del(ex->watch);
    ex->watch_kind = WATCH_NONE;
}

/* Whether v[0..n) is [DONE], blanks (and the LF after each data line) aside. */
static int is_done(const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t' || *v == '\n')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\n'))
        n--;
    return n == 6 && memcmp(v, "[DONE]", 6) == 0;
}

/* Whether an open event's data d[0..n) (its data lines joined, an LF after
 * each), which is neither JSON nor [DONE], is the start of one cut short:
 * the start of a JSON object that more bytes could complete, or of [DONE].
 * line_open: the last data line has not ended, so more bytes could have
 * gone on with it; otherwise only a line after it could, joined to it with
 * the LF that is already there. Data nothing more could make whole
 * (`hello`, a string or a literal open at a line's end, where the next line
 * would put a raw LF) is malformed, not cut. */
static int data_cut_short(const char *d, size_t n, int line_open)
{
    if (line_open && n > 0 && d[n - 1] == '\n')
        n--; /* the LF sse_line() put after the open line: no line after it yet */
    while (n && (*d == ' ' || *d == '\t' || *d == '\n')) {
        d++;
        n--;
    }
    if (line_open && n > 0 && n < 6 && memcmp(d, "[DONE]", n) == 0)
        return 1;
    return js_object_prefix(d, n) == JS_OPEN;
}

/* The open event is `data: [DONE]` and nothing else (for /v1/responses: one
 * data line holding a whole terminal event), but it has not ended: its blank
 * line (and maybe its line end) has not come. Nothing of the answer is
 * missing then, so a cut or a silence from here on completes the stream, as
 * after a whole [DONE] event. Returns what finishes the event for the client,
 * and sets *upto to the held bytes that go out before it; or NULL when the
 * open event is anything else. A terminal event's last line without its line
 * end is looked for only when thorough (a failure, once), not after every
 * read: it may be long, and is scanned whole. */
static const char *done_unfinished(const struct exchange *ex, size_t *upto, int thorough)
{
    size_t n = ex->held_len - ex->held_line;
    /* A stream that has sent nothing yet has no buffer: NULL + 0 is
     * undefined, so its (empty) open line is a literal. */
    const char *l = n ? ex->held + ex->held_line : "";
    if (ex->saw_done || !ex->sse)
        return NULL;
    if (ex->ep == EP_RESPONSES) {
        /* Scanned only here: an event whose blank line came with its data
         * line (the usual case) is never open when this is asked. */
        if (ex->ev_lines == 1 && n == 0 && resp_is_terminal(ex->ev_data, ex->ev_len)) {
            *upto = ex->held_line;
            return ex->cr_ended ? "\n\n" : "\n";
        }
        if (thorough && ex->ev_lines == 0 && n > 5 && memcmp(l, "data:", 5) == 0 &&
            resp_is_terminal(l + 5, n - 5)) {
            *upto = ex->held_len;
            return "\n\n";
        }
        return NULL;
    }
    if (ex->ev_lines == 1 && n == 0 && !ex->ev_error_field && !ex->ev_named_error &&
        is_done(ex->ev_data, ex->ev_len)) {
        *upto = ex->held_line;
        return ex->cr_ended ? "\n\n" : "\n"; /* after a CR, an LF alone would end the line */
    }
    if (ex->ev_lines == 0 && n > 5 && !ex->ev_named_error && memcmp(l, "data:", 5) == 0 &&
        is_done(l + 5, n - 5)) {
        *upto = ex->held_len;
        return "\n\n";
    }
    return NULL;
}

/* The idle watch between a stream's pieces. After [DONE] the answer is whole
 * and nothing more is expected: the transfer then gets only a short grace to
 * end, and its timer ending it is a success (failed()), not a stall. */
static void idle_arm(struct exchange *ex)
{
    size_t upto;
    int done = ex->saw_done || done_unfinished(ex, &upto, 0);
    watch_arm(ex, WATCH_IDLE, done ? DONE_GRACE_MS : ex->pol.timeouts.idle_ms);
}

/* The end of a wait the policy held the request in (wait_arm()): its
 * time joins t_held_all. */
static void held_end(struct exchange *ex)
{
    if (ex->t_held_start > 0) {
        ex->t_held_all += gw_now() - ex->t_held_start;
        ex->t_held_start = 0;
    }
}

static int wait_arm(struct exchange *ex, enum wait_kind kind, long ms)
{
    struct timeval tv;
    if (!ex->wait && !(ex->wait = evtimer_new(ex->gw->base, wait_cb, ex)))
        return -1;
    evtimer_del(ex->wait);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    ex->wait_kind = kind;
    if (ex->t_held_start == 0)
        ex->t_held_start = gw_now();
    evtimer_add(ex->wait, &tv);
    return 0;
}

static void wait_stop(struct exchange *ex)
{
    if (ex->wait)
        evtimer_del(ex->wait);
    ex->wait_kind = WAIT_NONE;
    ex->queue_until = 0;
    ex->queue_early = 0;
    held_end(ex);
}

/* Uniform in [0, 1), for backoff jitter. */
static double unit_random(struct gw *gw)
{
    uint64_t x = gw->rng ? gw->rng : (gw->id_seed | 1) ^ 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    gw->rng = x;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* ==== The capacity queue ==== */

static void queue_unlink(struct exchange *ex)
{
    struct gw *gw = ex->gw;
    if (!ex->queued)
        return;
    if (ex->q_prev)
        ex->q_prev->q_next = ex->q_next;
    else
        gw->wait_head = ex->q_next;
    if (ex->q_next)
        ex->q_next->q_prev = ex->q_prev;
    else
        gw->wait_tail = ex->q_prev;
    ex->q_prev = ex->q_next = NULL;
    ex->queued = 0;
    gw->n_waiting--;
    metrics_set_waiting(gw->metrics, gw->n_waiting);
}

static void queue_append(struct exchange *ex)
{
    struct gw *gw = ex->gw;
    ex->q_prev = gw->wait_tail;
    ex->q_next = NULL;
    if (gw->wait_tail)
        gw->wait_tail->q_next = ex;
    else
        gw->wait_head = ex;
    gw->wait_tail = ex;
    ex->queued = 1;
    gw->n_waiting++;
    metrics_set_waiting(gw->metrics, gw->n_waiting);
}

/* A slot may have freed: offer it to the waiting requests, oldest first.
 * Each one either starts, waits again (at the tail, in the same order) or
 * is answered. Runs from the loop, never inside a transfer's callback. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw *gw = arg;
    long n = gw->n_waiting;
    (void)fd;
    (void)what;
    while (n-- > 0 && gw->wait_head) {
        struct exchange *ex = gw->wait_head;
        queue_unlink(ex);
        next_candidate(ex);
    }
}

/* A model's in-flight cap and the queue's limits, as the live configuration
 * sets them. A request keeps the configuration it started with (its model
 * table, its policies), but capacity is shared by every request to a model,
 * so a SIGHUP's new max_concurrency or queue limits hold for the requests
 * already under way too: raised, those waiting may start at once (the reload
 * kicks the queue); lowered, none starts until the model is under the new
 * cap. The in-flight count is kept by the model's name (the metrics table),
 * so the cap is looked up by name; a model the reload removed keeps the cap
 * of the configuration its requests started with. */
static long model_cap(const struct exchange *ex, int idx)
{
    const struct gw_conf *live = ex->gw->conf;
    const struct lr_model_info *info = ex->conf->models[idx].info;
    if (live && live != ex->conf) {
        int j = lr_config_model_index(live->cfg, info->name);
        if (j >= 0)
            return live->models[j].info->max_concurrency;
    }
    return info->max_concurrency;
}

static const struct rs_queue_conf *queue_conf(const struct exchange *ex)
{
    return ex->gw->conf ? &ex->gw->conf->set.queue : &ex->conf->set.queue;
}

static void queue_kick(struct gw *gw)
{
    if (gw->n_waiting <= 0)
        return;
    if (!gw->wake && !(gw->wake = event_new(gw->base, -1, 0, wake_cb, gw)))
        return; /* out of memory: waiters end at their time limit */
    event_active(gw->wake, 0, 0);
}

void proxy_queue_kick(struct gw *gw)
{
    queue_kick(gw);
}

void proxy_shutdown(struct gw *gw)
{
    if (gw->wake)
        event_free(gw->wake);
    gw->wake = NULL;
}

/* ==== Attempts: bookkeeping ==== */

/* A model's live state (in-flight count, breaker). The metrics table
 * outlives configurations, so the pointer is kept on the model. */
static struct model_stats *model_state(struct exchange *ex, int model)
{
    struct gw_model *gm = &ex->conf->models[model];
    if (!gm->stats)
        gm->stats = metrics_model(ex->gw->metrics, gm->info->name);
    return gm->stats;
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

static const char *model_name(const struct exchange *ex)
{
    return ex->model >= 0 ? ex->conf->models[ex->model].info->name : "";
}

/* The model of the last failure, whole (a name may have 256 bytes). */
static const char *last_model_name(const struct exchange *ex)
{
    return ex->last_model_idx >= 0 ? ex->conf->models[ex->last_model_idx].info->name : "";
}

/* The attempt is over, with outcome c (RS_OK for success). The breaker hears
 * the verdict unless record is 0 (the client went away). */
static void attempt_end(struct exchange *ex, enum rs_class c, double retry_after_s, int record)
{
    double now = gw_now();
    struct model_stats *ms = ex->ms;
    if (!ex->in_attempt)
        return;
    ex->in_attempt = 0;
    watch_stop(ex);
    ex->t_up_end = now;
    ex->t_up_all += now - ex->t_up_start;
    if (ms) {
        ms->in_flight--;
        hist_observe(&ms->upstream_latency, now - ex->t_up_start);
        if (ex->streaming && ex->t_first > 0)
            hist_observe(&ms->ttft, ex->t_first - ex->t_up_start);
        if (record)
            ms->attempts[c]++;
        else if (strcmp(ex->gone_label, "client_closed") == 0)
            ms->attempts_client_closed++;
        else if (strcmp(ex->gone_label, "shutdown") == 0)
            ms->attempts_shutdown++;
        if (record && !rs_class_is_neutral(c)) {
            rs_breaker_record(&ms->breaker, &ex->conf->set.breaker, now,
                              rs_class_is_upstream_failure(c), retry_after_s, ex->probe);
        } else {
            rs_breaker_release(&ms->breaker, ex->probe);
        }
    }
    ex->probe = 0;
    {
        /* The name whole (up to 256 bytes, any character) as a JSON string;
         * an entry that does not fit is left out whole, so the list stays
         * JSON. */
        char entry[TRY_ENTRY_CAP];
        const char *open = ex->tries_len ? ",{\"model\":" : "{\"model\":";
        size_t o = strlen(open);
        int k;
        memcpy(entry, open, o);
        o = gw_json_string(entry, sizeof entry - 96, o, model_name(ex));
        k = snprintf(entry + o, sizeof entry - o, ",\"class\":\"%s\",\"status\":%ld,\"ms\":%.1f}",
                     record ? rs_class_name(c) : ex->gone_label, ex->up_status,
                     (now - ex->t_up_start) * 1000);
        if (k > 0 && o + (size_t)k < sizeof entry &&
            ex->tries_len + o + (size_t)k < sizeof ex->tries) {
            memcpy(ex->tries + ex->tries_len, entry, o + (size_t)k);
            ex->tries_len += o + (size_t)k;
        }
    }
    queue_kick(ex->gw);
}

/* ==== Giving up ==== */

/* Nothing more to try: answer with the last failure. An upstream's own error
 * response is relayed as it came (status, body, Retry-After), unless
 * rs_answer_relayed() says it speaks of the gateway's exchange with the
 * upstream; a transport failure becomes 502 (or 504 for the timeouts, an
 * upstream's 408 among them); so does a redirect, which is useless to the
 * client (its URL is the gateway's) and means the model's base_url is
 * wrong. */
static void give_up(struct exchange *ex, const char *why)
{
    enum rs_class c = ex->last_class;
    if (c == RS_REDIRECT) {
        char where[GW_REDIRECT_PHRASE_CAP];
        gw_redirect_phrase(where, sizeof where, ex->last_location);
        fail_with(ex, 502, NULL, "upstream_redirect",
                  "the upstream for model '%s' answered %ld, %s; redirects are not followed: "
                  "check models[%d].base_url (%s; %u attempt%s)",
                  last_model_name(ex), ex->last_status, where, ex->last_model_idx, why,
                  ex->n_attempts, ex->n_attempts == 1 ? "" : "s");
        return;
    }
    if (c == RS_AUTH && ex->last_status == 401) {
        /* The upstream refused the gateway's own key: relayed, its 401 would
         * tell the client its key is wrong (the gateway's code for that is
         * invalid_api_key too), and OpenAI's message quotes part of the key.
         * A 403 is relayed: providers also use it for the request itself
         * (a moderation refusal, a region). */
        fail_with(ex, 502, NULL, "upstream_auth_failed",
                  "the upstream for model '%s' refused the gateway's credentials (401): check "
                  "models[%d].api_key_env (%s; %u attempt%s)",
                  last_model_name(ex), ex->last_model_idx, why, ex->n_attempts,
                  ex->n_attempts == 1 ? "" : "s");
        return;
    }
    if (c == RS_AUTH && ex->last_status == 402) {
        /* The gateway's account at the upstream is out of credit. Relayed,
         * the 402 would ask the client to pay for it; the upstream's message
         * is quoted (OpenRouter's says how many tokens the credit affords). */
        char said[200];
        (void)rs_class_of_ok_body(ex->last_body, ex->last_len, said, sizeof said);
        fail_with(ex, 502, NULL, "upstream_payment_required",
                  "the upstream for model '%s' answered 402 Payment Required%s%s%s: the "
                  "gateway's account there needs credit (%s; %u attempt%s)",
                  last_model_name(ex), said[0] ? ": '" : "", said, said[0] ? "'" : "", why,
                  ex->n_attempts, ex->n_attempts == 1 ? "" : "s");
        return;
    }
    if (c == RS_AUTH && ex->last_status == 407) {
        /* A proxy on the way to the upstream wants credentials. Relayed, its
         * 407 would ask the client for proxy credentials for the gateway. */
        fail_with(ex, 502, NULL, "upstream_proxy_auth_failed",
                  "the upstream for model '%s' answered 407: a proxy on the way to it wants "
                  "credentials the gateway does not send; check the proxy settings in the "
                  "gateway's environment and models[%d].base_url (%s; %u attempt%s)",
                  last_model_name(ex), ex->last_model_idx, why, ex->n_attempts,
                  ex->n_attempts == 1 ? "" : "s");
        return;
    }
    if (c == RS_TIMEOUT && ex->last_status == 408) {
        /* The upstream timed out waiting for the gateway's request. Relayed,
         * its 408 would tell the client that its own request was slow. */
        fail_with(ex, 504, NULL, "upstream_timeout",
                  "the upstream for model '%s' answered 408: it timed out waiting for the "
                  "gateway's request (%s; %u attempt%s)",
                  last_model_name(ex), why, ex->n_attempts, ex->n_attempts == 1 ? "" : "s");
        return;
    }
    if (rs_answer_relayed(ex->last_status) && ex->req) {
        if (ex->last_retry_after[0])
            ex->answer_retry_after = ex->last_retry_after;
        if (ex->last_relay[0])
            ex->answer_relay = ex->last_relay;
        add_headers(ex);
        /* A 405 must say which methods the resource takes (RFC 9110
         * section 15.5.6): the upstream's list goes with it. */
        if (ex->last_status == 405 && ex->last_allow[0])
            hs_resp_header(ex->req, "Allow", ex->last_allow);
        hs_respond(ex->req, (int)ex->last_status, ex->last_ctype[0] ? ex->last_ctype : NULL,
                   ex->last_body ? ex->last_body : "", ex->last_len);
        ex->req = NULL;
        ex->error = rs_class_name(c);
        finish(ex, (int)ex->last_status);
        return;
    }
    if (c == RS_RATE_LIMITED_BARE && ex->last_status < 300) {
        /* No status of its own kept (a 429 head's answer is relayed above):
         * a 2xx whose body was an error of code 429. A rate limit, told as
         * one, so the client's SDK backs off and tries again. */
        fail_with(ex, 429, NULL, "upstream_rate_limited",
                  "the upstream for model '%s' is rate limited: %s (%s; %u attempt%s)",
                  last_model_name(ex), ex->last_msg, why, ex->n_attempts,
                  ex->n_attempts == 1 ? "" : "s");
        return;
    }
    if (c == RS_DESCRIPTORS || c == RS_CONNECT_REFUSED || c == RS_CONNECT_TIMEOUT || c == RS_TLS) {
        /* The transport's message names the upstream's address (a TLS
         * failure its host name too), which is the operator's business: the
         * log line has it, the client does not. */
        char full[600];
        snprintf(full, sizeof full, "the upstream for model '%s' failed: %s: %s (%s; %u attempt%s)",
                 last_model_name(ex), rs_class_name(c), ex->last_msg, why, ex->n_attempts,
                 ex->n_attempts == 1 ? "" : "s");
        free(ex->log_msg);
        ex->log_msg = strdup(full);
    }
    if (c == RS_DESCRIPTORS) {
        ex->answer_retry_after = "1";
        fail_with(ex, 503, NULL, "descriptors_exhausted",
                  "the gateway could not open a connection to the upstream for model '%s': it "
                  "has run out of file descriptors (RLIMIT_NOFILE, ulimit -n): raise the limit "
                  "or lower server.max_connections (%s; %u attempt%s)",
                  last_model_name(ex), why, ex->n_attempts, ex->n_attempts == 1 ? "" : "s");
    } else if (c == RS_CONNECT_REFUSED)
        fail_with(ex, 502, NULL, "upstream_unreachable",
                  "the upstream for model '%s' could not be reached; the gateway's log has the "
                  "reason (%s; %u attempt%s)",
                  last_model_name(ex), why, ex->n_attempts, ex->n_attempts == 1 ? "" : "s");
    else if (c == RS_CONNECT_TIMEOUT)
        fail_with(ex, 504, NULL, "upstream_timeout",
                  "the upstream for model '%s' timed out before a connection was made (%s; %u "
                  "attempt%s)",
                  last_model_name(ex), why, ex->n_attempts, ex->n_attempts == 1 ? "" : "s");
    else if (c == RS_TLS)
        fail_with(ex, 502, NULL, "upstream_tls",
                  "the upstream for model '%s' failed: the TLS handshake or its certificate; "
                  "the gateway's log has the reason (%s; %u attempt%s)",
                  last_model_name(ex), why, ex->n_attempts, ex->n_attempts == 1 ? "" : "s");
    else if (c == RS_TIMEOUT || c == RS_STREAM_STALL)
        fail_with(ex, 504, NULL, "upstream_timeout",
                  "the upstream for model '%s' timed out: %s (%s; %u attempt%s)",
                  last_model_name(ex), ex->last_msg, why, ex->n_attempts,
                  ex->n_attempts == 1 ? "" : "s");
    else {
        char code[48];
        snprintf(code, sizeof code, "upstream_%s", rs_class_name(c));
        fail_with(ex, 502, NULL, code,
                  "the upstream for model '%s' failed: %s: %s (%s; %u attempt%s)",
                  last_model_name(ex), rs_class_name(c), ex->last_msg, why, ex->n_attempts,
                  ex->n_attempts == 1 ? "" : "s");
    }
}

/* ==== Attempts: failure and the next one ==== */

static void start_attempt(struct exchange *ex);
static void retry_same(struct exchange *ex);

/* A failure before anything reached the client: classify, remember, and by
 * the policy retry the same model, fall back to the next, or give up. The
 * transfer is already stopped. */
static void attempt_failed(struct exchange *ex, enum rs_class c, const char *message)
{
    double ra = -1;
    int action;

    if (ex->up_status >= 300 && ex->head_seen)
        ra = rs_retry_hint_seconds(ex->up_retry_after[0] ? ex->up_retry_after : NULL,
                                   ex->up_retry_after_ms[0] ? ex->up_retry_after_ms : NULL,
                                   (double)time(NULL));
    attempt_end(ex, c, ra, 1);

    ex->last_class = c;
    snprintf(ex->last_msg, sizeof ex->last_msg, "%s", message);
    ex->last_model_idx = ex->model;
    free(ex->last_body);
    ex->last_body = NULL;
    ex->last_len = 0;
    ex->last_status = 0;
    ex->last_retry_after[0] = '\0';
    ex->last_relay[0] = '\0';
    ex->last_location[0] = '\0';
    ex->last_allow[0] = '\0';
    if (c == RS_REDIRECT) {
        /* Its body is not read: the 502 names the status and Location. */
        ex->last_status = ex->up_status;
        snprintf(ex->last_location, sizeof ex->last_location, "%s", ex->up_location);
    }
    if (ex->up_status >= 300 && ex->up_status < 600 && !ex->sse && ex->body_complete) {
        /* Keep the upstream's own answer, to relay if nothing else works:
         * one of an HTTP status. A status of 600 to 999, which no HTTP has,
         * is a protocol failure (rs_class_of_answer()), answered 502. */
        ex->last_status = ex->up_status;
        ex->last_body = ex->resp;
        ex->last_len = ex->resp_len;
        ex->resp = NULL;
        ex->resp_len = ex->resp_cap = 0;
        /* An error the upstream gave no Content-Type is relayed with none,
         * unless it is a JSON object (what the default says it is): a
         * plain-text or HTML page is not labelled JSON. */
        if (ex->up_ctype_given ||
            is_json_object(ex->last_body ? ex->last_body : "", ex->last_len))
            snprintf(ex->last_ctype, sizeof ex->last_ctype, "%s", ex->up_ctype);
        else
            ex->last_ctype[0] = '\0';
        snprintf(ex->last_retry_after, sizeof ex->last_retry_after, "%s", ex->up_retry_after);
        memcpy(ex->last_relay, ex->up_relay, sizeof ex->last_relay);
        snprintf(ex->last_allow, sizeof ex->last_allow, "%s", ex->up_allow);
    }
    ex->resp_len = 0;

    action = ex->pol.retry.on[c];
    if (c == RS_RESET_REUSED && action == RS_RETRY) {
        /* A pooled connection the upstream closed as the request went out
         * (its keep-alive timeout, most likely): the same model again at
         * once, on a new connection, where this cannot happen again. Not a
         * retry of max_retries, but an attempt of max_attempts. */
        if (!ex->attempt_fresh && ex->n_attempts < (unsigned)ex->req_retry.max_attempts &&
            (ex->deadline == 0 || gw_now() < ex->deadline)) {
            ex->fresh_next = 1;
            retry_same(ex);
            return;
        }
        action = RS_FALLBACK;
    }
    if (action == RS_FAIL) {
        give_up(ex, "not retried by policy");
        return;
    }
    if (action == RS_RETRY && ex->retries < (unsigned)ex->pol.retry.max_retries &&
        ex->n_attempts < (unsigned)ex->req_retry.max_attempts) {
        long delay;
        if (c == RS_RATE_LIMITED && ra >= 0)
            delay =
                ra * 1000 <= (double)ex->pol.retry.max_retry_after_ms ? (long)(ra * 1000) + 5 : -1;
        else
            delay = rs_backoff_ms(&ex->pol.retry, ex->retries, unit_random(ex->gw));
        if (delay >= 0 && (ex->deadline == 0 || gw_now() + (double)delay / 1000 < ex->deadline) &&
            wait_arm(ex, WAIT_RETRY, delay) == 0) {
            ex->retries++;
            return;
        }
    }
    ex->given_up[ex->cand] = 1;
    ex->retries = 0;
    next_candidate(ex);
}

/* End the client's stream with an error event (type, code, msg) and no
 * [DONE], so it cannot pass for a complete answer. */
static void stream_error_end(struct exchange *ex, const char *type, const char *code,
                             const char *msg)
{
    if (ex->req) {
        char ev[900], body[800];
        size_t n;
        int k;
        /* Events are relayed whole, so the client has none unfinished: an
         * event cut off upstream was held back, and this one stands alone. */
        if (ex->ep == EP_RESPONSES) {
            /* The Responses API's own error event (ResponseErrorEvent), numbered
             * after the last event relayed. */
            size_t o;
            k = snprintf(ev, sizeof ev,
                         "event: error\ndata: {\"type\":\"error\",\"code\":\"%s\","
                         "\"message\":",
                         code);
            o = gw_json_string(ev, sizeof ev - 80, k > 0 ? (size_t)k : 0, msg);
            snprintf(ev + o, sizeof ev - o, ",\"param\":null,\"sequence_number\":%ld}\n\n",
                     ex->seq_last + 1);
            k = (int)strlen(ev);
        } else {
            n = gw_error_format(body, sizeof body, msg, type, NULL, code);
            k = snprintf(ev, sizeof ev, "data: %.*s\n\n", (int)n, body);
        }
        hs_stream_write(ex->req, ev, k > 0 ? (size_t)k : 0);
        hs_stream_end(ex->req);
        ex->req = NULL;
    }
}

/* A failure after the client has the stream's head. */
static void stream_failed(struct exchange *ex, enum rs_class c, const char *message)
{
    char msg[400], code[48];
    attempt_end(ex, c, -1, 1);
    snprintf(msg, sizeof msg, "the upstream for model '%s' failed mid-stream (%s): %s",
             model_name(ex), rs_class_name(c), message);
    snprintf(code, sizeof code, "upstream_%s", rs_class_name(c));
    stream_error_end(ex, "upstream_error", code, msg);
    ex->error = rs_class_name(c);
    if (!ex->log_msg)
        ex->log_msg = strdup(msg);
    finish(ex, (int)ex->up_status);
}

/* The attempt failed, wherever it was: before or after the client's first byte. */
static void failed(struct exchange *ex, enum rs_class c, const char *message)
{
    size_t upto;
    const char *ending;
    stop_transfer(ex);
    if (ex->sse && ex->saw_done) {
        stream_complete(ex, 0, NULL); /* after [DONE]: nothing of the answer is lost */
    } else if ((c == RS_STREAM_CUT || c == RS_STREAM_STALL || c == RS_TIMEOUT) &&
               (ending = done_unfinished(ex, &upto, 1))) {
        /* Cut or silent right after `data: [DONE]` or a terminal event (not
         * after a bad event, which stops the reading with whatever follows
         * it unread). The event is read as ended, for a terminal event's usage. */
        if (ex->ev_lines == 0 && upto == ex->held_len)
            (void)sse_line(ex, ex->held + ex->held_line, ex->held_len - ex->held_line);
        (void)sse_event(ex);
        ex->held_ok = upto; /* the event so far, then what ends it */
        ex->saw_done = 1;
        stream_complete(ex, 0, ending);
    } else if (ex->streaming) {
        stream_failed(ex, c, message);
    } else {
        attempt_failed(ex, c, message);
    }
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct exchange *ex = arg;
    enum watch_kind kind = ex->watch_kind;
    (void)fd;
    (void)what;
    ex->watch_kind = WATCH_NONE;
    if (kind == WATCH_FAILED) {
        char msg[sizeof ex->deferred_msg];
        snprintf(msg, sizeof msg, "%s", ex->deferred_msg);
        failed(ex, ex->deferred_class, msg);
    } else if (kind == WATCH_FIRST_BYTE)
        failed(ex, RS_TIMEOUT, "no first byte within timeouts.first_byte_ms");
    else if (kind == WATCH_HEAD)
        failed(ex, RS_TIMEOUT,
               ex->pol.timeouts.head_ms >= 0 ? "no response head within timeouts.head_ms"
                                             : "no response head within timeouts.total_ms");
    else if (kind == WATCH_IDLE)
        failed(ex, ex->sse ? RS_STREAM_STALL : RS_TIMEOUT,
               "nothing received within timeouts.idle_ms");
}

/* A failure noticed inside a transfer's own callback: stop the transfer now
 * and handle the failure from the loop, where starting the next attempt
 * (a new transfer) is allowed and the exchange may be freed. */
static void defer_failure(struct exchange *ex, enum rs_class c, const char *message)
{
    struct timeval now = {0, 0};
    stop_transfer(ex);
    ex->deferred_class = c;
    snprintf(ex->deferred_msg, sizeof ex->deferred_msg, "%s", message);
    if (ex->watch)
        evtimer_del(ex->watch);
    if (!ex->watch && !(ex->watch = evtimer_new(ex->gw->base, watch_cb, ex))) {
        /* Out of memory: the client cannot be answered normally. */
        failed(ex, c, message);
        return;
    }
    ex->watch_kind = WATCH_FAILED;
    evtimer_add(ex->watch, &now);
}

/* The retry of the current candidate, its backoff over: the same model
 * again, under the rules a first attempt keeps. At its max_concurrency it
 * waits in the capacity queue, in turn with the other waiters and for at
 * most queue.max_wait_ms; with no room to wait, or its breaker open, the
 * next candidate is tried instead. */
static void retry_same(struct exchange *ex)
{
    const struct rs_queue_conf *q = queue_conf(ex);
    int idx = ex->ranking[ex->cand].index;
    struct model_stats *ms = model_state(ex, idx);
    long cap = model_cap(ex, idx);
    int probe = 0;

    if (ms && cap > 0 && ms->in_flight >= cap) {
        ms->skipped_full++;
        if (ex->retry_queued && ex->wait_kind == WAIT_QUEUE) {
            queue_append(ex); /* still full: wait again, in turn */
            return;
        }
        if (q->max_waiting > 0 && ex->gw->n_waiting < q->max_waiting) {
            double now = gw_now();
            long ms_left = q->max_wait_ms;
            ex->queue_wait_ms = q->max_wait_ms;
            if (ex->deadline > 0 && now + (double)ms_left / 1000 > ex->deadline)
                ms_left = (long)((ex->deadline - now) * 1000) + 1;
            if (wait_arm(ex, WAIT_QUEUE, ms_left) == 0) {
                ex->retry_queued = 1;
                queue_append(ex);
                return;
            }
        }
    } else {
        ex->retry_queued = 0;
        if (ex->queued)
            queue_unlink(ex);
        wait_stop(ex);
        if (!ms || rs_breaker_admit(&ms->breaker, gw_now(), &probe)) {
            ex->probe = probe;
            start_attempt(ex);
            return;
        }
        ms->skipped_open++;
    }
    ex->retry_queued = 0;
    ex->given_up[ex->cand] = 1;
    ex->retries = 0;
    next_candidate(ex);
}

/* Why no candidate could start, for a 429 model_at_capacity: some full,
 * and maybe others skipped for their open breaker. */
static const char *no_room_words(int any_open)
{
    return any_open ? "every candidate model is at its max_concurrency or has an open circuit "
                      "breaker"
                    : "every candidate model is at its max_concurrency";
}

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
    struct exchange *ex = arg;
    enum wait_kind kind = ex->wait_kind;
    (void)fd;
    (void)what;
    ex->wait_kind = WAIT_NONE;
    held_end(ex);
    if (kind == WAIT_RETRY) {
        retry_same(ex);
    } else if (kind == WAIT_QUEUE && ex->retry_queued) {
        /* No room for the retry in time: the next candidate instead. */
        queue_unlink(ex);
        ex->retry_queued = 0;
        ex->given_up[ex->cand] = 1;
        ex->retries = 0;
        next_candidate(ex);
    } else if (kind == WAIT_QUEUE &&
               (ex->queue_early || (ex->deadline > 0 && ex->queue_until >= ex->deadline))) {
        /* A candidate's breaker admits a probe now: look again. Or the
         * wait was cut to retry.deadline_ms, whose answer next_candidate
         * gives (once the deadline has passed, else after the moment
         * left), as when a slot frees only after it: not a capacity
         * refusal that claims a wait of queue.max_wait_ms. */
        queue_unlink(ex);
        next_candidate(ex);
    } else if (kind == WAIT_QUEUE) {
        queue_unlink(ex);
        metrics_count_queue_rejected(ex->gw->metrics);
        ex->answer_retry_after = "1";
        fail_with(ex, 429, NULL, "model_at_capacity", "%s; waited %ld ms for room",
                  no_room_words(ex->queue_open), ex->queue_wait_ms);
    }
}

/* Start the first candidate still in play that its breaker admits and that
 * has room; else wait for room, fail fast, or give up. A retry waiting for
 * room (woken from the queue) tries its own model only. */
static void next_candidate(struct exchange *ex)
{
    const struct gw_conf *conf = ex->conf;
    const struct rs_queue_conf *q = queue_conf(ex);
    double now = gw_now(), soonest = 1e18;
    int any_full = 0, any_open = 0;
    size_t closest = SIZE_MAX;

    if (ex->n_attempts >= (unsigned)ex->req_retry.max_attempts) {
        give_up(ex, "retry.max_attempts reached");
        return;
    }
    if (ex->deadline > 0 && now >= ex->deadline) {
        if (ex->n_attempts)
            give_up(ex, "retry.deadline_ms passed");
        else
            fail_with(ex, 504, NULL, "deadline_exceeded",
                      "retry.deadline_ms (%ld ms) passed before any upstream could be tried",
                      ex->req_retry.deadline_ms);
        return;
    }
    if (ex->retry_queued) {
        retry_same(ex);
        return;
    }
    for (size_t i = 0; i < ex->n_ranked; i++) {
        struct model_stats *ms;
        long cap;
        int probe = 0;
        if (ex->given_up[i])
            continue;
        ms = model_state(ex, ex->ranking[i].index);
        cap = model_cap(ex, ex->ranking[i].index);
        if (ms && cap > 0 && ms->in_flight >= cap) {
            ms->skipped_full++;
            if (!any_full)
                ex->waited_model = ex->ranking[i].index; /* for the log, if none starts */
            any_full = 1;
            continue;
        }
        if (ms && !rs_breaker_admit(&ms->breaker, now, &probe)) {
            double r = rs_breaker_ready_in(&ms->breaker, now);
            ms->skipped_open++;
            any_open = 1;
            if (r < soonest) {
                soonest = r;
                closest = i;
            }
            continue;
        }
        if (ex->queued)
            queue_unlink(ex);
        wait_stop(ex);
        ex->cand = i;
        ex->probe = probe;
        ex->retries = 0;
        start_attempt(ex);
        return;
    }
    if (any_full && q->max_waiting > 0) {
        /* Wait for room: the first time with a time limit, after that in turn. */
        long ms;
        if (ex->queue_until == 0) {
            ms = q->max_wait_ms;
            ex->queue_wait_ms = q->max_wait_ms;
            if (ex->gw->n_waiting >= q->max_waiting) {
                metrics_count_queue_rejected(ex->gw->metrics);
                ex->answer_retry_after = "1";
                fail_with(ex, 429, NULL, "model_at_capacity",
                          "%s, and %ld requests are already waiting", no_room_words(any_open),
                          q->max_waiting);
                return;
            }
            if (ex->deadline > 0 && now + (double)ms / 1000 > ex->deadline)
                ms = (long)((ex->deadline - now) * 1000) + 1;
            ex->queue_until = now + (double)ms / 1000;
        } else {
            ms = (long)ceil((ex->queue_until - now) * 1000);
            if (ms < 0)
                ms = 0;
        }
        /* Room is not all that is waited for: a candidate skipped for its
         * open breaker may be tried once its cooldown is over, and no slot
         * freeing says when that is. */
        ex->queue_open = any_open;
        ex->queue_early = any_open && soonest * 1000 < (double)ms;
        if (ex->queue_early)
            ms = (long)ceil(soonest * 1000) + 1;
        if (wait_arm(ex, WAIT_QUEUE, ms)) {
            fail_with(ex, 500, NULL, "out_of_memory", "out of memory");
            return;
        }
        queue_append(ex);
        return;
    }
    if (any_full) {
        metrics_count_queue_rejected(ex->gw->metrics);
        ex->answer_retry_after = "1";
        fail_with(ex, 429, NULL, "model_at_capacity", "%s", no_room_words(any_open));
        return;
    }
    if (any_open && conf->set.breaker.try_closest && closest != SIZE_MAX) {
        ex->cand = closest;
        ex->probe = 0;
        ex->retries = 0;
        start_attempt(ex);
        return;
    }
    if (any_open && ex->n_attempts == 0) {
        long s = (long)ceil(soonest);
        snprintf(ex->retry_after_buf, sizeof ex->retry_after_buf, "%ld", s > 0 ? s : 1);
        ex->answer_retry_after = ex->retry_after_buf;
        fail_with(ex, 503, NULL, "circuit_open",
                  "every candidate model's circuit breaker is open (upstreams failing); "
                  "retry after %s s",
                  ex->retry_after_buf);
        return;
    }
    give_up(ex, any_open ? "the other candidates' breakers are open" : "no other candidate");
}

/* ==== Upstream callbacks ==== */

/* An upstream's header value that goes into the client's answer: CR, LF and
 * the other control characters (HTAB aside) become spaces (RFC 9110 section
 * 5.5), so the answer stays well-formed HTTP and gains no header of the
 * upstream's making. */
static void header_safe(char *v)
{
    for (; *v; v++)
        if (((unsigned char)*v < 0x20 && *v != '\t') || *v == 0x7f)
            *v = ' ';
}

static void on_head(void *arg, const struct up_head *head)
{
    struct exchange *ex = arg;
    const char *ct = head->content_type;
    ex->up_status = head->status;
    ex->head_seen = 1;
    snprintf(ex->up_ctype, sizeof ex->up_ctype, "%s", ct ? ct : "application/json");
    ex->up_ctype_given = ct != NULL;
    ex->up_close_delimited = head->close_delimited;
    snprintf(ex->up_retry_after, sizeof ex->up_retry_after, "%s",
             head->retry_after ? head->retry_after : "");
    header_safe(ex->up_ctype);
    header_safe(ex->up_retry_after);
    snprintf(ex->up_retry_after_ms, sizeof ex->up_retry_after_ms, "%s",
             head->retry_after_ms ? head->retry_after_ms : "");
    snprintf(ex->up_location, sizeof ex->up_location, "%s", head->location ? head->location : "");
    snprintf(ex->up_allow, sizeof ex->up_allow, "%s", head->allow ? head->allow : "");
    header_safe(ex->up_allow);
    snprintf(ex->up_request_id, sizeof ex->up_request_id, "%s",
             head->request_id ? head->request_id : "");
    snprintf(ex->up_relay, sizeof ex->up_relay, "%s", head->relay ? head->relay : "");
    if (head->status >= 300 && head->status < 400) {
        /* Not followed (the body and the API key would go wherever it points),
         * not relayed (the client's URL is the gateway's): an error now. */
        defer_failure(ex, RS_REDIRECT, "the upstream answered with a redirect");
        return;
    }
    if (head->content_encoding && strcasecmp(head->content_encoding, "identity") != 0) {
        /* Asked for identity, and nothing here decodes: the body, an error's
         * too, would reach the client as bytes it cannot read under a label
         * that does not say so. */
        char msg[sizeof ex->deferred_msg], enc[UP_ENCODING_CAP];
        snprintf(enc, sizeof enc, "%s", head->content_encoding);
        header_safe(enc);
        snprintf(msg, sizeof msg,
                 "the upstream answered %ld with Content-Encoding '%.48s', which the gateway "
                 "does not decode (it asks for identity)",
                 head->status, enc);
        defer_failure(ex, RS_BAD_RESPONSE, msg);
        return;
    }
    /* A stream request's 2xx with no Content-Type is read as the event
     * stream asked for (some servers leave it out); if it is not one, the
     * stream's own checks fail it. */
    ex->sse = ex->stream && head->status >= 200 && head->status < 300 &&
              (!ct || strncasecmp(ct, "text/event-stream", 17) == 0);
    if (ex->sse && !ct)
        snprintf(ex->up_ctype, sizeof ex->up_ctype, "text/event-stream");
    if (ex->stream && head->status >= 200 && head->status < 300 && !ex->sse) {
        /* A client that asked for a stream reads events: a whole JSON answer, or
         * an HTML page, is not one, and another candidate may do better. */
        char msg[sizeof ex->deferred_msg];
        snprintf(msg, sizeof msg, "a stream request answered with Content-Type '%.64s', "
                 "not text/event-stream", ex->up_ctype);
        defer_failure(ex, RS_BAD_RESPONSE, msg);
        return;
    }
    /* A stream's first byte is its first event; any other answer's is its head. */
    if (!ex->sse)
        watch_arm(ex, WATCH_IDLE, ex->pol.timeouts.idle_ms);
}

/* Send the checked events held so far to the client; keep the open one. */
static void flush_held(struct exchange *ex)
{
    if (!ex->held_ok)
        return;
    if (ex->req) {
        if (ex->t_first == 0)
            ex->t_first = gw_now(); /* time to the first event the client gets */
        hs_stream_write(ex->req, ex->held, ex->held_ok);
    }
    memmove(ex->held, ex->held + ex->held_ok, ex->held_len - ex->held_ok);
    ex->held_len -= ex->held_ok;
    ex->held_line -= ex->held_ok;
    ex->held_scan = ex->held_scan > ex->held_ok ? ex->held_scan - ex->held_ok : 0;
    ex->held_ok = 0;
}

static void commit_stream(struct exchange *ex)
{
    idle_arm(ex);
    if (ex->req) {
        ex->answer_relay = ex->up_relay;
        add_headers(ex);
        hs_resp_header(ex->req, "Cache-Control", "no-cache");
        hs_stream_begin(ex->req, (int)ex->up_status, ex->up_ctype);
    }
    ex->streaming = 1;
    affinity_record(ex); /* the response.created held back, if it had an id */
}

/* An event longer than server.max_stream_event_bytes: the events before it
 * go out (once streaming), it never does, and the attempt fails. */
static void event_too_long(struct exchange *ex)
{
    char msg[128];
    if (ex->streaming)
        flush_held(ex);
    snprintf(msg, sizeof msg, "an event is longer than server.max_stream_event_bytes (%zu)",
             ex->conf->set.max_stream_event_bytes);
    defer_failure(ex, RS_MALFORMED, msg);
}

/* Once a large event has gone out, the buffers that held it go back to a
 * small size, so a stream holds an event's memory only while it assembles
 * it, not for the rest of the stream. */
static void stream_buffers_trim(struct exchange *ex)
{
    if (ex->ev_cap > EVENT_KEEP && ex->ev_lines == 0) {
        free(ex->ev_data);
        ex->ev_data = NULL;
        ex->ev_cap = ex->ev_len = 0;
    }
    if (ex->held_cap > EVENT_KEEP && ex->held_len <= EVENT_KEEP / 4) {
        char *p = realloc(ex->held, EVENT_KEEP / 4);
        if (p) {
            ex->held = p;
            ex->held_cap = EVENT_KEEP / 4;
        }
    }
}

/* Stream bytes: held until their event is complete (its blank line) and its
 * data checked, then relayed as the upstream sent them; before the first
 * complete event with content nothing reaches the client, so failing over is
 * free. */
static int stream_data(struct exchange *ex, const char *data, size_t len)
{
    int rc;
    if (ex->saw_done) {
        /* The answer is whole: what comes after it is no part of it, and the
         * client's stream ends with [DONE] (or the terminal event). An LF
         * finishing the CRLF of its blank line is part of it: it goes out
         * after the CR (held, or relayed now), and is not counted. */
        if (ex->cr_ended && len && data[0] == '\n') {
            ex->cr_ended = 0;
            data++;
            len--;
            if (gw_reserve(&ex->held, &ex->held_cap, ex->held_len + 1, 4096) == 0) {
                ex->held[ex->held_len++] = '\n';
                ex->held_line = ex->held_ok = ex->held_len;
                if (ex->streaming)
                    flush_held(ex);
            }
        }
        ex->after_done += len;
        return UP_CONSUMED;
    }
    if (ex->streaming && ex->req &&
        hs_req_pending_output(ex->req) > ex->conf->set.stream_buffer_bytes) {
        /* Backpressure: hold the upstream while the client is behind. */
        ex->paused = 1;
        /* Resumed when the client has caught up: asked for here, as the
         * server's own mark (a reload may have raised the setting past
         * this request's) may never be reached. */
        hs_req_want_drain(ex->req);
        watch_stop(ex);
        return UP_PAUSE;
    }
    if (!ex->bom_checked) {
        /* A UTF-8 BOM at the very start of the body is no part of the
         * stream: an SSE parser drops it, and so does the gateway, before
         * reading lines (the first event is checked as any other) and
         * without relaying it. It may come over more than one read. */
        static const char bom[] = "\xEF\xBB\xBF";
        size_t k = 0;
        while (k < len && ex->bom_seen + k < 3 && data[k] == bom[ex->bom_seen + k])
            k++;
        if (ex->bom_seen + k == 3) {
            ex->bom_checked = 1;
            data += k;
            len -= k;
            if (len == 0)
                return UP_CONSUMED; /* the read was the BOM, or its end */
        } else if (k == len) {
            ex->bom_seen += (unsigned)k; /* all of it so far may be a BOM */
            return UP_CONSUMED;
        } else {
            /* Not a BOM: the bytes held back as the start of one, if any,
             * are the body's. */
            ex->bom_checked = 1;
            if (ex->bom_seen > 0) {
                if (gw_reserve(&ex->held, &ex->held_cap, ex->held_len + ex->bom_seen, 4096) != 0) {
                    defer_failure(ex, RS_PROTOCOL, "out of memory holding the stream");
                    return UP_CONSUMED;
                }
                memcpy(ex->held + ex->held_len, bom, ex->bom_seen);
                ex->held_len += ex->bom_seen;
            }
        }
    }
    if (gw_reserve(&ex->held, &ex->held_cap, ex->held_len + len, 4096) != 0) {
        defer_failure(ex, RS_PROTOCOL, "out of memory holding the stream");
        return UP_CONSUMED;
    }
    memcpy(ex->held + ex->held_len, data, len);
    ex->held_len += len;
    for (;;) {
        /* A line ends with LF, CRLF or a bare CR (the SSE rule). */
        const char *line, *end = ex->held + ex->held_len, *nl, *cr;
        size_t n;
        if (ex->cr_ended && ex->held_line < ex->held_len) {
            /* The last line ended with the last byte then held, a CR: an LF
             * now is the rest of its CRLF, not an empty line. */
            ex->cr_ended = 0;
            if (ex->held[ex->held_line] == '\n') {
                if (ex->held_ok == ex->held_line)
                    ex->held_ok++; /* the CRLF of the blank line ending an event */
                ex->held_line++;
            }
        }
        line = ex->held + ex->held_line;
        const char *from = ex->held_scan > ex->held_line && ex->held_scan <= ex->held_len
                               ? ex->held + ex->held_scan
                               : line;
        nl = memchr(from, '\n', (size_t)(end - from));
        cr = memchr(from, '\r', (size_t)((nl ? nl : end) - from));
        if (!nl && !cr) {
            ex->held_scan = ex->held_len;
            break;
        }
        n = (size_t)((cr ? cr : nl) - line);
        if (cr && cr + 1 != nl) {
            nl = cr; /* a bare CR, or a CR that may be half a CRLF */
            ex->cr_ended = cr + 1 == end;
        }
        ex->held_line = (size_t)(nl - ex->held) + 1;
        if (n > 0) {
            if (sse_line(ex, line, n) < 0) {
                defer_failure(ex, RS_PROTOCOL, "out of memory holding the stream");
                return UP_CONSUMED;
            }
            continue;
        }
        if (ex->held_line - ex->held_ok > ex->conf->set.max_stream_event_bytes) {
            /* Whole in one read, so the check below the loop missed it. */
            event_too_long(ex);
            return UP_CONSUMED;
        }
        rc = sse_event(ex);
        if (rc == -2) {
            /* An error before anything was relayed: the held events go with it. */
            defer_failure(ex, RS_SERVER_ERROR, ex->event_error);
            return UP_CONSUMED;
        }
        if (rc < 0) {
            /* Relay the events before it, then fail; this one never goes out. */
            if (ex->streaming)
                flush_held(ex);
            defer_failure(ex, RS_MALFORMED,
                          rc == -3 ? EVENT_NUL_WORDS
                                   : "an event's data is neither JSON nor [DONE]");
            return UP_CONSUMED;
        }
        ex->held_ok = ex->held_line; /* a whole event, checked: it may go out */
        if (ex->saw_done) {
            /* Nothing after the end of the answer is relayed (see above). */
            ex->after_done += ex->held_len - ex->held_ok;
            ex->held_len = ex->held_line = ex->held_ok;
            ex->held_scan = 0;
            ex->ev_len = 0;
            ex->ev_lines = 0;
            break;
        }
    }
    if (ex->held_len - ex->held_ok > ex->conf->set.max_stream_event_bytes) {
        /* An event is only checked whole, so it is held whole: one that
         * never ends would grow without bound. */
        event_too_long(ex);
        return UP_CONSUMED;
    }
    /* Only checked events count toward HOLD_CAP: an unfinished one is not
     * known to be relayable, and committing on it would give the client a
     * 200 and lose the fallback for an answer with nothing in it. It is
     * bounded by server.max_stream_event_bytes above, a failed attempt when
     * it passes it. */
    if (!ex->streaming && (ex->event_seen || ex->held_ok > HOLD_CAP))
        commit_stream(ex);
    if (ex->streaming) {
        flush_held(ex);
        stream_buffers_trim(ex);
    }
    return UP_CONSUMED;
}

/* The class of an attempt whose stream came whole: ok, unless an event the
 * client already had carried the upstream's error (the engine failed). */
static enum rs_class whole_class(const struct exchange *ex)
{
    return ex->error_event ? RS_SERVER_ERROR : RS_OK;
}

/* The stream is whole ([DONE] came): relay what is held and end the client's
 * stream. clean: the transfer ended normally, so the bytes after the last
 * checked line are relayed too (a failure's are not: they may be what
 * failed). ending: what completes the last event, or NULL. */
static void stream_complete(struct exchange *ex, int clean, const char *ending)
{
    if (!ex->streaming)
        commit_stream(ex);
    if (clean)
        ex->held_ok = ex->held_len;
    if (ex->resp_failed)
        ex->error = "response_failed"; /* relayed as it came; logged as what it is */
    if (ex->error_event)
        ex->error = "upstream_error_event"; /* relayed too, past the point of fallback */
    flush_held(ex);
    if (ending && ex->req) {
        if (ex->t_first == 0)
            ex->t_first = gw_now();
        hs_stream_write(ex->req, ending, strlen(ending));
    }
    attempt_end(ex, whole_class(ex), -1, 1);
    if (ex->req)
        hs_stream_end(ex->req);
    ex->req = NULL;
    finish(ex, (int)ex->up_status);
}

static int on_data(void *arg, const char *data, size_t len)
{
    struct exchange *ex = arg;
    if (ex->sse) {
        int rc, was_done = ex->saw_done;
        if (ex->streaming && !ex->req)
            return UP_CONSUMED;
        rc = stream_data(ex, data, len);
        /* After [DONE] the grace to end runs from it: more bytes do not extend it. */
        if (rc == UP_CONSUMED && (ex->xfer || ex->mock) && !ex->paused && !was_done)
            idle_arm(ex);
        return rc;
    }
    watch_arm(ex, WATCH_IDLE, ex->pol.timeouts.idle_ms);
    if (ex->resp_len + len > ex->conf->set.max_response_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "the response is larger than server.max_response_bytes (%zu)",
                 ex->conf->set.max_response_bytes);
        defer_failure(ex, RS_TOO_LARGE, msg);
        return UP_CONSUMED;
    }
    if (gw_reserve(&ex->resp, &ex->resp_cap, ex->resp_len + len + 1, 4096) != 0) {
        defer_failure(ex, RS_PROTOCOL, "out of memory buffering the response");
        return UP_CONSUMED;
    }
    memcpy(ex->resp + ex->resp_len, data, len);
    ex->resp_len += len;
    return UP_CONSUMED;
}

/* A 2xx body the close ends (up_close_delimited), that stops inside an
 * object more bytes could complete, was cut short by that close: the
 * attempt fails as a cut, as a body short of its Content-Length does, not
 * as a malformed one. On the endpoints that answer an object, nothing at
 * all is such a start; a request about a response id, whose answer is
 * relayed as it came and need not be an object, is cut only once its JSON
 * has begun (an empty or blank body is relayed). Returns whether it failed
 * the attempt. */
static int close_cut(struct exchange *ex)
{
    const char *b = ex->resp ? ex->resp : "";
    size_t i = 0;
    char msg[200];
    if (!ex->up_close_delimited || is_json_object(b, ex->resp_len))
        return 0;
    if (ex->op_method)
        while (i < ex->resp_len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
            i++;
    if ((ex->op_method && i == ex->resp_len) || js_object_prefix(b, ex->resp_len) != JS_OPEN)
        return 0;
    snprintf(msg, sizeof msg,
             "the upstream closed the connection before the response body's JSON "
             "ended, after %zu bytes (a body with neither Content-Length nor chunks "
             "ends at the close)",
             ex->resp_len);
    failed(ex, RS_STREAM_CUT, msg);
    return 1;
}

/* A 2xx answer that is no whole JSON object, failed with what it is, found
 * again on this failure only. Not an object at its top level: malformed
 * under a JSON content type; under another (an HTML page from a proxy or a
 * login portal, plain text) not an answer at all. Holding a raw NUL byte,
 * which no JSON text holds: malformed, at its place. Else broken inside a
 * value (`"usage":{"total_tokens":tru}`, a raw LF or bad UTF-8 in the
 * content): malformed, in jansson's words for the fault and its place;
 * its flags take what is JSON though jansson refuses it by default
 * (\u0000 in a string, an integer past 64 bits), so that the words are for
 * the fault. */
static void not_an_object(struct exchange *ex)
{
    json_error_t je;
    char msg[sizeof je.text + 96];
    int line, column;
    json_t *j;
    if (!is_json_object(ex->resp ? ex->resp : "", ex->resp_len)) {
        int json = strstr(ex->up_ctype, "json") != NULL;
        snprintf(msg, sizeof msg, "the upstream's answer is not a JSON object%s%.64s%s",
                 json ? "" : " (Content-Type '", json ? "" : ex->up_ctype, json ? "" : "')");
        failed(ex, json ? RS_MALFORMED : RS_BAD_RESPONSE, msg);
        return;
    }
    if (js_find_nul(ex->resp, ex->resp_len, &line, &column)) {
        snprintf(msg, sizeof msg,
                 "the upstream's answer holds a NUL byte at line %d, column %d " JS_NUL_WHY, line,
                 column);
        failed(ex, RS_MALFORMED, msg);
        return;
    }
    j = json_loadb(ex->resp, ex->resp_len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (j)
        snprintf(msg, sizeof msg, "the upstream's answer is not valid JSON");
    else
        snprintf(msg, sizeof msg, "the upstream's answer is not valid JSON: %s (line %d, column %d)",
                 je.text, je.line, je.column);
    json_decref(j);
    failed(ex, RS_MALFORMED, msg);
}

static void on_done(void *arg, enum up_error err, const char *message)
{
    struct exchange *ex = arg;
    ex->xfer = NULL;
    ex->mock = NULL;
    if (ex->sse) {
        const char *ending = NULL, *last_ending = NULL;
        int rc, open = ex->held_len > ex->held_ok, mid_line = ex->held_len > ex->held_line;
        if (err == UP_OK && !ex->saw_done && open) {
            /* A clean end of the body inside an event ends it as its blank
             * line would, when its data is whole (JSON or [DONE]): nothing
             * the upstream sent is lost. A last line without its line end
             * ends with it. */
            size_t data_len;
            unsigned lines = ex->ev_lines;
            int line_open;
            if (mid_line &&
                sse_line(ex, ex->held + ex->held_line, ex->held_len - ex->held_line) < 0) {
                failed(ex, RS_PROTOCOL, "out of memory holding the stream");
                return;
            }
            /* The last line, unended, was a data line: more of it could have come. */
            line_open = mid_line && ex->ev_lines > lines;
            data_len = ex->ev_len; /* sse_event() empties the event, not its buffer */
            rc = sse_event(ex);
            if (rc == -2) {
                char why[sizeof ex->event_error];
                snprintf(why, sizeof why, "%s", ex->event_error);
                failed(ex, RS_SERVER_ERROR, why);
                return;
            }
            if (rc == -3) {
                failed(ex, RS_MALFORMED, EVENT_NUL_WORDS);
                return;
            }
            if (rc < 0 && !data_cut_short(ex->ev_data, data_len, line_open)) {
                failed(ex, RS_MALFORMED,
                       "the stream ended inside an event whose data is neither JSON nor "
                       "[DONE], nor the start of either");
                return;
            }
            if (rc < 0) {
                /* The body ended before the event did, inside its JSON (or
                 * its [DONE]): the event was cut short, which is a cut
                 * stream, as a close before [DONE] is, not malformed data.
                 * Nothing of it is relayed. */
                failed(ex, RS_STREAM_CUT,
                       ex->ep == EP_RESPONSES
                           ? "the stream ended inside an event, its data cut short, "
                             "without a terminal event"
                           : "the stream ended inside an event, its data cut short, "
                             "without [DONE]");
                return;
            }
            /* A [DONE] there gets what the upstream left out (the line end,
             * the blank line), so the client's parser sees the event. After a
             * CR, an LF alone would only make it a CRLF. */
            if (ex->saw_done)
                ending = mid_line || ex->cr_ended ? "\n\n" : "\n";
            else
                last_ending = mid_line || ex->cr_ended ? "\n\n" : "\n";
        }
        if (ex->saw_done) {
            /* Whole. A transport failure after [DONE] lost nothing. */
            stream_complete(ex, err == UP_OK, ending);
            return;
        }
        if (err == UP_OK && ex->ep != EP_RESPONSES && !ex->error_event && choices_finished(ex)) {
            /* A clean end without [DONE] after every choice had its finish
             * reason: the answer is whole, only [DONE] is missing (llama.cpp's
             * server before PR #9459, TGI before PR #2221 leave it out). The
             * client gets one of the gateway's, after a blank line ending
             * the event left open, if any (see above for the CR), and the
             * attempt is a success. */
            static const char *const done_after[] = {"data: [DONE]\n\n", "\ndata: [DONE]\n\n",
                                                     "\n\ndata: [DONE]\n\n"};
            ex->done_added = 1;
            if (ex->ms)
                ex->ms->streams_done_added++;
            stream_complete(ex, 1, done_after[!open ? 0 : mid_line || ex->cr_ended ? 2 : 1]);
            return;
        }
        if (last_ending && ex->streaming) {
            /* The stream is cut, but its last event came whole: the client
             * gets it, with what ends it, before the error event, as it
             * would have had it had its blank line come. (Before the commit
             * nothing went out, and the request falls back.) */
            ex->held_ok = ex->held_line = ex->held_len; /* its last line read too */
            ex->cr_ended = 0;
            flush_held(ex);
            if (ex->req)
                hs_stream_write(ex->req, last_ending, strlen(last_ending));
        }
        failed(ex, err == UP_OK ? RS_STREAM_CUT : rs_class_of_transport(err, ex->head_seen),
               err != UP_OK             ? message
               : ex->ep == EP_RESPONSES ? "the stream ended without a terminal event "
                                          "(response.completed, .incomplete or .failed)"
                                        : "the stream ended without [DONE]");
        return;
    }
    if (err != UP_OK) {
        failed(ex, rs_class_of_transport(err, ex->head_seen), message);
        return;
    }
    ex->body_complete = 1;
    if (ex->up_status >= 600) {
        char msg[96];
        snprintf(msg, sizeof msg, "the upstream answered status %ld, which HTTP does not have",
                 ex->up_status);
        failed(ex, RS_PROTOCOL, msg);
        return;
    }
    if (ex->up_status >= 300) {
        failed(ex,
               rs_class_of_answer(ex->up_status, ex->resp, ex->resp_len, ex->up_retry_after,
                                  ex->up_retry_after_ms),
               "the upstream answered with an error status");
        return;
    }
    if (ex->up_status < 200) {
        failed(ex, RS_PROTOCOL, "the upstream's answer is not a JSON object");
        return;
    }
    if (close_cut(ex))
        return;
    if (!ex->op_method && js_object_prefix(ex->resp ? ex->resp : "", ex->resp_len) != JS_WHOLE) {
        /* Every endpoint answers a JSON object (a request about a response
         * id is answered as it came: a DELETE's 204 has no body), read
         * whole by the grammar in one pass: a top-level scan alone would
         * pass an answer broken inside a value to a client whose parser
         * refuses it. not_an_object() says what it is instead. */
        not_an_object(ex);
        return;
    }
    if (!ex->op_method) {
        /* A 2xx that is an error and no answer (OpenRouter's, when the
         * provider failed after the request was accepted) is a failure of
         * the attempt, as the same object in a stream is. */
        char why[200], msg[256];
        enum rs_class c = rs_class_of_ok_body(ex->resp, ex->resp_len, why, sizeof why);
        if (c != RS_OK) {
            if (why[0])
                snprintf(msg, sizeof msg, "the upstream answered %ld with an error: '%s'",
                         ex->up_status, why);
            else
                snprintf(msg, sizeof msg, "the upstream answered %ld with an error object",
                         ex->up_status);
            failed(ex, c, msg);
            return;
        }
    }
    if (!ex->op_method) { /* a retrieved response's usage was counted when it was made */
        usage_from_body(ex);
        affinity_record(ex);
    } else if (strcmp(ex->op_method, "DELETE") == 0 && ex->up_status < 300) {
        /* Deleted upstream: a later request about it is the gateway's 404. */
        af_table_remove(ex->gw->affinity, ex->op_id, strlen(ex->op_id));
    }
    attempt_end(ex, RS_OK, -1, 1);
    if (ex->req) {
        ex->answer_relay = ex->up_relay;
        add_headers(ex);
        /* A buffered answer can be large, and a client that does not read
         * it is only found out at the write timeout: its log line says
         * whether it was written, not just queued. */
        ex->sent = calloc(1, sizeof *ex->sent);
        if (ex->sent && hs_respond_tracked(ex->req, (int)ex->up_status, ex->up_ctype,
                                           ex->resp ? ex->resp : "", ex->resp_len, sent_done,
                                           ex->sent) != 0) {
            free(ex->sent);
            ex->sent = NULL; /* answered all the same, untracked */
        } else if (!ex->sent) {
            hs_respond(ex->req, (int)ex->up_status, ex->up_ctype, ex->resp ? ex->resp : "",
                       ex->resp_len);
        }
        ex->req = NULL;
    }
    finish(ex, (int)ex->up_status);
}

static const struct up_callbacks upstream_cbs = {on_head, on_data, on_done};

static void sent_log_free(struct sent_log *sl)
{
    free(sl->route);
    free(sl->model);
    free(sl->strategy);
    free(sl->error);
    free(sl->message);
    free(sl->tries);
    free(sl);
}

/* Copy the log line finish() made into sl, for sent_done(). Returns 0, or
 * -1 out of memory. */
static int sent_log_fill(struct sent_log *sl, struct gw *gw, const struct gw_log *log)
{
    sl->gw = gw;
    sl->log = *log;
    snprintf(sl->id, sizeof sl->id, "%s", log->id);
    sl->log.id = sl->id;
    snprintf(sl->upstream_id, sizeof sl->upstream_id, "%s",
             log->upstream_request_id ? log->upstream_request_id : "");
    sl->log.upstream_request_id = log->upstream_request_id ? sl->upstream_id : NULL;
    snprintf(sl->path, sizeof sl->path, "%s", log->path);
    sl->log.path = sl->path;
    sl->route = strdup(log->route);
    sl->model = strdup(log->model);
    sl->strategy = strdup(log->strategy);
    sl->error = log->error ? strdup(log->error) : NULL;
    sl->message = log->message ? strdup(log->message) : NULL;
    sl->tries = log->attempts_json ? strdup(log->attempts_json) : NULL;
    if (!sl->route || !sl->model || !sl->strategy || (log->error && !sl->error) ||
        (log->message && !sl->message) || (log->attempts_json && !sl->tries))
        return -1;
    sl->log.route = sl->route;
    sl->log.model = sl->model;
    sl->log.strategy = sl->strategy;
    sl->log.error = sl->error;
    sl->log.message = sl->message;
    sl->log.attempts_json = sl->tries;
    sl->ready = 1;
    return 0;
}

static void sent_done(void *arg, int delivered)
{
    struct sent_log *sl = arg;
    if (!sl->ready) { /* finish() could not copy the line: it logged it itself */
        sent_log_free(sl);
        return;
    }
    if (!delivered) {
        sl->log.status = 499;
        sl->log.error = "client_gone";
    }
    metrics_count_request(sl->gw->metrics, gw_endpoint_label(sl->log.path), sl->log.route,
                          sl->log.model, sl->log.status);
    gw_log_request(sl->gw, &sl->log);
    sent_log_free(sl);
}

/* ==== Client callbacks ==== */

static void on_drain(void *arg)
{
    struct exchange *ex = arg;
    if (!ex->paused)
        return;
    ex->paused = 0;
    idle_arm(ex);
    if (ex->xfer)
        up_xfer_resume(ex->xfer);
    else if (ex->mock)
        mock_resume(ex->mock);
}

/* The client went away. After [DONE] (or a Responses stream's terminal
 * event) the upstream's answer was whole, only the end of its transfer was
 * still to come: the attempt is a success for the breaker, and when the
 * client had all of it (the stream's head and every byte written), the
 * request is too, logged and counted with its status as stream_complete()
 * would. Otherwise it is a 499 and the breaker hears nothing. */
static void on_abort(void *arg)
{
    struct exchange *ex = arg;
    int whole = ex->sse && ex->saw_done && ex->in_attempt;
    int delivered = whole && ex->streaming && hs_req_pending_output(ex->req) == 0;
    ex->req = NULL;
    gw_embed_cancel(ex->embed);
    ex->embed = NULL;
    if (ex->xfer || ex->mock)
        stop_transfer(ex);
    attempt_end(ex, whole ? whole_class(ex) : RS_OK, -1, whole);
    if (delivered) {
        if (ex->resp_failed)
            ex->error = "response_failed";
        if (ex->error_event)
            ex->error = "upstream_error_event";
        finish(ex, (int)ex->up_status);
        return;
    }
    ex->error = "client_closed";
    finish(ex, 499);
}

/* ==== Attempts: starting one ==== */

static const char *endpoint_path(enum gw_endpoint ep)
{
    switch (ep) {
    case EP_CHAT:
        return "/v1/chat/completions";
    case EP_COMPLETIONS:
        return "/v1/completions";
    case EP_RESPONSES:
        return "/v1/responses";
    default:
        return "/v1/embeddings";
    }
}

/* The endpoint label of the exchange's metrics (gw_endpoint_label()). */
static const char *ex_endpoint(const struct exchange *ex)
{
    return ex->op_method ? "/v1/responses/" : endpoint_path(ex->ep);
}

/* An admitted probe that will not run after all. */
static void release_probe(struct exchange *ex)
{
    struct model_stats *ms;
    if (!ex->probe)
        return;
    ms = model_state(ex, ex->model);
    if (ms)
        rs_breaker_release(&ms->breaker, 1);
    ex->probe = 0;
}

/* Start an attempt on ranking[ex->cand]; its breaker has admitted it. */
static void start_attempt(struct exchange *ex)
{
    const struct gw_model *gm;
    struct js_rewrite rw;
    const char *body;
    size_t len;
    int rc;

    ex->model = ex->ranking[ex->cand].index;
    /* The headers and the estimated cost counted describe the model that
     * answers: after a fallback, not the first choice. */
    ex->est_quality = ex->ranking[ex->cand].predicted_quality;
    ex->est_cost = ex->ranking[ex->cand].estimated_cost;
    gm = &ex->conf->models[ex->model];
    ex->pol = ex->conf->set.policy;
    if (ex->route_idx >= 0)
        rs_policy_merge(&ex->pol, &ex->conf->route_policy[ex->route_idx]);
    rs_policy_merge(&ex->pol, &gm->policy);
    if (!ex->req) {
        /* The client left while this attempt waited. */
        release_probe(ex);
        ex->error = "client_closed";
        finish(ex, 499);
        return;
    }
    body = hs_req_body(ex->req, &len);
    free(ex->fwd);
    ex->fwd = NULL;
    rw.model_json = gm->model_json;
    rw.remove = extension_members;
    if (ex->op_method) {
        /* Sent as it came (a cancel's body, if any, names no model). */
        rc = (ex->fwd = malloc(len + 1)) ? 0 : -2;
        if (ex->fwd) {
            memcpy(ex->fwd, body, len);
            ex->fwd_len = len;
        }
    } else {
        rc = js_rewrite_body(body, len, &rw, &ex->fwd, &ex->fwd_len);
    }
    if (rc) {
        release_probe(ex);
        fail_with(ex, rc == -2 ? 500 : 400, NULL, NULL,
                  rc == -2 ? "out of memory preparing the upstream request"
                           : "the request body could not be scanned for forwarding");
        return;
    }
    /* Per-attempt state. */
    ex->up_status = 0;
    ex->up_ctype[0] = '\0';
    ex->up_ctype_given = 0;
    ex->up_close_delimited = 0;
    ex->up_retry_after[0] = '\0';
    ex->up_retry_after_ms[0] = '\0';
    ex->up_location[0] = '\0';
    ex->up_allow[0] = '\0';
    ex->up_request_id[0] = '\0';
    ex->up_relay[0] = '\0';
    ex->head_seen = ex->sse = ex->saw_done = ex->event_seen = ex->error_event = 0;
    ex->after_done = 0;
    ex->resp_failed = 0;
    ex->seq_last = -1;
    ex->resp_id[0] = '\0';
    ex->resp_id_len = 0;
    ex->cr_ended = 0;
    ex->ev_named_error = ex->ev_error_field = 0;
    ex->bom_seen = 0;
    ex->bom_checked = 0;
    memset(ex->choices_seen, 0, sizeof ex->choices_seen);
    memset(ex->choices_done, 0, sizeof ex->choices_done);
    ex->choices_lost = 0;
    ex->done_added = 0;
    ex->body_complete = 0;
    ex->held_len = ex->held_ok = ex->held_line = ex->held_scan = 0;
    ex->ev_len = 0;
    ex->ev_lines = 0;
    ex->resp_len = 0;
    ex->t_first = 0;
    /* Usage is the answer's: what a failed attempt's stream carried (vLLM's
     * continuous_usage_stats put it in the role chunk held back) is another
     * model's, and would be counted at this one's prices. */
    ex->prompt_tokens = -1;
    ex->completion_tokens = -1;
    ex->ms = model_state(ex, ex->model);
    if (ex->ms)
        ex->ms->in_flight++;
    ex->in_attempt = 1;
    ex->n_attempts++;
    ex->attempt_fresh = ex->fresh_next;
    ex->fresh_next = 0;
    ex->t_up_start = gw_now();
    /* A stream's head comes at once and its first event when generation
     * starts: first_byte_ms bounds the wait for that. A non-stream head comes
     * only once the whole answer is generated, which may take minutes:
     * head_ms bounds it, by default the attempt's total_ms. */
    if (ex->stream)
        watch_arm(ex, WATCH_FIRST_BYTE, ex->pol.timeouts.first_byte_ms);
    else
        watch_arm(ex, WATCH_HEAD, rs_timeouts_head_ms(&ex->pol.timeouts));
    if (gm->is_mock) {
        struct mock_call call;
        call.ep = ex->ep;
        call.stream = ex->stream;
        call.include_usage = ex->include_usage;
        call.model_json = gm->model_json;
        call.prompt_tokens = ex->input_tokens + ex->token_ids;
        call.n_inputs = ex->n_inputs;
        call.bad_role = ex->bad_role;
        call.bad_role_at = ex->bad_role_at;
        call.bad_role_text = ex->bad_role_text;
        call.emb_base64 = ex->emb_base64;
        call.emb_dims = ex->emb_dims;
        call.n = ex->n_set ? ex->n : 1;
        call.n_bad = ex->n_bad;
        call.n_text = ex->n_text;
        call.n_prompts = ex->n_prompts ? ex->n_prompts : 1;
        call.max_tokens = ex->max_tokens;
        call.limit_bad = ex->limit_bad;
        call.limit_bad_type = ex->limit_bad_type;
        call.limit_text = ex->limit_text;
        call.stream_options_unstreamed = ex->stream_options_unstreamed;
        call.sampling_bad = ex->sampling_bad;
        call.sampling_bad_type = ex->sampling_bad_type;
        call.sampling_above = ex->sampling_above;
        call.sampling_text = ex->sampling_text;
        ex->mock = mock_start(ex->gw->base, &gm->mock, &call, &upstream_cbs, ex);
        if (!ex->mock) {
            ex->gone_label = "out_of_memory"; /* nothing went out: no attempt counted */
            attempt_end(ex, RS_OK, -1, 0);
            fail_with(ex, 500, NULL, "out_of_memory", "out of memory starting the mock");
        }
        return;
    } else {
        struct up_request ur;
        size_t ul = strlen(gm->base_url) + 32 + (ex->op_target ? strlen(ex->op_target) : 0);
        free(ex->url);
        ex->url = malloc(ul);
        if (!ex->url) {
            ex->gone_label = "out_of_memory"; /* nothing went out: no attempt counted */
            attempt_end(ex, RS_OK, -1, 0);
            fail_with(ex, 500, NULL, "out_of_memory", "out of memory");
            return;
        }
        /* base_url is the API root ("http://host/v1"): drop our "/v1". */
        snprintf(ex->url, ul, "%s%s", gm->base_url,
                 ex->op_target ? ex->op_target : endpoint_path(ex->ep) + 3);
        memset(&ur, 0, sizeof ur);
        ur.method = ex->op_method;
        ur.url = ex->url;
        ur.authorization = gm->auth;
        ur.headers = gm->headers;
        ur.body = ex->fwd;
        ur.body_len = ex->fwd_len;
        ur.connect_timeout_ms = ex->pol.timeouts.connect_ms;
        ur.timeout_ms = ex->pol.timeouts.total_ms;
        ur.fresh_connection = ex->attempt_fresh;
        ex->xfer = up_xfer_start(ex->gw->upstream, &ur, &upstream_cbs, ex);
        if (!ex->xfer) {
            ex->gone_label = "out_of_memory"; /* nothing went out: no attempt counted */
            attempt_end(ex, RS_OK, -1, 0);
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
    /* A request refused or gone while it waited for room names the model it waited for. */
    int model_idx = ex->model >= 0 ? ex->model : ex->waited_model;
    const char *model = model_idx >= 0 ? ex->conf->models[model_idx].info->name : "";
    const struct lr_model_info *mi = ex->model >= 0 ? ex->conf->models[ex->model].info : NULL;
    double cost = NAN;
    struct gw_log log;
    char tries[ATTEMPT_LOG_CAP + 4];

    queue_unlink(ex);
    held_end(ex);
    if (ex->l_prev)
        ex->l_prev->l_next = ex->l_next;
    else if (gw->live == ex)
        gw->live = ex->l_next;
    if (ex->l_next)
        ex->l_next->l_prev = ex->l_prev;
    if (mi && ex->prompt_tokens >= 0 && ex->completion_tokens >= 0 &&
        !isnan(mi->cost_per_input_token) && !isnan(mi->cost_per_output_token))
        cost = (double)ex->prompt_tokens * mi->cost_per_input_token +
               (double)ex->completion_tokens * mi->cost_per_output_token;
    if (!ex->sent)
        metrics_count_request(gw->metrics, ex_endpoint(ex), ex->route, model, status);
    if (ex->n_ranked)
        metrics_count_attempts(gw->metrics, ex->n_attempts);
    if (ex->ms && status < 300 && !ex->op_method) {
        if (ex->prompt_tokens > 0)
            ex->ms->tokens_in += (uint64_t)ex->prompt_tokens;
        if (ex->completion_tokens > 0)
            ex->ms->tokens_out += (uint64_t)ex->completion_tokens;
        if (!isnan(cost))
            ex->ms->actual_cost += cost;
        if (ex->prompt_tokens < 0 || ex->completion_tokens < 0)
            ex->ms->unmetered++;
        if (!isnan(ex->est_cost))
            ex->ms->estimated_cost += ex->est_cost;
    }
    metrics_observe_duration(gw->metrics, total);
    /* Every attempt's time is the upstream's, not only the one that answered:
     * a fallback after a timeout spent that time waiting on the upstream too.
     * A retry's backoff and the wait for room are the policy's, left out too. */
    {
        double own = total - ex->t_up_all - ex->t_held_all;
        metrics_observe_overhead(gw->metrics, own > 0 ? own : 0);
    }

    snprintf(tries, sizeof tries, "[%.*s]", (int)ex->tries_len, ex->tries);
    memset(&log, 0, sizeof log);
    log.id = ex->id;
    log.method = ex->op_method ? ex->op_log_method : "POST";
    log.path = ex->op_method ? ex->op_path : endpoint_path(ex->ep);
    log.route = ex->route;
    log.model = model;
    log.strategy = model_idx >= 0 ? ex->strategy : "";
    log.status = status;
    log.stream = ex->stream;
    log.latency_ms = total * 1000;
    log.upstream_ms = ex->t_up_start > 0 ? up * 1000 : -1;
    log.ttft_ms = ex->stream && ex->t_first > 0 ? (ex->t_first - ex->t_up_start) * 1000 : -1;
    log.tokens_in = ex->prompt_tokens;
    log.tokens_out = ex->completion_tokens;
    log.cost = cost;
    log.error = ex->error;
    log.message = ex->log_msg;
    log.attempts = (int)ex->n_attempts;
    log.attempts_json = ex->tries_len ? tries : NULL;
    log.after_done_bytes = (long long)ex->after_done;
    log.done_added = ex->done_added;
    log.query_blank = ex->query_blank;
    log.upstream_request_id = ex->up_request_id[0] ? ex->up_request_id : NULL;
    if (!ex->sent || sent_log_fill(ex->sent, gw, &log) != 0) {
        if (ex->sent)
            metrics_count_request(gw->metrics, ex_endpoint(ex), ex->route, model, status);
        gw_log_request(gw, &log);
    }

    if (ex->watch)
        event_free(ex->watch);
    if (ex->wait)
        event_free(ex->wait);
    gw_conf_unref(ex->conf);
    free(ex->fwd);
    free(ex->url);
    free(ex->op_target);
    free(ex->resp);
    free(ex->held);
    free(ex->ev_data);
    free(ex->last_body);
    free(ex->log_msg);
    free(ex->ranking);
    free(ex->given_up);
    gw_embed_cancel(ex->embed);
    json_decref(ex->routing);
    free(ex->query);
    free(ex->vec);
    free(ex);
}
/* ==== Reading the request ==== */

struct text {
    char *p;
    size_t len, cap;
};

/* Append n bytes of s, after sep when t holds some text already. A NUL
 * ("\u0000", which a prompt may hold) becomes a space: the query text is
 * read as a C string, which would end there, so "\u0000What is 2+2?" was
 * refused as having no text and "a\u0000b" routed as "a". */
static int text_add(struct text *t, const char *s, size_t n, const char *sep)
{
    size_t sl = t->len && sep ? strlen(sep) : 0;
    if (gw_reserve(&t->p, &t->cap, t->len + sl + n + 1, 256) != 0)
        return -1;
    memcpy(t->p + t->len, sep ? sep : "", sl);
    t->len += sl;
    for (size_t i = 0; i < n; i++)
        t->p[t->len + i] = s[i] ? s[i] : ' ';
    t->len += n;
    t->p[t->len] = '\0';
    return 0;
}

/* Does a JSON string hold a NUL ("\u0000")? Read as a C string it would be
 * cut short there, so a name with one could pass for another name. */
static int has_nul(json_t *s)
{
    return strlen(json_string_value(s)) != json_string_length(s);
}

/* A chat message's role OpenAI's API takes (the mock refuses any other,
 * in its words; a real upstream judges for itself: the gateway forwards). */
static int chat_role_known(const char *role)
{
    static const char *const known[] = {"system", "developer", "user",
                                        "assistant", "tool", "function"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(role, known[i]) == 0)
            return 1;
    return 0;
}

/* The text of a message's content: a string, or the text of an array's
 * parts joined with a space; with `only_type`, only the parts of that type
 * (a Responses input item's "input_text"), else every part with a text. */
static int content_text(json_t *content, const char *only_type, struct text *t)
{
    size_t i;
    json_t *part;
    if (json_is_string(content))
        return text_add(t, json_string_value(content), json_string_length(content), NULL);
    json_array_foreach(content, i, part)
    {
        json_t *type = json_object_get(part, "type"), *tx = json_object_get(part, "text");
        if (only_type &&
            !(json_is_string(type) && strcmp(json_string_value(type), only_type) == 0))
            continue;
        if (json_is_string(tx) && text_add(t, json_string_value(tx), json_string_length(tx), " "))
            return -1;
    }
    return 0;
}

/* The query text of a Responses request: `input` as a string, or its user
 * messages (role "user", type "message" or none, content a string or an
 * array of parts): the last one, or all joined with router.query_text
 * "all_user". `instructions` is not query text, as system messages are not.
 * Returns 0, -1 out of memory, or -2 (answered) when input is mistyped. */
static int responses_query(struct exchange *ex, json_t *root, struct text *query)
{
    json_t *input = json_object_get(root, "input"), *item, *last_user = NULL;
    int all = strcmp(ex->conf->query_text, "all_user") == 0;
    size_t i;
    if (!input || json_is_null(input))
        return 0; /* no text: only a route that needs it refuses (decide()) */
    if (json_is_string(input))
        return text_add(query, json_string_value(input), json_string_length(input), NULL);
    if (!json_is_array(input)) {
        fail_with(ex, 400, "input", "invalid_type", "input: expected a string or an array");
        return -2;
    }
    json_array_foreach(input, i, item)
    {
        json_t *role = json_object_get(item, "role"), *type = json_object_get(item, "type");
        json_t *content = json_object_get(item, "content");
        if (!json_is_string(role) || strcmp(json_string_value(role), "user") != 0)
            continue;
        if (type && !(json_is_string(type) && strcmp(json_string_value(type), "message") == 0))
            continue;
        if (!json_is_string(content) && !json_is_array(content))
            continue;
        if (all) {
            struct text part = {0};
            int rc = content_text(content, "input_text", &part);
            if (!rc && part.len)
                rc = text_add(query, part.p, part.len, "\n");
            free(part.p);
            if (rc)
                return -1;
        } else {
            last_user = item;
        }
    }
    if (last_user && content_text(json_object_get(last_user, "content"), "input_text", query))
        return -1;
    return 0;
}

/* The token numbers in an input or prompt list: its numbers, and those of
 * the lists it holds, one a token. */
static long count_token_ids(json_t *list)
{
    long n = 0;
    size_t i, k;
    json_t *p, *t;
    json_array_foreach(list, i, p)
    {
        if (json_is_number(p))
            n++;
        else if (json_is_array(p))
            json_array_foreach(p, k, t) n += json_is_number(t);
    }
    return n;
}

/* The number the top-level member `name` holds as the client wrote it
 * (cut short with "..." past cap), for a message that shows it: the body's
 * numbers are read as reals, so 99999999999999999999999 is 1e+23 once read. */
static void number_as_sent(struct exchange *ex, const char *name, double v, char *buf,
                           size_t cap)
{
    const char *const names[] = {name, NULL};
    struct js_member m[1];
    const char *body = NULL;
    size_t len = 0, n;

    if (ex->req)
        body = hs_req_body(ex->req, &len);
    if (body && js_find_members(body, len, names, m) == 0 && m[0].key_end) {
        n = m[0].value_end - m[0].value_start;
        if (n < cap) {
            memcpy(buf, body + m[0].value_start, n);
            buf[n] = '\0';
        } else {
            snprintf(buf, cap, "%.*s...", (int)(cap - 4), body + m[0].value_start);
        }
        return;
    }
    snprintf(buf, cap, "%.17g", v);
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
        /* Read for the mock; an upstream judges it itself. */
        ex->stream_options_unstreamed = !json_is_true(stream);
    }
    if (ex->ep == EP_CHAT || ex->ep == EP_COMPLETIONS) {
        /* Read for the mock; an upstream judges `n` itself. The body's
         * numbers are parsed as reals: an integer is one with no fraction. */
        json_t *n = json_object_get(root, "n");
        double v = json_number_value(n);
        if (json_is_number(n) && v == floor(v)) {
            ex->n = v > 1e9 ? 1000000000 : v < -1e9 ? -1000000000 : (long long)v;
            ex->n_set = 1;
            if (v > 1e9 || v < -1e9)
                number_as_sent(ex, "n", v, ex->n_text, sizeof ex->n_text);
        } else if (n && !json_is_null(n)) {
            ex->n_bad = 1;
        }
    }

    if (ex->ep != EP_EMBEDDINGS) {
        /* Read for the mock; an upstream judges these limits itself. */
        static const char *const limits[] = {"max_tokens", "max_completion_tokens",
                                             "max_output_tokens"};
        for (i = 0; i < sizeof limits / sizeof *limits; i++) {
            json_t *m = json_object_get(root, limits[i]);
            double v = json_number_value(m);
            if (!m || json_is_null(m))
                continue;
            if (!json_is_number(m) || v != floor(v) || v < 1) {
                /* The mock refuses it, as OpenAI's API does. */
                if (!ex->limit_bad) {
                    ex->limit_bad = limits[i];
                    ex->limit_bad_type = !json_is_number(m) || v != floor(v);
                    if (!ex->limit_bad_type)
                        number_as_sent(ex, limits[i], v, ex->limit_text,
                                       sizeof ex->limit_text);
                }
                continue;
            }
            if (ex->max_tokens < 0 || v < (double)ex->max_tokens)
                ex->max_tokens = v > 1e9 ? 1000000000 : (long long)v;
        }
    }

    if (ex->ep != EP_EMBEDDINGS) {
        /* Read for the mock, which refuses what OpenAI's API refuses; an
         * upstream judges these itself. */
        static const char *const sampling[] = {"temperature", "top_p"};
        static const double sampling_max[] = {2.0, 1.0};
        for (i = 0; i < sizeof sampling / sizeof *sampling && !ex->sampling_bad; i++) {
            json_t *m = json_object_get(root, sampling[i]);
            double v = json_number_value(m);
            if (!m || json_is_null(m) || (json_is_number(m) && v >= 0 && v <= sampling_max[i]))
                continue;
            ex->sampling_bad = sampling[i];
            ex->sampling_bad_type = !json_is_number(m);
            ex->sampling_above = v > sampling_max[i];
            if (!ex->sampling_bad_type)
                number_as_sent(ex, sampling[i], v, ex->sampling_text, sizeof ex->sampling_text);
        }
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
        ex->n_inputs = json_array_size(messages); /* for the mock: an empty list is refused */
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
            if (!ex->bad_role && !chat_role_known(json_string_value(role))) {
                ex->bad_role = 1;
                ex->bad_role_at = i;
                snprintf(ex->bad_role_text, sizeof ex->bad_role_text, "%s",
                         json_string_value(role));
            }
            if (strcmp(json_string_value(role), "user") != 0)
                continue;
            if (all) {
                struct text part = {0};
                int rc = content_text(json_object_get(msg, "content"), NULL, &part);
                if (!rc && part.len)
                    rc = text_add(query, part.p, part.len, "\n");
                free(part.p);
                if (rc)
                    goto oom;
            } else {
                last_user = msg;
            }
        }
        if (last_user && content_text(json_object_get(last_user, "content"), NULL, query))
            goto oom;
    } else if (ex->ep == EP_COMPLETIONS) {
        json_t *prompt = json_object_get(root, "prompt"), *p;
        if (json_is_string(prompt)) {
            if (text_add(query, json_string_value(prompt), json_string_length(prompt), NULL))
                goto oom;
        } else if (json_is_array(prompt)) {
            /* A list of token numbers is one prompt; a list of strings or of
             * token lists is one prompt each. */
            ex->n_prompts = json_is_number(json_array_get(prompt, 0)) ? 1 : json_array_size(prompt);
            ex->token_ids = count_token_ids(prompt);
            json_array_foreach(prompt, i, p) if (json_is_string(p) &&
                                                 text_add(query, json_string_value(p),
                                                          json_string_length(p), "\n")) goto oom;
        } else if (prompt && !json_is_null(prompt)) {
            fail_with(ex, 400, "prompt", "invalid_type", "prompt: expected a string or an array");
            return -1;
        }
    } else if (ex->ep == EP_RESPONSES) {
        int rc = responses_query(ex, root, query);
        if (rc == -2)
            return -1;
        if (rc)
            goto oom;
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
            /* An array of token numbers is one input; an array of strings or of
             * token arrays is one input each. */
            ex->n_inputs = json_is_number(json_array_get(input, 0)) ? 1 : json_array_size(input);
            ex->token_ids = count_token_ids(input);
            json_array_foreach(input, i, p) if (json_is_string(p) &&
                                                text_add(query, json_string_value(p),
                                                         json_string_length(p), "\n")) goto oom;
        } else {
            fail_with(ex, 400, "input", "invalid_type", "input: expected a string or an array");
            return -1;
        }
        p = json_object_get(root, "encoding_format");
        ex->emb_base64 = !p || json_is_null(p) ? 0
                         : !json_is_string(p) ? -1
                         : strcmp(json_string_value(p), "base64") == 0 ? 1
                         : strcmp(json_string_value(p), "float") == 0 ? 0
                                                                      : -1;
        /* dimensions, read as `n` is: the body's numbers are reals, so an
         * integer is one with no fraction; below 1 is refused, not the
         * default. */
        p = json_object_get(root, "dimensions");
        if (json_is_number(p) && json_number_value(p) == floor(json_number_value(p))) {
            double v = json_number_value(p);
            ex->emb_dims = v > 1e9 ? 1000000000 : v < 1 ? -1 : (long long)v;
        } else {
            ex->emb_dims = !p || json_is_null(p) ? 0 : -1;
        }
    }
    return 0;
oom:
    fail_with(ex, 500, NULL, "out_of_memory", "out of memory reading the request");
    return -1;
}

/* Room for n candidates in the ranking and their given_up marks (new ones
 * clear): 0, or -1 out of memory (what was held is kept). */
static int rank_reserve(struct exchange *ex, size_t n)
{
    struct lr_candidate *r;
    unsigned char *g;

    if (n <= ex->rank_cap)
        return 0;
    if (!(r = realloc(ex->ranking, n * sizeof *r)))
        return -1;
    ex->ranking = r;
    if (!(g = realloc(ex->given_up, n)))
        return -1;
    memset(g + ex->rank_cap, 0, n - ex->rank_cap);
    ex->given_up = g;
    ex->rank_cap = n;
    return 0;
}

/* Add model idx to the end of the ranking, with no predictions: 0, or -1
 * out of memory. */
static int rank_push(struct exchange *ex, int idx)
{
    struct lr_candidate *c;
    if (ex->n_ranked == ex->rank_cap && rank_reserve(ex, ex->rank_cap ? 2 * ex->rank_cap : 4))
        return -1;
    c = &ex->ranking[ex->n_ranked++];
    c->index = idx;
    c->predicted_quality = NAN;
    c->predicted_output_tokens = NAN;
    c->estimated_cost = NAN;
    return 0;
}

/* A route's explicit fallbacks extend the ranking's tail, each once, all of
 * them however long the ranking is: 0, or -1 out of memory. */
static int append_fallbacks(struct exchange *ex, const struct lr_route_info *ri)
{
    for (size_t f = 0; ri && f < ri->n_fallbacks; f++) {
        size_t k = 0;
        while (k < ex->n_ranked && ex->ranking[k].index != ri->fallbacks[f])
            k++;
        if (k == ex->n_ranked && rank_push(ex, ri->fallbacks[f]))
            return -1;
    }
    return 0;
}

/* Response affinity: a Responses follow-up whose previous_response_id the
 * gateway saw answered goes to the model that served it, when that model is
 * one of the request's candidates (its `models` when it names them, else
 * the route's, else the model it names, and a route's explicit fallbacks
 * in every case), before any strategy runs: only
 * that upstream knows the earlier response. A route's explicit fallbacks
 * stay after it; the other candidates are not tried, as none of them knows
 * the id. direct is the model named directly, or -1. Returns 1 when it
 * ranked the request, else 0 (routed as without affinity), or -1 out of
 * memory. */
static int affinity_rank(struct exchange *ex, json_t *root, int direct,
                         const struct lr_route_info *ri, const char *const *names, size_t n_names,
                         const char *query)
{
    const struct lr_config *cfg = ex->conf->cfg;
    struct af_table *t = ex->gw->affinity;
    json_t *prev = json_object_get(root, "previous_response_id");
    const char *name;
    int idx, candidate = 0;

    if (ex->ep != EP_RESPONSES || !json_is_string(prev) || !t || !af_table_capacity(t))
        return 0;
    name = af_table_get(t, json_string_value(prev), json_string_length(prev));
    /* An entry whose model a reload removed means nothing now. */
    idx = name ? lr_config_model_index(cfg, name) : -1;
    if (idx < 0) {
        metrics_count_affinity(ex->gw->metrics, MA_MISS);
        return 0;
    }
    if (names) {
        for (size_t i = 0; i < n_names; i++) {
            int k = lr_config_model_index(cfg, names[i]);
            if (k < 0)
                return 0; /* not counted: routing refuses the unknown name */
            candidate |= k == idx;
        }
    } else if (direct >= 0) {
        candidate = direct == idx;
    } else if (ri && ri->n_models) {
        for (size_t i = 0; i < ri->n_models; i++)
            candidate |= ri->models[i] == idx;
    } else {
        candidate = 1; /* a route over every model */
    }
    /* A route's explicit fallbacks are its candidates too (the ranking's
     * tail): an answer one of them gave, its model having failed, is
     * followed up there, the one upstream that knows the id. */
    for (size_t f = 0; !candidate && ri && f < ri->n_fallbacks; f++)
        candidate = ri->fallbacks[f] == idx;
    if (!candidate) {
        metrics_count_affinity(ex->gw->metrics, MA_NOT_CANDIDATE);
        return 0;
    }
    metrics_count_affinity(ex->gw->metrics, MA_HIT);
    ex->strategy = "affinity";
    ex->n_ranked = 0;
    if (rank_push(ex, idx) || append_fallbacks(ex, ri))
        return -1;
    ex->input_tokens = lr_estimate_tokens(query, strlen(query));
    return 1;
}

/* Refuse the request for want of memory for its ranking; -1, as decide(). */
static int rank_oom(struct exchange *ex)
{
    fail_with(ex, 500, NULL, "out_of_memory", "out of memory ranking the candidates");
    return -1;
}

/* Decide the ranking from model / models / route. Returns 0, or refuses the
 * request (and finishes the exchange) and returns -1, or returns 1 when the
 * query's vector must be fetched first (a smart route over a dense store).
 * root is the request's body, or once that vector is in, the copy that
 * routing_members() made of it: a member read here must be copied there. */
static int decide(struct exchange *ex, json_t *root, const char *query)
{
    const struct lr_config *cfg = ex->conf->cfg;
    json_t *jmodel = json_object_get(root, "model");
    json_t *jmodels = json_object_get(root, "models");
    json_t *jroute = json_object_get(root, "route");
    const char *model = NULL, *strategy = NULL;
    const char *names_stack[MODELS_LIST_CAP], **names = NULL;
    const struct lr_route_info *ri = NULL;
    double requirement = NAN;
    struct lr_router *router;
    struct lr_request rq;
    struct lr_decision d;
    struct lr_error err = {0};
    size_t n_names = 0, n_cands;
    int rc, idx;

    if (jmodel && !json_is_string(jmodel)) {
        fail_with(ex, 400, "model", "invalid_type", "model: expected a string");
        return -1;
    }
    if (jmodel && has_nul(jmodel)) {
        fail_with(ex, 400, "model", "invalid_value", "model: a name cannot hold a NUL (\\u0000)");
        return -1;
    }
    model = jmodel ? json_string_value(jmodel) : NULL;
    if (jmodels) {
        size_t i;
        json_t *v;
        if (!json_is_array(jmodels) || json_array_size(jmodels) == 0) {
            /* invalid_value when the type is right, as /v1/route answers */
            fail_with(ex, 400, "models", json_is_array(jmodels) ? "invalid_value" : "invalid_type",
                      "models: expected a non-empty array of model names");
            return -1;
        }
        n_names = json_array_size(jmodels);
        if (n_names > MODELS_LIST_CAP) {
            fail_with(ex, 400, "models", "invalid_value", "models: at most %d candidates, got %zu",
                      MODELS_LIST_CAP, n_names);
            return -1;
        }
        names = names_stack;
        json_array_foreach(jmodels, i, v)
        {
            if (!json_is_string(v)) {
                fail_with(ex, 400, "models", "invalid_type", "models[%zu]: expected a string", i);
                return -1;
            }
            if (has_nul(v)) {
                fail_with(ex, 400, "models", "invalid_value",
                          "models[%zu]: a name cannot hold a NUL (\\u0000)", i);
                return -1;
            }
            names[i] = json_string_value(v);
        }
        /* Every name is checked before a vector is fetched for them, and a
         * route's name is said to be one, not an unknown model. */
        for (i = 0; i < n_names; i++) {
            char shown[GW_NAME_SHOWN_CAP];
            if (lr_config_model_index(cfg, names[i]) >= 0)
                continue;
            gw_name_shown(names[i], shown, sizeof shown);
            if (lr_config_route_index(cfg, names[i]) >= 0)
                fail_with(ex, 404, "models", "model_not_found",
                          "'%s' is a route, not a model: \"models\" lists configured models "
                          "(to route among the route's models, name it as \"model\" without "
                          "\"models\")",
                          shown);
            else
                fail_with(ex, 404, "models", "model_not_found", "unknown model '%s'", shown);
            return -1;
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
        if (s && has_nul(s)) {
            fail_with(ex, 400, "route.strategy", "invalid_value",
                      "route.strategy: a name cannot hold a NUL (\\u0000)");
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
        ex->route_idx = r;
    }
    /* A strategy asked for is checked whatever is named: a model named
     * directly is not routed, but a misspelt strategy is the caller's slip
     * all the same, refused as it is beside a route. */
    if (strategy && idx >= 0 && !names && !gw_conf_router(ex->conf, strategy, &err)) {
        fail_with(ex, 400, "route.strategy", "invalid_value", "route.strategy: %s", err.message);
        return -1;
    }
    if (idx >= 0 && !names && (rc = affinity_rank(ex, root, idx, NULL, NULL, 0, query)) != 0)
        return rc > 0 ? 0 : rank_oom(ex);
    if (idx >= 0 && !names) {
        /* A model named directly: no routing decision to make. */
        ex->strategy = "direct";
        ex->n_ranked = 0;
        if (rank_push(ex, idx))
            return rank_oom(ex);
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
    if (!ex->vec && (rc = affinity_rank(ex, root, -1, ri, names, n_names, query)) != 0)
        return rc > 0 ? 0 : rank_oom(ex);
    /* A dense store routes by the query's vector: fetch it first (once),
     * unless there is no choice to make (one candidate is its own ranking)
     * or no text to embed (a blank or absent one is ranked on the priors
     * below, not on the vector of "" or of spaces). */
    n_cands = names                ? n_names
              : ri && ri->n_models ? ri->n_models
                                   : lr_config_model_count(cfg);
    if (!ex->vec && !gw_query_blank(query) &&
        gw_conf_needs_vector(ex->conf, router, n_cands)) {
        /* A model listed twice is refused now, as the library refuses it
         * below over a built-in store, not after a fetch (a 502 when the
         * embedder is down). */
        int twice = names ? gw_repeated_candidate(cfg, names, n_names) : -1;
        if (twice >= 0) {
            fail_with(ex, 400, "models", "routing_failed",
                      "model '%s' is listed twice among the candidates",
                      lr_config_model(cfg, (size_t)twice)->name);
            return -1;
        }
        return 1;
    }
    lr_request_init(&rq);
    if (names) {
        rq.models = names;
        rq.n_models = n_names;
    } else if (ri && ri->n_models) {
        rq.model_indices = ri->models;
        rq.n_models = ri->n_models;
    }
    /* No query text at all (only a system message, a message of image
     * parts, a Responses input of only tool outputs) is served as a blank
     * one is: the smart strategy ranks it on the candidates' priors, with
     * nothing to find neighbours by (smart.c), where the library refuses
     * an empty text as a caller's slip. The upstream may well answer it. */
    rq.query = !query[0] && strcmp(lr_router_strategy(router), "smart") == 0 ? " " : query;
    rq.embedding = ex->vec;
    rq.embedding_dim = ex->vec_dim;
    rq.performance_requirement = requirement;
    /* Room for every candidate and every fallback: none is left out. */
    if (rank_reserve(ex, n_cands + (ri ? ri->n_fallbacks : 0)))
        return rank_oom(ex);
    lr_decision_init(&d);
    d.ranking = ex->ranking;
    d.ranking_cap = ex->rank_cap;
    /* A blank text with no vector is ranked on the priors over a dense
     * store as over a built-in one (after naming an unknown model, or an
     * empty store). */
    rc = lr_router_route(router, &rq, &d, &err);
    if (rc == LR_ENOMODEL) {
        fail_with(ex, 404, names ? "models" : "model", "model_not_found", "%s", err.message);
        return -1;
    }
    if (rc == LR_EEMPTY && ex->gw->store && lr_store_count(ex->gw->store) == 0) {
        /* The gateway's state, not the request's fault: it passes as soon as
         * outcomes are imported or fed back. */
        fail_with(ex, 503, NULL, "history_empty",
                  "the %s strategy%s%s%s cannot rank these candidates: the history store is "
                  "empty; add outcomes (llmroute import, or POST /v1/feedback) or name a model "
                  "directly",
                  lr_router_strategy(router), ri ? " of route '" : "", ri ? ri->name : "",
                  ri ? "'" : "");
        return -1;
    }
    if (rc) {
        fail_with(ex, rc == LR_ENOMEM ? 500 : 400, names ? "models" : "model",
                  rc == LR_ENOMEM ? "out_of_memory" : "routing_failed", "%s", err.message);
        return -1;
    }
    ex->n_ranked = d.n_ranked;
    ex->strategy = lr_router_strategy(router);
    ex->input_tokens = d.input_tokens;
    /* A blank text (spaces, line breaks), or none, is served, but the
     * smart strategy ranks it without neighbours, on each candidate's
     * store-wide prior (smart.c): the log line says so. */
    ex->query_blank = strcmp(ex->strategy, "smart") == 0 && gw_query_blank(query);
    if (append_fallbacks(ex, ri))
        return rank_oom(ex);
    return 0;
}

/* ==== A dense store: the query's vector ==== */

static void proceed(struct exchange *ex);
static void request_limits(struct exchange *ex);
static void response_op(struct exchange *ex);

/* Copy from's member key, when it has one, into to. Returns 0, or -1 out
 * of memory. */
static int copy_member(json_t *to, json_t *from, const char *key)
{
    json_t *v = json_object_get(from, key);
    return v ? json_object_set_new(to, key, json_deep_copy(v)) : 0;
}

/* What decide() reads of a request, copied into a small tree of its own:
 * model, models, and route's strategy and performance_requirement. A
 * request waiting for its query's vector keeps this instead of its parsed
 * body: a tree costs many times the text it was parsed from (some 45 MB
 * for a body at the default server.max_json_values), and how many requests
 * wait is bounded only by server.max_connections. decide() has checked
 * these members before the wait, so with the vector it reads the copy as
 * it read the body. The body itself stays with the HTTP request, which the
 * forwarding rewrites. Returns a new reference, or NULL out of memory. */
static json_t *routing_members(json_t *root)
{
    static const char *const top[] = {"model", "models", NULL};
    static const char *const in_route[] = {"strategy", "performance_requirement", NULL};
    json_t *keep = json_object(), *route = json_object_get(root, "route"), *r;
    size_t i;

    if (!keep)
        return NULL;
    for (i = 0; top[i]; i++)
        if (copy_member(keep, root, top[i]))
            goto oom;
    if (route) {
        r = json_object();
        if (json_object_set_new(keep, "route", r))
            goto oom;
        for (i = 0; in_route[i]; i++)
            if (copy_member(r, route, in_route[i]))
                goto oom;
    }
    return keep;
oom:
    json_decref(keep);
    return NULL;
}

/* The vector is in (or not): route with it, then go on. */
static void shutdown_one(struct exchange *ex, const char *msg);

static void embed_got(void *arg, float *vec, size_t dim, const struct gw_embed_failure *f)
{
    struct exchange *ex = arg;
    json_t *routing;
    int rc;

    ex->embed = NULL; /* the fetch frees itself */
    if (!vec && f->deadline_passed) {
        /* The deadline's answer (next_candidate()'s), naming what it was
         * spent on; the log line names the embedder's URL. */
        free(ex->log_msg);
        ex->log_msg = strdup(f->detail);
        fail_with(ex, 504, NULL, "deadline_exceeded",
                  "retry.deadline_ms (%ld ms) passed while the query's embedding was fetched "
                  "from the embedding server (router.embedding), before any upstream could be "
                  "tried",
                  ex->req_retry.deadline_ms);
        return;
    }
    if (!vec) {
        ex->error = "embedding_failed";
        /* The client's message names router.embedding; the log line's the
         * embedder's URL and the transport's words. */
        free(ex->log_msg);
        ex->log_msg = strdup(f->detail);
        if (f->retry_after) {
            snprintf(ex->retry_after_buf, sizeof ex->retry_after_buf, "%s", f->retry_after);
            ex->answer_retry_after = ex->retry_after_buf;
        }
        fail_with(ex, 502, NULL, "embedding_failed", "%s", f->why);
        return;
    }
    ex->vec = vec;
    ex->vec_dim = dim;
    routing = ex->routing;
    ex->routing = NULL; /* a refusal in decide() frees ex: nothing of it is used after */
    rc = decide(ex, routing, ex->query);
    json_decref(routing);
    if (rc == 0)
        proceed(ex);
}

void proxy_handle(struct gw *gw, struct hs_req *req, enum gw_endpoint ep, const char *id)
{
    struct exchange *ex = calloc(1, sizeof *ex);
    struct text query = {0};
    json_error_t je;
    json_t *root;
    const char *body;
    size_t len;
    int rc;

    if (!ex) {
        gw_send_error(req, 500, NULL, "out_of_memory", "out of memory");
        return;
    }
    ex->gw = gw;
    ex->conf = gw->conf;
    gw_conf_ref(ex->conf);
    ex->l_next = gw->live;
    if (gw->live)
        gw->live->l_prev = ex;
    gw->live = ex;
    ex->gone_label = "client_closed";
    ex->req = req;
    ex->ep = ep;
    ex->t_start = gw_now();
    ex->model = -1;
    ex->waited_model = -1;
    ex->max_tokens = -1;
    ex->last_model_idx = -1;
    ex->route_idx = -1;
    ex->route = "";
    ex->strategy = "";
    ex->est_quality = NAN;
    ex->est_cost = NAN;
    ex->prompt_tokens = -1;
    ex->completion_tokens = -1;
    snprintf(ex->id, sizeof ex->id, "%s", id);

    if (gw->shutdown_answered) {
        /* The answers to the requests in flight at the deadline are going
         * out, and the loop stops when they are: an attempt started now
         * would be cut off unanswered. */
        shutdown_one(ex, gw->shutdown_answered == 2
                             ? "the gateway is stopping at once (a second stop signal) before "
                               "this request's body was in; retry the request"
                             : "the gateway is shutting down: server.shutdown_timeout_ms "
                               "passed before this request's body was in; retry the request");
        return;
    }
    if (strncmp(hs_req_path(req), "/v1/responses/", 14) == 0) {
        response_op(ex);
        return;
    }
    body = hs_req_body(req, &len);
    if (len == 0) {
        fail_with(ex, 400, NULL, "invalid_json",
                  "the request body is empty: expected a JSON object");
        return;
    }
    /* The parse costs memory by the value, not by the byte: bounded first.
     * Then a byte order mark, or a raw NUL byte, which jansson skips after
     * a number or a literal: the body would be forwarded with it. */
    {
        char msg[400];
        if (gw_body_over_value_limit(ex->gw, ex->conf, body, len, msg, sizeof msg)) {
            fail_with(ex, 413, NULL, "too_many_json_values", "%s", msg);
            return;
        }
        if (js_body_fault(body, len, msg, sizeof msg)) {
            fail_with(ex, 400, NULL, "invalid_json", "%s", msg);
            return;
        }
    }
    /* "\u0000" is valid JSON, and a prompt may hold it: the body is forwarded
     * as sent. The names read from it are checked for it (has_nul()). So is
     * an integer past int64 (a 64-bit unsigned seed): read as a real, since
     * no integer in the body is read here, it is not refused as malformed. */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                      &je);
    if (!root && json_error_code(&je) == json_error_numeric_overflow) {
        /* A number past a double's range ("temperature": 1e400) is valid
         * JSON that jansson refuses as a syntax error of the whole body:
         * named by its member, as /v1/route and /v1/feedback name one
         * (api.c's load_body()), when it is the body's only fault. Nothing
         * is forwarded: an upstream's parser would refuse it too, or read
         * it as infinity. */
        char field[256];
        struct lr_error err;
        if (lr_record_check_range(body, len, field, sizeof field, &err) != 0) {
            fail_with(ex, 400, field[0] ? field : NULL, "invalid_value", "%s", err.message);
            return;
        }
    }
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
    if (read_fields(ex, root, &query)) {
        json_decref(root);
        free(query.p);
        return;
    }
    rc = decide(ex, root, query.p ? query.p : "");
    if (rc == 1) {
        /* The request waits for its vector with what decide() reads and
         * the query text, not the parsed body (routing_members()). */
        ex->routing = routing_members(root);
        json_decref(root);
        ex->query = query.p ? query.p : strdup("");
        hs_req_watch(req, on_drain, on_abort, ex);
        /* The fetch counts against the request's deadline. */
        request_limits(ex);
        if (!ex->routing || !ex->query ||
            !(ex->embed = gw_embed_start(gw, ex->conf, ex->query, ex->deadline, embed_got, ex))) {
            ex->error = "embedding_failed";
            fail_with(ex, 500, NULL, "out_of_memory", "out of memory fetching the embedding");
        }
        return;
    }
    json_decref(root);
    free(query.p);
    if (rc == 0)
        proceed(ex);
}

/* ==== Requests about a response id ==== */

/* GET (and HEAD) and DELETE /v1/responses/{id}, POST /v1/responses/{id}/cancel
 * and GET /v1/responses/{id}/input_items: the Responses API's retrieve,
 * delete, cancel and list of input items. Only the upstream that served the
 * id knows it, so each goes to the model the affinity table holds for it, at
 * {base_url}/responses/{id}... with the client's query string, as a request
 * naming that model directly would (its key, headers, timeouts, retries; no
 * other model), and the upstream's status and body are the answer. An id
 * not in the table is 404 response_not_found. */
const char *gw_response_op_allow(const char *path)
{
    const char *id = path + strlen("/v1/responses/"), *suffix = strchr(id, '/');
    if (strncmp(path, "/v1/responses/", 14) != 0 || *id == '\0' || suffix == id)
        return NULL;
    if (!suffix)
        return "GET, HEAD, DELETE";
    if (strcmp(suffix, "/cancel") == 0)
        return "POST";
    if (strcmp(suffix, "/input_items") == 0)
        return "GET, HEAD";
    return NULL;
}

/* Whether the query string has stream=true (a retrieve that resumes a
 * response's event stream). */
static int query_streams(const char *q)
{
    while (*q) {
        size_t n = strcspn(q, "&#");
        if (n == 11 && memcmp(q, "stream=true", 11) == 0)
            return 1;
        if (q[n] != '&')
            break;
        q += n + 1;
    }
    return 0;
}

static void response_op(struct exchange *ex)
{
    static const char *const methods[] = {"GET", "HEAD", "DELETE", "POST", NULL};
    const char *path = hs_req_path(ex->req), *method = hs_req_method(ex->req);
    const char *id = path + 14, *suffix = strchr(id, '/'), *allow, *query, *name;
    size_t id_len = suffix ? (size_t)(suffix - id) : strlen(id), q_len, n;
    int idx;

    snprintf(ex->op_path, sizeof ex->op_path, "%s", path);
    ex->op_log_method = "POST";
    for (size_t i = 0; methods[i]; i++)
        if (strcmp(methods[i], method) == 0)
            ex->op_log_method = methods[i]; /* the table let no other in */
    ex->op_method = strcmp(ex->op_log_method, "HEAD") == 0 ? "GET" : ex->op_log_method;
    allow = gw_response_op_allow(path);
    if (!allow || id_len == 0) {
        fail_with(ex, 404, NULL, "unknown_url", "Unknown request URL: %s %.200s", method, path);
        return;
    }
    if (!gw_method_listed(allow, method)) {
        hs_resp_header(ex->req, "Allow", allow);
        fail_with(ex, 405, NULL, "method_not_allowed", "%s %.200s: method not allowed (use %s)",
                  method, path, allow);
        return;
    }
    name = ex->gw->affinity ? af_table_get(ex->gw->affinity, id, id_len) : NULL;
    idx = name ? lr_config_model_index(ex->conf->cfg, name) : -1;
    if (idx < 0) {
        fail_with(ex, 404, "response_id", "response_not_found",
                  "No response with id '%.*s' is known to the gateway: it routes only the ids "
                  "of the responses it served since it started (the last "
                  "server.response_affinity_entries of them) to the model that served them",
                  (int)(id_len > 256 ? 256 : id_len), id);
        return;
    }
    if (ex->conf->models[idx].is_mock) {
        fail_with(ex, 404, "response_id", "response_not_found",
                  "The response '%.*s' was made by the mock model '%s', which keeps none",
                  (int)id_len, id, name);
        return;
    }
    if (id_len <= AF_ID_MAX) {
        memcpy(ex->op_id, id, id_len);
        ex->op_id[id_len] = '\0';
    }
    query = hs_req_query(ex->req);
    q_len = strcspn(query, "#");
    /* A retrieve with stream=true resumes the response's event stream: read
     * and relayed as a Responses stream is. */
    ex->stream = strcmp(ex->op_method, "GET") == 0 && query_streams(query);
    n = strlen("/responses/") + strlen(id) + 2 + q_len;
    ex->op_target = malloc(n);
    if (!ex->op_target) {
        fail_with(ex, 500, NULL, "out_of_memory", "out of memory");
        return;
    }
    snprintf(ex->op_target, n, "/responses/%s%s%.*s", id, q_len ? "?" : "", (int)q_len, query);
    ex->strategy = "affinity";
    ex->n_ranked = 0;
    if (rank_push(ex, idx)) {
        fail_with(ex, 500, NULL, "out_of_memory", "out of memory");
        return;
    }
    proceed(ex);
}

/* The request's own limits, the server's then its route's: its attempt cap
 * and its deadline, from its start. Set once its route is known, before a
 * vector is fetched for it (which counts against the deadline), and again,
 * alike, once it is routed. */
static void request_limits(struct exchange *ex)
{
    struct rs_policy p = ex->conf->set.policy;
    if (ex->route_idx >= 0)
        rs_policy_merge(&p, &ex->conf->route_policy[ex->route_idx]);
    ex->req_retry = p.retry;
    ex->deadline = 0;
    if (p.retry.deadline_ms > 0)
        ex->deadline = ex->t_start + (double)p.retry.deadline_ms / 1000;
}

/* Routing is done: watch the client and start along the ranking. */
static void proceed(struct exchange *ex)
{
    hs_req_watch(ex->req, on_drain, on_abort, ex);
    request_limits(ex);
    next_candidate(ex);
}

/* ==== Shutdown ==== */

/* The shutdown deadline has come for one exchange: whatever it is waiting
 * for (its vector, a backoff, room in the queue, the upstream), the client
 * gets an answer now instead of a closed connection. An answer already
 * whole (after [DONE]) completes as usual. */
static void shutdown_one(struct exchange *ex, const char *msg)
{
    gw_embed_cancel(ex->embed);
    ex->embed = NULL;
    wait_stop(ex);
    queue_unlink(ex);
    stop_transfer(ex);
    if (ex->sse && ex->saw_done && ex->in_attempt) {
        stream_complete(ex, 0, NULL);
        return;
    }
    ex->gone_label = "shutdown";
    attempt_end(ex, RS_OK, -1, 0); /* not the upstream's fault: the breaker hears nothing */
    if (ex->streaming) {
        stream_error_end(ex, "server_error", "server_shutting_down", msg);
    } else if (ex->req) {
        char body[400];
        size_t n = gw_error_format(body, sizeof body, msg, "server_error", NULL,
                                   "server_shutting_down");
        add_headers(ex);
        hs_respond(ex->req, 503, "application/json", body, n);
        ex->req = NULL;
    }
    ex->error = "shutdown";
    finish(ex, 503);
}

void proxy_shutdown_answer(struct gw *gw, int second_signal)
{
    const char *msg = second_signal
                          ? "the gateway is stopping at once (a second stop signal) before the "
                            "upstream answered; retry the request"
                          : "the gateway is shutting down: server.shutdown_timeout_ms passed "
                            "before the upstream answered; retry the request";
    gw->shutdown_answered = second_signal ? 2 : 1;
    while (gw->live)
        shutdown_one(gw->live, msg); /* finish() unlinks it */
}
