/*
 * imusic wearable firmware (ESP32-S3, ESP-IDF >= 5.2): the glue between the sampler, the
 * portable protocol logic (../../protocol, ../../core) and the links.
 *
 * Tasks (core 1: the two bus readers; core 0: the rest and the radio stacks):
 *   reader x2 (sampler.c)  timer tick -> read the sites of one I2C bus -> queue the instant
 *   stream                 instants -> tap detection -> SAMPLES frames -> the active link
 *   command                host frames from any link -> imd_handle -> ACK / DEVICE_INFO
 *   status                 STATUS about once a second; EVENTs from the button and sync input
 * The active link is the one the last command came from: the host that talks owns the stream.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "driver/gpio.h"
#include "esp_attr.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "imusic_device.h"
#include "imusic_i2c_budget.h"
#include "imusic_packer.h"
#include "imusic_protocol.h"
#include "imusic_tap.h"
#include "link.h"
#include "nvs_flash.h"
#include "power.h"
#include "qmc5883p.h"
#include "qmi8658.h"
#include "sampler.h"
#include "sdkconfig.h"

static const char *TAG = "imusic";

#define FW_MAJOR 1
#define FW_MINOR 0
#define FW_PATCH 0
#define SERIAL_PREFIX 0xE5A1000000000000ull /* high 16 bits; the low 48 are the factory MAC */
#define STATUS_PERIOD_MS 1000
#define DEG2RAD 0.017453292519943295f
#define G 9.80665f

typedef struct {
    link_id_t from;
    imp_result result;
    imp_message msg; /* header and scalar fields only: msg.body is not valid here */
} command_t;

static imd_device dev;
static imp_decoder decoders[LINK_COUNT]; /* one per link: each link's rx runs in one task */
static QueueHandle_t commands, events;
static SemaphoreHandle_t stream_lock; /* the packer and tap detector */
static imd_packer packer;
static imd_tap tap;
static volatile link_id_t active = LINK_COUNT; /* none until a host sends a command */
static atomic_bool flush_requested;

/* ---- helpers ------------------------------------------------------------------------ */

static void send_active(const uint8_t *frames, size_t n)
{
    if (n == 0)
        return;
    if (active < LINK_COUNT)
        link_send(active, frames, n);
    else
        link_send_all(frames, n);
}

static void send_event(uint8_t kind, uint8_t sensor, int32_t value, uint64_t t_us)
{
    uint8_t out[64];
    const imp_event ev = {.t_us = t_us, .kind = kind, .sensor = sensor, .value = value};
    send_active(out, imp_encode_event(dev.device_id, &ev, out, sizeof out));
}

/* ---- receiving ---------------------------------------------------------------------- */

static void on_rx(link_id_t from, const uint8_t *data, size_t n)
{
    imp_decoder *d = &decoders[from];
    for (size_t off = 0; off < n;) {
        command_t c = {.from = from};
        off += imp_decoder_feed(d, data + off, n - off, &c.msg, &c.result);
        if (c.result == IMP_RESULT_COUNT)
            continue; /* frame not finished yet */
        c.msg.body = NULL;
        if (xQueueSend(commands, &c, 0) != pdTRUE)
            ESP_LOGW(TAG, "command queue full: command dropped (the host re-sends)");
    }
}

static void command_task(void *arg)
{
    (void)arg;
    static uint8_t out[IMP_MAX_FRAME];
    command_t c;
    for (;;) {
        xQueueReceive(commands, &c, portMAX_DELAY);
        size_t len = 0;
        imd_action action = imd_handle(&dev, &c.msg, c.result, out, sizeof out, &len);
        if (len == 0)
            continue; /* not for us, or not a command */
        active = c.from;
        switch (action) {
        case IMD_ACTION_START: {
            static uint8_t held[IMD_PACKER_OUT_CAP];
            xSemaphoreTake(stream_lock, portMAX_DELAY);
            /* A quick STOP-START must not lose the previous run's last instants. */
            size_t n_held = imd_packer_flush(&packer, held, sizeof held);
            atomic_store(&flush_requested, false);
            imd_packer_init(&packer, dev.device_id, dev.info.sensor_count, dev.info.flags,
                            dev.info.instants_per_frame);
            imd_tap_init(&tap, dev.running_rate_hz, 0, board_rig.tap_site);
            xSemaphoreGive(stream_lock);
            send_active(held, n_held);
            /* ACK first: the host waits for it before expecting SAMPLES. */
            link_send(c.from, out, len);
            if (sampler_start(dev.running_rate_hz) != ESP_OK) {
                ESP_LOGE(TAG, "timer start failed");
                dev.streaming = false;
            }
            power_led_streaming(dev.streaming);
            continue;
        }
        case IMD_ACTION_STOP:
            sampler_stop();
            atomic_store(&flush_requested, true);
            power_led_streaming(false);
            break;
        case IMD_ACTION_IDENTIFY:
            power_identify(dev.identify_seconds);
            break;
        default:
            break;
        }
        link_send(c.from, out, len);
    }
}

