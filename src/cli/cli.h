/* cli.h -- what the llmroute subcommands share: exit codes, option parsing,
 * messages, loading the config. Of the library, the CLI uses only the
 * public API (include/llmroute.h); serve, check-config, import, cli.c and
 * embed_http.c also use the gateway's header (src/gateway/gateway.h).
 *
 * Threads: every subcommand runs on the main thread; the library may rebuild
 * a store's copy on threads of its own, and serve's gateway starts its
 * worker threads (src/gateway/offload.c).
 */
#ifndef LR_CLI_H
#define LR_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "llmroute.h"

enum {
    CLI_OK = 0,      /* success */
    CLI_RUNTIME = 1, /* a runtime failure */
    CLI_USAGE = 2,   /* bad usage, bad config, unknown model */
    CLI_UNMET = 3,   /* route --batch: constraints not met, the best assignment printed */
    CLI_UNSAID = 4,  /* import: done and stored, but its report could not be written */
};

/* One option: "--name VALUE" / "--name=VALUE" when value is set, else a flag. */
struct cli_opt {
    const char *name;
    const char **value;
    int *flag;
};

/* Parse argv[1..] (argv[0] is the subcommand). Positional arguments are
 * gathered into *pos (argv-owned strings, array freed by the caller).
 * "--" ends the options. Returns CLI_OK, or CLI_USAGE after printing why. */
int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts,
              char ***pos, int *n_pos);

/* Print "llmroute CMD: message" on stderr, one line: control characters
 * in the message are written escaped (gw_put_escaped()). */
void cli_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Load a config, printing its warnings; CLI_USAGE after printing why. */
int cli_load_config(const char *cmd, const char *path, struct lr_config **out);

/* Split "a,b,c" into names (one allocation, freed with free(*names)),
 * each without the spaces and tabs around it ("a, b" is a and b). An
 * empty list, an empty or blank item or one given twice is CLI_USAGE after
 * printing why; `what` names an item in those messages ("name"). */
int cli_split_list(const char *cmd, const char *opt, const char *csv, const char *what,
                   char ***names, size_t *n);

/* CLI_OK when path is NULL, ":memory:", a file that exists or a path that
 * cannot be looked up for another reason than its absence (the store's
 * open then names it); else CLI_USAGE after saying how to create the store
 * (route and eval refuse a missing store before their work). */
int cli_check_store_exists(const char *cmd, const char *path);

/* A --split value, when given, names a split: CLI_USAGE after printing why
 * for an empty one, else CLI_OK. */
int cli_check_split(const char *cmd, const char *split);

/* Each of the n file arguments names a file: CLI_USAGE after printing why
 * for an empty one or one of blank space alone, naming it by its place
 * ("file 2 of 3") when there are several, else CLI_OK. As with a file
 * option's value: no file has the empty name, and a blank one is a slip;
 * import would make its store and then fail on it. */
int cli_check_file_args(const char *cmd, char **files, int n);

/* Parse a number in [lo, hi] written in plain decimal (a long: digits
 * only; a double: also a leading '-', a fraction and an exponent), with no
 * blank, '+' or hex; CLI_USAGE after printing why. */
int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     double *out);
int cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);

/* Whether paths a and b name one file: the same file when both exist,
 * else the same name in the same folder (the folder resolved, so that
 * "./h.db" and "/abs/h.db" match): a file one of them is about to make. A
 * command that writes a file refuses one that names its own inputs. */
int cli_same_file(const char *a, const char *b);

/* Flush standard output, keeping the errno of a failed write for main()'s
 * report ("cannot write standard output: No space left on device"): a
 * later fflush() of a stream already in error sets no errno. */
void cli_flush_stdout(void);

/* The errno of the first failed cli_flush_stdout(), else 0. */
int cli_stdout_errno(void);

/* Set by import once its arguments are read and it goes on to the store
 * (not for --help): main() then says an import that exits 0 but lost its
 * report stored its records (exit 4). */
extern int cli_import_started;

/* Exit code for a library error code. */
int cli_exit_code(int lr_code);

int cmd_route(int argc, char **argv);
int cmd_check_config(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
