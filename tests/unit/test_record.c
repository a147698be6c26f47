/* test_record.c -- one record of the AIOS data format, checked by record.c.
 * The dataset loader (llmroute eval) and the store's import (llmroute
 * import, the Python binding) once checked records each on their own rules,
 * so a file could be imported and then refused by eval, or the reverse. Here
 * every kind of bad record goes through both, and both must refuse it with
 * the same message naming the same field; the edge cases that are valid
 * must be read the same by both. Files go in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "llmroute.h"
#include "record.h"

static char tmpdir[256];
static char path[512];

static int setup(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lr_test_record_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st)
{
    char cmd[512];
    (void)st;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A JSONL file of the given record then a good one, so that a refusal is
 * one bad record among records that still load. */
#define GOOD                                                                                   \
    "{\"query\": \"fine\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 1,"          \
    " \"output_token_length\": 2}]}"

static const char *write_jsonl(const char *record)
{
    FILE *f;
    snprintf(path, sizeof(path), "%s/data.jsonl", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n%s\n", record, GOOD);
    fclose(f);
    return path;
}

/* The first bad record's message from each path, "record 0 (line 1): ...". */
static void both_refuse(const char *record, const char *want)
{
    struct lr_dataset *ds = NULL;
    struct lr_store *s = NULL;
    struct lr_import_report drep, srep;
    struct lr_error err;
    const char *p = write_jsonl(record);
    char expect[512];

    snprintf(expect, sizeof(expect), "record 0 (line 1): %s", want);
    if (lr_dataset_load(p, NULL, &ds, &drep, &err) != 0)
        fail_msg("eval's loader on %.80s: %s", record, err.message);
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    if (lr_store_import_file(s, p, NULL, &srep, &err) != 0)
        fail_msg("import on %.80s: %s", record, err.message);
    if (drep.bad != 1 || strcmp(drep.first_bad, expect) != 0)
        fail_msg("eval's loader on %.80s: bad %zu, '%s', expected '%s'", record, drep.bad,
                 drep.first_bad, expect);
    if (srep.bad != 1 || strcmp(srep.first_bad, expect) != 0)
        fail_msg("import on %.80s: bad %zu, '%s', expected '%s'", record, srep.bad,
                 srep.first_bad, expect);
    assert_int_equal(lr_dataset_count(ds), 1);
    assert_int_equal(lr_store_count(s), 1);
    lr_dataset_free(ds);
    lr_store_free(s);
}

#define OUT(m, c, o)                                                                           \
    "{\"model_name\": " m ", \"correctness\": " c ", \"output_token_length\": " o "}"

/* A record with a label in field key (its value a %s). */
#define LABELLED(key)                                                                          \
    "{\"query\": \"q\", \"" key "\": \"%s\", \"outputs\": [" OUT("\"a\"", "1", "1") "]}"

/* task and eval_name are capped at 64 KiB, as a record's other strings
 * are; they had no cap. Both loaders refuse a longer one, naming the
 * field. */
static void loader_and_import_refuse_a_task_label_over_its_cap(void **st)
{
    static char label[65537 + 1], record[65537 + 256];
    (void)st;
    memset(label, 't', 65537);
    label[65537] = '\0';
    snprintf(record, sizeof record, LABELLED("task"), label);
    both_refuse(record, "task: 65537 bytes is over the cap of 65536");
    snprintf(record, sizeof record, LABELLED("eval_name"), label);
    both_refuse(record, "eval_name: 65537 bytes is over the cap of 65536");
}

static void loader_and_import_refuse_each_bad_field_alike(void **st)
{
    static const struct {
        const char *record, *want;
    } cases[] = {
        {"{\"outputs\": [" OUT("\"a\"", "1", "1") "]}", "query: expected a non-empty string"},
        {"{\"query\": 1, \"outputs\": []}", "query: expected a non-empty string"},
        {"{\"query\": \"\", \"outputs\": []}", "query: expected a non-empty string"},
        {"{\"query\": \"q\", \"input_token_length\": 2.5, \"outputs\": []}",
         "input_token_length: expected a non-negative integer"},
        {"{\"query\": \"q\", \"input_token_length\": -3, \"outputs\": []}",
         "input_token_length: expected a non-negative integer"},
        {"{\"query\": \"q\", \"input_token_length\": \"ten\", \"outputs\": []}",
         "input_token_length: expected a non-negative integer"},
        {"{\"query\": \"q\", \"input_token_length\": 2e9, \"outputs\": []}",
         "input_token_length: 2000000000 is over the cap of 1000000000"},
        {"{\"query\": \"q\", \"input_token_length\": 2000000000, \"outputs\": []}",
         "input_token_length: 2000000000 is over the cap of 1000000000"},
        /* One over the cap reads as one over it, not as "1e+09". */
        {"{\"query\": \"q\", \"input_token_length\": 1000000001, \"outputs\": []}",
         "input_token_length: 1000000001 is over the cap of 1000000000"},
        {"{\"query\": \"q\", \"task\": 7, \"outputs\": []}", "task: expected a string"},
        {"{\"query\": \"q\", \"eval_name\": [], \"outputs\": []}",
         "eval_name: expected a string"},
        {"{\"query\": \"q\"}", "outputs: expected a non-empty array"},
        {"{\"query\": \"q\", \"outputs\": []}", "outputs: expected a non-empty array"},
        {"{\"query\": \"q\", \"outputs\": {}}", "outputs: expected a non-empty array"},
        {"{\"query\": \"q\", \"outputs\": [1]}", "outputs[0]: expected an object"},
        {"{\"query\": \"q\", \"outputs\": [{\"correctness\": 1, \"output_token_length\": 1}]}",
         "outputs[0].model_name: expected a string of 1 to 256 bytes"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"\"", "1", "1") "]}",
         "outputs[0].model_name: expected a string of 1 to 256 bytes"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("5", "1", "1") "]}",
         "outputs[0].model_name: expected a string of 1 to 256 bytes"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1", "1") ", " OUT("\"b\"", "0", "1")
         ", " OUT("\"a\"", "0", "1") "]}",
         "outputs[2].model_name: 'a' appears twice"},
        /* A JSON escape may spell a control character; a model name holds none
         * (the config refuses them in names too). */
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\\nb\"", "1", "1") "]}",
         "outputs[0].model_name: contains the control character 0x0a at byte 1"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1", "1") ", "
         OUT("\"\\u007f\"", "1", "1") "]}",
         "outputs[1].model_name: contains the control character 0x7f at byte 0"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1.5", "1") "]}",
         "outputs[0].correctness: expected a boolean or a number in [0,1]"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "-0.1", "1") "]}",
         "outputs[0].correctness: expected a boolean or a number in [0,1]"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "\"yes\"", "1") "]}",
         "outputs[0].correctness: expected a boolean or a number in [0,1]"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "null", "1") "]}",
         "outputs[0].correctness: expected a boolean or a number in [0,1]"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1", "-1") "]}",
         "outputs[0].output_token_length: expected a non-negative number"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1", "\"long\"") "]}",
         "outputs[0].output_token_length: expected a non-negative number"},
        {"{\"query\": \"q\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 1}]}",
         "outputs[0].output_token_length: expected a non-negative number"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1", "1.5e9") "]}",
         "outputs[0].output_token_length: 1500000000 is over the cap of 1000000000"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1", "1000000000.5") "]}",
         "outputs[0].output_token_length: 1000000000.5 is over the cap of 1000000000"},
        /* A number out of a double's range is a bad field of its record, not a
         * syntax error that refused the file ("real number overflow near
         * '1e400'"), wherever it is, in a field nothing reads too. */
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1", "1") ", "
         OUT("\"b\"", "1", "1e400") "]}",
         "outputs[1].output_token_length: 1e400 is out of range: a number's magnitude is at "
         "most about 1.8e308"},
        {"{\"query\": \"q\", \"input_token_length\": -1E+309, \"outputs\": []}",
         "input_token_length: -1E+309 is out of range: a number's magnitude is at most about "
         "1.8e308"},
        {"{\"query\": \"q\", \"note\": {\"x\": [1, 2e999, 3e999]}, "
         "\"outputs\": [" OUT("\"a\"", "1", "1") "]}",
         "note.x[1]: 2e999 is out of range: a number's magnitude is at most about 1.8e308"},
        {"{\"query\": \"q\", \"outputs\": [" OUT("\"a\"", "1",
         "1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000000000000000000000000000000000") "]}",
         "outputs[0].output_token_length: 10000000000000000000... (317 characters) is out of "
         "range: a number's magnitude is at most about 1.8e308"},
    };
    (void)st;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        both_refuse(cases[i].record, cases[i].want);
}

