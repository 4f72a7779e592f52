/* Tap detection: see imusic_tap.h. */
#include "imusic_tap.h"

#include <math.h>
#include <string.h>

void imd_tap_init(imd_tap *t, uint16_t rate_hz, float threshold_ms2, uint8_t sensor)
{
    memset(t, 0, sizeof *t);
    /* Baseline time constant 0.5 s: follows head motion, ignores a 10..50 ms spike. */
    float rate = rate_hz ? (float)rate_hz : 100.0f;
    t->alpha = 1.0f / (0.5f * rate);
    if (t->alpha > 1.0f)
        t->alpha = 1.0f;
    t->threshold = threshold_ms2 > 0.0f ? threshold_ms2 : IMD_TAP_THRESHOLD_MS2;
    t->sensor = sensor;
}

bool imd_tap_feed(imd_tap *t, uint64_t t_us, const float acc[3], imp_event *ev)
{
    float m = sqrtf(acc[0] * acc[0] + acc[1] * acc[1] + acc[2] * acc[2]);
    if (!isfinite(m))
        return false;
    if (!t->primed) {
        t->baseline = m;
        t->primed = true;
        return false;
    }
    float dev = fabsf(m - t->baseline);
    if (t->in_peak) {
        if (m > t->peak) {
            t->peak = m;
            t->peak_t_us = t_us;
        }
        if (dev < 0.5f * t->threshold) {
            t->in_peak = false;
            if (t_us - t->start_t_us > IMD_TAP_MAX_US)
                return false; /* a long excursion (a knock of the head, a fall): not a tap */
            t->last_tap_us = t->peak_t_us;
            t->tapped_before = true;
            ev->t_us = t->peak_t_us;
            ev->kind = IMP_EVENT_TAP;
            ev->sensor = t->sensor;
            ev->value = (int32_t)lrintf(t->peak * 1000.0f);
            return true;
        }
        return false;
    }
    if (dev > t->threshold &&
        !(t->tapped_before && t_us - t->last_tap_us < IMD_TAP_REFRACTORY_US)) {
        t->in_peak = true;
        t->peak = m;
        t->peak_t_us = t->start_t_us = t_us;
        return false;
    }
    if (dev <= t->threshold) /* keep spikes out of the baseline */
        t->baseline += t->alpha * (m - t->baseline);
    return false;
}
