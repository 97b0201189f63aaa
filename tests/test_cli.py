"The knowlm-nb command: help everywhere, the world writer, bad arguments, the pipeline report."
import json, subprocess, sys, os
from pathlib import Path
import pytest

def run(*args, **kw):
    return subprocess.run(['knowlm-nb', *args],
                          capture_output=True, text=True, timeout=600, **kw)

@pytest.fixture(autouse=True, scope='module')
def _path():
    bindir = str(Path(sys.executable).parent)
    os.environ['PATH'] = bindir + os.pathsep + os.environ['PATH']

def test_help_lists_commands():
    r = run('--help'); assert r.returncode == 0
    for c in ('world', 'models', 'pipeline'): assert c in r.stdout

@pytest.mark.parametrize('cmd', ['world', 'models', 'pipeline'])
def test_subcommand_help(cmd):
    r = run(cmd, '--help'); assert r.returncode == 0 and 'usage: knowlm-nb ' + cmd in r.stdout

def test_unknown_command():
    r = run('frobnicate'); assert r.returncode == 2 and 'invalid choice' in r.stderr

def test_world_writes_datasets_and_manifest(tmp_path):
    r = run('world', '--out', str(tmp_path), '--seed', '5', '--n-people', '30', '--n-orgs', '5', '--n-inventions', '10', '--collaborations', '10')
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path/'manifest.json').read_text(encoding='utf-8'))
    assert m['config']['seed'] == 5 and m['config']['n_people'] == 30
    for name, info in m['datasets'].items(): assert (tmp_path/info['file']).stat().st_size > 0, name

def test_world_bad_size_is_a_clear_error(tmp_path):
    r = run('world', '--out', str(tmp_path), '--n-people', '-3')
    assert r.returncode == 2 and 'WorldConfig.n_people must be an int' in r.stderr

def test_models_list():
    r = run('models', 'list'); assert r.returncode == 0 and 'zjunlp/OneKE' in r.stdout

def test_pipeline_foundation_stages_write_a_report(tmp_path):
    r = run('pipeline', '--out', str(tmp_path/'rep'), '--stages', 'world', 'models')
    assert r.returncode == 0, r.stderr[-2000:]
    md = (tmp_path/'rep'/'report.md').read_text(encoding='utf-8')
    assert '## World' in md and '## Tokenizer and tiny models' in md
    for png in ('world_facts', 'token_lengths'):
        assert (tmp_path/'rep'/'figures'/f'{png}.png').read_bytes()[:4] == b'\x89PNG'
    metrics = json.loads((tmp_path/'rep'/'metrics.json').read_text())
    assert metrics['models']['roundtrip_failures'] == 0 and metrics['world']['facts'] > 200
