/*
 * Declarations of the ESP-IDF (v5.2+) and NimBLE API subset the firmware calls, for a host
 * SYNTAX AND TYPE CHECK ONLY (gcc -fsyntax-only) of hardware/firmware/esp32s3/main: nothing
 * here is linked or run. Signatures follow the ESP-IDF headers (driver/i2c_master.h,
 * driver/gptimer.h, driver/usb_serial_jtag.h, esp_adc/adc_oneshot.h, host/ble_gap.h, ...). This checks
 * the firmware against our reading of those APIs, not against ESP-IDF itself: the real build
 * is `idf.py build`.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* sdkconfig */
#define CONFIG_IMUSIC_RIG_IMUSIC11 1
#define CONFIG_IMUSIC_DEFAULT_RATE_HZ 100
#define CONFIG_IMUSIC_INSTANTS_PER_FRAME 4
#define CONFIG_IMUSIC_I2C_HZ 400000
#define CONFIG_IMUSIC_ENABLE_BLE 1
#define CONFIG_IMUSIC_WIFI_SSID "ssid"
#define CONFIG_IMUSIC_WIFI_PASSWORD "password"
#define CONFIG_IMUSIC_UDP_HOST ""
#define CONFIG_IMUSIC_UDP_HOST_PORT 9000
#define CONFIG_IMUSIC_UDP_LOCAL_PORT 9001

/* esp_err.h, esp_attr.h, esp_log.h */
typedef int esp_err_t;
#define ESP_OK 0
#define ESP_FAIL -1
#define ESP_ERR_NO_MEM 0x101
#define ESP_ERR_INVALID_STATE 0x103
#define ESP_ERR_NOT_FOUND 0x105
#define ESP_ERR_NVS_NO_FREE_PAGES 0x110d
#define ESP_ERR_NVS_NEW_VERSION_FOUND 0x1110
const char *esp_err_to_name(esp_err_t code);
#define ESP_ERROR_CHECK(x) ((void)(x))
#define IRAM_ATTR
#define ESP_LOGE(tag, fmt, ...) ((void)(tag))
#define ESP_LOGW(tag, fmt, ...) ((void)(tag))
#define ESP_LOGI(tag, fmt, ...) ((void)(tag))

/* FreeRTOS */
typedef int BaseType_t;
typedef unsigned int UBaseType_t;
typedef uint32_t TickType_t;
typedef void *TaskHandle_t;
typedef void *QueueHandle_t;
typedef void *SemaphoreHandle_t;
typedef void (*TaskFunction_t)(void *);
#define pdTRUE 1
#define pdFALSE 0
#define pdPASS 1
#define portMAX_DELAY 0xffffffffu
#define configMAX_PRIORITIES 25
#define pdMS_TO_TICKS(ms) ((TickType_t)(ms))
#define portYIELD_FROM_ISR() ((void)0)
BaseType_t xTaskCreatePinnedToCore(TaskFunction_t fn, const char *name, uint32_t stack, void *arg,
                                   UBaseType_t prio, TaskHandle_t *handle, BaseType_t core);
void vTaskDelay(TickType_t ticks);
uint32_t ulTaskNotifyTake(BaseType_t clear, TickType_t wait);
void vTaskNotifyGiveFromISR(TaskHandle_t task, BaseType_t *woken);
QueueHandle_t xQueueCreate(UBaseType_t length, UBaseType_t item_size);
BaseType_t xQueueSend(QueueHandle_t q, const void *item, TickType_t wait);
BaseType_t xQueueSendFromISR(QueueHandle_t q, const void *item, BaseType_t *woken);
BaseType_t xQueueReceive(QueueHandle_t q, void *item, TickType_t wait);
SemaphoreHandle_t xSemaphoreCreateMutex(void);
BaseType_t xSemaphoreTake(SemaphoreHandle_t s, TickType_t wait);
BaseType_t xSemaphoreGive(SemaphoreHandle_t s);

/* driver/gpio.h */
typedef enum { GPIO_NUM_0 = 0, GPIO_NUM_1 = 1, GPIO_NUM_8 = 8, GPIO_NUM_9, GPIO_NUM_10,
               GPIO_NUM_11, GPIO_NUM_12, GPIO_NUM_13, GPIO_NUM_14, GPIO_NUM_21 = 21 } gpio_num_t;
