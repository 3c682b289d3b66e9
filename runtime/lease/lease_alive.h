/* lease_alive: which workers sharing a local lease file on this machine are
 * alive, as the kernel knows it.
 *
 * Each worker that takes leases from a local (SQLite) lease store holds an
 * open file description lock (F_OFD_SETLK) on a file of its own, in a
 * folder beside the lease file:
 *
 *     <lease file>-workers/<worker id, %-encoded>
 *
 * The kernel drops the lock when the process ends, however it ends (kill -9
 * included), and inotify tells every peer watching the folder that the file
 * was closed: a peer learns at once that the worker is gone and may take its
 * leases without waiting for lease_duration to pass.
 *
 * Dead means: the file exists, it was written on this boot of this machine
 * (the boot id is in it: a file on a shared disk written by a worker on
 * another host says nothing about that worker) and no process holds its
 * lock. Anything else is "not known dead", and the lease clock rules: no
 * file (a worker on another host, an older shardrun, one that could not
 * create it), another boot, or a lock still held. A worker paused with
 * SIGSTOP still holds its lock: its leases expire by the clock only.
 *
 * A dead worker stays dead: worker ids are unique per process
 * (host:pid:random); a process that reuses a configured id takes its lock
 * before it takes any lease, and releases the rows in its name it does not
 * hold (lease_plan), so the conditional writes settle a race with a peer
 * taking them. */
#ifndef SHARDRUN_LEASE_ALIVE_H
#define SHARDRUN_LEASE_ALIVE_H

#include <stddef.h>

#include "base/errbuf.h"

struct ev_loop;

typedef struct lease_alive lease_alive_t;

/* A peer's file was closed and its lock is free: it died (or stopped). */
typedef void (*lease_alive_cb)(void *ud, const char *worker_id);

/* For the lease file at lease_path; nothing is created yet. Caller owns the
 * result: lease_alive_free(). */
lease_alive_t *lease_alive_new(struct ev_loop *loop, const char *lease_path);

/* Loop thread: holds this worker's lock (creating its file and the folder)
 * and watches the folder for peers that end; `gone` runs on the loop. 0, or
 * -1 with err set (no lock: the lease clock alone tells this worker's death;
 * another live process using the same worker id is one reason). */
int lease_alive_join(lease_alive_t *a, const char *worker_id, lease_alive_cb gone, void *ud, errbuf_t *err);

/* Any thread, after join: 1 if the worker is known dead (see above). */
int lease_alive_dead(const lease_alive_t *a, const char *worker_id);

/* Any thread, after join: removes the files of dead workers that own no
 * lease any more (owners: the leaseOwner values of the whole table, any
 * order), so the folder does not grow with every process that ever ran. */
void lease_alive_sweep(const lease_alive_t *a, const char *const *owners, size_t n);

/* Loop thread: a joined worker's file is removed and its lock dropped. */
void lease_alive_free(lease_alive_t *a);

#endif
