/* loopback.h -- one request sent to a server listening on 127.0.0.1, for
 * the unit tests of the gateway's HTTP layer. Include after <cmocka.h>. */
#ifndef LR_TEST_LOOPBACK_H
#define LR_TEST_LOOPBACK_H

#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Connect to 127.0.0.1:port and write the whole request; the connected
 * descriptor, for the caller to read and close. */
static inline int loopback_send(int port, const char *request)
{
    struct sockaddr_in a;
    size_t n = strlen(request);
    int fd;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(write(fd, request, n), (ssize_t)n);
    return fd;
}

#endif
