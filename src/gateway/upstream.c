/* upstream.c -- libcurl multi_socket on a libevent loop (see upstream.h).
 *
 * Plain http:// URLs to numeric hosts go to the gateway's own HTTP/1.1
 * client (h1client.c), which costs a fraction of libcurl's CPU and system
 * calls per request; a transfer here then only forwards its callbacks. The
 * rest (https://, host names) and every URL when a proxy is set in the
 * environment, or when LLMROUTE_UPSTREAM_CLIENT=curl, stay with libcurl.
 *
 * The pattern is curl's docs/examples/multi-event.c: curl tells us which
 * sockets to watch (sock_cb) and when to wake it (timer_cb); libevent calls
 * back and we hand the event to curl_multi_socket_action(), then collect
 * finished transfers with curl_multi_info_read(). Easy handles are kept in a
 * small free list and reused; connections live in the multi handle's cache,
 * so keep-alive to each upstream spans transfers.
 *
 * Aborting from inside one of a transfer's own callbacks is allowed: the
 * transfer is marked, its next callback fails it, and it is freed when curl
 * reports it done, silently.
 *
 * Threads: the event loop thread only.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "h1client.h"
#include "upstream.h"

#define MAX_IDLE_EASY 64

struct up_client {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    CURL *idle[MAX_IDLE_EASY];
    int n_idle;
    struct up_xfer *xfers; /* live transfers, for up_client_free */
    struct h1_client *h1;  /* for http:// URLs, or NULL: libcurl for all */
    struct conn_sock **conns; /* by descriptor: the sockets curl opened for connections */
    size_t n_conns;
    size_t n_curl_open; /* entries in conns: curl's connections open now */
    size_t max_open;    /* up_client_limit(); 0: none */
    struct h1_deadline expiry; /* closes curl's idle connections past their time */
};

/* The most of a header value the gateway reads: a Location's (cut to
 * UP_LOCATION_CAP - 1 bytes); every other kept value is read to less. */
#define FOLD_VALUE_CAP UP_LOCATION_CAP

struct up_xfer {
    struct up_client *cl;
    struct up_xfer *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    struct up_callbacks cb;
    void *arg;
    long status;
    int socket_errno;   /* errno of the last socket() that failed in open_cb, or 0 */
    int sockets_opened; /* socket() calls in open_cb that succeeded: connects tried */
    char content_type[128];
    char retry_after[UP_HINT_CAP];
    char retry_after_ms[UP_HINT_CAP];
    char location[UP_LOCATION_CAP];
    char content_encoding[UP_ENCODING_CAP];
    char allow[UP_ALLOW_CAP];
    char request_id[UP_REQUEST_ID_CAP];
    struct up_relay relay;
    /* The last header line of those kept above, held until the next line
     * shows whether it continues (an obs-fold, which libcurl hands over as
     * a line of its own): its name, and its value trimmed with each fold
     * one space (RFC 9112 section 5.2), as h1client's unfold_head() makes
     * it. fold_cut: bytes past fold_value were dropped, from a value longer
     * than any use of it reads. fold_on: a line is held. */
    char fold_name[UP_RELAY_NAME_CAP];
    size_t fold_name_len;
    char fold_value[FOLD_VALUE_CAP];
    size_t fold_len;
    int fold_cut;
    int fold_on;
    /* How the body is framed, from the head: an HTTP/1.x status line, a
     * Content-Length, a Transfer-Encoding naming chunked. None of the last
     * two under HTTP/1.x: the close ends the body (up_head.close_delimited). */
    int http1;
    int has_length;
    int chunked;
    int head_done;
    int aborted;
    int in_cb;
    int sends;           /* times curl was about to send the request (prereq_cb) */
    int resend_refused;  /* the second was refused: the transfer failed for it */
    long keep_ms;        /* how long its connection may stay idle after it (Keep-Alive) */
    curl_socket_t fd;    /* the socket curl last watched for this transfer */
    char errbuf[CURL_ERROR_SIZE];
    struct h1_xfer *h1; /* a transfer of h1client's (no easy handle), or NULL */
};

struct sock_ctx {
    struct up_client *cl;
    curl_socket_t fd;
    struct event ev;
    int has_ev;
};

/* A socket curl opened for a connection (open_cb to close_cb) and its one
 * event, which stays registered while curl keeps the connection idle. */
struct conn_sock {
    struct up_client *cl;
    curl_socket_t fd;
    struct event ev;
    short kind; /* the events registered (EV_READ, EV_WRITE), 0: none */
    int idle;   /* curl does not watch it: no transfer is on it */
    uint64_t idle_until; /* while idle: the monotonic ms past which it is closed */
};

/* ==== Transfers ==== */

static void xfer_unlink_free(struct up_xfer *x)
{
    struct up_client *cl = x->cl;
    if (x->prev)
        x->prev->next = x->next;
    else
        cl->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->h1 || !x->easy) {
        h1_xfer_abort(x->h1); /* no-op for NULL */
        free(x);
        return;
    }
    curl_multi_remove_handle(cl->multi, x->easy);
    if (cl->n_idle < MAX_IDLE_EASY) {
        curl_easy_reset(x->easy);
        cl->idle[cl->n_idle++] = x->easy;
    } else {
        curl_easy_cleanup(x->easy);
    }
    curl_slist_free_all(x->headers);
    free(x);
}

