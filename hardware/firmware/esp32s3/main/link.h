/*
 * The three links a wearable talks over, behind one interface: USB serial (the S3's built-in
 * USB-Serial-JTAG CDC port), BLE notifications (NimBLE GATT server) and Wi-Fi UDP. Each moves
 * the protocol byte stream (whole frames, each 0x00 ... 0x00) and hands received bytes to one
 * callback with the link they came from. Sends are serialised: frames never interleave.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

typedef enum { LINK_USB = 0, LINK_BLE, LINK_UDP, LINK_COUNT } link_id_t;

/* Bytes from the host; called from the link's own task (one task per link). */
typedef void (*link_rx_fn)(link_id_t from, const uint8_t *data, size_t n);

/* Start every configured link; name is the advertised BLE name. */
esp_err_t link_init(link_rx_fn on_rx, const char *name);

/* Is someone listening on the link (USB host attached, BLE subscribed, Wi-Fi up)? */
bool link_ready(link_id_t link);

/* Send whole frames on one link. Returns false (and counts tx_dropped) when the link is not
 * ready or could not take all of it. */
bool link_send(link_id_t link, const uint8_t *frames, size_t n);

/* Send on every ready link (before a host has chosen one by sending a command). */
void link_send_all(const uint8_t *frames, size_t n);

uint32_t link_tx_dropped(void);

/* The per-link implementations (link_usb.c, link_ble.c, link_udp.c). */
esp_err_t link_usb_init(link_rx_fn on_rx);
bool link_usb_ready(void);
bool link_usb_send(const uint8_t *d, size_t n);
esp_err_t link_ble_init(link_rx_fn on_rx, const char *name);
bool link_ble_ready(void);
bool link_ble_send(const uint8_t *d, size_t n);
esp_err_t link_udp_init(link_rx_fn on_rx);
bool link_udp_ready(void);
bool link_udp_send(const uint8_t *d, size_t n);
