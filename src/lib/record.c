/* record.c -- one record of the AIOS data format, checked field by field
 * (see record.h for the rules and who calls it).
 *
 * Threads: no shared state; call from any thread.
 */
#include "record.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmroute.h"
#include "strategy.h" /* lr__error_set */

/* ==== Helpers ==== */

/* d as the shortest text that reads back as d: 1000000001 stays
 * "1000000001" (%g would say "1e+09", which looks like the cap it is over)
 * and 1000000000.5 stays "1000000000.5". */
static void format_number(char *buf, size_t cap, double d)
{
    for (int prec = 10; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

size_t lr__utf8_seq(const unsigned char *p, size_t n, unsigned long *cp)
{
    size_t len;
    unsigned long c;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2, c = p[0] & 0x1fu;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        len = 3, c = p[0] & 0x0fu;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        len = 4, c = p[0] & 0x07u;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3fu);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) || c > 0x10ffff ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* The offset of the first byte of s (len bytes) that starts no valid
 * UTF-8 sequence, or len when all of s is valid. JSON text is UTF-8, so an
 * import never holds anything else; the appends take C strings, which may. */
static size_t utf8_invalid_at(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    unsigned long cp;
    while (i < len) {
        if (p[i] < 0x80)
            n = 1;
        else if ((n = lr__utf8_seq(p + i, len - i, &cp)) == 0)
            return i;
        i += n;
    }
    return len;
}

/* field's text s (len bytes) is valid UTF-8, else -1 with a message. */
int lr__record_check_utf8(const char *field, const char *s, size_t len, char *msg, size_t cap)
{
    size_t at = utf8_invalid_at(s, len);
    if (at == len)
        return 0;
    snprintf(msg, cap, "%s: not valid UTF-8 at byte %zu", field, at);
    return -1;
}

int lr__record_check_name(const char *field, const char *s, size_t len, char *msg, size_t cap)
{
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c < 0x20 || c == 0x7f) {
            snprintf(msg, cap, "%s: contains the control character 0x%02x at byte %zu", field, c,
                     k);
            return -1;
        }
    }
    return lr__record_check_utf8(field, s, len, msg, cap);
}

static int check_query(const char *query, size_t len, char *msg, size_t cap)
{
    if (!query || len == 0) {
        snprintf(msg, cap, "query: expected a non-empty string");
        return -1;
    }
    if (len > LR__RECORD_MAX_QUERY) {
        snprintf(msg, cap, "query: %zu bytes is over the cap of %d", len, LR__RECORD_MAX_QUERY);
        return -1;
    }
    if (memchr(query, '\0', len)) {
        snprintf(msg, cap, "query: contains a NUL byte");
        return -1;
    }
    return lr__record_check_utf8("query", query, len, msg, cap);
}

/* A model name is one the config could hold: valid UTF-8 without control
 * characters (config.c refuses them in names, where they could end a
 * header line), so that every outcome can name a configured model. */
static int check_model_name(const char *name, size_t i, char *msg, size_t cap)
{
    size_t len = name ? strlen(name) : 0;
    char field[48];
    if (len == 0 || len > LR__RECORD_MAX_MODEL_NAME) {
        snprintf(msg, cap, "outputs[%zu].model_name: expected a string of 1 to %d bytes", i,
                 LR__RECORD_MAX_MODEL_NAME);
        return -1;
    }
    snprintf(field, sizeof field, "outputs[%zu].model_name", i);
    return lr__record_check_name(field, name, len, msg, cap);
}

/* ==== The rules on values, whatever they were read from ==== */

/* A token count over the cap, with the count written out in full. */
static int over_cap(const char *field, double d, char *msg, size_t cap)
{
    char num[32];
    format_number(num, sizeof num, d);
    snprintf(msg, cap, "%s: %s is over the cap of %d", field, num, LR__RECORD_MAX_TOKENS);
    return -1;
}

