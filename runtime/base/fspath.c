#include "fspath.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

int fspath_mkdir_parents(const char *path, errbuf_t *err)
{
    char dir[4096];
    size_t n = strlen(path);
    if (n >= sizeof dir) return errbuf_set(err, "%.200s...: path too long", path);
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0; /* the current folder, or / */
    *slash = '\0';
    /* each prefix in turn: "a", "a/b", "a/b/c" (EEXIST is fine: a folder, or
     * a file that the open after us reports better than we could) */
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            struct stat st;
            if (!(e == EACCES && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)))
                return errbuf_set(err, "%s: cannot create folder: %s", dir, strerror(e));
        }
        *p = c;
        if (c == '\0') break;
    }
    return 0;
}
