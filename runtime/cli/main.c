/* shardrun: the command line. Exit status 0 on success, 1 on a runtime
 * failure, 2 on bad usage or bad config. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <luajit.h>

#include "base/clock.h"
#include "base/digest.h"
#include "config/config.h"
#include "shard/deadletter.h"
#include "kinesis_admin.h"
#include "source/source_kinesis.h"
#include "base/log.h"
#include "proc/processor.h"
#include "project.h"
#include "resume.h"
#include "status.h"
#include "status_watch.h"
#include "source/streamdb.h"
#include "worker/worker.h"
#include "base/xalloc.h"

#ifndef SHARDRUN_VERSION
#define SHARDRUN_VERSION "0.0.0"
#endif

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define PUT_TXN_RECORDS 1000

typedef struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} cli_cmd_t;

static const char *cli_config_path = "shardrun.lua";
static int cli_verbose; /* -v was given */

static int cli_usage_error(const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "shardrun: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: %s\n", usage);
    return EXIT_USAGE;
}

/* Parses -c/--config, -v/--verbose, --help and the flags in `extra`; returns
 * optind, or -1 after --help (printed), -2 on a bad option. */
typedef struct cli_flag {
    const char *name;
    int has_arg;
    const char **value;   /* has_arg: the argument */
    int *set;             /* flag: set to 1 */
} cli_flag_t;

static int cli_parse(int argc, char **argv, const char *usage, cli_flag_t *extra, size_t nextra)
{
    struct option opts[16] = {
        {"config", required_argument, NULL, 'c'}, {"verbose", no_argument, NULL, 'v'}, {"help", no_argument, NULL, 'h'},
    };
    size_t n = 3;
    for (size_t i = 0; i < nextra && n < 15; i++, n++)
        opts[n] = (struct option){extra[i].name, extra[i].has_arg ? required_argument : no_argument, NULL,
                                  1000 + (int)i};
    opts[n] = (struct option){0, 0, 0, 0};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        if (c == 'c') cli_config_path = optarg;
        else if (c == 'v') {
            log_set_level(LOG_DEBUG);
            cli_verbose = 1;
        }
        else if (c == 'h') {
            printf("usage: %s\n", usage);
            return -1;
        } else if (c >= 1000) {
            cli_flag_t *f = &extra[c - 1000];
            if (f->has_arg) *f->value = optarg;
            else *f->set = 1;
        } else {
            cli_usage_error(usage, "unknown or incomplete option %s", argv[optind - 1]);
            return -2;
        }
    }
    return optind;
}

#define CLI_PARSE(argc, argv, usage, flags, n)                                                                     \
    int first = cli_parse(argc, argv, usage, flags, n);                                                            \
    if (first == -1) return 0;                                                                                     \
    if (first == -2) return EXIT_USAGE

static config_t *cli_config(void)
{
    errbuf_t err;
    config_t *c = config_load(cli_config_path, &err);
    if (!c) fprintf(stderr, "shardrun: %s\n", err.msg);
    else log_set_json(c->log_format == CONFIG_LOG_JSON);
    return c;
}

/* ---- run ------------------------------------------------------------------ */

static const char *const usage_run = "shardrun run [-c FILE] [--drain] [-v]\n"
                                     "  run a worker until SIGTERM/SIGINT; --drain: until every owned shard is caught up";

static int cmd_run(int argc, char **argv)
{
    int drain = 0;
    cli_flag_t flags[] = {{"drain", 0, NULL, &drain}};
    CLI_PARSE(argc, argv, usage_run, flags, 1);
    if (first < argc) return cli_usage_error(usage_run, "unexpected argument %s", argv[first]);
    config_t *cfg = cli_config();
    if (!cfg) return EXIT_USAGE;
    worker_options_t opt = {.drain = drain};
    int rc = worker_run(cfg, &opt);
    config_free(cfg);
    return rc;
}

/* ---- check ---------------------------------------------------------------- */

static const char *const usage_check = "shardrun check SCRIPT...\n"
                                       "  compile and validate processor scripts (as a hot reload would)";

