"""Workflow planning: which runs an experiment has, where they live, what each train job gets.

Pure functions of the configuration (plain dicts, the ``config`` Snakemake reads), stdlib and
the :mod:`pipeline` stdlib-only modules only, so that the Snakefile's environment
(``envs/workflow.yaml``) imports them at parse time; ``workflow/rules/common.smk`` wraps them
in thin input and params functions. :mod:`pipeline.plan.experiments`: the runs of the paper's
experiments and their folders; :mod:`pipeline.plan.train_options`: the train section a model's
job gets (:mod:`pipeline.plan.search_space`: which random-search keys go to which baseline);
:mod:`pipeline.plan.config_moves`: where the keys of the former flat config went (an old key is
an error naming its new place) and the flat section each stage's ``--options`` gets.
"""
