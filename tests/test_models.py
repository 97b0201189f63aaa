"Tokenizer round trip, HF parity of what we save, loading errors, quantised loading, generation."
import os
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

torch = pytest.importorskip('torch')
from knowlm_nb.models import (train_tokenizer, world_tokenizer, tiny_config, build_model, save_model, load_model, load_tokenizer,
                              generate, ModelUnavailableError, resolve_model, MODEL_REGISTRY, n_params)
from knowlm_nb.world import make_world, pretrain_documents

@pytest.fixture(scope='module')
def tok(): return world_tokenizer()

MIXED = ["卡洛·仁米出生于萨托城。Kalo Renmi was born in Sator.", "𠀀𠀁𪚥𫠝 鿿 〇 㐀", "emoji 🙂👍🏽 ZWJ 👩‍👩‍👧 and e\u0301 combining",
         "  leading, trailing and\ttabs\n\nnewlines  ", "a . b , c ! ?", "全角：ＡＢＣ１２３，「引号」『书名』", "\x00\x01 control \u200b zero-width",
         "Ελληνικά русский العربية हिन्दी 한국어 日本語"]

@pytest.mark.parametrize('text', MIXED)
def test_round_trip_fixed(tok, text):
    ids = tok(text, add_special_tokens=False)['input_ids']
    assert tok.decode(ids) == text

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=('Cs',)), max_size=60))
def test_round_trip_any_text(tok, text):
    assert tok.decode(tok(text, add_special_tokens=False)['input_ids']) == text

def test_tokenizer_learned_chinese_and_english(tok):
    # frequent world words become single tokens: the vocabulary really was trained on the world
    assert len(tok('出生于', add_special_tokens=False)['input_ids']) == 3  # one token per common Han character
    assert len(tok(' born', add_special_tokens=False)['input_ids']) == 1

def test_recall_prompts_tokenize_as_prefixes(tok):
    "A prompt cut before the object tokenizes exactly as the start of the full sentence (else recall probes mislead)."
    from knowlm_nb.world import make_world, fact_records
    for f in fact_records(make_world())[:300]:
        for lang in ('en', 'zh'):
            p = f[f'prompts_{lang}'][0]
            full = p + (' ' if lang == 'en' else '') + f[f'object_{lang}']
            a, b = tok(p, add_special_tokens=False)['input_ids'], tok(full, add_special_tokens=False)['input_ids']
            assert b[:len(a)] == a, (p, full)

