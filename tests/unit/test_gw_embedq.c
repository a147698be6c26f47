/* test_gw_embedq.c -- the gateway's reading of its remote embedder's
 * answer (embedq.c's embed_parse): the vector of data[0].embedding, each
 * element a number a float holds, or a message naming what is wrong.
 *
 * embedq.c is included so that its static parser can be called directly,
 * without an event loop or a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../../src/gateway/embedq.c"

static char url[] = "http://127.0.0.1:1/v1/embeddings";

/* Parse answer as embed_parse sees it; returns its result, *e filled. */
static int parse(const char *answer, struct gw_embed *e, struct gw_conf *conf)
{
    memset(conf, 0, sizeof *conf);
    conf->embed_url = url;
    memset(e, 0, sizeof *e);
    e->conf = conf;
    e->resp = strdup(answer);
    assert_non_null(e->resp);
    e->len = strlen(answer);
    return embed_parse(e);
}

static void done_with(struct gw_embed *e)
{
    free(e->vec);
    free(e->resp);
}

static void reads_the_first_vector(void **state)
{
    struct gw_conf conf;
    struct gw_embed e;
    (void)state;
    assert_int_equal(parse("{\"data\":[{\"index\":0,\"embedding\":[0.5,-2,1e-3]}]}", &e, &conf),
                     0);
    assert_int_equal(e.dim, 3);
    assert_true(e.vec[0] == 0.5f && e.vec[1] == -2.0f);
    done_with(&e);
}

/* A number past a float's range would become an infinity in the query's
 * vector, which the library then refused as the client's fault (a 400): it
 * is the embedding server's, refused here, as the CLI's reader refuses it
 * (a fuzzed answer of {"data":[{"embedding":[1e300]}]} was taken). */
static void refuses_numbers_a_float_cannot_hold(void **state)
{
    const char *bad[] = {"{\"data\":[{\"embedding\":[1e300]}]}",
                         "{\"data\":[{\"embedding\":[0.5,-1e39]}]}",
                         "{\"data\":[{\"embedding\":[3.5e38]}]}"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gw_conf conf;
        struct gw_embed e;
        assert_int_equal(parse(bad[i], &e, &conf), -1);
        assert_null(e.vec);
        assert_non_null(strstr(e.why, "not a finite number"));
        done_with(&e);
    }
}

static void refuses_what_is_not_a_vector(void **state)
{
    const char *bad[] = {"", "{", "[]", "{\"data\":[]}", "{\"data\":[{\"embedding\":[]}]}",
                         "{\"data\":[{\"embedding\":[\"x\"]}]}",
                         "{\"data\":[{\"embedding\":[1,null]}]}"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gw_conf conf;
        struct gw_embed e;
        assert_int_equal(parse(bad[i], &e, &conf), -1);
        assert_null(e.vec);
        assert_int_equal(e.dim, 0);
        done_with(&e);
    }
}

/* What the client is told names router.embedding, never the embedder's
 * URL (the operator's business, as a model's upstream address is); the log
 * line's detail names the URL. */
static void the_clients_message_holds_no_address(void **state)
{
    const char *bad[] = {"{", "{\"data\":[]}", "{\"data\":[{\"embedding\":[0,0]}]}",
                         "{\"data\":[{\"embedding\":[\"x\"]}]}"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gw_conf conf;
        struct gw_embed e;
        assert_int_equal(parse(bad[i], &e, &conf), -1);
        assert_null(strstr(e.why, "127.0.0.1"));
        assert_non_null(strstr(e.why, "(router.embedding)"));
        assert_non_null(strstr(e.detail, url));
        /* The same reason after the name in both. */
        assert_string_equal(strchr(e.why, ')') + 1, e.detail + strlen("the embedding server ") +
                                                        strlen(url));
        done_with(&e);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_the_first_vector),
        cmocka_unit_test(refuses_numbers_a_float_cannot_hold),
        cmocka_unit_test(refuses_what_is_not_a_vector),
        cmocka_unit_test(the_clients_message_holds_no_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
