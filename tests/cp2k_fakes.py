"""A stand-in for `CP2KEngine._execute` that writes CP2K-shaped MD files without running CP2K."""

from __future__ import annotations

from pathlib import Path

from nepbench.engines import cp2k as cp2k_mod
from nepbench.errors import EngineCrashed


class FakeCP2K:
    """Stands in for `CP2KEngine._execute`: writes .ener, -pos-1.xyz, .restart and SCF lines like CP2K."""

    def __init__(self, fail: bool = False, extra_steps: int = 0) -> None:
        self.fail = fail
        self.extra_steps = extra_steps  # run this many steps past what STEPS asks (a misread input)
        self.inputs: list[str] = []

    def __call__(self, directory: Path, input_text: str) -> cp2k_mod.RunOutput:
        self.inputs.append(input_text)
        if self.fail:
            (directory / "nb-1.ener").write_text("partial")
            raise EngineCrashed("cp2k exited with code 137 (fake)")
        n_steps = int(next(ln.split()[1] for ln in input_text.splitlines() if ln.strip().startswith("STEPS")))
        start = 0
        for line in input_text.splitlines():
            if "RESTART_FILE_NAME" in line:
                start = int(Path(line.split()[1]).read_text())
        steps = start + n_steps + self.extra_steps  # like CP2K: STEPS counts from the restart's step
        coords = [ln.split() for ln in input_text.split("&COORD\n")[1].split("    &END COORD")[0].splitlines()]
        ener, xyz = ["# header"], []
        for step in range(start, steps + 1):
            ener.append(f"{step} {step * 1.0} 0.01 {300 + step} {-31.0 - step * 1e-3} -30.99 {0.0 if step == 0 else 2.0}")
            xyz.append(f"{len(coords)}\n i = {step}, time = {step * 1.0:.3f}, E = -31.0")
            xyz += [f"{c[0]} {float(c[1]) + 0.01 * step} {c[2]} {c[3]}" for c in coords]
        (directory / "nb-1.ener").write_text("\n".join(ener) + "\n")
        (directory / "nb-pos-1.xyz").write_text("\n".join(xyz) + "\n")
        if "&FORCES" in input_text.split("&MOTION", 1)[-1]:  # MOTION/PRINT/FORCES EACH MD k: Hartree/Bohr
            every = int(input_text.split("&FORCES", 1)[1].split("MD", 1)[1].split()[0])
            frc = []
            for step in range(start, steps + 1):
                if step % every == 0:
                    frc.append(f"{len(coords)}\n i = {step}, time = {step * 1.0:.3f}, E = -31.0")
                    frc += [f"{c[0]} {0.001 * step} {-0.002 * (i + 1)} 0.0" for i, c in enumerate(coords)]
            (directory / "nb-frc-1.xyz").write_text("\n".join(frc) + "\n")
        (directory / "nb-1.restart").write_text(str(steps))
        # one SCF run per force evaluation (the start geometry, then each step); step k takes 5 + k
        text = "".join(f"  *** SCF run converged in {5 + step:5d} steps ***\n" for step in range(start, steps + 1))
        (directory / "out.out").write_text(text + "PROGRAM ENDED AT")
        return cp2k_mod.RunOutput(directory=directory, text=text + "PROGRAM ENDED AT", wall_s=5.0)