typedef enum { GPIO_MODE_INPUT = 1, GPIO_MODE_OUTPUT = 2 } gpio_mode_t;
typedef enum { GPIO_PULLUP_DISABLE = 0, GPIO_PULLUP_ENABLE = 1 } gpio_pullup_t;
typedef enum { GPIO_PULLDOWN_DISABLE = 0, GPIO_PULLDOWN_ENABLE = 1 } gpio_pulldown_t;
typedef enum { GPIO_INTR_DISABLE, GPIO_INTR_POSEDGE, GPIO_INTR_NEGEDGE, GPIO_INTR_ANYEDGE } gpio_int_type_t;
typedef struct {
    uint64_t pin_bit_mask;
    gpio_mode_t mode;
    gpio_pullup_t pull_up_en;
    gpio_pulldown_t pull_down_en;
    gpio_int_type_t intr_type;
} gpio_config_t;
typedef void (*gpio_isr_t)(void *arg);
esp_err_t gpio_config(const gpio_config_t *cfg);
esp_err_t gpio_set_level(gpio_num_t pin, uint32_t level);
esp_err_t gpio_set_intr_type(gpio_num_t pin, gpio_int_type_t type);
esp_err_t gpio_install_isr_service(int flags);
esp_err_t gpio_isr_handler_add(gpio_num_t pin, gpio_isr_t isr, void *arg);

/* driver/i2c_types.h, driver/i2c_master.h */
typedef int i2c_port_num_t;
#define I2C_NUM_0 0
#define I2C_NUM_1 1
typedef enum { I2C_CLK_SRC_DEFAULT = 0 } i2c_clock_source_t;
typedef enum { I2C_ADDR_BIT_LEN_7 = 0 } i2c_addr_bit_len_t;
typedef struct i2c_master_bus_t *i2c_master_bus_handle_t;
typedef struct i2c_master_dev_t *i2c_master_dev_handle_t;
typedef struct {
    i2c_port_num_t i2c_port;
    gpio_num_t sda_io_num;
    gpio_num_t scl_io_num;
    i2c_clock_source_t clk_source;
    uint8_t glitch_ignore_cnt;
    int intr_priority;
    size_t trans_queue_depth;
    struct { uint32_t enable_internal_pullup : 1; } flags;
} i2c_master_bus_config_t;
typedef struct {
    i2c_addr_bit_len_t dev_addr_length;
    uint16_t device_address;
    uint32_t scl_speed_hz;
} i2c_device_config_t;
esp_err_t i2c_new_master_bus(const i2c_master_bus_config_t *cfg, i2c_master_bus_handle_t *ret);
esp_err_t i2c_master_bus_add_device(i2c_master_bus_handle_t bus, const i2c_device_config_t *cfg,
                                    i2c_master_dev_handle_t *ret);
esp_err_t i2c_master_transmit(i2c_master_dev_handle_t dev, const uint8_t *buf, size_t size,
                              int timeout_ms);
esp_err_t i2c_master_transmit_receive(i2c_master_dev_handle_t dev, const uint8_t *wbuf,
                                      size_t wsize, uint8_t *rbuf, size_t rsize, int timeout_ms);

/* driver/gptimer.h */
typedef struct gptimer_t *gptimer_handle_t;
typedef enum { GPTIMER_CLK_SRC_DEFAULT = 0 } gptimer_clock_source_t;
typedef enum { GPTIMER_COUNT_DOWN, GPTIMER_COUNT_UP } gptimer_count_direction_t;
typedef struct {
    gptimer_clock_source_t clk_src;
    gptimer_count_direction_t direction;
    uint32_t resolution_hz;
    int intr_priority;
} gptimer_config_t;
typedef struct { uint64_t count_value; uint64_t alarm_value; } gptimer_alarm_event_data_t;
typedef bool (*gptimer_alarm_cb_t)(gptimer_handle_t, const gptimer_alarm_event_data_t *, void *);
typedef struct { gptimer_alarm_cb_t on_alarm; } gptimer_event_callbacks_t;
typedef struct {
    uint64_t alarm_count;
    uint64_t reload_count;
    struct { uint32_t auto_reload_on_alarm : 1; } flags;
} gptimer_alarm_config_t;
esp_err_t gptimer_new_timer(const gptimer_config_t *cfg, gptimer_handle_t *ret);
esp_err_t gptimer_register_event_callbacks(gptimer_handle_t t, const gptimer_event_callbacks_t *cbs,
                                           void *user);
