/*
 * procstat: what a server process costs, read from /proc — CPU time and
 * resident memory, summed over the given processes and all their
 * descendants (a server may fork workers). wsload reads it before and
 * after a measured window and reports the difference.
 */
#ifndef BENCH_PROCSTAT_H
#define BENCH_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

/* More than any server here will have; descendants past it are ignored
 * with a warning. */
#define PROCSET_MAX 64

struct procset {
    int n;
    int schedstat;          /* 1: per-thread schedstat is readable */
    pid_t pids[PROCSET_MAX];
};

/*
 * Fills ps from a comma-separated pid list ("123" or "123,456"), adding
 * every descendant alive now. Returns 0, or -1 with a message on stderr
 * when the list is malformed or a listed pid does not exist.
 */
int procset_init(struct procset *ps, const char *list);

/*
 * CPU time (user + system) in nanoseconds over the set. Per-thread
 * schedstat (nanosecond resolution) is preferred; where it is missing,
 * utime + stime from /proc/<pid>/stat (clock-tick resolution). Returns -1
 * when a process has gone.
 */
int64_t procset_cpu_ns(const struct procset *ps);

/* VmRSS in bytes over the set, or -1 when a process has gone. */
int64_t procset_rss(const struct procset *ps);

/*
 * The whole machine's CPU time, from the first line of /proc/stat, in
 * nanoseconds (clock-tick resolution). busy is user + nice + system: the
 * same time a task's own CPU figure counts, whether or not the kernel
 * accounts interrupt time apart. steal is time the hypervisor gave to
 * someone else. The difference between busy and the CPU of the server and
 * of wsload is what other processes used: a run that shared its cores.
 */
struct machine_cpu {
    int64_t busy_ns;
    int64_t steal_ns;
};

/* Returns 0, or -1 when /proc/stat is unreadable. */
int machine_cpu_read(struct machine_cpu *m);

#endif
