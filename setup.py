"""The one compiled part of ociruntime: see ociruntime/_anonexe.c and containersafe.py."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ociruntime._anonexe", ["ociruntime/_anonexe.c"])])
