/* metrics.c -- counters, histograms and their Prometheus text exposition
 * (see metrics.h). Lookups are linear scans over small arrays: the series are
 * bounded by the configured models and routes, the gateway's fixed endpoints
 * and a few statuses, and a scan over a few dozen short strings is cheaper
 * than hashing them. The other series (feedback outcomes, embedder fetch
 * classes, store refresh results) are fixed arrays.
 *
 * Threads: the event loop thread only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmroute.h"
#include "metrics.h"

#define MAX_SERIES 4096

static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,  5,     10,   30,  60,   120};
static const double overhead_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                         0.005,   0.01,   0.025,   0.05,   0.1};
#define N_LAT (sizeof latency_bounds / sizeof latency_bounds[0])
#define N_OVH (sizeof overhead_bounds / sizeof overhead_bounds[0])

struct series {
    char *route, *model;
    int status;
    uint64_t count;
};

/* llmroute_http_requests_total: endpoint points to a static label (the
 * gateway's endpoint table, or "other"), so nothing is copied. */
struct http_series {
    const char *endpoint;
    int status;
    uint64_t count;
};

static const char *const feedback_names[MF_N] = {
    "recorded",    "already_recorded", "bad_request",   "unknown_model",
    "no_store",    "embedding_failed", "store_busy",    "store_replaced",
    "store_error", "internal_error",   "client_closed", "key_reused",
};

/* The results of a store refresh job, by what it called. */
/* out_of_memory: the refresh ran out of memory (LR_ENOMEM), or could not be
 * started for want of it (gateway.c). */
enum store_result {
    SR_UNCHANGED,
    SR_REBUILT,
    SR_REOPENED,
    SR_REPLACED,
    SR_ERROR,
    SR_OUT_OF_MEMORY,
    SR_N
};
static const char *const store_result_names[SR_N] = {
    "unchanged", "rebuilt", "reopened", "replaced", "error", "out_of_memory"};

static const char *const affinity_names[MA_N] = {"hit", "miss", "not_candidate"};

struct metrics {
    struct series *series;
    size_t n_series, cap_series;
    uint64_t dropped_series; /* requests not counted by label once the cap is hit */
    struct http_series *http;
    size_t n_http, cap_http;
    uint64_t feedback[MF_N];
    uint64_t affinity[MA_N];
    uint64_t embed_fetches[RS_N_CLASSES];
    uint64_t embed_cancelled; /* fetches aborted in flight: their client went away */
    struct hist embed_latency;
    uint64_t store_refreshes[2][SR_N]; /* [0] lr_store_refresh, [1] lr_store_rebuild */
    int has_store;
    size_t added_since_build;
    int built; /* a refresh job has rebuilt the copy: build_seconds is set */
    double build_seconds;
    struct model_stats **models;
    size_t n_models, cap_models;
    struct hist overhead, duration;
    uint64_t reloads_ok, reloads_failed;
    double conf_loaded_at, last_reload_at; /* wall clock; last_reload_at 0: none */
    int last_reload_failed;
    uint64_t attempts_sum, attempts_count;
    uint64_t attempts_per_request[6]; /* 0, 1, 2, 3, 4, 5+ */
    long waiting;
    uint64_t queue_rejected;
    size_t conns_open, conns_max;
    uint64_t cap_pauses, descriptor_pauses;
};

static void hist_init(struct hist *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n;
}

void hist_observe(struct hist *h, double s)
{
    size_t i = 0;
    if (s < 0)
        s = 0;
    while (i < h->n_bounds && s > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += s;
}

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    hist_init(&m->overhead, overhead_bounds, N_OVH);
    hist_init(&m->duration, latency_bounds, N_LAT);
    hist_init(&m->embed_latency, latency_bounds, N_LAT);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_series; i++) {
        free(m->series[i].route);
        free(m->series[i].model);
    }
    free(m->series);
    free(m->http);
    for (size_t i = 0; i < m->n_models; i++) {
        free(m->models[i]->name);
        free(m->models[i]);
    }
    free(m->models);
    free(m);
}