int lr__record_check_number(enum lr_record_number kind, double d, const char *field, char *msg,
                            size_t cap)
{
    switch (kind) {
    case LR_CORRECTNESS:
        if (!(d >= 0.0 && d <= 1.0)) {
            snprintf(msg, cap, "%s: expected a boolean or a number in [0,1]", field);
            return -1;
        }
        return 0;
    case LR_INPUT_TOKENS:
        /* A count: 123.0 is 123, but 2.5 is a mistake, not something to round. */
        if (!(d >= 0.0) || !isfinite(d) || d != floor(d)) {
            snprintf(msg, cap, "%s: expected a non-negative integer", field);
            return -1;
        }
        break;
    case LR_OUTPUT_TOKENS:
        if (!(d >= 0.0) || !isfinite(d)) {
            snprintf(msg, cap, "%s: expected a non-negative number", field);
            return -1;
        }
        break;
    default:
        snprintf(msg, cap, "%s: unknown kind of number", field);
        return -1;
    }
    if (d > LR__RECORD_MAX_TOKENS)
        return over_cap(field, d, msg, cap);
    return 0;
}

int lr_record_check_number(enum lr_record_number kind, double value, const char *field,
                           struct lr_error *err)
{
    char msg[sizeof err->message], name[LR__SHOWN_CAP(LR__SHOWN_NAME)];
    /* The caller's field name, escaped and cut short, so that the rule
     * after it always fits in the message. */
    if (field)
        field = lr__error_shown(field, LR__SHOWN_NAME, name, sizeof name);
    if (lr__record_check_number(kind, value, field ? field : "value", msg, sizeof msg) != 0)
        return lr__error_set(err, LR_EINVAL, "%s", msg);
    return 0;
}

int lr_record_check_query(const char *query, size_t len, struct lr_error *err)
{
    char msg[sizeof err->message];
    if (check_query(query, len, msg, sizeof msg) != 0)
        return lr__error_set(err, LR_EINVAL, "%s", msg);
    return 0;
}

/* input_token_length d (NaN: not a number) into v. */
static int check_input_tokens(double d, struct lr__record_view *v, char *msg, size_t cap)
{
    if (lr__record_check_number(LR_INPUT_TOKENS, d, "input_token_length", msg, cap) != 0)
        return -1;
    v->input_tokens = (long)d;
    return 0;
}

static int check_outcome_count(size_t n, char *msg, size_t cap)
{
    if (n == 0) {
        snprintf(msg, cap, "outputs: expected a non-empty array");
        return -1;
    }
    if (n > LR__RECORD_MAX_OUTCOMES) {
        snprintf(msg, cap, "outputs: %zu outcomes is over the cap of %d", n,
                 LR__RECORD_MAX_OUTCOMES);
        return -1;
    }
    return 0;
}

/* Outcome i: its model (named once in the record: v->model[0..i-1] are the
 * ones before it), correctness and output tokens, into v. */
static int check_outcome_values(const char *model, double correctness, double output_tokens,
                                size_t i, struct lr__record_view *v, char *msg, size_t cap)
{
    char field[48];

    if (check_model_name(model, i, msg, cap) != 0)
        return -1;
    for (size_t k = 0; k < i; k++)
        if (strcmp(v->model[k], model) == 0) {
            snprintf(msg, cap, "outputs[%zu].model_name: '%s' appears twice", i, model);
            return -1;
        }
    v->model[i] = model;
    snprintf(field, sizeof field, "outputs[%zu].correctness", i);
    if (lr__record_check_number(LR_CORRECTNESS, correctness, field, msg, cap) != 0)
        return -1;
    v->correctness[i] = correctness;
    snprintf(field, sizeof field, "outputs[%zu].output_token_length", i);
    if (lr__record_check_number(LR_OUTPUT_TOKENS, output_tokens, field, msg, cap) != 0)
        return -1;
    v->output_tokens[i] = output_tokens;
    return 0;
}

/* ==== Records from JSON ==== */

/* A JSON number as a double; -1 for anything else or a non-finite real. */
static int number(const json_t *j, double *out)
{
    if (json_is_integer(j)) {
        *out = (double)json_integer_value(j);
        return 0;
    }
    if (json_is_real(j)) {
        *out = json_real_value(j);
        return isfinite(*out) ? 0 : -1;
    }
    return -1;
}

