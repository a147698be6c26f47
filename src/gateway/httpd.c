/* httpd.c -- a small HTTP/1.1 server over libevent bufferevents (see
 * httpd.h for what it does and the request lifetime).
 *
 * A connection is a state machine: reading the head, reading the body
 * (Content-Length or chunked), handling (the caller owns the request), then
 * back to reading the head for keep-alive, or closing. While a request is
 * being handled reading stays enabled, so a client that disconnects is
 * noticed at once (its EOF) and the caller's on_abort runs; bytes of a
 * pipelined next request wait in the input buffer, bounded by a read
 * high-water mark. A next request is not read either while the answers
 * before it wait to be sent past the output high-water mark: a client that
 * pipelines requests and takes no answer holds a bounded backlog, and meets
 * the write timeout. Closing after an error response is "lingering": the server
 * shuts down its sending side and drains what the client still sends for a
 * moment, so the client reads the response instead of a reset.
 *
 * Accepting stops (the listener is disabled, the clients wait in the
 * kernel's backlog) while the connection cap is reached and for a moment
 * after accept() runs out of descriptors; listener_update() decides both.
 *
 * Responses are written at once, from the call that makes them (flush_out):
 * the bufferevent's write event is enabled only while a backlog remains. A
 * response then costs one writev() and no epoll_ctl() calls, and leaves
 * without waiting for another turn of the loop.
 *
 * Threads: the event loop thread only.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <arpa/inet.h>
#ifdef __linux__
#include <linux/sockios.h>
#include <sys/ioctl.h>
#endif

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "httpd.h"

#define MAX_HEADERS 100    /* named in an answer's message */
#define MAX_CHUNK_LINE 1024 /* named in an answer's message */
#define MAX_BLANK_LINES 8   /* empty lines ignored before a request line */
#define LINGER_MS 2000
#define ACCEPT_PAUSE_MS 100
#define CAP_QUIET_MS 1000 /* a pause at the cap ends after this long without reaching it */

/* A response sent with hs_respond_tracked(): it is written once out_written
 * reaches end. */
struct sent_watch {
    struct sent_watch *next;
    unsigned long long end;
    void (*sent)(void *arg, int delivered);
    void *arg;
};

enum conn_state {
    C_HEAD,       /* waiting for a request line and headers */
    C_BODY,       /* reading a Content-Length body */
    C_CHUNK_SIZE, /* chunked body: the size line */
    C_CHUNK_DATA, /* chunked body: data */
    C_CHUNK_CRLF, /* chunked body: the CRLF after data */
    C_TRAILER,    /* chunked body: trailer lines up to the empty one */
    C_HANDLING,   /* the caller owns the request */
    C_CLOSING,    /* response sent; flush, then linger and close */
};

struct header {
    char *name;
    char *value;
};

struct hs_req {
    struct hs_conn *conn;
    char *head; /* the header block, parsed in place */
    const char *method, *target;
    char *path;
    char *target_own; /* an absolute-form target with no path: "/" and its query, or "*" */
    int minor; /* HTTP/1.minor */
    struct header hdr[MAX_HEADERS];
    int n_hdr;
    char *body;
    size_t body_len, body_cap, remaining;
    /* max_body_bytes as it was when the head arrived: a reload (SIGHUP) may
     * lower the server's while this body is being read, and the bounds
     * on the body and its buffer must stay the ones it was admitted on. */
    size_t max_body;
    int body_announced; /* the head announced a body (Content-Length over 0, or chunked) */
    int keep_alive;
    int streaming;
    char why[256]; /* a refusal's message that names a header, a cap or the body's progress */
    int want_drain;
    struct evbuffer *resp_headers;
    void (*on_drain)(void *);
    void (*on_abort)(void *);
    void *cb_arg;
};

struct hs_conn {
    struct hs_server *srv;
    struct bufferevent *bev;
    struct hs_conn *prev, *next;
    enum conn_state state;
    int in_read; /* inside read_cb: completion must not re-enter it */
    int head_started;
    long long head_deadline_us; /* a head in progress must be whole by then (monotonic) */
    long long body_deadline_us; /* the body being read must be whole by then (body_timeout) */
    size_t body_credited;       /* bytes of it that have put the deadline off */
    long long linger_end_us;    /* closing, all sent: the client's input is dropped until then */
    size_t head_scanned;        /* bytes of the input already scanned for the head's end */
    int head_matched;           /* how much of "\r\n\r\n" ends those bytes (0 to 3) */
    int blank_lines;            /* empty lines dropped before this request's line */
    size_t line_scanned;        /* chunked body: bytes of the line in progress scanned for LF */
    size_t trailer_bytes;       /* chunked body: bytes of trailer lines read so far */
    unsigned long long chunk_len; /* chunked body: the size of the chunk being read */
    int answer_early; /* the handler refuses the request whatever its body: none is read */
    int peer_eof;     /* the client's input ended with answers still to write (finish_at_eof) */
    int out_blocked;  /* answers not taken pile up: reading waits for them to drain */
    struct event *out_deadline; /* while out_blocked: drained by then, or closed */
    /* When the output last made progress (monotonic): the socket took bytes
     * of it, it went from empty to not, or the client was found to have
     * read some of what the kernel holds for it (out_taken()). A client
     * that is not reading is timed from here. The socket alone takes more
     * only once the client has read a good part of what the kernel holds
     * (on Linux about a third of a send buffer of up to several MB), so a
     * steady reader slower than that per idle_timeout_ms would be cut
     * without the last; where the kernel does not say (not Linux), it is. */
    long long out_progress_us;
    /* How much of the output the kernel had sent the client when last
     * looked at, after a write or at a check (out_taken()), counted as
     * out_written is. */
    unsigned long long out_sent_mark;
    /* Bytes ever queued for the client and ever written (out_count()), and
     * the tracked responses waiting for theirs to be written, oldest first. */
    unsigned long long out_added, out_written;
    struct sent_watch *sent_first, *sent_last;
    struct event *sent_ev; /* runs the callbacks of those written (deferred) */
    struct hs_req req;
};

struct hs_server {
    struct event_base *base;
    struct evconnlistener *listener;
    struct hs_limits lim;
    hs_handler_fn handler;
    hs_error_fn error_body;
    hs_refused_fn refused;
    hs_refuses_fn head_refuses;
    void *arg;
    struct hs_conn *conns;
    size_t n_conns, busy;
    int draining;
    int port;
    struct event *accept_resume; /* accepting paused: out of descriptors */
    int accept_paused;           /* a pause for want of descriptors is on (logged once) */
    long long fd_fail_ms;        /* when accept() last failed for want of them (monotonic) */
    int fd_wait;                 /* so the listener waits for the timer or a close */
    int listening;               /* the listener is enabled */
    size_t max_conns;            /* accept no more while this many are open; 0: no cap */
    int at_cap;                  /* a pause at the cap began and has not ended yet */
    long long cap_since_ms;      /* when it began (monotonic) */
    long long cap_last_ms;       /* when the cap was last reached */
    uint64_t cap_pauses;         /* times the cap was reached in this pause (for its end's log) */
    struct event *cap_quiet;     /* ends the pause once the cap has not been reached for a while */
    uint64_t cap_episodes, fd_episodes;
    time_t date_at; /* the second `date` was made for */
    char date[32];  /* the Date header's value (http_date()) */
};

static void read_cb(struct bufferevent *bev, void *arg);
static void accept_resume_cb(evutil_socket_t fd, short what, void *arg);
static void listener_update(struct hs_server *s);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* ==== Reason phrases ==== */

const char *hs_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* ==== Connections ==== */

/* A request body must come at this many bytes a second at least, on top of
 * the idle timeout (as Apache's mod_reqtimeout "MinRate=500"). */
#define BODY_MIN_RATE 500

/* A connection's times and deadlines are kept in microseconds: in whole
 * milliseconds, a deadline set from a time cut down to its millisecond and
 * re-armed from another could fire up to 1 ms early. */
static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The same clock in milliseconds, for the accept pauses' times. */
static long long mono_ms(void)
{
    return now_us() / 1000;
}

static struct timeval us_tv(long long us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return tv;
}

/* The idle timeout, in microseconds. */
static long long idle_us(const struct hs_server *s)
{
    return (long long)s->lim.idle_timeout_ms * 1000;
}

/* How long a connection with output may still go without its output making
 * progress (us; 0 or less: it has gone idle_timeout_ms without). */
static long long out_idle_left(const struct hs_conn *c, long long now)
{
    return c->out_progress_us + idle_us(c->srv) - now;
}

/* How much of the output (counted as out_written is: every byte written to
 * the socket) the client's side has acknowledged, *acked (unless NULL), and
 * the kernel has sent it, *sent. Returns 0, or -1 where the kernel does not
 * say: not Linux, or the ioctl failed. */
static int out_kernel_count(const struct hs_conn *c, unsigned long long *acked,
                            unsigned long long *sent)
{
#if defined(SIOCOUTQ) && defined(SIOCOUTQNSD)
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    int queued = 0, unsent = 0;
    if (fd < 0 || (acked && ioctl(fd, SIOCOUTQ, &queued) < 0) ||
        ioctl(fd, SIOCOUTQNSD, &unsent) < 0 || queued < 0 || unsent < 0)
        return -1;
    /* After shutdown(SHUT_WR) the FIN counts as one more byte queued. */
    if (acked)
        *acked = c->out_written > (unsigned long long)queued
                     ? c->out_written - (unsigned long long)queued
                     : 0;
    *sent = c->out_written > (unsigned long long)unsent
                ? c->out_written - (unsigned long long)unsent
                : 0;
    return 0;
#else
    (void)c;
    (void)acked;
    (void)sent;
    return -1;
#endif
}

