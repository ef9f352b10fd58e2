rule aggregate:
    input:
        PLAN.run_files(),
    output:
        **AGGREGATE_OUTPUTS,
    log:
        "logs/aggregate.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "bslr aggregate {input:q} --runs {output.runs} --epochs {output.epochs} > {log} 2>&1"
