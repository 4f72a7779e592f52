/*
 * imusic wire protocol v1: portable C codec. See imusic_protocol.h and hardware/PROTOCOL.md.
 */
#include "imusic_protocol.h"

#include <string.h>

const char *imp_result_name(imp_result r)
{
    static const char *const names[IMP_RESULT_COUNT] = {
        "ok", "cobs", "overlong", "short", "crc", "version", "type", "length", "field", "space",
    };
    return (unsigned)r < IMP_RESULT_COUNT ? names[r] : "none";
}

/* ---- CRC-32 ------------------------------------------------------------------------- */

/* Nibble table for the reflected polynomial 0xEDB88320: 64 bytes of ROM instead of 1 KiB, and
 * fast enough for a few kB/s on the ESP32. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t imp_crc32_update(uint32_t crc, const uint8_t *data, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
    }
    return ~crc;
}

uint32_t imp_crc32(const uint8_t *data, size_t n) { return imp_crc32_update(0, data, n); }

/* ---- COBS --------------------------------------------------------------------------- */

size_t imp_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    if (cap == 0)
        return 0;
    size_t code_pos = 0, pos = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_pos] = code;
            if (pos >= cap)
                return 0;
            code_pos = pos++;
            code = 1;
            continue;
        }
        if (pos >= cap)
            return 0;
        out[pos++] = in[i];
        if (++code == 0xFF) {
            out[code_pos] = code;
            /* A full run ends without an implied zero; start a new run only if data follows,
             * so that the canonical encoding (as in the Python `cobs` package) comes out. */
            if (i + 1 < n) {
                if (pos >= cap)
                    return 0;
                code_pos = pos++;
                code = 1;
            } else {
                return pos;
            }
        }
    }
    out[code_pos] = code;
    return pos;
}

imp_result imp_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i++];
        if (code == 0)
            return IMP_ERR_COBS;
        size_t run = (size_t)code - 1u;
        if (run > n - i)
            return IMP_ERR_COBS;
        if (run > cap - o)
            return IMP_ERR_SPACE;
        for (size_t k = 0; k < run; k++) {
            if (in[i + k] == 0)
                return IMP_ERR_COBS;
        }
        memmove(out + o, in + i, run); /* in place: o <= i always */
        o += run;
        i += run;
        if (code != 0xFF && i < n) {
            if (o >= cap)
                return IMP_ERR_SPACE;
            out[o++] = 0;
        }
    }
    *out_len = o;
    return IMP_OK;
}

/* ---- little-endian helpers ---------------------------------------------------------- */

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32); }
static int16_t rd_i16(const uint8_t *p) { return (int16_t)rd_u16(p); }
static int32_t rd_i32(const uint8_t *p) { return (int32_t)rd_u32(p); }
static float rd_f32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- SAMPLES layout ----------------------------------------------------------------- */

size_t imp_values_per_sensor(uint8_t flags)
{
    return 3u + ((flags & IMP_FLAG_NO_GYRO) ? 0u : 3u) + ((flags & IMP_FLAG_MAG) ? 3u : 0u) +
           ((flags & IMP_FLAG_QUAT) ? 4u : 0u);
}

size_t imp_sensor_bytes(uint8_t flags) { return 2u * imp_values_per_sensor(flags); }

#define SAMPLES_HEAD 15u /* seq u32, t0 u64, n_instants, n_sensors, flags */

size_t imp_samples_body_size(uint8_t n_instants, uint8_t n_sensors, uint8_t flags)
{
    return SAMPLES_HEAD + (size_t)n_instants * (4u + (size_t)n_sensors * imp_sensor_bytes(flags));
}

uint8_t imp_max_instants(uint8_t n_sensors, uint8_t flags)
{
    size_t per = 4u + (size_t)n_sensors * imp_sensor_bytes(flags);
    size_t k = (IMP_MAX_BODY - SAMPLES_HEAD) / per;
    return (uint8_t)(k > IMP_MAX_INSTANTS ? IMP_MAX_INSTANTS : k);
}

