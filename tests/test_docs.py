"""The README and docs/ hold together: every key documented, two quick-start
commands, a table of contents, and no link to a missing file or heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from check_status.config import KEYS, KEYS_BY_NAME

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"

# A configuration key's row: | `KEY` | default | meaning |
KEY_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|", re.MULTILINE)
# [text](target), not an image's; the target has no spaces.
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"``.+?``|`[^`\n]+`")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def headings(text: str) -> list[tuple[int, str]]:
    return [
        (len(m.group(1)), m.group(2).strip())
        for m in re.finditer(r"^(#{1,6})\s+(.+?)\s*#*\s*$", FENCE.sub("", text), re.MULTILINE)
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than - and _
    dropped, each space a '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for _, heading in headings(text):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(path: Path) -> list[str]:
    """Every relative link in path that names a missing file or heading."""
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    problems = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{name}: {target}: no file {file_part}")
            continue
        if (
            anchor
            and linked.suffix == ".md"
            and anchor not in anchors(linked.read_text(encoding="utf-8"))
        ):
            problems.append(f"{name}: {target}: no heading #{anchor}")
    return problems


def section(text: str, title: str) -> str:
    """The body of the `## title` section, up to the next `##` heading."""
    match = re.search(
        rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL
    )
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def quick_start_commands() -> list[str]:
    body = section(README.read_text(encoding="utf-8"), "Quick start")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def documented_keys() -> list[str]:
    return KEY_ROW.findall(CONFIGURATION.read_text(encoding="utf-8"))


# (a) configuration keys


def test_every_documented_key_exists_in_the_code() -> None:
    documented = documented_keys()
    assert len(documented) >= 20, "docs/configuration.md lost its key tables"
    unknown = sorted(set(documented) - set(KEYS_BY_NAME))
    assert not unknown, (
        f"docs/configuration.md documents keys check_status.config does not have: {unknown}"
    )


def test_every_key_in_the_code_is_documented() -> None:
    documented = set(documented_keys())
    missing = [key.name for key in KEYS if key.name not in documented]
    assert not missing, f"keys with no row `| \\`KEY\\` |` in docs/configuration.md: {missing}"


def test_each_key_is_documented_once() -> None:
    documented = documented_keys()
    twice = sorted({key for key in documented if documented.count(key) > 1})
    assert not twice, f"keys with more than one row in docs/configuration.md: {twice}"


# (b), (c) quick start


def test_the_quick_start_is_exactly_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2, f"the quick start should be two commands, it is {commands}"
    assert "check-status" in commands[0], "the first command should set up and run check-status"


def test_the_quick_start_test_command_is_what_ci_runs() -> None:
    assert quick_start_commands()[1] == "./tests/run-all.sh"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    steps = [
        line.strip()
        for line in ci.splitlines()
        if line.strip()
        and not line.lstrip().startswith("#")
        and not line.startswith(("set ", "cd "))
    ]
    assert steps == ["./tests/run-all.sh"], (
        f".ci/run should run exactly the README's test command: {steps}"
    )


# (d) links


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    problems = broken_links(path)
    assert not problems, "\n".join(problems)


def test_the_pages_written_elsewhere_are_there() -> None:
    # The README links to them; they are part of the documentation.
    for name in ("nagios.md", "prometheus.md"):
        assert (DOCS / name).is_file(), f"docs/{name} is linked from the README but missing"


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## 2. Checks\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Probe\n\n## A heading: with `code`\n\n"
        "[ok](#a-heading-with-code) [ok](other.md#2-checks) `[code](nowhere.md)`\n"
        "```\n[code](nowhere.md)\n```\n"
        "[bad](#no-such-heading) [bad](no-such-file.md) [bad](other.md#no-such)\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert len(problems) == 3, problems
    assert any("#no-such-heading" in p for p in problems)
    assert any("no-such-file.md" in p for p in problems)
    assert any("other.md#no-such" in p for p in problems)


def test_slugs_follow_github() -> None:
    assert slug("Commands: status, silence, unsilence") == "commands-status-silence-unsilence"
    assert slug("3. HAProxy: taking a node out and putting it back") == (
        "3-haproxy-taking-a-node-out-and-putting-it-back"
    )
    assert slug("head_block") == "head_block"
    assert (
        slug("UNKNOWN: not judged while nodeos is failing")
        == "unknown-not-judged-while-nodeos-is-failing"
    )


# (e) table of contents


def test_the_readme_has_a_table_of_contents_of_its_sections() -> None:
    text = README.read_text(encoding="utf-8")
    contents = section(text, "Contents")
    linked = set(re.findall(r"\]\(#([^)]+)\)", contents))
    sections = [title for level, title in headings(text) if level == 2 and title != "Contents"]
    assert len(sections) >= 10
    missing = [title for title in sections if slug(title) not in linked]
    assert not missing, f"README sections missing from its table of contents: {missing}"
    docs_linked = set(re.findall(r"\]\(docs/([^)#]+)", contents))
    pages = {p.name for p in DOCS.glob("*.md")} | {"nagios.md", "prometheus.md"}
    assert pages <= docs_linked, (
        f"docs pages missing from the table of contents: {sorted(pages - docs_linked)}"
    )


def test_the_readme_stays_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 440
