"""test_upstream_wire.py -- what the gateway takes from an upstream's answer,
with each upstream client (the native one and
LLMROUTE_UPSTREAM_CLIENT=curl), against the scripted upstream of
test_upstream_client.py.

    python3 test_upstream_wire.py LLMROUTE

- Large events: an SSE event of a few MiB (a chat chunk, the Responses
  API's response.output_item.done carrying an image) is relayed intact under
  the default server.max_stream_event_bytes; one over a small configured cap
  is still a malformed stream, and relayed once SIGHUP raised the cap; the
  setting's bounds are checked at load.
"""
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import Gateway, chat, check, error_shape, finish, request, wait_for, workdir  # noqa
from test_upstream_client import (HELLO, OK_BODY, SSE_EVENTS, Scripted, ok_with_length,  # noqa
                                  sse_dispatch)

ERROR_BODY = json.dumps({"error": {"message": "bad thing", "type": "invalid_request_error",
                                   "param": None, "code": None}}).encode()


def answer(status, body, ctype=b"application/json", extra=b""):
    """A step: one answer with a Content-Length, extra header lines (each
    ending in CRLF) after the Content-Type."""
    def step(c):
        c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: " % status + ctype + b"\r\n" + extra +
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return step


def chunked(body, ctype=b"text/event-stream", extra=b"", piece=65536):
    """A step: a chunked answer of body in pieces of `piece` bytes."""
    def step(c):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\n" + extra +
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), piece):
            p = body[i:i + piece]
            c.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
        c.sendall(b"0\r\n\r\n")
    return step


def sse(events, done=True):
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + \
        (b"data: [DONE]\n\n" if done else b"")


def big_chat_events(n):
    """SSE_EVENTS with a content chunk of n bytes after the first."""
    big = {"id": "x", "object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": {"content": "b" * n}}]}
    return SSE_EVENTS[:2] + [big] + SSE_EVENTS[2:]


