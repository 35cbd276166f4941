"""The train_soundscapes set aside as backgrounds of the built validation set: stable, by share, one home."""

import subprocess
import sys

from birdclef.backgrounds import background_fraction, is_background, split_backgrounds
from birdclef.shards import shard_of

from conftest import REPO

IDS = [f"site{k % 7}_2024_{k:05d}" for k in range(2000)]


def test_the_choice_is_stable_and_takes_about_the_share():
    aside = [i for i in IDS if is_background(i, 0.2)]
    assert 0.17 * len(IDS) < len(aside) < 0.23 * len(IDS)
    assert aside == [i for i in IDS if is_background(i, 0.2)]  # the same every call (no salted hash())
    assert set(aside) <= {i for i in IDS if is_background(i, 0.3)}  # a larger share only adds soundscapes
    assert all(0 <= background_fraction(i) < 1 for i in IDS[:50])


def test_the_choice_does_not_follow_the_mel_or_birdnet_shard():
    aside = [i for i in IDS if is_background(i, 0.25)]
    per_shard = [sum(shard_of(i, 4) == s for i in aside) for s in range(4)]
    assert min(per_shard) > 0.15 * len(aside)  # every shard gives some: not a shard cut out whole


def test_no_builder_no_share_sets_nothing_aside():
    assert not any(is_background(i, None) or is_background(i, 0.0) for i in IDS)


def test_split_is_a_partition_in_order_by_file_stem():
    paths = [f"/data/train_soundscapes/{i}.ogg" for i in IDS[:300]]
    kept, aside = split_backgrounds(paths, 0.2)
    assert sorted(kept + aside) == sorted(paths) and not set(kept) & set(aside)
    assert kept == [p for p in paths if p in set(kept)]  # order kept
    assert aside == [p for p in paths if is_background(p.rsplit("/", 1)[1].removesuffix(".ogg"), 0.2)]


def test_the_module_is_stdlib_only():
    code = (
        "import sys; sys.path.insert(0, 'workflow_scripts'); import birdclef.backgrounds;"
        "heavy = {'numpy', 'pandas', 'torch', 'pyarrow'} & set(sys.modules); assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
