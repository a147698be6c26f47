/* record.h -- one record of the AIOS data format, checked field by field.
 *
 * The one place that says what a record in a data file may hold. The store's
 * import (store.c; `llmroute import` and the Python binding) and the dataset
 * loader behind `llmroute eval` (dataset.c) both call it, so a file that one
 * accepts the other accepts too, with the same message naming the same
 * field; the store's direct appends (lr_store_add and the lr_store_add_outcome
 * family) check their struct on the same rules. What is
 * the caller's own stays with it: the split filter, interning names, writing
 * to SQLite, estimating a missing input_token_length, and the file name,
 * record number and line in front of a message.
 *
 * Threads: no shared state; call from any thread.
 */
#ifndef LR_RECORD_H
#define LR_RECORD_H

#include <stddef.h>

#include "llmroute.h" /* enum lr_record_number */

#define LR__RECORD_MAX_QUERY (256 * 1024) /* bytes of one query */
#define LR__RECORD_MAX_OUTCOMES 1024      /* outcomes per record */
#define LR__RECORD_MAX_MODEL_NAME 256     /* bytes of a model name */
/* Bytes of a task label (task, eval_name): far more than a label needs,
 * less than a query may hold. */
#define LR__RECORD_MAX_TASK (64 * 1024)
#define LR__RECORD_MAX_TOKENS 1000000000  /* input_token_length, output_token_length */
#define LR__RECORD_MAX_FILE LR_DATA_FILE_MAX /* bytes of a data file, both loaders */
/* Bytes of a line of JSON lines, its newline included, both loaders (a
 * record is at most a few MB of JSON under the caps above). */
#define LR__RECORD_MAX_LINE (64L * 1024 * 1024)

struct json_t;       /* jansson's json_t */
struct json_error_t; /* jansson's json_error_t */

/* How both loaders parse a record (jansson's flags): any value, so that a
 * line or element that is no object is a bad record, not a bad file; a key
 * twice refused (which value would be meant?); whole numbers read as reals,
 * so that a count too big for an integer is a number over the cap in the
 * record holding it, not a "too big integer" that refuses the file; a NUL
 * character (\u0000, valid JSON) read, so that lr__record_from_json()
 * makes the record holding it bad, not its file. */
#define LR__RECORD_JSON_FLAGS                                                                  \
    (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL)

/* A record that passed the checks. Strings point into the JSON value it was
 * read from and live as long as that value. */
struct lr__record_view {
    const char *query;
    size_t query_len;
    long input_tokens; /* -1: absent or null (the caller estimates it) */
    const char *task;  /* "task", else "eval_name"; NULL: neither */
    size_t n;          /* outcomes, 1 to LR__RECORD_MAX_OUTCOMES */
    const char *model[LR__RECORD_MAX_OUTCOMES];
    double correctness[LR__RECORD_MAX_OUTCOMES];
    double output_tokens[LR__RECORD_MAX_OUTCOMES];
};

/* Check one record's JSON and fill *v. Returns 0, or -1 with msg (cap bytes)
 * naming the field and what it should be, for example
 * "outputs[2].correctness: expected a boolean or a number in [0,1]".
 * The rules:
 *   query                 a string of 1 to LR__RECORD_MAX_QUERY bytes, no NUL
 *   input_token_length    absent or null, or a whole number from 0 to 1e9
 *                         (123.0 is 123; 2.5 is refused: it is a count)
 *   task, eval_name       each absent, null or a string of at most
 *                         LR__RECORD_MAX_TASK bytes
 *   outputs               an array of 1 to LR__RECORD_MAX_OUTCOMES objects
 *   outputs[i].model_name         a string of 1 to LR__RECORD_MAX_MODEL_NAME
 *                                 bytes, each name once in a record
 *   outputs[i].correctness        a boolean or a number in [0,1]
 *   outputs[i].output_token_length  a number from 0 to 1e9 (may be a mean)
 * Other members ("split", extra fields) are not looked at, but for one
 * rule over the whole record: no string in it, anywhere, holds a NUL
 * character ("note: a NUL character (\u0000) is not allowed"). */
