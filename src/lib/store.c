/* store.c -- the history store: past queries and how each model did on
 * them, kept in SQLite and mirrored in memory for routing (see store.h).
 *
 * On disk (SQLite, WAL journal, synchronous=FULL so that a commit survives a
 * power cut as well as a crash: "durable before it returns 0" holds without
 * qualification; the price is one fsync per append, so the gateway appends
 * off its event loop):
 *   meta(key, value)          schema_version, embedder, dim
 *   models(id, name)          id = the in-memory model id, 0, 1, ...
 *   records(id, query, input_tokens, task)   id = record number, 0, 1, ...
 *   outcomes(record_id, model_id, correctness, output_tokens)  in record order
 *   vectors(record_id, vec)   remote-embedder stores only: float32 blobs
 *   feedback_keys(key, record_id, committed_at, ttl)   idempotency keys,
 *                             each kept for its own time-to-live, fixed
 *                             when it was committed (KEYS_SCHEMA)
 * tfidf-v1 vectors are not stored: their weights depend on the document
 * frequencies of the whole store, so they are recomputed from the text at
 * open and after every import. A remote embedder's vectors are stored unit
 * length; the library never fetches them: an import into such a (dense)
 * store calls the caller's embed callback in batches from inside its one
 * transaction, and appends are handed their vector.
 *
 * TF-IDF weights depend on the whole store. An import rebuilds the copy (all
 * weights recomputed). A single append is indexed at once with the current
 * document frequencies, and the copy is rebuilt each time the store has
 * grown by a quarter, so that weights never lag far behind (O(1) amortised
 * per append; readers keep using the old copy until the new one is swapped
 * in). The append that makes the re-weighing due commits and publishes its
 * record first, releases wmu, and then runs the rebuild (rebuild(), below),
 * so its call returns once the new copy is in but other writers do not wait
 * for it. With lr_store_options.defer_reweigh (the gateway) that append
 * only sets reweigh_due and returns; the next lr_store_refresh() counts a
 * due re-weighing as a change and runs the same rebuild(), and publishing
 * any new copy clears the flag (publish()). A dense store's vectors never
 * lag, but its groups do: on the same schedule, and first when groups
 * become possible, its copy is rebuilt the same way (rebuild(): the
 * vectors read again from a snapshot, the groups fitted to them), deferred
 * alike; "re-weighing" below covers this regrouping too.
 *
 * Until the next rebuild, the records appended since the last one (and
 * those a catch-up added in place) make the copy differ from what a fresh
 * open of the file builds: they were weighed with the document
 * frequencies of their time and joined groups fitted without them.
 * built_whole marks where they begin; lr_store_rebuild() is a refresh that
 * counts them as a reason to rebuild (REBUILD_CONVERGE), so that a
 * long-running process (the gateway, on SIGHUP and at a bounded pace) can
 * route as a fresh open does.
 *
 * Other writers: another process (`llmroute import` beside a gateway) may
 * commit to the same file. Record and model ids are assigned from the copy,
 * so every write first checks, inside its BEGIN IMMEDIATE (which serialises
 * writers across processes), whether another connection has committed since
 * the copy last matched the database (PRAGMA data_version), and if so
 * catches up before it assigns any id (catch_up()): a few new rows (at most
 * a quarter of the copy, plus 16) are read and added to the copy in place,
 * as appends are; for more, the writer rolls back, has the copy rebuilt
 * without holding wmu or SQLite's write lock, and tries again (the second
 * time it catches up whatever the number, the old way, inside its
 * transaction). An import instead takes its ids from the file when far
 * behind, as it builds the whole copy again as it commits anyway. Readers
 * learn of other processes' commits through lr_store_refresh(), which makes
 * the same check outside a transaction and, when it finds a change,
 * rebuilds the copy (the gateway calls it periodically): records another
 * process adds are routed on after this process's next refresh or write,
 * or its next open.
 *
 * Rebuilding beside the writers (rebuild(): a refresh, a writer's catch-up
 * with many rows, the re-weighing): the new copy is built from a read
 * snapshot on a second, read-only connection (`rdb`; WAL lets the writer
 * connection go on committing meanwhile) while no lock is held but
 * `rebuild_mu` (one rebuild at a time); the snapshot is known by its
 * record count, model count and largest outcome rowid (lr__hist.out_rowid,
 * as outcomes have no index but their rowid). Then wmu is taken, the rows
 * committed after the snapshot (this process's appends meanwhile, other
 * processes' commits) are read on the writer connection in a read
 * transaction and added to the new copy exactly as appends add them
 * (delta_read(), delta_apply()), and the copy is published with the data
 * version read in that transaction; rebuild_at follows the snapshot's
 * size, as after the old rebuild followed by those appends. Appends wait
 * only for that catch-up. When more rows than a catch-up in place allows
 * came meanwhile, or an import replaced the copy, it starts over from a
 * newer snapshot, and the third attempt catches up whatever the number.
 * A store in memory (no second connection can see it) is rebuilt the old
 * way, under wmu.
 *
 * Threads: routing threads read the in-memory copy under the read lock.
 * Writers take `wmu` (one writer at a time), commit to SQLite without
 * blocking readers, and take the write lock only to grow arrays (before the
 * commit, so an allocation failure never leaves memory behind disk) and to
 * publish the new data (after it). reweigh_due is atomic: it is set under
 * wmu and read without any lock (lr_store_reweigh_due()). rebuild() runs
 * on the thread that calls lr_store_refresh() or appends, holding
 * rebuild_mu (always taken before wmu, never while holding it); it builds
 * its copy unseen by anyone, with st->rdb, which only the holder of
 * rebuild_mu uses. A rebuild of the copy
 * (hist_load) may split its per-record work over threads of its own
 * (load_tfidf(), parallel.h), all joined before it returns; they touch only
 * the copy being built, which no reader sees yet.
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np: writers must not starve */

#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "parallel.h"
#include "strategy.h" /* lr__error_number() */

/* How long a statement waits for another connection's write transaction
 * before it fails with SQLITE_BUSY (LR_EBUSY). */
#define BUSY_TIMEOUT_MS 5000

size_t lr__store_parallel_min = LR__STORE_PARALLEL_MIN;
size_t lr__store_text_batch = LR__STORE_TEXT_BATCH;

struct lr_store {
    sqlite3 *db;
    char *path;
    char embedder[LR__STORE_MAX_EMBEDDER + 1];
    int dense;
    size_t dim; /* dense dimension, 0 = not known yet */
    int read_only;
    /* A read-only handle that may not write the -shm file either: SQLite
     * reads it in its read-only-shm mode (see rebuild_needed()). */
    int shm_read_only;
    size_t max_records;
    unsigned threads; /* for rebuilds of the copy (parallel.h); 0 = the default */
    pthread_mutex_t wmu;
    pthread_rwlock_t rw;
    struct lr__hist *hist;
    size_t rebuild_at; /* re-weigh (tfidf-v1) or regroup (dense) when n reaches this */
    /* The records of the copy that were built whole (open, import, a
     * rebuild's snapshot); those past it were added one by one (appends,
     * catch-ups), weighed with the document frequencies of their time and
     * put in groups fitted without them, so a copy with more differs from
     * what a fresh open of the file builds (lr_store_rebuild()). Written
     * with wmu and the write lock held, read under either. */
    size_t built_whole;
    /* PRAGMA data_version when `hist` last matched the database: it changes
     * when another connection (another process, or another handle on the
     * same file) commits, never for this connection's own commits. */
    sqlite3_int64 data_version;
    /* Counts the copies published whole (a rebuild, an import), so that a
     * rebuild can tell that its copy was overtaken meanwhile. wmu held. */
    uint64_t generation;
    /* One rebuild beside the writers at a time (rebuild()); taken before
     * wmu, never while holding it. rdb, the read-only connection it reads
     * its snapshot from, is used only with it held. */
    pthread_mutex_t rebuild_mu;
    sqlite3 *rdb;
    /* The file st->db opened, as an absolute name with its device and inode
     * (db_file NULL: in memory, or not known): rdb opens that same file
     * later, whatever the working directory or the path then name. SQLite
     * gives the name with symbolic links resolved, so it goes on naming
     * that file when a link on the way is swapped. db_path: the path as
     * given, made absolute with the working directory of the open, links
     * not resolved (NULL in memory): what file_moved() stats, following
     * links as they are at each check, and what store_reopen() opens. */
    char *db_file;
    char *db_path;
    dev_t db_dev;
    ino_t db_ino;
    /* lr_store_options.defer_reweigh: the append that makes the re-weighing
     * due leaves it to the next lr_store_refresh(). reweigh_due says that
     * one is waiting (set by that append under wmu, cleared when a copy is
     * published, unless the rows added after its snapshot already make the
     * next one due); read without any lock by lr_store_reweigh_due(). */
    int defer_reweigh;
    atomic_int reweigh_due;
    /* lr_store_set_key_ttl(): seconds an idempotency key is remembered, 0
     * for good. Read once by each keyed append, without a lock. */
    atomic_llong key_ttl;
    /* Set once open has its first copy (before the store is shared): a
     * later build that cannot group its records fails (groups_built()). */
    int opened;
    /* The file, opened beside SQLite's connections and holding a shared
     * flock() for the handle's life (presence_take()); -1 in memory, or
     * where the file system has no flock(). made_file: this open created
     * the file (a failed open then removes it, as lr_store_discard()). */
    int pfd;
    int made_file;
    /* The path no longer names the file st->db opened (file_moved()): 0,
     * or a GONE_* reason, set by the write or refresh that
     * noticed (wmu held). From then on st->db and st->rdb are not used but
     * to close them; writes are refused, and lr_store_refresh() opens the
     * file at the path (store_reopen()). want_dim: the dense dimension the
     * store was opened with, which that file must have too. Atomic:
     * lr_store_gone() reads it without a lock. gone_why: why the last
     * refresh could not open the file at the path (GONE_UNOPENABLE). */
    atomic_int gone;
    char gone_why[sizeof(((struct lr_error *)0)->message)];
    size_t want_dim;
};

/* GONE_DIRECTORY, GONE_NOT_REGULAR: something that is not a regular file
 * (a directory, or a FIFO, socket or device) is at the path now.
 * GONE_UNOPENABLE: a regular file is, but the last refresh could not open it
 * as a store (gone_why says why). */
enum {
    GONE_REPLACED = 1,
    GONE_REMOVED = 2,
    GONE_DIRECTORY = 3,
    GONE_NOT_REGULAR = 4,
    GONE_UNOPENABLE = 5
};

/* Appends re-weigh the whole index when the store has grown by a quarter
 * since the last rebuild: each append then costs O(1) amortised, and no
 * document's weights lag far behind the document frequencies. A dense
 * store's weights never change, but its groups (groups.h) are fitted to
 * the vectors of the last build, so it is regrouped on the same rule; below
 * the size at which groups become possible there is nothing to fit, so it
 * waits for that size instead. A sparse store's schedule also stops at
 * that size on its way past it, so both kinds get their first groups at
 * the same record. */
static size_t next_rebuild(const struct lr_store *st, size_t n)
{
    size_t at = n + n / 4 + 16;
    if (n < LR__GROUPS_MIN_RECORDS && (st->dense || at > LR__GROUPS_MIN_RECORDS))
        return LR__GROUPS_MIN_RECORDS;
    return at;
}

/* ==== Errors ==== */

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int fail(struct lr_error *err, int code, int line, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->line = line;
        va_start(ap, fmt);
        lr__error_vformat(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A name read from the store's file (its embedder, its schema version), as
 * a message may show it: a corrupted or hostile file must not put control
 * characters or invalid UTF-8 on a terminal or in a log (lr__error_shown():
 * escaped, and past SHOWN_MAX bytes "..." ends it). Returns out. */
#define SHOWN_MAX 80
#define SHOWN_CAP LR__SHOWN_CAP(SHOWN_MAX)
static const char *shown(const char *name, char *out, size_t cap)
{
    return lr__error_shown(name, SHOWN_MAX, out, cap);
}

/* SQLITE_BUSY (and SQLITE_LOCKED) after BUSY_TIMEOUT_MS: another connection
 * has held its write transaction all that time (an import into the store a
 * gateway uses). Transient, so it is LR_EBUSY and not LR_ESTORE: the caller
 * may try again, and nothing was written. */
static int sql_code(sqlite3 *db)
{
    int rc = sqlite3_errcode(db) & 0xff;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return LR_EBUSY;
    return (rc == SQLITE_IOERR || rc == SQLITE_FULL || rc == SQLITE_CANTOPEN) ? LR_EIO
                                                                               : LR_ESTORE;
}

/* SQLite says "unable to open database file" or "attempt to write a
 * readonly database" and not why; the file system can. Writes to buf the
 * reason found by access() on the store's file and its folder (where
 * SQLite keeps the -wal and -shm files, which even a reader needs), as
 * " (...)", or "" when neither is refused. */
static void fs_reason(const struct lr_store *st, char *buf, size_t cap)
{
    const char *slash = strrchr(st->path, '/');
    char dir[PATH_MAX];

    buf[0] = '\0';
    if (strcmp(st->path, ":memory:") == 0 || strncmp(st->path, "file:", 5) == 0)
        return;
    if (access(st->path, F_OK) == 0 && access(st->path, st->read_only ? R_OK : R_OK | W_OK) != 0) {
        snprintf(buf, cap, " (access to the file: %s)", strerror(errno));
        return;
    }
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == st->path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - st->path), st->path);
    if (access(dir, W_OK | X_OK) != 0)
        snprintf(buf, cap,
                 " (its folder '%.200s' is not writable: %s; SQLite keeps the store's -wal and "
                 "-shm files there, even to read it)",
                 dir, strerror(errno));
}

/* Why a SQLite call on `db` failed, beyond its own words, into buf as
 * " (...)" or "": when it could not open or write a file, the file
 * system's reason for the store's file or folder (fs_reason()); else, for
 * an I/O error, the system's error of the failed call ("No space left on
 * device", "File too large"), which SQLite keeps but does not put in its
 * message. Returns the LR_E* code: an access problem (a file or folder this
 * process may not write) is LR_ESTORE, a store that cannot be used as
 * given, not an I/O fault. */
static int sql_reason(const struct lr_store *st, sqlite3 *db, char *buf, size_t cap)
{
    int code = sql_code(db), primary = sqlite3_errcode(db) & 0xff, e;
    buf[0] = '\0';
    if (primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY)
        fs_reason(st, buf, cap);
    if (*buf)
        return code == LR_EIO ? LR_ESTORE : code;
    if (primary != SQLITE_IOERR && primary != SQLITE_CANTOPEN)
        return code;
    /* SQLite notes the errno of some failures only (an open, the -shm);
     * a failed write to the -wal or the file is kept on that file. */
    if ((e = sqlite3_system_errno(db)) == 0 && primary == SQLITE_IOERR) {
        sqlite3_file *wal = NULL;
        if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) == SQLITE_OK &&
            wal && wal->pMethods)
            wal->pMethods->xFileControl(wal, SQLITE_FCNTL_LAST_ERRNO, &e);
        if (e == 0)
            sqlite3_file_control(db, "main", SQLITE_FCNTL_LAST_ERRNO, &e);
    }
    if (e > 0)
        snprintf(buf, cap, " (%s)", strerror(e));
    return code;
}

/* Fill err for a failed SQLite call on `db` (st->db or st->rdb); `detail`
 * is SQLite's message, followed by the reason sql_reason() finds. */
static int sql_fail_msg(struct lr_store *st, sqlite3 *db, struct lr_error *err, const char *what,
                        const char *detail)
{
    char why[320];
    int code = sql_reason(st, db, why, sizeof(why));
    if (code == LR_EBUSY)
        return fail(err, code, 0,
                    "history store '%s' is busy: another process has held it for over %d s "
                    "(%.40s: %s); nothing was written, try again",
                    st->path, BUSY_TIMEOUT_MS / 1000, what, detail);
    return fail(err, code, 0, "history store '%s': %s: %s%s", st->path, what, detail, why);
}

static int db_fail(struct lr_store *st, sqlite3 *db, struct lr_error *err, const char *what)
{
    return sql_fail_msg(st, db, err, what, sqlite3_errmsg(db));
}

static int sql_fail(struct lr_store *st, struct lr_error *err, const char *what)
{
    return db_fail(st, st->db, err, what);
}

/* ==== Model names ==== */

static uint64_t str_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

int lr__names_find(const struct lr__names *t, const char *name)
{
    if (t->n_slots == 0)
        return -1;
    size_t mask = t->n_slots - 1, i = (size_t)(str_hash(name) & mask);
    while (t->slots[i]) {
        uint32_t id = t->slots[i] - 1;
        if (strcmp(t->names[id], name) == 0)
            return (int)id;
        i = (i + 1) & mask;
    }
    return -1;
}

static void names_place(struct lr__names *t, uint32_t id)
{
    size_t mask = t->n_slots - 1, i = (size_t)(str_hash(t->names[id]) & mask);
    while (t->slots[i])
        i = (i + 1) & mask;
    t->slots[i] = id + 1;
}

/* Room for `extra` more names without allocating. */
int lr__names_reserve(struct lr__names *t, size_t extra)
{
    size_t need = t->n + extra;
    if (need <= t->cap)
        return 0;
    size_t cap = t->cap < 16 ? 16 : t->cap * 2;
    while (cap < need)
        cap *= 2;
    char **names = realloc(t->names, cap * sizeof(*names));
    if (!names)
        return LR_ENOMEM;
    t->names = names;
    size_t n_slots = 1;
    while (n_slots < 2 * cap)
        n_slots <<= 1;
    uint32_t *slots = calloc(n_slots, sizeof(*slots));
    if (!slots)
        return LR_ENOMEM; /* names grew, which is harmless */
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    t->cap = cap;
    for (size_t id = 0; id < t->n; id++)
        names_place(t, (uint32_t)id);
    return 0;
}

/* Add an owned name (room reserved); returns its id. */
uint32_t lr__names_add(struct lr__names *t, char *name)
{
    uint32_t id = (uint32_t)t->n++;
    t->names[id] = name;
    names_place(t, id);
    return id;
}

void lr__names_free(struct lr__names *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->names[i]);
    free(t->names);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ==== The in-memory copy ==== */

static void hist_free(struct lr__hist *h)
{
    if (!h)
        return;
    free(h->out_start);
    free(h->outs);
    lr__names_free(&h->models);
    free(h->mstats);
    lr__space_free(h->df, sizeof(*h->df));
    lr__sindex_free(&h->sidx);
    lr__dindex_free(&h->didx);
    lr__groups_free(&h->groups);
    lr__twins_free(&h->twins);
    free(h);
}

/* Room for `recs` more records, `outs` more outcomes, `models` more models. */
static int hist_reserve(struct lr__hist *h, size_t recs, size_t outs, size_t models)
{
    if (h->n + recs > h->cap || !h->out_start) {
        size_t cap = h->cap < 64 ? 64 : h->cap + h->cap / 2;
        if (cap < h->n + recs)
            cap = h->n + recs;
        uint32_t *os = realloc(h->out_start, (cap + 1) * sizeof(*os));
        if (!os)
            return LR_ENOMEM;
        if (!h->out_start)
            os[0] = 0;
        h->out_start = os;
        h->cap = cap;
    }
    if (h->n_outs + outs > h->cap_outs) {
        size_t cap = h->cap_outs < 256 ? 256 : h->cap_outs + h->cap_outs / 2;
        if (cap < h->n_outs + outs)
            cap = h->n_outs + outs;
        if (cap > UINT32_MAX)
            return LR_ENOMEM;
        struct lr__outcome *o = realloc(h->outs, cap * sizeof(*o));
        if (!o)
            return LR_ENOMEM;
        h->outs = o;
        h->cap_outs = cap;
    }
    if (models) {
        size_t old_cap = h->models.cap;
        if (lr__names_reserve(&h->models, models) != 0)
            return LR_ENOMEM;
        if (h->models.cap != old_cap || !h->mstats) {
            struct lr__model_stats *ms = realloc(h->mstats, h->models.cap * sizeof(*ms));
            if (!ms)
                return LR_ENOMEM;
            memset(ms + old_cap, 0, (h->models.cap - old_cap) * sizeof(*ms));
            h->mstats = ms;
        }
    }
    return 0;
}

static void hist_add_outcome(struct lr__hist *h, uint32_t model, double c, double o)
{
    struct lr__outcome *x = &h->outs[h->n_outs++];
    x->model = model;
    x->correctness = (float)c;
    x->output_tokens = (float)o;
    h->mstats[model].n += 1.0;
    h->mstats[model].sum_correct += c;
    h->mstats[model].sum_output += o;
}

int lr__hist_model_id(const struct lr__hist *h, const char *name)
{
    return lr__names_find(&h->models, name);
}

/* ==== Loading from SQLite ==== */

/* The value of column col of row q, whose type sqlite3_column_type() gave
 * as `type` before any conversion, as a message about the file shows it: a
 * number as stored, a text quoted and escaped (shown()), else what it is.
 * Returns out. */
static const char *column_shown(sqlite3_stmt *q, int col, int type, char *out, size_t cap)
{
    char text[SHOWN_CAP], num[LR__NUMBER_TEXT];

    if (type == SQLITE_INTEGER) {
        snprintf(out, cap, "%lld", (long long)sqlite3_column_int64(q, col));
    } else if (type == SQLITE_FLOAT) {
        snprintf(out, cap, "%s", lr__error_number(num, sqlite3_column_double(q, col)));
    } else if (type == SQLITE_TEXT) {
        const char *t = (const char *)sqlite3_column_text(q, col);
        snprintf(out, cap, "'%s'", shown(t ? t : "", text, sizeof(text)));
    } else if (type == SQLITE_BLOB) {
        snprintf(out, cap, "a blob of %d bytes", sqlite3_column_bytes(q, col));
    } else {
        snprintf(out, cap, "NULL");
    }
    return out;
}

