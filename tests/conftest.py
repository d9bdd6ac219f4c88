import os
from pathlib import Path

# Busy-waiting OpenMP threads starve each other when several torch processes share 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (real MM-IMDb sample); CI sets MMSETS_REQUIRE_SHARED=1."""
    if not (SHARED / "data" / "mmimdb-sample" / "split.json").exists():
        if os.environ.get("MMSETS_REQUIRE_SHARED") == "1":
            pytest.fail(f"MMSETS_REQUIRE_SHARED=1 but {SHARED} has no data/mmimdb-sample")
        pytest.skip(f"needs the real MM-IMDb sample in {SHARED}, absent in this clone")
    return SHARED


@pytest.fixture(scope="session")
def mmimdb_sample(shared_dir: Path) -> Path:
    return shared_dir / "data" / "mmimdb-sample"


@pytest.fixture
def shipped_config() -> dict:
    """A fresh copy of the repository's config.yaml, as Snakemake reads it."""
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.fixture(scope="session")
def config_schema() -> Path:
    return ROOT / "workflow" / "schemas" / "config.schema.yaml"
