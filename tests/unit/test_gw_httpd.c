/* test_gw_httpd.c -- the gateway's HTTP/1.1 server read through its own
 * interface: a server on 127.0.0.1, a client socket writing raw requests,
 * and a handler that keeps what the server made of each (method, path,
 * query). Everything runs on this thread: the client's bytes are written
 * whole before the loop runs, and the loop runs until the handler has been
 * called or a bound passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include <cmocka.h>

#include "httpd.h"
#include "loopback.h"

struct seen {
    int called;
    char method[16];
    char path[256];
    char query[256];
};

static void handler(struct hs_req *req, void *arg)
{
    struct seen *s = arg;
    s->called++;
    snprintf(s->method, sizeof s->method, "%s", hs_req_method(req));
    snprintf(s->path, sizeof s->path, "%s", hs_req_path(req));
    snprintf(s->query, sizeof s->query, "%s", hs_req_query(req));
    hs_respond(req, 200, "text/plain", "ok", 2);
}

static size_t error_body(char *buf, size_t cap, int status, const char *message)
{
    int n = snprintf(buf, cap, "%d %s", status, message);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Send one request on a new connection and run the loop until the handler
 * has it (or 2 s pass). */
static void exchange(const char *request, struct seen *s)
{
    struct event_base *base = event_base_new();
    struct hs_limits lim = {8192, 1 << 20, 1 << 16, 5000};
    struct hs_server *srv;
    struct timeval tick = {0, 10000};
    int fd;

    assert_non_null(base);
    srv = hs_server_new(base, &lim, handler, error_body, s);
    assert_non_null(srv);
    assert_int_equal(hs_server_listen(srv, "127.0.0.1", 0), 0);
    fd = loopback_send(hs_server_port(srv), request);
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 200 && !s->called; i++) {
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
    close(fd);
    hs_server_free(srv);
    event_base_free(base);
}

static void absolute_form_keeps_its_query_as_the_origin_form_does(void **state)
{
    static const char *const targets[][3] = {
        /* target, path, query */
        {"/v1/models?x=1", "/v1/models", "x=1"},
        {"http://127.0.0.1:8080/v1/models?x=1", "/v1/models", "x=1"},
        {"HTTP://h/v1/responses/r1?stream=true", "/v1/responses/r1", "stream=true"},
        {"http://h", "/", ""},
        {"http://h:8080?x", "/", "x"},
        {"https://h?a=1&b=/c", "/", "a=1&b=/c"},
        {"/?x", "/", "x"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        struct seen s;
        char req[512];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                 targets[i][0]);
        exchange(req, &s);
        assert_int_equal(s.called, 1);
        assert_string_equal(s.method, "GET");
        if (strcmp(s.path, targets[i][1]) != 0 || strcmp(s.query, targets[i][2]) != 0)
            fail_msg("%s: path '%s' query '%s', expected '%s' and '%s'", targets[i][0], s.path,
                     s.query, targets[i][1], targets[i][2]);
    }
}

/* RFC 9112 section 3.2.4: OPTIONS in the absolute form with an empty path
 * and no query is the asterisk-form's question about the server as a
 * whole, so its path is "*". It was "/", as any method's is: OPTIONS on
 * that path, which no endpoint takes. A path or a query keeps it "/". */
static void options_absolute_form_without_a_path_is_the_asterisk_form(void **state)
{
    static const char *const targets[][4] = {
        /* method, target, path, query */
        {"OPTIONS", "http://h", "*", ""},
        {"OPTIONS", "HTTP://127.0.0.1:8080", "*", ""},
        {"OPTIONS", "https://h", "*", ""},
        {"OPTIONS", "*", "*", ""},
        {"OPTIONS", "http://h/", "/", ""},
        {"OPTIONS", "http://h?x", "/", "x"},
        {"OPTIONS", "http://h/v1/models", "/v1/models", ""},
        {"GET", "http://h", "/", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        struct seen s;
        char req[512];
        snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                 targets[i][0], targets[i][1]);
        exchange(req, &s);
        assert_int_equal(s.called, 1);
        assert_string_equal(s.method, targets[i][0]);
        if (strcmp(s.path, targets[i][2]) != 0 || strcmp(s.query, targets[i][3]) != 0)
            fail_msg("%s %s: path '%s' query '%s', expected '%s' and '%s'", targets[i][0],
                     targets[i][1], s.path, s.query, targets[i][2], targets[i][3]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(absolute_form_keeps_its_query_as_the_origin_form_does),
        cmocka_unit_test(options_absolute_form_without_a_path_is_the_asterisk_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
