/* rebuild_bench.c -- how long a feedback append waits while the history
 * store rebuilds its in-memory copy.
 *
 *   rebuild_bench --store FILE --dir DIR [--rounds R] [--delay-ms D]
 *                 [--only refresh|reweigh] [--defer]
 *
 * FILE is never written: each scenario of each round first copies it to
 * DIR/rebuild_bench.db (SQLite's backup) and works on the copy. Two
 * scenarios, R rounds each (default 3):
 *
 *   refresh   another connection commits one record; a thread calls
 *             lr_store_refresh(), which rebuilds the copy; D ms later
 *             (default 1000) the main thread calls lr_store_add_outcome()
 *             on the same handle and times it.
 *   reweigh   the copy is cut to its first 4/5 of records n (plain SQL),
 *             opened, and appended to through the handle up to one short
 *             of its next re-weighing (n + n/4 + 16, about the size of the
 *             original); a thread appends the record that makes it due;
 *             once that record is in the copy, D ms later, the main thread
 *             appends and is timed. With --defer the handle is opened with
 *             defer_reweigh: the append that makes the re-weighing due only
 *             marks it, and after the timed append the main thread calls
 *             lr_store_refresh(), which runs it, and times that too.
 *
 * --only runs one of the two scenarios. The "rebuilding call" of the
 * reweigh scenario is the append that makes the re-weighing due: its
 * duration is how long that feedback waits.
 *
 * The other connection is a plain SQLite connection writing the rows, so
 * that nothing but the handle under test rebuilds. Prints each round and
 * the medians: the append's wait, and the rebuilding call's duration.
 *
 * If the rebuilding call has already returned when the timed append starts
 * (a small store rebuilds in less than D ms), the round measured no wait:
 * it is printed as such and left out of the medians, and if no round of a
 * scenario is kept the bench prints no figure for it and exits 1. (With
 * --defer the reweigh scenario's due append only marks the re-weighing and
 * returns at once, by design: its rounds are kept and say so.) The anchor,
 * in each round: once the rebuilding call has returned, the same append on
 * the same handle, now idle, is timed too (after the timed one, so it finds
 * its pages warm); each round prints the wait as a ratio to it, and the
 * medians give the median ratio of the rounds kept. A store of 100,000
 * records is left by `bench/smart_bench --dir DIR` as
 * DIR/smart_bench_history.db. Put DIR on tmpfs (/dev/shm): each append is
 * an fsync, and the reweigh scenario makes n/4 of them.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "llmroute.h"

#define MAX_ROUNDS 25

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "rebuild_bench: %s: %s\n", what, msg);
    exit(1);
}

/* Plain SQL on the file (another connection). */
static void sql(const char *path, const char *text)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, text, NULL, NULL, NULL) != SQLITE_OK)
        die(text, sqlite3_errmsg(db));
    sqlite3_close(db);
}

static void copy_db(const char *from, const char *to)
{
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *b;
    char side[1100];
    unlink(to);
    snprintf(side, sizeof(side), "%s-wal", to);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", to);
    unlink(side);
    if (sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_open(to, &dst) != SQLITE_OK || !(b = sqlite3_backup_init(dst, "main", src, "main")))
        die("copying the store", sqlite3_errmsg(dst ? dst : src));
    if (sqlite3_backup_step(b, -1) != SQLITE_DONE)
        die("copying the store", sqlite3_errmsg(dst));
    sqlite3_backup_finish(b);
    sqlite3_close(src);
    sqlite3_close(dst);
}

/* Another connection commits `n` records (one outcome of model 0 each)
 * after the `have` already in the file, in one transaction. */
static void commit_records(const char *path, size_t have, size_t n)
{
    static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi"};
    sqlite3 *db = NULL;
    sqlite3_stmt *rec = NULL, *out = NULL;
    char q[256];
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("opening the other connection", sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 60000);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO records(id, query, input_tokens, task) "
                           "VALUES(?, ?, 20, 't')",
                           -1, &rec, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO outcomes(record_id, model_id, correctness, "
                           "output_tokens) VALUES(?, 0, 1, 10)",
                           -1, &out, NULL) != SQLITE_OK)
        die("the other connection", sqlite3_errmsg(db));
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        for (int w = 0; w < 8; w++) {
            uint64_t r = next_u64();
            len += (size_t)snprintf(q + len, sizeof(q) - len, "%s%s%s%u", w ? " " : "", syl[r % 8],
                                    syl[(r >> 3) % 8], (unsigned)((r >> 6) % 500));
        }
        sqlite3_bind_int64(rec, 1, (sqlite3_int64)(have + i));
        sqlite3_bind_text(rec, 2, q, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(out, 1, (sqlite3_int64)(have + i));
        if (sqlite3_step(rec) != SQLITE_DONE || sqlite3_step(out) != SQLITE_DONE)
            die("the other connection", sqlite3_errmsg(db));
        sqlite3_reset(rec);
        sqlite3_reset(out);
    }
    sqlite3_finalize(rec);
    sqlite3_finalize(out);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        die("the other connection", sqlite3_errmsg(db));
    sqlite3_close(db);
}

