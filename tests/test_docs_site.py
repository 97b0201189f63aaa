"""The documentation website in a real browser: every page of `_docs/` (built by `make docs`) served on 127.0.0.1 and opened
in Debian's Chromium through Playwright. CI builds the site first and sets KNOWLM_NB_REQUIRE_DOCS=1, so there a missing site or
browser fails instead of skipping."""
import functools, http.server, json, os, re, shutil, threading, urllib.parse
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get('KNOWLM_NB_DOCS', ROOT/'_docs'))
CHROMIUM = os.environ.get('KNOWLM_NB_CHROMIUM') or shutil.which('chromium') or '/usr/bin/chromium'
REQUIRED = os.environ.get('KNOWLM_NB_REQUIRE_DOCS', '') not in ('', '0')
STAGE_PAGES = sorted(p.name for p in SITE.glob('*.html') if p.stem not in ('index', 'search', 'genindex', 'api'))


def _missing():
    if not (SITE/'index.html').is_file(): return f"no site at {SITE} (run `make docs`)"
    if not Path(CHROMIUM).is_file(): return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try: import playwright.sync_api  # noqa: F401
    except ImportError: return "playwright is not installed (pip install -e '.[docs]')"
    return None

def setup_module():
    why = _missing()
    if why and REQUIRED: pytest.fail(why)
    if why: pytest.skip(why)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture(scope='module')
def server():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(SITE)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown()

@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                              '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'])
        yield b
        b.close()

def open_page(browser, url, viewport=(1300, 1000)):
    "A fresh page at `url`, with its console errors, page errors and every request it made recorded."
    page = browser.new_page(viewport={'width': viewport[0], 'height': viewport[1]})
    page.errors, page.requests = [], []
    page.on('console', lambda m: page.errors.append(f'console {m.type}: {m.text}') if m.type == 'error' else None)
    page.on('pageerror', lambda e: page.errors.append(f'page error: {e}'))
    page.on('request', lambda r: page.requests.append(r.url))
    page.on('requestfailed', lambda r: page.errors.append(f'request failed: {r.url}'))
    page.goto(url, wait_until='load')  # the whole document parsed (networkidle alone can come first on a long page)
    page.wait_for_load_state('networkidle')
    return page


def test_every_page_loads_cleanly_and_stays_on_localhost(server, browser):
    "Every page: no console error, no request to any host but 127.0.0.1, every internal link and anchor resolves."
    pages = sorted(p.relative_to(SITE).as_posix() for p in SITE.glob('*.html'))
    assert len(pages) >= 15, pages
    problems, anchors, links = [], {}, []
    for name in pages:
        page = open_page(browser, f'{server}/{name}')
        problems += [f'{name}: {e}' for e in page.errors]
        problems += [f'{name}: request left 127.0.0.1: {u}' for u in page.requests if urllib.parse.urlparse(u).hostname not in ('127.0.0.1', None)]
        anchors[name] = set(page.eval_on_selector_all('[id]', 'els => els.map(e => e.id)'))
        links += [(name, h) for h in page.eval_on_selector_all('a[href]', 'els => els.map(e => e.getAttribute("href"))')]
        page.close()
    for src, href in links:
        u = urllib.parse.urlparse(href)
        if u.scheme or href.startswith(('mailto:', 'javascript:')): continue
        target = urllib.parse.urljoin(src, u.path) if u.path else src
        if not (SITE/target).exists(): problems.append(f'{src}: broken link {href}')
        elif u.fragment and target.endswith('.html') and target in anchors and urllib.parse.unquote(u.fragment) not in anchors[target]:
            problems.append(f'{src}: no anchor #{u.fragment} in {target}')
    assert not problems, '\n'.join(problems[:40])


def test_every_exported_name_has_its_api_entry(server, browser):
    "The anchors `_modidx.py` gives every exported function and class (the addresses nbdev links to) exist on their pages."
    import importlib
    d = importlib.import_module('knowlm_nb._modidx').d
    want = {}
    for mod, syms in d['syms'].items():
        exported = set(getattr(importlib.import_module(mod), '__all__', []))
        for sym, (ref, _) in syms.items():
            name = sym[len(mod) + 1:]
            if name in exported: want.setdefault(ref.split('#')[0], set()).add(ref.split('#')[1])
    assert sum(map(len, want.values())) > 100
    missing = []
    for page_name, ids in want.items():
        html = (SITE/page_name).read_text(encoding='utf-8')
        missing += [f'{page_name}#{a}' for a in ids if f'id="{a}"' not in html]
    assert not missing, missing[:20]
    page = open_page(browser, f'{server}/api.html')
    assert page.locator('.api-list a').count() == sum(map(len, want.values()))
    page.close()