static int cmd_check(int argc, char **argv)
{
    CLI_PARSE(argc, argv, usage_check, NULL, 0);
    if (first >= argc) return cli_usage_error(usage_check, "%s", "no script given");
    int rc = 0;
    for (int i = first; i < argc; i++) {
        errbuf_t err;
        /* the same validation as a hot reload: initialize runs on a sample shard */
        proc_shard_info_t sample = {"check", "shardId-000000000000", "TRIM_HORIZON", "shardrun-check"};
        proc_script_t *s = proc_script_load(argv[i], NULL, 0, &sample, &err);
        if (!s) {
            /* a broken script is bad input, as for `run` (which refuses it with 2 too) */
            fprintf(stderr, "shardrun: %s\n", err.msg);
            rc = EXIT_USAGE;
            continue;
        }
        printf("ok %s version=%s\n", argv[i], s->hash);
        proc_script_unref(s);
    }
    return rc;
}

/* ---- status --------------------------------------------------------------- */

static const char *const usage_status = "shardrun status [-c FILE] [--json | --watch]\n"
                                        "  every lease: stream, shard, owner, checkpoint, counter, parents, state, lag;\n"
                                        "  --watch: a live view, refreshed every second (q or Ctrl-C quits)";

static int cmd_status(int argc, char **argv)
{
    int json = 0, watch = 0;
    cli_flag_t flags[] = {{"json", 0, NULL, &json}, {"watch", 0, NULL, &watch}};
    log_set_level(LOG_WARN); /* a read: quiet on stderr unless -v (which comes next) */
    CLI_PARSE(argc, argv, usage_status, flags, 2);
    if (first < argc) return cli_usage_error(usage_status, "unexpected argument %s", argv[first]);
    if (json && watch) return cli_usage_error(usage_status, "%s", "--json and --watch do not go together");
    config_t *cfg = cli_config();
    if (!cfg) return EXIT_USAGE;
    int rc = watch ? status_watch(cfg, stdout) : status_print(cfg, json, stdout);
    config_free(cfg);
    return rc;
}

/* ---- resume --------------------------------------------------------------- */

static const char *const usage_resume =
    "shardrun resume [-c FILE] STREAM [SHARD] [--skip]\n"
    "  ask the owners of the stream's halted shards (or of SHARD) to go on, wherever they run;\n"
    "  --skip: skip the records each one halted at first (counted and logged as skipped)";

static int cmd_resume(int argc, char **argv)
{
    int skip = 0;
    cli_flag_t flags[] = {{"skip", 0, NULL, &skip}};
    CLI_PARSE(argc, argv, usage_resume, flags, 1);
    if (first >= argc) return cli_usage_error(usage_resume, "%s", "no stream given");
    if (argc - first > 2) return cli_usage_error(usage_resume, "unexpected argument %s", argv[first + 2]);
    config_t *cfg = cli_config();
    if (!cfg) return EXIT_USAGE;
    int rc = config_stream_index(cfg, argv[first]) >= 0
                 ? resume_request(cfg, argv[first], first + 1 < argc ? argv[first + 1] : NULL, skip, stdout)
                 : cli_usage_error(usage_resume, "stream %s is not in the config", argv[first]);
    config_free(cfg);
    return rc;
}

/* ---- stream --------------------------------------------------------------- */

static const char *const usage_stream =
    "shardrun stream [-c FILE] create NAME --shards N | list | split NAME SHARD [--hash-key K] | merge NAME SHARD1 SHARD2\n"
    "                          | consumers NAME | deregister-consumer NAME [CONSUMER]";

/* The local stream file of a local-source config. */
static streamdb_t *cli_streamdb(const config_t *cfg, int create)
{
    errbuf_t err;
    streamdb_t *db = NULL;
    if (streamdb_open(cfg->source.path, create, &db, &err)) fprintf(stderr, "shardrun: %s\n", err.msg);
    return db;
}

static void cli_print_stream(void *ud, const char *name, int open, int total, int64_t records)
{
    printf("%-24s open_shards=%d shards=%d records=%lld\n", name, open, total, (long long)records);
}

static void cli_print_kinesis_stream(void *ud, const char *name, int open, int total)
{
    printf("%-24s open_shards=%d shards=%d\n", name, open, total);
}

