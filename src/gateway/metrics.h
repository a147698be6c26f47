/* metrics.h -- the gateway's counters and histograms, and the per-model
 * state table (in-flight counts, circuit breakers, attempts by failure
 * class), where routing reads them. Rendered in Prometheus text
 * format by GET /metrics. Series are keyed by configured names only, so their
 * number is bounded by the configuration, and they survive reloads.
 *
 * Threads: the event loop thread only.
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
    double estimated_cost, actual_cost;
    struct hist upstream_latency; /* attempt start to last byte */
    struct hist ttft;             /* attempt start to first body byte, streams */
    struct rs_breaker breaker;
    uint64_t attempts[RS_N_CLASSES]; /* upstream attempts by outcome (RS_OK: success) */
    uint64_t skipped_open;           /* candidates passed over: breaker open */
    uint64_t skipped_full;           /* candidates passed over: max_concurrency reached */
};

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* The model's entry, created on first use; NULL only when out of memory. */
struct model_stats *metrics_model(struct metrics *m, const char *name);
/* One answered request. route and model may be "" (none). */
void metrics_count_request(struct metrics *m, const char *route, const char *model, int status);
void metrics_observe_overhead(struct metrics *m, double seconds);
void metrics_observe_duration(struct metrics *m, double seconds);
void metrics_count_reload(struct metrics *m, int ok);
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

/* The exposition text in a new buffer (caller frees), or NULL when out of
 * memory. */
char *metrics_render(const struct metrics *m, double now, size_t *len);

#endif
