"Light modules must not pull torch or transformers: a learner who only wants the world or the rhyme scorer never pays for them."
import importlib.util, subprocess, sys
import pytest

LIGHT = ['knowlm_nb', 'knowlm_nb.core', 'knowlm_nb.world', 'knowlm_nb.chunking', 'knowlm_nb.ie', 'knowlm_nb.rhyme']
PRESENT = [m for m in LIGHT if importlib.util.find_spec(m) is not None]

def test_foundation_modules_are_present():
    assert {'knowlm_nb', 'knowlm_nb.core', 'knowlm_nb.world'} <= set(PRESENT)

@pytest.mark.parametrize('mod', PRESENT)
def test_light_import(mod):
    code = (f"import sys, {mod}; heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'deepspeed', 'bitsandbytes') if m in sys.modules]; "
            "print(','.join(heavy)); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"importing {mod} pulled in: {r.stdout.strip()} {r.stderr[-500:]}"

def test_cli_help_is_light():
    code = ("import sys, contextlib, io\nfrom knowlm_nb.core import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main([])\nsys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, '-c', code], timeout=120).returncode == 0
