/* test_gw_jsonscan.c -- the gateway's top-level JSON scanner and body
 * rewrite: members found by byte range, `model` spliced, extension members
 * removed wherever they sit, every other byte kept, bad input refused; and
 * the start of an object told from bytes no more could make one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jsonscan.h"

static const char *const ext[] = {"models", "route", NULL};

static char *rewrite(const char *body, const char *model_json)
{
    struct js_rewrite rw = {model_json, ext};
    char *out = NULL;
    size_t out_len = 0;
    int rc = js_rewrite_body(body, strlen(body), &rw, &out, &out_len);
    if (rc)
        return NULL;
    assert_int_equal(strlen(out), out_len);
    return out;
}

static void expect_rewrite(const char *body, const char *model_json, const char *want)
{
    char *got = rewrite(body, model_json);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void scan_finds_members_by_byte_range(void **state)
{
    const char *b = " {\"a\": 1, \"b\" : {\"x\": [1, \"}\"]}, \"c\":\"q\\\"\"} ";
    struct js_member m[4];
    size_t n = 0;
    (void)state;
    assert_int_equal(js_scan_object(b, strlen(b), m, 4, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(b + m[1].value_start, "{\"x\": [1, \"}\"]}",
                        m[1].value_end - m[1].value_start);
    assert_memory_equal(b + m[2].value_start, "\"q\\\"\"", m[2].value_end - m[2].value_start);
    assert_true(js_key_equals(b, &m[0], "a"));
    assert_false(js_key_equals(b, &m[0], "b"));
    /* A number's range ends with its last digit, blanks after it aside. */
    b = "{\"n\": 12 , \"t\": true\n}";
    assert_int_equal(js_scan_object(b, strlen(b), m, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].value_end - m[0].value_start, 2);
    assert_memory_equal(b + m[0].value_start, "12", 2);
    assert_int_equal(m[1].value_end - m[1].value_start, 4);
    assert_memory_equal(b + m[1].value_start, "true", 4);
}

static void find_members_takes_any_number_of_members(void **state)
{
    static const char *const names[] = {"usage", "id", "absent", NULL};
    struct js_member f[3];
    size_t len = 0, cap = 64 + 200 * 16;
    char *b = malloc(cap);
    (void)state;
    assert_non_null(b);
    len += (size_t)snprintf(b + len, cap - len, "{\"id\": \"first\"");
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(b + len, cap - len, ", \"m%d\": [%d]", i, i);
    len += (size_t)snprintf(b + len, cap - len, ", \"usage\": {\"a\": 1}, \"i\\u0064\": 2}");
    assert_int_equal(js_find_members(b, len, names, f), 0);
    assert_memory_equal(b + f[0].value_start, "{\"a\": 1}", f[0].value_end - f[0].value_start);
    /* The last of a name that comes twice, as a parser keeps it; escapes decoded. */
    assert_memory_equal(b + f[1].value_start, "2", f[1].value_end - f[1].value_start);
    assert_int_equal(f[2].key_end, 0);
    /* Not an object the scanner reads: nothing found. */
    assert_int_equal(js_find_members(b, len - 1, names, f), -1);
    assert_int_equal(f[0].key_end, 0);
    free(b);
}

static void rewrite_keeps_numbers_and_order_exactly(void **state)
{
    (void)state;
    expect_rewrite("{\"seed\": 9007199254740993, \"model\": \"auto\", \"temperature\": 0.70}",
                   "\"gpt-4o\"",
                   "{\"seed\": 9007199254740993, \"model\": \"gpt-4o\", \"temperature\": 0.70}");
}

static void rewrite_removes_extension_members_anywhere(void **state)
{
    (void)state;
    /* first, middle, last, adjacent, and the only other member */
    expect_rewrite("{\"models\": [\"a\",\"b\"], \"model\": \"x\", \"n\": 1}", "\"y\"",
                   "{\"model\": \"y\", \"n\": 1}");
    expect_rewrite("{\"model\": \"x\", \"route\": {\"strategy\": \"s\"}, \"n\": 1}", "\"y\"",
                   "{\"model\": \"y\", \"n\": 1}");
    expect_rewrite("{\"model\": \"x\",\n \"models\": [], \"route\": {}\n}", "\"y\"",
                   "{\"model\": \"y\"\n}");
    expect_rewrite("{\"route\": {}, \"models\": [], \"model\": \"x\"}", "\"y\"",
                   "{\"model\": \"y\"}");
    expect_rewrite("{\"models\": [\"a\"]}", NULL, "{}");
}

