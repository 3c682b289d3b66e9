#include "project.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/errbuf.h"
#include "base/fspath.h"
#include "proc/processor.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

/* ---- the files `init` writes -------------------------------------------------- */

/* The config; %1$s application, %2$s stream, %3$s source and leases. */
static const char project_config[] =
    "-- shardrun.lua: this project's config. It is Lua; every field is checked when\n"
    "-- shardrun starts (a typo is an error naming its line). All the fields:\n"
    "-- `man shardrun` (CONFIGURATION), or README.md \"Configuration\".\n"
    "-- Relative paths are relative to this file's folder.\n"
    "application = \"%1$s\"   -- names the lease table: workers with the same application share the shards\n"
    "\n"
    "%3$s"
    "\n"
    "streams = {\n"
    "  { name = \"%2$s\", processor = \"processor.lua\",\n"
    "    initial_position = \"TRIM_HORIZON\",  -- where a shard without a checkpoint starts: its oldest record\n"
    "                                        -- (the default here; the KCL's is LATEST: only new records)\n"
    "    on_error = \"retry\" },               -- a failing batch: \"retry\" (forever), \"skip\", \"dead_letter\",\n"
    "                                        -- \"halt\", or a table (README.md \"Error policy\")\n"
    "}\n";

static const char project_local_backends[] =
    "-- The local stream: a SQLite file, to try everything without a cloud\n"
    "-- (`shardrun stream create`, `shardrun put`). For Kinesis:\n"
    "--   source = { type = \"kinesis\", region = \"eu-west-1\" }\n"
    "source = { type = \"local\", path = \"data/streams.db\" }\n"
    "\n"
    "-- Leases (which worker processes which shard) and checkpoints. For DynamoDB\n"
    "-- (the KCL's lease table):\n"
    "--   leases = { type = \"dynamodb\", table = \"%1$s\", region = \"eu-west-1\" }\n"
    "leases = { type = \"local\", path = \"data/leases.db\" }\n";

static const char project_kinesis_backends[] =
    "-- Amazon Kinesis. The region comes from AWS_REGION, AWS_DEFAULT_REGION or the\n"
    "-- profile (or write region = \"eu-west-1\"); credentials from the usual chain\n"
    "-- (environment, ~/.aws, web identity, ECS, EC2 instance role). endpoint: for a\n"
    "-- VPC endpoint or an emulator, as the AWS SDKs read it (nil: the region's own).\n"
    "source = { type = \"kinesis\", endpoint = os.getenv(\"AWS_ENDPOINT_URL_KINESIS\") }\n"
    "\n"
    "-- Leases and checkpoints: a DynamoDB table in the KCL's format, created on the\n"
    "-- first start if missing (on-demand billing).\n"
    "leases = { type = \"dynamodb\", table = \"%1$s\", endpoint = os.getenv(\"AWS_ENDPOINT_URL_DYNAMODB\") }\n";