/* ---- streaming ---------------------------------------------------------------------- */

static void stream_task(void *arg)
{
    (void)arg;
    static uint8_t out[IMD_PACKER_OUT_CAP];
    static sampler_instant_t instant;
    const float acc_scale = dev.info.accel_scale;
    for (;;) {
        bool got = xQueueReceive(sampler_queue(), &instant, pdMS_TO_TICKS(20)) == pdTRUE;
        xSemaphoreTake(stream_lock, portMAX_DELAY);
        size_t n = 0;
        imp_event ev;
        bool tapped = false;
        if (got) {
            const int16_t *a = &instant.values[board_rig.tap_site * SAMPLER_VALUES_PER_SITE];
            const float acc[3] = {a[0] * acc_scale, a[1] * acc_scale, a[2] * acc_scale};
            tapped = imd_tap_feed(&tap, instant.t_us, acc, &ev);
            n = imd_packer_add(&packer, instant.seq, instant.t_us, instant.values, out, sizeof out);
        } else if (atomic_exchange(&flush_requested, false)) {
            n = imd_packer_flush(&packer, out, sizeof out); /* after STOP: the half frame */
        }
        xSemaphoreGive(stream_lock);
        /* Send each frame as soon as its last instant is read: the host's clock map uses
         * arrival times (PROTOCOL.md, "Reboots, boot_id and time"). */
        send_active(out, n);
        if (tapped)
            send_event(ev.kind, ev.sensor, ev.value, ev.t_us);
    }
}

/* ---- status and events -------------------------------------------------------------- */

static void IRAM_ATTR on_gpio(void *arg)
{
    const imp_event ev = {.t_us = (uint64_t)esp_timer_get_time(),
                          .kind = (uint8_t)(uintptr_t)arg, .sensor = IMP_NO_SENSOR, .value = 0};
    BaseType_t woken = pdFALSE;
    xQueueSendFromISR(events, &ev, &woken);
    if (woken)
        portYIELD_FROM_ISR();
}

static void status_task(void *arg)
{
    (void)arg;
    uint8_t out[64];
    int64_t next = esp_timer_get_time();
    for (;;) {
        int64_t wait_us = next - esp_timer_get_time();
        imp_event ev;
        if (wait_us > 0 && xQueueReceive(events, &ev, pdMS_TO_TICKS(wait_us / 1000 + 1)) == pdTRUE) {
            send_event(ev.kind, ev.sensor, ev.value, ev.t_us);
            continue;
        }
        next += STATUS_PERIOD_MS * 1000;
        const uint16_t mv = power_battery_mv();
        const imp_status st = {
            .t_us = (uint64_t)esp_timer_get_time(),
            .battery_mv = mv,
            .battery_pct = imd_battery_percent(mv),
            .temperature_cdeg = power_temperature_cdeg(),
            .sensor_errors = sampler_sensor_errors(),
            .overruns = sampler_overruns(),
            .tx_dropped = link_tx_dropped(),
        };
        /* Sent whether streaming or not: over UDP it is how a host first hears the device. */
        send_active(out, imp_encode_status(dev.device_id, &st, out, sizeof out));
    }
}

static void inputs_init(void)
{
    const gpio_config_t io = {
        .pin_bit_mask = (1ULL << BOARD_PIN_BUTTON) | (1ULL << BOARD_PIN_SYNC_IN),
        .mode = GPIO_MODE_INPUT,
        .pull_up_en = GPIO_PULLUP_ENABLE,
        .intr_type = GPIO_INTR_ANYEDGE,
    };
    gpio_config(&io);
    gpio_set_intr_type(BOARD_PIN_BUTTON, GPIO_INTR_NEGEDGE);  /* pressed: pulled to GND */
    gpio_set_intr_type(BOARD_PIN_SYNC_IN, GPIO_INTR_POSEDGE); /* sync pulse: rising edge */
    gpio_install_isr_service(0);
    gpio_isr_handler_add(BOARD_PIN_BUTTON, on_gpio, (void *)(uintptr_t)IMP_EVENT_BUTTON);
    gpio_isr_handler_add(BOARD_PIN_SYNC_IN, on_gpio, (void *)(uintptr_t)IMP_EVENT_SYNC);
}

/* ---- boot --------------------------------------------------------------------------- */

