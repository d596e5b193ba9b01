/*
 * ociruntime.security._anonexe: cut a runtime process loose from the host files it runs from.
 *
 * A runtime process that a container can see (the init while the container is created,
 * an `exec` child before its execve) is the host's Python interpreter. Through
 * /proc/<pid>/exe and /proc/<pid>/map_files a process in the container could open the
 * interpreter, libpython, libc or an extension module and, as root, overwrite it
 * (CVE-2019-5736 for a Python runtime). This module removes every such reference:
 *
 *   1. each file mapping is replaced, in place, by the same bytes: the same file mapped
 *      again through a read-only overlayfs (one per mount the files are on, whose lower
 *      layer is that mount's root), or, if the process wrote to it (pagemap says so),
 *      an anonymous copy (made aside, then mremap'd over the original at once);
 *   2. /proc/self/exe is pointed at an empty, sealed, read-only memfd (PR_SET_MM_MAP,
 *      which the kernel allows only once the old executable is no longer mapped).
 *
 * It is C, not ctypes, because the copy of a writable segment (the interpreter's own
 * globals: allocator state, static objects' reference counts) and the mremap that puts
 * it in place must happen with no Python code running in between.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

/* Read a whole /proc file into a malloc'd, NUL-terminated buffer. */
static char *read_proc_file(const char *path)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || buf == NULL) {
        free(buf);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    for (;;) {
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

struct mapping {
    unsigned long start, end, offset, inode;
    int prot, shared, written;
    const char *path;  /* into the maps buffer; "" for none */
};

/* The mappings of /proc/self/maps, or smaps, that name a file (inode != 0); from smaps
 * also whether the process wrote to each (private anonymous pages, present or swapped). */
static int file_mappings(char *maps, struct mapping *out, int max)
{
    int count = 0;
    struct mapping *cur = NULL;
    for (char *line = maps; line && *line; ) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        unsigned long start, end, offset, inode, kb;
        char perms[5];
        unsigned int major, minor;
        int consumed = 0;
        if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu %n", &start, &end, perms, &offset,
                   &major, &minor, &inode, &consumed) == 7) {
            cur = NULL;
            if (inode != 0) {
                if (count == max)
                    return -2;
                cur = &out[count++];
                cur->start = start, cur->end = end, cur->offset = offset, cur->inode = inode;
                cur->written = 0;
                cur->shared = perms[3] == 's';
                cur->prot = (perms[0] == 'r' ? PROT_READ : 0)
                    | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
                cur->path = consumed ? line + consumed : "";
            }
        } else if (cur && (sscanf(line, "Anonymous: %lu kB", &kb) == 1
                           || sscanf(line, "Swap: %lu kB", &kb) == 1)) {
            cur->written |= kb != 0;
        }
        line = next;
    }
    return count;
}

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61)  /* a page-cache page, or shared anonymous memory */

/* Whether the process wrote to `m`: whether any of its pages is private anonymous memory
 * (present and not the file's page, or swapped out), per /proc/self/pagemap. Much cheaper
 * than /proc/self/smaps, which also works out each page's sharing for Pss. */
static int written(int pagemap, const struct mapping *m)
{
    static unsigned long long entries[1024];
    long page = sysconf(_SC_PAGESIZE);
    unsigned long first = m->start / page, last = m->end / page;
    while (first < last) {
        size_t n = last - first > 1024 ? 1024 : last - first;
        ssize_t got = pread(pagemap, entries, n * sizeof entries[0], (off_t)(first * 8));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || got % 8 != 0)
            return -1;
        n = (size_t)got / 8;
        for (size_t i = 0; i < n; i++)
            if ((entries[i] & PM_PRESENT && !(entries[i] & PM_FILE)) || entries[i] & PM_SWAP)
                return 1;
        first += n;
    }
    return 0;
}

/* A writable shared mapping cannot be replaced faithfully; those of memory-only files
 * (memfd, System V shared memory) expose nothing of the host and stay. */
static int harmless_shared(const struct mapping *m)
{
    return strncmp(m->path, "/memfd:", 7) == 0 || strncmp(m->path, "/SYSV", 5) == 0;
}

