/* cmd_route.c -- `llmroute route`: route queries with a strategy and print
 * one line per query: the chosen model's name, or with --json one JSON object
 * with the prediction and the ranking. Queries are the QUERY arguments, or
 * each line of standard input that is not blank when none is given. With --batch the
 * queries are assigned together (smart strategy: mean quality >= alpha at the
 * least cost, or the best quality within --budget). When the config names a
 * remote embedder (router.embedding), the store is dense and the queries are
 * embedded through it, in batches, before any is routed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "embed_http.h"

static const char help[] =
    "usage: llmroute route --config FILE [options] [QUERY ...]\n"
    "Route each QUERY (or each line of standard input that is not blank: lines of\n"
    "only spaces and tabs are skipped) and print the chosen model's name, one line\n"
    "per query. Every query is checked before any is routed: an empty or blank\n"
    "QUERY, a '-' (standard input is read when no QUERY is given), or text that\n"
    "is not UTF-8 or is over 256 KiB is refused (exit 2) with nothing printed.\n"
    "\n"
    "  --config FILE        model configuration (required)\n"
    "  --strategy NAME      sequential or smart (default: the config's router.strategy)\n"
    "  --models a,b,c       candidate models (default: every configured model)\n"
    "  --store FILE         history store for smart routing (default: router.store)\n"
    "  --requirement R      per-query quality requirement in [0,1] (default: config's);\n"
    "                       not with --batch, whose target is --alpha\n"
    "  --predictor NAME     default or aios (smart)\n"
    "  --n-similar K        neighbours used for prediction (smart)\n"
    "  --input-tokens N     input token count of every query, 0 to 1000000000\n"
    "                       (default: estimated, a token per four bytes)\n"
    "  --batch              assign all queries together (smart): min cost s.t. mean\n"
    "                       predicted quality >= alpha and each model within capacity\n"
    "  --alpha A            with --batch: the mean quality target in [0,1] (default:\n"
    "                       router.alpha); without: the same as --requirement\n"
    "  --budget B           batch: maximise quality with total estimated cost <= B\n"
    "  --json               one JSON object per line with predictions and ranking\n"
    "\n"
    "With router.embedding in the config (a remote embedder), smart routing\n"
    "embeds the queries through that server first.\n"
    "\n"
    "The smart strategy needs both prices (cost_per_input_token and\n"
    "cost_per_output_token) of every candidate when there are two or more, or\n"
    "with --batch; --requirement, --predictor, --n-similar and --alpha without\n"
    "--batch apply to smart routing and are refused with the sequential one.\n"
    "When no query's neighbours in the store have outcomes of a candidate, its\n"
    "quality is not predicted: a warning names it (the exit code is unchanged).\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage, configuration or unknown model,\n"
    "3 constraints not met (--batch: the --alpha target, the --budget or the\n"
    "models' capacities cannot be met; the best reachable assignment was printed).\n";

struct route_args {
    const char *config, *strategy, *models, *store, *requirement, *predictor, *n_similar,
        *input_tokens, *alpha, *budget;
    int json, batch, help;
};

static json_t *num_or_null(double d)
{
    return isnan(d) ? json_null() : json_real(d);
}

static void print_decision(const struct lr_config *cfg, const char *strategy,
                           const struct lr_decision *d, int as_json)
{
    const struct lr_model_info *m = lr_config_model(cfg, (size_t)d->index);
    json_t *o, *cands;
    char *s;

    if (!as_json) {
        printf("%s\n", m->name);
        return;
    }
    o = json_object();
    cands = json_array();
    json_object_set_new(o, "model", json_string(m->name));
    json_object_set_new(o, "index", json_integer(d->index));
    json_object_set_new(o, "strategy", json_string(strategy));
    json_object_set_new(o, "input_tokens", json_integer(d->input_tokens));
    json_object_set_new(o, "predicted_quality", num_or_null(d->predicted_quality));
    json_object_set_new(o, "predicted_output_tokens", num_or_null(d->predicted_output_tokens));
    json_object_set_new(o, "estimated_cost", num_or_null(d->estimated_cost));
    for (size_t i = 0; i < d->n_ranked; i++) {
        const struct lr_candidate *c = &d->ranking[i];
        json_t *co = json_object();
        json_object_set_new(co, "model",
                            json_string(lr_config_model(cfg, (size_t)c->index)->name));
        json_object_set_new(co, "index", json_integer(c->index));
        json_object_set_new(co, "predicted_quality", num_or_null(c->predicted_quality));
        json_object_set_new(co, "predicted_output_tokens",
                            num_or_null(c->predicted_output_tokens));
        json_object_set_new(co, "estimated_cost", num_or_null(c->estimated_cost));
        json_array_append_new(cands, co);
    }
    json_object_set_new(o, "ranking", cands);
    /* jansson's default precision, 17 digits, as the gateway's /v1/route
     * has it: at 1e-7 a token, two candidates' costs can differ past the
     * tenth digit, and a consumer must not see a tie that is not one. */
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(o);
}

