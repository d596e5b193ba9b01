/* The `ociruntime` command: a small program that embeds the interpreter.
 *
 * The script launcher (`#!python -IS`, launcher.py's TEMPLATE) pays, before any of our
 * code runs, for the kernel's `#!` indirection, the interpreter working out its paths
 * (getpath: pyvenv.cfg, a readlink per symlink, a stat per landmark) and compiling the
 * script. Every command pays it, and `state`, `start`, `kill`, `delete` are mostly
 * that start. This program is the interpreter itself (Debian's libpython3.11.a, linked
 * as /usr/bin/python3.11 is), configured as `python -I -S` would be, with its module
 * search path written in at build time; it then runs the body launcher.py wrote.
 *
 * For `create`, `run` and `exec` it first starts the cgroup warm-up (cgroups/warmup.py
 * says why): the no-op write of our pid to our own cgroup.procs of the first cgroup v1
 * hierarchy, in a thread of its own, before the interpreter starts, so that the
 * kernel's grace period runs while the interpreter starts and the CLI is imported.
 * The command word and the target are found exactly as warmup.py finds them
 * (tests/test_launcher.py holds the two to each other); the body hands the thread to
 * Python (`warmup.adopt`), which joins it where it must be single-threaded.
 *
 * The runtime's own two C extensions (kernel/_syscall.c, security/_anonexe.c) are linked
 * in as built-in modules, and zlib and expat (which libpython's built-in modules use)
 * statically where their archives exist: no dlopen of those files, and fewer file
 * mappings for the init and an exec to detach from (security/containersafe.py: ~47 us
 * each, on create's critical path). For a create, run or exec (the commands that use
 * them) the body puts the two under their package names; any other command that needs
 * one loads its shared object as under the script launcher, and the one-shot commands,
 * which need neither, pay for neither.
 *
 * launcher.py builds it with a generated "launcher_config.h": SEARCH_PATHS,
 * PREFIX, EXEC_PREFIX, BASE_PREFIX, BASE_EXEC_PREFIX, EXECUTABLE, BODY, IDENT.
 * Built with -DLAUNCHER_SELFTEST (tests only), main() instead prints the command word
 * and the warm-up target it would use, and runs nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher_config.h"

/* kernel/_syscall.c and security/_anonexe.c, compiled with this file by launcher.py. */
PyMODINIT_FUNC PyInit__syscall(void);
PyMODINIT_FUNC PyInit__anonexe(void);

/* Kept in the binary so that tools/install.sh can tell a launcher it installed. */
__attribute__((used)) static const char ident[] = IDENT;

/* -- the command word (warmup.command_of) ---------------------------------------- */

/* The CLI's global flags that take a value (warmup.GLOBAL_VALUE_FLAGS). */
static const char *const value_flags[] = {"root", "log", "log-format", "criu", "rootless", NULL};

static int takes_value(const char *name, size_t len)
{
    for (const char *const *f = value_flags; *f != NULL; f++)
        if (strlen(*f) == len && strncmp(*f, name, len) == 0)
            return 1;
    return 0;
}

/* The command word of argv[1..], skipping the global flags; NULL if there is none. */
static const char *command_word(int argc, char **argv)
{
    int i = 1;
    while (i < argc) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0)
            return i + 1 < argc ? argv[i + 1] : NULL;
        if (arg[0] != '-' || strcmp(arg, "-") == 0)
            return arg;
        while (*arg == '-')
            arg++;
        const char *eq = strchr(arg, '=');
        size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        i += (eq == NULL && takes_value(arg, len)) ? 2 : 1;
    }
    return NULL;
}

static int warmed(const char *command)
{
    return command != NULL && (strcmp(command, "create") == 0 || strcmp(command, "run") == 0
                               || strcmp(command, "exec") == 0);
}

/* -- the target (warmup.own_v1_procs) --------------------------------------------- */

/* The whole of a /proc file, NUL-terminated (NULL if it cannot be read). */
static char *read_all(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t size = 16384, used = 0;
    char *buf = malloc(size);
    while (buf != NULL) {
        if (size - used < 4096) {
            char *bigger = realloc(buf, size *= 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
        }
        ssize_t n = read(fd, buf + used, size - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0) {
                free(buf);
                buf = NULL;
            }
            break;
        }
        used += (size_t)n;
    }
    close(fd);
    if (buf != NULL)
        buf[used] = '\0';
    return buf;
}

/* Mount options of a v1 hierarchy that name no controller (warmup.NOT_CONTROLLERS). */
static const char *const not_controllers[] = {"rw", "ro", "clone_children", "noprefix",
                                              "xattr", "none", NULL};

