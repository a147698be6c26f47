/* gateway.h -- the OpenAI-compatible gateway (`llmroute serve`): what its
 * modules share.
 *
 *   gateway.c   the process: event loop, listening, signals, dispatch by path
 *   gwconf.c    a loaded configuration: server settings, routers, backends
 *   proxy.c     forwarding chat/completions/embeddings/responses: route, rewrite, relay
 *   mock.c      the in-process mock backend
 *   api.c       /health, /metrics, /v1/models, /v1/route, /v1/feedback
 *   embedq.c    a query's vector from the remote embedder, on the loop
 *   offload.c   worker threads for what must not run on the loop
 *   metrics.c   Prometheus metrics and the per-model state table
 *   errors.c    OpenAI-shaped error bodies
 *   httpd.c     the HTTP/1.1 server;  upstream.c  libcurl multi on the loop
 *   h1client.c  the gateway's own HTTP/1.1 client for http:// upstreams
 *   jsonscan.c  byte ranges of top-level JSON members
 *   resil.c     failure classes, retry policies, the circuit breaker
 *   connlimit.c the client connection cap and the descriptor limit
 *   affinity.c  which model served a Responses id (response affinity)
 *
 * Threads: one event loop thread runs the whole gateway; nothing here is
 * locked. A configuration (struct gw_conf) is reference-counted so a reload
 * can swap it while requests that started under the old one finish with it.
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "httpd.h"
#include "llmroute.h"
#include "resil.h"

struct event_base;
struct event;
struct up_client;
struct metrics;
struct af_table;
struct exchange;
struct gw_offload;

/* ==== Options from the command line ==== */

struct gw_options {
    const char *config_path;
    const char *listen;    /* HOST:PORT overriding server.listen, or NULL */
    const char *store;     /* history store file, or NULL */
    const char *port_file; /* write the bound port here once listening, or NULL */
    /* --store-read-only: the store is opened read-only (a file this process
     * may not write); routing and refreshes work, POST /v1/feedback answers
     * 501 store_read_only. */
    int store_read_only;
};

/* Run the gateway until SIGTERM/SIGINT. Returns a process exit code
 * (0 after a clean shutdown, 1 runtime failure, 2 configuration error). */
int gw_run(const struct gw_options *opts);

/* ==== Configuration (gwconf.c) ==== */

struct mock_spec {
    long latency_ms;     /* before the first byte */
    long chunk_delay_ms; /* between streamed events */
    long tokens;         /* completion tokens reported; <0: one per word */
    long chunks;         /* content pieces when streaming */
    const char *content; /* the reply text (owned by the gw_model) */
};

struct gw_model {
    const struct lr_model_info *info;
    char *base_url;   /* without a trailing '/', or NULL */
    char *auth;       /* "Bearer KEY", read from api_key_env at load; never logged */
    char *headers;    /* the model's `headers` as "Name: value\r\n" lines, or NULL;
                         env values read at load; never logged */
    char *model_json; /* upstream_model as a JSON string, quotes included */
    int is_mock;
    struct mock_spec mock;
    char *mock_content;
    struct rs_policy policy;   /* the model's own `retry` / `timeouts` (an overlay) */
    struct model_stats *stats; /* its entry in the metrics table, found on first use */
};

struct gw_router {
    char *strategy;
    struct lr_router *router;
};

/* server.max_json_values by default. Bodies are parsed whole with jansson,
 * which costs up to about 230 bytes per value (an empty object `{}`, two
 * bytes of text): at this bound a parse costs at most about 45 MB, where a
 * 4 MiB body of `{},` costs 320 MB. It is generous for real bodies: the
 * largest /v1/route body (1,000 queries, each with 64 candidate names)
 * holds about 71,000 values, and a chat body with 128 tools and hundreds
 * of messages some 15,000. */
#define GW_MAX_JSON_VALUES_DEFAULT 200000
/* A body of this many values parses into a tree of some 5 to 11 MB: a
 * second later the gateway hands freed memory back (gateway.c, on_trim). */
#define GW_TRIM_VALUES 50000

