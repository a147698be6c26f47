/* mock.c -- the mock backend (see mock.h). A plain answer is built up
 * front as one piece; a stream's server-sent events are made one at a time,
 * as they are handed out (a stream of 100,000 pieces holds one, not
 * 100,000). A timer hands them out: the first after latency_ms, the next ones
 * chunk_delay_ms apart, or with no delay at most MOCK_PIECES_PER_TURN per
 * turn of the event loop before the timer runs again, so a long stream never
 * holds the loop. A piece the consumer refuses (UP_PAUSE: its client is
 * behind by more than server.stream_buffer_bytes) is kept and offered again
 * after mock_resume(), as a real upstream transfer is paused. Chat and
 * completions answer the request's `n` choices for each prompt, as
 * OpenAI's API does (each stream event is one choice's). /v1/responses
 * gets the Responses API's shapes: a `response` object with one output
 * message, or the events response.created, response.output_item.added,
 * response.content_part.added, response.output_text.delta (one a content
 * piece) and response.completed, with no [DONE]. A request's output limit
 * (max_tokens and the like) below the answer's tokens cuts it short, as a
 * model stops there: usage counts the limit, the text keeps as many of its
 * words in proportion, and the finish is "length" (Responses: status
 * "incomplete", reason max_output_tokens, the event response.incomplete);
 * a limit that is no integer from 1 is refused 400, as `n` is.
 *
 * Threads: the event loop thread only.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "mock.h"

/* Pieces handed out in one timer run when there is no chunk delay. */
#define MOCK_PIECES_PER_TURN 64
/* The most choices an answer has: OpenAI's cap on `n`, here also on `n`
 * times the prompts of a completions request. */
#define MOCK_MAX_CHOICES 128
/* The most dimensions a mock embedding has (OpenAI's largest model: 3072). */
#define MOCK_MAX_DIMS 3072

struct mock_xfer {
    struct event *timer;
    struct up_callbacks cb;
    void *arg;
    char *piece; /* the piece being offered (NULL: make piece `next`) */
    size_t piece_len;
    size_t n, next; /* pieces in all; the next to hand out */
    int head_sent, stream;
    /* 200, or 400 for a request the mock refuses. */
    int status;
    int in_tick, aborted; /* mock_abort() inside a callback defers the free */
    long chunk_delay_ms;
    /* What a stream's pieces are made of (see piece_make()). */
    int chat, responses, include_usage;
    int cut_short; /* the request's output limit stopped the answer */
    char *content; /* a copy: the configuration may be reloaded meanwhile */
    size_t clen;
    size_t n_chars; /* its UTF-8 characters */
    long chunks;    /* content pieces: at most n_chars, so none is empty */
    /* Where the last cut fell: pieces are made in order. */
    size_t at_char, at_byte;
    /* The content piece made last, kept for the other choices' events. */
    long cut_k;
    size_t cut_s, cut_e;
    /* Chat and completions: the choices, n times the prompts. */
    size_t n_choices;
    char *prefix; /* `data: {"id":...,"model":M,"system_fingerprint":...,"choices":`; for
                   * /v1/responses the response object's members before its status */
    unsigned long long id;
    char usage[160];
};

static unsigned long long mock_serial;

static void mock_free(struct mock_xfer *x)
{
    if (!x)
        return;
    if (x->timer)
        event_free(x->timer);
    free(x->piece);
    free(x->content);
    free(x->prefix);
    free(x);
}

static void schedule(struct mock_xfer *x, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(x->timer, &tv);
}

static char *piece_make(struct mock_xfer *x, size_t k);

