/* cmd_check.c -- `llmroute check-config FILE`: validate a configuration and
 * print what it defines, or the first error with the field it is in. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static const char help[] =
    "usage: llmroute check-config FILE\n"
    "Validate a configuration. Prints a summary and exits 0 when it is valid;\n"
    "prints the offending field and exits 2 when it is not. Warnings (unknown\n"
    "keys, unknown backends) go to standard error and do not fail the check.\n";

int cmd_check_config(int argc, char **argv)
{
    int help_flag = 0, n_pos = 0, rc;
    char **pos = NULL;
    struct lr_config *cfg = NULL;
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
    rc = cli_load_config("check-config", pos[0], &cfg);
    if (rc == CLI_OK) {
        const struct lr_router_defaults *d = lr_config_router_defaults(cfg);
        printf("%s: ok: %zu models, %zu routes, strategy %s\n", pos[0],
               lr_config_model_count(cfg), lr_config_route_count(cfg), d->strategy);
    }
    lr_config_free(cfg);
    free(pos);
    return rc;
}
