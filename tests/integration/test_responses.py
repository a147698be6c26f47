"""test_responses.py -- POST /v1/responses, the OpenAI Responses API, through the gateway.

    python3 test_responses.py LLMROUTE FAKE_UPSTREAM

A request is routed as a chat request is (models, routes, fallbacks, smart routes whose
query text comes from `input`) and forwarded to {base_url}/responses with `model`
replaced. Its stream has no [DONE]: a terminal event (response.completed, .incomplete,
.failed) ends it, and a failure after the first event with content ends the client's
stream with the Responses API's own `event: error`. The fake upstream serves the
Responses shapes (its terminal= option ends a stream otherwise); a scripted upstream
sends fixed bytes where the exact bytes matter.
"""
import json
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (HOST, Fake, Gateway, check, finish, import_ok, read_request,  # noqa
                    request, smart_config, smart_history, wait_for, workdir)

TIMEOUTS = {"connect_ms": 500, "first_byte_ms": 2000, "idle_ms": 1500, "total_ms": 8000}


def post(port, payload, raw=None, timeout=10):
    """(status, headers, parsed JSON or None, body bytes)."""
    st, h, body = request(port, "POST", "/v1/responses",
                          raw if raw is not None else json.dumps(payload), timeout=timeout)
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    return st, h, j, body


def sse_events(body):
    """The stream as [(event name or None, data)], data parsed as JSON."""
    out = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            out.append((name, json.loads("\n".join(data))))
    return out


def assert_error_event(events, code, seq):
    """The stream ends with the Responses API's error event (ResponseErrorEvent)."""
    name, last = events[-1]
    assert name == "error", events[-2:]
    assert set(last) == {"type", "code", "message", "param", "sequence_number"}, last
    assert last["type"] == "error" and last["code"] == code and last["param"] is None, last
    assert isinstance(last["message"], str) and last["message"], last
    assert last["sequence_number"] == seq, (last, seq)
    assert not any(n == "error" for n, _ in events[:-1]), events


