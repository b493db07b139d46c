"""Reference numbers (only those of paper_numbers.md), paper tables beside ours, claims check."""
import json
import os
import re
from pathlib import Path

import pytest

from jsdlib.experiments import tables

ROOT = Path(__file__).resolve().parent.parent
MAIN_JOB = ROOT / "notebooks" / "results" / "reproduce_cpu" / "results.json"   # the one source the notebooks read


def _spec_numbers():
    for base in (os.environ.get("JSDLIB_SPEC"), ROOT.parent / "shared" / "spec", Path("/work/shared/spec")):
        if base and (Path(base) / "paper_numbers.md").is_file():
            return (Path(base) / "paper_numbers.md").read_text()
    pytest.skip("paper_numbers.md (the project's spec) is not on this machine; set JSDLIB_SPEC to its folder")


def test_every_reference_value_is_quoted_from_paper_numbers():
    text = _spec_numbers()
    ref = tables.load_reference()
    known = ref[ref.value_text != ""]
    assert len(known) >= 20
    for _, r in known.iterrows():
        num = re.sub(r"[^0-9.]", "", r["value_text"])
        assert num and re.search(rf"(?<![0-9.]){re.escape(num)}(?![0-9])", text), (r["row"], r["value_text"])
        assert r["source"], r["row"]
    # the cells the spec lists as unknown are stored as missing
    t1 = ref[(ref.table == "table1") & (ref.row == "VisualSparta")]
    assert len(t1) == 6 and t1.value.isna().all()


def test_tables_from_the_committed_compare_result():
    res = json.loads(MAIN_JOB.read_text())["results"]["jsd_compare"]
    t1 = tables.jsd_table1(res)
    assert t1.loc["jsd_sparse / JSD sparse (BLIP)", "paper coco5k R@1"] == "57.6 (secondary)"
    assert t1.loc["VisualSparta", "paper flickr1k R@5"] == tables.DASH
    ours = [c for c in t1.columns if c.startswith("ours") and c.endswith("R@1")][0]
    assert "emoji test" in ours
    m = res["methods"]["jsd_sparse"]["t2i"]["R@1"]
    assert t1.loc["jsd_sparse / JSD sparse (BLIP)", ours] == f"{m['mean']:.1f} ± {m['std']:.1f}"
    t3 = tables.jsd_table3(res)
    assert t3.loc["jsd_frozen_final / frozen final layer", "paper flickr1k R@1"] == tables.DASH
    md = tables.to_markdown(tables.jsd_table2(res), "method")
    n_rows = sum(k in res["methods"] for k, _ in tables._T2)     # the authors' integrated row: runs since issue 13
    assert n_rows >= 4 and md.count("\n") == 1 + n_rows and "58.7 (secondary)" in md


def test_claims_are_orderings_on_our_numbers():
    res = json.loads(MAIN_JOB.read_text())["results"]["jsd_compare"]
    c = tables.jsd_claims(res)
    m = {n: v["t2i"]["R@1"]["mean"] for n, v in res["methods"].items()}
    d2s, first = tables.d2s_key(res), tables.jsd_claim_list(res)[0][0]
    assert (c.loc[first, "verdict"] == "holds") == (m["jsd_sparse"] > m[d2s])
    assert (c.loc["JSD sparse >= dense original (comparable or better)", "verdict"] == "holds") == (
        m["jsd_sparse"] >= m["dense_original"])
    assert c.loc[first, "p"] == f"{res['tests'][f'jsd_sparse_vs_{d2s}']['p']:.2g}"
    # flip a result: the verdict follows the numbers
    res["methods"][d2s]["t2i"]["R@1"]["mean"] = 99.0
    assert tables.jsd_claims(res).loc[first, "verdict"] == "does not hold"


def test_the_d2s_row_is_the_matched_one_where_the_run_has_it():
    """The main job's D2S row is FLOPs-matched since issue 13 (`d2s_matched`); results with the constant-L1 `d2s`
    row keep their claim text and table rows."""
    res = json.loads(MAIN_JOB.read_text())["results"]["jsd_compare"]
    d2s = tables.d2s_key(res)
    old = {**res, "methods": {("d2s" if k == d2s else k): v for k, v in res["methods"].items()},
           "tests": {k.replace(d2s, "d2s"): v for k, v in res["tests"].items()}}
    new = {**old, "methods": {("d2s_matched" if k == "d2s" else k): v for k, v in old["methods"].items()},
           "tests": {k.replace("_d2s", "_d2s_matched"): v for k, v in old["tests"].items()}}
    assert tables.d2s_key(old) == "d2s" and tables.d2s_key(new) == "d2s_matched"
    assert tables.jsd_claim_list(old)[0] == ("JSD sparse > D2S", "jsd_sparse", ">", "d2s")
    assert tables.epoch_rule(new, "d2s_matched") == "epoch in band"       # the committed main job's searches
    assert tables.jsd_claim_list(new)[0] == ("JSD sparse > D2S (D2S loss, JSD recipe, FLOPs matched, epoch in band)",
                                             "jsd_sparse", ">", "d2s_matched")
    for ps in new["methods"]["d2s_matched"]["per_seed"]:    # selected over all epochs (make fidelity's rule)
        ps["flops_match"] = {**ps["flops_match"], "select_in_band": False}
    assert tables.jsd_claim_list(new)[0][0].endswith("FLOPs matched, any epoch)")
    new["methods"]["d2s_matched"]["per_seed"][0]["flops_match"]["select_in_band"] = True
    assert tables.epoch_rule(new, "d2s_matched") == "epoch rule mixed" and tables.epoch_rule(new, "jsd_sparse") is None
    assert [c[1:] for c in tables.jsd_claim_list(new)[1:]] == [c[1:] for c in tables.JSD_CLAIMS[1:]]
    assert list(tables.jsd_claims(new)["p"]) == list(tables.jsd_claims(old)["p"])
    assert "d2s_matched / D2S (BLIP)" in tables.jsd_table1(new).index
    assert "d2s / D2S (BLIP)" in tables.jsd_table1(old).index