/* "ok split s: shardId-000000000000 -> shardId-000000000002 shardId-000000000003":
 * the children a split or merge made, found among the stream's shards by
 * their parents (NULL list: printed without them). */
static void cli_print_resharded(const char *sub, char **args, const source_shard_list_t *l)
{
    const char *p1 = args[1], *p2 = !strcmp(sub, "merge") ? args[2] : NULL;
    printf("ok %s %s: %s%s%s ->", sub, args[0], p1, p2 ? " + " : "", p2 ? p2 : "");
    for (size_t i = 0; l && i < l->count; i++) {
        const source_shard_t *c = &l->shards[i];
        int of_p1 = (c->parent && !strcmp(c->parent, p1)) || (c->adjacent_parent && !strcmp(c->adjacent_parent, p1));
        int of_p2 = !p2 || (c->parent && !strcmp(c->parent, p2)) || (c->adjacent_parent && !strcmp(c->adjacent_parent, p2));
        if (of_p1 && of_p2) printf(" %s", c->id);
    }
    printf("\n");
}

static void cli_print_consumer(void *ud, const char *name, const char *status, const char *arn)
{
    printf("%-24s status=%s arn=%s\n", name, status, arn);
}

/* stream consumers NAME | deregister-consumer NAME [CONSUMER] (enhanced
 * fan-out); frees cfg. */
static int cli_stream_consumers(config_t *cfg, const char *sub, char **args, int nargs)
{
    errbuf_t err;
    if (cfg->source.type != BACKEND_AWS) {
        config_free(cfg);
        fprintf(stderr, "shardrun: stream %s: consumers are a Kinesis feature (enhanced fan-out); the local stream "
                "has none\n", sub);
        return EXIT_USAGE;
    }
    const char *consumer = nargs == 2 ? args[1] : cfg->source.consumer;
    if (!strcmp(sub, "deregister-consumer") && !consumer) {
        config_free(cfg);
        return cli_usage_error(usage_stream, "%s", "deregister-consumer: name the CONSUMER (the config has no "
                               "source.consumer)");
    }
    char *name = consumer ? xstrdup(consumer) : NULL;
    kinesis_admin_t *ka = kinesis_admin_open(cfg, &err);
    config_free(cfg);
    int rc = -1;
    if (ka && !strcmp(sub, "consumers")) rc = kinesis_admin_consumers(ka, args[0], cli_print_consumer, NULL, &err);
    else if (ka) rc = kinesis_admin_deregister_consumer(ka, args[0], name, &err);
    kinesis_admin_close(ka);
    if (rc) fprintf(stderr, "shardrun: %s\n", err.msg);
    else if (name && strcmp(sub, "consumers")) printf("ok %s %s %s\n", sub, args[0], name);
    free(name);
    return rc ? EXIT_RUNTIME : 0;
}