/* The gateway refuses such a body before it rewrites one, but the rewrite
 * alone must still stay within its buffer: every model member takes the
 * (longer) new name. */
static void rewrite_sizes_for_every_model_member(void **state)
{
    (void)state;
    expect_rewrite("{\"model\":\"a\",\"mod\\u0065l\":\"b\",\"model\":\"c\",\"n\":1}",
                   "\"a-model-name-much-longer-than-the-ones-it-replaces\"",
                   "{\"model\":\"a-model-name-much-longer-than-the-ones-it-replaces\","
                   "\"mod\\u0065l\":\"a-model-name-much-longer-than-the-ones-it-replaces\","
                   "\"model\":\"a-model-name-much-longer-than-the-ones-it-replaces\",\"n\":1}");
}

static void rewrite_decodes_escaped_keys(void **state)
{
    (void)state;
    expect_rewrite("{\"mod\\u0065l\": \"x\", \"rout\\u0065\": 1}", "\"y\"",
                   "{\"mod\\u0065l\": \"y\"}");
    /* A key that decodes to a longer name is not the one it starts with. */
    expect_rewrite("{\"model\": \"x\", \"rout\\u0065s\": 1, \"mod\\u0065lx\": 2}", "\"y\"",
                   "{\"model\": \"y\", \"rout\\u0065s\": 1, \"mod\\u0065lx\": 2}");
}

/* Tabs, CRs and LFs are blanks between tokens as spaces are: a body
 * pretty-printed with CRLF line ends and tabs is rewritten, its blanks kept. */
static void rewrite_reads_every_json_blank(void **state)
{
    (void)state;
    expect_rewrite(
        "{\r\n\t\"model\"\t:\r\n\t\"x\",\r\n\t\"models\":\t[\"a\"],\r\n\t\"n\": 1\r\n}\r\n",
        "\"y\"", "{\r\n\t\"model\"\t:\r\n\t\"y\",\r\n\t\"n\": 1\r\n}\r\n");
}

/* Without a new model the body's own stays, and the extension members
 * still go. */
static void rewrite_without_a_model_keeps_the_bodys_own(void **state)
{
    (void)state;
    expect_rewrite("{\"model\": \"x\", \"models\": [\"a\"], \"n\": 1}", NULL,
                   "{\"model\": \"x\", \"n\": 1}");
}

static void rewrite_adds_model_when_the_body_has_none(void **state)
{
    (void)state;
    /* A candidate list alone: the upstream still needs its model's name. */
    expect_rewrite("{\"models\": [\"a\", \"b\"], \"messages\": []}", "\"y\"",
                   "{\"model\":\"y\", \"messages\": []}");
    expect_rewrite("{\n  \"n\": 1,\n  \"models\": [\"a\"]\n}", "\"y\"",
                   "{\n  \"model\":\"y\", \"n\": 1\n}");
    expect_rewrite("{\"models\": [\"a\"], \"route\": {}}", "\"y\"", "{\"model\":\"y\"}");
    expect_rewrite(" { } ", "\"y\"", " {\"model\":\"y\" } ");
    expect_rewrite("{}", NULL, "{}");
}

/* The new member and its ", " lengthen a body that loses nothing: the
 * result, and its NUL, must still fit (a fuzzed body once wrote the NUL one
 * byte past the buffer; AddressSanitizer's build sees it). */
static void rewrite_adds_model_to_a_body_that_loses_nothing(void **state)
{
    (void)state;
    expect_rewrite("{\"n\": 1}", "\"y\"", "{\"model\":\"y\", \"n\": 1}");
    expect_rewrite("{\"s\":\"\\u0000\"}", "\"fuzz-model\"",
                   "{\"model\":\"fuzz-model\", \"s\":\"\\u0000\"}");
}

static void rewrite_leaves_nested_lookalikes_alone(void **state)
{
    (void)state;
    expect_rewrite("{\"messages\": [{\"model\": \"m\", \"route\": 1}], \"model\": \"x\"}",
                   "\"y\"", "{\"messages\": [{\"model\": \"m\", \"route\": 1}], \"model\": \"y\"}");
}

static void rewrite_handles_many_members(void **state)
{
    char body[4096];
    size_t o = 0;
    char *got;
    (void)state;
    o += (size_t)snprintf(body + o, sizeof body - o, "{");
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "\"k%d\": %d, ", i, i);
    snprintf(body + o, sizeof body - o, "\"route\": {}, \"model\": \"x\"}");
    got = rewrite(body, "\"y\"");
    assert_non_null(got);
    assert_non_null(strstr(got, "\"k99\": 99, \"model\": \"y\"}"));
    assert_null(strstr(got, "route"));
    free(got);
}

