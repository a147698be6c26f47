/* header_c89.c -- llmroute.h compiles as strict C89 (but for long long,
 * which it uses and for which it states C99 as the minimum) and as C++:
 * no trailing comma after an enum's last constant, no // comment, nothing a
 * pedantic compiler of an older standard warns about. Checked by ctest
 * (header.c89, header.cxx) with -fsyntax-only; never run. */
#include "llmroute.h"

int main(void)
{
    return LR_OK;
}
