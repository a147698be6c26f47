/* test_router.c -- the router and the sequential strategy: single-model
 * passthrough, the round-robin cycle, changing candidate lists, unknown and
 * repeated names, the ranges of a request's and a router's settings,
 * fairness under concurrency, batch refusal, and reading and setting the
 * sequential cursor. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmroute.h"

static const char cfg_json[] =
    "{\"models\": [{\"name\": \"A\", \"cost_per_input_token\": 1e-6, \"cost_per_output_token\": 2e-6},"
    " {\"name\": \"B\", \"cost_per_input_token\": 1e-7, \"cost_per_output_token\": 2e-7},"
    " {\"name\": \"C\", \"cost_per_input_token\": 0, \"cost_per_output_token\": 0},"
    " {\"name\": \"D\"}]}";

struct fixture {
    struct lr_config *cfg;
    struct lr_router *router;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct lr_error err = {0};
    assert_int_equal(lr_config_load_string(cfg_json, strlen(cfg_json), &f->cfg, &err), 0);
    assert_int_equal(lr_router_new(f->cfg, NULL, &f->router, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    lr_router_free(f->router);
    lr_config_free(f->cfg);
    free(f);
    return 0;
}

static int route_names(struct lr_router *r, const char *const *names, size_t n,
                       struct lr_error *err)
{
    struct lr_request req;
    struct lr_decision d = {0};
    int rc;
    lr_request_init(&req);
    req.models = names;
    req.n_models = n;
    req.query = "what is the capital of France?";
    rc = lr_router_route(r, &req, &d, err);
    return rc ? rc : d.index;
}

static void sequential_cycles_over_selected_models(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"A", "B", "C"};
    const int want[] = {0, 1, 2, 0, 1, 2, 0};
    assert_string_equal(lr_router_strategy(f->router), "sequential");
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(route_names(f->router, names, 3, NULL), want[i]);
}

static void sequential_follows_the_candidate_order_given(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"C", "A"};
    assert_int_equal(route_names(f->router, names, 2, NULL), 2);
    assert_int_equal(route_names(f->router, names, 2, NULL), 0);
    assert_int_equal(route_names(f->router, names, 2, NULL), 2);
}

static void sequential_survives_a_shorter_candidate_list(void **state)
{
    struct fixture *f = *state;
    const char *three[] = {"A", "B", "C"}, *two[] = {"A", "B"};
    /* Cursor at 2 after two routes; a two-model list takes it modulo 2. */
    assert_int_equal(route_names(f->router, three, 3, NULL), 0);
    assert_int_equal(route_names(f->router, three, 3, NULL), 1);
    assert_int_equal(route_names(f->router, two, 2, NULL), 0);  /* cursor 2 % 2 */
    assert_int_equal(route_names(f->router, two, 2, NULL), 1);  /* cursor 3 % 2 */
    assert_int_equal(route_names(f->router, three, 3, NULL), 1); /* cursor 4 % 3 */
}

static void single_candidate_is_passed_through(void **state)
{
    struct fixture *f = *state;
    const char *one[] = {"B"}, *three[] = {"A", "B", "C"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(route_names(f->router, one, 1, NULL), 1);
    /* A single-candidate request does not move the cursor. */
    assert_int_equal(route_names(f->router, three, 3, NULL), 0);
}

static void empty_candidate_list_means_every_model(void **state)
{
    struct fixture *f = *state;
    struct lr_request req;
    struct lr_candidate rank[8];
    struct lr_decision d = {0};
    lr_request_init(&req);
    d.ranking = rank;
    d.ranking_cap = 8;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(lr_router_route(f->router, &req, &d, NULL), 0);
        assert_int_equal(d.index, i % 4);
        assert_int_equal(d.n_ranked, 4);
    }
}

static void ranking_is_the_cycle_from_the_choice(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"A", "B", "C"};
    struct lr_request req;
    struct lr_candidate rank[2];
    struct lr_decision d = {0};
    lr_request_init(&req);
    req.models = names;
    req.n_models = 3;
    d.ranking = rank;
    d.ranking_cap = 2; /* a short buffer gets the head of the ranking */
    assert_int_equal(lr_router_route(f->router, &req, &d, NULL), 0);
    assert_int_equal(lr_router_route(f->router, &req, &d, NULL), 0);
    assert_int_equal(d.index, 1);
    assert_int_equal(d.n_ranked, 2);
    assert_int_equal(rank[0].index, 1);
    assert_int_equal(rank[1].index, 2);
    assert_true(isnan(d.predicted_quality));
    assert_true(isnan(d.estimated_cost));
}

static void unknown_model_is_an_error_naming_it(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"A", "gpt-5-turbo-ultra", "C"};
    struct lr_error err = {0};
    assert_int_equal(route_names(f->router, names, 3, &err), LR_ENOMODEL);
    assert_non_null(strstr(err.message, "'gpt-5-turbo-ultra'"));
    /* A failed request does not move the cursor. */
    assert_int_equal(route_names(f->router, names, 1, NULL), 0);
    assert_int_equal(route_names(f->router, (const char *[]){"A", "B"}, 2, NULL), 0);
}

static void repeated_model_is_an_error_naming_it(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"A", "B", "A"};
    struct lr_error err = {0};
    assert_int_equal(route_names(f->router, names, 3, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "'A' is listed twice"));
}

static void model_indices_are_checked(void **state)
{
    struct fixture *f = *state;
    const int idx[] = {3, 9};
    struct lr_request req;
    struct lr_decision d = {0};
    struct lr_error err = {0};
    lr_request_init(&req);
    req.model_indices = idx;
    req.n_models = 2;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_ENOMODEL);
    assert_non_null(strstr(err.message, "model index 9"));
    req.n_models = 1;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
    assert_int_equal(d.index, 3);
    /* The configured count itself is one past the last index, as is -1
     * before the first. */
    static const int edge[][1] = {{4}, {-1}};
    for (size_t i = 0; i < 2; i++) {
        char want[96];
        req.model_indices = edge[i];
        lr_decision_init(&d);
        assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_ENOMODEL);
        snprintf(want, sizeof want, "model index %d is out of range (4 models configured)",
                 edge[i][0]);
        assert_string_equal(err.message, want);
        assert_int_equal(d.index, -1);
    }
}

