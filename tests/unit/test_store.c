/* test_store.c -- the history store: import (array and JSONL, split filter,
 * bad records, truncated files), appends, durability across reopen, the
 * embedder check, caps, and dense stores fed by a remote embedder (here a
 * deterministic in-test callback standing in for the caller's HTTP client).
 * Fixtures are written into a temporary directory. Single-threaded but for
 * the rebuilds beside the writers, where a rebuild paused by the test hook
 * runs on one thread while appends run on another (the rest of the
 * concurrency is in test_smart.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

static char tmpdir[256];

static int setup(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lr_test_store_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

/* The store file at p and its WAL and shared-memory files removed, as
 * another process deleting the store would. */
static void remove_db(const char *p)
{
    char side[600];
    assert_int_equal(unlink(p), 0);
    snprintf(side, sizeof(side), "%s-wal", p);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", p);
    unlink(side);
}

static const char *write_file(const char *name, const char *content)
{
    static char p[512];
    path_in(p, sizeof(p), name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return p;
}

#define REC(q, split, c1, c2)                                                                  \
    "{\"query\": \"" q "\", \"input_token_length\": 12, \"split\": \"" split "\","             \
    " \"eval_name\": \"t\", \"outputs\": [{\"model_name\": \"small\", \"correctness\": " c1    \
    ", \"output_token_length\": 3}, {\"model_name\": \"big\", \"correctness\": " c2            \
    ", \"output_token_length\": 5, \"extra\": [1,2]}]}"

static const char ARRAY3[] = "[\n" REC("what is the capital of france", "train", "true", "true")
    ",\n" REC("write a python function to add numbers", "train", "false", "true") ",\n"
    REC("which planet is the largest", "test", "true", "false") "\n]\n";

static struct lr_store *open_mem(void)
{
    struct lr_store *s = NULL;
    struct lr_error err;
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    return s;
}

static void imports_a_json_array(void **st)
{
    (void)st;
    struct lr_store *s = open_mem();
    struct lr_import_report rep;
    struct lr_error err;
    const char *p = write_file("a.json", ARRAY3);
    assert_int_equal(lr_store_count(s), 0);
    assert_int_equal(lr_store_import_file(s, p, NULL, &rep, &err), 0);
    assert_int_equal(rep.read, 3);
    assert_int_equal(rep.imported, 3);
    assert_int_equal(rep.bad, 0);
    assert_int_equal(lr_store_count(s), 3);
    /* The outcomes are in memory, by model. */
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    int big = lr__hist_model_id(h, "big"), small = lr__hist_model_id(h, "small");
    assert_true(big >= 0 && small >= 0 && big != small);
    assert_int_equal(lr__hist_model_id(h, "absent"), -1);
    size_t n;
    const struct lr__outcome *o = lr__hist_outcomes(h, 1, &n);
    assert_int_equal(n, 2);
    assert_int_equal(o[0].model, (uint32_t)small);
    assert_true(o[0].correctness == 0.0f && o[1].correctness == 1.0f);
    assert_true(o[1].output_tokens == 5.0f);
    assert_true(h->mstats[big].n == 3 && h->mstats[big].sum_correct == 2);
    lr__store_unlock(s);
    assert_int_equal(lr_store_model_outcomes(s, "big"), 3);
    assert_int_equal(lr_store_model_outcomes(s, "small"), 3);
    assert_int_equal(lr_store_model_outcomes(s, "absent"), 0);
    assert_int_equal(lr_store_model_outcomes(s, "Big"), 0);
    assert_int_equal(lr_store_model_outcomes(s, NULL), 0);
    assert_int_equal(lr_store_model_outcomes(NULL, "big"), 0);
    lr_store_free(s);
}

static void imports_jsonl_with_a_split_filter(void **st)
{
    (void)st;
    struct lr_store *s = open_mem();
    struct lr_import_report rep;
    struct lr_error err;
    struct lr_import_options io = {.split = "train", .strict = 0};
    const char *p = write_file("a.jsonl", REC("alpha beta", "train", "1", "0.5") "\n\n"
                                          REC("gamma delta", "test", "0", "1") "\r\n"
                                          REC("epsilon zeta", "train", "0", "1") "\n");
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), 0);
    assert_int_equal(rep.read, 3);
    assert_int_equal(rep.imported, 2);
    assert_int_equal(rep.skipped_split, 1);
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);
}

/* Of the records skipped for the split, those with no "split" field (or a
 * null one) are counted apart, so that a caller can say why a file that
 * names no splits imported nothing. The count is the last import's. */
static void counts_the_records_with_no_split_apart(void **st)
{
    (void)st;
    struct lr_store *s = open_mem();
    struct lr_import_report rep;
    struct lr_error err;
    struct lr_import_options io = {.split = "test", .strict = 0};
    const char *p = write_file(
        "n.jsonl",
        "{\"query\": \"q0\", \"outputs\": [{\"model_name\": \"a\", \"correctness\": 0,"
        " \"output_token_length\": 1}]}\n"
        "{\"query\": \"q1\", \"split\": null, \"outputs\": [{\"model_name\": \"a\","
        " \"correctness\": 0, \"output_token_length\": 1}]}\n"
        "{\"query\": \"q2\", \"split\": \"train\", \"outputs\": [{\"model_name\": \"a\","
        " \"correctness\": 0, \"output_token_length\": 1}]}\n");
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), 0);
    assert_int_equal(rep.imported, 0);
    assert_int_equal(rep.skipped_split, 3);
    assert_int_equal(rep.skipped_unsplit, 2);
    /* Without a split asked for, every record is kept and none skipped. */
    assert_int_equal(lr_store_import_file(s, p, NULL, &rep, &err), 0);
    assert_int_equal(rep.imported, 3);
    assert_int_equal(rep.skipped_unsplit, 0);
    lr_store_free(s);
}

static void truncated_file_is_a_parse_error_and_changes_nothing(void **st)
{
    (void)st;
    struct lr_store *s = open_mem();
    struct lr_import_report rep;
    struct lr_error err;
    assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), NULL, &rep, &err), 0);
    /* Cut the array in the middle of its second record. */
    char cut[sizeof(ARRAY3)];
    memcpy(cut, ARRAY3, sizeof(ARRAY3));
    cut[strlen(ARRAY3) / 2] = 0;
    int rc = lr_store_import_file(s, write_file("cut.json", cut), NULL, &rep, &err);
    assert_int_equal(rc, LR_EPARSE);
    assert_int_equal(err.code, LR_EPARSE);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.message, "cut.json:3:"));
    assert_int_equal(rep.imported, 0);
    assert_int_equal(lr_store_count(s), 3);
    /* The same for JSON lines: the first line is good, the second is cut. */
    rc = lr_store_import_file(
        s, write_file("cut.jsonl", REC("one two", "train", "1", "1") "\n{\"query\": \"thr"), NULL,
        &rep, &err);
    assert_int_equal(rc, LR_EPARSE);
    assert_int_equal(err.line, 2);
    assert_int_equal(lr_store_count(s), 3);
    /* An array that never closes. */
    rc = lr_store_import_file(s, write_file("open.json", "[" REC("x y", "train", "1", "1") ",\n"),
                              NULL, &rep, &err);
    assert_int_equal(rc, LR_EPARSE);
    assert_int_equal(lr_store_count(s), 3);
    /* Neither an array nor objects. */
    rc = lr_store_import_file(s, write_file("junk.json", "\n\nhello"), NULL, &rep, &err);
    assert_int_equal(rc, LR_EPARSE);
    assert_int_equal(err.line, 3);
    lr_store_free(s);
}

static const char BAD[] = "[\n" REC("fine record one", "train", "1", "0") ",\n"
    "{\"query\": \"bad one\", \"input_token_length\": 3, \"outputs\": [\n"
    "  {\"model_name\": \"small\", \"correctness\": 1, \"output_token_length\": 2},\n"
    "  {\"model_name\": \"big\", \"correctness\": \"yes\", \"output_token_length\": 2}]},\n"
    "{\"query\": 7, \"outputs\": []},\n"
    REC("fine record two", "train", "0", "1") "\n]";

static void bad_records_are_named_skipped_and_counted(void **st)
{
    (void)st;
    struct lr_store *s = open_mem();
    struct lr_import_report rep;
    struct lr_error err;
    const char *p = write_file("bad.json", BAD);
    assert_int_equal(lr_store_import_file(s, p, NULL, &rep, &err), 0);
    assert_int_equal(rep.read, 4);
    assert_int_equal(rep.imported, 2);
    assert_int_equal(rep.bad, 2);
    assert_string_equal(rep.first_bad,
                        "record 1 (line 3): outputs[1].correctness: expected a boolean or a "
                        "number in [0,1]");
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);
}

static void strict_import_fails_whole_on_a_bad_record(void **st)
{
    (void)st;
    struct lr_store *s = open_mem();
    struct lr_import_report rep;
    struct lr_error err;
    struct lr_import_options io = {.split = NULL, .strict = 1};
    assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), NULL, &rep, &err), 0);
    int rc = lr_store_import_file(s, write_file("bad.json", BAD), &io, &rep, &err);
    assert_int_equal(rc, LR_EPARSE);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.message, "record 1 (line 3): outputs[1].correctness"));
    assert_int_equal(rep.imported, 0);
    assert_int_equal(lr_store_count(s), 3);
    /* A JSONL record where a string is given for a number. */
    rc = lr_store_import_file(
        s,
        write_file("bad.jsonl",
                   REC("ok", "train", "1", "1") "\n"
                   "{\"query\": \"q\", \"input_token_length\": \"12\", \"outputs\": []}\n"),
        &io, &rep, &err);
    assert_int_equal(rc, LR_EPARSE);
    assert_non_null(strstr(err.message, "record 1 (line 2): input_token_length"));
    assert_int_equal(lr_store_count(s), 3);
    lr_store_free(s);
}

static void store_survives_close_and_reopen(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_import_report rep;
    path_in(db, sizeof(db), "hist.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), NULL, &rep, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "a brand new question", -1, "newcomer", 0.25, 40,
                                          &err),
                     0);
    assert_int_equal(lr_store_count(s), 4);
    lr_store_free(s);

    s = NULL;
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 4);
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    int id = lr__hist_model_id(h, "newcomer");
    assert_true(id >= 0);
    size_t n;
    const struct lr__outcome *o = lr__hist_outcomes(h, 3, &n);
    assert_int_equal(n, 1);
    assert_int_equal(o[0].model, (uint32_t)id);
    assert_true(o[0].correctness == 0.25f && o[0].output_tokens == 40.0f);
    lr__store_unlock(s);
    lr_store_free(s);

    /* Read-only: readable, not writable. */
    struct lr_store_options ro = {NULL, 0, 1, 0, 0, 0};
    assert_int_equal(lr_store_open(db, &ro, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 4);
    assert_int_equal(lr_store_add_outcome(s, "q", 1, "m", 1, 1, &err), LR_EINVAL);
    lr_store_free(s);
}

/* Token counts of 0 are within the import's rules (input_tokens a whole
 * number from 0, output_tokens a number from 0): a record holding them is
 * kept, and the store opens again with it. */
static void zero_token_counts_are_kept_and_open_again(void **st)
{
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    (void)st;
    path_in(db, sizeof(db), "zero-tokens.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "an empty answer", 0, "m", 0, 0, &err), 0);
    lr_store_free(s);

    s = NULL;
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 1);
    lr__store_rdlock(s);
    size_t n;
    const struct lr__outcome *o = lr__hist_outcomes(lr__store_hist(s), 0, &n);
    assert_int_equal(n, 1);
    assert_true(o[0].correctness == 0.0f && o[0].output_tokens == 0.0f);
    lr__store_unlock(s);
    lr_store_free(s);
}

static void another_embedder_is_a_clear_error(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    path_in(db, sizeof(db), "emb.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    lr_store_free(s);
    struct lr_store_options o = {"bge-small-en-v1.5", 384, 0, 0, 0, 0};
    s = NULL;
    assert_int_equal(lr_store_open(db, &o, &s, &err), LR_ESTORE);
    assert_null(s);
    assert_non_null(strstr(err.message, "'tfidf-v1'"));
    assert_non_null(strstr(err.message, "'bge-small-en-v1.5'"));
    /* A file that is not a store at all. */
    const char *junk = write_file("junk.db", "this is not sqlite at all, not even close........");
    assert_int_equal(lr_store_open(junk, NULL, &s, &err), LR_ESTORE);
}

/* Sets meta's `key` in the store file db to the bytes of value (len bytes,
 * through the SQLite C API, as a corrupted or hostile file would hold). */
static void set_meta(const char *db, const char *key, const char *value, int len)
{
    sqlite3 *raw = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(raw, "UPDATE meta SET value = ? WHERE key = ?", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_text(q, 1, value, len, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(raw), 1);
    sqlite3_finalize(q);
    sqlite3_close(raw);
}

/* No byte of the message is a control character (the escape ESC, a bell,
 * a newline) or starts invalid UTF-8 (a lone 0xff). */
static void assert_printable(const char *m)
{
    for (const unsigned char *p = (const unsigned char *)m; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == 0xff || *p == 0xfe)
            fail_msg("message holds byte 0x%02x: %s", *p, m);
}

/* A name read from a corrupted store file (its embedder, schema version or
 * dim) is shown escaped in the message: it printed raw, control
 * characters, invalid UTF-8 and all. */
static void names_read_from_the_file_are_shown_escaped(void **st)
{
    (void)st;
    char db[512], longname[300];
    struct lr_store *s = NULL;
    struct lr_error err;
    path_in(db, sizeof(db), "corrupt_meta.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    lr_store_free(s);
    s = NULL;

    set_meta(db, "embedder", "evil\x1b[2J\a\n\xff\xfe'q\\caf\xc3\xa9", -1);
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_null(s);
    assert_printable(err.message);
    assert_non_null(strstr(err.message, "was built with embedder "
                                        "'evil\\x1b[2J\\x07\\x0a\\xff\\xfe\\'q\\\\caf\xc3\xa9' "
                                        "but is opened with 'tfidf-v1'"));

    /* A long name is cut, with "...", well inside the message. */
    memset(longname, 'x', sizeof(longname));
    longname[0] = '\x01';
    set_meta(db, "embedder", longname, (int)sizeof(longname));
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_printable(err.message);
    assert_non_null(strstr(err.message, "embedder '\\x01xxx"));
    assert_non_null(strstr(err.message, "xxx...' but is opened with 'tfidf-v1'"));
    assert_non_null(strstr(err.message, "import the history into a new store"));

    set_meta(db, "embedder", "tfidf-v1", -1);
    set_meta(db, "dim", "4\x1b]0;x\a", -1);
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_printable(err.message);
    assert_non_null(strstr(err.message, "meta dim '4\\x1b]0;x\\x07' is not valid"));

    set_meta(db, "schema_version", "1\r\n9", -1);
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_printable(err.message);
    assert_non_null(strstr(err.message, "schema version '1\\x0d\\x0a9'"));

    /* A NUL byte in a value: not the value before it ("tfidf-v1\0junk" is
     * no "tfidf-v1", "1\0" no schema version 1, "4\0" no dimension 4). */
    set_meta(db, "schema_version", "1", -1);
    set_meta(db, "dim", "0", -1);
    set_meta(db, "embedder", "tfidf-v1\0junk", 13);
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_null(s);
    assert_printable(err.message);
    assert_non_null(strstr(err.message, "names its embedder with a NUL byte in it "
                                        "('tfidf-v1\\x00...')"));
    set_meta(db, "embedder", "tfidf-v1", -1);
    set_meta(db, "schema_version", "1\0", 2);
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_non_null(strstr(err.message, "schema version '(not valid: a NUL byte in it)'"));
    set_meta(db, "schema_version", "1", -1);
    set_meta(db, "dim", "4\0", 2);
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_non_null(strstr(err.message, "meta dim is not valid"));
    /* and a dimension too long for the reader, not cut to a number */
    memset(longname, '0', sizeof(longname));
    longname[sizeof(longname) - 1] = '4';
    set_meta(db, "dim", longname, (int)sizeof(longname));
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_non_null(strstr(err.message, "meta dim is not valid"));
    set_meta(db, "dim", "0", -1);
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    lr_store_free(s);
}

static void dense_store_keeps_vectors_and_checks_dimension(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options o = {"remote-emb", 0, 0, 0, 0, 0};
    struct lr_outcome oc = {"m", 1.0, 10};
    struct lr_record r = {"some text", 4, NULL, &oc, 1};
    float v0[3] = {1, 0, 0}, v1[3] = {0, 2, 0}, v2[3] = {0, 1, 1}, bad[2] = {1, 1};
    path_in(db, sizeof(db), "dense.db");
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_add(s, &r, NULL, 0, &err), LR_EINVAL); /* needs a vector */
    assert_int_equal(lr_store_add(s, &r, v0, 3, &err), 0);           /* fixes dim = 3 */
    assert_int_equal(lr_store_add(s, &r, bad, 2, &err), LR_EINVAL);
    assert_int_equal(lr_store_add(s, &r, v1, 3, &err), 0);
    assert_int_equal(lr_store_add(s, &r, v2, 3, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "q", 1, "m", 1, 1, &err), LR_EINVAL);
    assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), NULL, NULL, &err),
                     LR_EINVAL);
    lr_store_free(s);

    s = NULL;
    o.dense_dim = 4;
    assert_int_equal(lr_store_open(db, &o, &s, &err), LR_ESTORE);
    o.dense_dim = 3;
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 3);
    struct lr__store_scratch sc;
    struct lr__neighbor nb[3];
    float q[3] = {0, 5, 0.1f};
    lr__store_scratch_init(&sc);
    lr__store_rdlock(s);
    assert_int_equal(lr__store_knn_vec(s, q, 3, 3, &sc, nb), 3);
    lr__store_unlock(s);
    assert_int_equal(nb[0].doc, 1);
    assert_int_equal(nb[1].doc, 2);
    assert_int_equal(nb[2].doc, 0);
    lr__store_scratch_free(&sc);
    lr_store_free(s);
}

static void appends_validate_and_respect_the_cap(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options o = {NULL, 0, 0, 3, 0, 0};
    char want[700];
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "q", 1, "m", 1.5, 1, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "correctness"));
    assert_int_equal(lr_store_add_outcome(s, "", 1, "m", 1, 1, &err), LR_EINVAL);
    assert_int_equal(lr_store_add_outcome(s, "q", 1, "", 1, 1, &err), LR_EINVAL);
    assert_int_equal(lr_store_add_outcome(s, "q", 1, "m", NAN, 1, &err), LR_EINVAL);
    assert_int_equal(lr_store_add_outcome(s, "q", 1, "m", 1, -1, &err), LR_EINVAL);
    assert_int_equal(lr_store_count(s), 0);
    /* An import that would pass the cap adds nothing. */
    const char *big = write_file("big.jsonl", REC("a", "x", "1", "1") "\n" REC("b", "x", "1", "1")
                                 "\n" REC("c", "x", "1", "1") "\n" REC("d", "x", "1", "1"));
    int rc = lr_store_import_file(s, big, NULL, NULL, &err);
    assert_int_equal(rc, LR_ETOOBIG);
    snprintf(want, sizeof(want),
             "%s: record 3 (line 4): the history store's cap of 3 records is reached", big);
    assert_string_equal(err.message, want);
    assert_int_equal(lr_store_count(s), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lr_store_add_outcome(s, "q", 1, "m", 1, 1, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "q", 1, "m", 1, 1, &err), LR_ETOOBIG);
    assert_string_equal(err.message, "history store ':memory:' is full (3 records)");
    assert_int_equal(lr_store_count(s), 3);
    lr_store_free(s);
}

/* A JSON lines file of `records` records with `per` outcomes each, of
 * models named prefix0, prefix1, ... in order. */
static const char *write_models_file(const char *name, const char *prefix, int records, int per)
{
    static char p[512];
    int m = 0;
    FILE *f = fopen(path_in(p, sizeof(p), name), "w");
    assert_non_null(f);
    for (int r = 0; r < records; r++) {
        fprintf(f, "{\"query\": \"question %s %d\", \"input_token_length\": 4, \"outputs\": [",
                prefix, r);
        for (int k = 0; k < per; k++, m++)
            fprintf(f, "%s{\"model_name\": \"%s%d\", \"correctness\": 1, "
                       "\"output_token_length\": 2}",
                    k ? ", " : "", prefix, m);
        fprintf(f, "]}\n");
    }
    fclose(f);
    return p;
}

/* A store holds at most 4096 distinct models (README): an import that
 * would pass them is refused whole, naming the record that adds the first
 * one past the cap (the README's own example: 4090 held, a file adding 7),
 * and an append of a model past them is LR_ETOOBIG; up to the cap both
 * add, and the store opens again with all 4096. */
static void models_are_capped_at_4096_by_imports_and_appends(void **state)
{
    char db[512], want[1200];
    struct lr_store *s = NULL;
    struct lr_import_report rep;
    struct lr_error err = {0};
    (void)state;
    path_in(db, sizeof(db), "models-cap.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, write_models_file("held.jsonl", "m", 5, 818), NULL,
                                          &rep, &err),
                     0);
    assert_int_equal(rep.imported, 5);

    const char *m = write_models_file("m.jsonl", "n", 7, 1);
    assert_int_equal(lr_store_import_file(s, m, NULL, &rep, &err), LR_ETOOBIG);
    snprintf(want, sizeof want,
             "%s: record 6 (line 7) adds model 'n6': history store '%s' would hold more than "
             "4096 distinct models (it holds 4090, and this file adds 6 before this record)",
             m, db);
    assert_string_equal(err.message, want);
    assert_int_equal(rep.imported, 0);
    assert_int_equal(lr_store_count(s), 5);
    assert_int_equal(lr_store_model_outcomes(s, "n0"), 0);

    assert_int_equal(lr_store_import_file(s, write_models_file("m.jsonl", "n", 5, 1), NULL,
                                          &rep, &err),
                     0);
    assert_int_equal(lr_store_add_outcome(s, "one more model", 3, "n5", 1, 2, &err), 0);
    assert_int_equal(lr_store_count(s), 11);
    assert_int_equal(lr_store_add_outcome(s, "past the cap", 3, "n6", 1, 2, &err), LR_ETOOBIG);
    snprintf(want, sizeof want, "history store '%s': more than 4096 models", db);
    assert_string_equal(err.message, want);
    assert_int_equal(lr_store_count(s), 11);
    assert_int_equal(lr_store_add_outcome(s, "a model it holds", 3, "m4089", 1, 2, &err), 0);
    lr_store_free(s);

    s = NULL;
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 12);
    assert_int_equal(lr_store_model_outcomes(s, "n5"), 1);
    assert_int_equal(lr_store_model_outcomes(s, "m4089"), 2);
    assert_int_equal(lr_store_model_outcomes(s, "n6"), 0);
    lr_store_free(s);
}

