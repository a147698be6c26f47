/* predict_eval.c -- how well the predictor modes predict, on real data.
 *
 *   predict_eval [data.json] [prices.json] [--tune] [--decide] [--ebayes] [--k N]
 *                [--groups C] [--dump FILE]
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
 *            of them at each single model's real cost on train and at half
 *            of the dearest model's, scored with
 *            the real outcomes and prices: the realised success against the
 *            optimizer's predicted mean quality shows the winner's curse, and
 *            a change of predictor can be judged by its decisions on train.
 *   --ebayes with prices: an experiment, a local weight per (group, model)
 *            fitted by empirical Bayes, cross-fitted on train against the
 *            built-in form (see ebayes_eval).
 *   --dump   every prediction of both modes as TSV (train leave-one-out
 *            when --tune or --decide made the train neighbour lists; test
 *            from all of train), for bench/predict_compare.py.
 * It first prints how many train records the groups' fit left in no
 * group (their vectors share no feature with any centroid), and how many
 * test queries would join none if appended to the store.
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

/* Each item's real correctness rq and real cost rc per model (n x
 * n_names, zero where the item has no outcome for the model; the caller
 * zeroes them). */
static void real_outcomes(const struct item *items, size_t n, double *rq, double *rc)
{
    size_t mm = (size_t)n_names;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < items[i].n; j++) {
            size_t m = (size_t)items[i].model[j];
            rq[i * mm + m] = items[i].c[j];
            rc[i * mm + m] = (double)items[i].input_tokens * price_in[m] +
                             items[i].o[j] * price_out[m];
        }
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
    }
    real_outcomes(items, n, rq, rc);
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < mm; m++) {
            single[m] += rc[i * mm + m];
            ssucc[m] += rq[i * mm + m] / (double)n;
        }
    printf("\nbudget form on train, leave-one-out (budget = a single model's real cost):\n");
    printf("  %-36s %8s %8s  %8s %8s %8s\n", "single model", "cost($)", "success", "routed",
           "cost($)", "pred.q");
    /* Each single model's cost, then half of the dearest one's (the issue's
     * "half of GPT-4's cost" on the development data). */
    size_t dearest = 0;
    for (size_t s1 = 1; s1 < mm; s1++)
        if (single[s1] > single[dearest])
            dearest = s1;
    for (size_t s1 = 0; s1 <= mm; s1++) {
        double budget = s1 < mm ? single[s1] : single[dearest] / 2.0;
        struct lr__opt_problem pr = {.n = n, .m = mm, .quality = qq, .cost = cc,
                                     .budget = budget};
        struct lr__opt_result r = {.assign = as};
        double su = 0.0, co = 0.0;
        lr__optimize_budget(&pr, &r);
        for (size_t i = 0; i < n; i++) {
            su += rq[i * mm + (size_t)as[i]];
            co += rc[i * mm + (size_t)as[i]];
        }
        su /= (double)n;
        if (s1 == mm) {
            printf("  %-36.36s %8.3f %8s  %8.4f %8.3f %8.4f\n", "half of the dearest's cost",
                   budget, "", su, co, r.mean_quality);
            continue;
        }
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

/* --ebayes: an experiment, not the product's predictor. An empirical-Bayes
 * local weight per (group, model) in place of the single k / (k + m_q):
 *   q = G + beta (L - G),  beta = sum_g s_g beta_gm over the query's groups,
 * with L the k neighbours' plain mean correctness for the model, G the
 * built-in group-mixture prior (the default form with m_q -> infinity),
 * and beta_gm the least-squares slope of (c - G) on (L - G) over the train
 * records of group g (own group, leave-one-out L and G), through the origin
 * or centred (a covariance over a variance), shrunk toward the model's
 * slope over all groups with n0 pseudo-records of its mean (L - G)^2, then
 * clipped to [0, 1]. The default form is beta = n_L / (n_L + m_q).
 * Judged on train by two-fold cross-fitting over records (slopes from one
 * half's leave-one-out neighbourhoods, predictions for the other half;
 * each record's prediction averaged over EB_SPLITS random halvings):
 * Brier, and the budget form's decisions as --decide makes them, each
 * against the built-in default on the same records with a paired z over
 * records. Then, for reporting only, the test split with slopes from all
 * of train: Brier and the budget form at EB_TEST_BUDGET. */
#define EB_TEST_BUDGET 2.36
#define EB_SPLITS 5

/* Per record (n of them), per model (mm): L, its count, the mixture prior
 * G, the default prediction and its output tokens, and the query's groups. */
struct eb_set {
    size_t n, mm, k;
    double *L, *nL, *G, *qd, *od;
    uint32_t *mixg; /* n x k groups (UINT32_MAX: unused) */
    double *mixs;   /* n x k shares */
};

static void eb_set_free(struct eb_set *s)
{
    free(s->L);
    free(s->nL);
    free(s->G);
    free(s->qd);
    free(s->od);
    free(s->mixg);
    free(s->mixs);
}

static int eb_set_build(struct eb_set *s, const struct lr__hist *h,
                        const struct lr__predict_params *p, size_t k, size_t n,
                        struct lr__neighbor *const *nbs, const int *nnb, const int *ids, int loo)
{
    size_t mm = (size_t)n_names;
    struct lr__predict_params pg = *p;
    double q[MAX_MODELS], o[MAX_MODELS];
    pg.group_weight = 1e12; /* the prior alone */
    s->n = n;
    s->mm = mm;
    s->k = k;
    s->L = calloc(n * mm, sizeof(double));
    s->nL = calloc(n * mm, sizeof(double));
    s->G = calloc(n * mm, sizeof(double));
    s->qd = calloc(n * mm, sizeof(double));
    s->od = calloc(n * mm, sizeof(double));
    s->mixg = malloc(n * k * sizeof(uint32_t));
    s->mixs = calloc(n * k, sizeof(double));
    if (!s->L || !s->nL || !s->G || !s->qd || !s->od || !s->mixg || !s->mixs)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t self = loo ? (uint32_t)i : LR__PREDICT_NO_RECORD;
        size_t nl = (size_t)nnb[i] < k ? (size_t)nnb[i] : k;
        lr__predict_excluding(h, LR__PREDICT_DEFAULT, p, nbs[i], (size_t)nnb[i], k, ids, mm,
                              self, q, o);
        for (size_t m = 0; m < mm; m++) {
            s->qd[i * mm + m] = isnan(q[m]) ? 0.0 : q[m];
            s->od[i * mm + m] = o[m];
        }
        lr__predict_excluding(h, LR__PREDICT_DEFAULT, &pg, nbs[i], (size_t)nnb[i], k, ids, mm,
                              self, q, o);
        for (size_t m = 0; m < mm; m++)
            s->G[i * mm + m] = isnan(q[m]) ? 0.0 : q[m];
        for (size_t x = 0; x < k; x++)
            s->mixg[i * k + x] = UINT32_MAX;
        for (size_t a = 0; a < nl; a++) {
            size_t no;
            const struct lr__outcome *oc = lr__hist_outcomes(h, nbs[i][a].doc, &no);
            for (size_t y = 0; y < no; y++)
                for (size_t m = 0; m < mm; m++)
                    if (ids[m] == (int)oc[y].model) {
                        s->L[i * mm + m] += oc[y].correctness;
                        s->nL[i * mm + m] += 1.0;
                    }
            if (h->groups.n == 0)
                continue;
            uint32_t g = h->groups.of[nbs[i][a].doc];
            size_t x = 0;
            if (g == LR__GROUPS_NONE)
                continue; /* the store's mean: no slope of its own */
            while (x < k && s->mixg[i * k + x] != UINT32_MAX && s->mixg[i * k + x] != g)
                x++;
            s->mixg[i * k + x] = g;
            s->mixs[i * k + x] += 1.0 / (double)nl;
        }
        for (size_t m = 0; m < mm; m++)
            if (s->nL[i * mm + m] > 0.0)
                s->L[i * mm + m] /= s->nL[i * mm + m];
    }
    return 0;
}

