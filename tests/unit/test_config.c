/* test_config.c -- the configuration loader: valid configs load with the
 * values and defaults a user expects; each invalid one is refused with a
 * message that names the field. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmroute.h"
#include "strategy.h"

static const char good[] =
    "{\"models\": ["
    " {\"name\": \"gpt-4o-mini\", \"backend\": \"openai\", \"base_url\": "
    "\"https://api.openai.com/v1\", \"api_key_env\": \"OPENAI_API_KEY\", "
    "\"cost_per_input_token\": 1.5e-7, \"cost_per_output_token\": 6e-7, \"max_concurrency\": 64},"
    " {\"name\": \"qwen2.5:7b\", \"backend\": \"ollama\", \"base_url\": "
    "\"http://localhost:11434/v1\", \"cost_per_input_token\": 0, \"cost_per_output_token\": 0,"
    " \"hosted_model\": \"qwen2.5:7b-instruct\", \"capacity\": 100},"
    " {\"name\": \"local\", \"backend\": \"mock\"}],"
    " \"router\": {\"strategy\": \"sequential\", \"performance_requirement\": 0.8, "
    "\"n_similar\": 8, \"store\": \"hist.db\"},"
    " \"routes\": [{\"name\": \"auto\", \"models\": [\"qwen2.5:7b\", \"gpt-4o-mini\"], "
    "\"performance_requirement\": 0.9, \"fallbacks\": [\"local\"]}],"
    " \"server\": {\"listen\": \"127.0.0.1:8080\"}}";

static struct lr_config *load_ok(const char *json)
{
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    int rc = lr_config_load_string(json, strlen(json), &cfg, &err);
    if (rc)
        fail_msg("expected the config to load, got %d: %s", rc, err.message);
    return cfg;
}

/* Loads json, expects failure with `code`, and a message containing `want`. */
static void expect_error(const char *json, int code, const char *want)
{
    struct lr_config *cfg = (struct lr_config *)1;
    struct lr_error err = {0};
    int rc = lr_config_load_string(json, strlen(json), &cfg, &err);
    assert_int_equal(rc, code);
    assert_null(cfg);
    if (!strstr(err.message, want))
        fail_msg("message '%s' does not contain '%s'", err.message, want);
}

static void loads_models_with_their_fields(void **state)
{
    struct lr_config *cfg = load_ok(good);
    const struct lr_model_info *m0, *m1;
    (void)state;
    assert_int_equal(lr_config_model_count(cfg), 3);
    m0 = lr_config_model(cfg, 0);
    m1 = lr_config_model(cfg, 1);
    assert_string_equal(m0->name, "gpt-4o-mini");
    assert_string_equal(m0->backend, "openai");
    assert_string_equal(m0->base_url, "https://api.openai.com/v1");
    assert_string_equal(m0->api_key_env, "OPENAI_API_KEY");
    assert_string_equal(m0->upstream_model, "gpt-4o-mini");
    assert_true(m0->cost_per_input_token == 1.5e-7);
    assert_true(m0->cost_per_output_token == 6e-7);
    assert_int_equal(m0->max_concurrency, 64);
    assert_int_equal(m0->capacity, 0);
    assert_string_equal(m1->upstream_model, "qwen2.5:7b-instruct");
    assert_int_equal(m1->capacity, 100);
    assert_true(m1->cost_per_input_token == 0);
    assert_non_null(strstr(m1->json, "\"hosted_model\""));
    assert_null(lr_config_model(cfg, 3));
    assert_int_equal(lr_config_model_index(cfg, "qwen2.5:7b"), 1);
    assert_int_equal(lr_config_model_index(cfg, "nope"), LR_ENOMODEL);
    assert_int_equal(lr_config_warning_count(cfg), 0);
    lr_config_free(cfg);
}

static void loads_router_defaults_and_routes(void **state)
{
    struct lr_config *cfg = load_ok(good);
    const struct lr_router_defaults *d = lr_config_router_defaults(cfg);
    const struct lr_route_info *r;
    (void)state;
    assert_string_equal(d->strategy, "sequential");
    assert_true(d->performance_requirement == 0.8);
    assert_int_equal(d->n_similar, 8);
    assert_string_equal(d->predictor, "default");
    assert_true(d->alpha == 0.8); /* defaults to the requirement */
    assert_string_equal(d->store_path, "hist.db");
    assert_string_equal(d->query_text, "last_user");
    assert_int_equal(lr_config_route_count(cfg), 1);
    r = lr_config_route(cfg, 0);
    assert_string_equal(r->name, "auto");
    assert_null(r->strategy);
    assert_int_equal(r->n_models, 2);
    assert_int_equal(r->models[0], 1);
    assert_int_equal(r->models[1], 0);
    assert_true(r->performance_requirement == 0.9);
    assert_int_equal(r->n_fallbacks, 1);
    assert_int_equal(r->fallbacks[0], 2);
    assert_int_equal(lr_config_route_index(cfg, "auto"), 0);
    assert_int_equal(lr_config_route_index(cfg, "gpt-4o-mini"), LR_ENOMODEL);
    assert_string_equal(lr_config_section(cfg, "server"), "{\"listen\":\"127.0.0.1:8080\"}");
    assert_null(lr_config_section(cfg, "absent"));
    lr_config_free(cfg);
}

static void applies_defaults_when_router_is_absent(void **state)
{
    struct lr_config *cfg = load_ok("{\"models\": [{\"name\": \"a\"}]}");
    const struct lr_router_defaults *d = lr_config_router_defaults(cfg);
    const struct lr_model_info *m = lr_config_model(cfg, 0);
    (void)state;
    assert_string_equal(d->strategy, "sequential");
    assert_true(d->performance_requirement == 0.7);
    assert_int_equal(d->n_similar, 16);
    assert_null(d->store_path);
    assert_string_equal(m->backend, "openai");
    assert_true(isnan(m->cost_per_input_token)); /* no price configured */
    assert_null(m->base_url);
    lr_config_free(cfg);
}

static void warns_about_unknown_keys_and_backends(void **state)
{
    struct lr_config *cfg = load_ok("{\"models\": [{\"name\": \"a\", \"colour\": 1, "
                                    "\"backend\": \"carrier-pigeon\"}],"
                                    " \"router\": {\"strateg\": \"x\"}, \"extra\": true,"
                                    " \"gateway\": {\"listen\": \"127.0.0.1:1\"}}");
    int seen_colour = 0, seen_backend = 0, seen_router = 0, seen_top = 0, seen_gateway = 0;
    (void)state;
    for (size_t i = 0; i < lr_config_warning_count(cfg); i++) {
        const char *w = lr_config_warning(cfg, i);
        seen_colour |= strstr(w, "models[0].colour: unknown key") != NULL;
        seen_backend |= strstr(w, "models[0].backend: 'carrier-pigeon' is not a known backend "
                                  "(openai, vllm, sglang, ollama, llamacpp, groq, together, "
                                  "deepseek, mock, openai-compatible); the gateway forwards to "
                                  "it as an OpenAI-compatible upstream at its base_url") != NULL;
        seen_router |= strstr(w, "router.strateg: unknown key") != NULL;
        seen_top |= strstr(w, "extra: unknown key") != NULL;
        /* Server settings under "gateway" instead of "server" are read by
         * nothing: the user is told. */
        seen_gateway |= strstr(w, "gateway: unknown key, ignored") != NULL;
    }
    assert_true(seen_colour && seen_backend && seen_router && seen_top && seen_gateway);
    lr_config_free(cfg);
}

/* A config written as c.json in a new folder, named with `sep` between
 * folder and name, with "store": "h.db", has its store at folder/h.db. */
static void store_is_put_in_the_folder(const char *sep)
{
    char dir[] = "/tmp/lr_cfg_XXXXXX", path[128], want[128];
    const char *json = "{\"models\": [{\"name\": \"a\"}], \"router\": {\"store\": \"h.db\"}}";
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    FILE *f;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s%sc.json", dir, sep);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    assert_int_equal(lr_config_load_file(path, &cfg, &err), 0);
    snprintf(want, sizeof want, "%s/h.db", dir);
    assert_string_equal(lr_config_router_defaults(cfg)->store_path, want);
    lr_config_free(cfg);
    unlink(path);
    rmdir(dir);
}

static void resolves_store_path_against_the_config_folder(void **state)
{
    (void)state;
    store_is_put_in_the_folder("/");
}

/* A store named by blank space alone was taken and made as a file of that
 * name beside the config; an empty name is refused as any empty string. */
static void a_blank_store_name_is_refused(void **state)
{
    (void)state;
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"store\": \"  \"}}", LR_ECONFIG,
                 "router.store: the name is blank (only spaces, tabs or line breaks): "
                 "expected a file name");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"store\": \"\\t\\n \"}}",
                 LR_ECONFIG, "router.store: the name is blank");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"store\": \" \\r\\n\"}}",
                 LR_ECONFIG, "router.store: the name is blank");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"store\": \"\"}}", LR_ECONFIG,
                 "router.store: expected a non-empty string");
}

static void rejects_malformed_json_with_line_and_column(void **state)
{
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    const char *json = "{\"models\": [\n  {\"name\": \"a\",}\n]}";
    (void)state;
    assert_int_equal(lr_config_load_string(json, strlen(json), &cfg, &err), LR_EPARSE);
    assert_null(cfg);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.message, "line 2"));
}

static void rejects_a_missing_file_naming_it(void **state)
{
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    (void)state;
    assert_int_equal(lr_config_load_file("/nonexistent/x.json", &cfg, &err), LR_EIO);
    assert_non_null(strstr(err.message, "/nonexistent/x.json"));
}

/* A directory opens like a file and fails only when read: the message says
 * it is a directory, not "read error". */
static void rejects_a_directory_saying_so(void **state)
{
    char path[] = "/tmp/lr_cfg_dir_XXXXXX";
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    (void)state;
    assert_non_null(mkdtemp(path));
    assert_int_equal(lr_config_load_file(path, &cfg, &err), LR_EIO);
    assert_null(cfg);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "is a directory"));
    assert_null(strstr(err.message, "read error"));
    rmdir(path);
}