static int cmd_stream(int argc, char **argv)
{
    const char *shards_s = NULL, *hash_key = NULL;
    cli_flag_t flags[] = {{"shards", 1, &shards_s, NULL}, {"hash-key", 1, &hash_key, NULL}};
    CLI_PARSE(argc, argv, usage_stream, flags, 2);
    if (first >= argc) return cli_usage_error(usage_stream, "%s", "missing subcommand");
    const char *sub = argv[first];
    int nargs = argc - first - 1;
    /* a read: quiet unless -v */
    if ((!strcmp(sub, "list") || !strcmp(sub, "consumers")) && !cli_verbose) log_set_level(LOG_WARN);
    char **args = argv + first + 1;
    int fanout = !strcmp(sub, "consumers") || !strcmp(sub, "deregister-consumer");
    int want = !strcmp(sub, "create") ? 1 : !strcmp(sub, "list") ? 0 : !strcmp(sub, "split") ? 2
             : !strcmp(sub, "merge") ? 3 : fanout ? 1 : -1;
    if (want < 0) return cli_usage_error(usage_stream, "unknown subcommand %s", sub);
    if (nargs != want && !(!strcmp(sub, "deregister-consumer") && nargs == 2))
        return cli_usage_error(usage_stream, "wrong number of arguments for %s", sub);
    long shards = 0;
    if (!strcmp(sub, "create")) {
        char *end = NULL;
        shards = shards_s ? strtol(shards_s, &end, 10) : 0;
        if (!shards_s || *end || shards < 1) return cli_usage_error(usage_stream, "%s", "--shards N (N >= 1) is required");
    }
    config_t *cfg = cli_config();
    if (!cfg) return EXIT_USAGE;
    if (fanout) return cli_stream_consumers(cfg, sub, args, nargs);
    errbuf_t err;
    int rc = 0;
    if (cfg->source.type == BACKEND_AWS) {
        /* Kinesis: the same subcommands through its API (kinesis_admin) */
        kinesis_admin_t *ka = kinesis_admin_open(cfg, &err);
        config_free(cfg);
        if (!ka) rc = -1;
        else if (!strcmp(sub, "create")) rc = kinesis_admin_create(ka, args[0], (int)shards, &err);
        else if (!strcmp(sub, "list")) rc = kinesis_admin_list(ka, cli_print_kinesis_stream, NULL, &err);
        else if (!strcmp(sub, "split")) rc = kinesis_admin_split(ka, args[0], args[1], hash_key, &err);
        else rc = kinesis_admin_merge(ka, args[0], args[1], args[2], &err);
        source_shard_list_t *after = NULL;
        if (!rc && (!strcmp(sub, "split") || !strcmp(sub, "merge"))) after = kinesis_admin_shards(ka, args[0], &err);
        kinesis_admin_close(ka);
        if (rc) fprintf(stderr, "shardrun: %s\n", err.msg);
        else if (after) cli_print_resharded(sub, args, after);
        else if (strcmp(sub, "list")) printf("ok %s %s\n", sub, args[0]);
        source_shard_list_free(after);
        return rc ? EXIT_RUNTIME : 0;
    }
    streamdb_t *db = cli_streamdb(cfg, !strcmp(sub, "create"));
    config_free(cfg);
    if (!db) return EXIT_RUNTIME;
    if (!strcmp(sub, "create")) rc = streamdb_create_stream(db, args[0], (int)shards, &err);
    else if (!strcmp(sub, "list")) rc = streamdb_list_streams(db, cli_print_stream, NULL, &err);
    else if (!strcmp(sub, "split")) rc = streamdb_split(db, args[0], args[1], hash_key, &err);
    else rc = streamdb_merge(db, args[0], args[1], args[2], &err);
    source_shard_list_t *after = NULL;
    if (!rc && (!strcmp(sub, "split") || !strcmp(sub, "merge")) && streamdb_shards(db, args[0], &after, &err))
        after = NULL;
    if (rc) fprintf(stderr, "shardrun: %s\n", err.msg);
    else if (after) cli_print_resharded(sub, args, after);
    else if (strcmp(sub, "list")) printf("ok %s %s\n", sub, args[0]);
    source_shard_list_free(after);
    streamdb_close(db);
    return rc ? EXIT_RUNTIME : 0;
}

/* ---- put ------------------------------------------------------------------ */

static const char *const usage_put =
    "shardrun put [-c FILE] STREAM [--partition-key K | --key-field NAME | --key-tab] [FILE]\n"
    "  append one record per input line (stdin when no FILE); the partition key is K, or a JSON line's\n"
    "  field NAME, or with --key-tab what comes before the first tab (the record is what follows it);\n"
    "  by default the line's MD5";

/* The partition key of a line without --partition-key: the hex MD5 of the
 * line, so lines spread over the shards. */
static void cli_line_key(const char *line, size_t len, char out[33])
{
    unsigned char md[DIGEST_MD5_LEN] = {0}; /* all zero when MD5 is unavailable: one shard then */
    (void)digest_md5(line, len, md);
    digest_hex(md, sizeof md, out);
}

/* `put` and `dlq replay` read records one at a time: 1 with *rec filled
 * (valid until the next call), 0 at the end, -1 with err set. */
typedef int (*cli_next_fn)(void *ud, source_put_record_t *rec, errbuf_t *err);

