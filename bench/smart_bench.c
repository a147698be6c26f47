/* smart_bench.c -- one smart routing decision against a large history.
 *
 *   smart_bench [--corpus zipf|fewshot] [--records N] [--queries Q] [--runs R]
 *               [--dir DIR] [--seed S] [--reuse] [--export]
 *   smart_bench --data FILE.json [--runs R] [--dir DIR]
 *
 * Synthesises N history records of realistic length, writes them as JSONL
 * into DIR, imports them into a store file in DIR (timed; --reuse opens the
 * store a previous run left there instead), then times Q decisions (embed,
 * exact kNN with k=16, predict 11 models, price, rank) on one thread, R
 * times over, and prints the median over runs of p50/p90/p99 (wall clock
 * and CPU time), the embedding's and the kNN's share, the import time and
 * the peak RSS. Two corpora:
 *   zipf     a few task templates, then a question of words drawn with Zipf
 *            frequencies from a fixed vocabulary; lengths spread like the
 *            development data's, median about 1.4 KB;
 *   fewshot  shaped like the development data: most queries of a task
 *            start with the same five worked examples (see
 *            make_fewshot_text), which gives posting lists holding nearly
 *            half the history.
 * DIR also receives corpus.txt and queries.txt (one text per line). With
 * --export, DIR receives the vectors the kNN searches, exactly as the
 * index holds them (every record's tfidf-v1 vector read back from the
 * posting lists, each query's as the search gets it) and the k=16
 * neighbours llmroute's search returns for each query, for the
 * scikit-learn anchor in smart_bench.sh (smart_anchor.py), which runs the
 * same search over the same vectors and compares the neighbours:
 *   vec_meta.txt                    "ndocs nqueries dim k"
 *   docs_indptr.u64, q_indptr.u64   CSR row starts (ndocs+1, nqueries+1)
 *   docs_indices.u32, q_indices.u32 feature ids (< 2^20)
 *   docs_data.f32, q_data.f32       weights (each row unit length)
 *   knn_doc.u32, knn_sim.f32        nqueries x k: neighbour, similarity
 * all little-endian host arrays, no header. With --data, the file's train
 * split is the history and its test split the queries.
 *
 * The decisions run on one thread. The import rebuilds the store's copy
 * on up to as many threads as the process may use (the store's default,
 * lr__parallel_default_threads, for stores of at least
 * lr__store_parallel_min records); the program prints that count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "parallel.h"
#include "smart.h"
#include "store.h"
#include "bench.h"

#define VOCAB 30000
#define N_MODELS 11
#define N_TASKS 3

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

/* Append the n words w[0..n) to buf at *at (space separated, bounded). */
static void put_words(char *buf, size_t cap, size_t *at, int n)
{
    for (int i = 0; i < n; i++) {
        const char *w = zipf_word();
        size_t wl = strlen(w);
        if (*at + wl + 2 >= cap)
            return;
        if (i)
            buf[(*at)++] = ' ';
        memcpy(buf + *at, w, wl);
        *at += wl;
    }
    buf[*at] = 0;
}

static void put_str(char *buf, size_t cap, size_t *at, const char *s)
{
    size_t n = strlen(s);
    if (*at + n + 1 >= cap)
        return;
    memcpy(buf + *at, s, n + 1);
    *at += n;
}

/* ==== Corpus "zipf": a template, then Zipf words ==== */

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

/* ==== Corpus "fewshot": shaped like the development data ==== */

/* Three tasks, as in RouterBench's subset: a multiple-choice task (46% of
 * records) and a fill-in-the-blank task (40%) whose every query starts with
 * the same five worked examples (about 1.2 KB shared by all of the task's
 * records, so the features of that prefix have posting lists holding
 * nearly half the history), and short coding requests (14%) with no
 * prefix. Only the last question differs from record to record. */
#define MCQ_TAIL "Print only a single choice  from \"A\" or \"B\" or \"C\" or \"D\" " \
                 "without explanation.\nAnswer:"
#define CLOZE_HEAD "Please answer with the letter of the correct answer.\n\n"
#define CLOZE_TAIL "Print only a single choice  from \"A\" or \"B\" without explanation. " \
                   "Answer:"

static void mcq_item(char *buf, size_t cap, size_t *at)
{
    put_words(buf, cap, at, 12 + (int)(uniform() * 14));
    put_str(buf, cap, at, "?");
    for (int o = 0; o < 4; o++) {
        char lab[8];
        snprintf(lab, sizeof(lab), "\n%c) ", 'A' + o);
        put_str(buf, cap, at, lab);
        put_words(buf, cap, at, 1 + (int)(uniform() * 4));
    }
    put_str(buf, cap, at, "\n" MCQ_TAIL);
}