static void records_appended_to_an_empty_store_are_searchable(void **st)
{
    (void)st;
    struct lr_store *s = open_mem();
    struct lr_error err;
    struct lr__store_scratch sc;
    struct lr__neighbor nb[4];
    assert_int_equal(lr_store_add_outcome(s, "python function reverse list", -1, "m", 1, 9, &err),
                     0);
    assert_int_equal(lr_store_add_outcome(s, "capital city of france", -1, "m", 0, 2, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "largest planet solar system", -1, "m", 1, 2, &err),
                     0);
    lr__store_scratch_init(&sc);
    lr__store_rdlock(s);
    const char *q = "what is the capital of france";
    int n = lr__store_knn_text(s, q, strlen(q), 2, &sc, nb);
    lr__store_unlock(s);
    assert_int_equal(n, 2);
    assert_int_equal(nb[0].doc, 1);
    assert_true(nb[0].sim > 0.3f);
    lr__store_scratch_free(&sc);
    lr_store_free(s);
}

/* ==== Dense stores: a remote embedder's vectors ==== */

/* A deterministic stand-in for a remote embedder: each text's vector comes
 * from an FNV-1a hash of it, so equal texts give equal vectors. */
struct fake_embedder {
    int calls;
    size_t texts;        /* texts embedded so far */
    size_t batch_sizes[16];
    int fail_on_call;    /* 1-based call that fails; 0 = never */
    int zero_on_call;    /* call whose vectors are all zero */
    int fail_code;       /* what the failing call returns; 0 = LR_EIO */
    int cancel_on_call;  /* call that sets *cancel (as a signal would meanwhile) */
    volatile sig_atomic_t *cancel;
};

static void hash_vector(const char *text, float *out, size_t dim)
{
    uint64_t h = 14695981039346656037ull;
    for (const char *c = text; *c; c++) {
        h ^= (unsigned char)*c;
        h *= 1099511628211ull;
    }
    for (size_t j = 0; j < dim; j++) {
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 29;
        out[j] = (float)((double)(h % 2001) / 1000.0 - 1.0);
    }
}

static int fake_embed(void *arg, const char *const *texts, size_t n, float *out, size_t dim,
                      struct lr_error *err)
{
    struct fake_embedder *fe = arg;
    fe->calls++;
    if (fe->calls <= 16)
        fe->batch_sizes[fe->calls - 1] = n;
    if (fe->calls == fe->fail_on_call) {
        snprintf(err->message, sizeof(err->message), "embedding server is down");
        return fe->fail_code ? fe->fail_code : LR_EIO;
    }
    if (fe->calls == fe->cancel_on_call)
        *fe->cancel = SIGTERM;
    for (size_t i = 0; i < n; i++) {
        if (fe->calls == fe->zero_on_call)
            memset(out + i * dim, 0, dim * sizeof(float));
        else
            hash_vector(texts[i], out + i * dim, dim);
    }
    fe->texts += n;
    return 0;
}

/* The nearest record to `text`'s own vector. */
static int nearest_by_vector(struct lr_store *s, const char *text, size_t dim, float *sim)
{
    struct lr__store_scratch sc;
    struct lr__neighbor nb[1];
    float v[16];
    assert_true(dim <= 16);
    hash_vector(text, v, dim);
    lr__store_scratch_init(&sc);
    lr__store_rdlock(s);
    int n = lr__store_knn_vec(s, v, dim, 1, &sc, nb);
    lr__store_unlock(s);
    lr__store_scratch_free(&sc);
    assert_int_equal(n, 1);
    *sim = nb[0].sim;
    return (int)nb[0].doc;
}

#define FIVE                                                                                  \
    "[" REC("alpha one", "train", "1", "0") "," REC("beta two", "test", "1", "1") ","         \
    REC("gamma three", "train", "0", "1") "," REC("delta four", "train", "1", "1") ","        \
    REC("epsilon five", "train", "0", "0") "]"

/* An embed callback that writes to the store whose import called it: the
 * import holds the write lock meanwhile, so each write is refused at once
 * (it waited for that lock forever), while another store takes its write. */
struct reentrant_embed {
    struct lr_store *self, *other;
    const char *path; /* a data file to import, from inside the callback */
    int calls;
    int rc[5], rc_other;
    char msg[5][512];
};

static int reentrant_embed(void *arg, const char *const *texts, size_t n, float *out,
                           size_t dim, struct lr_error *err)
{
    struct reentrant_embed *r = arg;
    struct lr_error e;
    float v[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    const char *q = "written from the callback";
    unsigned char known[1];
    int changed;

    (void)err;
    if (r->calls++ == 0) {
        for (int k = 0; k < 5; k++) {
            memset(&e, 0, sizeof(e));
            if (k == 0)
                r->rc[k] = lr_store_add_outcome_vec(r->self, q, 3, "m", 1, 5, v, 8, &e);
            else if (k == 1)
                r->rc[k] = lr_store_import_file(r->self, r->path, NULL, NULL, &e);
            else if (k == 2)
                r->rc[k] = lr_store_refresh(r->self, &changed, &e);
            else if (k == 3)
                r->rc[k] = lr_store_rebuild(r->self, &changed, &e);
            else
                r->rc[k] = lr_store_find_queries(r->self, &q, 1, known, NULL, &e);
            snprintf(r->msg[k], sizeof(r->msg[k]), "%s", e.message);
        }
        r->rc_other = lr_store_add_outcome(r->other, q, 3, "m", 1, 5, &e);
    }
    for (size_t i = 0; i < n; i++)
        hash_vector(texts[i], out + i * dim, dim);
    return 0;
}

static void writes_from_the_stores_own_embed_callback_are_refused(void **st)
{
    (void)st;
    struct lr_store *s = NULL, *other = NULL;
    struct lr_error err;
    struct lr_import_report rep;
    struct lr_store_options o = {"openai:fake", 8, 0, 0, 0, 0};
    struct reentrant_embed r = {0};
    struct lr_import_options io = {.embed = reentrant_embed, .embed_arg = &r, .embed_batch = 2};
    char db[512];

    assert_int_equal(lr_store_open(path_in(db, sizeof(db), "reentrant.db"), &o, &s, &err), 0);
    assert_int_equal(lr_store_open(":memory:", NULL, &other, &err), 0);
    r.self = s;
    r.other = other;
    r.path = write_file("reentrant_inner.json", FIVE);
    /* Without the check the first write inside the callback never returns:
     * the alarm ends the test then, rather than ctest's timeout. */
    alarm(120);
    assert_int_equal(lr_store_import_file(s, write_file("reentrant.json", FIVE), &io, &rep,
                                          &err),
                     0);
    alarm(0);
    assert_int_equal(r.calls, 3);
    for (int k = 0; k < 5; k++) {
        assert_int_equal(r.rc[k], LR_EINVAL);
        assert_non_null(strstr(r.msg[k], "from within its own embed callback"));
    }
    assert_non_null(strstr(r.msg[0], "cannot add to it from within its own embed callback"));
    assert_int_equal(r.rc_other, 0);
    assert_int_equal(lr_store_count(s), 5);
    assert_int_equal(lr_store_count(other), 1);
    /* Outside the callback the same thread writes again. */
    float v[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    assert_int_equal(lr_store_add_outcome_vec(s, "after the import", 3, "m", 1, 5, v, 8, &err),
                     0);
    assert_int_equal(lr_store_count(s), 6);
    lr_store_free(other);
    lr_store_free(s);
}

/* threads < 0 is a caller's mistake, refused naming it; 0 and 1 open. */
static void negative_threads_are_refused(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_store_options o;
    struct lr_error err = {0};
    lr_store_options_init(&o);
    o.threads = -1;
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), LR_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err.message, "threads -1 is negative"));
    o.threads = 0;
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    lr_store_free(s);
    o.threads = 1;
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    lr_store_free(s);
}

static void dense_import_embeds_kept_records_in_batches(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_import_report rep;
    struct fake_embedder fe = {0};
    struct lr_store_options o = {"openai:fake", 0, 0, 0, 0, 0};
    struct lr_import_options io = {.split = "train", .embed = fake_embed, .embed_arg = &fe,
                                   .embed_batch = 3, .embed_dim = 8};
    float sim;
    path_in(db, sizeof(db), "dense_import.db");
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_dim(s), 0);
    assert_string_equal(lr_store_embedder(s), "openai:fake");
    assert_int_equal(lr_store_import_file(s, write_file("five.json", FIVE), &io, &rep, &err), 0);
    assert_int_equal(rep.imported, 4);
    assert_int_equal(rep.skipped_split, 1);
    /* Only kept records are embedded: a batch of 3, then the rest. */
    assert_int_equal(fe.calls, 2);
    assert_int_equal(fe.batch_sizes[0], 3);
    assert_int_equal(fe.batch_sizes[1], 1);
    assert_int_equal(lr_store_count(s), 4);
    assert_int_equal(lr_store_dim(s), 8);
    /* Records keep their order, and each text's vector finds its record. */
    assert_int_equal(nearest_by_vector(s, "alpha one", 8, &sim), 0);
    assert_true(sim > 0.999f);
    assert_int_equal(nearest_by_vector(s, "epsilon five", 8, &sim), 3);
    lr_store_free(s);

    /* The vectors and the dimension survive a reopen; a second import
     * appends and may take the store's dimension. */
    s = NULL;
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_dim(s), 8);
    assert_int_equal(nearest_by_vector(s, "delta four", 8, &sim), 2);
    io.split = "test";
    io.embed_dim = 0;
    assert_int_equal(lr_store_import_file(s, write_file("five.json", FIVE), &io, &rep, &err), 0);
    assert_int_equal(lr_store_count(s), 5);
    assert_int_equal(nearest_by_vector(s, "beta two", 8, &sim), 4);
    lr_store_free(s);
}

static void dense_import_is_all_or_nothing_when_the_embedder_fails(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_import_report rep;
    struct fake_embedder fe = {0};
    struct lr_store_options o = {"openai:fake", 4, 0, 0, 0, 0};
    struct lr_import_options io = {.embed = fake_embed, .embed_arg = &fe, .embed_batch = 2};
    const char *p = write_file("five.json", FIVE);

    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    assert_int_equal(lr_store_dim(s), 4);
    fe.fail_on_call = 2;
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), LR_EIO);
    assert_non_null(strstr(err.message, "embedding server is down"));
    assert_non_null(strstr(err.message, "records 2 to 3"));
    assert_int_equal(rep.imported, 0);
    assert_int_equal(lr_store_count(s), 0);
    /* A known LR_E* code from the callback is the import's result (every
     * one, LR_ECANCELED the last; LR_EREPLACED, once the last, was taken for
     * LR_EIO); anything else is LR_EIO. */
    const int codes[] = {LR_EBUSY, LR_ETOOBIG, LR_ENOMEM, LR_EREPLACED, LR_ECANCELED, 7, -1000,
                         -15};
    const int want[] = {LR_EBUSY, LR_ETOOBIG, LR_ENOMEM, LR_EREPLACED, LR_ECANCELED,
                        LR_EIO, LR_EIO, LR_EIO};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        memset(&fe, 0, sizeof(fe));
        fe.fail_on_call = 1;
        fe.fail_code = codes[i];
        assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), want[i]);
        assert_non_null(strstr(err.message, "embedding server is down"));
        assert_int_equal(lr_store_count(s), 0);
    }

    /* A zero vector is the embedder's fault too: nothing is imported. */
    memset(&fe, 0, sizeof(fe));
    fe.zero_on_call = 3;
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "record 4"));
    assert_int_equal(lr_store_count(s), 0);

    /* What a dense import needs: the callback, and a matching dimension. */
    struct lr_import_options none = {.split = NULL};
    assert_int_equal(lr_store_import_file(s, p, &none, &rep, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "embed"));
    io.embed_dim = 5;
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "dimension 5"));
    assert_int_equal(lr_store_count(s), 0);

    memset(&fe, 0, sizeof(fe));
    io.embed_dim = 0;
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), 0);
    assert_int_equal(lr_store_count(s), 5);
    assert_int_equal(fe.texts, 5);
    lr_store_free(s);

    /* A dense store that knows no dimension needs embed_dim. */
    struct lr_store_options o0 = {"openai:fake", 0, 0, 0, 0, 0};
    assert_int_equal(lr_store_open(":memory:", &o0, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "embed_dim"));
    lr_store_free(s);

    /* The built-in embedder takes no callback. */
    s = open_mem();
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), LR_EINVAL);
    assert_int_equal(lr_store_count(s), 0);
    lr_store_free(s);
}

static void dense_outcome_appends_carry_their_vector(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options o = {"openai:fake", 0, 0, 0, 0, 0};
    float v[8], sim;
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    hash_vector("first query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(s, "first query", 5, "m", 1, 7, v, 8, &err), 0);
    hash_vector("second query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(s, "second query", 5, "m", 0, 3, v, 8, &err), 0);
    assert_int_equal(lr_store_add_outcome_vec(s, "third", 5, "m", 0, 3, v, 4, &err), LR_EINVAL);
    assert_int_equal(lr_store_add_outcome_vec(s, "third", 5, "m", 0, 3, NULL, 0, &err),
                     LR_EINVAL);
    assert_int_equal(lr_store_add_outcome(s, "third", 5, "m", 0, 3, &err), LR_EINVAL);
    assert_int_equal(lr_store_count(s), 2);
    assert_int_equal(lr_store_dim(s), 8);
    assert_int_equal(nearest_by_vector(s, "second query", 8, &sim), 1);
    assert_true(sim > 0.999f);
    lr_store_free(s);

    s = open_mem();
    assert_int_equal(lr_store_add_outcome_vec(s, "q", 5, "m", 0, 3, v, 8, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "built-in"));
    assert_int_equal(lr_store_dim(s), 0);
    lr_store_free(s);
}

/* A dense store that holds no vector yet has the dimension it is opened
 * with (lr_store_dim()); a read-only open takes it too, but writes
 * nothing: the file still knows no dimension afterwards. */
static void read_only_open_takes_dense_dim_without_writing_it(void **st)
{
    char db[512];
    struct lr_store_options o;
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    (void)st;
    path_in(db, sizeof(db), "dense-no-dim.db");
    lr_store_options_init(&o);
    o.embedder = "openai:fake";
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_dim(s), 0);
    lr_store_free(s);

    o.read_only = 1;
    o.dense_dim = 8;
    s = NULL;
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_dim(s), 8);
    assert_int_equal(lr_store_count(s), 0);
    lr_store_free(s);

    o.dense_dim = 0;
    s = NULL;
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_dim(s), 0);
    lr_store_free(s);
}

/* A first vector whose write fails must not fix the store's dimension in
 * memory: later vectors of another dimension are then sized correctly. */
static void failed_first_vector_leaves_no_dimension_behind(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options o = {"openai:fake", 0, 0, 0, 0, 0};
    sqlite3 *raw = NULL;
    float v4[4] = {1, 2, 3, 4}, v8[8], sim;
    path_in(db, sizeof(db), "first_fails.db");
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw,
                                  "CREATE TRIGGER boom BEFORE INSERT ON records "
                                  "WHEN NEW.query = 'boom' BEGIN SELECT RAISE(ABORT, 'no'); END;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(raw);
    assert_int_not_equal(lr_store_add_outcome_vec(s, "boom", 1, "m", 1, 1, v4, 4, &err), 0);
    assert_int_equal(lr_store_dim(s), 0);
    for (int i = 0; i < 100; i++) {
        char q[32];
        snprintf(q, sizeof(q), "query %d", i);
        hash_vector(q, v8, 8);
        assert_int_equal(lr_store_add_outcome_vec(s, q, 1, "m", 1, 1, v8, 8, &err), 0);
    }
    assert_int_equal(lr_store_dim(s), 8);
    assert_int_equal(nearest_by_vector(s, "query 77", 8, &sim), 77);
    lr_store_free(s);
    s = NULL;
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 100);
    assert_int_equal(nearest_by_vector(s, "query 42", 8, &sim), 42);
    lr_store_free(s);
}

/* ==== Two connections on one file ==== */

/* Two handles on one file stand for two processes (a gateway appending
 * feedback, `llmroute import` run beside it): SQLite tells a connection
 * about another's commits the same way in both cases. */

/* The nearest record to `text` by the built-in embedder. */
static int nearest_by_text(struct lr_store *s, const char *text)
{
    struct lr__store_scratch sc;
    struct lr__neighbor nb[1];
    lr__store_scratch_init(&sc);
    lr__store_rdlock(s);
    int n = lr__store_knn_text(s, text, strlen(text), 1, &sc, nb);
    lr__store_unlock(s);
    lr__store_scratch_free(&sc);
    assert_int_equal(n, 1);
    return (int)nb[0].doc;
}

/* The queries in record order, one a line, read with SQLite directly. */
static void stored_queries(const char *db, char *buf, size_t cap)
{
    sqlite3 *c = NULL;
    sqlite3_stmt *q = NULL;
    size_t len = 0;
    long want = 0;
    assert_int_equal(sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(c, "SELECT id, query FROM records ORDER BY id", -1, &q,
                                        NULL),
                     SQLITE_OK);
    buf[0] = '\0';
    while (sqlite3_step(q) == SQLITE_ROW) {
        assert_int_equal(sqlite3_column_int64(q, 0), want++);
        len += (size_t)snprintf(buf + len, cap - len, "%s\n", sqlite3_column_text(q, 1));
        assert_true(len < cap);
    }
    sqlite3_finalize(q);
    sqlite3_close(c);
}

static void writers_catch_up_with_another_connections_commits(void **st)
{
    (void)st;
    char db[512], got[2048];
    struct lr_store *a = NULL, *b = NULL;
    struct lr_error err;
    struct lr_import_report rep;
    path_in(db, sizeof(db), "two.db");
    assert_int_equal(lr_store_open(db, NULL, &a, &err), 0);
    assert_int_equal(lr_store_open(db, NULL, &b, &err), 0);

    /* An import through a, then an append through b, which has not seen it. */
    assert_int_equal(lr_store_import_file(a, write_file("a.json", ARRAY3), NULL, &rep, &err), 0);
    assert_int_equal(lr_store_add_outcome(b, "a question from the gateway", -1, "newcomer", 0.5,
                                          7, &err),
                     0);
    assert_int_equal(lr_store_count(b), 4);
    /* b routes over a's records now, with a's model ids. */
    assert_int_equal(nearest_by_text(b, "capital of france"), 0);
    lr__store_rdlock(b);
    assert_int_equal(lr__hist_model_id(lr__store_hist(b), "small"), 0);
    assert_int_equal(lr__hist_model_id(lr__store_hist(b), "newcomer"), 2);
    lr__store_unlock(b);

    /* The other way round: a appends after b's append, b imports after a's. */
    assert_int_equal(lr_store_add_outcome(a, "one more from the first", -1, "big", 1, 3, &err),
                     0);
    assert_int_equal(lr_store_count(a), 5);
    assert_int_equal(nearest_by_text(a, "a question from the gateway"), 3);
    const char *two = "{\"query\": \"imported later one\", \"outputs\": [{\"model_name\": "
                      "\"small\", \"correctness\": 1, \"output_token_length\": 2}]}\n"
                      "{\"query\": \"imported later two\", \"outputs\": [{\"model_name\": "
                      "\"third\", \"correctness\": 0, \"output_token_length\": 9}]}\n";
    assert_int_equal(lr_store_import_file(b, write_file("b.jsonl", two), NULL, &rep, &err), 0);
    assert_int_equal(rep.imported, 2);
    assert_int_equal(lr_store_count(b), 7);
    assert_int_equal(nearest_by_text(b, "one more from the first"), 4);
    assert_int_equal(lr_store_import_file(a, write_file("a.json", ARRAY3), NULL, &rep, &err), 0);
    assert_int_equal(lr_store_count(a), 10);
    assert_int_equal(nearest_by_text(a, "imported later two"), 6);
    lr__store_rdlock(a);
    assert_int_equal(lr__hist_model_id(lr__store_hist(a), "third"), 3);
    lr__store_unlock(a);
    lr_store_free(a);
    lr_store_free(b);

    /* Every record once, in the order written, with its own outcome. */
    stored_queries(db, got, sizeof(got));
    assert_string_equal(got, "what is the capital of france\n"
                             "write a python function to add numbers\n"
                             "which planet is the largest\n"
                             "a question from the gateway\n"
                             "one more from the first\n"
                             "imported later one\n"
                             "imported later two\n"
                             "what is the capital of france\n"
                             "write a python function to add numbers\n"
                             "which planet is the largest\n");
    assert_int_equal(lr_store_open(db, NULL, &a, &err), 0);
    assert_int_equal(lr_store_count(a), 10);
    lr__store_rdlock(a);
    const struct lr__hist *h = lr__store_hist(a);
    size_t n;
    const struct lr__outcome *o = lr__hist_outcomes(h, 3, &n);
    assert_int_equal(n, 1);
    assert_int_equal(o[0].model, (uint32_t)lr__hist_model_id(h, "newcomer"));
    assert_true(o[0].correctness == 0.5f && o[0].output_tokens == 7.0f);
    o = lr__hist_outcomes(h, 6, &n);
    assert_int_equal(n, 1);
    assert_int_equal(o[0].model, (uint32_t)lr__hist_model_id(h, "third"));
    lr__store_unlock(a);
    lr_store_free(a);
}

/* Another connection holds the write lock past the busy timeout (an import
 * into the store a gateway appends to): the append is LR_EBUSY, naming the
 * store, and writes nothing; once the lock is gone the same append succeeds. */
