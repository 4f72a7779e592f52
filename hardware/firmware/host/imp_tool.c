/*
 * imp_tool: the portable C codec on the command line, for the cross-language tests
 * (tests/firmware) and for poking at captured byte streams.
 *
 *   imp_tool decode   < bytes    one JSON line per frame (message or error), then counters
 *   imp_tool encode   < lines    text message descriptions -> frame bytes on stdout
 *   imp_tool device   < bytes    act as a wearable's command handler: host frames in, answers out
 *   imp_tool selftest            the C unit tests (selftest.c)
 *   imp_tool wearable S [RATE]   the firmware's main loop on stdin/stdout (wearable_sim.c)
 *   imp_tool bench S FLAGS K N   time N encodes and decodes of a SAMPLES frame of K instants x
 *                                S sensors; prints one JSON line (benchmarks/bench_firmware.py)
 *   imp_tool fuse RATE < lines   the on-device fusion (core/imusic_fusion) on one sensor: each
 *                                line "ax ay az gx gy gz [mx my mz]" (m/s^2, rad/s, uT) -> one
 *                                line "w x y z" (floats) and the Q14 counts the wire carries
 *
 * encode lines (integers in decimal, floats as C strtod reads them, strings as hex or "-"):
 *   device_info DEVICE_ID MAJ MIN PATCH SERIAL BOOT_ID RATE SENSORS FLAGS ASCALE GSCALE MSCALE
 *               ARANGE GRANGE MRANGE INSTANTS RIG_ID_HEX NAME_HEX
 *   samples DEVICE_ID SEQ T0_US N_INSTANTS N_SENSORS FLAGS DT_US... VALUES...
 *   status DEVICE_ID T_US BATTERY_MV BATTERY_PCT TEMP_CDEG SENSOR_ERRORS OVERRUNS TX_DROPPED
 *   event DEVICE_ID T_US KIND SENSOR VALUE
 *   ack DEVICE_ID COMMAND RESULT
 *   cmd TYPE DEVICE_ID [ARG]
 *   raw TYPE DEVICE_ID BODY_HEX
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imusic_device.h"
#include "imusic_fusion.h"
#include "imusic_protocol.h"

int imp_selftest(void);                        /* selftest.c */
int imp_wearable_sim(int argc, char **argv);    /* wearable_sim.c */

/* ---- JSON output -------------------------------------------------------------------- */

static void json_str(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7F)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_float(float f)
{
    if (isnan(f))
        fputs("NaN", stdout);
    else if (isinf(f))
        fputs(f > 0 ? "Infinity" : "-Infinity", stdout);
    else
        printf("%.9g", (double)f); /* 9 significant digits round-trip a float32 */
}

static void json_block(const imp_samples *s, const char *name, int which, int axes)
{
    printf(",\"%s\":[", name);
    for (unsigned i = 0; i < s->n_instants; i++) {
        printf(i ? ",[" : "[");
        for (unsigned k = 0; k < s->n_sensors; k++) {
            imp_sensor_sample v;
            imp_samples_sensor(s, i, k, &v);
            const int16_t *p = which == 0 ? v.acc : which == 1 ? v.gyro : which == 2 ? v.mag : v.quat;
            printf(k ? ",[" : "[");
            for (int a = 0; a < axes; a++)
                printf(a ? ",%d" : "%d", p[a]);
            putchar(']');
        }
        putchar(']');
    }
    putchar(']');
}