static void requirement_out_of_range_is_refused(void **state)
{
    struct fixture *f = *state;
    struct lr_request req;
    struct lr_decision d = {0};
    struct lr_error err = {0};
    lr_request_init(&req);
    req.performance_requirement = 1.5;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "performance requirement"));
    /* Just over 1, with the digits that show it. */
    req.performance_requirement = 1.0000001;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_string_equal(err.message,
                        "performance requirement: expected a number from 0 to 1, got 1.0000001");
    req.performance_requirement = -0.25;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_string_equal(err.message,
                        "performance requirement: expected a number from 0 to 1, got -0.25");
    /* Both ends of the range are requirements a request may give. */
    req.performance_requirement = 0;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
    req.performance_requirement = 1;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
}

static void input_tokens_are_estimated_from_text(void **state)
{
    struct fixture *f = *state;
    struct lr_request req;
    struct lr_decision d = {0};
    (void)state;
    lr_request_init(&req);
    req.query = "0123456789abcdef"; /* 16 bytes */
    assert_int_equal(lr_router_route(f->router, &req, &d, NULL), 0);
    assert_int_equal(d.input_tokens, 4);
    req.input_tokens = 77;
    assert_int_equal(lr_router_route(f->router, &req, &d, NULL), 0);
    assert_int_equal(d.input_tokens, 77);
    /* Only a negative count asks for the estimate: 0 is a count given. */
    req.input_tokens = 0;
    assert_int_equal(lr_router_route(f->router, &req, &d, NULL), 0);
    assert_int_equal(d.input_tokens, 0);
    /* No text to estimate from: no input tokens. */
    req.query = NULL;
    req.input_tokens = -1;
    assert_int_equal(lr_router_route(f->router, &req, &d, NULL), 0);
    assert_int_equal(d.input_tokens, 0);
    assert_int_equal(lr_estimate_tokens("", 0), 0);
    assert_int_equal(lr_estimate_tokens("a", 1), 1);
}

static void input_tokens_over_the_cap_are_refused(void **state)
{
    struct fixture *f = *state;
    struct lr_request reqs[2];
    struct lr_decision d[2];
    struct lr_error err = {0};
    memset(d, 0, sizeof d);
    lr_request_init(&reqs[0]);
    lr_request_init(&reqs[1]);
    reqs[0].input_tokens = 1000000000; /* the cap itself is taken */
    assert_int_equal(lr_router_route(f->router, &reqs[0], &d[0], &err), 0);
    assert_int_equal(d[0].input_tokens, 1000000000);
    reqs[1].input_tokens = 1000000001;
    assert_int_equal(lr_router_route(f->router, &reqs[1], &d[1], &err), LR_EINVAL);
    assert_string_equal(err.message, "input_tokens: 1000000001 is over the cap of 1000000000");
    /* In a batch the message names the query. */
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, NULL, d, NULL, &err), LR_EINVAL);
    assert_string_equal(err.message,
                        "query 1: input_tokens: 1000000001 is over the cap of 1000000000");
}

static void unknown_strategy_is_refused_naming_it(void **state)
{
    struct fixture *f = *state;
    struct lr_router_options o;
    struct lr_router *r = NULL;
    struct lr_error err = {0};
    lr_router_options_init(&o);
    o.strategy = "coin-flip";
    assert_int_equal(lr_router_new(f->cfg, &o, &r, &err), LR_ESTRATEGY);
    assert_null(r);
    assert_non_null(strstr(err.message, "'coin-flip'"));
}

/* A misspelt predictor was taken without a word by the sequential
 * strategy, which predicts nothing: the same config with the smart
 * strategy was then refused. Every strategy refuses it, naming it. */
static void unknown_predictor_is_refused_for_every_strategy(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"sequential", "smart"};
    struct lr_store *store = NULL;
    struct lr_error err = {0};
    assert_int_equal(lr_store_open(":memory:", NULL, &store, &err), 0);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct lr_router_options o;
        struct lr_router *r = NULL;
        lr_router_options_init(&o);
        o.strategy = names[i];
        o.store = store;
        o.predictor = "aois";
        memset(&err, 0, sizeof err);
        assert_int_equal(lr_router_new(f->cfg, &o, &r, &err), LR_ESTRATEGY);
        assert_null(r);
        assert_string_equal(err.message,
                            "unknown predictor 'aois' (expected \"default\" or \"aios\")");
        o.predictor = "aios";
        assert_int_equal(lr_router_new(f->cfg, &o, &r, &err), 0);
        lr_router_free(r);
    }
    lr_store_free(store);
}

static void sequential_refuses_a_batch_assignment(void **state)
{
    struct fixture *f = *state;
    struct lr_request reqs[2];
    struct lr_decision out[2];
    struct lr_batch_options bo;
    struct lr_error err = {0};
    memset(out, 0, sizeof out);
    lr_request_init(&reqs[0]);
    lr_request_init(&reqs[1]);
    lr_batch_options_init(&bo);
    bo.mode = LR_BATCH_QUALITY;
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, &bo, out, NULL, &err),
                     LR_ESTRATEGY);
    assert_non_null(strstr(err.message, "smart"));
    /* A mode that is none of the three is the caller's mistake, whatever
     * the strategy. */
    bo.mode = (enum lr_batch_mode)7;
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, &bo, out, NULL, &err),
                     LR_EINVAL);
    assert_string_equal(err.message, "batch mode 7 is not a known mode");
    bo.mode = LR_BATCH_PER_QUERY;
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, &bo, out, NULL, &err), 0);
    assert_int_equal(out[0].index, 0);
    assert_int_equal(out[1].index, 1);
    assert_int_equal(lr_router_route_batch(f->router, reqs, 0, &bo, out, NULL, &err), LR_EEMPTY);
}