/* The longest line read as a query: the cap of a query (256 KiB, as
 * lr_record_check_query() has it) and its CRLF. A longer line is refused
 * as soon as it passes that, not read on until memory runs out. */
#define ROUTE_MAX_LINE (256 * 1024 + 2)

/* One line of f into *buf (grown as needed, *cap its size), with its
 * ending, NUL-terminated, *len bytes. Returns 1, 0 at the end of input
 * with nothing read, -1 on a read error or out of memory (errno says
 * which), -2 when the line passes max bytes. */
static int line_capped(FILE *f, char **buf, size_t *cap, size_t max, size_t *len)
{
    size_t n = 0;
    int ch = EOF;
    while (n <= max && (ch = getc(f)) != EOF) {
        if (n + 2 > *cap) {
            size_t grown_cap = *cap ? *cap * 2 : 256;
            char *grown = realloc(*buf, grown_cap);
            if (!grown) {
                errno = ENOMEM;
                return -1;
            }
            *buf = grown;
            *cap = grown_cap;
        }
        (*buf)[n++] = (char)ch;
        if (ch == '\n')
            break;
    }
    if (n > max)
        return -2;
    if (ch == EOF && ferror(f))
        return -1;
    if (n == 0)
        return 0;
    (*buf)[n] = '\0';
    *len = n;
    return 1;
}

/* Read every line of f that is not blank (without its line ending) into *lines,
 * and the number of each, counted from 1 with the blank ones, into *linenos.
 * Returns CLI_OK, or CLI_RUNTIME / CLI_USAGE after printing why: a read
 * error (standard input is a directory, say) must not pass for no queries,
 * a line with a NUL byte is binary input, not a query to cut short, and a
 * line over the cap of a query is refused when it passes it. A UTF-8 byte
 * order mark at the start of the input is skipped, as it is at the start
 * of a data or configuration file: it is no part of the first query's text
 * (its token estimate, its words). */
static int read_lines(FILE *f, char ***lines, size_t **linenos, size_t *n)
{
    char *line = NULL, **arr = NULL;
    size_t cap = 0, count = 0, arr_cap = 0, lineno = 0, len = 0, *nums = NULL;
    int rc = CLI_RUNTIME, got;

    for (;;) {
        errno = 0;
        if ((got = line_capped(f, &line, &cap, ROUTE_MAX_LINE + (lineno ? 0 : 3), &len)) <= 0)
            break;
        lineno++;
        if (lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            memmove(line, line + 3, len - 3 + 1);
            len -= 3;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || strspn(line, " \t\r\f\v") == len)
            continue; /* a blank line, spaces or not, is no query */
        if (memchr(line, '\0', len)) {
            cli_error("route", "standard input, line %zu: contains a NUL byte (expected one "
                               "query per line of text)",
                      lineno);
            rc = CLI_USAGE;
            goto fail;
        }
        if (count == arr_cap) {
            size_t grown_cap = arr_cap ? arr_cap * 2 : 64;
            char **grown = realloc(arr, grown_cap * sizeof *arr);
            size_t *grown_nums;
            if (!grown)
                goto nomem;
            arr = grown;
            grown_nums = realloc(nums, grown_cap * sizeof *nums);
            if (!grown_nums)
                goto nomem;
            nums = grown_nums;
            arr_cap = grown_cap;
        }
        arr[count] = strdup(line);
        if (!arr[count])
            goto nomem;
        nums[count] = lineno;
        count++;
    }
    if (got == -2) {
        cli_error("route", "standard input, line %zu: over the cap of a query (262144 bytes)",
                  lineno + 1);
        rc = CLI_USAGE;
        goto fail;
    }
    if (got < 0 && errno == ENOMEM)
        goto nomem;
    if (got < 0) {
        cli_error("route", "cannot read standard input: %s",
                  errno ? strerror(errno) : "read error");
        goto fail;
    }
    free(line);
    *lines = arr;
    *linenos = nums;
    *n = count;
    return CLI_OK;
nomem:
    cli_error("route", "out of memory reading standard input");
fail:
    for (size_t i = 0; i < count; i++)
        free(arr[i]);
    free(arr);
    free(nums);
    free(line);
    return rc;
}

