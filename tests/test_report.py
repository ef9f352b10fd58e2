"""What the Snakemake report shows: captions that docutils renders without a message, and the tables as HTML."""

import html.parser
import io
import re

import jinja2
import pytest
from docutils.core import publish_parts

from bslr.stats import analyse
from bslr.tables import Html, html_tables, paper_tables
from conftest import REPO
from paper_grid import paper_runs

CAPTIONS = sorted((REPO / "workflow/report").glob("*.rst"))
# The link targets Snakemake appends to every caption: its own panels, and one per category the rules declare
# (a category named like a panel, "Statistics", once made every caption show a docutils error).
CATEGORIES = {
    name.format(experiment="paper")
    for rules in (REPO / "workflow/rules").glob("*.smk")
    for name in re.findall(r'(?<![a-z])category="([^"]+)"', rules.read_text())
}
LINKS = "\n\n.. _Workflow: javascript:show_panel('workflow')\n.. _Statistics: javascript:show_panel('statistics')\n"
LINKS += "".join(f".. _{name}: javascript:app.showCategory('{name}')\n" for name in sorted(CATEGORIES))


class Wildcards:
    experiment, dataset, model = "paper", "cifar10", "resnet110"


@pytest.mark.parametrize("caption", CAPTIONS, ids=lambda path: path.stem)
def test_each_caption_renders_without_a_docutils_message(caption):
    text = jinja2.Template(caption.read_text() + LINKS).render(snakemake={"wildcards": Wildcards})
    messages = io.StringIO()
    body = publish_parts(text, writer="html", settings_overrides={"warning_stream": messages})["body"]
    assert not messages.getvalue() and "system-message" not in body and "{{" not in text


def test_results_are_grouped_by_experiment_with_the_tables_apart():
    assert sorted(CATEGORIES) == ["Experiment paper", "Tables"]


class Tags(html.parser.HTMLParser):
    """Open tags, and tags closed out of order."""

    def __init__(self) -> None:
        super().__init__()
        self.open, self.misnested = [], []

    def handle_starttag(self, tag, attrs):
        if tag != "meta":
            self.open.append(tag)

    def handle_endtag(self, tag):
        if self.open.pop() != tag:
            self.misnested.append(tag)


def test_html_tables_are_the_markdown_tables_as_well_formed_html():
    analysis = analyse(
        paper_runs(batch_sizes=(16, 32, 64, 128), learning_rates=(0.05, 0.1, 0.15, 0.2), scenarios=2),
        ["final_test_acc"],
        ["spearman"],
        resamples=100,
        permutations=999,
    )
    page = html_tables(analysis, 0.05)
    markdown, _ = paper_tables(analysis, 0.05)
    alignment_rows = [line for line in markdown.splitlines() if re.match(r"\| :?---", line)]
    assert page.count("<table>") == len(alignment_rows) and page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<[^a-z/!]", page) and Html().p(1e-20) == "&lt; 1e−16"  # every < escaped
    tags = Tags()
    tags.feed(page)
    assert tags.open == [] and tags.misnested == []
