/* The cuda backend's entry points in a build without nvcc: they say why there is none. */
#include "ops_cuda.h"

#include "../../base/status.h"

const ops *ops_cuda_table(char *err, size_t errlen)
{
    wancp_fail(err, errlen, WANCP_ERR_INPUT,
               "device cuda: this build has no CUDA backend (nvcc was not found when it was configured)");
    return NULL;
}

void ops_cuda_configure(cuda_precision precision, bool fused_attention) { (void)precision, (void)fused_attention; }

double ops_cuda_gemm_peak_gflops(int m, int n, int k)
{
    (void)m, (void)n, (void)k;
    return 0.0;
}

unsigned long long ops_cuda_fused_attention_launches(void) { return 0; }

const char *ops_cuda_fused_dq(int head_dim)
{
    (void)head_dim;
    return "recomputed dS";
}

const char *ops_cuda_device_name(void) { return "none (built without CUDA)"; }
