/* jsonscan.h -- byte ranges of the top-level members of a JSON object, and
 * the body rewrite the gateway forwards upstream.
 *
 * The gateway parses a request body once with jansson to learn what routing
 * needs, but forwards the client's own bytes: only the `model` value is
 * replaced and the extension members (`models`, `route`) are cut out by their
 * byte ranges, so numbers, key order and whitespace reach the upstream as the
 * client sent them. This scanner finds those ranges. It trusts nothing: on any
 * byte it does not expect it returns an error rather than guessing.
 *
 * It also tells an upstream's answer cut short from a malformed one: whether
 * the bytes that came are the start of a JSON object (js_object_prefix()).
 *
 * Threads: pure functions over caller buffers; any thread.
 */
#ifndef GW_JSONSCAN_H
#define GW_JSONSCAN_H

#include <stddef.h>

/* One top-level member: `"key"` spans [key_start, key_end) including the
 * quotes, the value spans [value_start, value_end). */
struct js_member {
    size_t key_start, key_end;
    size_t value_start, value_end;
};

/* Scan the top level of the object in buf[0..len). Fills up to cap members
 * in order and sets *n to how many the object has. Returns 0, -1 when buf is
 * not an object the scanner understands, -2 when it has more than cap
 * members. */
int js_scan_object(const char *buf, size_t len, struct js_member *members, size_t cap, size_t *n);

/* Find the members named names[0..] (a NULL-terminated list) at the top
 * level of the object in buf[0..len), however many members it has: found[k]
 * is names[k]'s, the last one when the name comes more than once (as a
 * parser reads it), or all zeros (key_end 0) when it is absent. Returns 0,
 * or -1 when buf is not an object the scanner understands (found all
 * zeros). */
int js_find_members(const char *buf, size_t len, const char *const *names, struct js_member *found);

/* How many values the JSON text in buf[0..len) holds: objects, arrays,
 * strings (member names too), numbers and literals, each one. A parse
 * costs memory in proportion to that count rather than to the text's
 * length (an empty object is two bytes of text and a few hundred bytes of
 * parsed tree), so the gateway bounds it before parsing a body. One pass
 * with no stack, over any bytes: text that is not JSON is counted as
 * roughly as it comes and left for the parser to refuse. Counting stops
 * past `limit`: the result is at most limit + 1. */
size_t js_count_values(const char *buf, size_t len, size_t limit);

/* The most values a JSON text of len bytes can hold: a text of c values
 * takes at least 2c - 1 bytes (a scalar 1, a string 2; a container's
 * brackets and commas, and an object's member names with their colons,
 * pay for its elements), reached by "[0,0,...]". A body shorter than
 * twice a limit cannot be over it, and need not be counted. */
#define JS_MAX_VALUES(len) (((len) + 1) / 2)

/* What the bytes buf[0..len) are of a JSON object, as jansson reads one
 * (RFC 8259, UTF-8 strings, no lone surrogate, at most 2048 levels deep):
 * JS_WHOLE, a whole object (blanks may follow); JS_OPEN, the start of one
 * that more bytes could complete (blanks alone, or nothing, are such a
 * start; so is a cut inside a name, a number, a literal, an escape or a
 * UTF-8 sequence); JS_NEVER, bytes that no bytes after them could make an
 * object (`hello`, `[1,`, a raw LF inside a string, `{"a":1} x`). Numbers
 * are read by their grammar only: one too large for jansson is no reason
 * here. Every answer the gateway relays is an object, so a start of
 * anything else is JS_NEVER. */
enum js_prefix { JS_WHOLE, JS_OPEN, JS_NEVER };
enum js_prefix js_object_prefix(const char *buf, size_t len);

/* Whether buf[0..len) holds a NUL byte (0x00), which no JSON text does: a
 * string writes the character as \u0000, and none may stand between
 * tokens. jansson 2.14 reads past one that follows a number or a literal
 * (`{"n":2<NUL>}` parses as {"n":2}), so a body is checked for it before
 * the parse. Returns 1 and the first one's place, counted as jansson
 * counts places (lines from 1, at each LF; columns from 1, in characters:
 * bytes that do not continue a UTF-8 sequence), or 0 when there is none. */
int js_find_nul(const char *buf, size_t len, int *line, int *column);
/* Why a NUL byte is not JSON, as each refusal of one words it after its place. */
#define JS_NUL_WHY "(JSON text holds none; a string writes the character as \\u0000)"
/* A request body's fault its JSON parser would misname, checked before the
 * parse by every endpoint that reads one: a UTF-8 byte order mark at its
 * start (RFC 8259 section 8.1 has JSON sent over a network carry none; read
 * as JSON it is an invisible character "expected near"), or a raw NUL byte
 * (js_find_nul()). 1 with the refusal's words (400 invalid_json) in msg,
 * else 0. */
int js_body_fault(const char *buf, size_t len, char *msg, size_t cap);

/* Does member m's key equal `name`? Keys with escapes are decoded first. */
int js_key_equals(const char *buf, const struct js_member *m, const char *name);

/* What to do with a body: the new `model` value (a JSON-encoded string,
 * quotes included) or NULL to keep it, and a NULL-terminated list of member
 * names to remove. */
struct js_rewrite {
    const char *model_json;
    const char *const *remove;
};

/* Write the rewritten body into a new buffer (*out, *out_len; the caller
 * frees *out). Returns 0, -1 when buf is not a scannable object, -2 on
 * allocation failure or too many members. A body without a `model` member
 * gets one, first, when model_json is given. */
int js_rewrite_body(const char *buf, size_t len, const struct js_rewrite *rw, char **out,
                    size_t *out_len);

#endif
