/* metrics.h -- the gateway's counters and histograms, and the per-model
 * state table (in-flight counts, circuit breakers, attempts by failure
 * class), where routing reads them. Rendered in Prometheus text
 * format by GET /metrics. Series are keyed by configured names and fixed
 * labels only, so their number is bounded by the configuration, and they
 * survive reloads.
 *
 * Threads: the event loop thread only. What a worker thread does (a feedback
 * append, a store refresh) is counted when its result is delivered on the
 * loop, never from the worker.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "resil.h"

#define HIST_MAX_BUCKETS 16

struct hist {
    const double *bounds; /* upper bounds in seconds, ascending */
    size_t n_bounds;
    uint64_t counts[HIST_MAX_BUCKETS + 1]; /* the last is +Inf */
    uint64_t count;
    double sum;
};

/* One model's live state and totals. */
struct model_stats {
    char *name;
    long in_flight;
    uint64_t tokens_in, tokens_out;
    uint64_t unmetered;          /* answers whose upstream reported no usage: no cost counted */
    uint64_t streams_done_added; /* streams that ended finished without [DONE]: it was added */
    double estimated_cost, actual_cost;
    struct hist upstream_latency; /* attempt start to last byte */
    struct hist ttft;             /* attempt start to first body byte, streams */
    struct rs_breaker breaker;
    uint64_t attempts[RS_N_CLASSES]; /* upstream attempts by outcome (RS_OK: success) */
    /* Attempts cut short by the gateway, which the breaker does not hear: the
     * client went away, or the shutdown deadline passed. */
    uint64_t attempts_client_closed, attempts_shutdown;
    uint64_t skipped_open;           /* candidates passed over: breaker open */
    uint64_t skipped_full;           /* candidates passed over: max_concurrency reached */
};

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* The model's entry, created on first use; NULL only when out of memory. */
struct model_stats *metrics_model(struct metrics *m, const char *name);
/* One answered request. route and model may be "" (none). endpoint is its
 * label in llmroute_http_requests_total: a string of static storage from
 * the gateway's fixed endpoint table (gw_endpoint_label()), never a
 * request's own path, so that series stays bounded. */
void metrics_count_request(struct metrics *m, const char *endpoint, const char *route,
                           const char *model, int status);
void metrics_observe_overhead(struct metrics *m, double seconds);
void metrics_observe_duration(struct metrics *m, double seconds);
/* A SIGHUP reload at wall-clock time `at` (seconds since the epoch): ok, or
 * failed, the previous configuration kept. metrics_config_loaded() sets the
 * time the configuration in use was loaded, at start; a reload that
 * succeeds sets it again. */
void metrics_count_reload(struct metrics *m, int ok, double at);
void metrics_config_loaded(struct metrics *m, double at);
/* The configuration's state for /health: when the one in use was loaded;
 * the last reload's time (0: none yet) and whether it failed. */
struct metrics_reload {
    double loaded_at, last_at;
    int last_failed;
};
void metrics_reload_state(const struct metrics *m, struct metrics_reload *out);
/* A finished request made `attempts` upstream attempts (0 when none). */
void metrics_count_attempts(struct metrics *m, unsigned attempts);
/* The capacity queue: its length now, and one more request refused. */
void metrics_set_waiting(struct metrics *m, long waiting);
void metrics_count_queue_rejected(struct metrics *m);
/* The HTTP server's connections: open now, the cap, and the times accepting
 * paused at the cap and for want of descriptors. */
void metrics_set_connections(struct metrics *m, size_t open, size_t max, uint64_t cap_pauses,
                             uint64_t descriptor_pauses);
void hist_observe(struct hist *h, double seconds);

/* What became of a POST /v1/feedback the feedback handler took (past the
 * key check): llmroute_feedback_total{outcome}. */
enum metrics_feedback {
    MF_RECORDED,         /* 200 "recorded" */
    MF_ALREADY_RECORDED, /* 200 "already_recorded": its Idempotency-Key was in the store */
    MF_BAD_REQUEST,      /* 400 or 413: the body, a field or the key header */
    MF_UNKNOWN_MODEL,    /* 404: not a configured model */
    MF_NO_STORE,         /* 501: no history store, or one opened read-only */
    MF_EMBEDDING_FAILED, /* 502: the remote embedder gave no vector */
    MF_STORE_BUSY,       /* 503: another process held the store's write lock */
    MF_STORE_REPLACED,   /* 503: the store's file was replaced or removed */
    MF_STORE_ERROR,      /* 500: the store failed the append */
    MF_INTERNAL_ERROR,   /* 500: the gateway ran out of memory */
    MF_CLIENT_CLOSED,    /* the client went away before anything was appended */
    MF_KEY_REUSED,       /* 422: its Idempotency-Key was in the store with another body */
    MF_N
};
void metrics_count_feedback(struct metrics *m, enum metrics_feedback outcome);

/* A POST /v1/responses with a previous_response_id, with response
 * affinity on (server.response_affinity_entries above 0):
 * llmroute_response_affinity_total{result}. */
enum metrics_affinity {
    MA_HIT,           /* the id's model is a candidate: sent to it */
    MA_MISS,          /* the id is not kept (or its model is no longer configured) */
    MA_NOT_CANDIDATE, /* its model is not among the request's candidates */
    MA_N
};
void metrics_count_affinity(struct metrics *m, enum metrics_affinity result);

/* One finished fetch from the remote embedder (embedq.c): its class (RS_OK,
 * or the failure's, as for upstream attempts) and its time, start to end. */
void metrics_count_embed(struct metrics *m, enum rs_class c, double seconds);
/* One fetch aborted in flight because its client went away
 * (gw_embed_cancel): class "cancelled", not in the fetch time histogram. */
void metrics_count_embed_cancelled(struct metrics *m);

/* One store refresh ended (gateway.c's refresh job, on the loop when its
 * result is delivered): rebuild says lr_store_rebuild ran rather than
 * lr_store_refresh, rc and changed are theirs, seconds its time. A
 * refresh that could not start for want of memory is counted with rc
 * LR_ENOMEM, as one that ran out of it is (result "out_of_memory"). */
void metrics_count_store_refresh(struct metrics *m, int rebuild, int rc, int changed,
                                 double seconds);
/* At a scrape: whether there is a store, and lr_store_added_since_build(). */
void metrics_set_store(struct metrics *m, int has_store, size_t added_since_build);

/* The exposition text in a new buffer (caller frees), or NULL when out of
 * memory. */
char *metrics_render(const struct metrics *m, double now, size_t *len);

#endif
