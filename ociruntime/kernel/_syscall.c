/* syscall(2) for the kernel layer (syscalls.py), without ctypes.
 *
 * Python 3.11's os module lacks mount, pivot_root, setns, capset, seccomp and the other
 * calls a runtime makes. ctypes can make them, but importing it (with libffi, struct and
 * types) costs ~1.3 ms on every create, run and exec, and python-prctl another ~0.7 ms
 * for two calls. This module is the whole of what they were used for: one generic
 * `syscall(nr, *args)` whose arguments are integers, None (0), str (passed as a
 * NUL-terminated file-system-encoded path) or any object with the buffer protocol
 * (bytes, bytearray, a ctypes structure: passed as a pointer to its bytes, writable when
 * the object is). Every decision stays in Python; this file only passes arguments.
 *
 * The GIL is released for the call (a write to cgroup.procs may wait for an RCU grace
 * period), with every buffer held until it returns. A -1 result raises OSError(errno).
 *
 * One more thing Python cannot do well: a write made by a thread that never needs the
 * GIL (write_in_thread / join_write_thread, for kernel/threadwrite.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define MAX_ARGS 6

struct arguments {
    long value[MAX_ARGS];
    Py_buffer view[MAX_ARGS];
    int held[MAX_ARGS];      /* view[i] must be released */
    PyObject *encoded[MAX_ARGS];  /* str arguments, encoded */
};

static void release(struct arguments *a)
{
    for (int i = 0; i < MAX_ARGS; i++) {
        if (a->held[i])
            PyBuffer_Release(&a->view[i]);
        Py_XDECREF(a->encoded[i]);
    }
}

/* One argument as the kernel takes it: an integer (negative ones such as AT_FDCWD as
 * they are, others up to the full unsigned long) or a pointer to bytes. */
static int convert(PyObject *obj, struct arguments *a, int i)
{
    if (obj == Py_None) {
        a->value[i] = 0;
        return 0;
    }
    if (PyLong_Check(obj)) {
        if (_PyLong_Sign(obj) < 0)
            a->value[i] = PyLong_AsLong(obj);
        else
            a->value[i] = (long)PyLong_AsUnsignedLong(obj);
        return PyErr_Occurred() ? -1 : 0;
    }
    if (PyUnicode_Check(obj)) {
        a->encoded[i] = PyUnicode_EncodeFSDefault(obj);
        if (a->encoded[i] == NULL)
            return -1;
        a->value[i] = (long)PyBytes_AS_STRING(a->encoded[i]);
        return 0;
    }
    if (PyObject_GetBuffer(obj, &a->view[i], PyBUF_WRITABLE) < 0) {
        PyErr_Clear();  /* read-only (bytes): the kernel only reads it */
        if (PyObject_GetBuffer(obj, &a->view[i], PyBUF_SIMPLE) < 0)
            return -1;
    }
    a->held[i] = 1;
    a->value[i] = (long)a->view[i].buf;
    return 0;
}

static PyObject *do_syscall(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > MAX_ARGS + 1) {
        PyErr_SetString(PyExc_TypeError, "syscall(nr, *args): 1 to 6 arguments after nr");
        return NULL;
    }
    long nr = PyLong_AsLong(args[0]);
    if (nr == -1 && PyErr_Occurred())
        return NULL;
    struct arguments a;
    memset(&a, 0, sizeof(a));
    for (Py_ssize_t i = 1; i < nargs; i++) {
        if (convert(args[i], &a, (int)i - 1) < 0) {
            release(&a);
            return NULL;
        }
    }
    long result;
    int err;
    Py_BEGIN_ALLOW_THREADS
    result = syscall(nr, a.value[0], a.value[1], a.value[2], a.value[3], a.value[4],
                     a.value[5]);
    err = errno;
    Py_END_ALLOW_THREADS
    release(&a);
    if (result == -1) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(result);
}

/* seccomp(2)'s SECCOMP_SET_MODE_FILTER takes a struct sock_fprog, which holds a pointer
 * to the program: syscall_fprog(nr, a, b, program) is syscall(nr, a, b, &fprog) with
 * fprog = {len(program) / 8 instructions, program's bytes}. */
