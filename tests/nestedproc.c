/* tests/test_parity_rootfs.py's probe of the kernel's "mount too revealing" check: in a
   new user, mount and PID namespace, mount a fresh procfs on /proc. Prints "mounted" or
   why not. It passes only where a fully visible procfs is in the caller's mount
   namespace (e.g. the host's, left under a --no-pivot root). Built static: the rootfs is
   busybox-static. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) != 0) {
        printf("unshare: %s\n", strerror(errno));
        return 2;
    }
    pid_t pid = fork(); /* a procfs shows the PID namespace its mounter is in */
    if (pid < 0) {
        printf("fork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
            printf("mount proc: %s\n", strerror(errno));
            return 1;
        }
        printf("mounted\n");
        return 0;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}
