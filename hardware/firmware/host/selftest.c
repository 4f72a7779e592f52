/*
 * C unit tests of the portable codec and device logic, run by `imp_tool selftest` (and so by
 * tests/firmware under the address and undefined-behaviour sanitizers). Prints one line per
 * failed check and a summary; exit status 1 if anything failed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imusic_datagram.h"
#include "imusic_device.h"
#include "imusic_fusion.h"
#include "imusic_i2c_budget.h"
#include "imusic_packer.h"
#include "imusic_protocol.h"
#include "imusic_tap.h"

static int checks, failures;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        checks++;                                                                              \
        if (!(cond)) {                                                                         \
            failures++;                                                                        \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
        }                                                                                      \
    } while (0)

static uint32_t rng_state = 0x9E3779B9u;
static uint32_t rnd(void) /* xorshift32: reproducible */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void test_crc(void)
{
    CHECK(imp_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u);
    CHECK(imp_crc32(NULL, 0) == 0);
    CHECK(imp_crc32((const uint8_t *)"The quick brown fox jumps over the lazy dog", 43) ==
          0x414FA339u);
    /* Piecewise equals whole. */
    uint32_t c = imp_crc32_update(0, (const uint8_t *)"12345", 5);
    CHECK(imp_crc32_update(c, (const uint8_t *)"6789", 4) == 0xCBF43926u);
}

static void cobs_case(const uint8_t *in, size_t n, const uint8_t *want, size_t want_n)
{
    uint8_t out[600], back[600];
    size_t len = imp_cobs_encode(in, n, out, sizeof out);
    CHECK(len == want_n);
    CHECK(len == want_n && memcmp(out, want, want_n) == 0);
    size_t blen = 0;
    CHECK(imp_cobs_decode(out, len, back, sizeof back, &blen) == IMP_OK);
    CHECK(blen == n && memcmp(back, in, n) == 0);
}

static void test_cobs(void)
{
    /* The textbook examples (Cheshire & Baker 1999 / Wikipedia "Consistent Overhead Byte
     * Stuffing"). */
    cobs_case((const uint8_t *)"", 0, (const uint8_t[]){0x01}, 1);
    cobs_case((const uint8_t[]){0x00}, 1, (const uint8_t[]){0x01, 0x01}, 2);
    cobs_case((const uint8_t[]){0x00, 0x00}, 2, (const uint8_t[]){0x01, 0x01, 0x01}, 3);
    cobs_case((const uint8_t[]){0x00, 0x11, 0x00}, 3, (const uint8_t[]){0x01, 0x02, 0x11, 0x01}, 4);
    cobs_case((const uint8_t[]){0x11, 0x22, 0x00, 0x33}, 4,
              (const uint8_t[]){0x03, 0x11, 0x22, 0x02, 0x33}, 5);
    cobs_case((const uint8_t[]){0x11, 0x22, 0x33, 0x44}, 4,
              (const uint8_t[]){0x05, 0x11, 0x22, 0x33, 0x44}, 5);
    cobs_case((const uint8_t[]){0x11, 0x00, 0x00, 0x00}, 4,
              (const uint8_t[]){0x02, 0x11, 0x01, 0x01, 0x01}, 5);
    /* 254 and 255 non-zero bytes: the run-length limit. */
    uint8_t in[300], want[310];
    for (int i = 0; i < 255; i++)
        in[i] = (uint8_t)(i + 1 > 255 ? 1 : i + 1);
    want[0] = 0xFF;
    memcpy(want + 1, in, 254);
    cobs_case(in, 254, want, 255);
    want[255] = 0x02;
    want[256] = in[254];
    cobs_case(in, 255, want, 257);
    /* Malformed: a code running past the end; a zero inside. */
    size_t n;
    uint8_t out[16];
    CHECK(imp_cobs_decode((const uint8_t[]){0x05, 0x11, 0x22}, 3, out, sizeof out, &n) ==
          IMP_ERR_COBS);
    CHECK(imp_cobs_decode((const uint8_t[]){0x03, 0x00, 0x22}, 3, out, sizeof out, &n) ==
          IMP_ERR_COBS);
    CHECK(imp_cobs_encode(in, 10, out, 5) == 0); /* too small: refused, not overrun */
}

