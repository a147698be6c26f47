/* error.c -- error codes and messages.
 *
 * lr_strerror() maps an LR_E* code to a static string; lr__error_set() fills
 * the caller's struct lr_error with a code and a message a user can act on;
 * lr__error_number() writes a number for such a message.
 * Both are pure and safe from any thread.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llmroute.h"
#include "record.h" /* lr__utf8_seq() */
#include "strategy.h"

const char *lr_strerror(int err)
{
    switch (err) {
    case LR_OK: return "success";
    case LR_EINVAL: return "invalid argument";
    case LR_ENOMEM: return "out of memory";
    case LR_ENOMODEL: return "unknown model";
    case LR_EIO: return "input/output error";
    case LR_EPARSE: return "malformed input";
    case LR_ECONFIG: return "invalid configuration";
    case LR_EEMPTY: return "nothing to work on";
    case LR_ESTORE: return "history store error";
    case LR_EINFEASIBLE: return "constraints cannot be met";
    case LR_ESTRATEGY: return "strategy error";
    case LR_ETOOBIG: return "input too large";
    case LR_EBUSY: return "history store busy (another process holds it)";
    case LR_EREPLACED: return "history store file replaced or removed since it was opened";
    case LR_ECANCELED: return "stopped at the caller's request";
    default: return "unknown error";
    }
}

/* The bytes of a message kept before the "..." that stands for a cut-out
 * middle; the rest of the buffer keeps the message's end. */
#define HEAD_KEPT 160

/* Back from i to the start of the UTF-8 sequence byte i is in. */
static size_t seq_start(const char *s, size_t i)
{
    while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80)
        i--;
    return i;
}

/* Forward from i past any continuation bytes, to where a sequence starts. */
static size_t seq_next(const char *s, size_t i, size_t len)
{
    while (i < len && ((unsigned char)s[i] & 0xc0) == 0x80)
        i++;
    return i;
}

/* s (len bytes) into dst (cap bytes), whole when it fits, else its first
 * HEAD_KEPT bytes, "..." and as much of its end as fits, each cut at a
 * character's boundary. */
static void keep_ends(char *dst, size_t cap, const char *s, size_t len)
{
    size_t head, tail_from, room;
    if (len < cap || cap < 16) {
        if (len >= cap)
            len = seq_start(s, cap - 1);
        memcpy(dst, s, len);
        dst[len] = '\0';
        return;
    }
    head = seq_start(s, HEAD_KEPT < cap / 2 ? HEAD_KEPT : cap / 4);
    room = cap - 1 - head - 3;
    tail_from = seq_next(s, len - room, len);
    memcpy(dst, s, head);
    memcpy(dst + head, "...", 3);
    memcpy(dst + head + 3, s + tail_from, len - tail_from);
    dst[head + 3 + (len - tail_from)] = '\0';
}

void lr__error_vformat(char *dst, size_t cap, const char *fmt, va_list ap)
{
    char stack[2048], *buf = stack;
    va_list again;
    int n;

    if (cap == 0)
        return;
    va_copy(again, ap);
    n = vsnprintf(stack, sizeof stack, fmt, ap);
    if (n < 0) {
        dst[0] = '\0';
        va_end(again);
        return;
    }
    if ((size_t)n >= sizeof stack) {
        /* Longer than the stack buffer: format it whole on the heap, so
         * that its end is there to keep; without memory, its start. */
        buf = malloc((size_t)n + 1);
        if (buf)
            vsnprintf(buf, (size_t)n + 1, fmt, again);
        else
            buf = stack, n = (int)sizeof stack - 1;
    }
    va_end(again);
    keep_ends(dst, cap, buf, (size_t)n);
    if (buf != stack)
        free(buf);
}

void lr__error_format(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lr__error_vformat(dst, cap, fmt, ap);
    va_end(ap);
}

int lr__error_set(struct lr_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->line = 0;
        va_start(ap, fmt);
        lr__error_vformat(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* The length of the valid UTF-8 sequence of 2 to 4 bytes at p (n bytes
 * left) that encodes no C1 control character, or 0. */
static size_t utf8_printable(const unsigned char *p, size_t n)
{
    unsigned long cp;
    size_t len = lr__utf8_seq(p, n, &cp);
    return len && cp >= 0xa0 ? len : 0;
}

const char *lr__error_shown(const char *name, size_t max, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t n = strlen(name), i = 0, o = 0;
    while (i < n && i < max && o + 8 < cap) {
        size_t u = p[i] >= 0x80 ? utf8_printable(p + i, n - i) : 0;
        if (u && i + u <= max) {
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
    out[o] = '\0';
    return out;
}

const char *lr__error_open_fault(const char *path, int e, char buf[LR__OPEN_FAULT_CAP])
{
    char to[PATH_MAX], name[LR__SHOWN_CAP(120)];
    struct stat link;
    ssize_t n;
    if (e != ENOENT || lstat(path, &link) != 0 || !S_ISLNK(link.st_mode) ||
        (n = readlink(path, to, sizeof to - 1)) < 0)
        return strerror(e);
    to[n] = '\0';
    snprintf(buf, LR__OPEN_FAULT_CAP, "it is a symbolic link to '%s', which does not exist",
             lr__error_shown(to, 120, name, sizeof name));
    return buf;
}

void lr__error_prefix(struct lr_error *err, const char *fmt, ...)
{
    char prefix[160], whole[sizeof prefix + sizeof err->message];
    size_t pl, ml;
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Prefix and message are joined whole, then their middle is cut out if
     * they are too long together: the message's end, which says what is
     * wrong, stays. */
    pl = strlen(prefix);
    ml = strnlen(err->message, sizeof err->message - 1);
    memcpy(whole, prefix, pl);
    memcpy(whole + pl, err->message, ml);
    keep_ends(err->message, sizeof err->message, whole, pl + ml);
}

const char *lr__error_number(char buf[LR__NUMBER_TEXT], double d)
{
    /* NaN and the infinities read back as themselves or never compare
     * equal: %g says what they are. */
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, LR__NUMBER_TEXT, "%.*g", prec, d);
        if (!isfinite(d) || strtod(buf, NULL) == d)
            break;
    }
    return buf;
}
