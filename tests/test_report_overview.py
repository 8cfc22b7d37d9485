"""The report's first screen (issue 28): the claims × models matrix, one method per task template,
what the run can and cannot conclude, figures drawn from records with their data source, the
terminal table within 100 columns, and the page in headless Chromium at 1280 px."""

from __future__ import annotations

import io
import json
import re

import matplotlib.image
import numpy as np
import pytest
from test_report import (
    CHROMIUM, PNG_SIGNATURE, _chromium, criterion, expansion_series, md_series, parity_series, result,
    throughput_series, write_run,
)

from nepbench.report import overview, plots
from nepbench.report.build import build_report
from nepbench.report.figures import figure_bounds
from nepbench.report.text import claim_table_text
from nepbench.report.write import write_report

FOUR = ("nep89-lisic", "nepbench-lisic-v1", "mace-mp-0-medium", "chgnet-0.3.0")
CLAIMS = (  # (claim id, words, task template, metric, good, bad, unit)
    ("force_rmse", "Forces at near-DFT accuracy on held-out frames", "parity", "force_rmse_mev_per_a", 100.0, 200.0,
     "meV/Å"),
    ("energy_rmse", "Energies at near-DFT accuracy (per-element offsets fitted on the training split)", "parity",
     "energy_rmse_mev_per_atom", 10.0, 30.0, "meV/atom"),
    ("rdf", "Reproduces the AIMD radial distribution functions", "md", "rdf_l1_error_max", 0.15, 0.4, ""),
    ("li_diffusivity", "Reproduces AIMD Li diffusivities", "md", "d_li_log10_ratio_abs", 0.15, 0.5,
     "|log10(D_NEP/D_AIMD)|"),
    ("nve_stability", "Stable MD: energy conserved in NVE", "md", "nve_drift", 1e-4, 1e-3, "eV/atom/ps"),
    ("speedup", "~70,000× faster than AIMD (CPU NEP vs CP2K on identical cells, this machine)", "speed",
     "speedup_cpu_identical_n", 70000.0, 7000.0, "×"),
    ("shell_locks_expansion", "A carbon shell keeps the particle's volume expansion under 1% (quick: 0.8 nm shell "
     "on a 1 nm core, x = 0.5)", "expansion", "particle_dv_over_v0_percent_at_t0.8", 1.0, 3.0, "%"),
)
PARITY_METHOD = ("33 held-out CP2K frames (test split); force components over all atoms; force RMSE over the other 25: "
                 "{f:.0f} meV/Å; NEP via nep-adapters 1.0.3 (NEP_CPU, OpenMP)")
NO_D = "no AIMD run has ≥0.5 ps of production with a diffusive Li MSD"
MD_METHOD = ("NEP NVT (CSVR) from the AIMD frame after warm-up; a-Li3Si-900K: 1.00 ps AIMD, T 914 ± 35 K; "
             "NEP T {t:.0f} ± 37 K; NVE drift of a-LixSi (33 atoms): mean T 939 K")


def four_model_records(models=FOUR):
    """Records of the quick suite's four task templates for each model (models 0 and 1 fail accuracy)."""
    rng = np.random.default_rng(0)
    records = []
    for i, m in enumerate(models):
        force = (568.2, 591.0, 120.0, 95.0)[i % 4]
        parity = result(f"parity-{m}", "parity", f"Parity ({m})", model=m,
                        metrics={"force_rmse_mev_per_a": force, "energy_rmse_mev_per_atom": 40.0 if i < 2 else 8.0},
                        series=parity_series(force / 1000, rng), method=PARITY_METHOD.format(f=force))
        md = result(f"md-{m}", "md_accuracy", f"MD ({m})", model=m,
                    metrics={"rdf_l1_error_max": 0.2 + 0.1 * i, "rdf_l1_aimd_halves_max": 0.2046,
                             "nve_drift": 1e-6 * (i + 1)},
                    series=md_series(0.02 * (i + 1)), method=MD_METHOD.format(t=858 + 10 * i))
        md["metric_reasons"] = {"d_li_log10_ratio_abs": NO_D}
        speed = result(f"speed-{m}", "throughput", f"Speed ({m})", model=m,
                       metrics={"speedup_cpu_identical_n": 53889.0 + 10000 * i}, series=throughput_series(),
                       method="NVT (CSVR) at 900 K, identical cells")
        speed["metric_reasons"] = {"speedup_gpu_identical_n": "not measured: no 'gpumd' executable on PATH"}
        expansion = result(f"expansion-{m}", "expansion", f"Expansion ({m})", model=m,
                           metrics={"particle_dv_over_v0_percent_at_t0.8": 0.8 + i}, series=expansion_series(),
                           method="relax; ΔV/V0 of the particle")
        records += [parity, md, speed, expansion]
    return records


