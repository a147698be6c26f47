/* fuzz_upstream_answer.c -- the gateway's judgement of an upstream's answer,
 * apart from any I/O, checked against what each function promises:
 * rs_retry_after_seconds(), rs_retry_after_ms_seconds() and
 * rs_retry_hint_seconds() on the Retry-After and retry-after-ms values,
 * rs_class_of_answer() and rs_class_of_status() on the status,
 * rs_class_of_ok_body() on the body, gw_redirect_phrase() on the Location
 * and up_relay_add() on every header. A retry hint kept as the clients keep
 * it (up_hint_copy()) must read as the whole value or not at all. A broken
 * promise aborts.
 *
 * Framing of an input: the first line is the status line ("HTTP/1.1 429
 * Too Many Requests", or the number alone; the status is the first number
 * after an optional "HTTP/..." word, 0 when there is none), then header
 * lines ("Name: value") until an empty line, then the body (the rest).
 * Lines end in LF, a CR before it dropped. A header line without a colon is
 * skipped. Names are as written; values are trimmed of blanks as
 * h1client.c trims them, and read as C strings (up to a NUL) where the
 * gateway keeps them as C strings.
 *
 * Threads: one.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway.h"
#include "resil.h"
#include "upstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CANARY 0xA5

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_upstream_answer: %s\n", what);
    abort();
}

/* A NUL-terminated copy of v[0..n), up to its first NUL, at most cap - 1
 * bytes: a header value as the gateway keeps it. */
static char *kept(const char *v, size_t n, size_t cap)
{
    const char *nul = memchr(v, '\0', n);
    char *s;
    if (nul)
        n = (size_t)(nul - v);
    if (n >= cap)
        n = cap - 1;
    if (!(s = malloc(n + 1)))
        abort();
    memcpy(s, v, n);
    s[n] = '\0';
    return s;
}

static void check_seconds(double s, const char *fn)
{
    if (s != -1 && !(isfinite(s) && s >= 0 && s <= 86400)) {
        fprintf(stderr, "fuzz_upstream_answer: %s gave %g, neither -1 nor within [0, 86400]\n",
                fn, s);
        abort();
    }
}

/* Digits only (at most 9), blanks around: the number, else -1. */
static double plain_integer(const char *v)
{
    double n = 0;
    int digits = 0;
    while (*v == ' ')
        v++;
    for (; *v >= '0' && *v <= '9'; v++)
        if (++digits > 9)
            return -1;
        else
            n = n * 10 + (*v - '0');
    while (*v == ' ')
        v++;
    return digits && !*v ? n : -1;
}

static void check_hints(const char *ra, const char *ram)
{
    static const double nows[] = {0, 1.8e9};
    double ms = rs_retry_after_ms_seconds(ram), n;
    check_seconds(ms, "rs_retry_after_ms_seconds");
    if (!ram && ms != -1)
        fail("rs_retry_after_ms_seconds(NULL) is not -1");
    if (ram && (n = plain_integer(ram)) >= 0 && ms != (n / 1000 > 86400 ? 86400 : n / 1000))
        fail("rs_retry_after_ms_seconds misreads whole milliseconds");
    for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++) {
        double s = rs_retry_after_seconds(ra, nows[i]);
        double h = rs_retry_hint_seconds(ra, ram, nows[i]);
        check_seconds(s, "rs_retry_after_seconds");
        check_seconds(h, "rs_retry_hint_seconds");
        if (!ra && s != -1)
            fail("rs_retry_after_seconds(NULL) is not -1");
        if (ra && (n = plain_integer(ra)) >= 0 && s != (n > 86400 ? 86400 : n))
            fail("rs_retry_after_seconds misreads delta-seconds");
        if (h != (ms >= 0 ? ms : s))
            fail("rs_retry_hint_seconds is not retry-after-ms when readable, else Retry-After");
    }
}

/* A hint as the clients keep it (up_hint_copy()) reads as the whole value
 * does, or not at all: never as some number the whole is not. */
static void check_kept_hint(const char *whole, const char *v, size_t n, int ms)
{
    char kept_hint[UP_HINT_CAP];
    double w, k;
    up_hint_copy(kept_hint, sizeof kept_hint, v, n);
    w = ms ? rs_retry_after_ms_seconds(whole) : rs_retry_after_seconds(whole, 1.8e9);
    k = ms ? rs_retry_after_ms_seconds(kept_hint) : rs_retry_after_seconds(kept_hint, 1.8e9);
    if (k != -1 && k != w)
        fail("a retry hint as kept reads as another pause than the whole value");
}

static void check_class_name(enum rs_class c)
{
    const char *name = rs_class_name(c);
    if ((unsigned)c >= RS_N_CLASSES || !name || strcmp(name, "unknown") == 0)
        fail("a class out of the enum, or without a name");
    /* RS_OK is no policy's key: it has a name but no way back. */
    if (c != RS_OK && rs_class_from_name(name) != (int)c)
        fail("rs_class_from_name does not give back the class of rs_class_name");
    if (rs_class_is_neutral(c) && rs_class_is_upstream_failure(c))
        fail("a class both neutral and an upstream failure");
}

