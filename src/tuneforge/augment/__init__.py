"""Label-preserving data augmentation of the training split: one module per augmenter (synonym, eda, shuffle,
back_translation) behind the `Augmenter` interface in `base`, wired together in `pipeline`."""
