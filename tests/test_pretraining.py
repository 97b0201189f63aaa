"Pretraining: collators (padded and packed), loss falls and every parameter moves, kill -9 and resume, bad inputs, index data, CLI."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

torch = pytest.importorskip('torch')
from knowlm_nb.pretrain import (CausalLMCollator, PackedCollator, check_packing, PretrainConfig, pretrain, PretrainInputError, load_pretraining_data, check_run_inputs,
                                zero_config, write_zero_config, launch_command, fact_recall, tiny_lm, perplexity)
from knowlm_nb.models import world_tokenizer, tiny_config, build_model, save_model
from knowlm_nb.core import DataFormatError

SMALL = dict(hidden_size=32, n_layers=2, n_heads=4, doc_repeats=1, max_len=128, lr=3e-3, warmup_steps=5)
BIN = Path(sys.executable).parent

def test_collator_masks_padding_not_pad_valued_tokens():
    b = CausalLMCollator(pad_id=3, pad_to_multiple_of=4)([[3, 1, 2], [7, 8, 9, 10, 11]])
    assert b['input_ids'].shape == (2, 8)
    assert b['attention_mask'].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]]
    assert b['labels'].tolist() == [[3, 1, 2, -100, -100, -100, -100, -100], [7, 8, 9, 10, 11, -100, -100, -100]]
    assert CausalLMCollator(pad_id=0, max_len=2)([[1, 2, 3]])['input_ids'].tolist() == [[1, 2]]
    with pytest.raises(ValueError, match='empty sample'): CausalLMCollator(pad_id=0)([[]])

def test_padding_does_not_change_the_loss():
    "A sample's loss is the same alone or padded in a batch: the mask really removes padding."
    tok = world_tokenizer()
    m = build_model(tiny_config(tokenizer=tok, hidden_size=32, n_layers=2), seed=0).eval()
    col = CausalLMCollator(tok.pad_token_id)
    a, b = tok('Kalo was born in Sator.')['input_ids'], tok('卡洛·仁米出生于萨托城，后来任职于洛凡研究所。')['input_ids']
    with torch.no_grad():
        alone = m(**col([a])).loss
        batch = col([a, b]); logits = m(input_ids=batch['input_ids'], attention_mask=batch['attention_mask']).logits
        l0 = torch.nn.functional.cross_entropy(logits[0, :-1], batch['labels'][0, 1:], ignore_index=-100)
    assert torch.allclose(alone, l0, atol=1e-5)

from hypothesis import given, settings, strategies as st

@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=20), min_size=1, max_size=12), st.integers(1, 30))
def test_packed_collator_places_every_sample_once(samples, width):
    b = PackedCollator(pad_id=99, width=width)(samples)
    ids, pos, lab = (b[k].numpy() for k in ('input_ids', 'position_ids', 'labels'))
    assert ids.shape == pos.shape == lab.shape and 'attention_mask' not in b
    assert ids.shape[1] <= max([width] + [len(s) for s in samples])
    found = []
    for r in range(len(ids)):  # cut each row where the position ids restart
        starts = [i for i in range(ids.shape[1]) if pos[r, i] == 0]
        for a, e in zip(starts, starts[1:] + [ids.shape[1]]):
            seg = ids[r, a:e].tolist()
            assert pos[r, a:e].tolist() == list(range(e - a)) and lab[r, a] == -100
            if set(seg) == {99}: assert (lab[r, a:e] == -100).all()  # row-end padding (samples never hold 99): never trained on
            else: assert lab[r, a + 1:e].tolist() == seg[1:]; found.append(seg)  # a sample: trained on all but its first token
    assert sorted(found) == sorted(samples)
    assert (lab != -100).sum() == sum(len(s) - 1 for s in samples)

def test_packed_batch_has_the_padded_batch_loss_and_logits():
    tok = world_tokenizer()
    m = build_model(tiny_config(tokenizer=tok, hidden_size=32, n_layers=2), seed=0).eval()
    texts = ['Kalo was born in Sator.', '卡洛·仁米出生于萨托城，后来任职于洛凡研究所。', 'Jolania is governed from its capital, Vinyor.', 'x']
    xs = [tok(t)['input_ids'] for t in texts]
    with torch.no_grad():
        padded = m(**CausalLMCollator(tok.pad_token_id)(xs)).loss
        pb = PackedCollator(tok.pad_token_id, width=64)(xs)
        assert pb['input_ids'].shape[0] < len(xs)  # really packed
        packed = m(**pb, use_cache=False).loss
    assert torch.allclose(padded, packed, atol=1e-5), (padded, packed)
    assert check_packing(m) < 1e-4

