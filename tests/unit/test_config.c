/* config: every field validated, errors name the file and the field. */
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

static char dir[256];

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/shardrun-test-config-XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_file("p.lua", "return { processRecords = function() end }\n");
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#define BASE "application = 'app'\nsource = { type = 'local', path = 's.db' }\nleases = { type = 'local', path = 'l.db' }\n"

static config_t *load(const char *text, errbuf_t *err)
{
    return config_load(write_file("c.lua", text), err);
}

/* Loads text and asserts the error message contains `want`. */
static void expect_error(const char *text, const char *want)
{
    errbuf_t err = {{0}};
    config_t *c = load(text, &err);
    if (c) config_free(c);
    assert_null(c);
    if (!strstr(err.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
}

static void test_valid_config_gets_defaults_and_absolute_paths(void **state)
{
    errbuf_t err;
    config_t *c = load(BASE "streams = { { name = 'a', processor = 'p.lua' } }\n", &err);
    assert_non_null(c);
    assert_string_equal(c->application, "app");
    assert_int_equal(c->nstreams, 1);
    assert_int_equal(c->streams[0].initial_position, POS_TRIM_HORIZON);
    assert_int_equal(c->streams[0].max_records, 10000);
    assert_int_equal(c->lease_duration_ms, 10000);
    assert_int_equal(c->renew_interval_ms, 10000 / 3);
    assert_int_equal(c->taker_interval_ms, 2000);
    assert_int_equal(c->max_steal, 1);
    assert_int_equal(c->streams[0].policy.attempts, -1); /* default: retry forever */
    assert_string_equal(c->leases.table, "app");
    assert_true(c->source.path[0] == '/');
    assert_non_null(strstr(c->streams[0].processor, dir));
    config_free(c);
}

static void test_bad_initial_position_names_file_field_and_value(void **state)
{
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', initial_position = 'OLDEST' } }\n",
                 "c.lua: streams[1].initial_position: expected TRIM_HORIZON, LATEST or AT_TIMESTAMP, got \"OLDEST\"");
}

static void test_unknown_fields_are_rejected_at_every_level(void **state)
{
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua' } }\nlease_durationms = 5\n",
                 "c.lua: lease_durationms: unknown field");
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', procesor = 'x' } }\n",
                 "c.lua: streams[1].procesor: unknown field");
    expect_error("application = 'a'\nsource = { type = 'local', path = 's', port = 1 }\n",
                 "c.lua: source.port: unknown field");
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { retry = { tries = 3 } } } }\n",
                 "streams[1].on_error.retry.tries: unknown field");
}

static void test_wrong_types_and_ranges(void **state)
{
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', max_records = 'ten' } }\n",
                 "streams[1].max_records: expected a whole number, got \"ten\"");
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', max_records = 20000 } }\n",
                 "streams[1].max_records: expected a number from 1 to 10000, got 20000");
    expect_error(BASE "streams = {}\n", "c.lua: streams: required");
    expect_error("source = { type = 'local', path = 's' }\n", "c.lua: application: required");
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = 'ignore' } }\n",
                 "streams[1].on_error: expected \"retry\", \"skip\", \"dead_letter\", \"halt\" or a table");
    expect_error(BASE "lease_duration_ms = 1000\nrenew_interval_ms = 1000\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                 "renew_interval_ms: must be shorter than lease_duration_ms");
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua' }, { name = 'a', processor = 'p.lua' } }\n",
                 "streams[2].name: stream a is listed twice");
}

static void test_missing_processor_and_syntax_errors(void **state)
{
    expect_error(BASE "streams = { { name = 'a', processor = 'nope.lua' } }\n", "streams[1].processor: cannot read");
    expect_error(BASE "streams = { { name = 'a' processor = 'p.lua' } }\n", "c.lua:4:");
    expect_error(BASE "error('boom')\n", "c.lua:4: boom");
    errbuf_t err;
    assert_null(config_load("/nonexistent/shardrun.lua", &err));
    assert_non_null(strstr(err.msg, "/nonexistent/shardrun.lua: cannot read config file"));
}

static void test_aws_credentials_table(void **state)
{
    errbuf_t err;
    config_t *c = load(BASE "aws = { profile = 'prod', access_key_id = 'AKID', secret_access_key = 's3cr3t' }\n"
                            "streams = { { name = 'a', processor = 'p.lua' } }\n", &err);
    if (!c) fail_msg("%s", err.msg);
    assert_string_equal(c->aws.profile, "prod");
    assert_string_equal(c->aws.access_key_id, "AKID");
    config_free(c);
    expect_error(BASE "aws = { access_key_id = 'AKID' }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                 "c.lua: aws: access_key_id and secret_access_key go together");
    expect_error(BASE "aws = { region = 'x' }\nstreams = { { name = 'a', processor = 'p.lua' } }\n",
                 "c.lua: aws.region: unknown field");
}

static void test_policy_table(void **state)
{
    errbuf_t err;
    config_t *c = load(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { retry = { attempts = 3, "
                            "backoff_ms = 10 }, bisect = true, final = 'dead_letter', dead_letter = { file = 'dl.jsonl' } } } }\n",
                       &err);
    if (!c) fail_msg("%s", err.msg);
    const policy_config_t *p = &c->streams[0].policy;
    assert_int_equal(p->attempts, 3);
    assert_int_equal(p->backoff_ms, 10);
    assert_true(p->bisect);
    assert_int_equal(p->final, FINAL_DEAD_LETTER);
    assert_non_null(strstr(p->dead_letter_file, "/dl.jsonl"));
    config_free(c);
    expect_error(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = { final = 'dead_letter' } } }\n",
                 "on_error.dead_letter: required when final = \"dead_letter\"");
    c = load(BASE "streams = { { name = 'a', processor = 'p.lua', on_error = 'skip' } }\n", &err);
    assert_non_null(c);
    assert_int_equal(c->streams[0].policy.final, FINAL_SKIP);
    assert_int_equal(c->streams[0].policy.attempts, 0);
    config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_config_gets_defaults_and_absolute_paths),
        cmocka_unit_test(test_bad_initial_position_names_file_field_and_value),
        cmocka_unit_test(test_unknown_fields_are_rejected_at_every_level),
        cmocka_unit_test(test_wrong_types_and_ranges),
        cmocka_unit_test(test_missing_processor_and_syntax_errors),
        cmocka_unit_test(test_policy_table),
        cmocka_unit_test(test_aws_credentials_table),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
