"""The runner: one record per task with provenance; a rerun recomputes nothing finished."""

import json
from pathlib import Path

import pytest

from nepbench import runner
from nepbench.spec import Suite, TaskSpec


def suite_of(*tasks):
    return Suite("t", "", tuple(tasks), (), "t.toml")


def test_records_have_provenance_and_resume(tmp_path, calls):
    suite = suite_of(TaskSpec("a", "parity", "A", {"value": 1}), TaskSpec("b", "parity", "B", {"value": 2}))
    runner.run_suite(suite, tmp_path, reference_dir=tmp_path / "none")
    record = json.loads((tmp_path / "tasks" / "a.json").read_text())
    assert record["status"] == "done" and record["metrics"] == {"x": 1.0}
    assert record["provenance"]["hardware"]["logical_cores"] >= 1
    assert record["provenance"]["packages"]["numpy"]
    assert len(record["input_hash"]) == 64
    runner.run_suite(suite, tmp_path, reference_dir=tmp_path / "none")
    assert calls == ["a", "b"]  # second run recomputed nothing


def test_interrupt_keeps_finished_and_resume_runs_only_the_rest(tmp_path, calls):
    first = suite_of(TaskSpec("a", "parity", "A", {"value": 1}),
                     TaskSpec("b", "parity", "B", {"value": 2, "interrupt": True}))
    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(first, tmp_path, reference_dir=tmp_path / "none")
    assert (tmp_path / "tasks" / "a.json").exists() and not (tmp_path / "tasks" / "b.json").exists()
    second = suite_of(TaskSpec("a", "parity", "A", {"value": 1}), TaskSpec("b", "parity", "B", {"value": 2}))
    runner.run_suite(second, tmp_path, reference_dir=tmp_path / "none")
    assert calls == ["a", "b", "b"]


def test_changed_parameters_invalidate_the_cache(tmp_path, calls):
    runner.run_suite(suite_of(TaskSpec("a", "parity", "A", {"value": 1})), tmp_path, reference_dir=tmp_path)
    runner.run_suite(suite_of(TaskSpec("a", "parity", "A", {"value": 3})), tmp_path, reference_dir=tmp_path)
    assert calls == ["a", "a"]
    assert json.loads((tmp_path / "tasks" / "a.json").read_text())["metrics"]["x"] == 3.0


def test_each_task_hashes_only_the_reference_data_it_reads(tmp_path, calls):
    """New AIMD frames rerun the MD comparison and leave the parity records (and their cache) alone;
    relabelled DFT frames do the opposite; the expansion task reads neither."""
    ref = tmp_path / "reference"
    (ref / "dft").mkdir(parents=True)
    (ref / "aimd").mkdir()
    (ref / "dft" / "manifest.json").write_text('{"n_frames": 1}')
    (ref / "aimd" / "manifest.json").write_text('{"runs": {}}')
    (ref / "aimd.toml").write_text("# spec\n")
    suite = suite_of(TaskSpec("p", "parity", "P", {}), TaskSpec("m", "md_accuracy", "M", {}),
                     TaskSpec("e", "expansion", "E", {}),
                     TaskSpec("nve", "md_accuracy", "NVE only", {"runs": []}))  # the gate suite's MD task
    out = tmp_path / "out"

    def data() -> dict[str, tuple[str | None, list[str]]]:
        records = {r["task_id"]: r for r in runner.run_suite(suite, out, reference_dir=ref)}
        return {k: (r["provenance"]["data_sha256"], r["provenance"]["data_files"]) for k, r in records.items()}

    first = data()
    assert first["p"][1] == ["dft/manifest.json"] and first["m"][1] == ["aimd/manifest.json", "aimd.toml"]
    assert first["e"] == (None, []) and first["nve"] == (None, [])  # no AIMD run compared: no AIMD data read
    assert first["p"][0] != first["m"][0]
    (ref / "aimd" / "manifest.json").write_text('{"runs": {"a": 10}}')  # an AIMD segment committed
    second = data()
    assert calls == ["p", "m", "e", "nve", "m"]  # the NVE-only task kept its record
    assert second["p"] == first["p"] and second["m"][0] != first["m"][0]
    (ref / "aimd.toml").write_text("# spec, warm-up changed\n")
    (ref / "dft" / "manifest.json").write_text('{"n_frames": 2}')
    third = data()
    assert calls == ["p", "m", "e", "nve", "m", "p", "m"]
    assert third["p"][0] != second["p"][0] and third["m"][0] != second["m"][0]
    # a task type that declares nothing depends on every file
    assert runner.task_data_files("something-new") == ("dft/manifest.json", "aimd/manifest.json", "aimd.toml")