/* Strings at their caps and one byte over: a query and a model name. */
/* n copies of c as a string (the caller frees it). */
static char *repeated(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void loader_and_import_refuse_strings_over_their_caps_alike(void **st)
{
    size_t qlen = LR__RECORD_MAX_QUERY + 1, mlen = LR__RECORD_MAX_MODEL_NAME + 1;
    size_t cap = qlen + mlen + 256;
    char *q = repeated('x', qlen), *m = repeated('m', mlen), *rec = malloc(cap);
    char want[128];
    (void)st;
    assert_non_null(rec);
    snprintf(rec, cap, "{\"query\": \"%s\", \"outputs\": [" OUT("\"a\"", "1", "1") "]}", q);
    snprintf(want, sizeof(want), "query: %zu bytes is over the cap of %d", qlen,
             LR__RECORD_MAX_QUERY);
    both_refuse(rec, want);
    snprintf(rec, cap, "{\"query\": \"q\", \"outputs\": [" OUT("\"%s\"", "1", "1") "]}", m);
    both_refuse(rec, "outputs[0].model_name: expected a string of 1 to 256 bytes");
    free(q);
    free(m);
    free(rec);
}

/* Writes `content` to the file `name` in the temporary directory; it holds
 * `bad` records that are not objects and two good ones. The loader and
 * import each skip the bad ones, counting them and naming the first
 * (`load_first` and `import_first`), and load the good ones. Returns the
 * store the import went into (the caller frees it) and the import's report
 * in `rep`. */
static struct lr_store *both_skip_records_that_are_not_objects(const char *name,
                                                              const char *content, size_t bad,
                                                              const char *load_first,
                                                              const char *import_first,
                                                              struct lr_import_report *rep)
{
    struct lr_dataset *ds = NULL;
    struct lr_store *s = NULL;
    struct lr_error err;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);

    assert_int_equal(lr_dataset_load(path, NULL, &ds, rep, &err), 0);
    assert_int_equal(rep->bad, bad);
    assert_string_equal(rep->first_bad, load_first);
    assert_int_equal(lr_dataset_count(ds), 2);
    lr_dataset_free(ds);

    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, path, NULL, rep, &err), 0);
    assert_int_equal(rep->bad, bad);
    assert_string_equal(rep->first_bad, import_first);
    assert_int_equal(lr_store_count(s), 2);
    return s;
}