/* ==== The sequential cursor ==== */

static uint64_t cursor_of(struct lr_router *r)
{
    uint64_t c = 0;
    struct lr_error err = {0};
    assert_int_equal(lr_router_sequential_cursor(r, &c, &err), 0);
    return c;
}

static void sequential_cursor_is_the_next_ticket(void **state)
{
    struct fixture *f = *state;
    const char *three[] = {"A", "B", "C"}, *one[] = {"B"};
    struct lr_error err = {0};
    assert_true(cursor_of(f->router) == 0);
    assert_int_equal(route_names(f->router, three, 3, NULL), 0);
    assert_int_equal(route_names(f->router, three, 3, NULL), 1);
    assert_true(cursor_of(f->router) == 2);
    /* A single candidate takes no ticket. */
    assert_int_equal(route_names(f->router, one, 1, NULL), 1);
    assert_true(cursor_of(f->router) == 2);
    /* The value set is the next ticket: 7 % 3 is C's turn. */
    assert_int_equal(lr_router_set_sequential_cursor(f->router, 7, &err), 0);
    assert_true(cursor_of(f->router) == 7);
    assert_int_equal(route_names(f->router, three, 3, NULL), 1);
    assert_true(cursor_of(f->router) == 8);
    assert_int_equal(route_names(f->router, three, 3, NULL), 2);
    assert_int_equal(lr_router_set_sequential_cursor(f->router, 0, NULL), 0);
    assert_int_equal(route_names(f->router, three, 3, NULL), 0);
}

/* A second router given the first one's cursor draws the tickets the first
 * would have drawn, whatever the lists that follow. */
static void sequential_cursor_carries_the_round_robin_to_another_router(void **state)
{
    struct fixture *f = *state;
    const char *three[] = {"A", "B", "C"}, *two[] = {"D", "B"};
    struct lr_router *other = NULL;
    struct lr_request reqs[3];
    struct lr_decision a[3], b[3];
    struct lr_error err = {0};
    assert_int_equal(lr_router_new(f->cfg, NULL, &other, &err), 0);
    for (int i = 0; i < 5; i++)
        route_names(f->router, three, 3, NULL);
    assert_int_equal(lr_router_set_sequential_cursor(other, cursor_of(f->router), &err), 0);
    for (int i = 0; i < 7; i++) {
        const char *const *names = i % 3 ? three : two;
        size_t n = i % 3 ? 3 : 2;
        assert_int_equal(route_names(other, names, n, NULL),
                         route_names(f->router, names, n, NULL));
    }
    /* The per-query batch takes one ticket per request of two or more
     * candidates, as single routes do. */
    for (int i = 0; i < 3; i++)
        lr_request_init(&reqs[i]);
    reqs[1].models = two;
    reqs[1].n_models = 1; /* "D" alone: no ticket */
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    assert_int_equal(lr_router_route_batch(f->router, reqs, 3, NULL, a, NULL, &err), 0);
    assert_true(cursor_of(f->router) == 5 + 7 + 2);
    assert_int_equal(lr_router_set_sequential_cursor(other, 5 + 7, &err), 0);
    assert_int_equal(lr_router_route_batch(other, reqs, 3, NULL, b, NULL, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(a[i].index, b[i].index);
    assert_true(cursor_of(other) == cursor_of(f->router));
    lr_router_free(other);
}

static void sequential_cursor_wraps_at_uint64_max(void **state)
{
    struct fixture *f = *state;
    const char *two[] = {"A", "B"}, *three[] = {"A", "B", "C"};
    assert_int_equal(lr_router_set_sequential_cursor(f->router, UINT64_MAX, NULL), 0);
    assert_true(cursor_of(f->router) == UINT64_MAX);
    assert_int_equal(route_names(f->router, two, 2, NULL), 1); /* UINT64_MAX is odd */
    assert_true(cursor_of(f->router) == 0);
    assert_int_equal(route_names(f->router, two, 2, NULL), 0);
    assert_true(cursor_of(f->router) == 1);
    /* 2^64 - 1 is a multiple of 3, and the wrap restarts the count: A twice. */
    assert_int_equal(lr_router_set_sequential_cursor(f->router, UINT64_MAX, NULL), 0);
    assert_int_equal(route_names(f->router, three, 3, NULL), 0);
    assert_int_equal(route_names(f->router, three, 3, NULL), 0);
    assert_int_equal(route_names(f->router, three, 3, NULL), 1);
}

static void sequential_cursor_is_refused_on_a_smart_router(void **state)
{
    struct fixture *f = *state;
    struct lr_store *store = NULL;
    struct lr_router_options o;
    struct lr_router *smart = NULL;
    struct lr_error err = {0};
    uint64_t c = 12345;
    assert_int_equal(lr_store_open(":memory:", NULL, &store, &err), 0);
    lr_router_options_init(&o);
    o.strategy = "smart";
    o.store = store;
    assert_int_equal(lr_router_new(f->cfg, &o, &smart, &err), 0);
    assert_int_equal(lr_router_sequential_cursor(smart, &c, &err), LR_ESTRATEGY);
    assert_int_equal(err.code, LR_ESTRATEGY);
    assert_string_equal(err.message, "the router's strategy is smart, which keeps no "
                                     "round-robin cursor (only a sequential router has one)");
    assert_true(c == 12345); /* not written */
    memset(&err, 0, sizeof err);
    assert_int_equal(lr_router_set_sequential_cursor(smart, 3, &err), LR_ESTRATEGY);
    assert_non_null(strstr(err.message, "the router's strategy is smart"));
    assert_int_equal(lr_router_sequential_cursor(smart, &c, NULL), LR_ESTRATEGY);
    lr_router_free(smart);
    lr_store_free(store);
}

static void sequential_cursor_refuses_null_arguments(void **state)
{
    struct fixture *f = *state;
    struct lr_error err = {0};
    uint64_t c = 99;
    assert_int_equal(lr_router_sequential_cursor(NULL, &c, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "lr_router_sequential_cursor"));
    assert_true(c == 99);
    assert_int_equal(lr_router_sequential_cursor(f->router, NULL, &err), LR_EINVAL);
    assert_int_equal(lr_router_sequential_cursor(NULL, NULL, NULL), LR_EINVAL);
    memset(&err, 0, sizeof err);
    assert_int_equal(lr_router_set_sequential_cursor(NULL, 5, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "lr_router_set_sequential_cursor"));
    assert_int_equal(lr_router_set_sequential_cursor(NULL, 5, NULL), LR_EINVAL);
    /* The router's cursor is untouched by all of these. */
    assert_true(cursor_of(f->router) == 0);
}

/* The per-query mode has no constraint: a budget or alpha given to it is
 * refused, naming it, as the other modes refuse the one they do not take. */
static void per_query_batch_refuses_a_budget_or_alpha(void **state)
{
    struct fixture *f = *state;
    struct lr_request reqs[2];
    struct lr_decision out[2];
    struct lr_batch_options bo;
    struct lr_error err = {0};
    memset(out, 0, sizeof out);
    lr_request_init(&reqs[0]);
    lr_request_init(&reqs[1]);
    lr_batch_options_init(&bo);
    bo.budget = 1e-9;
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, &bo, out, NULL, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "budget: the per-query mode takes none"));
    lr_batch_options_init(&bo);
    bo.alpha = 0.5;
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, &bo, out, NULL, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "alpha: the per-query mode takes none"));
    lr_batch_options_init(&bo);
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, &bo, out, NULL, &err), 0);
}

