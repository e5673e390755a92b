"""Task ``vae`` (JointVAE on CelebA): loss terms, capacities, Gumbel-softmax, the loader on the
real test copy and on a synthetic folder in the official 178x218 layout, training, figures,
attribute NMI (scored on faces never trained on) and short CLI sweeps, the default one with two
objectives."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image
import torch
import torch.nn.functional as F

from dlb_tune.tasks import DataError, TrialContext, TrialError
from dlb_tune.tasks._celeba import decode_face, load_celeba, with_nmi_split
from dlb_tune.tasks.vae import (
    VAE,
    JointVAE,
    VAEConfig,
    bce_sum,
    capacities,
    capacity,
    jointvae_objective,
    kl_gaussian,
    kl_uniform_categorical,
    sample_categorical,
    grey_levels_changed,
    traverse_cont,
    traverse_disc,
)

SMOKE = VAEConfig(**VAE.smoke)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches gain nothing from threads, and a busy 2-core CI box loses a lot to them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the framework seeds model initialisation the same way
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private decode cache, so tests neither read nor fill the user's."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("vae_cache")
        mp.setenv("DLB_TUNE_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def faces(data_dir, cache):
    """The whole real test copy (6,000 faces), decoded once for the module."""
    return load_celeba(data_dir)


@pytest.fixture(scope="module")
def small(data_dir, cache):
    """96 faces per split, as the task loads them (attributed training faces held out for the
    NMI): enough to train a few steps and to score some attributed images."""
    return VAE.load_data(data_dir, SMOKE, limit=96)


# --- loss terms, by hand ------------------------------------------------------------------------


def test_kl_of_known_gaussian():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    # dim 1: 0.5 (1 + 1 - 1 - 0) = 0.5; dim 2: 0.5 (0 + 2 - 1 - log 2)
    assert kl_gaussian(mu, logvar).item() == pytest.approx(0.5 + 0.5 * (1 - math.log(2.0)), rel=1e-6)
    assert kl_gaussian(torch.zeros(3, 4), torch.zeros(3, 4)).tolist() == [0.0, 0.0, 0.0]


def test_kl_of_categoricals():
    assert kl_uniform_categorical(torch.zeros(2, 10)).abs().max().item() < 1e-6  # uniform: 0
    one_hot = torch.tensor([[60.0] + [0.0] * 9])
    assert kl_uniform_categorical(one_hot).item() == pytest.approx(math.log(10), abs=1e-5)  # log K
    q = torch.tensor([[0.5, 0.25, 0.25]])
    expected = math.log(3) + 0.5 * math.log(0.5) + 0.5 * math.log(0.25)
    assert kl_uniform_categorical(q.log()).item() == pytest.approx(expected, rel=1e-5)


def test_bce_summed_over_pixels():
    x = torch.rand(2, 3, 64, 64)
    assert bce_sum(torch.zeros(2, 3, 64, 64), x).tolist() == pytest.approx([12288 * math.log(2)] * 2, rel=1e-5)
    p = 1 / (1 + math.exp(-2.0))
    per_pixel = -(0.25 * math.log(p) + 0.75 * math.log(1 - p))
    got = bce_sum(torch.full((1, 3, 2, 2), 2.0), torch.full((1, 3, 2, 2), 0.25))
    assert got.item() == pytest.approx(12 * per_pixel, rel=1e-5)


def test_objective_uses_batch_mean_kl_against_capacity():
    recon, kl_c, kl_d = torch.tensor([100.0, 200.0]), torch.tensor([3.0, 5.0]), torch.tensor([1.0, 0.0])
    # 150 + 2 |4 - 10| + 2 |0.5 - 0.2|
    assert jointvae_objective(recon, kl_c, kl_d, 10.0, 0.2, 2.0).item() == pytest.approx(162.6)


# --- capacity schedule ----------------------------------------------------------------------------


def test_capacity_rises_linearly_then_holds():
    assert capacity(0, 50.0, 1000) == 0.0
    assert capacity(250, 50.0, 1000) == pytest.approx(12.5)
    assert capacity(1000, 50.0, 1000) == 50.0
    assert capacity(5000, 50.0, 1000) == 50.0


def test_discrete_capacity_capped_at_sum_log_k():
    cfg = VAEConfig(cont_capacity_max=50.0, disc_capacity_max=10.0, capacity_iters=100)
    assert capacities(100, cfg, (10,)) == pytest.approx((50.0, math.log(10)))
    assert capacities(50, cfg, (10, 10)) == pytest.approx((25.0, math.log(10)))  # half of 2 log 10
    low = VAEConfig(disc_capacity_max=1.0, capacity_iters=100)
    assert capacities(100, low, (10,))[1] == pytest.approx(1.0)  # below the cap: as given


# --- sampling --------------------------------------------------------------------------------------


def test_gumbel_softmax_shapes_and_eval_argmax():
    torch.manual_seed(0)
    net = JointVAE(cont_dim=5, disc_dims=(10, 3))
    x = torch.rand(4, 3, 64, 64)
    mu, logvar, logits = net.encode(x)
    assert mu.shape == logvar.shape == (4, 5) and [l.shape for l in logits] == [(4, 10), (4, 3)]
    gen = torch.Generator().manual_seed(0)
    relaxed = net.latent(mu, logvar, logits, "relaxed", 0.67, gen)
    assert relaxed.shape == (4, 5 + 13)
    for part in (relaxed[:, 5:15], relaxed[:, 15:]):
        assert torch.allclose(part.sum(1), torch.ones(4)) and (part.max(1).values < 1).all()
    mode = net.latent(mu, logvar, logits, "mode")
    assert torch.equal(mode[:, :5], mu)
    assert torch.equal(mode[:, 5:15], F.one_hot(logits[0].argmax(1), 10).float())
    assert torch.equal(mode[:, 15:], F.one_hot(logits[1].argmax(1), 3).float())
    assert net.decode(mode).shape == (4, 3, 64, 64)


def test_traversals_change_one_latent_at_a_time():
    net = JointVAE(cont_dim=3, disc_dims=(4,)).eval()
    bases = torch.cat([torch.randn(2, 3), F.one_hot(torch.tensor([1, 3]), 4).float()], dim=1)  # [2, 7]
    cont = traverse_cont(net, bases[0], [2, 0], steps=5)  # rows: dim 2, then dim 0
    want = bases[0].clone()
    want[0] = 1.0  # row 1 (dim 0), step 3 of linspace(-2, 2, 5)
    assert cont.shape == (10, 3, 64, 64)
    assert torch.allclose(cont[5 + 3], torch.sigmoid(net.decode(want[None]))[0], atol=1e-6)
    disc = traverse_disc(net, bases, start=3, k=4)  # rows: the 2 bases, columns: 4 categories
    want = bases[1].clone()
    want[3:] = F.one_hot(torch.tensor(2), 4).float()
    assert disc.shape == (8, 3, 64, 64)
    assert torch.allclose(disc[4 + 2], torch.sigmoid(net.decode(want[None]))[0], atol=1e-6)


def test_grey_levels_changed_is_zero_for_a_code_the_decoder_ignores():
    net = JointVAE(cont_dim=3, disc_dims=(4,)).eval()
    with torch.no_grad():
        net.decoder[0].weight[:, 3:] = 0  # the decoder's first layer reads no discrete input
    bases = torch.cat([torch.randn(2, 3), F.one_hot(torch.tensor([1, 3]), 4).float()], dim=1)  # [2, 7]
    assert grey_levels_changed(traverse_disc(net, bases, start=3, k=4), 4) == [0.0, 0.0]
    cont = traverse_cont(net, bases[0], [2, 0], steps=5)
    changed = grey_levels_changed(cont, 5)
    row = cont[5:10]  # dim 0 swept: each pixel's spread over the 5 steps, averaged, in grey levels
    assert len(changed) == 2 and min(changed) > 0
    assert changed[1] == pytest.approx(float(row.std(0).mean()) * 255, abs=0.01)


def test_gumbel_samples_follow_the_categorical():
    probs = torch.tensor([0.7, 0.2, 0.1])
    logits = probs.log().expand(20000, 3)
    gen = torch.Generator().manual_seed(1)
    hard = sample_categorical(logits, "sample", 1.0, gen)
    assert ((hard == 0) | (hard == 1)).all() and torch.equal(hard.sum(1), torch.ones(20000))
    assert torch.allclose(hard.mean(0), probs, atol=0.015)
    relaxed = sample_categorical(logits, "relaxed", 0.5, gen)  # its argmax is a Gumbel-max sample
    assert torch.allclose(F.one_hot(relaxed.argmax(1), 3).float().mean(0), probs, atol=0.015)


# --- data --------------------------------------------------------------------------------------


def test_loader_on_real_test_copy(faces, data_dir):
    assert [len(faces[s]["x"]) for s in ("train", "val", "test")] == [4560, 780, 660]
    assert faces["train"]["x"].dtype == torch.uint8 and faces["train"]["x"].shape[1:] == (3, 64, 64)
    assert [int(faces[s]["has_attrs"].sum()) for s in ("train", "val", "test")] == [548, 0, 0]

    first = data_dir / "celeba" / "img_align_celeba" / "000002.jpg"  # first train line, 64x64
    pil = torch.tensor(list(Image.open(first).convert("RGB").getdata()), dtype=torch.uint8)
    assert torch.equal(faces["train"]["x"][0], pil.view(64, 64, 3).permute(2, 0, 1))


def test_attributes_parsed(faces):
    names = faces["attr_names"]
    assert len(names) == 40 and names[0] == "5_o_Clock_Shadow" and names[-1] == "Young"
    a = dict(zip(names, faces["train"]["attrs"][0].tolist()))  # 000002.jpg's row of the file
    assert a["Bags_Under_Eyes"] and a["Big_Nose"] and a["High_Cheekbones"] and a["Young"]
    assert not a["Male"] and not a["Eyeglasses"] and not a["5_o_Clock_Shadow"]
    assert not faces["val"]["attrs"].any()  # unknown attributes are all False


def test_limit_is_deterministic(data_dir, cache, small):
    again = VAE.load_data(data_dir / "celeba", SMOKE, limit=96)  # the celeba folder itself also works
    assert all(torch.equal(small[s]["x"], again[s]["x"]) for s in ("train", "val", "test"))
    assert len(small["val"]["x"]) == 96


def _official_face(path: Path) -> None:
    """178x218 with a red border outside the centre 148 square, whose quadrants are blue,
    green, white, black (top-left, top-right, bottom-left, bottom-right)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (178, 218), (255, 0, 0))
    d = ImageDraw.Draw(img)
    left, top, mid_x, mid_y = 15, 35, 89, 109
    d.rectangle([left, top, mid_x - 1, mid_y - 1], fill=(0, 0, 255))
    d.rectangle([mid_x, top, left + 147, mid_y - 1], fill=(0, 255, 0))
    d.rectangle([left, mid_y, mid_x - 1, top + 147], fill=(255, 255, 255))
    d.rectangle([mid_x, mid_y, left + 147, top + 147], fill=(0, 0, 0))
    img.save(path, quality=95, subsampling=0)


