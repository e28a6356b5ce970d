"""The msewatch Suricata rule pack: parse, check, release and build the distributable tarball.

``build(out_dir)`` writes ``suricata-rules-msewatch-<version>.tar.gz`` (``rules/*.rules`` plus the
Lua scripts beside them, because Suricata resolves ``lua:`` names against the rule directory) and
its ``.md5`` (the bare hex digest suricata-update fetches from ``<url>.md5``).

``released.json`` records, per sid, the rev and the sha256 of the rule text without its rev as
last released. ``check_revs`` names every rule whose text moved while its rev did not;
``release`` bumps those revs (and ``updated_at``) and rewrites ``released.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

SID_MIN, SID_MAX = 9470000, 9470999
RULE_FILES = ("msewatch.rules", "msewatch-lua.rules")
REQUIRED_METADATA = ("created_at", "updated_at", "confidence", "signature_severity")
PACK_NAME = "suricata-rules-msewatch"
# reference types every stock Suricata reference.config has; the pack only uses url
REFERENCE_TYPES = {"url", "cve", "bugtraq", "md5", "nessus"}

_RULE_START = re.compile(r"^\s*(#\s*)?(alert|drop|reject|pass|rejectsrc|rejectdst|rejectboth)\s+\S+\s")
_REV = re.compile(r"\s*\brev\s*:\s*(\d+)\s*;")


class RulePackError(Exception):
    """The rule pack is malformed or inconsistent; the message names the rule and the fix."""


def default_rules_dir() -> Path:
    """$MSEWATCH_RULES_DIR, else the pack installed with msewatch (or the checkout's)."""
    env = os.environ.get("MSEWATCH_RULES_DIR")
    if env:
        return Path(env)
    from ..assets import AssetError, rules_dir

    try:
        return rules_dir()
    except AssetError as e:
        raise RulePackError(str(e)) from None


def require_rules(rules_dir: Path) -> list[Rule]:
    """The pack's rules; RulePackError (one line) when the folder is missing or holds none."""
    if not rules_dir.exists():
        raise RulePackError(f"rules folder {rules_dir} does not exist")
    if not rules_dir.is_dir():
        raise RulePackError(f"rules folder {rules_dir} is not a directory")
    rules = load_rules(rules_dir)
    if not rules:
        raise RulePackError(f"no rules found in {rules_dir} (expected {' or '.join(RULE_FILES)} with alert rules)")
    return rules


@dataclass(frozen=True)
class Rule:
    file: str
    line_no: int
    text: str  # the rule as written, without the leading '# ' of a disabled rule
    enabled: bool
    sid: int
    rev: int | None
    classtype: str | None
    msg: str | None
    metadata: dict[str, list[str]] = field(default_factory=dict)
    references: tuple[str, ...] = ()  # "url,www.bittorrent.org/beps/bep_0003.html"
    threshold: str | None = None

    @property
    def text_without_rev(self) -> str:
        return _REV.sub("", self.text)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text_without_rev.encode()).hexdigest()

    @property
    def noalert(self) -> bool:
        return re.search(r"flowbits\s*:\s*noalert\s*;", self.text) is not None


def _options(text: str) -> list[tuple[str, str]]:
    """Split a rule's option list into (keyword, value) pairs, honouring quotes and escapes."""
    start = text.find("(")
    end = text.rfind(")")
    if start < 0 or end < start:
        raise RulePackError(f"no option list in rule: {text[:80]}")
    body = text[start + 1:end]
    out, cur, in_q, esc = [], [], False, False
    for ch in body:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            cur.append(ch)
            esc = True
        elif ch == '"':
            cur.append(ch)
            in_q = not in_q
        elif ch == ";" and not in_q:
            opt = "".join(cur).strip()
            if opt:
                k, _, v = opt.partition(":")
                out.append((k.strip(), v.strip()))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        raise RulePackError(f"option list does not end with ';': {text[:80]}")
    return out


def parse_rule(line: str, file: str = "?", line_no: int = 0) -> Rule | None:
    m = _RULE_START.match(line)
    if not m:
        return None
    enabled = m.group(1) is None
    text = line.strip()
    if not enabled:
        text = re.sub(r"^#\s*", "", text)
    opts = _options(text)
    get = {}
    metadata: dict[str, list[str]] = {}
    references: list[str] = []
    for k, v in opts:
        if k == "reference":
            references.append(v)
        elif k == "metadata":
            for item in v.split(","):
                item = item.strip()
                if item:
                    mk, _, mv = item.partition(" ")
                    metadata.setdefault(mk, []).append(mv.strip())
        else:
            get.setdefault(k, v)
    if "sid" not in get:
        raise RulePackError(f"{file}:{line_no}: rule without sid")
    msg = get.get("msg")
    return Rule(
        file=file, line_no=line_no, text=text, enabled=enabled, sid=int(get["sid"]),
        rev=int(get["rev"]) if "rev" in get else None, classtype=get.get("classtype"),
        msg=msg.strip('"') if msg else None, metadata=metadata, references=tuple(references),
        threshold=get.get("threshold"),
    )