static const uint8_t *instant_ptr(const imp_samples *s, unsigned instant)
{
    return s->data + (size_t)instant * (4u + (size_t)s->n_sensors * imp_sensor_bytes(s->flags));
}

uint32_t imp_samples_dt(const imp_samples *s, unsigned instant)
{
    return rd_u32(instant_ptr(s, instant));
}

void imp_samples_sensor(const imp_samples *s, unsigned instant, unsigned sensor,
                        imp_sensor_sample *out)
{
    const uint8_t *p = instant_ptr(s, instant) + 4u + (size_t)sensor * imp_sensor_bytes(s->flags);
    memset(out, 0, sizeof *out);
    for (int a = 0; a < 3; a++)
        out->acc[a] = rd_i16(p + 2 * a);
    p += 6;
    if (!(s->flags & IMP_FLAG_NO_GYRO)) {
        for (int a = 0; a < 3; a++)
            out->gyro[a] = rd_i16(p + 2 * a);
        p += 6;
    }
    if (s->flags & IMP_FLAG_MAG) {
        for (int a = 0; a < 3; a++)
            out->mag[a] = rd_i16(p + 2 * a);
        p += 6;
    }
    if (s->flags & IMP_FLAG_QUAT) {
        for (int a = 0; a < 4; a++)
            out->quat[a] = rd_i16(p + 2 * a);
    }
}

/* ---- writer ------------------------------------------------------------------------- */

static void cobs_put(imp_writer *w, uint8_t b)
{
    if (w->failed)
        return;
    if (w->packet_len >= IMP_MAX_PACKET) {
        w->failed = true;
        return;
    }
    w->packet_len++;
    if (b == 0) {
        w->out[w->code_pos] = w->code;
        if (w->pos >= w->cap) {
            w->failed = true;
            return;
        }
        w->code_pos = w->pos++;
        w->code = 1;
        return;
    }
    if (w->pos >= w->cap) {
        w->failed = true;
        return;
    }
    w->out[w->pos++] = b;
    if (++w->code == 0xFF) {
        /* Close the full run now; a new code byte is opened lazily by the next byte. */
        w->out[w->code_pos] = w->code;
        w->code = 0; /* marks "no open run" */
    }
}

static void put(imp_writer *w, uint8_t b)
{
    if (!w->failed && w->code == 0) {
        /* Open the run that follows a full 254-byte run. */
        if (w->pos >= w->cap) {
            w->failed = true;
            return;
        }
        w->code_pos = w->pos++;
        w->code = 1;
    }
    w->crc = imp_crc32_update(w->crc, &b, 1);
    cobs_put(w, b);
}

void imp_writer_begin(imp_writer *w, uint8_t *out, size_t cap, uint8_t type, uint32_t device_id)
{
    w->out = out;
    w->cap = cap;
    /* A leading 0x00 closes whatever half frame or garbage the receiver holds, so that it
     * cannot swallow this frame (receivers skip empty frames); the Python encoder does the
     * same, so both produce the same bytes. */
    w->failed = cap < 3;
    if (!w->failed)
        out[0] = 0x00;
    w->pos = 2;
    w->code_pos = 1;
    w->code = 1;
    w->crc = 0;
    w->packet_len = 0;
    imp_put_u8(w, IMP_VERSION);
    imp_put_u8(w, type);
    imp_put_u32(w, device_id);
}

void imp_put_u8(imp_writer *w, uint8_t v) { put(w, v); }
void imp_put_u16(imp_writer *w, uint16_t v)
{
    put(w, (uint8_t)v);
    put(w, (uint8_t)(v >> 8));
}
void imp_put_u32(imp_writer *w, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        put(w, (uint8_t)(v >> (8 * i)));
}
void imp_put_u64(imp_writer *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        put(w, (uint8_t)(v >> (8 * i)));
}
void imp_put_i16(imp_writer *w, int16_t v) { imp_put_u16(w, (uint16_t)v); }
void imp_put_i32(imp_writer *w, int32_t v) { imp_put_u32(w, (uint32_t)v); }
void imp_put_f32(imp_writer *w, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    imp_put_u32(w, u);
}
void imp_put_bytes(imp_writer *w, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put(w, p[i]);
}

