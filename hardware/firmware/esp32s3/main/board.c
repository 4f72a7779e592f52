/* Pins and the site -> (bus, channel) map of the reference board. See board.h. */
#include "board.h"

#include "sdkconfig.h"

const board_bus_t board_buses[BOARD_N_BUSES] = {
    {.port = I2C_NUM_0, .sda = GPIO_NUM_8, .scl = GPIO_NUM_9, .mux_reset = GPIO_NUM_10,
     .mux_addr = 0x70},
    {.port = I2C_NUM_1, .sda = GPIO_NUM_11, .scl = GPIO_NUM_12, .mux_reset = GPIO_NUM_13,
     .mux_addr = 0x71},
};

#if CONFIG_IMUSIC_RIG_IMUSIC11
/* Right half and the glabella on bus 0, left half and the midline on bus 1, so that each
 * mux's flex cables run to one side of the face. */
static const board_site_t sites[] = {
    {"frontalis_r", 0, 0},         {"frontalis_l", 1, 0},
    {"corrugator", 0, 1},          {"orbicularis_oculi_r", 0, 2},
    {"orbicularis_oculi_l", 1, 1}, {"zygomaticus_r", 0, 3},
    {"zygomaticus_l", 1, 2},       {"buccinator_r", 0, 4},
    {"buccinator_l", 1, 3},        {"orbicularis_oris", 1, 4},
    {"mentalis", 0, 5},            {"nasal_bridge", 1, 5},
};
const board_rig_t board_rig = {"imusic11", sizeof sites / sizeof sites[0], sites, 10};
#elif CONFIG_IMUSIC_RIG_IMUSIC6
static const board_site_t sites[] = {
    {"frontalis_l", 0, 0},   {"orbicularis_oculi_l", 0, 1}, {"zygomaticus_l", 0, 2},
    {"zygomaticus_r", 1, 0}, {"mentalis", 1, 1},            {"nasal_bridge", 1, 2},
};
const board_rig_t board_rig = {"imusic6", sizeof sites / sizeof sites[0], sites, 4};
#else
#error "choose a rig in menuconfig (imusic wearable -> Rig)"
#endif
