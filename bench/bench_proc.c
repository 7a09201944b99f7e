/* Readers of /proc: the broker's CPU time, RSS and run-queue wait, and the
 * bench's own CPU. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

/* utime and stime (fields 14 and 15 of /proc/PID/stat) in seconds. */
int proc_cpu(int pid, cpu_times *t)
{
    char path[64], buf[2048], *p;
    FILE *f;
    size_t n;
    unsigned long ut = 0, st = 0;
    double tck = (double)sysconf(_SC_CLK_TCK);

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    /* after ") ": field 3 (state) ... field 14 utime, 15 stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return -1;
    t->user = (double)ut / tck;
    t->sys = (double)st / tck;
    return 0;
}

/* VmRSS in KiB from /proc/PID/status, or -1. */
long proc_rss(int pid)
{
    char path[64], line[256];
    FILE *f;
    long kb = -1;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Seconds run and waited on a run queue, summed over the threads of PID
 * (/proc/PID/task/TID/schedstat): the wait shows when a process was
 * starved of CPU by other load. */
int proc_sched(int pid, double *run, double *wait)
{
    char path[96];
    unsigned long long r, w, rs = 0, ws = 0;
    struct dirent *de;
    DIR *d;

    *run = *wait = 0;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        FILE *f;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.20s/schedstat", pid,
                 de->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fscanf(f, "%llu %llu", &r, &w) == 2) {
            rs += r;
            ws += w;
        }
        fclose(f);
    }
    closedir(d);
    *run = (double)rs / 1e9;
    *wait = (double)ws / 1e9;
    return 0;
}

void self_cpu(cpu_times *t)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    t->user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    t->sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

void proc_sample(int end)
{
    if (!end) {
        B.bcpu_ok = proc_cpu(B.pid, &B.bcpu0) == 0;
        self_cpu(&B.scpu0);
        proc_sched(B.pid, &B.brun0, &B.bwait0);
        proc_sched(getpid(), &B.srun0, &B.swait0);
        B.reads0 = B.reads;
    } else {
        B.bcpu_ok = B.bcpu_ok && proc_cpu(B.pid, &B.bcpu1) == 0;
        self_cpu(&B.scpu1);
        proc_sched(B.pid, &B.brun1, &B.bwait1);
        proc_sched(getpid(), &B.srun1, &B.swait1);
        B.reads1 = B.reads;
    }
}