static void print_message(const imp_message *m)
{
    printf("{\"device_id\":%u", (unsigned)m->device_id);
    switch (m->type) {
    case IMP_DEVICE_INFO: {
        const imp_device_info *d = &m->u.info;
        printf(",\"type\":\"DEVICE_INFO\",\"fw_version\":[%u,%u,%u],\"serial\":%llu,"
               "\"boot_id\":%u,\"rate_hz\":%u,\"sensor_count\":%u,\"flags\":%u",
               d->fw_major, d->fw_minor, d->fw_patch, (unsigned long long)d->serial,
               (unsigned)d->boot_id, d->rate_hz, d->sensor_count, d->flags);
        const char *names[6] = {"accel_scale", "gyro_scale", "mag_scale",
                                "accel_range", "gyro_range", "mag_range"};
        const float vals[6] = {d->accel_scale, d->gyro_scale, d->mag_scale,
                               d->accel_range, d->gyro_range, d->mag_range};
        for (int i = 0; i < 6; i++) {
            printf(",\"%s\":", names[i]);
            json_float(vals[i]);
        }
        printf(",\"instants_per_frame\":%u,\"rig_id\":", d->instants_per_frame);
        json_str(d->rig_id, d->rig_id_len);
        printf(",\"name\":");
        json_str(d->name, d->name_len);
        break;
    }
    case IMP_SAMPLES: {
        const imp_samples *s = &m->u.samples;
        printf(",\"type\":\"SAMPLES\",\"seq\":%u,\"t0_us\":%llu,\"n_instants\":%u,"
               "\"n_sensors\":%u,\"flags\":%u,\"dt_us\":[",
               (unsigned)s->seq, (unsigned long long)s->t0_us, s->n_instants, s->n_sensors,
               s->flags);
        for (unsigned i = 0; i < s->n_instants; i++)
            printf(i ? ",%u" : "%u", (unsigned)imp_samples_dt(s, i));
        putchar(']');
        json_block(s, "acc", 0, 3);
        if (!(s->flags & IMP_FLAG_NO_GYRO))
            json_block(s, "gyro", 1, 3);
        if (s->flags & IMP_FLAG_MAG)
            json_block(s, "mag", 2, 3);
        if (s->flags & IMP_FLAG_QUAT)
            json_block(s, "quat", 3, 4);
        break;
    }
    case IMP_STATUS: {
        const imp_status *s = &m->u.status;
        printf(",\"type\":\"STATUS\",\"t_us\":%llu,\"battery_mv\":%u,\"battery_pct\":%u,"
               "\"temperature_cdeg\":%d,\"sensor_errors\":%u,\"overruns\":%u,\"tx_dropped\":%u",
               (unsigned long long)s->t_us, s->battery_mv, s->battery_pct, s->temperature_cdeg,
               (unsigned)s->sensor_errors, (unsigned)s->overruns, (unsigned)s->tx_dropped);
        break;
    }
    case IMP_EVENT:
        printf(",\"type\":\"EVENT\",\"t_us\":%llu,\"kind\":%u,\"sensor\":%u,\"value\":%d",
               (unsigned long long)m->u.event.t_us, m->u.event.kind, m->u.event.sensor,
               (int)m->u.event.value);
        break;
    case IMP_ACK:
        printf(",\"type\":\"ACK\",\"command\":%u,\"result\":%u", m->u.ack.command,
               m->u.ack.result);
        break;
    case IMP_CMD_START:
        printf(",\"type\":\"CMD_START\"");
        break;
    case IMP_CMD_STOP:
        printf(",\"type\":\"CMD_STOP\"");
        break;
    case IMP_CMD_GET_INFO:
        printf(",\"type\":\"CMD_GET_INFO\"");
        break;
    case IMP_CMD_SET_RATE:
        printf(",\"type\":\"CMD_SET_RATE\",\"rate_hz\":%u", m->u.rate_hz);
        break;
    case IMP_CMD_IDENTIFY:
        printf(",\"type\":\"CMD_IDENTIFY\",\"seconds\":%u", m->u.seconds);
        break;
    default:
        break;
    }
    puts("}");
}

