/* Battery, temperature, LED: see power.h. */
#include "power.h"

#include "board.h"
#include "driver/gpio.h"
#include "driver/temperature_sensor.h"
#include "esp_adc/adc_cali.h"
#include "esp_adc/adc_cali_scheme.h"
#include "esp_adc/adc_oneshot.h"
#include "esp_log.h"
#include "esp_timer.h"

static const char *TAG = "power";
static adc_oneshot_unit_handle_t adc;
static adc_cali_handle_t cali;
static temperature_sensor_handle_t tsens;
static esp_timer_handle_t blink_timer;
static int blinks_left;
static bool streaming_led;

static void blink(void *arg)
{
    (void)arg;
    if (blinks_left <= 0) {
        esp_timer_stop(blink_timer);
        gpio_set_level(BOARD_PIN_LED, streaming_led);
        return;
    }
    gpio_set_level(BOARD_PIN_LED, blinks_left & 1);
    blinks_left--;
}

esp_err_t power_init(void)
{
    gpio_config_t led = {.pin_bit_mask = 1ULL << BOARD_PIN_LED, .mode = GPIO_MODE_OUTPUT};
    gpio_config(&led);
    gpio_set_level(BOARD_PIN_LED, 0);
    const esp_timer_create_args_t targs = {.callback = blink, .name = "identify"};
    esp_timer_create(&targs, &blink_timer);

    const adc_oneshot_unit_init_cfg_t unit = {.unit_id = BOARD_PIN_BATTERY_ADC_UNIT};
    if (adc_oneshot_new_unit(&unit, &adc) == ESP_OK) {
        /* 12 dB attenuation: 0..~3.1 V at the pin, i.e. up to 6.2 V of battery through 1:2. */
        const adc_oneshot_chan_cfg_t chan = {.atten = ADC_ATTEN_DB_12, .bitwidth = ADC_BITWIDTH_DEFAULT};
        adc_oneshot_config_channel(adc, BOARD_PIN_BATTERY_ADC_CHANNEL, &chan);
        const adc_cali_curve_fitting_config_t cc = {
            .unit_id = BOARD_PIN_BATTERY_ADC_UNIT,
            .chan = BOARD_PIN_BATTERY_ADC_CHANNEL,
            .atten = ADC_ATTEN_DB_12,
            .bitwidth = ADC_BITWIDTH_DEFAULT,
        };
        if (adc_cali_create_scheme_curve_fitting(&cc, &cali) != ESP_OK) {
            ESP_LOGW(TAG, "no ADC calibration in eFuse: battery voltage will read as unknown");
            cali = NULL;
        }
    }
    const temperature_sensor_config_t tcfg = TEMPERATURE_SENSOR_CONFIG_DEFAULT(-10, 80);
    if (temperature_sensor_install(&tcfg, &tsens) == ESP_OK)
        temperature_sensor_enable(tsens);
    else
        tsens = NULL;
    return ESP_OK;
}

uint16_t power_battery_mv(void)
{
    int raw = 0, mv = 0, sum = 0;
    if (!adc || !cali)
        return 0;
    for (int i = 0; i < 8; i++) { /* average out the ADC's few-LSB noise */
        if (adc_oneshot_read(adc, BOARD_PIN_BATTERY_ADC_CHANNEL, &raw) != ESP_OK ||
            adc_cali_raw_to_voltage(cali, raw, &mv) != ESP_OK)
            return 0;
        sum += mv;
    }
    return (uint16_t)(sum / 8 * BOARD_BATTERY_DIVIDER);
}

int16_t power_temperature_cdeg(void)
{
    float c;
    if (!tsens || temperature_sensor_get_celsius(tsens, &c) != ESP_OK)
        return INT16_MIN;
    return (int16_t)(c * 100.0f);
}

void power_identify(uint8_t seconds)
{
    esp_timer_stop(blink_timer);
    blinks_left = seconds * 8; /* 4 Hz: 8 toggles a second */
    if (blinks_left > 0)
        esp_timer_start_periodic(blink_timer, 125000);
    else
        gpio_set_level(BOARD_PIN_LED, streaming_led);
}

void power_led_streaming(bool on)
{
    streaming_led = on;
    if (blinks_left <= 0)
        gpio_set_level(BOARD_PIN_LED, on);
}
