/* libFuzzer: the frame decoder on arbitrary bytes must accept or refuse with a one-line
 * error naming the peer, and whatever it accepts must re-encode to the same bytes. The bytes
 * after the header are also read as a hello payload (what a caller says first): its address
 * always ends inside its 64 bytes, and it re-encodes to what it decoded. */
#include "core/comm/frame.h"
#include "core/base/status.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FRAME_BYTES + 2)
        return 0;
    /* The first two bytes choose what the receiver expects. */
    int cls = data[0] % 5 - 1, kind = data[1] % 4 - 1;
    const uint8_t *header = data + 2;
    frame f;
    char err[WANCP_ERRLEN] = "";
    uint64_t job = 0;
    memcpy(&job, header + 8, sizeof job); /* sometimes the right job, by construction */
    if (data[0] & 0x80)
        job ^= 1;
    int rc = frame_decode(header, job, cls, kind, UINT64_MAX, 1u << 20, &f, "peer 1.2.3.4", err, sizeof err);
    if (rc == WANCP_OK) {
        uint8_t again[FRAME_BYTES];
        frame_encode(&f, again);
        if (memcmp(again, header, FRAME_BYTES) != 0 || f.length > (1u << 20))
            abort();
    } else if (rc != WANCP_ERR_INPUT || strchr(err, '\n') != NULL || strstr(err, "peer 1.2.3.4") == NULL) {
        abort();
    }
    if (size >= 2 + FRAME_BYTES + HELLO_BYTES) {
        hello h, again;
        uint8_t bytes[HELLO_BYTES];
        hello_decode(header + FRAME_BYTES, &h);
        if (strnlen(h.addr, sizeof h.addr) >= sizeof h.addr)
            abort();
        hello_encode(&h, bytes);
        hello_decode(bytes, &again);
        if (again.rank != h.rank || again.world != h.world || again.cls != h.cls || strcmp(again.addr, h.addr) != 0)
            abort();
    }
    return 0;
}
