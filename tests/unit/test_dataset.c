/* test_dataset.c -- reading the AIOS smart-routing data format: arrays and
 * JSONL, the split filter, and every kind of bad record named precisely. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmroute.h"

static char path[64];

static void write_file(const char *text)
{
    int fd;
    strcpy(path, "/tmp/lr_ds_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static const char array_text[] =
    "[{\"query\": \"2+2?\", \"input_token_length\": 5, \"split\": \"train\", \"eval_name\": \"math\","
    "  \"outputs\": [{\"model_name\": \"a\", \"correctness\": true, \"output_token_length\": 3},"
    "              {\"model_name\": \"b\", \"correctness\": 0.25, \"output_token_length\": 7.5}]},"
    " {\"query\": \"capital of France?\", \"input_token_length\": 9, \"split\": \"test\","
    "  \"outputs\": [{\"model_name\": \"b\", \"correctness\": false, \"output_token_length\": 2,"
    "                \"extra\": 1}]}]";

static void reads_an_array_with_booleans_and_scores(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_import_report rep;
    const struct lr_record *r;
    (void)state;
    write_file(array_text);
    assert_int_equal(lr_dataset_load(path, NULL, &ds, &rep, NULL), 0);
    assert_int_equal(lr_dataset_count(ds), 2);
    assert_int_equal(rep.read, 2);
    assert_int_equal(rep.imported, 2);
    r = lr_dataset_record(ds, 0);
    assert_string_equal(r->query, "2+2?");
    assert_int_equal(r->input_tokens, 5);
    assert_string_equal(r->task, "math");
    assert_int_equal(r->n_outcomes, 2);
    assert_string_equal(r->outcomes[0].model, "a");
    assert_true(r->outcomes[0].correctness == 1.0);
    assert_true(r->outcomes[1].correctness == 0.25);
    assert_true(r->outcomes[1].output_tokens == 7.5);
    r = lr_dataset_record(ds, 1);
    assert_null(r->task);
    assert_true(r->outcomes[0].correctness == 0.0);
    /* Model names are interned: equal names share one string. */
    assert_ptr_equal(lr_dataset_record(ds, 0)->outcomes[1].model, r->outcomes[0].model);
    assert_null(lr_dataset_record(ds, 2));
    lr_dataset_free(ds);
}

static void keeps_only_the_split_asked_for(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_import_report rep;
    struct lr_import_options o = {.split = "test", .strict = 0};
    (void)state;
    write_file(array_text);
    assert_int_equal(lr_dataset_load(path, &o, &ds, &rep, NULL), 0);
    assert_int_equal(lr_dataset_count(ds), 1);
    assert_int_equal(rep.skipped_split, 1);
    assert_string_equal(lr_dataset_record(ds, 0)->query, "capital of France?");
    lr_dataset_free(ds);
}

/* Records with no "split" (or a null one) are in no split: they are told
 * apart from those of another split, so that a caller can say why a file
 * that names no splits gave nothing. */
static void counts_the_records_with_no_split_apart(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_import_report rep;
    struct lr_import_options o = {.split = "test", .strict = 0};
    (void)state;
    write_file("{\"query\": \"q0\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 0,"
               " \"output_token_length\": 1}]}\n"
               "{\"query\": \"q1\", \"split\": null, \"outputs\": [{\"model_name\": \"a\","
               " \"correctness\": 0, \"output_token_length\": 1}]}\n"
               "{\"query\": \"q2\", \"split\": \"train\", \"outputs\": [{\"model_name\": \"a\","
               " \"correctness\": 0, \"output_token_length\": 1}]}\n");
    assert_int_equal(lr_dataset_load(path, &o, &ds, &rep, NULL), 0);
    assert_int_equal(lr_dataset_count(ds), 0);
    assert_int_equal(rep.skipped_split, 3);
    assert_int_equal(rep.skipped_unsplit, 2);
    lr_dataset_free(ds);
    /* Without a split asked for, every record is kept and none skipped. */
    assert_int_equal(lr_dataset_load(path, NULL, &ds, &rep, NULL), 0);
    assert_int_equal(lr_dataset_count(ds), 3);
    assert_int_equal(rep.skipped_unsplit, 0);
    lr_dataset_free(ds);
}

static void reads_jsonl_and_names_the_line_of_a_bad_record(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_import_report rep;
    (void)state;
    write_file("{\"query\": \"q0\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 0,"
               " \"output_token_length\": 1}]}\n"
               "\n"
               "{\"query\": \"q1\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": \"yes\","
               " \"output_token_length\": 1}]}\n"
               "{\"query\": \"q2\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 1,"
               " \"output_token_length\": 1}]}\n");
    assert_int_equal(lr_dataset_load(path, NULL, &ds, &rep, NULL), 0);
    assert_int_equal(lr_dataset_count(ds), 2);
    assert_int_equal(rep.bad, 1);
    assert_string_equal(rep.first_bad, "record 1 (line 3): outputs[0].correctness: expected a "
                                       "boolean or a number in [0,1]");
    assert_int_equal(lr_dataset_record(ds, 0)->input_tokens, -1); /* not given */
    lr_dataset_free(ds);
}

