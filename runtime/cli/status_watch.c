#include "status_watch.h"

#include <stdarg.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <ev.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/xalloc.h"
#include "leaselist.h"
#include "status.h"
#include "worker/backends.h"
#include "worker/shardsync.h"

#define WATCH_REFRESH_MS     1000
#define WATCH_RATE_SAMPLES   10 /* records/s over the last ~10 refreshes */
#define WATCH_LIST_TIMEOUT_S 10.0

/* The records counter of one lease as seen at each refresh. */
typedef struct watch_hist {
    char *key; /* owned */
    int64_t t_ms[WATCH_RATE_SAMPLES];
    double records[WATCH_RATE_SAMPLES];
    size_t n, next;
} watch_hist_t;

typedef struct watch {
    const config_t *cfg;
    struct ev_loop *loop;
    aws_client_t *aws;
    lease_store_t *store;
    source_t *src;      /* NULL: no lag column from the source */
    watch_hist_t *hist; /* sorted by key */
    size_t nhist;
    int tty; /* out is a terminal: redraw in place */
} watch_t;

static volatile sig_atomic_t watch_stop;

static void watch_on_signal(int sig)
{
    watch_stop = 1;
}

/* The lease store (read-only: it creates nothing) and the source, opened at
 * the first refresh that can: before any worker ran there is no table yet. */
static int watch_connect(watch_t *w, leaselist_t *l)
{
    errbuf_t err;
    if (!w->store && w->cfg->leases.type == BACKEND_LOCAL && access(w->cfg->leases.path, F_OK) != 0) {
        /* opening the local store would create the file: as status, wait for a worker to */
        snprintf(l->err, sizeof l->err, "no lease file %.400s yet: no worker has run with this config (waiting for it)",
                 w->cfg->leases.path);
        return -1;
    }
    if (!w->store && !(w->store = backend_lease_store_new(w->cfg, w->loop, w->aws, 0, &err))) {
        snprintf(l->err, sizeof l->err, "%.400s (waiting for it)", err.msg);
        return -1;
    }
    if (!w->src) w->src = backend_source_new(w->cfg, w->loop, w->aws, &err); /* NULL: no records behind column */
    return 0;
}

/* The table now; 0, or -1 with l->err set. */
static int watch_read(watch_t *w, leaselist_t *l)
{
    memset(l, 0, sizeof *l);
    if (watch_connect(w, l)) {
        l->done = 1;
        l->st = LEASE_EFATAL;
        return -1;
    }
    if (!leaselist_read(w->loop, w->store, WATCH_LIST_TIMEOUT_S, &watch_stop, l)) return 0;
    if (!l->done) {
        /* the answer still comes, later: it must not land in this frame */
        snprintf(l->err, sizeof l->err, "the lease store did not answer within %.0f s", WATCH_LIST_TIMEOUT_S);
    }
    return -1;
}

static int watch_hist_cmp(const void *a, const void *b)
{
    return strcmp(((const watch_hist_t *)a)->key, ((const watch_hist_t *)b)->key);
}

/* records/s of `key` from its samples, after adding (now, records); -1 while
 * there are fewer than two samples. */
static double watch_rate(watch_t *w, const char *key, int64_t now, double records)
{
    watch_hist_t probe = {.key = (char *)key};
    watch_hist_t *h = w->nhist ? bsearch(&probe, w->hist, w->nhist, sizeof *w->hist, watch_hist_cmp) : NULL;
    if (!h) {
        w->hist = xrealloc(w->hist, (w->nhist + 1) * sizeof *w->hist); /* owned by the watch */
        h = &w->hist[w->nhist++];
        memset(h, 0, sizeof *h);
        h->key = xstrdup(key);
        qsort(w->hist, w->nhist, sizeof *w->hist, watch_hist_cmp);
        h = bsearch(&probe, w->hist, w->nhist, sizeof *w->hist, watch_hist_cmp);
    }
    if (h->n && records < h->records[(h->next + WATCH_RATE_SAMPLES - 1) % WATCH_RATE_SAMPLES]) h->n = 0; /* new owner */
    h->t_ms[h->next] = now;
    h->records[h->next] = records;
    h->next = (h->next + 1) % WATCH_RATE_SAMPLES;
    if (h->n < WATCH_RATE_SAMPLES) h->n++;
    if (h->n < 2) return -1;
    size_t oldest = (h->next + WATCH_RATE_SAMPLES - h->n) % WATCH_RATE_SAMPLES;
    int64_t dt = now - h->t_ms[oldest];
    return dt > 0 ? (records - h->records[oldest]) * 1000.0 / (double)dt : -1;
}