static void rejects_a_truncated_file(void **state)
{
    char path[] = "/tmp/lr_cfg_trunc_XXXXXX";
    int fd = mkstemp(path);
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    const char *json = "{\"models\": [{\"name\": \"a\", \"cost_per_in";
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (int)strlen(json));
    close(fd);
    assert_int_equal(lr_config_load_file(path, &cfg, &err), LR_EPARSE);
    assert_non_null(strstr(err.message, path));
    unlink(path);
}

static void rejects_each_invalid_field_naming_it(void **state)
{
    (void)state;
    expect_error("[]", LR_ECONFIG, "must be a JSON object");
    expect_error("{}", LR_ECONFIG, "models: missing");
    expect_error("{\"models\": {}}", LR_ECONFIG, "models: expected an array");
    expect_error("{\"models\": []}", LR_ECONFIG, "models: expected at least one model");
    expect_error("{\"models\": [3]}", LR_ECONFIG, "models[0]: expected an object");
    expect_error("{\"models\": [{}]}", LR_ECONFIG, "models[0].name: missing");
    expect_error("{\"models\": [{\"name\": \"\"}]}", LR_ECONFIG, "models[0].name: expected a non-empty");
    expect_error("{\"models\": [{\"name\": 5}]}", LR_ECONFIG, "models[0].name: expected a string");
    expect_error("{\"models\": [{\"name\": \"a\"}, {\"name\": \"b\", \"cost_per_input_token\": -1}]}",
                 LR_ECONFIG, "models[1].cost_per_input_token: expected a non-negative number");
    expect_error("{\"models\": [{\"name\": \"a\", \"cost_per_output_token\": \"free\"}]}",
                 LR_ECONFIG, "models[0].cost_per_output_token: expected a non-negative number, got a string");
    /* A price over the cap names the cap, not a sign it does not have. */
    expect_error("{\"models\": [{\"name\": \"a\", \"cost_per_input_token\": 2e6}]}", LR_ECONFIG,
                 "models[0].cost_per_input_token: expected a non-negative number, got 2e+06, "
                 "over the cap of 1e+06");
    /* Just over the cap: enough digits to tell the price from the cap. */
    expect_error("{\"models\": [{\"name\": \"a\", \"cost_per_output_token\": 1000000.0000001}]}",
                 LR_ECONFIG,
                 "models[0].cost_per_output_token: expected a non-negative number, got "
                 "1000000.0000001, over the cap of 1e+06");
    expect_error("{\"models\": [{\"name\": \"a\", \"cost_per_input_token\": -1e-300}]}",
                 LR_ECONFIG,
                 "models[0].cost_per_input_token: expected a non-negative number, got -1e-300");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"alpha\": 1.0000000000000002}}",
                 LR_ECONFIG,
                 "router.alpha: expected a number from 0 to 1, got 1.0000000000000002, over the "
                 "cap of 1");
    expect_error("{\"models\": [{\"name\": \"a\"}, {\"name\": \"a\"}]}", LR_ECONFIG,
                 "models[1].name: 'a' is already the name of models[0]");
    expect_error("{\"models\": [{\"name\": \"a\", \"max_concurrency\": 1.5}]}", LR_ECONFIG,
                 "models[0].max_concurrency: expected an integer");
    expect_error("{\"models\": [{\"name\": \"a\", \"capacity\": -2}]}", LR_ECONFIG,
                 "models[0].capacity: expected an integer");
    expect_error("{\"models\": [{\"name\": \"a\", \"api_key\": \"sk-123\"}]}", LR_ECONFIG,
                 "models[0].api_key: keys are not read from the config file");
    expect_error("{\"models\": [{\"name\": \"a\", \"api_key\": null}]}", LR_ECONFIG,
                 "models[0].api_key: keys are not read from the config file");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"strategy\": \"psychic\"}}",
                 LR_ECONFIG, "router.strategy: unknown strategy 'psychic'");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"performance_requirement\": 1.5}}",
                 LR_ECONFIG, "router.performance_requirement: expected a number from 0 to 1");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"n_similar\": 0}}", LR_ECONFIG,
                 "router.n_similar: expected an integer from 1 to 1024");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"predictor\": \"tea-leaves\"}}",
                 LR_ECONFIG, "router.predictor: unknown predictor 'tea-leaves'");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": []}", LR_ECONFIG,
                 "router: expected an object");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\", \"models\": [\"b\"]}]}",
                 LR_ECONFIG, "routes[0].models[0]: 'b' is not a configured model");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"a\"}]}", LR_ECONFIG,
                 "routes[0].name: 'a' is already the name of a model");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\", \"models\": []}]}",
                 LR_ECONFIG, "routes[0].models: expected at least one model name");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\", \"models\": [\"a\", \"a\"]}]}",
                 LR_ECONFIG, "routes[0].models[1]: 'a' is listed twice");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\"}, {\"name\": \"r\"}]}",
                 LR_ECONFIG, "routes[1].name: 'r' is already the name of routes[0]");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"server\": 1}", LR_ECONFIG,
                 "server: expected an object");
    /* A top-level section given as null is refused. */
    expect_error("{\"models\": [{\"name\": \"a\"}], \"server\": null}", LR_ECONFIG,
                 "server: expected an object, got null");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": null}", LR_ECONFIG,
                 "router: expected an object, got null");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"models\": [{\"name\": \"b\"}]}", LR_EPARSE,
                 "duplicate object key");
    /* JSON has no NaN, and jansson refuses numbers that overflow a double. */
    expect_error("{\"models\": [{\"name\": \"a\", \"cost_per_input_token\": NaN}]}", LR_EPARSE,
                 "line 1");
    expect_error("{\"models\": [{\"name\": \"a\", \"cost_per_input_token\": 1e999}]}", LR_EPARSE,
                 "overflow");
}

/* A name reaches the gateway's response headers (x-llmroute-model,
 * x-llmroute-route) and a base_url its request line and Host header, so a
 * control character in either would let the file write headers of its own. */
static void rejects_control_characters_in_names_and_urls(void **state)
{
    (void)state;
    expect_error("{\"models\": [{\"name\": \"m\\r\\nSet-Cookie: injected=1\"}]}",
                 LR_ECONFIG, "models[0].name: must not contain control characters");
    expect_error("{\"models\": [{\"name\": \"a\"}, {\"name\": \"b\\u007f\"}]}",
                 LR_ECONFIG, "models[1].name: must not contain control characters");
    expect_error("{\"models\": [{\"name\": \"tab\\there\"}]}", LR_ECONFIG,
                 "models[0].name: must not contain control characters");
    expect_error("{\"models\": [{\"name\": \"unit\\u001fsep\"}]}", LR_ECONFIG,
                 "models[0].name: must not contain control characters");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\\nX: 1\"}]}",
                 LR_ECONFIG, "routes[0].name: must not contain control characters");
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": "
                 "\"http://h/v1\\r\\nX-Evil: 1\"}]}",
                 LR_ECONFIG, "models[0].base_url: must not contain control characters");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"embedding\": "
                 "{\"base_url\": \"http://h/\\n\", \"model\": \"e\"}}}",
                 LR_ECONFIG, "router.embedding.base_url: must not contain control characters");
    /* The embedding model names the store's embedder id ("openai:MODEL"),
     * which a store refuses with a control character in it. */
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"embedding\": "
                 "{\"base_url\": \"http://h/v1\", \"model\": \"nomic\\u0007embed\"}}}",
                 LR_ECONFIG, "router.embedding.model: must not contain control characters");
    /* Bytes from 0x80 up are UTF-8 text, not controls. */
    lr_config_free(load_ok("{\"models\": [{\"name\": \"mod\u00e8le\"}]}"));
}

/* The gateway reads retry.max_attempts and retry.deadline_ms from the
 * server and the route only: in a model's retry they are said to be ignored. */
static void warns_about_per_request_retry_limits_in_a_model(void **state)
{
    struct lr_config *cfg = load_ok(
        "{\"models\": [{\"name\": \"a\", \"retry\": {\"max_attempts\": 3, "
        "\"deadline_ms\": 100, \"max_retries\": 1}}],"
        " \"routes\": [{\"name\": \"r\", \"retry\": {\"max_attempts\": 2}}]}");
    int seen_attempts = 0, seen_deadline = 0, other = 0;
    (void)state;
    for (size_t i = 0; i < lr_config_warning_count(cfg); i++) {
        const char *w = lr_config_warning(cfg, i);
        if (strstr(w, "models[0].retry.max_attempts: ignored in a model"))
            seen_attempts = 1;
        else if (strstr(w, "models[0].retry.deadline_ms: ignored in a model"))
            seen_deadline = 1;
        else
            other = 1;
    }
    assert_true(seen_attempts && seen_deadline);
    assert_false(other);
    lr_config_free(cfg);
}

#define HDR_CFG(h) "{\"models\": [{\"name\": \"a\"}, {\"name\": \"b\", \"headers\": " h "}]}"

static void loads_literal_and_env_headers(void **state)
{
    struct lr_config *cfg;
    (void)state;
    cfg = load_ok(HDR_CFG("{\"HTTP-Referer\": \"https://example.org\", \"X-Title\": \"my app\","
                          " \"api-key\": {\"env\": \"AZURE_KEY\"}, \"X-Empty\": \"\","
                          " \"X-Tab\": \"a\\tb\", \"Accept\": \"application/json\"}"));
    lr_config_free(cfg);
    /* A name may hold every token character. */
    cfg = load_ok(HDR_CFG("{\"X-Zz_09!#$%&'*+.^`|~\": \"v\"}"));
    lr_config_free(cfg);
    cfg = load_ok(HDR_CFG("{}"));
    lr_config_free(cfg);
    cfg = load_ok(HDR_CFG("null"));
    lr_config_free(cfg);
}

