"Notebook hygiene, checked on every notebook: imports in cells of their own, no `;` joining statements, and every exported section followed by a lesson that runs it."
import ast, json, re
from pathlib import Path
import pytest

NBS = sorted((Path(__file__).resolve().parents[1]/'nbs').glob('*.ipynb'))

def code_cells(nb_path):
    "(index, flags, source without directive lines) of each code cell."
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        flags = {l[3:].strip().split()[0] for l in src.splitlines() if l.startswith('#| ') and l[3:].strip()}
        body = '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines())
        yield i, flags, body

def is_import(node): return isinstance(node, (ast.Import, ast.ImportFrom))

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_imports_in_their_own_cells(nb):
    bad = []
    for i, flags, body in code_cells(nb):
        stmts = ast.parse(body).body
        if any(is_import(s) for s in stmts) and not all(is_import(s) for s in stmts): bad.append(i)
    assert not bad, f"{nb.name}: cells {bad} mix imports with other code (nbdev's docs processor runs import cells out of order)"

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_no_semicolons_joining_statements(nb):
    bad = []
    for i, flags, body in code_cells(nb):
        import io, tokenize
        toks = tokenize.generate_tokens(io.StringIO(body).readline)
        if any(t.type == tokenize.OP and t.string == ';' for t in toks): bad.append(i)
    assert not bad, f"{nb.name}: cells {bad} join statements with ';'"

def public_names(body):
    "Public functions, classes and constants a cell defines."
    out = set()
    for s in ast.parse(body).body:
        if isinstance(s, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)): out.add(s.name)
        elif isinstance(s, ast.Assign): out |= {t.id for t in s.targets if isinstance(t, ast.Name)}
    return {n for n in out if not n.startswith('_') and not n.isupper()}  # (constants are data, not steps: exempt)

@pytest.mark.parametrize('nb', [p for p in NBS if p.name != 'index.ipynb'], ids=lambda p: p.name)
def test_every_exported_section_has_a_lesson(nb):
    cells = list(code_cells(nb))
    missing = []
    for k, (i, flags, body) in enumerate(cells):
        if 'export' not in flags: continue
        names = public_names(body)
        if not names: continue  # an import cell
        later = [b for _, f, b in cells[k + 1:] if 'export' not in f]
        used = {n for n in names if any(re.search(rf'\b{re.escape(n)}\b', b) for b in later)}
        nxt = next((f for _, f, b in cells[k + 1:] if 'export' not in f or public_names(b)), None)
        if used != names: missing.append(f"cell {i} ({', '.join(sorted(names - used))}): never run in a later lesson cell")
        elif nxt is None: missing.append(f"cell {i}: no lesson after it")
    assert not missing, f"{nb.name}: " + '; '.join(missing)

COLAB = [p for p in NBS if 'colab' in p.stem]

@pytest.mark.parametrize('nb', COLAB, ids=lambda p: p.name)
def test_colab_notebooks_ask_for_a_gpu_and_are_skipped_by_the_test_run(nb):
    "Colab picks the runtime from the notebook metadata (kept through nbdev-clean); every code cell is flagged so nbdev-test skips it."
    meta = json.loads(nb.read_text(encoding='utf-8'))['metadata']
    assert meta.get('accelerator') == 'GPU' and meta.get('colab', {}).get('gpuType'), meta
    unflagged = [i for i, flags, body in code_cells(nb) if body.strip() and 'colab' not in flags]
    assert not unflagged, f"{nb.name}: code cells {unflagged} are not flagged '#| colab'"
    text = nb.read_text(encoding='utf-8')
    assert 'colab.research.google.com/github/' in text and 'colab-badge.svg' in text  # the Open-in-Colab badge

@pytest.mark.parametrize('nb', COLAB, ids=lambda p: p.name)
def test_colab_notebooks_match_the_library(nb):
    "Drift check for the notebooks the test run skips: every knowlm_nb name they import exists, and every keyword they pass to it is a parameter."
    import importlib, inspect
    body = '\n'.join(b for _, _, b in code_cells(nb))
    tree = ast.parse(body)
    names, bad = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('knowlm_nb'):
            mod = importlib.import_module(node.module)
            for a in node.names:
                if not hasattr(mod, a.name): bad.append(f"{node.module}.{a.name} does not exist")
                else: names[a.asname or a.name] = getattr(mod, a.name)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names): continue
        fn = names[node.func.id]
        try: sig = inspect.signature(fn)
        except (TypeError, ValueError): continue
        params = sig.parameters
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            import typing
            ann = typing.get_type_hints(fn).get('config')  # stages take `config` + field overrides: check the fields of the config class
            fields = {f for c in getattr(ann, '__args__', (ann,)) if isinstance(c, type) and hasattr(c, '__dataclass_fields__')
                      for f in c.__dataclass_fields__}
            if not fields: continue
            allowed = fields | set(params)
        else: allowed = set(params)
        bad += [f"line {node.lineno}: {node.func.id}() has no parameter {k.arg!r}" for k in node.keywords if k.arg and k.arg not in allowed]
    assert not bad, f"{nb.name}: " + '; '.join(bad)
