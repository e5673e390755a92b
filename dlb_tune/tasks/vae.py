"""Task ``vae``: JointVAE (Dupont, NeurIPS 2018) on CelebA aligned faces at 64x64.

Continuous Gaussian latents plus one or more discrete (categorical) latents, trained with
controlled capacities: per image, BCE reconstruction + gamma |KL_cont - C_cont| +
gamma |KL_disc - C_disc|, each capacity C rising linearly from 0 over ``capacity_iters``
optimiser steps (the discrete one never above sum log K). The sweep compares trials by the
validation negative ELBO (reconstruction + both KLs, no capacity terms), so capacities and
gammas that trade likelihood for disentanglement compete fairly.

Sampling: Gumbel-softmax with ``temperature`` while training; the ELBO on val/test draws a
hard categorical sample and z ~ q(z|x) with a fixed noise seed (an unbiased one-sample
estimate, identical noise every epoch); figures and codes use the posterior mode (mean of z,
argmax one-hot c), as Dupont's eval mode does.

Data: ``<data_dir>/celeba/`` (torchvision's layout) or the celeba folder itself, holding
``img_align_celeba/*.jpg`` and ``list_eval_partition.txt``. Official 178x218 images are
centre-cropped to 148 and resized to 64x64; images already 64x64 are used as they are. JPEGs
are decoded once into a uint8 cache on disk. ``list_attr_celeba.txt``, where present, is used
only to score the discrete codes (normalised mutual information), never for training: each epoch
reports ``val_disc_nmi``, the highest NMI between any discrete latent's posterior mode and any
attribute, over the validation faces with attributes; with fewer than ``MIN_VAL_ATTRIBUTED`` of
those, the attributed training faces are held out of training and scored too
(``_celeba.with_nmi_split``). The default sweep trades ``val_nelbo`` against it (Pareto front).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlb_tune.tasks._celeba import CELEBA_DATA, IMAGE_SIZE, MIN_VAL_ATTRIBUTED, load_celeba, with_nmi_split
from dlb_tune.tasks._common import save_labelled_grid
from dlb_tune.tasks.base import (ConfigError, DataError, Task, TrialContext, TrialError, Trials, check_finite,
                                 register)


EVAL_SEED = 1234  # the ELBO's noise on val/test: the same draw every epoch and every trial
GUMBEL_EPS = 1e-10  # keeps log(-log(u)) finite
TRAVERSE_RANGE = (-2.0, 2.0)  # continuous traversals: about the prior's central 95%
TRAVERSE_CONT_DIMS = 5  # continuous dims drawn, most KL first: the rest are near the prior and change little
NMI_METRIC = "val_disc_nmi"
CODE_USED = 0.8  # share of the discrete capacity a code must use for the Pareto model's figures


@dataclass
class VAEConfig:
    cont_dim: int = 32  # continuous Gaussian latents (paper, CelebA: 32)
    disc_dims: str = "10"  # categories per discrete latent, comma-separated ("10,10"); a string
    #                        because Optuna's choices must be scalars; "" for none
    cont_capacity_max: float = 50.0  # nats, C_cont at the end of its ramp (paper: 50)
    disc_capacity_max: float = 10.0  # nats, C_disc at the end of its ramp, clipped to sum log K (paper: 10)
    gamma: float = 100.0  # weight of |KL - C| for both latent groups (paper: 100; the course also tried 30)
    capacity_iters: int = 100_000  # optimiser steps over which both capacities rise from 0 (paper: 1e5)
    temperature: float = 0.67  # Gumbel-softmax temperature while training (paper: 0.67)
    lr: float = 5e-4  # Adam step size (paper: 5e-4; the course's 4e-3 stalls at the mean face here)
    batch_size: int = 64  # images per step (paper: 64)


# ------------------------------------------------------------------------------------ model


def parse_disc_dims(spec: str) -> tuple[int, ...]:
    """"10,10" -> (10, 10); "" -> (). Each discrete latent needs at least 2 categories."""
    try:
        dims = tuple(int(p) for p in str(spec).replace(" ", "").split(",") if p)
    except ValueError:
        raise ConfigError(f"expected comma-separated integers like '10' or '10,10', got {spec!r}") from None
    if any(k < 2 for k in dims):
        raise ConfigError(f"every discrete latent needs at least 2 categories, got {spec!r}")
    return dims


def gumbel(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u + GUMBEL_EPS) + GUMBEL_EPS)


def sample_categorical(logits: torch.Tensor, mode: str, temperature: float,
                       generator: torch.Generator | None) -> torch.Tensor:
    """logits [B, K] -> a code [B, K]: a Gumbel-softmax relaxation ("relaxed", training), a
    one-hot categorical sample ("sample", Gumbel-max) or the one-hot argmax ("mode", eval)."""
    if mode == "mode":
        return F.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
    noisy = logits + gumbel(logits.shape, generator, logits.device)
    if mode == "relaxed":
        return F.softmax(noisy / temperature, dim=1)
    return F.one_hot(noisy.argmax(1), logits.shape[1]).to(logits.dtype)


def sample_gaussian(mu: torch.Tensor, logvar: torch.Tensor, mode: str,
                    generator: torch.Generator | None) -> torch.Tensor:
    """z ~ N(mu, exp(logvar)) by reparameterisation; the mean itself in "mode"."""
    if mode == "mode":
        return mu
    eps = torch.randn(mu.shape, generator=generator, device=mu.device)
    return mu + eps * torch.exp(0.5 * logvar)


def kl_gaussian_dims(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per image and dimension: [B, D] -> [B, D]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, summed over dimensions: [B, D] -> [B]."""
    return kl_gaussian_dims(mu, logvar).sum(1)


