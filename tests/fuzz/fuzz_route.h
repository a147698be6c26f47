/* fuzz_route.h -- one decision through a router a harness built, so that
 * what the harness loaded (a config, a store) is also read by routing. The
 * decision itself is not checked: a harness looks for crashes, leaks and
 * undefined behaviour.
 *
 * Threads: any; each call has its own request and decision.
 */
#ifndef LR_FUZZ_ROUTE_H
#define LR_FUZZ_ROUTE_H

#include <string.h>

#include "llmroute.h"

/* The query every harness routes (fuzz_import embeds this text). */
#define FUZZ_QUERY "What is the capital of France?"

/* Route FUZZ_QUERY, with vec (dim floats) as its embedding when vec is not
 * NULL, keeping at most ranking_cap (1 to 8) candidates of the ranking. */
static void fuzz_route_once(struct lr_router *router, const float *vec, size_t dim,
                            size_t ranking_cap)
{
    struct lr_request req;
    struct lr_decision d;
    struct lr_candidate ranking[8];
    struct lr_error err;
    lr_request_init(&req);
    req.query = FUZZ_QUERY;
    if (vec) {
        req.embedding = vec;
        req.embedding_dim = dim;
    }
    memset(&d, 0, sizeof d);
    d.ranking = ranking;
    d.ranking_cap = ranking_cap < 8 ? ranking_cap : 8;
    (void)lr_router_route(router, &req, &d, &err);
}

#endif
