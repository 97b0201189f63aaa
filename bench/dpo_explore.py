"Scratch: DPO recipes from the tiny knowledge-SFT model (1 context fact), held-out preference and answer accuracy per recipe."
import sys, json, time, tempfile, contextlib, io
from pathlib import Path
from knowlm_nb.dpo import *
from knowlm_nb.core import merge_config
from knowlm_nb.world import make_world
from knowlm_nb.sft import answer_accuracy, sft_eval_items, fact_precision
from knowlm_nb.models import load_model, load_tokenizer
configs = [json.loads(a) for a in sys.argv[1:]]
w = make_world()
start_p = tiny_sft_merged_path()
held = knowledge_pairs(w, splits=('test',), n_facts=2)
start = load_model(str(start_p), device='cpu'); tok = load_tokenizer(str(start_p))
items = sft_eval_items(w)
b = preference_accuracy(start, tok, held); a0, d0 = answer_accuracy(start, tok, items, return_items=True)
print('before', {k: v['likelihood_acc'] for k, v in b.items()}, a0, fact_precision(w, [(x['completion'], x['lang']) for x in d0]), flush=True)
for kw in configs:
    cfg = merge_config(DPOTrainConfig, {**TINY_DPO_RECIPE, **kw})
    d = Path(tempfile.mkdtemp())
    t = time.time()
    with contextlib.redirect_stderr(io.StringIO()): r = dpo(cfg, out=str(d/'a'))
    a = preference_accuracy(r.model, tok, held); a1, done = answer_accuracy(r.model, tok, items, return_items=True)
    print('RESULT', kw, 'secs', round(time.time()-t), r.steps)
    print(' reward', {k: v['reward_acc'] for k, v in a.items()})
    print(' lik', {k: v['likelihood_acc'] for k, v in a.items()}, a1, fact_precision(w, [(x['completion'], x['lang']) for x in done]), flush=True)
