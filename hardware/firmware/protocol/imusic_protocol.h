/*
 * imusic wire protocol v1: portable C codec (hardware/PROTOCOL.md).
 *
 * Freestanding C11: only <stdint.h>, <stddef.h>, <stdbool.h>, <string.h>. No heap, no
 * platform headers, bounded buffers everywhere, so the same files build for the ESP32-S3
 * firmware (ESP-IDF component) and for the host tests (system cc with sanitizers).
 *
 * Encoding writes a whole frame (0x00 COBS(header|body|crc32) 0x00) straight into the caller's
 * buffer through an imp_writer: no intermediate packet copy. Decoding is either one packet at
 * a time (imp_decode_packet) or a byte stream with resynchronisation on 0x00 (imp_decoder).
 */
#ifndef IMUSIC_PROTOCOL_H
#define IMUSIC_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMP_VERSION 1u
#define IMP_MAX_PACKET 2048u /* header|body|crc before stuffing */
#define IMP_HEADER_SIZE 6u
#define IMP_CRC_SIZE 4u
#define IMP_MAX_BODY (IMP_MAX_PACKET - IMP_HEADER_SIZE - IMP_CRC_SIZE)
/* COBS adds one code byte per started run of 254 bytes. */
#define IMP_MAX_STUFFED (IMP_MAX_PACKET + (IMP_MAX_PACKET + 253u) / 254u)
#define IMP_MAX_FRAME (IMP_MAX_STUFFED + 2u) /* with the leading and the ending 0x00 */
#define IMP_MAX_INSTANTS 32u
/* Latest device time (us) a receiver accepts (as firmware_bridge/protocol.py MAX_TIME_US):
 * SAMPLES, STATUS and EVENT stamped later are IMP_ERR_FIELD. */
#define IMP_MAX_TIME_US (UINT64_C(1) << 53)
#define IMP_MIN_RATE_HZ 25u
#define IMP_MAX_RATE_HZ 400u

/* Message types. */
enum {
    IMP_DEVICE_INFO = 0x01,
    IMP_SAMPLES = 0x02,
    IMP_STATUS = 0x03,
    IMP_EVENT = 0x04,
    IMP_ACK = 0x05,
    IMP_CMD_START = 0x80,
    IMP_CMD_STOP = 0x81,
    IMP_CMD_SET_RATE = 0x82,
    IMP_CMD_IDENTIFY = 0x83,
    IMP_CMD_GET_INFO = 0x84,
};

/* SAMPLES / DEVICE_INFO flags: which per-sensor blocks follow acc. The gyro block is there
 * unless IMP_FLAG_NO_GYRO is set (a device reporting orientation + acceleration only). */
enum {
    IMP_FLAG_MAG = 0x01,
    IMP_FLAG_QUAT = 0x02,
    IMP_FLAG_NO_GYRO = 0x04,
    IMP_FLAGS_KNOWN = 0x07
};

/* ACK results. */
enum { IMP_ACK_OK = 0, IMP_ACK_BAD_ARGUMENT = 1, IMP_ACK_BUSY = 2, IMP_ACK_UNKNOWN = 3 };

/* EVENT kinds. */
enum { IMP_EVENT_TAP = 1, IMP_EVENT_SYNC = 2, IMP_EVENT_BUTTON = 3, IMP_EVENT_BOOTED = 4 };
#define IMP_NO_SENSOR 255u
#define IMP_BATTERY_PCT_UNKNOWN 255u

/* Why a frame or packet was refused. */
typedef enum {
    IMP_OK = 0,
    IMP_ERR_COBS,     /* the stuffing is inconsistent */
    IMP_ERR_OVERLONG, /* more than IMP_MAX_PACKET bytes before a 0x00 */
    IMP_ERR_SHORT,    /* shorter than header + crc */
    IMP_ERR_CRC,      /* checksum mismatch */
    IMP_ERR_VERSION,  /* version byte is not IMP_VERSION */
    IMP_ERR_TYPE,     /* unknown message type */
    IMP_ERR_LENGTH,   /* body length does not match its fields */
    IMP_ERR_FIELD,    /* a field is out of its range (flags, counts, UTF-8) */
    IMP_ERR_SPACE,    /* encoder: output buffer too small or packet over IMP_MAX_PACKET */
    IMP_RESULT_COUNT
} imp_result;