def four_model_suite(models=FOUR):
    tasks = [{"id": f"{kind}-{m}", "type": kind_type, "title": f"{kind} ({m})"}
             for m in models for kind, kind_type in (("parity", "parity"), ("md", "md_accuracy"),
                                                     ("speed", "throughput"), ("expansion", "expansion"))]
    crits = []
    for cid, words, kind, metric, good, bad, unit in CLAIMS:
        for m in models:
            crit = criterion(f"{cid}[{m}]", f"{words} ({m})", f"{kind}-{m}", metric, good, bad, unit)
            if cid == "rdf":
                crit["floor"] = "rdf_l1_aimd_halves_max"
            crits.append(crit)
    return {"name": "quick", "description": "four models", "path": "suites/quick.toml", "tasks": tasks,
            "criteria": crits}


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """A run of four models with its report written (figures drawn once for the module)."""
    run = write_run(tmp_path_factory.mktemp("four"), four_model_records(), suite=four_model_suite())
    report = build_report([run])
    write_report(report, run)
    return run, report


# ----------------------------------------------------------------------------- the matrix


def _verdict(cid, model=None, verdict="pass", value=1.0, **extra):
    return {"criterion": cid, "claim": f"claim {cid.split('[')[0]}" + (f" ({model})" if model else ""), "task": "t",
            "metric": "m", "value": value, "unit": "u", "good": 1.0, "bad": 2.0, "source": "s", "verdict": verdict,
            "score": 1.0, "reason": None, "model": model, **extra}


def test_the_matrix_has_a_row_per_claim_and_a_column_per_model_however_many():
    verdicts = [_verdict(f"force[{m}]", m) for m in ("a", "b", "c", "d", "e")]
    verdicts += [_verdict("speed[b]", None), _verdict("gate_time", None)]  # no record: model from the id, or none
    columns, rows = overview.claim_matrix(verdicts)
    assert columns == ["a", "b", "c", "d", "e", overview.NO_MODEL]
    assert [r.key for r in rows] == ["force", "speed", "gate_time"]
    assert [r.claim for r in rows] == ["claim force", "claim speed", "claim gate_time"]  # " (model)" dropped
    assert list(rows[1].cells) == ["b"] and list(rows[2].cells) == [overview.NO_MODEL]


def test_two_criteria_for_one_cell_keep_their_own_rows():
    verdicts = [_verdict("force[a]", "a"), _verdict("force[a]x", "a"), _verdict("force", "a"), _verdict("force", "b")]
    _, rows = overview.claim_matrix(verdicts)
    shown = [(r.key, m, v["criterion"]) for r in rows for m, v in r.cells.items()]
    assert shown == [("force", "a", "force[a]"), ("force", "b", "force"), ("force[a]x", "a", "force[a]x"),
                     ("force (2)", "a", "force")]  # every verdict once, none written over


