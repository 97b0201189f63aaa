"""Thread discipline (issue: two torch jobs on two cores collapse when each takes every core). The rule: the package never
sets torch's thread count itself, so OMP_NUM_THREADS decides; every runner that starts jobs side by side (the notebook
runner, `make test-notebooks`) shares the cores out, at least one thread each."""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import run_notebooks  # noqa: E402

CORES = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


@pytest.mark.parametrize('jobs,cores,want', [(1, 2, 2), (2, 2, 1), (4, 2, 1), (2, 16, 8), (3, 16, 5), (0, 4, 4)])
def test_threads_per_job_shares_the_cores(jobs, cores, want):
    assert run_notebooks.threads_per_job(jobs, cores) == want


def test_kernels_get_their_share_and_the_inline_backend(monkeypatch):
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    env = run_notebooks.kernel_env(2)
    assert env['OMP_NUM_THREADS'] == env['MKL_NUM_THREADS'] == str(max(1, CORES // 2))
    assert 'MPLBACKEND' not in env and env['HF_HUB_OFFLINE'] == '1'


def test_a_kernel_started_by_the_runner_runs_torch_with_its_share(tmp_path):
    "End to end: a notebook run with --jobs 2 sees torch.get_num_threads() == cores // 2 (what its kernel's environment says)."
    nb = {'cells': [{'cell_type': 'code', 'id': 'a', 'metadata': {}, 'outputs': [], 'execution_count': None,
                     'source': 'import torch, os\nprint(torch.get_num_threads(), os.environ["OMP_NUM_THREADS"])'}],
          'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}, 'nbformat': 4, 'nbformat_minor': 5}
    (tmp_path/'t.ipynb').write_text(json.dumps(nb))
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'run_notebooks.py'), '--jobs', '2', '--out', str(tmp_path/'out'), str(tmp_path/'t.ipynb')],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads((tmp_path/'out'/'t.ipynb').read_text())['cells'][0]['outputs']
    share = str(max(1, CORES // 2))
    text = ''.join(''.join(o['text']) if isinstance(o.get('text'), list) else o.get('text', '') for o in out)
    assert text.split() == [share, share], out


def test_make_test_notebooks_gives_each_parallel_worker_its_share():
    r = subprocess.run(['make', '-n', '-W', '.venv/.installed', 'test-notebooks'], cwd=ROOT, capture_output=True, text=True)
    line = next((l for l in r.stdout.splitlines() if 'nbdev-test' in l), '')
    m = re.search(r'OMP_NUM_THREADS=(\d+).*--n-workers (\d+)', line)
    assert m, r.stdout
    assert int(m.group(1)) * int(m.group(2)) <= max(CORES, int(m.group(2))) and int(m.group(1)) >= 1, line


def test_the_package_leaves_torch_threads_to_omp_num_threads():
    "Importing and using the training stages does not override OMP_NUM_THREADS (no torch.set_num_threads anywhere)."
    code = ('import torch, knowlm_nb.training, knowlm_nb.pretrain, knowlm_nb.sft, knowlm_nb.editing\n'
            'from knowlm_nb.core import seed_everything\nseed_everything(0)\nprint(torch.get_num_threads())')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=300)
    assert r.returncode == 0 and r.stdout.split()[-1] == '1', r.stderr[-1000:]
    src = '\n'.join(p.read_text(encoding='utf-8') for p in (ROOT/'knowlm_nb').glob('*.py'))
    assert 'set_num_threads' not in src