/* A batch with one bad request fails whole and changes nothing: no
 * decision is written to out, and the round-robin cursor is where it was
 * (the failed batch used to take a turn for each request before the bad
 * one, and fill their decisions). */
static void failed_batch_takes_no_turn_and_writes_no_decision(void **state)
{
    struct fixture *f = *state;
    struct lr_request one, reqs[3];
    struct lr_decision d, out[3];
    struct lr_candidate rank[3][4];
    struct lr_batch_options bo;
    struct lr_batch_report rep;
    struct lr_error err = {0};
    const char *bad[] = {"nope"};
    lr_request_init(&one);
    for (int k = 0; k < 2; k++) {
        lr_decision_init(&d);
        assert_int_equal(lr_router_route(f->router, &one, &d, &err), 0);
        assert_int_equal(d.index, k);
    }
    for (int i = 0; i < 3; i++) {
        lr_request_init(&reqs[i]);
        lr_decision_init(&out[i]);
        out[i].ranking = rank[i];
        out[i].ranking_cap = 4;
    }
    reqs[2].models = bad;
    reqs[2].n_models = 1;
    lr_batch_options_init(&bo);
    assert_int_equal(lr_router_route_batch(f->router, reqs, 3, &bo, out, &rep, &err),
                     LR_ENOMODEL);
    assert_string_equal(err.message, "query 2: unknown model 'nope'");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out[i].index, -1);
        assert_int_equal(out[i].n_ranked, 0);
        assert_ptr_equal(out[i].ranking, rank[i]);
        assert_int_equal(out[i].ranking_cap, 4);
    }
    lr_decision_init(&d);
    assert_int_equal(lr_router_route(f->router, &one, &d, &err), 0);
    assert_int_equal(d.index, 2);

    /* The same batch mended routes every request, with its ranking. */
    reqs[2].models = NULL;
    reqs[2].n_models = 0;
    assert_int_equal(lr_router_route_batch(f->router, reqs, 3, &bo, out, &rep, &err), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out[i].index, (3 + i) % 4);
        assert_int_equal(out[i].n_ranked, 4);
        assert_int_equal(rank[i][0].index, out[i].index);
        assert_ptr_equal(out[i].ranking, rank[i]);
    }
    assert_int_equal(rep.feasible, 1);
    /* The sequential strategy predicts nothing: the report has no figures
     * (NaN), not a quality or a cost of 0. */
    assert_true(isnan(rep.mean_quality));
    assert_true(isnan(rep.total_cost));
}

/* On any error but LR_EINFEASIBLE the report says "no result" the same way,
 * whatever failed: it was left unwritten when the strategy could not solve
 * the mode, and said feasible 0 with the figures of the requests routed
 * before the bad one in the per-query mode. */
static void failed_batch_report_holds_no_result(void **state)
{
    struct fixture *f = *state;
    struct lr_request reqs[2];
    struct lr_decision out[2];
    struct lr_batch_options bo;
    struct lr_batch_report rep;
    struct lr_error err = {0};
    const char *bad[] = {"nope"};
    for (int i = 0; i < 2; i++) {
        lr_request_init(&reqs[i]);
        lr_decision_init(&out[i]);
    }
    for (int k = 0; k < 3; k++) {
        int want;
        lr_batch_options_init(&bo);
        reqs[1].models = NULL;
        reqs[1].n_models = 0;
        if (k == 0) {
            bo.mode = LR_BATCH_QUALITY; /* the sequential strategy solves no batch */
            want = LR_ESTRATEGY;
        } else if (k == 1) {
            reqs[1].models = bad;
            reqs[1].n_models = 1;
            want = LR_ENOMODEL;
        } else {
            bo.alpha = 0.5; /* refused by the per-query mode */
            want = LR_EINVAL;
        }
        memset(&rep, 0x5a, sizeof rep);
        assert_int_equal(lr_router_route_batch(f->router, reqs, 2, &bo, out, &rep, &err), want);
        assert_int_equal(rep.feasible, 0);
        assert_true(isnan(rep.mean_quality));
        assert_true(isnan(rep.total_cost));
        assert_int_equal(rep.iterations, 0);
        assert_string_equal(rep.message, "");
    }
    memset(&rep, 0x5a, sizeof rep);
    assert_int_equal(lr_router_route_batch(NULL, reqs, 2, NULL, out, &rep, &err), LR_EINVAL);
    assert_int_equal(rep.feasible, 0);
    assert_true(isnan(rep.mean_quality));
}

