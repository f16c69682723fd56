"""Small text helpers shared by the layers that parse user-written lists."""

from __future__ import annotations


def split_top_level(text: str, separator: str, brackets: str = "()[]") -> list[str]:
    """``text`` split at ``separator`` outside brackets (``brackets`` lists opening/closing pairs):
    ``"a,b(c,d),e"`` → ``["a", "b(c,d)", "e"]``. Unbalanced text is split as far as it balances."""
    depth_change = {o: 1 for o in brackets[0::2]} | {c: -1 for c in brackets[1::2]}
    parts, depth, current = [], 0, ""
    for char in text:
        depth += depth_change.get(char, 0)
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts
