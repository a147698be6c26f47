/* httpd.h -- the gateway's HTTP/1.1 server: a small interface over libevent
 * bufferevents.
 *
 * One request at a time per connection (pipelined requests wait in the input
 * buffer), keep-alive (every Connection field read), Content-Length and
 * chunked request bodies (chunk extensions and trailers checked, not used),
 * Expect: 100-continue (any other expectation is 417), caps on the
 * header block (431) and the body (413, answered before the body is read,
 * also for `Expect: 100-continue`), a caller's refusal answered before the
 * body is read (hs_server_on_head), complete responses and chunked streaming
 * responses with a high-water mark for backpressure, and a callback when the
 * client goes away mid-request so the caller can abort its upstream work.
 * A cap on open connections (hs_server_set_max_connections) keeps the
 * clients over it waiting in the listen backlog rather than refusing them.
 * Errors the server itself answers (400 for broken HTTP, 408, 413, 414, 417, 431) carry a
 * body made by the caller's error formatter, so they have the API's shape.
 * A body (Content-Length or chunked) that does not keep up with the idle
 * timeout is answered 408.
 *
 * The end of a client's input (its FIN) is taken as the client going away
 * when a request of it is being handled: on_abort runs, and no answer is
 * sent (a half-close cannot be told from a close without writing). At any
 * other time the answers already made when the input ends still go out
 * whole, then the connection closes: a half-closed client reads them. An
 * input that ends inside a body being read is answered 400, its message
 * saying how much of the body had come, and so is one that ends inside a
 * head (the refused callback hears both); one that ends with nothing of a
 * request begun closes in silence.
 *
 * Lifetime of a request: the handler receives a struct hs_req that stays
 * valid until the caller completes it (hs_respond() or hs_stream_end()) or
 * until its on_abort callback has run; after either the caller must not touch
 * it again.
 *
 * Threads: everything runs on the event loop thread that owns the base.
 */
#ifndef GW_HTTPD_H
#define GW_HTTPD_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct hs_server;
struct hs_req;

struct hs_limits {
    size_t max_head_bytes; /* request line and headers; over it: 431 */
    size_t max_body_bytes; /* request body; over it: 413 */
    size_t out_high_water; /* streaming: hs_stream_write() reports "full" above this */
    int idle_timeout_ms;   /* a keep-alive connection idle, a request arriving this slowly, or
                            * a head not whole this long after its first byte */
};

typedef void (*hs_handler_fn)(struct hs_req *req, void *arg);
/* Format an error body for a status the server answers itself; returns the
 * content length written into buf (at most cap). */
typedef size_t (*hs_error_fn)(char *buf, size_t cap, int status, const char *message);

struct hs_server *hs_server_new(struct event_base *base, const struct hs_limits *limits,
                                hs_handler_fn handler, hs_error_fn error_body, void *arg);
/* Told of each request the server refuses itself (broken HTTP: 400, a head
 * or trailers over the cap: 431, a body over it: 413, an expectation other
 * than 100-continue: 417), with the server's arg, before the
 * answer's head is written: it may add response headers, and log. The
 * request's method, path and headers are those read before the fault (NULL
 * method and path when the request line was not read). */
typedef void (*hs_refused_fn)(struct hs_req *req, int status, const char *message, void *arg);
void hs_server_on_refused(struct hs_server *srv, hs_refused_fn refused);
/* Asked of every request that announces a body (a Content-Length over 0,
 * or chunked), once its head is in and its framing checked, before any of
 * the body is read (and before `100 Continue` is sent to one that expects
 * it): nonzero when the handler will refuse it whatever its body (no such
 * path, a wrong method, a missing key). Then the body is not read: the
 * handler is called at once with an empty body, and the connection closes
 * after its answer, since the unread body cannot be told from a next
 * request. So a client the handler refuses holds no body in memory, nor a
 * connection for as long as a body may take. A request with no body is
 * handled as any other and keeps its connection. */
typedef int (*hs_refuses_fn)(struct hs_req *req, void *arg);
void hs_server_on_head(struct hs_server *srv, hs_refuses_fn refuses);
/* Listen on host:port (numeric IPv4/IPv6 host; port 0 lets the OS choose).
 * Returns 0 or -errno. */
int hs_server_listen(struct hs_server *srv, const char *host, int port);
/* The port actually bound (after listening), or -1. */
int hs_server_port(const struct hs_server *srv);
/* Change the caps for requests that start from now on. */
void hs_server_set_limits(struct hs_server *srv, const struct hs_limits *limits);
/* Accept no more clients while max connections are open (0: no cap). At the
 * cap the listener is disabled, so new clients wait in the kernel's listen
 * backlog and are accepted, in order, as connections close: none is refused.
 * Lowering the cap under the open count closes nothing; it takes effect as
 * connections close. A pause logs one JSON line on stderr when the cap is
 * reached and one when a second has passed without reaching it again. */