static int is_controller(const char *word, size_t len)
{
    for (const char *const *n = not_controllers; *n != NULL; n++)
        if (strlen(*n) == len && strncmp(*n, word, len) == 0)
            return 0;
    return 1;
}

/* Whether `word` (len bytes) is one of the comma-separated words of list[0..list_len). */
static int in_list(const char *word, size_t len, const char *list, size_t list_len)
{
    const char *end = list + list_len;
    while (list < end) {
        const char *comma = memchr(list, ',', (size_t)(end - list));
        size_t n = comma != NULL ? (size_t)(comma - list) : (size_t)(end - list);
        if (n == len && strncmp(list, word, len) == 0)
            return 1;
        list += n + 1;
    }
    return 0;
}

/* Whether the mount options name exactly the controllers of `ctl` (both lists of
 * distinct words, as the kernel writes them): the same set, as warmup.py compares. */
static int same_controllers(const char *opts, size_t opts_len, const char *ctl, size_t ctl_len)
{
    size_t wanted = 1, found = 0;
    for (size_t i = 0; i < ctl_len; i++)
        wanted += ctl[i] == ',';
    const char *p = opts, *end = opts + opts_len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);
        if (is_controller(p, n)) {
            if (!in_list(p, n, ctl, ctl_len))
                return 0;
            found++;
        }
        p += n + 1;
    }
    return found == wanted;
}

/* The n-th (0-based) space-separated field of line[0..len): its start and length. */
static const char *field(const char *line, size_t len, int n, size_t *field_len)
{
    const char *p = line, *end = line + len;
    for (;;) {
        while (p < end && *p == ' ')
            p++;
        const char *start = p;
        while (p < end && *p != ' ')
            p++;
        if (start == p)
            return NULL;
        if (n-- == 0) {
            *field_len = (size_t)(p - start);
            return start;
        }
    }
}

/* In the mountinfo line, the mount point of a v1 hierarchy whose controllers are `ctl`,
 * or NULL. */
static const char *hierarchy_of(const char *line, size_t len, const char *ctl, size_t ctl_len,
                                size_t *mp_len)
{
    static const char marker[] = " - cgroup ";
    const char *sep = memmem(line, len, marker, sizeof(marker) - 1);
    if (sep == NULL)
        return NULL;
    const char *fs = sep + sizeof(marker) - 1, *end = line + len;
    const char *opts = end;  /* the last field: the super options */
    while (opts > fs && opts[-1] != ' ')
        opts--;
    if (!same_controllers(opts, (size_t)(end - opts), ctl, ctl_len))
        return NULL;
    return field(line, (size_t)(sep - line), 4, mp_len);
}

/* `cgroup.procs` of our own cgroup in the first v1 controller hierarchy mounted (in
 * /proc/self/mountinfo's order), malloc'd; NULL if there is none. */
static char *own_v1_procs(void)
{
    char *cgroups = read_all("/proc/self/cgroup");
    char *mounts = cgroups != NULL ? read_all("/proc/self/mountinfo") : NULL;
    char *result = NULL;
    if (mounts == NULL)
        goto out;
    for (char *m = mounts; *m != '\0' && result == NULL;) {
        char *m_end = strchrnul(m, '\n');
        for (char *c = cgroups; *c != '\0' && result == NULL;) {
            char *c_end = strchrnul(c, '\n');
            /* "ID:CONTROLLERS:PATH"; v1 controller hierarchies only (no "name=") */
            char *colon1 = memchr(c, ':', (size_t)(c_end - c));
            char *colon2 = colon1 != NULL ? memchr(colon1 + 1, ':', (size_t)(c_end - colon1 - 1))
                                          : NULL;
            if (colon2 != NULL && colon2 > colon1 + 1 && strncmp(colon1 + 1, "name=", 5) != 0) {
                size_t mp_len;
                const char *mp = hierarchy_of(m, (size_t)(m_end - m), colon1 + 1,
                                              (size_t)(colon2 - colon1 - 1), &mp_len);
                if (mp != NULL) {
                    const char *path = colon2 + 1;
                    size_t path_len = (size_t)(c_end - path);
                    while (path_len > 0 && path[path_len - 1] == '/')
                        path_len--;
                    if (asprintf(&result, "%.*s%.*s/cgroup.procs", (int)mp_len, mp,
                                 (int)path_len, path) < 0)
                        result = NULL;
                }
            }
            c = *c_end != '\0' ? c_end + 1 : c_end;
        }
        m = *m_end != '\0' ? m_end + 1 : m_end;
    }
out:
    free(cgroups);
    free(mounts);
    return result;
}

/* -- the warm-up thread ----------------------------------------------------------- */

