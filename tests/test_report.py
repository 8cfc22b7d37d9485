"""Reports from fixture run directories: merging, figures, HTML/Markdown, verify exit codes, bad input."""

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from nepbench.cli import main
from nepbench.errors import InputError
from nepbench.report import plots
from nepbench.report.build import build_report
from nepbench.report.html import render_html
from nepbench.report.markdown import render_markdown
from nepbench.report.text import score_text
from nepbench.report.write import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODELS = ("nep89-lisic", "nepbench-lisic-v1")
CHROMIUM = Path("/usr/bin/chromium")


# ----------------------------------------------------------------------------- fixtures


def provenance(wall_s=1.0, gpus=()):
    return {"model_sha256": None, "data_sha256": "d" * 64, "packages": {"numpy": "2.1.0", "nepbench": "0.1.0"},
            "engines": {"cp2k": "2023.1"}, "seed": 0, "wall_s": wall_s, "nepbench_version": "0.1.0",
            "nepbench_commit": "c0ffee", "created_utc": "2025-01-01T00:00:00+00:00",
            "hardware": {"cpu_model": "Test CPU", "logical_cores": 2, "gpus": list(gpus)}}


def result(task_id, task_type, title, status="done", reason=None, model=None, metrics=None, series=None,
           method="fixture"):
    prov = provenance()
    if model:
        prov["model_sha256"] = model[0] * 64
    if task_type == "parity":  # what the runner hashed for this task (other fixtures: not recorded)
        prov["data_files"] = ["dft/manifest.json"]
    return {"schema": "nepbench.result/1", "task_id": task_id, "task_type": task_type, "title": title,
            "model": {"name": model, "sha256": model[0] * 64} if model else None, "status": status,
            "reason": reason, "metrics": metrics or {}, "metric_units": {k: "u" for k in metrics or {}},
            "method": method, "series": series or {}, "params": {}, "provenance": prov,
            "input_hash": "f" * 64}


def parity_series(noise, rng):
    forces = {}
    for el, n in (("Li", 120), ("Si", 200), ("C", 90)):
        ref = rng.normal(0, 1.5, n)
        forces[el] = {"ref": ref.tolist(), "pred": (ref + rng.normal(0, noise, n)).tolist()}
    e_ref = rng.normal(-4.5, 0.3, 40)
    return {"forces": forces, "energy": {"ref": e_ref.tolist(), "pred": (e_ref + rng.normal(0, 0.01, 40)).tolist()},
            "per_motif": {"crystalline": {"force_rmse_mev_per_a": 1000 * noise * 0.8, "n_frames": 10},
                          "amorphous": {"force_rmse_mev_per_a": 1000 * noise * 1.2, "n_frames": 12}}}


def md_series(shift):
    r = np.linspace(0.5, 6.0, 80)
    peak = lambda c: (np.exp(-((r - c) ** 2) / 0.05) * 2 + (r > c)).tolist()  # noqa: E731
    t = np.linspace(0, 10, 30)
    temps = [600.0, 800.0, 1000.0]
    d_ref = [1e-6, 5e-6, 1.5e-5]
    return {"rdf": {"a-Li3Si-900K": {
                "r_a": r.tolist(), "pairs": {"Li-Si": {"ref": peak(2.6), "model": peak(2.6 + shift)},
                                             "Si-Si": {"ref": peak(2.35), "model": peak(2.35 + shift)}}}},
            "msd": {"a-Li3Si-900K": {
                "Li": {"time_ps": t.tolist(), "ref": (2.0 * t).tolist(), "model": ((2.0 + shift) * t).tolist()}}},
            "arrhenius": {"temperature_k": temps, "d_ref_cm2_per_s": d_ref,
                          "d_model_cm2_per_s": [d * (1 + shift) for d in d_ref],
                          "d_ref_stderr": [d * 0.1 for d in d_ref], "d_model_stderr": [d * 0.1 for d in d_ref]}}


def throughput_series():
    return {"identical_n": [{"n_atoms": 32, "cp2k_s_per_step": 19.0, "nep_s_per_step": 0.002, "ratio": 9500.0,
                             "nep_engine": "nep_cpu", "hardware": "both on Test CPU"},
                            {"n_atoms": 64, "cp2k_s_per_step": 90.0, "nep_s_per_step": 0.004, "ratio": 22500.0,
                             "nep_engine": "nep_cpu", "hardware": "both on Test CPU"}],
            "scaling": {"cp2k": {"n_atoms": [32, 64], "s_per_atom_step": [0.59, 1.4]},
                        "nep_cpu": {"n_atoms": [64, 512, 4096], "s_per_atom_step": [6e-5, 5e-5, 5e-5]}}}