/* "task" or "eval_name": absent, null or a string. */
/* A task label (field: "task" or "eval_name") is stored with its record,
 * so it is capped as the record's other strings are. */
static int check_task(const char *field, const char *task, char *msg, size_t cap)
{
    size_t len = task ? strlen(task) : 0;
    if (len > LR__RECORD_MAX_TASK) {
        snprintf(msg, cap, "%s: %zu bytes is over the cap of %d", field, len,
                 LR__RECORD_MAX_TASK);
        return -1;
    }
    return 0;
}

static int optional_string(const json_t *rec, const char *key, const char **out, char *msg,
                           size_t cap)
{
    const json_t *j = json_object_get(rec, key);
    *out = NULL;
    if (!j || json_is_null(j))
        return 0;
    if (!json_is_string(j)) {
        snprintf(msg, cap, "%s: expected a string", key);
        return -1;
    }
    *out = json_string_value(j);
    return 0;
}

static int check_outcome(const json_t *o, size_t i, struct lr__record_view *v, char *msg,
                         size_t cap)
{
    const json_t *m, *c;
    double correctness, output_tokens;

    if (!json_is_object(o)) {
        snprintf(msg, cap, "outputs[%zu]: expected an object", i);
        return -1;
    }
    m = json_object_get(o, "model_name");
    if (!json_is_string(m) || json_string_length(m) != strlen(json_string_value(m))) {
        snprintf(msg, cap, "outputs[%zu].model_name: expected a string of 1 to %d bytes", i,
                 LR__RECORD_MAX_MODEL_NAME);
        return -1;
    }
    c = json_object_get(o, "correctness");
    if (json_is_boolean(c))
        correctness = json_is_true(c) ? 1.0 : 0.0;
    else if (number(c, &correctness) != 0)
        correctness = NAN; /* refused below, with the range */
    if (number(json_object_get(o, "output_token_length"), &output_tokens) != 0)
        output_tokens = NAN; /* refused below */
    return check_outcome_values(json_string_value(m), correctness, output_tokens, i, v, msg,
                                cap);
}

int lr__record_split(const struct json_t *rec, const char *split, char *msg, size_t cap)
{
    const json_t *sp = json_object_get(rec, "split");
    if (sp && !json_is_null(sp) && !json_is_string(sp)) {
        snprintf(msg, cap, "split: expected a string");
        return -1;
    }
    /* By length: "train\u0000x" is not "train" (the record then is bad,
     * for its NUL, if it is read at all). */
    return json_is_string(sp) && json_string_length(sp) == strlen(split) &&
           memcmp(json_string_value(sp), split, json_string_length(sp)) == 0;
}

/* The first string in v (a member of rec, nested in objects and arrays)
 * that holds a NUL character, its place written into path (cap bytes;
 * "query", "outputs[0].model_name", "meta.tags[2]"): 1 when there is one,
 * 0 when there is none. Records are parsed with JSON_ALLOW_NUL, so that
 * a NUL, which JSON may hold, makes its record bad rather than its file;
 * a key cannot hold one (jansson refuses it in the parse). jansson caps
 * the nesting depth at 2048, which bounds the recursion. */
static int nul_find(const json_t *v, char *path, size_t cap)
{
    size_t len = strlen(path);
    if (json_is_string(v))
        return memchr(json_string_value(v), '\0', json_string_length(v)) != NULL;
    if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach((json_t *)v, key, x) {
            if (!json_is_string(x) && !json_is_object(x) && !json_is_array(x))
                continue;
            snprintf(path + len, cap - len, "%s%s", len ? "." : "", key);
            if (nul_find(x, path, cap))
                return 1;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            if (!json_is_string(x) && !json_is_object(x) && !json_is_array(x))
                continue;
            snprintf(path + len, cap - len, "[%zu]", i);
            if (nul_find(x, path, cap))
                return 1;
        }
    }
    path[len] = '\0';
    return 0;
}