static void scan_refuses_what_is_not_an_object(void **state)
{
    const char *bad[] = {"", "[]", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":1} x",
                         "{\"a\":\"unterminated}", "{\"a\":[1,2}", "{a:1}", "\"s\"", "{\"a\":]}",
                         "{} x", "{\"a\";1}", "{\"a\" 12}", "{\"a\":1 2}", "{\"a\":\"b\"]",
                         "{\"a\":1 x"};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct js_member m[4];
        size_t n;
        assert_int_equal(js_scan_object(bad[i], strlen(bad[i]), m, 4, &n), -1);
        assert_null(rewrite(bad[i], "\"y\""));
    }
}

static size_t count(const char *text, size_t limit)
{
    return js_count_values(text, strlen(text), limit);
}

static void count_values_counts_each_value_once(void **state)
{
    (void)state;
    assert_int_equal(count("{}", 100), 1);
    assert_int_equal(count("[{},{},[]]", 100), 4);
    /* Member names are strings, and a string is one value whatever it holds. */
    assert_int_equal(
        count("{\"a\": \"x, {[1 2]} \\\" y\", \"b\": [1, -2.5e+3, true, null]}", 100), 9);
    assert_int_equal(count("  123  ", 100), 1);
    assert_int_equal(count("", 100), 0);
}

/* The gateway counts no body shorter than twice its limit: the densest
 * texts reach JS_MAX_VALUES and none passes it. */
static void count_values_never_passes_the_bound_for_a_length(void **state)
{
    static const char *dense[] = {
        "0", "\"\"", "[]", "[0]", "[0,0,0]", "[[],[],[]]", "[[[[]]]]", "{\"\":0}",
        "{\"\":[0,0],\"\":{}}", "[\"\",0,[0],{}]", "  [0 , 0]  ",
    };
    (void)state;
    for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++)
        assert_true(count(dense[i], 100) <= JS_MAX_VALUES(strlen(dense[i])));
    assert_int_equal(count("[0,0,0]", 100), JS_MAX_VALUES(strlen("[0,0,0]")));
    assert_int_equal(count("[[[[]]]]", 100), JS_MAX_VALUES(strlen("[[[[]]]]")));
}

static void count_values_stops_past_the_limit(void **state)
{
    size_t n = 100000, len = 2 + 3 * n;
    char *big = malloc(len + 1);
    (void)state;
    assert_non_null(big);
    big[0] = '[';
    for (size_t i = 0; i < n; i++)
        memcpy(big + 1 + 3 * i, "{},", 3);
    big[len - 2] = ']';
    big[len - 1] = '\0';
    assert_int_equal(js_count_values(big, len - 1, 1000000), n + 1);
    assert_int_equal(js_count_values(big, len - 1, 10), 11);
    free(big);
    /* An unterminated string or an escape at the end stays inside the buffer. */
    assert_int_equal(count("[\"abc", 100), 2);
    assert_int_equal(count("[\"abc\\", 100), 2);
}

static enum js_prefix prefix(const char *text)
{
    return js_object_prefix(text, strlen(text));
}