def test_a_task_id_holding_a_model_path_stays_one_folder_under_work(tmp_path, calls):
    """--model deep/../x/nep.txt puts "/" and ".." in the task id: its record and its work folder
    are each one name inside the run folder."""
    out = tmp_path / "run"
    runner.run_suite(suite_of(TaskSpec("parity-deep/../../x/nep.txt", "parity", "P", {})), out, reference_dir=tmp_path)
    assert [p.name for p in (out / "work").iterdir()] == ["parity-deep_.._.._x_nep.txt"]
    assert [p.name for p in (out / "tasks").iterdir()] == ["parity-deep_.._.._x_nep.txt.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_missing_program_is_skipped_with_reason_and_retried(tmp_path, calls):
    suite = suite_of(TaskSpec("g", "throughput", "G", {"value": 0, "gpu": True}))
    records = runner.run_suite(suite, tmp_path, reference_dir=tmp_path)
    assert records[0]["status"] == "skipped" and "gpumd not found" in records[0]["reason"]
    runner.run_suite(suite, tmp_path, reference_dir=tmp_path)
    assert calls == ["g", "g"]


def test_code_modified_flag_follows_tracked_code_only(tmp_path):
    """A record says whether the code it ran differs from its commit: edits under src/ count,
    data and untracked files do not (the data hash covers data)."""
    import subprocess

    from nepbench.provenance import git_code_modified

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_code_modified(tmp_path) is None  # not a repository
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "reference_data").mkdir()
    (tmp_path / "reference_data" / "d.txt").write_text("1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_code_modified(tmp_path) is False
    (tmp_path / "reference_data" / "d.txt").write_text("2\n")
    (tmp_path / "src" / "new.py").write_text("untracked\n")
    assert git_code_modified(tmp_path) is False
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert git_code_modified(tmp_path) is True


def test_code_modified_flag_sees_a_checkout_kept_inside_another_repository(tmp_path):
    """nepbench vendored as tools/nepbench of a project's repository: its src/ is not the outer
    repository's src/, which git status was asked about before (edited code read as unmodified)."""
    import subprocess

    from nepbench.provenance import git_code_modified

    checkout = tmp_path / "tools" / "nepbench"
    (checkout / "src").mkdir(parents=True)
    (checkout / "src" / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=tmp_path,
                   check=True)
    assert git_code_modified(checkout) is False
    (checkout / "src" / "a.py").write_text("x = 2\n")
    assert git_code_modified(checkout) is True


def test_every_task_reads_the_model_file_its_record_names(tmp_path, monkeypatch):
    """A model rewritten during a run (a trainer writing its nep.txt, `train --register --force`):
    the tasks after it ran the new bytes while their records named the sha256 resolved at the start.
    Each task now runs the run folder's copy named by that sha256."""
    from random_models import write_random_model
    from nepbench.provenance import sha256_file
    from nepbench.tasks import TaskOutcome

    model = write_random_model(tmp_path / "mine.txt", seed=1)
    read = []

    def task(spec, ctx):
        read.append(sha256_file(ctx.model_path))
        if spec.id == "a":  # the trainer writes a new model in place
            write_random_model(model, seed=2)
        return TaskOutcome("done", metrics={"x": 1.0})

    monkeypatch.setattr(runner, "task_function", lambda task_type: task)
    out = tmp_path / "run"
    suite = suite_of(*(TaskSpec(i, "parity", i, {}, (str(model),)) for i in "ab"))
    records = runner.run_suite(suite, out, reference_dir=tmp_path / "none")
    named = [r["provenance"]["model_sha256"] for r in records]
    assert read == named and named[0] == named[1] != sha256_file(model)
    assert sha256_file(out / runner.MODELS_DIR / f"{named[0]}.nep.txt") == named[0]


def test_a_model_that_changed_since_it_was_resolved_is_refused(tmp_path):
    from nepbench.errors import ModelError
    from random_models import write_random_model
    from nepbench.provenance import sha256_file

    model = write_random_model(tmp_path / "mine.txt", seed=1)
    resolved = sha256_file(model)
    write_random_model(model, seed=2)
    with pytest.raises(ModelError, match="mine.txt: changed after it was resolved"):
        runner.snapshot_model(model, resolved, tmp_path / "models")
    assert not (tmp_path / "models" / f"{resolved}.nep.txt").exists()
    copy = runner.snapshot_model(model, sha256_file(model), tmp_path / "models")
    assert copy.read_bytes() == model.read_bytes() and copy.parent == tmp_path / "models"


def test_a_folder_holding_another_suites_run_is_refused_untouched(tmp_path, calls):
    from nepbench.errors import InputError

    runner.run_suite(suite_of(TaskSpec("a", "parity", "A", {"value": 1})), tmp_path, reference_dir=tmp_path)
    held = (tmp_path / "suite.json").read_text()
    other = Suite("other", "", (TaskSpec("b", "parity", "B", {"value": 2}),), (), "other.toml")
    with pytest.raises(InputError, match="holds a run of suite 't', not 'other'"):
        runner.run_suite(other, tmp_path, reference_dir=tmp_path)
    assert (tmp_path / "suite.json").read_text() == held and calls == ["a"]
    (tmp_path / "suite.json").write_text("{not json")
    with pytest.raises(InputError, match="suite.json: unreadable"):
        runner.run_suite(other, tmp_path, reference_dir=tmp_path)


def test_an_unknown_task_id_writes_nothing(tmp_path, calls):
    from nepbench.errors import ConfigError

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="no task 'typo'"):
        runner.run_suite(suite_of(TaskSpec("a", "parity", "A", {"value": 1})), out, ["typo"], reference_dir=tmp_path)
    assert not out.exists() and calls == []


