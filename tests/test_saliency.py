"""Occlusion and Grad-CAM: the occlusion map finds planted evidence, Grad-CAM equals the
chain rule written out on a tiny net, the agreement numbers and the box mass mean what they say."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from generator.methods import saliency
from generator.nets.pathway import Pathway


def red_detector(size: int = 32) -> Pathway:
    """fc8[0] = the mean 'redness' (red minus green, rectified) over a 4 x 4 pool5 grid; fc8[1]
    its negative. Normalization is the identity with mean 0.5, so the occluder is mid-grey."""
    net = nn.Module()
    conv = nn.Conv2d(3, 1, 1, bias=False)
    conv.weight.data = torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1) * 0.5  # normalized x = (x - 0.5) / 1
    net.features = nn.Sequential(conv, nn.ReLU())
    net.avgpool = nn.AdaptiveAvgPool2d(4)
    eye = nn.Linear(16, 16, bias=False)
    eye.weight.data = torch.eye(16)
    eye2 = nn.Linear(16, 16, bias=False)
    eye2.weight.data = torch.eye(16)
    out = nn.Linear(16, 2, bias=False)
    out.weight.data = torch.stack([torch.ones(16), -torch.ones(16)])
    net.classifier = nn.Sequential(eye, nn.ReLU(), eye2, nn.ReLU(), out)
    return Pathway(net, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0), input_size=size)


def test_occlusion_peaks_where_the_class_evidence_is():
    pathway = red_detector(32)
    image = torch.full((3, 32, 32), 0.5)
    image[0, 20:28, 4:12] = 1.0  # a red square: the only evidence for class 0
    heat = saliency.occlusion_map(pathway, image, 0, patch=6, stride=2)
    peak = divmod(int(heat.argmax()), 32)
    assert 20 <= peak[0] < 28 and 4 <= peak[1] < 12, peak
    assert heat[:10, 18:].abs().max() < 1e-6  # far from the square, hiding pixels changes nothing
    assert saliency.mass_inside(heat, (4, 20, 8, 8)) > 0.4
    assert saliency.mass_inside(heat, (20, 0, 12, 10)) == pytest.approx(0.0, abs=1e-6)


def test_grad_cam_equals_the_chain_rule_by_hand():
    torch.manual_seed(0)
    net = nn.Module()
    net.features = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
    net.classifier = nn.Sequential(nn.Linear(5 * 4 * 4, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
    pathway = Pathway(net, input_size=16)
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    cls = 2
    got = saliency.grad_cam(pathway, image, cls)

    with torch.no_grad():
        maps = pathway.trunk(image.unsqueeze(0))[0]  # (5, 4, 4)
        fc6, fc7, fc8 = net.classifier[0], net.classifier[2], net.classifier[4]
        pre6 = fc6.weight @ maps.flatten() + fc6.bias
        pre7 = fc7.weight @ pre6.clamp_min(0) + fc7.bias
        # d fc8[cls] / d pool5 = W6^T D6 W7^T D7 w8[cls], D = diag(pre > 0)
        upstream = (pre7 > 0).float() * fc8.weight[cls]
        upstream = (pre6 > 0).float() * (fc7.weight.T @ upstream)
        grad = (fc6.weight.T @ upstream).view(5, 4, 4)
        weights = grad.mean(dim=(1, 2))
        cam = (weights.view(5, 1, 1) * maps).sum(0).clamp_min(0)
        expected = F.interpolate(cam[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
    assert cam.max() > 0  # the test would be vacuous on an all-zero map
    assert torch.allclose(got, expected, atol=1e-6)


def test_agreement_numbers():
    a = torch.arange(64.0).view(8, 8)
    assert saliency.rank_correlation(a, a * 3 + 1, grid=8) == pytest.approx(1.0)
    assert saliency.rank_correlation(a, -a, grid=8) == pytest.approx(-1.0)
    assert saliency.top_overlap(a, a, 0.25) == pytest.approx(1.0)
    assert saliency.top_overlap(a, -a, 0.25) == pytest.approx(0.0)
    half = torch.zeros(8, 8)
    half[:, :4] = 1.0
    assert saliency.mass_inside(half, (0, 0, 2, 8)) == pytest.approx(0.5)  # x, y, w, h


def test_overlay_keeps_the_image_and_marks_the_peak():
    image = torch.full((3, 16, 16), 0.5)
    heat = torch.zeros(16, 16)
    heat[3, 5] = 1.0
    out = saliency.overlay(image, heat)
    assert out.shape == image.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert out[:, 3, 5].sum() > out[:, 10, 10].sum() + 0.5  # bright where the map peaks


def test_run_picks_the_top_scoring_images_and_reports_agreement(tiny_context):
    ctx = tiny_context(n=6)
    result = saliency.run(ctx, {"images": 2})
    top = torch.argsort(ctx.features.fc8[:, ctx.class_index], descending=True)[:2].tolist()
    assert result.numbers["images"] == top
    assert [p.key for p in result.pictures] == [f"img{i}-{m}" for i in top for m in ("original", "occlusion", "gradcam")]
    for picture in result.pictures[1:3]:
        assert -1 <= picture.numbers["rank_correlation"] <= 1 and 0 <= picture.numbers["top_iou"] <= 1