static void object_prefix_tells_a_start_from_what_no_bytes_could_complete(void **state)
{
    /* Starts of an object: more bytes could complete each, wherever it was
     * cut (inside a name, a string, a number, a literal, an escape, a
     * surrogate pair or a UTF-8 sequence). */
    static const char *const open[] = {
        "", "  \n", "{", " {\"a\"", "{\"a\":", "{\"a\": 1", "{\"a\":1,", "{\"a\":\"hel",
        "{\"a\":tr", "{\"a\":fals", "{\"a\":n", "{\"a\":-", "{\"a\":0", "{\"a\":1.", "{\"a\":1.5e",
        "{\"a\":1E+", "{\"a\":\"\\", "{\"a\":\"\\u00", "{\"a\":\"\\ud83d", "{\"a\":\"\\ud83d\\",
        "{\"a\":\"\\ud83d\\udc", "{\"a\":\"\xc3", "{\"a\":\"\xf0\x9f\x98", "{\"a\":[", "{\"a\":[1,",
        "{\"a\":[{}, {\"b\":[]", "{\"a\":{\"b\":null}", "{\"a\":1,\n\"b\"",
    };
    static const char *const never[] = {
        "hello", "[1,", "[DONE]", "\"s\"", "1", "{\"a\":1} x", "{\"a\":1}}", "{\"a\":\"x\n",
        "{\"a\":\"\x01", "{a", "{\"a\" 1", "{\"a\":1 2", "{\"a\":01", "{\"a\":1.e", "{\"a\":-x",
        "{\"a\":tx", "{\"a\":truex", "{\"a\":1,}", "{\"a\":[1,]", "{\"a\":[1}", "{\"a\":\"\\x",
        "{\"a\":\"\\u12g", "{\"a\":\"\\udc00", "{\"a\":\"\\ud83d\\n", "{\"a\":\"\\ud83d\\u0041",
        "{\"a\":\"\xc0\x80", "{\"a\":\"\xed\xa0\x80", "{\"a\":\"\xf4\x90", "{\"a\":\"\xff", "{,",
    };
    (void)state;
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++)
        if (prefix(open[i]) != JS_OPEN)
            fail_msg("'%s' is the start of an object", open[i]);
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (prefix(never[i]) != JS_NEVER)
            fail_msg("'%s' is no start of an object", never[i]);
    assert_int_equal(prefix("{}"), JS_WHOLE);
    assert_int_equal(prefix(" {\"a\": [1, -2.5e+3, true, null, \"\\ud83d\\ude00\xc3\xa9\"]}\n"),
                     JS_WHOLE);
    /* A NUL is a control character in a string, as jansson has it. */
    assert_int_equal(js_object_prefix("{\"a\":\"\0", 7), JS_NEVER);
}

/* The edges of the grammar, read as jansson reads them: every blank
 * where JSON allows one, every escape, surrogate pairs up to U+10FFFF,
 * UTF-8 sequences whose second byte has a narrower range (after E0, ED,
 * F0, F4), and numbers' signs, points and exponents. */
static void object_prefix_reads_the_edges_of_the_grammar(void **state)
{
    static const char *const whole[] = {
        "{\"a\":1,\"b\":2}",
        "{ \"a\" : 1 , \"b\" :\t[ 1 , 2 ] }",
        "{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}",
        "{\"a\":\"\\ud800\\udc00\\udbff\\udfff\"}",
        "{\"a\":\"\xe0\xa4\xb9\xe0\xb8\x81\xe0\xbf\xbf\"}",         /* U+0939, U+0E01, U+0FFF */
        "{\"a\":\"\xed\x9f\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}", /* U+D7FF, U+10000, U+10FFFF */
        "{\"a\":[0,-0,1e-5,-1.5E+3,2e9,0.25]}",
    };
    static const char *const never[] = {
        "{\"a\":\"\x1f",     "{\"a\":\"\xf5\x80", "{\"a\":\"\xe0\x80\x80", "{\"a\":\"\xf0\x80",
        "{\"a\":\"\xc1\xbf", "{\"a\":1e5e",       "{\"a\":1.5.",           "{\"a\":-01",
        "{\"a\":1,2",        "{\"a\":\"\\a",      "{\"a\":1e+-",           "{\"a\" , 1",
    };
    (void)state;
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        json_t *j = json_loads(whole[i], 0, NULL);
        assert_non_null(j); /* jansson reads it whole */
        json_decref(j);
        if (prefix(whole[i]) != JS_WHOLE)
            fail_msg("'%s' is a whole object", whole[i]);
    }
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (prefix(never[i]) != JS_NEVER)
            fail_msg("'%s' is no start of an object", never[i]);
}

/* jansson's limit on nesting (2048 levels) is the prefix's too. */
static void object_prefix_nests_as_deep_as_jansson_reads(void **state)
{
    size_t n = 5 + 2048; /* {"a": and 2048 arrays: 2049 levels */
    char *deep = malloc(n);
    (void)state;
    assert_non_null(deep);
    memcpy(deep, "{\"a\":", 5);
    memset(deep + 5, '[', n - 5);
    assert_int_equal(js_object_prefix(deep, n - 1), JS_OPEN); /* 2048 levels */
    assert_int_equal(js_object_prefix(deep, n), JS_NEVER);
    free(deep);
}

/* A raw NUL byte is in no JSON text; jansson reads past one that follows a
 * number or a literal, so the gateway finds it first, and names its place
 * by line and column as jansson counts them (lines at LF, columns in
 * characters). */
