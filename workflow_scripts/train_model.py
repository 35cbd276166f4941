"""Rules train_teacher and train_student: train one model on one fold of the mel cache."""

from pathlib import Path

import pandas as pd
import torch

from birdclef.distill import teacher_soft_targets
from birdclef.layout import by_model
from birdclef.logs import run_logged
from birdclef.pretrained import pinned_config
from birdclef.settings import DistillConfig, MelConfig, ModelConfig, TrainConfig
from birdclef.train import EmbeddingInputs, StudentData, train_fold


def student_data(smk) -> StudentData:
    oof = {name: [pd.read_parquet(p) for p in paths] for (_, name), paths in by_model(smk.input.teacher_oof).items()}
    return StudentData(
        cfg=DistillConfig.from_dict(smk.params.distill),
        soft=teacher_soft_targets(oof, smk.params.teacher_weights),
        pseudo_shards=list(smk.input.soundscapes),
        pseudo_labels=pd.read_parquet(smk.input.pseudo),
    )


def model_config(smk) -> ModelConfig:
    """The model's settings; hf-hub: weights pinned to the snapshot rule pretrained_weights fetched."""
    fetched = smk.input.get("pretrained") or []  # only a model whose pretrained: is an hf-hub: name has this input
    record = fetched if isinstance(fetched, str) else (fetched[0] if fetched else None)
    return pinned_config(ModelConfig.from_dict(smk.params.model), record)


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    train_fold(
        list(smk.input.shards),
        pd.read_csv(smk.input.folds),
        int(smk.wildcards.fold),
        model_config(smk),
        TrainConfig.from_dict(smk.params.train),
        MelConfig.from_dict(smk.params.mel),
        Path(smk.output.model).parent,
        student=student_data(smk) if smk.rule == "train_student" else None,
        embeddings=EmbeddingInputs(
            train=list(smk.input.embeddings),
            soundscapes=list(smk.input.soundscape_embeddings),
            soundscape_mels=list(smk.input.soundscapes) if smk.input.soundscape_embeddings else [],
        ),
    )


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
