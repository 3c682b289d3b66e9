/* Every field's reader lives here, with the small readers they share
 * (cfg_int, cfg_enter, ...): they are static to this file, and splitting the
 * file would need an internal header for them, which STYLE.md rules out. So
 * it is longer than ~800 lines. */
#include "config.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/strdist.h"
#include "aws/credentials.h"
#include "base/xalloc.h"
#include "config_lines.h"

#define CFG_MAX_DEPTH 16

/* Validation context: the file for messages, the path of the field being
 * read ("streams[1].on_error.retry"), and, to name its line, the tables
 * being read (innermost last, absolute stack indexes) and where the file
 * wrote them. */
typedef struct cfg {
    lua_State *L;
    const char *file;
    errbuf_t *err;
    char field[256];
    int tbl[CFG_MAX_DEPTH];
    int ntbl;
    const config_lines_t *lines;
} cfg_t;

static int cfg_fail(cfg_t *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cfg_fail_at(cfg_t *c, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- lines for messages ------------------------------------------------------ */

static void cfg_push_table(cfg_t *c, int idx)
{
    if (c->ntbl < CFG_MAX_DEPTH) c->tbl[c->ntbl] = idx;
    c->ntbl++;
}

static void cfg_pop_table(cfg_t *c)
{
    c->ntbl--;
}

static int cfg_line(cfg_t *c, int idx, const char *key)
{
    return config_lines_of(c->lines, c->L, idx, key);
}

static int cfg_item_line(cfg_t *c, int idx, size_t i)
{
    return config_lines_of_item(c->lines, c->L, idx, i);
}

static int cfg_vfail(cfg_t *c, int line, const char *key, const char *fmt, va_list ap)
{
    char what[768], at[24] = "";
    vsnprintf(what, sizeof what, fmt, ap);
    if (line > 0) snprintf(at, sizeof at, ":%d", line);
    return errbuf_set(c->err, "%s%s: %s%s%s: %s", c->file, at, c->field, *c->field && key ? "." : "",
                      key ? key : "", what);
}

/* A message about field `key` of the table being read (key NULL: about the
 * table), with the line where the file wrote it when that is known. */
static int cfg_fail(cfg_t *c, const char *key, const char *fmt, ...)
{
    int idx = c->ntbl > 0 && c->ntbl <= CFG_MAX_DEPTH ? c->tbl[c->ntbl - 1] : 0;
    va_list ap;
    va_start(ap, fmt);
    int rc = cfg_vfail(c, cfg_line(c, idx, key), key, fmt, ap);
    va_end(ap);
    return rc;
}

static int cfg_fail_at(cfg_t *c, int line, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cfg_vfail(c, line, key, fmt, ap);
    va_end(ap);
    return rc;
}

/* Describes the value at idx for "got ..." in messages. */
static const char *cfg_got(cfg_t *c, int idx, char *out, size_t outsz)
{
    if (lua_type(c->L, idx) == LUA_TSTRING) snprintf(out, outsz, "\"%s\"", lua_tostring(c->L, idx));
    else if (lua_type(c->L, idx) == LUA_TNUMBER) snprintf(out, outsz, "%g", lua_tonumber(c->L, idx));
    else snprintf(out, outsz, "a %s", luaL_typename(c->L, idx));
    return out;
}

/* Rejects keys of the table at idx that are not in `allowed` (NULL-ended),
 * suggesting the allowed one a typo was probably meant to be. */
static int cfg_check_keys(cfg_t *c, int idx, const char *const *allowed)
{
    lua_pushnil(c->L);
    while (lua_next(c->L, idx)) {
        lua_pop(c->L, 1);
        if (lua_type(c->L, -1) != LUA_TSTRING) {
            char got[128];
            const char *what = cfg_got(c, -1, got, sizeof got);
            int line = lua_type(c->L, -1) == LUA_TNUMBER ? cfg_item_line(c, idx, (size_t)lua_tonumber(c->L, -1))
                                                         : cfg_line(c, idx, NULL);
            lua_pop(c->L, 1);
            return cfg_fail_at(c, line, NULL, "unexpected list item [%s]: expected name = value fields", what);
        }
        const char *k = lua_tostring(c->L, -1);
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = !strcmp(*a, k);
        if (!ok) {
            char key[128];
            snprintf(key, sizeof key, "%s", k);
            lua_pop(c->L, 1);
            const char *near = strdist_nearest(key, allowed);
            if (near) return cfg_fail(c, key, "unknown field (did you mean `%s`?)", near);
            return cfg_fail(c, key, "unknown field");
        }
    }
    return 0;
}

/* Pushes t[key]; returns its type. */
static int cfg_get(cfg_t *c, int idx, const char *key)
{
    lua_getfield(c->L, idx, key);
    return lua_type(c->L, -1);
}

static int cfg_string(cfg_t *c, int idx, const char *key, int required, char **out)
{
    char got[128];
    int t = cfg_get(c, idx, key);
    int rc = 0;
    if (t == LUA_TNIL) {
        if (required) rc = cfg_fail(c, key, "required, expected a string");
    } else if (t != LUA_TSTRING || lua_objlen(c->L, -1) == 0) {
        rc = cfg_fail(c, key, "expected a non-empty string, got %s", cfg_got(c, -1, got, sizeof got));
    } else {
        free(*out);
        *out = xstrdup(lua_tostring(c->L, -1));
    }
    lua_pop(c->L, 1);
    return rc;
}

static int cfg_int(cfg_t *c, int idx, const char *key, int64_t min, int64_t max, int64_t *out)
{
    char got[128];
    int t = cfg_get(c, idx, key);
    int rc = 0;
    if (t != LUA_TNIL) {
        double d = lua_tonumber(c->L, -1);
        if (t != LUA_TNUMBER || d != (double)(int64_t)d)
            rc = cfg_fail(c, key, "expected a whole number, got %s", cfg_got(c, -1, got, sizeof got));
        else if ((int64_t)d < min || (int64_t)d > max)
            rc = cfg_fail(c, key, "expected a number from %lld to %lld, got %lld", (long long)min, (long long)max,
                          (long long)d);
        else *out = (int64_t)d;
    }
    lua_pop(c->L, 1);
    return rc;
}

static int cfg_bool(cfg_t *c, int idx, const char *key, int *out)
{
    char got[128];
    int t = cfg_get(c, idx, key);
    int rc = 0;
    if (t == LUA_TBOOLEAN) *out = lua_toboolean(c->L, -1);
    else if (t != LUA_TNIL) rc = cfg_fail(c, key, "expected true or false, got %s", cfg_got(c, -1, got, sizeof got));
    lua_pop(c->L, 1);
    return rc;
}

/* Picks one of `names` (NULL-ended); *out = its index. */
static int cfg_enum(cfg_t *c, int idx, const char *key, const char *const *names, const char *expected, int *out)
{
    char got[128];
    int t = cfg_get(c, idx, key);
    int rc = 0;
    if (t != LUA_TNIL) {
        int found = -1;
        if (t == LUA_TSTRING)
            for (int i = 0; names[i] && found < 0; i++)
                if (!strcmp(names[i], lua_tostring(c->L, -1))) found = i;
        const char *near = found < 0 && t == LUA_TSTRING ? strdist_nearest(lua_tostring(c->L, -1), names) : NULL;
        if (found < 0 && near)
            rc = cfg_fail(c, key, "expected %s, got %s (did you mean \"%s\"?)", expected,
                          cfg_got(c, -1, got, sizeof got), near);
        else if (found < 0) rc = cfg_fail(c, key, "expected %s, got %s", expected, cfg_got(c, -1, got, sizeof got));
        else *out = found;
    }
    lua_pop(c->L, 1);
    return rc;
}

/* Enters sub-table t[key] (pushed) and extends the field path; returns 1 if
 * present, 0 if nil (nothing pushed), -1 on error. */
static int cfg_enter(cfg_t *c, int idx, const char *key, size_t *saved)
{
    char got[128];
    int t = cfg_get(c, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(c->L, 1);
        return 0;
    }
    if (t != LUA_TTABLE) {
        cfg_fail(c, key, "expected a table, got %s", cfg_got(c, -1, got, sizeof got));
        lua_pop(c->L, 1);
        return -1;
    }
    *saved = strlen(c->field);
    snprintf(c->field + *saved, sizeof c->field - *saved, "%s%s", *saved ? "." : "", key);
    cfg_push_table(c, lua_gettop(c->L));
    return 1;
}

static void cfg_leave(cfg_t *c, size_t saved)
{
    c->field[saved] = '\0';
    cfg_pop_table(c);
    lua_pop(c->L, 1);
}

/* Resolves a path relative to the config file's folder. Caller owns it. */
static char *cfg_resolve(const config_t *conf, const char *p)
{
    if (p[0] == '/') return xstrdup(p);
    size_t n = strlen(conf->dir) + strlen(p) + 2;
    char *out = xmalloc(n); /* owned by the config */
    snprintf(out, n, "%s/%s", conf->dir, p);
    return out;
}

static const char *const backend_source_names[] = {"local", "kinesis", NULL};
static const char *const backend_lease_names[] = {"local", "dynamodb", NULL};

/* ---- what AWS would refuse later, refused at load (small checks, one per rule) ---- */

/* An endpoint is a scheme and an authority: http(s)://host[:port][/]. */
static int cfg_check_endpoint(cfg_t *c, const char *endpoint)
{
    if (!endpoint) return 0;
    const char *rest = !strncmp(endpoint, "https://", 8) ? endpoint + 8 : !strncmp(endpoint, "http://", 7) ? endpoint + 7
                                                                                                         : NULL;
    if (!rest)
        return cfg_fail(c, "endpoint", "expected a URL starting with http:// or https:// (like \"https://%s\"), "
                        "got \"%s\"", endpoint, endpoint);
    size_t host = strcspn(rest, "/?#");
    if (host == 0) return cfg_fail(c, "endpoint", "\"%s\" has no host", endpoint);
    const char *path = rest + host;
    if (*path && strcmp(path, "/"))
        return cfg_fail(c, "endpoint", "\"%s\" has a path or query (%s): AWS JSON APIs are served at the root; "
                        "give \"%.*s\"", endpoint, path, (int)(path - endpoint), endpoint);
    return 0;
}

/* An AWS region name: "us-east-1", "eu-central-2", "us-gov-west-1". */
static int cfg_region_valid(const char *r)
{
    size_t n = strlen(r), parts = 0;
    if (n < 4 || n > 32 || r[0] < 'a' || r[0] > 'z' || r[n - 1] < '0' || r[n - 1] > '9') return 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i] == '-') {
            if (i == 0 || r[i - 1] == '-') return 0;
            parts++;
        } else if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9'))) {
            return 0;
        }
    }
    return parts >= 2;
}

