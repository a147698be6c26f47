/* sequential.c -- round-robin over the request's candidates.
 *
 * AIOS SequentialRouting semantics with its two faults mended: one cursor per
 * router, advanced once per routed query and taken modulo the current
 * candidate list's length (a shorter list than last time never fails), and
 * safe under concurrency: the cursor is an atomic counter, so every request
 * draws a distinct ticket. While requests keep one candidate list, their
 * tickets run on one by one and the candidates' shares differ by at most
 * one. Requests with different lists share the one cursor, as in AIOS, and
 * then no share is promised: requests alternating between [a,b] and [b,c]
 * draw tickets 0,1,2,3 and get a,c,a,c, so b is never chosen.
 * A request with a single candidate gets it without moving the cursor.
 * The cursor is a uint64_t and wraps from UINT64_MAX to 0. The public API
 * reads and sets it (lr_router_sequential_cursor(),
 * lr_router_set_sequential_cursor(), through cursor_load and cursor_store),
 * so that a caller can carry a round-robin over to another router exactly.
 *
 * The ranking is the cycle starting at the chosen candidate, which is the
 * order the gateway falls back in. Sequential routing predicts nothing, so
 * quality, output tokens and cost are NaN.
 *
 * Threads: rank(), cursor_load() and cursor_store() from any number of
 * threads at once: each is one atomic operation on the cursor.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "llmroute.h"
#include "strategy.h"

struct sequential {
    /* The next ticket. Exactly 64 bits (not uint_fast64_t, which may be
     * wider), so that it wraps at UINT64_MAX as the header says. */
    _Atomic uint64_t cursor;
};

static int seq_create(const struct lr_config *cfg, const struct lr_router_options *opts,
                      void **state, struct lr_error *err)
{
    struct sequential *s = malloc(sizeof *s);
    (void)cfg;
    (void)opts;
    if (!s)
        return lr__error_set(err, LR_ENOMEM, "out of memory creating the sequential strategy");
    atomic_init(&s->cursor, 0);
    *state = s;
    return 0;
}

static void seq_destroy(void *state)
{
    free(state);
}

static int seq_rank(void *state, const struct lr__route_ctx *ctx, struct lr_candidate *ranking,
                    struct lr_error *err)
{
    struct sequential *s = state;
    size_t n = ctx->n_cands, start = 0;
    (void)err;

    if (n > 1) {
        uint64_t ticket = atomic_fetch_add_explicit(&s->cursor, 1, memory_order_relaxed);
        start = (size_t)(ticket % n);
    }
    for (size_t i = 0; i < n; i++) {
        struct lr_candidate *c = &ranking[i];
        c->index = ctx->cands[(start + i) % n];
        c->predicted_quality = NAN;
        c->predicted_output_tokens = NAN;
        c->estimated_cost = NAN;
    }
    return 0;
}

/* Relaxed, as the tickets are: the cursor guards no other memory, and the
 * one modification order of an atomic object already puts a load or a
 * store between two tickets, never inside one. */
static uint64_t seq_cursor_load(void *state)
{
    struct sequential *s = state;
    return atomic_load_explicit(&s->cursor, memory_order_relaxed);
}

static void seq_cursor_store(void *state, uint64_t value)
{
    struct sequential *s = state;
    atomic_store_explicit(&s->cursor, value, memory_order_relaxed);
}

const struct lr__strategy lr__strategy_sequential = {
    .name = "sequential",
    .create = seq_create,
    .destroy = seq_destroy,
    .rank = seq_rank,
    .rank_batch = NULL,
    .cursor_load = seq_cursor_load,
    .cursor_store = seq_cursor_store,
};
