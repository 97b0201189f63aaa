"One figure, one source: every number in the README's figures table is a value a bench wrote to the bench/results file its row cites."
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def flat_numbers(obj):
    "Every number in a JSON value (nested dicts and lists included), plus the lengths of lists."
    if isinstance(obj, bool): return []
    if isinstance(obj, (int, float)): return [float(obj)]
    if isinstance(obj, dict): return [x for v in obj.values() for x in flat_numbers(v)]
    if isinstance(obj, list): return [float(len(obj))] + [x for v in obj for x in flat_numbers(v)]
    return []

def figure_rows(text):
    "(row text, figure column, cited result files) of the table under '## Figures'."
    sec = text.split('## Figures', 1)[1].split('\n## ', 1)[0]
    rows = [l for l in sec.splitlines() if l.startswith('|') and not l.startswith('|---')][1:]
    return [(r, r.split('|')[2], re.findall(r'bench/results/([\w-]+)\.json', r)) for r in rows]

def shown(value:float, token:str)->bool:
    "True if `token` (as printed: 1,234 / 0.319 / 12%) is `value` rounded to the token's precision."
    t = token.replace(',', '')
    pct = t.endswith('%')
    t = t.rstrip('%')
    dec = len(t.split('.')[1]) if '.' in t else 0
    v = value * 100 if pct else value
    return abs(round(v, dec) - float(t)) < 10**-dec / 2 + 1e-12 or (pct and abs(round(value, dec) - float(t)) < 10**-dec / 2)

def test_readme_figures_come_from_bench_results():
    text = (ROOT/'README.md').read_text(encoding='utf-8')
    rows = figure_rows(text)
    assert rows, 'the README has a figures table'
    for row, fig, files in rows:
        assert files, f"row cites no bench/results file: {row[:80]}"
        values = [x for f in files for x in flat_numbers(json.loads((ROOT/'bench'/'results'/f'{f}.json').read_text(encoding='utf-8')))]
        for tok in re.findall(r'(?<![\w.])\d[\d,]*(?:\.\d+)?%?', fig):
            assert any(shown(v, tok) for v in values), f"{tok} in '{fig.strip()[:60]}' is not in {files}"

def test_readme_matches_index_notebook():
    "The README is the index notebook's prose (one source for both), exactly as `make readme` writes it."
    import sys
    sys.path.insert(0, str(ROOT/'tools'))
    from build_docs import readme_text
    assert (ROOT/'README.md').read_text(encoding='utf-8') == readme_text()
