"""Reading rank and rendezvous from torchrun's or SLURM's environment."""
import pytest

from hpml_bench.strategies.dist_env import DistEnv, first_host, read_dist_env


@pytest.mark.parametrize("nodelist, host", [
    ("gr003", "gr003"), ("gr[003-005,010]", "gr003"), ("gv[12,15],gr001", "gv12"), ("node-a,node-b", "node-a"),
])
def test_first_host_of_a_slurm_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_torchrun_variables_win():
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234",
           "SLURM_PROCID": "0", "SLURM_NTASKS": "8"}
    assert read_dist_env(env) == DistEnv(3, 1, 4, "10.0.0.1", 1234, "torchrun")


def test_srun_task_reads_slurm_variables():
    env = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_JOB_NODELIST": "gr[010-013]"}
    assert read_dist_env(env) == DistEnv(5, 1, 8, "gr010", 29500, "slurm")


def test_single_process_without_launcher():
    assert read_dist_env({}) == DistEnv()
    assert read_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).source == "single"
