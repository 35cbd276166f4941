"""Training one model on one fold of the mel cache: the loop teachers and students share.

Per epoch: one random cached chunk per training clip (so every clip counts once
and its chunks take turns), augmented; AdamW with a cosine schedule after a
linear warm-up, gradient clipping, bf16 autocast on CUDA. Validation on every
chunk of the held-out fold with the competition metric; the best epoch's model
and out-of-fold predictions are kept (or, with ``soup_epochs``, those of the
average of the last epochs' weights: a checkpoint soup). After each epoch ``last.pt`` holds
everything needed to resume, so a killed job, rerun, continues where it stopped
and ends with the same weights as an uninterrupted run (on the CPU).

The declared outputs (model.pt, oof.parquet, history.csv, metrics.json) are
written only when the last epoch is done: a workflow manager deletes the
outputs of a killed job, so the best epoch so far is kept aside in ``best.pt``
and ``best_oof.parquet`` next to ``last.pt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from birdclef.atomic import atomic_path
from birdclef.dataset import MelShardDataset
from birdclef.distill import (
    DistilledChunks,
    PseudoWindows,
    SoundscapeMixup,
    SoundscapeWindows,
    WithEmbeddings,
    mixup_pairs,
)
from birdclef.embeddings import read_embeddings
from birdclef.folds import soundscape_fold
from birdclef.kinds import Kind, build_model, kind_of
from birdclef.losses import embedding_loss, weighted_loss
from birdclef.metrics import macro_roc_auc
from birdclef.models import save_model
from birdclef.pretrained import describe_pretrained
from birdclef.settings import BIRDNET_EMBEDDING_DIM, DistillConfig, ModelConfig, SoundscapeMixupConfig, TrainConfig
from birdclef.tables import write_csv, write_parquet

log = logging.getLogger(__name__)


@dataclass
class EmbeddingInputs:
    """The BirdNET embedding shards a model reads: as its input (birdnet_head) and/or as distillation targets.

    ``soundscapes`` and ``soundscape_mels``: the unlabelled windows that embedding distillation adds.
    """

    train: list[str | Path] = field(default_factory=list)
    soundscapes: list[str | Path] = field(default_factory=list)
    soundscape_mels: list[str | Path] = field(default_factory=list)


@dataclass
class StudentData:
    """What a student learns from besides the hard labels (see birdclef.distill)."""

    cfg: DistillConfig
    soft: pd.DataFrame | None = None  # the teachers' out-of-fold predictions: id, offset_s, one column per class
    pseudo_shards: list[str | Path] = field(default_factory=list)  # soundscape mel shards
    pseudo_labels: pd.DataFrame | None = None  # pseudo_label's table: row_id, keep, one column per class


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _fingerprint(*parts: dict) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _data_hash(*tables: pd.DataFrame | None) -> str:
    """A short hash of tables' contents (None counts as empty)."""
    digest = hashlib.sha1()
    for table in tables:
        if table is not None:
            digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def _draws(n_clips: int, share: float, available: int) -> int:
    """Samples per epoch from an extra set so that they are ``share`` of the epoch beside ``n_clips`` labelled ones."""
    return min(available, round(n_clips * share / (1 - share))) if share > 0 else 0


@dataclass
class _TrainingSet:
    """The labelled rows, then pseudo-labelled windows, then soundscape windows, with how many of each per epoch.

    ``mix_pool``: the windows soundscape MixUp blends labelled chunks with (None: off), by ``mix``'s settings.
    """

    parts: list[Dataset]
    draws: list[int]  # per part after the first (the first: one chunk per clip)
    mix_pool: Dataset | None = None
    mix: SoundscapeMixupConfig | None = None

    @property
    def dataset(self) -> Dataset:
        return ConcatDataset(self.parts) if len(self.parts) > 1 else self.parts[0]

    def epoch(self, samples: list[int], n_labelled: int, gen: torch.Generator) -> Dataset:
        """One epoch's samples in order, with soundscape MixUp drawn from ``gen`` when it is on."""
        if self.mix_pool is None:
            return Subset(self.dataset, samples)
        pairs = mixup_pairs(samples, n_labelled, len(self.mix_pool), self.mix, gen)
        return SoundscapeMixup(self.dataset, self.mix_pool, pairs, self.mix.label_rule)


