/* loadgen.c -- an open-loop HTTP/1.1 load generator: POST requests at a fixed
 * rate over N keep-alive connections, latency measured from each request's
 * scheduled send time.
 *
 * wrk is closed-loop: a slow response delays the next request on that
 * connection, so a stall shows up as one slow sample instead of many
 * ("coordinated omission"), and wrk cannot hold a rate. wrk2 fixes that but
 * is not packaged in Debian, so this is the small part of it the gateway
 * benchmark needs. Request i is due at start + i/rate. When it is due it goes
 * to an idle connection; when every connection is busy it waits in a queue,
 * and the wait counts in its latency, as it would for a real client. A
 * precise (timerfd) timer wakes the loop at each due time, so requests are
 * not batched by the kernel's millisecond tick.
 *
 *   loadgen --url http://127.0.0.1:PORT/path --rate R [--conns N]
 *           [--seconds S] [--warmup S] [--body JSON] [--header "Name: value"]...
 *
 * Prints one line: RESULT scheduled completed errors achieved_rps p50 p90 p99
 * p99.9 max (latencies in microseconds, over the requests scheduled after the
 * warm-up). Only numeric IPv4 hosts; responses must carry Content-Length or be
 * chunked. Single-threaded: one event loop.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/event.h>

#include "bench.h"

#define MAX_CONNS 4096
#define MAX_HEADERS_OPT 16
#define RBUF_CAP (256 * 1024)

struct conn {
    int fd;
    struct event *ev;
    int busy;
    double sched; /* the scheduled send time of the request in flight */
    int measured;
    size_t sent; /* bytes of the request written */
    char *rbuf;  /* response bytes not yet consumed */
    size_t rlen;
    /* response parsing */
    int have_head;
    int chunked;
    long long body_left; /* Content-Length remaining, or bytes of the current chunk */
    int chunk_state;     /* chunked: 0 size line, 1 data, 2 CRLF after data, 3 trailer */
    int status;
    int want_write; /* the request did not fit the socket buffer at once */
};

static struct {
    struct event_base *base;
    struct sockaddr_in addr;
    char *req;
    size_t req_len;
    double rate, seconds, warmup;
    int n_conns;
    struct conn conns[MAX_CONNS];
    struct event *tick;
    double t0;
    long long next_i, total_i; /* next request to schedule, requests in the run */
    double *queue;             /* scheduled times of requests waiting for a connection */
    size_t q_head, q_len, q_cap;
    double *lat;
    size_t n_lat, lat_cap;
    long long completed, errors, measured_sched;
    long long outstanding;
    double t_end_measure;
} G;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void conn_open(struct conn *c);
static void dispatch(void);

static void record(struct conn *c, int ok)
{
    double lat = now_s() - c->sched;
    if (c->measured) {
        if (ok) {
            if (G.n_lat < G.lat_cap)
                G.lat[G.n_lat++] = lat;
            G.completed++;
        } else {
            G.errors++;
        }
    }
    c->busy = 0;
    G.outstanding--;
}

static void conn_fail(struct conn *c)
{
    if (c->busy)
        record(c, 0);
    if (c->ev)
        event_free(c->ev);
    c->ev = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    conn_open(c);
}

/* Consume the response in c->rbuf. Returns 1 when one is complete, 0 when
 * more bytes are needed, -1 on a malformed response. */