int lr__record_from_json(const struct json_t *rec, struct lr__record_view *v, char *msg,
                         size_t cap);

/* Whether record object rec is of split `split` (the loaders' --split):
 * 1 when its "split" is that string, 0 when it is another string, null or
 * absent (the record is skipped unread), -1 with msg set when it is no
 * string (5, true): a bad record, not another split, so that --strict does
 * not pass over it. */
int lr__record_split(const struct json_t *rec, const char *split, char *msg, size_t cap);

/* Where a record array stops parsing: line, column and what is wrong. */
struct lr__array_fault {
    long line;
    int col;
    char what[160]; /* jansson's words, or ours */
};

/* What a loader says of a raw NUL byte in JSON text (a file's, a line's):
 * jansson would report it as the end of the text, "'}' expected near end
 * of file", at a place that says nothing of it. */
#define LR__NUL_BYTE "a NUL byte (JSON text holds none)"

/* Whether p (len bytes) holds a NUL byte: 0 when not, else 1 with the
 * first one's line (line0 for p's first line) and column (1 for a line's
 * first character, counted as lr__json_error_col() counts; col0 characters
 * precede p on its first line). */
int lr__nul_at(const char *p, size_t len, long line0, int col0, long *line, int *col);

/* The encoding of a text in UTF-16 or UTF-32 (p, len bytes): "UTF-32LE",
 * "UTF-32BE", "UTF-16LE" or "UTF-16BE", else NULL. It is known by its byte
 * order mark, or without one by where the NUL bytes fall among its first 4
 * bytes: JSON text starts with ASCII characters (blank space, '[', '{'),
 * which UTF-16 writes with a NUL byte before or after each and UTF-32 with
 * three (RFC 4627, section 3). A text of 2 or 3 bytes is known by the same
 * pattern as far as it goes ("{\0" is UTF-16LE), when it holds a byte that
 * is not NUL and the pattern fits one encoding. *how is what LR__NOT_UTF8
 * says of the encoding's sign: the mark, or the NUL bytes. Every loader
 * refuses such a text naming its encoding: read as UTF-8 it failed as "a
 * NUL byte" or an "invalid token" at a place that said nothing of why
 * (Windows PowerShell's > and Notepad's "Unicode" save UTF-16LE with a
 * mark; other programs write none). */
const char *lr__text_encoding(const unsigned char *p, size_t len, const char **how);
/* With the encoding and *how of lr__text_encoding(). */
#define LR__NOT_UTF8 "is %s%s: JSON text is UTF-8, so save it as UTF-8"

/* What a loader says of a UTF-8 byte order mark past the start of the
 * file: at the start of a line of JSON lines after the first (files joined
 * with cat keep each one's mark), or in a JSON array where a record, a ','
 * or the ']' should be, or after it (lr__record_array_walk()): jansson's
 * "invalid token near '\xEF\xBB\xBF'" quoted the mark, which a terminal
 * shows as nothing. */
#define LR__BOM_IN_LINE                                                                          \
    "a UTF-8 byte order mark, which may start only the file (files joined into one keep "      \
    "each one's): remove it"

/* The column of a jansson parse error, 1 for a line's first character.
 * jansson counts the characters it has decoded, so at a byte that decodes
 * as no UTF-8 its column is the character's before (0 at a line's start);
 * every loader takes a column from here, so both name the same one. */
int lr__json_error_col(const struct json_error_t *je);

/* jansson's words for a parse error into buf, but for a NUL character,
 * which jansson explains by its own flag's name: "a NUL character
 * (\u0000) is not allowed near ...". Every loader words it from here. */
void lr__json_error_text(const struct json_error_t *je, char *buf, size_t cap);