static void find_nul_finds_a_raw_nul_where_jansson_would_place_it(void **state)
{
    static const char after_number[] = "{\"max_tokens\":5\0}";
    static const char after_literal[] = "[true\0]";
    static const char in_string[] = "{\"\xc3\xa9t\xc3\xa9\":\n  [1, \"a\xe2\x82\xac\0\"]}";
    static const char escaped[] = "{\"a\":\"x\\u0000y\"}";
    int line = 0, column = 0;
    json_error_t je;
    json_t *j;
    (void)state;

    /* jansson takes the first two as JSON; they are not. */
    j = json_loadb(after_number, sizeof after_number - 1, 0, &je);
    assert_non_null(j);
    json_decref(j);
    assert_int_equal(js_find_nul(after_number, sizeof after_number - 1, &line, &column), 1);
    assert_int_equal(line, 1);
    assert_int_equal(column, 16);
    assert_int_equal(js_find_nul(after_literal, sizeof after_literal - 1, &line, &column), 1);
    assert_int_equal(line, 1);
    assert_int_equal(column, 6);

    /* Inside a string jansson refuses it too, on the line it is on. The
     * column counts characters: the euro sign's three bytes are one. */
    assert_null(json_loadb(in_string, sizeof in_string - 1, JSON_ALLOW_NUL, &je));
    assert_int_equal(js_find_nul(in_string, sizeof in_string - 1, &line, &column), 1);
    assert_int_equal(line, je.line);
    assert_int_equal(line, 2);
    assert_int_equal(column, 10);

    /* Written as an escape it is JSON, and no byte of it is NUL. */
    line = column = -1;
    assert_int_equal(js_find_nul(escaped, sizeof escaped - 1, &line, &column), 0);
    assert_int_equal(js_find_nul("", 0, &line, &column), 0);
    assert_int_equal(line, -1);
    assert_int_equal(column, -1);
}

/* A request body is refused before the parse for a leading byte order
 * mark, or a NUL byte anywhere, each named; a mark further on is left to
 * the parse, and a body without either passes. */
static void body_fault_names_a_byte_order_mark_and_a_nul(void **state)
{
    static const char nul[] = "{\"n\":1\0}";
    char msg[400];
    (void)state;

    assert_int_equal(js_body_fault("\xef\xbb\xbf{}", 5, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "begins with a byte order mark"));
    assert_non_null(strstr(msg, "EF BB BF"));
    assert_int_equal(js_body_fault(nul, sizeof nul - 1, msg, sizeof msg), 1);
    assert_string_equal(msg, "malformed JSON in the request body: a NUL byte at line 1, column 7 "
                             JS_NUL_WHY);
    strcpy(msg, "untouched");
    assert_int_equal(js_body_fault(" \xef\xbb\xbf{}", 6, msg, sizeof msg), 0);
    assert_int_equal(js_body_fault("\xef\xbb", 2, msg, sizeof msg), 0);
    assert_int_equal(js_body_fault("{\"a\": 1}", 8, msg, sizeof msg), 0);
    assert_int_equal(js_body_fault("", 0, msg, sizeof msg), 0);
    assert_string_equal(msg, "untouched");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(body_fault_names_a_byte_order_mark_and_a_nul),
        cmocka_unit_test(scan_finds_members_by_byte_range),
        cmocka_unit_test(find_members_takes_any_number_of_members),
        cmocka_unit_test(rewrite_keeps_numbers_and_order_exactly),
        cmocka_unit_test(rewrite_removes_extension_members_anywhere),
        cmocka_unit_test(rewrite_decodes_escaped_keys),
        cmocka_unit_test(rewrite_reads_every_json_blank),
        cmocka_unit_test(rewrite_without_a_model_keeps_the_bodys_own),
        cmocka_unit_test(rewrite_sizes_for_every_model_member),
        cmocka_unit_test(rewrite_adds_model_when_the_body_has_none),
        cmocka_unit_test(rewrite_adds_model_to_a_body_that_loses_nothing),
        cmocka_unit_test(rewrite_leaves_nested_lookalikes_alone),
        cmocka_unit_test(rewrite_handles_many_members),
        cmocka_unit_test(scan_refuses_what_is_not_an_object),
        cmocka_unit_test(find_nul_finds_a_raw_nul_where_jansson_would_place_it),
        cmocka_unit_test(count_values_counts_each_value_once),
        cmocka_unit_test(count_values_never_passes_the_bound_for_a_length),
        cmocka_unit_test(count_values_stops_past_the_limit),
        cmocka_unit_test(object_prefix_tells_a_start_from_what_no_bytes_could_complete),
        cmocka_unit_test(object_prefix_reads_the_edges_of_the_grammar),
        cmocka_unit_test(object_prefix_nests_as_deep_as_jansson_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