/* Decode exactly one frame from a buffer through the streaming decoder. */
static imp_result decode_one(imp_decoder *d, const uint8_t *frame, size_t n, imp_message *m)
{
    size_t off = 0;
    imp_result r = IMP_RESULT_COUNT;
    while (off < n && r == IMP_RESULT_COUNT)
        off += imp_decoder_feed(d, frame + off, n - off, m, &r);
    return r;
}

static imp_decoder dec;
static uint8_t frame[IMP_MAX_FRAME];
static uint8_t stream[8 * IMP_MAX_FRAME];

static void fill_info(imp_device_info *d)
{
    memset(d, 0, sizeof *d);
    d->fw_major = 1, d->fw_minor = 2, d->fw_patch = 3;
    d->serial = 0x0123456789ABCDEFull;
    d->boot_id = 0xDEADBEEFu;
    d->rate_hz = 200;
    d->sensor_count = 12;
    d->flags = IMP_FLAG_MAG;
    d->accel_scale = 0.00239420166f;
    d->gyro_scale = 0.00106526446f;
    d->mag_scale = 0.0266666673f;
    d->accel_range = 78.4532f;
    d->gyro_range = 34.9065857f;
    d->mag_range = 800.0f;
    d->instants_per_frame = 8;
    d->rig_id_len = (uint8_t)strlen(strcpy(d->rig_id, "imusic11"));
    d->name_len = (uint8_t)strlen(strcpy(d->name, "imusic-wearable-\xc3\xa9t\xc3\xa9"));
}

static void test_roundtrip(void)
{
    imp_message m;
    imp_device_info info;
    fill_info(&info);
    size_t n = imp_encode_device_info(0xABCDEF01u, &info, frame, sizeof frame);
    CHECK(n > 0 && frame[0] == 0 && frame[n - 1] == 0);
    for (size_t i = 1; i + 1 < n; i++)
        CHECK(frame[i] != 0);
    imp_decoder_init(&dec);
    CHECK(decode_one(&dec, frame, n, &m) == IMP_OK);
    CHECK(m.type == IMP_DEVICE_INFO && m.device_id == 0xABCDEF01u);
    CHECK(m.u.info.serial == info.serial && m.u.info.boot_id == info.boot_id);
    CHECK(m.u.info.gyro_scale == info.gyro_scale && m.u.info.mag_range == info.mag_range);
    CHECK(strcmp(m.u.info.name, info.name) == 0 && strcmp(m.u.info.rig_id, "imusic11") == 0);

    /* SAMPLES with every block, values covering the int16 range. */
    enum { K = 3, S = 4 };
    uint8_t flags = IMP_FLAG_MAG | IMP_FLAG_QUAT;
    int16_t values[K * S * 13];
    uint32_t dt[K] = {0, 5000, 10001};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        values[i] = (int16_t)(rnd() & 0xFFFF);
    values[0] = INT16_MIN;
    values[1] = INT16_MAX;
    n = imp_encode_samples(7, 0xFFFFFFFEu, 123456789012ull, K, S, flags, dt, values, frame,
                           sizeof frame);
    CHECK(n > 0);
    CHECK(decode_one(&dec, frame, n, &m) == IMP_OK);
    CHECK(m.type == IMP_SAMPLES && m.u.samples.seq == 0xFFFFFFFEu);
    CHECK(m.u.samples.t0_us == 123456789012ull && m.u.samples.n_instants == K);
    bool same = true;
    for (unsigned i = 0; i < K; i++) {
        same &= imp_samples_dt(&m.u.samples, i) == dt[i];
        for (unsigned s = 0; s < S; s++) {
            imp_sensor_sample v;
            imp_samples_sensor(&m.u.samples, i, s, &v);
            const int16_t *w = values + (i * S + s) * 13;
            same &= memcmp(v.acc, w, 6) == 0 && memcmp(v.gyro, w + 3, 6) == 0 &&
                    memcmp(v.mag, w + 6, 6) == 0 && memcmp(v.quat, w + 9, 8) == 0;
        }
    }
    CHECK(same);

    imp_status st = {.t_us = 99, .battery_mv = 3870, .battery_pct = 55,
                     .temperature_cdeg = -1234, .sensor_errors = 1, .overruns = 2,
                     .tx_dropped = 0xFFFFFFFFu};
    n = imp_encode_status(1, &st, frame, sizeof frame);
    CHECK(decode_one(&dec, frame, n, &m) == IMP_OK && m.type == IMP_STATUS);
    CHECK(m.u.status.temperature_cdeg == -1234 && m.u.status.tx_dropped == 0xFFFFFFFFu);
    imp_event ev = {.t_us = 5, .kind = IMP_EVENT_TAP, .sensor = 10, .value = -7};
    n = imp_encode_event(1, &ev, frame, sizeof frame);
    CHECK(decode_one(&dec, frame, n, &m) == IMP_OK && m.u.event.value == -7);
    n = imp_encode_command(IMP_CMD_SET_RATE, 0, 400, frame, sizeof frame);
    CHECK(decode_one(&dec, frame, n, &m) == IMP_OK && m.u.rate_hz == 400);
    CHECK(dec.counters.frames_ok == 5);
    CHECK(imp_encode_command(0x99, 0, 0, frame, sizeof frame) == 0);
}

