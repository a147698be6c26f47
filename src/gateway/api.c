/* api.c -- the endpoints the gateway answers itself, at once:
 *   GET  /health        liveness and a short summary
 *   GET  /metrics       Prometheus text (metrics.c renders it)
 *   GET  /v1/models     configured models and routes in OpenAI's list format
 *   GET  /v1/models/M   one of them (OpenAI's models.retrieve)
 *   POST /v1/route      routing decisions without forwarding (AIOS's kernel asks,
 *                       then calls the model itself); models that are full or
 *                       whose breaker admits nothing (open, or half-open with
 *                       its probe in flight) are left out, and the room left
 *                       under max_concurrency is the batch optimizer's L_j
 *   POST /v1/feedback   an outcome for the history store
 * Each returns the status it answered with, for the dispatcher's log line.
 *
 * Threads: the event loop thread only; /v1/route's decisions and feedback's
 * appends run on a worker (offload.c), and a smart /v1/route over a dense
 * store first fetches each query's vector from the remote embedder, as a
 * chat request to a smart route does (embedq.c).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway.h"
#include "jsonscan.h"
#include "metrics.h"

#define ROUTE_MAX_QUERIES 1000
#define ROUTE_MAX_MODELS 64
/* A batch over a dense store fetches one vector per query (the fetch takes
 * one text); this many at a time, so a batch of 1,000 neither opens 1,000
 * connections to the embedder nor holds 1,000 descriptors. */
#define ROUTE_EMBED_PARALLEL 8
/* What the /v1/route jobs alive at once (fetching vectors, waiting for a
 * worker, or on one) may hold together: this many bodies of
 * server.max_body_bytes (64 MiB by default). After its check a job holds
 * copies of its strings, no larger than its body, its arrays, and over a
 * dense store its queries' vectors, so the
 * budget is about that many of the largest bodies at once, and it grows
 * with the setting that bounds one. Past it a request is refused 503
 * server_busy: the workers are two, so a longer queue would only hold
 * memory while its clients wait. */
#define ROUTE_HELD_BODIES 16

static int send_json(struct hs_req *req, int status, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(obj);
    if (!s) {
        gw_send_error(req, 500, NULL, "out_of_memory", "out of memory");
        return 500;
    }
    hs_respond(req, status, "application/json", s, strlen(s));
    free(s);
    return status;
}

static json_t *number_or_null(double v)
{
    return isnan(v) || isinf(v) ? json_null() : json_real(v);
}

/* Wall-clock seconds as gw_utc_time() writes them. */
static json_t *json_time(double at)
{
    char buf[40];
    gw_utc_time(at, buf, sizeof buf);
    return json_string(buf);
}

/* The configuration in use and the last SIGHUP: a failed reload leaves the
 * previous configuration serving, so status stays "ok", and says so here.
 * Why it failed is in the log only: /health needs no key, and a parse
 * error's message names the file and may quote a token of it. */
static json_t *health_config(const struct gw *gw)
{
    struct metrics_reload r;
    json_t *c = json_object();
    metrics_reload_state(gw->metrics, &r);
    json_object_set_new(c, "loaded_at", json_time(r.loaded_at));
    if (r.last_at <= 0) {
        json_object_set_new(c, "last_reload", json_null());
    } else {
        json_t *l = json_object();
        json_object_set_new(l, "result", json_string(r.last_failed ? "error" : "ok"));
        json_object_set_new(l, "at", json_time(r.last_at));
        json_object_set_new(c, "last_reload", l);
    }
    return c;
}

int api_health(struct gw *gw, struct hs_req *req, const char *id)
{
    json_t *o = json_object();
    (void)id;
    json_object_set_new(o, "status", json_string(gw->shutting_down ? "draining" : "ok"));
    json_object_set_new(o, "models", json_integer((json_int_t)gw->conf->n_models));
    json_object_set_new(o, "routes",
                        json_integer((json_int_t)lr_config_route_count(gw->conf->cfg)));
    json_object_set_new(o, "in_flight", json_integer((json_int_t)hs_server_busy(gw->http) - 1)); /* not this one */
    json_object_set_new(o, "version", json_string(LR_VERSION_STRING));
    json_object_set_new(o, "config", health_config(gw));
    json_object_set_new(o, "history_records",
                        gw->store ? json_integer((json_int_t)lr_store_count(gw->store))
                                  : json_null());
    /* A re-weighing of the store's copy is waiting for the next refresh. */
    json_object_set_new(o, "store_reweigh_due",
                        gw->store ? json_boolean(lr_store_reweigh_due(gw->store)) : json_null());
    {
        /* Each configured model's breaker and load, for operators and probes. */
        json_t *ups = json_object();
        double now = gw_now();
        for (size_t i = 0; i < gw->conf->n_models; i++) {
            const struct lr_model_info *mi = gw->conf->models[i].info;
            struct model_stats *ms = metrics_model(gw->metrics, mi->name);
            json_t *e = json_object();
            int st = RS_CLOSED;
            if (ms) {
                st = ms->breaker.state;
                if (st == RS_OPEN && now >= ms->breaker.open_until)
                    st = RS_HALF_OPEN;
                json_object_set_new(e, "consecutive_failures",
                                    json_integer((json_int_t)ms->breaker.consecutive));
                json_object_set_new(e, "retry_in_s",
                                    json_real(rs_breaker_ready_in(&ms->breaker, now)));
                json_object_set_new(e, "in_flight", json_integer((json_int_t)ms->in_flight));
            }
            json_object_set_new(e, "breaker", json_string(rs_breaker_state_name(st)));
            json_object_set_new(e, "max_concurrency", json_integer(mi->max_concurrency));
            json_object_set_new(ups, mi->name, e);
        }
        json_object_set_new(o, "upstreams", ups);
    }
    /* Draining: 503, so that a load balancer's or an orchestrator's probe
     * takes this instance out of rotation; the body is the same. */
    return send_json(req, gw->shutting_down ? 503 : 200, o);
}

int api_metrics(struct gw *gw, struct hs_req *req, const char *id)
{
    size_t len = 0;
    struct hs_conn_stats cs;
    char *text;
    (void)id;
    hs_server_conn_stats(gw->http, &cs);
    metrics_set_connections(gw->metrics, cs.open, cs.max, cs.cap_pauses, cs.descriptor_pauses);
    /* A read lock, as lr_store_count()'s for /health: a refresh's swap
     * holds the write lock only briefly. */
    metrics_set_store(gw->metrics, gw->store != NULL,
                      gw->store ? lr_store_added_since_build(gw->store) : 0);
    text = metrics_render(gw->metrics, gw_now(), &len);
    if (!text) {
        gw_send_error(req, 500, NULL, "out_of_memory", "out of memory rendering metrics");
        return 500;
    }
    hs_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return 200;
}

/* One entry of /v1/models: a model (owned by its backend) or a route. */
static json_t *model_entry(const char *name, const char *owned_by)
{
    json_t *e = json_object();
    json_object_set_new(e, "id", json_string(name));
    json_object_set_new(e, "object", json_string("model"));
    json_object_set_new(e, "created", json_integer(0));
    json_object_set_new(e, "owned_by", json_string(owned_by));
    return e;
}

int api_models(struct gw *gw, struct hs_req *req, const char *id)
{
    const struct lr_config *cfg = gw->conf->cfg;
    json_t *o = json_object(), *data = json_array();
    (void)id;
    for (size_t i = 0; i < lr_config_model_count(cfg); i++) {
        const struct lr_model_info *m = lr_config_model(cfg, i);
        json_array_append_new(data, model_entry(m->name, m->backend ? m->backend : "openai"));
    }
    for (size_t i = 0; i < lr_config_route_count(cfg); i++)
        json_array_append_new(data, model_entry(lr_config_route(cfg, i)->name, "llmroute-route"));
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    return send_json(req, 200, o);
}

/* Percent-decode src into dst (cap bytes with the NUL); -1 for a bad
 * escape, an encoded NUL or a name that does not fit. */
static int percent_decode(const char *src, char *dst, size_t cap)
{
    size_t n = 0;
    for (const char *p = src; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            int hi = hs_hex_digit((unsigned char)p[1]);
            int lo = hi < 0 ? -1 : hs_hex_digit((unsigned char)p[2]);
            if (lo < 0 || (hi | lo) == 0)
                return -1;
            c = hi * 16 + lo;
            p += 2;
        }
        if (n + 1 >= cap)
            return -1;
        dst[n++] = (char)c;
    }
    dst[n] = '\0';
    return 0;
}

