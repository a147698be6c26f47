/* strategy.h -- the interface every routing strategy implements.
 *
 * A strategy answers a request with a ranking: every candidate, best first,
 * each with its predicted quality and estimated cost where it knows them. The
 * router (router.c) resolves candidate names to config indices, validates the
 * request, calls the strategy, and copies the head of the ranking into the
 * caller's decision. Adding a strategy is: one .c file defining a
 * `const struct lr__strategy`, and one line in the table in router.c.
 *
 * Threads: check(), rank(), rank_batch(), cursor_load() and cursor_store()
 * may be called from several threads at once on the same state; a strategy
 * makes its own state safe for that.
 */
#ifndef LR_STRATEGY_H
#define LR_STRATEGY_H

#include <stdarg.h>
#include <stdint.h>

#include "llmroute.h"

/* What a strategy sees for one request, already validated by the router. */
struct lr__route_ctx {
    const struct lr_config *cfg;
    const struct lr_request *req; /* the caller's request (query text, embedding) */
    const int *cands;             /* candidate config indices, distinct, n_cands >= 1 */
    size_t n_cands;
    double requirement; /* performance requirement in force for this request */
    long input_tokens;  /* given, or estimated from the text */
};

/* A caller's way to stop a batch (lr_router_route_batch_stoppable): fn
 * NULL never stops. lr__stopped() asks it. */
struct lr__stop {
    lr_stop_fn fn;
    void *arg;
};

static inline int lr__stopped(const struct lr__stop *stop)
{
    return stop && stop->fn && stop->fn(stop->arg);
}

struct lr__strategy {
    const char *name;
    /* Build the strategy's state for a router. opts is the caller's (store,
     * predictor, n_similar already resolved against the config by the router
     * where they are NaN/0/NULL). Return 0 or LR_E* and fill err. */
    int (*create)(const struct lr_config *cfg, const struct lr_router_options *opts,
                  void **state, struct lr_error *err);
    void (*destroy)(void *state);
    /* Optional (NULL: nothing to check). Refuse a request the strategy
     * could never route whatever its state holds (smart: a choice to make
     * and no query text): 0 or LR_E* with err filled. The router calls it
     * once the request is resolved and valid, before rank() or
     * rank_batch() look at the state, so that the caller's fault is named
     * before the state's (an empty history store) and does not change
     * once the state is filled. Threads: as rank(). */
    int (*check)(void *state, const struct lr__route_ctx *ctx, struct lr_error *err);
    /* Write ctx->n_cands candidates into ranking, best first. With one
     * candidate the ranking is that candidate (a strategy must not fail on
     * it for lack of data). */
    int (*rank)(void *state, const struct lr__route_ctx *ctx, struct lr_candidate *ranking,
                struct lr_error *err);
    /* Optional (NULL: the router ranks each request with rank()). Assign n
     * requests together: write assign[i] (a config index among ctxs[i]'s
     * candidates) and rankings[i][0..ctxs[i].n_cands) for each i, and fill
     * report. LR_EINFEASIBLE with a best-effort assignment when the
     * constraints cannot be met. stop (NULL: never) is asked between
     * queries and between the optimizer's steps: once it answers, the
     * batch fails with LR_ECANCELED. */
    int (*rank_batch)(void *state, const struct lr__route_ctx *ctxs, size_t n,
                      const struct lr_batch_options *opts, struct lr_candidate *const *rankings,
                      int *assign, struct lr_batch_report *report, const struct lr__stop *stop,
                      struct lr_error *err);
    /* Optional, both or neither (NULL: the strategy keeps no round-robin
     * cursor, and lr_router_sequential_cursor() refuses the router): read
     * and set the cursor, each one atomic step that may run beside rank()
     * on other threads. Only the sequential strategy has them. */
    uint64_t (*cursor_load)(void *state);
    void (*cursor_store)(void *state, uint64_t value);
};

extern const struct lr__strategy lr__strategy_sequential;
extern const struct lr__strategy lr__strategy_smart;

/* The strategy registered under `name`, or NULL (router.c holds the table). */
const struct lr__strategy *lr__strategy_find(const char *name);
/* The registered names, comma-separated, for messages. */
const char *lr__strategy_names(void);

/* The last (most negative) LR_E* code: every code from -1 to it is known.
 * A code added to enum lr_errcode moves it. */
#define LR__ERR_LAST LR_ECANCELED

/* Fill err (if not NULL) with code and a printf-style message; returns code. */
int lr__error_set(struct lr_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The folder of a configuration file's path, where a relative router.store
 * is found: "." for a bare name, "/" for a file in the root ("/c.json"),
 * else all before the last '/'. NULL when out of memory; the caller frees it. */
char *lr__config_dir(const char *path);
/* dir and name joined by one '/' (none added after a dir ending in '/', as
 * the root; trailing slashes of dir beyond that dropped; "" dir: the name).
 * NULL when out of memory; the caller frees it. */
char *lr__path_join(const char *dir, const char *name);

/* d as text for a message: %g's six digits when they read back as d, else
 * as many more (up to 17) as it takes, so a value just over a cap is not
 * shown as the cap ("1000000.0000001", not "1e+06"). Returns buf. */
#define LR__NUMBER_TEXT 32
const char *lr__error_number(char buf[LR__NUMBER_TEXT], double d);

/* A printf-style message into dst (cap bytes), as vsnprintf writes it when
 * it fits; when it does not, its middle is cut out for "..." (its first
 * 160 bytes and as much of its end as fits are kept, cut at characters'
 * boundaries), so that a long path or name quoted in a message never
 * pushes out the reason that follows it. lr__error_set and the modules'
 * own fail() functions format with it. */
void lr__error_vformat(char *dst, size_t cap, const char *fmt, va_list ap);
void lr__error_format(char *dst, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A name from outside (a model or strategy name a caller gave, a field name,
 * a name read from a store's file) as a message quotes it: printable ASCII
 * and valid UTF-8 stay; a backslash and a quote become \\ and \', any
 * other byte (a control character, invalid UTF-8) \xNN; past max bytes of
 * the name, "..." ends it. out must hold LR__SHOWN_CAP(max) bytes. Returns
 * out. */
#define LR__SHOWN_CAP(max) ((max) * 4 + 8)
const char *lr__error_shown(const char *name, size_t max, char *out, size_t cap);

/* Why path could not be opened, errno e as it was: strerror(e), except for
 * a symbolic link to nothing (ENOENT on a path that is there), which is
 * said as such with the link's target (shown as lr__error_shown() shows a
 * name), since "No such file or directory" names a file the user can see.
 * The text is written in buf when it needs it. Returns the text: buf
 * exactly when path is such a link. */
#define LR__OPEN_FAULT_CAP (LR__SHOWN_CAP(120) + 64)
const char *lr__error_open_fault(const char *path, int e, char buf[LR__OPEN_FAULT_CAP]);
/* The bytes of a caller's name a message shows. */
#define LR__SHOWN_NAME 200

/* Put a printf-style prefix before err's message (if err is not NULL). */
void lr__error_prefix(struct lr_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif /* LR_STRATEGY_H */