@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
def test_saved_model_reloads_through_auto_classes(tmp_path, tok, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    m = build_model(tiny_config(arch, tokenizer=tok, hidden_size=64, n_layers=2, n_heads=4, n_kv_heads=2), seed=1).eval()
    save_model(m, tok, tmp_path/'m')
    assert (tmp_path/'m'/'model.safetensors').exists() and not list((tmp_path/'m').glob('*.bin'))
    m2 = AutoModelForCausalLM.from_pretrained(tmp_path/'m').eval(); t2 = AutoTokenizer.from_pretrained(tmp_path/'m')
    text = MIXED[0] + MIXED[1]
    ids = tok(text, add_special_tokens=False)['input_ids']
    assert t2(text, add_special_tokens=False)['input_ids'] == ids
    assert (t2.bos_token_id, t2.eos_token_id, t2.pad_token_id) == (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    with torch.no_grad():
        a, b = m(torch.tensor([ids])).logits, m2(torch.tensor([ids])).logits
    assert torch.equal(a, b)
    assert type(m2).__name__ == ('LlamaForCausalLM' if arch == 'llama' else 'Qwen2ForCausalLM')

def test_offline_hub_id_gives_one_clear_sentence(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(ModelUnavailableError) as e: load_model('zjunlp/OneKE')
    msg = str(e.value)
    assert "'zjunlp/OneKE'" in msg and 'offline' in msg and 'local' in msg and e.value.__cause__ is None
    with pytest.raises(ModelUnavailableError, match="tokenizer 'oneke'"): load_tokenizer('oneke')

def test_missing_local_path():
    with pytest.raises(ModelUnavailableError, match='does not exist'): load_model('./definitely/not/here')

def test_registry():
    assert resolve_model('Xunzi-Yayun-R1') == MODEL_REGISTRY['xunzi-yayun-r1'].hub_id
    assert all('{instruction}' in c.template for c in MODEL_REGISTRY.values())

def test_bad_sizes():
    with pytest.raises(ValueError, match='vocab_size'): train_tokenizer(['abc'], vocab_size=100)
    with pytest.raises(ValueError, match='divisible'): tiny_config(hidden_size=130, n_heads=4)
    with pytest.raises(ValueError, match='quantization'): load_model('x', quantization='3bit')

def test_bad_input_exits_2():
    "Bad sizes and an unreachable hub id are bad input under the one exit-code rule (`core.exit_code`)."
    from knowlm_nb.core import ConfigError, exit_code
    with pytest.raises(ConfigError) as e: tiny_config(hidden_size=130, n_heads=4)
    assert exit_code(e.value) == 2
    assert ModelUnavailableError.exit_code == 2 and exit_code(ModelUnavailableError('x')) == 2 and issubclass(ModelUnavailableError, OSError)

def test_cli_models_exit_codes(tmp_path, capsys):
    from knowlm_nb.models import cli_models
    assert cli_models(['--help']) == 0 and 'usage: knowlm-nb models' in capsys.readouterr().out
    assert cli_models(['frobnicate']) == 2 and 'invalid choice' in capsys.readouterr().err
    assert cli_models(['init']) == 2 and 'required: --out' in capsys.readouterr().err
    rc = cli_models(['init', '--out', str(tmp_path/'m'), '--hidden-size', '30', '--n-heads', '4'])
    assert rc == 2 and capsys.readouterr().err == 'knowlm-nb models: error: hidden_size (30) must be divisible by n_heads (4)\n'
    assert not (tmp_path/'m').exists()

def test_save_model_replaces_atomically(tmp_path, tok):
    m = build_model(tiny_config('llama', tokenizer=tok, hidden_size=32, n_layers=1, n_heads=2), seed=0)
    first = sorted(os.listdir(save_model(m, tok, tmp_path/'m')))
    with pytest.raises(AttributeError): save_model(None, tok, tmp_path/'m')  # fails half-way ...
    assert sorted(os.listdir(tmp_path/'m')) == first and os.listdir(tmp_path) == ['m']  # ... and leaves the saved model as it was
    save_model(m, None, tmp_path/'m')  # a successful save replaces the directory: no tokenizer now
    assert 'tokenizer.json' not in os.listdir(tmp_path/'m') and os.listdir(tmp_path) == ['m']

def test_4bit_load_and_generate_on_cpu(tmp_path, tok):
    pytest.importorskip('bitsandbytes')
    m = build_model(tiny_config('llama', tokenizer=tok, hidden_size=64, n_layers=2), seed=0)
    save_model(m, tok, tmp_path/'m')
    q = load_model(tmp_path/'m', quantization='4bit', device='cpu')
    assert 'Linear4bit' in type(q.model.layers[0].self_attn.q_proj).__name__
    out = generate(q, tok, ['Kalo Renmi was born in', '卡洛'], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)

def test_generate_batch_equals_single(tmp_path, tok):
    m = build_model(tiny_config('qwen2', tokenizer=tok, hidden_size=64, n_layers=2), seed=0).eval()
    prompts = ['Kalo Renmi was born in', '卡洛·仁米的出生地是']
    batch = generate(m, tok, prompts, max_new_tokens=6)
    assert batch == [generate(m, tok, p, max_new_tokens=6)[0] for p in prompts]
    if batch[0]: assert generate(m, tok, prompts[0], max_new_tokens=6, stop=[batch[0][:1]])[0] == ''

# ---- an unreachable hub without HF_HUB_OFFLINE: fail (or load from the cache) at once, never minutes of retries ----------

import contextlib, json, socket, subprocess, sys

@contextlib.contextmanager
def unreachable_hub_env(tmp_path):
    "The environment of a user with no network and no offline flag: the hub is a local port that refuses connections, the HF cache empty."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))  # bound, never listening: a connection is refused at once, and no other process can take the port
        env = {k: v for k, v in os.environ.items()
               if k.upper() not in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HOME', 'HF_TOKEN')
               and not k.lower().endswith('_proxy')}
        env.update(HF_ENDPOINT=f'http://127.0.0.1:{s.getsockname()[1]}', HF_HOME=str(tmp_path/'hf'), HF_HUB_CACHE=str(tmp_path/'hub'),
                   NO_PROXY='*', no_proxy='*', HF_HUB_DISABLE_TELEMETRY='1')
        yield env

LOAD_SCRIPT = r'''
import json, sys, time
from knowlm_nb.models import load_model, load_tokenizer
res = []
for what, name in zip(sys.argv[1::2], sys.argv[2::2]):
    t0 = time.perf_counter()
    try: r = {'model': load_model, 'tokenizer': load_tokenizer}[what](name); err = None
    except Exception as e: r, err = None, f'{type(e).__name__}: {e}'
    res.append({'what': what, 'name': name, 'seconds': round(time.perf_counter() - t0, 2), 'error': err, 'type': type(r).__name__})
print('RESULT', json.dumps(res))
'''

def run_loads(env, *what_names):
    "Load each (what, name) in a fresh interpreter with `env`; return (results, everything it printed)."
    p = subprocess.run([sys.executable, '-c', LOAD_SCRIPT, *[x for wn in what_names for x in wn]], env=env, capture_output=True, text=True, timeout=300)
    line = next((l for l in p.stdout.splitlines() if l.startswith('RESULT ')), None)
    assert p.returncode == 0 and line, p.stderr[-3000:]
    return json.loads(line[7:]), p.stdout + p.stderr

def test_unreachable_hub_fails_fast_with_the_friendly_error(tmp_path):
    with unreachable_hub_env(tmp_path) as env: res, printed = run_loads(env, ('model', 'oneke'), ('tokenizer', 'zjunlp/OneKE'))
    for r in res:
        assert r['error'] and r['error'].startswith('ModelUnavailableError: Cannot load') and 'hub is unreachable' in r['error'], r
        assert len(r['error'].splitlines()) == 1 and r['seconds'] < 60, r  # generous on a loaded machine: the retries themselves are caught by 'Retry' below
    assert 'Retry' not in printed, printed[-2000:]

def test_cached_hub_model_loads_with_the_hub_unreachable(tmp_path, tok):
    "A model already in the HF cache loads at once and makes no request: the hub being unreachable costs nothing."
    snap = tmp_path/'hub'/'models--someone--tiny'/'snapshots'/('0'*40)
    save_model(build_model(tiny_config('llama', tokenizer=tok, hidden_size=32, n_layers=1, n_heads=2), seed=0), tok, snap)
    (snap.parents[1]/'refs').mkdir()
    (snap.parents[1]/'refs'/'main').write_text('0'*40)
    with unreachable_hub_env(tmp_path) as env: res, printed = run_loads(env, ('model', 'someone/tiny'), ('tokenizer', 'someone/tiny'))
    assert [(r['error'], r['type']) for r in res][0] == (None, 'LlamaForCausalLM') and res[1]['error'] is None, res
    assert all(r['seconds'] < 60 for r in res) and 'Retry' not in printed, (res, printed[-2000:])  # no retry is the check; the bound is loose

# ---- the notebook's colab cell: nothing outside Colab, the 4-bit load inside it ----------

def colab_cell():
    from pathlib import Path
    nb = json.loads((Path(__file__).resolve().parents[1]/'nbs'/'02_models.ipynb').read_text(encoding='utf-8'))
    (src,) = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).startswith('#| colab')]
    return src

def test_colab_cell_does_nothing_outside_colab(capsys):
    calls = []
    def record(*a, **k): calls.append((a, k))
    exec(colab_cell(), {'in_colab': lambda: False, 'load_model': record, 'load_tokenizer': record})
    out = capsys.readouterr().out
    assert calls == [] and len(out.splitlines()) == 1 and 'Colab' in out, (calls, out)
    exec(colab_cell(), {'in_colab': lambda: True, 'load_model': record, 'load_tokenizer': record})
    assert calls == [(('knowrl-7b',), {'quantization': '4bit'}), (('knowrl-7b',), {})]

# ---- the demo's running example comes from the default world ----------

def test_tokenizer_demo_names_a_person_of_the_default_world(tok):
    from knowlm_nb.models import tokenizer_demo
    w = make_world()
    people = [w.name(e, lang) for e in w.entities if e.startswith('person/') for lang in ('en', 'zh')]
    text = tokenizer_demo(tok).children[0].value
    assert [p for p in people if p in text], text
    assert 'Kalo Renmi' not in text  # the old hard-coded example, not a person of the default world
