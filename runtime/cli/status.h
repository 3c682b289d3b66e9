/* status: the `shardrun status` report, a table (or JSON) of every lease. */
#ifndef SHARDRUN_STATUS_H
#define SHARDRUN_STATUS_H

#include <stdio.h>

#include "config/config.h"

/* Prints the report for cfg to out. Returns the exit status (0, or 1 when
 * the lease store or source cannot be read). */
int status_print(const config_t *cfg, int json, FILE *out);

#endif