static void tick(evutil_socket_t fd, short what, void *arg)
{
    struct mock_xfer *x = arg;
    int budget = MOCK_PIECES_PER_TURN;
    (void)fd;
    (void)what;
    x->in_tick = 1;
    if (!x->head_sent) {
        struct up_head h = {200, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0};
        h.status = x->status;
        h.content_type = x->stream ? "text/event-stream" : "application/json";
        x->head_sent = 1;
        x->cb.on_head(x->arg, &h);
    }
    while (x->next < x->n && !x->aborted) {
        int rc;
        if (budget-- == 0) {
            /* Enough for this turn: let the loop serve others first. */
            schedule(x, 0);
            x->in_tick = 0;
            return;
        }
        if (!x->piece) {
            x->piece = piece_make(x, x->next);
            if (!x->piece) {
                void (*done)(void *, enum up_error, const char *) = x->cb.on_done;
                void *a = x->arg;
                mock_free(x);
                done(a, UP_ENOMEM, "out of memory making the mock's answer");
                return;
            }
            x->piece_len = strlen(x->piece);
        }
        rc = x->cb.on_data(x->arg, x->piece, x->piece_len);
        if (x->aborted)
            break;
        if (rc == UP_PAUSE) {
            x->in_tick = 0;
            return; /* offered again on resume */
        }
        free(x->piece);
        x->piece = NULL;
        x->next++;
        if (x->chunk_delay_ms > 0 && x->next < x->n) {
            schedule(x, x->chunk_delay_ms);
            x->in_tick = 0;
            return;
        }
    }
    if (x->aborted) {
        mock_free(x);
        return;
    }
    {
        void (*done)(void *, enum up_error, const char *) = x->cb.on_done;
        void *a = x->arg;
        mock_free(x);
        done(a, UP_OK, "ok");
    }
}