static void append_while_another_connection_writes_is_busy_then_succeeds(void **st)
{
    (void)st;
    char db[512], got[1024];
    struct lr_store *s = NULL;
    struct lr_error err;
    sqlite3 *raw = NULL;
    path_in(db, sizeof(db), "busy.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "before the lock", -1, "small", 1, 3, &err), 0);

    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(lr_store_add_outcome(s, "during the lock", -1, "big", 0, 5, &err), LR_EBUSY);
    assert_int_equal(err.code, LR_EBUSY);
    assert_non_null(strstr(err.message, db));
    assert_non_null(strstr(err.message, "another process"));
    assert_int_equal(lr_store_count(s), 1);
    assert_int_equal(sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);

    assert_int_equal(lr_store_add_outcome(s, "during the lock", -1, "big", 0, 5, &err), 0);
    assert_int_equal(lr_store_count(s), 2);
    lr__store_rdlock(s);
    assert_int_equal(lr__hist_model_id(lr__store_hist(s), "big"), 1);
    lr__store_unlock(s);
    lr_store_free(s);
    stored_queries(db, got, sizeof(got));
    assert_string_equal(got, "before the lock\nduring the lock\n");
}

/* A dense store's dimension may be fixed by the other connection's first
 * vector: the writer that catches up takes it, with the vectors. */
static void dense_writer_catches_up_with_another_connections_vectors(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *a = NULL, *b = NULL;
    struct lr_error err;
    struct lr_store_options o = {"openai:fake", 0, 0, 0, 0, 0};
    float v[8], sim;
    path_in(db, sizeof(db), "two-dense.db");
    assert_int_equal(lr_store_open(db, &o, &a, &err), 0);
    assert_int_equal(lr_store_open(db, &o, &b, &err), 0);
    hash_vector("first query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(a, "first query", 5, "m", 1, 7, v, 8, &err), 0);
    hash_vector("second query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(b, "second query", 5, "n", 0, 3, v, 8, &err), 0);
    assert_int_equal(lr_store_count(b), 2);
    assert_int_equal(lr_store_dim(b), 8);
    assert_int_equal(nearest_by_vector(b, "first query", 8, &sim), 0);
    assert_true(sim > 0.999f);
    hash_vector("third query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(a, "third query", 5, "n", 1, 1, v, 8, &err), 0);
    assert_int_equal(lr_store_count(a), 3);
    assert_int_equal(nearest_by_vector(a, "second query", 8, &sim), 1);
    lr_store_free(a);
    lr_store_free(b);
    assert_int_equal(lr_store_open(db, &o, &a, &err), 0);
    assert_int_equal(lr_store_count(a), 3);
    assert_int_equal(nearest_by_vector(a, "third query", 8, &sim), 2);
    lr_store_free(a);
}

/* A reader (a gateway that only routes) sees another connection's commits
 * only when it refreshes: before that its count and nearest neighbours are
 * those of its own copy. A refresh that finds nothing new keeps the copy it
 * has, and this handle's own commits are not news to it. */
static void sql_run(const char *db, const char *sql);

/* A read-only handle rebuilds at a refresh only when the file holds
 * records past its copy: a commit that adds none (a writable open's
 * migration, a setting) changes SQLite's data version, as every read does
 * for a reader that may not write the -shm file, and is not a reason to
 * read the whole store again. */
/* A read-only handle that may write the -shm file (the owner, root) sees
 * every commit through the data version: a store rewritten in place with as
 * many records (a restore over it) is caught up with, not only new records.
 * (A handle in SQLite's read-only-shm mode, which needs a user who may not
 * write the -shm, looks for new records only: tests/cli/test_cli.sh.) */
static void read_only_refresh_sees_a_rewrite_with_as_many_records(void **st)
{
    char db[512];
    struct lr_store *w = NULL, *r = NULL;
    struct lr_store_options ro;
    struct lr_error err;
    int changed = -1;
    (void)st;

    path_in(db, sizeof(db), "ro_refresh.db");
    assert_int_equal(lr_store_open(db, NULL, &w, &err), 0);
    assert_int_equal(lr_store_add_outcome(w, "first", 5, "m", 1.0, 3, &err), 0);
    lr_store_options_init(&ro);
    ro.read_only = 1;
    assert_int_equal(lr_store_open(db, &ro, &r, &err), 0);
    assert_int_equal(lr_store_refresh(r, &changed, &err), 0);
    assert_int_equal(changed, 0);
    sql_run(db, "UPDATE outcomes SET correctness = 0");
    assert_int_equal(lr_store_refresh(r, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_count(r), 1);
    assert_int_equal(lr_store_refresh(r, &changed, &err), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(lr_store_add_outcome(w, "second", 5, "m", 1.0, 3, &err), 0);
    assert_int_equal(lr_store_refresh(r, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_count(r), 2);
    lr_store_free(r);
    lr_store_free(w);
}

static void refresh_reads_another_connections_commits(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *a = NULL, *b = NULL, *ro = NULL;
    struct lr_store_options rdonly = {NULL, 0, 1, 0, 0, 0};
    struct lr_error err;
    struct lr_import_report rep;
    const struct lr__hist *before;
    int changed = -1;
    path_in(db, sizeof(db), "refresh.db");
    assert_int_equal(lr_store_open(db, NULL, &a, &err), 0);
    assert_int_equal(lr_store_add_outcome(a, "a seed about cooking pasta", -1, "small", 1, 3,
                                          &err),
                     0);
    assert_int_equal(lr_store_open(db, NULL, &b, &err), 0);
    assert_int_equal(lr_store_open(db, &rdonly, &ro, &err), 0);
    assert_int_equal(lr_store_count(b), 1);

    /* Nothing new yet: the copy stays the very same. */
    lr__store_rdlock(b);
    before = lr__store_hist(b);
    lr__store_unlock(b);
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 0);
    lr__store_rdlock(b);
    assert_ptr_equal(lr__store_hist(b), before);
    lr__store_unlock(b);

    /* a imports; b and the read-only handle do not see it yet. */
    assert_int_equal(lr_store_import_file(a, write_file("r.json", ARRAY3), NULL, &rep, &err), 0);
    assert_int_equal(lr_store_count(a), 4);
    assert_int_equal(lr_store_count(b), 1);
    assert_int_equal(nearest_by_text(b, "capital of france"), 0);
    assert_int_equal(lr_store_count(ro), 1);

    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_count(b), 4);
    assert_int_equal(nearest_by_text(b, "capital of france"), 1);
    lr__store_rdlock(b);
    assert_int_equal(lr__hist_model_id(lr__store_hist(b), "big"), 1);
    lr__store_unlock(b);
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(lr_store_refresh(ro, NULL, &err), 0);
    assert_int_equal(lr_store_count(ro), 4);
    assert_int_equal(nearest_by_text(ro, "which planet is the largest"), 3);

    /* b's own append is not another connection's commit. */
    assert_int_equal(lr_store_add_outcome(b, "written by b itself", -1, "big", 1, 2, &err), 0);
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(lr_store_count(b), 5);

    /* a catches up with b's append when it writes; b refreshes to see a's. */
    assert_int_equal(lr_store_add_outcome(a, "a late one about astronomy", -1, "small", 0, 4,
                                          &err),
                     0);
    assert_int_equal(lr_store_count(a), 6);
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_count(b), 6);
    assert_int_equal(nearest_by_text(b, "a late one about astronomy"), 5);
    assert_int_equal(lr_store_refresh(ro, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_count(ro), 6);

    assert_int_equal(lr_store_refresh(NULL, &changed, &err), LR_EINVAL);
    assert_int_equal(changed, 0);
    lr_store_free(a);
    lr_store_free(b);
    lr_store_free(ro);
}

/* A refresh that cannot read what was committed (here a records table left
 * inconsistent by a foreign writer) fails naming the store and keeps the
 * copy it had; once the table is whole again the next refresh reads it. */
static void failed_refresh_keeps_the_old_copy(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *b = NULL;
    struct lr_error err;
    sqlite3 *raw = NULL;
    int changed = -1;
    path_in(db, sizeof(db), "refresh-bad.db");
    assert_int_equal(lr_store_open(db, NULL, &b, &err), 0);
    assert_int_equal(lr_store_add_outcome(b, "the only record", -1, "small", 1, 3, &err), 0);

    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw,
                                  "INSERT INTO records(id, query, input_tokens, task) "
                                  "VALUES (7, 'a gap before me', 3, 't')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(lr_store_refresh(b, &changed, &err), LR_ESTORE);
    assert_int_equal(changed, 0);
    assert_non_null(strstr(err.message, db));
    assert_int_equal(lr_store_count(b), 1);
    assert_int_equal(nearest_by_text(b, "the only record"), 0);

    assert_int_equal(sqlite3_exec(raw, "DELETE FROM records WHERE id = 7", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(raw);
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_count(b), 1);
    lr_store_free(b);
}

/* The bytes of the file at p (malloc'd), *n their count. */
static char *file_bytes(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    char *b;
    long len;
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    b = malloc((size_t)len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void sql_edit(const char *db, const char *sql)
{
    sqlite3 *c = NULL;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    if (sqlite3_exec(c, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    assert_int_equal(sqlite3_changes(c), 1);
    sqlite3_close(c);
}

/* A store made by import, then one value of one row changed through the
 * SQLite C API, as a hand edit would change it: a count below 0 or not
 * whole, a correctness out of [0,1] or a text (which SQLite would read as
 * 0). Opening it, writable or read-only, is refused naming the file, the
 * record, the column and the value, and the file is left as it was. */
static void edited_rows_are_refused_by_record_column_and_value(void **st)
{
    (void)st;
    static const struct {
        const char *sql, *want;
    } cases[] = {
        /* ARRAY3: records 0, 1, 2; models small (0) and big (1). */
        {"UPDATE records SET input_tokens = -5 WHERE id = 1",
         "record 1: records.input_tokens is -5, not a whole number of 0 or more"},
        {"UPDATE records SET input_tokens = 'abc' WHERE id = 2",
         "record 2: records.input_tokens is 'abc', not a whole number"},
        {"UPDATE records SET input_tokens = 2.5 WHERE id = 0",
         "record 0: records.input_tokens is 2.5, not a whole number"},
        {"UPDATE outcomes SET correctness = 'abc' WHERE record_id = 1 AND model_id = 1",
         "record 1: outcomes.correctness is 'abc', not a number in [0,1]"},
        {"UPDATE outcomes SET correctness = 1.5 WHERE record_id = 2 AND model_id = 0",
         "record 2: outcomes.correctness is 1.5, not a number in [0,1]"},
        {"UPDATE outcomes SET correctness = -0.25 WHERE record_id = 0 AND model_id = 1",
         "record 0: outcomes.correctness is -0.25, not a number in [0,1]"},
        {"UPDATE outcomes SET output_tokens = -3 WHERE record_id = 2 AND model_id = 1",
         "record 2: outcomes.output_tokens is -3, not a finite number of 0 or more"},
        {"UPDATE outcomes SET output_tokens = 'many' WHERE record_id = 0 AND model_id = 0",
         "record 0: outcomes.output_tokens is 'many', not a finite number"},
        {"UPDATE outcomes SET output_tokens = 1e999 WHERE record_id = 2 AND model_id = 0",
         "record 2: outcomes.output_tokens is inf, not a finite number"},
        {"UPDATE outcomes SET output_tokens = x'00ff' WHERE record_id = 1 AND model_id = 0",
         "record 1: outcomes.output_tokens is a blob of 2 bytes, not a finite number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char db[512], name[32];
        struct lr_store *s = NULL;
        struct lr_store_options ro;
        struct lr_import_report rep;
        struct lr_error err;
        size_t n0, n1;
        char *before, *after;

        snprintf(name, sizeof(name), "edited-%zu.db", i);
        path_in(db, sizeof(db), name);
        assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
        assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), NULL, &rep, &err),
                         0);
        lr_store_free(s);
        sql_edit(db, cases[i].sql);
        before = file_bytes(db, &n0);

        s = NULL;
        memset(&err, 0, sizeof(err));
        assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
        assert_null(s);
        if (!strstr(err.message, db) || !strstr(err.message, cases[i].want))
            fail_msg("%s: got \"%s\", wanted \"%s\"", cases[i].sql, err.message, cases[i].want);
        lr_store_options_init(&ro);
        ro.read_only = 1;
        memset(&err, 0, sizeof(err));
        assert_int_equal(lr_store_open(db, &ro, &s, &err), LR_ESTORE);
        assert_non_null(strstr(err.message, cases[i].want));

        after = file_bytes(db, &n1);
        assert_int_equal(n0, n1);
        assert_memory_equal(before, after, n0);
        free(before);
        free(after);
    }
}

/* Rows whose ids do not fit together (a model id past the models, a gap
 * in the records, an outcome of a record that is not there or out of
 * record order), as a hand edit could leave them, are refused at open,
 * writable or read-only, naming the table, and the file is left as it was;
 * in a dense store, so are vectors missing or of the wrong size. */
static void rows_whose_ids_do_not_fit_are_refused_naming_the_table(void **st)
{
    (void)st;
    static const struct {
        int dense;
        const char *sql, *want;
    } cases[] = {
        /* ARRAY3: records 0, 1, 2; models small (0) and big (1); each
         * record's outcomes are small's, then big's. */
        {0, "UPDATE models SET id = 5 WHERE id = 1", "models table is inconsistent"},
        {0, "DELETE FROM records WHERE id = 1", "records table is inconsistent"},
        {0, "UPDATE outcomes SET model_id = 2 WHERE record_id = 0 AND model_id = 1",
         "outcomes table is inconsistent"},
        {0, "UPDATE outcomes SET record_id = 3 WHERE record_id = 2 AND model_id = 1",
         "outcomes table is inconsistent"},
        {0, "UPDATE outcomes SET record_id = 0 WHERE record_id = 2 AND model_id = 1",
         "outcomes table is inconsistent"},
        {1, "DELETE FROM vectors WHERE record_id = 2", "3 records but 2 vectors"},
        {1, "DELETE FROM vectors WHERE record_id = 0", "vectors table is inconsistent"},
        {1, "UPDATE vectors SET vec = x'0000803f' WHERE record_id = 1",
         "vectors table is inconsistent"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char db[512], name[32], want[700];
        struct fake_embedder fe = {0};
        struct lr_import_options io = {.embed = fake_embed, .embed_arg = &fe, .embed_dim = 4};
        struct lr_store_options o;
        struct lr_store *s = NULL;
        struct lr_error err;
        size_t n0, n1;
        char *before, *after;

        snprintf(name, sizeof(name), "ids-%zu.db", i);
        path_in(db, sizeof(db), name);
        lr_store_options_init(&o);
        o.embedder = cases[i].dense ? "openai:fake" : NULL;
        assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
        assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3),
                                              cases[i].dense ? &io : NULL, NULL, &err),
                         0);
        assert_int_equal(lr_store_count(s), 3);
        lr_store_free(s);
        sql_edit(db, cases[i].sql);
        before = file_bytes(db, &n0);
        snprintf(want, sizeof(want), "history store '%s': %s", db, cases[i].want);
        for (int read_only = 0; read_only <= 1; read_only++) {
            s = NULL;
            memset(&err, 0, sizeof(err));
            o.read_only = read_only;
            assert_int_equal(lr_store_open(db, &o, &s, &err), LR_ESTORE);
            assert_null(s);
            if (strcmp(err.message, want) != 0)
                fail_msg("%s: got \"%s\", wanted \"%s\"", cases[i].sql, err.message, want);
        }
        after = file_bytes(db, &n1);
        assert_int_equal(n0, n1);
        assert_memory_equal(before, after, n0);
        free(before);
        free(after);
    }
}

/* Such a row committed by another connection after the copy was built is
 * refused by the refresh that reads it, by its record, column and value,
 * and the copy is kept; a dense store's records are checked as well. */
static void edited_rows_are_refused_by_a_refresh_and_in_a_dense_store(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_store_options o;
    struct lr_import_report rep;
    struct lr_error err;
    float v[8];
    int changed = -1;

    path_in(db, sizeof(db), "edited-refresh.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), NULL, &rep, &err), 0);
    sql_edit(db, "INSERT INTO records(id, query, input_tokens, task) VALUES (3, 'q', 4, 't')");
    sql_edit(db, "INSERT INTO outcomes(record_id, model_id, correctness, output_tokens) "
                 "VALUES (3, 0, 'yes', 2)");
    assert_int_equal(lr_store_refresh(s, &changed, &err), LR_ESTORE);
    assert_int_equal(changed, 0);
    assert_non_null(strstr(err.message, db));
    assert_non_null(strstr(err.message, "record 3: outcomes.correctness is 'yes', not a number"));
    assert_int_equal(lr_store_count(s), 3);
    lr_store_free(s);

    path_in(db, sizeof(db), "edited-dense.db");
    lr_store_options_init(&o);
    o.embedder = "openai:fake";
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    hash_vector("first query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(s, "first query", 5, "m", 1, 7, v, 8, &err), 0);
    hash_vector("second query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(s, "second query", 5, "n", 0, 3, v, 8, &err), 0);
    lr_store_free(s);
    sql_edit(db, "UPDATE records SET input_tokens = -1 WHERE id = 1");
    s = NULL;
    assert_int_equal(lr_store_open(db, &o, &s, &err), LR_ESTORE);
    assert_null(s);
    assert_non_null(strstr(err.message, db));
    assert_non_null(strstr(err.message, "record 1: records.input_tokens is -1, not a whole number"));
}

/* A dense reader learns the dimension and the vectors another connection
 * wrote when it refreshes. */
static void dense_refresh_reads_another_connections_vectors(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *a = NULL, *b = NULL;
    struct lr_error err;
    struct lr_store_options o = {"openai:fake", 0, 0, 0, 0, 0};
    float v[8], sim;
    int changed = -1;
    path_in(db, sizeof(db), "refresh-dense.db");
    assert_int_equal(lr_store_open(db, &o, &a, &err), 0);
    assert_int_equal(lr_store_open(db, &o, &b, &err), 0);
    hash_vector("first query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(a, "first query", 5, "m", 1, 7, v, 8, &err), 0);
    hash_vector("second query", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(a, "second query", 5, "n", 0, 3, v, 8, &err), 0);
    assert_int_equal(lr_store_count(b), 0);
    assert_int_equal(lr_store_dim(b), 0);

    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(lr_store_count(b), 2);
    assert_int_equal(lr_store_dim(b), 8);
    assert_int_equal(nearest_by_vector(b, "second query", 8, &sim), 1);
    assert_true(sim > 0.999f);
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 0);
    lr_store_free(a);
    lr_store_free(b);
}

/* A store cut short (its first 50 bytes): the open fails with SQLite's
 * reason. The message was taken after a ROLLBACK, which resets it to
 * "not an error". */
static void truncated_store_is_refused_with_sqlites_reason(void **st)
{
    char good[512], cut[512], buf[64];
    struct lr_store *s = NULL;
    struct lr_error err;
    FILE *f;
    size_t n;
    (void)st;

    path_in(good, sizeof(good), "whole.db");
    assert_int_equal(lr_store_open(good, NULL, &s, &err), 0);
    assert_int_equal(lr_store_add_outcome(s, "a query", 5, "m", 1.0, 3, &err), 0);
    lr_store_free(s);
    s = NULL;
    f = fopen(good, "rb");
    assert_non_null(f);
    n = fread(buf, 1, 50, f);
    fclose(f);
    assert_int_equal(n, 50);
    path_in(cut, sizeof(cut), "cut.db");
    f = fopen(cut, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, 50, f), 50);
    fclose(f);

    assert_int_not_equal(lr_store_open(cut, NULL, &s, &err), 0);
    assert_null(s);
    assert_null(strstr(err.message, "not an error"));
    assert_non_null(strstr(err.message, "malformed"));
    assert_non_null(strstr(err.message, cut));
    struct stat sb;
    assert_int_equal(stat(cut, &sb), 0);
    assert_int_equal(sb.st_size, 50);
}

/* SQLite takes a file shorter than its header for an empty database: a
 * 1-byte file (or one holding only the start of the header) would become a
 * store. Refused with the words SQLite uses for a longer non-database, and
 * left as it was, whether opened to write or to read. */
static void short_non_database_file_is_refused_and_left_alone(void **st)
{
    static const char *const bodies[] = {"h", "SQLite", "x\n"};
    (void)st;
    for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
        struct lr_store_options ro = {0};
        struct lr_store *s = NULL;
        struct lr_error err;
        char name[32], p[512], back[16] = "";
        FILE *f;
        snprintf(name, sizeof(name), "short-%zu.db", i);
        snprintf(p, sizeof(p), "%s", write_file(name, bodies[i]));
        for (int read_only = 0; read_only <= 1; read_only++) {
            ro.read_only = read_only;
            assert_int_equal(lr_store_open(p, &ro, &s, &err), LR_ESTORE);
            assert_null(s);
            assert_non_null(strstr(err.message, "file is not a database"));
            assert_non_null(strstr(err.message, p));
        }
        f = fopen(p, "rb");
        assert_non_null(f);
        assert_int_equal(fread(back, 1, sizeof(back) - 1, f), strlen(bodies[i]));
        fclose(f);
        assert_string_equal(back, bodies[i]);
    }
}

/* Another program's SQLite database at the path is refused, writable or
 * read-only, and left as it was: no store tables are added to it and its
 * journal mode is not turned to WAL. An empty database is made a store,
 * but not by a read-only open. */
static void other_programs_database_is_refused_and_left_as_it_was(void **st)
{
    char p[512], want[600];
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    (void)st;
    path_in(p, sizeof(p), "other-program.db");
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE notes(x TEXT); INSERT INTO notes VALUES('a');",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    snprintf(want, sizeof(want), "'%s' is a SQLite database but not a history store", p);
    for (int read_only = 0; read_only <= 1; read_only++) {
        struct lr_store_options o = {0};
        struct lr_store *s = NULL;
        struct lr_error err = {0};
        o.read_only = read_only;
        assert_int_equal(lr_store_open(p, &o, &s, &err), LR_ESTORE);
        assert_null(s);
        assert_string_equal(err.message, want);
    }
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sqlite_master", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 1);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "delete");
    sqlite3_finalize(q);
    sqlite3_close(db);

    /* A database with no tables at all is made a store by a writable open
     * only: a read-only one is refused, saying it is no store. */
    path_in(p, sizeof(p), "no-tables.db");
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 7;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    {
        struct lr_store_options o = {0};
        struct lr_store *s = NULL;
        struct lr_error err = {0};
        o.read_only = 1;
        assert_int_equal(lr_store_open(p, &o, &s, &err), LR_ESTORE);
        assert_null(s);
        snprintf(want, sizeof(want), "'%s' is not a history store (opened read-only)", p);
        assert_string_equal(err.message, want);
        o.read_only = 0;
        assert_int_equal(lr_store_open(p, &o, &s, &err), 0);
        assert_int_equal(lr_store_count(s), 0);
        lr_store_free(s);
    }
}

static void missing_file_is_an_io_error(void **st)
{
    (void)st;
    struct lr_store *s = open_mem();
    struct lr_error err;
    char p[512];
    assert_int_equal(lr_store_import_file(s, path_in(p, sizeof(p), "nope.json"), NULL, NULL, &err),
                     LR_EIO);
    assert_int_equal(lr_store_import_file(s, write_file("empty.json", " \n"), NULL, NULL, &err),
                     0);
    assert_int_equal(lr_store_count(s), 0);
    lr_store_free(s);
}

/* What is not a regular file is refused with LR_EIO saying so (a folder as
 * one), and a file over LR_DATA_FILE_MAX (1 GiB) with LR_ETOOBIG, before a
 * byte is read; with lr_import_options.name every message names the data
 * by it, as for a caller that copied standard input to a file. */
static void import_refuses_what_it_cannot_read_naming_the_data(void **st)
{
    struct lr_store *s = open_mem();
    struct lr_import_options io;
    struct lr_error err = {0};
    char p[512], want[700];
    FILE *f;
    (void)st;
    assert_int_equal(lr_store_import_file(s, tmpdir, NULL, NULL, &err), LR_EIO);
    snprintf(want, sizeof(want), "cannot read '%s': it is a directory", tmpdir);
    assert_string_equal(err.message, want);
    assert_int_equal(lr_store_import_file(s, "/dev/null", NULL, NULL, &err), LR_EIO);
    assert_string_equal(err.message, "cannot read '/dev/null': not a regular file");

    /* Sparse: its size is all that is looked at. */
    path_in(p, sizeof(p), "over-a-gib.jsonl");
    f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), (off_t)LR_DATA_FILE_MAX + 1), 0);
    fclose(f);
    assert_int_equal(lr_store_import_file(s, p, NULL, NULL, &err), LR_ETOOBIG);
    snprintf(want, sizeof(want),
             "'%s' is 1073741825 bytes, over the cap of 1073741824 bytes for a data file", p);
    assert_string_equal(err.message, want);

    lr_import_options_init(&io);
    io.name = "standard input";
    assert_int_equal(lr_store_import_file(s, p, &io, NULL, &err), LR_ETOOBIG);
    assert_string_equal(err.message, "'standard input' is 1073741825 bytes, over the cap of "
                                     "1073741824 bytes for a data file");
    io.strict = 1;
    assert_int_equal(lr_store_import_file(s, write_file("bad.json", BAD), &io, NULL, &err),
                     LR_EPARSE);
    assert_string_equal(err.message, "standard input: record 1 (line 3): outputs[1].correctness: "
                                     "expected a boolean or a number in [0,1]");
    assert_int_equal(lr_store_count(s), 0);
    lr_store_free(s);
}

/* ==== Rebuilding on several threads ==== */

/* A store of `n` records of made-up text (a fixed generator): enough
 * distinct words that the records spread over many groups. */
static const char *write_synthetic(const char *name, size_t n)
{
    static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "qua", "zen",
                                "bor", "dil", "fep", "gux", "hay", "jot"};
    static char p[512];
    uint64_t r = 88172645463325252ull;
    path_in(p, sizeof(p), name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) {
        fputs("{\"query\": \"", f);
        int words = 4 + (int)(i % 23);
        for (int w = 0; w < words; w++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            /* A skewed vocabulary: low word numbers are common. */
            unsigned v = (unsigned)(r % 400) * (unsigned)((r >> 20) % 400) / 400;
            fprintf(f, "%s%s%s%s", w ? " " : "", syl[v % 16], syl[(v / 16) % 16],
                    v >= 256 ? syl[(v / 7) % 16] : "");
        }
        fprintf(f,
                "\", \"input_token_length\": %zu, \"eval_name\": \"t\", \"outputs\": ["
                "{\"model_name\": \"small\", \"correctness\": %d, \"output_token_length\": %zu},"
                " {\"model_name\": \"big\", \"correctness\": %d, \"output_token_length\": 9}]}\n",
                10 + i % 40, (int)(r >> 40) & 1, 1 + i % 17, (int)(r >> 41) & 1);
    }
    fclose(f);
    return p;
}

/* The store at `path` opened with `threads`. */
static struct lr_store *open_threads(const char *path, int threads)
{
    struct lr_store_options o = {NULL, 0, 1, 0, threads, 0};
    struct lr_store *s = NULL;
    struct lr_error err;
    assert_int_equal(lr_store_open(path, &o, &s, &err), 0);
    return s;
}

/* Two copies of one store hold the same weights, groups and answers. */
static void assert_same_copy(struct lr_store *a, struct lr_store *b, const char *jsonl)
{
    struct lr__store_scratch sa, sb;
    struct lr__neighbor na[10], nb[10];
    char line[4096];
    int queries = 0;

    lr__store_rdlock(a);
    lr__store_rdlock(b);
    const struct lr__hist *ha = lr__store_hist(a), *hb = lr__store_hist(b);
    assert_int_equal(ha->n, hb->n);
    assert_int_equal(ha->df_ndocs, hb->df_ndocs);
    assert_memory_equal(ha->df, hb->df, LR__TFIDF_SPACE * sizeof(*ha->df));
    const struct lr__groups *ga = &ha->groups, *gb = &hb->groups;
    assert_true(ga->n > 8);
    assert_int_equal(ga->n, gb->n);
    assert_memory_equal(ga->of, gb->of, ha->n * sizeof(*ga->of));
    assert_int_equal(ga->n_cfeat, gb->n_cfeat);
    assert_memory_equal(ga->cfeat, gb->cfeat, ga->n_cfeat * sizeof(*ga->cfeat));
    assert_memory_equal(ga->stats, gb->stats, ga->n * ha->models.n * sizeof(*ga->stats));

    /* Every tenth record's text as a query, and each cut in half. */
    lr__store_scratch_init(&sa);
    lr__store_scratch_init(&sb);
    FILE *f = fopen(jsonl, "r");
    assert_non_null(f);
    for (size_t i = 0; fgets(line, sizeof(line), f); i++) {
        if (i % 10)
            continue;
        char *q = strstr(line, "\"query\": \"") + 10;
        *strchr(q, '"') = '\0';
        for (int half = 0; half < 2; half++) {
            size_t len = half ? strlen(q) / 2 : strlen(q);
            int n = lr__store_knn_text(a, q, len, 10, &sa, na);
            assert_int_equal(n, lr__store_knn_text(b, q, len, 10, &sb, nb));
            assert_true(n > 0);
            for (int k = 0; k < n; k++) {
                assert_int_equal(na[k].doc, nb[k].doc);
                assert_memory_equal(&na[k].sim, &nb[k].sim, sizeof(float));
                assert_int_equal(ga->of[na[k].doc], gb->of[nb[k].doc]);
            }
            queries++;
        }
    }
    fclose(f);
    assert_true(queries > 100);
    lr__store_unlock(b);
    lr__store_unlock(a);
    lr__store_scratch_free(&sa);
    lr__store_scratch_free(&sb);
}

static void copy_is_the_same_on_any_number_of_threads(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options w = {NULL, 0, 0, 0, 3, 0};
    size_t saved = lr__store_parallel_min, saved_batch = lr__store_text_batch;

    /* 3,000 records over up to 7 chunks of uneven sizes, read in batches of
     * 700 (the last one 200 records long), against a copy read in one
     * batch on one thread. */
    lr__store_parallel_min = 256;
    lr__store_text_batch = 700;
    const char *jsonl = write_synthetic("many.jsonl", 3000);
    assert_int_equal(lr_store_open(path_in(db, sizeof(db), "many.db"), &w, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, jsonl, NULL, NULL, &err), 0);
    assert_int_equal(lr_store_count(s), 3000);

    lr__store_text_batch = 1u << 20;
    struct lr_store *one = open_threads(db, 1);
    lr__store_text_batch = 700;
    struct lr_store *several[] = {open_threads(db, 1), open_threads(db, 2), open_threads(db, 7),
                                  s};
    for (size_t i = 0; i < sizeof(several) / sizeof(*several); i++)
        assert_same_copy(one, several[i], jsonl);
    /* Below the threshold no thread starts; the copy is the same again,
     * also with batches of a single record and of a size that does not
     * divide the count. */
    lr__store_parallel_min = 1u << 20;
    struct lr_store *unthreaded = open_threads(db, 7);
    assert_same_copy(one, unthreaded, jsonl);
    lr__store_parallel_min = 256;
    lr__store_text_batch = 1;
    struct lr_store *single = open_threads(db, 2);
    assert_same_copy(one, single, jsonl);
    lr__store_text_batch = 1999;
    struct lr_store *uneven = open_threads(db, 7);
    assert_same_copy(one, uneven, jsonl);
    lr__store_parallel_min = saved;
    lr__store_text_batch = saved_batch;

    lr_store_free(uneven);
    lr_store_free(single);
    lr_store_free(unthreaded);
    for (size_t i = 0; i < sizeof(several) / sizeof(*several); i++)
        lr_store_free(several[i]);
    lr_store_free(one);
}

/* ==== Rebuilds beside the writers ==== */

/* The rebuild hook (lr__store_rebuild_hook) as a gate: the rebuilding
 * thread says it has built its copy from the snapshot, then waits until the
 * test opens the gate (at most a minute), and returns gate.result. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int paused, open, calls, result;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

static struct timespec in_seconds(int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    return ts;
}

static int gate_hook(struct lr_store *s)
{
    (void)s;
    struct timespec until = in_seconds(60);
    int r;
    pthread_mutex_lock(&gate.mu);
    gate.calls++;
    gate.paused = 1;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.open && pthread_cond_timedwait(&gate.cv, &gate.mu, &until) != ETIMEDOUT)
        ;
    gate.paused = 0;
    r = gate.result;
    pthread_mutex_unlock(&gate.mu);
    return r;
}

/* Set the hook; `open`: rebuilds go straight through (returning result). */
static void gate_arm(int open, int result)
{
    pthread_mutex_lock(&gate.mu);
    gate.paused = 0;
    gate.open = open;
    gate.calls = 0;
    gate.result = result;
    pthread_mutex_unlock(&gate.mu);
    lr__store_rebuild_hook = gate_hook;
}

/* 1 when a rebuild reached the hook within `seconds`. */
static int gate_wait_paused(int seconds)
{
    struct timespec until = in_seconds(seconds);
    int paused;
    pthread_mutex_lock(&gate.mu);
    while (!gate.paused && pthread_cond_timedwait(&gate.cv, &gate.mu, &until) != ETIMEDOUT)
        ;
    paused = gate.paused;
    pthread_mutex_unlock(&gate.mu);
    return paused;
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

static int gate_calls(void)
{
    pthread_mutex_lock(&gate.mu);
    int n = gate.calls;
    pthread_mutex_unlock(&gate.mu);
    return n;
}

/* The outcome the rebuild tests append with each query (a function of the
 * query alone, so that a reference store can append the same). */
static int add_late(struct lr_store *s, const char *q, const char *model)
{
    struct lr_error err;
    size_t n = strlen(q);
    if (lr__store_is_dense(s)) {
        float v[8];
        hash_vector(q, v, 8);
        return lr_store_add_outcome_vec(s, q, -1, model, (double)(n % 2), 2.0 + (double)(n % 5),
                                        v, 8, &err);
    }
    return lr_store_add_outcome(s, q, -1, model, (double)(n % 2), 2.0 + (double)(n % 5), &err);
}

/* Appends on a thread of their own: each query with one outcome of
 * `model`; rc is the first failure (0: all in). */
struct appender {
    struct lr_store *s;
    const char *const *queries;
    size_t n;
    const char *model;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int rc, done;
};

static void *appender_main(void *arg)
{
    struct appender *a = arg;
    int rc = 0;
    for (size_t i = 0; i < a->n && rc == 0; i++)
        rc = add_late(a->s, a->queries[i], a->model);
    pthread_mutex_lock(&a->mu);
    a->rc = rc;
    a->done = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void appender_start(struct appender *a, struct lr_store *s, const char *const *queries,
                           size_t n, const char *model)
{
    memset(a, 0, sizeof(*a));
    a->s = s;
    a->queries = queries;
    a->n = n;
    a->model = model;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    assert_int_equal(pthread_create(&a->thread, NULL, appender_main, a), 0);
}

/* 1 when the appends finished within `seconds`. */
static int appender_done_within(struct appender *a, int seconds)
{
    struct timespec until = in_seconds(seconds);
    int done;
    pthread_mutex_lock(&a->mu);
    while (!a->done && pthread_cond_timedwait(&a->cv, &a->mu, &until) != ETIMEDOUT)
        ;
    done = a->done;
    pthread_mutex_unlock(&a->mu);
    return done;
}

static int appender_join(struct appender *a)
{
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    return a->rc;
}

/* A routing thread's read of the copy, on a thread of its own: started
 * once it is about to take the read lock, got once it has it. */
struct late_reader {
    struct lr_store *s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, got;
};

static void *late_reader_main(void *arg)
{
    struct late_reader *r = arg;
    pthread_mutex_lock(&r->mu);
    r->started = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    lr__store_rdlock(r->s);
    pthread_mutex_lock(&r->mu);
    r->got = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    lr__store_unlock(r->s);
    return NULL;
}

/* 1 when the reader had the read lock within ms milliseconds of starting
 * to take it. */
static int late_reader_got_within(struct late_reader *r, long ms)
{
    struct timespec until = in_seconds(60);
    int got;
    pthread_mutex_lock(&r->mu);
    while (!r->started && pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
        ;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (ms % 1000) * 1000000L;
    until.tv_sec += ms / 1000 + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    while (!r->got && pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
        ;
    got = r->got;
    pthread_mutex_unlock(&r->mu);
    return got;
}

/* An append waiting for the write lock holds back the readers that come
 * after it. Routing threads take the read lock for each request, so under
 * load their holds overlap without a gap: with readers preferred (glibc's
 * default, which the store's lock had, its writer preference never set)
 * an append or a refresh's publish waited for a gap, seconds at a time
 * (13 appends in 10 s beside three routing threads, against thousands).
 * Here a reader holds the lock, an append waits for it, and a reader that
 * comes later must wait too, until the append is in. */
static void a_waiting_append_holds_back_later_readers(void **state)
{
    (void)state;
    static const char *const q[] = {"what is the capital of france"};
    struct lr_store *s = open_mem();
    struct appender a;
    struct late_reader r;
    int held_back = 0;

    lr__store_rdlock(s); /* a routing thread, in */
    appender_start(&a, s, q, 1, "small");
    /* The append reaches the write lock soon; until it waits there, a
     * reader gets in, and another is tried. Tried for up to 120 s, not a
     * count of tries: under sanitizers on a loaded machine the append took
     * over 50 tries of 200 ms to get there. A lock that lets readers pass a
     * waiting writer lets every one in, so the test still fails on it. */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (t = t0; !held_back && t.tv_sec - t0.tv_sec < 120; clock_gettime(CLOCK_MONOTONIC, &t)) {
        memset(&r, 0, sizeof(r));
        r.s = s;
        pthread_mutex_init(&r.mu, NULL);
        pthread_cond_init(&r.cv, NULL);
        assert_int_equal(pthread_create(&r.thread, NULL, late_reader_main, &r), 0);
        held_back = !late_reader_got_within(&r, 200);
        if (!held_back) {
            pthread_join(r.thread, NULL);
            pthread_mutex_destroy(&r.mu);
            pthread_cond_destroy(&r.cv);
        }
    }
    lr__store_unlock(s);
    if (held_back) {
        pthread_join(r.thread, NULL);
        pthread_mutex_destroy(&r.mu);
        pthread_cond_destroy(&r.cv);
    }
    assert_int_equal(appender_join(&a), 0);
    assert_true(held_back);
    assert_int_equal(lr_store_count(s), 1);
    lr_store_free(s);
}

/* The call that rebuilds, on a thread of its own: a refresh of s when
 * queries is NULL, else the appends of queries to s (one outcome of model
 * each, as add_late makes them). rc is the refresh's result or the first
 * append's failure (0: all in); changed is the refresh's. */
struct rebuilder {
    struct lr_store *s;
    const char *const *queries;
    size_t n;
    const char *model;
    pthread_t thread;
    int rc, changed;
};

static void *rebuilder_main(void *arg)
{
    struct rebuilder *r = arg;
    struct lr_error err;
    if (!r->queries) {
        r->rc = lr_store_refresh(r->s, &r->changed, &err);
        return NULL;
    }
    r->rc = 0;
    for (size_t i = 0; i < r->n && r->rc == 0; i++)
        r->rc = add_late(r->s, r->queries[i], r->model);
    return NULL;
}

/* The database at `from` as it is now, copied to `to` (SQLite's backup:
 * one consistent moment, whatever the WAL holds). */
static void copy_db(const char *from, const char *to)
{
    sqlite3 *src = NULL, *dst = NULL;
    unlink(to);
    assert_int_equal(sqlite3_open(from, &src), SQLITE_OK);
    assert_int_equal(sqlite3_open(to, &dst), SQLITE_OK);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    assert_non_null(b);
    assert_int_equal(sqlite3_backup_step(b, -1), SQLITE_DONE);
    assert_int_equal(sqlite3_backup_finish(b), SQLITE_OK);
    sqlite3_close(src);
    sqlite3_close(dst);
}

/* The copies' outcomes, models and model totals (the predictor's input
 * besides the neighbours and groups that assert_same_copy compares). */
static void assert_same_outcomes(struct lr_store *a, struct lr_store *b)
{
    lr__store_rdlock(a);
    lr__store_rdlock(b);
    const struct lr__hist *ha = lr__store_hist(a), *hb = lr__store_hist(b);
    assert_int_equal(ha->n, hb->n);
    assert_int_equal(ha->n_outs, hb->n_outs);
    assert_memory_equal(ha->out_start, hb->out_start, (ha->n + 1) * sizeof(*ha->out_start));
    assert_memory_equal(ha->outs, hb->outs, ha->n_outs * sizeof(*ha->outs));
    assert_int_equal(ha->models.n, hb->models.n);
    for (size_t i = 0; i < ha->models.n; i++)
        assert_string_equal(ha->models.names[i], hb->models.names[i]);
    assert_memory_equal(ha->mstats, hb->mstats, ha->models.n * sizeof(*ha->mstats));
    assert_int_equal(ha->out_rowid, hb->out_rowid);
    lr__store_unlock(b);
    lr__store_unlock(a);
}

/* `b` is a fresh open of the file `ref` followed by the appends `queries`
 * (each one outcome of `model`, as the appender makes them): the copy the
 * old code gives for a rebuild followed by those appends. */
static struct lr_store *reference(const char *ref, const char *const *queries, size_t n,
                                  const char *model, const char *embedder)
{
    struct lr_store *r = NULL;
    struct lr_store_options w = {embedder, 0, 0, 0, 1, 0};
    struct lr_error err;
    assert_int_equal(lr_store_open(ref, &w, &r, &err), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(add_late(r, queries[i], model), 0);
    return r;
}

/* `s` holds the same copy and the same outcomes as `other` (see
 * assert_same_copy and assert_same_outcomes); `other` is then freed. */
static void assert_same_then_free(struct lr_store *s, struct lr_store *other, const char *jsonl)
{
    assert_same_copy(s, other, jsonl);
    assert_same_outcomes(s, other);
    lr_store_free(other);
}

/* The copy `s` serves now. */
static const struct lr__hist *current_copy(struct lr_store *s)
{
    lr__store_rdlock(s);
    const struct lr__hist *h = lr__store_hist(s);
    lr__store_unlock(s);
    return h;
}

/* The files of one rebuild test, NAME its name, in the temporary directory. */
struct rebuild_files {
    char jsonl[512]; /* NAME.jsonl: the synthetic records the store starts with */
    char more[512];  /* NAME-more.jsonl: more of them, for another handle to import */
    char db[512];    /* NAME.db: the store */
    char ref[512];   /* NAME-ref.db: the store as a paused rebuild's snapshot held it */
};

/* Clears the rebuild hook (whatever an earlier test left), writes
 * NAME.jsonl with `n` synthetic records and, when `n_more` is not 0,
 * NAME-more.jsonl with `n_more`, and names the databases. */
static void rebuild_fixture(struct rebuild_files *f, const char *name, size_t n, size_t n_more)
{
    char file[128];
    lr__store_rebuild_hook = NULL;
    snprintf(file, sizeof(file), "%s.jsonl", name);
    snprintf(f->jsonl, sizeof(f->jsonl), "%s", write_synthetic(file, n));
    f->more[0] = '\0';
    if (n_more) {
        snprintf(file, sizeof(file), "%s-more.jsonl", name);
        snprintf(f->more, sizeof(f->more), "%s", write_synthetic(file, n_more));
    }
    snprintf(file, sizeof(file), "%s.db", name);
    path_in(f->db, sizeof(f->db), file);
    snprintf(file, sizeof(file), "%s-ref.db", name);
    path_in(f->ref, sizeof(f->ref), file);
}

/* The store at `db` opened with `o`, with the records of `jsonl` imported
 * (with `io`) when `jsonl` is not NULL. */
static struct lr_store *open_imported(const char *db, const struct lr_store_options *o,
                                      const char *jsonl, const struct lr_import_options *io)
{
    struct lr_store *s = NULL;
    struct lr_error err;
    assert_int_equal(lr_store_open(db, o, &s, &err), 0);
    if (jsonl)
        assert_int_equal(lr_store_import_file(s, jsonl, io, NULL, &err), 0);
    return s;
}

/* Runs `rb` on a thread of its own with the rebuild hook pausing its
 * rebuild after the snapshot. While it is paused, `count_when_paused`
 * (when not NULL) gets rb->s's count, the database `db` is copied to `ref`
 * (what the snapshot holds), and the appends `queries` (one outcome of
 * "newcomer" each) go to `to` on another thread: they must all go in, and
 * within 30 s, not waiting for the rebuild. Then the rebuild goes on.
 * Every thread is joined before its results are asserted. Returns the number
 * of rebuilds the hook saw. */
static int append_beside_a_paused_rebuild(struct rebuilder *rb, const char *db, const char *ref,
                                          struct lr_store *to, const char *const *queries,
                                          size_t n, size_t *count_when_paused)
{
    struct appender ap;
    int done, paused;

    gate_arm(0, 0);
    assert_int_equal(pthread_create(&rb->thread, NULL, rebuilder_main, rb), 0);
    paused = gate_wait_paused(30);
    if (count_when_paused)
        *count_when_paused = lr_store_count(rb->s);
    copy_db(db, ref); /* what the snapshot holds */
    appender_start(&ap, to, queries, n, "newcomer");
    done = appender_done_within(&ap, 30);
    gate_open();
    pthread_join(rb->thread, NULL);
    lr__store_rebuild_hook = NULL;
    assert_int_equal(appender_join(&ap), 0);
    assert_true(paused);
    assert_true(done); /* the appends did not wait for the rebuild */
    return gate_calls();
}

static const char *const LATE[] = {"kalo mine rusa a late record about totoqua",
                                   "zenbor dilfep guxhay jotka appended meanwhile",
                                   "visa tomi kane the third one"};

/* A refresh that finds another connection's commit builds its copy without
 * wmu: appends to the same handle go through while it is paused after its
 * snapshot, and afterwards the copy holds the snapshot's records and the
 * appended ones, equal to the old code's rebuild followed by those appends.
 * With nothing appended meanwhile it equals a fresh open. */
static void refresh_rebuilds_while_appends_go_on(void **st)
{
    (void)st;
    struct rebuild_files f;
    struct lr_store *a, *b;
    struct lr_store_options w = {NULL, 0, 0, 0, 2, 0};
    struct lr_error err;
    struct rebuilder rf = {0};
    int changed = -1;

    rebuild_fixture(&f, "rb-refresh", 1600, 0);
    a = open_imported(f.db, &w, f.jsonl, NULL);
    b = open_imported(f.db, &w, NULL, NULL);

    /* Nothing appended meanwhile: the refreshed copy is a fresh open's. */
    assert_int_equal(lr_store_add_outcome(a, "from the other handle", -1, "big", 1, 4, &err), 0);
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_same_then_free(b, open_threads(f.db, 1), f.jsonl);

    /* Another commit; the refresh pauses after its snapshot. */
    assert_int_equal(lr_store_add_outcome(a, "one more from the other handle", -1, "small", 0, 2,
                                          &err),
                     0);
    rf.s = b;
    assert_int_equal(append_beside_a_paused_rebuild(&rf, f.db, f.ref, b, LATE, 3, NULL), 1);
    assert_int_equal(rf.rc, 0);
    assert_int_equal(rf.changed, 1);

    assert_int_equal(lr_store_count(b), 1605);
    assert_int_equal(nearest_by_text(b, LATE[1]), 1603);
    assert_same_then_free(b, reference(f.ref, LATE, 3, "newcomer", NULL), f.jsonl);
    /* The copy matches the file: nothing more to read. */
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 0);
    lr_store_free(a);
    lr_store_free(b);
}

/* The append that grows the store by a quarter commits its record, then
 * the re-weighing runs without wmu: another thread's appends go through
 * while it is paused after its snapshot, and the re-weighed copy equals a
 * fresh open of the snapshot followed by those appends. */
static void reweigh_runs_while_appends_go_on(void **st)
{
    (void)st;
    struct rebuild_files f;
    struct lr_store *s;
    struct lr_store_options w = {NULL, 0, 0, 0, 2, 0};
    static const char *const CROSSING[] = {"the record that makes the quarter"};
    struct rebuilder crossing = {0};
    size_t in_when_paused = 0;

    rebuild_fixture(&f, "rb-reweigh", 1600, 415);
    s = open_imported(f.db, &w, f.jsonl, NULL);
    /* Another handle brings the store to one short of 1600 + 400 + 16; s
     * catches up with those rows in place, then its append is the one. */
    lr_store_free(open_imported(f.db, &w, f.more, NULL));

    crossing.s = s;
    crossing.queries = CROSSING;
    crossing.n = 1;
    crossing.model = "small";
    assert_int_equal(
        append_beside_a_paused_rebuild(&crossing, f.db, f.ref, s, LATE, 3, &in_when_paused), 1);
    assert_int_equal(crossing.rc, 0);
    assert_int_equal(in_when_paused, 2016); /* its record was in already */

    assert_int_equal(lr_store_count(s), 2019);
    assert_same_then_free(s, reference(f.ref, LATE, 3, "newcomer", NULL), f.jsonl);
    lr_store_free(s);
}

/* A writer whose catch-up finds many rows another connection committed
 * rolls back and rebuilds without holding SQLite's write lock: the other
 * connection can write meanwhile (before, it waited for the rebuild, and
 * past the busy timeout failed). Then the writer appends after them all. */
static void writer_rebuilds_outside_the_write_lock(void **st)
{
    (void)st;
    struct rebuild_files f;
    struct lr_store *s, *o;
    struct lr_store_options w = {NULL, 0, 0, 0, 2, 0};
    static const char *const MINE[] = {"the writer's own record after the rebuild"};
    static const char *const ALL[] = {"kalo mine rusa a late record about totoqua",
                                      "zenbor dilfep guxhay jotka appended meanwhile",
                                      "the writer's own record after the rebuild"};
    struct rebuilder mine = {0};

    rebuild_fixture(&f, "rb-catchup", 1600, 600);
    s = open_imported(f.db, &w, f.jsonl, NULL);
    o = open_imported(f.db, &w, f.more, NULL);

    /* The other connection's appends go in (not LR_EBUSY) while the
     * writer's rebuild is paused. */
    mine.s = s;
    mine.queries = MINE;
    mine.n = 1;
    mine.model = "newcomer";
    assert_int_equal(append_beside_a_paused_rebuild(&mine, f.db, f.ref, o, LATE, 2, NULL), 1);
    assert_int_equal(mine.rc, 0);

    assert_int_equal(lr_store_count(s), 2203);
    assert_int_equal(nearest_by_text(s, MINE[0]), 2202);
    /* The other connection's two appends, then the writer's own. */
    assert_same_then_free(s, reference(f.ref, ALL, 3, "newcomer", NULL), f.jsonl);
    lr_store_free(o);
    lr_store_free(s);
}

/* A rebuild that fails after its snapshot (here the hook says out of
 * memory) keeps the old copy; appends go on, catching up in place, and
 * the re-weighing an append makes due fails quietly without losing it. */
static void failed_rebuild_keeps_the_old_copy_and_appends_go_on(void **st)
{
    (void)st;
    struct rebuild_files f;
    struct lr_store *s, *o;
    struct lr_store_options w = {NULL, 0, 0, 0, 2, 0};
    struct lr_error err;
    const struct lr__hist *before;
    int changed = -1;

    rebuild_fixture(&f, "rb-fail", 300, 0);
    s = open_imported(f.db, &w, f.jsonl, NULL);
    o = open_imported(f.db, &w, NULL, NULL);
    assert_int_equal(lr_store_add_outcome(o, "from the other handle", -1, "big", 1, 4, &err), 0);

    gate_arm(1, LR_ENOMEM);
    before = current_copy(s);
    assert_int_equal(lr_store_refresh(s, &changed, &err), LR_ENOMEM);
    assert_int_equal(changed, 0);
    assert_non_null(strstr(err.message, f.db));
    assert_ptr_equal(current_copy(s), before);
    assert_int_equal(lr_store_count(s), 300);

    /* Appends go on: 300 + 75 + 16 is where the re-weighing is due. */
    for (int i = 0; i < 95; i++) {
        char q[64];
        snprintf(q, sizeof(q), "appended record number %d", i);
        assert_int_equal(lr_store_add_outcome(s, q, -1, "small", 1, 3, &err), 0);
    }
    assert_true(gate_calls() >= 2); /* the refresh and the re-weighing */
    lr__store_rebuild_hook = NULL;
    assert_int_equal(lr_store_count(s), 396);
    assert_int_equal(nearest_by_text(s, "appended record number 94"), 395);
    assert_int_equal(nearest_by_text(s, "from the other handle"), 300);
    assert_int_equal(lr_store_refresh(s, &changed, &err), 0);
    assert_int_equal(changed, 0);
    lr_store_free(o);
    lr_store_free(s);
}

/* A rebuild's second connection reads the file the store opened, not
 * whatever its path names later: a store opened by a relative path keeps
 * its own records and models through a re-weigh made after the process has
 * moved to a directory holding another store of that name (before, the
 * re-weighed copy was the other store's, and ids were taken from it). */
static void rebuild_reads_the_file_opened_not_its_path(void **st)
{
    char cwd[1024], d1[512], d2[512], q[64], abs1[600];
    struct lr_store *a = NULL, *o = NULL, *r = NULL;
    struct lr_error err;
    (void)st;

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    path_in(d1, sizeof(d1), "cwd-one");
    path_in(d2, sizeof(d2), "cwd-two");
    assert_int_equal(mkdir(d1, 0700), 0);
    assert_int_equal(mkdir(d2, 0700), 0);
    assert_int_equal(chdir(d2), 0);
    assert_int_equal(lr_store_open("h.db", NULL, &o, &err), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(q, sizeof(q), "another store's query %d", i);
        assert_int_equal(lr_store_add_outcome(o, q, 5, "other-model", 1.0, 3, &err), 0);
    }
    lr_store_free(o);
    assert_int_equal(chdir(d1), 0);
    assert_int_equal(lr_store_open("h.db", NULL, &a, &err), 0);
    assert_int_equal(chdir(d2), 0);
    gate_arm(1, 0);
    for (int i = 0; i < 20; i++) {
        snprintf(q, sizeof(q), "this store's query %d", i);
        assert_int_equal(lr_store_add_outcome(a, q, 5, "real-model", 1.0, 3, &err), 0);
    }
    assert_true(gate_calls() >= 1); /* a re-weigh ran beside the writers */
    lr__store_rebuild_hook = NULL;
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(lr_store_count(a), 20);
    assert_int_equal(lr__hist_model_id(lr__store_hist(a), "other-model"), -1);
    assert_int_equal(lr__hist_model_id(lr__store_hist(a), "real-model"), 0);
    /* And a new model takes the file's next id. */
    assert_int_equal(lr_store_add_outcome(a, "one more", 5, "other-model", 1.0, 3, &err), 0);
    assert_int_equal(lr_store_add_outcome(a, "and another", 5, "real-model", 1.0, 3, &err), 0);
    snprintf(abs1, sizeof(abs1), "%s/h.db", d1);
    assert_int_equal(lr_store_open(abs1, NULL, &r, &err), 0);
    assert_int_equal(lr_store_count(r), 22);
    assert_int_equal(lr__hist_model_id(lr__store_hist(r), "real-model"), 0);
    assert_int_equal(lr__hist_model_id(lr__store_hist(r), "other-model"), 1);
    lr_store_free(r);
    lr_store_free(a);
}

/* A store moved to the path of an open one (an atomic deploy of a new
 * history): the handle refuses to write to the file it opened, which no
 * one will open again, and empties the old file's -wal left at the path,
 * so the next writer of the new file does not apply it there; its refresh
 * then opens the new file. */
static void write_after_the_file_was_replaced_is_refused_then_refresh_opens_the_new_one(
    void **st)
{
    char p[512], np[512], wal[520], q[64];
    struct lr_store *a = NULL, *n = NULL, *o = NULL;
    struct lr_error err;
    struct stat sb;
    int changed = -1;
    (void)st;

    path_in(p, sizeof(p), "swap.db");
    path_in(np, sizeof(np), "swap-new.db");
    snprintf(wal, sizeof(wal), "%s-wal", p);
    assert_int_equal(lr_store_open(p, NULL, &a, &err), 0);
    for (int i = 0; i < 30; i++) {
        snprintf(q, sizeof(q), "old store's query %d", i);
        assert_int_equal(lr_store_add_outcome(a, q, 5, "old-model", 1.0, 3, &err), 0);
    }
    assert_int_equal(lr_store_open(np, NULL, &n, &err), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(q, sizeof(q), "new store's query %d", i);
        assert_int_equal(lr_store_add_outcome(n, q, 5, "new-model", 1.0, 3, &err), 0);
    }
    lr_store_free(n); /* the last connection: no -wal left beside it */
    assert_int_equal(rename(np, p), 0);

    /* A lookup of the queries is refused too: read through the old file,
     * it would go through the -wal and -shm at the path. */
    const char *asked[] = {"old store's query 7", "new store's query 1"};
    unsigned char known[2] = {7, 7};
    size_t count = 99;
    assert_int_equal(lr_store_find_queries(a, asked, 2, known, &count, &err), LR_EREPLACED);
    assert_non_null(strstr(err.message, "was replaced since it was opened"));
    assert_int_equal(count, 0);
    assert_int_equal(known[0] + known[1], 0);
    assert_int_equal(lr_store_add_outcome(a, "lost?", 5, "old-model", 1.0, 3, &err),
                     LR_EREPLACED);
    assert_non_null(strstr(err.message, p));
    assert_non_null(strstr(err.message, "was replaced since it was opened"));
    assert_int_equal(lr_store_count(a), 30); /* routing goes on with its copy */
    /* The old file's -wal at the path holds nothing now. */
    assert_true(stat(wal, &sb) != 0 || sb.st_size == 0);

    /* Another process's writer of the new file finds it whole. */
    assert_int_equal(lr_store_open(p, NULL, &o, &err), 0);
    assert_int_equal(lr_store_count(o), 3);
    assert_int_equal(lr_store_add_outcome(o, "written beside", 5, "new-model", 1.0, 3, &err), 0);
    lr_store_free(o);
    o = NULL;

    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 2);
    assert_int_equal(lr_store_count(a), 4);
    assert_int_equal(lr__hist_model_id(lr__store_hist(a), "old-model"), -1);
    assert_int_equal(lr_store_add_outcome(a, "kept", 5, "new-model", 1.0, 3, &err), 0);
    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 0);
    lr_store_free(a);
    assert_int_equal(lr_store_open(p, NULL, &o, &err), 0);
    assert_int_equal(lr_store_count(o), 5);
    lr_store_free(o);
}

/* A store at `path` holding `n` records of `model`. */
static void store_with(const char *path, int n, const char *model)
{
    struct lr_store *s = NULL;
    struct lr_error err;
    char q[64];
    assert_int_equal(lr_store_open(path, NULL, &s, &err), 0);
    for (int i = 0; i < n; i++) {
        snprintf(q, sizeof(q), "%s's query %d", model, i);
        assert_int_equal(lr_store_add_outcome(s, q, 5, model, 1.0, 3, &err), 0);
    }
    lr_store_free(s);
}

/* `link` made to point at `target` at once, as a deploy does it:
 * ln -sfn target link.tmp && mv -T link.tmp link. */
static void link_swap(const char *target, const char *link)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", link);
    unlink(tmp);
    assert_int_equal(symlink(target, tmp), 0);
    assert_int_equal(rename(tmp, link), 0);
}

/* The records in the store file at `path`, read by a handle of its own. */
static size_t count_in(const char *path)
{
    struct lr_store *s = NULL;
    struct lr_error err;
    size_t n;
    assert_int_equal(lr_store_open(path, NULL, &s, &err), 0);
    n = lr_store_count(s);
    lr_store_free(s);
    return n;
}

/* A handle on a replaced file that notices the replacement leaves alone
 * the -wal of the file now at the path while another handle has that file
 * open: the records that handle committed stay in it. */
static void replaced_files_handle_leaves_the_new_files_writers_alone(void **st)
{
    char p[512], np[512], q[64];
    struct lr_store *a = NULL, *b = NULL;
    struct lr_error err;
    int changed = -1;
    (void)st;

    path_in(p, sizeof(p), "deployed.db");
    path_in(np, sizeof(np), "deployed-new.db");
    store_with(p, 5, "old-model");
    assert_int_equal(lr_store_open(p, NULL, &a, &err), 0); /* routes, writes nothing */
    store_with(np, 10, "new-model");
    assert_int_equal(rename(np, p), 0);
    assert_int_equal(lr_store_open(p, NULL, &b, &err), 0); /* the new file's writer */
    for (int i = 0; i < 20; i++) {
        snprintf(q, sizeof(q), "feedback %d", i);
        assert_int_equal(lr_store_add_outcome(b, q, 5, "new-model", 1.0, 3, &err), 0);
    }
    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 2);
    assert_int_equal(lr_store_count(a), 30);
    assert_int_equal(count_in(p), 30);
    assert_int_equal(lr_store_add_outcome(b, "one more", 5, "new-model", 1.0, 3, &err), 0);
    assert_int_equal(lr_store_count(b), 31);
    lr_store_free(b);
    lr_store_free(a);
    assert_int_equal(count_in(p), 31);
}

/* lr_store_discard() removes only the file it opened, at the path as it
 * was given then: not a store moved to that path since, nor the file of
 * the same name in the working directory the caller has moved to. */
static void discard_removes_only_the_file_it_opened(void **st)
{
    char p[600], np[512], d1[512], d2[512], cwd[PATH_MAX];
    struct lr_store *a = NULL;
    struct lr_error err;
    struct stat sb;
    int removed = -1;
    (void)st;

    path_in(p, sizeof(p), "made.db");
    path_in(np, sizeof(np), "made-deploy.db");
    assert_int_equal(lr_store_open(p, NULL, &a, &err), 0); /* made, still empty */
    store_with(np, 20, "deployed-model");
    assert_int_equal(rename(np, p), 0);
    assert_int_equal(lr_store_discard(a, &removed, &err), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(count_in(p), 20);

    path_in(d1, sizeof(d1), "discard-1");
    path_in(d2, sizeof(d2), "discard-2");
    assert_int_equal(mkdir(d1, 0700), 0);
    assert_int_equal(mkdir(d2, 0700), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(d2), 0);
    store_with("h.db", 20, "kept-model");
    assert_int_equal(chdir(d1), 0);
    assert_int_equal(lr_store_open("h.db", NULL, &a, &err), 0);
    assert_int_equal(chdir(d2), 0);
    removed = -1;
    assert_int_equal(lr_store_discard(a, &removed, &err), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(count_in("h.db"), 20);
    assert_int_equal(chdir(cwd), 0);
    snprintf(p, sizeof(p), "%s/h.db", d1);
    assert_int_not_equal(stat(p, &sb), 0);
}

/* lr_import_options.cancel: set before the import, or while it runs (here
 * by the embedder, between two batches, as a signal handler would), the
 * import stops with LR_ECANCELED and adds nothing; the store goes on. */
static void import_stops_when_its_cancel_flag_is_set(void **st)
{
    (void)st;
    struct lr_store *s = NULL, *d = NULL;
    struct lr_error err;
    struct lr_import_report rep;
    volatile sig_atomic_t stop = 0;
    struct lr_import_options io = {.cancel = &stop};
    struct fake_embedder fe = {.cancel_on_call = 1, .cancel = &stop};
    struct lr_store_options o = {"openai:fake", 4, 0, 0, 0, 0};
    struct lr_import_options dio = {.embed = fake_embed, .embed_arg = &fe, .embed_batch = 2,
                                    .cancel = &stop};
    char db[512];

    path_in(db, sizeof(db), "cancel.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, write_file("c1.json", ARRAY3), &io, &rep, &err), 0);
    assert_int_equal(lr_store_count(s), 3);
    stop = SIGINT;
    assert_int_equal(lr_store_import_file(s, write_file("c2.json", FIVE), &io, &rep, &err),
                     LR_ECANCELED);
    assert_non_null(strstr(err.message, "the import was stopped: nothing imported"));
    assert_int_equal(rep.imported, 0);
    assert_int_equal(lr_store_count(s), 3);
    stop = 0;
    assert_int_equal(lr_store_add_outcome(s, "after the stop", 5, "small", 1.0, 3, &err), 0);
    lr_store_free(s);
    assert_int_equal(count_in(db), 4);

    /* Between a dense import's batches: the first batch's records go too. */
    assert_int_equal(lr_store_open(":memory:", &o, &d, &err), 0);
    assert_int_equal(lr_store_import_file(d, write_file("c3.json", FIVE), &dio, &rep, &err),
                     LR_ECANCELED);
    assert_int_equal(fe.calls, 1);
    assert_int_equal(rep.imported, 0);
    assert_int_equal(lr_store_count(d), 0);
    lr_store_free(d);
}

/* A write is refused as the file was replaced, the refresh opens the file
 * the path names now (holding `want` records), and writes go on there. */
static void swap_is_seen(struct lr_store *a, size_t want, const char *model)
{
    struct lr_error err;
    int changed = -1;
    assert_int_equal(lr_store_add_outcome(a, "lost?", 5, "old-model", 1.0, 3, &err),
                     LR_EREPLACED);
    assert_non_null(strstr(err.message, "was replaced since it was opened"));
    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 2);
    assert_int_equal(lr_store_count(a), want);
    assert_true(lr__hist_model_id(lr__store_hist(a), model) >= 0);
    assert_int_equal(lr__hist_model_id(lr__store_hist(a), "old-model"), -1);
    assert_int_equal(lr_store_add_outcome(a, "kept", 5, model, 1.0, 3, &err), 0);
    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 0);
}

/* A store named through a symbolic link: swapping the link (to another
 * folder, or to another file) is a replacement like a rename over the
 * file, for a path given absolute or relative (the working directory
 * changed since); so is a rename over the file the link names. */
static void symlink_swaps_are_seen_and_refresh_opens_the_new_file(void **st)
{
    char d1[512], d2[512], cur[512], p[600], f1[512], f2[512], fnew[512], flink[512];
    char cwd[PATH_MAX];
    struct lr_store *a = NULL, *o = NULL;
    struct lr_error err;
    (void)st;

    /* current -> v1, the store current/store.db; then current -> v2. */
    path_in(d1, sizeof(d1), "v1");
    path_in(d2, sizeof(d2), "v2");
    path_in(cur, sizeof(cur), "current");
    assert_int_equal(mkdir(d1, 0755), 0);
    assert_int_equal(mkdir(d2, 0755), 0);
    snprintf(p, sizeof(p), "%s/store.db", d1);
    store_with(p, 30, "old-model");
    snprintf(p, sizeof(p), "%s/store.db", d2);
    store_with(p, 3, "v2-model");
    assert_int_equal(symlink("v1", cur), 0);
    snprintf(p, sizeof(p), "%s/store.db", cur);
    assert_int_equal(lr_store_open(p, NULL, &a, &err), 0);
    assert_int_equal(lr_store_count(a), 30);
    link_swap("v2", cur);
    swap_is_seen(a, 3, "v2-model");
    lr_store_free(a);
    snprintf(p, sizeof(p), "%s/store.db", d2);
    assert_int_equal(lr_store_open(p, NULL, &o, &err), 0);
    assert_int_equal(lr_store_count(o), 4); /* the write after the refresh */
    lr_store_free(o);

    /* cur.db -> f1.db, opened by a relative path; then cur.db -> f2.db,
     * after the working directory changed. */
    path_in(f1, sizeof(f1), "f1.db");
    path_in(f2, sizeof(f2), "f2.db");
    path_in(flink, sizeof(flink), "cur.db");
    store_with(f1, 30, "old-model");
    store_with(f2, 5, "f2-model");
    assert_int_equal(symlink("f1.db", flink), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmpdir), 0);
    assert_int_equal(lr_store_open("cur.db", NULL, &a, &err), 0);
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(lr_store_count(a), 30);
    link_swap("f2.db", flink);
    swap_is_seen(a, 5, "f2-model");

    /* A store renamed over the file the link names now is seen too. */
    path_in(fnew, sizeof(fnew), "f2-new.db");
    store_with(fnew, 7, "f3-model");
    assert_int_equal(rename(fnew, f2), 0);
    swap_is_seen(a, 7, "f3-model");
    lr_store_free(a);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(lr_store_open(f2, NULL, &o, &err), 0);
    assert_int_equal(lr_store_count(o), 8);
    lr_store_free(o);
}

/* The store's files removed under an open handle: writes are refused, a
 * refresh says so while nothing is at the path, and opens the store made
 * there afterwards. */
static void write_after_the_file_was_removed_is_refused_until_one_is_there(void **st)
{
    char p[512];
    struct lr_store *a = NULL, *o = NULL;
    struct lr_error err;
    int changed = -1;
    (void)st;

    path_in(p, sizeof(p), "gone.db");
    assert_int_equal(lr_store_open(p, NULL, &a, &err), 0);
    assert_int_equal(lr_store_add_outcome(a, "first", 5, "m", 1.0, 3, &err), 0);
    remove_db(p);

    assert_int_equal(lr_store_add_outcome(a, "second", 5, "m", 1.0, 3, &err), LR_EREPLACED);
    assert_non_null(strstr(err.message, "was removed since it was opened"));
    assert_int_equal(lr_store_refresh(a, &changed, &err), LR_EREPLACED);
    assert_int_equal(changed, 0);
    assert_int_equal(access(p, F_OK), -1); /* the refresh made no file */
    assert_int_equal(lr_store_count(a), 1);

    assert_int_equal(lr_store_open(p, NULL, &o, &err), 0);
    assert_int_equal(lr_store_add_outcome(o, "in the new one", 5, "m", 1.0, 3, &err), 0);
    assert_int_equal(lr_store_add_outcome(o, "and another", 5, "m", 1.0, 3, &err), 0);
    lr_store_free(o);
    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 2);
    assert_int_equal(lr_store_count(a), 2);
    assert_int_equal(lr_store_add_outcome(a, "third", 5, "m", 1.0, 3, &err), 0);
    lr_store_free(a);
}

/* The store's files removed and a directory (then a FIFO) made at the
 * path: writes and refreshes give the same reason, a replacement by
 * something that is not a regular file, not a removal; a store put there
 * later is opened by the next refresh. */
static void path_turned_into_a_directory_is_named_alike_by_writes_and_refreshes(void **st)
{
    char p[512], wrote[sizeof(((struct lr_error *)0)->message)];
    struct lr_store *a = NULL;
    struct lr_error err;
    int changed = -1;
    (void)st;

    path_in(p, sizeof(p), "dir.db");
    assert_int_equal(lr_store_open(p, NULL, &a, &err), 0);
    assert_int_equal(lr_store_add_outcome(a, "first", 5, "m", 1.0, 3, &err), 0);
    remove_db(p);
    assert_int_equal(mkdir(p, 0755), 0);

    assert_int_equal(lr_store_add_outcome(a, "second", 5, "m", 1.0, 3, &err), LR_EREPLACED);
    assert_non_null(strstr(err.message, "replaced since it was opened by something that is "
                                        "not a regular file (a directory)"));
    assert_null(strstr(err.message, "removed"));
    snprintf(wrote, sizeof(wrote), "%s", err.message);
    assert_int_equal(lr_store_refresh(a, &changed, &err), LR_EREPLACED);
    assert_int_equal(changed, 0);
    assert_string_equal(err.message, wrote);
    assert_int_equal(lr_store_add_outcome(a, "third", 5, "m", 1.0, 3, &err), LR_EREPLACED);
    assert_string_equal(err.message, wrote);

    /* A FIFO: not a regular file either, and no open of it is tried. */
    assert_int_equal(rmdir(p), 0);
    assert_int_equal(mkfifo(p, 0644), 0);
    assert_int_equal(lr_store_refresh(a, &changed, &err), LR_EREPLACED);
    assert_non_null(strstr(err.message, "by something that is not a regular file;"));
    assert_int_equal(lr_store_add_outcome(a, "fourth", 5, "m", 1.0, 3, &err), LR_EREPLACED);
    assert_non_null(strstr(err.message, "by something that is not a regular file;"));

    /* Gone altogether, then a store put there. */
    assert_int_equal(unlink(p), 0);
    assert_int_equal(lr_store_refresh(a, &changed, &err), LR_EREPLACED);
    assert_non_null(strstr(err.message, "was removed since it was opened"));
    store_with(p, 2, "m2");
    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 2);
    assert_int_equal(lr_store_count(a), 2);
    assert_int_equal(lr_store_add_outcome(a, "fifth", 5, "m2", 1.0, 3, &err), 0);
    lr_store_free(a);
}

/* A file put at the path that the refresh cannot open: the writes refused
 * after that refresh say so, with its reason, not that another file is
 * there (which the next refresh would open); lr_store_gone() tells the
 * three cases apart for a caller that words its own message. */
static void file_at_the_path_that_cannot_be_opened_is_named_by_writes(void **st)
{
    char p[512];
    struct lr_store *a = NULL;
    struct lr_error err;
    int changed = -1;
    FILE *f;
    (void)st;

    path_in(p, sizeof(p), "unopenable.db");
    assert_int_equal(lr_store_open(p, NULL, &a, &err), 0);
    assert_int_equal(lr_store_gone(a), LR_STORE_GONE_NONE);
    assert_int_equal(lr_store_add_outcome(a, "first", 5, "m", 1.0, 3, &err), 0);
    remove_db(p);
    assert_int_equal(lr_store_add_outcome(a, "second", 5, "m", 1.0, 3, &err), LR_EREPLACED);
    assert_int_equal(lr_store_gone(a), LR_STORE_GONE_REMOVED);
    assert_non_null(f = fopen(p, "w"));
    fputs("not a store", f);
    fclose(f);
    assert_int_equal(lr_store_refresh(a, &changed, &err), LR_EREPLACED);
    assert_int_equal(changed, 0);
    assert_non_null(strstr(err.message, "cannot be opened"));
    assert_int_equal(lr_store_gone(a), LR_STORE_GONE_UNOPENABLE);
    assert_int_equal(lr_store_add_outcome(a, "third", 5, "m", 1.0, 3, &err), LR_EREPLACED);
    assert_non_null(strstr(err.message, "cannot be opened"));
    assert_non_null(strstr(err.message, "not a database"));
    assert_null(strstr(err.message, "another file is at its path"));
    assert_int_equal(lr_store_count(a), 1);

    /* A store put there instead is opened by the next refresh. */
    assert_int_equal(unlink(p), 0);
    store_with(p, 2, "m2");
    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 2);
    assert_int_equal(lr_store_gone(a), LR_STORE_GONE_NONE);
    assert_int_equal(lr_store_add_outcome(a, "fourth", 5, "m2", 1.0, 3, &err), 0);
    assert_int_equal(lr_store_count(a), 3);
    lr_store_free(a);
}

