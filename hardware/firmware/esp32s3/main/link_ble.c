/*
 * BLE link: a NimBLE GATT server with the imusic service of firmware_bridge/BLE.md
 * (firmware_bridge/transports/ble.py holds the same UUIDs):
 *
 *   service  5e3a0001-6c1d-4b8e-9f27-1a6d2c9b7e40  (primary, advertised)
 *   FRAMES   5e3a0002-6c1d-4b8e-9f27-1a6d2c9b7e40  NOTIFY: device -> host byte stream
 *   COMMANDS 5e3a0003-6c1d-4b8e-9f27-1a6d2c9b7e40  WRITE, WRITE WITHOUT RESPONSE: host -> device
 *
 * The byte stream is cut into notifications of at most ATT_MTU - 3 bytes wherever it falls;
 * the host reassembles frames by their 0x00 delimiters. After connecting the device asks for
 * the 2M PHY and a long data length (both optional for the central) to carry 200 Hz.
 */
#include <string.h>

#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "host/ble_gap.h"
#include "host/ble_hs.h"
#include "host/util/util.h"
#include "link.h"
#include "nimble/nimble_port.h"
#include "nimble/nimble_port_freertos.h"
#include "services/gap/ble_svc_gap.h"
#include "services/gatt/ble_svc_gatt.h"

static const char *TAG = "ble";

/* BLE_UUID128_INIT takes the 16 bytes least significant first. */
static const ble_uuid128_t service_uuid = BLE_UUID128_INIT(
    0x40, 0x7e, 0x9b, 0x2c, 0x6d, 0x1a, 0x27, 0x9f, 0x8e, 0x4b, 0x1d, 0x6c, 0x01, 0x00, 0x3a, 0x5e);
static const ble_uuid128_t frames_uuid = BLE_UUID128_INIT(
    0x40, 0x7e, 0x9b, 0x2c, 0x6d, 0x1a, 0x27, 0x9f, 0x8e, 0x4b, 0x1d, 0x6c, 0x02, 0x00, 0x3a, 0x5e);
static const ble_uuid128_t commands_uuid = BLE_UUID128_INIT(
    0x40, 0x7e, 0x9b, 0x2c, 0x6d, 0x1a, 0x27, 0x9f, 0x8e, 0x4b, 0x1d, 0x6c, 0x03, 0x00, 0x3a, 0x5e);

static link_rx_fn rx_cb;
static uint16_t frames_handle;
static volatile uint16_t conn = BLE_HS_CONN_HANDLE_NONE;
static volatile bool subscribed;
static volatile uint16_t mtu = BLE_ATT_MTU_DFLT;
static uint8_t own_addr_type;

static int access_cb(uint16_t conn_handle, uint16_t attr_handle, struct ble_gatt_access_ctxt *ctxt,
                     void *arg)
{
    (void)conn_handle, (void)attr_handle, (void)arg;
    if (ctxt->op != BLE_GATT_ACCESS_OP_WRITE_CHR)
        return BLE_ATT_ERR_UNLIKELY; /* FRAMES is notify-only */
    static uint8_t buf[512];
    uint16_t len = 0;
    if (ble_hs_mbuf_to_flat(ctxt->om, buf, sizeof buf, &len) != 0)
        return BLE_ATT_ERR_INVALID_ATTR_VALUE_LEN;
    rx_cb(LINK_BLE, buf, len);
    return 0;
}

static const struct ble_gatt_svc_def services[] = {
    {
        .type = BLE_GATT_SVC_TYPE_PRIMARY,
        .uuid = &service_uuid.u,
        .characteristics = (struct ble_gatt_chr_def[]){
            {.uuid = &frames_uuid.u, .access_cb = access_cb, .flags = BLE_GATT_CHR_F_NOTIFY,
             .val_handle = &frames_handle},
            {.uuid = &commands_uuid.u, .access_cb = access_cb,
             .flags = BLE_GATT_CHR_F_WRITE | BLE_GATT_CHR_F_WRITE_NO_RSP},
            {0},
        },
    },
    {0},
};

static int gap_event(struct ble_gap_event *event, void *arg);

