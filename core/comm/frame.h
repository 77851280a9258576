#ifndef WANCP_FRAME_H
#define WANCP_FRAME_H

#include <stddef.h>
#include <stdint.h>

/*
 * The header in front of every message between ranks, 32 bytes, little-endian:
 *   u32 magic   "WCPF"          u16 version (1)   u8 class   u8 kind
 *   u64 job id                  u64 sequence (per connection and direction, from 0)
 *   u64 payload length
 * Every field is checked on receipt; a frame from another job, another protocol version
 * or out of sequence is refused with the peer named, never acted on.
 */
#define FRAME_MAGIC 0x46504357u /* "WCPF" */
#define FRAME_VERSION 1
#define FRAME_BYTES 32
#define FRAME_MAX_PAYLOAD (1ull << 36) /* 64 GiB: far above any message, far below garbage */

enum frame_kind {
    FRAME_DATA = 0,  /* a message of a collective or point-to-point send */
    FRAME_HELLO = 1, /* first frame on a connection: who is calling, for which class */
    FRAME_TABLE = 2, /* rendezvous answer: every rank's address */
};

typedef struct frame {
    uint8_t cls;
    uint8_t kind;
    uint64_t job_id;
    uint64_t seq;
    uint64_t length;
} frame;

void frame_encode(const frame *f, uint8_t out[FRAME_BYTES]);

/* Decodes and validates a header against what the receiver expects (job id, class or -1
 * for any, kind or -1, sequence or UINT64_MAX for any, and a payload limit). peer names the
 * sender in errors. 0 or WANCP_ERR_INPUT. */
int frame_decode(const uint8_t in[FRAME_BYTES], uint64_t job_id, int cls, int kind, uint64_t seq, uint64_t max_length,
                 frame *out, const char *peer, char *err, size_t errlen);

/* The payload of a FRAME_HELLO, what a caller says first: who it is, for which class, and
 * (at the rendezvous) its own address. 12 + 64 bytes, little-endian u32s, then the address
 * NUL-padded; decoding always ends the address within its 64 bytes. */
typedef struct hello {
    uint32_t rank, world, cls;
    char addr[64];
} hello;
#define HELLO_BYTES (12 + 64)

void hello_encode(const hello *h, uint8_t out[HELLO_BYTES]);
void hello_decode(const uint8_t in[HELLO_BYTES], hello *h);

#endif
