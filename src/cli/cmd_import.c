/* cmd_import.c -- `llmroute import`: add past-query outcomes to a history
 * store from files in the AIOS smart-routing format. Each file is imported
 * all or nothing; a bad record is skipped and counted (or with --strict fails
 * its file) and the store is never left half-written. With a config whose
 * router.embedding names a remote embedder, the store is dense and each
 * file's queries are embedded through it in batches during the import (a
 * failed request fails the file).
 *
 * A store this command created is removed again (with its -wal and -shm
 * files) when the command fails and the store is still empty: a failed
 * first import, a dense one whose embedding server is down say, leaves no
 * empty store behind stamped with that embedder, which would refuse a
 * later import with another. So does one stopped by SIGINT, SIGTERM or
 * SIGHUP (Ctrl-C): the signal stops the import at its next record
 * (lr_import_options.cancel), nothing of that file is added, the store is
 * removed as for a failure, and the command then dies of the signal.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "embed_http.h"
#include "gateway.h" /* gw_store_is_new(), shared with serve */

static const char help[] =
    "usage: llmroute import --store FILE [--config FILE] [--split NAME] [--strict] [DATA...]\n"
    "Add the records of each DATA file (a JSON array or JSONL of {\"query\",\n"
    "\"input_token_length\", \"outputs\": [{\"model_name\", \"correctness\",\n"
    "\"output_token_length\"}]}) to the history store FILE, creating it if needed.\n"
    "A DATA of - reads standard input; a pipe (a FIFO, <(zcat d.gz)) is read too.\n"
    "A file named twice (two spellings, a link, - redirected from it) is refused.\n"
    "\n"
    "  --store FILE   the SQLite history store (default: the config's router.store)\n"
    "  --config FILE  with router.embedding set, embed the queries with that remote\n"
    "                 embedder (the store is then dense); default: built-in embedder\n"
    "  --split NAME   keep only records whose \"split\" is NAME (e.g. train)\n"
    "  --strict       a bad record fails its whole file instead of being skipped\n"
    "                 (a file whose records are all bad fails either way)\n"
    "\n"
    "Each file is imported in one transaction: on any error nothing of it is\n"
    "added. With no DATA, the store is created if needed and its size printed.\n"
    "A store this command created is removed again if the command fails with\n"
    "nothing imported (it is kept when another file's records went in).\n"
    "SIGINT (Ctrl-C), SIGTERM or SIGHUP stops it at the next record: nothing of\n"
    "that file is added, a store it created and left empty is removed, and it\n"
    "dies of the signal.\n"
    "Exit codes: 0 ok; 1 runtime error: a file could not be imported or held\n"
    "only bad records, the store could not be opened or does not fit (another\n"
    "embedder's, a newer schema) or the embedding server failed;\n"
    "2 usage or configuration error: a bad option, no store named, a --config\n"
    "that is not valid; 4 every file was imported but this report could not be\n"
    "written to standard output (a full disk, or a pipe whose reader is gone):\n"
    "the records are stored, do not import them again.\n";

/* The signal that asked the command to stop (0: none), set by on_stop(). */
static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    stop_signal = sig;
}

/* on_stop() for SIGINT, SIGTERM and SIGHUP, unless ignored (a background
 * job's SIGINT, nohup's SIGHUP): without SA_RESTART, so a read of a pipe
 * that waits for its writer returns. */
