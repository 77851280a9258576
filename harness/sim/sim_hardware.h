#ifndef WANCP_SIM_HARDWARE_H
#define WANCP_SIM_HARDWARE_H

#include "sim_cost.h"

#include <stddef.h>

/*
 * Hardware profiles for the simulator: INI files with one [hardware] section.
 *
 *   [hardware]
 *   name = a100-bf16
 *   peak_flops = 312e12      ; FLOP/s of the matmul units at this precision (dense)
 *   matmul = 0.60            ; fraction of peak the projections, MLP and LM head reach
 *   attention = 0.50         ; fraction blockwise attention reaches, forward and backward
 *   codec = 0.20             ; fraction the compression maths reach (thin d_kv x r products)
 *   memory_bytes_s = 1.6e12  ; bytes/s of the memory-bound ops (norms, RoPE, SwiGLU, AdamW)
 *   op_overhead_s = 5e-6     ; per op: a kernel launch or a call
 *   act_bytes = 2            ; bytes per activation element
 *   param_bytes = 2          ; bytes per parameter in a weight sync
 *   byte_cost_s = 0          ; a rank's own seconds per payload byte sent or received
 *   host = false             ; true: this host itself (a scenario's dilation applies)
 *   cores = 0                ; host: the cores its ranks share with the shaped links' packet
 *                            ; work (the step model's processor sharing); 0 for devices
 *   link_cost_s = 0          ; host: core-seconds per payload byte crossing a shaped link
 *                            ; (the kernel's TCP, htb, veth and bridge work beyond byte_cost_s):
 *                            ; one price, or PRICE@BPS, ... measured at each link rate
 *   delay_link_cost_s = 0    ; host: the same for links that also delay, jitter or lose
 *                            ; (the delay emulator's relays too); 0: link_cost_s's prices
 *
 * Every key is required; loading reports every problem at once, each with file:line.
 */
int sim_hardware_load(sim_hardware *hw, const char *path, char *err, size_t errlen);

/* A profile by name or path: a name is scenarios/hardware/NAME.ini in the source tree, and
 * cpu-local the file `wancp bench calibrate` writes (sim_hardware_local_path). An unknown
 * name, or cpu-local before any calibration, is an input error saying what to do. */
int sim_hardware_find(sim_hardware *hw, const char *name_or_path, char *err, size_t errlen);

/* Where the calibration of this host lives: $WANCP_HARDWARE, else results/hardware/cpu-local.ini
 * in the source tree. */
void sim_hardware_local_path(char *buf, size_t len);

/* Writes hw as a profile file (to a temporary name, then renamed), with comment lines
 * (each written after "; ") first. */
int sim_hardware_write(const sim_hardware *hw, const char *path, const char *comment, char *err, size_t errlen);

#endif
