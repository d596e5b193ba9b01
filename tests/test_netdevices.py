"""linux.netDevices (issue #4): host interfaces moved into the container's network namespace.

Real containers and real interfaces. The spec's example moves a dummy interface, but this
kernel has no dummy driver, so each test makes a veth pair with a unique name and moves one
end (the other end stays on the host: when the moved end is destroyed, so is its peer, which
is how the tests see what the kernel did after `delete`). Addresses come from the
documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and
carry no traffic.

No comparison with runc here: runc 1.1.5 implements runtime-spec 1.0.2, which has no
netDevices, and Go's JSON decoder skips unknown fields, so runc runs such a config without
moving anything (checked by hand: the container sees only `lo`, the interface stays on the
host). runc 1.3 implements it, as ociruntime does: moved before any hook, addresses kept.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import time
import uuid

import pytest

from tests.test_bad_input import assert_nothing_left, expect_error

SLEEP = ["sleep", "1000"]
RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17


# --- host side -----------------------------------------------------------------------------


def ip(*args: str, check: bool = True) -> str:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, f"ip {' '.join(args)}: {p.stderr}"
    return p.stdout


def on_host(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def mac_of(name: str) -> str:
    with open(f"/sys/class/net/{name}/address") as f:
        return f.read().strip()


def host_addresses(name: str) -> str:
    return ip("-o", "addr", "show", "dev", name)


def address_set(ip_addr_output: str) -> set[str]:
    """'inet 192.0.2.10/24'-style entries (lifetimes, which count down, left out)."""
    words = ip_addr_output.split()
    return {f"{w} {words[i + 1]}" for i, w in enumerate(words[:-1]) if w in ("inet", "inet6")}


def link_names(ip_link_output: str) -> set[str]:
    """The interface names in `ip -o link` or `ip -o addr` output."""
    return {line.split(":")[1].split()[0].split("@")[0] for line in ip_link_output.splitlines()}


@pytest.fixture
def veth():
    """(end, peer): a fresh veth pair on the host; `end` has addresses and is up. Both are
    deleted afterwards if still there (deleting one end deletes the pair)."""
    stem = "nd" + uuid.uuid4().hex[:8]
    end, peer = stem + "a", stem + "b"
    ip("link", "add", end, "type", "veth", "peer", "name", peer)
    try:
        ip("addr", "add", "192.0.2.10/24", "brd", "+", "dev", end)
        ip("addr", "add", "192.0.2.11/24", "dev", end, "label", end + ":al")
        ip("addr", "add", "2001:db8::10/64", "dev", end)
        # Not to be kept (the spec keeps permanent addresses of global scope only):
        ip("addr", "add", "198.51.100.7/24", "dev", end, "valid_lft", "300", "preferred_lft", "300")
        ip("addr", "add", "203.0.113.9/24", "dev", end, "scope", "link")
        ip("link", "set", end, "up")
        yield end, peer
    finally:
        for name in (end, peer):
            if on_host(name):
                ip("link", "del", name, check=False)


@pytest.fixture
def named_netns():
    """A network namespace that outlives containers (`ip netns`), removed afterwards."""
    name = "ndns" + uuid.uuid4().hex[:8]
    ip("netns", "add", name)
    try:
        yield name
    finally:
        ip("netns", "del", name, check=False)


class LinkEvents:
    """A netlink socket subscribed to link events: subscribed before the action, so an
    event cannot be missed, and waited on with a deadline instead of a sleep."""

    def __enter__(self) -> LinkEvents:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, RTMGRP_LINK))
        self.seen: list[tuple[int, int, str]] = []  # (type, ifindex, ifname)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def wait_deleted(self, index: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (RTM_DELLINK, index) not in [(t, i) for t, i, _ in self.seen]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"interface {index} was never deleted: {self.seen}"
            if select.select([self.sock], [], [], remaining)[0]:
                self.seen += _link_messages(self.sock.recv(1 << 16))


def _link_messages(data: bytes) -> list[tuple[int, int, str]]:
    found = []
    while len(data) >= 32:
        length, kind = struct.unpack_from("=IH", data)
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            index = struct.unpack_from("=i", data, 20)[0]
            found.append((kind, index, _ifname(data[32:length])))
        data = data[(length + 3) & ~3 :]
    return found


def _ifname(attrs: bytes) -> str:
    while len(attrs) >= 4:
        length, kind = struct.unpack_from("=HH", attrs)
        if kind == 3:  # IFLA_IFNAME
            return attrs[4:length].rstrip(b"\0").decode()
        attrs = attrs[(length + 3) & ~3 :]
    return ""


# --- container side ------------------------------------------------------------------------


def netdev_bundle(make_bundle, devices: dict, args: list[str] | None = None):
    bundle = make_bundle(args or SLEEP)
    bundle.config["linux"]["netDevices"] = devices
    return bundle.write()


def create(runtime, bundle) -> str:
    cid = runtime.new_id()
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    return cid


def inside(runtime, cid: str, *args: str) -> str:
    return runtime("exec", cid, *args, check=True).stdout


def link_flags(ip_link_line: str) -> set[str]:
    return set(ip_link_line.split("<", 1)[1].split(">", 1)[0].split(","))


# --- the device in the container -----------------------------------------------------------


def test_moved_renamed_with_its_addresses_and_up(runtime, make_bundle, veth):
    """Moved and renamed; the permanent global addresses (v4, v6, an alias label) kept and
    the rest not; the MAC address kept; set up; gone from the host while the container
    lives."""
    end, _ = veth
    mac = mac_of(end)
    cid = create(runtime, netdev_bundle(make_bundle, {end: {"name": "ctr0"}}))
    assert not on_host(end) and not on_host("ctr0")
    runtime("start", cid, check=True)

    assert set(inside(runtime, cid, "ls", "/sys/class/net").split()) == {"ctr0", "lo"}
    link = inside(runtime, cid, "ip", "-o", "link", "show", "ctr0")
    assert "UP" in link_flags(link), link
    assert f"link/ether {mac}" in link
    addrs = inside(runtime, cid, "ip", "-o", "addr", "show", "dev", "ctr0")
    assert "inet 192.0.2.10/24 brd 192.0.2.255 scope global ctr0" in addrs
    assert "inet 192.0.2.11/24 scope global secondary ctr0:al" in addrs
    assert "inet6 2001:db8::10/64 scope global" in addrs
    assert "198.51.100.7" not in addrs and "203.0.113.9" not in addrs  # dynamic, link scope
    assert not on_host(end)
    runtime("delete", "--force", cid, check=True)


def test_kernel_template_picks_the_name(runtime, make_bundle, veth):
    """A `%d` template: the kernel names the device, the first free number."""
    end, _ = veth
    cid = create(runtime, netdev_bundle(make_bundle, {end: {"name": "eth%d"}}))
    runtime("start", cid, check=True)
    assert set(inside(runtime, cid, "ls", "/sys/class/net").split()) == {"eth0", "lo"}
    assert "inet 192.0.2.10/24" in inside(runtime, cid, "ip", "-o", "addr", "show", "eth0")
    runtime("delete", "--force", cid, check=True)


def test_without_name_keeps_the_host_name(runtime, make_bundle, veth):
    end, _ = veth
    cid = create(runtime, netdev_bundle(make_bundle, {end: {}}))
    runtime("start", cid, check=True)
    assert set(inside(runtime, cid, "ls", "/sys/class/net").split()) == {end, "lo"}
    runtime("delete", "--force", cid, check=True)


def test_moved_before_the_hooks(runtime, make_bundle, veth, tmp_path):
    """createRuntime (runtime namespace) no longer finds it on the host; createContainer
    (container namespaces) finds it renamed, with its address."""
    end, _ = veth
    bundle = netdev_bundle(make_bundle, {end: {"name": "ctr0"}})
    seen_host, seen_ctr = tmp_path / "host", tmp_path / "ctr"
    bundle.config["hooks"] = {
        "createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", f"/bin/ip -o link > {seen_host}"]},
        ],
        "createContainer": [
            {
                "path": "/bin/sh",
                "args": [
                    "sh",
                    "-c",
                    f"/bin/ip -o link > {seen_ctr}; /bin/ip -o addr >> {seen_ctr}",
                ],
            },
        ],
    }
    cid = create(runtime, bundle.write())
    host_names = link_names(seen_host.read_text())
    assert "lo" in host_names and end not in host_names and "ctr0" not in host_names
    assert "inet 192.0.2.10/24" in address_set(seen_ctr.read_text())
    assert link_names(seen_ctr.read_text()) == {"lo", "ctr0"}
    runtime("delete", "--force", cid, check=True)


# --- delete: the kernel, not the runtime, decides where it goes ----------------------------


def test_delete_leaves_it_to_the_kernel(runtime, make_bundle, veth):
    """The runtime MUST NOT move it out before deletion. When the container's namespace
    dies, the kernel destroys virtual devices (physical ones return to the initial
    namespace): the moved veth end dies, which takes its host peer with it; neither the
    host name nor the container name ever reappears on the host."""
    end, peer = veth
    peer_index = socket.if_nametoindex(peer)
    cid = create(runtime, netdev_bundle(make_bundle, {end: {"name": "ctr0"}}))
    runtime("start", cid, check=True)
    with LinkEvents() as events:
        runtime("delete", "--force", cid, check=True)
        events.wait_deleted(peer_index)
    reappeared = [e for e in events.seen if e[0] == RTM_NEWLINK and e[2] in (end, "ctr0")]
    assert reappeared == []
    assert not on_host(end) and not on_host("ctr0") and not on_host(peer)


def test_joined_namespace_keeps_it_after_delete(runtime, make_bundle, veth, named_netns):
    """Into a namespace the container joins by path: after delete the namespace lives on,
    and so does the device in it, as the runtime left it."""
    end, _ = veth
    bundle = netdev_bundle(make_bundle, {end: {"name": "ctr0"}})
    for ns in bundle.config["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = f"/run/netns/{named_netns}"
    cid = create(runtime, bundle.write())
    runtime("delete", "--force", cid, check=True)
    assert not on_host(end)
    assert "inet 192.0.2.10/24" in ip("-n", named_netns, "-o", "addr", "show", "dev", "ctr0")
    assert "UP" in link_flags(ip("-n", named_netns, "-o", "link", "show", "ctr0"))


# --- a failed create gives it back ---------------------------------------------------------


@pytest.mark.parametrize("hook", ["createRuntime", "createContainer"])
def test_failed_create_moves_it_back(runtime, make_bundle, veth, hook):
    """A failure after the move, in create (createRuntime) or in the init, which exits
    before create rolls back (createContainer): the device returns to the host under its
    own name, with its permanent addresses, MAC and up state; nothing is left behind."""
    end, _ = veth
    mac = mac_of(end)
    bundle = netdev_bundle(make_bundle, {end: {"name": "ctr0"}})
    bundle.config["hooks"] = {hook: [{"path": "/bin/false"}]}
    expect_error(runtime, ["create", "--bundle", str(bundle.write().path), runtime.new_id()],
                 f"config.json: /hooks/{hook}/0: error running hook #0: /bin/false")  # fmt: skip
    assert_nothing_left(runtime, bundle)
    assert on_host(end) and not on_host("ctr0")
    assert mac_of(end) == mac
    addrs = host_addresses(end)
    assert "inet 192.0.2.10/24 brd 192.0.2.255 scope global" in addrs
    assert f"inet 192.0.2.11/24 scope global secondary {end}:al" in addrs
    assert "inet6 2001:db8::10/64 scope global" in addrs
    assert "UP" in link_flags(ip("-o", "link", "show", end))


def test_second_device_failing_returns_the_first(runtime, make_bundle, veth):
    """The second entry cannot move (the host's loopback never leaves its namespace): the
    first one, already moved, comes back."""
    end, _ = veth
    bundle = netdev_bundle(make_bundle, {end: {"name": "ctr0"}, "lo": {"name": "ctr1"}})
    message = expect_error(
        runtime, ["create", "--bundle", str(bundle.path), runtime.new_id()],
        "config.json: /linux/netDevices/lo:",
    )  # fmt: skip
    assert "moving it into the container" in message
    assert_nothing_left(runtime, bundle)
    assert on_host(end) and "inet 192.0.2.10/24" in host_addresses(end)


# --- bad input -----------------------------------------------------------------------------


def _without_network_namespace(bundle, end: str) -> None:
    bundle.config["linux"]["namespaces"] = [
        ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "network"
    ]


def _host_network_namespace(bundle, end: str) -> None:
    for ns in bundle.config["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = f"/proc/{os.getpid()}/ns/net"


def _bad_name(name: str, why: str = "") -> tuple:
    """BAD's entry for a container name `name` that is not an interface name."""
    message = f"/linux/netDevices/{{end}}/name: {name!r} is not an interface name{why}"
    return (lambda end: {end: {"name": name}}, None, message)


def _bad_host_name(name: str, pointer: str) -> tuple:
    """BAD's entry for a host device `name` (`pointer` in the JSON pointer) that is not an
    interface name."""
    return (
        lambda end: {name: {}},
        None,
        f"/linux/netDevices/{pointer}: {name!r} is not an interface name",
    )


BAD = {
    "missing-on-host": (
        lambda end: {"ndmissing0": {}},
        None,
        "/linux/netDevices/ndmissing0: no network interface of that name",
    ),
    "no-network-namespace": (
        lambda end: {end: {"name": "ctr0"}},
        _without_network_namespace,
        "/linux/netDevices/{end}: moving network devices needs a new network namespace",
    ),
    "host-network-namespace": (
        lambda end: {end: {"name": "ctr0"}},
        _host_network_namespace,
        "/linux/netDevices/{end}: the network namespace /proc/",
    ),
    "name-too-long": _bad_name("a" * 16, ": longer"),
    "name-with-slash": _bad_name("a/b"),
    "name-dot": _bad_name(".."),
    "bad-template": _bad_name("eth%s", ": '%' may only"),
    "host-name-invalid": _bad_host_name("a:b", "a:b"),
    "host-name-escaped": _bad_host_name("a/b", "a~1b"),
    "two-devices-one-name": (
        lambda end: {end: {"name": "ctr0"}, end[:-1] + "b": {"name": "ctr0"}},
        None,
        "/linux/netDevices/{peer}/name: 'ctr0' is also the container name of "
        "/linux/netDevices/{end}",
    ),
    "name-of-the-containers-loopback": (
        lambda end: {end: {"name": "lo"}},
        None,
        "/linux/netDevices/{end}: the container's network namespace already has an "
        "interface named 'lo'",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input(runtime, make_bundle, veth, case):
    """Exit 1, one line naming /linux/netDevices/<name>, nothing left behind, and the host's
    interfaces untouched (the clash with `lo` is found before anything moves)."""
    end, peer = veth
    devices, edit, needle = BAD[case]
    before = address_set(host_addresses(end))
    bundle = netdev_bundle(make_bundle, devices(end))
    if edit:
        edit(bundle, end)
        bundle.write()
    expect_error(runtime, ["create", "--bundle", str(bundle.path), runtime.new_id()],
                 "config.json: " + needle.format(end=end, peer=peer))  # fmt: skip
    assert_nothing_left(runtime, bundle)
    assert address_set(host_addresses(end)) == before and on_host(peer)


def test_features_claims_it(runtime):
    features = json.loads(runtime("features", check=True).stdout)
    assert features["linux"]["netDevices"] == {"enabled": True}
