"""Every widget demo, built under the Agg and the inline matplotlib backends and driven the way a learner would: an empty box,
text the tokenizer has never seen (snowmen, a math letter, rare Han characters), every choice changed. Each time the demo must
show a message in the widget: never a traceback (outside a kernel an error inside a handler raises here), never U+FFFD.
The demos that need trained tiny models use the cached ones (built once under KNOWLM_NB_HOME, as the notebooks do)."""
import html, re
from functools import cached_property
import pytest

W = pytest.importorskip('ipywidgets')
pytest.importorskip('torch')
import matplotlib

EMPTY = ['', '  \n ']
UNSEEN = ['\u2603\u2603 ☃ 𝔘', '龘靐齉爩，䶵𪚥。', 'Where was ☃ 𝔘 born? 龘']  # symbols, rare Han, both in an English sentence
UNSEEN_CHARS = ['☃', '𝔘', '龘']
INLINE = 'module://matplotlib_inline.backend_inline'
FFFD_SHOWN = set()  # demos allowed to show U+FFFD: none (a byte piece is shown as the character it belongs to)

class Models:
    "The cached tiny models, each loaded the first time a demo asks for it."
    @cached_property
    def lm(self):
        from knowlm_nb.pretrain import tiny_lm
        return tiny_lm()
    @cached_property
    def sft(self):
        from knowlm_nb.sft import tiny_sft
        return tiny_sft('knowledge')
    @cached_property
    def dpo(self):
        from knowlm_nb.dpo import tiny_dpo
        return tiny_dpo()
    @cached_property
    def grpo(self):
        from knowlm_nb.grpo import tiny_grpo
        return tiny_grpo()
    @cached_property
    def ie(self):
        from knowlm_nb.ie import ie_answerer, tiny_ie_path
        return ie_answerer(str(tiny_ie_path()), max_new_tokens=48)

@pytest.fixture(scope='module')
def models(): return Models()

def _world(m):
    from knowlm_nb.world import world_demo
    return world_demo()
def _tokenizer(m):
    from knowlm_nb.models import tokenizer_demo
    return tokenizer_demo(m.lm[1])
def _chunk(m):
    from knowlm_nb.chunking import chunk_demo
    return chunk_demo(m.lm[1])
def _pretrain(m):
    from knowlm_nb.pretrain import pretrain_demo
    return pretrain_demo(*m.lm)
def _sft(m):
    from knowlm_nb.sft import sft_demo
    return sft_demo(*m.sft)
def _dpo(m):
    from knowlm_nb.dpo import dpo_demo, knowledge_pairs
    return dpo_demo(*m.dpo, knowledge_pairs(splits=('test',), n_facts=4))
def _ie(m):
    from knowlm_nb.ie import ie_demo, TINY_IE_INSTRUCTIONS
    return ie_demo(m.ie, TINY_IE_INSTRUCTIONS)
def _ie_by_hand(m):
    from knowlm_nb.ie import ie_demo
    return ie_demo()
def _rewards(m):
    from knowlm_nb.rewards import rewards_demo
    from knowlm_nb.world import make_world, knowrl_items
    return rewards_demo(items=[i for i in knowrl_items(make_world()) if i['split'] == 'test'][:3])
def _grpo(m):
    from knowlm_nb.grpo import grpo_demo
    return grpo_demo(*m.grpo)
def _edit(m):
    from knowlm_nb.editing import edit_demo, world_edit_requests
    return edit_demo(*m.lm, world_edit_requests(n=2))
def _rhyme(m):
    from knowlm_nb.rhyme import rhyme_demo
    return rhyme_demo()

DEMOS = {'world': _world, 'tokenizer': _tokenizer, 'chunk': _chunk, 'pretrain': _pretrain, 'sft': _sft, 'dpo': _dpo, 'ie': _ie,
         'ie_by_hand': _ie_by_hand, 'rewards': _rewards, 'grpo': _grpo, 'edit': _edit, 'rhyme': _rhyme}

def test_every_demo_is_covered():
    "A new `..._demo` in the package gets a row here."
    import importlib, pkgutil, knowlm_nb
    found = {n[:-5] for mod in pkgutil.iter_modules(knowlm_nb.__path__) if not mod.name.startswith('_')
             for n in dir(importlib.import_module(f'knowlm_nb.{mod.name}')) if n.endswith('_demo') and not n.startswith('_')}
    assert found <= set(DEMOS), found - set(DEMOS)

