"""B-cos layers against explicit computations and the original PyTorch / transformers modules."""
import pytest
import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.masking_utils import AttentionMaskInterface
from transformers.modeling_utils import AttentionInterface
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from bcos.nn import (BCOS_ATTENTION, GATES, BcosLayerNorm, BcosLinear, BcosRMSNorm, BcosScale, DynamicActivation,
                     GatedActivation, explanation_mode, is_explanation_mode)

def dynamic_linearity_residual(module: nn.Module, x: torch.Tensor) -> float:
    """max |J(x)·x - f(x)| with J the Jacobian in explanation mode (0 for a dynamic linear map)."""
    with explanation_mode():
        out = module(x)
        jac = torch.autograd.functional.jacobian(module, x)  # [*out, *in]
    jx = (jac.reshape(out.numel(), x.numel()) @ x.reshape(-1)).reshape(out.shape)
    return (jx - out).abs().max().item()


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_bcos_linear_with_b1_and_raw_weights_is_the_original_linear():
    linear = nn.Linear(7, 5)
    x = torch.randn(4, 7)
    exact = BcosLinear.from_linear(linear, b=1.0, normalize_weights=False, keep_bias=True)
    assert torch.equal(exact(x), linear(x))
    no_bias = BcosLinear.from_linear(linear, b=1.0, normalize_weights=False)
    torch.testing.assert_close(no_bias(x), x @ linear.weight.T, rtol=0, atol=1e-12)
    assert no_bias.weight is linear.weight  # shared, so tied weights stay tied


@pytest.mark.parametrize("b", [1.5, 2.0, 2.5])
@pytest.mark.parametrize("normalize", [True, False])
def test_bcos_linear_matches_the_explicit_formula(b, normalize):
    torch.manual_seed(0)
    layer = BcosLinear(6, 3, b=b, normalize_weights=normalize, eps=1e-6)
    x = torch.randn(5, 6)
    w = layer.weight.detach()
    w_hat = w / w.norm(dim=1, keepdim=True)
    cos = (x @ w_hat.T) / (x.norm(dim=1, keepdim=True) + 1e-6)
    linear_path = x @ (w_hat if normalize else w).T
    expected = linear_path * (cos**2 + 1e-6) ** ((b - 1) / 2)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    # |cos|^(B-1) up to the ε smoothing
    torch.testing.assert_close(layer(x), linear_path * cos.abs() ** (b - 1), rtol=1e-3, atol=1e-6)


