"""The one-line reports of a multi-node job: a lost peer named by rank and host; a run folder
that a rank's node cannot see."""
from __future__ import annotations

import pytest

from hpml_bench.errors import HpmlError
from hpml_bench.faults.lost_peer import lost_peer
from hpml_bench.runfolder import RunFolder

HOSTS = [("hpml-n1", "10.213.7.11"), ("hpml-n1", "10.213.7.11"), ("hpml-n2", "10.213.7.12"), ("hpml-n2", "10.213.7.12")]


@pytest.mark.parametrize("message", [
    "[/gloo/transport/tcp/pair.cc:561] Connection closed by peer [10.213.7.12]:1233. This is typically caused by",
    "[/gloo/transport/tcp/pair.cc:545] Read error [10.213.7.12]:53476: Connection reset by peer. This is",
])
def test_a_gloo_error_names_the_lost_ranks_and_host(message):
    line = lost_peer(RuntimeError(message), HOSTS, rank=1)
    assert line.startswith("lost ranks 2,3 on host hpml-n2 (10.213.7.12): ") and "seen by rank 1 on hpml-n1" in line


def test_other_errors_are_not_taken_for_a_lost_peer():
    assert lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)"), HOSTS, 0) is None
    assert lost_peer(RuntimeError("Connection closed by peer [10.213.7.12]:1"), HOSTS[:1], 0) is None  # one rank


def test_a_rank_that_cannot_see_the_run_folder_fails_in_one_line(tmp_path):
    RunFolder(tmp_path).check_seen_by(0, HOSTS)  # present: fine
    with pytest.raises(HpmlError, match="^multi-node job: rank 2 on hpml-n2 cannot see the run folder .* storage every "
                                        "node sees"):
        RunFolder(tmp_path / "elsewhere").check_seen_by(2, HOSTS)


def test_the_shared_folder_rule_applies_across_hosts_only(tmp_path):
    """Ranks on rank 0's host (rank 0 itself included) are never blamed for rank 0's folder."""
    for rank in (0, 1):
        RunFolder(tmp_path / "not-made-yet").check_seen_by(rank, HOSTS)
