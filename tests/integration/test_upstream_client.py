"""test_upstream_client.py -- the gateway's HTTP/1.1 upstream client (h1client.c)
against a scripted upstream that misbehaves byte by byte.

    python3 test_upstream_client.py LLMROUTE FAKE_UPSTREAM

The scripted upstream is a thread in this process on 127.0.0.1: for each
request it reads the head and the Content-Length body, records the head, and
plays the next step of the test's script on the raw socket (framing variants,
interim 1xx heads, an oversized head, garbage, a reset in the body, closing
after a response). Every class but reset_reused falls back, there is one
candidate and no breaker, so each request plays exactly one step: a request
that crosses the close of a pooled connection reaches no step, and its one
retry on a new connection (max_attempts is 2) plays it. Every test goes through `llmroute serve` and checks what
the client sees; the gateway must still serve afterwards and exit 0 on SIGTERM.
Run twice: with the default client and with LLMROUTE_UPSTREAM_CLIENT=curl, so
both implementations behind upstream.h answer the same way.

Then, with each client, the fake upstream with a small --max-body answers a
body of several MB 413 as soon as it has read the request head, and closes
without reading the body: an answer that comes while the request is still
being written, which the gateway must relay rather than take for a reset.
"""
import itertools
import json
import os
import queue
import re
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (HOST, Fake, Gateway, chat, check, error_shape, finish,  # noqa
                    raw_exchange, Upstream, request, status_of, wait_for, workdir)

HELLO = [{"role": "user", "content": "hello"}]
HELLO_BODY = json.dumps({"model": "s", "messages": HELLO}).encode()
OK_BODY = json.dumps({"id": "x", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hi there"},
     "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                          "total_tokens": 5}}).encode()


class Scripted(Upstream):
    """A raw upstream: each request consumes one step from `steps`."""

    def __init__(self):
        super().__init__()
        self.steps = queue.Queue()
        self.heads = []
        self.connections = 0
        # (connection number, time.monotonic()) after each step played, and
        # when a client closed a connection between requests
        self.answered = []
        self.closes = []
        self.ids = itertools.count()
        self.start()

    def accepted(self):
        self.connections += 1

    def serve(self, c):
        buf = b""
        n = next(self.ids)
        c.settimeout(20)
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    b = c.recv(65536)
                    if not b:
                        if not buf:
                            self.closes.append((n, time.monotonic()))
                        return
                    buf += b
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                while len(buf) < length:
                    b = c.recv(65536)
                    if not b:
                        return
                    buf += b
                buf = buf[length:]
                self.heads.append(head.decode("latin-1"))
                step = self.steps.get(timeout=10)
                ended = step(c)
                self.answered.append((n, time.monotonic()))
                if ended == "close":
                    return
        except (OSError, queue.Empty):
            return
        finally:
            c.close()


def ok_with_length(c):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(OK_BODY) + OK_BODY)


def length_list(c):
    # Two equal Content-Length lines joined into one by a proxy on the way:
    # RFC 9112 section 6.3 has the recipient use that one value.
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d, %d\r\n\r\n" % (len(OK_BODY), len(OK_BODY)) + OK_BODY)


def chunked_pieces(c):
    # Chunk extensions, a lower-case hex size, a trailer, and the bytes trickled in
    # pieces that split size lines and CRLFs.
    body = OK_BODY
    a, b = body[:7], body[7:]
    wire = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" +
            b"%x;name=value\r\n" % len(a) + a + b"\r\n" +
            b"%x\r\n" % len(b) + b + b"\r\n" + b"0\r\nX-Trailer: yes\r\n\r\n")
    for i in range(0, len(wire), 5):
        c.sendall(wire[i:i + 5])
        time.sleep(0.002)


def folded_head(c):
    # obs-fold (RFC 9112 section 5.2): header values continued on lines that
    # start with a space or a tab, which a client unfolds into one value.
    # The fold after X-Other continues that header, not the one before it.
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json;\r\n charset=utf-8\r\n"
              b"x-ratelimit-reset-tokens: 6m  \r\n\t 0s\r\n"
              b"X-Request-Id: req\r\n \r\n  42\r\n"
              b"x-ratelimit-limit-requests: 500\r\nX-Other: a\r\n b\r\n"
              b"Content-Length: %d\r\n\r\n"
              % len(OK_BODY) + OK_BODY)


def close_delimited(c):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
              + OK_BODY)
    return "close"


def interim_then_ok(c):
    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    time.sleep(0.01)
    ok_with_length(c)


def huge_head(c):
    c.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 300000 + b"\r\nContent-Length: 2\r\n\r\n{}")
    return "close"


def garbage(c):
    c.sendall(b"SPDY/9 what\r\n\r\n")
    return "close"


def reset_mid_body(c):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
              + OK_BODY[:20])
    time.sleep(0.05)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return "close"


def reset_before_head(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return "close"


def ok_then_close(c):
    ok_with_length(c)
    return "close"


def ok_then_idle_close(c):
    # uvicorn's or Node's keep-alive timeout, made short: the answer without
    # Connection: close, then the connection closed 100 ms later. A request
    # sent on it in the meantime is never read (the close resets it).
    ok_with_length(c)
    time.sleep(0.1)
    return "close"


def ok_keep_alive_2s(c):
    # An upstream that says it keeps an idle connection 2 s (Node's and
    # Apache's Keep-Alive header), and would close it then.
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
              b"Keep-Alive: timeout=2, max=100\r\nContent-Length: %d\r\n\r\n"
              % len(OK_BODY) + OK_BODY)


def reset_after_reading(c):
    # The request was read, and could have been acted on; then the connection
    # is reset with no answer. Resending it would do the work twice.
    time.sleep(0.3)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return "close"


INJECTED_BODY = json.dumps({"id": "injected", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "INJECTED"},
     "finish_reason": "stop"}]}).encode()


def ok_then_unasked_response(c):
    # A whole second response, 100 ms after the answer, on the connection the
    # client keeps idle: taken for the next request's answer, it would hand
    # each client the one before it.
    ok_with_length(c)
    time.sleep(0.1)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(INJECTED_BODY) + INJECTED_BODY)


def error_400(c):
    body = b'{"error":{"message":"bad thing","type":"invalid_request_error","param":null,' \
           b'"code":null}}'
    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)


def error_with_bare_crs(c):
    # Header values with a bare CR: a client that ends lines at CR would read
    # the rest as headers of their own.
    body = b'{"error":{"message":"bad thing","type":"invalid_request_error","param":null,' \
           b'"code":null}}'
    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\rX-Injected: 1\r\n"
              b"Retry-After: 5\rSet-Cookie: a=b\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def no_content(c):
    c.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")


def redirect_to(location):
    """A 302 to location (raw bytes: the upstream chooses them), with a body."""
    def step(c):
        body = b"<html>moved</html>"
        c.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n"
                  b"Content-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return step


