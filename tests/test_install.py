"Installing off this machine: what `make setup` would run with and without an NVIDIA GPU (a dry run: this machine cannot reach PyTorch's index), and the same CPU index and the same repository in the README, environment.yml and the Colab notebooks."
import json, os, re, shlex, shutil, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = 'https://download.pytorch.org/whl/cpu'
TORCH_PIN = next(l.strip() for l in (ROOT/'constraints.txt').read_text().splitlines() if l.startswith('torch=='))
REPO_URL = re.search(r'^Repository\s*=\s*"([^"]+)"', (ROOT/'pyproject.toml').read_text(), re.M)[1]  # [project.urls] (no tomllib on 3.10)
MAKE = shutil.which('make')
needs_make = pytest.mark.skipif(MAKE is None, reason='make is absent')
VALUED = {'-c', '--constraint', '-e', '--editable', '-r', '--index-url', '-i', '--extra-index-url', '--timeout', '--retries', '-f', '--find-links'}

def pip_install(line:str)->dict|None:
    "The options and requirements of a `pip install` command line, or None if `line` is not one."
    if not re.search(r'\bpip install\b', line): return None
    argv = shlex.split(line)
    args, opts, reqs = iter(argv[argv.index('install', argv.index('pip')) + 1:]), {}, []
    for a in args:
        if a in VALUED: opts.setdefault(a, []).append(next(args))
        elif a.startswith('-'): opts.setdefault(a, [])
        else: reqs.append(a)
    return {'opts': opts, 'reqs': reqs, 'line': line}