def load_rules(rules_dir: Path | None = None) -> list[Rule]:
    rules_dir = rules_dir or default_rules_dir()
    rules: list[Rule] = []
    for name in RULE_FILES:
        path = rules_dir / name
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            r = parse_rule(line, name, n)
            if r is not None:
                rules.append(r)
    return rules


def lint(rules: list[Rule]) -> list[str]:
    """Everything wrong with the pack as messages; empty when it is fine."""
    problems = []
    seen: dict[int, Rule] = {}
    for r in rules:
        where = f"{r.file}:{r.line_no} sid {r.sid}"
        if r.sid in seen:
            problems.append(f"{where}: duplicate sid (also {seen[r.sid].file}:{seen[r.sid].line_no})")
        seen[r.sid] = r
        if not SID_MIN <= r.sid <= SID_MAX:
            problems.append(f"{where}: sid outside {SID_MIN}-{SID_MAX}")
        if r.rev is None:
            problems.append(f"{where}: no rev")
        if not r.classtype:
            problems.append(f"{where}: no classtype")
        if not r.msg or not r.msg.startswith("MSEWATCH "):
            problems.append(f"{where}: msg must start with 'MSEWATCH '")
        for key in REQUIRED_METADATA:
            if key not in r.metadata:
                problems.append(f"{where}: metadata lacks {key}")
        if not r.noalert and not r.references:
            problems.append(f"{where}: an alerting rule needs a reference: (the BEP or the MSE spec)")
        for ref in r.references:
            kind, _, target = ref.partition(",")
            if kind.strip() not in REFERENCE_TYPES or not target.strip():
                problems.append(f"{where}: reference {ref!r} must be one of {sorted(REFERENCE_TYPES)},<target>")
        for key in ("created_at", "updated_at"):
            for v in r.metadata.get(key, []):
                if not re.fullmatch(r"\d{4}_\d{2}_\d{2}", v):
                    problems.append(f"{where}: {key} {v!r} is not YYYY_MM_DD")
    return problems


def load_released(rules_dir: Path | None = None) -> dict[int, dict]:
    path = (rules_dir or default_rules_dir()) / "released.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RulePackError(f"{path}: cannot read: {e}") from None
    return {int(sid): v for sid, v in data.get("rules", {}).items()}


def check_revs(rules: list[Rule], released: dict[int, dict]) -> list[str]:
    """Rules whose text changed since the release but whose rev did not move forward."""
    problems = []
    for r in rules:
        old = released.get(r.sid)
        if old is None:
            continue
        if r.rev is None or r.rev < old["rev"]:
            problems.append(f"sid {r.sid}: rev {r.rev} is below the released rev {old['rev']}")
        elif r.digest != old["sha256"] and r.rev == old["rev"]:
            problems.append(f"sid {r.sid}: rule text changed but rev is still {r.rev}; run `msewatch rules release`")
    return problems


def version(rules_dir: Path | None = None) -> str:
    path = (rules_dir or default_rules_dir()) / "VERSION"
    try:
        return path.read_text().strip()
    except OSError as e:
        raise RulePackError(f"{path}: cannot read the pack version: {e.strerror}") from None


def release(rules_dir: Path | None = None, today: _dt.date | None = None) -> list[int]:
    """Bump rev and updated_at of every changed rule, then record the pack in released.json.

    Returns the sids whose rev was bumped.
    """
    rules_dir = rules_dir or default_rules_dir()
    require_rules(rules_dir)
    stamp = (today or _dt.date.today()).strftime("%Y_%m_%d")
    released = load_released(rules_dir)
    bumped: list[int] = []
    for name in RULE_FILES:
        path = rules_dir / name
        if not path.exists():
            continue
        lines = path.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            r = parse_rule(line, name, i + 1)
            if r is None:
                continue
            old = released.get(r.sid)
            if old and r.digest != old["sha256"] and r.rev == old["rev"]:
                new = _REV.sub(f" rev:{r.rev + 1};", line, count=1)
                new = re.sub(r"updated_at \d{4}_\d{2}_\d{2}", f"updated_at {stamp}", new)
                lines[i] = new
                bumped.append(r.sid)
        path.write_text("".join(lines))
    rules = load_rules(rules_dir)
    problems = lint(rules)
    if problems:
        raise RulePackError("cannot release:\n  " + "\n  ".join(problems))
    data = {
        "version": version(rules_dir),
        "rules": {str(r.sid): {"rev": r.rev, "sha256": r.digest} for r in sorted(rules, key=lambda r: r.sid)},
    }
    (rules_dir / "released.json").write_text(json.dumps(data, indent=2) + "\n")
    return bumped


