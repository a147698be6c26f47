/* gwconf.c -- what the gateway builds from a configuration file: the
 * `server` settings, one backend description per model (upstream URL, the
 * Authorization value read from the model's api_key_env, its extra request
 * headers with values read from the environment, the upstream model
 * name as a JSON string ready to splice, mock settings), and one lr_router
 * per distinct strategy. Everything is built before it is used, so a reload
 * either yields a complete new configuration or an error and nothing else.
 * With a dense store (a remote embedder's vectors), the configuration's
 * router.embedding must name the store's embedder: the gateway fetches each
 * routed query's vector from it (proxy.c), so embed_url and embed_auth are
 * prepared here.
 *
 * `llmroute check-config` runs the same checks through gw_conf_check(),
 * routers included, over the store serve would open (gw_store_open(): an
 * existing file read-only, a missing one as the empty store serve would
 * make). It reads the environment as serve does, so what serve refuses here
 * (an unset server.api_keys_env, a header value or an API key from the
 * environment with a control character, a smart route with no store or
 * with a candidate that has no prices) it refuses, and what serve only
 * warns about (an unset api_key_env or header variable) it warns about.
 *
 * Threads: built and freed on the event loop thread; reference counts are
 * plain integers for the same reason.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>

#include "connlimit.h"
#include "gateway.h"

static int fail(struct lr_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(struct lr_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->line = 0;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

/* A warning about the file being loaded, in the form of the library's own
 * ("llmroute serve: warning: cfg.json: models[0]...: ..."), so every warning
 * names the file whichever module found it. */
static void warn(const struct gw_conf *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A warning about the file a running gateway reloads: on its log, whose
 * lines are JSON, as a reload_warning event naming the file, not as the
 * plain line a start or check-config writes before any event. */
static void warn_event(const char *path, const char *msg)
{
    char text[1400], line[3000];
    size_t o;
    snprintf(text, sizeof text, "%.600s: %s", path, msg);
    o = (size_t)snprintf(line, sizeof line, "{\"event\":\"reload_warning\",\"message\":");
    o = gw_json_string(line, sizeof line - 3, o, text);
    line[o++] = '}';
    line[o++] = '\n';
    fwrite(line, 1, o, stderr);
}

/* A warning about the file being loaded, as one line: on the log as a
 * reload_warning event when a running gateway reloads it, else on stderr
 * after `who`, with the control characters it quotes (a key or value of
 * the file) escaped, so none breaks the line or reaches the terminal. */
static void warn_line(const char *who, const char *path, int reload, const char *msg)
{
    if (reload) {
        warn_event(path, msg);
        return;
    }
    fprintf(stderr, "%s: warning: ", who);
    gw_put_escaped(stderr, path);
    fputs(": ", stderr);
    gw_put_escaped(stderr, msg);
    fputc('\n', stderr);
}

static void warn(const struct gw_conf *c, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    warn_line(c->who, c->path, c->reload, msg);
}

void gw_put_escaped(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\r')
            fputs("\\r", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
}

/* Name the file at the head of err's message, unless it is there already
 * (the library's messages name it): a failure names its file once. */
static void name_the_file(struct lr_error *err, const char *path)
{
    char msg[sizeof err->message];
    size_t n = strlen(path);
    if (strncmp(err->message, path, n) == 0 && strncmp(err->message + n, ": ", 2) == 0)
        return;
    snprintf(msg, sizeof msg, "%s", err->message);
    snprintf(err->message, sizeof err->message, "%.200s: %.300s", path, msg);
}

/* ==== server.listen ==== */

static int parse_listen(const char *s, char *host, size_t host_cap, int *port, struct lr_error *err,
                        const char *where)
{
    const char *colon, *h = s;
    size_t hl;
    char *end;
    long p;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return fail(err, LR_ECONFIG, "%s: expected [IPV6]:PORT, got '%s'", where, s);
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return fail(err, LR_ECONFIG, "%s: expected HOST:PORT, got '%s'", where, s);
        hl = (size_t)(colon - s);
        /* "::1:80" could be ::1 port 80 or the address ::1:80 alone: an
         * IPv6 address goes in brackets. */
        if (memchr(s, ':', hl))
            return fail(err, LR_ECONFIG,
                        "%s: an IPv6 address goes in brackets, as [%.*s]:%s, got '%s'", where,
                        (int)(hl < 64 ? hl : 64), s, colon + 1, s);
    }
    if (hl == 0 || hl >= host_cap)
        return fail(err, LR_ECONFIG, "%s: expected a numeric host before ':', got '%s'", where, s);
    /* Digits only: strtol() would also take blanks, a sign and "-0". */
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || errno || end == colon + 1 || *end || p < 0 ||
        p > 65535)
        return fail(err, LR_ECONFIG, "%s: expected a port from 0 to 65535, got '%s'", where,
                    colon + 1);
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (strcmp(host, "localhost") == 0)
        snprintf(host, host_cap, "127.0.0.1");
    /* serve binds a numeric address only: a name would pass here and fail
     * at start. */
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1)
        return fail(err, LR_ECONFIG,
                    "%s: expected a numeric host (an IPv4 or [IPv6] address, or localhost), "
                    "got '%s'",
                    where, host);
    *port = (int)p;
    return 0;
}

int gw_listen_check(const char *listen, struct lr_error *err)
{
    char host[256];
    int port;
    return parse_listen(listen, host, sizeof host, &port, err, "--listen");
}

/* ==== server ==== */

/* A member of obj, or NULL when it is absent or null: in a config, null
 * means unset (the default applies), as it does in the library's part.
 * Only a top-level section given as null is refused ("server: expected an
 * object"), as the library refuses "router": null. */