static int cfg_check_region(cfg_t *c, const char *region)
{
    if (!region || cfg_region_valid(region)) return 0;
    return cfg_fail(c, "region", "\"%s\" is not an AWS region name (lowercase words and a number joined by "
                    "hyphens, like \"us-east-1\")", region);
}

/* DynamoDB table names: 3 to 255 of A-Z a-z 0-9 _ . - */
static int cfg_check_table(cfg_t *c, const config_t *conf)
{
    if (conf->leases.type != BACKEND_AWS) return 0;
    const char *t = conf->leases.table;
    size_t n = strlen(t), ok = n >= 3 && n <= 255;
    for (size_t i = 0; ok && i < n; i++)
        ok = (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
             t[i] == '_' || t[i] == '.' || t[i] == '-';
    if (ok) return 0;
    return cfg_fail(c, conf->leases.table_from_application ? "application" : "leases.table",
                    "\"%s\" is not a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -)%s", t,
                    conf->leases.table_from_application ? "; it names the lease table unless leases.table is set" : "");
}

/* A region must come from somewhere before the first call: the config, the
 * environment or the profile. */
static int cfg_check_region_known(cfg_t *c, const config_t *conf, backend_t type, const char *region,
                                  const char *what)
{
    if (type != BACKEND_AWS || region) return 0;
    char *r = aws_cred_region_resolve(NULL, conf->aws.profile);
    free(r);
    if (r) return 0;
    return cfg_fail(c, what, "not set, and neither AWS_REGION, AWS_DEFAULT_REGION nor the %s profile names one: "
                    "add region = \"us-east-1\" (or yours)", conf->aws.profile ? conf->aws.profile : "default");
}

/* A KCL multi-stream identifier: "<12-digit account>:<this stream's name>:<creation epoch seconds>". */
static int cfg_check_kcl_identifier(cfg_t *c, const config_t *conf, const config_stream_t *s)
{
    const char *id = s->kcl_stream_identifier;
    if (!id) return 0;
    if (conf->leases.type != BACKEND_AWS || conf->source.type != BACKEND_AWS)
        return cfg_fail(c, "kcl_stream_identifier", "KCL lease keys need a kinesis source and dynamodb leases");
    size_t n = strlen(id), name = strlen(s->name), digits = 0;
    while (digits < n && id[digits] >= '0' && id[digits] <= '9') digits++;
    const char *rest = id + digits, *epoch = rest + 1 + name + 1;
    int ok = digits == 12 && *rest == ':' && n > digits + 1 + name + 1 && !strncmp(rest + 1, s->name, name) &&
             epoch[-1] == ':' && *epoch;
    for (const char *p = epoch; ok && *p; p++) ok = *p >= '0' && *p <= '9';
    if (ok) return 0;
    return cfg_fail(c, "kcl_stream_identifier", "expected \"<account id>:%s:<creation epoch seconds>\" (the KCL's "
                    "stream identifier, e.g. \"123456789012:%s:1700000000\"), got \"%s\"", s->name, s->name, id);
}

static int cfg_source(cfg_t *c, config_t *conf)
{
    static const char *const keys[] = {"type", "path", "region", "endpoint", "ca_file", "consumer", "http_version",
                                       NULL};
    static const char *const http_versions[] = {"1.1", "2", NULL};
    size_t saved;
    int in = cfg_enter(c, -1, "source", &saved);
    if (in <= 0) return in < 0 ? -1 : cfg_fail(c, "source", "required, expected a table");
    int type = 0, http = -1, rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_enum(c, -1, "type", backend_source_names, "\"local\" or \"kinesis\"", &type);
    conf->source.type = (backend_t)type;
    if (!rc) rc = cfg_string(c, -1, "path", type == BACKEND_LOCAL, &conf->source.path);
    if (!rc) rc = cfg_string(c, -1, "region", 0, &conf->source.region);
    if (!rc) rc = cfg_string(c, -1, "endpoint", 0, &conf->source.endpoint);
    if (!rc) rc = cfg_string(c, -1, "ca_file", 0, &conf->source.ca_file);
    if (!rc) rc = cfg_check_endpoint(c, conf->source.endpoint);
    if (!rc) rc = cfg_check_region(c, conf->source.region);
    if (!rc) rc = cfg_string(c, -1, "consumer", 0, &conf->source.consumer);
    if (!rc) rc = cfg_enum(c, -1, "http_version", http_versions, "\"1.1\" or \"2\"", &http);
    conf->source.http_version = http + 1; /* AWS_HTTP_VERSION_1_1 = 1, _2 = 2, absent = 0 */
    const char *cons = conf->source.consumer;
    if (!rc && cons && (strlen(cons) > 128 || strspn(cons, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                           "0123456789_.-") != strlen(cons)))
        rc = cfg_fail(c, "consumer", "\"%s\" is not a consumer name: 1 to 128 of the characters a-z A-Z 0-9 _ . -",
                      cons);
    if (!rc && type == BACKEND_LOCAL && (cons || http >= 0))
        rc = cfg_fail(c, cons ? "consumer" : "http_version", "applies to type = \"kinesis\" only (the local "
                      "stream has no enhanced fan-out nor HTTP)");
    cfg_leave(c, saved);
    if (!rc && conf->source.path) {
        char *abs = cfg_resolve(conf, conf->source.path);
        free(conf->source.path);
        conf->source.path = abs;
    }
    return rc;
}

static int cfg_leases(cfg_t *c, config_t *conf)
{
    static const char *const keys[] = {"type", "path", "table", "region", "endpoint", NULL};
    size_t saved;
    int in = cfg_enter(c, -1, "leases", &saved);
    if (in <= 0) return in < 0 ? -1 : cfg_fail(c, "leases", "required, expected a table");
    int type = 0, rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_enum(c, -1, "type", backend_lease_names, "\"local\" or \"dynamodb\"", &type);
    conf->leases.type = (backend_t)type;
    if (!rc) rc = cfg_string(c, -1, "path", type == BACKEND_LOCAL, &conf->leases.path);
    if (!rc) rc = cfg_string(c, -1, "table", 0, &conf->leases.table);
    if (!rc) rc = cfg_string(c, -1, "region", 0, &conf->leases.region);
    if (!rc) rc = cfg_string(c, -1, "endpoint", 0, &conf->leases.endpoint);
    if (!rc) rc = cfg_check_endpoint(c, conf->leases.endpoint);
    if (!rc) rc = cfg_check_region(c, conf->leases.region);
    cfg_leave(c, saved);
    if (!rc && conf->leases.path) {
        char *abs = cfg_resolve(conf, conf->leases.path);
        free(conf->leases.path);
        conf->leases.path = abs;
    }
    return rc;
}

/* aws = { profile, access_key_id, secret_access_key, session_token } */
static int cfg_aws(cfg_t *c, config_t *conf)
{
    static const char *const keys[] = {"profile", "access_key_id", "secret_access_key", "session_token", NULL};
    size_t saved;
    int in = cfg_enter(c, -1, "aws", &saved);
    if (in <= 0) return in;
    int rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_string(c, -1, "profile", 0, &conf->aws.profile);
    if (!rc) rc = cfg_string(c, -1, "access_key_id", 0, &conf->aws.access_key_id);
    if (!rc) rc = cfg_string(c, -1, "secret_access_key", 0, &conf->aws.secret_access_key);
    if (!rc) rc = cfg_string(c, -1, "session_token", 0, &conf->aws.session_token);
    if (!rc && !conf->aws.access_key_id != !conf->aws.secret_access_key)
        rc = cfg_fail(c, NULL, "access_key_id and secret_access_key go together");
    if (!rc && conf->aws.session_token && !conf->aws.access_key_id)
        rc = cfg_fail(c, "session_token", "needs access_key_id and secret_access_key");
    cfg_leave(c, saved);
    return rc;
}

/* "host:port": an IPv4 literal or a bracketed IPv6 one, and a port from 0
 * (the OS chooses) to 65535. Sets conf->metrics.host and port. */
static int cfg_metrics_listen(cfg_t *c, config_metrics_t *m)
{
    const char *v = m->listen, *colon = strrchr(v, ':');
    char host[64];
    size_t hlen = colon ? (size_t)(colon - v) : 0;
    int bracketed = hlen >= 2 && v[0] == '[' && v[hlen - 1] == ']';
    if (bracketed) {
        v++;
        hlen -= 2;
    } else if (colon && memchr(v, ':', hlen)) {
        return cfg_fail(c, "listen", "an IPv6 address is written in brackets: \"[%.*s]:%s\"", (int)hlen, v, colon + 1);
    }
    if (!colon || hlen == 0 || hlen >= sizeof host)
        return cfg_fail(c, "listen", "expected \"ADDRESS:PORT\" (e.g. \"127.0.0.1:9464\", \"[::1]:9464\"), got \"%s\"",
                        m->listen);
    memcpy(host, v, hlen);
    host[hlen] = '\0';
    unsigned char addr[16];
    if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1)
        return cfg_fail(c, "listen", "%s is not an IP address (write 127.0.0.1 to serve this host only, 0.0.0.0 for "
                        "every interface)", host);
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return cfg_fail(c, "listen", "port must be a number from 0 to 65535 (0: any free port), got \"%s\"", colon + 1);
    m->host = xstrdup(host);
    m->port = (int)port;
    return 0;
}

