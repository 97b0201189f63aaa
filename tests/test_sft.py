"SFT: prompt masking (property test), only adapter weights move, merges (LoRA, QLoRA), kill -9 and resume, bad input through the CLI, 2-rank ZeRO-2."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

torch = pytest.importorskip('torch')
from knowlm_nb.sft import (tokenize_example, check_response_labels, response_text, build_prompt, sft, merge_check, load_sft_model,
                           tiny_sft, sft_eval_items, answer_accuracy, knowtuning_records)
from knowlm_nb.training import launch_command
from knowlm_nb.models import world_tokenizer, tiny_config, build_model, save_model
from knowlm_nb.pretrain import tiny_lm

BIN = Path(sys.executable).parent
TEXT = st.text(alphabet=st.sampled_from(list('abcdefgh XYZ.,?:!\n') + list('出生于城的首都是哪里')), min_size=1, max_size=40)

@pytest.fixture(scope='module')
def tok():
    return world_tokenizer()

@pytest.fixture(scope='module')
def small_base(tmp_path_factory, tok):
    "A randomly initialised 2-layer Llama on the world tokenizer, saved: fast runs that need no cached tiny_lm."
    d = tmp_path_factory.mktemp('base')/'model'
    save_model(build_model(tiny_config(tokenizer=tok, hidden_size=64, n_layers=2, n_heads=4, max_position_embeddings=512), seed=0), tok, d)
    return str(d)

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instruction=TEXT, input=st.one_of(st.just(''), TEXT), output=TEXT.filter(lambda s: s.strip()))
def test_labels_cover_exactly_the_response(tok, instruction, input, output):
    rec = {'instruction': instruction, 'input': input, 'output': output}
    s = tokenize_example(rec, tok, 4096)
    prompt, resp = response_text(rec, tok, 'alpaca')
    n_prompt = 1 + len(tok(prompt, add_special_tokens=False)['input_ids'])
    assert s['n_prompt'] == n_prompt and all(l == -100 for l in s['labels'][:n_prompt])
    assert check_response_labels(s, tok, resp) == len(s['input_ids']) - n_prompt
    assert tok.decode(s['input_ids'][n_prompt:], skip_special_tokens=True) == output

def test_chat_template_path(tok):
    chat = tok.__class__.from_pretrained(tok.name_or_path) if tok.name_or_path else tok
    chat.chat_template = ("{% for m in messages %}<|bos|>{{ m['role'] }}: {{ m['content'] }}{% if m['role'] == 'assistant' %}<|eos|>{% endif %}{{ '\\n' }}{% endfor %}"
                          "{% if add_generation_prompt %}<|bos|>assistant: {% endif %}")
    rec = {'instruction': 'Where was Kalo Renmi born?', 'output': 'Sator'}
    prompt, resp = response_text(rec, chat, 'chat')
    assert prompt.endswith('assistant: ') and resp == 'Sator<|eos|>'  # the turn separator after the end-of-turn token is not learned
    s = tokenize_example(rec, chat, 256, 'chat')
    assert check_response_labels(s, chat, resp) == len(chat(resp, add_special_tokens=False)['input_ids'])
    assert s['input_ids'].count(chat.bos_token_id) == 2  # the template's own BOS tokens, none added twice
    assert s['labels'][-1] == chat.eos_token_id and s['labels'][-2] != chat.eos_token_id  # one EOS, not the template's and ours

def test_only_adapter_weights_change_and_lora_merge_is_exact(tmp_path, small_base):
    r = sft(model=small_base, out=str(tmp_path/'run'), max_steps=15, batch_size=8, lr=5e-3, max_len=256, warmup_steps=0, logging_steps=5,
            grad_accum=1, device='cpu', train_tokens=['\nAnswer: '])
    from safetensors.torch import load_file
    base = load_file(str(Path(small_base)/'model.safetensors'))
    sd = {k.replace('base_model.model.', '').replace('.base_layer', '').replace('.token_adapter', ''): v for k, v in r.model.state_dict().items()
          if 'lora_' not in k and 'trainable_tokens' not in k}
    assert set(base) <= set(sd) and all(torch.equal(sd[k], base[k]) for k in base)
    moved = [k for k, v in r.model.named_parameters() if v.requires_grad]
    assert moved and all('lora_' in k or 'trainable_tokens' in k for k in moved)
    assert r.record['trainable_parameters'] < 0.3 * r.record['parameters']
    assert merge_check(tmp_path/'run'/'final')['vs_unmerged'] < 1e-4

