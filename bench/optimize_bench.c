/* optimize_bench.c -- times the batch optimizer on a realistic instance.
 *
 * Builds a seeded instance of n queries x 11 models: the RouterBench models
 * with their public prices per token (with --models M, M models: past the
 * 11, copies of them with strength and prices jittered), quality per (query, model) from a
 * logistic model of model strength against query difficulty with noise,
 * input tokens per query and output tokens per (query, model), and
 * cost = input_tokens * price_in + output_tokens * price_out. Optionally
 * every model gets a capacity: a fraction of n (--caps) or a count (--cap).
 *
 * It writes the instance to a file (for bench/optimize_cbc.py, which solves
 * the same integer program with CBC), runs lr__optimize_quality or
 * lr__optimize_budget several times and prints one JSON line: the median
 * and every time in milliseconds, and the answer's cost, mean quality,
 * bound and feasibility, as the optimizer reports them. With --assign it
 * also writes the last run's assignment (one model index a line, query
 * order; -1 for a query left unassigned), so that optimize_cbc.py checks
 * every constraint itself and recomputes the cost rather than trusting
 * these figures.
 *
 *   optimize_bench --n 1000 --seed 1 --alpha 0.8 [--budget B] [--caps 0.3 | --cap 10]
 *                  [--models 11] [--runs 7] [--write instance.txt] [--assign assign.txt]
 *
 * Single-threaded.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "optimize.h"
#include "bench.h"

#define N_MODELS 11

/* RouterBench's models and prices in dollars per million tokens; strength
 * (logit scale) and typical output length are this benchmark's assumptions. */