/* Slopes beta[g * mm + m] from the train records i with use[i] (NULL: all),
 * each in its own group. centred: covariance over variance; else through
 * the origin. n0: pseudo-records of the model's all-group slope (>= 1e9:
 * that slope alone). */
static void eb_betas(const struct lr__hist *h, const struct eb_set *s, const struct item *items,
                     const int *use, int centred, double n0, double *beta, double *cnt_out)
{
    size_t mm = s->mm, ng = h->groups.n ? h->groups.n : 1;
    double *S = calloc(ng * mm * 5, sizeof(double)); /* n, x, y, xx, xy */
    double T[MAX_MODELS][5];
    memset(T, 0, sizeof(T));
    for (size_t i = 0; i < s->n; i++) {
        if (use && !use[i])
            continue;
        size_t g = h->groups.n ? h->groups.of[i] : 0;
        if (g == LR__GROUPS_NONE)
            continue;
        for (int j = 0; j < items[i].n; j++) {
            size_t m = (size_t)items[i].model[j];
            if (s->nL[i * mm + m] <= 0.0)
                continue;
            double x = s->L[i * mm + m] - s->G[i * mm + m];
            double y = items[i].c[j] - s->G[i * mm + m];
            double *a = &S[(g * mm + m) * 5], v[5] = {1.0, x, y, x * x, x * y};
            for (int t = 0; t < 5; t++) {
                a[t] += v[t];
                T[m][t] += v[t];
            }
        }
    }
    for (size_t m = 0; m < mm; m++) {
        double *t = T[m];
        double sxx = t[3], sxy = t[4];
        if (centred && t[0] > 0.0) {
            sxx -= t[1] * t[1] / t[0];
            sxy -= t[1] * t[2] / t[0];
        }
        double b0 = sxx > 0.0 ? sxy / sxx : 0.0;
        b0 = b0 < 0.0 ? 0.0 : b0 > 1.0 ? 1.0 : b0;
        double xx = t[0] > 0.0 ? sxx / t[0] : 0.0;
        for (size_t g = 0; g < ng; g++) {
            double *a = &S[(g * mm + m) * 5];
            double gxx = a[3], gxy = a[4];
            if (centred && a[0] > 0.0) {
                gxx -= a[1] * a[1] / a[0];
                gxy -= a[1] * a[2] / a[0];
            }
            double d = gxx + n0 * xx;
            double b = d > 0.0 ? (gxy + n0 * xx * b0) / d : b0;
            if (n0 >= 1e9)
                b = b0;
            beta[g * mm + m] = b < 0.0 ? 0.0 : b > 1.0 ? 1.0 : b;
            if (cnt_out)
                cnt_out[g * mm + m] = a[0];
        }
    }
    free(S);
}

