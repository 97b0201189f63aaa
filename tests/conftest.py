import os, sys, tempfile
from pathlib import Path
import pytest

# Every test run gets its own artefact cache unless the caller (CI) set one to share with the notebooks.
os.environ.setdefault('KNOWLM_NB_HOME', tempfile.mkdtemp(prefix='knowlm_nb_home_'))
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('MPLBACKEND', 'Agg')

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'

@pytest.fixture(scope='session')
def shared_dir():
    if not SHARED.exists(): pytest.skip('../shared is absent (a user clone): skipping tests on shared data')
    return SHARED
