/*
 * The device side of the protocol (portable C, host-tested): what a wearable answers to each
 * host command, and the battery state of charge reported in STATUS.
 *
 * The firmware owns the hardware (timer, buses, radio); this module owns the decisions, so the
 * same rules run on the ESP32-S3 and in the host tests:
 *   - commands addressed to another device_id (not 0, not ours) are ignored, with no answer;
 *   - START: ACK ok, start streaming at info.rate_hz (again: ACK ok, nothing changes);
 *   - STOP: ACK ok, stop (the firmware flushes the half-full frame);
 *   - SET_RATE 25..max_rate_hz (400, or less where the sensor buses cannot keep up): ACK ok,
 *     effective at the next START; DEVICE_INFO reports it at once ("the rate that will be
 *     used", PROTOCOL.md); out of range: ACK bad_argument, no change;
 *   - IDENTIFY: ACK ok, blink for the given seconds;
 *   - GET_INFO: DEVICE_INFO instead of an ACK;
 *   - a command type the device does not know: ACK unknown; a known command with a bad body
 *     length: ACK bad_argument. Device-to-host types arriving here are ignored.
 */
#ifndef IMUSIC_DEVICE_H
#define IMUSIC_DEVICE_H

#include "imusic_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    IMD_ACTION_NONE = 0,
    IMD_ACTION_START,    /* start the sample timer at dev->running_rate_hz */
    IMD_ACTION_STOP,     /* stop the timer, flush the packer */
    IMD_ACTION_IDENTIFY, /* blink the LED for dev->identify_seconds */
} imd_action;

typedef struct {
    imp_device_info info;     /* what DEVICE_INFO says; info.rate_hz: the rate of the next START */
    uint32_t device_id;       /* low 32 bits of info.serial */
    uint16_t running_rate_hz; /* the rate of the current run (0 before the first START) */
    uint16_t max_rate_hz;     /* highest rate SET_RATE accepts (IMP_MAX_RATE_HZ after init) */
    bool streaming;
    uint8_t identify_seconds;
    uint32_t commands, ignored;
} imd_device;

/* Fill dev from its DEVICE_INFO content (device_id from the serial). */
void imd_device_init(imd_device *dev, const imp_device_info *info);

/*
 * Handle one frame from the host: msg and r as imp_decoder_feed gave them. Writes the answer
 * frame (ACK or DEVICE_INFO) into out and its length into *out_len (0: no answer), and returns
 * what the firmware must do.
 */
imd_action imd_handle(imd_device *dev, const imp_message *msg, imp_result r, uint8_t *out,
                      size_t cap, size_t *out_len);

/* State of charge (0..100) of a one-cell LiPo from its resting voltage; 255 when mv is 0
 * (no battery sense wired). A coarse open-circuit curve: good to ~10 %, which is what a
 * "charge me soon" warning needs. */
uint8_t imd_battery_percent(uint16_t mv);

#ifdef __cplusplus
}
#endif

#endif
