/*
 * USB link: the ESP32-S3's built-in USB-Serial-JTAG controller enumerates as a CDC-ACM port
 * (/dev/ttyACM0, COMx) with no extra chip and no TinyUSB; the baud rate the host sets is
 * ignored (full-speed USB, about 1 MB/s in practice). The console is moved to UART0 in
 * sdkconfig.defaults so that only protocol bytes travel here.
 */
#include <stdbool.h>

#include "driver/usb_serial_jtag.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "link.h"

#define TX_TIMEOUT_MS 5 /* a stalled host must not stall sampling: drop instead */

static link_rx_fn rx_cb;

static void usb_rx_task(void *arg)
{
    (void)arg;
    static uint8_t buf[256];
    for (;;) {
        int n = usb_serial_jtag_read_bytes(buf, sizeof buf, pdMS_TO_TICKS(50));
        if (n > 0)
            rx_cb(LINK_USB, buf, (size_t)n);
    }
}

esp_err_t link_usb_init(link_rx_fn on_rx)
{
    rx_cb = on_rx;
    usb_serial_jtag_driver_config_t cfg = USB_SERIAL_JTAG_DRIVER_CONFIG_DEFAULT();
    cfg.tx_buffer_size = 8192; /* ~180 ms of 12 x 9 axes at 200 Hz */
    cfg.rx_buffer_size = 512;
    esp_err_t err = usb_serial_jtag_driver_install(&cfg);
    if (err != ESP_OK)
        return err;
    return xTaskCreatePinnedToCore(usb_rx_task, "usb_rx", 3072, NULL, 5, NULL, 0) == pdPASS
               ? ESP_OK
               : ESP_ERR_NO_MEM;
}

bool link_usb_ready(void) { return usb_serial_jtag_is_connected(); }

bool link_usb_send(const uint8_t *d, size_t n)
{
    /* A partial write cuts a frame: the host drops it (CRC) and resynchronises on the next
     * frame's leading 0x00; the caller counts it as dropped. */
    int w = usb_serial_jtag_write_bytes(d, n, pdMS_TO_TICKS(TX_TIMEOUT_MS));
    return w == (int)n;
}