/* The options only smart routing reads are refused with the sequential
 * strategy rather than ignored (--budget by the check that it goes with
 * --batch). --batch is refused here too, before any query is read: the
 * library would refuse it only once a batch of one or more queries
 * reached it, so an empty input passed for a batch routed, and a terminal
 * was read to its end before the error. */
static int check_strategy_flags(const struct route_args *a, const char *strategy)
{
    const char *flag = a->requirement            ? "--requirement"
                       : a->predictor            ? "--predictor"
                       : a->n_similar            ? "--n-similar"
                       : (a->alpha && !a->batch) ? "--alpha"
                                                 : NULL;

    if (strcmp(strategy, "sequential") != 0)
        return CLI_OK;
    if (a->batch) {
        cli_error("route", "--batch: the sequential strategy predicts no quality or cost, so "
                           "it cannot solve a batch assignment: use the smart strategy");
        return CLI_USAGE;
    }
    if (!flag)
        return CLI_OK;
    cli_error("route",
              "%s applies to smart routing (--strategy smart), not to the sequential "
              "strategy",
              flag);
    return CLI_USAGE;
}

/* Smart routing ranks candidates by estimated cost, so with two or more
 * candidates (or any in a batch) each needs both prices: a missing one is a
 * configuration error, named before the store is opened or a query read. */
static int check_prices(const struct lr_config *cfg, const char *const *names, size_t n_names,
                        int batch)
{
    size_t n = n_names ? n_names : lr_config_model_count(cfg);

    if (n < 2 && !batch)
        return CLI_OK;
    for (size_t j = 0; j < n; j++) {
        const struct lr_model_info *mi =
            lr_config_model(cfg, n_names ? (size_t)lr_config_model_index(cfg, names[j]) : j);
        if (isnan(mi->cost_per_input_token) || isnan(mi->cost_per_output_token)) {
            cli_error("route",
                      "model '%s' has no %s: smart routing ranks the candidates by "
                      "estimated cost, so each needs cost_per_input_token and "
                      "cost_per_output_token%s",
                      mi->name,
                      isnan(mi->cost_per_input_token) ? "cost_per_input_token"
                                                      : "cost_per_output_token",
                      batch ? "" : " (or name one model with --models)");
            return CLI_USAGE;
        }
    }
    return CLI_OK;
}

/* Every query is checked before any is embedded, routed or printed, as
 * --batch does: a bad line late in the input must not leave the lines
 * before it printed and the command failed. A query is held to the rule a
 * stored query is (lr_record_check_query(): 1 to 256 KiB of UTF-8); an
 * argument that is empty or blank is refused, not routed as no text
 * (standard input skips blank lines, where nothing names them), and a
 * lone '-' is no query: standard input is read when no QUERY is given.
 * linenos is NULL for arguments; for lines of standard input it holds
 * each query's line number, which the message names too, as blank lines
 * make query N a later line than N. */
