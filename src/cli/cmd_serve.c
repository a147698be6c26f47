/* cmd_serve.c -- `llmroute serve`: run the OpenAI-compatible gateway
 * (src/gateway/) in the foreground until SIGTERM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gateway.h"

static const char help[] =
    "usage: llmroute serve --config FILE [--listen HOST:PORT] [--store FILE]\n"
    "                      [--store-read-only] [--port-file FILE]\n"
    "Serve the OpenAI-compatible HTTP API: POST /v1/chat/completions,\n"
    "/v1/completions, /v1/responses, /v1/embeddings (routed and forwarded),\n"
    "GET /v1/models and /v1/models/{model}, the Responses API's requests about an\n"
    "id (/v1/responses/{id}...), POST /v1/route, POST /v1/feedback, GET /health,\n"
    "GET /metrics.\n"
    "\n"
    "  --config FILE       the configuration (models, routes, `server` settings)\n"
    "  --listen HOST:PORT  address to bind (default server.listen, else 127.0.0.1:8080);\n"
    "                      port 0 lets the system choose\n"
    "  --store FILE        history store for smart routing and feedback (default:\n"
    "                      router.store; made when missing)\n"
    "  --store-read-only   open the store read-only (a file this process may not\n"
    "                      write): routing and refreshes work, POST /v1/feedback\n"
    "                      answers 501 store_read_only; the store must exist.\n"
    "                      Without it, a store file that cannot be written is\n"
    "                      refused (exit 2)\n"
    "  --port-file FILE    write the bound port to FILE once listening (through\n"
    "                      FILE.tmp); the config, the store and its -wal, -shm and\n"
    "                      -journal files are refused as FILE or FILE.tmp\n"
    "\n"
    "One JSON line per request goes to standard error. SIGHUP reloads the\n"
    "configuration (a bad one is refused and the old one kept); SIGTERM stops\n"
    "accepting, finishes in-flight requests within server.shutdown_timeout_ms\n"
    "and exits 0; one sent while the store and the configuration load stops it\n"
    "once they are loaded, before it listens (a store this start made is removed).\n"
    "\n"
    "Exit codes: 0 stopped by SIGTERM or SIGINT; 1 runtime error (cannot listen,\n"
    "cannot write --port-file, out of memory, the store failing to be read or\n"
    "written: a full disk, an I/O error, another process holding it for over 5 s);\n"
    "2 usage, a configuration that is not valid (as check-config reports it) or a\n"
    "store that cannot be opened as given (no such folder, no permission, a file\n"
    "that is not a store) or does not fit.\n";

/* The gateway writes the port to --port-file's name with ".tmp" added,
 * then renames that over --port-file: whatever either name held is
 * replaced. Naming the config, the history store or one of SQLite's files
 * beside it there (a slip in a script) replaced a store of records with
 * "41687\n", and the gateway went on without a word. Refused before the
 * store is opened or made: CLI_USAGE after saying which file it is. */
static int port_file_check(const struct gw_options *o)
{
    static const char *const side[] = {"", "-wal", "-shm", "-journal"};
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};
    const char *store = o->store, *named_by = "--store";
    size_t tmp_size = strlen(o->port_file) + sizeof ".tmp";
    char *tmp = malloc(tmp_size), *name = NULL;
    int rc = CLI_OK;

    if (!tmp) {
        cli_error("serve", "out of memory");
        return CLI_RUNTIME;
    }
    snprintf(tmp, tmp_size, "%s.tmp", o->port_file);
    /* A config that does not load is the gateway's to report. */
    if (!store && lr_config_load_file(o->config_path, &cfg, &err) == 0) {
        store = lr_config_router_defaults(cfg)->store_path;
        named_by = "router.store";
    }
    if (store && strcmp(store, ":memory:") == 0)
        store = NULL; /* no file */
    if (store && !(name = malloc(strlen(store) + sizeof "-journal"))) {
        cli_error("serve", "out of memory");
        rc = CLI_RUNTIME;
    }
    for (int t = 0; t < 2 && rc == CLI_OK; t++) {
        const char *written = t ? tmp : o->port_file;
        /* "its temporary file pt.tmp " before what the name is. */
        const char *pre = t ? "its temporary file " : "";
        const char *mid = t ? tmp : "", *post = t ? " " : "";
        if (cli_same_file(written, o->config_path)) {
            cli_error("serve",
                      "--port-file %s: %s%s%sis the file --config names; give another "
                      "file name",
                      o->port_file, pre, mid, post);
            rc = CLI_USAGE;
        }
        for (size_t i = 0; store && rc == CLI_OK && i < sizeof side / sizeof *side; i++) {
            snprintf(name, strlen(store) + sizeof "-journal", "%s%s", store, side[i]);
            if (!cli_same_file(written, name))
                continue;
            cli_error("serve",
                      "--port-file %s: %s%s%sis the history store%s%s%s that %s names; "
                      "give another file name",
                      o->port_file, pre, mid, post, *side[i] ? "'s " : "", side[i],
                      *side[i] ? " file" : "", named_by);
            rc = CLI_USAGE;
        }
    }
    free(name);
    lr_config_free(cfg);
    free(tmp);
    return rc;
}

int cmd_serve(int argc, char **argv)
{
    struct gw_options o = {0};
    int help_flag = 0, n_pos = 0, rc;
    char **pos = NULL;
    const struct cli_opt opts[] = {
        {"config", &o.config_path, NULL},  {"listen", &o.listen, NULL}, {"store", &o.store, NULL},
        {"port-file", &o.port_file, NULL}, {"store-read-only", NULL, &o.store_read_only},
        {"help", NULL, &help_flag},        {NULL, NULL, NULL},
    };

    rc = cli_parse("serve", argc, argv, opts, &pos, &n_pos);
    if (rc)
        return rc;
    free(pos);
    if (help_flag) {
        fputs(help, stdout);
        return CLI_OK;
    }
    if (n_pos) {
        cli_error("serve", "takes no positional arguments (see 'llmroute serve --help')");
        return CLI_USAGE;
    }
    if (!o.config_path) {
        cli_error("serve", "--config FILE is required");
        return CLI_USAGE;
    }
    /* A command-line option, not the config's: checked before the store
     * is opened (and perhaps made), and named without the config file. */
    if (o.listen) {
        struct lr_error err = {0};
        if (gw_listen_check(o.listen, &err)) {
            cli_error("serve", "%s", err.message);
            return CLI_USAGE;
        }
    }
    if (o.port_file && (rc = port_file_check(&o)))
        return rc;
    return gw_run(&o);
}
