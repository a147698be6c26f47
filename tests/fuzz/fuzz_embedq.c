/* fuzz_embedq.c -- the gateway's reading of its remote embedder's answer
 * (embedq.c: embed_parse, the vector of one query) on arbitrary bytes.
 * A vector it accepts must be routable: every number finite, as the CLI's
 * reader of the same answers demands (embed_http.c). Anything else aborts.
 *
 * The file's static functions are reached by including it.
 *
 * Threads: one.
 */
#include "../../src/gateway/embedq.c"

#include <math.h>

#include "fuzz_cut.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char url[] = "http://127.0.0.1:1/v1/embeddings";
    struct gw_conf conf;
    struct gw_embed e;

    if (size > 0) {
        struct lr_embedding_info info;
        json_t *in;
        memset(&info, 0, sizeof info);
        info.max_input_chars = (data[0] & 15) + 1;
        fuzz_cut_check(&info, (const char *)data, size);
        /* As gw_embed_start() packs it (NULL for bytes that are not UTF-8). */
        in = json_pack("[s%]", (const char *)data,
                       lr_embedding_input_len(&info, (const char *)data, size));
        json_decref(in);
    }
    memset(&conf, 0, sizeof conf);
    conf.embed_url = url;
    memset(&e, 0, sizeof e);
    e.conf = &conf;
    e.len = size;
    e.resp = malloc(size + 1);
    if (!e.resp)
        return 0;
    memcpy(e.resp, data, size);
    e.resp[size] = '\0';
    if (embed_parse(&e) == 0) {
        if (!e.vec || e.dim == 0)
            abort();
        for (size_t i = 0; i < e.dim; i++)
            if (!isfinite(e.vec[i])) {
                fprintf(stderr, "fuzz_embedq: element %zu of the vector is not finite\n", i);
                abort();
            }
    }
    free(e.vec);
    free(e.resp);
    return 0;
}
