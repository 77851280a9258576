#ifndef WANCP_OPS_CUDA_H
#define WANCP_OPS_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../ops.h"

/* The cuda backend's side of ops_make (ops_select.c), and the device for the NCCL transport
 * (which needs its stream); nothing else makes a backend. */

/* Its table of functions, after readying device 0 once (context, stream, cuBLAS handle);
 * NULL with the reason in err when this build has no CUDA or no usable device is present. */
const ops *ops_cuda_table(char *err, size_t errlen);

/* The products' operands and the attention path, for the process's one device. */
void ops_cuda_configure(cuda_precision precision, bool fused_attention);

#ifdef __cplusplus
}
#endif

#endif