int lr__record_from_json(const struct json_t *rec, struct lr__record_view *v, char *msg,
                         size_t cap)
{
    const json_t *q, *itl, *outs;
    const char *eval_name;
    double d;

    if (!json_is_object(rec)) {
        snprintf(msg, cap, "expected an object");
        return -1;
    }
    /* A NUL in any string, a field nothing reads included, makes the
     * record bad: no part of it is taken for what it does not say. */
    {
        char path[160] = "";
        if (nul_find(rec, path, sizeof path)) {
            snprintf(msg, cap, "%s: a NUL character (\\u0000) is not allowed", path);
            return -1;
        }
    }

    q = json_object_get(rec, "query");
    if (!json_is_string(q)) {
        snprintf(msg, cap, "query: expected a non-empty string");
        return -1;
    }
    v->query = json_string_value(q);
    v->query_len = json_string_length(q);
    if (check_query(v->query, v->query_len, msg, cap) != 0)
        return -1;

    itl = json_object_get(rec, "input_token_length");
    if (!itl || json_is_null(itl)) {
        v->input_tokens = -1;
    } else {
        if (number(itl, &d) != 0)
            d = NAN;
        if (check_input_tokens(d, v, msg, cap) != 0)
            return -1;
    }

    if (optional_string(rec, "task", &v->task, msg, cap) != 0 ||
        optional_string(rec, "eval_name", &eval_name, msg, cap) != 0 ||
        check_task("task", v->task, msg, cap) != 0 ||
        check_task("eval_name", eval_name, msg, cap) != 0)
        return -1;
    if (!v->task)
        v->task = eval_name;

    outs = json_object_get(rec, "outputs");
    if (!json_is_array(outs)) {
        snprintf(msg, cap, "outputs: expected a non-empty array");
        return -1;
    }
    if (check_outcome_count(json_array_size(outs), msg, cap) != 0)
        return -1;
    v->n = json_array_size(outs);
    for (size_t i = 0; i < v->n; i++)
        if (check_outcome(json_array_get(outs, i), i, v, msg, cap) != 0)
            return -1;
    return 0;
}

/* ==== Records from the public struct ==== */

int lr__record_from_struct(const struct lr_record *r, struct lr__record_view *v, char *msg,
                           size_t cap)
{
    if (!r) {
        snprintf(msg, cap, "record is NULL");
        return -1;
    }
    v->query = r->query;
    v->query_len = r->query ? strlen(r->query) : 0;
    if (check_query(v->query, v->query_len, msg, cap) != 0)
        return -1;
    /* Negative is the struct's way of saying "absent": estimate it. */
    if (r->input_tokens < 0)
        v->input_tokens = -1;
    else if (check_input_tokens((double)r->input_tokens, v, msg, cap) != 0)
        return -1;
    v->task = r->task;
    if (check_task("task", v->task, msg, cap) != 0)
        return -1;
    if (v->task && lr__record_check_utf8("task", v->task, strlen(v->task), msg, cap) != 0)
        return -1;
    if (check_outcome_count(r->outcomes ? r->n_outcomes : 0, msg, cap) != 0)
        return -1;
    v->n = r->n_outcomes;
    for (size_t i = 0; i < v->n; i++) {
        const struct lr_outcome *o = &r->outcomes[i];
        if (check_outcome_values(o->model, o->correctness, o->output_tokens, i, v, msg, cap) !=
            0)
            return -1;
    }
    return 0;
}

/* ==== Record arrays ==== */

static long count_lines(const char *p, size_t from, size_t to)
{
    long n = 0;
    for (size_t i = from; i < to; i++)
        n += p[i] == '\n';
    return n;
}

/* The column of p[pos] (1 for the first), in characters as jansson counts
 * them (a UTF-8 sequence is one), col0 added on p's first line. */
static int column_at(const char *p, size_t pos, int col0)
{
    size_t ls = pos;
    int col = 1;
    while (ls > 0 && p[ls - 1] != '\n')
        ls--;
    for (size_t i = ls; i < pos; i++)
        col += ((unsigned char)p[i] & 0xC0) != 0x80;
    return col + (ls == 0 ? col0 : 0);
}

