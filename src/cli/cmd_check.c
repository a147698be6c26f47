/* cmd_check.c -- `llmroute check-config FILE [--store FILE] [--store-read-only]`: validate a
 * configuration as `llmroute serve` would load it and print what it
 * defines, or the first error with the field it is in. The checks are the
 * gateway's own (gw_conf_check() and gw_store_open() in
 * src/gateway/gwconf.c), so the two cannot drift: a file check-config
 * accepts, serve accepts in the same environment with the same store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gateway.h"

static const char help[] =
    "usage: llmroute check-config FILE [--store FILE] [--store-read-only]\n"
    "Validate a configuration as 'llmroute serve' loads it: models, routes and\n"
    "router, then the `server` section, each model's backend (base_url, headers,\n"
    "retry, timeouts), each route's retry and timeouts, and every strategy's\n"
    "router over the history store serve would use: --store FILE, else the\n"
    "config's router.store, else none (then a smart route or strategy is an\n"
    "error, as it is for serve). An existing store is opened read-only (as long\n"
    "as serve's open takes: its records are read) and must match the config's\n"
    "embedder; a missing one is checked as the empty store serve would make,\n"
    "in a folder that must exist and be writable, as serve's create needs.\n"
    "A store file this process may not write is refused, as serve refuses it,\n"
    "unless --store-read-only is given, as it must be to serve: then the store\n"
    "must exist and is checked as serve --store-read-only opens it.\n"
    "Prints a summary and exits 0 when it is valid; prints the offending field\n"
    "and exits 2 when it is not, or when the store cannot be opened (1 only\n"
    "when memory runs out). Warnings (unknown keys, unknown\n"
    "backends) go to standard error and do not fail the check. A smart route\n"
    "with two or more candidates needs both prices of each: one without is an\n"
    "error naming the route, the model and the price.\n"
    "\n"
    "The environment is read as serve reads it: an unset or empty\n"
    "server.api_keys_env or server.feedback_api_keys_env variable (or one with\n"
    "only empty entries) is an error, as it stops serve; an unset\n"
    "api_key_env or header {\"env\": VAR} is a warning, as serve then sends\n"
    "requests without it. Nothing is started, and the store's contents are not\n"
    "changed (SQLite may create its -wal and -shm side files beside an existing\n"
    "store, as it does for any reader).\n"
    "\n"
    "Exit codes: 0 valid; 1 out of memory; 2 usage, a configuration that is not\n"
    "valid, or a store that cannot be opened or does not fit.\n";

int cmd_check_config(int argc, char **argv)
{
    int help_flag = 0, ro_flag = 0, n_pos = 0, rc;
    char **pos = NULL, *store_path = NULL;
    const char *store_flag = NULL;
    struct gw_conf *conf = NULL;
    struct lr_store *store = NULL;
    struct lr_error err = {0};
    const struct cli_opt opts[] = {
        {"store", &store_flag, NULL},
        {"store-read-only", NULL, &ro_flag},
        {"help", NULL, &help_flag},
        {NULL, NULL, NULL}};

    rc = cli_parse("check-config", argc, argv, opts, &pos, &n_pos);
    if (rc)
        return rc;
    if (help_flag) {
        fputs(help, stdout);
        free(pos);
        return CLI_OK;
    }
    if (n_pos != 1) {
        cli_error("check-config", "expected one FILE, got %d arguments", n_pos);
        free(pos);
        return CLI_USAGE;
    }
    if (cli_check_file_args("check-config", pos, n_pos)) {
        free(pos);
        return CLI_USAGE;
    }
    if (strcmp(pos[0], "-") == 0) {
        /* As a --config of '-' is refused: no config is read from a stream. */
        cli_error("check-config", "'-' is not standard input here: give the configuration's "
                                  "file name (./- for a file named '-')");
        free(pos);
        return CLI_USAGE;
    }
    rc = gw_store_open(pos[0], store_flag, 1, ro_flag, &store, &store_path, NULL, &err);
    if (rc == 0)
        rc = gw_conf_check(pos[0], store, "llmroute check-config", &conf, &err);
    if (rc) {
        cli_error("check-config", "%s", err.message);
        rc = rc == LR_ENOMEM ? CLI_RUNTIME : CLI_USAGE;
    } else {
        const struct lr_router_defaults *d = lr_config_router_defaults(conf->cfg);
        printf("%s: ok: %zu models, %zu routes, strategy %s", pos[0],
               lr_config_model_count(conf->cfg), lr_config_route_count(conf->cfg), d->strategy);
        if (store)
            printf("; history store %s: %zu records, embedder %s%s", store_path,
                   lr_store_count(store), lr_store_embedder(store), ro_flag ? ", read-only" : "");
        printf("\n");
    }
    gw_conf_unref(conf);
    lr_store_free(store);
    free(store_path);
    free(pos);
    return rc;
}
