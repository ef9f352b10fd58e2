rule train:
    input:
        training_data,
    output:
        "results/runs/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lr}_seed{seed}.parquet",
    log:
        "logs/train/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lr}_seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lr}_seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: training_option("threads")
    resources:
        gpu=job_resource("gpu"),
        mem_mb=job_resource("mem_mb"),
        runtime=job_resource("runtime"),
    params:
        settings=run_settings_json,
        eval_batch_size=training_option("eval_batch_size"),
        workers=training_option("workers"),
        checkpoint=checkpoint_path,
        flags=training_flags,
    shell:
        "bslr train --settings {params.settings:q} --output {output:q} --threads {threads}"
        " --eval-batch-size {params.eval_batch_size} --workers {params.workers}"
        " --checkpoint {params.checkpoint:q} {params.flags} > {log:q} 2>&1"