def test_html_matrix_cells_link_to_their_detail_rows_and_show_value_and_verdict(four):
    run, report = four
    page = (run / "report.html").read_text()
    matrix = page[page.index('id="matrix"'):page.index("</table>", page.index('id="matrix"'))]
    assert re.findall(r'<th class="model">([^<]+)</th>', matrix) == list(FOUR)
    assert len(re.findall(r'<tr class="row">', matrix)) == len(CLAIMS)
    cell = re.search(r'<td class="cell" style="background:#c62828"[^>]*><a href="#(v-force_rmse[^"]+)">568.2 meV/Å'
                     r'<span class="vlabel">FAIL</span>', matrix)
    assert cell, matrix[:2000]
    ids = set(re.findall(r'id="([^"]+)"', page))
    links = re.findall(r'href="#([^"]+)"', page)
    assert links and all(link in ids for link in links)  # every link lands on something
    assert report["matrix"]["models"] == list(FOUR)
    assert report["matrix"]["rows"][0]["cells"]["nep89-lisic"] == {"criterion": "force_rmse[nep89-lisic]",
                                                                    "verdict": "fail", "value": 568.2}


def test_each_task_templates_method_appears_once_with_per_model_differences(four):
    run, _ = four
    for text in ((run / "report.html").read_text(), (run / "report.md").read_text()):
        assert text.count("33 held-out CP2K frames") == 1  # 4 models × 2 claims: said once
        assert text.count("from the AIMD frame after warm-up") == 1  # 4 models × 3 claims
        for m, f in zip(FOUR, (568.2, 591.0, 120.0, 95.0)):
            assert f"force RMSE over the other 25: {f:.0f} meV/Å" in text  # what differs, per model
    page = (run / "report.html").read_text()
    assert "<b>nep89-lisic</b>: a-Li3Si-900K: NEP T 858 ± 37 K" in page  # the run it belongs to is named


def test_split_methods_keeps_parentheses_whole_and_one_model_has_no_differences():
    common, diffs = overview.split_methods({"a": "x (p; q); run1: y; T 1 K", "b": "x (p; q); run1: y; T 2 K"})
    assert common == ["x (p; q)", "run1: y"] and diffs == {"a": ["run1: T 1 K"], "b": ["run1: T 2 K"]}
    assert overview.split_methods({"a": "x; y"}) == (["x", "y"], {})
    assert overview.split_methods({"a": "", "b": ""}) == ([], {})


def test_markdown_matrix_cells_link_to_anchors_that_exist(four):
    run, _ = four
    markdown = (run / "report.md").read_text()
    assert "| Claim | nep89-lisic | nepbench-lisic-v1 | mace-mp-0-medium | chgnet-0.3.0 |" in markdown
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', markdown))
    links = re.findall(r"\]\(#([^)]+)\)", markdown)
    assert len(links) == len(CLAIMS) * (len(FOUR) + 1) and all(link in anchors for link in links)
    assert markdown.index("## Claims × models") < markdown.index("## What this run can and cannot conclude")


def test_the_page_is_one_file_that_needs_nothing_else(four):
    run, _ = four
    page = (run / "report.html").read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    assert not re.search(r"""(?:src|href)=["'](?!data:image/png;base64,|#)""", page)  # only data URIs and anchors
    assert "http://" not in page and "https://" not in page


# ----------------------------------------------------------------------------- what the run can conclude


def test_the_box_says_what_rests_on_failed_accuracy_the_floor_the_gaps_and_the_hardware(four):
    _, report = four
    box = report["conclusions"]
    resting = box["Verdicts resting on a model that fails accuracy"]
    assert len(resting) == 2 and resting[0].startswith("nep89-lisic fails force_rmse (568.2 meV/Å; pass ≤ 100) and "
                                                        "energy_rmse (40 meV/atom; pass ≤ 10)")
    assert "its rdf, nve_stability, speedup, shell_locks_expansion verdicts rest on" in resting[0]
    assert not any("mace" in line or "chgnet" in line for line in resting)  # those pass accuracy (or warn)
    floor = box["Limited by the reference"]
    assert len(floor) == 1 and floor[0].startswith("rdf: the reference's own sampling noise "
                                                   "(rdf_l1_aimd_halves_max = 0.2046) is beyond the pass bound (0.15)")
    assert "nep89-lisic 0.2 (WARN)" in floor[0]
    gaps = box["Claims not measured, and why"]
    assert gaps == ["li_diffusivity (nep89-lisic, nepbench-lisic-v1, mace-mp-0-medium, chgnet-0.3.0): "
                    f"d_li_log10_ratio_abs not measured: {NO_D}"]
    other = box["Not measured or not recorded (no claim rests on it)"]
    assert "speedup_gpu_identical_n: no 'gpumd' executable on PATH" in other  # once for four models
    assert any(line.startswith("bond-angle distributions (ADF): not recorded") for line in other)
    assert any(line.startswith("MSD fit window: not recorded") for line in other)
    assert box["Hardware"] == ["Test CPU (2 logical cores); no GPU"]