class Script:
    """A raw upstream on 127.0.0.1: each connection reads one request, is sent the next
    of `answers` (bytes: head and body as given), then closed."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((HOST, 0))
        self.srv.listen(8)
        self.srv.settimeout(20)
        self.base_url = "http://%s:%d/v1" % (HOST, self.srv.getsockname()[1])
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        try:
            while self.answers:
                c, _ = self.srv.accept()
                c.settimeout(5)
                head, rest = read_request(c)
                self.requests.append((head.split(b"\r\n")[0].decode(), rest))
                c.sendall(self.answers.pop(0))
                c.close()
        except OSError:
            pass
        finally:
            self.srv.close()


def chunked_sse(body, end=True):
    """A 200 event stream with body as one chunk; end=False leaves out the last chunk (a
    cut)."""
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
            b"%x\r\n" % len(body) + body + b"\r\n" + (b"0\r\n\r\n" if end else b""))


# A Responses stream as an upstream may send it, with what the SSE format allows: CRLF
# line ends, a comment, an id field, a terminal event split over two data lines.
SCRIPTED = (
    b'event: response.created\r\n'
    b'data: {"type":"response.created","sequence_number":0,"response":{"id":"r1",'
    b'"object":"response","status":"in_progress","output":[],"usage":null}}\r\n\r\n'
    b': keep-alive\n\n'
    b'event: response.output_text.delta\n'
    b'id: 2\n'
    b'data: {"type":"response.output_text.delta","sequence_number":1,"item_id":"m1",'
    b'"output_index":0,"content_index":0,"delta":"Hel"}\n\n'
    b'event: response.output_text.delta\n'
    b'data: {"type":"response.output_text.delta","sequence_number":2,"item_id":"m1",'
    b'"output_index":0,"content_index":0,"delta":"lo \\u00e9"}\n\n'
    b'event: response.completed\n'
    b'data: {"type":"response.completed","sequence_number":3,\n'
    b'data:  "response":{"id":"r1","object":"response","status":"completed",'
    b'"usage":{"input_tokens":7,"output_tokens":5,"total_tokens":12}}}\n\n')


def main(bin_, fake_bin):
    wd = workdir()
    fakes = {n: Fake(fake_bin, wd, name="fake-" + n) for n in "abc"}
    n_gw = [0]

    def gateway(extra_models=(), routes=None):
        for f in fakes.values():
            f.scenario("ok")
        ms = [{"name": n, "backend": "openai", "base_url": fakes[n].base_url,
               "upstream_model": "up-" + n, "cost_per_input_token": 1e-6,
               "cost_per_output_token": 2e-6} for n in "abc"]
        ms += list(extra_models)
        cfg = {"models": ms,
               "routes": routes or [{"name": "r", "strategy": "sequential", "models": ["b"],
                                     "fallbacks": ["c"]}],
               "server": {"shutdown_timeout_ms": 2000,
                          "resilience": {"timeouts": dict(TIMEOUTS),
                                         "retry": {"base_delay_ms": 20, "max_delay_ms": 50}}}}
        n_gw[0] += 1
        return Gateway(bin_, wd, cfg, name="gw%d" % n_gw[0])

    def stats(name):
        st, _, body = request(fakes[name].port, "GET", "/_stats")
        assert st == 200
        return json.loads(body)["by_path"].get("/v1/responses", 0)

    def log_line(gw, rid):
        """The request's log line, once written (it may come after the answer)."""
        lines = wait_for(lambda: [l for l in gw.log_lines() if l.get("id") == rid], 30,
                         "the log line of " + rid)
        assert len(lines) == 1, lines
        return lines[0]

    gw = gateway()

    def nonstream_forwarded():
        raw = ('{"model": "a", "instructions": "be brief", "input": "hello",\n'
               ' "temperature": 0.70, "seed": 9007199254740993}')
        st, h, j, _ = post(gw.port, None, raw=raw)
        assert st == 200, (st, j)
        assert h["x-llmroute-model"] == "a" and h["x-llmroute-strategy"] == "direct", h
        assert h["x-llmroute-attempts"] == "1", h
        assert j["object"] == "response" and j["model"] == "up-a", j
        logged = [l for l in fakes["a"].logged() if l["path"] == "/v1/responses"][-1]
        assert logged["body"] == raw.replace('"a"', '"up-a"'), logged["body"]
        line = log_line(gw, h["x-request-id"])
        assert line["path"] == "/v1/responses" and line["status"] == 200, line
        u = j["usage"]
        assert line["tokens_in"] == u["input_tokens"] and line["tokens_out"] == 3, line
        m = gw.metrics()
        assert m['llmroute_tokens_total{model="a",direction="in"}'] == u["input_tokens"], m
        assert m['llmroute_tokens_total{model="a",direction="out"}'] == u["output_tokens"], m
        cost = u["input_tokens"] * 1e-6 + u["output_tokens"] * 2e-6
        assert abs(m['llmroute_cost_total{model="a"}'] - cost) < 1e-12, m
    check("a non-stream request goes to {base_url}/responses with model replaced; "
          "usage counted from input_tokens and output_tokens", nonstream_forwarded)

    def route_falls_back_before_content():
        # created, in_progress, output_item.added, content_part.added: no text yet
        fakes["b"].scenario("cut_after=4")
        st, h, body = request(gw.port, "POST", "/v1/responses",
                              json.dumps({"model": "r", "input": "hi", "stream": True}))
        assert st == 200 and h["x-llmroute-model"] == "c", (st, h, body)
        assert h["x-llmroute-attempts"] == "2" and h["x-llmroute-route"] == "r", h
        ev = sse_events(body)
        assert [d["type"] for _, d in ev[:4]] == [
            "response.created", "response.in_progress", "response.output_item.added",
            "response.content_part.added"], ev
        assert ev[-1][1]["type"] == "response.completed", ev[-1]
        assert ev[0][1]["response"]["model"] == "up-c", ev[0]
        assert b"[DONE]" not in body, body
        assert stats("b") == 1 and stats("c") == 1
        m = gw.metrics()
        assert m['llmroute_upstream_attempts_total{model="b",class="stream_cut"}'] == 1, m
        # Non-stream: a 500 from the first model falls back too.
        fakes["b"].scenario("status=500")
        st, h, j, _ = post(gw.port, {"model": "r", "input": "hi"})
        assert st == 200 and h["x-llmroute-model"] == "c" and j["model"] == "up-c", (st, h, j)
    check("a route falls back when its first model fails before any content",
          route_falls_back_before_content)

    def stream_cut_after_content():
        fakes["c"].scenario("ok")  # its request count from 0
        fakes["b"].scenario("cut_after=6")  # ... and two deltas, then closed
        st, h, body = request(gw.port, "POST", "/v1/responses",
                              json.dumps({"model": "r", "input": "hi", "stream": True}))
        assert st == 200 and h["x-llmroute-model"] == "b", (st, h)
        ev = sse_events(body)
        assert [d["type"] for _, d in ev[4:6]] == ["response.output_text.delta"] * 2, ev
        assert len(ev) == 7, ev
        assert_error_event(ev, "upstream_stream_cut", 6)
        assert b"[DONE]" not in body and b"data: {\"error\"" not in body, body
        assert stats("c") == 0
        m = gw.metrics()
        assert m['llmroute_upstream_attempts_total{model="b",class="stream_cut"}'] == 2, m
        line = log_line(gw, h["x-request-id"])
        assert line["error"] == "stream_cut", line
    check("a stream cut after content ends with the Responses error event; stream_cut",
          stream_cut_after_content)

    def clean_end_without_terminal():
        fakes["a"].scenario("terminal=none")
        st, h, body = request(gw.port, "POST", "/v1/responses",
                              json.dumps({"model": "a", "input": "hi", "stream": True}))
        assert st == 200, st
        ev = sse_events(body)
        assert ev[-2][1]["type"] == "response.output_item.done", ev
        assert_error_event(ev, "upstream_stream_cut", ev[-2][1]["sequence_number"] + 1)
        m = gw.metrics()
        assert m['llmroute_upstream_attempts_total{model="a",class="stream_cut"}'] == 1, m
    check("a stream that ends cleanly with no terminal event gets the error event",
          clean_end_without_terminal)

    def stall_and_malformed_after_content():
        for spec, code in (("stall_after=6", "upstream_stream_stall"),
                           ("malformed_after=6", "upstream_malformed")):
            fakes["a"].scenario(spec)
            st, h, body = request(gw.port, "POST", "/v1/responses",
                                  json.dumps({"model": "a", "input": "hi", "stream": True}))
            assert st == 200, st
            assert b"{not json" not in body, body
            ev = sse_events(body)
            assert len(ev) == 7, ev
            assert_error_event(ev, code, 6)
    check("a stall or a malformed event after content: the error event with its code",
          stall_and_malformed_after_content)

    def incomplete_is_whole():
        fakes["a"].scenario("terminal=incomplete")
        st, h, body = request(gw.port, "POST", "/v1/responses",
                              json.dumps({"model": "a", "input": "hi", "stream": True}))
        ev = sse_events(body)
        assert st == 200 and ev[-1][0] == "response.incomplete", ev[-1]
        line = log_line(gw, h["x-request-id"])
        assert "error" not in line and line["tries"][-1]["class"] == "ok", line
    check("response.incomplete ends the stream as a success", incomplete_is_whole)

    def response_failed_relayed():
        fakes["a"].scenario("terminal=failed")
        st, h, body = request(gw.port, "POST", "/v1/responses",
                              json.dumps({"model": "a", "input": "hi", "stream": True}))
        assert st == 200, st
        ev = sse_events(body)
        assert ev[-1] == ("response.failed", ev[-1][1]), ev[-1]
        assert ev[-1][1]["response"]["error"]["code"] == "server_error", ev[-1]
        assert not any(n == "error" for n, _ in ev), ev
        line = log_line(gw, h["x-request-id"])
        assert line["status"] == 200 and line["error"] == "response_failed", line
        assert line["tries"][-1]["class"] == "ok", line
    check("response.failed ends the stream as it came: relayed, logged response_failed",
          response_failed_relayed)

    def no_user_text():
        items = [{"type": "function_call_output", "call_id": "c1", "output": "42"},
                 {"role": "assistant", "content": "Write a python function"}]
        # A smart route serves it on the models' priors, as a blank query:
        # instructions are not query text, so they do not move the choice.
        st, h, j, _ = post(sg.port, {"model": "auto", "instructions": "What is 1 plus 2?",
                                     "input": items})
        assert st == 200 and j["object"] == "response", (st, j)
        assert h["x-llmroute-strategy"] == "smart", h
        st2, h2, j2, _ = post(sg.port, {"model": "auto", "input": "   "})
        assert st2 == 200 and h2["x-llmroute-model"] == h["x-llmroute-model"], (h, h2)
        # A model named directly needs no query text.
        st, h, j, _ = post(sg.port, {"model": "cheapo", "input": items})
        assert st == 200 and j["object"] == "response", (st, j)
        st, h, j, _ = post(sg.port, {"model": "auto", "input": 7})
        assert st == 400 and j["error"]["param"] == "input", (st, j)

    def smart_query_from_input():
        def routed(inp, **kw):
            st, h, j, _ = post(sg.port, dict({"model": "auto", "input": inp}, **kw))
            assert st == 200, (st, j)
            return h["x-llmroute-model"], j
        code = "Write a python function parse_77 that reads a csv file into a list of dicts"
        sums = "What is 50 plus 53?"
        assert routed(sums)[0] == "cheapo"
        model, j = routed(code, instructions=sums)
        assert model == "smarty", model
        assert j["output"][0]["content"][0]["text"] == "careful answer", j
        # The last user message is the text: a string, or its input_text parts joined.
        assert routed([{"role": "user", "content": code},
                       {"role": "assistant", "content": "ok"},
                       {"type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": "What is 50"},
                                    {"type": "input_image", "image_url": "x"},
                                    {"type": "input_text", "text": "plus 53?"}]},
                       {"type": "function_call_output", "call_id": "c", "output": code}]
                      )[0] == "cheapo"
        assert routed([{"role": "user", "content": sums},
                       {"role": "system", "content": sums},
                       {"role": "user", "content": [{"type": "input_text", "text": code}]}],
                      instructions=sums)[0] == "smarty"
        # The mock answers with the Responses stream too.
        st, h, body = request(sg.port, "POST", "/v1/responses",
                              json.dumps({"model": "auto", "input": code, "stream": True}))
        ev = sse_events(body)
        assert st == 200 and h["x-llmroute-model"] == "smarty", (st, h)
        assert [n for n, _ in ev[:3]] == ["response.created", "response.output_item.added",
                                          "response.content_part.added"], ev
        assert [d["sequence_number"] for _, d in ev] == list(range(len(ev))), ev
        assert "".join(d["delta"] for n, d in ev if n == "response.output_text.delta") == \
            "careful answer", ev
        assert ev[-1][1]["type"] == "response.completed", ev
        assert ev[-1][1]["response"]["usage"]["output_tokens"] == 2, ev

    store = os.path.join(wd, "history.db")
    hist = os.path.join(wd, "history.jsonl")
    smart_history(hist, 40, "responses")
    import_ok(bin_, store, hist)
    sg = Gateway(bin_, wd, smart_config(store), name="gw-smart")
    check("a smart route takes its query text from input (a string; the last user item)",
          smart_query_from_input)
    check("no user text in input: a smart route serves it on the priors, as a blank one",
          no_user_text)

    def all_user_joins_user_items():
        code = "Write a python function parse_77 that reads a csv file into a list of dicts"
        items = [{"role": "user", "content": code}, {"role": "assistant", "content": "ok"},
                 {"role": "user", "content": ""}]
        # The last user item is empty: no text for the smart route, which
        # serves it on the priors as a blank query (cheapo here), not on the
        # code question before it.
        st, h, j, _ = post(sg.port, {"model": "auto", "input": items})
        st2, h2, _, _ = post(sg.port, {"model": "auto", "input": " "})
        assert st == 200 and st2 == 200, (st, j, st2)
        assert h["x-llmroute-model"] == h2["x-llmroute-model"] == "cheapo", (h, h2)
        cfg = smart_config(store)
        cfg["router"]["query_text"] = "all_user"
        g = Gateway(bin_, wd, cfg, name="gw-all-user")
        st, h, j, _ = post(g.port, {"model": "auto", "input": items})
        assert st == 200 and h["x-llmroute-model"] == "smarty", (st, h, j)
    check("router.query_text all_user joins every user item of input",
          all_user_joins_user_items)

    def scripted_stream_byte_for_byte():
        s = Script([chunked_sse(SCRIPTED)])
        g = gateway([{"name": "script", "backend": "openai", "base_url": s.base_url,
                      "upstream_model": "up-s", "cost_per_input_token": 1e-6,
                      "cost_per_output_token": 2e-6}])
        st, h, body = request(g.port, "POST", "/v1/responses",
                              json.dumps({"model": "script", "input": "hi", "stream": True}))
        assert st == 200 and h["content-type"] == "text/event-stream", (st, h)
        assert body == SCRIPTED, body
        assert s.requests[0][0] == "POST /v1/responses HTTP/1.1", s.requests
        assert json.loads(s.requests[0][1])["model"] == "up-s", s.requests
        m = g.metrics()
        assert m['llmroute_upstream_attempts_total{model="script",class="ok"}'] == 1, m
        assert m['llmroute_tokens_total{model="script",direction="in"}'] == 7, m
        assert m['llmroute_tokens_total{model="script",direction="out"}'] == 5, m
        line = log_line(g, h["x-request-id"])
        assert line["status"] == 200 and "error" not in line, line
        assert line["tokens_in"] == 7 and line["tokens_out"] == 5, line
    check("a stream is relayed byte for byte and its terminal event ends it as a success",
          scripted_stream_byte_for_byte)

    def cut_after_terminal():
        # Cut after the whole terminal event; then cut right after its one data line,
        # before the blank line that ends it: both are whole answers.
        one_line = SCRIPTED.replace(b',\ndata:  "response"', b',"response"')
        last = one_line.rindex(b"\n\n") + 1
        s = Script([chunked_sse(one_line, end=False), chunked_sse(one_line[:last], end=False)])
        g = gateway([{"name": "script", "backend": "openai", "base_url": s.base_url}])
        for want in (one_line, one_line):
            st, h, body = request(g.port, "POST", "/v1/responses",
                                  json.dumps({"model": "script", "input": "hi",
                                              "stream": True}))
            assert st == 200 and body == want, body[-200:]
        m = g.metrics()
        assert m['llmroute_upstream_attempts_total{model="script",class="ok"}'] == 2, m
        assert m.get('llmroute_upstream_attempts_total{model="script",class="stream_cut"}',
                     0) == 0, m
        assert m['llmroute_tokens_total{model="script",direction="out"}'] == 10, m
    check("a cut after the terminal event is still a success", cut_after_terminal)

    def clean_end_inside_an_event():
        # The body ends properly inside the second delta, before the terminal
        # event: a cut stream either way. A whole delta is relayed (with the
        # blank line it lacked) before the error event; one cut inside its
        # JSON is not, and is no malformed event.
        upto = SCRIPTED.index(b"event: response.completed")
        whole = SCRIPTED[:upto - 2]  # the last delta without its blank line
        cut = whole[:-20]
        s = Script([chunked_sse(whole), chunked_sse(cut)])
        g = gateway([{"name": "script", "backend": "openai", "base_url": s.base_url}])
        for body_sent, seq in ((whole, 3), (cut, 2)):
            st, h, body = request(g.port, "POST", "/v1/responses",
                                  json.dumps({"model": "script", "input": "hi",
                                              "stream": True}))
            assert st == 200, (st, body)
            ev = sse_events(body)
            assert_error_event(ev, "upstream_stream_cut", seq)
            assert [d["sequence_number"] for _, d in ev[:-1]] == list(range(seq)), ev
            if seq == 3:
                assert body.startswith(whole + b"\n\nevent: error\n"), body
        m = g.metrics()
        assert m['llmroute_upstream_attempts_total{model="script",class="stream_cut"}'] == 2, m
    check("a body that ends cleanly inside an event: a whole one is relayed before the error "
          "event, a cut one is not; both are stream_cut", clean_end_inside_an_event)

    def wide_events():
        # A server's own extensions may put more members in an event than the usual
        # handful, before the ones the gateway reads: the terminal event still ends the
        # stream, its usage is still counted, and an `error` member still fails it.
        ext = b"".join(b'"x_%d":%d,' % (i, i) for i in range(20))
        wide = (
            b'event: response.created\n'
            b'data: {' + ext + b'"type":"response.created","sequence_number":0,'
            b'"response":{"id":"rw","status":"in_progress","output":[],"usage":null}}\n\n'
            b'event: response.output_text.delta\n'
            b'data: {' + ext + b'"type":"response.output_text.delta","sequence_number":1,'
            b'"item_id":"m1","output_index":0,"content_index":0,"delta":"Hi"}\n\n'
            b'event: response.completed\n'
            b'data: {' + ext + b'"type":"response.completed","sequence_number":2,'
            b'"response":{"id":"rw","status":"completed",'
            b'"usage":{"input_tokens":4,"output_tokens":3,"total_tokens":7}}}\n\n')
        err = b'data: {' + ext + b'"error":{"message":"engine dead","type":"server_error"}}\n\n'
        s = Script([chunked_sse(wide), chunked_sse(err)])
        g = gateway([{"name": "script", "backend": "openai", "base_url": s.base_url}])
        st, h, body = request(g.port, "POST", "/v1/responses",
                              json.dumps({"model": "script", "input": "hi", "stream": True}))
        assert st == 200 and body == wide, (st, body[-300:])
        m = g.metrics()
        assert m['llmroute_upstream_attempts_total{model="script",class="ok"}'] == 1, m
        assert m['llmroute_tokens_total{model="script",direction="in"}'] == 4, m
        assert m['llmroute_tokens_total{model="script",direction="out"}'] == 3, m
        st, h, j, body = post(g.port, {"model": "script", "input": "hi", "stream": True})
        assert st == 502 and j["error"]["code"] == "upstream_server_error", (st, body[:300])
        assert "engine dead" in j["error"]["message"], j
    check("an event with more than 16 members is read whole: its terminal type, usage and "
          "error member count", wide_events)

    def upstream_errors():
        # An upstream's own error status is relayed as it came.
        fakes["a"].scenario("status=400;code=invalid_value;message=bad%20input")
        st, h, j, _ = post(gw.port, {"model": "a", "input": "hi"})
        assert st == 400 and j["error"]["code"] == "invalid_value", (st, j)
        st, h, j, _ = post(gw.port, {"model": "nope", "input": "hi"})
        assert st == 404 and j["error"]["code"] == "model_not_found", (st, j)
    check("errors: the upstream's own, and an unknown model", upstream_errors)

    finish()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
