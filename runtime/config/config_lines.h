/* config_lines: runs a config file and remembers where it wrote each of its
 * fields, so an error about a field can name its line.
 *
 * A config is Lua: its tables exist only after the file ran, and a table
 * does not remember where it was built. So:
 *   - globals (`application = "x"`): the file runs in an environment whose
 *     assignments note the line they were made on (debug.getinfo), the last
 *     one counting, as it is the value that counts;
 *   - tables: before the file runs, its source is rewritten: every table
 *     constructor `{ ... }` becomes `__shardrun_table(N, { ... })`, a call
 *     that records the new table as constructor N and returns it unchanged
 *     (`f{ ... }` becomes `f(__shardrun_table(N, { ... }))`). Nothing else
 *     changes and no line break is added, so the file means what it meant
 *     and Lua's own messages keep their lines. The scan that finds the
 *     constructors notes the line of each, of each `name = value` field
 *     written in it, and of each list item.
 * What cannot be had: a field added later by code (`t.x = 1`) has only its
 * table's line; a table built in another file (dofile, require) has none;
 * a required field that is missing has its table's line, or none at the top.
 * If the scan meets something it does not understand, the file runs as
 * written, without table lines. */
#ifndef SHARDRUN_CONFIG_LINES_H
#define SHARDRUN_CONFIG_LINES_H

#include <lua.h>
#include <stddef.h>

#include "base/errbuf.h"

/* The name the rewritten source calls; the rewrite defines it as a local. */
#define CONFIG_LINES_FN "__shardrun_table"

typedef struct config_lines config_lines_t;

/* Runs the config file (`src`, len bytes, read from `file`) in L, in a fresh
 * environment whose reads fall back to the globals (os.getenv, ...). On
 * success pushes the table of the globals it set and returns where they were
 * written (caller frees with config_lines_free; it refers to tables in L,
 * so it is only valid while L lives). On a Lua error returns NULL with err
 * set to Lua's message ("file:line: ..."), nothing pushed. */
config_lines_t *config_lines_eval(lua_State *L, const char *file, const char *src, size_t len, errbuf_t *err);
void config_lines_free(config_lines_t *cl);

/* Where field `key` of the table at idx was written (key NULL: the table
 * itself): for the config's own table the global's last assignment; for a
 * table of the file, the `key = value` in its constructor, else the
 * constructor's line. 0 when unknown. */
int config_lines_of(const config_lines_t *cl, lua_State *L, int idx, const char *key);
/* The line of list item i (1-based) of the table at idx: the item's own
 * constructor when it is a table, else where the item starts. 0 = unknown. */
int config_lines_of_item(const config_lines_t *cl, lua_State *L, int idx, size_t i);

/* The rewrite alone, for tests. Scans `src` and writes the rewritten source
 * to *out (*outlen bytes, NUL-terminated; caller frees); the result starts
 * with `local __shardrun_table = ...;` (after a #! line), so the chunk must
 * be called with the recording function as its argument. NULL if the source
 * cannot be scanned (an unfinished string or comment, unbalanced braces). */
config_lines_t *config_lines_scan(const char *src, size_t len, char **out, size_t *outlen);

#endif
