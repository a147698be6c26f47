/* jsonscan.c -- a scanner over the top level of a JSON object (see
 * jsonscan.h). It skips values without interpreting them: strings by their
 * escapes, containers by bracket depth, anything else up to the next
 * delimiter. The body was already accepted by jansson, so this only has to be
 * exact about where members begin and end; it still checks every byte it
 * relies on and refuses what it does not recognise.
 *
 * js_object_prefix() is the other kind: a whole reading of every byte of
 * text jansson has not accepted (an answer the upstream ended early), by the
 * JSON grammar as a pushdown automaton, to say whether more bytes could have
 * made it an object.
 *
 * Threads: pure functions; any thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>

#include "jsonscan.h"

#include "httpd.h" /* hs_hex_digit() */

static size_t skip_ws(const char *b, size_t i, size_t len)
{
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
        i++;
    return i;
}

/* b[i] is '"'; return the index after the closing quote, or 0 on error. */
static size_t skip_string(const char *b, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (b[i] == '\\') {
            i++;
            continue;
        }
        if (b[i] == '"')
            return i + 1;
    }
    return 0;
}

/* Skip one value starting at b[i] (not whitespace); index after it, or 0. */
static size_t skip_value(const char *b, size_t i, size_t len)
{
    if (i >= len)
        return 0;
    if (b[i] == '"')
        return skip_string(b, i, len);
    if (b[i] == '{' || b[i] == '[') {
        size_t depth = 0;
        for (; i < len; i++) {
            char c = b[i];
            if (c == '"') {
                size_t j = skip_string(b, i, len);
                if (!j)
                    return 0;
                i = j - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (depth == 0)
                    return 0;
                if (--depth == 0)
                    return i + 1;
            }
        }
        return 0;
    }
    /* A number or a literal: up to the next delimiter. */
    {
        size_t start = i;
        while (i < len && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' &&
               b[i] != '\t' && b[i] != '\n' && b[i] != '\r' && b[i] != '"' && b[i] != '{' &&
               b[i] != '[' && b[i] != ':')
            i++;
        return i > start ? i : 0;
    }
}

/* Walk the top level of the object in buf[0..len), handing each member to
 * fn in order. Returns 0, or -1 when buf is not an object the scanner
 * understands (fn may have seen the members before the fault). */
static int scan_members(const char *buf, size_t len,
                        void (*fn)(const char *buf, const struct js_member *m, void *arg),
                        void *arg)
{
    size_t i = skip_ws(buf, 0, len);

    if (i >= len || buf[i] != '{')
        return -1;
    i = skip_ws(buf, i + 1, len);
    if (i < len && buf[i] == '}') {
        i = skip_ws(buf, i + 1, len);
        return i == len ? 0 : -1;
    }
    for (;;) {
        struct js_member m;
        if (i >= len || buf[i] != '"')
            return -1;
        m.key_start = i;
        i = skip_string(buf, i, len);
        if (!i)
            return -1;
        m.key_end = i;
        i = skip_ws(buf, i, len);
        if (i >= len || buf[i] != ':')
            return -1;
        i = skip_ws(buf, i + 1, len);
        m.value_start = i;
        i = skip_value(buf, i, len);
        if (!i)
            return -1;
        m.value_end = i;
        fn(buf, &m, arg);
        i = skip_ws(buf, i, len);
        if (i >= len)
            return -1;
        if (buf[i] == ',') {
            i = skip_ws(buf, i + 1, len);
            continue;
        }
        if (buf[i] != '}')
            return -1;
        i = skip_ws(buf, i + 1, len);
        return i == len ? 0 : -1;
    }
}

struct into_array {
    struct js_member *members;
    size_t cap, count;
};

static void into_array(const char *buf, const struct js_member *m, void *arg)
{
    struct into_array *a = arg;
    (void)buf;
    if (a->count < a->cap)
        a->members[a->count] = *m;
    a->count++;
}

int js_scan_object(const char *buf, size_t len, struct js_member *members, size_t cap, size_t *n)
{
    struct into_array a = {members, cap, 0};

    *n = 0;
    if (scan_members(buf, len, into_array, &a) != 0)
        return -1;
    *n = a.count;
    return a.count > cap ? -2 : 0;
}

struct finder {
    const char *const *names;
    struct js_member *found;
};

static void find_named(const char *buf, const struct js_member *m, void *arg)
{
    struct finder *f = arg;
    for (size_t k = 0; f->names[k]; k++)
        if (js_key_equals(buf, m, f->names[k]))
            f->found[k] = *m;
}

int js_find_members(const char *buf, size_t len, const char *const *names, struct js_member *found)
{
    struct finder f = {names, found};
    size_t k;

    for (k = 0; names[k]; k++)
        memset(&found[k], 0, sizeof found[k]);
    if (scan_members(buf, len, find_named, &f) == 0)
        return 0;
    for (k = 0; names[k]; k++)
        memset(&found[k], 0, sizeof found[k]);
    return -1;
}