/* The length (2 to 4) of the valid UTF-8 sequence of a non-ASCII character
 * at p, of which n bytes are there (RFC 3629: no overlong form, no
 * surrogate, nothing past U+10FFFF), with its code point in *cp; 0 when p
 * starts none (an ASCII byte among them). */
size_t lr__utf8_seq(const unsigned char *p, size_t n, unsigned long *cp);

/* 0 when s (len bytes) is valid UTF-8, else -1 with msg "field: not valid
 * UTF-8 at byte N" (N the offset of the first byte that starts no valid
 * sequence). The record checks use it, and so does routing on a query's
 * text, so both refuse the same text with the same words. */
int lr__record_check_utf8(const char *field, const char *s, size_t len, char *msg, size_t cap);

/* 0 when s (len bytes) is a name as the config holds one: valid UTF-8 with
 * no control character; else -1 with msg "field: contains the control
 * character 0xNN at byte N" or lr__record_check_utf8()'s. A record's model
 * names and a store's embedder id are held to it. */
int lr__record_check_name(const char *field, const char *s, size_t len, char *msg, size_t cap);

/* JSON's blank space between values. */
static inline int lr__json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* One record's JSON text (p, len bytes; a line of JSON lines, or with
 * JSON_DISABLE_EOF_CHECK in flags an array's element and what follows it),
 * parsed with LR__RECORD_JSON_FLAGS and flags; NULL with *je filled when it
 * is no JSON. But a number out of a double's range (1e400), which jansson
 * refuses as a syntax error of the whole text, is read as null, and range
 * (cap bytes) names the first one by its field, as record.c names fields:
 * "outputs[0].output_token_length: 1e400 is out of range: a number's
 * magnitude is at most about 1.8e308" (else range is ""). A loader counts
 * a record with one as a bad record, with that message, as it counts a
 * record with a field out of its rule's range; so a file with one is not
 * refused whole, but its record is skipped (or, under --strict, refuses
 * the file naming it). */
struct json_t *lr__record_load(const char *p, size_t len, size_t flags, struct json_error_t *je,
                               char *range, size_t cap);

/* Called with each element of a record array (any JSON value, parsed by
 * lr__record_load(); the callee keeps no reference past its return), its
 * index, the line it starts on, and NULL or lr__record_load()'s message
 * of a number out of range in it (a bad record). Nonzero stops the walk. */
typedef int (*lr__array_each)(void *ctx, struct json_t *rec, size_t index, long line,
                              const char *bad);

/* Walk a JSON array of records element by element, so that each record
 * knows its line and a fault is worded the same for both loaders: p[0..len)
 * holds the text, pos is just past its '[', which is on line `line` after
 * col0 bytes of that line that p does not hold (0 when p holds the whole
 * line). Returns 0; each()'s nonzero return; or LR_EPARSE with *fault
 * filled (the array not closed, no ',' or ']' after an element, data after
 * the array, or jansson's words for a broken element). */
int lr__record_array_walk(const char *p, size_t len, size_t pos, long line, int col0,
                          lr__array_each each, void *ctx, struct lr__array_fault *fault);

struct lr_record; /* llmroute.h */

/* The same rules, with the same messages, on a record that does not come
 * from JSON: lr_store_add's struct lr_record (and so every lr_store_add_*
 * entry point, and the Python binding's Store.add and add_outcome). A
 * negative input_tokens is the struct's "absent" (v->input_tokens -1), and
 * correctness, a double here, must be in [0,1]. Returns 0, or -1 with msg. */
int lr__record_from_struct(const struct lr_record *r, struct lr__record_view *v, char *msg,
                           size_t cap);

/* The rule for one of a record's numbers (lr_record_check_number in
 * llmroute.h says which): d is the JSON number's value, a boolean's 1 or 0
 * for correctness, or NaN for anything that is not a number. Returns 0, or
 * -1 with msg naming field ("input_token_length: expected a non-negative
 * integer"). Both the checks above and the gateway's feedback use it. */
int lr__record_check_number(enum lr_record_number kind, double d, const char *field, char *msg,
                            size_t cap);

#endif
