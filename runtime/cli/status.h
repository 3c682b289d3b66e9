/* status: the `shardrun status` report, a table (or JSON) of every lease. */
#ifndef SHARDRUN_STATUS_H
#define SHARDRUN_STATUS_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "lease/lease.h"

/* Prints the report for cfg to out. Returns the exit status (0, or 1 when
 * the lease store or source cannot be read). */
int status_print(const config_t *cfg, int json, FILE *out);

/* A lease's state as `status` and `status --watch` both name it: invalid,
 * finished, "waiting on parent", unowned, or what its owner wrote in the
 * row's info (processing, idle, retrying, dead_lettering, halted, ...;
 * processing when it wrote none). info: the row's parsed shardrunInfo, or NULL. */
const char *status_state(const config_t *cfg, const lease_t *l, const lease_list_t *all, const cJSON *info);

#endif