/* The output has gone idle_timeout_ms without progress by what the socket
 * took: has the client taken any of what the kernel holds for it? The
 * kernel says a socket has room again only once the client has read a good
 * part of its send buffer, which may hold several MB, so a client reading
 * steadily but slowly can go longer than that without the socket taking
 * more. Its reading shows in the send queue instead: its side acknowledges
 * bytes the kernel had not yet sent it when last looked at (after the last
 * write, or at the last check), bytes that went out into room it made.
 * That is progress, now. Bytes already sent then are left out: the
 * client's kernel takes those into its buffer whether the client reads or
 * not, and they would keep a client that reads nothing for one more
 * idle_timeout_ms. (So would more bytes taken while its receive window
 * still grew after the last write: such a client is closed at the second
 * look.) A look comes once per idle_timeout_ms without progress, so each
 * must find some: a client that reads a byte a minute is cut with a
 * shorter timeout. With all of the output written and acknowledged there is
 * none to find: the client has it all, whenever it took it, and a
 * connection between requests is idle since its last answer was written.
 * (The mark is taken only while output waits, so after an answer written
 * at once it was stale, and the acknowledgement of that answer counted as
 * progress at the first look: every keep-alive connection stayed open for
 * twice idle_timeout_ms.) Returns 1 on progress; 0 when there is none, or
 * where the kernel does not say. */
static int out_taken(struct hs_conn *c, long long now)
{
    unsigned long long acked, sent;
    int took;
    if (out_kernel_count(c, &acked, &sent) < 0)
        return 0;
    took = acked > c->out_sent_mark &&
           (acked < c->out_written || evbuffer_get_length(bufferevent_get_output(c->bev)) > 0);
    c->out_sent_mark = sent;
    if (took)
        c->out_progress_us = now;
    return took;
}

/* The read timeout: the idle timeout, or less when `deadline` comes first
 * (the connection is then dropped at the deadline, whatever trickles in). */
static void read_by(struct hs_conn *c, long long now, long long deadline)
{
    long long idle = idle_us(c->srv);
    long long rest = deadline > now ? deadline - now : 1;
    struct timeval left, wtv = us_tv(idle);
    if (rest > idle)
        rest = idle;
    left = us_tv(rest);
    bufferevent_set_timeouts(c->bev, &left, &wtv);
}

/* The first bytes of a head have arrived: the rest must follow within the
 * idle timeout, however it trickles in. The read timeout alone restarts with
 * every byte, so a client sending one byte at a time would hold the
 * connection (and a descriptor) for ever. */
static void head_timeout(struct hs_conn *c)
{
    long long now;
    if (c->srv->lim.idle_timeout_ms <= 0)
        return;
    now = now_us();
    if (!c->head_started) {
        c->head_deadline_us = now + idle_us(c->srv);
        c->head_started = 1;
    }
    read_by(c, now, c->head_deadline_us);
}

/* A body is being read: so that it cannot trickle in for ever either, it
 * must be whole by a deadline, idle_timeout_ms after the head's end to
 * begin with, that every BODY_MIN_RATE bytes received put off by a second,
 * but never to more than idle_timeout_ms from now; a gap of the idle
 * timeout still ends it sooner. A client that keeps up the rate is never
 * cut off, however big its body (max_body_bytes bounds that). Without the
 * ceiling, bytes sent fast would earn time to spend later: a 4 MiB body
 * sent at once bought over two hours in which to trickle its last byte,
 * holding the connection and the body's memory. With it, over any stretch
 * of time a body brings BODY_MIN_RATE bytes a second, less idle_timeout_ms
 * worth of them. */
static void body_timeout(struct hs_conn *c)
{
    long long now, ceiling;
    if (c->srv->lim.idle_timeout_ms <= 0)
        return;
    now = now_us();
    ceiling = now + idle_us(c->srv);
    c->body_deadline_us +=
        (long long)(c->req.body_len - c->body_credited) * 1000000 / BODY_MIN_RATE;
    c->body_credited = c->req.body_len;
    if (c->body_deadline_us > ceiling)
        c->body_deadline_us = ceiling;
    read_by(c, now, c->body_deadline_us);
}

/* The answer is sent and the sending side shut: what the client still sends
 * is read and dropped until its EOF, so that it reads the answer rather than
 * a reset, but LINGER_MS at most, however it trickles in (the read timeout
 * alone restarts with every byte: a client sending a byte a second would
 * hold the connection for ever). */
static void linger_timeout(struct hs_conn *c)
{
    long long left = c->linger_end_us - now_us();
    struct timeval tv;
    if (left < 1)
        left = 1;
    tv = us_tv(left);
    bufferevent_set_timeouts(c->bev, &tv, NULL);
}

static void set_read_timeout(struct hs_conn *c, int on)
{
    struct timeval tv, wtv;
    int ms = c->srv->lim.idle_timeout_ms;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    wtv = tv;
    if (c->state == C_CLOSING) {
        tv.tv_sec = LINGER_MS / 1000;
        tv.tv_usec = (LINGER_MS % 1000) * 1000;
    }
    bufferevent_set_timeouts(c->bev, on && ms > 0 ? &tv : NULL, ms > 0 ? &wtv : NULL);
}

/* Whether a request's head is in and its body is still being read: a
 * Content-Length body, or any part of a chunked one (its size lines, data,
 * the CRLF after each chunk, trailers). */
static int reading_body(const struct hs_conn *c)
{
    switch (c->state) {
    case C_BODY:
    case C_CHUNK_SIZE:
    case C_CHUNK_DATA:
    case C_CHUNK_CRLF:
    case C_TRAILER:
        return 1;
    default:
        return 0;
    }
}

static void req_reset(struct hs_req *r)
{
    struct hs_conn *c = r->conn;
    struct evbuffer *h = r->resp_headers;
    free(r->head);
    free(r->path);
    free(r->target_own);
    free(r->body);
    if (h)
        evbuffer_drain(h, evbuffer_get_length(h));
    memset(r, 0, sizeof *r);
    r->conn = c;
    r->resp_headers = h;
}

/* Run the callbacks of the tracked responses written whole; with all set,
 * also of the rest (delivered 0). */
static void sent_run(struct hs_conn *c, int all)
{
    while (c->sent_first && (all || c->out_written >= c->sent_first->end)) {
        struct sent_watch *w = c->sent_first;
        c->sent_first = w->next;
        if (!c->sent_first)
            c->sent_last = NULL;
        w->sent(w->arg, c->out_written >= w->end);
        free(w);
    }
}

static void sent_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sent_run(arg, 0);
}

/* The output buffer changed: what was written is what left it. A tracked
 * response now written has its callback run from the loop, never from
 * inside the call that queued or wrote it. */
static void out_count(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct hs_conn *c = arg;
    c->out_added += info->n_added;
    c->out_written += info->n_deleted;
    if (info->n_deleted > 0 || (info->orig_size == 0 && info->n_added > 0))
        c->out_progress_us = now_us();
    /* Bytes written: what the kernel sends of them from now on, the client
     * may take only by reading (out_taken()). Looked at only while more
     * output waits for room, the case a slow reader makes: a look is a
     * system call, and on every write it cost a saturated gateway about 4%
     * of its requests a second (12 alternating wrk pairs). A mark left from
     * an earlier look only errs toward counting progress, once: the check
     * that counts it takes a fresh mark. */
    if (info->n_deleted > 0 && evbuffer_get_length(buf) > 0) {
        unsigned long long sent;
        if (out_kernel_count(c, NULL, &sent) == 0)
            c->out_sent_mark = sent;
    }
    if (c->sent_first && c->out_written >= c->sent_first->end && c->sent_ev)
        event_active(c->sent_ev, EV_TIMEOUT, 1);
}

static void conn_free(struct hs_conn *c)
{
    struct hs_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    if (c->out_deadline)
        event_free(c->out_deadline);
    if (c->sent_ev)
        event_free(c->sent_ev);
    sent_run(c, 1); /* the rest were not written whole: the client never took them */
    bufferevent_free(c->bev);
    req_reset(&c->req);
    if (c->req.resp_headers)
        evbuffer_free(c->req.resp_headers);
    free(c);
    /* A descriptor and a slot are free again: a paused listener need not wait. */
    if (s->fd_wait && s->accept_resume && evtimer_pending(s->accept_resume, NULL))
        evtimer_del(s->accept_resume);
    s->fd_wait = 0;
    listener_update(s);
}

/* The client is gone or the connection failed: tell the caller if it holds
 * the request, then free. */
static void conn_drop(struct hs_conn *c)
{
    if (c->state == C_HANDLING) {
        void (*abort_cb)(void *) = c->req.on_abort;
        void *arg = c->req.cb_arg;
        c->srv->busy--;
        c->state = C_CLOSING;
        if (abort_cb)
            abort_cb(arg);
    }
    conn_free(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct hs_server *s = arg;
    struct hs_conn *c;
    int one = 1;
    (void)l;
    (void)sa;
    (void)socklen;

    if (s->draining) {
        evutil_closesocket(fd);
        return;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* One descriptor freed lets one client in, and the next accept() fails
     * again: the pause is over only once they have not run out for a while
     * (as at the cap), so it is logged and counted once, not per client. */
    if (s->accept_paused && mono_ms() - s->fd_fail_ms >= CAP_QUIET_MS)
        s->accept_paused = 0;
    c->srv = s;
    c->req.conn = c;
    c->out_progress_us = now_us();
    c->req.resp_headers = evbuffer_new();
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev || !c->req.resp_headers) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->req.resp_headers)
            evbuffer_free(c->req.resp_headers);
        free(c);
        return;
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    listener_update(s); /* at the cap, the next clients wait in the backlog */
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    evbuffer_add_cb(bufferevent_get_output(c->bev), out_count, c);
    /* Bound what a client may queue while its request is handled. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, s->lim.max_head_bytes + 65536);
    bufferevent_setwatermark(c->bev, EV_WRITE, s->lim.out_high_water / 4, 0);
    set_read_timeout(c, 1);
    /* A new bufferevent writes by itself; here EV_WRITE is only for a backlog
     * (flush_out). */
    bufferevent_disable(c->bev, EV_WRITE);
    bufferevent_enable(c->bev, EV_READ);
}

/* ==== Accepting: the connection cap and running out of descriptors ==== */


/* Enable the listener when a client may be accepted now, disable it when
 * not: while stopping, after accept() ran out of descriptors (until the
 * resume timer or a closed connection), and with max_conns open. A disabled
 * listener leaves the clients in the kernel's backlog: they are accepted,
 * in order, once it is enabled again. Every change of the count and of
 * those states comes through here.
 *
 * A pause at the cap is logged when it begins, and its end once
 * CAP_QUIET_MS have passed without the cap being reached again (cap_quiet):
 * a server that stays at its cap, one client leaving and the next accepted,
 * logs one pause and not one for every connection. Accepting resumes at
 * every free slot all the same. */