/* A row's value that import would never have written (record.c's rules):
 * the file was edited by hand or by another program. SQLite reads a text
 * such as 'abc' as the number 0, so a type is checked as well as a range.
 * Refused naming the record, the column and the value; LR_ESTORE. */
static int row_refused(struct lr_store *st, sqlite3_stmt *q, int col, int type,
                       sqlite3_int64 record, const char *column, const char *expected,
                       struct lr_error *err)
{
    char v[SHOWN_CAP + 4];
    return fail(err, LR_ESTORE, 0, "history store '%s': record %lld: %s is %s, not %s", st->path,
                (long long)record, column, column_shown(q, col, type, v, sizeof(v)), expected);
}

/* Column col of q is a record's input_tokens: a whole number, 0 or more
 * (import writes its estimate when the data has none). No upper bound is
 * checked here, nor below for output_tokens: import took counts up to
 * 1e12 before record.c's cap of 1e9, and such stores still open. */
static int input_tokens_check(struct lr_store *st, sqlite3_stmt *q, int col, sqlite3_int64 id,
                              struct lr_error *err)
{
    int type = sqlite3_column_type(q, col);
    if (type != SQLITE_INTEGER || sqlite3_column_int64(q, col) < 0)
        return row_refused(st, q, col, type, id, "records.input_tokens",
                           "a whole number of 0 or more", err);
    return 0;
}

/* Columns 2 and 3 of q are an outcome's correctness and output_tokens, of
 * record `rec`: their values in *c and *o when they are numbers, in [0,1]
 * and finite and 0 or more, else LR_ESTORE. */
static int outcome_check(struct lr_store *st, sqlite3_stmt *q, sqlite3_int64 rec, double *c,
                         double *o, struct lr_error *err)
{
    int tc = sqlite3_column_type(q, 2), to = sqlite3_column_type(q, 3);
    int nc = tc == SQLITE_FLOAT || tc == SQLITE_INTEGER;
    int no = to == SQLITE_FLOAT || to == SQLITE_INTEGER;
    *c = nc ? sqlite3_column_double(q, 2) : -1.0;
    *o = no ? sqlite3_column_double(q, 3) : -1.0;
    if (!(*c >= 0.0 && *c <= 1.0))
        return row_refused(st, q, 2, tc, rec, "outcomes.correctness", "a number in [0,1]", err);
    if (!(*o >= 0.0) || !isfinite(*o))
        return row_refused(st, q, 3, to, rec, "outcomes.output_tokens",
                           "a finite number of 0 or more", err);
    return 0;
}

/* A dense store reads no texts (read_texts() checks a sparse store's
 * input_tokens as it reads them): its records from id `from` on are read
 * for their input_tokens alone. */
static int records_check(struct lr_store *st, sqlite3 *db, size_t from, struct lr_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = 0, s = SQLITE_DONE;

    if (sqlite3_prepare_v2(db, "SELECT id, input_tokens FROM records WHERE id >= ? ORDER BY id",
                           -1, &q, NULL) ||
        sqlite3_bind_int64(q, 1, (sqlite3_int64)from))
        rc = db_fail(st, db, err, "reading records");
    while (rc == 0 && (s = sqlite3_step(q)) == SQLITE_ROW)
        rc = input_tokens_check(st, q, 1, sqlite3_column_int64(q, 0), err);
    if (rc == 0 && s != SQLITE_DONE)
        rc = db_fail(st, db, err, "reading records");
    sqlite3_finalize(q);
    return rc;
}

static int load_models(struct lr_store *st, sqlite3 *db, struct lr__hist *h,
                       struct lr_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = 0, s;
    if (sqlite3_prepare_v2(db, "SELECT id, name FROM models ORDER BY id", -1, &q, NULL))
        return db_fail(st, db, err, "reading models");
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 1);
        if (sqlite3_column_int64(q, 0) != (sqlite3_int64)h->models.n || !name ||
            h->models.n >= LR__STORE_MAX_MODELS) {
            rc = fail(err, LR_ESTORE, 0, "history store '%s': models table is inconsistent",
                      st->path);
            goto out;
        }
        char *d = dup_str(name);
        if (!d || hist_reserve(h, 0, 0, 1) != 0) {
            free(d);
            rc = fail(err, LR_ENOMEM, 0, "out of memory loading the history store");
            goto out;
        }
        lr__names_add(&h->models, d);
    }
    if (s != SQLITE_DONE)
        rc = db_fail(st, db, err, "reading models");
out:
    sqlite3_finalize(q);
    return rc;
}

static int load_outcomes(struct lr_store *st, sqlite3 *db, struct lr__hist *h,
                         struct lr_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = 0, s;
    size_t filled = 0; /* out_start[0 .. filled) are set */

    /* Outcomes are inserted with their record, so rowid order is record
     * order; a row out of order means the file was edited by hand. */
    if (sqlite3_prepare_v2(db,
                           "SELECT record_id, model_id, correctness, output_tokens, rowid "
                           "FROM outcomes ORDER BY rowid",
                           -1, &q, NULL))
        return db_fail(st, db, err, "reading outcomes");
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        sqlite3_int64 rec = sqlite3_column_int64(q, 0), model = sqlite3_column_int64(q, 1);
        double c, o;
        if (rec < 0 || (size_t)rec >= h->n || (size_t)rec + 1 < filled || model < 0 ||
            (size_t)model >= h->models.n) {
            rc = fail(err, LR_ESTORE, 0, "history store '%s': outcomes table is inconsistent",
                      st->path);
            goto out;
        }
        if ((rc = outcome_check(st, q, rec, &c, &o, err)) != 0)
            goto out;
        if (hist_reserve(h, 0, 1, 0) != 0) {
            rc = fail(err, LR_ENOMEM, 0, "out of memory loading the history store");
            goto out;
        }
        while (filled <= (size_t)rec)
            h->out_start[filled++] = (uint32_t)h->n_outs;
        hist_add_outcome(h, (uint32_t)model, c, o);
        h->out_rowid = sqlite3_column_int64(q, 4);
    }
    if (s != SQLITE_DONE) {
        rc = db_fail(st, db, err, "reading outcomes");
        goto out;
    }
    while (filled <= h->n)
        h->out_start[filled++] = (uint32_t)h->n_outs;
out:
    sqlite3_finalize(q);
    return rc;
}

/* ==== TF-IDF rebuild ==== */

/* Threads for rebuilding a copy of n records: 1 (no thread started) below
 * lr__store_parallel_min records, where starting threads would cost more
 * than it saves, else the store's setting (0: the default). */
static unsigned build_threads(const struct lr_store *st, size_t n)
{
    if (n < lr__store_parallel_min)
        return 1;
    return st->threads ? st->threads : lr__parallel_default_threads();
}

/* The texts are read in batches of lr__store_text_batch records (each cut
 * to the LR__TFIDF_MAX_TEXT bytes the embedder reads), so that only one
 * batch's texts are in memory at a time. Two passes go over all the
 * batches, each batch split over threads by contiguous chunks of records
 * (parallel.h): counting the document frequencies, then (reading the
 * batches again) weighing every record's vector. A record's vector depends
 * on its text and the finished df table only, and the chunks' df counts
 * are exact integer sums, so the copy is the same whatever the thread
 * count and the batch size. */
struct tfidf_build {
    const char *text;      /* the batch's texts, back to back */
    const size_t *text_at; /* record base + i is text[text_at[i] .. text_at[i + 1]) */
    size_t base;           /* the batch's first record */
    uint32_t *df_part[LR__PARALLEL_MAX_THREADS]; /* pass 1: each chunk's counts */
    uint32_t *bound; /* pass 1: record i's most features, min(distinct, max kept) */
    const uint32_t *df;      /* pass 2: the merged counts */
    uint32_t ndocs;
    struct lr__feat *feats;  /* pass 2: record i's features go to feats + slot[i] */
    const size_t *slot;
    uint32_t *nfeat;         /* pass 2: how many record i got */
    int oom[LR__PARALLEL_MAX_THREADS];
};

static void tfidf_count_chunk(void *ctx, size_t begin, size_t end, unsigned chunk)
{
    struct tfidf_build *b = ctx;
    uint32_t *df = b->df_part[chunk];
    struct lr__terms t;

    lr__terms_init(&t);
    for (size_t i = begin; i < end; i++) {
        if (lr__terms_count(&t, b->text + b->text_at[i], b->text_at[i + 1] - b->text_at[i])) {
            b->oom[chunk] = 1;
            break;
        }
        for (size_t j = 0; j < t.n; j++) {
            uint32_t f = lr__terms_feature(&t, j);
            if (df[f] < UINT32_MAX)
                df[f]++;
        }
        /* Every feature has df >= 1 after this pass, so this bounds the
         * vector's length. */
        b->bound[b->base + i] =
            (uint32_t)(t.n < LR__TFIDF_MAX_FEATURES ? t.n : LR__TFIDF_MAX_FEATURES);
    }
    lr__terms_free(&t);
}

static void tfidf_weigh_chunk(void *ctx, size_t begin, size_t end, unsigned chunk)
{
    struct tfidf_build *b = ctx;
    struct lr__terms t;

    lr__terms_init(&t);
    for (size_t i = begin; i < end; i++) {
        size_t r = b->base + i;
        if (lr__terms_count(&t, b->text + b->text_at[i], b->text_at[i + 1] - b->text_at[i])) {
            b->oom[chunk] = 1;
            break;
        }
        /* The same text (both passes run in one transaction) gives the same
         * terms as in the first pass, so at most bound[r] features come
         * out; capping at bound[r] keeps the slot safe all the same and
         * changes nothing, as bound[r] is min(distinct, max kept). */
        b->nfeat[r] = (uint32_t)lr__tfidf_vector(&t, b->df, b->ndocs, 0, b->bound[r],
                                                 b->feats + b->slot[r]);
    }
    lr__terms_free(&t);
}

/* The texts of records [lo, hi), truncated to what the embedder reads, into
 * *buf (grown as needed, *cap its size; text_at[i] .. text_at[i + 1] is
 * record lo + i's). */
static int read_texts(struct lr_store *st, sqlite3 *db, size_t lo, size_t hi, char **buf,
                      size_t *cap, size_t *text_at, struct lr_error *err)
{
    sqlite3_stmt *q = NULL;
    size_t len = 0, i = 0;
    int rc = 0, s;

    if (sqlite3_prepare_v2(db,
                           "SELECT id, query, input_tokens FROM records WHERE id >= ?1 AND "
                           "id < ?2 ORDER BY id",
                           -1, &q, NULL) ||
        sqlite3_bind_int64(q, 1, (sqlite3_int64)lo) || sqlite3_bind_int64(q, 2, (sqlite3_int64)hi)) {
        rc = db_fail(st, db, err, "reading records");
        goto out;
    }
    text_at[0] = 0;
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(q, 1);
        size_t n = t ? (size_t)sqlite3_column_bytes(q, 1) : 0;
        if (lo + i >= hi || sqlite3_column_int64(q, 0) != (sqlite3_int64)(lo + i)) {
            rc = fail(err, LR_ESTORE, 0, "history store '%s': records changed while loading",
                      st->path);
            goto out;
        }
        if ((rc = input_tokens_check(st, q, 2, (sqlite3_int64)(lo + i), err)) != 0)
            goto out;
        if (n > LR__TFIDF_MAX_TEXT)
            n = LR__TFIDF_MAX_TEXT;
        if (len + n > *cap) {
            size_t ncap = *cap ? *cap * 2 : 1 << 16;
            while (ncap < len + n)
                ncap *= 2;
            char *nb = realloc(*buf, ncap);
            if (!nb) {
                rc = fail(err, LR_ENOMEM, 0, "out of memory loading the history store");
                goto out;
            }
            *buf = nb;
            *cap = ncap;
        }
        if (n)
            memcpy(*buf + len, t, n);
        len += n;
        text_at[++i] = len;
    }
    if (s != SQLITE_DONE)
        rc = db_fail(st, db, err, "reading records");
    else if (lo + i != hi)
        rc = fail(err, LR_ESTORE, 0, "history store '%s': records changed while loading",
                  st->path);
out:
    sqlite3_finalize(q);
    return rc;
}

/* One pass of the rebuild: every batch of records read, then `fn` run over
 * its chunks. Chunk c of any batch writes to the same df_part[c]. */
static int tfidf_pass(struct lr_store *st, sqlite3 *db, size_t n, size_t batch, unsigned threads,
                      unsigned most_chunks, lr__parallel_fn fn, struct tfidf_build *b,
                      char **buf, size_t *cap, size_t *text_at, struct lr_error *err)
{
    int rc;

    for (size_t lo = 0; lo < n; lo += batch) {
        size_t hi = n - lo < batch ? n : lo + batch;
        /* Each chunk gets at least a quarter of the threshold's records. */
        unsigned chunks = lr__parallel_chunks(hi - lo, threads, lr__store_parallel_min / 4);
        if (chunks > most_chunks)
            chunks = most_chunks;
        if ((rc = read_texts(st, db, lo, hi, buf, cap, text_at, err)) != 0)
            return rc;
        b->text = *buf ? *buf : "";
        b->text_at = text_at;
        b->base = lo;
        lr__parallel_run(hi - lo, chunks, fn, b);
        for (unsigned c = 0; c < chunks; c++)
            if (b->oom[c])
                return fail(err, LR_ENOMEM, 0, "out of memory loading the history store");
    }
    return 0;
}

/* What a build of the groups that failed (rc, for want of memory) means:
 * at open, the copy does without groups (the predictor falls back on the
 * store's means); for any later copy (a rebuild, an import), the build
 * fails, so that the copy in use keeps its groups: nothing is published (an
 * import is rolled back), and a re-weighing is tried again a quarter later
 * (lr_store_refresh() at its next call). */
static int groups_built(struct lr_store *st, int rc, struct lr_error *err)
{
    if (rc == 0 || !st->opened)
        return 0;
    return fail(err, rc, 0, "out of memory grouping the history store's records");
}

/* The same for the near-duplicate pairs (twins.h). */
static int twins_built(struct lr_store *st, int rc, struct lr_error *err)
{
    if (rc == 0 || !st->opened)
        return 0;
    return fail(err, rc, 0, "out of memory finding the history store's near-duplicate records");
}

static int load_tfidf(struct lr_store *st, sqlite3 *db, struct lr__hist *h, struct lr_error *err)
{
    struct tfidf_build b;
    char *text = NULL;
    size_t *text_at = NULL, *slot = NULL, *off = NULL, cap = 0, text_cap = 0;
    size_t batch = lr__store_text_batch ? lr__store_text_batch : 1;
    unsigned threads = build_threads(st, h->n);
    /* Chunks of the largest batch; the df tables are per chunk. */
    unsigned chunks = lr__parallel_chunks(h->n < batch ? h->n : batch, threads,
                                          lr__store_parallel_min / 4);
    int rc = 0;

    if (batch > h->n)
        batch = h->n ? h->n : 1;
    memset(&b, 0, sizeof(b));
    h->df = lr__space_alloc(sizeof(*h->df));
    text_at = malloc((batch + 1) * sizeof(*text_at));
    slot = malloc((h->n + 1) * sizeof(*slot));
    off = malloc((h->n + 1) * sizeof(*off));
    b.bound = malloc((h->n ? h->n : 1) * sizeof(*b.bound));
    b.nfeat = malloc((h->n ? h->n : 1) * sizeof(*b.nfeat));
    if (!h->df || !text_at || !slot || !off || !b.bound || !b.nfeat)
        goto nomem;

    /* Pass 1: document frequencies. Chunk 0 counts straight into h->df;
     * the others into tables of their own, kept over all the batches and
     * added in afterwards (exact: integers, saturating as the one-thread
     * count does). */
    b.df_part[0] = h->df;
    for (unsigned c = 1; c < chunks; c++)
        if (!(b.df_part[c] = lr__space_alloc(sizeof(uint32_t))))
            chunks = c; /* fewer, larger chunks: the same counts */
    if ((rc = tfidf_pass(st, db, h->n, batch, threads, chunks, tfidf_count_chunk, &b, &text,
                         &text_cap, text_at, err)) != 0)
        goto out;
    for (unsigned c = 1; c < chunks; c++) {
        const uint32_t *part = b.df_part[c];
        for (size_t f = 0; f < LR__TFIDF_SPACE; f++) {
            uint32_t sum = h->df[f] + part[f];
            h->df[f] = sum < part[f] ? UINT32_MAX : sum;
        }
        lr__space_free(b.df_part[c], sizeof(uint32_t));
        b.df_part[c] = NULL;
    }
    h->df_ndocs = (uint32_t)h->n;

    /* Pass 2: each record's vector into a slot sized by its bound (slots
     * are offsets into the one array for all the batches), then packed in
     * record order. */
    for (size_t i = 0; i < h->n; i++) {
        slot[i] = cap;
        cap += b.bound[i];
    }
    if (!(b.feats = malloc((cap ? cap : 1) * sizeof(*b.feats))))
        goto nomem;
    b.df = h->df;
    b.ndocs = (uint32_t)h->n;
    b.slot = slot;
    if ((rc = tfidf_pass(st, db, h->n, batch, threads, chunks, tfidf_weigh_chunk, &b, &text,
                         &text_cap, text_at, err)) != 0)
        goto out;
    free(text);
    text = NULL;
    off[0] = 0;
    for (size_t i = 0; i < h->n; i++) {
        memmove(b.feats + off[i], b.feats + slot[i], b.nfeat[i] * sizeof(*b.feats));
        off[i + 1] = off[i] + b.nfeat[i];
    }

    if (lr__sindex_build(&h->sidx, b.feats, off, (uint32_t)h->n) != 0)
        rc = fail(err, LR_ENOMEM, 0, "out of memory building the history index");
    else if (h->n > 0)
        rc = groups_built(st, lr__groups_build_sparse(&h->groups, h, b.feats, off,
                                                      lr__groups_count_for(h->n), threads),
                          err);
    if (rc == 0 && h->n > 0)
        rc = twins_built(st, lr__twins_build_sparse(&h->twins, h, b.feats, off, threads), err);
    goto out;
nomem:
    rc = fail(err, LR_ENOMEM, 0, "out of memory loading the history store");
out:
    for (unsigned c = 1; c < LR__PARALLEL_MAX_THREADS; c++)
        lr__space_free(b.df_part[c], sizeof(uint32_t));
    free(b.bound);
    free(b.nfeat);
    free(b.feats);
    free(text);
    free(text_at);
    free(slot);
    free(off);
    return rc;
}

static int load_dense(struct lr_store *st, sqlite3 *db, size_t dim, struct lr__hist *h,
                      struct lr_error *err)
{
    sqlite3_stmt *q = NULL;
    int rc = 0, s;
    h->didx.dim = dim;
    if (h->n == 0)
        return 0;
    if (dim == 0 || lr__dindex_reserve(&h->didx, h->n) != 0)
        return fail(err, dim ? LR_ENOMEM : LR_ESTORE, 0,
                    "history store '%s': cannot load %zu vectors of dimension %zu", st->path,
                    h->n, dim);
    if (sqlite3_prepare_v2(db, "SELECT record_id, vec FROM vectors ORDER BY record_id", -1, &q,
                           NULL))
        return db_fail(st, db, err, "reading vectors");
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(q, 1);
        size_t bytes = (size_t)sqlite3_column_bytes(q, 1);
        if (sqlite3_column_int64(q, 0) != (sqlite3_int64)h->didx.n || h->didx.n >= h->n ||
            bytes != dim * sizeof(float) || !blob) {
            rc = fail(err, LR_ESTORE, 0, "history store '%s': vectors table is inconsistent",
                      st->path);
            goto out;
        }
        lr__dindex_load(&h->didx, blob);
    }
    if (s != SQLITE_DONE)
        rc = db_fail(st, db, err, "reading vectors");
    else if (h->didx.n != h->n)
        rc = fail(err, LR_ESTORE, 0, "history store '%s': %zu records but %zu vectors",
                  st->path, h->n, h->didx.n);
    else
        lr__dindex_recentre(&h->didx);
out:
    sqlite3_finalize(q);
    return rc;
}

/* Build a fresh in-memory copy from what the connection `db` (st->db, or
 * st->rdb for a rebuild beside the writers) sees (inside a transaction,
 * that includes its own uncommitted rows); a dense store's vectors have
 * dimension `dim`. */
static int hist_load(struct lr_store *st, sqlite3 *db, size_t dim, struct lr__hist **out,
                     struct lr_error *err)
{
    struct lr__hist *h = calloc(1, sizeof(*h));
    sqlite3_stmt *q = NULL;
    int rc;

    *out = NULL;
    if (!h)
        return fail(err, LR_ENOMEM, 0, "out of memory loading the history store");
    if ((rc = load_models(st, db, h, err)) != 0)
        goto fail;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*), COALESCE(MAX(id), -1) FROM records", -1, &q,
                           NULL) ||
        sqlite3_step(q) != SQLITE_ROW) {
        rc = db_fail(st, db, err, "counting records");
        goto fail;
    }
    sqlite3_int64 count = sqlite3_column_int64(q, 0), max_id = sqlite3_column_int64(q, 1);
    sqlite3_finalize(q);
    q = NULL;
    if (max_id != count - 1 || (uint64_t)count > LR__STORE_HARD_MAX_RECORDS) {
        rc = fail(err, LR_ESTORE, 0, "history store '%s': records table is inconsistent",
                  st->path);
        goto fail;
    }
    if (hist_reserve(h, (size_t)count, 0, 0) != 0) {
        rc = fail(err, LR_ENOMEM, 0, "out of memory loading the history store");
        goto fail;
    }
    h->n = (size_t)count;
    if ((rc = load_outcomes(st, db, h, err)) != 0)
        goto fail;
    if (st->dense && (rc = records_check(st, db, 0, err)) != 0)
        goto fail;
    rc = st->dense ? load_dense(st, db, dim, h, err) : load_tfidf(st, db, h, err);
    if (rc != 0)
        goto fail;
    if (st->dense && h->n > 0 &&
        (rc = groups_built(st, lr__groups_build_dense(&h->groups, h, h->didx.m, dim,
                                                      lr__groups_count_for(h->n),
                                                      build_threads(st, h->n)),
                           err)) != 0)
        goto fail;
    if (st->dense && h->n > 0 &&
        (rc = twins_built(st, lr__twins_build_dense(&h->twins, h, build_threads(st, h->n)),
                          err)) != 0)
        goto fail;
    *out = h;
    return 0;