/* A strict import of the file at `path` into `s` refuses it, with a
 * message that holds `want`, and stores nothing: `s` still counts `count`. */
static void strict_import_refuses(struct lr_store *s, const char *want, size_t count)
{
    struct lr_import_options strict = {.split = NULL, .strict = 1};
    struct lr_import_report rep;
    struct lr_error err;

    assert_int_equal(lr_store_import_file(s, path, &strict, &rep, &err), LR_EPARSE);
    if (!strstr(err.message, want))
        fail_msg("strict import: '%s'", err.message);
    assert_int_equal(lr_store_count(s), count);
}

/* A JSON array whose elements (or JSON lines whose values) are not all
 * objects: each such record is a bad record, counted and named by its
 * index and line (the loader named an array's by its index alone), and the
 * others load; with strict, import refuses the file and stores nothing. */
static void loader_and_import_skip_records_that_are_not_objects(void **st)
{
    struct lr_store *s = NULL;
    struct lr_import_report rep;
    struct lr_error err;
    (void)st;

    s = both_skip_records_that_are_not_objects(
        "arr.json", "[" GOOD ", 5,\n \"x\", [1], null, " GOOD "]\n", 4,
        "record 1 (line 1): expected an object", "record 1 (line 1): expected an object", &rep);
    assert_int_equal(rep.read, 6);
    assert_int_equal(rep.imported, 2);
    lr_store_free(s);
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    strict_import_refuses(s, "arr.json: record 1 (line 1): expected an object", 0);
    lr_store_free(s);

    s = both_skip_records_that_are_not_objects(
        "lines.jsonl", GOOD "\n5\n\"x\"\n[1]\nnull\ntrue\n" GOOD "\n", 5,
        "record 1 (line 2): expected an object", "record 1 (line 2): expected an object", &rep);
    strict_import_refuses(s, "lines.jsonl: record 1 (line 2): expected an object", 2);
    lr_store_free(s);
}

/* The direct appends (lr_store_add, the lr_store_add_outcome family) refuse
 * what import refuses, with import's message, and store nothing. */