static void catch_stops(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa, old;
        if (sigaction(sigs[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

/* A pipe's bytes (what names, "standard input" or a path) copied to an
 * unlinked temporary file, so the store's write lock is not held while a
 * producer writes: *fd_out is the copy's descriptor, path holds what to
 * open. Returns 0, or -1 with the reason said. */
static int pipe_as_file(int in, const char *what, char *path, size_t cap, int *fd_out)
{
    const char *dir = getenv("TMPDIR");
    char tmpl[4096], buf[65536];
    long long total = 0;
    ssize_t n;
    int fd;

    *fd_out = -1;
    snprintf(tmpl, sizeof tmpl, "%s/llmroute-stdin-XXXXXX", dir && *dir ? dir : "/tmp");
    fd = mkstemp(tmpl);
    if (fd < 0) {
        cli_error("import", "cannot copy %s to a temporary file in %s: %s", what,
                  dir && *dir ? dir : "/tmp", strerror(errno));
        return -1;
    }
    unlink(tmpl);
    for (;;) {
        if (stop_signal) { /* a read it cut short comes back here as EINTR */
            cli_error("import", "reading %s was stopped by a signal: nothing imported", what);
            close(fd);
            return -1;
        }
        n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_error("import", "cannot read %s: %s: nothing imported", what, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        total += n;
        if (total > LR_DATA_FILE_MAX) {
            cli_error("import", "%s is over the cap of %ld bytes for a data file: nothing imported",
                      what, LR_DATA_FILE_MAX);
            close(fd);
            return -1;
        }
        for (ssize_t o = 0; o < n;) {
            ssize_t w = write(fd, buf + o, (size_t)(n - o));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                cli_error("import",
                          "cannot copy %s to a temporary file in %s: %s: nothing imported", what,
                          dir && *dir ? dir : "/tmp", strerror(errno));
                close(fd);
                return -1;
            }
            o += w;
        }
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    *fd_out = fd;
    return 0;
}

/* Standard input as a file the import can read: itself when it is one
 * read from its start (`< data.jsonl`), else (a pipe, or a file the caller
 * has read some of: /dev/stdin would open it again at byte 0) a copy of
 * what is left (pipe_as_file()). */
static int stdin_as_file(char *path, size_t cap, int *fd_out)
{
    struct stat sb;
    *fd_out = -1;
    if (fstat(STDIN_FILENO, &sb) == 0 && S_ISREG(sb.st_mode) &&
        lseek(STDIN_FILENO, 0, SEEK_CUR) == 0) {
        snprintf(path, cap, "/dev/stdin");
        return 0;
    }
    return pipe_as_file(STDIN_FILENO, "standard input", path, cap, fd_out);
}

/* A DATA path that names a pipe (a FIFO, or a shell's <(zcat d.gz)), which
 * the library does not read (a data file must be a regular file): copied
 * as standard input is. Returns 1 copied, 0 not a pipe, -1 failed (said). */
static int named_pipe_as_file(const char *name, char *path, size_t cap, int *fd_out)
{
    struct stat sb;
    int in, rc;
    *fd_out = -1;
    if (stat(name, &sb) != 0 || !S_ISFIFO(sb.st_mode))
        return 0;
    while ((in = open(name, O_RDONLY | O_CLOEXEC)) < 0 && errno == EINTR && !stop_signal)
        ;
    if (in < 0) {
        if (stop_signal)
            cli_error("import", "waiting for a writer of '%s' was stopped by a signal: nothing "
                      "imported", name);
        else
            cli_error("import", "cannot read '%s': %s: nothing imported from this file", name,
                      strerror(errno));
        return -1;
    }
    rc = pipe_as_file(in, name, path, cap, fd_out);
    close(in);
    return rc < 0 ? -1 : 1;
}

/* The file DATA argument `name` reads into *sb: '-' is standard input
 * when it is redirected from a file. 0 when there is none to compare. */
static int data_stat(const char *name, struct stat *sb)
{
    if (strcmp(name, "-") == 0)
        return fstat(STDIN_FILENO, sb) == 0 && S_ISREG(sb->st_mode);
    return stat(name, sb) == 0;
}

/* Whether two DATA arguments name one file (two spellings of a path, a
 * link, or '-' with standard input redirected from it): that file was
 * imported twice, each record stored twice, which weighs its outcomes
 * double in every prediction. Says so and returns 1. */
static int data_given_twice(char **pos, int n_pos)
{
    struct stat si, sj;
    for (int i = 0; i < n_pos; i++) {
        if (!data_stat(pos[i], &si))
            continue;
        for (int j = i + 1; j < n_pos; j++) {
            if (!data_stat(pos[j], &sj) || si.st_dev != sj.st_dev || si.st_ino != sj.st_ino)
                continue;
            if (strcmp(pos[i], pos[j]) == 0)
                cli_error("import", "'%s' is given twice: its records would be stored twice",
                          pos[i]);
            else
                cli_error("import",
                          "'%s' and '%s' are one file: its records would be stored "
                          "twice",
                          pos[i], pos[j]);
            return 1;
        }
    }
    return 0;
}

int cmd_import(int argc, char **argv)
{
    const char *store_path = NULL, *split = NULL, *config = NULL;
    int strict = 0, help_flag = 0, n_pos = 0, rc, status = CLI_OK, created = 0;
    size_t imported = 0; /* records this command stored, over all files */
    const struct cli_opt opts[] = {
        {"store", &store_path, NULL}, {"split", &split, NULL},   {"strict", NULL, &strict},
        {"config", &config, NULL},    {"help", NULL, &help_flag}, {NULL, NULL, NULL},
    };
    struct lr_config *cfg = NULL;
    struct lr_store *store = NULL;
    struct lr_store_options so;
    struct embed_http *emb = NULL;
    size_t dim = 0;
    struct lr_error err = {0};
    char **pos = NULL;

    rc = cli_parse("import", argc, argv, opts, &pos, &n_pos);
    if (rc)
        return rc;
    if (help_flag) {
        fputs(help, stdout);
        free(pos);
        return CLI_OK;
    }
    if (cli_check_split("import", split) || cli_check_file_args("import", pos, n_pos)) {
        free(pos);
        return CLI_USAGE;
    }
    /* Standard input can be read once: a second '-' would import nothing. */
    for (int i = 0, seen = 0; i < n_pos; i++)
        if (strcmp(pos[i], "-") == 0 && seen++) {
            cli_error("import", "'-' (standard input) is given twice");
            free(pos);
            return CLI_USAGE;
        }
    if (data_given_twice(pos, n_pos)) {
        free(pos);
        return CLI_USAGE;
    }
    if (config && (rc = cli_load_config("import", config, &cfg))) {
        free(pos);
        return rc;
    }
    cli_import_started = 1;
    if (!store_path && cfg)
        store_path = lr_config_router_defaults(cfg)->store_path;
    if (!store_path) {
        cli_error("import", "--store FILE is required");
        status = CLI_USAGE;
        goto out;
    }
    if (strcmp(store_path, ":memory:") == 0) {
        /* It reported the records imported, and kept none. */
        cli_error("import", "--store :memory: keeps nothing once the command ends: give a file");
        status = CLI_USAGE;
        goto out;
    }
    lr_store_options_init(&so);
    embed_store_options(cfg, &so);
    catch_stops();
    created = gw_store_is_new(store_path);
    if ((rc = lr_store_open(store_path, &so, &store, &err))) {
        cli_error("import", "%s", err.message);
        status = cli_exit_code(rc) == CLI_USAGE ? CLI_USAGE : CLI_RUNTIME;
        goto out;
    }
    if (embed_store_is_dense(store) && n_pos > 0) {
        /* The vectors' dimension: the store's, else the config's, else the
         * server's own (one probe request). */
        dim = lr_store_dim(store);
        rc = embed_http_new(lr_config_embedding(cfg), &emb, &err);
        /* A stop signal ends a request waiting on the server, not only
         * the import at its next record. */
        if (!rc)
            embed_http_set_cancel(emb, &stop_signal);
        if (rc || (!dim && (rc = embed_http_dim(emb, &dim, &err)))) {
            cli_error("import", "%s: nothing imported", err.message);
            status = cli_exit_code(rc) == CLI_USAGE ? CLI_USAGE : CLI_RUNTIME;
            goto out;
        }
    }
    int i = 0;
    for (; i < n_pos && !stop_signal; i++) {
        struct lr_import_options io;
        /* '-' is standard input (checked given once, above), which the
         * import reads as it reads a pipe and names /dev/stdin. */
        const char *path = pos[i];
        char in_path[64];
        int in_fd = -1;
        struct lr_import_report rep = {0};
        lr_import_options_init(&io);
        io.split = split;
        io.strict = strict;
        io.cancel = &stop_signal;
        if (strcmp(pos[i], "-") == 0) {
            if (stdin_as_file(in_path, sizeof in_path, &in_fd) != 0) {
                status = CLI_RUNTIME;
                continue;
            }
            path = in_path;
            io.name = "/dev/stdin";
        } else {
            int piped = named_pipe_as_file(pos[i], in_path, sizeof in_path, &in_fd);
            if (piped < 0) {
                status = CLI_RUNTIME;
                continue;
            }
            if (piped)
                path = in_path;
            io.name = piped ? pos[i] : NULL;
        }
        if (emb) {
            io.embed = embed_http_callback;
            io.embed_arg = emb;
            io.embed_batch = (size_t)lr_config_embedding(cfg)->batch_size;
            io.embed_dim = dim;
        }
        rc = lr_store_import_file(store, path, &io, &rep, &err);
        if (in_fd >= 0)
            close(in_fd);
        if (rc == LR_ECANCELED) {
            cli_error("import", "%s", err.message); /* it says nothing was imported */
            status = CLI_RUNTIME;
            continue;
        }
        if (rc) {
            cli_error("import", "%s: nothing imported from this file", err.message);
            status = CLI_RUNTIME;
            continue;
        }
        imported += rep.imported;
        /* Records with no "split" field are in no split: counted apart from
         * another split's, as eval counts them, and a file that names no
         * splits, all of whose records --split dropped, is said so below. */
        size_t unsplit = rep.skipped_unsplit;
        char why[96] = "";
        if (unsplit)
            snprintf(why, sizeof why, ", %zu with no \"split\" field", unsplit);
        /* The report is a line a file: the file's name and the bad record's
         * words (a key of the data file among them) are written escaped, as
         * every message is, so neither breaks the line nor reaches the
         * terminal as an escape sequence. */
        gw_put_escaped(stdout, io.name ? io.name : path);
        printf(": imported %zu of %zu records", rep.imported, rep.read);
        if (split)
            printf(" (%zu in other splits%s)", rep.skipped_split - unsplit, why);
        if (rep.bad) {
            printf(", skipped %zu bad (first: ", rep.bad);
            gw_put_escaped(stdout, rep.first_bad);
            printf(")");
        }
        printf("\n");
        /* Every record it had (of the split) bad: a failure, not an empty
         * file, so that a file in another format (RouterBench's own, a
         * chat log) does not pass for one with nothing to add. */
        if (rep.bad && !rep.imported) {
            const char *name = io.name ? io.name : path;
            if (split)
                cli_error("import", "%s: nothing imported: %zu bad record%s and none of split '%s'",
                          name, rep.bad, rep.bad == 1 ? "" : "s", split);
            else if (rep.bad == 1)
                cli_error("import", "%s: nothing imported: its one record is bad", name);
            else
                cli_error("import", "%s: nothing imported: its %zu records are all bad", name,
                          rep.bad);
            status = CLI_RUNTIME;
        }
        if (split && !rep.bad && unsplit && unsplit == rep.read)
            cli_error("import",
                      "%s: no record has a \"split\" field, so --split %s dropped all %zu",
                      io.name ? io.name : path, split, rep.read);
    }
    if (stop_signal && i < n_pos) {
        cli_error("import", "stopped by a signal: nothing imported from '%s'%s", pos[i],
                  i + 1 < n_pos ? " or the files after it" : "");
        status = CLI_RUNTIME;
    }
    /* A store this command created and left empty is removed below. */
    if (!(created && status != CLI_OK && lr_store_count(store) == 0)) {
        gw_put_escaped(stdout, store_path);
        printf(": %zu records\n", lr_store_count(store));
    }
out:
    embed_http_free(emb);
    /* Failed with nothing in the store it created: removed, unless another
     * handle has it open (another import filling it, a gateway) or it
     * holds records after all (lr_store_discard() checks both). A store
     * this command filled from its other files is kept, and said so: it is
     * not empty, and not by anyone else's doing. */
    if (store && created && status != CLI_OK && imported > 0) {
        cli_error("import",
                  "kept '%s', which this command created: it holds the %zu records imported "
                  "from the other files",
                  store_path, imported);
    } else if (store && created && status != CLI_OK) {
        int removed = 0;
        if (lr_store_discard(store, &removed, &err) != 0)
            cli_error("import", "%s", err.message);
        else if (removed)
            cli_error("import", "removed '%s', which this command created: nothing was imported",
                      store_path);
        else
            cli_error("import",
                      "kept '%s', which this command created: another process has it open, "
                      "has written to it or has put another file at its path",
                      store_path);
        store = NULL;
    }
    lr_store_free(store);
    lr_config_free(cfg);
    free(pos);
    if (stop_signal) {
        /* Cleaned up: now the death the signal asked for, which the caller
         * (a shell's loop, a supervisor) tells from a failure. */
        fflush(NULL);
        signal(stop_signal, SIG_DFL);
        raise(stop_signal);
    }
    return status;
}
