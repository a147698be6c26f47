/* connlimit.c -- the client connection cap and the descriptor limit (see
 * connlimit.h for the formula and why).
 *
 * Threads: the event loop thread only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "connlimit.h"

void cl_plan_make(long configured, long reserve, unsigned long long soft, unsigned long long hard,
                  struct cl_plan *p)
{
    memset(p, 0, sizeof *p);
    p->soft_before = soft;
    p->hard = hard;
    p->reserve = reserve;
    p->configured = configured > 0;
    if (configured > 0) {
        p->cap = configured;
    } else {
        unsigned long long room = soft > (unsigned long long)reserve ? soft - reserve : 0;
        p->cap = (long)(room / 2 < (unsigned long long)CL_MAX ? room / 2 : CL_MAX);
        if (p->cap < 1)
            p->cap = 1;
    }
    p->needed = 2 * p->cap + reserve;
    p->soft = soft;
    if ((unsigned long long)p->needed > soft && p->configured) {
        /* Raise toward the hard limit, only as far as the cap needs. */
        p->soft = (unsigned long long)p->needed < hard ? (unsigned long long)p->needed : hard;
        p->raise = p->soft > soft;
    }
    p->fits = (unsigned long long)p->needed <= p->soft;
}

long cl_descriptors_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct rlimit rl;
    long n = 0;

    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            n += e->d_name[0] != '.';
        closedir(d);
        return n - 1; /* the directory's own descriptor */
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    for (long fd = 0; fd < (long)rl.rlim_cur && fd < 65536; fd++)
        n += fcntl((int)fd, F_GETFD) != -1;
    return n;
}

int cl_plan_apply(long configured, long reserve, struct cl_plan *p)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        int e = errno;
        cl_plan_make(configured, reserve, 1024, 1024, p);
        return -e;
    }
    cl_plan_make(configured, reserve, rl.rlim_cur, rl.rlim_max, p);
    if (p->raise) {
        rl.rlim_cur = (rlim_t)p->soft;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            int e = errno;
            p->soft = p->soft_before;
            p->raise = 0;
            p->fits = (unsigned long long)p->needed <= p->soft;
            return -e;
        }
    }
    return 0;
}

void cl_plan_describe(const struct cl_plan *p, char *buf, size_t cap)
{
    int n;
    if (p->configured)
        n = snprintf(buf, cap, "at most %ld client connections (server.max_connections)", p->cap);
    else
        n = snprintf(buf, cap,
                     "at most %ld client connections (server.max_connections unset: "
                     "(descriptor limit %llu - %ld kept) / 2, one upstream connection each)",
                     p->cap, p->soft, p->reserve);
    if (n < 0 || (size_t)n >= cap)
        return;
    if (p->raise) {
        int k = snprintf(buf + n, cap - (size_t)n,
                         "; raised the descriptor limit from %llu to %llu (hard limit %llu)",
                         p->soft_before, p->soft, p->hard);
        if (k < 0 || (size_t)k >= cap - (size_t)n)
            return;
        n += k;
    }
    if (!p->fits)
        snprintf(buf + n, cap - (size_t)n,
                 "; warning: that needs %ld descriptors (2 per connection + %ld kept) but the "
                 "limit is %llu (hard %llu): with more than %lld clients, upstream connections "
                 "can fail with 'Too many open files'. Lower server.max_connections or raise "
                 "the hard limit (ulimit -Hn, LimitNOFILE=)",
                 p->needed, p->reserve, p->soft, p->hard,
                 p->soft > (unsigned long long)p->reserve
                     ? (long long)((p->soft - (unsigned long long)p->reserve) / 2)
                     : 0LL);
}