def _outside(windows: MelShardDataset, fold: int, n_folds: int) -> np.ndarray:
    """A mask over soundscape windows: those not in soundscape fold ``fold`` (which this fold's model may label)."""
    return soundscape_fold(windows.rows["id"], n_folds) != fold


def _training_set(
    ds: MelShardDataset,
    kind: Kind,
    cfg: TrainConfig,
    mel,
    n_clips: int,
    student: StudentData | None,
    embeddings: EmbeddingInputs | None,
    fold: int,
    n_folds: int,
) -> _TrainingSet:
    """What an epoch draws from: labelled rows (soft targets for a student), pseudo windows, soundscape windows.

    Soundscape windows come only from outside soundscape fold ``fold``. With embedding distillation
    every sample carries BirdNET's embedding of its window as a fourth element.
    """
    labelled = ds
    if student is not None and student.soft is not None:
        labelled = DistilledChunks(ds, student.soft, student.cfg)
    parts, draws, pool = [labelled], [], None
    labels = student.pseudo_labels if student is not None else None
    floor = student.cfg.soundscape_mixup.floor if student is not None else 0.0
    if student is not None and labels is not None and student.pseudo_shards:
        windows = kind.dataset(student.pseudo_shards, mel, embeddings and embeddings.soundscapes)
        allowed = _outside(windows, fold, n_folds)
        pseudo = PseudoWindows(windows, labels, allowed, kept_only=True, floor=floor)
        n = _draws(n_clips, student.cfg.pseudo_share, len(pseudo))
        log.info(
            "student: %d of %d soundscape windows outside soundscape fold %d; %d of them kept, %d drawn per epoch",
            int(allowed.sum()),
            len(windows),
            fold,
            len(pseudo),
            n,
        )
        if n:
            parts.append(pseudo)
            draws.append(n)
        if student.cfg.soundscape_mixup.p > 0:
            pool = PseudoWindows(windows, labels, allowed, kept_only=False, floor=floor)
            log.info(
                "soundscape MixUp: p %g, alpha %g, labels by %s, floor %g, over %d windows",
                student.cfg.soundscape_mixup.p,
                student.cfg.soundscape_mixup.alpha,
                student.cfg.soundscape_mixup.label_rule,
                floor,
                len(pool),
            )
    mix = student.cfg.soundscape_mixup if pool is not None else None
    distill = cfg.embedding_distill
    if distill.weight == 0:
        return _TrainingSet(parts, draws, pool, mix)
    if embeddings is None or not embeddings.train:
        raise ValueError("embedding_distill needs the BirdNET embedding shards of the training windows")
    train_emb = read_embeddings(embeddings.train).aligned_to(ds.rows).embeddings
    parts[0] = WithEmbeddings(parts[0], train_emb, np.arange(len(ds)))
    soundscape_ds = None
    if embeddings.soundscapes:
        soundscape_ds = MelShardDataset(embeddings.soundscape_mels, mel)
        soundscape_emb = read_embeddings(embeddings.soundscapes).aligned_to(soundscape_ds.rows).embeddings
    if (len(parts) > 1 or pool is not None) and soundscape_ds is None:
        raise ValueError("embedding_distill with pseudo-labelled windows needs their BirdNET embeddings")
    for k in range(1, len(parts)):  # pseudo windows: their soundscape rows
        parts[k] = WithEmbeddings(parts[k], soundscape_emb, parts[k].rows)
    if pool is not None:
        pool = WithEmbeddings(pool, soundscape_emb, pool.rows)
    if soundscape_ds is not None and distill.soundscape_share > 0:
        windows = SoundscapeWindows(soundscape_ds, labels, _outside(soundscape_ds, fold, n_folds), floor)
        n = _draws(n_clips, distill.soundscape_share, len(windows))
        log.info(
            "embedding distillation: %d soundscape windows outside soundscape fold %d, %d drawn per epoch",
            len(windows),
            fold,
            n,
        )
        parts.append(WithEmbeddings(windows, soundscape_emb, windows.rows))
        draws.append(n)
    return _TrainingSet(parts, draws, pool, mix)


