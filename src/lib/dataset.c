/* dataset.c -- read past-query outcomes in the AIOS smart-routing format.
 *
 * The file is a JSON array of records or JSONL (one record per line); the
 * first non-blank byte tells which. Each record is checked field by field by
 * record.c, on the rules the store's import uses too, and copied into
 * compact arrays: one block of records, one of outcomes, and interned model
 * names, so 100k records cost a few tens of MB rather than a jansson tree
 * each (an array is read whole and parsed element by element, as the
 * store's import parses it). Messages name the record, its line and the
 * field, and a file's faults are worded as the import words them:
 *   record 12 (line 13): outputs[2].correctness: expected a boolean or a number in [0,1]
 *   data.json:3:14: unexpected end of file: the array is not closed
 *
 * Threads: a loaded dataset is immutable and may be read from any thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "llmroute.h"
#include "record.h"
#include "store.h"
#include "strategy.h"

#define DATASET_MAX_MODELS LR__STORE_MAX_MODELS

/* The bytes of a data file, however it is read (a regular file, a pipe, a
 * device), and of one line of JSON lines: a record is at most a few MB of
 * JSON (record.h's caps on a query, its outcomes and their names, written
 * with every byte escaped), so a longer line is no record and is refused
 * before it is read whole. tests/unit/test_dataset_caps.c sets them
 * lower, to reach them with small inputs. */
#ifndef LR__DATASET_MAX_FILE
#define LR__DATASET_MAX_FILE LR__RECORD_MAX_FILE
#endif
#ifndef LR__DATASET_MAX_LINE
#define LR__DATASET_MAX_LINE LR__RECORD_MAX_LINE
#endif

struct lr_dataset {
    struct lr_record *recs;
    size_t n, cap;
    struct lr_outcome *outs; /* recs[i].outcomes point here once loading ends */
    size_t *out_start;       /* record i's outcomes start at outs[out_start[i]] */
    size_t n_outs, cap_outs;
    struct lr__names names; /* interned model names, hashed as the store's are */
    char **strings; /* owned query and task strings, parallel to recs (2 per record) */
};

/* ==== Building ==== */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t c = *cap ? *cap : 64;
    void *q;
    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    q = realloc(*p, c * elem);
    if (!q)
        return LR_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* The one copy of a model name, found through the hash table (a file may
 * name thousands of models). NULL: out of memory, or DATASET_MAX_MODELS
 * names already. */
static const char *intern(struct lr_dataset *ds, const char *name)
{
    char *copy;
    int id = lr__names_find(&ds->names, name);
    if (id >= 0)
        return ds->names.names[id];
    if (ds->names.n >= DATASET_MAX_MODELS || lr__names_reserve(&ds->names, 1) != 0)
        return NULL;
    if (!(copy = strdup(name)))
        return NULL;
    return ds->names.names[lr__names_add(&ds->names, copy)];
}

/* Check one record's JSON (record.h, the rules the store's import uses too)
 * into *v; on success append it. Returns 0, LR_EPARSE with msg filled (a bad
 * record: also one with `bad`, lr__record_load()'s message of a number out
 * of range in it), or LR_ENOMEM. A record of another split is skipped
 * before it is checked (*skipped_split 1; 2 when it names no split at
 * all): evaluating the test split does not judge the train split. */
static int add_record(struct lr_dataset *ds, json_t *r, const char *bad, const char *split,
                      struct lr__record_view *v, int *skipped_split, char *msg, size_t msg_len)
{
    size_t cap_recs = ds->cap;
    struct lr_record *rec;
    char *qcopy = NULL, *tcopy = NULL;

    *skipped_split = 0;
    if (!json_is_object(r)) {
        snprintf(msg, msg_len, "expected an object");
        return LR_EPARSE;
    }
    if (split) {
        int in = lr__record_split(r, split, msg, msg_len);
        if (in < 0)
            return LR_EPARSE;
        if (in == 0) {
            json_t *sp = json_object_get(r, "split");
            *skipped_split = !sp || json_is_null(sp) ? 2 : 1;
            return 0;
        }
    }
    if (bad) {
        snprintf(msg, msg_len, "%s", bad);
        return LR_EPARSE;
    }
    if (lr__record_from_json(r, v, msg, msg_len) != 0)
        return LR_EPARSE;