static void refuses_each_bad_header_naming_it(void **state)
{
    char big[12000];
    size_t off;
    (void)state;
    expect_error(HDR_CFG("[]"), LR_ECONFIG,
                 "models[1].headers: expected an object of header names and values, got an array");
    expect_error(HDR_CFG("{\"X-Title\": 5}"), LR_ECONFIG,
                 "models[1].headers.X-Title: expected a string or {\"env\": NAME}");
    expect_error(HDR_CFG("{\"X-Title\": null}"), LR_ECONFIG,
                 "models[1].headers.X-Title: expected a string or {\"env\": NAME}");
    expect_error(HDR_CFG("{\"X-Title\": {\"env\": \"\"}}"), LR_ECONFIG,
                 "models[1].headers.X-Title: expected a string or {\"env\": NAME}");
    expect_error(HDR_CFG("{\"X-Title\": {\"env\": 3}}"), LR_ECONFIG,
                 "models[1].headers.X-Title: expected a string or {\"env\": NAME}");
    expect_error(HDR_CFG("{\"X-Title\": {\"env\": \"V\", \"default\": \"x\"}}"), LR_ECONFIG,
                 "models[1].headers.X-Title: expected a string or {\"env\": NAME}");
    expect_error(HDR_CFG("{\"X-Title\": {\"var\": \"V\"}}"), LR_ECONFIG,
                 "models[1].headers.X-Title: expected a string or {\"env\": NAME}");
    /* Names: non-empty HTTP tokens. */
    expect_error(HDR_CFG("{\"\": \"x\"}"), LR_ECONFIG, "models[1].headers: a header name is empty");
    expect_error(HDR_CFG("{\"X Title\": \"x\"}"), LR_ECONFIG,
                 "models[1].headers.X Title: not a valid header name");
    expect_error(HDR_CFG("{\"X-Title:\": \"x\"}"), LR_ECONFIG,
                 "models[1].headers.X-Title:: not a valid header name");
    expect_error(HDR_CFG("{\"X\\r\\nEvil\": \"x\"}"), LR_ECONFIG, "not a valid header name");
    expect_error(HDR_CFG("{\"X-T\\u00e9\": \"x\"}"), LR_ECONFIG, "not a valid header name");
    /* Values: no CR, LF, NUL or other control characters. */
    expect_error(HDR_CFG("{\"X-Title\": \"a\\r\\nHost: evil\"}"), LR_ECONFIG,
                 "models[1].headers.X-Title: the value contains a control character");
    expect_error(HDR_CFG("{\"X-Title\": \"a\\nb\"}"), LR_ECONFIG,
                 "models[1].headers.X-Title: the value contains a control character");
    expect_error(HDR_CFG("{\"X-Title\": \"a\\u001fb\"}"), LR_ECONFIG,
                 "models[1].headers.X-Title: the value contains a control character");
    expect_error(HDR_CFG("{\"X-Title\": \"a\\u007fb\"}"), LR_ECONFIG,
                 "models[1].headers.X-Title: the value contains a control character");
    /* A NUL never gets past the parser. */
    expect_error(HDR_CFG("{\"X-Title\": \"a\\u0000b\"}"), LR_EPARSE, "u0000");
    /* The headers the gateway sets itself, in any case. */
    expect_error(HDR_CFG("{\"Authorization\": \"Bearer sk\"}"), LR_ECONFIG,
                 "models[1].headers.Authorization: the gateway sets Authorization from "
                 "api_key_env");
    expect_error(HDR_CFG("{\"authorization\": {\"env\": \"K\"}}"), LR_ECONFIG,
                 "models[1].headers.authorization: the gateway sets Authorization");
    expect_error(HDR_CFG("{\"HOST\": \"x\"}"), LR_ECONFIG,
                 "models[1].headers.HOST: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"content-length\": \"1\"}"), LR_ECONFIG,
                 "models[1].headers.content-length: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"Content-Type\": \"text/plain\"}"), LR_ECONFIG,
                 "models[1].headers.Content-Type: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"Transfer-Encoding\": \"chunked\"}"), LR_ECONFIG,
                 "models[1].headers.Transfer-Encoding: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"Connection\": \"close\"}"), LR_ECONFIG,
                 "models[1].headers.Connection: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"Expect\": \"100-continue\"}"), LR_ECONFIG,
                 "models[1].headers.Expect: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"Upgrade\": \"h2c\"}"), LR_ECONFIG,
                 "models[1].headers.Upgrade: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"Keep-Alive\": \"timeout=5\"}"), LR_ECONFIG,
                 "models[1].headers.Keep-Alive: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"TE\": \"trailers\"}"), LR_ECONFIG,
                 "models[1].headers.TE: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"Trailer\": \"X-A\"}"), LR_ECONFIG,
                 "models[1].headers.Trailer: the gateway sets this header itself");
    expect_error(HDR_CFG("{\"Proxy-Connection\": \"close\"}"), LR_ECONFIG,
                 "models[1].headers.Proxy-Connection: the gateway sets this header itself");
    /* The gateway asks for identity and decodes nothing. */
    expect_error(HDR_CFG("{\"Accept-Encoding\": \"gzip\"}"), LR_ECONFIG,
                 "models[1].headers.Accept-Encoding: the gateway sets this header itself");
    /* One header named twice in different case. */
    expect_error(HDR_CFG("{\"X-Title\": \"a\", \"x-title\": \"b\"}"), LR_ECONFIG,
                 "models[1].headers.x-title: the same header as X-Title");
    /* Caps: 32 headers, 8 KB. */
    off = (size_t)snprintf(big, sizeof big, "{\"models\": [{\"name\": \"a\", \"headers\": {");
    for (int i = 0; i < 33; i++)
        off += (size_t)snprintf(big + off, sizeof big - off, "%s\"X-%d\": \"v\"", i ? ", " : "", i);
    snprintf(big + off, sizeof big - off, "}}]}");
    expect_error(big, LR_ECONFIG, "models[0].headers: at most 32 headers, got 33");
    off = (size_t)snprintf(big, sizeof big, "{\"models\": [{\"name\": \"a\", \"headers\": {");
    for (int i = 0; i < 3; i++) {
        off += (size_t)snprintf(big + off, sizeof big - off, "%s\"X-%d\": \"", i ? ", " : "", i);
        memset(big + off, 'v', 3000);
        off += 3000;
        big[off++] = '"';
    }
    snprintf(big + off, sizeof big - off, "}}]}");
    expect_error(big, LR_ECONFIG, "models[0].headers: more than 8192 bytes of headers");
}

#define EMB_CFG(emb)                                                                           \
    "{\"models\": [{\"name\": \"a\"}], \"router\": {\"embedding\": " emb "}}"

static void loads_a_remote_embedder_with_defaults(void **state)
{
    struct lr_config *cfg;
    const struct lr_embedding_info *e;
    (void)state;
    cfg = load_ok(EMB_CFG("{\"base_url\": \"http://localhost:11434/v1/\", "
                          "\"model\": \"all-minilm\", \"colour\": 1}"));
    e = lr_config_embedding(cfg);
    assert_non_null(e);
    assert_string_equal(e->base_url, "http://localhost:11434/v1");
    assert_string_equal(e->model, "all-minilm");
    assert_null(e->api_key_env);
    assert_int_equal(e->dimensions, 0);
    assert_int_equal(e->batch_size, 64);
    assert_int_equal(e->timeout_ms, 30000);
    assert_string_equal(e->embedder_id, "openai:all-minilm");
    assert_int_equal(e->max_input_chars, 8192);
    assert_non_null(lr_config_router_defaults(cfg)->embedding_json);
    assert_int_equal(lr_config_warning_count(cfg), 1);
    assert_non_null(strstr(lr_config_warning(cfg, 0), "router.embedding.colour"));
    lr_config_free(cfg);

    cfg = load_ok(EMB_CFG("{\"base_url\": \"https://api.openai.com/v1\", \"model\": "
                          "\"text-embedding-3-small\", \"api_key_env\": \"OPENAI_API_KEY\", "
                          "\"dimensions\": 256, \"batch_size\": 2048, \"timeout_ms\": 5000, "
                          "\"max_input_chars\": 0}"));
    e = lr_config_embedding(cfg);
    assert_int_equal(e->max_input_chars, 0);
    assert_string_equal(e->api_key_env, "OPENAI_API_KEY");
    assert_int_equal(e->dimensions, 256);
    assert_int_equal(e->batch_size, 2048);
    assert_int_equal(e->timeout_ms, 5000);
    lr_config_free(cfg);

    /* Without router.embedding the built-in embedder is used. */
    cfg = load_ok(good);
    assert_null(lr_config_embedding(cfg));
    lr_config_free(cfg);
}

/* The cut of a text sent to the embedder: at most max_input_chars code
 * points, never inside a character, the whole text at 0. */
static void embedding_input_is_cut_on_a_character_boundary(void **state)
{
    struct lr_embedding_info e = {0};
    /* "a" (1 byte), "\u00e9" (2), "\u20ac" (3), "\U0001F600" (4), "b" */
    const char *t = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "b";
    size_t len = strlen(t);
    (void)state;
    assert_int_equal(lr_embedding_input_len(NULL, t, len), len);
    assert_int_equal(lr_embedding_input_len(&e, t, len), len); /* 0: no cut */
    e.max_input_chars = 1;
    assert_int_equal(lr_embedding_input_len(&e, t, len), 1);
    e.max_input_chars = 2;
    assert_int_equal(lr_embedding_input_len(&e, t, len), 3);
    e.max_input_chars = 3;
    assert_int_equal(lr_embedding_input_len(&e, t, len), 6);
    e.max_input_chars = 4;
    assert_int_equal(lr_embedding_input_len(&e, t, len), 10);
    e.max_input_chars = 5; /* the whole text is 5 characters */
    assert_int_equal(lr_embedding_input_len(&e, t, len), len);
    e.max_input_chars = 6;
    assert_int_equal(lr_embedding_input_len(&e, t, len), len);
    assert_int_equal(lr_embedding_input_len(&e, "", 0), 0);
}

