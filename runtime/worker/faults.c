#include "faults.h"

#ifdef SHARDRUN_FAULTS

#include <ev.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"

static ev_signal faults_stall; /* one worker per process: the test build's only hook */

static void faults_on_stall(struct ev_loop *loop, ev_signal *w, int revents)
{
    const char *path = getenv("SHARDRUN_FAULT_STALL_FILE");
    if (!path || access(path, F_OK) != 0) {
        log_warn("fault_stall_ignored", "reason=\"SHARDRUN_FAULT_STALL_FILE is not set or absent\"");
        return;
    }
    log_warn("fault_loop_stalled", "file=%s", path);
    int64_t start = clock_mono_ms();
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    while (access(path, F_OK) == 0)
        nanosleep(&ten_ms, NULL);
    log_warn("fault_loop_resumed", "stalled_ms=%lld", (long long)(clock_mono_ms() - start));
}

void faults_start(struct ev_loop *loop)
{
    log_warn("faults_compiled_in", "hooks=SIGUSR2:stall_loop note=\"a test build: not for production\"");
    ev_signal_init(&faults_stall, faults_on_stall, SIGUSR2);
    ev_signal_start(loop, &faults_stall);
}

void faults_stop(struct ev_loop *loop)
{
    ev_signal_stop(loop, &faults_stall);
}

#else

void faults_start(struct ev_loop *loop)
{
    (void)loop;
}
void faults_stop(struct ev_loop *loop)
{
    (void)loop;
}

#endif
