/* offload.c -- work that must not run on the event loop.
 *
 * Three kinds of work can take long: appending a feedback outcome (a
 * SQLite commit with fsync), the store refresh (reading other processes'
 * commits, and rebuilding the in-memory copy when it must: the re-weighing
 * a feedback append left due, which the store opened with defer_reweigh
 * leaves to it, and a SIGHUP's convergence; seconds at 100,000 records)
 * and a /v1/route batch (up to 1,000 smart decisions and an assignment).
 * They run here, on three worker threads, so the loop keeps serving
 * everything else meanwhile.
 *
 * A job is work() on a worker, then done() on the loop thread. Finished
 * jobs are handed back through a pipe the loop watches. Jobs run in the
 * order they were given (with three workers, three at a time); the
 * library's store and routers are safe to use from several threads. A job
 * of a lane (gw_offload_serial: the feedback appends in one, the store
 * refresh in another, both of which may wait on a store another process
 * holds) runs only when no other job of its lane does, and while it waits
 * the jobs behind it of other lanes, or of none, pass it. So such a store
 * keeps at most two workers waiting, and /v1/route keeps the third; and a
 * feedback append does not wait for a refresh's rebuild, which the
 * library runs beside appends (they wait only for its last short step):
 * when the two shared one lane, every append queued behind a rebuild
 * waited for all of it (3.8 s at 60,000 records).
 *
 * At shutdown (gw_offload_stop, after the HTTP server is freed, so every
 * request is answered or aborted) the queue is drained: every job given is
 * worked and done, none is dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "gateway.h"

#define OFFLOAD_WORKERS 3

struct gw_job {
    gw_work_fn work;
    gw_done_fn done;
    void *arg;
    int lane; /* 0, or a gw_lane: one at a time with the other jobs of its lane */
    struct gw_job *next;
};

struct gw_offload {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct gw_job *todo, *todo_tail; /* waiting for a worker, oldest first */
    struct gw_job *finished;         /* worked, waiting for the loop (any order) */
    unsigned lanes_busy;             /* bit 1 << lane: a job of that lane is on a worker */
    int stopping;
    int pipe_rd, pipe_wr;
    struct event *ev;
    pthread_t threads[OFFLOAD_WORKERS];
    size_t n_threads;
};

static void *worker(void *arg)
{
    struct gw_offload *o = arg;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        struct gw_job *j, *prev;
        /* The oldest job this worker may take: one of a lane only when no
         * other job of that lane runs. */
        for (;;) {
            prev = NULL;
            j = o->todo;
            while (j && j->lane && (o->lanes_busy & (1u << j->lane))) {
                prev = j;
                j = j->next;
            }
            if (j || (!o->todo && o->stopping))
                break;
            pthread_cond_wait(&o->cv, &o->mu);
        }
        if (!j)
            break; /* stopping, and nothing left */
        if (prev)
            prev->next = j->next;
        else
            o->todo = j->next;
        if (o->todo_tail == j)
            o->todo_tail = prev;
        if (j->lane)
            o->lanes_busy |= 1u << j->lane;
        pthread_mutex_unlock(&o->mu);
        j->work(j->arg);
        pthread_mutex_lock(&o->mu);
        if (j->lane) {
            o->lanes_busy &= ~(1u << j->lane);
            pthread_cond_broadcast(&o->cv); /* the next job of its lane may go */
        }
        j->next = o->finished;
        o->finished = j;
        /* Wake the loop. A full pipe already holds a wake-up. */
        {
            char c = 1;
            ssize_t w;
            do
                w = write(o->pipe_wr, &c, 1);
            while (w < 0 && errno == EINTR);
        }
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

/* Run done() for every finished job, on the calling (loop) thread. */
static void run_finished(struct gw_offload *o)
{
    struct gw_job *j;
    pthread_mutex_lock(&o->mu);
    j = o->finished;
    o->finished = NULL;
    pthread_mutex_unlock(&o->mu);
    while (j) {
        struct gw_job *next = j->next;
        j->done(j->arg);
        free(j);
        j = next;
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    char buf[256];
    (void)what;
    while (read(fd, buf, sizeof buf) > 0)
        ;
    run_finished(arg);
}

int gw_offload_start(struct gw *gw)
{
    struct gw_offload *o = calloc(1, sizeof *o);
    int fds[2];

    if (!o)
        return -1;
    if (pipe(fds) != 0) {
        free(o);
        return -1;
    }
    o->pipe_rd = fds[0];
    o->pipe_wr = fds[1];
    fcntl(o->pipe_rd, F_SETFL, fcntl(o->pipe_rd, F_GETFL) | O_NONBLOCK);
    fcntl(o->pipe_wr, F_SETFL, fcntl(o->pipe_wr, F_GETFL) | O_NONBLOCK);
    fcntl(o->pipe_rd, F_SETFD, FD_CLOEXEC);
    fcntl(o->pipe_wr, F_SETFD, FD_CLOEXEC);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->ev = event_new(gw->base, o->pipe_rd, EV_READ | EV_PERSIST, on_wake, o);
    gw->offload = o;
    if (!o->ev || event_add(o->ev, NULL) != 0) {
        gw_offload_stop(gw);
        return -1;
    }
    for (size_t i = 0; i < OFFLOAD_WORKERS; i++) {
        if (pthread_create(&o->threads[i], NULL, worker, o) != 0)
            break;
        o->n_threads++;
    }
    if (o->n_threads == 0) {
        gw_offload_stop(gw);
        return -1;
    }
    return 0;
}

static int give(struct gw *gw, gw_work_fn work, gw_done_fn done, void *arg, int lane)
{
    struct gw_offload *o = gw->offload;
    struct gw_job *j = o ? malloc(sizeof *j) : NULL;
    if (!j)
        return -1;
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->lane = lane;
    j->next = NULL;
    pthread_mutex_lock(&o->mu);
    if (o->todo_tail)
        o->todo_tail->next = j;
    else
        o->todo = j;
    o->todo_tail = j;
    /* Every idle worker looks: the one woken might not be allowed it. */
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    return 0;
}

int gw_offload(struct gw *gw, gw_work_fn work, gw_done_fn done, void *arg)
{
    return give(gw, work, done, arg, 0);
}

int gw_offload_serial(struct gw *gw, enum gw_lane lane, gw_work_fn work, gw_done_fn done,
                      void *arg)
{
    return give(gw, work, done, arg, (int)lane);
}

void gw_offload_stop(struct gw *gw)
{
    struct gw_offload *o = gw->offload;
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    o->stopping = 1;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    for (size_t i = 0; i < o->n_threads; i++)
        pthread_join(o->threads[i], NULL);
    /* No worker is left to take what is queued (when none ever started). */
    while (o->todo) {
        struct gw_job *j = o->todo;
        o->todo = j->next;
        j->work(j->arg);
        j->next = o->finished;
        o->finished = j;
    }
    run_finished(o);
    if (o->ev)
        event_free(o->ev);
    close(o->pipe_rd);
    close(o->pipe_wr);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
    free(o);
    gw->offload = NULL;
}
