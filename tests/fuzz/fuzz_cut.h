/* fuzz_cut.h -- lr_embedding_input_len() (router.embedding.max_input_chars)
 * on arbitrary bytes, checked against what it promises: the cut is no longer
 * than the text, falls before a UTF-8 lead byte (never inside a character),
 * and keeps exactly the first max_input_chars characters when the text has
 * more, the whole text otherwise. A difference aborts.
 *
 * Threads: any.
 */
#ifndef LR_FUZZ_CUT_H
#define LR_FUZZ_CUT_H

#include <stdio.h>
#include <stdlib.h>

#include "llmroute.h"

/* Characters as lr_embedding_input_len() counts them: every byte that is
 * not a UTF-8 continuation byte (10xxxxxx). */
static size_t fuzz_cut_chars(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)text[i] & 0xC0) != 0x80;
    return n;
}

static void fuzz_cut_check(const struct lr_embedding_info *info, const char *text, size_t len)
{
    size_t cut = lr_embedding_input_len(info, text, len);
    size_t max = info && info->max_input_chars > 0 ? (size_t)info->max_input_chars : 0;
    size_t all = fuzz_cut_chars(text, len);
    const char *bad = NULL;

    if (cut > len)
        bad = "the cut is longer than the text";
    else if (cut < len && ((unsigned char)text[cut] & 0xC0) == 0x80)
        bad = "the cut falls inside a character";
    else if (!max || all <= max ? cut != len : fuzz_cut_chars(text, cut) != max)
        bad = "the cut keeps another number of characters than max_input_chars";
    if (bad) {
        fprintf(stderr, "fuzz: lr_embedding_input_len: %s (max %zu, len %zu, cut %zu)\n", bad,
                max, len, cut);
        abort();
    }
}

#endif
