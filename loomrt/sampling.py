"""Sampler settings shared by generation (loomrt/model.py) and receipt replay
(loomrt/audit.py): a leaf module, so neither needs the other to name them."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

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
