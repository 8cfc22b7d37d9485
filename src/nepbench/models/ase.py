"""Comparator models that are no NEP: ASE calculators from installed packages (source kind "ase").

Such a model (e.g. CHGNet or SevenNet) is an ASE calculator made by an importable factory
(`factory = "module:attribute"`, with `arguments` and the weights file passed as
`weights_argument`) from a weights file inside an installed package (`package`, `version`, `file`
relative to site-packages), checked by sha256 and never cached: `pip install` is its fetch. A
package missing here (or at another version) is `ModelUnavailable` (its tasks are skipped with the
reason); a factory that cannot be imported, a missing weights file or a sha256 mismatch is a
ModelError naming it. docs/comparators.md says why and how they are compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError, ModelUnavailable
from .records import ModelRecord
from .registry import _FACTORY, registry_path
from .verify import check_hash


def installed_version(package: str) -> str | None:
    """The installed version of distribution `package`, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def ase_install_problem(record: ModelRecord) -> str | None:
    """Why the package of ASE-calculator model `record` cannot be used here (not installed, or at a
    version other than the registry's), or None. Reads package metadata only (imports nothing)."""
    package, version = record.source["package"], record.source["version"]
    found = installed_version(package)
    hint = f"pip install {package}=={version} (or `make setup`, which installs requirements-comparators.txt)"
    if found is None:
        return f"model {record.name}: package {package} is not installed: {hint}"
    if found != version:
        return f"model {record.name}: package {package} {found} is installed, the registry pins {version}: {hint}"
    return None


def ase_weights_path(record: ModelRecord) -> Path:
    """Where the weights file of ASE-calculator model `record` lies in its installed package (the
    `file` of its source, relative to the folder the distribution is installed in), whether or not
    it is there. Raises ModelUnavailable when the package is not installed."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(record.source["package"])
    except metadata.PackageNotFoundError:
        raise ModelUnavailable(ase_install_problem(record) or record.name) from None
    return Path(distribution.locate_file(record.source["file"])).resolve()


def import_object(spec: str, where: str) -> Any:
    """The object `module:attribute[.attribute...]` names (an ASE calculator factory).

    Raises ModelError naming `where` (the registry file and model) when the module cannot be
    imported or lacks the attribute, or the object is not callable.
    """
    import importlib

    if not _FACTORY.match(spec):
        raise ModelError(f"{where}: unknown calculator {spec!r} (expected 'module:attribute')")
    module_name, attribute = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"{where}: unknown calculator {spec!r}: cannot import {module_name} ({exc})") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{where}: unknown calculator {spec!r}: {module_name} has no attribute {attribute}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{where}: calculator {spec!r} is not callable")
    return obj


def verify_ase_model(record: ModelRecord, import_factory: bool = True) -> Path:
    """The weights file of ASE-calculator model `record`, checked: its package installed at the
    pinned version (else ModelUnavailable: the comparator is skipped), the file present with the
    registry's size and sha256, and the factory importable (`import_factory`; importing it loads the
    package, e.g. torch, in a few seconds). Any other problem is a ModelError naming it."""
    problem = ase_install_problem(record)
    if problem:
        raise ModelUnavailable(problem)
    where = f"{record.registry_file or registry_path()} [models.{record.name}]"
    path = ase_weights_path(record)
    if not path.is_file():
        raise ModelError(f"{path}: weights file of model {record.name} not found in the installed "
                         f"{record.source['package']} {record.source['version']} ({where} file "
                         f"{record.source['file']!r})")
    size = record.source_size_bytes
    if size is not None and path.stat().st_size != size:
        raise ModelError(f"{path}: size {path.stat().st_size} bytes, {where} expects {size}")
    check_hash(path, record.source_sha256, f"the weights of model {record.name} ({where})")
    if import_factory:
        import_object(record.source["factory"], where)
    return path