int api_model(struct gw *gw, struct hs_req *req, const char *id)
{
    const struct lr_config *cfg = gw->conf->cfg;
    const char *given = hs_req_path(req) + strlen("/v1/models/");
    /* Decoded, a name is never longer than as sent: the buffer is the
     * target's size (a name that is over the 256-byte cap names nothing). */
    size_t cap = strlen(given) + 1;
    char *name = malloc(cap), shown[GW_NAME_SHOWN_CAP];
    int decoded;
    (void)id;
    if (!name) {
        gw_send_error(req, 500, NULL, "out_of_memory", "out of memory");
        return 500;
    }
    decoded = percent_decode(given, name, cap) == 0;
    if (decoded) {
        for (size_t i = 0; i < lr_config_model_count(cfg); i++) {
            const struct lr_model_info *m = lr_config_model(cfg, i);
            if (strcmp(m->name, name) == 0) {
                free(name);
                return send_json(req, 200,
                                 model_entry(m->name, m->backend ? m->backend : "openai"));
            }
        }
        for (size_t i = 0; i < lr_config_route_count(cfg); i++) {
            const char *route = lr_config_route(cfg, i)->name;
            if (strcmp(route, name) == 0) {
                free(name);
                return send_json(req, 200, model_entry(route, "llmroute-route"));
            }
        }
    }
    /* OpenAI's answer for a model it does not have. The name is quoted
     * decoded, as a body's `model` is (its bytes escaped as names are), or
     * as sent when it does not decode (a bad or NUL escape). */
    gw_name_shown(decoded ? name : given, shown, sizeof shown);
    free(name);
    gw_send_error(req, 404, "model", "model_not_found",
                  "The model '%s' does not exist or is not configured on this gateway", shown);
    return 404;
}

/* ==== POST /v1/route ==== */

static int refuse(struct hs_req *req, int status, const char *param, const char *code,
                  const char *msg)
{
    gw_send_error(req, status, param, code, "%s", msg);
    return status;
}

/* The request body as JSON, or NULL after answering 400, or 413 for a body
 * over server.max_json_values (status set). A number out of a double's
 * range is 400 invalid_value naming its member (lr_record_check_range()). */
static json_t *load_body(struct gw *gw, struct hs_req *req, int *status)
{
    json_error_t je;
    size_t len;
    const char *body = hs_req_body(req, &len);
    char msg[400];
    json_t *root;

    /* Counted before the parse, which costs memory by the value. */
    if (gw_body_over_value_limit(gw, gw->conf, body, len, msg, sizeof msg)) {
        *status = refuse(req, 413, NULL, "too_many_json_values", msg);
        return NULL;
    }
    /* A byte order mark, or a raw NUL byte, which jansson skips after a
     * number or a literal. */
    if (js_body_fault(body, len, msg, sizeof msg)) {
        *status = refuse(req, 400, NULL, "invalid_json", msg);
        return NULL;
    }
    /* Numbers read as reals, as the chat endpoints and an import read them:
     * every number here is checked by value (json_number_value), so an
     * integer past 64 bits is "over the cap" in the words of its member,
     * and one in a member nothing reads is no fault of the body's. */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
    if (!root && json_error_code(&je) == json_error_numeric_overflow) {
        /* A number past a double's range (1e400), which jansson refuses as
         * a syntax error of the whole body: named by its member, in the
         * words an import names it in a record, when it is the body's only
         * fault. */
        char field[256];
        struct lr_error err;
        if (lr_record_check_range(body, len, field, sizeof field, &err) != 0) {
            *status = refuse(req, 400, field[0] ? field : NULL, "invalid_value", err.message);
            return NULL;
        }
    }
    if (!root) {
        /* jansson names its own flag for a "\u0000": said as the import
         * says it, since no text these endpoints read may hold one. */
        static const char nul[] = "\\u0000 is not allowed without JSON_ALLOW_NUL";
        static const char nul_key[] = "NUL byte in object key not supported";
        if (strncmp(je.text, nul, sizeof nul - 1) == 0)
            snprintf(msg, sizeof msg,
                     "a NUL character (\\u0000) is not allowed in the request body%s (line %d, "
                     "column %d)",
                     je.text + sizeof nul - 1, je.line, je.column);
        else if (strncmp(je.text, nul_key, sizeof nul_key - 1) == 0)
            snprintf(msg, sizeof msg,
                     "a NUL character (\\u0000) is not allowed in a key%s (line %d, column %d)",
                     je.text + sizeof nul_key - 1, je.line, je.column);
        else
            snprintf(msg, sizeof msg,
                     "malformed JSON in the request body: %s (line %d, column %d)", je.text,
                     je.line, je.column);
        *status = refuse(req, 400, NULL, "invalid_json", msg);
    }
    return root;
}

/* Live load for /v1/route. Each model's room left under max_concurrency is
 * its batch capacity L_j (its configured capacity stays a ceiling); a model
 * that is full, or whose breaker admits no attempt (open, or half-open with
 * its probe in flight), is not live. caps and live have one
 * entry per configured model. Returns how many are live. */
static size_t live_models(struct gw *gw, int *caps, int *live)
{
    const struct gw_conf *conf = gw->conf;
    double now = gw_now();
    size_t n_live = 0;
    for (size_t j = 0; j < conf->n_models; j++) {
        const struct lr_model_info *mi = conf->models[j].info;
        struct model_stats *ms = metrics_model(gw->metrics, mi->name);
        caps[j] = mi->capacity;
        live[j] = 1;
        if (ms && mi->max_concurrency > 0) {
            long room = mi->max_concurrency - ms->in_flight;
            if (room <= 0)
                live[j] = 0;
            else if (caps[j] <= 0 || room < caps[j])
                caps[j] = (int)room;
        }
        /* Open, or half-open with its probe in flight: either way its
         * breaker admits no attempt now (a chat naming it is refused
         * circuit_open), so it is not offered. */
        if (ms && rs_breaker_ready_in(&ms->breaker, now) > 0)
            live[j] = 0;
        n_live += (size_t)live[j];
    }
    return n_live;
}

/* Keep only live models in a list of names, unless none would be left (the
 * router then decides among them as usual). Unknown names stay, so the
 * router reports them. Returns the new length. */
static size_t keep_live(const struct lr_config *cfg, const char **names, size_t n, const int *live)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int j = lr_config_model_index(cfg, names[i]);
        if (j < 0 || live[j])
            k++;
    }
    if (k == 0 || k == n)
        return n;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        int j = lr_config_model_index(cfg, names[i]);
        if (j < 0 || live[j])
            names[k++] = names[i];
    }
    return k;
}

/* The message for a candidate list that is no array, empty or too long:
 * too long says how long, as a chat's "models" does. */
static void list_message(char *buf, size_t cap, const char *param, const json_t *list)
{
    if (json_is_array(list) && json_array_size(list) > ROUTE_MAX_MODELS)
        snprintf(buf, cap, "%s: at most %d candidates, got %zu", param, ROUTE_MAX_MODELS,
                 json_array_size(list));
    else
        snprintf(buf, cap, "%s: expected 1 to %d model names", param, ROUTE_MAX_MODELS);
}

struct route_job;

/* One query's vector being fetched: the fetch's callback argument. */
struct route_fetch {
    struct route_job *job;
    size_t i;               /* the query */
    struct gw_embed *embed; /* in flight, or NULL */
};

/* A /v1/route request between its parse (on the loop) and its answer: for a
 * smart router over a dense store the queries' vectors are fetched first (on
 * the loop), then the decisions run on a worker (offload.c). Everything it
 * points into (the parsed body's strings, the router, the vectors) is kept
 * alive by the job. It holds no part of the parsed body: its strings are
 * copied out (strings), and the tree is freed before the job waits. */
struct route_job {
    struct gw *gw;
    struct gw_conf *conf; /* a reference: the router belongs to it */
    struct hs_req *req;   /* NULL once the client has gone */
    char *strings;        /* the queries and candidate names the requests point into */
    size_t held;          /* bytes counted in gw->route_held */
    struct lr_router *router;
    struct lr_request *reqs;
    struct lr_decision *dec;
    const char **names;
    int *caps, *live, *live_idx;
    size_t n;
    int batch;
    struct lr_batch_options bo;
    struct lr_batch_report rep;
    struct lr_error err;
    int rc;
    /* The vectors of a smart route over a dense store: fetch[0..n_fetch)
     * the queries that have text, vecs[] by query (NULL: none fetched). */
    struct route_fetch *fetch; /* NULL: no vectors are needed */
    float **vecs;
    size_t n_fetch, next_fetch, in_flight, fetched;
    int fetching; /* fetching vectors: an abort ends the job at once */
    double t0;
    /* The server's retry.deadline_ms from t0, a gw_now() time (0: none):
     * the vectors must be in by then, and the decisions made. */
    double deadline;
    /* Set on the loop when the client goes while the worker decides: the
     * worker stops at its next step (route_stop). */
    atomic_int gone;
    /* Set on the worker when route_stop stopped the decisions at the
     * deadline; read on the loop once the work is done. */
    int deadline_passed;
    char id[GW_REQUEST_ID_CAP];
};

static void route_job_free(struct route_job *j)
{
    /* Fetches still in flight are cancelled for a client gone (req NULL),
     * else abandoned: another fetch failed and is counted, and the batch
     * needs none of theirs (as "cancelled" they would read as clients gone). */
    for (size_t i = 0; j->fetch && i < j->n_fetch; i++) {
        if (j->req)
            gw_embed_abandon(j->fetch[i].embed);
        else
            gw_embed_cancel(j->fetch[i].embed);
    }
    for (size_t i = 0; j->vecs && i < j->n; i++)
        free(j->vecs[i]);
    free(j->fetch);
    free(j->vecs);
    gw_conf_unref(j->conf);
    j->gw->route_held -= j->held;
    free(j->strings);
    free(j->reqs);
    free(j->dec);
    free(j->names);
    free(j->caps);
    free(j->live);
    free(j->live_idx);
    free(j);
}

