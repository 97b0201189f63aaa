"Knowledge editing: ROME's closed form in every layout, the exact undo, bad input before any change, the command line."
import json, subprocess, sys
from pathlib import Path
import pytest
torch = pytest.importorskip('torch')
from transformers import GPT2Config, Qwen2Config, AutoModelForCausalLM
from knowlm_nb.editing import (rome_update, apply_update, mlp_output_module, weight_out_in, module_io, EditError, edit, EditHandle,
                               world_edit_requests, token_accuracy, check_request)
from knowlm_nb.models import load_model, load_tokenizer
from knowlm_nb.pretrain import tiny_lm_path

def _spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, 3 * d, generator=g)
    return a @ a.T / (3 * d)

@pytest.mark.parametrize('arch', ['gpt2', 'qwen2'])
def test_rome_update_writes_the_value_and_is_the_closed_form(arch):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2) if arch == 'gpt2' else \
          Qwen2Config(vocab_size=50, hidden_size=16, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    m = AutoModelForCausalLM.from_config(cfg).eval()
    _, mod = mlp_output_module(m, 1)
    W = weight_out_in(mod).detach().clone()
    d_in = W.shape[1]
    k_star, k, v, C = torch.randn(d_in), torch.randn(d_in), torch.randn(W.shape[0]), _spd(d_in, 1)
    dW = rome_update(m, 1, k_star, v, cov=C, prompt_key=k)
    b = mod.bias.detach() if getattr(mod, 'bias', None) is not None else 0
    Ck = torch.linalg.inv(C.double()).float() @ k_star
    assert torch.allclose(dW, torch.outer(v - (W @ k + b), Ck) / (k @ Ck), atol=1e-4)
    apply_update(m, 1, dW)
    assert torch.allclose(weight_out_in(mod) @ k + b, v, atol=1e-4)  # W' k = v*
    assert torch.linalg.matrix_rank(dW) == 1

@pytest.fixture(scope='module')
def tiny():
    p = str(tiny_lm_path())
    return load_model(p, device='cpu').eval(), load_tokenizer(p)

def _weights(m): return {n: p.detach().clone() for n, p in m.named_parameters()}

def test_sequential_edits_undo_bit_exactly_and_ike_changes_nothing(tiny):
    m, tok = tiny
    w0 = _weights(m)
    reqs = world_edit_requests(n=3)
    r = edit(m, tok, reqs, method='rome', mode='sequential', generate=False, progress=False, steps=10)
    assert r.handle.changed() and r.mode == 'sequential' and all(row['mode'] == 'sequential' for row in r.rows)
    r.handle.restore()
    assert all(torch.equal(p, w0[n]) for n, p in m.named_parameters())
    i = edit(m, tok, reqs, method='ike', generate=False, progress=False)
    assert i.handle is None and all(torch.equal(p, w0[n]) for n, p in m.named_parameters())

def test_bad_input_is_refused_before_any_change(tiny):
    m, tok = tiny
    w0 = _weights(m)
    req = world_edit_requests(n=1)[0]
    for bad, msg in [({**req, 'subject': 'Nobody'}, 'does not occur in prompt'), ({**req, 'target_new': ''}, "'target_new' must be a non-empty string")]:
        with pytest.raises(EditError, match=msg): edit(m, tok, [bad], method='rome', progress=False)
    with pytest.raises(EditError, match='out of range: the model has 2 layers'): edit(m, tok, [req], method='rome', layer=5, progress=False)
    with pytest.raises(EditError, match='unknown rome hyper-parameter'): edit(m, tok, [req], method='rome', lr_scale=2, progress=False)
    with pytest.raises(EditError, match='singular'): rome_update(m, 0, torch.ones(512), torch.zeros(128), cov=torch.zeros(512, 512))
    class NoMLP(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.model = torch.nn.Module(); self.model.layers = torch.nn.ModuleList([torch.nn.Linear(2, 2)])
    with pytest.raises(EditError, match='cannot locate the MLP output projection'): mlp_output_module(NoMLP(), 0)
    with pytest.raises(EditError, match='singular'):  # a covariance from one short text cannot be inverted: refused, model untouched
        edit(m, tok, [req], method='rome', covariance_texts=['Lanren'], progress=False)
    assert all(torch.equal(p, w0[n]) for n, p in m.named_parameters())

def test_tiny_model_edits(tiny):
    "Over 20 world edits, each from the original weights: ROME (tiny preset: spill-aware value) and FT-L rewrite >= 0.9 with locality >= 0.9."
    m, tok = tiny
    reqs = world_edit_requests(n=20)
    before = sum(token_accuracy(m, tok, r['prompt'], r['target_new']) for r in reqs) / len(reqs)
    ft = edit(m, tok, reqs, method='ft', generate=False, progress=False).summary()
    rome = edit(m, tok, reqs, method='rome', mode='independent', generate=False, progress=False).summary()
    assert before < 0.5, before
    assert ft['rewrite'] >= 0.9 and ft['locality'] >= 0.9, ft
    assert rome['variant'] == 'spill-aware value, C = I' and rome['edits'] == 20, rome
    assert rome['rewrite'] >= 0.9 and rome['locality'] >= 0.9, rome

def test_spill_aware_value_is_what_the_edited_model_computes(tiny):
    "With spill=(u, k), the NLL the value optimisation reaches on the bare prompt is the edited model's NLL; the rank-one maths is unchanged."
    from knowlm_nb.editing import rome_value, rome_direction, subject_key, subject_last_index, spill_shares, answer_nll
    m, tok = tiny
    _, mod = mlp_output_module(m, 0)
    for req in world_edit_requests(n=4)[2:]:
        k_star = subject_key(m, tok, req, 0, ['{}'])
        pos = subject_last_index(tok, req['prompt'], req['subject'])
        k, _ = module_io(m, mod, [(tok(req['prompt'])['input_ids'], pos)])
        u = rome_direction(k_star)
        v, _, nll = rome_value(m, tok, req, 0, ['{}'], steps=30, lr=1.0, clamp=50.0, kl_factor=0.0, weight_decay=0.0, spill=(u, k[0]))
        h = EditHandle(m, ['model.layers.0.mlp.down_proj.weight'])
        try:
            apply_update(m, 0, rome_update(m, 0, k_star, v, prompt_key=k[0]))
            after = answer_nll(m, tok, req['prompt'], req['target_new'])
        finally: h.restore()
        assert abs(after - nll) < 2e-3, (req['case_id'], nll, after)
    keys = torch.randn(5, 512)
    assert torch.allclose(spill_shares(keys, u, keys[2]), (keys @ u) / (keys[2] @ u)) and abs(float(spill_shares(keys, u, keys[2])[2]) - 1) < 1e-6

def test_value_iterations_count_as_easyedit_counts_them(tiny):
    "steps=N is N loss evaluations and N-1 Adam steps (EasyEdit's compute_v): one iteration leaves v* at the original output."
    from knowlm_nb.editing import rome_value
    m, tok = tiny
    req = world_edit_requests(n=1)[0]
    v1, init, _ = rome_value(m, tok, req, 0, ['{}'], steps=1, lr=1.0)
    v2, _, _ = rome_value(m, tok, req, 0, ['{}'], steps=2, lr=1.0)
    assert torch.equal(v1, init) and not torch.equal(v2, init)
    with pytest.raises(EditError, match='steps must be at least 1'): rome_value(m, tok, req, 0, ['{}'], steps=0)

def test_covariance_corpus_inputs(tiny, tmp_path):
    "C from texts, a .jsonl file or a chunking index; an index of another vocabulary and a missing corpus are refused by name."
    from knowlm_nb.editing import covariance_corpus, key_covariance
    from knowlm_nb.chunking import chunk_corpus, ChunkConfig
    m, tok = tiny
    f = tmp_path/'c.jsonl'
    f.write_text(''.join(json.dumps({'text': t}) + '\n' for t in ['Lanren Works is headquartered in Duvin.', 'Corel is a city in Jolania.']))
    chunk_corpus([f], tok, tmp_path/'idx', ChunkConfig(max_len=64), progress=False)
    ids = covariance_corpus(tmp_path/'idx', tok)
    assert all(isinstance(x, list) for x in ids) and covariance_corpus(str(tmp_path/'idx.idx'), tok) == ids
    C, n = key_covariance(m, tok, 0, ids, progress=False)
    assert n == sum(len(x) for x in ids) and C.shape == (512, 512)
    assert covariance_corpus(f) == ['Lanren Works is headquartered in Duvin.', 'Corel is a city in Jolania.']
    with pytest.raises(EditError, match='chunking index'): covariance_corpus(tmp_path/'nothing', tok)
    with pytest.raises(EditError, match='gone.txt: no such file'): covariance_corpus(tmp_path/'gone.txt')
    empty = tmp_path/'e.txt'
    empty.write_text('')
    with pytest.raises(Exception, match='e.txt'): covariance_corpus(empty)
    class Other:
        def __len__(self): return 99
    with pytest.raises(EditError, match='99'): covariance_corpus(tmp_path/'idx', Other())

def run(*args):
    return subprocess.run([str(Path(sys.executable).parent/'knowlm-nb'), 'edit', *args], capture_output=True, text=True, timeout=600)

def test_cli(tmp_path):
    out = tmp_path/'r.json'
    r = run('--method', 'ike', '--n', '2', '--no-generate', '--out', str(out))
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got['summary']['edits'] == 2 and got['summary']['method'] == 'ike' and len(got['rows']) == 2
    bad = tmp_path/'bad.jsonl'
    bad.write_text(json.dumps({'prompt': 'A is in', 'subject': 'A', 'target_new': 'B'}) + '\n' + json.dumps({'prompt': 'A is in', 'subject': 'C', 'target_new': 'B'}) + '\n')
    r = run('--data', str(bad), '--out', str(out))
    assert r.returncode == 2 and 'bad.jsonl line 2' in r.stderr and "subject 'C' does not occur" in r.stderr and 'Traceback' not in r.stderr
    r = run('--layer', '7', '--out', str(out))
    assert r.returncode == 2 and 'out of range' in r.stderr and 'Traceback' not in r.stderr
    r = run('--covariance-from', str(tmp_path/'missing'), '--n', '1', '--out', str(out))
    assert r.returncode == 2 and 'missing: expected texts' in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_memit_batch_kn_and_modes(tiny):
    m, tok = tiny
    w0 = _weights(m)
    reqs = world_edit_requests(n=4)
    b = edit(m, tok, reqs, method='memit', mode='batch', generate=False, progress=False, steps=10)
    assert b.mode == 'batch' and len(b.rows) == 4 and b.handle.changed()
    b.handle.restore()
    k = edit(m, tok, reqs[:2], method='kn', generate=False, progress=False, steps=5)
    assert all(row['method'] == 'kn' and row['mode'] == 'independent' for row in k.rows)
    assert all(torch.equal(p, w0[n]) for n, p in m.named_parameters())
    with pytest.raises(EditError, match="is MEMIT's"): edit(m, tok, reqs, method='ft', mode='batch', progress=False)
    with pytest.raises(EditError, match='ascending'): edit(m, tok, reqs, method='memit', layers=[1, 0], progress=False)
    assert all(torch.equal(p, w0[n]) for n, p in m.named_parameters())

def test_covariance_cache_follows_the_weights(tiny, tmp_path, monkeypatch):
    "The cached covariance is keyed by a fingerprint of the weights (cheap on large models): a changed weight recomputes it."
    from knowlm_nb.editing import cached_key_covariance
    monkeypatch.setenv('KNOWLM_NB_HOME', str(tmp_path))
    m, tok = tiny
    texts = ['Lanren Works is headquartered in Duvin.', 'Corel is a city in Jolania.']
    c1 = cached_key_covariance(m, tok, 0, texts)
    assert torch.equal(c1, cached_key_covariance(m, tok, 0, texts))
    h = EditHandle(m, ['model.layers.0.mlp.up_proj.weight'])
    with torch.no_grad(): m.model.layers[0].mlp.up_proj.weight[0, 0] += 1.0
    try: assert not torch.equal(c1, cached_key_covariance(m, tok, 0, texts))
    finally: h.restore()

def test_rome_in_fp16_with_a_7b_preset_on_a_qwen2_layout():
    "The Colab path on CPU: a random fp16 Qwen2-layout model, the llama-7b preset, both ROME values; the handle restores the fp16 weights exactly."
    from knowlm_nb.models import world_tokenizer
    wt = world_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(wt), hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1)
    m = AutoModelForCausalLM.from_config(cfg).half().eval()
    w0 = _weights(m)
    reqs = world_edit_requests(n=2)
    for spill in (False, True):
        r = edit(m, wt, reqs, method='rome', preset='llama-7b', layer=1, mode='sequential', spill_aware=spill, steps=3,
                 n_templates=2, template_length=3, generate=False, progress=False)
        assert r.handle.changed() == ['model.layers.1.mlp.down_proj.weight'] and r.summary()['variant'].startswith('spill-aware' if spill else 'EasyEdit')
        assert m.model.layers[1].mlp.down_proj.weight.dtype == torch.float16
        r.handle.restore()
        assert all(torch.equal(p, w0[n]) for n, p in m.named_parameters())
