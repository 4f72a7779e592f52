/* One interface over the USB, BLE and UDP links: see link.h. */
#include "link.h"

#include <stdatomic.h>

#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "sdkconfig.h"

static const char *TAG = "link";
static SemaphoreHandle_t send_lock;
static atomic_uint tx_dropped;
static bool enabled[LINK_COUNT];

esp_err_t link_init(link_rx_fn on_rx, const char *name)
{
    send_lock = xSemaphoreCreateMutex();
    esp_err_t err = link_usb_init(on_rx);
    enabled[LINK_USB] = err == ESP_OK;
    if (err != ESP_OK)
        ESP_LOGE(TAG, "USB link failed: %s", esp_err_to_name(err));
#if CONFIG_IMUSIC_ENABLE_BLE
    err = link_ble_init(on_rx, name);
    enabled[LINK_BLE] = err == ESP_OK;
    if (err != ESP_OK)
        ESP_LOGE(TAG, "BLE link failed: %s", esp_err_to_name(err));
#else
    (void)name;
#endif
    if (CONFIG_IMUSIC_WIFI_SSID[0] != '\0') {
        err = link_udp_init(on_rx);
        enabled[LINK_UDP] = err == ESP_OK;
        if (err != ESP_OK)
            ESP_LOGE(TAG, "Wi-Fi UDP link failed: %s", esp_err_to_name(err));
    }
    return ESP_OK; /* any one link is enough to be useful */
}

bool link_ready(link_id_t link)
{
    if (link >= LINK_COUNT || !enabled[link])
        return false;
    switch (link) {
    case LINK_USB:
        return link_usb_ready();
    case LINK_BLE:
        return link_ble_ready();
    case LINK_UDP:
        return link_udp_ready();
    default:
        return false;
    }
}

bool link_send(link_id_t link, const uint8_t *frames, size_t n)
{
    bool ok = false;
    if (link_ready(link)) {
        xSemaphoreTake(send_lock, portMAX_DELAY);
        ok = link == LINK_USB ? link_usb_send(frames, n)
             : link == LINK_BLE ? link_ble_send(frames, n)
                                : link_udp_send(frames, n);
        xSemaphoreGive(send_lock);
    }
    if (!ok)
        atomic_fetch_add(&tx_dropped, 1);
    return ok;
}

void link_send_all(const uint8_t *frames, size_t n)
{
    for (int l = 0; l < LINK_COUNT; l++)
        if (link_ready((link_id_t)l))
            link_send((link_id_t)l, frames, n);
}

uint32_t link_tx_dropped(void) { return atomic_load(&tx_dropped); }
