#ifndef WANCP_SHAPER_LINK_LAYOUT_H
#define WANCP_SHAPER_LINK_LAYOUT_H

/* What the shaping (topology.h) and the link model (link_model.h) agree on, and nothing
 * else: how P ranks' links are laid out, and the burst htb gives every link. */

/* Uplink: each rank has one access link, both ways, that all its flows share. Mesh: every
 * ordered pair of ranks has its own link. */
enum topology_model { TOPOLOGY_UPLINK, TOPOLOGY_MESH };

/* The burst of every htb class, in KiB: smaller ones cost ten times the CPU here for the
 * same accuracy. The link model's bucket is the same size. */
#define TOPOLOGY_HTB_BURST_KIB 128

#endif