static const char project_processor[] =
    "-- processor.lua: this project's record processor.\n"
    "--\n"
    "-- shardrun runs one fresh copy of this script per shard, each in its own Lua\n"
    "-- state (LuaJIT), and calls the functions below. The full contract: `man\n"
    "-- shardrun` (THE LUA CONTRACT), or README.md \"The Lua contract\".\n"
    "-- Test it: `shardrun test` (spec/processor_spec.lua).\n"
    "-- Hot reload: save this file while `shardrun run` runs; each shard's next batch\n"
    "-- runs the new version, with shard.state kept (a version that fails to load or\n"
    "-- whose initialize fails never replaces the running one).\n"
    "\n"
    "local P = {}\n"
    "\n"
    "-- When this worker starts on a shard (it took the shard's lease), before its\n"
    "-- first batch. shard.id, shard.stream, shard.worker, shard.position (the\n"
    "-- checkpoint it resumes from), and shard.state: a table for your own\n"
    "-- per-shard state. shard.state survives hot reloads, NOT a restart or the\n"
    "-- lease moving to another worker: keep what must last somewhere else.\n"
    "-- An error here is retried as the stream's on_error policy says, then halts.\n"
    "function P.initialize(shard)\n"
    "  shard.state.records = shard.state.records or 0\n"
    "  shard.state.bytes = shard.state.bytes or 0\n"
    "end\n"
    "\n"
    "-- Each batch of the shard's records, in order. A record has r.data (bytes),\n"
    "-- r.partitionKey, r.sequenceNumber (a string), r.subSequenceNumber and\n"
    "-- r.approximateArrivalTimestamp (ms). Records are views into the batch: copy\n"
    "-- one you keep after the call (require(\"shardrun.record\").copy(r)).\n"
    "--\n"
    "-- Return:\n"
    "--   \"checkpoint\"                    the batch is done: checkpoint after its last record\n"
    "--   nil                             done, no checkpoint yet (e.g. while you buffer)\n"
    "--   r (a record of this batch)      checkpoint at r\n"
    "--   { failed = r, error = \"why\" }   the records before r are done; r and the rest\n"
    "--                                   go to the stream's on_error policy\n"
    "-- or raise an error: the whole batch goes to the on_error policy.\n"
    "function P.processRecords(records, shard)\n"
    "  local st = shard.state\n"
    "  for i = 1, #records do\n"
    "    local r = records[i]\n"
    "    st.records = st.records + 1\n"
    "    st.bytes = st.bytes + #r.data\n"
    "  end\n"
    "  return \"checkpoint\"\n"
    "end\n"
    "\n"
    "-- The shard ended (a split or merge closed it) and all its records were\n"
    "-- processed. Return \"checkpoint\": its children start only after that.\n"
    "function P.shardEnded(shard)\n"
    "  return \"checkpoint\"\n"
    "end\n"
    "\n"
    "-- This worker lost the shard's lease (another worker took it, or renewals\n"
    "-- failed). No checkpoint can be written now; the next owner resumes from the\n"
    "-- last one. Let go of what you hold for the shard.\n"
    "function P.leaseLost(shard)\n"
    "end\n"
    "\n"
    "-- A graceful stop (SIGTERM, the end of --drain) or a hand-over to another\n"
    "-- worker. Return \"checkpoint\" to checkpoint after the last processed record;\n"
    "-- without it the next owner resumes from the last checkpoint (right for a\n"
    "-- processor that buffers records it has not written out yet).\n"
    "function P.shutdownRequested(shard)\n"
    "  return \"checkpoint\"\n"
    "end\n"
    "\n"
    "-- Optional, on a hot reload: P.migrate(old_state) may return a new state table.\n"
    "-- Optional, with timer_interval_ms in the config: P.onTimer(shard, now_ms) runs\n"
    "-- that often, between batches, idle shards too; it may return \"checkpoint\".\n"
    "-- To write records to another stream (outputs in the config): shard.emit(output,\n"
    "-- data, partitionKey); a checkpoint waits until they are written. README.md,\n"
    "-- \"Stream processing\"; examples/enrich, examples/rollup.\n"
    "\n"
    "return P\n";

