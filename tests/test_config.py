"""Suite files: parsing, model expansion and one clear error per malformed input."""

import re
from pathlib import Path

import numpy as np
import pytest

from nepbench import checks
from nepbench.suite import load_suite
from nepbench.errors import ConfigError

SUITE = """
[suite]
name = "t"
models = ["m1", "m2"]

[[task]]
id = "parity-{model}"
type = "parity"
split = "test"

[[task]]
id = "speed"
type = "throughput"
model = "m1"

[[criterion]]
id = "force"
claim = "forces near DFT"
task = "parity-{model}"
metric = "force_rmse_mev_per_a"
good = 100
bad = 200
unit = "meV/Å"
source = "test"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_models_expand_tasks_and_criteria(tmp_path):
    suite = load_suite(write(tmp_path, SUITE))
    assert [t.id for t in suite.tasks] == ["parity-m1", "parity-m2", "speed"]
    assert suite.tasks[1].params["model"] == "m2" and suite.tasks[1].models == ("m2",)
    assert [c.task for c in suite.criteria] == ["parity-m1", "parity-m2"]
    assert suite.criteria[0].good == 100.0


def test_model_override(tmp_path):
    suite = load_suite(write(tmp_path, SUITE), models=("x",))
    assert [t.id for t in suite.tasks] == ["parity-x", "speed"]
    assert suite.task("speed").models == ("m1",)  # a task that names its model keeps it


@pytest.mark.parametrize("change, message", [
    # before: loaded with no model, and failed as a TypeError after the task had read its data
    (('model = "m1"\n', ''), "task 'speed' names no model: put {model} in its id"),
    (('model = "m1"\n', 'model = 3\n'), "names no model"),
    (('split = "test"', 'split = "test"\nmodel = "m2"'), "task 'parity-{model}' has {model} in its id and model"),
])
def test_every_task_has_a_model(tmp_path, change, message):
    path = write(tmp_path, SUITE.replace(*change))
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_suite(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("change, message", [
    (('good = 100', 'good = 200'), "must differ"),
    (('type = "throughput"', 'type = "dance"'), "unknown type"),
    (('metric = "force_rmse_mev_per_a"\n', ''), "lacks metric"),
    (('good = 100', 'good = "x"'), "must be finite numbers"),
    (('good = 100', 'good = nan'), "must be finite numbers"),
    (('good = 100', 'good = true'), "must be finite numbers"),
    (('task = "parity-{model}"', 'task = "nope"'), "unknown task"),
    (('[suite]', '[suite'), "malformed TOML"),
    # a string is not split into one model per character
    (('models = ["m1", "m2"]', 'models = "m1"'), "models must be a list of model names"),
    (('models = ["m1", "m2"]', 'models = ["m1", 2]'), "models must be a list of model names"),
    (('name = "t"', 'name = "t"\nmodel = ["m1"]'), "[suite] has unknown key(s) model"),
    (('[suite]\nname = "t"\nmodels = ["m1", "m2"]', 'suite = "t"'), "'suite' must be a table"),
    ((SUITE, 'task = 5\n[suite]\nname = "t"\n'), "'task' must be an array of tables"),
    (('[[criterion]]', '[[criterions]]'), "unknown table(s) criterions"),
    ((SUITE, '[suite]\nname = "t"\n'), "defines no task"),  # a run would claim --out and report nothing
    (('unit = "meV/Å"', 'unit = "meV/Å"\nflor = "x"'), "unknown key(s) flor"),
    # the default run folder is reports/<name>: these wrote to reports/, /tmp/x and reports/../escape
    (('name = "t"', 'name = ""'), "[suite] name must be letters, digits"),
    (('name = "t"', 'name = "/tmp/x"'), "got '/tmp/x'"),
    (('name = "t"', 'name = "../escape"'), "got '../escape'"),
    (('name = "t"', 'name = 3'), "got 3"),
    (('[[task]]\nid = "speed"', SUITE[SUITE.index("[[criterion]]"):] + '\n[[task]]\nid = "speed"'),
     "duplicate criterion id(s) 'force[m1]', 'force[m2]'"),
])
def test_bad_suites_name_the_file(tmp_path, change, message):
    path = write(tmp_path, SUITE.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_suite_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_bytes(SUITE.encode() + b"\n# \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_suite(path)
    assert str(path) in str(info.value)


def test_shipped_suites_parse():
    root = Path(__file__).resolve().parents[1] / "suites"
    paths = sorted(root.glob("*.toml"))
    assert {p.name for p in paths} >= {"quick.toml", "paper.toml"}
    for path in paths:
        suite = load_suite(path)
        assert suite.tasks and suite.criteria
        for crit in suite.criteria:
            assert crit.source.strip()


def test_a_misspelt_task_parameter_is_refused(tmp_path):
    path = write(tmp_path, SUITE.replace('split = "test"', 'splt = "test"'))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message and "task 'parity-{model}' (parity) has unknown parameter(s) splt" in message
    assert "known: dataset, motifs, split" in message


MD_TASK = """
[[task]]
id = "md"
type = "md_accuracy"
model = "m1"
runs = []
nve = { builder = "a-LixSi", params = { x = 2.0 }, temperature_k = 900.0, timestep_fs = 1.0, steps = 20 }
"""
EXPANSION_TASK = """
[[task]]
id = "expansion"
type = "expansion"
model = "m1"
"""


@pytest.mark.parametrize("text, problem", [
    (SUITE.replace('split = "test"', 'split = "nosuch"'), "(parity): split must be one of test, train, got 'nosuch'"),
    (SUITE.replace('split = "test"', 'split = 3'), "split must be one of test, train, got 3"),
    (SUITE.replace('split = "test"', 'motifs = ["nosuchmotif"]'), "unknown motif(s) nosuchmotif"),
    (SUITE.replace('split = "test"', 'motifs = []'), "motifs must be a non-empty list"),
    (SUITE + MD_TASK.replace('"a-LixSi"', '"a-nothing"'), "(md_accuracy): nve has unknown builder 'a-nothing' (known:"),
    (SUITE + MD_TASK.replace("steps = 20", "steps = 0"), "nve steps must be an integer >= 1, got 0"),
    (SUITE + MD_TASK.replace("runs = []", "runs = []\nlength_factors = [0]"), "length_factors must be"),
    (SUITE + MD_TASK.replace("runs = []", "runs = 'a-LiC-1200K'"), "runs must be a list of AIMD run ids"),
    (SUITE + MD_TASK.replace("runs = []", "runs = []\nn_bins = true"), "n_bins must be an integer >= 2"),
    (SUITE + EXPANSION_TASK + "target_x = -1.0\n", "(expansion): need target_x > 0"),
    (SUITE + MD_TASK.replace('"a-LixSi"', '["a-LixSi"]'), "nve has unknown builder ['a-LixSi'] (known:"),
    (SUITE + MD_TASK.replace("runs = []", "runs = []\nr_max_a = 0"), "r_max_a must be a number > 0, got 0"),
    (SUITE + MD_TASK.replace("runs = []", "runs = []\nseed = 1.5"), "seed must be an integer >= 0, got 1.5"),
    (SUITE + MD_TASK.replace("steps = 20", "steps = 20, seed = 'x'"), "nve seed must be an integer >= 0"),
    (SUITE + MD_TASK.replace("steps = 20", "steps = 20, nvt_steps = -1"), "nve nvt_steps must be an integer >= 0, got -1"),
    (SUITE.replace('type = "throughput"', 'type = "throughput"\ncp2k_steps = 1\ncp2k_warmup = 0'),
     "(throughput): cp2k_steps = 1 with cp2k_warmup = 0 times no step"),
    (SUITE.replace('type = "throughput"', 'type = "throughput"\ncp2k_steps = 0'), "cp2k_steps must be an integer >= 1"),
    (SUITE.replace('type = "throughput"', 'type = "throughput"\nnep_threads = 0'), "nep_threads must be an integer >= 1"),
    (SUITE.replace('type = "throughput"', 'type = "throughput"\nbuilder_params = { y = 2.0 }'),
     "(throughput): builder 'a-LixSi' takes no parameter(s) y"),
    (SUITE + MD_TASK.replace("params = { x = 2.0 }", "params = { x = 2.0, n_atom = 8 }"),
     "(md_accuracy): nve builder 'a-LixSi' takes no parameter(s) n_atom"),
    (SUITE + MD_TASK.replace("steps = 20", "steps = 20, nvt_steps = true"), "nve nvt_steps must be an integer >= 0, got True"),
])
def test_bad_parameter_values_are_refused_when_the_suite_is_loaded(tmp_path, text, problem):
    """Before anything runs or is written: the task would otherwise fail minutes later and replace
    an earlier finished record of the same task with its failure."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert str(path) in str(info.value) and problem in str(info.value)
    load_suite(write(tmp_path, SUITE + MD_TASK + EXPANSION_TASK))  # the good values load


