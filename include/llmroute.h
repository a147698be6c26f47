/* llmroute.h -- the public API of libllmroute, a multi-LLM router.
 *
 * libllmroute is computation, not I/O: it parses model configurations, keeps
 * the history store, embeds text with its built-in embedder, searches,
 * predicts and optimizes. It never opens a socket. The CLI, the gateway and
 * the Python binding use only this header of the library, never its lr__
 * internals. The CLI also uses the gateway's own header
 * (src/gateway/gateway.h) for what it shares with the gateway: `serve` runs
 * it, `check-config` runs its configuration checks, and the remote
 * embedder's client (src/cli/embed_http.c) refuses an API key the way the
 * gateway does, every CLI error message escapes what it quotes through
 * the gateway's gw_put_escaped(), and import tells a store it makes as
 * serve does (gw_store_is_new()).
 *
 * Conventions (after libuv):
 *   - every public name starts with lr_ / LR_;
 *   - functions return 0 or a negative LR_E* code; lr_strerror() explains it;
 *   - functions that can fail on user input also fill a struct lr_error with
 *     a message a user can act on ("models[1].cost_per_input_token: expected
 *     a non-negative number");
 *   - a struct lr_error is written only when a function fails: on success it
 *     is left as it was (its code and message may be an earlier failure's),
 *     so read it only after a nonzero return;
 *   - lr_x_free(NULL) is a no-op; every function that returns memory says who
 *     frees it;
 *   - the header needs C99 or later (or C++): it uses long long.
 *
 * Option and request structs: set each with its _init function first, then
 * change the fields you mean to: lr_store_options_init, lr_import_options_init,
 * lr_router_options_init, lr_request_init, lr_decision_init and
 * lr_batch_options_init. The library reads every field, so an uninitialised
 * struct (stack garbage) is read as what its bytes happen to say: a wild
 * pointer it follows (lr_store_open with an uninitialised struct
 * lr_store_options can crash), a count it trusts. A zeroed struct (= {0},
 * memset, calloc) is not the same as an initialised one either, except where
 * the _init function says it is: zero is a value given, not "the default",
 * wherever the default is NaN or -1 (a zeroed lr_request asks for a
 * performance requirement of 0, the cheapest candidate, and says its input
 * is 0 tokens, not to be estimated from the text; a zeroed
 * lr_router_options asks for a requirement of 0; a zeroed
 * lr_batch_options gives alpha and budget 0, which the per-query mode
 * refuses).
 *
 * ABI: while the version is 0.x, a minor version (0.1 to 0.2) may change the
 * public structs (a field added to an option struct, as defer_reweigh was to
 * lr_store_options in 0.2) and the soname stays libllmroute.so.0: rebuild
 * against the new header whenever the library changes minor version, and
 * fill structs with their _init functions (above) so that a field added
 * later gets its default. A patch version changes no struct. lr_version()
 * says which library was loaded; the Python binding refuses a library of
 * another version than its own.
 *
 * Threads: a struct lr_config is immutable once loaded and may be read from
 * any thread. A struct lr_router may be used for routing from several threads
 * at once (lr_router_route and lr_router_route_batch are thread-safe, and so
 * are lr_router_sequential_cursor and lr_router_set_sequential_cursor beside
 * them). A struct lr_store serialises its own writers.
 */
#ifndef LLMROUTE_H
#define LLMROUTE_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h> /* sig_atomic_t */