def test_a_gap_that_blocks_verify_says_so():
    rows = overview.claim_matrix([_verdict("x[a]", "a", "not_measured", None, reason="task failed: boom",
                                           unexpected=True)])[1]
    assert overview.not_measured_lines(rows) == ["x (a): task failed: boom [blocks verify: exit 2]"]


# ----------------------------------------------------------------------------- figures


def test_every_caption_names_its_data_source(four):
    _, report = four
    for figure in report["figures"]:
        assert "Data: series " in figure["caption"] and " of task" in figure["caption"], figure["caption"]
    errors = next(f for f in report["figures"] if f["file"] == "figures/parity-models-errors.png")
    assert all(f"parity-{m}" in errors["caption"] for m in FOUR)
    assert "reference dft/manifest.json (sha256 dddddddddddd…)" in errors["caption"]


def test_claim_lines_come_from_the_criteria_not_from_code(four):
    _, report = four
    tasks = [f"speed-{m}" for m in FOUR]
    assert figure_bounds(report["verdicts"], tasks, ("speedup",)) == [(70000.0, "speedup: pass ≥ 70,000 ×")]
    moved = [dict(v, good=50000.0) if v["metric"].startswith("speedup") else v for v in report["verdicts"]]
    assert figure_bounds(moved, tasks, ("speedup",)) == [(50000.0, "speedup: pass ≥ 50,000 ×")]
    assert figure_bounds(report["verdicts"], tasks, ()) == []
    files = {f["file"] for f in report["figures"]}
    assert {"figures/speed-models-speedup.png", "figures/expansion-models-expansion.png",
            "figures/parity-models-errors.png"} <= files


def _png_size(png):
    return matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2]


def test_speedup_vs_n_draws_measured_ratios_and_fits_and_nothing_without_them():
    series = throughput_series()
    png = plots.speedup_vs_n_overlay_png({"m": series}, bounds=[(70000.0, "claim")])
    assert png.startswith(PNG_SIGNATURE)
    fits = {"cp2k": {"n_atoms": [32, 64], "exponent": 2.2, "prefactor_s": 0.01},
            "nep_cpu": {"n_atoms": [512, 4096], "exponent": 1.0, "prefactor_s": 5e-5}}
    with_fits = plots.speedup_vs_n_overlay_png({"m": {**series, "fits": fits}})
    assert with_fits.startswith(PNG_SIGNATURE) and with_fits != plots.speedup_vs_n_overlay_png({"m": series})
    withheld = {"identical_n": [{k: v for k, v in row.items() if k != "ratio"} for row in series["identical_n"]]}
    assert plots.speedup_vs_n_overlay_png({"m": withheld}) is None  # a ratio withheld is not drawn
    assert plots.speedup_vs_n_overlay_png({}) is None


def test_msd_marks_a_recorded_fit_window_and_the_report_says_when_none_is_recorded():
    base = md_series(0.05)
    with_window = json.loads(json.dumps(base))
    with_window["msd"]["a-Li3Si-900K"]["Li"]["fit_window_ps"] = [2.0, 6.0]
    assert plots.msd_overlay_png({"m": with_window}) != plots.msd_overlay_png({"m": base})
    assert any("MSD fit window" in line for line in plots.missing_figure_data("md_accuracy", {"m": base}))
    assert not any("MSD fit window" in line for line in plots.missing_figure_data("md_accuracy", {"m": with_window}))


