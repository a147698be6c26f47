/* fuzz_h1client.c -- the gateway's HTTP/1.1 client for upstreams
 * (h1client.c) reading an arbitrary response: status line, headers, 1xx
 * heads, Content-Length, chunked and close-delimited bodies, trailers.
 *
 * The upstream is a listening socket on 127.0.0.1 in this process. Each
 * input is one transfer on a new client: the harness accepts its
 * connection, reads the request, answers with the input (after its first
 * byte) and shuts the connection for writing, while the event loop runs
 * until on_done. The first byte says how the caller behaves: bit 0 pauses
 * every other piece of the body (resumed from the loop), bit 1 aborts the
 * transfer from its first piece of body, bit 2 from its head.
 *
 * Threads: one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

#include "fuzz_net.h"
#include "h1client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct caller {
    struct h1_xfer *xfer;
    int flags;
    int done, paused, pieces;
    size_t body_bytes;
};

static void on_head(void *arg, const struct up_head *h)
{
    struct caller *c = arg;
    volatile size_t sink = 0;
    if (h->content_type)
        sink += strlen(h->content_type);
    if (h->retry_after)
        sink += strlen(h->retry_after);
    if (h->location)
        sink += strlen(h->location);
    (void)sink;
    if (c->flags & 4) {
        h1_xfer_abort(c->xfer);
        c->done = 1;
    }
}

static int on_data(void *arg, const char *data, size_t len)
{
    struct caller *c = arg;
    volatile unsigned char sink = 0;
    if (len)
        sink = (unsigned char)(data[0] ^ data[len - 1]);
    (void)sink;
    if (c->flags & 2) {
        h1_xfer_abort(c->xfer);
        c->done = 1;
        return UP_CONSUMED;
    }
    if ((c->flags & 1) && c->pieces++ % 2 == 0) {
        c->paused = 1;
        return UP_PAUSE;
    }
    c->body_bytes += len;
    return UP_CONSUMED;
}

static void on_done(void *arg, enum up_error err, const char *message)
{
    struct caller *c = arg;
    (void)up_error_name(err);
    (void)strlen(message);
    c->done = 1;
}

static int listen_fd = -1;
static char url[64];

static int upstream_listen(void)
{
    int port, fd = fuzz_listen_loopback(&port);
    if (fd < 0)
        return -1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", port);
    listen_fd = fd;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct event_base *base;
    static const char body[] = "{\"model\":\"m\",\"messages\":[]}";
    struct h1_client *client;
    struct up_request req;
    struct up_callbacks cb = {on_head, on_data, on_done};
    struct caller caller;
    int up = -1;
    size_t off = 0;

    if (size < 1)
        return 0;
    if (!base) {
        signal(SIGPIPE, SIG_IGN);
        base = event_base_new();
        if (!base || upstream_listen() != 0)
            abort();
    }
    client = h1_client_new(base);
    if (!client)
        return 0;
    memset(&req, 0, sizeof req);
    req.url = url;
    req.authorization = "Bearer k";
    req.headers = "X-Test: 1\r\n";
    req.body = body;
    req.body_len = sizeof body - 1;
    req.timeout_ms = 5000;
    memset(&caller, 0, sizeof caller);
    caller.flags = data[0];
    data++;
    size--;
    caller.xfer = h1_xfer_start(client, &req, &cb, &caller);
    if (!caller.xfer) {
        h1_client_free(client);
        return 0;
    }
    for (int turn = 0; turn < 5000 && !caller.done; turn++) {
        char sink[4096];
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (up < 0) {
            up = accept(listen_fd, NULL, NULL);
            if (up >= 0)
                evutil_make_socket_nonblocking(up);
            continue;
        }
        while (read(up, sink, sizeof sink) > 0) /* the request: not looked at */
            ;
        if (off < size) {
            ssize_t n = write(up, data + off, size - off);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                off = size;
            if (off == size)
                shutdown(up, SHUT_WR);
        } else if (off == 0) {
            shutdown(up, SHUT_WR);
            off = 1; /* empty answer: shut once */
        }
        if (caller.paused) {
            caller.paused = 0;
            h1_xfer_resume(caller.xfer);
        }
    }
    if (!caller.done)
        h1_xfer_abort(caller.xfer);
    h1_client_free(client);
    if (up >= 0)
        close(up);
    event_base_loop(base, EVLOOP_NONBLOCK);
    return 0;
}