def test_qlora_trains_on_cpu_and_merges_into_the_unquantized_base(tmp_path, small_base):
    pytest.importorskip('bitsandbytes')
    r = sft(model=small_base, out=str(tmp_path/'q'), quantization='4bit', max_steps=10, batch_size=8, lr=5e-3, max_len=256, warmup_steps=0,
            logging_steps=1, grad_accum=1, device='cpu')
    losses = [h['loss'] for h in r.log_history if 'loss' in h]
    assert losses[-1] < losses[0]
    mc = merge_check(tmp_path/'q'/'final', quantization='4bit')
    assert mc['vs_unmerged'] < 1e-4
    assert mc['vs_trained_quantized'] <= 1.5 * mc['base_quantization_error'] + 1e-3

def _adapter(run_dir):
    from safetensors.torch import load_file
    return load_file(str(Path(run_dir)/'final'/'adapter_model.safetensors'))

def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, small_base, full_and_resumed):
    args = ['sft', '--model', small_base, '--max-steps', '80', '--save-steps', '10', '--logging-steps', '1', '--batch-size', '8',
            '--grad-accum', '1', '--lr', '3e-3', '--warmup-steps', '5', '--max-len', '256', '--seed', '0']
    full, cut = full_and_resumed([str(BIN/'knowlm-nb'), *args], tmp_path, 20, 80, {**os.environ, 'KNOWLM_NB_DEVICE': 'cpu'})
    a, b = _adapter(full), _adapter(cut)
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5

def _cli(args, tmp_path, extra_env=None):
    env = {**os.environ, 'KNOWLM_NB_DEVICE': 'cpu', **(extra_env or {})}
    return subprocess.run([str(BIN/'knowlm-nb'), 'sft', '--out', str(tmp_path/'o'), *args], capture_output=True, text=True, env=env, timeout=600)

def test_bad_input_exits_2_with_one_line(tmp_path, small_base):
    data = tmp_path/'d.jsonl'
    good = json.dumps({'instruction': 'Where was Kalo Renmi born?', 'output': 'Sator'})
    cases = [(good + '\n' + json.dumps({'instruction': 'x'}) + '\n', "d.jsonl:2: missing field 'output'"),
             (json.dumps({'output': 'y'}) + '\n', "d.jsonl:1: missing field 'instruction'"),
             (good + '\n\n' + json.dumps({'instruction': 'x', 'output': ''}) + '\n', "d.jsonl:3: field 'output' is empty"),
             (good + '\n{"instruction": \n', 'd.jsonl:2: invalid JSON')]
    for text, msg in cases:
        data.write_text(text, encoding='utf-8')
        r = _cli(['--model', small_base, '--data', str(data), '--max-steps', '1'], tmp_path)
        assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, (msg, r.stderr[-2000:])
    data.write_text(good + '\n', encoding='utf-8')
    r = _cli(['--model', small_base, '--data', str(data), '--max-steps', '1', '--lora-target', 'q_proj', 'wq'], tmp_path)
    assert r.returncode == 2 and "lora_target ['wq'] not found" in r.stderr and 'q_proj' in r.stderr
    shim = tmp_path/'shim'
    shim.mkdir()
    (shim/'bitsandbytes.py').write_text("raise ImportError('no usable backend on this machine')\n")
    r = _cli(['--model', small_base, '--data', str(data), '--max-steps', '1', '--quantization', '4bit'], tmp_path, {'PYTHONPATH': str(shim)})
    assert r.returncode == 2 and 'needs bitsandbytes' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]

