/* test_cli_eval.c -- the decision times `llmroute eval` reports (p50 and
 * p99 per query, a batch's time per query), from times the test chooses.
 *
 * eval reads the time with clock_gettime() around each lr_router_route()
 * call and around one lr_router_route_batch() call. Here cmd_eval.c is
 * compiled into the test with those three names standing for the test's
 * own: a clock that moves only when the test moves it, and routing calls
 * that do the real routing and then move that clock by a chosen amount.
 * So the n-th decision of every per-query row takes n microseconds
 * (1 .. N_TEST of them) and a batch takes BATCH_US per query, and the
 * figures eval prints can be worked out by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "llmroute.h"

/* Declared here with their own names, before cmd_eval.c's uses are renamed. */
static int test_clock(clockid_t id, struct timespec *ts);
static int test_route(struct lr_router *router, const struct lr_request *req,
                      struct lr_decision *out, struct lr_error *err);
static int test_route_batch(struct lr_router *router, const struct lr_request *reqs, size_t n,
                            const struct lr_batch_options *opts, struct lr_decision *out,
                            struct lr_batch_report *report, struct lr_error *err);

#define clock_gettime test_clock
#define lr_router_route test_route
#define lr_router_route_batch test_route_batch
#include "../../src/cli/cmd_eval.c"
#undef clock_gettime
#undef lr_router_route
#undef lr_router_route_batch

enum {
    N_TEST = 200, /* records eval scores */
    N_TRAIN = 60, /* records in the store */
    BATCH_US = 37 /* a batch's time per query */
};

static long long clock_ns;   /* the test's clock */
static long route_calls;     /* lr_router_route calls so far */
static long batch_calls;     /* lr_router_route_batch calls so far */
static size_t batch_queries; /* queries of the last batch */

static int test_clock(clockid_t id, struct timespec *ts)
{
    (void)id;
    ts->tv_sec = (time_t)(clock_ns / 1000000000);
    ts->tv_nsec = (long)(clock_ns % 1000000000);
    return 0;
}

/* The k-th call of a row (k from 0) takes k % N_TEST + 1 microseconds. */
static int test_route(struct lr_router *router, const struct lr_request *req,
                      struct lr_decision *out, struct lr_error *err)
{
    int rc = lr_router_route(router, req, out, err);
    clock_ns += (route_calls % N_TEST + 1) * 1000;
    route_calls++;
    return rc;
}

static int test_route_batch(struct lr_router *router, const struct lr_request *reqs, size_t n,
                            const struct lr_batch_options *opts, struct lr_decision *out,
                            struct lr_batch_report *report, struct lr_error *err)
{
    int rc = lr_router_route_batch(router, reqs, n, opts, out, report, err);
    clock_ns += (long long)n * BATCH_US * 1000;
    batch_calls++;
    batch_queries = n;
    return rc;
}

static char tmpdir[256];

