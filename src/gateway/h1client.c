/* h1client.c -- the gateway's own HTTP/1.1 client for http:// upstreams (see
 * h1client.h for what it does and why).
 *
 * Three objects. A host is one upstream authority (address and port) with a
 * LIFO list of idle keep-alive connections; the client also keeps every
 * host's idle connections in one list by age, so that the oldest, of any
 * host, is closed first when a new connection would pass the budget
 * (h1_client_limit()). A connection is a non-blocking
 * socket with a read event that stays registered for its whole life (an idle
 * connection that becomes readable was closed by the server, or sent bytes
 * nobody asked for, and is dropped), a write event used only while connecting
 * or when a request does not fit the socket buffer, and a receive buffer.
 * A transfer is one request: its head is built once, sent with its body in
 * one sendmsg(), and its response parsed in place in the connection's buffer
 * and handed to the caller without copying.
 *
 * A transfer ends in finish(): the connection goes back to its host's pool
 * (a complete response, keep-alive, nothing extra buffered) or is closed, the
 * transfer is freed, and only then on_done runs, so on_done may start the
 * next transfer on the same connection. An abort from inside a callback only
 * marks the transfer; the code that called the callback sees the mark and
 * cleans up.
 *
 * Threads: the event loop thread only.
 */
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>

#include "h1client.h"

#define HEAD_CAP (64 * 1024)  /* a response head, status line to the empty line */
#define BUF_START (16 * 1024) /* a connection's receive buffer; grows for big heads */
/* A chunk-size line (its extensions too) or a trailer line. The receive
 * buffer grows to hold one whole, however its bytes arrive. */
#define LINE_CAP (32 * 1024)
#define TRAILER_LINES_CAP 64
#define IDLE_PER_HOST_CAP 256 /* idle keep-alive connections kept per host */
/* The longest a connection stays in the pool, as libcurl's connections do
 * (CURLOPT_MAXAGE_CONN's default): a NAT or load balancer on the way may
 * drop a flow idle for minutes without a word to either end, and a request
 * sent on it then waits for its first-byte timeout. An upstream that says
 * how long it keeps an idle connection (Keep-Alive: timeout=N) is taken at
 * its word, less a margin (h1_keep_alive_ms()). */
#define IDLE_MAX_MS H1_IDLE_MAX_MS
#define AUTHORITY_CAP 280     /* "[IPv6]:port" and then some */
#define PATH_CAP 8192
#define CTYPE_CAP 256
#define MSG_CAP 512

enum rstate {
    R_HEAD,       /* status line and headers */
    R_BODY,       /* a Content-Length body */
    R_CHUNK_SIZE, /* chunked: the size line */
    R_CHUNK_DATA, /* chunked: data */
    R_CHUNK_CRLF, /* chunked: the line end after data */
    R_TRAILER,    /* chunked: trailer lines up to the empty one */
    R_UNTIL_EOF,  /* a body that ends when the connection does */
};

struct h1_host {
    struct h1_host *next;
    char authority[AUTHORITY_CAP]; /* as in the URL: the key and the Host header */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct h1_conn *idle; /* most recently used first */
    size_t n_idle;
};

struct h1_conn {
    struct h1_client *cl;
    struct h1_host *host;
    struct h1_conn *prev, *next;   /* in the host's idle list */
    struct h1_conn *older, *newer; /* in the client's idle list, across hosts */
    int fd;
    int connecting;
    int idle;
    uint64_t idle_until; /* while idle: the monotonic ms past which it is not reused */
    unsigned long n_done; /* responses completed on this connection */
    struct event rev, wev;
    struct h1_xfer *xfer;
    char *buf;
    size_t pos, len, cap; /* unread bytes are buf[pos, len) */
};

struct h1_xfer {
    struct h1_client *cl;
    struct h1_xfer *prev, *next; /* live transfers, for h1_client_free */
    struct h1_host *host;
    struct h1_conn *conn;
    struct up_callbacks cb;
    void *arg;
    char *head; /* the request head */
    size_t head_len;
    const char *body;
    size_t body_len, sent;
    long timeout_ms, connect_timeout_ms;
    struct event ev_timeout, ev_connect_timeout, ev_defer;
    enum up_error defer_err;
    char defer_msg[MSG_CAP];

    enum rstate rs;
    unsigned long long remaining;
    int trailer_lines;
    int keep_alive;
    long keep_ms; /* how long the connection may stay idle after this response */
    int head_done, paused, aborted, in_cb, retried, got_bytes;
    int send_errno; /* what ended writing the request early (send_failed()), or 0 */
    long status;
    char ctype[CTYPE_CAP];
    char retry_after[UP_HINT_CAP];
    char retry_after_ms[UP_HINT_CAP];
    char location[UP_LOCATION_CAP];
    char content_encoding[UP_ENCODING_CAP];
    char request_id[UP_REQUEST_ID_CAP];
    char allow[UP_ALLOW_CAP];
    struct up_relay relay;
};

struct h1_client {
    struct event_base *base;
    struct h1_host *hosts;
    struct h1_xfer *xfers;
    size_t n_open;                 /* connections open, idle or in use */
    struct h1_conn *newest_idle;   /* the idle connections of every host, */
    struct h1_conn *oldest_idle;   /* by when they were last released */
    size_t max_open;               /* 0: no budget */
    const size_t *others;          /* the caller's other connections in it, or NULL */
    struct h1_deadline expiry;     /* closes idle connections past their time */
};

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);

/* ==== URLs ==== */

struct url_parts {
    char host[AUTHORITY_CAP]; /* without brackets */
    char authority[AUTHORITY_CAP];
    int port;
    const char *path; /* from the first '/' or '?' */
};