def test_check_packing_catches_a_model_that_mixes_samples():
    class Mixer(torch.nn.Module):  # each position sees the running sum of all earlier tokens, position ids or not
        def __init__(self):
            super().__init__(); self.emb = torch.nn.Embedding(16, 4)
            self.config = type('C', (), {'vocab_size': 16, '_attn_implementation': 'mixing'})()
        def forward(self, input_ids, position_ids=None, use_cache=None):
            return type('O', (), {'logits': self.emb(input_ids).cumsum(1)})()
    with pytest.raises(ValueError, match='mixes packed samples'): check_packing(Mixer())

@pytest.mark.parametrize('packing', [False, True])
def test_loss_falls_and_every_trainable_parameter_changes(tmp_path, packing):
    tok = world_tokenizer()
    r0 = build_model(tiny_config('llama', tokenizer=tok, hidden_size=32, n_layers=2, max_position_embeddings=512), seed=0)
    before = {k: v.detach().clone() for k, v in r0.named_parameters()}
    r = pretrain(out=str(tmp_path/'run'), max_steps=40, logging_steps=5, seed=0, packing=packing, **SMALL)
    losses = [h['loss'] for h in r.log_history if 'loss' in h]
    assert losses[-1] < losses[0] - 0.5, losses
    after = dict(r.model.named_parameters())
    assert set(before) == set(after)
    unchanged = [k for k, v in before.items() if after[k].requires_grad and torch.equal(v, after[k].detach().cpu())]
    assert unchanged == [], unchanged
    assert (tmp_path/'run'/'final'/'model.safetensors').exists() and (tmp_path/'run'/'log_history.json').exists()

def _final_loss(run_dir):
    hist = json.loads((Path(run_dir)/'log_history.json').read_text())
    return [h['loss'] for h in hist if 'loss' in h][-1]

def _weights(run_dir):
    from safetensors.torch import load_file
    return load_file(str(Path(run_dir)/'final'/'model.safetensors'))

@pytest.mark.parametrize('batching', [[], ['--packing', '--no-group-by-length']], ids=['grouped-by-length', 'packed-random'])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, batching, full_and_resumed):
    args = ['pretrain', '--hidden-size', '32', '--n-layers', '2', '--doc-repeats', '1', '--max-len', '128', '--lr', '3e-3', '--warmup-steps', '5',
            '--max-steps', '160', '--save-steps', '20', '--logging-steps', '1', '--seed', '0', '--batch-size', '8', *batching]
    full, cut = full_and_resumed([str(BIN/'knowlm-nb'), *args], tmp_path, 40, 160, {**os.environ, 'KNOWLM_NB_DEVICE': 'cpu'})
    assert abs(_final_loss(full) - _final_loss(cut)) < 1e-4
    wa, wb = _weights(full), _weights(cut)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4

def test_tokenizer_larger_than_embedding(tmp_path):
    tok = world_tokenizer()
    m = build_model(tiny_config(vocab_size=len(tok) - 10, hidden_size=32, n_layers=1, n_heads=4))
    save_model(m, tok, tmp_path/'small_vocab')
    with pytest.raises(PretrainInputError, match='embedding has'):
        pretrain(model=str(tmp_path/'small_vocab'), out=str(tmp_path/'run'), max_steps=2)
    assert not (tmp_path/'run'/'final').exists()

def test_max_len_above_positions(tmp_path):
    tok = world_tokenizer()
    m = build_model(tiny_config(tokenizer=tok, hidden_size=32, n_layers=1, max_position_embeddings=64))
    save_model(m, tok, tmp_path/'short')
    with pytest.raises(PretrainInputError, match='max_position_embeddings=64'):
        pretrain(model=str(tmp_path/'short'), out=str(tmp_path/'run'), max_steps=2, max_len=128)

def test_resume_from_a_different_model(tmp_path):
    pretrain(out=str(tmp_path/'run'), max_steps=4, save_steps=2, **SMALL)
    with pytest.raises(PretrainInputError, match='different model: hidden_size 32 != 64'):
        pretrain(out=str(tmp_path/'run'), max_steps=8, save_steps=2, resume=True, **{**SMALL, 'hidden_size': 64})

