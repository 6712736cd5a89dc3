"""Data: image-folder discovery, class labels and splits, the paper's datasets, the built-in set,
transforms, samplers, decoding."""

from hashpa._lazy import lazy_exports

_EXPORTS = {
    "IMAGE_EXTENSIONS": ".folder",
    "Sample": ".folder",
    "find_images": ".folder",
    "is_image": ".folder",
    "labelled_samples": ".folder",
    "class_of": ".labels",
    "label_paths": ".labels",
    "DATASET_KINDS": ".splits",
    "SPLITS": ".splits",
    "RetrievalSplit": ".splits",
    "build_split": ".splits",
    "split_dirs": ".splits",
    "split_folder": ".splits",
    "DATASETS": ".splits",
    "load_paper_dataset": ".paper_datasets",
    "builtin_dataset": ".builtin",
    "ImageDataset": ".loading",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