/* Query text that is not UTF-8 is refused with the words a store uses for
 * it, by a route and by a batch (naming the request); it was routed. */
static void query_text_that_is_not_utf8_is_refused(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *text;
        const char *msg;
    } bad[] = {{"abc\xff\xfe", "query: not valid UTF-8 at byte 3"},
               {"\xc0\x80", "query: not valid UTF-8 at byte 0"},
               {"caf\xc3", "query: not valid UTF-8 at byte 3"},
               {"\xed\xa0\x80", "query: not valid UTF-8 at byte 0"}};
    struct lr_request reqs[2];
    struct lr_decision d, out[2];
    struct lr_batch_options bo;
    struct lr_error err = {0};
    char want[96];
    lr_batch_options_init(&bo);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        lr_request_init(&reqs[0]);
        lr_request_init(&reqs[1]);
        lr_decision_init(&d);
        reqs[0].query = "caf\xc3\xa9 \xe2\x82\xac";
        reqs[1].query = bad[k].text;
        assert_int_equal(lr_router_route(f->router, &reqs[1], &d, &err), LR_EINVAL);
        assert_string_equal(err.message, bad[k].msg);
        assert_int_equal(d.index, -1);
        lr_decision_init(&out[0]);
        lr_decision_init(&out[1]);
        assert_int_equal(lr_router_route_batch(f->router, reqs, 2, &bo, out, NULL, &err),
                         LR_EINVAL);
        snprintf(want, sizeof want, "query 1: %s", bad[k].msg);
        assert_string_equal(err.message, want);
        assert_int_equal(out[0].index, -1);
    }
    /* Valid text of any script is routed as before. */
    lr_request_init(&reqs[0]);
    reqs[0].query = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    assert_int_equal(lr_router_route(f->router, &reqs[0], &d, &err), 0);
}

/* A request with both lists is refused (the names were used and the
 * indices ignored without a word); an unknown name is quoted escaped and
 * cut short, as the store quotes names. */
static void both_lists_and_odd_unknown_names_are_refused_clearly(void **state)
{
    struct fixture *f = *state;
    struct lr_request req;
    struct lr_decision d;
    struct lr_error err = {0};
    const char *names[] = {"A"};
    const int idx[] = {1};
    char long_name[1000];
    const char *odd[] = {"x\ny\xff"};
    lr_request_init(&req);
    lr_decision_init(&d);
    req.models = names;
    req.model_indices = idx;
    req.n_models = 1;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_string_equal(err.message, "request: both models and model_indices are given: give "
                                     "one candidate list");
    assert_int_equal(d.index, -1);
    req.model_indices = NULL;
    req.models = odd;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_ENOMODEL);
    assert_string_equal(err.message, "unknown model 'x\\x0ay\\xff'");
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    odd[0] = long_name;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_ENOMODEL);
    assert_true(strlen(err.message) < 300);
    assert_non_null(strstr(err.message, "nnn...'"));
}

static void n_models_over_the_configured_count_names_the_entry_at_fault(void **state)
{
    struct fixture *f = *state;
    const int idx[] = {0, 1, 2, 3, 0};
    const int idx_out[] = {0, 1, 2, 3, 7};
    const char *names[] = {"A", "B", "C", "D", "A"};
    const char *unknown[] = {"A", "B", "C", "D", "Z"};
    struct lr_request req, reqs[2];
    struct lr_decision d = {0}, out[2];
    struct lr_batch_options bo;
    struct lr_error err = {0};
    /* A list longer than the configuration holds an unknown or a repeated
     * model among its first 4 + 1 entries; the message names it, as for a
     * list of any length, where it said the count "must repeat a model"
     * whatever was wrong. Only those entries are read: a count whose
     * product with an element size wraps sizes nothing. */
    lr_request_init(&req);
    req.model_indices = idx;
    req.n_models = SIZE_MAX / 4 + 2;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "model 'A' is listed twice among the candidates"));
    req.n_models = 5;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "model 'A' is listed twice"));
    req.model_indices = idx_out;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_ENOMODEL);
    assert_non_null(strstr(err.message, "model index 7 is out of range"));
    req.model_indices = NULL;
    req.models = unknown;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_ENOMODEL);
    assert_non_null(strstr(err.message, "unknown model 'Z'"));
    req.models = names;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "model 'A' is listed twice"));
    /* In a batch, in either path, the message names the query. */
    memset(out, 0, sizeof out);
    lr_request_init(&reqs[0]);
    reqs[1] = req;
    reqs[1].n_models = SIZE_MAX / 8 + 1;
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, NULL, out, NULL, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "query 1: model 'A' is listed twice"));
    /* The assignment path resolves each query too (a smart router; the
     * empty store is never reached). */
    struct lr_store *store = NULL;
    struct lr_router *smart = NULL;
    struct lr_router_options o;
    assert_int_equal(lr_store_open(":memory:", NULL, &store, &err), 0);
    lr_router_options_init(&o);
    o.strategy = "smart";
    o.store = store;
    assert_int_equal(lr_router_new(f->cfg, &o, &smart, &err), 0);
    lr_batch_options_init(&bo);
    bo.mode = LR_BATCH_QUALITY;
    assert_int_equal(lr_router_route_batch(smart, reqs, 2, &bo, out, NULL, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "query 1: model 'A' is listed twice"));
    lr_router_free(smart);
    lr_store_free(store);
}