static void print_counters(const imp_counters *c)
{
    printf("{\"counters\":{\"bytes\":%llu,\"frames\":%u,\"cobs_errors\":%u,\"overlong\":%u,"
           "\"truncated\":%u,\"crc_errors\":%u,\"bad_version\":%u,\"unknown_type\":%u,"
           "\"malformed\":%u,\"bytes_dropped\":%llu}}\n",
           (unsigned long long)c->bytes_in, (unsigned)c->frames_ok, (unsigned)c->cobs_errors,
           (unsigned)c->overlong, (unsigned)c->too_short, (unsigned)c->crc_errors,
           (unsigned)c->bad_version, (unsigned)c->unknown_type,
           (unsigned)(c->bad_length + c->bad_field), (unsigned long long)c->bytes_dropped);
}

/* ---- decode ------------------------------------------------------------------------- */

static imp_decoder decoder; /* ~2 KiB: static, not on the stack */

static int cmd_decode(void)
{
    imp_decoder_init(&decoder);
    uint8_t chunk[509]; /* an odd size, so frames straddle reads */
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        size_t off = 0;
        while (off < n) {
            imp_message msg;
            imp_result r;
            off += imp_decoder_feed(&decoder, chunk + off, n - off, &msg, &r);
            if (r == IMP_OK)
                print_message(&msg);
            else if (r != IMP_RESULT_COUNT)
                printf("{\"error\":\"%s\"}\n", imp_result_name(r));
        }
    }
    print_counters(&decoder.counters);
    return ferror(stdin) ? 1 : 0;
}

/* ---- device ------------------------------------------------------------------------- */

static int cmd_device(void)
{
    imp_device_info info;
    memset(&info, 0, sizeof info);
    info.fw_major = 1;
    info.serial = 0xE5A1000000003FA2ull;
    info.boot_id = 0x1234ABCDu;
    info.rate_hz = 100;
    info.sensor_count = 12;
    info.flags = IMP_FLAG_MAG;
    info.accel_scale = 9.80665f / 4096.0f;
    info.gyro_scale = 0.0174532925f / 16.0f;
    info.mag_scale = 100.0f / 3750.0f;
    info.accel_range = 8.0f * 9.80665f;
    info.gyro_range = 2048.0f * 0.0174532925f;
    info.mag_range = 800.0f;
    info.instants_per_frame = 5;
    info.rig_id_len = (uint8_t)strlen(strcpy(info.rig_id, "imusic11"));
    info.name_len = (uint8_t)strlen(strcpy(info.name, "imusic-wearable-3fa2"));
    static imd_device dev;
    imd_device_init(&dev, &info);
    imp_decoder_init(&decoder);
    static uint8_t out[IMP_MAX_FRAME];
    uint8_t chunk[256];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        size_t off = 0;
        while (off < n) {
            imp_message msg;
            imp_result r;
            off += imp_decoder_feed(&decoder, chunk + off, n - off, &msg, &r);
            if (r == IMP_RESULT_COUNT)
                continue;
            size_t len = 0;
            imd_action a = imd_handle(&dev, &msg, r, out, sizeof out, &len);
            fwrite(out, 1, len, stdout);
            fprintf(stderr, "action %d streaming %d rate %u\n", (int)a, dev.streaming,
                    dev.info.rate_hz);
        }
    }
    return 0;
}

/* ---- encode ------------------------------------------------------------------------- */

static const char *lineno_ctx;

static int fail(const char *what)
{
    fprintf(stderr, "imp_tool encode: %s in line: %s\n", what, lineno_ctx);
    return 2;
}

static bool next_u64(char **save, unsigned long long max, unsigned long long *v)
{
    char *tok = strtok_r(NULL, " \t\r\n", save);
    if (!tok)
        return false;
    errno = 0;
    char *end;
    *v = strtoull(tok, &end, 0);
    return !errno && *end == '\0' && *v <= max && tok[0] != '-';
}

static bool next_i64(char **save, long long min, long long max, long long *v)
{
    char *tok = strtok_r(NULL, " \t\r\n", save);
    if (!tok)
        return false;
    errno = 0;
    char *end;
    *v = strtoll(tok, &end, 0);
    return !errno && *end == '\0' && *v >= min && *v <= max;
}

