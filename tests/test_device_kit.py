"""`make gpumd` and `make device-kit` (docs/gpumd.md): the CUDA 13 wheels' link folder, the GPUMD
build checks and the offline GPU check kit's script, run for real on stand-ins (a fake wheel
layout, stub ldd/cuobjdump/gpumd/nvidia-smi). What needs the CUDA wheels, the compile or a built
kit is marked slow and skipped, with the reason, where `make gpumd` / `make device-kit` has not run
(CI never runs them: ~1.7 GB of wheels and minutes of nvcc)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PINS = tomllib.loads((ROOT / "pins.toml").read_text())
KIT_SCRIPT = ROOT / "kit" / "run_gpu_check.sh"
CHECK = ROOT / "scripts" / "check_gpumd.sh"
CUDA_PREFIX = ROOT / "third_party" / "cuda13"
GPUMD_PREFIX = ROOT / "third_party" / "gpumd-cuda13"
KIT = ROOT / "dist" / "device-kit"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tool(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _fake_site(site: Path) -> None:
    """The layout NVIDIA's CUDA 13 wheels install: versioned names only, in nvidia/<pkg>/lib."""
    for rel in ("nvidia/cu13/lib/libcublas.so.13", "nvidia/cu13/lib/libcublasLt.so.13",
                "nvidia/cu13/lib/libcufft.so.12", "nvidia/cu13/lib/libnvJitLink.so.13.0.88",
                "nvidia/cu13/lib/libnvJitLink.so.13", "nvidia/cu13/lib/README", "nvidia/cu13/bin/nvcc",
                "nvidia/cu13/include/cublas_v2.h", "nvidia/extra/lib64/libcurand.so.10",
                "nvidia/cu13/lib/libcudart_static.a"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(rel)


# ------------------------------------------------------------------------------ pins and Makefile


def test_make_gpumd_reads_its_toolchain_from_pins() -> None:
    reqs = _script("cuda_wheels").pinned_requirements(ROOT / "pins.toml")
    assert reqs == PINS["cuda13"]["requirements"]
    assert reqs[0].startswith("cuda-toolkit[") and reqs[0].endswith("==13.0.2")
    assert any(r.startswith("nvidia-cuda-cuobjdump==") for r in reqs)


def test_makefile_targets_run_the_scripts() -> None:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "gpumd", "GPUMD_SRC=/src/GPUMD"],
                         capture_output=True, text=True, check=True).stdout
    assert 'GPUMD_SRC="/src/GPUMD"' in out and "./scripts/make_gpumd.sh" in out
    makefile = (ROOT / "Makefile").read_text()
    assert 'device-kit: gpumd model\n\tGPUMD_SRC="$(GPUMD_SRC)" $(BIN)/python scripts/device_kit.py\n' in makefile


def test_built_folders_are_ignored_by_git() -> None:
    paths = ["third_party/cuda13/site/x", "third_party/gpumd-cuda13/bin/gpumd", "dist/device-kit/KIT.json",
             "build/kit-wheels/calorine-4.1-cp312-cp312-linux_x86_64.whl"]
    out = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *paths], capture_output=True, text=True)
    assert out.stdout.split() == paths


def test_the_kit_carries_no_wheel_of_what_the_node_has() -> None:
    kit = _script("device_kit")
    provided = kit.names_file(ROOT / "kit" / "node-provides.txt")
    assert {"numpy", "scipy", "pandas", "matplotlib", "scikit-learn", "pytest"} <= provided
    assert not provided & {kit.canonical(n) for n in kit.KIT_PACKAGES}
    pins = kit.pinned_versions(ROOT / "requirements.txt")
    assert all(kit.canonical(n) in pins for n in kit.KIT_PACKAGES), "every kit package is pinned"


def test_wheel_requirements_leave_out_extras(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo-1.0.dist-info/METADATA", "Name: demo\nRequires-Dist: numpy>=1.2\n"
                    "Requires-Dist: Typing_Extensions (>=4)\nRequires-Dist: sphinx; extra == \"docs\"\n"
                    "Requires-Dist: pandas[all]>=2; python_version >= \"3.9\"\n"
                    "Requires-Dist: colorama; platform_system == \"Windows\"\n")
    assert _script("device_kit").wheel_requirements(wheel) == ["numpy", "typing-extensions", "pandas"]


# ------------------------------------------------------------------------------ cuda_wheels.py