struct model_stats *metrics_model(struct metrics *m, const char *name)
{
    struct model_stats *s;
    for (size_t i = 0; i < m->n_models; i++)
        if (strcmp(m->models[i]->name, name) == 0)
            return m->models[i];
    /* No cap: the names are the configured models' (a config holds up to
     * 1024), and a model's entry carries its max_concurrency count and its
     * breaker, which a NULL would switch off (a cap of 4096 was reached
     * after a few reloads renaming 1000 models). */
    if (m->n_models == m->cap_models) {
        size_t cap = m->cap_models ? m->cap_models * 2 : 16;
        struct model_stats **g = realloc(m->models, cap * sizeof *g);
        if (!g)
            return NULL;
        m->models = g;
        m->cap_models = cap;
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(name))) {
        free(s);
        return NULL;
    }
    hist_init(&s->upstream_latency, latency_bounds, N_LAT);
    hist_init(&s->ttft, latency_bounds, N_LAT);
    m->models[m->n_models++] = s;
    return s;
}

/* The endpoints are a fixed table and the statuses three digits, so the
 * cap is never reached in practice; past it (or out of memory) the request
 * counts in llmroute_requests_unlabelled_total. */
static void count_http(struct metrics *m, const char *endpoint, int status)
{
    struct http_series *h;
    for (size_t i = 0; i < m->n_http; i++) {
        h = &m->http[i];
        if (h->status == status && strcmp(h->endpoint, endpoint) == 0) {
            h->count++;
            return;
        }
    }
    if (m->n_http >= MAX_SERIES) {
        m->dropped_series++;
        return;
    }
    if (m->n_http == m->cap_http) {
        size_t cap = m->cap_http ? m->cap_http * 2 : 16;
        struct http_series *g = realloc(m->http, cap * sizeof *g);
        if (!g) {
            m->dropped_series++;
            return;
        }
        m->http = g;
        m->cap_http = cap;
    }
    h = &m->http[m->n_http++];
    h->endpoint = endpoint;
    h->status = status;
    h->count = 1;
}

void metrics_count_request(struct metrics *m, const char *endpoint, const char *route,
                           const char *model, int status)
{
    struct series *s;
    count_http(m, endpoint, status);
    for (size_t i = 0; i < m->n_series; i++) {
        s = &m->series[i];
        if (s->status == status && strcmp(s->model, model) == 0 && strcmp(s->route, route) == 0) {
            s->count++;
            return;
        }
    }
    if (m->n_series >= MAX_SERIES) {
        m->dropped_series++;
        return;
    }
    if (m->n_series == m->cap_series) {
        size_t cap = m->cap_series ? m->cap_series * 2 : 32;
        struct series *g = realloc(m->series, cap * sizeof *g);
        if (!g) {
            m->dropped_series++;
            return;
        }
        m->series = g;
        m->cap_series = cap;
    }
    s = &m->series[m->n_series];
    s->route = strdup(route);
    s->model = strdup(model);
    if (!s->route || !s->model) {
        free(s->route);
        free(s->model);
        m->dropped_series++;
        return;
    }
    s->status = status;
    s->count = 1;
    m->n_series++;
}

void metrics_observe_overhead(struct metrics *m, double s)
{
    hist_observe(&m->overhead, s);
}

void metrics_observe_duration(struct metrics *m, double s)
{
    hist_observe(&m->duration, s);
}

void metrics_count_reload(struct metrics *m, int ok, double at)
{
    m->last_reload_at = at;
    m->last_reload_failed = !ok;
    if (ok) {
        m->reloads_ok++;
        m->conf_loaded_at = at;
    } else {
        m->reloads_failed++;
    }
}

void metrics_config_loaded(struct metrics *m, double at)
{
    m->conf_loaded_at = at;
}

