"""Training: augmentation, the optimiser (``optim``), the losses (``losses``), the train state and
the pure jitted ``train_step``/``eval_step`` and whole epochs (``steps``), the seed population's
programs (``population``), the training loop (``loop.fit``), Orbax checkpoints, transfer of a trunk
by name, and data parallelism over devices and processes (``sharding``)."""
