/* config: every field validated, errors name the file, the line (where it can be known) and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config_fixture.h"

#define BASE "application = 'app'\nsource = { type = 'local', path = 's.db' }\nleases = { type = 'local', path = 'l.db' }\n"

static void test_valid_config_gets_defaults_and_absolute_paths(void **state)
{
    errbuf_t err;
    config_t *c = cfg_load(BASE "streams = { { name = 'a', processor = 'p.lua' } }\n", &err);
    assert_non_null(c);
    assert_string_equal(c->application, "app");
    assert_int_equal(c->nstreams, 1);
    assert_int_equal(c->streams[0].initial_position, POS_TRIM_HORIZON);
    assert_int_equal(c->streams[0].max_records, 10000);
    assert_int_equal(c->lease_duration_ms, 10000);
    assert_int_equal(c->renew_interval_ms, 10000 / 3);
    assert_int_equal(c->taker_interval_ms, 2000);
    assert_int_equal(c->max_steal, 1);
    assert_int_equal(c->streams[0].policy.retries, -1); /* default "retry": forever */
    assert_string_equal(c->leases.table, "app");
    assert_true(c->source.path[0] == '/');
    assert_non_null(strstr(c->streams[0].processor, cfg_dir));
    config_free(c);
}

static void test_a_stream_is_found_by_its_name(void **state)
{
    (void)state;
    errbuf_t err;
    config_t *c = cfg_load(BASE "streams = { { name = 'orders', processor = 'p.lua' },\n"
                                "  { name = 'clicks', processor = 'p.lua' } }\n", &err);
    assert_non_null(c);
    assert_int_equal(config_stream_index(c, "orders"), 0);
    assert_int_equal(config_stream_index(c, "clicks"), 1);
    assert_int_equal(config_stream_index(c, "click"), -1);
    assert_int_equal(config_stream_index(c, ""), -1);
    assert_int_equal(config_stream_index(c, NULL), -1);
    config_free(c);
}

static void test_bad_initial_position_names_file_field_and_value(void **state)
{
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', initial_position = 'OLDEST' } }\n",
                     "c.lua:4: streams[1].initial_position: expected TRIM_HORIZON, LATEST or AT_TIMESTAMP, got \"OLDEST\"");
}

static void test_unknown_fields_are_rejected_at_every_level(void **state)
{
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua' } }\nlease_durationms = 5\n",
                     "c.lua:5: lease_durationms: unknown field");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', procesor = 'x' } }\n",
                     "c.lua:4: streams[1].procesor: unknown field");
    cfg_expect_error("application = 'a'\nsource = { type = 'local', path = 's', port = 1 }\n",
                     "c.lua:2: source.port: unknown field");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { breaker = { size = 3 } } } }\n",
                     "c.lua:4: streams[1].on_error.breaker.size: unknown field");
}

static void test_wrong_types_and_ranges(void **state)
{
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', max_records = 'ten' } }\n",
                     "streams[1].max_records: expected a whole number, got \"ten\"");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', max_records = 20000 } }\n",
                     "streams[1].max_records: expected a number from 1 to 10000, got 20000");
    cfg_expect_error(BASE "streams = {}\n", "c.lua:4: streams: required");
    cfg_expect_error("source = { type = 'local', path = 's' }\n", "c.lua: application: required");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = 'ignore' } }\n",
                     "streams[1].on_error: expected \"retry\", \"skip\", \"dead_letter\", \"halt\" or a table");
    cfg_expect_error(BASE "lease_duration_ms = 1000\nrenew_interval_ms = 1000\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "renew_interval_ms: must be shorter than lease_duration_ms");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua' }, { name = 'a', processor = 'p.lua' } }\n",
                     "streams[2].name: stream a is listed twice");
}

static void test_missing_processor_and_syntax_errors(void **state)
{
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'nope.lua' } }\n",
                     "streams[1].processor: cannot read");
    cfg_expect_error(BASE "streams = { { name = 'a' processor = 'p.lua' } }\n", "c.lua:4:");
    cfg_expect_error(BASE "error('boom')\n", "c.lua:4: boom");
    errbuf_t err;
    assert_null(config_load("/nonexistent/shardrun.lua", &err));
    assert_non_null(strstr(err.msg, "/nonexistent/shardrun.lua: cannot read config file"));
}

