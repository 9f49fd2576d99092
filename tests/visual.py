"""The visual checks every figure of a report must pass, from the figure itself as matplotlib drew it:
its printed size (page or column width), no font below 7 pt at that size, no two texts whose drawn
bounding boxes overlap, no text cut off at the figure's edge. ``checked(monkeypatch)`` records them for
every figure saved through ``analysis.style.save`` while a test draws."""

from __future__ import annotations

from dataclasses import dataclass

from analysis import style


@dataclass
class Checked:
    name: str  # the PNG's file name
    width_in: float
    height_in: float
    smallest_font_pt: float
    overlaps: list
    cut_off: list

    def problems(self) -> list[str]:
        found = []
        if abs(self.width_in - (style.COLUMN if self.name.endswith("-column.png") else style.PAGE)) > 1e-6:
            found.append(f"{self.width_in} in wide")
        if not 0.8 <= self.height_in <= 9.0:  # a figure taller than a page helps no one
            found.append(f"{self.height_in} in tall")
        if self.smallest_font_pt < style.MIN_FONT_PT:
            found.append(f"a {self.smallest_font_pt} pt font")
        found += [f"texts overlap: {a!r} and {b!r}" for a, b in self.overlaps]
        found += [f"text cut off: {t!r}" for t in self.cut_off]
        return found


def checked(monkeypatch) -> list[Checked]:
    """A list that fills with the checks of every figure saved from now on in this test."""
    results: list[Checked] = []
    save = style.save

    def record(fig, path, width):
        width_in, height_in = fig.get_size_inches()
        overlaps, cut_off = style.text_overlaps(fig), style.texts_outside(fig)
        png = save(fig, path, width)
        results.append(Checked(png.name, round(float(width_in), 6), round(float(height_in), 3),
                               style.smallest_font(fig), overlaps, cut_off))
        return png

    monkeypatch.setattr(style, "save", record)
    return results