def expansion_series():
    t = [0.0, 1.0, 2.0, 4.0]
    r = np.linspace(0, 5, 20)
    return {"shell_thickness_nm": t, "particle_dv_over_v0": [0.30, 0.08, 0.03, 0.008],
            "particle_dv_stderr": [0.01, 0.005, 0.003, 0.002], "core_dv_over_v0": [0.30, 0.2, 0.15, 0.1],
            "radial": {"1.0": {"r_nm": r.tolist(), "li_fraction": np.clip(r / 5, 0, 1).tolist(),
                               "strain": (0.1 * r).tolist()},
                       "4.0": {"r_nm": r.tolist(), "li_fraction": np.clip(r / 8, 0, 1).tolist(),
                               "strain": (0.05 * r).tolist()}}}


def criterion(cid, claim, task, metric, good, bad, unit="meV/Å"):
    return {"id": cid, "claim": claim, "task": task, "metric": metric, "good": good, "bad": bad, "unit": unit,
            "source": "2025 study"}


def suite_dict(name="paper"):
    tasks = [{"id": f"parity-{m}", "type": "parity", "title": f"Force/energy parity ({m})"} for m in MODELS]
    tasks += [{"id": "md-nep89-lisic", "type": "md_accuracy", "title": "AIMD observables (nep89-lisic)"},
              {"id": "speed-cpu", "type": "throughput", "title": "Throughput on CPU"},
              {"id": "speed-gpu", "type": "throughput", "title": "Throughput on GPU"},
              {"id": "expansion", "type": "expansion", "title": "Si@C expansion"}]
    crits = [criterion(f"force_rmse[{m}]", f"Forces near DFT accuracy ({m})", f"parity-{m}",
                       "force_rmse_mev_per_a", 100.0, 200.0) for m in MODELS]
    crits += [criterion("li_diffusivity", "Reproduces Li diffusivity", "md-nep89-lisic", "d_li_log10_ratio_abs",
                        0.1, 0.5, "log10"),
              criterion("speedup_cpu", "NEP much faster than AIMD", "speed-cpu", "speedup_cpu_identical_n",
                        10000.0, 1000.0, "×"),
              criterion("speedup_gpu", "NEP ~70,000× faster than AIMD", "speed-gpu",
                        "speedup_gpu_vs_cp2k_per_atom_step", 70000.0, 7000.0, "×"),
              criterion("expansion", "4 nm shell keeps expansion < 1%", "expansion", "particle_dv_percent_4nm",
                        1.0, 3.0, "%")]
    return {"name": name, "description": "fixture <suite> & co", "path": "suites/paper.toml",
            "tasks": tasks, "criteria": crits}


def fixture_records(force_rmse=(149.2, 95.0)):
    rng = np.random.default_rng(0)
    records = [result(f"parity-{m}", "parity", f"Force/energy parity ({m})", model=m,
                      metrics={"force_rmse_mev_per_a": f, "force_rmse_mev_per_a.Li": f * 0.6,
                               "energy_rmse_mev_per_atom": 12.0},
                      series=parity_series(f / 1000, rng)) for m, f in zip(MODELS, force_rmse)]
    records += [result("md-nep89-lisic", "md_accuracy", "AIMD observables (nep89-lisic)", model=MODELS[0],
                       metrics={"d_li_log10_ratio_abs": 0.05}, series=md_series(0.05)),
                result("speed-cpu", "throughput", "Throughput on CPU", model=MODELS[0],
                       metrics={"speedup_cpu_identical_n": 22500.0}, series=throughput_series()),
                result("speed-gpu", "throughput", "Throughput on GPU", status="skipped",
                       reason="no GPU: nvidia-smi not found"),
                result("expansion", "expansion", "Si@C expansion", model=MODELS[0],
                       metrics={"particle_dv_percent_4nm": 0.8}, series=expansion_series())]
    return records


