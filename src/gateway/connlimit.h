/* connlimit.h -- how many client connections the gateway keeps open at once,
 * from server.max_connections and the process's descriptor limit
 * (RLIMIT_NOFILE).
 *
 * A proxied request holds two descriptors: its client connection and one
 * upstream connection (the chat upstream, or before it the remote embedder).
 * Beyond those the process holds a fixed set: the listener, the event loop,
 * the signal pipe, the worker threads' pipes, the history store and its
 * journal, stdio. The cap keeps the clients from taking the descriptors
 * their own upstream connections need, so the gateway never accepts a
 * request it then cannot forward:
 *
 *     reserve = descriptors open at start + CL_SPARE
 *     default cap = (soft limit - reserve) / 2
 *
 * A configured cap that needs more than the soft limit raises it (up to the
 * hard limit), as far as it needs; one that needs more than the hard limit is
 * kept, with a warning. The default never changes the limit.
 *
 * Threads: the event loop thread (setrlimit is process-wide).
 */
#ifndef GW_CONNLIMIT_H
#define GW_CONNLIMIT_H

#include <stddef.h>

/* Descriptors kept for what the start count misses: SQLite's journal and
 * temporary files, libcurl's resolver. Upstream connections, idle or in
 * use, are not among them: up_client_limit() holds them to the cap. */
#define CL_SPARE 32
/* The largest server.max_connections accepted (and the largest default). */
#define CL_MAX 1048576L

struct cl_plan {
    long cap;                /* client connections */
    int configured;          /* cap is server.max_connections (else the default) */
    long reserve;            /* descriptors kept for the process itself */
    long needed;             /* 2 * cap + reserve */
    unsigned long long soft; /* the soft limit after planning (raised or not) */
    unsigned long long soft_before, hard;
    int raise; /* soft > soft_before: setrlimit() is needed */
    int fits;  /* needed <= soft */
};

/* The cap for `configured` (0: the default) with `reserve` descriptors kept,
 * under the limits soft and hard (RLIM_INFINITY allowed). Pure. */
void cl_plan_make(long configured, long reserve, unsigned long long soft, unsigned long long hard,
                  struct cl_plan *p);

/* Descriptors open in this process now (from /proc/self/fd, else by probing
 * each number below the soft limit), or -1. */
long cl_descriptors_open(void);

/* Read the limits, plan, and raise the soft limit when the plan says so.
 * Returns 0, or -errno when reading or raising the limit failed (p->soft is
 * then the limit in force and p->fits says whether the cap fits it). */
int cl_plan_apply(long configured, long reserve, struct cl_plan *p);

/* One sentence about the plan for the log (the cap, how it was chosen, a
 * raised limit or a warning), in buf. */
void cl_plan_describe(const struct cl_plan *p, char *buf, size_t cap);

#endif
