"GRPO: the tiny run meets the stage's bar (format held, combined reward up), the command end to end on a small random model, bad config and data as one-line errors."
import json, subprocess, sys
from pathlib import Path
import pytest

torch = pytest.importorskip('torch')
from knowlm_nb.grpo import tiny_grpo_path, reward_windows, GRPOTrainConfig, TINY_GRPO_RECIPE
from knowlm_nb.core import read_json, ConfigError

BIN = Path(sys.executable).parent

def _grpo(*args, timeout=600):
    return subprocess.run([str(BIN/'knowlm-nb'), 'grpo', *args], capture_output=True, text=True, timeout=timeout)

def test_tiny_run_keeps_the_format_and_raises_the_combined_reward():
    hist = read_json(tiny_grpo_path().parent/'log_history.json')  # built once (cached; CI's notebooks built it already)
    first, last = reward_windows(hist)
    assert last > first, (first, last)
    assert reward_windows(hist, 'rewards/format_reward/mean')[1] >= 0.9
    steps = [h for h in hist if 'reward' in h and 'step' in h]
    assert len(steps) == TINY_GRPO_RECIPE['max_steps'] // TINY_GRPO_RECIPE['logging_steps']
    assert all(0.0 <= h['frac_reward_zero_std'] <= 1.0 and h['kl'] >= 0 for h in steps)

def test_command_end_to_end_on_a_small_model(small_base, tmp_path):
    r = _grpo('--model', small_base, '--out', str(tmp_path/'run'), '--max-steps', '2', '--batch-size', '8', '--num-generations', '4',
              '--max-completion-len', '12', '--splits', 'validation', '--rewards', 'format', 'combined', 'factuality', '--logging-steps', '1')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'trained 2 steps on 64 prompts' in r.stdout
    assert (tmp_path/'run'/'final'/'adapter_model.safetensors').exists()
    hist = json.loads((tmp_path/'run'/'log_history.json').read_text())
    assert all(f'rewards/{n}_reward/mean' in hist[0] for n in ('format', 'combined', 'factuality'))
    run = json.loads((tmp_path/'run'/'run.json').read_text())
    assert run['data'] == {'items': 64, 'kept': 64, 'too_long': 0} and run['config']['num_generations'] == 4

@pytest.mark.parametrize('args,msg', [
    (['--batch-size', '6', '--num-generations', '4'], 'not a multiple of num_generations = 4'),
    (['--num-generations', '1', '--batch-size', '2'], 'num_generations must be an int >= 2'),
    (['--rewards', 'format', 'fluency'], 'expected some of format, combined'),
    (['--rewards', 'format', '--reward-weights', '1.0', '2.0'], 'one weight per reward (1)'),
    (['--loss-type', 'ppo'], "loss_type must be 'grpo'"),
])
def test_bad_config_is_one_line_before_any_model(args, msg, tmp_path):
    r = _grpo('--out', str(tmp_path/'x'), *args, timeout=120)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith('knowlm-nb grpo: error: ') and msg in last and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path/'x').exists()

def test_bad_items_file_names_the_line(small_base, tmp_path):
    f = tmp_path/'items.jsonl'
    f.write_text(json.dumps({'question': 'Where?', 'answers': ['Sator'], 'title': 'Kalo'}) + '\n' + json.dumps({'answers': ['x']}) + '\n', encoding='utf-8')
    r = _grpo('--model', small_base, '--data', str(f), '--out', str(tmp_path/'x'), '--max-steps', '1', '--batch-size', '4', '--num-generations', '4', timeout=300)
    assert r.returncode == 2 and "items.jsonl:2: needs a non-empty string 'question'" in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_divisibility_counts_processes(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '2')
    GRPOTrainConfig(batch_size=4, num_generations=8)  # 4 × 1 × 2 = 8 completions per round: whole groups
    with pytest.raises(ConfigError, match='4 × 1 × 2 = 8'): GRPOTrainConfig(batch_size=4, num_generations=16)

def test_pipeline_step_from_the_command_line(tmp_path):
    "The pipeline's GRPO step runs from the installed command (the module alone, no notebook namespace) and writes its section and metrics."
    r = subprocess.run([str(BIN/'knowlm-nb'), 'pipeline', '--stages', 'grpo', '--out', str(tmp_path/'rep')], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    md = (tmp_path/'rep'/'report.md').read_text(encoding='utf-8')
    assert "## GRPO with KnowRL's rewards" in md and 'cold start (before GRPO)' in md
    assert (tmp_path/'rep'/'figures'/'grpo_curves.png').exists()
