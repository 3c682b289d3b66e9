#include "metrics_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/procstat.h"
#include "base/xalloc.h"

/* The loop's heartbeat (and readiness) timer: a quarter of loop_stall_ms,
 * within these bounds (each beat wakes the loop: a few microseconds). */
#define METRICS_SERVER_BEAT_MIN_MS 25
#define METRICS_SERVER_BEAT_MAX_MS 500
#define METRICS_CONTENT_TYPE   "text/plain; version=0.0.4; charset=utf-8"

/* One rendering of the registry: immutable once published; freed by
 * whoever drops the last reference (the loop or a handler). */
typedef struct snapshot {
    atomic_int refs;
    int64_t taken_ms;  /* monotonic */
    int64_t render_us; /* what the rendering cost the loop */
    uint64_t generation;
    size_t len;
    char *text; /* owned */
} snapshot_t;

struct metrics_server {
    struct ev_loop *loop;
    metrics_t *registry; /* the loop's: only read on the loop thread */
    metrics_ready_fn ready;
    void *ud;
    int64_t stall_ms;
    int port;
    struct MHD_Daemon *mhd;
    ev_async render_req; /* a handler wants a fresh rendering */
    size_t last_len;     /* of the last rendering (loop thread) */
    ev_timer beat;

    atomic_llong beat_ms; /* monotonic time of the last heartbeat on the loop */

    /* mu guards everything below; the loop holds it only to swap pointers
     * and copy the readiness line, handlers to take a reference or wait. */
    pthread_mutex_t mu;
    pthread_cond_t rendered;
    snapshot_t *current; /* NULL until the first rendering */
    int closing;
    int is_ready;
    char not_ready[256];
};

static void snapshot_unref(snapshot_t *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        free(s->text);
        free(s);
    }
}

/* ---- the loop's side ---------------------------------------------------------- */

static void metrics_server_on_render(struct ev_loop *loop, ev_async *a, int revents)
{
    metrics_server_t *ms = a->data;
    int64_t t0 = clock_mono_us();
    buf_t b = BUF_INIT;
    buf_reserve(&b, ms->last_len + ms->last_len / 8); /* one allocation, not a doubling series */
    metrics_render(ms->registry, &b);
    snapshot_t *s = xmalloc(sizeof *s); /* shared: the last reference frees it */
    atomic_init(&s->refs, 1);
    s->taken_ms = clock_mono_ms();
    s->len = ms->last_len = b.len;
    s->text = buf_detach(&b);
    s->render_us = clock_mono_us() - t0;
    pthread_mutex_lock(&ms->mu);
    snapshot_t *old = ms->current;
    s->generation = old ? old->generation + 1 : 1;
    ms->current = s;
    pthread_cond_broadcast(&ms->rendered);
    pthread_mutex_unlock(&ms->mu);
    snapshot_unref(old);
}

static void metrics_server_on_beat(struct ev_loop *loop, ev_timer *t, int revents)
{
    metrics_server_t *ms = t->data;
    atomic_store(&ms->beat_ms, clock_mono_ms());
    char why[sizeof ms->not_ready] = "";
    int ready = ms->ready(ms->ud, why, sizeof why);
    pthread_mutex_lock(&ms->mu);
    ms->is_ready = ready;
    memcpy(ms->not_ready, why, sizeof why);
    pthread_mutex_unlock(&ms->mu);
}

/* ---- the server's threads ----------------------------------------------------- */

/* A fresh snapshot (rendered after this call), or the last one if the loop
 * does not answer within stall_ms; NULL if there has never been one. The
 * caller drops the reference. */
static snapshot_t *metrics_server_snapshot(metrics_server_t *ms)
{
    pthread_mutex_lock(&ms->mu);
    uint64_t want = (ms->current ? ms->current->generation : 0) + 1;
    if (!ms->closing) ev_async_send(ms->loop, &ms->render_req);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    int64_t ns = until.tv_nsec + (ms->stall_ms % 1000) * 1000000;
    until.tv_sec += ms->stall_ms / 1000 + ns / 1000000000;
    until.tv_nsec = ns % 1000000000;
    while (!ms->closing && (!ms->current || ms->current->generation < want))
        if (pthread_cond_timedwait(&ms->rendered, &ms->mu, &until) == ETIMEDOUT) break;
    snapshot_t *s = ms->current;
    if (s) atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&ms->mu);
    return s;
}