def write_run(run_dir, records, suite=None):
    run_dir = Path(run_dir)
    (run_dir / "tasks").mkdir(parents=True, exist_ok=True)
    (run_dir / "suite.json").write_text(json.dumps(suite or suite_dict()))
    for record in records:
        (run_dir / "tasks" / f"{record['task_id']}.json").write_text(json.dumps(record))
    return run_dir


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One full run directory with its report written (figures drawn once for the module)."""
    run = write_run(tmp_path_factory.mktemp("run"), fixture_records())
    report = build_report([run])
    write_report(report, run)
    return run, report


def _verdict(report, cid):
    return next(v for v in report["verdicts"] if v["criterion"] == cid)


# ----------------------------------------------------------------------------- building


def test_report_judges_every_model_and_explains_the_skipped_gpu_task(written):
    _, report = written
    assert _verdict(report, "force_rmse[nep89-lisic]")["verdict"] == "warn"
    assert _verdict(report, "force_rmse[nepbench-lisic-v1]")["verdict"] == "pass"
    assert _verdict(report, "force_rmse[nepbench-lisic-v1]")["task"] == "parity-nepbench-lisic-v1"
    gpu = _verdict(report, "speedup_gpu")
    assert gpu["verdict"] == "not_measured" and "no GPU: nvidia-smi not found" in gpu["reason"]
    assert not gpu["unexpected"]
    assert report["summary"] == {"pass": 4, "warn": 1, "fail": 0, "not_measured": 1, "exit_code": 0,
                                 "exit_code_strict": 2}


def test_writes_results_markdown_html_and_figures(written):
    run, report = written
    results = json.loads((run / "results.json").read_text())
    assert results["suite"]["name"] == "paper" and len(results["verdicts"]) == 6
    assert {r["task_id"] for r in results["records"]} == {t["id"] for t in suite_dict()["tasks"]}
    assert {m["name"] for m in results["provenance"]["models"]} == set(MODELS)
    assert results["provenance"]["total_wall_s"] == pytest.approx(6.0)
    assert results["provenance"]["data_sha256"] == [{"sha256": "d" * 64, "files": "dft/manifest.json"},
                                                    {"sha256": "d" * 64, "files": "not recorded"}]
    files = {f["file"] for f in results["figures"]}
    assert "figures/parity-models-motifs.png" in files and "figures/parity-nep89-lisic-forces.png" in files
    assert {"figures/md-models-rdf.png", "figures/md-models-msd.png", "figures/md-models-arrhenius.png",
            "figures/speed-cpu-identical.png", "figures/speed-cpu-scaling.png",
            "figures/expansion-expansion.png", "figures/expansion-radial.png"} <= files
    for name in files:
        assert (run / name).read_bytes().startswith(PNG_SIGNATURE)
    markdown = (run / "report.md").read_text()
    for ref in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (run / ref).is_file(), ref
    assert markdown.index("## Claims × models") < markdown.index("![") < markdown.index("## Provenance")
    assert f"| {'d' * 64} | dft/manifest.json |" in markdown
    # each task's row names the commit, code and data it ran with (records of several commits mix)
    assert re.search(r"\| parity-nep89-lisic \| done \| nep89-lisic \| 1 \| 0 \| [^|]+ \| c0ffee \| — \| d{12} \| f{16} \|",
                     markdown), markdown[markdown.index("## Provenance"):]


def test_html_puts_the_matrix_before_the_first_plot_and_embeds_png(written):
    run, _ = written
    page = (run / "report.html").read_text()
    assert page.index('id="matrix"') < page.index('id="conclusions"') < page.index("<img") < page.index('id="provenance"')
    assert "http://" not in page and "https://" not in page  # self-contained
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == page.count("<img") >= 10
    for data in images:
        png = base64.b64decode(data)
        assert png.startswith(PNG_SIGNATURE)
        assert matplotlib.image.imread(io.BytesIO(png), format="png").ndim == 3
    assert "NOT MEASURED" in page and "no GPU: nvidia-smi not found" in page


def test_all_text_is_escaped(tmp_path):
    records = fixture_records()
    records[0]["method"] = "<script>alert(1)</script>"
    records[0]["title"] = "Parity & <b>bold</b>"
    records[3]["method"] = "CP2K | NEP"
    report = build_report([write_run(tmp_path, records)], figures=False)
    page, markdown = render_html({**report, "figures": []}), render_markdown({**report, "figures": []})
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "fixture &lt;suite&gt; &amp; co" in page
    assert "CP2K \\| NEP" in markdown  # a pipe in a table cell does not split the row
    assert "<script>" not in markdown and "fixture &lt;suite&gt;" in markdown


def test_markdown_cells_keep_one_row_and_inject_nothing(tmp_path):
    """A lone \\r (or any line break) cannot end a table row; links, headings and emphasis stay text."""
    records = fixture_records()
    records[0]["method"] = "fixture\r| injected | row |\r# Injected heading\r[click](javascript:alert(1)) *b* `c`"
    records[0]["reason"] = "a\u2028# heading\x0b![img](x.png) & &lt;"
    report = build_report([write_run(tmp_path, records)], figures=False)
    markdown = render_markdown({**report, "figures": []})
    assert not any(c in markdown for c in "\r\x0b\u2028")
    assert not any(line.startswith("# Injected") or line.startswith("# heading") for line in markdown.split("\n"))
    assert "](javascript" not in markdown and "![img]" not in markdown and "*b*" not in markdown
    row = next(line for line in markdown.split("\n") if "injected" in line)  # the method, once, in its own line
    assert row.startswith("- **nep89-lisic**: ") and not re.findall(r"(?<!\\)\|", row)
    assert ("\\| injected \\| row \\| \\# Injected heading "
            "\\[click\\]\\(javascript:alert\\(1\\)\\) \\*b\\* \\`c\\`") in row
    assert "&amp; &amp;lt;" in markdown  # an entity in the input shows as typed


def test_figure_files_are_unique_when_task_ids_slug_alike(tmp_path):
    rng = np.random.default_rng(0)
    records = [result("parity a", "parity", "P1", model="m1", series=parity_series(0.1, rng)),
               result("parity:a", "parity", "P2", model="m2", series=parity_series(0.5, rng)),
               result("parity-m3", "parity", "P3", model="m3", series=parity_series(0.2, rng)),  # group parity-{model}
               result("parity-models", "parity", "P4", model="m4", series=parity_series(0.3, rng))]
    for record in records:
        record["series"].pop("energy")
    suite = {**suite_dict(), "criteria": [],
             "tasks": [{"id": r["task_id"], "type": "parity", "title": r["title"]} for r in records]}
    report = build_report([write_run(tmp_path / "run", records, suite=suite)])
    files = [f["file"] for f in report["figures"]]
    assert len(files) == len(set(files)) == 12  # per task: its group's error and motif overlays, its force panels
    assert "figures/parity-m3-forces.png" in files and "figures/parity-models-motifs.png" in files  # names kept
    write_report(report, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "figures").iterdir()) == sorted(Path(f).name for f in files)
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (tmp_path / "out" / "report.md").read_text())
    assert sorted(refs) == sorted(files)
    page = (tmp_path / "out" / "report.html").read_text()
    ids = re.findall(r'id="(task-[^"]*)"', page)
    assert len(ids) == len(set(ids)) == 4


def test_merges_slurm_array_run_directories(tmp_path):
    records = fixture_records()
    write_run(tmp_path / "a", records[:3])
    write_run(tmp_path / "b", records[3:])
    stale = dict(records[4], status="failed", reason="crashed")  # an older retry elsewhere
    stale["provenance"] = dict(stale["provenance"], created_utc="2024-01-01T00:00:00+00:00")
    write_run(tmp_path / "c", [stale])
    out = tmp_path / "merged"
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["records"]) == len(records)
    assert next(r for r in results["records"] if r["task_id"] == "speed-gpu")["status"] == "skipped"
    assert any("speed-gpu" in n for n in results["notes"])
    assert (out / "report.html").is_file()


def test_merges_run_directories_of_two_suites_into_one_report(tmp_path):
    """The quick suite's folder and the comparators' folder: one report, both suites named, every
    task and criterion of each; one id defined differently in the two is refused, naming the file."""
    records = fixture_records()
    base = suite_dict()
    quick = {**base, "name": "quick", "description": "NEPs",
             "tasks": [t for t in base["tasks"] if t["id"] in {r["task_id"] for r in records[:3]}]}
    comp = {**base, "name": "comparators", "description": "universal MLIPs",
            "tasks": [t for t in base["tasks"] if t["id"] in {r["task_id"] for r in records[3:]}]}
    write_run(tmp_path / "quick", records[:3], suite=quick)
    write_run(tmp_path / "comp", records[3:], suite=comp)
    report = build_report([tmp_path / "quick", tmp_path / "comp"], figures=False)
    assert report["suite"]["name"] == "quick + comparators"
    assert report["suite"]["description"] == "quick: NEPs; comparators: universal MLIPs"
    assert {r["task_id"] for r in report["records"]} == {r["task_id"] for r in records}
    assert len(report["suite"]["criteria"]) == len(base["criteria"])
    clash = {**comp, "tasks": comp["tasks"] + [{**quick["tasks"][0], "title": "another definition"}]}
    write_run(tmp_path / "clash", records[3:], suite=clash)
    with pytest.raises(InputError, match="defined twice, differently"):
        build_report([tmp_path / "quick", tmp_path / "clash"], figures=False)


def test_a_record_of_a_task_the_suite_no_longer_has_is_left_out_with_a_note(tmp_path):
    """A rerun with another --model rewrites suite.json; the old model's records stay in tasks/ and
    must not count towards the verdicts, the wall time or the figures of the run as it is now."""
    records = fixture_records()
    stray = {**records[0], "task_id": "parity-old-model"}
    run = write_run(tmp_path / "run", records + [stray])
    report = build_report([run], figures=False)
    assert "parity-old-model" not in {r["task_id"] for r in report["records"]}
    assert len(report["records"]) == len(records)
    assert any("parity-old-model" in n and "left out" in n for n in report["notes"])


def test_a_record_that_ran_with_other_parameters_is_not_judged_as_the_suites_task(tmp_path, capsys):
    """An interrupted rerun (or `--task` on part of a suite) rewrites suite.json and leaves the
    other records as they were: a record from other parameters must not vouch for the task now."""
    records = fixture_records()
    suite = suite_dict()
    for task in suite["tasks"]:
        task["params"] = {}
    suite["tasks"][0]["params"] = {"split": "test"}  # parity-nep89-lisic now runs on the test split
    run = write_run(tmp_path / "run", records, suite)
    report = build_report([run], figures=False)
    assert "parity-nep89-lisic" not in {r["task_id"] for r in report["records"]}
    verdict = _verdict(report, "force_rmse[nep89-lisic]")
    assert verdict["verdict"] == "not_measured" and verdict["unexpected"]
    assert "ran with other parameters than the suite's" in verdict["reason"] and "split: None → 'test'" in verdict["reason"]
    assert any("parity-nep89-lisic" in n and "other parameters" in n for n in report["notes"])
    assert _verdict(report, "force_rmse[nepbench-lisic-v1]")["verdict"] == "pass"  # its params match
    assert main(["verify", str(run)]) == 2
    capsys.readouterr()


def test_a_newer_run_of_changed_inputs_outranks_an_older_success(tmp_path):
    """Merged folders: among records of one input (same input_hash) a success beats a failure; a
    record of older inputs (another model file, data or code) never stands in for a newer run."""
    records = fixture_records()
    old = dict(records[0], input_hash="0" * 64)
    old["provenance"] = dict(old["provenance"], created_utc="2024-01-01T00:00:00+00:00")
    newer_failure = dict(records[0], status="failed", reason="crashed")
    write_run(tmp_path / "old", [old])
    write_run(tmp_path / "new", [newer_failure] + records[1:])
    report = build_report([tmp_path / "old", tmp_path / "new"], figures=False)
    chosen = next(r for r in report["records"] if r["task_id"] == "parity-nep89-lisic")
    assert chosen["status"] == "failed" and _verdict(report, "force_rmse[nep89-lisic]")["unexpected"]
    same_input = dict(old, input_hash=newer_failure["input_hash"])  # the same inputs, an older success
    write_run(tmp_path / "old", [same_input])
    report = build_report([tmp_path / "old", tmp_path / "new"], figures=False)
    assert next(r for r in report["records"] if r["task_id"] == "parity-nep89-lisic")["status"] == "done"


def test_a_failed_write_replaces_none_of_the_reports_files(tmp_path, monkeypatch):
    """report.md, report.html, results.json and the figures are one set: a full disk on the last
    file must not leave a report.md whose verdicts disagree with results.json."""
    from nepbench import files

    run = write_run(tmp_path / "run", fixture_records())
    write_report(build_report([run]), run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.parent.name != "tasks"}
    worse = build_report([write_run(tmp_path / "run", fixture_records(force_rmse=(250.0, 95.0)))])
    real_staged = files._staged

    def disk_full_on_results(target, data):
        if target.name == "results.json":
            raise OSError(28, "No space left on device")
        return real_staged(target, data)

    monkeypatch.setattr(files, "_staged", disk_full_on_results)
    with pytest.raises(OSError):
        write_report(worse, run)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.parent.name != "tasks"}
    assert after == before  # nothing replaced, no temporary left behind


def test_only_figures_the_previous_report_drew_are_removed(tmp_path):
    run = write_run(tmp_path / "run", fixture_records())
    first = write_report(build_report([run]), run)
    drawn = {f["file"] for f in json.loads(first["results"].read_text())["figures"]}
    hand_made = run / "figures" / "hand_made_fig3.png"
    hand_made.write_bytes(b"mine")
    records = [r for r in fixture_records() if r["task_type"] != "expansion"]  # its figures go
    (run / "tasks" / "expansion.json").unlink()
    write_run(run, records)
    second = write_report(build_report([run]), run)
    now = {f["file"] for f in json.loads(second["results"].read_text())["figures"]}
    gone = drawn - now
    assert gone and not any((run / name).exists() for name in gone)
    assert all((run / name).exists() for name in now) and hand_made.read_bytes() == b"mine"


def test_a_group_figure_appears_once_when_one_template_key_names_tasks_of_two_types(tmp_path):
    """bench-{model} as parity for one model and throughput for the other: two groups; the parity
    overlay belongs to the parity group alone."""
    records = fixture_records()
    parity = dict(records[0], task_id="bench-nep89-lisic")
    speed = dict(records[3], task_id="bench-nepbench-lisic-v1", model={"name": MODELS[1], "sha256": "b" * 64})
    suite = suite_dict()
    suite["tasks"] = [{"id": "bench-nep89-lisic", "type": "parity", "title": "parity"},
                      {"id": "bench-nepbench-lisic-v1", "type": "throughput", "title": "speed"}]
    suite["criteria"] = []
    report = build_report([write_run(tmp_path / "run", [parity, speed], suite)])
    motifs = [f["file"] for f in report["figures"] if f["file"].endswith("-motifs.png")]
    assert len(motifs) == 1
    assert render_markdown(report).count(f"]({motifs[0]})") == 1
    assert render_html(report).count('src="data:image/png;base64') == len(report["figures"])


def test_a_report_does_not_write_over_another_run_folder(tmp_path, capsys):
    """`report A --out B`, B a run folder of its own, replaced B's results.json and report with A's
    while B's suite.json stayed: `gate B/results.json` would then gate A."""
    records = fixture_records()
    write_run(tmp_path / "a", records[:3])
    write_run(tmp_path / "b", records[3:])
    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir() if p.is_file()}
    assert main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "b") in err and "another --out" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir() if p.is_file()} == before
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "b")]) == 0


