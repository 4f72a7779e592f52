/* QMI8658 driver: see qmi8658.h for the datasheet registers used. */
#include "qmi8658.h"

#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

enum {
    REG_WHO_AM_I = 0x00,
    REG_CTRL1 = 0x02,
    REG_CTRL2 = 0x03,
    REG_CTRL3 = 0x04,
    REG_CTRL5 = 0x06,
    REG_CTRL7 = 0x08,
    REG_AX_L = 0x35,
    REG_RESET = 0x60,
};
#define WHO_AM_I_VALUE 0x05
#define RESET_VALUE 0xB0
#define CTRL1_ADDR_AI 0x40 /* auto-increment for burst reads; bit 5 = 0: little-endian */
#define AFS_4G (0x1 << 4)
#define GFS_512DPS (0x5 << 4)
#define ODR_896HZ 0x3 /* 6-axis mode: 896.8 Hz */
#define ODR_448HZ 0x4 /* 6-axis mode: 448.4 Hz */
/* Both low-pass filters on, mode 11 (bandwidth 13.37 % of ODR: 60 Hz at 448.4 Hz). */
#define CTRL5_LPF 0x77
#define CTRL7_AEN_GEN 0x03

esp_err_t qmi8658_init(sensor_bus_t *b, uint16_t rate_hz)
{
    uint8_t id = 0;
    esp_err_t err = sensor_bus_write(b->imu, REG_RESET, RESET_VALUE);
    if (err != ESP_OK)
        return err;
    vTaskDelay(pdMS_TO_TICKS(20)); /* reset completes within 15 ms */
    err = sensor_bus_read(b->imu, REG_WHO_AM_I, &id, 1);
    if (err != ESP_OK)
        return err;
    if (id != WHO_AM_I_VALUE)
        return ESP_ERR_NOT_FOUND;
    const uint8_t odr = rate_hz > 200 ? ODR_896HZ : ODR_448HZ;
    const uint8_t cfg[][2] = {
        {REG_CTRL1, CTRL1_ADDR_AI},
        {REG_CTRL2, AFS_4G | odr},
        {REG_CTRL3, GFS_512DPS | odr},
        {REG_CTRL5, CTRL5_LPF},
        {REG_CTRL7, CTRL7_AEN_GEN},
    };
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0] && err == ESP_OK; i++)
        err = sensor_bus_write(b->imu, cfg[i][0], cfg[i][1]);
    return err;
}

esp_err_t qmi8658_read(sensor_bus_t *b, int16_t out[6])
{
    uint8_t raw[12];
    esp_err_t err = sensor_bus_read(b->imu, REG_AX_L, raw, sizeof raw);
    if (err != ESP_OK)
        return err;
    for (int i = 0; i < 6; i++)
        out[i] = (int16_t)(raw[2 * i] | (raw[2 * i + 1] << 8));
    return ESP_OK;
}
