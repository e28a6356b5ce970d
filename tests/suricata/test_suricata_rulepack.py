"""The rule pack's own invariants: sids, revs, metadata, released.json, the tarball."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tarfile

import pytest

from msewatch.suricata import rules as rp
from suri import RULES_DIR


@pytest.fixture()
def pack():
    return rp.load_rules(RULES_DIR)


def test_pack_has_rules_in_both_files(pack):
    files = {r.file for r in pack}
    assert files == {"msewatch.rules", "msewatch-lua.rules"}
    assert all(r.enabled for r in pack if r.file == "msewatch.rules")
    # Lua rules ship disabled: Suricata 7 refuses them unless security.lua.allow-rules is on
    assert not any(r.enabled for r in pack if r.file == "msewatch-lua.rules")


def test_sids_unique_and_in_private_range(pack):
    sids = [r.sid for r in pack]
    assert len(sids) == len(set(sids))
    assert all(rp.SID_MIN <= s <= rp.SID_MAX for s in sids)


def test_every_rule_has_classtype_rev_and_et_metadata(pack):
    for r in pack:
        assert r.rev is not None and r.rev >= 1, r.sid
        assert r.classtype == "policy-violation", r.sid
        for key in rp.REQUIRED_METADATA:
            assert key in r.metadata, (r.sid, key)
        assert r.metadata["confidence"][0] in ("Low", "Medium", "High")
        assert r.metadata["signature_severity"][0] in ("Informational", "Minor", "Major", "Critical")
        for key in ("created_at", "updated_at"):
            dt.datetime.strptime(r.metadata[key][0], "%Y_%m_%d")


def test_lint_is_clean(pack):
    assert rp.lint(pack) == []


def test_readme_documents_every_sid(pack):
    readme = (RULES_DIR / "README.md").read_text()
    for r in pack:
        assert str(r.sid) in readme, f"sid {r.sid} missing from suricata-rules/README.md"


def test_no_rule_changed_without_a_rev_bump(pack):
    released = rp.load_released(RULES_DIR)
    assert released, "suricata-rules/released.json is missing: run `msewatch rules release`"
    assert rp.check_revs(pack, released) == []
    missing = [r.sid for r in pack if r.sid not in released]
    assert not missing, f"sids {missing} never released: run `msewatch rules release`"


def test_rev_check_catches_an_edit_without_rev_and_release_bumps_it(tmp_path):
    d = tmp_path / "rules"
    shutil.copytree(RULES_DIR, d)
    path = d / "msewatch.rules"
    text = path.read_text()
    edited = text.replace('content:"|13|BitTorrent protocol"; depth:20; flowbits:set,msewatch.bt.plain; flowbits:isnotset',
                          'content:"|13|BitTorrent protocol"; depth:20; offset:0; flowbits:set,msewatch.bt.plain; flowbits:isnotset', 1)
    assert edited != text
    path.write_text(edited)
    rules = rp.load_rules(d)
    problems = rp.check_revs(rules, rp.load_released(d))
    assert len(problems) == 1 and "9470001" in problems[0] and "rev" in problems[0]
    with pytest.raises(rp.RulePackError, match="9470001"):
        rp.build(tmp_path / "dist", d)
    bumped = rp.release(d, today=dt.date(2031, 2, 3))
    assert bumped == [9470001]
    r = next(r for r in rp.load_rules(d) if r.sid == 9470001)
    old = rp.load_released(RULES_DIR)[9470001]["rev"]
    assert r.rev == old + 1 and r.metadata["updated_at"] == ["2031_02_03"]
    assert rp.check_revs(rp.load_rules(d), rp.load_released(d)) == []
    assert json.loads((d / "released.json").read_text())["rules"]["9470001"]["rev"] == old + 1


def test_build_writes_versioned_tarball_with_md5(tmp_path):
    path = rp.build(tmp_path)
    ver = (RULES_DIR / "VERSION").read_text().strip()
    assert path.name == f"suricata-rules-msewatch-{ver}.tar.gz"
    md5 = (tmp_path / (path.name + ".md5")).read_text().strip()
    assert md5 == hashlib.md5(path.read_bytes()).hexdigest()
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert "rules/msewatch.rules" in names and "rules/msewatch-lua.rules" in names
        assert "rules/msewatch-mse.lua" in names  # beside the rules: lua: names resolve there
        body = tar.extractfile("rules/msewatch.rules").read()
    assert body == (RULES_DIR / "msewatch.rules").read_bytes()


def test_build_is_reproducible(tmp_path):
    a = rp.build(tmp_path / "a").read_bytes()
    b = rp.build(tmp_path / "b").read_bytes()
    assert a == b


def test_main_rules_build_prints_paths(tmp_path, capsys):
    assert rp.main_rules(["build", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert out[0].endswith(".tar.gz") and out[1].endswith(".tar.gz.md5")
    assert rp.main_rules(["check"]) == 0
