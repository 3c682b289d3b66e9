/* fspath: small file-system path helpers shared by the local backends. */
#ifndef SHARDRUN_FSPATH_H
#define SHARDRUN_FSPATH_H

#include "errbuf.h"

/* Creates the folders above the file `path` that do not exist yet (mkdir -p
 * of its dirname, mode 0777 before umask), so a fresh checkout's
 * `data/streams.db` works without a manual mkdir. Returns 0, or -1 with err
 * naming the folder that could not be created and why. */
int fspath_mkdir_parents(const char *path, errbuf_t *err);

#endif
