/* Backends by name, as the command line and scenarios spell them, made with their options. */
#include "ops.h"

#include "cpu/ops_cpu.h"
#include "cuda/ops_cuda.h"

#include "../base/status.h"

#include <string.h>

const ops *ops_make(const char *name, const ops_options *options, char *err, size_t errlen)
{
    static ops cpu_instance, cuda_instance; /* one of each in a process (ops.h says why) */
    const ops_options defaults = {0};
    ops_options made = options != NULL ? *options : defaults;
    const bool cuda = strcmp(name, "cuda") == 0;
    if (!cuda && strcmp(name, "cpu") != 0) {
        wancp_fail(err, errlen, WANCP_ERR_INPUT, "unknown device '%s' (expected cpu or cuda)", name);
        return NULL;
    }
    const ops *table = cuda ? ops_cuda_table(err, errlen) : ops_cpu_table();
    if (table == NULL)
        return NULL;
    made.cpu_threads = ops_cpu_configure_threads(made.cpu_threads);
    if (cuda)
        ops_cuda_configure(made.precision, made.fused_attention);
    else
        made.precision = CUDA_TF32, made.fused_attention = false; /* the cpu's products are fp32 */
    ops *instance = cuda ? &cuda_instance : &cpu_instance;
    *instance = *table;
    instance->options = made;
    return instance;
}
