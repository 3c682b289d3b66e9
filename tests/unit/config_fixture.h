/* config_fixture: what the config tests (test_config, test_config_metrics)
 * share (header only; include it after cmocka.h): one fresh directory for the
 * group with a p.lua processor in it; each config is written there as c.lua
 * and loaded, so relative paths resolve against cfg_dir. */
#ifndef SHARDRUN_TEST_CONFIG_FIXTURE_H
#define SHARDRUN_TEST_CONFIG_FIXTURE_H

#include <string.h>

#include "config/config.h"
#include "tempdir.h"

static char cfg_dir[256];

/* Group setup: the directory and its p.lua. */
static int cfg_setup(void **state)
{
    (void)state;
    if (tempdir_make(cfg_dir, sizeof cfg_dir, "config") != 0) return -1;
    tempdir_write(cfg_dir, "p.lua", "return { processRecords = function() end }\n");
    return 0;
}

static int cfg_teardown(void **state)
{
    (void)state;
    return tempdir_remove(cfg_dir);
}

/* Loads text as cfg_dir/c.lua; the config (caller frees) or NULL with err set. */
static inline config_t *cfg_load(const char *text, errbuf_t *err)
{
    return config_load(tempdir_write(cfg_dir, "c.lua", text), err);
}

/* Loads text and asserts that it fails with a message containing `want`. */
static inline void cfg_expect_error(const char *text, const char *want)
{
    errbuf_t err = {{0}};
    config_t *c = cfg_load(text, &err);
    if (c) config_free(c);
    assert_null(c);
    if (!strstr(err.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
}

#endif