# ---- reading a demo ----------

def walk(w):
    yield w
    for c in getattr(w, 'children', ()): yield from walk(c)

def boxes(demo): return [w for w in walk(demo) if isinstance(w, (W.Text, W.Textarea)) and not w.disabled]
def buttons(demo): return [w for w in walk(demo) if isinstance(w, W.Button) and not w.disabled]
def choices(demo): return [w for w in walk(demo) if isinstance(w, (W.Dropdown, W.ToggleButtons, W.IntSlider, W.FloatSlider, W.Checkbox)) and not w.disabled]
def displays(demo): return [w for w in walk(demo) if isinstance(w, (W.HTML, W.Output))]

def clear(demo):
    for w in displays(demo):
        if isinstance(w, W.Output): w.outputs = ()
        else: w.value = ''

def shown(demo, printed:str='')->str:
    "What the demo shows, as plain text: its HTML widgets, its Output widgets, and what its handlers printed (outside a kernel an Output lets print through)."
    parts = [printed]
    for w in displays(demo):
        if isinstance(w, W.Output): parts += [o.get('text', '') + ' '.join(map(str, o.get('data', {}).values())) for o in w.outputs]
        else: parts.append(w.value)
    text = html.unescape(re.sub(r'<[^>]+>', ' ', '\n'.join(parts)))
    return re.sub(r'\x1b\[[0-9;]*[A-Za-z]|\r', '', text)  # clear_output's terminal codes

def after(demo, action, capsys, what:str, given:str='', fffd_ok:bool=False)->str:
    "Clear the demo's displays, run `action`, check that a message (no traceback, no U+FFFD) is shown; return it."
    clear(demo)
    capsys.readouterr()
    try: action()
    except Exception as e: pytest.fail(f"{what}: {type(e).__name__}: {e}")
    text = shown(demo, capsys.readouterr().out)
    assert text.strip(), f"{what}: nothing shown"
    assert 'Traceback' not in text, f"{what}: {text[-2000:]}"
    assert fffd_ok or '\ufffd' not in text or '\ufffd' in given, f"{what}: U+FFFD shown: {text[-2000:]}"
    return text

def label(w): return w.description or w.placeholder or type(w).__name__

def put(box, value):
    "Set `box` to `value` as a change its observers see."
    if box.value == value: box.value = value + '.'
    box.value = value

def drive(demo, capsys, name):
    "Every box with empty and unseen text, each followed by every button (or by the box's own observer); then every choice changed."
    for box in boxes(demo):
        start = box.value
        for value in EMPTY + UNSEEN:
            what = f"{name}: {label(box)}={value!r}"
            bs = buttons(demo)
            if not bs: after(demo, lambda: put(box, value), capsys, what, value, name in FFFD_SHOWN)
            for b in bs:
                put(box, value)
                after(demo, b.click, capsys, f"{what}, click {b.description!r}", value, name in FFFD_SHOWN)
        box.value = start  # the next box is driven with this one as the demo started
    for c in choices(demo):
        new = (c.options[-1][1] if isinstance(c.options[-1], tuple) else c.options[-1]) if hasattr(c, 'options') and c.options else \
              (not c.value if isinstance(c, W.Checkbox) else c.max)
        bs = buttons(demo)[:1]
        act = (lambda: (setattr(c, 'value', new), bs[0].click())) if bs else (lambda: setattr(c, 'value', new))
        after(demo, act, capsys, f"{name}: {label(c)}={new!r}", fffd_ok=name in FFFD_SHOWN)

@pytest.fixture
def agg():
    import matplotlib.pyplot as plt
    old = matplotlib.get_backend()
    plt.switch_backend('Agg')
    yield
    plt.switch_backend(old)

@pytest.mark.parametrize('name', list(DEMOS))
def test_demo_shows_a_message_for_empty_and_unseen_input(name, models, capsys, agg):
    demo = DEMOS[name](models)
    text = shown(demo, capsys.readouterr().out)
    assert text.strip() and 'Traceback' not in text and '\ufffd' not in text, f"{name} as built: {text[-2000:]}"
    drive(demo, capsys, name)

@pytest.mark.parametrize('name', list(DEMOS))
def test_demo_builds_under_the_inline_backend(name, models, capsys):
    pytest.importorskip('matplotlib_inline')
    import matplotlib.pyplot as plt
    old = matplotlib.get_backend()
    plt.switch_backend(INLINE)
    try:
        demo = DEMOS[name](models)
        text = shown(demo, capsys.readouterr().out)
        assert text.strip() and 'Traceback' not in text, f"{name} as built: {text[-2000:]}"
    finally:
        plt.close('all')
        plt.switch_backend(old)

