/* Datagrams of whole frames: see imusic_datagram.h. */
#include "imusic_datagram.h"

size_t imd_next_datagram(const uint8_t *d, size_t n, size_t max)
{
    size_t last_end = 0;
    for (size_t i = 1; i < n; i++) {
        if (d[i] != 0 || d[i - 1] == 0)
            continue;
        size_t end = i + 1;
        /* Trailing zeros after a frame end belong with it (they are flushes, not frames). */
        while (end < n && d[end] == 0 && (end + 1 >= n || d[end + 1] == 0))
            end++;
        if (end > max)
            return last_end ? last_end : end;
        last_end = end;
    }
    if (n <= max || last_end == 0)
        return n; /* everything fits, or there is no frame end to cut at */
    return last_end;
}