/* metrics = { listen = "127.0.0.1:9464", loop_stall_ms = 2000 } */
static int cfg_metrics(cfg_t *c, config_t *conf)
{
    static const char *const keys[] = {"listen", "loop_stall_ms", NULL};
    size_t saved;
    conf->metrics.loop_stall_ms = 2000;
    int in = cfg_enter(c, -1, "metrics", &saved);
    if (in <= 0) return in;
    int rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_string(c, -1, "listen", 1, &conf->metrics.listen);
    if (!rc) rc = cfg_metrics_listen(c, &conf->metrics);
    if (!rc) rc = cfg_int(c, -1, "loop_stall_ms", 100, 3600000, &conf->metrics.loop_stall_ms);
    cfg_leave(c, saved);
    return rc;
}

/* log_format = "text" | "json" */
static int cfg_log_format(cfg_t *c, config_t *conf)
{
    static const char *const names[] = {"text", "json", NULL};
    int which = CONFIG_LOG_TEXT;
    int rc = cfg_enum(c, -1, "log_format", names, "\"text\" or \"json\"", &which);
    conf->log_format = (config_log_format_t)which;
    return rc;
}

static const char *const policy_final_names[] = {"skip", "dead_letter", "halt", NULL};

/* The one set of defaults (README "Error policy"): every shorthand string is
 * this table with one field set, and a table takes these for what it omits. */