/* %1$s stream */
static const char project_spec[] =
    "-- spec/processor_spec.lua: unit tests of processor.lua (busted). Run: shardrun test\n"
    "-- shardrun.testing calls the processor as the runtime does (records laid out\n"
    "-- in C memory, decisions checked by the same rules): see the top of its file,\n"
    "-- or README.md \"The Lua contract\".\n"
    "local testing = require \"shardrun.testing\"\n"
    "\n"
    "-- processor.lua, found from this file's folder wherever busted runs\n"
    "local HERE = debug.getinfo(1, \"S\").source:sub(2):match(\"^(.*)/[^/]*$\") or \".\"\n"
    "local PROCESSOR = HERE .. \"/../processor.lua\"\n"
    "\n"
    "describe(\"processor.lua\", function()\n"
    "  local P, shard\n"
    "\n"
    "  before_each(function()\n"
    "    P = testing.load(PROCESSOR) -- a fresh copy, as each shard gets\n"
    "    shard = testing.shard { id = \"shardId-000000000000\", stream = \"%1$s\" }\n"
    "    assert.are.same({ kind = \"none\" }, testing.lifecycle(P, \"initialize\", shard))\n"
    "  end)\n"
    "\n"
    "  it(\"counts records and bytes, and checkpoints every batch\", function()\n"
    "    local d = testing.process(P, { \"hello\", \"world!\" }, shard)\n"
    "    assert.are.equal(\"checkpoint\", d.kind)\n"
    "    assert.are.equal(2, shard.state.records)\n"
    "    assert.are.equal(11, shard.state.bytes)\n"
    "    d = testing.process(P, testing.records({ \"again\" }, { start = 3 }), shard)\n"
    "    assert.are.equal(\"checkpoint\", d.kind)\n"
    "    assert.are.equal(3, shard.state.records)\n"
    "  end)\n"
    "\n"
    "  it(\"checkpoints when the shard ends and on a graceful stop\", function()\n"
    "    assert.are.same({ kind = \"checkpoint\" }, testing.lifecycle(P, \"shardEnded\", shard))\n"
    "    assert.are.same({ kind = \"checkpoint\" }, testing.lifecycle(P, \"shutdownRequested\", shard))\n"
    "  end)\n"
    "end)\n";

static const char project_gitignore[] = "# local stream, lease file and dead letters: data, not code\n"
                                        "data/\n"
                                        "*.deadletter.jsonl\n";

/* ---- init --------------------------------------------------------------------- */

/* A name fit for a stream or a lease table (Kinesis: [a-zA-Z0-9_.-], 1 to
 * 128 characters), and so safe inside a Lua string. */
static int project_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128) return 0;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", *s)) return 0;
    return 1;
}

/* The application name from the project folder's name: its last component,
 * other characters than [a-zA-Z0-9_.-] as '-', at least 3 characters (a
 * DynamoDB table name). */
static void project_app_name(const char *dir, char *out, size_t outsz)
{
    char abs[PATH_MAX];
    const char *path = realpath(dir, abs) ? abs : dir;
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    size_t n = 0;
    for (size_t i = start; i < end && n + 1 < outsz && n < 100; i++)
        out[n++] = project_name_ok((char[]){path[i], '\0'}) ? path[i] : '-';
    out[n] = '\0';
    if (n < 3) snprintf(out, outsz, "shardrun-app");
}

typedef struct project_file {
    const char *name;
    buf_t text;
} project_file_t;

/* Creates dir/name with the text, never replacing a file (O_EXCL). */
static int project_write(const char *dir, const project_file_t *f, errbuf_t *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, f->name);
    if (fspath_mkdir_parents(path, err)) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return errbuf_set(err, "%s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < f->text.len) {
        ssize_t w = write(fd, f->text.data + off, f->text.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return errbuf_set(err, "%s: write failed: %s", path, strerror(e));
        }
        off += (size_t)w;
    }
    if (close(fd) != 0) return errbuf_set(err, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

int project_init(const char *dir, const char *stream, int kinesis)
{
    if (!project_name_ok(stream)) {
        fprintf(stderr, "shardrun: --stream %s: a stream name is 1 to 128 of a-z A-Z 0-9 _ . -\n", stream);
        return EXIT_USAGE;
    }
    char app[128];
    project_app_name(dir, app, sizeof app);
    project_file_t files[] = {
        {"shardrun.lua", BUF_INIT},
        {"processor.lua", BUF_INIT},
        {"spec/processor_spec.lua", BUF_INIT},
        {".gitignore", BUF_INIT},
    };
    enum { NFILES = sizeof files / sizeof *files };
    buf_t backends = BUF_INIT;
    buf_printf(&backends, kinesis ? project_kinesis_backends : project_local_backends, app);
    buf_printf(&files[0].text, project_config, app, stream, buf_str(&backends));
    buf_free(&backends);
    buf_append_str(&files[1].text, project_processor);
    buf_printf(&files[2].text, project_spec, stream);
    buf_append_str(&files[3].text, project_gitignore);

    /* nothing is written if anything would be replaced */
    int exists = 0;
    for (size_t i = 0; i < NFILES; i++) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        if (lstat(path, &st) == 0) {
            fprintf(stderr, "shardrun: %s exists: init never overwrites a file (choose a new folder)\n", path);
            exists = 1;
        }
    }
    int rc = exists ? EXIT_RUNTIME : 0;
    size_t written = 0;
    errbuf_t err;
    for (; !rc && written < NFILES; written++) {
        if (project_write(dir, &files[written], &err)) {
            fprintf(stderr, "shardrun: %s\n", err.msg);
            rc = EXIT_RUNTIME;
            break;
        }
    }
    if (rc && written) {
        /* no half project: what this run wrote goes again */
        for (size_t i = 0; i < written; i++) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
            unlink(path);
        }
    }
    for (size_t i = 0; i < NFILES; i++)
        buf_free(&files[i].text);
    if (rc) return rc;
    size_t len = strlen(dir);
    printf("created %s%s: shardrun.lua (config), processor.lua, spec/processor_spec.lua, .gitignore\n", dir,
           len && dir[len - 1] == '/' ? "" : "/");
    printf("\nrun it:\n  cd %s\n", dir);
    /* the same three for Kinesis: `stream create` and `put` speak to it too */
    printf("  shardrun test\n");
    printf("  shardrun stream create %s --shards 2 && seq 1 1000 | shardrun put %s\n", stream, stream);
    printf("  shardrun run --drain\n");
    return 0;
}