@pytest.mark.parametrize('query,page_title', [('score_poem', 'Metre scoring'), ('pack_sentences', 'Chunking'), ('平仄', 'Metre scoring')])
def test_search_finds_functions_and_chinese_terms(server, browser, query, page_title):
    page = open_page(browser, f'{server}/search.html?q={urllib.parse.quote(query)}')
    page.wait_for_selector('#search-results ul.search li', timeout=15000)
    hits = page.locator('#search-results ul.search li a').all_inner_texts()
    assert any(page_title in h for h in hits), hits
    assert not page.errors, page.errors
    page.close()


def test_widgets_render_from_saved_state(server, browser):
    "The rhyme demo draws its controls and its scored poem from the state saved when the notebook ran."
    page = open_page(browser, f'{server}/rhyme.html')
    page.wait_for_selector('.widget-textarea textarea', timeout=15000)
    poem = page.locator('.widget-textarea textarea').first.input_value()
    assert re.search(r'[\u4e00-\u9fff]', poem), poem
    assert page.locator('.widget-dropdown select').count() >= 2
    assert not page.errors, page.errors
    page.close()


def test_chinese_text_is_drawn_with_a_cjk_font(server, browser):
    "The fonts Chromium actually used for a Chinese heading (DevTools' platform fonts): a CJK font draws its glyphs, not boxes."
    page = open_page(browser, f'{server}/rhyme.html')
    page.locator('h2', has_text='平水韵').first.scroll_into_view_if_needed()
    cdp = page.context.new_cdp_session(page)
    cdp.send('DOM.enable')
    cdp.send('CSS.enable')
    root = cdp.send('DOM.getDocument', {'depth': -1})['root']['nodeId']
    node = next(n for n in cdp.send('DOM.querySelectorAll', {'nodeId': root, 'selector': 'h2'})['nodeIds']
                if '平水韵' in cdp.send('DOM.getOuterHTML', {'nodeId': n})['outerHTML'])
    fonts = cdp.send('CSS.getPlatformFontsForNode', {'nodeId': node})['fonts']
    cjk = [f for f in fonts if re.search(r'CJK|WenQuanYi|Han Sans|Hei|Song|Ming|Kai', f['familyName'], re.I)]
    assert cjk and sum(f['glyphCount'] for f in cjk) >= 3, fonts  # the three characters of 平水韵
    page.close()


def test_screenshots_of_every_stage_page(server, browser):
    "A screenshot of each stage page under _docs/screenshots/ (what a reader sees first), each a real PNG of the page."
    out = SITE/'screenshots'
    out.mkdir(exist_ok=True)
    assert len(STAGE_PAGES) >= 15
    for name in STAGE_PAGES:
        page = open_page(browser, f'{server}/{name}', viewport=(1300, 1600))
        if page.locator('.jupyter-widgets').count(): page.wait_for_timeout(500)
        png = out/f'{Path(name).stem}.png'
        page.screenshot(path=str(png))
        page.close()
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 20_000, png


def test_pipeline_report_html_opens_with_its_figures(browser, tmp_path):
    "`knowlm-nb pipeline` writes report.html beside report.md: it opens with no error, its tables render and every figure loads."
    import subprocess, sys
    exe = Path(sys.executable).parent/'knowlm-nb'
    r = subprocess.run([str(exe), 'pipeline', '--out', str(tmp_path/'rep'), '--stages', 'world', 'models', 'rhyme'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    page = open_page(browser, (tmp_path/'rep'/'report.html').as_uri())
    assert not page.errors, page.errors
    assert all(u.startswith('file://') for u in page.requests), page.requests
    assert page.locator('table').count() >= 2
    imgs = page.eval_on_selector_all('img', 'els => els.map(e => [e.getAttribute("src"), e.naturalWidth])')
    assert len(imgs) >= 3 and all(w > 0 for _, w in imgs), imgs
    assert '## ' not in page.inner_text('main')  # Markdown rendered, not shown as text
    page.close()
