"""test_response_affinity.py -- response affinity on POST /v1/responses.

    python3 test_response_affinity.py LLMROUTE FAKE_UPSTREAM

The gateway remembers which configured model served each Responses answer (by its
response id, bounded by server.response_affinity_entries) and sends a follow-up whose
previous_response_id it knows to that model, before any strategy runs, when the model is
one of the request's candidates. The route here is sequential over two fake upstreams, so
without affinity the follow-up would go to the other one. GET, DELETE, the cancel and the
input_items of an id go to the upstream that served it; an id the gateway did not see is a
404.
"""
import json
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (HOST, Fake, Gateway, Upstream, check, finish, read_request,  # noqa
                    read_to_close, request, wait_for, workdir)


def post(port, payload, headers=None):
    st, h, body = request(port, "POST", "/v1/responses", json.dumps(payload), headers)
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    return st, h, j, body


def stream_id(body):
    """The response id a stream's response.created carries."""
    for block in body.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:"):
                d = json.loads(line[5:])
                if d.get("type") == "response.created":
                    return d["response"]["id"]
    raise AssertionError("no response.created in %r" % body[:300])


class Keeper(Upstream):
    """An upstream that answers POST /v1/responses with a response of its own id
    (NAME-resp-N), and any other request with 200 and a JSON echo of its request line and
    body; every request line is kept in self.lines."""

    def __init__(self, name):
        super().__init__()
        self.name = name
        self.lines = []
        self.fail = False  # answer POSTs 500
        self.id_pad = ""  # appended to each id (a long id)
        self.error_event = False  # a stream POST: response.created, then an error event
        self.wide = 0  # a POST's response: this many members of its own before id and usage
        self.n = 0
        self.lock = threading.Lock()
        self.start()

    def serve(self, c):
        c.settimeout(10)
        try:
            while True:
                try:
                    head, body = read_request(c)
                except (ConnectionError, IndexError, OSError):
                    return
                line = head.split(b"\r\n")[0].decode()
                auth = [l for l in head.split(b"\r\n")
                        if l.lower().startswith(b"authorization:")]
                with self.lock:
                    self.lines.append(line)
                    self.n += 1
                    n = self.n
                method, target, _ = line.split(" ")
                status = b"200 OK"
                rid = "%s-resp-%d%s" % (self.name, n, self.id_pad)
                sse = None
                if method == "POST" and target == "/v1/responses" and b'"stream": true' in body:
                    created = {"type": "response.created", "sequence_number": 0,
                               "response": {"id": rid, "status": "in_progress"}}
                    sse = "event: response.created\ndata: %s\n\n" % json.dumps(created)
                    if self.error_event:
                        sse += "event: error\ndata: %s\n\n" % json.dumps(
                            {"type": "error", "sequence_number": 1, "code": "server_error",
                             "message": "engine died", "param": None})
                    else:
                        sse += "event: response.completed\ndata: %s\n\n" % json.dumps(
                            {"type": "response.completed", "sequence_number": 1,
                             "response": {"id": rid, "status": "completed", "output": []}})
                elif method == "GET" and "stream=true" in target:
                    sse = "event: response.completed\ndata: %s\n\n" % json.dumps(
                        {"type": "response.completed", "sequence_number": 9,
                         "response": {"id": target.split("/")[3].split("?")[0],
                                      "status": "completed", "output": [],
                                      "usage": {"input_tokens": 5, "output_tokens": 7,
                                                "total_tokens": 12}}})
                if sse is not None:
                    data = sse.encode()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(data) + data)
                    continue
                if method == "DELETE" and self.id_pad:
                    c.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                    continue
                if method == "POST" and target == "/v1/responses" and self.fail:
                    status = b"500 Internal Server Error"
                    out = {"error": {"message": "failing", "type": "server_error",
                                     "param": None, "code": None}}
                elif method == "POST" and target == "/v1/responses":
                    out = {"x_%d" % i: i for i in range(self.wide)}
                    out.update({"id": rid, "object": "response",
                                "status": "completed", "output": [],
                                "usage": {"input_tokens": 1, "output_tokens": 1,
                                          "total_tokens": 2}})
                else:
                    out = {"upstream": self.name, "method": method, "target": target,
                           "body": body.decode(),
                           "authorization": auth[0].decode().split(":", 1)[1].strip()
                           if auth else None}
                data = json.dumps(out).encode()
                c.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(data) + data)
        finally:
            c.close()


