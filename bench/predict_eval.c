/* predict_eval.c -- how well the predictor modes predict, on real data.
 *
 *   predict_eval [data.json] [prices.json] [--tune] [--decide] [--k N] [--groups C]
 *                [--dump FILE]
 *
 * The data is the AIOS smart-routing format with a "split" field (the
 * development data under ../shared/data; never part of the repository).
 * The history is the train split, imported through lr_store_import_file.
 *   --tune   leave-one-out over the train split only: every train record is
 *            predicted from its k nearest other train records, over a grid
 *            of the default predictor's constants; prints the best
 *            (--groups: the best at that group count only).
 *   --decide with prices: the batch decisions on train, leave-one-out:
 *            every train record predicted from the others with the built-in
 *            constants, then the budget form (lr__optimize_budget) over all
 *            of them at each single model's real cost on train, scored with
 *            the real outcomes and prices: the realised success against the
 *            optimizer's predicted mean quality shows the winner's curse, and
 *            a change of predictor can be judged by its decisions on train.
 *   --dump   every prediction of both modes as TSV (train leave-one-out
 *            when --tune or --decide made the train neighbour lists; test
 *            from all of train), for bench/predict_compare.py.
 * Then, for each mode, over the test split (history = train): Brier score
 * of predicted quality against correctness, mean absolute error of
 * predicted output tokens, and, given prices, the success rate and cost of
 * routing each test query by the per-query rule at requirement 0.7.
 *
 * Single-threaded.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "optimize.h"
#include "predict.h"
#include "smart.h"
#include "store.h"
#include "bench.h"

#define MAX_MODELS 64
#define KMAX 64 /* neighbours fetched: room for any --k below it */

struct item {
    const char *query;
    long input_tokens;
    const char *task;
    int n;
    int model[MAX_MODELS]; /* index into names */
    double c[MAX_MODELS], o[MAX_MODELS];
};

static const char *names[MAX_MODELS];
static int n_names;
static double price_in[MAX_MODELS], price_out[MAX_MODELS];

static int name_index(const char *s)
{
    for (int i = 0; i < n_names; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    if (n_names == MAX_MODELS)
        return -1;
    names[n_names] = s;
    return n_names++;
}

/* Items of one split, in file order (the store's record order for train). */
static struct item *load_split(json_t *all, const char *split, size_t *n)
{
    size_t cap = json_array_size(all), m = 0;
    struct item *v = calloc(cap ? cap : 1, sizeof(*v));
    for (size_t i = 0; v && i < cap; i++) {
        json_t *r = json_array_get(all, i);
        if (strcmp(json_string_value(json_object_get(r, "split")), split) != 0)
            continue;
        struct item *it = &v[m++];
        it->query = json_string_value(json_object_get(r, "query"));
        it->input_tokens = (long)json_integer_value(json_object_get(r, "input_token_length"));
        it->task = json_string_value(json_object_get(r, "eval_name"));
        json_t *outs = json_object_get(r, "outputs");
        for (size_t j = 0; j < json_array_size(outs) && it->n < MAX_MODELS; j++) {
            json_t *o = json_array_get(outs, j), *c = json_object_get(o, "correctness");
            int mi = name_index(json_string_value(json_object_get(o, "model_name")));
            if (mi < 0)
                continue;
            it->model[it->n] = mi;
            it->c[it->n] = json_is_boolean(c) ? json_is_true(c) : json_number_value(c);
            it->o[it->n] = json_number_value(json_object_get(o, "output_token_length"));
            it->n++;
        }
    }
    *n = m;
    return v;
}

struct score {
    double brier, mae, mse, mae_by_task[8];
    size_t n, n_by_task[8];
};

static const char *tasks[8];
static int n_tasks;
static int task_index(const char *t)
{
    for (int i = 0; i < n_tasks; i++)
        if (strcmp(tasks[i], t) == 0)
            return i;
    if (n_tasks == 8)
        return 7;
    tasks[n_tasks] = t;
    return n_tasks++;
}

/* Score predictions for items given their neighbour lists. */
static void score_items(const struct lr__hist *h, enum lr__predict_mode mode,
                        const struct lr__predict_params *p, size_t k, const struct item *items,
                        size_t n, struct lr__neighbor *const *nbs, const int *nnb,
                        const int *ids, int loo, struct score *s)
{
    double q[MAX_MODELS], o[MAX_MODELS];
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < n; i++) {
        /* Leave-one-out: item i is store record i; out of its group too. */
        lr__predict_excluding(h, mode, p, nbs[i], (size_t)nnb[i], k, ids, (size_t)n_names,
                              loo ? (uint32_t)i : LR__PREDICT_NO_RECORD, q, o);
        int t = task_index(items[i].task ? items[i].task : "?");
        for (int j = 0; j < items[i].n; j++) {
            int m = items[i].model[j];
            double qq = isnan(q[m]) ? 0.0 : q[m];
            s->brier += (qq - items[i].c[j]) * (qq - items[i].c[j]);
            s->mae += fabs(o[m] - items[i].o[j]);
            s->mse += (o[m] - items[i].o[j]) * (o[m] - items[i].o[j]);
            s->mae_by_task[t] += fabs(o[m] - items[i].o[j]);
            s->n_by_task[t]++;
            s->n++;
        }
    }
    s->brier /= (double)s->n;
    s->mae /= (double)s->n;
    s->mse /= (double)s->n;
    for (int t = 0; t < n_tasks; t++)
        if (s->n_by_task[t])
            s->mae_by_task[t] /= (double)s->n_by_task[t];
}

