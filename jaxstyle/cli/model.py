"""`jaxstyle model info MODEL [--json]`: what a feed-forward model file holds
(:func:`jaxstyle.jobs.feedforward_model.describe_model`): a refused file is one line, exit 2."""

from __future__ import annotations

import json

from jaxstyle.jobs.feedforward_model import describe_model

SHOWN = ("architecture", "styles", "steps", "size", "objective", "vgg")


def run(args) -> int:
    return {"info": info}[args.model_command](args)


def info(args) -> int:
    details = describe_model(args.model)
    print(json.dumps(details, indent=2) if args.json else summary(details))
    return 0


def summary(details: dict) -> str:
    """The readable summary of :func:`describe_model`'s dict."""
    meta = details["metadata"]
    arch, objective = meta["architecture"], meta.get("objective") or {}
    styles = meta["styles"]
    blocks = arch["residual_blocks"]
    rows = [
        ("model", details["file"]),
        ("styles", f"{len(styles)}: " + ", ".join(f"{i} {name}" for i, name in enumerate(styles))),
        ("architecture", f"Johnson et al.'s transformer ({arch.get('kind', 'johnson2016')}): width {arch['width']}, "
                         f"{blocks} residual block{'' if blocks == 1 else 's'}, conditional instance norm over "
                         f"{arch['styles']} style{'' if arch['styles'] == 1 else 's'}"),
        ("parameters", f"{details['parameters']:,} in {details['tensors']} tensors; "
                       f"{details['thumbnails']} thumbnail{'' if details['thumbnails'] == 1 else 's'}"),
        ("trained", f"{_text(meta.get('steps'))} steps at {_text(meta.get('size'))} px"),
        ("objective", _objective(objective)),
        ("layers", f"content {_text(objective.get('content_layers'))}; style {_text(objective.get('style_layers'))}"),
        ("vgg", _vgg(meta.get("vgg"))),
        ("file", f"{details['bytes']:,} bytes ({_size(details['bytes'])}); sha256 digest {details['digest']}"),
        *((key, _text(meta[key])) for key in sorted(set(meta) - set(SHOWN))),
    ]
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label:{width}s}{value}" for label, value in rows)


def _objective(objective: dict) -> str:
    colors = objective.get("preserve_colors") or "the network's"
    weights = ", ".join(f"{name} weight {_text(objective.get(f'{name}_weight'))}"
                        for name in ("content", "style", "tv"))
    return f"{_text(objective.get('style_loss', 'gram'))} style loss; {weights}; colours: {colors}"


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.1f} KiB"


def _vgg(vgg) -> str:
    if not isinstance(vgg, dict):
        return _text(vgg)
    first = sorted(vgg, key=lambda k: (not any(w in k for w in ("sha256", "checksum", "digest")), k))
    return "; ".join(f"{key} {_text(vgg[key])}" for key in first)


def _text(value, limit: int = 120) -> str:
    """A metadata value on one line: lists joined by commas, None as "-", others as JSON."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        text = ", ".join(_text(v, limit) for v in value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