static void policy_defaults(policy_config_t *p)
{
    memset(p, 0, sizeof *p);
    p->retries = 3;
    p->backoff_ms = 100;
    p->max_backoff_ms = 30000;
    p->isolate = 1;
    p->final = FINAL_HALT;
    p->dead_letter_max_bytes = 64 * 1024 * 1024;
    p->breaker_window = 100;
    p->breaker_threshold = 0.5;
}

static void policy_default_dead_letter_file(config_t *conf, const char *stream, policy_config_t *p)
{
    size_t n = strlen(conf->dir) + strlen(stream) + 32;
    p->dead_letter_file = xmalloc(n); /* owned by the config */
    snprintf(p->dead_letter_file, n, "%s/%s.deadletter.jsonl", conf->dir, stream);
}

static int cfg_dead_letter(cfg_t *c, config_t *conf, policy_config_t *p)
{
    static const char *const keys[] = {"file", "stream", "max_bytes", NULL};
    size_t saved;
    int in = cfg_enter(c, -1, "dead_letter", &saved);
    if (in <= 0) return in;
    int rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_string(c, -1, "file", 0, &p->dead_letter_file);
    if (!rc) rc = cfg_string(c, -1, "stream", 0, &p->dead_letter_stream);
    if (!rc) rc = cfg_int(c, -1, "max_bytes", 1024, INT64_MAX, &p->dead_letter_max_bytes);
    if (!rc && p->dead_letter_file && p->dead_letter_stream)
        rc = cfg_fail(c, NULL, "expected one of file or stream, not both");
    cfg_leave(c, saved);
    if (!rc && p->dead_letter_file) {
        char *abs = cfg_resolve(conf, p->dead_letter_file);
        free(p->dead_letter_file);
        p->dead_letter_file = abs;
    }
    return rc;
}

/* breaker = { window = N, threshold = F } | false */
static int cfg_breaker(cfg_t *c, policy_config_t *p)
{
    static const char *const keys[] = {"window", "threshold", NULL};
    char got[128];
    int t = cfg_get(c, -1, "breaker");
    if (t == LUA_TBOOLEAN && !lua_toboolean(c->L, -1)) p->breaker_window = 0;
    int ok = t == LUA_TNIL || t == LUA_TTABLE || (t == LUA_TBOOLEAN && !lua_toboolean(c->L, -1));
    int rc = ok ? 0 : cfg_fail(c, "breaker", "expected a table {window, threshold} or false, got %s",
                               cfg_got(c, -1, got, sizeof got));
    lua_pop(c->L, 1);
    if (rc || t != LUA_TTABLE) return rc;
    size_t saved;
    cfg_enter(c, -1, "breaker", &saved);
    rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_int(c, -1, "window", 1, 1000000, &p->breaker_window);
    if (!rc) {
        t = cfg_get(c, -1, "threshold");
        double d = lua_tonumber(c->L, -1);
        if (t != LUA_TNIL && (t != LUA_TNUMBER || d <= 0 || d > 1))
            rc = cfg_fail(c, "threshold", "expected a share of the window above 0 and at most 1, got %s",
                          cfg_got(c, -1, got, sizeof got));
        else if (t != LUA_TNIL) p->breaker_threshold = d;
        lua_pop(c->L, 1);
    }
    cfg_leave(c, saved);
    return rc;
}