static void adds_refuse_what_import_refuses(void **st)
{
    static const struct lr_outcome twice[] = {{"m", 1, 3}, {"m", 0, 30}};
    static const struct lr_outcome long_out[] = {{"m", 1, 1000000001.0}};
    static const struct lr_outcome good[] = {{"m", 1, 3}};
    struct lr_record rec;
    struct lr_store *s = NULL, *d = NULL;
    struct lr_store_options dense = {"openai:fake", 2, 0, 0, 0, 0};
    struct lr_error err;
    const float vec[2] = {1, 0};
    int dup = -1;
    (void)st;

    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    rec = (struct lr_record){"q", -1, NULL, twice, 2};
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: outputs[1].model_name: 'm' appears twice");
    rec = (struct lr_record){"q", -1, NULL, long_out, 1};
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: outputs[0].output_token_length: 1000000001 is "
                                     "over the cap of 1000000000");
    rec = (struct lr_record){"q", 1000000001L, NULL, good, 1};
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), LR_EINVAL);
    assert_string_equal(err.message,
                        "record: input_token_length: 1000000001 is over the cap of 1000000000");
    assert_int_equal(lr_store_add_outcome(s, "q", -1, "m", 1, 2e9, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: outputs[0].output_token_length: 2000000000 is "
                                     "over the cap of 1000000000");
    assert_int_equal(lr_store_add_outcome(s, "q", 1000000001L, "m", 1, 2, &err), LR_EINVAL);
    assert_string_equal(err.message,
                        "record: input_token_length: 1000000001 is over the cap of 1000000000");
    assert_int_equal(lr_store_add_outcome(s, "q", -1, "m", 1.5, 2, &err), LR_EINVAL);
    assert_string_equal(err.message,
                        "record: outputs[0].correctness: expected a boolean or a number in [0,1]");
    /* A refused keyed append does not take its key. */
    assert_int_equal(lr_store_add_outcome_keyed(s, "k1", "q", -1, "m", 1, 2e9, NULL, 0, &dup,
                                                &err),
                     LR_EINVAL);
    assert_int_equal(lr_store_count(s), 0);
    assert_int_equal(lr_store_add_outcome_keyed(s, "k1", "q", -1, "m", 1, 2, NULL, 0, &dup, &err),
                     0);
    assert_int_equal(dup, 0);
    /* At the cap is fine. */
    rec = (struct lr_record){"q", 1000000000L, NULL, good, 1};
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), 0);
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);

    assert_int_equal(lr_store_open(":memory:", &dense, &d, &err), 0);
    assert_int_equal(lr_store_add_outcome_vec(d, "q", 1000000001L, "m", 1, 2, vec, 2, &err),
                     LR_EINVAL);
    assert_string_equal(err.message,
                        "record: input_token_length: 1000000001 is over the cap of 1000000000");
    rec = (struct lr_record){"q", -1, NULL, twice, 2};
    assert_int_equal(lr_store_add(d, &rec, vec, 2, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: outputs[1].model_name: 'm' appears twice");
    assert_int_equal(lr_store_count(d), 0);
    lr_store_free(d);
}

/* What no JSON text can hold, invalid UTF-8, the appends refuse in every
 * string of a record, naming the field, as they refuse control characters
 * in a model name; valid UTF-8 (and a newline in a query) passes. */
static void adds_refuse_invalid_utf8_and_control_characters_in_names(void **st)
{
    static const struct lr_outcome bad_utf8[] = {{"a", 1, 3}, {"\xff\xfe", 1, 3}};
    static const struct lr_outcome ctrl[] = {{"a\nb", 1, 3}};
    static const struct lr_outcome good[] = {{"mod\xc3\xa8le", 1, 3}};
    static const char *const invalid[] = {
        "\xff\xfe", "a\xc3", "\xc0\xaf",         /* stray, cut short, overlong */
        "\xed\xa0\x80", "\xf4\x90\x80\x80" /* a surrogate, past U+10FFFF */
    };
    struct lr_record rec;
    struct lr_store *s = NULL;
    struct lr_error err;
    (void)st;

    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        rec = (struct lr_record){invalid[i], -1, NULL, good, 1};
        assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), LR_EINVAL);
        assert_non_null(strstr(err.message, "record: query: not valid UTF-8 at byte"));
    }
    rec = (struct lr_record){"q", -1, "t\xff", good, 1};
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: task: not valid UTF-8 at byte 1");
    rec = (struct lr_record){"q", -1, NULL, bad_utf8, 2};
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: outputs[1].model_name: not valid UTF-8 at byte 0");
    rec = (struct lr_record){"q", -1, NULL, ctrl, 1};
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), LR_EINVAL);
    assert_string_equal(err.message,
                        "record: outputs[0].model_name: contains the control character 0x0a "
                        "at byte 1");
    assert_int_equal(lr_store_add_outcome(s, "\xff\xfe", -1, "a", 1, 2, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: query: not valid UTF-8 at byte 0");
    assert_int_equal(lr_store_add_outcome(s, "q", -1, "\xff\xfe", 1, 2, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: outputs[0].model_name: not valid UTF-8 at byte 0");
    assert_int_equal(lr_store_add_outcome(s, "q", -1, "a\nb", 1, 2, &err), LR_EINVAL);
    assert_string_equal(err.message,
                        "record: outputs[0].model_name: contains the control character 0x0a "
                        "at byte 1");
    assert_int_equal(lr_store_count(s), 0);
    rec = (struct lr_record){"line one\nline two \xe2\x82\xac \xf0\x9f\x98\x80", -1,
                             "t\xc3\xa2" "che", good, 1};
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "q\tq", -1, "mod\xc3\xa8le", 1, 2, &err), 0);
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);
}

