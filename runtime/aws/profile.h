/* aws_profile: the AWS shared files (~/.aws/credentials, ~/.aws/config, or
 * AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE): a profile's static keys,
 * any key of a profile in the config file, and small-file reading for the
 * credentials chain (aws_cred). No I/O but reading those files; secrets read
 * are wiped from every copy made here. */
#ifndef SHARDRUN_AWS_PROFILE_H
#define SHARDRUN_AWS_PROFILE_H

#include <stddef.h>

#define AWS_PROFILE_FILE_MAX (1 << 20) /* credentials, config and token files */

/* A profile's static keys; strings owned (aws_profile_keys_clear wipes them). */
typedef struct aws_profile_keys {
    char *ak, *sk, *token;
} aws_profile_keys_t;

/* The keys of `profile` (credentials file first, then config file): 1 with
 * *out filled, or 0 with `why` saying what was read and what was missing
 * (file names and key names only, never a value). */
int aws_profile_keys(const char *profile, aws_profile_keys_t *out, char *why, size_t whylen);
void aws_profile_keys_clear(aws_profile_keys_t *k);

/* The profile to use: `opt` when set, else AWS_PROFILE, else "default". */
const char *aws_profile_name(const char *opt);

/* `key` of the profile in the config file ("[profile X]", or "[default]"),
 * malloc'd (the caller frees), or NULL. */
char *aws_profile_config_get(const char *profile, const char *key);

/* A whole small file (up to AWS_PROFILE_FILE_MAX), malloc'd, or NULL. */
char *aws_profile_read_file(const char *path);
/* Trims blanks and line ends on both sides, in place; returns the start. */
char *aws_profile_trim(char *s);

#endif