static int parse_url(const char *url, struct url_parts *u)
{
    const char *p, *h, *he, *a;
    size_t hl;
    long port = 80;

    if (strncasecmp(url, "http://", 7) != 0)
        return -1;
    for (p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return -1; /* spaces, controls, raw UTF-8: leave them to libcurl */
    a = url + 7;
    if (*a == '[') {
        h = a + 1;
        he = strchr(h, ']');
        if (!he)
            return -1;
        p = he + 1;
    } else {
        h = a;
        he = h + strcspn(h, ":/?#");
        p = he;
    }
    hl = (size_t)(he - h);
    if (hl == 0 || hl >= sizeof u->host || memchr(h, '@', hl))
        return -1;
    memcpy(u->host, h, hl);
    u->host[hl] = '\0';
    if (*p == ':') {
        char *end;
        errno = 0;
        port = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || port < 1 || port > 65535 || (*end && !strchr("/?", *end)))
            return -1;
        p = end;
    } else if (*p && !strchr("/?", *p)) {
        return -1; /* '#' or userinfo: unusual, left to libcurl */
    }
    if ((size_t)(p - a) >= sizeof u->authority)
        return -1;
    memcpy(u->authority, a, (size_t)(p - a));
    u->authority[p - a] = '\0';
    if (strchr(p, '#') || strlen(p) > PATH_CAP)
        return -1;
    u->port = (int)port;
    u->path = p;
    return 0;
}

static int resolve_numeric(const struct url_parts *u, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, u->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)u->port);
        *len = sizeof *sin;
        return 0;
    }
    if (inet_pton(AF_INET6, u->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)u->port);
        *len = sizeof *sin6;
        return 0;
    }
    return -1;
}

/* ==== Hosts and connections ==== */

static struct h1_host *host_get(struct h1_client *cl, const struct url_parts *u)
{
    struct h1_host *h;
    for (h = cl->hosts; h; h = h->next)
        if (strcmp(h->authority, u->authority) == 0)
            return h;
    h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    snprintf(h->authority, sizeof h->authority, "%s", u->authority);
    if (resolve_numeric(u, &h->addr, &h->addr_len) != 0) {
        free(h);
        return NULL;
    }
    h->next = cl->hosts;
    cl->hosts = h;
    return h;
}

static void idle_unlink(struct h1_conn *c)
{
    struct h1_host *h = c->host;
    if (!c->idle)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->idle = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->newer)
        c->newer->older = c->older;
    else
        c->cl->newest_idle = c->older;
    if (c->older)
        c->older->newer = c->newer;
    else
        c->cl->oldest_idle = c->newer;
    c->older = c->newer = NULL;
    c->idle = 0;
    h->n_idle--;
}

static void conn_close(struct h1_conn *c)
{
    idle_unlink(c);
    event_del(&c->rev);
    event_del(&c->wev);
    close(c->fd);
    c->cl->n_open--;
    free(c->buf);
    free(c);
}

/* Close the least recently used idle connections, of any host, until at
 * most `keep` connections are open or none is idle. Returns how many it
 * closed. */
static size_t close_oldest_idle(struct h1_client *cl, size_t keep)
{
    size_t n = 0;
    while (cl->n_open > keep && cl->oldest_idle) {
        conn_close(cl->oldest_idle);
        n++;
    }
    return n;
}

/* Before a new connection: room for it in the budget, made by closing the
 * oldest idle connections (of any host: the pools of several hosts would
 * otherwise together hold far more descriptors than the budget allows). */
static void make_room(struct h1_client *cl)
{
    size_t others = cl->others ? *cl->others : 0;
    if (!cl->max_open)
        return;
    close_oldest_idle(cl, cl->max_open > others + 1 ? cl->max_open - others - 1 : 0);
}

/* A new connection, connecting. NULL with errno set on failure. */
static struct h1_conn *conn_new(struct h1_client *cl, struct h1_host *h)
{
    struct h1_conn *c = calloc(1, sizeof *c);
    int one = 1, e;
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    c->cl = cl;
    c->host = h;
    c->cap = BUF_START;
    c->buf = malloc(c->cap);
    c->fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!c->buf || c->fd < 0) {
        e = c->buf ? errno : ENOMEM;
        goto fail;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&h->addr, h->addr_len) == 0) {
        c->connecting = 0;
    } else if (errno == EINPROGRESS) {
        c->connecting = 1;
    } else {
        e = errno;
        goto fail;
    }
    event_assign(&c->rev, cl->base, c->fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    event_assign(&c->wev, cl->base, c->fd, EV_WRITE, conn_write_cb, c);
    if (event_add(&c->rev, NULL) != 0) {
        e = ENOMEM;
        goto fail;
    }
    cl->n_open++;
    return c;
fail:
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
    errno = e;
    return NULL;
}

/* Whether an idle connection may carry a request. Its read event drops one
 * the upstream closed or sent stray bytes on, but only once the loop runs
 * it: a close that came in since (the upstream's keep-alive timeout, say) is
 * seen here, with one non-blocking peek, before a request is written to it.
 * A request written to such a connection would fail, and could not be sent
 * again without the risk of sending it twice (retryable()). */
static int idle_usable(struct h1_conn *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

uint64_t h1_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Close the idle connections kept past their time, oldest first (the pool
 * is in release order, so the first one still within its time ends the
 * walk). The start of a request runs this; the expiry timer below closes
 * the rest, so a gateway gone quiet does not keep them open. */
static void close_expired(struct h1_client *cl, uint64_t now)
{
    while (cl->oldest_idle && cl->oldest_idle->idle_until <= now)
        conn_close(cl->oldest_idle);
}

void h1_deadline_arm(struct h1_deadline *d, uint64_t at)
{
    uint64_t now, ms;
    struct timeval tv;
    if (d->armed && d->at <= at)
        return;
    /* At least 1 ms: libevent's clock may run a little behind h1_now_ms(),
     * and one due now is handled on the next turn of the loop anyway. */
    now = h1_now_ms();
    ms = at > now ? at - now : 1;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    if (evtimer_add(&d->ev, &tv) == 0) {
        d->armed = 1;
        d->at = at;
    }
}

/* The expiry timer: close every idle connection past its time, of any host,
 * without waiting for a request, then wait for the next one due. The pool
 * is in release order but not in expiry order (an upstream's Keep-Alive
 * timeout shortens one connection's time), so the whole idle list is
 * walked; it is bounded by the budget, and the timer runs once per expiry
 * at most (release only moves it earlier, h1_deadline_arm()). */
static void expire_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_client *cl = arg;
    uint64_t now = h1_now_ms(), next = UINT64_MAX;
    struct h1_conn *c = cl->oldest_idle, *newer;
    (void)fd;
    (void)what;
    cl->expiry.armed = 0;
    for (; c; c = newer) {
        newer = c->newer;
        if (c->idle_until <= now)
            conn_close(c);
        else if (c->idle_until < next)
            next = c->idle_until;
    }
    if (next != UINT64_MAX)
        h1_deadline_arm(&cl->expiry, next);
}

