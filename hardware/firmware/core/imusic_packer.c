/* Packs sample instants into SAMPLES frames: see imusic_packer.h. */
#include "imusic_packer.h"

#include <string.h>

bool imd_packer_init(imd_packer *p, uint32_t device_id, uint8_t n_sensors, uint8_t flags,
                     uint8_t instants_per_frame)
{
    memset(p, 0, sizeof *p);
    if (n_sensors < 1 || n_sensors > IMD_MAX_SENSORS || (flags & ~IMP_FLAGS_KNOWN) ||
        instants_per_frame < 1 || instants_per_frame > imp_max_instants(n_sensors, flags))
        return false;
    p->device_id = device_id;
    p->n_sensors = n_sensors;
    p->flags = flags;
    p->capacity = instants_per_frame;
    return true;
}

size_t imd_packer_flush(imd_packer *p, uint8_t *out, size_t cap)
{
    if (p->count == 0)
        return 0;
    size_t n = imp_encode_samples(p->device_id, p->seq0, p->t0_us, p->count, p->n_sensors,
                                  p->flags, p->dt_us, p->values, out, cap);
    p->count = 0;
    if (n)
        p->frames++;
    return n;
}

size_t imd_packer_add(imd_packer *p, uint32_t seq, uint64_t t_us, const int16_t *values,
                      uint8_t *out, size_t cap)
{
    size_t written = 0;
    if (p->count > 0) {
        bool contiguous = seq == (uint32_t)(p->seq0 + p->count); /* wraps like the wire */
        bool fits = t_us >= p->t0_us && t_us - p->t0_us <= UINT32_MAX;
        if (!contiguous || !fits)
            written = imd_packer_flush(p, out, cap);
    }
    if (p->count == 0) {
        p->seq0 = seq;
        p->t0_us = t_us;
    }
    size_t per_instant = (size_t)p->n_sensors * imp_values_per_sensor(p->flags);
    p->dt_us[p->count] = (uint32_t)(t_us - p->t0_us);
    memcpy(p->values + (size_t)p->count * per_instant, values, per_instant * sizeof(int16_t));
    p->count++;
    if (p->count == p->capacity)
        written += imd_packer_flush(p, out + written, cap - written);
    return written;
}