static void listener_update(struct hs_server *s)
{
    int full = s->max_conns && s->n_conns >= s->max_conns;
    int want;

    if (!s->listener || s->draining)
        return;
    if (full && !s->at_cap) {
        s->at_cap = 1;
        s->cap_since_ms = mono_ms();
        s->cap_pauses = 0;
        s->cap_episodes++;
        fprintf(stderr,
                "{\"event\":\"accept_paused\",\"message\":\"%zu client connections open, the "
                "cap (server.max_connections); new clients wait in the listen backlog until "
                "one closes\"}\n",
                s->n_conns);
    }
    if (full && s->listening) {
        s->cap_last_ms = mono_ms();
        s->cap_pauses++;
    }
    if (!full && s->at_cap && s->cap_quiet && !evtimer_pending(s->cap_quiet, NULL)) {
        struct timeval tv = {CAP_QUIET_MS / 1000, (CAP_QUIET_MS % 1000) * 1000};
        evtimer_add(s->cap_quiet, &tv);
    }
    want = !full && !s->fd_wait;
    if (want == s->listening)
        return;
    if (want)
        evconnlistener_enable(s->listener);
    else
        evconnlistener_disable(s->listener);
    s->listening = want;
}

static void cap_quiet_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hs_server *s = arg;
    long long now = mono_ms(), quiet = now - s->cap_last_ms;
    (void)fd;
    (void)what;

    /* At the cap again: listener_update() arms this again when it is left. */
    if (!s->at_cap || !s->listener || s->draining || (s->max_conns && s->n_conns >= s->max_conns))
        return;
    if (quiet < CAP_QUIET_MS) {
        struct timeval tv = {0, 0};
        long long wait = CAP_QUIET_MS - quiet;
        tv.tv_sec = (time_t)(wait / 1000);
        tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
        evtimer_add(s->cap_quiet, &tv);
        return;
    }
    s->at_cap = 0;
    fprintf(stderr,
            "{\"event\":\"accept_resumed\",\"message\":\"%zu client connections open; the "
            "cap (%zu) not reached for %d ms; it was first reached %lld ms ago, and %llu times "
            "in all\"}\n",
            s->n_conns, s->max_conns, CAP_QUIET_MS, now - s->cap_since_ms,
            (unsigned long long)s->cap_pauses);
}

/* accept() failed. Out of file descriptors (or memory) the connection stays
 * in the backlog and the listener stays readable: left enabled it would be
 * called again at once, a loop that burns a core while the descriptors are
 * held. So accepting pauses for a moment, and resumes on a timer (or as soon
 * as a connection closes); the waiting clients are accepted then. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct hs_server *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    (void)l;

    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return; /* a connection that failed before it was accepted: nothing to do */
    if (!s->accept_paused) {
        s->fd_episodes++;
        fprintf(stderr,
                "{\"event\":\"accept_paused\",\"message\":\"cannot accept connections: %s "
                "(%zu open); retrying every %d ms\"}\n",
                evutil_socket_error_to_string(err), s->n_conns, ACCEPT_PAUSE_MS);
    }
    s->accept_paused = 1;
    s->fd_fail_ms = mono_ms();
    s->fd_wait = 1;
    listener_update(s);
    if (s->accept_resume)
        evtimer_add(s->accept_resume, &tv);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hs_server *s = arg;
    (void)fd;
    (void)what;
    s->fd_wait = 0;
    listener_update(s);
}

void hs_server_set_max_connections(struct hs_server *srv, size_t max)
{
    srv->max_conns = max;
    listener_update(srv);
}

void hs_server_conn_stats(const struct hs_server *srv, struct hs_conn_stats *st)
{
    st->open = srv->n_conns;
    st->max = srv->max_conns;
    st->cap_pauses = srv->cap_episodes;
    st->descriptor_pauses = srv->fd_episodes;
}

/* ==== Responses ==== */

/* A response to HEAD has the head a GET would get (its Content-Length
 * included) and no body (RFC 9110, 9.3.2). */
static int head_only(const struct hs_req *r)
{
    return r->method && strcmp(r->method, "HEAD") == 0;
}

/* A status whose response has no content (RFC 9110, 15.2, 15.3.5, 15.4.5):
 * no body, no Content-Length or Transfer-Encoding (which a 1xx or 204 must
 * not have, and which for a 304 would describe another response), and for
 * a 1xx or 204 no Content-Type. */