struct gw_settings {
    char listen_host[64];
    int listen_port;
    size_t max_body_bytes;
    size_t max_json_values; /* values a JSON request body may hold; over it: 413 */
    size_t max_header_bytes;
    size_t max_response_bytes;
    size_t stream_buffer_bytes;
    size_t max_stream_event_bytes; /* one SSE event held whole before it is relayed */
    long idle_timeout_ms;
    long shutdown_timeout_ms;
    long max_connections; /* client connections; 0: derived from the descriptor limit */
    long connect_timeout_ms;
    long upstream_timeout_ms;
    int log_requests;
    long log_refused_per_s; /* 4xx log lines a second, bursts of 10 times it; 0: no limit */
    long store_refresh_ms; /* read other processes' commits to the store; 0: never */
    long store_rebuild_min_ms; /* least time between two periodic convergence rebuilds */
    long long feedback_key_ttl_s; /* how long an Idempotency-Key is remembered; 0: for good */
    size_t response_affinity_entries; /* response ids remembered (affinity.h); 0: none */
    struct rs_policy policy; /* server.resilience.retry / .timeouts: complete */
    struct rs_breaker_conf breaker;
    struct rs_queue_conf queue;
    char *api_keys_env;
    char **api_keys; /* NULL-terminated; NULL when no gateway keys */
    /* The keys POST /v1/feedback takes instead, when set: feedback feeds
     * the history every smart route decides from, so it may be kept from
     * the clients that only route. */
    char *feedback_api_keys_env;
    char **feedback_api_keys; /* NULL-terminated; NULL: feedback takes the client keys */
};

struct gw_conf {
    int refs;
    struct lr_config *cfg;
    struct gw_model *models;
    size_t n_models;
    struct gw_router *routers;
    size_t n_routers, cap_routers;
    struct gw_settings set;
    const char *query_text;         /* "last_user" or "all_user" */
    struct rs_policy *route_policy; /* per route: its `retry` / `timeouts` (overlays) */
    struct lr_store *store;         /* the gateway's history store (borrowed), or NULL */
    /* A dense store's embedder: where proxy.c fetches query vectors. */
    const struct lr_embedding_info *embed; /* NULL: the store is not dense */
    char *embed_url;                       /* {base_url}/embeddings */
    char *embed_auth;                      /* "Bearer ..." or NULL */
    const char *who; /* warnings' prefix: "llmroute serve" or the checker's (static) */
    /* Loaded by a reload of the running gateway: warnings go to its log as
     * reload_warning events (JSON lines), not as "who: warning: ..." text. */
    int reload;
    const char *path; /* the file, named in warnings (borrowed: read while loading only) */
};

/* Whether a value read from the environment may not go into a request
 * header: a control character (a tab is allowed) would end the header early,
 * and a CR LF would add headers of the environment's choosing. Used for
 * every value sent from the environment (a model's `headers`, its
 * api_key_env, router.embedding's, here and in the command's embedder
 * client, src/cli/embed_http.c); the messages name the field and the
 * variable, never the value, which is often a secret. */
int gw_env_value_unsafe(const char *value);
/* The config index of the first model that names[0..n) lists a second
 * time (names the configuration does not know are passed over), or -1:
 * what the library refuses as "model '...' is listed twice among the
 * candidates" (router.c), checked by the gateway before it fetches a
 * query's vector, so that the caller's slip is refused as over a built-in
 * store rather than after a fetch (a 502 when the embedder is down). */
int gw_repeated_candidate(const struct lr_config *cfg, const char *const *names, size_t n);

/* Load a configuration file into a new gw_conf (refs = 1). listen overrides
 * server.listen when not NULL. On failure returns an LR_E* code and fills err
 * with a message that names the file (once). */
int gw_conf_load(const char *path, const char *listen, struct lr_store *store,
                 struct gw_conf **out, struct lr_error *err);
/* gw_conf_load() for a SIGHUP: the same checks (store is the one the
 * gateway opened at start, which the new file's router.embedding must
 * fit as at start), its warnings written as {"event": "reload_warning"}
 * lines, the running gateway's log being JSON lines. */
int gw_conf_reload(const char *path, const char *listen, struct lr_store *store,
                   struct gw_conf **out, struct lr_error *err);
/* Check a configuration file as gw_conf_load does (the library's checks,
 * then `server`, each model's backend and each route's retry and timeouts,
 * with the environment read the same way, then every router, over store,
 * which may be NULL as for serve without one): what `llmroute check-config`
 * runs. Warnings go to stderr after `who` (a static string). On success *out
 * is a gw_conf (refs = 1) to read the summary from and gw_conf_unref(); it
 * must never be served. On failure returns an LR_E* code and fills err with
 * a message that names the file. */