    if (grow((void **)&ds->recs, &cap_recs, ds->n + 1, sizeof *ds->recs))
        return LR_ENOMEM;
    if (cap_recs != ds->cap) {
        size_t c1 = ds->cap, c2 = ds->cap;
        void *p = ds->out_start, *s = ds->strings;
        if (grow(&p, &c1, cap_recs + 1, sizeof *ds->out_start))
            return LR_ENOMEM;
        ds->out_start = p;
        if (grow(&s, &c2, cap_recs * 2, sizeof *ds->strings))
            return LR_ENOMEM;
        ds->strings = s;
        ds->cap = cap_recs;
    }
    if (grow((void **)&ds->outs, &ds->cap_outs, ds->n_outs + v->n, sizeof *ds->outs))
        return LR_ENOMEM;
    qcopy = strdup(v->query);
    if (v->task)
        tcopy = strdup(v->task);
    if (!qcopy || (v->task && !tcopy)) {
        free(qcopy);
        free(tcopy);
        return LR_ENOMEM;
    }
    ds->out_start[ds->n] = ds->n_outs;
    for (size_t i = 0; i < v->n; i++) {
        struct lr_outcome *oc = &ds->outs[ds->n_outs + i];
        oc->model = intern(ds, v->model[i]);
        if (!oc->model) {
            free(qcopy);
            free(tcopy);
            if (ds->names.n >= DATASET_MAX_MODELS) {
                snprintf(msg, msg_len, "outputs[%zu].model_name: more than %d distinct models",
                         i, DATASET_MAX_MODELS);
                return LR_EPARSE;
            }
            return LR_ENOMEM;
        }
        oc->correctness = v->correctness[i];
        oc->output_tokens = v->output_tokens[i];
    }
    ds->n_outs += v->n;
    rec = &ds->recs[ds->n];
    rec->query = qcopy;
    rec->task = tcopy;
    rec->input_tokens = v->input_tokens;
    rec->outcomes = NULL; /* set when loading ends: outs may still move */
    rec->n_outcomes = v->n;
    ds->strings[2 * ds->n] = qcopy;
    ds->strings[2 * ds->n + 1] = tcopy;
    ds->n++;
    return 0;
}

/* ==== Loading ==== */

struct loader {
    struct lr_dataset *ds;
    const struct lr_import_options *opts;
    struct lr_import_report *rep;
    struct lr_error *err;
    const char *path;
    struct lr__record_view *view; /* about 24 KB: on the heap, reused per record */
    /* The file's bytes read before the text a loader reads (a UTF-8 byte
     * order mark, blank space): `before` of them, the first 4 in head.
     * first_text: the loader has not yet read past its first line or
     * array, so what it reads follows them in the file. */
    unsigned char head[4];
    size_t before;
    int first_text;
};

/* One record parsed from the file: add it, or count and explain it. */
static int take(struct loader *L, json_t *r, size_t index, long line, const char *bad)
{
    char msg[400], where[64];
    int skipped = 0, rc;

    L->rep->read++;
    rc = add_record(L->ds, r, bad, L->opts ? L->opts->split : NULL, L->view, &skipped, msg,
                    sizeof msg);
    if (rc == LR_ENOMEM)
        return lr__error_set(L->err, LR_ENOMEM, "out of memory reading %s", L->path);
    if (skipped) {
        L->rep->skipped_split++;
        L->rep->skipped_unsplit += skipped == 2;
        return 0;
    }
    if (rc == 0) {
        L->rep->imported++;
        return 0;
    }
    if (line > 0)
        snprintf(where, sizeof where, "record %zu (line %ld)", index, line);
    else
        snprintf(where, sizeof where, "record %zu", index);
    if (L->rep->bad++ == 0)
        snprintf(L->rep->first_bad, sizeof L->rep->first_bad, "%s: %s", where, msg);
    if (L->opts && L->opts->strict) {
        lr__error_set(L->err, LR_EPARSE, "%s: %s: %s", L->path, where, msg);
        if (L->err)
            L->err->line = (int)line;
        return LR_EPARSE;
    }
    return 0;
}

