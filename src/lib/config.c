/* config.c -- the model configuration: parse, validate, look up.
 *
 * A configuration is JSON (jansson) with the keys AIOS users know:
 *   {"models": [{"name", "backend", "base_url", "api_key_env",
 *                "cost_per_input_token", "cost_per_output_token",
 *                "max_concurrency", "capacity", ...}],
 *    "router": {"strategy", "performance_requirement", "n_similar", ...,
 *               "embedding": {"base_url", "model", "api_key_env", "dimensions",
 *                             "batch_size", "timeout_ms", "max_input_chars"}},
 *    "routes": [{"name", "strategy", "models", "performance_requirement",
 *                "fallbacks", "retry", "timeouts"}],
 *    "server": {...}}
 * A model's and a route's `retry` and `timeouts` objects are the gateway's to
 * read (from the `json` text); the library only carries them. A model's
 * `headers` (extra request headers for its upstream) are checked here, so
 * every user of a config refuses the same files, and sent by the gateway.
 * Validation stops at the first error and names the field
 * ("models[1].cost_per_input_token: expected a non-negative number"). Unknown
 * keys are not errors: they are collected as warnings, as are an unknown
 * backend and a model's retry.max_attempts / retry.deadline_ms, which the
 * gateway ignores there. Names and base URLs reach HTTP heads, so control
 * characters in them are errors. Secrets are never read
 * from the file: only the names of the environment variables that hold them.
 *
 * Once loaded, a config is immutable and may be read from any thread. Its
 * strings point into the parsed JSON document, which the config keeps.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "record.h"
#include "strategy.h"

#define CONFIG_MAX_BYTES (16u << 20)
#define CONFIG_MAX_MODELS 1024
#define CONFIG_MAX_ROUTES 1024
#define CONFIG_MAX_WARNINGS 64
/* "openai:" + model must fit a store's embedder id (128 bytes). */
#define CONFIG_MAX_EMBED_MODEL 120
/* router.embedding.max_input_chars. Embedders refuse long inputs (TEI over
 * its max tokens unless asked to truncate, OpenAI over 8192 tokens,
 * llama.cpp over its batch), and a sentence encoder reads only its first
 * 256 or 512 tokens anyway. 8192 characters is about 2,000 tokens of
 * English (about 4 characters a token): within OpenAI's limit, and several
 * times what bge-small or MiniLM read, so their vectors do not change. No
 * embedder takes a million characters: a larger cut is a mistake. */
#define CONFIG_EMBED_INPUT_CHARS 8192
#define CONFIG_MAX_EMBED_INPUT_CHARS 1048576

struct section {
    char *key;
    char *json;
};

struct lr_config {
    json_t *root; /* owns every string the infos point to */
    struct lr_model_info *models;
    size_t n_models;
    struct lr_route_info *routes;
    size_t n_routes;
    struct lr_router_defaults defaults;
    char *store_path;
    char *embedding_json;
    struct lr_embedding_info embedding; /* valid when has_embedding */
    int has_embedding;
    char *embedding_base_url; /* base_url without trailing slashes */
    char embedder_id[8 + CONFIG_MAX_EMBED_MODEL];
    struct section *sections;
    size_t n_sections;
    char **warnings;
    size_t n_warnings;
};

/* ==== Helpers ==== */

static const char *const known_backends[] = {
    "openai", "vllm",     "sglang", "ollama", "llamacpp", "groq",
    "together", "deepseek", "mock",   "openai-compatible", NULL,
};

static int fail(struct lr_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* What makes the authority of a base_url (what follows "://", up to the
 * path) unusable, or NULL: a port that is not a number from 1 to 65535
 * (libcurl refuses 65536 or "abc" only when a request is made, and port 0
 * can never be connected to), an IPv6 address without its brackets or
 * with no closing one. An empty port (`host:`) is the scheme's default,
 * as for libcurl. */
static const char *authority_problem(const char *host)
{
    size_t len = strcspn(host, "/");
    const char *end = host + len, *at, *port = NULL;
    long value = 0;

    for (at = host; at < end; at++) /* userinfo ends at the last '@' */
        if (*at == '@')
            host = at + 1;
    if (host == end || *host == ':')
        return "has no host";
    if (*host == '[') {
        const char *rb = memchr(host, ']', (size_t)(end - host));
        if (!rb)
            return "has an IPv6 address without its closing ']'";
        if (rb + 1 < end && rb[1] != ':')
            return "has something other than ':PORT' after its IPv6 address's ']'";
        if (rb + 1 < end)
            port = rb + 2;
    } else {
        const char *colon = memchr(host, ':', (size_t)(end - host));
        if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)))
            return "has a host with more than one ':' (an IPv6 address goes in brackets: "
                   "http://[::1]:8000/v1)";
        if (colon)
            port = colon + 1;
    }
    if (!port || port == end)
        return NULL;
    for (const char *p = port; p < end; p++) {
        if (*p < '0' || *p > '9')
            return "has a port that is not a number from 1 to 65535";
        if (value <= 65535)
            value = value * 10 + (*p - '0');
    }
    if (value < 1 || value > 65535)
        return "has a port that is not a number from 1 to 65535";
    return NULL;
}

/* What makes an http:// or https:// base_url unusable as the start of every
 * upstream URL, or NULL. An endpoint's path is appended to it
 * ({base_url}/chat/completions, {base_url}/embeddings), so a query or a
 * fragment would take the path in with it (the upstream would be asked for
 * /v1 and answer 404), and a space is no part of a URL (libcurl refuses it
 * when the request is made). Control characters are refused already. */
static const char *base_url_problem(const char *url)
{
    const char *host = strstr(url, "://");
    if (!host)
        return NULL;
    host += 3;
    if (strchr(url, ' '))
        return "holds a space";
    if (strchr(url, '?'))
        return "holds a query ('?'): the endpoint's path (/chat/completions, /embeddings, ...) "
               "is appended to base_url and would end up in it";
    if (strchr(url, '#'))
        return "holds a fragment ('#'): the endpoint's path (/chat/completions, /embeddings, "
               "...) is appended to base_url and would end up in it";
    if (*host == '\0' || *host == '/' || *host == ':')
        return "has no host";
    return authority_problem(host);
}

