"""The row every part of ``python -m bench.chaos`` reports, and the table they
make: what the robustness issue asks a documented run to show (inputs tried,
crashes, sessions dropped that should not have been, writes lost)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs


@attrs.frozen
class ChaosRow:
    """One target of one part (fuzz, hostile, slow, crash, limits).

    ``wrongly_dropped`` counts bystander sessions cut off by another
    connection's misbehaviour; ``lost_writes`` counts acknowledged writes
    missing (or unacknowledged ones half there) after a restart. ``failures``
    counts any other check of the target that did not hold, each explained in
    ``note``."""

    part: str
    target: str
    inputs: int
    crashes: int = 0
    wrongly_dropped: int = 0
    lost_writes: int = 0
    failures: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return not (self.crashes or self.wrongly_dropped or self.lost_writes or self.failures)


HEADER = ("part", "target", "inputs", "crashes", "dropped", "lost", "failed", "s", "note")


def render(rows: Iterable[ChaosRow]) -> str:
    """A fixed-width table, one line per row, totals last."""
    rows = list(rows)
    cells = [HEADER] + [
        (
            r.part,
            r.target,
            str(r.inputs),
            str(r.crashes),
            str(r.wrongly_dropped),
            str(r.lost_writes),
            str(r.failures),
            f"{r.seconds:.1f}",
            r.note,
        )
        for r in rows
    ]
    cells.append(
        (
            "total",
            f"{len(rows)} targets",
            str(sum(r.inputs for r in rows)),
            str(sum(r.crashes for r in rows)),
            str(sum(r.wrongly_dropped for r in rows)),
            str(sum(r.lost_writes for r in rows)),
            str(sum(r.failures for r in rows)),
            f"{sum(r.seconds for r in rows):.1f}",
            "",
        )
    )
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER) - 1)]
    out = []
    for line in cells:
        out.append(
            "  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        )
    return "\n".join(s.rstrip() for s in out)
