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
# rate, all of them or chunks of training.pack.size (by default, serial packs of about 15 minutes' runs). A rule per experiment,
# data set, model and chunk, all fixed at parse time (bslr.plan.TrainRule). Every training rule has this
# one shell command: each run's settings are its job's protocol and the keys its file name carries, and
# re-packing an experiment under the serial learner re-trains nothing (bslr.plan.Plan.protocol_json).
# Every path the job reads or writes comes through the rule (a Snakemake module's prefix applies to all):
# the data the workflow generated, the execution options, the outputs (the checkpoint and the runs'
# TensorBoard logs sit beside their tree), the text log and the progress file (JSON lines, bslr.progress).
# Snakemake deletes a job's logs before running it again; a resumed job replays its earlier evaluations.
TRAIN_SHELL = (
    "bslr train --protocol {params.protocol:q} --output {output:q} --threads {threads}"
    " --execution {input.execution:q} --checkpoint auto --progress {log.progress:q} > {log.text:q} 2>&1"
)
TRAIN_GENERATED_DATA_SHELL = TRAIN_SHELL.replace(
    " --threads", " --data {input.data:q} --threads"
)

for train_rule in PLAN.train_rules():

    rule:
        name:
            train_rule.name
        input:
            data=train_rule.inputs,
            execution=ancient(train_rule.execution),
        output:
            train_rule.outputs,
        log:
            text=train_rule.log,
            progress=train_rule.progress,
        benchmark:
            train_rule.benchmark
        conda:
            "../../envs/train.yaml"
        threads: train_rule.threads
        resources:
            **train_rule.resources,
        params:
            protocol=train_rule.protocol,
        shell:
            TRAIN_GENERATED_DATA_SHELL if train_rule.inputs else TRAIN_SHELL
