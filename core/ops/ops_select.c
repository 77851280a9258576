/* Backends by name, as the command line and scenarios spell them. */
#include "ops.h"

#include "../base/status.h"

#include <string.h>

const ops *ops_by_name(const char *name, char *err, size_t errlen)
{
    if (strcmp(name, "cpu") == 0)
        return ops_cpu();
    if (strcmp(name, "cuda") == 0)
        return ops_cuda(err, errlen);
    wancp_fail(err, errlen, WANCP_ERR_INPUT, "unknown device '%s' (expected cpu or cuda)", name);
    return NULL;
}
