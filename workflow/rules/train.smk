# Each experiment's execution options (evaluation batch size, DataLoader workers, checkpoint and
# determinism switches): rewritten when they change, read by its training jobs, never re-training them.
rule execution_options:
    output:
        "results/execution/{experiment}.json",
    log:
        "logs/execution/{experiment}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        options=execution_options_json,
    shell:
        "bslr execution-options --options {params.options:q} --output {output:q} > {log:q} 2>&1"


# One job per run, unless the experiment packs its learning rates (training.pack_learning_rates).
rule train:
    input:
        training_data,
        execution=execution_file,
    output:
        "results/runs/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lr}_seed{seed}.parquet",
    log:
        "logs/train/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lr}_seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{experiment}/{dataset}/{model}/bs{batch_size}_lr{lr}_seed{seed}.tsv"
    wildcard_constraints:
        experiment=UNPACKED_EXPERIMENTS,
    conda:
        "../../envs/train.yaml"
    threads: training_option("threads")
    resources:
        gpu=job_resource("gpu"),
        gpu_slots=job_resource("gpu_slots"),
        mem_mb=job_resource("mem_mb"),
        runtime=job_resource("runtime"),
    params:
        settings=run_settings_json,
        checkpoint=checkpoint_path,
    shell:
        "bslr train --settings {params.settings:q} --output {output:q} --threads {threads}"
        " --execution {input.execution:q} --checkpoint {params.checkpoint:q} > {log:q} 2>&1"


# One job per (model, data set, batch size, seed) that trains all learning rates at once (bslr.packed)
# and writes the same per-run files.
for packed_experiment in PACKED_EXPERIMENTS:

    rule:
        name:
            f"train_packed_{packed_experiment}"
        input:
            training_data,
            execution=execution_file,
        output:
            packed_outputs(packed_experiment),
        log:
            "logs/train/{experiment}/{dataset}/{model}/bs{batch_size}_seed{seed}_packed.log",
        benchmark:
            "results/benchmarks/train/{experiment}/{dataset}/{model}/bs{batch_size}_seed{seed}_packed.tsv"
        wildcard_constraints:
            experiment=packed_experiment,
        conda:
            "../../envs/train.yaml"
        threads: training_option("threads")
        resources:
            gpu=job_resource("gpu"),
            gpu_slots=job_resource("gpu_slots"),
            mem_mb=job_resource("mem_mb"),
            runtime=job_resource("runtime"),
        params:
            settings=packed_settings_json,
            checkpoint=packed_checkpoint_path,
        shell:
            "bslr train --settings {params.settings:q} --output {output:q} --threads {threads}"
            " --execution {input.execution:q} --checkpoint {params.checkpoint:q} > {log:q} 2>&1"
