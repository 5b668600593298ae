"""Training: augmentation, the pure jitted ``train_step``/``eval_step`` and whole epochs
(``steps``), the training loop (``loop.fit``), Orbax checkpoints, transfer of a trunk by name, and
data parallelism over devices and processes (``sharding``)."""
