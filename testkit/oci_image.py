"""Build a single-image OCI image layout tarball (`oci-archive`) from a rootfs directory,
with no registry and no tool but the standard library.

The archive holds `oci-layout`, `index.json` and three blobs (one uncompressed layer, the
image config, the manifest). It is byte-for-byte reproducible for the same rootfs (sorted
entries, fixed mtimes, owners 0:0) and is accepted by

- `ctr images import` (containerd 1.6): it names the image after the manifest's
  `io.containerd.image.name` annotation, taken as is;
- `podman load` (containers/common): it takes the name from `io.containerd.image.name`, or
  else `org.opencontainers.image.ref.name`, and wants exactly one manifest in the index.

Both annotations therefore carry the full reference (e.g. `localhost/ocitest/busybox:latest`).

With `docker_manifest=True` the archive also holds a `manifest.json` (Config, RepoTags,
Layers: paths of the same blobs), the `docker save` format that `docker load` before 25.0
(Debian 12's docker.io 20.10) reads; it ignores the rest. Docker 25+ writes both too, and
containerd and podman go on reading the OCI layout (index.json) of such an archive.

Usage: python testkit/oci_image.py ROOTFS_DIR OUT.tar [--name REF] [--cmd ARG ...]
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
DEFAULT_NAME = "localhost/ocitest/busybox:latest"
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
EPOCH = "1970-01-01T00:00:00Z"

#: Go's GOARCH names for the machines Python reports (the image config uses GOARCH).
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def goarch() -> str:
    machine = platform.machine()
    try:
        return _GOARCH[machine]
    except KeyError:
        raise ValueError(f"no OCI architecture name known for machine {machine!r}") from None


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra: object) -> dict:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


@dataclass(frozen=True)
class OCIImage:
    """What was written: the reference and the digests a test may want to check."""

    path: Path
    name: str
    manifest_digest: str
    config_digest: str
    layer_digest: str  # also the layer's diff_id: the layer is not compressed


def layer_tar(rootfs: Path, mtime: int = 0) -> bytes:
    """The rootfs as a tar layer: entries sorted, paths relative (`bin/sh`), owners 0:0,
    fixed mtime; directories, regular files, symlinks, hard links, fifos and devices
    (sockets are skipped)."""
    rootfs = Path(rootfs)
    if not rootfs.is_dir():
        raise FileNotFoundError(f"rootfs directory not found: {rootfs}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk_sorted(rootfs):
            # gettarinfo turns a second name of a multiply-linked file into a hard link.
            info = tar.gettarinfo(str(path), path.relative_to(rootfs).as_posix())
            if info is None:  # a socket: not representable in a layer
                continue
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = mtime
            info.pax_headers = {}
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _walk_sorted(top: Path):
    with os.scandir(top) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_sorted(path)


def build_oci_archive(
    rootfs: Path,
    out: Path,
    name: str = DEFAULT_NAME,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    working_dir: str = "/",
    user: str = "",
    docker_manifest: bool = False,
) -> OCIImage:
    """Write an OCI image layout tarball of `rootfs` to `out`; returns what was written.
    `user` ("uid:gid" or a name) becomes the image config's User, which engines apply to
    the container's process (ctr 1.6 has no --user flag: this is how a test sets one).
    `docker_manifest`: add docker-archive's manifest.json, for `docker load`."""
    arch = goarch()
    layer = Blob(MT_LAYER, layer_tar(rootfs))
    config = Blob(
        MT_CONFIG,
        _json(
            {
                "created": EPOCH,
                "architecture": arch,
                "os": "linux",
                "config": {
                    "Env": list(DEFAULT_ENV if env is None else env),
                    "Cmd": list(cmd or ["sh"]),
                    "WorkingDir": working_dir,
                    **({"User": user} if user else {}),
                },
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                "history": [{"created": EPOCH, "created_by": "conformance/oci_image.py"}],
            }
        ),
    )
    manifest = Blob(
        MT_MANIFEST,
        _json(
            {
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            manifest.descriptor(
                annotations={ANNOTATION_CONTAINERD_NAME: name, ANNOTATION_REF_NAME: name},
                platform={"architecture": arch, "os": "linux"},
            )
        ],
    }
    out = Path(out)
    extra = (("manifest.json", _docker_manifest(name, config, layer)),) if docker_manifest else ()
    _write_layout(out, index, (layer, config, manifest), extra)
    return OCIImage(out, name, manifest.digest, config.digest, layer.digest)


def _blob_path(blob: Blob) -> str:
    return f"blobs/sha256/{blob.digest.split(':', 1)[1]}"


def _docker_manifest(name: str, config: Blob, layer: Blob) -> bytes:
    """docker-archive's manifest.json: one image, its config and layer by path in the tar."""
    entry = {"Config": _blob_path(config), "RepoTags": [name], "Layers": [_blob_path(layer)]}
    return json.dumps([entry], separators=(",", ":"), sort_keys=True).encode()


def _write_layout(
    out: Path, index: dict, blobs: tuple[Blob, ...], extra: tuple[tuple[str, bytes], ...] = ()
) -> None:
    """The image layout tarball (oci-layout, index.json, the blobs, then `extra` files),
    written in place of `out` at once."""
    files: list[tuple[str, bytes]] = [
        ("oci-layout", _json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", _json(index)),
    ]
    files += [(_blob_path(b), b.data) for b in blobs]
    files += extra
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirname in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(dirname)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for arcname, data in files:
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)


def _json(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Build an OCI image layout tarball from a rootfs.")
    ap.add_argument("rootfs", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--name", default=DEFAULT_NAME, help=f"image reference ({DEFAULT_NAME})")
    ap.add_argument("--cmd", nargs="+", default=["sh"], help="the image's default command")
    ap.add_argument("--user", default="", help="the image's User, e.g. 1000:1000")
    ap.add_argument("--docker", action="store_true", help="add manifest.json for `docker load`")
    args = ap.parse_args(argv)
    image = build_oci_archive(args.rootfs, args.out, args.name, args.cmd, user=args.user,
                              docker_manifest=args.docker)  # fmt: skip
    print(f"{image.path}: {image.name} manifest {image.manifest_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