def kl_uniform_categorical(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || uniform over K) = log K - H(q), per image: [B, K] -> [B]."""
    log_q = F.log_softmax(logits, dim=1)
    return math.log(logits.shape[1]) + (log_q.exp() * log_q).sum(1)


def bce_sum(x_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood in nats, summed over pixels and channels: [B, 3, H, W] -> [B].
    From logits, so a saturated sigmoid never produces log(0)."""
    return F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").flatten(1).sum(1)


def capacity(step: int, c_max: float, iters: int) -> float:
    """Capacity after ``step`` optimiser steps: linear from 0 to ``c_max`` over ``iters`` steps."""
    return c_max * min(1.0, step / iters) if iters > 0 else c_max


def capacities(step: int, cfg: VAEConfig, disc_dims: tuple[int, ...]) -> tuple[float, float]:
    """(C_cont, C_disc); C_disc never above sum log K, the most a uniform prior allows."""
    disc_max = min(cfg.disc_capacity_max, sum(math.log(k) for k in disc_dims))
    return capacity(step, cfg.cont_capacity_max, cfg.capacity_iters), capacity(step, disc_max, cfg.capacity_iters)


def jointvae_objective(recon: torch.Tensor, kl_cont: torch.Tensor, kl_disc: torch.Tensor,
                       cap_cont: float, cap_disc: float, gamma: float) -> torch.Tensor:
    """The training loss per image of a batch: mean recon + gamma |mean KL - C| for each group.
    The batch-mean KL sits inside the absolute value, as in Dupont's trainer."""
    return recon.mean() + gamma * ((kl_cont.mean() - cap_cont).abs() + (kl_disc.mean() - cap_disc).abs())


