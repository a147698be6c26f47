/* affinity.h -- which configured model served a Responses API response:
 * a bounded map from a response id to the model's name, least recently
 * used first out. The gateway fills it from the answers of POST
 * /v1/responses and reads it to send a follow-up (previous_response_id)
 * and the retrieve, delete, cancel and input-items requests of an id to
 * the upstream that keeps that response (proxy.c, api.c).
 *
 * Threads: the event loop thread only.
 */
#ifndef GW_AFFINITY_H
#define GW_AFFINITY_H

#include <stddef.h>

/* Ids longer than this are not kept (OpenAI's are about 50 bytes). */
#define AF_ID_MAX 256

struct af_table;

/* A table holding at most capacity entries (0: holds none). NULL out of
 * memory. Free with af_table_free(). */
struct af_table *af_table_new(size_t capacity);
void af_table_free(struct af_table *t);
/* Change the capacity; the least recently used entries past it go now. */
void af_table_set_capacity(struct af_table *t, size_t capacity);
size_t af_table_capacity(const struct af_table *t);
size_t af_table_count(const struct af_table *t);
/* Remember that model served the response id[0..len): a new entry, or an
 * entry moved to the front with its model replaced. At capacity the least
 * recently used entry goes. An empty id, one over AF_ID_MAX bytes, or a
 * table of capacity 0 keeps nothing. Returns 0, 1 when nothing was kept
 * for those reasons, or -1 out of memory (nothing kept). */
int af_table_put(struct af_table *t, const char *id, size_t len, const char *model);
/* The model that served id[0..len), or NULL; a hit becomes the most
 * recently used entry. The string is the table's, valid until the next
 * put, capacity change or free. */
const char *af_table_get(struct af_table *t, const char *id, size_t len);
/* Forget id[0..len) (a DELETE of it succeeded); nothing when not held. */
void af_table_remove(struct af_table *t, const char *id, size_t len);

#endif