def test_links_make_unversioned_names_from_a_fake_wheel_layout(tmp_path: Path) -> None:
    site, dest = tmp_path / "site", tmp_path / "lib"
    _fake_site(site)
    (dest).mkdir()
    (dest / "libstale.so").symlink_to(tmp_path / "gone.so.1")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "cuda_wheels.py"), "links", str(site), str(dest)],
                         capture_output=True, text=True, check=True)
    links = {p.name: p.resolve() for p in dest.iterdir()}
    lib = site / "nvidia" / "cu13" / "lib"
    assert links == {"libcublas.so": lib / "libcublas.so.13", "libcublasLt.so": lib / "libcublasLt.so.13",
                     "libcufft.so": lib / "libcufft.so.12", "libnvJitLink.so": lib / "libnvJitLink.so.13",
                     "libcurand.so": site / "nvidia" / "extra" / "lib64" / "libcurand.so.10",
                     "libcudart_static.a": lib / "libcudart_static.a"}
    assert all((dest / name).is_symlink() for name in links)
    assert f"{dest / 'libcublas.so'} -> {lib / 'libcublas.so.13'}" in out.stdout
    empty = subprocess.run([sys.executable, str(ROOT / "scripts" / "cuda_wheels.py"), "links",
                            str(tmp_path / "nothing"), str(tmp_path / "lib2")], capture_output=True, text=True)
    assert empty.returncode == 2 and "no nvidia/*/lib" in empty.stderr


def _fake_cuda_wheel(folder: Path) -> Path:
    """A wheel that installs a fake nvidia/cu13 tree (nvcc and libcublas.so.13)."""
    wheel = folder / "fake_cuda-13.0-py3-none-any.whl"
    files = {"nvidia/cu13/bin/nvcc": "#!/bin/sh\necho 'Build cuda_13.0.fake'\n",
             "nvidia/cu13/lib/libcublas.so.13": "not a library\n"}
    meta = {"fake_cuda-13.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: fake-cuda\nVersion: 13.0\n",
            "fake_cuda-13.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in {**files, **meta}.items():
            zf.writestr(name, text)
        zf.writestr("fake_cuda-13.0.dist-info/RECORD", "".join(f"{n},,\n" for n in [*files, *meta])
                    + "fake_cuda-13.0.dist-info/RECORD,,\n")
    return wheel


def test_install_links_and_writes_env_sh_once(tmp_path: Path) -> None:
    """`install` with a local wheel (pip, no index): links, env.sh whose nvcc comes first on PATH,
    -L through NVCC_APPEND_FLAGS, LD_LIBRARY_PATH; the second call installs nothing."""
    wheel = _fake_cuda_wheel(tmp_path)
    prefix = tmp_path / "cuda13"
    command = [sys.executable, str(ROOT / "scripts" / "cuda_wheels.py"), "install", str(prefix), str(wheel)]
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (prefix / "lib" / "libcublas.so").resolve() == prefix / "site" / "nvidia" / "cu13" / "lib" / "libcublas.so.13"
    shown = subprocess.run(["bash", "-c", f'. {prefix}/env.sh && command -v nvcc && echo "$NVCC_APPEND_FLAGS" '
                                          '&& echo "$LD_LIBRARY_PATH"'],
                           capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin",
                                                                             "LD_LIBRARY_PATH": "/x"})
    assert shown.stdout.splitlines() == [str(prefix / "site" / "nvidia" / "cu13" / "bin" / "nvcc"),
                                         f"-L{prefix / 'lib'}", f"{prefix / 'site' / 'nvidia' / 'cu13' / 'lib'}:/x"]
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0 and "already holds" in again.stdout


# ------------------------------------------------------------------------------ check_gpumd.sh


#: What the real sm_90 build prints without a GPU (and without libcuda), then exit 1.
NO_GPU = ('echo "GPU information:"\necho "----"\necho "CUDA Error:"\necho "    Error code: 35"\n'
          'echo "    Error text: CUDA driver version is insufficient for CUDA runtime version"\nexit 1\n')


def _fake_build(tmp_path: Path, gpumd_body: str = NO_GPU,
                ldd_missing: bool = False, cubins: str = "sm_90") -> tuple[Path, dict[str, str]]:
    prefix = tmp_path / "gpumd"
    _tool(prefix / "bin", "gpumd", gpumd_body)
    _tool(prefix / "bin", "nep", "exit 0\n")
    (prefix / "share").mkdir()
    (prefix / "share" / "BUILD_INFO").write_text("commit=x\ncuda_archs=90\nnvcc=13.0\n")
    tools = tmp_path / "tools"
    lines = ["libcufft.so.12 => /x/libcufft.so.12 (0x1)", "libc.so.6 => /lib/libc.so.6 (0x2)"]
    lines += ["libcublas.so.13 => not found"] if ldd_missing else []
    _tool(tools, "ldd", "".join(f'printf "\\t%s\\n" "{line}"\n' for line in lines))
    _tool(tools, "cuobjdump", f'echo "ELF file    1: $(basename "$2").1.{cubins}.cubin"\n')
    for name in ("grep", "awk", "sed", "sort", "paste", "mktemp", "timeout", "rm", "tail", "basename", "dirname"):
        (tools / name).symlink_to(shutil.which(name))
    return prefix, {"PATH": str(tools), "HOME": str(tmp_path)}


def _check(prefix: Path, env: dict[str, str], *archs: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(CHECK), str(prefix), *archs], capture_output=True,
                          text=True, env=env, timeout=60)