/* Fields an earlier release named differently: a plain message instead of "unknown field". */
static int cfg_policy_renamed(cfg_t *c)
{
    if (cfg_get(c, -1, "retry") != LUA_TNIL) {
        lua_pop(c->L, 1);
        return cfg_fail(c, "retry", "renamed: write retries = N (retries after the first try; -1 = forever), "
                        "backoff_ms and max_backoff_ms in on_error itself");
    }
    lua_pop(c->L, 1);
    if (cfg_get(c, -1, "bisect") != LUA_TNIL) {
        lua_pop(c->L, 1);
        return cfg_fail(c, "bisect", "renamed: isolate = \"record\" (the default: failing records are narrowed "
                        "down before anything is given up) or isolate = \"batch\"");
    }
    lua_pop(c->L, 1);
    return 0;
}

/* on_error = "retry" | "skip" | "dead_letter" | "halt" | { ... }: see policy_defaults. */
static int cfg_policy(cfg_t *c, config_t *conf, const char *stream, policy_config_t *p)
{
    static const char *const keys[] = {"retries", "backoff_ms", "max_backoff_ms", "isolate", "max_record_age_s",
                                       "final", "dead_letter", "halt_worker", "breaker", "retry", "bisect", NULL};
    static const char *const shorthand[] = {"retry", "skip", "dead_letter", "halt", NULL};
    static const char *const isolations[] = {"batch", "record", NULL};
    char got[128];
    policy_defaults(p);
    int t = cfg_get(c, -1, "on_error");
    if (t == LUA_TNIL || t == LUA_TSTRING) {
        lua_pop(c->L, 1);
        int which = 0; /* absent: "retry" */
        if (cfg_enum(c, -1, "on_error", shorthand, "\"retry\", \"skip\", \"dead_letter\", \"halt\" or a table",
                     &which))
            return -1;
        static const policy_final_t finals[] = {FINAL_HALT, FINAL_SKIP, FINAL_DEAD_LETTER, FINAL_HALT};
        p->final = finals[which];
        if (which == 0) p->retries = -1; /* "retry": forever, nothing is ever given up on */
        if (p->final == FINAL_DEAD_LETTER) policy_default_dead_letter_file(conf, stream, p);
        return 0;
    }
    if (t != LUA_TTABLE) {
        int rc = cfg_fail(c, "on_error", "expected a string or a table, got %s", cfg_got(c, -1, got, sizeof got));
        lua_pop(c->L, 1);
        return rc;
    }
    lua_pop(c->L, 1);
    size_t saved;
    cfg_enter(c, -1, "on_error", &saved);
    int final = FINAL_HALT, isolate = 1;
    int rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_policy_renamed(c);
    if (!rc) rc = cfg_int(c, -1, "retries", -1, INT32_MAX, &p->retries);
    if (!rc) rc = cfg_int(c, -1, "backoff_ms", 0, 86400000, &p->backoff_ms);
    if (!rc) rc = cfg_int(c, -1, "max_backoff_ms", 0, 86400000, &p->max_backoff_ms);
    if (!rc) rc = cfg_enum(c, -1, "isolate", isolations, "\"record\" or \"batch\"", &isolate);
    if (!rc) rc = cfg_int(c, -1, "max_record_age_s", 0, INT32_MAX, &p->max_record_age_s);
    if (!rc) rc = cfg_enum(c, -1, "final", policy_final_names, "\"skip\", \"dead_letter\" or \"halt\"", &final);
    if (!rc) rc = cfg_bool(c, -1, "halt_worker", &p->halt_worker);
    if (!rc) rc = cfg_dead_letter(c, conf, p);
    if (!rc) rc = cfg_breaker(c, p);
    if (!rc && p->max_backoff_ms < p->backoff_ms)
        rc = cfg_fail(c, "max_backoff_ms", "is below backoff_ms (%lld)", (long long)p->backoff_ms);
    p->isolate = isolate;
    p->final = (policy_final_t)final;
    if (!rc && p->final == FINAL_DEAD_LETTER && !p->dead_letter_file && !p->dead_letter_stream)
        policy_default_dead_letter_file(conf, stream, p);
    cfg_leave(c, saved);
    return rc;
}

/* A stream's timers, batching window and emit bound (stream processing). */
static int cfg_stream_emitting(cfg_t *c, config_stream_t *s)
{
    s->max_emit_buffer_mb = 32;
    int rc = cfg_int(c, -1, "timer_interval_ms", 0, 86400000, &s->timer_interval_ms);
    if (!rc) rc = cfg_int(c, -1, "max_batching_window_ms", 0, 300000, &s->max_batching_window_ms);
    if (!rc) rc = cfg_int(c, -1, "min_batch_records", 1, 1000000, &s->min_batch_records);
    if (!rc) rc = cfg_int(c, -1, "max_emit_buffer_mb", 1, 1 << 20, &s->max_emit_buffer_mb);
    if (!rc && s->min_batch_records && !s->max_batching_window_ms)
        rc = cfg_fail(c, "min_batch_records", "needs max_batching_window_ms (how long to wait for them)");
    if (!rc && !s->min_batch_records) s->min_batch_records = s->max_records;
    return rc;
}