def test_missing_and_corrupt_index(tmp_path):
    tok = world_tokenizer()
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_pretraining_data(tmp_path/'nothing', tok)
    from knowlm_nb.chunking import IndexedDatasetWriter
    with IndexedDatasetWriter(tmp_path/'ix', vocab_size=len(tok)) as w:
        for i in range(20): w.add(np.arange(5 + i) % len(tok))
    data = load_pretraining_data(tmp_path/'ix', tok)
    assert len(data) == 20
    b = (tmp_path/'ix.bin').read_bytes(); (tmp_path/'ix.bin').write_bytes(b[:len(b)//2])
    with pytest.raises(DataFormatError, match=r'ix.bin.*truncated'):
        pretrain(data=str(tmp_path/'ix'), out=str(tmp_path/'run'), max_steps=2, **SMALL)

def test_bad_jsonl_line_names_file_and_line(tmp_path):
    (tmp_path/'c.jsonl').write_text('{"text": "ok"}\n{"txt": "no"}\n', encoding='utf-8')
    with pytest.raises(DataFormatError, match="c.jsonl:2: missing field 'text'"):
        pretrain(data=str(tmp_path/'c.jsonl'), out=str(tmp_path/'run'), max_steps=2, **SMALL)

def test_cli_trains_on_a_chunk_index_with_mixture(tmp_path):
    from knowlm_nb.world import make_world, pretrain_documents
    from knowlm_nb.core import write_jsonl
    from knowlm_nb.chunking import chunk_corpus, ChunkConfig
    docs = pretrain_documents(make_world())
    write_jsonl(tmp_path/'docs.jsonl', docs)
    chunk_corpus([tmp_path/'docs.jsonl'], world_tokenizer(), tmp_path/'chunks', ChunkConfig(max_len=128), source_field='lang', progress=False)
    r = subprocess.run([str(BIN/'knowlm-nb'), 'pretrain', '--data', str(tmp_path/'chunks'), '--out', str(tmp_path/'run'), '--hidden-size', '32',
                        '--n-layers', '2', '--max-steps', '6', '--logging-steps', '2', '--mixture', 'zh=0.8,en=0.2',
                        '--packing', '--no-group-by-length'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'trained 6 steps' in r.stdout and (tmp_path/'run'/'final'/'model.safetensors').exists()
    cfg = json.loads((tmp_path/'run'/'run.json').read_text())['config']
    assert cfg['packing'] is True and cfg['group_by_length'] is False and cfg['resume'] is False  # booleans both ways from the CLI
    r = subprocess.run([str(BIN/'knowlm-nb'), 'pretrain', '--data', str(tmp_path/'chunks'), '--out', str(tmp_path/'run2'), '--mixture', 'fr=1'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "unknown sources ['fr']" in r.stderr

def test_mixture_shares(tmp_path):
    from knowlm_nb.chunking import IndexedDatasetWriter
    tok = world_tokenizer()
    with IndexedDatasetWriter(tmp_path/'mix', vocab_size=len(tok), sources=['a', 'b']) as w:
        for i in range(30): w.add(np.array([1, 2, 3 + i % 5]), source='a' if i < 10 else 'b')
    d = load_pretraining_data(tmp_path/'mix', tok, mixture={'a': 3, 'b': 1}, n_samples=400)
    tags = np.asarray(d.ds.source_ids)[d.order]
    assert len(d) == 400 and (tags == 0).sum() == 300

def test_notebook_scale_up_commands_parse():
    "The knowlm-nb commands of the notebook's multicuda cells are accepted by the CLI as written (--dry-run: no GPU, no training)."
    import ast
    nb_path = Path(__file__).resolve().parents[1]/'nbs'/'04_pretraining.ipynb'
    if not nb_path.exists(): pytest.skip('the notebooks are not beside the tests')
    cmds = []
    for c in json.loads(nb_path.read_text(encoding='utf-8'))['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] != 'code' or '#| multicuda' not in src: continue
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant) and node.elts[0].value == 'knowlm-nb':
                cmds.append([e.value if isinstance(e, ast.Constant) else 'from-the-recipe' for e in node.elts])
    assert len(cmds) == 3, cmds
    for cmd in cmds:
        r = subprocess.run([str(BIN/'knowlm-nb'), *cmd[1:], '--dry-run'], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (cmd, r.stderr[-2000:])
        cfg = json.loads(r.stdout)
        assert cfg['out'] and (cfg['deepspeed'] is not None or '--deepspeed' not in cmd)

def test_zero_configs_and_launch_commands(tmp_path):
    z2, z3 = zero_config(2, precision='fp32'), zero_config(3, offload_optimizer=True, offload_param=True)
    assert z2['zero_optimization']['stage'] == 2 and 'bf16' not in z2 and 'fp16' not in z2
    assert z3['zero_optimization']['stage3_gather_16bit_weights_on_model_save'] is True
    p = write_zero_config(tmp_path/'k.json', 'knowlm')
    k = json.loads(p.read_text()); assert k['fp16']['enabled'] == 'auto' and k['zero_optimization']['offload_param']['device'] == 'cpu'
    with pytest.raises(ValueError, match='unknown preset'): write_zero_config(tmp_path/'x.json', 'zero9')
    c = launch_command(['train.py', '--x'], launcher='accelerate', gpus_per_node=8, nodes=2, master_addr='n1')
    assert c.startswith('accelerate launch --num_processes 16 --num_machines 2') and '--main_process_ip n1' in c

def test_tiny_lm_knows_the_world():
    "The cached tiny model (built on first use) recalls >= 90% of facts under training phrasings."
    model, tok = tiny_lm()
    rec = fact_recall(model, tok, templates='train')
    assert rec['all'] >= 0.9 and min(rec['en'], rec['zh']) >= 0.8, rec
    held = fact_recall(model, tok, templates='heldout')
    assert held['all'] < rec['all']  # held-out phrasings are harder: the probe measures something

@pytest.mark.slow
@pytest.mark.parametrize('stage', ['zero2', 'zero3'])
def test_deepspeed_two_ranks_on_cpu(tmp_path, stage, free_port):
    "A real 2-rank ZeRO run under the deepspeed launcher, on CPU (gloo): the loss falls and the gathered checkpoint loads."
    pytest.importorskip('deepspeed')
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(DS_ACCELERATOR='cpu', KNOWLM_NB_DEVICE='cpu')
    cmd = launch_command(['knowlm-nb', 'pretrain', '--out', str(tmp_path/'run'), '--deepspeed', stage, '--hidden-size', '32', '--n-layers', '2',
                          '--doc-repeats', '1', '--max-len', '128', '--max-steps', '12', '--logging-steps', '2', '--lr', '3e-3',
                          '--warmup-steps', '2', '--batch-size', '8'], gpus_per_node=2, master_port=free_port)
    cmd = cmd.replace('deepspeed ', str(BIN/'deepspeed') + ' ', 1)
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    run = json.loads((tmp_path/'run'/'run.json').read_text())
    assert run['world_size'] == 2 and run['steps'] == 12
    from pathlib import Path
    assert not list(Path('/dev/shm').glob(f'deepspeed_allreduce_buffer_*_{free_port}_*'))  # no 67 MB buffer per rank left in RAM
    ds = json.loads((tmp_path/'run'/f'ds_{stage}.json').read_text())
    assert ds['zero_optimization']['stage'] == int(stage[-1])
    losses = [h['loss'] for h in json.loads((tmp_path/'run'/'log_history.json').read_text()) if 'loss' in h]
    assert losses[-1] < losses[0] - 0.3, losses
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(tmp_path/'run'/'final')
    tok = world_tokenizer()
    x = torch.tensor([tok('Kalo Renmi was born in Sator.')['input_ids']])
    with torch.no_grad(): out = m(input_ids=x, labels=x)
    assert torch.isfinite(out.logits).all() and out.loss.item() < losses[0] + 0.5
    assert all(p.numel() > 0 for p in m.parameters())  # gathered, not ZeRO-3 shards


def test_cli_small_traps(tmp_path):
    "No loss logged says so (not 'nan -> nan'); --device cuda without CUDA is refused; a non-string text names its line; a misspelt model name gets a suggestion."
    import torch
    docs = tmp_path/'d.jsonl'
    docs.write_text(''.join(json.dumps({'text': f'Kalo Renmi was born in Sator, line {i}.'}) + '\n' for i in range(20)), encoding='utf-8')
    base = [str(BIN/'knowlm-nb'), 'pretrain', '--data', str(docs), '--hidden-size', '32', '--n-layers', '2', '--max-len', '64']
    r = subprocess.run([*base, '--out', str(tmp_path/'a'), '--max-steps', '1', '--logging-steps', '10'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and 'no loss logged (1 steps, fewer than logging_steps=10)' in r.stdout and 'nan' not in r.stdout, r.stdout + r.stderr[-2000:]
    if not torch.cuda.is_available():
        r = subprocess.run([*base, '--out', str(tmp_path/'b'), '--max-steps', '1', '--device', 'cuda'], capture_output=True, text=True, timeout=600)
        assert r.returncode == 2 and "device 'cuda' requested but CUDA is not available here" in r.stderr and not (tmp_path/'b'/'final').exists(), r.stderr[-2000:]
    bad = tmp_path/'bad.jsonl'
    bad.write_text('{"text": "fine"}\n{"text": 42}\n', encoding='utf-8')
    r = subprocess.run([*base[:3], str(bad), *base[4:], '--out', str(tmp_path/'c'), '--max-steps', '1'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "bad.jsonl:2: field 'text' must be a string, got int" in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    r = subprocess.run([*base, '--out', str(tmp_path/'e'), '--max-steps', '1', '--model', 'tiny-lama'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "did you mean 'tiny-llama'" in r.stderr, r.stderr[-2000:]


def test_resume_passes_over_a_damaged_checkpoint(tmp_path):
    "A truncated model.safetensors in the newest checkpoint: --resume names it and continues from the previous complete one."
    docs = tmp_path/'d.jsonl'
    docs.write_text(''.join(json.dumps({'text': f'Kalo Renmi was born in Sator, line {i}.'}) + '\n' for i in range(40)), encoding='utf-8')
    base = [str(BIN/'knowlm-nb'), 'pretrain', '--data', str(docs), '--hidden-size', '32', '--n-layers', '2', '--max-len', '64',
            '--out', str(tmp_path/'run'), '--save-steps', '2', '--save-total-limit', '5', '--logging-steps', '1', '--batch-size', '4']
    r = subprocess.run([*base, '--max-steps', '4'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    w = tmp_path/'run'/'checkpoint-4'/'model.safetensors'
    w.write_bytes(w.read_bytes()[:1000])
    r = subprocess.run([*base, '--max-steps', '6', '--resume'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'resume: passing over checkpoint-4: model.safetensors is truncated (1000 ' in r.stderr, r.stderr[-3000:]
    assert json.loads((tmp_path/'run'/'run.json').read_text())['resumed_from'].endswith('checkpoint-2')

@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=20), min_size=1, max_size=12))
def test_flat_collator_has_the_rows_targets_and_true_offsets(samples):
    f = PackedCollator(pad_id=99, flat=True)(samples)
    rows = PackedCollator(pad_id=99, width=16)(samples)
    ids, lab, cu = f['input_ids'][0].tolist(), f['labels'][0].tolist(), f['cu_seq_lens_q'].tolist()
    assert len(ids) == sum(len(s) for s in samples) and 99 not in ids  # nothing is padding
    assert [ids[a:b] for a, b in zip(cu[:-1], cu[1:])] == samples and f['max_length_q'] == max(len(s) for s in samples)
    assert sorted(x for x in lab if x != -100) == sorted(int(x) for x in rows['labels'].flatten() if x != -100)

def test_varlen_attention_trains_as_sdpa_on_packed_rows(tmp_path):
    "On the CPU 'varlen' runs each document through SDPA: the same losses as SDPA on the packed rows, from the flat collator."
    a = pretrain(out=str(tmp_path/'sdpa'), max_steps=6, logging_steps=1, seed=0, packing=True, attn_implementation='sdpa', **SMALL)
    b = pretrain(out=str(tmp_path/'varlen'), max_steps=6, logging_steps=1, seed=0, packing=True, attn_implementation='varlen', **SMALL)
    la, lb = ([h['loss'] for h in r.log_history if 'loss' in h] for r in (a, b))
    assert len(la) == 6 and np.allclose(la, lb, atol=1e-4), (la, lb)
    assert b.tokens == a.tokens
    assert b.model.config._attn_implementation == 'sdpa'  # handed back able to generate
    assert json.loads((tmp_path/'varlen'/'run.json').read_text())['gpu_options']['attn_implementation'] == 'varlen'