SSE_EVENTS = [
    {"id": "x", "object": "chat.completion.chunk",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"id": "x", "object": "chat.completion.chunk",
     "choices": [{"index": 0, "delta": {"content": "hi"}}]},
    {"id": "x", "object": "chat.completion.chunk",
     "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}]},
    {"id": "x", "object": "chat.completion.chunk", "choices": [],
     "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}]


def sse_body(eol=b"\n", last_eol=True):
    """The events and [DONE], each line ended by eol; without last_eol the
    final `data: [DONE]` has no line end at all."""
    out = b"".join(b"data: " + json.dumps(e).encode() + eol + eol for e in SSE_EVENTS)
    return out + b"data: [DONE]" + (eol + eol if last_eol else b"")


def sse_stream(body, ending):
    """A chunked event stream of body, a chunk from each `data: ` on, ended by `ending`:
    "chunk" (the zero-length chunk, kept alive), "close" (no zero-length chunk,
    the connection closed) or "silence" (no zero-length chunk, the connection
    kept open and silent); or "eof" (no chunking: the body ends at the close)."""
    def step(c):
        if ending == "eof":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Connection: close\r\n\r\n" + body)
            return "close"
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for piece in re.split(b"(?=data: )", body):
            if piece:
                c.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                time.sleep(0.002)
        if ending == "chunk":
            c.sendall(b"0\r\n\r\n")
            return None
        if ending == "silence":
            time.sleep(8)
        return "close"
    return step


def sse_pieces(pieces, ctype=b"text/event-stream"):
    """A chunked event stream sent as the given pieces, one chunk each, 50 ms
    apart (so each arrives in a read of its own), then the zero-length chunk;
    ctype None sends no Content-Type."""
    def step(c):
        c.sendall(b"HTTP/1.1 200 OK\r\n" +
                  (b"Content-Type: " + ctype + b"\r\n" if ctype else b"") +
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            time.sleep(0.05)
            c.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        c.sendall(b"0\r\n\r\n")
    return step


def sse_dispatch(raw):
    """The events an SSE client dispatches from raw (the WHATWG rules: data
    lines joined by LF, an event dispatched at a blank line, a last one
    without its blank line dropped): each event's data."""
    events, data = [], None
    for line in raw.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data is not None:
                events.append("\n".join(data))
            data = None
        elif line == "data" or line.startswith("data:"):
            v = line[5:]
            data = (data or []) + [v[1:] if v.startswith(" ") else v]
    return events


def split_json(e, parts):
    """e's JSON text cut into `parts` pieces after commas, so each piece alone is
    not JSON but the pieces joined with LF are (an LF is whitespace there)."""
    text = json.dumps(e)
    cuts = [i + 1 for i, ch in enumerate(text) if ch == "," and text[i + 1] == " "]
    step = max(1, len(cuts) // parts)
    at = [0] + cuts[step - 1::step][:parts - 1] + [len(text)]
    return [text[a:b] for a, b in zip(at, at[1:])]


def multiline_event(e, parts, eol=b"\n", lead=b"data: "):
    """One event whose data is e's JSON over `parts` data lines."""
    return b"".join(lead + piece.encode() + eol for piece in split_json(e, parts)) + eol


def sse_multiline_body():
    """SSE_EVENTS, each one's JSON over two or three data lines, with what the
    format allows around them: comments, event/id/retry fields, `data:` without
    the space, a `data` line with no colon (an empty line of data), CRLF and bare
    CR line ends; then [DONE]."""
    e = SSE_EVENTS
    return (b": a comment before the first event\n" +
            b"event: message\nid: 1\n" + multiline_event(e[0], 2) +
            b"retry: 1000\n" + multiline_event(e[1], 3, lead=b"data:") +
            b"data: " + split_json(e[2], 2)[0].encode() + b"\r\ndata\r\n: inside\r\n" +
            b"data: " + split_json(e[2], 2)[1].encode() + b"\r\n\r\n" +
            multiline_event(e[3], 3, eol=b"\r") +
            b"data: [DONE]\n\n")


def mutated(seed):
    """A valid chunked answer with a few bytes changed, cut short or padded, from a
    fixed seed; the connection closes after it, so every case ends."""
    import random
    rnd = random.Random(seed)
    body = OK_BODY
    wire = bytearray(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" +
                     b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(4)
        i = rnd.randrange(len(wire))
        if kind == 0:
            wire[i] = rnd.randrange(256)
        elif kind == 1:
            del wire[i:]
        elif kind == 2:
            wire[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
        elif wire:
            wire[i:i] = rnd.choice([b"\r\n", b"\n", b":", b"ffffffffffffffffff", b"0\r\n\r\n"])

    def step(c):
        c.sendall(bytes(wire))
        return "close"
    return step


def run(gw_bin, env):
    up = Scripted()
    model = {"name": "s", "backend": "openai", "api_key_env": "LLMROUTE_IT_KEY",
             "base_url": "http://127.0.0.1:%d/v1" % up.port,
             "headers": {"X-Title": "my app", "api-key": {"env": "LLMROUTE_IT_HDR"},
                         "X-Empty": "", "Accept": "application/json"}}
    # The same upstream for a client that wants at-most-once.
    once = dict(model, name="once", retry={"on": {"reset_reused": "fail"}})
    cfg = {"models": [model, once],
           # No retry but reset_reused's and no breaker: each request plays one step.
           # A cap on an event's bytes small enough for overlong_event to pass it.
           "server": {"upstream_timeout_ms": 5000, "max_stream_event_bytes": 1048576,
                      "resilience": {"retry": {"max_attempts": 2,
                                               "on": {"rate_limited": "fallback"}},
                                     "breaker": {"consecutive_failures": 0,
                                                 "failure_rate": 0}}}}
    e = {"LLMROUTE_IT_KEY": "sk-test", "LLMROUTE_IT_HDR": "hdr-secret"}
    e.update(env)
    gw = Gateway(gw_bin, workdir(), cfg, env=e)
    tag = "[%s] " % (env.get("LLMROUTE_UPSTREAM_CLIENT") or "default")

    def expect_ok(step):
        up.steps.put(step)
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200, (st, raw)
        assert j["choices"][0]["message"]["content"] == "hi there", j

    def expect_502(step):
        up.steps.put(step)
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 502, (st, raw)
        error_shape(j)

    def request_head():
        up.steps.put(ok_with_length)
        st, _, _, _ = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200
        head = up.heads[-1].lower()
        assert head.startswith("post /v1/chat/completions http/1.1\r\n"), head
        assert "\r\nhost: 127.0.0.1:%d" % up.port in head, head
        assert "\r\nauthorization: bearer sk-test" in head, head
        assert "\r\ncontent-type: application/json" in head, head
        assert "\r\ncontent-length: " in head, head
        assert "expect:" not in head, head
        # the model's own headers, one line each; its Accept replaces the default
        assert "\r\nx-title: my app\r\n" in head, head
        assert "\r\napi-key: hdr-secret\r\n" in head, head
        assert "\r\nx-empty:" in head, head
        assert head.count("\r\naccept:") == 1 and "\r\naccept: application/json\r\n" in head, head

    def keep_alive_reused():
        before = up.connections
        for _ in range(5):
            expect_ok(ok_with_length)
        assert up.connections - before <= 1, up.connections - before

    def folded_unfolded():
        up.steps.put(folded_head)
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200 and j["choices"][0]["message"]["content"] == "hi there", (st, raw)
        assert h["content-type"] == "application/json; charset=utf-8", h
        assert h["x-ratelimit-reset-tokens"] == "6m 0s", h
        assert h["x-ratelimit-limit-requests"] == "500", h
        assert h["x-llmroute-upstream-request-id"] == "req 42", h

    def status_passed_through():
        up.steps.put(error_400)
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 400, (st, raw)
        assert j["error"]["message"] == "bad thing", j

    def no_bare_cr_relayed():
        # RFC 9110 section 5.5: CR, LF or NUL in a field value is replaced by
        # SP before forwarding. The gateway's answer is well-formed HTTP.
        up.steps.put(error_with_bare_crs)
        raw = raw_exchange(gw.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(HELLO_BODY) + HELLO_BODY)
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert status_of(raw) == 400, raw[:300]
        assert b"\r" not in head.replace(b"\r\n", b""), head
        lines = head.split(b"\r\n")
        assert not any(l.lower().startswith((b"x-injected", b"set-cookie")) for l in lines), head
        assert b"Content-Type: application/json X-Injected: 1\r\n" in raw, head
        assert b"Retry-After: 5 Set-Cookie: a=b\r\n" in raw, head

    def empty_204():
        # The transfer must end at the head (no body follows a 204); what the
        # gateway then makes of an empty answer is its policy's business. A
        # transfer waiting for a body would end at upstream_timeout_ms (5 s):
        # the bound is under that, with room for a loaded machine (2 s was
        # a quarter of what a sanitizer build may take for a round trip there).
        up.steps.put(no_content)
        t = time.monotonic()
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st in (204, 502) and time.monotonic() - t < 4, (st, raw)

    def redirect_not_followed():
        # The Location points back at this upstream: followed, it would show as a
        # second request head. It has an escape sequence, a byte that is not
        # UTF-8 and is long: the message quotes it cut, with both made safe.
        loc = b"http://127.0.0.1:%d/v2/\x1b[31mred\xff" % up.port + b"x" * 400
        for stream in (False, True):
            before = len(up.heads)
            up.steps.put(redirect_to(loc))
            payload = {"model": "s", "messages": HELLO}
            if stream:
                payload["stream"] = True
            st, h, j, raw = chat(gw.port, payload)
            assert st == 502 and h["content-type"] == "application/json", (st, h, raw)
            e = error_shape(j)
            m = e["message"]
            assert e["code"] == "upstream_redirect" and e["type"] == "upstream_error", e
            assert "model 's'" in m and "302" in m and "models[0].base_url" in m, m
            assert "http://127.0.0.1:%d/v2/?[31mred\ufffdxxx" % up.port in m, m
            assert "x" * 200 not in m and "...'" in m, m
            assert not any(ord(ch) < 0x20 for ch in m), m
            assert h["x-llmroute-attempts"] == "1", h
            time.sleep(0.2)  # a followed redirect would have arrived by now
            assert len(up.heads) == before + 1, up.heads[before:]

    def streamed(step):
        """A stream request played against step: (status, the client's events, raw)."""
        up.steps.put(step)
        st, h, raw = request(gw.port, "POST", "/v1/chat/completions",
                             json.dumps({"model": "s", "messages": HELLO, "stream": True,
                                         "stream_options": {"include_usage": True}}),
                             timeout=15)
        events = [e[len("data: "):] for e in raw.decode().split("\n\n")
                  if e.startswith("data: ")]
        return st, events, raw

    # An upstream silent after [DONE] stays so for 8 s and the upstream's total
    # timeout is 5 s; the gateway's grace after [DONE] is 1 s. A stream that
    # ends before this many seconds ended in the grace, not at a timeout.
    in_the_grace = 3.5

    def complete(step, eol=b"\n", within=None):
        """The client gets every event, then [DONE] as a whole event, and no error;
        the attempt counts as a success; with within, the stream ends in fewer seconds."""
        key = 'llmroute_upstream_attempts_total{model="s",class="ok"}'
        before = gw.metrics().get(key, 0)
        t0 = time.monotonic()
        st, events, raw = streamed(step)
        took = time.monotonic() - t0
        if within is not None:
            assert took < within, "the stream ended after %.1f s, not in the grace" % took
        assert st == 200, (st, raw)
        assert raw.endswith(b"data: [DONE]" + eol + eol), raw[-200:]
        assert b'"error"' not in raw, raw[-300:]
        assert b"hi" in raw and b" there" in raw, raw
        assert gw.metrics().get(key, 0) == before + 1, gw.metrics()

    def done_then_closed():
        # Everything up to [DONE] arrived; the upstream then closed without the
        # zero-length chunk. The answer is whole: no error event after [DONE], and
        # no failure counted against the model (its breaker would open).
        complete(sse_stream(sse_body(), "close"))

    def done_then_silent():
        # ... or kept the connection open and sent nothing more: the stream still
        # ends, well before the upstream's total timeout, as a success.
        complete(sse_stream(sse_body(), "silence"), within=in_the_grace)

    def done_without_line_end():
        # `data: [DONE]` is the last thing the upstream sent, with no line end:
        # the stream is complete, and the client gets [DONE] as a whole event.
        complete(sse_stream(sse_body(last_eol=False), "chunk"))
        complete(sse_stream(sse_body(last_eol=False), "eof"))

    def done_without_blank_line():
        # The last event, `data: [DONE]` with its line end, has no blank line
        # after it: a clean end of the body ends the event, and the client gets
        # the blank line, after an LF or after a bare CR (where an LF alone would
        # only make a CRLF of it).
        complete(sse_stream(sse_body()[:-1], "chunk"))
        st, _, raw = streamed(sse_stream(sse_body(eol=b"\r")[:-1], "eof"))
        assert st == 200 and raw.endswith(b"data: [DONE]\r\n\n"), (st, raw[-100:])
        assert sse_dispatch(raw)[-1] == "[DONE]", raw[-100:]

    def done_crlf_split_at_each_byte():
        # `data: [DONE]\r\n\r\n` split at each byte of its line ends, then an event
        # the upstream should not have sent: the client's stream ends with the whole
        # event, its CRLF blank line complete, and nothing after it.
        body = sse_body(eol=b"\r\n")
        after = (b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,'
                 b'"delta":{"content":"AFTER"}}]}\r\n\r\n')
        cut = len(body) - 4
        for k in range(5):
            st, _, raw = streamed(sse_pieces([body[:cut + k], body[cut + k:] + after]))
            assert st == 200, (k, st, raw)
            assert raw.endswith(b"data: [DONE]\r\n\r\n"), (k, raw[-60:])
            assert b"AFTER" not in raw and b'"error"' not in raw, (k, raw[-200:])

    def named_error_done_unfinished_then_cut():
        # An event named `error` whose data is `[DONE]`, without the blank line
        # ending it, then a cut: an error event, not the stream's end, so the
        # attempt fails (502, nothing relayed) and is no success.
        key = 'llmroute_upstream_attempts_total{model="s",class="ok"}'
        for body in (b"event: error\ndata: [DONE]\n", b"event: error\ndata: [DONE]"):
            before = gw.metrics().get(key, 0)
            st, _, raw = streamed(sse_stream(body, "close"))
            assert st == 502, (body, st, raw)
            assert gw.metrics().get(key, 0) == before, (body, gw.metrics())

    def stream_without_content_type():
        # A 200 stream answer with no Content-Type at all is read as the event stream
        # asked for: the client gets every event and [DONE], as text/event-stream. One
        # that is not an event stream (a JSON body) still fails: 502, nothing relayed.
        key = 'llmroute_upstream_attempts_total{model="s",class="ok"}'
        before = gw.metrics().get(key, 0)
        up.steps.put(sse_pieces([sse_body()], ctype=None))
        st, h, raw = request(gw.port, "POST", "/v1/chat/completions",
                             json.dumps({"model": "s", "messages": HELLO, "stream": True}),
                             timeout=15)
        assert st == 200 and h["content-type"] == "text/event-stream", (st, h, raw)
        assert raw.endswith(b"data: [DONE]\n\n") and b" there" in raw, raw
        assert b'"error"' not in raw, raw
        assert gw.metrics().get(key, 0) == before + 1, gw.metrics()
        up.steps.put(sse_pieces([OK_BODY], ctype=None))
        st, h, raw = request(gw.port, "POST", "/v1/chat/completions",
                             json.dumps({"model": "s", "messages": HELLO, "stream": True}),
                             timeout=15)
        assert st == 502 and b"hi there" not in raw, (st, raw)

    def done_unfinished_then_cut():
        # `data: [DONE]` arrived, with or without its line end, but not the
        # blank line ending its event, and then the upstream closed without the
        # zero-length chunk or fell silent: nothing of the answer is missing, so
        # the stream completes (the client gets the rest of the event) and, when
        # silent, within the grace after [DONE], as a success.
        for body in (sse_body()[:-1], sse_body(last_eol=False)):
            for ending in ("close", "silence"):
                complete(sse_stream(body, ending),
                         within=in_the_grace if ending == "silence" else None)

    def bare_cr_lines():
        # SSE lines may end with CR alone; the events (and their usage) get through.
        tokens = 'llmroute_tokens_total{model="s",direction="out"}'
        before = gw.metrics().get(tokens, 0)
        for ending in ("chunk", "eof"):
            complete(sse_stream(sse_body(eol=b"\r"), ending), eol=b"\r")
        assert gw.metrics().get(tokens, 0) == before + 4, gw.metrics()

    def cut_mid_event():
        # The upstream closes between an event's data line and its blank line,
        # after the stream reached the client: the error event must be an
        # event of its own, not data joined to the unfinished one.
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in SSE_EVENTS[:2])
        body += b"data: " + json.dumps(SSE_EVENTS[2]).encode() + b"\n"
        st, _, raw = streamed(sse_stream(body, "close"))
        assert st == 200, (st, raw)
        events = sse_dispatch(raw)
        decoded = [json.loads(e) for e in events]  # every event the client sees is JSON
        assert error_shape(decoded[-1])["code"] == "upstream_stream_cut", decoded
        assert "[DONE]" not in events, events

    def multiline_events():
        # Every chunk's JSON is split over several data lines (the SSE format joins
        # them with LF at the event's blank line): relayed byte for byte, the
        # client's events are the upstream's, and the attempt is a success.
        body = sse_multiline_body()
        for ending in ("chunk", "eof"):
            complete(sse_stream(body, ending))
            st, events, raw = streamed(sse_stream(body, ending))
            assert st == 200 and raw == body, (st, raw[-300:])
            got = sse_dispatch(raw)
            assert [json.loads(d) for d in got[:-1]] == SSE_EVENTS and got[-1] == "[DONE]", got

    def multiline_usage():
        # The final chunk's usage, over three data lines, is read: the tokens count.
        tokens = 'llmroute_tokens_total{model="s",direction="out"}'
        before = gw.metrics().get(tokens, 0)
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in SSE_EVENTS[:3])
        body += multiline_event(SSE_EVENTS[3], 3) + b"data: [DONE]\n\n"
        complete(sse_stream(body, "chunk"))
        assert gw.metrics().get(tokens, 0) == before + 2, gw.metrics()

    def malformed_once_joined():
        # Each data line of the third event is a JSON object, but joined they are
        # not one: the event is malformed. The client gets the events before it,
        # then the error event, and no [DONE]; the bad event never reaches it.
        good = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in SSE_EVENTS[:2])
        for bad in (b"data: " + json.dumps(SSE_EVENTS[2]).encode() + b"\n" +
                    b"data: " + json.dumps(SSE_EVENTS[2]).encode() + b"\n\n",
                    # a string cut across lines holds a raw LF once joined
                    b'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "a\n'
                    b'data: b"}}]}\n\n'):
            st, _, raw = streamed(sse_stream(good + bad + b"data: [DONE]\n\n", "chunk"))
            assert st == 200, (st, raw)
            events = sse_dispatch(raw)
            assert error_shape(json.loads(events[-1]))["code"] == "upstream_malformed", events
            assert "[DONE]" not in events, events
            assert [json.loads(d) for d in events[:-1]] == SSE_EVENTS[:2], events
        # The same as the first event: nothing reached the client, so it is the
        # attempt's failure (one attempt here: 502).
        st, _, raw = streamed(sse_stream(
            b"data: " + json.dumps(SSE_EVENTS[1]).encode() + b"\ndata: {}\n\n" +
            b"data: [DONE]\n\n", "chunk"))
        assert st == 502, (st, raw)

    def cut_mid_multiline_event():
        # The upstream closes between two data lines of an event after the stream
        # reached the client: the unfinished event is not relayed, and the error
        # event is one of its own.
        body = b"".join(multiline_event(e, 2) for e in SSE_EVENTS[:2])
        body += b"data: " + split_json(SSE_EVENTS[2], 2)[0].encode() + b"\n"
        st, _, raw = streamed(sse_stream(body, "close"))
        assert st == 200, (st, raw)
        events = sse_dispatch(raw)
        decoded = [json.loads(d) for d in events]
        assert decoded[:-1] == SSE_EVENTS[:2], decoded
        assert error_shape(decoded[-1])["code"] == "upstream_stream_cut", decoded

    def overlong_event():
        # An event whose data lines add up to more than the cap
        # (server.max_stream_event_bytes, 1 MiB here) is a malformed stream,
        # refused while it grows, whatever its lines would join to.
        line = b"data: " + b"1, " * 5000 + b"\n"
        big = (b'data: {"id": "x", "choices": [], "pad": [\n' + line * 80 + b"data: 1]}\n\n")
        good = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in SSE_EVENTS[:2])
        st, _, raw = streamed(sse_stream(good + big + b"data: [DONE]\n\n", "chunk"))
        assert st == 200, (st, raw[-300:])
        events = sse_dispatch(raw)
        e = error_shape(json.loads(events[-1]))
        assert e["code"] == "upstream_malformed", e
        assert "server.max_stream_event_bytes (1048576)" in e["message"], e
        assert "[DONE]" not in events and len(events) == 3, events[-1]

    def close_delimited_cut():
        # A body with neither Content-Length nor chunks ends at the close, so
        # a close inside its JSON may as well have cut it short: the start of
        # an object that more bytes could complete (after 40 bytes, inside
        # `true`, or nothing at all) is a cut body, stream_cut, as one short
        # of its Content-Length is; it was upstream_malformed. Bytes no
        # continuation could make an object stay malformed, and so does a
        # body its framing says came whole (the last chunk).
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"

        def answer(wire):
            def step(c):
                c.sendall(wire)
                return "close"
            return step
        cases = [
            (head + b"\r\n" + OK_BODY[:40], "upstream_stream_cut"),
            (head + b"\r\n" + b'{"id": "x", "ok": tr', "upstream_stream_cut"),
            (head + b"\r\n", "upstream_stream_cut"),
            (head + b"Content-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY[:40],
             "upstream_stream_cut"),
            (head + b"\r\n" + OK_BODY[:40] + b"\n}x", "upstream_malformed"),
            (head + b"\r\nhello", "upstream_malformed"),
            (head + b"Transfer-Encoding: chunked\r\n\r\n28\r\n" + OK_BODY[:40] +
             b"\r\n0\r\n\r\n", "upstream_malformed"),
        ]
        key = 'llmroute_upstream_attempts_total{model="s",class="%s"}'
        before = {c: gw.metrics().get(key % c, 0) for c in ("stream_cut", "malformed")}
        for wire, code in cases:
            up.steps.put(answer(wire))
            st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
            assert st == 502 and error_shape(j)["code"] == code, (wire[-60:], st, raw)
        m = gw.metrics()
        assert m.get(key % "stream_cut", 0) == before["stream_cut"] + 4, m
        assert m.get(key % "malformed", 0) == before["malformed"] + 3, m

    def close_delimited_cut_relayed():
        # The requests about a response id are answered with the upstream's
        # body as it came, without the JSON check, so a close-delimited 200
        # cut inside its JSON reached the client as a 200 with half an
        # object. It is a cut body now, as on chat: 502 upstream_stream_cut
        # (one candidate, the model that served the id, nothing to fall back
        # to). A whole one, and a DELETE's 204, are relayed as they came.
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        made = json.dumps({"id": "resp_cut", "object": "response", "status": "completed",
                           "output": []}).encode()

        def answer(wire):
            def step(c):
                c.sendall(wire)
                return "close"
            return step
        up.steps.put(answer(head + b"Content-Length: %d\r\n\r\n" % len(made) + made))
        st, _, body = request(gw.port, "POST", "/v1/responses",
                              json.dumps({"model": "s", "input": "hello"}))
        assert st == 200 and json.loads(body)["id"] == "resp_cut", (st, body)
        key = 'llmroute_upstream_attempts_total{model="s",class="stream_cut"}'
        before = gw.metrics().get(key, 0)
        ops = [("GET", "/v1/responses/resp_cut"), ("DELETE", "/v1/responses/resp_cut"),
               ("POST", "/v1/responses/resp_cut/cancel"),
               ("GET", "/v1/responses/resp_cut/input_items")]
        for method, path in ops:
            up.steps.put(answer(head + b"\r\n" + made[:30]))
            st, h, body = request(gw.port, method, path)
            assert st == 502, (method, path, st, body)
            e = error_shape(json.loads(body))
            assert e["code"] == "upstream_stream_cut", (method, path, e)
            assert "after 30 bytes" in e["message"], e
        assert gw.metrics().get(key, 0) == before + len(ops)
        # The DELETE failed: the id is still held, and a whole body, with or
        # without its length, is relayed byte for byte; so is a 204.
        for wire in (head + b"\r\n" + made,
                     head + b"Content-Length: %d\r\n\r\n" % len(made) + made):
            up.steps.put(answer(wire))
            st, h, body = request(gw.port, "GET", "/v1/responses/resp_cut")
            assert st == 200 and body == made, (st, body)
        up.steps.put(answer(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
        st, h, body = request(gw.port, "DELETE", "/v1/responses/resp_cut")
        assert st == 204 and body == b"", (st, body)

    def empty_stream():
        # A 200 event stream that ends before its first event (at once, by a
        # close, by the last chunk): nothing reached the client, so it is the
        # attempt's failure, as a cut before any content is. A fuzzed stream
        # like this once had the gateway compute NULL + 0 (undefined; clang's
        # UBSan reports it, gcc's does not look); tests/fuzz/corpus/gateway
        # keeps that input.
        for ending in ("eof", "close", "chunk"):
            st, _, raw = streamed(sse_stream(b"", ending))
            assert st == 502, (ending, st, raw)

    def streamed_logged(step, extra=None):
        """A stream request played against step: (status, raw, its log line)."""
        up.steps.put(step)
        payload = {"model": "s", "messages": HELLO, "stream": True}
        payload.update(extra or {})
        st, h, raw = request(gw.port, "POST", "/v1/chat/completions", json.dumps(payload),
                             timeout=15)

        def line():
            got = [l for l in gw.log_lines() if l.get("id") == h["x-request-id"]]
            return got[0] if got else None
        return st, raw, wait_for(line, 5, "the request's log line")

    def chunks(*deltas):
        """Chat chunks for each (index, content, finish_reason) in deltas."""
        return b"".join(
            b"data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "choices": [
                {"index": i, "delta": {"content": c}, "finish_reason": f}]}).encode() + b"\n\n"
            for i, c, f in deltas)

    def finished_without_done():
        # Every choice has its finish reason and the body ends cleanly (the last
        # chunk, or the close that delimits it), but no `data: [DONE]` came: as
        # llama.cpp's server before PR #9459 and TGI before PR #2221 end a
        # stream. The answer is whole: the client gets it and a [DONE] of the
        # gateway's, the attempt is a success, and the log line and
        # llmroute_stream_done_added_total say [DONE] was added. These were
        # cuts: an error event after the whole answer, and a failure for the
        # model's breaker.
        added = 'llmroute_stream_done_added_total{model="s"}'
        ok = 'llmroute_upstream_attempts_total{model="s",class="ok"}'
        unmetered = 'llmroute_unmetered_answers_total{model="s"}'
        tokens = 'llmroute_tokens_total{model="s",direction="out"}'
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in SSE_EVENTS)
        # Usage came (the last chunk): metered. The body's last event ended,
        # or not (its blank line, or its line end, missing), or its lines end
        # with a bare CR: the client's events are whole either way.
        cases = [(body, b"data: [DONE]\n\n"), (body[:-1], b"\ndata: [DONE]\n\n"),
                 (body[:-2], b"\n\ndata: [DONE]\n\n"),
                 (body.replace(b"\n", b"\r"), b"data: [DONE]\n\n"),
                 (body.replace(b"\n", b"\r")[:-1], b"\n\ndata: [DONE]\n\n")]
        for ending in ("chunk", "eof"):
            for sent, tail in cases:
                m0 = gw.metrics()
                st, raw, line = streamed_logged(sse_stream(sent, ending),
                                                {"stream_options": {"include_usage": True}})
                assert st == 200 and raw == sent + tail, (ending, st, raw[-120:])
                got = sse_dispatch(raw)
                assert [json.loads(d) for d in got[:-1]] == SSE_EVENTS and got[-1] == "[DONE]", got
                assert line["status"] == 200 and "error" not in line, line
                assert line.get("done_added") is True, line
                assert [t["class"] for t in line["tries"]] == ["ok"], line
                m = gw.metrics()
                assert m.get(added, 0) == m0.get(added, 0) + 1, (ending, m.get(added))
                assert m.get(ok, 0) == m0.get(ok, 0) + 1, (ending, m.get(ok))
                assert m.get(tokens, 0) == m0.get(tokens, 0) + 2, (ending, m.get(tokens))
                assert m.get(unmetered, 0) == m0.get(unmetered, 0), (ending, m.get(unmetered))
        # No usage chunk: whole, but unmetered.
        m0 = gw.metrics()
        sent = chunks((0, "hi", None), (0, " there", None), (0, "", "length"))
        st, raw, line = streamed_logged(sse_stream(sent, "chunk"))
        assert st == 200 and raw == sent + b"data: [DONE]\n\n", (st, raw[-120:])
        assert line.get("done_added") is True and "tokens_out" not in line, line
        m = gw.metrics()
        assert m.get(unmetered, 0) == m0.get(unmetered, 0) + 1, m.get(unmetered)
        # With n = 3, once every index seen has finished.
        sent = chunks((0, "a", None), (1, "b", None), (2, "c", None), (1, "", "stop"),
                      (0, "", "stop"), (2, "", "tool_calls"))
        st, raw, line = streamed_logged(sse_stream(sent, "eof"), {"n": 3})
        assert st == 200 and raw == sent + b"data: [DONE]\n\n", (st, raw[-120:])
        assert line.get("done_added") is True, line

    def unfinished_without_done():
        # A clean end without [DONE] when a choice index seen has no finish
        # reason stays a cut: Ollama's stream on an error mid-generation (no
        # finish reason at all), one choice of n = 2 unfinished, a finish
        # reason of "error" (OpenRouter's when the provider failed). So does
        # a body that is not ended properly, finish reasons or not.
        cut = 'llmroute_upstream_attempts_total{model="s",class="stream_cut"}'
        added = 'llmroute_stream_done_added_total{model="s"}'
        cases = [(chunks((0, "hi", None), (0, " there", None)), "chunk"),
                 (chunks((0, "hi", None), (1, "yo", None), (0, "", "stop")), "eof"),
                 (chunks((0, "hi", None), (0, "", "error")), "chunk"),
                 (chunks((0, "hi", None), (0, "", "stop")), "close")]
        for sent, ending in cases:
            m0 = gw.metrics()
            st, raw, line = streamed_logged(sse_stream(sent, ending))
            assert st == 200, (st, raw)
            got = sse_dispatch(raw)
            assert "[DONE]" not in got, got
            assert error_shape(json.loads(got[-1]))["code"] == "upstream_stream_cut", got
            assert line["error"] == "stream_cut" and "done_added" not in line, line
            m = gw.metrics()
            assert m.get(cut, 0) == m0.get(cut, 0) + 1, (sent, ending)
            assert m.get(added, 0) == m0.get(added, 0), (sent, ending)

    def error_field_mid_stream():
        # Older llama.cpp servers (before PR #16109) send a stream's error as an
        # `error:` field, then [DONE]; and a server may name an event `error`
        # with data of its own shape (no `error` member). After content reached
        # the client, each is relayed as it came and logged as what it is: the
        # attempt a server_error, "upstream_error_event", as an error in the
        # data is. Both were taken for content, the attempt logged ok. (Each
        # piece comes in a read of its own: the first commits the stream.)
        err = b'{"code": 500, "message": "boom", "type": "server_error"}'
        for ev in (b"error: " + err + b"\n\n",
                   b'event: error\ndata: {"message": "Overloaded", "type": "overloaded"}\n\n'):
            pieces = [chunks((0, "hi", None)), ev, b"data: [DONE]\n\n"]
            sent = b"".join(pieces)
            st, raw, line = streamed_logged(sse_pieces(pieces))
            assert st == 200 and raw == sent, (st, raw)
            assert line["error"] == "upstream_error_event", line
            assert [t["class"] for t in line["tries"]] == ["server_error"], line

    def bom_stripped():
        # A UTF-8 BOM before the first event (in one read, or split over
        # three) is dropped, not relayed: the events after it are read and
        # relayed as the upstream sent them. It used to hide the first event
        # (its line was no `data:` line) and reach the client.
        body = sse_body()
        for step in (sse_stream(b"\xef\xbb\xbf" + body, "chunk"),
                     sse_pieces([b"\xef", b"\xbb", b"\xbf" + body[:40], body[40:]])):
            st, raw, line = streamed_logged(step, {"stream_options": {"include_usage": True}})
            assert st == 200 and raw == body, (st, raw[:60])
            assert line.get("tokens_out") == 2 and "error" not in line, line
        # An error event first, after a BOM: no content reached the client, so
        # the attempt failed (server_error; one candidate here: 502 naming it).
        err = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
        st, raw, line = streamed_logged(sse_stream(b"\xef\xbb\xbf" + err + b"data: [DONE]\n\n",
                                                   "chunk"))
        assert st == 502 and b"overloaded" in raw, (st, raw)
        assert [t["class"] for t in line["tries"]] == ["server_error"], line

    def closed_after_response():
        expect_ok(ok_then_close)
        time.sleep(0.2)  # the pooled connection is closed by now
        expect_ok(ok_with_length)

    def drain_steps():
        while True:
            try:
                up.steps.get_nowait()
            except queue.Empty:
                return

    def reset_after_request_not_resent():
        # A reused connection reset after the upstream read the request: the
        # request may have been processed. With retry.on.reset_reused "fail"
        # it is not sent again: one attempt of class reset_reused, counted and
        # logged, and 502.
        expect_ok(ok_with_length)  # a connection in the pool
        key = 'llmroute_upstream_attempts_total{model="once",class="reset_reused"}'
        resets = gw.metrics().get(key, 0)
        before = len(up.heads)
        up.steps.put(reset_after_reading)
        up.steps.put(ok_with_length)  # what a resent request would be answered
        st, h, j, raw = chat(gw.port, {"model": "once", "messages": HELLO})
        time.sleep(0.3)
        sent = len(up.heads) - before
        drain_steps()
        assert sent == 1, "the upstream got the request %d times (%s)" % (sent, st)
        assert st == 502 and h["x-llmroute-attempts"] == "1", (st, h, raw)
        assert gw.metrics().get(key, 0) == resets + 1, gw.metrics()
        line = [l for l in gw.log_lines() if l.get("path") == "/v1/chat/completions"][-1]
        assert [t["class"] for t in line["tries"]] == ["reset_reused"], line

    def tries_of(h):
        # The log line is written after the answer: wait for it.
        def line():
            got = [l for l in gw.log_lines() if l.get("id") == h["x-request-id"]]
            return got[0] if got else None
        return [t["class"] for t in wait_for(line, 5, "the request's log line")["tries"]]

    def idle_close_crossing_retried():
        # The upstream closes each connection 100 ms after its answer, without
        # Connection: close; requests follow at once, so each one after the
        # first goes out on a pooled connection as its close crosses it. That
        # is one reset_reused attempt, then the same request at once on a new
        # connection: every request gets its answer and the upstream reads each
        # once.
        drain_steps()
        key = 'llmroute_upstream_attempts_total{model="s",class="reset_reused"}'
        crossings = gw.metrics().get(key, 0)
        before = len(up.heads)
        seen = []
        for _ in range(6):
            up.steps.put(ok_then_idle_close)
            st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
            assert st == 200, (st, raw, seen)
            seen.append(tries_of(h))
            assert h["x-llmroute-attempts"] == str(len(seen[-1])), (h, seen)
        time.sleep(0.2)
        # A slow gateway may find a close before it sends (its peek): then no crossing.
        assert all(t in (["ok"], ["reset_reused", "ok"]) for t in seen), seen
        crossed = sum(1 for t in seen if t[0] == "reset_reused")
        print("     crossings: %d of 6" % crossed)
        assert crossed >= 1, seen
        assert gw.metrics().get(key, 0) == crossings + crossed, gw.metrics()
        assert len(up.heads) - before == 6, up.heads[before:]

    def idle_close_crossing_fails_when_asked():
        # With retry.on.reset_reused "fail", a crossing is answered 502 and the
        # request is not sent again; the upstream never read it.
        drain_steps()
        for _ in range(10):
            up.steps.put(ok_then_idle_close)
            st, _, _, raw = chat(gw.port, {"model": "once", "messages": HELLO})
            assert st == 200, (st, raw)
            before = len(up.heads)
            up.steps.put(ok_with_length)  # what a resent request would be answered
            st, h, j, raw = chat(gw.port, {"model": "once", "messages": HELLO})
            time.sleep(0.2)
            if st == 200:  # the close was found before the request went out
                assert tries_of(h) == ["ok"], tries_of(h)
                continue
            drain_steps()
            assert st == 502 and h["x-llmroute-attempts"] == "1", (st, h, raw)
            assert error_shape(j)["code"] == "upstream_reset_reused", j
            assert tries_of(h) == ["reset_reused"], tries_of(h)
            assert len(up.heads) == before, up.heads[before:]
            return
        assert False, "no request crossed a close in 10 tries"

    def unasked_bytes_close_idle_connection():
        # Bytes that arrive on an idle pooled connection end it: the next
        # requests get their own answers, not the stray one.
        expect_ok(ok_then_unasked_response)
        time.sleep(0.4)  # the stray response is in by now
        for _ in range(3):
            expect_ok(ok_with_length)

    check(tag + "request head: host, authorization, content type and length, the model's headers",
          request_head)
    check(tag + "keep-alive: five requests on one connection", keep_alive_reused)
    check(tag + "chunked body with extensions and a trailer, in 5-byte pieces",
          expect_ok, chunked_pieces)
    check(tag + "body delimited by the connection's close", expect_ok, close_delimited)
    check(tag + "Content-Length as a list of equal values", expect_ok, length_list)
    check(tag + "interim 100 head skipped", expect_ok, interim_then_ok)
    # libcurl 7.88 hands a continuation line to the header callback as a
    # line of its own: upstream.c joins it to the header it continues.
    check(tag + "folded header lines are unfolded, each fold one space", folded_unfolded)
    check(tag + "upstream status and body passed through", status_passed_through)
    check(tag + "204: the transfer ends at the head", empty_204)
    check(tag + "a bare CR in an upstream header value is relayed as a space",
          no_bare_cr_relayed)
    check(tag + "302: not followed; 502 naming the status and a safe, cut Location "
          "(stream and not)", redirect_not_followed)
    check(tag + "a connection the upstream closed after a response is not reused",
          closed_after_response)
    check(tag + "a request read and then reset on a reused connection is not resent: "
          "with reset_reused \"fail\": one attempt, class reset_reused", reset_after_request_not_resent)
    check(tag + "a response nobody asked for on an idle connection is not the next answer",
          unasked_bytes_close_idle_connection)
    check(tag + "requests crossing an idle close: reset_reused, then at once a new connection; "
          "all 200", idle_close_crossing_retried)
    check(tag + "with retry.on.reset_reused \"fail\" a crossing is 502, not resent",
          idle_close_crossing_fails_when_asked)

    def idle_close_crossing_not_held_against_breaker():
        # A breaker that opens at the first failure: a crossing counted as one
        # would open it, and the request's retry would find the model open (503
        # or 502). reset_reused is no failure of the upstream: every request 200.
        strict = dict(cfg, server=dict(cfg["server"], resilience={
            "retry": {"max_attempts": 2, "on": {"rate_limited": "fallback"}},
            "breaker": {"consecutive_failures": 1, "failure_rate": 0}}))
        g = Gateway(gw_bin, workdir(), strict, env=e, name="gw-strict")
        try:
            drain_steps()
            crossed = 0
            for _ in range(6):
                up.steps.put(ok_then_idle_close)
                st, h, j, raw = chat(g.port, {"model": "s", "messages": HELLO})
                assert st == 200, (st, raw, crossed)
                crossed += h["x-llmroute-attempts"] == "2"
            print("     crossings: %d of 6" % crossed)
            assert crossed >= 1, crossed
            assert g.metrics().get('llmroute_breaker_opens_total{model="s"}', 0) == 0
        finally:
            g.signal(signal.SIGTERM)
            assert g.wait(15) == 0
            time.sleep(0.2)
            drain_steps()

    check(tag + "a crossing is not held against the model's breaker",
          idle_close_crossing_not_held_against_breaker)

    def keep_alive_timeout_heeded():
        # Keep-Alive: timeout=2: the connection is reused within its time
        # less a margin of a second, and not after it, when a request sent
        # on it could cross the upstream's close. A gateway of its own, so
        # that no connection of the tests before is in its pool.
        g = Gateway(gw_bin, workdir(), cfg, env=e, name="gw-keepalive")
        try:
            drain_steps()
            # (the step, the idle time before it, the connections it opens)
            for step, pause, want in ((ok_keep_alive_2s, 0, 1), (ok_keep_alive_2s, 0.2, 0),
                                      (ok_with_length, 1.4, 1)):
                before = up.connections
                time.sleep(pause)
                up.steps.put(step)
                st, h, j, raw = chat(g.port, {"model": "s", "messages": HELLO})
                assert st == 200, (st, raw)
                assert h["x-llmroute-attempts"] == "1", h
                assert up.connections - before == want, (pause, up.connections - before)
        finally:
            g.signal(signal.SIGTERM)
            assert g.wait(15) == 0
            time.sleep(0.2)
            drain_steps()

    def idle_closed_without_a_request():
        # Keep-Alive: timeout=2 gives the pooled connection 1 s. With no
        # request after it, the gateway closes it by itself: not before that
        # second, and well before a generous deadline (no timed claim of
        # speed). A gateway of its own, so that no other connection is pooled.
        g = Gateway(gw_bin, workdir(), cfg, env=e, name="gw-idle-expiry")
        try:
            drain_steps()
            # The answer's time is taken before it is sent, so that it is never
            # later than the gateway's receipt; and its connection is read from
            # the entry the step adds, once it is there. up.answered[-1] was read
            # as soon as the client had its answer, which on a loaded machine may
            # be before the upstream's thread records it: an earlier check's
            # connection, long closed, was taken for this one (closed 0.047 s
            # "after the answer").
            sent, seen = [], len(up.answered)

            def ok_keep_alive_2s_timed(c):
                sent.append(time.monotonic())
                ok_keep_alive_2s(c)
            up.steps.put(ok_keep_alive_2s_timed)
            st, h, j, raw = chat(g.port, {"model": "s", "messages": HELLO})
            assert st == 200, (st, raw)
            conn = wait_for(lambda: up.answered[seen:], 15,
                            "the upstream's record of its answer")[0][0]
            closed = wait_for(lambda: [t for n, t in up.closes if n == conn], 15,
                              "the gateway closing the idle connection")
            waited = closed[0] - sent[0]
            print("     closed %.3f s after the answer (its limit: 1 s)" % waited)
            assert waited >= 0.99, waited
            # and the gateway serves on, on a new connection
            before = up.connections
            up.steps.put(ok_with_length)
            st, h, j, raw = chat(g.port, {"model": "s", "messages": HELLO})
            assert st == 200, (st, raw)
            assert up.connections - before == 1, up.connections - before
        finally:
            g.signal(signal.SIGTERM)
            assert g.wait(15) == 0
            time.sleep(0.2)
            drain_steps()

    # Both clients: libcurl reads no Keep-Alive header, but upstream.c does
    # for its connections and closes them on time.
    check(tag + "an upstream's Keep-Alive timeout is heeded: reused within it less a "
          "second, a new connection after", keep_alive_timeout_heeded)
    check(tag + "an idle pooled connection past its time is closed with no request "
          "after it, not before its time", idle_closed_without_a_request)
    check(tag + "a stream closed after [DONE] without its last chunk is complete, not cut",
          done_then_closed)
    check(tag + "a stream silent after [DONE] ends as complete, not at a timeout",
          done_then_silent)
    check(tag + "a final `data: [DONE]` without a line end completes the stream",
          done_without_line_end)
    check(tag + "a final [DONE] event without its blank line completes the stream",
          done_without_blank_line)
    check(tag + "[DONE] without its event's end, then a cut or silence: complete",
          done_unfinished_then_cut)
    check(tag + "`event: error` with `data: [DONE]`, unfinished, then a cut: a failure",
          named_error_done_unfinished_then_cut)
    check(tag + "`data: [DONE]\\r\\n\\r\\n` split at each byte, then more: the client gets "
          "the whole event and nothing after", done_crlf_split_at_each_byte)
    check(tag + "a 200 stream answer without Content-Type is read as an event stream",
          stream_without_content_type)
    check(tag + "a stream cut inside an event ends with an error event of its own",
          cut_mid_event)
    check(tag + "event streams with bare CR line ends are relayed, usage read",
          bare_cr_lines)
    check(tag + "events whose JSON is split over data lines are relayed whole, [DONE] last",
          multiline_events)
    check(tag + "usage in a final event of several data lines is read", multiline_usage)
    check(tag + "an event malformed only once its lines are joined: error event, no [DONE]",
          malformed_once_joined)
    check(tag + "a stream cut between an event's data lines ends with an error event",
          cut_mid_multiline_event)
    check(tag + "an event longer than the cap is a malformed stream", overlong_event)
    check(tag + "an event stream that ends before its first event: 502", empty_stream)
    check(tag + "a stream that ends cleanly, every choice finished, without [DONE]: "
          "complete, [DONE] added, logged and counted", finished_without_done)
    check(tag + "a stream that ends without [DONE] with a choice unfinished, or cut: a cut",
          unfinished_without_done)
    check(tag + "an `error:` field, or an `event: error` without an error member, after "
          "content: relayed, upstream_error_event", error_field_mid_stream)
    check(tag + "a UTF-8 BOM before the first event is dropped, not relayed",
          bom_stripped)
    check(tag + "oversized response head: 502", expect_502, huge_head)
    check(tag + "garbage instead of a status line: 502", expect_502, garbage)
    check(tag + "reset in the body: 502", expect_502, reset_mid_body)
    check(tag + "a close-delimited body that ends inside its JSON is a cut body, as one short "
          "of its Content-Length is; one no bytes could complete is malformed",
          close_delimited_cut)
    check(tag + "a close-delimited 200 to a request about a response id that ends inside "
          "its JSON is a cut body, 502; a whole one and a 204 are relayed as they came",
          close_delimited_cut_relayed)
    check(tag + "reset before the head: 502", expect_502, reset_before_head)
    def mutations():
        seen = {}
        for seed in range(40):
            up.steps.put(mutated(seed))
            st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO}, timeout=10)
            assert st in (200, 502, 504), (seed, st, raw)
            seen[st] = seen.get(st, 0) + 1
        print("     statuses: %s" % seen)
        assert seen.get(502) and seen.get(200), seen  # both paths were exercised

    check(tag + "40 mangled answers (fixed seeds): each ends in 200, 502 or 504", mutations)
    check(tag + "still serving after all of it", expect_ok, ok_with_length)


