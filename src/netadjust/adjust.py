"""The adjustment step: widen the layers with the highest FUR, narrow the lowest (pure).

Official code's rule (docs/method.md#adjustment-rule): in round ``t``, ``k_t = max(round(k - t * k_decay), 0)``
layers move each way. The layer at rank ``r`` (0 = the most extreme FUR) moves by
``round(a_r * initial_width)`` with ``a_r = max(arch_lr - r * arch_lr_decay, 0)``: steps are
relative to the layer's width at the start of the search, so they do not compound. Narrowing
never goes below ``min_width``. ``round`` is Python's (halves to even), as in the official code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class AdjustRule:
    k: int = 6
    k_decay: float = 0.5
    arch_lr: float = 0.15
    arch_lr_decay: float = 0.01
    min_width: int = 4

    def layers_to_move(self, round_index: int) -> int:
        """``k_t``: how many layers are widened (and as many narrowed) in round ``round_index``."""
        return max(round(self.k - round_index * self.k_decay), 0)

    def rate(self, rank: int) -> float:
        """``a_r``: the relative step of the layer at ``rank`` (0 = most extreme)."""
        return max(self.arch_lr - rank * self.arch_lr_decay, 0.0)

    def check(self, num_keys: int) -> None:
        if 2 * self.k > num_keys:
            raise ConfigError(f"--k {self.k} is larger than half the number of searchable layers ({num_keys}): "
                              f"the widened and narrowed sets would overlap; use --k {num_keys // 2} or less")


def adjust_widths(widths: Mapping[str, int], initial: Mapping[str, int], fur: Mapping[str, float],
                  rule: AdjustRule, round_index: int) -> tuple[dict[str, int], dict[str, int]]:
    """New widths after one adjustment, and the change of every key that moved.

    Keys are ranked by FUR with Python's stable sort: among equal FURs the earlier key is
    widened first, and, since the narrowed side reads the ranking from its end, the later key
    is narrowed first.
    """
    count = rule.layers_to_move(round_index)
    ranked = sorted(widths, key=lambda key: fur[key], reverse=True)
    new = dict(widths)
    for r, key in enumerate(ranked[:count]):
        new[key] += round(rule.rate(r) * initial[key])
    for r, key in enumerate(ranked[::-1][:count]):
        floor = min(widths[key], rule.min_width)  # never below the minimum, never widened by narrowing
        new[key] = max(new[key] - round(rule.rate(r) * initial[key]), floor)
    return new, {key: new[key] - widths[key] for key in widths if new[key] != widths[key]}
