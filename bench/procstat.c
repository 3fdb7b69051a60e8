/*
 * procstat: server CPU and RSS from /proc. See procstat.h for the contract.
 */
#include "procstat.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads a small /proc file whole (they are generated on read, so one read
 * of a big enough buffer is the way to get a consistent snapshot).
 * Returns the length, NUL-terminated, or -1. */
static ssize_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* The fields after "(comm)" in /proc/<pid>/stat, starting at field 3
 * (state). comm may hold spaces and parentheses, so the last ')' is where
 * the fixed fields start. */
static const char *stat_fields(pid_t pid, char *buf, size_t cap)
{
    char path[64];

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (slurp(path, buf, cap) < 0)
        return NULL;
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp + 2 : NULL;
}

/* Field k of stat, numbered as in proc(5); fields points at field 3. */
static long long stat_field(const char *fields, int k)
{
    const char *p = fields;

    for (int i = 3; i < k && p; i++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    return p ? strtoll(p, NULL, 10) : -1;
}

/* Linear: the set holds a handful of pids. */
static bool procset_has(const struct procset *ps, pid_t pid)
{
    for (int i = 0; i < ps->n; i++)
        if (ps->pids[i] == pid)
            return true;
    return false;
}

/* Adds pid once; past PROCSET_MAX the figures undercount, so say so. */
static void procset_add(struct procset *ps, pid_t pid)
{
    if (procset_has(ps, pid))
        return;
    if (ps->n == PROCSET_MAX) {
        fprintf(stderr, "procstat: more than %d processes, ignoring %d\n",
                PROCSET_MAX, (int)pid);
        return;
    }
    ps->pids[ps->n++] = pid;
}

/* Adds the descendants of the listed pids. /proc has no child list that is
 * always enabled (task/<tid>/children needs CONFIG_PROC_CHILDREN), so scan
 * every process's parent and repeat until a pass adds nothing: a pass can
 * meet a grandchild before its parent joins the set. */
static void procset_add_descendants(struct procset *ps)
{
    for (int grew = 1; grew;) {
        int before = ps->n;
        DIR *d = opendir("/proc");
        struct dirent *de;
        char buf[1024];

        if (!d)
            return;
        while ((de = readdir(d)) != NULL) {
            char *endp;
            long pid = strtol(de->d_name, &endp, 10);
            if (*endp != '\0' || pid <= 0)
                continue;
            const char *f = stat_fields((pid_t)pid, buf, sizeof buf);
            if (f && procset_has(ps, (pid_t)stat_field(f, 4)))
                procset_add(ps, (pid_t)pid);
        }
        closedir(d);
        grew = ps->n > before;
    }
}

/* Parses the list, checks each pid exists, then pulls in descendants and
 * decides once which CPU source to use so before/after readings agree. */
int procset_init(struct procset *ps, const char *list)
{
    const char *p = list;
    char path[64];

    ps->n = 0;
    while (*p) {
        char *endp;
        long pid = strtol(p, &endp, 10);
        if (endp == p || pid <= 0 || (*endp != ',' && *endp != '\0')) {
            fprintf(stderr, "procstat: bad pid list '%s'\n", list);
            return -1;
        }
        snprintf(path, sizeof path, "/proc/%ld", pid);
        if (access(path, F_OK) != 0) {
            fprintf(stderr, "procstat: no process %ld\n", pid);
            return -1;
        }
        procset_add(ps, (pid_t)pid);
        p = *endp ? endp + 1 : endp;
    }
    if (ps->n == 0) {
        fprintf(stderr, "procstat: empty pid list\n");
        return -1;
    }
    procset_add_descendants(ps);
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)ps->pids[0]);
    ps->schedstat = access(path, R_OK) == 0;
    return 0;
}

/* Sum of sum_exec_runtime (the first schedstat field, ns) over the threads
 * of one process. */
static int64_t pid_sched_ns(pid_t pid)
{
    char path[96], buf[256];
    int64_t sum = 0;
    struct dirent *de;

    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.16s/schedstat", (int)pid,
                 de->d_name);
        if (slurp(path, buf, sizeof buf) > 0)   /* a thread may just have exited */
            sum += strtoll(buf, NULL, 10);
    }
    closedir(d);
    return sum;
}

/* utime + stime (fields 14 and 15, in clock ticks) as nanoseconds. */
static int64_t pid_stat_ns(pid_t pid)
{
    char buf[1024];
    const char *f = stat_fields(pid, buf, sizeof buf);

    if (!f)
        return -1;
    long long ticks = stat_field(f, 14) + stat_field(f, 15);
    return (int64_t)(ticks * (1000000000LL / sysconf(_SC_CLK_TCK)));
}

/* Sums the set with the source chosen at init, so readings stay comparable. */
int64_t procset_cpu_ns(const struct procset *ps)
{
    int64_t sum = 0;

    for (int i = 0; i < ps->n; i++) {
        int64_t v = ps->schedstat ? pid_sched_ns(ps->pids[i])
                                  : pid_stat_ns(ps->pids[i]);
        if (v < 0)
            return -1;
        sum += v;
    }
    return sum;
}

/* VmRSS from /proc/<pid>/status, which reports it in kB. */
int64_t procset_rss(const struct procset *ps)
{
    int64_t sum = 0;
    char path[64], buf[8192];

    for (int i = 0; i < ps->n; i++) {
        snprintf(path, sizeof path, "/proc/%d/status", (int)ps->pids[i]);
        if (slurp(path, buf, sizeof buf) < 0)
            return -1;
        const char *v = strstr(buf, "\nVmRSS:");
        if (!v)
            return -1;
        sum += strtoll(v + 7, NULL, 10) * 1024;
    }
    return sum;
}

/* "cpu  user nice system idle iowait irq softirq steal ..." in ticks. */
int machine_cpu_read(struct machine_cpu *m)
{
    char buf[512];
    long long v[8] = {0};

    if (slurp("/proc/stat", buf, sizeof buf) < 0 ||
        sscanf(buf, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 4)
        return -1;
    int64_t tick = 1000000000LL / sysconf(_SC_CLK_TCK);
    m->busy_ns = (int64_t)(v[0] + v[1] + v[2]) * tick;
    m->steal_ns = (int64_t)v[7] * tick;
    return 0;
}