def test_merging_needs_out(tmp_path, capsys):
    write_run(tmp_path / "a", [])
    write_run(tmp_path / "b", [])
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "--out is required" in capsys.readouterr().err


def test_conflicting_suites_are_refused(tmp_path):
    write_run(tmp_path / "a", [])
    other = suite_dict()
    other["criteria"][0] = dict(other["criteria"][0], good=50.0)
    write_run(tmp_path / "b", [], suite=other)
    crit = other["criteria"][0]["id"]
    with pytest.raises(InputError) as info:
        build_report([tmp_path / "a", tmp_path / "b"], figures=False)
    message = str(info.value)  # names the later file and the earlier one
    assert message.startswith(str(tmp_path / "b" / "suite.json"))
    assert f"criterion {crit!r} is defined twice, differently (in {tmp_path / 'a' / 'suite.json'})" in message
    # within one suite.json
    twice = suite_dict()
    twice["criteria"].append(dict(twice["criteria"][0], good=50.0))
    write_run(tmp_path / "c", [], suite=twice)
    with pytest.raises(InputError, match="is defined twice, differently \\(earlier in this file\\)"):
        build_report([tmp_path / "c"], figures=False)


def test_a_folder_without_task_records_is_refused_and_its_report_kept(tmp_path):
    write_run(tmp_path / "a", [])
    (tmp_path / "a" / "results.json").write_text('{"kept": true}')
    with pytest.raises(InputError, match="tasks: no task records: nothing to report"):
        write_report(build_report([tmp_path / "a"], figures=False), tmp_path / "a")
    assert main(["report", str(tmp_path / "a")]) == 1
    assert (tmp_path / "a" / "results.json").read_text() == '{"kept": true}'
    if (tmp_path / "a" / "tasks").is_dir():
        (tmp_path / "a" / "tasks").rmdir()
    (tmp_path / "a" / "tasks").write_text("")
    with pytest.raises(InputError, match="tasks: must be the folder of task records"):
        build_report([tmp_path / "a"], figures=False)