/* Into the local stream, in transactions of PUT_TXN_RECORDS. */
static int cli_put_local(const config_t *cfg, const char *stream, cli_next_fn next, void *ud, size_t *stored,
                         errbuf_t *err)
{
    streamdb_t *db = NULL;
    if (streamdb_open(cfg->source.path, 0, &db, err)) return -1;
    size_t count = 0;
    source_put_record_t rec;
    int got = 0, rc = streamdb_begin(db, err);
    while (!rc && (got = next(ud, &rec, err)) == 1) {
        char shard[32], seq[24];
        rc = streamdb_put(db, stream, rec.pkey, strlen(rec.pkey), rec.data, rec.data_len, clock_wall_ms(), shard,
                          seq, err);
        if (!rc && ++count % PUT_TXN_RECORDS == 0) {
            rc = streamdb_commit(db, err);
            if (!rc) {
                *stored = count;
                rc = streamdb_begin(db, err);
            }
        }
    }
    if (!rc && got < 0) rc = -1;
    if (!rc) rc = streamdb_commit(db, err);
    else streamdb_rollback(db);
    if (!rc) *stored = count;
    streamdb_close(db);
    return rc;
}

/* Into Kinesis, in PutRecords calls of as many records as one call takes. */
static int cli_put_kinesis(const config_t *cfg, const char *stream, cli_next_fn next, void *ud, size_t *stored,
                           errbuf_t *err)
{
    kinesis_admin_t *ka = kinesis_admin_open(cfg, err);
    if (!ka) return -1;
    enum { CHUNK = KINESIS_PUT_MAX_RECORDS };
    source_put_record_t recs[CHUNK];
    char *copies[CHUNK][2]; /* data and key of each record until its chunk is sent */
    size_t n = 0;
    int rc = 0, got = 1;
    while (!rc && got == 1) {
        source_put_record_t rec;
        got = next(ud, &rec, err);
        if (got == 1) {
            copies[n][0] = xstrndup(rec.data, rec.data_len); /* n bytes, binary-safe */
            copies[n][1] = xstrdup(rec.pkey);
            recs[n] = (source_put_record_t){copies[n][0], rec.data_len, copies[n][1], NULL};
            n++;
        }
        if (n && (n == CHUNK || got != 1)) {
            rc = kinesis_admin_put(ka, stream, recs, n, err);
            if (!rc) *stored += n;
            for (size_t i = 0; i < n; i++) {
                free(copies[i][0]);
                free(copies[i][1]);
            }
            n = 0;
        }
    }
    kinesis_admin_close(ka);
    return rc || got < 0 ? -1 : 0;
}

/* Writes every record `next` gives to `stream` of the config's source;
 * says how many (`verb` "put", "replayed") or why it stopped. Exit status. */
static int cli_put_all(const char *stream, cli_next_fn next, void *ud, const char *verb)
{
    config_t *cfg = cli_config();
    if (!cfg) return EXIT_USAGE;
    errbuf_t err;
    size_t stored = 0;
    int rc = cfg->source.type == BACKEND_AWS ? cli_put_kinesis(cfg, stream, next, ud, &stored, &err)
                                             : cli_put_local(cfg, stream, next, ud, &stored, &err);
    config_free(cfg);
    if (rc) {
        fprintf(stderr, "shardrun: %s (%zu records were stored before it)\n", err.msg, stored);
        return EXIT_RUNTIME;
    }
    fprintf(stderr, "%s %zu records to %s\n", verb, stored, stream);
    return 0;
}

/* `put`: one record per line; the key is --partition-key, a JSON line's
 * --key-field, the part before the first tab (--key-tab), else the line's MD5. */
typedef struct line_reader {
    FILE *in;
    const char *pkey;
    const char *key_field;  /* JSON lines: the field holding the key */
    int key_tab;            /* KEY<TAB>DATA lines */
    char *line;
    size_t cap, lineno;
    char key[257];          /* Kinesis keys are 1 to 256 characters */
} line_reader_t;

/* The key of a JSON line from its field `name` (a string, or a number as
 * written): 0, or -1 with err naming the line. */
