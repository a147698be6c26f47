/* embed_http.c -- the CLI's client for an OpenAI-compatible embeddings
 * endpoint (see embed_http.h).
 *
 * One request per batch: {"model", "input": [texts], "dimensions"?} to
 * {base_url}/embeddings with a Bearer key when one is configured. The answer
 * is read into a buffer with a cap sized to the batch, parsed with jansson
 * (an answer holding a raw NUL byte is refused first: jansson reads past
 * one after a number), and checked before a single float is handed on:
 * one embedding per text, each `index` in range and seen once (rows are
 * placed by index, since a server may answer out of order), every vector
 * of the expected dimension with finite numbers, not all zero. Errors name the URL and pass on the
 * server's own message for a non-200 answer.
 *
 * Threads: a client is used by one thread at a time (the CLI has one).
 */
#include "embed_http.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "gateway.h"
#include "jsonscan.h"

/* The answer to a batch of n texts may be up to this many bytes: JSON
 * floats take about 10 to 25 characters each. */
#define ANSWER_BASE_BYTES (1u << 20)
#define ANSWER_BYTES_PER_FLOAT 32u
#define ANSWER_MAX_BYTES ((size_t)512 << 20)
/* Dimension assumed for the cap before the server's is known. */
#define PROBE_DIM 65536u

struct embed_http {
    const struct lr_embedding_info *info;
    CURL *curl;
    struct curl_slist *headers;
    char url[2048];
    size_t dim; /* learned by embed_http_dim, 0 = not yet */
    const volatile sig_atomic_t *cancel; /* embed_http_set_cancel, or NULL */
    char errbuf[CURL_ERROR_SIZE];
};

