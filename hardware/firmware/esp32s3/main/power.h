/* Battery voltage (ADC through a divider), board temperature (the S3's internal sensor) and
 * the status LED. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"

esp_err_t power_init(void);
/* Battery voltage in mV (0 when it cannot be read: STATUS then says 255 % = unknown). */
uint16_t power_battery_mv(void);
/* Chip temperature in 0.01 degC (INT16_MIN when unavailable). */
int16_t power_temperature_cdeg(void);
/* Blink the LED at 4 Hz for seconds (CMD_IDENTIFY); 0 stops. */
void power_identify(uint8_t seconds);
/* LED steady on while streaming, off otherwise. */
void power_led_streaming(bool on);
