/* fuzz_gateway.c -- the whole gateway in one process on arbitrary request
 * bodies and arbitrary upstream answers: the request's JSON read for
 * routing (model, models, route, messages, prompt, input, stream), the body
 * rewritten and forwarded, and the upstream's answer (JSON, or an event
 * stream: chat chunks, Responses events, [DONE], usage) relayed or failed
 * over.
 *
 * An input is [selector][request body] "\n@@\n" [upstream body]. The
 * selector's bits 0-2 pick the endpoint (chat, completions, responses,
 * embeddings, route, feedback, models, health), bit 3 the upstream's
 * content type (event stream or JSON), bits 4-5 its status (200, 200, 429,
 * 500). Each input gets a new gateway, as `llmroute serve` sets it up,
 * listening on 127.0.0.1: a client connects and sends the request, and a
 * fake upstream in this process (the model "up") answers each attempt with
 * the upstream body; the route's second model is the in-process mock. The
 * event loop runs until the gateway has answered and closed, and then the
 * metrics page is rendered (its labels escaped) as GET /metrics would.
 *
 * What the client got is held to the gateway's promise that a 200 is JSON
 * whatever the upstream sent (check_answer()): a JSON answer is a whole
 * object by the grammar, and each event of a stream, as an SSE client
 * reads it (lines end at CR, LF or CRLF; its data lines joined), is a
 * whole object or [DONE]. A broken promise aborts.
 *
 * gateway.c is included for its static dispatch.
 *
 * Threads: the loop's, and the gateway's worker threads.
 */
#define _GNU_SOURCE /* memfd_create, memmem */
#include "../../src/gateway/gateway.c"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "fuzz_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_UPSTREAM_CONNS 8

static int upstream_fd = -1;
static char config_path[64];
static struct lr_store *store;

/* Once per process: the fake upstream's socket, the config naming it, and a
 * history store with a few records for the smart route and feedback. */
static int setup(void)
{
    char cfg[2048];
    int port, fd, n;
    struct lr_error err = {0};
    struct lr_store_options so = {0};

    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    upstream_fd = fuzz_listen_loopback(&port);
    if (upstream_fd < 0)
        return -1;
    n = snprintf(
        cfg, sizeof cfg,
        "{\"models\": ["
        "{\"name\": \"up\", \"backend\": \"openai\", \"base_url\": \"http://127.0.0.1:%d/v1\","
        " \"cost_per_input_token\": 1e-6, \"cost_per_output_token\": 2e-6},"
        "{\"name\": \"mock\", \"backend\": \"mock\", \"cost_per_input_token\": 2e-6,"
        " \"cost_per_output_token\": 4e-6, \"mock\": {\"latency_ms\": 0, \"chunks\": 2,"
        " \"content\": \"Paris.\"}}],"
        " \"router\": {\"strategy\": \"sequential\"},"
        " \"routes\": [{\"name\": \"auto\", \"strategy\": \"sequential\","
        " \"models\": [\"up\", \"mock\"]},"
        " {\"name\": \"smart\", \"strategy\": \"smart\", \"models\": [\"up\", \"mock\"]}],"
        " \"server\": {\"listen\": \"127.0.0.1:0\", \"log_requests\": false,"
        " \"max_body_bytes\": 65536, \"store_refresh_ms\": 0,"
        " \"resilience\": {\"retry\": {\"max_attempts\": 3, \"base_delay_ms\": 0,"
        " \"max_delay_ms\": 0, \"max_retry_after_ms\": 0},"
        " \"timeouts\": {\"first_byte_ms\": 2000, \"idle_ms\": 2000, \"total_ms\": 4000}}}}",
        port);
    fd = memfd_create("fuzz-config", 0);
    if (fd < 0 || write(fd, cfg, (size_t)n) != n)
        return -1;
    snprintf(config_path, sizeof config_path, "/proc/self/fd/%d", fd);
    so.threads = 1;
    if (lr_store_open(":memory:", &so, &store, &err) != 0)
        return -1;
    {
        struct lr_outcome o[2] = {{"up", 1.0, 10}, {"mock", 0.0, 5}};
        struct lr_record r = {"What is the capital of France?", 8, NULL, o, 2};
        if (lr_store_add(store, &r, NULL, 0, &err) != 0)
            return -1;
    }
    return 0;
}