struct answer {
    char *p;
    size_t n, cap, limit;
    int too_big;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(struct lr_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->line = 0;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct answer *a = arg;
    size_t len = size * nmemb;
    if (len > a->limit - a->n) {
        a->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (a->n + len + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 16384;
        while (cap < a->n + len + 1)
            cap *= 2;
        char *p = realloc(a->p, cap);
        if (!p)
            return 0;
        a->p = p;
        a->cap = cap;
    }
    memcpy(a->p + a->n, data, len);
    a->n += len;
    a->p[a->n] = '\0';
    return len;
}

/* libcurl calls this about once a second while a request waits, and more
 * often while bytes move: a non-zero return aborts the transfer. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct embed_http *c = arg;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return c->cancel && *c->cancel;
}

/* ==== Setup ==== */

int embed_http_new(const struct lr_embedding_info *info, struct embed_http **out,
                   struct lr_error *err)
{
    struct embed_http *c;
    char auth[1024];
    int n;

    *out = NULL;
    if (!info)
        return fail(err, LR_EINVAL, "no router.embedding in the config");
    c = calloc(1, sizeof *c);
    if (!c)
        return fail(err, LR_ENOMEM, "out of memory");
    c->info = info;
    n = snprintf(c->url, sizeof c->url, "%s/embeddings", info->base_url);
    if (n < 0 || (size_t)n >= sizeof c->url) {
        free(c);
        return fail(err, LR_ECONFIG, "router.embedding.base_url: longer than %zu bytes",
                    sizeof c->url - 20);
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(c);
        return fail(err, LR_ENOMEM, "libcurl failed to initialise");
    }
    c->curl = curl_easy_init();
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (c->headers)
        c->headers = curl_slist_append(c->headers, "Accept: application/json");
    if (c->headers && info->api_key_env) {
        const char *key = getenv(info->api_key_env);
        if (key && *key && gw_env_value_unsafe(key)) {
            embed_http_free(c);
            return fail(err, LR_ECONFIG,
                        "router.embedding.api_key_env: %s holds a control character (CR, LF, "
                        "...), not an API key",
                        info->api_key_env);
        }
        if (key && *key) {
            n = snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
            if (n < 0 || (size_t)n >= sizeof auth) {
                embed_http_free(c);
                return fail(err, LR_ECONFIG, "router.embedding.api_key_env: the key in %s is "
                                             "longer than %zu bytes",
                            info->api_key_env, sizeof auth - 30);
            }
            c->headers = curl_slist_append(c->headers, auth);
        } else {
            fprintf(stderr,
                    "llmroute: warning: router.embedding.api_key_env: %s is not set; requests "
                    "to %s go without a key\n",
                    info->api_key_env, c->url);
        }
    }
    if (!c->curl || !c->headers) {
        embed_http_free(c);
        return fail(err, LR_ENOMEM, "out of memory");
    }
    curl_easy_setopt(c->curl, CURLOPT_URL, c->url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, info->timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS,
                     info->timeout_ms < 10000 ? info->timeout_ms : 10000L);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
    *out = c;
    return 0;
}

void embed_http_free(struct embed_http *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    curl_global_cleanup();
    free(c);
}

void embed_http_set_cancel(struct embed_http *c, const volatile sig_atomic_t *flag)
{
    c->cancel = flag;
}

const char *embed_http_url(const struct embed_http *c)
{
    return c->url;
}

/* ==== One request ==== */

/* The error message in a non-200 answer: OpenAI's {"error": {"message"}},
 * or {"error": "..."} (Ollama, TEI), {"message"} (vLLM), {"detail"}. */
static void server_message(const struct answer *a, char *buf, size_t cap)
{
    /* The gateway's fetch (embedq.c) reads the same shapes. */
    if (!gw_embed_error_message(a->p, a->n, buf, cap)) {
        if (a->n)
            snprintf(buf, cap, "%.200s", a->p);
        else
            snprintf(buf, cap, "(empty body)");
    }
    /* Printed on a terminal: a control character is a blank, a byte that
     * starts no UTF-8 character (or one cut at the cap) a '?'. */
    for (unsigned char *p = (unsigned char *)buf; *p;) {
        size_t len = *p < 0x80 ? 1 : gw_utf8_char_len(p);
        if (*p < 0x20 || *p == 0x7f)
            *p = ' ';
        else if (len == 0)
            *p = '?';
        p += len ? len : 1;
    }
}

static char *request_body(const struct embed_http *c, const char *const *texts, size_t n)
{
    json_t *o = json_object(), *in = json_array();
    char *s = NULL;
    int bad = !o || !in;

    /* Each text cut to router.embedding.max_input_chars, as the gateway
     * cuts a query it routes or records (embedq.c). */
    for (size_t i = 0; i < n && !bad; i++) {
        size_t len = texts[i] ? strlen(texts[i]) : 0;
        bad = !texts[i] ||
              json_array_append_new(
                  in, json_stringn(texts[i], lr_embedding_input_len(c->info, texts[i], len))) != 0;
    }
    if (!bad) {
        bad = json_object_set_new(o, "model", json_string(c->info->model)) != 0 ||
              json_object_set(o, "input", in) != 0;
        if (!bad && c->info->dimensions > 0)
            bad = json_object_set_new(o, "dimensions", json_integer(c->info->dimensions)) != 0;
    }
    if (!bad)
        s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(in);
    json_decref(o);
    return s;
}

/* Check the answer to n texts and write its rows into out (n x dim). With
 * dim == 0 (a probe), only learn the first vector's dimension. */
static int parse_answer(struct embed_http *c, const struct answer *a, size_t n, float *out,
                        size_t dim, size_t *got_dim, struct lr_error *err)
{
    json_error_t je;
    json_t *root;
    const json_t *data;
    unsigned char *seen = NULL;
    int rc = 0, line, column;

    /* No JSON text holds a raw NUL byte, but jansson reads past one after
     * a number: its vector would be used, and stored. */
    if (js_find_nul(a->p, a->n, &line, &column))
        return fail(err, LR_EPARSE,
                    "embedding server at %s: the answer is not JSON: a NUL byte at line %d, "
                    "column %d " JS_NUL_WHY,
                    c->url, line, column);
    root = json_loadb(a->p ? a->p : "", a->n, 0, &je);
    if (!root)
        return fail(err, LR_EPARSE, "embedding server at %s: the answer is not JSON (%s)", c->url,
                    je.text);
    data = json_object_get(root, "data");
    if (!json_is_array(data) && json_is_object(root) && json_object_get(root, "error") &&
        !json_is_null(json_object_get(root, "error"))) {
        /* An error object with a 200 (as some proxies answer a quota or
         * rate limit): its message is the reason, not the missing data. */
        char msg[300];
        server_message(a, msg, sizeof msg);
        rc = fail(err, LR_EIO, "embedding server at %s answered HTTP 200 with an error: %s",
                  c->url, msg);
        goto out;
    }
    if (!json_is_array(data)) {
        rc = fail(err, LR_EPARSE, "embedding server at %s: the answer has no \"data\" array",
                  c->url);
        goto out;
    }
    if (json_array_size(data) != n) {
        rc = fail(err, LR_EPARSE, "embedding server at %s: sent %zu texts, got %zu embeddings",
                  c->url, n, json_array_size(data));
        goto out;
    }
    seen = calloc(n ? n : 1, 1);
    if (!seen) {
        rc = fail(err, LR_ENOMEM, "out of memory reading embeddings");
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        const json_t *item = json_array_get(data, k);
        const json_t *jx = json_object_get(item, "index");
        const json_t *vec = json_object_get(item, "embedding");
        size_t idx = k, len;

        if (jx) {
            if (!json_is_integer(jx) || json_integer_value(jx) < 0 ||
                (uint64_t)json_integer_value(jx) >= n) {
                rc = fail(err, LR_EPARSE,
                          "embedding server at %s: data[%zu].index: expected an integer from 0 "
                          "to %zu",
                          c->url, k, n - 1);
                goto out;
            }
            idx = (size_t)json_integer_value(jx);
        }
        if (seen[idx]) {
            rc = fail(err, LR_EPARSE, "embedding server at %s: data[%zu]: index %zu given twice",
                      c->url, k, idx);
            goto out;
        }
        seen[idx] = 1;
        if (!json_is_array(vec) || json_array_size(vec) == 0) {
            rc = fail(err, LR_EPARSE,
                      "embedding server at %s: data[%zu].embedding: expected an array of "
                      "numbers (a base64 encoding is not read)",
                      c->url, k);
            goto out;
        }
        len = json_array_size(vec);
        if (dim == 0) { /* a probe */
            *got_dim = len;
            goto out;
        }
        if (len != dim) {
            rc = fail(err, LR_EINVAL,
                      "embedding server at %s returned vectors of dimension %zu, expected %zu "
                      "(router.embedding.dimensions, or the history store's dimension)",
                      c->url, len, dim);
            goto out;
        }
        for (size_t j = 0; j < len; j++) {
            const json_t *x = json_array_get(vec, j);
            double d = json_is_number(x) ? json_number_value(x) : NAN;
            if (!isfinite(d) || fabs(d) > 3.0e38) {
                rc = fail(err, LR_EPARSE,
                          "embedding server at %s: data[%zu].embedding[%zu]: expected a finite "
                          "number",
                          c->url, k, j);
                goto out;
            }
            out[idx * dim + j] = (float)d;
        }
        /* No direction: the library would refuse it as the query's fault
         * (route and eval: exit 2, "the query's embedding is zero or not
         * finite"). It is the server's. */
        if (!gw_vector_has_direction(out + idx * dim, len)) {
            rc = fail(err, LR_EPARSE,
                      "embedding server at %s: data[%zu].embedding is a zero vector (%zu "
                      "numbers, none of them away from 0), which points nowhere to compare",
                      c->url, k, len);
            goto out;
        }
    }
    if (got_dim)
        *got_dim = dim;
out:
    free(seen);
    json_decref(root);
    return rc;
}

/* One POST for texts[0..n). */
static int embed_batch(struct embed_http *c, const char *const *texts, size_t n, float *out,
                       size_t dim, size_t *got_dim, struct lr_error *err)
{
    struct answer a = {0};
    char *body = request_body(c, texts, n);
    long status = 0;
    CURLcode cc;
    int rc = 0;

    if (!body)
        return fail(err, LR_ENOMEM, "out of memory building an embeddings request");
    a.limit = ANSWER_BASE_BYTES + n * (dim ? dim : PROBE_DIM) * ANSWER_BYTES_PER_FLOAT;
    if (a.limit > ANSWER_MAX_BYTES)
        a.limit = ANSWER_MAX_BYTES;
    c->errbuf[0] = '\0';
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &a);
    cc = curl_easy_perform(c->curl);
    if (cc != CURLE_OK) {
        if (cc == CURLE_ABORTED_BY_CALLBACK && c->cancel && *c->cancel)
            rc = fail(err, LR_ECANCELED,
                      "stopped by a signal while waiting for the embedding server at %s", c->url);
        else if (a.too_big)
            rc = fail(err, LR_ETOOBIG,
                      "embedding server at %s: the answer to %zu texts is over the cap of %zu "
                      "bytes (lower router.embedding.batch_size)",
                      c->url, n, a.limit);
        else if (cc == CURLE_OPERATION_TIMEDOUT)
            rc = fail(err, LR_EIO,
                      "embedding server at %s did not answer within %ld ms "
                      "(router.embedding.timeout_ms)",
                      c->url, c->info->timeout_ms);
        else {
            /* A status line read: the server was reached, its answer
             * broke off (the connection closed or reset mid-body). */
            curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
            if (status)
                rc = fail(err, LR_EIO, "embedding server at %s: its answer (HTTP %ld) broke off: %s",
                          c->url, status, c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
            else
                rc = fail(err, LR_EIO, "cannot reach the embedding server at %s: %s", c->url,
                          c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
        }
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 300 && status < 400) {
        /* Never followed (it would resend the texts elsewhere): the
         * base_url is wrong, as the gateway's fetch says (embedq.c). */
        char *loc = NULL, where[GW_REDIRECT_PHRASE_CAP];
        curl_easy_getinfo(c->curl, CURLINFO_REDIRECT_URL, &loc);
        gw_redirect_phrase(where, sizeof where, loc);
        rc = fail(err, LR_EIO,
                  "embedding server at %s answered HTTP %ld, %s; redirects are not followed: "
                  "check router.embedding.base_url",
                  c->url, status, where);
        goto out;
    }
    if (status != 200) {
        char msg[300];
        server_message(&a, msg, sizeof msg);
        rc = fail(err, LR_EIO, "embedding server at %s answered HTTP %ld: %s", c->url, status,
                  msg);
        goto out;
    }
    rc = parse_answer(c, &a, n, out, dim, got_dim, err);
out:
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
    free(body);
    free(a.p);
    return rc;
}

/* ==== Public ==== */

int embed_http_embed(struct embed_http *c, const char *const *texts, size_t n, float *out,
                     size_t dim, struct lr_error *err)
{
    size_t batch = c->info->batch_size > 0 ? (size_t)c->info->batch_size : 64;
    if (dim == 0)
        return fail(err, LR_EINVAL, "embedding: the vectors' dimension is not known");
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        int rc = embed_batch(c, texts + i, m, out + i * dim, dim, NULL, err);
        if (rc)
            return rc;
    }
    return 0;
}

int embed_http_dim(struct embed_http *c, size_t *dim, struct lr_error *err)
{
    static const char *const probe[] = {"dimension probe"};
    if (c->info->dimensions > 0)
        c->dim = (size_t)c->info->dimensions;
    if (!c->dim) {
        size_t got = 0;
        int rc = embed_batch(c, probe, 1, NULL, 0, &got, err);
        if (rc)
            return rc;
        c->dim = got;
    }
    *dim = c->dim;
    return 0;
}

int embed_http_callback(void *arg, const char *const *texts, size_t n, float *out, size_t dim,
                        struct lr_error *err)
{
    return embed_http_embed(arg, texts, n, out, dim, err);
}

void embed_store_options(const struct lr_config *cfg, struct lr_store_options *so)
{
    const struct lr_embedding_info *e = lr_config_embedding(cfg);
    if (e) {
        so->embedder = e->embedder_id;
        so->dense_dim = e->dimensions;
    }
}

int embed_store_is_dense(const struct lr_store *store)
{
    const char *id = lr_store_embedder(store);
    return id && strcmp(id, LR_EMBEDDER_BUILTIN) != 0;
}
