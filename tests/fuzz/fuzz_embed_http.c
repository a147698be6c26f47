/* fuzz_embed_http.c -- the CLI's reading of an embedding server's answer
 * (embed_http.c: parse_answer, and server_message for a non-200 answer) on
 * arbitrary bytes. The first byte picks the batch: bits 0-1 the number of
 * texts (1 to 4), bits 2-3 the dimension expected (0: a probe, else 1 to 3).
 * The rest is the answer. The answer is also sent back as texts to embed:
 * request_body() on it, whole and from its middle, cut to
 * router.embedding.max_input_chars (bits 4-7, 0: whole).
 *
 * The file's static functions are reached by including it.
 *
 * Threads: one.
 */
#include "../../src/cli/embed_http.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct embed_http c;
    struct answer a;
    struct lr_error err = {0};
    float out[4 * 3];
    size_t n, dim, got_dim = 0;
    char msg[256];

    if (size < 1)
        return 0;
    n = (size_t)(data[0] & 3) + 1;
    dim = (size_t)((data[0] >> 2) & 3);
    memset(&c, 0, sizeof c);
    snprintf(c.url, sizeof c.url, "http://127.0.0.1:1/v1/embeddings");
    memset(&a, 0, sizeof a);
    /* The answer as the write callback leaves it: its bytes, NUL-terminated. */
    a.n = size - 1;
    a.p = malloc(a.n + 1);
    if (!a.p)
        return 0;
    memcpy(a.p, data + 1, a.n);
    a.p[a.n] = '\0';
    (void)parse_answer(&c, &a, n, out, dim, &got_dim, &err);
    server_message(&a, msg, sizeof msg);
    {
        struct lr_embedding_info info;
        const char *texts[2];
        memset(&info, 0, sizeof info);
        info.model = "m";
        info.max_input_chars = data[0] >> 4;
        c.info = &info;
        texts[0] = a.p;
        texts[1] = a.p + a.n / 2;
        free(request_body(&c, texts, 2));
        c.info = NULL;
    }
    free(a.p);
    return 0;
}
