"""The torchvision shim: `import reid_core` makes timm and EfficientNet-B3 usable here."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_import_reid_core_then_efficientnet_b3_one_channel():
    proc = _run(
        """
        import reid_core, timm, torch
        from reid_core._compat.torchvision_ops import status
        m = timm.create_model("efficientnet_b3", pretrained=False, in_chans=1, num_classes=0)
        assert m.conv_stem.in_channels == 1, m.conv_stem
        with torch.no_grad():
            y = m(torch.rand(2, 1, 64, 64))
        assert y.shape == (2, 1536), y.shape
        assert torch.isfinite(y).all()
        print("STATUS", status())
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STATUS native" in proc.stdout or "STATUS shimmed" in proc.stdout


def test_shim_is_needed_exactly_when_torchvision_ops_do_not_load():
    """Where the shim is applied, plain `import timm` really fails; where it is not, it works."""
    status = _run("import reid_core; from reid_core._compat.torchvision_ops import status; print(status())")
    assert status.returncode == 0, status.stderr[-2000:]
    plain = _run("import timm")
    if status.stdout.strip() == "shimmed":
        assert plain.returncode != 0 and "torchvision::nms" in plain.stderr
    else:
        assert status.stdout.strip() in ("native", "absent")


def test_shim_leaves_compiled_ops_unavailable_with_torchvision_message():
    proc = _run(
        """
        import reid_core, torch, torchvision
        from reid_core._compat.torchvision_ops import status
        if status() != "shimmed":
            print("SKIP"); raise SystemExit(0)
        try:
            torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
        except RuntimeError as exc:
            print("RAISED", "custom C++ ops" in str(exc))
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SKIP" in proc.stdout or "RAISED True" in proc.stdout
