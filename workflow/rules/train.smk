# Each experiment's execution options (evaluation batch size, DataLoader workers, checkpoint and
# determinism switches): rewritten when they change, read by its training jobs, never re-training them.
rule execution_options:
    output:
        EXECUTION,
    log:
        EXECUTION_LOG,
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        options=lambda wildcards: PLAN.execution_options_json(wildcards.experiment),
    shell:
        "bslr execution-options --options {params.options:q} --output {output:q} > {log:q} 2>&1"


# One job trains one pack: the runs of a (model, data set, batch size, seed) that differ only in learning
# rate, all of them or chunks of training.pack.size; `train` takes the experiments of one run per job.
# Every training rule has this one shell command and the same kind of params, so that re-packing an
# experiment under the serial learner re-trains nothing (bslr.plan.Plan.protocol_json).
TRAIN_SHELL = (
    "bslr train --settings {params.settings:q} --output {output:q} --threads {threads}"
    " --execution {input.execution:q} --checkpoint {params.checkpoint:q} > {log:q} 2>&1"
)

for train_rule in PLAN.train_rules():

    rule:
        name:
            train_rule.name
        input:
            PLAN.generated_data,
            execution=ancient(EXECUTION),
        output:
            train_rule.outputs,
        log:
            train_rule.log,
        benchmark:
            train_rule.benchmark
        wildcard_constraints:
            experiment=train_rule.experiment_pattern,
        conda:
            "../../envs/train.yaml"
        threads: train_rule.threads
        resources:
            gpu=train_rule.resource("gpu"),
            gpu_slots=train_rule.resource("gpu_slots"),
            mem_mb=train_rule.resource("mem_mb"),
            runtime=train_rule.resource("runtime"),
        params:
            protocol=train_rule.protocol,
            settings=train_rule.settings,
            checkpoint=train_rule.checkpoint,
        shell:
            TRAIN_SHELL
