"""The compiled parts of ociruntime: ociruntime/security/_anonexe.c (see containersafe.py)
and ociruntime/kernel/_syscall.c (syscall(2) for kernel/syscalls.py, without ctypes)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("ociruntime.security._anonexe", ["ociruntime/security/_anonexe.c"]),
        Extension("ociruntime.kernel._syscall", ["ociruntime/kernel/_syscall.c"]),
    ]
)