/* Route each test item by the per-query rule; actual success and cost. */
static void route_items(const struct lr__hist *h, enum lr__predict_mode mode,
                        const struct lr__predict_params *p, size_t k, const struct item *items,
                        size_t n,
                        struct lr__neighbor *const *nbs, const int *nnb, const int *ids,
                        double req, double *success, double *cost)
{
    double q[MAX_MODELS], o[MAX_MODELS], c[MAX_MODELS];
    size_t order[MAX_MODELS];
    *success = *cost = 0;
    for (size_t i = 0; i < n; i++) {
        lr__predict(h, mode, p, nbs[i], (size_t)nnb[i], k, ids, (size_t)n_names, q, o);
        for (int m = 0; m < n_names; m++)
            c[m] = (double)items[i].input_tokens * price_in[m] + o[m] * price_out[m];
        lr__smart_order(q, c, (size_t)n_names, req, order);
        int pick = (int)order[0];
        for (int j = 0; j < items[i].n; j++) {
            if (items[i].model[j] != pick)
                continue;
            *success += items[i].c[j];
            *cost += (double)items[i].input_tokens * price_in[pick] +
                     items[i].o[j] * price_out[pick];
        }
    }
    *success /= (double)n;
}

static int load_prices(const char *path)
{
    json_error_t je;
    json_t *p = json_load_file(path, 0, &je);
    if (!p)
        return -1;
    for (int m = 0; m < n_names; m++) {
        json_t *e = json_object_get(p, names[m]);
        price_in[m] = json_number_value(json_object_get(e, "input_price_per_mtok")) * 1e-6;
        price_out[m] = json_number_value(json_object_get(e, "output_price_per_mtok")) * 1e-6;
    }
    json_decref(p);
    return 0;
}

/* The budget form on train, leave-one-out (--decide): for each single
 * model, the optimizer's assignment within that model's real train cost. */