static void rejects_each_invalid_embedding_field_naming_it(void **state)
{
    (void)state;
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", "
                         "\"max_input_chars\": -1}"),
                 LR_ECONFIG,
                 "router.embedding.max_input_chars: expected an integer from 0 to 1048576, "
                 "got -1");
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", "
                         "\"max_input_chars\": 99999999999}"),
                 LR_ECONFIG, "router.embedding.max_input_chars: expected an integer from 0 to");
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", "
                         "\"max_input_chars\": 512.5}"),
                 LR_ECONFIG, "router.embedding.max_input_chars: expected an integer");
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", "
                         "\"max_input_chars\": \"8192\"}"),
                 LR_ECONFIG, "router.embedding.max_input_chars: expected an integer");
    expect_error(EMB_CFG("[1]"), LR_ECONFIG, "router.embedding: expected an object");
    expect_error(EMB_CFG("{\"model\": \"m\"}"), LR_ECONFIG, "router.embedding.base_url: missing");
    expect_error(EMB_CFG("{\"base_url\": \"http://h/v1\"}"), LR_ECONFIG,
                 "router.embedding.model: missing");
    expect_error(EMB_CFG("{\"base_url\": \"localhost:11434\", \"model\": \"m\"}"), LR_ECONFIG,
                 "router.embedding.base_url: expected an http:// or https:// URL");
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", \"api_key\": \"sk\"}"),
                 LR_ECONFIG, "router.embedding.api_key: keys are not read from the config file");
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", \"batch_size\": 0}"),
                 LR_ECONFIG, "router.embedding.batch_size: expected an integer from 1 to 2048");
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", \"batch_size\": 4096}"),
                 LR_ECONFIG, "router.embedding.batch_size");
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", \"dimensions\": 1.5}"),
                 LR_ECONFIG, "router.embedding.dimensions: expected an integer");
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", \"timeout_ms\": -1}"),
                 LR_ECONFIG, "router.embedding.timeout_ms");
    expect_error(EMB_CFG("{\"base_url\": 7, \"model\": \"m\"}"), LR_ECONFIG,
                 "router.embedding.base_url: expected a string");
    /* {base_url}/embeddings is asked for: a query, a fragment, a space or
     * no host could never work. */
    expect_error(EMB_CFG("{\"base_url\": \"http://h/v1?x=1\", \"model\": \"m\"}"), LR_ECONFIG,
                 "router.embedding.base_url: 'http://h/v1?x=1' holds a query ('?')");
    expect_error(EMB_CFG("{\"base_url\": \"http://h/v1#f\", \"model\": \"m\"}"), LR_ECONFIG,
                 "router.embedding.base_url: 'http://h/v1#f' holds a fragment ('#')");
    expect_error(EMB_CFG("{\"base_url\": \"http://h/v1 \", \"model\": \"m\"}"), LR_ECONFIG,
                 "router.embedding.base_url: 'http://h/v1 ' holds a space");
    expect_error(EMB_CFG("{\"base_url\": \"https:///v1\", \"model\": \"m\"}"), LR_ECONFIG,
                 "router.embedding.base_url: 'https:///v1' has no host");
    /* The same for a model's base_url, naming the model. */
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://h/v1?k=2\"}]}",
                 LR_ECONFIG, "models[0] (a): base_url 'http://h/v1?k=2' holds a query ('?')");
}

/* libcurl refuses a port over 65535 or not a number only when a request
 * is made, and nothing listens on port 0: every request to such a model
 * failed 502 after check-config and serve had taken the file. */
static void a_base_url_with_an_unusable_port_or_host_is_refused(void **state)
{
    (void)state;
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://h:65536/v1\"}]}",
                 LR_ECONFIG,
                 "models[0] (a): base_url 'http://h:65536/v1' has a port that is not a number "
                 "from 1 to 65535");
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://h:0/v1\"}]}",
                 LR_ECONFIG, "base_url 'http://h:0/v1' has a port that is not a number");
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://h:8o8o/v1\"}]}",
                 LR_ECONFIG, "base_url 'http://h:8o8o/v1' has a port that is not a number");
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": "
                 "\"http://h:99999999999999999999\"}]}",
                 LR_ECONFIG, "has a port that is not a number from 1 to 65535");
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://[::1/v1\"}]}",
                 LR_ECONFIG, "base_url 'http://[::1/v1' has an IPv6 address without its closing ']'");
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://fe80::1/v1\"}]}",
                 LR_ECONFIG, "base_url 'http://fe80::1/v1' has a host with more than one ':'");
    /* 655350 is past the cap however many of its digits are read. */
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://h:655350/v1\"}]}",
                 LR_ECONFIG, "base_url 'http://h:655350/v1' has a port that is not a number");
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://[::1]x/v1\"}]}",
                 LR_ECONFIG,
                 "base_url 'http://[::1]x/v1' has something other than ':PORT' after its IPv6 "
                 "address's ']'");
    expect_error(EMB_CFG("{\"base_url\": \"http://h:70000/v1\", \"model\": \"m\"}"),
                 LR_ECONFIG,
                 "router.embedding.base_url: 'http://h:70000/v1' has a port that is not a number");
    /* Ports 1 to 65535 (leading zeros, an empty port: the default) and
     * IPv6 in brackets are URLs libcurl takes. */
    lr_config_free(load_ok("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://h:65535/v1\"},"
                           " {\"name\": \"b\", \"base_url\": \"http://h:1\"},"
                           " {\"name\": \"c\", \"base_url\": \"http://h:/v1\"},"
                           " {\"name\": \"d\", \"base_url\": \"http://[::1]:8000/v1\"},"
                           " {\"name\": \"e\", \"base_url\": \"http://[::1]/v1\"},"
                           " {\"name\": \"f\", \"base_url\": \"http://h:08000/v1\"}]}"));
    lr_config_free(
        load_ok("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://h:9090/v1\"}]}"));
}

/* A route's fallback that is one of its own models is ranked with them by
 * the strategy, not tried after them, as the file suggests: it was taken
 * silently. */
static void a_fallback_among_the_routes_own_models_is_warned_about(void **state)
{
    struct lr_config *cfg;
    (void)state;
    cfg = load_ok("{\"models\": [{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": \"c\"}],"
                  " \"routes\": [{\"name\": \"r\", \"models\": [\"a\", \"b\"],"
                  " \"fallbacks\": [\"c\", \"b\"]}]}");
    assert_int_equal(lr_config_warning_count(cfg), 1);
    assert_string_equal(lr_config_warning(cfg, 0),
                        "routes[0].fallbacks[1]: 'b' is also one of the route's models "
                        "(routes[0].models[1]): it is ranked with them, not tried after them");
    assert_int_equal(lr_config_route(cfg, 0)->n_fallbacks, 2);
    lr_config_free(cfg);
    cfg = load_ok("{\"models\": [{\"name\": \"a\"}, {\"name\": \"b\"}],"
                  " \"routes\": [{\"name\": \"r\", \"models\": [\"a\"],"
                  " \"fallbacks\": [\"a\", \"b\"]}]}");
    assert_int_equal(lr_config_warning_count(cfg), 1);
    assert_string_equal(lr_config_warning(cfg, 0),
                        "routes[0].fallbacks[0]: 'a' is also one of the route's models "
                        "(routes[0].models[0]): it is ranked with them, not tried after them");
    lr_config_free(cfg);
    /* Fallbacks outside the route's models: nothing to say. */
    cfg = load_ok("{\"models\": [{\"name\": \"a\"}, {\"name\": \"b\"}],"
                  " \"routes\": [{\"name\": \"r\", \"models\": [\"a\"], \"fallbacks\": [\"b\"]}]}");
    assert_int_equal(lr_config_warning_count(cfg), 0);
    lr_config_free(cfg);
}

/* Model names that differ only in ASCII case are two models, since names
 * are matched byte for byte, but clients and upstreams routinely take them
 * for one: the second is warned about, naming both (it was taken
 * silently). Each name is warned about once; other bytes are not folded. */
static void model_names_that_differ_only_in_case_are_warned_about(void **state)
{
    struct lr_config *cfg;
    (void)state;
    cfg = load_ok("{\"models\": [{\"name\": \"GPT-4\"}, {\"name\": \"b\"},"
                  " {\"name\": \"gpt-4\"}, {\"name\": \"Gpt-4\"}]}");
    assert_int_equal(lr_config_model_count(cfg), 4);
    assert_int_equal(lr_config_warning_count(cfg), 2);
    assert_string_equal(lr_config_warning(cfg, 0),
                        "models[2].name: 'gpt-4' differs from models[0].name 'GPT-4' only in "
                        "case: they are two models (names are matched byte for byte), which "
                        "clients and upstreams often take for one");
    assert_string_equal(lr_config_warning(cfg, 1),
                        "models[3].name: 'Gpt-4' differs from models[0].name 'GPT-4' only in "
                        "case: they are two models (names are matched byte for byte), which "
                        "clients and upstreams often take for one");
    lr_config_free(cfg);
    cfg = load_ok("{\"models\": [{\"name\": \"gpt-4\"}, {\"name\": \"gpt-4o\"},"
                  " {\"name\": \"\u00c9t\u00e9\"}, {\"name\": \"\u00e9t\u00e9\"}]}");
    assert_int_equal(lr_config_warning_count(cfg), 0);
    lr_config_free(cfg);
}

/* A scheme is case-insensitive (RFC 3986 3.1): "HTTP://" was refused for
 * router.embedding and skipped the port and host checks of a model's. */
static void a_base_url_scheme_is_taken_in_any_case(void **state)
{
    struct lr_config *cfg;
    char text[600], url[300];
    (void)state;
    cfg = load_ok(EMB_CFG("{\"base_url\": \"HTTPS://Api.example.com/v1/\", \"model\": \"m\"}"));
    assert_string_equal(lr_config_embedding(cfg)->base_url, "https://Api.example.com/v1");
    lr_config_free(cfg);
    expect_error("{\"models\": [{\"name\": \"a\", \"base_url\": \"HTTP://h:65536/v1\"}]}",
                 LR_ECONFIG, "models[0] (a): base_url 'HTTP://h:65536/v1' has a port that is not");
    expect_error(EMB_CFG("{\"base_url\": \"Http://h/v1?x\", \"model\": \"m\"}"), LR_ECONFIG,
                 "router.embedding.base_url: 'Http://h/v1?x' holds a query ('?')");
    /* Another scheme is shown, cut when long. */
    memset(url, 'h', 250);
    url[250] = '\0';
    snprintf(text, sizeof text, EMB_CFG("{\"base_url\": \"%s\", \"model\": \"m\"}"), url);
    url[200] = '\0';
    strcat(url, "...'");
    expect_error(text, LR_ECONFIG, url);
}

/* libcurl sends a URL's user and password as Basic authorization: a key
 * written into base_url was taken and sent, though keys are never read
 * from the file. The message names the field and api_key_env, and does
 * not repeat the password. */
