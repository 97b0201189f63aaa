"""Signature drift: every keyword argument the package and the Colab notebooks pass to transformers, PEFT, TRL, bitsandbytes,
accelerate, datasets or huggingface_hub is one the installed versions accept. The Colab notebooks run where CI cannot (a GPU,
the hub), and many of the package's GPU paths (4-bit loading, vLLM generation) never run on a CPU, so a renamed argument
there would only show up in a user's Colab session; this reads the calls from the source instead of running them."""
import ast, dataclasses, importlib, inspect, json
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
THIRD_PARTY = ('transformers', 'peft', 'trl', 'bitsandbytes', 'accelerate', 'datasets', 'huggingface_hub')
COLAB = sorted((ROOT/'nbs').glob('*_colab.ipynb'))
# methods the Colab notebooks call on models and tokenizers, and where their signatures live
METHODS = {'push_to_hub': 'transformers.utils.hub.PushToHubMixin.push_to_hub', 'save_pretrained': 'transformers.PreTrainedModel.save_pretrained'}


def resolve(dotted:str):
    "The object at a dotted path, importing as much of it as is a module."
    parts = dotted.split('.')
    for i in range(len(parts), 0, -1):
        try: obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError: continue
        for p in parts[i:]: obj = getattr(obj, p)
        return obj
    raise ImportError(dotted)


def accepted(obj):
    "The keyword names `obj` accepts (None: it takes **kwargs, so any name passes)."
    try: sig = inspect.signature(obj)  # a class: its __init__ (a dataclass's generated one lists its fields)
    except (TypeError, ValueError):
        return {f.name for f in dataclasses.fields(obj) if f.init} if dataclasses.is_dataclass(obj) else None
    named = {n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        # a config class that swallows unknown keywords (BitsAndBytesConfig) would silently ignore a renamed one: its named
        # parameters are the contract; a function that forwards **kwargs (from_pretrained) cannot be checked here
        return named if isinstance(obj, type) and len(named) >= 3 else None
    return named


def imported_names(tree)->dict:
    "Local name -> dotted path, for every import of a third-party library anywhere in `tree` (imports inside functions too)."
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] in THIRD_PARTY:
            for a in node.names: names[a.asname or a.name] = f'{node.module}.{a.name}'
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split('.')[0] in THIRD_PARTY: names[a.asname or a.name.split('.')[0]] = a.name if a.asname else a.name.split('.')[0]
    return names


def dotted_call(func, names):
    "The dotted path a call's function resolves to through the third-party imports (None if it is not one of theirs)."
    chain = []
    while isinstance(func, ast.Attribute):
        chain.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name) and func.id in names: return '.'.join([names[func.id], *reversed(chain)])
    return None


def dict_keys(node, scope):
    "The keys of a dict literal or dict(...) call, or of the one assigned to a name in `scope` (None if unknown)."
    if isinstance(node, ast.Name):
        assigns = [n.value for n in ast.walk(scope) if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets)]
        return dict_keys(assigns[-1], scope) if assigns else None
    if isinstance(node, ast.Dict) and all(isinstance(k, ast.Constant) for k in node.keys): return {k.value for k in node.keys}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict': return {k.arg for k in node.keywords if k.arg}
    return None


def problems_in(tree, where:str, methods:bool=False)->tuple:
    "(checked call count, problems) for the third-party calls in `tree`: unknown keyword names, and unknown fields in args_overrides."
    names, bad, checked, seen = imported_names(tree), [], 0, set()
    scopes = sorted((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), key=lambda n: -n.lineno) + [tree]
    for scope in scopes:  # innermost first, so a dict assigned in a function is looked up there
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or id(node) in seen: continue
            seen.add(id(node))
            path = dotted_call(node.func, names)
            if path is None and methods and isinstance(node.func, ast.Attribute) and node.func.attr in METHODS: path = METHODS[node.func.attr]
            kws = [k.arg for k in node.keywords if k.arg]
            if path and kws:
                try: obj = resolve(path)
                except (ImportError, AttributeError) as e:
                    bad.append(f"{where} line {node.lineno}: {path} does not exist ({e})")
                    continue
                ok = accepted(obj)
                if ok is not None:
                    checked += 1
                    bad += [f"{where} line {node.lineno}: {path}() has no parameter {k!r}" for k in kws if k not in ok]
            # our run_trainer(cfg, ..., args_cls=X, args_overrides={...}): the overrides become fields of a TRL/transformers config
            cls = next((k.value for k in node.keywords if k.arg == 'args_cls'), None)
            over = next((k.value for k in node.keywords if k.arg == 'args_overrides'), None)
            if cls is not None and over is not None:
                cls_path = dotted_call(cls, names)
                keys = dict_keys(over, scope)
                if cls_path and keys:
                    ok = accepted(resolve(cls_path))
                    checked += 1
                    bad += [f"{where} line {node.lineno}: {cls_path} has no field {k!r}" for k in sorted(keys - ok)]
    return checked, bad


def test_the_package_passes_only_accepted_keywords():
    total, bad = 0, []
    for f in sorted((ROOT/'knowlm_nb').glob('*.py')):
        n, b = problems_in(ast.parse(f.read_text(encoding='utf-8')), f'knowlm_nb/{f.name}')
        total, bad = total + n, bad + b
    assert total >= 5, f"only {total} third-party calls checked: the reader lost track of the imports"
    assert not bad, '\n'.join(bad)


@pytest.mark.parametrize('nb', COLAB, ids=lambda p: p.name)
def test_colab_notebooks_pass_only_accepted_keywords(nb):
    cells = [''.join(c['source']) for c in json.loads(nb.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']
    body = '\n'.join('\n'.join(l for l in c.splitlines() if not l.lstrip().startswith(('!', '%'))) for c in cells)
    _, bad = problems_in(ast.parse(body), nb.name, methods=True)
    assert not bad, '\n'.join(bad)


def test_the_drift_check_catches_a_renamed_argument():
    "The reader above flags what it should: a keyword the installed class lost, an unknown override field, a missing name."
    src = ("from transformers import BitsAndBytesConfig\nfrom trl import GRPOConfig\n"
           "def f(cfg):\n    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_typo='nf4')\n"
           "    over = dict(num_generations=4, max_prompt_length=64)\n    run_trainer(cfg, None, args_cls=GRPOConfig, args_overrides=over)\n"
           "    from peft import LoraConfigg\n    LoraConfigg(r=8)\n")
    _, bad = problems_in(ast.parse(src), 'x')
    assert any("bnb_4bit_quant_typo" in b for b in bad), bad
    assert any("max_prompt_length" in b for b in bad), bad  # gone from TRL's GRPOConfig (see the brief's API facts)
    assert any("LoraConfigg does not exist" in b for b in bad), bad
