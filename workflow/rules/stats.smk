rule stats:
    input:
        "results/aggregate/runs.parquet",
    output:
        csv=report(
            "results/stats/correlations.csv",
            caption="../report/correlations.rst",
            category="Statistics",
        ),
        parquet="results/stats/correlations.parquet",
        markdown="results/stats/correlations.md",
        granulated_kendall="results/stats/granulated_kendall.csv",
        iso_ratio=report(
            "results/stats/iso_ratio.csv",
            caption="../report/iso_ratio_table.rst",
            category="Statistics",
        ),
        headline=report(
            "results/stats/headline.csv",
            caption="../report/headline.rst",
            category="Statistics",
        ),
        regression=report(
            "results/stats/regression.csv",
            caption="../report/regression.rst",
            category="Statistics",
        ),
        stratified="results/stats/stratified.csv",
        divergence="results/stats/divergence.csv",
        tables_markdown="results/tables/correlations.md",
        tables_latex="results/tables/correlations.tex",
    log:
        "logs/stats.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        outcomes=CONFIG["analysis"]["outcomes"],
        methods=CONFIG["analysis"]["methods"],
        primary_method=CONFIG["analysis"]["primary"]["method"],
        primary_outcome=CONFIG["analysis"]["primary"]["outcome"],
        diverged=CONFIG["analysis"]["diverged"],
        alpha=CONFIG["analysis"]["alpha"],
        bootstrap_resamples=CONFIG["analysis"]["bootstrap_resamples"],
        permutations=CONFIG["analysis"]["permutations"],
        seed=CONFIG["analysis"]["seed"],
        stats_dir=lambda wildcards, output: os.path.dirname(output.csv),
        tables_dir=lambda wildcards, output: os.path.dirname(output.tables_latex),
    shell:
        "bslr stats --runs {input} --outcomes {params.outcomes} --methods {params.methods}"
        " --primary-method {params.primary_method} --primary-outcome {params.primary_outcome}"
        " --diverged {params.diverged} --alpha {params.alpha}"
        " --bootstrap-resamples {params.bootstrap_resamples} --permutations {params.permutations}"
        " --seed {params.seed} --output-dir {params.stats_dir} --tables-dir {params.tables_dir} > {log} 2>&1"