class JointVAE(nn.Module):
    """Dupont's 64x64 architecture: conv 32-32-64-64 (4x4, stride 2) -> 256 -> heads; a
    mirrored transposed-conv decoder whose output logits give Bernoulli means via sigmoid."""

    def __init__(self, cont_dim: int, disc_dims: tuple[int, ...], hidden: int = 256) -> None:
        super().__init__()
        self.cont_dim, self.disc_dims = cont_dim, disc_dims
        chans = [3, 32, 32, 64, 64]
        enc = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.ReLU()]  # halves H and W
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(64 * 4 * 4, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, cont_dim)
        self.logvar = nn.Linear(hidden, cont_dim)
        self.disc = nn.ModuleList(nn.Linear(hidden, k) for k in disc_dims)  # softmax logits
        latent = cont_dim + sum(disc_dims)
        dec = [nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 64 * 4 * 4), nn.ReLU(),
               nn.Unflatten(1, (64, 4, 4))]
        rev = chans[::-1]  # 64, 64, 32, 32, 3
        for i, (cin, cout) in enumerate(zip(rev[:-1], rev[1:])):
            dec.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))  # doubles H and W
            if i < len(rev) - 2:
                dec.append(nn.ReLU())
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """x [B, 3, 64, 64] in [0, 1] -> mu, logvar [B, cont_dim] and logits [B, K] per discrete latent."""
        h = self.encoder(x)  # [B, 256]
        return self.mu(h), self.logvar(h), [head(h) for head in self.disc]

    def latent(self, mu, logvar, logits, mode: str, temperature: float = 1.0, generator=None) -> torch.Tensor:
        """The decoder's input [B, cont_dim + sum K]: z, then each discrete code."""
        z = sample_gaussian(mu, logvar, mode, generator)
        return torch.cat([z] + [sample_categorical(l, mode, temperature, generator) for l in logits], dim=1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, cont_dim + sum K] -> pixel logits [B, 3, 64, 64]; sigmoid gives the image."""
        return self.decoder(latent)

    def forward(self, x: torch.Tensor, mode: str, temperature: float = 1.0, generator=None):
        mu, logvar, logits = self.encode(x)
        return self.decode(self.latent(mu, logvar, logits, mode, temperature, generator)), mu, logvar, logits


def loss_terms(model: nn.Module, x: torch.Tensor, mode: str, temperature: float, generator) -> dict[str, torch.Tensor]:
    """Per-image reconstruction and KLs [B] for a batch x [B, 3, 64, 64] in [0, 1]."""
    x_logits, mu, logvar, logits = model(x, mode, temperature, generator)
    kl_disc = sum((kl_uniform_categorical(l) for l in logits), torch.zeros(len(x), device=x.device))
    return {"recon": bce_sum(x_logits, x), "kl_cont": kl_gaussian(mu, logvar), "kl_disc": kl_disc}


@torch.no_grad()
def traverse_cont(net: JointVAE, base: torch.Tensor, dims: list[int], steps: int) -> torch.Tensor:
    """Images [len(dims) * steps, 3, 64, 64]: from the latent ``base`` [L], each continuous dim
    in ``dims`` swept over TRAVERSE_RANGE (where the N(0, 1) prior puts 95% of its mass)."""
    values = torch.linspace(*TRAVERSE_RANGE, steps, device=base.device)
    rows = base.repeat(len(dims), steps, 1)  # [dims, steps, L]
    for r, d in enumerate(dims):
        rows[r, :, d] = values
    return torch.sigmoid(net.decode(rows.flatten(0, 1)))


@torch.no_grad()
def traverse_disc(net: JointVAE, bases: torch.Tensor, start: int, k: int) -> torch.Tensor:
    """Images [len(bases) * k, 3, 64, 64]: each latent of ``bases`` [n, L] decoded with the
    discrete code at columns start..start+k set to each of its k categories in turn."""
    lat = bases.repeat_interleave(k, 0)  # [n * k, L]
    lat[:, start : start + k] = torch.eye(k, device=bases.device).repeat(len(bases), 1)
    return torch.sigmoid(net.decode(lat))


def grey_levels_changed(imgs: torch.Tensor, cols: int) -> list[float]:
    """Per row of a traversal [rows * cols, 3, H, W]: each pixel's standard deviation across the
    row's images, averaged over pixels, in grey levels (0-255). Near 0: the decoder ignores the
    latent swept, whatever its KL or NMI say."""
    return [round(v * 255, 2) for v in imgs.unflatten(0, (-1, cols)).std(1).mean((1, 2, 3)).tolist()]


# ------------------------------------------------------------------------------------- task


@register
class VAE(Task):
    name = "vae"
    Config = VAEConfig
    data_sets = (CELEBA_DATA,)
    smoke = {"cont_dim": 4, "disc_dims": "3", "batch_size": 32, "capacity_iters": 20}
    pareto_figures_by = NMI_METRIC  # the report draws the highest-NMI Pareto model's traversals too
    # a code whose KL stays well under its capacity is one the decoder barely reads: its NMI tells
    # how the encoder sorts faces, not what the code controls
    pareto_figures_rule = f"discrete KL >= {CODE_USED:.0%} of capacity"

    @classmethod
    def validate(cls, name: str, value: Any) -> None:
        super().validate(name, value)
        if name == "disc_dims":
            parse_disc_dims(value)

    @classmethod
    def load_data(cls, data_dir: Path, config: VAEConfig, limit: int | None = None) -> dict[str, Any]:
        data = with_nmi_split(load_celeba(data_dir, limit))
        if data["held_out"]:
            print(f"vae: {data['held_out']} training faces with attributes held out of training for "
                  f"{NMI_METRIC} (fewer than {MIN_VAL_ATTRIBUTED} validation faces have attributes)")
        return data

    @classmethod
    def check_metrics(cls, data: dict[str, Any], metrics: list[str]) -> None:
        if NMI_METRIC in metrics and not len((data.get("nmi") or {}).get("files", ())):
            raise DataError(f"{NMI_METRIC} needs CelebA attributes (celeba/list_attr_celeba.txt) for some "
                            f"validation or training faces, and this data has none: add the file, or "
                            f"sweep val_nelbo alone with --objective none")

    @classmethod
    def pareto_figures_uses(cls, metrics: dict[str, Any]) -> bool:
        kl, cap = metrics.get("val_kl_disc"), metrics.get("cap_disc_max")
        return kl is not None and bool(cap) and kl >= CODE_USED * cap

    @classmethod
    def summarize(cls, trials: Trials) -> dict[str, Any]:
        """Per trial (best first), the share of its discrete capacity the validation faces use
        (last epoch's val_kl_disc / cap_disc_max) beside its val_disc_nmi: is the code used."""
        rows = []
        for t in trials:
            kl, cap = t.metrics.get("val_kl_disc"), t.metrics.get("cap_disc_max")
            if kl is not None and cap:
                rows.append({"trial_id": t.trial_id, "val_kl_disc": round(kl, 4), "cap_disc_max": round(cap, 4),
                             "share": round(kl / cap, 3), NMI_METRIC: t.metrics.get(NMI_METRIC)})
        return {"discrete_use": rows} if rows else {}

    def __init__(self, config: VAEConfig, data: dict[str, Any], ctx: TrialContext) -> None:
        super().__init__(config, data, ctx)
        self.disc_dims = parse_disc_dims(config.disc_dims)
        if config.cont_dim < 0 or config.cont_dim + len(self.disc_dims) == 0:
            raise TrialError(f"need at least one latent: cont_dim={config.cont_dim}, disc_dims={config.disc_dims!r}")
        self.net = JointVAE(config.cont_dim, self.disc_dims).to(ctx.device)
        self.model = ctx.wrap_model(self.net)  # DDP under Ray Train; self.net for figures
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.steps = 0  # optimiser steps taken: the capacity schedule's clock
        # Gumbel and Gaussian noise: its own stream per worker, so the shared batch order
        # generator (ctx.generator) stays in step across data-parallel workers.
        self.noise = torch.Generator(device=ctx.device).manual_seed(ctx.seed * 1009 + ctx.rank + 1)

    def _images(self, split: str, idx: torch.Tensor) -> torch.Tensor:
        return self.data[split]["x"][idx].to(self.ctx.device).float().div_(255.0)  # [B, 3, 64, 64]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        totals = dict.fromkeys(("loss", "recon", "kl_cont", "kl_disc", "n"), 0.0)
        for idx in self.ctx.batches(len(self.data["train"]["x"]), cfg.batch_size):
            terms = loss_terms(self.model, self._images("train", idx), "relaxed", cfg.temperature, self.noise)
            cap_cont, cap_disc = capacities(self.steps, cfg, self.disc_dims)
            loss = jointvae_objective(terms["recon"], terms["kl_cont"], terms["kl_disc"], cap_cont, cap_disc, cfg.gamma)
            check_finite(loss.item(), f"training loss at step {self.steps + 1}")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.steps += 1
            totals["loss"] += loss.item() * len(idx)
            for k in ("recon", "kl_cont", "kl_disc"):
                totals[k] += terms[k].sum().item()
            totals["n"] += len(idx)
        totals = self.ctx.sum_across_workers(totals)
        out = {k: totals[k] / totals["n"] for k in ("loss", "recon", "kl_cont", "kl_disc")}
        return {**out, **self._capacities(), "nelbo": out["recon"] + out["kl_cont"] + out["kl_disc"]}

    def _capacities(self) -> dict[str, float]:
        cap_cont, cap_disc = capacities(self.steps, self.config, self.disc_dims)
        return {"cap_cont": cap_cont, "cap_disc": cap_disc}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Negative ELBO (one-sample estimate, fixed noise), its parts, the objective at the
        current capacities, and the reconstruction at the posterior mode (``recon_mode``)."""
        self.net.eval()
        x_all, cfg = self.data[split]["x"], self.config
        gen = torch.Generator(device=self.ctx.device).manual_seed(EVAL_SEED)
        sums = dict.fromkeys(("recon", "kl_cont", "kl_disc", "recon_mode"), 0.0)
        for s in range(0, len(x_all), 256):
            x = self._images(split, torch.arange(s, min(s + 256, len(x_all))))
            terms = loss_terms(self.net, x, "sample", cfg.temperature, gen)
            for k in ("recon", "kl_cont", "kl_disc"):
                sums[k] += terms[k].sum().item()
            sums["recon_mode"] += loss_terms(self.net, x, "mode", cfg.temperature, None)["recon"].sum().item()
        m = {k: v / len(x_all) for k, v in sums.items()}
        caps = self._capacities()
        loss = m["recon"] + cfg.gamma * (abs(m["kl_cont"] - caps["cap_cont"]) + abs(m["kl_disc"] - caps["cap_disc"]))
        out = {"loss": loss, "nelbo": m["recon"] + m["kl_cont"] + m["kl_disc"], **m}
        if split == "val" and self._nmi_faces():
            out[NMI_METRIC.removeprefix("val_")] = self.best_nmi()
        return out

    def _nmi_faces(self) -> int:
        """How many faces the attribute NMI is scored on (0 without attributes)."""
        return len((self.data.get("nmi") or {}).get("files", ())) if self.data.get("attr_names") else 0

    def best_nmi(self) -> float:
        """The highest NMI between any discrete latent and any attribute; 0 without discrete latents."""
        table = self.attribute_nmi().get("table") or {}
        return max((v for row in table.values() for v in row.values()), default=0.0)

    def trial_metrics(self) -> dict[str, float]:
        # the discrete capacity at the ramp's end: what val_kl_disc is read against
        cap_disc_max = capacities(self.config.capacity_iters, self.config, self.disc_dims)[1]
        return {"params": float(sum(p.numel() for p in self.net.parameters())), "cap_disc_max": cap_disc_max}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "opt": self.opt.state_dict(), "steps": self.steps,
                "noise": self.noise.get_state(), "noise_device": self.noise.device.type}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.steps = state["steps"]
        # CPU and CUDA generator states differ in format; a checkpoint trained on the other
        # device type (a CPU trial tested on a GPU) keeps this generator's fresh stream.
        if state.get("noise_device") == self.noise.device.type:
            self.noise.set_state(state["noise"])

    # ------------------------------------------------------------------ figures and codes

    @torch.no_grad()
    def codes(self, split: str) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Posterior means [N, cont_dim], per-image continuous KL [N, cont_dim] and each discrete
        latent's argmax [N] over a whole split."""
        self.net.eval()
        x_all = self.data[split]["x"]
        mus, kls, args = [], [], [[] for _ in self.disc_dims]
        for s in range(0, len(x_all), 256):
            mu, logvar, logits = self.net.encode(self._images(split, torch.arange(s, min(s + 256, len(x_all)))))
            mus.append(mu.cpu())
            kls.append(kl_gaussian_dims(mu, logvar).cpu())
            for a, l in zip(args, logits):
                a.append(l.argmax(1).cpu())
        return torch.cat(mus), torch.cat(kls), [torch.cat(a) for a in args]

    @torch.no_grad()
    def figures(self, split: str = "val", n: int = 8, steps: int = 9) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Image grids as float [3, H, W] in [0, 1] (for PNG files or TensorBoard's add_image),
        plus what their rows mean.

        ``reconstructions``: rows of ``n`` images, each row followed by its reconstruction.
        ``traverse_cont``: one row per continuous dim (most informative first), the dim swept
        over [-2, 2] from the first image's posterior mode. ``traverse_disc<i>``: one row per
        image (its continuous mode), one column per category of discrete latent i.
        """
        from torchvision.utils import make_grid

        self.net.eval()
        x = self._images(split, torch.arange(min(2 * n, len(self.data[split]["x"]))))  # [2n, 3, 64, 64]
        mu, logvar, logits = self.net.encode(x)
        modes = self.net.latent(mu, logvar, logits, "mode")  # [2n, L]: mean z, argmax one-hot c
        recon = torch.sigmoid(self.net.decode(modes))
        pairs = torch.cat([torch.cat([x[r : r + n], recon[r : r + n]]) for r in range(0, len(x), n)])
        grids = {"reconstructions": make_grid(pairs.cpu(), nrow=n, padding=2)}
        kl = self.codes(split)[1].mean(0)  # [cont_dim], nats per dim
        order = kl.argsort(descending=True).tolist()[:TRAVERSE_CONT_DIMS]
        changed = {}  # figure -> grey levels changed per row
        if self.net.cont_dim:
            imgs = traverse_cont(self.net, modes[0], order, steps)
            grids["traverse_cont"] = make_grid(imgs.cpu(), nrow=steps, padding=2)
            changed["traverse_cont"] = grey_levels_changed(imgs, steps)
        start = self.net.cont_dim
        for i, k in enumerate(self.disc_dims):
            imgs = traverse_disc(self.net, modes[:n], start, k)
            grids[f"traverse_disc{i}"] = make_grid(imgs.cpu(), nrow=k, padding=2)
            changed[f"traverse_disc{i}"] = grey_levels_changed(imgs, k)
            start += k
        info = {"split": split, "faces": n, "traverse_cont_dims": order, "traverse_range": list(TRAVERSE_RANGE),
                "traverse_steps": steps, "grey_levels_changed": changed,
                "cont_kl_per_dim": [round(v, 4) for v in kl.tolist()]}
        return grids, info

    def attribute_nmi(self) -> dict[str, Any]:
        """Normalised mutual information between each discrete latent's argmax and each
        attribute, over the ``nmi`` split only (validation faces, and training faces held out
        of training; ``_celeba.with_nmi_split``): never over faces the model trained on."""
        from sklearn.metrics import normalized_mutual_info_score

        names = self.data.get("attr_names") or []
        if not self._nmi_faces() or not self.disc_dims:
            return {}
        codes = self.codes("nmi")[2]  # per discrete latent, [M]
        attrs_all = self.data["nmi"]["attrs"].int()  # [M, A]

        def nmi(attr, code) -> float:
            # sklearn scores two constant labelings 1.0; they share no information, so 0 here
            if len(set(attr.tolist())) < 2 or len(set(code.tolist())) < 2:
                return 0.0
            return round(float(normalized_mutual_info_score(attr, code)), 4)

        table = {}
        for i, c in enumerate(codes):
            code = c.numpy()
            table[f"disc{i}"] = {a: nmi(attrs_all[:, j].numpy(), code) for j, a in enumerate(names)}
        top = {d: sorted(row.items(), key=lambda kv: -kv[1])[:5] for d, row in table.items()}
        return {"images": int(attrs_all.shape[0]), "held_out_train": int(self.data.get("held_out", 0)),
                "table": table, "top": top}

    def test_report(self, out_dir: Path) -> dict[str, Any]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        grids, info = self.figures("test")
        nmi = self.attribute_nmi()
        files = {}
        for name, grid in grids.items():
            title, rows, cols = self._grid_labels(name, info, nmi)
            save_labelled_grid(grid, out_dir / f"{name}.png", title, rows, cols, cell=IMAGE_SIZE)
            files[name] = f"{name}.png"
        report: dict[str, Any] = {"figures": files, "figure_info": info}
        if nmi:
            report["attribute_nmi"] = nmi
        return report

    def _grid_labels(self, name: str, info: dict[str, Any], nmi: dict[str, Any]) -> tuple[str, list[str], list[str]]:
        """Title, row labels and column labels of one of ``figures``' grids, as ``test_report`` writes it."""
        split = info["split"]
        if name == "reconstructions":
            return f"{split} faces and their reconstructions", ["input", "reconstruction"] * 2, []
        if name == "traverse_cont":
            kl, grey = info["cont_kl_per_dim"], info["grey_levels_changed"][name]
            rows = [f"z{d} ({kl[d]:.2f} nats, {g:.1f} grey)" for d, g in zip(info["traverse_cont_dims"], grey)]
            cols = [f"{v:+.1f}" for v in torch.linspace(*TRAVERSE_RANGE, info["traverse_steps"]).tolist()]
            return (f"the {len(rows)} continuous latents with the most KL (rows) swept from one {split} face's mode; "
                    "beside each: its KL and the pixels' spread across the row in grey levels (0-255)"), rows, cols
        i = int(name.removeprefix("traverse_disc"))
        top = (nmi.get("top") or {}).get(f"disc{i}") or []
        about = f"; most informative about {top[0][0]} (NMI {top[0][1]:.3f})" if top and top[0][1] > 0 else ""
        rows = [f"face {r + 1} ({g:.1f} grey)" for r, g in enumerate(info["grey_levels_changed"][name])]
        return (f"discrete latent {i}: each category (columns) for {split} faces (rows){about}; rows: pixels' "
                f"spread across the row in grey levels (0-255)", rows,
                [f"c={j}" for j in range(self.disc_dims[i])])