@pytest.fixture
def official(tmp_path):
    """Six faces in the official layout: <data>/celeba/img_align_celeba + partition + attributes."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    for n in names:
        _official_face(root / "img_align_celeba" / n)
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {i // 2}\n" for i, n in enumerate(names)))
    (root / "list_attr_celeba.txt").write_text("2\nMale Smiling \n000001.jpg  1 -1\n000004.jpg -1  1\n")
    return tmp_path


def test_loader_on_official_178x218_layout(official, monkeypatch, tmp_path):
    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))
    data = load_celeba(official)
    assert [tuple(data[s]["x"].shape) for s in ("train", "val", "test")] == [(2, 3, 64, 64)] * 3
    img = data["val"]["x"][0].float()  # [3, 64, 64]
    quadrants = [(6, 6, (0, 0, 255)), (6, 38, (0, 255, 0)), (38, 6, (255, 255, 255)), (38, 38, (0, 0, 0))]
    for top, left, rgb in quadrants:  # each quadrant's 20x20 interior
        assert (img[:, top : top + 20, left : left + 20].mean((1, 2)) - torch.tensor(rgb)).abs().max() < 20, rgb
    assert img[0, 1:26, 1:26].max() < 60  # the red border stayed outside the crop
    assert data["attr_names"] == ["Male", "Smiling"]
    assert data["train"]["has_attrs"].tolist() == [True, False]
    assert data["train"]["attrs"][0].tolist() == [True, False]
    assert data["val"]["attrs"][1].tolist() == [False, True]  # 000004.jpg is the 2nd val image
    assert any(p.name.startswith("celeba-") for p in (tmp_path / "cache" / "decoded").iterdir())  # cached
    assert torch.equal(decode_face(official / "celeba" / "img_align_celeba" / "000003.jpg"), data["val"]["x"][0])


def test_missing_or_malformed_data(tmp_path, official, monkeypatch):
    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"list_eval_partition\.txt.*CelebA"):
        load_celeba(tmp_path / "nothing")
    (official / "celeba" / "img_align_celeba" / "000005.jpg").unlink()
    with pytest.raises(DataError, match="missing image .*000005.jpg"):
        load_celeba(official)
    (official / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 7\n")
    with pytest.raises(DataError, match="list_eval_partition.txt:1"):
        load_celeba(official)


def test_attribute_count_mismatch_is_a_data_error(official, monkeypatch, tmp_path):
    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))
    (official / "celeba" / "list_attr_celeba.txt").write_text("3\nMale Smiling\n000001.jpg 1 -1\n")
    with pytest.raises(DataError, match="count line says 3"):
        load_celeba(official)


# --- training, resume, figures --------------------------------------------------------------------


def test_training_lowers_the_validation_nelbo(small):
    cfg = VAEConfig(**{**VAE.smoke, "lr": 3e-3, "batch_size": 16})
    task = VAE(cfg, small, TrialContext(seed=0))
    before = task.evaluate("val")
    assert task.evaluate("val") == before  # fixed evaluation noise: deterministic
    for epoch in range(3):
        train = task.train_epoch(epoch)
    after = task.evaluate("val")
    assert after["nelbo"] < before["nelbo"] - 100  # 18 steps: on the way to the mean face
    assert after["nelbo"] == pytest.approx(after["recon"] + after["kl_cont"] + after["kl_disc"])
    steps = 3 * math.ceil(len(small["train"]["x"]) / 16)
    assert train["cap_cont"] == pytest.approx(capacity(steps, cfg.cont_capacity_max, cfg.capacity_iters))
    assert train["cap_disc"] == pytest.approx(capacity(steps, math.log(3), cfg.capacity_iters))  # capped: log 3 < 10


def test_resume_reproduces_training(small):
    cfg = VAEConfig(**VAE.smoke)
    a = VAE(cfg, small, TrialContext(seed=3))
    a.train_epoch(0)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # a real round trip, as a checkpoint makes one
    rng = a.ctx.generator.get_state()
    b = VAE(cfg, small, TrialContext(seed=99))
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=False))
    b.ctx.generator.set_state(rng)
    assert a.train_epoch(1) == b.train_epoch(1)


def test_non_finite_loss_and_bad_config_are_trial_errors(small):
    task = VAE(SMOKE, small, TrialContext())
    with torch.no_grad():
        task.net.mu.weight.fill_(float("nan"))
    with pytest.raises(TrialError, match="diverged"):
        task.train_epoch(0)
    with pytest.raises(TrialError, match="disc_dims"):
        VAE(VAEConfig(disc_dims="10,x"), small, TrialContext())


def test_test_report_figures_and_attribute_nmi(small, tmp_path):
    from sklearn.metrics import normalized_mutual_info_score

    cfg = VAEConfig(**{**VAE.smoke, "disc_dims": "4,2"})
    task = VAE(cfg, small, TrialContext())
    task.train_epoch(0)
    report = task.test_report(tmp_path)
    assert set(report["figures"]) == {"reconstructions", "traverse_cont", "traverse_disc0", "traverse_disc1"}
    assert all((tmp_path / f).stat().st_size > 0 for f in report["figures"].values())
    grids, info = task.figures("test")
    # every PNG is its grid with a title and a label on every row (and column, where they differ)
    for name, grid in grids.items():
        title, rows, cols = task._grid_labels(name, info, report["attribute_nmi"])
        n_rows, n_cols = ((size - 2) // 66 for size in grid.shape[1:])
        assert title and len(rows) == n_rows and len(cols) == (0 if name == "reconstructions" else n_cols), name
        with Image.open(tmp_path / report["figures"][name]) as im:
            assert im.width > grid.shape[2] and im.height > grid.shape[1], name  # room for the labels
    # a discrete latent's figure names the attribute it tells most about, unless it tells nothing
    title = task._grid_labels("traverse_disc1", info, {"top": {"disc1": [("Smiling", 0.12)]}})[0]
    assert "; most informative about Smiling (NMI 0.120);" in title
    # and beside each row, how much the row's images differ (grey_levels_changed)
    grey = info["grey_levels_changed"]
    assert task._grid_labels("traverse_disc0", info, {})[1] == [f"face {i + 1} ({g:.1f} grey)"
                                                                 for i, g in enumerate(grey["traverse_disc0"])]
    assert [r.split(", ")[1] for r in task._grid_labels("traverse_cont", info, {})[1]] == \
        [f"{g:.1f} grey)" for g in grey["traverse_cont"]]
    assert "informative" not in task._grid_labels("traverse_disc1", info, {"top": {"disc1": [("Smiling", 0.0)]}})[0]
    assert grids["reconstructions"].shape == (3, 2 + 4 * 66, 2 + 8 * 66)  # 16 images, each row + its recon
    assert grids["traverse_cont"].shape == (3, 2 + cfg.cont_dim * 66, 2 + 9 * 66)  # dims x 9 steps
    assert grids["traverse_disc0"].shape == (3, 2 + 8 * 66, 2 + 4 * 66)  # 8 faces x 4 categories
    nmi = report["attribute_nmi"]
    assert nmi["images"] == nmi["held_out_train"] == small["held_out"] > 0  # no val face has attributes here
    assert set(nmi["table"]) == {"disc0", "disc1"} and len(nmi["table"]["disc0"]) == 40
    code = task.codes("nmi")[2][0]
    male = small["nmi"]["attrs"][:, small["attr_names"].index("Male")]
    assert nmi["table"]["disc0"]["Male"] == pytest.approx(normalized_mutual_info_score(male.int(), code), abs=1e-4)


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_smoke_sweep(data_dir, ray_local, tmp_path, cache):
    from typer.testing import CliRunner

    import dlb_tune.cli

    args = ["sweep", "vae", "--data-dir", str(data_dir), "--storage", str(tmp_path), "--name", "smoke",
            "--smoke", "--limit", "64", "--cpus", "2", "--seed", "0"]
    result = CliRunner().invoke(dlb_tune.cli.app, args)
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "smoke" / "final.json").read_text())
    assert final["metric"] == "val_nelbo" and final["mode"] == "min"
    assert final["trials"]["total"] == 2 and final["trials"]["errored"] == 0
    test = final["test"]
    # the best trial's checkpoint, evaluated once on test: same model and distribution as its best
    # val score (64 images each; four training steps do not reliably beat a constant 0.5 output,
    # test_training_lowers_the_validation_nelbo checks learning)
    assert math.isfinite(test["test_nelbo"]) and test["test_nelbo"] > 0
    assert test["test_nelbo"] == pytest.approx(final["best"]["val_nelbo"], rel=0.15)
    assert test["test_nelbo"] == pytest.approx(test["test_recon"] + test["test_kl_cont"] + test["test_kl_disc"])
    figures = test["test_report"]["figures"]
    assert all((tmp_path / "smoke" / "test_report" / f).is_file() for f in figures.values())
    import pandas as pd

    df = pd.read_parquet(tmp_path / "smoke" / "results.parquet")
    for col in ("train_loss", "train_recon", "train_kl_cont", "train_kl_disc", "train_cap_cont",
                "train_cap_disc", "val_nelbo", "val_kl_disc"):
        assert col in df and df[col].notna().all(), col
    # every trial's best epoch so far is drawn into its TensorBoard log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for trial in (tmp_path / "smoke").glob("trial_*"):
        acc = EventAccumulator(str(trial), size_guidance={"images": 0})
        acc.Reload()
        assert {"figures/reconstructions", "figures/traverse_cont"} <= set(acc.Tags()["images"]), trial


# --- the second objective: attribute NMI on faces never trained on ---------------------------------


def _faces(x: torch.Tensor) -> set[bytes]:
    """Each image of ``x`` [N, 3, 64, 64] (uint8, or float in [0, 1] as the model reads it) as
    bytes, so that sets of faces can be compared."""
    if x.dtype != torch.uint8:
        x = (x * 255).round().to(torch.uint8)
    return {img.numpy().tobytes() for img in x.cpu()}


def _encoded(task: VAE, monkeypatch) -> list[torch.Tensor]:
    """Every batch the task's encoder sees from now on (training, ELBO and codes alike)."""
    seen, encode = [], task.net.encode

    def spy(x):
        seen.append(x.detach().clone())
        return encode(x)

    monkeypatch.setattr(task.net, "encode", spy)
    return seen


