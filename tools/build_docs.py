"""Build the documentation website offline, and the README, from the notebooks (no Quarto needed).

    python tools/build_docs.py site [--executed _build/executed] [--out _docs]   # `make docs`
    python tools/build_docs.py readme [--check]                                    # `make readme`; --check: exit 1 if stale

The site is Sphinx + MyST-NB + the pydata theme over the notebooks that tools/run_notebooks.py executed (outputs, figures
and widget state included; Sphinx runs nothing). Each notebook becomes one page named as nbdev names it (`03_chunking` ->
`chunking.html`, the address the module docstrings give), in numbered order, with an API entry (signature, docstring,
parameter table: nbdev's `show_doc`) after every exported function or class, anchored where `_modidx.py` points.
`api.html` lists every exported name. The Colab notebooks are shown as they are (not executed: they need a GPU and the hub).
Widgets are drawn from their saved state by @jupyter-widgets/html-manager's `embed.js`, fetched once with npm into the
knowlm_nb cache and served from the site. The search index splits Chinese with jieba."""
import argparse, ast, importlib, json, os, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
DOCS = ROOT/'docs'
WIDGETS_NPM = '@jupyter-widgets/html-manager@1.0.15'
DIRECTIVE = re.compile(r'^#\|\s*(.*)$')


def page_name(nb:Path)->str:
    "The page a notebook becomes, as nbdev names it: `03a_training.ipynb` -> `training`."
    return re.sub(r'^\d+[a-z]?_', '', nb.stem)


def notebooks()->list:
    "Every notebook in numbered order, the index first."
    nbs = sorted(NBS.glob('*.ipynb'))
    return [p for p in nbs if p.stem == 'index'] + [p for p in nbs if p.stem != 'index']


def readme_text()->str:
    "The README: the index notebook's markdown cells, in order, one blank line apart."
    nb = json.loads((NBS/'index.ipynb').read_text(encoding='utf-8'))
    return '\n\n'.join(''.join(c['source']).strip() for c in nb['cells'] if c['cell_type'] == 'markdown').strip() + '\n'


def cell_directives(src:str):
    "(directives, source without them) of a code cell: the `#|` lines at its top."
    lines, flags = src.split('\n'), []
    while lines and DIRECTIVE.match(lines[0]):
        flags.append(DIRECTIVE.match(lines.pop(0)).group(1).strip())
    return flags, '\n'.join(lines)


def exported_names(src:str, module)->list:
    "Public functions and classes an export cell defines that the module exports."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith('_')]
    exported = set(getattr(module, '__all__', names))
    return [n for n in names if n in exported and hasattr(module, n)]


def api_anchor(modidx:dict, module:str, name:str)->str:
    "The anchor `_modidx.py` gives `module.name` (what nbdev's links and the module docstrings point at)."
    ref = modidx['syms'].get(module, {}).get(f'{module}.{name}')
    return ref[0].split('#', 1)[1] if ref and '#' in ref[0] else name.lower()


def api_markdown(obj, anchor:str)->str:
    "One API entry: an anchor, then nbdev's show_doc (signature, docstring, parameter table)."
    from nbdev.showdoc import show_doc
    for _ in range(5):
        try:
            md = show_doc(obj)._repr_markdown_().strip()
            break
        except NameError as e:  # a string annotation naming a module imported lazily (torch): give the signature its module
            name = getattr(e, 'name', None)
            mod = sys.modules.get(getattr(obj, '__module__', ''), None)
            if not name or mod is None: raise
            setattr(mod, name, importlib.import_module(name))
    else: raise RuntimeError(f"show_doc({obj!r}) kept failing")
    md = re.sub(r'^---\s*\n', '', md)
    md = re.sub(r'\]\((https?://[^)\s]+)\)\{[^}\n]*\}', r'](\1)', md)  # Quarto's link attributes ({target="_blank" ...}) are not Markdown
    return f'<span id="{anchor}"></span>\n\n{md}\n'