/* Asked by the library on the worker between queries and between the
 * optimizer's steps: a batch stops at the request's deadline, and when its
 * client has gone, so neither holds a worker for decisions nobody will
 * read. */
static int route_stop(void *arg)
{
    struct route_job *j = arg;
    if (atomic_load(&j->gone))
        return 1;
    if (j->deadline > 0 && gw_now() >= j->deadline) {
        j->deadline_passed = 1;
        return 1;
    }
    return 0;
}

static void route_work(void *arg)
{
    struct route_job *j = arg;
    memset(&j->rep, 0, sizeof j->rep);
    j->rc = lr_router_route_batch_stoppable(j->router, j->reqs, j->n, &j->bo, j->dec, &j->rep,
                                            &j->err, route_stop, j);
}

/* On the loop again: answer with the decisions (or the error). */
static void route_done(void *arg)
{
    struct route_job *j = arg;
    const struct lr_config *cfg = j->conf->cfg;
    json_t *out, *list;
    int status;

    if (!j->req) {
        gw_log_answered(j->gw, j->id, "POST", "/v1/route", 499, "client_closed", j->t0);
        route_job_free(j);
        return;
    }
    hs_req_watch(j->req, NULL, NULL, NULL);
    if (j->rc == LR_ECANCELED && j->deadline_passed) {
        /* As for the vectors' fetch: the client's deadline has passed, and
         * nothing was decided. The log line says where it stopped. */
        char msg[300], detail[600];
        snprintf(msg, sizeof msg,
                 "retry.deadline_ms (%ld ms) passed during the routing decision (the history "
                 "search, the predictions and the batch assignment); nothing was decided",
                 j->conf->set.policy.retry.deadline_ms);
        snprintf(detail, sizeof detail,
                 "retry.deadline_ms (%ld ms) passed during the routing decision: %s",
                 j->conf->set.policy.retry.deadline_ms, j->err.message);
        status = refuse(j->req, 504, NULL, "deadline_exceeded", msg);
        gw_log_answered_msg(j->gw, j->id, "POST", "/v1/route", status, "deadline_exceeded", detail,
                            j->t0);
        route_job_free(j);
        return;
    }
    if (j->rc == LR_EEMPTY && j->gw->store && lr_store_count(j->gw->store) == 0) {
        /* As a chat request's smart route: the gateway's state, not the
         * request's fault, and it passes once outcomes are added. */
        status = refuse(j->req, 503, NULL, "history_empty",
                        "the history store is empty: add outcomes (llmroute import, or "
                        "POST /v1/feedback) before a smart route");
        gw_log_answered(j->gw, j->id, "POST", "/v1/route", status, "history_empty", j->t0);
        route_job_free(j);
        return;
    }
    if (j->rc && j->rc != LR_EINFEASIBLE) {
        int st = j->rc == LR_ENOMODEL ? 404 : j->rc == LR_ENOMEM ? 500 : 400;
        status = refuse(j->req, st, NULL,
                        j->rc == LR_ENOMODEL ? "model_not_found" : "routing_failed",
                        j->err.message);
        gw_log_answered(j->gw, j->id, "POST", "/v1/route", status, "routing_failed", j->t0);
        route_job_free(j);
        return;
    }
    out = json_object();
    list = json_array();
    json_object_set_new(out, "strategy", json_string(lr_router_strategy(j->router)));
    for (size_t i = 0; i < j->n; i++) {
        json_t *a = json_object();
        const struct lr_model_info *mi = lr_config_model(cfg, (size_t)j->dec[i].index);
        json_object_set_new(a, "model", json_string(mi ? mi->name : ""));
        json_object_set_new(a, "index", json_integer(j->dec[i].index));
        json_object_set_new(a, "predicted_quality", number_or_null(j->dec[i].predicted_quality));
        json_object_set_new(a, "estimated_cost", number_or_null(j->dec[i].estimated_cost));
        json_array_append_new(list, a);
    }
    json_object_set_new(out, "assignments", list);
    if (j->batch) {
        json_t *r = json_object();
        json_object_set_new(r, "feasible", json_boolean(j->rep.feasible));
        json_object_set_new(r, "mean_quality", number_or_null(j->rep.mean_quality));
        json_object_set_new(r, "total_cost", number_or_null(j->rep.total_cost));
        json_object_set_new(r, "message", json_string(j->rep.message));
        json_object_set_new(out, "report", r);
    }
    status = send_json(j->req, 200, out);
    gw_log_answered(j->gw, j->id, "POST", "/v1/route", status, NULL, j->t0);
    route_job_free(j);
}

static void route_abort(void *arg)
{
    struct route_job *j = arg;
    j->req = NULL;
    atomic_store(&j->gone, 1);
    if (j->fetching) {
        /* Nothing was decided yet: the fetches stop with the job. */
        gw_log_answered(j->gw, j->id, "POST", "/v1/route", 499, "client_closed", j->t0);
        route_job_free(j);
    }
    /* else the worker stops at its next step; route_done frees the job */
}

/* Hand the decisions to a worker; when that fails, answer and log the
 * refusal now and free the job. */
static void route_decide(struct route_job *j)
{
    int status;
    j->fetching = 0;
    if (gw_offload(j->gw, route_work, route_done, j) == 0) {
        hs_req_watch(j->req, NULL, route_abort, j);
        return;
    }
    hs_req_watch(j->req, NULL, NULL, NULL);
    status = refuse(j->req, 500, NULL, "out_of_memory", "out of memory");
    gw_log_answered(j->gw, j->id, "POST", "/v1/route", status, "out_of_memory", j->t0);
    route_job_free(j);
}

/* A fetch failed (or could not start): the answer is the chat's for the
 * same failure (proxy.c's embed_got()), and the other fetches stop. f (a
 * failed fetch's, else NULL) gives the log line its detail and the answer
 * the embedder's Retry-After. */
static void route_fetch_failed(struct route_job *j, int status, const char *code,
                               const char *why, const struct gw_embed_failure *f)
{
    hs_req_watch(j->req, NULL, NULL, NULL);
    if (f && f->retry_after)
        hs_resp_header(j->req, "Retry-After", f->retry_after);
    status = refuse(j->req, status, NULL, code, why);
    gw_log_answered_msg(j->gw, j->id, "POST", "/v1/route", status, code, f ? f->detail : why,
                        j->t0);
    route_job_free(j);
}

static void route_got(void *arg, float *vec, size_t dim, const struct gw_embed_failure *fail);

/* The deadline passed while the vectors were fetched: the answer a chat
 * gets for the same (proxy.c's embed_got()); detail for the log line. */
static void route_deadline_passed(struct route_job *j, const struct gw_embed_failure *f)
{
    char msg[300];
    snprintf(msg, sizeof msg,
             "retry.deadline_ms (%ld ms) passed while the queries' embeddings were fetched from "
             "the embedding server (router.embedding)",
             j->conf->set.policy.retry.deadline_ms);
    hs_req_watch(j->req, NULL, NULL, NULL);
    refuse(j->req, 504, NULL, "deadline_exceeded", msg);
    gw_log_answered_msg(j->gw, j->id, "POST", "/v1/route", 504, "deadline_exceeded",
                        f ? f->detail : msg, j->t0);
    route_job_free(j);
}

/* Start fetches up to ROUTE_EMBED_PARALLEL in flight. 0, or -1 after
 * answering (out of memory, or the deadline passed; the job is freed). */
static int route_fetch_more(struct route_job *j)
{
    while (j->in_flight < ROUTE_EMBED_PARALLEL && j->next_fetch < j->n_fetch) {
        struct route_fetch *f = &j->fetch[j->next_fetch];
        if (j->deadline > 0 && gw_now() >= j->deadline) {
            route_deadline_passed(j, NULL);
            return -1;
        }
        f->embed = gw_embed_start(j->gw, j->conf, j->reqs[f->i].query, j->deadline, route_got, f);
        if (!f->embed) {
            route_fetch_failed(j, 500, "out_of_memory", "out of memory fetching the embedding",
                               NULL);
            return -1;
        }
        j->next_fetch++;
        j->in_flight++;
    }
    return 0;
}

/* One query's vector is in (or not): once all are, decide. */
static void route_got(void *arg, float *vec, size_t dim, const struct gw_embed_failure *fail)
{
    struct route_fetch *f = arg;
    struct route_job *j = f->job;

    f->embed = NULL; /* the fetch frees itself */
    j->in_flight--;
    if (!vec && fail->deadline_passed) {
        route_deadline_passed(j, fail);
        return;
    }
    if (!vec) {
        route_fetch_failed(j, 502, "embedding_failed", fail->why, fail);
        return;
    }
    j->vecs[f->i] = vec;
    j->reqs[f->i].embedding = vec;
    j->reqs[f->i].embedding_dim = dim;
    if (++j->fetched == j->n_fetch) {
        route_decide(j);
        return;
    }
    route_fetch_more(j);
}