static void *write_zero(void *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t ignored = write(fd, "0", 1);
        (void)ignored;
        close(fd);
    }
    free(path);
    return NULL;
}

/* Start the warm-up (for a create, run or exec); its thread, or 0 if none was started. */
static unsigned long start_warm_up(void)
{
    char *procs = own_v1_procs();
    if (procs == NULL)
        return 0;
    pthread_t thread;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);  /* open, write, close */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  /* every signal stays the main thread's */
    int err = pthread_create(&thread, &attr, write_zero, procs);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        free(procs);
        return 0;
    }
    return (unsigned long)thread;
}

/* -- the interpreter -------------------------------------------------------------- */

static void fail(PyStatus status)
{
    if (PyStatus_IsExit(status))
        exit(status.exitcode);
    fprintf(stderr, "ociruntime: starting the interpreter: %s%s%s\n",
            status.func != NULL ? status.func : "", status.func != NULL ? ": " : "",
            status.err_msg != NULL ? status.err_msg : "failed");
    exit(1);
}

static void check(PyStatus status)
{
    if (PyStatus_Exception(status))
        fail(status);
}

static void set_string(PyConfig *config, wchar_t **field, const char *value)
{
    check(PyConfig_SetBytesString(config, field, value));
}

/* As `python -I -S`: isolated (no PYTHON* variables, no user site-packages, no script
 * directory on the path), no `site`; the arguments are ours, not the interpreter's. */
static void start_interpreter(int argc, char **argv)
{
    PyPreConfig preconfig;
    PyPreConfig_InitPythonConfig(&preconfig);
    preconfig.isolated = 1;
    preconfig.use_environment = 0;
    preconfig.parse_argv = 0;
    check(Py_PreInitializeFromBytesArgs(&preconfig, argc, argv));

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.isolated = 1;
    config.use_environment = 0;
    config.user_site_directory = 0;
    config.safe_path = 1;
    config.site_import = 0;
    config.parse_argv = 0;
    /* A diagnostic for the tests (tests/test_hot_path.py): -X importtime's report. */
    config.import_time = getenv("OCIRUNTIME_IMPORTTIME") != NULL;
    config.module_search_paths_set = 1;
    for (const char *const *p = SEARCH_PATHS; *p != NULL; p++) {
        wchar_t *path = Py_DecodeLocale(*p, NULL);
        if (path == NULL)
            fail(PyStatus_NoMemory());
        check(PyWideStringList_Append(&config.module_search_paths, path));
        PyMem_RawFree(path);
    }
    set_string(&config, &config.prefix, PREFIX);
    set_string(&config, &config.exec_prefix, EXEC_PREFIX);
    set_string(&config, &config.base_prefix, BASE_PREFIX);
    set_string(&config, &config.base_exec_prefix, BASE_EXEC_PREFIX);
    set_string(&config, &config.executable, EXECUTABLE);
    set_string(&config, &config.base_executable, EXECUTABLE);
    check(PyConfig_SetBytesArgv(&config, argc, argv));
    check(Py_InitializeFromConfig(&config));
    PyConfig_Clear(&config);
}

#ifndef LAUNCHER_SELFTEST
int main(int argc, char **argv)
{
    int starts_processes = warmed(command_word(argc, argv));
    unsigned long warm_up = starts_processes ? start_warm_up() : 0;
    if (PyImport_AppendInittab("_ociruntime_syscall", PyInit__syscall) < 0
        || PyImport_AppendInittab("_ociruntime_anonexe", PyInit__anonexe) < 0)
        fail(PyStatus_NoMemory());
    start_interpreter(argc, argv);
    /* The body's globals: whether the command is a create, run or exec, and its thread. */
    PyObject *main_module = PyImport_AddModule("__main__");  /* borrowed */
    PyObject *thread = PyLong_FromUnsignedLong(warm_up);
    if (main_module == NULL || thread == NULL
        || PyModule_AddObjectRef(main_module, "WARMED", starts_processes ? Py_True : Py_False) < 0
        || PyModule_AddObjectRef(main_module, "WARM_UP_THREAD", thread) < 0) {
        PyErr_Print();
        return 1;
    }
    Py_DECREF(thread);
    /* The body ends in run_and_exit(), which never returns; an exception is printed. */
    return PyRun_SimpleString(BODY) == 0 ? 0 : 1;
}
#else
int main(int argc, char **argv)
{
    const char *command = command_word(argc, argv);
    char *procs = own_v1_procs();
    printf("command=%s\nwarmed=%d\nprocs=%s\n", command != NULL ? command : "",
           warmed(command), procs != NULL ? procs : "");
    free(procs);
    return 0;
}
#endif