const char *lr__text_encoding(const unsigned char *p, size_t len, const char **how)
{
    /* Each of the first 4 bytes as 'z' (NUL), 'a' (ASCII) or 'x' (other). */
    static const struct {
        const char *shape, *encoding;
    } unmarked[] = {
        {"zzza", "UTF-32BE"},
        {"azzz", "UTF-32LE"},
        {"zaza", "UTF-16BE"},
        {"azaz", "UTF-16LE"},
        /* A text of 2 or 3 bytes: how one of the shapes above starts, an
         * ASCII character among it. "az" starts both little-endian ones
         * and is UTF-16LE's whole '{'; "azz" is UTF-32LE's alone, as
         * UTF-16LE's second character would be no ASCII one. Bytes all
         * NUL show no encoding. */
        {"az", "UTF-16LE"},
        {"za", "UTF-16BE"},
        {"aza", "UTF-16LE"},
        {"zaz", "UTF-16BE"},
        {"azz", "UTF-32LE"},
    };
    char shape[5] = "";
    size_t n = len < 4 ? len : 4;

    *how = " (it starts with that encoding's byte order mark)";
    /* UTF-32LE's mark starts as UTF-16LE's does: tried first. */
    if (len >= 4 && p[0] == 0xFF && p[1] == 0xFE && p[2] == 0 && p[3] == 0)
        return "UTF-32LE";
    if (len >= 4 && p[0] == 0 && p[1] == 0 && p[2] == 0xFE && p[3] == 0xFF)
        return "UTF-32BE";
    if (len >= 2 && p[0] == 0xFF && p[1] == 0xFE)
        return "UTF-16LE";
    if (len >= 2 && p[0] == 0xFE && p[1] == 0xFF)
        return "UTF-16BE";
    for (size_t i = 0; i < n; i++)
        shape[i] = p[i] == 0 ? 'z' : p[i] < 0x80 ? 'a' : 'x';
    *how = n < 4 ? " without a byte order mark (its few bytes are ASCII with NUL bytes beside "
                   "them, as that encoding writes ASCII)"
                 : " without a byte order mark (its first characters are ASCII with NUL "
                   "bytes between them, as that encoding writes them)";
    for (size_t i = 0; i < sizeof unmarked / sizeof *unmarked; i++)
        if (strcmp(shape, unmarked[i].shape) == 0)
            return unmarked[i].encoding;
    return NULL;
}

int lr__nul_at(const char *p, size_t len, long line0, int col0, long *line, int *col)
{
    const char *nul = memchr(p, '\0', len);
    size_t at;
    if (!nul)
        return 0;
    at = (size_t)(nul - p);
    *line = line0 + count_lines(p, 0, at);
    *col = column_at(p, at, col0);
    return 1;
}

int lr__json_error_col(const json_error_t *je)
{
    return je->column + (json_error_code(je) == json_error_invalid_utf8);
}

void lr__json_error_text(const struct json_error_t *je, char *buf, size_t cap)
{
    static const char nul[] = "\\u0000 is not allowed without JSON_ALLOW_NUL";
    static const char nul_key[] = "NUL byte in object key not supported";
    if (strncmp(je->text, nul, sizeof nul - 1) == 0)
        snprintf(buf, cap, "a NUL character (\\u0000) is not allowed%s",
                 je->text + sizeof nul - 1);
    else if (strncmp(je->text, nul_key, sizeof nul_key - 1) == 0)
        snprintf(buf, cap, "a NUL character (\\u0000) is not allowed in a key%s",
                 je->text + sizeof nul_key - 1);
    else
        snprintf(buf, cap, "%s", je->text);
}

/* ==== Numbers out of range ==== */

/* Past the string whose opening quote is p[i]: the index after its closing
 * quote, or len when it is not closed. */
static size_t string_end(const char *p, size_t len, size_t i)
{
    for (i++; i < len && p[i] != '"'; i++)
        if (p[i] == '\\')
            i++;
    return i < len ? i + 1 : len;
}

static int number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

/* The end of the JSON value that starts after blank space in p (len
 * bytes): past its closing bracket or quote, or at the first byte that
 * ends a scalar. Only its brackets and strings are followed, which is
 * enough to find where a well-formed value ends; len when it does not. */
