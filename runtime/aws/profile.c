#include "profile.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/xalloc.h"

static const char *profile_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

void aws_profile_keys_clear(aws_profile_keys_t *k)
{
    if (k->sk) OPENSSL_cleanse(k->sk, strlen(k->sk));
    if (k->token) OPENSSL_cleanse(k->token, strlen(k->token));
    free(k->ak);
    free(k->sk);
    free(k->token);
    memset(k, 0, sizeof *k);
}

/* Reads a whole small file; returns a malloc'd string (caller frees) or NULL. */
char *aws_profile_read_file(const char *path)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) return NULL;
    buf_t b;
    buf_init(&b, AWS_PROFILE_FILE_MAX);
    char chunk[4096];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(chunk, 1, sizeof chunk, f)) > 0) ok = buf_append(&b, chunk, n) == 0;
    ok = ok && !ferror(f);
    fclose(f);
    if (!ok) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b);
}

char *aws_profile_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* Value of `key` in section `section` of INI text, or NULL; malloc'd. Indented
 * lines are sub-properties (e.g. "s3 =\n  max_concurrent_requests = 5"): skipped. */
static char *profile_ini_get(const char *text, const char *section, const char *key)
{
    if (!text) return NULL;
    char *copy = xstrdup(text), *save = NULL, *result = NULL; /* copy freed below */
    int in = 0;
    for (char *line = strtok_r(copy, "\n", &save); line && !result; line = strtok_r(NULL, "\n", &save)) {
        if (*line == ' ' || *line == '\t') continue;
        char *t = aws_profile_trim(line);
        if (*t == '#' || *t == ';' || !*t) continue;
        if (*t == '[') {
            char *end = strchr(t, ']');
            if (!end) continue;
            *end = '\0';
            in = !strcmp(aws_profile_trim(t + 1), section);
            continue;
        }
        char *eq = strchr(t, '=');
        if (!in || !eq) continue;
        *eq = '\0';
        if (!strcasecmp(aws_profile_trim(t), key)) result = xstrdup(aws_profile_trim(eq + 1));
    }
    OPENSSL_cleanse(copy, strlen(text)); /* may hold secrets */
    free(copy);
    return result;
}

/* 1 when INI text has a section named `section`. */
static int profile_ini_has_section(const char *text, const char *section)
{
    size_t n = strlen(section);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        while (*p == ' ' || *p == '\t') p++;
        if (*p != '[') continue;
        p++;
        while (*p == ' ') p++;
        if (!strncmp(p, section, n)) {
            const char *e = p + n;
            while (*e == ' ') e++;
            if (*e == ']') return 1;
        }
    }
    return 0;
}

/* Path from `env` or ~/.aws/<name>; malloc'd or NULL without HOME. */
static char *profile_file_path(const char *env, const char *name)
{
    const char *p = profile_env(env);
    const char *home = profile_env("HOME");
    buf_t b = BUF_INIT;
    if (p && p[0] == '~' && p[1] == '/' && home) (void)buf_printf(&b, "%s%s", home, p + 1);
    else if (p) (void)buf_append_str(&b, p);
    else if (home) (void)buf_printf(&b, "%s/.aws/%s", home, name);
    else return NULL;
    return buf_detach(&b);
}

const char *aws_profile_name(const char *opt_profile)
{
    if (opt_profile && *opt_profile) return opt_profile;
    const char *p = profile_env("AWS_PROFILE");
    return p ? p : "default";
}

/* `key` of the profile in the config file ("[profile X]", or "[default]"). */
char *aws_profile_config_get(const char *profile, const char *key)
{
    char *path = profile_file_path("AWS_CONFIG_FILE", "config");
    char *text = aws_profile_read_file(path);
    char section[512];
    snprintf(section, sizeof section, "profile %s", profile);
    char *v = profile_ini_get(text, section, key);
    if (!v && !strcmp(profile, "default")) v = profile_ini_get(text, "default", key);
    free(path);
    free(text);
    return v;
}

/* "read", "no such file", "cannot be read: ..." for a shared file. */
static const char *profile_file_state(const char *path, const char *text, char *out, size_t n)
{
    if (text) return "read";
    if (!path) return "HOME is not set";
    snprintf(out, n, "%s", access(path, F_OK) ? "no such file" : "cannot be read");
    return out;
}

/* Static keys of `profile`: credentials file first, then config file.
 * Returns 1 with *v filled, or 0 with `why` saying what was looked at and
 * what was missing (no secrets: file names and key names only). */
int aws_profile_keys(const char *profile, aws_profile_keys_t *v, char *why, size_t whylen)
{
    char *cpath = profile_file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    char *fpath = profile_file_path("AWS_CONFIG_FILE", "config");
    char *text = aws_profile_read_file(cpath);
    char *ctext = aws_profile_read_file(fpath);
    char section[512];
    snprintf(section, sizeof section, "profile %s", profile);
    int in_creds = text && profile_ini_has_section(text, profile);
    int in_config = ctext && (profile_ini_has_section(ctext, section) ||
                              (!strcmp(profile, "default") && profile_ini_has_section(ctext, "default")));
    v->ak = profile_ini_get(text, profile, "aws_access_key_id");
    v->sk = profile_ini_get(text, profile, "aws_secret_access_key");
    v->token = profile_ini_get(text, profile, "aws_session_token");
    if (!v->ak || !v->sk) {
        aws_profile_keys_clear(v);
        v->ak = aws_profile_config_get(profile, "aws_access_key_id");
        v->sk = aws_profile_config_get(profile, "aws_secret_access_key");
        v->token = aws_profile_config_get(profile, "aws_session_token");
    }
    int ok = v->ak && *v->ak && v->sk && *v->sk;
    if (!ok) {
        char *role = in_config ? aws_profile_config_get(profile, "role_arn") : NULL;
        char *sso = in_config ? aws_profile_config_get(profile, "sso_session") : NULL;
        char *proc = in_config ? aws_profile_config_get(profile, "credential_process") : NULL;
        if (!in_creds && !in_config) {
            char cstate[128], fstate[128];
            snprintf(why, whylen, "profile \"%s\" is in neither %s (%s) nor %s (%s)", profile,
                     cpath ? cpath : "~/.aws/credentials", profile_file_state(cpath, text, cstate, sizeof cstate),
                     fpath ? fpath : "~/.aws/config", profile_file_state(fpath, ctext, fstate, sizeof fstate));
        }
        else if (role || sso || proc)
            snprintf(why, whylen, "profile \"%s\" uses %s, which shardrun does not support (static keys only; "
                     "use web identity, ECS or EC2 roles for temporary credentials)", profile,
                     role ? "role_arn" : sso ? "sso_session" : "credential_process");
        else
            snprintf(why, whylen, "profile \"%s\" has no %s", profile,
                     v->ak && *v->ak ? "aws_secret_access_key" : "aws_access_key_id");
        free(role);
        free(sso);
        free(proc);
        aws_profile_keys_clear(v);
    }
    if (text) OPENSSL_cleanse(text, strlen(text));
    if (ctext) OPENSSL_cleanse(ctext, strlen(ctext));
    free(text);
    free(ctext);
    free(cpath);
    free(fpath);
    return ok;
}