esp_err_t gptimer_enable(gptimer_handle_t t);
esp_err_t gptimer_set_alarm_action(gptimer_handle_t t, const gptimer_alarm_config_t *cfg);
esp_err_t gptimer_set_raw_count(gptimer_handle_t t, uint64_t value);
esp_err_t gptimer_start(gptimer_handle_t t);
esp_err_t gptimer_stop(gptimer_handle_t t);

/* esp_timer.h, esp_random.h, esp_mac.h, nvs_flash.h */
typedef struct esp_timer *esp_timer_handle_t;
typedef void (*esp_timer_cb_t)(void *arg);
typedef struct { esp_timer_cb_t callback; void *arg; int dispatch_method; const char *name;
                 bool skip_unhandled_events; } esp_timer_create_args_t;
int64_t esp_timer_get_time(void);
esp_err_t esp_timer_create(const esp_timer_create_args_t *args, esp_timer_handle_t *out);
esp_err_t esp_timer_start_periodic(esp_timer_handle_t t, uint64_t period_us);
esp_err_t esp_timer_stop(esp_timer_handle_t t);
uint32_t esp_random(void);
esp_err_t esp_efuse_mac_get_default(uint8_t *mac);
esp_err_t nvs_flash_init(void);
esp_err_t nvs_flash_erase(void);

/* driver/usb_serial_jtag.h */
typedef struct { uint32_t tx_buffer_size; uint32_t rx_buffer_size; } usb_serial_jtag_driver_config_t;
#define USB_SERIAL_JTAG_DRIVER_CONFIG_DEFAULT() {.tx_buffer_size = 256, .rx_buffer_size = 256}
esp_err_t usb_serial_jtag_driver_install(usb_serial_jtag_driver_config_t *cfg);
bool usb_serial_jtag_is_connected(void);
int usb_serial_jtag_read_bytes(void *buf, uint32_t length, TickType_t ticks);
int usb_serial_jtag_write_bytes(const void *src, size_t size, TickType_t ticks);

/* esp_adc, driver/temperature_sensor.h */
typedef enum { ADC_UNIT_1 = 0, ADC_UNIT_2 } adc_unit_t;
typedef enum { ADC_CHANNEL_0 = 0 } adc_channel_t;
typedef enum { ADC_ATTEN_DB_0 = 0, ADC_ATTEN_DB_12 = 3 } adc_atten_t;
typedef enum { ADC_BITWIDTH_DEFAULT = 0 } adc_bitwidth_t;
typedef struct adc_oneshot_unit_ctx_t *adc_oneshot_unit_handle_t;
typedef struct adc_cali_scheme_t *adc_cali_handle_t;
typedef struct { adc_unit_t unit_id; int clk_src; int ulp_mode; } adc_oneshot_unit_init_cfg_t;
typedef struct { adc_atten_t atten; adc_bitwidth_t bitwidth; } adc_oneshot_chan_cfg_t;
typedef struct { adc_unit_t unit_id; adc_channel_t chan; adc_atten_t atten;
                 adc_bitwidth_t bitwidth; } adc_cali_curve_fitting_config_t;
esp_err_t adc_oneshot_new_unit(const adc_oneshot_unit_init_cfg_t *cfg, adc_oneshot_unit_handle_t *ret);
esp_err_t adc_oneshot_config_channel(adc_oneshot_unit_handle_t h, adc_channel_t ch,
                                     const adc_oneshot_chan_cfg_t *cfg);
esp_err_t adc_oneshot_read(adc_oneshot_unit_handle_t h, adc_channel_t ch, int *out_raw);
esp_err_t adc_cali_create_scheme_curve_fitting(const adc_cali_curve_fitting_config_t *cfg,
                                               adc_cali_handle_t *ret);
esp_err_t adc_cali_raw_to_voltage(adc_cali_handle_t h, int raw, int *mv);
typedef struct temperature_sensor_obj_t *temperature_sensor_handle_t;
typedef struct { int range_min; int range_max; int clk_src; } temperature_sensor_config_t;
#define TEMPERATURE_SENSOR_CONFIG_DEFAULT(min, max) {.range_min = (min), .range_max = (max)}
esp_err_t temperature_sensor_install(const temperature_sensor_config_t *cfg,
                                     temperature_sensor_handle_t *ret);
esp_err_t temperature_sensor_enable(temperature_sensor_handle_t h);
esp_err_t temperature_sensor_get_celsius(temperature_sensor_handle_t h, float *out);