def md_cell(src:str, cell_id:str)->dict:
    "A markdown cell (nbformat 4.5 wants an id)."
    return {'cell_type': 'markdown', 'id': re.sub(r'[^A-Za-z0-9_-]', '-', cell_id)[:64], 'metadata': {}, 'source': src}


COLAB_BADGE = re.compile(r'\[!\[([^\]]*)\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\((https://colab\.research\.google\.com/[^)\s]+)\)')

def local_badges(md:str)->str:
    "Open-in-Colab badges drawn from the site's own copy of the badge (a page must not fetch anything from another host)."
    return COLAB_BADGE.sub(lambda m: f'<a href="{m.group(2)}"><img src="_static/colab-badge.svg" alt="{m.group(1)}"></a>', md)


def convert(nb_path:Path, executed:Path|None, modidx:dict)->dict:
    "A notebook as a site page: directives stripped, an API entry after each exported definition, outputs kept."
    nb = json.loads((executed or nb_path).read_text(encoding='utf-8'))
    module, cells = None, []
    for c in nb['cells']:
        if c['cell_type'] != 'code':
            c['source'] = local_badges(''.join(c['source']))
            cells.append(c)
            continue
        flags, body = cell_directives(''.join(c['source']))
        exp = next((f for f in flags if f.startswith('default_exp')), None)
        if exp:
            module = importlib.import_module(f"knowlm_nb.{exp.split()[1]}")
            continue
        if 'hide' in flags: continue
        tags = c.setdefault('metadata', {}).setdefault('tags', [])
        if 'echo: false' in flags: tags.append('remove-input')
        if 'output: false' in flags: tags.append('remove-output')
        if not body.strip() and not c.get('outputs'): continue
        c['source'] = body
        cells.append(c)
        if module is not None and any(f.split()[0] in ('export', 'exports') for f in flags):
            for name in exported_names(body, module):
                anchor = api_anchor(modidx, module.__name__, name)
                cells.append(md_cell(api_markdown(getattr(module, name), anchor), f'api-{anchor}'))
    nb['cells'] = cells
    if not (nb['metadata'].get('widgets') or {}).get('application/vnd.jupyter.widget-state+json'):
        nb['metadata'].pop('widgets', None)  # no saved widget state: MyST-NB then loads no widget renderer
    return nb


def api_page(modidx:dict)->str:
    "The API index: every exported name of every module, linked to its entry."
    out = ['# API reference', '', 'Every function and class the package exports, by module, linked to its entry on the stage page.', '']
    for mod in sorted(modidx['syms']):
        m = importlib.import_module(mod)
        names = [n for n in getattr(m, '__all__', []) if f'{mod}.{n}' in modidx['syms'][mod]]
        if not names: continue
        out += [f'## `{mod}`', '', '<ul class="api-list">']
        for n in sorted(names, key=str.lower):
            page, _, anchor = modidx['syms'][mod][f'{mod}.{n}'][0].partition('#')
            doc = (getattr(getattr(m, n), '__doc__', None) or '').strip().split('\n')[0]
            doc = doc.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            out.append(f'<li><a href="{page}#{anchor}"><code>{n}</code></a> — {doc}</li>')
        out += ['</ul>', '']
    return '\n'.join(out)


