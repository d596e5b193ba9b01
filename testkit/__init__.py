"""What the tests, the conformance suite and the benchmarks share: driving a runtime
executable, busybox bundles, the engines' harnesses (containerd, an OCI image archive) and
the other ends of the runtime's sockets (a console socket, a seccomp agent).

testkit imports none of tests/, conformance/ or bench/ (tests/test_import_cycles.py);
they import it from the repo root (on sys.path: `python -m`, tests/conftest.py, bench.py).
"""