def responses_events(image_bytes):
    """A Responses stream whose response.output_item.done carries an
    image_generation_call with a base64 result of image_bytes characters."""
    item = {"id": "ig_1", "type": "image_generation_call", "status": "completed",
            "result": "QUFB" * (image_bytes // 4)}
    resp = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    done = dict(resp, status="completed", output=[item],
                usage={"input_tokens": 5, "output_tokens": 7, "total_tokens": 12})
    return [{"type": "response.created", "sequence_number": 0, "response": resp},
            {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
             "item": dict(item, status="in_progress", result=None)},
            {"type": "response.output_item.done", "sequence_number": 2, "output_index": 0,
             "item": item},
            {"type": "response.completed", "sequence_number": 3, "response": done}]


def stream_post(port, path, payload, headers=None, timeout=30):
    st, h, body = request(port, "POST", path, json.dumps(payload), headers, timeout)
    return st, h, body


def run(gw_bin, env):
    up = Scripted()
    base = "http://127.0.0.1:%d/v1" % up.port
    models = [{"name": n, "backend": "openai", "base_url": base} for n in ("s", "a", "b")]
    cfg = {"models": models,
           "routes": [{"name": "r", "strategy": "sequential", "models": ["a"],
                       "fallbacks": ["b"]}],
           "server": {"upstream_timeout_ms": 10000,
                      "resilience": {"retry": {"max_attempts": 2,
                                               "on": {"rate_limited": "fallback"}},
                                     "breaker": {"consecutive_failures": 0,
                                                 "failure_rate": 0}}}}
    wd = workdir()
    tag = "[%s] " % (env.get("LLMROUTE_UPSTREAM_CLIENT") or "default")
    gw = Gateway(gw_bin, wd, cfg, env=env, name="gw-wire")
    small_cfg = dict(cfg, server=dict(cfg["server"], max_stream_event_bytes=65536))
    small = Gateway(gw_bin, wd, small_cfg, env=env, name="gw-wire-small")

    def log_line(h):
        return wait_for(lambda: [l for l in gw.log_lines() if l.get("id") == h["x-request-id"]],
                        5, "the log line")[0]

    # ---- Large events ----

    def big_chat_event():
        events = big_chat_events(3 << 20)
        up.steps.put(chunked(sse(events)))
        st, h, raw = stream_post(gw.port, "/v1/chat/completions",
                                 {"model": "s", "messages": HELLO, "stream": True})
        assert st == 200, (st, raw[-300:])
        got = sse_dispatch(raw)
        assert got[-1] == "[DONE]", got[-1][:300]
        assert [json.loads(d) for d in got[:-1]] == events, [d[:100] for d in got]

    def big_responses_event():
        events = responses_events(4 << 20)
        up.steps.put(chunked(sse(events, done=False)))
        st, h, raw = stream_post(gw.port, "/v1/responses",
                                 {"model": "s", "input": "draw a cat", "stream": True,
                                  "tools": [{"type": "image_generation"}]})
        assert st == 200, (st, raw[-300:])
        got = [json.loads(d) for d in sse_dispatch(raw)]
        assert got == events, [str(d)[:100] for d in got]
        line = log_line(h)
        assert line["status"] == 200 and "error" not in line, line
        assert [t["class"] for t in line["tries"]] == ["ok"], line

    def over_small_cap(piece):
        events = big_chat_events(100000)
        up.steps.put(chunked(sse(events), piece=piece))
        st, h, raw = stream_post(small.port, "/v1/chat/completions",
                                 {"model": "s", "messages": HELLO, "stream": True})
        assert st == 200, (st, raw[-300:])
        got = sse_dispatch(raw)
        e = error_shape(json.loads(got[-1]))
        assert e["code"] == "upstream_malformed", e
        assert "server.max_stream_event_bytes (65536)" in e["message"], e
        assert "[DONE]" not in got and len(got) == 3, [d[:100] for d in got]

    def cap_reloaded():
        # SIGHUP applies a new cap to the requests after it.
        small.write_config(dict(cfg, server=dict(cfg["server"],
                                                  max_stream_event_bytes=1 << 20)))
        small.signal(signal.SIGHUP)
        wait_for(lambda: small.events("reloaded"), 5, "the reload")
        events = big_chat_events(100000)
        up.steps.put(chunked(sse(events)))
        st, h, raw = stream_post(small.port, "/v1/chat/completions",
                                 {"model": "s", "messages": HELLO, "stream": True})
        assert st == 200, (st, raw[-300:])
        got = sse_dispatch(raw)
        assert [json.loads(d) for d in got[:-1]] == events and got[-1] == "[DONE]", got[-1][:300]

    def cap_bounds():
        for v, ok in ((4095, False), (4096, True), (1 << 30, True), ((1 << 30) + 1, False),
                      ("big", False)):
            c = dict(cfg, server=dict(cfg["server"], max_stream_event_bytes=v))
            path = os.path.join(wd, "cap.json")
            with open(path, "w") as f:
                json.dump(c, f)
            r = subprocess.run([gw_bin, "check-config", path], capture_output=True, text=True,
                               timeout=30)
            assert (r.returncode == 0) == ok, (v, r.returncode, r.stdout, r.stderr)
            if not ok:
                assert "server.max_stream_event_bytes" in r.stderr, (v, r.stderr)

    check(tag + "a chat stream event of 3 MiB is relayed intact", big_chat_event)
    check(tag + "a Responses output_item.done of 4 MiB (an image) is relayed intact",
          big_responses_event)
    check(tag + "an event over a configured 64 KiB cap, in pieces: malformed, error event",
          over_small_cap, 4096)
    check(tag + "an event over a configured 64 KiB cap, in one piece: malformed, error event",
          over_small_cap, 1 << 20)
    check(tag + "the same event under a cap raised by SIGHUP is relayed", cap_reloaded)
    if not env:
        check("server.max_stream_event_bytes: 4096 to 1073741824, refused outside",
              cap_bounds)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: test_upstream_wire.py LLMROUTE")
    run(sys.argv[1], {})
    run(sys.argv[1], {"LLMROUTE_UPSTREAM_CLIENT": "curl"})
    finish()
