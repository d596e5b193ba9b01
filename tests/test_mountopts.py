"""Mount-option translation: which word sets/clears what, and what wins on conflict."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ociruntime.rootfs import mountopts as mo
from ociruntime.rootfs.mountopts import MountOptions, parse_mount_options

pytestmark = pytest.mark.pure  # no root, no kernel state: the unprivileged tier

# Every Linux option in runtime-spec config.md's "Linux mount options" table.
SPEC_OPTIONS = """
async atime bind defaults dev diratime dirsync exec iversion lazytime loud mand noatime
nodev nodiratime noexec noiversion nolazytime nomand norelatime nostrictatime nosuid
nosymfollow private ratime rbind rdev rdiratime relatime remount rexec rnoatime rnodev
rnodiratime rnoexec rnorelatime rnostrictatime rnosuid rnosymfollow ro rprivate rrelatime
rro rrw rshared rslave rstrictatime rsuid rsymfollow runbindable rw shared silent slave
strictatime suid symfollow sync unbindable idmap ridmap
""".split()


def _pairs(prefix: str, table: str) -> list[tuple[str, str, int]]:
    """`SET CLEAR BIT` lines as (set word, clear word, the constant prefix + BIT)."""
    rows = (line.split() for line in table.strip().splitlines())
    return [(on, off, getattr(mo, prefix + bit)) for on, off, bit in rows]


# (set word, clear word, MS bit) for every plain on/off pair.
FLAG_PAIRS = _pairs(
    "MS_",
    """
    ro rw RDONLY
    nosuid suid NOSUID
    nodev dev NODEV
    noexec exec NOEXEC
    sync async SYNCHRONOUS
    mand nomand MANDLOCK
    noatime atime NOATIME
    nodiratime diratime NODIRATIME
    relatime norelatime RELATIME
    strictatime nostrictatime STRICTATIME
    iversion noiversion I_VERSION
    lazytime nolazytime LAZYTIME
    silent loud SILENT
    nosymfollow symfollow NOSYMFOLLOW
    acl noacl POSIXACL
""",
)

# (set word, clear word, MOUNT_ATTR bit) for every recursive on/off pair.
RECURSIVE_PAIRS = _pairs(
    "MOUNT_ATTR_",
    """
    rro rrw RDONLY
    rnosuid rsuid NOSUID
    rnodev rdev NODEV
    rnoexec rexec NOEXEC
    rnodiratime rdiratime NODIRATIME
    rnosymfollow rsymfollow NOSYMFOLLOW