/* Replace one mapping by an anonymous copy. */
static int copy_to_anonymous(const struct mapping *m)
{
    size_t len = m->end - m->start;
    void *where = (void *)m->start;
    if (!(m->prot & PROT_READ)) {
        /* A guard gap between a library's segments: nothing to copy. */
        void *r = mmap(where, len, m->prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        return r == MAP_FAILED ? -1 : 0;
    }
    void *copy = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (copy == MAP_FAILED)
        return -1;
    memcpy(copy, where, len);
    if (mprotect(copy, len, m->prot) != 0
        || mremap(copy, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, where) == MAP_FAILED) {
        munmap(copy, len);
        return -1;
    }
    return 0;
}

/* Read-only overlayfs mounts, one per mount the process maps files from, whose lower
 * layer is that mount's root (closing each costs an RCU grace period: the fewer the
 * better). `dir` caches, per directory of a mapped file, its mount's overlay. */
struct overlays {
    int empty;  /* an empty detached tmpfs: overlayfs wants two layers without an upper */
    int count, ndirs;
    char root[16][PATH_MAX];
    int fd[16];
    struct { char path[PATH_MAX]; int overlay; size_t rootlen; } dir[64];
    /* The file last opened: a library's segments come one after the other in maps. */
    const char *file;
    unsigned long file_inode;
    int file_fd;  /* -1: it could not be opened, or is another inode now */
};

#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#define FSMOUNT_CLOEXEC 1

static int detached_mount(const char *fstype, const char *key, const char *value)
{
    int fs = (int)syscall(SYS_fsopen, fstype, 1 /* FSOPEN_CLOEXEC */);
    if (fs < 0)
        return -1;
    int mnt = -1;
    if ((key == NULL || syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, key, value, 0) == 0)
        && syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0x1 /* MOUNT_ATTR_RDONLY */);
    close(fs);
    return mnt;
}

/* A detached overlayfs whose layers are `dir` and an empty tmpfs: without an upper layer
 * its superblock is read-only, and so is the private clone of `dir`'s mount the kernel
 * reads through. No mount flag, remount or clone can make a file reached through it
 * writable, and it decodes no file handles (open_by_handle_at). */
static int readonly_overlay(struct overlays *ovl, const char *dir)
{
    char layers[PATH_MAX + 64];
    if (strpbrk(dir, ":,\\") != NULL)
        return -1;  /* overlayfs' option separators: rare, fall back to copying */
    if (ovl->empty < 0)
        ovl->empty = detached_mount("tmpfs", NULL, NULL);
    if (ovl->empty < 0)
        return -1;
    if (snprintf(layers, sizeof layers, "%s:/proc/self/fd/%d", dir, ovl->empty)
        >= (int)sizeof layers)
        return -1;
    return detached_mount("overlay", "lowerdir", layers);
}

/* The root of the mount `dir` is on (the nearest ancestor that is a mount root): its
 * length in *rootlen. (No device check: a file of an overlayfs is mapped, and shown in
 * maps, with its real layer's device. The caller checks the inode.) */
