/*
 * Wi-Fi UDP link (station mode), matching firmware_bridge/transports/udp.py: the host listens
 * on port 9000 (CONFIG_IMUSIC_UDP_HOST_PORT); the device sends from its own port 9001 to the
 * configured host address or, until a host has sent it a command, to the subnet broadcast
 * address (so a host that only listens still hears STATUS once a second and can answer).
 * After the first command, frames go to the address and port that command came from.
 * A datagram holds whole frames only and stays <= 1472 bytes (no IP fragmentation).
 */
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "imusic_datagram.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "link.h"
#include "lwip/sockets.h"
#include "sdkconfig.h"

static const char *TAG = "udp";
#define MAX_DATAGRAM IMD_MAX_DATAGRAM

static link_rx_fn rx_cb;
static int sock = -1;
static volatile bool wifi_up;
static struct sockaddr_in dest; /* where frames go */
static volatile bool host_known;

static void on_wifi_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_START) {
        esp_wifi_connect();
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        wifi_up = false;
        esp_wifi_connect(); /* keep trying: the access point may come back */
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        const ip_event_got_ip_t *ev = data;
        if (!host_known && CONFIG_IMUSIC_UDP_HOST[0] == '\0') {
            dest.sin_addr.s_addr = ev->ip_info.ip.addr | ~ev->ip_info.netmask.addr;
        }
        wifi_up = true;
        ESP_LOGI(TAG, "Wi-Fi up, " IPSTR, IP2STR(&ev->ip_info.ip));
    }
}

static void udp_rx_task(void *arg)
{
    (void)arg;
    static uint8_t buf[MAX_DATAGRAM];
    for (;;) {
        struct sockaddr_in from;
        socklen_t from_len = sizeof from;
        int n = recvfrom(sock, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
        if (n <= 0) {
            vTaskDelay(pdMS_TO_TICKS(10));
            continue;
        }
        dest = from; /* answer, and stream, to whoever commands us */
        host_known = true;
        rx_cb(LINK_UDP, buf, (size_t)n);
    }
}

esp_err_t link_udp_init(link_rx_fn on_rx)
{
    rx_cb = on_rx;
    ESP_ERROR_CHECK(esp_netif_init());
    esp_err_t err = esp_event_loop_create_default();
    if (err != ESP_OK && err != ESP_ERR_INVALID_STATE)
        return err;
    esp_netif_create_default_wifi_sta();
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_wifi_event, NULL));
    ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_wifi_event, NULL));
    wifi_config_t cfg = {0};
    strlcpy((char *)cfg.sta.ssid, CONFIG_IMUSIC_WIFI_SSID, sizeof cfg.sta.ssid);
    strlcpy((char *)cfg.sta.password, CONFIG_IMUSIC_WIFI_PASSWORD, sizeof cfg.sta.password);
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &cfg));
    /* Power save adds up to a beacon interval (~100 ms) of latency to every datagram. */
    ESP_ERROR_CHECK(esp_wifi_set_ps(WIFI_PS_NONE));
    ESP_ERROR_CHECK(esp_wifi_start());

    sock = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (sock < 0)
        return ESP_FAIL;
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_BROADCAST, &yes, sizeof yes);
    struct sockaddr_in local = {.sin_family = AF_INET,
                                .sin_port = htons(CONFIG_IMUSIC_UDP_LOCAL_PORT),
                                .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(sock, (struct sockaddr *)&local, sizeof local) != 0)
        return ESP_FAIL;
    dest.sin_family = AF_INET;
    dest.sin_port = htons(CONFIG_IMUSIC_UDP_HOST_PORT);
    dest.sin_addr.s_addr = CONFIG_IMUSIC_UDP_HOST[0] ? inet_addr(CONFIG_IMUSIC_UDP_HOST)
                                                     : htonl(INADDR_BROADCAST);
    return xTaskCreatePinnedToCore(udp_rx_task, "udp_rx", 4096, NULL, 5, NULL, 0) == pdPASS
               ? ESP_OK
               : ESP_ERR_NO_MEM;
}

bool link_udp_ready(void) { return wifi_up && sock >= 0; }

static bool send_datagram(const uint8_t *d, size_t n)
{
    return sendto(sock, d, n, 0, (const struct sockaddr *)&dest, sizeof dest) == (int)n;
}

bool link_udp_send(const uint8_t *d, size_t n)
{
    bool ok = true;
    for (size_t off = 0; off < n;) {
        size_t len = imd_next_datagram(d + off, n - off, IMD_MAX_DATAGRAM);
        ok &= send_datagram(d + off, len);
        off += len;
    }
    return ok;
}
