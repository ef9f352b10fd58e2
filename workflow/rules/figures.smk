# One rule per figure, so that each figure's settings (its params) re-run that figure alone.
FIGURE_INPUT = {
    "runs": rules.aggregate.output.runs,
    "epochs": rules.aggregate.output.epochs,
    "correlations": rules.stats.output.parquet,
}

# Scenario figures: one per (experiment, dataset, model).
for figure_name in SCENARIO_FIGURES:

    rule:
        name:
            f"figure_{figure_name}"
        input:
            FIGURE_INPUT[FIGURE_TABLES.get(figure_name, "runs")],
        output:
            pdf=figure_pattern(SCENARIO_FIGURE, figure_name, "pdf"),
            png=report(
                figure_pattern(SCENARIO_FIGURE, figure_name, "png"),
                caption=f"../report/{figure_name}.rst",
                category="{experiment}",
                subcategory="{dataset} / {model}",
            ),
        log:
            figure_pattern(SCENARIO_FIGURE_LOG, figure_name),
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            name=figure_name,
            settings=json.dumps(CONFIG["figures"][figure_name], sort_keys=True),
        shell:
            "bslr figure {params.name} --input {input} --experiment {wildcards.experiment}"
            " --dataset {wildcards.dataset} --model {wildcards.model} --settings {params.settings:q}"
            " --pdf {output.pdf} --png {output.png} > {log} 2>&1"


# Experiment figures: one per experiment, across its scenarios.
for figure_name in EXPERIMENT_FIGURES:

    rule:
        name:
            f"figure_{figure_name}"
        input:
            FIGURE_INPUT[FIGURE_TABLES.get(figure_name, "runs")],
        output:
            pdf=figure_pattern(EXPERIMENT_FIGURE, figure_name, "pdf"),
            png=report(
                figure_pattern(EXPERIMENT_FIGURE, figure_name, "png"),
                caption=f"../report/{figure_name}.rst",
                category="{experiment}",
                subcategory="All scenarios",
            ),
        log:
            figure_pattern(EXPERIMENT_FIGURE_LOG, figure_name),
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            name=figure_name,
            settings=json.dumps(CONFIG["figures"][figure_name], sort_keys=True),
        shell:
            "bslr figure {params.name} --input {input} --experiment {wildcards.experiment}"
            " --settings {params.settings:q} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


# Figures of every experiment together (the budgets side by side), planned where they compare something.
for figure_name in STUDY_FIGURES:

    rule:
        name:
            f"figure_{figure_name}"
        input:
            rules.aggregate.output.runs,
        output:
            pdf=figure_pattern(STUDY_FIGURE, figure_name, "pdf"),
            png=report(
                figure_pattern(STUDY_FIGURE, figure_name, "png"),
                caption=f"../report/{figure_name}.rst",
                category="Budgets",
            ),
        log:
            figure_pattern(STUDY_FIGURE_LOG, figure_name),
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            name=figure_name,
            settings=json.dumps(CONFIG["figures"][figure_name], sort_keys=True),
        shell:
            "bslr figure {params.name} --input {input} --settings {params.settings:q}"
            " --pdf {output.pdf} --png {output.png} > {log} 2>&1"
