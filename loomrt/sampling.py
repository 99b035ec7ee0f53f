"""Sampler settings shared by generation (loomrt/model.py) and receipt replay
(loomrt/audit.py): a leaf module, so neither needs the other to name them."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Sequence

from . import _lib, errors


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Sampler settings. ``temperature=0`` is greedy decoding."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int = 0

    def apply(self, session: Any) -> None:
        """Set these values on a session handle (``Session._h``)."""
        _lib.session_set(session, temperature=self.temperature, top_k=self.top_k,
                         top_p=self.top_p, min_p=self.min_p,
                         repeat_penalty=self.repetition_penalty, seed=self.seed)


def sampling_params(sampling: Dict[str, Any]) -> SamplingParams:
    """SamplingParams from keyword settings; unknown names raise InvalidArgumentError."""
    names = {f.name for f in dataclasses.fields(SamplingParams)}
    unknown = sorted(set(sampling) - names)
    if unknown:
        raise errors.InvalidArgumentError(f"unknown sampling setting(s) {unknown}; known: {sorted(names)}")
    return SamplingParams(**sampling)


class StopScanner:
    """Cuts streamed text at the first stop string. ``feed`` takes each new piece and returns
    what is safe to show now: text that cannot be the start of a stop string (the last
    ``len(longest stop) - 1`` characters are held back); once a stop string appears,
    ``stopped`` is set and ``feed`` returns the text before it. ``finish`` returns what is
    held back (with a last piece), cut at a stop string. Without stop strings nothing is held."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def _cut(self) -> int:
        return min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)

    def feed(self, text: str) -> str:
        if self.stopped:  # nothing after a stop string
            return ""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out
        cut = self._cut()
        if cut >= 0:
            self.stopped = True
            out, self.pending = self.pending[:cut], ""
            return out
        if len(self.pending) <= self.hold:
            return ""
        keep = len(self.pending) - self.hold
        out, self.pending = self.pending[:keep], self.pending[keep:]
        return out

    def finish(self, text: str = "") -> str:
        if self.stopped:
            return ""
        self.pending += text
        cut = self._cut() if self.stops else -1
        if cut >= 0:
            self.stopped = True
            self.pending = self.pending[:cut]
        out, self.pending = self.pending, ""
        return out
