/*
 * Tap detection on one accelerometer (portable C, host-tested).
 *
 * A take starts with a finger tap on the mentalis (chin) sensor: a sharp spike in |acc| that
 * facial motion never makes. The detector tracks a slow baseline of |acc| (gravity plus head
 * motion) and reports a tap when |acc| leaves the baseline by more than a threshold, at the
 * time of the peak, with the peak |acc| in mm/s^2 (PROTOCOL.md EVENT kind 1).
 */
#ifndef IMUSIC_TAP_H
#define IMUSIC_TAP_H

#include "imusic_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IMD_TAP_THRESHOLD_MS2 15.0f    /* deviation from the baseline that starts a tap */
#define IMD_TAP_REFRACTORY_US 250000u  /* a bounce within this is the same tap */
#define IMD_TAP_MAX_US 60000u          /* a tap is short: longer excursions are not taps */

typedef struct {
    float baseline, alpha, threshold;
    bool primed, in_peak;
    float peak;
    uint64_t peak_t_us, start_t_us, last_tap_us;
    bool tapped_before;
    uint8_t sensor;
} imd_tap;

/* rate_hz: the sample rate; threshold_ms2 <= 0 takes IMD_TAP_THRESHOLD_MS2. */
void imd_tap_init(imd_tap *t, uint16_t rate_hz, float threshold_ms2, uint8_t sensor);

/* Feed one sample (m/s^2, sensor frame). Returns true and fills *ev when a tap completed. */
bool imd_tap_feed(imd_tap *t, uint64_t t_us, const float acc[3], imp_event *ev);

#ifdef __cplusplus
}
#endif

#endif