static void strict_load_fails_on_the_first_bad_record(void **state)
{
    struct lr_dataset *ds = (struct lr_dataset *)1;
    struct lr_import_options o = {.split = NULL, .strict = 1};
    struct lr_error err = {0};
    (void)state;
    write_file("{\"query\": \"q0\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 0,"
               " \"output_token_length\": 1}]}\n"
               "{\"query\": \"q1\", \"input_token_length\": \"ten\", \"outputs\": []}\n");
    assert_int_equal(lr_dataset_load(path, &o, &ds, NULL, &err), LR_EPARSE);
    assert_null(ds);
    assert_non_null(strstr(err.message, "record 1 (line 2): input_token_length: expected a "
                                        "non-negative integer"));
    assert_int_equal(err.line, 2);
}

static void each_bad_field_is_named(void **state)
{
    static const struct {
        const char *record, *want;
    } cases[] = {
        {"3", "record 0 (line 1): expected an object"},
        {"{\"outputs\": []}", "query: expected a non-empty string"},
        {"{\"query\": 1, \"outputs\": []}", "query: expected a non-empty string"},
        {"{\"query\": \"\", \"outputs\": []}", "query: expected a non-empty string"},
        {"{\"query\": \"q\"}", "outputs: expected a non-empty array"},
        {"{\"query\": \"q\", \"input_token_length\": -3, \"outputs\": []}", "input_token_length"},
        {"{\"query\": \"q\", \"input_token_length\": 2.5, \"outputs\": []}", "input_token_length"},
        {"{\"query\": \"q\", \"outputs\": [1]}", "outputs[0]: expected an object"},
        {"{\"query\": \"q\", \"outputs\": [{\"correctness\": 1, \"output_token_length\": 1}]}",
         "outputs[0].model_name: expected a string of 1 to 256 bytes"},
        {"{\"query\": \"q\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 1.5, "
         "\"output_token_length\": 1}]}",
         "outputs[0].correctness"},
        {"{\"query\": \"q\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 1, "
         "\"output_token_length\": \"long\"}]}",
         "outputs[0].output_token_length: expected a non-negative number"},
        {"{\"query\": \"q\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 1, "
         "\"output_token_length\": 1}, {\"model_name\": \"a\", \"correctness\": 0, "
         "\"output_token_length\": 1}]}",
         "outputs[1].model_name: 'a' appears twice"},
        {"{\"query\": \"q\", \"task\": 7, \"outputs\": []}", "task: expected a string"},
        {"{\"query\": \"q\", \"outputs\": []}", "outputs: expected a non-empty array"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        struct lr_dataset *ds = NULL;
        struct lr_import_report rep;
        snprintf(text, sizeof text, "[%s]", cases[i].record);
        write_file(text);
        assert_int_equal(lr_dataset_load(path, NULL, &ds, &rep, NULL), 0);
        assert_int_equal(lr_dataset_count(ds), 0);
        assert_int_equal(rep.bad, 1);
        if (!strstr(rep.first_bad, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, rep.first_bad, cases[i].want);
        lr_dataset_free(ds);
        unlink(path);
    }
}

static void truncated_file_is_a_parse_error_with_position(void **state)
{
    struct lr_dataset *ds = (struct lr_dataset *)1;
    struct lr_error err = {0};
    (void)state;
    write_file("[{\"query\": \"q\", \"outputs\": [{\"model_name\": \"a\", \"correct");
    assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), LR_EPARSE);
    assert_null(ds);
    /* path:line:column, as the store's import says it. */
    assert_non_null(strstr(err.message, ":1:"));
    assert_int_equal(err.line, 1);
    unlink(path);
    write_file("{\"query\": \"q\", \"outputs\": []}\n{\"query\": \"q\", \"outp");
    assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), LR_EPARSE);
    assert_non_null(strstr(err.message, ":2:"));
    assert_int_equal(err.line, 2);
}

/* opts->name is the data's name in messages, as the store's import has it
 * (a caller that copied standard input to a file names it so). */
static void messages_give_the_name_asked_for(void **state)
{
    struct lr_dataset *ds = (struct lr_dataset *)1;
    struct lr_import_options o = {.name = "<stdin>"};
    struct lr_error err = {0};
    (void)state;
    write_file("{bad");
    assert_int_equal(lr_dataset_load(path, &o, &ds, NULL, &err), LR_EPARSE);
    assert_null(ds);
    assert_true(strncmp(err.message, "<stdin>:1:", 10) == 0);
    assert_null(strstr(err.message, path));
    unlink(path);
    write_file("  \n");
    assert_int_equal(lr_dataset_load(path, &o, &ds, NULL, &err), LR_EEMPTY);
    assert_string_equal(err.message, "<stdin>: the file holds no records");
}

