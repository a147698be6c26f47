/* consumer.c -- a program outside the tree, built only against an installed
 * libllmroute (install.staged, tests/install/test_install.sh): through
 * pkg-config, shared and static, and through find_package(llmroute). It sees
 * nothing of the source tree but what was installed, so it compiles only if
 * llmroute.h is self-contained, links only if the link lines name what the
 * library needs, and exits 0 only if the library answers as it should.
 *
 *   consumer CONFIG_FILE VERSION
 *
 * loads CONFIG_FILE (three models a, b, c) and a config from a string,
 * routes with the sequential strategy, refuses an unknown model and a bad
 * config, fills a store in memory (SQLite) and compares LR_VERSION_STRING
 * with VERSION (llmroute.pc's). One thread. */
#include <llmroute.h>

#include <stdio.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "consumer: %s:%d: %s\n", __FILE__, __LINE__, #cond);                   \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static const char config_json[] =
    "{\"models\": ["
    "{\"name\": \"x\", \"backend\": \"mock\", \"cost_per_input_token\": 1e-6,"
    " \"cost_per_output_token\": 2e-6},"
    "{\"name\": \"y\", \"backend\": \"mock\", \"cost_per_input_token\": 1e-7,"
    " \"cost_per_output_token\": 2e-7}],"
    " \"router\": {\"strategy\": \"sequential\"}}";

/* The index of the model a sequential router picks among `names`. */
static int route(struct lr_router *router, const char *const *names, size_t n)
{
    struct lr_request req;
    struct lr_decision d;
    struct lr_error err;
    memset(&d, 0, sizeof d);
    lr_request_init(&req);
    req.models = names;
    req.n_models = n;
    req.query = "What is 2+2?";
    if (lr_router_route(router, &req, &d, &err) != 0)
        return -100;
    return d.index;
}

int main(int argc, char **argv)
{
    int result = 1;
    struct lr_config *file_cfg = NULL, *str_cfg = NULL, *bad_cfg = NULL;
    struct lr_router *router = NULL;
    struct lr_store *store = NULL;
    struct lr_error err;
    struct lr_request req;
    struct lr_decision d;
    const char *abc[] = {"a", "b", "c"}, *ca[] = {"c", "a"}, *unknown[] = {"a", "gpt-5"};
    const char bad_json[] = "{\"models\": [{\"name\": \"a\", \"cost_per_input_token\": -1}]}";

    if (argc != 3) {
        fprintf(stderr, "usage: consumer CONFIG_FILE VERSION\n");
        return 2;
    }
    CHECK(strcmp(LR_VERSION_STRING, argv[2]) == 0);
    CHECK(strcmp(lr_strerror(LR_ENOMODEL), lr_strerror(LR_OK)) != 0);

    /* A config from a file and one from a string. */
    CHECK(lr_config_load_file(argv[1], &file_cfg, &err) == 0);
    CHECK(lr_config_model_count(file_cfg) == 3);
    CHECK(lr_config_model_index(file_cfg, "c") == 2);
    CHECK(strcmp(lr_config_model(file_cfg, 1)->name, "b") == 0);
    CHECK(lr_config_load_string(config_json, strlen(config_json), &str_cfg, &err) == 0);
    CHECK(lr_config_model_count(str_cfg) == 2);
    CHECK(lr_config_model(str_cfg, 1)->cost_per_input_token == 1e-7);

    /* A bad config is refused, naming the field. */
    CHECK(lr_config_load_string(bad_json, strlen(bad_json), &bad_cfg, &err) == LR_ECONFIG);
    CHECK(bad_cfg == NULL);
    CHECK(strstr(err.message, "models[0].cost_per_input_token") != NULL);

    /* Sequential routing: round-robin over the request's candidates, in
     * their order, one cursor for the router. */
    CHECK(lr_router_new(file_cfg, NULL, &router, &err) == 0);
    CHECK(strcmp(lr_router_strategy(router), "sequential") == 0);
    CHECK(route(router, abc, 3) == 0);
    CHECK(route(router, abc, 3) == 1);
    CHECK(route(router, abc, 3) == 2);
    CHECK(route(router, abc, 3) == 0);
    CHECK(route(router, ca, 2) == 2); /* cursor 4 % 2 */
    CHECK(route(router, ca, 2) == 0);

    /* An unknown candidate is an error, never dropped. */
    memset(&d, 0, sizeof d);
    lr_request_init(&req);
    req.models = unknown;
    req.n_models = 2;
    CHECK(lr_router_route(router, &req, &d, &err) == LR_ENOMODEL);
    CHECK(strstr(err.message, "gpt-5") != NULL);

    /* A history store in memory: SQLite and the built-in embedder. */
    CHECK(lr_store_open(":memory:", NULL, &store, &err) == 0);
    CHECK(strcmp(lr_store_embedder(store), LR_EMBEDDER_BUILTIN) == 0);
    CHECK(lr_store_add_outcome(store, "What is 2+2?", 8, "a", 1.0, 12, &err) == 0);
    CHECK(lr_store_add_outcome(store, "Name a prime.", 6, "b", 0.0, 30, &err) == 0);
    CHECK(lr_store_count(store) == 2);
    CHECK(lr_store_add_outcome(store, "Too sure.", 6, "b", 1.5, 30, &err) == LR_EINVAL);
    CHECK(lr_store_count(store) == 2);

    printf("consumer: ok\n");
    result = 0;
out:
    lr_store_free(store);
    lr_router_free(router);
    lr_config_free(bad_cfg);
    lr_config_free(str_cfg);
    lr_config_free(file_cfg);
    return result;
}
