/*
 * On-device orientation fusion for one sensor (portable C, host-tested): a complementary
 * filter of the Mahony kind (gyro integration pulled toward gravity, and toward magnetic
 * north when a field is given, by a proportional-integral correction).
 *
 * Output: a unit quaternion w, x, y, z, the sensor-to-earth rotation (v_earth = q v q*) in an
 * earth frame x north, y west, z up (NWU), as PROTOCOL.md's quat block wants it. Without a
 * magnetometer the heading starts at 0 and drifts with the gyro bias. Inputs: specific force
 * (any unit: only its direction is used), angular rate in rad/s, field (any unit) or NULL,
 * all in the sensor frame. The first accelerometer sample sets the tilt (heading 0, or from
 * the field), so there is no slow start-up.
 */
#ifndef IMUSIC_FUSION_H
#define IMUSIC_FUSION_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMD_FUSION_KP 1.0f       /* proportional gain (rad/s per unit error) */
#define IMD_FUSION_KI 0.02f      /* integral gain: learns a gyro bias slowly */
#define IMD_FUSION_ACC_TOL 0.25f /* |acc| further than this fraction from 1 g: no tilt update */

typedef struct {
    float q[4];       /* w, x, y, z */
    float bias[3];    /* integral term: the learnt gyro bias (rad/s, negated) */
    float kp, ki, dt; /* gains and sample period (s) */
    float g_norm;     /* |acc| at rest, in the caller's unit (9.80665 for m/s^2) */
    bool started;
} imd_fusion;

/* rate_hz: sample rate; g_norm: gravity in the accelerometer's unit; kp, ki <= 0 take the
 * defaults above. */
void imd_fusion_init(imd_fusion *f, uint16_t rate_hz, float g_norm, float kp, float ki);

/* One sample. mag may be NULL (no magnetometer). Non-finite input is ignored. */
void imd_fusion_update(imd_fusion *f, const float acc[3], const float gyro[3], const float *mag);

/* The quaternion as the wire carries it: int16, 16384 = 1.0 (PROTOCOL.md). */
void imd_fusion_q14(const imd_fusion *f, int16_t out[4]);

#ifdef __cplusplus
}
#endif

#endif
