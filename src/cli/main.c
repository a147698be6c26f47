/* main.c -- the llmroute command: dispatch to a subcommand.
 *
 *   llmroute route         route queries (arguments or standard input)
 *   llmroute import        add past-query outcomes to a history store
 *   llmroute eval          score every strategy on data with real outcomes
 *   llmroute check-config  validate a configuration
 *   llmroute serve         run the OpenAI-compatible gateway
 *   llmroute version       print the version
 *
 * Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error,
 * 3 for `route --batch` when the constraints cannot be met (the best
 * reachable assignment is printed), and 4 for `import` when the import
 * succeeded but its report could not be written (so that a script does
 * not import the same files again).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

static int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: llmroute version\n\nPrint the version of llmroute "
               "(also: llmroute --version).\n");
        return CLI_OK;
    }
    if (argc > 1) {
        cli_error("version", "takes no arguments");
        return CLI_USAGE;
    }
    printf("llmroute %s\n", LR_VERSION_STRING);
    return CLI_OK;
}

static const struct command commands[] = {
    {"route", "route queries to models (arguments, or one per line of standard input)", cmd_route},
    {"import", "add past-query outcomes to a history store", cmd_import},
    {"eval", "score every strategy on data with real outcomes", cmd_eval},
    {"check-config", "validate a configuration file", cmd_check_config},
    {"serve", "run the OpenAI-compatible HTTP gateway", cmd_serve},
    {"version", "print the version", cmd_version},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: llmroute <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'llmroute <command> --help' (or 'llmroute help <command>') describes a\n"
                 "command's options.\n"
                 "Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error,\n"
                 "3 route --batch: constraints not met (the best assignment is printed),\n"
                 "4 import: imported, but its report could not be written.\n");
}

/* Output that never reached standard output (a full disk, a closed
 * descriptor) fails the command: a script must not take lost results for
 * a success. An import that succeeded has changed the store all the same:
 * its own exit code (4) tells a script not to import the files again. */
static int finish_stdout(const char *cmd, int rc)
{
    int e = fflush(stdout) != 0 ? errno : 0;
    if (!e)
        e = cli_stdout_errno(); /* a command's own flush failed first */
    if (e || ferror(stdout)) {
        int stored = rc == CLI_OK && cli_import_started;
        cli_error(cmd, "cannot write standard output%s%s%s", e ? ": " : "", e ? strerror(e) : "",
                  stored ? " (the import itself succeeded: its records are stored)" : "");
        return rc != CLI_OK ? rc : stored ? CLI_UNSAID : CLI_RUNTIME;
    }
    return rc;
}

int main(int argc, char **argv)
{
    /* A standard descriptor the caller closed (<&-, >&-) would be taken by
     * the next file opened, a history store's, and read as the queries or
     * written to as the report. /dev/null opened the other way round holds
     * its place and fails each use with EBADF, as the closed one did. */
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
            (void)open("/dev/null", fd == STDIN_FILENO ? O_WRONLY : O_RDONLY); /* takes fd */
    /* A file over the size limit (ulimit -f) is then a write error that
     * the command reports, not a signal that kills it mid-way. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    /* 'llmroute help route' is 'llmroute route --help'. help is a command
     * too, so its own -h, --help and 'help help' are the usage, as for
     * every other command. */
    if (strcmp(argv[1], "help") == 0 && argc > 2) {
        char help_flag[] = "--help";
        if (argc > 3) {
            cli_error("help", "takes one command name (see 'llmroute --help')");
            return CLI_USAGE;
        }
        if (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0 ||
            strcmp(argv[2], "help") == 0) {
            usage(stdout);
            return finish_stdout(NULL, CLI_OK);
        }
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(argv[2], commands[i].name) == 0) {
                char *args[] = {argv[2], help_flag, NULL};
                return finish_stdout(commands[i].name, commands[i].run(2, args));
            }
        cli_error("help", "unknown command '%s' (see 'llmroute --help')", argv[2]);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return finish_stdout(NULL, CLI_OK);
    }
    if (strcmp(argv[1], "--version") == 0)
        return finish_stdout("version", cmd_version(argc - 1, argv + 1));
    /* An import's report written to a pipe already closed (| head, a
     * reader gone) is a write error too, not a SIGPIPE that kills it
     * after records were stored (at the end, or between two files once
     * the buffered report fills): it goes on, and ends with exit 4 as for
     * a full disk. */
    if (strcmp(argv[1], "import") == 0)
        signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return finish_stdout(commands[i].name, commands[i].run(argc - 1, argv + 1));
    cli_error(NULL, "unknown command '%s' (see 'llmroute --help')", argv[1]);
    return CLI_USAGE;
}