/* ==== Response headers for the caller ==== */

/* RFC 9110 token characters. */
static int is_token_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int has_control(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return 1;
    return 0;
}

static int relayed_name(const char *name, size_t n)
{
    return (n > 12 && strncasecmp(name, "x-ratelimit-", 12) == 0) ||
           (n == 14 && strncasecmp(name, "retry-after-ms", 14) == 0) ||
           (n == 14 && strncasecmp(name, "x-should-retry", 14) == 0);
}

void up_relay_add(struct up_relay *r, const char *name, size_t name_len, const char *value,
                  size_t value_len)
{
    size_t line = name_len + 2 + value_len + 2;
    if (!relayed_name(name, name_len) || name_len > UP_RELAY_NAME_CAP ||
        value_len > UP_RELAY_VALUE_CAP || r->n >= UP_RELAY_MAX || r->len + line >= UP_RELAY_CAP ||
        has_control(value, value_len))
        return;
    for (size_t i = 0; i < name_len; i++)
        if (!is_token_char((unsigned char)name[i]))
            return;
    memcpy(r->buf + r->len, name, name_len);
    memcpy(r->buf + r->len + name_len, ": ", 2);
    memcpy(r->buf + r->len + name_len + 2, value, value_len);
    memcpy(r->buf + r->len + name_len + 2 + value_len, "\r\n", 2);
    r->len += line;
    r->buf[r->len] = '\0';
    r->n++;
}

void up_request_id_copy(char *dst, size_t cap, const char *value, size_t value_len)
{
    if (has_control(value, value_len))
        value_len = 0;
    if (value_len >= cap)
        value_len = cap - 1;
    memcpy(dst, value, value_len);
    dst[value_len] = '\0';
}

void up_hint_copy(char *dst, size_t cap, const char *value, size_t value_len)
{
    const char *nul = memchr(value, '\0', value_len);
    if (nul)
        value_len = (size_t)(nul - value);
    if (value_len >= cap)
        value_len = 0;
    memcpy(dst, value, value_len);
    dst[value_len] = '\0';
}

void up_list_join(char *dst, size_t cap, const char *value, size_t value_len)
{
    size_t len = strlen(dst);
    if (value_len == 0 || len + 1 >= cap)
        return;
    if (len) {
        size_t sep = cap - 1 - len < 2 ? cap - 1 - len : 2;
        memcpy(dst + len, ", ", sep);
        len += sep;
    }
    if (value_len > cap - 1 - len)
        value_len = cap - 1 - len;
    memcpy(dst + len, value, value_len);
    dst[len + value_len] = '\0';
}

/* ==== Errors ==== */

const char *up_error_name(enum up_error err)
{
    switch (err) {
    case UP_OK:
        return "ok";
    case UP_ECONNREFUSED:
        return "connect_refused";
    case UP_ECONNTIMEOUT:
        return "connect_timeout";
    case UP_ETLS:
        return "tls";
    case UP_ERESET:
        return "reset_before_headers";
    case UP_ERESET_REUSED:
        return "reset_reused";
    case UP_ECLOSED:
        return "closed_mid_body";
    case UP_ETIMEOUT:
        return "timeout";
    case UP_EPROTO:
        return "protocol";
    case UP_ETOOBIG:
        return "too_big";
    case UP_ENOMEM:
        return "no_memory";
    case UP_EDESCRIPTORS:
        return "descriptors";
    default:
        return "other";
    }
}

enum up_error up_couldnt_connect_error(int sockets_opened, int socket_errno)
{
    /* Every socket() failed for want of descriptors: no connect was even
     * tried, so the gateway's limit ended the attempt, not the upstream.
     * One socket() that succeeded means a connect was made and failed (a
     * host with several addresses: one refused, another without a
     * descriptor), and that failure is the upstream's. */
    if (sockets_opened == 0 && (socket_errno == EMFILE || socket_errno == ENFILE))
        return UP_EDESCRIPTORS;
    return UP_ECONNREFUSED;
}

/* curl's code for a finished transfer, in the interface's terms. Whether the
 * connection was ever made tells a connect timeout from a slow answer, and
 * whether the head arrived tells a reset from a body cut short. */
static enum up_error classify(const struct up_xfer *x, CURLcode code)
{
    curl_off_t connected = 0;
    switch (code) {
    case CURLE_OK:
        return UP_OK;
    case CURLE_COULDNT_CONNECT:
        return up_couldnt_connect_error(x->sockets_opened, x->socket_errno);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return UP_ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        if (!x->head_done &&
            curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connected) == CURLE_OK &&
            connected == 0)
            return UP_ECONNTIMEOUT;
        return UP_ETIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
        return UP_ETLS;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE: {
        long connects = -1, head_bytes = -1;
        if (x->head_done)
            return UP_ECLOSED;
        /* No new connection made and not a line of the head received: a
         * pooled connection that ended before the response began. */
        if (curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK &&
            curl_easy_getinfo(x->easy, CURLINFO_HEADER_SIZE, &head_bytes) == CURLE_OK &&
            connects == 0 && head_bytes == 0)
            return UP_ERESET_REUSED;
        return UP_ERESET;
    }
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return UP_EPROTO;
    case CURLE_FILESIZE_EXCEEDED:
        return UP_ETOOBIG;
    case CURLE_OUT_OF_MEMORY:
        return UP_ENOMEM;
    default:
        return UP_EOTHER;
    }
}

