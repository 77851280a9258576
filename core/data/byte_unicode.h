#ifndef WANCP_BYTE_UNICODE_H
#define WANCP_BYTE_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/*
 * GPT-2's reversible map from bytes to printable Unicode code points (bytes_to_unicode in
 * OpenAI's encoder.py): printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100 onwards in byte order. encoder.json and vocab.bpe spell tokens in these code
 * points; wancp works on the raw bytes underneath.
 */

/* The code point standing for byte b. */
uint32_t byte_unicode_encode(uint8_t b);

/* Decodes a UTF-8 string of such code points into raw bytes (out needs len bytes). Returns
 * the byte count, or -1 if the string is not valid UTF-8 or holds a code point outside the
 * map. */
long byte_unicode_decode(const char *utf8, size_t len, uint8_t *out);

#endif
