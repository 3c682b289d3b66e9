/* procstat: the process collector: CPU, memory, file descriptors and start
 * time of this process under the names every Prometheus client library uses
 * (process_cpu_seconds_total, process_resident_memory_bytes, ...), read
 * from /proc/self. Reads no state of the program, so any thread may call
 * it (the metrics server's, at each scrape). Linux only. */
#ifndef SHARDRUN_PROCSTAT_H
#define SHARDRUN_PROCSTAT_H

#include "buf.h"

/* Appends the process_* families to out; a file that cannot be read
 * leaves its family out. */
void procstat_render(buf_t *out);

#endif
