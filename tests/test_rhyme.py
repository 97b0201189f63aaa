"Tests of knowlm_nb.rhyme: hand-checked famous poems, one failing and one passing example per rule, bad input, rewards, CLI, and the shared corpus."
import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from knowlm_nb import rhyme as R
from knowlm_nb.core import DataFormatError

SHARED = Path(__file__).resolve().parents[2]/'shared'
POETRY, PINGSHUI = SHARED/'data'/'poetry', SHARED/'data'/'pingshui'/'couyun_pingshui_cilin.json'
needs_poetry = pytest.mark.skipif(not (POETRY/'tangshi300_quantangshi.json').exists(), reason='../shared/data/poetry is absent')
needs_pingshui = pytest.mark.skipif(not PINGSHUI.exists(), reason='../shared/data/pingshui is absent')

CHUNWANG = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
DENGGAO = "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。"
JIANGXUE = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"


def verdicts(res): return [[c['verdict'] for c in row] for row in res.grid]


# ---- the table -------------------------------------------------------------------------------------------

def test_table_shape_and_readings():
    T = R.pingshui_table()
    assert len(T.groups) == 106 and sum(g.pingze == '平' for g in T.groups) == 30
    assert [g.label for g in T.groups if g.idx in (1, 27, 98)] == ['上平一东', '下平十二侵', '入声九屑']
    assert T.pingze('看') == '平仄' and T.pingze('国') == '仄' and T.pingze('國') == '仄' and T.pingze('x') == '?'
    assert {g.name for g in T.groups_of('行')} >= {'阳', '庚'}  # several readings are kept
    assert all(R.is_han(c) for c in T.readings)


def test_supplement_closes_variants_and_is_sourced():
    T0, T = R.pingshui_table(supplement=False), R.pingshui_table()
    for v, std in R.SUPPLEMENT_VARIANTS.items():
        assert std in T0, std  # the target comes from the dependency
        if v not in T0: assert T.readings[v] == T0.readings[std]
    for c in '啼扫迹沉遍':
        assert c not in T0 and c in T and T.source[c] == 'supplement'
    assert T.pingze('啼') == '平' and T.pingze('迹') == '仄' and T.pingze('沉') == '平'


def test_learn_variants_uses_simplified_form():
    T = R.pingshui_table()
    r = R.score_poem("國破山河在，城春草木深。感時花濺淚，恨別鳥驚心。烽火連三月，家書抵萬金。白頭搔更短，渾欲不勝簪。")
    assert r.tones == 100.0 and r.group == '下平十二侵'
    R.score_poem("牀前明月光，疑是地上霜。")  # 牀 is not in the table; its simplified form 床 is
    assert T.pingze('牀') == '平'


# ---- rules: each with a passing and a failing example ---------------------------------------------------

def test_templates_follow_nian_and_dui():
    for C in (5, 7):
        for rt in (R.PING, R.ZE):
            for name, pats in R.tone_templates(C, 8, rt).items():
                for i in range(1, 8):
                    same = pats[i][1] == pats[i-1][1]
                    assert same == (i % 2 == 0), (name, i)  # 粘 between couplets, 对 inside
                assert all(p[-1] == rt for p in pats[1::2])


def test_guping_and_sanpingwei():
    M = lambda s: [R.pingshui_table().mask.get(c, 0) for c in s]
    B5, D5 = R.line_pattern(5, R.PING, R.PING), R.line_pattern(5, R.ZE, R.PING)
    assert R.fit_line(M('月明岂见君'), B5, verdicts=True)[2][0] == ('bad', '孤平')
    assert R.fit_line(M('月明山见君'), B5, verdicts=True)[2][:3] == [('free', None), ('ok', None), ('free', '孤平自救')]  # rescued
    assert R.fit_line(M('春风吹又生'), B5) [:2] == (3, 3)
    assert R.fit_line(M('白日千山红'), D5, verdicts=True)[2][2] == ('bad', '三平尾')
    # seven characters: 仄仄平平仄仄平 with a 仄 third character is 孤平
    B7 = R.line_pattern(7, R.ZE, R.PING)
    assert R.show_pattern(B7) == '仄仄平平仄仄平'
    assert R.fit_line(M('万里月明岂见君'), B7, verdicts=True)[2][2] == ('bad', '孤平')
    assert R.fit_line(M('万里山明岂见君'), B7, verdicts=True)[2][2][0] in ('ok', 'free')