static int no_content(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* The Date header's value, an IMF-fixdate (RFC 9110 section 5.6.7), made
 * once a second. An origin server with a clock sends one in every 2xx, 3xx
 * and 4xx response, and may in a 5xx (section 6.6.1); the gateway is the
 * origin for its clients. The names are spelt out: strftime's %a and %b
 * follow the locale. */
static const char *http_date(struct hs_server *s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    if (now == s->date_at && s->date[0])
        return s->date;
    if (!gmtime_r(&now, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11)
        return s->date;
    /* Each field cut to its width (gmtime's are within it), so that the
     * compiler sees the date fit. */
    snprintf(s->date, sizeof s->date, "%s, %02u %s %04u %02u:%02u:%02u GMT", days[tm.tm_wday],
             (unsigned)tm.tm_mday % 100u, months[tm.tm_mon],
             (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)tm.tm_hour % 100u,
             (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
    s->date_at = now;
    return s->date;
}

/* Write what is queued now; leave a backlog to the write event. */
static void flush_out(struct hs_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0)
        return;
    /* A failed write leaves the bytes queued: the write event meets the
     * error and event_cb drops the connection. */
    if (!(bufferevent_get_enabled(c->bev) & EV_WRITE)) {
        /* A socket bufferevent keeps its output's start frozen so that only
         * it drains it; it thaws it around its own writes, and so do we. */
        evbuffer_unfreeze(out, 1);
        evbuffer_write(out, bufferevent_getfd(c->bev));
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(c->bev, EV_WRITE);
}

static void write_head(struct hs_req *r, int status, const char *content_type, long long length)
{
    struct evbuffer *out = bufferevent_get_output(r->conn->bev);
    if (r->conn->srv->draining)
        r->keep_alive = 0;
    int bodyless = no_content(status);
    const char *date = http_date(r->conn->srv);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, hs_reason(status));
    if (date[0]) {
        evbuffer_add(out, "Date: ", 6);
        evbuffer_add(out, date, strlen(date));
        evbuffer_add(out, "\r\n", 2);
    }
    if (content_type && (!bodyless || status == 304)) {
        evbuffer_add(out, "Content-Type: ", 14);
        evbuffer_add(out, content_type, strlen(content_type));
        evbuffer_add(out, "\r\n", 2);
    }
    evbuffer_add_buffer(out, r->resp_headers);
    if (bodyless) {
        /* no content: the response ends with its head */
    } else if (length >= 0) {
        char cl[48];
        int n = snprintf(cl, sizeof cl, "Content-Length: %lld\r\n", length);
        evbuffer_add(out, cl, n > 0 ? (size_t)n : 0);
    } else if (r->minor >= 1)
        evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
    else
        r->keep_alive = 0; /* an HTTP/1.0 stream ends when the connection does */
    if (!r->keep_alive)
        evbuffer_add_printf(out, "Connection: close\r\n\r\n");
    else if (r->minor == 0)
        evbuffer_add_printf(out, "Connection: keep-alive\r\n\r\n");
    else
        evbuffer_add(out, "\r\n", 2);
}

static void process_input(struct hs_conn *c);

/* How many bytes the input starts with that are empty lines (CRLFs), which
 * are no request (RFC 9112 section 2.2); *lone_cr tells whether a CR alone
 * follows them at the input's end, the start of one more. */
static size_t blank_prefix(struct evbuffer *in, int *lone_cr)
{
    size_t len = evbuffer_get_length(in), n = 0;
    unsigned char two[2];
    *lone_cr = 0;
    while (n < len) {
        struct evbuffer_ptr at;
        evbuffer_ptr_set(in, &at, n, EVBUFFER_PTR_SET);
        if (evbuffer_copyout_from(in, &at, two, len - n < 2 ? 1 : 2) < 1 || two[0] != '\r')
            break;
        if (len - n < 2) {
            *lone_cr = 1;
            break;
        }
        if (two[1] != '\n')
            break;
        n += 2;
    }
    return n;
}

/* Whether the input holds nothing but empty lines: no request has begun,
 * so while draining the connection is as idle as one with no input. */
static int input_blank(struct hs_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    int lone_cr;
    size_t n = blank_prefix(in, &lone_cr);
    return n + (size_t)lone_cr == evbuffer_get_length(in);
}

/* Whether the input holds a whole request head (its body may still be due).
 * Empty lines before it are none: two of them are no head's end. */
static int head_buffered(struct hs_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_ptr start, p;
    int lone_cr;
    evbuffer_ptr_set(in, &start, blank_prefix(in, &lone_cr), EVBUFFER_PTR_SET);
    p = evbuffer_search(in, "\r\n\r\n", 4, &start);
    return p.pos >= 0;
}

/* The response is complete: next request, or close. While draining the
 * connection closes, unless this answer promised to keep it open (its head
 * went out before the drain began) and the client has already sent the
 * head of its next request: that request is served as any other, within
 * the shutdown deadline, and its answer says Connection: close (a request
 * sent after an answer that says so may go unanswered, the client knows). */
static void req_complete(struct hs_req *r)
{
    struct hs_conn *c = r->conn;
    int keep = r->keep_alive && (!c->srv->draining || head_buffered(c));

    if (c->state == C_HANDLING)
        c->srv->busy--;
    req_reset(r);
    if (!keep) {
        c->state = C_CLOSING;
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        set_read_timeout(c, 1);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            write_cb(c->bev, c);
        return;
    }
    c->state = C_HEAD;
    set_read_timeout(c, 1);
    /* A pipelined request may already be waiting. */
    if (!c->in_read && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_OPT_DEFER_CALLBACKS);
}

void hs_resp_header(struct hs_req *req, const char *name, const char *value)
{
    /* Copied in pieces: a printf per header was a visible cost per response. */
    evbuffer_add(req->resp_headers, name, strlen(name));
    evbuffer_add(req->resp_headers, ": ", 2);
    evbuffer_add(req->resp_headers, value, strlen(value));
    evbuffer_add(req->resp_headers, "\r\n", 2);
}

void hs_respond(struct hs_req *req, int status, const char *content_type, const char *body,
                size_t len)
{
    struct evbuffer *out = bufferevent_get_output(req->conn->bev);
    write_head(req, status, content_type, (long long)len);
    if (len && !head_only(req) && !no_content(status))
        evbuffer_add(out, body, len);
    flush_out(req->conn);
    req_complete(req);
}

int hs_respond_tracked(struct hs_req *req, int status, const char *content_type,
                       const char *body, size_t len, void (*sent)(void *arg, int delivered),
                       void *arg)
{
    struct hs_conn *c = req->conn;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct sent_watch *w = malloc(sizeof *w);
    if (w && !c->sent_ev)
        c->sent_ev = event_new(c->srv->base, -1, 0, sent_ev_cb, c);
    if (!w || !c->sent_ev) {
        free(w);
        hs_respond(req, status, content_type, body, len);
        return -1;
    }
    write_head(req, status, content_type, (long long)len);
    if (len && !head_only(req) && !no_content(status))
        evbuffer_add(out, body, len);
    w->next = NULL;
    w->end = c->out_added;
    w->sent = sent;
    w->arg = arg;
    if (c->sent_last)
        c->sent_last->next = w;
    else
        c->sent_first = w;
    c->sent_last = w;
    flush_out(c);
    req_complete(req);
    return 0;
}

void hs_stream_begin(struct hs_req *req, int status, const char *content_type)
{
    write_head(req, status, content_type, -1);
    req->streaming = 1;
    flush_out(req->conn);
}

int hs_stream_write(struct hs_req *req, const void *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(req->conn->bev);
    /* A HEAD that resumes a stream gets its head alone, as any HEAD does:
     * the body's chunks would be read as the next response's head. */
    if (len && !head_only(req)) {
        if (req->minor >= 1)
            evbuffer_add_printf(out, "%zx\r\n", len);
        evbuffer_add(out, data, len);
        if (req->minor >= 1)
            evbuffer_add(out, "\r\n", 2);
        flush_out(req->conn);
    }
    if (evbuffer_get_length(out) > req->conn->srv->lim.out_high_water) {
        req->want_drain = 1;
        return 1;
    }
    return 0;
}

size_t hs_req_pending_output(const struct hs_req *req)
{
    return evbuffer_get_length(bufferevent_get_output(req->conn->bev));
}

void hs_req_want_drain(struct hs_req *req)
{
    req->want_drain = 1;
}

void hs_stream_end(struct hs_req *req)
{
    if (req->minor >= 1 && !head_only(req))
        evbuffer_add(bufferevent_get_output(req->conn->bev), "0\r\n\r\n", 5);
    flush_out(req->conn);
    req_complete(req);
}

void hs_req_watch(struct hs_req *req, void (*on_drain)(void *arg), void (*on_abort)(void *arg),
                  void *arg)
{
    req->on_drain = on_drain;
    req->on_abort = on_abort;
    req->cb_arg = arg;
}

/* An error the server answers itself, before any handler: the connection
 * closes after it, since the rest of the input cannot be trusted. */
/* The request is refused with `body` (a JSON error of n bytes); the refused
 * callback hears `message`. */
static void fail_request_body(struct hs_conn *c, int status, const char *message,
                              const char *body, size_t n)
{
    struct hs_req *r = &c->req;
    r->keep_alive = 0;
    if (r->minor == 0 && !r->method)
        r->minor = 1;
    c->state = C_CLOSING; /* not a handled request: busy is not counted */
    if (c->srv->refused)
        c->srv->refused(r, status, message, c->srv->arg);
    write_head(r, status, "application/json", (long long)n);
    if (!head_only(r))
        evbuffer_add(bufferevent_get_output(c->bev), body, n);
    flush_out(c);
    req_complete(r);
}

static void fail_request(struct hs_conn *c, int status, const char *message)
{
    char body[1024];
    size_t n = c->srv->error_body(body, sizeof body, status, message);
    fail_request_body(c, status, message, body, n);
}

/* A 413's message, naming the cap the body passed and where it is set (in
 * r->why). */
static const char *body_too_large(struct hs_req *r)
{
    snprintf(r->why, sizeof r->why,
             "request body too large: over server.max_body_bytes (%zu bytes)", r->max_body);
    return r->why;
}

/* How much of the body being read has come (reading_body()), as the end
 * of a sentence "it had brought ...": a client whose Content-Length says
 * more than it sends, or whose chunked body lacks its last chunk, learns
 * that this is what the server waited for. */
static void body_progress(const struct hs_conn *c, char *buf, size_t cap)
{
    const struct hs_req *r = &c->req;
    switch (c->state) {
    case C_BODY:
        snprintf(buf, cap, "%zu of the %zu bytes its Content-Length announced", r->body_len,
                 r->body_len + r->remaining);
        break;
    case C_TRAILER:
        snprintf(buf, cap, "its last chunk but not the empty line that ends the trailer "
                           "section");
        break;
    default:
        snprintf(buf, cap, "%zu bytes of chunked data and no last chunk (0)", r->body_len);
        break;
    }
}

/* ==== Parsing ==== */

static int is_tchar(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* What is wrong with a field line line[0..n) of a head or a trailer section
 * (its CRLF gone), by RFC 9112 section 5 and RFC 9110 section 5.5: folded
 * (obs-fold), no colon or nothing before it, a name that is not a token, or
 * a control character other than HTAB in the value (a lone CR, a VT or an
 * FF is read as white space or as a line's end by some parsers: passed on,
 * such a value could mean another thing to a proxy in front than here;
 * strtoll skipped them before the digits of a Content-Length). *colon is
 * set to the colon's offset when there is one. */
enum field_fault { FIELD_OK, FIELD_FOLDED, FIELD_NO_COLON, FIELD_BAD_NAME, FIELD_CONTROL };

static enum field_fault field_line_fault(const char *line, size_t n, size_t *colon)
{
    const char *c = memchr(line, ':', n);
    if (n > 0 && (line[0] == ' ' || line[0] == '\t'))
        return FIELD_FOLDED;
    if (!c || c == line)
        return FIELD_NO_COLON;
    *colon = (size_t)(c - line);
    for (const char *p = line; p < c; p++)
        if (!is_tchar((unsigned char)*p))
            return FIELD_BAD_NAME;
    for (const char *p = c + 1; p < line + n; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return FIELD_CONTROL;
    return FIELD_OK;
}

/* Parse the head in r->head (NUL-terminated, CRLF line ends). Returns 0, or
 * an HTTP status with *why set. */
static int parse_head(struct hs_req *r, const char **why)
{
    char *p = r->head, *line_end, *sp;

    /* Empty lines before the request line were dropped before the head
     * was looked for (process_bytes(), MAX_BLANK_LINES): one here is past them. */
    line_end = strstr(p, "\r\n");
    if (!line_end) {
        *why = "malformed request line";
        return 400;
    }
    *line_end = '\0';
    /* METHOD SP target SP HTTP/1.x */
    sp = strchr(p, ' ');
    if (!sp || sp == p) {
        *why = "malformed request line";
        return 400;
    }
    *sp = '\0';
    for (char *m = p; *m; m++)
        if (!is_tchar((unsigned char)*m)) {
            *why = "malformed request method";
            return 400;
        }
    r->method = p;
    p = sp + 1;
    sp = strchr(p, ' ');
    if (!sp || sp == p || strchr(sp + 1, ' ')) {
        *why = "malformed request line";
        return 400;
    }
    *sp = '\0';
    r->target = p;
    /* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112, 2.3): a later 1.x
     * is served as 1.1, its highest version the server has (RFC 9110,
     * 6.2); another major version is 505. Read before the target: HTTP/2's
     * connection preface, "PRI * HTTP/2.0", which a client with prior
     * knowledge sends, is told that HTTP/2 is not served, not that "*" is
     * no path. */
    const char *ver = sp + 1;
    if (strncmp(ver, "HTTP/", 5) != 0 || !isdigit((unsigned char)ver[5]) || ver[6] != '.' ||
        !isdigit((unsigned char)ver[7]) || ver[8]) {
        *why = "malformed HTTP version (HTTP/1.0 and HTTP/1.1 are served)";
        return 400;
    }
    if (ver[5] != '1') {
        snprintf(r->why, sizeof r->why,
                 "unsupported HTTP version %s (HTTP/1.0 and HTTP/1.1 are served)", ver);
        *why = r->why;
        return 505;
    }
    r->minor = ver[7] == '0' ? 0 : 1;
    /* The absolute-form ("http://host:port/path?query"), which RFC 9112
     * 3.2.2 has a server accept: what follows the authority is read as an
     * origin-form target, its path and query, and an empty path is "/"
     * ("http://host?x" is "/?x": the query is kept). But OPTIONS with an
     * empty path and no query ("http://host") asks about the server as a
     * whole, as section 3.2.4 has it: the target is "*", the asterisk-form
     * a proxy would forward it in ("http://host/" stays "/"). */
    if (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0) {
        char *auth = strstr(p, "://") + 3, *slash = auth + strcspn(auth, "/?#");
        if (slash == auth) {
            *why = "the request target's absolute form has no host";
            return 400;
        }
        if (*slash == '/') {
            r->target = slash;
        } else if (*slash == '\0' && strcmp(r->method, "OPTIONS") == 0) {
            r->target_own = strdup("*");
            if (!r->target_own) {
                *why = "out of memory";
                return 500;
            }
            r->target = r->target_own;
        } else {
            size_t n = strlen(slash) + 2;
            r->target_own = malloc(n);
            if (!r->target_own) {
                *why = "out of memory";
                return 500;
            }
            snprintf(r->target_own, n, "/%s", slash);
            r->target = r->target_own;
        }
    } else if (strcmp(p, "*") == 0) {
        /* The asterisk-form, RFC 9112 section 3.2.4: the server as a whole,
         * asked about by OPTIONS and no other method. Its path is "*". */
        if (strcmp(r->method, "OPTIONS") != 0) {
            *why = "the request target * (the asterisk-form) is for OPTIONS alone";
            return 400;
        }
    } else if (p[0] != '/') {
        *why = "the request target must be an absolute path or an absolute URI";
        return 400;
    }
    for (char *t = p; *t; t++)
        if ((unsigned char)*t < 0x20 || *t == 0x7f) {
            *why = "a control character in the request target";
            return 400;
        }
    r->path = strdup(r->target);
    if (!r->path) {
        *why = "out of memory";
        return 500;
    }
    r->path[strcspn(r->path, "?#")] = '\0';

    for (p = line_end + 2; *p; p = line_end + 2) {
        char *colon, *v, *e;
        size_t at = 0;
        enum field_fault fault;
        line_end = strstr(p, "\r\n");
        if (!line_end) {
            *why = "malformed header line";
            return 400;
        }
        if (line_end == p)
            break; /* the empty line that ends the head */
        *line_end = '\0';
        fault = field_line_fault(p, (size_t)(line_end - p), &at);
        if (fault == FIELD_FOLDED) {
            *why = "folded header lines are not accepted";
            return 400;
        }
        if (fault == FIELD_NO_COLON) {
            snprintf(r->why, sizeof r->why, "malformed header line '%.80s' (no colon after a name)",
                     p);
            *why = r->why;
            return 400;
        }
        if (fault == FIELD_BAD_NAME) {
            snprintf(r->why, sizeof r->why,
                     "malformed header name '%.*s' (a token, the colon right after it)",
                     (int)(at < 80 ? at : 80), p);
            *why = r->why;
            return 400;
        }
        if (r->n_hdr >= MAX_HEADERS) {
            *why = "too many header fields (over 100)";
            return 431;
        }
        colon = p + at;
        *colon = '\0';
        if (fault == FIELD_CONTROL) {
            snprintf(r->why, sizeof r->why, "a control character in the value of header %.100s",
                     p);
            *why = r->why;
            return 400;
        }
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        e = v + strlen(v);
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        r->hdr[r->n_hdr].name = p;
        r->hdr[r->n_hdr].value = v;
        r->n_hdr++;
    }
    return 0;
}

static int token_in_list(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *p = list;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (strncasecmp(p, token, tl) == 0 &&
            (p[tl] == '\0' || p[tl] == ',' || p[tl] == ' ' || p[tl] == '\t'))
            return 1;
        p = strchr(p, ',');
    }
    return 0;
}

/* An Expect field value: a list of expectations, of which RFC 9110
 * section 10.1.1 defines 100-continue alone (case-insensitive, no
 * parameters). Sets *cont when it is there. Returns 0, or 417 for any other
 * member, as a server that does not meet an expectation may answer. */
static int expectations(const char *list, int *cont)
{
    const char *p = list;
    for (;;) {
        const char *end;
        size_t n;
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            return 0;
        end = p + strcspn(p, ",");
        n = (size_t)(end - p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n != 12 || strncasecmp(p, "100-continue", 12) != 0)
            return 417;
        *cont = 1;
        p = end;
    }
}

/* A Host value is uri-host [ ":" port ] (RFC 9110 section 7.2): a
 * registered name (unreserved, pct-encoded, sub-delims), an IPv4 address or
 * a bracketed IP literal, then digits. Empty is allowed (a target without
 * an authority). No user info, path, query or white space. */
static int host_ok(const char *v)
{
    const char *p = v;
    if (*p == '[') {
        for (p++; *p && *p != ']'; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.' && *p != 'v' &&
                *p != 'V' && !strchr("-_~!$&'()*+,;=", *p))
                return 0;
        if (*p++ != ']')
            return 0;
    } else {
        for (; *p && *p != ':'; p++)
            if (!isalnum((unsigned char)*p) && !strchr("-._~%!$&'()*+,;=", *p))
                return 0;
    }
    if (*p == ':')
        for (p++; *p; p++)
            if (*p < '0' || *p > '9')
                return 0;
    return *p == '\0';
}

/* After the head: decide how the body comes. Returns 0 or an HTTP status. */
static int start_body(struct hs_conn *c, const char **why)
{
    struct hs_req *r = &c->req;
    const char *te = NULL, *cl = NULL, *host = NULL;
    size_t max_body = c->srv->lim.max_body_bytes;
    int announced, conn_close = 0, conn_keep = 0, expect_continue = 0, auth = 0;

    r->max_body = max_body;
    for (int i = 0; i < r->n_hdr; i++) {
        if (strcasecmp(r->hdr[i].name, "Host") == 0) {
            if (host) {
                *why = "repeated Host header";
                return 400;
            }
            host = r->hdr[i].value;
            if (!host_ok(host)) {
                snprintf(r->why, sizeof r->why, "malformed Host header '%.100s'", host);
                *why = r->why;
                return 400;
            }
        } else if (strcasecmp(r->hdr[i].name, "Connection") == 0) {
            /* RFC 9110 section 7.6.1: every Connection field line is part
             * of one list; the first alone would miss a "close" in another. */
            conn_close |= token_in_list(r->hdr[i].value, "close");
            conn_keep |= token_in_list(r->hdr[i].value, "keep-alive");
        } else if (strcasecmp(r->hdr[i].name, "Expect") == 0) {
            int st = expectations(r->hdr[i].value, &expect_continue);
            if (st) {
                snprintf(r->why, sizeof r->why,
                         "unsupported expectation in Expect: %.100s (only 100-continue is)",
                         r->hdr[i].value);
                *why = r->why;
                return st;
            }
        } else if (strcasecmp(r->hdr[i].name, "Authorization") == 0) {
            /* One credential per request (RFC 9110 section 11.6.2): of two,
             * a proxy in front may have checked the one not used here. */
            if (auth++) {
                *why = "repeated Authorization header";
                return 400;
            }
        } else if (strcasecmp(r->hdr[i].name, "Transfer-Encoding") == 0) {
            if (te) {
                *why = "repeated Transfer-Encoding";
                return 400;
            }
            te = r->hdr[i].value;
        } else if (strcasecmp(r->hdr[i].name, "Content-Length") == 0) {
            if (cl && strcmp(cl, r->hdr[i].value) != 0) {
                snprintf(r->why, sizeof r->why, "conflicting Content-Length headers: '%.60s' and "
                         "'%.60s'", cl, r->hdr[i].value);
                *why = r->why;
                return 400;
            }
            cl = r->hdr[i].value;
        }
    }
    /* RFC 9112 section 3.2: an HTTP/1.1 request without a Host header, or
     * with two, or with one that is not an authority, is answered 400
     * (as nginx and Apache do). The gateway does not use Host, but a proxy
     * in front may have read such a request as another one than here. */
    if (!host && r->minor >= 1) {
        *why = "missing Host header (HTTP/1.1 requires one)";
        return 400;
    }
    if (r->minor >= 1)
        r->keep_alive = !conn_close;
    else
        r->keep_alive = conn_keep && !conn_close;

    /* RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has
     * faulty framing, whatever else it says (an HTTP/1.0 proxy in front may
     * not have read it as chunked): refused, and the connection closed. */
    if (te && r->minor == 0) {
        *why = "Transfer-Encoding in an HTTP/1.0 request";
        return 400;
    }
    if (te && cl) {
        *why = "both Transfer-Encoding and Content-Length";
        return 400;
    }
    if (te) {
        if (strcasecmp(te, "chunked") != 0) {
            /* RFC 9112 6.1 and 6.3: chunked not last (or not there) leaves
             * the body's length unknown, 400; chunked last after codings
             * this server does not decode (gzip, chunked) is 501. */
            const char *last = strrchr(te, ',');
            last = last ? last + 1 : te;
            while (*last == ' ' || *last == '\t')
                last++;
            if (last != te && strcasecmp(last, "chunked") == 0 &&
                strncasecmp(te, "chunked", 7) != 0) {
                snprintf(r->why, sizeof r->why,
                         "unsupported transfer coding before chunked in Transfer-Encoding "
                         "'%.100s' (only chunked is decoded)", te);
                *why = r->why;
                return 501;
            }
            snprintf(r->why, sizeof r->why, "unsupported Transfer-Encoding '%.100s' (only chunked)",
                     te);
            *why = r->why;
            return 400;
        }
        c->state = C_CHUNK_SIZE;
    } else if (cl) {
        /* RFC 9110 section 8.6: 1*DIGIT, its blanks gone with the field's
         * (parse_head). No sign, and nothing skipped before the digits, as
         * strtoll would. */
        unsigned long long n = 0;
        if (!*cl || cl[strspn(cl, "0123456789")]) {
            snprintf(r->why, sizeof r->why, "malformed Content-Length '%.100s' (digits alone)",
                     cl);
            *why = r->why;
            return 400;
        }
        for (const char *d = cl; *d; d++) {
            if (n > (ULLONG_MAX - 9) / 10)
                n = ULLONG_MAX; /* over any cap */
            else
                n = n * 10 + (unsigned long long)(*d - '0');
        }
        if (n > max_body) {
            *why = body_too_large(r);
            return 413;
        }
        r->remaining = (size_t)n;
        c->state = C_BODY;
    } else {
        r->remaining = 0;
        c->state = C_BODY;
    }
    r->body_cap = c->state == C_BODY && r->remaining ? r->remaining : 4096;
    /* A body is announced: before a byte of it is read (or invited with
     * 100 Continue), the handler may refuse the request on its head alone.
     * Read first, a body would let a client with no key hold memory and a
     * connection for as long as the body may take (body_timeout). */
    announced = c->state != C_BODY || r->remaining > 0;
    r->body_announced = announced;
    if (announced && c->srv->head_refuses && c->srv->head_refuses(r, c->srv->arg)) {
        c->answer_early = 1;
        r->body_cap = 0;
    }
    r->body = malloc(r->body_cap + 1);
    if (!r->body) {
        *why = "out of memory";
        return 500;
    }
    /* RFC 9110 section 10.1.1: 100-continue in an HTTP/1.0 request is ignored. */
    if (announced && !c->answer_early && expect_continue && r->minor >= 1) {
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        flush_out(c);
    }
    return 0;
}

static int body_append(struct hs_conn *c, struct evbuffer *in, size_t n)
{
    struct hs_req *r = &c->req;
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap * 2;
        char *b;
        while (cap < r->body_len + n)
            cap *= 2;
        if (cap > r->max_body)
            cap = r->max_body;
        if (cap < r->body_len + n) /* the callers keep bodies within max_body */
            return -1;
        b = realloc(r->body, cap + 1);
        if (!b)
            return -1;
        r->body = b;
        r->body_cap = cap;
    }
    evbuffer_remove(in, r->body + r->body_len, n);
    r->body_len += n;
    return 0;
}

static void dispatch(struct hs_conn *c)
{
    c->req.body[c->req.body_len] = '\0';
    c->state = C_HANDLING;
    c->srv->busy++;
    set_read_timeout(c, 0);
    c->srv->handler(&c->req, c->srv->arg);
}

/* Look for the end of the head ("\r\n\r\n") in the first `limit` bytes of
 * the input, going on from where the last call stopped: a head that trickles
 * in a byte at a time is scanned once, not once per read. An LF that does not
 * follow a CR is refused at once (RFC 9112 section 2.2 lets a server reject
 * it), so a client using bare LF line ends gets an answer instead of waiting
 * for an end that never comes. Returns 1 with *head_len set when the end is
 * found, 0 when more bytes are needed, -1 at a bare LF. */
static int head_scan(struct hs_conn *c, struct evbuffer *in, size_t limit, size_t *head_len)
{
    struct evbuffer_ptr at;
    struct evbuffer_iovec vec[8];
    int m = c->head_matched;

    while (c->head_scanned < limit) {
        int n;
        if (evbuffer_ptr_set(in, &at, c->head_scanned, EVBUFFER_PTR_SET) < 0)
            break;
        n = evbuffer_peek(in, (ev_ssize_t)(limit - c->head_scanned), &at, vec, 8);
        if (n <= 0)
            break;
        for (int i = 0; i < n && i < 8 && c->head_scanned < limit; i++) {
            const unsigned char *b = vec[i].iov_base;
            size_t len = vec[i].iov_len;
            if (len > limit - c->head_scanned)
                len = limit - c->head_scanned;
            for (size_t j = 0; j < len; j++) {
                /* m counts the bytes of "\r\n\r\n" matched so far: after a CR
                 * it is odd, so an LF with m even follows no CR. */
                if (b[j] == '\n') {
                    if (!(m & 1)) {
                        c->head_matched = m;
                        return -1;
                    }
                    m++;
                } else {
                    m = b[j] == '\r' ? (m == 2 ? 3 : 1) : 0;
                }
                c->head_scanned++;
                if (m == 4) {
                    *head_len = c->head_scanned;
                    c->head_matched = 0;
                    return 1;
                }
            }
        }
    }
    c->head_matched = m;
    return 0;
}

/* Skip BWS (RFC 9110 section 5.6.3: optional blanks, SP or HTAB) from i. */
static size_t skip_bws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

static size_t skip_token(const char *s, size_t n, size_t i)
{
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    return i;
}

/* The end of a quoted-string starting at s[i] (its DQUOTE), or 0 when it is
 * malformed or not closed (RFC 9110 section 5.6.4: qdtext is HTAB, SP and
 * visible characters but DQUOTE and backslash, or obs-text; a backslash
 * quotes HTAB, SP, a visible character or obs-text). No control character
 * but HTAB passes, CR and LF included. */
static size_t skip_quoted(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '"')
            return i + 1;
        if (ch == '\\') {
            if (++i >= n)
                return 0;
            ch = (unsigned char)s[i];
        }
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 0;
}

/* Chunk extensions, RFC 9112 section 7.1.1:
 *   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * a name a token, a value a token or a quoted-string. They are not used,
 * but read strictly all the same: a CR, an LF or another control byte
 * passed over here may end the line elsewhere for a proxy in front, which
 * would then see a request smuggled in the body. Returns 1 when ext (n
 * bytes, what follows the chunk size) is well formed. */
static int chunk_ext_ok(const char *ext, size_t n)
{
    size_t i = 0, j;
    while (i < n) {
        i = skip_bws(ext, n, i);
        if (i >= n || ext[i] != ';')
            return 0;
        i = skip_bws(ext, n, i + 1);
        j = skip_token(ext, n, i);
        if (j == i)
            return 0;
        i = j;
        j = skip_bws(ext, n, i);
        if (j < n && ext[j] == '=') {
            i = skip_bws(ext, n, j + 1);
            if (i < n && ext[i] == '"')
                j = skip_quoted(ext, n, i);
            else
                j = skip_token(ext, n, i);
            if (j <= i)
                return 0;
            i = j;
        }
    }
    return 1;
}

/* A chunk-size line, its CRLF gone: RFC 9112's chunk-size, 1*HEXDIG, then
 * nothing or chunk extensions (chunk_ext_ok()). No sign, no "0x", no blank
 * before the digits, nor after them without an extension. Returns 1 with
 * *size set, 0 for a malformed size, -1 for malformed extensions. A size of
 * 2^60 or more is well formed and over any cap: *size is ULLONG_MAX, as a
 * Content-Length past the range is, so both are 413. */
int hs_hex_digit(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int chunk_size(const char *line, size_t n, unsigned long long *size)
{
    unsigned long long v = 0;
    int over = 0;
    size_t i, j;
    for (i = 0; i < n; i++) {
        int d = hs_hex_digit((unsigned char)line[i]);
        if (d < 0)
            break;
        if (v >> 56)
            over = 1; /* another digit would pass 2^60 */
        else
            v = v * 16 + (unsigned long long)d;
    }
    if (i == 0)
        return 0;
    j = skip_bws(line, n, i);
    if (i < n && (j >= n || line[j] != ';'))
        return 0;
    if (!chunk_ext_ok(line + i, n - i))
        return -1;
    *size = over ? ULLONG_MAX : v;
    return 1;
}

/* A chunk-size line longer than MAX_CHUNK_LINE, the first MAX_CHUNK_LINE
 * bytes of it at the front of in: does its size take the body past room
 * bytes, whatever the rest of the line holds? It does when its hex digits
 * after any leading zeros are more than 16 (past 2^64), or when they end
 * within those bytes at a value over room, or run past them having already
 * passed it. A line long for its chunk extensions or its leading zeros is
 * not known to (answered 400). */
static int long_chunk_line_over(struct evbuffer *in, size_t room)
{
    char buf[MAX_CHUNK_LINE];
    ev_ssize_t got = evbuffer_copyout(in, buf, sizeof buf);
    unsigned long long v = 0;
    size_t sig = 0;
    for (ev_ssize_t i = 0; i < got; i++) {
        int d = hs_hex_digit((unsigned char)buf[i]);
        if (d < 0)
            break;
        if (sig == 0 && d == 0)
            continue;
        if (++sig > 16)
            return 1;
        v = v * 16 + (unsigned long long)d;
    }
    return v > room;
}

/* A trailer line, its CRLF gone, read by the rules of a head's field lines
 * (field_line_fault()). Trailers are not used, but one read loosely could
 * end elsewhere for a proxy in front. Returns NULL, or why the line is
 * refused. */
static const char *trailer_line_fault(const char *line, size_t n)
{
    size_t colon = 0;
    switch (field_line_fault(line, n, &colon)) {
    case FIELD_OK:
        return NULL;
    case FIELD_FOLDED:
        return "folded trailer lines are not accepted";
    case FIELD_CONTROL:
        return "a control character in a trailer line's value";
    default:
        return "malformed trailer line";
    }
}

/* Take one line of a chunked body's framing (a chunk-size or trailer line)
 * from the input, of at most cap bytes with its CRLF: *line (the caller
 * frees it) holds it without the CRLF, NUL-terminated, *len bytes. The
 * search for its LF goes on from where the last call stopped, so a line
 * trickled in a byte at a time is scanned once. An LF with no CR before it
 * is refused as soon as it arrives (as in the head, head_scan()): it would
 * otherwise wait for a CRLF until the cap or the timeout. Returns 1 for a
 * line, 0 when more bytes are needed, -1 at a bare LF, -2 when the line is
 * over the cap, -3 out of memory. */
static int framing_line(struct hs_conn *c, struct evbuffer *in, size_t cap, char **line,
                        size_t *len)
{
    size_t avail = evbuffer_get_length(in);
    struct evbuffer_ptr at, lf;
    char *buf;

    if (c->line_scanned < avail) {
        evbuffer_ptr_set(in, &at, c->line_scanned, EVBUFFER_PTR_SET);
        lf = evbuffer_search(in, "\n", 1, &at);
    } else {
        lf.pos = -1;
    }
    if (lf.pos < 0) {
        c->line_scanned = avail;
        return avail > cap ? -2 : 0;
    }
    c->line_scanned = 0;
    if (lf.pos == 0)
        return -1;
    {
        char cr;
        evbuffer_ptr_set(in, &at, (size_t)lf.pos - 1, EVBUFFER_PTR_SET);
        if (evbuffer_copyout_from(in, &at, &cr, 1) != 1 || cr != '\r')
            return -1;
    }
    if ((size_t)lf.pos + 1 > cap)
        return -2;
    buf = malloc((size_t)lf.pos + 1);
    if (!buf)
        return -3;
    evbuffer_remove(in, buf, (size_t)lf.pos + 1);
    buf[lf.pos - 1] = '\0';
    *line = buf;
    *len = (size_t)lf.pos - 1;
    return 1;
}

static void conn_drop(struct hs_conn *c);

static void out_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hs_conn *c = arg;
    long long now = now_us(), left = out_idle_left(c, now);
    (void)fd;
    (void)what;
    if (left <= 0 && out_taken(c, now))
        left = out_idle_left(c, now);
    if (left > 0) {
        struct timeval tv = us_tv(left);
        evtimer_add(c->out_deadline, &tv);
        return;
    }
    conn_drop(c);
}

/* Reading stopped for a backlog of answers: the client must keep taking
 * them. The timer fires idle_timeout_ms after the output last made
 * progress, and is put off while it does (out_taken() included); a client
 * that reads nothing for that long is closed. */
static void out_deadline_arm(struct hs_conn *c)
{
    int ms = c->srv->lim.idle_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (ms <= 0)
        return;
    if (!c->out_deadline)
        c->out_deadline = evtimer_new(c->srv->base, out_deadline_cb, c);
    if (c->out_deadline && !evtimer_pending(c->out_deadline, NULL))
        evtimer_add(c->out_deadline, &tv);
}

/* Advance the state machine over what is in the input buffer. */
static void process_bytes(struct hs_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct hs_server *s = c->srv;
    const char *why = NULL;
    int status;

    for (;;) {
        size_t avail = evbuffer_get_length(in);
        switch (c->state) {
        case C_HEAD: {
            size_t head_len;
            int found;
            if (avail == 0)
                return;
            /* The answers to the requests before it have not been taken.
             * A client that pipelines requests and reads none would have
             * every one answered into memory, without bound, and would
             * never be timed out while it kept sending. So the next
             * request waits, and reading stops, until the backlog drains
             * (write_cb); a client that takes nothing meets the write
             * timeout (idle_timeout_ms). */
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) > s->lim.out_high_water) {
                c->out_blocked = 1;
                bufferevent_disable(c->bev, EV_READ);
                out_deadline_arm(c);
                return;
            }
            /* Empty lines (CRLF) before the request line are ignored, as
             * RFC 9112 section 2.2 has a server do (a client may end a body
             * with an extra CRLF), up to MAX_BLANK_LINES a request: after
             * more, the line is a malformed request line. A CR alone waits
             * for what follows it. */
            while (c->head_scanned == 0 && c->blank_lines < MAX_BLANK_LINES) {
                unsigned char two[2];
                if (evbuffer_copyout(in, two, avail < 2 ? avail : 2) < 1 || two[0] != '\r')
                    break;
                if (avail < 2) {
                    head_timeout(c);
                    return;
                }
                if (two[1] != '\n')
                    break;
                evbuffer_drain(in, 2);
                avail -= 2;
                c->blank_lines++;
            }
            if (avail == 0) {
                head_timeout(c);
                return;
            }
            found = head_scan(c, in, avail < s->lim.max_head_bytes ? avail : s->lim.max_head_bytes,
                              &head_len);
            if (found < 0) {
                fail_request(c, 400, "bare LF in the request head: lines must end with CRLF");
                return;
            }
            if (!found) {
                if (avail > s->lim.max_head_bytes) {
                    /* No line end within the limit: the request line
                     * itself is too long, which is its target's length. */
                    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL,
                                                                  EVBUFFER_EOL_LF);
                    int line = eol.pos < 0 || (size_t)eol.pos >= s->lim.max_head_bytes;
                    snprintf(c->req.why, sizeof c->req.why,
                             line ? "request line too long: its target alone takes it over "
                                    "server.max_header_bytes (%zu bytes)"
                                  : "request header block too large: over "
                                    "server.max_header_bytes (%zu bytes)",
                             s->lim.max_head_bytes);
                    fail_request(c, line ? 414 : 431, c->req.why);
                    return;
                }
                head_timeout(c);
                return;
            }
            if (c->head_started) {
                c->head_started = 0;
                set_read_timeout(c, 1);
            }
            c->head_scanned = 0;
            c->head_matched = 0;
            c->blank_lines = 0;
            c->req.head = malloc(head_len + 1);
            if (!c->req.head) {
                fail_request(c, 500, "out of memory");
                return;
            }
            evbuffer_remove(in, c->req.head, head_len);
            c->req.head[head_len] = '\0';
            /* The head is parsed as a C string: a NUL inside it would end it
             * early, and the headers after it (Content-Length among them)
             * would go unseen, their body read as the next request. */
            if (memchr(c->req.head, '\0', head_len)) {
                fail_request(c, 400, "a NUL byte in the request head");
                return;
            }
            status = parse_head(&c->req, &why);
            if (!status)
                status = start_body(c, &why);
            if (status) {
                fail_request(c, status, why);
                return;
            }
            if (c->answer_early) {
                /* The body is not read: the connection ends with the answer,
                 * and what the client still sends is drained meanwhile
                 * (C_CLOSING), for LINGER_MS at most. */
                c->answer_early = 0;
                c->req.keep_alive = 0;
                c->req.body_len = 0;
                dispatch(c);
                return;
            }
            c->body_deadline_us = now_us() + idle_us(s);
            c->body_credited = 0;
            break;
        }
        case C_BODY: {
            size_t n = avail < c->req.remaining ? avail : c->req.remaining;
            if (n && body_append(c, in, n)) {
                fail_request(c, 500, "out of memory");
                return;
            }
            c->req.remaining -= n;
            if (c->req.remaining)
                return;
            dispatch(c);
            if (c->state == C_HANDLING || c->state == C_CLOSING)
                return;
            break;
        }
        case C_CHUNK_SIZE: {
            unsigned long long size;
            char *line;
            size_t n;
            int got = framing_line(c, in, MAX_CHUNK_LINE, &line, &n), ok;
            if (got == 0)
                return;
            if (got == -2) {
                /* Over the line cap: its digits may still say the size. */
                size_t room = c->req.body_len < c->req.max_body
                                  ? c->req.max_body - c->req.body_len
                                  : 0;
                if (long_chunk_line_over(in, room))
                    fail_request(c, 413, body_too_large(&c->req));
                else
                    fail_request(c, 400, "chunk-size line over 1024 bytes");
                return;
            }
            if (got < 0) {
                fail_request(c, got == -3 ? 500 : 400,
                             got == -1 ? "bare LF in a chunk-size line: lines must end with CRLF"
                                       : "out of memory");
                return;
            }
            ok = chunk_size(line, n, &size);
            free(line);
            if (ok <= 0) {
                fail_request(c, 400, ok < 0 ? "malformed chunk extension" : "malformed chunk size");
                return;
            }
            if (c->req.body_len > c->req.max_body || size > c->req.max_body - c->req.body_len) {
                fail_request(c, 413, body_too_large(&c->req));
                return;
            }
            c->req.remaining = (size_t)size;
            c->state = size == 0 ? C_TRAILER : C_CHUNK_DATA;
            c->trailer_bytes = 0;
            c->chunk_len = size;
            break;
        }
        case C_TRAILER: {
            /* Trailer lines, up to the empty one, are bounded together as a
             * head is, and checked as its lines are; then dropped. */
            size_t cap = s->lim.max_head_bytes > c->trailer_bytes
                             ? s->lim.max_head_bytes - c->trailer_bytes
                             : 0;
            const char *fault;
            char *line;
            size_t n;
            int got = framing_line(c, in, cap, &line, &n);
            if (got == 0)
                return;
            if (got < 0) {
                if (got == -3)
                    fail_request(c, 500, "out of memory");
                else if (got == -2) {
                    snprintf(c->req.why, sizeof c->req.why,
                             "request trailer section too large: over server.max_header_bytes "
                             "(%zu bytes)",
                             s->lim.max_head_bytes);
                    fail_request(c, 431, c->req.why);
                }
                else
                    fail_request(c, 400, "bare LF in a trailer line: lines must end with CRLF");
                return;
            }
            c->trailer_bytes += n + 2;
            fault = n ? trailer_line_fault(line, n) : NULL;
            free(line);
            if (fault) {
                fail_request(c, 400, fault);
                return;
            }
            if (n == 0) {
                dispatch(c);
                if (c->state == C_HANDLING || c->state == C_CLOSING)
                    return;
            }
            break;
        }
        case C_CHUNK_DATA: {
            size_t n = avail < c->req.remaining ? avail : c->req.remaining;
            if (n && body_append(c, in, n)) {
                fail_request(c, 500, "out of memory");
                return;
            }
            c->req.remaining -= n;
            if (c->req.remaining)
                return;
            c->state = C_CHUNK_CRLF;
            break;
        }
        case C_CHUNK_CRLF: {
            char crlf[2];
            if (avail < 2)
                return;
            evbuffer_remove(in, crlf, 2);
            if (crlf[0] != '\r' || crlf[1] != '\n') {
                snprintf(c->req.why, sizeof c->req.why,
                         "chunk data not followed by CRLF: the chunk is longer than the %llu "
                         "bytes its size line said (a size counts bytes, in hex)",
                         c->chunk_len);
                fail_request(c, 400, c->req.why);
                return;
            }
            c->state = C_CHUNK_SIZE;
            break;
        }
        case C_HANDLING:
            return; /* pipelined bytes wait */
        case C_CLOSING:
            evbuffer_drain(in, avail);
            return;
        }
    }
}

