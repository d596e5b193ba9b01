"""testkit/oci_image.py: the OCI image layout tarball that containerd and podman import
(the import itself is tested in test_containerd.py and test_podman.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from testkit import oci_image

pytestmark = pytest.mark.pure  # no root, no kernel state: the unprivileged tier


@pytest.fixture
def small_rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "empty").mkdir()
    prog = root / "bin" / "prog"
    prog.write_bytes(b"#!/bin/sh\necho hi\n")
    prog.chmod(0o755)
    (root / "etc" / "hostname").write_text("box\n")
    os.link(prog, root / "bin" / "prog-hardlink")
    (root / "bin" / "sh").symlink_to("prog")
    os.mkfifo(root / "fifo")
    return root


def blobs_of(archive: Path) -> tuple[dict[str, bytes], list[str]]:
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return files, names


def test_layout_digests_and_annotations(small_rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "image.tar"
    image = oci_image.build_oci_archive(small_rootfs, out, "localhost/t/x:1", cmd=["prog"])
    files, names = blobs_of(out)
    assert names[:4] == ["blobs", "blobs/sha256", "oci-layout", "index.json"]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    assert len(files) == 5  # oci-layout, index.json, layer, config, manifest

    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2 and index["mediaType"] == oci_image.MT_INDEX
    [desc] = index["manifests"]  # podman load wants exactly one
    assert desc["annotations"] == {
        "io.containerd.image.name": "localhost/t/x:1",
        "org.opencontainers.image.ref.name": "localhost/t/x:1",
    }
    assert desc["platform"] == {"architecture": oci_image.goarch(), "os": "linux"}
    assert desc["digest"] == image.manifest_digest and desc["mediaType"] == oci_image.MT_MANIFEST

    def blob(descriptor: dict) -> bytes:
        data = files["blobs/sha256/" + descriptor["digest"].split(":", 1)[1]]
        assert len(data) == descriptor["size"]
        return data

    manifest = json.loads(blob(desc))
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == oci_image.MT_MANIFEST
    assert manifest["config"]["mediaType"] == oci_image.MT_CONFIG
    assert manifest["config"]["digest"] == image.config_digest
    [layer_desc] = manifest["layers"]
    assert layer_desc["mediaType"] == oci_image.MT_LAYER
    assert layer_desc["digest"] == image.layer_digest
    config = json.loads(blob(manifest["config"]))
    assert config["os"] == "linux" and config["architecture"] == oci_image.goarch()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [image.layer_digest]}
    assert config["config"]["Cmd"] == ["prog"] and "User" not in config["config"]
    assert config["config"]["Env"] == oci_image.DEFAULT_ENV

    with tarfile.open(fileobj=io.BytesIO(blob(layer_desc))) as layer:
        members = {m.name: m for m in layer.getmembers()}
        assert list(members) == sorted(members, key=lambda n: n.split("/"))
        assert set(members) == {
            "bin", "bin/prog", "bin/prog-hardlink", "bin/sh", "empty", "etc",
            "etc/hostname", "fifo",
        }  # fmt: skip
        assert all((m.uid, m.gid, m.mtime) == (0, 0, 0) for m in members.values())
        assert members["bin/prog"].isreg() and members["bin/prog"].mode & 0o777 == 0o755
        assert layer.extractfile("bin/prog").read() == b"#!/bin/sh\necho hi\n"
        assert members["bin/prog-hardlink"].islnk()
        assert members["bin/prog-hardlink"].linkname == "bin/prog"
        assert members["bin/sh"].issym() and members["bin/sh"].linkname == "prog"
        assert members["fifo"].isfifo() and members["empty"].isdir()


def test_user_and_reproducible(small_rootfs: Path, tmp_path: Path) -> None:
    a = oci_image.build_oci_archive(small_rootfs, tmp_path / "a.tar", user="1000:1000")
    b = oci_image.build_oci_archive(small_rootfs, tmp_path / "b.tar", user="1000:1000")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert a.manifest_digest == b.manifest_digest and a.name == oci_image.DEFAULT_NAME
    files, _ = blobs_of(a.path)
    config = json.loads(files["blobs/sha256/" + a.config_digest.split(":", 1)[1]])
    assert config["config"]["User"] == "1000:1000"
    assert not (tmp_path / ".a.tar.tmp").exists()


def test_missing_rootfs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="rootfs directory not found"):
        oci_image.build_oci_archive(tmp_path / "nope", tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()


def test_command_line(small_rootfs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.tar"
    assert oci_image.main([str(small_rootfs), str(out), "--name", "localhost/c:2"]) == 0
    assert f"{out}: localhost/c:2 manifest sha256:" in capsys.readouterr().out
    files, _ = blobs_of(out)
    desc = json.loads(files["index.json"])["manifests"][0]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "localhost/c:2"
