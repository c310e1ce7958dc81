"""Where a trained model looked (seed 002): Grad-CAM maps of a run on images (`hpml cam`, cli/cam.py).

Per image, a PNG with the input, the class activation map and their overlay side by side,
titled with the predicted class and its probability, in <run>/cam/. `--gif` also assembles
the overlays of a folder of frames (sorted by name) into an animated GIF. The maps come from
the grad-cam package (pytorch-grad-cam) on the layer each model declares (`cam_target()`);
segmentation models use its SemanticSegmentationTarget on the chosen class's predicted pixels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hpml_bench.errors import HpmlError
from hpml_bench.registry import unknown_choice
from hpml_bench.train.trained_run import load_trained, run_device

FILE_TAGS = {"gradcam": "gradcam", "gradcam++": "gradcampp", "scorecam": "scorecam", "eigencam": "eigencam"}


def cam_methods() -> dict:
    try:
        from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM
    except ImportError as exc:  # an optional extra: say how to get it, not a traceback
        raise HpmlError("hpml cam needs the grad-cam package: pip install 'hpml-bench[cam]' (or pip install grad-cam)") from exc

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM, "eigencam": EigenCAM}


@dataclass
class CamResult:
    image: np.ndarray  # float [H, W, 3] in [0, 1], as the model saw it
    heat: np.ndarray  # float [H, W] in [0, 1]
    overlay: np.ndarray  # uint8 [H, W, 3]
    label: str  # class name
    prob: float


def write_cams(run_dir: Path, images: Path, checkpoint: str, method: str, target: str | None, gif: bool,
               device: str = "auto") -> list[Path]:
    """Write one PNG per image (and the GIF) into <run>/cam/; returns the paths written."""
    methods = cam_methods()
    if method not in methods:
        raise unknown_choice("CAM method", method, methods)
    files = image_files(images, gif)
    run = load_trained(run_dir, checkpoint)
    run.model.to(run_device(device))
    layer, reshape = cam_layer(run.model, run.model_name)
    names, preprocess = run.class_names(), run.image_preprocess()
    category = target_index(target, names)
    cam = methods[method](model=run.model, target_layers=[layer], reshape_transform=reshape)
    out_dir = run.folder.cam_dir
    written, overlays = [], []
    try:
        for file in files:
            shown, batch = preprocess(file)
            result = explain(cam, run.model, shown, batch, category, run.task, names)
            written.append(save_figure(result, out_dir / f"{file.stem}_{FILE_TAGS[method]}.png", method))
            overlays.append(result.overlay)
    finally:
        cam.activations_and_grads.release()
    if gif:
        written.append(save_gif(overlays, out_dir / f"{images.name}_{FILE_TAGS[method]}.gif"))
    return written



def image_files(images: Path, gif: bool) -> list[Path]:
    """The image itself, or a folder's image files sorted by name."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if images.is_file():
        if gif:
            raise HpmlError(f"--gif needs images=<a folder of frames>, not the file {images}")
        return [images]
    if not images.is_dir():
        raise HpmlError(f"images={images}: no such file or folder")
    files = sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise HpmlError(f"images={images} holds no image files ({', '.join(IMG_EXTENSIONS[:5])}, ...)")
    return files


def cam_layer(model: torch.nn.Module, name: str):
    """(target layer, reshape_transform) the model declares for CAM."""
    declare = getattr(model, "cam_target", None)
    if declare is None:
        raise HpmlError(f"model {name} declares no CAM target layer (no conv maps to explain); "
                        f"cam works for resnet, inception_v3, hct, iformer, unet, fcn and segnet runs")
    return declare()


def target_index(target: str | None, names: list[str]) -> int | None:
    """None (the predicted class), or the class named or numbered by `target`."""
    if target is None:
        return None
    if target in names:
        return names.index(target)
    if target.lstrip("-").isdigit():
        if 0 <= int(target) < len(names):
            return int(target)
        raise HpmlError(f"target={target}: the model has classes 0 to {len(names) - 1}")
    raise unknown_choice("class", target, names)


def explain(cam, model, shown: torch.Tensor, batch: torch.Tensor, category: int | None, task: str,
            names: list[str]) -> CamResult:
    """The CAM of one image for `category` (default: the predicted class)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import (
        ClassifierOutputTarget,
        SemanticSegmentationTarget,
    )

    batch = batch.to(next(model.parameters()).device)
    with torch.no_grad():
        probs = model(batch).float().softmax(1)[0].cpu()
    if task == "segmentation":
        pred = probs.argmax(0)
        if category is None:  # the most common non-background class (background if none)
            counts = torch.bincount(pred.flatten(), minlength=probs.shape[0])[1:]
            category = int(counts.argmax()) + 1 if counts.sum() else 0
        mask = (pred == category).float()
        prob = float(probs[category][mask.bool()].mean()) if mask.any() else 0.0
        if not mask.any():  # nothing predicted as that class: explain its score everywhere
            mask = torch.ones_like(mask)
        target = SemanticSegmentationTarget(category, mask.numpy())
    else:
        category = int(probs.argmax()) if category is None else category
        prob = float(probs[category])
        target = ClassifierOutputTarget(category)
    heat = cam(input_tensor=batch, targets=[target])[0]
    image = shown.permute(1, 2, 0).float().numpy() / 255
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    overlay = show_cam_on_image(image, heat, use_rgb=True)
    return CamResult(image, heat, overlay, names[category], prob)


def save_figure(result: CamResult, path: Path, method: str) -> Path:
    """Input | heat map | overlay, titled with the class and its probability (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, picture, title in zip(axes, (result.image, result.heat, result.overlay),
                                  ("input", f"{method} heat map", "overlay")):
        ax.imshow(picture, cmap="jet" if picture.ndim == 2 else None, vmin=0, vmax=1 if picture.ndim == 2 else None)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{path.stem.rsplit('_', 1)[0]}: {result.label} ({result.prob:.1%})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def save_gif(frames: list[np.ndarray], path: Path, ms_per_frame: int = 100) -> Path:
    """The overlays as an animated GIF, looping (atomic write)."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    os.replace(tmp, path)
    return path