/* Valid edge cases: both keep the record, with the same values. */
static void loader_and_import_read_valid_edge_cases_alike(void **st)
{
    static const char text[] =
        "{\"query\": \"whole\", \"input_token_length\": 123.0, \"task\": null, \"eval_name\": "
        "\"math\", \"outputs\": [" OUT("\"a\"", "true", "7.5") ", " OUT("\"b\"", "0.25", "0")
        "]}\n"
        "{\"query\": \"none\", \"input_token_length\": null, \"task\": \"t\", \"outputs\": ["
        OUT("\"a\"", "false", "3") "]}\n";
    struct lr_dataset *ds = NULL;
    struct lr_store *s = NULL;
    struct lr_import_report rep;
    struct lr_error err;
    char db[512];
    sqlite3 *h;
    sqlite3_stmt *stmt;
    const struct lr_record *r;
    FILE *f;
    (void)st;

    snprintf(path, sizeof(path), "%s/edge.jsonl", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);

    assert_int_equal(lr_dataset_load(path, NULL, &ds, &rep, &err), 0);
    assert_int_equal(rep.bad, 0);
    assert_int_equal(lr_dataset_count(ds), 2);
    r = lr_dataset_record(ds, 0);
    assert_int_equal(r->input_tokens, 123);
    assert_string_equal(r->task, "math");
    assert_true(r->outcomes[0].correctness == 1.0 && r->outcomes[0].output_tokens == 7.5);
    assert_true(r->outcomes[1].correctness == 0.25);
    r = lr_dataset_record(ds, 1);
    assert_int_equal(r->input_tokens, -1); /* eval estimates it, as import does */
    assert_string_equal(r->task, "t");

    snprintf(db, sizeof(db), "%s/edge.db", tmpdir);
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, path, NULL, &rep, &err), 0);
    assert_int_equal(rep.bad, 0);
    assert_int_equal(rep.imported, 2);
    lr_store_free(s);
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT input_tokens, task FROM records ORDER BY id",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(stmt, 0), 123);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 1), "math");
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(stmt, 0),
                     lr_estimate_tokens(lr_dataset_record(ds, 1)->query, 4));
    assert_string_equal((const char *)sqlite3_column_text(stmt, 1), "t");
    sqlite3_finalize(stmt);
    sqlite3_close(h);
    lr_dataset_free(ds);
}

static int count_each(void *ctx, struct json_t *rec, size_t index, long line, const char *bad)
{
    (void)rec;
    (void)index;
    (void)line;
    (void)bad;
    ++*(int *)ctx;
    return 0;
}

/* A number out of a double's range in an element of a JSON array is a bad
 * record, named with its index, line and field and skipped, for both
 * loaders (it was jansson's "real number overflow near '1e400'", which
 * refused the whole file); with --strict it refuses the file naming the
 * record. A syntax error after it in the same element still refuses the
 * file, at its own place, in the words a number in range would get. */
static void loader_and_import_skip_an_array_record_with_a_number_out_of_range(void **st)
{
    static const char want[] = "record 1 (line 3): outputs[0].correctness: -1e400 is out of "
                               "range: a number's magnitude is at most about 1.8e308";
    struct lr_import_options strict;
    struct lr_import_report drep, srep;
    struct lr_dataset *ds = NULL;
    struct lr_store *s = NULL;
    struct lr_error err;
    char expect[sizeof path + 256];
    FILE *f;
    (void)st;

    snprintf(path, sizeof(path), "%s/range.json", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "[%s,\n\n {\"query\": \"r\", \"outputs\": [" OUT("\"a\"", "-1e400", "1e999")
            "]},\n%s]\n", GOOD, GOOD);
    fclose(f);
    assert_int_equal(lr_dataset_load(path, NULL, &ds, &drep, &err), 0);
    assert_int_equal(drep.bad, 1);
    assert_string_equal(drep.first_bad, want);
    assert_int_equal(lr_dataset_count(ds), 2);
    lr_dataset_free(ds);
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, path, NULL, &srep, &err), 0);
    assert_int_equal(srep.bad, 1);
    assert_string_equal(srep.first_bad, want);
    assert_int_equal(lr_store_count(s), 2);

    lr_import_options_init(&strict);
    strict.strict = 1;
    snprintf(expect, sizeof expect, "%s: %s", path, want);
    assert_int_equal(lr_dataset_load(path, &strict, &ds, &drep, &err), LR_EPARSE);
    assert_string_equal(err.message, expect);
    assert_int_equal(lr_store_import_file(s, path, &strict, &srep, &err), LR_EPARSE);
    assert_string_equal(err.message, expect);
    assert_int_equal(lr_store_count(s), 2);

    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "[%s,\n {\"query\": \"r\", \"n\": 1e400 x}]\n", GOOD);
    fclose(f);
    snprintf(expect, sizeof expect, "%s:2:28: '}' expected near 'x'", path);
    assert_int_equal(lr_dataset_load(path, NULL, &ds, &drep, &err), LR_EPARSE);
    assert_string_equal(err.message, expect);
    assert_int_equal(lr_store_import_file(s, path, NULL, &srep, &err), LR_EPARSE);
    assert_string_equal(err.message, expect);
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);
}

