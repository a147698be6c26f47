/* cli.c -- helpers the llmroute subcommands share (see cli.h). */
#define _XOPEN_SOURCE 700 /* realpath() */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "gateway.h" /* gw_put_escaped(), shared with serve */

/* Every message is one line: what it quotes (an option's value, a file
 * name, a model name from a file) may hold a newline or a terminal's
 * escape sequence, written here as \n, \x1b and the like. */
void cli_error(const char *cmd, const char *fmt, ...)
{
    char small[1024], *msg = small;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof small && (msg = malloc((size_t)n + 1)) != NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (!msg)
        msg = small; /* cut short rather than lost */
    fprintf(stderr, "llmroute%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    gw_put_escaped(stderr, n < 0 ? fmt : msg);
    fputc('\n', stderr);
    if (msg != small)
        free(msg);
}

/* The message for an option given an empty value (--config ""): no
 * option takes one, and an empty path would fail later as "llmroute
 * route: : No such file or directory". The lists and --split keep the
 * words they had. */
static const char *empty_value(const char *cmd, const char *name)
{
    static char msg[160];
    int numbers =
        strcmp(cmd, "eval") == 0 && (strcmp(name, "alpha") == 0 || strcmp(name, "budget") == 0);
    if (strcmp(name, "split") == 0)
        return "--split: expected a split name (train, test, ...), got an empty one";
    if (numbers || strcmp(name, "models") == 0 || strcmp(name, "predictors") == 0) {
        snprintf(msg, sizeof msg,
                 "--%s: the list is empty; give one or more %s separated by commas", name,
                 numbers ? "numbers" : "names");
        return msg;
    }
    snprintf(msg, sizeof msg, "--%s: the value is empty", name);
    return msg;
}

/* Whether option NAME takes a file that is opened by its name: a store,
 * a config, a plot or a port file (--data, which reads '-' as standard
 * input, is not one). */
static int is_file_option(const char *name)
{
    static const char *const files[] = {"config", "store", "plot", "port-file"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (strcmp(name, files[i]) == 0)
            return 1;
    return 0;
}

/* Whether a, "--NAME" or "--NAME=...", names one of opts. */
static int is_own_option(const struct cli_opt *opts, const char *a)
{
    const char *eq = strchr(a, '=');
    size_t len = (eq ? (size_t)(eq - a) : strlen(a)) - 2;
    for (const struct cli_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(a + 2, o->name, len) == 0)
            return 1;
    return 0;
}

int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts,
              char ***pos, int *n_pos)
{
    char **p = calloc((size_t)argc + 1, sizeof *p);
    int np = 0, only_pos = 0;

    if (!p) {
        cli_error(cmd, "out of memory");
        return CLI_RUNTIME;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct cli_opt *o;
        const char *eq;
        size_t len;

        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            p[np++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0)
            a = "--help"; /* the one short option, as 'llmroute -h' has it */
        if (a[1] != '-') {
            cli_error(cmd, "unknown option '%s' (see 'llmroute %s --help')", a, cmd);
            free(p);
            return CLI_USAGE;
        }
        eq = strchr(a, '=');
        len = eq ? (size_t)(eq - a) : strlen(a);
        for (o = opts; o->name; o++)
            if (strlen(o->name) == len - 2 && strncmp(a + 2, o->name, len - 2) == 0)
                break;
        if (!o->name) {
            cli_error(cmd, "unknown option '%.*s' (see 'llmroute %s --help')", (int)len, a, cmd);
            free(p);
            return CLI_USAGE;
        }
        if (o->value) {
            const char *v;
            if (eq) {
                v = eq + 1;
            } else if (i + 1 < argc) {
                v = argv[++i];
                /* A value forgotten takes the next option for it: "import
                 * --store --strict d.json" made a store named --strict.
                 * One of the command's own options is refused as a value
                 * given apart; --NAME=VALUE still takes anything. */
                if (v[0] == '-' && v[1] == '-' && is_own_option(opts, v)) {
                    cli_error(cmd, "option '--%s' needs a value, got the option '%s' (give "
                                   "--%s=VALUE for a value that starts with --)",
                              o->name, v, o->name);
                    free(p);
                    return CLI_USAGE;
                }
            } else {
                cli_error(cmd, "option '--%s' needs a value", o->name);
                free(p);
                return CLI_USAGE;
            }
            /* A second value would silently replace the first: an import
             * would go into another store than the one a script named
             * first. A flag given twice means what it means once. */
            if (*o->value) {
                cli_error(cmd, "--%s is given twice", o->name);
                free(p);
                return CLI_USAGE;
            }
            if (*v == '\0') {
                cli_error(cmd, "%s", empty_value(cmd, o->name));
                free(p);
                return CLI_USAGE;
            }
            /* A file named by blank space alone was made as a file of
             * that name ("import --store '  '", "eval --plot ' '"): a slip,
             * not a name. */
            if (is_file_option(o->name) && v[strspn(v, " \t\n\v\f\r")] == '\0') {
                cli_error(cmd,
                          "--%s: the value is blank (only spaces, tabs or line breaks): give a "
                          "file name",
                          o->name);
                free(p);
                return CLI_USAGE;
            }
            /* A lone '-' is standard input for the data a command reads
             * (import's DATA, eval --data), but no file option reads or
             * writes a stream: "import --store -" made a store named "-"
             * in the current folder, exit 0, and "--config -" said "-: No
             * such file or directory". */
            if (strcmp(v, "-") == 0 && is_file_option(o->name)) {
                cli_error(cmd,
                          "--%s: '-' is not standard input or output here: give a file name "
                          "(./- for a file named '-')",
                          o->name);
                free(p);
                return CLI_USAGE;
            }
            *o->value = v;
        } else {
            if (eq) {
                cli_error(cmd, "option '--%s' takes no value", o->name);
                free(p);
                return CLI_USAGE;
            }
            *o->flag = 1;
        }
    }
    *pos = p;
    *n_pos = np;
    return CLI_OK;
}

int cli_load_config(const char *cmd, const char *path, struct lr_config **out)
{
    struct lr_error err = {0};
    int rc;
    if (!path) {
        cli_error(cmd, "--config FILE is required");
        return CLI_USAGE;
    }
    rc = lr_config_load_file(path, out, &err);
    if (rc) {
        cli_error(cmd, "%s", err.message);
        return rc == LR_ENOMEM ? CLI_RUNTIME : CLI_USAGE;
    }
    for (size_t i = 0; i < lr_config_warning_count(*out); i++)
        cli_error(cmd, "warning: %s: %s", path, lr_config_warning(*out, i));
    return CLI_OK;
}

int cli_check_store_exists(const char *cmd, const char *path)
{
    /* Only a path that names nothing is a missing store: one that cannot be
     * looked at (a folder without permission), or a symbolic link to
     * nothing, is left to the store's open, which says why. */
    struct stat sb;
    if (!path || strcmp(path, ":memory:") == 0 || access(path, F_OK) == 0 || errno != ENOENT ||
        lstat(path, &sb) == 0)
        return CLI_OK;
    cli_error(cmd, "history store '%s' does not exist: create it with "
                   "'llmroute import --store %s DATA'",
              path, path);
    return CLI_USAGE;
}

int cli_check_split(const char *cmd, const char *split)
{
    if (!split || *split)
        return CLI_OK;
    cli_error(cmd, "--split: expected a split name (train, test, ...), got an empty one");
    return CLI_USAGE;
}

int cli_check_file_args(const char *cmd, char **files, int n)
{
    for (int i = 0; i < n; i++) {
        const char *what;
        char place[48] = "the file name";
        if (!*files[i])
            what = "is empty";
        else if (files[i][strspn(files[i], " \t\n\v\f\r")] == '\0')
            what = "is blank (only spaces, tabs or line breaks): give a file name";
        else
            continue;
        if (n > 1)
            snprintf(place, sizeof place, "file %d of %d: the name", i + 1, n);
        cli_error(cmd, "%s %s", place, what);
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_split_list(const char *cmd, const char *opt, const char *csv, const char *what,
                   char ***names, size_t *n)
{
    size_t count = 1, len = strlen(csv);
    char **arr, *copy;
    size_t k = 0;

    if (len == 0) {
        cli_error(cmd, "%s: the list is empty; give one or more %ss separated by commas", opt,
                  what);
        return CLI_USAGE;
    }
    for (const char *c = csv; *c; c++)
        count += *c == ',';
    /* One block: the pointer array, then a copy of the string. */
    arr = malloc(count * sizeof *arr + len + 1);
    if (!arr) {
        cli_error(cmd, "out of memory");
        return CLI_RUNTIME;
    }
    copy = (char *)(arr + count);
    memcpy(copy, csv, len + 1);
    for (char *tok = copy;; tok++) {
        char *end = strchr(tok, ',');
        if (end)
            *end = '\0';
        /* Blank space around an item is not part of it ("a, b"): no model
         * name starts or ends with a space (the config refuses one), and a
         * number or a predictor's name has none. */
        tok += strspn(tok, " \t");
        for (size_t t = strlen(tok); t > 0 && (tok[t - 1] == ' ' || tok[t - 1] == '\t'); t--)
            tok[t - 1] = '\0';
        if (*tok == '\0') {
            cli_error(cmd, "%s: %s %zu of the list is empty", opt, what, k + 1);
            free(arr);
            return CLI_USAGE;
        }
        /* A name twice would only repeat its rows or fail later, less clearly. */
        for (size_t j = 0; j < k; j++)
            if (strcmp(arr[j], tok) == 0) {
                cli_error(cmd, "%s: '%s' is given twice", opt, tok);
                free(arr);
                return CLI_USAGE;
            }
        arr[k++] = tok;
        if (!end)
            break;
        tok = end;
    }
    *names = arr;
    *n = k;
    return CLI_OK;
}

/* Whether s is written as a plain decimal number: digits, and with
 * `real` a leading '-', a '.' and an exponent (e-5) too. strtod() and
 * strtol() take more (blanks before, a '+', hex such as 0x10 or
 * 0x1p-1, "inf"), which would make the same value mean different things
 * in different options; every number option reads through here. */
static int is_decimal(const char *s, int real)
{
    const char *p = s;
    int digits = 0;

    if (real && *p == '-')
        p++;
    for (; *p >= '0' && *p <= '9'; p++)
        digits++;
    if (real && *p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            digits++;
    if (!digits)
        return 0;
    if (real && (*p == 'e' || *p == 'E')) {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out)
{
    char *end;
    double d;
    if (!is_decimal(s, 1)) {
        cli_error(cmd, "%s: expected a number from %g to %g, got '%s'", opt, lo, hi, s);
        return CLI_USAGE;
    }
    errno = 0;
    d = strtod(s, &end);
    /* An underflow (1e-400) is the nearest number, 0 or tiny, as a config
     * file reads it; only an overflow is out of range. */
    if (errno == ERANGE && fabs(d) < 1.0)
        errno = 0;
    if (errno || end == s || *end || !isfinite(d) || d < lo || d > hi) {
        cli_error(cmd, "%s: expected a number from %g to %g, got '%s'", opt, lo, hi, s);
        return CLI_USAGE;
    }
    *out = d == 0.0 ? 0.0 : d; /* -0 is 0, and printed so */
    return CLI_OK;
}

int cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v = 0;
    errno = 0;
    if (is_decimal(s, 0))
        v = strtol(s, &end, 10);
    if (!end || errno || end == s || *end || v < lo || v > hi) {
        cli_error(cmd, "%s: expected an integer from %ld to %ld, got '%s'", opt, lo, hi, s);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

/* path as an absolute name that tells two spellings of one file apart
 * from two files: its folder resolved (realpath()), then its last part.
 * NULL when the folder cannot be resolved (it does not exist: nothing can
 * be written there, and the gateway says so). The caller frees it. */
static char *canonical_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[PATH_MAX], *resolved, *out;
    size_t dlen = slash ? (size_t)(slash - path) : 1, size;

    if (slash && dlen == 0)
        dlen = 1; /* "/name": the root */
    if (dlen >= sizeof dir)
        return NULL;
    memcpy(dir, slash ? path : ".", dlen);
    dir[dlen] = '\0';
    if (!(resolved = realpath(dir, NULL)))
        return NULL;
    size = strlen(resolved) + strlen(base) + 2;
    if ((out = malloc(size)) != NULL)
        snprintf(out, size, "%s/%s", strcmp(resolved, "/") == 0 ? "" : resolved, base);
    free(resolved);
    return out;
}

int cli_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    char *ca, *cb;
    int same;

    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    ca = canonical_name(a);
    cb = canonical_name(b);
    same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
}

static int stdout_errno;
int cli_import_started;

void cli_flush_stdout(void)
{
    if (fflush(stdout) != 0 && !stdout_errno)
        stdout_errno = errno;
}

int cli_stdout_errno(void)
{
    return stdout_errno;
}

int cli_exit_code(int lr_code)
{
    switch (lr_code) {
    case LR_OK: return CLI_OK;
    case LR_EINVAL:
    case LR_ENOMODEL:
    case LR_ECONFIG:
    case LR_ESTRATEGY:
    case LR_EEMPTY: return CLI_USAGE;
    default: return CLI_RUNTIME;
    }
}
