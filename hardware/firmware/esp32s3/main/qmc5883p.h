/*
 * QST QMC5883P 3-axis magnetometer over I2C (fixed address 0x2C).
 *
 * Registers from the QMC5883P datasheet (QST, Rev C): chip ID 0x00 reads 0x80; data X/Y/Z
 * 0x01..0x06 (LSB first); status 0x09 (bit 0 data ready); control 1 0x0A (OSR2[7:6]
 * OSR1[5:4] ODR[3:2] MODE[1:0]); control 2 0x0B (SOFT_RST bit 7, RNG[3:2], SET/RESET[1:0]);
 * register 0x29 = 0x06 defines the axis signs (the datasheet's start-up sequence).
 * Sensitivity at +-8 G: 3750 LSB/G, i.e. 100/3750 uT per count.
 */
#pragma once

#include <stdint.h>

#include "esp_err.h"
#include "sensor_bus.h"

#define QMC5883P_RANGE_GAUSS 8
#define QMC5883P_LSB_PER_GAUSS 3750.0f

/* Reset, check the chip ID, configure: normal mode, 200 Hz, +-8 G, set/reset on. */
esp_err_t qmc5883p_init(sensor_bus_t *b);

/* Read x, y, z (counts) from the selected channel: one 6-byte burst. */
esp_err_t qmc5883p_read(sensor_bus_t *b, int16_t out[3]);
