/* affinity.c -- response id -> model, a chained hash map with a doubly
 * linked list in use order for the least-recently-used eviction
 * (affinity.h). The bucket array grows with the entries (doubling while
 * they outnumber it), so a large capacity costs nothing until it is used.
 *
 * Threads: the event loop thread only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "affinity.h"

struct af_entry {
    struct af_entry *chain;       /* the next in its bucket */
    struct af_entry *prev, *next; /* use order: prev is more recent */
    uint64_t hash;
    char *model;
    size_t len;
    char id[]; /* len bytes and a NUL */
};

struct af_table {
    struct af_entry **buckets;
    size_t n_buckets; /* a power of two, or 0 before the first entry */
    size_t count, capacity;
    struct af_entry *head, *tail; /* most and least recently used */
};

static uint64_t hash_of(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

struct af_table *af_table_new(size_t capacity)
{
    struct af_table *t = calloc(1, sizeof *t);
    if (t)
        t->capacity = capacity;
    return t;
}

static void list_unlink(struct af_table *t, struct af_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        t->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(struct af_table *t, struct af_entry *e)
{
    e->prev = NULL;
    e->next = t->head;
    if (t->head)
        t->head->prev = e;
    t->head = e;
    if (!t->tail)
        t->tail = e;
}

static void entry_remove(struct af_table *t, struct af_entry *e)
{
    struct af_entry **pp = &t->buckets[e->hash & (t->n_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    list_unlink(t, e);
    t->count--;
    free(e->model);
    free(e);
}

void af_table_free(struct af_table *t)
{
    struct af_entry *e, *next;
    if (!t)
        return;
    for (e = t->head; e; e = next) {
        next = e->next;
        free(e->model);
        free(e);
    }
    free(t->buckets);
    free(t);
}

void af_table_set_capacity(struct af_table *t, size_t capacity)
{
    t->capacity = capacity;
    while (t->count > capacity)
        entry_remove(t, t->tail);
}

size_t af_table_capacity(const struct af_table *t)
{
    return t->capacity;
}

size_t af_table_count(const struct af_table *t)
{
    return t->count;
}

static struct af_entry *find(const struct af_table *t, const char *id, size_t len, uint64_t h)
{
    struct af_entry *e;
    if (!t->n_buckets)
        return NULL;
    for (e = t->buckets[h & (t->n_buckets - 1)]; e; e = e->chain)
        if (e->hash == h && e->len == len && memcmp(e->id, id, len) == 0)
            return e;
    return NULL;
}

/* Double the buckets (16 at first) when the entries would outnumber them;
 * out of memory the chains just grow longer. */
static void maybe_grow(struct af_table *t)
{
    size_t n = t->n_buckets ? t->n_buckets * 2 : 16;
    struct af_entry **b;
    if (t->n_buckets && t->count + 1 <= t->n_buckets)
        return;
    b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (struct af_entry *e = t->head; e; e = e->next) {
        e->chain = b[e->hash & (n - 1)];
        b[e->hash & (n - 1)] = e;
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
}

int af_table_put(struct af_table *t, const char *id, size_t len, const char *model)
{
    uint64_t h = hash_of(id, len);
    struct af_entry *e;
    char *m;

    if (!t || t->capacity == 0 || len == 0 || len > AF_ID_MAX)
        return 1;
    e = find(t, id, len, h);
    if (e) {
        if (strcmp(e->model, model) != 0) {
            if (!(m = strdup(model)))
                return -1;
            free(e->model);
            e->model = m;
        }
        list_unlink(t, e);
        list_push_front(t, e);
        return 0;
    }
    while (t->count >= t->capacity)
        entry_remove(t, t->tail);
    maybe_grow(t);
    if (!t->n_buckets)
        return -1;
    e = malloc(sizeof *e + len + 1);
    m = strdup(model);
    if (!e || !m) {
        free(e);
        free(m);
        return -1;
    }
    memcpy(e->id, id, len);
    e->id[len] = '\0';
    e->len = len;
    e->hash = h;
    e->model = m;
    e->chain = t->buckets[h & (t->n_buckets - 1)];
    t->buckets[h & (t->n_buckets - 1)] = e;
    e->prev = e->next = NULL;
    list_push_front(t, e);
    t->count++;
    return 0;
}

const char *af_table_get(struct af_table *t, const char *id, size_t len)
{
    struct af_entry *e;
    if (!t || len == 0 || len > AF_ID_MAX)
        return NULL;
    e = find(t, id, len, hash_of(id, len));
    if (!e)
        return NULL;
    list_unlink(t, e);
    list_push_front(t, e);
    return e->model;
}

void af_table_remove(struct af_table *t, const char *id, size_t len)
{
    struct af_entry *e;
    if (!t || len == 0 || len > AF_ID_MAX)
        return;
    e = find(t, id, len, hash_of(id, len));
    if (e)
        entry_remove(t, e);
}
