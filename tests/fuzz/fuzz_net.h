/* fuzz_net.h -- for harnesses that play an upstream server: a listening
 * socket on the loopback interface at a port the kernel picks.
 *
 * Threads: any; each call makes its own socket.
 */
#ifndef LR_FUZZ_NET_H
#define LR_FUZZ_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/util.h>

/* A non-blocking socket listening on 127.0.0.1; its port goes into *port.
 * Returns the descriptor or -1. */
static int fuzz_listen_loopback(int *port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        close(fd);
        return -1;
    }
    evutil_make_socket_nonblocking(fd);
    *port = ntohs(sin.sin_port);
    return fd;
}

#endif