/* Predictions for records with pick[i] (NULL: all) from slopes beta. */
static void eb_predict(const struct lr__hist *h, const struct eb_set *s, const double *beta,
                       const int *pick, double *q)
{
    size_t mm = s->mm;
    for (size_t i = 0; i < s->n; i++) {
        if (pick && !pick[i])
            continue;
        for (size_t m = 0; m < mm; m++) {
            double b = 0.0;
            for (size_t x = 0; x < s->k && s->mixg[i * s->k + x] != UINT32_MAX; x++)
                b += s->mixs[i * s->k + x] * beta[(size_t)s->mixg[i * s->k + x] * mm + m];
            if (h->groups.n == 0)
                b = beta[m];
            double G = s->G[i * mm + m];
            q[i * mm + m] = s->nL[i * mm + m] > 0.0 ? G + b * (s->L[i * mm + m] - G) : G;
        }
    }
}

/* Per-record squared error summed over its outcomes; returns the Brier. */
static double eb_brier(const struct eb_set *s, const struct item *items, const double *q,
                       double *per_rec)
{
    double sum = 0.0, cnt = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        double e = 0.0;
        for (int j = 0; j < items[i].n; j++) {
            double d = q[i * s->mm + (size_t)items[i].model[j]] - items[i].c[j];
            e += d * d;
            cnt += 1.0;
        }
        per_rec[i] = e;
        sum += e;
    }
    return sum / cnt;
}

/* The budget form over all records at each budget: mean realised success,
 * per-record success averaged over the budgets, mean realised cost. */
static double eb_decide(const struct eb_set *s, const struct item *items, const double *q,
                        const double *budgets, size_t nb, double *per_rec, double *cost_out)
{
    size_t n = s->n, mm = s->mm;
    double *cc = malloc(n * mm * sizeof(double)), *rq = calloc(n * mm, sizeof(double));
    double *rc = calloc(n * mm, sizeof(double));
    int *as = malloc(n * sizeof(int));
    double succ = 0.0, cost = 0.0;
    for (size_t i = 0; i < n; i++)
        per_rec[i] = 0.0;
    if (!cc || !rq || !rc || !as) {
        succ = NAN;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < mm; m++)
            cc[i * mm + m] = (double)items[i].input_tokens * price_in[m] +
                             s->od[i * mm + m] * price_out[m];
    real_outcomes(items, n, rq, rc);
    for (size_t b = 0; b < nb; b++) {
        struct lr__opt_problem pr = {.n = n, .m = mm, .quality = q, .cost = cc,
                                     .budget = budgets[b]};
        struct lr__opt_result r = {.assign = as};
        lr__optimize_budget(&pr, &r);
        for (size_t i = 0; i < n; i++) {
            double v = rq[i * mm + (size_t)as[i]];
            per_rec[i] += v / (double)nb;
            succ += v / (double)n / (double)nb;
            cost += rc[i * mm + (size_t)as[i]] / (double)nb;
        }
    }
out:
    if (cost_out)
        *cost_out = cost;
    free(cc);
    free(rq);
    free(rc);
    free(as);
    return succ;
}

