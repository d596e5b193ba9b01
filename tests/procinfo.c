/* What the kernel says about a process's execution attributes, for the tests:
   procinfo [PID]  (PID defaults to the caller; personality and keyring are the caller's). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <unistd.h>

struct sched_attr_v1 {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

int main(int argc, char **argv) {
    int pid = argc > 1 ? atoi(argv[1]) : 0;
    printf("personality 0x%x\n", personality(0xffffffff));
    struct sched_attr_v1 a;
    memset(&a, 0, sizeof a);
    if (syscall(SYS_sched_getattr, pid, &a, sizeof a, 0) == 0)
        printf("sched policy=%u nice=%d priority=%u runtime=%llu deadline=%llu period=%llu flags=0x%llx\n",
               a.policy, a.nice, a.priority, (unsigned long long)a.runtime,
               (unsigned long long)a.deadline, (unsigned long long)a.period,
               (unsigned long long)a.flags);
    else
        perror("sched_getattr");
    long prio = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, pid);
    if (prio >= 0)
        printf("ioprio class=%ld level=%ld\n", prio >> 13, prio & 0x1fff);
    else
        perror("ioprio_get");
    char desc[512];
    long n = syscall(SYS_keyctl, 6 /* KEYCTL_DESCRIBE */, -3 /* session */, desc, sizeof desc);
    if (n > 0)
        printf("session %s\n", desc);
    else
        perror("keyctl describe");
    return 0;
}
