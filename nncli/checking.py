"""``nncli gradcheck``'s work: check the gradients of a config's model, and report them as
table rows and notes (the CLI prints them; nothing here prints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nncli.build import gradcheck_config
from nncli.config import load_config
from nncli.nn.gradcheck import DEFAULT_SAMPLES, GradcheckReport, ParamCheck, Progress

GRADCHECK_HEADER = ("param", "checked", "entries", "max_rel_error", "h", "status")


def parse_samples(text: str | None) -> int | None:
    """``--samples``: None (not given) is :data:`~nncli.nn.gradcheck.DEFAULT_SAMPLES`,
    ``all`` is None (every entry), else a positive integer; anything else is a ValueError
    with the message for the option."""
    if text is None:
        return DEFAULT_SAMPLES
    if text.strip().lower() == "all":
        return None
    try:
        samples = int(text)
    except ValueError:
        samples = 0
    if samples < 1:
        raise ValueError(f"{text!r} is not a positive integer or 'all'")
    return samples


def steps_of(check: ParamCheck) -> str:
    """The step(s) of a parameter's worst entry: ``h``, or ``h,h/2`` for a Richardson
    estimate, or ``-`` when no entry was compared."""
    if check.worst_h is None:
        return "-"
    if check.worst_richardson:
        return f"{check.worst_h:.2g},{check.worst_h / 2:.2g}"
    return f"{check.worst_h:.2g}"


@dataclass
class GradcheckResult:
    """A gradcheck's report and what the CLI shows of it.

    ``rows`` follow :data:`GRADCHECK_HEADER`; ``retried`` holds ``"W1 12"`` for each
    parameter with retried entries; ``failures`` one sentence per failing parameter
    (empty when the check passed).
    """

    report: GradcheckReport
    rows: list[list[str]] = field(default_factory=list)
    skipped_at_kink: int = 0
    retried: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checked: int = 0
    entries: int = 0

    @property
    def ok(self) -> bool:
        return self.report.ok


def _row(name: str, check: ParamCheck, tol: float) -> list[str]:
    status = "ok" if check.max_rel_error <= tol else "FAIL"
    error = "0" if check.max_rel_error == 0 else f"{check.max_rel_error:.2e}"
    return [name, f"{check.checked:,}", f"{check.entries:,}", error, steps_of(check), status]


def _failure(name: str, check: ParamCheck) -> str:
    analytic, numeric = check.worst_pair or (float("nan"), float("nan"))
    return (f"{name} max relative error {check.max_rel_error:.3g} at index "
            f"{check.worst_index} (analytic {analytic:.6g}, numeric {numeric:.6g} at "
            f"h={steps_of(check)})")


def summarize(report: GradcheckReport, tol: float) -> GradcheckResult:
    """The rows, notes and totals of ``report``, each parameter judged at ``tol``."""
    params = report.params
    return GradcheckResult(
        report=report,
        rows=[_row(name, p, tol) for name, p in params.items()],
        skipped_at_kink=sum(p.skipped_at_kink for p in params.values()),
        retried=[f"{name} {p.retried:,}" for name, p in params.items() if p.retried],
        failures=[_failure(name, params[name]) for name in report.failing],
        checked=sum(p.checked for p in params.values()),
        entries=sum(p.entries for p in params.values()),
    )


def check_config_file(path: str | Path, overrides: Sequence[str], samples: int | None,
                      tol: float, progress: Progress | None = None) -> GradcheckResult:
    """Gradient-check the model of the config at ``path`` (with ``--set`` ``overrides``)
    on a few of its training examples, in float64; ``samples`` entries per parameter (None:
    all), ``progress`` as :data:`~nncli.nn.gradcheck.Progress`."""
    cfg = load_config(path, tuple(overrides))
    return summarize(gradcheck_config(cfg, samples=samples, tol=tol, progress=progress), tol)