static void a_base_url_with_a_user_or_password_is_refused(void **state)
{
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    static const char *const bad[] = {
        "{\"models\": [{\"name\": \"a\", \"backend\": \"vllm\", "
        "\"base_url\": \"http://u:s3cret@h:8000/v1\"}]}",
        "{\"models\": [{\"name\": \"a\", \"base_url\": \"https://s3cret@h/v1\"}]}",
        "{\"models\": [{\"name\": \"a\", \"base_url\": \"http://u:s3cret@h:99999/v1?q\"}]}",
        "{\"models\": [{\"name\": \"a\", \"backend\": \"mock\", \"base_url\": \"u:s3cret@h/v1\"}]}",
        EMB_CFG("{\"base_url\": \"http://u:s3cret@h/v1\", \"model\": \"m\"}"),
        EMB_CFG("{\"base_url\": \"u:s3cret@h/v1\", \"model\": \"m\"}"),
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(lr_config_load_string(bad[i], strlen(bad[i]), &cfg, &err), LR_ECONFIG);
        assert_null(cfg);
        assert_non_null(strstr(err.message, i < 4 ? "models[0] (a): base_url holds a user name "
                                                    "or password"
                                                  : "router.embedding.base_url: holds a user "
                                                    "name or password"));
        assert_non_null(strstr(err.message, "api_key_env"));
        if (strstr(err.message, "s3cret"))
            fail_msg("the message shows the password: %s", err.message);
    }
    /* An '@' in the path is no userinfo. */
    lr_config_free(load_ok("{\"models\": [{\"name\": \"a\", \"base_url\": \"http://h/v1/@x\"}]}"));
}

/* A name reaches clients in x-llmroute-model or x-llmroute-route, whose
 * value loses a space at its ends: "a " was taken beside "a", and a client
 * sending back the "a" it read was told there was no model 'a'. A route
 * name had no cap: one of a megabyte made every answer on it a header no
 * client would read. */
static void a_name_with_a_space_at_an_end_or_an_overlong_route_name_is_refused(void **state)
{
    char text[1024];
    char name[300];
    (void)state;
    expect_error("{\"models\": [{\"name\": \"a\"}, {\"name\": \"a \"}]}", LR_ECONFIG,
                 "models[1].name: 'a ' ends with a space");
    expect_error("{\"models\": [{\"name\": \" a\"}]}", LR_ECONFIG,
                 "models[0].name: ' a' starts with a space");
    expect_error("{\"models\": [{\"name\": \" \"}]}", LR_ECONFIG,
                 "models[0].name: ' ' starts with a space");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"auto \"}]}",
                 LR_ECONFIG, "routes[0].name: 'auto ' ends with a space");
    memset(name, 'r', 257);
    name[257] = '\0';
    snprintf(text, sizeof text, "{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"%s\"}]}",
             name);
    expect_error(text, LR_ECONFIG,
                 "routes[0].name: 257 bytes, over the cap of 256 bytes for a route name");
    /* A space inside a name, and a route name at the cap, are fine. */
    name[256] = '\0';
    snprintf(text, sizeof text,
             "{\"models\": [{\"name\": \"my model\"}], \"routes\": [{\"name\": \"%s\"}]}", name);
    lr_config_free(load_ok(text));
}

static void rejects_invalid_utf8(void **state)
{
    (void)state;
    expect_error("{\"models\": [{\"name\": \"a\xff\"}]}", LR_EPARSE, "unable to decode byte 0xff");
}

/* A NUL byte in the text is named with its offset; at the end, it is a len
 * that counted the terminator, and the message says so. It was "end of
 * file expected" at a column that said nothing of it. */
static void nul_byte_in_the_text_is_named(void **state)
{
    struct lr_config *cfg = (struct lr_config *)1;
    struct lr_error err = {0};
    char text[64];
    size_t len;
    (void)state;
    snprintf(text, sizeof text, "{\"models\": [{\"name\": \"a\"}]}");
    len = strlen(text);
    assert_int_equal(lr_config_load_string(text, len + 1, &cfg, &err), LR_EPARSE);
    assert_null(cfg);
    assert_string_equal(err.message, "configuration: a NUL byte at offset 27, its last: len must "
                                     "count the text's bytes without the terminating NUL");
    text[5] = '\0';
    assert_int_equal(lr_config_load_string(text, len, &cfg, &err), LR_EPARSE);
    assert_string_equal(err.message,
                        "configuration: a NUL byte at offset 5 (JSON text holds none)");
    text[5] = 'e';
    assert_int_equal(lr_config_load_string(text, len, &cfg, &err), 0);
    lr_config_free(cfg);
}

/* Loads bytes from a file made from template and checks that the refusal
 * names a NUL byte at line, column. */
static void expect_nul_byte(const char *bytes, size_t len, const char *template, int line,
                            int column)
{
    char path[64];
    struct lr_config *cfg = (struct lr_config *)1;
    struct lr_error err = {0};
    char want[160];
    int fd;
    snprintf(path, sizeof path, "%s", template);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, len), (int)len);
    close(fd);
    assert_int_equal(lr_config_load_file(path, &cfg, &err), LR_EPARSE);
    assert_null(cfg);
    snprintf(want, sizeof want, "%s: line %d, column %d: a NUL byte (JSON text holds none)",
             path, line, column);
    assert_string_equal(err.message, want);
    assert_int_equal(err.line, line);
    unlink(path);
}

/* A raw NUL byte in a file is named with its line and column, as in a
 * string: it was "'}' expected near end of file". */
static void nul_byte_in_a_file_is_named(void **state)
{
    static const char json[] = "{\"models\": [\n  {\"name\": \"a\"\0}]}";
    (void)state;
    expect_nul_byte(json, sizeof json - 1, "/tmp/lr_cfg_nul_XXXXXX", 2, 15);
}

/* Loads bytes, which are in an encoding other than UTF-8, from a string
 * and from a file made from template, and checks that each refusal names
 * the encoding followed by why, at line 1, column 1 of the file. */
static void expect_encoding_named(const char *bytes, size_t len, const char *template,
                                  const char *encoding, const char *why)
{
    char path[64];
    struct lr_config *cfg = (struct lr_config *)1;
    struct lr_error err = {0};
    char want[320];
    int fd;
    assert_int_equal(lr_config_load_string(bytes, len, &cfg, &err), LR_EPARSE);
    assert_null(cfg);
    snprintf(want, sizeof want,
             "configuration: the text is %s%s: JSON text is UTF-8, so save it as UTF-8",
             encoding, why);
    assert_string_equal(err.message, want);
    snprintf(path, sizeof path, "%s", template);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, len), (int)len);
    close(fd);
    assert_int_equal(lr_config_load_file(path, &cfg, &err), LR_EPARSE);
    assert_null(cfg);
    snprintf(want, sizeof want,
             "%s: line 1, column 1: the file is %s%s: JSON text is UTF-8, so save it as UTF-8",
             path, encoding, why);
    assert_string_equal(err.message, want);
    assert_int_equal(err.line, 1);
    unlink(path);
}

/* A text in UTF-16 or UTF-32 (Notepad's "Unicode", Windows PowerShell's >)
 * is named by its encoding, from its byte order mark: it was "a NUL byte"
 * or "invalid token" at a place that said nothing of why. */
static void a_utf16_or_utf32_text_is_named(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *encoding;
    } texts[] = {
        {"\xff\xfe{\0}\0", 6, "UTF-16LE"},
        {"\xfe\xff\0{\0}", 6, "UTF-16BE"},
        {"\xff\xfe\0\0{\0\0\0", 8, "UTF-32LE"},
        {"\0\0\xfe\xff\0\0\0{", 8, "UTF-32BE"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        expect_encoding_named(texts[i].bytes, texts[i].len, "/tmp/lr_cfg_utf16_XXXXXX",
                              texts[i].encoding,
                              " (it starts with that encoding's byte order mark)");
}

/* Without a byte order mark, a text in UTF-16 or UTF-32 is named by its
 * encoding from the NUL bytes among its first characters, which JSON's
 * are ASCII: it was "a NUL byte" at column 1 or 2. NUL bytes in no such
 * pattern are still named as a NUL byte. */
static void a_utf16_or_utf32_text_without_a_mark_is_named(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *encoding;
    } texts[] = {
        {"{\0}\0", 4, "UTF-16LE"},
        {"\0{\0}", 4, "UTF-16BE"},
        {"{\0\0\0}\0\0\0", 8, "UTF-32LE"},
        {"\0\0\0{\0\0\0}", 8, "UTF-32BE"},
        {"\n\0{\0}\0", 6, "UTF-16LE"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        expect_encoding_named(texts[i].bytes, texts[i].len, "/tmp/lr_cfg_utf16n_XXXXXX",
                              texts[i].encoding,
                              " without a byte order mark (its first characters are ASCII "
                              "with NUL bytes between them, as that encoding writes them)");
    /* ASCII, ASCII, NUL: no such encoding writes it. */
    expect_nul_byte("{}\0\n", 4, "/tmp/lr_cfg_utf16n_XXXXXX", 1, 3);
}

/* A text of 2 or 3 bytes in UTF-16 or UTF-32 is named as a longer one is:
 * by its mark alone, or by NUL bytes beside an ASCII character as far as
 * the pattern goes (it was "a NUL byte" at column 1 or 2). Bytes all NUL,
 * or in no encoding's pattern, are still a NUL byte. */
static void a_utf16_or_utf32_text_of_under_4_bytes_is_named(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *encoding;
    } texts[] = {
        {"{\0", 2, "UTF-16LE"},   {"\0{", 2, "UTF-16BE"},   {"{\0\n", 3, "UTF-16LE"},
        {"\0{\0", 3, "UTF-16BE"}, {"{\0\0", 3, "UTF-32LE"},
    };
    static const struct {
        const char *bytes;
        size_t len;
        int column;
    } nul[] = {{"\0\0", 2, 1}, {"\0\0\0", 3, 1}, {"\0\0{", 3, 1}, {"{}\0", 3, 3}};
    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        expect_encoding_named(texts[i].bytes, texts[i].len, "/tmp/lr_cfg_utf16s_XXXXXX",
                              texts[i].encoding,
                              " without a byte order mark (its few bytes are ASCII with NUL "
                              "bytes beside them, as that encoding writes ASCII)");
    expect_encoding_named("\xff\xfe", 2, "/tmp/lr_cfg_utf16s_XXXXXX", "UTF-16LE",
                          " (it starts with that encoding's byte order mark)");
    expect_encoding_named("\xfe\xff", 2, "/tmp/lr_cfg_utf16s_XXXXXX", "UTF-16BE",
                          " (it starts with that encoding's byte order mark)");
    for (size_t i = 0; i < sizeof nul / sizeof *nul; i++)
        expect_nul_byte(nul[i].bytes, nul[i].len, "/tmp/lr_cfg_utf16s_XXXXXX", 1, nul[i].column);
}

/* The cap on a configuration's size is 16 MiB: a file of exactly that size
 * loads, as the same text does from a string, and one byte more is refused
 * (a file of exactly the cap was refused as "over 16777216 bytes"). */
static void a_file_of_exactly_the_size_cap_loads(void **state)
{
    static const char head[] = "{\"models\": [{\"name\": \"a\", \"description\": \"";
    static const char tail[] = "\"}]}";
    const size_t cap = 16u << 20;
    char path[] = "/tmp/lr_cfg_cap_XXXXXX", want[160];
    int fd = mkstemp(path);
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    char *text = malloc(cap + 2);
    (void)state;
    assert_true(fd >= 0);
    assert_non_null(text);
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t len = cap + extra, body = len - (sizeof head - 1) - (sizeof tail - 1);
        memcpy(text, head, sizeof head - 1);
        memset(text + sizeof head - 1, 'x', body);
        memcpy(text + sizeof head - 1 + body, tail, sizeof tail - 1);
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(pwrite(fd, text, len, 0), (ssize_t)len);
        if (extra == 0) {
            assert_int_equal(lr_config_load_string(text, len, &cfg, &err), 0);
            lr_config_free(cfg);
            cfg = NULL;
            if (lr_config_load_file(path, &cfg, &err) != 0)
                fail_msg("a file of %zu bytes: %s", len, err.message);
            assert_int_equal(lr_config_model_count(cfg), 1);
            lr_config_free(cfg);
            cfg = NULL;
        } else {
            assert_int_equal(lr_config_load_string(text, len, &cfg, &err), LR_ETOOBIG);
            assert_null(cfg);
            assert_string_equal(err.message, "the configuration is over 16777216 bytes");
            assert_int_equal(lr_config_load_file(path, &cfg, &err), LR_ETOOBIG);
            assert_null(cfg);
            snprintf(want, sizeof want, "%s: the configuration is over 16777216 bytes", path);
            assert_string_equal(err.message, want);
        }
    }
    free(text);
    close(fd);
    unlink(path);
}