/* After a complete response: back to the pool for keep_ms, or closed. */
static void conn_release(struct h1_conn *c, int keep, long keep_ms)
{
    struct h1_host *h = c->host;
    c->xfer = NULL;
    c->n_done++;
    if (!keep || keep_ms <= 0 || c->pos != c->len || h->n_idle >= IDLE_PER_HOST_CAP) {
        conn_close(c);
        return;
    }
    c->idle_until = h1_now_ms() + (uint64_t)keep_ms;
    c->pos = c->len = 0;
    if (c->cap > BUF_START) {
        char *b = realloc(c->buf, BUF_START);
        if (b) {
            c->buf = b;
            c->cap = BUF_START;
        }
    }
    /* Reading may have been stopped by a pause that the response outlived. */
    event_add(&c->rev, NULL);
    c->idle = 1;
    c->prev = NULL;
    c->next = h->idle;
    if (h->idle)
        h->idle->prev = c;
    h->idle = c;
    h->n_idle++;
    c->older = c->cl->newest_idle;
    if (c->older)
        c->older->newer = c;
    else
        c->cl->oldest_idle = c;
    c->cl->newest_idle = c;
    h1_deadline_arm(&c->cl->expiry, c->idle_until);
}

/* ==== Ending a transfer ==== */

static void xfer_free(struct h1_xfer *x)
{
    struct h1_client *cl = x->cl;
    if (x->prev)
        x->prev->next = x->next;
    else
        cl->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    event_del(&x->ev_timeout);
    event_del(&x->ev_connect_timeout);
    event_del(&x->ev_defer);
    free(x->head);
    free(x);
}

/* The transfer is over: settle its connection, free it, then tell the caller. */
static void finish(struct h1_xfer *x, enum up_error err, const char *msg, int keep)
{
    struct h1_conn *c = x->conn;
    void (*done)(void *, enum up_error, const char *) = x->cb.on_done;
    void *arg = x->arg;
    char buf[MSG_CAP];

    snprintf(buf, sizeof buf, "%s", msg);
    x->conn = NULL;
    if (c) {
        if (err == UP_OK)
            conn_release(c, keep, x->keep_ms);
        else
            conn_close(c);
    }
    xfer_free(x);
    done(arg, err, buf);
}

/* An aborted transfer: its connection is in an unknown state and closes. */
static void cleanup_aborted(struct h1_xfer *x)
{
    if (x->conn)
        conn_close(x->conn);
    x->conn = NULL;
    xfer_free(x);
}

/* What a failed connect says: the upstream's refusal, or the gateway out of
 * descriptors for the socket (its own limit, not the upstream's doing). */
static enum up_error connect_error(int e)
{
    if (e == EMFILE || e == ENFILE)
        return UP_EDESCRIPTORS;
    return e == ENOMEM ? UP_ENOMEM : UP_ECONNREFUSED;
}

static void fail_connect(struct h1_xfer *x, int e)
{
    char msg[MSG_CAP];
    snprintf(msg, sizeof msg, "Failed to connect to %.200s: %.200s", x->host->authority,
             strerror(e));
    finish(x, e == EMFILE || e == ENFILE ? UP_EDESCRIPTORS : UP_ECONNREFUSED, msg, 0);
}

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_xfer *x = arg;
    (void)fd;
    (void)what;
    finish(x, x->defer_err, x->defer_msg, 0);
}

/* Fail from a context where callbacks must not run (h1_xfer_start). */
static void defer_fail(struct h1_xfer *x, enum up_error err, const char *msg)
{
    x->defer_err = err;
    snprintf(x->defer_msg, sizeof x->defer_msg, "%s", msg);
    event_active(&x->ev_defer, EV_TIMEOUT, 1);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_xfer *x = arg;
    char msg[MSG_CAP];
    int connecting = !x->conn || x->conn->connecting;
    (void)fd;
    (void)what;
    snprintf(msg, sizeof msg, "%s timed out after %ld milliseconds",
             connecting ? "Connection" : "Operation", x->timeout_ms);
    finish(x, connecting ? UP_ECONNTIMEOUT : UP_ETIMEOUT, msg, 0);
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_xfer *x = arg;
    char msg[MSG_CAP];
    (void)fd;
    (void)what;
    snprintf(msg, sizeof msg, "Connection to %.200s timed out after %ld milliseconds",
             x->host->authority, x->connect_timeout_ms);
    finish(x, UP_ECONNTIMEOUT, msg, 0);
}

/* ==== Sending ==== */

/* Send what is left of the request. 0: sent, or waiting for the socket to
 * take more; -1 with errno: the connection is broken. */
static int send_request(struct h1_xfer *x)
{
    struct h1_conn *c = x->conn;
    size_t total = x->head_len + x->body_len;
    while (x->sent < total) {
        struct iovec iov[2];
        struct msghdr mh;
        ssize_t n;
        int k = 0;
        if (x->sent < x->head_len) {
            iov[k].iov_base = x->head + x->sent;
            iov[k++].iov_len = x->head_len - x->sent;
            if (x->body_len) {
                iov[k].iov_base = (void *)(uintptr_t)x->body;
                iov[k++].iov_len = x->body_len;
            }
        } else {
            size_t off = x->sent - x->head_len;
            iov[k].iov_base = (void *)(uintptr_t)(x->body + off);
            iov[k++].iov_len = x->body_len - off;
        }
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)k;
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(&c->wev, NULL);
                return 0;
            }
            return -1;
        }
        x->sent += (size_t)n;
    }
    return 0;
}

