/* errors.c -- errors in OpenAI's shape:
 *   {"error": {"message": "...", "type": "...", "param": ..., "code": ...}}
 * Clients (the OpenAI SDKs among them) read `error.message` and map the HTTP
 * status to their error classes, so every refusal the gateway makes, its
 * HTTP server's included, goes through here.
 *
 * Threads: the event loop thread (the functions themselves are pure).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

size_t gw_utf8_char_len(const unsigned char *p)
{
    unsigned char c = p[0];
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    /* No overlong forms, no surrogates, nothing above U+10FFFF. */
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
        (c == 0xF4 && p[1] > 0x8F))
        return 0;
    for (size_t i = 1; i < n; i++) /* a NUL ends the check: it is no continuation */
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

const char *gw_name_shown(const char *name, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t n = strlen(name), i = 0, o = 0;

    while (i < n && i < GW_NAME_SHOWN && o + 8 < cap) {
        /* U+0080 to U+009F (C1 controls) are \xNN bytes, as an ESC is. */
        size_t u = p[i] >= 0x80 && !(p[i] == 0xC2 && p[i + 1] < 0xA0)
                       ? gw_utf8_char_len(p + i)
                       : 0;
        if (u && i + u <= GW_NAME_SHOWN) {
            memcpy(out + o, p + i, u);
            o += u;
            i += u;
            continue;
        }
        if (u)
            break;
        if (p[i] == '\\' || p[i] == '\'')
            o += (size_t)snprintf(out + o, cap - o, "\\%c", p[i]);
        else if (p[i] >= 0x20 && p[i] < 0x7f)
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
        i++;
    }
    if (i < n && o + 4 <= cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    if (cap)
        out[o] = '\0';
    return out;
}

/* Append s as a JSON string (quotes included); returns the new offset.
 * Messages quote what clients sent (a model name, a path) and are cut to
 * fit, so a byte that does not start a whole UTF-8 character becomes
 * U+FFFD and a character that does not fit is left out whole: the body
 * stays valid JSON. */
int gw_reserve(char **buf, size_t *cap, size_t need, size_t first)
{
    size_t c = *cap ? *cap : first;
    char *g;
    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    if (!(g = realloc(*buf, c)))
        return -1;
    *buf = g;
    *cap = c;
    return 0;
}

size_t gw_json_string(char *buf, size_t cap, size_t o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (o + 1 >= cap)
        return o;
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 8 < cap; p++) {
        unsigned char ch = *p;
        if (ch >= 0x80) {
            size_t n = gw_utf8_char_len(p);
            if (n == 0) {
                memcpy(buf + o, "\\ufffd", 6);
                o += 6;
                continue;
            }
            if (o + n + 8 >= cap)
                break;
            memcpy(buf + o, p, n);
            o += n;
            p += n - 1;
        } else if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (ch < 0x20) {
            buf[o++] = '\\';
            buf[o++] = 'u';
            buf[o++] = '0';
            buf[o++] = '0';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        } else {
            buf[o++] = (char)ch;
        }
    }
    if (o + 1 < cap)
        buf[o++] = '"';
    buf[o < cap ? o : cap - 1] = '\0';
    return o;
}

static size_t put_raw(char *buf, size_t cap, size_t o, const char *s)
{
    size_t n = strlen(s);
    if (o + n >= cap)
        n = o + 1 < cap ? cap - o - 1 : 0;
    memcpy(buf + o, s, n);
    o += n;
    buf[o] = '\0';
    return o;
}

size_t gw_error_format(char *buf, size_t cap, const char *message, const char *type,
                       const char *param, const char *code)
{
    size_t o = 0, msg_cap = cap > 512 ? cap - 256 : cap / 2;
    if (cap < 128)
        return 0;
    /* The message is cut to leave room for the rest of the object. */
    o = put_raw(buf, cap, o, "{\"error\":{\"message\":");
    o = gw_json_string(buf, msg_cap, o, message);
    o = put_raw(buf, cap, o, ",\"type\":");
    o = gw_json_string(buf, cap, o, type);
    o = put_raw(buf, cap, o, ",\"param\":");
    o = param ? gw_json_string(buf, cap, o, param) : put_raw(buf, cap, o, "null");
    o = put_raw(buf, cap, o, ",\"code\":");
    o = code ? gw_json_string(buf, cap, o, code) : put_raw(buf, cap, o, "null");
    o = put_raw(buf, cap, o, "}}");
    return o;
}

