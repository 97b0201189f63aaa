"The wheel: `python -m build` makes one, it installs in a clean virtual environment, and the metadata is complete."
import subprocess, sys, venv, zipfile, email
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    pytest.importorskip('build')
    out = tmp_path_factory.mktemp('dist')
    r = subprocess.run([sys.executable, '-m', 'build', '--wheel', '--outdir', str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    whl, = out.glob('knowlm_nb-*.whl')
    return whl

def test_wheel_metadata_complete(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.message_from_bytes(z.read(next(n for n in names if n.endswith('.dist-info/METADATA'))))
        eps = z.read(next(n for n in names if n.endswith('.dist-info/entry_points.txt'))).decode()
    assert meta['Summary'] and len(meta['Summary']) > 40
    assert meta['License-Expression'] == 'Apache-2.0'
    urls = meta.get_all('Project-URL'); assert any(u.startswith('Repository') for u in urls) and any(u.startswith('Documentation') for u in urls)
    cls = meta.get_all('Classifier'); assert any('Python :: 3.11' in c for c in cls) and any('Artificial Intelligence' in c for c in cls)
    reqs = ' '.join(meta.get_all('Requires-Dist'))
    for dep in ('torch', 'transformers', 'peft', 'trl', 'accelerate', 'datasets', 'bitsandbytes', 'ipywidgets', 'matplotlib', 'tqdm', 'deepspeed', 'jupyterlab'):
        assert dep in reqs, dep
    assert 'knowlm-nb = knowlm_nb.core:main' in eps
    assert 'knowlm_nb/world.py' in names and not any(n.startswith(('nbs/', 'tests/', 'shared/')) for n in names)
    assert not any('shared' in n for n in names)
    # the only poems shipped: 唐诗三百首 from chinese-poetry, with its licence, provenance and the 全唐诗 checksum manifest beside it
    assert sorted(n for n in names if 'poetry' in n) == [f'knowlm_nb/data/poetry/{f}' for f in
                                                         ('LICENSE.chinese-poetry', 'PROVENANCE.md', 'quantangshi_manifest.json', 'tangshi300.json')]

def test_wheel_installs_in_clean_venv(wheel, tmp_path):
    env_dir = tmp_path/'venv'
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir/'bin'/'python'
    r = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '-c', str(ROOT/'constraints.txt'), str(wheel)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    code = "import sys, knowlm_nb.world as w; m = w.make_world(); assert not w.check_world(m); print(m); assert 'torch' not in sys.modules"
    r = subprocess.run([str(py), '-c', code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and 'World(seed=0' in r.stdout, r.stderr[-2000:]
    r = subprocess.run([str(env_dir/'bin'/'knowlm-nb'), 'models', 'list'], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and 'zjunlp/OneKE' in r.stdout, r.stderr[-2000:]
