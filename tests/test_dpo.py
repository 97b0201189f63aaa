"DPO: every pair differs by exactly its perturbation (property test), tiny DPO moves preferences without costing answers, bad input through the CLI, kill -9 and resume, 2-rank ZeRO-2."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

torch = pytest.importorskip('torch')
from knowlm_nb.world import make_world
from knowlm_nb.dpo import (knowledge_pairs, check_pair, PERTURBATIONS, answer_facts, write_pairs, read_pairs, tiny_dpo, tiny_sft_merged_path,
                           dpo_comparison)
from knowlm_nb.models import world_tokenizer, tiny_config, build_model, save_model, load_model
from knowlm_nb.training import launch_command

BIN = Path(sys.executable).parent

@pytest.fixture(scope='module')
def world():
    return make_world()

def test_every_pair_differs_from_its_chosen_answer_by_exactly_its_perturbation(world):
    n = 0
    for n_facts in (1, 2, 3):
        for split in ('train', 'test'):
            pairs = knowledge_pairs(world, (split,), n_facts)
            kinds = {check_pair(world, p) for p in pairs}
            assert kinds == set(PERTURBATIONS) - ({'shuffle'} if n_facts == 1 else set()), (n_facts, split, kinds)
            n += len(pairs)
    assert n > 11000

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), n_facts=st.integers(1, 4), pick=st.integers(0, 10**6))
def test_pairs_are_deterministic_and_checked_for_any_seed(world, seed, n_facts, pick):
    pairs = knowledge_pairs(world, ('test',), n_facts, seed=seed)
    assert pairs == knowledge_pairs(world, ('test',), n_facts, seed=seed)
    p = pairs[pick % len(pairs)]
    assert check_pair(world, p) == p['perturbation']
    c, r = answer_facts(world, p['chosen'], p['lang']), answer_facts(world, p['rejected'], p['lang'])
    true = lambda t: t[2] in world.objects(t[0], t[1])
    if p['perturbation'] == 'deletion': assert len(r) == len(c) - 1 and set(r) < set(c)  # a fact is missing
    if p['perturbation'] == 'revision': assert len(set(r) - set(c)) == 1 and not true(next(iter(set(r) - set(c))))  # one fact made false
    if p['perturbation'] == 'shuffle': assert sorted(r) == sorted(c) and r != c  # the same facts, another order
    if p['perturbation'] == 'off_topic': assert all(true(t) for t in r) and r[-1][1] != c[-1][1]  # true, but not what was asked
    for other in set(PERTURBATIONS) - {p['perturbation']}:  # and it is no other perturbation
        with pytest.raises(ValueError): check_pair(world, {**p, 'perturbation': other})
    with pytest.raises(ValueError): check_pair(world, {**p, 'chosen': p['rejected'], 'rejected': p['chosen']})  # nor the pair swapped
    with pytest.raises(ValueError): check_pair(world, {**p, 'fact_id': 'f_none'})  # nor about another question

def test_tiny_dpo_moves_every_preference_without_costing_answers(world):
    policy, tok = tiny_dpo()
    pref, ans = dpo_comparison(load_model(str(tiny_sft_merged_path()), device='cpu'), policy, tok, world)
    by = {r['perturbation']: r for r in pref}
    assert set(by) == set(PERTURBATIONS) | {'all'}
    for k, r in by.items(): assert r['reward acc before'] == 0.0 and r['reward acc after'] > 0.5, (k, r)
    assert by['all']['likelihood acc after'] > by['all']['likelihood acc before'], by['all']
    before, after = (r['held-out acc'] for r in ans)
    assert after >= before - 0.02, ans

def _cli(args, tmp_path, timeout=600):
    env = {**os.environ, 'KNOWLM_NB_DEVICE': 'cpu'}
    return subprocess.run([str(BIN/'knowlm-nb'), 'dpo', '--out', str(tmp_path/'o'), *args], capture_output=True, text=True, env=env, timeout=timeout)