static char *fmt(const char *f, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static char *fmt(const char *f, ...)
{
    va_list ap;
    int n;
    char *p;
    va_start(ap, f);
    n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    p = malloc((size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, f);
    vsnprintf(p, (size_t)n + 1, f, ap);
    va_end(ap);
    return p;
}

/* A piece of text as a JSON string (new allocation). */
static char *json_str(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    char *out = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    return out;
}

static long count_words(const char *s)
{
    long n = 0;
    int in = 0;
    for (; *s; s++) {
        int sp = *s == ' ' || *s == '\n' || *s == '\t';
        if (!sp && !in)
            n++;
        in = !sp;
    }
    return n;
}

/* The length of s up to the end of its first k words. */
static size_t words_end(const char *s, long k)
{
    size_t i = 0, end = 0;
    long n = 0;
    int in = 0;
    for (; s[i]; i++) {
        int sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t';
        if (!sp && !in && ++n > k)
            break;
        if (!sp)
            end = i + 1;
        in = !sp;
    }
    return end;
}

static int utf8_continuation(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

/* The byte offset where piece k of the content starts (k == x->chunks: its
 * end). Pieces hold n_chars / chunks whole characters each, give or take
 * one, so a character is never split and no piece is empty. The offset is
 * found from the last cut's, since pieces are made in order. */
static size_t cut(struct mock_xfer *x, long k)
{
    size_t c = (size_t)((unsigned long long)x->n_chars * (unsigned long long)k /
                        (unsigned long long)x->chunks);
    if (c < x->at_char)
        x->at_char = x->at_byte = 0;
    while (x->at_char < c) {
        x->at_byte++;
        while (x->at_byte < x->clen && utf8_continuation(x->content[x->at_byte]))
            x->at_byte++;
        x->at_char++;
    }
    return x->at_byte;
}

/* Where content piece k starts and ends: each choice of a stream has it in
 * turn, so it is cut once. */
static void piece_range(struct mock_xfer *x, long k, size_t *s, size_t *e)
{
    if (x->cut_k != k) {
        x->cut_s = cut(x, k);
        x->cut_e = cut(x, k + 1);
        x->cut_k = k;
    }
    *s = x->cut_s;
    *e = x->cut_e;
}

/* A Responses object (x->prefix, then its status, output and usage) with the
 * whole text as its one output message, or with no output while in progress. */
static char *response_object(const struct mock_xfer *x, int completed)
{
    const char *status = x->cut_short ? "incomplete" : "completed";
    const char *details =
        x->cut_short ? "\"incomplete_details\":{\"reason\":\"max_output_tokens\"}," : "";
    char *text, *p;
    if (!completed)
        return fmt("{%s,\"status\":\"in_progress\",\"output\":[],\"usage\":null}", x->prefix);
    text = json_str(x->content, x->clen);
    if (!text)
        return NULL;
    p = fmt("{%s,\"status\":\"%s\",%s\"output\":[{\"type\":\"message\","
            "\"id\":\"msg-mock-%llu\",\"status\":\"%s\",\"role\":\"assistant\","
            "\"content\":[{\"type\":\"output_text\",\"text\":%s,\"annotations\":[]}]}],"
            "\"usage\":%s}",
            x->prefix, status, details, x->id, status, text, x->usage);
    free(text);
    return p;
}

/* Piece k of a Responses stream: response.created, the output message and
 * its text part begun (output_item.added, content_part.added: what SDKs
 * accumulate the deltas into), one output_text delta a content piece,
 * response.completed or response.incomplete (with the usage). Each event is numbered by its
 * sequence_number. */
static char *response_piece(struct mock_xfer *x, size_t k)
{
    size_t n_content = x->clen > 0 ? (size_t)x->chunks : 0;
    char *obj, *p;
    if (k == 1)
        return fmt("event: response.output_item.added\ndata: {\"type\":"
                   "\"response.output_item.added\",\"sequence_number\":1,\"output_index\":0,"
                   "\"item\":{\"type\":\"message\",\"id\":\"msg-mock-%llu\",\"status\":"
                   "\"in_progress\",\"role\":\"assistant\",\"content\":[]}}\n\n",
                   x->id);
    if (k == 2)
        return fmt("event: response.content_part.added\ndata: {\"type\":"
                   "\"response.content_part.added\",\"sequence_number\":2,\"item_id\":"
                   "\"msg-mock-%llu\",\"output_index\":0,\"content_index\":0,\"part\":{"
                   "\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]}}\n\n",
                   x->id);
    if (k >= 3 && k < 3 + n_content) {
        size_t s, e;
        char *text;
        piece_range(x, (long)k - 3, &s, &e);
        text = json_str(x->content + s, e - s);
        if (!text)
            return NULL;
        p = fmt("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
                "\"sequence_number\":%zu,\"item_id\":\"msg-mock-%llu\",\"output_index\":0,"
                "\"content_index\":0,\"delta\":%s}\n\n",
                k, x->id, text);
        free(text);
        return p;
    }
    obj = response_object(x, k != 0);
    if (!obj)
        return NULL;
    p = k == 0 ? fmt("event: response.created\ndata: {\"type\":\"response.created\","
                     "\"sequence_number\":0,\"response\":%s}\n\n",
                     obj)
               : fmt("event: response.%s\ndata: {\"type\":\"response.%s\","
                     "\"sequence_number\":%zu,\"response\":%s}\n\n",
                     x->cut_short ? "incomplete" : "completed",
                     x->cut_short ? "incomplete" : "completed", k, obj);
    free(obj);
    return p;
}

static const char *finish_reason(const struct mock_xfer *x)
{
    return x->cut_short ? "length" : "stop";
}

/* Piece k of a chat or completions stream: the role (chat only), the
 * content pieces, the finishes, each of them once a choice, index by index;
 * then the usage (when asked for) and [DONE]. A new allocation, or NULL
 * when out of memory. */
static char *piece_make(struct mock_xfer *x, size_t k)
{
    size_t n_content = x->clen > 0 ? (size_t)x->chunks : 0, nc = x->n_choices;
    if (x->responses)
        return response_piece(x, k);
    if (x->chat) {
        if (k < nc)
            return fmt("%s[{\"index\":%zu,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                       "\"finish_reason\":null}]}\n\n",
                       x->prefix, k);
        k -= nc;
    }
    if (k < n_content * nc) {
        size_t s, e;
        char *text, *p;
        piece_range(x, (long)(k / nc), &s, &e);
        text = json_str(x->content + s, e - s);
        if (!text)
            return NULL;
        p = x->chat ? fmt("%s[{\"index\":%zu,\"delta\":{\"content\":%s},"
                          "\"finish_reason\":null}]}\n\n",
                          x->prefix, k % nc, text)
                    : fmt("%s[{\"index\":%zu,\"text\":%s,\"finish_reason\":null}]}\n\n", x->prefix,
                          k % nc, text);
        free(text);
        return p;
    }
    k -= n_content * nc;
    if (k < nc)
        return x->chat ? fmt("%s[{\"index\":%zu,\"delta\":{},\"finish_reason\":\"%s\"}]}\n\n",
                             x->prefix, k, finish_reason(x))
                       : fmt("%s[{\"index\":%zu,\"text\":\"\",\"finish_reason\":\"%s\"}]}\n\n",
                             x->prefix, k, finish_reason(x));
    if (x->include_usage && k == nc)
        return fmt("%s[],\"usage\":%s}\n\n", x->prefix, x->usage);
    return fmt("data: [DONE]\n\n");
}

/* The choices of a plain chat or completions answer, alike but for their
 * index; text is the reply as a JSON string. A new allocation, or NULL. */
static char *plain_choices(const struct mock_xfer *x, int chat, const char *text)
{
    char *out = NULL;
    size_t cap = 0, len = 0;
    for (size_t i = 0; i < x->n_choices; i++) {
        char *one = chat ? fmt("%s{\"index\":%zu,\"message\":{\"role\":\"assistant\","
                               "\"content\":%s},\"finish_reason\":\"%s\"}",
                               i ? "," : "", i, text, finish_reason(x))
                         : fmt("%s{\"index\":%zu,\"text\":%s,\"finish_reason\":\"%s\","
                               "\"logprobs\":null}",
                               i ? "," : "", i, text, finish_reason(x));
        size_t n = one ? strlen(one) : 0;
        if (!one || gw_reserve(&out, &cap, len + n + 1, 256) != 0) {
            free(one);
            free(out);
            return NULL;
        }
        memcpy(out + len, one, n + 1);
        len += n;
        free(one);
    }
    return out;
}

/* Answer 400 with an OpenAI-shaped error, as the API refuses such a
 * request. Returns 0, or -1 out of memory. */
static int refuse(struct mock_xfer *x, const char *param, const char *code, const char *f, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int refuse(struct mock_xfer *x, const char *param, const char *code, const char *f, ...)
{
    char msg[256], body[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(msg, sizeof msg, f, ap);
    va_end(ap);
    gw_error_format(body, sizeof body, msg, "invalid_request_error", param, code);
    x->status = 400;
    x->stream = 0;
    x->piece = strdup(body);
    return x->piece ? 0 : -1;
}

/* How many choices a chat or completions request asks for, in
 * x->n_choices; 1 when it refuses the request (and answers 400). Returns 0,
 * or -1 out of memory. */
static int count_choices(struct mock_xfer *x, const struct mock_call *c)
{
    unsigned long long all;
    char got[32];
    x->n_choices = 1;
    if (c->n_bad)
        return refuse(x, "n", "invalid_type", "Invalid type for 'n': expected an integer.");
    snprintf(got, sizeof got, "%lld", c->n);
    if (c->n < 1 || c->n > MOCK_MAX_CHOICES)
        return refuse(x, "n", c->n < 1 ? "integer_below_min_value" : "integer_above_max_value",
                      "Invalid 'n': integer %s value. Expected a value %s %d, but got %s "
                      "instead.",
                      c->n < 1 ? "below minimum" : "above maximum",
                      c->n < 1 ? ">=" : "<=", c->n < 1 ? 1 : MOCK_MAX_CHOICES,
                      c->n_text && c->n_text[0] ? c->n_text : got);
    all = (unsigned long long)c->n * (c->n_prompts ? c->n_prompts : 1);
    if (all > MOCK_MAX_CHOICES)
        return refuse(x, "prompt", "too_many_choices",
                      "%zu prompts times n %lld is %llu choices; at most %d are answered.",
                      c->n_prompts, c->n, all, MOCK_MAX_CHOICES);
    x->n_choices = (size_t)all;
    return 0;
}

/* A stream's (or a Responses object's) content, kept with how it is cut:
 * into `chunks` pieces, or one a character when it has fewer. */
static int keep_content(struct mock_xfer *x, const char *content, size_t clen, long chunks)
{
    x->n_chars = 0;
    for (size_t i = 0; i < clen; i++)
        x->n_chars += !utf8_continuation(content[i]);
    x->chunks = x->n_chars < (size_t)chunks ? (long)x->n_chars : chunks;
    x->clen = clen;
    x->content = malloc(clen + 1);
    if (!x->content)
        return -1;
    memcpy(x->content, content, clen);
    x->content[clen] = '\0';
    return 0;
}

/* The length of n bytes in base64 (RFC 4648, padded). */
static size_t base64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* Writes n bytes of in as padded base64 to out (base64_len(n) chars, no NUL);
 * returns the chars written. */
static size_t base64(char *out, const unsigned char *in, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    return o;
}

static int build(struct mock_xfer *x, const struct mock_spec *spec, const struct mock_call *c)
{
    const char *content = spec->content;
    size_t clen = strlen(content);
    long tokens = spec->tokens >= 0 ? spec->tokens : count_words(content);
    long chunks = spec->chunks > 0 ? spec->chunks : 1;
    long created = (long)time(NULL);
    unsigned long long id = ++mock_serial;
    char *usage = x->usage;
    size_t usage_cap = sizeof x->usage;
    char *all;

    x->n = 1;
    x->status = 200;
    x->cut_k = -1;
    x->n_choices = 1;
    if (c->ep == EP_CHAT && c->n_inputs == 0) /* OpenAI's API refuses an empty list */
        return refuse(x, "messages", "empty_array",
                      "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                      "but got an empty array instead.");
    if (c->ep == EP_CHAT && c->bad_role) {
        char param[48];
        snprintf(param, sizeof param, "messages[%zu].role", c->bad_role_at);
        return refuse(x, param, "invalid_value",
                      "Invalid value: '%s'. Supported values are: 'system', 'assistant', "
                      "'user', 'function', 'tool', and 'developer'.",
                      c->bad_role_text);
    }
    if (c->ep != EP_EMBEDDINGS && c->limit_bad) {
        /* An output limit that is no integer from 1, in OpenAI's words. */
        if (c->limit_bad_type)
            return refuse(x, c->limit_bad, "invalid_type",
                          "Invalid type for '%s': expected an integer.", c->limit_bad);
        return refuse(x, c->limit_bad, "integer_below_min_value",
                      "Invalid '%s': integer below minimum value. Expected a value >= 1, but "
                      "got %s instead.",
                      c->limit_bad, c->limit_text);
    }
    if ((c->ep == EP_CHAT || c->ep == EP_COMPLETIONS) && c->stream_options_unstreamed)
        return refuse(x, "stream_options", NULL,
                      "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    if (c->ep != EP_EMBEDDINGS && c->sampling_bad) {
        /* temperature or top_p that is no number in its range, in
         * OpenAI's words. */
        int top_p = strcmp(c->sampling_bad, "top_p") == 0, above = c->sampling_above;
        if (c->sampling_bad_type)
            return refuse(x, c->sampling_bad, "invalid_type",
                          "Invalid type for '%s': expected a decimal.", c->sampling_bad);
        return refuse(x, c->sampling_bad,
                      above ? "decimal_above_max_value" : "decimal_below_min_value",
                      "Invalid '%s': decimal %s value. Expected a value %s %d, but got %s "
                      "instead.",
                      c->sampling_bad, above ? "above maximum" : "below minimum",
                      above ? "<=" : ">=", above ? (top_p ? 1 : 2) : 0, c->sampling_text);
    }
    if (c->ep != EP_EMBEDDINGS && c->max_tokens >= 0 && c->max_tokens < tokens) {
        /* Stopped at the limit: the text keeps its words in proportion
         * (all the limit's when the tokens are its word count). */
        long long words = count_words(content);
        clen = words_end(content, (long)(words * c->max_tokens / tokens));
        tokens = (long)c->max_tokens;
        x->cut_short = 1;
    }
    if (c->ep == EP_CHAT || c->ep == EP_COMPLETIONS) {
        if (count_choices(x, c) != 0)
            return -1;
        if (x->status != 200)
            return 0;
        tokens *= (long)x->n_choices; /* usage counts every choice's */
    }
    if (c->ep == EP_RESPONSES)
        snprintf(usage, usage_cap,
                 "{\"input_tokens\":%ld,\"output_tokens\":%ld,\"total_tokens\":%ld}",
                 c->prompt_tokens, tokens, c->prompt_tokens + tokens);
    else
        snprintf(usage, usage_cap,
                 "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}",
                 c->prompt_tokens, c->ep == EP_EMBEDDINGS ? 0 : tokens,
                 c->prompt_tokens + (c->ep == EP_EMBEDDINGS ? 0 : tokens));

    if (c->ep == EP_EMBEDDINGS) {
        /* Deterministic vectors, one per input: `dimensions` of them (8
         * when absent), as numbers or, for encoding_format "base64", as
         * OpenAI sends them: the little-endian float32s in base64. */
        size_t n = c->n_inputs, o = 0, dims = c->emb_dims ? (size_t)c->emb_dims : 8, bcap;
        unsigned char *bytes;
        char *b;
        if (n == 0) /* an empty list: OpenAI's API refuses it */
            return refuse(x, "input", "empty_array",
                          "Invalid 'input': empty array. Expected an array with minimum length "
                          "1, but got an empty array instead.");
        if (c->emb_base64 < 0)
            return refuse(x, "encoding_format", "invalid_value",
                          "Invalid value for 'encoding_format': expected 'float' or 'base64'.");
        if (c->emb_dims < 0 || c->emb_dims > MOCK_MAX_DIMS)
            return refuse(x, "dimensions", "invalid_value",
                          "Invalid value for 'dimensions': expected an integer from 1 to %d.",
                          MOCK_MAX_DIMS);
        bcap = 64 + n * (64 + dims * 12);
        b = malloc(bcap);
        bytes = malloc(dims * 4);
        if (!b || !bytes) {
            free(b);
            free(bytes);
            return -1;
        }
        o += (size_t)snprintf(b + o, bcap - o, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; i < n && o < bcap; i++) {
            o += (size_t)snprintf(b + o, bcap - o,
                                  "%s{\"object\":\"embedding\",\"index\":%zu,"
                                  "\"embedding\":%s",
                                  i ? "," : "", i, c->emb_base64 ? "\"" : "[");
            for (size_t d = 0; d < dims && o + 16 < bcap; d++) {
                float v = (float)((double)((i * 31 + d * 7) % 17) / 17.0 - 0.5);
                uint32_t u;
                if (!c->emb_base64) {
                    o += (size_t)snprintf(b + o, bcap - o, "%s%.4f", d ? "," : "", (double)v);
                    continue;
                }
                memcpy(&u, &v, 4);
                for (int k = 0; k < 4; k++)
                    bytes[d * 4 + (size_t)k] = (unsigned char)(u >> (8 * k));
            }
            if (c->emb_base64 && o + base64_len(dims * 4) < bcap)
                o += base64(b + o, bytes, dims * 4);
            if (o < bcap)
                o += (size_t)snprintf(b + o, bcap - o, "%s}", c->emb_base64 ? "\"" : "]");
        }
        all = o < bcap ? fmt("%s],\"model\":%s,\"usage\":%s,\"system_fingerprint\":"
                             "\"llmroute-mock\"}",
                             b, c->model_json, usage)
                       : NULL;
        free(b);
        free(bytes);
        x->piece = all;
        return all ? 0 : -1;
    }

    if (c->ep == EP_RESPONSES) {
        /* The Responses API's object, or its stream of events. */
        x->responses = 1;
        x->id = id;
        if (keep_content(x, content, clen, chunks) != 0)
            return -1;
        x->prefix = fmt("\"id\":\"resp-mock-%llu\",\"object\":\"response\",\"created_at\":%ld,"
                        "\"model\":%s,\"system_fingerprint\":\"llmroute-mock\"",
                        id, created, c->model_json);
        if (!x->prefix)
            return -1;
        if (!c->stream) {
            x->piece = response_object(x, 1);
            return x->piece ? 0 : -1;
        }
        x->n = 3 + (clen > 0 ? (size_t)x->chunks : 0) + 1;
        return 0;
    }

    if (!c->stream) {
        char *text = json_str(content, clen);
        char *choices = text ? plain_choices(x, c->ep == EP_CHAT, text) : NULL;
        free(text);
        if (!choices)
            return -1;
        all = fmt("{\"id\":\"%s-mock-%llu\",\"object\":\"%s\",\"created\":%ld,\"model\":%s,"
                  "\"system_fingerprint\":\"llmroute-mock\",\"choices\":[%s],\"usage\":%s}",
                  c->ep == EP_CHAT ? "chatcmpl" : "cmpl", id,
                  c->ep == EP_CHAT ? "chat.completion" : "text_completion", created, c->model_json,
                  choices, usage);
        free(choices);
        x->piece = all;
        return all ? 0 : -1;
    }

    /* A stream: role (chat), content pieces, finish, each once a choice,
     * optional usage, [DONE], each made when it is handed out
     * (piece_make()). */
    x->chat = c->ep == EP_CHAT;
    x->include_usage = c->include_usage;
    if (keep_content(x, content, clen, chunks) != 0)
        return -1;
    x->prefix = fmt("data: {\"id\":\"%s-mock-%llu\",\"object\":\"%s\",\"created\":%ld,"
                    "\"model\":%s,\"system_fingerprint\":\"llmroute-mock\",\"choices\":",
                    x->chat ? "chatcmpl" : "cmpl", id,
                    x->chat ? "chat.completion.chunk" : "text_completion", created,
                    c->model_json);
    if (!x->prefix)
        return -1;
    x->n = ((size_t)x->chat + (clen > 0 ? (size_t)x->chunks : 0) + 1) * x->n_choices +
           (size_t)(x->include_usage != 0) + 1;
    return 0;
}

struct mock_xfer *mock_start(struct event_base *base, const struct mock_spec *spec,
                             const struct mock_call *call, const struct up_callbacks *cb, void *arg)
{
    struct mock_xfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->cb = *cb;
    x->arg = arg;
    x->stream = call->stream && call->ep != EP_EMBEDDINGS;
    x->chunk_delay_ms = spec->chunk_delay_ms;
    x->timer = evtimer_new(base, tick, x);
    if (!x->timer || build(x, spec, call)) {
        mock_free(x);
        return NULL;
    }
    if (x->piece)
        x->piece_len = strlen(x->piece);
    /* Always answer from the loop, never inside the caller's stack. */
    schedule(x, spec->latency_ms);
    return x;
}

void mock_resume(struct mock_xfer *x)
{
    if (x && !evtimer_pending(x->timer, NULL))
        schedule(x, 0);
}

void mock_abort(struct mock_xfer *x)
{
    if (x && x->in_tick) {
        x->aborted = 1;
        return;
    }
    mock_free(x);
}