def test_adf_and_vdos_are_drawn_where_recorded():
    theta = np.linspace(0, 180, 60)
    peak = np.sin(np.radians(theta)).tolist()
    adf = {"run": {"theta_deg": theta.tolist(), "triplets": {"Si-Si-Si": {"ref": peak, "model": peak}}}}
    vdos = {"run": {"freq_thz": theta.tolist(), "species": {"Li": {"ref": theta.tolist(), "model": theta.tolist()}}}}
    series = {**md_series(0.0), "adf": adf, "vdos": vdos}
    assert plots.adf_overlay_png({"m": series}).startswith(PNG_SIGNATURE)
    assert plots.vdos_overlay_png({"m": series}).startswith(PNG_SIGNATURE)
    assert plots.adf_overlay_png({"m": md_series(0.0)}) is None
    assert not any("ADF" in line or "vibrational" in line
                   for line in plots.missing_figure_data("md_accuracy", {"m": series}))


def test_force_parity_adds_a_panel_by_motif_where_components_carry_their_motif():
    series = parity_series(0.1, np.random.default_rng(2))
    plain = plots.force_parity_png(series)
    labelled = json.loads(json.dumps(series))
    for data in labelled["forces"].values():
        data["motif"] = ["amorphous" if i % 3 else "crystalline" for i in range(len(data["ref"]))]
    by_motif = plots.force_parity_png(labelled)
    assert _png_size(by_motif)[1] > 1.2 * _png_size(plain)[1]  # one more panel
    assert plots.missing_figure_data("parity", {"m": labelled}) == []
    labelled["forces"]["Li"]["motif"] = labelled["forces"]["Li"]["motif"][:-1]
    with pytest.raises(ValueError, match="motif"):
        plots.force_parity_png(labelled)


def test_force_error_distribution_by_element():
    series = parity_series(0.1, np.random.default_rng(3))
    png = plots.force_error_by_element_png({"a": series, "b": parity_series(0.3, np.random.default_rng(4))})
    assert png.startswith(PNG_SIGNATURE)
    assert plots.force_error_by_element_png({"a": {}}) is None


# ----------------------------------------------------------------------------- terminal


def test_the_terminal_table_fits_100_columns_and_footnotes_each_reason_once(four):
    _, report = four
    long = dict(report, verdicts=[dict(v, reason=v["reason"] and v["reason"] + " " + "very long words " * 20)
                                  for v in report["verdicts"]])
    text = claim_table_text(long)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.count("[1]") == len(FOUR) + 1  # four rows point to one footnote
    assert "li_diffusivity[chgnet-0.3.0]" in text.replace("\n              ", "")
    wide = claim_table_text(long, width=None)
    assert max(len(line) for line in wide.splitlines()) > 100 and "[1]" not in wide


# ----------------------------------------------------------------------------- headless browser


LAYOUT_PROBE = """<script>
const m = document.getElementById('matrix').getBoundingClientRect();
const wrap = document.querySelector('.matrix-wrap');
document.body.setAttribute('data-layout', JSON.stringify({
  bottom: m.bottom, right: m.right, width: window.innerWidth, height: window.innerHeight,
  wrapScroll: wrap.scrollWidth - wrap.clientWidth,
  pageScroll: document.documentElement.scrollWidth - document.documentElement.clientWidth}));
</script></body>"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed (scripts/ensure_chromium.sh installs it)")
def test_at_1280_by_900_the_whole_matrix_of_four_models_is_above_the_fold(four, tmp_path):
    run, _ = four
    probe = tmp_path / "probe.html"  # the report with a measuring script added: the report itself has none
    probe.write_text((run / "report.html").read_text().replace("</body>", LAYOUT_PROBE))
    dom = _chromium(["--window-size=1280,900", "--hide-scrollbars", "--dump-dom", probe.resolve().as_uri()],
                    tmp_path).stdout
    layout = json.loads(re.search(r'data-layout="([^"]+)"', dom).group(1).replace("&quot;", '"'))
    assert layout["width"] == 1280 and layout["wrapScroll"] <= 0 and layout["pageScroll"] <= 0  # no sideways scroll
    assert layout["right"] <= 1280 and layout["bottom"] <= 900, layout  # every row above the fold
    shot = tmp_path / "shot.png"
    _chromium([f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars",
               (run / "report.html").resolve().as_uri()], tmp_path)
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (900, 1280) and float(pixels[..., :3].std()) > 0.05
