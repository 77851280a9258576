#include "status.h"

#include <stdarg.h>
#include <stdio.h>

int wancp_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

int wancp_exit_status(int code)
{
    if (code == WANCP_OK)
        return 0;
    return code == WANCP_ERR_INPUT ? 2 : 1;
}