/* process_bytes(), then, while a body is still being read, its deadline. */
static void process_input(struct hs_conn *c)
{
    process_bytes(c);
    if (reading_body(c))
        body_timeout(c);
    else if (c->state == C_CLOSING && c->linger_end_us)
        linger_timeout(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct hs_conn *c = arg;
    (void)bev;
    c->in_read = 1;
    process_input(c);
    c->in_read = 0;
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct hs_conn *c = arg;
    if (c->state == C_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && c->peer_eof) {
            /* Everything is written and the client's EOF is in: nothing
             * to linger for. */
            conn_free(c);
            return;
        }
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            /* Everything is sent: stop sending, linger for the client's EOF
             * (LINGER_MS from now). */
            shutdown(bufferevent_getfd(bev), SHUT_WR);
            bufferevent_disable(bev, EV_WRITE);
            if (!c->linger_end_us)
                c->linger_end_us = now_us() + (long long)LINGER_MS * 1000;
            linger_timeout(c);
        }
        return;
    }
    /* The backlog is gone: back to writing directly. */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    /* Called at the low-water mark: pipelined requests may be read again. */
    if (c->out_blocked) {
        c->out_blocked = 0;
        if (c->out_deadline)
            evtimer_del(c->out_deadline);
        bufferevent_enable(bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
            bufferevent_trigger(bev, EV_READ, BEV_OPT_DEFER_CALLBACKS);
    }
    if (c->state == C_HANDLING && c->req.want_drain) {
        c->req.want_drain = 0;
        if (c->req.on_drain)
            c->req.on_drain(c->req.cb_arg);
    }
}