fail:
    sqlite3_finalize(q);
    hist_free(h);
    return rc;
}

/* ==== Open and close ==== */

static int db_exec(struct lr_store *st, sqlite3 *db, const char *sql, struct lr_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        char why[320];
        int code = sql_reason(st, db, why, sizeof(why));
        if (code == LR_EBUSY)
            sql_fail_msg(st, db, err, sql, msg ? msg : "SQLite error");
        else
            fail(err, code, 0, "history store '%s': %s%s", st->path, msg ? msg : "SQLite error",
                 why);
        sqlite3_free(msg);
        return code;
    }
    return 0;
}

static int exec(struct lr_store *st, const char *sql, struct lr_error *err)
{
    return db_exec(st, st->db, sql, err);
}

static int meta_get(sqlite3 *db, const char *key, char *buf, size_t cap, int *found)
{
    sqlite3_stmt *q = NULL;
    int s;
    *found = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &q, NULL))
        return -1;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    s = sqlite3_step(q);
    if (s == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(q, 0);
        size_t bytes = (size_t)sqlite3_column_bytes(q, 0);
        snprintf(buf, cap, "%s", v ? v : "");
        /* 2: a value no store holds, with a NUL byte in it, which the copy
         * would cut to something else ("tfidf-v1\0x" is no "tfidf-v1").
         * One too long for buf is cut too, to a value that differs from
         * every name and number a store holds (see meta_dim). */
        *found = v && strlen(v) != bytes ? 2 : 1;
    }
    sqlite3_finalize(q);
    return s == SQLITE_ROW || s == SQLITE_DONE ? 0 : -1;
}

static int meta_set_dim(struct lr_store *st, size_t dim)
{
    sqlite3_stmt *q = NULL;
    char v[32];
    int s;
    snprintf(v, sizeof(v), "%zu", dim);
    if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO meta(key, value) VALUES('dim', ?)",
                           -1, &q, NULL))
        return -1;
    sqlite3_bind_text(q, 1, v, -1, SQLITE_TRANSIENT);
    s = sqlite3_step(q);
    sqlite3_finalize(q);
    return s == SQLITE_DONE ? 0 : -1;
}

/* The dense dimension in meta; 0 when none is recorded. */
static int meta_dim(struct lr_store *st, sqlite3 *db, size_t *dim, struct lr_error *err)
{
    char buf[LR__STORE_MAX_EMBEDDER + 64];
    int found;
    *dim = 0;
    if (meta_get(db, "dim", buf, sizeof(buf), &found) != 0)
        return db_fail(st, db, err, "reading meta");
    if (found == 2 || (found && strlen(buf) >= sizeof(buf) - 1))
        return fail(err, LR_ESTORE, 0,
                    "history store '%s': meta dim is not valid (a NUL byte in it, or too long)",
                    st->path);
    if (found) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || end == buf || *end || v > LR__STORE_MAX_DIM) {
            char name[SHOWN_CAP];
            return fail(err, LR_ESTORE, 0, "history store '%s': meta dim '%s' is not valid",
                        st->path, shown(buf, name, sizeof(name)));
        }
        *dim = (size_t)v;
    }
    return 0;
}

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS models(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE IF NOT EXISTS records(id INTEGER PRIMARY KEY, query TEXT NOT NULL,"
    " input_tokens INTEGER NOT NULL, task TEXT);"
    "CREATE TABLE IF NOT EXISTS outcomes(record_id INTEGER NOT NULL, model_id INTEGER NOT NULL,"
    " correctness REAL NOT NULL, output_tokens REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS vectors(record_id INTEGER PRIMARY KEY, vec BLOB NOT NULL);";

/* The idempotency keys of keyed appends (lr_store_add_outcome_keyed), each
 * with the record it was committed with, when (unix seconds, from the
 * store's clock) and for how long it is kept (ttl: seconds from then, the
 * committing handle's lr_store_set_key_ttl() at the time; 0 for good).
 * Each key carries its own retention so that handles (processes) with
 * different settings never cut short each other's keys: a key is live
 * while committed_at + ttl is in the future, whoever asks, and only keys
 * past their own retention are deleted. Added by every writable open, so
 * stores made before it gain the table; a read-only open leaves the file
 * as it is (and, not writing, never looks a key up).
 *
 * ttl is NULL for a legacy key: one a store held before the column came
 * (the migration adds it with no default), or one a writer that predates
 * the column inserts later (it names three columns). Nobody knows what
 * time-to-live its writer used (a deployment may keep keys for good, or a
 * week), so such a key is judged by the asking handle's setting, as the
 * writers of that time did: a duplicate while younger than it (for good
 * with 0), deleted only by a handle whose setting is over 0 once older
 * than that. committed_at's default serves writers that predate it (they
 * insert two columns): their keys get the time of their commit. Expired
 * keys are found through KEYS_INDEX, soonest-expired first
 * (keys_purge()). */
static const char KEYS_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS feedback_keys(key TEXT PRIMARY KEY,"
    " record_id INTEGER NOT NULL,"
    " committed_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)),"
    " ttl INTEGER);";

/* Keys that expire, by their expiry time, and legacy keys (ttl NULL) by
 * their age: keys_purge() reads the expired ones in that order without
 * scanning the live ones. */
static const char KEYS_INDEX[] =
    "CREATE INDEX IF NOT EXISTS feedback_keys_expiry ON feedback_keys(committed_at + ttl)"
    " WHERE ttl > 0;"
    "CREATE INDEX IF NOT EXISTS feedback_keys_legacy ON feedback_keys(committed_at)"
    " WHERE ttl IS NULL;";

int64_t (*lr__store_clock)(void);

/* What feedback_keys lacks: KEYS_NO_TIME (a table made before key times),
 * KEYS_NO_TTL (made before per-key time-to-live), KEYS_NO_INDEX; 0 when it
 * is up to date, -1 on a SQLite error. */
#define KEYS_NO_TIME 1
#define KEYS_NO_TTL 2
#define KEYS_NO_INDEX 4
static int keys_lack(struct lr_store *st)
{
    sqlite3_stmt *q = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT (SELECT COUNT(*) FROM pragma_table_info('feedback_keys')"
                           " WHERE name = 'committed_at'),"
                           " (SELECT COUNT(*) FROM pragma_table_info('feedback_keys')"
                           " WHERE name = 'ttl'),"
                           " (SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'"
                           " AND name IN ('feedback_keys_expiry', 'feedback_keys_legacy'))",
                           -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        rc = (sqlite3_column_int64(q, 0) ? 0 : KEYS_NO_TIME) |
             (sqlite3_column_int64(q, 1) ? 0 : KEYS_NO_TTL) |
             (sqlite3_column_int64(q, 2) == 2 ? 0 : KEYS_NO_INDEX);
    sqlite3_finalize(q);
    return rc;
}

static int64_t store_now(void)
{
    return lr__store_clock ? lr__store_clock() : (int64_t)time(NULL);
}

/* A writable open's part for the keys: the table made if missing, and an
 * older table brought up to date in one transaction: one made before key
 * times gains its committed_at column, with the time of the migration for
 * the keys it holds (so none is forgotten before a whole time-to-live from
 * now; so do keys that writers predating the column insert later); one
 * made before per-key time-to-live gains its ttl column, nullable and with
 * no default, so the keys it holds (and those writers predating it insert
 * later) are legacy keys, judged by the asking handle's time-to-live as
 * before (see KEYS_SCHEMA); then the expiry indexes. ALTER TABLE ... ADD
 * COLUMN rewrites no row: the rows read the column's default. An
 * up-to-date table costs one query and writes nothing. A table whose ttl
 * column is NOT NULL DEFAULT 86400 (made by a development build) is left
 * as it is: its legacy keys read 86400, and only gains the legacy index. */
static int keys_open(struct lr_store *st, struct lr_error *err)
{
    char alter[160];
    int rc, lack;
    if ((rc = exec(st, KEYS_SCHEMA, err)) != 0)
        return rc;
    if ((lack = keys_lack(st)) <= 0)
        return lack < 0 ? sql_fail(st, err, "reading the idempotency keys' table") : 0;
    if ((rc = exec(st, "BEGIN IMMEDIATE", err)) != 0)
        return rc;
    /* Another process may have migrated it meanwhile. */
    if ((lack = keys_lack(st)) < 0) {
        rc = sql_fail(st, err, "reading the idempotency keys' table");
        goto out;
    }
    if (lack & KEYS_NO_TIME) {
        snprintf(alter, sizeof alter,
                 "ALTER TABLE feedback_keys ADD COLUMN committed_at INTEGER NOT NULL"
                 " DEFAULT %lld",
                 (long long)store_now());
        if ((rc = exec(st, alter, err)) != 0)
            goto out;
    }
    if ((lack & KEYS_NO_TTL) &&
        (rc = exec(st,
                   "ALTER TABLE feedback_keys ADD COLUMN ttl INTEGER",
                   err)) != 0)
        goto out;
    if ((lack & (KEYS_NO_TTL | KEYS_NO_INDEX)) && (rc = exec(st, KEYS_INDEX, err)) != 0)
        goto out;
    rc = exec(st, "COMMIT", err);
out:
    if (rc != 0)
        exec(st, "ROLLBACK", NULL);
    return rc;
}

/* Create the schema in an empty database, or check an existing one; *dim_out
 * gets the dense dimension (0: not known yet, or not dense). It is not
 * st->dim itself: when a refresh opens the file now at the path
 * (store_reopen()), routing threads read st->dim under the read lock
 * meanwhile, so it may change only when the new copy is published with it,
 * under the write lock. */
static int open_schema(struct lr_store *st, size_t want_dim, size_t *dim_out,
                       struct lr_error *err)
{
    char buf[LR__STORE_MAX_EMBEDDER + 64];
    int found, rc;

    if (meta_get(st->db, "schema_version", buf, sizeof(buf), &found) != 0) {
        /* Busy: another process has held the file's write lock all through
         * the busy timeout (a rollback journal's exclusive lock keeps
         * readers out too). Said at once: taken for a missing table, it
         * went on to wait the whole timeout again for the write lock. */
        if (sql_code(st->db) == LR_EBUSY)
            return sql_fail(st, err, "opening");
        /* No meta table: a new store, if the database is empty. Looked at
         * again inside the write transaction that would make it one: two
         * processes opening a new file at once both find no table first,
         * and the second then finds the first one's store. */
        int in_tx = 0;
        if (!st->read_only) {
            if ((rc = exec(st, "BEGIN IMMEDIATE", err)) != 0)
                return rc;
            in_tx = 1;
        }
        if (in_tx && meta_get(st->db, "schema_version", buf, sizeof(buf), &found) == 0) {
            exec(st, "COMMIT", NULL);
            in_tx = 0;
        } else {
            sqlite3_stmt *q = NULL;
            sqlite3_int64 objects = -1;
            if (sqlite3_prepare_v2(st->db, "SELECT COUNT(*) FROM sqlite_master", -1, &q,
                                   NULL) == SQLITE_OK &&
                sqlite3_step(q) == SQLITE_ROW)
                objects = sqlite3_column_int64(q, 0);
            sqlite3_finalize(q);
            if (objects < 0) {
                /* The message first: a ROLLBACK resets SQLite's, which then
                 * says "not an error". */
                rc = sql_fail(st, err, "opening");
                if (in_tx)
                    exec(st, "ROLLBACK", NULL);
                return rc;
            }
            if (objects != 0 && in_tx)
                exec(st, "ROLLBACK", NULL);
            if (objects > 0)
                return fail(err, LR_ESTORE, 0,
                            "'%s' is a SQLite database but not a history store", st->path);
            if (st->read_only)
                return fail(err, LR_ESTORE, 0, "'%s' is not a history store (opened read-only)",
                            st->path);
            char ins[LR__STORE_MAX_EMBEDDER + 256];
            char *quoted = sqlite3_mprintf("%Q", st->embedder);
            if (!quoted) {
                exec(st, "ROLLBACK", NULL);
                return fail(err, LR_ENOMEM, 0, "out of memory creating the history store");
            }
            snprintf(ins, sizeof(ins),
                     "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '%d'),"
                     "('embedder', %s), ('dim', '%zu');",
                     LR__STORE_SCHEMA_VERSION, quoted, want_dim);
            sqlite3_free(quoted);
            if ((rc = exec(st, SCHEMA, err)) != 0 || (rc = exec(st, ins, err)) != 0 ||
                (rc = exec(st, "COMMIT", err)) != 0) {
                exec(st, "ROLLBACK", NULL);
                return rc;
            }
            if (meta_get(st->db, "schema_version", buf, sizeof(buf), &found) != 0)
                return sql_fail(st, err, "creating");
        }
    }
    char name[SHOWN_CAP], other[SHOWN_CAP];
    if (found != 1 || strcmp(buf, "1") != 0)
        return fail(err, LR_ESTORE, 0,
                    "history store '%s' has schema version '%s'; this library reads version %d",
                    st->path,
                    found == 1   ? shown(buf, name, sizeof(name))
                    : found == 2 ? "(not valid: a NUL byte in it)"
                                 : "(none)",
                    LR__STORE_SCHEMA_VERSION);
    if (meta_get(st->db, "embedder", buf, sizeof(buf), &found) != 0 || !found)
        return fail(err, LR_ESTORE, 0, "history store '%s' does not name its embedder", st->path);
    if (found == 2)
        return fail(err, LR_ESTORE, 0,
                    "history store '%s' names its embedder with a NUL byte in it ('%s\\x00...'): "
                    "it is not a name a store holds",
                    st->path, shown(buf, name, sizeof(name)));
    if (strcmp(buf, st->embedder) != 0)
        return fail(err, LR_ESTORE, 0,
                    "history store '%s' was built with embedder '%s' but is opened with '%s': "
                    "open it with the same embedder, or import the history into a new store",
                    st->path, shown(buf, name, sizeof(name)),
                    shown(st->embedder, other, sizeof(other)));
    size_t dim;
    if ((rc = meta_dim(st, st->db, &dim, err)) != 0)
        return rc;
    if (st->dense && want_dim && dim && want_dim != dim)
        return fail(err, LR_ESTORE, 0,
                    "history store '%s' holds vectors of dimension %zu, not %zu as configured",
                    st->path, dim, want_dim);
    if (st->dense && want_dim && !dim && !st->read_only) {
        if (meta_set_dim(st, want_dim) != 0)
            return sql_fail(st, err, "writing meta");
        dim = want_dim;
    }
    *dim_out = st->dense ? (dim ? dim : want_dim) : 0;
    return 0;
}

/* ==== Other connections' commits ==== */

static int data_version(sqlite3 *db, sqlite3_int64 *v)
{
    sqlite3_stmt *q = NULL;
    int ok = sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &q, NULL) == SQLITE_OK &&
             sqlite3_step(q) == SQLITE_ROW;
    if (ok)
        *v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return ok ? 0 : -1;
}

/* hist_load() on `db` in a read transaction of its own, so that all its
 * statements see one moment of the database while other connections
 * commit, and (when `version` is not NULL) the data version of that
 * moment. A dense store's *dim, when 0, is read from that moment's meta.
 * Writes nothing. */
static int hist_load_snapshot(struct lr_store *st, sqlite3 *db, size_t *dim,
                              struct lr__hist **out, sqlite3_int64 *version,
                              struct lr_error *err)
{
    int rc;
    *out = NULL;
    if ((rc = db_exec(st, db, "BEGIN", err)) != 0)
        return rc;
    if (version && data_version(db, version) != 0)
        rc = db_fail(st, db, err, "reading the data version");
    else if (st->dense && *dim == 0)
        rc = meta_dim(st, db, dim, err);
    else
        rc = 0;
    if (rc == 0)
        rc = hist_load(st, db, *dim, out, err);
    db_exec(st, db, "ROLLBACK", NULL); /* ends the read; there is nothing to commit */
    return rc;
}

/* Publish `fresh` (wmu held): swapped in under the write lock, the old
 * copy freed; it matches the database as of data version `v`, and its
 * weights were computed over its first `built` records. */
static void publish(struct lr_store *st, struct lr__hist *fresh, size_t dim, sqlite3_int64 v,
                    size_t built)
{
    struct lr__hist *old;
    pthread_rwlock_wrlock(&st->rw);
    old = st->hist;
    st->hist = fresh;
    st->built_whole = built;
    if (st->dense)
        st->dim = dim;
    pthread_rwlock_unlock(&st->rw);
    hist_free(old);
    st->data_version = v;
    st->rebuild_at = next_rebuild(st, built);
    st->generation++;
    /* Due again only if the rows added after the snapshot reached the next
     * re-weighing already. */
    atomic_store(&st->reweigh_due, st->defer_reweigh && fresh->n >= st->rebuild_at);
}

/* Build the copy again from what the connection sees now, as at open
 * (weights, index and groups alike), and publish it; `v` is the data
 * version of that moment. The caller holds wmu and a transaction (so all
 * the statements see one moment of the database). Used where the copy is
 * rebuilt the old way, under wmu: a store with no second connection (in
 * memory), and a writer whose catch-up found many new rows twice over.
 * Routing keeps reading the old copy during the build. On failure the old
 * copy stays. */
static int reload(struct lr_store *st, sqlite3_int64 v, struct lr_error *err)
{
    struct lr__hist *fresh = NULL;
    size_t dim = st->dim;
    int rc;

    /* A dense store's first vector may have come from the other writer. */
    if (st->dense && dim == 0 && (rc = meta_dim(st, st->db, &dim, err)) != 0)
        return rc;
    if ((rc = hist_load(st, st->db, dim, &fresh, err)) != 0) {
        if (err) {
            char m[sizeof(err->message)];
            snprintf(m, sizeof(m), "%s", err->message);
            fail(err, rc, 0, "reading records another process added: %s", m);
        }
        return rc;
    }
    publish(st, fresh, dim, v, fresh->n);
    return 0;
}

/* ==== Bringing a copy up to date ==== */

/* A copy of n records is brought up to date row by row (the way appends
 * are added) when at most a quarter of n (plus 16, so that small stores
 * are not rebuilt at every commit) was committed after it; above that it
 * is built again from a newer snapshot. The same bound as the re-weighing
 * (next_rebuild()): weights never lag further behind than appends let
 * them. */
static int delta_is_small(size_t n, size_t delta)
{
    return delta <= n / 4 + 16;
}

/* Internal, never returned to a caller: a writer's catch-up found too many
 * new rows to add inside its write transaction (catch_up()). */
#define NEED_REBUILD 1
/* Internal: the rebuild starts over from a newer snapshot (rebuild()). */
#define REBUILD_AGAIN 2
/* Builds from a snapshot per rebuild before the last one, which brings its
 * copy up to date whatever the number of new rows. */
#define REBUILD_ATTEMPTS 3

/* The rows committed after a copy was last brought up to date: records
 * [from, from + n) with their texts (tfidf-v1) or vectors (dense), their
 * outcomes, and the models first named after the copy's. */
struct delta {
    size_t from, n;
    char **models; /* owned until delta_apply() takes them */
    size_t n_models;
    char *text;
    size_t text_cap, *text_at; /* n + 1 entries */
    uint32_t *out_start;       /* n + 1 entries: record from + i's are outs[out_start[i] ..) */
    struct delta_outcome {
        uint32_t model;
        double correctness, output_tokens;
        sqlite3_int64 rowid;
    } * outs;
    size_t n_outs, cap_outs;
    float *vecs; /* n rows of dim */
    size_t dim;
};

static void delta_free(struct delta *d)
{
    for (size_t i = 0; i < d->n_models; i++)
        free(d->models[i]);
    free(d->models);
    free(d->text);
    free(d->text_at);
    free(d->out_start);
    free(d->outs);
    free(d->vecs);
    memset(d, 0, sizeof(*d));
}

/* The number of records in the database st->db sees, ids 0 .. count - 1,
 * those from `from` on checked to leave no gap. Two lookups on the id
 * (the rowid) and a count of the new ones: a COUNT(*) of the whole table
 * would read all its pages, a tenth of a second at 100,000 records, on
 * every catch-up. */
static int count_records(struct lr_store *st, size_t from, size_t *count, struct lr_error *err)
{
    sqlite3_stmt *q = NULL;
    sqlite3_int64 max_id = -1, n_new = 0;
    int rc = 0;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT (SELECT COALESCE(MAX(id), -1) FROM records), "
                           "(SELECT COUNT(*) FROM records WHERE id >= ?1)",
                           -1, &q, NULL) ||
        sqlite3_bind_int64(q, 1, (sqlite3_int64)from) || sqlite3_step(q) != SQLITE_ROW) {
        rc = sql_fail(st, err, "counting records");
        goto out;
    }
    max_id = sqlite3_column_int64(q, 0);
    n_new = sqlite3_column_int64(q, 1);
    if ((uint64_t)(max_id + 1) > LR__STORE_HARD_MAX_RECORDS ||
        (max_id + 1 >= (sqlite3_int64)from && max_id + 1 != (sqlite3_int64)from + n_new))
        rc = fail(err, LR_ESTORE, 0, "history store '%s': records table is inconsistent",
                  st->path);
    else
        *count = (size_t)(max_id + 1); /* below `from`: records went; the caller reloads */
out:
    sqlite3_finalize(q);
    return rc;
}

/* The dimension of a dense store's new rows: the copy's, else the store's,
 * else (the first vector came from another writer) the file's. */
static int delta_dim(struct lr_store *st, const struct lr__hist *h, size_t *dim,
                     struct lr_error *err)
{
    *dim = h->didx.dim ? h->didx.dim : st->dim;
    if (st->dense && *dim == 0)
        return meta_dim(st, st->db, dim, err);
    return 0;
}

static int delta_nomem(struct lr_error *err)
{
    return fail(err, LR_ENOMEM, 0, "out of memory reading new records");
}

/* Read the rows committed after copy h (records h->n .. count - 1, models
 * from h->models.n, outcomes after h->out_rowid) on st->db, inside the
 * caller's transaction (wmu held), checked as a load checks them. */
static int delta_read(struct lr_store *st, const struct lr__hist *h, size_t count, size_t dim,
                      struct delta *d, struct lr_error *err)
{
    sqlite3 *db = st->db;
    sqlite3_stmt *q = NULL;
    size_t filled = 0; /* out_start[0 .. filled) are set */
    int rc = 0, s;

    memset(d, 0, sizeof(*d));
    d->from = h->n;
    d->n = count - h->n;
    d->dim = dim;
    if (!(d->text_at = malloc((d->n + 1) * sizeof(*d->text_at))) ||
        !(d->out_start = malloc((d->n + 1) * sizeof(*d->out_start))))
        return delta_nomem(err);

    if (sqlite3_prepare_v2(db, "SELECT id, name FROM models WHERE id >= ? ORDER BY id", -1, &q,
                           NULL) ||
        sqlite3_bind_int64(q, 1, (sqlite3_int64)h->models.n)) {
        rc = sql_fail(st, err, "reading models");
        goto out;
    }
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 1);
        size_t id = h->models.n + d->n_models;
        char **m;
        if (sqlite3_column_int64(q, 0) != (sqlite3_int64)id || !name ||
            id >= LR__STORE_MAX_MODELS || lr__names_find(&h->models, name) >= 0) {
            rc = fail(err, LR_ESTORE, 0, "history store '%s': models table is inconsistent",
                      st->path);
            goto out;
        }
        if (!(m = realloc(d->models, (d->n_models + 1) * sizeof(*m)))) {
            rc = delta_nomem(err);
            goto out;
        }
        d->models = m;
        if (!(m[d->n_models] = dup_str(name))) {
            rc = delta_nomem(err);
            goto out;
        }
        d->n_models++;
    }
    if (s != SQLITE_DONE) {
        rc = sql_fail(st, err, "reading models");
        goto out;
    }
    sqlite3_finalize(q);
    q = NULL;

    if (!st->dense && d->n &&
        (rc = read_texts(st, db, d->from, count, &d->text, &d->text_cap, d->text_at, err)) != 0)
        goto out;

    if (sqlite3_prepare_v2(db,
                           "SELECT record_id, model_id, correctness, output_tokens, rowid "
                           "FROM outcomes WHERE rowid > ? ORDER BY rowid",
                           -1, &q, NULL) ||
        sqlite3_bind_int64(q, 1, h->out_rowid)) {
        rc = sql_fail(st, err, "reading outcomes");
        goto out;
    }
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        sqlite3_int64 rec = sqlite3_column_int64(q, 0), model = sqlite3_column_int64(q, 1);
        double c, o;
        if (rec < (sqlite3_int64)d->from || (size_t)rec >= count ||
            (size_t)rec - d->from + 1 < filled || model < 0 ||
            (size_t)model >= h->models.n + d->n_models) {
            rc = fail(err, LR_ESTORE, 0, "history store '%s': outcomes table is inconsistent",
                      st->path);
            goto out;
        }
        if ((rc = outcome_check(st, q, rec, &c, &o, err)) != 0)
            goto out;
        if (d->n_outs == d->cap_outs) {
            size_t cap = d->cap_outs ? d->cap_outs * 2 : 64;
            struct delta_outcome *no = realloc(d->outs, cap * sizeof(*no));
            if (!no) {
                rc = delta_nomem(err);
                goto out;
            }
            d->outs = no;
            d->cap_outs = cap;
        }
        while (filled <= (size_t)rec - d->from)
            d->out_start[filled++] = (uint32_t)d->n_outs;
        d->outs[d->n_outs].model = (uint32_t)model;
        d->outs[d->n_outs].correctness = c;
        d->outs[d->n_outs].output_tokens = o;
        d->outs[d->n_outs].rowid = sqlite3_column_int64(q, 4);
        d->n_outs++;
    }
    if (s != SQLITE_DONE) {
        rc = sql_fail(st, err, "reading outcomes");
        goto out;
    }
    while (filled <= d->n)
        d->out_start[filled++] = (uint32_t)d->n_outs;
    sqlite3_finalize(q);
    q = NULL;

    if (st->dense && d->n) {
        size_t i = 0;
        if ((rc = records_check(st, db, d->from, err)) != 0)
            goto out;
        if (dim == 0) {
            rc = fail(err, LR_ESTORE, 0, "history store '%s': vectors without a dimension",
                      st->path);
            goto out;
        }
        if (!(d->vecs = malloc(d->n * dim * sizeof(*d->vecs)))) {
            rc = delta_nomem(err);
            goto out;
        }
        if (sqlite3_prepare_v2(db,
                               "SELECT record_id, vec FROM vectors WHERE record_id >= ? "
                               "ORDER BY record_id",
                               -1, &q, NULL) ||
            sqlite3_bind_int64(q, 1, (sqlite3_int64)d->from)) {
            rc = sql_fail(st, err, "reading vectors");
            goto out;
        }
        while ((s = sqlite3_step(q)) == SQLITE_ROW) {
            const void *blob = sqlite3_column_blob(q, 1);
            size_t bytes = (size_t)sqlite3_column_bytes(q, 1);
            if (i >= d->n || sqlite3_column_int64(q, 0) != (sqlite3_int64)(d->from + i) ||
                bytes != dim * sizeof(float) || !blob) {
                rc = fail(err, LR_ESTORE, 0,
                          "history store '%s': vectors table is inconsistent", st->path);
                goto out;
            }
            memcpy(d->vecs + i * dim, blob, bytes);
            i++;
        }
        if (s != SQLITE_DONE)
            rc = sql_fail(st, err, "reading vectors");
        else if (i != d->n)
            rc = fail(err, LR_ESTORE, 0, "history store '%s': %zu records but %zu vectors",
                      st->path, count, d->from + i);
    }