struct job {
    struct lr_store *s;
    int reweigh; /* 0: lr_store_refresh, 1: the append that makes the re-weighing due */
    double seconds;
    atomic_int started; /* set just before the rebuilding call */
    atomic_int done;    /* set once the rebuilding call has returned */
    int rc;
    char msg[sizeof(((struct lr_error *)0)->message)];
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    struct lr_error err;
    memset(&err, 0, sizeof(err));
    atomic_store(&j->started, 1);
    double t0 = now();
    if (j->reweigh)
        j->rc = lr_store_add_outcome(j->s, "the record that makes the re-weighing due", -1,
                                     "bench-model", 1, 5, &err);
    else
        j->rc = lr_store_refresh(j->s, NULL, &err);
    j->seconds = now() - t0;
    atomic_store(&j->done, 1);
    snprintf(j->msg, sizeof(j->msg), "%s", err.message);
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One scenario on a fresh copy: returns the timed append's wait, and the
 * rebuilding call's duration in *rebuild; the same append on the idle
 * handle once the rebuilding call has returned (the anchor) in *idle;
 * in *late, whether the rebuilding call had already returned when the
 * timed append started; with defer, the deferred re-weighing's refresh in
 * *refresh. */
static double scenario(const char *src, const char *work, int reweigh, int delay_ms, int defer,
                       double *rebuild, double *idle, int *late, double *refresh)
{
    struct lr_store_options so;
    struct lr_store *s = NULL;
    struct lr_error err;
    struct job j;
    pthread_t t;

    copy_db(src, work);
    if (reweigh) {
        char cut[256];
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        long long all = 0;
        if (sqlite3_open(work, &db) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM records", -1, &q, NULL) != SQLITE_OK ||
            sqlite3_step(q) != SQLITE_ROW)
            die("counting records", sqlite3_errmsg(db));
        all = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        sqlite3_close(db);
        snprintf(cut, sizeof(cut),
                 "DELETE FROM outcomes WHERE record_id >= %lld; DELETE FROM vectors WHERE "
                 "record_id >= %lld; DELETE FROM records WHERE id >= %lld;",
                 all * 4 / 5, all * 4 / 5, all * 4 / 5);
        sql(work, cut);
    }
    memset(&so, 0, sizeof(so));
    so.defer_reweigh = defer;
    if (lr_store_open(work, &so, &s, &err) != 0)
        die("opening the copy", err.message);
    size_t n = lr_store_count(s), due = n + n / 4 + 16;
    if (reweigh) {
        char q[256];
        for (size_t i = n; i + 1 < due; i++) {
            uint64_t r = next_u64();
            snprintf(q, sizeof(q), "appended %zu about ka%u lo%u mi%u ne%u", i, (unsigned)(r % 700),
                     (unsigned)((r >> 10) % 700), (unsigned)((r >> 20) % 700),
                     (unsigned)((r >> 30) % 700));
            if (lr_store_add_outcome(s, q, -1, "bench-model", (double)(r >> 63), 4, &err))
                die("appending", err.message);
        }
    } else {
        commit_records(work, n, 1);
    }

    memset(&j, 0, sizeof(j));
    j.s = s;
    j.reweigh = reweigh;
    if (pthread_create(&t, NULL, job_main, &j) != 0)
        die("starting a thread", "pthread_create failed");
    if (reweigh)
        while (lr_store_count(s) < due) /* the record is in; the re-weighing starts */
            sleep_ms(1);
    else
        while (!atomic_load(&j.started))
            sleep_ms(1);
    sleep_ms(delay_ms);
    *late = atomic_load(&j.done);
    double t0 = now();
    if (lr_store_add_outcome(s, "feedback during the rebuild", -1, "bench-model", 0, 3, &err))
        die("the timed append", err.message);
    double wait = now() - t0;
    pthread_join(t, NULL);
    if (j.rc != 0)
        die(reweigh ? "the append that makes the re-weighing due" : "the refresh", j.msg);
    *rebuild = j.seconds;
    t0 = now();
    if (lr_store_add_outcome(s, "feedback on the idle handle", -1, "bench-model", 0, 3, &err))
        die("the anchor append", err.message);
    *idle = now() - t0;
    *refresh = 0;
    if (reweigh && defer) {
        int changed = 0;
        t0 = now();
        if (lr_store_refresh(s, &changed, &err) != 0)
            die("the refresh that re-weighs", err.message);
        *refresh = now() - t0;
        if (!changed)
            die("the refresh that re-weighs", "it did not re-weigh");
    }
    lr_store_free(s);
    return wait;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *dir = NULL;
    int rounds = 3, delay_ms = 1000, defer = 0, first = 0, last = 1;
    double wait[2][MAX_ROUNDS], took[2][MAX_ROUNDS], refresh[2][MAX_ROUNDS];
    double idle[2][MAX_ROUNDS], ratio[2][MAX_ROUNDS];
    int kept[2] = {0, 0}, late;
    static const char *name[] = {"refresh", "reweigh"};
    char work[1024];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--store") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
            delay_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--defer"))
            defer = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc && !strcmp(argv[i + 1], "refresh"))
            first = last = 0, i++;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc && !strcmp(argv[i + 1], "reweigh"))
            first = last = 1, i++;
        else
            path = NULL, i = argc;
    }
    if (!path || !dir || rounds < 1 || rounds > MAX_ROUNDS || delay_ms < 0) {
        fprintf(stderr,
                "usage: rebuild_bench --store FILE --dir DIR [--rounds 1..%d] "
                "[--delay-ms D] [--only refresh|reweigh] [--defer]\n",
                MAX_ROUNDS);
        return 2;
    }
    snprintf(work, sizeof(work), "%s/rebuild_bench.db", dir);
    printf("rebuild_bench: %s (copied to %s), append %d ms after the rebuild starts%s\n", path,
           work, delay_ms, defer ? ", defer_reweigh" : "");
    for (int r = 0; r < rounds; r++)
        for (int k = first; k <= last; k++) {
            int i = kept[k];
            double w, t, id, rf;
            w = scenario(path, work, k, delay_ms, defer, &t, &id, &late, &rf);
            printf("  round %d %s: append waited %.4f s; the same append on the idle handle "
                   "%.4f s (%.1fx); the rebuilding call took %.4f s",
                   r + 1, name[k], w, id, w / id, t);
            if (k == 1 && defer)
                printf("; the refresh that re-weighed took %.2f s", rf);
            if (late && k == 1 && defer) {
                /* Expected: with defer_reweigh the due append only marks the
                 * re-weighing, which the refresh after runs. */
                printf("\n    (defer_reweigh: the due append only marked the re-weighing and had "
                       "returned; no rebuild ran during the timed append, by design)\n");
                wait[k][i] = w, took[k][i] = t, idle[k][i] = id, refresh[k][i] = rf;
                ratio[k][i] = w / id;
                kept[k]++;
            } else if (late) {
                printf("\n    NOT KEPT: the rebuilding call had already returned when the timed "
                       "append started (--delay-ms %d): this round measured no wait; "
                       "use a larger store or a smaller --delay-ms\n",
                       delay_ms);
            } else {
                wait[k][i] = w, took[k][i] = t, idle[k][i] = id, refresh[k][i] = rf;
                ratio[k][i] = w / id;
                kept[k]++;
                printf("\n");
            }
            fflush(stdout);
        }
    int status = 0;
    for (int k = first; k <= last; k++) {
        if (kept[k] == 0) {
            printf("%s: no round kept (in each, the rebuild ended before the timed append "
                   "started): no figure\n",
                   name[k]);
            status = 1;
            continue;
        }
        printf("%s, median of %d kept round%s of %d: append waited %.4f s, %.1fx the same append "
               "on the idle handle (%.4f s); the rebuilding call took %.4f s",
               name[k], kept[k], kept[k] == 1 ? "" : "s", rounds, median(wait[k], kept[k]),
               median(ratio[k], kept[k]), median(idle[k], kept[k]), median(took[k], kept[k]));
        if (k == 1 && defer)
            printf("; the refresh that re-weighed took %.2f s", median(refresh[k], kept[k]));
        printf("\n");
    }
    if (status)
        return status;
    return 0;
}
