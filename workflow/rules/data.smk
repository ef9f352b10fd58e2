rule prepare_mnist1d:
    output:
        str(generated_path("mnist1d", CONFIG["data"]["root"])),
    log:
        "logs/data/prepare_mnist1d.log",
    localrule: True
    conda:
        "../../envs/train.yaml"
    shell:
        "bslr prepare-data mnist1d --output {output:q} > {log} 2>&1"