/* esp_event.h, esp_netif.h, esp_wifi.h */
typedef const char *esp_event_base_t;
extern esp_event_base_t WIFI_EVENT, IP_EVENT;
#define ESP_EVENT_ANY_ID -1
enum { WIFI_EVENT_STA_START = 2, WIFI_EVENT_STA_DISCONNECTED = 5 };
enum { IP_EVENT_STA_GOT_IP = 0 };
typedef void (*esp_event_handler_t)(void *arg, esp_event_base_t base, int32_t id, void *data);
esp_err_t esp_event_loop_create_default(void);
esp_err_t esp_event_handler_register(esp_event_base_t base, int32_t id, esp_event_handler_t h,
                                     void *arg);
typedef struct { uint32_t addr; } esp_ip4_addr_t;
typedef struct { esp_ip4_addr_t ip, netmask, gw; } esp_netif_ip_info_t;
typedef struct { void *esp_netif; esp_netif_ip_info_t ip_info; bool ip_changed; } ip_event_got_ip_t;
#define IPSTR "%d.%d.%d.%d"
#define IP2STR(a) 0, 0, 0, 0
typedef struct esp_netif_obj esp_netif_t;
esp_err_t esp_netif_init(void);
esp_netif_t *esp_netif_create_default_wifi_sta(void);
typedef struct { int dummy; } wifi_init_config_t;
#define WIFI_INIT_CONFIG_DEFAULT() {0}
typedef enum { WIFI_MODE_STA = 1 } wifi_mode_t;
typedef enum { WIFI_IF_STA = 0 } wifi_interface_t;
typedef enum { WIFI_PS_NONE = 0 } wifi_ps_type_t;
typedef struct { uint8_t ssid[32]; uint8_t password[64]; } wifi_sta_config_t;
typedef union { wifi_sta_config_t sta; } wifi_config_t;
esp_err_t esp_wifi_init(const wifi_init_config_t *cfg);
esp_err_t esp_wifi_set_mode(wifi_mode_t mode);
esp_err_t esp_wifi_set_config(wifi_interface_t iface, wifi_config_t *cfg);
esp_err_t esp_wifi_set_ps(wifi_ps_type_t type);
esp_err_t esp_wifi_start(void);
esp_err_t esp_wifi_connect(void);
size_t strlcpy(char *dst, const char *src, size_t size);

/* lwip/sockets.h */
typedef uint32_t socklen_t;
typedef uint32_t in_addr_t;
struct in_addr { in_addr_t s_addr; };
struct sockaddr { uint8_t sa_len; uint8_t sa_family; char sa_data[14]; };
struct sockaddr_in { uint8_t sin_len; uint8_t sin_family; uint16_t sin_port;
                     struct in_addr sin_addr; char sin_zero[8]; };
#define AF_INET 2
#define SOCK_DGRAM 2
#define IPPROTO_UDP 17
#define SOL_SOCKET 0xfff
#define SO_BROADCAST 0x0020
#define INADDR_ANY ((uint32_t)0)
#define INADDR_BROADCAST ((uint32_t)0xffffffffUL)
uint16_t htons(uint16_t v);
uint32_t htonl(uint32_t v);
in_addr_t inet_addr(const char *cp);
int socket(int domain, int type, int protocol);
int setsockopt(int s, int level, int optname, const void *optval, socklen_t optlen);
int bind(int s, const struct sockaddr *name, socklen_t namelen);
int recvfrom(int s, void *mem, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen);
int sendto(int s, const void *data, size_t size, int flags, const struct sockaddr *to,
           socklen_t tolen);

/* NimBLE (host/ble_hs.h, host/ble_gap.h, host/ble_uuid.h, services/...) */
struct os_mbuf;
typedef struct { uint8_t type; } ble_uuid_t;
typedef struct { ble_uuid_t u; uint8_t value[16]; } ble_uuid128_t;
#define BLE_UUID_TYPE_128 128
#define BLE_UUID128_INIT(uuid128...) {.u = {.type = BLE_UUID_TYPE_128}, .value = {uuid128}}
#define BLE_HS_CONN_HANDLE_NONE 0xffff
#define BLE_ATT_MTU_DFLT 23
#define BLE_HS_ENOMEM 6
#define BLE_HS_FOREVER 0x7fffffff
#define BLE_ATT_ERR_UNLIKELY 0x0e
#define BLE_ATT_ERR_INVALID_ATTR_VALUE_LEN 0x0d
#define BLE_GATT_ACCESS_OP_WRITE_CHR 1
#define BLE_GATT_SVC_TYPE_PRIMARY 1
#define BLE_GATT_CHR_F_NOTIFY 0x0010
#define BLE_GATT_CHR_F_WRITE 0x0008
#define BLE_GATT_CHR_F_WRITE_NO_RSP 0x0004
#define BLE_HS_ADV_F_DISC_GEN 0x02
#define BLE_HS_ADV_F_BREDR_UNSUP 0x04
#define BLE_GAP_CONN_MODE_UND 2
#define BLE_GAP_DISC_MODE_GEN 2
#define BLE_GAP_LE_PHY_2M_MASK 0x02
enum { BLE_GAP_EVENT_CONNECT = 0, BLE_GAP_EVENT_DISCONNECT = 1, BLE_GAP_EVENT_ADV_COMPLETE = 9,
       BLE_GAP_EVENT_SUBSCRIBE = 14, BLE_GAP_EVENT_MTU = 15 };
