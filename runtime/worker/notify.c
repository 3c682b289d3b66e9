#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "base/log.h"

/* Beyond shutdown_grace_ms: time for the last release writes and the exit. */
#define NOTIFY_STOP_MARGIN_MS 5000

static void notify_send(const char *msg)
{
    int rc = sd_notify(0, msg);
    if (rc < 0) {
        char q[256];
        log_warn("notify_failed", "message=%s error=%s", log_quote(msg, q, sizeof q), strerror(-rc));
    }
}

static void notify_on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
    notify_send("WATCHDOG=1");
}

void notify_start(notify_t *n, struct ev_loop *loop)
{
    memset(n, 0, sizeof *n);
    n->loop = loop;
    uint64_t usec = 0;
    ev_timer_init(&n->watchdog, notify_on_watchdog, 0.0, 0.0);
    /* the watchdog only when there is someone to ping: sd_watchdog_enabled
     * looks at WATCHDOG_USEC alone */
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock && *sock && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        /* twice per period, as sd_watchdog_enabled(3) advises; the first at once */
        double every = (double)usec / 2e6;
        ev_timer_set(&n->watchdog, 0.0, every);
        ev_timer_start(loop, &n->watchdog);
        log_info("watchdog_enabled", "interval_ms=%llu ping_ms=%llu", (unsigned long long)(usec / 1000),
                 (unsigned long long)(usec / 2000));
    }
}

void notify_ready(notify_t *n, const char *status)
{
    if (n->ready && !strcmp(n->status, status)) return;
    char msg[320];
    snprintf(msg, sizeof msg, "%sSTATUS=%s", n->ready ? "" : "READY=1\n", status);
    snprintf(n->status, sizeof n->status, "%s", status);
    n->ready = 1;
    notify_send(msg);
}

void notify_stopping(notify_t *n, int64_t grace_ms, const char *status)
{
    char msg[400];
    unsigned long long usec = (unsigned long long)(grace_ms + NOTIFY_STOP_MARGIN_MS) * 1000ULL;
    snprintf(msg, sizeof msg, "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu\nSTATUS=%s", usec, status);
    snprintf(n->status, sizeof n->status, "%s", status);
    notify_send(msg);
}

void notify_stop(notify_t *n)
{
    if (n->loop) ev_timer_stop(n->loop, &n->watchdog);
}
