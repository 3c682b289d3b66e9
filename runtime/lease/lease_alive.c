#include "lease_alive.h"

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/xalloc.h"

#define ALIVE_SUFFIX "-workers"
#define ALIVE_NAME_MAX 200        /* an encoded id longer than this gets no file */
#define ALIVE_BOOT_LEN 36         /* a boot id: a UUID's text */
#define ALIVE_PROBE_FIRST_MS 2    /* a closed file whose lock is still held is probed again, */
#define ALIVE_PROBE_TRIES 9       /* doubling the wait: about half a second in all */

typedef enum { PROBE_UNKNOWN, PROBE_HELD, PROBE_DEAD } probe_t;

/* A peer's file was closed while its lock still looked held: the kernel
 * reports the close before it drops the lock of an open file description,
 * so the lock is looked at again shortly. */
typedef struct reprobe {
    char *name;
    int tries;
} reprobe_t;

struct lease_alive {
    struct ev_loop *loop;
    char *dir;
    char boot[ALIVE_BOOT_LEN + 1];
    char *self;                  /* this worker's file name, NULL until joined */
    int fd;                      /* holds the lock; -1 */
    int ifd;                     /* inotify, -1 */
    ev_io io;
    ev_timer retry;
    int64_t retry_ms;
    reprobe_t *reprobes;
    size_t nreprobes;
    lease_alive_cb gone;
    void *ud;
};

/* ---- names ------------------------------------------------------------------------ */

/* A worker id as a file name: [A-Za-z0-9._:-] kept, any other byte %XX. */
static int alive_encode(const char *id, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
                   *p == '_' || *p == ':' || *p == '-';
        if (n + 4 > outsz || n + 4 > ALIVE_NAME_MAX) return -1;
        if (keep) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return n && strcmp(out, ".") && strcmp(out, "..") ? 0 : -1;
}

static int alive_hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int alive_decode(const char *name, char *out, size_t outsz)
{
    size_t n = 0;
    for (const char *p = name; *p; p++) {
        if (n + 1 >= outsz) return -1;
        if (*p == '%') {
            int hi = alive_hexval(p[1]), lo = hi < 0 ? -1 : alive_hexval(p[2]);
            if (lo < 0) return -1;
            out[n++] = (char)(hi << 4 | lo);
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return 0;
}

/* ---- probing (any thread) ---------------------------------------------------------- */

static probe_t alive_probe(const lease_alive_t *a, const char *name)
{
    char path[PATH_MAX], head[ALIVE_BOOT_LEN + 1];
    if (snprintf(path, sizeof path, "%s/%s", a->dir, name) >= (int)sizeof path) return PROBE_UNKNOWN;
    /* read-only: a peer's probe never looks like a worker closing its file */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return PROBE_UNKNOWN;
    ssize_t got = pread(fd, head, ALIVE_BOOT_LEN, 0);
    probe_t r = PROBE_UNKNOWN;
    if (got == ALIVE_BOOT_LEN && !memcmp(head, a->boot, ALIVE_BOOT_LEN)) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_OFD_GETLK, &fl) == 0) r = fl.l_type == F_UNLCK ? PROBE_DEAD : PROBE_HELD;
    }
    close(fd);
    return r;
}

int lease_alive_dead(const lease_alive_t *a, const char *worker_id)
{
    char name[ALIVE_NAME_MAX + 4];
    if (!a->self || alive_encode(worker_id, name, sizeof name) || !strcmp(name, a->self)) return 0;
    return alive_probe(a, name) == PROBE_DEAD;
}

void lease_alive_sweep(const lease_alive_t *a, const char *const *owners, size_t n)
{
    if (!a->self) return;
    DIR *d = opendir(a->dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, a->self)) continue;
        int owns = 0;
        char name[ALIVE_NAME_MAX + 4];
        for (size_t i = 0; i < n && !owns; i++)
            owns = owners[i] && !alive_encode(owners[i], name, sizeof name) && !strcmp(name, e->d_name);
        if (owns || alive_probe(a, e->d_name) != PROBE_DEAD) continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", a->dir, e->d_name) < (int)sizeof path) unlink(path);
    }
    closedir(d);
}