/* The move can also come inside a write, after its check: here while a
 * dense import's transaction waits on its embedder. The COMMIT is not run
 * (the records would go to the old file), the import fails, and the -wal
 * at the path is emptied once it has rolled back. */
struct mover {
    const char *from, *to;
    int moved;
};

static int moving_embed(void *arg, const char *const *texts, size_t n, float *out, size_t dim,
                        struct lr_error *err)
{
    struct mover *m = arg;
    (void)err;
    if (!m->moved++)
        assert_int_equal(rename(m->from, m->to), 0);
    for (size_t i = 0; i < n; i++)
        hash_vector(texts[i], out + i * dim, dim);
    return 0;
}

static void file_replaced_during_a_write_is_not_committed_to(void **st)
{
    char p[512], np[512], wal[520];
    struct lr_store *a = NULL, *n = NULL, *o = NULL;
    struct lr_store_options d8 = {"openai:fake", 8, 0, 0, 1, 0};
    struct mover m;
    struct lr_import_options io = {.embed = moving_embed, .embed_arg = &m, .embed_dim = 8};
    struct lr_error err;
    struct stat sb;
    float v[8];
    int changed = -1;
    (void)st;

    path_in(p, sizeof(p), "mid.db");
    path_in(np, sizeof(np), "mid-new.db");
    snprintf(wal, sizeof(wal), "%s-wal", p);
    assert_int_equal(lr_store_open(p, &d8, &a, &err), 0);
    hash_vector("old", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(a, "old", 5, "m", 1.0, 3, v, 8, &err), 0);
    assert_int_equal(lr_store_open(np, &d8, &n, &err), 0);
    hash_vector("new", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(n, "new", 5, "m", 1.0, 3, v, 8, &err), 0);
    hash_vector("newer", v, 8);
    assert_int_equal(lr_store_add_outcome_vec(n, "newer", 5, "m", 1.0, 3, v, 8, &err), 0);
    lr_store_free(n);
    m.from = np;
    m.to = p;
    m.moved = 0;

    assert_int_equal(lr_store_import_file(a, write_file("mid.json", FIVE), &io, NULL, &err),
                     LR_EREPLACED);
    assert_int_equal(m.moved, 1);
    assert_non_null(strstr(err.message, "was replaced since it was opened"));
    assert_int_equal(lr_store_count(a), 1);
    assert_true(stat(wal, &sb) != 0 || sb.st_size == 0);
    assert_int_equal(lr_store_open(p, &d8, &o, &err), 0);
    assert_int_equal(lr_store_count(o), 2); /* the new file, whole */
    lr_store_free(o);
    assert_int_equal(lr_store_refresh(a, &changed, &err), 0);
    assert_int_equal(changed, 2);
    assert_int_equal(lr_store_count(a), 2);
    lr_store_free(a);
}