static void empty_and_missing_files_are_refused(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    (void)state;
    write_file("  \n");
    assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), LR_EEMPTY);
    assert_non_null(strstr(err.message, "holds no records"));
    assert_int_equal(lr_dataset_load("/nonexistent/d.json", NULL, &ds, NULL, &err), LR_EIO);
    assert_non_null(strstr(err.message, "/nonexistent/d.json"));
    /* A directory opens and reads as empty: it is named as a directory. */
    assert_int_equal(lr_dataset_load("/tmp", NULL, &ds, NULL, &err), LR_EIO);
    assert_non_null(strstr(err.message, "cannot read '/tmp': it is a directory"));
    /* An object that is not a record is one bad JSONL record, not a crash. */
    write_file("{\"not\": \"a record\"}");
    {
        struct lr_import_report rep;
        assert_int_equal(lr_dataset_load(path, NULL, &ds, &rep, &err), 0);
        assert_int_equal(lr_dataset_count(ds), 0);
        assert_int_equal(rep.bad, 1);
    }
    lr_dataset_free(ds);
}

/* The bytes before the first record: a UTF-8 byte order mark and blank
 * space (spaces, tabs, CR, LF) are passed over, and the position of a fault
 * after them counts their lines and the bytes on the record's own line. */
static void a_fault_after_a_mark_and_blank_space_is_placed(void **state)
{
    struct lr_dataset *ds = (struct lr_dataset *)1;
    struct lr_error err = {0};
    char want[128];
    (void)state;
    /* Line 3 is "\t [{bad": '[' at column 3, '{' at 4, the bad token at 5
     * to 7; a fault is placed at the token's last byte, as jansson places
     * it ("[{bad" alone is 1:5). */
    write_file("\xef\xbb\xbf \r\n\n\t [{bad");
    assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), LR_EPARSE);
    assert_null(ds);
    snprintf(want, sizeof want, "%s:3:7: ", path);
    assert_true(strncmp(err.message, want, strlen(want)) == 0);
    assert_int_equal(err.line, 3);
    unlink(path);
    /* JSON lines: line 2 is " \t{bad", the token at columns 4 to 6. */
    write_file("\xef\xbb\xbf\r\n \t{bad\n");
    assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), LR_EPARSE);
    snprintf(want, sizeof want, "%s:2:6: ", path);
    assert_true(strncmp(err.message, want, strlen(want)) == 0);
    assert_int_equal(err.line, 2);
    unlink(path);
    /* The same records behind the mark and blank space read as without. */
    {
        char text[sizeof array_text + 16];
        snprintf(text, sizeof text, "\xef\xbb\xbf\t\r\n %s", array_text);
        write_file(text);
        assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), 0);
        assert_int_equal(lr_dataset_count(ds), 2);
        assert_string_equal(lr_dataset_record(ds, 1)->query, "capital of France?");
        lr_dataset_free(ds);
    }
}

/* 0xEF starts a byte order mark only with 0xBB 0xBF after it: "\xef\xbb["
 * is no JSON at 1:1, and its '[' is not taken as the data's start. */
static void a_mark_cut_short_is_no_json(void **state)
{
    struct lr_dataset *ds = (struct lr_dataset *)1;
    struct lr_error err = {0};
    char want[192];
    (void)state;
    write_file("\xef\xbb[{\"query\": \"q\", \"input_token_length\": 1, \"outputs\": []}]");
    assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), LR_EPARSE);
    assert_null(ds);
    snprintf(want, sizeof want,
             "%s:1:1: invalid token (expected a JSON array or JSON lines of objects)", path);
    assert_string_equal(err.message, want);
}

/* A regular file is refused by its size before any of it is read, the
 * size named: a sparse file one byte over LR_DATA_FILE_MAX. */
static void a_regular_file_over_the_cap_is_refused_by_its_size(void **state)
{
    struct lr_dataset *ds = (struct lr_dataset *)1;
    struct lr_error err = {0};
    char want[256];
    (void)state;
    write_file("[");
    assert_int_equal(truncate(path, (off_t)LR_DATA_FILE_MAX + 1), 0);
    assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), LR_ETOOBIG);
    assert_null(ds);
    snprintf(want, sizeof want, "'%s' is %lld bytes, over the cap of %ld bytes for a data file",
             path, (long long)LR_DATA_FILE_MAX + 1, (long)LR_DATA_FILE_MAX);
    assert_string_equal(err.message, want);
}

