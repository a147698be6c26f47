"""test_gateway.py -- `llmroute serve` against the fake upstream, end to end.

    python3 test_gateway.py GROUP LLMROUTE FAKE_UPSTREAM

Groups (each one ctest entry with its own processes):
  proxy       non-stream, stream with chunks and delays (arriving incrementally,
              [DONE] last), upstream error statuses passed through with their
              bodies, usage into metrics, routes and candidate lists, headers,
              client disconnect aborting the upstream, backpressure on a slow client
              (from an upstream and from a long mock stream)
  forwarding  the upstream receives the client's bytes but for `model` and the
              extension members
  errors      every refusal: 400 malformed / field, 404 model / path, 405, 413,
              431, 401, 502; the gateway still serving after each
  lifecycle   SIGHUP reload (good and bad files), SIGTERM draining in-flight
              streams and exiting 0, SIGTERM or SIGINT while still loading
  headers     a model's `headers` (literal and from the environment) reach its
              upstream and no other, follow a reload, and bad ones are refused
  mock        the mock backend's answers: streamed text cut on whole characters,
              no empty piece; n choices a prompt, and the n it refuses
"""
import base64
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (HOST, Fake, Gateway, chat, check, closed_port, error_shape, finish,  # noqa
                    raw_exchange, read_to_close, request, status_of, wait_for, workdir)

KEY_ENV = "LLMROUTE_IT_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-test-key"
HELLO = [{"role": "user", "content": "hello"}]


