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
    log:
        "logs/stats.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        outcomes=CONFIG["analysis"]["outcomes"],
        methods=CONFIG["analysis"]["methods"],
        diverged=CONFIG["analysis"]["diverged"],
    shell:
        "bslr stats --runs {input} --outcomes {params.outcomes} --methods {params.methods}"
        " --diverged {params.diverged}"
        " --csv {output.csv} --parquet {output.parquet} --markdown {output.markdown} > {log} 2>&1"