static int cfg_stream(cfg_t *c, config_t *conf, config_stream_t *s)
{
    static const char *const keys[] = {"name", "processor", "initial_position", "initial_timestamp_ms", "on_error",
                                       "process_timeout_ms", "memory_limit_mb", "max_records",
                                       "checkpoint_interval_ms", "prefetch_batches", "idle_time_between_reads_ms",
                                       "kcl_stream_identifier", "timer_interval_ms", "max_batching_window_ms",
                                       "min_batch_records", "max_emit_buffer_mb", NULL};
    static const char *const positions[] = {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", NULL};
    int pos = 0;
    s->max_records = 10000;
    s->prefetch_batches = 2;
    s->idle_time_between_reads_ms = 1000;
    int rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_string(c, -1, "name", 1, &s->name);
    if (!rc) rc = cfg_string(c, -1, "processor", 1, &s->processor);
    if (!rc) rc = cfg_enum(c, -1, "initial_position", positions, "TRIM_HORIZON, LATEST or AT_TIMESTAMP", &pos);
    s->initial_position = pos == 0 ? POS_TRIM_HORIZON : pos == 1 ? POS_LATEST : POS_AT_TIMESTAMP;
    if (!rc) rc = cfg_int(c, -1, "initial_timestamp_ms", 0, INT64_MAX, &s->initial_timestamp_ms);
    if (!rc && pos == 2 && !s->initial_timestamp_ms)
        rc = cfg_fail(c, "initial_timestamp_ms", "required with initial_position = \"AT_TIMESTAMP\"");
    if (!rc) rc = cfg_policy(c, conf, s->name, &s->policy);
    if (!rc) rc = cfg_int(c, -1, "process_timeout_ms", 0, 86400000, &s->process_timeout_ms);
    if (!rc) rc = cfg_int(c, -1, "memory_limit_mb", 0, 1 << 20, &s->memory_limit_mb);
    if (!rc) rc = cfg_int(c, -1, "max_records", 1, 10000, &s->max_records);
    if (!rc) rc = cfg_int(c, -1, "checkpoint_interval_ms", 0, 86400000, &s->checkpoint_interval_ms);
    if (!rc) rc = cfg_int(c, -1, "prefetch_batches", 1, 64, &s->prefetch_batches);
    if (!rc) rc = cfg_int(c, -1, "idle_time_between_reads_ms", 0, 3600000, &s->idle_time_between_reads_ms);
    if (!rc) rc = cfg_string(c, -1, "kcl_stream_identifier", 0, &s->kcl_stream_identifier);
    if (!rc) rc = cfg_check_kcl_identifier(c, conf, s);
    if (!rc) rc = cfg_stream_emitting(c, s);
    if (!rc) {
        char *abs = cfg_resolve(conf, s->processor);
        free(s->processor);
        s->processor = abs;
        if (access(abs, R_OK) != 0) rc = cfg_fail(c, "processor", "cannot read %s", abs);
    }
    return rc;
}

/* 1 if the table at idx has field `key` (not nil). */
static int cfg_has(cfg_t *c, int idx, const char *key)
{
    lua_getfield(c->L, idx, key);
    int has = !lua_isnil(c->L, -1);
    lua_pop(c->L, 1);
    return has;
}

/* The two ways to get the nesting of `streams` wrong, told plainly: one
 * stream table without the list around it, or a list inside the list. */
static int cfg_streams_shape(cfg_t *c, int list)
{
    if (lua_objlen(c->L, list) == 0 && (cfg_has(c, list, "name") || cfg_has(c, list, "processor")))
        return cfg_fail(c, "streams", "expected a list of stream tables, got one stream table: write "
                                      "streams = { { name = \"...\", processor = \"...\" } } (a list, even of one)");
    size_t n = lua_objlen(c->L, list);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(c->L, list, (int)i);
        int item = lua_gettop(c->L);
        int nested = lua_type(c->L, item) == LUA_TTABLE && !cfg_has(c, item, "name") && lua_objlen(c->L, item) > 0;
        if (nested) {
            lua_rawgeti(c->L, item, 1);
            nested = lua_type(c->L, -1) == LUA_TTABLE;
            lua_pop(c->L, 1);
        }
        lua_pop(c->L, 1);
        if (nested) {
            snprintf(c->field, sizeof c->field, "streams[%zu]", i);
            int rc = cfg_fail_at(c, cfg_item_line(c, list, i), NULL,
                                 "expected a stream table (name = ..., processor = ...), got a list of tables: one "
                                 "pair of braces too many? write streams = { { name = \"...\", processor = \"...\" } }");
            c->field[0] = '\0';
            return rc;
        }
    }
    return 0;
}

static int cfg_streams(cfg_t *c, config_t *conf)
{
    char got[128];
    int t = cfg_get(c, -1, "streams");
    int list = lua_gettop(c->L);
    if (t == LUA_TTABLE) {
        int rc = cfg_streams_shape(c, list);
        if (rc) {
            lua_pop(c->L, 1);
            return rc;
        }
    }
    if (t != LUA_TTABLE || lua_objlen(c->L, -1) == 0) {
        int rc = cfg_fail(c, "streams", "required, expected a list of stream tables, got %s",
                          cfg_got(c, -1, got, sizeof got));
        lua_pop(c->L, 1);
        return rc;
    }
    size_t n = lua_objlen(c->L, -1);
    conf->streams = xcalloc(n, sizeof *conf->streams); /* owned by the config */
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        lua_rawgeti(c->L, -1, (int)i + 1);
        snprintf(c->field, sizeof c->field, "streams[%zu]", i + 1);
        conf->nstreams = i + 1;
        if (lua_type(c->L, -1) != LUA_TTABLE) {
            rc = cfg_fail_at(c, cfg_item_line(c, list, i + 1), NULL, "expected a table, got %s",
                             cfg_got(c, -1, got, sizeof got));
        } else {
            cfg_push_table(c, lua_gettop(c->L));
            rc = cfg_stream(c, conf, &conf->streams[i]);
            for (size_t j = 0; j < i && !rc; j++)
                if (!strcmp(conf->streams[j].name, conf->streams[i].name))
                    rc = cfg_fail(c, "name", "stream %s is listed twice", conf->streams[i].name);
            cfg_pop_table(c);
        }
        lua_pop(c->L, 1);
    }
    c->field[0] = '\0';
    lua_pop(c->L, 1);
    return rc;
}