static void cloze_item(char *buf, size_t cap, size_t *at)
{
    put_str(buf, cap, at, CLOZE_HEAD);
    put_words(buf, cap, at, 6 + (int)(uniform() * 8));
    put_str(buf, cap, at, " _ ");
    put_words(buf, cap, at, 5 + (int)(uniform() * 8));
    put_str(buf, cap, at, ".\nA) ");
    put_words(buf, cap, at, 1);
    put_str(buf, cap, at, "\nB) ");
    put_words(buf, cap, at, 1);
    put_str(buf, cap, at, "\n" CLOZE_TAIL);
}

static char fewshot_prefix[2][2048];

static void make_fewshot_prefixes(void)
{
    for (int t = 0; t < 2; t++) {
        size_t at = 0;
        fewshot_prefix[t][0] = 0;
        for (int shot = 0; shot < 5; shot++) {
            char ans[8];
            if (t == 0)
                mcq_item(fewshot_prefix[t], sizeof(fewshot_prefix[t]), &at);
            else
                cloze_item(fewshot_prefix[t], sizeof(fewshot_prefix[t]), &at);
            snprintf(ans, sizeof(ans), "\n%c\n\n", 'A' + (int)(uniform() * (t == 0 ? 4 : 2)));
            put_str(fewshot_prefix[t], sizeof(fewshot_prefix[t]), &at, ans);
        }
    }
}

static size_t make_fewshot_text(char *buf, size_t cap, int *task)
{
    double u = uniform();
    size_t at = 0;
    buf[0] = 0;
    *task = u < 0.46 ? 0 : u < 0.86 ? 1 : 2;
    if (*task == 2) {
        put_str(buf, cap, &at, "Write a python function to ");
        put_words(buf, cap, &at, 4 + (int)(uniform() * 9));
        put_str(buf, cap, &at, ".");
        return at;
    }
    put_str(buf, cap, &at, fewshot_prefix[*task]);
    if (*task == 0)
        mcq_item(buf, cap, &at);
    else
        cloze_item(buf, cap, &at);
    return at;
}

/* This thread's CPU time: unlike the wall clock it does not count the time
 * the thread waits while other jobs have the core. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The q-quantile of v[0..n), linear between the order statistics around
 * q (n - 1), as numpy's percentile and median (the anchor's) have it: at
 * 0.5 the median, the two middle values' mean for an even n. */
static double quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof(*v), cmp_double);
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n)
        return v[n - 1];
    return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

/* A JSON string literal of s (newlines and quotes escaped) into f. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* One line of the anchor's text files: newlines become spaces. */
static void put_line(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '\n' ? ' ' : *s, f);
    fputc('\n', f);
}

static const char *const models[N_MODELS] = {"m0", "m1", "m2", "m3", "m4", "m5",
                                             "m6", "m7", "m8", "m9", "m10"};

/* Write n_records synthetic records into DIR (JSONL for the import, one
 * text per line for the anchor) and n_queries queries; returns the mean
 * record length. */
static double synthesise(int fewshot, const char *dir, size_t n_records, char **queries,
                         size_t n_queries)
{
    /* corpus "zipf": task templates, fixed few-shot-like prefixes of
     * different lengths. */
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
    if (fewshot)
        make_fewshot_prefixes();
    char path[512], cpath[512], qpath[512], text[4096];
    snprintf(path, sizeof(path), "%s/smart_bench_history.jsonl", dir);
    snprintf(cpath, sizeof(cpath), "%s/corpus.txt", dir);
    snprintf(qpath, sizeof(qpath), "%s/queries.txt", dir);
    FILE *f = fopen(path, "w"), *fc = fopen(cpath, "w"), *fq = fopen(qpath, "w");
    if (!f || !fc || !fq) {
        fprintf(stderr, "cannot write into %s\n", dir);
        exit(1);
    }
    size_t total_bytes = 0;
    for (size_t i = 0; i < n_records; i++) {
        int task;
        size_t n;
        if (fewshot) {
            n = make_fewshot_text(text, sizeof(text), &task);
        } else {
            task = (int)(uniform() * N_TASKS);
            n = make_text(text, sizeof(text), task, templates);
        }
        total_bytes += n;
        put_line(fc, text);
        fputs("{\"query\": ", f);
        put_json_string(f, text);
        fprintf(f, ", \"input_token_length\": %zu, \"outputs\": [", n / 4 + 1);
        for (int m = 0; m < N_MODELS; m++) {
            double p = 0.3 + 0.06 * m - 0.1 * task;
            fprintf(f, "%s{\"model_name\": \"%s\", \"correctness\": %s, "
                       "\"output_token_length\": %d}",
                    m ? ", " : "", models[m], uniform() < p ? "true" : "false",
                    1 + (int)(uniform() * (task == 2 ? 300 : 3)));
        }
        fprintf(f, "]}\n");
    }
    for (size_t i = 0; i < n_queries; i++) {
        int task;
        size_t n = fewshot ? make_fewshot_text(text, sizeof(text), &task)
                           : make_text(text, sizeof(text), (int)(uniform() * N_TASKS), templates);
        queries[i] = malloc(n + 1);
        memcpy(queries[i], text, n + 1);
        put_line(fq, text);
    }
    fclose(f);
    fclose(fc);
    fclose(fq);
    return (double)total_bytes / (double)(n_records ? n_records : 1);
}

