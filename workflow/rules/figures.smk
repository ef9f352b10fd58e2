# One rule per figure, so that each figure's settings (its params) re-run that figure alone. A figure reads
# the tables bslr.plan.FIGURE_TABLES names: the aggregate's, and the statistics' whose numbers it prints.
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


# Scenario figures: one per (experiment, dataset, model); the measures' only where measured.
for figure_name in SCENARIO_FIGURES + MEASURED_FIGURES:

    rule:
        name:
            f"figure_{figure_name}"
        input:
            **{table: FIGURE_INPUT[table] for table in FIGURE_TABLES[figure_name]},
        output:
            pdf=figure_pattern(SCENARIO_FIGURE, figure_name, "pdf"),
            png=report(
                figure_pattern(SCENARIO_FIGURE, figure_name, "png"),
                caption=f"../report/{figure_name}.rst",
                category="Experiment {experiment}",
                subcategory=scenario_name,
                labels={"figure": FIGURE_TITLES[figure_name]},
            ),
            csv=figure_pattern(SCENARIO_FIGURE, figure_name, "csv"),
        log:
            figure_pattern(SCENARIO_FIGURE_LOG, figure_name),
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            name=figure_name,
            settings=json.dumps(PLAN.figure_settings(figure_name), sort_keys=True),
            inputs=figure_inputs,
        shell:
            "bslr figure {params.name} --input {params.inputs} --experiment {wildcards.experiment}"
            " --dataset {wildcards.dataset} --model {wildcards.model} --settings {params.settings:q}"
            " --pdf {output.pdf} --png {output.png} --csv {output.csv} > {log} 2>&1"


# Experiment figures: one per experiment, across its scenarios.
for figure_name in EXPERIMENT_FIGURES:

    rule:
        name:
            f"figure_{figure_name}"
        input:
            **{table: FIGURE_INPUT[table] for table in FIGURE_TABLES[figure_name]},
        output:
            pdf=figure_pattern(EXPERIMENT_FIGURE, figure_name, "pdf"),
            png=report(
                figure_pattern(EXPERIMENT_FIGURE, figure_name, "png"),
                caption=f"../report/{figure_name}.rst",
                category="Experiment {experiment}",
                subcategory="All scenarios",
                labels={"figure": FIGURE_TITLES[figure_name]},
            ),
            csv=figure_pattern(EXPERIMENT_FIGURE, figure_name, "csv"),
        log:
            figure_pattern(EXPERIMENT_FIGURE_LOG, figure_name),
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            name=figure_name,
            settings=json.dumps(PLAN.figure_settings(figure_name), sort_keys=True),
            inputs=figure_inputs,
        shell:
            "bslr figure {params.name} --input {params.inputs} --experiment {wildcards.experiment}"
            " --settings {params.settings:q} --pdf {output.pdf} --png {output.png} --csv {output.csv} > {log} 2>&1"


# Figures of every experiment together (the budgets side by side), planned where they compare something.
for figure_name in STUDY_FIGURES:

    rule:
        name:
            f"figure_{figure_name}"
        input:
            **{table: FIGURE_INPUT[table] for table in FIGURE_TABLES[figure_name]},
        output:
            pdf=figure_pattern(STUDY_FIGURE, figure_name, "pdf"),
            png=figure_pattern(STUDY_FIGURE, figure_name, "png"),
            csv=figure_pattern(STUDY_FIGURE, figure_name, "csv"),
        log:
            figure_pattern(STUDY_FIGURE_LOG, figure_name),
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            name=figure_name,
            settings=json.dumps(PLAN.figure_settings(figure_name), sort_keys=True),
            inputs=figure_inputs,
        shell:
            "bslr figure {params.name} --input {params.inputs} --settings {params.settings:q}"
            " --pdf {output.pdf} --png {output.png} --csv {output.csv} > {log} 2>&1"
