/* mock.h -- the `mock` backend: an in-process, deterministic responder with
 * configurable latency, token count and streaming, for demos and load tests.
 * It answers through the same callbacks as a real upstream transfer
 * (upstream.h), so the proxy relays it exactly like one; every answer says
 * `"system_fingerprint": "llmroute-mock"` so nobody mistakes it for a model.
 *
 * Threads: the event loop thread only.
 */
#ifndef GW_MOCK_H
#define GW_MOCK_H

#include <stddef.h>

#include "gateway.h"
#include "upstream.h"

struct mock_call {
    enum gw_endpoint ep;
    int stream;
    int include_usage;
    const char *model_json; /* the model name as a JSON string */
    long prompt_tokens;
    /* Embeddings: how many vectors; chat: how many messages (0 for either:
     * an empty list, refused as OpenAI's API refuses it). */
    size_t n_inputs;
    /* Chat: a message's role is none of OpenAI's (bad_role), the first such
     * at bad_role_at, its role as sent (refused, as OpenAI's API refuses it). */
    int bad_role;
    size_t bad_role_at;
    const char *bad_role_text;
    /* Embeddings: encoding_format "base64" (1), "float" or absent (0),
     * another value (-1, refused); dimensions (0: absent, 8 then; -1: no
     * integer or below 1; refused, as is one above MOCK_MAX_DIMS). */
    int emb_base64;
    long long emb_dims;
    /* Chat and completions: the request's `n` (1 when absent), n_bad when
     * it is not an integer, and the completions prompts (at least 1): the
     * answer has n choices a prompt. */
    long long n;
    int n_bad;
    const char *n_text; /* n as sent, shown when refused ("": n's digits) */
    size_t n_prompts;
    /* Chat, completions, responses: the request's output limit for each
     * choice (max_tokens, max_completion_tokens, max_output_tokens), or -1;
     * limit_bad names the first of them given as no integer from 1 (NULL:
     * none), refused 400: limit_bad_type when it is no integer at all,
     * else limit_text is its number as sent. */
    long long max_tokens;
    const char *limit_bad;
    int limit_bad_type;
    const char *limit_text;
    /* Chat and completions: stream_options given on a request that does
     * not stream (refused, as OpenAI's API refuses it). Chat, completions,
     * responses: sampling_bad names the first of temperature (0 to 2) and
     * top_p (0 to 1) given as no number (sampling_bad_type) or outside its
     * range (above it: sampling_above; sampling_text: its number as sent);
     * NULL: none. */
    int stream_options_unstreamed;
    const char *sampling_bad;
    int sampling_bad_type, sampling_above;
    const char *sampling_text;
};

struct mock_xfer;

/* Start answering; NULL when out of memory (no callback runs). */
struct mock_xfer *mock_start(struct event_base *base, const struct mock_spec *spec,
                             const struct mock_call *call, const struct up_callbacks *cb,
                             void *arg);
void mock_resume(struct mock_xfer *x);
/* Stop; no callback runs after it. */
void mock_abort(struct mock_xfer *x);

#endif
