/* smart_bench.c -- one smart routing decision against a large history.
 *
 *   smart_bench [--records N] [--queries Q] [--dir DIR] [--seed S]
 *
 * Synthesises N history records of realistic length (a few task templates,
 * like few-shot prompts, followed by a question of words drawn with Zipf
 * frequencies from a fixed vocabulary; lengths spread like the development
 * data's, median about 1.4 KB), writes them as JSONL into DIR, imports them
 * into a store file in DIR (timed), then times Q decisions (embed, exact kNN with k=16,
 * predict 11 models, price, rank) on one thread and prints p50/p90/p99,
 * the import time and the peak RSS. DIR also receives corpus.txt and
 * queries.txt (one text per line) for the scikit-learn anchor in
 * smart_bench.sh.
 *
 * Single-threaded.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "smart.h"
#include "store.h"

#define VOCAB 30000
#define N_MODELS 11
#define N_TASKS 3

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static double uniform(void)
{
    return (double)(next_u64() >> 11) / 9007199254740992.0;
}

static char *words[VOCAB];
static double zipf_cdf[VOCAB];

static void make_vocab(void)
{
    static const char letters[] = "etaoinshrdlcumwfgypbvkjxqz";
    double z = 0;
    for (int i = 0; i < VOCAB; i++) {
        int len = 2 + (int)(uniform() * uniform() * 10);
        words[i] = malloc((size_t)len + 1);
        for (int j = 0; j < len; j++)
            words[i][j] = letters[(int)(uniform() * uniform() * 26)];
        words[i][len] = 0;
        z += 1.0 / pow(i + 1, 1.07);
        zipf_cdf[i] = z;
    }
    for (int i = 0; i < VOCAB; i++)
        zipf_cdf[i] /= z;
}

static const char *zipf_word(void)
{
    double u = uniform();
    int lo = 0, hi = VOCAB - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return words[lo];
}

/* A text into buf (at most cap-1 bytes): the task's template, then a
 * question; total length log-normal around 1.4 KB, within [40, 2600]. */