size_t imp_writer_end(imp_writer *w)
{
    uint32_t crc = w->crc;
    for (int i = 0; i < 4; i++) /* the CRC is not part of its own checksum */
        {
            uint8_t b = (uint8_t)(crc >> (8 * i));
            if (!w->failed && w->code == 0) {
                if (w->pos >= w->cap) {
                    w->failed = true;
                    break;
                }
                w->code_pos = w->pos++;
                w->code = 1;
            }
            cobs_put(w, b);
        }
    if (w->failed)
        return 0;
    if (w->code != 0)
        w->out[w->code_pos] = w->code;
    if (w->pos >= w->cap)
        return 0;
    w->out[w->pos++] = 0x00;
    return w->pos;
}

/* ---- messages ----------------------------------------------------------------------- */

size_t imp_encode_device_info(uint32_t device_id, const imp_device_info *m, uint8_t *out,
                              size_t cap)
{
    if (m->instants_per_frame < 1 || m->instants_per_frame > IMP_MAX_INSTANTS ||
        (m->flags & ~IMP_FLAGS_KNOWN))
        return 0;
    imp_writer w;
    imp_writer_begin(&w, out, cap, IMP_DEVICE_INFO, device_id);
    imp_put_u8(&w, m->fw_major);
    imp_put_u8(&w, m->fw_minor);
    imp_put_u8(&w, m->fw_patch);
    imp_put_u64(&w, m->serial);
    imp_put_u32(&w, m->boot_id);
    imp_put_u16(&w, m->rate_hz);
    imp_put_u8(&w, m->sensor_count);
    imp_put_u8(&w, m->flags);
    imp_put_f32(&w, m->accel_scale);
    imp_put_f32(&w, m->gyro_scale);
    imp_put_f32(&w, m->mag_scale);
    imp_put_f32(&w, m->accel_range);
    imp_put_f32(&w, m->gyro_range);
    imp_put_f32(&w, m->mag_range);
    imp_put_u8(&w, m->instants_per_frame);
    imp_put_u8(&w, m->rig_id_len);
    imp_put_bytes(&w, (const uint8_t *)m->rig_id, m->rig_id_len);
    imp_put_u8(&w, m->name_len);
    imp_put_bytes(&w, (const uint8_t *)m->name, m->name_len);
    return imp_writer_end(&w);
}

size_t imp_encode_samples(uint32_t device_id, uint32_t seq, uint64_t t0_us, uint8_t n_instants,
                          uint8_t n_sensors, uint8_t flags, const uint32_t *dt_us,
                          const int16_t *values, uint8_t *out, size_t cap)
{
    if (n_instants < 1 || n_instants > IMP_MAX_INSTANTS || n_sensors < 1 ||
        (flags & ~IMP_FLAGS_KNOWN))
        return 0;
    if (imp_samples_body_size(n_instants, n_sensors, flags) > IMP_MAX_BODY)
        return 0;
    size_t per_instant = (size_t)n_sensors * imp_values_per_sensor(flags);
    imp_writer w;
    imp_writer_begin(&w, out, cap, IMP_SAMPLES, device_id);
    imp_put_u32(&w, seq);
    imp_put_u64(&w, t0_us);
    imp_put_u8(&w, n_instants);
    imp_put_u8(&w, n_sensors);
    imp_put_u8(&w, flags);
    for (size_t i = 0; i < n_instants; i++) {
        imp_put_u32(&w, dt_us[i]);
        const int16_t *v = values + i * per_instant;
        for (size_t k = 0; k < per_instant; k++)
            imp_put_i16(&w, v[k]);
    }
    return imp_writer_end(&w);
}