/* Where a record should start, the file holds no JSON: the position and
 * jansson's words, as the store's import says it ("data.json:3:14: ..."). */
static int parse_fail(struct loader *L, long line, int col, const char *what, const char *hint)
{
    lr__error_set(L->err, LR_EPARSE, "%s:%ld:%d: %s%s", L->path, line, col, what, hint);
    if (L->err)
        L->err->line = (int)line;
    return LR_EPARSE;
}

static const char NOT_DATA[] = " (expected a JSON array or JSON lines of objects)";

/* A NUL byte in text (n bytes; the NUL at line, col). In the loader's first
 * text, a file in UTF-16 or UTF-32 is named by its encoding, from its first
 * 4 bytes (those read before the text, its own, and when it is shorter the
 * next ones from f, which the failed load no longer needs), as the store's
 * import names it from the file it holds whole: the stream cannot be read
 * again from its start. Else the NUL byte is named, at its place. */
static int nul_fail(struct loader *L, FILE *f, const char *text, size_t n, long line, int col)
{
    unsigned char head[4];
    size_t k = L->before < 4 ? L->before : 4;
    const char *how, *encoding;

    memcpy(head, L->head, k);
    for (size_t i = 0; k < 4 && i < n; i++)
        head[k++] = (unsigned char)text[i];
    for (int c; L->first_text && k < 4 && (c = fgetc(f)) != EOF;)
        head[k++] = (unsigned char)c;
    if (L->first_text && (encoding = lr__text_encoding(head, k, &how)) != NULL) {
        lr__error_set(L->err, LR_EPARSE, "%s:1:1: the file " LR__NOT_UTF8, L->path, encoding,
                      how);
        if (L->err)
            L->err->line = 1;
        return LR_EPARSE;
    }
    return parse_fail(L, line, col, LR__NUL_BYTE, "");
}

/* The rest of f (a file or a pipe) into *out (malloc'd, *len bytes), at
 * most `max` bytes: what the file's cap leaves after the bytes read before. */
