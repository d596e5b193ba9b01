"""exec's P reads I's PID and C's SECCOMP on one channel: C runs on as soon as I forks
it, so its SECCOMP may come first (seen under load: "protocol: expected 'pid', got
'seccomp'"). The order must not matter."""

from __future__ import annotations

import pytest

from ociruntime.errors import RuntimeFailure
from ociruntime.stages.protocol import PID, SECCOMP, SECCOMP_DONE, ParentEnd


class FakeChannel:
    """What the stages sent, in order (None: EOF); what P sent back."""

    def __init__(self, *messages: dict | None) -> None:
        self.inbox, self.sent = list(messages), []

    def receive(self) -> dict | None:
        return self.inbox.pop(0)

    def send(self, kind: str, **fields: object) -> bool:
        self.sent.append(kind)
        return True


@pytest.mark.pure
@pytest.mark.parametrize("seccomp_first", [False, True])
def test_c_may_report_its_notify_fd_before_i_reports_its_pid(seccomp_first) -> None:
    pid, seccomp = {"type": PID, "pid": 42}, {"type": SECCOMP, "fd": 7}
    chan = FakeChannel(*([seccomp, pid] if seccomp_first else [pid, seccomp]), None)
    end = ParentEnd(chan, "eof", "failed")  # type: ignore[arg-type]
    assert end.wait_for_pid() == 42
    forwarded: list[int] = []
    end.serve_until_exec(forwarded.append)
    assert (forwarded, chan.sent) == ([7], [SECCOMP_DONE])


@pytest.mark.pure
def test_anything_else_before_the_pid_is_still_a_protocol_error() -> None:
    end = ParentEnd(FakeChannel({"type": "ready"}), "eof", "failed")  # type: ignore[arg-type]
    with pytest.raises(RuntimeFailure, match="expected 'pid', got 'ready'"):
        end.wait_for_pid()