/* A model name with a comma could never be selected by --models, whose
 * names are separated by commas. */
static void comma_in_a_model_name_is_refused(void **state)
{
    (void)state;
    expect_error("{\"models\": [{\"name\": \"a,b\"}]}", LR_ECONFIG,
                 "models[0].name: 'a,b' contains a comma");
}

/* An integer option given as a fraction or an exponent shows the value. */
static void a_number_for_an_integer_shows_the_value(void **state)
{
    (void)state;
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"n_similar\": 1.5}}", LR_ECONFIG,
                 "router.n_similar: expected an integer from 1 to 1024, got 1.5");
    expect_error("{\"models\": [{\"name\": \"a\", \"capacity\": 1e10}]}", LR_ECONFIG,
                 "models[0].capacity: expected an integer from 0 to 1000000000, got 1e+10");
    /* 5.0 prints as 5: the message says why 5 is refused. */
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"n_similar\": 5.0}}", LR_ECONFIG,
                 "router.n_similar: expected an integer from 1 to 1024, got 5 written as a real "
                 "number (an integer has no '.' or exponent)");
}

/* A path too long for the message is cut in its middle, and the reason
 * after it stays (a 9,999-byte path left 511 bytes of it and no reason);
 * an unknown strategy's name is escaped, as the store's messages escape
 * the names they quote. */
static void long_path_and_odd_names_leave_a_readable_message(void **state)
{
    static char path[10000];
    const char *why = strerror(ENAMETOOLONG);
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    size_t len;
    (void)state;
    memset(path, 'a', sizeof path - 1);
    assert_int_equal(lr_config_load_file(path, &cfg, &err), LR_EIO);
    len = strlen(err.message);
    assert_true(len < sizeof err.message);
    assert_true(len > strlen(why));
    assert_string_equal(err.message + len - strlen(why), why);
    assert_non_null(strstr(err.message, "aaa...aaa"));
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"strategy\": \"x\\ny\"}}",
                 LR_ECONFIG, "router.strategy: unknown strategy 'x\\x0ay'");
}

/* The loaded library's version is the header's, as string and number. */
static void library_version_is_the_headers(void **state)
{
    char want[32];
    (void)state;
    assert_string_equal(lr_version(), LR_VERSION_STRING);
    assert_int_equal(lr_version_number(), LR_VERSION_NUMBER);
    snprintf(want, sizeof want, "%d.%d.%d", LR_VERSION_MAJOR, LR_VERSION_MINOR,
             LR_VERSION_PATCH);
    assert_string_equal(lr_version(), want);
    assert_int_equal(lr_version_number(),
                     LR_VERSION_MAJOR * 10000 + LR_VERSION_MINOR * 100 + LR_VERSION_PATCH);
}

/* A configuration that fails validation is LR_ECONFIG in err.code too, and
 * is tied to no line of a file: err.line is 0, whatever it held. Read from a
 * file, the message starts with the file's name, so a user knows which file
 * to fix. */
static void a_validation_error_has_its_code_no_line_and_the_files_name(void **state)
{
    char path[] = "/tmp/lr_cfg_invalid_XXXXXX", want[160];
    const char *json = "{\"models\": []}";
    int fd = mkstemp(path);
    struct lr_config *cfg = (struct lr_config *)1;
    struct lr_error err = {.code = 0, .line = 7};
    (void)state;
    assert_int_equal(lr_config_load_string(json, strlen(json), &cfg, &err), LR_ECONFIG);
    assert_null(cfg);
    assert_int_equal(err.code, LR_ECONFIG);
    assert_int_equal(err.line, 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (int)strlen(json));
    close(fd);
    err.code = 0;
    err.line = 7;
    assert_int_equal(lr_config_load_file(path, &cfg, &err), LR_ECONFIG);
    assert_null(cfg);
    assert_int_equal(err.code, LR_ECONFIG);
    assert_int_equal(err.line, 0);
    snprintf(want, sizeof want, "%s: models: expected at least one model", path);
    assert_string_equal(err.message, want);
    unlink(path);
}

/* A NULL text, path or out is LR_EINVAL, in err.code too; freeing NULL
 * does nothing. */
static void null_arguments_are_invalid(void **state)
{
    struct lr_config *cfg = (struct lr_config *)1;
    struct lr_error err = {0};
    (void)state;
    assert_int_equal(lr_config_load_string("{}", 2, NULL, &err), LR_EINVAL);
    assert_int_equal(err.code, LR_EINVAL);
    err.code = 0;
    assert_int_equal(lr_config_load_string(NULL, 2, &cfg, &err), LR_EINVAL);
    assert_int_equal(err.code, LR_EINVAL);
    assert_null(cfg);
    err.code = 0;
    assert_int_equal(lr_config_load_file("/tmp/x.json", NULL, &err), LR_EINVAL);
    assert_int_equal(err.code, LR_EINVAL);
    err.code = 0;
    cfg = (struct lr_config *)1;
    assert_int_equal(lr_config_load_file(NULL, &cfg, &err), LR_EINVAL);
    assert_int_equal(err.code, LR_EINVAL);
    assert_null(cfg);
    lr_config_free(NULL);
}

/* A member of the wrong type is refused naming the type it has, each JSON
 * type by its own name. "routes": null is refused, as "router": null is. */
