/* faults: fault hooks for the integration tests, compiled only into the
 * test build (`make faults`: -DSHARDRUN_FAULTS, build-faults/shardrun).
 * In the production binary faults_start and faults_stop are empty.
 *
 *   SIGUSR2 + SHARDRUN_FAULT_STALL_FILE=path: on SIGUSR2 the loop thread
 *   itself blocks while that file exists (checked every 10 ms), so the
 *   loop really stops turning, as a stuck system call would make it;
 *   removing the file lets it go on. /healthz must turn 503 meanwhile. */
#ifndef SHARDRUN_FAULTS_H
#define SHARDRUN_FAULTS_H

struct ev_loop;

void faults_start(struct ev_loop *loop);
void faults_stop(struct ev_loop *loop);

#endif
