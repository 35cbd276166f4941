"""BirdNET's screen of the built validation set's backgrounds: its windows, its confidences, the threshold."""

import numpy as np
import pandas as pd
import pytest

from birdclef import birdnet
from birdclef.audio import write_ogg
from birdclef.background_screen import background_windows, clean_windows, screen_backgrounds
from birdclef.bundle_predict import window_segments
from birdclef.embeddings import read_audio_48k
from birdclef.settings import ChunkConfig, EmbeddingConfig

SR = 32_000


def test_a_background_is_cut_into_its_whole_windows():
    windows = background_windows({"a.ogg": 12.0, "b.ogg": 4.9, "c.ogg": 10.0}, 5.0)
    assert list(zip(windows["id"], windows["offset_s"], strict=True)) == [
        ("a.ogg", 0.0),
        ("a.ogg", 5.0),
        ("c.ogg", 0.0),
        ("c.ogg", 5.0),
    ]  # the 2 s tail of a and all of b are shorter than a window


def test_clean_windows_are_those_strictly_below_the_threshold():
    screen = pd.DataFrame(
        {"background": ["a", "a", "b"], "start_s": [0.0, 5.0, 0.0], "max_confidence": [0.02, 0.1, 0.5]}
    ).assign(species="x")
    assert clean_windows(screen, 0.1)["start_s"].tolist() == [0.0]
    assert len(clean_windows(screen, 1.0)) == 3


@pytest.fixture(scope="module")
def background(tmp_path_factory):
    """12 s of noise with a chirp sweep in its second window, at 32 kHz."""
    rng = np.random.default_rng(0)
    audio = 0.02 * rng.standard_normal(12 * SR)
    t = np.arange(2 * SR) / SR
    audio[6 * SR : 8 * SR] += 0.3 * np.sin(2 * np.pi * (2000 * t + 1500 * t**2))
    path = tmp_path_factory.mktemp("screen") / "bg.ogg"
    write_ogg(path, audio.astype(np.float32), SR)
    return path


def test_the_screen_is_birdnets_highest_taxonomy_confidence_over_a_windows_segments(background):
    labels = birdnet.birdnet_labels()
    species_of = {"x": labels[10][0], "y": labels[2000][0], "z": ""}  # z: a class BirdNET does not know
    screen = screen_backgrounds([background], species_of, EmbeddingConfig(), ChunkConfig())
    assert screen["start_s"].tolist() == [0.0, 5.0] and (screen["background"] == str(background)).all()
    # by hand: BirdNET on the window's three segments, the highest logit of the two species, BirdNET's sigmoid
    audio = read_audio_48k(background)
    model = birdnet.BirdNetEmbedder()
    index = [k for k, (s, _) in enumerate(labels) if s in {labels[10][0], labels[2000][0]}]
    for row in screen.itertuples(index=False):
        window = audio[round(row.start_s * 48_000) : round((row.start_s + 5) * 48_000)]
        _, logits = model(window_segments(window, EmbeddingConfig().segment_starts))
        confidence = birdnet.birdnet_sigmoid(logits[:, index].max(axis=0))
        assert row.max_confidence == pytest.approx(confidence.max(), rel=1e-5)
        assert row.species == labels[index[int(confidence.argmax())]][0]


def test_without_a_species_birdnet_knows_nothing_is_screened_out(background, caplog):
    screen = screen_backgrounds([background], {"z": ""}, EmbeddingConfig(), ChunkConfig())
    assert screen["max_confidence"].tolist() == [0.0, 0.0] and "not screened" in caplog.text