/* ==== Export of the searched vectors (for smart_anchor.py) ==== */

static void write_array(const char *dir, const char *name, const void *p, size_t elem, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, elem, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

/* Write the index's document vectors (read back from its posting lists,
 * in the caller's record numbers), the queries' vectors and llmroute's
 * k nearest neighbours of each into dir (see the top of the file). */
static void export_vectors(struct lr_store *st, char **queries, size_t n_queries, size_t k,
                           const char *dir)
{
    lr__store_rdlock(st);
    const struct lr__hist *h = lr__store_hist(st);
    const struct lr__sindex *ix = &h->sidx;
    size_t nd = ix->ndocs, total = 0;
    uint64_t *dptr = calloc(nd + 1, sizeof(*dptr));
    for (size_t u = 0; u < ix->nused; u++) {
        const struct lr__plist *l = &ix->lists[ix->used[u]];
        for (uint32_t j = 0; j < l->n; j++)
            dptr[ix->orig[l->p[j].doc] + 1]++;
        total += l->n;
    }
    for (size_t d = 0; d < nd; d++)
        dptr[d + 1] += dptr[d];
    uint64_t *fill = malloc((nd + 1) * sizeof(*fill));
    uint32_t *dind = malloc((total + 1) * sizeof(*dind));
    float *dval = malloc((total + 1) * sizeof(*dval));
    memcpy(fill, dptr, (nd + 1) * sizeof(*fill));
    for (size_t u = 0; u < ix->nused; u++) {
        uint32_t f = ix->used[u];
        const struct lr__plist *l = &ix->lists[f];
        for (uint32_t j = 0; j < l->n; j++) {
            uint64_t at = fill[ix->orig[l->p[j].doc]]++;
            dind[at] = f;
            dval[at] = l->p[j].w;
        }
    }
    write_array(dir, "docs_indptr.u64", dptr, sizeof(*dptr), nd + 1);
    write_array(dir, "docs_indices.u32", dind, sizeof(*dind), total);
    write_array(dir, "docs_data.f32", dval, sizeof(*dval), total);
    free(fill);
    free(dptr);
    free(dind);
    free(dval);

    struct lr__store_scratch sc;
    struct lr__neighbor nb[16];
    lr__store_scratch_init(&sc);
    uint64_t *qptr = calloc(n_queries + 1, sizeof(*qptr));
    uint32_t *qind = malloc((n_queries * LR__TFIDF_MAX_FEATURES + 1) * sizeof(*qind));
    float *qval = malloc((n_queries * LR__TFIDF_MAX_FEATURES + 1) * sizeof(*qval));
    uint32_t *kdoc = calloc(n_queries * k + 1, sizeof(*kdoc));
    float *ksim = calloc(n_queries * k + 1, sizeof(*ksim));
    for (size_t i = 0; i < n_queries; i++) {
        int nq = lr__store_embed_text(st, queries[i], strlen(queries[i]), &sc);
        if (nq < 0)
            nq = 0;
        qptr[i + 1] = qptr[i] + (uint64_t)nq;
        for (int j = 0; j < nq; j++) {
            qind[qptr[i] + (size_t)j] = sc.q[j].id;
            qval[qptr[i] + (size_t)j] = sc.q[j].w;
        }
        int got = lr__sindex_knn(ix, sc.q, (size_t)nq, k, &sc.knn, nb);
        for (int j = 0; j < got; j++) {
            kdoc[i * k + (size_t)j] = nb[j].doc;
            ksim[i * k + (size_t)j] = nb[j].sim;
        }
    }
    lr__store_unlock(st);
    lr__store_scratch_free(&sc);
    write_array(dir, "q_indptr.u64", qptr, sizeof(*qptr), n_queries + 1);
    write_array(dir, "q_indices.u32", qind, sizeof(*qind), qptr[n_queries]);
    write_array(dir, "q_data.f32", qval, sizeof(*qval), qptr[n_queries]);
    write_array(dir, "knn_doc.u32", kdoc, sizeof(*kdoc), n_queries * k);
    write_array(dir, "knn_sim.f32", ksim, sizeof(*ksim), n_queries * k);
    char meta[128];
    int ml = snprintf(meta, sizeof(meta), "%zu %zu %u %zu\n", nd, n_queries,
                      (unsigned)LR__TFIDF_SPACE, k);
    write_array(dir, "vec_meta.txt", meta, 1, (size_t)ml);
    printf("exported for the anchor: %zu record vectors (%zu non-zeros), %zu query vectors, "
           "llmroute's %zu neighbours of each\n",
           nd, total, n_queries, k);
    free(qptr);
    free(qind);
    free(qval);
    free(kdoc);
    free(ksim);
}

int main(int argc, char **argv)
{
    size_t n_records = 100000, n_queries = 2000, runs = 5;
    const char *dir = "/tmp", *corpus = "zipf", *data = NULL;
    int reuse = 0, export = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--reuse") == 0) {
            reuse = 1;
            continue;
        }
        if (strcmp(a, "--export") == 0) {
            export = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--records") == 0)
            n_records = strtoul(v, NULL, 10);
        else if (strcmp(a, "--queries") == 0)
            n_queries = strtoul(v, NULL, 10);
        else if (strcmp(a, "--runs") == 0)
            runs = strtoul(v, NULL, 10);
        else if (strcmp(a, "--dir") == 0)
            dir = v;
        else if (strcmp(a, "--seed") == 0)
            bench_rng = strtoull(v, NULL, 10) | 1;
        else if (strcmp(a, "--corpus") == 0)
            corpus = v;
        else if (strcmp(a, "--data") == 0)
            data = v;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (strcmp(corpus, "zipf") != 0 && strcmp(corpus, "fewshot") != 0) {
        fprintf(stderr, "--corpus: expected zipf or fewshot\n");
        return 2;
    }
    if (runs == 0)
        runs = 1;
    make_vocab();

    char path[512], dbpath[512];
    char **queries = NULL;
    double mean_bytes = 0;
    struct lr_dataset *test = NULL;
    struct lr_import_options iopt = {.split = "train", .strict = 0};
    struct lr_error err;
    struct lr_import_report rep;
    memset(&rep, 0, sizeof(rep));
    if (data) {
        /* Real data: its train split is the history, its test split the
         * queries. */
        struct lr_import_options topt = {.split = "test", .strict = 0};
        if (lr_dataset_load(data, &topt, &test, NULL, &err)) {
            fprintf(stderr, "%s: %s\n", data, err.message);
            return 1;
        }
        n_queries = lr_dataset_count(test);
        queries = malloc(n_queries * sizeof(*queries));
        for (size_t i = 0; i < n_queries; i++)
            queries[i] = (char *)lr_dataset_record(test, i)->query;
        snprintf(path, sizeof(path), "%s", data);
    } else {
        queries = malloc(n_queries * sizeof(*queries));
        mean_bytes = synthesise(strcmp(corpus, "fewshot") == 0, dir, n_records,
                                queries, n_queries);
        snprintf(path, sizeof(path), "%s/smart_bench_history.jsonl", dir);
    }

    /* A store file, as a gateway would keep it (not ":memory:", whose pages
     * would count in the RSS as well). */
    snprintf(dbpath, sizeof(dbpath), "%s/smart_bench_history.db", dir);
    struct lr_store *st = NULL;
    double t0 = now();
    if (!reuse)
        remove(dbpath);
    if (lr_store_open(dbpath, NULL, &st, &err) ||
        (!reuse && lr_store_import_file(st, path, data ? &iopt : NULL, &rep, &err))) {
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
    /* Every query is timed once per run; each run's quantiles are taken
     * and the median over runs is printed, so one noisy run (other jobs on
     * the machine) does not decide the figure. */
    double *lat = malloc(n_queries * sizeof(*lat)), *cpu = malloc(n_queries * sizeof(*cpu));
    double *emb = malloc(n_queries * sizeof(*emb)), *knn = malloc(n_queries * sizeof(*knn));
    double *r50 = malloc(runs * sizeof(double)), *r90 = malloc(runs * sizeof(double));
    double *r99 = malloc(runs * sizeof(double)), *rc50 = malloc(runs * sizeof(double));
    double *re50 = malloc(runs * sizeof(double)), *rk50 = malloc(runs * sizeof(double));
    struct lr_candidate rank[N_MODELS];
    size_t warm = n_queries < 50 ? n_queries : 50;
    for (size_t i = 0; i < warm; i++) {
        struct lr__smart_query q = {queries[i], strlen(queries[i]), NULL, 0, 300, 0.7};
        lr__smart_rank_models(sm, &q, cands, N_MODELS, rank, &err);
    }
    struct lr__store_scratch sc;
    struct lr__neighbor nb[16];
    lr__store_scratch_init(&sc);
    size_t n_shared = 0;
    for (size_t r = 0; r < runs; r++) {
        for (size_t i = 0; i < n_queries; i++) {
            struct lr__smart_query q = {queries[i], strlen(queries[i]), NULL, 0, 300, 0.7};
            double c = cpu_now(), a = now();
            int rc = lr__smart_rank_models(sm, &q, cands, N_MODELS, rank, &err);
            lat[i] = now() - a;
            cpu[i] = cpu_now() - c;
            if (rc) {
                fprintf(stderr, "rank: %s\n", err.message);
                return 1;
            }
        }
        /* The decision's two main parts alone: embedding, then the search. */
        lr__store_rdlock(st);
        const struct lr__hist *h = lr__store_hist(st);
        for (size_t i = 0; i < n_queries; i++) {
            double a = now();
            int nq = lr__store_embed_text(st, queries[i], strlen(queries[i]), &sc);
            double b = now();
            lr__sindex_knn(&h->sidx, sc.q, (size_t)nq, 16, &sc.knn, nb);
            knn[i] = now() - b;
            emb[i] = b - a;
            if (r == 0)
                for (int j = 0; j < nq; j++)
                    n_shared += h->sidx.lists[sc.q[j].id].n;
        }
        lr__store_unlock(st);
        r50[r] = quantile(lat, n_queries, 0.5);
        r90[r] = quantile(lat, n_queries, 0.9);
        r99[r] = quantile(lat, n_queries, 0.99);
        rc50[r] = quantile(cpu, n_queries, 0.5);
        re50[r] = quantile(emb, n_queries, 0.5);
        rk50[r] = quantile(knn, n_queries, 0.5);
    }
    lr__store_scratch_free(&sc);
    const struct lr__hist *h = lr__store_hist(st);
    if (data)
        printf("real data %s: train split %zu records as the history, test split %zu "
               "queries, k=16, 11 models\n",
               data, h->n, n_queries);
    else
        printf("corpus %s: records %zu (mean %.0f bytes), queries %zu, k=16, 11 models\n",
               corpus, h->n, mean_bytes, n_queries);
    if (!reuse) {
        unsigned th = h->n >= lr__store_parallel_min ? lr__parallel_default_threads() : 1u;
        printf("import: %.2f s (%.1f us per record; its rebuild on up to %u thread%s, the "
               "store's default); peak RSS %.1f MB\n",
               import_s, import_s / (double)(h->n ? h->n : 1) * 1e6, th, th == 1 ? "" : "s",
               (double)ru.ru_maxrss / 1024.0);
    }
    printf("postings on the query's features: mean %.0f per query\n",
           (double)n_shared / (double)(n_queries ? n_queries : 1));
    printf("decision latency, median of %zu runs: p50 %.1f us, p90 %.1f us, p99 %.1f us "
           "(CPU time p50 %.1f us)\n",
           runs, quantile(r50, runs, 0.5) * 1e6, quantile(r90, runs, 0.5) * 1e6,
           quantile(r99, runs, 0.5) * 1e6, quantile(rc50, runs, 0.5) * 1e6);
    printf("  of which embedding the query p50 %.1f us, exact kNN p50 %.1f us\n",
           quantile(re50, runs, 0.5) * 1e6, quantile(rk50, runs, 0.5) * 1e6);
    printf("C_P50_US=%.2f\n", quantile(r50, runs, 0.5) * 1e6);
    printf("C_KNN_P50_US=%.2f\n", quantile(rk50, runs, 0.5) * 1e6);
    printf("C_QUERIES=%zu\n", n_queries);
    if (export)
        export_vectors(st, queries, n_queries, 16, dir);
    lr__smart_free(sm);
    lr_store_free(st);
    if (!data)
        for (size_t i = 0; i < n_queries; i++)
            free(queries[i]);
    lr_dataset_free(test);
    free(queries);
    free(lat);
    free(cpu);
    free(emb);
    free(knn);
    free(r50);
    free(r90);
    free(r99);
    free(rc50);
    free(re50);
    free(rk50);
    for (int i = 0; i < VOCAB; i++)
        free(words[i]);
    return 0;
}