def test_a_code_change_recomputes_instead_of_reusing_old_results(tmp_path, calls, monkeypatch):
    suite = suite_of(TaskSpec("a", "parity", "A", {"value": 1}))
    runner.run_suite(suite, tmp_path, reference_dir=tmp_path)
    runner.run_suite(suite, tmp_path, reference_dir=tmp_path)
    assert calls == ["a"]
    first = json.loads((tmp_path / "tasks" / "a.json").read_text())
    assert first["provenance"]["nepbench_code_sha256"] == runner.code_sha256()
    monkeypatch.setattr(runner, "code_sha256", lambda: "f" * 64)
    runner.run_suite(suite, tmp_path, reference_dir=tmp_path)
    assert calls == ["a", "a"]
    assert json.loads((tmp_path / "tasks" / "a.json").read_text())["provenance"]["nepbench_code_sha256"] == "f" * 64


def test_code_sha256_follows_the_python_sources_only(tmp_path):
    from nepbench.provenance import code_sha256

    def package(name: str, body: str) -> Path:
        root = tmp_path / name
        (root / "sub" / "__pycache__").mkdir(parents=True)
        (root / "sub" / "m.py").write_text(body)
        (root / "sub" / "__pycache__" / "m.cpython-311.pyc").write_bytes(name.encode())
        (root / "notes.txt").write_text(name)
        return root

    same_a, same_b = package("a", "x = 1\n"), package("b", "x = 1\n")  # only .pyc and .txt differ
    assert code_sha256(same_a) == code_sha256(same_b)
    assert code_sha256(package("c", "x = 2\n")) != code_sha256(same_a)
    (same_a / "sub" / "m.py").rename(same_a / "sub" / "n.py")  # a rename is a change (new folder: no cache)
    assert code_sha256(same_a) == code_sha256(same_b)  # cached for the folder within a process
    assert code_sha256.__wrapped__(same_a) != code_sha256(same_b)


def _container_env(monkeypatch, tmp_path, labels: str | None, build_info: str | None) -> None:
    """Point the container files at tmp files (absent where None) and clear the container variables."""
    from nepbench import provenance

    for var in ("NEPBENCH_IN_CONTAINER", "APPTAINER_NAME", "SINGULARITY_NAME", "NEPBENCH_CONTAINER_DIGEST"):
        monkeypatch.delenv(var, raising=False)
    paths = {}
    for name, text in (("labels.json", labels), ("BUILD_INFO", build_info)):
        paths[name] = tmp_path / "image" / name
        if text is not None:
            paths[name].parent.mkdir(parents=True, exist_ok=True)
            paths[name].write_text(text)
    monkeypatch.setattr(provenance, "APPTAINER_LABELS", paths["labels.json"])
    monkeypatch.setattr(provenance, "GPUMD_BUILD_INFO", paths["BUILD_INFO"])