#ifdef __cplusplus
extern "C" {
#endif

/* Public symbols are the only ones the shared library exports. */
#if defined(LR_BUILDING_LIB) && defined(__GNUC__)
#define LR_EXTERN __attribute__((visibility("default")))
#else
#define LR_EXTERN
#endif

/* The version: the one source of it. CMake reads these lines for the
 * project's and the shared library's version (and refuses a STRING that is
 * not MAJOR.MINOR.PATCH); the Python binding checks the loaded library's
 * lr_version() against its own. */
#define LR_VERSION_MAJOR 0
#define LR_VERSION_MINOR 4
#define LR_VERSION_PATCH 0
#define LR_VERSION_STRING "0.4.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH, for comparisons. */
#define LR_VERSION_NUMBER (LR_VERSION_MAJOR * 10000 + LR_VERSION_MINOR * 100 + LR_VERSION_PATCH)

/* The version of the library loaded at run time (which may differ from the
 * header a caller was compiled with): LR_VERSION_STRING and
 * LR_VERSION_NUMBER as the library was built. The string is static. */
LR_EXTERN const char *lr_version(void);
LR_EXTERN int lr_version_number(void);

/* ==== Errors ==== */

enum lr_errcode {
    LR_OK = 0,
    LR_EINVAL = -1,      /* invalid argument or malformed input */
    LR_ENOMEM = -2,      /* out of memory */
    LR_ENOMODEL = -3,    /* a model or route name that is not configured */
    LR_EIO = -4,         /* a file could not be read or written */
    LR_EPARSE = -5,      /* malformed JSON or data */
    LR_ECONFIG = -6,     /* a configuration that fails validation */
    LR_EEMPTY = -7,      /* an empty candidate list, store or batch where one is needed */
    LR_ESTORE = -8,      /* the history store failed or does not match */
    LR_EINFEASIBLE = -9, /* no assignment meets the constraints (a best effort is returned) */
    LR_ESTRATEGY = -10,  /* unknown strategy, or one that lacks what it needs */
    LR_ETOOBIG = -11,    /* an input over a configured cap */
    LR_EBUSY = -12,      /* the history store is being written by another process for longer
                            than a write waits (5 s); nothing was written: try again */
    LR_EREPLACED = -13,  /* the history store's file was replaced or removed since it was
                            opened; nothing was written (lr_store_refresh() opens the new one) */
    LR_ECANCELED = -14   /* stopped at the caller's request (lr_import_options.cancel,
                            lr_router_route_batch_stoppable's stop); nothing was written */
};

/* A short, static description of an error code. Never NULL. */
LR_EXTERN const char *lr_strerror(int err);

/* Filled by functions that can fail on user input. `line` is 1-based when the
 * error is tied to a line of a file, else 0. The message is NUL-terminated. */
struct lr_error {
    int code;
    int line;
    char message[512];
};

/* ==== Configuration ==== */

struct lr_config;

/* One configured model. All strings belong to the config. Prices that were
 * not configured are NaN (smart routing refuses a candidate without them);
 * limits that were not configured are 0. */
struct lr_model_info {
    const char *name;           /* unique name clients use */
    const char *backend;        /* "openai", "vllm", "ollama", ..., "mock" */
    const char *base_url;       /* as configured, or NULL when not set: the backend's
                                   default is not filled in here (the gateway uses
                                   https://api.openai.com/v1 for an "openai" model or
                                   one without a backend, and refuses to serve any
                                   other but "mock" without a base_url) */
    const char *api_key_env;    /* name of the env var holding the key, or NULL */
    const char *upstream_model; /* the name sent upstream; defaults to name */
    double cost_per_input_token;
    double cost_per_output_token;
    int max_concurrency; /* in-flight cap; 0 = unlimited */
    int capacity;        /* batch workload cap L_j; 0 = unlimited */
    const char *json;    /* the model's object as compact JSON, for sections
                            the library does not interpret (e.g. "mock") */
};

/* A configured route: a name clients use as `model`, routed among models. */
struct lr_route_info {
    const char *name;
    const char *strategy;           /* NULL = the router's default */
    const int *models;              /* indices into the config's models */
    size_t n_models;                /* 0 = all models */
    double performance_requirement; /* NaN = the router's default */
    const int *fallbacks;           /* explicit fallback models, or NULL */
    size_t n_fallbacks;
    const char *json; /* the route's object as compact JSON */
};

/* n_similar, the neighbours smart routing reads, is 1 to this. */
#define LR_MAX_N_SIMILAR 1024

/* Router defaults from the config's "router" object. */
struct lr_router_defaults {
    const char *strategy;           /* default "sequential" */
    double performance_requirement; /* default 0.7 */
    int n_similar;                  /* default 16; 1 to LR_MAX_N_SIMILAR */
    const char *predictor;          /* default "default"; "aios" for parity */
    double alpha;                   /* batch average-quality target, default = requirement */
    const char *embedding_json;     /* the "embedding" object as JSON, or NULL (built-in) */
    const char *store_path;         /* "store", resolved against the config file's folder, or NULL */
    const char *query_text;         /* chat query text: "last_user" (default) or "all_user" */
};

/* Parse and validate a configuration. On success *out owns a new config that
 * the caller frees with lr_config_free(). On failure *out is NULL and err
 * names the offending field. Secrets are never read here: only the names of
 * the environment variables that hold them. lr_config_load_string reads
 * len bytes of JSON text: len counts the text without a terminating NUL
 * (strlen(json), not sizeof a literal), and a NUL byte among them is
 * LR_EPARSE naming its offset. */
LR_EXTERN int lr_config_load_file(const char *path, struct lr_config **out, struct lr_error *err);
LR_EXTERN int lr_config_load_string(const char *json, size_t len, struct lr_config **out,
                          struct lr_error *err);
LR_EXTERN void lr_config_free(struct lr_config *cfg);

LR_EXTERN size_t lr_config_model_count(const struct lr_config *cfg);
/* NULL when i is out of range. */
LR_EXTERN const struct lr_model_info *lr_config_model(const struct lr_config *cfg, size_t i);
/* Index of the model named `name`, or LR_ENOMODEL. */
LR_EXTERN int lr_config_model_index(const struct lr_config *cfg, const char *name);

LR_EXTERN size_t lr_config_route_count(const struct lr_config *cfg);
LR_EXTERN const struct lr_route_info *lr_config_route(const struct lr_config *cfg, size_t i);
/* Index of the route named `name`, or LR_ENOMODEL. */
LR_EXTERN int lr_config_route_index(const struct lr_config *cfg, const char *name);

LR_EXTERN const struct lr_router_defaults *lr_config_router_defaults(const struct lr_config *cfg);

/* A remote embedder, from the config's "router.embedding": any server that
 * answers OpenAI's POST {base_url}/embeddings (Ollama, llama.cpp server,
 * vLLM, TEI, OpenAI). The library never calls it: the caller fetches vectors
 * with its own HTTP client and hands them in (lr_request.embedding,
 * lr_import_options.embed, lr_store_add_outcome_vec). Strings belong to the
 * config. */
struct lr_embedding_info {
    const char *base_url;    /* e.g. "http://localhost:11434/v1" (no trailing '/') */
    const char *model;       /* the embedding model's name on that server */
    const char *api_key_env; /* env var holding the key (sent as a Bearer token), or NULL */
    int dimensions;          /* sent as "dimensions" and checked in answers; 0 = server's own */
    int batch_size;          /* texts per request, 1..2048, default 64 */
    long timeout_ms;         /* per request, default 30000 */
    const char *embedder_id; /* the id a store records: "openai:" + model */
    int max_input_chars;     /* a text is cut to its first this many characters before it
                                is sent (lr_embedding_input_len()), 0..1048576, default
                                8192; 0 = sent whole */
};

/* The configured remote embedder, or NULL when the built-in one is used. */
LR_EXTERN const struct lr_embedding_info *lr_config_embedding(const struct lr_config *cfg);

/* How many bytes of text[0..len) (UTF-8) go to the remote embedder: the
 * first info->max_input_chars characters (code points), so the cut never
 * splits a character; len when the text is no longer, when max_input_chars
 * is 0, or when info is NULL. Every caller that sends a text to the
 * embedder (import, routing, feedback) cuts it with this, so the vectors a
 * store holds and the vectors of queries routed over it are made alike. */
LR_EXTERN size_t lr_embedding_input_len(const struct lr_embedding_info *info, const char *text,
                                        size_t len);

/* A top-level key's value as compact JSON owned by the config, or NULL when
 * absent: for the sections the library does not interpret ("server", ...).
 * The ones it does ("models", "routes", "router") are returned too, as
 * written in the file (before defaults and validation); read them through
 * the accessors above, which give what the library uses. */
LR_EXTERN const char *lr_config_section(const struct lr_config *cfg, const char *key);

/* Warnings found while loading (unknown keys and the like). */
LR_EXTERN size_t lr_config_warning_count(const struct lr_config *cfg);
LR_EXTERN const char *lr_config_warning(const struct lr_config *cfg, size_t i);

/* ==== History store ==== */

struct lr_store;

/* One model's outcome on one past query. */
struct lr_outcome {
    const char *model;    /* model name as in the history */
    double correctness;   /* 0/1 or a score in [0,1] */
    double output_tokens; /* output token count */
};

/* One past query with the outcomes of the models that answered it. */
struct lr_record {
    const char *query;
    long input_tokens; /* < 0: estimate from the text */
    const char *task;  /* optional label, may be NULL */
    const struct lr_outcome *outcomes;
    size_t n_outcomes;
};

/* The built-in embedder's id (TF-IDF over hashed n-grams, sparse vectors). */
#define LR_EMBEDDER_BUILTIN "tfidf-v1"

struct lr_store_options {
    const char *embedder;  /* embedder id; NULL = built-in LR_EMBEDDER_BUILTIN; any other
                              id makes a dense store (lr_embedding_info.embedder_id):
                              1 to 128 bytes of UTF-8 text without control
                              characters, else LR_EINVAL naming the fault */
    int dense_dim;         /* for a remote embedder: its dimension; 0 = unknown yet.
                              With the built-in embedder only 0 (it has no dimension
                              to give): any other is LR_EINVAL */
    int read_only;         /* open read-only: the store's contents are never changed
                              (SQLite may still create the -wal and -shm files beside
                              an existing store, as it does for any reader in WAL mode) */
    size_t max_records;    /* cap on records; 0 = no cap */
    int threads;           /* threads that rebuild the in-memory copy (open, refresh,
                              import): 0 = the CPUs the process may run on, at most
                              8; 1 = the calling thread only; a count over 8 is
                              taken as 8. Stores under 4096 records use one. The
                              copy is the same whatever the count. < 0 is
                              LR_EINVAL. */
    int defer_reweigh;     /* the append that makes the periodic rebuild of the copy
                              due (each time the store has grown by a quarter: the
                              built-in embedder's re-weighing, a dense store's
                              regrouping) only marks it due and returns; the next
                              lr_store_refresh() runs it. 0 = that append runs it
                              before it returns (the default: a caller that never
                              refreshes still gets it). A server that refreshes
                              periodically sets it, so that no append waits for a
                              rebuild (seconds at 100,000 records). */
};

/* Fill opts with the defaults (the built-in embedder, writable, no cap,
 * the default threads, appends that re-weigh): all zero, as a zeroed struct
 * (= {0}, memset) is and stays. opts NULL is the same as these. */
LR_EXTERN void lr_store_options_init(struct lr_store_options *opts);

/* Open (or create) a history store in the SQLite file at `path`; ":memory:"
 * gives a store that lives in memory. The caller frees it with
 * lr_store_free(). Opening a store made by another embedder is LR_ESTORE.
 * Other processes may write the same file: each write (lr_store_add, an
 * import) first reads the records they committed, and lr_store_refresh()
 * reads them without writing; routing sees them from then on (or from the
 * next open). A write waits up to 5 s for another process's transaction,
 * then fails with LR_EBUSY, having written nothing. */
LR_EXTERN int lr_store_open(const char *path, const struct lr_store_options *opts, struct lr_store **out,
                  struct lr_error *err);
LR_EXTERN void lr_store_free(struct lr_store *store);

/* Free the store and, when its file holds no records and no other handle
 * (in this process or another) has it open, remove the file and SQLite's
 * files beside it: for a caller that made a store and failed to fill it.
 * Every open handle holds a shared flock() on the file, so a store another
 * handle is filling, even before its first commit, is never removed;
 * nor is another file moved to the path since the open: the path is the
 * one given, made absolute at the open, and must still name the file
 * opened. *removed (may be NULL) says whether it was. The store is freed either
 * way; the result is nonzero only when a file could not be removed. */
LR_EXTERN int lr_store_discard(struct lr_store *store, int *removed, struct lr_error *err);

LR_EXTERN size_t lr_store_count(const struct lr_store *store);

/* How many outcomes of the model named `model` (matched exactly, as smart
 * routing matches config names) the store's in-memory copy holds: 0 for a
 * model it has never seen, whose quality smart routing cannot predict
 * (the default predictor ranks it after every model it knows; aios gives
 * it quality 0). 0 for a NULL store or name. */
LR_EXTERN size_t lr_store_model_outcomes(const struct lr_store *store, const char *model);

/* Which of the n query texts (each NUL-terminated) the store's file holds
 * as some record's query, byte for byte: for a caller about to score
 * routing on data that must be held out of the history (llmroute eval).
 * known (may be NULL) receives n flags, 1 for a query found; *count (may
 * be NULL) how many were found. Reads every record's query from the file
 * this handle opened, once: time linear in the records, plus n log n. A
 * NULL queries[i] is LR_EINVAL and nothing is read; a file the path no
 * longer names (replaced or removed since the open) is LR_EREPLACED, as a
 * write is, until lr_store_refresh() opens the new one. On failure known
 * is all 0 and *count 0. */
LR_EXTERN int lr_store_find_queries(const struct lr_store *store, const char *const *queries,
                                    size_t n, unsigned char *known, size_t *count,
                                    struct lr_error *err);

/* Read what other connections (another process's lr_store_import_file, say)
 * have committed to the store's file since its in-memory copy last matched
 * it. If anything was, the copy is built again from one consistent moment
 * of the file and swapped in; routing goes on with the old copy meanwhile
 * and uses the new one from the swap. When nothing was, it costs one small
 * SQLite query. This handle's own writes never count as changes. The
 * handle's own writers go on meanwhile: the new copy is built from a
 * snapshot read on a second connection, and they wait only while the rows
 * committed after it are added to it before the swap. One refresh at a
 * time per handle; writes nothing, so it also works on a read-only store.
 * A store opened with defer_reweigh is also rebuilt when an append has
 * made its re-weighing due (lr_store_reweigh_due()), the same way.
 * *changed (may be NULL) is set to 1 when the copy was rebuilt (or
 * re-weighed), else 0. On failure the old copy stays and err names the
 * store.
 * When the store's path no longer names the file this handle opened (an
 * atomic replace: another store moved to its name, or the file removed),
 * writes are refused with LR_EREPLACED, and a refresh, or the first write
 * that notices, folds the old file's -wal into it (PRAGMA
 * wal_checkpoint(TRUNCATE)) so that the -wal left at the path is empty
 * for the new file. The refresh then opens the file now at the path, by
 * the same rules as lr_store_open() but never creating one, and swaps its
 * copy in (*changed set to 2); while there is none, or it cannot be opened, it
 * fails with LR_EREPLACED and routing goes on with the old copy. */
LR_EXTERN int lr_store_refresh(struct lr_store *store, int *changed, struct lr_error *err);

/* Why writes to the store are refused with LR_EREPLACED now, as far as the
 * last write or refresh that looked found: LR_STORE_GONE_NONE when they are
 * not; LR_STORE_GONE_REPLACED, another file is at the store's path (the next
 * lr_store_refresh() opens it); LR_STORE_GONE_REMOVED, nothing is there;
 * LR_STORE_GONE_UNOPENABLE, what is there cannot be opened as a store
 * (something other than a regular file, or a file the last refresh failed to
 * open: the LR_EREPLACED message says why). For a caller that words its own
 * message (a server's client, who is not told the path). Takes no lock: any
 * thread may ask. */
enum {
    LR_STORE_GONE_NONE = 0,
    LR_STORE_GONE_REPLACED = 1,
    LR_STORE_GONE_REMOVED = 2,
    LR_STORE_GONE_UNOPENABLE = 3
};
LR_EXTERN int lr_store_gone(const struct lr_store *store);

/* 1 when the store was opened with defer_reweigh and an append has made the
 * re-weighing of its copy due, which the next lr_store_refresh() runs (and
 * then sets *changed); else 0. Takes no lock: any thread may ask. */
LR_EXTERN int lr_store_reweigh_due(const struct lr_store *store);

/* Records added to the in-memory copy one at a time since it was last built
 * whole (at open, by an import or by a rebuild): this handle's appends, and
 * other processes' records a write of this handle caught up with. Each was
 * weighed with the built-in embedder's document frequencies of its time and
 * joined the groups fitted without it (its outcomes count in the predictor's
 * group level only there), so while this is above 0, routing on this handle
 * can differ from routing on a fresh open of the same file (`llmroute
 * route`, a restarted gateway). 0 for NULL. */
LR_EXTERN size_t lr_store_added_since_build(const struct lr_store *store);

/* lr_store_refresh(), and also when lr_store_added_since_build() is above 0:
 * the copy is built again from one moment of the file, beside this handle's
 * writers, exactly as lr_store_refresh() builds it (and as long: the time
 * of an open), and swapped in. When it returns 0 and nothing was appended
 * meanwhile, the copy is the one a fresh open of the file builds, and so
 * are its routing decisions. *changed as for lr_store_refresh(). */
LR_EXTERN int lr_store_rebuild(struct lr_store *store, int *changed, struct lr_error *err);

/* The id of the embedder the store was opened with (owned by the store). A
 * store whose id is not LR_EMBEDDER_BUILTIN is dense: it needs vectors from
 * the caller. */
LR_EXTERN const char *lr_store_embedder(const struct lr_store *store);
/* A dense store's vector dimension; 0 for the built-in embedder, or for a
 * dense store that holds no vector yet and was opened without dense_dim. */
LR_EXTERN size_t lr_store_dim(const struct lr_store *store);

/* Append one record; durable (committed) before it returns 0. A dense vector
 * may be given for a store whose embedder is remote (else NULL, 0: a dim
 * over 0 without a vector is LR_EINVAL, as is a vector). The
 * record is checked on the rules of an imported one (a model named once,
 * token counts at most 1e9, a task of at most 64 KiB, query, task and
 * model names valid UTF-8 as
 * JSON text is, model names free of control characters, ...; input_tokens
 * < 0 is estimated): a record import would refuse is LR_EINVAL with
 * import's message naming the field, and stores nothing. The
 * lr_store_add_outcome functions check theirs the same way. */
LR_EXTERN int lr_store_add(struct lr_store *store, const struct lr_record *rec, const float *vec,
                 size_t dim, struct lr_error *err);

/* Append one outcome for `query` (the gateway's feedback path): adds a record
 * with a single outcome. Durable before it returns 0. A dense store needs
 * the query's vector: use lr_store_add_outcome_vec. */
LR_EXTERN int lr_store_add_outcome(struct lr_store *store, const char *query, long input_tokens,
                         const char *model, double correctness, double output_tokens,
                         struct lr_error *err);

/* lr_store_add_outcome with the query's vector from the store's remote
 * embedder (dim floats; it need not be unit length). For a dense store only. */
LR_EXTERN int lr_store_add_outcome_vec(struct lr_store *store, const char *query,
                                       long input_tokens, const char *model, double correctness,
                                       double output_tokens, const float *vec, size_t dim,
                                       struct lr_error *err);

/* The numbers of a record in the data format (the table of record fields
 * under "Smart routing" in the README), each with its rule: */
enum lr_record_number {
    LR_CORRECTNESS,   /* a number in [0,1] (pass a boolean as 1 or 0) */
    LR_INPUT_TOKENS,  /* a whole number from 0 to 1e9: 123.0 is 123, 2.5 is refused */
    LR_OUTPUT_TOKENS  /* a number from 0 to 1e9 (may be fractional: a mean) */
};

/* 0 when value passes the rule `llmroute import` applies to that kind of
 * number, else LR_EINVAL with err's message naming field as the import names
 * its own ("input_tokens: expected a non-negative integer", "...: 1000000001 is
 * over the cap of 1000000000"). A value that is not a number at all (a string,
 * a missing field) is passed as NaN and refused like a negative one. The
 * gateway checks /v1/feedback with it, so a feedback and an import refuse the
 * same numbers with the same words. */
LR_EXTERN int lr_record_check_number(enum lr_record_number kind, double value, const char *field,
                                     struct lr_error *err);

/* 0 when query (len bytes) passes the rule `llmroute import` applies to a
 * record's query (1 to 256 KiB of UTF-8, no NUL), else LR_EINVAL with err's
 * message the import's ("query: 307200 bytes is over the cap of 262144").
 * The gateway checks /v1/feedback with it before embedding the query. */
LR_EXTERN int lr_record_check_query(const char *query, size_t len, struct lr_error *err);

/* 0 unless the JSON text json (len bytes) holds a number out of a double's
 * range (1e400, -1e999, an integer of 400 digits), which JSON parsers
 * refuse as a syntax error of the whole text, and read with each such
 * number as null is JSON `llmroute import` reads; then LR_EINVAL, with
 * field (cap bytes) naming the first one's place as the import names a
 * record's fields ("outputs[0].output_token_length", "queries[1].input_tokens";
 * "" when the text is that number) and err's message the import's
 * ("output_tokens: 1e400 is out of range: a number's magnitude is at most
 * about 1.8e308"). A text with another fault is 0: its parser's own error
 * names that. The gateway checks a request body its parser refused with it,
 * so such a number is named by its member, in an import's words. */
LR_EXTERN int lr_record_check_range(const char *json, size_t len, char *field, size_t cap,
                                    struct lr_error *err);

/* The longest idempotency key lr_store_add_outcome_keyed takes, in bytes. */
#define LR_STORE_MAX_KEY 255

/* 1 when key is a valid idempotency key (1 to LR_STORE_MAX_KEY bytes of
 * printable ASCII, 0x21-0x7E), else 0: callers can refuse a bad key before
 * doing anything else. */
LR_EXTERN int lr_store_key_valid(const char *key);

/* What lr_store_add_outcome_keyed() sets *duplicate to for a key the
 * store already holds (0: the key was new and the outcome recorded). */
#define LR_STORE_KEY_SAME 1    /* the key's record holds what was sent: a retry */
#define LR_STORE_KEY_DIFFERS 2 /* it holds another query, count, model or figure */

/* lr_store_add_outcome (vec NULL, dim 0) or lr_store_add_outcome_vec (a
 * dense store's vector) made safe to retry: with a non-NULL key (1 to
 * LR_STORE_MAX_KEY bytes of printable ASCII, 0x21-0x7E; else LR_EINVAL),
 * the key is committed in the same transaction as the outcome, with the
 * time of the append and this handle's key time-to-live
 * (lr_store_set_key_ttl(), 24 hours by default), which is the key's own
 * from then on. A key already committed to the store's file (by any
 * connection or process) and still within its own time-to-live stores
 * nothing and sets *duplicate (else 0; duplicate may be NULL), whatever
 * the time-to-live of the handle that asks, to LR_STORE_KEY_SAME when the
 * record committed with the key has the same query (byte for byte), input
 * tokens (input_tokens < 0 is its estimate, as recorded) and one outcome
 * of the same model, correctness and output tokens (equal as doubles),
 * else LR_STORE_KEY_DIFFERS: the key was used for another outcome, which
 * a caller should refuse rather than take as recorded (the gateway
 * answers 422). A vector is not compared (it is the embedder's). Both are
 * nonzero: a caller that tests only for a duplicate reads either as one.
 * A key whose record the file no longer holds counts as the same. A key past its own
 * time-to-live counts as absent: the append records, and the key is
 * remembered anew from then. The lookup runs inside the write
 * transaction, so of two writers with one key exactly one records it. A
 * NULL key is a plain append. */
LR_EXTERN int lr_store_add_outcome_keyed(struct lr_store *store, const char *key,
                                         const char *query, long input_tokens, const char *model,
                                         double correctness, double output_tokens,
                                         const float *vec, size_t dim, int *duplicate,
                                         struct lr_error *err);

/* How long a store remembers an idempotency key unless told otherwise, in
 * seconds: 24 hours. */
#define LR_STORE_KEY_TTL_DEFAULT 86400
/* The longest key time-to-live lr_store_set_key_ttl takes: 100 years of
 * 365 days, in seconds. */
#define LR_STORE_MAX_KEY_TTL 3153600000LL

/* How long the keys this handle's keyed appends commit are remembered:
 * seconds from the append that committed the key (LR_STORE_KEY_TTL_DEFAULT
 * from open), or 0 to keep them for good. The time-to-live is stored with
 * each key when it is committed and is the key's for good: changing the
 * setting, or another handle (another process) with another setting,
 * never shortens or lengthens the life of a key already committed. Once
 * its time has passed the key is forgotten: the same key records again.
 * Keys past their own time-to-live are deleted by keyed appends (of any
 * handle), a few of the soonest expired in each append's own transaction,
 * so the store holds about the live keys; a key expired but not yet
 * deleted already counts as absent. The setting is the handle's, not the
 * file's. Any thread may call it at any time; appends that start after it
 * use it. Keys with no time-to-live of their own (a store's keys from
 * before keys had one, and keys a library of that time still commits) are
 * judged by the asking handle's setting, as that library did: a duplicate
 * while younger than it (for good with 0), and deleted only by a handle
 * whose setting is over 0, once older than it. seconds < 0 or over
 * LR_STORE_MAX_KEY_TTL is LR_EINVAL, and the setting stays. */
LR_EXTERN int lr_store_set_key_ttl(struct lr_store *store, long long seconds,
                                   struct lr_error *err);
/* The handle's key time-to-live in seconds (0: keys are kept for good); 0
 * for a NULL store. */
LR_EXTERN long long lr_store_key_ttl(const struct lr_store *store);

/* Embeds texts for an import into a dense store: writes n rows of dim floats
 * to out (row i for texts[i]; any length but zero, the store normalises
 * them). Returns 0, or a negative LR_E* code with err's message filled in,
 * which fails the whole import with that code (LR_EBUSY for a server that
 * asks to be retried, say); a value that is no LR_E* code is LR_EIO. It
 * runs with the store's write lock held: adding to, importing into,
 * refreshing or rebuilding the same store, or lr_store_find_queries() on
 * it, from inside the callback is LR_EINVAL at once; handing such a call to
 * another thread and waiting for it deadlocks. It must return: a longjmp()
 * or an exception unwinding out of it leaves the store locked. */
typedef int (*lr_embed_fn)(void *arg, const char *const *texts, size_t n, float *out,
                           size_t dim, struct lr_error *err);

/* The most bytes of a data file either loader reads (lr_store_import_file,
 * lr_dataset_load). */
#define LR_DATA_FILE_MAX (1024L * 1024 * 1024)

struct lr_import_options {
    const char *split; /* keep only records whose "split" equals this; NULL = all */
    int strict;        /* 1: any bad record fails the whole import */
    /* Dense stores only (else NULL): the embedder, called in batches of up to
     * embed_batch texts (0 = 64) from inside the import's transaction. */
    lr_embed_fn embed;
    void *embed_arg;
    size_t embed_batch;
    size_t embed_dim; /* the vectors' dimension; 0 = the store's (which must be known) */
    /* The data's name in messages (NULL: the path): a caller that copied
     * standard input to a file names it so. */
    const char *name;
    /* lr_store_import_file only (NULL: never stopped): read between
     * records, between embedding batches and before the commit; once
     * nonzero (a signal handler's flag, say) the import stops there with
     * LR_ECANCELED and nothing added. */
    const volatile sig_atomic_t *cancel;
};

/* Fill opts with the defaults (every split, bad records skipped, no
 * embedder): all zero, as a zeroed struct is and stays. opts NULL is the
 * same as these. */
LR_EXTERN void lr_import_options_init(struct lr_import_options *opts);

struct lr_import_report {
    size_t read;            /* records seen */
    size_t imported;        /* records added */
    size_t skipped_split;   /* records not of opts->split */
    size_t skipped_unsplit; /* of those, the ones with no "split" field (or a null
                               one): all of them when the file names no splits */
    size_t bad;             /* records skipped as malformed */
    char first_bad[512];    /* message about the first bad record */
};

/* Import the AIOS smart-routing data format (JSON array or JSONL) from a
 * file. All or nothing: on any error nothing is added to the store. A dense
 * store needs opts->embed; every kept record's query is embedded, in order,
 * before the transaction commits, and an error from the callback fails the
 * import. path must name a regular file (its size is checked before it is
 * read): a FIFO (once its open(2) returns, which waits for a writer), a
 * device or a folder is LR_EIO "not a regular file", where lr_dataset_load
 * reads a pipe. A file that is empty, holds only blank
 * space or an empty array imports nothing and returns 0 (report->read 0),
 * where lr_dataset_load returns LR_EEMPTY for an empty or blank file. */
LR_EXTERN int lr_store_import_file(struct lr_store *store, const char *path,
                         const struct lr_import_options *opts, struct lr_import_report *report,
                         struct lr_error *err);

/* ==== Datasets ==== */

/* Records read from a file in the AIOS smart-routing format, held in memory:
 * a JSON array, or JSONL (one object per line), of
 *   {"query": str, "input_token_length": int,
 *    "outputs": [{"model_name": str, "correctness": bool|number in [0,1],
 *                 "output_token_length": number}], "split": str?, "task"|"eval_name": str?}
 * Extra fields are ignored. `llmroute eval` scores routing against these;
 * lr_store_import_file reads the same format. */
struct lr_dataset;

/* Load path. With opts->split only records whose "split" equals it are kept.
 * A bad record is skipped and counted in report (its message in
 * report->first_bad), or with opts->strict fails the load. A file that is
 * not valid JSON(L) is LR_EPARSE with its line and column; a file that is
 * empty or holds only blank space is LR_EEMPTY (lr_store_import_file takes
 * it as nothing to import, 0). Any file that reads as a stream is read,
 * a FIFO or a pipe too (lr_store_import_file takes regular files only),
 * up to LR_DATA_FILE_MAX bytes (1 GiB), as lr_store_import_file.
 * The caller frees *out with lr_dataset_free(). */
LR_EXTERN int lr_dataset_load(const char *path, const struct lr_import_options *opts,
                              struct lr_dataset **out, struct lr_import_report *report,
                              struct lr_error *err);
LR_EXTERN void lr_dataset_free(struct lr_dataset *ds);
LR_EXTERN size_t lr_dataset_count(const struct lr_dataset *ds);
/* Record i; its strings and outcomes belong to ds. NULL when out of range. */
LR_EXTERN const struct lr_record *lr_dataset_record(const struct lr_dataset *ds, size_t i);

/* ==== Routing ==== */

struct lr_router;

struct lr_router_options {
    const char *strategy;           /* NULL = config's router.strategy */
    struct lr_store *store;         /* history for smart routing (borrowed: it must outlive
                                       the router, as cfg must), or NULL */
    double performance_requirement; /* NaN = config's */
    int n_similar;                  /* 0 = config's; else 1 to LR_MAX_N_SIMILAR */
    const char *predictor;          /* NULL = config's; "default" or "aios", whatever the
                                       strategy (else LR_ESTRATEGY naming it) */
};

/* Fill opts with "use the config" values (performance_requirement NaN). A
 * zeroed struct is not these: its requirement 0 is a value given. */
LR_EXTERN void lr_router_options_init(struct lr_router_options *opts);

/* Build a router over cfg (borrowed: it must outlive the router), and over
 * opts->store when given (borrowed too: free the router before the store;
 * routing after the store is freed reads freed memory). An unknown
 * strategy or predictor is LR_ESTRATEGY, its message naming it, for every
 * strategy (a sequential router predicts nothing but refuses a misspelt
 * predictor all the same). */
LR_EXTERN int lr_router_new(const struct lr_config *cfg, const struct lr_router_options *opts,
                  struct lr_router **out, struct lr_error *err);
LR_EXTERN void lr_router_free(struct lr_router *router);

/* The name of the router's strategy ("sequential", "smart", ...). */
LR_EXTERN const char *lr_router_strategy(const struct lr_router *router);
LR_EXTERN const struct lr_config *lr_router_config(const struct lr_router *router);

/* The sequential strategy's round-robin cursor: the ticket the next request
 * with n >= 2 candidates takes. Such a request gets its candidate number
 * ticket % n, counted from 0 in the order the request gives them (the
 * ranking is the cycle from there), and moves the cursor to ticket + 1,
 * wrapping from UINT64_MAX to 0; a request with one candidate leaves it. A new router's cursor is 0; lr_router_route_batch's per-query
 * mode takes one ticket per such request, in order, and a failed batch
 * takes none. Reading the cursor of one router and setting it on another
 * carries the round-robin over exactly (to a router built for a changed
 * configuration, say): the second goes on with the tickets the first would
 * have drawn, for candidate lists of every length.
 * A router has one strategy, fixed when it is made, and the cursor is that
 * strategy's: a router of any other strategy (smart) keeps none, and both
 * functions refuse it with LR_ESTRATEGY, changing nothing. router NULL, or
 * cursor NULL to the reader, is LR_EINVAL. On failure *cursor is not
 * written.
 * Threads: each is one atomic step, which may run on any thread while
 * other threads route on the same router. A read gives the cursor as it
 * was between two tickets; a set lands between two tickets, so every
 * concurrent request draws its ticket either from the old sequence, before
 * the set, or from the value set, after it (which requests fall on which
 * side is not determined), and no ticket is torn. A read followed by a set
 * is two steps: tickets drawn between them are drawn again after the set. */
LR_EXTERN int lr_router_sequential_cursor(const struct lr_router *router, uint64_t *cursor,
                                          struct lr_error *err);
LR_EXTERN int lr_router_set_sequential_cursor(struct lr_router *router, uint64_t cursor,
                                              struct lr_error *err);

/* One routing request. Candidates are given by name (`models`) or by config
 * index (`model_indices`), n_models of them; with no list (both NULL and
 * n_models 0, as lr_request_init() leaves them), every configured model is
 * a candidate. Give one list, not both: models and model_indices both
 * given is LR_EINVAL (which would be meant?). n_models over 0 with both
 * lists NULL is LR_EINVAL (the list is missing); a list given with n_models 0 is LR_EEMPTY, never
 * "every model"; an n_models over the number of configured models (such a
 * list must repeat one) is LR_EINVAL, as a repeated model is. Unknown
 * names are LR_ENOMODEL, never dropped.
 * `embedding` is the query's vector from the remote embedder of a dense
 * store (lr_store_embedder()), embedding_dim floats, for smart routing
 * over that store. The two go together: embedding_dim over 0 with a NULL
 * embedding, or an embedding with embedding_dim 0, is LR_EINVAL. A smart
 * router over a store of the built-in embedder, which routes by the query
 * text, refuses a vector (LR_EINVAL) as lr_store_add does. A smart choice
 * with neither a vector nor text is LR_EINVAL "smart routing needs the
 * query text" over either kind of store, an empty one too (checked before
 * the store: the empty store's LR_EEMPTY is for a request that could be
 * routed once it has data). The sequential strategy reads neither. */
struct lr_request {
    const char *const *models;
    const int *model_indices;
    size_t n_models;
    const char *query;              /* the query text, may be NULL for sequential;
                                     * when given, valid UTF-8 (as a stored query
                                     * must be), else LR_EINVAL "query: not valid
                                     * UTF-8 at byte N", whatever the strategy */
    long input_tokens;              /* < 0: estimated from the text (see lr_estimate_tokens);
                                     * at most 1e9, as in records (else LR_EINVAL) */
    const float *embedding;         /* precomputed dense vector (remote embedder) or NULL */
    size_t embedding_dim;
    double performance_requirement; /* NaN = router's */
};

/* Initialise a request with no candidates, no text, estimated tokens
 * (input_tokens -1) and the router's requirement (NaN). A zeroed request is
 * not this: it gives input_tokens 0 and a requirement of 0. */
LR_EXTERN void lr_request_init(struct lr_request *req);

/* A ranked candidate. Unknown figures are NaN. */
struct lr_candidate {
    int index; /* into the config's models */
    double predicted_quality;
    double predicted_output_tokens;
    double estimated_cost;
};

/* The answer to one request: the chosen model and, when the caller gives a
 * buffer, the full ranking, best first (the head is the choice; the tail is
 * the fallback order). ranking and ranking_cap are read as input, so a
 * decision must be initialised before it is passed to lr_router_route or
 * lr_router_route_batch: with lr_decision_init() (then set ranking and
 * ranking_cap to ask for the ranking), or zeroed (memset, = {0}, calloc),
 * which older callers do and which stays valid. An uninitialised
 * decision's ranking is a wild pointer the router writes through. */
struct lr_decision {
    int index; /* chosen model's index into the config */
    double predicted_quality;
    double predicted_output_tokens;
    double estimated_cost;
    long input_tokens; /* as given, or as estimated */
    /* in: optional buffer for the ranking; out: how many were written */
    struct lr_candidate *ranking;
    size_t ranking_cap;
    size_t n_ranked;
};

/* Initialise a decision: no ranking buffer (ranking NULL, ranking_cap 0),
 * index -1 and unknown (NaN) figures until a route fills it. */
LR_EXTERN void lr_decision_init(struct lr_decision *d);

/* Route one request into out (initialised: see struct lr_decision). */
LR_EXTERN int lr_router_route(struct lr_router *router, const struct lr_request *req,
                    struct lr_decision *out, struct lr_error *err);

enum lr_batch_mode {
    LR_BATCH_PER_QUERY = 0, /* each query on its own, as lr_router_route */
    LR_BATCH_QUALITY = 1,   /* min total cost s.t. mean quality >= alpha, load_j <= L_j */
    LR_BATCH_BUDGET = 2     /* max mean quality s.t. total cost <= budget, load_j <= L_j */
};

/* The largest budget LR_BATCH_BUDGET takes (the CLI's --budget too). */
#define LR_BATCH_MAX_BUDGET 1e12

/* The relative tolerance with which a batch's constraints are judged, so
 * that rounding in long sums does not turn a met constraint into a missed
 * one: mean quality >= alpha * (1 - LR_BATCH_TOLERANCE), total cost <=
 * budget * (1 + LR_BATCH_TOLERANCE). The smart strategy's mean quality also
 * meets alpha when it is at most 1e-6 below it, as a predicted quality
 * that far below the performance requirement meets it: the history store
 * holds outcomes as 32-bit floats, and a stored 0.7 reads back as
 * 0.69999999. */
#define LR_BATCH_TOLERANCE 1e-9

struct lr_batch_options {
    enum lr_batch_mode mode;
    double alpha;            /* for LR_BATCH_QUALITY, NaN = config's; NaN otherwise
                                (else LR_EINVAL) */
    double budget;           /* for LR_BATCH_BUDGET, from 0 to LR_BATCH_MAX_BUDGET;
                                NaN otherwise (else LR_EINVAL) */
    const int *capacities;   /* per config model; NULL = config's capacity; <=0 = unlimited */
};

struct lr_batch_report {
    int feasible;            /* 1 when every constraint holds: every model's load
                                within its capacity, and mean_quality >= (alpha -
                                1e-6) * (1 - LR_BATCH_TOLERANCE) (LR_BATCH_QUALITY) or
                                total_cost <= budget * (1 + LR_BATCH_TOLERANCE)
                                (LR_BATCH_BUDGET), each judged on the sum before
                                the division; 1 exactly when 0 is returned */
    double mean_quality;     /* predicted, of the returned assignment */
    double total_cost;       /* estimated, of the returned assignment */
    int iterations;          /* optimizer iterations */
    char message[256];       /* why it is infeasible and what was reached */
};
/* What lr_router_route_batch writes to its report (when not NULL), by what
 * it returns:
 *   - 0: feasible 1 and the figures of the assignment in out;
 *   - LR_EINFEASIBLE: feasible 0 and the figures of the best reachable
 *     assignment in out, which message explains;
 *   - any other error: no result, the same whatever failed (a bad request,
 *     a bad option, a strategy that cannot solve the mode): feasible 0,
 *     mean_quality and total_cost NaN, iterations 0, message empty (err
 *     says what failed). */

/* Fill opts with the defaults: LR_BATCH_PER_QUERY, alpha and budget NaN
 * (none given), capacities NULL (the config's). A zeroed struct is not
 * these: its alpha and budget 0 are values given, which the per-query mode
 * refuses (LR_EINVAL). opts NULL to lr_router_route_batch is the same as
 * these. */
LR_EXTERN void lr_batch_options_init(struct lr_batch_options *opts);

/* Route n requests together. out[i] receives request i's assignment (and
 * ranking if out[i].ranking is set). Returns LR_EINFEASIBLE, with the best
 * reachable assignment filled in and explained in report, when the
 * constraints cannot all be met:
 *   - alpha (the budget) cannot be met within capacities: the assignment
 *     of the highest mean quality (the least total cost) is returned, and
 *     the message states that figure, the report's mean_quality
 *     (total_cost);
 *   - the capacities cannot hold the batch: the fewest requests that must
 *     go over capacity do, placed where they best serve alpha (the
 *     budget), which is then met at the least cost (the highest quality)
 *     if it can be, else the best reachable is returned; the message says
 *     how many went over capacity, whether alpha (the budget) holds, and
 *     the mean quality and total cost reached.
 * A request with a single candidate gets it in every mode, as
 * lr_router_route gives it, even when nothing can be predicted for it (no
 * prices, no query text, no history): in LR_BATCH_QUALITY and
 * LR_BATCH_BUDGET such an unpredicted request takes one unit of its
 * model's capacity but is left out of the mean quality alpha bounds, of
 * the cost the budget bounds, and of the report's mean_quality and
 * total_cost (NaN when no request is left), which the message's figures
 * are too. An error in one request fails the batch, with a message naming
 * the request ("query 1: unknown model 'x'"), and a failed batch (any
 * error but LR_EINFEASIBLE) changes nothing: out[] is left as it was (no
 * decision, no ranking written) and the router's state is too (every
 * request is checked before any is routed, so the sequential strategy's
 * round-robin turns are taken only by a batch that succeeds). */
LR_EXTERN int lr_router_route_batch(struct lr_router *router, const struct lr_request *reqs, size_t n,
                          const struct lr_batch_options *opts, struct lr_decision *out,
                          struct lr_batch_report *report, struct lr_error *err);

/* Asked by lr_router_route_batch_stoppable between steps of its work, on
 * the thread that routes: nonzero stops the batch. It is asked often (once
 * a query, once an optimizer step), so it must be cheap: read a flag, or
 * compare the clock with a deadline. */
typedef int (*lr_stop_fn)(void *arg);

/* lr_router_route_batch, which a caller can stop: stop(stop_arg) is asked
 * before each query's neighbour search and prediction (each group of
 * queries searched together over a dense store) and before each step of
 * the batch optimizer (each subproblem it solves, each improving move).
 * Once it answers nonzero the batch ends with LR_ECANCELED, as a failed
 * batch ends (out[], the report and the router's state as for any error;
 * err says which step it was stopped in: "stopped at the caller's request
 * at query 12", "... in the batch assignment"), so a caller with a
 * deadline stops a large batch at it rather than waiting for every
 * decision. stop NULL is lr_router_route_batch. */
LR_EXTERN int lr_router_route_batch_stoppable(struct lr_router *router,
                                              const struct lr_request *reqs, size_t n,
                                              const struct lr_batch_options *opts,
                                              struct lr_decision *out,
                                              struct lr_batch_report *report, struct lr_error *err,
                                              lr_stop_fn stop, void *stop_arg);

/* Estimate the token count of text when no tokenizer count is given:
 * about one token per 4 bytes of UTF-8, rounded up (so at least 1 for
 * non-empty text, whatever len; at most LONG_MAX); 0 for NULL or len 0. */
LR_EXTERN long lr_estimate_tokens(const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* LLMROUTE_H */