def test_disc_nmi_is_scored_on_faces_never_trained_on(small, monkeypatch):
    task = VAE(SMOKE, small, TrialContext(seed=0))
    seen = _encoded(task, monkeypatch)
    task.train_epoch(0)
    trained = set().union(*map(_faces, seen))
    assert trained == _faces(small["train"]["x"])  # the spy sees what training sees
    seen.clear()
    val = task.evaluate("val")
    scored = set().union(*map(_faces, seen))
    nmi_faces = _faces(small["nmi"]["x"])
    assert 0.0 <= val["disc_nmi"] <= 1.0
    assert len(nmi_faces) == small["held_out"] > 0  # here every attributed face is a training face
    assert not scored & trained, f"{len(scored & trained)} faces scored for the NMI were trained on"
    assert nmi_faces <= scored
    assert scored <= nmi_faces | _faces(small["val"]["x"])  # the ELBO's official validation faces, the codes'


def test_attributed_training_faces_are_held_out_of_training(data_dir, cache, small):
    raw = load_celeba(data_dir, limit=96)
    attributed = raw["train"]["has_attrs"]
    assert not raw["val"]["has_attrs"].any() and small["held_out"] == int(attributed.sum()) > 0
    assert _faces(small["nmi"]["x"]) == _faces(raw["train"]["x"][attributed])
    assert _faces(small["train"]["x"]) == _faces(raw["train"]["x"][~attributed])
    assert set(small["nmi"]["files"]).isdisjoint(small["train"]["files"])
    assert torch.equal(small["val"]["x"], raw["val"]["x"])  # val_nelbo keeps its faces


