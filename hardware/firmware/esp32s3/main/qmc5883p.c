/* QMC5883P driver: see qmc5883p.h for the datasheet registers used. */
#include "qmc5883p.h"

#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

enum { REG_CHIP_ID = 0x00, REG_DATA = 0x01, REG_CTRL1 = 0x0A, REG_CTRL2 = 0x0B, REG_SIGN = 0x29 };
#define CHIP_ID_VALUE 0x80
#define CTRL2_SOFT_RST 0x80
#define CTRL2_RNG_8G_SET_RESET_ON 0x08 /* RNG = 10 (8 G), SET/RESET = 00 (on) */
/* OSR2 = 11, OSR1 = 00, ODR = 11 (200 Hz), MODE = 01 (normal): the datasheet's example. */
#define CTRL1_NORMAL_200HZ 0xCD
#define SIGN_DEFAULT 0x06

esp_err_t qmc5883p_init(sensor_bus_t *b)
{
    uint8_t id = 0;
    esp_err_t err = sensor_bus_write(b->mag, REG_CTRL2, CTRL2_SOFT_RST);
    if (err != ESP_OK)
        return err;
    vTaskDelay(pdMS_TO_TICKS(5));
    err = sensor_bus_read(b->mag, REG_CHIP_ID, &id, 1);
    if (err != ESP_OK)
        return err;
    if (id != CHIP_ID_VALUE)
        return ESP_ERR_NOT_FOUND;
    err = sensor_bus_write(b->mag, REG_SIGN, SIGN_DEFAULT);
    if (err == ESP_OK)
        err = sensor_bus_write(b->mag, REG_CTRL2, CTRL2_RNG_8G_SET_RESET_ON);
    if (err == ESP_OK)
        err = sensor_bus_write(b->mag, REG_CTRL1, CTRL1_NORMAL_200HZ);
    return err;
}

esp_err_t qmc5883p_read(sensor_bus_t *b, int16_t out[3])
{
    uint8_t raw[6];
    esp_err_t err = sensor_bus_read(b->mag, REG_DATA, raw, sizeof raw);
    if (err != ESP_OK)
        return err;
    for (int i = 0; i < 3; i++)
        out[i] = (int16_t)(raw[2 * i] | (raw[2 * i + 1] << 8));
    return ESP_OK;
}