# ---- the demos whose tokenizer reads the text name what it has never seen ----------

TOKENIZED = {  # demo -> (index of the box its tokenizer reads, the description of the button that runs it, or None: the box's observer)
    'tokenizer': (0, None), 'chunk': (0, None), 'pretrain': (0, None), 'sft': (0, 'answer'), 'ie': (0, 'ask the model'), 'edit': (0, 'edit'),
}

@pytest.mark.parametrize('name', list(TOKENIZED))
def test_demo_names_the_characters_its_tokenizer_never_saw(name, models, capsys, agg):
    demo = DEMOS[name](models)
    i, button = TOKENIZED[name]
    box = boxes(demo)[i]
    click = next((b.click for b in buttons(demo) if b.description == button), None) if button else None
    def run(value):
        put(box, value)
        if click: click()
    for value in UNSEEN:
        text = after(demo, lambda: run(value), capsys, f"{name}: {value!r}", value)
        note = [l for l in text.splitlines() if 'vocabulary' in l]
        assert note and all(c in note[0] for c in UNSEEN_CHARS if c in value), (name, value, text[-1500:])
    from knowlm_nb.models import example_fact
    from knowlm_nb.world import make_world, verbalise
    w = make_world()
    seen = verbalise(w, example_fact(w), 'en')['text']
    assert 'vocabulary' not in after(demo, lambda: run(seen), capsys, f"{name}: {seen!r}"), name  # a sentence of the world: no note

# ---- the report explains every number that would puzzle a learner ----------

class _Report:
    "Records what a pipeline stage reports."
    def __init__(self): self.texts, self.tables = [], []
    def section(self, title, text=''): self.texts.append(text)
    def text(self, text): self.texts.append(text)
    def table(self, rows, columns=None): self.tables.append(rows)
    def figure(self, fig, name, caption=''):
        import matplotlib.pyplot as plt
        plt.close(fig)
    def metric(self, stage, name, value): pass

@pytest.mark.parametrize('ppl', [(1403.0, 18710.0), (900.0, 40.0)], ids=['rising', 'falling'])
def test_pretraining_report_explains_heldout_perplexity(ppl, monkeypatch, agg):
    "Whenever the pretraining report shows held-out perplexity it says what it is; when it rose with training, why."
    import knowlm_nb.pretrain as P
    from knowlm_nb.world import make_world
    calls = iter(ppl)
    monkeypatch.setattr(P, 'perplexity', lambda *a, **k: next(calls))  # the random init first, then the trained model
    monkeypatch.setattr(P, 'fact_recall', lambda *a, **k: {'en': 0.5, 'zh': 0.5, 'all': 0.5})
    r = _Report()
    P.pipeline_pretrain(r, {'seed': 0, 'world': make_world()})
    shows = any('ppl' in k or 'perplexity' in k for rows in r.tables for row in rows for k in row)
    text = ' '.join(r.texts)
    assert shows
    assert re.search(r'[Hh]eld-out perplexity', text) and 'never' in text, text  # what it is: on documents never trained on
    assert ('rises' in text) == (ppl[1] > ppl[0]), text  # why it rose, only when it did

# ---- the running example is a person of the default world ----------

def test_demo_defaults_come_from_the_default_world(models):
    "The demos start on the world's own example (`example_fact`), and the old invented 'Kalo Renmi' is named nowhere."
    from pathlib import Path
    from knowlm_nb.models import example_fact
    from knowlm_nb.world import make_world, fact_records
    w = make_world()
    ex = example_fact(w)
    start = _chunk(models).children[0].value
    assert w.name(ex.s) in start and w.name(ex.s, 'zh') in start and w.name(ex.o) in start, start
    assert _pretrain(models).children[0].value == fact_records(w)[0]['prompts_en'][0]
    root = Path(__file__).resolve().parents[1]
    named = [str(p.relative_to(root)) for p in [*root.glob('nbs/*.ipynb'), *root.glob('knowlm_nb/*.py')]
             if any(s in p.read_text(encoding='utf-8') for s in ('Kalo Renmi', '卡洛·仁米', 'Kalo was born', "Kalo's"))]
    assert not named, named
