"""What the tests, the conformance suite and the benchmarks share.

- bundles: where the runtime and the busybox bundle are, the example bundle's config;
- processes: running a command with its output on files (Result), waiting a process
  out, reaping, what runs in cgroups and under which command line, mounts, an engine's
  cgroup parent removed;
- containerd, docker, podman, oci_image: a private containerd, dockerd or podman and the
  image archive they load (tests/test_containerd.py, tests/test_podman.py,
  bench/bench.py, bench/profiles/capture.py);
- cri: containerd's cri plugin with README's `ociruntime` runtime handler and a CRI
  (gRPC) client of it, as a kubelet drives it (tests/test_cri.py);
- recvtty, seccomp_agent (on sockets.Listener): the other ends of `--console-socket` and
  of `linux.seccomp.listenerPath`.

testkit imports none of tests/, conformance/ or bench/ (tests/test_import_cycles.py); they
import it from the repo root (on sys.path: `python -m`, tests/conftest.py, the scripts).
"""