/* A byte of a number or a literal (true, false, null): a run of them is one
 * value. */
static int is_scalar_byte(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '-' || c == '+' || c == '.';
}

size_t js_count_values(const char *buf, size_t len, size_t limit)
{
    size_t count = 0;
    int in_scalar = 0;

    for (size_t i = 0; i < len && count <= limit; i++) {
        char c = buf[i];
        if (c == '"') {
            /* A string is one value whatever it holds; skip it whole. */
            count++;
            in_scalar = 0;
            for (i++; i < len && buf[i] != '"'; i++)
                if (buf[i] == '\\')
                    i++;
        } else if (is_scalar_byte(c)) {
            count += !in_scalar;
            in_scalar = 1;
        } else {
            count += c == '{' || c == '[';
            in_scalar = 0;
        }
    }
    return count;
}

int js_find_nul(const char *buf, size_t len, int *line, int *column)
{
    const char *nul = len ? memchr(buf, '\0', len) : NULL;
    int l = 1, c = 0;
    if (!nul)
        return 0;
    for (const char *p = buf; p <= nul; p++) {
        if (*p == '\n') {
            l++;
            c = 0;
        } else if (((unsigned char)*p & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *column = c;
    return 1;
}

int js_body_fault(const char *buf, size_t len, char *msg, size_t cap)
{
    int line, column;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
        snprintf(msg, cap,
                 "the request body begins with a byte order mark (U+FEFF, the bytes EF BB BF), "
                 "which JSON sent over a network must not carry (RFC 8259 section 8.1): send the "
                 "JSON without it");
        return 1;
    }
    if (js_find_nul(buf, len, &line, &column)) {
        snprintf(msg, cap,
                 "malformed JSON in the request body: a NUL byte at line %d, column %d " JS_NUL_WHY,
                 line, column);
        return 1;
    }
    return 0;
}

int js_key_equals(const char *buf, const struct js_member *m, const char *name)
{
    const char *k = buf + m->key_start + 1;
    size_t klen = m->key_end - m->key_start - 2, nlen = strlen(name);
    json_t *s;
    int eq;

    if (!memchr(k, '\\', klen))
        return klen == nlen && memcmp(k, name, nlen) == 0;
    /* An escaped key ("mod\u0065l") means what jansson decodes it to. */
    s = json_loadb(buf + m->key_start, m->key_end - m->key_start, JSON_DECODE_ANY, NULL);
    eq = json_is_string(s) && json_string_length(s) == nlen &&
         memcmp(json_string_value(s), name, nlen) == 0;
    json_decref(s);
    return eq;
}

static int is_removed(const char *buf, const struct js_member *m, const char *const *remove)
{
    for (size_t r = 0; remove && remove[r]; r++)
        if (js_key_equals(buf, m, remove[r]))
            return 1;
    return 0;
}

#define STACK_MEMBERS 64

int js_rewrite_body(const char *buf, size_t len, const struct js_rewrite *rw, char **out,
                    size_t *out_len)
{
    static const char model_key[] = "\"model\":";
    struct js_member stack[STACK_MEMBERS], *m = stack;
    size_t n = 0, mlen = rw->model_json ? strlen(rw->model_json) : 0, o = 0;
    size_t klen = sizeof model_key - 1;
    ssize_t prev_kept = -1;
    char *dst = NULL;
    int rc, add_model = rw->model_json != NULL;

    rc = js_scan_object(buf, len, stack, STACK_MEMBERS, &n);
    if (rc == -2) {
        m = malloc(n * sizeof *m);
        if (!m)
            return -2;
        rc = js_scan_object(buf, len, m, n, &n);
    }
    if (rc)
        goto out;
    size_t n_model = 0; /* members named model: each gets model_json */
    for (size_t i = 0; rw->model_json && i < n; i++)
        if (js_key_equals(buf, &m[i], "model"))
            n_model++;
    if (n_model)
        add_model = 0;
    /* The result is never longer than the body plus the new model member
     * and the ", " after it, plus model_json for each model member (an
     * object jansson refuses may name it twice); one byte more for the
     * NUL that ends it. */
    dst = malloc(len + klen + mlen + 2 + n_model * mlen + 1);
    if (!dst) {
        rc = -2;
        goto out;
    }
    if (n == 0) {
        /* An empty object: the model member (if any) goes inside its braces. */
        size_t b = (size_t)((const char *)memchr(buf, '{', len) - buf) + 1;
        memcpy(dst, buf, b);
        o = b;
        if (add_model) {
            memcpy(dst + o, model_key, klen);
            o += klen;
            memcpy(dst + o, rw->model_json, mlen);
            o += mlen;
        }
        memcpy(dst + o, buf + b, len - b);
        o += len - b;
        goto done;
    }
    /* Everything before the first member: the brace and whitespace. A body
     * without `model` (a candidate list alone) gets it first: the upstream
     * must be told which of its models to use. */
    memcpy(dst, buf, m[0].key_start);
    o = m[0].key_start;
    if (add_model) {
        memcpy(dst + o, model_key, klen);
        o += klen;
        memcpy(dst + o, rw->model_json, mlen);
        o += mlen;
    }
    for (size_t i = 0; i < n; i++) {
        if (is_removed(buf, &m[i], rw->remove))
            continue;
        if (prev_kept < 0 && add_model) {
            memcpy(dst + o, ", ", 2);
            o += 2;
        }
        if (prev_kept >= 0) {
            /* The separator that followed the previous kept member. */
            size_t p = (size_t)prev_kept;
            size_t gap = m[p + 1].key_start - m[p].value_end;
            memcpy(dst + o, buf + m[p].value_end, gap);
            o += gap;
        }
        if (rw->model_json && js_key_equals(buf, &m[i], "model")) {
            size_t head = m[i].value_start - m[i].key_start;
            memcpy(dst + o, buf + m[i].key_start, head);
            o += head;
            memcpy(dst + o, rw->model_json, mlen);
            o += mlen;
        } else {
            memcpy(dst + o, buf + m[i].key_start, m[i].value_end - m[i].key_start);
            o += m[i].value_end - m[i].key_start;
        }
        prev_kept = (ssize_t)i;
    }
    /* Whitespace and the closing brace after the last member. */
    memcpy(dst + o, buf + m[n - 1].value_end, len - m[n - 1].value_end);
    o += len - m[n - 1].value_end;
done:
    dst[o] = '\0';
    *out = dst;
    *out_len = o;
    dst = NULL;
out:
    free(dst);
    if (m != stack)
        free(m);
    return rc;
}

/* ==== Prefixes ==== */

/* jansson refuses a text nested deeper than this (JSON_PARSER_MAX_DEPTH). */
#define PREFIX_MAX_DEPTH 2048

enum prefix_state {
    P_VALUE,         /* a value: a member's, an array's next, or the text's own */
    P_ARRAY_FIRST,   /* after '[': a value or ']' */
    P_NAME_FIRST,    /* after '{': a name or '}' */
    P_NAME,          /* after an object's ',': a name */
    P_COLON,         /* after a name */
    P_AFTER,         /* after a value: ',' or its container's end; blanks after the text's */
    P_STRING,        /* inside a string */
    P_ESCAPE,        /* after a backslash in one */
    P_HEX,           /* inside \uXXXX */
    P_LOW_BACKSLASH, /* after a high surrogate's \uXXXX: the low one's backslash */
    P_LOW_U,         /* and its 'u' */
    P_LITERAL,       /* inside true, false or null */
    P_NUMBER         /* inside a number */
};

/* Where a number is: after its '-', its leading '0', its integer digits, its
 * '.', its fraction digits, its 'e', the exponent's sign, its digits. */
enum number_state { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_E_SIGN, N_EXP };

static int is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

enum js_prefix js_object_prefix(const char *buf, size_t len)
{
    unsigned char objects[PREFIX_MAX_DEPTH / 8]; /* a bit per open container: an object's */
    size_t depth = 0;
    enum prefix_state st = P_VALUE;
    enum number_state num = N_MINUS;
    const char *literal = NULL;
    size_t literal_at = 0;
    int name = 0;            /* the string is a member's name */
    int low_wanted = 0;      /* the \uXXXX being read must be a low surrogate */
    unsigned hex_digits = 0; /* of the \uXXXX being read */
    unsigned long code = 0;
    unsigned utf8_left = 0;             /* continuation bytes the UTF-8 sequence still needs */
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the next one */

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        int d;
        switch (st) {
        case P_STRING:
            if (utf8_left) {
                if (c < lo || c > hi)
                    return JS_NEVER;
                lo = 0x80;
                hi = 0xBF;
                utf8_left--;
            } else if (c == '"') {
                st = name ? P_COLON : P_AFTER;
            } else if (c == '\\') {
                st = P_ESCAPE;
            } else if (c < 0x20) {
                return JS_NEVER; /* a control character, an LF among them, is escaped */
            } else if (c >= 0x80) {
                /* RFC 3629's well-formed sequences: no overlong form, no
                 * surrogate, nothing past U+10FFFF. */
                utf8_left = c >= 0xC2 && c <= 0xDF   ? 1
                            : c >= 0xE0 && c <= 0xEF ? 2
                            : c >= 0xF0 && c <= 0xF4 ? 3
                                                     : 0;
                if (!utf8_left)
                    return JS_NEVER;
                lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
                hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            }
            continue;
        case P_ESCAPE:
            if (c == 'u') {
                st = P_HEX;
                hex_digits = 0;
                code = 0;
            } else if (c != '\0' && strchr("\"\\/bfnrt", c)) {
                st = P_STRING;
            } else {
                return JS_NEVER;
            }
            continue;
        case P_HEX:
            if ((d = hs_hex_digit(c)) < 0)
                return JS_NEVER;
            code = code * 16 + (unsigned long)d;
            if (++hex_digits < 4)
                continue;
            if (low_wanted) {
                if (code < 0xDC00 || code > 0xDFFF)
                    return JS_NEVER;
                low_wanted = 0;
                st = P_STRING;
            } else if (code >= 0xD800 && code <= 0xDBFF) {
                low_wanted = 1;
                st = P_LOW_BACKSLASH;
            } else if (code >= 0xDC00 && code <= 0xDFFF) {
                return JS_NEVER;
            } else {
                st = P_STRING;
            }
            continue;
        case P_LOW_BACKSLASH:
            if (c != '\\')
                return JS_NEVER;
            st = P_LOW_U;
            continue;
        case P_LOW_U:
            if (c != 'u')
                return JS_NEVER;
            st = P_HEX;
            hex_digits = 0;
            code = 0;
            continue;
        case P_LITERAL:
            if (c != (unsigned char)literal[literal_at])
                return JS_NEVER;
            if (literal[++literal_at] == '\0')
                st = P_AFTER;
            continue;
        case P_NUMBER: {
            int digit = c >= '0' && c <= '9';
            switch (num) {
            case N_MINUS:
                if (!digit)
                    return JS_NEVER;
                num = c == '0' ? N_ZERO : N_INT;
                continue;
            case N_DOT:
            case N_E_SIGN:
                if (!digit)
                    return JS_NEVER;
                num = num == N_DOT ? N_FRAC : N_EXP;
                continue;
            case N_E:
                if (!digit && c != '+' && c != '-')
                    return JS_NEVER;
                num = digit ? N_EXP : N_E_SIGN;
                continue;
            case N_INT:
            case N_FRAC:
            case N_EXP:
                if (digit)
                    continue;
                /* fall through */
            case N_ZERO:
                if (c == '.' && (num == N_ZERO || num == N_INT)) {
                    num = N_DOT;
                    continue;
                }
                if ((c == 'e' || c == 'E') && num != N_EXP) {
                    num = N_E;
                    continue;
                }
                break;
            }
            st = P_AFTER; /* the number ended before c: c is read after it */
        }
            /* fall through */
        case P_AFTER:
            if (is_blank(c))
                continue;
            if (depth == 0)
                return JS_NEVER; /* the object ended: only blanks may follow */
            if (c == ',') {
                st = objects[(depth - 1) / 8] & (1u << ((depth - 1) % 8)) ? P_NAME : P_VALUE;
                continue;
            }
            if (c != ((objects[(depth - 1) / 8] & (1u << ((depth - 1) % 8))) ? '}' : ']'))
                return JS_NEVER;
            depth--;
            continue;
        case P_COLON:
            if (is_blank(c))
                continue;
            if (c != ':')
                return JS_NEVER;
            st = P_VALUE;
            continue;
        case P_NAME_FIRST:
        case P_NAME:
            if (is_blank(c))
                continue;
            if (c == '}' && st == P_NAME_FIRST) {
                depth--;
                st = P_AFTER;
                continue;
            }
            if (c != '"')
                return JS_NEVER;
            st = P_STRING;
            name = 1;
            continue;
        case P_ARRAY_FIRST:
            if (c == ']') {
                depth--;
                st = P_AFTER;
                continue;
            }
            /* fall through */
        case P_VALUE:
            if (is_blank(c))
                continue;
            if (depth == 0 && c != '{')
                return JS_NEVER; /* the text is an object */
            if (c == '{' || c == '[') {
                if (depth == PREFIX_MAX_DEPTH)
                    return JS_NEVER;
                if (c == '{')
                    objects[depth / 8] |= (unsigned char)(1u << (depth % 8));
                else
                    objects[depth / 8] &= (unsigned char)~(1u << (depth % 8));
                depth++;
                st = c == '{' ? P_NAME_FIRST : P_ARRAY_FIRST;
            } else if (c == '"') {
                st = P_STRING;
                name = 0;
            } else if (c == 't' || c == 'f' || c == 'n') {
                literal = c == 't' ? "true" : c == 'f' ? "false" : "null";
                literal_at = 1;
                st = P_LITERAL;
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                num = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
                st = P_NUMBER;
            } else {
                return JS_NEVER;
            }
            continue;
        }
    }
    return st == P_AFTER && depth == 0 ? JS_WHOLE : JS_OPEN;
}
