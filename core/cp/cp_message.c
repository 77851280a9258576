#include "cp_message.h"

uint64_t cp_kv_message_bytes(const cp_message_shape *s)
{
    const uint64_t elem = (uint64_t)s->wire_bytes;
    if (s->compressed)
        return 4 * 2 * (uint64_t)s->psi_k + s->chunk * (uint64_t)(s->rank_k + s->rank_v) * elem;
    return 2 * s->chunk * (uint64_t)s->d_kv * elem;
}