size_t imp_encode_status(uint32_t device_id, const imp_status *m, uint8_t *out, size_t cap)
{
    imp_writer w;
    imp_writer_begin(&w, out, cap, IMP_STATUS, device_id);
    imp_put_u64(&w, m->t_us);
    imp_put_u16(&w, m->battery_mv);
    imp_put_u8(&w, m->battery_pct);
    imp_put_i16(&w, m->temperature_cdeg);
    imp_put_u32(&w, m->sensor_errors);
    imp_put_u32(&w, m->overruns);
    imp_put_u32(&w, m->tx_dropped);
    return imp_writer_end(&w);
}

size_t imp_encode_event(uint32_t device_id, const imp_event *m, uint8_t *out, size_t cap)
{
    imp_writer w;
    imp_writer_begin(&w, out, cap, IMP_EVENT, device_id);
    imp_put_u64(&w, m->t_us);
    imp_put_u8(&w, m->kind);
    imp_put_u8(&w, m->sensor);
    imp_put_i32(&w, m->value);
    return imp_writer_end(&w);
}

size_t imp_encode_ack(uint32_t device_id, uint8_t command, uint8_t result, uint8_t *out,
                      size_t cap)
{
    imp_writer w;
    imp_writer_begin(&w, out, cap, IMP_ACK, device_id);
    imp_put_u8(&w, command);
    imp_put_u8(&w, result);
    return imp_writer_end(&w);
}

size_t imp_encode_command(uint8_t type, uint32_t device_id, uint16_t arg, uint8_t *out,
                          size_t cap)
{
    imp_writer w;
    switch (type) {
    case IMP_CMD_START:
    case IMP_CMD_STOP:
    case IMP_CMD_GET_INFO:
        imp_writer_begin(&w, out, cap, type, device_id);
        break;
    case IMP_CMD_SET_RATE:
        imp_writer_begin(&w, out, cap, type, device_id);
        imp_put_u16(&w, arg);
        break;
    case IMP_CMD_IDENTIFY:
        if (arg > 0xFF)
            return 0;
        imp_writer_begin(&w, out, cap, type, device_id);
        imp_put_u8(&w, (uint8_t)arg);
        break;
    default:
        return 0;
    }
    return imp_writer_end(&w);
}

size_t imp_encode_raw(uint8_t type, uint32_t device_id, const uint8_t *body, size_t body_len,
                      uint8_t *out, size_t cap)
{
    imp_writer w;
    imp_writer_begin(&w, out, cap, type, device_id);
    imp_put_bytes(&w, body, body_len);
    return imp_writer_end(&w);
}

/* ---- decoding ----------------------------------------------------------------------- */

/* Strict UTF-8 (as Python's decoder): no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1Fu, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0Fu, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (k > n - i - 1)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

static imp_result take_string(const uint8_t *b, size_t n, size_t *pos, uint8_t *len_out, char *dst)
{
    if (*pos >= n)
        return IMP_ERR_LENGTH;
    uint8_t len = b[(*pos)++];
    if (len > n - *pos)
        return IMP_ERR_LENGTH;
    if (!utf8_valid(b + *pos, len))
        return IMP_ERR_FIELD;
    memcpy(dst, b + *pos, len);
    dst[len] = '\0';
    *len_out = len;
    *pos += len;
    return IMP_OK;
}

static imp_result decode_device_info(const uint8_t *b, size_t n, imp_device_info *m)
{
    enum { FIXED = 3 + 8 + 4 + 2 + 1 + 1 + 6 * 4 + 1 };
    if (n < FIXED)
        return IMP_ERR_LENGTH;
    m->fw_major = b[0];
    m->fw_minor = b[1];
    m->fw_patch = b[2];
    m->serial = rd_u64(b + 3);
    m->boot_id = rd_u32(b + 11);
    m->rate_hz = rd_u16(b + 15);
    m->sensor_count = b[17];
    m->flags = b[18];
    m->accel_scale = rd_f32(b + 19);
    m->gyro_scale = rd_f32(b + 23);
    m->mag_scale = rd_f32(b + 27);
    m->accel_range = rd_f32(b + 31);
    m->gyro_range = rd_f32(b + 35);
    m->mag_range = rd_f32(b + 39);
    m->instants_per_frame = b[43];
    size_t pos = FIXED;
    imp_result r = take_string(b, n, &pos, &m->rig_id_len, m->rig_id);
    if (r == IMP_OK)
        r = take_string(b, n, &pos, &m->name_len, m->name);
    if (r != IMP_OK)
        return r;
    if (pos != n)
        return IMP_ERR_LENGTH;
    /* flags and instants_per_frame are the sender's to get right (the encoder checks them);
     * a receiver takes them as they come, as the Python decoder does. */
    return IMP_OK;
}