/* An import builds the copy whole (lr_store_added_since_build()): the
 * records appended before it count no more, and a re-weighing they made
 * due is done with it; those appended after it count again. */
static void import_builds_the_copy_whole(void **st)
{
    struct lr_store_options o;
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    size_t n = 0;
    char q[64];
    (void)st;
    lr_store_options_init(&o);
    o.defer_reweigh = 1;
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    while (!lr_store_reweigh_due(s) && n < 300) {
        snprintf(q, sizeof q, "appended question number %zu", n++);
        assert_int_equal(lr_store_add_outcome(s, q, 4, "m", 1, 2, &err), 0);
    }
    assert_int_equal(lr_store_reweigh_due(s), 1);
    assert_int_equal(lr_store_added_since_build(s), n);
    assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), NULL, NULL, &err), 0);
    assert_int_equal(lr_store_count(s), n + 3);
    assert_int_equal(lr_store_added_since_build(s), 0);
    assert_int_equal(lr_store_reweigh_due(s), 0);
    assert_int_equal(lr_store_add_outcome(s, "one more question", 4, "m", 1, 2, &err), 0);
    assert_int_equal(lr_store_added_since_build(s), 1);
    lr_store_free(s);
}

/* With defer_reweigh, the append that grows the store by a quarter only
 * marks the re-weighing due: it returns with the copy it had (no rebuild
 * ran, the copy's weights are those of the import), and the next refresh
 * re-weighs it, after which the copy equals a fresh open of the file. */
