"""The hand-written FCN: gradients against autograd, and learning on real MNIST."""

from __future__ import annotations

import io

import pytest
import torch

from dlb_tune.tasks import DataError, TrialContext
from dlb_tune.tasks.fcn import (BACKGROUND, FCN, MNIST_MEAN, MNIST_STD, FCNConfig, activate, activate_grad, backward,
                                forward, init_params, load_mnist, random_shift, softmax_cross_entropy)


@pytest.fixture(scope="module")
def mnist(data_dir):
    return load_mnist(data_dir, val_size=5000)


def _autograd_reference(params, x, y, activation, masks=None, smoothing=0.0):
    """The same network through torch.nn.functional and autograd, in float64; ``masks``: the
    dropout masks the hand-written forward drew, applied here as constants."""
    leaves = [[w.clone().requires_grad_(), b.clone().requires_grad_()] for w, b in params]
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation]
    a = x
    for i, (w, b) in enumerate(leaves):
        a = a @ w + b
        if i < len(leaves) - 1:
            a = act(a) if masks is None else act(a) * masks[i]
    loss = torch.nn.functional.cross_entropy(a, y, label_smoothing=smoothing)
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


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_dropout_and_label_smoothing_gradients_match_autograd(activation):
    """The regularisers' hand-written backward against autograd on the same dropout masks: the
    masks the forward pass drew are applied to the reference network as constants."""
    g = torch.Generator().manual_seed(7)
    params = init_params([20, 16, 16, 10], activation, g, dtype=torch.float64)
    x = torch.randn(32, 20, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (32,), generator=g)
    logits, cache = forward(params, x, activation, dropout=0.3, generator=g)
    masks = [c[3] for c in cache]
    assert masks[0] is not None and (masks[0] == 0).any() and masks[-1] is None
    loss, dlogits = softmax_cross_entropy(logits, y, smoothing=0.1)
    grads = backward(params, cache, dlogits, activation)
    ref_loss, ref_grads = _autograd_reference(params, x, y, activation, masks, smoothing=0.1)
    assert torch.allclose(loss, ref_loss, rtol=1e-12)
    for (dw, db), (rw, rb) in zip(grads, ref_grads):
        for mine, want in ((dw, rw), (db, rb)):
            rel = (mine - want).abs().max() / want.abs().max().clamp_min(1e-30)
            assert rel < 1e-10, f"max relative gradient error {rel:.2e}"


def test_dropout_keeps_the_expected_activation_and_is_off_by_default():
    g = torch.Generator().manual_seed(0)
    params = init_params([50, 400, 10], "relu", g)
    x = torch.randn(256, 50, generator=g)
    _, plain = forward(params, x, "relu")
    _, dropped = forward(params, x, "relu", dropout=0.5, generator=g)
    assert plain[0][3] is None
    kept = (dropped[0][3] > 0).float().mean().item()
    assert 0.45 < kept < 0.55 and torch.allclose(dropped[0][3].max(), torch.tensor(2.0))
    # inverted dropout: the hidden layer's mean activation is unchanged in expectation
    assert dropped[0][2].mean().item() == pytest.approx(plain[0][2].mean().item(), rel=0.05)


def test_random_shift_moves_each_image_within_the_limit(mnist):
    x = mnist["train"]["x"][:64].reshape(64, -1).float().div(255).sub(MNIST_MEAN).div(MNIST_STD)
    moved = random_shift(x, 2, torch.Generator().manual_seed(0), BACKGROUND).view(64, 28, 28)
    orig = x.view(64, 28, 28)
    found = []
    for img, out in zip(orig, moved):  # which (dy, dx) turns the original into the moved image
        pad = torch.nn.functional.pad(img, (2, 2, 2, 2), value=BACKGROUND)
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(pad[dy:dy + 28, dx:dx + 28], out)]
        assert hits, "not a shift of the original by at most 2 pixels"
        found.append(hits[0])
    assert len(set(found)) > 10  # each image draws its own offset
    assert random_shift(x, 0, torch.Generator(), BACKGROUND).equal(x)


@pytest.mark.parametrize("field,value", [("dropout", 1.0), ("label_smoothing", -0.1), ("shift", 14)])
def test_regulariser_values_out_of_range_are_refused(field, value):
    from dlb_tune.tasks import ConfigError

    with pytest.raises(ConfigError):
        FCN.validate(field, value)


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


# --- arithmetic the gradient checks do not reach (each found as a surviving mutant) -------------


def _slice(mnist, n: int, val: int | None = None) -> dict:
    return {s: {"x": mnist[s]["x"][: val if s == "val" and val else n],
                "y": mnist[s]["y"][: val if s == "val" and val else n]} for s in mnist}


def test_unknown_activation_is_named():
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="^unknown activation 'gelu'$"):
        activate(z, "gelu")
    with pytest.raises(ValueError, match="^unknown activation 'gelu'$"):
        activate_grad(z, z, "gelu")


def test_relu_gradient_at_zero_is_zero_as_in_autograd():
    z = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    torch.relu(z).sum().backward()
    assert torch.equal(activate_grad(z.detach(), activate(z.detach(), "relu"), "relu"), z.grad)


