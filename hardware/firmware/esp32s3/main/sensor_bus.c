/* I2C sensor bus with a TCA9548A multiplexer: see sensor_bus.h. */
#include "sensor_bus.h"

#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

#define XFER_TIMEOUT_MS 5 /* a whole 12-byte burst takes ~0.35 ms at 400 kHz */

static esp_err_t add_device(sensor_bus_t *b, uint8_t addr, uint32_t scl_hz,
                            i2c_master_dev_handle_t *out)
{
    const i2c_device_config_t cfg = {
        .dev_addr_length = I2C_ADDR_BIT_LEN_7,
        .device_address = addr,
        .scl_speed_hz = scl_hz,
    };
    return i2c_master_bus_add_device(b->bus, &cfg, out);
}

esp_err_t sensor_bus_init(sensor_bus_t *b, const board_bus_t *pins, uint32_t scl_hz)
{
    b->pins = pins;
    b->channel = -1;
    /* Pulse the mux reset: a mux left mid-transfer by a watchdog reset can hold SDA low. */
    gpio_config_t io = {.pin_bit_mask = 1ULL << pins->mux_reset, .mode = GPIO_MODE_OUTPUT};
    if (gpio_config(&io) != ESP_OK)
        return ESP_FAIL;
    gpio_set_level(pins->mux_reset, 0);
    vTaskDelay(pdMS_TO_TICKS(1));
    gpio_set_level(pins->mux_reset, 1);
    vTaskDelay(pdMS_TO_TICKS(1));

    const i2c_master_bus_config_t bus_cfg = {
        .i2c_port = pins->port,
        .sda_io_num = pins->sda,
        .scl_io_num = pins->scl,
        .clk_source = I2C_CLK_SRC_DEFAULT,
        .glitch_ignore_cnt = 7,
        /* External 2.2 kOhm pull-ups on the board: the internal ~45 kOhm ones are far too weak
         * for 400 kHz over flex cables. */
        .flags.enable_internal_pullup = false,
    };
    esp_err_t err = i2c_new_master_bus(&bus_cfg, &b->bus);
    if (err == ESP_OK)
        err = add_device(b, pins->mux_addr, scl_hz, &b->mux);
    if (err == ESP_OK)
        err = add_device(b, BOARD_QMI8658_ADDR, scl_hz, &b->imu);
    if (err == ESP_OK)
        err = add_device(b, BOARD_QMC5883P_ADDR, scl_hz, &b->mag);
    return err;
}

esp_err_t sensor_bus_select(sensor_bus_t *b, uint8_t channel)
{
    if (b->channel == channel)
        return ESP_OK;
    uint8_t mask = (uint8_t)(1u << channel);
    esp_err_t err = i2c_master_transmit(b->mux, &mask, 1, XFER_TIMEOUT_MS);
    b->channel = err == ESP_OK ? (int8_t)channel : -1;
    return err;
}

esp_err_t sensor_bus_read(i2c_master_dev_handle_t dev, uint8_t reg, uint8_t *buf, size_t n)
{
    /* Write the register address, repeated START, read n bytes: one transaction. */
    return i2c_master_transmit_receive(dev, &reg, 1, buf, n, XFER_TIMEOUT_MS);
}

esp_err_t sensor_bus_write(i2c_master_dev_handle_t dev, uint8_t reg, uint8_t value)
{
    const uint8_t buf[2] = {reg, value};
    return i2c_master_transmit(dev, buf, 2, XFER_TIMEOUT_MS);
}