static int parse(struct conn *c)
{
    size_t pos = 0;
    int done = 0;
    if (!c->have_head) {
        char *end = NULL;
        for (size_t i = 0; i + 3 < c->rlen; i++)
            if (memcmp(c->rbuf + i, "\r\n\r\n", 4) == 0) {
                end = c->rbuf + i;
                break;
            }
        if (!end)
            return c->rlen >= RBUF_CAP ? -1 : 0;
        *end = '\0';
        if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.", 7) != 0)
            return -1;
        c->status = (int)strtol(c->rbuf + 9, NULL, 10);
        c->chunked = 0;
        c->body_left = -1;
        for (char *l = strstr(c->rbuf, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n")) {
            char *h = l + 2;
            if (strncasecmp(h, "content-length:", 15) == 0)
                c->body_left = strtoll(h + 15, NULL, 10);
            else if (strncasecmp(h, "transfer-encoding:", 18) == 0 && strstr(h, "chunked"))
                c->chunked = 1;
        }
        if (!c->chunked && c->body_left < 0)
            return -1;
        c->have_head = 1;
        c->chunk_state = 0;
        pos = (size_t)(end - c->rbuf) + 4;
    }
    while (!done) {
        size_t avail = c->rlen - pos;
        if (!c->chunked) {
            size_t n = (long long)avail < c->body_left ? avail : (size_t)c->body_left;
            pos += n;
            c->body_left -= (long long)n;
            if (c->body_left > 0)
                break;
            done = 1;
        } else if (c->chunk_state == 1) {
            size_t n = (long long)avail < c->body_left ? avail : (size_t)c->body_left;
            pos += n;
            c->body_left -= (long long)n;
            if (c->body_left > 0)
                break;
            c->chunk_state = 2;
        } else {
            char *nl = memchr(c->rbuf + pos, '\n', avail);
            size_t ll;
            if (!nl)
                break;
            ll = (size_t)(nl - (c->rbuf + pos)) + 1;
            if (c->chunk_state == 0) {
                c->body_left = strtoll(c->rbuf + pos, NULL, 16);
                if (c->body_left < 0)
                    return -1;
                c->chunk_state = c->body_left ? 1 : 3;
            } else if (c->chunk_state == 2) {
                c->chunk_state = 0;
            } else if (ll <= 2) {
                done = 1; /* the empty line after the last chunk */
            }
            pos += ll;
        }
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    if (done)
        c->have_head = 0;
    return done;
}

static void conn_cb(evutil_socket_t fd, short what, void *arg);

static void send_more(struct conn *c)
{
    while (c->sent < G.req_len) {
        ssize_t n = send(c->fd, G.req + c->sent, G.req_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* the read/write event finishes it */
            conn_fail(c);
            return;
        }
        c->sent += (size_t)n;
    }
}

static void watch(struct conn *c, int want_write)
{
    short kind = (short)(EV_READ | EV_PERSIST | (want_write ? EV_WRITE : 0));
    c->want_write = want_write;
    event_del(c->ev);
    event_assign(c->ev, G.base, c->fd, kind, conn_cb, c);
    event_add(c->ev, NULL);
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    if (what & EV_WRITE) {
        if (c->busy && c->sent < G.req_len)
            send_more(c);
        if (c->fd >= 0 && (!c->busy || c->sent == G.req_len))
            watch(c, 0);
    }
    if (!(what & EV_READ) || c->fd < 0)
        return;
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF_CAP - c->rlen, 0);
        int r;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            conn_fail(c);
            dispatch();
            return;
        }
        if (n < 0)
            return;
        c->rlen += (size_t)n;
        while ((r = parse(c)) == 1) {
            if (!c->busy) { /* an answer nobody asked for */
                conn_fail(c);
                dispatch();
                return;
            }
            record(c, c->status >= 200 && c->status < 300);
            dispatch();
            if (c->busy)
                break;
        }
        if (r < 0) {
            conn_fail(c);
            dispatch();
            return;
        }
        if ((size_t)n < RBUF_CAP)
            return;
    }
}

static void conn_open(struct conn *c)
{
    int one = 1;
    c->busy = 0;
    c->rlen = 0;
    c->have_head = 0;
    c->want_write = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return;
    evutil_make_socket_nonblocking(c->fd);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&G.addr, sizeof G.addr) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return;
    }
    c->ev = event_new(G.base, c->fd, EV_READ | EV_PERSIST, conn_cb, c);
    event_add(c->ev, NULL);
}

static void send_on(struct conn *c, double sched)
{
    c->busy = 1;
    c->sched = sched;
    c->measured = sched >= G.t0 + G.warmup;
    c->sent = 0;
    send_more(c);
    if (c->fd >= 0 && c->busy && c->sent < G.req_len)
        watch(c, 1); /* rare: the socket is full; finish when it is writable */
}