/* Whether url names a user or password before its host
 * ("http://user:password@host/v1"), with or without a scheme: libcurl
 * would send them to the upstream as Basic authorization, a secret kept in
 * the file, where keys are never read from (api_key_env names the
 * variable that holds one). */
static int has_userinfo(const char *url)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep && (size_t)(sep - url) < strcspn(url, "/") ? sep + 3 : url;
    return memchr(auth, '@', strcspn(auth, "/?#")) != NULL;
}

/* The length of url's "http://" or "https://", in any case (RFC 3986 3.1:
 * a scheme is case-insensitive), or 0. */
static size_t http_scheme_len(const char *url)
{
    if (strncasecmp(url, "http://", 7) == 0)
        return 7;
    if (strncasecmp(url, "https://", 8) == 0)
        return 8;
    return 0;
}

static const char userinfo_problem[] =
    "holds a user name or password before the host (user:password@): keys are not read "
    "from the config file; put the key in an environment variable and name it in "
    "api_key_env";

static int fail(struct lr_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = LR_ECONFIG;
        err->line = 0;
        va_start(ap, fmt);
        lr__error_vformat(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return LR_ECONFIG;
}

/* Whether a and b are the same but for the case of ASCII letters (a
 * locale's own case folding would fold bytes of UTF-8 sequences too). */
static int ascii_case_equal(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return 0;
        if (!x)
            return 1;
    }
}

