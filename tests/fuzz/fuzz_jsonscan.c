/* fuzz_jsonscan.c -- the gateway's scanner of request bodies (jsonscan.c)
 * on arbitrary bytes: js_scan_object, js_key_equals on every member, and
 * js_rewrite_body as the proxy calls it (a new `model`, the extension
 * members cut out).
 *
 * It also checks the scanner against jansson, which reads each body first:
 * a body jansson accepts as an object under the proxy's flags must scan, and
 * its rewrite must be JSON again, with the new model, without the cut
 * members, and with every other member as it was. A difference aborts.
 * js_count_values must count exactly the values of the tree jansson made
 * (member names included), and stop just past any limit. An object jansson
 * accepts is whole to js_object_prefix, and each of its starts open; and
 * the other way, as the proxy relays what is whole to it: jansson, with
 * names given twice taken as a client's parser takes them (the proxy's
 * flags refuse them in request bodies only), accepts what it takes as
 * whole, but for a number past a double's range (which the grammar does
 * not weigh) and a name holding \u0000 (JSON, which jansson alone does not
 * take in a name).
 * "Accepts" is as the gateway accepts a body: jansson reads past a raw NUL
 * byte after a number or a literal (`{"":2<NUL>}` parses), which is no
 * JSON, so a body js_find_nul finds one in is refused before the parse and
 * counts as one jansson refuses.
 *
 * Threads: one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jsonscan.h"

#define PROXY_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_jsonscan: %s\n", what);
    abort();
}

/* The rewrite of a body jansson accepted: check it against the original. */
static void check_rewrite(json_t *orig, const char *out, size_t out_len, const char *model,
                          const char *const *remove)
{
    json_t *got = json_loadb(out, out_len, PROXY_FLAGS, NULL), *v;
    const char *key;

    if (!json_is_object(got))
        fail("the rewritten body is not a JSON object");
    if (model) {
        json_t *want = json_string(model);
        int same = json_equal(json_object_get(got, "model"), want);
        json_decref(want);
        if (!same)
            fail("the rewritten body's model is not the new one");
    }
    for (size_t r = 0; remove[r]; r++)
        if (json_object_get(got, remove[r]))
            fail("a removed member is still in the rewritten body");
    json_object_foreach(orig, key, v)
    {
        int cut = 0;
        for (size_t r = 0; remove[r]; r++)
            cut |= strcmp(key, remove[r]) == 0;
        if (cut || (model && strcmp(key, "model") == 0))
            continue;
        if (!json_equal(json_object_get(got, key), v))
            fail("a member changed in the rewrite");
    }
    json_object_foreach(got, key, v)
    {
        if (!json_object_get(orig, key) && !(model && strcmp(key, "model") == 0))
            fail("the rewrite added a member");
    }
    json_decref(got);
}

/* The values of a parsed tree as js_count_values counts them. */
static size_t tree_values(json_t *v)
{
    size_t n = 1, i;
    const char *key;
    json_t *e;

    if (json_is_object(v)) {
        json_object_foreach(v, key, e)
            n += 1 + tree_values(e);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, e)
            n += tree_values(e);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const remove[] = {"models", "route", NULL};
    const char *buf = (const char *)data;
    struct js_member members[8];
    size_t n = 0;
    int line, column;
    json_t *orig =
        js_find_nul(buf, size, &line, &column) ? NULL : json_loadb(buf, size, PROXY_FLAGS, NULL);
    int is_object = json_is_object(orig);
    int rc = js_scan_object(buf, size, members, 8, &n);

    if (is_object && rc == -1)
        fail("jansson accepts the object, the scanner does not");
    if (orig) {
        size_t want = tree_values(orig);
        if (js_count_values(buf, size, (size_t)-2) != want)
            fail("js_count_values differs from the values jansson parsed");
        if (want > 1 && js_count_values(buf, size, want - 2) != want - 1)
            fail("js_count_values does not stop just past its limit");
    }
    if (is_object) {
        /* Every start of it (each one, for a short body) could be completed. */
        size_t step = size > 512 ? size / 256 : 1;
        if (js_object_prefix(buf, size) != JS_WHOLE)
            fail("jansson accepts the object, js_object_prefix does not take it as whole");
        for (size_t k = 0; k < size; k += step)
            if (js_object_prefix(buf, k) == JS_NEVER)
                fail("js_object_prefix refuses the start of an object jansson accepts");
    } else if (js_object_prefix(buf, size) == JS_WHOLE && !js_find_nul(buf, size, &line, &column)) {
        json_error_t je;
        json_t *j = json_loadb(buf, size, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
        if (!j && json_error_code(&je) != json_error_numeric_overflow &&
            json_error_code(&je) != json_error_null_byte_in_key)
            fail("js_object_prefix takes as whole an object jansson refuses");
        json_decref(j);
    }
    if (rc == 0 || rc == -2) {
        size_t k = n < 8 ? n : 8;
        for (size_t i = 0; i < k; i++) {
            (void)js_key_equals(buf, &members[i], "model");
            (void)js_key_equals(buf, &members[i], "");
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *model = pass ? "\"fuzz-model\"" : NULL;
        struct js_rewrite rw = {model, remove};
        char *out = NULL;
        size_t out_len = 0;
        int wrc = js_rewrite_body(buf, size, &rw, &out, &out_len);
        if (is_object && wrc != 0)
            fail("jansson accepts the object, the rewrite fails");
        if (wrc == 0 && is_object)
            check_rewrite(orig, out, out_len, pass ? "fuzz-model" : NULL, remove);
        free(out);
    }
    json_decref(orig);
    return 0;
}