/* Loads text and asserts the error message does not contain `unwanted`. */
static void expect_error_without(const char *text, const char *unwanted)
{
    errbuf_t err = {{0}};
    config_t *c = cfg_load(text, &err);
    if (c) config_free(c);
    assert_null(c);
    if (strstr(err.msg, unwanted)) fail_msg("error \"%s\" contains \"%s\"", err.msg, unwanted);
}

static void test_errors_name_the_line_where_the_field_is_written(void **state)
{
    /* the second stream's bad field, on its own line */
    cfg_expect_error(BASE "streams = {\n"
                          "  { name = 'a', processor = 'p.lua' },\n"
                          "  { name = 'b', processor = 'p.lua',\n"
                          "    max_records = 0 },\n"
                          "}\n",
                     "c.lua:7: streams[2].max_records: expected a number from 1 to 10000, got 0");
    /* a required field missing: the line of the table that lacks it */
    cfg_expect_error(BASE "\nstreams = { { name = 'a' } }\n", "c.lua:5: streams[1].processor: required");
    /* a table built by a function: where the function builds it */
    cfg_expect_error(BASE "local function s(n)\n  return { name = n, processor = 'p.lua', on_error = 'never' }\nend\n"
                          "streams = { s('a') }\n",
                     "c.lua:5: streams[1].on_error: expected");
    /* a field set by code after the constructor: the table's line */
    cfg_expect_error(BASE "local t = { name = 'a', processor = 'p.lua' }\nt.max_records = 'x'\nstreams = { t }\n",
                     "c.lua:4: streams[1].max_records: expected a whole number");
    /* a global assigned twice: the last assignment (the value that counts) */
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua' } }\nmax_steal = 1\n\nmax_steal = -1\n",
                     "c.lua:7: max_steal: expected a number from 0 to 1000, got -1");
    /* a list item that is not a table */
    cfg_expect_error(BASE "streams = {\n  { name = 'a', processor = 'p.lua' },\n  'b',\n}\n",
                     "c.lua:6: streams[2]: expected a table, got \"b\"");
    cfg_expect_error(BASE "lua_path = { 'lib',\n 42 }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "c.lua:5: lua_path[2]: expected a folder name, got 42");
    cfg_expect_error("application = 'app'\nsource = { 'local', path = 's.db' }\n",
                     "c.lua:2: source: unexpected list item [1]: expected name = value fields");
}

static void test_a_required_top_level_field_has_no_line_to_name(void **state)
{
    cfg_expect_error("source = { type = 'local', path = 's' }\n", "c.lua: application: required");
}

static void test_a_table_from_another_file_has_no_line(void **state)
{
    tempdir_write(cfg_dir, "s.lua", "return { name = 'a', processor = 'p.lua', max_records = 'x' }\n");
    char text[1024];
    snprintf(text, sizeof text, BASE "streams = { dofile('%s/s.lua') }\n", cfg_dir);
    cfg_expect_error(text, "c.lua: streams[1].max_records: expected a whole number");
}

static void test_unknown_fields_suggest_the_nearest_known_one(void **state)
{
    cfg_expect_error(BASE "streams = { { name = 'a', procesor = 'p.lua' } }\n",
                     "streams[1].procesor: unknown field (did you mean `processor`?)");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua' } }\nshutdown_grace = 5\n",
                     "c.lua:5: shutdown_grace: unknown field (did you mean `shutdown_grace_ms`?)");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { retires = 3 } } }\n",
                     "on_error.retires: unknown field (did you mean `retries`?)");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', initial_position = 'trim_horizon' } }\n",
                     "got \"trim_horizon\" (did you mean \"TRIM_HORIZON\"?)");
    /* nothing close: no guess */
    expect_error_without(BASE "streams = { { name = 'a', processor = 'p.lua', tries = 3 } }\n", "did you mean");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', tries = 3 } }\n",
                     "streams[1].tries: unknown field");
}

