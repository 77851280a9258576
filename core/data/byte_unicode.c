#include "byte_unicode.h"

static int printable(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The 68 non-printable bytes are 0x00-0x20 (33), 0x7F-0xA0 (34) and 0xAD (1); they map in
 * that order to U+0100 .. U+0143. */
uint32_t byte_unicode_encode(uint8_t b)
{
    if (printable(b))
        return b;
    if (b <= 0x20)
        return 256u + b;
    if (b <= 0xA0)
        return 256u + 33 + (b - 0x7Fu);
    return 256u + 67; /* 0xAD */
}

/* Inverse of byte_unicode_encode; -1 for a code point outside the map. */
static int code_point_to_byte(uint32_t cp)
{
    if (cp < 256)
        return printable(cp) ? (int)cp : -1;
    uint32_t n = cp - 256;
    if (n <= 32)
        return (int)n;
    if (n <= 66)
        return (int)(0x7F + n - 33);
    return n == 67 ? 0xAD : -1;
}

long byte_unicode_decode(const char *utf8, size_t len, uint8_t *out)
{
    const uint8_t *s = (const uint8_t *)utf8;
    long n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        if (s[i] < 0x80) {
            cp = s[i];
            i += 1;
        } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < len && (s[i + 1] & 0xC0) == 0x80) {
            cp = (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F);
            if (cp < 0x80)
                return -1;
            i += 2;
        } else {
            return -1; /* every mapped code point is below U+0800: two bytes at most */
        }
        int b = code_point_to_byte(cp);
        if (b < 0)
            return -1;
        out[n++] = (uint8_t)b;
    }
    return n;
}
