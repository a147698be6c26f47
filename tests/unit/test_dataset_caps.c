/* test_dataset_caps.c -- the data file's caps on eval's reading (dataset.c),
 * set low here so that small inputs reach them: a pipe or a device has no
 * size to check before it is read, so it is bounded as it is read, in all
 * and per line of JSON lines. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define LR__DATASET_MAX_FILE 4096
#define LR__DATASET_MAX_LINE 512
#include "../../src/lib/dataset.c"

/* A pipe's reading end as a path (/dev/fd/N) that a child fills with
 * `lines` copies of `line`, then closes. */
static pid_t feed(char *path, size_t len, const char *line, int lines, int *fd_out)
{
    int fds[2];
    pid_t pid;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        for (int i = 0; i < lines; i++)
            if (write(fds[1], line, strlen(line)) < 0)
                break;
        _exit(0);
    }
    close(fds[1]);
    snprintf(path, len, "/dev/fd/%d", fds[0]);
    *fd_out = fds[0];
    return pid;
}

static int load_piped(const char *line, int lines, struct lr_dataset **ds, struct lr_error *err)
{
    char path[32];
    int fd, rc;
    pid_t pid = feed(path, sizeof path, line, lines, &fd);
    rc = lr_dataset_load(path, NULL, ds, NULL, err);
    close(fd);
    kill(pid, SIGKILL); /* it may wait on a pipe no one reads any more */
    waitpid(pid, NULL, 0);
    return rc;
}

#define RECORD                                                                              \
    "{\"query\": \"%s\", \"input_token_length\": 1, \"outputs\": [{\"model_name\": \"a\", " \
    "\"correctness\": true, \"output_token_length\": 1}]}\n"

static void record_line(char *buf, size_t len, size_t query_len)
{
    char q[700];
    memset(q, 'q', query_len);
    q[query_len] = '\0';
    snprintf(buf, len, RECORD, q);
}

static void lines_within_the_caps_are_read(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    char line[1024];
    (void)state;
    record_line(line, sizeof line, 100); /* about 220 bytes a line, 15 lines */
    assert_int_equal(load_piped(line, 15, &ds, &err), 0);
    assert_int_equal(lr_dataset_count(ds), 15);
    lr_dataset_free(ds);
}

static void a_pipe_of_lines_over_the_file_cap_is_refused(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    char line[1024];
    (void)state;
    record_line(line, sizeof line, 100);
    assert_int_equal(load_piped(line, 40, &ds, &err), LR_ETOOBIG);
    assert_null(ds);
    assert_non_null(strstr(err.message, "is over the cap of 4096 bytes for a data file"));
}

static void a_line_over_the_line_cap_is_refused(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    char line[1024];
    (void)state;
    record_line(line, sizeof line, 600);
    assert_int_equal(load_piped(line, 1, &ds, &err), LR_ETOOBIG);
    assert_null(ds);
    assert_non_null(
        strstr(err.message, ": line 1 is over the cap of 512 bytes for a line of JSON lines"));
}

static void blank_space_without_end_is_refused(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    (void)state;
    assert_int_equal(load_piped("        \n", 1000, &ds, &err), LR_ETOOBIG);
    assert_non_null(strstr(err.message, "is over the cap of 4096 bytes for a data file"));
}

static void a_piped_array_over_the_file_cap_is_refused(void **state)
{
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    (void)state;
    assert_int_equal(load_piped("[                                       ", 200, &ds, &err),
                     LR_ETOOBIG);
    assert_non_null(strstr(err.message, "is over the cap of 4096 bytes for a data file"));
}

/* A piped array of `total` bytes: a byte order mark and 97 bytes of blank
 * space, then '[', one record, blanks and ']'. */
static void piped_array_of(char *buf, size_t total)
{
    char rec[1024];
    size_t n;
    record_line(rec, sizeof rec, 10);
    memcpy(buf, "\xef\xbb\xbf", 3);
    memset(buf + 3, ' ', 96);
    buf[99] = '\n';
    n = 100;
    buf[n++] = '[';
    memcpy(buf + n, rec, strlen(rec));
    n += strlen(rec);
    memset(buf + n, ' ', total - 1 - n);
    buf[total - 1] = ']';
    buf[total] = '\0';
}

/* The bytes before a piped array's '[' count against the file's cap as
 * they do before JSON lines: 4096 bytes in all are read, 4097 are not,
 * though the array alone is under the cap. */
static void bytes_before_a_piped_array_count_against_the_cap(void **state)
{
    char buf[4098];
    struct lr_dataset *ds = NULL;
    struct lr_error err = {0};
    (void)state;
    piped_array_of(buf, 4096);
    assert_int_equal(strlen(buf), 4096);
    assert_int_equal(load_piped(buf, 1, &ds, &err), 0);
    assert_int_equal(ds->n, 1);
    lr_dataset_free(ds);
    ds = NULL;
    piped_array_of(buf, 4097);
    assert_int_equal(strlen(buf), 4097);
    assert_int_equal(load_piped(buf, 1, &ds, &err), LR_ETOOBIG);
    assert_null(ds);
    assert_non_null(strstr(err.message, "is over the cap of 4096 bytes for a data file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lines_within_the_caps_are_read),
        cmocka_unit_test(a_pipe_of_lines_over_the_file_cap_is_refused),
        cmocka_unit_test(a_line_over_the_line_cap_is_refused),
        cmocka_unit_test(blank_space_without_end_is_refused),
        cmocka_unit_test(a_piped_array_over_the_file_cap_is_refused),
        cmocka_unit_test(bytes_before_a_piped_array_count_against_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