/* Paired z of mean(a - b) over n records. */
static double paired_z(const double *a, const double *b, size_t n)
{
    double s = 0.0, ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        s += d;
        ss += d * d;
    }
    double mean = s / (double)n, var = (ss - s * mean) / (double)(n - 1);
    return var > 0.0 ? mean / sqrt(var / (double)n) : 0.0;
}

static void ebayes_eval(const struct lr__hist *h, const struct lr__predict_params *p, size_t k,
                        const struct item *train, size_t ntr, struct lr__neighbor *const *nb_tr,
                        const int *n_tr, const struct item *test, size_t nte,
                        struct lr__neighbor *const *nb_te, const int *n_te, const int *ids)
{
    size_t mm = (size_t)n_names, ng = h->groups.n ? h->groups.n : 1;
    struct eb_set tr = {0}, te = {0};
    static const double N0[] = {0, 4, 16, 64, 256, 1e9};
    double budgets[MAX_MODELS] = {0};
    double *beta = malloc(ng * mm * sizeof(double)), *cnt = malloc(ng * mm * sizeof(double));
    double *q = malloc(ntr * mm * sizeof(double));
    double *bd = malloc(ntr * sizeof(double)), *be = malloc(ntr * sizeof(double));
    double *sd = malloc(ntr * sizeof(double)), *se = malloc(ntr * sizeof(double));
    double *qsum = malloc(ntr * mm * sizeof(double));
    int *half = malloc(ntr * sizeof(int)), *pick = malloc(ntr * sizeof(int));
    int *use = malloc(ntr * sizeof(int));
    if (!beta || !cnt || !q || !qsum || !bd || !be || !sd || !se || !half || !pick || !use ||
        eb_set_build(&tr, h, p, k, ntr, nb_tr, n_tr, ids, 1) ||
        eb_set_build(&te, h, p, k, nte, nb_te, n_te, ids, 0))
        goto out;

    /* Sanity: beta = n_L / (n_L + m_q) must give the default back. */
    double dmax = 0.0;
    for (size_t i = 0; i < ntr; i++)
        for (size_t m = 0; m < mm; m++) {
            double nl = tr.nL[i * mm + m], G = tr.G[i * mm + m];
            double v = G + nl / (nl + p->group_weight) * (tr.L[i * mm + m] - G);
            if (fabs(v - tr.qd[i * mm + m]) > dmax)
                dmax = fabs(v - tr.qd[i * mm + m]);
        }
    for (size_t i = 0; i < ntr; i++)
        for (int j = 0; j < train[i].n; j++)
            budgets[train[i].model[j]] += (double)train[i].input_tokens *
                                              price_in[train[i].model[j]] +
                                          train[i].o[j] * price_out[train[i].model[j]];
    printf("\nempirical-Bayes local weight per (group, model), k=%zu, %u groups "
           "(default form reproduced to %.1e):\n", k, h->groups.n, dmax);
    double b_def = eb_brier(&tr, train, tr.qd, bd);
    double s_def = eb_decide(&tr, train, tr.qd, budgets, mm, sd, NULL);
    printf("  train LOO default               Brier %.5f  decisions %.5f\n", b_def, s_def);

