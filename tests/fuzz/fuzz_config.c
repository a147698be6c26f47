/* fuzz_config.c -- the configuration loader (lr_config_load_string) on
 * arbitrary bytes, then everything a loaded configuration answers: its
 * models, routes, router defaults, embedding, sections and warnings, and a
 * sequential router made from it routing one query. The input's own bytes
 * are cut as a text sent to the embedder is (lr_embedding_input_len), by the
 * loaded router.embedding.max_input_chars and by a few fixed limits, with
 * the cut checked (fuzz_cut.h).
 *
 * Threads: one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_cut.h"
#include "fuzz_route.h"
#include "llmroute.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    struct lr_router *router = NULL;
    struct lr_router_options ro;
    size_t n;

    {
        static const int limits[] = {0, 1, 2, 3, 7};
        struct lr_embedding_info info;
        memset(&info, 0, sizeof info);
        for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
            info.max_input_chars = limits[i];
            fuzz_cut_check(&info, (const char *)data, size);
        }
    }
    if (lr_config_load_string((const char *)data, size, &cfg, &err) != 0)
        return 0;
    n = lr_config_model_count(cfg);
    for (size_t i = 0; i <= n; i++) {
        const struct lr_model_info *m = lr_config_model(cfg, i);
        if (m && m->name)
            (void)lr_config_model_index(cfg, m->name);
    }
    n = lr_config_route_count(cfg);
    for (size_t i = 0; i <= n; i++) {
        const struct lr_route_info *r = lr_config_route(cfg, i);
        if (r && r->name)
            (void)lr_config_route_index(cfg, r->name);
    }
    (void)lr_config_router_defaults(cfg);
    fuzz_cut_check(lr_config_embedding(cfg), (const char *)data, size);
    (void)lr_config_section(cfg, "server");
    (void)lr_config_section(cfg, "router");
    for (size_t i = 0; i < lr_config_warning_count(cfg); i++)
        (void)lr_config_warning(cfg, i);

    lr_router_options_init(&ro);
    ro.strategy = "sequential";
    if (lr_router_new(cfg, &ro, &router, &err) == 0) {
        fuzz_route_once(router, NULL, 0, 8);
        lr_router_free(router);
    }
    lr_config_free(cfg);
    return 0;
}
