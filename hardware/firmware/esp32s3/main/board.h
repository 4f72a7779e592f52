/*
 * The wearable's board: pins, the two sensor buses, and which mux channel each rig site is on.
 * Change this file (and board.c) for another PCB; everything else follows it.
 *
 * Why two I2C buses: one 400 kHz bus cannot read 12 sites at 200 Hz (hardware/firmware/
 * README.md, "I2C budget"); the ESP32-S3 has two I2C controllers, each gets a TCA9548A and
 * half the sites, and both are read at the same time by their own task.
 */
#pragma once

#include <stdint.h>

#include "driver/gpio.h"
#include "driver/i2c_types.h"

#define BOARD_N_BUSES 2
#define BOARD_MAX_SITES 16 /* 2 muxes x 8 channels */

typedef struct {
    i2c_port_num_t port;
    gpio_num_t sda, scl;
    gpio_num_t mux_reset; /* TCA9548A RESET, active low */
    uint8_t mux_addr;     /* 0x70 + A2 A1 A0 */
} board_bus_t;

typedef struct {
    const char *name; /* the rig's site name (hardware/rigs/<rig>.json) */
    uint8_t bus;      /* index into board_buses */
    uint8_t channel;  /* TCA9548A channel 0..7 */
} board_site_t;

typedef struct {
    const char *rig_id;
    uint8_t n_sites;
    const board_site_t *sites; /* rig order: the order of the SAMPLES sensor blocks */
    uint8_t tap_site;          /* the mentalis (chin) site: tap detection runs on it */
} board_rig_t;

extern const board_bus_t board_buses[BOARD_N_BUSES];
extern const board_rig_t board_rig; /* chosen in menuconfig (CONFIG_IMUSIC_RIG_*) */

/* Sensor addresses on every channel: one flexible sensor board per channel. */
#define BOARD_QMI8658_ADDR 0x6B  /* SA0 high (QMI8658 datasheet: 0x6A with SA0 low) */
#define BOARD_QMC5883P_ADDR 0x2C /* fixed (QMC5883P datasheet) */

/* The magnetometer's axes in the QMI8658's frame (the sensor frame of SAMPLES): on the
 * reference flex board both chips are placed with X and Y aligned and Z up. A board that
 * turns the QMC5883P by 90 degrees changes these. mag_out[i] = sign[i] * mag_raw[index[i]]. */
#define BOARD_MAG_AXIS_INDEX {0, 1, 2}
#define BOARD_MAG_AXIS_SIGN {1, 1, 1}

#define BOARD_PIN_BATTERY_ADC_UNIT ADC_UNIT_1
#define BOARD_PIN_BATTERY_ADC_CHANNEL ADC_CHANNEL_0 /* GPIO1, through a 100k/100k divider */
#define BOARD_BATTERY_DIVIDER 2
#define BOARD_PIN_LED GPIO_NUM_21      /* status LED, active high */
#define BOARD_PIN_BUTTON GPIO_NUM_0    /* BOOT button: EVENT kind 3 */
#define BOARD_PIN_SYNC_IN GPIO_NUM_14  /* sync pulse input (rising edge): EVENT kind 2 */