@pytest.mark.parametrize("activation, std", [
    ("relu", lambda fi, fo: (2 / fi) ** 0.5),  # He
    ("tanh", lambda fi, fo: (2 / (fi + fo)) ** 0.5),  # Glorot
    ("sigmoid", lambda fi, fo: 4 * (2 / (fi + fo)) ** 0.5),  # Glorot, x4 for sigmoid's slope 1/4
])
def test_init_params_shapes_and_scale(activation, std):
    sizes = [400, 300, 300, 10]
    params = init_params(sizes, activation, torch.Generator().manual_seed(0))
    assert [(tuple(w.shape), tuple(b.shape)) for w, b in params] == [((400, 300), (300,)), ((300, 300), (300,)),
                                                                      ((300, 10), (10,))]
    assert all(not b.any() for _, b in params)
    for w, (fan_in, fan_out) in zip([w for w, _ in params[:2]], [(400, 300), (300, 300)]):
        # 90,000+ draws: the sample std is within 1% of the target (the wrong formula is 14%+ off)
        assert w.std().item() == pytest.approx(std(fan_in, fan_out), rel=0.02)


def test_fcn_builds_the_configured_network(mnist):
    task = FCN(FCNConfig(hidden_size=64, num_layers=2), _slice(mnist, 300), TrialContext(seed=0))
    assert [tuple(w.shape) for w, _ in task.params] == [(784, 64), (64, 64), (64, 10)]
    assert task.trial_metrics() == {"params": 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10}
    # ReLU by default: He initialisation, sqrt(2/784) = 0.0505 (Glorot would give 0.0486)
    assert task.params[0][0].std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.02)
    x, _ = task.splits["train"]  # pixels 0 and 255 normalised with MNIST's mean and std
    assert x.min().item() == pytest.approx(-MNIST_MEAN / MNIST_STD, rel=1e-6)
    assert x.max().item() == pytest.approx((1 - MNIST_MEAN) / MNIST_STD, rel=1e-6)


def test_evaluate_counts_every_example_once(mnist):
    """5,000 validation images (two chunks of evaluation) labelled with the net's own predictions:
    accuracy is exactly 1 only if every example is counted once, and the loss is the plain mean."""
    cfg = FCNConfig(hidden_size=32)
    data = _slice(mnist, 100, val=5000)
    task = FCN(cfg, data, TrialContext(seed=3))
    x, _ = task.splits["val"]
    logits, _ = forward(task.params, x, cfg.activation)
    data["val"] = {"x": data["val"]["x"], "y": logits.argmax(1)}
    task = FCN(cfg, data, TrialContext(seed=3))  # same seed: the same weights
    got = task.evaluate("val")
    assert got["acc"] == 1.0
    expected = torch.nn.functional.cross_entropy(logits.double(), data["val"]["y"]).item()
    assert got["loss"] == pytest.approx(expected, rel=1e-5)


def test_train_epoch_averages_over_every_example(mnist):
    """With lr=0 the weights stay put, so the epoch's running loss and accuracy over 1,000 examples
    in batches of 64 (the last one 40) must equal one evaluation of the training split."""
    task = FCN(FCNConfig(hidden_size=32, lr=0.0, lr_schedule="none"), _slice(mnist, 1000), TrialContext(seed=0))
    got = task.train_epoch(0)
    want = task.evaluate("train")
    assert set(got) == {"loss", "acc", "lr"} and got["lr"] == 0.0
    assert got["acc"] == want["acc"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert task.state_dict()["steps"] == 16  # ceil(1000 / 64) SGD steps, kept in the checkpoint


def test_learning_rate_follows_the_schedule_over_max_epochs(mnist):
    task = FCN(FCNConfig(hidden_size=8, lr=0.1, lr_schedule="cosine"), _slice(mnist, 64), TrialContext(max_epochs=4))
    # cosine at progress 2/4: half the peak rate
    assert [round(task.train_epoch(e)["lr"], 12) for e in (0, 2)] == [0.1, 0.05]


def test_weight_decay_pulls_weights_towards_zero(mnist):
    task = FCN(FCNConfig(hidden_size=8, momentum=0.0, weight_decay=0.1), _slice(mnist, 10), TrialContext())
    before = [[t.clone() for t in layer] for layer in task.params]
    zero = [[torch.zeros_like(t) for t in layer] for layer in task.params]
    task._sgd_step(zero, lr=0.5)  # only the decay acts: w <- w - 0.5 * 0.1 * w; biases are not decayed
    for (w0, b0), (w1, b1) in zip(before, task.params):
        assert torch.allclose(w1, 0.95 * w0) and torch.equal(b1, b0)


def test_load_state_dict_moves_tensors_to_the_trial_device(mnist):
    """A checkpoint written on one device resumes on the trial's: here CPU -> ``meta``, a device
    every torch has, so the check runs without a GPU."""
    data = _slice(mnist, 100)
    saved = FCN(FCNConfig(hidden_size=8), data, TrialContext()).state_dict()
    task = FCN(FCNConfig(hidden_size=8), data, TrialContext(device=torch.device("meta")))
    def devices():
        state = task.state_dict()
        return {t.device.type for part in ("params", "velocity") for layer in state[part] for t in layer}

    assert devices() == {"meta"} and {t.device.type for split in task.splits.values() for t in split} == {"meta"}
    task.load_state_dict(saved)
    assert devices() == {"meta"}


def test_load_data_passes_val_size_and_limit(data_dir):
    data = FCN.load_data(data_dir, FCNConfig(val_size=50), limit=100)
    assert [len(data[s]["y"]) for s in ("train", "val", "test")] == [100, 50, 100]