static void a_member_of_the_wrong_type_is_named_by_its_type(void **state)
{
    static const struct {
        const char *json;
        const char *want;
    } cases[] = {
        {"{\"models\": {}}", "models: expected an array, got an object"},
        {"{\"models\": \"a\"}", "models: expected an array, got a string"},
        {"{\"models\": 1}", "models: expected an array, got an integer"},
        {"{\"models\": 1.5}", "models: expected an array, got a number"},
        {"{\"models\": true}", "models: expected an array, got a boolean"},
        {"{\"models\": false}", "models: expected an array, got a boolean"},
        {"{\"models\": null}", "models: expected an array, got null"},
        {"{\"models\": [[]]}", "models[0]: expected an object, got an array"},
        {"{\"models\": [{\"name\": \"a\"}], \"routes\": null}",
         "routes: expected an array, got null"},
        {"{\"models\": [{\"name\": \"a\"}], \"routes\": {}}",
         "routes: expected an array, got an object"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_error(cases[i].json, LR_ECONFIG, cases[i].want);
}

/* null for an optional member means unset: the default applies, as if the
 * member were absent, and nothing is warned about. */
static void null_for_an_optional_member_is_its_default(void **state)
{
    struct lr_config *cfg;
    const struct lr_model_info *m;
    const struct lr_router_defaults *d;
    const struct lr_route_info *r;
    const struct lr_embedding_info *e;
    (void)state;
    cfg = load_ok("{\"models\": [{\"name\": \"a\", \"backend\": null, \"base_url\": null,"
                  " \"api_key_env\": null, \"upstream_model\": null, \"hosted_model\": null,"
                  " \"cost_per_input_token\": null, \"cost_per_output_token\": null,"
                  " \"max_concurrency\": null, \"capacity\": null,"
                  " \"retry\": {\"max_attempts\": null, \"deadline_ms\": null}}],"
                  " \"router\": {\"strategy\": null, \"performance_requirement\": null,"
                  " \"n_similar\": null, \"predictor\": null, \"alpha\": null, \"store\": null,"
                  " \"query_text\": null, \"embedding\": null},"
                  " \"routes\": [{\"name\": \"r\", \"strategy\": null, \"models\": null,"
                  " \"performance_requirement\": null, \"fallbacks\": null}]}");
    m = lr_config_model(cfg, 0);
    assert_string_equal(m->backend, "openai");
    assert_null(m->base_url);
    assert_null(m->api_key_env);
    assert_string_equal(m->upstream_model, "a");
    assert_true(isnan(m->cost_per_input_token));
    assert_true(isnan(m->cost_per_output_token));
    assert_int_equal(m->max_concurrency, 0);
    assert_int_equal(m->capacity, 0);
    d = lr_config_router_defaults(cfg);
    assert_string_equal(d->strategy, "sequential");
    assert_true(d->performance_requirement == 0.7);
    assert_int_equal(d->n_similar, 16);
    assert_string_equal(d->predictor, "default");
    assert_true(d->alpha == 0.7);
    assert_null(d->store_path);
    assert_string_equal(d->query_text, "last_user");
    assert_null(d->embedding_json);
    assert_null(lr_config_embedding(cfg));
    r = lr_config_route(cfg, 0);
    assert_null(r->strategy);
    assert_int_equal(r->n_models, 0); /* all models */
    assert_true(isnan(r->performance_requirement));
    assert_int_equal(r->n_fallbacks, 0);
    assert_int_equal(lr_config_warning_count(cfg), 0);
    lr_config_free(cfg);

    cfg = load_ok(EMB_CFG("{\"base_url\": \"http://h/v1\", \"model\": \"m\", \"api_key_env\": null,"
                          " \"dimensions\": null, \"batch_size\": null, \"timeout_ms\": null,"
                          " \"max_input_chars\": null}"));
    e = lr_config_embedding(cfg);
    assert_null(e->api_key_env);
    assert_int_equal(e->dimensions, 0);
    assert_int_equal(e->batch_size, 64);
    assert_int_equal(e->timeout_ms, 30000);
    assert_int_equal(e->max_input_chars, 8192);
    lr_config_free(cfg);
}

/* What a config gives is what reads back: the router's strategy,
 * predictor, alpha and query_text, a model's upstream_model, a route's
 * strategy and models, and each model's and route's object as compact
 * JSON. A route without a performance_requirement has NaN (the router's). */
static void configured_values_read_back(void **state)
{
    struct lr_config *cfg;
    const struct lr_router_defaults *d;
    const struct lr_model_info *m;
    const struct lr_route_info *r;
    (void)state;
    cfg = load_ok("{\"models\": [{\"name\": \"a\", \"upstream_model\": \"a-2024\","
                  " \"mock\": {\"latency_ms\": 5}}, {\"name\": \"b\"}],"
                  " \"router\": {\"strategy\": \"smart\", \"predictor\": \"aios\", \"alpha\": 0.85,"
                  " \"query_text\": \"all_user\"},"
                  " \"routes\": [{\"name\": \"r\", \"strategy\": \"sequential\","
                  " \"models\": [\"b\"]},"
                  " {\"name\": \"s\", \"fallbacks\": [\"a\"]}]}");
    d = lr_config_router_defaults(cfg);
    assert_string_equal(d->strategy, "smart");
    assert_string_equal(d->predictor, "aios");
    assert_true(d->alpha == 0.85);
    assert_true(d->performance_requirement == 0.7);
    assert_string_equal(d->query_text, "all_user");
    m = lr_config_model(cfg, 0);
    assert_string_equal(m->upstream_model, "a-2024");
    assert_string_equal(m->json, "{\"name\":\"a\",\"upstream_model\":\"a-2024\","
                                 "\"mock\":{\"latency_ms\":5}}");
    assert_string_equal(lr_config_model(cfg, 1)->json, "{\"name\":\"b\"}");
    r = lr_config_route(cfg, 0);
    assert_string_equal(r->strategy, "sequential");
    assert_true(isnan(r->performance_requirement));
    assert_int_equal(r->n_models, 1);
    assert_int_equal(r->models[0], 1);
    assert_string_equal(r->json, "{\"name\":\"r\",\"strategy\":\"sequential\",\"models\":[\"b\"]}");
    r = lr_config_route(cfg, 1);
    assert_int_equal(r->n_models, 0); /* all models */
    assert_int_equal(r->n_fallbacks, 1);
    assert_int_equal(r->fallbacks[0], 0);
    assert_null(lr_config_route(cfg, 2));
    assert_int_equal(lr_config_route_index(cfg, "s"), 1);
    assert_int_equal(lr_config_warning_count(cfg), 0);
    assert_null(lr_config_warning(cfg, 0));
    lr_config_free(cfg);
}

/* Each router and route field that is refused is named: query_text, a
 * route's strategy, models and fallbacks, and an unknown key in a route is
 * warned about. */
static void invalid_router_and_route_fields_are_named(void **state)
{
    struct lr_config *cfg;
    (void)state;
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"query_text\": \"first_user\"}}",
                 LR_ECONFIG,
                 "router.query_text: expected \"last_user\" or \"all_user\", got 'first_user'");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\", \"strategy\": "
                 "\"psychic\"}]}",
                 LR_ECONFIG, "routes[0].strategy: unknown strategy 'psychic'");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\", \"models\": "
                 "\"a\"}]}",
                 LR_ECONFIG, "routes[0].models: expected an array of model names, got a string");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\", \"fallbacks\": "
                 "[7]}]}",
                 LR_ECONFIG, "routes[0].fallbacks[0]: expected a model name, got an integer");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\", \"fallbacks\": "
                 "[\"z\"]}]}",
                 LR_ECONFIG, "routes[0].fallbacks[0]: 'z' is not a configured model");
    cfg = load_ok(
        "{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\", \"colour\": 1}]}");
    assert_int_equal(lr_config_warning_count(cfg), 1);
    assert_string_equal(lr_config_warning(cfg, 0), "routes[0].colour: unknown key, ignored");
    lr_config_free(cfg);
}

/* Each range takes both its ends, and a value just past either is refused
 * naming the field, the range and the value. */
static void ranges_take_both_ends_and_refuse_past_them(void **state)
{
    struct lr_config *cfg;
    const struct lr_model_info *m;
    (void)state;
    cfg = load_ok("{\"models\": [{\"name\": \"a\", \"cost_per_input_token\": 1e6,"
                  " \"cost_per_output_token\": 1000000, \"max_concurrency\": 1000000},"
                  " {\"name\": \"b\", \"cost_per_input_token\": 0, \"cost_per_output_token\": 0,"
                  " \"max_concurrency\": 0}],"
                  " \"router\": {\"performance_requirement\": 1, \"alpha\": 0},"
                  " \"routes\": [{\"name\": \"r\", \"performance_requirement\": 0},"
                  " {\"name\": \"s\", \"performance_requirement\": 1.0}]}");
    m = lr_config_model(cfg, 0);
    assert_true(m->cost_per_input_token == 1e6);
    assert_true(m->cost_per_output_token == 1e6);
    assert_int_equal(m->max_concurrency, 1000000);
    assert_true(lr_config_model(cfg, 1)->cost_per_output_token == 0);
    assert_int_equal(lr_config_model(cfg, 1)->max_concurrency, 0);
    assert_true(lr_config_router_defaults(cfg)->performance_requirement == 1);
    assert_true(lr_config_router_defaults(cfg)->alpha == 0);
    assert_true(lr_config_route(cfg, 0)->performance_requirement == 0);
    assert_true(lr_config_route(cfg, 1)->performance_requirement == 1);
    lr_config_free(cfg);
    expect_error("{\"models\": [{\"name\": \"a\", \"cost_per_output_token\": -1}]}", LR_ECONFIG,
                 "models[0].cost_per_output_token: expected a non-negative number, got -1");
    expect_error(
        "{\"models\": [{\"name\": \"a\"}], \"router\": {\"performance_requirement\": -0.5}}",
        LR_ECONFIG, "router.performance_requirement: expected a number from 0 to 1, got -0.5");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"router\": {\"alpha\": -0.5}}", LR_ECONFIG,
                 "router.alpha: expected a number from 0 to 1, got -0.5");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\","
                 " \"performance_requirement\": 1.5}]}",
                 LR_ECONFIG,
                 "routes[0].performance_requirement: expected a number from 0 to 1, got 1.5, over "
                 "the cap of 1");
    expect_error("{\"models\": [{\"name\": \"a\"}], \"routes\": [{\"name\": \"r\","
                 " \"performance_requirement\": -0.5}]}",
                 LR_ECONFIG,
                 "routes[0].performance_requirement: expected a number from 0 to 1, got -0.5");
    expect_error("{\"models\": [{\"name\": \"a\", \"max_concurrency\": 1000001}]}", LR_ECONFIG,
                 "models[0].max_concurrency: expected an integer from 0 to 1000000, got 1000001");
    expect_error("{\"models\": [{\"name\": \"a\", \"max_concurrency\": -1}]}", LR_ECONFIG,
                 "models[0].max_concurrency: expected an integer from 0 to 1000000, got -1");
    expect_error("{\"models\": [{\"name\": \"a\", \"max_concurrency\": \"8\"}]}", LR_ECONFIG,
                 "models[0].max_concurrency: expected an integer from 0 to 1000000, got a string");
}

/* Every ASCII letter folds, A and Z included, whether in the first name or
 * the second; '@' and '[', just outside the capitals, and '`' and '{',
 * just outside the small letters, are not letters and do not. */
static void case_folding_takes_every_ascii_letter_and_nothing_else(void **state)
{
    struct lr_config *cfg;
    (void)state;
    cfg = load_ok("{\"models\": [{\"name\": \"AZ\"}, {\"name\": \"az\"}, {\"name\": \"za\"},"
                  " {\"name\": \"ZA\"}, {\"name\": \"q@\"}, {\"name\": \"q`\"}, {\"name\": \"q{\"},"
                  " {\"name\": \"q[\"}]}");
    assert_int_equal(lr_config_warning_count(cfg), 2);
    assert_non_null(strstr(lr_config_warning(cfg, 0),
                           "models[1].name: 'az' differs from models[0].name 'AZ' only in case"));
    assert_non_null(strstr(lr_config_warning(cfg, 1),
                           "models[3].name: 'ZA' differs from models[2].name 'za' only in case"));
    lr_config_free(cfg);
}

/* A model name, as a route name, may be 256 bytes, and one more is refused
 * naming the cap and the kind of name. */
static void a_model_name_over_256_bytes_is_refused(void **state)
{
    char text[1024];
    char name[300];
    (void)state;
    memset(name, 'm', 257);
    name[257] = '\0';
    snprintf(text, sizeof text, "{\"models\": [{\"name\": \"%s\"}]}", name);
    expect_error(text, LR_ECONFIG,
                 "models[0].name: 257 bytes, over the cap of 256 bytes for a model name");
    name[256] = '\0';
    snprintf(text, sizeof text, "{\"models\": [{\"name\": \"%s\"}]}", name);
    lr_config_free(load_ok(text));
}