def _keep(prefix: Path, model: torch.nn.Module, ds: MelShardDataset, val_rows: np.ndarray, probs, extra: dict) -> None:
    """A candidate for the outputs: <prefix>.pt (as model.pt) and <prefix>_oof.parquet."""
    save_model(prefix.with_suffix(".pt"), model, ds.classes, extra)
    oof = pd.DataFrame(probs, columns=ds.classes)
    held_out = ds.rows.iloc[val_rows]
    labels = held_out["primary"].map(lambda k: ds.classes[k] if k >= 0 else None)
    oof.insert(0, "primary_label", labels.to_numpy())
    oof.insert(0, "offset_s", held_out["offset_s"].to_numpy())
    oof.insert(0, "id", held_out["id"].to_numpy())
    write_parquet(oof, prefix.with_name(f"{prefix.name}_oof.parquet"))


def _average(paths: list[Path], device: torch.device) -> dict:
    """The mean of saved state dicts; integer buffers (BatchNorm's step count) are taken from the last."""
    states = [torch.load(p, map_location=device, weights_only=True) for p in paths]
    return {
        key: torch.stack([s[key] for s in states]).mean(dim=0) if value.is_floating_point() else value
        for key, value in states[-1].items()
    }


def _validate(
    model: torch.nn.Module, kind: Kind, ds: MelShardDataset, rows: np.ndarray, batch_size: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray, float]:
    """Sigmoid probabilities and targets of ``rows`` of ``ds``, in order, and their macro ROC-AUC."""
    model.eval()
    probs, targets = [], []
    with torch.inference_mode():
        for x, y, _ in DataLoader(Subset(ds, rows.tolist()), batch_size=batch_size):
            probs.append(torch.sigmoid(model(kind.to_device(x, device)).float()).cpu())
            targets.append(y)
    p, t = torch.cat(probs).numpy(), torch.cat(targets).numpy()
    primary = (t >= 1.0).astype(np.float32)  # score on primary labels, as a soundscape window would be
    return p, t, macro_roc_auc(primary, p)


