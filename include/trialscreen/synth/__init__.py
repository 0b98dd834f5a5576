"""``trialscreen synth``: a deterministic synthetic population with its expected outcome.

``generate`` streams patients part by part (bounded memory; ``shard``, in a process pool):
each patient is drawn (``population``), rendered into the feeds its route assigns
(``writers``) and evaluated by the independent oracle (``oracle``), whose answers go to
``expected/``.
"""

from trialscreen.synth.generate import (
    GENERATOR_VERSION,
    SynthSummary,
    cache_key,
    generate,
    is_complete,
)

__all__ = ["GENERATOR_VERSION", "SynthSummary", "cache_key", "generate", "is_complete"]