/* The read timeout fired on a connection between requests (no head begun)
 * or closing: if its output made progress within idle_timeout_ms, the
 * client is reading, not idle. Keep reading, with the timeout put off to
 * idle_timeout_ms after that progress; return 1. So a connection between
 * requests is idle once neither a read nor a write has made progress for
 * idle_timeout_ms. A head or body being read keeps its own deadline
 * (head_timeout, body_timeout), and a closing connection whose output is
 * all written is lingering: those return 0. */
static int read_timeout_put_off(struct hs_conn *c)
{
    long long left;
    struct timeval tv, wtv;
    int ms = c->srv->lim.idle_timeout_ms;
    size_t pending = evbuffer_get_length(bufferevent_get_output(c->bev));
    long long now;
    if (ms <= 0)
        return 0;
    if (!((c->state == C_HEAD && !c->head_started) || (c->state == C_CLOSING && pending > 0)))
        return 0;
    now = now_us();
    left = out_idle_left(c, now);
    if (left <= 0 && out_taken(c, now))
        left = out_idle_left(c, now);
    if (left <= 0)
        return 0;
    tv = us_tv(left);
    wtv = us_tv(idle_us(c->srv));
    bufferevent_set_timeouts(c->bev, &tv, &wtv);
    bufferevent_enable(c->bev, EV_READ);
    return 1;
}

