"""The one compiled part of ociruntime: see ociruntime/security/_anonexe.c and containersafe.py."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ociruntime.security._anonexe", ["ociruntime/security/_anonexe.c"])])