/* Give waiting requests to idle connections. */
static void dispatch(void)
{
    static int rr;
    while (G.q_len) {
        struct conn *c = NULL;
        for (int k = 0; k < G.n_conns; k++) {
            struct conn *cand = &G.conns[(rr + k) % G.n_conns];
            if (!cand->busy && cand->fd >= 0) {
                c = cand;
                rr = (rr + k + 1) % G.n_conns;
                break;
            }
        }
        if (!c)
            return;
        send_on(c, G.queue[G.q_head]);
        G.q_head = (G.q_head + 1) % G.q_cap;
        G.q_len--;
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    double t = now_s(), next;
    (void)fd;
    (void)what;
    (void)arg;
    while (G.next_i < G.total_i && G.t0 + (double)G.next_i / G.rate <= t) {
        double sched = G.t0 + (double)G.next_i / G.rate;
        if (sched >= G.t0 + G.warmup)
            G.measured_sched++;
        if (G.q_len == G.q_cap) {
            /* The target is hopelessly behind: count it as an error. */
            if (sched >= G.t0 + G.warmup)
                G.errors++;
        } else {
            G.queue[(G.q_head + G.q_len) % G.q_cap] = sched;
            G.q_len++;
            G.outstanding++;
        }
        G.next_i++;
    }
    dispatch();
    if (G.next_i < G.total_i) {
        struct timeval tv;
        next = G.t0 + (double)G.next_i / G.rate - now_s();
        if (next < 0)
            next = 0;
        tv.tv_sec = (long)next;
        tv.tv_usec = (long)((next - (double)tv.tv_sec) * 1e6);
        evtimer_add(G.tick, &tv);
    } else if (G.outstanding == 0 || now_s() > G.t_end_measure + 5) {
        event_base_loopbreak(G.base);
    } else {
        struct timeval tv = {0, 1000};
        evtimer_add(G.tick, &tv);
    }
}

static long long pct_us(double p)
{
    size_t k;
    if (G.n_lat == 0)
        return 0;
    k = (size_t)(p / 100.0 * (double)G.n_lat);
    if (k >= G.n_lat)
        k = G.n_lat - 1;
    return (long long)(G.lat[k] * 1e6 + 0.5);
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno || end == s || *end ? -1 : 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --url http://IPv4:PORT/path --rate R [--conns N] "
                    "[--seconds S] [--warmup S] [--body JSON] [--header 'Name: value']...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *body = "{\"model\":\"fake\",\"messages\":[{\"role\":\"user\","
                                    "\"content\":\"hi\"}]}";
    const char *headers[MAX_HEADERS_OPT];
    int n_headers = 0;
    char host[64], path[1024];
    int port = 0;
    double conns = 32;
    struct event_config *cfg;
    size_t cap;

    G.rate = 0;
    G.seconds = 10;
    G.warmup = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--rate") == 0 && !parse_double(v, &G.rate))
            ;
        else if (strcmp(a, "--conns") == 0 && !parse_double(v, &conns))
            ;
        else if (strcmp(a, "--seconds") == 0 && !parse_double(v, &G.seconds))
            ;
        else if (strcmp(a, "--warmup") == 0 && !parse_double(v, &G.warmup))
            ;
        else if (strcmp(a, "--body") == 0)
            body = v;
        else if (strcmp(a, "--header") == 0 && n_headers < MAX_HEADERS_OPT)
            headers[n_headers++] = v;
        else
            usage();
        i++;
    }
    if (!url || G.rate <= 0 || G.seconds <= 0 || G.warmup < 0 || conns < 1 || conns > MAX_CONNS)
        usage();
    if (sscanf(url, "http://%63[0-9.]:%d%1023s", host, &port, path) != 3 || port <= 0 ||
        port > 65535 || path[0] != '/')
        usage();
    G.n_conns = (int)conns;
    G.addr.sin_family = AF_INET;
    G.addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &G.addr.sin_addr) != 1)
        usage();

    /* The request, built once. */
    cap = strlen(path) + strlen(host) + strlen(body) + 256;
    for (int i = 0; i < n_headers; i++)
        cap += strlen(headers[i]) + 2;
    G.req = malloc(cap);
    if (!G.req)
        return 1;
    {
        int n = snprintf(G.req, cap,
                         "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n",
                         path, host, port, strlen(body));
        for (int i = 0; i < n_headers; i++)
            n += snprintf(G.req + n, cap - (size_t)n, "%s\r\n", headers[i]);
        n += snprintf(G.req + n, cap - (size_t)n, "\r\n%s", body);
        G.req_len = (size_t)n;
    }

    G.total_i = (long long)(G.rate * (G.warmup + G.seconds));
    G.q_cap = (size_t)(G.rate * 2) + 16; /* two seconds behind: give up on the excess */
    G.queue = malloc(G.q_cap * sizeof *G.queue);
    G.lat_cap = (size_t)G.total_i + 1;
    G.lat = malloc(G.lat_cap * sizeof *G.lat);
    if (!G.queue || !G.lat)
        return 1;

    cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    G.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!G.base)
        return 1;
    for (int i = 0; i < G.n_conns; i++) {
        G.conns[i].rbuf = malloc(RBUF_CAP);
        if (!G.conns[i].rbuf)
            return 1;
        conn_open(&G.conns[i]);
        if (G.conns[i].fd < 0) {
            fprintf(stderr, "loadgen: cannot connect to %s:%d\n", host, port);
            return 1;
        }
    }
    G.tick = evtimer_new(G.base, tick_cb, NULL);
    G.t0 = now_s() + 0.05; /* let the connects finish */
    G.t_end_measure = G.t0 + G.warmup + G.seconds;
    {
        struct timeval tv = {0, 50000};
        evtimer_add(G.tick, &tv);
    }
    event_base_dispatch(G.base);

    qsort(G.lat, G.n_lat, sizeof *G.lat, cmp_double);
    printf("RESULT %lld %lld %lld %.0f %lld %lld %lld %lld %lld\n", G.measured_sched, G.completed,
           G.measured_sched - G.completed, (double)G.completed / G.seconds, pct_us(50), pct_us(90),
           pct_us(99), pct_us(99.9), G.n_lat ? (long long)(G.lat[G.n_lat - 1] * 1e6 + 0.5) : 0LL);
    for (int i = 0; i < G.n_conns; i++) {
        if (G.conns[i].ev)
            event_free(G.conns[i].ev);
        if (G.conns[i].fd >= 0)
            close(G.conns[i].fd);
        free(G.conns[i].rbuf);
    }
    event_free(G.tick);
    event_base_free(G.base);
    free(G.queue);
    free(G.lat);
    free(G.req);
    return 0;
}