/* ---- peers that end (loop thread) ---------------------------------------------------- */

static void alive_tell(lease_alive_t *a, const char *name, const char *how)
{
    char id[ALIVE_NAME_MAX + 4];
    if (alive_decode(name, id, sizeof id)) return;
    log_info("worker_gone", "worker=%s how=%s action=\"its leases may be taken now\"", id, how);
    a->gone(a->ud, id);
}

static void alive_reprobe_drop(lease_alive_t *a, size_t i)
{
    free(a->reprobes[i].name);
    a->reprobes[i] = a->reprobes[--a->nreprobes];
}

static void alive_on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    lease_alive_t *a = t->data;
    for (size_t i = 0; i < a->nreprobes;) {
        reprobe_t *r = &a->reprobes[i];
        probe_t p = alive_probe(a, r->name);
        if (p == PROBE_DEAD) alive_tell(a, r->name, "exited");
        if (p != PROBE_HELD || ++r->tries >= ALIVE_PROBE_TRIES) alive_reprobe_drop(a, i); /* held that long: alive */
        else i++;
    }
    if (!a->nreprobes) return;
    a->retry_ms *= 2;
    ev_timer_set(t, (double)a->retry_ms / 1000.0, 0.0);
    ev_timer_start(loop, t);
}

static void alive_closed(lease_alive_t *a, const char *name)
{
    probe_t p = alive_probe(a, name);
    if (p == PROBE_DEAD) {
        alive_tell(a, name, "exited");
        return;
    }
    if (p != PROBE_HELD) return;
    for (size_t i = 0; i < a->nreprobes; i++)
        if (!strcmp(a->reprobes[i].name, name)) return;
    a->reprobes = xrealloc(a->reprobes, (a->nreprobes + 1) * sizeof *a->reprobes); /* owned by a */
    a->reprobes[a->nreprobes++] = (reprobe_t){xstrdup(name), 0};
    if (!ev_is_active(&a->retry)) {
        a->retry_ms = ALIVE_PROBE_FIRST_MS;
        ev_timer_set(&a->retry, (double)a->retry_ms / 1000.0, 0.0);
        ev_timer_start(a->loop, &a->retry);
    }
}

static void alive_on_event(struct ev_loop *loop, ev_io *io, int revents)
{
    lease_alive_t *a = io->data;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t len = read(a->ifd, buf, sizeof buf);
        if (len <= 0) {
            if (len < 0 && errno == EINTR) continue;
            return;
        }
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_IGNORED) {
                log_warn("worker_watch_gone", "folder=%s action=\"peers' deaths are seen at the next lease scan\"",
                         a->dir);
                ev_io_stop(loop, io);
                return;
            }
            if (!ev->len || !strcmp(ev->name, a->self)) continue;
            /* a graceful exit removes its file; so does a peer sweeping a dead worker's */
            if (ev->mask & IN_DELETE) alive_tell(a, ev->name, "file_removed");
            else if (ev->mask & IN_CLOSE_WRITE) alive_closed(a, ev->name);
        }
    }
}

/* ---- this worker ---------------------------------------------------------------------- */

static int alive_read_boot(char *out)
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t got = read(fd, out, ALIVE_BOOT_LEN);
    close(fd);
    if (got != ALIVE_BOOT_LEN) return -1;
    out[ALIVE_BOOT_LEN] = '\0';
    return 0;
}

/* Creates and locks this worker's file. A sweeping peer may remove the file
 * between its creation and the lock (it looked dead): then the lock is on a
 * file nobody can see, and it is made again. */
