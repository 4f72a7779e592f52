/* Timer-driven sampling of both sensor buses: see sampler.h. */
#include "sampler.h"

#include <stdatomic.h>
#include <string.h>

#include "driver/gptimer.h"
#include "esp_attr.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "freertos/task.h"
#include "qmc5883p.h"
#include "qmi8658.h"
#include "sdkconfig.h"
#include "sensor_bus.h"

static const char *TAG = "sampler";

#define QUEUE_DEPTH 32          /* instants: 160 ms at 200 Hz of slack for the stream task */
#define READER_PRIORITY (configMAX_PRIORITIES - 2)
#define READER_CORE 1           /* radio stacks live on core 0 */

static sensor_bus_t buses[BOARD_N_BUSES];
static TaskHandle_t readers[BOARD_N_BUSES];
static uint8_t bus_in_use[BOARD_N_BUSES];
static int n_buses_in_use;
static gptimer_handle_t timer;
static QueueHandle_t queue;

/* Two slots: the ISR fills one while the last reader copies the other into the queue. */
static sampler_instant_t slots[2];
static volatile int slot_now;
static atomic_int remaining; /* readers still busy with slots[slot_now] */
static atomic_int busy;      /* an instant is being read or queued: the next tick overruns */
static uint32_t next_seq;
static atomic_uint overruns, sensor_errors;
/* Each site's last good values: a failed read repeats them (each reader owns its sites). */
static int16_t held[BOARD_MAX_SITES * SAMPLER_VALUES_PER_SITE];

static bool IRAM_ATTR on_alarm(gptimer_handle_t t, const gptimer_alarm_event_data_t *ev, void *ctx)
{
    (void)t, (void)ev, (void)ctx;
    uint32_t seq = next_seq++;
    if (atomic_load(&busy) != 0) {
        atomic_fetch_add(&overruns, 1); /* the previous read is not done: skip this instant */
        return false;
    }
    int s = slot_now ^ 1;
    slots[s].seq = seq;
    slots[s].t_us = (uint64_t)esp_timer_get_time();
    slot_now = s;
    atomic_store(&remaining, n_buses_in_use);
    atomic_store(&busy, 1);
    BaseType_t woken = pdFALSE;
    for (int i = 0; i < BOARD_N_BUSES; i++)
        if (bus_in_use[i])
            vTaskNotifyGiveFromISR(readers[i], &woken);
    return woken == pdTRUE;
}

static void read_site(sensor_bus_t *b, const board_site_t *site, int16_t *out)
{
    static const int mag_index[3] = BOARD_MAG_AXIS_INDEX;
    static const int mag_sign[3] = BOARD_MAG_AXIS_SIGN;
    int16_t imu[6], mag[3];
    /* On a bus error the previous value stays (out is the site's held values) and is counted:
     * the protocol has no per-sample validity, and a held value is less harmful than a zero. */
    if (sensor_bus_select(b, site->channel) != ESP_OK) {
        atomic_fetch_add(&sensor_errors, 1);
        return;
    }
    if (qmi8658_read(b, imu) == ESP_OK)
        memcpy(out, imu, sizeof imu);
    else
        atomic_fetch_add(&sensor_errors, 1);
    if (qmc5883p_read(b, mag) == ESP_OK) {
        for (int a = 0; a < 3; a++)
            out[6 + a] = (int16_t)(mag_sign[a] * mag[mag_index[a]]);
    } else {
        atomic_fetch_add(&sensor_errors, 1);
    }
}

static void reader_task(void *arg)
{
    const int bus = (int)(intptr_t)arg;
    for (;;) {
        ulTaskNotifyTake(pdTRUE, portMAX_DELAY);
        sampler_instant_t *slot = &slots[slot_now];
        for (int i = 0; i < board_rig.n_sites; i++) {
            const board_site_t *site = &board_rig.sites[i];
            if (site->bus != bus)
                continue;
            int16_t *h = &held[i * SAMPLER_VALUES_PER_SITE];
            read_site(&buses[bus], site, h);
            memcpy(&slot->values[i * SAMPLER_VALUES_PER_SITE], h,
                   SAMPLER_VALUES_PER_SITE * sizeof(int16_t));
        }
        if (atomic_fetch_sub(&remaining, 1) == 1) {
            /* The last reader hands the instant on; a full queue means the stream task is
             * stalled: that instant is lost like an overrun. */
            if (xQueueSend(queue, slot, 0) != pdTRUE)
                atomic_fetch_add(&overruns, 1);
            atomic_store(&busy, 0);
        }
    }
}

