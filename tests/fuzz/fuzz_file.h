/* fuzz_file.h -- for harnesses whose API takes a path: the input as a file
 * that lives in memory (memfd), named by /proc/self/fd/N.
 *
 * Threads: any; each call makes its own descriptor.
 */
#ifndef LR_FUZZ_FILE_H
#define LR_FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* Write data[0..size) to a new in-memory file; its path goes into path
 * (cap bytes). Returns the descriptor (close it when done) or -1. */
static int fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap)
{
    int fd = memfd_create("fuzz", 0);
    size_t off = 0;
    if (fd < 0)
        return -1;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