/* ---- test ----------------------------------------------------------------------- */

/* The full path of an executable found in PATH, or NULL. */
static const char *project_which(const char *name, char *out, size_t outsz)
{
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(out, outsz, "%.*s/%s", (int)(n ? n : 1), n ? path : ".", name);
        if (access(out, X_OK) == 0) return out;
        path += n + (colon ? 1 : 0);
    }
    return NULL;
}

static int project_is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int project_test(int argc, char **argv)
{
    char busted[PATH_MAX], luajit[PATH_MAX];
    if (!project_which("busted", busted, sizeof busted)) {
        fprintf(stderr, "shardrun: busted not found in PATH (Debian: apt install lua-busted)\n");
        return EXIT_RUNTIME;
    }
    if (!project_which("luajit", luajit, sizeof luajit)) {
        fprintf(stderr, "shardrun: luajit not found in PATH (Debian: apt install luajit)\n");
        return EXIT_RUNTIME;
    }
    /* Debian's busted runs under Lua 5.x and re-runs itself with --lua's
     * interpreter (through a shell, unquoted): modules go on the path through
     * LUA_PATH, which survives that, not through --lpath. The project's own
     * lua/ first, then shardrun's modules, then what was there (";;": the
     * interpreter's default path). */
    buf_t lp = BUF_INIT;
    char cwd[PATH_MAX];
    if (project_is_dir("lua") && getcwd(cwd, sizeof cwd)) buf_printf(&lp, "%s/lua/?.lua;%s/lua/?/init.lua;", cwd, cwd);
    const char *lua_dir = proc_lua_dir();
    buf_printf(&lp, "%s/?.lua;%s/?/init.lua;", lua_dir, lua_dir);
    const char *old = getenv("LUA_PATH");
    buf_append_str(&lp, old && *old ? old : ";");
    if (setenv("LUA_PATH", buf_str(&lp), 1) != 0) {
        buf_free(&lp);
        fprintf(stderr, "shardrun: cannot set LUA_PATH: %s\n", strerror(errno));
        return EXIT_RUNTIME;
    }
    buf_free(&lp);
    char lua_opt[PATH_MAX + 8];
    snprintf(lua_opt, sizeof lua_opt, "--lua=%s", luajit);
    char **args = calloc((size_t)argc + 3, sizeof *args); /* handed to exec */
    if (!args) return EXIT_RUNTIME;
    args[0] = busted;
    args[1] = lua_opt;
    for (int i = 0; i < argc; i++)
        args[2 + i] = argv[i];
    fflush(stdout);
    execv(busted, args);
    fprintf(stderr, "shardrun: cannot run %s: %s\n", busted, strerror(errno));
    free(args);
    return EXIT_RUNTIME;
}