/* The write timeout fired: the socket took none of the backlog for
 * idle_timeout_ms. If the output made progress all the same, the client
 * read some of what the kernel holds (out_taken()): wait for room again,
 * another idle_timeout_ms from now (libevent disabled writing); return 1. */
static int write_timeout_put_off(struct hs_conn *c)
{
    long long now = now_us();
    if (c->srv->lim.idle_timeout_ms <= 0)
        return 0;
    if (out_idle_left(c, now) <= 0 && !out_taken(c, now))
        return 0;
    bufferevent_enable(c->bev, EV_WRITE);
    return 1;
}

/* The client's input ended (its FIN: it shut down its sending side, or
 * closed) while answers it has not taken yet wait to be written, and no
 * request of it is in the works (one in C_HANDLING is aborted instead:
 * httpd.h). A client that half-closes still reads, so the answers already
 * made go out whole, and the connection closes after them; dropped here,
 * they were cut short as soon as they were bigger than the socket buffers
 * (an HTTP/1.0 client that shuts its side after its request, a client
 * that does so once the answer's head is in). A request begun in the input
 * can never be whole now: event_cb() has answered it 400 before, and any
 * bytes left are dropped here. A client that closed altogether
 * resets the connection at the next write; one that reads nothing meets
 * the write timeout (idle_timeout_ms) as any other. */