static void explicitly_empty_candidate_list_is_refused(void **state)
{
    struct fixture *f = *state;
    const char *names[1] = {NULL};
    const int idx[1] = {0};
    struct lr_request req, reqs[2];
    struct lr_decision d = {0}, out[2];
    struct lr_error err = {0};
    lr_request_init(&req);
    req.models = names;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EEMPTY);
    assert_non_null(strstr(err.message, "candidate list is empty (models is given"));
    lr_request_init(&req);
    req.model_indices = idx;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EEMPTY);
    assert_non_null(strstr(err.message, "candidate list is empty (model_indices is given"));
    memset(out, 0, sizeof out);
    lr_request_init(&reqs[0]);
    reqs[1] = req;
    assert_int_equal(lr_router_route_batch(f->router, reqs, 2, NULL, out, NULL, &err), LR_EEMPTY);
    assert_non_null(strstr(err.message, "query 1: "));
    /* No list at all is every model. */
    lr_request_init(&req);
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
}

static void token_estimate_of_huge_text_does_not_wrap(void **state)
{
    (void)state;
    /* The text is not read past its first byte: only its length counts. */
    assert_true(lr_estimate_tokens("x", SIZE_MAX) >= 1);
    assert_true(lr_estimate_tokens("x", SIZE_MAX - 2) >= 1);
    assert_int_equal(lr_estimate_tokens("x", 5), 2);
    assert_int_equal(lr_estimate_tokens("x", 8), 2);
}

struct namer {
    const struct lr_config *cfg;
    char message[512];
    int rc;
};

static void *make_unknown(void *arg)
{
    struct namer *n = arg;
    struct lr_router_options o;
    struct lr_router *r = NULL;
    struct lr_error err = {0};
    lr_router_options_init(&o);
    o.strategy = "coin-flip";
    n->rc = lr_router_new(n->cfg, &o, &r, &err);
    memcpy(n->message, err.message, sizeof n->message);
    return NULL;
}

/* Threads that refuse an unknown strategy at once all name the known ones
 * in full (the list is built once, under pthread_once; ThreadSanitizer saw
 * the earlier lazy build race). */
static void unknown_strategy_messages_are_whole_across_threads(void **state)
{
    struct fixture *f = *state;
    pthread_t t[4];
    struct namer n[4];
    for (int i = 0; i < 4; i++) {
        n[i].cfg = f->cfg;
        assert_int_equal(pthread_create(&t[i], NULL, make_unknown, &n[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(n[i].rc, LR_ESTRATEGY);
        assert_non_null(strstr(n[i].message, "(known: sequential, smart)"));
    }
}

/* A decision from lr_decision_init asks for no ranking and says nothing
 * until routed; the stack garbage an uninitialised one would hold is what
 * the router would write through. */
static void decision_init_gives_a_decision_without_a_ranking(void **state)
{
    struct fixture *f = *state;
    struct lr_request req;
    struct lr_decision d;
    struct lr_candidate rank[4];
    struct lr_error err = {0};
    memset(&d, 0xAB, sizeof d);
    lr_decision_init(&d);
    assert_null(d.ranking);
    assert_int_equal(d.ranking_cap, 0);
    assert_int_equal(d.n_ranked, 0);
    assert_int_equal(d.index, -1);
    assert_true(isnan(d.predicted_quality) && isnan(d.estimated_cost));
    lr_request_init(&req);
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
    assert_int_equal(d.n_ranked, 0);
    assert_true(d.index >= 0 && d.index < 4);
    lr_decision_init(&d);
    d.ranking = rank;
    d.ranking_cap = 4;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
    assert_int_equal(d.n_ranked, 4);
    lr_decision_init(NULL);

    /* The options' inits give what a zeroed struct gives. */
    struct lr_store_options so, zs;
    struct lr_import_options io, zi;
    memset(&so, 0xAB, sizeof so);
    memset(&io, 0xAB, sizeof io);
    memset(&zs, 0, sizeof zs);
    memset(&zi, 0, sizeof zi);
    lr_store_options_init(&so);
    lr_import_options_init(&io);
    assert_memory_equal(&so, &zs, sizeof so);
    assert_memory_equal(&io, &zi, sizeof io);
    lr_store_options_init(NULL);
    lr_import_options_init(NULL);
}

/* A router's own requirement and n_similar are taken at both ends of their
 * documented ranges and refused just outside them, naming the value, for
 * the sequential strategy too (which reads neither). */
static void router_options_are_taken_at_the_ends_of_their_ranges(void **state)
{
    struct fixture *f = *state;
    static const double good_req[] = {0, 1};
    static const struct {
        double value;
        const char *msg;
    } bad_req[] = {{-0.5, "performance requirement: expected a number from 0 to 1, got -0.5"},
                   {1.5, "performance requirement: expected a number from 0 to 1, got 1.5"}};
    static const int good_k[] = {1, LR_MAX_N_SIMILAR};
    static const int bad_k[] = {-1, LR_MAX_N_SIMILAR + 1};
    struct lr_router_options o;
    struct lr_router *r = NULL;
    struct lr_error err = {0};
    char want[96];
    for (size_t i = 0; i < 2; i++) {
        lr_router_options_init(&o);
        o.performance_requirement = good_req[i];
        assert_int_equal(lr_router_new(f->cfg, &o, &r, &err), 0);
        lr_router_free(r);
        o.performance_requirement = bad_req[i].value;
        assert_int_equal(lr_router_new(f->cfg, &o, &r, &err), LR_EINVAL);
        assert_null(r);
        assert_string_equal(err.message, bad_req[i].msg);
    }
    for (size_t i = 0; i < 2; i++) {
        lr_router_options_init(&o);
        o.n_similar = good_k[i];
        assert_int_equal(lr_router_new(f->cfg, &o, &r, &err), 0);
        lr_router_free(r);
        o.n_similar = bad_k[i];
        assert_int_equal(lr_router_new(f->cfg, &o, &r, &err), LR_EINVAL);
        assert_null(r);
        snprintf(want, sizeof want, "n_similar: expected 1 to %d, got %d", LR_MAX_N_SIMILAR,
                 bad_k[i]);
        assert_string_equal(err.message, want);
    }
}

/* A count with no list, and a list with a NULL name, are the caller's
 * slips: each is refused with words naming it, never read as "every
 * model" or followed through a NULL pointer. */
static void candidate_list_slips_are_refused_naming_them(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"A", NULL, "C"};
    struct lr_request req;
    struct lr_decision d;
    struct lr_error err = {0};
    lr_request_init(&req);
    lr_decision_init(&d);
    req.n_models = 2;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_string_equal(err.message, "request: n_models is 2 but no models are given");
    assert_int_equal(d.index, -1);
    req.models = names;
    req.n_models = 3;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), LR_EINVAL);
    assert_string_equal(err.message, "models[1]: missing model name");
    assert_int_equal(d.index, -1);
    /* Neither took a turn of the round robin. */
    assert_true(cursor_of(f->router) == 0);
}