/* Give the transfer a new connection. 0, or -1 with errno. */
static int attach_new(struct h1_xfer *x)
{
    struct h1_conn *c;
    make_room(x->cl);
    c = conn_new(x->cl, x->host);
    /* Out of descriptors: the idle connections hold some. Closed, they make
     * room for this one, tried once more. */
    if (!c && (errno == EMFILE || errno == ENFILE) && close_oldest_idle(x->cl, 0))
        c = conn_new(x->cl, x->host);
    if (!c)
        return -1;
    c->xfer = x;
    x->conn = c;
    if (c->connecting) {
        event_add(&c->wev, NULL);
        if (x->connect_timeout_ms > 0) {
            struct timeval tv = {x->connect_timeout_ms / 1000,
                                 (x->connect_timeout_ms % 1000) * 1000};
            evtimer_add(&x->ev_connect_timeout, &tv);
        }
        return 0;
    }
    return send_request(x);
}

/* A reused connection found broken before a single byte of the request was
 * written to it: the upstream cannot have seen the request, so it goes out
 * once more on a fresh connection. Once any byte was written, the upstream
 * may have read the request and acted on it (a reset before the answer says
 * nothing about that), so the failure is the caller's, as one attempt that
 * its retry policy decides on; resending here would do the work twice
 * without anyone counting it. */
static int retryable(const struct h1_xfer *x)
{
    return x->conn && x->conn->n_done > 0 && x->sent == 0 && !x->got_bytes && !x->retried;
}

/* How a reset before the response head is reported: a connection reused
 * from the pool that ended before a single byte of the response is most
 * likely the upstream's keep-alive timeout crossing the request, which the
 * caller's policy may answer with an immediate attempt on a new connection. */
static enum up_error reset_error(const struct h1_xfer *x)
{
    return x->conn && x->conn->n_done > 0 && !x->got_bytes ? UP_ERESET_REUSED : UP_ERESET;
}

/* Writing the request failed with errno e. A close (EPIPE) or a reset
 * (ECONNRESET) may come after an answer: an upstream that refuses a request
 * before reading all of it (413 to a body over its limit) writes its answer
 * and closes, and a body larger than the socket buffers then meets the
 * close. The answer waits in the socket's receive queue, which the reset
 * does not empty, so writing stops and the read side takes over: it reads
 * what came through pump(), as any response, and only a connection that
 * ended with no response head is a reset (conn_ended()); nothing more is
 * written, and complete() closes the connection, since the request was not
 * all sent. Any other error ends the transfer as a reset. With now, from a
 * libevent callback, the reading starts at once; else (h1_xfer_start(),
 * where the caller's callbacks must not run) from the loop. */
static void send_failed(struct h1_xfer *x, int e, int now)
{
    struct h1_conn *c = x->conn;
    if (e == EPIPE || e == ECONNRESET) {
        x->send_errno = e;
        event_del(&c->wev);
        if (now)
            conn_read_cb(c->fd, EV_READ, c);
        else
            event_active(&c->rev, EV_READ, 1);
    } else if (now) {
        finish(x, reset_error(x), strerror(e), 0);
    } else {
        defer_fail(x, reset_error(x), strerror(e));
    }
}

static void retry(struct h1_xfer *x)
{
    int e;
    conn_close(x->conn);
    x->conn = NULL;
    x->retried = 1;
    x->sent = 0;
    x->rs = R_HEAD;
    if (attach_new(x) == 0)
        return;
    e = errno;
    if (x->conn)
        send_failed(x, e, 1);
    else
        fail_connect(x, e);
}

static void send_or_fail(struct h1_xfer *x)
{
    int e;
    if (send_request(x) == 0)
        return;
    e = errno;
    if (retryable(x))
        retry(x);
    else
        send_failed(x, e, 1);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_conn *c = arg;
    struct h1_xfer *x = c->xfer;
    (void)what;
    if (!x)
        return;
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            fail_connect(x, err);
            return;
        }
        c->connecting = 0;
        event_del(&x->ev_connect_timeout);
    }
    send_or_fail(x);
}

/* ==== Receiving ==== */

static int token_in(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i + tl <= n; i++)
        if (strncasecmp(v + i, token, tl) == 0 && (i == 0 || strchr(" \t,", v[i - 1])) &&
            (i + tl == n || strchr(" \t,;", v[i + tl])))
            return 1;
    return 0;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* How long a connection may stay idle after a response whose Keep-Alive
 * header value is v (n bytes): the upstream's timeout=N seconds less a
 * margin for a request already on its way when it closes (a second, or half
 * of N when that is less), and never past IDLE_MAX_MS. Without a timeout
 * (or with one that is not a number), IDLE_MAX_MS. upstream.c reads it for
 * libcurl's connections too. */
long h1_keep_alive_ms(const char *v, size_t n)
{
    const char *end = v + n;
    while (v < end) {
        const char *p = v;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(end - p) > 8 && strncasecmp(p, "timeout=", 8) == 0) {
            long s = 0, ms;
            p += 8;
            if (p == end || *p < '0' || *p > '9')
                return IDLE_MAX_MS;
            /* Past this many seconds the margin still leaves IDLE_MAX_MS or
             * more; at it (118 s) the margin is what keeps the connection
             * from being reused as the upstream closes it. */
            for (; p < end && *p >= '0' && *p <= '9'; p++)
                if ((s = s * 10 + (*p - '0')) > IDLE_MAX_MS / 1000)
                    return IDLE_MAX_MS;
            if (p < end && *p != ',' && *p != ' ' && *p != '\t')
                return IDLE_MAX_MS;
            ms = s * 1000 - (s >= 2 ? 1000 : s * 500);
            return ms < IDLE_MAX_MS ? ms : IDLE_MAX_MS;
        }
        while (v < end && *v != ',')
            v++;
        if (v < end)
            v++;
    }
    return IDLE_MAX_MS;
}