struct ble_gatt_access_ctxt { uint8_t op; struct os_mbuf *om; };
typedef int ble_gatt_access_fn(uint16_t conn_handle, uint16_t attr_handle,
                               struct ble_gatt_access_ctxt *ctxt, void *arg);
struct ble_gatt_chr_def { const ble_uuid_t *uuid; ble_gatt_access_fn *access_cb; void *arg;
                          void *descriptors; uint16_t flags; uint8_t min_key_size;
                          uint16_t *val_handle; };
struct ble_gatt_svc_def { uint8_t type; const ble_uuid_t *uuid; const void *includes;
                          const struct ble_gatt_chr_def *characteristics; };
struct ble_hs_adv_fields {
    uint8_t flags;
    const ble_uuid128_t *uuids128;
    uint8_t num_uuids128;
    unsigned uuids128_is_complete : 1;
    const uint8_t *name;
    uint8_t name_len;
    unsigned name_is_complete : 1;
};
struct ble_gap_adv_params { uint8_t conn_mode; uint8_t disc_mode; uint16_t itvl_min, itvl_max;
                            uint8_t channel_map, filter_policy, high_duty_cycle; };
struct ble_gap_event {
    uint8_t type;
    union {
        struct { int status; uint16_t conn_handle; } connect;
        struct { int reason; } disconnect;
        struct { uint16_t conn_handle, attr_handle; uint8_t reason;
                 uint8_t prev_notify : 1, cur_notify : 1, prev_indicate : 1, cur_indicate : 1; } subscribe;
        struct { uint16_t conn_handle, channel_id, value; } mtu;
    };
};
typedef int ble_gap_event_fn(struct ble_gap_event *event, void *arg);
struct ble_hs_cfg { void (*sync_cb)(void); void (*reset_cb)(int reason); };
extern struct ble_hs_cfg ble_hs_cfg;
int ble_hs_mbuf_to_flat(const struct os_mbuf *om, void *flat, uint16_t max_len, uint16_t *out_len);
struct os_mbuf *ble_hs_mbuf_from_flat(const void *buf, uint16_t len);
int ble_gatts_notify_custom(uint16_t conn_handle, uint16_t att_handle, struct os_mbuf *om);
int ble_gatts_count_cfg(const struct ble_gatt_svc_def *defs);
int ble_gatts_add_svcs(const struct ble_gatt_svc_def *svcs);
int ble_gap_adv_set_fields(const struct ble_hs_adv_fields *fields);
int ble_gap_adv_rsp_set_fields(const struct ble_hs_adv_fields *fields);
int ble_gap_adv_start(uint8_t own_addr_type, const void *direct_addr, int32_t duration_ms,
                      const struct ble_gap_adv_params *params, ble_gap_event_fn *cb, void *arg);
int ble_gap_set_prefered_le_phy(uint16_t conn, uint8_t tx_phys_mask, uint8_t rx_phys_mask,
                                uint16_t phy_opts);
int ble_gap_set_data_len(uint16_t conn, uint16_t tx_octets, uint16_t tx_time);
int ble_att_set_preferred_mtu(uint16_t mtu);
int ble_hs_util_ensure_addr(int prefer_random);
int ble_hs_id_infer_auto(int privacy, uint8_t *out_addr_type);
void ble_svc_gap_init(void);
void ble_svc_gatt_init(void);
int ble_svc_gap_device_name_set(const char *name);
const char *ble_svc_gap_device_name(void);
esp_err_t nimble_port_init(void);
void nimble_port_run(void);
void nimble_port_freertos_init(TaskFunction_t host_task_fn);
void nimble_port_freertos_deinit(void);
