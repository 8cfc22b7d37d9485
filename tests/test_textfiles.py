"""The shared JSON/TOML readers: each failure is the caller's error type, one line, naming the file."""

import os

import pytest

from nepbench.errors import ConfigError, InputError
from nepbench.textfiles import load_json, load_toml, prefixed, read_utf8


def test_reads_utf8_text_and_parses(tmp_path):
    (tmp_path / "a.json").write_text('{"å": [1, 2.5]}', encoding="utf-8")
    (tmp_path / "a.toml").write_text('[t]\nx = "é"\n', encoding="utf-8")
    assert load_json(tmp_path / "a.json", InputError) == {"å": [1, 2.5]}
    assert load_toml(tmp_path / "a.toml", prefixed(ConfigError)) == {"t": {"x": "é"}}
    assert read_utf8(str(tmp_path / "a.toml"), InputError).startswith("[t]")


@pytest.mark.parametrize("name, content, problem", [
    ("missing.json", None, "not found"),
    ("latin1.json", b'{"a": "\xe9"}', "not UTF-8 text (invalid continuation byte at byte 7)"),
    ("broken.json", b'{"a": 1,\n', "malformed JSON (Expecting property name enclosed in double quotes "
                                    "at line 2 column 1)"),
    ("broken.toml", b"[t\n", "malformed TOML"),
    ("folder.json", "dir", "cannot read"),
])
def test_each_failure_is_the_callers_error_naming_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    load = load_toml if name.endswith(".toml") else load_json
    with pytest.raises(ConfigError) as info:
        load(path, prefixed(ConfigError))
    message = str(info.value)
    assert message.startswith(f"{path}: {problem}")
    assert "\n" not in message and info.value.__cause__ is None
    with pytest.raises(InputError) as typed:
        load(path, InputError)
    assert typed.value.path == str(path) and typed.value.problem.startswith(problem)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_says_so(tmp_path):
    path = tmp_path / "secret.json"
    path.write_text("{}")
    path.chmod(0)
    with pytest.raises(ConfigError, match=r"secret\.json: cannot read \(Permission denied\)"):
        load_json(path, prefixed(ConfigError))
