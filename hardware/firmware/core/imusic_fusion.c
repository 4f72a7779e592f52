/* On-device orientation fusion: see imusic_fusion.h. */
#include "imusic_fusion.h"

#include <math.h>
#include <string.h>

static bool finite3(const float v[3])
{
    return isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]);
}

static float norm3(const float v[3]) { return sqrtf(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }

static void cross(const float a[3], const float b[3], float out[3])
{
    out[0] = a[1] * b[2] - a[2] * b[1];
    out[1] = a[2] * b[0] - a[0] * b[2];
    out[2] = a[0] * b[1] - a[1] * b[0];
}

static void normalise_q(float q[4])
{
    float n = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (n > 0.0f && isfinite(n))
        for (int i = 0; i < 4; i++)
            q[i] /= n;
    else
        q[0] = 1.0f, q[1] = q[2] = q[3] = 0.0f;
}

/* v_earth = R(q) v_sensor, and its transpose. */
static void rotate(const float q[4], const float v[3], float out[3], bool transpose)
{
    float w = q[0], x = q[1], y = q[2], z = q[3];
    float r[3][3] = {
        {1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)},
        {2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)},
        {2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)},
    };
    for (int i = 0; i < 3; i++)
        out[i] = transpose ? r[0][i] * v[0] + r[1][i] * v[1] + r[2][i] * v[2]
                           : r[i][0] * v[0] + r[i][1] * v[1] + r[i][2] * v[2];
}

void imd_fusion_init(imd_fusion *f, uint16_t rate_hz, float g_norm, float kp, float ki)
{
    memset(f, 0, sizeof *f);
    f->q[0] = 1.0f;
    f->dt = 1.0f / (rate_hz ? (float)rate_hz : 100.0f);
    f->g_norm = g_norm > 0.0f ? g_norm : 9.80665f;
    f->kp = kp > 0.0f ? kp : IMD_FUSION_KP;
    f->ki = ki > 0.0f ? ki : IMD_FUSION_KI;
}

/* The tilt that makes the measured up direction the earth's z (shortest arc), then the
 * heading that puts the field's horizontal part on north (+x) when there is a field. */
static void start(imd_fusion *f, const float up[3], const float *mag)
{
    const float z[3] = {0.0f, 0.0f, 1.0f};
    float axis[3];
    cross(up, z, axis);
    float c = up[2];
    if (c < -0.999999f) { /* upside down: any horizontal axis */
        f->q[0] = 0.0f, f->q[1] = 1.0f, f->q[2] = f->q[3] = 0.0f;
    } else {
        f->q[0] = 1.0f + c, f->q[1] = axis[0], f->q[2] = axis[1], f->q[3] = axis[2];
        normalise_q(f->q);
    }
    if (mag != NULL && finite3(mag) && norm3(mag) > 0.0f) {
        float h[3];
        rotate(f->q, mag, h, false);
        float yaw = atan2f(h[1], h[0]); /* the field's heading from +x: turn it back to 0 */
        float qz[4] = {cosf(-yaw / 2), 0.0f, 0.0f, sinf(-yaw / 2)};
        float a[4] = {f->q[0], f->q[1], f->q[2], f->q[3]};
        /* q = qz * q: rotate about the earth's z */
        f->q[0] = qz[0] * a[0] - qz[3] * a[3];
        f->q[1] = qz[0] * a[1] - qz[3] * a[2];
        f->q[2] = qz[0] * a[2] + qz[3] * a[1];
        f->q[3] = qz[0] * a[3] + qz[3] * a[0];
        normalise_q(f->q);
    }
    f->started = true;
}

void imd_fusion_update(imd_fusion *f, const float acc[3], const float gyro[3], const float *mag)
{
    if (!finite3(acc) || !finite3(gyro))
        return;
    float an = norm3(acc);
    float up[3] = {0.0f, 0.0f, 0.0f};
    bool use_acc = an > 0.0f && fabsf(an / f->g_norm - 1.0f) < IMD_FUSION_ACC_TOL;
    if (use_acc)
        for (int i = 0; i < 3; i++)
            up[i] = acc[i] / an;
    if (!f->started) {
        if (use_acc)
            start(f, up, mag);
        return;
    }
    float e[3] = {0.0f, 0.0f, 0.0f};
    if (use_acc) {
        /* the up direction the estimate predicts in the sensor frame: R^T z */
        const float z[3] = {0.0f, 0.0f, 1.0f};
        float v[3];
        rotate(f->q, z, v, true);
        cross(up, v, e);
    }
    if (mag != NULL && finite3(mag) && norm3(mag) > 0.0f) {
        /* the field in the earth frame, its horizontal part put on north: the reference the
         * estimate should see; only the heading error (about the earth's z) is kept */
        float m[3], h[3], b[3], w[3], em[3];
        float mn = norm3(mag);
        for (int i = 0; i < 3; i++)
            m[i] = mag[i] / mn;
        rotate(f->q, m, h, false);
        b[0] = sqrtf(h[0] * h[0] + h[1] * h[1]), b[1] = 0.0f, b[2] = h[2];
        rotate(f->q, b, w, true);
        cross(m, w, em);
        float zs[3];
        const float z[3] = {0.0f, 0.0f, 1.0f};
        rotate(f->q, z, zs, true); /* earth z in the sensor frame */
        float along = em[0] * zs[0] + em[1] * zs[1] + em[2] * zs[2];
        for (int i = 0; i < 3; i++)
            e[i] += along * zs[i];
    }
    float wv[3];
    for (int i = 0; i < 3; i++) {
        f->bias[i] += f->ki * e[i] * f->dt;
        wv[i] = gyro[i] + f->kp * e[i] + f->bias[i];
    }
    /* q += 0.5 q (0, w) dt */
    float *q = f->q;
    float hd = 0.5f * f->dt;
    float dq[4] = {
        -q[1] * wv[0] - q[2] * wv[1] - q[3] * wv[2],
        q[0] * wv[0] + q[2] * wv[2] - q[3] * wv[1],
        q[0] * wv[1] - q[1] * wv[2] + q[3] * wv[0],
        q[0] * wv[2] + q[1] * wv[1] - q[2] * wv[0],
    };
    for (int i = 0; i < 4; i++)
        q[i] += hd * dq[i];
    normalise_q(q);
}

void imd_fusion_q14(const imd_fusion *f, int16_t out[4])
{
    for (int i = 0; i < 4; i++) {
        float v = f->q[i] * 16384.0f;
        v = v > 16384.0f ? 16384.0f : v < -16384.0f ? -16384.0f : v;
        out[i] = (int16_t)lrintf(v);
    }
}