/* ==== Finishing ==== */

static void deliver_head(struct up_xfer *x);

static void check_done(struct up_client *cl)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(cl->multi, &left))) {
        struct up_xfer *x = NULL;
        CURLcode code;
        if (msg->msg != CURLMSG_DONE)
            continue;
        code = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (!x)
            continue;
        if (!x->aborted) {
            const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
            void (*done)(void *, enum up_error, const char *) = x->cb.on_done;
            void *arg = x->arg;
            enum up_error err = classify(x, code);
            char msgbuf[CURL_ERROR_SIZE];
            long tunnel = 0;
            if (code != CURLE_OK && !x->head_done &&
                curl_easy_getinfo(x->easy, CURLINFO_HTTP_CONNECTCODE, &tunnel) == CURLE_OK &&
                tunnel >= 300) {
                /* The proxy (https_proxy) refused the tunnel to the upstream,
                 * whose head never came. A 407 is a proxy on the way wanting
                 * credentials, answered as an upstream's 407 is (class auth);
                 * any other refusal left the upstream unreached. */
                if (tunnel == 407) {
                    x->status = 407;
                    x->in_cb++;
                    deliver_head(x);
                    x->in_cb--;
                    if (x->aborted) {
                        xfer_unlink_free(x);
                        continue;
                    }
                    err = UP_OK;
                } else {
                    err = UP_ECONNREFUSED;
                }
            }
            if (x->resend_refused) {
                /* libcurl resends only when a reused connection died before
                 * any byte of the response. */
                err = UP_ERESET_REUSED;
                why = "the upstream closed a reused connection before a response, after the "
                      "request was sent; not sent again by the client, since it may have been "
                      "processed";
            }
            /* Free first: on_done may start a new transfer on this client. */
            snprintf(msgbuf, sizeof msgbuf, "%s", why);
            xfer_unlink_free(x);
            done(arg, err, msgbuf);
        } else {
            xfer_unlink_free(x);
        }
    }
}

static void deliver_head(struct up_xfer *x)
{
    struct up_head h;
    x->head_done = 1;
    h.status = x->status;
    h.content_type = x->content_type[0] ? x->content_type : NULL;
    h.retry_after = x->retry_after[0] ? x->retry_after : NULL;
    h.location = x->location[0] ? x->location : NULL;
    h.content_encoding = x->content_encoding[0] ? x->content_encoding : NULL;
    h.request_id = x->request_id[0] ? x->request_id : NULL;
    h.relay = x->relay.n ? x->relay.buf : NULL;
    h.retry_after_ms = x->retry_after_ms[0] ? x->retry_after_ms : NULL;
    h.allow = x->allow[0] ? x->allow : NULL;
    h.close_delimited =
        x->http1 && !x->has_length && !x->chunked && x->status != 204 && x->status != 304;
    if (x->cb.on_head)
        x->cb.on_head(x->arg, &h);
}

/* Copy a header's value (trimmed, vl bytes) into dst, cut to fit. */
static void value_copy(char *dst, size_t cap, const char *v, size_t vl)
{
    if (vl >= cap)
        vl = cap - 1;
    memcpy(dst, v, vl);
    dst[vl] = '\0';
}

/* One header line the gateway keeps, whole (its folds joined): name (nl
 * bytes) and value (vl bytes, trimmed); cut: the value went on past vl
 * bytes, which is longer than any use reads but a relayed hint may be. */
