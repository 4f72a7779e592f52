/*
 * Cutting the frame byte stream into UDP datagrams of whole frames (portable, host-tested).
 * A datagram must hold whole frames only (PROTOCOL.md) and should stay within one Ethernet
 * MTU (1472 bytes of UDP payload) so that IP never fragments it.
 */
#ifndef IMUSIC_DATAGRAM_H
#define IMUSIC_DATAGRAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMD_MAX_DATAGRAM 1472u

/* Length of the next datagram to send from d[0..n): as many whole frames as fit in max bytes,
 * at least one frame (a frame longer than max goes alone), or all of n if it holds no frame
 * end. Frames end at a 0x00 that follows a non-zero byte. */
size_t imd_next_datagram(const uint8_t *d, size_t n, size_t max);

#ifdef __cplusplus
}
#endif

#endif
