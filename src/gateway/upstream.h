/* upstream.h -- the gateway's HTTP client for upstream models: libcurl's
 * multi_socket interface driven by the gateway's libevent loop.
 *
 * One transfer is one POST of a prepared body. The caller hears, in order:
 * on_head once the status line and headers are in (status and content type),
 * on_data for each piece of the body as it arrives (it may refuse a piece to
 * pause the transfer: the same bytes come again after up_xfer_resume()), and
 * on_done exactly once, with 0 or a curl error code and a message. Connections
 * are reused across transfers (keep-alive) and TLS is libcurl's. After
 * up_xfer_abort() no callback runs for that transfer.
 *
 * Threads: the event loop thread only; callbacks run on it.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stddef.h>

struct event_base;
struct up_client;
struct up_xfer;

/* on_data's answers */
#define UP_CONSUMED 0
#define UP_PAUSE 1

struct up_callbacks {
    void (*on_head)(void *arg, long status, const char *content_type);
    int (*on_data)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, int curl_code, const char *message);
};

struct up_request {
    const char *url;
    const char *authorization; /* full header value ("Bearer ..."), or NULL */
    const char *body;          /* borrowed: must stay valid until on_done or abort */
    size_t body_len;
    long connect_timeout_ms; /* 0 = libcurl's default */
    long timeout_ms;         /* whole transfer; 0 = none */
};

struct up_client *up_client_new(struct event_base *base);
/* Abort every transfer (no callbacks) and free. */
void up_client_free(struct up_client *client);

/* Start a transfer; NULL on allocation failure (no callback will run). */
struct up_xfer *up_xfer_start(struct up_client *client, const struct up_request *req,
                              const struct up_callbacks *cb, void *arg);
void up_xfer_resume(struct up_xfer *xfer);
void up_xfer_abort(struct up_xfer *xfer);

#endif