/* lr_record_check_range(), the gateway's check of a body jansson refused:
 * a number out of a double's range is named by its place, in the import's
 * words, and only when it is the text's one fault. */
static void check_range_names_a_number_out_of_range_by_its_place(void **st)
{
    static const char body[] = "{\"queries\": [{\"query\": \"q\"}, {\"input_tokens\": 1e400}], "
                               "\"alpha\": -2E+999}";
    static const char *const other[] = {"{\"a\": 1e300}", "{\"a\": 1e400 x}",
                                        "{\"a\": 1e400, \"a\": 1}"};
    struct lr_error err;
    char field[64];
    (void)st;

    assert_int_equal(lr_record_check_range(body, strlen(body), field, sizeof field, &err),
                     LR_EINVAL);
    assert_string_equal(field, "queries[1].input_tokens");
    assert_string_equal(err.message, "queries[1].input_tokens: 1e400 is out of range: a "
                                     "number's magnitude is at most about 1.8e308");
    assert_int_equal(lr_record_check_range("1e999", 5, field, sizeof field, &err), LR_EINVAL);
    assert_string_equal(field, "");
    assert_string_equal(err.message,
                        "1e999 is out of range: a number's magnitude is at most about 1.8e308");
    /* The field is cut to its buffer; the message keeps it whole. */
    assert_int_equal(lr_record_check_range(body, strlen(body), field, 8, &err), LR_EINVAL);
    assert_string_equal(field, "queries");
    assert_non_null(strstr(err.message, "queries[1].input_tokens: 1e400"));
    /* No such number, or another fault besides: 0, field "". */
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        assert_int_equal(
            lr_record_check_range(other[i], strlen(other[i]), field, sizeof field, &err), 0);
        assert_string_equal(field, "");
    }
    assert_int_equal(lr_record_check_range(NULL, 0, field, sizeof field, &err), 0);
}

/* Where a record array stops parsing: the line and the column in
 * characters (as jansson counts them inside an element), between elements
 * and after the array too, and col0 on the first line only. */
