/* The device side of the protocol: see imusic_device.h. */
#include "imusic_device.h"

#include <string.h>

void imd_device_init(imd_device *dev, const imp_device_info *info)
{
    memset(dev, 0, sizeof *dev);
    dev->info = *info;
    dev->device_id = (uint32_t)info->serial;
    dev->max_rate_hz = IMP_MAX_RATE_HZ;
}

static imd_action ack(imd_device *dev, uint8_t command, uint8_t result, imd_action action,
                      uint8_t *out, size_t cap, size_t *out_len)
{
    *out_len = imp_encode_ack(dev->device_id, command, result, out, cap);
    return action;
}

imd_action imd_handle(imd_device *dev, const imp_message *msg, imp_result r, uint8_t *out,
                      size_t cap, size_t *out_len)
{
    *out_len = 0;
    /* Only frames whose header could be read and trusted (CRC and version good) get here. */
    if (r != IMP_OK && r != IMP_ERR_TYPE && r != IMP_ERR_LENGTH && r != IMP_ERR_FIELD)
        return IMD_ACTION_NONE;
    if (msg->type < 0x80 || (msg->device_id != 0 && msg->device_id != dev->device_id)) {
        dev->ignored++;
        return IMD_ACTION_NONE;
    }
    dev->commands++;
    if (r == IMP_ERR_TYPE)
        return ack(dev, msg->type, IMP_ACK_UNKNOWN, IMD_ACTION_NONE, out, cap, out_len);
    if (r != IMP_OK)
        return ack(dev, msg->type, IMP_ACK_BAD_ARGUMENT, IMD_ACTION_NONE, out, cap, out_len);

    switch (msg->type) {
    case IMP_CMD_START:
        if (dev->streaming)
            return ack(dev, msg->type, IMP_ACK_OK, IMD_ACTION_NONE, out, cap, out_len);
        dev->running_rate_hz = dev->info.rate_hz;
        dev->streaming = true;
        return ack(dev, msg->type, IMP_ACK_OK, IMD_ACTION_START, out, cap, out_len);
    case IMP_CMD_STOP: {
        imd_action a = dev->streaming ? IMD_ACTION_STOP : IMD_ACTION_NONE;
        dev->streaming = false;
        return ack(dev, msg->type, IMP_ACK_OK, a, out, cap, out_len);
    }
    case IMP_CMD_SET_RATE:
        if (msg->u.rate_hz < IMP_MIN_RATE_HZ || msg->u.rate_hz > IMP_MAX_RATE_HZ ||
            msg->u.rate_hz > dev->max_rate_hz)
            return ack(dev, msg->type, IMP_ACK_BAD_ARGUMENT, IMD_ACTION_NONE, out, cap, out_len);
        dev->info.rate_hz = msg->u.rate_hz;
        return ack(dev, msg->type, IMP_ACK_OK, IMD_ACTION_NONE, out, cap, out_len);
    case IMP_CMD_IDENTIFY:
        dev->identify_seconds = msg->u.seconds;
        return ack(dev, msg->type, IMP_ACK_OK, IMD_ACTION_IDENTIFY, out, cap, out_len);
    case IMP_CMD_GET_INFO:
        *out_len = imp_encode_device_info(dev->device_id, &dev->info, out, cap);
        return IMD_ACTION_NONE;
    default:
        return ack(dev, msg->type, IMP_ACK_UNKNOWN, IMD_ACTION_NONE, out, cap, out_len);
    }
}

uint8_t imd_battery_percent(uint16_t mv)
{
    /* Open-circuit voltage of a typical 1-cell LiPo against state of charge. */
    static const uint16_t curve_mv[] = {3300, 3500, 3600, 3680, 3740, 3790, 3840, 3900, 3980, 4080, 4200};
    static const uint8_t curve_pct[] = {0, 5, 10, 20, 30, 40, 50, 60, 70, 85, 100};
    const size_t n = sizeof curve_mv / sizeof curve_mv[0];
    if (mv == 0)
        return IMP_BATTERY_PCT_UNKNOWN;
    if (mv <= curve_mv[0])
        return 0;
    if (mv >= curve_mv[n - 1])
        return 100;
    size_t i = 1;
    while (mv > curve_mv[i])
        i++;
    uint32_t span = curve_mv[i] - curve_mv[i - 1];
    uint32_t pos = mv - curve_mv[i - 1];
    return (uint8_t)(curve_pct[i - 1] + ((curve_pct[i] - curve_pct[i - 1]) * pos + span / 2) / span);
}