/* Parse a complete head of hl bytes at p. 0: a final head (rs and keep_alive
 * set); 1: an interim 1xx head to skip; -1: malformed, *why set. */
static int parse_head(struct h1_xfer *x, const char *p, size_t hl, const char **why)
{
    const char *end = p + hl, *line = p, *nl;
    int minor, chunked = 0, other_te = 0, close_conn = 0, keep_alive_hdr = 0, has_cl = 0;
    unsigned long long cl = 0;
    long st;

    nl = memchr(line, '\n', (size_t)(end - line));
    if (!nl || nl - line < 12 || memcmp(line, "HTTP/1.", 7) != 0 ||
        (line[7] != '0' && line[7] != '1') || line[8] != ' ' || line[9] < '1' || line[9] > '9' ||
        line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' ||
        (line[12] != ' ' && line[12] != '\r' && line[12] != '\n')) {
        *why = "malformed status line from the upstream";
        return -1;
    }
    minor = line[7] - '0';
    st = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (st == 101) {
        *why = "the upstream switched protocols";
        return -1;
    }
    if (st < 200)
        return 1;
    x->status = st;
    x->ctype[0] = '\0';
    x->retry_after[0] = '\0';
    x->retry_after_ms[0] = '\0';
    x->location[0] = '\0';
    x->content_encoding[0] = '\0';
    x->request_id[0] = '\0';
    x->allow[0] = '\0';
    x->relay.len = x->relay.n = 0;
    x->relay.buf[0] = '\0';
    x->keep_ms = IDLE_MAX_MS;

    for (line = nl + 1; line < end; line = nl + 1) {
        const char *colon, *v, *ve;
        size_t nlen;
        nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl)
            break;
        ve = nl;
        if (ve > line && ve[-1] == '\r')
            ve--;
        if (ve == line)
            break; /* the empty line */
        if (*line == ' ' || *line == '\t') {
            /* Only before the first header line: unfold_head() took the rest. */
            *why = "folded header line from the upstream";
            return -1;
        }
        colon = memchr(line, ':', (size_t)(ve - line));
        if (!colon || colon == line) {
            *why = "malformed header line from the upstream";
            return -1;
        }
        nlen = (size_t)(colon - line);
        for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++)
            ;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0) {
            /* A list of equal values ("12, 12": a proxy joined two equal
             * lines) is that value (RFC 9112 section 6.3). */
            const char *d = v;
            for (;;) {
                const char *digits = d;
                unsigned long long n = 0;
                for (; d < ve && *d >= '0' && *d <= '9'; d++) {
                    if (n > (1ULL << 60)) {
                        *why = "malformed Content-Length from the upstream";
                        return -1;
                    }
                    n = n * 10 + (unsigned long long)(*d - '0');
                }
                while (d < ve && (*d == ' ' || *d == '\t'))
                    d++;
                if (d == digits || (d < ve && *d != ',')) {
                    *why = "malformed Content-Length from the upstream";
                    return -1;
                }
                if (has_cl && n != cl) {
                    *why = "conflicting Content-Length from the upstream";
                    return -1;
                }
                has_cl = 1;
                cl = n;
                if (d == ve)
                    break;
                for (d++; d < ve && (*d == ' ' || *d == '\t'); d++) /* past the comma */
                    ;
            }
        } else if (nlen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            if (token_in(v, (size_t)(ve - v), "chunked"))
                chunked = 1;
            else
                other_te = 1;
        } else if (nlen == 10 && strncasecmp(line, "connection", 10) == 0) {
            close_conn |= token_in(v, (size_t)(ve - v), "close");
            keep_alive_hdr |= token_in(v, (size_t)(ve - v), "keep-alive");
        } else if (nlen == 10 && strncasecmp(line, "keep-alive", 10) == 0) {
            x->keep_ms = h1_keep_alive_ms(v, (size_t)(ve - v));
        } else if (nlen == 12 && strncasecmp(line, "content-type", 12) == 0) {
            copy_value(x->ctype, sizeof x->ctype, v, (size_t)(ve - v));
        } else if (nlen == 11 && strncasecmp(line, "retry-after", 11) == 0) {
            up_hint_copy(x->retry_after, sizeof x->retry_after, v, (size_t)(ve - v));
        } else if (nlen == 14 && strncasecmp(line, "retry-after-ms", 14) == 0) {
            /* Read for the retry's delay, and relayed as the other hints are. */
            up_hint_copy(x->retry_after_ms, sizeof x->retry_after_ms, v, (size_t)(ve - v));
            up_relay_add(&x->relay, line, nlen, v, (size_t)(ve - v));
        } else if (nlen == 8 && strncasecmp(line, "location", 8) == 0) {
            copy_value(x->location, sizeof x->location, v, (size_t)(ve - v));
        } else if (nlen == 16 && strncasecmp(line, "content-encoding", 16) == 0) {
            up_list_join(x->content_encoding, sizeof x->content_encoding, v, (size_t)(ve - v));
        } else if (nlen == 5 && strncasecmp(line, "allow", 5) == 0) {
            up_list_join(x->allow, sizeof x->allow, v, (size_t)(ve - v));
        } else if (nlen == 12 && strncasecmp(line, "x-request-id", 12) == 0) {
            up_request_id_copy(x->request_id, sizeof x->request_id, v, (size_t)(ve - v));
        } else {
            up_relay_add(&x->relay, line, nlen, v, (size_t)(ve - v));
        }
    }
    x->keep_alive = minor == 1 ? !close_conn : keep_alive_hdr && !close_conn;
    if (st == 204 || st == 304) {
        x->rs = R_BODY;
        x->remaining = 0;
    } else if (chunked) {
        x->rs = R_CHUNK_SIZE;
        if (has_cl)
            x->keep_alive = 0; /* both framings: trust chunked, not the connection */
    } else if (has_cl && !other_te) {
        x->rs = R_BODY;
        x->remaining = cl;
    } else {
        x->rs = R_UNTIL_EOF;
        x->keep_alive = 0;
    }
    return 0;
}

