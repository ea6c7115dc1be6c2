"""Thread counts for the model workers from the CPUs a process may really use."""

from pathlib import Path

from facerec_runtime.cpus import model_threads, usable_cpus


def test_a_cgroup_v2_quota_caps_the_cpus(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("400000 100000\n")
    assert usable_cpus(tmp_path) == min(4, usable_cpus(tmp_path / "none"))


def test_a_cgroup_v1_quota_caps_the_cpus_and_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")  # no limit
    assert usable_cpus(tmp_path) >= 1


def test_model_workers_share_the_cpus_and_a_setting_wins() -> None:
    assert model_threads(0, 2, cpus=2) == 1
    assert model_threads(0, 1, cpus=2) == 2
    assert model_threads(0, 4, cpus=2) == 1  # never zero
    assert model_threads(0, 2, cpus=16) == 8
    assert model_threads(3, 2, cpus=16) == 3
