"""The container recipes, checked statically against pins.toml, requirements.txt and the CLI.

No container engine runs here, so every promise the recipes make that can be read from their text
is checked: the same pins in both recipes (GPUMD commit and its verification, CUDA image and archs,
CP2K package, model hashes), the pinned Python requirements, every `%apprun` naming a program the
image provides, every nepbench command line (image default, Slurm examples) parsing with the real
CLI, and the entrypoint setting what the codes need (run for real with a stub `nepbench`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nepbench import __version__
from nepbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PINS = tomllib.loads((ROOT / "pins.toml").read_text())
CONTAINERFILE = ROOT / "Containerfile"
DEFFILE = ROOT / "apptainer.def"
ENTRYPOINT = ROOT / "container" / "entrypoint.sh"
SLURM = sorted((ROOT / "examples" / "slurm").glob("*.sbatch"))
REGISTRY = ROOT / "models" / "registry.toml"
IMAGE_ROOT = "/opt/nepbench"  # where the repository sits inside the image


# ------------------------------------------------------------------------------ Containerfile


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: str | None  # stage name (FROM ... AS name); None before the first FROM


def parse_containerfile(text: str) -> list[Instruction]:
    """Instructions with continuations joined and comments dropped (as BuildKit reads them)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Containerfile ends inside a continuation"
    out, stage = [], None
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            stage = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else parts[0]
        out.append(Instruction(keyword, args.strip(), stage))
    return out


def cf_stage(instructions: list[Instruction], stage: str | None) -> list[Instruction]:
    return [i for i in instructions if i.stage == stage]