int gw_conf_check(const char *path, struct lr_store *store, const char *who,
                  struct gw_conf **out, struct lr_error *err);
/* The history store serve uses with the configuration at config_path: the
 * file store_flag names (--store), or else the config's router.store, with
 * the config's router.embedding as its embedder. *path_out (malloc'd) is
 * that path, or NULL when neither names one (then *out is NULL too). serve
 * (check 0) opens it, making it when missing; check-config (check 1) opens
 * an existing file read-only and, for a missing one, the empty store serve
 * would make, in memory. Unless read_only (--store-read-only), a file
 * this process may not write is refused by both, with the library's
 * message (check-config asks the library for a writable open of it, which
 * refuses it before writing anything); with read_only both open it
 * read-only, and a missing file is an error (nothing makes it). The
 * config is read here for those two fields only: when it cannot be read,
 * this returns 0 (with no store unless store_flag names one) and leaves
 * the error to the full load. *created (may be NULL) says whether the open
 * made the file, so that serve failing to start removes it again. Returns
 * 0 or an LR_E* code with err filled (naming the file). */
int gw_store_open(const char *config_path, const char *store_flag, int check, int read_only,
                  struct lr_store **out, char **path_out, int *created, struct lr_error *err);
/* 1 when path names a file that does not exist yet (not SQLite's in-memory
 * or URI names), which a writable store open will create: serve and import
 * remove a store they made when they fail. */
int gw_store_is_new(const char *path);
/* Write s to out with its control characters escaped (\n, \r, \t, \xHH:
 * an ESC is \x1b), so that nothing quoted moves the cursor or starts a
 * terminal's escape sequence: every message the CLI prints (cli_error())
 * and serve's and check-config's are one line, whatever they quote (a
 * --store path, a key or a name from the config). */
void gw_put_escaped(FILE *out, const char *s);
/* Check a --listen value (HOST:PORT, [IPV6]:PORT) as server.listen is
 * checked: 0, or LR_ECONFIG with err filled ("--listen: ..."). `llmroute
 * serve` checks it before gw_run() opens (and perhaps makes) the store. */
int gw_listen_check(const char *listen, struct lr_error *err);
/* The router for a strategy name (NULL: the config's default), built on first
 * use and kept with the configuration. NULL with err filled when the
 * strategy is unknown or cannot be built. */
struct lr_router *gw_conf_router(struct gw_conf *conf, const char *strategy, struct lr_error *err);
/* Whether router routes a query among n_candidates by its vector from the
 * remote embedder (a smart router over a dense store, two or more
 * candidates), so the vector is fetched before it decides: a chat
 * request's (proxy.c) and /v1/route's (api.c). A single candidate is its
 * own ranking (the library's rule) and needs none; feedback always does,
 * since it stores the vector, and does not ask here. */
int gw_conf_needs_vector(const struct gw_conf *conf, const struct lr_router *router,
                         size_t n_candidates);
/* Whether router ranks a query among n_candidates by its history (a smart
 * router, two or more candidates): then the query needs its text, over a
 * store of either embedder (the library's rule, smart.c). */
int gw_router_has_choice(const struct lr_router *router, size_t n_candidates);
void gw_conf_ref(struct gw_conf *conf);
void gw_conf_unref(struct gw_conf *conf);

/* ==== The running gateway ==== */