def test_nmi_split_moves_nothing_when_validation_has_enough_attributes(official, monkeypatch, tmp_path):
    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))
    data = load_celeba(official)  # attributes: 000001.jpg (train) and 000004.jpg (val)
    enough = with_nmi_split(data, min_val=1)  # as with the full CelebA: attributes everywhere
    assert enough["held_out"] == 0 and enough["nmi"]["files"] == ["000004.jpg"]
    assert enough["train"]["files"] == ["000001.jpg", "000002.jpg"]
    few = with_nmi_split(data, min_val=2)
    assert few["held_out"] == 1 and few["nmi"]["files"] == ["000004.jpg", "000001.jpg"]
    assert few["train"]["files"] == ["000002.jpg"] and torch.equal(few["val"]["x"], data["val"]["x"])
    assert few["nmi"]["attrs"].tolist() == [[False, True], [True, False]]


def test_summary_gives_each_trials_discrete_capacity_use():
    import pandas as pd

    from dlb_tune.tasks import Trials

    table = pd.DataFrame([{"trial_id": "a", "status": "completed", "best_val_nelbo": 7000.0, "val_kl_disc": 1.8,
                           "cap_disc_max": 2.0, "val_disc_nmi": 0.07},
                          {"trial_id": "b", "status": "errored", "best_val_nelbo": float("nan")}])
    out = VAE.summarize(Trials.from_table(table, "val_nelbo"))
    assert out == {"discrete_use": [{"trial_id": "a", "val_kl_disc": 1.8, "cap_disc_max": 2.0, "share": 0.9,
                                     "val_disc_nmi": 0.07}]}