/* ==== Redirects ==== */

/* A redirect's Location, fit to quote in a message: at most GW_LOCATION_SHOWN
 * bytes cut between characters ("..." marks the cut), control characters as
 * '?' (U+0080 to U+009F, the C1 controls, too: U+009B is a terminal's CSI)
 * and bytes that are not UTF-8 as U+FFFD. The upstream chose these bytes. */
static void location_for_message(char *dst, size_t cap, const char *loc)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)loc;
    while (*p) {
        size_t n = *p >= 0x80 ? gw_utf8_char_len(p) : 1;
        int control = *p < 0x20 || *p == 0x7f || (n == 2 && p[0] == 0xC2 && p[1] < 0xA0);
        size_t out = control ? 1 : n ? n : 3;
        if (o + out > GW_LOCATION_SHOWN || o + out + 4 > cap) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (control)
            dst[o] = '?';
        else if (n == 0)
            memcpy(dst + o, "\xEF\xBF\xBD", 3);
        else if (n == 1)
            dst[o] = (char)*p;
        else
            memcpy(dst + o, p, n);
        o += out;
        p += n ? n : 1;
    }
    dst[o] = '\0';
}

void gw_redirect_phrase(char *dst, size_t cap, const char *location)
{
    char loc[GW_LOCATION_SHOWN + 4];
    location_for_message(loc, sizeof loc, location ? location : "");
    if (loc[0])
        snprintf(dst, cap, "a redirect to '%s'", loc);
    else
        snprintf(dst, cap, "a redirect without a Location");
}

const char *gw_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
    case 405:
    case 413:
    case 414:
    case 431:
    case 400:
    case 505: /* the client's request, though a 5xx */
        return "invalid_request_error";
    case 429:
        return "rate_limit_error";
    case 501:
        return "not_implemented";
    case 502:
    case 503:
    case 504:
        return "upstream_error";
    default:
        return status < 500 ? "invalid_request_error" : "server_error";
    }
}

/* A 503 is an upstream's fault (every candidate's breaker open) or the
 * gateway's own state (an empty or busy or replaced store, no descriptors
 * left, shutting down): the latter is typed as OpenAI types its own 5xx. */
const char *gw_error_type_of(int status, const char *code)
{
    if (status == 503 && code && strcmp(code, "circuit_open") != 0)
        return "server_error";
    return gw_error_type(status);
}

const char *gw_error_code(int status)
{
    switch (status) {
    case 401:
        return "invalid_api_key";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 408:
        return "request_timeout";
    case 413:
        return "request_too_large";
    case 414:
        return "uri_too_long";
    case 417:
        return "expectation_failed";
    case 431:
        return "headers_too_large";
    case 502:
        return "upstream_unreachable";
    case 504:
        return "upstream_timeout";
    case 505:
        return "http_version_not_supported";
    default:
        return NULL;
    }
}

size_t gw_error_body(char *buf, size_t cap, int status, const char *message)
{
    return gw_error_format(buf, cap, message, gw_error_type(status), NULL, gw_error_code(status));
}

/* The code of the last error answer this thread sent (a string literal or
 * gw_error_code()'s), for the log line of the request it answered. */
static _Thread_local const char *last_code;

const char *gw_error_sent(int clear)
{
    const char *c = last_code;
    if (clear)
        last_code = NULL;
    return c;
}

void gw_send_error(struct hs_req *req, int status, const char *param, const char *code,
                   const char *fmt, ...)
{
    char msg[768], body[1200];
    size_t n;
    va_list ap;
    last_code = code ? code : gw_error_code(status);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n = gw_error_format(body, sizeof body, msg, gw_error_type_of(status, code), param,
                        code ? code : gw_error_code(status));
    hs_respond(req, status, "application/json", body, n);
}
