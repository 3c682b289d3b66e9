#include "procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

static void procstat_family(buf_t *out, const char *name, const char *type, const char *help, double v)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s ", name, help, name, type, name);
    metrics_format_value(out, v);
    buf_append_char(out, '\n');
}

/* Seconds since the epoch at which the system booted (btime in /proc/stat). */
static double procstat_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[256];
    double bt = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &bt) == 1) break;
    fclose(f);
    return bt;
}

static long procstat_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

void procstat_render(buf_t *out)
{
    char stat[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(stat, 1, sizeof stat - 1, f) : 0;
    if (f) fclose(f);
    stat[n] = '\0';
    /* after "pid (comm) ": the comm may hold spaces and parentheses, so start after the last ')' */
    const char *p = strrchr(stat, ')');
    unsigned long utime, stime, vsize;
    unsigned long long starttime;
    long rss;
    double tick = (double)sysconf(_SC_CLK_TCK);
    if (p && tick > 0 &&
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu %lu %ld",
               &utime, &stime, &starttime, &vsize, &rss) == 5) {
        procstat_family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                        (double)(utime + stime) / tick);
        procstat_family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                        (double)rss * (double)sysconf(_SC_PAGESIZE));
        procstat_family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", (double)vsize);
        double boot = procstat_boot_time();
        if (boot >= 0)
            procstat_family(out, "process_start_time_seconds", "gauge",
                            "Start time of the process since unix epoch in seconds.", boot + (double)starttime / tick);
    }
    long fds = procstat_open_fds();
    if (fds >= 0) procstat_family(out, "process_open_fds", "gauge", "Number of open file descriptors.", (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        procstat_family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                        rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}
