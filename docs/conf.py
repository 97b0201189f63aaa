# Sphinx configuration of the documentation site (built by `make docs` = tools/build_docs.py, offline).
# The pages are the notebooks already executed by tools/run_notebooks.py: Sphinx never runs a cell.
import os

project = 'knowlm_nb'
author = 'knowlm_nb developers'
copyright = 'knowlm_nb developers, Apache-2.0'
extensions = ['myst_nb']
nb_execution_mode = 'off'            # outputs come from the Run-All pass; building the site runs nothing
nb_merge_streams = True
myst_enable_extensions = ['colon_fence']
myst_heading_anchors = 3
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type', 'misc.highlighting_failure']
exclude_patterns = ['_build', '**.ipynb_checkpoints']
html_theme = 'pydata_sphinx_theme'
html_title = 'knowlm_nb'
html_static_path = [os.environ.get('KNOWLM_NB_DOCS_STATIC', '_static')]
html_css_files = ['knowlm.css']
html_js_files = [('search_zh.js', {'priority': 100})]
html_copy_source = False
html_favicon = os.path.join(html_static_path[0], 'favicon.svg')
html_context = {'default_mode': 'light'}
templates_path = ['_templates']
html_sidebars = {'**': ['all-pages']}
html_show_sourcelink = False
html_theme_options = {
    'navigation_with_keys': False,
    'show_toc_level': 2,
    'navbar_align': 'left',
    'header_links_before_dropdown': 4,
    'footer_start': ['copyright'],
    'footer_end': [],
    'secondary_sidebar_items': ['page-toc'],
}
# Widgets render from the state saved with each executed notebook; the renderer (npm's @jupyter-widgets/html-manager,
# BSD-3) is served from the site itself, never from a CDN.
nb_ipywidgets_js = {'widgets/embed.js': {}}
# Search: Chinese pages are split into words with jieba (English words are kept as they are by the same splitter).
html_search_language = 'zh'