void metrics_reload_state(const struct metrics *m, struct metrics_reload *out)
{
    out->loaded_at = m->conf_loaded_at;
    out->last_at = m->last_reload_at;
    out->last_failed = m->last_reload_failed;
}

void metrics_count_attempts(struct metrics *m, unsigned attempts)
{
    m->attempts_sum += attempts;
    m->attempts_count++;
    m->attempts_per_request[attempts < 5 ? attempts : 5]++;
}

void metrics_set_waiting(struct metrics *m, long waiting)
{
    m->waiting = waiting;
}

void metrics_count_queue_rejected(struct metrics *m)
{
    m->queue_rejected++;
}

void metrics_count_feedback(struct metrics *m, enum metrics_feedback outcome)
{
    if (outcome >= 0 && outcome < MF_N)
        m->feedback[outcome]++;
}

void metrics_count_affinity(struct metrics *m, enum metrics_affinity result)
{
    if (result >= 0 && result < MA_N)
        m->affinity[result]++;
}

void metrics_count_embed(struct metrics *m, enum rs_class c, double seconds)
{
    if (c < 0 || c >= RS_N_CLASSES)
        c = RS_PROTOCOL;
    m->embed_fetches[c]++;
    hist_observe(&m->embed_latency, seconds);
}

void metrics_count_embed_cancelled(struct metrics *m)
{
    m->embed_cancelled++;
}

void metrics_count_store_refresh(struct metrics *m, int rebuild, int rc, int changed,
                                 double seconds)
{
    enum store_result r;
    if (rc == LR_EREPLACED)
        r = SR_REPLACED;
    else if (rc == LR_ENOMEM)
        r = SR_OUT_OF_MEMORY;
    else if (rc != 0)
        r = SR_ERROR;
    else if (changed == 2)
        r = SR_REOPENED;
    else if (changed)
        r = SR_REBUILT;
    else
        r = SR_UNCHANGED;
    m->store_refreshes[rebuild ? 1 : 0][r]++;
    if (rc == 0 && changed) {
        m->built = 1;
        m->build_seconds = seconds;
    }
}

void metrics_set_store(struct metrics *m, int has_store, size_t added_since_build)
{
    m->has_store = has_store;
    m->added_since_build = added_since_build;
}

void metrics_set_connections(struct metrics *m, size_t open, size_t max, uint64_t cap_pauses,
                             uint64_t descriptor_pauses)
{
    m->conns_open = open;
    m->conns_max = max;
    m->cap_pauses = cap_pauses;
    m->descriptor_pauses = descriptor_pauses;
}

/* ==== Exposition ==== */

struct out {
    char *p;
    size_t len, cap;
    int failed;
};

static void put(struct out *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (o->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        {
            size_t cap = o->cap * 2 + (size_t)n;
            char *g = realloc(o->p, cap);
            if (!g) {
                o->failed = 1;
                return;
            }
            o->p = g;
            o->cap = cap;
        }
    }
}

/* A buffer for one escaped label value, grown to fit: a configured name
 * may be long (a model's or a route's is up to 256 bytes, twice that
 * escaped), and a value cut short would merge two series into one and could
 * end in the middle of a UTF-8 sequence, which a scraper refuses. */
struct esc_buf {
    char *p;
    size_t cap;
    int failed; /* out of memory: the rendering fails */
};

/* s with \, " and newline escaped, in e (valid until its next use); "" and
 * e->failed set when out of memory. */
static const char *esc(struct esc_buf *e, const char *s)
{
    size_t need = 2 * strlen(s) + 1, o = 0;
    if (need > e->cap) {
        char *g = realloc(e->p, need);
        if (!g) {
            e->failed = 1;
            return "";
        }
        e->p = g;
        e->cap = need;
    }
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            e->p[o++] = '\\';
            e->p[o++] = *s;
        } else if (*s == '\n') {
            e->p[o++] = '\\';
            e->p[o++] = 'n';
        } else {
            e->p[o++] = *s;
        }
    }
    e->p[o] = '\0';
    return e->p;
}