const char *imp_result_name(imp_result r);

/* ---- checksums and stuffing -------------------------------------------------------- */

/* CRC-32/ISO-HDLC (zlib.crc32): start with crc = 0, feed pieces, the result is final. */
uint32_t imp_crc32_update(uint32_t crc, const uint8_t *data, size_t n);
uint32_t imp_crc32(const uint8_t *data, size_t n);

/* COBS-encode n bytes (no delimiter added). Returns the encoded length, 0 if cap is short. */
size_t imp_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);
/* COBS-decode n bytes (no delimiter). Returns IMP_OK and *out_len, or IMP_ERR_COBS /
 * IMP_ERR_SPACE. in and out may be the same buffer (decoding never grows). */
imp_result imp_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);

/* ---- messages ---------------------------------------------------------------------- */

typedef struct {
    uint8_t fw_major, fw_minor, fw_patch;
    uint64_t serial;
    uint32_t boot_id;
    uint16_t rate_hz;
    uint8_t sensor_count;
    uint8_t flags;
    float accel_scale, gyro_scale, mag_scale; /* SI per LSB (m/s^2, rad/s, uT) */
    float accel_range, gyro_range, mag_range; /* full scale */
    uint8_t instants_per_frame;
    uint8_t rig_id_len;
    char rig_id[256]; /* UTF-8, NUL-terminated after decoding */
    uint8_t name_len;
    char name[256];
} imp_device_info;

/* One sensor at one instant, in wire order; gyro / mag / quat only meaningful when their
 * block is there (gyro: IMP_FLAG_NO_GYRO clear; zeros otherwise). */
typedef struct {
    int16_t acc[3], gyro[3], mag[3], quat[4];
} imp_sensor_sample;

/* A decoded SAMPLES frame; data points into the decoder's (or caller's) packet buffer and is
 * read through imp_samples_dt / imp_samples_sensor. */
typedef struct {
    uint32_t seq;
    uint64_t t0_us;
    uint8_t n_instants, n_sensors, flags;
    const uint8_t *data;
} imp_samples;

typedef struct {
    uint64_t t_us;
    uint16_t battery_mv;
    uint8_t battery_pct;
    int16_t temperature_cdeg;
    uint32_t sensor_errors, overruns, tx_dropped;
} imp_status;

typedef struct {
    uint64_t t_us;
    uint8_t kind, sensor;
    int32_t value;
} imp_event;

typedef struct {
    uint8_t command, result;
} imp_ack;

typedef struct {
    uint8_t version, type;
    uint32_t device_id;
    const uint8_t *body; /* raw body, valid as long as the packet buffer */
    size_t body_len;
    union {
        imp_device_info info;
        imp_samples samples;
        imp_status status;
        imp_event event;
        imp_ack ack;
        uint16_t rate_hz; /* CMD_SET_RATE */
        uint8_t seconds;  /* CMD_IDENTIFY */
    } u;
} imp_message;

/* Sizes of the SAMPLES layout. */
size_t imp_sensor_bytes(uint8_t flags);
size_t imp_values_per_sensor(uint8_t flags); /* 3 (acc) + 3 gyro + 3 mag + 4 quat as flagged */
size_t imp_samples_body_size(uint8_t n_instants, uint8_t n_sensors, uint8_t flags);
/* The most instants a SAMPLES frame can hold within IMP_MAX_PACKET (capped at 32). */
uint8_t imp_max_instants(uint8_t n_sensors, uint8_t flags);

uint32_t imp_samples_dt(const imp_samples *s, unsigned instant);
void imp_samples_sensor(const imp_samples *s, unsigned instant, unsigned sensor,
                        imp_sensor_sample *out);

/* ---- encoding ---------------------------------------------------------------------- */

/* Streams one frame into out: CRC and COBS are computed on the fly. */
typedef struct {
    uint8_t *out;
    size_t cap, pos;
    size_t code_pos; /* where the current COBS code byte goes */
    uint8_t code;
    uint32_t crc;
    size_t packet_len;
    bool failed;
} imp_writer;