static size_t value_end(const char *p, size_t len)
{
    size_t i = 0, depth = 0;
    while (i < len && lr__json_ws(p[i]))
        i++;
    if (i < len && p[i] != '{' && p[i] != '[' && p[i] != '"') {
        while (i < len && !lr__json_ws(p[i]) && p[i] != ',' && p[i] != ']' && p[i] != '}')
            i++;
        return i;
    }
    while (i < len) {
        char c = p[i];
        if (c == '"') {
            i = string_end(p, len, i);
            if (depth == 0)
                return i;
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0)
            return i + 1;
        i++;
    }
    return len;
}

/* The field the value at p[at] is in, named as record.c names fields
 * (outputs[2].correctness), into out: p[0..at) is the start of a JSON
 * value that jansson parsed up to there. A key is shown as the file
 * writes it, escapes and all; past 32 levels, "..." stands for the rest. */
static void field_at(const char *p, size_t at, char *out, size_t cap)
{
    enum { MAX_LEVELS = 32 };
    struct {
        char kind; /* '{' or '[' */
        size_t index;
        const char *key;
        int key_len;
    } level[MAX_LEVELS];
    size_t depth = 0, n = 0;
    int want_key = 0;

    for (size_t i = 0; i < at;) {
        char c = p[i];
        if (c == '"') {
            size_t e = string_end(p, at, i);
            if (want_key && depth > 0 && depth <= MAX_LEVELS) {
                level[depth - 1].key = p + i + 1;
                level[depth - 1].key_len = (int)(e - i - 2);
            }
            want_key = 0;
            i = e;
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth < MAX_LEVELS) {
                level[depth].kind = c;
                level[depth].index = 0;
                level[depth].key = NULL;
                level[depth].key_len = 0;
            }
            depth++;
            want_key = c == '{';
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',' && depth > 0 && depth <= MAX_LEVELS) {
            if (level[depth - 1].kind == '[')
                level[depth - 1].index++;
            else
                want_key = 1;
        }
        i++;
    }
    out[0] = '\0';
    for (size_t d = 0; d < depth && d < MAX_LEVELS && n < cap; d++) {
        int w;
        if (level[d].kind == '[')
            w = snprintf(out + n, cap - n, "[%zu]", level[d].index);
        else
            w = snprintf(out + n, cap - n, "%s%.*s", d > 0 ? "." : "", level[d].key_len,
                         level[d].key ? level[d].key : "");
        n += w > 0 ? (size_t)w : 0;
    }
    if (depth > MAX_LEVELS && n < cap)
        snprintf(out + n, cap - n, "...");
}

/* lr__record_load(), which also names the first number out of range by
 * its field alone, into field (fcap bytes; "" when range is ""). */
static json_t *load_naming_field(const char *p, size_t len, size_t flags, json_error_t *je,
                                 char *field, size_t fcap, char *range, size_t cap)
{
    json_t *r = json_loadb(p, len, flags | LR__RECORD_JSON_FLAGS, je);
    char *copy;
    size_t n;

    range[0] = '\0';
    field[0] = '\0';
    if (r || json_error_code(je) != json_error_numeric_overflow)
        return r;
    /* jansson refuses the whole text for it. Parsed again from a copy of
     * the value in which each such number is null (padded with spaces, so
     * that every other fault keeps its place), it is a record with a bad
     * field, skipped as any other. */
    n = flags & JSON_DISABLE_EOF_CHECK ? value_end(p, len) : len;
    if (!(copy = malloc(n ? n : 1)))
        return NULL; /* *je still says what jansson said */
    memcpy(copy, p, n);
    while (!r && json_error_code(je) == json_error_numeric_overflow) {
        size_t end = (size_t)je->position, start = end;
        if (end > n || end < 4)
            break;
        while (start > 0 && number_char(copy[start - 1]))
            start--;
        if (end - start < 4)
            break;
        if (!range[0]) {
            field_at(copy, start, field, fcap);
            if (end - start > 40)
                snprintf(range, cap,
                         "%s%s%.20s... (%zu characters) is out of range: a number's magnitude "
                         "is at most about 1.8e308",
                         field, field[0] ? ": " : "", copy + start, end - start);
            else
                snprintf(range, cap,
                         "%s%s%.*s is out of range: a number's magnitude is at most about "
                         "1.8e308",
                         field, field[0] ? ": " : "", (int)(end - start), copy + start);
        }
        memcpy(copy + start, "null", 4);
        memset(copy + start + 4, ' ', end - start - 4);
        r = json_loadb(copy, n, flags | LR__RECORD_JSON_FLAGS, je);
    }
    free(copy);
    if (!r)
        range[0] = field[0] = '\0';
    return r;
}