static void kept_header(struct up_xfer *x, const char *name, size_t nl, const char *v, size_t vl,
                        int cut)
{
    const char *nul = memchr(v, '\0', vl);
    if (nul) /* read as far as the value's text goes, as a C string is */
        vl = (size_t)(nul - v);
    if (nl == 12 && strncasecmp(name, "content-type", 12) == 0) {
        value_copy(x->content_type, sizeof x->content_type, v, vl);
    } else if (nl == 11 && strncasecmp(name, "retry-after", 11) == 0) {
        up_hint_copy(x->retry_after, sizeof x->retry_after, v, cut ? sizeof x->retry_after : vl);
    } else if (nl == 14 && strncasecmp(name, "retry-after-ms", 14) == 0) {
        /* Read for the retry's delay (unreadable when it does not fit),
         * and relayed as the other hints are. */
        up_hint_copy(x->retry_after_ms, sizeof x->retry_after_ms, v,
                     cut ? sizeof x->retry_after_ms : vl);
        if (!cut)
            up_relay_add(&x->relay, name, nl, v, vl);
    } else if (nl == 8 && strncasecmp(name, "location", 8) == 0) {
        value_copy(x->location, sizeof x->location, v, vl);
    } else if (nl == 16 && strncasecmp(name, "content-encoding", 16) == 0) {
        char e[UP_ENCODING_CAP];
        value_copy(e, sizeof e, v, vl);
        up_list_join(x->content_encoding, sizeof x->content_encoding, e, strlen(e));
    } else if (nl == 5 && strncasecmp(name, "allow", 5) == 0) {
        char a[UP_ALLOW_CAP];
        value_copy(a, sizeof a, v, vl);
        up_list_join(x->allow, sizeof x->allow, a, strlen(a));
    } else if (nl == 10 && strncasecmp(name, "keep-alive", 10) == 0) {
        /* libcurl reads no such header: the connection's time in its cache
         * is kept here (conn_expire_cb()), as h1client keeps its own. */
        char k[128];
        value_copy(k, sizeof k, v, vl);
        x->keep_ms = h1_keep_alive_ms(k, strlen(k));
    } else if (nl == 14 && strncasecmp(name, "content-length", 14) == 0) {
        x->has_length = 1;
    } else if (nl == 17 && strncasecmp(name, "transfer-encoding", 17) == 0) {
        for (size_t i = 0; i + 7 <= vl && !x->chunked; i++)
            x->chunked = strncasecmp(v + i, "chunked", 7) == 0;
    } else if (nl == 12 && strncasecmp(name, "x-request-id", 12) == 0) {
        char r[UP_REQUEST_ID_CAP * 2];
        value_copy(r, sizeof r, v, vl);
        up_request_id_copy(x->request_id, sizeof x->request_id, r, strlen(r));
    } else if (!cut) {
        up_relay_add(&x->relay, name, nl, v, vl); /* the hints to relay */
    }
}

static int kept_name(const char *name, size_t nl)
{
    static const char *const names[] = {"content-type", "retry-after", "location",
                                        "content-encoding", "allow", "keep-alive",
                                        "x-request-id", "content-length",
                                        "transfer-encoding"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (nl == strlen(names[i]) && strncasecmp(name, names[i], nl) == 0)
            return 1;
    return relayed_name(name, nl); /* retry-after-ms among them */
}

/* Blanks and the line end trimmed off both ends of [*v, e): the new end. */
static const char *trim_line(const char **v, const char *e)
{
    while (*v < e && (**v == ' ' || **v == '\t'))
        (*v)++;
    while (e > *v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return e;
}

/* Add the text of [v, e) to the held value, past one space when both have
 * some; what does not fit is dropped and the value marked cut. */
static void fold_add(struct up_xfer *x, const char *v, const char *e)
{
    size_t n = (size_t)(e - v), room;
    if (n == 0 || x->fold_cut)
        return;
    if (x->fold_len > 0) {
        if (x->fold_len == sizeof x->fold_value) {
            x->fold_cut = 1;
            return;
        }
        x->fold_value[x->fold_len++] = ' ';
    }
    room = sizeof x->fold_value - x->fold_len;
    if (n > room) {
        n = room;
        x->fold_cut = 1;
    }
    memcpy(x->fold_value + x->fold_len, v, n);
    x->fold_len += n;
}

/* The held header line, if any, is read now: no line continues it. */
static void fold_flush(struct up_xfer *x)
{
    if (!x->fold_on)
        return;
    x->fold_on = 0;
    kept_header(x, x->fold_name, x->fold_name_len, x->fold_value, x->fold_len, x->fold_cut);
}

static size_t header_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct up_xfer *x = ud;
    size_t len = size * n;

    if (x->aborted)
        return 0;
    if (len > 0 && (buf[0] == ' ' || buf[0] == '\t')) {
        /* A continuation line: the held header's value goes on (one of
         * another header's, or of none, is dropped, as that header is). */
        const char *v = buf, *e = trim_line(&v, buf + len);
        if (x->fold_on)
            fold_add(x, v, e);
        return len;
    }
    fold_flush(x);
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A status line: a new response (after a 1xx, or the first). */
        const char *sp = memchr(buf, ' ', len);
        long st = 0;
        if (sp) {
            for (sp++; sp < buf + len && *sp >= '0' && *sp <= '9' && st < 1000; sp++)
                st = st * 10 + (*sp - '0');
        }
        x->status = st;
        x->http1 = len >= 7 && memcmp(buf, "HTTP/1.", 7) == 0;
        x->has_length = x->chunked = 0;
        x->content_type[0] = '\0';
        x->retry_after[0] = '\0';
        x->retry_after_ms[0] = '\0';
        x->location[0] = '\0';
        x->content_encoding[0] = '\0';
        x->allow[0] = '\0';
        x->request_id[0] = '\0';
        x->keep_ms = H1_IDLE_MAX_MS;
        x->relay.len = x->relay.n = 0;
        x->relay.buf[0] = '\0';
    } else if ((len == 2 && buf[0] == '\r') || (len == 1 && buf[0] == '\n')) {
        if (x->status >= 200) {
            x->in_cb++;
            deliver_head(x);
            x->in_cb--;
            if (x->aborted)
                return 0;
        }
    } else {
        /* A header line: one the gateway keeps is held until the next line
         * (a name is a token, so its first ':' ends it). */
        const char *colon = memchr(buf, ':', len);
        size_t nl = colon ? (size_t)(colon - buf) : 0;
        if (nl > 0 && nl <= sizeof x->fold_name && kept_name(buf, nl)) {
            const char *v = colon + 1, *e = trim_line(&v, buf + len);
            memcpy(x->fold_name, buf, nl);
            x->fold_name_len = nl;
            x->fold_len = 0;
            x->fold_cut = 0;
            x->fold_on = 1;
            fold_add(x, v, e);
        }
    }
    return len;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct up_xfer *x = ud;
    size_t len = size * nmemb;
    int rc;

    if (x->aborted)
        return 0;
    x->in_cb++;
    if (!x->head_done)
        deliver_head(x);
    rc = x->aborted ? UP_CONSUMED : x->cb.on_data(x->arg, ptr, len);
    x->in_cb--;
    if (x->aborted)
        return 0;
    if (rc == UP_PAUSE)
        return CURL_WRITEFUNC_PAUSE;
    return len;
}

