/* embed_http.h -- the CLI's client for a remote embedder: OpenAI's
 * POST {base_url}/embeddings, as served by Ollama, llama.cpp server, vLLM,
 * TEI and OpenAI, configured in the config's router.embedding.
 *
 * libllmroute does no I/O: the commands fetch vectors here and hand them to
 * the library (lr_request.embedding, lr_import_options.embed). Synchronous
 * (libcurl's easy interface), one connection reused across requests. A
 * client is one thread's at a time.
 */
#ifndef LR_CLI_EMBED_HTTP_H
#define LR_CLI_EMBED_HTTP_H

#include <signal.h>
#include <stddef.h>

#include "llmroute.h"

struct embed_http;

/* A client for info (borrowed: the config must outlive it). The key is read
 * from info->api_key_env now; a variable that is not set is a warning on
 * standard error. Free with embed_http_free(). */
int embed_http_new(const struct lr_embedding_info *info, struct embed_http **out,
                   struct lr_error *err);
void embed_http_free(struct embed_http *c);

/* Stop a request in flight within about a second once *flag is non-zero
 * (the command's stop signal; NULL: never): it fails with LR_ECANCELED
 * instead of waiting up to router.embedding.timeout_ms for the server. */
void embed_http_set_cancel(struct embed_http *c, const volatile sig_atomic_t *flag);

/* The URL requests go to ({base_url}/embeddings). */
const char *embed_http_url(const struct embed_http *c);

/* Embed texts[0..n) into out (n rows of dim floats, dim > 0), in requests of
 * at most batch_size texts. Every answer is checked: the count, each index,
 * each vector's dimension. Returns 0 or a negative LR_E* with err naming the
 * URL and what went wrong. */
int embed_http_embed(struct embed_http *c, const char *const *texts, size_t n, float *out,
                     size_t dim, struct lr_error *err);

/* The dimension of the server's vectors: router.embedding.dimensions when
 * set, else asked once of the server (one short text) and remembered. */
int embed_http_dim(struct embed_http *c, size_t *dim, struct lr_error *err);

/* embed_http_embed as an lr_embed_fn; arg is the struct embed_http *. */
int embed_http_callback(void *arg, const char *const *texts, size_t n, float *out, size_t dim,
                        struct lr_error *err);

/* Store options for cfg: the remote embedder's id and configured dimension
 * when router.embedding is set, else the built-in embedder. */
void embed_store_options(const struct lr_config *cfg, struct lr_store_options *so);

/* 1 when store is dense (its vectors come from a remote embedder). */
int embed_store_is_dense(const struct lr_store *store);

#endif