static void decide_train(const struct lr__hist *h, const struct lr__predict_params *p, size_t k,
                         const struct item *items, size_t n, struct lr__neighbor *const *nbs,
                         const int *nnb, const int *ids)
{
    size_t mm = (size_t)n_names;
    double *qq = malloc(n * mm * sizeof(*qq)), *cc = malloc(n * mm * sizeof(*cc));
    double *rc = calloc(n * mm, sizeof(*rc)), *rq = calloc(n * mm, sizeof(*rq));
    int *as = malloc(n * sizeof(*as));
    double single[MAX_MODELS] = {0}, ssucc[MAX_MODELS] = {0}, q[MAX_MODELS], o[MAX_MODELS];
    double mean_gap = 0.0, mean_succ = 0.0;

    if (!qq || !cc || !rc || !rq || !as)
        goto out;
    for (size_t i = 0; i < n; i++) {
        lr__predict_excluding(h, LR__PREDICT_DEFAULT, p, nbs[i], (size_t)nnb[i], k, ids, mm,
                              (uint32_t)i, q, o);
        for (size_t m = 0; m < mm; m++) {
            qq[i * mm + m] = isnan(q[m]) ? 0.0 : q[m];
            cc[i * mm + m] = (double)items[i].input_tokens * price_in[m] + o[m] * price_out[m];
        }
        for (int j = 0; j < items[i].n; j++) {
            int m = items[i].model[j];
            rc[i * mm + (size_t)m] = (double)items[i].input_tokens * price_in[m] +
                                     items[i].o[j] * price_out[m];
            rq[i * mm + (size_t)m] = items[i].c[j];
            single[m] += rc[i * mm + (size_t)m];
            ssucc[m] += items[i].c[j] / (double)n;
        }
    }
    printf("\nbudget form on train, leave-one-out (budget = a single model's real cost):\n");
    printf("  %-36s %8s %8s  %8s %8s %8s\n", "single model", "cost($)", "success", "routed",
           "cost($)", "pred.q");
    for (size_t s1 = 0; s1 < mm; s1++) {
        struct lr__opt_problem pr = {.n = n, .m = mm, .quality = qq, .cost = cc,
                                     .budget = single[s1]};
        struct lr__opt_result r = {.assign = as};
        double su = 0.0, co = 0.0;
        lr__optimize_budget(&pr, &r);
        for (size_t i = 0; i < n; i++) {
            su += rq[i * mm + (size_t)as[i]];
            co += rc[i * mm + (size_t)as[i]];
        }
        su /= (double)n;
        mean_succ += su / (double)mm;
        mean_gap += (r.mean_quality - su) / (double)mm;
        printf("  %-36.36s %8.3f %8.4f  %8.4f %8.3f %8.4f\n", names[s1], single[s1], ssucc[s1],
               su, co, r.mean_quality);
    }
    printf("  mean routed success %.5f; mean pred.q - success %+.4f\n", mean_succ, mean_gap);
out:
    free(qq);
    free(cc);
    free(rc);
    free(rq);
    free(as);
}

/* --dump FILE: every prediction as TSV, one line per (record, model):
 * split, record index, model, predicted quality and output tokens by the
 * default and the aios modes (train: leave-one-out, needs --tune or
 * --decide for the train neighbour lists), for analysis outside. */
static void dump_predictions(const char *path, const struct lr__hist *h,
                             const struct lr__predict_params *p, size_t k,
                             const struct item *train, size_t ntr,
                             struct lr__neighbor *const *nb_tr, const int *n_tr,
                             const struct item *test, size_t nte,
                             struct lr__neighbor *const *nb_te, const int *n_te, const int *ids)
{
    FILE *f = fopen(path, "w");
    double q[MAX_MODELS], o[MAX_MODELS], qa[MAX_MODELS], oa[MAX_MODELS];
    if (!f)
        return;
    fprintf(f, "split\tindex\tmodel\tq_default\to_default\tq_aios\to_aios\n");
    for (int s = 0; s < 2; s++) {
        size_t n = s ? nte : (nb_tr[0] ? ntr : 0);
        for (size_t i = 0; i < n; i++) {
            struct lr__neighbor *nb = s ? nb_te[i] : nb_tr[i];
            size_t nn = (size_t)(s ? n_te[i] : n_tr[i]);
            uint32_t ex = s ? LR__PREDICT_NO_RECORD : (uint32_t)i;
            lr__predict_excluding(h, LR__PREDICT_DEFAULT, p, nb, nn, k, ids, (size_t)n_names,
                                  ex, q, o);
            lr__predict_excluding(h, LR__PREDICT_AIOS, p, nb, nn, k, ids, (size_t)n_names, ex,
                                  qa, oa);
            for (int m = 0; m < n_names; m++)
                fprintf(f, "%s\t%zu\t%s\t%.6f\t%.3f\t%.6f\t%.3f\n", s ? "test" : "train", i,
                        names[m], q[m], o[m], qa[m], oa[m]);
        }
    }
    fclose(f);
    (void)train;
    (void)test;
}

