"""Two processes filling the same cache directory at once take turns.

Before the lock, the second build deleted the first one's staging directory
("copying … .partial/kubectl: no such file or directory"). The build step here
is a fake (a fill function that writes a file slowly), because a real Go build
takes minutes; the lock and the rename it protects are the real ones.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from localcluster.binaries import cached_directory

# Run in a separate interpreter per builder: flock is what keeps processes apart,
# and two processes are what happens when two `localcluster build` runs overlap.
FAKE_BUILDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from localcluster.binaries import cached_directory

    target, journal = Path(sys.argv[1]), Path(sys.argv[2])
    me = sys.argv[3]

    def fake_fill(staging: Path) -> str:
        with journal.open("a") as out:
            out.write(f"start {me}\\n")
        time.sleep(1.0)  # long enough for the other builder to arrive meanwhile
        (staging / "kubectl").write_text(f"built by {me}")
        with journal.open("a") as out:
            out.write(f"end {me}\\n")
        return f"fake build by {me}"

    result = cached_directory(target, fake_fill, log=lambda line: print(line, flush=True))
    print("result", (result / "kubectl").read_text(), flush=True)
    """
)


def _start_builder(target: Path, journal: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", FAKE_BUILDER, str(target), str(journal), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_concurrent_fills_of_one_directory_run_once_and_both_see_the_result(
    tmp_path: Path,
) -> None:
    target = tmp_path / "bin" / "kubernetes-v1.37.2"
    journal = tmp_path / "journal"
    builders = [_start_builder(target, journal, name) for name in ("first", "second")]
    outputs = [builder.communicate(timeout=60)[0] for builder in builders]

    assert [builder.returncode for builder in builders] == [0, 0], outputs
    # One fill, start to end, never interleaved with another.
    events = journal.read_text().splitlines()
    assert len(events) == 2, events
    (start, who), (end, same) = (event.split() for event in events)
    assert (start, end, who) == ("start", "end", same)
    # Both processes got the complete directory the one fill made.
    assert (target / "kubectl").read_text() == f"built by {who}"
    assert all(f"result built by {who}" in output for output in outputs), outputs
    # The one that waited said so, and nothing was left half-made.
    assert sum("waiting for another build of kubernetes-v1.37.2" in o for o in outputs) == 1
    assert not (tmp_path / "bin" / ".kubernetes-v1.37.2.partial").exists()


def test_a_failed_fill_leaves_nothing_and_the_next_caller_fills_again(tmp_path: Path) -> None:
    target = tmp_path / "bin" / "etcd-v3.6.16"

    def failing_fill(staging: Path) -> str:
        (staging / "etcd").write_text("half")
        raise RuntimeError("build broke")

    with pytest.raises(RuntimeError, match="build broke"):
        cached_directory(target, failing_fill)
    assert not target.exists()
    assert not (tmp_path / "bin" / ".etcd-v3.6.16.partial").exists()

    def working_fill(staging: Path) -> str:
        (staging / "etcd").write_text("whole")
        return "fake build"

    assert (cached_directory(target, working_fill) / "etcd").read_text() == "whole"
    assert (target / ".origin").read_text() == "fake build\n"
