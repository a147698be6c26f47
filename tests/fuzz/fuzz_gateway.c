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
    int sel, client = -1, closed = 0;

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
        char sink[8192];
        ssize_t r;
        if (sent < req_len) {
            ssize_t w = write(client, req + sent, req_len - sent);
            if (w > 0)
                sent += (size_t)w;
        }
        event_base_loop(gw.base, EVLOOP_NONBLOCK);
        upstream_turn(up, &n_up, up_answer, answer_len);
        while ((r = read(client, sink, sizeof sink)) > 0)
            if (getenv("FUZZ_GATEWAY_SHOW")) /* the answers, to see what a seed does */
                fwrite(sink, 1, (size_t)r, stderr);
        if (r == 0 || (r < 0 && errno != EAGAIN))
            closed = 1;
        /* Waiting on a timer or a worker: give it time, not the CPU. */
        if (turn > 200)
            nanosleep(&(struct timespec){0, 100000}, NULL);
    }
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
