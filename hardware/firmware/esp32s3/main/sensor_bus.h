/*
 * One I2C sensor bus: an ESP32-S3 I2C controller, a TCA9548A multiplexer, and on each of its
 * channels one flexible sensor board (QMI8658 + QMC5883P at the same addresses on every
 * channel). Only the owning sampler task touches a bus after init: no locking.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "board.h"
#include "driver/i2c_master.h"
#include "esp_err.h"

typedef struct {
    const board_bus_t *pins;
    i2c_master_bus_handle_t bus;
    i2c_master_dev_handle_t mux, imu, mag;
    int8_t channel; /* channel selected now, -1 none */
} sensor_bus_t;

/* Bring a bus up: reset its mux, create the controller and the three device handles. */
esp_err_t sensor_bus_init(sensor_bus_t *b, const board_bus_t *pins, uint32_t scl_hz);

/* Route the bus to one mux channel (TCA9548A control register: one bit per channel). */
esp_err_t sensor_bus_select(sensor_bus_t *b, uint8_t channel);

/* Register access on the selected channel's chips (dev = b->imu or b->mag). */
esp_err_t sensor_bus_read(i2c_master_dev_handle_t dev, uint8_t reg, uint8_t *buf, size_t n);
esp_err_t sensor_bus_write(i2c_master_dev_handle_t dev, uint8_t reg, uint8_t value);