static int check_queries(char *const *queries, size_t n, const size_t *linenos)
{
    struct lr_error err = {0};
    int from_args = linenos == NULL;

    for (size_t i = 0; i < n; i++) {
        const char *q = queries[i];
        size_t len = strlen(q);
        if (from_args && strspn(q, " \t\r\n\f\v") == len) {
            cli_error("route", "query %zu: argument %zu is %s: give the query's text", i + 1, i + 1,
                      len ? "blank" : "empty");
            return CLI_USAGE;
        }
        if (from_args && strcmp(q, "-") == 0) {
            cli_error("route",
                      "query %zu: '-' is not read as standard input: give no QUERY "
                      "argument to route the lines of standard input",
                      i + 1);
            return CLI_USAGE;
        }
        if (lr_record_check_query(q, len, &err) != 0) {
            if (from_args)
                cli_error("route", "query %zu: %s", i + 1, err.message);
            else
                cli_error("route", "query %zu (standard input, line %zu): %s", i + 1, linenos[i],
                          err.message);
            return CLI_USAGE;
        }
    }
    return CLI_OK;
}

/* A batch's reached figure d as the summary line prints it: `fmt`, or,
 * when d misses its bound (a mean quality below alpha, a total cost over
 * the budget: `above`), as many more digits as it takes to read on the
 * missed side of the bound: "mean predicted quality 0.7000" for 0.69996
 * against alpha 0.7 read as met. bound NaN: d bounds nothing. */
static const char *batch_figure(char *buf, size_t size, const char *fmt, double d, double bound,
                                int above)
{
    snprintf(buf, size, fmt, d);
    int missed = above ? d > bound * (1 + LR_BATCH_TOLERANCE)
                       : d < bound * (1 - LR_BATCH_TOLERANCE);
    if (isnan(bound) || !missed)
        return buf;
    for (int prec = 6; prec <= 17; prec++) {
        double shown = strtod(buf, NULL);
        if (above ? shown > bound : shown < bound)
            break;
        snprintf(buf, size, "%.*g", prec, d);
    }
    return buf;
}

/* Smart routing predicts a candidate's quality from the outcomes of the
 * query's nearest neighbours in the store. A candidate with none there has
 * no prediction: it is ranked after every candidate with one, and when no
 * candidate has one the choice is simply the cheapest. That is said on
 * standard error (the exit code is unchanged): the choice may look like a
 * prediction but is not one. */
static void warn_unpredicted(const struct lr_config *cfg, const struct lr_decision *decs,
                             size_t n_queries, size_t n_models)
{
    unsigned char *seen = calloc(lr_config_model_count(cfg), 1);
    size_t n_cands = 0, n_unseen = 0;
    char list[900];
    size_t used = 0, n_listed = 0;

    if (!seen)
        return;
    for (size_t i = 0; i < n_queries; i++)
        for (size_t j = 0; j < decs[i].n_ranked && j < n_models; j++) {
            const struct lr_candidate *c = &decs[i].ranking[j];
            if (c->index < 0)
                continue;
            if (!(seen[c->index] & 1)) {
                seen[c->index] |= 1;
                n_cands++;
            }
            if (!isnan(c->predicted_quality))
                seen[c->index] |= 2;
        }
    list[0] = '\0';
    for (size_t m = 0; m < lr_config_model_count(cfg); m++) {
        if (seen[m] != 1)
            continue;
        n_unseen++;
        /* Whole names only, in order, leaving room for the count of the
         * rest: a name cut short, or a list that stops without a word,
         * would pass for the whole list. */
        if (n_listed + 1 == n_unseen) {
            const char *name = lr_config_model(cfg, m)->name;
            size_t need = (used ? 2 : 0) + strlen(name) + 2;
            if (used + need < sizeof list - 32) {
                snprintf(list + used, sizeof list - used, "%s'%s'", used ? ", " : "", name);
                used += need;
                n_listed++;
            }
        }
    }
    if (n_listed < n_unseen)
        snprintf(list + used, sizeof list - used, "%s%zu more", used ? ", and " : "",
                 n_unseen - n_listed);
    free(seen);
    if (n_unseen == 0 || n_cands == 0)
        return;
    if (n_cands == 1)
        /* One candidate: there was no choice to make. */
        cli_error("route",
                  "warning: the only candidate model (%s) has no outcomes in the history "
                  "store for %s: nothing predicts its quality",
                  list, n_queries == 1 ? "this query" : "these queries");
    else if (n_unseen == n_cands)
        cli_error("route",
                  "warning: no candidate model (%s) has outcomes in the history store for "
                  "%s: nothing predicts their quality, so the cheapest was chosen",
                  list, n_queries == 1 ? "this query" : "these queries");
    else
        cli_error("route",
                  "warning: %zu of %zu candidate models have no outcomes in the history "
                  "store for %s (%s): their quality is not predicted, and they are ranked "
                  "after every model whose quality is",
                  n_unseen, n_cands, n_queries == 1 ? "this query" : "these queries", list);
}

