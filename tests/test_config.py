"""Suite files: parsing, model expansion and one clear error per malformed input."""

from pathlib import Path

import pytest

from nepbench.config import load_suite
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
    (('unit = "meV/Å"', 'unit = "meV/Å"\nflor = "x"'), "unknown key(s) flor"),
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