def base_config(fake, extra_models=(), server=None):
    cfg = {
        "models": [
            {"name": "fake-a", "backend": "openai", "base_url": fake.base_url,
             "api_key_env": KEY_ENV, "upstream_model": "upstream-a",
             "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
            {"name": "fake-b", "backend": "vllm", "base_url": fake.base_url + "/",
             "upstream_model": "upstream-b",
             "cost_per_input_token": 1e-7, "cost_per_output_token": 2e-7},
            {"name": "dead", "backend": "openai",
             "base_url": "http://127.0.0.1:%d/v1" % closed_port()},
            {"name": "mocky", "backend": "mock",
             "mock": {"chunks": 3, "tokens": 7, "content": "one two three"}},
        ] + list(extra_models),
        "routes": [{"name": "auto", "strategy": "sequential", "models": ["fake-a", "fake-b"]}],
        "server": {"max_body_bytes": 65536, "max_header_bytes": 4096,
                   "stream_buffer_bytes": 65536, "shutdown_timeout_ms": 5000},
    }
    if server:
        cfg["server"].update(server)
    return cfg


def start(fake_bin, gw_bin, server=None, env=None):
    wd = workdir()
    fake = Fake(fake_bin, wd)
    e = {KEY_ENV: UPSTREAM_KEY}
    e.update(env or {})
    gw = Gateway(gw_bin, wd, base_config(fake, server=server), env=e)
    return wd, fake, gw


def still_serving(gw, headers=None):
    st, h, j, _ = chat(gw.port, {"model": "mocky", "messages": HELLO}, headers)
    assert st == 200 and j["system_fingerprint"] == "llmroute-mock", (st, j)


# ==== proxy ====

def proxy(gw_bin, fake_bin):
    wd, fake, gw = start(fake_bin, gw_bin)

    def non_stream():
        fake.scenario("ok")
        st, h, j, _ = chat(gw.port, {"model": "fake-a", "messages": HELLO})
        assert st == 200, (st, j)
        assert j["object"] == "chat.completion" and j["model"] == "upstream-a", j
        assert j["choices"][0]["message"]["content"] == "tok0 tok1 tok2", j
        assert h["x-llmroute-model"] == "fake-a" and h["x-llmroute-strategy"] == "direct", h
        assert h["x-request-id"].startswith("req-"), h
        assert h["content-type"].startswith("application/json"), h
        rec = fake.logged()[-1]
        assert rec["headers"].get("authorization") == "Bearer " + UPSTREAM_KEY, rec["headers"]
        assert rec["path"] == "/v1/chat/completions", rec
        # the key never reaches the log
        assert UPSTREAM_KEY not in open(gw.stderr).read()
    check("non-stream completion relayed with routing headers and the upstream key", non_stream)

    def request_id_echoed():
        st, h, _, _ = chat(gw.port, {"model": "mocky", "messages": HELLO},
                           {"x-request-id": "client-id-42"})
        assert st == 200 and h["x-request-id"] == "client-id-42", h
        # The longest the gateway takes (128 bytes), whole: in the answer of a
        # forwarded request, a stream's, and its log line, as on /v1/models.
        long_id = "trace-" + "0123456789abcdef" * 7 + "ab"
        assert len(long_id) == 120
        for stream in (False, True):
            st, h, _, _ = chat(gw.port, {"model": "fake-a", "messages": HELLO, "stream": stream},
                               {"x-request-id": long_id})
            assert st == 200 and h["x-request-id"] == long_id, (stream, h.get("x-request-id"))
            # The line is written once the answer has gone out: waited for.
            wait_for(lambda: any(l.get("id") == long_id and l.get("stream") is stream
                                 for l in gw.log_lines()), 10, "the line with the whole id")
        st, h, _ = request(gw.port, "GET", "/v1/models", headers={"x-request-id": long_id})
        assert st == 200 and h["x-request-id"] == long_id, h
    check("x-request-id from the client is echoed", request_id_echoed)

    def route_round_robin():
        fake.scenario("ok")
        seen = []
        for _ in range(4):
            st, h, j, _ = chat(gw.port, {"model": "auto", "messages": HELLO})
            assert st == 200, (st, j)
            assert h["x-llmroute-route"] == "auto" and h["x-llmroute-strategy"] == "sequential"
            seen.append((h["x-llmroute-model"], j["model"]))
        assert seen == [("fake-a", "upstream-a"), ("fake-b", "upstream-b")] * 2, seen
    check("a route is routed round-robin among its models (sequential)", route_round_robin)

    def candidate_list():
        st, h, j, _ = chat(gw.port, {"model": "auto", "models": ["mocky"], "messages": HELLO,
                                     "route": {"strategy": "sequential"}})
        assert st == 200 and h["x-llmroute-model"] == "mocky", (st, h, j)
        st, h, j, _ = chat(gw.port, {"models": ["fake-b"], "messages": HELLO})
        assert st == 200 and h["x-llmroute-model"] == "fake-b", (st, h)
    check("request-level models and route are honoured", candidate_list)

    def stream_incremental():
        fake.scenario("chunks=5;chunk_delay_ms=150")
        conn = socket.create_connection((HOST, gw.port), timeout=10)
        body = json.dumps({"model": "auto", "stream": True, "messages": HELLO,
                           "stream_options": {"include_usage": True}}).encode()
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        f = conn.makefile("rb")
        status = f.readline()
        assert b" 200 " in status, status
        headers = {}
        while True:
            l = f.readline().strip()
            if not l:
                break
            k, _, v = l.decode().partition(":")
            headers[k.lower()] = v.strip()
        assert headers["transfer-encoding"] == "chunked", headers
        assert headers["content-type"].startswith("text/event-stream"), headers
        assert headers.get("x-llmroute-route") == "auto", headers
        events = []  # (time, data)
        buf = b""
        while True:
            size = int(f.readline().strip(), 16)
            if size == 0:
                f.readline()
                break
            buf += f.read(size)
            f.readline()
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                events.append((time.monotonic(), ev.decode()))
        conn.close()
        datas = [d for _, d in events]
        assert datas[-1] == "data: [DONE]", datas[-3:]
        assert sum(1 for d in datas if d == "data: [DONE]") == 1
        content = [json.loads(d[6:]) for d in datas[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or ""
                       for c in content if c.get("choices"))
        assert text.replace(" ", "") == "tok0tok1tok2tok3tok4", text
        # 5 content chunks 150 ms apart: they must arrive spread out, not at once
        spread = events[-1][0] - events[0][0]
        assert spread > 0.6, "events arrived within %.3fs: buffered, not relayed" % spread
        # Ask for spread, not for every gap: on a loaded machine two chunks may be
        # read at once now and then; a gateway that buffers the stream has none.
        gaps = [b[0] - a[0] for a, b in zip(events, events[1:])]
        assert sum(1 for g in gaps if g > 0.08) >= 3, gaps
    check("stream relayed chunk by chunk as it arrives, [DONE] last", stream_incremental)

    def upstream_error_passthrough():
        fake.scenario("status=429;retry_after=2;message=slow%20down")
        st, h, body = request(fake.port, "POST", "/v1/chat/completions",
                              json.dumps({"model": "upstream-a", "messages": HELLO}))
        direct = json.loads(body)
        st, h, j, _ = chat(gw.port, {"model": "fake-a", "messages": HELLO})
        assert st == 429, st
        assert j == direct, (j, direct)
        assert h.get("retry-after") == "2" and h["x-llmroute-attempts"] == "1", h
        # Retry-After opened fake-a's breaker: until it passes, fail fast without an attempt
        n = len(fake.logged())
        st, h, j, _ = chat(gw.port, {"model": "fake-a", "messages": HELLO})
        assert st == 503 and error_shape(j)["code"] == "circuit_open", (st, j)
        assert int(h["retry-after"]) in (1, 2) and h["x-llmroute-attempts"] == "0", h
        assert len(fake.logged()) == n
        wait_for(lambda: gw.metrics()['llmroute_breaker_state{model="fake-a"}'] == 2, 4,
                 "fake-a's breaker to become half-open")
        fake.scenario("ok")  # the half-open probe succeeds: closed again
        st, h, j, _ = chat(gw.port, {"model": "fake-a", "messages": HELLO})
        assert st == 200 and gw.metrics()['llmroute_breaker_state{model="fake-a"}'] == 0, st
        fake.scenario("status=503")
        st, h, j, _ = chat(gw.port, {"model": "fake-a", "messages": HELLO, "stream": True})
        assert st == 503 and error_shape(j), (st, j)
        fake.scenario("status=400;code=context_length_exceeded")
        st, h, j, _ = chat(gw.port, {"model": "fake-a", "messages": HELLO})
        assert st == 400 and j["error"]["code"] == "context_length_exceeded", j
        fake.scenario("ok")
    check("upstream error statuses passed through with their bodies", upstream_error_passthrough)

    def usage_into_metrics():
        before = gw.metrics()
        k_out = 'llmroute_tokens_total{model="fake-b",direction="out"}'
        k_in = 'llmroute_tokens_total{model="fake-b",direction="in"}'
        k_cost = 'llmroute_cost_total{model="fake-b"}'
        fake.scenario("chunks=4;tokens=11")
        st, _, j, _ = chat(gw.port, {"model": "fake-b", "messages": HELLO})
        assert st == 200 and j["usage"]["completion_tokens"] == 11, j
        prompt = j["usage"]["prompt_tokens"]
        # a stream with include_usage: the final chunk's usage counts
        st, _, body = request(gw.port, "POST", "/v1/chat/completions", json.dumps(
            {"model": "fake-b", "messages": HELLO, "stream": True,
             "stream_options": {"include_usage": True}}), {"x-request-id": "usage-stream"})
        assert st == 200 and body.rstrip().endswith(b"data: [DONE]"), body[-100:]
        last = json.loads(body.decode().strip().split("\n\n")[-2][6:])
        assert last["usage"]["completion_tokens"] == 11, last
        prompt2 = last["usage"]["prompt_tokens"]
        # The stream's line and counts are written when it ends, which may be
        # after the client has its last byte.
        wait_for(lambda: any(l.get("id") == "usage-stream" for l in gw.log_lines()), 30,
                 "the stream's log line")
        after = gw.metrics()
        assert after[k_out] - before.get(k_out, 0) == 22, (before.get(k_out), after[k_out])
        assert after[k_in] - before.get(k_in, 0) == prompt + prompt2
        want = (prompt + prompt2) * 1e-7 + 22 * 2e-7
        assert abs(after[k_cost] - before.get(k_cost, 0) - want) < 1e-12, after[k_cost]
        assert after['llmroute_requests_total{route="",model="fake-b",status="200"}'] >= 2
        assert after["llmroute_gateway_overhead_seconds_count"] > 0
        assert after['llmroute_time_to_first_token_seconds_count{model="fake-b"}'] >= 1
        logs = [l for l in gw.log_lines() if l.get("id") == "usage-stream"]
        assert len(logs) == 1 and logs[0]["model"] == "fake-b" and logs[0]["stream"], logs
        assert logs[0]["tokens_out"] == 11 and logs[0]["status"] == 200, logs
        assert "hello" not in open(gw.stderr).read(), "prompt text in the log"
        # Both answers had usage; a stream without include_usage has none, and
        # is counted as unmetered instead of silently adding nothing to the cost.
        k_un = 'llmroute_unmetered_answers_total{model="fake-b"}'
        assert after[k_un] == before.get(k_un, 0), (before.get(k_un), after[k_un])
        st, _, body = request(gw.port, "POST", "/v1/chat/completions", json.dumps(
            {"model": "fake-b", "messages": HELLO, "stream": True}), {"x-request-id": "no-usage"})
        assert st == 200 and body.rstrip().endswith(b"data: [DONE]"), body[-100:]
        wait_for(lambda: any(l.get("id") == "no-usage" for l in gw.log_lines()), 30,
                 "the stream's log line")
        last = gw.metrics()
        assert last[k_un] == after[k_un] + 1, (after[k_un], last[k_un])
        assert last[k_out] == after[k_out] and last[k_cost] == after[k_cost], last
    check("usage read from body and final stream chunk into metrics, cost and log",
          usage_into_metrics)

    def other_endpoints():
        fake.scenario("ok")
        st, h, body = request(gw.port, "POST", "/v1/embeddings",
                              json.dumps({"model": "auto", "input": ["a", "b"]}))
        j = json.loads(body)
        assert st == 200 and len(j["data"]) == 2, (st, j)
        assert fake.logged()[-1]["path"] == "/v1/embeddings"
        st, h, body = request(gw.port, "POST", "/v1/completions",
                              json.dumps({"model": "fake-a", "prompt": "say"}))
        assert st == 200 and json.loads(body)["object"] == "text_completion", body
        assert fake.logged()[-1]["path"] == "/v1/completions"
        st, h, body = request(gw.port, "GET", "/v1/models")
        ids = [m["id"] for m in json.loads(body)["data"]]
        assert st == 200 and ids == ["fake-a", "fake-b", "dead", "mocky", "auto"], ids
        st, h, body = request(gw.port, "GET", "/health")
        assert st == 200 and json.loads(body)["status"] == "ok"
        st, h, body = request(gw.port, "POST", "/v1/route", json.dumps(
            {"queries": [{"query": "a", "input_tokens": 123.0}, {"query": "b", "input_tokens": 5}],
             "strategy": "sequential", "models": ["fake-a", "mocky"]}))
        j = json.loads(body)
        assert st == 200 and [a["model"] for a in j["assignments"]] == ["fake-a", "mocky"], j
        assert j["assignments"][0]["predicted_quality"] is None
    check("completions, embeddings, models, health and route endpoints", other_endpoints)

    def one_model():
        # GET /v1/models/{model}: the list's entry (OpenAI's models.retrieve).
        st, h, body = request(gw.port, "GET", "/v1/models/fake-b")
        assert st == 200, (st, body)
        assert json.loads(body) == {"id": "fake-b", "object": "model", "created": 0,
                                    "owned_by": "vllm"}, body
        st, h, body = request(gw.port, "GET", "/v1/models/auto")
        assert st == 200 and json.loads(body)["owned_by"] == "llmroute-route", (st, body)
        st, h, body = request(gw.port, "GET", "/v1/models/fak%65-a")  # percent-decoded
        assert st == 200 and json.loads(body)["id"] == "fake-a", (st, body)
        st, h, body = request(gw.port, "HEAD", "/v1/models/fake-a")
        assert st == 200 and body == b"", (st, body)
        for path in ("/v1/models/nope", "/v1/models/fake-a/x", "/v1/models/fake%2", "/v1/models/a%00b"):
            st, h, body = request(gw.port, "GET", path)
            e = json.loads(body)["error"]
            assert st == 404 and e["code"] == "model_not_found" and e["param"] == "model", (path, st, e)
            assert path[len("/v1/models/"):] in e["message"], e
        # The name is quoted decoded, its bytes escaped as names are in messages.
        for path, shown in (("/v1/models/%C3%A9", "\u00e9"), ("/v1/models/org%2Fname", "org/name"),
                            ("/v1/models/a%01b", "a\\x01b"), ("/v1/models/%FF", "\\xff"),
                            ("/v1/models/it%27s", "it\\'s")):
            st, h, body = request(gw.port, "GET", path)
            e = json.loads(body)["error"]
            assert st == 404 and e["code"] == "model_not_found" and e["param"] == "model", (path, st, e)
            assert e["message"] == ("The model '%s' does not exist or is not configured on this "
                                    "gateway" % shown), (path, e)
        st, h, body = request(gw.port, "POST", "/v1/models/fake-a", "{}")
        assert st == 405 and h.get("allow") == "GET, HEAD", (st, h)
    check("GET /v1/models/{model}: one entry, 404 model_not_found for another name", one_model)

    def long_route_name():
        # A route's name may be as long as a model's (256 bytes): one that
        # long is listed, served, and retrieved by name too, as sent or
        # percent-encoded.
        name = "route-" + "x" * 250
        g = Gateway(gw_bin, workdir(), {
            "models": [{"name": "m", "backend": "mock", "mock": {"content": "hi"}}],
            "routes": [{"name": name, "strategy": "sequential", "models": ["m"]}]})
        st, _, body = request(g.port, "GET", "/v1/models")
        assert st == 200 and name in [e["id"] for e in json.loads(body)["data"]], st
        for path in ("/v1/models/" + name, "/v1/models/%72oute-" + "x" * 250):
            st, _, body = request(g.port, "GET", path)
            assert st == 200, (st, body[:200])
            assert json.loads(body) == {"id": name, "object": "model", "created": 0,
                                        "owned_by": "llmroute-route"}, body[:200]
        st, _, body = request(g.port, "GET", "/v1/models/" + name + "y")
        assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found", st
    check("GET /v1/models/{route}: a route of the longest name is found", long_route_name)

    def mock_embeddings_count_inputs():
        # One vector per input: a string, each string of a list, one token array, each
        # token array of a list.
        for inp, n in (("a", 1), (["a", "b", "c"], 3), ([1, 2, 3], 1), ([[1, 2], [3]], 2)):
            st, _, body = request(gw.port, "POST", "/v1/embeddings",
                                  json.dumps({"model": "mocky", "input": inp}))
            j = json.loads(body)
            assert st == 200 and len(j["data"]) == n, (inp, st, j)
            assert [d["index"] for d in j["data"]] == list(range(n)), j
    check("the mock backend answers one embedding per input (a token array is one)",
          mock_embeddings_count_inputs)

    def mock_embeddings_format_and_dimensions():
        # OpenAI's encoding_format "base64" is the little-endian float32s in base64 (the
        # Node SDK asks for it by default and decodes whatever string it gets), and
        # dimensions sets the length; both as the float answer's numbers.
        def vectors(extra):
            st, _, body = request(gw.port, "POST", "/v1/embeddings",
                                  json.dumps(dict({"model": "mocky", "input": ["a", "b"]},
                                                  **extra)))
            assert st == 200, (extra, st, body[:300])
            return [d["embedding"] for d in json.loads(body)["data"]]
        plain = vectors({})
        assert [len(v) for v in plain] == [8, 8] and plain[0] != plain[1], plain
        assert vectors({"encoding_format": "float"}) == plain
        for dims in (1, 3, 8, 20):
            floats = vectors({"dimensions": dims})
            assert [len(v) for v in floats] == [dims, dims], (dims, floats)
            assert [v[:8] for v in floats] == [v[:dims] for v in plain], (dims, floats)
            packed = vectors({"dimensions": dims, "encoding_format": "base64"})
            decoded = [list(struct.unpack("<%df" % dims, base64.b64decode(s, validate=True)))
                       for s in packed]
            for got, want in zip(decoded, floats):
                assert all(abs(a - b) <= 5e-5 for a, b in zip(got, want)), (dims, got, want)
        for extra, param in (({"encoding_format": "hex"}, "encoding_format"),
                             ({"encoding_format": 1}, "encoding_format"),
                             ({"dimensions": 0}, "dimensions"),
                             ({"dimensions": "3"}, "dimensions"),
                             ({"dimensions": 2.5}, "dimensions"),
                             ({"dimensions": 3073}, "dimensions")):
            st, _, body = request(gw.port, "POST", "/v1/embeddings",
                                  json.dumps(dict({"model": "mocky", "input": "a"}, **extra)))
            assert st == 400, (extra, st, body[:300])
            e = error_shape(json.loads(body))
            assert e["param"] == param and e["code"] == "invalid_value", (extra, e)
    check("the mock backend's embeddings honour encoding_format base64 and dimensions",
          mock_embeddings_format_and_dimensions)

    def mock_stream():
        st, h, body = request(gw.port, "POST", "/v1/chat/completions", json.dumps(
            {"model": "mocky", "messages": HELLO, "stream": True,
             "stream_options": {"include_usage": True}}))
        events = [e for e in body.decode().split("\n\n") if e.strip()]
        assert st == 200 and events[-1] == "data: [DONE]", events
        chunks = [json.loads(e[6:]) for e in events[:-1]]
        assert all(c["system_fingerprint"] == "llmroute-mock" for c in chunks)
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                       if c["choices"])
        assert text == "one two three" and chunks[-1]["usage"]["completion_tokens"] == 7
    check("mock backend streams deterministically, labelled", mock_stream)

    def disconnect_aborts_upstream():
        fake.scenario("chunks=200;chunk_delay_ms=50")
        s = socket.create_connection((HOST, gw.port), timeout=10)
        body = json.dumps({"model": "fake-a", "stream": True, "messages": HELLO}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        assert b" 200 " in s.recv(4096)
        key = 'llmroute_in_flight{model="fake-a"}'
        assert gw.metrics()[key] == 1
        s.close()
        wait_for(lambda: gw.metrics()[key] == 0, 5, "the upstream transfer to be aborted")
        wait_for(lambda: any(l.get("status") == 499 and l.get("error") == "client_closed"
                             for l in gw.log_lines()), 5, "a 499 log line")
        fake.scenario("ok")
    check("client disconnect aborts the upstream transfer", disconnect_aborts_upstream)

    def backpressure():
        # ~60 MB of events as fast as the fake can write them; the client reads nothing
        # for a while: the gateway must hold the upstream, not buffer the stream.
        fake.scenario("chunks=400000")
        rss0 = gw.rss_kb()
        s = socket.create_connection((HOST, gw.port), timeout=20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        body = json.dumps({"model": "fake-a", "stream": True, "messages": HELLO}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        time.sleep(2.0)
        grown = gw.rss_kb() - rss0
        key = 'llmroute_in_flight{model="fake-a"}'
        assert gw.metrics()[key] == 1, "the stream finished while the client read nothing"
        assert grown < 30000, "RSS grew by %d kB while the client was not reading" % grown
        total = 0
        tail = b""
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            total += len(b)
            tail = (tail + b)[-64:]
            if tail.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"):
                break
        s.close()
        assert total > 40_000_000 and b"[DONE]" in tail, (total, tail)
        wait_for(lambda: gw.metrics()[key] == 0, 5, "the stream to end")
        fake.scenario("ok")
    check("a slow client gets backpressure, not unbounded buffering", backpressure)

    def mock_stream_backpressure():
        # Four clients stream 100,000 mock pieces and read nothing: the mock
        # holds its pieces as an upstream would (server.stream_buffer_bytes),
        # makes them as they go out (not all up front) and never holds the
        # loop: /health answers throughout, and answers while all four are
        # stalled. Then one client reads its stream whole, in order. The
        # checks are of liveness (every /health answered, each within the
        # request's 10 s timeout), not of latency, which a shared machine
        # under the sanitizers cannot bound.
        import threading
        content = "".join("w%05d " % i for i in range(30000))
        cfg = base_config(fake, extra_models=[
            {"name": "mock-long", "backend": "mock",
             "mock": {"chunks": 100000, "chunk_delay_ms": 0, "content": content}}])
        # Under AddressSanitizer every freed piece would wait in its
        # quarantine (256 MB by default) and count in the RSS; a small one
        # leaves the gateway's own memory to measure. Other builds ignore it.
        asan = os.environ.get("ASAN_OPTIONS", "")
        g = Gateway(gw_bin, wd, cfg, name="gw-mock",
                    env={"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=1"})
        key = 'llmroute_in_flight{model="mock-long"}'
        pings = {"ok": 0, "failed": []}
        stop = threading.Event()

        def ping():
            while not stop.is_set():
                try:
                    st, _, _ = request(g.port, "GET", "/health")
                    if st == 200:
                        pings["ok"] += 1
                    else:
                        pings["failed"].append("status %d" % st)
                except Exception as e:  # noqa: BLE001 -- any failure is reported
                    pings["failed"].append(repr(e))
                time.sleep(0.02)
        pinger = threading.Thread(target=ping)
        pinger.start()
        try:
            rss0 = g.rss_kb()
            body = json.dumps({"model": "mock-long", "stream": True,
                               "messages": HELLO}).encode()
            socks = []
            for _ in range(4):
                s = socket.create_connection((HOST, g.port), timeout=20)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
                socks.append(s)
            wait_for(lambda: g.metrics().get(key) == 4, 10, "four mock streams")
            time.sleep(1.5)
            grown = g.rss_kb() - rss0
            assert g.metrics()[key] == 4, "a stream finished while its client read nothing"
            assert grown < 20000, "RSS grew by %d kB for 4 clients not reading" % grown
            st, _, _ = request(g.port, "GET", "/health")
            assert st == 200, "/health while four clients stall: %d" % st
            data = b""
            while not data.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"):
                b = socks[0].recv(1 << 20)
                assert b, "the stream ended early: %r" % data[-200:]
                data += b
            got = "".join(json.loads(x) for x in re.findall(
                rb'"delta":\{"content":("(?:[^"\\]|\\.)*")\}', data))
            assert got == content, (len(got), len(content))
            for s in socks:
                s.close()
            wait_for(lambda: g.metrics()[key] == 0, 10, "the streams to end")
        finally:
            stop.set()
            pinger.join()
        assert not pings["failed"], "/health failed meanwhile: %s" % pings["failed"][:3]
        assert pings["ok"] > 0, "/health never answered meanwhile"
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("mock streams get backpressure and never hold the loop: 4 clients not reading "
          "100,000 pieces", mock_stream_backpressure)

    check("the gateway still serves", still_serving, gw)


# ==== forwarding ====

def forwarding(gw_bin, fake_bin):
    wd, fake, gw = start(fake_bin, gw_bin)
    fake.scenario("ok")

    def byte_exact():
        body = ('{ "seed": 9007199254740993,\n  "models": ["fake-b", "fake-a"],'
                '"temperature": 0.70, "model" : "auto", "messages": [{"role": "user", '
                '"content": "caf\\u00e9 \\"q\\" \u00e9 {\\"model\\": 1}"}],'
                ' "route": {"strategy": "sequential", "performance_requirement": 0.5},'
                ' "top_p": 1e-3, "logit_bias": {"50256": -100}, "x": [1.0, 2.50, -0]  }')
        st, h, data = request(gw.port, "POST", "/v1/chat/completions", body)
        assert st == 200, (st, data)
        model = h["x-llmroute-model"]
        up = {"fake-a": "upstream-a", "fake-b": "upstream-b"}[model]
        want = ('{ "seed": 9007199254740993,\n  '
                '"temperature": 0.70, "model" : "%s", "messages": [{"role": "user", '
                '"content": "caf\\u00e9 \\"q\\" \u00e9 {\\"model\\": 1}"}],'
                ' "top_p": 1e-3, "logit_bias": {"50256": -100}, "x": [1.0, 2.50, -0]  }') % up
        got = fake.logged()[-1]["body"]
        assert got == want, "\n got: %r\nwant: %r" % (got, want)
    check("upstream receives the client's bytes but for model and extension fields", byte_exact)

    def model_alone():
        body = '{"model":"fake-b","messages":[{"role":"user","content":"x"}],"n":1}'
        st, _, _ = request(gw.port, "POST", "/v1/chat/completions", body)
        assert st == 200
        assert fake.logged()[-1]["body"] == body.replace('"fake-b"', '"upstream-b"')
    check("a compact body is only changed in its model value", model_alone)

    def candidates_without_model():
        body = '{"models":["fake-b"],"messages":[{"role":"user","content":"x"}]}'
        st, _, data = request(gw.port, "POST", "/v1/chat/completions", body)
        assert st == 200, (st, data)
        got = fake.logged()[-1]["body"]
        assert got == '{"model":"upstream-b", "messages":[{"role":"user","content":"x"}]}', got
    check("a candidate list without model: the upstream is still told its model",
          candidates_without_model)

    def nul_in_content():
        # "\u0000" is valid JSON: a prompt holding it is forwarded as sent, not
        # refused as malformed.
        body = '{"model":"fake-b","messages":[{"role":"user","content":"a\\u0000b"}]}'
        st, _, data = request(gw.port, "POST", "/v1/chat/completions", body)
        assert st == 200, (st, data)
        assert fake.logged()[-1]["body"] == body.replace('"fake-b"', '"upstream-b"')
    check("a \\u0000 in a message is forwarded as sent", nul_in_content)

    def integer_past_int64():
        # A 64-bit unsigned seed (random.getrandbits(64)) is valid JSON: it is
        # forwarded as written, not refused as malformed.
        body = ('{"model":"fake-b","seed":18446744073709551615,"x":-99999999999999999999,'
                '"messages":[{"role":"user","content":"x"}]}')
        st, _, data = request(gw.port, "POST", "/v1/chat/completions", body)
        assert st == 200, (st, data)
        assert fake.logged()[-1]["body"] == body.replace('"fake-b"', '"upstream-b"')
    check("an integer past int64 is forwarded as written", integer_past_int64)

    def number_past_a_double():
        # A number past a double's range is valid JSON grammar that the
        # parser refuses: it was 400 invalid_json, "real number overflow
        # near '1e400'", naming no member. It is 400 invalid_value with
        # param its place, as /v1/route and /v1/feedback name one, on each
        # forwarded endpoint (a \u0000 elsewhere in the body or not), and
        # nothing is forwarded. A syntax error besides is still invalid_json.
        msgs = [{"role": "user", "content": "a\u0000b"}]
        for path, body, param, number in (
                ("/v1/chat/completions",
                 '{"model":"fake-b","messages":%s,"temperature":1e400}' % json.dumps(msgs),
                 "temperature", "1e400"),
                ("/v1/chat/completions",
                 '{"model":"fake-b","messages":[{"role":"user","content":[{"type":"text",'
                 '"text":"x","w":-2E+999}]}]}', "messages[0].content[0].w", "-2E+999"),
                ("/v1/completions", '{"model":"fake-b","prompt":"x","max_tokens":1e309}',
                 "max_tokens", "1e309"),
                ("/v1/embeddings", '{"model":"fake-b","input":[1, 1e400]}', "input[1]",
                 "1e400"),
                ("/v1/responses", '{"model":"fake-b","input":"x","top_p":1e400}', "top_p",
                 "1e400")):
            n = len(fake.logged())
            st, _, data = request(gw.port, "POST", path, body)
            e = error_shape(json.loads(data))
            assert st == 400 and e["code"] == "invalid_value" and e["param"] == param, \
                (path, body, st, e)
            assert e["message"] == ("%s: %s is out of range: a number's magnitude is at most "
                                    "about 1.8e308" % (param, number)), e
            assert len(fake.logged()) == n, "forwarded"
        st, _, data = request(gw.port, "POST", "/v1/chat/completions",
                              '{"model":"fake-b","messages":[],"temperature":1e400 x}')
        e = error_shape(json.loads(data))
        assert st == 400 and e["code"] == "invalid_json" and e["param"] is None, (st, e)
    check("a number past a double's range is 400 invalid_value naming its place, not "
          "forwarded", number_past_a_double)

    def nul_in_names():
        # ... but a name with one cannot be a configured name, and is not cut
        # short to one: 400 naming the field.
        for body, param in (
                ('{"model":"fake-b\\u0000x","messages":[]}', "model"),
                ('{"models":["fake-a","fake-b\\u0000"],"messages":[]}', "models"),
                ('{"model":"fake-b","route":{"strategy":"sequential\\u0000"},"messages":[]}',
                 "route.strategy")):
            n = len(fake.logged())
            st, _, data = request(gw.port, "POST", "/v1/chat/completions", body)
            assert st == 400, (st, data)
            e = error_shape(json.loads(data))
            assert e["param"] == param and "NUL" in e["message"], e
            assert len(fake.logged()) == n, "forwarded"
    check("a name holding \\u0000 is refused, naming the field", nul_in_names)

    def raw_nul_refused():
        # A raw NUL byte is no JSON, where "\\u0000" is: jansson read past
        # one after a number or a literal, and the body went upstream with
        # it. Refused as malformed, at its place, on each endpoint.
        for path, body, column in (
                ("/v1/chat/completions",
                 '{"model":"fake-b","max_tokens":5\0,"messages":[]}', 33),
                ("/v1/chat/completions",
                 '{"model":"fake-b","stream":false\0,"messages":[]}', 33),
                ("/v1/route", '{"queries":[{"query":"a","input_tokens":1\0}],'
                              '"strategy":"sequential","models":["fake-a","mocky"]}', 42)):
            n = len(fake.logged())
            st, _, data = request(gw.port, "POST", path, body)
            assert st == 400, (path, st, data)
            e = error_shape(json.loads(data))
            assert e["code"] == "invalid_json", e
            assert "a NUL byte at line 1, column %d " % column in e["message"], e
            assert len(fake.logged()) == n, "forwarded"
    check("a raw NUL byte after a number or a literal is refused as malformed JSON",
          raw_nul_refused)

    def long_model_name_whole():
        # A model name may run to 256 bytes, and hold any character: the
        # answer's message and the log line's tries name it whole, and the
        # line stays JSON in UTF-8 (a cut at 64 bytes split the e-acute).
        name = "m" * 63 + "\u00e9 \"quoted\" " + "z" * 150
        cfg = base_config(fake, extra_models=[
            {"name": name, "backend": "openai",
             "base_url": "http://127.0.0.1:%d/v1" % closed_port()}])
        g = Gateway(gw_bin, wd, cfg, name="gw-long-name")
        try:
            st, h, j, raw = chat(g.port, {"model": name, "messages": HELLO})
            assert st == 502, (st, raw)
            assert "model '%s' could not be reached" % name in error_shape(j)["message"], j

            def tried():
                with open(g.stderr, "rb") as f:
                    return [l for l in f.read().split(b"\n") if b'"tries"' in l]
            # The line is written once the answer has gone out: waited for.
            lines = wait_for(tried, 10, "the request's log line")
            line = json.loads(lines[-1].decode("utf-8"))  # strict: no stray bytes
            assert [t["model"] for t in line["tries"]] == [name], line["tries"]
            assert line["model"] == name, line
        finally:
            g.signal(signal.SIGTERM)
            assert g.wait(15) == 0
    check("a model name of 230 bytes is named whole in the answer and the log's tries",
          long_model_name_whole)


# ==== errors ====

def errors(gw_bin, fake_bin):
    keys = {"LLMROUTE_IT_GATEWAY_KEYS": "gk-one, gk-two"}
    # idle_timeout_ms is also how long a head may take: the bare-LF checks
    # below wait a fraction of it for their answer.
    wd, fake, gw = start(fake_bin, gw_bin, server={"api_keys_env": "LLMROUTE_IT_GATEWAY_KEYS",
                                                   "idle_timeout_ms": 30000}, env=keys)
    auth = {"Authorization": "Bearer gk-two"}
    port = gw.port

    def err(status, body, param=None, code=None, path="/v1/chat/completions", method="POST",
            headers=auth):
        st, h, data = request(port, method, path, body, headers)
        try:
            j = json.loads(data)
        except ValueError:
            raise AssertionError("not JSON: %r" % data)
        assert st == status, (st, status, j)
        e = error_shape(j)
        if param is not None:
            assert e["param"] == param, e
        if code is not None:
            assert e["code"] == code, e
        assert h.get("x-request-id"), h
        still_serving(gw, auth)
        return e

    check("400 malformed JSON",
          lambda: err(400, '{"model": "fake-a", "messages": [', code="invalid_json"))
    check("400 body not an object", lambda: err(400, '[1, 2]'))

    def byte_order_mark():
        # A leading UTF-8 BOM was "'[' or '{' expected near '\ufeff'": an
        # invisible character. Named, on the proxied endpoints and the
        # gateway's own; nothing forwarded.
        seen = len(fake.logged())
        for path, body in (("/v1/chat/completions", {"model": "fake-a", "messages": [
                               {"role": "user", "content": "hi"}]}),
                           ("/v1/embeddings", {"model": "fake-a", "input": "hi"}),
                           ("/v1/route", {"queries": [{"query": "a"}], "strategy": "sequential",
                                          "models": ["fake-a"]})):
            raw = json.dumps(body).encode()
            e = err(400, b"\xef\xbb\xbf" + raw, code="invalid_json", path=path)
            assert "byte order mark" in e["message"] and "EF BB BF" in e["message"], e
            st, _, _ = request(port, "POST", path, raw, auth)  # the same JSON without it
            assert st == 200, (path, st)
        assert len(fake.logged()) == seen + 2, fake.logged()[seen:]
    check("400 naming a byte order mark before the JSON", byte_order_mark)
    check("400 duplicate keys refused",
          lambda: err(400, '{"model": "fake-a", "model": "dead", "messages": []}'))
    check("400 empty body", lambda: err(400, ''))
    check("400 model missing", lambda: err(400, '{"messages": []}', param="model"))
    check("400 model not a string", lambda: err(400, '{"model": 3, "messages": []}',
                                                param="model"))
    check("400 messages missing", lambda: err(400, '{"model": "fake-a"}', param="messages"))
    check("400 messages not an array",
          lambda: err(400, '{"model": "fake-a", "messages": "hi"}', param="messages"))
    check("400 message role not a string",
          lambda: err(400, '{"model": "fake-a", "messages": [{"role": 1}]}',
                      param="messages[0].role"))
    check("400 stream not a boolean",
          lambda: err(400, '{"model": "fake-a", "messages": [], "stream": "yes"}',
                      param="stream"))
    check("400 models not an array of names",
          lambda: err(400, '{"models": "fake-a", "messages": []}', param="models",
                      code="invalid_type"))
    check("400 empty candidate list (the right type: invalid_value), chat and completions",
          lambda: [err(400, body, param="models", code="invalid_value", path=path)
                   for path, body in (("/v1/chat/completions",
                                       '{"model": "fake-a", "models": [], "messages": []}'),
                                      ("/v1/completions",
                                       '{"model": "auto", "models": [], "prompt": "hi"}'))])
    check("400 route.strategy unknown",
          lambda: err(400, '{"model": "auto", "messages": [], "route": {"strategy": "nope"}}',
                      param="route.strategy"))
    def strategy_unknown_beside_a_model():
        e = err(400, '{"model": "fake-a", "messages": [{"role": "user", "content": "x"}],'
                ' "route": {"strategy": "bogus"}}', param="route.strategy", code="invalid_value")
        assert e["message"].startswith("route.strategy: unknown strategy 'bogus'"), e
    check("400 route.strategy unknown beside a model named directly (not ignored)",
          strategy_unknown_beside_a_model)
    check("400 empty candidate list for /v1/route (the right type: invalid_value)",
          lambda: err(400, '{"queries": [{"query": "q"}], "models": []}', param="models",
                      code="invalid_value", path="/v1/route"))
    check("400 empty candidate list of a /v1/route query",
          lambda: err(400, '{"queries": [{"query": "q", "models": []}]}',
                      param="queries[0].models", code="invalid_value", path="/v1/route"))
    check("400 a negative budget for /v1/route",
          lambda: err(400, '{"queries": [{"query": "q"}], "batch": true, "budget": -1}',
                      param="budget", code="invalid_value", path="/v1/route"))
    check("400 alpha without a batch for /v1/route (it would be ignored)",
          lambda: err(400, '{"queries": [{"query": "q"}], "alpha": 0.9}', param="alpha",
                      path="/v1/route"))
    check("400 alpha with \"batch\": false for /v1/route",
          lambda: err(400, '{"queries": [{"query": "q"}], "batch": false, "alpha": 0.9}',
                      param="alpha", path="/v1/route"))
    check("400 input_tokens over the cap for /v1/route",
          lambda: err(400, '{"queries": [{"query": "q", "input_tokens": 1000000001}], '
                           '"strategy": "sequential", "models": ["fake-a"]}',
                      param="queries[0].input_tokens", code="invalid_value",
                      path="/v1/route"))
    check("400 negative input_tokens for /v1/route",
          lambda: err(400, '{"queries": [{"query": "q", "input_tokens": -1}], '
                           '"strategy": "sequential", "models": ["fake-a"]}',
                      param="queries[0].input_tokens", code="invalid_value",
                      path="/v1/route"))
    def route_input_tokens_not_whole():
        for bad, code in (("2.5", "invalid_value"), ('"5"', "invalid_type")):
            e = err(400, '{"queries": [{"query": "q"}, {"query": "r", "input_tokens": %s}], '
                         '"strategy": "sequential", "models": ["fake-a"]}' % bad,
                    param="queries[1].input_tokens", code=code, path="/v1/route")
            assert e["message"] == "queries[1].input_tokens: expected a non-negative integer", e
    check("400 input_tokens of 2.5 or \"5\" for /v1/route, in the words of an import",
          route_input_tokens_not_whole)

    def route_integers_past_64_bits():
        # Valid JSON: an integer past 64 bits is a number over the cap, named
        # by its member as 1e20 is, not a malformed body.
        e = err(400, '{"queries": [{"query": "q", "input_tokens": 100000000000000000000}], '
                     '"strategy": "sequential", "models": ["fake-a"]}',
                param="queries[0].input_tokens", code="invalid_value", path="/v1/route")
        assert "over the cap of 1000000000" in e["message"], e
        # A member /v1/route does not read is ignored, whatever number it holds.
        st, _, body = request(port, "POST", "/v1/route",
                              '{"queries": [{"query": "q"}], "strategy": "sequential", '
                              '"models": ["fake-a"], "seed": 18446744073709551616}', auth)
        assert st == 200 and json.loads(body)["assignments"][0]["model"] == "fake-a", (st, body)
    check("/v1/route reads an integer past 64 bits as a number: over the cap where it is "
          "checked, ignored where it is not", route_integers_past_64_bits)

    def route_nul_said_plainly():
        # No text /v1/route reads may hold a NUL: the refusal says so in the
        # words of an import, not in the JSON parser's (its flag's name).
        for body, where in (('{"queries": [{"query": "a\\u0000b"}]}', "in the request body"),
                            ('{"queries": [{"query": "q"}], "x\\u0000y": 1}', "in a key")):
            e = err(400, body, code="invalid_json", path="/v1/route")
            assert e["message"].startswith("a NUL character (\\u0000) is not allowed " + where), e
            assert "JSON_ALLOW_NUL" not in e["message"] and "line 1, column" in e["message"], e
    check("400 a NUL in a /v1/route body is named as a NUL character",
          route_nul_said_plainly)
    check("400 embeddings input missing",
          lambda: err(400, '{"model": "fake-a"}', param="input", path="/v1/embeddings"))
    check("404 unknown model", lambda: err(404, '{"model": "gpt-9", "messages": []}',
                                           param="model", code="model_not_found"))
    check("404 unknown model among candidates",
          lambda: err(404, '{"models": ["fake-a", "gpt-9"], "messages": []}',
                      code="model_not_found"))
    def route_unknown_candidate_names_its_list():
        e = err(404, '{"queries": [{"query": "q"}, {"query": "r", "models": ["fake-a", '
                '"gpt-\\u0007"]}]}', param="queries[1].models", code="model_not_found",
                path="/v1/route")
        assert e["message"] == "query 1: unknown model 'gpt-\\x07'", e
        e = err(404, '{"queries": [{"query": "q"}], "models": ["gpt-9"]}', param="models",
                code="model_not_found", path="/v1/route")
        assert e["message"] == "query 0: unknown model 'gpt-9'", e
    check("404 /v1/route: an unknown candidate names the list that holds it as param",
          route_unknown_candidate_names_its_list)

    def route_among_candidates_said_to_be_a_route():
        e = err(404, '{"models": ["fake-a", "auto"], "messages": [{"role": "user", '
                '"content": "x"}]}', param="models", code="model_not_found")
        assert e["message"].startswith("'auto' is a route, not a model: "), e
        assert 'name it as \"model\"' in e["message"], e
        e = err(404, '{"models": ["fake-a", "gpt-9"], "messages": []}', param="models",
                code="model_not_found")
        assert e["message"] == "unknown model 'gpt-9'", e
        e = err(404, '{"queries": [{"query": "q", "models": ["auto"]}]}',
                param="queries[0].models", code="model_not_found", path="/v1/route")
        assert e["message"].startswith("query 0: 'auto' is a route, not a model: "), e
    check("404 a route's name among candidate models is said to be a route (chat, /v1/route)",
          route_among_candidates_said_to_be_a_route)
    check("404 unknown path", lambda: err(404, None, path="/v1/nothing", method="GET"))

    def not_utf8_quoted():
        # The message quotes the path; the body must still be UTF-8 JSON.
        raw = raw_exchange(port, b"GET /v1/\xff\xfe%d HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: close\r\n\r\n" % 1)
        assert status_of(raw) == 404, raw[:200]
        e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1].decode("utf-8")))
        assert "/v1/\ufffd\ufffd1" in e["message"], e
        # A long name cut to fit the message is cut between characters.
        e = err(404, json.dumps({"model": "a" + "\u00e9" * 400, "messages": []},
                                ensure_ascii=False), param="model")
        assert e["message"].startswith("The model 'a\u00e9\u00e9"), e
    check("404 messages quoting bytes that are not UTF-8 stay UTF-8 JSON", not_utf8_quoted)
    check("405 wrong method", lambda: err(405, None, method="GET"))
    check("405 wrong method on /v1/models", lambda: err(405, "{}", path="/v1/models"))

    def head_is_get_without_a_body():
        # Raw bytes: a body after a HEAD answer would show up here (a client
        # library would take it for the next response).
        for path in ("/health", "/metrics"):
            raw = raw_exchange(port, b"HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close"
                               b"\r\n\r\n" % path.encode())
            head, _, rest = raw.partition(b"\r\n\r\n")
            assert status_of(raw) == 200, raw[:300]
            assert rest == b"", (path, rest[:200])
            st, h, body = request(port, "GET", path)
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            assert st == 200 and length and int(length.group(1)) > 0, (path, head)
            ctype = re.search(rb"(?i)\r\ncontent-type: *([^\r]*)", head).group(1).decode()
            assert ctype == h["content-type"], (ctype, h)
        # On a keep-alive connection the next response follows at once.
        raw = raw_exchange(port, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert raw.count(b"HTTP/1.1 200") == 2 and raw.rstrip().endswith(b"}"), raw
        e = err(405, None, path="/health", method="DELETE")
        st, h, _ = request(port, "DELETE", "/health")
        assert st == 405 and h["allow"] == "GET, HEAD", h
        st, h, _ = request(port, "GET", "/v1/chat/completions", None, auth)
        assert st == 405 and h["allow"] == "POST", h
    check("HEAD /health and /metrics: GET's head, no body; 405 allows GET, HEAD",
          head_is_get_without_a_body)

    def too_large():
        big = b'{"model": "fake-a", "messages": [], "pad": "' + b"x" * 70000 + b'"}'
        raw = raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer gk-one\r\nContent-Length: %d\r\n\r\n"
                           % len(big) + big)
        assert status_of(raw) == 413, raw[:200]
        # the message names the cap and the key that sets it
        cap_named = "over server.max_body_bytes (65536 bytes)"
        e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
        assert cap_named in e["message"], e
        # announced with Expect: 100-continue, refused before the body is sent
        raw = raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Expect: 100-continue\r\nContent-Length: 10000000\r\n\r\n")
        assert status_of(raw) == 413, raw[:200]
        assert cap_named.encode() in raw, raw[:300]
        # chunked bodies are capped as they arrive (a request with a key:
        # one without is refused before its body)
        chunk = b"x" * 40000
        raw = raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer gk-one\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n" +
                           (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2 + b"0\r\n\r\n")
        assert status_of(raw) == 413, raw[:200]
        assert cap_named.encode() in raw, raw[:300]
        still_serving(gw, auth)
    check("413 body over server.max_body_bytes, named in its message", too_large)

    def continue_only_after_checks():
        # Expect: 100-continue is answered 100 only for a request the gateway will read: an
        # unknown path, a wrong method or a missing key is refused at once, with no 100.
        def ask(path, key, method=b"POST"):
            head = (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" +
                    (b"Authorization: Bearer " + key + b"\r\n" if key else b"") +
                    b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n")
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(head)
            got = s.recv(65536)
            return s, got
        for path, key, method, status in ((b"/v1/nothing", b"gk-one", b"POST", 404),
                                          (b"/v1/chat/completions", None, b"POST", 401),
                                          (b"/v1/chat/completions", b"bad", b"POST", 401),
                                          (b"/v1/models", b"gk-one", b"POST", 405)):
            s, got = ask(path, key, method)
            s.close()
            assert status_of(got) == status and b"100 Continue" not in got, (path, got[:200])
            assert b"\r\nx-request-id: " in got, got[:300]
        s, got = ask(b"/v1/chat/completions", b"gk-one")
        assert got == b"HTTP/1.1 100 Continue\r\n\r\n", got
        s.sendall(b'{"x": 1}  ')
        rest = s.recv(65536)
        s.close()
        assert status_of(rest) == 400, rest[:200]  # read and answered: the body is not JSON
        still_serving(gw, auth)
    check("100 Continue only after the path, method and key checks pass",
          continue_only_after_checks)

    def refused_before_the_body():
        # Every request, not only one sent with Expect: 100-continue, is checked
        # for its path, method and key once its head is in: a refused one is
        # answered at once, its body unread, and the connection closes (the
        # body's bytes would otherwise be read as the next request). A client
        # with no key cannot make the gateway hold a body, nor a connection
        # for as long as a body may take.
        def head_only(path, key, method=b"POST", framing=b"Content-Length: 60000\r\n"):
            head = (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" +
                    (b"Authorization: Bearer " + key + b"\r\n" if key else b"") +
                    framing + b"\r\n")
            s = socket.create_connection((HOST, port), timeout=2)
            try:
                s.sendall(head)
                got = b""
                while True:
                    try:
                        b = s.recv(65536)
                    except socket.timeout:
                        raise AssertionError("no answer before the body: %r" % ((path, got),))
                    if not b:
                        return got
                    got += b
            finally:
                s.close()
        for path, key, method, status in ((b"/v1/nothing", b"gk-one", b"POST", 404),
                                          (b"/v1/chat/completions", None, b"POST", 401),
                                          (b"/v1/chat/completions", b"bad", b"POST", 401),
                                          (b"/v1/route", b"gk-on", b"POST", 401),
                                          # a HEAD takes no body, whatever its key
                                          (b"/v1/models", None, b"HEAD", 400),
                                          (b"/v1/models", b"gk-one", b"POST", 405),
                                          (b"/health", None, b"POST", 405),
                                          (b"/metrics", None, b"PUT", 405)):
            for framing in (b"Content-Length: 60000\r\n", b"Transfer-Encoding: chunked\r\n"):
                got = head_only(path, key, method, framing)
                assert status_of(got) == status, (path, method, framing, got[:300])
                assert b"\r\nConnection: close\r\n" in got, got[:300]
                assert b"\r\nx-request-id: " in got, got[:300]
                if method != b"HEAD":
                    error_shape(json.loads(got.split(b"\r\n\r\n", 1)[1]))
        # A keep-alive client whose refused request carried a small body gets
        # the refusal alone: the body and what follows it are not read as
        # requests.
        body = b'{"model": "mocky", "messages": [{"role": "user", "content": "x"}]}'
        raw = raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer wrong\r\nContent-Length: %d\r\n\r\n"
                           % len(body) + body + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 401 and raw.count(b"HTTP/1.1 ") == 1, raw
        assert b"\r\nConnection: close\r\n" in raw, raw
        # /health and /metrics stay open to all, and a GET or HEAD with no
        # body (or Content-Length: 0) keeps its connection; so does a refused
        # request with no body.
        for path in (b"/health", b"/metrics"):
            for method in (b"GET", b"HEAD"):
                raw = raw_exchange(port, method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 0\r\n\r\n"
                                   b"GET /health HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n")
                assert raw.count(b"HTTP/1.1 200 ") == 2, (path, method, raw[:600])
        raw = raw_exchange(port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(raw) == 401 and raw.count(b"HTTP/1.1 200 ") == 1, raw[:600]
        still_serving(gw, auth)
    check("400, 401, 404 and 405 before the body of every request, connection closed",
          refused_before_the_body)

    def get_with_a_body_refused():
        # A GET or HEAD request that announces a body is refused on its head
        # on every endpoint, /health and /metrics (which need no key)
        # included: 400 body_not_allowed at once, no 100 Continue, the body
        # never read, the connection closed. A client with no key could
        # otherwise make the gateway read megabytes into memory per request.
        def head_only(data):
            s = socket.create_connection((HOST, port), timeout=2)
            try:
                s.sendall(data)
                got = b""
                while True:
                    try:
                        b = s.recv(65536)
                    except socket.timeout:
                        raise AssertionError("no answer before the body: %r" % ((data, got),))
                    if not b:
                        return got
                    got += b
            finally:
                s.close()
        for path, key in ((b"/health", None), (b"/metrics", None), (b"/v1/models", b"gk-one"),
                          (b"/v1/models/fake-a", b"gk-one"), (b"/v1/models", None)):
            for method in (b"GET", b"HEAD"):
                for framing in (b"Content-Length: 60000\r\n",
                                b"Content-Length: 60000\r\nExpect: 100-continue\r\n",
                                b"Transfer-Encoding: chunked\r\n",
                                b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n"):
                    got = head_only(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" +
                                    (b"Authorization: Bearer " + key + b"\r\n" if key else b"")
                                    + framing + b"\r\n")
                    what = (path, method, framing, got[:400])
                    assert status_of(got) == 400 and got.count(b"HTTP/1.1 ") == 1, what
                    assert b"100 Continue" not in got, what
                    assert b"\r\nConnection: close\r\n" in got, what
                    assert b"\r\nx-request-id: " in got, what
                    if method == b"GET":
                        e = error_shape(json.loads(got.split(b"\r\n\r\n", 1)[1]))
                        assert e["code"] == "body_not_allowed", e
                        assert "GET" in e["message"], e
        # The body sent along is not read as requests either.
        raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 37"
                           b"\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 400 and raw.count(b"HTTP/1.1 ") == 1, raw[:400]
        wait_for(lambda: any(l.get("error") == "body_not_allowed" and l.get("path") == "/health"
                             for l in gw.log_lines()), 5, "the refusal's log line")
        still_serving(gw, auth)
    check("400 body_not_allowed on the head for a GET or HEAD with a body, connection closed",
          get_with_a_body_refused)

    def lingering_is_bounded():
        # After a refusal the server drains what the client still sends for
        # a moment (2 s) so that the client reads the answer; a client that
        # goes on sending must not keep the connection for longer.
        for head in (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 10000000\r\n\r\n",
                     b"POST /v1/nothing HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 60000\r\n\r\n"):
            s = socket.create_connection((HOST, port), timeout=2)
            try:
                s.sendall(head)
                got = b""
                while True:  # the answer, then the server's end of sending
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
                assert status_of(got) in (404, 413), got[:200]
                # The server still reads (and drops) what comes: the
                # connection is gone once a byte sent meets a reset.
                t0 = time.monotonic()
                closed = False
                while time.monotonic() - t0 < 8 and not closed:
                    try:
                        s.sendall(b"x")
                        time.sleep(0.3)
                    except (BrokenPipeError, ConnectionResetError):
                        closed = True
                took = time.monotonic() - t0
                assert closed and took < 4, (head[:30], closed, took)
            finally:
                s.close()
    check("a client that keeps sending after a refusal is closed within the linger time",
          lingering_is_bounded)

    def headers_too_large():
        raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 8000 +
                           b"\r\n\r\n")
        assert status_of(raw) == 431, raw[:200]
        # The message names the cap and the key that sets it, as a 413's does.
        e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
        assert e["message"] == ("request header block too large: over "
                                "server.max_header_bytes (4096 bytes)"), e
        raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n" +
                           b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n")
        assert status_of(raw) == 431, raw[:200]
        e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
        assert e["message"] == "too many header fields (over 100)", e
        still_serving(gw, auth)
    check("431 header block over server.max_header_bytes", headers_too_large)

    def uri_too_long():
        # A request line longer than the whole head's limit is its target's
        # fault: 414, not the header block's 431.
        raw = raw_exchange(port, b"GET /health?" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 414, raw[:200]
        body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        error_shape(body)
        assert body["error"]["code"] == "uri_too_long", body
        assert body["error"]["message"] == ("request line too long: its target alone takes it "
                                            "over server.max_header_bytes (4096 bytes)"), body
        still_serving(gw, auth)
    check("414 for a request line over server.max_header_bytes", uri_too_long)

    def absolute_form():
        # RFC 9112 3.2.2: a server accepts the absolute-form of the target.
        for target in (b"http://x/health", b"HTTP://127.0.0.1:9/health?probe=1",
                       b"https://x/health"):
            raw = raw_exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n")
            assert status_of(raw) == 200, (target, raw[:200])
            assert b'"status"' in raw.split(b"\r\n\r\n", 1)[1], (target, raw)
        raw = raw_exchange(port, b"GET http://x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(raw) == 404, raw[:200]  # the path "/", which is no endpoint
        raw = raw_exchange(port, b"GET http:///health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 400 and b"has no host" in raw, raw[:300]
        still_serving(gw, auth)
    check("the absolute-form of a request target is served", absolute_form)

    def options_asterisk():
        # RFC 9112 3.2.4: "OPTIONS *" asks about the server as a whole. It
        # was 400 "must be an absolute path". 200 with the methods the
        # gateway serves somewhere in Allow and Content-Length: 0 (RFC 9110
        # 9.3.7), with no key (it tells nothing a 405 does not), keep-alive.
        raw = raw_exchange(port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"OPTIONS * HTTP/1.0\r\n\r\n")
        first, _, second = raw.partition(b"\r\n\r\n")
        first += b"\r\n"
        assert status_of(first) == 200, raw[:300]
        assert b"\r\nAllow: GET, HEAD, POST, DELETE, OPTIONS\r\n" in first, first
        assert b"\r\nContent-Length: 0\r\n" in first, first
        assert b"Connection: close" not in first, first
        assert status_of(second) == 200 and b"Connection: close" in second, raw  # 1.0 closes
        # OPTIONS in the absolute form with an empty path and no query is
        # the same question (RFC 9112 3.2.4: a proxy forwards it as "*");
        # it was served as OPTIONS /, a 404. With a path or a query it is
        # not: "/" stays "/".
        for target in (b"http://x", b"HTTP://127.0.0.1:9"):
            raw = raw_exchange(port, b"OPTIONS " + target + b" HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n")
            assert status_of(raw) == 200, (target, raw[:300])
            assert b"\r\nAllow: GET, HEAD, POST, DELETE, OPTIONS\r\n" in raw, raw
        for target in (b"http://x/", b"http://x?y"):
            raw = raw_exchange(port, b"OPTIONS " + target + b" HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n")
            assert status_of(raw) == 404 and b"OPTIONS /" in raw, (target, raw[:300])
        # Only OPTIONS takes the asterisk-form.
        for method in (b"GET", b"POST", b"DELETE"):
            raw = raw_exchange(port, method + b" * HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(raw) == 400 and b"OPTIONS alone" in raw, (method, raw[:300])
        still_serving(gw, auth)
    check("OPTIONS * (the asterisk-form) is answered 200 with the server's methods in Allow",
          options_asterisk)

    def every_answer_dated():
        # RFC 9110 section 6.6.1: an origin server with a clock sends Date in
        # every 2xx, 3xx and 4xx response; the gateway sent none. Its own
        # answers, a handler's, the server's refusals and a stream's head.
        import email.utils
        fixdate = re.compile(rb"(?i)\r\ndate: ((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                             rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                             rb"\d\d:\d\d:\d\d GMT)\r\n")
        stream = json.dumps({"model": "mocky", "messages": HELLO, "stream": True}).encode()
        for what, data in (
                ("200", b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                ("401", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                ("404", b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n"
                        b"Authorization: Bearer gk-one\r\nConnection: close\r\n\r\n"),
                ("400 of the server", b"GET /health HTTP/1.1\r\n\r\n"),
                ("stream", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer gk-one\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(stream) + stream)):
            raw = raw_exchange(port, data)
            head = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
            m = fixdate.search(head)
            assert m and head.lower().count(b"\r\ndate:") == 1, (what, head)
            sent = email.utils.parsedate_to_datetime(m.group(1).decode()).timestamp()
            assert abs(sent - time.time()) < 10, (what, m.group(1))
        still_serving(gw, auth)
    check("every answer carries a Date header (RFC 9110 section 6.6.1)", every_answer_dated)

    def broken_http():
        # Each with the message naming its fault (so none is refused for
        # another, such as a missing Host).
        for bad, why in (
                (b"NOT HTTP\r\n\r\n", b"malformed request line"),
                (b"GET /health HTTP/1.10\r\nHost: x\r\n\r\n", b"malformed HTTP version"),
                (b"GET /health http/1.1\r\nHost: x\r\n\r\n", b"malformed HTTP version"),
                # the messages quote what was sent, so a client sees its fault
                (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                 b"malformed header line 'Bad Header' (no colon after a name)"),
                (b"GET /health HTTP/1.1\r\nHost: x\r\nX Foo: 1\r\n\r\n",
                 b"malformed header name 'X Foo' (a token, the colon right after it)"),
                (b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                 b"malformed Content-Length '-1' (digits alone)"),
                (b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                 b"Content-Length: 2\r\n\r\n",
                 b"conflicting Content-Length headers: '1' and '2'"),
                (b"POST /v1/route HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                 b"unsupported Transfer-Encoding 'gzip' (only chunked)"),
                (b"POST /v1/route HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer gk-one\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", b"chunk"),
                # a chunk longer than its size (one counted in characters, not
                # bytes) was "malformed chunked body"
                (b"POST /v1/route HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer gk-one\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n",
                 b"chunk data not followed by CRLF: the chunk is longer than the 2 bytes its "
                 b"size line said (a size counts bytes, in hex)"),
                # a NUL must not end the head early and hide Content-Length
                (b"POST /v1/route HTTP/1.1\r\nHost: x\r\n\x00X: y\r\nContent-Length: 24\r\n\r\n"
                 b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"")):
            raw = raw_exchange(port, bad)
            assert status_of(raw) == 400, (bad, raw[:200])
            assert raw.count(b"\r\nContent-Length: ") == 1, (bad, raw)  # nothing after it served
            assert why in raw.split(b"\r\n\r\n", 1)[1], (bad, raw)
        still_serving(gw, auth)
    check("400 for broken HTTP, connection closed", broken_http)

    def http_versions():
        # RFC 9110 6.2: a later HTTP/1.x is served as 1.1; another major
        # version is 505, in the OpenAI error shape.
        raw = raw_exchange(port, b"GET /health HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
        for v in (b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"):
            raw = raw_exchange(port, b"GET /health " + v + b"\r\nHost: x\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 505 HTTP Version Not Supported"), (v, raw[:200])
            body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
            error_shape(body)
            assert body["error"]["code"] == "http_version_not_supported", body
            assert "unsupported HTTP version" in body["error"]["message"], body
        # HTTP/2's connection preface (a client with prior knowledge) is
        # told its version is not served: it was 400 "the request target
        # must be an absolute path", for the "*" read before the version.
        raw = raw_exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 505 HTTP Version Not Supported"), raw[:300]
        body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["message"] == ("unsupported HTTP version HTTP/2.0 (HTTP/1.0 and "
                                            "HTTP/1.1 are served)"), body
        still_serving(gw, auth)
    check("a later HTTP/1.x is served as 1.1, another major version is 505", http_versions)

    def transfer_codings():
        # RFC 9112 6.1: chunked last after a coding the server does not
        # decode is 501; chunked not last leaves the length unknown, 400.
        for te, status in ((b"gzip, chunked", 501), (b"deflate,chunked", 501),
                           (b"chunked, gzip", 400), (b"chunked, chunked", 400),
                           (b"gzip", 400)):
            raw = raw_exchange(port, b"POST /v1/route HTTP/1.1\r\nHost: x\r\n"
                               b"Transfer-Encoding: " + te + b"\r\n\r\n")
            assert status_of(raw) == status, (te, raw[:200])
            assert b"Connection: close" in raw.split(b"\r\n\r\n", 1)[0], (te, raw[:200])
            e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
            assert "Transfer-Encoding '%s'" % te.decode() in e["message"], (te, e)
        still_serving(gw, auth)
    check("Transfer-Encoding: a coding before chunked is 501, chunked not last 400",
          transfer_codings)

    def content_codings():
        # RFC 9110 section 15.5.16: a body under a content coding the server
        # does not decode is 415, with Accept-Encoding naming what it takes.
        # A gzip body was read as JSON and answered "malformed JSON".
        import gzip
        plain = json.dumps({"queries": [{"query": "a"}], "strategy": "sequential",
                            "models": ["fake-a", "mocky"]}).encode()
        packed = gzip.compress(plain)

        def post(codings, body, key=b"Authorization: Bearer gk-one\r\n", extra=b""):
            head = b"POST /v1/route HTTP/1.1\r\nHost: x\r\n" + key + extra
            for c in codings:
                head += b"Content-Encoding: " + c + b"\r\n"
            return raw_exchange(port, head + b"Content-Type: application/json\r\n"
                                b"Content-Length: %d\r\n\r\n" % len(body) + body)
        for codings, named in (([b"gzip"], "gzip"), ([b"GZIP"], "GZIP"),
                               ([b"identity, br"], "br"), ([b"identity", b"deflate"], "deflate"),
                               ([b"x-custom ,identity"], "x-custom")):
            raw = post(codings, packed)
            head, body = raw.split(b"\r\n\r\n", 1)
            assert status_of(raw) == 415, (codings, raw[:300])
            assert b"\r\nAccept-Encoding: identity\r\n" in head, (codings, head)
            assert b"Connection: close" in head, (codings, head)  # its body was not read
            e = error_shape(json.loads(body))
            assert e["code"] == "unsupported_content_encoding", (codings, e)
            assert "Content-Encoding '%s'" % named in e["message"], (codings, e)
        # A key is asked first: without one, 401 whatever the coding.
        assert status_of(post([b"gzip"], packed, key=b"")) == 401
        # Expect: 100-continue is not met: the body is not invited.
        raw = post([b"gzip"], packed, extra=b"Expect: 100-continue\r\n")
        assert status_of(raw) == 415 and b"100 Continue" not in raw, raw[:300]
        # identity, alone or listed twice, is the body as it is.
        for codings in ([b"identity"], [b"Identity", b" identity ,"]):
            raw = post(codings, plain, extra=b"Connection: close\r\n")
            assert status_of(raw) == 200, (codings, raw[:300])
            j = json.loads(raw.split(b"\r\n\r\n", 1)[1])
            assert j["assignments"][0]["model"] in ("fake-a", "mocky"), j
        # With no body there is nothing to decode.
        raw = post([b"gzip"], b"", extra=b"Connection: close\r\n")
        assert status_of(raw) == 400, raw[:300]
        assert error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))["code"] != \
            "unsupported_content_encoding", raw
        still_serving(gw, auth)
    check("a body under a Content-Encoding other than identity is 415, unread",
          content_codings)

    def host_header():
        # RFC 9112 section 3.2: HTTP/1.1 needs exactly one Host, an authority.
        for bad, why in ((b"GET /health HTTP/1.1\r\n\r\n", b"missing Host header"),
                         (b"GET /health HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
                          b"repeated Host header"),
                         (b"GET /health HTTP/1.1\r\nHost: user@x\r\n\r\n",
                          b"malformed Host header"),
                         (b"GET /health HTTP/1.1\r\nHost: x/y\r\n\r\n",
                          b"malformed Host header 'x/y'"),
                         (b"GET /health HTTP/1.1\r\nHost: x:80a\r\n\r\n",
                          b"malformed Host header"),
                         (b"GET /health HTTP/1.1\r\nHost: [::1\r\n\r\n",
                          b"malformed Host header")):
            raw = raw_exchange(port, bad)
            assert status_of(raw) == 400, (bad, raw[:200])
            assert why in raw.split(b"\r\n\r\n", 1)[1], (bad, raw)
        for good in (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n",
                     b"GET /health HTTP/1.1\r\nHost: [::1]:8080\r\n",
                     b"GET /health HTTP/1.1\r\nHost: gw.example-1.internal\r\n",
                     b"GET /health HTTP/1.1\r\nHost:\r\n",  # empty: no authority
                     b"GET /health HTTP/1.0\r\n"):  # 1.0 needs none
            raw = raw_exchange(port, good + b"Connection: close\r\n\r\n")
            assert status_of(raw) == 200, (good, raw[:200])
    check("400 for an HTTP/1.1 request without one valid Host", host_header)

    def strict_content_length():
        # RFC 9110 section 8.6: Content-Length is 1*DIGIT; the blanks around a
        # value (SP, HTAB) are no part of it. No sign, and no other control
        # character before the digits: behind a front proxy that reads such a
        # value differently a lenient parse would smuggle a request.
        def send(value, more=b""):
            return raw_exchange(port, b"POST /v1/route HTTP/1.1\r\nHost: x\r\n"
                                b"Authorization: Bearer gk-one\r\n"
                                b"Content-Length:" + value + b"\r\n\r\n{}" + more, timeout=2)
        ctl = "a control character in the value of header Content-Length"
        for bad, message in ((b" \x0b+2", ctl), (b" \x0b2", ctl), (b" \r2", ctl),
                             (b" \x0c2", ctl), (b" 2\x0b", ctl),
                             (b" \x00", "a NUL byte in the request head"),
                             (b" +2", None), (b" -0", None), (b" 2 2", None), (b" 0x2", None),
                             (b" 2,2", None), (b"", None), (b" 99999999999999999999999", 413)):
            raw = send(bad, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            status = 413 if message == 413 else 400
            assert status_of(raw) == status and raw.count(b"HTTP/1.1 ") == 1, (bad, raw[:400])
            assert b"\r\nConnection: close\r\n" in raw, (bad, raw[:400])
            e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
            if status == 400:
                quoted = "malformed Content-Length '%s' (digits alone)" % bad.decode().strip()
                assert e["message"] == (message or quoted), (bad, e)
        for good in (b"2", b" 2", b"\t2 \t", b" 002"):
            raw = send(good)
            e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
            # read and answered: /v1/route refuses {} for its missing queries
            assert status_of(raw) == 400 and e["param"] == "queries", (good, raw[:400])
        still_serving(gw, auth)
    check("Content-Length is digits alone, blanks around them: 400 for a sign or a control "
          "character", strict_content_length)

    def control_characters_in_values():
        # RFC 9110 section 5.5: a field value holds no control character but
        # HTAB; a lone CR or any other is refused with 400 naming the field,
        # and the connection closes.
        for bad in (b"a\rb", b"a\x01b", b"\x0bab", b"a\x1bb", b"a\x7fb", b"ab\x0c"):
            raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Odd: " + bad +
                               b"\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)
            assert status_of(raw) == 400 and raw.count(b"HTTP/1.1 ") == 1, (bad, raw[:400])
            assert b"\r\nConnection: close\r\n" in raw, (bad, raw[:400])
            e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
            assert e["message"] == "a control character in the value of header X-Odd", (bad, e)
        for good in (b"a\tb", b"caf\xc3\xa9", b"\xff", b"a b"):
            raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Odd: " + good +
                               b"\r\nConnection: close\r\n\r\n", timeout=2)
            assert status_of(raw) == 200, (good, raw[:400])
        # Nor in the request target.
        raw = raw_exchange(port, b"GET /hea\x01lth HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)
        assert status_of(raw) == 400 and b"\r\nConnection: close\r\n" in raw, raw[:400]
        still_serving(gw, auth)
    check("400 for a control character but HTAB in a header value, naming the header",
          control_characters_in_values)

    def http10_transfer_encoding():
        # RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message is
        # faulty framing, whatever else the message says: 400, and the
        # connection closes, even when the client asked to keep it.
        for framing in (b"Transfer-Encoding: chunked\r\n",
                        b"Transfer-Encoding: chunked\r\nContent-Length: 7\r\n"):
            raw = raw_exchange(port, b"POST /v1/route HTTP/1.0\r\nHost: x\r\n"
                               b"Authorization: Bearer gk-one\r\nConnection: keep-alive\r\n" +
                               framing + b"\r\n2\r\n{}\r\n0\r\n\r\n"
                               b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                               timeout=2)
            assert status_of(raw) == 400 and raw.count(b"HTTP/1.1 ") == 1, raw[:400]
            assert b"\r\nConnection: close\r\n" in raw, raw[:400]
            e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
            assert "Transfer-Encoding" in e["message"], e
        still_serving(gw, auth)
    check("400 and close for Transfer-Encoding in an HTTP/1.0 request",
          http10_transfer_encoding)

    def chunk_sizes():
        # RFC 9112: chunk-size is 1*HEXDIG, then at most chunk extensions
        # after ';'. No "0x", sign or blank before the digits, no blank after
        # them without an extension. A size too large for any cap, however
        # many digits, is 413, as such a Content-Length is (it was 400
        # "malformed" from 2^60 on).
        body = json.dumps({"model": "fake-a", "messages": [{"role": "user", "content": "hi"}]})
        body = body.encode()

        def send(size_line):
            return raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                b"Authorization: Bearer gk-one\r\nTransfer-Encoding: chunked\r\n"
                                b"Connection: close\r\n\r\n" + size_line + b"\r\n" + body +
                                b"\r\n0\r\n\r\n")
        n = len(body)
        for good in (b"%x" % n, b"%X" % n, b"000%x" % n, b"%x;name=value" % n, b"%x \t;x" % n):
            raw = send(good)
            assert status_of(raw) == 200, (good, raw[:300])
        for bad in (b"0x%x" % n, b"0X%x" % n, b" %x" % n, b"\t%x" % n, b"+%x" % n, b"-%x" % n,
                    b"%x " % n, b"%xg" % n, b";x", b"", b"f" * 40 + b"g"):
            raw = send(bad)
            assert status_of(raw) == 400, (bad, raw[:300])
            assert b"malformed chunk size" in raw, (bad, raw[:300])
        # Past the size line's 1 KiB cap the digits still tell a size too
        # large (413); a line long for its leading zeros or its extensions
        # is 400 naming the cap.
        for big in (b"1" + b"0" * 15 + b"%x" % n, b"7fffffffffffffff", b"f" * 40 + b";x=1",
                    b"10000000", b"f" * 2000, b"1" + b"0" * 1100 + b";x",
                    b"0" * 1010 + b"1" + b"0" * 20):
            raw = send(big)
            assert status_of(raw) == 413, (big[:40], raw[:300])
            assert b"request body too large" in raw, (big[:40], raw[:300])
        for long_line in (b"0" * 2000 + b"%x" % n, b"%x;x=" % n + b"y" * 1100):
            raw = send(long_line)
            assert status_of(raw) == 400, (long_line[:40], raw[:300])
            assert b"chunk-size line over 1024 bytes" in raw, (long_line[:40], raw[:300])
        still_serving(gw, auth)
    check("chunk sizes: hex digits and extensions only, 400 for anything else", chunk_sizes)

    def chunk_extensions_and_trailers():
        # RFC 9112 section 7.1.1: a chunk extension is ";" name ["=" value],
        # a token or a quoted string, blanks around ";" and "=" allowed; a
        # trailer line is a field line as in the head. Anything else, a
        # bare LF, a lone CR, a NUL or another control byte among it, is 400
        # and the connection closes: such a line could end elsewhere for a
        # proxy in front, which would then read a request smuggled in it.
        body = json.dumps({"model": "fake-a", "messages": [{"role": "user", "content": "hi"}]})
        body = body.encode()
        n = len(body)

        def send(size_line, trailers=b""):
            return raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                b"Authorization: Bearer gk-one\r\nTransfer-Encoding: chunked\r\n"
                                b"Connection: close\r\n\r\n" + size_line + b"\r\n" + body +
                                b"\r\n0\r\n" + trailers + b"\r\n", timeout=3)
        for good in (b"%x;name=value" % n, b"%x ; a = b ;c" % n, b"%x;a=\"q \\\" ;s\"" % n,
                     b"%x;a;b=\"\"" % n, b"%x\t;\tx=y" % n):
            raw = send(good)
            assert status_of(raw) == 200, (good, raw[:300])
        for bad in (b"%x;a\nb" % n, b"%x;\x00\x01\x7f" % n, b"%x;\r" % n, b"%x;a=\"b" % n,
                    b"%x;a b" % n, b"%x;=v" % n, b"%x;a=" % n, b"%x;a=b c" % n,
                    b"%x;a=\"\x01\"" % n, b"%x;a@b" % n, b"%x;a=b;" % n):
            raw = send(bad)
            assert status_of(raw) == 400 and raw.count(b"HTTP/1.1 ") == 1, (bad, raw[:300])
            assert b"\r\nConnection: close\r\n" in raw, (bad, raw[:300])
        for good in (b"X-Trailer: ok\r\n", b"X: a\tb\r\nY:\r\nZ:  z  \r\n"):
            raw = send(b"%x" % n, good)
            assert status_of(raw) == 200, (good, raw[:300])
        for bad in (b"X: a\rb\r\n", b"no colon\x00\r\n", b"no colon\r\n", b"X : y\r\n",
                    b"X\x01: y\r\n", b": y\r\n", b"X: a\x7fb\r\n", b"X: a\x00b\r\n",
                    b"X: y\r\n folded\r\n", b"X: y\n"):
            raw = send(b"%x" % n, bad)
            assert status_of(raw) == 400 and raw.count(b"HTTP/1.1 ") == 1, (bad, raw[:300])
            assert b"\r\nConnection: close\r\n" in raw, (bad, raw[:300])
        # A request pipelined after a trailer line ending in a bare LF is not
        # swallowed as trailer lines (the body then served as if whole):
        # the bare LF is refused, nothing else is answered.
        raw = raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer gk-one\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"%x\r\n%s\r\n0\r\nX: y\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                           % (n, body), timeout=3)
        assert status_of(raw) == 400 and raw.count(b"HTTP/1.1 ") == 1, raw[:400]
        assert b"bare LF in a trailer line" in raw, raw[:400]
        # Trailer lines together are bounded as a head is (max_header_bytes).
        raw = send(b"%x" % n, b"X-Pad: " + b"p" * 1000 + b"\r\n")
        assert status_of(raw) == 200, raw[:300]
        raw = send(b"%x" % n, (b"X-Pad: " + b"p" * 1000 + b"\r\n") * 40)
        assert status_of(raw) == 431 and (b"request trailer section too large: over "
                                          b"server.max_header_bytes (4096 bytes)") in raw, raw
        # A bare LF in a chunk-size or trailer line is answered at once, not
        # when the line cap or the idle timeout (30 s here) is reached.
        for rest in (b"3c;a\n", b"3c\n", b"0\r\nX: y\n"):
            t0 = time.monotonic()
            raw = raw_exchange(port, b"POST /v1/route HTTP/1.1\r\nHost: x\r\n"
                               b"Authorization: Bearer gk-one\r\nTransfer-Encoding: chunked\r\n"
                               b"\r\n" + rest, timeout=3)
            took = time.monotonic() - t0
            assert status_of(raw) == 400 and took < 2, (rest, took, raw[:300])
            assert b"bare LF" in raw, (rest, raw[:300])
        still_serving(gw, auth)
    check("chunk extensions and trailer lines parsed strictly: 400 and close otherwise",
          chunk_extensions_and_trailers)

    def every_connection_expect_and_authorization_field():
        # RFC 9110 section 7.6.1: every Connection field is part of one list;
        # "close" in any of them closes the connection after the answer.
        for fields in (b"Connection: keep-alive\r\nConnection: close\r\n",
                       b"Connection: foo\r\nConnection: bar, close\r\n"):
            raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
                               b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
            assert raw.count(b"HTTP/1.1 200 ") == 1, (fields, raw[:600])
            assert b"\r\nConnection: close\r\n" in raw, (fields, raw[:600])
        # And "keep-alive" in any of them keeps an HTTP/1.0 one.
        raw = raw_exchange(port, b"GET /health HTTP/1.0\r\nConnection: foo\r\n"
                           b"Connection: keep-alive\r\n\r\n"
                           b"GET /health HTTP/1.0\r\n\r\n", timeout=3)
        assert raw.count(b"HTTP/1.1 200 ") == 2, raw[:600]
        # RFC 9110 section 10.1.1: every Expect field, each a list; an
        # expectation other than 100-continue is 417.
        for fields in (b"Expect: 100-continue\r\nExpect: foo\r\n",
                       b"Expect: 100-continue, foo\r\n", b"Expect: foo\r\n",
                       b"Expect: 100-continue=1\r\n"):
            raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields +
                               b"\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
            assert status_of(raw) == 417 and raw.count(b"HTTP/1.1 ") == 1, (fields, raw[:400])
            e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
            assert e["code"] == "expectation_failed", e
        body = json.dumps({"model": "fake-a", "messages": [{"role": "user", "content": "hi"}]})
        s = socket.create_connection((HOST, port), timeout=3)
        try:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer gk-one\r\nExpect: 100-Continue\r\n"
                      b"Expect: 100-continue\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            got = s.recv(65536)
            assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got
            s.sendall(body.encode())
            got += read_to_close(s, 3)
        finally:
            s.close()
        assert b"HTTP/1.1 200 " in got, got[:400]
        # Authorization takes one credential: two fields are refused, not
        # one of them picked.
        for fields in (b"Authorization: Bearer gk-one\r\nAuthorization: Bearer gk-two\r\n",
                       b"Authorization: Bearer gk-one\r\nAuthorization: Bearer wrong\r\n"):
            raw = raw_exchange(port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + fields +
                               b"\r\n", timeout=3)
            assert status_of(raw) == 400, (fields, raw[:400])
            assert b"repeated Authorization" in raw, raw[:400]
            assert b"\r\nConnection: close\r\n" in raw, raw[:400]
        still_serving(gw, auth)
    check("every Connection and Expect field counts; two Authorization fields are refused",
          every_connection_expect_and_authorization_field)

    def refusals_logged_and_counted():
        # The HTTP server's own refusals are answers like the others: an
        # x-request-id (the client's when its headers were read), a log line
        # with the status and why, and a count in llmroute_requests_total.
        def count(m, status):
            return m.get('llmroute_requests_total{route="",model="",status="%d"}' % status, 0)
        cases = (
            (413, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-request-id: it-413\r\n"
                  b"Content-Length: 10000000\r\n\r\n", "it-413", "/v1/chat/completions"),
            (400, b"POST /v1/route HTTP/1.1\r\nHost: x\r\nx-request-id: it-400\r\n"
                  b"Content-Length: -1\r\n\r\n", "it-400", "/v1/route"),
            (431, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 8000 + b"\r\n\r\n",
             None, ""))
        for status, data, rid, path in cases:
            before = gw.metrics()
            raw = raw_exchange(port, data)
            assert status_of(raw) == status, raw[:200]
            m = re.search(rb"(?i)\r\nx-request-id: *([^\r]+)\r\n", raw.split(b"\r\n\r\n")[0])
            assert m and (rid is None or m.group(1).decode() == rid), raw[:300]
            rid = m.group(1).decode()
            lines = [l for l in gw.log_lines() if l.get("id") == rid]
            assert len(lines) == 1, (rid, lines)
            assert lines[0]["status"] == status and lines[0]["path"] == path, lines
            assert lines[0].get("error"), lines
            assert count(gw.metrics(), status) == count(before, status) + 1, status
    check("the server's own refusals (400, 413, 431) carry x-request-id, are logged and counted",
          refusals_logged_and_counted)

    def api_refusals_name_their_code():
        # The gateway's own answers log the code their body gives, as the
        # proxy's do: an unknown path, a wrong method, a /v1/route body with
        # no queries, feedback to a gateway with no store.
        cases = ((404, b"GET /nope HTTP/1.1\r\nHost: x\r\nx-request-id: it-404\r\n\r\n",
                  "it-404", "unknown_url"),
                 (405, b"GET /v1/feedback HTTP/1.1\r\nHost: x\r\nx-request-id: it-405\r\n\r\n",
                  "it-405", "method_not_allowed"),
                 (400, b"POST /v1/route HTTP/1.1\r\nHost: x\r\nx-request-id: it-rt\r\n"
                       b"Authorization: Bearer gk-one\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                  "it-rt", None),
                 (501, b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nx-request-id: it-fb\r\n"
                       b"Authorization: Bearer gk-one\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                  "it-fb", None))
        for status, data, rid, code in cases:
            raw = raw_exchange(port, data)
            assert status_of(raw) == status, raw[:200]
            body = json.loads(raw.split(b"\r\n\r\n", 1)[1] or b"{}")
            want = code or body["error"]["code"]
            wait_for(lambda: any(l.get("id") == rid for l in gw.log_lines()), 30, rid)
            lines = [l for l in gw.log_lines() if l.get("id") == rid]
            assert len(lines) == 1 and lines[0].get("error") == want, (want, lines)
    check("the gateway's own error answers log their code", api_refusals_name_their_code)

    def send_bytewise(data, timeout):
        """Send data a byte at a time, then read until the server closes: the
        response and whether it closed (not the socket timeout)."""
        s = socket.create_connection((HOST, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out, closed = b"", False
        try:
            for i in range(len(data)):
                s.sendall(data[i:i + 1])
                time.sleep(0.002)
            while True:
                b = s.recv(65536)
                if not b:
                    closed = True
                    break
                out += b
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
        finally:
            s.close()
        return out, closed

    def bare_lf_refused(raw, took):
        # Answered at once, not when the 30 s head timeout closes it.
        assert status_of(raw) == 400 and took < 2, (took, raw[:300])
        e = error_shape(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
        assert e["message"] == "bare LF in the request head: lines must end with CRLF", e
        assert b"\r\nConnection: close\r\n" in raw, raw

    def bare_lf_head():
        for bad in (b"GET /health HTTP/1.1\nHost: x\n\n",
                    b"GET /health HTTP/1.1\n",  # not whole: refused before the end comes
                    b"GET /health HTTP/1.1\r\nHost: x\r\n\n",
                    b"\nGET /health HTTP/1.1\r\n\r\n"):
            t0 = time.monotonic()
            raw = raw_exchange(port, bad, timeout=2)
            bare_lf_refused(raw, time.monotonic() - t0)
        # A byte at a time: refused at the LF, the connection closed.
        t0 = time.monotonic()
        raw, closed = send_bytewise(b"GET /health HTTP/1.1\nHost: x", 2)
        bare_lf_refused(raw, time.monotonic() - t0)
        assert closed, raw
        still_serving(gw, auth)
    check("400 at once for a head with bare LF line ends, connection closed", bare_lf_head)

    def bytewise_crlf_head():
        raw, closed = send_bytewise(b"GET /health HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n", 5)
        assert status_of(raw) == 200 and closed, raw[:300]
        # CRs that end no line do not throw the scan for the head's end: the
        # head is found, then refused for the lone CR in a value.
        raw, closed = send_bytewise(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\r\n"
                                    b"Connection: close\r\n\r\n", 5)
        assert status_of(raw) == 400 and closed, raw[:300]
        assert b"the value of header X-A" in raw, raw[:300]
    check("a CRLF head sent a byte at a time is served; one with a lone CR refused at its end",
          bytewise_crlf_head)

    def blank_lines_before_the_request_line():
        # RFC 9112 section 2.2: empty lines before a request line are ignored (up to 8).
        get = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        for blanks in (1, 2, 8):
            raw = raw_exchange(port, b"\r\n" * blanks + get)
            assert status_of(raw) == 200, (blanks, raw[:300])
        raw, closed = send_bytewise(b"\r\n\r\n" + get, 5)  # a CR and its LF apart
        assert status_of(raw) == 200 and closed, raw[:300]
        # After a request, as a client that ends a body with a CRLF sends them.
        raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n\r\n" + get)
        assert raw.count(b"HTTP/1.1 200 ") == 2, raw[:600]
        raw = raw_exchange(port, b"\r\n" * 9 + get)
        assert status_of(raw) == 400 and b"malformed request line" in raw, raw[:300]
        still_serving(gw, auth)
    check("up to 8 empty lines before a request line are ignored", blank_lines_before_the_request_line)

    def bare_lf_in_a_value():
        # The head ends with CRLF CRLF; one header value holds an LF.
        t0 = time.monotonic()
        raw = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n"
                           b"Connection: close\r\n\r\n", timeout=2)
        bare_lf_refused(raw, time.monotonic() - t0)
        t0 = time.monotonic()
        raw = raw_exchange(port, b"POST /v1/route HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\nb: c\r\n"
                           b"Content-Length: 2\r\n\r\n{}", timeout=2)
        bare_lf_refused(raw, time.monotonic() - t0)
        still_serving(gw, auth)
    check("400 for a bare LF inside a header value", bare_lf_in_a_value)

    def unauthorized():
        for h in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "gk-one"},
                  {"Authorization": "Bearer gk-on"}):
            e = err(401, '{"model": "mocky", "messages": []}', headers=h)
            assert e["code"] == "invalid_api_key", e
        st, _, _ = request(port, "GET", "/health")  # probes need no key
        assert st == 200
        st, _, _ = request(port, "GET", "/v1/models", headers={"Authorization": "Bearer gk-one"})
        assert st == 200
    check("401 without a valid gateway key", unauthorized)

    def keys_trimmed_at_both_ends():
        # Blank space around a key (before a comma, a final newline) is no part
        # of it: each key of these lists is accepted.
        env_name = "LLMROUTE_IT_GATEWAY_KEYS2"
        for i, value in enumerate(("k1, k2 ,k3", "k1,k2\n", " k1 ,\tk2\t, k3 \r\n")):
            g = Gateway(gw_bin, wd, base_config(fake, server={"api_keys_env": env_name}),
                        name="keys%d" % i, env={KEY_ENV: UPSTREAM_KEY, env_name: value})
            try:
                for k in ("k1", "k2", "k3")[:value.count(",") + 1]:
                    st, _, _ = request(g.port, "GET", "/v1/models",
                                       headers={"Authorization": "Bearer " + k})
                    assert st == 200, (value, k, st)
            finally:
                g.signal(signal.SIGTERM)
                assert g.wait(15) == 0
        # An empty entry is never a key: skipped, with a warning naming its place
        # (check-config and serve), so a list with a final comma still loads.
        cfg = os.path.join(wd, "keys.json")
        with open(cfg, "w") as f:
            json.dump(base_config(fake, server={"api_keys_env": env_name}), f)
        for i, (value, place) in enumerate((("k1,,k2", "entry 2 of 3"),
                                            ("k1, k2, ", "entry 3 of 3"),
                                            (" ,k1,k2", "entry 1 of 3"))):
            warning = "%s: %s is empty and is skipped" % (env_name, place)
            r = subprocess.run([gw_bin, "check-config", cfg], capture_output=True, text=True,
                               timeout=10, env=dict(os.environ, **{env_name: value}))
            assert r.returncode == 0, (value, r.returncode, r.stderr)
            assert "warning" in r.stderr and warning in r.stderr, (value, r.stderr)
            g = Gateway(gw_bin, wd, base_config(fake, server={"api_keys_env": env_name}),
                        name="keysempty%d" % i, env={KEY_ENV: UPSTREAM_KEY, env_name: value})
            try:
                for k, want in (("k1", 200), ("k2", 200), ("", 401)):
                    st, _, _ = request(g.port, "GET", "/v1/models",
                                       headers={"Authorization": "Bearer " + k})
                    assert st == want, (value, k, st)
            finally:
                g.signal(signal.SIGTERM)
                assert g.wait(15) == 0
            with open(g.stderr, encoding="utf-8") as f:
                assert warning in f.read(), value
        # Only a list with no key at all is refused.
        for value in (",", " , ,"):
            env = dict(os.environ, **{env_name: value})
            for cmd in (["check-config", cfg],
                        ["serve", "--config", cfg, "--listen", "127.0.0.1:0"]):
                r = subprocess.run([gw_bin] + cmd, capture_output=True, text=True, timeout=10,
                                   env=env)
                assert r.returncode == 2, (value, cmd, r.returncode, r.stderr)
                assert "%s holds no key" % env_name in r.stderr, (value, r.stderr)
    check("gateway keys are trimmed at both ends; empty entries are skipped with a warning "
          "naming their place; a list of no key is refused", keys_trimmed_at_both_ends)

    def unusable_base_urls_refused():
        # A base_url the endpoint's path cannot be appended to is refused at
        # load, by check-config and serve, naming the model and the problem.
        base = "http://127.0.0.1:%d/v1" % fake.port
        cfg = os.path.join(wd, "base_url.json")
        for url, problem in ((base + "?x=1", "holds a query ('?')"),
                             (base + "#frag", "holds a fragment ('#')"),
                             (base + " ", "holds a space"),
                             ("http:///v1", "has no host")):
            m = {"name": "odd", "backend": "vllm", "base_url": url}
            with open(cfg, "w") as f:
                json.dump(base_config(fake, extra_models=[m]), f)
            for cmd in (["check-config", cfg],
                        ["serve", "--config", cfg, "--listen", "127.0.0.1:0"]):
                r = subprocess.run([gw_bin] + cmd, capture_output=True, text=True, timeout=10)
                assert r.returncode == 2, (url, cmd, r.returncode, r.stderr)
                assert "models[4] (odd): base_url '%s' %s" % (url, problem) in r.stderr, \
                    (url, r.stderr)
    check("a base_url with a query, a fragment, a space or no host is refused, naming the "
          "model", unusable_base_urls_refused)

    def config_directory_named():
        r = subprocess.run([gw_bin, "serve", "--config", wd, "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0, (r.returncode, r.stderr)
        assert "%s: is a directory, not a configuration file" % wd in r.stderr, r.stderr
        assert "read error" not in r.stderr, r.stderr
    check("serve --config DIR says it is a directory", config_directory_named)

    check("502 upstream unreachable (closed port)",
          lambda: err(502, '{"model": "dead", "messages": []}', code="upstream_unreachable"))

    def pipelined_and_keepalive():
        body = b'{"model": "mocky", "messages": [{"role": "user", "content": "x"}]}'
        one = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer gk-one"
               b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        s = socket.create_connection((HOST, port), timeout=5)
        s.sendall(one * 3)
        got = b""
        end = time.monotonic() + 5
        while got.count(b"llmroute-mock") < 3 and time.monotonic() < end:
            got += s.recv(65536)
        s.close()
        assert got.count(b"HTTP/1.1 200") == 3, got
    check("pipelined requests on one keep-alive connection", pipelined_and_keepalive)

    def fuzz_bodies():
        import random
        rnd = random.Random(4)
        seeds = [b'{"model": "mocky", "messages": [{"role": "user", "content": "x"}]}',
                 b'{"model": "auto", "models": ["mocky"], "route": {"strategy": "sequential"}}']
        for i in range(300):
            b = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randint(1, 4)):
                op = rnd.random()
                pos = rnd.randrange(len(b))
                if op < 0.4:
                    b[pos] = rnd.randrange(256)
                elif op < 0.7:
                    del b[pos]
                else:
                    b.insert(pos, rnd.choice(b'{}[]",:\\0 \xff'))
            st, h, data = request(port, "POST", "/v1/chat/completions", bytes(b), auth)
            assert st in (200, 400, 404), (st, bytes(b), data)
            if st != 200:
                error_shape(json.loads(data))
        still_serving(gw, auth)
    check("mutated bodies are answered 200/400/404, never a crash", fuzz_bodies)

    check("the gateway still serves after every bad input", still_serving, gw, auth)
    assert gw.proc.poll() is None


# ==== lifecycle ====

def lifecycle(gw_bin, fake_bin):
    wd, fake, gw = start(fake_bin, gw_bin)

    def health_config():
        st, _, body = request(gw.port, "GET", "/health")
        assert st == 200, (st, body)
        j = json.loads(body)
        assert j["status"] == "ok", j  # a failed reload leaves the old config serving
        return j["config"]

    def reload_good_and_bad():
        first = health_config()
        assert first["last_reload"] is None, first
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["loaded_at"]), first
        m = gw.metrics()
        assert m["llmroute_config_last_reload_successful"] == 1, m
        started_at = m["llmroute_config_last_reload_success_timestamp_seconds"]
        assert abs(started_at - time.time()) < 3600, started_at
        cfg = base_config(fake, extra_models=[{"name": "late", "backend": "mock"}])
        gw.write_config(cfg)
        time.sleep(0.01)  # the reload's time differs from the start's at the millisecond
        gw.signal(signal.SIGHUP)

        def has_late():
            st, _, body = request(gw.port, "GET", "/v1/models")
            return "late" in [m["id"] for m in json.loads(body)["data"]]
        wait_for(has_late, 30, "the reloaded config")
        good = health_config()
        assert good["last_reload"]["result"] == "ok" and set(good["last_reload"]) == {"result", "at"}, good
        assert good["loaded_at"] == good["last_reload"]["at"] != first["loaded_at"], (first, good)
        reloaded_at = gw.metrics()["llmroute_config_last_reload_success_timestamp_seconds"]
        assert reloaded_at > started_at, (started_at, reloaded_at)
        st, h, j, _ = chat(gw.port, {"model": "late", "messages": HELLO})
        assert st == 200, (st, j)
        open(gw.config_path, "w").write('{"models": [{"name": 1}]}')
        gw.signal(signal.SIGHUP)
        wait_for(lambda: any(l.get("event") == "reload_failed" for l in gw.log_lines()), 30,
                 "the failed reload to be logged")
        st, h, j, _ = chat(gw.port, {"model": "late", "messages": HELLO})
        assert st == 200, "the old config should keep serving"
        m = gw.metrics()
        assert m['llmroute_config_reloads_total{result="error"}'] == 1
        assert m['llmroute_config_reloads_total{result="ok"}'] == 1
        # The message names the file once, for the library's errors and the
        # gateway's own alike.
        msg = gw.events("reload_failed")[-1]["message"]
        assert msg.count(gw.config_path) == 1 and msg.startswith(gw.config_path + ": "), msg
        # /health and /metrics say the configuration in use is the older one.
        bad_state = health_config()
        assert bad_state["loaded_at"] == good["loaded_at"], (good, bad_state)
        last = bad_state["last_reload"]
        # Why is in the log only: /health needs no key, and the message names the file.
        assert last["result"] == "error" and set(last) == {"result", "at"}, last
        assert gw.config_path not in json.dumps(bad_state), bad_state
        assert last["at"] >= good["loaded_at"], bad_state
        assert m["llmroute_config_last_reload_successful"] == 0, m
        assert m["llmroute_config_last_reload_success_timestamp_seconds"] == reloaded_at, m
        bad = base_config(fake)
        bad["server"]["listen"] = 5
        gw.write_config(bad)
        gw.signal(signal.SIGHUP)
        wait_for(lambda: len(gw.events("reload_failed")) == 2, 30, "the second failed reload")
        msg = gw.events("reload_failed")[-1]["message"]
        assert msg.startswith(gw.config_path + ": server.listen: "), msg
        assert msg.count(gw.config_path) == 1, msg
        gw.write_config(base_config(fake, extra_models=[{"name": "late", "backend": "mock"}]))
        gw.signal(signal.SIGHUP)
        wait_for(lambda: gw.metrics()["llmroute_config_reloads_total{result=\"ok\"}"] == 2, 30,
                 "the good reload after the bad ones")
        assert gw.metrics()["llmroute_config_last_reload_successful"] == 1
        assert health_config()["last_reload"]["result"] == "ok"
    check("SIGHUP reloads; a bad file is refused and the old config kept, and /health and "
          "/metrics say which is in use", reload_good_and_bad)

    def reload_lowering_the_body_cap_mid_body():
        # A body being read when a reload lowers server.max_body_bytes keeps
        # the cap it was admitted on: a chunked body past that cap is 413
        # (the subtraction from the new, lower cap wrapped around, and the
        # buffer was cut to the new cap under the bytes it held: a heap
        # overflow that killed the gateway), and a Content-Length body
        # within it is read whole.
        def reloaded(cap):
            gw.write_config(base_config(fake, server={"max_body_bytes": cap}))
            n = len(gw.events("reloaded"))
            gw.signal(signal.SIGHUP)
            wait_for(lambda: len(gw.events("reloaded")) > n, 30, "the reload")

        content = "x" * 60000
        body = json.dumps({"model": "mocky", "messages": [{"role": "user", "content": content}]})
        body = body.encode()
        s = socket.create_connection((HOST, gw.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % 60000 + b"y" * 60000 + b"\r\n")
        time.sleep(0.3)
        reloaded(1024)
        s.sendall(b"%x\r\n" % 200000 + b"y" * 200000 + b"\r\n0\r\n\r\n")
        raw = read_to_close(s, 10)
        s.close()
        assert status_of(raw) == 413, raw[:300]
        assert gw.proc.poll() is None, "the gateway died"

        reloaded(65536)
        s = socket.create_connection((HOST, gw.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body[:30000])
        time.sleep(0.3)
        reloaded(1024)
        s.sendall(body[30000:])
        raw = read_to_close(s, 10)
        s.close()
        assert status_of(raw) == 200, raw[:300]
        reloaded(65536)
        still_serving(gw)
    check("a reload lowering server.max_body_bytes while a body is read: the body keeps the "
          "cap it was admitted on", reload_lowering_the_body_cap_mid_body)

    def reload_raising_the_head_cap_reaches_open_connections():
        # An open connection's reading stopped at the head cap of its accept
        # (plus 64 KiB): after a reload raised server.max_header_bytes, a
        # head over the old cap on it got no answer and no timeout.
        def reloaded(server):
            gw.write_config(base_config(fake, server=server))
            n = len(gw.events("reloaded"))
            gw.signal(signal.SIGHUP)
            wait_for(lambda: len(gw.events("reloaded")) > n, 30, "the reload")

        def answer(s):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                assert chunk, data[:200]
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            n = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
            while len(rest) < n:
                chunk = s.recv(65536)
                assert chunk, head
                rest += chunk
            return head

        reloaded({"max_header_bytes": 1024})
        s = socket.create_connection((HOST, gw.port), timeout=10)
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer(s).startswith(b"HTTP/1.1 200"), "first request"
            reloaded({"max_header_bytes": 1 << 20})
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 +
                      b"\r\n\r\n")
            head = answer(s)  # a socket.timeout here is the old hang
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
        finally:
            s.close()
        reloaded(None)
        still_serving(gw)
    check("a reload raising server.max_header_bytes reaches the connections already open",
          reload_raising_the_head_cap_reaches_open_connections)

    def reload_keeps_the_round_robin():
        # Each reload built the sequential router anew, its cursor at 0: a
        # reload between requests sent every one to the route's first
        # candidate.
        def reloaded(i):
            gw.write_config(base_config(fake, server={"idle_timeout_ms": 60000 + i}))
            n = len(gw.events("reloaded"))
            gw.signal(signal.SIGHUP)
            wait_for(lambda: len(gw.events("reloaded")) > n, 30, "the reload")

        got = []
        for i in range(6):
            st, h, j, _ = chat(gw.port, {"model": "auto", "messages": HELLO})
            assert st == 200, (st, j)
            got.append(h["x-llmroute-model"])
            reloaded(i)
        assert got.count("fake-a") == 3 and got.count("fake-b") == 3, got
        assert all(a != b for a, b in zip(got, got[1:])), got
    check("a reload between requests: a sequential route's round-robin goes on where it was",
          reload_keeps_the_round_robin)

    def reload_warnings_are_events():
        # Warnings about the reloaded file were plain text lines in the
        # log, whose lines are JSON.
        cfg = base_config(fake)
        cfg["models"][3]["mock"]["no_such_key"] = 1
        n = len(gw.events("reloaded"))
        gw.write_config(cfg)
        gw.signal(signal.SIGHUP)
        wait_for(lambda: len(gw.events("reloaded")) > n, 30, "the reload")
        w = [e["message"] for e in gw.events("reload_warning")]
        assert gw.config_path + ": models[3].mock.no_such_key: unknown key, ignored" in w, w
        with open(gw.stderr, encoding="utf-8") as f:
            plain = [l for l in f if "no_such_key" in l and not l.startswith("{")]
        assert not plain, plain
        gw.write_config(base_config(fake))
        n = len(gw.events("reloaded"))
        gw.signal(signal.SIGHUP)
        wait_for(lambda: len(gw.events("reloaded")) > n, 30, "the reload")
        still_serving(gw)
    check("a reloaded file's warnings are reload_warning events", reload_warnings_are_events)

    def reload_cannot_move_the_listener():
        # The warning compared the file with the previous reload's, not
        # with the address the gateway listens on: asked again, a new
        # address was not warned about, and the address in use was.
        d = workdir()
        cfg = base_config(fake, server={"listen": "127.0.0.1:0"})
        path, port_file, err = (os.path.join(d, n) for n in ("cfg.json", "port", "err"))

        def write(c):
            with open(path + ".tmp", "w") as f:
                json.dump(c, f)
            os.replace(path + ".tmp", path)

        def reloaded(c):
            write(c)
            n = open(err).read().count('"event":"reloaded"')
            p.send_signal(signal.SIGHUP)
            try:
                wait_for(lambda: open(err).read().count('"event":"reloaded"') > n, 30,
                         "the reload")
            except AssertionError as ex:
                raise AssertionError("%s; the gateway's log:\n%s" % (ex, open(err).read()[-3000:]))
            return [json.loads(l) for l in open(err) if l.startswith('{"event":"reload_warning"')]

        write(cfg)
        p = subprocess.Popen([gw_bin, "serve", "--config", path, "--port-file", port_file],
                             stdout=subprocess.DEVNULL, stderr=open(err, "w"),
                             env=dict(os.environ, **{KEY_ENV: UPSTREAM_KEY}))
        try:
            port = wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip(),
                            10, "serve to listen")
            moved = base_config(fake, server={"listen": "127.0.0.1:1"})
            for k in (1, 2):  # said at each reload that asks for it
                w = reloaded(moved)
                assert len(w) == k, w
                assert w[-1]["message"] == ("server.listen changed to 127.0.0.1:1; the gateway "
                                            "goes on listening on 127.0.0.1:%s until a restart"
                                            % port), w
            assert len(reloaded(cfg)) == 2  # the address in use: nothing to say
            st, _, _ = request(int(port), "GET", "/health")
            assert st == 200
        finally:
            p.send_signal(signal.SIGTERM)
            assert p.wait(15) == 0
    check("a reload asking for another server.listen is warned about at each reload, naming "
          "both addresses; the address in use is not", reload_cannot_move_the_listener)

    def out_of_descriptors():
        # A gateway allowed few descriptors, and more clients than it can
        # hold (a server.max_connections its hard limit cannot fit, so the
        # cap does not stop them first): it pauses accepting (one log line)
        # instead of spinning on accept(), and takes the waiting clients once
        # descriptors are free.
        small = Gateway(gw_bin, wd, base_config(fake, server={"max_connections": 1000}),
                        name="gw-fds", env={KEY_ENV: UPSTREAM_KEY}, nofile=(96, 96))
        assert "warning" in small.events("connections")[0]["message"]

        def cpu_s():
            f = open("/proc/%d/stat" % small.proc.pid).read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        held = [socket.create_connection((HOST, small.port), timeout=5) for _ in range(120)]
        try:
            time.sleep(0.5)
            c0, t0 = cpu_s(), time.monotonic()
            time.sleep(2)
            busy = (cpu_s() - c0) / (time.monotonic() - t0)
            assert busy < 0.3, "the gateway used %.0f%% of a core while out of descriptors" % (
                busy * 100)
            assert os.path.getsize(small.stderr) < 100000, "log flooded"
            paused = small.events("accept_paused")
            assert len(paused) == 1 and "Too many open files" in paused[0]["message"], paused
        finally:
            late = held[-1]  # in the backlog, never accepted so far
            for s in held[:-1]:
                s.close()
        late.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert late.recv(100).startswith(b"HTTP/1.1 200"), "the waiting client was not served"
        late.close()
        still_serving(small)
        assert small.metrics()['llmroute_accept_paused_total{reason="descriptors"}'] >= 1
        small.signal(signal.SIGTERM)
        assert small.wait(15) == 0
    check("out of file descriptors: accepting pauses, no busy loop, then resumes",
          out_of_descriptors)

    def trickle(s, data, gap=0.1):
        """Send data a byte every `gap` s until the gateway answers or closes,
        then wait up to 5 s more for it to close the connection; (closed,
        seconds from the start to its answer or close, what it sent)."""
        t0 = time.monotonic()
        closed = False
        got = b""
        try:
            for b in data:
                s.sendall(bytes([b]))
                if select.select([s], [], [], gap)[0]:
                    break
        except OSError:
            closed = True
        took = time.monotonic() - t0
        if not closed:
            s.settimeout(5)
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        closed = True
                        break
                    got += b
            except socket.timeout:
                pass  # still open
            except OSError:
                closed = True
        s.close()
        return closed, took, got

    def trickled_head():
        # A head sent a byte at a time, faster than idle_timeout_ms but never
        # finished, is closed once idle_timeout_ms has passed since it began.
        cfg = base_config(fake, server={"idle_timeout_ms": 1000})
        slow = Gateway(gw_bin, wd, cfg, name="gw-slow", env={KEY_ENV: UPSTREAM_KEY})
        s = socket.create_connection((HOST, slow.port), timeout=5)
        closed, took, got = trickle(s, b"GET /health HTTP/1.1\r\nX-Pad: " + b"y" * 40)
        assert closed and took < 3.5, "a trickled head kept its connection %.1f s" % took
        assert got == b"", got  # no request yet: nothing to answer
        still_serving(slow)
        slow.signal(signal.SIGTERM)
        assert slow.wait(15) == 0
    check("a head trickled in a byte at a time is cut off after idle_timeout_ms",
          trickled_head)

    def trickled_head_not_cut_early():
        # The cut comes idle_timeout_ms after the head's first byte, never
        # before: ten heads trickled in a byte every 13.7 ms, each timed from
        # before its first byte was sent to the connection's end. (Deadlines
        # kept in whole milliseconds cut 16 of 40 such heads short, at
        # 299.35 ms at worst.)
        cfg = base_config(fake, server={"idle_timeout_ms": 300})
        gw = Gateway(gw_bin, wd, cfg, name="gw-cut", env={KEY_ENV: UPSTREAM_KEY})
        took = []
        for _ in range(10):
            s = socket.create_connection((HOST, gw.port), timeout=5)
            closed, t, got = trickle(s, b"GET /health HTTP/1.1\r\nX-Pad: " + b"y" * 2000, 0.0137)
            took.append(t)
            assert closed and got == b"", "a trickled head was answered or kept: %r" % got
        assert min(took) >= 0.3, "cut short: %s" % ["%.5f" % t for t in took]
        assert max(took) < 5, "kept open: %s" % ["%.5f" % t for t in took]
        gw.signal(signal.SIGTERM)
        assert gw.wait(15) == 0
    check("a trickled head is cut off no sooner than idle_timeout_ms after its first byte",
          trickled_head_not_cut_early)

    def trickled_body():
        # A body must come at 500 bytes a second at least beyond
        # idle_timeout_ms: one trickled a byte every 0.1 s (each gap well
        # within the idle timeout) is cut off once idle_timeout_ms has passed
        # since the head ended, and so is one whose start came fast; one sent
        # at about 1,200 bytes a second, for longer than idle_timeout_ms in
        # all, is answered.
        cfg = base_config(fake, server={"idle_timeout_ms": 1000})
        slow = Gateway(gw_bin, wd, cfg, name="gw-slowbody", env={KEY_ENV: UPSTREAM_KEY})
        body = json.dumps({"model": "mocky", "messages": HELLO}).encode()
        body += b" " * (3000 - len(body))
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        s = socket.create_connection((HOST, slow.port), timeout=5)
        s.sendall(head)
        closed, took, got = trickle(s, body[:100])
        assert closed and took < 3.5, "a trickled body kept its connection %.1f s" % took
        assert status_of(got) == 408 and b"Connection: close\r\n" in got, got

        # Bytes sent fast earn no time to trickle the rest in later: the time
        # a body has in hand is never more than idle_timeout_ms. (Without
        # that ceiling these 55,000 bytes would buy 110 s.)
        big = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
        s = socket.create_connection((HOST, slow.port), timeout=5)
        s.sendall(big + b" " * 55000)
        closed, took, got = trickle(s, b" " * 100)
        assert closed and took < 3.5, "a body sent fast, then trickled, kept its connection " \
            "%.1f s" % took
        assert status_of(got) == 408, got

        s = socket.create_connection((HOST, slow.port), timeout=5)
        s.sendall(head)
        for i in range(0, len(body), 600):
            s.sendall(body[i:i + 600])
            if i + 600 < len(body):
                time.sleep(0.5)
        got = b""
        while b"\r\n\r\n" not in got:
            b = s.recv(4096)
            assert b, "closed while the body kept up the rate: %r" % got
            got += b
        s.close()
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
        still_serving(slow)
        slow.signal(signal.SIGTERM)
        assert slow.wait(15) == 0
    check("a body trickled in slower than 500 bytes a second is answered 408 and closed, also "
          "after a fast start", trickled_body)

    def sigterm_drains():
        fake.scenario("chunks=6;chunk_delay_ms=200")
        s = socket.create_connection((HOST, gw.port), timeout=10)
        body = json.dumps({"model": "fake-a", "stream": True, "messages": HELLO}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        first = s.recv(4096)
        assert b" 200 " in first
        gw.signal(signal.SIGTERM)
        time.sleep(0.2)
        try:  # no new connections once draining
            c = socket.create_connection((HOST, gw.port), timeout=1)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            refused = c.recv(100) == b""
            c.close()
        except OSError:
            refused = True
        assert refused, "a new connection was served during shutdown"
        got = first
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
        assert b"data: [DONE]" in got and got.endswith(b"0\r\n\r\n"), got[-200:]
        assert gw.wait(10) == 0
    check("SIGTERM finishes in-flight streams, refuses new connections, exits 0", sigterm_drains)

    def sigterm_deadline_answers():
        # A 20 s stream and a 20 s non-stream request, SIGTERM after 0.7 s, a 1 s deadline:
        # at the deadline neither is dropped unanswered. The stream ends with an error event
        # (no [DONE]), the other request gets a 503; both are logged and counted as such,
        # before the `stopped` event. The gateway exits about 2 s after the signal (the
        # deadline, then at most 1 s for its answers to go out); the upstreams would take
        # 19 s more, so a bound of 10 s tells the two apart with room for a loaded machine.
        slow, late = Fake(fake_bin, wd, name="slow"), Fake(fake_bin, wd, name="late")
        slow.scenario("chunks=50;chunk_delay_ms=400")
        late.scenario("delay_ms=20000")
        cfg = base_config(fake, server={"shutdown_timeout_ms": 1000})
        cfg["models"] += [{"name": "slow", "backend": "openai", "base_url": slow.base_url},
                          {"name": "late", "backend": "openai", "base_url": late.base_url}]
        g = Gateway(gw_bin, wd, cfg, name="gw-deadline")
        got = {}

        def send(key, payload):
            try:
                got[key] = request(g.port, "POST", "/v1/chat/completions",
                                   json.dumps(payload), timeout=30)
            except Exception as ex:  # an empty reply, a reset: what this test forbids
                got[key] = ex
        ts = [threading.Thread(target=send, args=("stream", {"model": "slow", "stream": True,
                                                              "messages": HELLO})),
              threading.Thread(target=send, args=("plain", {"model": "late",
                                                             "messages": HELLO}))]
        for t in ts:
            t.start()
        time.sleep(0.7)
        t0 = time.monotonic()
        g.signal(signal.SIGTERM)
        for t in ts:
            t.join(30)
        assert g.wait(30) == 0
        assert time.monotonic() - t0 < 10, time.monotonic() - t0
        assert not isinstance(got["stream"], Exception), got["stream"]
        st, _, body = got["stream"]
        events = [e[len("data: "):] for e in body.decode().split("\n\n")
                  if e.startswith("data: ")]
        assert st == 200 and len(events) >= 2 and "[DONE]" not in events, body
        err = json.loads(events[-1])
        assert set(err) == {"error"} and err["error"]["code"] == "server_shutting_down", err
        for e in events[:-1]:
            assert "error" not in json.loads(e), e
        assert not isinstance(got["plain"], Exception), got["plain"]
        st, h, body = got["plain"]
        assert st == 503, (st, body)
        e = json.loads(body)["error"]
        assert e["code"] == "server_shutting_down" and "shut" in e["message"], e
        lines = g.log_lines()
        stopped = [i for i, l in enumerate(lines) if l.get("event") == "stopped"]
        reqs = [(i, l) for i, l in enumerate(lines) if l.get("path") == "/v1/chat/completions"]
        assert stopped and len(reqs) == 2, lines
        for i, l in reqs:
            assert i < stopped[0], lines
            assert l["status"] == 503 and l["error"] == "shutdown", l
            assert l["model"] in ("slow", "late"), l
            assert [t["class"] for t in l["tries"]] == ["shutdown"], l
        slow.proc.terminate()
        late.proc.terminate()
    check("SIGTERM past shutdown_timeout_ms: a 503 for waiting requests, an error event for "
          "streams, logged as 503 shutdown before `stopped`", sigterm_deadline_answers)

    def sigterm_late_body_refused():
        # A request whose head is not all in at the shutdown deadline, and completes in
        # the second the deadline's answers have to go out: a 503 server_shutting_down
        # at once, with no upstream attempt, logged before `stopped`. (It was once sent
        # upstream, then dropped when the loop stopped and logged after `stopped` as a
        # 499 client_closed, though the client never closed.) A request whose head is
        # in at the deadline but not its body is answered then (test_drain.py).
        # That second (the gateway's flush after the deadline) is fixed, so the test
        # does not guess where it is with sleeps: the rest of the head goes out as soon
        # as the request in flight gets its deadline answer, which opens that second.
        late = Fake(fake_bin, wd, name="late2")
        late.scenario("delay_ms=30000")
        cfg = base_config(fake, server={"shutdown_timeout_ms": 1000})
        cfg["models"] += [{"name": "late", "backend": "openai", "base_url": late.base_url}]
        g = Gateway(gw_bin, wd, cfg, name="gw-latebody")
        body = json.dumps({"model": "late", "messages": HELLO}).encode()
        got = {}
        answered = threading.Event()

        def in_flight():  # keeps the gateway draining until the deadline
            try:
                got["a"] = request(g.port, "POST", "/v1/chat/completions", body, timeout=30)
            except Exception as ex:
                got["a"] = ex
            answered.set()
        # The half head's connection is made first, so that the gateway accepts it
        # before the request in flight's (its listener takes them in order): once that
        # request is upstream, this one is in too, and SIGTERM cannot find it still in
        # the backlog. (A sleep of 0.3 s after it stood for that, a guess under load.)
        s = socket.create_connection((HOST, g.port), timeout=30)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        t = threading.Thread(target=in_flight)
        t.start()

        def forwarded():
            st, _, data = request(late.port, "GET", "/_stats")
            return st == 200 and json.loads(data)["requests"] >= 1
        wait_for(forwarded, 15, "the request in flight to reach its upstream")
        g.signal(signal.SIGTERM)
        assert answered.wait(15), "the request in flight was not answered at the deadline"
        assert not isinstance(got["a"], Exception) and got["a"][0] == 503, got["a"]
        t0 = time.monotonic()
        s.sendall(b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        raw = b""
        try:
            while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
                b = s.recv(65536)
                if not b:
                    break
                raw += b
        except OSError as ex:
            raw += b" EXC " + str(ex).encode()
        took = time.monotonic() - t0
        s.close()
        t.join(30)
        assert g.wait(30) == 0
        # Answered, and within the flush second (the gateway is gone after it): had it
        # been sent upstream (30 s), the loop would have stopped with it unanswered.
        assert status_of(raw) == 503 and b'"code":"server_shutting_down"' in raw, raw
        assert took < 1.5, took
        lines = g.log_lines()
        stopped = [i for i, l in enumerate(lines) if l.get("event") == "stopped"]
        reqs = [(i, l) for i, l in enumerate(lines) if l.get("path") == "/v1/chat/completions"]
        assert stopped and len(reqs) == 2, lines
        for i, l in reqs:
            assert i < stopped[0] and l["status"] == 503 and l["error"] == "shutdown", lines
        assert [l.get("tries", []) for _, l in reqs].count([]) == 1, reqs
        late.proc.terminate()
    check("a request whose head completes after the shutdown deadline's answers: 503 at "
          "once, no upstream attempt, logged before `stopped`", sigterm_late_body_refused)

    def stop_while_loading(sig):
        # serve reading its config from a FIFO (as from `--config <(...)`) is still loading
        # when the writer's open returns: the signal comes before the loop handles any.
        d = workdir()
        fifo, store = os.path.join(d, "cfg.json"), os.path.join(d, "new.db")
        port_file, err = os.path.join(d, "port"), os.path.join(d, "err")
        os.mkfifo(fifo)
        p = subprocess.Popen([gw_bin, "serve", "--config", fifo, "--listen", HOST + ":0",
                              "--store", store, "--port-file", port_file],
                             stdout=subprocess.DEVNULL, stderr=open(err, "w"))

        def reader_there():
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert p.poll() is None, open(err).read()
                return None
        fd = wait_for(reader_there, 10, "serve to open its config")
        p.send_signal(sig)
        try:
            os.set_blocking(fd, True)
            os.write(fd, json.dumps(base_config(fake)).encode())
        except OSError:
            pass  # serve is gone: its status says how
        os.close(fd)
        rc = p.wait(15)
        log = open(err).read()
        assert rc == 0, (rc, log)
        assert "while starting: the gateway does not start" in log, log
        left = sorted(os.listdir(d))
        assert left == ["cfg.json", "err"], left  # no store, no -wal or -shm, no port file
    check("SIGTERM while serve loads its config and store: exit 0, the store it made removed",
          stop_while_loading, signal.SIGTERM)
    check("SIGINT while serve loads: exit 0 likewise", stop_while_loading, signal.SIGINT)


# ==== headers ====

HDR_ENV = "LLMROUTE_IT_HEADER_KEY"
HDR_SECRET = "azure-secret-in-env"
HDR_UNSET = "LLMROUTE_IT_HEADER_UNSET"


def headers_model(fake, title="my app"):
    return {"name": "fake-h", "backend": "openai-compatible", "base_url": fake.base_url,
            "api_key_env": KEY_ENV, "upstream_model": "upstream-h",
            "headers": {"HTTP-Referer": "https://example.org", "X-Title": title,
                        "api-key": {"env": HDR_ENV}, "X-Gone": {"env": HDR_UNSET}}}


def headers(gw_bin, fake_bin):
    import subprocess
    wd = workdir()
    fake = Fake(fake_bin, wd)
    env = {KEY_ENV: UPSTREAM_KEY, HDR_ENV: HDR_SECRET}
    gw = Gateway(gw_bin, wd, base_config(fake, extra_models=[headers_model(fake)]), env=env)

    def received(model):
        fake.scenario("ok")
        st, h, j, _ = chat(gw.port, {"model": model, "messages": HELLO})
        assert st == 200 and h["x-llmroute-model"] == model, (st, h, j)
        return fake.logged()[-1]["headers"]

    def literal_and_env_arrive():
        got = received("fake-h")
        assert got.get("http-referer") == "https://example.org", got
        assert got.get("x-title") == "my app", got
        assert got.get("api-key") == HDR_SECRET, got
        assert got.get("authorization") == "Bearer " + UPSTREAM_KEY, got
        assert got.get("content-type") == "application/json", got
        assert "x-gone" not in got, got
        err = open(gw.stderr).read()
        assert ("llmroute serve: warning: %s: models[4].headers.X-Gone: %s is not set; "
                "requests to 'fake-h' go without this header" % (gw.config_path, HDR_UNSET)
                in err), err
        assert HDR_SECRET not in err, "a header's value reached the log"
    check("a model's literal and env headers reach its upstream; an unset variable's is left "
          "out with a warning", literal_and_env_arrive)

    def only_that_model():
        got = received("fake-a")
        assert not {"http-referer", "x-title", "api-key"} & set(got), got
    check("another model's requests carry none of them", only_that_model)

    def streamed_too():
        fake.scenario("chunks=3")
        st, h, j, raw = chat(gw.port, {"model": "fake-h", "stream": True, "messages": HELLO})
        assert st == 200, (st, raw)
        got = fake.logged()[-1]["headers"]
        assert got.get("x-title") == "my app" and got.get("api-key") == HDR_SECRET, got
    check("a streamed request carries them too", streamed_too)

    def reload_picks_up_changes():
        m = headers_model(fake, title="my app v2")
        del m["headers"]["HTTP-Referer"]
        gw.write_config(base_config(fake, extra_models=[m]))
        gw.signal(signal.SIGHUP)

        def changed():
            got = received("fake-h")
            return got.get("x-title") == "my app v2" and "http-referer" not in got
        wait_for(changed, 30, "the reloaded headers")
        assert received("fake-h").get("api-key") == HDR_SECRET
        bad = headers_model(fake, title="my app v3")
        bad["headers"]["Host"] = "example.org"
        gw.write_config(base_config(fake, extra_models=[bad]))
        gw.signal(signal.SIGHUP)
        wait_for(lambda: any(l.get("event") == "reload_failed" for l in gw.log_lines()), 30,
                 "the failed reload to be logged")
        err = open(gw.stderr).read()
        assert "models[4].headers.Host: the gateway sets this header itself" in err, err
        assert received("fake-h").get("x-title") == "my app v2", "the old config should serve"
    check("SIGHUP picks up changed headers; a refused header keeps the old config",
          reload_picks_up_changes)

    def serve_refused(name, var, value):
        """`llmroute serve` on a config (written to `name`) with the headers
        model, `var` set to `value`: it must refuse to start (exit 2). Returns
        the finished process and the environment it ran with."""
        cfg = os.path.join(wd, name)
        with open(cfg, "w") as f:
            json.dump(base_config(fake, extra_models=[headers_model(fake)]), f)
        e = dict(os.environ)
        e.update(env)
        e[var] = value
        r = subprocess.run([gw_bin, "serve", "--config", cfg, "--listen", HOST + ":0"],
                           capture_output=True, text=True, timeout=10, env=e)
        assert r.returncode == 2, (r.returncode, r.stderr)
        return r, e

    def env_value_with_a_line_break_refused():
        r, _ = serve_refused("crlf.json", HDR_ENV, "abc\r\nHost: evil.example")
        assert "models[4].headers.api-key: %s holds a control character" % HDR_ENV in r.stderr, \
            r.stderr
        assert "evil" not in r.stderr, r.stderr
    check("an env value with CR LF is refused at start, naming the field and not the value",
          env_value_with_a_line_break_refused)

    def api_key_with_a_line_break_refused():
        # The key goes out as "Authorization: Bearer KEY": a CR LF in it would
        # add headers to every upstream request.
        r, e = serve_refused("crlf-key.json", KEY_ENV, "sk-abc\r\nX-Injected: evil")
        assert "models[0].api_key_env: %s holds a control character" % KEY_ENV in r.stderr, \
            r.stderr
        assert "evil" not in r.stderr and "sk-abc" not in r.stderr, r.stderr
        # A reload reads the environment again: a gateway started with a bad
        # key in a variable only a reload uses keeps its config.
        late_env = "LLMROUTE_IT_LATE_KEY"
        e[KEY_ENV] = UPSTREAM_KEY
        e[late_env] = "sk-late\nX-Injected: evil"
        g = Gateway(gw_bin, wd, base_config(fake, extra_models=[headers_model(fake)]),
                    name="gw-key", env=e)
        try:
            m = headers_model(fake, title="with a bad key")
            m["api_key_env"] = late_env
            g.write_config(base_config(fake, extra_models=[m]))
            g.signal(signal.SIGHUP)
            wait_for(lambda: g.events("reload_failed"), 30, "the failed reload to be logged")
            msg = g.events("reload_failed")[-1]["message"]
            assert "models[4].api_key_env: %s holds a control character" % late_env in msg, msg
            assert "evil" not in open(g.stderr).read()
            fake.scenario("ok")
            st, h, j, _ = chat(g.port, {"model": "fake-h", "messages": HELLO})
            assert st == 200, (st, j)
            got = fake.logged()[-1]["headers"]
            assert got.get("authorization") == "Bearer " + UPSTREAM_KEY, got
            assert got.get("x-title") == "my app" and "x-injected" not in got, got
        finally:
            g.signal(signal.SIGTERM)
            assert g.wait(15) == 0
    check("an api_key_env value with CR LF is refused at start and on reload, naming the "
          "variable and not the key", api_key_with_a_line_break_refused)

    def long_key_with_either_client():
        # OAuth access tokens (Azure AD, Google Cloud) run to a few KB: the key
        # goes out whole through either upstream client, or the client gets
        # its upstream's answer, not a 500 out_of_memory for every request.
        long_key = "ey" + "x" * 4000
        for client in ("default", "curl"):
            e = dict(env)
            e[KEY_ENV] = long_key
            if client == "curl":
                e["LLMROUTE_UPSTREAM_CLIENT"] = "curl"
            g = Gateway(gw_bin, wd, base_config(fake, extra_models=[headers_model(fake)]),
                        name="gw-long-key-" + client, env=e)
            try:
                fake.scenario("ok")
                st, h, j, raw = chat(g.port, {"model": "fake-h", "messages": HELLO})
                assert st == 200, (client, st, raw[:300])
                got = fake.logged()[-1]["headers"]
                assert got.get("authorization") == "Bearer " + long_key, \
                    (client, len(got.get("authorization", "")))
            finally:
                g.signal(signal.SIGTERM)
                assert g.wait(15) == 0
    check("an API key of 4 KB reaches the upstream whole through either client",
          long_key_with_either_client)

    def check_config_refuses():
        cfg = os.path.join(wd, "authz.json")
        m = headers_model(fake)
        m["headers"]["authorization"] = "Bearer sk-in-file"
        with open(cfg, "w") as f:
            json.dump(base_config(fake, extra_models=[m]), f)
        r = subprocess.run([gw_bin, "check-config", cfg], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert "models[4].headers.authorization: the gateway sets Authorization from " \
            "api_key_env" in r.stderr, r.stderr
    check("check-config refuses a header the gateway sets, naming the field", check_config_refuses)
    assert gw.proc.poll() is None


# ==== sdk ====

OPENAI_SDK = "openai@7.59.0"


def npm_modules(build_dir):
    """The SDK, installed once into the build tree. No network means a failure, not a skip."""
    import shutil
    import subprocess
    prefix = os.path.join(build_dir, "npm")
    pkg = os.path.join(prefix, "node_modules", "openai", "package.json")
    if not os.path.exists(pkg):
        for tool in ("node", "npm"):
            assert shutil.which(tool), "%s is not installed (scripts/deps.sh installs it)" % tool
        os.makedirs(prefix, exist_ok=True)
        r = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                            "--no-save", OPENAI_SDK], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0 and os.path.exists(pkg), \
            "npm could not install %s (network?):\n%s%s" % (OPENAI_SDK, r.stdout, r.stderr)
    return os.path.join(prefix, "node_modules")


def sdk(gw_bin, fake_bin):
    import subprocess
    build_dir = os.path.dirname(os.path.abspath(gw_bin))
    try:
        modules = npm_modules(build_dir)
    except AssertionError as e:
        print("FAIL - install the OpenAI Node SDK: %s" % e)
        sys.exit(1)
    keys = {"LLMROUTE_IT_GATEWAY_KEYS": "gk-sdk"}
    wd, fake, gw = start(fake_bin, gw_bin, server={"api_keys_env": "LLMROUTE_IT_GATEWAY_KEYS"},
                         env=keys)
    fake.scenario("ok")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openai_sdk.mjs")
    r = subprocess.run(["node", script, modules, str(gw.port), "gk-sdk", str(fake.port)],
                       capture_output=True, text=True, timeout=90)
    sys.stdout.write(r.stdout + r.stderr)

    def node_checks_passed():
        assert r.returncode == 0 and "FAIL" not in r.stdout, "the SDK checks failed"
    check("the OpenAI Node SDK's checks", node_checks_passed)


# ==== mock ====

def sse_data(body):
    """The JSON payloads of a stream's data lines, [DONE] left out."""
    out = []
    for event in body.decode("utf-8").split("\n\n"):
        for line in event.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


def mock(gw_bin, fake_bin):
    wd = workdir()
    texts = {"cjk": "日本語", "mixed": "naïve café — 🙂 ok", "emoji": "🙂🙃"}
    models = [{"name": "%s-%d" % (k, n), "backend": "mock",
               "mock": {"chunks": n, "content": t}}
              for k, t in texts.items() for n in (1, 2, 4, 40)]
    counted = {"name": "counted", "backend": "mock",
               "mock": {"tokens": 10, "chunks": 2, "content": "a b c d e"}}
    gw = Gateway(gw_bin, wd, {"models": models + [counted]})

    def pieces_of(model, path, payload):
        st, _, body = request(gw.port, "POST", path, json.dumps(
            dict({"model": model, "stream": True}, **payload)))
        assert st == 200, (model, st, body)
        data = sse_data(body)
        if path == "/v1/responses":
            return [d["delta"] for d in data if d["type"] == "response.output_text.delta"]
        if path == "/v1/completions":
            return [d["choices"][0]["text"] for d in data if d["choices"]
                    and d["choices"][0]["finish_reason"] is None]
        return [d["choices"][0]["delta"]["content"] for d in data if d["choices"]
                and "content" in d["choices"][0]["delta"]
                and "role" not in d["choices"][0]["delta"]]

    def stream_pieces_are_whole_characters():
        for m in models:
            text, chunks = m["mock"]["content"], m["mock"]["chunks"]
            for path, payload in (("/v1/chat/completions", {"messages": HELLO}),
                                  ("/v1/completions", {"prompt": "hi"}),
                                  ("/v1/responses", {"input": "hi"})):
                got = pieces_of(m["name"], path, payload)
                # Each piece came through as JSON text, so each is whole characters;
                # together they are the text, in min(chunks, characters) pieces.
                assert "".join(got) == text, (m["name"], path, got)
                assert all(got), (m["name"], path, "an empty piece", got)
                assert len(got) == min(chunks, len(text)), (m["name"], path, got)
    check("a mock stream's text pieces are whole characters, none empty, as many as asked "
          "(or one a character)", stream_pieces_are_whole_characters)

    def n_choices():
        # OpenAI's semantics: n choices a prompt, indexed 0.., usage counting all of them.
        name, text = "mixed-4", texts["mixed"]
        words = len(text.split())
        cases = (("/v1/chat/completions", {"messages": HELLO}, 1),
                 ("/v1/chat/completions", {"messages": HELLO, "n": None}, 1),
                 ("/v1/chat/completions", {"messages": HELLO, "n": 3}, 3),
                 ("/v1/completions", {"prompt": "hi", "n": 2}, 2),
                 ("/v1/completions", {"prompt": ["a", "b", "c"]}, 3),
                 ("/v1/completions", {"prompt": ["a", "b"], "n": 2}, 4),
                 ("/v1/completions", {"prompt": [1, 2, 3]}, 1),
                 ("/v1/completions", {"prompt": [[1, 2], [3]], "n": 3}, 6),
                 ("/v1/chat/completions", {"messages": HELLO, "n": 128}, 128))
        for path, payload, want in cases:
            chat_ = path == "/v1/chat/completions"
            st, _, body = request(gw.port, "POST", path,
                                  json.dumps(dict({"model": name}, **payload)))
            j = json.loads(body)
            assert st == 200, (payload, st, j)
            assert [c["index"] for c in j["choices"]] == list(range(want)), (payload, j)
            for c in j["choices"]:
                assert (c["message"]["content"] if chat_ else c["text"]) == text, c
            assert j["usage"]["completion_tokens"] == words * want, (payload, j["usage"])
            st, _, body = request(gw.port, "POST", path, json.dumps(
                dict({"model": name, "stream": True,
                      "stream_options": {"include_usage": True}}, **payload)))
            assert st == 200 and body.rstrip().endswith(b"data: [DONE]"), (payload, st)
            data = sse_data(body)
            got, finished = {}, []
            for d in data:
                for c in d["choices"]:
                    piece = c["delta"].get("content", "") if chat_ else c["text"]
                    got[c["index"]] = got.get(c["index"], "") + piece
                    if c["finish_reason"]:
                        finished.append(c["index"])
            assert got == {i: text for i in range(want)}, (payload, got)
            assert sorted(finished) == list(range(want)), (payload, finished)
            assert data[-1]["usage"]["completion_tokens"] == words * want, data[-1]
    check("the mock answers n choices a prompt (chat, completions, a prompt list), "
          "plain and streamed", n_choices)

    def n_refused():
        for path, payload, param, code in (
                ("/v1/chat/completions", {"messages": HELLO, "n": 129}, "n",
                 "integer_above_max_value"),
                ("/v1/chat/completions", {"messages": HELLO, "n": 0}, "n",
                 "integer_below_min_value"),
                ("/v1/completions", {"prompt": "hi", "n": -1}, "n", "integer_below_min_value"),
                ("/v1/chat/completions", {"messages": HELLO, "n": "2"}, "n", "invalid_type"),
                ("/v1/completions", {"prompt": "hi", "n": 1.5}, "n", "invalid_type"),
                ("/v1/completions", {"prompt": ["p"] * 65, "n": 2}, "prompt",
                 "too_many_choices")):
            for stream in (False, True):
                st, _, body = request(gw.port, "POST", path, json.dumps(
                    dict({"model": "cjk-1", "stream": stream}, **payload)))
                j = json.loads(body)
                assert st == 400, (payload, st, body[:300])
                e = error_shape(j)
                assert e["param"] == param and e["code"] == code, (payload, e)
                assert e["type"] == "invalid_request_error", e
        still_serving_mock = request(gw.port, "POST", "/v1/chat/completions", json.dumps(
            {"model": "cjk-1", "messages": HELLO}))
        assert still_serving_mock[0] == 200, still_serving_mock
    check("the mock refuses an n that is not an integer from 1 to 128, or more than 128 "
          "choices in all, with a 400 naming it", n_refused)

    def n_shown_as_sent():
        # A value past what is read exactly is shown as the client wrote it.
        for n, shown in (("99999999999999999999999", "99999999999999999999999"),
                         ("-3000000000", "-3000000000"), ("200", "200")):
            st, _, body = request(gw.port, "POST", "/v1/chat/completions",
                                  '{"model": "cjk-1", "messages": %s, "n": %s}'
                                  % (json.dumps(HELLO), n))
            assert st == 400, (n, st, body[:300])
            e = error_shape(json.loads(body))
            assert e["param"] == "n", e
            assert e["message"].endswith("but got %s instead." % shown), (n, e)
    check("the mock's refusal of n shows the n given, not a clamped one", n_shown_as_sent)

    def assert_field_refused(path, base, name, value, code, tail):
        # The mock's 400 for one field's value, plain and streamed, in OpenAI's words:
        # naming the field, its message ending in tail.
        for stream in ("false", "true"):
            body = '{"model": "mixed-4", %s, "%s": %s, "stream": %s}' % (
                base, name, value, stream)
            st, _, got = request(gw.port, "POST", path, body)
            assert st == 400, (body, st, got[:300])
            e = error_shape(json.loads(got))
            assert e["param"] == name and e["code"] == code, (body, e)
            assert e["type"] == "invalid_request_error", e
            assert ("'%s'" % name) in e["message"] and e["message"].endswith(tail), (body, e)

    def limit_refused():
        # An output limit that is no integer from 1 is refused in OpenAI's words, not
        # ignored with the whole answer served.
        chat_p = ("/v1/chat/completions", '"messages": %s' % json.dumps(HELLO))
        comp_p = ("/v1/completions", '"prompt": "hi"')
        resp_p = ("/v1/responses", '"input": "hi"')
        cases = []
        for (path, base), name in ((chat_p, "max_tokens"), (chat_p, "max_completion_tokens"),
                                   (comp_p, "max_tokens"), (resp_p, "max_output_tokens")):
            cases += [(path, base, name, "0", "integer_below_min_value", "got 0 instead."),
                      (path, base, name, "-5", "integer_below_min_value", "got -5 instead."),
                      (path, base, name, "-1e30", "integer_below_min_value",
                       "got -1e30 instead."),
                      (path, base, name, "1.5", "invalid_type", "expected an integer."),
                      (path, base, name, '"3"', "invalid_type", "expected an integer.")]
        for case in cases:
            assert_field_refused(*case)
        for path, base in (chat_p, comp_p, resp_p):  # null is no limit: served whole
            st, _, got = request(gw.port, "POST", path, '{"model": "mixed-4", %s, '
                                 '"max_tokens": null, "max_output_tokens": null}' % base)
            assert st == 200, (path, st, got[:300])
    check("the mock refuses an output limit that is not an integer from 1 with a 400 "
          "naming it", limit_refused)

    def sampling_refused():
        # A temperature or top_p that is no number in its range, and stream_options
        # on a request that does not stream, are refused in OpenAI's words; the mock
        # answered them 200.
        chat_p = ("/v1/chat/completions", '"messages": %s' % json.dumps(HELLO))
        comp_p = ("/v1/completions", '"prompt": "hi"')
        resp_p = ("/v1/responses", '"input": "hi"')
        for path, base in (chat_p, comp_p, resp_p):
            for name, value, code, tail in (
                    ("temperature", "3", "decimal_above_max_value",
                     "Expected a value <= 2, but got 3 instead."),
                    ("temperature", "-0.5", "decimal_below_min_value",
                     "Expected a value >= 0, but got -0.5 instead."),
                    ("top_p", "1.5", "decimal_above_max_value",
                     "Expected a value <= 1, but got 1.5 instead."),
                    ("top_p", "99999999999999999999999", "decimal_above_max_value",
                     "but got 99999999999999999999999 instead."),
                    ("temperature", '"hot"', "invalid_type", "expected a decimal.")):
                assert_field_refused(path, base, name, value, code, tail)
            # The ends of each range, and null, are served.
            st, _, got = request(gw.port, "POST", path, '{"model": "mixed-4", %s, '
                                 '"temperature": 2, "top_p": 0}' % base)
            assert st == 200, (path, st, got[:300])
            st, _, got = request(gw.port, "POST", path, '{"model": "mixed-4", %s, '
                                 '"temperature": 0, "top_p": 1, "stream_options": null}' % base)
            assert st == 200, (path, st, got[:300])
        for path, base in (chat_p, comp_p):
            for stream in ('"stream": false, ', ""):
                body = '{"model": "mixed-4", %s, %s"stream_options": {"include_usage": true}}' % (
                    base, stream)
                st, _, got = request(gw.port, "POST", path, body)
                assert st == 400, (body, st, got[:300])
                e = error_shape(json.loads(got))
                assert e["param"] == "stream_options" and e["code"] is None, (body, e)
                assert e["message"] == ("The 'stream_options' parameter is only allowed when "
                                        "'stream' is enabled."), e
    check("the mock refuses a temperature or top_p out of range, and stream_options "
          "without stream, with a 400 naming it", sampling_refused)

    def embeddings_empty_input_refused():
        # OpenAI's API refuses an empty input list; the mock does not answer it a vector.
        st, _, body = request(gw.port, "POST", "/v1/embeddings",
                              json.dumps({"model": "cjk-1", "input": []}))
        assert st == 400, (st, body[:300])
        e = error_shape(json.loads(body))
        assert e["type"] == "invalid_request_error" and e["param"] == "input", e
        assert e["code"] == "empty_array", e
        st, _, body = request(gw.port, "POST", "/v1/embeddings",
                              json.dumps({"model": "cjk-1", "input": ["a"]}))
        assert st == 200 and len(json.loads(body)["data"]) == 1, (st, body[:300])
    check("the mock refuses an empty embeddings input list with a 400 naming input",
          embeddings_empty_input_refused)

    def chat_empty_messages_refused():
        # OpenAI's API refuses an empty messages list (code empty_array); the
        # mock answered it 200 with its text, streamed or not.
        for stream in (False, True):
            st, _, body = request(gw.port, "POST", "/v1/chat/completions",
                                  json.dumps({"model": "cjk-1", "messages": [],
                                              "stream": stream}))
            assert st == 400, (stream, st, body[:300])
            e = error_shape(json.loads(body))
            assert e["type"] == "invalid_request_error" and e["param"] == "messages", e
            assert e["code"] == "empty_array" and "'messages': empty array" in e["message"], e
        st, _, body = request(gw.port, "POST", "/v1/chat/completions",
                              json.dumps({"model": "cjk-1",
                                          "messages": [{"role": "system", "content": "x"}]}))
        assert st == 200 and json.loads(body)["choices"][0]["message"]["content"], (st, body)
    check("the mock refuses an empty messages list with a 400 naming messages",
          chat_empty_messages_refused)

    def chat_unknown_role_refused():
        # OpenAI's API refuses a role it does not know, naming the first such message;
        # the mock answered it 200.
        msgs = [{"role": "system", "content": "s"}, {"role": "developer", "content": "d"},
                {"role": "user", "content": "u"}, {"role": "wizard", "content": "w"},
                {"role": "robot", "content": "r"}]
        for stream in (False, True):
            st, _, body = request(gw.port, "POST", "/v1/chat/completions",
                                  json.dumps({"model": "cjk-1", "messages": msgs,
                                              "stream": stream}))
            assert st == 400, (stream, st, body[:300])
            e = error_shape(json.loads(body))
            assert e["param"] == "messages[3].role" and e["code"] == "invalid_value", e
            assert e["message"].startswith("Invalid value: 'wizard'. Supported values are:"), e
        known = [{"role": r, "content": "x"} for r in ("system", "developer", "user",
                                                       "assistant", "tool", "function")]
        st, _, body = request(gw.port, "POST", "/v1/chat/completions",
                              json.dumps({"model": "cjk-1", "messages": known}))
        assert st == 200 and json.loads(body)["choices"][0]["message"]["content"], (st, body)
    check("the mock refuses a message role OpenAI's API does not know, naming it",
          chat_unknown_role_refused)

    def token_inputs_counted():
        # A token list's usage counts its tokens, one a number, as OpenAI's API does.
        for path, key in (("/v1/embeddings", "input"), ("/v1/completions", "prompt")):
            for given, want in (([5, 6, 7], 3), ([[1, 2], [3], [4, 5, 6, 7]], 7)):
                st, _, body = request(gw.port, "POST", path,
                                      json.dumps({"model": "cjk-1", key: given}))
                j = json.loads(body)
                assert st == 200, (path, given, st, j)
                u = j["usage"]
                assert u["prompt_tokens"] == want, (path, given, u)
                assert u["total_tokens"] == want + u.get("completion_tokens", 0), (path, u)
    check("the mock's usage counts the tokens of a token-list input or prompt",
          token_inputs_counted)

    def output_limit():
        # A limit below the answer's tokens stops it there, as a model does: usage counts
        # the limit, the text keeps its words in proportion, the finish says "length".
        chat_p = ("/v1/chat/completions", {"messages": HELLO})
        comp_p = ("/v1/completions", {"prompt": "hi"})
        cases = ((chat_p, "mixed-4", {"max_tokens": 2}, "naïve café", 2, "length"),
                 (chat_p, "mixed-4", {"max_completion_tokens": 3}, "naïve café —", 3, "length"),
                 (chat_p, "mixed-4", {"max_tokens": 2, "n": 2}, "naïve café", 4, "length"),
                 (chat_p, "mixed-4", {"max_tokens": 5}, texts["mixed"], 5, "stop"),
                 (chat_p, "mixed-4", {"max_tokens": 100}, texts["mixed"], 5, "stop"),
                 (comp_p, "mixed-4", {"max_tokens": 1}, "naïve", 1, "length"),
                 (chat_p, "counted", {"max_tokens": 4}, "a b", 4, "length"))
        for (path, base), model, limit, text, tokens, finish in cases:
            chat_ = path == "/v1/chat/completions"
            payload = dict(base, model=model, **limit)
            st, _, body = request(gw.port, "POST", path, json.dumps(payload))
            j = json.loads(body)
            assert st == 200, (payload, st, j)
            for c in j["choices"]:
                assert (c["message"]["content"] if chat_ else c["text"]) == text, (payload, c)
                assert c["finish_reason"] == finish, (payload, c)
            assert j["usage"]["completion_tokens"] == tokens, (payload, j["usage"])
            st, _, body = request(gw.port, "POST", path, json.dumps(dict(
                payload, stream=True, stream_options={"include_usage": True})))
            data = sse_data(body)
            got, finishes = "", []
            for d in data:
                for c in d["choices"]:
                    if c["index"] == 0:
                        got += c["delta"].get("content", "") if chat_ else c["text"]
                    if c["finish_reason"]:
                        finishes.append(c["finish_reason"])
            assert got == text and set(finishes) == {finish}, (payload, got, finishes)
            assert data[-1]["usage"]["completion_tokens"] == tokens, (payload, data[-1])
        for stream in (False, True):
            st, _, body = request(gw.port, "POST", "/v1/responses", json.dumps(
                {"model": "mixed-4", "input": "hi", "max_output_tokens": 2, "stream": stream}))
            assert st == 200, (st, body[:300])
            if stream:
                data = sse_data(body)
                assert data[-1]["type"] == "response.incomplete", data[-1]
                assert "".join(d["delta"] for d in data
                               if d["type"] == "response.output_text.delta") == "naïve café"
                r = data[-1]["response"]
            else:
                r = json.loads(body)
            assert r["status"] == "incomplete", r
            assert r["incomplete_details"] == {"reason": "max_output_tokens"}, r
            assert r["output"][0]["content"][0]["text"] == "naïve café", r
            assert r["usage"]["output_tokens"] == 2, r
    check("the mock stops at the request's output limit: usage counts it, the text is "
          "cut, the finish is length (responses: incomplete)", output_limit)


GROUPS = {"sdk": sdk, "proxy": proxy, "forwarding": forwarding, "errors": errors,
          "lifecycle": lifecycle, "headers": headers, "mock": mock}

if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in GROUPS:
        sys.exit("usage: test_gateway.py {%s} LLMROUTE FAKE_UPSTREAM" % "|".join(GROUPS))
    GROUPS[sys.argv[1]](sys.argv[2], sys.argv[3])
    finish()
