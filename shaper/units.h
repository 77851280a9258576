#ifndef WANCP_SHAPER_UNITS_H
#define WANCP_SHAPER_UNITS_H

#include <stddef.h>
#include <stdint.h>

/*
 * One unit grammar for everything the shaper is told, in tc's spelling, parsed to integers:
 *
 *   rate  -> bit/s   bit kbit mbit gbit tbit (x1000), kibit mibit gibit tibit (x1024),
 *                    bps kbps mbps gbps tbps (bytes/s, x8), e.g. 300mbit, 12.5gbit
 *   time  -> ns      ns us usec ms msec s sec, e.g. 20ms, 1.5s
 *   size  -> bytes   b, k kb kib, m mb mib, g gb gib (x1024 as in tc), e.g. 128kb
 *
 * A number needs its unit: a bare "300" is rejected, as are unknown suffixes, negative
 * numbers, values that overflow 64 bits and values that are not whole in the base unit
 * (0.5ns). Case matters as in tc (lower case). Errors say what was expected.
 */
int shaper_parse_rate(const char *text, uint64_t *bps, char *err, size_t errlen);
int shaper_parse_time(const char *text, uint64_t *ns, char *err, size_t errlen);
int shaper_parse_size(const char *text, uint64_t *bytes, char *err, size_t errlen);

/* Shortest exact spelling in the grammar (300000000 -> "300mbit", 1500000 ns -> "1500us"). */
void shaper_format_rate(uint64_t bps, char *buf, size_t len);
void shaper_format_time(uint64_t ns, char *buf, size_t len);

#endif
