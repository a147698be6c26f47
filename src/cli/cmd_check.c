/* cmd_check.c -- `llmroute check-config FILE`: validate a configuration as
 * `llmroute serve` would load it and print what it defines, or the first
 * error with the field it is in. The checks are the gateway's own
 * (gw_conf_check() in src/gateway/gwconf.c), so the two cannot drift: a file
 * check-config accepts, serve accepts in the same environment, apart from
 * what needs the history store (building a smart router, matching a dense
 * store's embedder). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "gateway.h"

static const char help[] =
    "usage: llmroute check-config FILE\n"
    "Validate a configuration as 'llmroute serve' loads it: models, routes and\n"
    "router, then the `server` section, each model's backend (base_url, headers,\n"
    "retry, timeouts) and each route's retry and timeouts. Prints a summary and\n"
    "exits 0 when it is valid; prints the offending field and exits 2 when it is\n"
    "not. Warnings (unknown keys, unknown backends) go to standard error and do\n"
    "not fail the check.\n"
    "\n"
    "The environment is read as serve reads it: an unset or empty\n"
    "server.api_keys_env variable is an error, as it stops serve; an unset\n"
    "api_key_env or header {\"env\": VAR} is a warning, as serve then sends\n"
    "requests without it. Nothing is opened or started: the history store is\n"
    "not read, so what needs it (a smart router, a dense store's embedder) is\n"
    "checked when serve starts.\n";

int cmd_check_config(int argc, char **argv)
{
    int help_flag = 0, n_pos = 0, rc;
    char **pos = NULL;
    struct gw_conf *conf = NULL;
    struct lr_error err = {0};
    const struct cli_opt opts[] = {{"help", NULL, &help_flag}, {NULL, NULL, NULL}};

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
    rc = gw_conf_check(pos[0], "llmroute check-config", &conf, &err);
    if (rc) {
        cli_error("check-config", "%s", err.message);
        rc = rc == LR_ENOMEM ? CLI_RUNTIME : CLI_USAGE;
    } else {
        const struct lr_router_defaults *d = lr_config_router_defaults(conf->cfg);
        printf("%s: ok: %zu models, %zu routes, strategy %s\n", pos[0],
               lr_config_model_count(conf->cfg), lr_config_route_count(conf->cfg), d->strategy);
    }
    gw_conf_unref(conf);
    free(pos);
    return rc;
}