int cmd_route(int argc, char **argv)
{
    struct route_args a = {0};
    const struct cli_opt opts[] = {
        {"config", &a.config, NULL},
        {"strategy", &a.strategy, NULL},
        {"models", &a.models, NULL},
        {"store", &a.store, NULL},
        {"requirement", &a.requirement, NULL},
        {"predictor", &a.predictor, NULL},
        {"n-similar", &a.n_similar, NULL},
        {"input-tokens", &a.input_tokens, NULL},
        {"alpha", &a.alpha, NULL},
        {"budget", &a.budget, NULL},
        {"json", NULL, &a.json},
        {"batch", NULL, &a.batch},
        {"help", NULL, &a.help},
        {NULL, NULL, NULL},
    };
    struct lr_config *cfg = NULL;
    struct lr_router *router = NULL;
    struct lr_store *store = NULL;
    struct lr_router_options ro;
    struct lr_error err = {0};
    char **pos = NULL, **names = NULL, **lines = NULL, **queries;
    size_t *linenos = NULL;
    size_t n_names = 0, n_lines = 0, n_queries;
    int n_pos = 0, rc, r, smart;
    double requirement = NAN, alpha = NAN, budget = NAN;
    long n_similar = 0, input_tokens = -1;
    struct lr_request *reqs = NULL;
    struct lr_decision *decs = NULL;
    struct lr_candidate *rank_buf = NULL;
    struct embed_http *emb = NULL;
    float *vecs = NULL;
    size_t n_models;
    const char *strategy;

    rc = cli_parse("route", argc, argv, opts, &pos, &n_pos);
    if (rc)
        return rc;
    if (a.help) {
        fputs(help, stdout);
        free(pos);
        return CLI_OK;
    }
    if ((a.requirement &&
         (rc = cli_parse_double("route", "--requirement", a.requirement, 0, 1, &requirement))) ||
        (a.alpha && (rc = cli_parse_double("route", "--alpha", a.alpha, 0, 1, &alpha))) ||
        (a.budget && (rc = cli_parse_double("route", "--budget", a.budget, 0,
                                            LR_BATCH_MAX_BUDGET, &budget))) ||
        (a.n_similar && (rc = cli_parse_long("route", "--n-similar", a.n_similar, 1,
                                             LR_MAX_N_SIMILAR, &n_similar))) ||
        (a.input_tokens && (rc = cli_parse_long("route", "--input-tokens", a.input_tokens, 0,
                                                1000000000L, &input_tokens))))
        goto out;
    if (a.budget && !a.batch) {
        cli_error("route", "--budget applies to --batch");
        rc = CLI_USAGE;
        goto out;
    }
    /* A batch meets --alpha at the least cost, or gets the most quality
     * within --budget: the other value would be ignored. */
    if (a.budget && a.alpha) {
        cli_error("route", "give --alpha or --budget with --batch, not both (--alpha: the "
                           "least cost at that mean quality; --budget: the most quality "
                           "within that cost)");
        rc = CLI_USAGE;
        goto out;
    }
    /* A batch is held to a mean quality (--alpha), not to a requirement
     * per query, which it never reads: --batch --requirement 1 chose what
     * --requirement 0 did, without a word. */
    if (a.batch && a.requirement) {
        cli_error("route", "--requirement applies to routing one query at a time: a --batch "
                           "assignment meets a mean quality target, given with --alpha");
        rc = CLI_USAGE;
        goto out;
    }
    /* Per query, alpha is the requirement each choice must meet. */
    if (a.alpha && !a.batch) {
        if (a.requirement) {
            cli_error("route", "give --requirement or --alpha, not both");
            rc = CLI_USAGE;
            goto out;
        }
        requirement = alpha;
    }
    if (a.models && (rc = cli_split_list("route", "--models", a.models, "name", &names, &n_names)))
        goto out;
    if ((rc = cli_load_config("route", a.config, &cfg)))
        goto out;
    /* Unknown names fail before any query is read. */
    for (size_t i = 0; i < n_names; i++)
        if (lr_config_model_index(cfg, names[i]) < 0) {
            cli_error("route", "--models: unknown model '%s' (not in %s)", names[i], a.config);
            rc = CLI_USAGE;
            goto out;
        }

    strategy = a.strategy ? a.strategy : lr_config_router_defaults(cfg)->strategy;
    if ((rc = check_strategy_flags(&a, strategy)) ||
        (strcmp(strategy, "smart") == 0 &&
         (rc = check_prices(cfg, (const char *const *)names, n_names, a.batch))))
        goto out;

    lr_router_options_init(&ro);
    ro.strategy = a.strategy;
    ro.performance_requirement = requirement;
    ro.n_similar = (int)n_similar;
    ro.predictor = a.predictor;
    /* The config's store is smart routing's: the sequential strategy reads
     * none, and one not made yet (serve makes it) must not stop it; nor
     * must it stand before a misspelt strategy, which the router names. A
     * --store given is opened, and checked, whatever the strategy. */
    if (!a.store && strcmp(strategy, "smart") == 0)
        a.store = lr_config_router_defaults(cfg)->store_path;
    if ((rc = cli_check_store_exists("route", a.store)))
        goto out;
    if (a.store) {
        struct lr_store_options so;
        lr_store_options_init(&so);
        embed_store_options(cfg, &so);
        so.read_only = 1;
        if ((r = lr_store_open(a.store, &so, &store, &err))) {
            cli_error("route", "%s", err.message);
            rc = cli_exit_code(r) == CLI_USAGE ? CLI_USAGE : CLI_RUNTIME;
            goto out;
        }
        ro.store = store;
    }
    if (!store && strcmp(strategy, "smart") == 0) {
        /* The library's refusal, with where a store is given. */
        cli_error("route", "smart routing needs a history store (--store FILE, or router.store "
                           "in the config)");
        rc = CLI_USAGE;
        goto out;
    }
    if ((rc = lr_router_new(cfg, &ro, &router, &err))) {
        cli_error("route", "%s", err.message);
        rc = cli_exit_code(rc);
        goto out;
    }

    if (n_pos > 0) {
        queries = pos;
        n_queries = (size_t)n_pos;
    } else {
        if ((rc = read_lines(stdin, &lines, &linenos, &n_lines)))
            goto out;
        queries = lines;
        n_queries = n_lines;
    }
    if (n_queries == 0) {
        rc = CLI_OK;
        goto out;
    }
    if ((rc = check_queries(queries, n_queries, n_pos > 0 ? NULL : linenos)))
        goto out;

    /* Smart routing keeps each ranking, for --json and for
     * warn_unpredicted(). */
    smart = strcmp(lr_router_strategy(router), "smart") == 0;
    n_models = n_names ? n_names : lr_config_model_count(cfg);
    reqs = calloc(n_queries, sizeof *reqs);
    decs = calloc(n_queries, sizeof *decs);
    rank_buf = a.json || smart ? calloc(n_queries * n_models, sizeof *rank_buf) : NULL;
    if (!reqs || !decs || ((a.json || smart) && !rank_buf)) {
        cli_error("route", "out of memory");
        rc = CLI_RUNTIME;
        goto out;
    }
    for (size_t i = 0; i < n_queries; i++) {
        lr_request_init(&reqs[i]);
        lr_decision_init(&decs[i]);
        reqs[i].models = (const char *const *)names;
        reqs[i].n_models = n_names;
        reqs[i].query = queries[i];
        reqs[i].input_tokens = input_tokens;
        if (rank_buf) {
            decs[i].ranking = rank_buf + i * n_models;
            decs[i].ranking_cap = n_models;
        }
    }

    /* A dense store: the smart strategy needs each query's vector from the
     * remote embedder (an empty store has no dimension yet, and the router
     * says it is empty). */
    if (store && embed_store_is_dense(store) && lr_store_dim(store) > 0 &&
        strcmp(lr_router_strategy(router), "smart") == 0) {
        size_t dim = lr_store_dim(store);
        vecs = calloc(n_queries, dim * sizeof *vecs);
        if (!vecs) {
            cli_error("route", "out of memory");
            rc = CLI_RUNTIME;
            goto out;
        }
        if ((r = embed_http_new(lr_config_embedding(cfg), &emb, &err)) ||
            (r = embed_http_embed(emb, (const char *const *)queries, n_queries, vecs, dim,
                                  &err))) {
            cli_error("route", "%s", err.message);
            rc = cli_exit_code(r) == CLI_USAGE && r != LR_EINVAL ? CLI_USAGE : CLI_RUNTIME;
            goto out;
        }
        for (size_t i = 0; i < n_queries; i++) {
            reqs[i].embedding = vecs + i * dim;
            reqs[i].embedding_dim = dim;
        }
    }

    if (a.batch) {
        struct lr_batch_options bo;
        struct lr_batch_report rep;
        lr_batch_options_init(&bo);
        bo.mode = a.budget ? LR_BATCH_BUDGET : LR_BATCH_QUALITY;
        bo.alpha = alpha;
        bo.budget = budget;
        rc = lr_router_route_batch(router, reqs, n_queries, &bo, decs, &rep, &err);
        if (rc && rc != LR_EINFEASIBLE) {
            /* The library counts a batch's queries from 0; here, as without
             * --batch, the first query (argument or line) is query 1. */
            size_t qi;
            int off = 0;
            if (sscanf(err.message, "query %zu: %n", &qi, &off) == 1 && off > 0)
                cli_error("route", "query %zu: %s", qi + 1, err.message + off);
            else
                cli_error("route", "%s", err.message);
            rc = cli_exit_code(rc);
            goto out;
        }
        for (size_t i = 0; i < n_queries; i++)
            print_decision(cfg, lr_router_strategy(router), &decs[i], a.json);
        if (smart)
            warn_unpredicted(cfg, decs, n_queries, n_models);
        /* NaN when no query of the batch was predicted (each had one
         * candidate and nothing to predict it from). */
        char qtext[32] = "unknown", ctext[32] = "unknown";
        /* A batch that met its constraints missed no bound: its mean may
         * lie within the library's slack below alpha (a stored 0.7 reads
         * back as 0.69999999) and is printed as met. */
        double bound = rc == 0       ? NAN
                       : a.budget    ? budget
                       : isnan(alpha) ? lr_config_router_defaults(cfg)->alpha
                                      : alpha;
        if (!isnan(rep.mean_quality))
            batch_figure(qtext, sizeof qtext, "%.4f", rep.mean_quality,
                         a.budget ? NAN : bound, 0);
        if (!isnan(rep.total_cost))
            batch_figure(ctext, sizeof ctext, "%.6g", rep.total_cost,
                         a.budget ? bound : NAN, 1);
        fprintf(stderr, "llmroute route: batch of %zu: mean predicted quality %s, "
                        "estimated cost %s%s%s\n",
                n_queries, qtext, ctext, rc ? ": " : "", rc ? rep.message : "");
        rc = rc ? CLI_UNMET : CLI_OK;
        goto out;
    }
    /* Every query is routed before any is printed: one that fails leaves
     * no partial answer on standard output. */
    for (size_t i = 0; i < n_queries; i++) {
        r = lr_router_route(router, &reqs[i], &decs[i], &err);
        if (r) {
            cli_error("route", "query %zu: %s", i + 1, err.message);
            rc = cli_exit_code(r);
            goto out;
        }
    }
    for (size_t i = 0; i < n_queries; i++)
        print_decision(cfg, lr_router_strategy(router), &decs[i], a.json);
    if (smart)
        warn_unpredicted(cfg, decs, n_queries, n_models);
    rc = CLI_OK;
out:
    cli_flush_stdout();
    embed_http_free(emb);
    free(vecs);
    free(rank_buf);
    free(decs);
    free(reqs);
    for (size_t i = 0; i < n_lines; i++)
        free(lines[i]);
    free(lines);
    free(linenos);
    lr_router_free(router);
    lr_store_free(store);
    lr_config_free(cfg);
    free(names);
    free(pos);
    return rc;
}
