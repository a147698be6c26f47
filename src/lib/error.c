/* error.c -- error codes and messages.
 *
 * lr_strerror() maps an LR_E* code to a static string; lr__error_set() fills
 * the caller's struct lr_error with a code and a message a user can act on;
 * lr__error_number() writes a number for such a message.
 * Both are pure and safe from any thread.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmroute.h"
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
    case LR_EBUSY: return "history store busy (another process is writing it)";
    case LR_EREPLACED: return "history store file replaced or removed since it was opened";
    default: return "unknown error";
    }
}

int lr__error_set(struct lr_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->line = 0;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void lr__error_prefix(struct lr_error *err, const char *fmt, ...)
{
    char prefix[160];
    size_t pl, ml, cap;
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    cap = sizeof err->message - 1;
    pl = strlen(prefix);
    if (pl > cap)
        pl = cap;
    ml = strnlen(err->message, cap);
    if (pl + ml > cap)
        ml = cap - pl;
    memmove(err->message + pl, err->message, ml);
    memcpy(err->message, prefix, pl);
    err->message[pl + ml] = '\0';
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
