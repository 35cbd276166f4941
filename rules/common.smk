# Helpers and paths shared by every rule file.
import sys
from pathlib import Path

from snakemake.utils import validate

# The rules' scripts import the package beside them; so does this file, for
# config checks that a JSON schema cannot express.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))

from birdclef.demo_data import DemoConfig  # noqa: E402
from birdclef.manifest import list_audio_files  # noqa: E402

validate(config, schema="schemas/config.schema.yaml")
try:
    DemoConfig.from_dict(config["demo"])
except ValueError as err:
    raise ValueError(f"Invalid config: {err}") from None

DATA_DIR = config["data_dir"].rstrip("/")
DEMO_DIR = "resources/demo"
USE_DEMO = os.path.normpath(DATA_DIR) == DEMO_DIR


def train_audio_inputs(wildcards):
    """Every file under train_audio/, so that a changed recording reruns the manifest.

    The demo folder belongs to rule demo_data, whose outputs change exactly when
    it reruns, so there the folder itself stands for its files (and the DAG is
    complete in a dry-run before the demo exists).
    """
    root = Path(DATA_DIR) / "train_audio"
    if USE_DEMO:
        return [str(root)]
    if not root.is_dir():
        raise WorkflowError(f"data_dir: {root} is not a folder; data_dir must be a Kaggle BirdCLEF folder")
    return [str(root / name) for name in list_audio_files(root)]
