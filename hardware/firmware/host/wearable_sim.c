/*
 * `imp_tool wearable SENSORS [RATE_HZ]`: the firmware's main loop (esp32s3/main/main.c) ported
 * to a POSIX host, on stdin/stdout (give it a pty master or a socket). It runs the same
 * portable code as the ESP32 (imd_device for commands, imd_packer for frames, imd_tap for
 * taps, the codec) with a synthetic sensor in place of the I2C buses and the monotonic clock
 * in place of the gptimer, so that the host stack (firmware_bridge) can be tested against the
 * firmware's own logic over a real serial line.
 *
 * Synthetic counts, site s, axis k (0..8: acc xyz, gyro xyz, mag xyz), instant seq:
 *     ((seq * 31 + s * 97 + k * 13) % 4001) - 2000
 * except the tap site's acc z at the 50th and 51st instant after each START: +30000 (a tap).
 * STATUS every second (3900 mV, 31.00 degC); DEVICE_INFO and EVENT booted at start-up.
 * Exits when stdin closes.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imusic_device.h"
#include "imusic_packer.h"
#include "imusic_protocol.h"
#include "imusic_tap.h"

int imp_wearable_sim(int argc, char **argv);

static uint64_t boot_ns;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec - boot_ns) / 1000u;
}

static int write_all(const uint8_t *d, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, d, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        d += w;
        n -= (size_t)w;
    }
    return 0;
}

static int16_t imp_sim_count(uint32_t seq, unsigned site, unsigned axis)
{
    return (int16_t)((int32_t)((seq * 31u + site * 97u + axis * 13u) % 4001u) - 2000);
}

int imp_wearable_sim(int argc, char **argv)
{
    const int sensors = argc > 2 ? atoi(argv[2]) : 12;
    const int rate0 = argc > 3 ? atoi(argv[3]) : 100;
    if (sensors < 1 || sensors > (int)IMD_MAX_SENSORS || rate0 < 25 || rate0 > 400) {
        fprintf(stderr, "usage: imp_tool wearable SENSORS(1..%u) [RATE_HZ 25..400]\n",
                IMD_MAX_SENSORS);
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    boot_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;

    imp_device_info info;
    memset(&info, 0, sizeof info);
    info.fw_major = 1;
    info.serial = 0xE5A1000000000000ull | 0xC0FFEE3FA2ull;
    info.boot_id = (uint32_t)(boot_ns ^ (uint64_t)getpid()) | 1u;
    info.rate_hz = (uint16_t)rate0;
    info.sensor_count = (uint8_t)sensors;
    info.flags = IMP_FLAG_MAG;
    info.accel_scale = 9.80665f / 8192.0f; /* as the firmware: +-4 g */
    info.gyro_scale = 0.017453292519943295f / 64.0f;
    info.mag_scale = 100.0f / 3750.0f;
    info.accel_range = 4.0f * 9.80665f;
    info.gyro_range = 512.0f * 0.017453292519943295f;
    info.mag_range = 800.0f;
    info.instants_per_frame = 4;
    const char *rig = sensors == 12 ? "imusic11" : sensors == 6 ? "imusic6" : "custom";
    info.rig_id_len = (uint8_t)strlen(strcpy(info.rig_id, rig));
    info.name_len = (uint8_t)strlen(strcpy(info.name, "imusic-wearable-3fa2"));
    const uint8_t tap_site = sensors == 12 ? 10 : sensors == 6 ? 4 : 0; /* mentalis */

    static imd_device dev;
    static imd_packer packer;
    static imd_tap tap;
    static imp_decoder decoder;
    static uint8_t out[IMD_PACKER_OUT_CAP];
    imd_device_init(&dev, &info);
    imp_decoder_init(&decoder);

    size_t n = imp_encode_device_info(dev.device_id, &dev.info, out, sizeof out);
    const imp_event booted = {.t_us = now_us(), .kind = IMP_EVENT_BOOTED, .sensor = IMP_NO_SENSOR};
    n += imp_encode_event(dev.device_id, &booted, out + n, sizeof out - n);
    if (write_all(out, n))
        return 1;

    uint32_t seq = 0, since_start = 0;
    uint64_t next_tick = 0, period = 0, next_status = now_us() + 1000000u;
    int16_t values[IMD_MAX_SENSORS * 9];
    for (;;) {
        uint64_t t = now_us();
        uint64_t due = next_status;
        if (dev.streaming && next_tick < due)
            due = next_tick;
        int timeout_ms = due > t ? (int)((due - t) / 1000u) : 0;
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int pr = poll(&p, 1, timeout_ms);
        if (pr < 0 && errno != EINTR)
            return 1;
        if (pr > 0 && (p.revents & POLLIN)) {
            uint8_t buf[256];
            ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
            if (got <= 0)
                return 0; /* the host side closed */
            for (size_t off = 0; off < (size_t)got;) {
                imp_message msg;
                imp_result r;
                off += imp_decoder_feed(&decoder, buf + off, (size_t)got - off, &msg, &r);
                if (r == IMP_RESULT_COUNT)
                    continue;
                size_t len = 0;
                imd_action a = imd_handle(&dev, &msg, r, out, sizeof out, &len);
                if (a == IMD_ACTION_START) {
                    size_t held = imd_packer_flush(&packer, out + len, sizeof out - len);
                    len += held;
                    imd_packer_init(&packer, dev.device_id, dev.info.sensor_count,
                                    dev.info.flags, dev.info.instants_per_frame);
                    imd_tap_init(&tap, dev.running_rate_hz, 0, tap_site);
                    period = 1000000u / dev.running_rate_hz;
                    next_tick = now_us();
                    since_start = 0;
                } else if (a == IMD_ACTION_STOP) {
                    len += imd_packer_flush(&packer, out + len, sizeof out - len);
                }
                if (write_all(out, len))
                    return 1;
            }
        } else if (pr > 0 && (p.revents & (POLLHUP | POLLERR))) {
            return 0;
        }
        t = now_us();
        while (dev.streaming && next_tick <= t) {
            for (int s = 0; s < sensors; s++)
                for (unsigned k = 0; k < 9; k++)
                    values[s * 9 + k] = imp_sim_count(seq, (unsigned)s, k);
            if (since_start == 50 || since_start == 51)
                values[tap_site * 9 + 2] = 30000;
            const int16_t *a = &values[tap_site * 9];
            const float acc[3] = {a[0] * info.accel_scale, a[1] * info.accel_scale,
                                  a[2] * info.accel_scale};
            imp_event ev;
            bool tapped = imd_tap_feed(&tap, next_tick, acc, &ev);
            size_t len = imd_packer_add(&packer, seq, next_tick, values, out, sizeof out);
            if (tapped)
                len += imp_encode_event(dev.device_id, &ev, out + len, sizeof out - len);
            if (write_all(out, len))
                return 1;
            seq++;
            since_start++;
            next_tick += period;
        }
        if (t >= next_status) {
            const imp_status st = {.t_us = t, .battery_mv = 3900,
                                   .battery_pct = imd_battery_percent(3900),
                                   .temperature_cdeg = 3100};
            size_t len = imp_encode_status(dev.device_id, &st, out, sizeof out);
            if (write_all(out, len))
                return 1;
            next_status += 1000000u;
        }
    }
}