static int mount_root(char *dir, size_t *rootlen)
{
    size_t len = strlen(dir);
    for (;;) {
        struct statx stx;
        char saved = dir[len];
        dir[len] = '\0';
        int rc = statx(AT_FDCWD, len ? dir : "/", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx);
        dir[len] = saved;
        if (rc != 0 || !(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
            return -1;
        if (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT || len == 0) {
            *rootlen = len;
            return 0;
        }
        while (len > 0 && dir[len - 1] != '/')  /* up one level */
            len--;
        if (len > 0)
            len--;
    }
}

/* The read-only overlay of the mount the file mapped by `m` is on; in *rel the file's
 * path relative to that mount's root. */
static int overlay_for(struct overlays *ovl, const struct mapping *m, const char **rel)
{
    const char *slash = strrchr(m->path, '/');
    size_t dirlen = (size_t)(slash - m->path);
    int i;
    if (dirlen >= PATH_MAX)
        return -1;
    for (i = 0; i < ovl->ndirs; i++)
        if (strncmp(ovl->dir[i].path, m->path, dirlen) == 0 && ovl->dir[i].path[dirlen] == '\0')
            break;
    if (i == ovl->ndirs) {
        char dir[PATH_MAX];
        size_t rootlen;
        int fd = -1;
        memcpy(dir, m->path, dirlen);
        dir[dirlen] = '\0';
        if (mount_root(dir, &rootlen) == 0) {
            char root[PATH_MAX];
            memcpy(root, dir, rootlen);
            strcpy(root + rootlen, rootlen ? "" : "/");
            int j;
            for (j = 0; j < ovl->count; j++)
                if (strcmp(ovl->root[j], root) == 0)
                    break;
            if (j < ovl->count) {
                fd = ovl->fd[j];
            } else if (ovl->count < 16) {
                fd = readonly_overlay(ovl, root);
                strcpy(ovl->root[ovl->count], root);
                ovl->fd[ovl->count++] = fd;
            }
        }
        if (ovl->ndirs == 64)
            return fd < 0 ? -1 : (*rel = m->path + rootlen + 1, fd);
        strcpy(ovl->dir[i].path, dir);
        ovl->dir[i].overlay = fd;
        ovl->dir[i].rootlen = fd < 0 ? 0 : rootlen;
        ovl->ndirs++;
    }
    *rel = m->path + ovl->dir[i].rootlen + 1;
    return ovl->dir[i].overlay;
}

/* Map the same bytes again, from the same file reached through a read-only overlay.
 * Only for mappings the process never wrote to: their bytes are the file's. */
static int remap_readonly(struct overlays *ovl, const struct mapping *m)
{
    if (m->written || !(m->prot & PROT_READ) || m->path[0] != '/'
        || strstr(m->path, " (deleted)") != NULL)
        return -1;
    if (ovl->file == NULL || strcmp(ovl->file, m->path) != 0 || ovl->file_inode != m->inode) {
        if (ovl->file_fd >= 0)
            close(ovl->file_fd);
        ovl->file = m->path, ovl->file_inode = m->inode, ovl->file_fd = -1;
        const char *rel;
        int mnt = overlay_for(ovl, m, &rel);
        if (mnt < 0)
            return -1;
        /* Beneath the overlay's root and through no symlink: the path is the one the
         * kernel gave in /proc/self/maps, which names no symlink. */
        struct open_how how = {
            .flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
                | RESOLVE_NO_XDEV,
        };
        int fd = (int)syscall(SYS_openat2, mnt, rel, &how, sizeof how);
        if (fd < 0)
            return -1;
        struct stat st;
        /* The same inode (overlayfs reports a single layer's inode numbers as they are):
         * a file replaced since it was mapped must not be mapped in its place. */
        if (fstat(fd, &st) != 0 || st.st_ino != m->inode) {
            close(fd);
            return -1;
        }
        ovl->file_fd = fd;
    }
    if (ovl->file_fd < 0)
        return -1;
    void *r = mmap((void *)m->start, m->end - m->start, m->prot, MAP_PRIVATE | MAP_FIXED,
                   ovl->file_fd, (off_t)m->offset);
    return r == MAP_FAILED ? -1 : 0;
}

/* An empty, sealed memfd opened read-only: a harmless /proc/self/exe. */
static int sealed_empty_executable(void)
{
    int fd = (int)syscall(SYS_memfd_create, "ociruntime", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)  /* kernels before 6.3 know no MFD_EXEC */
        fd = (int)syscall(SYS_memfd_create, "ociruntime", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
        close(fd);
        return -1;
    }
    /* The kernel refuses an executable that is open for writing: reopen read-only. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    close(fd);
    return ro;
}

/* Point /proc/self/exe at `exe_fd`, keeping every other field of the mm as it is. */
static int replace_exe(int exe_fd)
{
    char *stat = read_proc_file("/proc/self/stat");
    if (stat == NULL)
        return -1;
    char *p = strrchr(stat, ')');
    unsigned long f[53] = {0};  /* f[n]: field n of proc(5) stat, 1-based */
    if (p == NULL || p[1] == '\0') {
        free(stat);
        errno = EINVAL;
        return -1;
    }
    p += 2;
    p = strchr(p, ' ');  /* field 3, the state letter, is not a number */
    for (int n = 4; p != NULL && n < 53; n++)
        f[n] = strtoul(p + 1, &p, 10);
    free(stat);
    struct prctl_mm_map map = {
        .start_code = f[26], .end_code = f[27], .start_stack = f[28],
        .start_data = f[45], .end_data = f[46], .start_brk = f[47],
        .brk = (unsigned long)syscall(SYS_brk, 0),
        .arg_start = f[48], .arg_end = f[49], .env_start = f[50], .env_end = f[51],
        .auxv = NULL, .auxv_size = 0, .exe_fd = (unsigned int)exe_fd,
    };
    return prctl(PR_SET_MM, PR_SET_MM_MAP, (unsigned long)&map, sizeof map, 0);
}

#define MAX_MAPPINGS 4096

/* Returns the bytes copied into anonymous memory (the rest was remapped read-only). */
static long detach_mappings(void)
{
    /* pagemap is mode 0400: once we are not dumpable it belongs to the host's root, which
     * an init in a user namespace is not. smaps (0444) says as much, at a higher price. */
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    char *maps = read_proc_file(pagemap >= 0 ? "/proc/self/maps" : "/proc/self/smaps");
    struct mapping *list = malloc(sizeof(struct mapping) * MAX_MAPPINGS);
    struct overlays *ovl = malloc(sizeof(struct overlays));
    long copied = -1;
    if (maps == NULL || list == NULL || ovl == NULL)
        goto out;
    ovl->count = 0;
    ovl->ndirs = 0;
    ovl->empty = -1;
    ovl->file = NULL;
    ovl->file_fd = -1;
    int count = file_mappings(maps, list, MAX_MAPPINGS);
    if (count < 0) {
        errno = E2BIG;
        goto out;
    }
    for (int i = 0; i < count && pagemap >= 0; i++) {
        /* Before any remapping: a replaced mapping's pages are all fresh. */
        list[i].written = written(pagemap, &list[i]);
        if (list[i].written < 0)
            goto out;
    }
    copied = 0;
    for (int i = 0; i < count && copied >= 0; i++) {
        const struct mapping *m = &list[i];
        if (m->shared && (m->prot & PROT_WRITE)) {
            if (!harmless_shared(m)) {
                errno = EBUSY;
                copied = -1;
            }
            continue;
        }
        if (remap_readonly(ovl, m) == 0)
            continue;
        if (copy_to_anonymous(m) != 0)
            copied = -1;
        else
            copied += (long)(m->end - m->start);
    }
    if (ovl->file_fd >= 0)
        close(ovl->file_fd);
    for (int i = 0; i < ovl->count; i++)
        if (ovl->fd[i] >= 0)
            close(ovl->fd[i]);
    if (ovl->empty >= 0)
        close(ovl->empty);
out:
    free(maps);
    if (pagemap >= 0)
        close(pagemap);
    free(list);
    free(ovl);
    return copied;
}

static PyObject *detach_mappings_py(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    long copied = detach_mappings();
    if (copied < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(copied);
}

static PyObject *replace_exe_py(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    int exe = sealed_empty_executable();
    if (exe < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    int rc = replace_exe(exe);
    int saved = errno;
    close(exe);
    if (rc != 0) {
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"detach_mappings", detach_mappings_py, METH_NOARGS,
     "detach_mappings() -> bytes copied: replace every file mapping of this process by "
     "the same bytes through a read-only overlayfs, or by an anonymous copy."},
    {"replace_exe", replace_exe_py, METH_NOARGS,
     "replace_exe(): point /proc/self/exe at an empty sealed memfd (needs CAP_SYS_ADMIN "
     "or CAP_CHECKPOINT_RESTORE, and the old executable no longer mapped)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_anonexe", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__anonexe(void)
{
    return PyModule_Create(&module);
}