void hs_server_set_max_connections(struct hs_server *srv, size_t max);

struct hs_conn_stats {
    size_t open;                /* connections open now */
    size_t max;                 /* the cap (0: none) */
    uint64_t cap_pauses;        /* times accepting paused at the cap (episodes) */
    uint64_t descriptor_pauses; /* times accept() ran out of descriptors (episodes) */
};
void hs_server_conn_stats(const struct hs_server *srv, struct hs_conn_stats *st);

/* Stop accepting; close idle connections; later responses close theirs. */
void hs_server_stop_accepting(struct hs_server *srv);
/* Answer every request whose head is in but whose body (Content-Length or
 * chunked) is still arriving with `status` and the JSON `body` (len
 * bytes), Connection: close; each is passed to the refused callback with
 * `message` first, so it is logged. For the shutdown deadline. Returns how
 * many were answered. */
size_t hs_server_refuse_unfinished(struct hs_server *srv, int status, const char *message,
                                   const char *body, size_t len);
/* Requests being handled, and open connections. */
size_t hs_server_busy(const struct hs_server *srv);
size_t hs_server_connections(const struct hs_server *srv);
/* Close everything (in-flight requests are aborted: on_abort runs) and free. */
void hs_server_free(struct hs_server *srv);

/* ---- the request ---- */
const char *hs_req_method(const struct hs_req *req);
/* The target up to '?' (the query string is not used by the gateway). */
const char *hs_req_path(const struct hs_req *req);
/* The target after its '?' (up to a '#', if any: the caller cuts it), or ""
 * when it has none; for the requests the gateway passes on as they came. */
const char *hs_req_query(const struct hs_req *req);
/* The first header with this name (case-insensitive), or NULL. */
const char *hs_req_header(const struct hs_req *req, const char *name);
/* The value of the nth (from 0) header line with this name, or NULL: for a
 * field whose lines make one list (RFC 9110 section 5.3). */
const char *hs_req_header_nth(const struct hs_req *req, const char *name, int nth);
/* How many header lines have this name (case-insensitive): a caller that
 * takes one value can refuse a repeated header rather than pick one. */
int hs_req_header_count(const struct hs_req *req, const char *name);
/* Whether the head announced a body: a Content-Length over 0, or chunked
 * (its body is then empty when hs_server_on_head's callback refused it). */
int hs_req_body_announced(const struct hs_req *req);
/* The body (NUL-terminated for convenience; *len excludes the NUL). */
const char *hs_req_body(const struct hs_req *req, size_t *len);

/* Callbacks for a request being answered later: on_drain when the output of a
 * stream that was reported full has drained; on_abort when the client went
 * away before the response was complete (the request is gone after it). */
void hs_req_watch(struct hs_req *req, void (*on_drain)(void *arg), void (*on_abort)(void *arg),
                  void *arg);

/* ---- the response ---- */
/* Add a response header (copied). Call before hs_respond / hs_stream_begin. */
void hs_resp_header(struct hs_req *req, const char *name, const char *value);
/* Send a complete response; completes the request. To a HEAD request the
 * head goes out as it would for GET, Content-Length included, without the
 * body. */
void hs_respond(struct hs_req *req, int status, const char *content_type, const char *body,
                size_t len);
/* hs_respond(), and then sent(arg, delivered) once: delivered 1 when the
 * whole response has been written to the socket, 0 when the connection ended
 * before that (a client that never took it). Never called from inside this
 * call. Returns 0, or -1 out of memory: the response went out all the same,
 * untracked, and sent is never called. */
int hs_respond_tracked(struct hs_req *req, int status, const char *content_type,
                       const char *body, size_t len, void (*sent)(void *arg, int delivered),
                       void *arg);
/* Start a streamed (chunked) response. */
void hs_stream_begin(struct hs_req *req, int status, const char *content_type);
/* Send one piece of a streamed response. Returns 1 when the client's output
 * buffer is above the high-water mark (stop sending until on_drain), else 0. */
int hs_stream_write(struct hs_req *req, const void *data, size_t len);
/* Bytes waiting to be written to the client. */
size_t hs_req_pending_output(const struct hs_req *req);
/* Have the drain callback (hs_req_watch) called once the output has been
 * written out, whatever the server's high-water mark: for a handler that
 * pauses on a threshold of its own (a request's stream_buffer_bytes,
 * which a reload may have moved away from the server's). */
void hs_req_want_drain(struct hs_req *req);
/* End a streamed response; completes the request. */
void hs_stream_end(struct hs_req *req);

/* The reason phrase for a status ("Not Found"). */
const char *hs_reason(int status);
/* The value of a hex digit (a chunk size, a %XX escape), or -1 for any
 * other byte. */
int hs_hex_digit(int ch);

#endif
