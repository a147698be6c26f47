/* upstream.h -- the gateway's HTTP client for upstream models: libcurl's
 * multi_socket interface driven by the gateway's libevent loop.
 *
 * One transfer is one POST (or the method asked for) of a prepared body, sent with Accept-Encoding:
 * identity by both implementations (nothing here decodes a body, and
 * without the header any coding would be acceptable). The caller hears, in order:
 * on_head once the status line and headers are in (struct up_head: status,
 * content type, Retry-After, Location, Content-Encoding, the upstream's
 * request id and the headers to relay), on_data for each piece of the body as it
 * arrives (it may refuse a piece to pause the transfer: the same bytes come
 * again after up_xfer_resume()), and on_done exactly once, with UP_OK or a
 * classified transport error (enum up_error) and a message. Connections are
 * reused across transfers (keep-alive) and TLS is libcurl's. After
 * up_xfer_abort() no callback runs for that transfer.
 *
 * The interface knows two timeouts only, connect and total. Time to first
 * byte and idle time between chunks are the caller's (proxy.c keeps timers
 * and calls up_xfer_abort()), so an implementation need not know them.
 * on_done's error describes the transport only: an HTTP status, however bad,
 * arrives through on_head and a complete body ends with UP_OK.
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

/* How a transfer ended. Implementations map their own errors onto these. */
enum up_error {
    UP_OK = 0,
    UP_ECONNREFUSED, /* connection refused, host or port unreachable, name not resolved */
    UP_ECONNTIMEOUT, /* connect (TCP or TLS handshake) took longer than connect_timeout_ms */
    UP_ETLS,         /* TLS handshake or certificate failure */
    UP_ERESET,       /* reset or closed before a complete response head */
    /* Reset or closed before any byte of the response, on a connection
     * reused from the pool: most likely the upstream's keep-alive timeout
     * closing it just as the request went out. */
    UP_ERESET_REUSED,
    UP_ECLOSED,      /* closed, reset or truncated after the head, in the body */
    UP_ETIMEOUT,     /* timeout_ms passed before the transfer ended */
    UP_EPROTO,       /* not valid HTTP (bad status line, bad chunked encoding) */
    UP_ETOOBIG,      /* a response head larger than the implementation accepts */
    UP_ENOMEM,       /* out of memory */
    UP_EDESCRIPTORS, /* no descriptor for the connection (EMFILE, ENFILE): the gateway's own limit */
    UP_EOTHER        /* anything else */
};

/* A short stable name for logs and metrics ("connect_refused", ...). */
const char *up_error_name(enum up_error err);

/* The class of a transfer libcurl ended with "could not connect", from what
 * its socket() calls gave: sockets_opened that succeeded, and the errno of
 * the last that failed (0: none). UP_EDESCRIPTORS only when none succeeded
 * and the failures were for want of descriptors (no connect was tried);
 * otherwise UP_ECONNREFUSED, a failure of the upstream's. */
enum up_error up_couldnt_connect_error(int sockets_opened, int socket_errno);

/* The response head. Pointers are valid during on_head only. */
struct up_head {
    long status;
    const char *content_type; /* the Content-Type value, or NULL */
    /* The raw Retry-After value, or NULL (also when longer than
     * UP_HINT_CAP - 1 bytes: up_hint_copy()). */
    const char *retry_after;
    /* The raw Location value (possibly cut to UP_LOCATION_CAP - 1 bytes), or
     * NULL. Redirects are never followed: a 3xx arrives here like any status. */
    const char *location;
    /* The Content-Encoding value (possibly cut; several lines joined into
     * one list, up_list_join()), or NULL. Every request asks for identity
     * and nothing is decoded: the caller refuses any other. */
    const char *content_encoding;
    /* The x-request-id value (possibly cut to UP_REQUEST_ID_CAP - 1 bytes),
     * or NULL when absent or holding a control character. */
    const char *request_id;
    /* The headers meant for the client (up_relay_add()), as "Name: value\r\n"
     * lines, or NULL when there are none. */
    const char *relay;
    /* The raw retry-after-ms value, or NULL (also when longer than
     * UP_HINT_CAP - 1 bytes). It is relayed too, among the headers of relay. */
    const char *retry_after_ms;
    /* The Allow value (several lines joined, up_list_join(); possibly cut to
     * UP_ALLOW_CAP - 1 bytes), or NULL: what a 405 must say. */
    const char *allow;
    /* 1 when the body has neither Content-Length nor chunks (HTTP/1.x): the
     * close ends it, so a clean end says nothing of whether it came whole. */
    int close_delimited;
};

