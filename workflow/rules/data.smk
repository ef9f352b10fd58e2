rule prepare_mnist1d:
    output:
        PLAN.generated_data("mnist1d"),
    log:
        "logs/data/prepare_mnist1d.log",
    localrule: True
    conda:
        "../../envs/train.yaml"
    shell:
        "bslr prepare-data mnist1d --output {output:q} > {log:q} 2>&1"