/* The class each status has, as resil.h's enum lists them. */
static void check_status_class(long st, const char *body, size_t len, const char *ra,
                               const char *ram)
{
    enum rs_class c = rs_class_of_answer(st, body, len, ra, ram), want;
    check_class_name(c);
    if (rs_class_of_status(st, body, len, ra) != rs_class_of_answer(st, body, len, ra, NULL))
        fail("rs_class_of_status differs from rs_class_of_answer without retry-after-ms");
    if (st == 408)
        want = RS_TIMEOUT;
    else if (st == 429)
        want = rs_retry_hint_seconds(ra, ram, 0) >= 0 ? RS_RATE_LIMITED : RS_RATE_LIMITED_BARE;
    else if (st == 401 || st == 402 || st == 403 || st == 407)
        want = RS_AUTH;
    else if (st == 404 || st == 501)
        want = RS_NOT_FOUND;
    else if (st >= 300 && st < 400)
        want = RS_REDIRECT;
    else if ((st == 400 || st == 413 || st == 422) && c == RS_CONTEXT_LENGTH)
        want = RS_CONTEXT_LENGTH;
    else if (st >= 400 && st < 500)
        want = RS_BAD_REQUEST;
    else if (st >= 500 && st < 600)
        want = RS_SERVER_ERROR;
    else
        want = c; /* not a status the function is for (>= 300): any failure */
    if (c != want)
        fail("rs_class_of_answer's class is not the one resil.h gives the status");
    if (st >= 300 && c == RS_OK)
        fail("an error status classed as ok");
    if (st != 400 && st != 413 && st != 422 && c != rs_class_of_answer(st, NULL, 0, ra, ram))
        fail("the body changed the class of a status it has no say in");
}

static int valid_utf8(const char *s)
{
    while (*s) {
        size_t n = gw_utf8_char_len((const unsigned char *)s);
        if (!n)
            return 0;
        s += n;
    }
    return 1;
}

static void check_ok_body(const char *body, size_t len)
{
    static const size_t caps[] = {0, 1, 2, 3, 4, 5, 16, 200};
    char first[200], buf[216];
    enum rs_class c0 = rs_class_of_ok_body(body, len, first, sizeof first);

    if (c0 != RS_OK && c0 != RS_SERVER_ERROR && c0 != RS_RATE_LIMITED_BARE)
        fail("rs_class_of_ok_body gave a class it does not promise");
    check_class_name(c0);
    if (c0 == RS_OK && first[0])
        fail("rs_class_of_ok_body wrote a message for an answer");
    if (strlen(first) > 160 + 3 || !valid_utf8(first))
        fail("rs_class_of_ok_body's message is over 160 bytes and \"...\", or not UTF-8");
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        size_t cap = caps[i];
        memset(buf, CANARY, sizeof buf);
        if (rs_class_of_ok_body(body, len, buf, cap) != c0)
            fail("rs_class_of_ok_body's class depends on the message's room");
        for (size_t k = cap; k < sizeof buf; k++)
            if ((unsigned char)buf[k] != CANARY)
                fail("rs_class_of_ok_body wrote past cap");
        if (cap && !memchr(buf, '\0', cap))
            fail("rs_class_of_ok_body's message is not NUL-terminated within cap");
        if (cap && !valid_utf8(buf))
            fail("rs_class_of_ok_body's message, cut, is not UTF-8");
        if (cap == sizeof first && strcmp(buf, first) != 0)
            fail("rs_class_of_ok_body gave another message for the same body");
    }
}

static int has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F))
            return 1;
    return 0;
}

static void check_redirect(const char *location)
{
    static const size_t caps[] = {1, 2, 16, 64, GW_REDIRECT_PHRASE_CAP, 400};
    char full[400], buf[416];
    static const char pre[] = "a redirect to '";

    gw_redirect_phrase(full, sizeof full, location);
    if (strlen(full) >= GW_REDIRECT_PHRASE_CAP)
        fail("gw_redirect_phrase's phrase does not fit GW_REDIRECT_PHRASE_CAP");
    if (has_control(full))
        fail("gw_redirect_phrase's phrase holds a control character");
    if (!valid_utf8(full))
        fail("gw_redirect_phrase's phrase is not UTF-8");
    if (!location || !*location) {
        if (strcmp(full, "a redirect without a Location") != 0)
            fail("gw_redirect_phrase without a Location");
    } else if (strncmp(full, pre, sizeof pre - 1) != 0 || full[strlen(full) - 1] != '\'' ||
               strlen(full) - sizeof pre > GW_LOCATION_SHOWN + 3) {
        fail("gw_redirect_phrase's phrase is not \"a redirect to 'URL'\" with URL cut");
    }
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        size_t cap = caps[i];
        memset(buf, CANARY, sizeof buf);
        gw_redirect_phrase(buf, cap, location);
        for (size_t k = cap; k < sizeof buf; k++)
            if ((unsigned char)buf[k] != CANARY)
                fail("gw_redirect_phrase wrote past cap");
        if (!memchr(buf, '\0', cap) || strncmp(buf, full, strlen(buf)) != 0)
            fail("gw_redirect_phrase within cap is not the phrase's start, NUL-terminated");
    }
}