out:
    sqlite3_finalize(q);
    return rc;
}

/* Room in copy h for one more record with n_outs outcomes and n_models new
 * models, and for its vector in the index: features feats[0 .. nf) of a
 * sparse store, one row of a dense one (whose dimension becomes new_dim
 * first when that is not 0: the store's first vector). After it,
 * record_add() cannot fail. A published h needs the write lock held. */
static int record_reserve(const struct lr_store *st, struct lr__hist *h, size_t n_outs,
                          size_t n_models, size_t new_dim, const struct lr__feat *feats,
                          size_t nf)
{
    int rc = hist_reserve(h, 1, n_outs, n_models);
    if (rc == 0)
        rc = lr__groups_reserve(&h->groups, h->n + 1, h->models.cap);
    if (rc == 0 && st->dense) {
        if (new_dim)
            h->didx.dim = new_dim;
        rc = lr__dindex_reserve(&h->didx, 1);
    } else if (rc == 0) {
        rc = lr__sindex_reserve(&h->sidx, feats, nf);
    }
    return rc;
}

/* Record h->n, whose outcomes were just added, into copy h: its end in
 * out_start, its group, and its vector: the row vec of a dense store, or
 * the features feats[0 .. nf) of a sparse one, whose text's terms t then
 * join the document frequencies. Needs record_reserve() first. */
static void record_add(const struct lr_store *st, struct lr__hist *h, uint32_t group,
                       const float *vec, const struct lr__feat *feats, size_t nf,
                       const struct lr__terms *t)
{
    h->out_start[h->n + 1] = (uint32_t)h->n_outs;
    lr__groups_add(&h->groups, h, (uint32_t)h->n, group);
    if (st->dense) {
        lr__dindex_add(&h->didx, vec);
    } else {
        lr__sindex_add(&h->sidx, feats, nf);
        for (size_t j = 0; j < t->n; j++) {
            uint32_t f = lr__terms_feature(t, j);
            if (h->df[f] < UINT32_MAX)
                h->df[f]++;
        }
        if (h->df_ndocs < UINT32_MAX)
            h->df_ndocs++;
    }
    h->n++;
}

/* Add the rows of d to copy h exactly as appends add them (store_append()):
 * each record's vector weighed with h's document frequencies, which it then
 * joins, and put in the group of its nearest centroid. With `live`, h is
 * the published copy (the caller holds wmu, so no one else changes it):
 * every change is made under the write lock. Fails only for want of
 * memory, and then h holds a prefix of d's records, with matching ids. */
static int delta_apply(struct lr_store *st, struct lr__hist *h, struct delta *d, int live)
{
    struct lr__terms t;
    struct lr__feat feats[LR__TFIDF_MAX_FEATURES];
    int rc = 0;

    if (live)
        pthread_rwlock_wrlock(&st->rw);
    if (st->dense && h->didx.dim == 0)
        h->didx.dim = d->dim;
    if (d->n_models && hist_reserve(h, 0, 0, d->n_models) != 0)
        rc = LR_ENOMEM;
    for (size_t j = 0; j < d->n_models && rc == 0; j++) {
        lr__names_add(&h->models, d->models[j]);
        d->models[j] = NULL;
    }
    if (live)
        pthread_rwlock_unlock(&st->rw);
    if (rc != 0)
        return rc;

    lr__terms_init(&t);
    for (size_t i = 0; i < d->n; i++) {
        const float *vec = st->dense ? d->vecs + i * d->dim : NULL;
        size_t nf = 0, o0 = d->out_start[i], o1 = d->out_start[i + 1];
        uint32_t group;

        if (!st->dense) {
            if (lr__terms_count(&t, d->text + d->text_at[i], d->text_at[i + 1] - d->text_at[i])) {
                rc = LR_ENOMEM;
                break;
            }
            nf = lr__tfidf_vector(&t, h->df, h->df_ndocs, 1, LR__TFIDF_MAX_FEATURES, feats);
        }
        group = st->dense ? lr__groups_nearest_dense(&h->groups, vec)
                          : lr__groups_nearest_sparse(&h->groups, feats, nf);
        if (live)
            pthread_rwlock_wrlock(&st->rw);
        rc = record_reserve(st, h, o1 - o0, 0, 0, feats, nf);
        if (rc == 0) {
            for (size_t k = o0; k < o1; k++)
                hist_add_outcome(h, d->outs[k].model, d->outs[k].correctness,
                                 d->outs[k].output_tokens);
            record_add(st, h, group, vec, feats, nf, &t);
            /* A record at a time, so that a prefix added knows where the
             * next catch-up's outcomes start. */
            if (o1 > o0)
                h->out_rowid = d->outs[o1 - 1].rowid;
        }
        if (live)
            pthread_rwlock_unlock(&st->rw);
        if (rc != 0)
            break;
    }
    lr__terms_free(&t);
    return rc;
}

/* Called by a writer (wmu held) inside its BEGIN IMMEDIATE, before it
 * assigns record or model ids from the copy: if another connection has
 * committed since the copy last matched the database, the copy catches up.
 * A few new rows (delta_is_small()) are added to it in place, as appends
 * are; for more, with `may_defer`, NEED_REBUILD is returned and the caller
 * rolls back, has rebuild() build the copy without holding wmu nor the
 * write lock, and tries again; without it (the caller already did so and
 * still found many), the copy is built again here (reload()). No other
 * writer can commit while the transaction holds the write lock, so the
 * copy then matches what this writer's ids follow. On failure the copy
 * holds a prefix of the new rows at most, its ids still those of the file,
 * and the caller rolls back. */
static int catch_up(struct lr_store *st, int may_defer, struct lr_error *err)
{
    struct lr__hist *h = st->hist;
    struct delta d;
    sqlite3_int64 v;
    size_t count, dim;
    int rc;

    memset(&d, 0, sizeof(d));
    if (data_version(st->db, &v) != 0)
        return sql_fail(st, err, "reading the data version");
    if (v == st->data_version)
        return 0;
    if ((rc = count_records(st, h->n, &count, err)) != 0)
        return rc;
    /* Fewer records than the copy: not appends; built again, the old way. */
    if (count < h->n)
        return reload(st, v, err);
    if (!delta_is_small(h->n, count - h->n))
        return may_defer ? NEED_REBUILD : reload(st, v, err);
    if ((rc = delta_dim(st, h, &dim, err)) != 0 ||
        (rc = delta_read(st, h, count, dim, &d, err)) != 0) {
        if (rc != 0 && rc != LR_ENOMEM && err) {
            char m[sizeof(err->message)];
            snprintf(m, sizeof(m), "%s", err->message);
            fail(err, rc, 0, "reading records another process added: %s", m);
        }
        delta_free(&d);
        return rc;
    }
    rc = delta_apply(st, h, &d, 1);
    delta_free(&d);
    if (rc != 0)
        return fail(err, rc, 0, "out of memory reading records another process added");
    if (st->dense && st->dim == 0 && dim) {
        pthread_rwlock_wrlock(&st->rw);
        st->dim = dim;
        pthread_rwlock_unlock(&st->rw);
    }
    st->data_version = v;
    return 0;
}

/* ==== Rebuilding beside the writers ==== */

int (*lr__store_rebuild_hook)(struct lr_store *store);

/* The read-only connection rebuilds read their snapshot from; opened at
 * the first rebuild (rebuild_mu held). -1 for a store in memory, which no
 * other connection can see: it is rebuilt the old way. */
static int rdb_open(struct lr_store *st)
{
    if (st->rdb)
        return 0;
    if (!st->db_file || strcmp(st->path, ":memory:") == 0 || strncmp(st->path, "file:", 5) == 0)
        return -1;
    if (sqlite3_open_v2(st->db_file, &st->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(st->rdb, BUSY_TIMEOUT_MS);
    /* The same file as st->db's, not one put at its name since. */
    struct stat sb;
    if (stat(st->db_file, &sb) != 0 || sb.st_dev != st->db_dev || sb.st_ino != st->db_ino)
        goto fail;
    return 0;
fail:
    sqlite3_close(st->rdb);
    st->rdb = NULL;
    return -1;
}

/* st->db_path: st->path made absolute with the working directory now,
 * its links left as they are (not realpath()): a link swapped later must
 * still be seen through. NULL for a store in memory or a URI, and when the
 * working directory cannot be read (then file_moved() stats db_file). */
static int path_absolute(struct lr_store *st, struct lr_error *err)
{
    char cwd[PATH_MAX];
    size_t cap;
    if (strcmp(st->path, ":memory:") == 0 || strncmp(st->path, "file:", 5) == 0)
        return 0;
    if (st->path[0] == '/') {
        cwd[0] = '\0';
    } else if (!getcwd(cwd, sizeof(cwd))) {
        return 0;
    }
    cap = strlen(cwd) + strlen(st->path) + 2;
    if (!(st->db_path = malloc(cap)))
        return fail(err, LR_ENOMEM, 0, "out of memory opening the history store");
    if (cwd[0])
        snprintf(st->db_path, cap, "%s/%s", cwd, st->path);
    else
        snprintf(st->db_path, cap, "%s", st->path);
    return 0;
}

/* Note the file st->db opened (after its first read, so it exists). */
static void db_file_note(struct lr_store *st)
{
    const char *fn = sqlite3_db_filename(st->db, "main");
    struct stat sb;
    if (!fn || !*fn || stat(fn, &sb) != 0 || !(st->db_file = dup_str(fn)))
        return;
    st->db_dev = sb.st_dev;
    st->db_ino = sb.st_ino;
}

/* ==== The file under the path ====
 *
 * A store's file may be replaced while a handle has it open: another store
 * moved to its name (an atomic deploy of a new history), or the file
 * removed and another made there. SQLite goes on with the file it opened,
 * so a write would land in a file no one will open again, and the -wal
 * beside the path is still the old file's: SQLite applies a -wal to
 * whatever database it finds beside it, so the next writer of the new
 * file would apply the old file's frames to it ("database disk image is
 * malformed"). Every write, and every refresh, first checks that the path
 * still names the opened file (file_moved()); when it does not, nothing is
 * written, the old file's -wal is folded into it and emptied at once
 * (store_gone()), and the next refresh opens the file now at the path
 * (store_reopen()). */

/* Why a path that names something other than the opened file no longer
 * names it: another file, or something that is not a regular file (which
 * a refresh cannot open either, and which writes and refreshes name
 * alike). */
static int gone_what(const struct stat *sb)
{
    if (S_ISREG(sb->st_mode))
        return GONE_REPLACED;
    return S_ISDIR(sb->st_mode) ? GONE_DIRECTORY : GONE_NOT_REGULAR;
}

/* 0 while the path (db_path: as given, made absolute at open) still names
 * the file st->db opened; GONE_REPLACED when another file is there,
 * GONE_DIRECTORY or GONE_NOT_REGULAR when something that is not a regular
 * file is (gone_what()), GONE_REMOVED when nothing is. stat() follows the links the path goes
 * through as they are now, so a symbolic link swapped to another file or
 * folder (an atomic deploy: `ln -sfn v2 current.tmp && mv -T current.tmp
 * current`) counts as a replacement. A stat() that fails otherwise (a
 * folder made unreadable) does not count: the file is not known to have
 * moved. */
static int file_moved(const struct lr_store *st)
{
    struct stat sb;
    const char *at = st->db_path ? st->db_path : st->db_file;
    if (!at || !st->db_file)
        return 0;
    if (stat(at, &sb) != 0)
        return errno == ENOENT || errno == ENOTDIR ? GONE_REMOVED : 0;
    return sb.st_dev != st->db_dev || sb.st_ino != st->db_ino ? gone_what(&sb) : 0;
}

/* The path no longer names st->db's file (wmu held, once). A TRUNCATE
 * checkpoint copies the -wal's frames into the old file through the
 * connection's open descriptor and truncates the -wal, which is still the
 * one at the path, to nothing: the next process to open the new file finds
 * an empty -wal there and reads the file alone. SQLite would not do it
 * later: the last connection of a moved file does not checkpoint at close
 * and leaves its -wal and -shm as they are. From here on the old
 * connections are only closed (store_reopen()): any read of theirs would
 * go through the -wal and -shm at the path, which a writer of the new file
 * may be using. */
static void store_gone(struct lr_store *st, int why)
{
    /* Unless a handle has the file now at the path open: its -wal frames
     * are its own, live, and the checkpoint would copy them into the old
     * file and truncate them away. Every handle holds a shared flock on its
     * file; the exclusive one, held through the checkpoint, keeps one from
     * opening the new file meanwhile. */
    int fd = st->db_path ? open(st->db_path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) == 0)
        sqlite3_exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    if (fd >= 0)
        close(fd);
    st->gone = why;
}

static int gone_fail(const struct lr_store *st, struct lr_error *err)
{
    if (st->gone == GONE_REMOVED)
        return fail(err, LR_EREPLACED, 0,
                    "history store '%s' was removed since it was opened; nothing was written "
                    "(a store put at its path is opened at the next refresh)",
                    st->path);
    if (st->gone == GONE_DIRECTORY || st->gone == GONE_NOT_REGULAR)
        return fail(err, LR_EREPLACED, 0,
                    "history store '%s' was replaced since it was opened by something that is "
                    "not a regular file%s; nothing was written (a store put at its path is "
                    "opened at the next refresh)",
                    st->path, st->gone == GONE_DIRECTORY ? " (a directory)" : "");
    if (st->gone == GONE_UNOPENABLE)
        return fail(err, LR_EREPLACED, 0,
                    "history store '%s' was replaced since it was opened, and the file now at "
                    "its path cannot be opened (%s); nothing is written until it can be",
                    st->path, st->gone_why);
    return fail(err, LR_EREPLACED, 0,
                "history store '%s' was replaced since it was opened (another file is at its "
                "path now); nothing was written to the old file (the new one is opened at the "
                "next refresh)",
                st->path);
}

/* Before a write or a rebuild's use of st->db (wmu held): LR_EREPLACED
 * when the path no longer names the opened file. */
static int path_check(struct lr_store *st, struct lr_error *err)
{
    int why;
    if (!st->gone && (why = file_moved(st)) != 0)
        store_gone(st, why);
    return st->gone ? gone_fail(st, err) : 0;
}

/* COMMIT for a write that write_begin() let start, unless the path has
 * stopped naming the file meanwhile: then LR_EREPLACED, the caller rolls
 * back, and path_check() after the rollback marks the handle gone and
 * empties the old -wal (a checkpoint cannot run inside the transaction).
 * A move while the COMMIT itself runs is not seen. */
static int commit_checked(struct lr_store *st, struct lr_error *err)
{
    int why = file_moved(st);
    if (why) {
        int was = st->gone, rc;
        st->gone = why;
        rc = gone_fail(st, err);
        st->gone = was;
        return rc;
    }
    return exec(st, "COMMIT", err);
}

/* Notes whether a read-only handle may write the store's -shm file (set
 * after each open, when the file exists if SQLite could make it). One that
 * may not reads in SQLite's read-only-shm mode. */
static void shm_note(struct lr_store *st)
{
    const char *file = st->db ? sqlite3_db_filename(st->db, "main") : NULL;
    char *shm;
    st->shm_read_only = 0;
    if (!st->read_only || !file || !*file)
        return;
    shm = malloc(strlen(file) + 5);
    if (!shm)
        return;
    sprintf(shm, "%s-shm", file);
    st->shm_read_only = access(shm, W_OK) != 0;
    free(shm);
}

/* Why rebuild(): another connection committed (a refresh, a writer's
 * catch-up with many new rows), the store grew by a quarter, or the copy
 * is to match a fresh open (lr_store_rebuild(): any of the first two, or
 * records added one by one since it was built whole). */
enum rebuild_why { REBUILD_CHANGED, REBUILD_REWEIGH, REBUILD_CONVERGE };

/* Is the rebuild still needed? wmu held. */
static int rebuild_needed(struct lr_store *st, enum rebuild_why why, int *needed,
                          struct lr_error *err)
{
    sqlite3_int64 v;
    int rc;
    if ((rc = path_check(st, err)) != 0)
        return rc;
    if (why == REBUILD_REWEIGH) {
        *needed = st->hist->n >= st->rebuild_at;
        return 0;
    }
    if (data_version(st->db, &v) != 0)
        return sql_fail(st, err, "reading the data version");
    /* A re-weighing an append left to the refresh counts as a change; so
     * do records added one by one when the copy is to match a fresh open. */
    *needed = v != st->data_version || (st->defer_reweigh && st->hist->n >= st->rebuild_at) ||
              (why == REBUILD_CONVERGE && st->hist->n > st->built_whole);
    /* A read-only handle that may not write the -shm file either reads it
     * in SQLite's read-only-shm mode, where the data version changes at
     * every read. Stores grow by appended records (a file put at the path
     * is path_check()'s), so such a handle takes its copy to be behind only
     * when the file holds records past it: looked up through the primary
     * key, not a rebuild every refresh. What it cannot see is a file
     * rewritten in place with as many records (a restore over it, an edit
     * by hand); any other handle follows the data version, which sees
     * every commit. */
    if (*needed && st->shm_read_only && why != REBUILD_REWEIGH) {
        size_t count;
        if ((rc = count_records(st, st->hist->n, &count, err)) != 0)
            return rc;
        if (count == st->hist->n) {
            st->data_version = v;
            *needed = 0;
        }
    }
    return 0;
}

/* The second half of a rebuild (wmu held): `fresh` (built from a snapshot
 * of `built` records) gets the rows committed since, read in a read
 * transaction of st->db, and is published. REBUILD_AGAIN when an import
 * replaced the copy meanwhile, or when the new rows are too many to add
 * one by one (unless `last`). */
static int rebuild_finish(struct lr_store *st, struct lr__hist *fresh, size_t dim,
                          uint64_t generation, int last, struct lr_error *err)
{
    struct delta d;
    sqlite3_int64 v;
    size_t count, built = fresh->n;
    int rc;

    memset(&d, 0, sizeof(d));
    if ((rc = path_check(st, err)) != 0)
        return rc;
    if (st->generation != generation && !last)
        return REBUILD_AGAIN;
    if ((rc = exec(st, "BEGIN", err)) != 0)
        return rc;
    if (data_version(st->db, &v) != 0) {
        rc = sql_fail(st, err, "reading the data version");
        goto out;
    }
    if ((rc = count_records(st, built, &count, err)) != 0)
        goto out;
    if (count < built) {
        rc = fail(err, LR_ESTORE, 0, "history store '%s': records changed while loading",
                  st->path);
        goto out;
    }
    if (!last && !delta_is_small(built, count - built)) {
        rc = REBUILD_AGAIN;
        goto out;
    }
    if (fresh->didx.dim)
        dim = fresh->didx.dim;
    else if (st->dense && dim == 0 && (rc = meta_dim(st, st->db, &dim, err)) != 0)
        goto out;
    fresh->didx.dim = st->dense ? dim : 0;
    if ((rc = delta_read(st, fresh, count, dim, &d, err)) != 0)
        goto out;
    exec(st, "ROLLBACK", NULL);
    if ((rc = delta_apply(st, fresh, &d, 0)) != 0) {
        rc = fail(err, rc, 0, "out of memory rebuilding the history store");
        goto done;
    }
    publish(st, fresh, dim, v, built);
    goto done;
out:
    exec(st, "ROLLBACK", NULL); /* ends the read; nothing was written */
done:
    delta_free(&d);
    return rc;
}

/* Build the copy again (weights, index and groups, as at open) without
 * holding wmu or any SQLite lock that writers need, then publish it:
 *
 *   1. wmu taken briefly: is the rebuild still needed?
 *   2. the new copy built from a read snapshot on st->rdb, a read-only
 *      connection (WAL: the writers go on committing on st->db meanwhile);
 *   3. wmu taken again: the rows committed after the snapshot (this
 *      process's appends, other processes' commits) read on st->db and
 *      added to the new copy as appends add them, the copy published
 *      under the write lock, wmu released.
 *
 * Appends wait only for step 3, which reads and weighs the new rows. When
 * more than delta_is_small() allows were committed meanwhile, or an import
 * replaced the copy, it starts over from a newer snapshot; the third
 * attempt brings its copy up to date whatever the number. One rebuild at a
 * time (rebuild_mu, always taken before wmu); the re-weighing does not wait
 * for one in flight, it leaves the work to it. A store in memory (no
 * second connection) is rebuilt the old way, under wmu. Sets *changed when
 * a new copy was published. On failure the old copy stays. */
static int rebuild(struct lr_store *st, enum rebuild_why why, int *changed, struct lr_error *err)
{
    struct lr__hist *fresh = NULL;
    int rc = 0;

    if (why == REBUILD_REWEIGH) {
        if (pthread_mutex_trylock(&st->rebuild_mu) != 0)
            return 0;
    } else {
        pthread_mutex_lock(&st->rebuild_mu);
    }
    for (int attempt = 0;; attempt++) {
        uint64_t generation;
        size_t dim;
        int needed = 0;

        pthread_mutex_lock(&st->wmu);
        rc = rebuild_needed(st, why, &needed, err);
        generation = st->generation;
        dim = st->dim;
        if (rc == 0 && needed && rdb_open(st) != 0) {
            /* No second connection: the old way, in a read transaction. */
            sqlite3_int64 v;
            if ((rc = exec(st, "BEGIN", err)) == 0) {
                if (data_version(st->db, &v) != 0)
                    rc = sql_fail(st, err, "reading the data version");
                else
                    rc = reload(st, v, err);
                exec(st, "ROLLBACK", NULL);
            }
            if (rc == 0 && changed)
                *changed = 1;
            needed = 0;
        }
        pthread_mutex_unlock(&st->wmu);
        if (rc != 0 || !needed)
            break;

        if ((rc = hist_load_snapshot(st, st->rdb, &dim, &fresh, NULL, err)) != 0)
            break;
        if (lr__store_rebuild_hook && (rc = lr__store_rebuild_hook(st)) != 0) {
            fail(err, rc, 0, "history store '%s': rebuild stopped", st->path);
            break;
        }
        pthread_mutex_lock(&st->wmu);
        rc = rebuild_finish(st, fresh, dim, generation, attempt + 1 == REBUILD_ATTEMPTS, err);
        pthread_mutex_unlock(&st->wmu);
        if (rc == 0) {
            fresh = NULL; /* published */
            if (changed)
                *changed = 1;
            break;
        }
        hist_free(fresh);
        fresh = NULL;
        if (rc != REBUILD_AGAIN)
            break;
        rc = 0;
    }
    hist_free(fresh);
    pthread_mutex_unlock(&st->rebuild_mu);
    return rc;
}

/* ==== Presence ====
 *
 * Every handle on a store file holds a shared flock() on it, taken before
 * its SQLite connection opens and kept until lr_store_free(), so that
 * lr_store_discard() can remove a file under an exclusive one only when no
 * other handle, in this process or another, has it open: an import that
 * created a store and failed must not delete the store another import is
 * filling. SQLite's own locks are fcntl() locks, which flock() locks do
 * not meet. The path is checked to still name the locked file once the
 * lock is held (a discard may have removed it in between): else the open
 * starts again on what the path names now. */

/* Whether fd's file is empty with no handle holding it, twice 20 ms apart. */
static int empty_unheld(int fd)
{
    for (int look = 0; look < 2; look++) {
        struct stat now;
        if (look) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0)
            return 0;
        flock(fd, LOCK_UN);
        if (fstat(fd, &now) != 0 || now.st_size != 0)
            return 0;
    }
    return 1;
}