static void test_limits(void)
{
    /* 12 sensors with a magnetometer: 220 bytes per instant, 9 instants fit in 2048. */
    CHECK(imp_max_instants(12, IMP_FLAG_MAG) == 9);
    CHECK(imp_max_instants(1, 0) == 32);
    static int16_t values[32 * 12 * 13];
    static uint32_t dt[32];
    CHECK(imp_encode_samples(1, 0, 0, 9, 12, IMP_FLAG_MAG, dt, values, frame, sizeof frame) > 0);
    CHECK(imp_encode_samples(1, 0, 0, 10, 12, IMP_FLAG_MAG, dt, values, frame, sizeof frame) == 0);
    /* All-0xFF bodies make the longest stuffing: the worst case still fits IMP_MAX_FRAME. */
    static uint8_t body[IMP_MAX_BODY + 1];
    memset(body, 0xFF, sizeof body);
    size_t n = imp_encode_raw(0x7F, 0xFFFFFFFFu, body, IMP_MAX_BODY, frame, sizeof frame);
    CHECK(n > 0 && n <= IMP_MAX_FRAME);
    imp_message m;
    CHECK(decode_one(&dec, frame, n, &m) == IMP_ERR_TYPE);
    CHECK(imp_encode_raw(0x7F, 0, body, IMP_MAX_BODY + 1, frame, sizeof frame) == 0);
    /* An output buffer one byte short is refused, never overrun (ASan watches). */
    n = imp_encode_raw(0x01, 1, body, 100, frame, sizeof frame);
    CHECK(n > 0);
    for (size_t cap = 0; cap < n; cap++)
        CHECK(imp_encode_raw(0x01, 1, body, 100, frame, cap) == 0);
}

static void test_stream_resync(void)
{
    imp_decoder_init(&dec);
    size_t pos = 0;
    /* garbage, a good frame, a frame with a flipped bit, a good frame, an overlong run, a good
     * frame: the decoder finds the three good ones and counts the rest. */
    for (int i = 0; i < 37; i++)
        stream[pos++] = (uint8_t)(rnd() | 1);
    imp_event ev = {.t_us = 1, .kind = IMP_EVENT_TAP, .sensor = 2, .value = 3};
    size_t n = imp_encode_event(9, &ev, frame, sizeof frame);
    memcpy(stream + pos, frame, n);
    pos += n;
    memcpy(stream + pos, frame, n);
    stream[pos + 5] ^= 0x10;
    if (stream[pos + 5] == 0)
        stream[pos + 5] = 0x55;
    pos += n;
    memcpy(stream + pos, frame, n);
    pos += n;
    for (size_t i = 0; i < IMP_MAX_STUFFED + 10; i++)
        stream[pos++] = 0x42;
    memcpy(stream + pos, frame, n);
    pos += n;
    int good = 0;
    size_t off = 0;
    while (off < pos) {
        imp_message m;
        imp_result r;
        size_t step = 1 + rnd() % 17; /* arbitrary chunking */
        if (step > pos - off)
            step = pos - off;
        size_t used = 0;
        while (used < step) {
            used += imp_decoder_feed(&dec, stream + off + used, step - used, &m, &r);
            if (r == IMP_OK && m.type == IMP_EVENT && m.u.event.value == 3)
                good++;
        }
        off += step;
    }
    CHECK(good == 3);
    CHECK(dec.counters.frames_ok == 3);
    CHECK(dec.counters.overlong == 1);
    CHECK(dec.counters.crc_errors + dec.counters.cobs_errors + dec.counters.too_short >= 1);
    CHECK(dec.counters.bytes_in == pos);
}

