/* The cuda backend's entry points in a build without nvcc: they say why there is none. */
#include "../ops.h"

#include "../../status.h"

const ops *ops_cuda(char *err, size_t errlen)
{
    wancp_fail(err, errlen, WANCP_ERR_INPUT,
               "device cuda: this build has no CUDA backend (nvcc was not found when it was configured)");
    return NULL;
}

void ops_cuda_set_tf32(bool on)
{
    (void)on;
}

bool ops_cuda_tf32(void)
{
    return false;
}

void ops_cuda_set_fused_attention(bool on)
{
    (void)on;
}

bool ops_cuda_fused_attention(void)
{
    return false;
}

unsigned long long ops_cuda_fused_attention_launches(void)
{
    return 0;
}

const char *ops_cuda_device_name(void)
{
    return "none (built without CUDA)";
}