/* The accessors take a NULL dataset, as free() takes NULL: none counts 0
 * records and has none, and a record past the last is NULL. */
static void the_accessors_take_no_dataset(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    (void)state;
    assert_int_equal(lr_dataset_count(NULL), 0);
    assert_null(lr_dataset_record(NULL, 0));
    lr_dataset_free(NULL);
    write_file(array_text);
    assert_int_equal(lr_dataset_load(path, NULL, &ds, NULL, &err), 0);
    assert_non_null(lr_dataset_record(ds, 1));
    assert_null(lr_dataset_record(ds, 2));
    lr_dataset_free(ds);
}

/* A file may name thousands of models: each of 4096 distinct names (the
 * cap) is read back as written, every use of a name gives the same one
 * copy, and a record that would add one more is bad and named. */
static void many_distinct_model_names_load_and_map_each_to_its_own(void **state)
{
    enum { NAMES = 4096, PER = 4, RECS = NAMES / PER };
    size_t cap = (size_t)3 * RECS * 400, len = 0;
    char *text = malloc(cap);
    const char *first[NAMES];
    struct lr_dataset *ds = NULL;
    struct lr_import_report rep;
    (void)state;
    assert_non_null(text);
    /* Records 0..RECS-1 name models m0..m4095 in order; records
     * RECS..2*RECS-1 name them again, last first. */
    for (int r = 0; r < 2 * RECS; r++) {
        len += (size_t)snprintf(text + len, cap - len, "{\"query\": \"q%d\", \"outputs\": [", r);
        for (int j = 0; j < PER; j++) {
            int m = r < RECS ? r * PER + j : NAMES - 1 - ((r - RECS) * PER + j);
            len += (size_t)snprintf(text + len, cap - len,
                                    "%s{\"model_name\": \"m%d\", \"correctness\": %d,"
                                    " \"output_token_length\": %d}",
                                    j ? ", " : "", m, m % 2, m);
        }
        len += (size_t)snprintf(text + len, cap - len, "]}\n");
    }
    len += (size_t)snprintf(text + len, cap - len,
                            "{\"query\": \"one too many\", \"outputs\": [{\"model_name\": \"m0\","
                            " \"correctness\": 1, \"output_token_length\": 1}, {\"model_name\":"
                            " \"m4096\", \"correctness\": 1, \"output_token_length\": 1}]}\n");
    assert_true(len < cap);
    write_file(text);
    free(text);
    assert_int_equal(lr_dataset_load(path, NULL, &ds, &rep, NULL), 0);
    assert_int_equal(lr_dataset_count(ds), 2 * RECS);
    assert_int_equal(rep.bad, 1);
    assert_string_equal(rep.first_bad, "record 2048 (line 2049): outputs[1].model_name: more "
                                       "than 4096 distinct models");
    for (int r = 0; r < 2 * RECS; r++) {
        const struct lr_record *rec = lr_dataset_record(ds, (size_t)r);
        assert_int_equal(rec->n_outcomes, PER);
        for (int j = 0; j < PER; j++) {
            int m = r < RECS ? r * PER + j : NAMES - 1 - ((r - RECS) * PER + j);
            char want[16];
            snprintf(want, sizeof want, "m%d", m);
            assert_string_equal(rec->outcomes[j].model, want);
            assert_true(rec->outcomes[j].output_tokens == m);
            if (r < RECS)
                first[m] = rec->outcomes[j].model;
            else
                assert_ptr_equal(rec->outcomes[j].model, first[m]);
        }
    }
    lr_dataset_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(reads_an_array_with_booleans_and_scores, teardown),
        cmocka_unit_test_teardown(keeps_only_the_split_asked_for, teardown),
        cmocka_unit_test_teardown(counts_the_records_with_no_split_apart, teardown),
        cmocka_unit_test_teardown(reads_jsonl_and_names_the_line_of_a_bad_record, teardown),
        cmocka_unit_test_teardown(strict_load_fails_on_the_first_bad_record, teardown),
        cmocka_unit_test_teardown(each_bad_field_is_named, teardown),
        cmocka_unit_test_teardown(truncated_file_is_a_parse_error_with_position, teardown),
        cmocka_unit_test_teardown(messages_give_the_name_asked_for, teardown),
        cmocka_unit_test_teardown(empty_and_missing_files_are_refused, teardown),
        cmocka_unit_test_teardown(many_distinct_model_names_load_and_map_each_to_its_own,
                                  teardown),
        cmocka_unit_test_teardown(a_fault_after_a_mark_and_blank_space_is_placed, teardown),
        cmocka_unit_test_teardown(a_mark_cut_short_is_no_json, teardown),
        cmocka_unit_test_teardown(a_regular_file_over_the_cap_is_refused_by_its_size, teardown),
        cmocka_unit_test_teardown(the_accessors_take_no_dataset, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