    /* Cross-fitting over EB_SPLITS random halvings; each record's
     * prediction is the mean of its out-of-half predictions. */
    printf("  (z: paired over records, EB minus default; Brier: < 0 is better)\n");
    for (int centred = 0; centred < 2; centred++)
        for (size_t v = 0; v < sizeof(N0) / sizeof(N0[0]); v++) {
            bench_rng = 0x9E3779B97F4A7C15ull;
            memset(qsum, 0, ntr * mm * sizeof(double));
            for (int r = 0; r < EB_SPLITS; r++) {
                for (size_t i = 0; i < ntr; i++)
                    half[i] = (int)(next_u64() >> 63);
                for (int f = 0; f < 2; f++) {
                    for (size_t i = 0; i < ntr; i++) {
                        pick[i] = half[i] != f;
                        use[i] = half[i] == f;
                    }
                    eb_betas(h, &tr, train, use, centred, N0[v], beta, NULL);
                    eb_predict(h, &tr, beta, pick, q);
                }
                for (size_t x = 0; x < ntr * mm; x++)
                    qsum[x] += q[x] / EB_SPLITS;
            }
            memcpy(q, qsum, ntr * mm * sizeof(double));
            double b = eb_brier(&tr, train, q, be);
            double s = eb_decide(&tr, train, q, budgets, mm, se, NULL);
            printf("  cross-fit %-8s n0=%-5g       Brier %.5f (z %+.2f)  decisions %.5f "
                   "(z %+.2f)\n", centred ? "centred" : "origin", N0[v], b,
                   paired_z(be, bd, ntr), s, paired_z(se, sd, ntr));
        }

    /* The slopes from all of train (through the origin, unpooled and
     * n0 = 16), by group with its commonest task. */
    double *beta16 = malloc(ng * mm * sizeof(double));
    eb_betas(h, &tr, train, NULL, 0, 0, beta, cnt);
    eb_betas(h, &tr, train, NULL, 0, 16, beta16, NULL);
    printf("  slopes from all of train (origin; unpooled / n0=16), per group:\n");
    printf("    %-5s %5s %-16s", "group", "recs", "task (share)");
    for (size_t m = 0; m < mm; m++) {
        const char *slash = strchr(names[m], '/');
        printf(" %9.9s", slash ? slash + 1 : names[m]);
    }
    printf("\n");
    double tb[8][MAX_MODELS] = {{0}}, tn[8][MAX_MODELS] = {{0}};
    for (size_t g = 0; g < ng; g++) {
        int tc[8] = {0}, best = 0, tot = 0;
        for (size_t i = 0; i < ntr; i++)
            if (!h->groups.n || h->groups.of[i] == g) {
                tc[task_index(train[i].task ? train[i].task : "?")]++;
                tot++;
            }
        for (int t = 1; t < n_tasks; t++)
            if (tc[t] > tc[best])
                best = t;
        printf("    %-5zu %5d %-12.12s %3.0f%%", g, tot, tasks[best],
               tot ? 100.0 * tc[best] / tot : 0.0);
        for (size_t m = 0; m < mm; m++) {
            printf(" %4.2f/%4.2f", beta[g * mm + m], beta16[g * mm + m]);
            tb[best][m] += cnt[g * mm + m] * beta[g * mm + m];
            tn[best][m] += cnt[g * mm + m];
        }
        printf("\n");
    }
    printf("  per task (groups by their commonest task, weighted by records):\n");
    for (int t = 0; t < n_tasks; t++) {
        printf("    %-20s", tasks[t]);
        for (size_t m = 0; m < mm; m++)
            printf(" %4.2f", tn[t][m] > 0 ? tb[t][m] / tn[t][m] : NAN);
        printf("\n");
    }
    eb_betas(h, &tr, train, NULL, 0, 1e9, beta, NULL);
    printf("  per model over all groups:  ");
    for (size_t m = 0; m < mm; m++)
        printf(" %4.2f", beta[m]);
    printf("\n");

    /* Test, for reporting only: slopes from all of train. */
    double *qt = malloc(nte * mm * sizeof(double)), *a1 = malloc(nte * sizeof(double));
    double *a2 = malloc(nte * sizeof(double)), *d1 = malloc(nte * sizeof(double));
    double *d2 = malloc(nte * sizeof(double)), tb2 = EB_TEST_BUDGET, c1, c2;
    double tbd = eb_brier(&te, test, te.qd, a1);
    double tsd = eb_decide(&te, test, te.qd, &tb2, 1, d1, &c1);
    printf("  test default                    Brier %.5f  budget $%.2f: success %.4f cost $%.3f\n",
           tbd, tb2, tsd, c1);
    for (int centred = 0; centred < 2; centred++)
        for (size_t v = 0; v < sizeof(N0) / sizeof(N0[0]); v++) {
            eb_betas(h, &tr, train, NULL, centred, N0[v], beta, NULL);
            eb_predict(h, &te, beta, NULL, qt);
            double b = eb_brier(&te, test, qt, a2);
            double s = eb_decide(&te, test, qt, &tb2, 1, d2, &c2);
            printf("  test %-8s n0=%-5g             Brier %.5f (z %+.2f)  success %.4f "
                   "(z %+.2f) cost $%.3f\n", centred ? "centred" : "origin", N0[v], b,
                   paired_z(a2, a1, nte), s, paired_z(d2, d1, nte), c2);
        }
    free(qt);
    free(a1);
    free(a2);
    free(d1);
    free(d2);
    free(beta16);
out:
    eb_set_free(&tr);
    eb_set_free(&te);
    free(beta);
    free(cnt);
    free(q);
    free(bd);
    free(be);
    free(sd);
    free(se);
    free(half);
    free(pick);
    free(use);
    free(qsum);
}