struct gw {
    struct event_base *base;
    struct hs_server *http;
    struct up_client *upstream;
    struct gw_conf *conf; /* current; requests hold their own reference */
    struct lr_store *store; /* history store for smart routes and feedback, or NULL */
    char *store_path;       /* where it was opened from */
    /* The address the gateway listens on, as the configuration it started
     * with gave it (a reload cannot move it): what a reload's server.listen
     * is compared with. */
    char listen_host[64];
    int listen_port;
    struct metrics *metrics;
    /* Which configured model served each POST /v1/responses answer, by
     * response id (affinity.h), bounded by server.response_affinity_entries;
     * kept over reloads. On the loop only. */
    struct af_table *affinity;
    const struct gw_options *opts;
    uint64_t next_id;
    uint64_t id_seed;
    uint64_t rng; /* backoff jitter (xorshift state) */
    int shutting_down;
    /* The shutdown deadline passed and the requests in flight were answered:
     * a forwarding request that comes in later (its body completed in the
     * time left for those answers to go out) is refused at once (proxy.c).
     * 1: the deadline passed; 2: a second stop signal came (its words). */
    int shutdown_answered;
    long fd_reserve; /* descriptors kept from client connections (connlimit.h) */
    long max_conns;  /* the client connection cap in force */
    /* Requests waiting for a model with room (proxy.c), oldest first. */
    struct exchange *wait_head, *wait_tail;
    long n_waiting;
    struct event *wake; /* runs the queue after an attempt frees a slot */
    struct exchange *live; /* every forwarding request not yet finished (proxy.c) */
    struct gw_offload *offload; /* worker threads (offload.c) */
    /* Bytes the /v1/route jobs alive hold (api.c), bounded by a budget
     * that refuses more with 503 server_busy. On the loop only. */
    size_t route_held;
    /* Pending a second after a body of GW_TRIM_VALUES or more was
     * checked: then freed memory is handed back (gateway.c). */
    struct event *trim_timer;
    /* The log lines of 4xx answers, rate-limited (gw_log_request()): a
     * token bucket of server.log_refused_per_s a second holding up to
     * GW_LOG_REFUSED_BURST seconds' worth, the lines left out since the
     * last summary, and the timer that writes that summary a second after
     * the first of them. */
    double log_tokens;
    double log_tokens_at; /* gw_now() of the last refill; 0: the bucket is not filled yet */
    uint64_t log_suppressed;
    struct event *log_timer;
    /* When the last feedback append found the store busy (gw_now()), or 0;
     * written and read by the feedback jobs only, one at a time (their
     * lane, offload.c; api.c). */
    double store_busy_at;
    /* Periodic lr_store_refresh on a worker (gateway.c), one at a time. */
    struct event *refresh_timer;
    int refresh_busy;    /* a refresh is on a worker */
    int refresh_again;   /* SIGHUP came during it: refresh again when it ends */
    int refresh_stopped; /* shutting down: start no more */
    /* Convergence to a fresh open (gateway.c): SIGHUP asks for it (until a
     * refresh takes the request), and the periodic refresh runs it once
     * server.store_rebuild_min_ms, and CONVERGE_COST_FACTOR times the last
     * rebuild's duration, have passed since rebuilt_at. On the loop only. */
    int converge_asked;
    double rebuilt_at; /* gw_now() when the last rebuild (or the open) ended */
    double rebuild_s;  /* how long it took; 0 for the open */
    /* The store's path no longer names the file it opened (LR_EREPLACED
     * from an append or a refresh), logged once for each reason (the
     * last one logged kept here: "removed", then why the file put there
     * cannot be opened, ...); cleared when a refresh has opened the file
     * now at the path. On the loop only. */
    int store_replaced;
    char store_replaced_why[512];
    /* Refreshes are failing, the last store_refresh_failed logged said
     * this: the same failure at every period (a store with a row no import
     * writes, say) is counted, not logged again, until a refresh succeeds
     * or fails for another reason. On the loop only. */
    int refresh_failing;
    char refresh_failed_why[512];
    /* Refreshes failing alike (the same result and message, refresh_last_*)
     * back off: the next period is 2^refresh_backoff times
     * server.store_refresh_ms, up to REFRESH_BACKOFF_MAX_DOUBLINGS doublings
     * and REFRESH_BACKOFF_MAX_MS (gateway.c). A success, another failure or
     * SIGHUP starts over at the period. On the loop only. */
    int refresh_backoff;
    int refresh_last_rc;
    char refresh_last_why[512];
};

/* Refresh the history store on a worker now (gateway.c), or when the
 * refresh in flight ends. */
void gw_store_refresh_start(struct gw *gw);
/* An append or a refresh found the store's file replaced or removed
 * (LR_EREPLACED, `message` why): logged as a store_replaced event the first
 * time, and a refresh started, which opens the file now at the path. */
void gw_store_replaced(struct gw *gw, const char *message);

/* Offer the capacity queue's waiters a try now (after a reload, whose
 * max_concurrency or queue limits they are held to at once). */
