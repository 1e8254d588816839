"""The attack's outputs: reconstructions as PNG, results as JSON, one self-contained HTML page."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from medfed.attacks.harness import AttackOutcome, ScenarioResult
from medfed.files import atomic_write

_UPSCALE = 4
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
img { image-rendering: pixelated; }
"""


@dataclass(frozen=True)
class ReportFiles:
    """Where the outputs went.

    Attributes:
        html: The HTML report.
        json: Metrics and configuration as JSON.
        images: PNG strips: ``ground_truth.png`` and one per scenario, in the report's order.
    """

    html: Path
    json: Path
    images: tuple[Path, ...]


def write_outputs(outcome: AttackOutcome, output_dir: Path) -> ReportFiles:
    """Writes the PNG strips, ``results.json`` and ``report.html`` under ``output_dir``."""
    strips = {"ground_truth": png_strip(outcome.results[0].match.targets)}
    strips |= {r.scenario.name: png_strip(r.match.reconstructions) for r in outcome.results}
    images = []
    for name, data in strips.items():
        path = output_dir / "reconstructions" / f"{name}.png"
        atomic_write(path, data)
        images.append(path)
    results = output_dir / "results.json"
    atomic_write(results, json.dumps(outcome_to_dict(outcome), indent=2).encode())
    report = output_dir / "report.html"
    atomic_write(report, render_html(outcome, strips).encode())
    return ReportFiles(report, results, tuple(images))


def png_strip(images: torch.Tensor, *, scale: int = _UPSCALE) -> bytes:
    """PNG bytes of ``(B, 1, H, W)`` images in ``[0, 1]`` side by side, upscaled ``scale`` times."""
    pixels = (images[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    gap = np.full((pixels.shape[1], 2), 255, dtype=np.uint8)
    row = np.concatenate([part for image in pixels for part in (image, gap)][:-1], axis=1)
    size = (row.shape[1] * scale, row.shape[0] * scale)
    picture = Image.fromarray(row).resize(size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def outcome_to_dict(outcome: AttackOutcome) -> dict[str, Any]:
    """The outcome's numbers and configuration as plain JSON-able values."""
    return {
        "config": dataclasses.asdict(outcome.config),
        "site": outcome.site,
        "update_norm": outcome.update_norm,
        "num_parameters": outcome.num_parameters,
        "baseline": {
            "psnr": _floats(outcome.baseline.psnr),
            "ssim": _floats(outcome.baseline.ssim),
        },
        "results": [_result_to_dict(r) for r in outcome.results],
    }


def render_html(outcome: AttackOutcome, strips: dict[str, bytes]) -> str:
    """The report page, with every image embedded as base64 PNG."""
    config = outcome.config
    sections = [
        "<h1>Gradient inversion (Geiping et al. 2020) against one site's update</h1>",
        f"<p>Attacked site: <b>{html.escape(outcome.site)}</b>, {config.batch_size} image(s) of "
        f"{config.image_size}x{config.image_size}, model <code>{html.escape(config.model)}</code> "
        f"({outcome.num_parameters} parameters), unprotected update norm "
        f"{outcome.update_norm:.3g}. Labels: {_label_note(config.labels)}.</p>",
        _table(outcome),
        "<h2>Reconstructions</h2>",
        _images(strips),
        "<h2>Assumptions</h2>",
        _assumptions(outcome),
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(json.dumps(dataclasses.asdict(config), indent=2))}</pre>",
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>medfed gradient inversion</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>"
    )


def _table(outcome: AttackOutcome) -> str:
    header = ["protection", "the attacker sees", "PSNR (dB)", "SSIM", "PSNR per image"]
    header += ["labels", "seconds"]
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for result in outcome.results:
        cells = [
            result.scenario.name,
            result.scenario.description,
            f"{result.psnr:.2f}",
            f"{result.ssim:.3f}",
            ", ".join(f"{v:.1f}" for v in _floats(result.match.psnr)),
            _label_cell(result),
            f"{result.seconds:.1f}",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    base = outcome.baseline
    cells = [
        "random",
        "random images (baseline)",
        f"{float(base.psnr.mean()):.2f}",
        f"{float(base.ssim.mean()):.3f}",
        ", ".join(f"{v:.1f}" for v in _floats(base.psnr)),
        "",
        "",
    ]
    rows.append("<tr>" + "".join(f"<td><i>{html.escape(c)}</i></td>" for c in cells) + "</tr>")
    return "".join(rows) + "</table>"


def _images(strips: dict[str, bytes]) -> str:
    rows = ["<table>"]
    for name, data in strips.items():
        label = "ground truth" if name == "ground_truth" else name
        source = base64.b64encode(data).decode()
        image = f"<img src='data:image/png;base64,{source}' alt='{html.escape(label)}'>"
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{image}</td></tr>")
    return "".join(rows) + "</table>"


def _assumptions(outcome: AttackOutcome) -> str:
    config = outcome.config
    items = [
        "The site sends the gradient of one local step on one batch (FedSGD); the attacker knows "
        "the model, the batch size and the image size.",
        "Victim BatchNorm layers (resnet, densenet) use running statistics (eval mode); "
        "convnet has no normalisation layer, convnet-gn uses GroupNorm.",
        f"DP: the update is clipped to L2 norm C = {config.clip_norm:g} and N(0, (sigma*C)^2) "
        f"is added to each of its {outcome.num_parameters} coordinates, so the noise has norm "
        "about "
        f"sigma*{config.clip_norm:g}*sqrt({outcome.num_parameters}) = "
        f"{config.clip_norm * math.sqrt(outcome.num_parameters):.3g}*sigma. "
        "Guarantees of practical value need sigma around 1 or more.",
        "Secure aggregation: the attacker sees only the sum of K sites' updates, knows all K*B "
        "labels and reconstructs K*B images; each of the attacked site's images is scored against "
        "its best-matching reconstruction.",
        "Scores: images mapped to [0, 1] by the true image's range; reconstructions matched to "
        "the true images by the assignment maximising the total PSNR; SSIM with an 11x11 "
        "Gaussian window.",
    ]
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def _label_note(labels: str) -> str:
    if labels == "idlg":
        return "inferred with iDLG (Zhao et al. 2020), but given under secure aggregation"
    return "given to the attacker"


def _label_cell(result: ScenarioResult) -> str:
    if result.labels_correct is None:
        return "given"
    return "iDLG: right" if result.labels_correct else "iDLG: wrong"


def _result_to_dict(result: ScenarioResult) -> dict[str, Any]:
    return {
        "scenario": dataclasses.asdict(result.scenario),
        "psnr": result.psnr,
        "ssim": result.ssim,
        "psnr_per_image": _floats(result.match.psnr),
        "ssim_per_image": _floats(result.match.ssim),
        "attack_loss": result.attack_loss,
        "labels_correct": result.labels_correct,
        "seconds": result.seconds,
    }


def _floats(values: torch.Tensor) -> list[float]:
    return [float(v) for v in values.reshape(-1)]
