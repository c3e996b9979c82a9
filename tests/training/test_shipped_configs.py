"""Every shipped config builds a model and loss that train at 96x128 and 256x320 on the CPU."""
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.training.config import load_config, shipped_config_names, spec_from_config
from edgedepth.training.losses import DepthLoss
from edgedepth.training.model import create_model


@pytest.mark.parametrize("name", shipped_config_names())
@pytest.mark.parametrize("height,width", [(96, 128), (256, 320)])
def test_config_model_runs_forward_and_backward(name, height, width):
    torch.manual_seed(0)
    cfg = load_config(name, [f"data.height={height}", f"data.width={width}", "model.pretrained=none"])
    spec = spec_from_config(cfg)
    model = create_model(spec)
    loss_fn = DepthLoss.from_config(cfg.loss)
    image = torch.randn(2, 3, height, width)
    target = torch.rand(2, 1, height, width) * (spec.max_depth - 1.0) + 0.5
    mask = torch.rand(2, 1, height, width) > 0.1
    pred = model(image)
    assert pred.shape == (2, 1, height, width)
    assert 0.0 < float(pred.detach().min()) and float(pred.detach().max()) < spec.max_depth
    total, terms = loss_fn(pred, target, mask)
    total.backward()
    assert torch.isfinite(total) and set(terms) == set(loss_fn.term_names)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.encoder.conv1.weight.grad.abs().sum() > 0 and model.head.conv.weight.grad.abs().sum() > 0