def test_shipped_space_and_readme_name_two_objectives():
    from dlb_tune.space import load_space
    from dlb_tune.space_files import space_file

    spec = load_space(space_file("vae"))
    goals = [(g.metric, g.mode) for g in spec.goals()]
    assert spec.objective == "nelbo-nmi" and goals == [("val_nelbo", "min"), ("val_disc_nmi", "max")]
    assert [g.metric for g in load_space(space_file("vae"), objective="none").goals()] == ["val_nelbo"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = next(ln for ln in readme.splitlines() if ln.startswith("| `vae` | JointVAE"))
    assert all(f"`{metric}`" in row for metric, _ in goals) and "Pareto" in row


def test_two_objective_sweep_without_attributes_stops_before_ray(official, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import dlb_tune.cli
    import dlb_tune.sweep

    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))
    (official / "celeba" / "list_attr_celeba.txt").unlink()
    monkeypatch.setattr(dlb_tune.sweep, "ray_session", lambda *a, **k: pytest.fail("Ray started"))
    args = ["sweep", "vae", "--data-dir", str(official), "--storage", str(tmp_path / "runs"), "--name", "plain",
            "--cpus", "2"]
    result = CliRunner().invoke(dlb_tune.cli.app, args)
    assert result.exit_code == 2, result.output  # a user error, as every data error is
    [line] = [ln for ln in result.output.splitlines() if "val_disc_nmi" in ln]
    assert "list_attr_celeba.txt" in line and "--objective none" in line
    VAE.check_metrics(VAE.load_data(official, SMOKE), ["val_nelbo"])  # what --objective none asks: fine