/* ==== Transfers on h1client ==== */

static void h1_on_head(void *arg, const struct up_head *head)
{
    struct up_xfer *x = arg;
    if (x->cb.on_head)
        x->cb.on_head(x->arg, head);
}

static int h1_on_data(void *arg, const char *data, size_t len)
{
    struct up_xfer *x = arg;
    return x->cb.on_data(x->arg, data, len);
}

static void h1_on_done(void *arg, enum up_error err, const char *message)
{
    struct up_xfer *x = arg;
    void (*done)(void *, enum up_error, const char *) = x->cb.on_done;
    void *done_arg = x->arg;
    x->h1 = NULL; /* h1client has freed its transfer */
    xfer_unlink_free(x);
    done(done_arg, err, message);
}

static const struct up_callbacks h1_forward = {h1_on_head, h1_on_data, h1_on_done};

/* The caller's "Name: value\r\n" lines appended to a curl header list, one
 * entry each. An empty value is written "Name;", since "Name:" alone would
 * tell libcurl to leave the header out. NULL when out of memory (h freed). */
static struct curl_slist *append_lines(struct curl_slist *h, const char *lines)
{
    const char *p = lines;
    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char *line = malloc(n + 1), *colon;
        struct curl_slist *t;
        if (!line)
            goto fail;
        memcpy(line, p, n);
        line[n] = '\0';
        /* A name is a token, so its first ':' ends it. */
        colon = strchr(line, ':');
        if (colon && colon[strspn(colon + 1, " \t") + 1] == '\0') {
            colon[0] = ';';
            colon[1] = '\0';
        }
        t = curl_slist_append(h, line);
        free(line);
        if (!t)
            goto fail;
        h = t;
        p = eol ? eol + 2 : p + n;
    }
    return h;
fail:
    curl_slist_free_all(h);
    return NULL;
}

/* Called each time curl is about to send the request on a connection, new or
 * reused. libcurl resends a request by itself when a reused connection fails
 * before any byte of the answer ("Connection died, retrying a fresh
 * connect"), and no option turns that off. But the upstream may have read
 * the request and acted on it before the connection died, and a resend would
 * be an attempt that neither the retry policy, the metrics nor the log line
 * knew of. So a second send is refused: the transfer fails as
 * UP_ERESET_REUSED (see check_done()), and the retry policy decides (by
 * default, one attempt more at once on a fresh connection). */
static int prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    struct up_xfer *x = clientp;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    if (x->aborted)
        return CURL_PREREQFUNC_ABORT;
    if (++x->sends > 1) {
        x->resend_refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

static curl_socket_t open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr);
static int close_cb(void *clientp, curl_socket_t fd);

