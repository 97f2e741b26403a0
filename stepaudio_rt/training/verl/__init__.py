"""The RL stage at full scale on verl (Ray, FSDP, vLLM rollout), for the real 33B model.

Inside the package rather than a top-level ``recipes/`` folder: verl imports the reward function
(``custom_reward_function.path``) and the model registration (``actor_rollout_ref.model.external_lib``)
in every Ray worker, and the cluster image installs this project (the vLLM plugin is already an entry point
of it), so the modules travel with ``pip install`` instead of needing a checkout on every node.

- ``dataset``: training rows in verl's RL parquet format (chat-message prompt with ``<audio>``, the clip
  embedded as FLAC bytes or a path, ground truth under ``reward_model``, ``data_source``, ``extra_info``);
- ``reward``: ``compute_score`` (audio 0.8 x correct + 0.2 x reasoning present, text 1/0), importing only
  the project's verifiers;
- ``selection``: pass@8 in [3, 6] over sampled rollouts (a pure function plus the cluster CLI);
- ``mgrd_ppo.yaml``: the paper's PPO settings as overrides of verl's ``ppo_trainer`` config.
- ``hf_model`` / ``hf_processor``: the HF actor, per-token critic and processor verl's FSDP workers load
  (registered with transformers' Auto classes by ``registration``, the recipe's ``external_lib``);
- ``plugin``: the ``verl.plugins`` entry point ``import verl`` loads in every process; it makes verl's
  ``hf_processor`` return our processor for a Step-Audio checkpoint (verl 0.9.1 knows only its own list).

Only ``plugin`` imports verl (verl imports it): the other modules run on verl's workers, and the tests
check the config against verl's own schema.
"""