def test_over_long_examples_are_counted_not_truncated(tmp_path, small_base):
    data = tmp_path/'d.jsonl'
    recs = [{'instruction': 'Where was Kalo Renmi born?', 'output': 'Sator'}] * 3 + [{'instruction': 'Where? ' * 200, 'output': 'Sator'}]
    data.write_text(''.join(json.dumps(r) + '\n' for r in recs), encoding='utf-8')
    r = _cli(['--model', small_base, '--data', str(data), '--max-steps', '2', '--max-len', '128', '--batch-size', '2'], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'skipped 1 of 4 examples longer than the cutoff' in r.stdout + r.stderr
    rec = json.loads((tmp_path/'o'/'run.json').read_text())
    assert rec['data']['kept'] == 3 and rec['data']['too_long'] == 1
    data.write_text(json.dumps(recs[-1]) + '\n', encoding='utf-8')
    r = _cli(['--model', small_base, '--data', str(data), '--max-steps', '2', '--max-len', '128'], tmp_path)
    assert r.returncode == 2 and 'none of the 1 examples fits the cutoff of 128' in r.stderr

def test_both_sft_models_beat_the_untuned_base_by_a_wide_margin():
    lm, tok = tiny_lm()
    items = sft_eval_items()
    base = answer_accuracy(lm, tok, items)['all']
    for kind in ('vanilla', 'knowledge'):
        m, _ = tiny_sft(kind)
        acc = answer_accuracy(m, tok, items)['all']
        assert acc - base > 0.25, (kind, acc, base)

def test_no_test_fact_in_the_sft_data():
    "Every sentence of every knowledge output parses to a fact of the world, and none of them is a test fact."
    import re
    from knowlm_nb.world import make_world, RELATIONS
    from knowlm_nb.sft import parse_fact, ANSWER_MARK
    w = make_world()
    test = {(f.s, f.r, f.o) for f in w.facts if f.split == 'test'} | {(f.o, f.r, f.s) for f in w.facts if f.split == 'test' and RELATIONS[f.r].symmetric}
    n = 0
    for r in knowtuning_records(w, 'knowledge', context_facts=2):
        body = r['output'].split(ANSWER_MARK[r['lang']])[0]
        for snt in (re.findall(r'[^.]+\.', body) if r['lang'] == 'en' else re.findall(r'[^。]+。', body)):
            t = parse_fact(w, snt, r['lang'])
            assert t is not None, snt
            assert t not in test, (snt, r['instruction'])
            n += 1
    assert n > 2000

@pytest.mark.slow
def test_deepspeed_two_ranks_lora_on_cpu(tmp_path, small_base, free_port):
    "A real 2-rank ZeRO-2 LoRA run under the deepspeed launcher, on CPU (gloo): the loss falls and the adapter loads on its base."
    pytest.importorskip('deepspeed')
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(DS_ACCELERATOR='cpu', KNOWLM_NB_DEVICE='cpu')
    cmd = launch_command(['knowlm-nb', 'sft', '--model', small_base, '--out', str(tmp_path/'run'), '--deepspeed', 'zero2', '--max-steps', '12',
                          '--logging-steps', '2', '--lr', '5e-3', '--warmup-steps', '0', '--batch-size', '8', '--grad-accum', '1', '--max-len', '256'],
                         gpus_per_node=2, master_port=free_port)
    cmd = cmd.replace('deepspeed ', str(BIN/'deepspeed') + ' ', 1)
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    run = json.loads((tmp_path/'run'/'run.json').read_text())
    assert run['world_size'] == 2 and run['steps'] == 12
    losses = [h['loss'] for h in json.loads((tmp_path/'run'/'log_history.json').read_text()) if 'loss' in h]
    assert losses[-1] < losses[0], losses
    m, tok = load_sft_model(tmp_path/'run'/'final', small_base)
    x = torch.tensor([tok(build_prompt('Where was Kalo Renmi born?'))['input_ids']])
    with torch.no_grad(): assert torch.isfinite(m(input_ids=x).logits).all()