def early_answer(gw_bin, fake_bin, env):
    """An upstream that answers before it has read the request (the fake with
    --max-body 1000: 413 at the head of a longer body, then a close) while
    the gateway is still writing a body of 8 MB, more than the socket
    buffers on loopback hold: the write meets the close (EPIPE or
    ECONNRESET) with the answer already waiting to be read.

    The native client reads that answer whenever the write fails. libcurl
    relays it only when it has read it before its write fails, a race it
    loses now and then on a loaded machine (CURLE_SEND_ERROR: a reset),
    so for libcurl the fake closes as nginx and Apache do (--close
    lingering: the answer and a FIN, the rest of the body read and
    dropped), where no reset can overtake the answer."""
    wd = workdir()
    curl = env.get("LLMROUTE_UPSTREAM_CLIENT") == "curl"
    small = Fake(fake_bin, wd, name="small",
                 args=["--max-body", "1000"] + (["--close", "lingering"] if curl else []))
    other = Fake(fake_bin, wd, name="other")  # takes up to 16 MiB
    cfg = {"models": [{"name": "small", "backend": "openai", "base_url": small.base_url},
                      {"name": "other", "backend": "openai", "base_url": other.base_url}],
           "routes": [{"name": "r", "strategy": "sequential", "models": ["small"],
                       "fallbacks": ["other"]}],
           "server": {"max_body_bytes": 20000000, "upstream_timeout_ms": 10000,
                      "resilience": {"breaker": {"consecutive_failures": 3,
                                                 "cooldown_ms": 60000}}}}
    gw = Gateway(gw_bin, wd, cfg, env=env, name="gw-early")
    tag = "[%s] " % (env.get("LLMROUTE_UPSTREAM_CLIENT") or "default")
    big = {"messages": [{"role": "user", "content": "x" * 8000000}]}
    # What the fake answers a body over its limit, asked with the head alone.
    raw = raw_exchange(small.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 8000000\r\n\r\n")
    assert status_of(raw) == 413, raw[:300]
    upstream_body = json.loads(raw.split(b"\r\n\r\n", 1)[1])

    def stats(fake):
        st, _, body = request(fake.port, "GET", "/_stats")
        assert st == 200, st
        return json.loads(body)["requests"]

    def relayed_not_reset():
        # Six times, to the model and through a route with a fallback: each is
        # the upstream's 413 and its body, one attempt of class bad_request
        # (which fails at once), never reset (which would send 8 MB on to the
        # fallback and count against the model's breaker: three open it).
        # All six are sent before anything is checked, so that the breaker
        # check after them sees what six such requests leave behind. A small
        # request first puts a connection in the pool, so that the first goes
        # out on a reused one (which, failing before any byte of an answer,
        # would be reset_reused and sent again on a new connection).
        key = 'llmroute_upstream_attempts_total{model="small",class="%s"}'
        st, _, _, body = chat(gw.port, {"model": "small", "messages": HELLO})
        assert st == 200, (st, body[:300])
        answers = [chat(gw.port, dict(big, model="small" if i % 2 else "r"), timeout=30)
                   for i in range(6)]
        for i, (st, h, j, body) in enumerate(answers):
            assert st == 413, (i, st, body[:300])
            assert j == upstream_body, (i, body[:300])
            assert h["x-llmroute-attempts"] == "1", (i, h)
            line = wait_for(lambda: [l for l in gw.log_lines()
                                     if l.get("id") == h["x-request-id"]], 5, "the log line")[0]
            assert [t["class"] for t in line["tries"]] == ["bad_request"], (i, line)
        m = gw.metrics()
        assert m.get(key % "bad_request", 0) == 6, m
        assert m.get(key % "reset", 0) == 0 and m.get(key % "reset_reused", 0) == 0, m
        assert stats(other) == 0, "the body went on to the fallback"
        assert m.get('llmroute_breaker_opens_total{model="small"}', 0) == 0, m

    def still_served():
        st, h, j, body = chat(gw.port, {"model": "small", "messages": HELLO})
        assert st == 200 and h["x-llmroute-model"] == "small", (st, body[:300])

    check(tag + "an upstream's 413 sent before it read an 8 MB body is relayed, class "
          "bad_request: no reset, no fallback, no breaker count", relayed_not_reset)
    check(tag + "after six of them a small request is still 200 (the breaker closed)",
          still_served)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: test_upstream_client.py LLMROUTE FAKE_UPSTREAM")
    run(sys.argv[1], {})
    run(sys.argv[1], {"LLMROUTE_UPSTREAM_CLIENT": "curl"})
    early_answer(sys.argv[1], sys.argv[2], {})
    early_answer(sys.argv[1], sys.argv[2], {"LLMROUTE_UPSTREAM_CLIENT": "curl"})
    finish()
