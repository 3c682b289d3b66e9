/* config: the observability fields, metrics = { listen = ... } and log_format. */
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

#define BASE                                                                                                           \
    "application = 'app'\nsource = { type = 'local', path = 's.db' }\nleases = { type = 'local', path = 'l.db' }\n"    \
    "streams = { { name = 'a', processor = 'p.lua' } }\n"

static void test_metrics_are_off_and_logs_text_when_absent(void **state)
{
    errbuf_t err;
    config_t *c = cfg_load(BASE, &err);
    assert_non_null(c);
    assert_null(c->metrics.listen);
    assert_int_equal(c->log_format, CONFIG_LOG_TEXT);
    config_free(c);
}

static void test_metrics_listen_takes_ipv4_and_bracketed_ipv6_with_a_port(void **state)
{
    errbuf_t err;
    config_t *c = cfg_load(BASE "metrics = { listen = '127.0.0.1:9464' }\nlog_format = 'json'\n", &err);
    assert_non_null(c);
    assert_string_equal(c->metrics.host, "127.0.0.1");
    assert_int_equal(c->metrics.port, 9464);
    assert_int_equal(c->metrics.loop_stall_ms, 2000);
    assert_int_equal(c->log_format, CONFIG_LOG_JSON);
    config_free(c);
    c = cfg_load(BASE "metrics = { listen = '[::1]:0', loop_stall_ms = 500 }\n", &err);
    assert_non_null(c);
    assert_string_equal(c->metrics.host, "::1");
    assert_int_equal(c->metrics.port, 0); /* the OS chooses */
    assert_int_equal(c->metrics.loop_stall_ms, 500);
    config_free(c);
}

static void test_bad_metrics_addresses_and_ports_name_the_field(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {BASE "metrics = { listen = 'localhost:9464' }\n", "metrics.listen: localhost is not an IP address"},
        {BASE "metrics = { listen = '127.0.0.1' }\n", "metrics.listen: expected \"ADDRESS:PORT\""},
        {BASE "metrics = { listen = ':9464' }\n", "metrics.listen: expected \"ADDRESS:PORT\""},
        {BASE "metrics = { listen = '127.0.0.1:65536' }\n", "metrics.listen: port must be a number from 0"},
        {BASE "metrics = { listen = '127.0.0.1:http' }\n", "metrics.listen: port must be a number from 0"},
        {BASE "metrics = { listen = '::1:9464' }\n",
         "metrics.listen: an IPv6 address is written in brackets: \"[::1]:9464\""},
        {BASE "metrics = { }\n", "metrics.listen: required"},
        {BASE "metrics = { listen = '127.0.0.1:1', port = 2 }\n", "metrics.port: unknown field"},
        {BASE "metrics = '127.0.0.1:9464'\n", "metrics: expected a table"},
        {BASE "log_format = 'logfmt'\n", "log_format: expected \"text\" or \"json\", got \"logfmt\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) cfg_expect_error(cases[i].text, cases[i].want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_are_off_and_logs_text_when_absent),
        cmocka_unit_test(test_metrics_listen_takes_ipv4_and_bracketed_ipv6_with_a_port),
        cmocka_unit_test(test_bad_metrics_addresses_and_ports_name_the_field),
    };
    return cmocka_run_group_tests(tests, cfg_setup, cfg_teardown);
}
