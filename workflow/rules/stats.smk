rule stats:
    input:
        rules.aggregate.output.runs,
    output:
        csv=report(
            STATS_OUTPUTS["csv"],
            caption="../report/correlations.rst",
            category="Tables",
            labels={"table": "Every correlation test (CSV)"},
        ),
        parquet=STATS_OUTPUTS["parquet"],
        markdown=STATS_OUTPUTS["markdown"],
        granulated_kendall=STATS_OUTPUTS["granulated_kendall"],
        iso_ratio=report(
            STATS_OUTPUTS["iso_ratio"],
            caption="../report/iso_ratio_table.rst",
            category="Tables",
            labels={"table": "Iso-ratio check (CSV)"},
        ),
        headline=report(
            STATS_OUTPUTS["headline"],
            caption="../report/headline.rst",
            category="Tables",
            labels={"table": "Headline: the primary analysis (CSV)"},
        ),
        regression=report(
            STATS_OUTPUTS["regression"],
            caption="../report/regression.rst",
            category="Tables",
            labels={"table": "Only the ratio? Regression (CSV)"},
        ),
        stratified=STATS_OUTPUTS["stratified"],
        divergence=STATS_OUTPUTS["divergence"],
        measure_slopes=STATS_OUTPUTS["measure_slopes"],
        tables_markdown=STATS_OUTPUTS["tables_markdown"],
        tables_latex=STATS_OUTPUTS["tables_latex"],
        tables_html=report(
            STATS_OUTPUTS["tables_html"],
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "The tables to publish"},
        ),
    log:
        STATS_LOG,
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
        # every output by its name, so that the paths declared here are the ones written
        outputs=lambda wildcards, output: " ".join(
            shlex.quote(f"{name}={path}") for name, path in output.items()
        ),
    shell:
        "bslr stats --runs {input} --outcomes {params.outcomes} --methods {params.methods}"
        " --primary-method {params.primary_method} --primary-outcome {params.primary_outcome}"
        " --diverged {params.diverged} --alpha {params.alpha}"
        " --bootstrap-resamples {params.bootstrap_resamples} --permutations {params.permutations}"
        " --seed {params.seed} --output {params.outputs} > {log} 2>&1"