static int cli_json_key(line_reader_t *lr, const char *line, size_t len, errbuf_t *err)
{
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *v = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, lr->key_field) : NULL;
    int rc = 0;
    if (cJSON_IsString(v) && *v->valuestring && strlen(v->valuestring) < sizeof lr->key) {
        snprintf(lr->key, sizeof lr->key, "%s", v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        char *num = cJSON_PrintUnformatted(v);
        snprintf(lr->key, sizeof lr->key, "%s", num ? num : "0");
        free(num);
    } else {
        rc = errbuf_set(err, "line %zu: %s: --key-field %s needs a JSON object whose \"%s\" is a string (1 to 256 "
                        "characters) or a number", lr->lineno, !j ? "not JSON" : !v ? "no such field" : "wrong type",
                        lr->key_field, lr->key_field);
    }
    cJSON_Delete(j);
    return rc;
}

static int cli_next_line(void *ud, source_put_record_t *rec, errbuf_t *err)
{
    line_reader_t *lr = ud;
    ssize_t len = getline(&lr->line, &lr->cap, lr->in);
    if (len < 0) return ferror(lr->in) ? errbuf_set(err, "read error: %s", strerror(errno)) : 0;
    lr->lineno++;
    if (len > 0 && lr->line[len - 1] == '\n') len--;
    const char *data = lr->line;
    if (lr->pkey) {
        *rec = (source_put_record_t){data, (size_t)len, lr->pkey, NULL};
        return 1;
    }
    if (lr->key_tab) {
        const char *tab = memchr(lr->line, '\t', (size_t)len);
        size_t klen = tab ? (size_t)(tab - lr->line) : 0;
        if (!tab || !klen || klen >= sizeof lr->key)
            return errbuf_set(err, "line %zu: --key-tab needs KEY<TAB>DATA with a key of 1 to 256 characters",
                              lr->lineno);
        memcpy(lr->key, lr->line, klen);
        lr->key[klen] = '\0';
        data = tab + 1;
        len -= (ssize_t)klen + 1;
    } else if (lr->key_field) {
        if (cli_json_key(lr, lr->line, (size_t)len, err)) return -1;
    } else {
        cli_line_key(lr->line, (size_t)len, lr->key);
    }
    *rec = (source_put_record_t){data, (size_t)len, lr->key, NULL};
    return 1;
}

static int cmd_put(int argc, char **argv)
{
    const char *pkey = NULL, *key_field = NULL;
    int key_tab = 0;
    cli_flag_t flags[] = {{"partition-key", 1, &pkey, NULL}, {"key-field", 1, &key_field, NULL},
                          {"key-tab", 0, NULL, &key_tab}};
    CLI_PARSE(argc, argv, usage_put, flags, 3);
    if (first >= argc || argc - first > 2) return cli_usage_error(usage_put, "%s", "expected STREAM [FILE]");
    if (!!pkey + !!key_field + key_tab > 1)
        return cli_usage_error(usage_put, "%s", "--partition-key, --key-field and --key-tab exclude each other");
    const char *stream = argv[first], *file = argc - first == 2 ? argv[first + 1] : NULL;
    line_reader_t lr = {.in = file ? fopen(file, "rb") : stdin, .pkey = pkey, .key_field = key_field,
                        .key_tab = key_tab};
    if (!lr.in) {
        fprintf(stderr, "shardrun: %s: %s\n", file, strerror(errno));
        return EXIT_RUNTIME;
    }
    int rc = cli_put_all(stream, cli_next_line, &lr, "put");
    free(lr.line);
    if (file) fclose(lr.in);
    return rc;
}

/* ---- dlq ------------------------------------------------------------------ */

static const char *const usage_dlq = "shardrun dlq [-c FILE] replay DEADLETTER.jsonl --to STREAM\n"
                                     "  put dead-lettered records back (original data and partition key)";

/* `dlq replay`: one record per dead-letter line (blank lines skipped). */
typedef struct dlq_reader {
    FILE *in;
    const char *file;
    char *line;
    size_t cap, lineno;
    deadletter_record_t rec;
} dlq_reader_t;