/* Cluster the history again into about c groups (0: none), from the same
 * vectors the store computed at load (bench only: it writes the store's
 * copy, which nothing else reads meanwhile). */
static void regroup(const struct lr__hist *hc, const struct item *train, size_t ntr, size_t c)
{
    struct lr__hist *h = (struct lr__hist *)hc;
    struct lr__terms t;
    struct lr__feat *feats = malloc(ntr * LR__TFIDF_MAX_FEATURES * sizeof(*feats));
    size_t *off = malloc((ntr + 1) * sizeof(*off));
    lr__terms_init(&t);
    off[0] = 0;
    for (size_t i = 0; i < ntr; i++) {
        lr__terms_count(&t, train[i].query, strlen(train[i].query));
        off[i + 1] = off[i] + lr__tfidf_vector(&t, h->df, h->df_ndocs, 0,
                                               LR__TFIDF_MAX_FEATURES, feats + off[i]);
    }
    lr__groups_free(&h->groups);
    lr__groups_build_sparse(&h->groups, h, feats, off, c);
    lr__terms_free(&t);
    free(feats);
    free(off);
}

int main(int argc, char **argv)
{
    const char *data = NULL, *prices = NULL;
    int tune = 0, decide = 0, k = LR__SMART_DEFAULT_K;
    const char *dump = NULL;
    long only_groups = -1; /* --groups: tune the other constants at this count */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tune") == 0)
            tune = 1;
        else if (strcmp(argv[i], "--decide") == 0)
            decide = 1;
        else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc)
            dump = argv[++i];
        else if (strcmp(argv[i], "--k") == 0 && i + 1 < argc)
            k = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--groups") == 0 && i + 1 < argc)
            only_groups = strtol(argv[++i], NULL, 10);
        else if (!data)
            data = argv[i];
        else
            prices = argv[i];
    }
    if (k < 1 || k >= KMAX)
        k = LR__SMART_DEFAULT_K;
    if (!data) {
        fprintf(stderr, "usage: predict_eval data.json [prices.json] [--tune] [--decide] [--k N] "
                        "[--groups C] [--dump FILE]\n");
        return 2;
    }
    json_error_t je;
    json_t *all = json_load_file(data, 0, &je);
    if (!all) {
        printf("predict_eval: skipped: cannot read %s (%s)\n", data, je.text);
        return 0;
    }
    size_t ntr, nte;
    struct item *train = load_split(all, "train", &ntr), *test = load_split(all, "test", &nte);
    if (prices && load_prices(prices) != 0) {
        fprintf(stderr, "cannot read prices %s\n", prices);
        prices = NULL;
    }

    struct lr_store *st = NULL;
    struct lr_error err;
    struct lr_import_options io = {.split = "train", .strict = 1};
    struct lr_import_report rep;
    double t0 = now();
    if (lr_store_open(":memory:", NULL, &st, &err) ||
        lr_store_import_file(st, data, &io, &rep, &err)) {
        fprintf(stderr, "store: %s\n", err.message);
        return 1;
    }
    printf("history: %zu train records imported in %.2f s; %zu test queries; %d models; k=%d\n",
           rep.imported, now() - t0, nte, n_names, k);
    if (rep.imported != ntr) {
        fprintf(stderr, "train count mismatch %zu vs %zu\n", rep.imported, ntr);
        return 1;
    }

    struct lr__store_scratch sc;
    lr__store_scratch_init(&sc);
    lr__store_rdlock(st);
    const struct lr__hist *h = lr__store_hist(st);
    int ids[MAX_MODELS];
    for (int m = 0; m < n_names; m++)
        ids[m] = lr__hist_model_id(h, names[m]);

    /* Neighbour lists, KMAX deep (room for any --k):
     * test queries against the history; train records against the rest of
     * the history (themselves left out). */
    struct lr__neighbor **nb_te = calloc(nte, sizeof(*nb_te));
    struct lr__neighbor **nb_tr = calloc(ntr, sizeof(*nb_tr));
    int *n_te = calloc(nte, sizeof(int)), *n_tr = calloc(ntr, sizeof(int));
    struct lr__predict_params defaults;
    lr__predict_params_default(&defaults);
    size_t fetch = (size_t)k;
    double t1 = now();
    for (size_t i = 0; i < nte; i++) {
        nb_te[i] = malloc((size_t)KMAX * sizeof(**nb_te));
        n_te[i] = lr__store_knn_text(st, test[i].query, strlen(test[i].query), fetch, &sc,
                                     nb_te[i]);
    }
    double per_q = (now() - t1) / (double)nte;
    for (size_t i = 0; i < nte; i++)
        n_te[i] = lr__store_knn_text(st, test[i].query, strlen(test[i].query), KMAX, &sc,
                                     nb_te[i]);
    if (tune || decide) {
        struct lr__neighbor tmp[KMAX + 1];
        for (size_t i = 0; i < ntr; i++) {
            int n = lr__store_knn_text(st, train[i].query, strlen(train[i].query), KMAX + 1,
                                       &sc, tmp);
            nb_tr[i] = malloc((size_t)KMAX * sizeof(**nb_tr));
            int m = 0;
            for (int j = 0; j < n && m < KMAX; j++)
                if (tmp[j].doc != (uint32_t)i)
                    nb_tr[i][m++] = tmp[j];
            n_tr[i] = m;
        }
    }
    printf("kNN: %.1f us per test query (embed + search of %zu neighbours, %zu records)\n",
           per_q * 1e6, fetch, h->n);

    struct lr__predict_params best = defaults;
    size_t default_groups = h->groups.n, best_groups = h->groups.n;
    if (tune) {
        /* Quality first (Brier): the group count, the local temperature and
         * weight, the groups' weight toward the store; then the length
         * weight at the best, by squared error: cost is linear in tokens,
         * so the estimate should be a mean. */
        static const size_t Cs[] = {0, 4, 8, 12, 17, 24, 34, 64};
        static const double Ts[] = {0, 0.05};
        static const double Mq[] = {4, 8, 16, 32, 64, 128, 256};
        static const double Mw[] = {0, 2, 8, 32};
        static const double Mo[] = {0, 1, 2, 4, 8, 16, 32, 64};
        struct score s;
        double best_b = 1e9, best_mse = 1e18;
        printf("\nleave-one-out on train (k=%d; the store's own grouping: %zu groups):\n", k,
               default_groups);
        score_items(h, LR__PREDICT_AIOS, &best, (size_t)k, train, ntr, nb_tr, n_tr, ids, 1, &s);
        printf("  aios                         Brier %.4f  MAE %.2f  RMSE %.2f\n", s.brier, s.mae,
               sqrt(s.mse));
        score_items(h, LR__PREDICT_DEFAULT, &defaults, (size_t)k, train, ntr, nb_tr, n_tr, ids,
                    1, &s);
        printf("  default (built in)           Brier %.4f  MAE %.2f  RMSE %.2f\n", s.brier, s.mae,
               sqrt(s.mse));
        for (size_t c = 0; c < sizeof(Cs) / sizeof(Cs[0]); c++) {
            if (only_groups >= 0 && Cs[c] != (size_t)only_groups)
                continue;
            regroup(h, train, ntr, Cs[c]);
            double cb = 1e9;
            for (size_t a = 0; a < sizeof(Ts) / sizeof(Ts[0]); a++)
                for (size_t b = 0; b < sizeof(Mq) / sizeof(Mq[0]); b++)
                    for (size_t d = 0; d < sizeof(Mw) / sizeof(Mw[0]); d++) {
                        if (h->groups.n == 0 && d > 0)
                            continue; /* m_w means nothing without groups */
                        struct lr__predict_params p = defaults;
                        p.temperature = Ts[a];
                        p.group_prior_weight = Mw[d];
                        if (h->groups.n == 0)
                            p.prior_weight = Mq[b];
                        else
                            p.group_weight = Mq[b];
                        score_items(h, LR__PREDICT_DEFAULT, &p, (size_t)k, train, ntr, nb_tr,
                                    n_tr, ids, 1, &s);
                        if (getenv("PREDICT_EVAL_GRID"))
                            printf("    C=%-3u T=%-4g m_q=%-4g m_w=%-3g Brier %.5f\n",
                                   h->groups.n, Ts[a], Mq[b], Mw[d], s.brier);
                        if (s.brier < cb)
                            cb = s.brier;
                        if (s.brier < best_b) {
                            best_b = s.brier;
                            best = p;
                            best_groups = h->groups.n;
                        }
                    }
            printf("  %3u groups (asked %2zu): best Brier %.5f\n", h->groups.n, Cs[c], cb);
        }
        regroup(h, train, ntr, best_groups);
        static const double Mwo[] = {0, 2, 8, 32, 128};
        struct lr__predict_params bl = best;
        for (size_t b = 0; b < sizeof(Mo) / sizeof(Mo[0]); b++)
            for (size_t d = 0; d < sizeof(Mwo) / sizeof(Mwo[0]); d++) {
                struct lr__predict_params p = best;
                p.length_prior_weight = Mo[b];
                p.length_group_prior_weight = Mwo[d];
                score_items(h, LR__PREDICT_DEFAULT, &p, (size_t)k, train, ntr, nb_tr, n_tr, ids,
                            1, &s);
                if (getenv("PREDICT_EVAL_GRID"))
                    printf("    m_o=%-3g m_wo=%-3g length RMSE %.3f MAE %.3f\n", Mo[b], Mwo[d],
                           sqrt(s.mse), s.mae);
                if (s.mse < best_mse) {
                    best_mse = s.mse;
                    bl = p;
                }
            }
        best = bl;
        printf("  default best: groups=%zu T=%g m_s=%g m_q=%g m_w=%g m_o=%g m_wo=%g  Brier %.4f  "
               "length RMSE %.2f\n",
               best_groups, best.temperature, best.prior_weight, best.group_weight,
               best.group_prior_weight, best.length_prior_weight,
               best.length_group_prior_weight, best_b, sqrt(best_mse));
        /* The test split is scored with the store's own grouping. */
        regroup(h, train, ntr, default_groups);
    }

    if (dump)
        dump_predictions(dump, h, &defaults, (size_t)k, train, ntr, nb_tr, n_tr, test, nte,
                         nb_te, n_te, ids);

    if (decide && prices)
        decide_train(h, &defaults, (size_t)k, train, ntr, nb_tr, n_tr, ids);

    printf("\ntest split (history = train, k=%d):\n", k);
    for (int mode = 0; mode < 2; mode++) {
        struct lr__predict_params p = tune ? best : defaults;
        enum lr__predict_mode md = mode ? LR__PREDICT_DEFAULT : LR__PREDICT_AIOS;
        struct score s;
        score_items(h, md, &p, (size_t)k, test, nte, nb_te, n_te, ids, 0, &s);
        printf("  %-8s Brier %.4f  output tokens MAE %.2f RMSE %.2f  (MAE ",
               mode ? "default" : "aios", s.brier, s.mae, sqrt(s.mse));
        for (int t = 0; t < n_tasks; t++)
            printf("%s%s %.2f", t ? ", " : "", tasks[t], s.mae_by_task[t]);
        printf(")\n");
        if (prices) {
            for (int r = 0; r < 3; r++) {
                double req = r == 0 ? 0.5 : r == 1 ? 0.7 : 0.9, succ, cost;
                route_items(h, md, &p, (size_t)k, test, nte, nb_te, n_te, ids, req, &succ,
                            &cost);
                printf("           requirement %.1f: success %.3f, cost $%.2f\n", req, succ,
                       cost);
            }
        }
    }
    lr__store_unlock(st);
    lr__store_scratch_free(&sc);
    for (size_t i = 0; i < nte; i++)
        free(nb_te[i]);
    for (size_t i = 0; i < ntr; i++)
        free(nb_tr[i]);
    free(nb_te);
    free(nb_tr);
    free(n_te);
    free(n_tr);
    free(train);
    free(test);
    lr_store_free(st);
    json_decref(all);
    return 0;
}