static void test_mutation_fuzz(void)
{
    /* Random corruption of valid frames and pure noise: must never crash or read out of
     * bounds (the sanitizers watch), and every good frame decoded must carry a valid CRC. */
    imp_device_info info;
    fill_info(&info);
    imp_decoder_init(&dec);
    for (int round = 0; round < 3000; round++) {
        size_t n;
        if (round % 3 == 0) {
            n = imp_encode_device_info(rnd(), &info, frame, sizeof frame);
        } else {
            static int16_t values[9 * 12 * 9];
            uint32_t dt[9] = {0};
            n = imp_encode_samples(rnd(), rnd(), rnd(), 1 + rnd() % 9, 12, IMP_FLAG_MAG, dt,
                                   values, frame, sizeof frame);
        }
        int flips = (int)(rnd() % 4);
        for (int f = 0; f < flips && n > 0; f++)
            frame[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
        if (rnd() % 5 == 0 && n > 2)
            n = 1 + rnd() % (n - 1); /* truncation */
        size_t off = 0;
        while (off < n) {
            imp_message m;
            imp_result r;
            off += imp_decoder_feed(&dec, frame + off, n - off, &m, &r);
        }
    }
    imp_counters c = dec.counters;
    CHECK(c.frames_ok + c.cobs_errors + c.overlong + c.too_short + c.crc_errors +
              c.bad_version + c.unknown_type + c.bad_length + c.bad_field >
          0);
    CHECK(c.frames_ok > 0);
}

static void test_packer(void)
{
    static imd_packer p;
    static uint8_t out[IMD_PACKER_OUT_CAP];
    CHECK(!imd_packer_init(&p, 1, 12, IMP_FLAG_MAG, 10)); /* does not fit 2048 */
    CHECK(imd_packer_init(&p, 1, 2, 0, 4));
    int16_t v[12];
    imp_decoder_init(&dec);
    uint32_t seqs[16];
    int frames = 0;
    size_t total = 0;
    /* instants 0..5, then 7..9 (6 lost to an overrun), then a flush */
    const uint32_t seq_in[] = {0, 1, 2, 3, 4, 5, 7, 8, 9};
    for (size_t i = 0; i < sizeof seq_in / sizeof seq_in[0]; i++) {
        for (int k = 0; k < 12; k++)
            v[k] = (int16_t)(seq_in[i] * 100 + k);
        size_t n = imd_packer_add(&p, seq_in[i], 1000000ull + seq_in[i] * 10000ull, v, out, sizeof out);
        total += n;
        size_t off = 0;
        while (off < n) {
            imp_message m;
            imp_result r;
            off += imp_decoder_feed(&dec, out + off, n - off, &m, &r);
            if (r == IMP_OK) {
                seqs[frames++] = m.u.samples.seq;
                imp_sensor_sample s;
                imp_samples_sensor(&m.u.samples, m.u.samples.n_instants - 1, 1, &s);
                uint32_t last = m.u.samples.seq + m.u.samples.n_instants - 1;
                CHECK(s.acc[0] == (int16_t)(last * 100 + 6));
                CHECK(imp_samples_dt(&m.u.samples, m.u.samples.n_instants - 1) ==
                      (m.u.samples.n_instants - 1) * 10000u);
            }
        }
    }
    CHECK(frames == 2 && seqs[0] == 0 && seqs[1] == 4); /* [0..3], [4,5] closed by the gap */
    size_t n = imd_packer_flush(&p, out, sizeof out);
    imp_message m;
    CHECK(n > 0 && decode_one(&dec, out, n, &m) == IMP_OK);
    CHECK(m.u.samples.seq == 7 && m.u.samples.n_instants == 3);
    CHECK(imd_packer_flush(&p, out, sizeof out) == 0);
    CHECK(total > 0);
    /* seq wraps across 2^32 without splitting the frame */
    CHECK(imd_packer_init(&p, 1, 1, 0, 4));
    size_t w = 0;
    for (uint32_t s = 0xFFFFFFFEu, i = 0; i < 4; s++, i++)
        w += imd_packer_add(&p, s, 10 + i, v, out + w, sizeof out - w);
    CHECK(decode_one(&dec, out, w, &m) == IMP_OK && m.u.samples.n_instants == 4);
}

static void test_tap(void)
{
    imd_tap t;
    imp_event ev;
    const uint16_t rate = 200;
    imd_tap_init(&t, rate, 0, 10);
    int taps = 0;
    uint64_t tap_t = 0;
    int32_t tap_v = 0;
    for (int i = 0; i < 4 * rate; i++) {
        uint64_t t_us = (uint64_t)i * 5000u;
        /* gravity, a slow nod (0.5 Hz, +-2 m/s^2), small noise */
        float a[3] = {0.3f, 9.7f + 2.0f * sinf((float)i * 0.0157f), 0.5f};
        a[0] += 0.05f * (float)((int)(rnd() % 21) - 10) / 10.0f;
        if (i == 400 || i == 401)
            a[2] += i == 400 ? 35.0f : 20.0f; /* a 10 ms tap on the chin */
        if (i == 420)
            a[2] += 30.0f; /* a bounce 100 ms later: same tap (refractory) */
        if (imd_tap_feed(&t, t_us, a, &ev)) {
            taps++;
            tap_t = ev.t_us;
            tap_v = ev.value;
            CHECK(ev.kind == IMP_EVENT_TAP && ev.sensor == 10);
        }
    }
    CHECK(taps == 1);
    CHECK(tap_t == 400u * 5000u);
    CHECK(tap_v > 35000 && tap_v < 50000); /* |acc| at the peak in mm/s^2 */
    /* A long push (200 ms) is not a tap. */
    imd_tap_init(&t, rate, 0, 10);
    taps = 0;
    for (int i = 0; i < 400; i++) {
        float a[3] = {0.0f, 9.8f, (i >= 100 && i < 140) ? 25.0f : 0.0f};
        taps += imd_tap_feed(&t, (uint64_t)i * 5000u, a, &ev);
    }
    CHECK(taps == 0);
}

static void test_device(void)
{
    imp_device_info info;
    fill_info(&info);
    imd_device dev;
    imd_device_init(&dev, &info);
    static uint8_t out[IMP_MAX_FRAME];
    size_t len;
    imp_message m, reply;
    imp_decoder_init(&dec);
#define SEND(type, id, arg)                                                                    \
    (imp_encode_command((type), (id), (arg), frame, sizeof frame),                             \
     decode_one(&dec, frame, imp_encode_command((type), (id), (arg), frame, sizeof frame), &m))
    imp_result r = SEND(IMP_CMD_SET_RATE, 0, 500);
    CHECK(imd_handle(&dev, &m, r, out, sizeof out, &len) == IMD_ACTION_NONE);
    CHECK(decode_one(&dec, out, len, &reply) == IMP_OK && reply.type == IMP_ACK &&
          reply.u.ack.result == IMP_ACK_BAD_ARGUMENT && reply.u.ack.command == IMP_CMD_SET_RATE);
    r = SEND(IMP_CMD_SET_RATE, (uint32_t)info.serial, 100);
    imd_handle(&dev, &m, r, out, sizeof out, &len);
    CHECK(decode_one(&dec, out, len, &reply) == IMP_OK && reply.u.ack.result == IMP_ACK_OK);
    CHECK(dev.info.rate_hz == 100);
    r = SEND(IMP_CMD_START, 12345, 0); /* another device's command: silence */
    CHECK(imd_handle(&dev, &m, r, out, sizeof out, &len) == IMD_ACTION_NONE && len == 0);
    r = SEND(IMP_CMD_START, 0, 0);
    CHECK(imd_handle(&dev, &m, r, out, sizeof out, &len) == IMD_ACTION_START && dev.streaming);
    CHECK(dev.running_rate_hz == 100);
    r = SEND(IMP_CMD_SET_RATE, 0, 50); /* while streaming: for the next run */
    imd_handle(&dev, &m, r, out, sizeof out, &len);
    CHECK(dev.info.rate_hz == 50 && dev.running_rate_hz == 100);
    r = SEND(IMP_CMD_STOP, 0, 0);
    CHECK(imd_handle(&dev, &m, r, out, sizeof out, &len) == IMD_ACTION_STOP);
    r = SEND(IMP_CMD_START, 0, 0);
    CHECK(imd_handle(&dev, &m, r, out, sizeof out, &len) == IMD_ACTION_START &&
          dev.running_rate_hz == 50);
    r = SEND(IMP_CMD_GET_INFO, 0, 0);
    imd_handle(&dev, &m, r, out, sizeof out, &len);
    CHECK(decode_one(&dec, out, len, &reply) == IMP_OK && reply.type == IMP_DEVICE_INFO &&
          reply.u.info.rate_hz == 50 && reply.device_id == (uint32_t)info.serial);
    r = SEND(IMP_CMD_IDENTIFY, 0, 4);
    CHECK(imd_handle(&dev, &m, r, out, sizeof out, &len) == IMD_ACTION_IDENTIFY &&
          dev.identify_seconds == 4);
    /* an unknown command type, and a known one with a bad body */
    size_t n = imp_encode_raw(0x9A, 0, NULL, 0, frame, sizeof frame);
    r = decode_one(&dec, frame, n, &m);
    CHECK(r == IMP_ERR_TYPE);
    imd_handle(&dev, &m, r, out, sizeof out, &len);
    CHECK(decode_one(&dec, out, len, &reply) == IMP_OK && reply.u.ack.result == IMP_ACK_UNKNOWN &&
          reply.u.ack.command == 0x9A);
    n = imp_encode_raw(IMP_CMD_SET_RATE, 0, (const uint8_t[]){1}, 1, frame, sizeof frame);
    r = decode_one(&dec, frame, n, &m);
    imd_handle(&dev, &m, r, out, sizeof out, &len);
    CHECK(decode_one(&dec, out, len, &reply) == IMP_OK &&
          reply.u.ack.result == IMP_ACK_BAD_ARGUMENT);
#undef SEND
    CHECK(imd_battery_percent(0) == 255);
    CHECK(imd_battery_percent(4250) == 100 && imd_battery_percent(3200) == 0);
    CHECK(imd_battery_percent(3840) == 50);
    uint8_t prev = 0;
    bool monotonic = true;
    for (uint16_t mv = 3000; mv <= 4300; mv += 5) {
        uint8_t p = imd_battery_percent(mv);
        monotonic &= p >= prev;
        prev = p;
    }
    CHECK(monotonic);
}

static void test_datagrams(void)
{
    /* Frames of 600, 600 and 900 bytes: [600+600] then [900] within 1472. */
    static uint8_t buf[4000];
    static uint8_t body[2000];
    memset(body, 0x11, sizeof body);
    size_t sizes[3], n = 0;
    const size_t bodies[3] = {600 - 17, 600 - 17, 900 - 17};
    for (int i = 0; i < 3; i++) {
        sizes[i] = imp_encode_raw(0x7F, 1, body, bodies[i], buf + n, sizeof buf - n);
        n += sizes[i];
    }
    CHECK(sizes[0] + sizes[1] <= IMD_MAX_DATAGRAM &&
          sizes[0] + sizes[1] + sizes[2] > IMD_MAX_DATAGRAM);
    size_t a = imd_next_datagram(buf, n, IMD_MAX_DATAGRAM);
    CHECK(a == sizes[0] + sizes[1]);
    size_t b = imd_next_datagram(buf + a, n - a, IMD_MAX_DATAGRAM);
    CHECK(b == sizes[2]);
    /* A frame longer than max goes alone; everything that fits goes at once. */
    CHECK(imd_next_datagram(buf, n, 500) == sizes[0]);
    CHECK(imd_next_datagram(buf, n, n) == n);
    /* Every datagram cut from a stream decodes to whole frames only. */
    imp_decoder_init(&dec);
    for (size_t off = 0; off < n;) {
        size_t len = imd_next_datagram(buf + off, n - off, 1300);
        imp_decoder d2;
        imp_decoder_init(&d2);
        size_t used = 0;
        int frames = 0;
        while (used < len) {
            imp_message m;
            imp_result r;
            used += imp_decoder_feed(&d2, buf + off + used, len - used, &m, &r);
            frames += r == IMP_ERR_TYPE; /* type 0x7F: whole, checked, unknown */
        }
        CHECK(frames >= 1 && d2.len == 0);
        off += len;
    }
}

static void test_i2c_budget(void)
{
    CHECK(IMD_I2C_CLOCKS_PER_SITE == 242u);
    /* 12 sites on one 400 kHz bus: 7.26 ms of wire time per instant, too slow for 200 Hz */
    float one_bus = imd_i2c_instant_us(12, 400000, 0.0f);
    CHECK(one_bus > 7259.0f && one_bus < 7261.0f);
    CHECK(imd_i2c_max_rate_hz(12, 400000, 0.0f, 1.0f) == 137);
    /* 6 per bus on two buses, with driver overhead: 200 Hz fits, 400 Hz does not */
    uint16_t two = imd_i2c_max_rate_hz(6, 400000, IMD_I2C_OVERHEAD_US, IMD_I2C_MAX_LOAD);
    CHECK(two >= 200 && two < 400);
    CHECK(imd_i2c_max_rate_hz(1, 400000, 0.0f, 1.0f) == 400); /* capped */
    CHECK(imd_i2c_max_rate_hz(0, 400000, 0.0f, 1.0f) == 400);
    /* the device refuses a rate its buses cannot carry */
    imp_device_info info;
    fill_info(&info);
    imd_device dev;
    imd_device_init(&dev, &info);
    dev.max_rate_hz = two;
    static uint8_t out[IMP_MAX_FRAME];
    size_t len, n = imp_encode_command(IMP_CMD_SET_RATE, 0, 400, frame, sizeof frame);
    imp_message m, reply;
    imp_decoder_init(&dec);
    imp_result r = decode_one(&dec, frame, n, &m);
    imd_handle(&dev, &m, r, out, sizeof out, &len);
    CHECK(decode_one(&dec, out, len, &reply) == IMP_OK &&
          reply.u.ack.result == IMP_ACK_BAD_ARGUMENT && dev.info.rate_hz == 200);
}

static void test_no_gyro_layout(void)
{
    /* acc + quat, no gyro block: 7 values (14 bytes) per sensor, gyro reads as zeros. */
    const uint8_t flags = IMP_FLAG_QUAT | IMP_FLAG_NO_GYRO;
    CHECK(imp_values_per_sensor(flags) == 7 && imp_sensor_bytes(flags) == 14);
    CHECK(imp_values_per_sensor(IMP_FLAG_NO_GYRO) == 3);
    CHECK(imp_values_per_sensor(IMP_FLAGS_KNOWN) == 10);
    CHECK(imp_samples_body_size(2, 11, flags) == 15u + 2u * (4u + 11u * 14u));
    enum { K = 2, S = 3 };
    int16_t values[K * S * 7];
    uint32_t dt[K] = {0, 16667};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        values[i] = (int16_t)(rnd() & 0xFFFF);
    size_t n = imp_encode_samples(9, 41, 2000000, K, S, flags, dt, values, frame, sizeof frame);
    imp_message m;
    imp_decoder_init(&dec);
    CHECK(n > 0 && decode_one(&dec, frame, n, &m) == IMP_OK && m.u.samples.flags == flags);
    bool same = true;
    for (unsigned i = 0; i < K; i++)
        for (unsigned s = 0; s < S; s++) {
            imp_sensor_sample v;
            imp_samples_sensor(&m.u.samples, i, s, &v);
            const int16_t *w = values + (i * S + s) * 7;
            same &= memcmp(v.acc, w, 6) == 0 && memcmp(v.quat, w + 3, 8) == 0 &&
                    v.gyro[0] == 0 && v.gyro[1] == 0 && v.gyro[2] == 0;
        }
    CHECK(same);
    CHECK(imp_encode_samples(9, 41, 0, K, S, 0x08, dt, values, frame, sizeof frame) == 0);
}

/* Angle (rad) between the sensor's up direction as q says it and the true one. */
static float tilt_error(const imd_fusion *f, const float up[3])
{
    const float *q = f->q;
    float v[3] = {2 * (q[1] * q[3] - q[0] * q[2]), 2 * (q[2] * q[3] + q[0] * q[1]),
                  q[0] * q[0] - q[1] * q[1] - q[2] * q[2] + q[3] * q[3]};
    float c = v[0] * up[0] + v[1] * up[1] + v[2] * up[2];
    return acosf(c > 1.0f ? 1.0f : c < -1.0f ? -1.0f : c);
}

static void test_fusion(void)
{
    const float g = 9.80665f;
    imd_fusion f;
    /* At rest, tilted 30 deg about x: the first sample sets the tilt exactly. */
    const float up[3] = {0.0f, sinf(0.5235988f), cosf(0.5235988f)};
    const float acc[3] = {g * up[0], g * up[1], g * up[2]}, still[3] = {0.0f, 0.0f, 0.0f};
    imd_fusion_init(&f, 100, g, 0.0f, 0.0f);
    imd_fusion_update(&f, acc, still, NULL);
    CHECK(f.started && tilt_error(&f, up) < 1e-3f);
    /* A gyro bias of 0.02 rad/s about x: the correction holds the tilt and learns the bias. */
    const float biased[3] = {0.02f, 0.0f, 0.0f};
    for (int i = 0; i < 100 * 120; i++)
        imd_fusion_update(&f, acc, biased, NULL);
    CHECK(tilt_error(&f, up) < 0.01f);
    CHECK(fabsf(f.bias[0] + 0.02f) < 0.004f);
    /* Turning about the earth's vertical at 1 rad/s for 1 s, level: heading follows the gyro. */
    const float level[3] = {0.0f, 0.0f, g}, turn[3] = {0.0f, 0.0f, 1.0f};
    imd_fusion_init(&f, 200, g, 0.0f, 0.0f);
    imd_fusion_update(&f, level, still, NULL);
    for (int i = 0; i < 200; i++)
        imd_fusion_update(&f, level, turn, NULL);
    float yaw = 2.0f * atan2f(f.q[3], f.q[0]);
    CHECK(fabsf(yaw - 1.0f) < 0.01f);
    /* With a field the heading is north's: the sensor's x at 90 deg west of north is found. */
    const float field[3] = {0.0f, -20.0f, -40.0f}; /* north lies along the sensor's -y */
    imd_fusion_init(&f, 100, g, 0.0f, 0.0f);
    imd_fusion_update(&f, level, still, field);
    yaw = 2.0f * atan2f(f.q[3], f.q[0]);
    CHECK(fabsf(yaw - 1.5707963f) < 0.01f);
    /* And a heading knocked off by 0.37 rad comes back within 30 s (to 2 deg: the integral
     * term took some of the error for a bias and lets go of it slowly). */
    f.q[0] = cosf(0.6f), f.q[3] = sinf(0.6f); /* yaw 1.2 rad instead of ~1.571 */
    for (int i = 0; i < 100 * 30; i++)
        imd_fusion_update(&f, level, still, field);
    yaw = 2.0f * atan2f(f.q[3], f.q[0]);
    CHECK(fabsf(yaw - 1.5707963f) < 0.035f);
    /* Non-finite input is ignored; the Q14 form is the float one rounded. */
    const float bad[3] = {NAN, 0.0f, 0.0f};
    imd_fusion_update(&f, bad, still, NULL);
    int16_t q14[4];
    imd_fusion_q14(&f, q14);
    CHECK(isfinite(f.q[0]) && abs(q14[0] - (int)lrintf(f.q[0] * 16384.0f)) == 0);
}

int imp_selftest(void)
{
    test_i2c_budget();
    test_datagrams();
    test_crc();
    test_cobs();
    test_roundtrip();
    test_limits();
    test_stream_resync();
    test_mutation_fuzz();
    test_packer();
    test_tap();
    test_device();
    test_no_gyro_layout();
    test_fusion();
    printf("selftest: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