static int warn(struct lr_config *cfg, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int warn(struct lr_config *cfg, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    char **grown;

    if (cfg->n_warnings >= CONFIG_MAX_WARNINGS)
        return 0; /* enough to act on; the rest add nothing */
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    grown = realloc(cfg->warnings, (cfg->n_warnings + 1) * sizeof *grown);
    if (!grown)
        return LR_ENOMEM;
    cfg->warnings = grown;
    grown[cfg->n_warnings] = strdup(buf);
    if (!grown[cfg->n_warnings])
        return LR_ENOMEM;
    cfg->n_warnings++;
    return 0;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* Warn about every key of obj not in `known`. */
static int warn_unknown_keys(struct lr_config *cfg, json_t *obj, const char *where,
                             const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        (void)v;
        if (!in_list(key, known)) {
            int rc = warn(cfg, "%s%s%s: unknown key, ignored", where, *where ? "." : "", key);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Optional string member. Returns 0 with *out NULL when absent. */
static int get_string(json_t *obj, const char *key, const char *where, int required,
                      int nonempty, const char **out, struct lr_error *err)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return fail(err, "%s.%s: missing (expected a string)", where, key);
        return 0;
    }
    if (!json_is_string(v))
        return fail(err, "%s.%s: expected a string, got %s", where, key, json_type_name(v));
    if (nonempty && json_string_length(v) == 0)
        return fail(err, "%s.%s: expected a non-empty string", where, key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(err, "%s.%s: the string contains a NUL byte", where, key);
    *out = json_string_value(v);
    return 0;
}

/* get_string for a non-empty string that reaches an HTTP head: a model's or
 * route's name (the gateway's x-llmroute-model and x-llmroute-route response
 * headers) or a base_url (the upstream request line and Host header). A
 * byte below 0x20 or 0x7f there would end the header early and let the file
 * write headers of its own, so none is allowed (not even a tab). */
static int get_head_string(json_t *obj, const char *key, const char *where, int required,
                           const char **out, struct lr_error *err)
{
    int rc = get_string(obj, key, where, required, 1, out, err);
    if (rc || !*out)
        return rc;
    for (const unsigned char *c = (const unsigned char *)*out; *c; c++)
        if (*c < 0x20 || *c == 0x7f) {
            *out = NULL;
            return fail(err, "%s.%s: must not contain control characters", where, key);
        }
    return 0;
}

/* Optional number member in [lo, hi]. *out is left as is when absent. */
static int get_number(json_t *obj, const char *key, const char *where, double lo, double hi,
                      const char *expect, double *out, struct lr_error *err)
{
    json_t *v = json_object_get(obj, key);
    char dt[LR__NUMBER_TEXT], ht[LR__NUMBER_TEXT];
    double d;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(err, "%s.%s: expected %s, got %s", where, key, expect, json_type_name(v));
    d = json_number_value(v);
    /* Above the cap, say so: "a non-negative number, got 1e+07" would not;
     * and with the digits that tell the value from the cap. */
    if (isfinite(d) && d > hi && d >= lo)
        return fail(err, "%s.%s: expected %s, got %s, over the cap of %s", where, key, expect,
                    lr__error_number(dt, d), lr__error_number(ht, hi));
    if (!isfinite(d) || d < lo || d > hi)
        return fail(err, "%s.%s: expected %s, got %s", where, key, expect,
                    lr__error_number(dt, d));
    *out = d;
    return 0;
}

/* Optional integer member in [lo, hi]. */
static int get_int(json_t *obj, const char *key, const char *where, long lo, long hi, int *out,
                   struct lr_error *err)
{
    json_t *v = json_object_get(obj, key);
    json_int_t i;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_real(v)) {
        char dt[LR__NUMBER_TEXT];
        return fail(err,
                    "%s.%s: expected an integer from %ld to %ld, got %s written as a real number "
                    "(an integer has no '.' or exponent)",
                    where, key, lo, hi, lr__error_number(dt, json_real_value(v)));
    }
    if (!json_is_integer(v))
        return fail(err, "%s.%s: expected an integer from %ld to %ld, got %s", where, key, lo, hi,
                    json_type_name(v));
    i = json_integer_value(v);
    if (i < lo || i > hi)
        return fail(err, "%s.%s: expected an integer from %ld to %ld, got %lld", where, key, lo,
                    hi, (long long)i);
    *out = (int)i;
    return 0;
}

static char *dump_compact(json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

/* ==== Models ==== */

static const char *const model_keys[] = {
    "name", "backend", "base_url", "api_key_env", "upstream_model", "hosted_model",
    "cost_per_input_token", "cost_per_output_token", "max_concurrency", "capacity",
    "mock", "timeouts", "retry", "headers", "description", NULL,
};

/* Extra request headers sent to a model's upstream (`headers`): the
 * gateway sends them; the library checks them, so check-config and every
 * other user of a config refuse the same files. A value is a string or
 * {"env": NAME}; an env value is read and checked where it is used. */
#define CONFIG_MAX_HEADERS 32
#define CONFIG_MAX_HEADER_BYTES 8192

/* What the gateway writes itself, and hop-by-hop fields a connection owns. */
static const char *const managed_headers[] = {
    "host",       "content-length", "content-type",     "transfer-encoding",
    "connection", "expect",         "keep-alive",       "te",
    "trailer",    "upgrade",        "proxy-connection", "accept-encoding",
    NULL,
};

/* RFC 9110 token characters. */
static int is_token_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int parse_headers(json_t *m, const char *where, struct lr_error *err)
{
    json_t *h = json_object_get(m, "headers"), *v;
    const char *name;
    size_t bytes = 0;

    if (!h || json_is_null(h))
        return 0;
    if (!json_is_object(h))
        return fail(err, "%s.headers: expected an object of header names and values, got %s", where,
                    json_type_name(h));
    if (json_object_size(h) > CONFIG_MAX_HEADERS)
        return fail(err, "%s.headers: at most %d headers, got %zu", where, CONFIG_MAX_HEADERS,
                    json_object_size(h));
    json_object_foreach(h, name, v)
    {
        const char *k2;
        json_t *v2, *env;
        size_t nl = strlen(name), n;

        if (nl == 0)
            return fail(err, "%s.headers: a header name is empty", where);
        for (n = 0; n < nl; n++)
            if (!is_token_char((unsigned char)name[n]))
                return fail(err,
                            "%s.headers.%.100s: not a valid header name (letters, digits and "
                            "!#$%%&'*+-.^_`|~ only)",
                            where, name);
        if (strcasecmp(name, "authorization") == 0)
            return fail(err,
                        "%s.headers.%s: the gateway sets Authorization from api_key_env; name "
                        "the key's environment variable there",
                        where, name);
        for (const char *const *r = managed_headers; *r; r++)
            if (strcasecmp(name, *r) == 0)
                return fail(err, "%s.headers.%s: the gateway sets this header itself", where, name);
        json_object_foreach(h, k2, v2)
        {
            if (k2 == name)
                break;
            if (strcasecmp(k2, name) == 0)
                return fail(err, "%s.headers.%s: the same header as %s (names ignore case)",
                            where, name, k2);
        }
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            size_t sl = json_string_length(v);
            for (n = 0; n < sl; n++) {
                unsigned char c = (unsigned char)s[n];
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                    return fail(err,
                                "%s.headers.%s: the value contains a control character (CR, LF, "
                                "NUL, ...)",
                                where, name);
            }
            bytes += nl + sl + 4; /* "Name: value\r\n" */
        } else if (json_is_object(v) && json_object_size(v) == 1 &&
                   (env = json_object_get(v, "env")) && json_is_string(env) &&
                   json_string_length(env) > 0 &&
                   strlen(json_string_value(env)) == json_string_length(env)) {
            bytes += nl + 4; /* the value is counted where it is read */
        } else {
            return fail(err, "%s.headers.%s: expected a string or {\"env\": NAME}", where, name);
        }
        if (bytes > CONFIG_MAX_HEADER_BYTES)
            return fail(err, "%s.headers: more than %d bytes of headers", where,
                        CONFIG_MAX_HEADER_BYTES);
    }
    return 0;
}

/* The gateway treats every backend but `mock` alike: an OpenAI-compatible
 * upstream at base_url (required but for `openai`, which defaults to
 * OpenAI's). So an unknown name is most likely a typo, and is served all the
 * same; the warning says so, and lists the names from known_backends. */
static int warn_unknown_backend(struct lr_config *cfg, const char *where, const char *backend)
{
    char list[256];
    size_t len = 0;

    list[0] = '\0';
    for (const char *const *b = known_backends; *b && len < sizeof list; b++) {
        int n = snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", *b);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    return warn(cfg,
                "%s.backend: '%s' is not a known backend (%s); the gateway forwards to it as an "
                "OpenAI-compatible upstream at its base_url",
                where, backend, list);
}

/* The gateway takes retry.max_attempts and retry.deadline_ms (limits on the
 * whole request, over every model it tries) from server.resilience and the
 * route only; in a model's own retry they would be silently ignored. The
 * gateway still checks their values, as it does for every retry key. */
static int warn_request_limits(struct lr_config *cfg, json_t *m, const char *where)
{
    static const char *const keys[] = {"max_attempts", "deadline_ms", NULL};
    json_t *retry = json_object_get(m, "retry");
    int rc;

    if (!json_is_object(retry))
        return 0;
    for (const char *const *k = keys; *k; k++)
        if (json_object_get(retry, *k) && !json_is_null(json_object_get(retry, *k)) &&
            (rc = warn(cfg,
                       "%s.retry.%s: ignored in a model (a limit on the whole request, read "
                       "from server.resilience.retry and the route's retry only)",
                       where, *k)))
            return rc;
    return 0;
}

/* A model's or route's name is what clients send as "model" and what the
 * gateway answers in x-llmroute-model or x-llmroute-route: a header value
 * loses blank space at its ends on the way (RFC 9110 5.5), so a client
 * that sends the name it read back would name another, and a name that
 * differs from another by a trailing space cannot be told from it in the
 * file. The cap is a model name's in a data file and the store: a longer
 * one could never have outcomes, and a much longer header (a config may
 * hold 16 MB) is more than clients take. */
static int check_name(const char *name, const char *where, const char *kind,
                      struct lr_error *err)
{
    size_t len = strlen(name);
    if (name[0] == ' ' || name[len - 1] == ' ')
        return fail(err,
                    "%s.name: '%s' %s with a space: clients send the name without it (HTTP "
                    "drops blank space at a header value's ends)",
                    where, len > 64 ? "(too long to show)" : name,
                    name[0] == ' ' ? "starts" : "ends");
    if (len > LR__RECORD_MAX_MODEL_NAME)
        return fail(err, "%s.name: %zu bytes, over the cap of %d bytes for a %s name", where, len,
                    LR__RECORD_MAX_MODEL_NAME, kind);
    return 0;
}

static int parse_model(struct lr_config *cfg, json_t *m, size_t i, struct lr_error *err)
{
    struct lr_model_info *info = &cfg->models[i];
    char where[48];
    const char *up1, *up2;
    const char *problem;
    int rc;

    snprintf(where, sizeof where, "models[%zu]", i);
    if (!json_is_object(m))
        return fail(err, "%s: expected an object, got %s", where, json_type_name(m));
    if (json_object_get(m, "api_key"))
        return fail(err,
                    "%s.api_key: keys are not read from the config file; put the key in an "
                    "environment variable and name it in api_key_env",
                    where);

    info->cost_per_input_token = NAN;
    info->cost_per_output_token = NAN;
    if ((rc = get_head_string(m, "name", where, 1, &info->name, err)) ||
        (rc = get_string(m, "backend", where, 0, 1, &info->backend, err)) ||
        (rc = get_head_string(m, "base_url", where, 0, &info->base_url, err)) ||
        (rc = get_string(m, "api_key_env", where, 0, 1, &info->api_key_env, err)) ||
        (rc = get_string(m, "upstream_model", where, 0, 1, &up1, err)) ||
        (rc = get_string(m, "hosted_model", where, 0, 1, &up2, err)) ||
        (rc = get_number(m, "cost_per_input_token", where, 0, 1e6, "a non-negative number",
                         &info->cost_per_input_token, err)) ||
        (rc = get_number(m, "cost_per_output_token", where, 0, 1e6, "a non-negative number",
                         &info->cost_per_output_token, err)) ||
        (rc = get_int(m, "max_concurrency", where, 0, 1000000, &info->max_concurrency, err)) ||
        (rc = get_int(m, "capacity", where, 0, 1000000000, &info->capacity, err)) ||
        (rc = parse_headers(m, where, err)))
        return rc;
    /* --models names models separated by commas: a name with one could
     * never be selected there. */
    if (strchr(info->name, ','))
        return fail(err,
                    "%s.name: '%s' contains a comma, which separates the names in "
                    "--models: choose a name without one",
                    where, info->name);
    if ((rc = check_name(info->name, where, "model", err)))
        return rc;

    /* Before any message that quotes the URL: it would show the password. */
    if (info->base_url && has_userinfo(info->base_url))
        return fail(err, "%s (%s): base_url %s", where, info->name, userinfo_problem);
    if (info->base_url && http_scheme_len(info->base_url) &&
        (problem = base_url_problem(info->base_url)))
        return fail(err, "%s (%s): base_url '%s' %s", where, info->name, info->base_url, problem);
    for (size_t j = 0; j < i; j++)
        if (strcmp(cfg->models[j].name, info->name) == 0)
            return fail(err, "%s.name: '%s' is already the name of models[%zu]", where,
                        info->name, j);
    /* Names are matched byte for byte, so 'GPT-4' and 'gpt-4' are two
     * models here, which clients and upstreams routinely take for one: a
     * client that asks for the other spelling reaches the other model, and
     * their outcomes are kept apart. Warned, naming both, as an unknown
     * key is; the first such name only. */
    for (size_t j = 0; j < i; j++)
        if (ascii_case_equal(cfg->models[j].name, info->name)) {
            if ((rc = warn(cfg,
                           "%s.name: '%s' differs from models[%zu].name '%s' only in case: "
                           "they are two models (names are matched byte for byte), which "
                           "clients and upstreams often take for one",
                           where, info->name, j, cfg->models[j].name)))
                return rc;
            break;
        }
    if (!info->backend)
        info->backend = "openai";
    else if (!in_list(info->backend, known_backends) &&
             (rc = warn_unknown_backend(cfg, where, info->backend)))
        return rc;
    if ((rc = warn_request_limits(cfg, m, where)))
        return rc;
    info->upstream_model = up1 ? up1 : up2 ? up2 : info->name;
    info->json = dump_compact(m);
    if (!info->json)
        return LR_ENOMEM;
    return warn_unknown_keys(cfg, m, where, model_keys);
}

/* Resolve an array of model names into config indices (allocated). */
static int resolve_names(struct lr_config *cfg, json_t *arr, const char *where, int **out,
                         size_t *n_out, struct lr_error *err)
{
    size_t n, i;
    int *idx;

    *out = NULL;
    *n_out = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return fail(err, "%s: expected an array of model names, got %s", where,
                    json_type_name(arr));
    n = json_array_size(arr);
    if (n == 0)
        return fail(err, "%s: expected at least one model name", where);
    idx = calloc(n, sizeof *idx);
    if (!idx)
        return LR_ENOMEM;
    for (i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        int k;
        if (!json_is_string(v)) {
            free(idx);
            return fail(err, "%s[%zu]: expected a model name, got %s", where, i,
                        json_type_name(v));
        }
        k = lr_config_model_index(cfg, json_string_value(v));
        if (k < 0) {
            free(idx);
            return fail(err, "%s[%zu]: '%s' is not a configured model", where, i,
                        json_string_value(v));
        }
        for (size_t j = 0; j < i; j++)
            if (idx[j] == k) {
                free(idx);
                return fail(err, "%s[%zu]: '%s' is listed twice", where, i,
                            json_string_value(v));
            }
        idx[i] = k;
    }
    *out = idx;
    *n_out = n;
    return 0;
}

/* ==== Router defaults and routes ==== */

static const char *const router_keys[] = {
    "strategy", "performance_requirement", "n_similar", "predictor", "alpha",
    "embedding", "store", "query_text", NULL,
};

static const char *const embedding_keys[] = {
    "base_url", "model", "api_key_env", "dimensions", "batch_size", "timeout_ms",
    "max_input_chars", NULL,
};

/* router.embedding: a remote OpenAI-compatible embeddings endpoint. */
static int parse_embedding(struct lr_config *cfg, json_t *e, struct lr_error *err)
{
    static const char where[] = "router.embedding";
    struct lr_embedding_info *info = &cfg->embedding;
    const char *url = NULL;
    int timeout = 30000;
    size_t len;
    const char *problem;
    int rc;

    if (!json_is_object(e))
        return fail(err, "%s: expected an object, got %s", where, json_type_name(e));
    if (json_object_get(e, "api_key"))
        return fail(err,
                    "%s.api_key: keys are not read from the config file; put the key in an "
                    "environment variable and name it in api_key_env",
                    where);
    info->batch_size = 64;
    info->max_input_chars = CONFIG_EMBED_INPUT_CHARS;
    if ((rc = get_head_string(e, "base_url", where, 1, &url, err)) ||
        /* The model names the store's embedder id, which takes no control
         * character: refused here, where the field to mend is known. */
        (rc = get_head_string(e, "model", where, 1, &info->model, err)) ||
        (rc = get_string(e, "api_key_env", where, 0, 1, &info->api_key_env, err)) ||
        (rc = get_int(e, "dimensions", where, 1, 65536, &info->dimensions, err)) ||
        (rc = get_int(e, "batch_size", where, 1, 2048, &info->batch_size, err)) ||
        (rc = get_int(e, "timeout_ms", where, 1, 3600000, &timeout, err)) ||
        (rc = get_int(e, "max_input_chars", where, 0, CONFIG_MAX_EMBED_INPUT_CHARS,
                      &info->max_input_chars, err)))
        return rc;
    if (has_userinfo(url))
        return fail(err, "%s.base_url: %s", where, userinfo_problem);
    if (!http_scheme_len(url)) {
        char shown[LR__SHOWN_CAP(LR__SHOWN_NAME)];
        return fail(err, "%s.base_url: expected an http:// or https:// URL, got '%s'", where,
                    lr__error_shown(url, LR__SHOWN_NAME, shown, sizeof shown));
    }
    if ((problem = base_url_problem(url)))
        return fail(err, "%s.base_url: '%s' %s", where, url, problem);
    if (strlen(info->model) > CONFIG_MAX_EMBED_MODEL)
        return fail(err, "%s.model: longer than %d bytes", where, CONFIG_MAX_EMBED_MODEL);
    len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    cfg->embedding_base_url = malloc(len + 1);
    if (!cfg->embedding_base_url)
        return LR_ENOMEM;
    memcpy(cfg->embedding_base_url, url, len);
    cfg->embedding_base_url[len] = '\0';
    for (size_t n = 0; n + 3 < http_scheme_len(url); n++) /* "HTTP://" as "http://" */
        cfg->embedding_base_url[n] = (char)tolower((unsigned char)url[n]);
    info->base_url = cfg->embedding_base_url;
    info->timeout_ms = timeout;
    snprintf(cfg->embedder_id, sizeof cfg->embedder_id, "openai:%s", info->model);
    info->embedder_id = cfg->embedder_id;
    cfg->has_embedding = 1;
    return warn_unknown_keys(cfg, e, where, embedding_keys);
}

static int check_strategy(const char *name, const char *where, struct lr_error *err)
{
    char shown[LR__SHOWN_CAP(LR__SHOWN_NAME)];
    if (name && !lr__strategy_find(name))
        return fail(err, "%s: unknown strategy '%s' (known: %s)", where,
                    lr__error_shown(name, LR__SHOWN_NAME, shown, sizeof shown),
                    lr__strategy_names());
    return 0;
}

static int parse_router(struct lr_config *cfg, json_t *r, const char *base_dir,
                        struct lr_error *err)
{
    struct lr_router_defaults *d = &cfg->defaults;
    const char *store = NULL;
    json_t *emb;
    int rc;

    d->strategy = "sequential";
    d->performance_requirement = 0.7;
    d->n_similar = 16;
    d->predictor = "default";
    d->alpha = NAN;
    d->query_text = "last_user";
    if (!r)
        goto done;
    if (!json_is_object(r))
        return fail(err, "router: expected an object, got %s", json_type_name(r));
    {
        const char *s = NULL, *p = NULL;
        if ((rc = get_string(r, "strategy", "router", 0, 1, &s, err)) ||
            (rc = check_strategy(s, "router.strategy", err)) ||
            (rc = get_number(r, "performance_requirement", "router", 0, 1,
                             "a number from 0 to 1", &d->performance_requirement, err)) ||
            (rc = get_int(r, "n_similar", "router", 1, LR_MAX_N_SIMILAR, &d->n_similar, err)) ||
            (rc = get_string(r, "predictor", "router", 0, 1, &p, err)) ||
            (rc = get_number(r, "alpha", "router", 0, 1, "a number from 0 to 1", &d->alpha,
                             err)) ||
            (rc = get_string(r, "store", "router", 0, 1, &store, err)))
            return rc;
        /* A name of blank space alone is a slip, not a file name: it made a store
         * file named "  " beside the config. */
        if (store && store[strspn(store, " \t\n\v\f\r")] == '\0')
            return fail(err, "router.store: the name is blank (only spaces, tabs or line "
                             "breaks): expected a file name");
        if (s)
            d->strategy = s;
        if (p) {
            if (strcmp(p, "default") != 0 && strcmp(p, "aios") != 0)
                return fail(err, "router.predictor: unknown predictor '%s' (known: default, aios)",
                            p);
            d->predictor = p;
        }
    }
    emb = json_object_get(r, "embedding");
    if (emb && !json_is_null(emb)) {
        if (!json_is_object(emb))
            return fail(err, "router.embedding: expected an object, got %s",
                        json_type_name(emb));
        cfg->embedding_json = dump_compact(emb);
        if (!cfg->embedding_json)
            return LR_ENOMEM;
        d->embedding_json = cfg->embedding_json;
        if ((rc = parse_embedding(cfg, emb, err)))
            return rc;
    }
    {
        const char *qt = NULL;
        if ((rc = get_string(r, "query_text", "router", 0, 1, &qt, err)))
            return rc;
        if (qt && strcmp(qt, "last_user") != 0 && strcmp(qt, "all_user") != 0)
            return fail(err, "router.query_text: expected \"last_user\" or \"all_user\", got '%s'",
                        qt);
        if (qt)
            d->query_text = qt;
    }
    if ((rc = warn_unknown_keys(cfg, r, "router", router_keys)))
        return rc;
done:
    if (isnan(d->alpha))
        d->alpha = d->performance_requirement;
    if (store) {
        if (store[0] == '/' || !base_dir || !*base_dir || strcmp(store, ":memory:") == 0)
            cfg->store_path = strdup(store);
        else
            cfg->store_path = lr__path_join(base_dir, store);
        if (!cfg->store_path)
            return LR_ENOMEM;
        d->store_path = cfg->store_path;
    }
    return 0;
}

static const char *const route_keys[] = {
    "name",     "strategy", "models", "performance_requirement", "fallbacks", "description",
    "retry",    "timeouts", NULL,
};

static int parse_route(struct lr_config *cfg, json_t *r, size_t i, struct lr_error *err)
{
    struct lr_route_info *info = &cfg->routes[i];
    char where[48], sub[64];
    int rc;

    snprintf(where, sizeof where, "routes[%zu]", i);
    if (!json_is_object(r))
        return fail(err, "%s: expected an object, got %s", where, json_type_name(r));
    info->performance_requirement = NAN;
    if ((rc = get_head_string(r, "name", where, 1, &info->name, err)) ||
        (rc = get_string(r, "strategy", where, 0, 1, &info->strategy, err)))
        return rc;
    snprintf(sub, sizeof sub, "%s.strategy", where);
    if ((rc = check_strategy(info->strategy, sub, err)) ||
        (rc = get_number(r, "performance_requirement", where, 0, 1, "a number from 0 to 1",
                         &info->performance_requirement, err)))
        return rc;
    if ((rc = check_name(info->name, where, "route", err)))
        return rc;
    if (lr_config_model_index(cfg, info->name) >= 0)
        return fail(err, "%s.name: '%s' is already the name of a model", where, info->name);
    for (size_t j = 0; j < i; j++)
        if (strcmp(cfg->routes[j].name, info->name) == 0)
            return fail(err, "%s.name: '%s' is already the name of routes[%zu]", where,
                        info->name, j);
    {
        int *idx;
        size_t n;
        snprintf(sub, sizeof sub, "%s.models", where);
        if ((rc = resolve_names(cfg, json_object_get(r, "models"), sub, &idx, &n, err)))
            return rc;
        info->models = idx;
        info->n_models = n;
        snprintf(sub, sizeof sub, "%s.fallbacks", where);
        if ((rc = resolve_names(cfg, json_object_get(r, "fallbacks"), sub, &idx, &n, err)))
            return rc;
        info->fallbacks = idx;
        info->n_fallbacks = n;
    }
    /* A fallback that is one of the route's models is ranked among them by
     * the strategy, not kept for after them: the file says otherwise. */
    for (size_t f = 0; f < info->n_fallbacks; f++)
        for (size_t k = 0; k < info->n_models; k++)
            if (info->fallbacks[f] == info->models[k] &&
                (rc = warn(cfg,
                           "%s.fallbacks[%zu]: '%s' is also one of the route's models "
                           "(%s.models[%zu]): it is ranked with them, not tried after them",
                           where, f, cfg->models[info->fallbacks[f]].name, where, k)))
                return rc;
    info->json = dump_compact(r);
    if (!info->json)
        return LR_ENOMEM;
    return warn_unknown_keys(cfg, r, where, route_keys);
}

/* ==== Loading ==== */

static const char *const top_keys[] = {"models", "router", "routes", "server", NULL};

static int parse_root(struct lr_config *cfg, const char *base_dir, struct lr_error *err)
{
    json_t *root = cfg->root, *models, *routes, *v;
    const char *key;
    size_t i;
    int rc;

    if (!json_is_object(root))
        return fail(err, "the configuration must be a JSON object, got %s",
                    json_type_name(root));
    models = json_object_get(root, "models");
    if (!models)
        return fail(err, "models: missing (expected a non-empty array of models)");
    if (!json_is_array(models))
        return fail(err, "models: expected an array, got %s", json_type_name(models));
    if (json_array_size(models) == 0)
        return fail(err, "models: expected at least one model");
    if (json_array_size(models) > CONFIG_MAX_MODELS)
        return fail(err, "models: %zu models, more than the %d a config may hold",
                    json_array_size(models), CONFIG_MAX_MODELS);
    cfg->models = calloc(json_array_size(models), sizeof *cfg->models);
    if (!cfg->models)
        return LR_ENOMEM;
    json_array_foreach(models, i, v)
    {
        cfg->n_models = i + 1; /* so lr_config_free() frees this one's dump too */
        if ((rc = parse_model(cfg, v, i, err)))
            return rc;
    }

    if ((rc = parse_router(cfg, json_object_get(root, "router"), base_dir, err)))
        return rc;

    routes = json_object_get(root, "routes");
    /* null is no array, as "router": null is no object: refused alike. */
    if (routes) {
        if (!json_is_array(routes))
            return fail(err, "routes: expected an array, got %s", json_type_name(routes));
        if (json_array_size(routes) > CONFIG_MAX_ROUTES)
            return fail(err, "routes: more than the %d a config may hold", CONFIG_MAX_ROUTES);
        cfg->routes = calloc(json_array_size(routes) + 1, sizeof *cfg->routes);
        if (!cfg->routes)
            return LR_ENOMEM;
        json_array_foreach(routes, i, v)
        {
            cfg->n_routes = i + 1;
            if ((rc = parse_route(cfg, v, i, err)))
                return rc;
        }
    }

    cfg->sections = calloc(json_object_size(root) + 1, sizeof *cfg->sections);
    if (!cfg->sections)
        return LR_ENOMEM;
    json_object_foreach(root, key, v)
    {
        struct section *s = &cfg->sections[cfg->n_sections];
        if (!in_list(key, top_keys) && (rc = warn(cfg, "%s: unknown key, ignored", key)))
            return rc;
        if (strcmp(key, "server") == 0 && !json_is_object(v))
            return fail(err, "server: expected an object, got %s", json_type_name(v));
        s->key = strdup(key);
        s->json = dump_compact(v);
        if (!s->key || !s->json) {
            free(s->key);
            free(s->json);
            return LR_ENOMEM;
        }
        cfg->n_sections++;
    }
    return 0;
}

static int load(json_t *root, const char *base_dir, struct lr_config **out, struct lr_error *err)
{
    struct lr_config *cfg = calloc(1, sizeof *cfg);
    int rc;

    if (!cfg) {
        json_decref(root);
        return lr__error_set(err, LR_ENOMEM, "out of memory loading the configuration");
    }
    cfg->root = root;
    rc = parse_root(cfg, base_dir, err);
    if (rc) {
        if (rc == LR_ENOMEM)
            lr__error_set(err, LR_ENOMEM, "out of memory loading the configuration");
        lr_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

static int parse_failed(const json_error_t *je, const char *what, struct lr_error *err)
{
    char text[sizeof je->text];
    /* Columns count from 1, as the data loaders count them: jansson says 0
     * at a line's start when it decoded nothing there (an empty file, a
     * byte that starts no UTF-8). */
    int col = lr__json_error_col(je);
    lr__json_error_text(je, text, sizeof text);
    lr__error_set(err, LR_EPARSE, "%s: line %d, column %d: %s", what, je->line,
                  col < 1 ? 1 : col, text);
    if (err)
        err->line = je->line;
    return LR_EPARSE;
}

/* The configuration text as JSON, for both loaders. A UTF-8 byte order mark,
 * as some editors save a file (and text read from one keeps), is not JSON:
 * it is skipped. A key given twice is refused. Returns the root or NULL,
 * with err filled naming `what`. */
static json_t *parse_text(const char *json, size_t len, const char *what, struct lr_error *err)
{
    json_error_t je;
    json_t *root;

    if (len >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0) {
        json += 3;
        len -= 3;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        parse_failed(&je, what, err);
    return root;
}

int lr_config_load_string(const char *json, size_t len, struct lr_config **out,
                          struct lr_error *err)
{
    const char *nul, *encoding, *how;
    json_t *root;

    if (!out)
        return lr__error_set(err, LR_EINVAL, "lr_config_load_string: out is NULL");
    *out = NULL;
    if (!json)
        return lr__error_set(err, LR_EINVAL, "lr_config_load_string: json is NULL");
    if (len > CONFIG_MAX_BYTES)
        return lr__error_set(err, LR_ETOOBIG, "the configuration is over %u bytes",
                             CONFIG_MAX_BYTES);
    if ((encoding = lr__text_encoding((const unsigned char *)json, len, &how)) != NULL)
        return lr__error_set(err, LR_EPARSE, "configuration: the text " LR__NOT_UTF8, encoding,
                             how);
    /* JSON text holds no NUL byte; one at the end is a len that counted the
     * string's terminator (sizeof a literal, strlen + 1), which the parser
     * would report as "end of file expected" at a column that says nothing
     * of it. */
    if ((nul = memchr(json, '\0', len)) != NULL) {
        size_t at = (size_t)(nul - json);
        if (at == len - 1)
            return lr__error_set(err, LR_EPARSE,
                                 "configuration: a NUL byte at offset %zu, its last: len must "
                                 "count the text's bytes without the terminating NUL",
                                 at);
        return lr__error_set(err, LR_EPARSE,
                             "configuration: a NUL byte at offset %zu (JSON text holds none)",
                             at);
    }
    if (!(root = parse_text(json, len, "configuration", err)))
        return LR_EPARSE;
    return load(root, NULL, out, err);
}

char *lr__config_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/"); /* "/c.json": the root, not "" */
    return strndup(path, (size_t)(slash - path));
}

char *lr__path_join(const char *dir, const char *name)
{
    size_t dlen = strlen(dir), len;
    char *out;
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    len = dlen + strlen(name) + 2;
    out = malloc(len);
    if (out)
        snprintf(out, len, "%.*s%s%s", (int)dlen, dir, dlen == 0 || dir[dlen - 1] == '/' ? "" : "/",
                 name);
    return out;
}

int lr_config_load_file(const char *path, struct lr_config **out, struct lr_error *err)
{
    FILE *f;
    char *buf = NULL, *dir = NULL;
    size_t len = 0, cap = 0;
    struct stat st;
    json_t *root;
    int rc;

    if (!out)
        return lr__error_set(err, LR_EINVAL, "lr_config_load_file: out is NULL");
    *out = NULL;
    if (!path)
        return lr__error_set(err, LR_EINVAL, "lr_config_load_file: path is NULL");
    f = fopen(path, "rb");
    if (!f) {
        char why[LR__OPEN_FAULT_CAP];
        return lr__error_set(err, LR_EIO, "%s: %s", path, lr__error_open_fault(path, errno, why));
    }
    /* A directory opens, and only its first read fails (EISDIR): say what it is. */
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return lr__error_set(err, LR_EIO, "%s: is a directory, not a configuration file", path);
    }
    for (;;) {
        size_t got;
        if (len == cap) {
            char *grown;
            /* A file of exactly the cap is read whole: the cap is refused
             * only once a byte past it is there. */
            if (cap >= CONFIG_MAX_BYTES && fgetc(f) == EOF && !ferror(f))
                break;
            if (cap >= CONFIG_MAX_BYTES) {
                free(buf);
                fclose(f);
                return lr__error_set(err, LR_ETOOBIG, "%s: the configuration is over %u bytes",
                                     path, CONFIG_MAX_BYTES);
            }
            cap = cap ? cap * 2 : 8192;
            grown = realloc(buf, cap + 1);
            if (!grown) {
                free(buf);
                fclose(f);
                return lr__error_set(err, LR_ENOMEM, "out of memory reading %s", path);
            }
            buf = grown;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        return lr__error_set(err, LR_EIO, "%s: read error: %s", path, strerror(e));
    }
    fclose(f);

    /* As lr_config_load_string() refuses one, named by its place. */
    {
        const char *how, *encoding = lr__text_encoding((const unsigned char *)buf, len, &how);
        long nul_line;
        int nul_col;
        if (encoding) {
            free(buf);
            lr__error_set(err, LR_EPARSE, "%s: line 1, column 1: the file " LR__NOT_UTF8, path,
                          encoding, how);
            if (err)
                err->line = 1;
            return LR_EPARSE;
        }
        if (lr__nul_at(buf, len, 1, 0, &nul_line, &nul_col)) {
            free(buf);
            lr__error_set(err, LR_EPARSE, "%s: line %ld, column %d: %s", path, nul_line, nul_col,
                          LR__NUL_BYTE);
            if (err)
                err->line = (int)nul_line;
            return LR_EPARSE;
        }
    }
    root = parse_text(buf, len, path, err);
    free(buf);
    if (!root)
        return LR_EPARSE;

    dir = lr__config_dir(path);
    if (!dir) {
        json_decref(root);
        return lr__error_set(err, LR_ENOMEM, "out of memory");
    }
    rc = load(root, dir, out, err);
    free(dir);
    if (rc && rc != LR_ENOMEM)
        lr__error_prefix(err, "%s: ", path); /* so a user knows which file to fix */
    return rc;
}

void lr_config_free(struct lr_config *cfg)
{
    size_t i;
    if (!cfg)
        return;
    for (i = 0; i < cfg->n_models; i++)
        free((char *)cfg->models[i].json);
    free(cfg->models);
    for (i = 0; i < cfg->n_routes; i++) {
        free((int *)cfg->routes[i].models);
        free((int *)cfg->routes[i].fallbacks);
        free((char *)cfg->routes[i].json);
    }
    free(cfg->routes);
    for (i = 0; i < cfg->n_sections; i++) {
        free(cfg->sections[i].key);
        free(cfg->sections[i].json);
    }
    free(cfg->sections);
    for (i = 0; i < cfg->n_warnings; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    free(cfg->store_path);
    free(cfg->embedding_json);
    free(cfg->embedding_base_url);
    json_decref(cfg->root);
    free(cfg);
}

/* ==== Lookups ==== */

size_t lr_config_model_count(const struct lr_config *cfg)
{
    return cfg ? cfg->n_models : 0;
}

const struct lr_model_info *lr_config_model(const struct lr_config *cfg, size_t i)
{
    return cfg && i < cfg->n_models ? &cfg->models[i] : NULL;
}

int lr_config_model_index(const struct lr_config *cfg, const char *name)
{
    if (!cfg || !name)
        return LR_ENOMODEL;
    for (size_t i = 0; i < cfg->n_models; i++)
        if (cfg->models[i].name && strcmp(cfg->models[i].name, name) == 0)
            return (int)i;
    return LR_ENOMODEL;
}

size_t lr_config_route_count(const struct lr_config *cfg)
{
    return cfg ? cfg->n_routes : 0;
}

const struct lr_route_info *lr_config_route(const struct lr_config *cfg, size_t i)
{
    return cfg && i < cfg->n_routes ? &cfg->routes[i] : NULL;
}

int lr_config_route_index(const struct lr_config *cfg, const char *name)
{
    if (!cfg || !name)
        return LR_ENOMODEL;
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (cfg->routes[i].name && strcmp(cfg->routes[i].name, name) == 0)
            return (int)i;
    return LR_ENOMODEL;
}

const struct lr_router_defaults *lr_config_router_defaults(const struct lr_config *cfg)
{
    return cfg ? &cfg->defaults : NULL;
}

const struct lr_embedding_info *lr_config_embedding(const struct lr_config *cfg)
{
    return cfg && cfg->has_embedding ? &cfg->embedding : NULL;
}

size_t lr_embedding_input_len(const struct lr_embedding_info *info, const char *text, size_t len)
{
    size_t chars = 0;
    if (!info || info->max_input_chars <= 0 || !text || len <= (size_t)info->max_input_chars)
        return len; /* a character is at least a byte: no more characters than that */
    /* Count lead bytes (anything but 10xxxxxx): the cut falls before the
     * lead byte of the character one past the limit, never inside one. */
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80 && chars++ == (size_t)info->max_input_chars)
            return i;
    return len;
}

const char *lr_config_section(const struct lr_config *cfg, const char *key)
{
    if (!cfg || !key)
        return NULL;
    for (size_t i = 0; i < cfg->n_sections; i++)
        if (strcmp(cfg->sections[i].key, key) == 0)
            return cfg->sections[i].json;
    return NULL;
}

size_t lr_config_warning_count(const struct lr_config *cfg)
{
    return cfg ? cfg->n_warnings : 0;
}

const char *lr_config_warning(const struct lr_config *cfg, size_t i)
{
    return cfg && i < cfg->n_warnings ? cfg->warnings[i] : NULL;
}
