/* version.c -- the library's version at run time.
 *
 * A caller compiled against one llmroute.h may load another build of the
 * library (the Python binding loads whatever libllmroute it finds); these
 * say which one was loaded, from the header's LR_VERSION_* as this library
 * was compiled. Pure: any thread.
 */
#include "llmroute.h"

const char *lr_version(void)
{
    return LR_VERSION_STRING;
}

int lr_version_number(void)
{
    return LR_VERSION_NUMBER;
}
