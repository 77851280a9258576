#include "status.h"

#include <stdarg.h>
#include <stdio.h>

int wancp_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        wancp_text_clean(err);
    }
    return code;
}

int wancp_exit_status(int code)
{
    if (code == WANCP_OK)
        return 0;
    return code == WANCP_ERR_INPUT ? 2 : 1;
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 when it is not one: no overlong
 * forms, no surrogates, nothing above U+10FFFF. */
static int utf8_length(const unsigned char *s)
{
    unsigned c = s[0];
    int n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
    if (n == 0 || (n == 3 && c > 0xEF))
        return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return n;
}

void wancp_text_clean(char *text)
{
    unsigned char *s = (unsigned char *)text;
    while (*s != 0) {
        if (*s < 0x80) {
            if (*s < 0x20 || *s == 0x7F)
                *s = '?';
            s++;
            continue;
        }
        int n = utf8_length(s);
        if (n == 0)
            *s++ = '?';
        else
            s += n;
    }
}