# ----------------------------------------------------------------------------- verify and errors


@pytest.mark.parametrize("force_rmse, args, code", [
    ((149.2, 95.0), [], 0),  # warn + pass + skipped GPU (explained)
    ((149.2, 95.0), ["--strict"], 2),  # strict: the skipped GPU criterion blocks
    ((250.0, 95.0), [], 1),  # one model fails
])
def test_verify_exit_codes(tmp_path, capsys, force_rmse, args, code):
    run = write_run(tmp_path, fixture_records(force_rmse))
    assert main(["verify", *args, str(run)]) == code
    out = capsys.readouterr().out
    assert "WARN" in out or "FAIL" in out
    assert "skipped: no GPU: nvidia-smi not found" in out
    assert f"exit {code}" in out


def test_verify_cannot_judge_without_results(tmp_path, capsys):
    run = write_run(tmp_path, [])
    assert main(["verify", str(run)]) == 2
    assert "no result record" in capsys.readouterr().out


def test_verify_cannot_judge_a_failed_task(tmp_path):
    records = fixture_records()
    records[0] = dict(records[0], status="failed", reason="EngineCrashed: nep exited 1")
    assert main(["verify", str(write_run(tmp_path, records))]) == 2


def test_verify_missing_directory_is_exit_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.parametrize("content, problem", [
    ("{not json", "malformed JSON"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "weird"}', "'status'"),
    ('{"schema": "other/1"}', "unknown schema"),
    ('[1, 2]', "JSON object"),
    (b'{"schema": "nepbench.result/1", "task_id": "\xff"}', "not UTF-8"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"metric_reasons": "oops"}', "'metric_reasons' must be a JSON object"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"metric_reasons": {"a": 1}}', "'metric_reasons' of 'a' is 1"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"provenance": {"packages": [1]}}', "'provenance.packages' must be a JSON object"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"unresolved_metrics": "m"}', "'unresolved_metrics' must be a list of strings"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"provenance": {"data_files": [1]}}', "'provenance.data_files' must be a list of strings"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"input_hash": ["x"]}', "'input_hash' must be a string or null"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"model": {"name": ["m"]}}', "'model.name' must be a string or null"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"provenance": {"hardware": {"gpus": 1}}}', "'provenance.hardware.gpus' must be a list of strings"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"provenance": {"hardware": {"gpus": [1]}}}', "'provenance.hardware.gpus' must be a list of strings"),
    ('{"schema": "nepbench.result/1", "task_id": "x", "task_type": "parity", "status": "done", '
     '"metrics": {"m": 1' + '0' * 400 + '}}', "metric 'm' is an integer too large for a float (401 digits)"),
])
def test_malformed_record_one_clear_error_and_no_results(tmp_path, capsys, content, problem):
    run = write_run(tmp_path, fixture_records()[:2])
    bad = run / "tasks" / "broken.json"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and problem in err
    assert not (run / "results.json").exists() and not (run / "report.html").exists()
    assert main(["verify", str(run)]) == 2


