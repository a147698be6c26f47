/* test_gw_metrics.c -- the series of /metrics (metrics.c) for what the
 * integration tests cannot bring about at will: a store refresh that ran
 * out of memory, or could not start for want of it, is counted
 * result="out_of_memory", not "error"; and a cancelled embedder fetch
 * appears as class="cancelled" once there is one, outside the fetch time
 * histogram; and a label value is escaped whole however long, so model
 * names of 256 bytes that escape to twice that stay two series. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmroute.h"
#include "metrics.h"

/* The rendered text, which the caller frees. */
static char *render(const struct metrics *m)
{
    size_t len = 0;
    char *text = metrics_render(m, 0.0, &len);
    assert_non_null(text);
    return text;
}

static void refresh_out_of_memory_is_its_own_result(void **state)
{
    struct metrics *m = metrics_new();
    char *text;
    (void)state;
    assert_non_null(m);
    metrics_count_store_refresh(m, 0, LR_ENOMEM, 0, 0.0); /* the worker ran out */
    metrics_count_store_refresh(m, 1, LR_ENOMEM, 0, 0.0); /* a rebuild did */
    metrics_count_store_refresh(m, 0, LR_ENOMEM, 0, 0.0); /* one could not start */
    metrics_count_store_refresh(m, 0, LR_EIO, 0, 0.0);
    text = render(m);
    assert_non_null(strstr(
        text, "llmroute_store_refreshes_total{call=\"refresh\",result=\"out_of_memory\"} 2\n"));
    assert_non_null(strstr(
        text, "llmroute_store_refreshes_total{call=\"rebuild\",result=\"out_of_memory\"} 1\n"));
    assert_non_null(
        strstr(text, "llmroute_store_refreshes_total{call=\"refresh\",result=\"error\"} 1\n"));
    assert_non_null(
        strstr(text, "llmroute_store_refreshes_total{call=\"rebuild\",result=\"error\"} 0\n"));
    free(text);
    metrics_free(m);
}

static void cancelled_fetches_are_a_class_of_their_own(void **state)
{
    struct metrics *m = metrics_new();
    char *text;
    (void)state;
    assert_non_null(m);
    text = render(m);
    assert_null(strstr(text, "class=\"cancelled\""));
    free(text);
    metrics_count_embed(m, RS_OK, 0.01);
    metrics_count_embed_cancelled(m);
    metrics_count_embed_cancelled(m);
    text = render(m);
    assert_non_null(strstr(text, "llmroute_embedder_fetches_total{class=\"cancelled\"} 2\n"));
    assert_non_null(strstr(text, "llmroute_embedder_fetches_total{class=\"ok\"} 1\n"));
    assert_non_null(strstr(text, "llmroute_embedder_fetch_seconds_count 1\n"));
    free(text);
    metrics_free(m);
}

/* The longest model names a configuration takes (256 bytes), all quotes
 * but their last byte: escaped, 511 bytes and the last. */
static void long_label_values_are_escaped_whole(void **state)
{
    struct metrics *m = metrics_new();
    char name[257], want[600];
    char *text;
    size_t o = 0;
    (void)state;
    assert_non_null(m);
    memset(name, '"', 255);
    name[256] = '\0';
    o = (size_t)snprintf(want, sizeof want, "llmroute_in_flight{model=\"");
    for (int i = 0; i < 255; i++) {
        want[o++] = '\\';
        want[o++] = '"';
    }
    for (char last = 'a'; last <= 'b'; last++) {
        name[255] = last;
        assert_non_null(metrics_model(m, name));
    }
    text = render(m);
    for (char last = 'a'; last <= 'b'; last++) {
        snprintf(want + o, sizeof want - o, "%c\"} 0\n", last);
        assert_non_null(strstr(text, want));
    }
    free(text);
    metrics_free(m);
}

/* A model's entry carries its max_concurrency count and its breaker: every
 * configured name gets one, however many names reloads have brought (a
 * cap of 4096 gave NULL, which switched both off). */
static void every_model_name_gets_an_entry(void **state)
{
    struct metrics *m = metrics_new();
    char name[32];
    (void)state;
    assert_non_null(m);
    for (int i = 0; i < 6000; i++) {
        snprintf(name, sizeof name, "model-%d", i);
        struct model_stats *s = metrics_model(m, name);
        assert_non_null(s);
        assert_string_equal(s->name, name);
    }
    struct model_stats *again = metrics_model(m, "model-17");
    assert_non_null(again);
    again->in_flight = 3;
    assert_int_equal(metrics_model(m, "model-17")->in_flight, 3);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refresh_out_of_memory_is_its_own_result),
        cmocka_unit_test(cancelled_fetches_are_a_class_of_their_own),
        cmocka_unit_test(long_label_values_are_escaped_whole),
        cmocka_unit_test(every_model_name_gets_an_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