static int read_rest(struct loader *L, FILE *f, size_t max, char **out, size_t *len)
{
    size_t cap = max < 65536 ? max : 65536, n = 0;
    char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return lr__error_set(L->err, LR_ENOMEM, "out of memory reading %s", L->path);
    for (;;) {
        if (n == cap) {
            size_t grown = cap * 2 > max ? max : cap * 2;
            char *g;
            if (grown == cap) {
                if (fgetc(f) == EOF)
                    break;
                free(buf);
                return lr__error_set(L->err, LR_ETOOBIG,
                                     "'%s' is over the cap of %ld bytes for a data file", L->path,
                                     (long)LR__DATASET_MAX_FILE);
            }
            if (!(g = realloc(buf, grown))) {
                free(buf);
                return lr__error_set(L->err, LR_ENOMEM, "out of memory reading %s", L->path);
            }
            buf = g;
            cap = grown;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return lr__error_set(L->err, LR_EIO, "%s: read error", L->path);
    }
    *out = buf;
    *len = n;
    return 0;
}

static int take_each(void *ctx, json_t *rec, size_t index, long line, const char *bad)
{
    return take(ctx, rec, index, line, bad);
}

/* A JSON array, element by element, so that each record knows its line and
 * a fault is worded as the store's import words it (record.h's walk, which
 * both use). f is at the '[', on line `line` after col0 other bytes, and
 * `used` bytes (a byte order mark, blank space) came before it. */
static int load_array(struct loader *L, FILE *f, long line, int col0, size_t used)
{
    struct lr__array_fault fault = {0};
    char *p = NULL;
    size_t len = 0;
    int rc;

    long nul_line;
    int nul_col;

    if ((rc = read_rest(L, f, (size_t)LR__DATASET_MAX_FILE - used, &p, &len)) != 0)
        return rc;
    if (lr__nul_at(p, len, line, col0, &nul_line, &nul_col)) {
        rc = nul_fail(L, f, p, len, nul_line, nul_col);
        free(p);
        return rc;
    }
    rc = lr__record_array_walk(p, len, 1, line, col0, take_each, L, &fault); /* past the '[' */
    if (fault.line > 0)
        rc = parse_fail(L, fault.line, fault.col, fault.what, "");
    free(p);
    return rc;
}

/* One line of f (its '\n' kept) into *buf, growing it up to `max` bytes
 * a line and taking its bytes from *budget, what is left of the file's cap:
 * a pipe or a device (--data /dev/zero) is read with the bounds a regular
 * file's size check gives. Returns the line's length, 0 at the end, or
 * -1 with *why set: LR_ENOMEM, LR_ETOOBIG (*why_line: the line is over
 * max; else the file is over its cap) or LR_EIO. */
static ssize_t read_line(FILE *f, char **buf, size_t *cap, size_t max, size_t *budget, int *why,
                         int *why_line)
{
    size_t n = 0;
    int c;

    *why_line = 0;
    for (;;) {
        c = getc_unlocked(f);
        if (c == EOF)
            break;
        if (*budget == 0) {
            *why = LR_ETOOBIG;
            return -1;
        }
        if (n == max) {
            *why = LR_ETOOBIG;
            *why_line = 1;
            return -1;
        }
        if (n + 1 >= *cap) {
            size_t grown = *cap ? *cap * 2 : 256;
            char *g;
            if (grown > max + 1)
                grown = max + 1;
            if (!(g = realloc(*buf, grown))) {
                *why = LR_ENOMEM;
                return -1;
            }
            *buf = g;
            *cap = grown;
        }
        (*buf)[n++] = (char)c;
        (*budget)--;
        if (c == '\n')
            break;
    }
    if (ferror(f)) {
        *why = LR_EIO;
        return -1;
    }
    if (n > 0)
        (*buf)[n] = '\0';
    return (ssize_t)n;
}

/* JSON lines: one record per line; blank lines are ignored. `lineno` is
 * the number of lines before f's position, col0 the bytes before it on
 * its line, `used` the bytes read before it (they count towards the
 * file's cap). */
static int load_lines(struct loader *L, FILE *f, long lineno, int col0, size_t used)
{
    char *line = NULL;
    size_t cap = 0, index = 0;
    size_t budget = used < LR__DATASET_MAX_FILE ? LR__DATASET_MAX_FILE - used : 0;
    ssize_t len;
    int rc = 0, why = 0, why_line = 0;

    while ((len = read_line(f, &line, &cap, LR__DATASET_MAX_LINE, &budget, &why, &why_line)) > 0) {
        json_error_t je;
        json_t *r;
        char range[400];
        ssize_t s = 0, e = len;
        long nul_line;
        int nul_col;
        lineno++;
        while (s < e && lr__json_ws(line[s]))
            s++;
        while (e > s && lr__json_ws(line[e - 1]))
            e--;
        if (s == e) {
            col0 = 0;
            L->first_text = 0;
            continue; /* blank line */
        }
        if (lr__nul_at(line + s, (size_t)(e - s), lineno, (int)s + col0, &nul_line, &nul_col)) {
            rc = nul_fail(L, f, line, (size_t)len, lineno, nul_col);
            break;
        }
        L->first_text = 0;
        if (e - s >= 3 && memcmp(line + s, "\xef\xbb\xbf", 3) == 0) {
            rc = parse_fail(L, lineno, (int)s + col0 + 1, LR__BOM_IN_LINE, "");
            break;
        }
        /* "5" parses: a bad record, which take() counts. */
        r = lr__record_load(line + s, (size_t)(e - s), 0, &je, range, sizeof range);
        if (!r) {
            char what[sizeof je.text];
            lr__json_error_text(&je, what, sizeof what);
            /* Not JSON from the start: say what a data file is (a line
             * that starts as an object is one, however it goes on). */
            rc = parse_fail(L, lineno, lr__json_error_col(&je) + (int)s + col0, what,
                            index == 0 && line[s] != '{' ? NOT_DATA : "");
            break;
        }
        col0 = 0;
        rc = take(L, r, index++, lineno, range[0] ? range : NULL);
        json_decref(r);
        if (rc)
            break;
    }
    free(line);
    if (rc == 0 && len < 0) {
        if (why == LR_ENOMEM)
            rc = lr__error_set(L->err, LR_ENOMEM, "out of memory reading %s (line %ld)", L->path,
                               lineno + 1);
        else if (why == LR_ETOOBIG && why_line)
            rc = lr__error_set(L->err, LR_ETOOBIG,
                               "%s: line %ld is over the cap of %ld bytes for a line of JSON "
                               "lines",
                               L->path, lineno + 1, (long)LR__DATASET_MAX_LINE);
        else if (why == LR_ETOOBIG)
            rc = lr__error_set(L->err, LR_ETOOBIG,
                               "'%s' is over the cap of %ld bytes for a data file", L->path,
                               (long)LR__DATASET_MAX_FILE);
        else
            rc = lr__error_set(L->err, LR_EIO, "%s: read error", L->path);
        if (L->err)
            L->err->line = (int)(lineno + 1);
    }
    return rc;
}

int lr_dataset_load(const char *path, const struct lr_import_options *opts,
                    struct lr_dataset **out, struct lr_import_report *report,
                    struct lr_error *err)
{
    struct lr_import_report rep_local;
    struct loader L;
    struct stat st;
    FILE *f;
    int c, rc;

    if (!out)
        return lr__error_set(err, LR_EINVAL, "lr_dataset_load: out is NULL");
    *out = NULL;
    if (!path)
        return lr__error_set(err, LR_EINVAL, "lr_dataset_load: path is NULL");
    if (!report)
        report = &rep_local;
    memset(report, 0, sizeof *report);
    /* The data's name in messages, as lr_store_import_file() has it. */
    const char *name = opts && opts->name ? opts->name : path;
    /* The file's faults are worded as the store's import words them
     * (lr_store_import_file()), so that `llmroute eval` and `llmroute
     * import` say the same of the same file. */
    f = fopen(path, "rb");
    if (!f) {
        char why[LR__OPEN_FAULT_CAP];
        return lr__error_set(err, LR_EIO, "cannot read '%s': %s", name,
                             lr__error_open_fault(path, errno, why));
    }
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return lr__error_set(err, LR_EIO, "cannot read '%s': %s", name, strerror(e));
    }
    /* A directory opens for reading and reads as empty; say what it is. A
     * pipe (--data <(zcat ...)) is read like a file. */
    if (S_ISDIR(st.st_mode)) {
        fclose(f);
        return lr__error_set(err, LR_EIO, "cannot read '%s': it is a directory", name);
    }
    if (S_ISREG(st.st_mode) && st.st_size > LR__DATASET_MAX_FILE) {
        fclose(f);
        return lr__error_set(err, LR_ETOOBIG, "'%s' is %lld bytes, over the cap of %ld bytes for a data file",
                             name, (long long)st.st_size, (long)LR__DATASET_MAX_FILE);
    }
    L.ds = calloc(1, sizeof *L.ds);
    L.view = malloc(sizeof *L.view);
    if (!L.ds || !L.view) {
        free(L.ds);
        free(L.view);
        fclose(f);
        return lr__error_set(err, LR_ENOMEM, "out of memory reading %s", name);
    }
    L.opts = opts;
    L.rep = report;
    L.err = err;
    L.path = name;
    L.before = 0;
    L.first_text = 1;

    /* A UTF-8 byte order mark, as some editors save a file, is not data.
     * A file is read once (it may be a pipe), so the mark is read past
     * here; a first byte 0xEF that starts no mark starts no JSON either. */
    c = fgetc(f);
    /* Nor does a UTF-16 or UTF-32LE file's mark start JSON: its encoding
     * is named (lr__text_encoding()). The bytes read are no JSON either
     * way. (UTF-32BE's mark, and a file in UTF-16 or UTF-32 with no mark,
     * start with a NUL byte or have one second: read on, the loaders find
     * it and name the encoding from the first bytes, nul_fail().) */
    if (c == 0xFF || c == 0xFE) {
        unsigned char mark[4] = {(unsigned char)c};
        size_t n = 1;
        int more;
        while (n < 4 && (more = fgetc(f)) != EOF)
            mark[n++] = (unsigned char)more;
        const char *how, *encoding = lr__text_encoding(mark, n, &how);
        fclose(f);
        free(L.ds);
        free(L.view);
        if (encoding)
            return lr__error_set(err, LR_EPARSE, "%s:1:1: the file " LR__NOT_UTF8, name,
                                 encoding, how);
        /* As jansson words such a byte. */
        return lr__error_set(err, LR_EPARSE, "%s:1:1: unable to decode byte 0x%02x%s", name, c,
                             NOT_DATA);
    }
    if (c == 0xEF && !(fgetc(f) == 0xBB && fgetc(f) == 0xBF)) {
        fclose(f);
        free(L.ds);
        free(L.view);
        return lr__error_set(err, LR_EPARSE, "%s:1:1: invalid token%s", name, NOT_DATA);
    }
    if (c != 0xEF)
        ungetc(c, f);
    else {
        memcpy(L.head, "\xef\xbb\xbf", 3);
        L.before = 3;
    }
    /* Blank space up to the first record: its lines are counted, and the
     * bytes on the first record's line, for the positions in messages. */
    long lines = 0;
    size_t used = c == 0xEF ? 3 : 0;
    int col = 0;
    while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\r' || c == '\n') {
        if (L.before < sizeof L.head)
            L.head[L.before] = (unsigned char)c;
        L.before++;
        col = c == '\n' ? 0 : col + 1;
        lines += c == '\n';
        if (++used > (size_t)LR__DATASET_MAX_FILE)
            break;
    }
    if (used > (size_t)LR__DATASET_MAX_FILE) {
        rc = lr__error_set(err, LR_ETOOBIG, "'%s' is over the cap of %ld bytes for a data file",
                           name, (long)LR__DATASET_MAX_FILE);
    } else if (c == EOF) {
        rc = lr__error_set(err, LR_EEMPTY, "%s: the file holds no records", name);
    } else {
        ungetc(c, f);
        rc = c == '[' ? load_array(&L, f, lines + 1, col, used) : load_lines(&L, f, lines, col, used);
    }
    fclose(f);
    free(L.view);
    if (rc) {
        lr_dataset_free(L.ds);
        return rc;
    }
    for (size_t i = 0; i < L.ds->n; i++)
        L.ds->recs[i].outcomes = L.ds->outs + L.ds->out_start[i];
    *out = L.ds;
    return 0;
}

void lr_dataset_free(struct lr_dataset *ds)
{
    if (!ds)
        return;
    for (size_t i = 0; i < 2 * ds->n; i++)
        free(ds->strings[i]);
    lr__names_free(&ds->names);
    free(ds->strings);
    free(ds->recs);
    free(ds->outs);
    free(ds->out_start);
    free(ds);
}

size_t lr_dataset_count(const struct lr_dataset *ds)
{
    return ds ? ds->n : 0;
}

const struct lr_record *lr_dataset_record(const struct lr_dataset *ds, size_t i)
{
    return ds && i < ds->n ? &ds->recs[i] : NULL;
}