def test_malformed_criterion_names_the_file_and_criterion(tmp_path):
    suite = suite_dict()
    suite["criteria"][0] = dict(suite["criteria"][0], bad=100.0)
    run = write_run(tmp_path, [], suite=suite)
    with pytest.raises(Exception, match=r"suite\.json: criterion 'force_rmse\[nep89-lisic\]'.*differ"):
        build_report([run], figures=False)
    suite["criteria"][0] = dict(suite_dict()["criteria"][0], flor="rdf_floor")  # a misspelt floor
    run = write_run(tmp_path, [], suite=suite)
    with pytest.raises(Exception, match=r"suite\.json: criterion 'force_rmse\[nep89-lisic\]'.*unknown.*flor"):
        build_report([run], figures=False)


# ----------------------------------------------------------------------------- plots


@pytest.mark.parametrize("function, series", [
    (plots.force_parity_png, {}), (plots.force_parity_png, {"forces": {"Li": {"ref": [], "pred": []}}}),
    (plots.energy_parity_png, {"energy": {"ref": [1.0], "pred": None}}),
    (plots.energy_parity_png, {"energy": {"ref": [float("nan")], "pred": [1.0]}}),
    (plots.throughput_bars_png, {"identical_n": []}), (plots.scaling_png, {"scaling": {}}),
    (plots.radial_png, {}),
])
def test_plots_return_none_without_data(function, series):
    assert function(series) is None