def test_reference_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="reference table not found"):
        tables.load_reference(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("paper,table,row,dataset,metric,value,source,note\nJSD,t,r,d,m,1.0,,\n")
    with pytest.raises(ValueError, match="has no source tag"):
        tables.load_reference(bad)


def _cmc_result(be16, cmc16, be_acc, cmc_ce_acc, ms):
    """A minimal ``cmc.compare`` result: the metrics the claims read (mean only; std 0)."""
    ms_of = {"be": 1.0, "be_ce": ms["be_ce"], "be_cmc": 5.0, "be_cmc_ce": ms["be_cmc_ce"], "cmc_final": ms["cmc_final"]}
    pl = {}
    for n in ("be", "be_ce", "be_cmc", "be_cmc_ce", "cmc_final"):
        cm = n in ("be_cmc", "be_cmc_ce")
        vals = {"R@1": 30.0, "R@16": cmc16 if cm else be16, "R@64": (cmc16 if cm else be16) + 10,
                "acc_unnorm": {"be_ce": be_acc, "be_cmc_ce": cmc_ce_acc}.get(n, 30.0), "ms_per_query": ms_of[n]}
        pl[n] = {k: {"mean": v, "std": 0.0} for k, v in vals.items()}
    return {"pipelines": pl, "tests": {"be_cmc_vs_be_R@16": {"p": 0.01}}}


def test_cmc_claims_are_orderings_with_the_paper_value_beside_them():
    res = {"wordnet": _cmc_result(60.0, 64.0, 70.0, 69.0, {"be_ce": 100.0, "be_cmc_ce": 105.0, "cmc_final": 2.0})}
    speed = {"claims": {"cmc_at_max_vs_ce_at_16": {"n": 10000, "ratio": 75.0}}}
    df = tables.cmc_claims(res, speed)
    row = df.loc["[wordnet] BE-CMC raises R@16 over the BE (= BE-CMC-CE vs BE-CE R@16)"]
    assert row["verdict"] == "holds" and row["p"] == "0.01" and "+4.0" in row["ours"]
    assert row["paper"].startswith("6.7 ")                          # the reference value, from reference.csv
    assert df.loc["[wordnet] BE-CMC-CE beats BE-CE (macro top-1 accuracy; p on per-query top-1)", "verdict"] \
        == "does not hold"                                          # 69 < 70
    assert df.loc["[wordnet] BE-CMC-CE costs < 7 % more time than BE-CE", "verdict"] == "holds"   # +5 %
    assert df.loc["[wordnet] CMC as the final reranker is faster than the CE (same K')", "ours"] == "50.0x"
    speed_row = df.loc["[speed] CMC over 10,000 candidates takes about as long as the CE over 16"]
    assert speed_row["verdict"] == "does not hold" and speed_row["paper"].startswith("about 1")
    # claims we cannot measure offline are listed, not judged
    assert (df.loc[df.ours.str.startswith("not run")].verdict == tables.DASH).all()
    assert tables.to_markdown(df, "claim").count("\n") == len(df) + 1


def test_cmc_claims_without_cross_encoder_rows_say_not_run():
    r = _cmc_result(76.0, 73.0, 0.0, 0.0, {"be_ce": 1.0, "be_cmc_ce": 1.0, "cmc_final": 1.0})
    for n in ("be_ce", "be_cmc_ce"):
        del r["pipelines"][n]
    r["ce"] = {"skipped": True, "note": "no image CE above chance"}
    df = tables.cmc_claims({"emoji": r})
    assert df.loc["[emoji] BE-CMC raises R@16 over the BE (= BE-CMC-CE vs BE-CE R@16)", "verdict"] == "does not hold"
    row = df.loc["[emoji] BE-CMC-CE beats BE-CE; CMC-final faster than the CE"]
    assert row["verdict"] == tables.DASH and "no image CE above chance" in row["ours"]


def test_per_seed_claims_read_each_seed_beside_the_pooled_p():
    from jsdlib.experiments.tables import per_seed_claims, seed_reading

    t = per_seed_claims([("a > b", [2.0, 1.0, 0.5], ">", [1.0, 1.5, 0.0], 0.01),
                         ("c >= d", [1.0, 1.0], ">=", [1.0, 1.0], 0.5)][:1], seeds=[0, 1, 2])
    row = t.loc["a > b"]
    assert (row["seed 0"], row["seed 1"], row["seed 2"]) == ("+1.0 yes", "-0.5 no", "+0.5 yes")
    assert row["holds at"] == "2 of 3 seeds" and row["reading"] == "mixed" and row["n_hold"] == 2
    assert seed_reading(3, 3, 0.01) == "every seed, p < 0.05" and seed_reading(3, 3, 0.2) == "every seed, but p = 0.2"
    assert seed_reading(0, 3, 0.001) == "no seed"
    with pytest.raises(ValueError, match="values for 3 seeds"):
        per_seed_claims([("x", [1.0], ">", [0.0], 0.1)], seeds=[0, 1, 2])