/* n_ranked says how many candidates were written to the ranking buffer:
 * none when a decision routed before with a buffer is routed again
 * without one, or with a buffer of no room. */
static void a_decision_without_a_ranking_buffer_has_none_ranked(void **state)
{
    struct fixture *f = *state;
    struct lr_request req;
    struct lr_decision d;
    struct lr_candidate rank[4];
    struct lr_error err = {0};
    lr_request_init(&req);
    lr_decision_init(&d);
    d.ranking = rank;
    d.ranking_cap = 4;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
    assert_int_equal(d.n_ranked, 4);
    d.ranking = NULL;
    d.ranking_cap = 0;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
    assert_int_equal(d.index, 1);
    assert_int_equal(d.n_ranked, 0);
    d.ranking = rank;
    d.n_ranked = 4;
    assert_int_equal(lr_router_route(f->router, &req, &d, &err), 0);
    assert_int_equal(d.index, 2);
    assert_int_equal(d.n_ranked, 0);
}

/* In a per-query batch, a ranking buffer larger than its request's
 * candidate list gets the whole ranking (the cycle from the choice), and
 * the caller's buffer and its capacity are handed back as given, beside
 * requests that ask for no ranking. */
static void per_query_batch_fills_rankings_shorter_than_their_buffers(void **state)
{
    struct fixture *f = *state;
    enum { RANKED = 4, N = 24, CAP = 8 };
    const char *two[] = {"C", "A"};
    const int two_idx[] = {2, 0};
    struct lr_request reqs[N];
    struct lr_decision out[N];
    struct lr_candidate rank[RANKED][CAP];
    struct lr_error err = {0};
    for (int i = 0; i < N; i++) {
        lr_request_init(&reqs[i]);
        lr_decision_init(&out[i]);
        if (i < RANKED) {
            reqs[i].models = two;
            reqs[i].n_models = 2;
            out[i].ranking = rank[i];
            out[i].ranking_cap = CAP;
        }
    }
    assert_int_equal(lr_router_route_batch(f->router, reqs, N, NULL, out, NULL, &err), 0);
    /* The cursor starts at 0 and each request takes the next ticket. */
    for (int i = 0; i < N; i++) {
        if (i < RANKED) {
            assert_int_equal(out[i].index, two_idx[i % 2]);
            assert_ptr_equal(out[i].ranking, rank[i]);
            assert_int_equal(out[i].ranking_cap, CAP);
            assert_int_equal(out[i].n_ranked, 2);
            assert_int_equal(rank[i][0].index, two_idx[i % 2]);
            assert_int_equal(rank[i][1].index, two_idx[(i + 1) % 2]);
        } else {
            assert_int_equal(out[i].index, i % 4);
            assert_null(out[i].ranking);
            assert_int_equal(out[i].ranking_cap, 0);
            assert_int_equal(out[i].n_ranked, 0);
        }
    }
    assert_true(cursor_of(f->router) == N);
}

/* A candidate list longer than the router keeps on its stack, with an
 * unknown name at its end, fails the assignment path's batch naming the
 * query and the name, as in the per-query path. (Under AddressSanitizer
 * the suite also checks that the failed query's buffers are freed.) */