@pytest.mark.parametrize("function", [plots.per_motif_overlay_png, plots.rdf_overlay_png, plots.msd_overlay_png,
                                      plots.arrhenius_overlay_png, plots.expansion_overlay_png,
                                      plots.aimd_thermo_png])
def test_overlay_plots_return_none_without_data(function):
    assert function({}) is None and function({"m": {}}) is None


def test_aimd_thermo_plot_draws_each_run_and_skips_a_malformed_one():
    run = {"time_ps": [0.0, 0.002, 0.004, 0.006], "temperature_k": [900.0, 1300.0, 1000.0, 905.0],
           "potential_ev_per_atom": [0.0, -0.1, -0.2, -0.2], "target_temperature_k": 900.0,
           "warmup_ps": 0.004, "equilibrated_ps": 0.002}
    png = plots.aimd_thermo_png({"m": {"aimd_thermo": {"a": run, "b": {**run, "equilibrated_ps": None}}}})
    assert png is not None and png.startswith(PNG_SIGNATURE)
    broken = {**run, "temperature_k": [900.0]}  # lengths differ: malformed, said so
    with pytest.raises(ValueError, match="different lengths"):
        plots.aimd_thermo_png({"m": {"aimd_thermo": {"a": broken}}})


def test_parity_uses_hexbin_for_many_points_and_is_deterministic():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=plots.HEXBIN_ABOVE + 10)
    series = {"forces": {"Si": {"ref": ref.tolist(), "pred": (ref * 1.01).tolist()}}}
    png = plots.force_parity_png(series)
    assert png.startswith(PNG_SIGNATURE) and png == plots.force_parity_png(series)


@pytest.mark.parametrize("data, n_drawn, title", [
    # heavy-tailed errors: the 3000 points drawn give 139 meV/Å, the record 327 over all 12000
    ({"rmse_mev_per_a": 327.4, "n_components": 12000}, 3000, "Si: RMSE 327 meV/Å (n=12000; 3000 drawn)"),
    ({"rmse_mev_per_a": 139.2, "n_components": 3000}, 3000, "Si: RMSE 139 meV/Å (n=3000)"),
    ({}, 3000, "Si: RMSE 139 meV/Å (n=3000)"),  # an older series without the recorded value
    ({"rmse_mev_per_a": float("nan"), "n_components": 12000}, 3000, "Si: RMSE 139 meV/Å (n=3000)"),
    ({"rmse_mev_per_a": 327.4, "n_components": 10}, 3000, "Si: RMSE 139 meV/Å (n=3000)"),  # inconsistent
])
def test_a_force_panel_states_the_recorded_rmse_not_the_drawn_subsamples(data, n_drawn, title):
    assert plots.force_panel_title("Si", data, 139.2, n_drawn) == title