static void deferred_reweigh_runs_at_the_next_refresh(void **st)
{
    (void)st;
    struct rebuild_files f;
    struct lr_store *s;
    struct lr_store_options w = {NULL, 0, 0, 0, 2, 1};
    struct lr_error err;
    const struct lr__hist *before;
    int changed = -1;

    rebuild_fixture(&f, "rb-defer", 1600, 415);
    s = open_imported(f.db, &w, f.jsonl, NULL);
    /* Another handle brings the store to one short of 1600 + 400 + 16; s
     * catches up with those rows in place, then its append is the one. */
    lr_store_free(open_imported(f.db, &w, f.more, NULL));
    assert_int_equal(lr_store_reweigh_due(s), 0);
    before = current_copy(s);

    gate_arm(1, 0); /* counts the rebuilds */
    assert_int_equal(add_late(s, LATE[0], "newcomer"), 0);
    assert_int_equal(gate_calls(), 0); /* the append ran no rebuild */
    assert_int_equal(lr_store_reweigh_due(s), 1);
    lr__store_rdlock(s);
    assert_ptr_equal(lr__store_hist(s), before); /* the same copy, not re-weighed */
    assert_int_equal(lr__store_hist(s)->n, 2016);
    lr__store_unlock(s);

    assert_int_equal(lr_store_refresh(s, &changed, &err), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(gate_calls(), 1);
    assert_int_equal(lr_store_reweigh_due(s), 0);
    lr__store_rebuild_hook = NULL;
    assert_same_then_free(s, reference(f.db, NULL, 0, "newcomer", NULL), f.jsonl);
    assert_int_equal(lr_store_refresh(s, &changed, &err), 0);
    assert_int_equal(changed, 0); /* nothing due any more */
    lr_store_free(s);
}

/* Two dense copies hold the same vectors, groups and outcomes. */
static void assert_same_dense(struct lr_store *a, struct lr_store *b)
{
    assert_same_outcomes(a, b);
    lr__store_rdlock(a);
    lr__store_rdlock(b);
    const struct lr__hist *ha = lr__store_hist(a), *hb = lr__store_hist(b);
    assert_int_equal(lr__store_dim(a), lr__store_dim(b));
    assert_int_equal(ha->didx.dim, hb->didx.dim);
    assert_int_equal(ha->didx.n, hb->didx.n);
    assert_memory_equal(ha->didx.m, hb->didx.m, ha->didx.n * ha->didx.dim * sizeof(float));
    assert_true(ha->groups.n >= 2);
    assert_int_equal(ha->groups.n, hb->groups.n);
    assert_memory_equal(ha->groups.of, hb->groups.of, ha->n * sizeof(*ha->groups.of));
    assert_memory_equal(ha->groups.cdense, hb->groups.cdense,
                        ha->groups.n * ha->didx.dim * sizeof(float));
    assert_memory_equal(ha->groups.stats, hb->groups.stats,
                        ha->groups.n * ha->models.n * sizeof(*ha->groups.stats));
    lr__store_unlock(b);
    lr__store_unlock(a);
}

/* A dense store's refresh runs beside appends the same way: its copy
 * equals a fresh open of the snapshot followed by the appends. */
static void dense_refresh_rebuilds_while_appends_go_on(void **st)
{
    (void)st;
    struct rebuild_files f;
    struct lr_store *a, *b, *fresh, *r;
    struct lr_store_options o = {"openai:fake", 8, 0, 0, 2, 0};
    struct fake_embedder fe = {0};
    struct lr_import_options io = {.embed = fake_embed, .embed_arg = &fe, .embed_dim = 8};
    struct lr_error err;
    struct rebuilder rf = {0};
    int changed = -1;

    rebuild_fixture(&f, "rb-dense", 600, 0);
    a = open_imported(f.db, &o, NULL, NULL);
    b = open_imported(f.db, &o, NULL, NULL);
    assert_int_equal(lr_store_import_file(a, f.jsonl, &io, NULL, &err), 0);
    assert_int_equal(lr_store_refresh(b, &changed, &err), 0);
    assert_int_equal(changed, 1);
    fresh = open_imported(f.db, &o, NULL, NULL);
    assert_same_dense(b, fresh);
    lr_store_free(fresh);

    assert_int_equal(add_late(a, "one more from the other handle", "small"), 0);
    rf.s = b;
    (void)append_beside_a_paused_rebuild(&rf, f.db, f.ref, b, LATE, 3, NULL);
    assert_int_equal(rf.rc, 0);
    assert_int_equal(rf.changed, 1);

    assert_int_equal(lr_store_count(b), 604);
    r = reference(f.ref, LATE, 3, "newcomer", "openai:fake");
    assert_same_dense(b, r);
    lr_store_free(r);
    lr_store_free(a);
    lr_store_free(b);
}

/* An import into a store far behind another connection's commits takes its
 * ids from the file (its copy is built again from the file as it commits),
 * and the copy it publishes matches the file. */
static void import_far_behind_takes_ids_from_the_file(void **st)
{
    (void)st;
    struct rebuild_files f;
    struct lr_store *s, *o, *fresh;
    struct lr_store_options w = {NULL, 0, 0, 0, 2, 0};
    struct lr_error err;
    struct lr_import_report rep;
    int changed = -1;

    rebuild_fixture(&f, "rb-import", 300, 200);
    s = open_imported(f.db, &w, f.jsonl, NULL);
    o = open_imported(f.db, &w, f.more, NULL);
    assert_int_equal(lr_store_add_outcome(o, "a model only the other handle knows", -1,
                                          "stranger", 1, 2, &err),
                     0);
    assert_int_equal(lr_store_count(s), 300);

    assert_int_equal(lr_store_import_file(s, write_file("rb-three.json", ARRAY3), NULL, &rep,
                                          &err),
                     0);
    assert_int_equal(rep.imported, 3);
    assert_int_equal(lr_store_count(s), 504);
    assert_int_equal(nearest_by_text(s, "capital of france"), 501);
    assert_int_equal(nearest_by_text(s, "a model only the other handle knows"), 500);
    lr__store_rdlock(s);
    assert_int_equal(lr__hist_model_id(lr__store_hist(s), "stranger"), 2);
    lr__store_unlock(s);
    assert_int_equal(lr_store_refresh(s, &changed, &err), 0);
    assert_int_equal(changed, 0);
    fresh = open_threads(f.db, 1);
    assert_same_outcomes(s, fresh);
    lr_store_free(fresh);
    lr_store_free(o);
    lr_store_free(s);
}

/* ==== Idempotency keys (lr_store_add_outcome_keyed) ==== */

static int add_keyed(struct lr_store *s, const char *key, const char *query, int *dup)
{
    struct lr_error err;
    return lr_store_add_outcome_keyed(s, key, query, -1, "small", 1, 3, NULL, 0, dup, &err);
}

static long long keys_in_file(const char *db)
{
    sqlite3 *c = NULL;
    sqlite3_stmt *q = NULL;
    long long n = -1;
    assert_int_equal(sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(c, "SELECT COUNT(*) FROM feedback_keys", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(c);
    return n; /* -1: no such table */
}

static void keyed_append_records_a_key_once(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    int dup = -1;
    path_in(db, sizeof(db), "keyed.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);

    assert_int_equal(add_keyed(s, "fb-1", "what is the capital of france", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(s), 1);
    /* The same key again: nothing stored, reported as a duplicate. */
    assert_int_equal(add_keyed(s, "fb-1", "what is the capital of france", &dup), 0);
    assert_int_equal(dup, LR_STORE_KEY_SAME);
    assert_int_equal(lr_store_count(s), 1);
    /* The key decides whether anything is stored; the content, what it is told. */
    assert_int_equal(add_keyed(s, "fb-1", "another question entirely", &dup), 0);
    assert_int_equal(dup, LR_STORE_KEY_DIFFERS); /* live; its record holds another query */
    assert_int_equal(add_keyed(s, "fb-2", "what is the capital of france", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(s), 2);
    /* No key: a plain append, as often as it is called. */
    assert_int_equal(add_keyed(s, NULL, "unkeyed", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(add_keyed(s, NULL, "unkeyed", NULL), 0);
    assert_int_equal(lr_store_count(s), 4);
    assert_int_equal(nearest_by_text(s, "capital of france"), 0);

    /* Bad keys are refused and store nothing. */
    char long_key[LR_STORE_MAX_KEY + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    const char *bad[] = {"", "a b", "tab\there", "nl\n", "\x7f", "caf\xc3\xa9", long_key};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        dup = -1;
        assert_int_equal(add_keyed(s, bad[i], "q", &dup), LR_EINVAL);
        assert_int_equal(dup, 0);
        assert_int_equal(lr_store_key_valid(bad[i]), 0); /* the gateway's check */
    }
    assert_int_equal(lr_store_key_valid(NULL), 0);
    assert_int_equal(lr_store_key_valid("fb-1"), 1);
    long_key[LR_STORE_MAX_KEY] = '\0'; /* 255 bytes: allowed */
    assert_int_equal(lr_store_key_valid(long_key), 1);
    assert_int_equal(add_keyed(s, long_key, "longest key", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(s), 5);
    lr_store_free(s);
    assert_int_equal(keys_in_file(db), 3);

    /* The keys survive a close and reopen. */
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 5);
    assert_int_equal(add_keyed(s, "fb-2", "what is the capital of france", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(add_keyed(s, long_key, "longest key", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(add_keyed(s, "fb-3", "a third keyed one", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(s), 6);
    lr_store_free(s);
}

/* lr_store_add_outcome_keyed: a duplicate key is
 * told apart by what its record holds, wherever that record is among
 * records of several outcomes and unkeyed ones. */
static void keyed_duplicate_is_told_apart_by_its_record(void **st)
{
    (void)st;
    char db[512], key[32], query[64];
    struct lr_store *s = NULL;
    struct lr_error err;
    int dup = -1;
    enum { N = 40 };
    path_in(db, sizeof(db), "keyed_compare.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    for (int i = 0; i < N; i++) {
        struct lr_outcome two[2] = {{"small", 1, 4}, {"large", 0, 9}};
        struct lr_record r = {"an unkeyed record of two outcomes", 6, NULL, two, 2};
        if (i % 3 == 0)
            assert_int_equal(lr_store_add(s, &r, NULL, 0, &err), 0);
        snprintf(key, sizeof key, "cmp-%d", i);
        snprintf(query, sizeof query, "keyed question number %d", i);
        assert_int_equal(lr_store_add_outcome_keyed(s, key, query, i % 2 ? -1 : i,
                                                     i % 2 ? "small" : "large", i / (double)N,
                                                     i + 0.5, NULL, 0, &dup, &err),
                         0);
        assert_int_equal(dup, 0);
    }
    size_t count = lr_store_count(s);
    for (int i = 0; i < N; i++) {
        const char *model = i % 2 ? "small" : "large", *other = i % 2 ? "large" : "small";
        long in = i % 2 ? -1 : i;
        double c = i / (double)N;
        snprintf(key, sizeof key, "cmp-%d", i);
        snprintf(query, sizeof query, "keyed question number %d", i);
        assert_int_equal(lr_store_add_outcome_keyed(s, key, query, in, model, c, i + 0.5, NULL,
                                                     0, &dup, &err),
                         0);
        assert_int_equal(dup, LR_STORE_KEY_SAME);
        /* An estimated count is the estimate given explicitly. */
        if (in < 0) {
            assert_int_equal(lr_store_add_outcome_keyed(
                                 s, key, query, lr_estimate_tokens(query, strlen(query)), model,
                                 c, i + 0.5, NULL, 0, &dup, &err),
                             0);
            assert_int_equal(dup, LR_STORE_KEY_SAME);
        }
        /* Each field changed, even by the last bit of a double. */
        assert_int_equal(lr_store_add_outcome_keyed(s, key, "keyed question number x", in,
                                                     model, c, i + 0.5, NULL, 0, &dup, &err),
                         0);
        assert_int_equal(dup, LR_STORE_KEY_DIFFERS);
        assert_int_equal(lr_store_add_outcome_keyed(s, key, query, in + 2, model, c, i + 0.5,
                                                     NULL, 0, &dup, &err),
                         0);
        assert_int_equal(dup, LR_STORE_KEY_DIFFERS);
        assert_int_equal(lr_store_add_outcome_keyed(s, key, query, in, other, c, i + 0.5, NULL,
                                                     0, &dup, &err),
                         0);
        assert_int_equal(dup, LR_STORE_KEY_DIFFERS);
        assert_int_equal(lr_store_add_outcome_keyed(s, key, query, in, model,
                                                     nextafter(c, 1.0), i + 0.5, NULL, 0, &dup,
                                                     &err),
                         0);
        assert_int_equal(dup, LR_STORE_KEY_DIFFERS);
        assert_int_equal(lr_store_add_outcome_keyed(s, key, query, in, model, c, i + 1.5, NULL,
                                                     0, &dup, &err),
                         0);
        assert_int_equal(dup, LR_STORE_KEY_DIFFERS);
        /* A model the store has never seen cannot be the record's. */
        assert_int_equal(lr_store_add_outcome_keyed(s, key, query, in, "unseen", c, i + 0.5,
                                                     NULL, 0, &dup, &err),
                         0);
        assert_int_equal(dup, LR_STORE_KEY_DIFFERS);
    }
    assert_int_equal(lr_store_count(s), count);
    lr_store_free(s);
}

static void keyed_append_sees_another_connections_keys(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *a = NULL, *b = NULL;
    struct lr_error err;
    int dup = -1;
    path_in(db, sizeof(db), "keyed_two.db");
    assert_int_equal(lr_store_open(db, NULL, &a, &err), 0);
    assert_int_equal(lr_store_open(db, NULL, &b, &err), 0);

    assert_int_equal(add_keyed(a, "retry-me", "sent to the first gateway", &dup), 0);
    assert_int_equal(dup, 0);
    /* b has not read a's commit: the lookup in its write transaction does. */
    assert_int_equal(add_keyed(b, "retry-me", "sent to the first gateway", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(lr_store_count(b), 1);
    assert_int_equal(add_keyed(b, "other", "sent to the second gateway", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(add_keyed(a, "other", "sent to the second gateway", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(lr_store_count(a), 2);
    assert_int_equal(lr_store_count(b), 2);
    lr_store_free(a);
    lr_store_free(b);
    assert_int_equal(keys_in_file(db), 2);
}

static void dense_keyed_append_needs_and_keeps_its_vector(void **st)
{
    (void)st;
    struct lr_store *s = NULL;
    struct lr_error err;
    struct lr_store_options o = {"openai:fake", 0, 0, 0, 0, 0};
    float v[8], sim;
    int dup = -1;
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    hash_vector("first query", v, 8);
    assert_int_equal(lr_store_add_outcome_keyed(s, "k1", "first query", 5, "m", 1, 7, NULL, 0,
                                                &dup, &err),
                     LR_EINVAL);
    assert_int_equal(lr_store_add_outcome_keyed(s, "k1", "first query", 5, "m", 1, 7, v, 8,
                                                &dup, &err),
                     0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_add_outcome_keyed(s, "k1", "first query", 5, "m", 1, 7, v, 8,
                                                &dup, &err),
                     0);
    assert_int_equal(dup, 1);
    assert_int_equal(lr_store_count(s), 1);
    assert_int_equal(nearest_by_vector(s, "first query", 8, &sim), 0);
    assert_true(sim > 0.999f);
    lr_store_free(s);
}

static void old_store_without_the_key_table(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_store_options ro = {NULL, 0, 0, 0, 0, 0};
    struct lr_error err;
    sqlite3 *c = NULL;
    int dup = -1;
    path_in(db, sizeof(db), "old.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(add_keyed(s, NULL, "written before keys existed", NULL), 0);
    lr_store_free(s);
    /* A store made before the table. */
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    assert_int_equal(sqlite3_exec(c, "DROP TABLE feedback_keys", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(c);
    assert_int_equal(keys_in_file(db), -1);

    /* Read-only: opens, reads, and writes nothing. */
    ro.read_only = 1;
    assert_int_equal(lr_store_open(db, &ro, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 1);
    assert_int_equal(add_keyed(s, "k", "q", &dup), LR_EINVAL);
    assert_int_equal(dup, 0);
    lr_store_free(s);
    assert_int_equal(keys_in_file(db), -1);

    /* Writable: the store gains the table. */
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(keys_in_file(db), 0);
    assert_int_equal(add_keyed(s, "k", "the first keyed one", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(add_keyed(s, "k", "the first keyed one", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);
    assert_int_equal(keys_in_file(db), 1);
}

/* ==== Key time-to-live (lr_store_set_key_ttl) ==== */

/* The store's clock in these tests: keys age as the test says, no sleep. */
static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

/* One number from an SQL query on the file, through a connection of its
 * own; -1 when the query fails. */
static long long sql_number(const char *db, const char *sql)
{
    sqlite3 *c = NULL;
    sqlite3_stmt *q = NULL;
    long long n = -1;
    assert_int_equal(sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(c, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(c);
    return n;
}

static void sql_run(const char *db, const char *sql)
{
    sqlite3 *c = NULL;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    if (sqlite3_exec(c, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_close(c);
}

static void key_is_forgotten_after_its_ttl(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL, *other = NULL;
    struct lr_error err;
    int dup = -1;
    path_in(db, sizeof(db), "ttl.db");
    lr__store_clock = fake_clock;
    fake_now = 1000000;
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_key_ttl(s), LR_STORE_KEY_TTL_DEFAULT);
    assert_int_equal(LR_STORE_KEY_TTL_DEFAULT, 24 * 3600);
    assert_int_equal(lr_store_set_key_ttl(s, 100, &err), 0);
    assert_int_equal(lr_store_key_ttl(s), 100);

    assert_int_equal(add_keyed(s, "fb-1", "a question asked once", &dup), 0);
    assert_int_equal(dup, 0);
    /* Within the time-to-live, to its last second: a duplicate. */
    fake_now += 99;
    assert_int_equal(add_keyed(s, "fb-1", "a question asked once", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(lr_store_count(s), 1);
    /* After it: forgotten, so it records again, and is remembered anew. */
    fake_now += 1;
    assert_int_equal(add_keyed(s, "fb-1", "a question asked once", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(s), 2);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE key = 'fb-1'"), 1);
    assert_int_equal(sql_number(db, "SELECT committed_at FROM feedback_keys WHERE key = 'fb-1'"),
                     fake_now);
    fake_now += 99;
    assert_int_equal(add_keyed(s, "fb-1", "a question asked once", &dup), 0);
    assert_int_equal(dup, 1);
    /* Another handle on the file reads the key's time from the file. */
    assert_int_equal(lr_store_open(db, NULL, &other, &err), 0);
    assert_int_equal(lr_store_set_key_ttl(other, 100, &err), 0);
    assert_int_equal(add_keyed(other, "fb-1", "a question asked once", &dup), 0);
    assert_int_equal(dup, 1);
    fake_now += 1;
    assert_int_equal(add_keyed(other, "fb-1", "a question asked once", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(other), 3);
    lr_store_free(other);

    /* 0 keeps the keys committed from then on for good; fb-1 keeps the
     * 100 s it was committed with. */
    assert_int_equal(lr_store_set_key_ttl(s, 0, &err), 0);
    assert_int_equal(add_keyed(s, "fb-forever", "a question kept for good", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(s), 4);
    assert_int_equal(sql_number(db, "SELECT ttl FROM feedback_keys WHERE key = 'fb-forever'"), 0);
    fake_now += 100LL * 365 * 86400;
    assert_int_equal(add_keyed(s, "fb-forever", "a question kept for good", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(lr_store_count(s), 4);

    /* Out of range: refused, naming the setting; the setting stays. */
    const long long bad[] = {-1, LR_STORE_MAX_KEY_TTL + 1, -86400};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(lr_store_set_key_ttl(s, bad[i], &err), LR_EINVAL);
        assert_non_null(strstr(err.message, "time-to-live"));
        assert_int_equal(lr_store_key_ttl(s), 0);
    }
    assert_int_equal(lr_store_set_key_ttl(NULL, 10, &err), LR_EINVAL);
    assert_int_equal(lr_store_set_key_ttl(s, LR_STORE_MAX_KEY_TTL, &err), 0);
    lr_store_free(s);
    lr__store_clock = NULL;
}

static void expired_keys_are_deleted_a_few_per_keyed_append(void **st)
{
    (void)st;
    char db[512], key[32], q[64];
    struct lr_store *s = NULL;
    struct lr_error err;
    int dup = -1;
    const int n_old = 200;
    path_in(db, sizeof(db), "purge.db");
    lr__store_clock = fake_clock;
    fake_now = 5000;
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_set_key_ttl(s, 60, &err), 0);
    for (int i = 0; i < n_old; i++) {
        snprintf(key, sizeof key, "old-%d", i);
        snprintf(q, sizeof q, "old question %d", i);
        assert_int_equal(add_keyed(s, key, q, &dup), 0);
        assert_int_equal(dup, 0);
    }
    /* Within the time-to-live nothing is deleted. */
    assert_int_equal(keys_in_file(db), n_old);

    /* All of them expire; each keyed append deletes a bounded number of
     * them, the oldest first. */
    fake_now += 60;
    assert_int_equal(add_keyed(s, "new-0", "a new question", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(keys_in_file(db), n_old - LR__STORE_KEY_PURGE + 1);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE key = 'old-0'"), 0);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE key = 'old-199'"),
                     1);
    /* A key expired but not deleted yet is absent: it records, and its
     * row is replaced, not doubled. */
    assert_int_equal(add_keyed(s, "old-199", "old question 199, again", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE key = 'old-199'"),
                     1);
    size_t records = lr_store_count(s);
    assert_int_equal(records, (size_t)n_old + 2);

    /* A duplicate deletes nothing (its transaction is rolled back). */
    long long before = keys_in_file(db);
    assert_int_equal(add_keyed(s, "new-0", "a new question", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(keys_in_file(db), before);

    /* Plain appends leave the keys alone. */
    assert_int_equal(add_keyed(s, NULL, "an unkeyed question", &dup), 0);
    assert_int_equal(keys_in_file(db), before);

    /* Enough keyed appends: only live keys are left. */
    int live = 2; /* new-0, old-199 */
    for (int i = 1; i <= n_old / LR__STORE_KEY_PURGE + 1; i++, live++) {
        snprintf(key, sizeof key, "new-%d", i);
        assert_int_equal(add_keyed(s, key, "a new question", &dup), 0);
        assert_int_equal(dup, 0);
    }
    assert_int_equal(keys_in_file(db), live);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE committed_at < 5060"),
                     0);
    /* Every live key is still a duplicate. */
    assert_int_equal(add_keyed(s, "new-3", "a new question", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(add_keyed(s, "old-199", "old question 199, again", &dup), 0);
    assert_int_equal(dup, 1);

    /* A key kept for good is never deleted however old; the keys
     * committed with 60 s are, whatever the handle's setting now. */
    assert_int_equal(lr_store_set_key_ttl(s, 0, &err), 0);
    fake_now += 1000000;
    assert_int_equal(add_keyed(s, "kept", "a kept question", &dup), 0);
    assert_int_equal(keys_in_file(db), 1);
    fake_now += 1000000;
    assert_int_equal(lr_store_set_key_ttl(s, 60, &err), 0);
    assert_int_equal(add_keyed(s, "short", "a short-lived question", &dup), 0);
    assert_int_equal(keys_in_file(db), 2);
    assert_int_equal(add_keyed(s, "kept", "a kept question", &dup), 0);
    assert_int_equal(dup, 1);
    lr_store_free(s);
    lr__store_clock = NULL;
}

/* Two handles on one file (two processes in practice: the gateway keeping
 * keys 24 hours, a tool that set a short time-to-live): each key keeps the
 * time-to-live it was committed with, so the short one's appends neither
 * forget nor delete the other's keys, and it sees them as duplicates too. */
static void keys_keep_their_own_ttl_whichever_handle_asks(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *gw = NULL, *tool = NULL;
    struct lr_error err;
    int dup = -1;
    path_in(db, sizeof(db), "ttl_two.db");
    lr__store_clock = fake_clock;
    fake_now = 2000000;
    assert_int_equal(lr_store_open(db, NULL, &gw, &err), 0);
    assert_int_equal(lr_store_open(db, NULL, &tool, &err), 0);
    assert_int_equal(lr_store_set_key_ttl(tool, 1, &err), 0);
    assert_int_equal(add_keyed(gw, "req-42", "sent to the gateway", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(add_keyed(tool, "tool-1", "written by the tool", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(sql_number(db, "SELECT ttl FROM feedback_keys WHERE key = 'req-42'"),
                     LR_STORE_KEY_TTL_DEFAULT);
    assert_int_equal(sql_number(db, "SELECT ttl FROM feedback_keys WHERE key = 'tool-1'"), 1);

    fake_now += 2;
    /* The tool's append purges its own expired key, not the gateway's. */
    assert_int_equal(add_keyed(tool, "tool-2", "written by the tool", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE key = 'req-42'"),
                     1);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE key = 'tool-1'"),
                     0);
    /* The gateway's key is live for both handles. */
    assert_int_equal(add_keyed(gw, "req-42", "sent to the gateway", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(add_keyed(tool, "req-42", "sent to the gateway", &dup), 0);
    assert_int_equal(dup, 1);
    /* The tool's expired key records again, even through the gateway. */
    fake_now += 2;
    assert_int_equal(add_keyed(gw, "tool-2", "written by the tool", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(gw), 4);
    /* Until the gateway's key's own day is over. */
    fake_now += LR_STORE_KEY_TTL_DEFAULT;
    assert_int_equal(add_keyed(tool, "req-42", "sent to the gateway", &dup), 0);
    assert_int_equal(dup, 0);
    /* A key an older writer committed has no ttl of its own: each handle
     * judges it by its own setting. */
    sql_run(db, "INSERT INTO feedback_keys(key, record_id, committed_at)"
                " VALUES('by-an-old-writer', 0, 0)");
    sql_run(db, "UPDATE feedback_keys SET committed_at = (SELECT committed_at FROM"
                " feedback_keys WHERE key = 'req-42') - 2 WHERE key = 'by-an-old-writer'");
    assert_int_equal(add_keyed(gw, "by-an-old-writer", "an old writer's", &dup), 0);
    assert_int_equal(dup, LR_STORE_KEY_DIFFERS); /* live; its record holds another query */
    assert_int_equal(add_keyed(tool, "by-an-old-writer", "an old writer's", &dup), 0);
    assert_int_equal(dup, 0);
    lr_store_free(gw);
    lr_store_free(tool);
    lr__store_clock = NULL;
}

/* The feedback_keys table as stores made before per-key time-to-live had
 * it. */
static const char KEYS_BEFORE_TTL[] =
    "DROP TABLE feedback_keys; DROP INDEX IF EXISTS feedback_keys_expiry;"
    "DROP INDEX IF EXISTS feedback_keys_legacy;"
    "CREATE TABLE feedback_keys(key TEXT PRIMARY KEY, record_id INTEGER NOT NULL,"
    " committed_at INTEGER NOT NULL);";

/* A store made before per-key time-to-live: the column comes nullable and
 * with no default, so its keys, and those an older writer inserts later,
 * are legacy keys with no time-to-live of their own; the migration runs
 * once. */
static void old_key_table_gains_a_nullable_key_ttl(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    int dup = -1;
    path_in(db, sizeof(db), "old_ttl.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    lr_store_free(s);
    /* A new store's column is nullable too: an old writer's key has none. */
    sql_run(db, "INSERT INTO feedback_keys(key, record_id, committed_at) VALUES('x', 0, 1)");
    assert_int_equal(sql_number(db, "SELECT ttl IS NULL FROM feedback_keys WHERE key = 'x'"), 1);
    lr__store_clock = fake_clock;
    fake_now = 3000000;
    sql_run(db, KEYS_BEFORE_TTL);
    sql_run(db, "INSERT INTO feedback_keys VALUES('old-a', 0, 3000000), ('old-b', 0, 1000);");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM pragma_table_info('feedback_keys')"
                                    " WHERE name = 'ttl' AND \"notnull\" = 0"
                                    " AND dflt_value IS NULL"),
                     1);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM sqlite_master WHERE name IN"
                                    " ('feedback_keys_expiry', 'feedback_keys_legacy')"),
                     2);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE ttl IS NULL"), 2);
    lr_store_free(s);
    /* A second open migrates nothing again. */
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE ttl IS NULL"), 2);
    /* An older writer's insert names three columns: no ttl. */
    sql_run(db, "INSERT INTO feedback_keys(key, record_id, committed_at)"
                " VALUES('by-an-old-writer', 0, 3000000)");
    assert_int_equal(sql_number(db, "SELECT ttl IS NULL FROM feedback_keys"
                                    " WHERE key = 'by-an-old-writer'"),
                     1);
    /* Judged by this handle's time-to-live (the default here): old-a is a
     * duplicate for a day, old-b long expired and deleted by the next
     * keyed append; this handle's own key carries its ttl. */
    fake_now += LR_STORE_KEY_TTL_DEFAULT - 1;
    assert_int_equal(add_keyed(s, "old-a", "a retry of an old key", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(add_keyed(s, "new", "a new key", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE key = 'old-b'"), 0);
    assert_int_equal(sql_number(db, "SELECT ttl FROM feedback_keys WHERE key = 'new'"),
                     LR_STORE_KEY_TTL_DEFAULT);
    assert_int_equal(add_keyed(s, "by-an-old-writer", "a retry of an old key", &dup), 0);
    assert_int_equal(dup, LR_STORE_KEY_DIFFERS); /* live; its record holds another query */
    fake_now += 1;
    assert_int_equal(add_keyed(s, "old-a", "a retry of an old key", &dup), 0);
    assert_int_equal(dup, 0);
    lr_store_free(s);
    lr__store_clock = NULL;
}

/* Keys of a store from before per-key time-to-live, two days old, follow
 * the asking handle's setting as they did: a handle keeping keys for good
 * (a gateway with feedback_key_ttl_s 0) sees them as duplicates and
 * deletes none; a handle keeping them a day forgets and deletes them. */
static void legacy_keys_follow_the_asking_handles_ttl(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    int dup = -1;
    path_in(db, sizeof(db), "legacy_ttl.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    lr_store_free(s);
    lr__store_clock = fake_clock;
    fake_now = 9000000;
    sql_run(db, KEYS_BEFORE_TTL);
    sql_run(db, "INSERT INTO feedback_keys VALUES('K1', 0, 9000000 - 172800),"
                " ('K2', 0, 9000000 - 172800), ('K3', 0, 9000000 - 172800);");

    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_set_key_ttl(s, 0, &err), 0);
    assert_int_equal(add_keyed(s, "K1", "a retry of K1", &dup), 0);
    assert_int_equal(dup, 1);
    assert_int_equal(add_keyed(s, "K4", "a new key", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(keys_in_file(db), 4);
    assert_int_equal(add_keyed(s, "K2", "a retry of K2", &dup), 0);
    assert_int_equal(dup, LR_STORE_KEY_DIFFERS); /* live; its record holds another query */
    assert_int_equal(lr_store_count(s), 1);
    /* A handle keeping keys a week still sees them. */
    assert_int_equal(lr_store_set_key_ttl(s, 7 * 86400, &err), 0);
    assert_int_equal(add_keyed(s, "K3", "a retry of K3", &dup), 0);
    assert_int_equal(dup, LR_STORE_KEY_DIFFERS); /* live; its record holds another query */
    assert_int_equal(add_keyed(s, "K5", "a new key", &dup), 0);
    assert_int_equal(keys_in_file(db), 5);
    lr_store_free(s);

    /* A handle keeping keys a day: K1 is forgotten, records again and is
     * committed with its ttl; the other legacy keys are deleted. */
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(lr_store_set_key_ttl(s, 86400, &err), 0);
    assert_int_equal(add_keyed(s, "K1", "a retry of K1", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE ttl IS NULL"), 0);
    assert_int_equal(sql_number(db, "SELECT ttl FROM feedback_keys WHERE key = 'K1'"), 86400);
    /* K4 (kept for good) and K5 (a week) keep their own. */
    assert_int_equal(keys_in_file(db), 3);
    assert_int_equal(add_keyed(s, "K4", "a new key", &dup), 0);
    assert_int_equal(dup, 1);
    lr_store_free(s);
    lr__store_clock = NULL;
}

/* The feedback_keys table as stores made before key times had it. */
static const char OLD_KEYS[] =
    "DROP TABLE feedback_keys;"
    "CREATE TABLE feedback_keys(key TEXT PRIMARY KEY, record_id INTEGER NOT NULL);"
    "INSERT INTO feedback_keys(key, record_id) VALUES('old-a', 0), ('old-b', 1);";

static const char HAS_TIME[] =
    "SELECT COUNT(*) FROM pragma_table_info('feedback_keys') WHERE name = 'committed_at'";

static void old_key_table_gains_key_times_and_keeps_its_keys(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_store_options ro = {NULL, 0, 0, 0, 0, 0};
    struct lr_error err;
    struct stat before, after;
    int dup = -1;
    path_in(db, sizeof(db), "old_keys.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(add_keyed(s, NULL, "first, before key times", NULL), 0);
    assert_int_equal(add_keyed(s, NULL, "second, before key times", NULL), 0);
    lr_store_free(s);
    sql_run(db, OLD_KEYS);
    assert_int_equal(sql_number(db, HAS_TIME), 0);
    assert_int_equal(keys_in_file(db), 2);

    lr__store_clock = fake_clock;
    fake_now = 7000000;
    /* Read-only: opens and writes nothing. */
    ro.read_only = 1;
    assert_int_equal(stat(db, &before), 0);
    assert_int_equal(lr_store_open(db, &ro, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);
    assert_int_equal(stat(db, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
    assert_int_equal(sql_number(db, HAS_TIME), 0);

    /* Writable: the table gains the column; the keys it held count from
     * the migration, so none is forgotten early. */
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(sql_number(db, HAS_TIME), 1);
    assert_int_equal(keys_in_file(db), 2);
    assert_int_equal(
        sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE committed_at = 7000000"), 2);
    fake_now += LR_STORE_KEY_TTL_DEFAULT - 1;
    assert_int_equal(add_keyed(s, "old-a", "a retry of an old key", &dup), 0);
    assert_int_equal(dup, LR_STORE_KEY_DIFFERS); /* live; its record holds another query */
    assert_int_equal(lr_store_count(s), 2);
    lr_store_free(s);

    /* A second writable open migrates nothing again. */
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    assert_int_equal(
        sql_number(db, "SELECT COUNT(*) FROM feedback_keys WHERE committed_at = 7000000"), 2);
    assert_int_equal(add_keyed(s, "old-b", "a retry of an old key", &dup), 0);
    assert_int_equal(dup, LR_STORE_KEY_DIFFERS); /* live; its record holds another query */
    /* After the time-to-live they are forgotten like any key. */
    fake_now += 1;
    assert_int_equal(add_keyed(s, "old-b", "a retry of an old key", &dup), 0);
    assert_int_equal(dup, 0);
    assert_int_equal(lr_store_count(s), 3);
    lr_store_free(s);

    /* A writer that knows only the two columns still inserts into the
     * table; its keys count from the migration. */
    sql_run(db, "INSERT INTO feedback_keys(key, record_id) VALUES('by-an-old-writer', 2)");
    assert_int_equal(sql_number(db, "SELECT committed_at FROM feedback_keys"
                                    " WHERE key = 'by-an-old-writer'"),
                     7000000);
    lr__store_clock = NULL;
}

static void new_key_table_stamps_an_old_writers_keys_with_the_time(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *s = NULL;
    struct lr_error err;
    path_in(db, sizeof(db), "new_keys.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    lr_store_free(s);
    assert_int_equal(sql_number(db, HAS_TIME), 1);
    /* SQLite reads the clock time(NULL)'s coarse clock lags by up to a
     * tick, so the bounds come from that clock too. */
    struct timespec before, after;
    clock_gettime(CLOCK_REALTIME, &before);
    sql_run(db, "INSERT INTO feedback_keys(key, record_id) VALUES('by-an-old-writer', 0)");
    long long t = sql_number(db, "SELECT committed_at FROM feedback_keys"
                                 " WHERE key = 'by-an-old-writer'");
    clock_gettime(CLOCK_REALTIME, &after);
    assert_true(t >= (long long)before.tv_sec && t <= (long long)after.tv_sec);
}

/* A dense import embeds in batches of 64 when embed_batch is 0, and one
 * that keeps no record calls no embedder and leaves a store that held no
 * vector without a dimension. */
static void dense_import_batches_64_by_default_and_sets_no_dimension_for_nothing(void **st)
{
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    struct lr_import_report rep;
    struct fake_embedder fe = {0};
    struct lr_store_options o = {"openai:fake", 0, 0, 0, 0, 0};
    struct lr_import_options io = {.split = "validation", .embed = fake_embed, .embed_arg = &fe,
                                   .embed_dim = 8};
    (void)st;
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), &io, &rep, &err), 0);
    assert_int_equal(rep.read, 3);
    assert_int_equal(rep.imported, 0);
    assert_int_equal(fe.calls, 0);
    assert_int_equal(lr_store_dim(s), 0);

    io.split = NULL;
    assert_int_equal(lr_store_import_file(s, write_models_file("b.jsonl", "b", 65, 1), &io, &rep,
                                          &err),
                     0);
    assert_int_equal(rep.imported, 65);
    assert_int_equal(fe.calls, 2);
    assert_int_equal(fe.batch_sizes[0], 64);
    assert_int_equal(fe.batch_sizes[1], 1);
    assert_int_equal(lr_store_dim(s), 8);
    lr_store_free(s);
}

/* A store whose file does not name its embedder (its meta row deleted by
 * hand) is refused saying so. */
static void store_that_does_not_name_its_embedder_is_refused(void **st)
{
    char db[512], want[600];
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    (void)st;
    path_in(db, sizeof(db), "no-embedder.db");
    assert_int_equal(lr_store_open(db, NULL, &s, &err), 0);
    lr_store_free(s);
    sql_edit(db, "DELETE FROM meta WHERE key = 'embedder'");
    s = NULL;
    assert_int_equal(lr_store_open(db, NULL, &s, &err), LR_ESTORE);
    assert_null(s);
    snprintf(want, sizeof(want), "history store '%s' does not name its embedder", db);
    assert_string_equal(err.message, want);
}

/* lr_store_add_outcome and lr_store_add_outcome_vec given no store name
 * themselves; both named lr_store_add_outcome_keyed or lr_store_add, the
 * functions they call. */
static void null_store_is_named_by_the_function_called(void **state)
{
    struct lr_error err = {0};
    float v[2] = {1, 0};
    (void)state;
    assert_int_equal(lr_store_add_outcome(NULL, "q", 1, "m", 1, 1, &err), LR_EINVAL);
    assert_string_equal(err.message, "lr_store_add_outcome: store is NULL");
    assert_int_equal(lr_store_add_outcome_vec(NULL, "q", 1, "m", 1, 1, v, 2, &err), LR_EINVAL);
    assert_string_equal(err.message, "lr_store_add_outcome_vec: store is NULL");
}

/* An embed callback given to an import into a store of the built-in
 * embedder is the caller's mistake (it is for a remote embedder's store,
 * and would never be called): refused, as are a NULL store and a NULL
 * path, and nothing is imported. */
static void import_refuses_an_embed_callback_and_a_null_store_or_path(void **state)
{
    struct fake_embedder fe = {0};
    struct lr_import_options io = {.embed = fake_embed, .embed_arg = &fe};
    struct lr_import_report rep;
    struct lr_store *s = open_mem();
    struct lr_error err = {0};
    const char *p = write_file("a.json", ARRAY3);
    (void)state;
    assert_int_equal(lr_store_import_file(s, p, &io, &rep, &err), LR_EINVAL);
    assert_string_equal(err.message, "history store ':memory:' uses the built-in embedder "
                                     "'tfidf-v1': give no embed callback");
    assert_int_equal(fe.calls, 0);
    assert_int_equal(rep.imported, 0);
    assert_int_equal(lr_store_import_file(NULL, p, NULL, &rep, &err), LR_EINVAL);
    assert_string_equal(err.message, "lr_store_import_file: store and path are required");
    assert_int_equal(lr_store_import_file(s, NULL, NULL, &rep, &err), LR_EINVAL);
    assert_string_equal(err.message, "lr_store_import_file: store and path are required");
    assert_int_equal(lr_store_count(s), 0);
    assert_int_equal(lr_store_import_file(s, p, NULL, &rep, &err), 0);
    assert_int_equal(lr_store_count(s), 3);
    lr_store_free(s);
}

/* An embedder id is text without control characters (it was written into
 * the file as given), and dense_dim goes with a remote embedder only (it
 * was ignored with the built-in one); both are refused before any file is
 * made. */
static void open_refuses_a_bad_embedder_id_and_a_dimension_for_the_builtin(void **state)
{
    static const struct {
        const char *id;
        const char *msg;
    } bad[] = {{"x\xff\n", "history store: embedder id: contains the control character 0x0a "
                           "at byte 2"},
               {"x\xff", "history store: embedder id: not valid UTF-8 at byte 1"},
               {"openai:\x7f", "history store: embedder id: contains the control character "
                               "0x7f at byte 7"}};
    struct lr_store_options o;
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    char p[512];
    (void)state;
    path_in(p, sizeof(p), "embedder-id.db");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lr_store_options_init(&o);
        o.embedder = bad[i].id;
        assert_int_equal(lr_store_open(p, &o, &s, &err), LR_EINVAL);
        assert_string_equal(err.message, bad[i].msg);
        assert_null(s);
        assert_int_equal(access(p, F_OK), -1);
    }
    for (int k = 0; k < 2; k++) {
        lr_store_options_init(&o);
        o.embedder = k ? LR_EMBEDDER_BUILTIN : NULL;
        o.dense_dim = 384;
        assert_int_equal(lr_store_open(p, &o, &s, &err), LR_EINVAL);
        assert_non_null(strstr(err.message, "dense_dim 384 is for a remote embedder's vectors"));
        assert_null(s);
        assert_int_equal(access(p, F_OK), -1);
    }
    lr_store_options_init(&o);
    o.embedder = "openai:caf\xc3\xa9";
    o.dense_dim = 4;
    assert_int_equal(lr_store_open(p, &o, &s, &err), 0);
    assert_string_equal(lr_store_embedder(s), "openai:caf\xc3\xa9");
    lr_store_free(s);
}

/* The path must be given, an embedder id is 1 to 128 bytes and dense_dim is
 * in [0, 65536] (lr_store_options): each is refused with LR_EINVAL naming
 * the fault, before any file is made, and the ends of the ranges open. */
static void open_refuses_an_empty_path_and_options_out_of_range(void **state)
{
    static const int bad_dims[] = {-1, LR__STORE_MAX_DIM + 1};
    char id[LR__STORE_MAX_EMBEDDER + 2], want[128];
    struct lr_store_options o;
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    char p[512];
    (void)state;
    path_in(p, sizeof(p), "out-of-range.db");
    assert_int_equal(lr_store_open("", NULL, &s, &err), LR_EINVAL);
    assert_string_equal(err.message, "history store: no path given");
    assert_null(s);

    lr_store_options_init(&o);
    memset(id, 'e', sizeof id);
    id[LR__STORE_MAX_EMBEDDER + 1] = '\0';
    for (int k = 0; k < 2; k++) {
        o.embedder = k ? id : "";
        assert_int_equal(lr_store_open(p, &o, &s, &err), LR_EINVAL);
        assert_string_equal(err.message, "history store: embedder id must be 1 to 128 bytes");
        assert_null(s);
        assert_int_equal(access(p, F_OK), -1);
    }
    id[LR__STORE_MAX_EMBEDDER] = '\0';
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    assert_string_equal(lr_store_embedder(s), id);
    lr_store_free(s);

    o.embedder = "openai:text-embedding-3-small";
    for (size_t i = 0; i < sizeof bad_dims / sizeof bad_dims[0]; i++) {
        s = NULL;
        o.dense_dim = bad_dims[i];
        assert_int_equal(lr_store_open(p, &o, &s, &err), LR_EINVAL);
        snprintf(want, sizeof want, "history store: dense_dim %d is out of range [0, 65536]",
                 bad_dims[i]);
        assert_string_equal(err.message, want);
        assert_null(s);
        assert_int_equal(access(p, F_OK), -1);
    }
    o.dense_dim = LR__STORE_MAX_DIM;
    assert_int_equal(lr_store_open(":memory:", &o, &s, &err), 0);
    assert_int_equal(lr_store_dim(s), 65536);
    lr_store_free(s);
}

/* A record's task is capped at 64 KiB, refused naming the field; it had no
 * cap (a megabyte went in). */
static void add_refuses_a_task_over_its_cap(void **state)
{
    struct lr_outcome oc = {"m", 1, 3};
    struct lr_record rec = {"what is two plus two", 5, NULL, &oc, 1};
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    static char task[65537 + 1];
    (void)state;
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    memset(task, 't', sizeof task);
    task[65537] = '\0';
    rec.task = task;
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), LR_EINVAL);
    assert_string_equal(err.message, "record: task: 65537 bytes is over the cap of 65536");
    assert_int_equal(lr_store_count(s), 0);
    task[65536] = '\0';
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), 0);
    assert_int_equal(lr_store_count(s), 1);
    lr_store_free(s);
}

/* A dim without a vector, on a store of the built-in embedder, is the
 * caller's mistake (it meant to give one), refused as lr_router_route
 * refuses embedding_dim > 0 with no embedding; it was taken as no vector. */
static void add_refuses_a_dim_without_a_vector(void **state)
{
    struct lr_outcome oc = {"m", 1, 3};
    struct lr_record rec = {"what is two plus two", 5, NULL, &oc, 1};
    float v[4] = {1, 0, 0, 0};
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    (void)state;
    assert_int_equal(lr_store_open(":memory:", NULL, &s, &err), 0);
    assert_int_equal(lr_store_add(s, &rec, NULL, 4, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "a dim of 4 is given without a vector"));
    assert_int_equal(lr_store_add(s, &rec, v, 4, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "give no vector"));
    assert_int_equal(lr_store_count(s), 0);
    assert_int_equal(lr_store_add(s, &rec, NULL, 0, &err), 0);
    assert_int_equal(lr_store_count(s), 1);
    lr_store_free(s);
}

/* A dense store's vectors have at most 65536 floats, the most dense_dim may
 * be: a longer first vector, appended or an import's embed_dim, is refused
 * before anything is written (or embedded), and leaves the store without a
 * dimension; one of 65536 is kept, and the store opens again with it. */
static void vectors_over_the_dimension_cap_are_refused(void **state)
{
    struct lr_outcome oc = {"m", 1, 3};
    struct lr_record rec = {"what is two plus two", 5, NULL, &oc, 1};
    struct fake_embedder fe = {0};
    struct lr_import_options io = {.embed = fake_embed, .embed_arg = &fe,
                                   .embed_dim = LR__STORE_MAX_DIM + 1};
    struct lr_store_options o;
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    float *v = calloc(LR__STORE_MAX_DIM + 1, sizeof(*v));
    char db[512];
    (void)state;
    assert_non_null(v);
    v[0] = 1;
    path_in(db, sizeof(db), "dim-cap.db");
    lr_store_options_init(&o);
    o.embedder = "openai:text-embedding-3-small";
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_add(s, &rec, v, LR__STORE_MAX_DIM + 1, &err), LR_EINVAL);
    assert_string_equal(err.message, "vector dimension 65537 is over the cap of 65536");
    assert_int_equal(lr_store_count(s), 0);
    assert_int_equal(lr_store_dim(s), 0);
    assert_int_equal(lr_store_import_file(s, write_file("a.json", ARRAY3), &io, NULL, &err),
                     LR_EINVAL);
    assert_string_equal(err.message, "vector dimension 65537 is over the cap of 65536");
    assert_int_equal(fe.calls, 0);
    assert_int_equal(lr_store_count(s), 0);
    assert_int_equal(lr_store_dim(s), 0);
    assert_int_equal(lr_store_add(s, &rec, v, LR__STORE_MAX_DIM, &err), 0);
    assert_int_equal(lr_store_dim(s), 65536);
    lr_store_free(s);

    s = NULL;
    assert_int_equal(lr_store_open(db, &o, &s, &err), 0);
    assert_int_equal(lr_store_count(s), 1);
    assert_int_equal(lr_store_dim(s), 65536);
    lr_store_free(s);
    free(v);
}

/* A long path or field name in a message is cut in its middle, so the
 * reason after it stays: a 700-byte path pushed it out of the 512-byte
 * message, a 1999-byte field name too. */
static void long_names_leave_the_reason_in_the_message(void **state)
{
    static const char rule[] = ": expected a non-negative integer";
    char p[800], field[2000];
    struct lr_store *s = NULL;
    struct lr_error err = {0};
    size_t len;
    (void)state;
    snprintf(p, sizeof p, "%s/no-such-folder/", tmpdir);
    len = strlen(p);
    memset(p + len, 'a', 700 - len);
    p[700] = '\0';
    assert_int_not_equal(lr_store_open(p, NULL, &s, &err), 0);
    assert_null(s);
    len = strlen(err.message);
    assert_true(len < sizeof err.message);
    assert_non_null(strstr(err.message, "..."));
    assert_true(err.message[len - 1] != 'a');
    assert_non_null(strstr(err.message, "No such file or directory"));

    memset(field, 'f', sizeof field - 1);
    field[sizeof field - 1] = '\0';
    assert_int_equal(lr_record_check_number(LR_INPUT_TOKENS, -1, field, &err), LR_EINVAL);
    len = strlen(err.message);
    assert_true(len > strlen(rule));
    assert_string_equal(err.message + len - strlen(rule), rule);
    assert_non_null(strstr(err.message, "fff..."));
    /* A field name's control characters and invalid UTF-8 are escaped. */
    assert_int_equal(lr_record_check_number(LR_CORRECTNESS, 2, "c\n\xff", &err), LR_EINVAL);
    assert_string_equal(err.message, "c\\x0a\\xff: expected a boolean or a number in [0,1]");
}

/* lr_store_find_queries: exact texts only, duplicates in either list, the
 * file's records (another handle's commit too), and the NULL cases. */
static void finds_which_queries_the_file_holds(void **st)
{
    (void)st;
    char db[512];
    struct lr_store *a = NULL, *ro = NULL;
    struct lr_store_options rdonly = {NULL, 0, 1, 0, 0, 0};
    struct lr_import_report rep;
    struct lr_error err;
    const char *qs[] = {"which planet is the largest", "what is the capital of",
                        "what is the capital of france", "which planet is the largest",
                        "", "WHAT IS THE CAPITAL OF FRANCE", "a seed about cooking pasta"};
    const char *bad[] = {"x", NULL};
    unsigned char known[7];
    size_t count = 99;

    path_in(db, sizeof(db), "find.db");
    assert_int_equal(lr_store_open(db, NULL, &a, &err), 0);
    assert_int_equal(lr_store_import_file(a, write_file("f.json", ARRAY3), NULL, &rep, &err), 0);
    assert_int_equal(lr_store_open(db, &rdonly, &ro, &err), 0);
    /* Committed after the read-only handle's copy was built: in its file. */
    assert_int_equal(lr_store_add_outcome(a, "a seed about cooking pasta", -1, "small", 1, 3,
                                          &err),
                     0);
    assert_int_equal(lr_store_count(ro), 3);

    memset(known, 7, sizeof(known));
    assert_int_equal(lr_store_find_queries(ro, qs, 7, known, &count, &err), 0);
    assert_int_equal(count, 4);
    const unsigned char want[7] = {1, 0, 1, 1, 0, 0, 1};
    assert_memory_equal(known, want, 7);
    count = 99;
    assert_int_equal(lr_store_find_queries(a, qs, 7, NULL, &count, &err), 0);
    assert_int_equal(count, 4);
    assert_int_equal(lr_store_find_queries(a, qs, 0, NULL, &count, &err), 0);
    assert_int_equal(count, 0);

    memset(known, 7, sizeof(known));
    count = 99;
    assert_int_equal(lr_store_find_queries(a, bad, 2, known, &count, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "queries[1] is NULL"));
    assert_int_equal(count, 0);
    assert_int_equal(known[0] + known[1], 0); /* on failure known is all 0 */
    memset(known, 7, sizeof(known));
    assert_int_equal(lr_store_find_queries(NULL, qs, 2, known, &count, &err), LR_EINVAL);
    assert_int_equal(known[0] + known[1], 0);
    assert_int_equal(lr_store_find_queries(NULL, qs, 1, NULL, NULL, &err), LR_EINVAL);
    assert_non_null(strstr(err.message, "store is NULL"));
    assert_int_equal(lr_store_find_queries(a, NULL, 1, NULL, NULL, &err), LR_EINVAL);
    lr_store_free(ro);
    lr_store_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(imports_a_json_array),
        cmocka_unit_test(finds_which_queries_the_file_holds),
        cmocka_unit_test(imports_jsonl_with_a_split_filter),
        cmocka_unit_test(counts_the_records_with_no_split_apart),
        cmocka_unit_test(truncated_file_is_a_parse_error_and_changes_nothing),
        cmocka_unit_test(bad_records_are_named_skipped_and_counted),
        cmocka_unit_test(strict_import_fails_whole_on_a_bad_record),
        cmocka_unit_test(store_survives_close_and_reopen),
        cmocka_unit_test(zero_token_counts_are_kept_and_open_again),
        cmocka_unit_test(another_embedder_is_a_clear_error),
        cmocka_unit_test(names_read_from_the_file_are_shown_escaped),
        cmocka_unit_test(dense_store_keeps_vectors_and_checks_dimension),
        cmocka_unit_test(appends_validate_and_respect_the_cap),
        cmocka_unit_test(models_are_capped_at_4096_by_imports_and_appends),
        cmocka_unit_test(records_appended_to_an_empty_store_are_searchable),
        cmocka_unit_test(missing_file_is_an_io_error),
        cmocka_unit_test(import_refuses_what_it_cannot_read_naming_the_data),
        cmocka_unit_test(short_non_database_file_is_refused_and_left_alone),
        cmocka_unit_test(other_programs_database_is_refused_and_left_as_it_was),
        cmocka_unit_test(truncated_store_is_refused_with_sqlites_reason),
        cmocka_unit_test(copy_is_the_same_on_any_number_of_threads),
        cmocka_unit_test(dense_import_embeds_kept_records_in_batches),
        cmocka_unit_test(dense_import_is_all_or_nothing_when_the_embedder_fails),
        cmocka_unit_test(writes_from_the_stores_own_embed_callback_are_refused),
        cmocka_unit_test(negative_threads_are_refused),
        cmocka_unit_test(dense_outcome_appends_carry_their_vector),
        cmocka_unit_test(read_only_open_takes_dense_dim_without_writing_it),
        cmocka_unit_test(failed_first_vector_leaves_no_dimension_behind),
        cmocka_unit_test(writers_catch_up_with_another_connections_commits),
        cmocka_unit_test(dense_writer_catches_up_with_another_connections_vectors),
        cmocka_unit_test(append_while_another_connection_writes_is_busy_then_succeeds),
        cmocka_unit_test(refresh_reads_another_connections_commits),
        cmocka_unit_test(read_only_refresh_sees_a_rewrite_with_as_many_records),
        cmocka_unit_test(failed_refresh_keeps_the_old_copy),
        cmocka_unit_test(edited_rows_are_refused_by_record_column_and_value),
        cmocka_unit_test(rows_whose_ids_do_not_fit_are_refused_naming_the_table),
        cmocka_unit_test(edited_rows_are_refused_by_a_refresh_and_in_a_dense_store),
        cmocka_unit_test(dense_refresh_reads_another_connections_vectors),
        cmocka_unit_test(keyed_append_records_a_key_once),
        cmocka_unit_test(keyed_duplicate_is_told_apart_by_its_record),
        cmocka_unit_test(keyed_append_sees_another_connections_keys),
        cmocka_unit_test(dense_keyed_append_needs_and_keeps_its_vector),
        cmocka_unit_test(old_store_without_the_key_table),
        cmocka_unit_test(key_is_forgotten_after_its_ttl),
        cmocka_unit_test(expired_keys_are_deleted_a_few_per_keyed_append),
        cmocka_unit_test(keys_keep_their_own_ttl_whichever_handle_asks),
        cmocka_unit_test(old_key_table_gains_a_nullable_key_ttl),
        cmocka_unit_test(legacy_keys_follow_the_asking_handles_ttl),
        cmocka_unit_test(old_key_table_gains_key_times_and_keeps_its_keys),
        cmocka_unit_test(new_key_table_stamps_an_old_writers_keys_with_the_time),
        cmocka_unit_test(a_waiting_append_holds_back_later_readers),
        cmocka_unit_test(refresh_rebuilds_while_appends_go_on),
        cmocka_unit_test(reweigh_runs_while_appends_go_on),
        cmocka_unit_test(writer_rebuilds_outside_the_write_lock),
        cmocka_unit_test(failed_rebuild_keeps_the_old_copy_and_appends_go_on),
        cmocka_unit_test(deferred_reweigh_runs_at_the_next_refresh),
        cmocka_unit_test(import_builds_the_copy_whole),
        cmocka_unit_test(rebuild_reads_the_file_opened_not_its_path),
        cmocka_unit_test(
            write_after_the_file_was_replaced_is_refused_then_refresh_opens_the_new_one),
        cmocka_unit_test(replaced_files_handle_leaves_the_new_files_writers_alone),
        cmocka_unit_test(import_stops_when_its_cancel_flag_is_set),
        cmocka_unit_test(discard_removes_only_the_file_it_opened),
        cmocka_unit_test(symlink_swaps_are_seen_and_refresh_opens_the_new_file),
        cmocka_unit_test(write_after_the_file_was_removed_is_refused_until_one_is_there),
        cmocka_unit_test(path_turned_into_a_directory_is_named_alike_by_writes_and_refreshes),
        cmocka_unit_test(file_at_the_path_that_cannot_be_opened_is_named_by_writes),
        cmocka_unit_test(file_replaced_during_a_write_is_not_committed_to),
        cmocka_unit_test(dense_refresh_rebuilds_while_appends_go_on),
        cmocka_unit_test(import_far_behind_takes_ids_from_the_file),
        cmocka_unit_test(dense_import_batches_64_by_default_and_sets_no_dimension_for_nothing),
        cmocka_unit_test(store_that_does_not_name_its_embedder_is_refused),
        cmocka_unit_test(null_store_is_named_by_the_function_called),
        cmocka_unit_test(import_refuses_an_embed_callback_and_a_null_store_or_path),
        cmocka_unit_test(open_refuses_a_bad_embedder_id_and_a_dimension_for_the_builtin),
        cmocka_unit_test(open_refuses_an_empty_path_and_options_out_of_range),
        cmocka_unit_test(add_refuses_a_task_over_its_cap),
        cmocka_unit_test(add_refuses_a_dim_without_a_vector),
        cmocka_unit_test(vectors_over_the_dimension_cap_are_refused),
        cmocka_unit_test(long_names_leave_the_reason_in_the_message),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