/* Copy s to *p and move *p past it; the copy. */
static const char *keep(char **p, const char *s)
{
    size_t len = strlen(s) + 1;
    const char *copy = memcpy(*p, s, len);
    *p += len;
    return copy;
}

/* Copy the strings the requests point into (their queries, the default
 * candidates in names[0..n_names), each query's own list in its slot of
 * names) into one new block, and point them at the copies, so the parsed
 * body can be freed. The block (the caller frees it) and its size in
 * *size, or NULL when out of memory. */
static char *keep_strings(struct lr_request *reqs, size_t n, const char **names, size_t n_names,
                          size_t *size)
{
    size_t total = 1;
    char *block, *p;

    for (size_t k = 0; k < n_names; k++)
        total += strlen(names[k]) + 1;
    for (size_t i = 0; i < n; i++) {
        const char **mine = names + ROUTE_MAX_MODELS + i * ROUTE_MAX_MODELS;
        if (reqs[i].query)
            total += strlen(reqs[i].query) + 1;
        for (size_t k = 0; reqs[i].models == mine && k < reqs[i].n_models; k++)
            total += strlen(mine[k]) + 1;
    }
    if (!(block = malloc(total)))
        return NULL;
    p = block;
    for (size_t k = 0; k < n_names; k++)
        names[k] = keep(&p, names[k]);
    for (size_t i = 0; i < n; i++) {
        const char **mine = names + ROUTE_MAX_MODELS + i * ROUTE_MAX_MODELS;
        if (reqs[i].query)
            reqs[i].query = keep(&p, reqs[i].query);
        for (size_t k = 0; reqs[i].models == mine && k < reqs[i].n_models; k++)
            mine[k] = keep(&p, mine[k]);
    }
    *size = total;
    return block;
}

/* How many candidates the library routes query r among: its own list, or
 * every configured model. */
static size_t query_candidates(const struct gw_conf *conf, const struct lr_request *r)
{
    return r->models || r->model_indices ? r->n_models : lr_config_model_count(conf->cfg);
}

/* The queries whose vectors a route needs fetched: none unless some query
 * has a choice to make (gw_conf_needs_vector: a smart router over a dense
 * store, two or more candidates), and then each one with text, so that a
 * single-candidate query in a batch is predicted as over a built-in store.
 * A query with no text is fetched nothing (api_route refuses one with a
 * choice to make). */
static size_t route_fetch_count(const struct gw_conf *conf, struct lr_router *router,
                                const struct lr_request *reqs, size_t n)
{
    size_t k = 0, choice = 0;
    for (size_t i = 0; i < n; i++) {
        if (gw_conf_needs_vector(conf, router, query_candidates(conf, &reqs[i])))
            choice = 1;
        if (!gw_query_blank(reqs[i].query))
            k++;
    }
    return choice ? k : 0;
}

/* A smart batch ranks and sums estimated costs, so every candidate of every
 * query needs both prices, even a query's only one (`llmroute route --batch`
 * refuses the same, cmd_route.c's check_prices()): 0, or the status of the
 * 400 sent naming the model and the price. Unknown names are refused
 * before, route_names_known(). */
static int batch_prices(struct hs_req *req, const struct lr_config *cfg,
                        const struct lr_request *reqs, size_t n, const char **names)
{
    size_t all = lr_config_model_count(cfg);
    char param[64], msg[700];

    for (size_t i = 0; i < n; i++) {
        size_t m = reqs[i].models ? reqs[i].n_models : all;
        for (size_t k = 0; k < m; k++) {
            int j = reqs[i].models ? lr_config_model_index(cfg, reqs[i].models[k]) : (int)k;
            const struct lr_model_info *mi = j >= 0 ? lr_config_model(cfg, (size_t)j) : NULL;
            if (!mi || (!isnan(mi->cost_per_input_token) && !isnan(mi->cost_per_output_token)))
                continue;
            if (!reqs[i].models)
                param[0] = '\0';
            else if (reqs[i].models == names)
                snprintf(param, sizeof param, "models");
            else
                snprintf(param, sizeof param, "queries[%zu].models", i);
            snprintf(msg, sizeof msg,
                     "query %zu: model '%.200s' has no %s: smart routing ranks the candidates "
                     "by estimated cost, so each needs cost_per_input_token and "
                     "cost_per_output_token (in a batch, even a query's only candidate)",
                     i, mi->name,
                     isnan(mi->cost_per_input_token) ? "cost_per_input_token"
                                                     : "cost_per_output_token");
            return refuse(req, 400, param[0] ? param : NULL, "routing_failed", msg);
        }
    }
    return 0;
}

/* 0, or the status of the 404 sent for the first candidate list, a query's
 * own or the request's `models`, that names no configured model (a route's
 * name is said to be one): checked on
 * the loop before any vector is fetched or any query routed, with the
 * `param` of the list that named it. */
static int route_names_known(struct hs_req *req, const struct lr_config *cfg,
                             const struct lr_request *reqs, size_t n, const char **names)
{
    char param[64], msg[GW_NAME_SHOWN_CAP + 256], shown[GW_NAME_SHOWN_CAP];
    int defaults_checked = 0;

    for (size_t i = 0; i < n; i++) {
        if (!reqs[i].models || (reqs[i].models == names && defaults_checked))
            continue;
        if (reqs[i].models == names)
            defaults_checked = 1;
        for (size_t k = 0; k < reqs[i].n_models; k++) {
            const char *name = reqs[i].models[k];
            if (lr_config_model_index(cfg, name) >= 0)
                continue;
            if (reqs[i].models == names)
                snprintf(param, sizeof param, "models");
            else
                snprintf(param, sizeof param, "queries[%zu].models", i);
            gw_name_shown(name, shown, sizeof shown);
            if (lr_config_route_index(cfg, name) >= 0)
                snprintf(msg, sizeof msg,
                         "query %zu: '%s' is a route, not a model: a candidate list names "
                         "configured models (list the route's models, and give its strategy "
                         "as \"strategy\")",
                         i, shown);
            else
                snprintf(msg, sizeof msg, "query %zu: unknown model '%s'", i, shown);
            return refuse(req, 404, param, "model_not_found", msg);
        }
    }
    return 0;
}

/* 0, or the status of the 400 sent for the first query whose candidates name
 * a model twice, in the words of the library's refusal (router.c), with the
 * `param` of the list that names it (`models` or `queries[i].models`, as a
 * chat's refusal names `models`): checked on the loop for every strategy,
 * before models full or open are left out (which could drop both copies)
 * and before any vector is fetched, so that the caller's slip costs no
 * fetch and is not turned into a 502 by an embedder down. */
static int route_names_once(struct hs_req *req, const struct lr_config *cfg,
                            const struct lr_request *reqs, size_t n, const char **names)
{
    char param[64], msg[400];
    for (size_t i = 0; i < n; i++) {
        int a = reqs[i].models ? gw_repeated_candidate(cfg, reqs[i].models, reqs[i].n_models)
                               : -1;
        if (a < 0)
            continue;
        if (reqs[i].models == names)
            snprintf(param, sizeof param, "models");
        else
            snprintf(param, sizeof param, "queries[%zu].models", i);
        snprintf(msg, sizeof msg, "query %zu: model '%s' is listed twice among the candidates",
                 i, lr_config_model(cfg, (size_t)a)->name);
        return refuse(req, 400, param, "routing_failed", msg);
    }
    return 0;
}

/* 0, or the status of the 400 sent for the first query that has a choice to
 * make and no text, over either store: it is refused before any vector is
 * fetched, in the words of the library's refusal (smart.c), rather than
 * routed on the vector of "". The library refuses such a query too, but
 * only when it comes to it: the other queries' vectors would be fetched
 * first, and one without its vector refused in other words; and its
 * refusal does not say which field it is. Over an empty
 * store too: the fault is the request's, not the store's (history_empty),
 * and it would not pass once outcomes are added (unknown names are refused
 * before, route_names_known()). Its `param` is the query's text,
 * `queries[i].query`, absent or "". */
static int route_needs_text(struct gw *gw, struct hs_req *req, const struct gw_conf *conf,
                            struct lr_router *router, const struct lr_request *reqs, size_t n)
{
    char msg[100], param[48];

    if (!gw->store)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].query && reqs[i].query[0])
            continue;
        /* Among the candidates left once the full and open ones are left
         * out, as the library will see them. */
        if (!gw_router_has_choice(router, query_candidates(conf, &reqs[i])))
            continue;
        snprintf(msg, sizeof msg, "query %zu: smart routing needs the query text", i);
        snprintf(param, sizeof param, "queries[%zu].query", i);
        return refuse(req, 400, param, "routing_failed", msg);
    }
    return 0;
}

/* 503 server_busy: the /v1/route jobs alive hold their budget. */
static int route_busy(struct hs_req *req)
{
    char msg[300];
    snprintf(msg, sizeof msg,
             "the gateway is busy with other POST /v1/route requests (together they hold "
             "%d x server.max_body_bytes, the most it keeps waiting); retry shortly",
             ROUTE_HELD_BODIES);
    hs_resp_header(req, "Retry-After", "1");
    return refuse(req, 503, NULL, "server_busy", msg);
}

