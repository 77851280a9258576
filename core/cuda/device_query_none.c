/* device_query for builds without CUDA (no nvcc found, or WANCP_CUDA=OFF). */
#include "../device_query.h"

#include <stdio.h>

int device_query(char *buf, size_t len)
{
    snprintf(buf, len, "cuda: not built (nvcc not found at configure time, or WANCP_CUDA=OFF)");
    return 0;
}