def widget_renderer(cache:Path)->Path:
    "The folder of html-manager's `embed.js` (and the fonts it loads), fetched with npm once into `cache`."
    dist = cache/'node_modules'/'@jupyter-widgets'/'html-manager'/'dist'
    if not (dist/'embed.js').is_file():
        npm = shutil.which('npm')
        if not npm: sys.exit("build_docs: npm is needed once to fetch the widget renderer (@jupyter-widgets/html-manager); install Node.js/npm")
        cache.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([npm, 'install', '--prefix', str(cache), '--no-audit', '--no-fund', '--ignore-scripts', WIDGETS_NPM], capture_output=True, text=True)
        if r.returncode or not (dist/'embed.js').is_file():
            sys.exit(f"build_docs: npm could not fetch {WIDGETS_NPM}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return dist


def build_site(executed:Path, out:Path, cache:Path, allow_missing:bool=False)->int:
    "Convert the executed notebooks, then run Sphinx into `out`; return Sphinx's exit code."
    sys.path.insert(0, str(ROOT))
    modidx = importlib.import_module('knowlm_nb._modidx').d
    build = ROOT/'_build'
    src, static = build/'site_src', build/'site_static'
    for d in (src, static): shutil.rmtree(d, ignore_errors=True)
    src.mkdir(parents=True)
    pages, missing = [], []
    for nb in notebooks():
        ex = executed/nb.name
        if not ex.is_file():
            if not nb.stem.endswith('_colab'): missing.append(nb.name)
            ex = None
        page = convert(nb, ex, modidx)
        (src/f'{page_name(nb)}.ipynb').write_text(json.dumps(page, ensure_ascii=False), encoding='utf-8')
        pages.append(page_name(nb))
    if missing and not allow_missing:
        print(f"build_docs: not executed (run `python tools/run_notebooks.py` first): {', '.join(missing)}", file=sys.stderr)
        return 2
    index = json.loads((src/'index.ipynb').read_text(encoding='utf-8'))
    index['cells'].append(md_cell('```{toctree}\n:hidden:\n:maxdepth: 1\n\n' + '\n'.join(p for p in pages if p != 'index') + '\napi\n```\n', 'site-toctree'))
    (src/'index.ipynb').write_text(json.dumps(index, ensure_ascii=False), encoding='utf-8')
    (src/'api.md').write_text(api_page(modidx), encoding='utf-8')
    shutil.copytree(DOCS/'static', static)
    shutil.copytree(widget_renderer(cache), static/'widgets')
    env = dict(os.environ, KNOWLM_NB_DOCS_STATIC=str(static))
    html = build/'site'/'html'  # (MyST-NB writes its jupyter_execute/ beside the output folder: kept inside _build)
    shutil.rmtree(html, ignore_errors=True)
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-c', str(DOCS), '-d', str(build/'doctrees'), str(src), str(html)]
    r = subprocess.run(cmd, env=env)
    if r.returncode: return r.returncode
    (html/'.nojekyll').write_text('')
    shutil.rmtree(html/'_sources', ignore_errors=True)  # the converted notebooks again, as text: not part of the site
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(html), str(out))  # a failed build leaves the previous site as it was
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('site', help='build the website into --out')
    s.add_argument('--executed', type=Path, default=ROOT/'_build'/'executed', help='notebooks executed by tools/run_notebooks.py')
    s.add_argument('--out', type=Path, default=ROOT/'_docs', help='output folder')
    s.add_argument('--allow-missing', action='store_true', help='show notebooks that were not executed without outputs (a quick look; CI never)')
    s.add_argument('--cache', type=Path, default=None, help='where npm keeps the widget renderer (default: the knowlm_nb cache)')
    r = sub.add_parser('readme', help='write README.md from nbs/index.ipynb')
    r.add_argument('--check', action='store_true', help='change nothing; exit 1 if README.md is not what the index notebook gives')
    a = ap.parse_args(argv)
    if a.cmd == 'readme':
        want, path = readme_text(), ROOT/'README.md'
        if a.check:
            if path.read_text(encoding='utf-8') != want:
                print("README.md is stale: it is generated from nbs/index.ipynb; run `make readme` and commit", file=sys.stderr)
                return 1
            return 0
        tmp = path.with_name('.README.md.tmp')
        tmp.write_text(want, encoding='utf-8')
        os.replace(tmp, path)
        return 0
    cache = a.cache
    if cache is None:
        sys.path.insert(0, str(ROOT))
        from knowlm_nb.core import knowlm_home
        cache = knowlm_home()/'docs-npm'
    return build_site(a.executed.resolve(), a.out.resolve(), cache, a.allow_missing)


if __name__ == '__main__':
    sys.exit(main())
