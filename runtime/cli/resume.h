/* resume: `shardrun resume`, asking the owner of a halted shard to go on,
 * wherever it runs: the request is written into the lease row
 * (shardrunControl), and the owner acts on it at its next lease scan. */
#ifndef SHARDRUN_RESUME_H
#define SHARDRUN_RESUME_H

#include <stdio.h>

#include "config/config.h"

/* Asks the owners of stream's halted shards (or of `shard` only, halted or
 * not) to resume; skip: to skip the records they halted at first. Prints one
 * line per request to out. Returns the exit status: 0 when at least one
 * request was written, 1 when none could be (nothing halted, no such shard,
 * the lease store unusable). */
int resume_request(const config_t *cfg, const char *stream, const char *shard, int skip, FILE *out);

#endif