static void device_info_init(imp_device_info *info)
{
    uint8_t mac[6] = {0};
    esp_efuse_mac_get_default(mac);
    uint64_t low48 = 0;
    for (int i = 0; i < 6; i++)
        low48 = (low48 << 8) | mac[i];
    memset(info, 0, sizeof *info);
    info->fw_major = FW_MAJOR;
    info->fw_minor = FW_MINOR;
    info->fw_patch = FW_PATCH;
    info->serial = SERIAL_PREFIX | low48;
    info->rate_hz = CONFIG_IMUSIC_DEFAULT_RATE_HZ;
    info->sensor_count = board_rig.n_sites;
    info->flags = IMP_FLAG_MAG; /* raw 9 axes; orientation is fused on the host */
    info->accel_scale = G / QMI8658_ACC_LSB_PER_G;
    info->gyro_scale = DEG2RAD / QMI8658_GYRO_LSB_PER_DPS;
    info->mag_scale = 100.0f / QMC5883P_LSB_PER_GAUSS; /* 1 G = 100 uT */
    info->accel_range = QMI8658_ACC_RANGE_G * G;
    info->gyro_range = QMI8658_GYRO_RANGE_DPS * DEG2RAD;
    info->mag_range = QMC5883P_RANGE_GAUSS * 100.0f;
    info->instants_per_frame = CONFIG_IMUSIC_INSTANTS_PER_FRAME;
    info->rig_id_len = (uint8_t)strlen(board_rig.rig_id);
    memcpy(info->rig_id, board_rig.rig_id, info->rig_id_len);
    info->name_len = (uint8_t)snprintf(info->name, sizeof info->name, "imusic-wearable-%04x",
                                       (unsigned)(low48 & 0xFFFF));
}

void app_main(void)
{
    esp_err_t err = nvs_flash_init(); /* the radio stacks keep calibration data in NVS */
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        nvs_flash_erase();
        nvs_flash_init();
    }
    imp_device_info info;
    device_info_init(&info);
    for (int i = 0; i < LINK_COUNT; i++)
        imp_decoder_init(&decoders[i]);
    commands = xQueueCreate(8, sizeof(command_t));
    events = xQueueCreate(8, sizeof(imp_event));
    stream_lock = xSemaphoreCreateMutex();

    power_init();
    ESP_ERROR_CHECK(sampler_init(info.rate_hz));
    link_init(on_rx, info.name);
    /* The RNG is truly random once a radio runs (ESP-IDF esp_random()); never 0 by spec. */
    do {
        info.boot_id = esp_random();
    } while (info.boot_id == 0);
    imd_device_init(&dev, &info);
    /* Refuse rates the busiest bus cannot read in time (README, "I2C budget"). */
    unsigned per_bus[BOARD_N_BUSES] = {0}, busiest = 0;
    for (int i = 0; i < board_rig.n_sites; i++)
        per_bus[board_rig.sites[i].bus]++;
    for (int b = 0; b < BOARD_N_BUSES; b++)
        busiest = per_bus[b] > busiest ? per_bus[b] : busiest;
    dev.max_rate_hz = imd_i2c_max_rate_hz(busiest, CONFIG_IMUSIC_I2C_HZ, IMD_I2C_OVERHEAD_US,
                                          IMD_I2C_MAX_LOAD);
    if (dev.info.rate_hz > dev.max_rate_hz) {
        ESP_LOGW(TAG, "boot rate %u Hz is over what %u sites per bus allow (%u Hz): using that",
                 dev.info.rate_hz, busiest, dev.max_rate_hz);
        dev.info.rate_hz = dev.max_rate_hz;
    }
    inputs_init();

    xTaskCreatePinnedToCore(command_task, "command", 4096, NULL, 6, NULL, 0);
    xTaskCreatePinnedToCore(stream_task, "stream", 6144, NULL, 7, NULL, 0);
    xTaskCreatePinnedToCore(status_task, "status", 4096, NULL, 4, NULL, 0);

    /* Unasked after boot: DEVICE_INFO then EVENT booted (PROTOCOL.md, "Reboots"). */
    static uint8_t out[IMP_MAX_FRAME];
    link_send_all(out, imp_encode_device_info(dev.device_id, &dev.info, out, sizeof out));
    send_event(IMP_EVENT_BOOTED, IMP_NO_SENSOR, 0, (uint64_t)esp_timer_get_time());
    ESP_LOGI(TAG, "%s: rig %s, %u sensors, serial %016llx, boot_id %08lx", dev.info.name,
             dev.info.rig_id, dev.info.sensor_count, (unsigned long long)dev.info.serial,
             (unsigned long)dev.info.boot_id);
}