static esp_err_t configure_sites(uint16_t rate_hz)
{
    esp_err_t first = ESP_OK;
    for (int i = 0; i < board_rig.n_sites; i++) {
        const board_site_t *site = &board_rig.sites[i];
        sensor_bus_t *b = &buses[site->bus];
        esp_err_t err = sensor_bus_select(b, site->channel);
        if (err == ESP_OK)
            err = qmi8658_init(b, rate_hz);
        if (err == ESP_OK)
            err = qmc5883p_init(b);
        if (err != ESP_OK) {
            ESP_LOGE(TAG, "site %d %s (bus %d, mux channel %d) does not answer: %s. Check its "
                     "flex cable and the board's solder joints.", i, site->name, site->bus,
                     site->channel, esp_err_to_name(err));
            atomic_fetch_add(&sensor_errors, 1);
            if (first == ESP_OK)
                first = err;
        }
    }
    return first;
}

esp_err_t sampler_init(uint16_t rate_hz)
{
    queue = xQueueCreate(QUEUE_DEPTH, sizeof(sampler_instant_t));
    if (!queue)
        return ESP_ERR_NO_MEM;
    for (int i = 0; i < board_rig.n_sites; i++)
        bus_in_use[board_rig.sites[i].bus] = 1;
    for (int b = 0; b < BOARD_N_BUSES; b++) {
        if (!bus_in_use[b])
            continue;
        n_buses_in_use++;
        ESP_ERROR_CHECK(sensor_bus_init(&buses[b], &board_buses[b], CONFIG_IMUSIC_I2C_HZ));
        xTaskCreatePinnedToCore(reader_task, "reader", 4096, (void *)(intptr_t)b,
                                READER_PRIORITY, &readers[b], READER_CORE);
    }
    configure_sites(rate_hz); /* failures are logged and counted, the rest still streams */

    const gptimer_config_t cfg = {
        .clk_src = GPTIMER_CLK_SRC_DEFAULT,
        .direction = GPTIMER_COUNT_UP,
        .resolution_hz = 1000000, /* 1 tick = 1 us */
    };
    ESP_ERROR_CHECK(gptimer_new_timer(&cfg, &timer));
    const gptimer_event_callbacks_t cbs = {.on_alarm = on_alarm};
    ESP_ERROR_CHECK(gptimer_register_event_callbacks(timer, &cbs, NULL));
    return gptimer_enable(timer);
}

esp_err_t sampler_start(uint16_t rate_hz)
{
    static uint16_t configured_rate;
    if ((rate_hz > 200) != (configured_rate > 200) || configured_rate == 0)
        configure_sites(rate_hz); /* the chips' ODR band changes; readers are idle now */
    configured_rate = rate_hz;
    /* 1e6 / rate rounded: 60 Hz runs at 59.9988 Hz; the host maps time from the stamps. */
    const gptimer_alarm_config_t alarm = {
        .alarm_count = (1000000u + rate_hz / 2u) / rate_hz,
        .reload_count = 0,
        .flags.auto_reload_on_alarm = true,
    };
    esp_err_t err = gptimer_set_alarm_action(timer, &alarm);
    if (err == ESP_OK)
        err = gptimer_set_raw_count(timer, 0);
    if (err == ESP_OK)
        err = gptimer_start(timer);
    return err;
}

void sampler_stop(void)
{
    gptimer_stop(timer);
    /* Let a read in flight finish so that its instant is queued before the stream flushes. */
    for (int i = 0; i < 20 && atomic_load(&busy) != 0; i++)
        vTaskDelay(pdMS_TO_TICKS(1));
}

QueueHandle_t sampler_queue(void) { return queue; }
uint32_t sampler_sensor_errors(void) { return atomic_load(&sensor_errors); }
uint32_t sampler_overruns(void) { return atomic_load(&overruns); }
