"""The hand-written FCN: gradients against autograd, and learning on real MNIST."""

from __future__ import annotations

import io

import pytest
import torch

from dlb_tune.tasks import DataError, TrialContext
from dlb_tune.tasks.fcn import FCN, FCNConfig, backward, forward, init_params, load_mnist, softmax_cross_entropy


@pytest.fixture(scope="module")
def mnist(data_dir):
    return load_mnist(data_dir, val_size=5000)


def _autograd_reference(params, x, y, activation):
    """The same network through torch.nn.functional and autograd, in float64."""
    leaves = [[w.clone().requires_grad_(), b.clone().requires_grad_()] for w, b in params]
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation]
    a = x
    for i, (w, b) in enumerate(leaves):
        a = a @ w + b
        if i < len(leaves) - 1:
            a = act(a)
    loss = torch.nn.functional.cross_entropy(a, y)
    loss.backward()
    return loss.detach(), [[w.grad, b.grad] for w, b in leaves]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_gradients_match_autograd(activation, layers):
    g = torch.Generator().manual_seed(layers)
    sizes = [20] + [16] * layers + [10]
    params = init_params(sizes, activation, g, dtype=torch.float64)
    for layer in params:  # non-zero biases, so their gradients are tested through every layer
        layer[1] += torch.randn(layer[1].shape, generator=g, dtype=torch.float64) * 0.1
    x = torch.randn(32, 20, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (32,), generator=g)
    logits, cache = forward(params, x, activation)
    loss, dlogits = softmax_cross_entropy(logits, y)
    grads = backward(params, cache, dlogits, activation)
    ref_loss, ref_grads = _autograd_reference(params, x, y, activation)
    assert torch.allclose(loss, ref_loss, rtol=1e-12)
    for (dw, db), (rw, rb) in zip(grads, ref_grads):
        for mine, ref in ((dw, rw), (db, rb)):
            rel = (mine - ref).abs().max() / ref.abs().max().clamp_min(1e-30)
            assert rel < 1e-10, f"max relative gradient error {rel:.2e}"


def test_cross_entropy_is_stable_for_large_logits():
    logits = torch.tensor([[1000.0, 0.0, -1000.0]], dtype=torch.float64)
    loss, grad = softmax_cross_entropy(logits, torch.tensor([0]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(grad).all()


def test_mnist_splits(mnist):
    assert [len(mnist[s]["y"]) for s in ("train", "val", "test")] == [55000, 5000, 10000]
    assert mnist["train"]["x"].dtype == torch.uint8 and mnist["train"]["x"].shape[1:] == (28, 28)
    # the validation images are carved out of the training set: no image appears in both
    train_keys = {bytes(img.numpy()) for img in mnist["train"]["x"][:20000]}
    assert not any(bytes(img.numpy()) in train_keys for img in mnist["val"]["x"][:500])
    assert set(mnist["val"]["y"].tolist()) == set(range(10))


def test_validation_split_is_fixed(data_dir, mnist):
    again = load_mnist(data_dir, val_size=5000, limit=100)
    assert torch.equal(again["val"]["y"], mnist["val"]["y"][:100])


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_training_on_real_mnist_lowers_the_loss(mnist, activation):
    data = {s: {"x": mnist[s]["x"][:6000], "y": mnist[s]["y"][:6000]} for s in mnist}
    task = FCN(FCNConfig(activation=activation, hidden_size=64, lr=0.05, batch_size=32), data,
               TrialContext(max_epochs=1, seed=0))
    before = task.evaluate("val")["loss"]
    train = task.train_epoch(0)  # 6,000 examples / 32 = 188 SGD steps
    after = task.evaluate("val")
    assert after["loss"] < 0.5 * before, (before, after)
    assert after["acc"] > 0.8 and train["acc"] > 0.7


def test_state_dict_round_trip(mnist):
    data = {s: {"x": mnist[s]["x"][:500], "y": mnist[s]["y"][:500]} for s in mnist}
    a = FCN(FCNConfig(hidden_size=32), data, TrialContext(seed=1))
    a.train_epoch(0)
    b = FCN(FCNConfig(hidden_size=32), data, TrialContext(seed=2))
    b.load_state_dict(a.state_dict())
    assert a.evaluate("val") == b.evaluate("val")


def test_resume_with_momentum_goes_on_as_uninterrupted(mnist):
    """A checkpoint holds the momentum buffer: the epoch after a save and restore is the epoch
    without one (a buffer restarting at zero moves the weights by ~1e-2 here)."""
    data = {s: {"x": mnist[s]["x"][:500], "y": mnist[s]["y"][:500]} for s in mnist}
    config = FCNConfig(hidden_size=32, momentum=0.9, lr=0.05)
    a = FCN(config, data, TrialContext(max_epochs=3, seed=1))
    a.train_epoch(0)
    assert all(v.abs().max() > 0 for layer in a.velocity for v in layer)
    saved = io.BytesIO()
    torch.save(a.state_dict(), saved)  # as a trial checkpoint is written: no tensor shared with `a`
    saved.seek(0)
    b = FCN(config, data, TrialContext(max_epochs=3, seed=2))
    b.load_state_dict(torch.load(saved, weights_only=True))
    b.ctx.generator.set_state(a.ctx.generator.get_state())  # the trainable restores it with the checkpoint
    a.train_epoch(1), b.train_epoch(1)
    for got, want in zip(b.params + b.velocity, a.params + a.velocity):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_missing_mnist_is_one_clear_line(tmp_path):
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "train-images-idx3-ubyte" in msg and str(tmp_path) in msg