def _tar_add(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build(out_dir: Path | str, rules_dir: Path | None = None) -> Path:
    """Write suricata-rules-msewatch-<version>.tar.gz (+ .md5) into out_dir; return the tarball.

    Refuses to build a pack that fails the lint or the rev check. The archive is reproducible:
    sorted members, mtime 0, root ownership, gzip header without a timestamp.
    """
    rules_dir = Path(rules_dir) if rules_dir else default_rules_dir()
    rules = require_rules(rules_dir)
    problems = lint(rules) + check_revs(rules, load_released(rules_dir))
    if problems:
        raise RulePackError("rule pack is not releasable:\n  " + "\n  ".join(problems))
    ver = version(rules_dir)
    members: list[tuple[str, bytes]] = []
    for name in RULE_FILES:
        if (rules_dir / name).exists():
            members.append((f"rules/{name}", (rules_dir / name).read_bytes()))
    lua_dir = rules_dir / "lua"
    if lua_dir.is_dir():
        for p in sorted(lua_dir.glob("*.lua")):
            members.append((f"rules/{p.name}", p.read_bytes()))
    for extra in ("VERSION", "README.md", "CHANGELOG.md"):
        if (rules_dir / extra).exists():
            members.append((f"rules/msewatch-{extra}", (rules_dir / extra).read_bytes()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tar_path = out / f"{PACK_NAME}-{ver}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, data in sorted(members):
            _tar_add(tar, arcname, data)
    with open(tar_path, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
            gz.write(raw.getvalue())
    digest = hashlib.md5(tar_path.read_bytes()).hexdigest()
    Path(str(tar_path) + ".md5").write_text(digest + "\n")
    return tar_path


RULES_EPILOG = """\
exit codes: 0 ok; 1 the pack is missing, empty, malformed or not releasable (one line
per problem on stderr); 2 bad command line.
The default rule folder is $MSEWATCH_RULES_DIR if set, else the pack installed with
msewatch (in a source checkout: its suricata-rules/)."""


def main_rules(argv: list[str] | None = None) -> int:
    """`msewatch rules {build,release,check}`."""
    ap = argparse.ArgumentParser(
        prog="msewatch rules", description="Build, check and release the msewatch Suricata rule pack.",
        epilog=RULES_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--rules-dir", type=Path, default=None, metavar="DIR",
                    help="rule pack source folder (default: the pack installed with msewatch)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{build,release,check}")
    b = sub.add_parser("build", help="write suricata-rules-msewatch-<version>.tar.gz and its .md5",
                       description="Lint the pack, check its revs and write the suricata-update tarball and its .md5.")
    b.add_argument("--out", type=Path, default=Path("dist"), metavar="DIR", help="output directory (default: dist)")
    sub.add_parser("release", help="bump rev/updated_at of changed rules and rewrite released.json",
                   description="Bump rev and updated_at of every rule whose text changed, then rewrite released.json.")
    sub.add_parser("check", help="lint the pack and check revs against released.json",
                   description="Lint every rule and check that changed rules have a new rev; prints 'N rules ok'.")
    args = ap.parse_args(argv)
    try:
        if args.rules_dir is None:
            args.rules_dir = default_rules_dir()
        if args.cmd == "build":
            path = build(args.out, args.rules_dir)
            print(path)
            print(str(path) + ".md5")
        elif args.cmd == "release":
            bumped = release(args.rules_dir)
            print("bumped: " + (", ".join(map(str, bumped)) if bumped else "none"))
        else:
            rules = require_rules(args.rules_dir)
            problems = lint(rules) + check_revs(rules, load_released(args.rules_dir))
            for p in problems:
                print(p, file=sys.stderr)
            if problems:
                return 1
            print(f"{len(rules)} rules ok")
    except RulePackError as e:
        print(f"msewatch rules: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main_rules())