def test_bad_input_exits_2_with_one_line(tmp_path, small_base):
    data = tmp_path/'p.jsonl'
    good = json.dumps({'prompt': 'Where was Kalo Renmi born?', 'chosen': 'Kalo Renmi was born in Sator.\nAnswer: Sator', 'rejected': '\nAnswer: Sator'})
    cases = [(good + '\n' + json.dumps({'prompt': 'q', 'chosen': 'a', 'rejected': 'a'}) + '\n', 'p.jsonl:2: chosen and rejected are identical'),
             (good + '\n' + json.dumps({'prompt': 'q', 'chosen': '', 'rejected': 'b'}) + '\n', "p.jsonl:2: field 'chosen' is empty"),
             (json.dumps({'prompt': 'q', 'chosen': 'a'}) + '\n', "p.jsonl:1: missing field 'rejected'"),
             (good + '\n{"prompt": \n', 'p.jsonl:2: invalid JSON')]
    for text, msg in cases:
        data.write_text(text, encoding='utf-8')
        r = _cli(['--model', small_base, '--data', str(data), '--max-steps', '1'], tmp_path)
        assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, (msg, r.stderr[-2000:])
    data.write_text(json.dumps({'prompt': 'Where? ' * 300, 'chosen': 'a', 'rejected': 'b'}) + '\n', encoding='utf-8')
    r = _cli(['--model', small_base, '--data', str(data), '--max-steps', '1', '--max-len', '128'], tmp_path)
    assert r.returncode == 2 and 'none of the 1 pairs fits max_len=128' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    other = tmp_path/'other'
    tok = world_tokenizer()
    save_model(build_model(tiny_config(tokenizer=tok, hidden_size=32, n_layers=1, n_heads=2, max_position_embeddings=512), seed=0), tok, other)
    data.write_text(good + '\n', encoding='utf-8')
    r = _cli(['--model', small_base, '--data', str(data), '--max-steps', '1', '--ref-model', str(other)], tmp_path)
    assert r.returncode == 2 and "does not share the policy's base" in r.stderr and 'hidden_size: policy 64, reference 32' in r.stderr, r.stderr[-2000:]
    r = _cli(['--model', small_base, '--perturbations', 'negation'], tmp_path)
    assert r.returncode == 2 and 'DPOTrainConfig.perturbations' in r.stderr and 'Traceback' not in r.stderr

def test_over_long_pairs_are_counted_not_cut(tmp_path, small_base, world):
    files = write_pairs(tmp_path/'pairs', knowledge_pairs(world, n_facts=2)[:30])
    rows = read_pairs(files['trl'])
    long_ = {**rows[0], 'prompt': 'Where? ' * 300}
    (tmp_path/'mixed.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows + [long_]), encoding='utf-8')
    r = _cli(['--model', small_base, '--data', str(tmp_path/'mixed.jsonl'), '--max-steps', '2', '--max-len', '256', '--batch-size', '4'], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'skipped 1 of 31 pairs longer than max_len=256' in r.stdout + r.stderr
    rec = json.loads((tmp_path/'o'/'run.json').read_text())
    assert rec['data']['kept'] == 30 and rec['data']['too_long'] == 1

def _adapter(run_dir):
    from safetensors.torch import load_file
    return load_file(str(Path(run_dir)/'final'/'adapter_model.safetensors'))

@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, small_base, world, full_and_resumed):
    files = write_pairs(tmp_path/'pairs', knowledge_pairs(world, n_facts=2)[:400])
    args = ['dpo', '--model', small_base, '--data', str(files['trl']), '--max-steps', '40', '--save-steps', '5', '--logging-steps', '1',
            '--batch-size', '4', '--grad-accum', '1', '--lr', '1e-3', '--warmup-steps', '2', '--max-len', '256', '--seed', '0']
    full, cut = full_and_resumed([str(BIN/'knowlm-nb'), *args], tmp_path, 10, 40, {**os.environ, 'KNOWLM_NB_DEVICE': 'cpu'})
    a, b = _adapter(full), _adapter(cut)
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5

@pytest.mark.slow
def test_deepspeed_two_ranks_dpo_on_cpu(tmp_path, small_base, world, free_port):
    "A real 2-rank ZeRO-2 DPO run under the deepspeed launcher, on CPU (gloo): both ranks train and the reward margin grows."
    pytest.importorskip('deepspeed')
    files = write_pairs(tmp_path/'pairs', knowledge_pairs(world, n_facts=2)[:200])
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(DS_ACCELERATOR='cpu', KNOWLM_NB_DEVICE='cpu')
    cmd = launch_command(['knowlm-nb', 'dpo', '--model', small_base, '--data', str(files['trl']), '--out', str(tmp_path/'run'), '--deepspeed', 'zero2',
                          '--max-steps', '12', '--logging-steps', '2', '--lr', '2e-3', '--warmup-steps', '0', '--batch-size', '4', '--grad-accum', '1',
                          '--max-len', '256'], gpus_per_node=2, master_port=free_port)
    cmd = cmd.replace('deepspeed ', str(BIN/'deepspeed') + ' ', 1)
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    run = json.loads((tmp_path/'run'/'run.json').read_text())
    assert run['world_size'] == 2 and run['steps'] == 12
    margins = [h['rewards/margins'] for h in json.loads((tmp_path/'run'/'log_history.json').read_text()) if 'rewards/margins' in h and 'loss' in h]
    assert margins[-1] > margins[0], margins
    assert (tmp_path/'run'/'final'/'adapter_model.safetensors').exists()