/* A histogram's series; model is its model label's escaped value, or NULL
 * for none. */
static void put_hist(struct out *o, const char *name, const char *model, const struct hist *h)
{
    uint64_t cum = 0;
    const char *pre = model ? "model=\"" : "", *mv = model ? model : "", *post = model ? "\"," : "";
    for (size_t i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        put(o, "%s_bucket{%s%s%sle=\"%g\"} %llu\n", name, pre, mv, post, h->bounds[i],
            (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    put(o, "%s_bucket{%s%s%sle=\"+Inf\"} %llu\n", name, pre, mv, post, (unsigned long long)cum);
    if (model) {
        put(o, "%s_sum{model=\"%s\"} %.9g\n", name, model, h->sum);
        put(o, "%s_count{model=\"%s\"} %llu\n", name, model, (unsigned long long)h->count);
    } else {
        put(o, "%s_sum %.9g\n", name, h->sum);
        put(o, "%s_count %llu\n", name, (unsigned long long)h->count);
    }
}

char *metrics_render(const struct metrics *m, double now, size_t *len)
{
    struct out o = {malloc(8192), 0, 8192, 0};
    struct esc_buf ea = {NULL, 0, 0}, eb = {NULL, 0, 0};
    const char *a;

    if (!o.p)
        return NULL;
    put(&o, "# HELP llmroute_requests_total Requests answered, by route, model and status.\n"
            "# TYPE llmroute_requests_total counter\n");
    for (size_t i = 0; i < m->n_series; i++) {
        const struct series *s = &m->series[i];
        put(&o, "llmroute_requests_total{route=\"%s\",model=\"%s\",status=\"%d\"} %llu\n",
            esc(&ea, s->route), esc(&eb, s->model), s->status, (unsigned long long)s->count);
    }
    put(&o, "# HELP llmroute_http_requests_total Requests answered, by endpoint (the gateway's "
            "fixed paths, or other) and status.\n"
            "# TYPE llmroute_http_requests_total counter\n");
    for (size_t i = 0; i < m->n_http; i++)
        put(&o, "llmroute_http_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
            esc(&ea, m->http[i].endpoint), m->http[i].status, (unsigned long long)m->http[i].count);
    put(&o,
        "# HELP llmroute_requests_unlabelled_total Requests past the series cap.\n"
        "# TYPE llmroute_requests_unlabelled_total counter\n"
        "llmroute_requests_unlabelled_total %llu\n",
        (unsigned long long)m->dropped_series);

    put(&o, "# HELP llmroute_in_flight Requests in flight per model.\n"
            "# TYPE llmroute_in_flight gauge\n");
    for (size_t i = 0; i < m->n_models; i++)
        put(&o, "llmroute_in_flight{model=\"%s\"} %ld\n", esc(&ea, m->models[i]->name),
            m->models[i]->in_flight);
    put(&o, "# HELP llmroute_tokens_total Tokens reported by upstreams' usage.\n"
            "# TYPE llmroute_tokens_total counter\n");
    for (size_t i = 0; i < m->n_models; i++) {
        a = esc(&ea, m->models[i]->name);
        put(&o, "llmroute_tokens_total{model=\"%s\",direction=\"in\"} %llu\n", a,
            (unsigned long long)m->models[i]->tokens_in);
        put(&o, "llmroute_tokens_total{model=\"%s\",direction=\"out\"} %llu\n", a,
            (unsigned long long)m->models[i]->tokens_out);
    }
    put(&o, "# HELP llmroute_unmetered_answers_total Answers whose upstream reported no token "
            "usage (a stream without stream_options.include_usage, a cut stream): "
            "llmroute_cost_total leaves them out.\n"
            "# TYPE llmroute_unmetered_answers_total counter\n");
    for (size_t i = 0; i < m->n_models; i++)
        put(&o, "llmroute_unmetered_answers_total{model=\"%s\"} %llu\n",
            esc(&ea, m->models[i]->name), (unsigned long long)m->models[i]->unmetered);
    put(&o, "# HELP llmroute_stream_done_added_total Streams that ended cleanly with every "
            "choice finished but without data: [DONE], which the gateway added.\n"
            "# TYPE llmroute_stream_done_added_total counter\n");
    for (size_t i = 0; i < m->n_models; i++)
        put(&o, "llmroute_stream_done_added_total{model=\"%s\"} %llu\n",
            esc(&ea, m->models[i]->name), (unsigned long long)m->models[i]->streams_done_added);
    put(&o, "# HELP llmroute_estimated_cost_total Cost the router estimated when routing.\n"
            "# TYPE llmroute_estimated_cost_total counter\n");
    for (size_t i = 0; i < m->n_models; i++)
        put(&o, "llmroute_estimated_cost_total{model=\"%s\"} %.9g\n", esc(&ea, m->models[i]->name),
            m->models[i]->estimated_cost);
    put(&o, "# HELP llmroute_cost_total Cost from the upstreams' reported usage and prices.\n"
            "# TYPE llmroute_cost_total counter\n");
    for (size_t i = 0; i < m->n_models; i++)
        put(&o, "llmroute_cost_total{model=\"%s\"} %.9g\n", esc(&ea, m->models[i]->name),
            m->models[i]->actual_cost);

    put(&o, "# HELP llmroute_upstream_latency_seconds Upstream attempt time, start to last "
            "byte.\n# TYPE llmroute_upstream_latency_seconds histogram\n");
    for (size_t i = 0; i < m->n_models; i++) {
        put_hist(&o, "llmroute_upstream_latency_seconds", esc(&ea, m->models[i]->name),
                 &m->models[i]->upstream_latency);
    }
    put(&o, "# HELP llmroute_time_to_first_token_seconds Upstream attempt start to the first "
            "stream event relayed to the client.\n"
            "# TYPE llmroute_time_to_first_token_seconds histogram\n");
    for (size_t i = 0; i < m->n_models; i++) {
        put_hist(&o, "llmroute_time_to_first_token_seconds", esc(&ea, m->models[i]->name),
                 &m->models[i]->ttft);
    }
    put(&o, "# HELP llmroute_gateway_overhead_seconds Request time not spent waiting on the "
            "upstream.\n# TYPE llmroute_gateway_overhead_seconds histogram\n");
    put_hist(&o, "llmroute_gateway_overhead_seconds", NULL, &m->overhead);
    put(&o, "# HELP llmroute_request_duration_seconds Request time in the gateway, end to "
            "end.\n# TYPE llmroute_request_duration_seconds histogram\n");
    put_hist(&o, "llmroute_request_duration_seconds", NULL, &m->duration);
    put(&o, "# HELP llmroute_upstream_attempts_total Upstream attempts by model and outcome "
            "(failure class, ok, or client_closed and shutdown for those the gateway cut "
            "short).\n# TYPE llmroute_upstream_attempts_total counter\n");
    for (size_t i = 0; i < m->n_models; i++) {
        a = esc(&ea, m->models[i]->name);
        for (int c = 0; c < RS_N_CLASSES; c++)
            if (m->models[i]->attempts[c] || c == RS_OK)
                put(&o, "llmroute_upstream_attempts_total{model=\"%s\",class=\"%s\"} %llu\n", a,
                    rs_class_name((enum rs_class)c), (unsigned long long)m->models[i]->attempts[c]);
        if (m->models[i]->attempts_client_closed)
            put(&o, "llmroute_upstream_attempts_total{model=\"%s\",class=\"client_closed\"} %llu\n",
                a, (unsigned long long)m->models[i]->attempts_client_closed);
        if (m->models[i]->attempts_shutdown)
            put(&o, "llmroute_upstream_attempts_total{model=\"%s\",class=\"shutdown\"} %llu\n", a,
                (unsigned long long)m->models[i]->attempts_shutdown);
    }
    put(&o, "# HELP llmroute_candidates_skipped_total Candidates passed over, by model and "
            "reason.\n# TYPE llmroute_candidates_skipped_total counter\n");
    for (size_t i = 0; i < m->n_models; i++) {
        a = esc(&ea, m->models[i]->name);
        put(&o, "llmroute_candidates_skipped_total{model=\"%s\",reason=\"breaker_open\"} %llu\n", a,
            (unsigned long long)m->models[i]->skipped_open);
        put(&o, "llmroute_candidates_skipped_total{model=\"%s\",reason=\"at_capacity\"} %llu\n", a,
            (unsigned long long)m->models[i]->skipped_full);
    }
    put(&o, "# HELP llmroute_breaker_state Circuit breaker per model: 0 closed, 1 open, "
            "2 half-open.\n# TYPE llmroute_breaker_state gauge\n");
    for (size_t i = 0; i < m->n_models; i++) {
        const struct rs_breaker *br = &m->models[i]->breaker;
        int st = br->state == RS_OPEN && now >= br->open_until ? RS_HALF_OPEN : br->state;
        put(&o, "llmroute_breaker_state{model=\"%s\"} %d\n", esc(&ea, m->models[i]->name),
            st);
    }
    put(&o, "# HELP llmroute_breaker_opens_total Times each model's breaker opened.\n"
            "# TYPE llmroute_breaker_opens_total counter\n");
    for (size_t i = 0; i < m->n_models; i++)
        put(&o, "llmroute_breaker_opens_total{model=\"%s\"} %llu\n",
            esc(&ea, m->models[i]->name), (unsigned long long)m->models[i]->breaker.opens);
    put(&o,
        "# HELP llmroute_request_attempts Upstream attempts per forwarded request.\n"
        "# TYPE llmroute_request_attempts summary\n"
        "llmroute_request_attempts_sum %llu\nllmroute_request_attempts_count %llu\n",
        (unsigned long long)m->attempts_sum, (unsigned long long)m->attempts_count);
    put(&o, "# HELP llmroute_requests_by_attempts_total Forwarded requests by how many upstream "
            "attempts they made.\n# TYPE llmroute_requests_by_attempts_total counter\n");
    for (int k = 0; k < 6; k++)
        put(&o, "llmroute_requests_by_attempts_total{attempts=\"%d%s\"} %llu\n", k,
            k == 5 ? "+" : "", (unsigned long long)m->attempts_per_request[k]);
    put(&o,
        "# HELP llmroute_queue_waiting Requests waiting for a model with room.\n"
        "# TYPE llmroute_queue_waiting gauge\nllmroute_queue_waiting %ld\n"
        "# HELP llmroute_queue_rejected_total Requests refused with 429: queue full or wait "
        "over.\n# TYPE llmroute_queue_rejected_total counter\nllmroute_queue_rejected_total %llu\n",
        m->waiting, (unsigned long long)m->queue_rejected);
    put(&o,
        "# HELP llmroute_connections_open Client connections open.\n"
        "# TYPE llmroute_connections_open gauge\nllmroute_connections_open %zu\n"
        "# HELP llmroute_connections_max The client connection cap (server.max_connections "
        "or its default).\n# TYPE llmroute_connections_max gauge\nllmroute_connections_max %zu\n"
        "# HELP llmroute_accept_paused_total Times accepting paused: at the connection cap, or "
        "out of descriptors.\n# TYPE llmroute_accept_paused_total counter\n"
        "llmroute_accept_paused_total{reason=\"max_connections\"} %llu\n"
        "llmroute_accept_paused_total{reason=\"descriptors\"} %llu\n",
        m->conns_open, m->conns_max, (unsigned long long)m->cap_pauses,
        (unsigned long long)m->descriptor_pauses);
    put(&o, "# HELP llmroute_feedback_total POST /v1/feedback requests by outcome.\n"
            "# TYPE llmroute_feedback_total counter\n");
    for (int k = 0; k < MF_N; k++)
        put(&o, "llmroute_feedback_total{outcome=\"%s\"} %llu\n", feedback_names[k],
            (unsigned long long)m->feedback[k]);
    put(&o, "# HELP llmroute_response_affinity_total POST /v1/responses requests with a "
            "previous_response_id, by what the gateway knew of it: hit (sent to the model "
            "that served it), miss (not known), not_candidate (that model is not among the "
            "request's candidates).\n"
            "# TYPE llmroute_response_affinity_total counter\n");
    for (int k = 0; k < MA_N; k++)
        put(&o, "llmroute_response_affinity_total{result=\"%s\"} %llu\n", affinity_names[k],
            (unsigned long long)m->affinity[k]);
    put(&o, "# HELP llmroute_embedder_fetches_total Query vectors fetched from the remote "
            "embedder (router.embedding), by outcome (failure class, ok, or cancelled: its "
            "client went away).\n"
            "# TYPE llmroute_embedder_fetches_total counter\n");
    for (int c = 0; c < RS_N_CLASSES; c++)
        if (m->embed_fetches[c] || c == RS_OK)
            put(&o, "llmroute_embedder_fetches_total{class=\"%s\"} %llu\n",
                rs_class_name((enum rs_class)c), (unsigned long long)m->embed_fetches[c]);
    if (m->embed_cancelled)
        put(&o, "llmroute_embedder_fetches_total{class=\"cancelled\"} %llu\n",
            (unsigned long long)m->embed_cancelled);
    put(&o, "# HELP llmroute_embedder_fetch_seconds Remote embedder fetch time, start to "
            "end.\n# TYPE llmroute_embedder_fetch_seconds histogram\n");
    put_hist(&o, "llmroute_embedder_fetch_seconds", NULL, &m->embed_latency);
    put(&o, "# HELP llmroute_store_refreshes_total History store refreshes, by call (refresh, "
            "or rebuild to converge) and result.\n"
            "# TYPE llmroute_store_refreshes_total counter\n");
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < SR_N; r++)
            put(&o, "llmroute_store_refreshes_total{call=\"%s\",result=\"%s\"} %llu\n",
                k ? "rebuild" : "refresh", store_result_names[r],
                (unsigned long long)m->store_refreshes[k][r]);
    if (m->has_store)
        put(&o,
            "# HELP llmroute_store_appended_since_build Records appended to the store's copy "
            "since it was last built whole.\n"
            "# TYPE llmroute_store_appended_since_build gauge\n"
            "llmroute_store_appended_since_build %zu\n",
            m->added_since_build);
    if (m->built)
        put(&o,
            "# HELP llmroute_store_build_seconds How long the last refresh that built the "
            "store's copy again took.\n"
            "# TYPE llmroute_store_build_seconds gauge\n"
            "llmroute_store_build_seconds %.9g\n",
            m->build_seconds);
    put(&o,
        "# HELP llmroute_config_reloads_total Configuration reloads by result.\n"
        "# TYPE llmroute_config_reloads_total counter\n"
        "llmroute_config_reloads_total{result=\"ok\"} %llu\n"
        "llmroute_config_reloads_total{result=\"error\"} %llu\n"
        "# HELP llmroute_config_last_reload_successful Whether the last reload succeeded "
        "(1 before any).\n"
        "# TYPE llmroute_config_last_reload_successful gauge\n"
        "llmroute_config_last_reload_successful %d\n"
        "# HELP llmroute_config_last_reload_success_timestamp_seconds When the configuration "
        "in use was loaded.\n"
        "# TYPE llmroute_config_last_reload_success_timestamp_seconds gauge\n"
        "llmroute_config_last_reload_success_timestamp_seconds %.3f\n",
        (unsigned long long)m->reloads_ok, (unsigned long long)m->reloads_failed,
        !m->last_reload_failed, m->conf_loaded_at);
    free(ea.p);
    free(eb.p);
    if (o.failed || ea.failed || eb.failed) {
        free(o.p);
        return NULL;
    }
    *len = o.len;
    return o.p;
}