static int cli_next_dead_letter(void *ud, source_put_record_t *rec, errbuf_t *err)
{
    dlq_reader_t *dr = ud;
    deadletter_record_clear(&dr->rec);
    for (;;) {
        if (getline(&dr->line, &dr->cap, dr->in) < 0)
            return ferror(dr->in) ? errbuf_set(err, "%s: read error: %s", dr->file, strerror(errno)) : 0;
        dr->lineno++;
        if (dr->line[0] != '\n' && dr->line[0] != '\0') break;
    }
    errbuf_t why;
    if (deadletter_parse_line(dr->line, &dr->rec, &why))
        return errbuf_set(err, "%s:%zu: %s", dr->file, dr->lineno, why.msg);
    *rec = (source_put_record_t){dr->rec.data, dr->rec.data_len, dr->rec.pkey, NULL};
    return 1;
}

static int cmd_dlq(int argc, char **argv)
{
    const char *to = NULL;
    cli_flag_t flags[] = {{"to", 1, &to, NULL}};
    CLI_PARSE(argc, argv, usage_dlq, flags, 1);
    if (argc - first != 2 || strcmp(argv[first], "replay") || !to)
        return cli_usage_error(usage_dlq, "%s", "expected: replay FILE --to STREAM");
    dlq_reader_t dr = {.file = argv[first + 1]};
    dr.in = fopen(dr.file, "rb");
    if (!dr.in) {
        fprintf(stderr, "shardrun: %s: %s\n", dr.file, strerror(errno));
        return EXIT_RUNTIME;
    }
    int rc = cli_put_all(to, cli_next_dead_letter, &dr, "replayed");
    deadletter_record_clear(&dr.rec);
    free(dr.line);
    fclose(dr.in);
    return rc;
}

/* ---- init / test: the user's project (project.c) ------------------------------ */

static const char *const usage_init = "shardrun init DIR [--stream NAME] [--kinesis]\n"
                                      "  write a working project: config, processor, spec, .gitignore (never overwrites)";

static int cmd_init(int argc, char **argv)
{
    const char *stream = "events";
    int kinesis = 0;
    cli_flag_t flags[] = {{"stream", 1, &stream, NULL}, {"kinesis", 0, NULL, &kinesis}};
    CLI_PARSE(argc, argv, usage_init, flags, 2);
    if (argc - first != 1) return cli_usage_error(usage_init, "%s", "expected one folder");
    return project_init(argv[first], stream, kinesis);
}

static const char *const usage_test = "shardrun test [SPEC_OR_DIR...] [BUSTED_OPTION...]\n"
                                      "  run busted specs under LuaJIT with shardrun's Lua modules on the path";

static int cmd_test(int argc, char **argv)
{
    /* every argument is busted's: no option parsing here but --help */
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s\n", usage_test);
        return 0;
    }
    return project_test(argc - 1, argv + 1);
}

/* ---- version / help --------------------------------------------------------- */

static int cmd_version(int argc, char **argv)
{
    printf("shardrun %s (%s)\n", SHARDRUN_VERSION, LUAJIT_VERSION);
    return 0;
}

static const cli_cmd_t cli_cmds[] = {
    {"run", cmd_run, NULL},         {"check", cmd_check, NULL}, {"status", cmd_status, NULL},
    {"resume", cmd_resume, NULL},
    {"stream", cmd_stream, NULL},   {"put", cmd_put, NULL},     {"version", cmd_version, NULL},
    {"dlq", cmd_dlq, NULL},         {"init", cmd_init, NULL},   {"test", cmd_test, NULL},
};

static void cli_help(FILE *out)
{
    fprintf(out, "shardrun %s: run Lua record processors over sharded streams\n\n"
                 "%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\nshardrun version\n\n"
                 "-c FILE defaults to ./shardrun.lua; every command takes --help.\n",
            SHARDRUN_VERSION, usage_run, usage_check, usage_status, usage_resume, usage_stream, usage_put, usage_dlq,
            usage_init, usage_test);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        cli_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(0, NULL);
    for (size_t i = 0; i < sizeof cli_cmds / sizeof *cli_cmds; i++)
        if (!strcmp(argv[1], cli_cmds[i].name)) return cli_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "shardrun: unknown command %s\n", argv[1]);
    cli_help(stderr);
    return EXIT_USAGE;
}