static void advertise(void)
{
    /* Advertising data (BLE.md): flags 0x06, the 128-bit service UUID and the name shortened
     * to 8 bytes: 3 + 18 + 10 = 31 bytes. The complete name goes in the scan response. */
    const char *name = ble_svc_gap_device_name();
    struct ble_hs_adv_fields fields = {0};
    fields.flags = BLE_HS_ADV_F_DISC_GEN | BLE_HS_ADV_F_BREDR_UNSUP;
    fields.uuids128 = (ble_uuid128_t *)&service_uuid;
    fields.num_uuids128 = 1;
    fields.uuids128_is_complete = 1;
    fields.name = (const uint8_t *)name;
    fields.name_len = (uint8_t)(strlen(name) < 8 ? strlen(name) : 8);
    fields.name_is_complete = strlen(name) <= 8;
    int rc = ble_gap_adv_set_fields(&fields);
    if (rc != 0)
        ESP_LOGE(TAG, "advertising data rejected: %d", rc);
    struct ble_hs_adv_fields rsp = {0};
    rsp.name = (const uint8_t *)name;
    rsp.name_len = (uint8_t)strlen(name);
    rsp.name_is_complete = 1;
    ble_gap_adv_rsp_set_fields(&rsp);
    struct ble_gap_adv_params params = {
        .conn_mode = BLE_GAP_CONN_MODE_UND,
        .disc_mode = BLE_GAP_DISC_MODE_GEN,
    };
    rc = ble_gap_adv_start(own_addr_type, NULL, BLE_HS_FOREVER, &params, gap_event, NULL);
    if (rc != 0)
        ESP_LOGE(TAG, "advertising failed: %d", rc);
}

static int gap_event(struct ble_gap_event *event, void *arg)
{
    (void)arg;
    switch (event->type) {
    case BLE_GAP_EVENT_CONNECT:
        if (event->connect.status != 0) {
            advertise();
            break;
        }
        conn = event->connect.conn_handle;
        /* Ask for the fast PHY and 251-byte link-layer packets; the central may refuse. */
        ble_gap_set_prefered_le_phy(conn, BLE_GAP_LE_PHY_2M_MASK, BLE_GAP_LE_PHY_2M_MASK, 0);
        ble_gap_set_data_len(conn, 251, 2120);
        break;
    case BLE_GAP_EVENT_DISCONNECT:
        conn = BLE_HS_CONN_HANDLE_NONE;
        subscribed = false;
        mtu = BLE_ATT_MTU_DFLT;
        advertise();
        break;
    case BLE_GAP_EVENT_SUBSCRIBE:
        if (event->subscribe.attr_handle == frames_handle)
            subscribed = event->subscribe.cur_notify;
        break;
    case BLE_GAP_EVENT_MTU:
        mtu = event->mtu.value;
        break;
    case BLE_GAP_EVENT_ADV_COMPLETE:
        advertise();
        break;
    default:
        break;
    }
    return 0;
}

static void on_sync(void)
{
    ble_hs_util_ensure_addr(0);
    ble_hs_id_infer_auto(0, &own_addr_type);
    advertise();
}

static void host_task(void *arg)
{
    (void)arg;
    nimble_port_run(); /* returns only after nimble_port_stop() */
    nimble_port_freertos_deinit();
}

esp_err_t link_ble_init(link_rx_fn on_rx, const char *name)
{
    rx_cb = on_rx;
    esp_err_t err = nimble_port_init();
    if (err != ESP_OK)
        return err;
    ble_hs_cfg.sync_cb = on_sync;
    ble_svc_gap_init();
    ble_svc_gatt_init();
    if (ble_gatts_count_cfg(services) != 0 || ble_gatts_add_svcs(services) != 0)
        return ESP_FAIL;
    ble_svc_gap_device_name_set(name);
    ble_att_set_preferred_mtu(247);
    nimble_port_freertos_init(host_task);
    return ESP_OK;
}

bool link_ble_ready(void) { return conn != BLE_HS_CONN_HANDLE_NONE && subscribed; }

bool link_ble_send(const uint8_t *d, size_t n)
{
    const size_t piece = mtu > 3 ? (size_t)mtu - 3u : 20u;
    for (size_t off = 0; off < n;) {
        size_t len = n - off < piece ? n - off : piece;
        int rc = BLE_HS_ENOMEM;
        /* Out of buffers means the controller is behind: wait a little, then give up on the
         * rest (the host drops the cut frame by its CRC and resynchronises on the next 0x00). */
        for (int attempt = 0; attempt < 5 && rc == BLE_HS_ENOMEM; attempt++) {
            struct os_mbuf *om = ble_hs_mbuf_from_flat(d + off, (uint16_t)len);
            if (om == NULL) {
                vTaskDelay(pdMS_TO_TICKS(2));
                continue;
            }
            rc = ble_gatts_notify_custom(conn, frames_handle, om); /* consumes om */
            if (rc == BLE_HS_ENOMEM)
                vTaskDelay(pdMS_TO_TICKS(2));
        }
        if (rc != 0)
            return false;
        off += len;
    }
    return true;
}