/* One output: outputs.<name> = { stream, [type, path | region, endpoint] }. */
static int cfg_output(cfg_t *c, config_t *conf, config_output_t *o)
{
    static const char *const keys[] = {"stream", "type", "path", "region", "endpoint", NULL};
    int type = -1;
    int rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_string(c, -1, "stream", 1, &o->stream);
    if (!rc) rc = cfg_enum(c, -1, "type", backend_source_names, "\"local\" or \"kinesis\"", &type);
    if (!rc) rc = cfg_string(c, -1, "path", 0, &o->path);
    if (!rc) rc = cfg_string(c, -1, "region", 0, &o->region);
    if (!rc) rc = cfg_string(c, -1, "endpoint", 0, &o->endpoint);
    if (rc) return rc;
    if (type < 0 && o->path) type = BACKEND_LOCAL;
    if (type < 0 && (o->region || o->endpoint)) type = BACKEND_AWS;
    o->own = type >= 0;
    o->type = o->own ? (backend_t)type : conf->source.type;
    if (o->own && o->type == BACKEND_LOCAL && (o->region || o->endpoint))
        return cfg_fail(c, o->region ? "region" : "endpoint", "a local output has a path, not a region or endpoint");
    if (o->own && o->type == BACKEND_AWS && o->path)
        return cfg_fail(c, "path", "a kinesis output has a region and endpoint, not a path");
    if (o->own && o->type == BACKEND_LOCAL && !o->path) return cfg_fail(c, "path", "required for a local output");
    rc = cfg_check_endpoint(c, o->endpoint);
    if (!rc) rc = cfg_check_region(c, o->region);
    if (!rc && o->own) rc = cfg_check_region_known(c, conf, o->type, o->region, "region");
    if (rc) return rc;
    if (o->path) {
        char *abs = cfg_resolve(conf, o->path);
        free(o->path);
        o->path = abs;
    }
    return 0;
}

static int cfg_output_cmp(const void *a, const void *b)
{
    return strcmp(((const config_output_t *)a)->name, ((const config_output_t *)b)->name);
}

/* outputs = { name = { ... }, ... }: read in name order, so an output's
 * index is the same however Lua orders the table. */
static int cfg_outputs(cfg_t *c, config_t *conf)
{
    size_t saved;
    int in = cfg_enter(c, -1, "outputs", &saved);
    if (in <= 0) return in;
    int tbl = lua_gettop(c->L), rc = 0;
    size_t n = 0;
    lua_pushnil(c->L);
    while (lua_next(c->L, tbl)) {
        lua_pop(c->L, 1);
        n++;
    }
    conf->outputs = xcalloc(n ? n : 1, sizeof *conf->outputs); /* owned by the config */
    lua_pushnil(c->L);
    while (!rc && lua_next(c->L, tbl)) {
        char got[128];
        if (lua_type(c->L, -2) != LUA_TSTRING || lua_objlen(c->L, -2) == 0) {
            rc = cfg_fail(c, NULL, "expected name = { stream = ... } fields, got the key %s",
                          cfg_got(c, -2, got, sizeof got));
        } else if (lua_type(c->L, -1) != LUA_TTABLE) {
            rc = cfg_fail(c, lua_tostring(c->L, -2), "expected a table { stream = ... }, got %s",
                          cfg_got(c, -1, got, sizeof got));
        } else {
            config_output_t *o = &conf->outputs[conf->noutputs++];
            o->name = xstrdup(lua_tostring(c->L, -2));
            size_t len = strlen(c->field);
            snprintf(c->field + len, sizeof c->field - len, ".%s", o->name);
            cfg_push_table(c, lua_gettop(c->L));
            rc = cfg_output(c, conf, o);
            cfg_pop_table(c);
            c->field[len] = '\0';
        }
        lua_pop(c->L, 1);
    }
    if (rc) lua_pop(c->L, 1); /* the key lua_next left */
    cfg_leave(c, saved);
    if (!rc) qsort(conf->outputs, conf->noutputs, sizeof *conf->outputs, cfg_output_cmp);
    return rc;
}

static int cfg_lua_path(cfg_t *c, config_t *conf)
{
    char got[128];
    int t = cfg_get(c, -1, "lua_path");
    int rc = 0;
    if (t == LUA_TSTRING) {
        conf->lua_path = xcalloc(1, sizeof *conf->lua_path);
        conf->lua_path[0] = cfg_resolve(conf, lua_tostring(c->L, -1));
        conf->nlua_path = 1;
    } else if (t == LUA_TTABLE) {
        size_t n = lua_objlen(c->L, -1);
        conf->lua_path = xcalloc(n ? n : 1, sizeof *conf->lua_path); /* owned by the config */
        for (size_t i = 0; i < n && !rc; i++) {
            lua_rawgeti(c->L, -1, (int)i + 1);
            if (lua_type(c->L, -1) != LUA_TSTRING) {
                snprintf(c->field, sizeof c->field, "lua_path[%zu]", i + 1);
                rc = cfg_fail_at(c, cfg_item_line(c, lua_gettop(c->L) - 1, i + 1), NULL,
                                 "expected a folder name, got %s", cfg_got(c, -1, got, sizeof got));
                c->field[0] = '\0';
            } else {
                conf->lua_path[conf->nlua_path++] = cfg_resolve(conf, lua_tostring(c->L, -1));
            }
            lua_pop(c->L, 1);
        }
    } else if (t != LUA_TNIL) {
        rc = cfg_fail(c, "lua_path", "expected a folder or a list of folders, got %s", cfg_got(c, -1, got, sizeof got));
    }
    lua_pop(c->L, 1);
    return rc;
}