/* Checked on the loop, decided on a worker, answered on the loop: returns
 * 0 when the answer comes later, or the status of a refusal sent now. */
int api_route(struct gw *gw, struct hs_req *req, const char *id)
{
    struct gw_conf *conf = gw->conf;
    struct lr_error err = {0};
    struct route_job *job;
    json_t *root, *queries, *jstrategy, *jbatch, *jalpha, *jbudget, *jdefault;
    struct lr_request *reqs = NULL;
    struct lr_decision *dec = NULL;
    const char **names = NULL;
    int *caps = NULL, *live = NULL, *live_idx = NULL;
    size_t n_live = 0;
    struct lr_router *router;
    size_t n, n_names = 0;
    int status = 200, batch = 0;
    char param[64], msg[700];
    char *strings = NULL;
    size_t strings_size = 0, held, budget;
    double alpha = NAN, cost_budget = NAN;

    /* Saturated: a 32-bit size_t would wrap at 256 MiB bodies. */
    budget = conf->set.max_body_bytes > SIZE_MAX / ROUTE_HELD_BODIES
                 ? SIZE_MAX
                 : ROUTE_HELD_BODIES * (size_t)conf->set.max_body_bytes;
    /* Refused before the body is parsed when the budget is spent already. */
    if (gw->route_held >= budget)
        return route_busy(req);
    if (!(root = load_body(gw, req, &status)))
        return status;
    queries = json_object_get(root, "queries");
    jstrategy = json_object_get(root, "strategy");
    jbatch = json_object_get(root, "batch");
    jalpha = json_object_get(root, "alpha");
    jbudget = json_object_get(root, "budget");
    jdefault = json_object_get(root, "models");
    if (!json_is_object(root)) {
        status = refuse(req, 400, NULL, "invalid_json", "the request body must be a JSON object");
        goto out;
    }
    if (!json_is_array(queries) || json_array_size(queries) == 0) {
        status = refuse(req, 400, "queries",
                        !queries                 ? "missing_required_parameter"
                        : json_is_array(queries) ? "invalid_value" /* the right type, empty */
                                                 : "invalid_type",
                        "queries: expected a non-empty array of {\"query\", \"input_tokens\", "
                        "\"models\"} objects");
        goto out;
    }
    n = json_array_size(queries);
    if (n > ROUTE_MAX_QUERIES) {
        snprintf(msg, sizeof msg, "queries: at most %d per request, got %zu", ROUTE_MAX_QUERIES, n);
        status = refuse(req, 413, "queries", "too_many_queries", msg);
        goto out;
    }
    if (jstrategy && !json_is_string(jstrategy)) {
        status = refuse(req, 400, "strategy", "invalid_type", "strategy: expected a string");
        goto out;
    }
    if (jbatch && !json_is_boolean(jbatch)) {
        status = refuse(req, 400, "batch", "invalid_type", "batch: expected a boolean");
        goto out;
    }
    batch = json_is_true(jbatch);
    if (jalpha && (!json_is_number(jalpha) || json_number_value(jalpha) < 0 ||
                   json_number_value(jalpha) > 1)) {
        status =
            refuse(req, 400, "alpha", json_is_number(jalpha) ? "invalid_value" : "invalid_type",
                   "alpha: expected a number from 0 to 1");
        goto out;
    }
    /* Only a batch has a quality target; one decided query by query would
     * ignore it without a word. */
    if (jalpha && !batch) {
        status = refuse(req, 400, "alpha", "invalid_value",
                        "alpha: only a batch has a quality target (set \"batch\": true); each "
                        "query alone is decided by its route's performance_requirement");
        goto out;
    }
    /* A batch's other form, as `llmroute route --batch --budget`: the most
     * mean quality within a total estimated cost. */
    if (jbudget && (!json_is_number(jbudget) || !(json_number_value(jbudget) >= 0) ||
                    json_number_value(jbudget) > LR_BATCH_MAX_BUDGET)) {
        snprintf(msg, sizeof msg, "budget: expected a number from 0 to %g", LR_BATCH_MAX_BUDGET);
        status = refuse(req, 400, "budget", json_is_number(jbudget) ? "invalid_value"
                                                                    : "invalid_type", msg);
        goto out;
    }
    if (jbudget && !batch) {
        status = refuse(req, 400, "budget", "invalid_value",
                        "budget: only a batch has a budget (set \"batch\": true)");
        goto out;
    }
    if (jbudget && jalpha) {
        status = refuse(req, 400, "budget", "invalid_value",
                        "give alpha or budget with a batch, not both (alpha: the least cost at "
                        "that mean quality; budget: the most mean quality within that cost)");
        goto out;
    }
    /* An empty list is refused as a query's own is: taking it for "no
     * default" would route among every configured model. */
    if (jdefault && (!json_is_array(jdefault) || json_array_size(jdefault) == 0 ||
                     json_array_size(jdefault) > ROUTE_MAX_MODELS)) {
        list_message(msg, sizeof msg, "models", jdefault);
        status = refuse(req, 400, "models",
                        json_is_array(jdefault) ? "invalid_value" : "invalid_type", msg);
        goto out;
    }
    router = gw_conf_router(conf, jstrategy ? json_string_value(jstrategy) : NULL, &err);
    if (!router) {
        status = refuse(req, 400, "strategy", "invalid_value", err.message);
        goto out;
    }
    reqs = calloc(n, sizeof *reqs);
    dec = calloc(n, sizeof *dec);
    names = calloc(n * ROUTE_MAX_MODELS + ROUTE_MAX_MODELS, sizeof *names);
    if (!reqs || !dec || !names) {
        status = refuse(req, 500, NULL, "out_of_memory", "out of memory");
        goto out;
    }
    /* The request-wide default candidates, if any, come first in names. */
    if (jdefault) {
        size_t k;
        json_t *v;
        json_array_foreach(jdefault, k, v)
        {
            if (!json_is_string(v)) {
                snprintf(param, sizeof param, "models[%zu]", k);
                snprintf(msg, sizeof msg, "%s: expected a string", param);
                status = refuse(req, 400, param, "invalid_type", msg);
                goto out;
            }
            names[k] = json_string_value(v);
        }
        n_names = json_array_size(jdefault);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *q = json_array_get(queries, i), *text, *tok, *models;
        lr_request_init(&reqs[i]);
        if (!json_is_object(q)) {
            snprintf(param, sizeof param, "queries[%zu]", i);
            snprintf(msg, sizeof msg, "%s: expected an object", param);
            status = refuse(req, 400, param, "invalid_type", msg);
            goto out;
        }
        text = json_object_get(q, "query");
        tok = json_object_get(q, "input_tokens");
        models = json_object_get(q, "models");
        if (text && !json_is_string(text)) {
            snprintf(param, sizeof param, "queries[%zu].query", i);
            snprintf(msg, sizeof msg, "%s: expected a string", param);
            status = refuse(req, 400, param, "invalid_type", msg);
            goto out;
        }
        if (tok && !json_is_null(tok)) {
            /* The rule and words of an import's input_token_length (and of
             * /v1/feedback): a whole number from 0 to 1e9, 123.0 is 123. */
            struct lr_error nerr;
            double v = json_is_number(tok) ? json_number_value(tok) : NAN;
            snprintf(param, sizeof param, "queries[%zu].input_tokens", i);
            if (lr_record_check_number(LR_INPUT_TOKENS, v, param, &nerr)) {
                status = refuse(req, 400, param,
                                json_is_number(tok) ? "invalid_value" : "invalid_type",
                                nerr.message);
                goto out;
            }
            reqs[i].input_tokens = (long)v;
        }
        reqs[i].query = text ? json_string_value(text) : NULL;
        if (models) {
            const char **mine = names + ROUTE_MAX_MODELS + i * ROUTE_MAX_MODELS;
            size_t k;
            json_t *v;
            if (!json_is_array(models) || json_array_size(models) == 0 ||
                json_array_size(models) > ROUTE_MAX_MODELS) {
                snprintf(param, sizeof param, "queries[%zu].models", i);
                list_message(msg, sizeof msg, param, models);
                status = refuse(req, 400, param,
                                json_is_array(models) ? "invalid_value" : "invalid_type", msg);
                goto out;
            }
            json_array_foreach(models, k, v)
            {
                if (!json_is_string(v)) {
                    snprintf(param, sizeof param, "queries[%zu].models[%zu]", i, k);
                    snprintf(msg, sizeof msg, "%s: expected a string", param);
                    status = refuse(req, 400, param, "invalid_type", msg);
                    goto out;
                }
                mine[k] = json_string_value(v);
            }
            reqs[i].models = mine;
            reqs[i].n_models = json_array_size(models);
        } else if (n_names) {
            reqs[i].models = names;
            reqs[i].n_models = n_names;
        }
    }
    if ((status = route_names_known(req, conf->cfg, reqs, n, names)) != 0 ||
        (status = route_names_once(req, conf->cfg, reqs, n, names)) != 0)
        goto out;
    if (batch && strcmp(lr_router_strategy(router), "smart") == 0 &&
        (status = batch_prices(req, conf->cfg, reqs, n, names)) != 0)
        goto out;
    /* The job keeps copies of its strings, not the parsed body: a tree
     * costs many times the text it was parsed from, and the job may wait
     * for vectors and for a worker. */
    strings = keep_strings(reqs, n, names, n_names, &strings_size);
    if (!strings) {
        status = refuse(req, 500, NULL, "out_of_memory", "out of memory");
        goto out;
    }
    if (jalpha)
        alpha = json_number_value(jalpha);
    if (jbudget)
        cost_budget = json_number_value(jbudget);
    json_decref(root);
    root = NULL;
    held = strings_size + n * (sizeof *reqs + sizeof *dec) +
           (n * ROUTE_MAX_MODELS + ROUTE_MAX_MODELS) * sizeof *names +
           3 * (conf->n_models + 1) * sizeof(int) + sizeof(struct route_job);
    /* Over a dense store the job also holds each query's vector until it
     * is answered: at 1,536 dimensions a short query's is 6 KB, far more
     * than its text. (Counted before models full or open are left out,
     * which can only leave fewer to fetch.) */
    size_t fetch = route_fetch_count(conf, router, reqs, n);
    if (fetch > 0)
        held += n * sizeof(float *) +
                fetch * (sizeof(struct route_fetch) +
                         (conf->store ? lr_store_dim(conf->store) : 0) * sizeof(float));
    /* One job is always taken, whatever its size. */
    if (gw->route_held > 0 && gw->route_held + held > budget) {
        status = route_busy(req);
        goto out;
    }
    caps = calloc(conf->n_models + 1, sizeof *caps);
    live = calloc(conf->n_models + 1, sizeof *live);
    live_idx = calloc(conf->n_models + 1, sizeof *live_idx);
    if (!caps || !live || !live_idx) {
        status = refuse(req, 500, NULL, "out_of_memory", "out of memory");
        goto out;
    }
    n_live = live_models(gw, caps, live);
    if (n_live > 0 && n_live < conf->n_models) {
        size_t k = 0;
        for (size_t j = 0; j < conf->n_models; j++)
            if (live[j])
                live_idx[k++] = (int)j;
        for (size_t i = 0; i < n; i++) {
            if (reqs[i].models && reqs[i].models != names)
                reqs[i].n_models = keep_live(conf->cfg, (const char **)reqs[i].models,
                                             reqs[i].n_models, live);
            else if (!reqs[i].models) {
                reqs[i].model_indices = live_idx;
                reqs[i].n_models = n_live;
            }
        }
        n_names = keep_live(conf->cfg, names, n_names, live);
        for (size_t i = 0; i < n; i++)
            if (reqs[i].models == names)
                reqs[i].n_models = n_names;
    }
    if ((status = route_needs_text(gw, req, conf, router, reqs, n)) != 0)
        goto out;
    job = calloc(1, sizeof *job);
    if (!job) {
        status = refuse(req, 500, NULL, "out_of_memory", "out of memory");
        goto out;
    }
    job->gw = gw;
    atomic_init(&job->gone, 0);
    job->conf = conf;
    gw_conf_ref(conf);
    job->req = req;
    job->strings = strings;
    job->held = held;
    gw->route_held += held;
    job->router = router;
    job->reqs = reqs;
    job->dec = dec;
    job->names = names;
    job->caps = caps;
    job->live = live;
    job->live_idx = live_idx;
    job->n = n;
    job->batch = batch;
    job->t0 = gw_now();
    if (conf->set.policy.retry.deadline_ms > 0)
        job->deadline = job->t0 + (double)conf->set.policy.retry.deadline_ms / 1000;
    snprintf(job->id, sizeof job->id, "%s", id);
    lr_batch_options_init(&job->bo);
    job->bo.capacities = caps;
    if (batch)
        job->bo.mode = isnan(cost_budget) ? LR_BATCH_QUALITY : LR_BATCH_BUDGET;
    if (!isnan(alpha))
        job->bo.alpha = alpha;
    if (!isnan(cost_budget))
        job->bo.budget = cost_budget;
    strings = NULL; /* the job owns these now */
    reqs = NULL;
    dec = NULL;
    names = NULL;
    caps = live = live_idx = NULL;
    /* A dense store routes by the queries' vectors: fetch them first. */
    job->n_fetch = route_fetch_count(conf, router, job->reqs, n);
    if (job->n_fetch > 0) {
        size_t k = 0;
        job->fetch = calloc(job->n_fetch, sizeof *job->fetch);
        job->vecs = calloc(n, sizeof *job->vecs);
        if (!job->fetch || !job->vecs) {
            route_job_free(job);
            status = refuse(req, 500, NULL, "out_of_memory", "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            if (gw_query_blank(job->reqs[i].query))
                continue; /* none, or blank: no vector to fetch */
            job->fetch[k].job = job;
            job->fetch[k++].i = i;
        }
        job->fetching = 1;
        hs_req_watch(req, NULL, route_abort, job);
        route_fetch_more(job); /* on failure it has answered and logged */
        status = 0;
        goto out;
    }
    route_decide(job); /* a refusal there is answered and logged there */
    status = 0;
out:
    free(strings);
    free(reqs);
    free(dec);
    free(names);
    free(caps);
    free(live);
    free(live_idx);
    json_decref(root);
    return status;
}

/* ==== POST /v1/feedback ==== */

/* A feedback request between its check and its answer: the vector is
 * fetched first for a dense store, then the append (a commit with fsync, and
 * now and then a re-weigh of the store's copy) runs on a worker. */
struct feedback {
    struct gw *gw;
    struct gw_conf *conf; /* a reference: its embedder may be in use */
    struct hs_req *req;   /* NULL once the client has gone */
    struct gw_embed *embed;
    int working; /* on a worker: only feedback_done may end it */
    /* The client went away while the feedback waited for its worker: set
     * on the loop, read by the worker, which then appends nothing. */
    atomic_int client_gone;
    int skipped; /* the worker found client_gone set: nothing stored */
    int busy_queued; /* answered store_busy without an append (it queued behind one) */
    char *query, *model;
    char *key; /* the Idempotency-Key header, or NULL */
    int duplicate; /* the key was already recorded (LR_STORE_KEY_SAME or _DIFFERS): nothing
                    * stored */
    long in_tokens;
    double correctness, out_tokens;
    float *vec; /* a dense store's vector for the query */
    size_t dim;
    int rc; /* the append's result, and the store's size after it */
    int gone; /* for LR_EREPLACED: lr_store_gone() right after the append */
    struct lr_error err;
    size_t records;
    double t0;
    double t_queued; /* given to a worker */
    char id[GW_REQUEST_ID_CAP];
    const char *why; /* a refusal's message, for its log line, or NULL */
};

/* Answer logged and counted (outcome, llmroute_feedback_total), the
 * feedback freed. */
static void feedback_end(struct feedback *fb, int status, const char *error,
                         enum metrics_feedback outcome)
{
    metrics_count_feedback(fb->gw->metrics, outcome);
    gw_log_answered_msg(fb->gw, fb->id, "POST", "/v1/feedback", status, error,
                        fb->why && *fb->why ? fb->why : NULL, fb->t0);
    gw_embed_cancel(fb->embed);
    gw_conf_unref(fb->conf);
    free(fb->query);
    free(fb->model);
    free(fb->key);
    free(fb->vec);
    free(fb);
}

/* The client went away before its answer. While the append runs it cannot
 * be called back (it may be committed: the client saw no 200 and may send
 * it again); before that, nothing is stored. */
static void feedback_abort(void *arg)
{
    struct feedback *fb = arg;
    fb->req = NULL;
    if (!fb->working)
        feedback_end(fb, 499, "client_closed", MF_CLIENT_CLOSED);
    else
        atomic_store(&fb->client_gone, 1); /* still queued, it is not appended */
}

static void feedback_work(void *arg)
{
    struct feedback *fb = arg;
    struct gw *gw = fb->gw;
    if (atomic_load(&fb->client_gone)) {
        /* Its client left while it waited its turn (behind an append that
         * waited for another process's write lock, say): its append has
         * not started, so nothing is stored, as the client was told by no
         * answer. A client that times out and sends it again without an
         * Idempotency-Key would otherwise record it twice. */
        fb->skipped = 1;
        return;
    }
    if (gw->store_busy_at > 0 && fb->t_queued <= gw->store_busy_at) {
        /* It waited behind an append that found the store busy for its
         * whole 5 s: the store was busy all the while it waited, so it has
         * waited its turn already and is answered store_busy at once,
         * rather than each one queued waiting 5 s more in turn. Appends are
         * the jobs of one lane, so store_busy_at is theirs alone. */
        fb->rc = LR_EBUSY;
        fb->busy_queued = 1;
        return;
    }
    if (fb->key)
        fb->rc = lr_store_add_outcome_keyed(fb->gw->store, fb->key, fb->query, fb->in_tokens,
                                            fb->model, fb->correctness, fb->out_tokens, fb->vec,
                                            fb->dim, &fb->duplicate, &fb->err);
    else
        fb->rc = fb->vec ? lr_store_add_outcome_vec(fb->gw->store, fb->query, fb->in_tokens,
                                                    fb->model, fb->correctness, fb->out_tokens,
                                                    fb->vec, fb->dim, &fb->err)
                         : lr_store_add_outcome(fb->gw->store, fb->query, fb->in_tokens,
                                                fb->model, fb->correctness, fb->out_tokens,
                                                &fb->err);
    gw->store_busy_at = fb->rc == LR_EBUSY ? gw_now() : 0;
    if (fb->rc == LR_EREPLACED)
        fb->gone = lr_store_gone(fb->gw->store); /* as the append found it */
    fb->records = lr_store_count(fb->gw->store);
}

/* What the append did, for the metrics: counted so even when its client
 * has gone, as the outcome may be in the store all the same. */
static enum metrics_feedback append_outcome(const struct feedback *fb)
{
    if (fb->rc == 0 && fb->duplicate == LR_STORE_KEY_DIFFERS)
        return MF_KEY_REUSED;
    if (fb->rc == 0)
        return fb->duplicate ? MF_ALREADY_RECORDED : MF_RECORDED;
    if (fb->rc == LR_EBUSY)
        return MF_STORE_BUSY;
    if (fb->rc == LR_EREPLACED)
        return MF_STORE_REPLACED;
    if (fb->rc == LR_EINVAL)
        return MF_BAD_REQUEST;
    return MF_STORE_ERROR;
}

/* The client's words for a store_replaced, by what the append found at the
 * store's path. The library's message (the log line's) names the path and
 * the reason a file cannot be opened; like the gateway's other answers
 * about its store (history_empty, store_busy) this names neither. */
static const char *replaced_message(int gone)
{
    switch (gone) {
    case LR_STORE_GONE_REMOVED:
        return "the history store's file was removed since the gateway opened it; nothing was "
               "recorded, nor will be until a store is put at its path";
    case LR_STORE_GONE_UNOPENABLE:
        return "the history store's file was replaced since the gateway opened it, and the "
               "file now at its path cannot be opened as a store (the gateway's log says why); "
               "nothing was recorded, nor will be until it can be";
    case LR_STORE_GONE_REPLACED:
        return "the history store's file was replaced by another file since the gateway "
               "opened it; nothing was recorded: retry the feedback once the gateway has "
               "opened the new file (at its next store refresh)";
    default: /* opened again meanwhile */
        return "the history store's file was replaced or removed since the gateway opened "
               "it; nothing was recorded: retry the feedback";
    }
}

/* The append left the store's re-weighing due (its store was opened with
 * defer_reweigh); with no periodic refresh to run it, one starts now, on a
 * worker. */
static void feedback_reweigh(struct gw *gw)
{
    if (gw->conf->set.store_refresh_ms <= 0 && lr_store_reweigh_due(gw->store))
        gw_store_refresh_start(gw);
}

/* On the loop again: 200 {"status": "recorded", "records": N} (or
 * "already_recorded" for an Idempotency-Key already in the store with this
 * body), 422 for the key in the store with another body, or the error. */
static void feedback_done(void *arg)
{
    struct feedback *fb = arg;
    int status;
    fb->working = 0;
    if (!fb->req) {
        /* No one to answer, but the append ran all the same: what it left
         * to do is done as for an answered one, or a re-weigh it made due
         * (a replaced store it found) waited for the next feedback. */
        if (!fb->skipped && fb->rc == LR_EREPLACED)
            gw_store_replaced(fb->gw, fb->err.message);
        else if (!fb->skipped && fb->rc == 0)
            feedback_reweigh(fb->gw);
        feedback_end(fb, 499, "client_closed",
                     fb->skipped ? MF_CLIENT_CLOSED : append_outcome(fb));
        return;
    }
    hs_req_watch(fb->req, NULL, NULL, NULL);
    if (fb->rc == LR_EBUSY) {
        /* Another process (an import) has held the store longer than the
         * append waits: transient, and nothing was stored. */
        hs_resp_header(fb->req, "Retry-After", "1");
        status = refuse(fb->req, 503, NULL, "store_busy",
                        "the history store is busy (another process holds it); nothing was "
                        "recorded, retry the feedback");
        if (fb->busy_queued)
            /* No append of its own ran, so the library said nothing: the
             * log line still says why, as the append's own refusal does. */
            snprintf(fb->err.message, sizeof fb->err.message,
                     "history store '%s' is busy: the append before this feedback found "
                     "it held by another process for over 5 s, and this one waited behind "
                     "it as long; nothing was written, try again",
                     fb->gw->store_path ? fb->gw->store_path : "");
        fb->why = fb->err.message;
        feedback_end(fb, status, "store_busy", MF_STORE_BUSY);
        return;
    }
    if (fb->rc == LR_EREPLACED) {
        /* The store's file was moved away or removed: nothing was written,
         * and the refresh this starts opens the file now at the path. */
        gw_store_replaced(fb->gw, fb->err.message); /* logged before the answer goes */
        hs_resp_header(fb->req, "Retry-After", "1");
        status = refuse(fb->req, 503, NULL, "store_replaced", replaced_message(fb->gone));
        fb->why = fb->err.message;
        feedback_end(fb, status, "store_replaced", MF_STORE_REPLACED);
        return;
    }
    if (fb->rc == 0 && fb->duplicate == LR_STORE_KEY_DIFFERS) {
        /* The key names a feedback whose record holds another query, model
         * or figure: answering already_recorded would drop what this one
         * says, unseen. As the IETF's Idempotency-Key draft has it: 422. */
        char msg[600];
        snprintf(msg, sizeof msg,
                 "Idempotency-Key '%s' was already used for a feedback with a different body "
                 "(query, model, correctness, output_tokens or input_tokens); nothing was "
                 "recorded: send a new key for a new feedback, or the same body to retry",
                 fb->key);
        status = refuse(fb->req, 422, "Idempotency-Key", "idempotency_key_reused", msg);
        feedback_end(fb, status, "idempotency_key_reused", MF_KEY_REUSED);
        return;
    }
    if (fb->rc) {
        /* LR_ETOOBIG is the store at a limit of its own (its records, its
         * 4,096 model names): this feedback passed every check of a
         * record's, so it is the store's reason, not the request's, as a
         * full disk is. */
        int code = fb->rc == LR_EINVAL ? 400 : 500;
        status = refuse(fb->req, code, NULL, code == 400 ? "invalid_value" : "store_error",
                        fb->err.message);
        fb->why = fb->err.message; /* why: "database or disk is full", say */
        feedback_end(fb, status, "feedback_refused", append_outcome(fb));
        return;
    }
    {
        json_t *o = json_object();
        json_object_set_new(o, "status",
                            json_string(fb->duplicate ? "already_recorded" : "recorded"));
        json_object_set_new(o, "records", json_integer((json_int_t)fb->records));
        status = send_json(fb->req, 200, o);
    }
    feedback_reweigh(fb->gw);
    feedback_end(fb, status, NULL, append_outcome(fb));
}

static void feedback_append(struct feedback *fb)
{
    fb->working = 1;
    fb->t_queued = gw_now();
    if (gw_offload_serial(fb->gw, GW_LANE_FEEDBACK, feedback_work, feedback_done, fb) != 0) {
        int status;
        fb->working = 0;
        hs_req_watch(fb->req, NULL, NULL, NULL);
        status = refuse(fb->req, 500, NULL, "out_of_memory", "out of memory recording feedback");
        feedback_end(fb, status, "out_of_memory", MF_INTERNAL_ERROR);
    }
}

static void feedback_got(void *arg, float *vec, size_t dim, const struct gw_embed_failure *f)
{
    struct feedback *fb = arg;
    fb->embed = NULL; /* the fetch frees itself */
    if (!vec) {
        int status;
        hs_req_watch(fb->req, NULL, NULL, NULL);
        if (f->retry_after)
            hs_resp_header(fb->req, "Retry-After", f->retry_after);
        status = refuse(fb->req, 502, NULL, "embedding_failed", f->why);
        fb->why = f->detail; /* the log line's: it names the URL */
        feedback_end(fb, status, "embedding_failed", MF_EMBEDDING_FAILED);
        return;
    }
    fb->vec = vec;
    fb->dim = dim;
    feedback_append(fb);
}

/* Take the checked outcome over: 0 (answered later), or a status sent now. */
static int feedback_begin(struct gw *gw, struct hs_req *req, const char *id, const char *query,
                          long in_tokens, const char *model, double correctness,
                          double out_tokens, const char *key)
{
    struct feedback *fb = calloc(1, sizeof *fb);
    if (!fb || !(fb->query = strdup(query)) || !(fb->model = strdup(model)) ||
        (key && !(fb->key = strdup(key)))) {
        if (fb) {
            free(fb->query);
            free(fb->model);
            free(fb);
        }
        return refuse(req, 500, NULL, "out_of_memory", "out of memory recording feedback");
    }
    fb->gw = gw;
    fb->conf = gw->conf;
    gw_conf_ref(fb->conf);
    fb->req = req;
    fb->in_tokens = in_tokens;
    fb->correctness = correctness;
    fb->out_tokens = out_tokens;
    fb->t0 = gw_now();
    snprintf(fb->id, sizeof fb->id, "%s", id);
    hs_req_watch(req, NULL, feedback_abort, fb);
    if (!fb->conf->embed) {
        feedback_append(fb);
        return 0;
    }
    fb->embed = gw_embed_start(gw, fb->conf, query, 0, feedback_got, fb);
    if (!fb->embed) {
        int status;
        hs_req_watch(req, NULL, NULL, NULL);
        status = refuse(req, 500, NULL, "out_of_memory", "out of memory recording feedback");
        feedback_end(fb, status, "out_of_memory", MF_INTERNAL_ERROR);
    }
    return 0;
}

/* The first member of a feedback body that is none of its fields, or NULL.
 * Unlike /v1/route (decisions, nothing kept) and the forwarded endpoints
 * (whose other members are the upstream's), a feedback is written to the
 * history for good, so a member it does not know is refused rather than
 * ignored. */
static const char *feedback_unknown_member(json_t *root)
{
    static const char *const fields[] = {"query", "model", "correctness", "output_tokens",
                                         "input_tokens", NULL};
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        size_t i;
        for (i = 0; fields[i] && strcmp(fields[i], key) != 0; i++)
            ;
        if (!fields[i])
            return key;
    }
    return NULL;
}

