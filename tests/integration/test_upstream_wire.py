"""test_upstream_wire.py -- what the gateway asks of an upstream's answer and
what it passes on from one, with each upstream client (the native one and
LLMROUTE_UPSTREAM_CLIENT=curl), against the scripted upstream of
test_upstream_client.py.

    python3 test_upstream_wire.py LLMROUTE

- Content codings: every request asks for `Accept-Encoding: identity` (once,
  whatever the client sent), and an answer that is compressed all the same,
  a 2xx, a stream or an error, is a 502 upstream_bad_response naming the
  coding, never its bytes relayed under a label that does not say so;
  several Content-Encoding lines are one list, so a last `identity` line
  does not hide the gzip before it.
- Large events: an SSE event of a few MiB (a chat chunk, the Responses
  API's response.output_item.done carrying an image) is relayed intact under
  the default server.max_stream_event_bytes; one over a small configured cap
  is still a malformed stream, and relayed once SIGHUP raised the cap; the
  setting's bounds are checked at load.
- Answers that are errors: a 2xx whose body is an error object and no
  answer (OpenRouter's 200 when the provider failed after accepting the
  request) is an attempt's failure, so a route falls back, and with nothing
  left the client gets 502 upstream_server_error (429 upstream_rate_limited
  for an error of code 429) quoting the upstream's message, never a 200; a
  context overflow in the words of vLLM, llama.cpp, TGI or Ollama falls back
  to the next model as OpenAI's context_length_exceeded does.
- A relayed 405 keeps the upstream's Allow, which HTTP requires with it.
- Retry hints: a 429's retry-after-ms, or a Retry-After in decimal seconds,
  is waited for and the same model retried; retry-after-ms is preferred.
- Headers: x-ratelimit-*, retry-after-ms and x-should-retry come from the
  attempt whose answer the client gets (not from a failed one before it),
  bounded in count and size and without control characters; the upstream's
  x-request-id is x-llmroute-upstream-request-id and the log line's
  upstream_request_id, while x-request-id stays the gateway's.
- A proxy's tunnel (https_proxy, libcurl's CONNECT): the proxy's answer to
  CONNECT is not the upstream's head; a 407 to it is auth, another refusal
  leaves the upstream unreached.
"""
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

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