/* Writes into buf a config whose one model has headers: an env header
 * when with_env, then X-A with a value of n bytes. */
static void headers_of_size(char *buf, size_t cap, int with_env, size_t n)
{
    size_t off = (size_t)snprintf(buf, cap,
                                  "{\"models\": [{\"name\": \"a\", \"headers\": {%s\"X-A\": \"",
                                  with_env ? "\"E\": {\"env\": \"V\"}, " : "");
    memset(buf + off, 'v', n);
    snprintf(buf + off + n, cap - off - n, "\"}}]}");
}

/* A model takes up to 32 headers and 8192 bytes of them, each counted as
 * it is sent ("Name: value\r\n"), an {"env": NAME} one by its name here
 * (its value is counted where it is read); one byte more is refused. */
static void headers_take_32_and_8192_bytes(void **state)
{
    static char big[9000];
    size_t off;
    (void)state;
    off = (size_t)snprintf(big, sizeof big, "{\"models\": [{\"name\": \"a\", \"headers\": {");
    for (int i = 0; i < 32; i++)
        off += (size_t)snprintf(big + off, sizeof big - off, "%s\"X-%d\": \"v\"", i ? ", " : "", i);
    snprintf(big + off, sizeof big - off, "}}]}");
    lr_config_free(load_ok(big));
    /* "X-A: " + 8185 bytes + "\r\n" is 8192 bytes. */
    headers_of_size(big, sizeof big, 0, 8185);
    lr_config_free(load_ok(big));
    headers_of_size(big, sizeof big, 0, 8186);
    expect_error(big, LR_ECONFIG, "models[0].headers: more than 8192 bytes of headers");
    /* "E: " and "\r\n" leave 8180 bytes for X-A's value. */
    headers_of_size(big, sizeof big, 1, 8180);
    lr_config_free(load_ok(big));
    headers_of_size(big, sizeof big, 1, 8181);
    expect_error(big, LR_ECONFIG, "models[0].headers: more than 8192 bytes of headers");
}

/* router.embedding: a model name of 120 bytes makes the id "openai:" and
 * it; one of 121 is refused. Every trailing '/' of base_url goes. A key is
 * refused even as null. */
static void embedding_model_cap_slashes_and_key(void **state)
{
    char text[512], model[200], id[256];
    struct lr_config *cfg;
    (void)state;
    memset(model, 'e', 121);
    model[121] = '\0';
    snprintf(text, sizeof text, EMB_CFG("{\"base_url\": \"http://h/v1\", \"model\": \"%s\"}"),
             model);
    expect_error(text, LR_ECONFIG, "router.embedding.model: longer than 120 bytes");
    model[120] = '\0';
    snprintf(text, sizeof text, EMB_CFG("{\"base_url\": \"http://h/v1\", \"model\": \"%s\"}"),
             model);
    cfg = load_ok(text);
    snprintf(id, sizeof id, "openai:%s", model);
    assert_string_equal(lr_config_embedding(cfg)->embedder_id, id);
    lr_config_free(cfg);
    cfg = load_ok(EMB_CFG("{\"base_url\": \"http://h/v1///\", \"model\": \"m\"}"));
    assert_string_equal(lr_config_embedding(cfg)->base_url, "http://h/v1");
    lr_config_free(cfg);
    expect_error(EMB_CFG("{\"base_url\": \"http://h\", \"model\": \"m\", \"api_key\": null}"),
                 LR_ECONFIG, "router.embedding.api_key: keys are not read from the config file");
}

/* A UTF-8 byte order mark before the text is skipped, in a string and in a
 * file. An empty text is refused at line 1, column 1: columns count from 1. */
static void a_byte_order_mark_is_skipped_and_an_empty_text_is_at_column_1(void **state)
{
    static const char json[] = "\xef\xbb\xbf{\"models\": [{\"name\": \"a\"}]}";
    char path[] = "/tmp/lr_cfg_bom_XXXXXX";
    int fd = mkstemp(path);
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    (void)state;
    cfg = load_ok(json);
    assert_int_equal(lr_config_model_count(cfg), 1);
    lr_config_free(cfg);
    cfg = NULL;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, sizeof json - 1), (int)(sizeof json - 1));
    close(fd);
    if (lr_config_load_file(path, &cfg, &err) != 0)
        fail_msg("expected the file to load: %s", err.message);
    assert_int_equal(lr_config_model_count(cfg), 1);
    lr_config_free(cfg);
    unlink(path);
    expect_error("", LR_EPARSE, "configuration: line 1, column 1: ");
}

/* An absolute store path is kept as it is, not put under the config's
 * folder. */
static void an_absolute_store_path_is_kept(void **state)
{
    char path[] = "/tmp/lr_cfg_abs_XXXXXX";
    const char *json = "{\"models\": [{\"name\": \"a\"}], \"router\": {\"store\": \"/srv/h.db\"}}";
    int fd = mkstemp(path);
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (int)strlen(json));
    close(fd);
    assert_int_equal(lr_config_load_file(path, &cfg, &err), 0);
    assert_string_equal(lr_config_router_defaults(cfg)->store_path, "/srv/h.db");
    lr_config_free(cfg);
    unlink(path);
}

/* The folder a relative store is found in: a file in the root has "/" for
 * its folder (its store is "/h.db", not "h.db" under the working folder),
 * a bare name has ".", and the join puts one '/' between folder and name. */
static void a_config_in_the_root_puts_its_store_in_the_root(void **state)
{
    static const struct {
        const char *path, *dir, *joined;
    } cases[] = {
        {"/c.json", "/", "/h.db"},
        {"c.json", ".", "./h.db"},
        {"etc/c.json", "etc", "etc/h.db"},
        {"/etc/llmroute/c.json", "/etc/llmroute", "/etc/llmroute/h.db"},
        {"/etc//c.json", "/etc/", "/etc/h.db"},
        {"//c.json", "/", "/h.db"},
    };
    char *dir, *joined;
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dir = lr__config_dir(cases[i].path);
        assert_non_null(dir);
        assert_string_equal(dir, cases[i].dir);
        joined = lr__path_join(dir, "h.db");
        assert_non_null(joined);
        assert_string_equal(joined, cases[i].joined);
        free(joined);
        free(dir);
    }
    joined = lr__path_join("", "h.db");
    assert_string_equal(joined, "h.db");
    free(joined);
}

/* A config named with a doubled '/' before its name puts one '/' before
 * the store's. */
static void a_doubled_slash_before_the_config_name_is_not_kept(void **state)
{
    (void)state;
    store_is_put_in_the_folder("//");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_models_with_their_fields),
        cmocka_unit_test(loads_router_defaults_and_routes),
        cmocka_unit_test(applies_defaults_when_router_is_absent),
        cmocka_unit_test(warns_about_unknown_keys_and_backends),
        cmocka_unit_test(resolves_store_path_against_the_config_folder),
        cmocka_unit_test(a_blank_store_name_is_refused),
        cmocka_unit_test(rejects_malformed_json_with_line_and_column),
        cmocka_unit_test(rejects_a_missing_file_naming_it),
        cmocka_unit_test(rejects_a_directory_saying_so),
        cmocka_unit_test(rejects_a_truncated_file),
        cmocka_unit_test(rejects_each_invalid_field_naming_it),
        cmocka_unit_test(rejects_control_characters_in_names_and_urls),
        cmocka_unit_test(warns_about_per_request_retry_limits_in_a_model),
        cmocka_unit_test(a_base_url_with_an_unusable_port_or_host_is_refused),
        cmocka_unit_test(a_base_url_with_a_user_or_password_is_refused),
        cmocka_unit_test(a_base_url_scheme_is_taken_in_any_case),
        cmocka_unit_test(a_fallback_among_the_routes_own_models_is_warned_about),
        cmocka_unit_test(a_name_with_a_space_at_an_end_or_an_overlong_route_name_is_refused),
        cmocka_unit_test(rejects_invalid_utf8),
        cmocka_unit_test(loads_literal_and_env_headers),
        cmocka_unit_test(refuses_each_bad_header_naming_it),
        cmocka_unit_test(loads_a_remote_embedder_with_defaults),
        cmocka_unit_test(rejects_each_invalid_embedding_field_naming_it),
        cmocka_unit_test(embedding_input_is_cut_on_a_character_boundary),
        cmocka_unit_test(library_version_is_the_headers),
        cmocka_unit_test(nul_byte_in_the_text_is_named),
        cmocka_unit_test(nul_byte_in_a_file_is_named),
        cmocka_unit_test(a_utf16_or_utf32_text_is_named),
        cmocka_unit_test(a_utf16_or_utf32_text_without_a_mark_is_named),
        cmocka_unit_test(a_utf16_or_utf32_text_of_under_4_bytes_is_named),
        cmocka_unit_test(model_names_that_differ_only_in_case_are_warned_about),
        cmocka_unit_test(a_file_of_exactly_the_size_cap_loads),
        cmocka_unit_test(comma_in_a_model_name_is_refused),
        cmocka_unit_test(a_number_for_an_integer_shows_the_value),
        cmocka_unit_test(long_path_and_odd_names_leave_a_readable_message),
        cmocka_unit_test(a_validation_error_has_its_code_no_line_and_the_files_name),
        cmocka_unit_test(null_arguments_are_invalid),
        cmocka_unit_test(a_member_of_the_wrong_type_is_named_by_its_type),
        cmocka_unit_test(null_for_an_optional_member_is_its_default),
        cmocka_unit_test(configured_values_read_back),
        cmocka_unit_test(invalid_router_and_route_fields_are_named),
        cmocka_unit_test(ranges_take_both_ends_and_refuse_past_them),
        cmocka_unit_test(case_folding_takes_every_ascii_letter_and_nothing_else),
        cmocka_unit_test(a_model_name_over_256_bytes_is_refused),
        cmocka_unit_test(headers_take_32_and_8192_bytes),
        cmocka_unit_test(embedding_model_cap_slashes_and_key),
        cmocka_unit_test(a_byte_order_mark_is_skipped_and_an_empty_text_is_at_column_1),
        cmocka_unit_test(an_absolute_store_path_is_kept),
        cmocka_unit_test(a_config_in_the_root_puts_its_store_in_the_root),
        cmocka_unit_test(a_doubled_slash_before_the_config_name_is_not_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