json_t *lr__record_load(const char *p, size_t len, size_t flags, json_error_t *je, char *range,
                        size_t cap)
{
    char field[256];
    return load_naming_field(p, len, flags, je, field, sizeof field, range, cap);
}

int lr_record_check_range(const char *json, size_t len, char *field, size_t cap,
                          struct lr_error *err)
{
    char range[sizeof err->message], name[256];
    json_error_t je;

    if (field && cap > 0)
        field[0] = '\0';
    if (!json)
        return 0;
    json_decref(load_naming_field(json, len, 0, &je, name, sizeof name, range, sizeof range));
    if (!range[0])
        return 0;
    if (field && cap > 0)
        snprintf(field, cap, "%s", name);
    return lr__error_set(err, LR_EINVAL, "%s", range);
}

/* Whether a UTF-8 byte order mark starts at p[pos]. */
static int bom_at(const char *p, size_t len, size_t pos)
{
    return len - pos >= 3 && memcmp(p + pos, "\xef\xbb\xbf", 3) == 0;
}

static int array_fault(struct lr__array_fault *f, long line, int col, const char *what)
{
    f->line = line;
    f->col = col;
    snprintf(f->what, sizeof f->what, "%s", what);
    return LR_EPARSE;
}

int lr__record_array_walk(const char *p, size_t len, size_t pos, long line, int col0,
                          lr__array_each each, void *ctx, struct lr__array_fault *fault)
{
    size_t index = 0, line_at = pos;
    int rc;

    for (;;) {
        while (pos < len && lr__json_ws(p[pos]))
            pos++;
        line += count_lines(p, line_at, pos);
        line_at = pos;
        if (pos >= len)
            return array_fault(fault, line, column_at(p, pos, col0),
                               "unexpected end of file: the array is not closed");
        if (p[pos] == ']' && index == 0) {
            pos++;
            break;
        }
        /* jansson would quote the mark as its "invalid token". */
        if (bom_at(p, len, pos))
            return array_fault(fault, line, column_at(p, pos, col0), LR__BOM_IN_LINE);
        json_error_t je;
        /* Any value: a non-object element is a bad record, not a reason to
         * refuse the file. */
        char range[400];
        json_t *r =
            lr__record_load(p + pos, len - pos, JSON_DISABLE_EOF_CHECK, &je, range, sizeof range);
        if (!r) {
            int col = lr__json_error_col(&je);
            if (je.line == 1)
                col += column_at(p, pos, col0) - 1;
            char what[sizeof fault->what];
            lr__json_error_text(&je, what, sizeof what);
            return array_fault(fault, line + (je.line > 0 ? je.line - 1 : 0), col, what);
        }
        rc = each(ctx, r, index, line, range[0] ? range : NULL);
        json_decref(r);
        if (rc != 0)
            return rc;
        pos += (size_t)je.position;
        index++;
        while (pos < len && lr__json_ws(p[pos]))
            pos++;
        if (pos < len && p[pos] == ',') {
            pos++;
            continue;
        }
        if (pos < len && p[pos] == ']') {
            pos++;
            break;
        }
        line += count_lines(p, line_at, pos);
        return array_fault(fault, line, column_at(p, pos, col0),
                           pos >= len            ? "unexpected end of file: the array is not closed"
                           : bom_at(p, len, pos) ? LR__BOM_IN_LINE
                                                 : "expected ',' or ']' after a record");
    }
    while (pos < len && lr__json_ws(p[pos]))
        pos++;
    if (pos < len)
        return array_fault(fault, line + count_lines(p, line_at, pos), column_at(p, pos, col0),
                           bom_at(p, len, pos) ? LR__BOM_IN_LINE
                                               : "unexpected data after the array");
    return 0;
}
