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

# --- one config-to-CLI mechanism, one exit-code rule, one stage registry

def test_pretrain_help_shows_every_field_with_its_comment():
    from dataclasses import fields
    from knowlm_nb.core import config_field_help
    from knowlm_nb.pretrain import PretrainConfig
    r = run('pretrain', '--help'); assert r.returncode == 0
    text = ' '.join(r.stdout.split())
    helps = config_field_help(PretrainConfig)
    assert set(helps) == {f.name for f in fields(PretrainConfig)}, 'every field has a comment'
    for f in fields(PretrainConfig):
        flag = '--' + f.name.replace('_', '-')
        assert flag in text, flag
        assert ' '.join(helps[f.name].split()) in text, f.name
    assert '--packing, --no-packing' in text and '--config FILE' in text

@pytest.mark.parametrize('args,needle', [
    (['world', '--n-people', '-3'], 'n_people'),
    (['world', '--no-such-flag'], 'unrecognized arguments'),
    (['chunk', '--no-such-flag'], 'unrecognized arguments'),
    (['pretrain', '--out', 'x', '--max-len', '0'], 'PretrainConfig.max_len must be a positive int'),
    (['pretrain', '--out', 'x', '--lr', 'fast'], "argument --lr: expected a number, got 'fast'"),
    (['pretrain', '--lr', '1e-3'], 'required: --out'),
    (['rhyme', 'frobnicate'], 'invalid choice'),
    (['models', 'frobnicate'], 'invalid choice'),
    (['pipeline', '--stages', 'nope'], "unknown stage 'nope'; valid stages: world, models, chunk, pretrain, sft, dpo, rhyme, ie, grpo, edit"),
])
def test_bad_arguments_exit_2_with_one_message(args, needle):
    r = run(*args)
    assert r.returncode == 2, (args, r.returncode, r.stderr[-500:])
    assert needle in r.stderr, r.stderr[-500:]
    assert 'Traceback' not in r.stderr

def test_pipeline_unknown_stage_writes_nothing(tmp_path):
    r = run('pipeline', '--out', str(tmp_path/'rep'), '--stages', 'chunking')
    assert r.returncode == 2 and 'valid stages:' in r.stderr
    assert not (tmp_path/'rep'/'report.md').exists()

def test_pretrain_config_file_with_overrides(tmp_path):
    (tmp_path/'recipe.yaml').write_text('lr: 0.01\nmax_len: 64\nout: runs/from-file\n', encoding='utf-8')
    r = run('pretrain', '--config', str(tmp_path/'recipe.yaml'), '--max-len', '32', '--dry-run')
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert (cfg['lr'], cfg['max_len'], cfg['out']) == (0.01, 32, 'runs/from-file')
    (tmp_path/'bad.yaml').write_text('lr: 0.01\nlearning_rate: 3\n', encoding='utf-8')
    r = run('pretrain', '--config', str(tmp_path/'bad.yaml'), '--out', 'x', '--dry-run')
    assert r.returncode == 2 and "unknown PretrainConfig field 'learning_rate'; valid fields:" in r.stderr

def test_missing_data_file_is_bad_input_not_a_crash(tmp_path):
    r = run('pretrain', '--out', str(tmp_path/'run'), '--data', str(tmp_path/'none.jsonl'), '--max-steps', '1')
    assert r.returncode == 2 and 'none.jsonl does not exist' in r.stderr and 'Traceback' not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3, r.stderr  # the message (a Trainer warning may precede it)

def test_help_lists_registered_stages_in_order():
    from knowlm_nb.core import STAGES
    r = run('--help'); assert r.returncode == 0
    pos = [r.stdout.index('  ' + name + ' ') for name in STAGES]
    assert pos == sorted(pos)