def test_chunwang_exact():
    loose = R.score_poem(CHUNWANG, form='五律', group='侵', detail=True)
    assert (loose.tones, loose.rhymes, loose.length, loose.template) == (100.0, 100.0, 100.0, '仄起首句不入韵')
    assert verdicts(loose)[2] == ['free', 'ok', 'ok', 'ok', 'ok']  # 感 仄 in a free position
    assert [c['rhyme'] for row in loose.grid for c in row if c['rhyme']] == ['hit'] * 4
    strict = R.score_poem(CHUNWANG, loose=False, detail=True)
    assert strict.tones == 92.5
    assert [(c['char'], c['verdict']) for row in strict.grid for c in row if c['verdict'] != 'ok'] == [('感', 'bad'), ('烽', 'bad'), ('白', 'bad')]


def test_jingyesi_exact():
    r = R.score_poem(JINGYESI, detail=True)
    assert r.template == '平起首句入韵' and r.group == '下平七阳' and r.rhymes == 100.0
    assert verdicts(r) == [['ok', 'ok', 'free', 'ok', 'ok'],   # 床前明月光 vs 平平仄仄平
                           ['free', 'ok', 'ok', 'bad', 'ok'],  # 疑是地上霜 vs 仄仄仄平平: 上 is 仄
                           ['ok', 'bad', 'ok', 'ok', 'ok'],    # 举头望明月 vs 仄仄平平仄: 头 is 平 (失粘)
                           ['ok', 'ok', 'ok', 'ok', 'ok']]     # 低头思故乡 vs 平平仄仄平 (思 has a 去声 reading)
    assert r.tones == pytest.approx(100 * 10 / 12)


def test_rhyme_rule_pass_and_fail():
    assert R.score_poem(CHUNWANG, group='侵').rhymes == 100.0
    assert R.score_poem(CHUNWANG, group='东').rhymes == 0.0
    broken = CHUNWANG.replace('惊心', '惊天')  # 天 is in 先, not 侵
    assert R.score_poem(broken, group='侵').rhymes == 75.0


def test_oblique_rhyme():
    r = R.score_poem(JIANGXUE, group='屑')
    assert r.rhymes == 100.0 and r.group == '入声九屑'
    assert R.tone_templates(5, 4, R.ZE)[r.template][1][-1] == R.ZE


def test_length_rule():
    assert R.score_poem(JINGYESI, form='五绝').length == 100.0
    assert R.score_poem(JINGYESI, form='七绝').length == 0.0
    assert R.score_poem(JINGYESI, form='五律').length == 50.0
    assert R.score_poem(JINGYESI.replace('疑是地上霜', '疑是地上的霜'), form='五绝').length == 75.0


def test_antithesis_rule():
    good, jq = R.score_poem(DENGGAO), R.score_poem(JINGYESI)
    flat = DENGGAO.replace('无边落木萧萧下，不尽长江滚滚来', '我今来此登高处，酒一杯兮人不来')
    assert good.antithesis > R.score_poem(flat).antithesis + 10
    assert jq.antithesis == 100.0 and any('not required' in x for x in jq.reasons)  # 绝句: not asked
    assert R.score_poem(DENGGAO, antithesis=False).total is None


def test_total_uses_card_weights():
    r = R.score_poem(DENGGAO)
    assert r.total == pytest.approx(0.4*r.tones + 0.3*r.rhymes + 0.2*r.antithesis + 0.1*r.length)


def test_scripts_punctuation_and_notes():
    a = R.score_poem(CHUNWANG)
    b = R.score_poem(CHUNWANG.replace('，', '').replace('。', ''))
    c = R.score_poem(CHUNWANG.replace('，', ', ').replace('。', '.\n'))
    assert a.as_dict() | {'lines': None} == b.as_dict() | {'lines': None} == c.as_dict() | {'lines': None}
    assert R.split_lines("人面不知何處去(明年 一作：年年)，桃花依舊笑春風。") == ['人面不知何處去', '桃花依舊笑春風']