static void test_wrongly_nested_streams_get_a_plain_message(void **state)
{
    cfg_expect_error(BASE "streams = { {\n  { name = 'a', processor = 'p.lua' },\n} }\n",
                     "c.lua:4: streams[1]: expected a stream table (name = ..., processor = ...), got a list of tables: "
                     "one pair of braces too many?");
    cfg_expect_error(BASE "streams = { name = 'a', processor = 'p.lua' }\n",
                     "c.lua:4: streams: expected a list of stream tables, got one stream table");
}

/* The rewrite that records constructors must not change what a file means:
 * constructors as call arguments (also across a line break), braces in
 * strings and comments, a #! line, functions with commas inside a table. */
static void test_recording_constructor_lines_keeps_the_config_meaning(void **state)
{
    errbuf_t err;
    config_t *c = cfg_load("#!/usr/bin/env shardrun\n"
                           "local function with(t) t.processor = t.processor or 'p.lua' return t end\n"
                           "local util = { id = function(self, t) return t end }\n"
                           "application = [[app{]] .. '}' -- a } in a comment {\n"
                           "--[==[ { a long comment with braces } ]==]\n"
                           "source = { type = \"local\", path = \"s{.db\" }\n"
                           "leases = util:id{ type = 'local', path = 'l.db' }\n"
                           "streams = { with\n"
                           "  { name = 'a', max_records = #{ 1, 2, 3 } * 2 },\n"
                           "  with{ name = 'b', initial_position = ({ 'LATEST' })[1],\n"
                           "        x = nil, [('y')] = nil, f = nil },\n"
                           "}\n"
                           "lease_duration_ms = (function(a, b) local x, y = a, b; return x + y end)(4000, 6000)\n",
                           &err);
    if (!c) fail_msg("%s", err.msg);
    assert_string_equal(c->application, "app{}");
    assert_non_null(strstr(c->source.path, "/s{.db"));
    assert_non_null(strstr(c->leases.path, "/l.db"));
    assert_int_equal(c->nstreams, 2);
    assert_int_equal(c->streams[0].max_records, 6);
    assert_int_equal(c->streams[1].initial_position, POS_LATEST);
    assert_int_equal(c->lease_duration_ms, 10000);
    config_free(c);
    /* Lua's own errors keep their lines */
    cfg_expect_error(BASE "streams = {\n  { name = 'a', processor = 'p.lua' },\n}\nerror('boom')\n", "c.lua:7: boom");
    cfg_expect_error(BASE "streams = {\n  { name = 'a', processor = nil .. 'x' },\n}\n",
                     "c.lua:5: attempt to concatenate");
}

