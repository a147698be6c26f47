/* open_bench.c -- opening a history store on one thread against the default
 * thread count.
 *
 *   open_bench --store FILE [--rounds R] [--threads T]
 *
 * Opens FILE read-only (nothing is written to it) R times (default 3) with
 * lr_store_options.threads = 1 and R times with T (default 0: the library's
 * default, the online CPUs up to 8), alternating, one open at a time, and
 * prints each time, the medians and their ratio (one thread over T: above
 * 1 means the threads help). The open rebuilds the whole in-memory copy,
 * which is what lr_store_refresh, a writer's catch-up and the re-weighing
 * also pay. A store of 100,000 records is left by
 * `bench/smart_bench --dir DIR` as DIR/smart_bench_history.db.
 *
 * The anchor, timed in each round too: reading the same rows (every
 * record's text and token count, every outcome) with SQLite alone, which
 * any open must do. The one-thread open over that read shows what the
 * open adds to it, which for a small store is mostly fixed cost.
 *
 * Single-threaded, apart from the threads the library starts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bench.h"
#include "llmroute.h"
#include "parallel.h"

#define MAX_ROUNDS 25

static double open_once(const char *path, int threads, size_t *count)
{
    struct lr_store_options o = {NULL, 0, 1, 0, threads, 0};
    struct lr_store *s = NULL;
    struct lr_error err;
    double t0 = now();
    if (lr_store_open(path, &o, &s, &err) != 0) {
        fprintf(stderr, "open_bench: %s\n", err.message);
        exit(1);
    }
    double t = now() - t0;
    *count = lr_store_count(s);
    lr_store_free(s);
    return t;
}

/* The anchor: the store's rows read with SQLite alone, read-only (every
 * value is fetched: the texts' bytes, the numbers as numbers). */
static volatile size_t rows_sink;

static double read_rows(const char *path)
{
    static const char *const sql[2] = {
        "SELECT id, query, input_tokens FROM records ORDER BY id",
        "SELECT record_id, model_id, correctness, output_tokens FROM outcomes"};
    sqlite3 *db = NULL;
    size_t sink = 0;
    double t0 = now();
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "open_bench: %s: %s\n", path, db ? sqlite3_errmsg(db) : "cannot open");
        exit(1);
    }
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(db, sql[i], -1, &q, NULL) != SQLITE_OK) {
            fprintf(stderr, "open_bench: %s: %s\n", path, sqlite3_errmsg(db));
            exit(1);
        }
        while (sqlite3_step(q) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(q); c++) {
                /* Each value in its own type, as the open reads it:
                 * asking a number for its bytes would print it as text. */
                int t = sqlite3_column_type(q, c);
                if (t == SQLITE_INTEGER)
                    sink += (size_t)sqlite3_column_int64(q, c);
                else if (t == SQLITE_FLOAT)
                    sink += (size_t)(sqlite3_column_double(q, c) >= 0.5);
                else
                    sink += (size_t)sqlite3_column_bytes(q, c);
            }
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    double t = now() - t0;
    rows_sink = sink;
    return t;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int rounds = 3, threads = 0;
    double one[MAX_ROUNDS], many[MAX_ROUNDS], raw[MAX_ROUNDS];
    size_t count = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--store") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: open_bench --store FILE [--rounds R] [--threads T]\n");
            return 2;
        }
    }
    if (!path || rounds < 1 || rounds > MAX_ROUNDS || threads < 0) {
        fprintf(stderr, "usage: open_bench --store FILE [--rounds 1..%d] [--threads T>=0]\n",
                MAX_ROUNDS);
        return 2;
    }
    unsigned used = threads ? (unsigned)threads : lr__parallel_default_threads();
    printf("open_bench: %s, %ld online CPUs, threads=1 vs threads=%d (%u)\n", path,
           sysconf(_SC_NPROCESSORS_ONLN), threads, used);
    for (int r = 0; r < rounds; r++) {
        raw[r] = read_rows(path);
        one[r] = open_once(path, 1, &count);
        many[r] = open_once(path, threads, &count);
        printf("  round %d: sqlite read %.4f s, threads=1 %.4f s, threads=%u %.4f s\n", r + 1,
               raw[r], one[r], used, many[r]);
    }
    double mr = median(raw, rounds), m1 = median(one, rounds), mn = median(many, rounds);
    printf("open of %zu records, median of %d: threads=1 %.4f s, threads=%u %.4f s, "
           "ratio %.2fx\n",
           count, rounds, m1, used, mn, m1 / mn);
    printf("anchor: the rows read with SQLite alone %.4f s; the open on one thread takes "
           "%.1fx that\n",
           mr, m1 / mr);
    return 0;
}