static PyObject *syscall_fprog(PyObject *self, PyObject *args)
{
    long nr, a, b;
    Py_buffer program;
    if (!PyArg_ParseTuple(args, "lkky*", &nr, &a, &b, &program))
        return NULL;
    if (program.len % 8 != 0 || program.len / 8 > 0xffff) {
        PyBuffer_Release(&program);
        PyErr_SetString(PyExc_ValueError, "a BPF program is 1 to 65535 8-byte instructions");
        return NULL;
    }
    struct { unsigned short len; void *filter; } fprog = {
        (unsigned short)(program.len / 8), program.buf,
    };
    long result;
    int err;
    Py_BEGIN_ALLOW_THREADS
    result = syscall(nr, a, b, &fprog);
    err = errno;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&program);
    if (result == -1) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(result);
}

/* write_in_thread(path, data): a thread of its own, outside Python, opens `path`
 * write-only, writes `data` once, closes it and ends; errors are ignored (see
 * kernel/threadwrite.py for why). A Python thread would make its first call only when
 * the main thread let go of the GIL: measured ~2 ms late while the main one imports.
 * One at a time; join_write_thread() waits for it to end (the GIL released). A forked
 * child inherits no thread: it must not join (its `writer_started` is stale). */
struct pending_write {
    char *path;
    char *data;
    size_t len;
};

static pthread_t writer;
static int writer_started;

static void free_write(struct pending_write *w)
{
    if (w != NULL) {
        free(w->path);
        free(w->data);
        free(w);
    }
}

static void *write_once(void *arg)
{
    struct pending_write *w = arg;
    int fd = open(w->path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t ignored = write(fd, w->data, w->len);
        (void)ignored;
        close(fd);
    }
    free_write(w);
    return NULL;
}

static PyObject *write_in_thread(PyObject *self, PyObject *args)
{
    PyObject *path;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "O&y*", PyUnicode_FSConverter, &path, &data))
        return NULL;
    struct pending_write *w = calloc(1, sizeof(*w));
    if (w != NULL) {
        w->path = strdup(PyBytes_AS_STRING(path));
        w->data = malloc(data.len ? (size_t)data.len : 1);
        w->len = (size_t)data.len;
        if (w->data != NULL)
            memcpy(w->data, data.buf, w->len);
    }
    Py_DECREF(path);
    PyBuffer_Release(&data);
    if (w == NULL || w->path == NULL || w->data == NULL) {
        free_write(w);
        return PyErr_NoMemory();
    }
    if (writer_started) {
        free_write(w);
        PyErr_SetString(PyExc_RuntimeError, "write_in_thread: a write is under way already");
        return NULL;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);  /* open, write, close */
    int err = pthread_create(&writer, &attr, write_once, w);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        free_write(w);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    writer_started = 1;
    Py_RETURN_NONE;
}

static PyObject *join_write_thread(PyObject *self, PyObject *unused)
{
    if (writer_started) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(writer, NULL);
        Py_END_ALLOW_THREADS
        writer_started = 0;
    }
    Py_RETURN_NONE;
}

/* adopt_write_thread(handle): the thread the compiled launcher started for the same
 * purpose before the interpreter (launcher.c), joined by join_write_thread() from now on. */
static PyObject *adopt_write_thread(PyObject *self, PyObject *arg)
{
    unsigned long handle = PyLong_AsUnsignedLong(arg);
    if (handle == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (writer_started) {
        PyErr_SetString(PyExc_RuntimeError, "adopt_write_thread: a write is under way already");
        return NULL;
    }
    writer = (pthread_t)handle;
    writer_started = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"adopt_write_thread", adopt_write_thread, METH_O,
     "adopt_write_thread(handle): join_write_thread() joins the launcher's thread `handle`."},
    {"write_in_thread", write_in_thread, METH_VARARGS,
     "write_in_thread(path, data): open, write once, close, in a thread outside Python."},
    {"join_write_thread", join_write_thread, METH_NOARGS,
     "join_write_thread(): wait until that thread has ended (at once if none)."},
    {"syscall_fprog", syscall_fprog, METH_VARARGS,
     "syscall_fprog(nr, a, b, program) -> int: syscall(nr, a, b, &sock_fprog of program)."},
    {"syscall", (PyCFunction)(void (*)(void))do_syscall, METH_FASTCALL,
     "syscall(nr, *args) -> int: args are int, None, str (a path) or a buffer (its "
     "address); raises OSError on -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_syscall", "syscall(2) for ociruntime.kernel.syscalls.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__syscall(void)
{
    return PyModule_Create(&module);
}