static void test_aws_credentials_table(void **state)
{
    errbuf_t err;
    config_t *c = cfg_load(BASE "aws = { profile = 'prod', access_key_id = 'AKID', secret_access_key = 's3cr3t' }\n"
                                "streams = { { name = 'a', processor = 'p.lua' } }\n", &err);
    if (!c) fail_msg("%s", err.msg);
    assert_string_equal(c->aws.profile, "prod");
    assert_string_equal(c->aws.access_key_id, "AKID");
    config_free(c);
    cfg_expect_error(BASE "aws = { access_key_id = 'AKID' }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "c.lua:4: aws: access_key_id and secret_access_key go together");
    cfg_expect_error(BASE "aws = { region = 'x' }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "c.lua:4: aws.region: unknown field");
}

static void test_fan_out_consumer_and_http_version(void **state)
{
    errbuf_t err;
    const char *streams = "streams = { { name = 'a', processor = 'p.lua' } }\n";
    char text[1024];
    snprintf(text, sizeof text, "application = 'app'\nsource = { type = 'kinesis', region = 'us-east-1', "
             "consumer = 'my-app.v2', http_version = '1.1' }\nleases = { type = 'local', path = 'l.db' }\n%s", streams);
    config_t *c = cfg_load(text, &err);
    if (!c) fail_msg("%s", err.msg);
    assert_string_equal(c->source.consumer, "my-app.v2");
    assert_int_equal(c->source.http_version, 1); /* AWS_HTTP_VERSION_1_1 */
    config_free(c);
    snprintf(text, sizeof text, "application = 'app'\nsource = { type = 'kinesis', region = 'us-east-1' }\n"
             "leases = { type = 'local', path = 'l.db' }\n%s", streams);
    c = cfg_load(text, &err);
    if (!c) fail_msg("%s", err.msg);
    assert_null(c->source.consumer); /* polling */
    assert_int_equal(c->source.http_version, 0);
    config_free(c);
    snprintf(text, sizeof text, "application = 'app'\nsource = { type = 'kinesis', consumer = 'a b' }\n"
             "leases = { type = 'local', path = 'l.db' }\n%s", streams);
    cfg_expect_error(text, "c.lua:2: source.consumer: \"a b\" is not a consumer name");
    snprintf(text, sizeof text, "application = 'app'\nsource = { type = 'kinesis', http_version = '3' }\n"
             "leases = { type = 'local', path = 'l.db' }\n%s", streams);
    cfg_expect_error(text, "c.lua:2: source.http_version: expected \"1.1\" or \"2\", got \"3\"");
    snprintf(text, sizeof text, "application = 'app'\nsource = { type = 'local', path = 's.db', consumer = 'c' }\n"
             "leases = { type = 'local', path = 'l.db' }\n%s", streams);
    cfg_expect_error(text, "c.lua:2: source.consumer: applies to type = \"kinesis\" only");
}

static void test_policy_table(void **state)
{
    errbuf_t err;
    config_t *c = cfg_load(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { retries = 5, "
                                "backoff_ms = 10, isolate = 'batch', final = 'dead_letter', dead_letter = { file = 'dl.jsonl' }, "
                                "breaker = { window = 20, threshold = 0.8 } } } }\n",
                           &err);
    if (!c) fail_msg("%s", err.msg);
    const policy_config_t *p = &c->streams[0].policy;
    assert_int_equal(p->retries, 5);
    assert_int_equal(p->backoff_ms, 10);
    assert_false(p->isolate);
    assert_int_equal(p->final, FINAL_DEAD_LETTER);
    assert_non_null(strstr(p->dead_letter_file, "/dl.jsonl"));
    assert_int_equal(p->breaker_window, 20);
    assert_true(p->breaker_threshold > 0.79 && p->breaker_threshold < 0.81);
    config_free(c);
    /* the earlier names say what they became */
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { retry = { attempts = 3 } } } }\n",
                     "on_error.retry: renamed: write retries = N");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { bisect = true } } }\n",
                     "on_error.bisect: renamed: isolate = \"record\"");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { breaker = { threshold = 2 } } } }\n",
                     "on_error.breaker.threshold: expected a share of the window above 0 and at most 1");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { breaker = true } } }\n",
                     "on_error.breaker: expected a table {window, threshold} or false");
}

/* Every shorthand is the defaults table with one field set; a table takes
 * the same defaults for what it omits. */