static void long_candidate_list_with_an_unknown_name_fails_a_batch_naming_it(void **state)
{
    enum { N_MODELS = 70 };
    char cfg_text[N_MODELS * 24 + 16], *p = cfg_text;
    char names_buf[N_MODELS][8];
    const char *names[N_MODELS];
    struct lr_config *cfg = NULL;
    struct lr_store *store = NULL;
    struct lr_router *router = NULL;
    struct lr_router_options o;
    struct lr_request req;
    struct lr_decision out;
    struct lr_batch_options bo;
    struct lr_error err = {0};
    (void)state;
    p += snprintf(p, sizeof cfg_text, "{\"models\": [");
    for (int i = 0; i < N_MODELS; i++) {
        snprintf(names_buf[i], sizeof names_buf[i], "m%d", i);
        p += snprintf(p, sizeof cfg_text - (size_t)(p - cfg_text), "%s{\"name\": \"%s\"}",
                      i ? ", " : "", names_buf[i]);
        names[i] = names_buf[i];
    }
    snprintf(p, sizeof cfg_text - (size_t)(p - cfg_text), "]}");
    assert_int_equal(lr_config_load_string(cfg_text, strlen(cfg_text), &cfg, &err), 0);
    assert_int_equal(lr_store_open(":memory:", NULL, &store, &err), 0);
    names[N_MODELS - 1] = "zz";
    lr_request_init(&req);
    req.query = "a question";
    req.models = names;
    req.n_models = N_MODELS;
    for (int smart = 0; smart < 2; smart++) {
        lr_router_options_init(&o);
        o.strategy = smart ? "smart" : "sequential";
        o.store = store;
        assert_int_equal(lr_router_new(cfg, &o, &router, &err), 0);
        lr_batch_options_init(&bo);
        if (smart)
            bo.mode = LR_BATCH_QUALITY;
        lr_decision_init(&out);
        assert_int_equal(lr_router_route_batch(router, &req, 1, &bo, &out, NULL, &err),
                         LR_ENOMODEL);
        assert_string_equal(err.message, "query 0: unknown model 'zz'");
        assert_int_equal(out.index, -1);
        lr_router_free(router);
    }
    lr_store_free(store);
    lr_config_free(cfg);
}

/* ---- concurrency ---- */

#define THREADS 4
#define TOTAL 100000

struct worker {
    struct lr_router *router;
    long counts[3];
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    const char *names[] = {"A", "B", "C"};
    for (int i = 0; i < TOTAL / THREADS; i++) {
        int k = route_names(w->router, names, 3, NULL);
        if (k < 0 || k > 2)
            w->failures++;
        else
            w->counts[k]++;
    }
    return NULL;
}

static void sequential_is_fair_under_concurrency(void **state)
{
    struct fixture *f = *state;
    pthread_t t[THREADS];
    struct worker w[THREADS];
    long total[3] = {0, 0, 0}, lo, hi;
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].router = f->router;
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
        for (int k = 0; k < 3; k++)
            total[k] += w[i].counts[k];
    }
    assert_int_equal(total[0] + total[1] + total[2], TOTAL);
    lo = hi = total[0];
    for (int k = 1; k < 3; k++) {
        lo = total[k] < lo ? total[k] : lo;
        hi = total[k] > hi ? total[k] : hi;
    }
    assert_true(hi - lo <= 1);
}

/* Reads beside routing see the cursor between tickets, so never going
 * back; a set beside routing lands between two tickets, so the tickets
 * drawn after it continue from the value set and none is lost. */
static void sequential_cursor_reads_and_sets_are_whole_beside_routing(void **state)
{
    struct fixture *f = *state;
    const uint64_t set_to = (uint64_t)1 << 40;
    pthread_t t[THREADS];
    struct worker w[THREADS];
    uint64_t last = 0, now, before_set = 0;
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].router = f->router;
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 2000; i++) {
        now = cursor_of(f->router);
        assert_true(now >= last && now <= TOTAL);
        last = now;
    }
    before_set = cursor_of(f->router);
    assert_int_equal(lr_router_set_sequential_cursor(f->router, set_to, NULL), 0);
    last = set_to;
    for (int i = 0; i < 2000; i++) {
        now = cursor_of(f->router);
        assert_true(now >= last && now <= set_to + (TOTAL - before_set));
        last = now;
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    /* Every ticket drawn after the set counts from set_to. */
    now = cursor_of(f->router);
    assert_true(now >= set_to && now <= set_to + (TOTAL - before_set));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sequential_cycles_over_selected_models, setup, teardown),
        cmocka_unit_test_setup_teardown(sequential_follows_the_candidate_order_given, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sequential_survives_a_shorter_candidate_list, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(single_candidate_is_passed_through, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_candidate_list_means_every_model, setup, teardown),
        cmocka_unit_test_setup_teardown(ranking_is_the_cycle_from_the_choice, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_model_is_an_error_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(repeated_model_is_an_error_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(model_indices_are_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(requirement_out_of_range_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(input_tokens_are_estimated_from_text, setup, teardown),
        cmocka_unit_test_setup_teardown(input_tokens_over_the_cap_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_strategy_is_refused_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_predictor_is_refused_for_every_strategy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sequential_refuses_a_batch_assignment, setup, teardown),
        cmocka_unit_test_setup_teardown(per_query_batch_refuses_a_budget_or_alpha, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sequential_is_fair_under_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(n_models_over_the_configured_count_names_the_entry_at_fault,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(explicitly_empty_candidate_list_is_refused, setup,
                                        teardown),
        cmocka_unit_test(token_estimate_of_huge_text_does_not_wrap),
        cmocka_unit_test_setup_teardown(failed_batch_takes_no_turn_and_writes_no_decision, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(failed_batch_report_holds_no_result, setup, teardown),
        cmocka_unit_test_setup_teardown(query_text_that_is_not_utf8_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(both_lists_and_odd_unknown_names_are_refused_clearly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(decision_init_gives_a_decision_without_a_ranking, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unknown_strategy_messages_are_whole_across_threads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sequential_cursor_is_the_next_ticket, setup, teardown),
        cmocka_unit_test_setup_teardown(sequential_cursor_carries_the_round_robin_to_another_router,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(sequential_cursor_wraps_at_uint64_max, setup, teardown),
        cmocka_unit_test_setup_teardown(sequential_cursor_is_refused_on_a_smart_router, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sequential_cursor_refuses_null_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(sequential_cursor_reads_and_sets_are_whole_beside_routing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(router_options_are_taken_at_the_ends_of_their_ranges, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(candidate_list_slips_are_refused_naming_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_decision_without_a_ranking_buffer_has_none_ranked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(per_query_batch_fills_rankings_shorter_than_their_buffers,
                                        setup, teardown),
        cmocka_unit_test(long_candidate_list_with_an_unknown_name_fails_a_batch_naming_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
