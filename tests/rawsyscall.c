/* rawsyscall NR...: make each system call NR with zero arguments and print "NR=ERRNO"
 * (0 if it returned >= 0). A static helper for tests/test_parity.py: what a container's
 * seccomp filter answers for a syscall number, whatever libc knows. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long nr = strtol(argv[i], NULL, 10);
        errno = 0;
        long r = syscall(nr, 0, 0, 0, 0, 0, 0);
        printf("%ld=%d\n", nr, r < 0 ? errno : 0);
    }
    return 0;
}