void imp_writer_begin(imp_writer *w, uint8_t *out, size_t cap, uint8_t type, uint32_t device_id);
void imp_put_u8(imp_writer *w, uint8_t v);
void imp_put_u16(imp_writer *w, uint16_t v);
void imp_put_u32(imp_writer *w, uint32_t v);
void imp_put_u64(imp_writer *w, uint64_t v);
void imp_put_i16(imp_writer *w, int16_t v);
void imp_put_i32(imp_writer *w, int32_t v);
void imp_put_f32(imp_writer *w, float v);
void imp_put_bytes(imp_writer *w, const uint8_t *p, size_t n);
/* Append the CRC and the delimiter. Returns the frame length, or 0 (IMP_ERR_SPACE). */
size_t imp_writer_end(imp_writer *w);

/* Whole messages. Each returns the frame length written to out (with both 0x00), or 0 when
 * out is too small or a field is out of range. */
size_t imp_encode_device_info(uint32_t device_id, const imp_device_info *m, uint8_t *out,
                              size_t cap);
/* dt_us: n_instants values; values: n_instants * n_sensors * imp_values_per_sensor(flags)
 * int16 in wire order (per instant, per sensor: acc xyz, [gyro xyz], [mag xyz], [quat wxyz]). */
size_t imp_encode_samples(uint32_t device_id, uint32_t seq, uint64_t t0_us, uint8_t n_instants,
                          uint8_t n_sensors, uint8_t flags, const uint32_t *dt_us,
                          const int16_t *values, uint8_t *out, size_t cap);
size_t imp_encode_status(uint32_t device_id, const imp_status *m, uint8_t *out, size_t cap);
size_t imp_encode_event(uint32_t device_id, const imp_event *m, uint8_t *out, size_t cap);
size_t imp_encode_ack(uint32_t device_id, uint8_t command, uint8_t result, uint8_t *out,
                      size_t cap);
/* Host commands: arg is rate_hz for SET_RATE, seconds for IDENTIFY, ignored otherwise. */
size_t imp_encode_command(uint8_t type, uint32_t device_id, uint16_t arg, uint8_t *out,
                          size_t cap);
/* Any type with a raw body (tests, future types). */
size_t imp_encode_raw(uint8_t type, uint32_t device_id, const uint8_t *body, size_t body_len,
                      uint8_t *out, size_t cap);

/* ---- decoding ---------------------------------------------------------------------- */

/* Check and parse one unstuffed packet (header|body|crc). msg points into packet. */
imp_result imp_decode_packet(const uint8_t *packet, size_t len, imp_message *msg);

typedef struct {
    uint32_t frames_ok;
    uint32_t cobs_errors, overlong, too_short, crc_errors, bad_version, unknown_type,
        bad_length, bad_field;
    uint64_t bytes_in, bytes_dropped; /* bytes of refused frames, incl. their delimiter */
} imp_counters;

/* Streaming decoder: feed it any chunking of the byte stream. */
typedef struct {
    uint8_t buf[IMP_MAX_STUFFED]; /* the frame being collected, then decoded in place */
    size_t len;
    bool discarding; /* an overlong run: drop up to the next 0x00 */
    imp_counters counters;
} imp_decoder;

void imp_decoder_init(imp_decoder *d);
/*
 * Consume bytes up to and including the next frame end. Returns how many bytes of data were
 * consumed. When a frame ended, *result says how it went: IMP_OK with *msg filled (valid until
 * the next call), or the reason it was dropped (also counted in d->counters). When the data
 * ran out first, *result is IMP_RESULT_COUNT ("nothing yet"). An overlong run is reported
 * (IMP_ERR_OVERLONG) as soon as it passes IMP_MAX_STUFFED bytes, and the rest of it up to the
 * next 0x00 is dropped. Empty frames (0x00 0x00) are skipped silently: senders lead each frame
 * with a 0x00 to flush the receiver. Never fails on any input.
 */
size_t imp_decoder_feed(imp_decoder *d, const uint8_t *data, size_t n, imp_message *msg,
                        imp_result *result);

#ifdef __cplusplus
}
#endif

#endif /* IMUSIC_PROTOCOL_H */