# ---- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('poem,why', [
    ('', 'empty'), ('   \n ', 'empty'), ('The moon is bright tonight.', 'no Chinese'), ('🌙🌙🌙', 'no Chinese'),
    ('床前明月光abc，疑是地上霜。举头望明月，低头思故乡。', 'non-Chinese'), ('床前明月光，疑是地上霜啊。举头望明月，低头思故乡。', 'per line'),
    ('床前明月光，疑是地上霜。', 'lines'), (JINGYESI + '床前明月光，疑是地上霜。', 'lines'), ('𠀀𠀁𠀂𠀃𠀄，𠀅𠀆𠀇𠀈𠀉。', 'missing from the'),
])
def test_bad_input_gives_reasons(poem, why):
    r = R.score_poem(poem)
    assert any(why in x for x in r.reasons), r.reasons
    assert 0 <= r.total <= 100


def test_bad_input_zero_scores():
    for p in ('', 'no chinese here', None, 12345, [], ['', None]):
        r = R.score_poem(p)
        assert (r.tones, r.rhymes, r.antithesis, r.length, r.total) == (0, 0, 0, 0, 0)
    r = R.score_poem(JINGYESI, group='不存在的韵'); assert any('unknown rhyme group' in x for x in r.reasons)
    r = R.score_poem(JINGYESI, form='sonnet'); assert any('unknown form' in x for x in r.reasons) and r.form == '五绝'


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(st.text(), max_size=10)), st.one_of(st.none(), st.text(max_size=6)), st.one_of(st.none(), st.text(max_size=6), st.integers()))
def test_random_unicode_never_raises(poem, form, group):
    r = R.score_poem(poem, form=form, group=group, detail=True)
    for k in ('tones', 'rhymes', 'antithesis', 'length', 'total'): assert 0 <= getattr(r, k) <= 100
    R.parse_prompt(poem if isinstance(poem, str) else None)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('床前明月光疑是地上霜举头望低思故乡，。\n 国破山河在')), max_size=80))
def test_random_chinese_never_raises(poem):
    r = R.score_poem(poem, detail=True)
    assert 0 <= r.total <= 100


# ---- prompts and rewards ---------------------------------------------------------------------------------

@pytest.mark.parametrize('prompt,form,group,title', [
    ("请以'春风'为题创作一首五言绝句，押平水韵东韵", '五绝', '上平一东', '春风'),
    ("以《秋夜》为题，写一首七言律诗，押下平七阳韵。", '七律', '下平七阳', '秋夜'),
    ("請以「登樓」為題創作一首七言絕句，押平水韻十一尤韻", '七绝', '下平十一尤', '登樓'),
    ("写一首五律，押一东韵", '五律', '上平一东', None),
    ("写一首五言绝句，押入声九屑韵", '五绝', '入声九屑', None),
    ("写一首诗", None, None, None),
])
def test_parse_prompt(prompt, form, group, title):
    p = R.parse_prompt(prompt)
    assert (p['form'], p['group_label'], p['title']) == (form, group, title)


def test_rewards_trl_signature():
    prompts = ["请以'春望'为题创作一首五言律诗，押平水韵侵韵"] * 4
    comps = [f"<think>构思</think><answer>{CHUNWANG}</answer>", [{'role': 'assistant', 'content': CHUNWANG}], "不会", ""]
    tot = R.rhyme_reward(prompts, comps)
    assert len(tot) == 4 and all(isinstance(x, float) and 0 <= x <= 1 for x in tot)
    assert tot[0] == tot[1] > 0.9 and tot[3] == 0.0
    assert R.rhymes_reward(["五言律诗，押东韵"], [CHUNWANG]) == [0.0]
    assert R.rhymes_reward(["五言律诗，押东韵"], [CHUNWANG], rhyme_group=['侵']) == [1.0]
    conv_prompt = [[{'role': 'user', 'content': '写一首五言律诗，押侵韵'}]]
    assert R.rhyme_reward(conv_prompt, [CHUNWANG]) == tot[:1]
    for f in R.RHYME_REWARDS: assert len(f(prompts, comps, extra=[1, 2, 3, 4])) == 4


# ---- CLI ---------------------------------------------------------------------------------------------------

