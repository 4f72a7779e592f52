/*
 * QST QMI8658 6-axis IMU (accelerometer + gyroscope) over I2C.
 *
 * Register map and field values from the QMI8658A datasheet (QST, Rev A, 2022, doc 13-52-25)
 * and the QMI8658C datasheet Rev 0.8 (2021), section "Register Map": WHO_AM_I 0x00 reads 0x05;
 * CTRL1 0x02 (bit 6 address auto-increment, bit 5 big-endian); CTRL2 0x03 accelerometer
 * aFS[6:4] aODR[3:0]; CTRL3 0x04 gyroscope gFS[6:4] gODR[3:0]; CTRL5 0x06 low-pass filters;
 * CTRL7 0x08 sensor enables (bit 0 accel, bit 1 gyro); AX_L..GZ_H 0x35..0x40 (12 bytes);
 * RESET 0x60 (write 0xB0).
 */
#pragma once

#include <stdint.h>

#include "esp_err.h"
#include "sensor_bus.h"

#define QMI8658_ACC_RANGE_G 4       /* the rig files' "settings" (hardware/rigs) */
#define QMI8658_GYRO_RANGE_DPS 512
#define QMI8658_ACC_LSB_PER_G 8192.0f  /* +-4 g: 2^15 / 4 */
#define QMI8658_GYRO_LSB_PER_DPS 64.0f /* +-512 dps: 2^15 / 512 */

/* Reset, check WHO_AM_I and configure the chip on the selected channel for a host sample rate:
 * the chip runs faster (448.4 Hz, or 896.8 Hz above 200 Hz) behind its low-pass filter, and
 * the host timer samples its output registers. */
esp_err_t qmi8658_init(sensor_bus_t *b, uint16_t rate_hz);

/* Read acc xyz then gyro xyz (counts) from the selected channel: one 12-byte burst. */
esp_err_t qmi8658_read(sensor_bus_t *b, int16_t out[6]);
