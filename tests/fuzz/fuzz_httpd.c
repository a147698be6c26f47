/* fuzz_httpd.c -- the gateway's HTTP/1.1 server (httpd.c) reading arbitrary
 * bytes from a client: request lines, headers, Content-Length and chunked
 * bodies, pipelined requests, then the client's end of input.
 *
 * Each input is one connection: one end of a socketpair handed to the
 * server as if accepted, the input written into the other end and that end
 * shut for writing, then the event loop run until the server has closed the
 * connection (or a bounded number of turns). The handler answers by path:
 * "/stream..." with a chunked stream of the body, "/hold..." not at all
 * (it waits for the client to go away: on_abort), anything else at once
 * with the body; "/refuse..." with a body is refused on its head
 * (hs_server_on_head), its body unread. The file's static accept callback
 * is reached by including it.
 *
 * Threads: one.
 */
#include "../../src/gateway/httpd.c"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct held {
    int aborted;
};

static size_t error_body(char *buf, size_t cap, int status, const char *message)
{
    int n = snprintf(buf, cap, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}", status, message);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void on_refused(struct hs_req *req, int status, const char *message, void *arg)
{
    const char *m = hs_req_method(req), *p = hs_req_path(req);
    (void)status;
    (void)message;
    (void)arg;
    if (m && p)
        (void)hs_req_header(req, "Host");
    hs_resp_header(req, "X-Refused", "1");
}

static int head_refuses(struct hs_req *req, void *arg)
{
    (void)arg;
    return strncmp(hs_req_path(req), "/refuse", 7) == 0;
}

static void on_abort(void *arg)
{
    ((struct held *)arg)->aborted++;
}

static void on_drain(void *arg)
{
    (void)arg;
}

static void handler(struct hs_req *req, void *arg)
{
    const char *path = hs_req_path(req);
    size_t len;
    const char *body = hs_req_body(req, &len);

    (void)hs_req_method(req);
    (void)hs_req_header(req, "Content-Type");
    (void)hs_req_header_count(req, "Authorization");
    (void)hs_req_body_announced(req);
    if (strncmp(path, "/hold", 5) == 0) {
        hs_req_watch(req, on_drain, on_abort, arg);
        return;
    }
    hs_resp_header(req, "X-Path-Length", path[1] ? "long" : "short");
    if (strncmp(path, "/refuse", 7) == 0) {
        hs_respond(req, 401, "application/json", "{}", 2);
        return;
    }
    if (strncmp(path, "/stream", 7) == 0) {
        hs_stream_begin(req, 200, "text/event-stream");
        for (size_t off = 0; off < len; off += 7)
            (void)hs_stream_write(req, body + off, len - off < 7 ? len - off : 7);
        (void)hs_req_pending_output(req);
        hs_stream_end(req);
        return;
    }
    hs_respond(req, 200, "application/octet-stream", body, len);
}

static void drain_client(int fd)
{
    char sink[65536];
    while (read(fd, sink, sizeof sink) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct event_base *base;
    struct hs_limits lim = {4096, 16384, 65536, 5000};
    struct hs_server *srv;
    struct held held = {0};
    int sv[2];
    size_t off = 0;

    if (!base) {
        signal(SIGPIPE, SIG_IGN);
        base = event_base_new();
        if (!base)
            abort();
    }
    srv = hs_server_new(base, &lim, handler, error_body, &held);
    if (!srv)
        return 0;
    hs_server_on_refused(srv, on_refused);
    hs_server_on_head(srv, head_refuses);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        hs_server_free(srv);
        return 0;
    }
    evutil_make_socket_nonblocking(sv[0]);
    evutil_make_socket_nonblocking(sv[1]);
    accept_cb(NULL, sv[0], NULL, 0, srv);
    /* Write the input as the socket takes it, turning the loop meanwhile;
     * then end it and let the server finish. */
    for (int turn = 0; turn < 2000 && hs_server_connections(srv) > 0; turn++) {
        if (off < size) {
            ssize_t n = write(sv[1], data + off, size - off);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                off = size;
            if (off == size)
                shutdown(sv[1], SHUT_WR);
        } else if (turn == 0) {
            shutdown(sv[1], SHUT_WR);
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        drain_client(sv[1]);
    }
    hs_server_free(srv);
    close(sv[1]);
    event_base_loop(base, EVLOOP_NONBLOCK);
    return 0;
}