@pytest.mark.parametrize("task_type, module", [
    ("parity", "parity"), ("md_accuracy", "md_accuracy"), ("throughput", "throughput")])
def test_declared_task_parameters_cover_what_the_code_reads(task_type, module):
    """The loader refuses parameters outside the declared set, so every key the task's code reads
    (p.get("k"), p["k"], params.get("k")) must be declared, or a valid suite would be refused."""
    import re

    from nepbench.tasks import task_params

    source = (Path(__file__).resolve().parents[1] / "src" / "nepbench" / "tasks" / f"{module}.py").read_text()
    read = set(re.findall(r"\b(?:p|params)(?:\.get\(|\[)\"([a-z_0-9]+)\"", source))
    assert read, "the pattern found no parameter reads: has the code's style changed?"
    assert read <= task_params(task_type), read - task_params(task_type)


@pytest.mark.parametrize(("value", "expected"), [
    (3, 3), (np.int64(4), 4), (0, 0), (-2, -2),
    (True, None), (np.bool_(True), None), (2.0, None), ("2", None), (None, None)])
def test_integer_takes_ints_only_never_bools_floats_or_strings(value, expected):
    got = checks.integer(value)
    assert got == expected and (got is None or type(got) is int)


def test_unknown_name_accepts_listed_strings_and_names_the_list_otherwise():
    assert checks.unknown_name("b", ["a", "b"], "builder") is None
    assert checks.unknown_name("c", ["a", "b"], "builder") == "unknown builder 'c' (known: a, b)"
    # a list or number where a name goes is refused, not looked up (a list is unhashable in a set)
    assert checks.unknown_name(["a"], {"a": 1}, "preset") == "unknown preset ['a'] (known: a)"
    assert checks.unknown_name(1, ["a"], "preset").startswith("unknown preset 1")


def test_parity_dataset_names_a_reference_set():
    from nepbench.tasks.parity import check_params

    assert check_params({"dataset": "dft-v2"}) is None and check_params({}) is None
    assert check_params({"dataset": "dft-v2-al1"}) is None  # an active-learning round's set
    for bad in ("aimd", "../dft", "dft-V2", "dft-", 3):
        assert "dataset must be 'dft' or 'dft-<name>'" in check_params({"dataset": bad}), bad