static void test_policy_shorthands_are_the_defaults_table(void **state)
{
    errbuf_t err;
    static const struct {
        const char *on_error;
        int64_t retries;
        policy_final_t final;
        int dead_letter_file;
    } cases[] = {
        {"'retry'", -1, FINAL_HALT, 0}, {"'skip'", 3, FINAL_SKIP, 0},           {"'dead_letter'", 3, FINAL_DEAD_LETTER, 1},
        {"'halt'", 3, FINAL_HALT, 0},   {"{ final = 'skip' }", 3, FINAL_SKIP, 0}, {"{ final = 'dead_letter' }", 3, FINAL_DEAD_LETTER, 1},
        {"{}", 3, FINAL_HALT, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[512];
        snprintf(text, sizeof text, BASE "streams = { { name = 'a', processor = 'p.lua', on_error = %s } }\n",
                 cases[i].on_error);
        config_t *c = cfg_load(text, &err);
        if (!c) fail_msg("%s: %s", cases[i].on_error, err.msg);
        const policy_config_t *p = &c->streams[0].policy;
        if (p->retries != cases[i].retries || p->final != cases[i].final)
            fail_msg("%s: retries %lld final %d", cases[i].on_error, (long long)p->retries, (int)p->final);
        assert_int_equal(p->backoff_ms, 100);
        assert_int_equal(p->max_backoff_ms, 30000);
        assert_true(p->isolate);
        assert_int_equal(p->breaker_window, 100);
        if (cases[i].dead_letter_file) assert_non_null(strstr(p->dead_letter_file, "/a.deadletter.jsonl"));
        else assert_null(p->dead_letter_file);
        config_free(c);
    }
}

/* What AWS would refuse at the first call is refused at load, naming the field. */
#define AWS_BASE(src, leases) "application = 'app'\nsource = { type = 'kinesis', " src " }\n" \
                              "leases = { type = 'dynamodb', " leases " }\nstreams = { { name = 'a', processor = 'p.lua' } }\n"

static void test_aws_settings_are_checked_at_load(void **state)
{
    setenv("AWS_REGION", "us-east-1", 1);
    errbuf_t err;
    config_t *c = cfg_load(AWS_BASE("region = 'eu-west-1', endpoint = 'http://127.0.0.1:4567'",
                                    "region = 'us-gov-west-1', endpoint = 'https://dynamodb.example.com/', table = 'my.tbl_1-x'"),
                           &err);
    if (!c) fail_msg("%s", err.msg);
    config_free(c);
    cfg_expect_error(AWS_BASE("endpoint = '127.0.0.1:4567'", ""),
                     "source.endpoint: expected a URL starting with http:// or https://");
    cfg_expect_error(AWS_BASE("", "endpoint = 'http://127.0.0.1:4568/dynamodb'"),
                     "leases.endpoint: \"http://127.0.0.1:4568/dynamodb\" has a path or query (/dynamodb)");
    cfg_expect_error(AWS_BASE("region = 'us east 1'", ""), "source.region: \"us east 1\" is not an AWS region name");
    cfg_expect_error(AWS_BASE("", "region = 'US-EAST-1'"), "leases.region: \"US-EAST-1\" is not an AWS region");
    cfg_expect_error(AWS_BASE("", "table = 'ab'"), "leases.table: \"ab\" is not a DynamoDB table name");
    cfg_expect_error(AWS_BASE("", "table = 'word count'"), "leases.table: \"word count\" is not a DynamoDB table name");
    cfg_expect_error("application = 'my app'\nsource = { type = 'kinesis' }\nleases = { type = 'dynamodb' }\n"
                     "streams = { { name = 'a', processor = 'p.lua' } }\n",
                     "application: \"my app\" is not a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -); it names");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", cfg_dir, 1); /* no ~/.aws/config with a region */
    cfg_expect_error(AWS_BASE("", "region = 'us-east-1'"), "source.region: not set, and neither AWS_REGION");
    if (home) setenv("HOME", home, 1);
    free(home);
}

static void test_outputs_are_read_in_name_order_with_their_destination(void **state)
{
    errbuf_t err;
    config_t *c = cfg_load(BASE "outputs = { zeta = { stream = 'z' }, alpha = { stream = 'a', path = 'other.db' },\n"
                                "  mid = { stream = 'm', region = 'eu-west-1', endpoint = 'http://127.0.0.1:1' } }\n"
                                "streams = { { name = 'a', processor = 'p.lua' } }\n",
                           &err);
    if (!c) fail_msg("%s", err.msg);
    assert_int_equal(c->noutputs, 3);
    assert_string_equal(c->outputs[0].name, "alpha"); /* an emitted record carries its output's index */
    assert_string_equal(c->outputs[1].name, "mid");
    assert_string_equal(c->outputs[2].name, "zeta");
    assert_true(c->outputs[0].own && c->outputs[0].type == BACKEND_LOCAL && c->outputs[0].path[0] == '/');
    assert_true(c->outputs[1].own && c->outputs[1].type == BACKEND_AWS);
    assert_string_equal(c->outputs[1].region, "eu-west-1");
    assert_false(c->outputs[2].own); /* a stream of the source */
    assert_int_equal(c->outputs[2].type, BACKEND_LOCAL);
    assert_string_equal(c->outputs[2].stream, "z");
    config_free(c);
}

static void test_bad_outputs_name_the_output_and_field(void **state)
{
    cfg_expect_error(BASE "outputs = { o = { } }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "outputs.o.stream: required");
    cfg_expect_error(BASE "outputs = { o = { stream = 'x', strem = 1 } }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "outputs.o.strem: unknown field (did you mean `stream`?)");
    cfg_expect_error(BASE "outputs = { o = 'x' }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "outputs.o: expected a table { stream = ... }");
    cfg_expect_error(BASE "outputs = { 'x' }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "outputs: expected name = { stream = ... } fields");
    cfg_expect_error(BASE "outputs = { o = { stream = 'x', type = 'local', region = 'r' } }\n"
                          "streams = { { name = 'a', processor = 'p.lua' } }\n",
                     "outputs.o.region: a local output has a path");
    cfg_expect_error(BASE "outputs = { o = { stream = 'x', type = 'local' } }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "outputs.o.path: required for a local output");
    cfg_expect_error(BASE "outputs = { o = { stream = 'x', endpoint = '127.0.0.1:4567' } }\n"
                          "streams = { { name = 'a', processor = 'p.lua' } }\n",
                     "outputs.o.endpoint: expected a URL starting with http:// or https://");
    cfg_expect_error(BASE "outputs = { o = { stream = 'x', region = 'EU' } }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                     "outputs.o.region: \"EU\" is not an AWS region name");
}

static void test_stream_processing_settings_and_their_defaults(void **state)
{
    errbuf_t err;
    config_t *c = cfg_load(BASE "streams = { { name = 'a', processor = 'p.lua' },\n"
                                "  { name = 'b', processor = 'p.lua', timer_interval_ms = 500, max_records = 100,\n"
                                "    max_batching_window_ms = 2000, max_emit_buffer_mb = 4 },\n"
                                "  { name = 'c', processor = 'p.lua', max_batching_window_ms = 10, min_batch_records = 7 } }\n",
                           &err);
    if (!c) fail_msg("%s", err.msg);
    assert_int_equal(c->streams[0].timer_interval_ms, 0);
    assert_int_equal(c->streams[0].max_batching_window_ms, 0);
    assert_int_equal(c->streams[0].max_emit_buffer_mb, 32);
    assert_int_equal(c->streams[1].timer_interval_ms, 500);
    assert_int_equal(c->streams[1].min_batch_records, 100); /* a window waits for max_records by default */
    assert_int_equal(c->streams[1].max_emit_buffer_mb, 4);
    assert_int_equal(c->streams[2].min_batch_records, 7);
    config_free(c);
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', min_batch_records = 5 } }\n",
                     "streams[1].min_batch_records: needs max_batching_window_ms");
    cfg_expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', max_emit_buffer_mb = 0 } }\n",
                     "streams[1].max_emit_buffer_mb: expected a number from 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_config_gets_defaults_and_absolute_paths),
        cmocka_unit_test(test_a_stream_is_found_by_its_name),
        cmocka_unit_test(test_bad_initial_position_names_file_field_and_value),
        cmocka_unit_test(test_unknown_fields_are_rejected_at_every_level),
        cmocka_unit_test(test_wrong_types_and_ranges),
        cmocka_unit_test(test_missing_processor_and_syntax_errors),
        cmocka_unit_test(test_policy_table),
        cmocka_unit_test(test_policy_shorthands_are_the_defaults_table),
        cmocka_unit_test(test_outputs_are_read_in_name_order_with_their_destination),
        cmocka_unit_test(test_bad_outputs_name_the_output_and_field),
        cmocka_unit_test(test_stream_processing_settings_and_their_defaults),
        cmocka_unit_test(test_aws_credentials_table),
        cmocka_unit_test(test_errors_name_the_line_where_the_field_is_written),
        cmocka_unit_test(test_a_required_top_level_field_has_no_line_to_name),
        cmocka_unit_test(test_a_table_from_another_file_has_no_line),
        cmocka_unit_test(test_unknown_fields_suggest_the_nearest_known_one),
        cmocka_unit_test(test_wrongly_nested_streams_get_a_plain_message),
        cmocka_unit_test(test_recording_constructor_lines_keeps_the_config_meaning),
        cmocka_unit_test(test_aws_settings_are_checked_at_load),
        cmocka_unit_test(test_fan_out_consumer_and_http_version),
    };
    return cmocka_run_group_tests(tests, cfg_setup, cfg_teardown);
}