static int alive_hold(lease_alive_t *a, const char *name, const char *worker_id, errbuf_t *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", a->dir, name) >= (int)sizeof path)
        return errbuf_set(err, "%s: path too long", a->dir);
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) return errbuf_set(err, "%s: %s", path, strerror(errno));
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
            int e = errno;
            close(fd);
            if (e == EAGAIN || e == EACCES)
                return errbuf_set(err, "%s: worker id %s is in use by another live process on this machine "
                                  "(give each worker its own worker_id)", path, worker_id);
            return errbuf_set(err, "%s: lock: %s", path, strerror(e));
        }
        char text[ALIVE_BOOT_LEN + 64];
        int n = snprintf(text, sizeof text, "%s\npid %d\n", a->boot, (int)getpid());
        struct stat held, named;
        if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
            errbuf_set(err, "%s: write: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (fstat(fd, &held) == 0 && stat(path, &named) == 0 && held.st_ino == named.st_ino &&
            held.st_dev == named.st_dev) {
            a->fd = fd;
            return 0;
        }
        close(fd);
    }
    return errbuf_set(err, "%s: removed each time it was made", path);
}

lease_alive_t *lease_alive_new(struct ev_loop *loop, const char *lease_path)
{
    lease_alive_t *a = xcalloc(1, sizeof *a); /* owned by the caller: lease_alive_free */
    a->loop = loop;
    size_t n = strlen(lease_path) + sizeof ALIVE_SUFFIX;
    a->dir = xmalloc(n);
    snprintf(a->dir, n, "%s" ALIVE_SUFFIX, lease_path);
    a->fd = a->ifd = -1;
    ev_timer_init(&a->retry, alive_on_retry, 0.0, 0.0);
    a->retry.data = a;
    return a;
}

int lease_alive_join(lease_alive_t *a, const char *worker_id, lease_alive_cb gone, void *ud, errbuf_t *err)
{
    char name[ALIVE_NAME_MAX + 4];
    if (a->self) return errbuf_set(err, "%s: joined already", a->dir);
    if (alive_encode(worker_id, name, sizeof name))
        return errbuf_set(err, "worker id %s: too long for a file name", worker_id);
    if (alive_read_boot(a->boot)) return errbuf_set(err, "/proc/sys/kernel/random/boot_id: cannot read it");
    if (mkdir(a->dir, 0777) != 0 && errno != EEXIST) return errbuf_set(err, "%s: %s", a->dir, strerror(errno));
    if (alive_hold(a, name, worker_id, err)) return -1;
    a->self = xstrdup(name);
    a->gone = gone;
    a->ud = ud;
    a->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (a->ifd < 0 || inotify_add_watch(a->ifd, a->dir, IN_CLOSE_WRITE | IN_DELETE | IN_ONLYDIR) < 0) {
        /* the lock still works: peers see this worker's death at their next scan */
        log_warn("worker_watch_unavailable", "folder=%s error=\"%s\" action=\"peers' deaths are seen at the next "
                 "lease scan\"", a->dir, strerror(errno));
        if (a->ifd >= 0) close(a->ifd);
        a->ifd = -1;
        return 0;
    }
    ev_io_init(&a->io, alive_on_event, a->ifd, EV_READ);
    a->io.data = a;
    ev_io_start(a->loop, &a->io);
    return 0;
}

void lease_alive_free(lease_alive_t *a)
{
    if (!a) return;
    if (a->ifd >= 0) {
        ev_io_stop(a->loop, &a->io);
        close(a->ifd);
    }
    ev_timer_stop(a->loop, &a->retry);
    while (a->nreprobes) alive_reprobe_drop(a, a->nreprobes - 1);
    free(a->reprobes);
    if (a->fd >= 0) {
        /* removed first, then unlocked: no peer can find it unlocked and call it dead */
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", a->dir, a->self) < (int)sizeof path) unlink(path);
        close(a->fd);
    }
    free(a->self);
    free(a->dir);
    free(a);
}
