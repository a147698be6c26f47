/* h1client.h -- a small HTTP/1.1 client for plain http:// upstreams, on the
 * gateway's libevent loop, behind the same transfer interface as upstream.h
 * (upstream.c sends http:// URLs here and keeps libcurl for the rest).
 *
 * Why it exists: for a local upstream (vLLM, llama.cpp, a fake in a
 * benchmark) the gateway's cost per request was mostly libcurl's per-transfer
 * work and its extra system calls (a liveness poll() on every reused
 * connection, socket re-registration with the event loop). This client does
 * one non-blocking peek at an idle connection before reusing it, one
 * sendmsg() to send a request and one recv() per readable event, keeps
 * each connection's read event registered for the connection's whole life,
 * and parses responses in place.
 *
 * What it does: POST with Content-Length; per-host keep-alive pools (LIFO,
 * bounded idle count) under one budget for all hosts (the oldest idle
 * connection goes first), and, when a connect runs out of descriptors, the
 * idle connections closed and the connect tried once more; responses with Content-Length, chunked, or delimited
 * by the connection's close; 1xx heads skipped; a cap on the response head
 * (UP_ETOOBIG over it); pause/resume of the body for backpressure (reading
 * stops, so TCP pushes back on the upstream); connect and total timeouts. An
 * idle connection is checked (a non-blocking peek) before a request goes on
 * it, and one the upstream closed or wrote to is dropped. A request is sent
 * again on a fresh connection only when the reused one failed before a single
 * byte of it was written; once any was, the upstream may have read it and
 * acted on it, so a reset before the answer is the transfer's failure
 * (UP_ERESET; UP_ERESET_REUSED when the connection came from the pool and
 * not a byte of the answer came), for the caller's retry policy to decide
 * on. A write of the request that meets the upstream's close or reset is
 * not yet a reset: an upstream may answer before reading all of the request
 * (413 to a body over its limit) and close, and what it sent is read as the
 * response; only a connection that ended before a response head is a reset.
 * A pooled connection is reused only within 118 s of its last answer, or
 * within the upstream's Keep-Alive timeout less a margin when that answer
 * gave one, and closed once that time is up, by a timer, with no request
 * needed. up_request.fresh_connection skips the pool. Hosts must be numeric IPv4
 * or IPv6 addresses: no name resolution on the event loop (libcurl, with its
 * threaded resolver, takes host names).
 *
 * Callbacks are never called from inside h1_xfer_start(); a transfer may be
 * aborted from inside its own callbacks, after which none runs.
 *
 * Threads: the event loop thread only.
 */
#ifndef GW_H1CLIENT_H
#define GW_H1CLIENT_H

#include <stdint.h>

#include <event2/event_struct.h>

#include "upstream.h"

struct event_base;
struct h1_client;
struct h1_xfer;

/* The longest an idle connection is kept, of this client and of libcurl's
 * (CURLOPT_MAXAGE_CONN's default, 118 s): a NAT or load balancer on the way
 * may drop a flow idle for minutes without a word to either end. */
#define H1_IDLE_MAX_MS 118000L

/* How long a connection may stay idle after a response whose Keep-Alive
 * header value is v (n bytes, not NUL-terminated): the upstream's
 * timeout=N less a margin (a second, or N/2 under 2 s), never past
 * H1_IDLE_MAX_MS, which is also the answer without a timeout. */
long h1_keep_alive_ms(const char *v, size_t n);

/* The monotonic clock in ms. */
uint64_t h1_now_ms(void);

/* A timer for idle connections past their time (h1client's, and upstream.c's
 * for libcurl's): assigned by its owner (evtimer_assign), whose callback
 * clears armed first. */
struct h1_deadline {
    struct event ev;
    uint64_t at; /* when it is due (h1_now_ms()), while armed */
    int armed;
};
/* Have d run at `at` at the latest: nothing to do (the usual case) when it
 * is due no later already. */
void h1_deadline_arm(struct h1_deadline *d, uint64_t at);

/* NULL on allocation failure. */
struct h1_client *h1_client_new(struct event_base *base);
/* Abort every transfer (no callbacks), close every connection, free. */
void h1_client_free(struct h1_client *client);
/* A budget for the connections open at once, idle or in use, over all
 * hosts: before a new connection would pass max_open (0: no budget), the
 * least recently used idle connections, of any host, are closed. others, if
 * not NULL, points to a count of the caller's other connections that share
 * the budget (libcurl's), read each time. A connection in use is never
 * closed for it: the budget can be passed while every connection is busy. */
void h1_client_limit(struct h1_client *client, size_t max_open, const size_t *others);
/* Close the least recently used idle connections until at most keep are
 * open, or none is idle. */
void h1_client_trim(struct h1_client *client, size_t keep);
/* The connections open now, idle or in use. */
size_t h1_client_open(const struct h1_client *client);

/* As up_xfer_start(): NULL on allocation failure or a URL this client does
 * not take (not http://, a host that is not a numeric IPv4 or IPv6 address,
 * a path over 8 KiB, bytes outside printable ASCII, a line break in the
 * authorization value); then no callback runs. */
struct h1_xfer *h1_xfer_start(struct h1_client *client, const struct up_request *req,
                              const struct up_callbacks *cb, void *arg);
void h1_xfer_resume(struct h1_xfer *xfer);
void h1_xfer_abort(struct h1_xfer *xfer);

#endif
