/*
 * How fast the sensor buses can go (portable, host-tested; README "I2C budget").
 *
 * Per site and instant the firmware makes three I2C transactions: select the TCA9548A channel
 * (START, address, control byte, STOP), read the QMI8658's 12 data bytes (START, address+W,
 * register, repeated START, address+R, 12 bytes, STOP) and the QMC5883P's 6 (likewise). Every
 * byte costs 9 clocks (8 bits + ACK) and every START / repeated START / STOP about one clock:
 * 20 + 138 + 84 = 242 clocks. On top of the wire time each transaction costs some driver time
 * (ISR, task switch): a per-transaction overhead the caller supplies.
 */
#ifndef IMUSIC_I2C_BUDGET_H
#define IMUSIC_I2C_BUDGET_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMD_I2C_CLOCKS_MUX 20u
#define IMD_I2C_CLOCKS_QMI8658 138u
#define IMD_I2C_CLOCKS_QMC5883P 84u
#define IMD_I2C_CLOCKS_PER_SITE (IMD_I2C_CLOCKS_MUX + IMD_I2C_CLOCKS_QMI8658 + IMD_I2C_CLOCKS_QMC5883P)
#define IMD_I2C_TRANSACTIONS_PER_SITE 3u
#define IMD_I2C_OVERHEAD_US 25.0f /* assumed ESP-IDF driver cost per transaction */
#define IMD_I2C_MAX_LOAD 0.85f    /* leave room for clock stretching and retries */

/* Microseconds one instant keeps a bus with `sites` sites busy. */
float imd_i2c_instant_us(unsigned sites, uint32_t scl_hz, float overhead_us);

/* Highest sample rate (Hz, capped at 400; 0 if not even 1 Hz) at which a bus with `sites`
 * sites stays below max_load of its time. */
uint16_t imd_i2c_max_rate_hz(unsigned sites, uint32_t scl_hz, float overhead_us, float max_load);

#ifdef __cplusplus
}
#endif

#endif
