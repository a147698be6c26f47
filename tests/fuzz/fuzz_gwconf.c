/* fuzz_gwconf.c -- a configuration file checked as `llmroute check-config`
 * and `llmroute serve` check it (gw_conf_check): the library's checks, then
 * the gateway's own sections (server, each model's backend, mock, headers,
 * retry and timeouts) and the routers, on arbitrary bytes.
 *
 * Threads: one.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "fuzz_file.h"
#include "gateway.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    struct gw_conf *conf = NULL;
    struct lr_error err = {0};
    int fd = fuzz_file(data, size, path, sizeof path);

    if (fd < 0)
        return 0;
    if (gw_conf_check(path, NULL, "fuzz", &conf, &err) == 0)
        gw_conf_unref(conf);
    close(fd);
    return 0;
}
