# One rule per figure, so that each figure's settings (its params) re-run that figure alone. A figure reads
# the tables its registry entry names: the aggregate's, and the statistics' whose numbers it prints.
FIGURE_INPUT = {
    "runs": rules.aggregate.output.runs,
    "epochs": rules.aggregate.output.epochs,
    "correlations": rules.stats.output.parquet,
    "iso_ratio": rules.stats.output.iso_ratio,
    "measure_slopes": rules.stats.output.measure_slopes,
}


def figure_inputs(wildcards, input):
    """`NAME=PATH` per table, as `bslr figure --input` takes them."""
    return " ".join(shlex.quote(f"{name}={path}") for name, path in input.items())


def scenario_name(wildcards):
    return f"{PLAN.catalog.display_name(wildcards.model)} on {PLAN.catalog.display_name(wildcards.dataset)}"


def figure_place(wildcards):
    """Where a figure belongs, as `bslr figure` is told: its experiment, data set and model, where it has them."""
    place = dict(wildcards.items())
    return " ".join(
        f"--{key} {shlex.quote(place[key])}"
        for key in ("experiment", "dataset", "model")
        if key in place
    )


def figure_png(figure):
    """A figure's PNG, in the report under its experiment (the config's own figures stay out of it)."""
    path = figure_pattern(FIGURE_PATHS[figure.scope], figure.name, "png")
    if figure.scope == "study":
        return path
    return report(
        path,
        caption=f"../report/{figure.name}.rst",
        category="Experiment {experiment}",
        subcategory=scenario_name if figure.scope == "scenario" else "All scenarios",
        labels={"figure": figure.title},
    )


# A rule per figure of the registry (bslr.catalog.FIGURES); Plan.figure_files says which are drawn where.
for figure in FIGURES.values():

    rule:
        name:
            f"figure_{figure.name}"
        input:
            **{table: FIGURE_INPUT[table] for table in figure.tables},
        output:
            pdf=figure_pattern(FIGURE_PATHS[figure.scope], figure.name, "pdf"),
            png=figure_png(figure),
            csv=figure_pattern(FIGURE_PATHS[figure.scope], figure.name, "csv"),
        log:
            figure_pattern(FIGURE_LOGS[figure.scope], figure.name),
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            name=figure.name,
            settings=json.dumps(PLAN.figure_settings(figure.name), sort_keys=True),
            inputs=figure_inputs,
            place=figure_place,
        shell:
            "bslr figure {params.name} --input {params.inputs} {params.place} --settings {params.settings:q}"
            " --pdf {output.pdf} --png {output.png} --csv {output.csv} > {log} 2>&1"
