/* fuzz_dataset.c -- the data-file reader behind `llmroute eval`
 * (lr_dataset_load: a JSON array or JSONL of records, each checked by
 * record.c) on arbitrary bytes, lenient and strict, with and without a
 * split filter, and every record it keeps read back.
 *
 * Threads: one.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "fuzz_file.h"
#include "llmroute.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);

    if (fd < 0)
        return 0;
    for (int pass = 0; pass < 2; pass++) {
        struct lr_import_options opts = {0};
        struct lr_import_report rep;
        struct lr_dataset *ds = NULL;
        struct lr_error err = {0};
        opts.strict = pass;
        opts.split = pass ? "train" : NULL;
        if (lr_dataset_load(path, &opts, &ds, &rep, &err) == 0) {
            size_t n = lr_dataset_count(ds);
            volatile double sink = 0;
            for (size_t i = 0; i <= n; i++) {
                const struct lr_record *r = lr_dataset_record(ds, i);
                if (!r)
                    continue;
                sink += (double)r->input_tokens;
                for (size_t k = 0; k < r->n_outcomes; k++)
                    sink += r->outcomes[k].correctness + (double)(r->outcomes[k].model[0]);
            }
            (void)sink;
            lr_dataset_free(ds);
        }
    }
    close(fd);
    return 0;
}
