"""Rule infer: every test soundscape through the members' chosen IRs, blended and post-processed: submission.csv."""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.ensemble import blend
from birdclef.export import compile_ir, predict_ir
from birdclef.infer import (
    REJECTED_COLUMNS,
    Member,
    assemble_submission,
    birdnet_embed,
    class_prior,
    file_row_ids,
    predict_files,
)
from birdclef.kinds import REGISTRY
from birdclef.layout import list_audio_files, member_of
from birdclef.logs import run_logged
from birdclef.postprocess import postprocess
from birdclef.settings import ChunkConfig, EmbeddingConfig, MelConfig, PostprocessConfig
from birdclef.tables import write_csv

log = logging.getLogger("infer")


def test_files(inputs: list[str]) -> list[Path]:
    """The audio files named, with a folder (the demo's) standing for every file in it."""
    files = []
    for path in map(Path, inputs):
        files += [path / name for name in list_audio_files(path)] if path.is_dir() else [path]
    return files


def main(smk) -> None:
    mel, chunks = MelConfig.from_dict(smk.params.mel), ChunkConfig.from_dict(smk.params.chunks)
    post = PostprocessConfig.from_dict(smk.params.postprocess)
    classes = pd.read_csv(smk.input.taxonomy)["primary_label"].astype(str).tolist()
    if smk.input.sample_submission:
        sample = pd.read_csv(smk.input.sample_submission[0])
    else:
        log.info("no %s: columns are row_id and the taxonomy's classes", smk.params.infer["sample_submission"])
        sample = pd.DataFrame(columns=["row_id", *classes])
    clips = pd.read_parquet(smk.input.clips, columns=["primary_label", "keep"])
    prior = class_prior(clips.loc[clips["keep"], "primary_label"].astype(str), classes)
    files = test_files(smk.input.audio)
    if not files:
        log.warning("no test soundscapes in %s: writing an empty submission", smk.params.infer["test_soundscapes"])
        write_csv(sample.iloc[:0], smk.output.submission, index=False)
        write_csv(pd.DataFrame(columns=REJECTED_COLUMNS), smk.output.rejected, index=False)
        return

    fitted = json.loads(Path(smk.input.weights).read_text())
    weights, space = fitted["members"], fitted["space"]  # blend as the weights were fitted
    members, member_weights = [], []
    for quant_path in [p for p in smk.input.exported if p.endswith("quant.json")]:
        folder, member = Path(quant_path).parent, member_of(quant_path)
        choice = json.loads(Path(quant_path).read_text())["choice"]
        compiled = compile_ir(folder / f"{choice}.xml", smk.threads, "int8" if choice == "int8" else "f32")
        kind = REGISTRY[json.loads(Path(quant_path).read_text()).get("kind", "cnn")]
        members.append(Member(kind.input, lambda x, c=compiled: predict_ir(c, x, smk.params.batch_size)))
        member_weights.append(weights[member]["weight"])
        log.info("%s: weight %.3f, %s IR", member, weights[member]["weight"], choice)

    log.info("%d test soundscapes, %d members, %d threads", len(files), len(members), smk.threads)
    embed = None
    if any(m.input == "embeddings" for m in members):  # BirdNET on LiteRT (OpenVINO cannot read it: RFFT2D)
        embed = birdnet_embed(EmbeddingConfig.from_dict(smk.params.embeddings), chunks, smk.threads)
    ids, probs, rejected = predict_files(files, members, mel, chunks, threads=smk.threads, embed=embed)
    scores = np.zeros((0, len(classes)))
    if len(ids):
        scores = postprocess(blend(probs, member_weights, space), ids["id"].to_numpy(), post)
    predicted = pd.concat([ids[["row_id"]], pd.DataFrame(scores, columns=classes)], axis=1)

    fallback = smk.params.infer["fallback_seconds"]
    listed = set(sample["row_id"].astype(str).str.rsplit("_", n=1).str[0])  # the sample knows their rows
    expected = {
        Path(r["file"]).stem: file_row_ids(r["path"], chunks, fallback)
        for r in rejected
        if Path(r["file"]).stem not in listed
    }
    submission, filled = assemble_submission(predicted, sample, prior, expected)
    by_stem = {Path(r["file"]).stem: r for r in rejected}
    no_audio = "in sample_submission.csv but no audio for it"
    filled["reason"] = [by_stem[f]["reason"] if f in by_stem else no_audio for f in filled["file"]]
    filled["file"] = [by_stem[f]["file"] if f in by_stem else f for f in filled["file"]]
    write_csv(submission, smk.output.submission, index=False)
    write_csv(filled[REJECTED_COLUMNS], smk.output.rejected, index=False)
    log.info(
        "wrote %d rows (%d predicted, %d filled with the class prior from %d files) to %s",
        len(submission),
        len(submission) - int(filled["rows_filled"].sum()),
        int(filled["rows_filled"].sum()),
        len(filled),
        smk.output.submission,
    )


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