static int cfg_top(cfg_t *c, config_t *conf)
{
    static const char *const keys[] = {
        "application", "worker_id", "source", "leases", "streams", "processor_threads", "lease_duration_ms",
        "renew_interval_ms", "taker_interval_ms", "max_steal", "shard_sync_interval_ms", "max_buffered_mb",
        "shutdown_grace_ms", "lua_path", "reload", "aws", "outputs", "metrics", "log_format", NULL};
    static const char *const reload_keys[] = {"rollback_after_failures", NULL};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    conf->processor_threads = cores > 0 ? cores : 2;
    conf->lease_duration_ms = 10000;
    conf->renew_interval_ms = 0;
    conf->taker_interval_ms = 2000;
    conf->max_steal = 1;
    conf->shard_sync_interval_ms = 60000;
    conf->max_buffered_mb = 256;
    conf->shutdown_grace_ms = 30000;
    cfg_push_table(c, lua_gettop(c->L));
    int rc = cfg_check_keys(c, lua_gettop(c->L), keys);
    if (!rc) rc = cfg_string(c, -1, "application", 1, &conf->application);
    if (!rc) rc = cfg_string(c, -1, "worker_id", 0, &conf->worker_id);
    if (!rc) rc = cfg_source(c, conf);
    if (!rc) rc = cfg_leases(c, conf);
    if (!rc) rc = cfg_streams(c, conf);
    if (!rc) rc = cfg_outputs(c, conf);
    if (!rc) rc = cfg_int(c, -1, "processor_threads", 1, 256, &conf->processor_threads);
    if (!rc) rc = cfg_int(c, -1, "lease_duration_ms", 100, 3600000, &conf->lease_duration_ms);
    if (!rc) rc = cfg_int(c, -1, "renew_interval_ms", 10, 3600000, &conf->renew_interval_ms);
    if (!rc) rc = cfg_int(c, -1, "taker_interval_ms", 10, 3600000, &conf->taker_interval_ms);
    if (!rc) rc = cfg_int(c, -1, "max_steal", 0, 1000, &conf->max_steal);
    if (!rc) rc = cfg_int(c, -1, "shard_sync_interval_ms", 100, 86400000, &conf->shard_sync_interval_ms);
    if (!rc) rc = cfg_int(c, -1, "max_buffered_mb", 1, 1 << 20, &conf->max_buffered_mb);
    if (!rc) rc = cfg_int(c, -1, "shutdown_grace_ms", 0, 3600000, &conf->shutdown_grace_ms);
    if (!rc) rc = cfg_lua_path(c, conf);
    if (!rc) rc = cfg_aws(c, conf);
    if (!rc) rc = cfg_metrics(c, conf);
    if (!rc) rc = cfg_log_format(c, conf);
    size_t saved;
    if (!rc) {
        int in = cfg_enter(c, -1, "reload", &saved);
        if (in < 0) rc = -1;
        if (in > 0) {
            rc = cfg_check_keys(c, lua_gettop(c->L), reload_keys);
            if (!rc) rc = cfg_int(c, -1, "rollback_after_failures", 0, 1000000, &conf->reload_rollback_after_failures);
            cfg_leave(c, saved);
        }
    }
    if (!rc && !conf->renew_interval_ms) conf->renew_interval_ms = conf->lease_duration_ms / 3;
    if (!rc && conf->renew_interval_ms >= conf->lease_duration_ms)
        rc = cfg_fail(c, "renew_interval_ms", "must be shorter than lease_duration_ms (%lld)",
                      (long long)conf->lease_duration_ms);
    if (!rc && !conf->leases.table) {
        conf->leases.table = xstrdup(conf->application);
        conf->leases.table_from_application = 1;
    }
    if (!rc) rc = cfg_check_table(c, conf);
    if (!rc) rc = cfg_check_region_known(c, conf, conf->source.type, conf->source.region, "source.region");
    if (!rc) rc = cfg_check_region_known(c, conf, conf->leases.type, conf->leases.region, "leases.region");
    return rc;
}

static char *cfg_dirname(const char *path)
{
    char *copy = xstrdup(path);
    char *slash = strrchr(copy, '/');
    if (!slash) {
        free(copy);
        char cwd[PATH_MAX];
        return xstrdup(getcwd(cwd, sizeof cwd) ? cwd : ".");
    }
    if (slash == copy) slash[1] = '\0';
    else *slash = '\0';
    if (copy[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd)) {
            size_t n = strlen(cwd) + strlen(copy) + 2;
            char *abs = xmalloc(n);
            snprintf(abs, n, "%s/%s", cwd, copy);
            free(copy);
            return abs;
        }
    }
    return copy;
}

/* The whole file; NULL if it cannot be read. Caller frees. */
static char *cfg_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    buf_t b = BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return buf_detach(&b);
}

config_t *config_load(const char *path, errbuf_t *err)
{
    size_t len = 0;
    char *src = access(path, R_OK) == 0 ? cfg_read_file(path, &len) : NULL;
    if (!src) {
        errbuf_set(err, "%s: cannot read config file (use -c FILE; the default is ./shardrun.lua)", path);
        return NULL;
    }
    config_t *conf = xcalloc(1, sizeof *conf); /* owned by the caller: config_free */
    conf->path = xstrdup(path);
    conf->dir = cfg_dirname(path);
    lua_State *L = luaL_newstate();
    if (!L) xalloc_oom(0);
    luaL_openlibs(L);
    cfg_t c = {.L = L, .file = path, .err = err};
    /* the file runs with a fresh table as its globals: what it sets is the config */
    config_lines_t *lines = config_lines_eval(L, path, src, len, err);
    int rc = -1;
    if (lines) {
        c.lines = lines;
        rc = cfg_top(&c, conf);
    }
    config_lines_free(lines);
    lua_close(L);
    free(src);
    if (rc) {
        config_free(conf);
        return NULL;
    }
    return conf;
}

static void policy_free(policy_config_t *p)
{
    free(p->dead_letter_file);
    free(p->dead_letter_stream);
}

int config_stream_index(const config_t *c, const char *name)
{
    for (size_t i = 0; name && i < c->nstreams; i++)
        if (!strcmp(c->streams[i].name, name)) return (int)i;
    return -1;
}

void config_free(config_t *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nstreams; i++) {
        free(c->streams[i].name);
        free(c->streams[i].processor);
        free(c->streams[i].kcl_stream_identifier);
        policy_free(&c->streams[i].policy);
    }
    free(c->streams);
    for (size_t i = 0; i < c->noutputs; i++) {
        config_output_t *o = &c->outputs[i];
        free(o->name);
        free(o->stream);
        free(o->path);
        free(o->region);
        free(o->endpoint);
    }
    free(c->outputs);
    for (size_t i = 0; i < c->nlua_path; i++) free(c->lua_path[i]);
    free(c->lua_path);
    free(c->path);
    free(c->dir);
    free(c->application);
    free(c->worker_id);
    free(c->source.path);
    free(c->source.region);
    free(c->source.endpoint);
    free(c->source.ca_file);
    free(c->source.consumer);
    free(c->aws.profile);
    free(c->aws.access_key_id);
    free(c->aws.secret_access_key);
    free(c->aws.session_token);
    free(c->leases.path);
    free(c->leases.table);
    free(c->leases.region);
    free(c->leases.endpoint);
    free(c->metrics.listen);
    free(c->metrics.host);
    free(c);
}