static int relayed_name(const char *n, size_t len)
{
    return (len > 12 && strncasecmp(n, "x-ratelimit-", 12) == 0) ||
           (len == 14 && strncasecmp(n, "retry-after-ms", 14) == 0) ||
           (len == 14 && strncasecmp(n, "x-should-retry", 14) == 0);
}

static int token_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One more header through up_relay_add(): added whole or not at all. */
static void check_relay_add(struct up_relay *r, const char *name, size_t nl, const char *v,
                            size_t vl)
{
    static struct up_relay before;
    int fits = relayed_name(name, nl) && nl <= UP_RELAY_NAME_CAP && vl <= UP_RELAY_VALUE_CAP &&
               r->n < UP_RELAY_MAX && r->len + nl + vl + 4 < UP_RELAY_CAP;
    for (size_t i = 0; fits && i < nl; i++)
        fits = token_char((unsigned char)name[i]);
    for (size_t i = 0; fits && i < vl; i++)
        fits = !(((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f);
    before = *r;
    up_relay_add(r, name, nl, v, vl);
    if (!fits) {
        if (memcmp(&before, r, sizeof *r) != 0)
            fail("up_relay_add changed the relay for a header it must leave out");
        return;
    }
    if (r->n != before.n + 1 || r->len != before.len + nl + vl + 4 ||
        memcmp(r->buf, before.buf, before.len) != 0 ||
        memcmp(r->buf + before.len, name, nl) != 0 ||
        memcmp(r->buf + before.len + nl, ": ", 2) != 0 ||
        memcmp(r->buf + before.len + nl + 2, v, vl) != 0 ||
        memcmp(r->buf + r->len - 2, "\r\n\0", 3) != 0)
        fail("up_relay_add did not add the header as one \"Name: value\\r\\n\" line");
}

/* The block as a whole: n lines "token: value\r\n", no CR, LF or control. */
static void check_relay_block(const struct up_relay *r)
{
    const char *p = r->buf, *end = r->buf + r->len;
    unsigned lines = 0;
    if (r->len >= UP_RELAY_CAP || r->n > UP_RELAY_MAX || r->buf[r->len] != '\0' ||
        strlen(r->buf) != r->len)
        fail("the relay's block is past its caps or not NUL-terminated at its length");
    while (p < end) {
        const char *q = p;
        while (q < end && token_char((unsigned char)*q))
            q++;
        if (q == p || end - q < 2 || q[0] != ':' || q[1] != ' ')
            fail("a relay line does not start with a token and \": \"");
        for (q += 2; q < end && *q != '\r'; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                fail("a relay line's value holds a control character");
        if (end - q < 2 || q[1] != '\n')
            fail("a relay line does not end in CRLF");
        p = q + 2;
        lines++;
    }
    if (lines != r->n)
        fail("the relay's count is not its number of lines");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size, *eol;
    char *line, *ra = NULL, *ram = NULL, *loc = NULL;
    static struct up_relay relay;
    long status = 0;

    eol = memchr(p, '\n', size);
    line = kept(p, (size_t)((eol ? eol : end) - p), 64);
    {
        char *s = line, *stop;
        if (strncmp(s, "HTTP/", 5) == 0)
            s += strcspn(s, " ");
        status = strtol(s, &stop, 10);
    }
    free(line);
    p = eol ? eol + 1 : end;

    relay.len = relay.n = 0;
    relay.buf[0] = '\0';
    while (p < end) {
        const char *le, *colon, *v, *ve;
        eol = memchr(p, '\n', (size_t)(end - p));
        le = eol ? eol : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p) {
            p = eol ? eol + 1 : end;
            break; /* the empty line: the body follows */
        }
        colon = memchr(p, ':', (size_t)(le - p));
        if (colon && colon > p) {
            size_t nl = (size_t)(colon - p);
            for (v = colon + 1; v < le && (*v == ' ' || *v == '\t'); v++)
                ;
            for (ve = le; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
                ;
            if (nl == 11 && strncasecmp(p, "retry-after", 11) == 0 && !ra) {
                ra = kept(v, (size_t)(ve - v), (size_t)(ve - v) + 1);
                check_kept_hint(ra, v, (size_t)(ve - v), 0);
            } else if (nl == 14 && strncasecmp(p, "retry-after-ms", 14) == 0 && !ram) {
                ram = kept(v, (size_t)(ve - v), (size_t)(ve - v) + 1);
                check_kept_hint(ram, v, (size_t)(ve - v), 1);
            }
            else if (nl == 8 && strncasecmp(p, "location", 8) == 0 && !loc)
                loc = kept(v, (size_t)(ve - v), UP_LOCATION_CAP);
            check_relay_add(&relay, p, nl, v, (size_t)(ve - v));
            check_relay_block(&relay);
        }
        p = eol ? eol + 1 : end;
    }

    check_hints(ra, ram);
    check_status_class(status, p, (size_t)(end - p), ra, ram);
    check_ok_body(p, (size_t)(end - p));
    check_redirect(loc);
    free(ra);
    free(ram);
    free(loc);
    return 0;
}