static size_t make_text(char *buf, size_t cap, int task, const char *const *templates)
{
    double len = exp(log(1400.0) + 0.6 * (uniform() + uniform() + uniform() - 1.5) * 1.4);
    size_t target = len < 40 ? 40 : len > 2600 ? 2600 : (size_t)len, n = 0;
    n += (size_t)snprintf(buf, cap, "%s", templates[task]);
    if (n > target / 2)
        n = target / 2; /* the template never fills the whole text */
    buf[n] = 0;
    while (n < target && n + 16 < cap) {
        const char *w = zipf_word();
        size_t wl = strlen(w);
        if (n + wl + 2 >= cap)
            break;
        buf[n++] = ' ';
        memcpy(buf + n, w, wl);
        n += wl;
    }
    buf[n] = 0;
    return n;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t n_records = 100000, n_queries = 2000;
    const char *dir = "/tmp";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--records") == 0)
            n_records = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--queries") == 0)
            n_queries = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--seed") == 0)
            rng = strtoull(argv[i + 1], NULL, 10) | 1;
    }
    make_vocab();
    /* Task templates: fixed few-shot-like prefixes of different lengths. */
    static char tmpl_buf[N_TASKS][1200];
    const char *templates[N_TASKS];
    for (int t = 0; t < N_TASKS; t++) {
        size_t n = 0, want = t == 0 ? 1000 : t == 1 ? 400 : 0;
        tmpl_buf[t][0] = 0;
        while (n < want) {
            const char *w = zipf_word();
            n += (size_t)snprintf(tmpl_buf[t] + n, sizeof(tmpl_buf[t]) - n, "%s ", w);
        }
        templates[t] = tmpl_buf[t];
    }
    static const char *const models[N_MODELS] = {"m0", "m1", "m2", "m3", "m4", "m5",
                                                  "m6", "m7", "m8", "m9", "m10"};
    char path[512], cpath[512], qpath[512], text[3000];
    snprintf(path, sizeof(path), "%s/smart_bench_history.jsonl", dir);
    snprintf(cpath, sizeof(cpath), "%s/corpus.txt", dir);
    snprintf(qpath, sizeof(qpath), "%s/queries.txt", dir);
    FILE *f = fopen(path, "w"), *fc = fopen(cpath, "w"), *fq = fopen(qpath, "w");
    if (!f || !fc || !fq) {
        fprintf(stderr, "cannot write into %s\n", dir);
        return 1;
    }
    size_t total_bytes = 0;
    for (size_t i = 0; i < n_records; i++) {
        int task = (int)(uniform() * N_TASKS);
        size_t n = make_text(text, sizeof(text), task, templates);
        total_bytes += n;
        fprintf(fc, "%s\n", text);
        fprintf(f, "{\"query\": \"%s\", \"input_token_length\": %zu, \"outputs\": [", text,
                n / 4 + 1);
        for (int m = 0; m < N_MODELS; m++) {
            double p = 0.3 + 0.06 * m - 0.1 * task;
            fprintf(f, "%s{\"model_name\": \"%s\", \"correctness\": %s, "
                       "\"output_token_length\": %d}",
                    m ? ", " : "", models[m], uniform() < p ? "true" : "false",
                    1 + (int)(uniform() * (task == 2 ? 300 : 3)));
        }
        fprintf(f, "]}\n");
    }
    char **queries = malloc(n_queries * sizeof(*queries));
    for (size_t i = 0; i < n_queries; i++) {
        size_t n = make_text(text, sizeof(text), (int)(uniform() * N_TASKS), templates);
        queries[i] = malloc(n + 1);
        memcpy(queries[i], text, n + 1);
        fprintf(fq, "%s\n", text);
    }
    fclose(f);
    fclose(fc);
    fclose(fq);

    /* A store file, as a gateway would keep it (not ":memory:", whose pages
     * would count in the RSS as well). */
    char dbpath[512];
    snprintf(dbpath, sizeof(dbpath), "%s/smart_bench_history.db", dir);
    remove(dbpath);
    struct lr_store *st = NULL;
    struct lr_error err;
    struct lr_import_report rep;
    double t0 = now();
    if (lr_store_open(dbpath, NULL, &st, &err) ||
        lr_store_import_file(st, path, NULL, &rep, &err)) {
        fprintf(stderr, "store: %s\n", err.message);
        return 1;
    }
    double import_s = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    struct lr__smart *sm = NULL;
    if (lr__smart_new(st, "default", 16, &sm, &err)) {
        fprintf(stderr, "smart: %s\n", err.message);
        return 1;
    }
    struct lr__smart_model cands[N_MODELS];
    for (int m = 0; m < N_MODELS; m++) {
        cands[m].index = m;
        cands[m].name = models[m];
        cands[m].price_in = 1e-7 * (m + 1);
        cands[m].price_out = 2e-7 * (m + 1);
    }
    double *lat = malloc(n_queries * sizeof(*lat));
    struct lr_candidate rank[N_MODELS];
    size_t warm = n_queries < 50 ? n_queries : 50;
    for (size_t i = 0; i < warm; i++) {
        struct lr__smart_query q = {queries[i], strlen(queries[i]), NULL, 0, 300, 0.7};
        lr__smart_rank_models(sm, &q, cands, N_MODELS, rank, &err);
    }
    for (size_t i = 0; i < n_queries; i++) {
        struct lr__smart_query q = {queries[i], strlen(queries[i]), NULL, 0, 300, 0.7};
        double a = now();
        int rc = lr__smart_rank_models(sm, &q, cands, N_MODELS, rank, &err);
        lat[i] = now() - a;
        if (rc) {
            fprintf(stderr, "rank: %s\n", err.message);
            return 1;
        }
    }
    /* The embedding alone, to split the decision's time. */
    double *emb = malloc(n_queries * sizeof(*emb));
    struct lr__store_scratch sc;
    lr__store_scratch_init(&sc);
    lr__store_rdlock(st);
    for (size_t i = 0; i < n_queries; i++) {
        double a = now();
        lr__store_embed_text(st, queries[i], strlen(queries[i]), &sc);
        emb[i] = now() - a;
    }
    lr__store_unlock(st);
    lr__store_scratch_free(&sc);
    qsort(emb, n_queries, sizeof(*emb), cmp_double);
    qsort(lat, n_queries, sizeof(*lat), cmp_double);
    printf("records %zu (mean %.0f bytes), queries %zu, k=16, 11 models\n", rep.imported,
           (double)total_bytes / (double)n_records, n_queries);
    printf("import: %.2f s (%.1f us per record); peak RSS %.1f MB\n", import_s,
           import_s / (double)n_records * 1e6, (double)ru.ru_maxrss / 1024.0);
    printf("decision latency: p50 %.1f us, p90 %.1f us, p99 %.1f us\n",
           lat[n_queries / 2] * 1e6, lat[n_queries * 9 / 10] * 1e6,
           lat[n_queries * 99 / 100] * 1e6);
    printf("  of which embedding the query: p50 %.1f us\n", emb[n_queries / 2] * 1e6);
    printf("C_P50_US=%.2f\n", lat[n_queries / 2] * 1e6);
    free(emb);
    lr__smart_free(sm);
    lr_store_free(st);
    for (size_t i = 0; i < n_queries; i++)
        free(queries[i]);
    free(queries);
    free(lat);
    for (int i = 0; i < VOCAB; i++)
        free(words[i]);
    return 0;
}