static const struct {
    const char *name;
    double in_per_mtok, out_per_mtok;
    double strength;
    double out_tokens;
} models[N_MODELS] = {
    {"gpt-4-1106-preview", 10.0, 30.0, 2.2, 320.0},
    {"gpt-3.5-turbo-1106", 1.0, 2.0, 1.0, 220.0},
    {"claude-v2", 8.0, 24.0, 1.6, 300.0},
    {"claude-v1", 8.0, 24.0, 1.4, 280.0},
    {"claude-instant-v1", 0.8, 2.4, 0.9, 240.0},
    {"meta/llama-2-70b-chat", 0.9, 0.9, 0.6, 380.0},
    {"mistralai/mixtral-8x7b-chat", 0.6, 0.6, 1.0, 300.0},
    {"zero-one-ai/Yi-34B-Chat", 0.8, 0.8, 0.8, 330.0},
    {"meta/code-llama-instruct-34b-chat", 0.776, 0.776, 0.2, 260.0},
    {"mistralai/mistral-7b-chat", 0.2, 0.2, 0.0, 280.0},
    {"WizardLM/WizardLM-13B-V1.2", 0.3, 0.3, 0.1, 300.0},
};

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(struct rng *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(struct rng *r)
{
    return sqrt(-2.0 * log(rng_unit(r))) * cos(6.283185307179586 * rng_unit(r));
}

/* Model j of m: the table's model j for the first 11; past them, a copy of
 * the table's model j % 11 with its strength and prices jittered (seeded by
 * j alone, so a model is the same in every instance of m models). */
static void model_of(size_t j, double *strength, double *in_price, double *out_price,
                     double *out_tokens)
{
    size_t k = j % N_MODELS;
    *strength = models[k].strength;
    *in_price = models[k].in_per_mtok;
    *out_price = models[k].out_per_mtok;
    *out_tokens = models[k].out_tokens;
    if (j >= N_MODELS) {
        struct rng r = {0x5eedULL + j};
        double scale = exp(0.3 * rng_normal(&r));
        *strength += 0.4 * rng_normal(&r);
        *in_price *= scale;
        *out_price *= scale;
        *out_tokens *= exp(0.2 * rng_normal(&r));
    }
}

static void make_instance(size_t n, size_t m, uint64_t seed, double *quality, double *cost)
{
    struct rng r = {seed};
    size_t i, j;
    for (i = 0; i < n; i++) {
        double difficulty = 1.2 * rng_normal(&r);
        double in_tokens = floor(300.0 * exp(0.8 * rng_normal(&r))) + 1.0;
        double length = exp(0.5 * rng_normal(&r)); /* some queries want long answers */
        for (j = 0; j < m; j++) {
            double strength, in_price, out_price, out_tokens;
            model_of(j, &strength, &in_price, &out_price, &out_tokens);
            double z = strength - difficulty + 0.6 * rng_normal(&r);
            double out = floor(out_tokens * length * exp(0.3 * rng_normal(&r))) + 1.0;
            quality[i * m + j] = 1.0 / (1.0 + exp(-z));
            cost[i * m + j] = (in_tokens * in_price + out * out_price) / 1e6;
        }
    }
}

static int write_instance(const char *path, const struct lr__opt_problem *p, double caps)
{
    FILE *f = fopen(path, "w");
    size_t i, j;
    if (f == NULL)
        return -1;
    fprintf(f, "%zu %zu %.17g %.17g %.17g\n", p->n, p->m, p->alpha, p->budget, caps);
    for (j = 0; j < p->m; j++)
        fprintf(f, "%d%c", p->capacity ? p->capacity[j] : 0, j + 1 < p->m ? ' ' : '\n');
    for (i = 0; i < p->n * p->m; i++)
        fprintf(f, "%.17g%c", p->quality[i], (i + 1) % p->m ? ' ' : '\n');
    for (i = 0; i < p->n * p->m; i++)
        fprintf(f, "%.17g%c", p->cost[i], (i + 1) % p->m ? ' ' : '\n');
    return fclose(f) == 0 ? 0 : -1;
}

static double clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

/* The CPU time of this thread, which the optimizer runs on alone: what the
 * script sets beside CBC's own CPU time, which load from other processes
 * does not inflate as it does a long solve's wall time. */
static double cpu_ms(void)
{
    return clock_ms(CLOCK_THREAD_CPUTIME_ID);
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno == 0 && end != s && *end == '\0' ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: optimize_bench --n N [--seed S] [--alpha A | --budget B] "
                    "[--caps FRACTION | --cap COUNT] [--models M] [--runs R] [--write PATH] "
                    "[--assign PATH]\n");
}