void proxy_queue_kick(struct gw *gw);
/* Free what the proxy keeps on the gateway (the wake event). */
void proxy_shutdown(struct gw *gw);
/* The shutdown deadline passed (or, with second_signal, a second SIGTERM
 * or SIGINT came): answer every forwarding request still in flight (a 503
 * server_shutting_down, or an error event ending a stream), log and count
 * each as 503 "shutdown", and free them. A forwarding request that arrives
 * after this gets the same 503 at once, with no attempt. */
void proxy_shutdown_answer(struct gw *gw, int second_signal);

/* The endpoint label of a request's path in the metrics: the path itself
 * when it is one of the gateway's endpoints (a static string from its
 * fixed table), else "other", so no request chooses a series' name. */
const char *gw_endpoint_label(const char *path);
/* Whether method is one of list's, methods joined by ", " ("GET, HEAD"). */
int gw_method_listed(const char *list, const char *method);
/* The methods a request about a response id takes at path
 * (/v1/responses/{id}, .../cancel, .../input_items), as an Allow list, or
 * NULL for another path under /v1/responses/ (proxy.c). */
const char *gw_response_op_allow(const char *path);

/* Monotonic time in seconds. */
double gw_now(void);
/* Wall-clock seconds since the epoch, and such a time as RFC 3339 UTC to
 * the millisecond ("2026-12-01T00:08:10.393Z"; cap of 32 is enough), the
 * log line's `ts` and /health's times. */
double gw_wall_now(void);
void gw_utc_time(double at, char *buf, size_t cap);

/* Whether a query text has nothing to find neighbours by: none, empty, or
 * spaces, tabs and line breaks alone. No vector is fetched for it; a chat's
 * smart route ranks it on each candidate's store-wide prior (the library's
 * rule for a blank, smart.c) and its log line says "query_blank": true,
 * where /v1/route refuses a query with no text, as the library does. */
int gw_query_blank(const char *q);

/* Whether a JSON request body holds more values than conf's
 * server.max_json_values (counted by jsonscan.h's js_count_values, before
 * any parse, unless JS_MAX_VALUES says the body is too short to hold that
 * many): 1 with the 413's message in msg, else 0. A body of
 * GW_TRIM_VALUES or more starts gw->trim_timer. */
int gw_body_over_value_limit(struct gw *gw, const struct gw_conf *conf, const char *body,
                             size_t len, char *msg, size_t cap);

/* A request id: the client's x-request-id when it is sane (up to 128
 * bytes), else generated. buf has room for GW_REQUEST_ID_CAP bytes, so the
 * client's id is kept whole wherever it is echoed or logged. */
#define GW_REQUEST_ID_CAP 136
void gw_request_id(struct gw *gw, struct hs_req *req, char *buf, size_t cap);

/* One JSON line on stderr for a finished request (no prompt text). */
struct gw_log {
    const char *id, *method, *path, *route, *model, *strategy;
    int status;
    int stream;
    double latency_ms, upstream_ms, ttft_ms; /* < 0: not applicable */
    long tokens_in, tokens_out;              /* < 0: unknown */
    double cost;                             /* NaN: unknown */
    const char *error;                       /* NULL, or why it failed (a code) */
    const char *message;                     /* NULL, or the failure's message */
    int attempts;                            /* upstream attempts; < 0: not forwarded */
    const char *attempts_json;               /* each attempt's model and outcome, or NULL */
    long long after_done_bytes; /* stream bytes after [DONE] or a terminal event, dropped */
    int done_added; /* the stream ended cleanly, finished, without [DONE]: the gateway added it */
    int query_blank; /* a smart strategy ranked a blank query: no neighbours, the priors */
    /* The last upstream attempt's x-request-id, or NULL. */
    const char *upstream_request_id;
};
/* The line of an answer 400 to 498 (a refused request; 499, a client
 * gone, is not one) counts against server.log_refused_per_s: past it the
 * line is left out, and a log_suppressed event a second later says how
 * many were (gw_log_flush_suppressed() writes it at once). */
void gw_log_request(struct gw *gw, const struct gw_log *log);
void gw_log_flush_suppressed(struct gw *gw);
/* A burst of 4xx lines may take this many seconds' worth of the rate. */
#define GW_LOG_REFUSED_BURST 10
/* Count and log a request the gateway answered itself (not forwarded),
 * started at t0 (gw_now()); error may be NULL. */