/* Unfold the header lines of the head at p (hl bytes, through its empty line)
 * in place: an obs-fold, a line end followed by a line that starts with SP or
 * HTAB (RFC 9112 section 5.2), becomes one SP with the blanks around it
 * dropped, so a folded value reads as the one line it stands for. A blank
 * at the start of the first header line continues no header: that head is
 * left as it is, for parse_head() to refuse. Returns the head's new length. */
static size_t unfold_head(char *p, size_t hl)
{
    char *end = p + hl, *r = memchr(p, '\n', hl), *w;
    int cont = 0;
    if (!r || ++r >= end || *r == ' ' || *r == '\t')
        return hl;
    w = r;
    for (;;) {
        char *nl = memchr(r, '\n', (size_t)(end - r)), *le;
        if (!nl)
            break;
        le = nl > r && nl[-1] == '\r' ? nl - 1 : nl;
        if (le == r && !cont)
            break; /* the empty line */
        memmove(w, r, (size_t)(le - r));
        w += le - r;
        r = nl + 1;
        cont = r < end && (*r == ' ' || *r == '\t');
        if (cont) {
            while (w[-1] == ' ' || w[-1] == '\t') /* stops at the previous line's LF */
                w--;
            *w++ = ' ';
            while (r < end && (*r == ' ' || *r == '\t'))
                r++;
        } else {
            memmove(w, le, (size_t)(r - le)); /* the line end, as it came */
            w += r - le;
        }
    }
    memmove(w, r, (size_t)(end - r));
    return (size_t)(w - p) + (size_t)(end - r);
}

/* The length of the head at p (through its empty line), or 0 if incomplete. */
static size_t head_length(const char *p, size_t avail)
{
    const char *end = p + avail, *line = p, *nl;
    while ((nl = memchr(line, '\n', (size_t)(end - line)))) {
        if (nl == line || (nl == line + 1 && line[0] == '\r'))
            return (size_t)(nl + 1 - p);
        line = nl + 1;
    }
    return 0;
}

enum pump_result { PUMP_MORE, PUMP_STOP };

/* The body ended cleanly. */
static void complete(struct h1_xfer *x)
{
    int keep = x->keep_alive && x->sent == x->head_len + x->body_len;
    finish(x, UP_OK, "ok", keep);
}

static void fail_proto(struct h1_xfer *x, enum up_error err, const char *why)
{
    finish(x, err, why, 0);
}

/* Hand the caller len bytes at p. 0: taken; 1: refused (paused); -1: the
 * caller aborted the transfer, which is now freed. */
static int deliver(struct h1_xfer *x, const char *p, size_t len)
{
    int rc;
    x->in_cb++;
    rc = x->cb.on_data(x->arg, p, len);
    x->in_cb--;
    if (x->aborted) {
        cleanup_aborted(x);
        return -1;
    }
    if (rc == UP_PAUSE) {
        x->paused = 1;
        event_del(&x->conn->rev);
        return 1;
    }
    return 0;
}

/* Parse and deliver what the connection's buffer holds. PUMP_MORE: more bytes
 * are needed; PUMP_STOP: paused, or the transfer is over (x may be freed). */
static enum pump_result pump(struct h1_xfer *x)
{
    struct h1_conn *c = x->conn;
    for (;;) {
        char *p = c->buf + c->pos;
        size_t avail = c->len - c->pos;
        switch (x->rs) {
        case R_HEAD: {
            size_t hl = head_length(p, avail);
            const char *why = NULL;
            int rc;
            if (hl == 0 && avail > HEAD_CAP) {
                fail_proto(x, UP_ETOOBIG, "the upstream's response head is too large");
                return PUMP_STOP;
            }
            if (hl == 0)
                return PUMP_MORE;
            if (hl > HEAD_CAP) {
                fail_proto(x, UP_ETOOBIG, "the upstream's response head is too large");
                return PUMP_STOP;
            }
            rc = parse_head(x, p, unfold_head(p, hl), &why);
            if (rc < 0) {
                fail_proto(x, UP_EPROTO, why);
                return PUMP_STOP;
            }
            c->pos += hl;
            if (rc == 1)
                break; /* 1xx: the real head follows */
            x->head_done = 1;
            if (x->cb.on_head) {
                struct up_head h;
                h.status = x->status;
                h.content_type = x->ctype[0] ? x->ctype : NULL;
                h.retry_after = x->retry_after[0] ? x->retry_after : NULL;
                h.location = x->location[0] ? x->location : NULL;
                h.content_encoding = x->content_encoding[0] ? x->content_encoding : NULL;
                h.request_id = x->request_id[0] ? x->request_id : NULL;
                h.relay = x->relay.n ? x->relay.buf : NULL;
                h.retry_after_ms = x->retry_after_ms[0] ? x->retry_after_ms : NULL;
                h.allow = x->allow[0] ? x->allow : NULL;
                h.close_delimited = x->rs == R_UNTIL_EOF;
                x->in_cb++;
                x->cb.on_head(x->arg, &h);
                x->in_cb--;
                if (x->aborted) {
                    cleanup_aborted(x);
                    return PUMP_STOP;
                }
            }
            if (x->rs == R_BODY && x->remaining == 0) {
                complete(x);
                return PUMP_STOP;
            }
            break;
        }
        case R_BODY:
        case R_CHUNK_DATA:
        case R_UNTIL_EOF: {
            size_t n = avail;
            int rc;
            if (avail == 0)
                return PUMP_MORE;
            if (x->rs != R_UNTIL_EOF && n > x->remaining)
                n = (size_t)x->remaining;
            rc = deliver(x, p, n);
            if (rc)
                return PUMP_STOP;
            c->pos += n;
            if (x->rs == R_UNTIL_EOF)
                break;
            x->remaining -= n;
            if (x->remaining == 0 && x->rs == R_BODY) {
                complete(x);
                return PUMP_STOP;
            }
            if (x->remaining == 0)
                x->rs = R_CHUNK_CRLF;
            break;
        }
        case R_CHUNK_CRLF:
            if (avail >= 1 && p[0] == '\n') {
                c->pos += 1;
            } else if (avail < 2) {
                return PUMP_MORE;
            } else if (p[0] == '\r' && p[1] == '\n') {
                c->pos += 2;
            } else {
                fail_proto(x, UP_EPROTO, "malformed chunked body from the upstream");
                return PUMP_STOP;
            }
            x->rs = R_CHUNK_SIZE;
            break;
        case R_CHUNK_SIZE:
        case R_TRAILER: {
            const char *nl = memchr(p, '\n', avail);
            size_t ll;
            /* Measured whole, line end found or not: which read brings the
             * line end must not decide whether a long line is taken. */
            if ((nl ? (size_t)(nl - p) : avail) > LINE_CAP) {
                fail_proto(x, UP_EPROTO,
                           "a chunk-size or trailer line over 32 KiB from the upstream");
                return PUMP_STOP;
            }
            if (!nl)
                return PUMP_MORE;
            ll = (size_t)(nl - p);
            if (ll && p[ll - 1] == '\r')
                ll--;
            c->pos += (size_t)(nl - p) + 1;
            if (x->rs == R_TRAILER) {
                if (ll == 0) {
                    complete(x);
                    return PUMP_STOP;
                }
                if (++x->trailer_lines > TRAILER_LINES_CAP) {
                    fail_proto(x, UP_EPROTO, "too many trailer lines from the upstream");
                    return PUMP_STOP;
                }
                break;
            }
            {
                unsigned long long size = 0;
                size_t i, digits = 0;
                for (i = 0; i < ll; i++) {
                    int ch = (unsigned char)p[i], d;
                    if (ch >= '0' && ch <= '9')
                        d = ch - '0';
                    else if (ch >= 'a' && ch <= 'f')
                        d = ch - 'a' + 10;
                    else if (ch >= 'A' && ch <= 'F')
                        d = ch - 'A' + 10;
                    else
                        break;
                    if (size > (1ULL << 56)) {
                        digits = 0;
                        break;
                    }
                    size = size * 16 + (unsigned long long)d;
                    digits++;
                }
                if (digits == 0 || (i < ll && p[i] != ';' && p[i] != ' ' && p[i] != '\t')) {
                    fail_proto(x, UP_EPROTO, "malformed chunk size from the upstream");
                    return PUMP_STOP;
                }
                x->remaining = size;
                x->rs = size ? R_CHUNK_DATA : R_TRAILER;
            }
            break;
        }
        }
    }
}