static void path_in(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

/* Two models, one dear and always right, one cheap and right on the even
 * records; each record's text its own. */
static void write_records(const char *name, int n, int first)
{
    char p[512];
    FILE *f;
    path_in(p, sizeof p, name);
    f = fopen(p, "w");
    assert_non_null(f);
    for (int i = first; i < first + n; i++)
        fprintf(f,
                "{\"query\": \"question number %d about topic %d\", \"input_token_length\": 10,"
                " \"outputs\": [{\"model_name\": \"dear\", \"correctness\": 1,"
                " \"output_token_length\": 20}, {\"model_name\": \"cheap\", \"correctness\": %d,"
                " \"output_token_length\": 20}]}\n",
                i, i % 7, i % 2 == 0);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **st)
{
    char p[512], store[512];
    FILE *f;
    struct lr_store *s = NULL;
    struct lr_import_report rep;
    struct lr_error err = {0};
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lr_test_cli_eval_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    write_records("train.jsonl", N_TRAIN, 0);
    write_records("test.jsonl", N_TEST, 1000);
    path_in(p, sizeof p, "cfg.json");
    f = fopen(p, "w");
    if (!f)
        return -1;
    fputs("{\"models\": [{\"name\": \"dear\", \"cost_per_input_token\": 1e-5,"
          " \"cost_per_output_token\": 3e-5}, {\"name\": \"cheap\", \"cost_per_input_token\": 1e-7,"
          " \"cost_per_output_token\": 2e-7}], \"router\": {\"strategy\": \"smart\"}}\n",
          f);
    if (fclose(f))
        return -1;
    path_in(store, sizeof store, "h.db");
    path_in(p, sizeof p, "train.jsonl");
    memset(&rep, 0, sizeof rep);
    if (lr_store_open(store, NULL, &s, &err) ||
        lr_store_import_file(s, p, NULL, &rep, &err)) {
        fprintf(stderr, "setup: %s\n", err.message);
        lr_store_free(s);
        return -1;
    }
    lr_store_free(s);
    return 0;
}

static int teardown(void **st)
{
    char cmd[512];
    (void)st;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs eval with the extra arguments, its standard output read as JSON. */
static json_t *run_eval(const char *extra1, const char *extra2)
{
    char cfg[512], store[512], data[512], out[512];
    char *argv[16];
    int argc = 0, fd, saved, rc;
    json_error_t jerr;
    json_t *doc;
    path_in(cfg, sizeof cfg, "cfg.json");
    path_in(store, sizeof store, "h.db");
    path_in(data, sizeof data, "test.jsonl");
    path_in(out, sizeof out, "out.json");
    argv[argc++] = "eval";
    argv[argc++] = "--config";
    argv[argc++] = cfg;
    argv[argc++] = "--store";
    argv[argc++] = store;
    argv[argc++] = "--data";
    argv[argc++] = data;
    argv[argc++] = "--format";
    argv[argc++] = "json";
    if (extra1)
        argv[argc++] = (char *)extra1;
    if (extra2)
        argv[argc++] = (char *)extra2;
    argv[argc] = NULL;

    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_int_equal(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
    close(fd);
    rc = cmd_eval(argc, argv);
    fflush(stdout);
    assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
    close(saved);
    assert_int_equal(rc, 0);
    doc = json_load_file(out, 0, &jerr);
    if (!doc)
        fail_msg("eval's output is not JSON: %s", jerr.text);
    return doc;
}

static int is_null_field(json_t *row, const char *key)
{
    json_t *v = json_object_get(row, key);
    return v && json_is_null(v);
}

static double num_field(json_t *row, const char *key)
{
    json_t *v = json_object_get(row, key);
    if (!json_is_number(v))
        fail_msg("%s is not a number", key);
    return json_number_value(v);
}

/* Per-query rows took 1, 2, .. 200 us for their decisions. The nearest-rank
 * p50 of 200 values is the ceil(0.5 * 200) = 100th smallest, 100 us; the
 * p99 the ceil(0.99 * 200) = 198th, 198 us. A batch of 200 took 200 x 37 us
 * as one call: 37 us a query, and no p99. Rows no router decided have no
 * times. */
static void test_decision_times_of_each_kind_of_row(void **st)
{
    json_t *doc, *results, *row;
    size_t i;
    int per_query = 0, batch = 0, none = 0;
    (void)st;
    route_calls = batch_calls = 0;
    doc = run_eval("--alpha", "0.8");
    assert_int_equal(json_integer_value(json_object_get(doc, "queries")), N_TEST);
    results = json_object_get(doc, "results");
    assert_true(json_array_size(results) > 0);
    json_array_foreach(results, i, row) {
        const char *strategy = json_string_value(json_object_get(row, "strategy"));
        json_t *timing = json_object_get(row, "decision_timing");
        assert_non_null(strategy);
        if (json_is_null(timing)) {
            assert_true(is_null_field(row, "decision_us_p50"));
            assert_true(is_null_field(row, "decision_us_p99"));
            none++;
        } else if (strcmp(json_string_value(timing), "per_query") == 0) {
            if (fabs(num_field(row, "decision_us_p50") - 100.0) > 1e-6 ||
                fabs(num_field(row, "decision_us_p99") - 198.0) > 1e-6)
                fail_msg("%s: p50 %g, p99 %g; want 100 and 198", strategy,
                         num_field(row, "decision_us_p50"), num_field(row, "decision_us_p99"));
            per_query++;
        } else {
            assert_string_equal(json_string_value(timing), "batch_mean");
            if (fabs(num_field(row, "decision_us_p50") - BATCH_US) > 1e-6)
                fail_msg("%s: p50 %g; want %d", strategy, num_field(row, "decision_us_p50"),
                         BATCH_US);
            assert_true(is_null_field(row, "decision_us_p99"));
            batch++;
        }
    }
    /* Every per-query row made one call a record, every batch row one call. */
    assert_true(per_query >= 2); /* sequential and smart per query at least */
    assert_true(batch >= 1);
    assert_true(none >= 2); /* the two single models */
    assert_int_equal(route_calls, (long)per_query * N_TEST);
    assert_int_equal(batch_calls, batch);
    assert_int_equal(batch_queries, N_TEST);
    json_decref(doc);
}

static double pct(const double *v, size_t n, double p)
{
    double copy[1000];
    assert_true(n <= 1000);
    memcpy(copy, v, n * sizeof *v);
    return percentile(copy, n, p);
}

/* The nearest-rank rule on its documented examples, out of order. */
static void test_nearest_rank_percentile(void **st)
{
    double four[] = {40, 10, 30, 20}, many[945], one[] = {7};
    (void)st;
    assert_true(isnan(percentile(NULL, 0, 0.5)));
    assert_true(pct(one, 1, 0.5) == 7 && pct(one, 1, 0.99) == 7);
    assert_true(pct(four, 4, 0.5) == 20);  /* the 2nd of 4 */
    assert_true(pct(four, 4, 0.75) == 30); /* the 3rd */
    assert_true(pct(four, 4, 0.76) == 40); /* ceil(3.04) = the 4th */
    assert_true(pct(four, 4, 0.99) == 40);
    assert_true(pct(four, 4, 1.0) == 40);
    for (size_t i = 0; i < 945; i++)
        many[i] = (double)((i * 367) % 945 + 1); /* 1 .. 945, shuffled */
    assert_true(pct(many, 945, 0.99) == 936); /* ceil(935.55) */
    assert_true(pct(many, 945, 0.5) == 473);  /* ceil(472.5) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decision_times_of_each_kind_of_row),
        cmocka_unit_test(test_nearest_rank_percentile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