struct up_xfer *up_xfer_start(struct up_client *cl, const struct up_request *req,
                              const struct up_callbacks *cb, void *arg)
{
    struct up_xfer *x = calloc(1, sizeof *x);
    struct curl_slist *h = NULL, *t;

    if (!x)
        return NULL;
    x->cl = cl;
    x->cb = *cb;
    x->arg = arg;
    x->fd = CURL_SOCKET_BAD;
    x->keep_ms = H1_IDLE_MAX_MS;
    if (cl->h1 && (x->h1 = h1_xfer_start(cl->h1, req, &h1_forward, x))) {
        x->next = cl->xfers;
        if (cl->xfers)
            cl->xfers->prev = x;
        cl->xfers = x;
        return x;
    }
    /* Room in the budget for a connection curl may open: h1client's idle
     * connections go first (curl keeps its own within it, up_client_limit). */
    if (cl->h1 && cl->max_open)
        h1_client_trim(cl->h1,
                       cl->max_open > cl->n_curl_open + 1 ? cl->max_open - cl->n_curl_open - 1 : 0);
    x->easy = cl->n_idle ? cl->idle[--cl->n_idle] : curl_easy_init();
    if (!x->easy)
        goto fail;
    if (!(t = curl_slist_append(h, "Content-Type: application/json")))
        goto fail;
    h = t;
    if (!(t = curl_slist_append(h, "Expect:")))
        goto fail;
    h = t;
    /* Nothing decodes the answer, so no coding but identity is acceptable
     * (without the header, any is). CURLOPT_ACCEPT_ENCODING is left unset,
     * so libcurl adds none of its own and decodes nothing. */
    if (!(t = curl_slist_append(h, "Accept-Encoding: identity")))
        goto fail;
    h = t;
    if (req->authorization) {
        /* As long as the key is: an OAuth access token (Azure AD, Google
         * Cloud) runs to a few KB, where a fixed buffer cut it off and every
         * request failed as if out of memory. curl_slist_append() copies it. */
        size_t n = strlen("Authorization: ") + strlen(req->authorization) + 1;
        char *auth = malloc(n);
        if (!auth)
            goto fail;
        snprintf(auth, n, "Authorization: %s", req->authorization);
        t = curl_slist_append(h, auth);
        free(auth);
        if (!t)
            goto fail;
        h = t;
    }
    if (req->headers && !(h = append_lines(h, req->headers)))
        goto fail;
    x->headers = h;
    h = NULL;

    curl_easy_setopt(x->easy, CURLOPT_URL, req->url);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    /* A redirect is never followed: it would resend the body, and the
     * Authorization header, to wherever the upstream points. proxy.c turns
     * a 3xx into an error naming its Location. */
    curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
    /* Through a proxy's tunnel (https_proxy), the proxy's answer to CONNECT
     * ("200 Connection established") is no head of the upstream's: passed
     * to header_cb it was taken for the response's, whose timer (head_ms)
     * then gave way to idle_ms. A refused tunnel is read in check_done(). */
    curl_easy_setopt(x->easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
    /* Another method sends the body (often none) as a POST would; set on
     * every transfer, as the handle is reused. */
    curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST,
                     req->method && strcmp(req->method, "POST") != 0 ? req->method : NULL);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Its default, set so that it stays the limit conn_expire_cb() and
     * h1client keep (an upstream's Keep-Alive timeout shortens it there). */
    curl_easy_setopt(x->easy, CURLOPT_MAXAGE_CONN, H1_IDLE_MAX_MS / 1000);
    curl_easy_setopt(x->easy, CURLOPT_PREREQFUNCTION, prereq_cb);
    curl_easy_setopt(x->easy, CURLOPT_PREREQDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, open_cb);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, cl);
    if (req->connect_timeout_ms > 0)
        curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    if (req->timeout_ms > 0)
        curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    if (req->fresh_connection)
        curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, 1L);

    x->next = cl->xfers;
    if (cl->xfers)
        cl->xfers->prev = x;
    cl->xfers = x;
    if (curl_multi_add_handle(cl->multi, x->easy) != CURLM_OK) {
        cl->xfers = x->next;
        if (x->next)
            x->next->prev = NULL;
        goto fail;
    }
    return x;
fail:
    curl_slist_free_all(h);
    curl_slist_free_all(x->headers);
    if (x->easy)
        curl_easy_cleanup(x->easy);
    free(x);
    return NULL;
}

void up_xfer_resume(struct up_xfer *x)
{
    if (x->aborted)
        return;
    if (x->h1) {
        h1_xfer_resume(x->h1);
        return;
    }
    /* May deliver the held-back data at once, through write_cb. */
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
}

void up_xfer_abort(struct up_xfer *x)
{
    if (!x)
        return;
    x->aborted = 1;
    if (x->in_cb)
        return; /* failed by the callback's return, freed in check_done */
    xfer_unlink_free(x);
}

/* ==== Driving curl from libevent ==== */

static void event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sock_ctx *sc = arg;
    struct up_client *cl = sc->cl;
    int running = 0;
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(cl->multi, fd, flags, &running);
    check_done(cl);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct up_client *cl = arg;
    int running = 0;
    (void)fd;
    (void)what;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(cl);
}

static int multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct up_client *cl = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(cl->timer);
    } else {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(cl->timer, &tv);
    }
    return 0;
}

/* ==== Connections' sockets ====
 *
 * curl stops watching a connection's socket when no transfer uses it, and
 * checks it only when it picks it for the next request: libcurl 7.88 takes a
 * socket with bytes waiting for a live one and reads those bytes as the next
 * request's answer (an upstream that sent a stray response would hand every
 * client the answer meant for the one before). So the sockets curl opens for
 * connections (open_cb) keep one event each for their life: while a transfer
 * is on one it watches what curl asks for, and while curl keeps it idle it
 * watches for reading, and a socket that turns readable then (stray bytes, a
 * close, a reset) is made one that reads as closed: curl's own check finds it
 * dead and closes it. curl owns the descriptor, so it is not closed here but
 * replaced (dup2) by one end of a socket pair whose other end is closed; the
 * TCP connection goes with the replaced file. Draining the bytes and shutting
 * the socket down would not do: bytes that came after that reset the
 * connection, and libcurl 7.88 takes a reset socket for a live one.
 *
 * Keeping the event registered across idle spells also spares the two
 * epoll_ctl() calls a request cost when it was deleted at each CURL_POLL_REMOVE
 * and added again at the next transfer. Other sockets curl hands to sock_cb
 * (the threaded resolver's socket pair, which curl closes without close_cb)
 * take the plain path (struct sock_ctx). */

