"""Contact sheet: a patients × studies grid of phantom images with short captions (for the README)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from reid_core.data.phantom.export import to_uint8
from reid_core.data.phantom.difficulty import Difficulty
from reid_core.data.phantom.generator import PhantomGenerator, patient_id

DEFAULT_PATIENTS = (13, 11, 23, 34)  # seed 0: a normal woman, pacemaker + sternotomy, cardiomegaly → effusion, mass


def contact_sheet(path: str | Path | None = None, seed: int = 0, size: int = 256,
                  patients: Sequence[int] = DEFAULT_PATIENTS, n_studies: int = 4, captions: bool = True,
                  difficulty: Difficulty = "standard") -> Image.Image:
    """Render ``patients`` × ``n_studies`` images into one grid (rows = patients, columns = studies).

    Each tile is captioned with patient, date, view and findings (hard phantom:
    also the anatomy template, ``T07``). Saves a PNG when ``path`` is given and
    returns the sheet as a PIL image.
    """
    gen = PhantomGenerator(seed=seed, size=size, n_studies=n_studies, difficulty=difficulty)
    pad, cap = 4, (14 if captions else 0)
    tile_h = size + cap
    sheet = Image.new("L", (n_studies * (size + pad) + pad, len(patients) * (tile_h + pad) + pad), 0)
    draw = ImageDraw.Draw(sheet)
    font = _font(max(9, size // 24))
    for r, i in enumerate(patients):
        anat = gen.patient(i)
        who = patient_id(i) + (f" T{gen.template_index(i):02d}" if difficulty == "hard" else "")
        for c, spec in enumerate(gen.studies(i)[:n_studies]):
            x, y = pad + c * (size + pad), pad + r * (tile_h + pad)
            sheet.paste(Image.fromarray(to_uint8(gen.render_spec(spec)), mode="L"), (x, y + cap))
            if captions:
                text = f"{who} {anat.sex}{int(spec.age)} {spec.date:%Y-%m-%d} {spec.view}  {spec.labels}"
                draw.text((x + 2, y + 1), text, fill=235, font=font)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path, optimize=True)
    return sheet


def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()
