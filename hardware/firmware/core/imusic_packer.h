/*
 * Packs sample instants into SAMPLES frames (portable C, host-tested).
 *
 * The sampler hands one instant at a time (sequence number, device time, int16 values in
 * wire order); the packer emits a frame when it holds instants_per_frame instants, and early
 * when the next instant cannot join the frame: a sequence gap (an overrun skipped an
 * instant: the wire's seq counts consecutive instants) or a time step that dt_us (u32) cannot
 * hold.
 */
#ifndef IMUSIC_PACKER_H
#define IMUSIC_PACKER_H

#include "imusic_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IMD_MAX_SENSORS 16u
#define IMD_MAX_VALUES_PER_SENSOR 13u
/* Room one imd_packer_add may need: the frame it closes early plus the frame it completes. */
#define IMD_PACKER_OUT_CAP (2u * IMP_MAX_FRAME)

typedef struct {
    uint32_t device_id;
    uint8_t n_sensors, flags, capacity;
    uint8_t count;     /* instants held */
    uint32_t seq0;     /* seq of the first held instant */
    uint64_t t0_us;    /* its device time */
    uint32_t dt_us[IMP_MAX_INSTANTS];
    int16_t values[IMP_MAX_INSTANTS * IMD_MAX_SENSORS * IMD_MAX_VALUES_PER_SENSOR];
    uint32_t frames; /* frames emitted */
} imd_packer;

/* false when the layout cannot fit a frame of instants_per_frame instants (use
 * imp_max_instants) or n_sensors / flags are out of range. */
bool imd_packer_init(imd_packer *p, uint32_t device_id, uint8_t n_sensors, uint8_t flags,
                     uint8_t instants_per_frame);

/* Add one instant (n_sensors * imp_values_per_sensor(flags) values). Writes zero, one or two
 * whole frames to out (cap >= IMD_PACKER_OUT_CAP) and returns how many bytes. */
size_t imd_packer_add(imd_packer *p, uint32_t seq, uint64_t t_us, const int16_t *values,
                      uint8_t *out, size_t cap);

/* Emit the instants held, if any (on STOP). Returns bytes written. */
size_t imd_packer_flush(imd_packer *p, uint8_t *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
