"""Published-checkpoint converters: a torchvision-based model in each source layout gives the
same logits before and after conversion."""

import pytest
import torch
import torchvision
from torch import nn

import gcp
import gcp.zoo
from gcp.zoo.convert import convert_file, convert_state_dict, main


class SourceISQRTCOV(nn.Module):
    """The iSQRT-COV ResNet as the original repository lays it out (torchvision backbone with a
    stride-1 last stage, ``layer_reduce``/``layer_reduce_bn``/``fc``), written independently of
    ``zoo``: covariance, 5 Newton–Schulz iterations, upper triangle, linear."""

    def __init__(self, num_classes=10, reduced=16, last_stride=1, method="isqrt"):
        super().__init__()
        tv = torchvision.models.resnet18()
        self.conv1, self.bn1, self.relu, self.maxpool = tv.conv1, tv.bn1, tv.relu, tv.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = tv.layer1, tv.layer2, tv.layer3, tv.layer4
        if last_stride == 1:
            self.layer4[0].conv1.stride = (1, 1)
            self.layer4[0].downsample[0].stride = (1, 1)
        self.layer_reduce = nn.Conv2d(512, reduced, 1, bias=False)
        self.layer_reduce_bn = nn.BatchNorm2d(reduced)
        self.fc = nn.Linear(reduced * (reduced + 1) // 2, num_classes)
        self.method = method
        for m in self.modules():  # non-trivial BN statistics, so a mis-mapped key shows
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                nn.init.uniform_(m.weight, 0.5, 1.5)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        f = torch.relu(self.layer_reduce_bn(self.layer_reduce(self.features(x))))
        cov = gcp.covariance(f)
        root = gcp.isqrtm(cov, 5) if self.method == "isqrt" else gcp.sqrtm(cov, "pade")
        return self.fc(gcp.triu_vec(root))


def _training_layout(flat, module_wrapped):
    """Re-key a flat state dict like the repositories' training checkpoints."""
    index = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    prefix = "features.module." if module_wrapped else "features."
    out = {}
    for k, v in flat.items():
        head, _, rest = k.partition(".")
        if head in index:
            out[prefix + index[head] + "." + rest] = v
        elif head == "layer_reduce":
            out["representation.conv_dr_block.0." + rest] = v
        elif head == "layer_reduce_bn":
            out["representation.conv_dr_block.1." + rest] = v
        elif head == "fc":
            out["classifier." + rest] = v
    return out


@pytest.mark.parametrize("layout", ["flat", "training", "training-module"])
def test_isqrt_cov_conversion_gives_identical_logits(layout, tmp_path):
    torch.manual_seed(0)
    src = SourceISQRTCOV().eval()
    state = src.state_dict()
    if layout != "flat":
        state = {"state_dict": _training_layout(state, layout == "training-module"), "epoch": 65}
    src_path = str(tmp_path / "src.pth.tar")
    torch.save(state, src_path)
    dst = str(tmp_path / "dst.safetensors")
    arch = convert_file(src_path, dst, "isqrt-cov")
    assert arch == dict(architecture="gcp_resnet18", reduced_dim=16, num_classes=10, method="isqrt", iters=5,
                        last_stride=1)
    model = gcp.zoo.create_model("gcp_resnet18", num_classes=10, reduced_dim=16, pretrained=True,
                             pretrained_cfg_overlay=dict(file=dst)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), src(x), rtol=1e-5, atol=1e-5)


def test_svd_pade_conversion_keeps_stride_two(tmp_path):
    torch.manual_seed(1)
    src = SourceISQRTCOV(last_stride=2, method="svd").eval()
    src_path = str(tmp_path / "svd.pth.tar")
    torch.save({"state_dict": _training_layout(src.state_dict(), False)}, src_path)
    dst = str(tmp_path / "svd.safetensors")
    assert main([src_path, dst, "--format", "svd-pade"]) == 0
    with pytest.raises(gcp.zoo.CheckpointError, match="last_stride=2"):
        gcp.zoo.create_model("gcp_resnet18", num_classes=10, reduced_dim=16, method="svd", backward="pade",
                         pretrained=True, pretrained_cfg_overlay=dict(file=dst))
    model = gcp.zoo.create_model("gcp_resnet18", num_classes=10, reduced_dim=16, method="svd", backward="pade",
                             last_stride=2, pretrained=True, pretrained_cfg_overlay=dict(file=dst)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), src(x), rtol=1e-4, atol=1e-5)


def test_converter_errors(tmp_path, capsys):
    with pytest.raises(gcp.zoo.CheckpointError, match="source keys of no known layout: decoder.w"):
        convert_state_dict({"decoder.w": torch.ones(1)}, "isqrt-cov")
    with pytest.raises(gcp.zoo.CheckpointError, match="unknown format"):
        convert_state_dict({}, "mpn-cov")
    bad = str(tmp_path / "missing.pth")
    assert main([bad, str(tmp_path / "o.safetensors"), "--format", "isqrt-cov"]) == 2
    assert "not found" in capsys.readouterr().err
    existing = tmp_path / "exists.safetensors"
    existing.write_bytes(b"keep me")
    with pytest.raises(SystemExit):
        main([bad, str(existing), "--format", "isqrt-cov"])
    assert existing.read_bytes() == b"keep me"
