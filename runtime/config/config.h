/* config: loads a config file (Lua) in a throwaway state and validates every
 * field. Errors name the file, the line where the field is written (where it
 * can be known: see config_lines.h) and the field:
 *   shardrun.lua:6: streams[1].initial_position: expected TRIM_HORIZON, LATEST or AT_TIMESTAMP, got "OLDEST"
 * Unknown fields are rejected, so a typo never silently becomes a default;
 * the known field nearest to a typo is suggested ("did you mean `processor`?"). */
#ifndef SHARDRUN_CONFIG_H
#define SHARDRUN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/errbuf.h"
#include "source/source.h"

typedef enum { BACKEND_LOCAL, BACKEND_AWS } backend_t;

typedef enum { CONFIG_LOG_TEXT, CONFIG_LOG_JSON } config_log_format_t;

/* metrics = { listen = "127.0.0.1:9464", loop_stall_ms = 2000 } (off when absent) */
typedef struct config_metrics {
    char *listen;             /* as written; NULL: no metrics server */
    char *host;               /* the address part: an IPv4 or IPv6 literal (no brackets) */
    int port;                 /* 0: the OS chooses (the worker logs the port it got) */
    int64_t loop_stall_ms;    /* /healthz is 503 once the loop has not turned for this long */
} config_metrics_t;

typedef enum { FINAL_SKIP, FINAL_DEAD_LETTER, FINAL_HALT } policy_final_t;

typedef struct policy_config {
    int64_t retries;          /* retries of a failing call (after its first try); -1 = forever */
    int64_t backoff_ms;       /* first retry delay */
    int64_t max_backoff_ms;
    int isolate;              /* 1: narrow failures down to the failing records ("record"); 0: "batch" */
    int64_t max_record_age_s; /* 0 = none; older failing records go straight to `final` */
    policy_final_t final;     /* what happens when retries are exhausted */
    char *dead_letter_file;   /* JSONL path (final = dead_letter) */
    int64_t dead_letter_max_bytes;  /* rotate the file past this size */
    char *dead_letter_stream; /* or a stream of the same source */
    int halt_worker;          /* halt exits the worker non-zero instead of stopping one shard */
    int64_t breaker_window;   /* records the poison-rate breaker looks at; 0 = off */
    double breaker_threshold; /* failing share that trips it */
} policy_config_t;

typedef struct config_stream {
    char *name;
    char *processor;          /* absolute path of the script */
    source_pos_kind_t initial_position;
    int64_t initial_timestamp_ms;   /* AT_TIMESTAMP */
    policy_config_t policy;
    int64_t process_timeout_ms;     /* 0 = none */
    int64_t memory_limit_mb;        /* 0 = none */
    int64_t max_records;            /* per GetRecords, default 10000 */
    int64_t checkpoint_interval_ms; /* 0 = write every decision */
    int64_t prefetch_batches;       /* default 2 */
    int64_t idle_time_between_reads_ms; /* default 1000 */
    char *kcl_stream_identifier;    /* "account:stream:creationEpoch" (KCL 2.x/3.x multi-stream): its lease
                                       keys are "<identifier>:<shardId>", as that KCL table has them; NULL:
                                       shardrun's keys (the shard id, or "stream:shard" for several streams) */
    int64_t timer_interval_ms;      /* onTimer every this often; 0 = never */
    int64_t max_batching_window_ms; /* gather records this long before processRecords; 0 = no gathering */
    int64_t min_batch_records;      /* ...unless this many are there (default max_records) */
    int64_t max_emit_buffer_mb;     /* emitted, not yet acknowledged, per shard (default 32) */
} config_stream_t;

/* outputs = { name = { stream = ..., [type, path | region, endpoint] } }:
 * where shard.emit(name, ...) puts records. Without type, a stream of the
 * source; with one, a destination of its own. */
typedef struct config_output {
    char *name;
    char *stream;
    int own;                  /* 1: its own destination below, 0: the source's */
    backend_t type;
    char *path;               /* local */
    char *region, *endpoint;  /* kinesis */
} config_output_t;

typedef struct config {
    char *path;               /* as given */
    char *dir;                /* its directory: relative paths resolve here */
    char *application;
    char *worker_id;          /* NULL = hostname:pid:random */
    struct {
        backend_t type;
        char *path;           /* local */
        char *region, *endpoint, *ca_file;   /* kinesis */
        char *consumer;       /* kinesis: read by enhanced fan-out as this consumer; NULL = polling */
        int http_version;     /* kinesis: AWS_HTTP_VERSION_* (0: HTTP/2 for https, HTTP/1.1 for http) */
    } source;
    struct {
        char *profile;        /* overrides AWS_PROFILE */
        char *access_key_id, *secret_access_key, *session_token;   /* explicit: first in the chain */
    } aws;
    struct {
        backend_t type;
        char *path;           /* local */
        char *table;          /* default: application */
        int table_from_application;   /* table was not set: it is the application's name */
        char *region, *endpoint;   /* dynamodb */
    } leases;
    config_stream_t *streams;
    size_t nstreams;
    config_output_t *outputs;    /* sorted by name (an emitted record carries its output's index) */
    size_t noutputs;
    int64_t processor_threads;   /* default: number of cores */
    int64_t lease_duration_ms;   /* default 10000 */
    int64_t renew_interval_ms;   /* default lease_duration / 3 */
    int64_t taker_interval_ms;   /* default 2000 */
    int64_t max_steal;           /* default 1 */
    int64_t shard_sync_interval_ms;  /* default 60000 */
    int64_t max_buffered_mb;     /* default 256 */
    int64_t shutdown_grace_ms;   /* default 30000 */
    char **lua_path;             /* extra folders for require */
    size_t nlua_path;
    int64_t reload_rollback_after_failures;  /* 0 = never */
    config_metrics_t metrics;
    config_log_format_t log_format;          /* log_format = "text" (key=value, default) | "json" */
} config_t;

/* Loads and validates; on error returns NULL with err set. Caller owns the
 * result: config_free(). */
config_t *config_load(const char *path, errbuf_t *err);
void config_free(config_t *c);
/* The index in c->streams of the stream named `name`, or -1 (also for NULL). */
int config_stream_index(const config_t *c, const char *name);

#endif