static json_t *member(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static int get_int(json_t *obj, const char *key, long long lo, long long hi, long long *out,
                   struct lr_error *err, const char *section)
{
    json_t *v = member(obj, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        char got[128];
        return fail(err, LR_ECONFIG, "%s.%s: expected an integer from %lld to %lld, %s", section,
                    key, lo, hi, rs_json_got(v, got, sizeof got));
    }
    *out = json_integer_value(v);
    return 0;
}

static const char *const server_keys[] = {
    "listen",
    "max_body_bytes",
    "max_json_values",
    "max_header_bytes",
    "max_response_bytes",
    "stream_buffer_bytes",
    "max_stream_event_bytes",
    "idle_timeout_ms",
    "shutdown_timeout_ms",
    "max_connections",
    "connect_timeout_ms",
    "upstream_timeout_ms",
    "log_requests",
    "log_refused_per_s",
    "store_refresh_ms",
    "store_rebuild_min_ms",
    "feedback_key_ttl_s",
    "response_affinity_entries",
    "api_keys_env",
    "feedback_api_keys_env",
    "resilience",
    NULL,
};

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* The gateway's keys from the environment: split at commas, each trimmed of
 * blank space at both ends (a value set as 'k1, k2' or with a final newline
 * must not make a key that no client sends). An empty entry (`k1,,k2`, a
 * comma at the end) is never a key: it is skipped with a warning naming its
 * place, so a list that loaded before still does; only a list with no key
 * at all is refused. The same for server.api_keys_env and
 * server.feedback_api_keys_env (setting, its value var), into *out. */
static int load_api_keys(const struct gw_conf *c, const char *setting, const char *var,
                         char ***out, struct lr_error *err)
{
    const char *env = getenv(var);
    size_t n = 1, k = 0, place = 0;
    const char *p;
    char **keys;

    if (!env || !*env)
        return fail(err, LR_ECONFIG,
                    "server.%s: the environment variable %s is not set or empty "
                    "(it must hold the gateway's keys, separated by commas)",
                    setting, var);
    for (const char *ch = env; *ch; ch++)
        n += *ch == ',';
    keys = *out = calloc(n + 1, sizeof *keys);
    if (!keys)
        return fail(err, LR_ENOMEM, "out of memory reading the gateway keys");
    for (p = env;; p++) {
        const char *end = p + strcspn(p, ",");
        const char *b = p, *e = end;
        while (b < e && is_blank(*b))
            b++;
        while (e > b && is_blank(e[-1]))
            e--;
        place++;
        if (b == e) {
            warn(c,
                 "server.%s: %s: entry %zu of %zu is empty and is skipped (keys are "
                 "separated by commas, with nothing but blank space around them)",
                 setting, var, place, n);
        } else {
            keys[k] = strndup(b, (size_t)(e - b));
            if (!keys[k])
                return fail(err, LR_ENOMEM, "out of memory reading the gateway keys");
            k++;
        }
        p = end;
        if (!*p)
            break;
    }
    if (k == 0)
        return fail(err, LR_ECONFIG,
                    "server.%s: %s holds no key, only %zu empty entr%s (keys are "
                    "separated by commas)",
                    setting, var, n, n == 1 ? "y" : "ies");
    return 0;
}

/* The key setting `setting` of the server section root, if given: the
 * variable's name into *var, its keys into *keys. */
static int load_key_setting(const struct gw_conf *c, json_t *root, const char *setting,
                            char **var, char ***keys, struct lr_error *err)
{
    json_t *j = member(root, setting);
    if (!j)
        return 0;
    if (!json_is_string(j) || !json_string_length(j))
        return fail(err, LR_ECONFIG, "server.%s: expected the name of an environment variable",
                    setting);
    *var = strdup(json_string_value(j));
    if (!*var)
        return fail(err, LR_ENOMEM, "out of memory");
    return load_api_keys(c, setting, *var, keys, err);
}

static int load_server(struct gw_conf *c, const char *listen, struct lr_error *err)
{
    struct gw_settings *s = &c->set;
    const char *text = lr_config_section(c->cfg, "server");
    const char *lis = "127.0.0.1:8080";
    json_t *root = NULL;
    long long v;
    int rc = 0;

    s->max_body_bytes = 4u << 20;
    s->max_json_values = GW_MAX_JSON_VALUES_DEFAULT;
    s->max_header_bytes = 32u << 10;
    s->max_response_bytes = 64u << 20;
    s->stream_buffer_bytes = 256u << 10;
    s->max_stream_event_bytes = 32u << 20;
    s->idle_timeout_ms = 60000;
    s->shutdown_timeout_ms = 10000;
    s->connect_timeout_ms = 10000;
    s->upstream_timeout_ms = 600000;
    s->log_requests = 1;
    s->log_refused_per_s = 20;
    s->store_refresh_ms = 1000;
    s->store_rebuild_min_ms = 30000;
    s->feedback_key_ttl_s = LR_STORE_KEY_TTL_DEFAULT;
    s->response_affinity_entries = 100000;
    rs_policy_defaults(&s->policy);
    rs_breaker_defaults(&s->breaker);
    rs_queue_defaults(&s->queue);
    if (text) {
        json_error_t je;
        json_t *jl, *jlog;
        const char *key;
        json_t *val;
        root = json_loads(text, 0, &je);
        if (!json_is_object(root)) {
            rc = fail(err, LR_ECONFIG, "server: expected an object");
            goto out;
        }
        json_object_foreach(root, key, val)
        {
            size_t i;
            for (i = 0; server_keys[i] && strcmp(server_keys[i], key) != 0; i++)
                ;
            if (!server_keys[i])
                warn(c, "server.%s: unknown key (ignored)", key);
        }
        jl = member(root, "listen");
        if (jl && !json_is_string(jl)) {
            rc = fail(err, LR_ECONFIG, "server.listen: expected a string HOST:PORT");
            goto out;
        }
        if (jl)
            lis = json_string_value(jl);
#define INT_KEY(k, lo, hi, field, type)                                                            \
    do {                                                                                           \
        v = (long long)s->field;                                                                   \
        if ((rc = get_int(root, k, lo, hi, &v, err, "server")))                                    \
            goto out;                                                                              \
        s->field = (type)v;                                                                        \
    } while (0)
        INT_KEY("max_body_bytes", 1, 1LL << 30, max_body_bytes, size_t);
        INT_KEY("max_json_values", 1, 1LL << 30, max_json_values, size_t);
        INT_KEY("max_header_bytes", 1024, 1LL << 20, max_header_bytes, size_t);
        INT_KEY("max_response_bytes", 1024, 1LL << 32, max_response_bytes, size_t);
        INT_KEY("stream_buffer_bytes", 4096, 1LL << 26, stream_buffer_bytes, size_t);
        INT_KEY("max_stream_event_bytes", 4096, 1LL << 30, max_stream_event_bytes, size_t);
        INT_KEY("idle_timeout_ms", 0, 86400000, idle_timeout_ms, long);
        INT_KEY("shutdown_timeout_ms", 0, 86400000, shutdown_timeout_ms, long);
        INT_KEY("max_connections", 1, CL_MAX, max_connections, long);
        INT_KEY("connect_timeout_ms", 0, 86400000, connect_timeout_ms, long);
        INT_KEY("upstream_timeout_ms", 0, 86400000, upstream_timeout_ms, long);
        INT_KEY("log_refused_per_s", 0, 1000000, log_refused_per_s, long);
        INT_KEY("store_refresh_ms", 0, 86400000, store_refresh_ms, long);
        INT_KEY("store_rebuild_min_ms", 0, 86400000, store_rebuild_min_ms, long);
        INT_KEY("feedback_key_ttl_s", 0, LR_STORE_MAX_KEY_TTL, feedback_key_ttl_s, long long);
        INT_KEY("response_affinity_entries", 0, 1000000, response_affinity_entries, size_t);
#undef INT_KEY
        {
            json_t *jr = member(root, "resilience");
            char *txt = jr ? json_dumps(jr, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            rs_policy_defaults(&s->policy);
            s->policy.timeouts.connect_ms = s->connect_timeout_ms ? s->connect_timeout_ms : 10000;
            s->policy.timeouts.total_ms = s->upstream_timeout_ms;
            if (jr && !txt) {
                rc = fail(err, LR_ENOMEM, "out of memory");
                goto out;
            }
            if (rs_resilience_parse(txt, &s->policy, &s->breaker, &s->queue, err->message,
                                    sizeof err->message)) {
                free(txt);
                rc = err->code = LR_ECONFIG;
                err->line = 0;
                goto out;
            }
            free(txt);
        }
        jlog = member(root, "log_requests");
        if (jlog && !json_is_boolean(jlog)) {
            rc = fail(err, LR_ECONFIG, "server.log_requests: expected true or false");
            goto out;
        }
        if (jlog)
            s->log_requests = json_is_true(jlog);
        if ((rc = load_key_setting(c, root, "api_keys_env", &s->api_keys_env, &s->api_keys,
                                   err)) ||
            (rc = load_key_setting(c, root, "feedback_api_keys_env", &s->feedback_api_keys_env,
                                   &s->feedback_api_keys, err)))
            goto out;
    }
    /* server.listen is checked even when --listen overrides it: a file
     * that serve (and its reloads) accepts, check-config and a later serve
     * without --listen accept too. */
    rc = parse_listen(lis, s->listen_host, sizeof s->listen_host, &s->listen_port, err,
                      "server.listen");
    if (rc == 0 && listen)
        rc = parse_listen(listen, s->listen_host, sizeof s->listen_host, &s->listen_port, err,
                          "--listen");
out:
    json_decref(root);
    return rc;
}

/* ==== Models ==== */

static int load_mock(const struct gw_conf *c, struct gw_model *m, size_t i, struct lr_error *err)
{
    static const char *const mock_keys[] = {"latency_ms", "chunk_delay_ms", "tokens", "chunks",
                                            "content", NULL};
    json_t *root = m->info->json ? json_loads(m->info->json, 0, NULL) : NULL;
    json_t *mock = member(root, "mock");
    long long v;
    int rc = 0;
    char where[320];

    m->mock.latency_ms = 0;
    m->mock.chunk_delay_ms = 0;
    m->mock.tokens = -1;
    m->mock.chunks = 4;
    m->mock.content = "This is a deterministic reply from the llmroute mock backend.";
    snprintf(where, sizeof where, "models[%zu].mock", i);
    if (mock && !json_is_object(mock)) {
        rc = fail(err, LR_ECONFIG, "%s: expected an object", where);
        goto out;
    }
    if (mock) {
        json_t *content = member(mock, "content"), *val;
        const char *key;
        json_object_foreach(mock, key, val)
        {
            size_t k;
            for (k = 0; mock_keys[k] && strcmp(mock_keys[k], key) != 0; k++)
                ;
            if (!mock_keys[k])
                warn(c, "%s.%s: unknown key, ignored", where, key);
        }
#define MOCK_INT(k, lo, hi, field)                                                                 \
    do {                                                                                           \
        v = m->mock.field;                                                                         \
        if ((rc = get_int(mock, k, lo, hi, &v, err, where)))                                       \
            goto out;                                                                              \
        m->mock.field = (long)v;                                                                   \
    } while (0)
        MOCK_INT("latency_ms", 0, 3600000, latency_ms);
        MOCK_INT("chunk_delay_ms", 0, 3600000, chunk_delay_ms);
        MOCK_INT("tokens", 0, 1000000000, tokens);
        MOCK_INT("chunks", 1, 100000, chunks);
#undef MOCK_INT
        if (content && !json_is_string(content)) {
            rc = fail(err, LR_ECONFIG, "%s.content: expected a string", where);
            goto out;
        }
        if (content) {
            m->mock_content = strdup(json_string_value(content));
            if (!m->mock_content) {
                rc = fail(err, LR_ENOMEM, "out of memory");
                goto out;
            }
            m->mock.content = m->mock_content;
        }
    }
out:
    json_decref(root);
    return rc;
}

/* A `retry` and a `timeouts` member of a model's or route's object (JSON
 * text) into an overlay policy. */
static int load_policy(const char *obj_json, struct rs_policy *p, const char *where,
                       struct lr_error *err)
{
    json_t *root = obj_json ? json_loads(obj_json, 0, NULL) : NULL;
    json_t *jr = member(root, "retry"), *jt = member(root, "timeouts");
    char *r = jr ? json_dumps(jr, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    char *t = jt ? json_dumps(jt, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    int rc = 0;
    rs_policy_unset(p);
    if ((jr && !r) || (jt && !t))
        rc = fail(err, LR_ENOMEM, "out of memory");
    else if (rs_policy_parse(r, t, p, where, err->message, sizeof err->message)) {
        err->code = rc = LR_ECONFIG;
        err->line = 0;
    }
    free(r);
    free(t);
    json_decref(root);
    return rc;
}

int gw_repeated_candidate(const struct lr_config *cfg, const char *const *names, size_t n)
{
    int idx[64]; /* the gateway's lists hold at most 64 names (RANK_CAP, ROUTE_MAX_MODELS) */
    if (n > sizeof idx / sizeof idx[0])
        n = sizeof idx / sizeof idx[0];
    for (size_t k = 0; k < n; k++) {
        idx[k] = lr_config_model_index(cfg, names[k]);
        for (size_t j = 0; idx[k] >= 0 && j < k; j++)
            if (idx[j] == idx[k])
                return idx[k];
    }
    return -1;
}

int gw_env_value_unsafe(const char *value)
{
    for (const char *p = value; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 1;
    return 0;
}

/* A model's `headers` into m->headers, "Name: value\r\n" lines in the
 * file's order. The library has checked the names, the literal values and
 * the caps; a value from the environment is checked here, where it is read.
 * An unset (or empty) variable leaves its header out, with a warning, as an
 * unset api_key_env leaves out the key. */
#define GW_MAX_HEADER_BYTES 8192

static int load_headers(const struct gw_conf *c, struct gw_model *m, size_t i,
                        struct lr_error *err)
{
    json_t *root = m->info->json ? json_loads(m->info->json, 0, NULL) : NULL;
    json_t *h = json_object_get(root, "headers"), *v;
    const char *name;
    char *buf = NULL;
    size_t len = 0;
    int rc = 0;

    if (m->info->json && !root) {
        rc = fail(err, LR_ENOMEM, "out of memory");
        goto out;
    }
    if (!json_is_object(h) || json_object_size(h) == 0)
        goto out;
    buf = malloc(GW_MAX_HEADER_BYTES + 1);
    if (!buf) {
        rc = fail(err, LR_ENOMEM, "out of memory");
        goto out;
    }
    json_object_foreach(h, name, v)
    {
        const char *value = json_string_value(v);
        size_t nl = strlen(name), vl;
        if (!value) { /* {"env": NAME} */
            const char *var = json_string_value(json_object_get(v, "env"));
            value = var ? getenv(var) : NULL;
            if (!value || !*value) {
                warn(c,
                     "models[%zu].headers.%s: %s is not set; requests to '%s' go without this "
                     "header",
                     i, name, var ? var : "?", m->info->name);
                continue;
            }
            if (gw_env_value_unsafe(value)) {
                rc = fail(err, LR_ECONFIG,
                          "models[%zu].headers.%s: %s holds a control character (CR, LF, ...), "
                          "not a header value",
                          i, name, var);
                goto out;
            }
        }
        vl = strlen(value);
        if (nl + vl + 4 > GW_MAX_HEADER_BYTES - len) {
            rc = fail(err, LR_ECONFIG, "models[%zu].headers: more than %d bytes of headers", i,
                      GW_MAX_HEADER_BYTES);
            goto out;
        }
        memcpy(buf + len, name, nl);
        memcpy(buf + len + nl, ": ", 2);
        memcpy(buf + len + nl + 2, value, vl);
        memcpy(buf + len + nl + 2 + vl, "\r\n", 2);
        len += nl + vl + 4;
    }
    if (len > 0) {
        buf[len] = '\0';
        m->headers = buf;
        buf = NULL;
    }
out:
    free(buf);
    json_decref(root);
    return rc;
}

/* How a message quotes a value of the file: whole up to 200 bytes, else
 * cut there, never inside a UTF-8 character, with "..." after it (the
 * printing of a message escapes control characters). */
static const char *shown_value(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s), keep = n;
    if (n > 200) {
        keep = 200;
        while (keep > 0 && ((unsigned char)s[keep] & 0xc0) == 0x80)
            keep--;
    }
    snprintf(out, cap, "%.*s%s", (int)keep, s, keep < n ? "..." : "");
    return out;
}

static int load_model(const struct gw_conf *c, struct gw_model *m, size_t i,
                      struct lr_error *err)
{
    const struct lr_model_info *info = m->info;
    const char *base = info->base_url;
    json_t *name;
    char where[64];
    size_t scheme;
    int rc;

    snprintf(where, sizeof where, "models[%zu]", i);
    if ((rc = load_policy(info->json, &m->policy, where, err)))
        return rc;

    m->is_mock = info->backend && strcmp(info->backend, "mock") == 0;
    name = json_string(info->upstream_model ? info->upstream_model : info->name);
    m->model_json = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
    json_decref(name);
    if (!m->model_json)
        return fail(err, LR_ENOMEM, "out of memory");
    if (m->is_mock)
        return load_mock(c, m, i, err);
    if (!base && (!info->backend || strcmp(info->backend, "openai") == 0))
        base = "https://api.openai.com/v1";
    if (!base)
        return fail(err, LR_ECONFIG, "models[%zu] (%s): base_url is required to serve a %s backend",
                    i, info->name, info->backend);
    /* A scheme is case-insensitive (RFC 3986 3.1): "HTTP://" is taken, and
     * kept as "http://". */
    if (strncasecmp(base, "http://", 7) == 0)
        scheme = 4;
    else if (strncasecmp(base, "https://", 8) == 0)
        scheme = 5;
    else {
        char shown[208];
        return fail(err, LR_ECONFIG,
                    "models[%zu] (%s): base_url '%s' is not an http:// or https:// URL", i,
                    info->name, shown_value(base, shown, sizeof shown));
    }
    m->base_url = strdup(base);
    if (!m->base_url)
        return fail(err, LR_ENOMEM, "out of memory");
    for (size_t n = 0; n < scheme; n++)
        m->base_url[n] = (char)tolower((unsigned char)m->base_url[n]);
    for (size_t n = strlen(m->base_url); n > 0 && m->base_url[n - 1] == '/'; n--)
        m->base_url[n - 1] = '\0';
    if (info->api_key_env) {
        const char *key = getenv(info->api_key_env);
        if (key && *key && gw_env_value_unsafe(key))
            return fail(err, LR_ECONFIG,
                        "models[%zu].api_key_env: %s holds a control character (CR, LF, ...), "
                        "not an API key",
                        i, info->api_key_env);
        if (key && *key) {
            size_t n = strlen(key) + 8;
            m->auth = malloc(n);
            if (!m->auth)
                return fail(err, LR_ENOMEM, "out of memory");
            snprintf(m->auth, n, "Bearer %s", key);
        } else {
            warn(c, "models[%zu].api_key_env: %s is not set; requests to '%s' go without a key",
                 i, info->api_key_env, info->name);
        }
    }
    return load_headers(c, m, i, err);
}

/* ==== The remote embedder ==== */

/* router.embedding must be the embedder that made the store: none for a
 * store of the built-in embedder, that remote embedder (and its dimension,
 * when both say one) for a dense store. At start lr_store_open() has
 * checked this already (the store is opened with the config's embedder);
 * a reload checks it here, since the store stays open across reloads: a
 * reload that dropped router.embedding over a dense store, named one over
 * a built-in store, or changed its dimensions was taken, where a restart
 * on the same file refuses it, and every feedback then answered 400 (no
 * vector) or every smart request 502 (a vector of the wrong dimension).
 * With a dense store the URL and the Authorization value are prepared for
 * proxy.c's fetch. */
static int load_embedder(struct gw_conf *c, struct lr_error *err)
{
    const struct lr_embedding_info *e = lr_config_embedding(c->cfg);
    const char *made_by = c->store ? lr_store_embedder(c->store) : NULL;
    int dense = made_by && strcmp(made_by, LR_EMBEDDER_BUILTIN) != 0;
    size_t n, dim;

    if (!made_by || (!dense && !e))
        return 0;
    if (!e)
        return fail(err, LR_ECONFIG,
                    "router.embedding: the history store was made by the remote embedder '%s', "
                    "so the configuration must name it (router.embedding with its model); "
                    "none is named",
                    made_by);
    if (strcmp(e->embedder_id, made_by) != 0)
        return fail(err, LR_ECONFIG,
                    "router.embedding: the history store was made by the embedder '%s', not "
                    "'%s'",
                    made_by, e->embedder_id);
    dim = lr_store_dim(c->store);
    if (e->dimensions > 0 && dim && dim != (size_t)e->dimensions)
        return fail(err, LR_ECONFIG,
                    "router.embedding.dimensions: the history store holds vectors of dimension "
                    "%zu, not %d",
                    dim, e->dimensions);
    n = strlen(e->base_url) + sizeof "/embeddings";
    c->embed_url = malloc(n);
    if (!c->embed_url)
        return fail(err, LR_ENOMEM, "out of memory");
    snprintf(c->embed_url, n, "%s/embeddings", e->base_url);
    if (e->api_key_env) {
        const char *key = getenv(e->api_key_env);
        if (key && *key && gw_env_value_unsafe(key))
            return fail(err, LR_ECONFIG,
                        "router.embedding.api_key_env: %s holds a control character (CR, LF, "
                        "...), not an API key",
                        e->api_key_env);
        if (key && *key) {
            n = strlen(key) + sizeof "Bearer ";
            c->embed_auth = malloc(n);
            if (!c->embed_auth)
                return fail(err, LR_ENOMEM, "out of memory");
            snprintf(c->embed_auth, n, "Bearer %s", key);
        } else {
            warn(c, "router.embedding.api_key_env: %s is not set; embedding requests to %s go "
                    "without a key",
                 e->api_key_env, c->embed_url);
        }
    }
    c->embed = e;
    return 0;
}

/* ==== Routers ==== */

int gw_router_has_choice(const struct lr_router *router, size_t n_candidates)
{
    return n_candidates > 1 && strcmp(lr_router_strategy(router), "smart") == 0;
}

int gw_conf_needs_vector(const struct gw_conf *conf, const struct lr_router *router,
                         size_t n_candidates)
{
    return conf->embed && gw_router_has_choice(router, n_candidates);
}

struct lr_router *gw_conf_router(struct gw_conf *c, const char *strategy, struct lr_error *err)
{
    struct lr_router_options o;
    struct lr_router *r = NULL;
    const char *name = strategy ? strategy : lr_config_router_defaults(c->cfg)->strategy;
    int rc;

    for (size_t i = 0; i < c->n_routers; i++)
        if (strcmp(c->routers[i].strategy, name) == 0)
            return c->routers[i].router;
    if (strcmp(name, "smart") == 0 && c->store && c->embed_url == NULL &&
        strcmp(lr_store_embedder(c->store), LR_EMBEDDER_BUILTIN) != 0) {
        fail(err, LR_ESTRATEGY,
             "the history store uses the remote embedder '%s', so smart routing needs each "
             "query's embedding: set router.embedding in the config to that embedder",
             lr_store_embedder(c->store));
        return NULL;
    }
    if (c->n_routers == c->cap_routers) {
        size_t cap = c->cap_routers ? c->cap_routers * 2 : 4;
        struct gw_router *g;
        if (cap > 64) { /* strategies are few; refuse to grow without bound */
            fail(err, LR_ESTRATEGY, "too many strategies");
            return NULL;
        }
        g = realloc(c->routers, cap * sizeof *g);
        if (!g) {
            fail(err, LR_ENOMEM, "out of memory");
            return NULL;
        }
        c->routers = g;
        c->cap_routers = cap;
    }
    lr_router_options_init(&o);
    o.strategy = name;
    o.store = c->store;
    rc = lr_router_new(c->cfg, &o, &r, err);
    if (rc)
        return NULL;
    c->routers[c->n_routers].strategy = strdup(name);
    if (!c->routers[c->n_routers].strategy) {
        lr_router_free(r);
        fail(err, LR_ENOMEM, "out of memory");
        return NULL;
    }
    c->routers[c->n_routers++].router = r;
    return r;
}

/* ==== Load, check and free ==== */

/* A new gw_conf (refs = 1) over the file at path, the library's checks done
 * and its warnings written to stderr after `who`. */
static int conf_new(const char *path, struct lr_store *store, const char *who, int reload,
                    struct gw_conf **out, struct lr_error *err)
{
    struct gw_conf *c = calloc(1, sizeof *c);
    int rc;

    *out = NULL;
    if (!c)
        return fail(err, LR_ENOMEM, "out of memory");
    c->refs = 1;
    c->store = store;
    c->who = who;
    c->path = path;
    c->reload = reload;
    rc = lr_config_load_file(path, &c->cfg, err);
    if (rc) {
        gw_conf_unref(c);
        return rc;
    }
    for (size_t i = 0; i < lr_config_warning_count(c->cfg); i++)
        warn_line(who, path, reload, lr_config_warning(c->cfg, i));
    c->query_text = lr_config_router_defaults(c->cfg)->query_text;
    *out = c;
    return 0;
}

/* A request on route i makes at most retry.max_attempts attempts (its own
 * over the server's), and a retry of one model is an attempt too. With
 * more candidates and fallbacks than that, the last fallbacks are never
 * reached by failures, only past models skipped unattempted (an open
 * breaker, a full max_concurrency): the file lists models the route
 * cannot get to, so it is warned about. Not an error: the route works. */
static void warn_unreachable_fallbacks(const struct gw_conf *c, size_t i)
{
    const struct lr_route_info *ri = lr_config_route(c->cfg, i);
    struct rs_policy p = c->set.policy;
    size_t n_cands = ri->n_models ? ri->n_models : lr_config_model_count(c->cfg), n_extra = 0;

    rs_policy_merge(&p, &c->route_policy[i]);
    /* A fallback among the candidates is ranked with them (the library
     * warns about it), not tried again after them: it adds nothing. */
    for (size_t f = 0; ri->n_models && f < ri->n_fallbacks; f++) {
        size_t k = 0;
        while (k < ri->n_models && ri->models[k] != ri->fallbacks[f])
            k++;
        n_extra += k == ri->n_models;
    }
    if (n_extra && n_cands + n_extra > (size_t)p.retry.max_attempts)
        warn(c,
             "routes[%zu] (%.64s): %zu candidates and fallbacks, more than retry.max_attempts "
             "(%ld): its last fallbacks are never tried after failures, only past models "
             "skipped for an open breaker or a full max_concurrency",
             i, ri->name, n_cands + n_extra, p.retry.max_attempts);
}

/* Everything the gateway reads beyond the library's checks except the
 * routers: the `server` section, the embedder (against c->store, when there
 * is one), each model's backend, and each route's retry and timeouts. Both
 * serve (gw_conf_load) and check-config (gw_conf_check) run this, so the
 * two accept the same files. */
static int conf_prepare(struct gw_conf *c, const char *listen, struct lr_error *err)
{
    int rc;

    if ((rc = load_server(c, listen, err)) || (rc = load_embedder(c, err)))
        return rc;
    c->n_models = lr_config_model_count(c->cfg);
    c->models = calloc(c->n_models, sizeof *c->models);
    if (!c->models)
        return fail(err, LR_ENOMEM, "out of memory");
    for (size_t i = 0; i < c->n_models; i++) {
        c->models[i].info = lr_config_model(c->cfg, i);
        if ((rc = load_model(c, &c->models[i], i, err)))
            return rc;
    }
    c->route_policy = calloc(lr_config_route_count(c->cfg) + 1, sizeof *c->route_policy);
    if (!c->route_policy)
        return fail(err, LR_ENOMEM, "out of memory");
    for (size_t i = 0; i < lr_config_route_count(c->cfg); i++) {
        char where[64];
        snprintf(where, sizeof where, "routes[%zu]", i);
        if ((rc = load_policy(lr_config_route(c->cfg, i)->json, &c->route_policy[i], where, err)))
            return rc;
        warn_unreachable_fallbacks(c, i);
    }
    return 0;
}

/* A smart route ranks its candidates by estimated cost, so each must have
 * both prices when there are two or more (one candidate needs none, as the
 * strategy itself allows). Refused here, at start and on reload, rather than
 * answering every request on the route 400 routing_failed. Candidates a
 * request names itself ("models") are checked with that request. Route i,
 * or with i == (size_t)-1 the default: router.strategy over every model,
 * which a request naming no route is routed by. */
static int route_prices(const struct gw_conf *c, size_t i, struct lr_error *err)
{
    const struct lr_route_info *ri = i == (size_t)-1 ? NULL : lr_config_route(c->cfg, i);
    const char *strategy = ri && ri->strategy ? ri->strategy
                                              : lr_config_router_defaults(c->cfg)->strategy;
    size_t n = ri && ri->n_models ? ri->n_models : lr_config_model_count(c->cfg);
    char where[128];

    if (strcmp(strategy, "smart") != 0 || n < 2)
        return 0;
    if (ri)
        snprintf(where, sizeof where, "routes[%zu] (%.64s)", i, ri->name);
    else
        snprintf(where, sizeof where, "router.strategy (smart, over every model)");
    for (size_t j = 0; j < n; j++) {
        const struct lr_model_info *mi =
            lr_config_model(c->cfg, ri && ri->n_models ? (size_t)ri->models[j] : j);
        if (isnan(mi->cost_per_input_token) || isnan(mi->cost_per_output_token))
            return fail(err, LR_ECONFIG,
                        "%s: model '%.64s' has no %s: a smart route ranks its "
                        "candidates by estimated cost, so each needs cost_per_input_token and "
                        "cost_per_output_token",
                        where, mi->name,
                        isnan(mi->cost_per_input_token) ? "cost_per_input_token"
                                                        : "cost_per_output_token");
    }
    return 0;
}

/* Build every router the file names, so a bad one fails the load: the
 * default strategy's, then each route's, and check that each smart route's
 * candidates are priced. Without a store, a smart router's error says where
 * a store comes from. */
static int conf_routers(struct gw_conf *c, struct lr_error *err)
{
    /* A file that names router.store with no store open is a reload's (at
     * start the store it names is opened, or serve does not start): the
     * usual hint would tell it to set what it has set. */
    const char *hint = c->store ? ""
                       : lr_config_router_defaults(c->cfg)->store_path
                           ? " (router.store is set, but the gateway started without a store: "
                             "a new store needs a restart)"
                           : " (--store FILE, or router.store in the config)";
    char msg[sizeof err->message];

    if (!gw_conf_router(c, NULL, err)) {
        snprintf(msg, sizeof msg, "%s", err->message);
        snprintf(err->message, sizeof err->message, "router.strategy: %.340s%s", msg, hint);
        return err->code ? err->code : LR_ESTRATEGY;
    }
    if (route_prices(c, (size_t)-1, err))
        return err->code;
    for (size_t i = 0; i < lr_config_route_count(c->cfg); i++) {
        const struct lr_route_info *ri = lr_config_route(c->cfg, i);
        if (ri->strategy && !gw_conf_router(c, ri->strategy, err)) {
            snprintf(msg, sizeof msg, "%s", err->message);
            snprintf(err->message, sizeof err->message, "routes[%zu] (%.64s): %.320s%s", i,
                     ri->name, msg, hint);
            return err->code ? err->code : LR_ESTRATEGY;
        }
        if (route_prices(c, i, err))
            return err->code;
    }
    return 0;
}

static int conf_load(const char *path, const char *listen, struct lr_store *store, int reload,
                     struct gw_conf **out, struct lr_error *err)
{
    struct gw_conf *c;
    int rc;

    if ((rc = conf_new(path, store, "llmroute serve", reload, &c, err))) {
        name_the_file(err, path);
        return rc;
    }
    if ((rc = conf_prepare(c, listen, err)) || (rc = conf_routers(c, err))) {
        name_the_file(err, path);
        gw_conf_unref(c);
        return rc;
    }
    *out = c;
    return 0;
}

int gw_conf_load(const char *path, const char *listen, struct lr_store *store,
                 struct gw_conf **out, struct lr_error *err)
{
    return conf_load(path, listen, store, 0, out, err);
}

int gw_conf_reload(const char *path, const char *listen, struct lr_store *store,
                   struct gw_conf **out, struct lr_error *err)
{
    return conf_load(path, listen, store, 1, out, err);
}

int gw_conf_check(const char *path, struct lr_store *store, const char *who,
                  struct gw_conf **out, struct lr_error *err)
{
    struct gw_conf *c;
    int rc;

    if ((rc = conf_new(path, store, who, 0, &c, err)))
        return rc;
    if ((rc = conf_prepare(c, NULL, err)) || (rc = conf_routers(c, err))) {
        /* The library's messages name the file; name it here too, so a
         * script checking many files can tell which one failed. */
        name_the_file(err, path);
        gw_conf_unref(c);
        return rc;
    }
    *out = c;
    return 0;
}

int gw_store_is_new(const char *path)
{
    struct stat sb;
    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return 0;
    return stat(path, &sb) != 0 && errno == ENOENT;
}

/* Whether this process may open the file at path for writing, as SQLite's
 * writable open tries it (open(2) with O_RDWR, which changes nothing): 0
 * when the file system refuses it, 1 otherwise (a file that is not there
 * is left to the open that follows). */
static int file_writable(const char *path)
{
    int fd = open(path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    return !(errno == EACCES || errno == EPERM || errno == EROFS || errno == ETXTBSY);
}

/* Whether serve's open could create a store at path, which does not exist:
 * its folder must exist, be a folder, and be one this process may write
 * and search, as open(2) with O_CREAT needs. 0, or LR_ESTORE with the
 * library's words for the error that open would meet ("cannot open history
 * store 'x.db': No such file or directory"). */
static int folder_creatable(const char *path, struct lr_error *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    struct stat sb;
    int e = 0;

    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return fail(err, LR_ENOMEM, "out of memory");
    if (stat(dir, &sb) != 0)
        e = errno;
    else if (!S_ISDIR(sb.st_mode))
        e = ENOTDIR;
    else if (access(dir, W_OK | X_OK) != 0)
        e = errno;
    free(dir);
    if (e)
        return fail(err, LR_ESTORE, "cannot open history store '%s': %s", path, strerror(e));
    return 0;
}

int gw_store_open(const char *config_path, const char *store_flag, int check, int read_only,
                  struct lr_store **out, char **path_out, int *created, struct lr_error *err)
{
    struct lr_config *cfg = NULL;
    struct lr_store_options so;
    const char *path = store_flag;
    struct stat sb;
    int rc = 0;

    *out = NULL;
    *path_out = NULL;
    if (created)
        *created = 0;
    lr_store_options_init(&so);
    /* The config is read here for router.store and router.embedding alone;
     * its errors are reported by the full load that follows. No store is
     * opened then: without the config's embedder a dense store would be
     * opened as a built-in one, and that error would hide the config's
     * (router.embedding.batch_size 0, say, reported as the store's
     * embedder being "opened with 'tfidf-v1'"). */
    if (lr_config_load_file(config_path, &cfg, err) != 0) {
        memset(err, 0, sizeof *err);
        return 0;
    } else {
        const struct lr_embedding_info *emb = lr_config_embedding(cfg);
        if (!path)
            path = lr_config_router_defaults(cfg)->store_path;
        if (emb) {
            so.embedder = emb->embedder_id;
            so.dense_dim = emb->dimensions;
        }
    }
    if (!path) {
        if (read_only && cfg)
            rc = fail(err, LR_EINVAL,
                      "--store-read-only: no history store is named (--store FILE, or "
                      "router.store in the config)");
        goto out;
    }
    if (!(*path_out = strdup(path))) {
        rc = fail(err, LR_ENOMEM, "out of memory");
        goto out;
    }
    if (check && !read_only && stat(path, &sb) != 0 && errno == ENOENT && lstat(path, &sb) != 0) {
        /* serve would make it: check that it could, then check against
         * the same empty store. (A symbolic link to nothing it would not:
         * the open below says so.) */
        if ((rc = folder_creatable(path, err)) == 0)
            rc = lr_store_open(":memory:", &so, out, err);
        goto out;
    }
    if (check && !read_only && !file_writable(path)) {
        /* serve refuses a file it may not write; so does the check, with
         * the same words: the library's writable open refuses such a file
         * right after SQLite opened it, before anything is written. Should
         * it be writable after all (its mode changed meanwhile), that open
         * may have brought it up to date as serve's would, and it is then
         * checked read-only as usual. */
        rc = lr_store_open(path, &so, out, err);
        if (rc != 0)
            goto out;
        lr_store_free(*out);
        *out = NULL;
    }
    so.read_only = check || read_only;
    /* Feedback appends leave the periodic re-weighing to the store refresh
     * (gateway.c), so that none waits for it. */
    so.defer_reweigh = !so.read_only;
    if (created)
        *created = !so.read_only && gw_store_is_new(path);
    rc = lr_store_open(path, &so, out, err);
out:
    /* serve's refusal of a file it may not write, and check-config's, say
     * how to serve it anyway. */
    if (rc == LR_ESTORE && !read_only && strstr(err->message, "cannot be written")) {
        char m[sizeof err->message];
        snprintf(m, sizeof m, "%s", err->message);
        fail(err, rc, "%s; to route on it without recording feedback, give --store-read-only",
             m);
    } else if (rc != 0 && read_only && path && stat(path, &sb) != 0 && errno == ENOENT) {
        /* A read-only store is never made: say that it must exist. */
        char m[sizeof err->message];
        snprintf(m, sizeof m, "%s", err->message);
        fail(err, rc, "%s (--store-read-only opens an existing store; make it with "
                      "llmroute import first)",
             m);
    }
    lr_config_free(cfg);
    if (rc) {
        free(*path_out);
        *path_out = NULL;
        *out = NULL;
        if (created)
            *created = 0;
    }
    return rc;
}

void gw_conf_ref(struct gw_conf *c)
{
    c->refs++;
}

void gw_conf_unref(struct gw_conf *c)
{
    if (!c || --c->refs > 0)
        return;
    for (size_t i = 0; i < c->n_routers; i++) {
        lr_router_free(c->routers[i].router);
        free(c->routers[i].strategy);
    }
    free(c->routers);
    for (size_t i = 0; c->models && i < c->n_models; i++) {
        free(c->models[i].base_url);
        free(c->models[i].auth);
        free(c->models[i].headers);
        free(c->models[i].model_json);
        free(c->models[i].mock_content);
    }
    free(c->models);
    free(c->route_policy);
    free(c->set.api_keys_env);
    for (size_t i = 0; c->set.api_keys && c->set.api_keys[i]; i++)
        free(c->set.api_keys[i]);
    free(c->set.api_keys);
    free(c->set.feedback_api_keys_env);
    for (size_t i = 0; c->set.feedback_api_keys && c->set.feedback_api_keys[i]; i++)
        free(c->set.feedback_api_keys[i]);
    free(c->set.feedback_api_keys);
    free(c->embed_url);
    free(c->embed_auth);
    lr_config_free(c->cfg);
    free(c);
}