""",
)

RECURSIVE_ATIME = ["rrelatime", "rnoatime", "rstrictatime", "ratime", "rnostrictatime"]
RECURSIVE_ATIME.append("rnorelatime")


def test_linux_kernel_constant_values() -> None:
    assert (mo.MS_RDONLY, mo.MS_NOSUID, mo.MS_NODEV, mo.MS_NOEXEC) == (1, 2, 4, 8)
    assert (mo.MS_SYNCHRONOUS, mo.MS_REMOUNT, mo.MS_MANDLOCK, mo.MS_DIRSYNC) == (16, 32, 64, 128)
    assert (mo.MS_NOSYMFOLLOW, mo.MS_NOATIME, mo.MS_NODIRATIME) == (256, 1024, 2048)
    assert (mo.MS_BIND, mo.MS_MOVE, mo.MS_REC, mo.MS_SILENT) == (4096, 8192, 16384, 32768)
    assert mo.MS_POSIXACL == 1 << 16 and mo.MS_UNBINDABLE == 1 << 17
    assert (mo.MS_PRIVATE, mo.MS_SLAVE, mo.MS_SHARED) == (1 << 18, 1 << 19, 1 << 20)
    assert (mo.MS_RELATIME, mo.MS_I_VERSION) == (1 << 21, 1 << 23)
    assert (mo.MS_STRICTATIME, mo.MS_LAZYTIME) == (1 << 24, 1 << 25)
    assert (mo.MOUNT_ATTR_RDONLY, mo.MOUNT_ATTR_NOSUID, mo.MOUNT_ATTR_NODEV) == (1, 2, 4)
    assert (mo.MOUNT_ATTR_NOEXEC, mo.MOUNT_ATTR__ATIME, mo.MOUNT_ATTR_RELATIME) == (8, 0x70, 0)
    assert (mo.MOUNT_ATTR_NOATIME, mo.MOUNT_ATTR_STRICTATIME) == (0x10, 0x20)
    assert (mo.MOUNT_ATTR_NODIRATIME, mo.MOUNT_ATTR_IDMAP) == (0x80, 0x100000)
    assert mo.MOUNT_ATTR_NOSYMFOLLOW == 0x200000


def test_supported_options_cover_the_spec_and_runc_extras() -> None:
    extras = {"acl", "noacl", "tmpcopyup"}
    assert set(SPEC_OPTIONS) | extras <= set(mo.SUPPORTED_OPTIONS)
    assert list(mo.SUPPORTED_OPTIONS) == sorted(set(mo.SUPPORTED_OPTIONS))
    assert all(mo.is_supported(o) for o in SPEC_OPTIONS)
    assert not mo.is_supported("mode=755")


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_supported_options_superset_of_runc_features() -> None:
    out = subprocess.run(["runc", "features"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        pytest.skip("this runc has no `features` command")
    runc_options = set(json.loads(out.stdout)["mountOptions"])
    assert runc_options <= set(mo.SUPPORTED_OPTIONS)


@pytest.mark.parametrize("option", SPEC_OPTIONS + ["acl", "noacl", "tmpcopyup"])
def test_no_supported_option_leaks_into_data(option: str) -> None:
    assert parse_mount_options([option]).data == ""


def test_empty_and_none() -> None:
    assert parse_mount_options([]) == MountOptions()
    assert parse_mount_options(None) == MountOptions()
    assert not MountOptions().has_recursive_attrs


def test_runc_default_dev_mount() -> None:
    opts = parse_mount_options(["nosuid", "strictatime", "mode=755", "size=65536k"])
    assert opts.flags == mo.MS_NOSUID | mo.MS_STRICTATIME
    assert opts.clear_flags == 0
    assert opts.data == "mode=755,size=65536k"
    assert not opts.is_bind and opts.propagation == ()


def test_devpts_options_keep_fs_words_in_order() -> None:
    words = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    opts = parse_mount_options(words)
    assert opts.flags == mo.MS_NOSUID | mo.MS_NOEXEC
    assert opts.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_bind_and_rbind() -> None:
    bind = parse_mount_options(["bind", "ro"])
    assert bind.is_bind and not bind.is_recursive_bind
    assert bind.flags == mo.MS_BIND | mo.MS_RDONLY
    rbind = parse_mount_options(["rbind", "rw"])
    assert rbind.is_bind and rbind.is_recursive_bind
    assert rbind.flags == mo.MS_BIND | mo.MS_REC
    assert rbind.clear_flags == mo.MS_RDONLY


def test_rbind_is_not_undone_by_bind() -> None:
    # Neither word clears anything, as in runc: MS_REC from rbind stays.
    assert parse_mount_options(["rbind", "bind"]).is_recursive_bind


def test_recursive_propagation_is_not_a_recursive_bind() -> None:
    opts = parse_mount_options(["bind", "rprivate"])
    assert not opts.is_recursive_bind
    assert opts.flags == mo.MS_BIND


def test_propagation_in_order_and_kept_out_of_flags() -> None:
    words = ["rshared", "slave", "private", "runbindable", "rslave", "shared", "unbindable"]
    words.append("rprivate")
    opts = parse_mount_options(words)
    assert opts.flags == 0
    assert opts.propagation == (
        mo.MS_SHARED | mo.MS_REC,
        mo.MS_SLAVE,
        mo.MS_PRIVATE,
        mo.MS_UNBINDABLE | mo.MS_REC,
        mo.MS_SLAVE | mo.MS_REC,
        mo.MS_SHARED,
        mo.MS_UNBINDABLE,
        mo.MS_PRIVATE | mo.MS_REC,
    )


def test_misc_flags() -> None:
    opts = parse_mount_options(["remount", "dirsync", "defaults"])
    assert opts.flags == mo.MS_REMOUNT | mo.MS_DIRSYNC


def test_special_options() -> None:
    opts = parse_mount_options(["tmpcopyup", "idmap"])
    assert opts.tmpcopyup and opts.idmap and not opts.ridmap and opts.idmapped
    assert opts.flags == 0 and opts.data == ""
    ropts = parse_mount_options(["ridmap"])
    assert ropts.ridmap and not ropts.idmap and ropts.idmapped


@pytest.mark.parametrize(("on", "off", "bit"), FLAG_PAIRS)
def test_flag_pairs_last_wins(on: str, off: str, bit: int) -> None:
    assert parse_mount_options([on]) == MountOptions(flags=bit)
    assert parse_mount_options([off]) == MountOptions(clear_flags=bit)
    assert parse_mount_options([off, on]) == MountOptions(flags=bit)
    assert parse_mount_options([on, off]) == MountOptions(clear_flags=bit)
    assert parse_mount_options([on, off, on]) == MountOptions(flags=bit)


def test_different_atime_words_both_reach_the_kernel() -> None:
    # Like runc (and mount(8)'s old-API path): no cross-word clearing; kernel precedence
    # (strictatime beats noatime/relatime) decides.
    opts = parse_mount_options(["strictatime", "noatime"])
    assert opts.flags == mo.MS_STRICTATIME | mo.MS_NOATIME


@pytest.mark.parametrize(("on", "off", "bit"), RECURSIVE_PAIRS)
def test_recursive_pairs_last_wins(on: str, off: str, bit: int) -> None:
    assert parse_mount_options([on]).recursive_attrs == (bit, 0)
    assert parse_mount_options([off]).recursive_attrs == (0, bit)
    assert parse_mount_options([on, off]).recursive_attrs == (0, bit)
    assert parse_mount_options([off, on]).recursive_attrs == (bit, 0)
    assert parse_mount_options([on]).flags == 0


@pytest.mark.parametrize(
    ("words", "mode"),
    [
        (["rrelatime"], mo.MOUNT_ATTR_RELATIME),
        (["rnoatime"], mo.MOUNT_ATTR_NOATIME),
        (["rstrictatime"], mo.MOUNT_ATTR_STRICTATIME),
        (["ratime"], mo.MOUNT_ATTR_RELATIME),
        (["rnostrictatime"], mo.MOUNT_ATTR_RELATIME),
        (["rnorelatime"], mo.MOUNT_ATTR_STRICTATIME),
        (["rnoatime", "ratime"], mo.MOUNT_ATTR_RELATIME),
        (["rstrictatime", "rnostrictatime"], mo.MOUNT_ATTR_RELATIME),
        (["rrelatime", "rnorelatime"], mo.MOUNT_ATTR_STRICTATIME),
        (["rstrictatime", "ratime"], mo.MOUNT_ATTR_STRICTATIME),
        (["rnoatime", "rnostrictatime"], mo.MOUNT_ATTR_NOATIME),
        (["rnoatime", "rnorelatime"], mo.MOUNT_ATTR_NOATIME),
        (["rnoatime", "rstrictatime"], mo.MOUNT_ATTR_STRICTATIME),
        (["rstrictatime", "rnoatime"], mo.MOUNT_ATTR_NOATIME),
    ],
)
def test_recursive_atime_is_one_mode(words: list[str], mode: int) -> None:
    assert parse_mount_options(words).recursive_attrs == (mode, mo.MOUNT_ATTR__ATIME)


def test_rrelatime_still_needs_a_call() -> None:
    # MOUNT_ATTR_RELATIME is 0, so only attr_clr shows it: the call must still be made.
    opts = parse_mount_options(["rrelatime"])
    assert opts.has_recursive_attrs
    assert opts.recursive_attrs == (0, mo.MOUNT_ATTR__ATIME)


def test_recursive_mix() -> None:
    opts = parse_mount_options(["rbind", "rro", "rnosuid", "rnoatime", "rexec"])
    attr_set, attr_clr = opts.recursive_attrs
    assert attr_set == mo.MOUNT_ATTR_RDONLY | mo.MOUNT_ATTR_NOSUID | mo.MOUNT_ATTR_NOATIME
    assert attr_clr == mo.MOUNT_ATTR_NOEXEC | mo.MOUNT_ATTR__ATIME
    assert opts.flags == mo.MS_BIND | mo.MS_REC


def test_empty_words_are_dropped_from_data() -> None:
    assert parse_mount_options(["", "mode=755", ""]).data == "mode=755"


def test_data_words_are_case_sensitive() -> None:
    assert parse_mount_options(["RO"]) == MountOptions(data="RO")


def test_result_is_frozen_and_hashable() -> None:
    opts = parse_mount_options(["ro", "rprivate"])
    with pytest.raises(AttributeError):
        opts.flags = 0  # type: ignore[misc]
    assert hash(opts) == hash(parse_mount_options(["ro", "rprivate"]))


# ---- properties -------------------------------------------------------------------------

_flag_words = st.sampled_from([w for pair in FLAG_PAIRS for w in pair[:2]])
_data_words = st.from_regex(r"[a-z]{1,8}(=[a-z0-9]{1,6})?", fullmatch=True).filter(
    lambda w: not mo.is_supported(w)
)


def _model_flags(words: list[str]) -> tuple[int, int]:
    """Reference model: per MS bit, the last word about it decides."""
    table = {on: (bit, False) for on, _, bit in FLAG_PAIRS}
    table.update({off: (bit, True) for _, off, bit in FLAG_PAIRS})
    decided: dict[int, bool] = {}
    for word in words:
        bit, clear = table[word]
        decided[bit] = clear
    flags = sum(bit for bit, clear in decided.items() if not clear)
    return flags, sum(bit for bit, clear in decided.items() if clear)


@given(st.lists(_flag_words, max_size=20))
def test_flags_follow_per_bit_last_wins(words: list[str]) -> None:
    opts = parse_mount_options(words)
    assert (opts.flags, opts.clear_flags) == _model_flags(words)
    assert opts.flags & opts.clear_flags == 0


@given(st.permutations([pair[0] for pair in FLAG_PAIRS] + ["bind", "dirsync", "remount"]))
def test_non_conflicting_flags_are_order_independent(words: list[str]) -> None:
    canonical = parse_mount_options(sorted(words))
    opts = parse_mount_options(words)
    assert (opts.flags, opts.clear_flags) == (canonical.flags, canonical.clear_flags)


@given(st.lists(_flag_words, max_size=10), st.lists(_data_words, max_size=6), st.randoms())
def test_data_keeps_unknown_words_in_order(flags, data, rnd) -> None:
    words = list(flags) + list(data)
    rnd.shuffle(words)
    opts = parse_mount_options(words)
    assert opts.data == ",".join(w for w in words if not mo.is_supported(w))


@given(st.lists(st.sampled_from(mo.SUPPORTED_OPTIONS), max_size=25))
def test_recursive_attrs_always_valid_for_mount_setattr(words: list[str]) -> None:
    attr_set, attr_clr = parse_mount_options(words).recursive_attrs
    # On/off bits are never both set and cleared; only the atime mode overlaps by design.
    assert attr_set & attr_clr & ~mo.MOUNT_ATTR__ATIME == 0
    atime_clr = attr_clr & mo.MOUNT_ATTR__ATIME
    # The kernel: __ATIME is cleared all-or-nothing, and a mode needs the whole field cleared.
    assert atime_clr in (0, mo.MOUNT_ATTR__ATIME)
    if atime_clr == 0:
        assert attr_set & mo.MOUNT_ATTR__ATIME == 0
    else:
        assert attr_set & mo.MOUNT_ATTR__ATIME in (
            mo.MOUNT_ATTR_RELATIME,
            mo.MOUNT_ATTR_NOATIME,
            mo.MOUNT_ATTR_STRICTATIME,
        )


@given(st.lists(st.sampled_from(RECURSIVE_ATIME), min_size=1, max_size=8))
def test_recursive_atime_last_mode_word_wins(words: list[str]) -> None:
    modes = {"rrelatime": 0, "rnoatime": 0x10, "rstrictatime": 0x20}
    attr_set, attr_clr = parse_mount_options(words).recursive_attrs
    assert attr_clr == mo.MOUNT_ATTR__ATIME
    if words[-1] in modes:
        assert attr_set == modes[words[-1]]


@given(st.lists(st.sampled_from(mo.SUPPORTED_OPTIONS), max_size=25))
def test_bind_fields_agree_with_flags(words: list[str]) -> None:
    opts = parse_mount_options(words)
    assert opts.is_bind == ("bind" in words or "rbind" in words)
    assert opts.is_recursive_bind == ("rbind" in words)
    assert opts.tmpcopyup == ("tmpcopyup" in words)
    assert all(p & ~mo.MS_REC for p in opts.propagation)