BUILD_INFO = ("commit=5fad844f2940b3c5d5f8414ad9dbebad8d65740a\ncuda_archs=80,90\n"
              "nvcc=Build cuda_12.6.r12.6/compiler.35059454_0\nrepo=https://github.com/brucefan1983/GPUMD.git\n"
              "tag=v5.6\n")


def test_records_carry_the_containers_labels_and_gpumd_build(tmp_path, calls, monkeypatch):
    """docs/container.md: each record's provenance names the image (labels, GPUMD build)."""
    labels = {"org.nepbench.gpumd.commit": "5fad844f2940b3c5d5f8414ad9dbebad8d65740a",
              "org.nepbench.model.sha256": "2d6ef72b", "org.nepbench.cuda.archs": "80,90"}
    _container_env(monkeypatch, tmp_path, json.dumps(labels), BUILD_INFO)
    monkeypatch.setenv("APPTAINER_NAME", "nepbench.sif")
    runner.run_suite(suite_of(TaskSpec("a", "parity", "A", {"value": 1})), tmp_path / "out", reference_dir=tmp_path)
    container = json.loads((tmp_path / "out" / "tasks" / "a.json").read_text())["provenance"]["hardware"]["container"]
    assert container["name"] == "nepbench.sif" and container["digest"] is None
    assert container["labels"] == labels
    assert container["build_info"]["commit"] == "5fad844f2940b3c5d5f8414ad9dbebad8d65740a"
    assert container["build_info"]["tag"] == "v5.6" and container["build_info"]["cuda_archs"] == "80,90"
    assert container["build_info"]["nvcc"] == "Build cuda_12.6.r12.6/compiler.35059454_0"


def test_container_field_docker_and_outside(tmp_path, monkeypatch):
    from nepbench.provenance import container_info, hardware_info

    # outside a container: None, even where a GPUMD build sits at the image's path
    _container_env(monkeypatch, tmp_path, None, BUILD_INFO)
    assert container_info() is None and hardware_info()["container"] is None
    # docker: no labels inside, NEPBENCH_IN_CONTAINER=1 from the image, a digest when passed with -e
    monkeypatch.setenv("NEPBENCH_IN_CONTAINER", "1")
    monkeypatch.setenv("NEPBENCH_CONTAINER_DIGEST", "sha256:abc")
    got = container_info()
    assert got["labels"] is None and got["digest"] == "sha256:abc" and got["build_info"]["tag"] == "v5.6"
    # an unreadable labels file is left out, not an error
    _container_env(monkeypatch, tmp_path / "other", "{not json", None)
    monkeypatch.setenv("APPTAINER_NAME", "x.sif")
    assert container_info() == {"name": "x.sif", "digest": None, "labels": None, "build_info": None}


@pytest.mark.parametrize("visible, expected", [
    (None, ["NVIDIA A100-SXM4-80GB, 81920 MiB", "NVIDIA H100 80GB HBM3, 81559 MiB"]),
    ("1", ["NVIDIA H100 80GB HBM3, 81559 MiB"]),  # before: both, and gpus[0] named the A100
    ("1,0", ["NVIDIA H100 80GB HBM3, 81559 MiB", "NVIDIA A100-SXM4-80GB, 81920 MiB"]),
    ("GPU-bbbb", ["NVIDIA H100 80GB HBM3, 81559 MiB"]),
    ("0,7,1", ["NVIDIA A100-SXM4-80GB, 81920 MiB"]),  # CUDA stops at an entry naming no GPU
    ("", []),
    ("MIG-1234", ["NVIDIA A100-SXM4-80GB, 81920 MiB", "NVIDIA H100 80GB HBM3, 81559 MiB"]),  # not resolvable
])
def test_the_recorded_gpus_are_the_ones_cuda_sees(monkeypatch, visible, expected):
    import subprocess

    from nepbench import provenance

    listing = ("0, GPU-aaaa-1111, NVIDIA A100-SXM4-80GB, 81920 MiB\n"
               "1, GPU-bbbb-2222, NVIDIA H100 80GB HBM3, 81559 MiB\n")
    monkeypatch.setattr(provenance.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 0, stdout=listing))
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert provenance.gpu_models() == expected