static imp_result decode_samples(const uint8_t *b, size_t n, imp_samples *s)
{
    if (n < SAMPLES_HEAD)
        return IMP_ERR_LENGTH;
    s->seq = rd_u32(b);
    s->t0_us = rd_u64(b + 4);
    s->n_instants = b[12];
    s->n_sensors = b[13];
    s->flags = b[14];
    s->data = b + SAMPLES_HEAD;
    /* Unknown flag bits would change the layout: refuse. More than 32 instants is the sender's
     * mistake but still parses (the length check below keeps it inside the packet). */
    if ((s->flags & ~IMP_FLAGS_KNOWN) || s->n_instants < 1 || s->n_sensors < 1)
        return IMP_ERR_FIELD;
    if (imp_samples_body_size(s->n_instants, s->n_sensors, s->flags) != n)
        return IMP_ERR_LENGTH;
    size_t per = 4u + (size_t)s->n_sensors * imp_sensor_bytes(s->flags);
    for (size_t i = 0; i < s->n_instants; i++) {
        if (s->t0_us > IMP_MAX_TIME_US || rd_u32(s->data + i * per) > IMP_MAX_TIME_US - s->t0_us)
            return IMP_ERR_FIELD;
    }
    return IMP_OK;
}

imp_result imp_decode_packet(const uint8_t *packet, size_t len, imp_message *msg)
{
    if (len > IMP_MAX_PACKET)
        return IMP_ERR_OVERLONG;
    if (len < IMP_HEADER_SIZE + IMP_CRC_SIZE)
        return IMP_ERR_SHORT;
    size_t body_end = len - IMP_CRC_SIZE;
    if (imp_crc32(packet, body_end) != rd_u32(packet + body_end))
        return IMP_ERR_CRC;
    msg->version = packet[0];
    msg->type = packet[1];
    msg->device_id = rd_u32(packet + 2);
    msg->body = packet + IMP_HEADER_SIZE;
    msg->body_len = body_end - IMP_HEADER_SIZE;
    if (msg->version != IMP_VERSION)
        return IMP_ERR_VERSION;
    const uint8_t *b = msg->body;
    size_t n = msg->body_len;
    switch (msg->type) {
    case IMP_DEVICE_INFO:
        return decode_device_info(b, n, &msg->u.info);
    case IMP_SAMPLES:
        return decode_samples(b, n, &msg->u.samples);
    case IMP_STATUS:
        if (n != 8 + 2 + 1 + 2 + 3 * 4)
            return IMP_ERR_LENGTH;
        msg->u.status.t_us = rd_u64(b);
        msg->u.status.battery_mv = rd_u16(b + 8);
        msg->u.status.battery_pct = b[10];
        msg->u.status.temperature_cdeg = rd_i16(b + 11);
        msg->u.status.sensor_errors = rd_u32(b + 13);
        msg->u.status.overruns = rd_u32(b + 17);
        msg->u.status.tx_dropped = rd_u32(b + 21);
        return msg->u.status.t_us > IMP_MAX_TIME_US ? IMP_ERR_FIELD : IMP_OK;
    case IMP_EVENT:
        if (n != 8 + 1 + 1 + 4)
            return IMP_ERR_LENGTH;
        msg->u.event.t_us = rd_u64(b);
        msg->u.event.kind = b[8];
        msg->u.event.sensor = b[9];
        msg->u.event.value = rd_i32(b + 10);
        return msg->u.event.t_us > IMP_MAX_TIME_US ? IMP_ERR_FIELD : IMP_OK;
    case IMP_ACK:
        if (n != 2)
            return IMP_ERR_LENGTH;
        msg->u.ack.command = b[0];
        msg->u.ack.result = b[1];
        return IMP_OK;
    case IMP_CMD_START:
    case IMP_CMD_STOP:
    case IMP_CMD_GET_INFO:
        return n == 0 ? IMP_OK : IMP_ERR_LENGTH;
    case IMP_CMD_SET_RATE:
        if (n != 2)
            return IMP_ERR_LENGTH;
        /* The range (25..400) is the device's to judge: it answers ACK bad_argument. */
        msg->u.rate_hz = rd_u16(b);
        return IMP_OK;
    case IMP_CMD_IDENTIFY:
        if (n != 1)
            return IMP_ERR_LENGTH;
        msg->u.seconds = b[0];
        return IMP_OK;
    default:
        return IMP_ERR_TYPE;
    }
}

