"Light modules must not pull torch or transformers: a learner who only wants the world, the rhyme scorer, the chunker or IE never pays for them. The one import-lightness test."
import importlib.util, subprocess, sys
import pytest

HEAVY = ('torch', 'transformers', 'trl', 'peft', 'deepspeed', 'bitsandbytes', 'datasets', 'accelerate', 'matplotlib', 'ipywidgets',
         'jieba', 'opencc')  # (the rhyme scorer loads jieba and OpenCC lazily, on first use)
LIGHT = ['knowlm_nb', 'knowlm_nb.core', 'knowlm_nb.world', 'knowlm_nb.chunking', 'knowlm_nb.ie', 'knowlm_nb.rhyme', 'knowlm_nb.rewards',
         'knowlm_nb.probe', 'knowlm_nb.training']
PRESENT = [m for m in LIGHT if importlib.util.find_spec(m) is not None]

def test_light_modules_are_present():
    assert {'knowlm_nb', 'knowlm_nb.core', 'knowlm_nb.world', 'knowlm_nb.chunking', 'knowlm_nb.rhyme', 'knowlm_nb.rewards', 'knowlm_nb.probe', 'knowlm_nb.training'} <= set(PRESENT)

@pytest.mark.parametrize('mod', PRESENT)
def test_light_import(mod):
    code = (f"import sys, {mod}\nheavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print(','.join(heavy))\nsys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"importing {mod} pulled in: {r.stdout.strip()} {r.stderr[-500:]}"

@pytest.mark.parametrize('argv', [[], ['world', '--help'], ['chunk', '--help'], ['pipeline', '--help']])
def test_cli_help_is_light(argv):
    code = ("import sys, contextlib, io\nfrom knowlm_nb.core import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()): main({argv!r})\nsys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, '-c', code], timeout=120).returncode == 0, argv
