# One rule per figure, so that each figure's settings (its params) re-run that figure alone.
# Scenario figures: one per (experiment, dataset, model).
for figure_name in FIGURES:

    rule:
        name:
            f"figure_{figure_name}"
        input:
            FIGURE_INPUTS.get(figure_name, "results/aggregate/runs.parquet"),
        output:
            pdf=f"results/figures/{{experiment}}/{{dataset}}/{{model}}/{figure_name}.pdf",
            png=report(
                f"results/figures/{{experiment}}/{{dataset}}/{{model}}/{figure_name}.png",
                caption=f"../report/{figure_name}.rst",
                category="{experiment}",
                subcategory="{dataset} / {model}",
            ),
        log:
            f"logs/figures/{{experiment}}/{{dataset}}/{{model}}/{figure_name}.log",
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
            FIGURE_INPUTS.get(figure_name, "results/aggregate/runs.parquet"),
        output:
            pdf=f"results/figures/{{experiment}}/{figure_name}.pdf",
            png=report(
                f"results/figures/{{experiment}}/{figure_name}.png",
                caption=f"../report/{figure_name}.rst",
                category="{experiment}",
                subcategory="All scenarios",
            ),
        log:
            f"logs/figures/{{experiment}}/{figure_name}.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        params:
            name=figure_name,
            settings=json.dumps(CONFIG["figures"][figure_name], sort_keys=True),
        shell:
            "bslr figure {params.name} --input {input} --experiment {wildcards.experiment}"
            " --settings {params.settings:q} --pdf {output.pdf} --png {output.png} > {log} 2>&1"
