/* The CUDA backend's precisions by name, as the command line and scenarios spell them (apart
 * from the backends, so that readers of scenarios need no backend). */
#include "ops.h"

#include <string.h>

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