def long_chunk_lines(ext_len, trailer_len, piece, lead=0):
    """A step: OK_BODY chunked, after a first chunk of `lead` bytes of
    blanks (to move the lines that follow across the client's buffer), its
    size line carrying a chunk extension of about ext_len bytes, then a
    trailer line of about trailer_len bytes; the bytes sent `piece` at a
    time, each apart, so they arrive in reads of their own."""
    def step(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = b" " * lead + OK_BODY
        first, rest = body[:lead + 7], body[lead + 7:]
        wire = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" +
                b"%x\r\n" % len(first) + first + b"\r\n" +
                b"%x;name=\"%s\"\r\n" % (len(rest), b"e" * ext_len) + rest + b"\r\n" +
                b"0\r\nX-Trailer: " + b"t" * trailer_len + b"\r\n\r\n")
        for i in range(0, len(wire), piece):
            c.sendall(wire[i:i + piece])
            time.sleep(0.001)
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
    # A model whose 429s are retried (the server's default here falls back).
    models.append({"name": "rl", "backend": "openai", "base_url": base,
                   "retry": {"on": {"rate_limited": "retry"}, "max_retries": 1}})
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

    # ---- Content codings ----

    def asks_for_identity():
        up.steps.put(ok_with_length)
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO},
                             headers={"Accept-Encoding": "gzip, br"})
        assert st == 200, (st, raw)
        head = up.heads[-1].lower()
        assert head.count("\r\naccept-encoding:") == 1, head
        assert "\r\naccept-encoding: identity\r\n" in head, head

    def identity_accepted():
        up.steps.put(answer(200, OK_BODY, extra=b"Content-Encoding: identity\r\n"))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200 and j["choices"][0]["message"]["content"] == "hi there", (st, raw)

    def refused_coding(step, stream, coding):
        up.steps.put(step)
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO, "stream": stream})
        assert st == 502, (st, raw[:300])
        assert h["content-type"].startswith("application/json"), h
        assert "content-encoding" not in h, h
        e = error_shape(j)
        assert e["code"] == "upstream_bad_response", e
        assert "Content-Encoding '%s'" % coding in e["message"], e
        line = log_line(h)
        assert [t["class"] for t in line["tries"]] == ["bad_response"], line

    gz_ok = gzip.compress(OK_BODY)
    gz_err = gzip.compress(ERROR_BODY)
    gz_sse = gzip.compress(sse(SSE_EVENTS))
    check(tag + "every request asks for Accept-Encoding: identity; the client's is not sent",
          asks_for_identity)
    check(tag + "a 200 with Content-Encoding: identity is an answer", identity_accepted)
    check(tag + "a gzip 200 JSON answer: 502 upstream_bad_response naming gzip",
          refused_coding, answer(200, gz_ok, extra=b"Content-Encoding: gzip\r\n"), False, "gzip")
    check(tag + "a gzip event stream: 502 upstream_bad_response naming gzip",
          refused_coding, chunked(gz_sse, extra=b"Content-Encoding: gzip\r\n"), True, "gzip")
    check(tag + "a gzip 400: 502 naming gzip, its bytes never relayed",
          refused_coding, answer(400, gz_err, extra=b"Content-Encoding: gzip\r\n"), False,
          "gzip")
    check(tag + "Content-Encoding lines gzip and identity are one list: 502 naming both",
          refused_coding, answer(200, gz_ok, extra=b"Content-Encoding: gzip\r\n"
                                 b"Content-Encoding: identity\r\n"), False, "gzip, identity")
    check(tag + "the same on a 400: 502, its gzip bytes never relayed",
          refused_coding, answer(400, gz_err, extra=b"Content-Encoding: gzip\r\n"
                                 b"Content-Encoding: identity\r\n"), False, "gzip, identity")
    check(tag + "a br 200 (any coding but identity): 502 naming br",
          refused_coding, answer(200, b"\x0b\x02\x80{}\x03", extra=b"content-encoding: br\r\n"),
          False, "br")

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
        wait_for(lambda: small.events("reloaded"), 30, "the reload")
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

    # ---- Answers that are errors ----

    def drain():
        # A step a failed check left unused must not answer the next one.
        while not up.steps.empty():
            up.steps.get_nowait()

    def ok_error_falls_back(code, cls):
        # OpenRouter answers 200 with an error object when the provider failed
        # after accepting the request: a failure of the attempt, not an answer.
        drain()
        body = json.dumps({"error": {"code": code, "message": "Provider returned error",
                                     "metadata": {"provider_name": "X"}},
                           "user_id": "u"}).encode()
        up.steps.put(answer(200, body))
        up.steps.put(ok_with_length)
        st, h, j, raw = chat(gw.port, {"model": "r", "messages": HELLO})
        assert st == 200 and h["x-llmroute-model"] == "b", (st, h, raw)
        assert j["choices"][0]["message"]["content"] == "hi there", j
        line = log_line(h)
        assert [t["class"] for t in line["tries"]] == [cls, "ok"], line
        assert [t["status"] for t in line["tries"]] == [200, 200], line

    def ok_error_answered(err, status, code, quoted):
        drain()
        up.steps.put(answer(200, json.dumps({"error": err}).encode()))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == status, (st, raw)
        e = error_shape(j)
        assert e["code"] == code, e
        assert "model 's'" in e["message"] and quoted in e["message"], e
        assert e["type"] == ("rate_limit_error" if status == 429 else "upstream_error"), e
        line = log_line(h)
        assert line["status"] == status and line["error"] == code, line

    def ok_error_message_cut():
        # A long message is cut, between characters; quotes and control
        # characters stay inside the JSON string.
        drain()
        msg = "\"quoted\"\n" + "\u00e9" * 400
        up.steps.put(answer(200, json.dumps({"error": {"message": msg, "code": 502}}).encode()))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 502, (st, raw)
        e = error_shape(j)
        assert e["code"] == "upstream_server_error", e
        assert "\"quoted\"" in e["message"] and "\u00e9" * 50 in e["message"], e
        assert "\u00e9" * 300 not in e["message"] and "\ufffd" not in e["message"], e

    def answer_with_error_member():
        # An answer is never refused for an error member beside it.
        drain()
        body = json.loads(OK_BODY)
        body["error"] = {"message": "ignored"}
        up.steps.put(answer(200, json.dumps(body).encode()))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200 and j["choices"][0]["message"]["content"] == "hi there", (st, raw)
        up.steps.put(answer(200, json.dumps(dict(json.loads(OK_BODY), error=None)).encode()))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200, (st, raw)

    def status_outside_http(status):
        # A status HTTP does not have (600 to 999) is a protocol failure:
        # a route falls back, and with nothing left the client gets 502
        # upstream_protocol naming it, never that status or its body.
        drain()
        up.steps.put(answer(status, b"{}"))
        up.steps.put(ok_with_length)
        st, h, j, raw = chat(gw.port, {"model": "r", "messages": HELLO})
        assert st == 200 and h["x-llmroute-model"] == "b", (st, h, raw)
        assert [t["class"] for t in log_line(h)["tries"]] == ["protocol", "ok"]
        up.steps.put(answer(status, b"{}"))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 502, (st, raw)
        e = error_shape(j)
        assert e["code"] == "upstream_protocol", e
        assert "status %d" % status in e["message"], e
        line = log_line(h)
        assert line["status"] == 502 and line["error"] == "upstream_protocol", line

    def error_without_a_type():
        # An upstream error with no Content-Type is relayed with none when
        # its body is no JSON object (it was labelled application/json),
        # and as JSON when it is one.
        def bare(status, body):
            def step(c):
                c.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, len(body))
                          + body)
            return step
        drain()
        up.steps.put(bare(400, b"bad request, in plain words"))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 400 and raw == b"bad request, in plain words", (st, raw)
        assert "content-type" not in h, h
        up.steps.put(bare(400, ERROR_BODY))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 400 and raw == ERROR_BODY, (st, raw)
        assert h["content-type"] == "application/json", h

    def proxy_auth_refused():
        # A 407 is a proxy on the way wanting credentials the gateway lacks:
        # a route falls back (class auth), and with nothing left the client
        # gets a 502 of the gateway's, never the 407 and its challenge,
        # which would ask the client for proxy credentials.
        drain()
        step = answer(407, b"<html>proxy auth</html>", ctype=b"text/html",
                      extra=b'Proxy-Authenticate: Basic realm="corp"\r\n')
        up.steps.put(step)
        up.steps.put(ok_with_length)
        st, h, j, raw = chat(gw.port, {"model": "r", "messages": HELLO})
        assert st == 200 and h["x-llmroute-model"] == "b", (st, h, raw)
        assert [t["class"] for t in log_line(h)["tries"]] == ["auth", "ok"]
        up.steps.put(step)
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 502 and "proxy-authenticate" not in h, (st, h, raw)
        e = error_shape(j)
        assert e["code"] == "upstream_proxy_auth_failed" and e["type"] == "upstream_error", e
        assert "model 's'" in e["message"] and "407" in e["message"], e
        line = log_line(h)
        assert line["status"] == 502 and line["error"] == "upstream_proxy_auth_failed", line

    def allow_with_405():
        # A 405 must carry Allow (RFC 9110 section 15.5.6): relayed with it,
        # its lines one list. Other answers do not carry the upstream's.
        drain()
        up.steps.put(answer(405, ERROR_BODY, extra=b"Allow: GET\r\nAllow: HEAD\r\n"))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 405 and raw == ERROR_BODY, (st, raw)
        assert h.get("allow") == "GET, HEAD", h
        up.steps.put(answer(200, OK_BODY, extra=b"Allow: GET\r\n"))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200 and "allow" not in h, (st, h)

    check(tag + "an upstream error without a Content-Type: relayed with none unless JSON",
          error_without_a_type)
    check(tag + "an upstream's 405 is relayed with its Allow", allow_with_405)
    check(tag + "an upstream's 407: auth, falls back; else 502 upstream_proxy_auth_failed",
          proxy_auth_refused)
    check(tag + "an upstream status of 600: protocol, falls back, else 502 naming it",
          status_outside_http, 600)
    check(tag + "an upstream status of 999: the same", status_outside_http, 999)
    check(tag + "a 200 whose body is an error of code 429: rate limited, falls back",
          ok_error_falls_back, 429, "rate_limited_no_retry_after")
    check(tag + "a 200 whose body is an error of code 500: server_error, falls back",
          ok_error_falls_back, 500, "server_error")
    check(tag + "a 200 error, nothing left: 502 upstream_server_error quoting it",
          ok_error_answered, {"message": "Provider returned error", "code": 503}, 502,
          "upstream_server_error", "'Provider returned error'")
    check(tag + "a 200 error given as a string: 502 upstream_server_error",
          ok_error_answered, "upstream overloaded", 502, "upstream_server_error",
          "'upstream overloaded'")
    check(tag + "a 200 error of code 429, nothing left: 429 upstream_rate_limited",
          ok_error_answered, {"message": "Provider returned error: rate limited", "code": 429},
          429, "upstream_rate_limited", "'Provider returned error: rate limited'")
    check(tag + "a 200 error's long message is cut and escaped", ok_error_message_cut)
    check(tag + "a 200 answer with choices and an error member is relayed",
          answer_with_error_member)

    # ---- Chunk-size and trailer lines ----

    # libcurl takes a trailer line of 4 KiB at most ("Out of memory in
    # chunked-encoding" past it), and a chunk extension of any length.
    trailer_len = 3000 if env else 30000

    def long_lines_accepted(piece, lead):
        drain()
        up.steps.put(long_chunk_lines(30000, trailer_len, piece, lead))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200 and j["choices"][0]["message"]["content"] == "hi there", (st, raw[:300])

    def over_long_line_refused(piece):
        drain()
        up.steps.put(long_chunk_lines(40000, 0, piece))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 502 and error_shape(j)["code"] == "upstream_protocol", (st, raw[:300])

    for piece in (997, 4096, 1 << 20):
        check(tag + "a 30 KB chunk extension and a %d-byte trailer line in pieces of %d "
              "bytes: 200" % (trailer_len, piece), long_lines_accepted, piece, 0)
    check(tag + "the same lines across the end of the client's 16 KiB buffer: 200",
          long_lines_accepted, 1000, 16000)
    if not env:
        # In one piece, the line's end comes in the same read as the bytes
        # past 32 KiB: the line was taken whole (200) when nothing read
        # before had shown it over the cap.
        for piece in (4096, 1 << 20):
            check(tag + "a chunk-size line over 32 KiB in pieces of %d bytes: 502 "
                  "upstream_protocol" % piece, over_long_line_refused, piece)

    # ---- Context overflow in each server's words ----

    vllm = {"error": {"message": "This model's maximum context length is 4096 tokens. "
                      "However, you requested 5000 tokens (4000 in the messages, 1000 in the "
                      "completion). Please reduce the length of the messages or completion.",
                      "type": "BadRequestError", "param": None, "code": 400}}
    llamacpp = {"error": {"code": 400, "message": "request (4476 tokens) exceeds the available "
                          "context size (4096 tokens), try increasing it",
                          "type": "exceed_context_size_error", "n_prompt_tokens": 4476,
                          "n_ctx": 4096}}
    tgi = {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
           "4096. Given: 4000 `inputs` tokens and 1000 `max_new_tokens`",
           "error_type": "validation"}
    ollama = {"error": {"message": "the input length exceeds the context length",
                        "type": "api_error", "param": None, "code": None}}

    def context_falls_back(status, body):
        drain()
        up.steps.put(answer(status, json.dumps(body).encode()))
        up.steps.put(ok_with_length)
        st, h, j, raw = chat(gw.port, {"model": "r", "messages": HELLO})
        assert st == 200 and h["x-llmroute-model"] == "b", (st, h, raw)
        line = log_line(h)
        assert [t["class"] for t in line["tries"]] == ["context_length", "ok"], line

    check(tag + "vLLM's 400 'maximum context length': context_length, falls back",
          context_falls_back, 400, vllm)
    check(tag + "llama.cpp's 400 exceed_context_size_error: context_length, falls back",
          context_falls_back, 400, llamacpp)
    check(tag + "TGI's 422 validation error on tokens: context_length, falls back",
          context_falls_back, 422, tgi)
    check(tag + "Ollama's 400 'input length exceeds the context length': falls back",
          context_falls_back, 400, ollama)

    # ---- Retry hints ----

    def retried_after(extra, least):
        drain()
        up.steps.put(answer(429, ERROR_BODY, extra=extra))
        up.steps.put(ok_with_length)
        t = time.monotonic()
        st, h, j, raw = chat(gw.port, {"model": "rl", "messages": HELLO})
        took = time.monotonic() - t
        assert st == 200 and h["x-llmroute-model"] == "rl", (st, h, raw)
        assert h["x-llmroute-attempts"] == "2", h
        line = log_line(h)
        assert [t["class"] for t in line["tries"]] == ["rate_limited", "ok"], line
        assert took >= least, took

    check(tag + "a 429 with retry-after-ms: 300 is retried after it", retried_after,
          b"retry-after-ms: 300\r\n", 0.25)
    check(tag + "a 429 with Retry-After: 0.5 is retried after it", retried_after,
          b"Retry-After: 0.5\r\n", 0.45)
    # Retry-After: 5 alone is over max_retry_after_ms (1000): retry-after-ms wins.
    check(tag + "retry-after-ms is preferred to Retry-After", retried_after,
          b"Retry-After: 5\r\nretry-after-ms: 200\r\n", 0.15)

    # A hint longer than the gateway keeps is no hint: its kept start
    # ("300" and blanks) would read as a number the whole value is not.
    def long_hint_unreadable(extra):
        drain()
        up.steps.put(answer(429, ERROR_BODY, extra=extra))
        up.steps.put(ok_with_length)
        st, h, j, raw = chat(gw.port, {"model": "rl", "messages": HELLO})
        line = log_line(h)
        assert line["tries"][0]["class"] == "rate_limited_no_retry_after", line

    check(tag + "a retry-after-ms unreadable past its first 63 bytes is no hint",
          long_hint_unreadable, b"retry-after-ms: 300" + b" " * 70 + b"soon\r\n")
    check(tag + "a Retry-After unreadable past its first 63 bytes is no hint",
          long_hint_unreadable, b"Retry-After: 1" + b" " * 70 + b"soon\r\n")

    # ---- Headers ----

    drain()

    hints = (b"x-ratelimit-limit-requests: 500\r\nx-ratelimit-remaining-requests: 499\r\n"
             b"X-RateLimit-Reset-Tokens: 6m0s\r\nretry-after-ms: 1500\r\n"
             b"x-should-retry: false\r\nx-request-id: req_abc123\r\n"
             b"x-other: not relayed\r\nx-ratelimit-bad: a\x01b\r\n"
             b"x-ratelimit-long: " + b"9" * 300 + b"\r\n")

    def relayed(h):
        return {k: v for k, v in h.items()
                if k.startswith("x-ratelimit-") or k in ("retry-after-ms", "x-should-retry")}

    def hints_relayed():
        up.steps.put(answer(200, OK_BODY, extra=hints))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO},
                             headers={"x-request-id": "client-id-1"})
        assert st == 200, (st, raw)
        assert relayed(h) == {"x-ratelimit-limit-requests": "500",
                              "x-ratelimit-remaining-requests": "499",
                              "x-ratelimit-reset-tokens": "6m0s", "retry-after-ms": "1500",
                              "x-should-retry": "false"}, h
        assert "x-other" not in h, h
        assert h["x-request-id"] == "client-id-1", h
        assert h["x-llmroute-upstream-request-id"] == "req_abc123", h
        assert log_line(h)["upstream_request_id"] == "req_abc123"

    def hints_on_stream():
        up.steps.put(chunked(sse(SSE_EVENTS), extra=hints))
        st, h, raw = stream_post(gw.port, "/v1/chat/completions",
                                 {"model": "s", "messages": HELLO, "stream": True})
        assert st == 200, (st, raw)
        assert relayed(h)["x-ratelimit-remaining-requests"] == "499", h
        assert h["x-llmroute-upstream-request-id"] == "req_abc123", h
        assert log_line(h)["upstream_request_id"] == "req_abc123"

    def hints_of_answering_attempt():
        up.steps.put(answer(500, ERROR_BODY, extra=b"x-ratelimit-remaining-requests: 0\r\n"
                            b"x-ratelimit-limit-tokens: 1\r\nx-should-retry: true\r\n"
                            b"x-request-id: req_failed\r\n"))
        up.steps.put(answer(200, OK_BODY, extra=b"x-ratelimit-remaining-requests: 42\r\n"
                            b"x-request-id: req_ok\r\n"))
        st, h, j, raw = chat(gw.port, {"model": "r", "messages": HELLO})
        assert st == 200 and h["x-llmroute-model"] == "b", (st, h, raw)
        assert h["x-llmroute-attempts"] == "2", h
        assert relayed(h) == {"x-ratelimit-remaining-requests": "42"}, h
        assert h["x-llmroute-upstream-request-id"] == "req_ok", h
        assert log_line(h)["upstream_request_id"] == "req_ok"

    def hints_with_relayed_error():
        up.steps.put(answer(429, ERROR_BODY, extra=b"Retry-After: 2\r\n"
                            b"x-ratelimit-remaining-requests: 0\r\nx-should-retry: true\r\n"
                            b"x-request-id: req_limited\r\n"))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 429, (st, raw)
        assert relayed(h) == {"x-ratelimit-remaining-requests": "0",
                              "x-should-retry": "true"}, h
        assert h["retry-after"] == "2", h
        assert h["x-llmroute-upstream-request-id"] == "req_limited", h

    def hints_bounded():
        many = b"".join(b"x-ratelimit-n%02d: %d\r\n" % (i, i) for i in range(40))
        up.steps.put(answer(200, OK_BODY, extra=many + b"x-request-id: " + b"r" * 400 + b"\r\n"))
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200, (st, raw)
        got = relayed(h)
        assert len(got) == 16, got
        assert got == {"x-ratelimit-n%02d" % i: str(i) for i in range(16)}, got
        assert h["x-llmroute-upstream-request-id"] == "r" * 127, h

    def no_hints_no_header():
        up.steps.put(ok_with_length)
        st, h, j, raw = chat(gw.port, {"model": "s", "messages": HELLO})
        assert st == 200, (st, raw)
        assert not relayed(h) and "x-llmroute-upstream-request-id" not in h, h
        assert "upstream_request_id" not in log_line(h)

    check(tag + "x-ratelimit-*, retry-after-ms, x-should-retry relayed; upstream request id "
          "in x-llmroute-upstream-request-id and the log", hints_relayed)
    check(tag + "the same on a stream's head", hints_on_stream)
    check(tag + "after a fallback, only the answering attempt's hints and request id",
          hints_of_answering_attempt)
    check(tag + "at most 16 hints; a long request id cut to 127 bytes", hints_bounded)
    check(tag + "an answer without hints gets none, nor the request id header",
          no_hints_no_header)
    # Last: a 429's Retry-After holds the model back for its seconds.
    check(tag + "an upstream's 429 relayed with its hints", hints_with_relayed_error)