void gw_log_answered(struct gw *gw, const char *id, const char *method, const char *path,
                     int status, const char *error, double t0);
/* The same, with the failure's message (may be NULL) on the line as
 * "message", as events carry theirs. */
void gw_log_answered_msg(struct gw *gw, const char *id, const char *method, const char *path,
                         int status, const char *error, const char *message, double t0);

/* ==== Errors (errors.c) ==== */

/* Room for at least `need` bytes in *buf, of *cap allocated: the capacity
 * doubles from `first` until it fits. Returns 0, or -1 out of memory with
 * *buf and *cap as they were. */
int gw_reserve(char **buf, size_t *cap, size_t need, size_t first);

/* Format {"error": {"message", "type", "param", "code"}} into buf. param and
 * code may be NULL (JSON null). Returns the length written (truncated to fit). */
size_t gw_error_format(char *buf, size_t cap, const char *message, const char *type,
                       const char *param, const char *code);
/* The length of the whole, valid UTF-8 character at p (1 for ASCII), or 0
 * when p does not start one (a stray byte, an overlong form, a surrogate, a
 * sequence cut short by the string's NUL). */
size_t gw_utf8_char_len(const unsigned char *p);
/* A name a client gave (a model's, a route's) as a message quotes it, as
 * the library's messages do: printable ASCII and valid UTF-8 from U+00A0
 * stay, a backslash and a quote become \\ and \', any other byte \xNN, and
 * past GW_NAME_SHOWN bytes of the name "..." ends it. out holds cap bytes,
 * GW_NAME_SHOWN_CAP for the whole. Returns out. */
#define GW_NAME_SHOWN 200
#define GW_NAME_SHOWN_CAP (GW_NAME_SHOWN * 4 + 8)
const char *gw_name_shown(const char *name, char *out, size_t cap);
/* s as a JSON string, quotes included, written at buf + o within cap bytes
 * (NUL-terminated): escapes, stray bytes as U+FFFD, and a cut never inside a
 * character, so the result stays valid JSON. Returns the new offset. */
size_t gw_json_string(char *buf, size_t cap, size_t o, const char *s);
/* A redirect's Location quoted in a message: "a redirect to 'URL'" (the URL
 * cut to GW_LOCATION_SHOWN bytes between characters, "..." marking the cut,
 * control characters, C1 (U+0080 to U+009F) too, as '?', bytes that are not
 * UTF-8 as U+FFFD: the upstream chose them), or "a redirect without a
 * Location" when location is NULL or empty. */
#define GW_LOCATION_SHOWN 200
#define GW_REDIRECT_PHRASE_CAP (GW_LOCATION_SHOWN + 40)
void gw_redirect_phrase(char *dst, size_t cap, const char *location);

/* Whether an embedding server's vector v[0..n) points anywhere: the sum of
 * its squares, as lr__l2_normalize() adds them, is above 0 and finite. A
 * vector of zeros (or of floats too small for their squares to add up to
 * anything) would be refused by the library as the query's fault; both
 * clients of an embedding server (embedq.c, the CLI's embed_http.c) refuse
 * it as the server's. */
int gw_vector_has_direction(const float *v, size_t n);
/* The message of an embedding server's error answer, in the shapes both
 * its clients read (embedq.c, the CLI's embed_http.c): OpenAI's
 * {"error": {"message"}}, {"error": "..."} (Ollama, TEI), {"message"}
 * (vLLM), {"detail"}. Copied into buf (cap bytes with the NUL), cut between
 * UTF-8 characters when longer. Returns 1, or 0 (buf left empty) when body
 * is no such object: the caller quotes the body itself. */