def cf_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG name=default pairs (ARG without a default maps to '')."""
    out = {}
    for ins in instructions:
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            out[name] = default
    return out


def cf_labels(instructions: list[Instruction]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "LABEL":
            for token in shlex.split(ins.args):
                key, _, value = token.partition("=")
                labels[key] = value
    return labels


def cf_exec_form(instructions: list[Instruction], keyword: str) -> list[str]:
    import json

    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}"
    return json.loads(found[0].args)


# ------------------------------------------------------------------------------ apptainer.def


@dataclass
class DefStage:
    header: dict[str, str]
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (name, argument, body)

    def bodies(self, name: str, argument: str | None = None) -> list[str]:
        return [body for n, a, body in self.sections if n == name and (argument is None or a == argument)]

    def body(self, name: str, argument: str | None = None) -> str:
        return "\n".join(self.bodies(name, argument))

    def arguments(self) -> dict[str, str]:
        out = {}
        for line in self.body("arguments").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                key, _, value = line.partition("=")
                out[key.strip()] = value.strip()
        return out

    def labels(self) -> dict[str, str]:
        out = {}
        for line in self.body("labels").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition(" ")
                out[key] = value.strip()
        return out

    def files(self, source_stage: str | None = None) -> list[tuple[str, str]]:
        pairs = []
        for name, argument, body in self.sections:
            if name != "files":
                continue
            from_stage = argument.split()[1] if argument.startswith("from ") else None
            if from_stage != source_stage:
                continue
            for line in body.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    src, _, dst = line.partition(" ")
                    pairs.append((src, dst.strip() or src))
        return pairs


def parse_deffile(text: str) -> list[DefStage]:
    """Stages split at `Bootstrap:` lines, sections at lines whose first word starts with '%'
    (the rules of Apptainer's own parser, pkg/build/types/parser)."""
    chunks = re.split(r"(?mi)^(?=bootstrap:)", text)
    stages = []
    for chunk in chunks:
        if not re.match(r"(?i)bootstrap:", chunk):
            assert not [l for l in chunk.splitlines() if l.strip() and not l.strip().startswith("#")], \
                "content before the first Bootstrap line"
            continue
        header: dict[str, str] = {}
        sections: list[tuple[str, str, list[str]]] = []
        for line in chunk.splitlines():
            word = line.split()[0] if line.split() else ""
            if word.startswith("%"):
                name, _, argument = line.strip()[1:].partition(" ")
                sections.append((name.lower(), argument.strip(), []))
            elif sections:
                sections[-1][2].append(line)
            elif line.strip() and not line.strip().startswith("#"):
                key, _, value = line.partition(":")
                header[key.strip().lower()] = value.strip()
        stages.append(DefStage(header, [(n, a, "\n".join(b)) for n, a, b in sections]))
    return stages


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cf() -> list[Instruction]:
    return parse_containerfile(CONTAINERFILE.read_text())


@pytest.fixture(scope="module")
def stages() -> list[DefStage]:
    return parse_deffile(DEFFILE.read_text())


def _def_stage(stages: list[DefStage], name: str) -> DefStage:
    for stage in stages:
        if stage.header.get("stage") == name:
            return stage
    raise AssertionError(f"apptainer.def has no stage {name!r}")


def _cf_run_text(instructions: list[Instruction]) -> str:
    return "\n".join(i.args for i in instructions if i.keyword == "RUN")


def _code(script: str) -> str:
    """A shell script without its comment lines."""
    return "\n".join(l for l in script.splitlines() if not l.strip().startswith("#"))


def _placeholders(text: str) -> set[str]:
    active = "\n".join(l for l in text.splitlines() if not l.strip().startswith("#"))
    return set(re.findall(r"{{\s*(\w+)\s*}}", active))


# ------------------------------------------------------------------------------ pins.toml


def test_pins_are_well_formed() -> None:
    gpumd, cuda = PINS["gpumd"], PINS["cuda"]
    assert re.fullmatch(r"[0-9a-f]{40}", gpumd["commit"]), "GPUMD commit must be a full 40-hex hash"
    assert gpumd["tag"] == "v5.6"
    assert gpumd["repo"].startswith("https://github.com/brucefan1983/GPUMD")
    assert set(gpumd["linked_libraries"]) == {"cublas", "cusolver", "cufft"}
    assert cuda["archs"] and all(re.fullmatch(r"\d{2,3}", a) for a in cuda["archs"])
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-devel-ubuntu22\.04", cuda["devel_image"])
    assert cuda["version"] in cuda["devel_image"]
    assert PINS["cp2k"]["debian_package_version"].startswith(PINS["cp2k"]["version"] + "-")
    assert PINS["runtime"]["base_image"].startswith("debian:bookworm")
    assert (ROOT / PINS["python"]["requirements"]).is_file()
    for key in ("sha256", "source_sha256"):
        assert re.fullmatch(r"[0-9a-f]{64}", PINS["model"][key]), key


def test_requirements_are_fully_pinned() -> None:
    """The image installs requirements.txt as is: every line must pin one exact version."""
    lines = [l.split("#", 1)[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [l for l in lines if l]
    assert reqs
    unpinned = [r for r in reqs if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", r)]
    assert not unpinned, f"unpinned requirements: {unpinned}"


def test_model_pins_match_registry() -> None:
    if not REGISTRY.is_file():
        pytest.skip("models/registry.toml not written yet")
    registry = tomllib.loads(REGISTRY.read_text())["models"]
    name = PINS["model"]["name"]
    assert name in registry, f"pins.toml default model {name!r} is not in the registry"
    record = registry[name]
    assert PINS["model"]["source_sha256"] == record["source_sha256"]
    expected = record.get("derived", {}).get("derived_sha256") or record["source_sha256"]
    assert PINS["model"]["sha256"] == expected


# ------------------------------------------------------------------------------ both recipes


def test_both_recipes_parse_with_spython() -> None:
    from spython.main.parse.parsers import DockerParser, SingularityParser

    sing = SingularityParser(str(DEFFILE))
    assert [r.fromHeader for r in sing.recipe.values()] == [
        PINS["cuda"]["devel_image"], PINS["runtime"]["base_image"], PINS["runtime"]["base_image"]]
    docker = DockerParser(str(CONTAINERFILE))
    assert [r.fromHeader.strip() for r in docker.recipe.values()] == [
        PINS["cuda"]["devel_image"], PINS["runtime"]["base_image"], PINS["runtime"]["base_image"]]


def test_same_stages_and_base_images(cf: list[Instruction], stages: list[DefStage]) -> None:
    cf_from = [i.args.split()[0] for i in cf if i.keyword == "FROM"]
    cf_names = [i.args.split()[2] for i in cf if i.keyword == "FROM"]
    def_from = [s.header["from"] for s in stages]
    assert all(s.header["bootstrap"] == "docker" for s in stages)
    assert cf_from == def_from == [PINS["cuda"]["devel_image"], PINS["runtime"]["base_image"],
                                   PINS["runtime"]["base_image"]]
    assert cf_names[:2] == [s.header["stage"] for s in stages][:2] == ["gpumd", "python"]


def test_gpumd_is_cloned_checked_out_and_verified_by_commit(cf: list[Instruction],
                                                             stages: list[DefStage]) -> None:
    gpumd = PINS["gpumd"]
    build = cf_stage(cf, "gpumd")
    args = cf_args(build)
    assert args["GPUMD_COMMIT"] == gpumd["commit"]
    assert args["GPUMD_TAG"] == gpumd["tag"]
    assert args["GPUMD_REPO"] == gpumd["repo"]
    post = _def_stage(stages, "gpumd").body("post")
    assert f"GPUMD_COMMIT={gpumd['commit']}" in post
    assert f"GPUMD_TAG={gpumd['tag']}" in post
    assert f"GPUMD_REPO={gpumd['repo']}" in post
    for script in (_cf_run_text(build), _code(post)):
        assert 'git clone' in script and '"$GPUMD_REPO"' in script
        assert 'git checkout --detach "$GPUMD_COMMIT"' in script
        assert 'test "$(git rev-parse HEAD)" = "$GPUMD_COMMIT"' in script
        assert 'test "$(git rev-parse "${GPUMD_TAG}^{commit}")" = "$GPUMD_COMMIT"' in script
        for lib in gpumd["linked_libraries"]:
            assert lib in script  # the build checks that each linked library was collected
        assert "/opt/gpumd/bin/gpumd" in script and "/opt/gpumd/bin/nep" in script


BUILD_CALL = re.compile(r'MAKE_JOBS="\$MAKE_JOBS" bash /opt/src/build_gpumd\.sh /opt/src/GPUMD /opt/gpumd "\$CUDA_ARCHS"')


def test_gpumd_is_built_by_the_one_build_script(cf: list[Instruction], stages: list[DefStage]) -> None:
    """Both recipes copy scripts/build_gpumd.sh into the GPUMD stage and build with it, for the
    CUDA_ARCHS build argument; no recipe keeps its own copy of the compiler flags
    (tests/test_build_gpumd.py checks what the script does with them)."""
    build = cf_stage(cf, "gpumd")
    copies = [i.args.split() for i in build if i.keyword == "COPY"]
    assert ["scripts/build_gpumd.sh", "/opt/src/build_gpumd.sh"] in copies
    gpumd_def = _def_stage(stages, "gpumd")
    assert ("scripts/build_gpumd.sh", "/opt/src/build_gpumd.sh") in gpumd_def.files()
    for script in (_cf_run_text(build), _code(gpumd_def.body("post"))):
        assert len(BUILD_CALL.findall(script)) == 1
        assert "gencode" not in script.lower() and "CFLAGS" not in script
        # after the build: the repository and tag join the script's BUILD_INFO
        assert re.search(r"printf 'repo=%s\\ntag=%s\\n' \"\$GPUMD_REPO\" \"\$GPUMD_TAG\" "
                         r">> /opt/gpumd/share/BUILD_INFO", script)
        # built before the libraries it loads are collected
        assert script.index("build_gpumd.sh") < script.index("ldd /opt/gpumd/bin/gpumd")
    assert (ROOT / "scripts" / "build_gpumd.sh").is_file()


def test_cuda_arch_defaults_match_pins(cf: list[Instruction], stages: list[DefStage]) -> None:
    default = ",".join(PINS["cuda"]["archs"])
    assert cf_args(cf_stage(cf, None))["CUDA_ARCHS"] == default
    assert "CUDA_ARCHS" in cf_args(cf_stage(cf, "gpumd"))  # re-declared so the stage sees it
    for stage in stages:
        used = _placeholders("\n".join(b for n, _, b in stage.sections if n != "arguments"))
        defaults = stage.arguments()
        missing = used - set(defaults)
        assert not missing, f"stage {stage.header['stage']}: {missing} used without a %arguments default"
        if "CUDA_ARCHS" in defaults:
            assert defaults["CUDA_ARCHS"] == default
    assert "{{ CUDA_ARCHS }}" in _def_stage(stages, "gpumd").body("post")


def test_cuda13_pins_are_well_formed() -> None:
    cuda13 = PINS["cuda13"]
    toolkit, cuobjdump = cuda13["requirements"]
    extras = set(re.fullmatch(r"cuda-toolkit\[([a-z,]+)\]==(.+)", toolkit).group(1).split(","))
    assert {"nvcc", "crt", "nvvm", "cudart", "cccl", "cublas", "cusolver", "cufft", "curand"} <= extras
    assert toolkit.endswith(f"=={cuda13['version']}") and cuda13["version"].startswith("13.")
    assert re.fullmatch(r"nvidia-cuda-cuobjdump==13\.\d+\.\d+", cuobjdump)
    assert cuda13["archs"] and all(int(a) >= int(cuda13["min_arch"]) for a in cuda13["archs"])
    assert cuda13["min_driver"] == "580" and cuda13["min_arch"] == "75"


def _toolchain_case(script: str) -> str:
    """The `case "$CUDA_TOOLCHAIN" in ... esac` of a recipe's script, as one shell command."""
    match = re.search(r'case "\$CUDA_TOOLCHAIN" in.*?esac', script, flags=re.S)
    assert match, "no case over CUDA_TOOLCHAIN"
    return match.group(0)


def test_cuda13_toolchain_is_a_build_argument(cf: list[Instruction], stages: list[DefStage],
                                              tmp_path: Path) -> None:
    """CUDA_TOOLCHAIN=13.0 builds GPUMD with the CUDA 13 wheels `make gpumd` checks (pins.toml
    [cuda13], through scripts/cuda_wheels.py); the default stays the 12.6 devel image's nvcc. The
    recipes' own `case` runs here with a stand-in python3."""
    default = ".".join(PINS["cuda"]["version"].split(".")[:2])
    toolkit, cuobjdump = PINS["cuda13"]["requirements"]
    assert cf_args(cf_stage(cf, None))["CUDA_TOOLCHAIN"] == default
    build_cf = cf_stage(cf, "gpumd")
    args = {k: v.strip('"') for k, v in cf_args(build_cf).items()}
    assert "CUDA_TOOLCHAIN" in args and args["CUDA13_TOOLKIT"] == toolkit and args["CUDA13_CUOBJDUMP"] == cuobjdump
    assert ["scripts/cuda_wheels.py", "/opt/src/cuda_wheels.py"] in [i.args.split() for i in build_cf if i.keyword == "COPY"]
    gpumd_def = _def_stage(stages, "gpumd")
    assert gpumd_def.arguments()["CUDA_TOOLCHAIN"] == default
    assert _def_stage(stages, "final").arguments()["CUDA_TOOLCHAIN"] == default
    assert ("scripts/cuda_wheels.py", "/opt/src/cuda_wheels.py") in gpumd_def.files()
    post = _code(gpumd_def.body("post"))
    assert f'CUDA13_TOOLKIT="{toolkit}"' in post and f'CUDA13_CUOBJDUMP="{cuobjdump}"' in post
    log = tmp_path / "python3.args"
    stub = tmp_path / "python3"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\n')
    stub.chmod(0o755)
    for script in (_cf_run_text(build_cf), post):
        assert script.index(". /opt/cuda13/env.sh") < script.index("build_gpumd.sh")
        assert "opt\\/cuda13" in script  # the libraries are collected from the wheels too
        assert f"echo {PINS['cuda13']['min_driver']}; else echo {PINS['cuda']['min_driver']}" in script
        case = _toolchain_case(script).replace(". /opt/cuda13/env.sh", ":")
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "CUDA13_TOOLKIT": toolkit, "CUDA13_CUOBJDUMP": cuobjdump}
        for value, rc in ((default, 0), ("13.0", 0), ("12", 1)):
            log.unlink(missing_ok=True)
            out = subprocess.run(["sh", "-c", case], env={**env, "CUDA_TOOLCHAIN": value},
                                 capture_output=True, text=True)
            assert out.returncode == rc, out.stderr
            called = log.read_text().splitlines() if log.exists() else []
            assert called == (["/opt/src/cuda_wheels.py", "install", "/opt/cuda13", toolkit, cuobjdump]
                              if value == "13.0" else [])
            assert rc == 0 or "must be 12.6 or 13.0" in out.stderr


def test_cp2k_is_debian_bookworm_2023_1_in_the_final_stage(cf: list[Instruction],
                                                          stages: list[DefStage]) -> None:
    cp2k = PINS["cp2k"]
    pkg = cp2k["debian_package_version"]
    final_cf = cf_stage(cf, "runtime")
    final_def = _def_stage(stages, "final")
    assert final_def.header["from"] == PINS["runtime"]["base_image"] == "debian:bookworm-slim"
    for script in (_cf_run_text(final_cf), final_def.body("post")):
        assert f"cp2k={pkg}" in script and f"cp2k-data={pkg}" in script
        assert f'grep -q "CP2K version {cp2k["version"]}"' in script
        assert "openmpi-bin" in script


def test_both_install_requirements_then_nepbench(cf: list[Instruction], stages: list[DefStage]) -> None:
    req = PINS["python"]["requirements"]
    venv, src = PINS["python"]["venv"], PINS["python"]["source_dir"]
    py_cf = cf_stage(cf, "python")
    copies = [i.args.split() for i in py_cf if i.keyword == "COPY"]
    assert [req, f"{src}/{req}"] in copies
    py_def = _def_stage(stages, "python")
    assert (req, f"{src}/{req}") in py_def.files()
    for script in (_cf_run_text(py_cf), py_def.body("post")):
        assert f"python3 -m venv {venv}" in script
        assert f"{venv}/bin/pip install --no-cache-dir -r {src}/{req}" in script
        assert f"{venv}/bin/pip install --no-cache-dir --no-deps --no-build-isolation -e {src}" in script
        assert script.index(f"-r {src}/{req}") < script.index(f"-e {src}")


def test_final_stage_takes_binaries_venv_and_repo(cf: list[Instruction], stages: list[DefStage]) -> None:
    prefix = PINS["gpumd"]["install_prefix"]
    venv, src = PINS["python"]["venv"], PINS["python"]["source_dir"]
    copies = {tuple(i.args.split()) for i in cf_stage(cf, "runtime") if i.keyword == "COPY"}
    assert ("--from=gpumd", prefix, prefix) in copies
    assert ("--from=python", venv, venv) in copies
    assert ("--from=python", src, src) in copies
    final = _def_stage(stages, "final")
    assert (prefix, prefix) in final.files("gpumd")
    assert (venv, venv) in final.files("python") and (src, src) in final.files("python")
    host_cf = {(c[0], c[1]) for c in copies if not c[0].startswith("--from")}
    host_def = set(final.files()) | set(_def_stage(stages, "python").files())
    for path in ("suites", "reference_data", "models", "container"):
        assert (path, f"{src}/{path}") in host_cf and (path, f"{src}/{path}") in host_def
    for source, _ in host_cf | host_def:  # everything copied from the build context exists
        assert (ROOT / source).exists(), f"recipe copies {source}, which the repository lacks"


def _dockerignore_patterns() -> list[re.Pattern[str]]:
    """.dockerignore as regular expressions, by Docker's rules (moby/patternmatcher): paths from the
    context root, `*` within one path element, `**` across any number; no `!` exceptions used."""
    out = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "the test reads no exception patterns"
        regex, i, pat = "", 0, line.strip("/")
        while i < len(pat):
            if pat.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pat[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pat[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pat[i]), i + 1
        out.append(re.compile(regex))
    return out


def _docker_excludes(rel: str, patterns: list[re.Pattern[str]]) -> bool:
    """True when .dockerignore leaves `rel` out of the build context (it or a parent folder matches)."""
    parts = rel.split("/")
    return any(p.fullmatch("/".join(parts[:n])) for p in patterns for n in range(1, len(parts) + 1))


def test_dockerignore_keeps_everything_the_image_copies(cf: list[Instruction]) -> None:
    import json

    patterns = _dockerignore_patterns()
    for rel in (".venv/bin/python", ".git/HEAD", "reports/quick/report.html", "logs/a.log",
                "src/nepbench/__pycache__/cli.cpython-311.pyc", "reference_data/aimd/x/.segment-ab12/in.inp",
                "reference_data/aimd/x/.lock", "nepbench.sif"):
        assert _docker_excludes(rel, patterns), f".dockerignore keeps {rel}"
    sources = [c for i in cf if i.keyword == "COPY" and not i.args.startswith("--from")
               for c in i.args.split()[:-1]]
    kept = []
    for source in sources:
        path = ROOT / source
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        for file in files:
            rel = file.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or any(part.startswith(".") for part in rel.split("/")):
                continue  # caches, locks, unfinished segments: not part of what the image needs
            assert not _docker_excludes(rel, patterns), f".dockerignore drops {rel}, which the Containerfile copies"
            kept.append(rel)
    assert "container/entrypoint.sh" in kept and "scripts/build_gpumd.sh" in kept
    # every file the AIMD manifest lists (restart files included: `nepbench reference verify` checks them)
    manifest = json.loads((ROOT / "reference_data" / "aimd" / "manifest.json").read_text())
    for run_id, entry in manifest["runs"].items():
        for rel in entry["files"]:
            assert not _docker_excludes(f"reference_data/aimd/{run_id}/{rel}", patterns), rel


def test_apptainer_drops_what_dockerignore_keeps_out_of_reference_data(stages: list[DefStage], tmp_path: Path) -> None:
    """%files copies the working tree as it is, growers' locks and unfinished segments included:
    the final %post must leave the same reference_data as the Docker build context."""
    post = _def_stage(stages, "final").body("post")
    cleanup = "\n".join(line for line in _code(post).replace("\\\n", " ").splitlines()
                        if "/opt/nepbench/reference_data" in line)
    assert cleanup.count("find ") >= 2
    tree = tmp_path / "opt" / "nepbench" / "reference_data"
    files = ["aimd/.manifest.lock", "aimd/run/.lock", "aimd/run/.segment-ab12/in.inp", "aimd/run/state.json",
             "aimd/run/restart/step-000000010.restart", "aimd/manifest.json", "dft/cache/.ab12.lock",
             "dft/.assemble.lock", "dft/manifest.json", "dft/amorphous.extxyz.xz"]
    for rel in files:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("x")
    subprocess.run(["sh", "-ec", cleanup.replace("/opt/nepbench", str(tmp_path / "opt" / "nepbench"))], check=True)
    left = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    patterns = _dockerignore_patterns()
    assert left == sorted(rel for rel in files if not _docker_excludes(f"reference_data/{rel}", patterns))
    assert "aimd/run/restart/step-000000010.restart" in left and not (tree / "aimd/run/.segment-ab12").exists()


def test_model_fetched_and_selftest_run_at_build(cf: list[Instruction], stages: list[DefStage]) -> None:
    name = PINS["model"]["name"]
    runtime = _cf_run_text(cf_stage(cf, "runtime"))
    assert f"nepbench models fetch {name}" in runtime
    assert runtime.index(f"models fetch {name}") < runtime.index("nepbench selftest")
    final = _def_stage(stages, "final")
    assert f"nepbench models fetch {name}" in final.body("post")
    assert "selftest" in final.body("test")
    env_cf = " ".join(i.args for i in cf_stage(cf, "runtime") if i.keyword == "ENV")
    assert "NEPBENCH_CACHE=/opt/nepbench/cache" in env_cf
    assert "NEPBENCH_CACHE=/opt/nepbench/cache" in final.body("environment")
    assert "NEPBENCH_CACHE=/opt/nepbench/cache" in final.body("post")  # so %post fetches there


def expected_labels() -> dict[str, str]:
    return {
        "org.opencontainers.image.version": __version__,
        "org.nepbench.version": __version__,
        "org.nepbench.gpumd.repo": PINS["gpumd"]["repo"],
        "org.nepbench.gpumd.tag": PINS["gpumd"]["tag"],
        "org.nepbench.gpumd.commit": PINS["gpumd"]["commit"],
        "org.nepbench.cuda.devel_image": PINS["cuda"]["devel_image"],
        "org.nepbench.cuda.min_driver": PINS["cuda"]["min_driver"],
        "org.nepbench.runtime.base_image": PINS["runtime"]["base_image"],
        "org.nepbench.cp2k.version": PINS["cp2k"]["version"],
        "org.nepbench.cp2k.debian_package": PINS["cp2k"]["debian_package_version"],
        "org.nepbench.model.name": PINS["model"]["name"],
        "org.nepbench.model.sha256": PINS["model"]["sha256"],
        "org.nepbench.model.source_sha256": PINS["model"]["source_sha256"],
    }


def test_labels_carry_the_pins(cf: list[Instruction], stages: list[DefStage]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__
    cf_l = cf_labels(cf_stage(cf, "runtime"))
    def_l = _def_stage(stages, "final").labels()
    for key, value in expected_labels().items():
        assert cf_l.get(key) == value, f"Containerfile label {key}"
        assert def_l.get(key) == value, f"apptainer.def label {key}"
    assert cf_l["org.nepbench.cuda.archs"] == "${CUDA_ARCHS}"
    assert def_l["org.nepbench.cuda.archs"] == "{{ CUDA_ARCHS }}"
    assert "CUDA_ARCHS" in cf_args(cf_stage(cf, "runtime"))  # else the label would be empty
    assert cf_l["org.nepbench.cuda.toolchain"] == "${CUDA_TOOLCHAIN}"
    assert def_l["org.nepbench.cuda.toolchain"] == "{{ CUDA_TOOLCHAIN }}"
    assert "CUDA_TOOLCHAIN" in cf_args(cf_stage(cf, "runtime"))
    assert set(cf_l) - {"org.opencontainers.image.description"} == set(def_l)


def test_image_tag_names_what_is_inside() -> None:
    tag = PINS["image"]["tag"]
    assert tag.startswith(__version__ + "_")
    assert f"gpumd{PINS['gpumd']['tag'].lstrip('v')}" in tag
    assert f"cuda{'.'.join(PINS['cuda']['version'].split('.')[:2])}" in tag
    assert f"cp2k{PINS['cp2k']['version']}" in tag


# ------------------------------------------------------------------------------ apps and commands


def provided_commands(cf: list[Instruction], stages: list[DefStage]) -> set[str]:
    """Programs on the image's PATH, read from the recipes: the binaries scripts/build_gpumd.sh
    installs into <prefix>/bin when both GPUMD stages call it with the pinned prefix, CP2K's from
    its package, nepbench's console scripts."""
    prefix = PINS["gpumd"]["install_prefix"]
    builds = [_cf_run_text(cf_stage(cf, "gpumd")), _code(_def_stage(stages, "gpumd").body("post"))]
    programs: set[str] = set()
    if all(re.search(rf"build_gpumd\.sh \S+ {re.escape(prefix)} ", b) for b in builds):
        script = (ROOT / "scripts" / "build_gpumd.sh").read_text()
        programs = set(re.findall(r'install -D -m 0755 \S+ "\$prefix/bin/(\w+)"', script))
    final = _cf_run_text(cf_stage(cf, "runtime")) + _def_stage(stages, "final").body("post")
    if re.search(r"\bcp2k=", final):
        programs |= {"cp2k.psmp", "cp2k.popt", "cp2k"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    programs |= set(pyproject["project"]["scripts"])
    return programs


def apprun_program(body: str) -> str:
    """The program an %apprun body runs: NEPBENCH_EXEC=<prog> via the entrypoint, else nepbench
    via the entrypoint, else the first word after `exec`."""
    match = re.search(r"NEPBENCH_EXEC=(\S+)", body)
    if match:
        return match.group(1)
    if "container/entrypoint.sh" in body:
        return "nepbench"
    match = re.search(r"\bexec\s+(\S+)", body)
    assert match, f"%apprun body runs nothing: {body!r}"
    return match.group(1)


def test_every_apprun_names_a_program_the_image_provides(cf: list[Instruction],
                                                         stages: list[DefStage]) -> None:
    provided = provided_commands(cf, stages)
    assert {"gpumd", "nep", "cp2k.psmp", "nepbench"} <= provided
    final = _def_stage(stages, "final")
    apps = {argument: body for name, argument, body in final.sections if name == "apprun"}
    assert set(apps) == {"gpumd", "nep", "cp2k", "nepbench"}
    for app, body in apps.items():
        program = apprun_program(body)
        assert program in provided, f"%apprun {app} runs {program}, which the image does not provide"
    path_cf = " ".join(i.args for i in cf_stage(cf, "runtime") if i.keyword == "ENV")
    for text in (path_cf, final.body("environment")):
        assert f"{PINS['python']['venv']}/bin" in text and f"{PINS['gpumd']['install_prefix']}/bin" in text


def parse_nepbench(argv: list[str]):
    """Parse a nepbench command line with the real CLI; fail the test with argparse's message."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`nepbench {' '.join(argv)}` does not parse (exit {exc.code})")


def _entrypoint_default(text: str) -> list[str]:
    """The entrypoint's default command line (its no-argument job), with "$OUT" as /results."""
    match = re.search(r"set -- (.+)", _code(text))
    assert match, "the entrypoint sets no default command"
    return shlex.split(match.group(1).replace('"$OUT"', "/results"))


def test_default_command_is_the_paper_suite(cf: list[Instruction], stages: list[DefStage]) -> None:
    """Both images run the entrypoint with no arguments by default; its default job is the paper
    suite (what it does is run for real in the entrypoint tests below)."""
    assert cf_exec_form(cf, "ENTRYPOINT") == [f"{IMAGE_ROOT}/container/entrypoint.sh"]
    assert cf_exec_form(cf, "CMD") == []
    runscript = _code(_def_stage(stages, "final").body("runscript"))
    assert runscript.strip() == 'exec /opt/nepbench/container/entrypoint.sh "$@"'
    default = _entrypoint_default(ENTRYPOINT.read_text())
    args = parse_nepbench(default)
    assert args.command == "run" and args.out == "/results"
    suite = ROOT / Path(args.suite).relative_to(IMAGE_ROOT)
    assert suite.is_file(), f"default suite {args.suite} is not in the repository ({suite})"
    assert suite.name == "paper.toml"


def _nepbench_invocations(script: str) -> list[list[str]]:
    """Every `nepbench ...` command line in a shell script, $VARS replaced by placeholders."""
    joined = re.sub(r"\\\n\s*", " ", script)
    found = []
    for line in joined.splitlines():
        code = line.split(" #", 1)[0].strip()
        if code.startswith("#"):
            continue
        for match in re.finditer(r'(?:^|[\s(])(?:nepbench|"?\$\{?NEPBENCH\}?"?)\s+(.*)', code):
            rest = re.split(r"\s(?:\|\||&&|\||;|>|2>|<)|\)\s*$|\)\"?$", match.group(1))[0]
            rest = re.sub(r'"\$\{?[A-Za-z_][A-Za-z_0-9]*\[@\]\}?"', "DIR", rest)
            rest = re.sub(r"\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z_0-9]*", "1", rest)
            found.append(shlex.split(rest))
    return found


def test_slurm_examples_are_valid_bash_and_use_real_cli_options() -> None:
    names = {p.name for p in SLURM}
    assert {"run_suite_array.sbatch", "cp2k_reference.sbatch", "merge.sbatch"} <= names
    assert (ROOT / "examples" / "slurm" / "README.md").is_file()
    seen = set()
    for path in SLURM:
        subprocess.run(["bash", "-n", str(path)], check=True)
        text = path.read_text()
        assert text.startswith("#!/bin/bash"), path.name
        assert "#SBATCH" in text and "set -euo pipefail" in text, path.name
        invocations = _nepbench_invocations(text)
        assert invocations, f"{path.name} runs no nepbench command"
        for argv in invocations:
            args = parse_nepbench(argv)
            seen.add((path.name, args.command))
    assert ("run_suite_array.sbatch", "run") in seen
    assert ("cp2k_reference.sbatch", "reference") in seen
    assert ("cp2k_aimd.sbatch", "reference") in seen
    assert ("merge.sbatch", "report") in seen


def test_the_merge_job_verifies_the_run_folders_strictly() -> None:
    """`verify` needs a run folder (suite.json, tasks/): the merged report folder has neither, so
    verifying it always exited 2; and a GPU task skipped for want of a visible GPU must not pass."""
    text = (ROOT / "examples" / "slurm" / "merge.sbatch").read_text()
    calls = [parse_nepbench(a) for a in _nepbench_invocations(text)]
    verifies = [c for c in calls if c.command == "verify"]
    report = next(c for c in calls if c.command == "report")
    assert verifies and all(c.strict for c in verifies)
    assert all(c.run_dirs == report.run_dirs for c in verifies)  # the folders the report merged


def test_slurm_array_runs_one_task_per_element() -> None:
    text = (ROOT / "examples" / "slurm" / "run_suite_array.sbatch").read_text()
    calls = [parse_nepbench(a) for a in _nepbench_invocations(text)]
    assert any(c.command == "run" and c.list_tasks for c in calls)
    runs = [c for c in calls if c.command == "run" and not c.list_tasks]
    assert runs and all(c.task and len(c.task) == 1 and c.out for c in runs)
    assert "apptainer run --nv" in text and "SLURM_ARRAY_TASK_ID" in text


def test_slurm_reference_uses_srun_launcher() -> None:
    text = (ROOT / "examples" / "slurm" / "cp2k_reference.sbatch").read_text()
    calls = [parse_nepbench(a) for a in _nepbench_invocations(text)]
    builds = [c for c in calls if c.command == "reference" and c.reference_command == "build"]
    assert builds and all(c.launcher == "srun" for c in builds)


def test_slurm_aimd_grows_one_run_per_element_with_srun_and_a_time_limit() -> None:
    text = (ROOT / "examples" / "slurm" / "cp2k_aimd.sbatch").read_text()
    calls = [parse_nepbench(a) for a in _nepbench_invocations(text)]
    grows = [c for c in calls if c.command == "reference" and c.reference_command == "aimd"]
    assert grows and all(c.launcher == "srun" and c.run and len(c.run) == 1 and c.max_minutes for c in grows)
    assert "SLURM_ARRAY_TASK_ID" in text


def test_cp2k_batch_scripts_source_the_shim_from_the_submit_folder() -> None:
    """sbatch runs a spooled copy of a script, so a path beside `$0` would not exist."""
    shim = ROOT / "examples" / "slurm" / "cp2k_shim.sh"
    subprocess.run(["bash", "-n", str(shim)], check=True)
    for name in ("cp2k_reference.sbatch", "cp2k_aimd.sbatch"):
        text = (ROOT / "examples" / "slurm" / name).read_text()
        assert 'source "${SLURM_SUBMIT_DIR:-$PWD}/examples/slurm/cp2k_shim.sh"' in text, name
        assert "dirname \"$0\"" not in text, name


def test_cp2k_shim_puts_the_image_cp2k_first_on_path(tmp_path) -> None:
    shim = ROOT / "examples" / "slurm" / "cp2k_shim.sh"
    script = f'IMAGE=/images/nepbench.sif; SLURM_JOB_ID=42; source "{shim}"; command -v cp2k.psmp; echo "$TMPDIR"'
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    found, tmpdir = out.stdout.split()
    assert found == f"{tmp_path}/.cp2k_scratch/42/bin/cp2k.psmp" and tmpdir == f"{tmp_path}/.cp2k_scratch/42"
    body = Path(found).read_text()
    assert f'apptainer exec --bind "{tmp_path}" "/images/nepbench.sif" cp2k.psmp "$@"' in body
    assert os.access(found, os.X_OK)


# ------------------------------------------------------------------------------ entrypoint


def test_entrypoint_is_executable_and_sets_what_the_codes_need() -> None:
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh")
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    for var in ("OMP_STACKSIZE", "OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"):
        assert re.search(rf"export {var}=", text), var
    assert re.search(r"ulimit -s unlimited .*\|\| true", text)
    assert 'exec nepbench "$@"' in text


def _run_entrypoint(tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> dict[str, str]:
    """Run the entrypoint with stub `nepbench`/`gpumd` programs that print argv and environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("nepbench", "gpumd"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "PROG={name}"\necho "ARGS=$*"\necho "STACK=$(ulimit -s)"\nenv\n')
        stub.chmod(0o755)
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, check=True,
                         env={**base, **(env or {})}).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_entrypoint_runs_nepbench_with_the_environment(tmp_path: Path) -> None:
    got = _run_entrypoint(tmp_path, ["run", "suite.toml", "--out", "/results"])
    assert got["PROG"] == "nepbench" and got["ARGS"] == "run suite.toml --out /results"
    assert got["OMP_STACKSIZE"] and got["OMPI_ALLOW_RUN_AS_ROOT"] == "1"
    assert got["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    assert got["MPLCONFIGDIR"]


def test_entrypoint_drops_a_leading_nepbench_and_keeps_user_values(tmp_path: Path) -> None:
    got = _run_entrypoint(tmp_path, ["nepbench", "selftest"], env={"OMP_STACKSIZE": "64M"})
    assert got["ARGS"] == "selftest" and got["OMP_STACKSIZE"] == "64M"


def test_entrypoint_runs_another_program_for_the_apps(tmp_path: Path) -> None:
    got = _run_entrypoint(tmp_path, ["-h"], env={"NEPBENCH_EXEC": "gpumd"})
    assert got["PROG"] == "gpumd" and got["ARGS"] == "-h" and got["OMPI_ALLOW_RUN_AS_ROOT"] == "1"


def test_entrypoint_survives_a_hard_stack_limit(tmp_path: Path) -> None:
    """`ulimit -s unlimited` fails under a finite hard limit; the entrypoint must carry on."""
    script = f'ulimit -Hs 65536 && ulimit -Ss 8192 && exec sh {shlex.quote(str(ENTRYPOINT))} selftest'
    bin_dir = tmp_path / "bin"
    _run_entrypoint(tmp_path, ["x"])  # creates the stubs
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "ARGS=selftest" in out.stdout


GPU_LINE = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
NO_GPU_MESSAGE = ("nepbench: no GPU visible: run with --nv (apptainer) or --gpus all (docker); "
                  "set NEPBENCH_ALLOW_NO_GPU=1 to run the CPU parts anyway")


@dataclass
class Launch:
    rc: int
    stdout: str
    stderr: str

    def got(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.stdout.splitlines() if "=" in line)


def _launcher(tmp_path: Path, how: str, mount: Path) -> Path:
    """The entrypoint (how="entrypoint") or apptainer.def's %runscript (how="runscript", run by
    /bin/sh as Apptainer does, calling the entrypoint) as a script in tmp_path, with the image's
    /results mount point replaced by `mount` (a test cannot create /results)."""
    entry = re.sub(r"(?<![\w$}])/results\b", str(mount), ENTRYPOINT.read_text())
    assert entry != ENTRYPOINT.read_text(), "the entrypoint no longer names /results"
    entry_path = tmp_path / "entrypoint.sh"
    entry_path.write_text(entry)
    if how == "entrypoint":
        return entry_path
    body = _def_stage(parse_deffile(DEFFILE.read_text()), "final").body("runscript")
    assert "/opt/nepbench/container/entrypoint.sh" in body
    runscript = tmp_path / "runscript.sh"
    runscript.write_text("#!/bin/sh\n" + body.replace("/opt/nepbench/container/entrypoint.sh",
                                                            f"{shutil.which('sh')} {entry_path}"))
    return runscript


def _launch(tmp_path: Path, how: str, args: list[str], gpu: str | None, rc: int = 0,
            mount: Path | None = None, env: dict[str, str] | None = None, bound: bool = True) -> Launch:
    """Run the launcher in tmp_path/work with stubs on a PATH that holds nothing else of note: a
    `nepbench` printing its arguments and exiting `rc`; an `nvidia-smi` listing `gpu` (None: no
    nvidia-smi at all, "": one that finds no device and fails, as it does without --nv). `bound`:
    the mount table lists `mount` as a mount point (a host folder bound there)."""
    bin_dir, tools = tmp_path / "bin", tmp_path / "tools"
    bin_dir.mkdir(exist_ok=True)
    tools.mkdir(exist_ok=True)
    for tool in ("grep", "id", "env", "awk"):
        if not (tools / tool).exists():
            (tools / tool).symlink_to(shutil.which(tool))
    stub = bin_dir / "nepbench"  # the default job's pre-check exits $PRECHECK_RC (default 0)
    stub.write_text(f'#!/bin/sh\necho "PROG=nepbench"\necho "ARGS=$*"\necho "CWD=$PWD"\n'
                    f'[ "$*" = "selftest --skip-cp2k" ] && exit "${{PRECHECK_RC:-0}}"\nexit {rc}\n')
    stub.chmod(0o755)
    smi = bin_dir / "nvidia-smi"
    smi.unlink(missing_ok=True)
    if gpu is not None:
        smi.write_text(f'#!/bin/sh\necho "{gpu}"\nexit 0\n' if gpu else
                       '#!/bin/sh\necho "No devices were found"\nexit 6\n')
        smi.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    script = _launcher(tmp_path, how, mount or tmp_path / "no-such-mount")
    mountinfo = tmp_path / "mountinfo"  # /proc/self/mountinfo's layout: field 5 is the mount point
    mountinfo.write_text(f"36 35 98:0 /srv/results {mount or tmp_path / 'no-such-mount'} rw,noatime master:1 - ext4 /dev/root rw\n"
                         if bound else "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n")
    base = {"PATH": f"{bin_dir}:{tools}", "HOME": str(tmp_path), "PWD": str(work), "NEPBENCH_MOUNTINFO": str(mountinfo)}
    out = subprocess.run([shutil.which("sh"), str(script), *args], cwd=work, capture_output=True, text=True,
                         env={**base, **(env or {})}, timeout=60)
    return Launch(out.returncode, out.stdout, out.stderr)


PAPER = "run /opt/nepbench/suites/paper.toml --out"


@pytest.mark.parametrize("how", ["entrypoint", "runscript"])
def test_default_job_writes_to_a_bound_results_folder_else_to_dot_results(tmp_path: Path, how: str) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    bound = _launch(tmp_path, how, [], GPU_LINE, mount=mount)
    assert bound.rc == 0, bound.stderr
    assert bound.got()["ARGS"] == f"{PAPER} {mount}"
    unbound = _launch(tmp_path, how, [], GPU_LINE, mount=tmp_path / "absent")
    assert unbound.rc == 0, unbound.stderr
    assert unbound.got()["ARGS"] == f"{PAPER} {tmp_path / 'work' / 'results'}"


@pytest.mark.parametrize("how", ["entrypoint", "runscript"])
def test_default_job_refuses_a_writable_results_folder_that_is_no_mount(tmp_path: Path, how: str) -> None:
    """docker run without -v: /results is the container's own layer, and hours of results would
    be lost with the container (--rm deletes them at once)."""
    mount = tmp_path / "mount"
    mount.mkdir()
    got = _launch(tmp_path, how, [], GPU_LINE, mount=mount, bound=False)
    assert got.rc == 2 and "PROG=nepbench" not in got.stdout
    assert got.stderr.strip() == (f"nepbench: {mount} is not bound to a host folder: the results would stay inside "
                                  "the container and be lost with it; run with -v DIR:"
                                  f"{mount} (docker) or --bind DIR:{mount} (apptainer)")


@pytest.mark.parametrize("how", ["entrypoint", "runscript"])
def test_default_job_runs_the_selftest_first_and_stops_when_it_fails(tmp_path: Path, how: str) -> None:
    """A GPUMD build the GPU or driver cannot run failed only at the throughput task, hours in."""
    mount = tmp_path / "mount"
    mount.mkdir()
    ok = _launch(tmp_path, how, [], GPU_LINE, mount=mount)
    assert re.findall(r"^ARGS=(.*)$", ok.stdout, flags=re.M) == ["selftest --skip-cp2k", f"{PAPER} {mount}"]
    failed = _launch(tmp_path, how, [], GPU_LINE, mount=mount, env={"PRECHECK_RC": "1"})
    assert failed.rc == 2 and re.findall(r"^ARGS=(.*)$", failed.stdout, flags=re.M) == ["selftest --skip-cp2k"]
    assert "nepbench: the selftest failed (above): not starting the paper suite" in failed.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only folder")
def test_default_job_skips_a_read_only_results_folder(tmp_path: Path) -> None:
    """/results exists read-only in the Apptainer image when nothing is bound there."""
    mount = tmp_path / "mount"
    mount.mkdir()
    mount.chmod(0o555)
    try:
        got = _launch(tmp_path, "entrypoint", [], GPU_LINE, mount=mount)
    finally:
        mount.chmod(0o755)
    assert got.got()["ARGS"] == f"{PAPER} {tmp_path / 'work' / 'results'}"


@pytest.mark.parametrize("how", ["entrypoint", "runscript"])
@pytest.mark.parametrize("args", [[], ["selftest"], ["nepbench", "verify", "--strict", "results"]])
def test_nepbench_exit_status_comes_back(tmp_path: Path, how: str, args: list[str]) -> None:
    for rc in (0, 1, 3):
        got = _launch(tmp_path, how, args, GPU_LINE, rc=rc)
        assert got.rc == rc and got.got()["PROG"] == "nepbench", got.stderr


@pytest.mark.parametrize("how", ["entrypoint", "runscript"])
@pytest.mark.parametrize("gpu", [None, ""], ids=["no-nvidia-smi", "no-device"])
def test_default_job_refuses_without_a_gpu(tmp_path: Path, how: str, gpu: str | None) -> None:
    got = _launch(tmp_path, how, [], gpu)
    assert got.rc == 2 and "PROG=" not in got.stdout  # nepbench never started
    assert got.stderr.strip() == NO_GPU_MESSAGE
    allowed = _launch(tmp_path, how, [], gpu, env={"NEPBENCH_ALLOW_NO_GPU": "1"})
    assert allowed.rc == 0 and allowed.got()["ARGS"].startswith(PAPER), allowed.stderr


@pytest.mark.parametrize("how", ["entrypoint", "runscript"])
def test_explicit_commands_run_without_a_gpu(tmp_path: Path, how: str) -> None:
    for args, expected in ((["selftest"], "selftest"), (["nepbench", "selftest"], "selftest"),
                           (["run", "/opt/nepbench/suites/quick.toml", "--out", "results/quick"],
                            "run /opt/nepbench/suites/quick.toml --out results/quick")):
        got = _launch(tmp_path, how, args, None, rc=0)
        assert got.rc == 0 and got.got()["ARGS"] == expected, got.stderr


def test_apprun_nepbench_without_arguments_is_nepbench_not_the_default_job(tmp_path: Path) -> None:
    body = _def_stage(parse_deffile(DEFFILE.read_text()), "final").body("apprun", "nepbench")
    argv = shlex.split(_code(body).strip())
    assert argv[:2] == ["exec", "/opt/nepbench/container/entrypoint.sh"] and argv[-1] == "$@"
    fixed = argv[2:-1]  # what the app passes before the user's arguments
    for user in ([], ["nepbench", "models", "list"], ["models", "list"]):
        got = _launch(tmp_path, "entrypoint", fixed + user, None)
        assert got.rc == 0 and got.got()["ARGS"] == " ".join(a for a in user if a != "nepbench"), got.stderr


@pytest.mark.parametrize("gpu", [None, "", GPU_LINE], ids=["no-nvidia-smi", "no-device", "gpu"])
def test_gpu_check_needs_a_gpu_and_verifies_strictly(tmp_path: Path, gpu: str | None) -> None:
    """scripts/gpu_check.sh with stub programs: no GPU is a stop before any step (every step would
    skip and pass); with one, the suite run is judged by `verify --strict`."""
    bin_dir, tools = tmp_path / "bin", tmp_path / "tools"
    bin_dir.mkdir()
    tools.mkdir()
    for tool in ("grep", "dirname", "date", "bash"):
        (tools / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "calls.log"
    for name in ("nepbench", "gpumd", "python3"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {shlex.quote(str(log))}\n')
        stub.chmod(0o755)
    if gpu is not None:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f'#!/bin/sh\necho "{gpu}"\n' if gpu else '#!/bin/sh\necho "No devices were found"\nexit 6\n')
        smi.chmod(0o755)
    out = subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": f"{bin_dir}:{tools}", "HOME": str(tmp_path)})
    calls = log.read_text().splitlines() if log.exists() else []
    if gpu != GPU_LINE:
        assert out.returncode == 2 and "no GPU visible" in out.stderr and calls == [], (out.stderr, calls)
        return
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"nepbench verify --strict {tmp_path / 'out'}" in calls, calls
    assert any(c.startswith("nepbench run suites/gpu-check.toml") for c in calls)
    # failed steps (all four here) exit 1, not their count: 2 means "cannot run here" (no GPU, no gpumd)
    for name in ("nepbench", "python3"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 1\n")
    failed = subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{bin_dir}:{tools}", "HOME": str(tmp_path)})
    assert failed.returncode == 1 and "== done: 4 step(s) failed" in failed.stdout, failed.stdout


def test_docs_explain_build_run_and_verification() -> None:
    doc = (ROOT / "docs" / "container.md").read_text()
    for needle in ("docker build", "podman build", "apptainer build --build-arg CUDA_ARCHS=",
                   "apptainer run --nv --bind", "--app gpumd", "apptainer test", PINS["gpumd"]["commit"],
                   "git rev-parse HEAD", PINS["cp2k"]["version"], "prediction", "verify --strict",
                   "NEPBENCH_ALLOW_NO_GPU", "mkdir -p results"):
        assert needle in doc, f"docs/container.md lacks {needle!r}"
    # the files whose contents each record's provenance carries (provenance.container_info)
    from nepbench import provenance

    assert str(provenance.GPUMD_BUILD_INFO) == f"{PINS['gpumd']['install_prefix']}/share/BUILD_INFO"
    for path in (provenance.APPTAINER_LABELS, provenance.GPUMD_BUILD_INFO):
        assert str(path) in doc, f"docs/container.md does not say that records carry {path}"
    # the documented gate is the strict one, in the README as in docs/container.md
    readme = (ROOT / "README.md").read_text()
    for text in (doc, readme):
        gates = re.findall(r"nepbench\.sif(?: nepbench)? verify [^`\n]*", text)
        assert gates and all("--strict" in g for g in gates), gates
    assert os.path.exists(ROOT / "examples" / "slurm" / "README.md")