struct upstream_conn {
    int fd;
    size_t sent;
};

/* The fake upstream: accept each attempt's connection, answer it whole,
 * shut it for writing, and read (and drop) the request meanwhile. */
static void upstream_turn(struct upstream_conn *c, size_t *n, const char *answer, size_t len)
{
    char sink[4096];
    int fd;
    while (*n < MAX_UPSTREAM_CONNS && (fd = accept(upstream_fd, NULL, NULL)) >= 0) {
        evutil_make_socket_nonblocking(fd);
        c[*n].fd = fd;
        c[*n].sent = 0;
        (*n)++;
    }
    for (size_t i = 0; i < *n; i++) {
        while (read(c[i].fd, sink, sizeof sink) > 0)
            ;
        if (c[i].sent < len) {
            ssize_t w = write(c[i].fd, answer + c[i].sent, len - c[i].sent);
            if (w > 0)
                c[i].sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN)
                c[i].sent = len;
            if (c[i].sent == len)
                shutdown(c[i].fd, SHUT_WR);
        }
    }
}

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_gateway: %s\n", what);
    abort();
}

/* Is d[0..n) a whole JSON object, blanks around it allowed, or (for an
 * event's data, events set) [DONE]? The blanks the gateway trims from an
 * event's data (space, tab, LF) are trimmed first. */
static int whole(const char *d, size_t n, int events)
{
    while (n && (*d == ' ' || *d == '\t' || *d == '\n'))
        d++, n--;
    while (n && (d[n - 1] == ' ' || d[n - 1] == '\t' || d[n - 1] == '\n'))
        n--;
    if (events && (n == 0 || (n == 6 && memcmp(d, "[DONE]", 6) == 0)))
        return 1;
    return js_object_prefix(d, n) == JS_WHOLE;
}

/* The events of an event stream's body b[0..n), read as an SSE client
 * reads them (the WHATWG rules): a UTF-8 BOM at the start dropped, lines
 * ended by CR, LF or CRLF, a `data` field's value (one space after its
 * colon dropped) added to the event's data with an LF after it, the event
 * dispatched at a blank line with that last LF removed. An event the body
 * ends inside was never dispatched, and is not checked. */
static void check_events(const char *b, size_t n)
{
    char *data = malloc(n + 1);
    size_t dn = 0, i = 0;
    if (!data)
        abort();
    if (n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < n) {
        size_t start = i, len;
        while (i < n && b[i] != '\r' && b[i] != '\n')
            i++;
        if (i == n)
            break; /* a line the body ends inside */
        len = i - start;
        i += b[i] == '\r' && i + 1 < n && b[i + 1] == '\n' ? 2 : 1;
        if (len == 0) {
            if (dn && !whole(data, dn - 1, 1))
                fail("an event of a 200 stream is neither a whole JSON object nor [DONE]");
            dn = 0;
        } else if (len >= 4 && memcmp(b + start, "data", 4) == 0 &&
                   (len == 4 || b[start + 4] == ':')) {
            size_t v = len > 4 ? start + 5 : start + 4;
            if (v < start + len && b[v] == ' ')
                v++;
            memcpy(data + dn, b + v, start + len - v);
            dn += start + len - v;
            data[dn++] = '\n';
        }
    }
    free(data);
}

/* A chunked body's data, from b[0..n) into out (as long as b at most);
 * what is cut short or not chunked ends it. Returns its length. */