static void array_walk_names_line_and_column(void **st)
{
    (void)st;
    static const struct {
        const char *text;
        size_t pos; /* past the '[' */
        int col0;
        long line, col;
        const char *what;
    } cases[] = {
        {"[]]", 1, 0, 1, 3, "unexpected data after the array"},
        {"[1 2]", 1, 0, 1, 4, "expected ',' or ']' after a record"},
        {"[1,\n2]\n x", 1, 0, 3, 2, "unexpected data after the array"},
        {"[\n1\n,\n2\n]\n\n\n   ]", 1, 0, 8, 4, "unexpected data after the array"},
        {"  [1,", 3, 0, 1, 6, "unexpected end of file: the array is not closed"},
        {"[\"\xc3\xa9\" 1]", 1, 0, 1, 6, "expected ',' or ']' after a record"},
        {"[\"\xc3\xa9\", {\"q\" 1}]", 1, 0, 1, 12, NULL}, /* jansson's words */
        {"[1 2]", 1, 5, 1, 9, "expected ',' or ']' after a record"},
        {"[1,\n2 3]", 1, 5, 2, 3, "expected ',' or ']' after a record"},
        /* A byte that decodes as no UTF-8 is named at its own column, not
         * the one before (jansson counts the characters it decoded). */
        {"[\xef]", 1, 0, 1, 2, "unable to decode byte 0xef"},
        {"[1,\n\xff]", 1, 0, 2, 1, "unable to decode byte 0xff"},
        {"[\"\xc3\xa9\", \"\xe2\x82\"]", 1, 0, 1, 8, "unable to decode byte 0xe2 near '\"'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct lr__array_fault f = {0};
        int n = 0;
        int rc = lr__record_array_walk(cases[i].text, strlen(cases[i].text), cases[i].pos, 1,
                                       cases[i].col0, count_each, &n, &f);
        assert_int_equal(rc, LR_EPARSE);
        if (f.line != cases[i].line || f.col != cases[i].col)
            fail_msg("case %zu: %ld:%d, want %ld:%ld (%s)", i, f.line, f.col, cases[i].line,
                     cases[i].col, f.what);
        if (cases[i].what)
            assert_string_equal(f.what, cases[i].what);
    }
}

/* A non-ASCII character's UTF-8 sequence as RFC 3629 has it: the first
 * and last code point of each length, the overlong forms just below them,
 * the surrogates U+D800 to U+DFFF, nothing past U+10FFFF, and a sequence
 * cut short or broken by a byte that is no continuation. */
static void utf8_seq_takes_what_rfc_3629_allows(void **st)
{
    static const struct {
        const char *bytes;
        size_t n, len;
        unsigned long cp;
    } cases[] = {
        {"\xc2\x80", 2, 2, 0x80},          {"\xdf\xbf", 2, 2, 0x7ff},
        {"\xc1\xbf", 2, 0, 0},             {"\xc0\x80", 2, 0, 0},
        {"\xe0\xa0\x80", 3, 3, 0x800},     {"\xe0\x9f\xbf", 3, 0, 0},
        {"\xe1\x80\x80", 3, 3, 0x1000},    {"\xed\x9f\xbf", 3, 3, 0xd7ff},
        {"\xed\xa0\x80", 3, 0, 0},         {"\xed\xbf\xbf", 3, 0, 0},
        {"\xee\x80\x80", 3, 3, 0xe000},    {"\xef\xbf\xbf", 3, 3, 0xffff},
        {"\xf0\x90\x80\x80", 4, 4, 0x10000}, {"\xf0\x8f\xbf\xbf", 4, 0, 0},
        {"\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff}, {"\xf4\x90\x80\x80", 4, 0, 0},
        {"\xf5\x80\x80\x80", 4, 0, 0},     {"\xe0\xa0\x80", 2, 0, 0},
        {"\xc2\x41", 2, 0, 0},             {"\xe2\x82\x41", 3, 0, 0},
        {"\xf0\x90\x80\x41", 4, 0, 0},     {"\x80\x80", 2, 0, 0},
        {"\x41\x80", 2, 0, 0},
    };
    (void)st;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned long cp = 0xdeadUL;
        size_t len = lr__utf8_seq((const unsigned char *)cases[i].bytes, cases[i].n, &cp);
        if (len != cases[i].len || (len && cp != cases[i].cp))
            fail_msg("case %zu: length %zu, U+%04lX; want %zu, U+%04lX", i, len, cp,
                     cases[i].len, cases[i].cp);
    }
}

/* The encoding a text's first bytes show: by its byte order mark (UTF-32LE's
 * before UTF-16LE's, which starts it), or by where its NUL bytes fall among
 * ASCII ones, in 4 bytes or as far as 2 or 3 go; none for UTF-8, for bytes
 * all NUL, or for a pattern no encoding writes. */
static void text_encoding_is_known_by_mark_or_nul_bytes(void **st)
{
    static const char MARK[] = " (it starts with that encoding's byte order mark)";
    static const char FOUR[] = " without a byte order mark (its first characters are ASCII "
                               "with NUL bytes between them, as that encoding writes them)";
    static const char FEW[] = " without a byte order mark (its few bytes are ASCII with NUL "
                              "bytes beside them, as that encoding writes ASCII)";
    static const struct {
        const char *bytes;
        size_t n;
        const char *encoding, *how;
    } cases[] = {
        {"\xff\xfe\0\0", 4, "UTF-32LE", MARK}, {"\0\0\xfe\xff", 4, "UTF-32BE", MARK},
        {"\xff\xfe[\0", 4, "UTF-16LE", MARK},  {"\xfe\xff\0[", 4, "UTF-16BE", MARK},
        {"\xff\xfe", 2, "UTF-16LE", MARK},     {"\xfe\xff", 2, "UTF-16BE", MARK},
        {"[\0\0\0", 4, "UTF-32LE", FOUR},      {"\0\0\0[", 4, "UTF-32BE", FOUR},
        {"[\0{\0", 4, "UTF-16LE", FOUR},       {"\0[\0{", 4, "UTF-16BE", FOUR},
        {"{\0", 2, "UTF-16LE", FEW},           {"\0{", 2, "UTF-16BE", FEW},
        {"[\0{", 3, "UTF-16LE", FEW},          {"\0[\0", 3, "UTF-16BE", FEW},
        {"[\0\0", 3, "UTF-32LE", FEW},         {"[{\"q", 4, NULL, NULL},
        {"\0\0\0\0", 4, NULL, NULL},           {"\0\0", 2, NULL, NULL},
        {"[\0\0[", 4, NULL, NULL},             {"\0[[\0", 4, NULL, NULL},
        {"\xc3\xa9\0\0", 4, NULL, NULL},       {"[", 1, NULL, NULL},
        {"\x80\0\0\0", 4, NULL, NULL},         {"\x7f\0\0\0", 4, "UTF-32LE", FOUR},
    };
    (void)st;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *how = NULL;
        const char *enc = lr__text_encoding((const unsigned char *)cases[i].bytes, cases[i].n, &how);
        if (!cases[i].encoding) {
            if (enc)
                fail_msg("case %zu: %s, want none", i, enc);
            continue;
        }
        if (!enc || strcmp(enc, cases[i].encoding) != 0)
            fail_msg("case %zu: %s, want %s", i, enc ? enc : "none", cases[i].encoding);
        if (strcmp(how, cases[i].how) != 0)
            fail_msg("case %zu: '%s', want '%s'", i, how, cases[i].how);
    }
}

