// CUDA half of device_query: lists devices and proves each can run a kernel this build
// compiled, so a broken toolchain or architecture list shows up in `wancp --version`.
extern "C" {
#include "../device_query.h"
}

#include <cuda_runtime.h>

#include <stdio.h>

// Each thread writes a value only it can compute; the host checks all of them.
__global__ static void fill_index_squares(unsigned *out, unsigned n)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = i * i + 7u;
}

static int kernel_check(int device, char *why, size_t why_len)
{
    const unsigned n = 4096;
    unsigned *d = NULL, h[4096];
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&d, n * sizeof *d);
    if (e == cudaSuccess) {
        fill_index_squares<<<(n + 255) / 256, 256>>>(d, n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess)
        e = cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    if (d != NULL)
        cudaFree(d);
    if (e != cudaSuccess) {
        snprintf(why, why_len, "%s", cudaGetErrorString(e));
        return 0;
    }
    for (unsigned i = 0; i < n; i++)
        if (h[i] != i * i + 7u) {
            snprintf(why, why_len, "wrong result at %u", i);
            return 0;
        }
    return 1;
}

extern "C" int device_query(char *buf, size_t len)
{
    int runtime = 0, count = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(buf, len, "cuda: built with runtime %d.%d; no usable device (%s)", runtime / 1000,
                 runtime % 1000 / 10, e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 0;
    }
    size_t used = 0;
    int usable = 0;
    for (int i = 0; i < count && used < len; i++) {
        cudaDeviceProp p;
        char why[128] = "";
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess)
            continue;
        int ok = kernel_check(i, why, sizeof why);
        usable += ok;
        used += (size_t)snprintf(buf + used, len - used, "%scuda:%d %s, sm_%d%d, %.1f GiB, %d SMs, kernel %s%s",
                                 i ? "\n" : "", i, p.name, p.major, p.minor,
                                 (double)p.totalGlobalMem / (1024.0 * 1024 * 1024), p.multiProcessorCount,
                                 ok ? "ok" : "FAILED: ", why);
    }
    return usable;
}
