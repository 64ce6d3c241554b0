"""The Embedder: any timm backbone → pooling → projection head → (L2-normalised) identity embedding.

The backbone is built by name through timm's one factory and used only through
its uniform interface (``forward_features``, ``num_features``), so any timm
classification model works: CNNs (B×C×H×W feature maps), NHWC models such as
Swin (``output_fmt == "NHWC"``) and ViTs (B×N×C tokens whose patch tokens form a
square grid; pass their ``img_size`` through ``backbone_kwargs``).

Input contract: ``forward`` takes a float tensor B×``in_chans``×H×W with pixel
values in [0, 1] and standardises it internally with the fixed constants
:data:`INPUT_MEAN` = 0.5 and :data:`INPUT_STD` = 0.25 (so [0, 1] maps to
[-2, 2]); callers never normalise. The model is size-agnostic for CNNs;
``EmbedderConfig.image_size`` only records the size it was trained at.

channels_last: ``model.to_channels_last()`` (or
``model.to(memory_format=torch.channels_last)``) converts the weights; inputs
may be contiguous or channels_last either way and give the same embedding.

Nothing here downloads: the backbone is always created with ``pretrained=False``;
initial weights come only from a local ``.safetensors`` file via
:func:`load_init_weights`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import reid_core  # noqa: F401  (must precede ``import timm``: makes timm importable on CPU-only hosts)
import timm

from reid_core.errors import CheckpointError
from reid_core.typed_config import TypedConfig

log = logging.getLogger(__name__)

INPUT_MEAN = 0.5
"""Fixed mean subtracted from the [0, 1] input (a radiograph's mid-grey)."""
INPUT_STD = 0.25
"""Fixed scale dividing the centred input: [0, 1] → [-2, 2]."""

EMBEDDING_DIM_RANGE: tuple[int, int] = (4, 128)
# create_model arguments the Embedder sets itself; backbone_kwargs may not override them.
_RESERVED_BACKBONE_KWARGS = frozenset({"pretrained", "in_chans", "num_classes", "global_pool", "drop_path_rate",
                                       "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path"})
_PICKLE_SUFFIXES = frozenset({".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".tar"})


# --------------------------------------------------------------------------- config

@dataclass
class EmbedderConfig(TypedConfig):
    """Every option of an :class:`Embedder`; JSON round-trips through :meth:`to_dict` / :meth:`from_dict`.

    ``backbone``: any name in ``timm.list_models()``. ``embedding_dim``: output size
    (4..128). ``pooling``: ``avg`` (global mean) or ``attention`` (learned spatial
    softmax map). ``normalize``: L2-normalise the embedding. ``head_hidden``: hidden
    width of an optional two-layer MLP head (None: one linear layer). ``dropout``:
    dropout before the head's linear layer(s). ``image_size``: the training size
    (informative). ``drop_path_rate``: stochastic depth of the backbone.
    ``backbone_kwargs``: extra JSON-able ``timm.create_model`` arguments (e.g.
    ``{"img_size": 256}`` for a ViT). Field types are checked by :class:`TypedConfig`.
    """

    RECORD_KEYS: ClassVar[tuple[str, ...]] = ("embedder",)

    backbone: str = "efficientnet_b3"
    embedding_dim: int = 64
    in_chans: int = 1
    pooling: str = "avg"  # a name in POOLINGS
    normalize: bool = True
    head_hidden: int | None = None
    dropout: float = 0.0
    image_size: int = 256
    drop_path_rate: float = 0.0
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.backbone:
            raise ValueError(f"backbone must be a non-empty timm model name, got {self.backbone!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        lo, hi = EMBEDDING_DIM_RANGE
        if not lo <= self.embedding_dim <= hi:
            raise ValueError(f"embedding_dim must be an integer in {lo}..{hi}, got {self.embedding_dim!r}")
        if self.in_chans < 1:
            raise ValueError(f"in_chans must be a positive integer, got {self.in_chans!r}")
        if self.head_hidden is not None and self.head_hidden < 1:
            raise ValueError(f"head_hidden must be None or a positive integer, got {self.head_hidden!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be a number in [0, 1), got {self.drop_path_rate!r}")
        clash = sorted(_RESERVED_BACKBONE_KWARGS & set(self.backbone_kwargs))
        if clash:
            raise ValueError(f"backbone_kwargs may not set {clash}: the Embedder sets them itself "
                             "(use the EmbedderConfig fields in_chans / drop_path_rate instead)")
        try:
            json.dumps(self.backbone_kwargs, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"backbone_kwargs must be JSON-serialisable: {exc}") from None


# --------------------------------------------------------------------------- pooling

class Pooling(nn.Module):
    """Protocol: a B×C×H×W feature map → (pooled B×C, spatial weights B×H×W summing to 1)."""

    def forward(self, fmap: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - protocol
        raise NotImplementedError


class AvgPooling(Pooling):
    """Global average pooling; its attention map is uniform (1 / H·W everywhere)."""

    def forward(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = fmap.shape
        weights = fmap.new_full((b, h, w), 1.0 / (h * w), dtype=torch.float32)
        return fmap.mean(dim=(2, 3)), weights


class AttentionPooling(Pooling):
    """Learned spatial attention: 1×1 conv → one logit per location → softmax over H·W → weighted sum.

    The conv starts at zero, so an untrained model pools exactly like :class:`AvgPooling`.
    The softmax runs in float32 even under autocast.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels, 1, kernel_size=1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = fmap.shape
        logits = self.score(fmap).float().reshape(b, h * w)
        weights = logits.softmax(dim=1).reshape(b, h, w)
        pooled = torch.einsum("bchw,bhw->bc", fmap, weights.to(fmap.dtype))
        return pooled, weights


POOLINGS: dict[str, Callable[[int], Pooling]] = {
    "avg": lambda channels: AvgPooling(),
    "attention": AttentionPooling,
}
"""The registry of poolings (``EmbedderConfig.pooling``): name → factory of the backbone's channel count."""


def make_pooling(name: str, channels: int) -> Pooling:
    """The pooling called ``name`` over ``channels`` feature maps; ValueError naming the registered ones."""
    if name not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {name!r}")
    return POOLINGS[name](channels)


def _make_head(in_features: int, out_features: int, hidden: int | None, dropout: float) -> nn.Sequential:
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features))
    return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_features))


# --------------------------------------------------------------------------- embedder

def _create_backbone(config: EmbedderConfig) -> nn.Module:
    if not timm.is_model(config.backbone):
        close = difflib.get_close_matches(config.backbone, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean one of {close}?" if close else ""
        raise ValueError(
            f"unknown timm backbone {config.backbone!r}.{hint} List valid names with "
            f"`import timm; timm.list_models('*effic*')` (any glob pattern).")
    return timm.create_model(
        config.backbone, pretrained=False, in_chans=config.in_chans, num_classes=0, global_pool="",
        drop_path_rate=config.drop_path_rate, **config.backbone_kwargs)


class Embedder(nn.Module):
    """Identity embedding network around any timm backbone.

    ``Embedder(config)`` or ``Embedder(backbone="resnet10t", embedding_dim=32)``
    (keyword arguments override fields of ``config``, or of the defaults).
    ``forward(x)`` returns B×D embeddings (unit norm when ``config.normalize``);
    ``forward(x, return_attention=True)`` returns ``(embedding, attention)`` with
    attention B×h×w on the backbone's feature grid, summing to 1 per image (uniform
    for avg pooling; upsample it to the image for display).
    """

    def __init__(self, config: EmbedderConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = EmbedderConfig(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.backbone = _create_backbone(config)
        self.num_features: int = int(self.backbone.num_features)
        self.pool = make_pooling(config.pooling, self.num_features)
        self.head = _make_head(self.num_features, config.embedding_dim, config.head_hidden, config.dropout)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    # -- boundary checks ------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        c = self.config.in_chans
        if not isinstance(x, Tensor):
            raise ValueError(f"Embedder input must be a torch.Tensor of shape B×{c}×H×W, got {type(x).__name__}")
        if x.ndim != 4:
            hint = " (a single H×W image: x[None, None]; a B×H×W batch: x[:, None])" if x.ndim in (2, 3) else ""
            raise ValueError(f"Embedder input must be a 4-D B×{c}×H×W tensor, got {x.ndim}-D "
                             f"shape {tuple(x.shape)}{hint}")
        if x.shape[1] != c:
            raise ValueError(f"Embedder expects {c} input channel(s) (B×{c}×H×W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"Embedder input must be a float tensor with values in [0, 1], got dtype {x.dtype}"
                             + (" (divide uint8 images by 255)" if x.dtype == torch.uint8 else ""))
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"Embedder input has an empty dimension: shape {tuple(x.shape)}")

    def _feature_map(self, x: Tensor) -> Tensor:
        """Backbone features as B×C×h×w whatever the backbone's output format."""
        f = self.backbone.forward_features((x - INPUT_MEAN) / INPUT_STD)
        if isinstance(f, (list, tuple)):  # a few timm models return several maps; the last is the deepest
            f = f[-1]
        if f.ndim == 4:
            if getattr(self.backbone, "output_fmt", "NCHW") == "NHWC" or (
                    f.shape[1] != self.num_features and f.shape[-1] == self.num_features):
                f = f.permute(0, 3, 1, 2)
            return f
        if f.ndim == 3:  # ViT-like: B×N×C tokens; drop class/register tokens, fold patches into a grid
            f = f[:, int(getattr(self.backbone, "num_prefix_tokens", 0)):]
            n = f.shape[1]
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f"backbone {self.config.backbone!r} returned {n} patch tokens, not a square "
                                 "grid; use a square input")
            return f.transpose(1, 2).reshape(f.shape[0], f.shape[2], side, side)
        raise ValueError(f"backbone {self.config.backbone!r} returned features of unsupported shape "
                         f"{tuple(f.shape)} (expected B×C×H×W, B×H×W×C or B×N×C)")

    def _pooled(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_input(x)
        fmap = self._feature_map(x)
        if fmap.shape[1] != self.num_features:
            raise ValueError(f"backbone returned {fmap.shape[1]} channels, expected num_features="
                             f"{self.num_features}")
        return self.pool(fmap)

    # -- public API -------------------------------------------------------------
    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x: float B×in_chans×H×W in [0, 1] → B×D embedding (and B×h×w attention if asked)."""
        pooled, attention = self._pooled(x)
        z = self.head(pooled)
        if self.config.normalize:
            z = F.normalize(z, p=2.0, dim=1)
        return (z, attention) if return_attention else z

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Inference embeddings (eval mode, no grad, float32); the training flag is restored after."""
        with self._inference():
            return self.forward(x).float()

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """Pooled backbone features B×num_features (before the head), in eval mode without grad.

        These are the activations a Fréchet distance between image sets is computed on.
        """
        with self._inference():
            return self.pooled_features(x).float()

    def pooled_features(self, x: Tensor) -> Tensor:
        """Pooled backbone features B×num_features, differentiable w.r.t. ``x`` (train/eval mode is the caller's).

        What :meth:`features` returns without gradients; GAN inversion matches images through it.
        """
        return self._pooled(x)[0]

    def to_channels_last(self) -> "Embedder":
        """Convert the weights to channels_last memory format (faster convs on GPU); returns self."""
        return self.to(memory_format=torch.channels_last)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def extra_repr(self) -> str:
        c = self.config
        return (f"backbone={c.backbone!r}, num_features={self.num_features}, pooling={c.pooling!r}, "
                f"embedding_dim={c.embedding_dim}, normalize={c.normalize}")


# --------------------------------------------------------------------------- initial weights

@dataclass
class InitWeightsReport:
    """What :func:`load_init_weights` did, key by key (backbone namespace, no ``backbone.`` prefix)."""

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    skipped_classifier: list[str]
    adapted: list[str]


def _conversion_hint(path: Path) -> str:
    dst = path.with_suffix(".safetensors").name
    return ("cxr-reid never unpickles weight files (they can run arbitrary code). Convert it once, "
            "in an environment you trust, with:\n"
            f"  python -c \"import torch; from safetensors.torch import save_file; "
            f"sd = torch.load('{path.name}', map_location='cpu', weights_only=True); "
            f"sd = sd.get('state_dict', sd); "
            f"save_file({{k: v.contiguous().clone() for k, v in sd.items()}}, '{dst}')\"")


def _first_conv_keys(backbone: nn.Module) -> set[str]:
    first = getattr(backbone, "pretrained_cfg", {}).get("first_conv")
    names = [first] if isinstance(first, str) else list(first or [])
    keys = {f"{n}.weight" for n in names}
    if not keys:  # fall back to the first 4-D weight in registration order
        for k, v in backbone.state_dict().items():
            if v.ndim == 4:
                keys.add(k)
                break
    return keys


def _classifier_prefixes(backbone: nn.Module) -> tuple[str, ...]:
    cls = getattr(backbone, "pretrained_cfg", {}).get("classifier")
    names = [cls] if isinstance(cls, str) else list(cls or [])
    return tuple(f"{n}." for n in names)


def load_init_weights(model: Embedder, path: str | Path) -> InitWeightsReport:
    """Load initial backbone weights from a local ``.safetensors`` file into ``model.backbone``.

    Keys may be a bare timm state dict or carry ``module.`` (DDP) / ``backbone.``
    (an Embedder checkpoint) prefixes. Classifier keys (timm's
    ``pretrained_cfg['classifier']``) are ignored. A first conv saved with 3 input
    channels is adapted to a 1-channel model by summing the RGB kernels (and a
    1-channel one to 3 channels by repeating it / 3); this is logged. Missing and
    unexpected keys are logged and returned; any other shape mismatch, or a file
    sharing no key with the backbone, raises :class:`CheckpointError`.
    Pickle-based files (``.pth``, ``.pt``, ``.bin``…) are refused.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        if path.suffix.lower() in _PICKLE_SUFFIXES:
            raise CheckpointError(f"{path}: refusing a pickle-based weight file; only .safetensors is "
                                  f"accepted. {_conversion_hint(path)}")
        raise CheckpointError(f"{path}: initial weights must be a .safetensors file")
    if not path.is_file():
        raise CheckpointError(f"{path}: initial weights file not found")
    try:
        raw = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc

    target = model.backbone.state_dict()
    first_convs = _first_conv_keys(model.backbone)
    classifier = _classifier_prefixes(model.backbone)
    to_load: dict[str, Tensor] = {}
    unexpected, skipped, adapted, mismatched = [], [], [], []
    for key, value in raw.items():
        k = key.removeprefix("module.").removeprefix("backbone.")
        if classifier and k.startswith(classifier):
            skipped.append(k)
            continue
        if k not in target:
            unexpected.append(k)
            continue
        want = target[k].shape
        if value.shape != want:
            if k in first_convs and value.ndim == 4 and value.shape[0] == want[0] and value.shape[2:] == want[2:]:
                if value.shape[1] == 3 and want[1] == 1:
                    value = value.sum(dim=1, keepdim=True)
                    log.info("init weights: summed the RGB kernels of %s into one input channel (3 → 1)", k)
                elif value.shape[1] == 1 and want[1] == 3:
                    value = value.repeat(1, 3, 1, 1) / 3.0
                    log.info("init weights: spread the 1-channel kernels of %s over 3 channels (1 → 3)", k)
                else:
                    mismatched.append(f"{k}: file {tuple(value.shape)} vs model {tuple(want)}")
                    continue
                adapted.append(k)
            else:
                mismatched.append(f"{k}: file {tuple(value.shape)} vs model {tuple(want)}")
                continue
        to_load[k] = value
    if mismatched:
        raise CheckpointError(f"{path}: {len(mismatched)} tensor(s) do not fit backbone "
                              f"{model.config.backbone!r}: " + "; ".join(mismatched[:10])
                              + (" …" if len(mismatched) > 10 else ""))
    if not to_load:
        raise CheckpointError(f"{path}: no tensor matches backbone {model.config.backbone!r} "
                              f"(file keys start with {sorted(raw)[:3]})")
    missing = sorted(set(target) - set(to_load))
    model.backbone.load_state_dict(to_load, strict=False)
    report = InitWeightsReport(loaded=sorted(to_load), missing=missing, unexpected=sorted(unexpected),
                               skipped_classifier=sorted(skipped), adapted=adapted)
    log.info("init weights from %s: %d tensors loaded, %d missing, %d unexpected, %d classifier keys ignored",
             path.name, len(report.loaded), len(missing), len(unexpected), len(skipped))
    if missing:
        log.warning("init weights: missing keys (left at random init): %s", missing[:20])
    if unexpected:
        log.warning("init weights: unexpected keys (ignored): %s", report.unexpected[:20])
    return report