/* --dump FILE: every prediction as TSV, one line per (record, model):
 * split, record index, model, predicted quality and output tokens by the
 * default and the aios modes (train: leave-one-out, needs --tune or
 * --decide for the train neighbour lists), for analysis outside. */
static void dump_predictions(const char *path, const struct lr__hist *h,
                             const struct lr__predict_params *p, size_t k, size_t ntr,
                             struct lr__neighbor *const *nb_tr, const int *n_tr, size_t nte,
                             struct lr__neighbor *const *nb_te, const int *n_te, const int *ids)
{
    FILE *f = fopen(path, "w");
    double q[MAX_MODELS], o[MAX_MODELS], qa[MAX_MODELS], oa[MAX_MODELS];
    if (!f)
        return;
    fprintf(f, "split\tindex\tmodel\tq_default\to_default\tq_aios\to_aios\n");
    for (int s = 0; s < 2; s++) {
        size_t n = s ? nte : (ntr && nb_tr[0] ? ntr : 0);
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
    lr__groups_build_sparse(&h->groups, h, feats, off, c, 1);
    lr__terms_free(&t);
    free(feats);
    free(off);
}

/* How many train records the fit left in no group (their vectors share no
 * feature with any centroid), and how many test queries would join none if
 * appended now (weighed as an append weighs them). */
static void print_ungrouped(const struct lr__hist *h, const struct item *test, size_t nte)
{
    size_t fit = 0, appended = 0;
    struct lr__terms t;
    struct lr__feat feats[LR__TFIDF_MAX_FEATURES];
    if (h->groups.n == 0)
        return;
    for (size_t i = 0; i < h->n; i++)
        fit += h->groups.of[i] == LR__GROUPS_NONE;
    lr__terms_init(&t);
    for (size_t i = 0; i < nte; i++) {
        if (lr__terms_count(&t, test[i].query, strlen(test[i].query)) != 0)
            break;
        size_t nf = lr__tfidf_vector(&t, h->df, h->df_ndocs, 1, LR__TFIDF_MAX_FEATURES, feats);
        appended += lr__groups_nearest_sparse(&h->groups, feats, nf) == LR__GROUPS_NONE;
    }
    lr__terms_free(&t);
    printf("groups: %u; in no group: %zu of %zu train records at the fit, %zu of %zu test "
           "queries if appended\n", h->groups.n, fit, h->n, appended, nte);
}

int main(int argc, char **argv)
{
    const char *data = NULL, *prices = NULL;
    int tune = 0, decide = 0, ebayes = 0, k = LR__SMART_DEFAULT_K;
    const char *dump = NULL;
    long only_groups = -1; /* --groups: tune the other constants at this count */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tune") == 0)
            tune = 1;
        else if (strcmp(argv[i], "--decide") == 0)
            decide = 1;
        else if (strcmp(argv[i], "--ebayes") == 0)
            ebayes = 1;
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
        fprintf(stderr, "usage: predict_eval data.json [prices.json] [--tune] [--decide] "
                        "[--ebayes] [--k N] [--groups C] [--dump FILE]\n");
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
    if (tune || decide || ebayes) {
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
    print_ungrouped(h, test, nte);

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
        dump_predictions(dump, h, &defaults, (size_t)k, ntr, nb_tr, n_tr, nte, nb_te, n_te, ids);

    if (decide && prices)
        decide_train(h, &defaults, (size_t)k, train, ntr, nb_tr, n_tr, ids);

    if (ebayes && prices)
        ebayes_eval(h, &defaults, (size_t)k, train, ntr, nb_tr, n_tr, test, nte, nb_te, n_te,
                    ids);

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