def dry_run(tmp_path:Path, target:str='setup', gpu:bool=False, *overrides:str)->list[str]:
    "The commands `make -n target` prints for a fresh venv, with `nvidia-smi` absent from PATH (or a fake one that lists a GPU)."
    path = [d for d in os.environ.get('PATH', '').split(os.pathsep) if d and not (Path(d)/'nvidia-smi').exists()]
    if gpu:
        fake = tmp_path/'fakebin'
        fake.mkdir(exist_ok=True)
        (fake/'nvidia-smi').write_text('#!/bin/sh\necho "GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-000000000000)"\n')
        (fake/'nvidia-smi').chmod(0o755)
        path.insert(0, str(fake))
    env = {k: v for k, v in os.environ.items() if k not in ('TORCH_INDEX', 'MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')} | {'PATH': os.pathsep.join(path)}
    r = subprocess.run([MAKE, '-n', '-C', str(ROOT), target, f'VENV={tmp_path/"venv"}', *overrides], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return [l for l in r.stdout.splitlines() if not l.startswith('make')]

def torch_and_package(lines:list[str])->tuple[int, dict, int, dict]:
    "(position, parsed) of the torch install line and of the (first) package install line."
    installs = [(i, p) for i, p in ((i, pip_install(l)) for i, l in enumerate(lines)) if p]
    torch = [(i, p) for i, p in installs if any(r.startswith('torch') for r in p['reqs'])]
    package = [(i, p) for i, p in installs if any(e.startswith('.[') or e == '.' for e in p['opts'].get('-e', []))]
    assert len(torch) == 1 and package, lines
    return (*torch[0], *package[0])

@needs_make
def test_setup_without_a_gpu_takes_the_cpu_wheel_first(tmp_path):
    lines = dry_run(tmp_path, 'setup', gpu=False)
    ti, torch, pi, package = torch_and_package(lines)
    assert torch['reqs'] == [TORCH_PIN] == ['torch==2.13.0'], torch['line']
    assert torch['opts'].get('-c') == ['constraints.txt'], torch['line']
    assert CPU_INDEX in torch['opts'].get('--extra-index-url', []) + torch['opts'].get('--index-url', []), torch['line']
    # an unreachable index must not stall the install: pip's 5 retries with back-off per package, ~7.5 s each, are cut down
    assert int(torch['opts']['--retries'][0]) <= 2 and int(torch['opts']['--timeout'][0]) <= 60, torch['line']
    assert ti < pi, 'torch must be installed before the package (else the package pulls a CUDA torch)'
    assert package['opts'].get('-c') == ['constraints.txt'], package['line']
    assert package['reqs'] == [], package['line']

@needs_make
def test_setup_with_a_gpu_takes_pypi_torch(tmp_path):
    lines = dry_run(tmp_path, 'setup', gpu=True)
    ti, torch, pi, package = torch_and_package(lines)
    assert torch['reqs'] == [TORCH_PIN] and torch['opts'].get('-c') == ['constraints.txt'], torch['line']
    assert not any('download.pytorch.org' in l for l in lines), lines
    assert ti < pi and package['opts'].get('-c') == ['constraints.txt']

@needs_make
def test_torch_index_can_be_switched_off(tmp_path):
    "`make setup TORCH_INDEX=` (a mirror, an offline wheel folder) runs the same pinned install without any index."
    lines = dry_run(tmp_path, 'setup', False, 'TORCH_INDEX=')
    ti, torch, pi, package = torch_and_package(lines)
    assert torch['reqs'] == [TORCH_PIN] and not any('download.pytorch.org' in l for l in lines), lines

@needs_make
def test_make_lab_installs_the_lab_extra_then_starts_jupyterlab(tmp_path):
    lines = dry_run(tmp_path, 'lab', gpu=False)
    ti, torch, pi, package = torch_and_package(lines)  # `make setup` first
    lab = [(i, p) for i, p in ((i, pip_install(l)) for i, l in enumerate(lines)) if p and any('lab' in e for e in p['opts'].get('-e', []))]
    assert len(lab) == 1, lines
    li, lab = lab[0]
    assert re.fullmatch(r'\.\[([\w,]+)\]', lab['opts']['-e'][0]) and 'lab' in lab['opts']['-e'][0][2:-1].split(','), lab['line']
    assert lab['opts'].get('-c') == ['constraints.txt'] and ti < li, lab['line']
    start = [i for i, l in enumerate(lines) if re.search(r'(^|/)jupyter lab nbs/?$', l.strip())]
    assert start and start[0] > li, lines
    assert 'lab = ["jupyterlab' in (ROOT/'pyproject.toml').read_text()

def test_readme_and_environment_name_the_same_cpu_index():
    readme, env = (ROOT/'README.md').read_text(encoding='utf-8'), (ROOT/'environment.yml').read_text(encoding='utf-8')
    for name, text in (('README.md', readme), ('environment.yml', env), ('Makefile', (ROOT/'Makefile').read_text())):
        assert set(re.findall(r'https://download\.pytorch\.org/whl/[\w.]+', text)) == {CPU_INDEX}, name
    yaml = pytest.importorskip('yaml')
    pip = next(d['pip'] for d in yaml.safe_load(env)['dependencies'] if isinstance(d, dict))
    assert f'--extra-index-url {CPU_INDEX}' in pip and TORCH_PIN in pip and '-c constraints.txt' in pip, pip
    assert pip.index(f'--extra-index-url {CPU_INDEX}') < pip.index(TORCH_PIN)
    # the README's pip instructions: torch from the CPU index, then the package from the repository (no release on PyPI yet)
    assert f'pip install {TORCH_PIN} --index-url {CPU_INDEX}' in readme
    assert f'"knowlm_nb @ git+{REPO_URL}"' in readme and 'make lab' in readme
    blocks = '\n'.join(re.findall(r'```bash\n(.*?)```', readme, re.S))
    assert not re.search(r'pip install\b.*\bknowlm_nb(\[[\w,]+\])?\s*(#|$)', blocks, re.M) and '!pip install knowlm_nb' not in readme, 'no release on PyPI yet'

COLAB = sorted((ROOT/'nbs').glob('*_colab.ipynb'))

@pytest.mark.parametrize('nb', COLAB, ids=lambda p: p.name)
def test_colab_installs_from_the_repository_keeping_torch_and_numpy(nb):
    cells = [''.join(c['source']) for c in json.loads(nb.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']
    install, = [c for c in cells if "'pip', 'install'" in c]
    assert f"knowlm_nb @ git+{REPO_URL}" in install, install
    assert "'-c', '/tmp/keep.txt'" in install and "('torch', 'torchvision', 'torchaudio', 'numpy')" in install, install