static int presence_take(struct lr_store *st, const char *file, int may_create,
                         struct lr_error *err)
{
    if (strcmp(st->path, ":memory:") == 0 || strncmp(st->path, "file:", 5) == 0)
        return 0;
    for (int attempt = 0; attempt < 16; attempt++) {
        struct stat held, named;
        const int base = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
        int fd = st->read_only || !may_create ? -1 : open(file, base | O_CREAT | O_EXCL, 0644);
        st->made_file = fd >= 0;
        if (fd < 0 && (st->read_only || !may_create || errno == EEXIST))
            fd = open(file, base);
        if (fd >= 0 && fd <= STDERR_FILENO) {
            /* Held as long as the store is open: never as a closed standard
             * descriptor, which the program would read as its input or
             * write its output to (SQLite keeps its own off them too). */
            int high = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
            int e = errno;
            close(fd);
            fd = high;
            errno = e;
        }
        /* SQLite would only say "unable to open database file". A path
         * this process may not use (no such folder, no permission) is a
         * store that cannot be used as given; anything else (no space, too
         * many open files) an I/O fault. */
        if (fd < 0) {
            int e = errno;
            int access = e == EACCES || e == EPERM || e == EROFS || e == ENOENT ||
                         e == ENOTDIR || e == ELOOP || e == ENAMETOOLONG || e == EISDIR;
            char link[LR__OPEN_FAULT_CAP];
            const char *why = lr__error_open_fault(file, e, link);
            /* A symbolic link to nothing: "No such file" names a path that
             * is there (lr__error_open_fault() says so instead). No store
             * is made through it (O_EXCL refuses it, so a link planted in
             * the store's place cannot make one elsewhere). */
            if (why == link)
                return fail(err, LR_ESTORE, 0,
                            "cannot open history store '%s': %s (no store is made through a "
                            "link: make it at the link's target, or name the target)",
                            st->path, link);
            return fail(err, access ? LR_ESTORE : LR_EIO, 0, "cannot open history store '%s': %s",
                        st->path, why);
        }
        if (fstat(fd, &held) != 0) {
            int e = errno;
            close(fd);
            return fail(err, LR_ESTORE, 0, "cannot open history store '%s': %s", st->path,
                        strerror(e));
        }
        if (!S_ISREG(held.st_mode)) {
            close(fd);
            return fail(err, LR_ESTORE, 0, "cannot open history store '%s': %s", st->path,
                        S_ISDIR(held.st_mode) ? "it is a directory" : "not a regular file");
        }
        /* An empty file that no handle holds is no store being made (the
         * open making one holds its lock until it is done: looked at twice,
         * for the moment between its making the file and taking the lock):
         * SQLite would take it for an empty database and make a store of
         * it, where any other file that is not a database is refused. A
         * read-only open, which would make nothing, says the same of it:
         * the file is what is wrong, not the way it was opened. */
        if (!st->made_file && held.st_size == 0 && empty_unheld(fd)) {
            close(fd);
            return fail(err, LR_ESTORE, 0,
                        "history store '%s': file is not a database (it is empty)", st->path);
        }
        int lk;
        while ((lk = flock(fd, LOCK_SH)) != 0 && errno == EINTR)
            ;
        if (lk != 0) {
            close(fd); /* no flock() here: the store works, a discard keeps it */
            return 0;
        }
        if (stat(file, &named) == 0 && named.st_dev == held.st_dev &&
            named.st_ino == held.st_ino) {
            st->pfd = fd;
            return 0;
        }
        close(fd);
    }
    return fail(err, LR_ESTORE, 0, "cannot open history store '%s': it keeps being replaced",
                st->path);
}

/* SQLite takes a file shorter than its 100-byte header for an empty
 * database and would make a store of it: a 1-byte file of any other kind
 * would be overwritten. A file that is not empty must start with SQLite's
 * header, as any longer non-database is refused by SQLite itself (with the
 * same words); it is left as it is. Read on the presence descriptor. */