static bool next_f32(char **save, float *v)
{
    char *tok = strtok_r(NULL, " \t\r\n", save);
    if (!tok)
        return false;
    char *end;
    *v = (float)strtod(tok, &end); /* a float32 value printed exactly round-trips */
    return *end == '\0';
}

static bool next_hex(char **save, uint8_t *dst, size_t cap, size_t *n)
{
    char *tok = strtok_r(NULL, " \t\r\n", save);
    if (!tok)
        return false;
    *n = 0;
    if (strcmp(tok, "-") == 0)
        return true;
    size_t len = strlen(tok);
    if (len % 2 || len / 2 > cap)
        return false;
    for (size_t i = 0; i < len; i += 2) {
        unsigned b;
        if (sscanf(tok + i, "%2x", &b) != 1)
            return false;
        dst[(*n)++] = (uint8_t)b;
    }
    return true;
}

#define U(var, max)                                                                            \
    do {                                                                                       \
        unsigned long long _v;                                                                 \
        if (!next_u64(&save, (max), &_v))                                                      \
            return fail("bad or missing field " #var);                                         \
        var = _v;                                                                              \
    } while (0)

static int16_t enc_values[IMP_MAX_INSTANTS * 255 * 13];
static uint8_t enc_out[IMP_MAX_FRAME];

static int encode_line(char *line)
{
    char *save = NULL;
    char *kind = strtok_r(line, " \t\r\n", &save);
    if (!kind || kind[0] == '#')
        return 0;
    size_t n = 0;
    unsigned long long device_id;
    U(device_id, 0xFFFFFFFFull);
    if (strcmp(kind, "device_info") == 0) {
        static imp_device_info d;
        memset(&d, 0, sizeof d);
        U(d.fw_major, 255);
        U(d.fw_minor, 255);
        U(d.fw_patch, 255);
        U(d.serial, ~0ull);
        U(d.boot_id, 0xFFFFFFFFull);
        U(d.rate_hz, 0xFFFF);
        U(d.sensor_count, 255);
        U(d.flags, 255);
        float *f[6] = {&d.accel_scale, &d.gyro_scale, &d.mag_scale,
                       &d.accel_range, &d.gyro_range, &d.mag_range};
        for (int i = 0; i < 6; i++)
            if (!next_f32(&save, f[i]))
                return fail("bad float");
        U(d.instants_per_frame, 255);
        size_t len;
        if (!next_hex(&save, (uint8_t *)d.rig_id, 255, &len))
            return fail("bad rig_id hex");
        d.rig_id_len = (uint8_t)len;
        if (!next_hex(&save, (uint8_t *)d.name, 255, &len))
            return fail("bad name hex");
        d.name_len = (uint8_t)len;
        n = imp_encode_device_info((uint32_t)device_id, &d, enc_out, sizeof enc_out);
    } else if (strcmp(kind, "samples") == 0) {
        uint32_t seq;
        uint64_t t0;
        uint8_t k, s, flags;
        U(seq, 0xFFFFFFFFull);
        U(t0, ~0ull);
        U(k, IMP_MAX_INSTANTS);
        U(s, 255);
        U(flags, IMP_FLAGS_KNOWN);
        uint32_t dt[IMP_MAX_INSTANTS];
        for (unsigned i = 0; i < k; i++)
            U(dt[i], 0xFFFFFFFFull);
        size_t count = (size_t)k * s * imp_values_per_sensor(flags);
        for (size_t i = 0; i < count; i++) {
            long long v;
            if (!next_i64(&save, -32768, 32767, &v))
                return fail("bad or missing int16 value");
            enc_values[i] = (int16_t)v;
        }
        n = imp_encode_samples((uint32_t)device_id, seq, t0, k, s, flags, dt, enc_values, enc_out,
                               sizeof enc_out);
    } else if (strcmp(kind, "status") == 0) {
        imp_status m;
        long long temp;
        U(m.t_us, ~0ull);
        U(m.battery_mv, 0xFFFF);
        U(m.battery_pct, 255);
        if (!next_i64(&save, -32768, 32767, &temp))
            return fail("bad temperature");
        m.temperature_cdeg = (int16_t)temp;
        U(m.sensor_errors, 0xFFFFFFFFull);
        U(m.overruns, 0xFFFFFFFFull);
        U(m.tx_dropped, 0xFFFFFFFFull);
        n = imp_encode_status((uint32_t)device_id, &m, enc_out, sizeof enc_out);
    } else if (strcmp(kind, "event") == 0) {
        imp_event m;
        long long v;
        U(m.t_us, ~0ull);
        U(m.kind, 255);
        U(m.sensor, 255);
        if (!next_i64(&save, INT32_MIN, INT32_MAX, &v))
            return fail("bad event value");
        m.value = (int32_t)v;
        n = imp_encode_event((uint32_t)device_id, &m, enc_out, sizeof enc_out);
    } else if (strcmp(kind, "ack") == 0) {
        uint8_t c, r;
        U(c, 255);
        U(r, 255);
        n = imp_encode_ack((uint32_t)device_id, c, r, enc_out, sizeof enc_out);
    } else if (strcmp(kind, "cmd") == 0) {
        /* cmd TYPE DEVICE_ID [ARG]: the type came first as "device_id" above. */
        uint8_t type = (uint8_t)device_id;
        unsigned long long id, arg = 0;
        if (device_id > 255 || !next_u64(&save, 0xFFFFFFFFull, &id))
            return fail("bad command type or device id");
        if (type == IMP_CMD_SET_RATE || type == IMP_CMD_IDENTIFY)
            U(arg, 0xFFFF);
        n = imp_encode_command(type, (uint32_t)id, (uint16_t)arg, enc_out, sizeof enc_out);
    } else if (strcmp(kind, "raw") == 0) {
        uint8_t type = (uint8_t)device_id;
        unsigned long long id;
        static uint8_t body[IMP_MAX_PACKET];
        size_t len;
        if (device_id > 255 || !next_u64(&save, 0xFFFFFFFFull, &id))
            return fail("bad raw type or device id");
        if (!next_hex(&save, body, sizeof body, &len))
            return fail("bad body hex");
        n = imp_encode_raw(type, (uint32_t)id, body, len, enc_out, sizeof enc_out);
    } else {
        return fail("unknown message kind");
    }
    if (strtok_r(NULL, " \t\r\n", &save))
        return fail("trailing fields");
    if (n == 0)
        return fail("message does not fit a frame (too long or a field out of range)");
    fwrite(enc_out, 1, n, stdout);
    return 0;
}

static int cmd_encode(void)
{
    static char line[1 << 20];
    static char copy[1 << 20];
    while (fgets(line, sizeof line, stdin)) {
        memcpy(copy, line, sizeof copy);
        copy[strcspn(copy, "\n")] = '\0';
        lineno_ctx = copy;
        int rc = encode_line(line);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- bench ------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmd_bench(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: imp_tool bench SENSORS FLAGS INSTANTS ITERATIONS\n");
        return 2;
    }
    const uint8_t s = (uint8_t)atoi(argv[2]), flags = (uint8_t)atoi(argv[3]);
    const uint8_t k = (uint8_t)atoi(argv[4]);
    const long iters = atol(argv[5]);
    uint32_t dt[IMP_MAX_INSTANTS];
    uint32_t x = 12345;
    size_t count = (size_t)k * s * imp_values_per_sensor(flags);
    for (size_t i = 0; i < count; i++) { /* realistic small counts: few zero bytes */
        x = x * 1664525u + 1013904223u;
        enc_values[i] = (int16_t)((x >> 16) % 4001) - 2000;
    }
    for (unsigned i = 0; i < k; i++)
        dt[i] = i * 5000u;
    size_t n = 0;
    volatile size_t sink = 0;
    double t = now_s();
    for (long it = 0; it < iters; it++) {
        n = imp_encode_samples(1, (uint32_t)it, 1000000, k, s, flags, dt, enc_values, enc_out,
                               sizeof enc_out);
        sink += n;
    }
    const double enc = (now_s() - t) / (double)iters;
    if (n == 0) {
        fprintf(stderr, "imp_tool bench: %u instants x %u sensors do not fit a frame\n", k, s);
        return 2;
    }
    imp_decoder_init(&decoder);
    long good = 0;
    t = now_s();
    for (long it = 0; it < iters; it++) {
        size_t off = 0;
        while (off < n) {
            imp_message m;
            imp_result r;
            off += imp_decoder_feed(&decoder, enc_out + off, n - off, &m, &r);
            if (r == IMP_OK) {
                imp_sensor_sample v;
                imp_samples_sensor(&m.u.samples, (unsigned)k - 1u, (unsigned)s - 1u, &v);
                sink += (size_t)v.acc[0];
                good++;
            }
        }
    }
    const double dec = (now_s() - t) / (double)iters;
    printf("{\"sensors\":%u,\"flags\":%u,\"instants\":%u,\"frame_bytes\":%zu,"
           "\"encode_us\":%.4f,\"decode_us\":%.4f,\"decoded\":%ld,\"iterations\":%ld}\n",
           s, flags, k, n, enc * 1e6, dec * 1e6, good, iters);
    (void)sink;
    return good == iters ? 0 : 1;
}

/* ---- fuse -------------------------------------------------------------------------- */

static int cmd_fuse(int argc, char **argv)
{
    if (argc != 3 || atoi(argv[2]) < 1 || atoi(argv[2]) > 65535) {
        fprintf(stderr, "usage: imp_tool fuse RATE_HZ < lines of 6 or 9 floats\n");
        return 2;
    }
    imd_fusion f;
    imd_fusion_init(&f, (uint16_t)atoi(argv[2]), 9.80665f, 0.0f, 0.0f);
    char line[512];
    long lineno = 0;
    while (fgets(line, sizeof line, stdin) != NULL) {
        lineno++;
        float v[9];
        int n = sscanf(line, "%f %f %f %f %f %f %f %f %f", &v[0], &v[1], &v[2], &v[3], &v[4],
                       &v[5], &v[6], &v[7], &v[8]);
        if (n != 6 && n != 9) {
            fprintf(stderr, "imp_tool fuse: line %ld: 6 or 9 numbers wanted, got %d\n", lineno,
                    n);
            return 2;
        }
        imd_fusion_update(&f, v, v + 3, n == 9 ? v + 6 : NULL);
        int16_t q[4];
        imd_fusion_q14(&f, q);
        printf("%.7f %.7f %.7f %.7f %d %d %d %d\n", (double)f.q[0], (double)f.q[1],
               (double)f.q[2], (double)f.q[3], q[0], q[1], q[2], q[3]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "decode") == 0)
        return cmd_decode();
    if (strcmp(mode, "encode") == 0)
        return cmd_encode();
    if (strcmp(mode, "device") == 0)
        return cmd_device();
    if (strcmp(mode, "selftest") == 0)
        return imp_selftest();
    if (strcmp(mode, "bench") == 0)
        return cmd_bench(argc, argv);
    if (strcmp(mode, "wearable") == 0)
        return imp_wearable_sim(argc, argv);
    if (strcmp(mode, "fuse") == 0)
        return cmd_fuse(argc, argv);
    fprintf(stderr, "usage: %s decode|encode|device|wearable|selftest|bench|fuse (see imp_tool.c)\n",
            argv[0]);
    return 2;
}
