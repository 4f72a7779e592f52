/* I2C time budget: see imusic_i2c_budget.h. */
#include "imusic_i2c_budget.h"

#include "imusic_protocol.h"

float imd_i2c_instant_us(unsigned sites, uint32_t scl_hz, float overhead_us)
{
    if (scl_hz == 0)
        return 0.0f;
    float wire_us = (float)(sites * IMD_I2C_CLOCKS_PER_SITE) * 1e6f / (float)scl_hz;
    return wire_us + (float)(sites * IMD_I2C_TRANSACTIONS_PER_SITE) * overhead_us;
}

uint16_t imd_i2c_max_rate_hz(unsigned sites, uint32_t scl_hz, float overhead_us, float max_load)
{
    float us = imd_i2c_instant_us(sites, scl_hz, overhead_us);
    if (us <= 0.0f)
        return sites == 0 ? IMP_MAX_RATE_HZ : 0;
    float rate = max_load * 1e6f / us;
    if (rate >= (float)IMP_MAX_RATE_HZ)
        return IMP_MAX_RATE_HZ;
    return rate < 1.0f ? 0 : (uint16_t)rate;
}