def test_check_passes_a_build_that_fails_cleanly_without_a_gpu(tmp_path: Path) -> None:
    prefix, env = _fake_build(tmp_path)
    out = _check(prefix, env)
    assert out.returncode == 0, out.stdout
    assert "ok      cuobjdump gpumd: sm_90" in out.stdout
    assert ("ended cleanly (exit 1): Error text: CUDA driver version is insufficient for CUDA runtime version"
            in out.stdout)


@pytest.mark.parametrize("fault, expected", [
    ({"ldd_missing": True}, "FAILED  ldd gpumd: libcublas.so.13 not found"),
    ({"cubins": "sm_80"}, "FAILED  cuobjdump gpumd: no sm_90 cubin (lists: sm_80)"),
    ({"gpumd_body": "kill -SEGV $$\n"}, "FAILED  gpumd in an empty folder: killed or crashed (exit 139)"),
])
def test_check_fails_what_would_not_run(tmp_path: Path, fault: dict, expected: str) -> None:
    prefix, env = _fake_build(tmp_path, **fault)
    out = _check(prefix, env)
    assert out.returncode == 1 and expected in out.stdout, out.stdout


def test_check_requires_cuobjdump_when_asked(tmp_path: Path) -> None:
    prefix, env = _fake_build(tmp_path)
    (Path(env["PATH"]) / "cuobjdump").unlink()
    assert _check(prefix, env).returncode == 0
    strict = _check(prefix, {**env, "CHECK_CUOBJDUMP": "1"})
    assert strict.returncode == 1 and "cuobjdump is not on PATH" in strict.stdout
    assert _check(tmp_path / "nowhere", env).returncode == 2


# ------------------------------------------------------------------------------ the kit's script


@pytest.mark.parametrize("smi", [None, 'echo "No devices were found"; exit 6', 'echo "NVIDIA-SMI ok"'],
                         ids=["no-nvidia-smi", "failing", "lists-none"])
def test_kit_stops_at_once_without_a_gpu(tmp_path: Path, smi: str | None) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("grep", "dirname", "date", "mkdir", "python3"):
        (tools / name).symlink_to(shutil.which(name))
    if smi is not None:
        _tool(tools, "nvidia-smi", smi + "\n")
    start = time.monotonic()
    out = subprocess.run([shutil.which("bash"), str(KIT_SCRIPT), "--out", str(tmp_path / "out")], cwd=tmp_path,
                         capture_output=True, text=True, env={"PATH": str(tools), "HOME": str(tmp_path)}, timeout=30)
    assert out.returncode == 2 and time.monotonic() - start < 10
    assert out.stderr.splitlines() == ["run_gpu_check: no GPU visible (nvidia-smi missing or lists none): "
                                       "run it on a GPU node, or with --dry-run"]
    assert out.stdout == "" and not (tmp_path / "out").exists()


def test_kit_dry_run_refuses_a_folder_that_is_no_kit(tmp_path: Path) -> None:
    script = tmp_path / "run_gpu_check.sh"
    shutil.copy2(KIT_SCRIPT, script)
    out = subprocess.run(["bash", str(script), "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "not a built kit" in out.stderr
    bad = subprocess.run(["bash", str(script), "--frobnicate"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr


# ------------------------------------------------------------------------------ real builds (slow)


@pytest.mark.slow
@pytest.mark.skipif(not (GPUMD_PREFIX / "bin" / "gpumd").exists() or not (CUDA_PREFIX / "env.sh").exists(),
                    reason="needs `make gpumd GPUMD_SRC=...` (1.7 GB of CUDA wheels, minutes of nvcc; not in CI)")
def test_the_built_gpumd_passes_its_checks() -> None:
    archs = ",".join(PINS["cuda13"]["archs"])
    out = subprocess.run(["bash", "-c", f'. "{CUDA_PREFIX}/env.sh" && CHECK_CUOBJDUMP=1 "{CHECK}" "{GPUMD_PREFIX}" {archs}'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    info = (GPUMD_PREFIX / "share" / "BUILD_INFO").read_text()
    assert f"commit={PINS['gpumd']['commit']}" in info and "cuda_13.0" in info


KIT_PYTHON = os.environ.get("NEPBENCH_KIT_PYTHON", "")


@pytest.mark.slow
@pytest.mark.skipif(not (KIT / "KIT.json").exists() or not KIT_PYTHON,
                    reason="needs `make device-kit` and NEPBENCH_KIT_PYTHON (a Python 3.12 with the packages a "
                           "GPU node's image has: kit/node-provides.txt); not in CI")
def test_kit_dry_run_passes(tmp_path: Path) -> None:
    env = {**os.environ, "KIT_CUDA_LIBS": str(CUDA_PREFIX / "site" / "nvidia" / "cu13" / "lib")}
    out = subprocess.run(["bash", str(KIT / "run_gpu_check.sh"), "--dry-run", "--python", KIT_PYTHON,
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "would run: nepbench run suites/gpu-check.toml" in out.stdout
    assert "done: 0 step(s) failed" in (tmp_path / "out" / "run.log").read_text()
