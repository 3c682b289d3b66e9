/* destinations: the config's outputs, opened and checked.
 *
 * An output is a stream of the worker's source, or of a source of its own
 * (outputs.<name>.type: its own local file, or its own Kinesis
 * region/endpoint, sharing the process's AWS client). At start every
 * output's stream must exist: a missing one is a configuration error (the
 * worker exits 2, naming it); one that cannot be reached is a runtime
 * failure (exit 1). The shards get the opened outputs as output_dest_t
 * (shard/output.h), in the config's order (by name). */
#ifndef SHARDRUN_DESTINATIONS_H
#define SHARDRUN_DESTINATIONS_H

#include <stddef.h>

#include "aws/client.h"
#include "base/errbuf.h"
#include "config/config.h"
#include "shard/output.h"
#include "source/source.h"

struct ev_loop;

typedef struct destinations {
    output_dest_t *dests;     /* one per cfg->outputs */
    char **names;             /* the same names, for the processors' shard.emit */
    source_t **own;           /* per output: the source it owns, or NULL (the worker's) */
    size_t n;
} destinations_t;

/* Opens every output of cfg (source: the worker's; aws: the process's
 * client, NULL when no AWS backend is configured). 0, or -1 with err naming
 * the output. On failure, destinations_close still frees what was opened.
 * d points into cfg: cfg must outlive it. */
int destinations_open(destinations_t *d, const config_t *cfg, struct ev_loop *loop, source_t *source,
                      aws_client_t *aws, errbuf_t *err);
/* Asks each output's source for the stream's shards as the configured
 * streams are asked (preflight.h), before anything else is started on the
 * loop. 0 when every stream exists; 2 when one does not; 1 when one cannot
 * be checked (err says). */
int destinations_check(destinations_t *d, struct ev_loop *loop, errbuf_t *err);
/* Frees; each owned source is destroyed (its puts cancelled, no callback runs). */
void destinations_close(destinations_t *d);

/* Records and bytes one put to a local stream takes (one transaction). */
#define DESTINATIONS_LOCAL_PUT_RECORDS 10000
#define DESTINATIONS_LOCAL_PUT_BYTES (8 * 1024 * 1024)

#endif