static size_t dechunk(const char *b, size_t n, char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t size = 0, k = i;
        int d;
        while (k < n && (d = hs_hex_digit((unsigned char)b[k])) >= 0 && size < ((size_t)1 << 40))
            size = size * 16 + (size_t)d, k++;
        while (k < n && b[k] != '\n')
            k++;
        if (k == i || k == n || size == 0 || size > n - k - 1)
            break;
        memcpy(out + o, b + k + 1, size);
        o += size;
        i = k + 1 + size + 2;
    }
    return o;
}

/* The value of header name (lower case) in the head h[0..n), or NULL. */
static const char *header(const char *h, size_t n, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = h, *end = h + n; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && *v == ' ')
                v++;
            *len = (size_t)(eol - v) - (eol > v && eol[-1] == '\r');
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

/* What the client got, a[0..n): a 200's body as the promise above has it. */
static void check_answer(const char *a, size_t n)
{
    const char *end = memmem(a, n, "\r\n\r\n", 4), *ct, *te, *cl;
    size_t hn, ctn = 0, ten = 0, cln = 0, bn;
    if (n < 13 || memcmp(a, "HTTP/1.1 200 ", 13) != 0 || !end)
        return;
    hn = (size_t)(end - a) + 2;
    bn = n - hn - 2;
    ct = header(a, hn, "content-type", &ctn);
    te = header(a, hn, "transfer-encoding", &ten);
    cl = header(a, hn, "content-length", &cln);
    if (!ct)
        return;
    if (ctn >= 17 && strncmp(ct, "text/event-stream", 17) == 0) {
        char *body = malloc(bn + 1);
        if (!body)
            abort();
        check_events(body, te ? dechunk(end + 4, bn, body) : (memcpy(body, end + 4, bn), bn));
        free(body);
    } else if (ctn >= 16 && strncmp(ct, "application/json", 16) == 0 && cl &&
               strtoull(cl, NULL, 10) == bn && !whole(end + 4, bn, 0)) {
        fail("a 200 JSON answer is not a whole JSON object");
    }
}

