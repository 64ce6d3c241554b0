"""Out-of-distribution uploads: radiograph-likeness of the pixels, and the embedding's distance against the
workspace's own scale (reid_core.ood), then the pages' warnings beside their decisions (AppTest)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from reid_core import ood
from test_app import open_page, png_bytes, table_with, texts


def smooth_film(seed: int = 0, shape: tuple[int, int] = (160, 128)) -> np.ndarray:
    """A greyscale film-like image: smooth anatomy-sized blobs plus a little grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    img = 0.3 + 0.4 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.02) \
        + 0.4 * np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.02)
    img = img + rng.normal(0, 0.03, shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def encoded(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_pixel_checks_pass_films_and_name_what_is_wrong_with_other_images():
    film = smooth_film()
    assert ood.pixel_checks(film) == []
    assert ood.pixel_checks(ood.raster_preview("f.png", encoded(film))) == []
    assert ood.pixel_checks(ood.raster_preview("f.jpg", encoded(film, "JPEG"))) == []
    noise = (np.random.default_rng(1).random((200, 200)) * 255).astype(np.uint8)
    assert any("as in noise" in r for r in ood.pixel_checks(noise))
    strip = smooth_film(shape=(40, 300))
    assert any("aspect ratio is 7.5:1" in r for r in ood.pixel_checks(strip))
    photo = np.stack([film, np.roll(film, 20, axis=1), 255 - film], axis=-1)
    assert any("colour image" in r for r in ood.pixel_checks(ood.raster_preview("p.jpg", encoded(photo, "JPEG"))))
    grey_rgb = np.stack([film] * 3, axis=-1)  # a greyscale film saved as RGB is still a film
    assert ood.pixel_checks(ood.raster_preview("g.png", encoded(grey_rgb))) == []
    rgba = np.dstack([grey_rgb, np.full(film.shape, 255, np.uint8)])
    assert ood.pixel_checks(rgba) == []  # an opaque alpha channel is harmless
    rgba[:, :40, 3] = 0
    assert any("transparent pixels" in r for r in ood.pixel_checks(ood.raster_preview("t.png", encoded(rgba))))
    assert any("nearly uniform" in r for r in ood.pixel_checks(np.full((100, 100), 128, np.uint8)))
    assert ood.raster_preview("scan.dcm", b"DICM") is None and ood.raster_preview("x.png", b"not a png") is None


def test_distance_reference_flags_what_is_far_from_every_patient_not_a_new_patient():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 8))
    films = np.repeat(centres, 3, axis=0) + rng.normal(scale=0.1, size=(120, 8))
    patients = np.repeat(np.arange(40), 3)
    ref = ood.DistanceReference.from_embeddings(films, patients)
    assert ref.n_images == 120 and ref.quantile == 0.99
    # the threshold is an other-patient distance, far above the same-patient scatter (~0.1 * sqrt(2 * 8))
    assert ref.threshold > 1.0
    new_patients = rng.normal(size=(200, 8)) + rng.normal(scale=0.1, size=(200, 8))
    nearest = np.min(np.linalg.norm(films[None] - new_patients[:, None], axis=2), axis=1)
    flagged = np.mean([ref.check(d) is not None for d in nearest])
    assert flagged < 0.1  # films of unseen patients from the same distribution pass
    far = centres.mean(0) + 10 * np.ones(8)
    reason = ref.check(float(np.min(np.linalg.norm(films - far, axis=1))))
    assert reason is not None and "farther than 99 %" in reason
    assert ref.check(float("nan")) is not None
    sampled = ood.DistanceReference.from_embeddings(films, patients, max_queries=50)
    assert sampled.n_images == 50 and sampled.threshold == pytest.approx(ref.threshold, rel=0.5)
    with pytest.raises(ValueError):
        ood.DistanceReference.from_embeddings(films[:1], patients[:1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo workspace built with the shipped embedder (a trained one: the tiny test embedder's
    distances are all within resampling noise, so no distance scale can be read from it)."""
    import warnings

    from reid_core.demo import SHIPPED_CHECKPOINTS, build_demo_workspace

    if not (SHIPPED_CHECKPOINTS / "embedder" / "model.safetensors").exists():
        pytest.skip("no shipped embedder under checkpoints/")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_demo_workspace(tmp_path_factory.mktemp("ood") / "demo", patients=24, n_boot=20,
                                    progress=False, echo=lambda _: None).workspace


def store_png(ws, row: int) -> bytes:
    from reid_core.data.manifest import load_manifest
    from reid_core.data.store import ImageStore

    store = ImageStore(ws.images_path(ws.image_sizes()[-1]), load_manifest(ws.manifest_path))
    return png_bytes(store[row])


def test_pages_warn_on_out_of_distribution_uploads_and_still_show_the_decision(demo):
    at = open_page(demo, "verification")
    at.radio(key="verify_a_source").set_value("upload").run()
    at.file_uploader(key="verify_a_upload").set_value(("film.png", store_png(demo, 0), "image/png")).run()
    assert not at.exception and "may not be a frontal" not in texts(at, "warning")  # a film: no caveat
    assert any("Decision" in m.value for m in at.markdown)
    noise = (np.random.default_rng(0).random((64, 400)) * 255).astype(np.uint8)
    at.file_uploader(key="verify_a_upload").set_value(("strip.png", png_bytes(noise), "image/png")).run()
    assert not at.exception
    warned = texts(at, "warning")
    assert "Image A may not be a frontal chest radiograph" in warned
    assert "aspect ratio" in warned and "as in noise" in warned
    assert any("Decision" in m.value for m in at.markdown)  # the decision is shown…
    assert "Out of distribution: this decision involves an upload" in warned  # …with the warning beside it
    film = np.asarray(Image.open(io.BytesIO(store_png(demo, 3))))
    photo = np.stack([film, np.roll(film, 9, axis=1), 255 - film], axis=-1)
    at.file_uploader(key="verify_a_upload").set_value(("photo.png", png_bytes(photo), "image/png")).run()
    assert "colour image" in texts(at, "warning") and any("Decision" in m.value for m in at.markdown)
    rgba = np.dstack([np.stack([film] * 3, axis=-1), np.where(np.arange(film.shape[1]) < 40, 0, 255)
                      .astype(np.uint8)[None, :].repeat(film.shape[0], 0)])
    at.file_uploader(key="verify_a_upload").set_value(("cut.png", png_bytes(rgba), "image/png")).run()
    assert "transparent pixels" in texts(at, "warning")
    flat = np.full((256, 256), 128, np.uint8)  # the embedding check: far from every film of the workspace
    at.file_uploader(key="verify_a_upload").set_value(("flat.png", png_bytes(flat), "image/png")).run()
    assert "from the nearest workspace image, farther than 99 %" in texts(at, "warning")


def test_retrieval_warns_on_an_out_of_distribution_query(demo):
    at = open_page(demo, "retrieval")
    at.radio(key="search_query_source").set_value("upload").run()
    noise = (np.random.default_rng(2).random((128, 128)) * 255).astype(np.uint8)
    at.file_uploader(key="search_query_upload").set_value(("noise.png", png_bytes(noise), "image/png")).run()
    assert not at.exception
    warned = texts(at, "warning")
    assert "as in noise" in warned and "the query does not look like this workspace's radiographs" in warned
    assert len(table_with(at, "rank", "distance")) == at.slider(key="search_k").value  # results still shown
    at.file_uploader(key="search_query_upload").set_value(("film.png", store_png(demo, 5), "image/png")).run()
    assert "does not look like" not in texts(at, "warning")