def test_bcos_linear_gradient_is_finite_at_zero_cosine_for_b_below_2():
    layer = BcosLinear(2, 1, b=1.5)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0]]))
    x = torch.tensor([[0.0, 1.0]], requires_grad=True)  # orthogonal to the weight: cos = 0
    layer(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_bcos_linear_zero_weight_row_outputs_zero_with_finite_gradients(normalize):
    # e.g. a padding embedding row tied to a language-model head
    layer = BcosLinear(3, 2, b=2.0, normalize_weights=normalize)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5]]))
    x = torch.tensor([[0.3, -1.0, 2.0]], requires_grad=True)
    out = layer(x)
    assert out[0, 0].item() == 0.0
    weight = layer.weight[1] / layer.weight[1].norm() if normalize else layer.weight[1]
    linear = weight @ x[0]
    cosine = linear / ((x[0].norm() + layer.eps) * weight.norm())
    expected = linear * (cosine.square() + layer.eps).sqrt()
    torch.testing.assert_close(out[0, 1], expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("make", [
    lambda: BcosLinear(6, 4, b=2.0),
    lambda: BcosLayerNorm.from_layer_norm(nn.LayerNorm(6)),
    lambda: BcosRMSNorm(6, eps=1e-6),
    lambda: GatedActivation("gelu", ACT2FN["gelu"]),
    lambda: GatedActivation("gelu_new", ACT2FN["gelu_new"]),
    lambda: GatedActivation("relu", ACT2FN["relu"]),
])
def test_layers_are_dynamic_linear_in_explanation_mode(make):
    torch.manual_seed(1)
    module = make()
    x = torch.randn(3, 6)
    assert dynamic_linearity_residual(module, x) < 1e-12
    with explanation_mode():
        explained = module(x)
    torch.testing.assert_close(explained, module(x), rtol=1e-10, atol=1e-12)


def test_without_explanation_mode_gradient_x_input_does_not_recover_the_output():
    """LayerNorm is scale invariant: its full Jacobian satisfies J·x = 0, so only explanation mode
    (σ as a constant) makes gradient x input equal the output."""
    norm = BcosLayerNorm.from_layer_norm(nn.LayerNorm(6))
    x = torch.randn(3, 6)
    jac = torch.autograd.functional.jacobian(norm, x).reshape(18, 18)
    assert (jac @ x.reshape(-1)).abs().max() < 1e-3  # not exactly 0 only because of the ε in σ
    assert norm(x).abs().max() > 0.1
    assert dynamic_linearity_residual(norm, x) < 1e-12


def test_bcos_layer_norm_equals_layer_norm_without_beta():
    norm = nn.LayerNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(4, 8) * 3 + 1
    reference = nn.functional.layer_norm(x, (8,), norm.weight, None, 1e-5)
    bcos_norm = BcosLayerNorm.from_layer_norm(norm)
    torch.testing.assert_close(bcos_norm(x), reference)
    with explanation_mode():
        torch.testing.assert_close(bcos_norm(x), reference)
    torch.testing.assert_close(BcosLayerNorm.from_layer_norm(norm, keep_bias=True)(x), norm(x))


def test_bcos_rms_norm_equals_llama_rms_norm():
    llama = LlamaRMSNorm(8, eps=1e-6).to(torch.float32)
    with torch.no_grad():
        llama.weight.normal_()
    x = torch.randn(4, 8, dtype=torch.float32)
    converted = BcosRMSNorm.from_rms_norm(llama)
    torch.testing.assert_close(converted(x), llama(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(GATES))
def test_gates_reproduce_the_transformers_activation(name):
    activation = ACT2FN[name]
    x = torch.linspace(-5, 5, 101)
    gated = GatedActivation(name, activation)
    with explanation_mode():
        torch.testing.assert_close(gated(x), activation(x), rtol=1e-6, atol=1e-7)
    assert torch.equal(gated(x), activation(x))


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="no gate form known for activation 'mish'"):
        GatedActivation("mish", nn.Mish())


def test_dynamic_activation_is_detached_only_in_explanation_mode():
    act = DynamicActivation(nn.SiLU())
    x = torch.randn(5, requires_grad=True)
    assert act(x).requires_grad
    with explanation_mode():
        assert not act(x).requires_grad


def test_explanation_mode_is_a_context_manager_and_decorator_that_restores_state():
    assert not is_explanation_mode()
    with explanation_mode():
        assert is_explanation_mode()
        with explanation_mode(False):
            assert not is_explanation_mode()
        assert is_explanation_mode()
    assert not is_explanation_mode()

    @explanation_mode()
    def inside() -> bool:
        return is_explanation_mode()

    assert inside() and not is_explanation_mode()
    with pytest.raises(RuntimeError, match="boom"):
        with explanation_mode():
            raise RuntimeError("boom")
    assert not is_explanation_mode()


def test_bcos_attention_is_registered_with_its_mask_function():
    assert BCOS_ATTENTION in AttentionInterface._global_mapping
    assert BCOS_ATTENTION in AttentionMaskInterface._global_mapping


@pytest.mark.parametrize("b", [1.5, 2.0, 2.5])
@pytest.mark.parametrize("den_shape", [(4, 1), (4, 3)])
def test_fused_bcos_scale_gradients_match_finite_differences(b, den_shape):
    lin = torch.randn(4, 3, requires_grad=True)
    den = (torch.rand(den_shape) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda l, d: BcosScale.apply(l, d, (b - 1) / 2, 1e-6, False), (lin, den))
    scale = ((lin / den).square() + 1e-6).pow((b - 1) / 2).detach()
    (grad_lin,) = torch.autograd.grad(BcosScale.apply(lin, den, (b - 1) / 2, 1e-6, True).sum(), lin)
    torch.testing.assert_close(grad_lin, scale)
