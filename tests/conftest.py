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

def _kill_then_resume(cmd:list, out:Path, kill_at:int, env:dict, timeout:int=900):
    "Run `cmd --out out`, SIGKILL it once a complete checkpoint at step >= `kill_at` exists, rerun with --resume; return (killed-at step, resumed run)."
    import signal, subprocess, time
    from knowlm_nb.training import last_checkpoint
    p = subprocess.Popen([*cmd, '--out', str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        ck = last_checkpoint(out)
        if ck is not None and int(ck.name.split('-')[1]) >= kill_at: break
        if p.poll() is not None: pytest.fail('the run ended before it could be killed')
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out/'final').exists(), 'killed too late: the run had finished'
    killed_at = int(last_checkpoint(out).name.split('-')[1])
    return killed_at, subprocess.run([*cmd, '--out', str(out), '--resume'], capture_output=True, text=True, env=env, timeout=timeout)

def _full_and_resumed(cmd:list, tmp_path:Path, kill_at:int, max_steps:int, env:dict)->tuple:
    "Run `cmd` to the end in `full/`; run it again in `cut/`, SIGKILL it at a checkpoint >= `kill_at`, resume; return both run directories."
    import json, subprocess
    r = subprocess.run([*cmd, '--out', str(tmp_path/'full')], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    killed_at, r = _kill_then_resume(cmd, tmp_path/'cut', kill_at, env)
    assert kill_at <= killed_at < max_steps
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path/'cut'/'run.json').read_text())['resumed_from']
    return tmp_path/'full', tmp_path/'cut'

@pytest.fixture
def full_and_resumed():
    "The uninterrupted run and the killed-then-resumed one, for the training stages' exact-resume tests."
    return _full_and_resumed

@pytest.fixture
def free_port():
    "A free localhost TCP port (for a launcher's rendezvous)."
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

@pytest.fixture(scope='module')
def small_base(tmp_path_factory):
    "A randomly initialised 2-layer Llama on the world tokenizer, saved: fast training runs (DPO, GRPO) that need no cached tiny model."
    pytest.importorskip('torch')
    from knowlm_nb.models import world_tokenizer, tiny_config, build_model, save_model
    tok = world_tokenizer()
    d = tmp_path_factory.mktemp('base')/'model'
    save_model(build_model(tiny_config(tokenizer=tok, hidden_size=64, n_layers=2, n_heads=4, max_position_embeddings=512), seed=0), tok, d)
    return str(d)