class TunnelProxy:
    """A proxy on 127.0.0.1 that answers each CONNECT with the next of
    self.answers (bytes), then holds the connection open and silent: a
    tunnel whose far end never answers the TLS handshake."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.answers = []
        self.lines = []
        self.held = []
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(10)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(4096)
                    if not d:
                        break
                    buf += d
                self.lines.append(buf.split(b"\r\n")[0].decode())
                c.sendall(self.answers.pop(0))
            except (OSError, IndexError):
                pass
            self.held.append(c)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def tunnel(gw_bin):
    # An https:// upstream through a proxy (https_proxy): libcurl asks the
    # proxy for a tunnel with CONNECT. The proxy's answer to it is not the
    # upstream's head: its "200 Connection established" was taken for one,
    # so the attempt's head_ms gave way to idle_ms and its try was logged
    # with the proxy's 200; a refused tunnel was a stream_cut.
    px = TunnelProxy()
    cfg = {"models": [{"name": "t", "backend": "openai",
                       "base_url": "https://127.0.0.1:9/v1",
                       "timeouts": {"connect_ms": 1500, "idle_ms": 200,
                                    "head_ms": 20000}}],
           "server": {"resilience": {"breaker": {"consecutive_failures": 0,
                                                 "failure_rate": 0}}}}
    env = {"https_proxy": "http://127.0.0.1:%d" % px.port, "HTTPS_PROXY": "",
           "no_proxy": "", "NO_PROXY": "", "all_proxy": "", "ALL_PROXY": ""}
    gw = Gateway(gw_bin, workdir(), cfg, env=env, name="gw-tunnel")

    def log_line(h):
        return wait_for(lambda: [l for l in gw.log_lines() if l.get("id") == h["x-request-id"]],
                        5, "the log line")[0]

    def refused_tunnel():
        px.answers.append(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                          b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n')
        st, h, j, raw = chat(gw.port, {"model": "t", "messages": HELLO})
        assert st == 502 and "proxy-authenticate" not in h, (st, h, raw)
        assert error_shape(j)["code"] == "upstream_proxy_auth_failed", j
        assert log_line(h)["tries"][0]["class"] == "auth", log_line(h)
        assert px.lines[-1] == "CONNECT 127.0.0.1:9 HTTP/1.1", px.lines
        px.answers.append(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        st, h, j, raw = chat(gw.port, {"model": "t", "messages": HELLO})
        assert st == 502 and error_shape(j)["code"] == "upstream_unreachable", (st, raw)
        line = log_line(h)
        assert line["tries"][0]["class"] == "connect_refused", line
        assert "502" in line["message"], line

    def open_tunnel_is_no_head():
        px.answers.append(b"HTTP/1.1 200 Connection established\r\n\r\n")
        t0 = time.monotonic()
        st, h, j, raw = chat(gw.port, {"model": "t", "messages": HELLO})
        took = time.monotonic() - t0
        line = log_line(h)
        assert st == 504 and line["tries"][0]["class"] == "connect_timeout", (st, line)
        assert line["tries"][0].get("status") != 200, line  # not the proxy's 200
        assert "idle_ms" not in line["message"] and took > 1.2, (took, line)

    check("[curl] a proxy refusing the tunnel (CONNECT): its 407 is auth, 502 "
          "upstream_proxy_auth_failed; another refusal is connect_refused", refused_tunnel)
    check("[curl] a proxy's 200 to CONNECT is not the upstream's head: a handshake that never "
          "ends is timed by connect_ms, not idle_ms", open_tunnel_is_no_head)
    gw.signal(signal.SIGTERM)
    gw.wait(15)
    px.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: test_upstream_wire.py LLMROUTE")
    run(sys.argv[1], {})
    run(sys.argv[1], {"LLMROUTE_UPSTREAM_CLIENT": "curl"})
    tunnel(sys.argv[1])
    finish()