#define UP_LOCATION_CAP 1024
#define UP_ENCODING_CAP 64
#define UP_REQUEST_ID_CAP 128
#define UP_ALLOW_CAP 256

/* The upstream's rate-limit and retry hints that go on to the client:
 * x-ratelimit-*, retry-after-ms and x-should-retry (what OpenAI sends and
 * its SDKs read). At most UP_RELAY_MAX of them, their lines within
 * UP_RELAY_CAP bytes, a name within UP_RELAY_NAME_CAP and a value within
 * UP_RELAY_VALUE_CAP; one with a control character in its value, or a
 * name that is not a token, is left out, and so is any past the bounds. */
#define UP_RELAY_MAX 16
#define UP_RELAY_CAP 2048
#define UP_RELAY_NAME_CAP 64
#define UP_RELAY_VALUE_CAP 256

struct up_relay {
    char buf[UP_RELAY_CAP]; /* the lines, NUL-terminated */
    size_t len;
    unsigned n;
};

/* Add a response header (name and value trimmed, not NUL-terminated) to r
 * when it is one to relay and fits; otherwise leave r as it is. */
void up_relay_add(struct up_relay *r, const char *name, size_t name_len, const char *value,
                  size_t value_len);
/* Copy a header value (trimmed, not NUL-terminated) into dst, cut to fit.
 * An x-request-id with a control character is left out (dst empty). */
void up_request_id_copy(char *dst, size_t cap, const char *value, size_t value_len);
/* What the clients keep of a retry hint (Retry-After, retry-after-ms). */
#define UP_HINT_CAP 64
/* Copy a retry hint's value (trimmed, not NUL-terminated, read up to a NUL)
 * into dst. One longer than cap - 1 bytes is left out (dst empty): its
 * start ("300" and blanks) could read as a number the whole value is not. */
void up_hint_copy(char *dst, size_t cap, const char *value, size_t value_len);
/* Add the value of one more line of a list header (trimmed, not
 * NUL-terminated) to the value in dst: repeated lines of such a header are
 * one list, joined by ", " (RFC 9110 section 5.3). An empty value adds
 * nothing; the result is cut to fit cap. */
void up_list_join(char *dst, size_t cap, const char *value, size_t value_len);

struct up_callbacks {
    void (*on_head)(void *arg, const struct up_head *head);
    int (*on_data)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, enum up_error err, const char *message);
};

struct up_request {
    const char *method; /* "GET", "DELETE", ...; NULL: POST */
    const char *url;
    const char *authorization; /* full header value ("Bearer ..."), or NULL */
    /* More request headers, as "Name: value\r\n" lines, or NULL. The caller
     * has checked them: tokens for names, no CR, LF or NUL in values, none
     * of the headers a client sets itself (Host, Content-Length, ...). */
    const char *headers;
    const char *body;          /* borrowed: must stay valid until on_done or abort */
    size_t body_len;
    long connect_timeout_ms; /* 0 = libcurl's default */
    long timeout_ms;         /* whole transfer; 0 = none */
    int fresh_connection;    /* open a new connection, never one from the pool */
};

struct up_client *up_client_new(struct event_base *base);
/* Abort every transfer (no callbacks) and free. */
void up_client_free(struct up_client *client);
/* The most upstream connections to keep open at once, idle or in use, over
 * every host and both clients (0: no budget; the gateway gives its client
 * connection cap, one upstream connection per client). Idle connections,
 * the least recently used first, are closed to stay within it; connections
 * in use are not. */
void up_client_limit(struct up_client *client, size_t max_open);

/* Start a transfer; NULL on allocation failure (no callback will run). */
struct up_xfer *up_xfer_start(struct up_client *client, const struct up_request *req,
                              const struct up_callbacks *cb, void *arg);
void up_xfer_resume(struct up_xfer *xfer);
void up_xfer_abort(struct up_xfer *xfer);

#endif
