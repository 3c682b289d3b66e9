#include "doorbell.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/xalloc.h"

#define DOORBELL_SUFFIX "-wake"

struct doorbell {
    struct ev_loop *loop;
    ev_io io;
    int fd;
    char *dir;
    doorbell_cb cb;
    void *ud;
};

static int doorbell_dir(const char *stream_path, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s" DOORBELL_SUFFIX, stream_path);
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

void doorbell_ring(const char *stream_path, const int64_t *sids, size_t n)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    if (!n || doorbell_dir(stream_path, dir, sizeof dir)) return;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%" PRId64, dir, sids[i]);
        /* a timestamp update is one system call; inotify reports it as IN_ATTRIB */
        if (utimensat(AT_FDCWD, path, NULL, 0) == 0 || errno != ENOENT) continue;
        /* the shard's first ring: its file (and maybe the folder) is created,
         * reported as IN_CLOSE_WRITE once closed */
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) return;
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd >= 0) close(fd);
    }
}

/* A name in the folder is a shard's row id; anything else is not ours. */
static int doorbell_parse(const char *name, int64_t *sid)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(name, &end, 10);
    if (errno || end == name || *end || v < 0) return -1;
    *sid = v;
    return 0;
}

static void doorbell_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    doorbell_t *d = io->data;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t len = read(d->fd, buf, sizeof buf);
        if (len <= 0) {
            if (len < 0 && errno == EINTR) continue;
            return; /* EAGAIN: all read */
        }
        int64_t last = -2;
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            int64_t sid;
            if (ev->mask & IN_Q_OVERFLOW) {
                log_info("doorbell_overflow", "folder=%s action=\"wake every reader\"", d->dir);
                d->cb(d->ud, -1);
                last = -2;
            } else if (ev->mask & IN_IGNORED) {
                /* the folder was removed: readers fall back to polling */
                log_warn("doorbell_gone", "folder=%s action=\"readers poll (idle_time_between_reads_ms) until "
                         "restarted\"", d->dir);
                ev_io_stop(d->loop, &d->io);
                d->cb(d->ud, -1);
                return;
            } else if (ev->len && !doorbell_parse(ev->name, &sid) && sid != last) {
                d->cb(d->ud, sid); /* a put of many records rings once per shard: consecutive repeats are one */
                last = sid;
            }
        }
    }
}

doorbell_t *doorbell_open(struct ev_loop *loop, const char *stream_path, doorbell_cb cb, void *ud, errbuf_t *err)
{
    char dir[PATH_MAX];
    if (doorbell_dir(stream_path, dir, sizeof dir))
        return errbuf_set(err, "%s: path too long for its wake-up folder", stream_path), NULL;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return errbuf_set(err, "%s: cannot create the wake-up folder: %s", dir, strerror(errno)), NULL;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return errbuf_set(err, "%s: inotify: %s", dir, strerror(errno)), NULL;
    if (inotify_add_watch(fd, dir, IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
        errbuf_set(err, "%s: cannot watch the wake-up folder: %s", dir, strerror(errno));
        close(fd);
        return NULL;
    }
    doorbell_t *d = xcalloc(1, sizeof *d); /* owned by the caller: doorbell_close */
    d->loop = loop;
    d->fd = fd;
    d->dir = xstrdup(dir);
    d->cb = cb;
    d->ud = ud;
    ev_io_init(&d->io, doorbell_on_read, fd, EV_READ);
    d->io.data = d;
    ev_io_start(loop, &d->io);
    return d;
}

void doorbell_close(doorbell_t *d)
{
    if (!d) return;
    ev_io_stop(d->loop, &d->io);
    close(d->fd);
    free(d->dir);
    free(d);
}