static int header_check(struct lr_store *st, struct lr_error *err)
{
    static const char magic[16] = "SQLite format 3";
    char head[sizeof(magic)];
    ssize_t n;
    if (st->pfd < 0)
        return 0;
    while ((n = pread(st->pfd, head, sizeof(head), 0)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return fail(err, LR_EIO, 0, "cannot read history store '%s': %s", st->path,
                    strerror(errno));
    if (n > 0 && ((size_t)n < sizeof(magic) || memcmp(head, magic, sizeof(magic)) != 0))
        return fail(err, LR_ESTORE, 0, "history store '%s': file is not a database", st->path);
    return 0;
}

static int remove_files(struct lr_store *store, int *removed, struct lr_error *err);

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* PRAGMA journal_mode=WAL needs the file to itself for a moment. SQLite
 * does not always wait for that (when two processes open a new store at
 * once, one of them is refused at once, and so is one while another holds
 * a rollback journal's write lock), and sometimes waits its whole busy
 * timeout (while another process reads a store in rollback-journal mode).
 * It is tried again until BUSY_TIMEOUT_MS have passed in all, each try
 * waiting no longer than what is left: counting 10 ms a try, a try that
 * waited 5 s was counted as 10 ms, and the open waited for as long as the
 * reader read. */
static int journal_wal(struct lr_store *st, struct lr_error *err)
{
    long long start = monotonic_ms();
    int rc;
    for (;;) {
        long long left = BUSY_TIMEOUT_MS - (monotonic_ms() - start);
        sqlite3_busy_timeout(st->db, left > 0 ? (int)left : 0);
        rc = exec(st, "PRAGMA journal_mode=WAL", left > 0 ? NULL : err);
        if (rc != LR_EBUSY || left <= 0)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    return rc;
}

void lr_store_options_init(struct lr_store_options *opts)
{
    if (opts)
        memset(opts, 0, sizeof *opts);
}

void lr_import_options_init(struct lr_import_options *opts)
{
    if (opts)
        memset(opts, 0, sizeof *opts);
}

int lr_store_open(const char *path, const struct lr_store_options *opts, struct lr_store **out,
                  struct lr_error *err)
{
    const char *embedder = opts && opts->embedder ? opts->embedder : LR__TFIDF_ID;
    struct lr_store *st;
    pthread_rwlockattr_t ra;
    int rc, flags;

    if (!out)
        return fail(err, LR_EINVAL, 0, "lr_store_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return fail(err, LR_EINVAL, 0, "history store: no path given");
    if (!*embedder || strlen(embedder) > LR__STORE_MAX_EMBEDDER)
        return fail(err, LR_EINVAL, 0, "history store: embedder id must be 1 to %d bytes",
                    LR__STORE_MAX_EMBEDDER);
    /* The id is written into the file and quoted in messages: text, as a
     * config's embedder_id ("openai:" + a model name) is. */
    {
        char msg[128];
        if (lr__record_check_name("history store: embedder id", embedder, strlen(embedder), msg,
                                  sizeof(msg)) != 0)
            return fail(err, LR_EINVAL, 0, "%s", msg);
    }
    if (opts && opts->threads < 0)
        return fail(err, LR_EINVAL, 0,
                    "history store: threads %d is negative (0 = the default, 1 = the calling "
                    "thread only)",
                    opts->threads);
    if (opts && (opts->dense_dim < 0 || opts->dense_dim > LR__STORE_MAX_DIM))
        return fail(err, LR_EINVAL, 0, "history store: dense_dim %d is out of range [0, %d]",
                    opts->dense_dim, LR__STORE_MAX_DIM);
    /* The built-in embedder's vectors are sparse and have no dimension to
     * give; a dense_dim with it would be ignored without a word. */
    if (opts && opts->dense_dim != 0 && strcmp(embedder, LR__TFIDF_ID) == 0)
        return fail(err, LR_EINVAL, 0,
                    "history store: dense_dim %d is for a remote embedder's vectors; the "
                    "built-in embedder '%s' takes none (give 0, or a remote embedder's id)",
                    opts->dense_dim, LR__TFIDF_ID);
    st = calloc(1, sizeof(*st));
    if (!st || !(st->path = dup_str(path))) {
        free(st);
        return fail(err, LR_ENOMEM, 0, "out of memory opening the history store");
    }
    st->pfd = -1;
    snprintf(st->embedder, sizeof(st->embedder), "%s", embedder);
    st->dense = strcmp(embedder, LR__TFIDF_ID) != 0;
    st->read_only = opts ? opts->read_only != 0 : 0;
    st->max_records = opts && opts->max_records ? opts->max_records : LR__STORE_HARD_MAX_RECORDS;
    if (st->max_records > LR__STORE_HARD_MAX_RECORDS)
        st->max_records = LR__STORE_HARD_MAX_RECORDS;
    st->threads = opts && opts->threads > 0 ? (unsigned)opts->threads : 0;
    st->defer_reweigh = opts ? opts->defer_reweigh != 0 : 0;
    atomic_init(&st->reweigh_due, 0);
    atomic_init(&st->key_ttl, LR_STORE_KEY_TTL_DEFAULT);
    if (st->threads > LR__PARALLEL_MAX_THREADS)
        st->threads = LR__PARALLEL_MAX_THREADS;
    pthread_mutex_init(&st->wmu, NULL);
    pthread_mutex_init(&st->rebuild_mu, NULL);
    pthread_rwlockattr_init(&ra);
    /* glibc's kinds are enumerators, not macros: testing the kind with
     * #if defined() never set it, and routing threads starved writers
     * (an append waited seconds behind a steady stream of readers). No
     * reader takes the lock twice, which this kind would deadlock. */
#if defined(__GLIBC__)
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(&st->rw, &ra);
    pthread_rwlockattr_destroy(&ra);

    st->want_dim = opts ? (size_t)opts->dense_dim : 0;
    if ((rc = path_absolute(st, err)) != 0)
        goto fail;
    if ((rc = presence_take(st, path, 1, err)) != 0 || (rc = header_check(st, err)) != 0)
        goto fail;
    flags = st->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &st->db, flags | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        char why[320] = "";
        if (st->db)
            fs_reason(st, why, sizeof(why));
        rc = fail(err, LR_ESTORE, 0, "cannot open history store '%s': %s%s", path,
                  st->db ? sqlite3_errmsg(st->db) : "out of memory", why);
        goto fail;
    }
    /* SQLite opens a file it may not write read-only without a word, and
     * every write would then fail; refused here, with the reason. */
    if (!st->read_only && sqlite3_db_readonly(st->db, "main") == 1) {
        char why[320] = "";
        fs_reason(st, why, sizeof(why));
        rc = fail(err, LR_ESTORE, 0,
                  "history store '%s' cannot be written: SQLite could open it only "
                  "read-only%s",
                  path, *why ? why : " (the file is not writable)");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    /* The file is known to be a store (or made one) before anything is
     * set on it: another program's database is left as it was. */
    if ((rc = open_schema(st, opts ? (size_t)opts->dense_dim : 0, &st->dim, err)) != 0)
        goto fail;
    if (!st->read_only && ((rc = journal_wal(st, err)) != 0 ||
                           (rc = exec(st, "PRAGMA synchronous=FULL", err)) != 0))
        goto fail;
    if (!st->read_only && (rc = keys_open(st, err)) != 0)
        goto fail;
    db_file_note(st);
    size_t dim = st->dim;
    if ((rc = hist_load_snapshot(st, st->db, &dim, &st->hist, &st->data_version, err)) != 0)
        goto fail;
    shm_note(st);
    st->rebuild_at = next_rebuild(st, st->hist->n);
    st->built_whole = st->hist->n;
    st->opened = 1;
    *out = st;
    return 0;
fail:
    /* A file this open made and could not make a store (a full disk, say)
     * goes again, unless another handle has opened it meanwhile. */
    if (st->made_file && st->pfd >= 0 && flock(st->pfd, LOCK_EX | LOCK_NB) == 0)
        remove_files(st, NULL, NULL);
    else
        lr_store_free(st);
    return rc;
}

void lr_store_free(struct lr_store *store)
{
    if (!store)
        return;
    sqlite3_close(store->rdb);
    free(store->db_file);
    free(store->db_path);
    sqlite3_close(store->db);
    hist_free(store->hist);
    pthread_rwlock_destroy(&store->rw);
    pthread_mutex_destroy(&store->rebuild_mu);
    pthread_mutex_destroy(&store->wmu);
    if (store->pfd >= 0)
        close(store->pfd);
    free(store->path);
    free(store);
}

/* Remove the store's file and SQLite's files beside it, with the exclusive
 * flock held (no other handle has it open, and none opens it until the lock
 * goes); SQLite's connections close first (the last one folds its -wal
 * back and removes it). Frees the store. */
static int remove_files(struct lr_store *store, int *removed, struct lr_error *err)
{
    static const char *const side[] = {"", "-wal", "-shm", "-journal"};
    /* The path as opened (absolute, whatever the working directory is now),
     * and only while it still names the file the lock is held on: another
     * store moved to it, and its -wal and -shm, are kept. */
    const char *base = store->db_path ? store->db_path : store->path;
    struct stat named, held;
    int rc = 0;
    sqlite3_close(store->rdb);
    sqlite3_close(store->db);
    store->rdb = store->db = NULL;
    if (stat(base, &named) != 0 || fstat(store->pfd, &held) != 0 ||
        named.st_dev != held.st_dev || named.st_ino != held.st_ino) {
        lr_store_free(store);
        return 0;
    }
    size_t cap = strlen(base) + 16;
    char *p = malloc(cap);
    if (!p)
        rc = fail(err, LR_ENOMEM, 0, "out of memory removing history store '%s'", store->path);
    for (size_t i = 0; p && i < sizeof(side) / sizeof(*side); i++) {
        snprintf(p, cap, "%s%s", base, side[i]);
        if (unlink(p) != 0 && errno != ENOENT && rc == 0)
            rc = fail(err, LR_EIO, 0, "cannot remove '%s': %s", p, strerror(errno));
        else if (i == 0 && removed)
            *removed = 1;
    }
    free(p);
    lr_store_free(store);
    return rc;
}

int lr_store_discard(struct lr_store *store, int *removed, struct lr_error *err)
{
    size_t n = 0;

    if (removed)
        *removed = 0;
    if (!store)
        return 0;
    /* Not even a failed conversion matters: the handle goes anyway. */
    if (store->pfd < 0 || store->read_only || store->gone ||
        flock(store->pfd, LOCK_EX | LOCK_NB) != 0 ||
        count_records(store, 0, &n, NULL) != 0 || n != 0) {
        lr_store_free(store);
        return 0;
    }
    return remove_files(store, removed, err);
}

int lr_store_gone(const struct lr_store *store)
{
    switch (store ? atomic_load(&store->gone) : 0) {
    case 0:
        return LR_STORE_GONE_NONE;
    case GONE_REMOVED:
        return LR_STORE_GONE_REMOVED;
    case GONE_REPLACED:
        return LR_STORE_GONE_REPLACED;
    default:
        return LR_STORE_GONE_UNOPENABLE;
    }
}

int lr_store_reweigh_due(const struct lr_store *store)
{
    return store ? atomic_load(&((struct lr_store *)store)->reweigh_due) : 0;
}

size_t lr_store_count(const struct lr_store *store)
{
    size_t n;
    if (!store)
        return 0;
    lr__store_rdlock(store);
    n = store->hist ? store->hist->n : 0;
    lr__store_unlock(store);
    return n;
}

size_t lr_store_model_outcomes(const struct lr_store *store, const char *model)
{
    size_t n = 0;
    int id;
    if (!store || !model)
        return 0;
    lr__store_rdlock(store);
    if (store->hist && (id = lr__hist_model_id(store->hist, model)) >= 0)
        n = (size_t)store->hist->mstats[id].n;
    lr__store_unlock(store);
    return n;
}

/* ==== Refresh ==== */

/* catch_up() for readers: when another connection has committed since the
 * copy last matched the database (PRAGMA data_version, read under wmu
 * outside a transaction, sees every commit made before it; this
 * connection's own commits never change it), the copy is built again by
 * rebuild(), beside this process's writers: they wait only while the rows
 * committed after its snapshot are added to the new copy. With
 * defer_reweigh, a re-weighing an append left due is a reason too, run by
 * the same rebuild. */
/* The file at the path, opened in place of the one the path no longer
 * names (rebuild_mu and wmu held, st->gone set), as lr_store_open() opens
 * one but never creating it; its copy is published. The old connections
 * close first: both files' connections would share the -shm at the path,
 * and closing the old one's descriptor after the new one had locked it
 * would drop the new one's locks (POSIX locks belong to the process). On
 * failure the handle stays gone, with no connection, and the next refresh
 * tries again. */
static int store_reopen(struct lr_store *st, struct lr_error *err)
{
    struct lr__hist *fresh = NULL;
    struct stat sb;
    sqlite3_int64 v = 0;
    size_t dim = st->dim ? st->dim : st->want_dim;
    char *old_file = st->db_file;
    const char *file = st->db_path ? st->db_path : old_file;
    int rc;

    /* Nothing there, or nothing a store can be: said as a write says it.
     * A stat() that fails otherwise keeps the reason known so far. */
    if (!file)
        return gone_fail(st, err);
    if (stat(file, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            st->gone = GONE_REMOVED;
        return gone_fail(st, err);
    }
    if (!S_ISREG(sb.st_mode)) {
        st->gone = gone_what(&sb);
        return gone_fail(st, err);
    }
    st->gone = GONE_REPLACED;
    sqlite3_close(st->rdb);
    sqlite3_close(st->db);
    st->rdb = st->db = NULL;
    if (st->pfd >= 0)
        close(st->pfd);
    st->pfd = -1;
    st->db_file = NULL;
    if ((rc = presence_take(st, file, 0, err)) != 0 || (rc = header_check(st, err)) != 0)
        goto fail;
    if (sqlite3_open_v2(file, &st->db,
                        (st->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        rc = fail(err, LR_ESTORE, 0, "%s", st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    if ((rc = open_schema(st, dim, &dim, err)) != 0)
        goto fail;
    if (!st->read_only && ((rc = journal_wal(st, err)) != 0 ||
                           (rc = exec(st, "PRAGMA synchronous=FULL", err)) != 0 ||
                           (rc = keys_open(st, err)) != 0))
        goto fail;
    db_file_note(st);
    if ((rc = hist_load_snapshot(st, st->db, &dim, &fresh, &v, err)) != 0)
        goto fail;
    shm_note(st);
    free(old_file);
    st->gone = 0;
    publish(st, fresh, dim, v, fresh->n);
    return 0;
fail:
    sqlite3_close(st->db);
    st->db = NULL;
    if (st->pfd >= 0)
        close(st->pfd);
    st->pfd = -1;
    free(st->db_file);
    st->db_file = old_file;
    /* Kept, so that a write refused until the next refresh says so too,
     * not that the file there is merely another one. */
    snprintf(st->gone_why, sizeof(st->gone_why), "%s",
             err && err->message[0] ? err->message : lr_strerror(rc));
    st->gone = GONE_UNOPENABLE;
    return gone_fail(st, err);
}

/* ==== Writes from inside the store's own embed callback ====
 *
 * An import holds wmu while it calls the caller's embed callback
 * (pending_flush()). A write to the same store from inside that callback,
 * in the same thread, would wait for wmu forever. So each thread keeps the
 * stores whose callback it is inside (a list on its stack, innermost
 * first), and the calls that take wmu refuse those stores at once. A
 * callback that hands the write to another thread and waits for it still
 * deadlocks: that thread is a writer like any other. */
struct embed_frame {
    const struct lr_store *st;
    const struct embed_frame *up;
};
static _Thread_local const struct embed_frame *embedding_for;

/* LR_EINVAL when this thread is inside st's embed callback, else 0. */
static int refuse_in_embed(const struct lr_store *st, const char *what, struct lr_error *err)
{
    for (const struct embed_frame *f = embedding_for; f; f = f->up)
        if (f->st == st)
            return fail(err, LR_EINVAL, 0,
                        "history store '%s': cannot %s from within its own embed callback "
                        "(the import that called it holds the store's write lock)",
                        st->path, what);
    return 0;
}

/* lr_store_refresh() and lr_store_rebuild(): `converge` also rebuilds a
 * copy that has records added one by one since it was built whole. */
static int refresh(struct lr_store *store, int converge, int *changed, struct lr_error *err)
{
    int rc, why;

    if (changed)
        *changed = 0;
    if (!store)
        return fail(err, LR_EINVAL, 0, "%s: store is NULL",
                    converge ? "lr_store_rebuild" : "lr_store_refresh");
    if ((rc = refuse_in_embed(store, converge ? "rebuild it" : "refresh it", err)) != 0)
        return rc;
    pthread_mutex_lock(&store->rebuild_mu);
    pthread_mutex_lock(&store->wmu);
    if (!store->gone && (why = file_moved(store)) != 0)
        store_gone(store, why);
    rc = store->gone ? store_reopen(store, err) : 1;
    pthread_mutex_unlock(&store->wmu);
    pthread_mutex_unlock(&store->rebuild_mu);
    if (rc == 0 && changed)
        *changed = 2;
    if (rc != 1)
        return rc;
    rc = rebuild(store, converge ? REBUILD_CONVERGE : REBUILD_CHANGED, changed, err);
    /* Most messages already name the store; those that do not (out of
     * memory) are told which. */
    if (rc != 0 && err && !strstr(err->message, store->path)) {
        char m[sizeof(err->message)];
        snprintf(m, sizeof(m), "%s", err->message);
        fail(err, rc, 0, "history store '%s': %s", store->path, m);
    }
    return rc;
}

int lr_store_refresh(struct lr_store *store, int *changed, struct lr_error *err)
{
    return refresh(store, 0, changed, err);
}

int lr_store_rebuild(struct lr_store *store, int *changed, struct lr_error *err)
{
    return refresh(store, 1, changed, err);
}

size_t lr_store_added_since_build(const struct lr_store *store)
{
    size_t n;
    if (!store)
        return 0;
    lr__store_rdlock(store);
    n = 0;
    if (store->hist && store->hist->n > store->built_whole)
        n = store->hist->n - store->built_whole;
    lr__store_unlock(store);
    return n;
}

/* ==== Validated records (shared by add and import) ==== */

/* Both fill a struct lr__record_view (record.h), whose strings point into
 * the caller's data. Unlike the dataset loader, the store estimates a missing
 * input_token_length here, so input_tokens is never -1 once validated.
 * validate_record() checks lr_store_add's struct lr_record (every add entry
 * point calls it before it takes a lock), validate_json() one record of an
 * import file; both on record.c's one set of rules. */
static int validate_record(const struct lr_record *r, struct lr__record_view *v, char *msg,
                           size_t cap)
{
    if (lr__record_from_struct(r, v, msg, cap) != 0)
        return -1;
    if (v->input_tokens < 0)
        v->input_tokens = lr_estimate_tokens(v->query, v->query_len);
    return 0;
}

/* One record of an import file: the shared rules, then the estimate. */
static int validate_json(const json_t *rec, struct lr__record_view *v, char *msg, size_t cap)
{
    if (lr__record_from_json(rec, v, msg, cap) != 0)
        return -1;
    if (v->input_tokens < 0)
        v->input_tokens = lr_estimate_tokens(v->query, v->query_len);
    return 0;
}

/* ==== Writing to SQLite ==== */

struct writer {
    sqlite3_stmt *model, *record, *outcome, *vector;
    /* only for a keyed append */
    sqlite3_stmt *key_find, *key_put, *key_purge, *key_purge_legacy;
};

static void writer_close(struct writer *w)
{
    sqlite3_finalize(w->model);
    sqlite3_finalize(w->record);
    sqlite3_finalize(w->outcome);
    sqlite3_finalize(w->vector);
    sqlite3_finalize(w->key_find);
    sqlite3_finalize(w->key_put);
    sqlite3_finalize(w->key_purge);
    sqlite3_finalize(w->key_purge_legacy);
    memset(w, 0, sizeof(*w));
}

static int writer_open(struct lr_store *st, struct writer *w, struct lr_error *err)
{
    memset(w, 0, sizeof(*w));
    if (sqlite3_prepare_v2(st->db, "INSERT INTO models(id, name) VALUES(?, ?)", -1, &w->model,
                           NULL) ||
        sqlite3_prepare_v2(st->db,
                           "INSERT INTO records(id, query, input_tokens, task) VALUES(?, ?, ?, ?)",
                           -1, &w->record, NULL) ||
        sqlite3_prepare_v2(st->db,
                           "INSERT INTO outcomes(record_id, model_id, correctness, output_tokens)"
                           " VALUES(?, ?, ?, ?)",
                           -1, &w->outcome, NULL) ||
        sqlite3_prepare_v2(st->db, "INSERT INTO vectors(record_id, vec) VALUES(?, ?)", -1,
                           &w->vector, NULL)) {
        int rc = sql_fail(st, err, "preparing writes");
        writer_close(w);
        return rc;
    }
    return 0;
}

/* A write's start: the statements, BEGIN IMMEDIATE (which serialises the
 * writers of every process; *in_tx set once it holds), then catch_up(), so
 * the ids the caller takes from the copy follow what is in the file (or
 * NEED_REBUILD, with `may_defer`). */
static int write_begin(struct lr_store *st, struct writer *w, int *in_tx, int may_defer,
                       struct lr_error *err)
{
    int rc;
    memset(w, 0, sizeof(*w));
    if ((rc = path_check(st, err)) != 0)
        return rc;
    if ((rc = writer_open(st, w, err)) != 0)
        return rc;
    if ((rc = exec(st, "BEGIN IMMEDIATE", err)) != 0)
        return rc;
    *in_tx = 1;
    return catch_up(st, may_defer, err);
}

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int put_model(struct writer *w, uint32_t id, const char *name)
{
    sqlite3_bind_int64(w->model, 1, id);
    sqlite3_bind_text(w->model, 2, name, -1, SQLITE_STATIC);
    return step_done(w->model);
}

/* The rows of one record whose model names are already resolved to ids. */
static int put_record(struct writer *w, size_t id, const struct lr__record_view *v,
                      const uint32_t *mids, const float *vec, size_t dim,
                      sqlite3_int64 *out_rowid)
{
    sqlite3_bind_int64(w->record, 1, (sqlite3_int64)id);
    sqlite3_bind_text(w->record, 2, v->query, (int)v->query_len, SQLITE_STATIC);
    sqlite3_bind_int64(w->record, 3, v->input_tokens);
    if (v->task)
        sqlite3_bind_text(w->record, 4, v->task, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(w->record, 4);
    if (step_done(w->record) != 0)
        return -1;
    for (size_t i = 0; i < v->n; i++) {
        sqlite3_bind_int64(w->outcome, 1, (sqlite3_int64)id);
        sqlite3_bind_int64(w->outcome, 2, mids[i]);
        sqlite3_bind_double(w->outcome, 3, v->correctness[i]);
        sqlite3_bind_double(w->outcome, 4, v->output_tokens[i]);
        if (step_done(w->outcome) != 0)
            return -1;
    }
    if (out_rowid)
        *out_rowid = sqlite3_last_insert_rowid(sqlite3_db_handle(w->outcome));
    if (vec) {
        sqlite3_bind_int64(w->vector, 1, (sqlite3_int64)id);
        sqlite3_bind_blob(w->vector, 2, vec, (int)(dim * sizeof(float)), SQLITE_STATIC);
        if (step_done(w->vector) != 0)
            return -1;
    }
    return 0;
}

/* ==== Appending one record ==== */

int lr_store_set_key_ttl(struct lr_store *store, long long seconds, struct lr_error *err)
{
    if (!store)
        return fail(err, LR_EINVAL, 0, "lr_store_set_key_ttl: store is NULL");
    if (seconds < 0 || seconds > LR_STORE_MAX_KEY_TTL)
        return fail(err, LR_EINVAL, 0,
                    "idempotency key time-to-live: expected a whole number of seconds from 0 "
                    "to %lld, got %lld",
                    LR_STORE_MAX_KEY_TTL, seconds);
    atomic_store(&store->key_ttl, seconds);
    return 0;
}

long long lr_store_key_ttl(const struct lr_store *store)
{
    return store ? atomic_load(&((struct lr_store *)store)->key_ttl) : 0;
}

int lr_store_key_valid(const char *key)
{
    size_t n = 0;
    if (!key)
        return 0;
    for (; key[n]; n++)
        if (n >= LR_STORE_MAX_KEY || (unsigned char)key[n] < 0x21 ||
            (unsigned char)key[n] > 0x7e)
            return 0;
    return n > 0;
}

/* Inside the write transaction: does the file hold the key, within its
 * own time-to-live at `now` (committed_at + ttl > now, or ttl 0: kept for
 * good)? A legacy key (ttl NULL: committed by a writer that kept no ttl)
 * is judged by this handle's `handle_ttl` instead, as that writer judged
 * it. 1 yes, 0 no (absent, or expired but not deleted yet), -1 a SQLite
 * error. */
static int key_find(struct lr_store *st, struct writer *w, const char *key, int64_t now,
                    long long handle_ttl, int64_t *record_id)
{
    int rc, live = 0;
    if (!w->key_find &&
        sqlite3_prepare_v2(st->db,
                           "SELECT committed_at, ttl, record_id FROM feedback_keys WHERE key = ?",
                           -1, &w->key_find, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(w->key_find, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(w->key_find);
    if (rc == SQLITE_ROW) {
        int64_t at = sqlite3_column_int64(w->key_find, 0);
        int64_t ttl = sqlite3_column_type(w->key_find, 1) == SQLITE_NULL
                          ? (int64_t)handle_ttl
                          : sqlite3_column_int64(w->key_find, 1);
        /* at > now - ttl, not at + ttl > now: a row edited by hand to
         * extremes must not overflow the sum. */
        live = ttl <= 0 || at > now - ttl;
        *record_id = sqlite3_column_int64(w->key_find, 2);
    }
    sqlite3_reset(w->key_find);
    sqlite3_clear_bindings(w->key_find);
    return rc == SQLITE_ROW ? live : rc == SQLITE_DONE ? 0 : -1;
}

/* Inside the write transaction, for a key found live: does record `id`,
 * the one the key was committed with, hold what v would record (the same
 * query bytes, input tokens, and outcomes: model names, correctness and
 * output tokens, in order, compared exactly as stored)? 1 yes, 0 no, -1 a
 * SQLite error. A record the file no longer holds (edited by hand) cannot
 * be compared and counts as the same, as every key did before bodies were
 * compared. The copy has caught up with the file (write_begin()), so a
 * model unknown to it is a model the record cannot hold.
 *
 * outcomes has no index on record_id, but its rows are in record order
 * (load_outcomes() holds the file to that), so the record's first row is
 * found by a binary search over rowid, a few dozen lookups by primary key
 * for the largest store, rather than a scan of the table. */
static int key_record_matches(struct lr_store *st, int64_t id, const struct lr__record_view *v)
{
    sqlite3_stmt *rec = NULL, *at = NULL, *outs = NULL;
    int64_t lo = 1, hi = st->hist->out_rowid + 1; /* the first row of `id` is in [lo, hi] */
    size_t n = 0;
    int rc = -1, s;

    if (sqlite3_prepare_v2(st->db, "SELECT query, input_tokens FROM records WHERE id = ?", -1,
                           &rec, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "SELECT record_id FROM outcomes WHERE rowid >= ? ORDER BY rowid LIMIT 1",
                           -1, &at, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "SELECT record_id, model_id, correctness, output_tokens FROM outcomes"
                           " WHERE rowid >= ? ORDER BY rowid",
                           -1, &outs, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(rec, 1, id);
    s = sqlite3_step(rec);
    if (s == SQLITE_DONE) {
        rc = 1;
        goto out;
    }
    if (s != SQLITE_ROW)
        goto out;
    if ((size_t)sqlite3_column_bytes(rec, 0) != v->query_len ||
        (v->query_len && memcmp(sqlite3_column_text(rec, 0), v->query, v->query_len) != 0) ||
        sqlite3_column_int64(rec, 1) != (sqlite3_int64)v->input_tokens) {
        rc = 0;
        goto out;
    }
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        sqlite3_bind_int64(at, 1, mid);
        s = sqlite3_step(at);
        if (s == SQLITE_ROW && sqlite3_column_int64(at, 0) < id)
            lo = mid + 1;
        else if (s == SQLITE_ROW || s == SQLITE_DONE)
            hi = mid;
        else
            goto out;
        sqlite3_reset(at);
    }
    sqlite3_bind_int64(outs, 1, lo);
    rc = 1;
    while ((s = sqlite3_step(outs)) == SQLITE_ROW && sqlite3_column_int64(outs, 0) == id) {
        int model;
        if (n >= v->n) {
            rc = 0;
            break;
        }
        model = lr__names_find(&st->hist->models, v->model[n]);
        if (model < 0 || sqlite3_column_int64(outs, 1) != model ||
            sqlite3_column_double(outs, 2) != v->correctness[n] ||
            sqlite3_column_double(outs, 3) != v->output_tokens[n]) {
            rc = 0;
            break;
        }
        n++;
    }
    if (rc == 1 && s != SQLITE_ROW && s != SQLITE_DONE)
        rc = -1;
    else if (rc == 1 && n != v->n)
        rc = 0;
out:
    sqlite3_finalize(rec);
    sqlite3_finalize(at);
    sqlite3_finalize(outs);
    return rc;
}

/* The key's row, committed `now` and kept for `ttl` seconds (0: for
 * good). An expired row of the same key (which key_find() reported
 * absent) is replaced. */
static int key_put(struct lr_store *st, struct writer *w, const char *key, size_t record_id,
                   int64_t now, long long ttl)
{
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR REPLACE INTO feedback_keys(key, record_id, committed_at, ttl)"
                           " VALUES(?, ?, ?, ?)",
                           -1, &w->key_put, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(w->key_put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(w->key_put, 2, (sqlite3_int64)record_id);
    sqlite3_bind_int64(w->key_put, 3, now);
    sqlite3_bind_int64(w->key_put, 4, (sqlite3_int64)ttl);
    return step_done(w->key_put);
}

/* Deletes up to LR__STORE_KEY_PURGE keys past their own time-to-live at
 * `now`, the soonest-expired first, inside the keyed append's transaction:
 * each append does a bounded part of the work, which it commits with its
 * own, and since an append adds one key but may delete many, the table
 * shrinks to the live keys. The expiry index (KEYS_INDEX, whose expression
 * the query repeats so that SQLite uses it) finds them without scanning
 * the live keys; keys kept for good are not in it. Legacy keys (ttl NULL)
 * are deleted by the rule their writers followed: only by a handle whose
 * `handle_ttl` is over 0, once older than it, oldest first, up to as many
 * again, found through their own index. */
static int keys_purge(struct lr_store *st, struct writer *w, int64_t now, long long handle_ttl)
{
    if (!w->key_purge &&
        sqlite3_prepare_v2(st->db,
                           "DELETE FROM feedback_keys WHERE rowid IN (SELECT rowid FROM"
                           " feedback_keys WHERE ttl > 0 AND committed_at + ttl <= ?"
                           " ORDER BY committed_at + ttl LIMIT ?)",
                           -1, &w->key_purge, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(w->key_purge, 1, now);
    sqlite3_bind_int(w->key_purge, 2, LR__STORE_KEY_PURGE);
    if (step_done(w->key_purge) != 0)
        return -1;
    if (handle_ttl <= 0)
        return 0;
    if (!w->key_purge_legacy &&
        sqlite3_prepare_v2(st->db,
                           "DELETE FROM feedback_keys WHERE rowid IN (SELECT rowid FROM"
                           " feedback_keys WHERE ttl IS NULL AND committed_at <= ?"
                           " ORDER BY committed_at LIMIT ?)",
                           -1, &w->key_purge_legacy, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(w->key_purge_legacy, 1, now - (int64_t)handle_ttl);
    sqlite3_bind_int(w->key_purge_legacy, 2, LR__STORE_KEY_PURGE);
    return step_done(w->key_purge_legacy);
}

/* Appends v (wmu held). With a key (checked by the caller), a key already
 * committed to the file makes it a duplicate: *duplicate set to
 * LR_STORE_KEY_SAME or LR_STORE_KEY_DIFFERS by what the key's record
 * holds, nothing written,
 * memory untouched; else the key is committed with the record.
 * NEED_REBUILD (only with `may_defer`): nothing was written, the copy must
 * first be rebuilt (catch_up()). *reweigh set: the record is in, and the
 * copy is due for its re-weighing, which the caller starts once it has
 * released wmu (never with defer_reweigh: the re-weighing is marked due
 * for lr_store_refresh() instead). */
static int store_append(struct lr_store *st, const struct lr__record_view *v, const float *vec,
                        size_t dim, const char *key, int *duplicate, int may_defer,
                        int *reweigh, struct lr_error *err)
{
    struct lr__hist *h = st->hist;
    struct lr__terms t;
    struct lr__feat feats[LR__TFIDF_MAX_FEATURES];
    size_t nf = 0, n_new = 0;
    char *new_names[LR__STORE_MAX_OUTCOMES];
    uint32_t mids[LR__STORE_MAX_OUTCOMES];
    float *unit = NULL;
    struct writer w = {0};
    sqlite3_int64 out_rowid = 0;
    int64_t key_now = 0;
    long long key_ttl = 0;
    int rc = 0, adopt_dim = 0, in_tx = 0;

    lr__terms_init(&t);

    if (st->read_only)
        return fail(err, LR_EINVAL, 0, "history store '%s' is open read-only", st->path);

    /* The vector, checked and normalised before anything changes. */
    if (st->dense) {
        char name[SHOWN_CAP];
        if (!vec || dim == 0)
            return fail(err, LR_EINVAL, 0,
                        "history store '%s' uses the remote embedder '%s': a vector is needed",
                        st->path, shown(st->embedder, name, sizeof(name)));
        if (dim > LR__STORE_MAX_DIM)
            return fail(err, LR_EINVAL, 0, "vector dimension %zu is over the cap of %d", dim,
                        LR__STORE_MAX_DIM);
        unit = malloc(dim * sizeof(*unit));
        if (!unit)
            return fail(err, LR_ENOMEM, 0, "out of memory adding a record");
        memcpy(unit, vec, dim * sizeof(*unit));
        if (lr__l2_normalize(unit, dim) != 0) {
            free(unit);
            return fail(err, LR_EINVAL, 0, "vector is zero or not finite");
        }
    } else if (vec) {
        return fail(err, LR_EINVAL, 0,
                    "history store '%s' uses the built-in embedder '%s': give no vector",
                    st->path, st->embedder);
    } else if (dim) {
        /* Refused as lr_router_route refuses embedding_dim > 0 with a NULL
         * embedding: the caller meant to give a vector. */
        return fail(err, LR_EINVAL, 0,
                    "a dim of %zu is given without a vector (history store '%s' uses the "
                    "built-in embedder '%s': give NULL and 0)",
                    dim, st->path, st->embedder);
    }

    /* The transaction opens before any id is taken from the copy, which
     * first catches up with other connections' commits. */
    if ((rc = write_begin(st, &w, &in_tx, may_defer, err)) != 0)
        goto out;
    h = st->hist;
    /* The key is looked up in the write transaction, so no other writer
     * (another connection or process) can commit it in between. A key
     * past its own time-to-live is absent; a few such keys are deleted
     * with this append. This handle's setting only fixes how long the key
     * it commits is kept. */
    if (key) {
        int found, same = 1;
        int64_t key_record = 0;
        key_ttl = atomic_load(&st->key_ttl);
        key_now = store_now();
        found = key_find(st, &w, key, key_now, key_ttl, &key_record);
        if (found < 0) {
            rc = sql_fail(st, err, "looking up an idempotency key");
            goto out;
        }
        if (found && (same = key_record_matches(st, key_record, v)) < 0) {
            rc = sql_fail(st, err, "reading an idempotency key's record");
            goto out;
        }
        if (found) {
            *duplicate = same ? LR_STORE_KEY_SAME : LR_STORE_KEY_DIFFERS;
            goto out; /* rc 0; the transaction is rolled back */
        }
        if (keys_purge(st, &w, key_now, key_ttl) != 0) {
            rc = sql_fail(st, err, "deleting expired idempotency keys");
            goto out;
        }
    }
    if (h->n >= st->max_records) {
        rc = fail(err, LR_ETOOBIG, 0, "history store '%s' is full (%zu records)", st->path,
                  st->max_records);
        goto out;
    }
    if (st->dense) {
        if (st->dim && dim != st->dim) {
            rc = fail(err, LR_EINVAL, 0,
                      "vector has dimension %zu; history store '%s' holds dimension %zu", dim,
                      st->path, st->dim);
            goto out;
        }
        adopt_dim = st->dim == 0;
    } else {
        if (lr__terms_count(&t, v->query, v->query_len) != 0) {
            rc = fail(err, LR_ENOMEM, 0, "out of memory adding a record");
            goto out;
        }
        /* The document joins the frequency counts; documents already in the
         * index keep the weights they were given (until the next rebuild). */
        nf = lr__tfidf_vector(&t, h->df, h->df_ndocs, 1, LR__TFIDF_MAX_FEATURES, feats);
    }

    /* Model ids; names seen for the first time get the next ids. */
    for (size_t i = 0; i < v->n; i++) {
        int id = lr__names_find(&h->models, v->model[i]);
        if (id < 0) {
            for (size_t j = 0; j < n_new; j++)
                if (strcmp(new_names[j], v->model[i]) == 0)
                    id = (int)(h->models.n + j);
        }
        if (id < 0) {
            if (h->models.n + n_new >= LR__STORE_MAX_MODELS) {
                rc = fail(err, LR_ETOOBIG, 0, "history store '%s': more than %d models",
                          st->path, LR__STORE_MAX_MODELS);
                goto out;
            }
            if (!(new_names[n_new] = dup_str(v->model[i]))) {
                rc = fail(err, LR_ENOMEM, 0, "out of memory adding a record");
                goto out;
            }
            id = (int)(h->models.n + n_new++);
        }
        mids[i] = (uint32_t)id;
    }

    /* The record's group (groups.h); only this writer changes groups. */
    uint32_t group = st->dense ? lr__groups_nearest_dense(&h->groups, unit)
                               : lr__groups_nearest_sparse(&h->groups, feats, nf);

    /* Grow memory first (readers excluded), so publishing cannot fail. */
    pthread_rwlock_wrlock(&st->rw);
    rc = record_reserve(st, h, v->n, n_new, adopt_dim ? dim : 0, feats, nf);
    pthread_rwlock_unlock(&st->rw);
    if (rc != 0) {
        rc = fail(err, LR_ENOMEM, 0, "out of memory adding a record");
        goto out;
    }

    /* Durable: one transaction, committed before memory changes. */
    for (size_t j = 0; j < n_new && rc == 0; j++)
        if (put_model(&w, (uint32_t)(h->models.n + j), new_names[j]) != 0)
            rc = -1;
    if (rc == 0 && put_record(&w, h->n, v, mids, unit, dim, &out_rowid) != 0)
        rc = -1;
    if (rc == 0 && key && key_put(st, &w, key, h->n, key_now, key_ttl) != 0)
        rc = -1;
    if (rc == 0 && adopt_dim && meta_set_dim(st, dim) != 0)
        rc = -1;
    if (rc != 0) {
        rc = sql_fail(st, err, "adding a record");
        goto out;
    }
    if ((rc = commit_checked(st, err)) != 0)
        goto out;
    in_tx = 0;

    /* Publish. */
    pthread_rwlock_wrlock(&st->rw);
    for (size_t j = 0; j < n_new; j++)
        lr__names_add(&h->models, new_names[j]);
    n_new = 0;
    for (size_t i = 0; i < v->n; i++)
        hist_add_outcome(h, mids[i], v->correctness[i], v->output_tokens[i]);
    h->out_rowid = out_rowid;
    if (adopt_dim)
        st->dim = dim;
    record_add(st, h, group, unit, feats, nf, &t);
    pthread_rwlock_unlock(&st->rw);

    /* The re-weighing (a dense store: the regrouping) is the caller's, once
     * wmu is released (rebuild()), or with defer_reweigh the next
     * lr_store_refresh()'s. The record is already safe on disk and in
     * memory, so a failed rebuild only postpones the next one. */
    if (h->n >= st->rebuild_at) {
        if (st->defer_reweigh) {
            atomic_store(&st->reweigh_due, 1); /* lr_store_refresh() runs it */
        } else {
            *reweigh = 1;
        }
    }
out:
    if (in_tx)
        exec(st, "ROLLBACK", NULL);
    /* A first vector that did not make it to disk must not leave its
     * dimension (and rows sized for it) behind in memory. */
    if (rc != 0 && adopt_dim && st->dim == 0 && h->didx.dim != 0) {
        pthread_rwlock_wrlock(&st->rw);
        if (h->didx.n == 0) {
            lr__dindex_free(&h->didx);
            h->didx.dim = 0;
        }
        pthread_rwlock_unlock(&st->rw);
    }
    writer_close(&w);
    if (rc == LR_EREPLACED)
        path_check(st, NULL);
    for (size_t j = 0; j < n_new; j++)
        free(new_names[j]);
    free(unit);
    lr__terms_free(&t);
    return rc;
}

/* store_append() under wmu. When its catch-up finds many rows another
 * process committed, the copy is rebuilt without wmu (rebuild()) and the
 * append tried again; the second time round it catches up whatever the
 * number. The re-weighing an append makes due runs after wmu is released:
 * this call returns when it is done, but other writers need not wait. */
static int append(struct lr_store *st, const struct lr__record_view *v, const float *vec,
                  size_t dim, const char *key, int *duplicate, struct lr_error *err)
{
    int reweigh = 0, rc;

    if ((rc = refuse_in_embed(st, "add to it", err)) != 0)
        return rc;
    for (int round = 0;; round++) {
        pthread_mutex_lock(&st->wmu);
        rc = store_append(st, v, vec, dim, key, duplicate, round == 0, &reweigh, err);
        pthread_mutex_unlock(&st->wmu);
        if (rc != NEED_REBUILD)
            break;
        if ((rc = rebuild(st, REBUILD_CHANGED, NULL, err)) != 0)
            break;
    }
    if (rc == 0 && reweigh && rebuild(st, REBUILD_REWEIGH, NULL, NULL) != 0) {
        pthread_mutex_lock(&st->wmu);
        st->rebuild_at = next_rebuild(st, st->hist->n);
        pthread_mutex_unlock(&st->wmu);
    }
    return rc;
}

int lr_store_add(struct lr_store *store, const struct lr_record *rec, const float *vec,
                 size_t dim, struct lr_error *err)
{
    char msg[400];
    struct lr__record_view *v;
    int rc;

    if (!store)
        return fail(err, LR_EINVAL, 0, "lr_store_add: store is NULL");
    v = malloc(sizeof(*v));
    if (!v)
        return fail(err, LR_ENOMEM, 0, "out of memory adding a record");
    if (validate_record(rec, v, msg, sizeof(msg)) != 0) {
        free(v);
        return fail(err, LR_EINVAL, 0, "record: %s", msg);
    }
    rc = append(store, v, vec, dim, NULL, NULL, err);
    free(v);
    return rc;
}

/* lr_store_add_outcome_keyed(); `fn` names the caller in the messages. */
static int add_outcome_keyed(struct lr_store *store, const char *fn, const char *key,
                             const char *query, long input_tokens, const char *model,
                             double correctness, double output_tokens, const float *vec,
                             size_t dim, int *duplicate, struct lr_error *err)
{
    struct lr_outcome o = {model, correctness, output_tokens};
    struct lr_record r = {query, input_tokens, NULL, &o, 1};
    char msg[400];
    struct lr__record_view *v;
    int dup = 0, rc;

    if (duplicate)
        *duplicate = 0;
    if (!store)
        return fail(err, LR_EINVAL, 0, "%s: store is NULL", fn);
    if (key && !lr_store_key_valid(key))
        return fail(err, LR_EINVAL, 0,
                    "idempotency key: expected 1 to %d bytes of printable ASCII (no spaces)",
                    LR_STORE_MAX_KEY);
    v = malloc(sizeof(*v));
    if (!v)
        return fail(err, LR_ENOMEM, 0, "out of memory adding a record");
    if (validate_record(&r, v, msg, sizeof(msg)) != 0) {
        free(v);
        return fail(err, LR_EINVAL, 0, "record: %s", msg);
    }
    rc = append(store, v, vec, dim, key, &dup, err);
    free(v);
    if (rc == 0 && duplicate)
        *duplicate = dup;
    return rc;
}

int lr_store_add_outcome_keyed(struct lr_store *store, const char *key, const char *query,
                               long input_tokens, const char *model, double correctness,
                               double output_tokens, const float *vec, size_t dim,
                               int *duplicate, struct lr_error *err)
{
    return add_outcome_keyed(store, "lr_store_add_outcome_keyed", key, query, input_tokens,
                             model, correctness, output_tokens, vec, dim, duplicate, err);
}

int lr_store_add_outcome(struct lr_store *store, const char *query, long input_tokens,
                         const char *model, double correctness, double output_tokens,
                         struct lr_error *err)
{
    /* Named here, not by the function this one calls. */
    if (!store)
        return fail(err, LR_EINVAL, 0, "lr_store_add_outcome: store is NULL");
    return lr_store_add_outcome_keyed(store, NULL, query, input_tokens, model, correctness,
                                      output_tokens, NULL, 0, NULL, err);
}

int lr_store_add_outcome_vec(struct lr_store *store, const char *query, long input_tokens,
                             const char *model, double correctness, double output_tokens,
                             const float *vec, size_t dim, struct lr_error *err)
{
    struct lr_outcome o = {model, correctness, output_tokens};
    struct lr_record r = {query, input_tokens, NULL, &o, 1};
    if (!store)
        return fail(err, LR_EINVAL, 0, "lr_store_add_outcome_vec: store is NULL");
    if (!store->dense)
        return fail(err, LR_EINVAL, 0,
                    "history store '%s' uses the built-in embedder '%s': use "
                    "lr_store_add_outcome (no vector)",
                    store->path, store->embedder);
    return lr_store_add(store, &r, vec, dim, err);
}

/* ==== Import ==== */

struct importer {
    struct lr_store *st;
    const struct lr_import_options *opts;
    struct lr_import_report *rep;
    struct lr_error *err;
    const char *path; /* the file, named in every message about its records */
    struct writer w;
    struct lr__names names; /* the store's models plus those new in this file */
    size_t base_models;
    size_t next_id; /* the next record's id */
    struct lr__record_view *v;
    uint32_t mids[LR__STORE_MAX_OUTCOMES];

    /* Dense stores: records wait here until a batch of their queries has
     * been embedded, then are written in order with their vectors. */
    size_t dim, batch;
    json_t **pend;        /* batch kept records (references held) */
    size_t *pend_index;   /* their element numbers */
    int *pend_line;       /* and lines */
    size_t n_pend;
    const char **texts;   /* batch query strings (owned by pend) */
    float *vecs;          /* batch x dim */
};

/* Write one validated record (in im->v) with its vector, if any. */
static int import_write(struct importer *im, size_t index, int line, const float *vec)
{
    for (size_t i = 0; i < im->v->n; i++) {
        int id = lr__names_find(&im->names, im->v->model[i]);
        if (id < 0) {
            char *d;
            /* The cap is the store's, not the file's: a file of few models
             * fails on a store that holds nearly as many. */
            if (im->names.n >= LR__STORE_MAX_MODELS)
                return fail(im->err, LR_ETOOBIG, line,
                            "%s: record %zu (line %d) adds model '%s': history store '%s' "
                            "would hold more than %d distinct models (it holds %zu, and this "
                            "file adds %zu before this record)",
                            im->path, index, line, im->v->model[i], im->st->path,
                            LR__STORE_MAX_MODELS, im->base_models, im->names.n - im->base_models);
            if (lr__names_reserve(&im->names, 1) != 0 || !(d = dup_str(im->v->model[i])))
                return fail(im->err, LR_ENOMEM, line, "out of memory importing");
            id = (int)lr__names_add(&im->names, d);
            if (put_model(&im->w, (uint32_t)id, d) != 0)
                return sql_fail(im->st, im->err, "importing");
        }
        im->mids[i] = (uint32_t)id;
    }
    if (put_record(&im->w, im->next_id, im->v, im->mids, vec, vec ? im->dim : 0, NULL) != 0)
        return sql_fail(im->st, im->err, "importing");
    im->next_id++;
    im->rep->imported++;
    return 0;
}

static void pending_drop(struct importer *im)
{
    for (size_t k = 0; k < im->n_pend; k++)
        json_decref(im->pend[k]);
    im->n_pend = 0;
}

/* LR_ECANCELED when the caller's cancel flag is set (checked between
 * records, before each embedding batch and before the commit). */
static int import_cancelled(const struct importer *im)
{
    if (!im->opts || !im->opts->cancel || !*im->opts->cancel)
        return 0;
    return fail(im->err, LR_ECANCELED, 0, "%s: the import was stopped: nothing imported",
                im->path);
}

/* Embed the waiting records' queries with the caller's callback, then write
 * them. Any failure fails the whole import (the transaction is rolled back). */
static int pending_flush(struct importer *im)
{
    struct lr_error cb_err;
    struct embed_frame frame;
    int rc = 0;
    size_t n = im->n_pend;

    if (n == 0)
        return 0;
    if ((rc = import_cancelled(im)) != 0)
        return rc;
    for (size_t k = 0; k < n; k++)
        im->texts[k] = json_string_value(json_object_get(im->pend[k], "query"));
    memset(&cb_err, 0, sizeof(cb_err));
    memset(im->vecs, 0, n * im->dim * sizeof(*im->vecs));
    frame.st = im->st;
    frame.up = embedding_for;
    embedding_for = &frame;
    rc = im->opts->embed(im->opts->embed_arg, im->texts, n, im->vecs, im->dim, &cb_err);
    embedding_for = frame.up;
    if (rc != 0) {
        /* A known LR_E* code is passed on, so a caller can tell a busy or
         * oversized embedder from a failed one; anything else is an
         * input/output failure. A callback that gave up because the
         * caller's cancel flag was set (a request to its server cut short
         * by the signal) stops the import as the flag does. */
        int code = rc < 0 && rc >= LR__ERR_LAST ? rc : LR_EIO;
        if ((rc = import_cancelled(im)) != 0)
            goto out;
        rc = fail(im->err, code, im->pend_line[0],
                  "%s: embedding records %zu to %zu (lines %d to %d): %s", im->path,
                  im->pend_index[0],
                  im->pend_index[n - 1], im->pend_line[0], im->pend_line[n - 1],
                  cb_err.message[0] ? cb_err.message : lr_strerror(code));
        goto out;
    }
    for (size_t k = 0; k < n && rc == 0; k++) {
        char msg[400];
        float *vec = im->vecs + k * im->dim;
        if (lr__l2_normalize(vec, im->dim) != 0) {
            rc = fail(im->err, LR_EINVAL, im->pend_line[k],
                      "%s: record %zu (line %d): the embedder returned a zero or non-finite "
                      "vector",
                      im->path, im->pend_index[k], im->pend_line[k]);
            break;
        }
        /* Validated when it was queued; this fills im->v again. */
        if (validate_json(im->pend[k], im->v, msg, sizeof(msg)) != 0) {
            rc = fail(im->err, LR_EPARSE, im->pend_line[k], "%s: record %zu (line %d): %s",
                      im->path, im->pend_index[k], im->pend_line[k], msg);
            break;
        }
        rc = import_write(im, im->pend_index[k], im->pend_line[k], vec);
    }
out:
    pending_drop(im);
    return rc;
}

/* One parsed element: check it, filter it, write it (or, for a dense store,
 * queue it for embedding). `bad`: NULL, or lr__record_load()'s message of
 * a number out of range in it, which makes it a bad record. Returns 0
 * (added, queued, skipped or counted as bad) or an error that fails the
 * whole import. */
static int import_one(struct importer *im, json_t *j, size_t index, int line, const char *bad)
{
    char msg[400];
    int rc;
    if ((rc = import_cancelled(im)) != 0)
        return rc;
    im->rep->read++;
    /* A record of another split is skipped unread, as eval's loader skips
     * it: a bad one there is no reason to refuse (--strict) or count. An
     * element that is no object has no split, and is bad. */
    int in = 1;
    if (im->opts && im->opts->split && json_is_object(j) &&
        (in = lr__record_split(j, im->opts->split, msg, sizeof(msg))) == 0) {
        json_t *sp = json_object_get(j, "split");
        im->rep->skipped_split++;
        if (!sp || json_is_null(sp))
            im->rep->skipped_unsplit++;
        return 0;
    }
    /* An element that is no object is said to be one first. */
    if (in >= 0 && bad && json_is_object(j)) {
        snprintf(msg, sizeof(msg), "%s", bad);
        in = -1;
    }
    if (in < 0 || validate_json(j, im->v, msg, sizeof(msg)) != 0) {
        im->rep->bad++;
        if (im->rep->bad == 1)
            snprintf(im->rep->first_bad, sizeof(im->rep->first_bad), "record %zu (line %d): %s",
                     index, line, msg);
        if (im->opts && im->opts->strict)
            return fail(im->err, LR_EPARSE, line, "%s: record %zu (line %d): %s", im->path,
                        index, line, msg);
        return 0;
    }
    if (im->next_id + im->n_pend >= im->st->max_records)
        return fail(im->err, LR_ETOOBIG, line,
                    "%s: record %zu (line %d): the history store's cap of %zu records is reached",
                    im->path, index, line, im->st->max_records);
    if (!im->st->dense)
        return import_write(im, index, line, NULL);
    im->pend[im->n_pend] = json_incref(j);
    im->pend_index[im->n_pend] = index;
    im->pend_line[im->n_pend] = line;
    if (++im->n_pend == im->batch)
        return pending_flush(im);
    return 0;
}

/* A dense store's import: the callback, its dimension and the batch buffers. */
static int import_dense_setup(struct importer *im, struct lr_error *err)
{
    struct lr_store *st = im->st;
    const struct lr_import_options *o = im->opts;

    char name[SHOWN_CAP];
    if (!o || !o->embed)
        return fail(err, LR_EINVAL, 0,
                    "history store '%s' uses the remote embedder '%s': importing text needs "
                    "its vectors (lr_import_options.embed)",
                    st->path, shown(st->embedder, name, sizeof(name)));
    im->dim = o->embed_dim ? o->embed_dim : st->dim;
    if (im->dim == 0)
        return fail(err, LR_EINVAL, 0,
                    "history store '%s' does not know its vector dimension yet: give "
                    "lr_import_options.embed_dim",
                    st->path);
    if (im->dim > LR__STORE_MAX_DIM)
        return fail(err, LR_EINVAL, 0, "vector dimension %zu is over the cap of %d", im->dim,
                    LR__STORE_MAX_DIM);
    if (st->dim && im->dim != st->dim)
        return fail(err, LR_EINVAL, 0,
                    "vectors of dimension %zu cannot go into history store '%s', which holds "
                    "dimension %zu",
                    im->dim, st->path, st->dim);
    im->batch = o->embed_batch ? o->embed_batch : 64;
    if (im->batch > 65536)
        return fail(err, LR_EINVAL, 0, "embed_batch %zu is over the cap of 65536", im->batch);
    im->pend = calloc(im->batch, sizeof(*im->pend));
    im->pend_index = calloc(im->batch, sizeof(*im->pend_index));
    im->pend_line = calloc(im->batch, sizeof(*im->pend_line));
    im->texts = calloc(im->batch, sizeof(*im->texts));
    im->vecs = calloc(im->batch * im->dim, sizeof(*im->vecs));
    if (!im->pend || !im->pend_index || !im->pend_line || !im->texts || !im->vecs)
        return fail(err, LR_ENOMEM, 0, "out of memory importing");
    return 0;
}

static int count_lines(const char *p, size_t from, size_t to)
{
    int n = 0;
    for (size_t i = from; i < to; i++)
        n += p[i] == '\n';
    return n;
}

static int parse_fail(struct importer *im, const char *path, int line, int col, const char *what)
{
    return fail(im->err, LR_EPARSE, line, "%s:%d:%d: %s", path, line, col, what);
}

static int import_each(void *ctx, json_t *rec, size_t index, long line, const char *bad)
{
    return import_one(ctx, rec, index, (int)line, bad);
}

/* A JSON array, element by element, so each record knows its line
 * (record.h's walk, which eval's loader shares). */
static int import_array(struct importer *im, const char *path, const char *p, size_t len)
{
    struct lr__array_fault f = {0};
    size_t pos = 0;
    long nul_line;
    int rc, nul_col;

    if (lr__nul_at(p, len, 1, 0, &nul_line, &nul_col))
        return parse_fail(im, path, (int)nul_line, nul_col, LR__NUL_BYTE);
    while (pos < len && lr__json_ws(p[pos]))
        pos++;
    pos++; /* the '[' */
    rc = lr__record_array_walk(p, len, pos, 1 + count_lines(p, 0, pos), 0, import_each, im, &f);
    return f.line > 0 ? parse_fail(im, path, (int)f.line, f.col, f.what) : rc;
}

/* JSON lines: one object per line; blank lines are ignored. A line over
 * LR__RECORD_MAX_LINE bytes fails the file, strict or not, as eval's
 * loader refuses it: counted as that loader counts it, from the first byte
 * that is not blank space in the file, its newline included. */
static int import_lines(struct importer *im, const char *path, const char *p, size_t len)
{
    size_t pos = 0, index = 0;
    int line = 0;
    while (pos < len) {
        const char *nl = memchr(p + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - p) : len, e = end;
        line++;
        while (e > pos && lr__json_ws(p[e - 1]))
            e--;
        size_t s = pos;
        while (s < e && lr__json_ws(p[s]))
            s++;
        if ((index > 0 || s < e) &&
            end + (nl != NULL) - (index > 0 ? pos : s) > (size_t)LR__RECORD_MAX_LINE)
            return fail(im->err, LR_ETOOBIG, line,
                        "%s: line %d is over the cap of %ld bytes for a line of JSON lines", path,
                        line, (long)LR__RECORD_MAX_LINE);
        if (s < e) {
            json_error_t je;
            char what[sizeof je.text], range[400];
            long nul_line;
            int nul_col;
            if (lr__nul_at(p + s, e - s, line, (int)(s - pos), &nul_line, &nul_col))
                return parse_fail(im, path, line, nul_col, LR__NUL_BYTE);
            if (e - s >= 3 && memcmp(p + s, "\xef\xbb\xbf", 3) == 0)
                return parse_fail(im, path, line, (int)(s - pos) + 1, LR__BOM_IN_LINE);
            json_t *j = lr__record_load(p + s, e - s, 0, &je, range, sizeof range);
            if (!j)
                lr__json_error_text(&je, what, sizeof what);
            /* Not JSON from the start: say what a data file is (a line
             * that starts as an object is one, however it goes on). */
            if (!j && index == 0 && p[s] != '{')
                return fail(im->err, LR_EPARSE, line,
                            "%s:%d:%d: %s (expected a JSON array or JSON lines of objects)",
                            path, line, lr__json_error_col(&je) + (int)(s - pos), what);
            if (!j)
                return parse_fail(im, path, line, lr__json_error_col(&je) + (int)(s - pos),
                                  what);
            int rc = import_one(im, j, index, line, range[0] ? range : NULL);
            json_decref(j);
            if (rc != 0)
                return rc;
            index++;
        }
        pos = end + 1;
    }
    return 0;
}

/* The first len bytes of the file open at fd, into *out (malloc'd): an
 * error when the file ends before them (it shrank since it was measured). */
static int read_whole(int fd, const char *path, size_t len, char **out, struct lr_error *err)
{
    char *buf = malloc(len);
    size_t got = 0;
    if (!buf)
        return fail(err, LR_ENOMEM, 0, "out of memory reading '%s' (%zu bytes)", path, len);
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got < (1u << 30) ? len - got : (1u << 30));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            if (r == 0)
                return fail(err, LR_EIO, 0,
                            "cannot read '%s': it shrank from %zu to %zu bytes while being read",
                            path, len, got);
            return fail(err, LR_EIO, 0, "cannot read '%s': %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    *out = buf;
    return 0;
}

int lr_store_import_file(struct lr_store *store, const char *path,
                         const struct lr_import_options *opts, struct lr_import_report *report,
                         struct lr_error *err)
{
    struct lr_import_report local_rep;
    struct importer im;
    struct lr__hist *fresh = NULL, *old = NULL, *behind = NULL;
    const struct lr__hist *ids;
    sqlite3_int64 behind_v = 0;
    struct stat sb;
    char *map = NULL;
    size_t len = 0, bom = 0;
    int fd = -1, rc = 0, in_tx = 0;

    if (!report)
        report = &local_rep;
    memset(report, 0, sizeof(*report));
    if (!store || !path)
        return fail(err, LR_EINVAL, 0, "lr_store_import_file: store and path are required");
    memset(&im, 0, sizeof(im));
    im.st = store;
    im.opts = opts;
    im.rep = report;
    im.err = err;
    im.path = opts && opts->name ? opts->name : path; /* the name messages give */

    if ((rc = refuse_in_embed(store, "import into it", err)) != 0)
        return rc;
    pthread_mutex_lock(&store->wmu);
    if (store->read_only) {
        rc = fail(err, LR_EINVAL, 0, "history store '%s' is open read-only", store->path);
        goto out;
    }
    if (store->dense) {
        if ((rc = import_dense_setup(&im, err)) != 0)
            goto out;
    } else if (opts && opts->embed) {
        rc = fail(err, LR_EINVAL, 0,
                  "history store '%s' uses the built-in embedder '%s': give no embed callback",
                  store->path, store->embedder);
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        char why[LR__OPEN_FAULT_CAP];
        rc = fail(err, LR_EIO, 0, "cannot read '%s': %s", im.path,
                  fd < 0 ? lr__error_open_fault(path, errno, why) : strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = fail(err, LR_EIO, 0, "cannot read '%s': %s", im.path,
                  S_ISDIR(sb.st_mode) ? "it is a directory" : "not a regular file");
        goto out;
    }
    if (sb.st_size > LR__RECORD_MAX_FILE) {
        rc = fail(err, LR_ETOOBIG, 0,
                  "'%s' is %lld bytes, over the cap of %ld bytes for a data file", im.path,
                  (long long)sb.st_size, LR__RECORD_MAX_FILE);
        goto out;
    }
    len = (size_t)sb.st_size;
    /* Read, not mapped: a mapped file that shrinks while it is parsed
     * (a log rotation that truncates it, say) kills the process with
     * SIGBUS; read, it is an error. */
    if (len > 0 && (rc = read_whole(fd, im.path, len, &map, err)) != 0)
        goto out;
    const char *p = len > 0 ? map : "";
    size_t first = 0;
    const char *how, *encoding = lr__text_encoding((const unsigned char *)p, len, &how);
    if (encoding) {
        rc = fail(err, LR_EPARSE, 1, "%s:1:1: the file " LR__NOT_UTF8, im.path, encoding, how);
        goto out;
    }
    /* A UTF-8 byte order mark, as some editors save a file, is not data. */
    if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
        first = bom = 3;
    } else if (len > 0 && (unsigned char)p[0] == 0xEF) {
        /* A first byte 0xEF that starts no mark starts no JSON either:
         * refused in the words of eval's loader, which reads a file once
         * (it may be a pipe) and so cannot give those bytes to jansson. */
        rc =
            fail(err, LR_EPARSE, 1,
                 "%s:1:1: invalid token (expected a JSON array or JSON lines of objects)", im.path);
        goto out;
    }
    while (first < len && lr__json_ws(p[first]))
        first++;
    if (first == len)
        goto out; /* nothing to import */

    /* All or nothing: one transaction, and the new in-memory copy is built
     * from inside it before it commits. Ids are taken from the copy, so it
     * first catches up with other connections' commits; when those are too
     * many to add in place, a tfidf-v1 store's ids are taken from the file
     * instead (the copy is about to be built again from it anyway), so
     * that the write lock is not held for two rebuilds. */
    rc = write_begin(store, &im.w, &in_tx, !store->dense, err);
    if (rc == NEED_REBUILD) {
        size_t count = 0;
        if (data_version(store->db, &behind_v) != 0)
            rc = sql_fail(store, err, "reading the data version");
        else if (!(behind = calloc(1, sizeof(*behind))))
            rc = fail(err, LR_ENOMEM, 0, "out of memory importing");
        else if ((rc = load_models(store, store->db, behind, err)) == 0 &&
                 (rc = count_records(store, 0, &count, err)) == 0)
            behind->n = count; /* only its models and count are used */
    }
    if (rc != 0)
        goto out;
    ids = behind ? behind : store->hist;
    if (store->dense && store->dim && im.dim != store->dim) {
        rc = fail(err, LR_EINVAL, 0,
                  "vectors of dimension %zu cannot go into history store '%s', which holds "
                  "dimension %zu",
                  im.dim, store->path, store->dim);
        goto out;
    }

    /* Private state: the model names and a record buffer. */
    im.v = malloc(sizeof(*im.v));
    if (!im.v || lr__names_reserve(&im.names, ids->models.n + 1) != 0) {
        rc = fail(err, LR_ENOMEM, 0, "out of memory importing");
        goto out;
    }
    for (size_t i = 0; i < ids->models.n; i++) {
        char *d = dup_str(ids->models.names[i]);
        if (!d) {
            rc = fail(err, LR_ENOMEM, 0, "out of memory importing");
            goto out;
        }
        lr__names_add(&im.names, d);
    }
    im.base_models = ids->models.n;
    im.next_id = ids->n;
    /* '[' opens an array; anything else is JSON lines, where a first line
     * that is a value but no object is a bad record like any other line's
     * (as lr_dataset_load() reads it). */
    rc = p[first] == '[' ? import_array(&im, im.path, p + bom, len - bom)
                         : import_lines(&im, im.path, p + bom, len - bom);
    if (rc == 0)
        rc = pending_flush(&im);
    if (rc != 0 || report->imported == 0)
        goto out;
    /* A dense store that had no dimension yet takes the vectors'. */
    if (store->dense && store->dim == 0 && meta_set_dim(store, im.dim) != 0) {
        rc = sql_fail(store, err, "writing meta");
        goto out;
    }
    /* The file is no longer needed: give its pages back before the rebuild,
     * which is the other large allocation. */
    free(map);
    map = NULL;
    if ((rc = hist_load(store, store->db, store->dense ? im.dim : 0, &fresh, err)) != 0)
        goto out;
    if ((rc = import_cancelled(&im)) != 0 || (rc = commit_checked(store, err)) != 0)
        goto out;
    in_tx = 0;
    pthread_rwlock_wrlock(&store->rw);
    old = store->hist;
    store->hist = fresh;
    store->built_whole = fresh->n;
    if (store->dense)
        store->dim = im.dim;
    fresh = NULL;
    pthread_rwlock_unlock(&store->rw);
    store->rebuild_at = next_rebuild(store, store->hist->n);
    store->generation++;
    atomic_store(&store->reweigh_due, 0);
    if (behind)
        store->data_version = behind_v;
out:
    if (in_tx)
        exec(store, "ROLLBACK", NULL);
    if (rc != 0)
        report->imported = 0;
    pending_drop(&im);
    writer_close(&im.w);
    if (rc == LR_EREPLACED)
        path_check(store, NULL);
    pthread_mutex_unlock(&store->wmu);
    hist_free(old);
    hist_free(fresh);
    hist_free(behind);
    lr__names_free(&im.names);
    free(im.v);
    free(im.pend);
    free(im.pend_index);
    free(im.pend_line);
    free(im.texts);
    free(im.vecs);
    free(map);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ==== Reading (routing threads) ==== */

void lr__store_rdlock(const struct lr_store *store)
{
    pthread_rwlock_rdlock(&((struct lr_store *)store)->rw);
}

void lr__store_unlock(const struct lr_store *store)
{
    pthread_rwlock_unlock(&((struct lr_store *)store)->rw);
}

const struct lr__hist *lr__store_hist(const struct lr_store *store)
{
    return store->hist;
}

int lr__store_is_dense(const struct lr_store *store)
{
    return store->dense;
}

const char *lr_store_embedder(const struct lr_store *store)
{
    return store ? store->embedder : NULL;
}

size_t lr_store_dim(const struct lr_store *store)
{
    size_t dim;
    if (!store)
        return 0;
    lr__store_rdlock(store);
    dim = store->dim;
    lr__store_unlock(store);
    return dim;
}

/* ==== Which queries the file holds ==== */

struct qhash {
    uint64_t h;
    size_t i;
};

static int cmp_qhash(const void *a, const void *b)
{
    const struct qhash *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

int lr_store_find_queries(const struct lr_store *store, const char *const *queries, size_t n,
                          unsigned char *known, size_t *count, struct lr_error *err)
{
    struct lr_store *st = (struct lr_store *)store;
    struct qhash *hs = NULL;
    unsigned char *mark = known;
    sqlite3_stmt *q = NULL;
    size_t found = 0;
    int rc = 0, s;

    if (count)
        *count = 0;
    if (known && n > 0)
        memset(known, 0, n); /* on any failure too, as the header says */
    if (!store)
        return fail(err, LR_EINVAL, 0, "lr_store_find_queries: store is NULL");
    if (n > 0 && !queries)
        return fail(err, LR_EINVAL, 0, "lr_store_find_queries: queries is NULL");
    for (size_t i = 0; i < n; i++)
        if (!queries[i])
            return fail(err, LR_EINVAL, 0, "lr_store_find_queries: queries[%zu] is NULL", i);
    if (n == 0)
        return 0;
    if ((rc = refuse_in_embed(st, "look up its queries", err)) != 0)
        return rc;
    if (!mark && !(mark = calloc(n, 1)))
        return fail(err, LR_ENOMEM, 0, "out of memory reading the history store's queries");
    memset(mark, 0, n);
    if (!(hs = malloc(n * sizeof(*hs)))) {
        rc = fail(err, LR_ENOMEM, 0, "out of memory reading the history store's queries");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        hs[i].h = str_hash(queries[i]);
        hs[i].i = i;
    }
    qsort(hs, n, sizeof(*hs), cmp_qhash);

    pthread_mutex_lock(&st->wmu);
    /* Not through a file the path no longer names (its reads would go
     * through the -wal and -shm at the path: another file's). */
    if ((rc = path_check(st, err)) != 0) {
        pthread_mutex_unlock(&st->wmu);
        goto out;
    }
    if (sqlite3_prepare_v2(st->db, "SELECT query FROM records", -1, &q, NULL) != SQLITE_OK) {
        rc = db_fail(st, st->db, err, "reading the records' queries");
        pthread_mutex_unlock(&st->wmu);
        goto out;
    }
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(q, 0);
        size_t len = (size_t)sqlite3_column_bytes(q, 0), lo = 0, hi = n;
        uint64_t h;
        if (!t)
            continue;
        h = str_hash(t); /* SQLite ends the text with a NUL; a query holds none */
        while (lo < hi) { /* the first entry with this hash */
            size_t mid = lo + (hi - lo) / 2;
            if (hs[mid].h < h)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < n && hs[lo].h == h; lo++) {
            size_t i = hs[lo].i;
            if (!mark[i] && strlen(queries[i]) == len && memcmp(queries[i], t, len) == 0) {
                mark[i] = 1;
                found++;
            }
        }
    }
    if (s != SQLITE_DONE)
        rc = db_fail(st, st->db, err, "reading the records' queries");
    sqlite3_finalize(q);
    pthread_mutex_unlock(&st->wmu);
    if (rc == 0 && count)
        *count = found;
out:
    if (rc != 0 && known)
        memset(known, 0, n);
    if (mark != known)
        free(mark);
    free(hs);
    return rc;
}

size_t lr__store_dim(const struct lr_store *store)
{
    return store->dim;
}

const char *lr__store_embedder(const struct lr_store *store)
{
    return store->embedder;
}

void lr__store_scratch_init(struct lr__store_scratch *s)
{
    memset(s, 0, sizeof(*s));
    lr__terms_init(&s->terms);
}

void lr__store_scratch_free(struct lr__store_scratch *s)
{
    if (!s)
        return;
    lr__terms_free(&s->terms);
    lr__knn_scratch_free(&s->knn);
    free(s->dq);
    memset(s, 0, sizeof(*s));
}

int lr__store_embed_text(const struct lr_store *store, const char *text, size_t len,
                         struct lr__store_scratch *s)
{
    const struct lr__hist *h = store->hist;
    if (store->dense)
        return LR_EINVAL;
    if (lr__terms_count(&s->terms, text, len) != 0)
        return LR_ENOMEM;
    if (!h->df)
        return 0;
    return (int)lr__tfidf_vector(&s->terms, h->df, h->df_ndocs, 0, LR__TFIDF_MAX_FEATURES, s->q);
}

int lr__store_knn_text(const struct lr_store *store, const char *text, size_t len, size_t k,
                       struct lr__store_scratch *s, struct lr__neighbor *out)
{
    int nq = lr__store_embed_text(store, text, len, s);
    if (nq < 0)
        return nq;
    return lr__sindex_knn(&store->hist->sidx, s->q, (size_t)nq, k, &s->knn, out);
}

int lr__store_knn_vec(const struct lr_store *store, const float *vec, size_t dim, size_t k,
                      struct lr__store_scratch *s, struct lr__neighbor *out)
{
    const struct lr__hist *h = store->hist;
    if (!store->dense || !vec || dim == 0 || dim != h->didx.dim)
        return LR_EINVAL;
    if (s->dq_cap < dim) {
        float *dq = realloc(s->dq, dim * sizeof(*dq));
        if (!dq)
            return LR_ENOMEM;
        s->dq = dq;
        s->dq_cap = dim;
    }
    memcpy(s->dq, vec, dim * sizeof(*vec));
    if (lr__l2_normalize(s->dq, dim) != 0)
        return LR_EINVAL;
    return lr__dindex_knn(&h->didx, s->dq, k, out);
}

int lr__store_knn_vecs(const struct lr_store *store, const float *const *vecs, size_t nq,
                       size_t dim, size_t k, struct lr__neighbor *out, size_t *counts)
{
    const struct lr__hist *h = store->hist;
    if (!store->dense || dim == 0 || dim != h->didx.dim)
        return LR_EINVAL;
    if (nq == 0)
        return 0;
    float *qs = malloc(nq * dim * sizeof(*qs));
    if (!qs)
        return LR_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < nq && rc == 0; i++) {
        if (!vecs[i]) {
            rc = LR_EINVAL;
            break;
        }
        memcpy(qs + i * dim, vecs[i], dim * sizeof(*qs));
        if (lr__l2_normalize(qs + i * dim, dim) != 0)
            rc = LR_EINVAL;
    }
    if (rc == 0)
        rc = lr__dindex_knn_batch(&h->didx, qs, nq, k, out, counts);
    free(qs);
    return rc;
}