/* The connection ended (EOF, or an error e) while the transfer was on it. */
static void conn_ended(struct h1_xfer *x, int e)
{
    char msg[MSG_CAP];
    int why = e ? e : x->send_errno; /* for the message: a reset seen while writing */
    if (x->conn->connecting) {
        fail_connect(x, e ? e : ECONNRESET);
        return;
    }
    if (e == 0 && x->rs == R_UNTIL_EOF) {
        finish(x, UP_OK, "ok", 0);
        return;
    }
    if (retryable(x)) {
        retry(x);
        return;
    }
    if (!x->head_done) {
        snprintf(msg, sizeof msg, "the upstream closed the connection before a response%s%s%s",
                 reset_error(x) == UP_ERESET_REUSED ? " (a reused connection)" : "",
                 why ? ": " : "", why ? strerror(why) : "");
        finish(x, reset_error(x), msg, 0);
    } else {
        snprintf(msg, sizeof msg, "the upstream closed the connection in the response body%s%s",
                 why ? ": " : "", why ? strerror(why) : "");
        finish(x, UP_ECLOSED, msg, 0);
    }
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_conn *c = arg;
    struct h1_xfer *x = c->xfer;
    (void)what;

    if (!x) {
        /* Idle: EOF, an error or stray bytes. The connection is done for. */
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
    if (x->paused)
        return;
    for (;;) {
        size_t room;
        ssize_t n;
        if (pump(x) == PUMP_STOP)
            return;
        /* Make room: drop consumed bytes, grow only for a long head. */
        if (c->pos == c->len) {
            c->pos = c->len = 0;
        } else if (c->pos > 0 && c->cap - c->len < c->cap / 4) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        }
        if (c->len == c->cap) {
            size_t cap = c->cap * 2;
            char *b;
            if (cap > HEAD_CAP + BUF_START || !(b = realloc(c->buf, cap))) {
                fail_proto(x, UP_ETOOBIG, "the upstream's response head is too large");
                return;
            }
            c->buf = b;
            c->cap = cap;
        }
        room = c->cap - c->len;
        n = recv(fd, c->buf + c->len, room, 0);
        if (n > 0) {
            c->len += (size_t)n;
            x->got_bytes = 1;
            if ((size_t)n < room) {
                /* Probably all there is: parse it and wait for the next event
                 * instead of paying a recv() that says EAGAIN. */
                pump(x);
                return;
            }
            continue;
        }
        if (n == 0) {
            conn_ended(x, 0);
            return;
        }
        if (errno == EINTR)
            return;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* After a failed write (send_failed()) nothing more can arrive:
             * all that came was read, and the connection has ended. */
            if (x->send_errno)
                conn_ended(x, 0);
            return;
        }
        conn_ended(x, errno);
        return;
    }
}

/* ==== Transfers ==== */

struct piece {
    const char *p;
    size_t n;
};
#define LIT(s)                                                                                     \
    {                                                                                              \
        s, sizeof s - 1                                                                            \
    }

/* Whether the caller's header lines set Accept (libcurl's default Accept
 * gives way to the caller's, and so does ours). */
static int sets_accept(const char *lines)
{
    for (const char *p = lines; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        if (strncasecmp(p, "Accept:", 7) == 0)
            return 1;
        if (!eol)
            break;
        p = eol + 2;
    }
    return 0;
}