static void finish_at_eof(struct hs_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    c->peer_eof = 1;
    if (c->state != C_CLOSING) {
        req_reset(&c->req); /* C_HEAD, or a body that will not come: not handled */
        c->state = C_CLOSING;
    }
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    set_read_timeout(c, 0);
    bufferevent_enable(c->bev, EV_WRITE);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hs_conn *c = arg;
    (void)bev;
    /* A client reading a long answer sends nothing meanwhile: its read
     * timeout is no sign that it is gone. Nor is the write timeout of one
     * reading it slowly. */
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && read_timeout_put_off(c))
        return;
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING) && write_timeout_put_off(c))
        return;
    /* A body that did not come in time (idle_timeout_ms, at the least rate)
     * after a complete head, Content-Length or chunked: the request is
     * answered 408 and logged, not just cut off; what the client still
     * sends is read and dropped for LINGER_MS, so it can read the answer. */
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && reading_body(c)) {
        char got[128];
        body_progress(c, got, sizeof got);
        snprintf(c->req.why, sizeof c->req.why,
                 "the request body did not arrive within server.idle_timeout_ms (%d ms, at "
                 "500 bytes a second at least): it had brought %s",
                 c->srv->lim.idle_timeout_ms, got);
        bufferevent_enable(c->bev, EV_READ);
        fail_request(c, 408, c->req.why);
        return;
    }
    /* The client's input ended inside a body: the request can never be
     * whole. A client that shut its sending side (an HTTP/1.0 tool, one
     * whose Content-Length said more than it sent) still reads, and is
     * told so, 400 naming what had come; the request is logged and
     * counted. It was closed with no answer and no log line. One that
     * closed altogether resets the connection at the write. */
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && reading_body(c)) {
        char got[128];
        body_progress(c, got, sizeof got);
        snprintf(c->req.why, sizeof c->req.why,
                 "the client's input ended inside the request body: it had brought %s", got);
        c->peer_eof = 1; /* closed once the answer is written (write_cb) */
        fail_request(c, 400, c->req.why);
        return;
    }
    /* Likewise inside a head: some of it came, but not the empty line that
     * ends it (a client writing its request by hand that forgot it). It was
     * dropped with no answer; an EOF with nothing begun, or only empty
     * lines, still closes in silence (an idle keep-alive connection). */
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->state == C_HEAD &&
        !input_blank(c) && !head_buffered(c)) {
        c->peer_eof = 1;
        fail_request(c, 400, "the client's input ended inside the request head: no empty "
                             "line (CRLF CRLF) ended it");
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->state != C_HANDLING &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
        finish_at_eof(c);
        return;
    }
    /* EOF, error or timeout: in every case the connection is over. */
    conn_drop(c);
}

/* ==== The server ==== */

struct hs_server *hs_server_new(struct event_base *base, const struct hs_limits *limits,
                                hs_handler_fn handler, hs_error_fn error_body, void *arg)
{
    struct hs_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base = base;
    s->lim = *limits;
    s->handler = handler;
    s->error_body = error_body;
    s->arg = arg;
    s->port = -1;
    return s;
}

void hs_server_on_refused(struct hs_server *srv, hs_refused_fn refused)
{
    srv->refused = refused;
}

void hs_server_on_head(struct hs_server *srv, hs_refuses_fn refuses)
{
    srv->head_refuses = refuses;
}

void hs_server_set_limits(struct hs_server *srv, const struct hs_limits *limits)
{
    srv->lim = *limits;
    /* The open connections' read mark follows the head cap: set at accept
     * only, a raised cap left a connection's reading stopped at the old
     * one, its head never whole and no timeout running. A connection with
     * input is looked at again, against the new cap, as a lowered one may
     * now stop its reading short of a head it must refuse. */
    for (struct hs_conn *c = srv->conns; c; c = c->next) {
        if (c->state == C_CLOSING)
            continue;
        bufferevent_setwatermark(c->bev, EV_READ, 0, srv->lim.max_head_bytes + 65536);
        if (c->state == C_HEAD && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            bufferevent_trigger(c->bev, EV_READ, BEV_OPT_DEFER_CALLBACKS);
    }
}

int hs_server_listen(struct hs_server *srv, const char *host, int port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        len = sizeof *sin;
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        len = sizeof *sin6;
    } else {
        return -EINVAL;
    }
    srv->listener = evconnlistener_new_bind(srv->base, accept_cb, srv,
                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
                                            (struct sockaddr *)&ss, (int)len);
    if (!srv->listener)
        return errno ? -errno : -EADDRINUSE;
    srv->accept_resume = evtimer_new(srv->base, accept_resume_cb, srv);
    srv->cap_quiet = evtimer_new(srv->base, cap_quiet_cb, srv);
    if (!srv->accept_resume || !srv->cap_quiet) {
        evconnlistener_free(srv->listener);
        srv->listener = NULL;
        return -ENOMEM;
    }
    evconnlistener_set_error_cb(srv->listener, accept_error_cb);
    srv->listening = 1;
    listener_update(srv);
    len = sizeof ss;
    if (getsockname(evconnlistener_get_fd(srv->listener), (struct sockaddr *)&ss, &len) == 0)
        srv->port = ss.ss_family == AF_INET ? ntohs(sin->sin_port) : ntohs(sin6->sin6_port);
    return 0;
}

int hs_server_port(const struct hs_server *srv)
{
    return srv->port;
}

void hs_server_stop_accepting(struct hs_server *srv)
{
    struct hs_conn *c, *next;
    srv->draining = 1;
    if (srv->listener) {
        evconnlistener_free(srv->listener);
        srv->listener = NULL;
    }
    if (srv->accept_resume)
        evtimer_del(srv->accept_resume);
    if (srv->cap_quiet)
        evtimer_del(srv->cap_quiet);
    /* A connection between requests with nothing read, or only empty lines
     * (input_blank()), is idle, unless an answer to it is still being
     * written: that one is in flight too. It closes once written (then
     * lingers, LINGER_MS at most, for the client's EOF), or at the shutdown
     * deadline. */
    for (c = srv->conns; c; c = next) {
        next = c->next;
        if (c->state != C_HEAD || !input_blank(c))
            continue;
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
            conn_free(c);
            continue;
        }
        c->state = C_CLOSING;
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        set_read_timeout(c, 1);
        flush_out(c);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            write_cb(c->bev, c);
    }
}

size_t hs_server_refuse_unfinished(struct hs_server *srv, int status, const char *message,
                                   const char *body, size_t len)
{
    struct hs_conn *c, *next;
    size_t n = 0;
    for (c = srv->conns; c; c = next) {
        next = c->next;
        if (!reading_body(c))
            continue;
        fail_request_body(c, status, message, body, len);
        n++;
    }
    return n;
}

size_t hs_server_busy(const struct hs_server *srv)
{
    return srv->busy;
}

size_t hs_server_connections(const struct hs_server *srv)
{
    return srv->n_conns;
}

void hs_server_free(struct hs_server *srv)
{
    if (!srv)
        return;
    if (srv->listener)
        evconnlistener_free(srv->listener);
    srv->listener = NULL;
    while (srv->conns)
        conn_drop(srv->conns);
    if (srv->accept_resume)
        event_free(srv->accept_resume);
    if (srv->cap_quiet)
        event_free(srv->cap_quiet);
    free(srv);
}

/* ==== Request accessors ==== */

const char *hs_req_method(const struct hs_req *req)
{
    return req->method;
}

const char *hs_req_path(const struct hs_req *req)
{
    return req->path;
}

const char *hs_req_query(const struct hs_req *req)
{
    const char *q = req->target ? strchr(req->target, '?') : NULL;
    return q ? q + 1 : "";
}

const char *hs_req_header(const struct hs_req *req, const char *name)
{
    return hs_req_header_nth(req, name, 0);
}

const char *hs_req_header_nth(const struct hs_req *req, const char *name, int nth)
{
    for (int i = 0; i < req->n_hdr; i++)
        if (strcasecmp(req->hdr[i].name, name) == 0 && nth-- == 0)
            return req->hdr[i].value;
    return NULL;
}

int hs_req_header_count(const struct hs_req *req, const char *name)
{
    int n = 0;
    for (int i = 0; i < req->n_hdr; i++)
        n += strcasecmp(req->hdr[i].name, name) == 0;
    return n;
}

int hs_req_body_announced(const struct hs_req *req)
{
    return req->body_announced;
}

const char *hs_req_body(const struct hs_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}
