/* Backends by name, as the command line and scenarios spell them. */
#include "ops.h"

#include "../status.h"

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

const char *cuda_precision_name(cuda_precision p)
{
    return p == CUDA_FP32 ? "fp32" : p == CUDA_BF16 ? "bf16" : "tf32";
}

bool cuda_precision_parse(const char *text, cuda_precision *p)
{
    static const cuda_precision all[] = {CUDA_TF32, CUDA_FP32, CUDA_BF16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(text, cuda_precision_name(all[i])) == 0) {
            *p = all[i];
            return true;
        }
    return false;
}