static double watch_num(const cJSON *info, const char *name, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(info, name);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *watch_str(const cJSON *info, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(info, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* "-", "0", "850ms", "12.3s", "4m05s", "3h12m" */
static void watch_duration(char *out, size_t n, double ms)
{
    if (ms < 0)
        snprintf(out, n, "-");
    else if (ms < 1000)
        snprintf(out, n, "%.0fms", ms);
    else if (ms < 60000)
        snprintf(out, n, "%.1fs", ms / 1000);
    else if (ms < 3600000)
        snprintf(out, n, "%dm%02ds", (int)(ms / 60000), (int)(ms / 1000) % 60);
    else
        snprintf(out, n, "%dh%02dm", (int)(ms / 3600000), (int)(ms / 60000) % 60);
}

/* One line, cut at the terminal's width, cleared to its end. */
static void watch_line(watch_t *w, buf_t *frame, int width, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void watch_line(watch_t *w, buf_t *frame, int width, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (width > 0 && len > (size_t)width) len = (size_t)width;
    buf_append(frame, line, len);
    buf_append_str(frame, w->tty ? "\033[K\n" : "\n");
}

static void watch_frame(watch_t *w, const leaselist_t *l, buf_t *frame, int width, int height)
{
    int64_t now = clock_mono_ms();
    time_t wall = time(NULL);
    char when[32];
    strftime(when, sizeof when, "%H:%M:%S", localtime(&wall));
    if (w->tty) buf_append_str(frame, "\033[H");
    watch_line(w, frame, width, "shardrun status --watch  %s  application=%s  (q or Ctrl-C to quit)", when,
               w->cfg->application);
    if (!l->leases) {
        watch_line(w, frame, width, "cannot read leases: %s", l->err);
        if (w->tty) buf_append_str(frame, "\033[J");
        return;
    }
    watch_line(w, frame, width, "%-16s %-24s %-30s %-17s %10s %10s  %s", "STREAM", "SHARD", "OWNER", "STATE", "LAG",
               "RECORDS/S", "LAST ERROR");
    size_t counts[6] = {0}; /* processing, retrying (dead-lettering too), halted, idle, finished, other */
    static const char *const kinds[] = {"processing", "retrying", "halted", "idle", "finished"};
    double total_rate = 0, max_lag = -1;
    int shown = 0, room = height > 4 ? height - 4 : 1 << 30;
    for (size_t i = 0; i < l->leases->count; i++) {
        const lease_t *le = &l->leases->leases[i];
        cJSON *info = le->owner && le->info ? cJSON_Parse(le->info) : NULL;
        const char *stream = shardsync_lease_stream(w->cfg, le);
        const char *state = status_state(w->cfg, le, l->leases, info);
        const char *kind = strcmp(state, "dead_lettering") ? state : "retrying"; /* counted with retrying */
        size_t k = 0;
        while (k < 5 && strcmp(kind, kinds[k]))
            k++;
        counts[k]++;
        double behind_ms = info ? watch_num(info, "millisBehind", -1) : -1;
        int64_t behind_n = w->src && stream && le->shard && !le->invalid && w->src->ops->records_behind
                               ? w->src->ops->records_behind(w->src, stream, le->shard, le->checkpoint)
                               : -1;
        double rate = info && le->key ? watch_rate(w, le->key, now, watch_num(info, "records", 0)) : -1;
        if (rate > 0) total_rate += rate;
        if (behind_ms > max_lag) max_lag = behind_ms;
        char lag[48], rate_s[24], dur[24];
        watch_duration(dur, sizeof dur, behind_ms);
        if (behind_n >= 0)
            snprintf(lag, sizeof lag, "%lld rec", (long long)behind_n);
        else
            snprintf(lag, sizeof lag, "%s", dur);
        if (rate >= 0)
            snprintf(rate_s, sizeof rate_s, "%.0f", rate);
        else
            snprintf(rate_s, sizeof rate_s, "-");
        const char *err = le->invalid ? le->invalid : info ? watch_str(info, "error") : NULL;
        if (!err && info) err = watch_str(info, "lastError");
        if (!err && info) err = watch_str(info, "reloadError");
        char first[256] = "";
        if (err) snprintf(first, sizeof first, "%.*s", (int)strcspn(err, "\n"), err);
        if (shown < room) {
            watch_line(w, frame, width, "%-16s %-24s %-30s %-17s %10s %10s  %s", stream ? stream : "?",
                       le->shard ? le->shard : "?", le->owner ? le->owner : "-", state, lag, rate_s, first);
            shown++;
        }
        cJSON_Delete(info);
    }
    if ((size_t)shown < l->leases->count)
        watch_line(w, frame, width, "... %zu more shards (a taller terminal, or shardrun status --json)",
                   l->leases->count - (size_t)shown);
    char lag[24];
    watch_duration(lag, sizeof lag, max_lag);
    watch_line(w, frame, width,
               "TOTAL %zu shards: %zu processing, %zu retrying, %zu halted, %zu idle, %zu finished, %zu other;"
               " %.0f records/s; max lag %s",
               l->leases->count, counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], total_rate, lag);
    if (w->tty) buf_append_str(frame, "\033[J");
}

static int watch_open(watch_t *w, const config_t *cfg)
{
    errbuf_t err;
    w->cfg = cfg;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    if (!w->loop) {
        fprintf(stderr, "shardrun: cannot create an event loop (out of file descriptors?)\n");
        return -1;
    }
    if (backend_aws_new(cfg, w->loop, &w->aws, &err)) {
        fprintf(stderr, "shardrun: %s\n", err.msg);
        return -1;
    }
    return 0;
}


static void watch_close(watch_t *w)
{
    source_destroy(w->src);
    lease_store_destroy(w->store);
    aws_client_free(w->aws);
    if (w->loop) ev_loop_destroy(w->loop);
    for (size_t i = 0; i < w->nhist; i++)
        free(w->hist[i].key);
    free(w->hist);
}

/* Waits up to ms for a key on a terminal in raw mode: 1 on q, Q or ^C (or
 * the terminal closing), 0 on timeout or another key. Without a terminal
 * (raw 0) it only waits; SIGINT/SIGTERM end it either way. */
static int watch_wait_key(int in, int raw, int ms)
{
    struct pollfd p = {.fd = in, .events = POLLIN};
    int64_t until = clock_mono_ms() + ms;
    while (!watch_stop) {
        int64_t left = until - clock_mono_ms();
        if (left <= 0) return 0;
        int n = poll(&p, raw ? 1 : 0, (int)left);
        if (n <= 0) continue; /* timeout (the loop ends) or a signal (watch_stop) */
        char c;
        ssize_t r = read(in, &c, 1);
        if (r == 0) return 1;
        if (r > 0 && (c == 'q' || c == 'Q' || c == 3)) return 1;
    }
    return 1;
}

int status_watch(const config_t *cfg, FILE *out)
{
    watch_t w = {0};
    if (watch_open(&w, cfg)) {
        watch_close(&w);
        return 1;
    }
    int fd = fileno(out), in = STDIN_FILENO;
    w.tty = isatty(fd);
    struct termios saved;
    int raw = isatty(in) && tcgetattr(in, &saved) == 0;
    if (raw) {
        struct termios t = saved;
        t.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        tcsetattr(in, TCSANOW, &t);
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = watch_on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (w.tty) fputs("\033[?1049h\033[?25l", out); /* the alternate screen, no cursor */
    int rc = 0;
    watch_stop = 0;
    while (!watch_stop) {
        struct winsize ws = {0};
        int width = 0, height = 0;
        if (w.tty && ioctl(fd, TIOCGWINSZ, &ws) == 0) width = ws.ws_col, height = ws.ws_row;
        leaselist_t l;
        if (watch_read(&w, &l))
            rc = 1;
        else
            rc = 0;
        if (l.done && l.st != LEASE_OK) {
            lease_list_free(l.leases);
            l.leases = NULL;
        }
        buf_t frame = BUF_INIT;
        watch_frame(&w, &l, &frame, width, height);
        if (!w.tty) buf_append_char(&frame, '\n'); /* frames one after the other */
        fwrite(frame.data, 1, frame.len, out);
        fflush(out);
        buf_free(&frame);
        lease_list_free(l.leases);
        if (!l.done) break; /* the store's late answer would write into this frame's stack */
        if (watch_wait_key(in, raw, WATCH_REFRESH_MS)) break;
    }
    if (w.tty) fputs("\033[?25h\033[?1049l", out);
    fflush(out);
    if (raw) tcsetattr(in, TCSANOW, &saved);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    watch_close(&w);
    return rc;
}