def train_fold(
    shards: list[str | Path],
    folds: pd.DataFrame,
    fold: int,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    mel,
    out_dir: str | Path,
    device: str | None = None,
    student: StudentData | None = None,
    embeddings: EmbeddingInputs | None = None,
) -> dict:
    """Train on all folds but ``fold``, validate on it; write model.pt, oof.parquet, history.csv, metrics.json.

    ``shards``: the mel shards of the labelled windows (keys and labels; the input of a cnn).
    With ``student``, labelled targets mix in the teachers' soft predictions and
    each epoch adds pseudo-labelled soundscape windows; validation is unchanged.
    ``embeddings``: BirdNET's embeddings, the input of a birdnet_head and the target of
    ``cfg.embedding_distill`` (through a training-only projection, never saved in model.pt).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    kind = kind_of(model_cfg)
    ds = kind.dataset(shards, mel, embeddings and embeddings.train, secondary_target=cfg.secondary_target)
    fold_of = folds.set_index("clip_id")["fold"]
    row_fold = ds.rows["id"].map(fold_of)
    if row_fold.isna().any():
        raise ValueError(f"{int(row_fold.isna().sum())} cached chunks belong to clips without a fold")
    train_rows = np.flatnonzero(row_fold.to_numpy() != fold)
    val_rows = np.flatnonzero(row_fold.to_numpy() == fold)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"fold {fold}: {len(train_rows)} training and {len(val_rows)} validation chunks")
    chunks_of = pd.Series(train_rows).groupby(ds.rows["id"].to_numpy()[train_rows]).agg(list)
    n_folds = int(folds["fold"].max()) + 1
    training = _training_set(ds, kind, cfg, mel, len(chunks_of), student, embeddings, fold, n_folds)
    steps_per_epoch = math.ceil((len(chunks_of) + sum(training.draws)) / cfg.batch_size)
    augment = cfg.augment
    if training.mix_pool is not None and augment.mixup_p > 0:
        # soundscape MixUp takes the place of in-batch mixup (the 2025 winner's recipe): a chunk
        # blended with a window and then with a batch neighbour would hold three or four recordings
        augment = replace(augment, mixup_p=0.0)
        log.info("soundscape MixUp replaces in-batch mixup (train.augment.mixup_p %g -> 0)", cfg.augment.mixup_p)
    total_steps = steps_per_epoch * cfg.epochs

    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg, len(ds.classes), drop_path=cfg.drop_path)
    model = kind.to_device(model, dev)
    pretrained = describe_pretrained(model_cfg.pretrained)  # the weights it starts from: hub commit, or file sha256
    distill_weight = cfg.embedding_distill.weight
    # Training-only: maps the CNN's pooled features onto BirdNET's embedding space.
    projection = torch.nn.Linear(model.n_features, BIRDNET_EMBEDDING_DIM).to(dev) if distill_weight > 0 else None
    params = [*model.parameters(), *(projection.parameters() if projection is not None else [])]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total_steps, warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    # What it learns from, by content: a killed job whose inputs changed since (new pseudo-labels, another
    # fold split, other clips) must start over, not resume on the old ones.
    data = _data_hash(ds.rows[["id", "offset_s"]], folds[["clip_id", "fold"]])
    if student is not None:
        data += _data_hash(student.soft, student.pseudo_labels)
    student_key = {"distill": student.cfg.to_dict(), "draws": training.draws} if student else {}
    fingerprint = _fingerprint(
        asdict(model_cfg), cfg.to_dict(), {"fold": fold, "mel": mel.hash, "rows": len(ds), "data": data, **student_key}
    )
    history: list[dict] = []
    best = {"epoch": -1, "val_auc": -math.inf}
    start_epoch = 0

    last = out / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location=dev, weights_only=True)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            if projection is not None:
                projection.load_state_dict(state["projection"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
            log.info("resuming from epoch %d of %d (%s)", start_epoch, cfg.epochs, last)
        else:
            log.info("%s belongs to another configuration; starting over", last)

    use_amp = dev.type == "cuda"
    log.info(
        "fold %d: %d clips (%d chunks) to train on, %d chunks to validate; %d classes; %s on %s",
        fold,
        len(chunks_of),
        len(train_rows),
        len(val_rows),
        len(ds.classes),
        model_cfg.backbone,
        dev,
    )
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        # one random chunk per clip, then draws from the extra sets that follow the labelled rows, in a random order
        picks = [c[int(torch.randint(len(c), (1,), generator=gen))] for c in chunks_of]
        offset = len(ds)
        for part, n in zip(training.parts[1:], training.draws, strict=True):
            picks += (offset + torch.randperm(len(part), generator=gen)[:n]).tolist()
            offset += len(part)
        order = torch.randperm(len(picks), generator=gen).tolist()
        epoch_set = training.epoch([picks[i] for i in order], len(ds), gen)
        loader = DataLoader(epoch_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        model.train()
        losses, emb_losses, seen, train_seconds = [], [], 0, 0.0
        for step, (x, y, w, *target) in enumerate(loader):
            x, y, w, e = kind.augment(x, y, w, augment, gen, target[0] if target else None)
            x, y, w = kind.to_device(x, dev), y.to(dev), w.to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                if projection is None:
                    logits = model(x)
                else:
                    logits, pooled = model.forward_pooled(x)
            loss = weighted_loss(logits.float(), y, w, cfg.loss, cfg.focal_gamma)
            if projection is not None:
                emb_loss = embedding_loss(projection(pooled.float()), e.to(dev))
                emb_losses.append(emb_loss.item())
                loss = loss + distill_weight * emb_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(loss.item())
            seen += len(x)
            train_seconds = time.perf_counter() - t0
            if (step + 1) % 10 == 0 or step + 1 == len(loader):
                rate = seen / (time.perf_counter() - t0)
                left = (total_steps - epoch * steps_per_epoch - step - 1) * cfg.batch_size / max(rate, 1e-9)
                log.info(
                    "epoch %d/%d step %d/%d loss %.4f, %.1f samples/s, about %.0f s left",
                    epoch + 1,
                    cfg.epochs,
                    step + 1,
                    len(loader),
                    float(np.mean(losses[-10:])),
                    rate,
                    left,
                )
        probs, targets, val_auc = _validate(model, kind, ds, val_rows, cfg.batch_size, dev)
        val_loss = float(torch.nn.functional.binary_cross_entropy(torch.as_tensor(probs), torch.as_tensor(targets)))
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "val_auc": val_auc,
                "lr": sched.get_last_lr()[0],
                "train_embedding_loss": float(np.mean(emb_losses)) if emb_losses else float("nan"),
                "train_samples_per_s": seen / max(train_seconds, 1e-9),
                "seconds": time.perf_counter() - t0,
            }
        )
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val macro ROC-AUC %.4f",
            epoch + 1,
            cfg.epochs,
            history[-1]["train_loss"],
            val_loss,
            val_auc,
        )
        if val_auc > best["val_auc"] or best["epoch"] < 0:
            best = {"epoch": epoch + 1, "val_auc": val_auc}
            _keep(out / "best", model, ds, val_rows, probs, {"mel_hash": mel.hash, "epoch": epoch + 1, "fold": fold})
        if epoch + 1 > cfg.epochs - cfg.soup_epochs:
            with atomic_path(out / "soup" / f"epoch{epoch + 1}.pt") as tmp:  # a kill never leaves half a checkpoint
                torch.save(model.state_dict(), tmp)
        resume = {
            "fingerprint": fingerprint,
            "epoch": epoch,
            "model": model.state_dict(),
            "projection": projection.state_dict() if projection is not None else {},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": history,
            "best": best,
        }
        with atomic_path(last) as tmp:
            torch.save(resume, tmp)

    kept, shipped_auc = "best", best["val_auc"]
    if cfg.soup_epochs > 0:
        first = cfg.epochs - cfg.soup_epochs + 1
        model.load_state_dict(_average([out / "soup" / f"epoch{e}.pt" for e in range(first, cfg.epochs + 1)], dev))
        probs, _, shipped_auc = _validate(model, kind, ds, val_rows, cfg.batch_size, dev)
        extra = {"mel_hash": mel.hash, "epoch": cfg.epochs, "fold": fold, "soup_epochs": cfg.soup_epochs}
        _keep(out / "soup", model, ds, val_rows, probs, extra)
        kept = "soup"
        log.info(
            "soup of epochs %d-%d: val macro ROC-AUC %.4f (best single epoch %d: %.4f)",
            first,
            cfg.epochs,
            shipped_auc,
            best["epoch"],
            best["val_auc"],
        )
    for source, final in ((f"{kept}.pt", "model.pt"), (f"{kept}_oof.parquet", "oof.parquet")):
        with atomic_path(out / final) as tmp:
            shutil.copyfile(out / source, tmp)
    write_csv(pd.DataFrame(history), out / "history.csv", index=False)
    metrics = {
        "fold": fold,
        "best_epoch": best["epoch"],
        "best_epoch_val_macro_roc_auc": best["val_auc"],
        "kept": "best epoch" if kept == "best" else f"soup of the last {cfg.soup_epochs} epochs",
        "val_macro_roc_auc": shipped_auc,
        "n_train_clips": len(chunks_of),
        "n_val_chunks": len(val_rows),
        "train_samples_per_s": float(np.mean([h["train_samples_per_s"] for h in history])),
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "kind": model_cfg.kind,
        "embedding_distill_weight": distill_weight,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "pretrained": pretrained,
    }
    with atomic_path(out / "metrics.json") as tmp:  # as it always was: NaN stays NaN, no final newline
        tmp.write_text(json.dumps(metrics, indent=2))
    return metrics