def main(bin_, fake_bin):
    wd = workdir()
    # Fake upstreams number their ids each from 1, so the two would give the same ids:
    # the routing checks run on Keepers, whose ids hold their name.
    fakes = {n: Fake(fake_bin, wd, name="fake-" + n) for n in "xy"}
    ups = {n: Keeper(n) for n in "xy"}
    n_gw = [0]

    def models_of(backends):
        return [{"name": n, "backend": "openai", "base_url": backends[n].base_url,
                 "upstream_model": "up-" + n} for n in "xy"]

    def config(server=None, models=None, routes=None):
        ms = models or models_of(ups)
        return {"models": ms,
                "routes": routes or [{"name": "seq", "strategy": "sequential",
                                      "models": [m["name"] for m in ms]}],
                "server": dict({"shutdown_timeout_ms": 2000}, **(server or {}))}

    def gateway(server=None, models=None, routes=None, env=None):
        n_gw[0] += 1
        return Gateway(bin_, wd, config(server, models, routes), name="gw%d" % n_gw[0],
                       env=env)

    def affinity(gw):
        m = gw.metrics()
        return {r: m.get('llmroute_response_affinity_total{result="%s"}' % r, 0)
                for r in ("hit", "miss", "not_candidate")}

    gw = gateway()

    def follow_up_lands_on_the_same_model():
        st, h, j, _ = post(gw.port, {"model": "seq", "input": "first"})
        assert st == 200, (st, j)
        first = h["x-llmroute-model"]
        rid = j["id"]
        for i in range(3):
            st, h, j, _ = post(gw.port, {"model": "seq", "input": "next %d" % i,
                                         "previous_response_id": rid})
            assert st == 200, (st, j)
            assert h["x-llmroute-model"] == first, (first, h)
            assert h["x-llmroute-strategy"] == "affinity", h
            assert h["x-llmroute-route"] == "seq", h
            rid = j["id"]
        assert affinity(gw)["hit"] == 3, affinity(gw)
        line = [l for l in gw.log_lines() if l.get("id") == h["x-request-id"]][-1]
        assert line["strategy"] == "affinity" and line["model"] == first, line
    check("a non-stream answer's id sends its follow-ups to the model that served it",
          follow_up_lands_on_the_same_model)

    def wide_answer():
        # A response object with more top-level members than a fixed table holds, its id
        # and usage after them: both are still read.
        g = gateway()
        ups["x"].wide = 100
        try:
            st, h, j, _ = post(g.port, {"model": "x", "input": "wide"})
            assert st == 200 and len(j) > 100, (st, h)
            rid = j["id"]
        finally:
            ups["x"].wide = 0
        m = g.metrics()
        for d in ("in", "out"):
            k = 'llmroute_tokens_total{model="x",direction="%s"}' % d
            assert m.get(k) == 1, (k, m.get(k))
        st, h, j, _ = post(g.port, {"model": "seq", "models": ["y", "x"], "input": "again",
                                    "previous_response_id": rid})
        assert st == 200 and h["x-llmroute-model"] == "x", (st, h)
        assert h["x-llmroute-strategy"] == "affinity", h
    check("an answer with over 64 top-level members has its usage counted and its id kept",
          wide_answer)

    def stream_origin():
        g = gateway(models=models_of(fakes))
        st, h, body = request(g.port, "POST", "/v1/responses",
                              json.dumps({"model": "seq", "input": "s", "stream": True}))
        assert st == 200, (st, body)
        first = h["x-llmroute-model"]
        rid = stream_id(body)
        for stream in (False, True, False):
            st, h, body = request(g.port, "POST", "/v1/responses",
                                  json.dumps({"model": "seq", "input": "again",
                                              "stream": stream,
                                              "previous_response_id": rid}))
            assert st == 200 and h["x-llmroute-model"] == first, (first, h)
            assert h["x-llmroute-strategy"] == "affinity", h
    check("a stream's response.created id sends its follow-ups to the model that served it",
          stream_origin)

    def miss_routes_as_before():
        before = affinity(gw)
        models = []
        for _ in range(2):
            st, h, j, _ = post(gw.port, {"model": "seq", "input": "x",
                                         "previous_response_id": "resp-unknown"})
            assert st == 200 and h["x-llmroute-strategy"] == "sequential", h
            models.append(h["x-llmroute-model"])
        assert sorted(models) == ["x", "y"], models
        after = affinity(gw)
        assert after["miss"] == before["miss"] + 2 and after["hit"] == before["hit"], after
    check("an unknown previous_response_id is routed as without affinity (a miss)",
          miss_routes_as_before)

    def not_a_candidate():
        st, h, j, _ = post(gw.port, {"model": "x", "input": "direct"})
        assert st == 200 and h["x-llmroute-strategy"] == "direct", h
        rid = j["id"]
        before = affinity(gw)
        # Named directly, the same model: a hit.
        st, h, j, _ = post(gw.port, {"model": "x", "input": "x",
                                     "previous_response_id": rid})
        assert h["x-llmroute-model"] == "x" and h["x-llmroute-strategy"] == "affinity", h
        # Named directly, another model: not a candidate, sent where named.
        st, h, j, _ = post(gw.port, {"model": "y", "input": "x",
                                     "previous_response_id": rid})
        assert h["x-llmroute-model"] == "y" and h["x-llmroute-strategy"] == "direct", h
        # The request's own models decide the candidates, also with a route named.
        st, h, j, _ = post(gw.port, {"model": "seq", "models": ["y"], "input": "x",
                                     "previous_response_id": rid})
        assert h["x-llmroute-model"] == "y", h
        st, h, j, _ = post(gw.port, {"models": ["y", "x"], "input": "x",
                                     "previous_response_id": rid})
        assert h["x-llmroute-model"] == "x" and h["x-llmroute-strategy"] == "affinity", h
        after = affinity(gw)
        assert after["hit"] == before["hit"] + 2, (before, after)
        assert after["not_candidate"] == before["not_candidate"] + 2, (before, after)
    check("a model that is not among the request's candidates is not sent to "
          "(named directly, or the request's models)", not_a_candidate)

    def route_fallbacks_follow():
        # The model that served the id fails: the route's explicit fallback is tried
        # after it, as without affinity.
        g = gateway(routes=[{"name": "seq", "strategy": "sequential", "models": ["x", "y"],
                             "fallbacks": ["y"]}])
        st, h, j, _ = post(g.port, {"model": "x", "input": "x"})
        rid = j["id"]
        ups["x"].fail = True
        try:
            st, h, j, _ = post(g.port, {"model": "seq", "input": "x",
                                        "previous_response_id": rid})
            assert st == 200 and h["x-llmroute-model"] == "y", (st, h, j)
            assert int(h["x-llmroute-attempts"]) >= 2, h
            assert h["x-llmroute-strategy"] == "affinity", h
        finally:
            ups["x"].fail = False
    check("the route's fallbacks stay after the model affinity chose", route_fallbacks_follow)

    def fallback_answer_followed_up():
        # The route's model failed and its fallback answered: a follow-up through the
        # same route goes back to the fallback, the one upstream that knows the id, not
        # to the route's model (which would not).
        g = gateway(routes=[{"name": "prim", "strategy": "sequential", "models": ["x"],
                             "fallbacks": ["y"]}])
        ups["x"].fail = True
        try:
            st, h, j, _ = post(g.port, {"model": "prim", "input": "first"})
            assert st == 200 and h["x-llmroute-model"] == "y", (st, h, j)
            rid = j["id"]
        finally:
            ups["x"].fail = False
        before = affinity(g)
        st, h, j, _ = post(g.port, {"model": "prim", "input": "next",
                                    "previous_response_id": rid})
        assert st == 200 and h["x-llmroute-model"] == "y", (st, h, j)
        assert h["x-llmroute-strategy"] == "affinity", h
        assert h["x-llmroute-attempts"] == "1", h
        assert affinity(g)["hit"] == before["hit"] + 1, (before, affinity(g))
    check("an answer a route's fallback gave has its follow-ups sent back to that fallback",
          fallback_answer_followed_up)

    def eviction_at_capacity():
        g = gateway({"response_affinity_entries": 2})
        ids = []
        for i in range(3):
            st, h, j, _ = post(g.port, {"model": "x", "input": "x"})
            ids.append(j["id"])
        # The first is the least recently used, and went when the third came. (Each
        # answer below adds its own id too: the follow-up to the first evicts the second.)
        for rid, strategy in ((ids[0], "sequential"), (ids[2], "affinity")):
            st, h, j, _ = post(g.port, {"models": ["y", "x"], "input": "x",
                                        "previous_response_id": rid})
            assert h["x-llmroute-strategy"] == strategy, (rid, h)
        assert affinity(g)["miss"] == 1, affinity(g)
    check("at server.response_affinity_entries the least recently used id is forgotten",
          eviction_at_capacity)

    def zero_turns_it_off():
        g = gateway({"response_affinity_entries": 0})
        st, h, j, _ = post(g.port, {"model": "x", "input": "x"})
        rid = j["id"]
        models = []
        for _ in range(2):
            st, h, j, _ = post(g.port, {"model": "seq", "input": "x",
                                        "previous_response_id": rid})
            assert h["x-llmroute-strategy"] == "sequential", h
            models.append(h["x-llmroute-model"])
        assert sorted(models) == ["x", "y"], models
        m = g.metrics()
        for r in ("hit", "miss", "not_candidate"):
            assert m['llmroute_response_affinity_total{result="%s"}' % r] == 0, m
        # Nothing kept: the id it served is not known to a retrieve either.
        st, h, raw = request(g.port, "GET", "/v1/responses/" + rid)
        assert st == 404, (st, raw)
        assert json.loads(raw)["error"]["code"] == "response_not_found", raw
    check("server.response_affinity_entries 0 turns affinity off", zero_turns_it_off)

    def survives_reload():
        import signal
        g = gateway()
        st, h, j, _ = post(g.port, {"model": "x", "input": "x"})
        rid = j["id"]
        g.write_config(config())
        g.signal(signal.SIGHUP)
        wait_for(lambda: g.events("reloaded"), 30, "the reload")
        st, h, j, _ = post(g.port, {"model": "seq", "input": "x",
                                    "previous_response_id": rid})
        assert h["x-llmroute-model"] == "x" and h["x-llmroute-strategy"] == "affinity", h
        # x removed by a reload: the entry is ignored (a miss).
        g.write_config(config(models=[{"name": "y", "backend": "openai",
                                       "base_url": ups["y"].base_url}]))
        g.signal(signal.SIGHUP)
        wait_for(lambda: len(g.events("reloaded")) == 2, 30, "the second reload")
        st, h, j, _ = post(g.port, {"model": "seq", "input": "x",
                                    "previous_response_id": rid})
        assert st == 200 and h["x-llmroute-model"] == "y", (st, h)
        assert h["x-llmroute-strategy"] == "sequential", h
        assert affinity(g)["miss"] == 1, affinity(g)
    check("the ids survive a reload; one whose model a reload removed is a miss",
          survives_reload)

    def requests_about_an_id(client):
        env = {"GW_KEYS": "gwkey", "KEY_X": "key-x", "KEY_Y": "key-y"}
        if client:
            env["LLMROUTE_UPSTREAM_CLIENT"] = client
        g = gateway(models=[dict(m, api_key_env="KEY_" + m["name"].upper())
                            for m in models_of(ups)],
                    server={"api_keys_env": "GW_KEYS"}, env=env)
        auth = {"Authorization": "Bearer gwkey"}
        ids = {}
        for name in "xy":
            st, h, j, _ = post(g.port, {"model": name, "input": "x"}, auth)
            assert st == 200, (st, j)
            ids[name] = j["id"]
        for name in "xy":
            rid = ids[name]
            # DELETE last: a deleted id is forgotten (checked below).
            for method, path, body in (
                    ("GET", "/v1/responses/%s?include[]=x&starting_after=7" % rid, None),
                    ("POST", "/v1/responses/%s/cancel" % rid, ""),
                    ("GET", "/v1/responses/%s/input_items?limit=2&order=asc" % rid, None),
                    ("HEAD" if name == "x" else "GET", "/v1/responses/%s" % rid, None),
                    ("DELETE", "/v1/responses/%s" % rid, None)):
                st, h, raw = request(g.port, method, path, body, auth)
                assert st == 200, (method, path, st, raw)
                if method == "HEAD":
                    # a GET upstream, answered without its body
                    assert raw == b"" and h["x-llmroute-model"] == name, (st, h, raw)
                    assert ups[name].lines[-1] == "GET %s HTTP/1.1" % path, ups[name].lines[-1]
                    continue
                j = json.loads(raw)
                assert j["upstream"] == name and j["method"] == method, (path, j)
                assert j["target"] == path, (j["target"], path)
                assert j["authorization"] == "Bearer key-" + name, j
                assert h["x-llmroute-model"] == name, h
                assert h["x-llmroute-strategy"] == "affinity", h
                line = [l for l in wait_for(lambda: [l for l in g.log_lines()
                                                     if l.get("id") == h["x-request-id"]],
                                            5, "the log line")][0]
                assert line["method"] == method and line["path"] == path.split("?")[0], line
                assert line["model"] == name and line["status"] == 200, line
        # Deleted upstream, so forgotten here: the gateway's own 404, nothing forwarded.
        sent = len(ups["y"].lines)
        st, h, raw = request(g.port, "GET", "/v1/responses/" + ids["y"], None, auth)
        assert st == 404 and json.loads(raw)["error"]["code"] == "response_not_found", (st, raw)
        assert len(ups["y"].lines) == sent, ups["y"].lines[sent:]
        m = g.metrics()
        assert m['llmroute_http_requests_total{endpoint="/v1/responses/",status="200"}'] \
            == 10, m
        # No key: 401, as on every /v1 endpoint.
        st, h, raw = request(g.port, "GET", "/v1/responses/" + ids["x"])
        assert st == 401, (st, raw)
    check("GET, DELETE, cancel and input_items of an id go to the upstream that served it, "
          "with its key and the query string", requests_about_an_id, None)
    check("the same through libcurl (LLMROUTE_UPSTREAM_CLIENT=curl)", requests_about_an_id,
          "curl")

    def unknown_id_and_wrong_requests():
        g = gateway()
        n = {k: len(u.lines) for k, u in ups.items()}
        for method, path in (("GET", "/v1/responses/resp_nope"),
                             ("DELETE", "/v1/responses/resp_nope"),
                             ("POST", "/v1/responses/resp_nope/cancel"),
                             ("GET", "/v1/responses/resp_nope/input_items?limit=1")):
            st, h, raw = request(g.port, method, path, "" if method == "POST" else None)
            assert st == 404, (method, path, st, raw)
            e = json.loads(raw)["error"]
            assert e["code"] == "response_not_found" and e["param"] == "response_id", e
            assert "resp_nope" in e["message"] and "since it started" in e["message"], e
            assert e["type"] == "invalid_request_error", e
        st, h, j, _ = post(g.port, {"model": "x", "input": "x"})
        rid = j["id"]
        st, h, raw = request(g.port, "POST", "/v1/responses/" + rid, "")
        assert st == 405 and h["allow"] == "GET, HEAD, DELETE", (st, h, raw)
        st, h, raw = request(g.port, "GET", "/v1/responses/%s/cancel" % rid)
        assert st == 405 and h["allow"] == "POST", (st, h, raw)
        st, h, raw = request(g.port, "GET", "/v1/responses/%s/other" % rid)
        assert st == 404 and json.loads(raw)["error"]["code"] == "unknown_url", (st, raw)
        st, h, raw = request(g.port, "PUT", "/v1/responses/" + rid, "")
        assert st == 405, (st, raw)
        assert {k: len(u.lines) for k, u in ups.items()} == \
            {k: v + (k == "x") for k, v in n.items()}, "nothing more went upstream"
    check("an id the gateway did not serve is 404 response_not_found; other paths and "
          "methods under it are 404 and 405", unknown_id_and_wrong_requests)

    def config_bounds():
        for bad in (-1, 1000001, 1.5, "10", True):
            path = os.path.join(wd, "bad.json")
            with open(path, "w") as f:
                json.dump(config({"response_affinity_entries": bad}), f)
            r = subprocess.run([bin_, "check-config", path], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 2, (bad, r.returncode, r.stderr)
            assert "server.response_affinity_entries" in r.stderr, (bad, r.stderr)
        for good in (0, 1, 1000000):
            with open(path, "w") as f:
                json.dump(config({"response_affinity_entries": good}), f)
            r = subprocess.run([bin_, "check-config", path], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 0, (good, r.stderr)
    check("server.response_affinity_entries outside 0 to 1000000 is refused, naming it",
          config_bounds)

    def retrieve_stream_delete_204_and_long_ids():
        # A 250-byte id, a retrieve that resumes the event stream, a DELETE
        # answered 204 with no body; then the id is forgotten.
        for u in ups.values():
            u.id_pad = "p" * 240
        try:
            g = gateway()
            st, h, j, _ = post(g.port, {"model": "x", "input": "long"})
            assert st == 200 and len(j["id"]) >= 240, (st, j)
            rid = j["id"]
            for _ in range(2):
                st, h, body = request(g.port, "GET", "/v1/responses/%s?stream=true" % rid)
                assert st == 200 and h["content-type"].startswith("text/event-stream"), (st, h, body)
                assert b"response.completed" in body, body
                # Its usage was the POST's, counted when it was made: the
                # retrieve's line carries none (nor a cost), as a
                # non-stream retrieve's does not.
                rq = h["x-request-id"]
                line = wait_for(lambda: [l for l in g.log_lines() if l.get("id") == rq], 10,
                                "the retrieve's log line")[-1]
                assert "tokens_in" not in line and "tokens_out" not in line, line
                assert "cost" not in line, line
            # A HEAD that resumes the stream has the head alone: the next
            # response on the connection follows it at once.
            s_ = socket.create_connection((HOST, g.port), timeout=5)
            s_.sendall(b"HEAD /v1/responses/%s?stream=true HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       % rid.encode())
            data = read_to_close(s_)
            s_.close()
            head, rest = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200") and b"event-stream" in head, data[:300]
            assert rest.startswith(b"HTTP/1.1 200"), data[:600]
            assert b'"status"' in rest and b"response.completed" not in rest, rest[:600]
            st, h, body = request(g.port, "DELETE", "/v1/responses/" + rid)
            assert st == 204 and body == b"", (st, h, body)
            # RFC 9110 8.6: no Content-Length on a 204 (nor a type: there
            # is no content).
            assert "content-length" not in h and "content-type" not in h, h
            sent = len(ups["x"].lines)
            st, h, body = request(g.port, "GET", "/v1/responses/" + rid)
            assert st == 404 and json.loads(body)["error"]["code"] == "response_not_found", (st, body)
            assert len(ups["x"].lines) == sent, ups["x"].lines[sent:]
            st, h, j, _ = post(g.port, {"model": "x", "input": "after"})
            assert st == 200, (st, j)  # the breaker is closed
        finally:
            for u in ups.values():
                u.id_pad = ""
    check("a retrieve with stream=true is relayed as a stream (a HEAD's as its head alone), a "
          "DELETE's 204 as it came, and a deleted 250-byte id is forgotten",
          retrieve_stream_delete_204_and_long_ids)

    def responses_error_event_falls_back():
        ups["x"].error_event = True
        try:
            g = gateway()
            seen = []
            for _ in range(2):  # the route starts at either model
                st, h, body = request(g.port, "POST", "/v1/responses",
                                      json.dumps({"model": "seq", "input": "s", "stream": True}))
                assert st == 200 and h["x-llmroute-model"] == "y", (st, h, body)
                assert b"engine died" not in body and b"response.completed" in body, body
                seen.append(h["x-llmroute-attempts"])
            assert sorted(seen) == ["1", "2"], seen
            tries = [t for l in g.log_lines() for t in (l.get("tries") or [])]
            assert any(t.get("class") == "server_error" for t in tries), tries
        finally:
            ups["x"].error_event = False
    check("a Responses stream's error event before any content fails the attempt: the route "
          "falls back", responses_error_event_falls_back)

    def refused_on_the_head():
        g = gateway()
        for method, path, allow in (("POST", "/v1/responses/abc", "GET, HEAD, DELETE"),
                                    ("PUT", "/v1/responses/abc/cancel", "POST"),
                                    ("POST", "/v1/responses/abc/input_items", "GET, HEAD")):
            s_ = socket.create_connection((HOST, g.port), timeout=5)
            # A body announced and never sent: answered on the head alone.
            s_.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                        "Content-Type: application/json\r\n\r\n" % (method, path)).encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s_.recv(4096)
                if not chunk:
                    break
                data += chunk
            s_.close()
            head = data.split(b"\r\n\r\n")[0].decode().lower()
            assert head.startswith("http/1.1 405"), (method, path, data[:200])
            assert ("allow: %s" % allow.lower()) in head, (method, path, head)
        s_ = socket.create_connection((HOST, g.port), timeout=5)
        s_.sendall(b"POST /v1/responses/abc/other HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: 100000\r\n\r\n")
        data = s_.recv(4096)
        s_.close()
        assert data.startswith(b"HTTP/1.1 404"), data[:200]
    check("a request about an id with a method or path it does not take is answered on its "
          "head, with that path's Allow", refused_on_the_head)

    def long_paths_answered_by_their_whole_path():
        # Paths over 255 bytes: the sub-path after a long id decides, as for a short one.
        g = gateway()
        for method, path, status, allow in (
                ("PUT", "/v1/responses/%s/cancel" % ("a" * 240), 405, "POST"),
                ("PUT", "/v1/responses/%s/cancel" % ("a" * 241), 405, "POST"),
                ("PUT", "/v1/responses/%s/input_items" % ("a" * 300), 405, "GET, HEAD"),
                ("PUT", "/v1/responses/%s" % ("a" * 300), 405, "GET, HEAD, DELETE"),
                ("PUT", "/v1/responses/%s/other" % ("a" * 241), 404, None),
                ("GET", "/v1/responses/%s/other" % ("a" * 241), 404, None)):
            st, h, raw = request(g.port, method, path)
            assert st == status and h.get("allow") == allow, (method, len(path), st, h, raw)
    check("a request about a long id (a path over 255 bytes) is answered by its whole path: "
          "405 with its sub-path's Allow, 404 for an unknown sub-path",
          long_paths_answered_by_their_whole_path)

    finish()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
