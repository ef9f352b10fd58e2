rule prepare_mnist1d:
    output:
        os.path.join(CONFIG["data"]["root"], "mnist1d", "mnist1d.npz"),
    log:
        "logs/data/prepare_mnist1d.log",
    conda:
        "../../envs/train.yaml"
    params:
        root=CONFIG["data"]["root"],
    shell:
        "{BSLR} prepare-data mnist1d --root {params.root:q} > {log} 2>&1"
