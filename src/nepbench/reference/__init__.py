"""The project's DFT reference set: spec → candidate pool → DIRECT selection → CP2K labels.

Layout under `reference_data/`:
  spec.toml                         what to build (families, pool sizes, selections, seed)
  dft/cache/<hash>.json.gz          one labelled item (or a `.failed.json` for an SCF failure),
                                    keyed by the sha256 of its inputs; a rerun skips finished items
  dft/<motif>.extxyz.xz             assembled frames per motif family with energy/forces/stress
  dft/manifest.json                 CP2K version, settings, input-template hash, per-frame and
                                    per-file sha256, wall times, the train/test split, selection
Everything is written atomically; a killed build resumes where it stopped.

Package layout (one job per module): `spec` (spec.toml: families, selection versions, loader),
`selection` (candidate pools, DIRECT picks, the split), `uncertain_pick` (an active-learning
round's ensemble-σ cut before DIRECT), `labelling` (the label cache and
`label_items`), `assembly` (frame files and manifest), `verification` (manifest checks, frames
read back). Everything is importable from `nepbench.reference`.
"""

from __future__ import annotations

from .spec import (  # noqa: F401
    REPO_ROOT,
    DEFAULT_ROOT,
    MOTIFS,
    DESCRIPTORS,
    SELECT_BY,
    DEFAULT_UNCERTAIN_FRACTION,
    SelectionVersion,
    SELECTION_VERSIONS,
    LATEST_SELECTION_VERSION,
    Family,
    ReferenceSpec,
    SPEC_KEYS,
    FAMILY_KEYS,
    load_spec,
    params_at,
)
from .labelling import (  # noqa: F401
    item_hash,
    cached_label,
    input_template_sha256,
    TEMPLATE_INFO,
    cache_path,
    read_cached,
    BuildReport,
    label_items,
)
from .assembly import (  # noqa: F401
    CURRENT_ITEM_INFO,
    frame_sha256,
    assemble,
)
from .verification import (  # noqa: F401
    MANIFEST_FRAME_INFO,
    VerifyResult,
    load_manifest,
    verify,
    load_frames,
    data_sha256,
)
from .uncertain_pick import (  # noqa: F401
    UncertainCut,
    n_uncertain,
    uncertain_cut,
    frame_sigma_ev_per_a,
    sampler_members,
)
from .selection import (  # noqa: F401
    candidate_seed,
    generate_candidates,
    Selection,
    GAMMA_ONLY_MIN_WIDTH_A,
    narrow_cells,
    recorded_picks,
    manifest_picks,
    family_label,
    pick_family,
    FamilyPick,
    pick_family_detail,
    origin_test_runs,
    select_items,
)

__all__ = [
    "BuildReport",
    "CURRENT_ITEM_INFO",
    "DEFAULT_ROOT",
    "DEFAULT_UNCERTAIN_FRACTION",
    "DESCRIPTORS",
    "FAMILY_KEYS",
    "Family",
    "FamilyPick",
    "GAMMA_ONLY_MIN_WIDTH_A",
    "LATEST_SELECTION_VERSION",
    "MANIFEST_FRAME_INFO",
    "MOTIFS",
    "REPO_ROOT",
    "ReferenceSpec",
    "SELECTION_VERSIONS",
    "SELECT_BY",
    "SPEC_KEYS",
    "Selection",
    "SelectionVersion",
    "TEMPLATE_INFO",
    "UncertainCut",
    "VerifyResult",
    "assemble",
    "cache_path",
    "candidate_seed",
    "data_sha256",
    "family_label",
    "frame_sha256",
    "frame_sigma_ev_per_a",
    "generate_candidates",
    "input_template_sha256",
    "item_hash",
    "cached_label",
    "label_items",
    "load_frames",
    "load_manifest",
    "load_spec",
    "manifest_picks",
    "n_uncertain",
    "narrow_cells",
    "origin_test_runs",
    "params_at",
    "pick_family",
    "pick_family_detail",
    "read_cached",
    "recorded_picks",
    "sampler_members",
    "select_items",
    "uncertain_cut",
    "verify",
]