def run_cli(args, capsys):
    rc = R.cli_rhyme(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_help(capsys):
    assert R.cli_rhyme(['--help']) == 0 and 'knowlm-nb rhyme' in capsys.readouterr().out
    rc, _, err = run_cli(['frobnicate'], capsys)
    assert rc == 2 and 'invalid choice' in err


def test_cli_score_text_and_files(tmp_path, capsys):
    rc, out, _ = run_cli(['score', CHUNWANG, '--group', '侵'], capsys)
    assert rc == 0 and json.loads(out)['rhymes'] == 100.0
    f = tmp_path/'poems.json'
    f.write_text(json.dumps([{'title': '春望', 'author': '杜甫', 'paragraphs': ['國破山河在，城春草木深。', '感時花濺淚，恨別鳥驚心。'], 'tags': ['五言律诗']}], ensure_ascii=False), encoding='utf-8')
    rc, out, _ = run_cli(['score', str(f)], capsys)
    rec = json.loads(out); assert rc == 0 and rec['title'] == '春望' and rec['form'] == '五律' and rec['length'] == 50.0
    jl = tmp_path/'p.jsonl'; jl.write_text(json.dumps({'paragraphs': [JINGYESI]}, ensure_ascii=False) + '\n', encoding='utf-8')
    dest = tmp_path/'out.jsonl'
    rc, out, _ = run_cli(['score', str(jl), '--detail', '--out', str(dest)], capsys)
    assert rc == 0 and json.loads(dest.read_text(encoding='utf-8'))['grid'][0][0]['char'] == '床'
    txt = tmp_path/'p.txt'; txt.write_text(JINGYESI + '\n\n' + CHUNWANG + '\n', encoding='utf-8')
    rc, out, _ = run_cli(['score', str(txt)], capsys)
    assert rc == 0 and len(out.strip().splitlines()) == 2
    txt.write_bytes(JINGYESI.encode() + b'\n\n\xff\n')
    rc, _, err = run_cli(['score', str(txt)], capsys)
    assert rc == 2 and 'p.txt: not UTF-8 (byte offset' in err and len(err.splitlines()) == 1


# the CLI cases of the rhyme-rules issue: text and file kept apart, any length, any encoding, one-line errors
QILV11 = '，'.join(['风急天高猿啸哀'] * 11) + '。'  # an 11-line 七言 poem: far over 255 bytes


@pytest.mark.parametrize('text', [QILV11, '<answer>' + JINGYESI + '</answer>', 'a/b/' + JINGYESI, '../' + JINGYESI])
def test_cli_text_is_text(text, capsys):
    rc, out, err = run_cli(['score', text], capsys)
    assert rc == 0 and err == '' and json.loads(out)['lines'][0] in ('风急天高猿啸哀', '床前明月光')


@pytest.mark.parametrize('enc', ['utf-8', 'utf-8-sig', 'utf-16', 'gbk', 'gb18030', 'big5'])
def test_cli_file_encodings(tmp_path, capsys, enc):
    poem = '床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。' if enc == 'big5' else JINGYESI
    f = tmp_path/'poem.txt'; f.write_bytes(poem.encode(enc))
    for args in (['score', '--file', str(f)], ['score', str(f)]):  # an existing file as the positional is read as a file
        rc, out, err = run_cli(args, capsys)
        assert rc == 0 and json.loads(out)['lines'] == R.split_lines(poem), (enc, err)


def test_cli_named_encoding_and_bad_bytes(tmp_path, capsys):
    f = tmp_path/'poem.txt'; f.write_bytes(JINGYESI.encode('gbk'))
    rc, _, err = run_cli(['score', '--file', str(f), '--encoding', 'utf-8'], capsys)
    assert rc == 2 and 'poem.txt: not utf-8 (byte offset 0' in err and len(err.splitlines()) == 1
    rc, _, err = run_cli(['score', '--file', str(f), '--encoding', 'klingon'], capsys)
    assert rc == 2 and "unknown encoding 'klingon'" in err
    f.write_bytes(b'\xff\xfe\x00')  # a UTF-16 mark and half a character
    rc, _, err = run_cli(['score', '--file', str(f)], capsys)
    assert rc == 2 and 'poem.txt' in err and len(err.splitlines()) == 1


def test_cli_directory_and_missing(tmp_path, capsys):
    for args in (['score', str(tmp_path)], ['score', '--file', str(tmp_path)]):
        rc, _, err = run_cli(args, capsys)
        assert rc == 2 and 'is a directory' in err and len(err.splitlines()) == 1
    rc, _, err = run_cli(['score', '--file', str(tmp_path/'missing.txt')], capsys)
    assert rc == 2 and 'missing.txt: no such file' in err
    rc, out, _ = run_cli(['score', str(tmp_path/'missing.txt')], capsys)  # not a file: it is text, and has no Chinese in it
    assert rc == 0 and 'no Chinese characters to score' in json.loads(out)['reasons']
    for args, needle in ((['score'], 'no poem'), (['score', JINGYESI, '--file', 'x.txt'], 'not both')):
        rc, _, err = run_cli(args, capsys)
        assert rc == 2 and needle in err


def test_cli_stdin(monkeypatch, capsys):
    import io
    class Stdin:
        buffer = io.BytesIO((JINGYESI + '\n\n' + CHUNWANG).encode('gb18030'))
    monkeypatch.setattr('sys.stdin', Stdin())
    rc, out, _ = run_cli(['score', '--file', '-'], capsys)
    assert rc == 0 and [json.loads(l)['form'] for l in out.splitlines()] == ['五绝', '五律']


def test_cli_prints_named_faults(capsys):
    rc, out, _ = run_cli(['score', JINGYESI], capsys)
    assert rc == 0 and {'line': 3, 'pos': 2, 'char': '头', 'rule': '失粘'} in json.loads(out)['faults']
    rc, out, _ = run_cli(['score', '--reward', '--form', '七绝', DENGGAO], capsys)
    assert rc == 0 and json.loads(out)['total'] <= 20 and json.loads(out)['gate'] <= 0.2


@pytest.mark.parametrize('content,where', [
    ('{"paragraphs": ["床前明月光，疑是地上霜。"]}\n{"title": "x"}\n', ':2: missing field'),
    ('{"paragraphs": ["床前明月光"]}\n\n{bad json\n', ':3: invalid JSON'),
])
def test_cli_jsonl_errors_name_file_and_line(tmp_path, capsys, content, where):
    f = tmp_path/'bad.jsonl'; f.write_text(content, encoding='utf-8')
    rc, _, err = run_cli(['score', str(f)], capsys)
    assert rc == 2 and f"bad.jsonl{where}" in err, err


def test_cli_json_errors(tmp_path, capsys):
    f = tmp_path/'bad.json'; f.write_text('[\n{"paragraphs": ["x"]},\n{"paragraphs": ]\n', encoding='utf-8')
    rc, _, err = run_cli(['score', str(f)], capsys)
    assert rc == 2 and 'bad.json:3' in err
    f.write_text('[{"title": "no paragraphs"}]', encoding='utf-8')
    rc, _, err = run_cli(['score', str(f)], capsys)
    assert rc == 2 and "record 0: missing field 'paragraphs'" in err
    rc, _, err = run_cli(['score', '--file', str(tmp_path/'missing.json')], capsys)
    assert rc == 2 and 'no such file' in err
    rc, _, err = run_cli(['score', JINGYESI, '--group', '不存在'], capsys)
    assert rc == 2 and err == "knowlm-nb rhyme: error: unknown rhyme group '不存在': e.g. 东, 一东, 上平一东, 下平七阳\n"
    rc, _, err = run_cli(['score', JINGYESI, '--form', 'sonnet'], capsys)
    assert rc == 2 and err.startswith("knowlm-nb rhyme: error: unknown form 'sonnet': use one of") and len(err.splitlines()) == 1


def test_cli_eval_without_data(tmp_path, capsys):
    rc, _, err = run_cli(['eval', '--data', str(tmp_path)], capsys)
    assert rc == 2 and 'no chinese-poetry data' in err


def test_pipeline_stage(tmp_path):
    from knowlm_nb.core import Report
    rep = Report(tmp_path)
    R.pipeline_rhyme(rep, {'out': tmp_path, 'seed': 0, 'poetry': str(tmp_path/'none')})
    text = rep.write().read_text(encoding='utf-8')
    assert '## Rhyme and metre' in text and (tmp_path/'rhyme'/'famous.json').exists()


# ---- the shared corpus and reference table ----------------------------------------------------------------

@needs_pingshui
def test_coverage_and_agreement_with_reference_table():
    ref = json.loads(PINGSHUI.read_text(encoding='utf-8'))['chars']
    T = R.pingshui_table()
    both = [c for c in T.readings if c in ref]
    pz = lambda rs: {r['pingze'] for r in rs}
    ours = lambda c: set(T.pingze(c))
    same_pz = sum(ours(c) == pz(ref[c]) for c in both) / len(both)
    overlap = sum(bool({g.idx for g in T.groups_of(c)} & {r['ps_idx'] for r in ref[c]}) for c in both) / len(both)
    sup = [c for c, s in T.source.items() if s == 'supplement' and c in ref]
    sup_ok = sum(bool(ours(c) & pz(ref[c])) for c in sup) / len(sup)
    print(f"table {len(T)} chars, {len(both)} in the reference; same 平/仄 set {same_pz:.4f}, a shared group {overlap:.4f}; supplement compatible {sup_ok:.3f}")
    assert same_pz > 0.90 and overlap > 0.98 and sup_ok > 0.95


@needs_poetry
@needs_pingshui
def test_corpus_token_coverage_and_agreement():
    ref = json.loads(PINGSHUI.read_text(encoding='utf-8'))['chars']
    T = R.pingshui_table()
    poems = R.load_poems(POETRY/'tangshi300_quantangshi.json')
    text = R.to_simplified(''.join(''.join(p['paragraphs']) for p in poems))
    han = [c for c in R.split_lines(text) for c in c if R.is_han(c)]
    unknown = sum(c not in T.mask for c in han) / len(han)
    T0 = R.pingshui_table(supplement=False)
    unknown0 = sum(c not in T0.mask for c in han) / len(han)
    tok = [c for c in han if c in T.mask and c in ref]
    agree = sum(set(T.pingze(c)) == {r['pingze'] for r in ref[c]} for c in tok) / len(tok)
    print(f"唐诗三百首 (t2s): unknown {unknown0:.4%} without the supplement, {unknown:.4%} with it; token 平/仄 agreement {agree:.4f}")
    assert unknown0 > 0.005 and unknown < 0.001 and agree > 0.95


@needs_poetry
def test_corpus_subset_evaluation(capsys):
    rows = R.evaluate_corpus(POETRY, limit=150)
    assert {r['dataset'] for r in rows} == {'唐诗三百首', '全唐诗'}
    for r in rows:
        if r['protocol'] == 'model card': continue
        assert r['total'] == pytest.approx(0.4*r['tones'] + 0.3*r['rhymes'] + 0.2*r['antithesis'] + 0.1*r['length'], abs=0.02)
        assert r['tones'] > 60 and r['rhymes'] > 80  # real Tang poems mostly obey the rules
    reg = [r for r in rows if r['protocol'].startswith('regular')]
    assert all(r['length'] == 100.0 for r in reg)
    rc = R.cli_rhyme(['eval', '--data', str(POETRY), '--limit', '40'])
    assert rc == 0 and '| 全唐诗 | model card |' in capsys.readouterr().out


@needs_poetry
def test_mengxue_layout_strips_notes():
    poems = R.load_poems(POETRY/'tangshi300_mengxue.json')
    assert len(poems) == 320 and sum(p['form'] is not None for p in poems) > 200
    lines = [l for p in poems for l in R.split_lines(p['paragraphs'])]
    assert not any(ch in l for l in lines for ch in '()（）：')


@needs_poetry
def test_fast_fit_matches_reference_fit_on_corpus():
    T = R.pingshui_table()
    poems = R.load_poems(POETRY/'tangshi300_quantangshi.json')
    n = 0
    for p in poems:
        for line in R.split_lines(p['paragraphs']):
            masks = [T.mask.get(c, 0) for c in line]
            C = 7 if len(line) >= 6 else 5
            for s in (R.PING, R.ZE):
                for e in (R.PING, R.ZE):
                    pat = R.line_pattern(C, s, e)
                    for lo in (True, False):
                        assert R.fit_line_fast(masks, pat, lo) == R.fit_line(masks, pat, lo)[:2], (line, pat, lo)
                        n += 1
    assert n > 10000


def test_fit_table_matches_reference_fit_on_every_code():
    "The precomputed per-code fits that `score_poem` sums are the reference `fit_line` numbers, for every tone code of 5 and 7 characters."
    kinds = [(s, e) for s in (R.PING, R.ZE) for e in (R.PING, R.ZE)]
    for C in (5, 7):
        for lo in (True, False):
            tab = R.fit_table(C, lo)
            assert len(tab) == 4 ** C
            for code, packed in tab.items():
                masks = [int(ch) for ch in code]
                ref = [R.fit_line(masks, R.line_pattern(C, s, e), lo)[:2] for s, e in kinds]
                assert [(v & 0xffffffff, v >> 32) for v in packed] == ref, (code, lo)


def test_cached_and_cold_scores_agree():
    R.clear_caches()
    cold = [R.score_poem(p).as_dict() for p in (CHUNWANG, DENGGAO, JINGYESI, JIANGXUE, DENGGAO + JINGYESI)]
    warm = [R.score_poem(p).as_dict() for p in (CHUNWANG, DENGGAO, JINGYESI, JIANGXUE, DENGGAO + JINGYESI)]
    assert cold == warm


# ---- the hand-checked table: real Tang poems, every character's verdict and named rule ------------------

from rhyme_cases import CASES


def _got(c):
    r = R.score_poem(c['poem'], form=c['form'], group=c['group'], detail=True)
    faults = [''.join('x' if cell['verdict'] in ('bad', 'unknown') or cell['rhyme'] in ('出韵', '重韵') else '-' for cell in row) for row in r.grid]
    rules = {f'{i},{j}': (cell['rhyme'] if cell['rhyme'] in ('出韵', '重韵') else cell['rule'])
             for i, row in enumerate(r.grid) for j, cell in enumerate(row) if cell['rule'] or cell['rhyme'] in ('出韵', '重韵')}
    rhyme = {str(i): row[-1]['rhyme'] for i, row in enumerate(r.grid) if row and row[-1]['rhyme']}
    return r, faults, rules, rhyme


def test_case_table_covers_every_rule():
    assert len(CASES) >= 40
    seen = {}
    for c in CASES:
        for rule in {*c['rules'].values(), *c.get('alt_rules', {}).values(), *c['rhyme'].values(), c['rule']}: seen[rule] = seen.get(rule, 0) + 1
    for rule in ('特殊句式', '孤平', '孤平自救', '三平尾', '对句相救', '拗而未救', '失粘', '失对', '平仄', '出韵', '重韵', 'hit'):
        assert seen.get(rule, 0) >= 2, rule
    assert sum(1 for c in CASES if R.resolve_group(c['group']) and R.resolve_group(c['group']) > 30) >= 2  # 仄韵
    assert sum(1 for c in CASES if '[' in c['poem']) >= 2  # bracketed restored characters


@pytest.mark.parametrize('case', CASES, ids=[c['id'] for c in CASES])
def test_hand_checked_case(case):
    r, faults, rules, rhyme = _got(case)
    assert faults == case['faults'], (r.lines, faults)
    alt = case.get('alt_rules', {})
    assert set(rules) == set(case['rules']) and all(rules[k] in (v, alt.get(k)) for k, v in case['rules'].items()), rules
    assert rhyme == case['rhyme']
    n_x = sum(f.count('x') for f in faults)
    assert len(r.faults) == n_x + sum(1 for row in r.grid for cell in row if cell['verdict'] in ('bad', 'unknown') and cell['rhyme'] in ('出韵', '重韵'))


def test_rhyme_demo_builds_under_any_backend_and_takes_empty_input():
    "Built with the Agg backend (no inline display), then given an empty poem and unscorable text: messages, no exception."
    import matplotlib
    matplotlib.use('Agg')
    from knowlm_nb.rhyme import rhyme_demo
    d = rhyme_demo()
    d.children[0].value = ''
    d.children[0].value = 'abc'
    d.children[0].value = '床前明月光，疑是地上霜。举头望明月，低头思故乡。'


def test_cli_empty_file_is_no_poem(tmp_path, capsys):
    "An empty file, or one of blank lines only, is bad input: exit 2 with one line naming the file, not exit 0 and silence."
    for name, text in (('empty.txt', ''), ('blank.txt', '\n  \n\t\n\u3000\n'), ('empty.jsonl', '\n\n'), ('empty.json', '[]')):
        f = tmp_path/name
        f.write_text(text, encoding='utf-8')
        for args in (['score', '--file', str(f)], ['score', str(f)], ['score', '--file', str(f), '--out', str(tmp_path/'out.jsonl')]):
            rc, out, err = run_cli(args, capsys)
            assert (rc, out) == (2, '') and len(err.splitlines()) == 1 and str(f) in err and 'no poem' in err, (args, rc, out, err)
    assert not (tmp_path/'out.jsonl').exists()


def test_group_of_non_decimal_digits_is_unknown_not_a_crash():
    "'²' is a digit to str.isdigit but int() refuses it (found by test_random_unicode_never_raises); full-width digits still name a group."
    assert [R.resolve_group(g) for g in ('²', '１２', '12')] == [None, 12, 12]
    assert R.score_poem(['㐀'], group='²').total >= 0
