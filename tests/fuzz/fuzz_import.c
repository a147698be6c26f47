/* fuzz_import.c -- a history store's import (lr_store_import_file: a JSON
 * array or JSONL of records) on arbitrary bytes, into a store in memory,
 * then a smart router over what was imported routing one query. The first
 * byte picks the store: even, the built-in embedder's; odd, a dense store
 * whose vectors come from a small deterministic embedder here. Bit 1 makes
 * the import strict.
 *
 * Threads: one (the store is opened with one thread).
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_file.h"
#include "fuzz_route.h"
#include "llmroute.h"

#define DIM 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char config_json[] =
    "{\"models\": ["
    "{\"name\": \"gpt-4o\", \"backend\": \"mock\", \"cost_per_input_token\": 2.5e-6,"
    " \"cost_per_output_token\": 1e-5},"
    "{\"name\": \"gpt-4o-mini\", \"backend\": \"mock\", \"cost_per_input_token\": 1.5e-7,"
    " \"cost_per_output_token\": 6e-7},"
    "{\"name\": \"a\", \"backend\": \"mock\", \"cost_per_input_token\": 0,"
    " \"cost_per_output_token\": 0}],"
    " \"router\": {\"strategy\": \"smart\", \"n_similar\": 4}}";

/* A vector from the text's bytes: any text gets the same one every time. */
static void embed_one(const char *text, float *out)
{
    uint32_t h = 2166136261u;
    for (size_t k = 0; k < DIM; k++)
        out[k] = 0.0f;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h = (h ^ *p) * 16777619u;
        out[h % DIM] += 1.0f;
    }
    out[0] += 0.5f; /* never all zeros */
}

static int embed(void *arg, const char *const *texts, size_t n, float *out, size_t dim,
                 struct lr_error *err)
{
    (void)arg;
    (void)err;
    if (dim != DIM)
        return LR_EINVAL;
    for (size_t i = 0; i < n; i++)
        embed_one(texts[i], out + i * DIM);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct lr_config *cfg;
    char path[64];
    struct lr_store *store = NULL;
    struct lr_store_options so = {0};
    struct lr_import_options io = {0};
    struct lr_import_report rep;
    struct lr_error err = {0};
    struct lr_router *router = NULL;
    struct lr_router_options ro;
    int dense, fd;

    if (size < 1)
        return 0;
    if (!cfg && lr_config_load_string(config_json, strlen(config_json), &cfg, &err) != 0)
        return 0;
    dense = data[0] & 1;
    io.strict = (data[0] >> 1) & 1;
    fd = fuzz_file(data + 1, size - 1, path, sizeof path);
    if (fd < 0)
        return 0;
    so.threads = 1;
    if (dense) {
        so.embedder = "fuzz-embed";
        so.dense_dim = DIM;
        io.embed = embed;
        io.embed_dim = DIM;
    }
    if (lr_store_open(":memory:", &so, &store, &err) != 0)
        goto out;
    if (lr_store_import_file(store, path, &io, &rep, &err) != 0 || lr_store_count(store) == 0)
        goto out;
    lr_router_options_init(&ro);
    ro.store = store;
    if (lr_router_new(cfg, &ro, &router, &err) == 0) {
        float vec[DIM];
        if (dense)
            embed_one(FUZZ_QUERY, vec);
        fuzz_route_once(router, dense ? vec : NULL, DIM, 4);
        lr_router_free(router);
    }
out:
    lr_store_free(store);
    close(fd);
    return 0;
}