/* The request head, from pieces copied in place (snprintf of the same was a
 * visible share of a request's instructions). 0, or -1 out of memory. */
static int build_head(struct h1_xfer *x, const struct url_parts *u, const struct up_request *req)
{
    char clen[32];
    int k = snprintf(clen, sizeof clen, "%zu", req->body_len);
    const char *auth = req->authorization;
    const char *more = req->headers;
    int default_accept = !more || !sets_accept(more);
    const char *method = req->method ? req->method : "POST";
    const struct piece pieces[] = {
        {method, strlen(method)},
        LIT(" "),
        {"/", u->path[0] == '/' ? 0 : 1},
        {u->path, strlen(u->path)},
        LIT(" HTTP/1.1\r\nHost: "),
        {u->authority, strlen(u->authority)},
        LIT("\r\n"),
        {"Accept: */*\r\n", default_accept ? sizeof "Accept: */*\r\n" - 1 : 0},
        LIT("Content-Type: application/json\r\n"),
        LIT("Accept-Encoding: identity\r\n"),
        {"Authorization: ", auth ? sizeof "Authorization: " - 1 : 0},
        {auth ? auth : "", auth ? strlen(auth) : 0},
        {"\r\n", auth ? 2 : 0},
        {more ? more : "", more ? strlen(more) : 0},
        LIT("Content-Length: "),
        {clen, k > 0 ? (size_t)k : 0},
        LIT("\r\n\r\n"),
    };
    size_t total = 0, off = 0;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        total += pieces[i].n;
    x->head = malloc(total);
    if (!x->head)
        return -1;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        memcpy(x->head + off, pieces[i].p, pieces[i].n);
        off += pieces[i].n;
    }
    x->head_len = total;
    return 0;
}

struct h1_xfer *h1_xfer_start(struct h1_client *cl, const struct up_request *req,
                              const struct up_callbacks *cb, void *arg)
{
    struct url_parts u;
    struct h1_xfer *x;
    struct h1_conn *c;

    if (!req->url || parse_url(req->url, &u) != 0)
        return NULL;
    if (req->authorization && strpbrk(req->authorization, "\r\n"))
        return NULL;
    x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->cl = cl;
    x->cb = *cb;
    x->arg = arg;
    x->body = req->body;
    x->body_len = req->body_len;
    x->timeout_ms = req->timeout_ms;
    x->connect_timeout_ms = req->connect_timeout_ms;
    x->host = host_get(cl, &u);
    if (!x->host)
        goto fail;
    if (build_head(x, &u, req) != 0)
        goto fail;
    evtimer_assign(&x->ev_timeout, cl->base, timeout_cb, x);
    evtimer_assign(&x->ev_connect_timeout, cl->base, connect_timeout_cb, x);
    event_assign(&x->ev_defer, cl->base, -1, 0, defer_cb, x);
    x->next = cl->xfers;
    if (cl->xfers)
        cl->xfers->prev = x;
    cl->xfers = x;
    if (x->timeout_ms > 0) {
        struct timeval tv = {x->timeout_ms / 1000, (x->timeout_ms % 1000) * 1000};
        evtimer_add(&x->ev_timeout, &tv);
    }

    /* The most recently used idle connection that is still usable, if any,
     * unless the caller asked for a new connection. */
    c = NULL;
    close_expired(cl, h1_now_ms());
    while (!req->fresh_connection && (c = x->host->idle) &&
           (c->idle_until <= h1_now_ms() || !idle_usable(c)))
        conn_close(c);
    if (c) {
        idle_unlink(c);
        c->xfer = x;
        x->conn = c;
        if (send_request(x) == 0)
            return x;
        /* Broken under us. Not a byte went out only if sent is 0; else the
         * upstream may have the request (and may have answered it:
         * send_failed()), and it is not sent again (retryable()). */
        if (x->sent > 0) {
            send_failed(x, errno, 0);
            return x;
        }
        conn_close(c);
        x->conn = NULL;
        x->retried = 1;
    }
    if (attach_new(x) != 0) {
        char msg[MSG_CAP];
        int e = errno;
        if (x->conn) {
            send_failed(x, e, 0);
        } else {
            snprintf(msg, sizeof msg, "Failed to connect to %.200s: %.200s", x->host->authority,
                     strerror(e));
            defer_fail(x, connect_error(e), msg);
        }
    }
    return x;
fail:
    free(x->head);
    free(x);
    return NULL;
}

void h1_xfer_resume(struct h1_xfer *x)
{
    if (!x || x->aborted || !x->paused)
        return;
    x->paused = 0;
    if (x->conn) {
        /* Deliver the held bytes from the loop, not from inside this call. */
        event_add(&x->conn->rev, NULL);
        event_active(&x->conn->rev, EV_READ, 1);
    }
}

void h1_xfer_abort(struct h1_xfer *x)
{
    if (!x || x->aborted)
        return;
    x->aborted = 1;
    if (x->in_cb)
        return; /* cleaned up when the callback returns */
    cleanup_aborted(x);
}

/* ==== The client ==== */

struct h1_client *h1_client_new(struct event_base *base)
{
    struct h1_client *cl = calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    cl->base = base;
    evtimer_assign(&cl->expiry.ev, base, expire_cb, cl);
    return cl;
}

void h1_client_limit(struct h1_client *cl, size_t max_open, const size_t *others)
{
    cl->max_open = max_open;
    cl->others = others;
}

void h1_client_trim(struct h1_client *cl, size_t keep)
{
    close_oldest_idle(cl, keep);
}

size_t h1_client_open(const struct h1_client *cl)
{
    return cl->n_open;
}

void h1_client_free(struct h1_client *cl)
{
    if (!cl)
        return;
    while (cl->xfers) {
        cl->xfers->aborted = 1;
        cleanup_aborted(cl->xfers);
    }
    while (cl->hosts) {
        struct h1_host *h = cl->hosts;
        cl->hosts = h->next;
        while (h->idle)
            conn_close(h->idle);
        free(h);
    }
    evtimer_del(&cl->expiry.ev);
    free(cl);
}
