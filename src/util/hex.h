/*
 * hex: the value of one hexadecimal digit, for every parser that meets
 * them (percent escapes in HTTP targets and Redis URLs, chunk sizes,
 * JSON's \uXXXX).
 */
#ifndef MOONWS_HEX_H
#define MOONWS_HEX_H

/* 0..15, or -1 when c is not a hex digit (either case). */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