void imp_decoder_init(imp_decoder *d) { memset(d, 0, sizeof *d); }

static void count(imp_decoder *d, imp_result r, size_t frame_bytes)
{
    imp_counters *c = &d->counters;
    if (r == IMP_OK) {
        c->frames_ok++;
        return;
    }
    c->bytes_dropped += frame_bytes;
    switch (r) {
    case IMP_ERR_COBS:
    case IMP_ERR_SPACE:
        c->cobs_errors++;
        break;
    case IMP_ERR_OVERLONG:
        c->overlong++;
        break;
    case IMP_ERR_SHORT:
        c->too_short++;
        break;
    case IMP_ERR_CRC:
        c->crc_errors++;
        break;
    case IMP_ERR_VERSION:
        c->bad_version++;
        break;
    case IMP_ERR_TYPE:
        c->unknown_type++;
        break;
    case IMP_ERR_LENGTH:
        c->bad_length++;
        break;
    default:
        c->bad_field++;
        break;
    }
}

size_t imp_decoder_feed(imp_decoder *d, const uint8_t *data, size_t n, imp_message *msg,
                        imp_result *result)
{
    *result = IMP_RESULT_COUNT;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = data[i];
        d->counters.bytes_in++;
        if (b != 0) {
            if (d->discarding) {
                d->counters.bytes_dropped++;
            } else if (d->len >= sizeof d->buf) {
                /* Too long to be a frame: count it now, drop everything up to the next 0x00. */
                d->counters.bytes_dropped += d->len + 1u;
                d->len = 0;
                d->discarding = true;
                count(d, IMP_ERR_OVERLONG, 0);
                *result = IMP_ERR_OVERLONG;
                return i + 1;
            } else {
                d->buf[d->len++] = b;
            }
            continue;
        }
        /* End of a frame. */
        if (d->discarding) { /* the end of an overlong run, already counted */
            d->discarding = false;
            d->counters.bytes_dropped++;
            continue;
        }
        size_t stuffed = d->len;
        d->len = 0;
        if (stuffed == 0)
            continue; /* empty frame: a flush, not an error */
        size_t plen = 0;
        imp_result r = imp_cobs_decode(d->buf, stuffed, d->buf, sizeof d->buf, &plen);
        if (r == IMP_OK)
            r = imp_decode_packet(d->buf, plen, msg);
        count(d, r, stuffed + 1u);
        *result = r;
        return i + 1;
    }
    return n;
}
