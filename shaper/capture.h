#ifndef WANCP_SHAPER_CAPTURE_H
#define WANCP_SHAPER_CAPTURE_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Bytes on the wire, counted with libpcap at the switch side of every rank's veth (the
 * ports p0..pP-1 in wancp-PREFIX-sw). Each port is read in its ingress direction only, so
 * every packet is counted once, at the port of the rank that sent it. Per second of
 * capture and per (source rank, destination rank, TCP port) it counts frames, wire bytes
 * (the whole Ethernet frame as captured, GSO super-frames included) and TCP payload bytes.
 * The TCP port is the listening side's (the one below 32768), which names a traffic class.
 *
 * The capture runs in a child process entered into the switch namespace; capture_stop
 * ends it and it writes wire.csv (temporary name, then renamed):
 *   # lines: prefix, ranks, start_unix (real time of second 0), kernel drops per port
 *   second,src_rank,dst_rank,port,frames,wire_bytes,payload_bytes
 * With pcap_dir, every port's packets also go to pcap_dir/pK.pcap (opens in Wireshark).
 */
typedef struct capture {
    pid_t pid;
    char csv_path[1024];
} capture;

int capture_start(capture *c, const char *prefix, int ranks, const char *csv_path, const char *pcap_dir, char *err,
                  size_t errlen);

/* Stops the capture and waits for wire.csv. */
int capture_stop(capture *c, char *err, size_t errlen);

#endif