static const char *const endpoints[8][2] = {
    {"POST", "/v1/chat/completions"}, {"POST", "/v1/completions"}, {"POST", "/v1/responses"},
    {"POST", "/v1/embeddings"},       {"POST", "/v1/route"},       {"POST", "/v1/feedback"},
    {"GET", "/v1/models"},            {"GET", "/health"}};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static const int statuses[4] = {200, 200, 429, 500};
    struct gw gw;
    struct gw_options opts = {0};
    struct lr_error err = {0};
    struct hs_limits lim;
    struct upstream_conn up[MAX_UPSTREAM_CONNS];
    size_t n_up = 0, body_len, answer_len = 0, req_len, sent = 0;
    const char *body, *sep, *answer = NULL;
    char *req = NULL, *up_answer = NULL;
    int sel, client = -1, closed = 0, got_over = 0;
    static char got[1 << 20]; /* what the client got (more is not checked) */
    size_t got_len = 0;

    if (size < 1)
        return 0;
    if (!ready) {
        if (setup() != 0)
            abort();
        ready = 1;
    }
    sel = data[0];
    body = (const char *)data + 1;
    body_len = size - 1;
    sep = memmem(body, body_len, "\n@@\n", 4);
    if (sep) {
        answer = sep + 4;
        answer_len = body_len - (size_t)(answer - body);
        body_len = (size_t)(sep - body);
    }

    /* The gateway, as gw_run() sets it up (no signals, no port file). */
    memset(&gw, 0, sizeof gw);
    opts.config_path = config_path;
    gw.opts = &opts;
    gw.store = store;
    if (gw_conf_load(config_path, NULL, store, &gw.conf, &err) != 0)
        abort(); /* the harness's own config */
    gw.id_seed = 42;
    gw.base = event_base_new();
    gw.metrics = metrics_new();
    gw.upstream = gw.base ? up_client_new(gw.base) : NULL;
    limits_from(gw.conf, &lim);
    gw.http = gw.base ? hs_server_new(gw.base, &lim, handle, gw_error_body, &gw) : NULL;
    if (!gw.base || !gw.metrics || !gw.upstream || !gw.http || gw_offload_start(&gw) != 0)
        goto out;
    hs_server_on_refused(gw.http, refused);
    gw.refresh_timer = evtimer_new(gw.base, on_refresh_timer, &gw);
    if (!gw.refresh_timer || hs_server_listen(gw.http, "127.0.0.1", 0) != 0)
        goto out;

    /* The upstream's answer: a fixed head, the input's body, then EOF. */
    {
        const char *ctype = (sel & 8) ? "text/event-stream" : "application/json";
        int status = statuses[(sel >> 4) & 3];
        char head[160];
        int hn = snprintf(head, sizeof head,
                          "HTTP/1.1 %d X\r\nContent-Type: %s\r\nConnection: close\r\n\r\n",
                          status, ctype);
        up_answer = malloc((size_t)hn + answer_len + 1);
        if (!up_answer)
            goto out;
        memcpy(up_answer, head, (size_t)hn);
        if (answer_len)
            memcpy(up_answer + hn, answer, answer_len);
        answer_len += (size_t)hn;
    }
    /* The client's request. */
    {
        const char *const *ep = endpoints[sel & 7];
        char head[256];
        int hn = snprintf(head, sizeof head,
                          "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                          ep[0], ep[1], body_len);
        req = malloc((size_t)hn + body_len + 1);
        if (!req)
            goto out;
        memcpy(req, head, (size_t)hn);
        memcpy(req + hn, body, body_len);
        req_len = (size_t)hn + body_len;
    }
    {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin.sin_port = htons((unsigned short)hs_server_port(gw.http));
        client = socket(AF_INET, SOCK_STREAM, 0);
        if (client < 0 || connect(client, (struct sockaddr *)&sin, sizeof sin) != 0)
            goto out;
        evutil_make_socket_nonblocking(client);
    }
    for (int turn = 0; turn < 20000 && !closed; turn++) {
        ssize_t r;
        if (sent < req_len) {
            ssize_t w = write(client, req + sent, req_len - sent);
            if (w > 0)
                sent += (size_t)w;
        }
        event_base_loop(gw.base, EVLOOP_NONBLOCK);
        upstream_turn(up, &n_up, up_answer, answer_len);
        while (got_len < sizeof got &&
               (r = read(client, got + got_len, sizeof got - got_len)) > 0) {
            if (getenv("FUZZ_GATEWAY_SHOW")) /* the answers, to see what a seed does */
                fwrite(got + got_len, 1, (size_t)r, stderr);
            got_len += (size_t)r;
        }
        if (got_len == sizeof got) {
            char sink[8192];
            while ((r = read(client, sink, sizeof sink)) > 0)
                got_over = 1;
        }
        if (r == 0 || (r < 0 && errno != EAGAIN))
            closed = 1;
        /* Waiting on a timer or a worker: give it time, not the CPU. */
        if (turn > 200)
            nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    if (closed && !got_over)
        check_answer(got, got_len);
    {
        size_t mlen = 0;
        free(metrics_render(gw.metrics, gw_now(), &mlen));
    }
out:
    if (client >= 0)
        close(client);
    for (size_t i = 0; i < n_up; i++)
        close(up[i].fd);
    /* As gw_run() ends. */
    hs_server_free(gw.http);
    gw.refresh_stopped = 1;
    gw_offload_stop(&gw);
    if (gw.refresh_timer)
        event_free(gw.refresh_timer);
    proxy_shutdown(&gw);
    up_client_free(gw.upstream);
    metrics_free(gw.metrics);
    if (gw.base)
        event_base_free(gw.base);
    gw_conf_unref(gw.conf);
    free(req);
    free(up_answer);
    return 0;
}
