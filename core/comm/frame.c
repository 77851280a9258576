#include "frame.h"

#include "../base/status.h"

#include <string.h>

static void put(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void frame_encode(const frame *f, uint8_t out[FRAME_BYTES])
{
    put(out, FRAME_MAGIC, 4);
    put(out + 4, FRAME_VERSION, 2);
    out[6] = f->cls;
    out[7] = f->kind;
    put(out + 8, f->job_id, 8);
    put(out + 16, f->seq, 8);
    put(out + 24, f->length, 8);
}

int frame_decode(const uint8_t in[FRAME_BYTES], uint64_t job_id, int cls, int kind, uint64_t seq, uint64_t max_length,
                 frame *out, const char *peer, char *err, size_t errlen)
{
    uint32_t magic = (uint32_t)get(in, 4);
    unsigned version = (unsigned)get(in + 4, 2);
    *out = (frame){
        .cls = in[6], .kind = in[7], .job_id = get(in + 8, 8), .seq = get(in + 16, 8), .length = get(in + 24, 8)};
    if (magic != FRAME_MAGIC)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: bad magic 0x%08x (not a wancp peer)", peer, magic);
    if (version != FRAME_VERSION)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: protocol version %u, this wancp speaks %d", peer, version,
                          FRAME_VERSION);
    if (out->job_id != job_id)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: job id %llu, this job is %llu", peer,
                          (unsigned long long)out->job_id, (unsigned long long)job_id);
    if (cls >= 0 && out->cls != cls)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: class %u on a class %d connection", peer, out->cls, cls);
    if (kind >= 0 && out->kind != kind)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: frame kind %u, expected %d", peer, out->kind, kind);
    if (seq != UINT64_MAX && out->seq != seq)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: sequence %llu, expected %llu (lost or repeated frame)",
                          peer, (unsigned long long)out->seq, (unsigned long long)seq);
    if (out->length > max_length)
        return wancp_fail(err, errlen, WANCP_ERR_INPUT, "%s: payload of %llu bytes, more than the %llu expected", peer,
                          (unsigned long long)out->length, (unsigned long long)max_length);
    return WANCP_OK;
}

void hello_encode(const hello *h, uint8_t out[HELLO_BYTES])
{
    memset(out, 0, HELLO_BYTES);
    put(out, h->rank, 4);
    put(out + 4, h->world, 4);
    put(out + 8, h->cls, 4);
    memcpy(out + 12, h->addr, strnlen(h->addr, 63));
}

void hello_decode(const uint8_t in[HELLO_BYTES], hello *h)
{
    h->rank = (uint32_t)get(in, 4);
    h->world = (uint32_t)get(in + 4, 4);
    h->cls = (uint32_t)get(in + 8, 4);
    memcpy(h->addr, in + 12, 63);
    h->addr[63] = 0;
}