static struct conn_sock *conn_of(struct up_client *cl, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < cl->n_conns ? cl->conns[fd] : NULL;
}

static void conn_event_cb(evutil_socket_t fd, short what, void *arg);

/* Register what the socket is watched for (0: nothing), if it changed. */
static int conn_watch(struct conn_sock *cs, short kind)
{
    if (cs->kind == kind)
        return 0;
    if (cs->kind)
        event_del(&cs->ev);
    cs->kind = 0;
    if (!kind)
        return 0;
    event_assign(&cs->ev, cs->cl->base, cs->fd, (short)(kind | EV_PERSIST), conn_event_cb, cs);
    if (event_add(&cs->ev, NULL) != 0)
        return -1;
    cs->kind = kind;
    return 0;
}

/* Whether a live transfer of curl's is on fd (paused, so curl does not watch it). */
static int fd_in_use(struct up_client *cl, curl_socket_t fd)
{
    for (struct up_xfer *x = cl->xfers; x; x = x->next)
        if (x->easy && x->fd == fd)
            return 1;
    return 0;
}

/* End the TCP connection of fd, a socket curl owns, leaving in its place
 * one that reads as closed, so that curl's own check drops it. */
static void conn_end(curl_socket_t fd)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        shutdown(fd, SHUT_RDWR); /* the next best: a close, unless more bytes come */
        return;
    }
    close(pair[1]);
    if (dup2(pair[0], fd) < 0)
        shutdown(fd, SHUT_RDWR);
    close(pair[0]);
}

/* An idle connection turned readable. */
static void conn_idle_readable(struct conn_sock *cs)
{
    curl_socket_t fd = cs->fd;
    char b;
    ssize_t n;

    cs->idle = 0;
    conn_watch(cs, 0);
    if (fd_in_use(cs->cl, fd))
        return; /* the bytes are a paused transfer's: curl watches again on resume */
    n = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        cs->idle = 1;
        conn_watch(cs, EV_READ);
        return;
    }
    conn_end(fd);
}

/* ==== Idle connections past their time ====
 *
 * libcurl 7.88 closes a cached connection past CURLOPT_MAXAGE_CONN only
 * when a later transfer looks through its cache, so a gateway gone quiet
 * would keep it open until the upstream closes it. Each idle connection's
 * time (118 s, or the upstream's Keep-Alive timeout less a margin, read
 * as h1client reads it) is kept in its struct conn_sock, and one timer,
 * armed for the earliest, ends those past it the way conn_idle_readable()
 * does: curl drops the dead socket at its next look. */

static void conn_expire_cb(evutil_socket_t fd, short what, void *arg)
{
    struct up_client *cl = arg;
    uint64_t now = h1_now_ms(), next = UINT64_MAX;
    (void)fd;
    (void)what;
    cl->expiry.armed = 0;
    for (size_t i = 0; i < cl->n_conns; i++) {
        struct conn_sock *cs = cl->conns[i];
        if (!cs || !cs->idle)
            continue;
        if (cs->idle_until > now) {
            if (cs->idle_until < next)
                next = cs->idle_until;
        } else if (!fd_in_use(cl, cs->fd)) { /* a paused transfer's is not idle */
            cs->idle = 0;
            conn_watch(cs, 0);
            conn_end(cs->fd);
        }
    }
    if (next != UINT64_MAX)
        h1_deadline_arm(&cl->expiry, next);
}

static void conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn_sock *cs = arg;
    struct up_client *cl = cs->cl;
    int running = 0;
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    if (cs->idle) {
        conn_idle_readable(cs);
        return;
    }
    /* cs may be freed in here (close_cb). */
    curl_multi_socket_action(cl->multi, fd, flags, &running);
    check_done(cl);
}

/* A socket for a connection, made as curl makes one, and its entry in the
 * table (out of memory it has none and takes the plain path: curl's own
 * check before reuse still finds a closed connection). */
static curl_socket_t open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct up_xfer *x = clientp;
    struct up_client *cl = x->cl;
    struct conn_sock *cs;
    curl_socket_t fd;
    (void)purpose;

    fd = socket(addr->family, addr->socktype, addr->protocol);
    if (fd < 0) {
        x->socket_errno = errno; /* curl says only "could not connect" (classify) */
        return CURL_SOCKET_BAD;
    }
    x->sockets_opened++;
    if ((size_t)fd >= cl->n_conns) {
        size_t n = (size_t)fd + 64;
        struct conn_sock **t = realloc(cl->conns, n * sizeof *t);
        if (!t)
            return fd;
        memset(t + cl->n_conns, 0, (n - cl->n_conns) * sizeof *t);
        cl->conns = t;
        cl->n_conns = n;
    }
    cs = calloc(1, sizeof *cs);
    if (!cs)
        return fd;
    cs->cl = cl;
    cs->fd = fd;
    cl->conns[fd] = cs;
    cl->n_curl_open++;
    return fd;
}