/* A name may hold a space and any valid UTF-8 from U+0080 up; a byte below
 * 0x20 or DEL is a control character, named with its offset, and a byte
 * that starts no valid sequence is named by its offset. */
static void names_refuse_control_characters_and_invalid_utf8_by_their_place(void **st)
{
    char msg[128];
    (void)st;
    assert_int_equal(lr__record_check_name("m", "a b", 3, msg, sizeof msg), 0);
    assert_int_equal(lr__record_check_name("m", "\xc2\x80\xf4\x8f\xbf\xbf", 6, msg, sizeof msg),
                     0);
    assert_int_equal(lr__record_check_name("m", "ab\x1f", 3, msg, sizeof msg), -1);
    assert_string_equal(msg, "m: contains the control character 0x1f at byte 2");
    assert_int_equal(lr__record_check_name("m", "\x7f", 1, msg, sizeof msg), -1);
    assert_string_equal(msg, "m: contains the control character 0x7f at byte 0");
    assert_int_equal(lr__record_check_name("m", "a\x80", 2, msg, sizeof msg), -1);
    assert_string_equal(msg, "m: not valid UTF-8 at byte 1");
    assert_int_equal(lr__record_check_utf8("q", "\xc3\xa9\xed\xa0\x80", 5, msg, sizeof msg), -1);
    assert_string_equal(msg, "q: not valid UTF-8 at byte 2");
    /* Control characters are a name's rule only: a query may hold a tab. */
    assert_int_equal(lr__record_check_utf8("q", "a\tb\x7f", 4, msg, sizeof msg), 0);
}

/* A query of exactly the cap's bytes and a model name of exactly 256 are
 * read by both loaders; one byte more is refused (above). */
static void loader_and_import_take_strings_at_their_caps(void **st)
{
    size_t qlen = LR__RECORD_MAX_QUERY, mlen = LR__RECORD_MAX_MODEL_NAME;
    size_t cap = qlen + mlen + 256;
    char *q = repeated('x', qlen), *m = repeated('m', mlen), *rec = malloc(cap);
    struct lr_dataset *ds = NULL;
    struct lr_store *s = NULL;
    struct lr_import_report rep;
    struct lr_error err;
    const char *p;
    (void)st;
    assert_non_null(rec);
    snprintf(rec, cap, "{\"query\": \"%s\", \"outputs\": [" OUT("\"%s\"", "1", "1") "]}", q, m);
    p = write_jsonl(rec);
    assert_int_equal(lr_dataset_load(p, NULL, &ds, &rep, &err), 0);
    assert_int_equal(rep.bad, 0);
    assert_int_equal(lr_dataset_count(ds), 2); /* with write_jsonl()'s good one */
    assert_int_equal(strlen(lr_dataset_record(ds, 0)->query), qlen);
    assert_string_equal(lr_dataset_record(ds, 0)->outcomes[0].model, m);
    lr_dataset_free(ds);
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, p, NULL, &rep, &err), 0);
    assert_int_equal(rep.bad, 0);
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);
    free(q);
    free(m);
    free(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loader_and_import_refuse_each_bad_field_alike),
        cmocka_unit_test(loader_and_import_refuse_strings_over_their_caps_alike),
        cmocka_unit_test(loader_and_import_read_valid_edge_cases_alike),
        cmocka_unit_test(loader_and_import_skip_records_that_are_not_objects),
        cmocka_unit_test(adds_refuse_what_import_refuses),
        cmocka_unit_test(loader_and_import_refuse_a_task_label_over_its_cap),
        cmocka_unit_test(adds_refuse_invalid_utf8_and_control_characters_in_names),
        cmocka_unit_test(array_walk_names_line_and_column),
        cmocka_unit_test(loader_and_import_skip_an_array_record_with_a_number_out_of_range),
        cmocka_unit_test(check_range_names_a_number_out_of_range_by_its_place),
        cmocka_unit_test(utf8_seq_takes_what_rfc_3629_allows),
        cmocka_unit_test(text_encoding_is_known_by_mark_or_nul_bytes),
        cmocka_unit_test(names_refuse_control_characters_and_invalid_utf8_by_their_place),
        cmocka_unit_test(loader_and_import_take_strings_at_their_caps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
