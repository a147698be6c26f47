/* fuzz_storefile.c -- a history store's file as another process, a bad
 * disk or a hand edit may leave it, opened (lr_store_open), refreshed and
 * routed over.
 *
 * An input is a selector byte, then either SQL or the file itself. Bit 0 of
 * the selector picks the store the input starts from, made once per process
 * by the library: the built-in embedder's, or a dense store (dimension 4).
 * With bit 1 clear, the rest is SQL run on a copy of that store (rows
 * changed, added or deleted: wrong types, NULLs, blobs of any length, ids
 * out of order); with bit 1 set, the rest replaces the copy's bytes (a
 * truncated or corrupt file). Bit 2 opens it read-only. Statements that
 * reach beyond the file (ATTACH, VACUUM INTO, PRAGMA, schema changes) are
 * refused by an authorizer.
 *
 * Threads: one (the store is opened with one thread).
 */
#define _GNU_SOURCE /* memmem, strcasestr */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fuzz_route.h"
#include "llmroute.h"

#define DIM 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[96];
static char *templ[2];
static size_t templ_len[2];
static struct lr_config *cfg;

static const char config_json[] =
    "{\"models\": ["
    "{\"name\": \"gpt-4o\", \"backend\": \"mock\", \"cost_per_input_token\": 2.5e-6,"
    " \"cost_per_output_token\": 1e-5},"
    "{\"name\": \"gpt-4o-mini\", \"backend\": \"mock\", \"cost_per_input_token\": 1.5e-7,"
    " \"cost_per_output_token\": 6e-7}],"
    " \"router\": {\"strategy\": \"smart\", \"n_similar\": 4}}";

static void remove_files(void)
{
    char p[128];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-journal", path);
    unlink(p);
}

static void cleanup(void)
{
    remove_files();
    rmdir(dir);
}

static int read_all(const char *p, char **out, size_t *len)
{
    FILE *f = fopen(p, "rb");
    long n;
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    *out = malloc(n > 0 ? (size_t)n : 1);
    *len = *out && n > 0 ? fread(*out, 1, (size_t)n, f) : 0;
    fclose(f);
    return *out ? 0 : -1;
}

static int write_all(const char *p, const void *b, size_t len)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    size_t off = 0;
    if (fd < 0)
        return -1;
    while (off < len) {
        ssize_t n = write(fd, (const char *)b + off, len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    return off == len ? 0 : -1;
}

/* The two starting stores, with a few records each, kept as bytes. */
static int make_templates(void)
{
    static const char *const queries[] = {"What is the capital of France?",
                                          "Write a haiku about rain", "2+2=?"};
    struct lr_error err = {0};
    for (int dense = 0; dense < 2; dense++) {
        struct lr_store_options so = {0};
        struct lr_store *st = NULL;
        so.threads = 1;
        if (dense) {
            so.embedder = "fuzz-embed";
            so.dense_dim = DIM;
        }
        remove_files();
        if (lr_store_open(path, &so, &st, &err) != 0)
            return -1;
        for (size_t i = 0; i < 3; i++) {
            struct lr_outcome o[2] = {{"gpt-4o", 1.0, 20.0 + (double)i},
                                      {"gpt-4o-mini", i == 1 ? 0.0 : 0.5, 10}};
            struct lr_record r = {queries[i], 8, i ? "task" : NULL, o, 2};
            float vec[DIM] = {1.0f, (float)i, 0.5f, -1.0f};
            if (lr_store_add(st, &r, dense ? vec : NULL, dense ? DIM : 0, &err) != 0) {
                lr_store_free(st);
                return -1;
            }
        }
        lr_store_free(st);
        if (read_all(path, &templ[dense], &templ_len[dense]) != 0)
            return -1;
    }
    remove_files();
    return 0;
}

static int authorize(void *arg, int action, const char *a, const char *b, const char *c,
                     const char *d)
{
    (void)arg;
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    switch (action) {
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
    case SQLITE_READ:
    case SQLITE_SELECT:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
        return SQLITE_OK;
    default:
        return SQLITE_DENY;
    }
}

static void run_sql(const uint8_t *sql, size_t len)
{
    sqlite3 *db = NULL;
    char *text = malloc(len + 1);
    if (!text)
        return;
    memcpy(text, sql, len);
    text[len] = '\0';
    if (strcasestr(text, "vacuum") || strcasestr(text, "attach")) {
        free(text);
        return;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
        sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 1 << 20);
        sqlite3_set_authorizer(db, authorize, NULL);
        sqlite3_exec(db, text, NULL, NULL, NULL);
    }
    sqlite3_close(db);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lr_store_options so = {0};
    struct lr_store *st = NULL;
    struct lr_error err = {0};
    struct lr_router *router = NULL;
    struct lr_router_options ro;
    int dense, raw, changed = 0;

    if (size < 1)
        return 0;
    if (!cfg) {
        /* In memory when the machine has a tmpfs: SQLite syncs every commit. */
        snprintf(dir, sizeof dir, "%s/llmroute-fuzz-XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir))
            abort();
        snprintf(path, sizeof path, "%s/store.db", dir);
        atexit(cleanup);
        if (make_templates() != 0 ||
            lr_config_load_string(config_json, strlen(config_json), &cfg, &err) != 0)
            abort();
    }
    dense = data[0] & 1;
    raw = (data[0] >> 1) & 1;
    remove_files();
    if (raw) {
        if (write_all(path, data + 1, size - 1) != 0)
            return 0;
    } else {
        if (write_all(path, templ[dense], templ_len[dense]) != 0)
            return 0;
        run_sql(data + 1, size - 1);
    }
    so.threads = 1;
    so.read_only = (data[0] >> 2) & 1;
    if (dense) {
        so.embedder = "fuzz-embed";
        so.dense_dim = DIM;
    }
    if (lr_store_open(path, &so, &st, &err) != 0)
        return 0;
    (void)lr_store_refresh(st, &changed, &err);
    lr_router_options_init(&ro);
    ro.store = st;
    if (lr_store_count(st) > 0 && lr_router_new(cfg, &ro, &router, &err) == 0) {
        static const float vec[DIM] = {1.0f, 0.0f, 0.5f, -1.0f};
        fuzz_route_once(router, dense ? vec : NULL, DIM, 2);
        lr_router_free(router);
    }
    lr_store_free(st);
    return 0;
}
