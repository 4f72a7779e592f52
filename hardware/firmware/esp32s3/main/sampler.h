/*
 * Sampling: a hardware timer (gptimer, 1 MHz) fires at the sample rate; its ISR stamps the
 * instant with esp_timer_get_time() (microseconds since boot, the device clock of the
 * protocol), gives it the next sequence number and wakes one reader task per I2C bus. The two
 * buses are read at the same time; the task that finishes last queues the whole instant.
 *
 * An instant whose timer tick finds a read still running is not sampled but still consumes a
 * sequence number: it is an overrun (STATUS.overruns) and a visible gap in seq on the host.
 */
#pragma once

#include <stdint.h>

#include "board.h"
#include "esp_err.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"

#define SAMPLER_VALUES_PER_SITE 9 /* acc xyz, gyro xyz, mag xyz: wire order with IMP_FLAG_MAG */

typedef struct {
    uint32_t seq;
    uint64_t t_us;
    int16_t values[BOARD_MAX_SITES * SAMPLER_VALUES_PER_SITE];
} sampler_instant_t;

/* Bring up both buses, probe and configure every site of board_rig, create the timer and the
 * reader tasks. Sites that do not answer are logged and read as zeros (and counted). */
esp_err_t sampler_init(uint16_t rate_hz);

/* Start / stop the timer. start reconfigures the chips' ODR for rate_hz (25..400). */
esp_err_t sampler_start(uint16_t rate_hz);
void sampler_stop(void);

/* Finished instants, in order (the stream task reads them). */
QueueHandle_t sampler_queue(void);

/* Counters for STATUS. */
uint32_t sampler_sensor_errors(void);
uint32_t sampler_overruns(void);
