/* logjson: a log line's key=value fields as one JSON object.
 *
 * log_format = "json" writes {"ts":...,"level":...,"event":...,"k":"v",...}
 * per line: the same fields as the key=value form, in the same order, each
 * value a JSON string (a field keeps one type in every line: sequence
 * numbers exceed a double, shard ids have leading zeros). A quoted value
 * ("a b", with \" \\ \n \t escapes, as log_quote writes it) is unquoted
 * first. Text that is not key=value goes to a "msg" field. Bytes that are
 * not UTF-8 become U+FFFD, so every line parses. Pure: no I/O. */
#ifndef SHARDRUN_LOGJSON_H
#define SHARDRUN_LOGJSON_H

#include <stddef.h>

/* Writes the object (no newline) into out, NUL-terminated, truncated at a
 * field boundary so it stays valid JSON when out is too small (outsz >= 64).
 * Returns its length. */
size_t logjson_format(char *out, size_t outsz, const char *ts, const char *level, const char *event,
                      const char *fields);

#endif
