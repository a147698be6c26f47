/* route_bench.c -- sequential routing decisions per second, in one thread
 * and in two, as a ratio against a named anchor run side by side in the same
 * process: a plain mutex-protected counter doing the same modulo pick.
 *
 * Each configuration runs ROUNDS times, alternating router and anchor so
 * both see the same machine noise; the medians are reported.
 *
 *   route_bench [decisions-per-thread]
 *
 * The two-thread rows mean something only when two cores were free: the
 * program measures, over each thread count's rows, how much of the
 * machine's CPU time went to other processes (/proc/stat's busy time less
 * this process's own, from getrusage) and prints it beside them.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "llmroute.h"
#include "bench.h"

#define ROUNDS 7

static const char cfg_json[] =
    "{\"models\": [{\"name\": \"gpt-4o\"}, {\"name\": \"gpt-4o-mini\"}, {\"name\": \"qwen2.5:7b\"},"
    " {\"name\": \"llama3.1:8b\"}, {\"name\": \"mixtral-8x7b\"}]}";

static long per_thread = 2000000;
static struct lr_router *router;
static pthread_mutex_t anchor_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long anchor_counter;
static volatile long sink;

static void *anchor_worker(void *arg)
{
    long acc = 0;
    (void)arg;
    for (long i = 0; i < per_thread; i++) {
        pthread_mutex_lock(&anchor_lock);
        acc += (long)(anchor_counter++ % 3);
        pthread_mutex_unlock(&anchor_lock);
    }
    sink += acc;
    return NULL;
}

/* Route per_thread requests; arg non-NULL: candidates by index, else by name. */
static void *route_worker(void *arg)
{
    static const char *names[] = {"gpt-4o", "gpt-4o-mini", "qwen2.5:7b"};
    static const int idx[] = {0, 1, 2};
    struct lr_request req;
    struct lr_decision d = {0};
    long acc = 0;
    lr_request_init(&req);
    if (arg)
        req.model_indices = idx;
    else
        req.models = names;
    req.n_models = 3;
    req.input_tokens = 100;
    for (long i = 0; i < per_thread; i++) {
        if (lr_router_route(router, &req, &d, NULL) == 0)
            acc += d.index;
    }
    sink += acc;
    return NULL;
}

/* Decisions per second with `threads` threads running fn(arg). */
static double rate(void *(*fn)(void *), void *arg, int threads)
{
    pthread_t t[8];
    double t0 = now(), dt;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, fn, arg);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    dt = now() - t0;
    return (double)per_thread * threads / dt;
}

/* Busy and total CPU seconds of the whole machine so far (/proc/stat's
 * first line); 0 when it cannot be read. */
static int machine_cpu(double *busy, double *total)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int ok = f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                         &v[3], &v[4], &v[5], &v[6], &v[7]) == 8;
    if (f)
        fclose(f);
    if (!ok)
        return 0;
    double hz = (double)sysconf(_SC_CLK_TCK), idle = (double)(v[3] + v[4]), all = 0;
    for (int i = 0; i < 8; i++)
        all += (double)v[i];
    *busy = (all - idle) / hz;
    *total = all / hz;
    return 1;
}

/* This process's CPU seconds so far (user and system, all threads). */
static double own_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

int main(int argc, char **argv)
{
    struct lr_config *cfg = NULL;
    struct lr_error err = {0};

    if (argc > 1)
        per_thread = strtol(argv[1], NULL, 10);
    if (per_thread <= 0)
        per_thread = 2000000;
    if (lr_config_load_string(cfg_json, strlen(cfg_json), &cfg, &err) ||
        lr_router_new(cfg, NULL, &router, &err)) {
        fprintf(stderr, "route_bench: %s\n", err.message);
        return 1;
    }
    printf("sequential routing, %ld decisions per thread, median of %d rounds\n", per_thread,
           ROUNDS);
    printf("anchor: a pthread mutex around a shared counter (counter++ %% n)\n\n");
    printf("%-8s %-22s %14s %14s %8s\n", "threads", "request form", "router dec/s",
           "anchor dec/s", "ratio");
    for (int threads = 1; threads <= 2; threads++) {
        double busy0 = 0, total0 = 0, busy1 = 0, total1 = 0, own0 = own_cpu();
        int have = machine_cpu(&busy0, &total0);
        for (int form = 0; form < 2; form++) {
            double r[ROUNDS], a[ROUNDS], ratio[ROUNDS];
            for (int k = 0; k < ROUNDS; k++) {
                a[k] = rate(anchor_worker, NULL, threads);
                r[k] = rate(route_worker, form ? (void *)&form : NULL, threads);
                ratio[k] = r[k] / a[k];
            }
            printf("%-8d %-22s %14.3g %14.3g %7.2fx\n", threads,
                   form ? "indices" : "names (3 of 5)", median(r, ROUNDS), median(a, ROUNDS),
                   median(ratio, ROUNDS));
        }
        if (have && machine_cpu(&busy1, &total1) && total1 > total0) {
            double other = (busy1 - busy0) - (own_cpu() - own0);
            long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
            printf("  (other processes used %.0f%% of the %ld online CPUs during these rows%s)\n",
                   100.0 * (other > 0 ? other : 0) / (total1 - total0), ncpu,
                   threads == 2 && ncpu <= 2 && other > 0.1 * (total1 - total0)
                       ? ": the two threads did not have two free cores"
                       : "");
        }
    }
    lr_router_free(router);
    lr_config_free(cfg);
    return 0;
}