def test_pareto_model_for_figures_trained_all_epochs_and_uses_its_code():
    """Hand-written fronts: the default sweep of 2026-12-07 had all three kinds (a 2-epoch model
    with the highest NMI, trained-out ones using 14% and 100% of their discrete capacity); a
    shrunk sweep in a test does not reliably produce them."""
    import pandas as pd

    from dlb_tune.finish import pareto_figures_pool

    front = pd.DataFrame([
        {"trial_id": "early", "epochs": 2, "val_disc_nmi": 0.28, "val_kl_disc": 0.31, "cap_disc_max": 2.5},
        {"trial_id": "idle", "epochs": 10, "val_disc_nmi": 0.12, "val_kl_disc": 0.33, "cap_disc_max": 2.3},
        {"trial_id": "used", "epochs": 10, "val_disc_nmi": 0.05, "val_kl_disc": 2.49, "cap_disc_max": 2.48},
    ])
    pick = lambda f: pareto_figures_pool(f, VAE, 10)  # noqa: E731
    assert list(pick(front)[0]["trial_id"]) == ["used"]
    assert pick(front)[1] == "trained all 10 epochs, discrete KL >= 80% of capacity"
    no_used = front[front["trial_id"] != "used"]
    assert (list(pick(no_used)[0]["trial_id"]), pick(no_used)[1]) == (["idle"], "trained all 10 epochs")
    early = front[front["trial_id"] == "early"]
    assert list(pick(early)[0]["trial_id"]) == ["early"] and pick(early)[1] == ""  # nothing trained out