static enum MHD_Result metrics_server_reply(struct MHD_Connection *c, unsigned code, const char *type, char *body,
                                            size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result metrics_server_text(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result metrics_server_text(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
{
    buf_t b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    size_t len = b.len;
    return metrics_server_reply(c, code, "text/plain; charset=utf-8", buf_detach(&b), len);
}

static enum MHD_Result metrics_server_metrics(metrics_server_t *ms, struct MHD_Connection *c)
{
    snapshot_t *s = metrics_server_snapshot(ms);
    buf_t b = BUF_INIT;
    if (s) buf_append(&b, s->text, s->len);
    buf_append_str(&b, "# HELP shardrun_metrics_snapshot_age_seconds Age of the worker's metrics in this answer "
                       "(high: the loop did not answer in time; its last rendering is served).\n"
                       "# TYPE shardrun_metrics_snapshot_age_seconds gauge\nshardrun_metrics_snapshot_age_seconds ");
    metrics_format_value(&b, s ? (double)(clock_mono_ms() - s->taken_ms) / 1000.0 : -1);
    buf_append_str(&b, "\n# HELP shardrun_metrics_render_seconds Time the loop spent rendering these metrics.\n"
                       "# TYPE shardrun_metrics_render_seconds gauge\nshardrun_metrics_render_seconds ");
    metrics_format_value(&b, s ? (double)s->render_us / 1e6 : 0);
    buf_append_char(&b, '\n');
    snapshot_unref(s);
    procstat_render(&b);
    size_t len = b.len;
    return metrics_server_reply(c, MHD_HTTP_OK, METRICS_CONTENT_TYPE, buf_detach(&b), len);
}

static enum MHD_Result metrics_server_healthz(metrics_server_t *ms, struct MHD_Connection *c)
{
    int64_t age = clock_mono_ms() - atomic_load(&ms->beat_ms);
    if (age <= ms->stall_ms)
        return metrics_server_text(c, MHD_HTTP_OK, "ok: the loop turned %lld ms ago\n", (long long)age);
    return metrics_server_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "unhealthy: the loop has not turned for %lld ms (limit: metrics.loop_stall_ms = %lld)\n",
                               (long long)age, (long long)ms->stall_ms);
}

static enum MHD_Result metrics_server_readyz(metrics_server_t *ms, struct MHD_Connection *c)
{
    pthread_mutex_lock(&ms->mu);
    int ready = ms->is_ready;
    char why[sizeof ms->not_ready];
    memcpy(why, ms->not_ready, sizeof why);
    pthread_mutex_unlock(&ms->mu);
    if (ready) return metrics_server_text(c, MHD_HTTP_OK, "ready\n");
    return metrics_server_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s\n", why);
}

static enum MHD_Result metrics_server_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                             const char *version, const char *upload_data, size_t *upload_data_size,
                                             void **con_cls)
{
    metrics_server_t *ms = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return metrics_server_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
    if (!strcmp(url, "/metrics")) return metrics_server_metrics(ms, c);
    if (!strcmp(url, "/healthz")) return metrics_server_healthz(ms, c);
    if (!strcmp(url, "/readyz")) return metrics_server_readyz(ms, c);
    return metrics_server_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n");
}

static void metrics_server_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512], q[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_warn("metrics_http_error", "error=%s", log_quote(msg, q, sizeof q));
}

/* ---- life ---------------------------------------------------------------------- */

/* A listening socket on host:port (IPv4 or IPv6 literal, checked by the
 * config); -1 with err set. */
static int metrics_server_listen(const config_metrics_t *cfg, int *port, errbuf_t *err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)cfg->port);
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, cfg->host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)cfg->port);
        len = sizeof *in6;
    } else {
        errbuf_set(err, "metrics.listen: %s is not an IP address", cfg->host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
        errbuf_set(err,
                   "metrics.listen: cannot listen on %s: %s (another process has the port, or the address is "
                   "not on this host; choose another in metrics.listen)",
                   cfg->listen, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        *port = ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
    return fd;
}

metrics_server_t *metrics_server_start(struct ev_loop *loop, metrics_t *registry, const config_metrics_t *cfg,
                                       metrics_ready_fn ready, void *ud, errbuf_t *err)
{
    int port = cfg->port;
    int fd = metrics_server_listen(cfg, &port, err);
    if (fd < 0) return NULL;
    metrics_server_t *ms = xcalloc(1, sizeof *ms); /* owned by the caller: metrics_server_free */
    ms->loop = loop;
    ms->registry = registry;
    ms->ready = ready;
    ms->ud = ud;
    ms->stall_ms = cfg->loop_stall_ms;
    ms->port = port;
    snprintf(ms->not_ready, sizeof ms->not_ready, "starting");
    atomic_init(&ms->beat_ms, clock_mono_ms());
    pthread_mutex_init(&ms->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ms->rendered, &ca);
    pthread_condattr_destroy(&ca);
    ev_async_init(&ms->render_req, metrics_server_on_render);
    ms->render_req.data = ms;
    ev_async_start(loop, &ms->render_req);
    int64_t beat_ms = cfg->loop_stall_ms / 4;
    if (beat_ms < METRICS_SERVER_BEAT_MIN_MS) beat_ms = METRICS_SERVER_BEAT_MIN_MS;
    if (beat_ms > METRICS_SERVER_BEAT_MAX_MS) beat_ms = METRICS_SERVER_BEAT_MAX_MS;
    double beat = (double)beat_ms / 1000.0;
    ev_timer_init(&ms->beat, metrics_server_on_beat, 0.0, beat);
    ms->beat.data = ms;
    ev_timer_start(loop, &ms->beat);
    /* a thread per connection: a scrape waiting for the loop never holds up /healthz */
    ms->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0,
                               NULL, NULL, metrics_server_handle, ms, MHD_OPTION_EXTERNAL_LOGGER,
                               metrics_server_mhd_log, ms, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
                               (unsigned)METRICS_SERVER_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                               MHD_OPTION_END);
    if (!ms->mhd) {
        errbuf_set(err, "metrics.listen: cannot start the HTTP server on %s", cfg->listen);
        close(fd);
        metrics_server_free(ms);
        return NULL;
    }
    log_info("metrics_listening", "address=%s port=%d paths=/metrics,/healthz,/readyz", cfg->host, port);
    return ms;
}

int metrics_server_port(const metrics_server_t *ms)
{
    return ms->port;
}

void metrics_server_free(metrics_server_t *ms)
{
    if (!ms) return;
    pthread_mutex_lock(&ms->mu);
    ms->closing = 1; /* waiting handlers answer with what they have */
    pthread_cond_broadcast(&ms->rendered);
    pthread_mutex_unlock(&ms->mu);
    if (ms->mhd) MHD_stop_daemon(ms->mhd); /* joins its threads; the socket is MHD's to close */
    ev_async_stop(ms->loop, &ms->render_req);
    ev_timer_stop(ms->loop, &ms->beat);
    snapshot_unref(ms->current);
    pthread_cond_destroy(&ms->rendered);
    pthread_mutex_destroy(&ms->mu);
    free(ms);
}