/* {"query": str, "model": str, "correctness": bool|number in [0,1],
 *  "output_tokens": number from 0 to 1e9, "input_tokens": whole number from
 *  0 to 1e9 (optional; 123.0 is 123)} appends one outcome to the history
 * store; the numbers are checked by the import's rules and messages
 * (lr_record_check_number). The SQLite commit happens before
 * the 200, so an acknowledged outcome survives a crash; it runs on the event
 * loop and costs one small transaction. A dense store (a remote embedder's
 * vectors) needs the query's vector: it is fetched from the embedder first,
 * without blocking the loop, and the answer waits for it.
 *
 * An Idempotency-Key header makes a retry safe: the key is committed with
 * the outcome, and a key already in the store answers 200
 * {"status": "already_recorded"} and stores nothing, or 422
 * idempotency_key_reused when the record it was committed with holds
 * other fields than this body's (lr_store_add_outcome_keyed compares
 * them). The header sent more than once is a 400 naming it. */
static int feedback_check(struct gw *gw, struct hs_req *req, const char *id)
{
    json_t *root, *q, *m, *c, *ot, *it;
    const char *unknown;
    double correctness, out_tokens, in_value;
    long in_tokens = -1;
    int status;
    struct lr_error nerr = {0};
    char msg[700];
    const char *key = hs_req_header(req, "Idempotency-Key");

    if (!gw->store)
        return refuse(req, 501, NULL, "no_history_store",
                      "this gateway has no history store: start it with --store FILE or set "
                      "router.store in the config");
    if (gw->opts->store_read_only)
        return refuse(req, 501, NULL, "store_read_only",
                      "this gateway opened its history store read-only (serve "
                      "--store-read-only): feedback is not recorded; start it without "
                      "--store-read-only on a store it may write");
    if (hs_req_header_count(req, "Idempotency-Key") > 1) {
        /* A repeated header is a list (RFC 9110, 5.3), and a feedback has
         * one key: taking the first would record under a key the client may
         * not have meant. Refused even when the copies are equal. */
        snprintf(msg, sizeof msg,
                 "Idempotency-Key: sent %d times; send the header once, with one key",
                 hs_req_header_count(req, "Idempotency-Key"));
        return refuse(req, 400, "Idempotency-Key", "invalid_value", msg);
    }
    if (key && !lr_store_key_valid(key)) {
        snprintf(msg, sizeof msg,
                 "Idempotency-Key: expected 1 to %d bytes of printable ASCII (0x21-0x7E, no "
                 "spaces or control characters)",
                 LR_STORE_MAX_KEY);
        return refuse(req, 400, "Idempotency-Key", "invalid_value", msg);
    }
    if (!(root = load_body(gw, req, &status)))
        return status;
    q = json_object_get(root, "query");
    m = json_object_get(root, "model");
    c = json_object_get(root, "correctness");
    ot = json_object_get(root, "output_tokens");
    it = json_object_get(root, "input_tokens");
    /* The numbers as the import reads them (record.c's rules, through
     * lr_record_check_number): NaN for what is not a number. */
    correctness = json_is_boolean(c)  ? (json_is_true(c) ? 1.0 : 0.0)
                  : json_is_number(c) ? json_number_value(c)
                                      : NAN;
    out_tokens = json_is_number(ot) ? json_number_value(ot) : NAN;
    in_value = json_is_number(it) ? json_number_value(it) : NAN;
    if (!json_is_object(root)) {
        status = refuse(req, 400, NULL, "invalid_json", "the request body must be a JSON object");
    } else if ((unknown = feedback_unknown_member(root)) != NULL) {
        /* A write to the history: a misspelt member ("input_token") would
         * otherwise be dropped without a word, and the record stored with
         * the estimate in its place, for good. */
        char param[130];
        size_t n = strlen(unknown);
        if (n > 128) { /* cut between UTF-8 characters: a key is valid UTF-8 */
            n = 128;
            while (n > 0 && ((unsigned char)unknown[n] & 0xC0) == 0x80)
                n--;
        }
        snprintf(param, sizeof param, "%.*s", (int)n, unknown);
        snprintf(msg, sizeof msg,
                 "%s: unknown member (a feedback takes query, model, correctness, "
                 "output_tokens and input_tokens); nothing was recorded",
                 param);
        status = refuse(req, 400, param, "invalid_value", msg);
    } else if (!json_is_string(q) || json_string_length(q) == 0) {
        /* The codes as elsewhere: invalid_type for a member of the wrong
         * JSON type, invalid_value for the right type holding a value
         * refused (as /v1/route's queries[i].input_tokens). */
        status = refuse(req, 400, "query",
                        !q                   ? "missing_required_parameter"
                        : json_is_string(q) ? "invalid_value"
                                            : "invalid_type",
                        "query: expected a non-empty string");
    } else if (lr_record_check_query(json_string_value(q), json_string_length(q), &nerr)) {
        /* The record's own limits (its size cap), checked here rather than
         * at the append: before the query is sent to be embedded. */
        status = refuse(req, 400, "query", "invalid_value", nerr.message);
    } else if (!json_is_string(m)) {
        status = refuse(req, 400, "model", m ? "invalid_type" : "missing_required_parameter",
                        "model: expected a model name");
    } else if (lr_config_model_index(gw->conf->cfg, json_string_value(m)) < 0) {
        /* Quoted as names are (gw_name_shown), and a route's said to be
         * one, as /v1/route says it (route_names_known()). */
        char shown[GW_NAME_SHOWN_CAP], said[GW_NAME_SHOWN_CAP + 256];
        gw_name_shown(json_string_value(m), shown, sizeof shown);
        if (lr_config_route_index(gw->conf->cfg, json_string_value(m)) >= 0)
            snprintf(said, sizeof said,
                     "model '%s' is a route, not a model: a feedback names the configured "
                     "model that answered (the x-llmroute-model header of its answer)",
                     shown);
        else
            snprintf(said, sizeof said, "model '%s' is not a configured model", shown);
        status = refuse(req, 404, "model", "model_not_found", said);
    } else if (lr_record_check_number(LR_CORRECTNESS, correctness, "correctness", &nerr)) {
        status = refuse(req, 400, "correctness",
                        !c                                         ? "missing_required_parameter"
                        : json_is_number(c) || json_is_boolean(c) ? "invalid_value"
                                                                   : "invalid_type",
                        nerr.message);
    } else if (lr_record_check_number(LR_OUTPUT_TOKENS, out_tokens, "output_tokens", &nerr)) {
        status = refuse(req, 400, "output_tokens",
                        !ot                  ? "missing_required_parameter"
                        : json_is_number(ot) ? "invalid_value"
                                             : "invalid_type",
                        nerr.message);
    } else if (it && !json_is_null(it) &&
               lr_record_check_number(LR_INPUT_TOKENS, in_value, "input_tokens", &nerr)) {
        status = refuse(req, 400, "input_tokens",
                        json_is_number(it) ? "invalid_value" : "invalid_type", nerr.message);
    } else {
        if (it && !json_is_null(it))
            in_tokens = (long)in_value;
        status = feedback_begin(gw, req, id, json_string_value(q), in_tokens,
                                json_string_value(m), correctness, out_tokens, key);
    }
    json_decref(root);
    return status;
}

/* A feedback answered at once is counted here by its status (every other
 * is counted by feedback_end() when it is answered). */
int api_feedback(struct gw *gw, struct hs_req *req, const char *id)
{
    int status = feedback_check(gw, req, id);
    enum metrics_feedback outcome;

    if (status == 0)
        return 0;
    switch (status) {
    case 404:
        outcome = MF_UNKNOWN_MODEL;
        break;
    case 501:
        outcome = MF_NO_STORE;
        break;
    case 500:
        outcome = MF_INTERNAL_ERROR;
        break;
    default: /* 400, or 413 for a body over server.max_json_values */
        outcome = MF_BAD_REQUEST;
        break;
    }
    metrics_count_feedback(gw->metrics, outcome);
    return status;
}