@pytest.mark.parametrize("value, good, bad, shown", [
    (69999.6, 70000.0, 7000.0, "69,999.6 ×"),  # WARN: must not read as the pass bound
    (70000.0, 70000.0, 7000.0, "70,000 ×"),
    (100.04, 100.0, 200.0, "100.04 ×"),
    (149.2, 100.0, 200.0, "149.2 ×"),
    (199.99999999999, 100.0, 200.0, "200 ×"),  # beyond 12 digits: left as it is
])
def test_a_value_next_to_a_bound_is_shown_with_the_digits_that_tell_them_apart(value, good, bad, shown):
    from nepbench.report.text import measured_text

    assert measured_text({"value": value, "good": good, "bad": bad, "unit": "×"}) == shown


# ----------------------------------------------------------------------------- headless browser


def _chromium(args, tmp_path, timeout=120):
    profile = tmp_path / "profile"
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed (scripts/ensure_chromium.sh installs it)")
def test_headless_chromium_renders_the_report(written, tmp_path):
    run, _ = written
    url = (run / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,2000", "--hide-scrollbars", url], tmp_path)
    assert shot.is_file() and shot.stat().st_size > 10_000
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert float(pixels[..., :3].std()) > 0.02  # not a blank page
    dom = _chromium(["--dump-dom", url], tmp_path).stdout
    assert 'id="matrix"' in dom and "NOT MEASURED" in dom


def test_a_malformed_series_costs_its_figure_not_the_report(tmp_path):
    records = fixture_records()
    records[2]["series"]["rdf"]["a-Li3Si-900K"]["pairs"] = {"Li-Si": [1.0, 2.0]}  # a list where {"ref", "model"} belongs
    records[0]["series"]["forces"]["Li"] = "oops"
    records[3]["series"]["identical_n"][0]["n_atoms"] = float("inf")  # int(inf): OverflowError
    report = build_report([write_run(tmp_path, records)])
    files = {f["file"] for f in report["figures"]}
    assert any("not drawn" in note and "OverflowError" in note for note in report["notes"]), report["notes"]
    assert "figures/md-models-rdf.png" not in files and "figures/md-models-msd.png" in files
    assert "figures/parity-nep89-lisic-forces.png" in files  # Si and C panels still drawn
    assert any("md-models-rdf.png not drawn" in note for note in report["notes"])
    write_report(report, tmp_path / "out")
    assert (tmp_path / "out" / "report.html").is_file()


def test_paired_series_of_different_lengths_are_noted_not_dropped_silently(tmp_path):
    records = fixture_records()
    records[0]["series"]["energy"]["pred"] = records[0]["series"]["energy"]["pred"][:-1]
    report = build_report([write_run(tmp_path, records)])
    files = {f["file"] for f in report["figures"]}
    assert "figures/parity-nep89-lisic-energy.png" not in files
    assert "figures/parity-nep89-lisic-forces.png" in files
    assert any("parity-nep89-lisic-energy.png not drawn" in note and "different lengths" in note
               for note in report["notes"])
    write_report(report, tmp_path / "out")
    assert (tmp_path / "out" / "report.html").is_file()


def test_overlay_curves_of_another_length_than_their_axis_are_malformed():
    good = {"time_ps": [0.0, 0.1, 0.2], "ref": [0.0, 1.0, 2.0], "model": [0.0, 1.1, 2.1]}
    assert plots.msd_overlay_png({"m": {"msd": {"run": {"Li": good}}}}).startswith(PNG_SIGNATURE)
    short = {**good, "model": [0.0, 1.1]}
    with pytest.raises(ValueError, match="different lengths"):
        plots.msd_overlay_png({"m": {"msd": {"run": {"Li": short}}}})
    rdf = {"r_a": [1.0, 2.0, 3.0], "pairs": {"Li-Li": {"ref": [0.0, 1.0, 1.0], "model": [0.0, 1.0]}}}
    with pytest.raises(ValueError, match="different lengths"):
        plots.rdf_overlay_png({"m": {"rdf": {"run": rdf}}})


def test_a_warn_score_never_reads_as_a_bound():
    """100.4 against pass ≤ 100, fail ≥ 200 scores 0.996: printed as 1.00 it would say the value sits
    on the pass bound; a warn shows 0.01–0.99, a pass or fail keeps its exact 1.00 or 0.00."""
    from nepbench.report.criteria import judge, score
    crit = {"id": "f", "claim": "c", "task": "t", "metric": "m", "good": 100.0, "bad": 200.0, "unit": "meV/Å",
            "source": "s"}
    near_pass = judge(crit, {"status": "done", "metrics": {"m": 100.4}})
    assert near_pass.verdict == "warn" and score_text(near_pass.score, "warn") == "0.99"
    assert score_text(score(199.7, 100.0, 200.0), "warn") == "0.01"
    assert score_text(score(150.0, 100.0, 200.0), "warn") == "0.50"
    assert score_text(1.0, "pass") == "1.00" and score_text(0.0, "fail") == "0.00"