int gw_embed_error_message(const char *body, size_t len, char *buf, size_t cap);
/* The default type and code for a status. */
const char *gw_error_type(int status);
/* The type for an answer of this status and code (code may be NULL). */
const char *gw_error_type_of(int status, const char *code);
const char *gw_error_code(int status);
/* hs_error_fn for the HTTP server's own errors (400, 413, 431). */
size_t gw_error_body(char *buf, size_t cap, int status, const char *message);
/* Answer req with an error; completes the request. */
void gw_send_error(struct hs_req *req, int status, const char *param, const char *code,
                   const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* The code of the last error this thread answered with gw_send_error(), for
 * the request's log line; clear != 0 forgets it. NULL when none since. */
const char *gw_error_sent(int clear);

/* ==== A query's vector from the remote embedder (embedq.c) ==== */

struct gw_embed;
/* Why a fetch failed: why for the client's answer, naming the embedder as
 * router.embedding and never by its address; detail for the log line, with
 * its URL and the transport's own words; retry_after the embedder's hint in
 * whole seconds (a 429 or 503 that sent Retry-After), for the answer's
 * Retry-After, or NULL; deadline_passed 1 when the fetch was cut at the
 * request's deadline (the caller answers as for an exceeded deadline). */
struct gw_embed_failure {
    const char *why;
    const char *detail;
    const char *retry_after;
    int deadline_passed;
};
/* The fetch's end: vec (dim floats, the callee's to free()), or NULL and
 * why it failed. Runs from the event loop, never inside the transfer's
 * callback; the fetch is freed after it returns (and f with it). */
typedef void (*gw_embed_fn)(void *arg, float *vec, size_t dim, const struct gw_embed_failure *f);
/* Fetch text's vector from conf's embedder (conf->embed must be set; the
 * caller keeps conf alive until the callback or a cancel). deadline is the
 * request's, a gw_now() time (0: none): the fetch gets what is left of it
 * when that is less than router.embedding.timeout_ms, at least 1 ms, and
 * fails with deadline_passed set when it runs out. NULL when out of memory
 * (no callback will run). */
struct gw_embed *gw_embed_start(struct gw *gw, const struct gw_conf *conf, const char *text,
                                double deadline, gw_embed_fn done, void *arg);
/* Abort a fetch whose callback has not run; no callback will. NULL is a no-op.
 * For a client gone: a fetch in flight is counted as class "cancelled". */
void gw_embed_cancel(struct gw_embed *e);
/* The same, counting nothing: the gateway stops a fetch whose answer it no
 * longer needs (a /v1/route batch whose other fetch failed, and whose
 * failure is the one counted). */
void gw_embed_abandon(struct gw_embed *e);

/* ==== Work off the loop (offload.c) ==== */

/* work(arg) runs on a worker thread, then done(arg) on the loop thread. */
typedef void (*gw_work_fn)(void *arg);
typedef void (*gw_done_fn)(void *arg);
/* Start the workers; 0, or -1 when threads or the wake-up pipe fail. */
int gw_offload_start(struct gw *gw);
/* Queue a job; -1 when out of memory (nothing will run). */
int gw_offload(struct gw *gw, gw_work_fn work, gw_done_fn done, void *arg);
/* The lanes of jobs that may wait on a store another process holds: the
 * feedback appends, and the store refresh. */
enum gw_lane { GW_LANE_FEEDBACK = 1, GW_LANE_REFRESH = 2 };
/* The same for a job that runs only when no other job of its lane does;
 * the jobs of other lanes, or of none, pass it while it waits. */
int gw_offload_serial(struct gw *gw, enum gw_lane lane, gw_work_fn work, gw_done_fn done,
                      void *arg);
/* Work and finish every queued job, then stop the workers. */
void gw_offload_stop(struct gw *gw);

/* ==== Endpoints ==== */

enum gw_endpoint { EP_CHAT, EP_COMPLETIONS, EP_EMBEDDINGS, EP_RESPONSES };

/* Forwarding endpoints answer asynchronously and log their own line. */
void proxy_handle(struct gw *gw, struct hs_req *req, enum gw_endpoint ep, const char *id);
/* The others return the status they sent, or 0 when they answer later
 * (/v1/route and /v1/feedback, whose work runs off the loop) and log their
 * own line then. */
int api_health(struct gw *gw, struct hs_req *req, const char *id);
int api_models(struct gw *gw, struct hs_req *req, const char *id);
/* GET /v1/models/{model}: one entry of the list, the name percent-decoded. */
int api_model(struct gw *gw, struct hs_req *req, const char *id);
int api_route(struct gw *gw, struct hs_req *req, const char *id);
int api_feedback(struct gw *gw, struct hs_req *req, const char *id);
int api_metrics(struct gw *gw, struct hs_req *req, const char *id);

#endif