static void conn_free(struct up_client *cl, curl_socket_t fd)
{
    struct conn_sock *cs = conn_of(cl, fd);
    if (!cs)
        return;
    conn_watch(cs, 0);
    cl->conns[fd] = NULL;
    cl->n_curl_open--;
    free(cs);
}

/* curl closes a connection's socket: its event goes first. */
static int close_cb(void *clientp, curl_socket_t fd)
{
    conn_free(clientp, fd);
    return close(fd);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *sockp)
{
    struct up_client *cl = userp;
    struct sock_ctx *sc = sockp;
    struct conn_sock *cs = conn_of(cl, s);
    struct up_xfer *x = NULL;
    long version = 0;
    short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) |
                         (what & CURL_POLL_OUT ? EV_WRITE : 0));

    if (cs) {
        if (what == CURL_POLL_REMOVE) {
            /* Kept in curl's cache, or about to be closed (close_cb). Not an
             * HTTP/2 connection: frames may come on it while idle (a PING),
             * which curl's HTTP/2 code reads before reusing it. */
            cs->idle = !e || curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version) != CURLE_OK ||
                       (version != CURL_HTTP_VERSION_2_0 && version != CURL_HTTP_VERSION_3);
            if (conn_watch(cs, cs->idle ? EV_READ : 0) != 0)
                cs->idle = 0;
            if (cs->idle) {
                if (!e || curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x) != CURLE_OK)
                    x = NULL;
                cs->idle_until = h1_now_ms() + (uint64_t)(x ? x->keep_ms : H1_IDLE_MAX_MS);
                h1_deadline_arm(&cl->expiry, cs->idle_until);
            }
            return 0;
        }
        cs->idle = 0;
        if (curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x) == CURLE_OK && x)
            x->fd = s;
        return conn_watch(cs, kind);
    }

    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            if (sc->has_ev)
                event_del(&sc->ev);
            free(sc);
            curl_multi_assign(cl->multi, s, NULL);
        }
        return 0;
    }
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc)
            return -1;
        sc->cl = cl;
        sc->fd = s;
        curl_multi_assign(cl->multi, s, sc);
    } else if (sc->has_ev) {
        event_del(&sc->ev);
    }
    event_assign(&sc->ev, cl->base, s, (short)(kind | EV_PERSIST), event_cb, sc);
    sc->has_ev = 1;
    event_add(&sc->ev, NULL);
    return 0;
}

/* libcurl honours proxy variables; h1client does not, so they send every
 * URL to libcurl. */
static int proxy_in_environment(void)
{
    static const char *const names[] = {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v)
            return 1;
    }
    return 0;
}

/* LLMROUTE_UPSTREAM_CLIENT=curl: libcurl for every URL (for comparison). */
static int curl_wanted(void)
{
    const char *v = getenv("LLMROUTE_UPSTREAM_CLIENT");
    return v && strcmp(v, "curl") == 0;
}

struct up_client *up_client_new(struct event_base *base)
{
    struct up_client *cl = calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    cl->base = base;
    evtimer_assign(&cl->expiry.ev, base, conn_expire_cb, cl);
    cl->multi = curl_multi_init();
    cl->timer = evtimer_new(base, timer_cb, cl);
    if (!cl->multi || !cl->timer) {
        up_client_free(cl);
        return NULL;
    }
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    /* Keep enough idle connections for a busy gateway's keep-alive. */
    curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, 1024L);
    /* Without h1client (out of memory, or not wanted) libcurl takes all. */
    if (!proxy_in_environment() && !curl_wanted())
        cl->h1 = h1_client_new(base);
    return cl;
}

void up_client_limit(struct up_client *cl, size_t max_open)
{
    long n = max_open > 1024 ? 1024 : (long)max_open;
    cl->max_open = max_open;
    if (cl->h1)
        h1_client_limit(cl->h1, max_open, &cl->n_curl_open);
    /* curl's own: its total (it closes its oldest idle connection before it
     * passes it) and the idle ones it caches. */
    curl_multi_setopt(cl->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max_open);
    curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, max_open ? n : 1024L);
}

void up_client_free(struct up_client *cl)
{
    if (!cl)
        return;
    while (cl->xfers) {
        cl->xfers->aborted = 1;
        xfer_unlink_free(cl->xfers);
    }
    h1_client_free(cl->h1);
    for (int i = 0; i < cl->n_idle; i++)
        curl_easy_cleanup(cl->idle[i]);
    if (cl->multi)
        curl_multi_cleanup(cl->multi); /* closes its connections through close_cb */
    for (size_t i = 0; i < cl->n_conns; i++)
        conn_free(cl, (curl_socket_t)i);
    free(cl->conns);
    evtimer_del(&cl->expiry.ev);
    if (cl->timer)
        event_free(cl->timer);
    free(cl);
}