int main(int argc, char **argv)
{
    double n_arg = 1000, seed_arg = 1, alpha = 0.8, budget = NAN, caps = 0.0, runs_arg = 7;
    double m_arg = N_MODELS, cap_arg = 0.0;
    const char *write_path = NULL, *assign_path = NULL;
    struct lr__opt_problem p = {0};
    struct lr__opt_result r;
    double *quality, *cost, *times, *cpu_times;
    int *capacity, *assign, i, runs, rc = 0;
    size_t n, m, j;

    for (i = 1; i < argc; i++) {
        double *target = NULL;
        if (strcmp(argv[i], "--n") == 0)
            target = &n_arg;
        else if (strcmp(argv[i], "--seed") == 0)
            target = &seed_arg;
        else if (strcmp(argv[i], "--alpha") == 0)
            target = &alpha;
        else if (strcmp(argv[i], "--budget") == 0)
            target = &budget;
        else if (strcmp(argv[i], "--caps") == 0)
            target = &caps;
        else if (strcmp(argv[i], "--models") == 0)
            target = &m_arg;
        else if (strcmp(argv[i], "--cap") == 0)
            target = &cap_arg;
        else if (strcmp(argv[i], "--runs") == 0)
            target = &runs_arg;
        else if (strcmp(argv[i], "--write") == 0 && i + 1 < argc) {
            write_path = argv[++i];
            continue;
        } else if (strcmp(argv[i], "--assign") == 0 && i + 1 < argc) {
            assign_path = argv[++i];
            continue;
        }
        if (target == NULL || i + 1 >= argc || parse_double(argv[++i], target) != 0) {
            usage();
            return 2;
        }
    }
    if (!(n_arg >= 1 && n_arg <= 1e7) || !(runs_arg >= 1 && runs_arg <= 1000) ||
        !(caps >= 0.0 && caps <= 1.0) || !(seed_arg >= 0) || !(m_arg >= 1 && m_arg <= 10000) ||
        !(cap_arg >= 0.0 && cap_arg <= 1e7) || (caps > 0.0 && cap_arg > 0.0)) {
        usage();
        return 2;
    }
    n = (size_t)n_arg;
    m = (size_t)m_arg;
    runs = (int)runs_arg;
    quality = malloc(n * m * sizeof *quality);
    cost = malloc(n * m * sizeof *cost);
    capacity = malloc(m * sizeof *capacity);
    assign = malloc(n * sizeof *assign);
    times = malloc((size_t)runs * sizeof *times);
    cpu_times = malloc((size_t)runs * sizeof *cpu_times);
    if (quality == NULL || cost == NULL || capacity == NULL || assign == NULL || times == NULL ||
        cpu_times == NULL) {
        fprintf(stderr, "optimize_bench: out of memory\n");
        return 1;
    }
    make_instance(n, m, (uint64_t)seed_arg, quality, cost);
    for (j = 0; j < m; j++)
        capacity[j] = caps > 0.0 ? (int)ceil(caps * (double)n) : (int)cap_arg;
    p.n = n;
    p.m = m;
    p.quality = quality;
    p.cost = cost;
    p.capacity = caps > 0.0 || cap_arg > 0.0 ? capacity : NULL;
    p.alpha = alpha;
    p.budget = isnan(budget) ? 0.0 : budget;
    if (write_path != NULL && write_instance(write_path, &p, caps) != 0) {
        fprintf(stderr, "optimize_bench: cannot write %s\n", write_path);
        return 1;
    }
    for (i = 0; i < runs; i++) {
        double t0;
        memset(&r, 0, sizeof r);
        r.assign = assign;
        double c0 = cpu_ms();
        t0 = now_ms();
        rc = isnan(budget) ? lr__optimize_quality(&p, &r) : lr__optimize_budget(&p, &r);
        times[i] = now_ms() - t0;
        cpu_times[i] = cpu_ms() - c0;
    }
    if (assign_path != NULL) {
        FILE *f = fopen(assign_path, "w");
        for (j = 0; f != NULL && j < n; j++)
            fprintf(f, "%d\n", assign[j]);
        if (f == NULL || fclose(f) != 0) {
            fprintf(stderr, "optimize_bench: cannot write %s\n", assign_path);
            return 1;
        }
    }
    printf("{\"n\": %zu, \"m\": %d, \"form\": \"%s\", \"alpha\": %.17g, \"budget\": %.17g, "
           "\"caps\": %.17g, \"cap\": %d, \"rc\": %d, \"feasible\": %d, \"cost\": %.17g, "
           "\"mean_quality\": %.17g, \"bound\": %.17g, \"iterations\": %d, \"message\": \"%s\", "
           "\"times_ms\": [",
           n, (int)m, isnan(budget) ? "quality" : "budget", alpha, p.budget, caps, (int)cap_arg,
           rc,
           r.feasible, r.total_cost, r.mean_quality,
           isnan(r.lower_bound) ? -1.0 : r.lower_bound, r.iterations, r.message);
    for (i = 0; i < runs; i++)
        printf("%s%.6f", i ? ", " : "", times[i]);
    printf("], \"median_ms\": %.6f, \"median_cpu_ms\": %.6f}\n", median(times, runs),
           median(cpu_times, runs));
    free(quality);
    free(cost);
    free(capacity);
    free(assign);
    free(times);
    free(cpu_times);
    return 0;
}