@pytest.mark.slow
def test_default_sweep_draws_pareto_front_and_highest_nmi_model(data_dir, ray_local, tmp_path, cache):
    """The shipped space, two trials of one epoch on 64 faces per split: the paper's settings
    (its initial: point) run first, beside one sampled config."""
    import pandas as pd
    from spaces import shrunk
    from typer.testing import CliRunner

    from dlb_tune.cli import app
    from dlb_tune.experiment import load_experiment
    from dlb_tune.figures import plot_pareto
    from dlb_tune.finish import pareto_figures_pool

    runner = CliRunner()
    space = shrunk("vae", tmp_path / "vae.yaml", num_samples=2, max_epochs=1, grace_period=1, time_budget_s=None)
    storage = tmp_path / "runs"
    result = runner.invoke(app, ["sweep", "vae", "--space", str(space), "--data-dir", str(data_dir), "--storage",
                                 str(storage), "--name", "mo", "--limit", "64", "--cpus", "2", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert "13 training faces with attributes held out of training for val_disc_nmi" in result.output
    words = " ".join(result.output.split())  # progress lines wrap at the terminal's width
    assert re.search(r"epoch 1/1 val_nelbo [\d.]+ val_disc_nmi [\d.]+ best", words), result.output
    exp = storage / "mo"
    final = json.loads((exp / "final.json").read_text())
    assert final["trials"]["errored"] == 0 and final["course"]  # the paper's settings ran
    df = pd.read_parquet(exp / "results.parquet")
    for col in ("val_disc_nmi", "val_kl_disc", "cap_disc_max", "train_cap_disc"):
        assert col in df and df[col].notna().all(), col
    front = final["pareto"]
    assert front and all(0 <= p["val_disc_nmi"] <= 1 for p in front)
    drawn = final["pareto_figures"]
    assert drawn["metric"] == "val_disc_nmi" and drawn["trial_id"] in {p["trial_id"] for p in front}
    pool, among = pareto_figures_pool(df[df["trial_id"].isin([p["trial_id"] for p in front])], VAE, 1)
    assert drawn["value"] == pool["val_disc_nmi"].max() and drawn["among"] == among
    assert drawn["epochs"] == int(df.set_index("trial_id").loc[drawn["trial_id"], "epochs"]) == 1
    assert {"traverse_cont", "traverse_disc0"} <= set(drawn["figures"])
    assert all((exp / drawn["folder"] / f).is_file() for f in drawn["figures"].values())
    assert len(drawn["figure_info"]["traverse_cont_dims"]) == 5  # the 5 with the most KL (cont_dim >= 16)
    use = {r["trial_id"]: r for r in final["task_summary"]["discrete_use"]}
    assert set(use) == set(df["trial_id"]) and all(0 <= r["val_disc_nmi"] <= 1 for r in use.values())

    assert runner.invoke(app, ["report", "mo", "--storage", str(storage)]).exit_code == 0
    md = (exp / "report.md").read_text()
    assert "(report/pareto_front.png)" in md and "Pareto model with the highest `val_disc_nmi`" in md
    assert f"Trial `{drawn['trial_id']}` (completed after 1 epochs)" in md
    assert all(f"({drawn['folder']}/{f})" in md for f in drawn["figures"].values())
    handles, labels = plot_pareto(load_experiment(exp)).axes[0].get_legend_handles_labels()
    marked = [lab for h, lab in zip(handles, labels) if h.get_gid() == "initial"]
    assert marked == [f"course/paper settings (first initial: point), trial {final['course']['trial_id']}"]
    ringed = [lab for h, lab in zip(handles, labels) if h.get_gid() == "figures"]
    assert ringed == [f"figures in the report, trial {drawn['trial_id']}"]

    # `python -m bench checkpoint-figures` draws the Pareto model's figures again, as the sweep did
    from bench import cli as bench_cli

    bench_cli.discover()
    again = runner.invoke(bench_cli.app, ["checkpoint-figures", str(exp), "--trial", drawn["trial_id"], "--data-dir",
                                          str(data_dir), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert f"grey_levels_changed: {json.dumps(drawn['figure_info']['grey_levels_changed'])}" in again.output
    assert sorted(p.name for p in (tmp_path / "again").glob("*.png")) == sorted(drawn["figures"].values())

    best = runner.invoke(app, ["best", "mo", "--storage", str(storage)])
    assert best.exit_code == 0, best.output
    assert "# picked by val_nelbo alone, the first of objective nelbo-nmi (val_nelbo min, val_disc_nmi max)" in best.output
